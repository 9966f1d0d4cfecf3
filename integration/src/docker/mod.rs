//! One private Docker Engine per test, as a `docker run` user sees wasmpod.
//!
//! [`Docker::start`] writes a `daemon.json` into a unique temp dir (data-root, exec-root,
//! pidfile and the API socket all inside it; no iptables, no bridge, the containerd image
//! store, and a `wasmpod` runtime alias) and starts dockerd with `--config-file`. dockerd
//! starts its own *managed* containerd under its exec-root, so containerd's socket, state and
//! root are private too; the system's `/run/containerd`, `/var/lib/docker` and
//! `/var/run/docker.sock` are never used. Containers go to a cgroup parent unique to the
//! daemon, so what they leave in cgroupfs is found and removed by name.
//!
//! `cleanup` checks and removes what a daemon leaves (containers, tasks, shims, mounts,
//! cgroups); `ops` are the docker CLI operations the tests use (load, run, inspect, ...).
//!
//! Environment: `WASMPOD_DOCKERD` (default: see [`dockerd_path`]),
//! `WASMPOD_DOCKER_CONTAINERD_DIR` (dir holding the containerd that dockerd starts; default
//! `../bin` from dockerd's dir: the `.work/<suite>/bin` dir itself, or `usr/bin` beside an
//! unpacked `usr/sbin/dockerd`), `WASMPOD_DOCKER` (the CLI, default `/usr/local/bin/docker`),
//! `WASMPOD_IT_LOG_LEVEL`.
//!
//! ```no_run
//! use wasmpod_integration::{docker::with_docker, images};
//! with_docker(|d| {
//!     let hello = d.load(images().wasm("hello")?)?;
//!     let out = d.run_rm(wasmpod_integration::docker::WASM, &hello, &[])?;
//!     out.success()?;
//!     Ok(())
//! })
//! # .unwrap();
//! ```

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;

use crate::containerd::unique_name;
use crate::paths;
use crate::process::{poll, run_with_timeout, Output};
use crate::system;

mod cleanup;
mod ops;

/// Deadline for one docker CLI command.
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(90);

/// `docker run` flags that select the wasmpod runtime by its type and the wasm platform.
pub const WASM: &[&str] = &[
    "--runtime",
    paths::WASMPOD_RUNTIME,
    "--platform",
    "wasip1/wasm",
];

/// The short runtime name `daemon.json` maps to [`paths::WASMPOD_RUNTIME`].
pub const RUNTIME_ALIAS: &str = "wasmpod";

/// The containerd namespace dockerd uses for its containers.
pub const MOBY_NAMESPACE: &str = "moby";

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The dockerd binary: `WASMPOD_DOCKERD`; else the one beside the CRI tests' containerd
/// ([`crate::cri::containerd_path`]) when there is one, as in `.work/forky/bin` (Docker 28
/// with containerd 2.1) and `.work/trixie/bin` (Docker 26 with containerd 1.7); else trixie's.
pub fn dockerd_path() -> PathBuf {
    env_path("WASMPOD_DOCKERD").unwrap_or_else(|| {
        let beside = crate::cri::containerd_path().with_file_name("dockerd");
        if paths::is_executable(&beside) {
            beside
        } else {
            paths::workspace_root().join(".work/trixie/bin/dockerd")
        }
    })
}

/// The dir holding the containerd dockerd starts and its runc shim.
pub fn containerd_dir() -> PathBuf {
    env_path("WASMPOD_DOCKER_CONTAINERD_DIR").unwrap_or_else(|| {
        let dockerd = dockerd_path();
        let usr = dockerd.parent().and_then(Path::parent);
        usr.map_or_else(|| PathBuf::from("/usr/bin"), |u| u.join("bin"))
    })
}

/// The docker CLI: `WASMPOD_DOCKER`, default `/usr/local/bin/docker`.
pub fn docker_cli_path() -> PathBuf {
    env_path("WASMPOD_DOCKER").unwrap_or_else(|| {
        // The machine's own client when it has one, else trixie's (scripts/fetch-debian.sh).
        let local = PathBuf::from("/usr/local/bin/docker");
        if local.exists() {
            local
        } else {
            containerd_dir().join("docker")
        }
    })
}

