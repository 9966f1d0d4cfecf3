//! One private containerd daemon per test: start, talk to it through `ctr`, tear it down.
//!
//! Everything the daemon owns (root, state, sockets, fifos, runc state, logs) lives under a
//! unique temp dir; it never touches `/run/containerd` or `/var/lib/containerd` itself.
//! (Shims still create their ttrpc sockets in `/run/containerd/s`, whatever the containerd
//! version: that is the shim's doing, and they remove them on exit.) Dropping a
//! [`Containerd`] deletes tasks and containers, stops the daemon by PID, kills shims that
//! name its address, unmounts what is left under the temp dir and removes it.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;

use crate::config::{private_config, Settings};
use crate::paths;
use crate::process::{poll, run_with_timeout, signal_and_wait, Output};
use crate::system;

mod cleanup;
mod ops;

/// Deadline for one ctr command that is not a container run.
pub const CTR_TIMEOUT: Duration = Duration::from_secs(60);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique in this test process and across concurrent ones: `<prefix>-<pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// One row of `ctr task ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// Container id.
    pub id: String,
    /// Host pid of the init process.
    pub pid: u32,
    /// CREATED, RUNNING, PAUSED, STOPPED...
    pub status: String,
}

/// A private containerd daemon; see the module docs.
#[derive(Debug)]
pub struct Containerd {
    dir: PathBuf,
    grpc: PathBuf,
    namespace: String,
    binary: PathBuf,
    ctr: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    /// Test image name -> the reference ctr stored it under.
    refs: Mutex<HashMap<String, String>>,
    /// Extra variables for the daemon's environment (its shims inherit them).
    env: Vec<(String, String)>,
}

/// The ctr shipped beside `containerd` (so a containerd 1.7 gets its 1.7 ctr), else
/// [`paths::ctr_path`].
fn ctr_for(containerd: &Path) -> PathBuf {
    let beside = containerd.with_file_name("ctr");
    if std::env::var_os("WASMPOD_CTR").is_none() && beside.is_file() {
        beside
    } else {
        paths::ctr_path()
    }
}

impl Containerd {
    /// Starts the containerd named by `WASMPOD_CONTAINERD` (default `/usr/bin/containerd`).
    ///
    /// # Errors
    /// See [`Containerd::start`].
    pub fn from_env() -> Result<Self> {
        Self::start(paths::containerd_path())
    }

    /// Starts `binary` with a private config and waits until it answers on its socket.
    ///
    /// The daemon's `PATH` is the wasmpod bin dir, then the dir holding `binary` (so 1.7
    /// finds its own runc shim), then `/usr/sbin:/usr/bin:/sbin:/bin`. Its environment also
    /// holds `WASMPOD_LEAK_CANARY=1`, which no container may see.
    ///
    /// # Errors
    /// When the config cannot be made or the daemon does not come up (with its log tail).
    pub fn start(binary: impl AsRef<Path>) -> Result<Self> {
        Self::start_with_env(binary, &[])
    }

