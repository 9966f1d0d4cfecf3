//! A private containerd: `containerd config default` with root, state, the
//! gRPC and ttrpc sockets and the opt dir moved into a temp dir, and the
//! CRI plugin disabled. Never touches /run/containerd or /var/lib/containerd.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::stop;

/// The containerd binary: `$WASMPOD_CONTAINERD`, else `containerd` on PATH.
pub fn binary() -> String {
    std::env::var("WASMPOD_CONTAINERD").unwrap_or_else(|_| "containerd".to_owned())
}

/// A running private containerd; stopped by PID on drop.
pub struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Starts it and waits for its socket.
    pub fn start() -> Result<Self> {
        // Short path: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new().prefix("wpc").tempdir_in("/tmp")?;
        let d = dir.path().display().to_string();
        let default = Command::new(binary())
            .args(["config", "default"])
            .output()
            .context("containerd config default")?;
        let text = String::from_utf8(default.stdout)?;
        let mut config = String::new();
        let mut section = String::new();
        for line in text.lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with('[') {
                section = trimmed.to_owned();
            }
            let replaced = match (section.as_str(), trimmed) {
                (_, l) if l.starts_with("disabled_plugins =") => {
                    r#"disabled_plugins = ["io.containerd.grpc.v1.cri"]"#.to_owned()
                }
                (_, l) if l.starts_with("root =") && !line.starts_with(' ') => {
                    format!(r#"root = "{d}/root""#)
                }
                (_, l) if l.starts_with("state =") && !line.starts_with(' ') => {
                    format!(r#"state = "{d}/state""#)
                }
                ("[grpc]", l) if l.starts_with("address =") => {
                    format!(r#"  address = "{d}/c.sock""#)
                }
                ("[ttrpc]", l) if l.starts_with("address =") => {
                    format!(r#"  address = "{d}/c.sock.ttrpc""#)
                }
                ("[debug]", l) if l.starts_with("address =") => r#"  address = """#.to_owned(),
                (_, l) if l.starts_with(r#"path = "/opt/containerd""#) => {
                    format!(r#"    path = "{d}/opt""#)
                }
                _ => line.to_owned(),
            };
            config.push_str(&replaced);
            config.push('\n');
        }
        if !config.contains(&format!("{d}/c.sock")) || !config.contains(&format!("{d}/root")) {
            bail!("unexpected `containerd config default` output; cannot relocate it");
        }
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config)?;
        let log = dir.path().join("containerd.log");
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(&config_path)
            .stdout(std::fs::File::create(dir.path().join("containerd.out"))?)
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("start containerd")?;
        let socket = dir.path().join("c.sock");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("containerd exited ({status}):\n{log}");
            }
            if Instant::now() > deadline {
                stop(&mut child);
                bail!("containerd did not create {} in 20 s", socket.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self { child, dir })
    }

    /// The gRPC socket (`ctr -a`).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    /// Runs `ctr -a SOCK -n NS ARGS` and returns stdout.
    pub fn ctr(&self, namespace: &str, args: &[&str]) -> Result<String> {
        let out = Command::new("ctr")
            .arg("-a")
            .arg(self.socket())
            .args(["-n", namespace])
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("ctr {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Its root dir (for tests that want to look around).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