/// The private `daemon.json` for a daemon living in `dir`, its containers under the cgroup
/// `cgroup_parent`. Pure, so it is unit-tested.
pub fn daemon_config(dir: &Path, cgroup_parent: &str, debug: bool) -> serde_json::Value {
    let p = |sub: &str| dir.join(sub).display().to_string();
    serde_json::json!({
        "data-root": p("data"),
        "exec-root": p("exec"),
        "pidfile": p("docker.pid"),
        "hosts": [format!("unix://{}", p("docker.sock"))],
        "iptables": false,
        "ip6tables": false,
        "bridge": "none",
        // Without a proxy binary on PATH dockerd refuses to start; no ports are published.
        "userland-proxy": false,
        "cgroup-parent": cgroup_parent,
        "debug": debug,
        "features": {"containerd-snapshotter": true},
        "runtimes": {RUNTIME_ALIAS: {"runtimeType": paths::WASMPOD_RUNTIME}},
    })
}

/// A private dockerd (with its managed containerd); see the module docs.
#[derive(Debug)]
pub struct Docker {
    dir: PathBuf,
    sock: PathBuf,
    cgroup_parent: String,
    child: Option<Child>,
    log: PathBuf,
    /// What is mounted under the dir once the idle daemon is up (its data-root).
    idle_mounts: Vec<PathBuf>,
    /// Test image name -> the reference `docker load` reported.
    loaded: Mutex<HashMap<String, String>>,
}

impl Docker {
    /// Starts dockerd with a private `daemon.json` and waits until `docker version` answers.
    ///
    /// dockerd's `PATH` is the wasmpod bin dir (the shim), [`containerd_dir`], then
    /// `/usr/sbin:/usr/bin:/sbin:/bin` (the host's runc).
    ///
    /// # Errors
    /// When a binary is missing or the daemon does not come up (with its log tail).
    pub fn start() -> Result<Self> {
        let dockerd = dockerd_path();
        if !paths::is_executable(&dockerd) {
            bail!(
                "dockerd is missing: {} (fetch Docker Engine 26 and containerd 1.7 with \
                 `make trixie`, Docker 28 and containerd 2.1 with `make forky`, or set \
                 WASMPOD_DOCKERD)",
                dockerd.display()
            );
        }
        let ctd = containerd_dir().join("containerd");
        if !paths::is_executable(&ctd) {
            bail!(
                "{} is missing (set WASMPOD_DOCKER_CONTAINERD_DIR)",
                ctd.display()
            );
        }
        paths::require_shim()?;
        let dir = tempfile::Builder::new()
            .prefix("wasmpod-dk-")
            .tempdir()
            .context("create temp dir")?
            .keep();
        let mut me = Self {
            sock: dir.join("docker.sock"),
            cgroup_parent: unique_name("wasmpod-dk"),
            child: None,
            log: dir.join("dockerd.log"),
            idle_mounts: Vec::new(),
            loaded: Mutex::default(),
            dir,
        };
        me.spawn(&dockerd).with_context(|| {
            format!(
                "start {} (log tail:\n{})",
                dockerd.display(),
                me.log_tail(40)
            )
        })?;
        me.idle_mounts = system::mounts_under(&me.dir);
        Ok(me)
    }

