//! One private containerd daemon per test: start, talk to it through `ctr`, tear it down.
//!
//! Everything the daemon owns (root, state, sockets, fifos, runc state, logs) lives under a
//! unique temp dir; it never touches `/run/containerd` or `/var/lib/containerd` itself.
//! (containerd 1.6/1.7 shims still create their ttrpc sockets in `/run/containerd/s`;
//! that is the shim's doing and they remove them on exit.) Dropping a [`Containerd`]
//! deletes tasks and containers, stops the daemon by PID, kills shims that name its
//! address, unmounts what is left under the temp dir and removes it.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::config::{private_config, Settings};
use crate::images::TestImage;
use crate::paths;
use crate::process::{poll, run_with_timeout, Output};
use crate::run::Run;
use crate::system;

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
        let binary = binary.as_ref().to_path_buf();
        let dir = tempfile::Builder::new()
            .prefix("wasmpod-it-")
            .tempdir()
            .context("create temp dir")?
            .keep();
        let mut me = Self {
            grpc: dir.join("c.sock"),
            namespace: unique_name("wasmpod-it"),
            ctr: paths::ctr_path(),
            log: dir.join("containerd.log"),
            child: None,
            refs: Mutex::default(),
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

        let log = File::create(&self.log)?;
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
        for pass in ["RUST_LOG", "RUST_BACKTRACE"] {
            if let Some(v) = std::env::var_os(pass) {
                cmd.env(pass, v);
            }
        }
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
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
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

    /// Imports an OCI-layout tar.
    ///
    /// Uses `--all-platforms`: a `wasip1/wasm` manifest listed with its platform in the
    /// tar's index is otherwise filtered out ("image might be filtered out"), since ctr keeps
    /// only the host platform by default. `--platform wasip1/wasm` works as well, but would
    /// drop a `linux/amd64` image.
    ///
    /// # Errors
    /// When the import fails.
    pub fn import(&self, image: &TestImage) -> Result<&Self> {
        let before = self.image_refs()?;
        self.import_tar(&image.tar)?;
        let after = self.image_refs()?;
        // ctr may store the name as given or normalised (docker.io/...); find which.
        let matches = |r: &&String| {
            **r == image.name
                || r.strip_suffix(image.name.as_str())
                    .is_some_and(|p| p.ends_with('/'))
        };
        let new: Vec<&String> = after.difference(&before).collect();
        let found = after
            .iter()
            .find(matches)
            .or_else(|| (new.len() == 1).then(|| new[0]))
            .with_context(|| {
                format!(
                    "import of {} stored no image named {}; images: {after:?}",
                    image.tar.display(),
                    image.name
                )
            })?;
        self.refs
            .lock()
            .map_err(|_| anyhow::anyhow!("refs poisoned"))?
            .insert(image.name.clone(), found.clone());
        Ok(self)
    }

    /// Image references per `ctr images ls -q`.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn image_refs(&self) -> Result<BTreeSet<String>> {
        let out = self.ctr(["images", "ls", "-q"])?;
        out.success()?;
        Ok(out.stdout.split_whitespace().map(str::to_string).collect())
    }

    /// Imports the OCI-layout tar at `tar` (see [`Containerd::import`]).
    ///
    /// # Errors
    /// When the import fails.
    pub fn import_tar(&self, tar: &Path) -> Result<Output> {
        let out = self.ctr([
            "images".as_ref(),
            "import".as_ref(),
            "--all-platforms".as_ref(),
            tar.as_os_str(),
        ])?;
        out.success()
            .with_context(|| format!("import {}", tar.display()))?;
        Ok(out)
    }

    /// A `ctr run` of `image` (see [`Run`]); run `.exec()`, `.spawn()` or `.detach()` on it.
    pub fn run<'a>(&'a self, image: &TestImage) -> Run<'a> {
        let reference = self
            .refs
            .lock()
            .ok()
            .and_then(|r| r.get(&image.name).cloned())
            .unwrap_or_else(|| image.name.clone());
        Run::new(self, &reference, Some(&image.entrypoint))
    }

    /// A `ctr run` of the image named `reference` whose entrypoint the harness does not know:
    /// use `.argv(...)` rather than `.args(...)`.
    pub fn run_ref<'a>(&'a self, reference: &str) -> Run<'a> {
        Run::new(self, reference, None)
    }

    /// `ctr task ls`, parsed.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn task_list(&self) -> Result<Vec<TaskInfo>> {
        let out = self.ctr(["task", "ls"])?;
        out.success()?;
        Ok(out
            .stdout
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some(TaskInfo {
                    id: (*f.first()?).to_string(),
                    pid: f.get(1)?.parse().unwrap_or(0),
                    status: (*f.get(2)?).to_string(),
                })
            })
            .collect())
    }

    /// The status of task `id` per `ctr task ls`, `None` when there is no such task.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn task_status(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .task_list()?
            .into_iter()
            .find(|t| t.id == id)
            .map(|t| t.status))
    }

    /// Waits until task `id` shows `status` in `ctr task ls`.
    ///
    /// # Errors
    /// When ctr fails or `timeout` passes.
    pub fn wait_for_status(&self, id: &str, status: &str, timeout: Duration) -> Result<()> {
        let mut last = None;
        poll(&format!("task {id} to be {status}"), timeout, || {
            last = self.task_status(id)?;
            Ok((last.as_deref() == Some(status)).then_some(()))
        })
        .with_context(|| format!("last status of {id}: {last:?}"))
    }

    /// Waits for task `id` to stop, deletes it and its container, and returns its exit code.
    ///
    /// The code comes from `ctr task delete`, which logs
    /// `task <id> exit with non-zero exit code <n>` (and exits 0) for a non-zero status.
    ///
    /// # Errors
    /// When the task does not stop within `timeout` or ctr fails.
    pub fn wait_for_exit(&self, id: &str, timeout: Duration) -> Result<i32> {
        self.wait_for_status(id, "STOPPED", timeout)?;
        let out = self.ctr(["task", "delete", id])?;
        out.success().context("ctr task delete")?;
        self.ctr(["containers", "delete", id])?.success()?;
        parse_delete_exit(&out.stderr).with_context(|| format!("exit code of {id} in\n{out}"))
    }

    /// `ctr task kill -s SIGNAL ID` (signal like `SIGTERM` or `9`).
    ///
    /// # Errors
    /// When ctr fails.
    pub fn task_kill(&self, id: &str, signal: &str) -> Result<Output> {
        let out = self.ctr(["task", "kill", "-s", signal, id])?;
        out.success()?;
        Ok(out)
    }

    /// `ctr task pause ID`.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn task_pause(&self, id: &str) -> Result<Output> {
        let out = self.ctr(["task", "pause", id])?;
        out.success()?;
        Ok(out)
    }

    /// `ctr task resume ID`.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn task_resume(&self, id: &str) -> Result<Output> {
        let out = self.ctr(["task", "resume", id])?;
        out.success()?;
        Ok(out)
    }

    /// `ctr task metrics ID` (table format).
    ///
    /// # Errors
    /// When ctr fails.
    pub fn task_metrics(&self, id: &str) -> Result<Output> {
        let out = self.ctr(["task", "metrics", id])?;
        out.success()?;
        Ok(out)
    }

    /// `ctr task ps ID`.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn task_ps(&self, id: &str) -> Result<Output> {
        let out = self.ctr(["task", "ps", id])?;
        out.success()?;
        Ok(out)
    }

    /// Container ids per `ctr containers ls -q`.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn containers(&self) -> Result<Vec<String>> {
        let out = self.ctr(["containers", "ls", "-q"])?;
        out.success()?;
        Ok(out.stdout.split_whitespace().map(str::to_string).collect())
    }

    /// Everything a finished test may not leave behind, as descriptions; empty when clean.
    ///
    /// Checks tasks and containers, active snapshots, task bundles in the state dir, shim
    /// (and guest) processes naming this daemon's socket, mounts under the temp dir and
    /// container cgroups below the namespace's cgroup in every hierarchy.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn leftovers(&self) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for t in self.task_list()? {
            found.push(format!("task {} (pid {}, {})", t.id, t.pid, t.status));
        }
        for c in self.containers()? {
            found.push(format!("container {c}"));
        }
        let snaps = self.ctr(["snapshots", "ls"])?;
        for l in snaps.stdout.lines().filter(|l| l.contains("Active")) {
            found.push(format!("active snapshot {}", l.trim()));
        }
        let bundles = self
            .dir
            .join("state/io.containerd.runtime.v2.task")
            .join(&self.namespace);
        for e in fs::read_dir(&bundles).into_iter().flatten().flatten() {
            found.push(format!("task bundle {}", e.path().display()));
        }
        for p in system::procs_mentioning(&self.grpc.to_string_lossy()) {
            if !p.is_ctr() {
                found.push(format!("process {}: {}", p.pid, p.argv.join(" ")));
            }
        }
        for m in system::mounts_under(&self.dir) {
            found.push(format!("mount {}", m.display()));
        }
        for c in system::cgroup_children(&self.namespace) {
            found.push(format!("cgroup {}", c.display()));
        }
        Ok(found)
    }

    /// Waits (up to 10 s, shims exit asynchronously) until [`Containerd::leftovers`] is empty.
    ///
    /// # Errors
    /// Listing what is left, with the daemon's log tail.
    pub fn assert_clean(&self) -> Result<()> {
        let mut last = Vec::new();
        let clean = poll("a clean daemon", Duration::from_secs(10), || {
            last = self.leftovers()?;
            Ok(last.is_empty().then_some(()))
        });
        if clean.is_err() {
            bail!(
                "left behind after the test:\n  {}\ncontainerd log tail:\n{}",
                last.join("\n  "),
                self.log_tail(30)
            );
        }
        Ok(())
    }

    fn remove_everything(&self) {
        for t in self.task_list().unwrap_or_default() {
            let _ = self.ctr(["task", "kill", "-s", "SIGKILL", &t.id]);
            let _ = self.wait_for_status(&t.id, "STOPPED", Duration::from_secs(5));
            let _ = self.ctr(["task", "delete", "-f", &t.id]);
        }
        for c in self.containers().unwrap_or_default() {
            let _ = self.ctr(["containers", "delete", &c]);
        }
    }

    fn stop_daemon(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = kill(pid, Signal::SIGKILL);
        let _ = child.wait();
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
        for p in system::procs_mentioning(&self.grpc.to_string_lossy()) {
            system::kill_pid(p.pid);
        }
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

/// The exit code `ctr task delete` reports: 0 unless it logs a non-zero one.
fn parse_delete_exit(stderr: &str) -> Result<i32> {
    const MARK: &str = "exit with non-zero exit code ";
    match stderr.find(MARK) {
        None => Ok(0),
        Some(i) => {
            let digits: String = stderr[i + MARK.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            Ok(digits.parse()?)
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
    let ctd = Containerd::from_env()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The exit code is read from ctr's warning, and no warning means 0.
    #[test]
    fn parses_task_delete_exit_codes() -> Result<()> {
        let line = "time=\"...\" level=warning msg=\"task s1 exit with non-zero exit code 137\"\n";
        assert_eq!(parse_delete_exit(line)?, 137);
        assert_eq!(parse_delete_exit("")?, 0);
        Ok(())
    }
}
