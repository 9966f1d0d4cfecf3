//! Registry credentials: `--username` with `--password-stdin`, else the
//! `auths` section of Docker's `config.json` (what `docker login` writes),
//! else anonymous. Credential helpers (`credsStore`, `credHelpers`) are not
//! run; an entry they manage has no inline `auth` and is skipped.
//!
//! The parsing is pure (text in, credentials out) and tested on its own.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::reference::DOCKER_HUB;

/// A user name and password (or token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why Docker's config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid JSON.
    #[error("{} is not valid JSON: {source}", path.display())]
    Json {
        /// The config file.
        path: PathBuf,
        /// The parser's message.
        source: serde_json::Error,
    },
    /// An `auth` value is not base64 of `user:password`.
    #[error("{}: the auth entry for {registry} is not base64 of USER:PASSWORD", path.display())]
    BadAuth {
        /// The config file.
        path: PathBuf,
        /// The registry key.
        registry: String,
    },
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Where Docker keeps its config: `$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json`.
pub fn docker_config_path(docker_config: Option<&OsStr>, home: Option<&Path>) -> Option<PathBuf> {
    match docker_config.filter(|d| !d.is_empty()) {
        Some(dir) => Some(Path::new(dir).join("config.json")),
        None => home.map(|h| h.join(".docker").join("config.json")),
    }
}

/// Reads the credentials for `registry` from the config file at `path`;
/// a missing file means none.
///
/// # Errors
/// [`AuthError`] if the file exists but is unreadable or malformed.
pub fn from_docker_config(path: &Path, registry: &str) -> Result<Option<Credentials>, AuthError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AuthError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    parse_docker_config(&text, registry, path)
}

/// Finds `registry` in the `auths` of a Docker config document. Keys are
/// matched by host (`https://host/v1/`, `http://host` and `host` all
/// match), with Docker Hub's aliases folded together.
///
/// # Errors
/// [`AuthError::Json`] or [`AuthError::BadAuth`]; `path` only names the file.
pub fn parse_docker_config(
    text: &str,
    registry: &str,
    path: &Path,
) -> Result<Option<Credentials>, AuthError> {
    let config: DockerConfig = serde_json::from_str(text).map_err(|source| AuthError::Json {
        path: path.to_owned(),
        source,
    })?;
    let wanted = normalise_host(registry);
    let Some((key, entry)) = config
        .auths
        .iter()
        .find(|(key, _)| normalise_host(key) == wanted)
    else {
        return Ok(None);
    };
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let bad = || AuthError::BadAuth {
            path: path.to_owned(),
            registry: key.clone(),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (username, password) = decoded.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(username), Some(password)) => Ok(Some(Credentials {
            username: username.clone(),
            password: password.clone(),
        })),
        _ => Ok(None),
    }
}

/// `https://index.docker.io/v1/` -> `docker.io`, `http://h:5000/` -> `h:5000`.
fn normalise_host(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_owned()
        }
        _ => host,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed setup step should just fail the test
mod tests {
    use super::*;

    fn find(text: &str, registry: &str) -> Option<Credentials> {
        parse_docker_config(text, registry, Path::new("config.json")).unwrap()
    }

    #[test]
    fn finds_inline_auth_by_host() {
        // base64("ci:s3cr:et") - the password may contain ':'.
        let text = r#"{"auths": {
            "127.0.0.1:5000": {"auth": "Y2k6czNjcjpldA=="},
            "https://index.docker.io/v1/": {"auth": "aHViOnB3"},
            "http://plain.example:8080/": {"username": "u", "password": "p"},
            "helper.example": {}
        }, "credsStore": "desktop"}"#;
        let local = find(text, "127.0.0.1:5000").unwrap();
        assert_eq!(
            (local.username.as_str(), local.password.as_str()),
            ("ci", "s3cr:et")
        );
        let hub = find(text, "docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "pw")
        );
        assert_eq!(find(text, "plain.example:8080").unwrap().username, "u");
        assert_eq!(find(text, "helper.example"), None);
        assert_eq!(find(text, "127.0.0.1:5001"), None);
        assert_eq!(find("{}", "docker.io"), None);
        assert!(!format!("{local:?}").contains("s3cr"));
    }

    #[test]
    fn malformed_configs_name_the_problem() {
        let path = Path::new("/x/config.json");
        let err = parse_docker_config("{", "h", path).unwrap_err().to_string();
        assert!(err.contains("/x/config.json is not valid JSON"), "{err}");
        let text = r#"{"auths": {"h": {"auth": "bm9jb2xvbg=="}}}"#; // "nocolon"
        let err = parse_docker_config(text, "h", path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth entry for h"), "{err}");
        let missing = from_docker_config(Path::new("/nonexistent/config.json"), "h").unwrap();
        assert_eq!(missing, None);
    }

    #[test]
    fn config_path_follows_docker() {
        let home = Path::new("/home/u");
        assert_eq!(
            docker_config_path(None, Some(home)),
            Some(PathBuf::from("/home/u/.docker/config.json"))
        );
        assert_eq!(
            docker_config_path(Some(OsStr::new("/etc/dc")), Some(home)),
            Some(PathBuf::from("/etc/dc/config.json"))
        );
        assert_eq!(docker_config_path(None, None), None);
    }
}
