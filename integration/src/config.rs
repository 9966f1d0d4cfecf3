//! A private containerd configuration, derived from `containerd config default`.
//!
//! Pure text rewriting of the TOML that `containerd config default` prints, `version = 2`
//! (containerd 1.6, 1.7) or `version = 3` (containerd 2.x, which quotes plugin ids with `'`
//! instead of `"`): every path the daemon would otherwise take under `/run/containerd`,
//! `/var/lib/containerd` or `/opt/containerd` is pointed into the instance's temp dir. No I/O
//! here.

use std::path::Path;

use anyhow::{bail, Result};

/// The settings one private daemon gets.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    /// Temp dir everything lives under.
    pub dir: &'a Path,
    /// gRPC socket (`ctr -a`).
    pub grpc: &'a Path,
    /// ttrpc socket.
    pub ttrpc: &'a Path,
    /// `[debug] level`: "info", "debug"...
    pub log_level: &'a str,
}

fn quote(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// Plugins the ctr tests turn off: the CRI (1.x: one plugin; 2.x: three, plus its pod sandbox
/// controller and the gRPC service over sandbox controllers, which fail to load without it)
/// and NRI, which containerd 2 enables by default with its socket at `/var/run/nri/nri.sock`,
/// shared by every daemon on the host. Ids a version does not have are ignored by it.
const DISABLED_PLUGINS: &str = concat!(
    r#"["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "#,
    r#""io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox", "#,
    r#""io.containerd.grpc.v1.sandbox-controllers", "io.containerd.nri.v1.nri"]"#
);

/// A `[section]` header's name with containerd 2's `'quoted'` keys written as 1.x's
/// `"quoted"` ones, so one table of wanted keys serves both.
fn section_name(header: &str) -> String {
    header
        .trim_start_matches('[')
        .trim_end_matches(']')
        .replace('\'', "\"")
}

/// Rewrites the default config for a private instance.
///
/// Replaced: `root`, `state`, `temp`, `disabled_plugins` ([`DISABLED_PLUGINS`]: these tests
/// drive containerd through ctr), `grpc.address`, `ttrpc.address`, `debug.address` and
/// `metrics.address` (both off), `debug.level`, and the `opt` plugin's `path`; and where the
/// version has it, the image verifier's `bin_dir` (containerd 2) under the temp dir.
///
/// # Errors
/// When one of the required keys is missing, so a changed default config is noticed.
pub fn private_config(default: &str, s: &Settings<'_>) -> Result<String> {
    let d = s.dir;
    // (section, key, value, required)
    let wanted: Vec<(&str, &str, String, bool)> = vec![
        ("", "root", quote(&d.join("root")), true),
        ("", "state", quote(&d.join("state")), true),
        ("", "temp", quote(&d.join("tmp")), true),
        ("", "disabled_plugins", DISABLED_PLUGINS.into(), true),
        ("grpc", "address", quote(s.grpc), true),
        ("ttrpc", "address", quote(s.ttrpc), true),
        ("debug", "address", r#""""#.into(), true),
        ("debug", "level", format!("{:?}", s.log_level), true),
        ("metrics", "address", r#""""#.into(), true),
        (
            r#"plugins."io.containerd.internal.v1.opt""#,
            "path",
            quote(&d.join("opt")),
            true,
        ),
        (
            r#"plugins."io.containerd.image-verifier.v1.bindir""#,
            "bin_dir",
            quote(&d.join("opt/image-verifier/bin")),
            false,
        ),
    ];
    let mut found = vec![false; wanted.len()];
    let mut section = String::new();
    let mut out = String::with_capacity(default.len());
    for line in default.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            section = section_name(t);
        }
        let mut replaced = None;
        if let Some((key, _)) = t.split_once(" = ") {
            for (i, (sec, k, v, _)) in wanted.iter().enumerate() {
                if *sec == section && *k == key.trim() {
                    let indent = &line[..line.len() - line.trim_start().len()];
                    replaced = Some(format!("{indent}{k} = {v}"));
                    found[i] = true;
                }
            }
        }
        out.push_str(replaced.as_deref().unwrap_or(line));
        out.push('\n');
    }
    let missing: Vec<String> = wanted
        .iter()
        .zip(&found)
        .filter(|((_, _, _, required), f)| *required && !**f)
        .map(|((sec, k, _, _), _)| format!("[{sec}] {k}"))
        .collect();
    if !missing.is_empty() {
        bail!("containerd's default config lacks {}", missing.join(", "));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = r#"disabled_plugins = []
root = "/var/lib/containerd"
state = "/run/containerd"
temp = ""
version = 2

[debug]
  address = ""
  level = ""

[grpc]
  address = "/run/containerd/containerd.sock"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "/opt/containerd"

[ttrpc]
  address = ""
"#;

    fn settings(dir: &Path) -> Settings<'_> {
        Settings {
            dir,
            grpc: Path::new("/t/x/c.sock"),
            ttrpc: Path::new("/t/x/t.sock"),
            log_level: "info",
        }
    }

    /// Every host path of the default config is replaced by one under the temp dir.
    #[test]
    fn rewrites_every_host_path() -> Result<()> {
        let cfg = private_config(DEFAULT, &settings(Path::new("/t/x")))?;
        for bad in ["/run/containerd", "/var/lib/containerd", "/opt/containerd"] {
            assert!(!cfg.contains(bad), "{bad} left in:\n{cfg}");
        }
        assert!(cfg.contains("root = \"/t/x/root\"\n"));
        assert!(cfg.contains("  address = \"/t/x/c.sock\"\n"));
        assert!(cfg.contains("  address = \"/t/x/t.sock\"\n"));
        assert!(cfg.contains("    path = \"/t/x/opt\"\n"));
        assert!(cfg.contains(&format!("disabled_plugins = {DISABLED_PLUGINS}\n")));
        assert!(cfg.contains("  level = \"info\"\n"));
        Ok(())
    }

    /// Excerpt of containerd 2.1's `config default`: `version = 3`, `'quoted'` plugin ids.
    const DEFAULT_V3: &str = r#"version = 3
root = '/var/lib/containerd'
state = '/run/containerd'
temp = ''
disabled_plugins = []

[grpc]
  address = '/run/containerd/containerd.sock'

[ttrpc]
  address = ''

[debug]
  address = ''
  level = ''

[metrics]
  address = ''

[plugins]
  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = false

  [plugins.'io.containerd.image-verifier.v1.bindir']
    bin_dir = '/opt/containerd/image-verifier/bin'

  [plugins.'io.containerd.internal.v1.opt']
    path = '/opt/containerd'

  [plugins.'io.containerd.nri.v1.nri']
    disable = false
    socket_path = '/var/run/nri/nri.sock'
"#;

    /// containerd 2's version-3 default gets the same private paths; its CRI plugins and NRI
    /// (on by default, with a host-wide socket) are disabled.
    #[test]
    fn rewrites_a_version_3_config() -> Result<()> {
        let cfg = private_config(DEFAULT_V3, &settings(Path::new("/t/x")))?;
        for bad in ["/run/containerd", "/var/lib/containerd", "/opt/containerd"] {
            assert!(!cfg.contains(bad), "{bad} left in:\n{cfg}");
        }
        assert!(cfg.starts_with("version = 3\n"), "{cfg}");
        assert!(cfg.contains("    path = \"/t/x/opt\"\n"));
        assert!(cfg.contains("    bin_dir = \"/t/x/opt/image-verifier/bin\"\n"));
        for id in [
            "io.containerd.cri.v1.images",
            "io.containerd.cri.v1.runtime",
            "io.containerd.grpc.v1.cri",
            "io.containerd.nri.v1.nri",
        ] {
            assert!(DISABLED_PLUGINS.contains(&format!("\"{id}\"")), "{id}");
        }
        Ok(())
    }

    /// A default config without a key the harness relies on is an error naming the key.
    #[test]
    fn missing_key_is_named() {
        let cut = DEFAULT.replace("[ttrpc]\n  address = \"\"\n", "");
        let err = private_config(&cut, &settings(Path::new("/t/x"))).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("[ttrpc] address"), "{msg}");
    }
}
