//! What to build: [`ImageSpec`] and the parsers for its command-line pieces
//! (`KEY=VALUE`, `HOST:GUEST`, `OS/ARCH`, `SOURCE_DATE_EPOCH`). Each parser
//! is a `FromStr` so clap reports a bad value with our message.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::BuildError;
use crate::reference::Reference;

/// Everything `wasmpod image build` needs.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The image name (must carry a tag).
    pub reference: Reference,
    /// The `.wasm` to run; `None` builds a native image from `dirs`.
    pub wasm: Option<PathBuf>,
    /// Environment, in order; `PATH` is added unless present.
    pub env: Vec<EnvVar>,
    /// Default arguments (config `Cmd`).
    pub args: Vec<String>,
    /// Host trees copied into the image, in order (later ones win).
    pub dirs: Vec<DirMapping>,
    /// Config labels.
    pub labels: BTreeMap<String, String>,
    /// Overrides the platform (required for native images).
    pub platform: Option<Platform>,
    /// Overrides the entrypoint (required for native images).
    pub entrypoint: Option<String>,
    /// Seconds since the Unix epoch used for every timestamp.
    pub epoch: u64,
    /// Manifest annotations (`--annotation`).
    pub annotations: BTreeMap<String, String>,
    /// The config's `author` (`--author`).
    pub author: Option<String>,
    /// Build the CNCF wasm OCI artifact instead of a runnable image.
    pub artifact: bool,
    /// Put the wasm in a raw layer of this media type instead of the filesystem layer.
    pub wasm_layer: Option<String>,
}

impl ImageSpec {
    /// A spec for `reference` with everything else empty and epoch 0.
    pub fn new(reference: Reference) -> Self {
        Self {
            reference,
            wasm: None,
            env: Vec::new(),
            args: Vec::new(),
            dirs: Vec::new(),
            labels: BTreeMap::new(),
            platform: None,
            entrypoint: None,
            epoch: 0,
            annotations: BTreeMap::new(),
            wasm_layer: None,
            author: None,
            artifact: false,
        }
    }
}

/// `KEY=VALUE` split at the first `=`; `None` without `=` or with an empty key.
fn split_key_value(s: &str) -> Option<(String, String)> {
    let (key, value) = s.split_once('=')?;
    (!key.is_empty()).then(|| (key.to_owned(), value.to_owned()))
}

/// One `KEY=VALUE` environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// The name (non-empty).
    pub key: String,
    /// The value (may be empty).
    pub value: String,
}

impl FromStr for EnvVar {
    type Err = BuildError;

    /// # Errors
    /// [`BuildError::BadEnv`] without `=` or with an empty name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value) = split_key_value(s).ok_or_else(|| BuildError::BadEnv(s.to_owned()))?;
        Ok(Self { key, value })
    }
}

impl fmt::Display for EnvVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// One `KEY=VALUE` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The key (non-empty).
    pub key: String,
    /// The value.
    pub value: String,
}

impl FromStr for Label {
    type Err = BuildError;

    /// # Errors
    /// [`BuildError::BadLabel`] without `=` or with an empty key.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value) = split_key_value(s).ok_or_else(|| BuildError::BadLabel(s.to_owned()))?;
        Ok(Self { key, value })
    }
}

/// One `KEY=VALUE` manifest annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// The key (non-empty), e.g. `org.opencontainers.image.source`.
    pub key: String,
    /// The value.
    pub value: String,
}

impl FromStr for Annotation {
    type Err = BuildError;

    /// # Errors
    /// [`BuildError::BadAnnotation`] without `=` or with an empty key.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value) =
            split_key_value(s).ok_or_else(|| BuildError::BadAnnotation(s.to_owned()))?;
        Ok(Self { key, value })
    }
}

/// `HOST:GUEST`: copy a host file or tree to an absolute path in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMapping {
    /// The host file or directory.
    pub host: PathBuf,
    /// Normalised guest path relative to `/` (empty for the root itself).
    pub guest: String,
    /// The guest path was written with a trailing '/', so a single file
    /// goes inside it under its own name.
    pub into_dir: bool,
}

impl FromStr for DirMapping {
    type Err = BuildError;

