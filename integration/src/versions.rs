//! The versions of the daemons under test, read from their `--version` output.
//!
//! The suite runs against containerd 1.6, 1.7 and 2.1 and Docker 26 and 28; a few things
//! differ by version (containerd 2's `version = 3` config, its CRI plugin ids), and the
//! newer ones come from Debian testing, whose versions move. This module only parses and
//! runs `--version`; it decides nothing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::process::run_with_timeout;

/// A daemon's version: the numbers that decide behaviour and the text to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Major version (`2` of `2.1.9+unknown`).
    pub major: u32,
    /// Minor version (`1` of `2.1.9+unknown`).
    pub minor: u32,
    /// The version word as printed (`2.1.9+unknown`, `1.6.20~ds1`, `28.5.2+dfsg4,`).
    pub text: String,
}

impl Version {
    /// True when this version is `major.minor` or newer.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text.trim_end_matches(','))
    }
}

/// The first word of `output` that starts with `N.N`, as a [`Version`].
///
/// `containerd --version` prints `containerd github.com/containerd/containerd/v2 2.1.9+unknown`
/// (1.x: `... 1.6.20~ds1 <revision>`), `dockerd --version` `Docker version 28.5.2+dfsg4, build ...`.
///
/// # Errors
/// When no word looks like a version.
pub fn parse(output: &str) -> Result<Version> {
    output
        .split_whitespace()
        .find_map(|word| {
            let mut nums = word.split(|c: char| !c.is_ascii_digit());
            let major = nums.next()?.parse().ok()?;
            let minor = nums.next()?.parse().ok()?;
            Some(Version {
                major,
                minor,
                text: word.to_string(),
            })
        })
        .ok_or_else(|| anyhow!("no version in {output:?}"))
}

/// `binary --version`, parsed.
///
/// # Errors
/// When the binary does not run or prints no version.
pub fn of(binary: &Path) -> Result<Version> {
    let out = run_with_timeout(
        Command::new(binary).arg("--version"),
        Duration::from_secs(30),
    )?;
    out.success()?;
    parse(&out.stdout).with_context(|| format!("{} --version", binary.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The three containerd lines and Docker's, as the binaries print them.
    #[test]
    fn parses_containerd_and_docker() -> Result<()> {
        let v = parse("containerd github.com/containerd/containerd/v2 2.1.9+unknown \n")?;
        assert_eq!(
            (v.major, v.minor, v.to_string()),
            (2, 1, "2.1.9+unknown".into())
        );
        let v =
            parse("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3")?;
        assert_eq!((v.major, v.minor), (1, 6));
        assert!(v.at_least(1, 6) && !v.at_least(1, 7));
        let v =
            parse("Docker version 28.5.2+dfsg4, build 3ef3c07c883be49a2e8097bcf6d2952fce1d70eb")?;
        assert_eq!((v.major, v.to_string()), (28, "28.5.2+dfsg4".into()));
        assert!(parse("containerd github.com/containerd/containerd").is_err());
        Ok(())
    }
}
