//! A private containerd configuration, derived from `containerd config default`.
//!
//! Pure text rewriting of the version-2 TOML that containerd 1.6 and 1.7 print: every path
//! the daemon would otherwise take under `/run/containerd`, `/var/lib/containerd` or
//! `/opt/containerd` is pointed into the instance's temp dir. No I/O here.

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

/// Rewrites the default config for a private instance.
///
/// Replaced: `root`, `state`, `temp`, `disabled_plugins` (the CRI plugin is off: these
/// tests drive containerd through ctr), `grpc.address`, `ttrpc.address`, `debug.address`
/// and `metrics.address` (both off), `debug.level`, and the `opt` plugin's `path`.
///
/// # Errors
/// When one of those keys is missing, so a changed default config is noticed.
pub fn private_config(default: &str, s: &Settings<'_>) -> Result<String> {
    let d = s.dir;
    let wanted: Vec<(&str, &str, String)> = vec![
        ("", "root", quote(&d.join("root"))),
        ("", "state", quote(&d.join("state"))),
        ("", "temp", quote(&d.join("tmp"))),
        (
            "",
            "disabled_plugins",
            r#"["io.containerd.grpc.v1.cri"]"#.into(),
        ),
        ("grpc", "address", quote(s.grpc)),
        ("ttrpc", "address", quote(s.ttrpc)),
        ("debug", "address", r#""""#.into()),
        ("debug", "level", format!("{:?}", s.log_level)),
        ("metrics", "address", r#""""#.into()),
        (
            r#"plugins."io.containerd.internal.v1.opt""#,
            "path",
            quote(&d.join("opt")),
        ),
    ];
    let mut found = vec![false; wanted.len()];
    let mut section = String::new();
    let mut out = String::with_capacity(default.len());
    for line in default.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            section = t.trim_start_matches('[').trim_end_matches(']').to_string();
        }
        let mut replaced = None;
        if let Some((key, _)) = t.split_once(" = ") {
            for (i, (sec, k, v)) in wanted.iter().enumerate() {
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
        .filter(|(_, f)| !**f)
        .map(|((sec, k, _), _)| format!("[{sec}] {k}"))
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
        assert!(cfg.contains("disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"));
        assert!(cfg.contains("  level = \"info\"\n"));
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
