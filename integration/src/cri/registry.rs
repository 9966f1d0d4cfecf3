//! A private `docker-registry` (distribution 2.8) on `127.0.0.1:<port>`, and pushing test
//! images to it with the wasmpod CLI (`wasmpod image push --insecure`).
//!
//! Storage and config live under the caller's temp dir; the process is stopped by PID.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;

use super::config::registry_config;
use crate::paths;
use crate::process::{poll, run_with_timeout};

const PUSH_TIMEOUT: Duration = Duration::from_secs(120);

/// A running registry; see the module docs.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    addr: String,
    log: PathBuf,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// True when `GET /v2/` on `addr` answers with an HTTP status line.
fn answers(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.")
}

impl Registry {
    /// Starts `docker-registry serve` with storage under `dir/registry`.
    ///
    /// # Errors
    /// When the binary is missing (`apt-get install docker-registry`) or it does not answer.
    pub fn start(dir: &Path) -> Result<Self> {
        let mut last = None;
        // The port is picked by binding and closing: retry if someone took it meanwhile.
        for _ in 0..3 {
            match Self::try_start(dir) {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("registry did not start")))
    }

    fn try_start(dir: &Path) -> Result<Self> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let config = dir.join("registry.yml");
        fs::write(&config, registry_config(&dir.join("registry"), &addr))?;
        let log = dir.join("registry.log");
        let out = File::create(&log)?;
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; if the test process dies the registry follows.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .context("spawn docker-registry (apt-get install docker-registry)")?;
        let mut me = Self { child, addr, log };
        let up = poll("the registry to answer", Duration::from_secs(15), || {
            if let Some(status) = me.child.try_wait()? {
                bail!("docker-registry exited: {status}");
            }
            Ok(answers(&me.addr).then_some(()))
        });
        if let Err(e) = up {
            let log = fs::read_to_string(&me.log).unwrap_or_default();
            me.stop();
            return Err(e.context(format!("registry log:\n{log}")));
        }
        Ok(me)
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The registry's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Pushes the OCI-layout tar `tar` as `<addr>/<repo_tag>`.
    ///
    /// # Errors
    /// When the CLI is missing or the push fails.
    pub fn push(&self, tar: &Path, repo_tag: &str) -> Result<()> {
        let cli = paths::require_cli()?;
        let target = format!("{}/{repo_tag}", self.addr);
        let mut cmd = Command::new(cli);
        cmd.args(["image", "push", &target, "--insecure", "--from"])
            .arg(tar);
        run_with_timeout(&mut cmd, PUSH_TIMEOUT)?
            .success()
            .with_context(|| format!("push {} as {target}", tar.display()))?;
        Ok(())
    }

    /// Stops the registry: SIGTERM, then SIGKILL after 5 s.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        let gone = poll("the registry to exit", Duration::from_secs(5), || {
            Ok(self.child.try_wait()?.map(|_| ()))
        });
        if gone.is_err() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