    /// Splits at the last ':' so host paths may contain colons; the guest
    /// path must be absolute and must not contain `..`.
    ///
    /// # Errors
    /// [`BuildError::BadDir`] saying what is wrong.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| BuildError::BadDir {
            spec: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (host, guest) = s
            .rsplit_once(':')
            .ok_or_else(|| bad("expected HOST:GUEST, e.g. ./rootfs:/"))?;
        if host.is_empty() {
            return Err(bad("the HOST part is empty"));
        }
        if !guest.starts_with('/') {
            return Err(bad("the GUEST path must be absolute (start with '/')"));
        }
        let mut parts = Vec::new();
        for part in guest.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(bad("the GUEST path must not contain '..'")),
                part => parts.push(part),
            }
        }
        Ok(Self {
            host: PathBuf::from(host),
            guest: parts.join("/"),
            into_dir: guest.ends_with('/'),
        })
    }
}

/// `OS/ARCH[/VARIANT]`, e.g. `wasip1/wasm` or `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// GOOS-style operating system (`linux`, `wasip1`, `wasip2`).
    pub os: String,
    /// GOARCH-style architecture (`amd64`, `wasm`).
    pub architecture: String,
    /// CPU variant (`v8`), if any.
    pub variant: Option<String>,
}

impl Platform {
    /// A platform without a variant.
    pub fn new(os: &str, architecture: &str) -> Self {
        Self {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
        }
    }
}

impl FromStr for Platform {
    type Err = BuildError;

    /// # Errors
    /// [`BuildError::BadPlatform`] unless there are two or three non-empty
    /// lower-case parts.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let part_ok = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(part_ok) {
            return Err(BuildError::BadPlatform(s.to_owned()));
        }
        Ok(Self {
            os: parts[0].to_owned(),
            architecture: parts[1].to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// Parses the value of `SOURCE_DATE_EPOCH`; unset or empty means 0 so that
/// builds are reproducible by default.
///
/// # Errors
/// [`BuildError::BadSourceDateEpoch`] if it is set but not a number.
pub fn source_date_epoch(value: Option<&str>) -> Result<u64, BuildError> {
    match value.map(str::trim) {
        None | Some("") => Ok(0),
        Some(v) => v
            .parse()
            .map_err(|_| BuildError::BadSourceDateEpoch(v.to_owned())),
    }
}

/// Formats seconds since the epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub fn rfc3339(epoch: u64) -> String {
    let days = epoch / 86_400;
    let secs = epoch % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian), for
/// non-negative day counts; avoids a date crate for one conversion.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed setup step should just fail the test
mod tests {
    use super::*;

    #[test]
    fn parses_env_and_labels() {
        let env: EnvVar = "A=b=c".parse().unwrap();
        assert_eq!((env.key.as_str(), env.value.as_str()), ("A", "b=c"));
        assert!("EMPTY=".parse::<EnvVar>().is_ok());
        let err = "NOEQUALS".parse::<EnvVar>().unwrap_err().to_string();
        assert!(err.contains("NOEQUALS") && err.contains("no '='"), "{err}");
        assert!("=x".parse::<EnvVar>().is_err());
        assert!("k".parse::<Label>().is_err());
        let a: Annotation = "org.opencontainers.image.source=https://x/y"
            .parse()
            .unwrap();
        assert_eq!(a.value, "https://x/y");
        let err = "=v".parse::<Annotation>().unwrap_err().to_string();
        assert!(err.contains("annotation"), "{err}");
    }

    #[test]
    fn parses_dir_mappings() {
        let m: DirMapping = "./root:/".parse().unwrap();
        assert_eq!((m.host, m.guest.as_str()), (PathBuf::from("./root"), ""));
        let m: DirMapping = "c:dir:/usr//local/./bin/".parse().unwrap();
        assert_eq!(m.host, PathBuf::from("c:dir"));
        assert_eq!(m.guest, "usr/local/bin");
        assert!(m.into_dir);
        for (bad, why) in [
            ("nocolon", "HOST:GUEST"),
            (":/x", "HOST part is empty"),
            ("a:rel", "absolute"),
            ("a:/x/../y", "'..'"),
        ] {
            let err = bad.parse::<DirMapping>().unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn parses_platforms() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            "wasip1/wasm".parse::<Platform>().unwrap(),
            Platform::new("wasip1", "wasm")
        );
        for bad in ["linux", "linux/", "Linux/amd64", "a/b/c/d"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }

    #[test]
    fn epochs_and_timestamps() {
        assert_eq!(source_date_epoch(None).unwrap(), 0);
        assert_eq!(
            source_date_epoch(Some("1700000000")).unwrap(),
            1_700_000_000
        );
        assert!(source_date_epoch(Some("yesterday")).is_err());
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