    /// Like [`Containerd::start`], with `env` added to the daemon's environment; containerd
    /// passes its environment on to the shims it starts.
    ///
    /// # Errors
    /// See [`Containerd::start`].
    pub fn start_with_env(binary: impl AsRef<Path>, env: &[(&str, &str)]) -> Result<Self> {
        let binary = binary.as_ref().to_path_buf();
        let dir = tempfile::Builder::new()
            .prefix("wasmpod-it-")
            .tempdir()
            .context("create temp dir")?
            .keep();
        let mut me = Self {
            grpc: dir.join("c.sock"),
            namespace: unique_name("wasmpod-it"),
            ctr: ctr_for(&binary),
            log: dir.join("containerd.log"),
            child: None,
            refs: Mutex::default(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            binary,
            dir,
        };
        me.spawn().with_context(|| {
            format!(
                "start {} (log tail:\n{})",
                me.binary.display(),
                me.log_tail(40)
            )
        })?;
        Ok(me)
    }

    fn spawn(&mut self) -> Result<()> {
        let default = run_with_timeout(
            Command::new(&self.binary).args(["config", "default"]),
            CTR_TIMEOUT,
        )?;
        default.success()?;
        let level = std::env::var("WASMPOD_IT_LOG_LEVEL").unwrap_or_else(|_| "info".into());
        let config = private_config(
            &default.stdout,
            &Settings {
                dir: &self.dir,
                grpc: &self.grpc,
                ttrpc: &self.dir.join("t.sock"),
                log_level: &level,
            },
        )?;
        let config_path = self.dir.join("config.toml");
        fs::write(&config_path, config)?;
        for sub in ["fifo", "runc"] {
            fs::create_dir_all(self.dir.join(sub))?;
        }

        let mut path = vec![paths::bin_dir()];
        if let Some(d) = self.binary.parent().filter(|d| !d.as_os_str().is_empty()) {
            path.push(d.to_path_buf());
        }
        path.extend(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
        let path = std::env::join_paths(path)?;

        // Appended: a restarted daemon's log follows the first one's.
        let log = File::options().create(true).append(true).open(&self.log)?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--config")
            .arg(&config_path)
            .env_clear()
            .env("PATH", path)
            .env("WASMPOD_LEAK_CANARY", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        // The group linger reaches the shims through the daemon: tests of the group race set it.
        for pass in ["RUST_LOG", "RUST_BACKTRACE", "WASMPOD_GROUP_LINGER_MS"] {
            if let Some(v) = std::env::var_os(pass) {
                cmd.env(pass, v);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        // If the test process dies, the daemon gets SIGTERM instead of lingering.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        self.child = Some(cmd.spawn().context("spawn containerd")?);

        let grpc = self.grpc.clone();
        poll("the containerd socket", Duration::from_secs(20), || {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("containerd exited early: {status}");
                }
            }
            Ok(grpc.exists().then_some(()))
        })?;
        poll("containerd to answer", Duration::from_secs(20), || {
            Ok(self.ctr(["version"])?.success().is_ok().then_some(()))
        })
    }

    /// Stops the daemon with `signal` (SIGKILL: a crash; SIGTERM: a service restart) and starts
    /// it again on the same config, root and state, as an operator's restart would. The shims
    /// and their tasks are not the daemon's children: they live on, and the new daemon
    /// reconnects to them.
    ///
    /// # Errors
    /// When the daemon does not stop within 10 s or does not come back.
    pub fn restart(&mut self, signal: Signal) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            bail!("containerd is not running");
        };
        signal_and_wait(&mut child, signal, Duration::from_secs(10))?;
        self.spawn()
            .with_context(|| format!("restart (log tail:\n{})", self.log_tail(40)))
    }

    /// The temp dir holding everything of this daemon.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The gRPC socket (`ctr -a`).
    pub fn socket(&self) -> &Path {
        &self.grpc
    }

    /// The containerd namespace the harness uses (unique per daemon).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The daemon's PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `lines` lines of the daemon's log (shim logs land there too).
    pub fn log_tail(&self, lines: usize) -> String {
        crate::process::tail_of(&self.log, lines)
    }

    /// The daemon's log lines (shim lines included) that contain `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// The containerd binary this daemon runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// A `ctr -a SOCK -n NS` command with a clean environment.
    pub fn ctr_command(&self) -> Command {
        let mut cmd = Command::new(&self.ctr);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .arg("-a")
            .arg(&self.grpc)
            .arg("-n")
            .arg(&self.namespace);
        cmd
    }

    /// Runs `ctr` with `args` and returns its output whatever the exit status.
    ///
    /// # Errors
    /// When ctr cannot be spawned or takes longer than [`CTR_TIMEOUT`].
    pub fn ctr<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run_with_timeout(self.ctr_command().args(args), CTR_TIMEOUT)
    }

    /// `ctr version`, server part included.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn version(&self) -> Result<String> {
        Ok(self.ctr(["version"])?.success()?.stdout.clone())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "containerd log tail ({}):\n{}",
                self.log.display(),
                self.log_tail(40)
            );
        }
        if self.child.is_some() {
            self.remove_everything();
        }
        self.stop_daemon();
        let left: Vec<i32> = system::procs_mentioning(&self.grpc.to_string_lossy())
            .iter()
            .map(|p| p.pid)
            .collect();
        system::stop_pids(&left);
        let mut problems = system::unmount_under(&self.dir);
        problems.extend(system::remove_namespace_cgroups(&self.namespace));
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            problems.push(format!("remove {}: {e}", self.dir.display()));
        }
        if !problems.is_empty() {
            eprintln!("containerd teardown: {}", problems.join("; "));
        }
    }
}

/// Runs `body` against a fresh daemon, then checks nothing is left behind.
///
/// On failure the daemon's log tail is printed (libtest shows it with the failure).
///
/// # Errors
/// What `body` returns, or what [`Containerd::assert_clean`] finds.
pub fn with_containerd(body: impl FnOnce(&Containerd) -> Result<()>) -> Result<()> {
    with_containerd_env(&[], body)
}

/// [`with_containerd`] with `env` added to the daemon's (and so its shims') environment.
///
/// # Errors
/// See [`with_containerd`].
pub fn with_containerd_env(
    env: &[(&str, &str)],
    body: impl FnOnce(&Containerd) -> Result<()>,
) -> Result<()> {
    let ctd = Containerd::start_with_env(paths::containerd_path(), env)?;
    let result = body(&ctd).and_then(|()| ctd.assert_clean());
    if result.is_err() {
        eprintln!(
            "containerd {} log tail:\n{}",
            ctd.binary.display(),
            ctd.log_tail(40)
        );
    }
    result
}