    fn spawn(&mut self, dockerd: &Path) -> Result<()> {
        let debug = std::env::var("WASMPOD_IT_LOG_LEVEL").is_ok_and(|l| l == "debug");
        let config = daemon_config(&self.dir, &self.cgroup_parent, debug);
        let config_path = self.dir.join("daemon.json");
        fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
        let path = std::env::join_paths(
            [paths::bin_dir(), containerd_dir()]
                .into_iter()
                .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from)),
        )?;
        let log = File::create(&self.log)?;
        let mut cmd = Command::new(dockerd);
        cmd.arg("--config-file")
            .arg(&config_path)
            .env_clear()
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        for pass in ["RUST_LOG", "RUST_BACKTRACE", "WASMPOD_LOG"] {
            if let Some(v) = std::env::var_os(pass) {
                cmd.env(pass, v);
            }
        }
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        // If the test process dies, dockerd gets SIGTERM (and stops its containerd).
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        self.child = Some(cmd.spawn().context("spawn dockerd")?);
        poll("dockerd to answer", Duration::from_secs(60), || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("dockerd exited early: {status}");
            }
            if !self.sock.exists() {
                return Ok(None);
            }
            Ok(self.docker(["version"])?.success().is_ok().then_some(()))
        })
    }

    /// The temp dir holding everything of this daemon.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Docker API socket (`docker -H unix://...`).
    pub fn socket(&self) -> &Path {
        &self.sock
    }

    /// The socket of the containerd dockerd manages (its shims get it as `-address`).
    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.join("exec/containerd/containerd.sock")
    }

    /// The cgroup parent of this daemon's containers (`/sys/fs/cgroup/<ctl>/<parent>/<id>`).
    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    /// dockerd's PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `lines` lines of dockerd's log (its containerd and the shims log there too).
    pub fn log_tail(&self, lines: usize) -> String {
        crate::process::tail_of(&self.log, lines)
    }

    /// Lines of dockerd's log that contain `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// A `docker -H unix://SOCK` command with a clean environment and a private CLI config.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(docker_cli_path());
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &self.dir)
            .env("DOCKER_CONFIG", self.dir.join("cli"))
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()));
        cmd
    }

    /// Runs `docker` with `args` and returns its output whatever the exit status.
    ///
    /// # Errors
    /// When the CLI cannot be spawned or takes longer than [`DOCKER_TIMEOUT`].
    pub fn docker<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run_with_timeout(self.command().args(args), DOCKER_TIMEOUT)
    }

    /// A `ctr` command on dockerd's containerd, namespace [`MOBY_NAMESPACE`].
    pub fn ctr_command(&self) -> Command {
        let mut cmd = Command::new(containerd_dir().join("ctr"));
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .arg("-a")
            .arg(self.containerd_socket())
            .arg("-n")
            .arg(MOBY_NAMESPACE);
        cmd
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "dockerd log tail ({}):\n{}",
                self.log.display(),
                self.log_tail(40)
            );
        }
        if self.child.is_some() {
            self.remove_containers();
        }
        self.stop_daemon();
        let problems = self.force_cleanup();
        if !problems.is_empty() {
            eprintln!("dockerd teardown: {}", problems.join("; "));
        }
    }
}

/// Runs `body` against a fresh private dockerd, checks that the body left no container,
/// task, shim, mount or cgroup, then stops the daemon and checks that nothing of it is left.
///
/// On failure dockerd's log tail is printed (libtest shows it with the failure).
///
/// # Errors
/// What `body` returns, or what [`Docker::assert_clean`] or [`Docker::shutdown`] finds.
pub fn with_docker(body: impl FnOnce(&Docker) -> Result<()>) -> Result<()> {
    let mut d = Docker::start()?;
    let result = body(&d).and_then(|()| d.assert_clean());
    if result.is_err() {
        eprintln!("dockerd log tail:\n{}", d.log_tail(60));
    }
    let stopped = d.shutdown();
    result.and(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything the daemon writes is under its dir, and the wasmpod alias is declared.
    #[test]
    fn config_is_private() {
        let c = daemon_config(Path::new("/tmp/x"), "grp", false);
        for key in ["data-root", "exec-root", "pidfile"] {
            assert!(c[key].as_str().unwrap().starts_with("/tmp/x/"), "{key}");
        }
        assert_eq!(c["hosts"][0], "unix:///tmp/x/docker.sock");
        assert_eq!(c["iptables"], false);
        assert_eq!(c["bridge"], "none");
        assert_eq!(c["cgroup-parent"], "grp");
        assert_eq!(c["features"]["containerd-snapshotter"], true);
        assert_eq!(
            c["runtimes"]["wasmpod"]["runtimeType"],
            "io.containerd.wasmpod.v1"
        );
    }
}
