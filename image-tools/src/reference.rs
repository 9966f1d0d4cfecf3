//! Image reference parsing and normalisation, following the rules of
//! Docker's `reference.ParseNormalizedNamed` so that the names we write are
//! the names `ctr`, `docker` and `nerdctl` will show.
//!
//! `hello` becomes `docker.io/library/hello:latest`, `me/app:1` becomes
//! `docker.io/me/app:1`, and a registry host (anything in the first
//! component with a `.` or `:`, or `localhost`) is kept as is.

use std::fmt;
use std::str::FromStr;

/// The registry Docker Hub images live under, in its canonical spelling.
pub const DOCKER_HUB: &str = "docker.io";
/// The legacy spelling of [`DOCKER_HUB`], folded into it when parsing.
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
/// Namespace for single-component Docker Hub names (`hello` -> `library/hello`).
const OFFICIAL_NAMESPACE: &str = "library";
/// Tag used when a reference has neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
/// Docker rejects repository names longer than this.
const MAX_NAME_LEN: usize = 255;
/// Docker rejects tags longer than this.
const MAX_TAG_LEN: usize = 128;

/// Why a string is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    /// The text that failed to parse.
    pub reference: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A fully normalised image reference: registry, repository path, and a tag
/// and/or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parses and normalises `text` (`NAME[:TAG][@DIGEST]`).
    ///
    /// # Errors
    /// Returns [`ReferenceError`] when the text breaks the Docker reference
    /// grammar (upper case in the repository, empty components, a bad tag
    /// or digest, a name over 255 characters).
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let fail = |reason: &str| ReferenceError {
            reference: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Err(fail("empty"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                check_digest(digest).map_err(|r| fail(&r))?;
                (rest, Some(digest.to_owned()))
            }
            None => (text, None),
        };
        // A ':' after the last '/' starts the tag; earlier ones are a port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(|r| fail(&r))?;
        }
        let (registry, repository) = split_registry(name);
        check_registry(registry).map_err(|r| fail(&r))?;
        let registry = if registry == LEGACY_DOCKER_HUB {
            DOCKER_HUB
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{repository}")
        } else {
            repository.to_owned()
        };
        check_repository(&repository).map_err(|r| fail(&r))?;
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(fail("repository name longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_owned()),
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
        })
    }

    /// The registry host, e.g. `docker.io` or `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, e.g. `library/hello`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any (always set unless the reference has a digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:...`), if the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form Docker shows and writes into `RepoTags`
    /// (`hello:latest` for `docker.io/library/hello:latest`).
    pub fn familiar(&self) -> String {
        let name = if self.registry == DOCKER_HUB {
            let official = self
                .repository
                .strip_prefix(OFFICIAL_NAMESPACE)
                .and_then(|r| r.strip_prefix('/'))
                .filter(|r| !r.contains('/'));
            official.unwrap_or(&self.repository).to_owned()
        } else {
            self.name()
        };
        with_suffixes(name, self.tag.as_deref(), self.digest.as_deref())
    }
}

impl fmt::Display for Reference {
    /// The full normalised form, e.g. `docker.io/library/hello:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = with_suffixes(self.name(), self.tag.as_deref(), self.digest.as_deref());
        f.write_str(&full)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn with_suffixes(mut name: String, tag: Option<&str>, digest: Option<&str>) -> String {
    if let Some(tag) = tag {
        name.push(':');
        name.push_str(tag);
    }
    if let Some(digest) = digest {
        name.push('@');
        name.push_str(digest);
    }
    name
}

/// Splits off the registry the way Docker does: the first component is a
/// host only if it looks like one, otherwise the name is on Docker Hub.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("bad registry port in {registry:?}"));
        }
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!("bad registry host {host:?}"))
    }
}

/// Each path component is `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn check_repository(repository: &str) -> Result<(), String> {
    for component in repository.split('/') {
        if component.is_empty() {
            return Err("empty path component".to_owned());
        }
        if component.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err("repository names must be lower case".to_owned());
        }
        if !component_ok(component) {
            return Err(format!("bad path component {component:?}"));
        }
    }
    Ok(())
}

fn component_ok(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Separators between alphanumeric runs: '.', '_', '__' or any number of '-'.
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = !tag.is_empty()
        && tag.len() <= MAX_TAG_LEN
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad tag {tag:?} (1-128 of [A-Za-z0-9_.-], not starting with '.' or '-')"
        ))
    }
}

fn check_digest(digest: &str) -> Result<(), String> {
    match digest.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(())
        }
        _ => Err(format!("bad digest {digest:?} (expected sha256:<64 hex>)")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed setup step should just fail the test
mod tests {
    use super::*;

    fn full(text: &str) -> String {
        Reference::parse(text)
            .map(|r| r.to_string())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn normalises_docker_hub_names() {
        assert_eq!(full("hello"), "docker.io/library/hello:latest");
        assert_eq!(full("hello:1.0"), "docker.io/library/hello:1.0");
        assert_eq!(full("me/app:v2"), "docker.io/me/app:v2");
        assert_eq!(full("docker.io/hello"), "docker.io/library/hello:latest");
        assert_eq!(full("index.docker.io/me/app"), "docker.io/me/app:latest");
    }

    #[test]
    fn keeps_registry_hosts() {
        assert_eq!(full("localhost:5000/x:y"), "localhost:5000/x:y");
        assert_eq!(full("localhost/x"), "localhost/x:latest");
        assert_eq!(full("ghcr.io/org/team/app:1"), "ghcr.io/org/team/app:1");
        assert_eq!(full("registry:5000/app"), "registry:5000/app:latest");
    }

    #[test]
    fn familiar_form_matches_docker() {
        let familiar = |t: &str| Reference::parse(t).map(|r| r.familiar()).ok();
        assert_eq!(familiar("hello:latest").as_deref(), Some("hello:latest"));
        assert_eq!(
            familiar("docker.io/library/hello").as_deref(),
            Some("hello:latest")
        );
        assert_eq!(familiar("me/app:v2").as_deref(), Some("me/app:v2"));
        assert_eq!(
            familiar("localhost:5000/x:y").as_deref(),
            Some("localhost:5000/x:y")
        );
    }

    #[test]
    fn digests_are_kept_without_default_tag() {
        let hex = "a".repeat(64);
        let r = Reference::parse(&format!("hello@sha256:{hex}")).ok();
        assert_eq!(r.as_ref().and_then(Reference::tag), None);
        assert_eq!(
            r.map(|r| r.to_string()),
            Some(format!("docker.io/library/hello@sha256:{hex}"))
        );
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Hello",
            "me/App",
            "hello:",
            "hello:.x",
            "a//b",
            "-a",
            "a..b",
            "hello@sha256:xyz",
            "host:port/x",
            &format!("a:{}", "t".repeat(129)),
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(Reference::parse("me/a__b.c-d---e/f_g").is_ok());
    }
}
