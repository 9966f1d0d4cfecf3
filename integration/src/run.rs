//! `ctr run`, as a builder: run to completion, spawn in the background, on a terminal, or
//! detach.
//!
//! Builds the ctr command line only; everything about the daemon lives in `containerd`.
//! Runs of the wasmpod runtime first check the shim binary exists, so a missing build
//! fails with a message saying so rather than an obscure ctr error. A run as another user
//! on a ctr without `--user` (1.6) goes through a spec file instead (see [`Run::user`]).

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::containerd::{unique_name, Containerd};
use crate::paths::{self, RUNC_RUNTIME, WASMPOD_RUNTIME};
use crate::process::{cmdline, run_with_timeout, wait_or_kill, Output};
use crate::spec::{user_spec, BindMount, SpecParams};
use crate::task::Task;
use crate::terminal::InTerminal;

/// Default deadline for a container run to finish.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A pending `ctr run`; see the methods for defaults.
#[derive(Debug, Clone)]
#[must_use = "a Run does nothing until exec(), spawn() or detach()"]
pub struct Run<'a> {
    ctd: &'a Containerd,
    image: String,
    entrypoint: Option<String>,
    rootfs: Option<PathBuf>,
    id: String,
    runtime: String,
    argv: Option<Vec<String>>,
    env: Vec<String>,
    mounts: Vec<BindMount>,
    cwd: Option<String>,
    memory_limit: Option<u64>,
    user: Option<(u32, u32)>,
    extra: Vec<String>,
    timeout: Duration,
}

impl<'a> Run<'a> {
    pub(crate) fn new(
        ctd: &'a Containerd,
        image: &str,
        entrypoint: Option<&str>,
        rootfs: Option<PathBuf>,
    ) -> Self {
        Self {
            ctd,
            image: image.to_string(),
            entrypoint: entrypoint.map(str::to_string),
            rootfs,
            id: unique_name("c"),
            runtime: WASMPOD_RUNTIME.to_string(),
            argv: None,
            env: Vec::new(),
            mounts: Vec::new(),
            cwd: None,
            memory_limit: None,
            user: None,
            extra: Vec::new(),
            timeout: RUN_TIMEOUT,
        }
    }

    /// Container id (default: a unique `c-<pid>-<n>`).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// The id this run will use.
    pub fn container_id(&self) -> &str {
        &self.id
    }

    /// Runtime type (default `io.containerd.wasmpod.v1`).
    pub fn runtime(mut self, runtime: impl Into<String>) -> Self {
        self.runtime = runtime.into();
        self
    }

    /// Shorthand for `.runtime("io.containerd.runc.v2")`.
    pub fn runc(self) -> Self {
        self.runtime(RUNC_RUNTIME)
    }

    /// Arguments after the image's entrypoint.
    ///
    /// ctr replaces the whole process argv when given a command, so this passes
    /// `[entrypoint, args...]`. Needs an image whose entrypoint is known (see [`Containerd::run`]).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut argv: Vec<String> = self.entrypoint.iter().cloned().collect();
        argv.extend(args.into_iter().map(Into::into));
        self.argv = Some(argv);
        self
    }

    /// The whole process argv, replacing the image's entrypoint and cmd.
    pub fn argv<I, S>(mut self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.argv = Some(argv.into_iter().map(Into::into).collect());
        self
    }

    /// Adds `KEY=VALUE` to the process environment (`--env`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push(format!("{key}={value}"));
        self
    }

    /// Bind-mounts host `src` read-only at `dst`.
    pub fn mount_ro(self, src: impl Into<PathBuf>, dst: &str) -> Self {
        self.mount(src, dst, "rbind:ro")
    }

    /// Bind-mounts host `src` read-write at `dst`.
    pub fn mount_rw(self, src: impl Into<PathBuf>, dst: &str) -> Self {
        self.mount(src, dst, "rbind:rw")
    }

    /// `--mount type=bind,src=SRC,dst=DST,options=OPTIONS` (options `:`-separated).
    pub fn mount(mut self, src: impl Into<PathBuf>, dst: &str, options: &str) -> Self {
        self.mounts.push(BindMount {
            src: src.into(),
            dst: dst.to_string(),
            options: options.to_string(),
        });
        self
    }

    /// Working directory of the process (`--cwd`).
    pub fn cwd(mut self, cwd: &str) -> Self {
        self.cwd = Some(cwd.to_string());
        self
    }

    /// Memory limit in bytes (`--memory-limit`).
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Runs the process as `uid:gid` (`--user`).
    ///
    /// ctr 1.6 has no `--user`: there the run uses `--config` with a whole spec made from
    /// `ctr oci spec` (see [`crate::spec`]) whose rootfs is a private copy of the image's
    /// [`crate::TestImage::rootfs`]; the image config (its env) is not applied, and extra
    /// [`Run::flag`]s are refused since ctr ignores them with `--config`.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    /// Any other `ctr run` flag, placed before the image name.
    pub fn flag(mut self, flag: impl Into<String>) -> Self {
        self.extra.push(flag.into());
        self
    }

    /// Deadline for [`Run::exec`] (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn command(&self, mode: &[&str]) -> Result<Command> {
        if self.runtime == WASMPOD_RUNTIME {
            paths::require_shim()?;
        }
        let mut cmd = self.ctd.ctr_command();
        cmd.arg("run").args(mode);
        cmd.arg("--runtime").arg(&self.runtime);
        cmd.arg("--fifo-dir").arg(self.ctd.dir().join("fifo"));
        if self.runtime == RUNC_RUNTIME {
            // Otherwise runc keeps its state under /run/containerd/runc.
            cmd.arg("--runc-root").arg(self.ctd.dir().join("runc"));
        }
        if let Some(user) = self.user {
            if !self.ctd.ctr_run_has_flag("--user")? {
                let spec = self.spec_file(user)?;
                cmd.arg("--config").arg(spec).arg(&self.id);
                return Ok(cmd);
            }
            cmd.arg("--user").arg(format!("{}:{}", user.0, user.1));
        }
        for e in &self.env {
            cmd.arg("--env").arg(e);
        }
        for m in &self.mounts {
            cmd.arg("--mount").arg(format!(
                "type=bind,src={},dst={},options={}",
                m.src.display(),
                m.dst,
                m.options
            ));
        }
        if let Some(cwd) = &self.cwd {
            cmd.arg("--cwd").arg(cwd);
        }
        if let Some(bytes) = self.memory_limit {
            cmd.arg("--memory-limit").arg(bytes.to_string());
        }
        cmd.args(&self.extra).arg(&self.image).arg(&self.id);
        if let Some(argv) = &self.argv {
            cmd.args(argv);
        }
        Ok(cmd)
    }

    /// Writes the `--config` spec of a run as `user` and returns its path (see [`Run::user`]).
    fn spec_file(&self, user: (u32, u32)) -> Result<PathBuf> {
        if !self.extra.is_empty() {
            bail!("ctr without --user ignores {:?} with --config", self.extra);
        }
        let Some(src) = &self.rootfs else {
            bail!("image {} has no host rootfs for a --config run", self.image);
        };
        let rootfs = self.ctd.dir().join("rootfs").join(&self.id);
        fs::create_dir_all(&rootfs)?;
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(src.join(".")).arg(&rootfs);
        run_with_timeout(&mut cp, RUN_TIMEOUT)?.success()?;
        let default = self.ctd.ctr(["oci", "spec"])?;
        default.success()?;
        let argv = match (&self.argv, &self.entrypoint) {
            (Some(argv), _) => argv.clone(),
            (None, Some(entrypoint)) => vec![entrypoint.clone()],
            (None, None) => bail!("no argv for a --config run of {}", self.image),
        };
        let spec = user_spec(
            &default.stdout,
            &SpecParams {
                namespace: self.ctd.namespace(),
                id: &self.id,
                rootfs: &rootfs,
                argv: &argv,
                env: &self.env,
                mounts: &self.mounts,
                cwd: self.cwd.as_deref(),
                user,
                memory_limit: self.memory_limit,
            },
        )?;
        let path = self.ctd.dir().join(format!("{}.spec.json", self.id));
        fs::write(&path, spec)?;
        Ok(path)
    }

    /// `ctr run --rm`, waiting for the exit; the output holds the task's exit status.
    ///
    /// # Errors
    /// When ctr cannot be run or the timeout passes; a non-zero exit is not an error here.
    pub fn exec(self) -> Result<Output> {
        let mut cmd = self.command(&["--rm"])?;
        run_with_timeout(&mut cmd, self.timeout)
    }

    /// `ctr run --rm` in the background, stdout and stderr going to files that can be read
    /// while it runs (see [`Spawned`]).
    ///
    /// # Errors
    /// When ctr cannot be spawned.
    pub fn spawn(self) -> Result<Spawned<'a>> {
        let mut cmd = self.command(&["--rm"])?;
        let base = self.ctd.dir().join(format!("{}.ctr", self.id));
        let (out, err) = (base.with_extension("out"), base.with_extension("err"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out)?)
            .stderr(File::create(&err)?);
        let line = cmdline(&cmd);
        let child = cmd.spawn().with_context(|| format!("spawn {line}"))?;
        Ok(Spawned {
            ctd: self.ctd,
            id: self.id,
            cmdline: line,
            child: Some(child),
            started: Instant::now(),
            out,
            err,
        })
    }

    /// `ctr run --rm -t` on a terminal of its own, to type into and read from.
    ///
    /// # Errors
    /// When ctr cannot be spawned.
    pub fn terminal(self) -> Result<InTerminal> {
        InTerminal::spawn(&self.command(&["--rm", "-t"])?)
    }

    /// `ctr run -d`: returns once the task runs, with a handle to drive it.
    ///
    /// # Errors
    /// When ctr fails to create or start the task.
    pub fn detach(self) -> Result<Task<'a>> {
        let mut cmd = self.command(&["-d"])?;
        let out = run_with_timeout(&mut cmd, self.timeout)?;
        out.success().context("detached run")?;
        Ok(Task::new(self.ctd, self.id))
    }
}

/// A foreground `ctr run --rm` running in the background.
#[derive(Debug)]
pub struct Spawned<'a> {
    ctd: &'a Containerd,
    id: String,
    cmdline: String,
    child: Option<Child>,
    started: Instant,
    out: PathBuf,
    err: PathBuf,
}

impl<'a> Spawned<'a> {
    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A handle on the task for kill, pause, metrics...
    pub fn task(&self) -> Task<'a> {
        Task::new(self.ctd, self.id.clone()).borrowed()
    }

    /// What the container has written to stdout so far.
    pub fn stdout_so_far(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// What the container has written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits up to `timeout` for every one of `needles` to be in the container's stderr (it
    /// passes through the shim, a fifo and ctr, so a line can trail what caused it); returns
    /// the stderr.
    ///
    /// # Errors
    /// Naming the needles still missing at `timeout`, with the stderr.
    pub fn stderr_containing(&self, needles: &[&str], timeout: Duration) -> Result<String> {
        let start = Instant::now();
        loop {
            let stderr = self.stderr_so_far();
            let missing: Vec<&str> = needles
                .iter()
                .copied()
                .filter(|n| !stderr.contains(n))
                .collect();
            if missing.is_empty() {
                return Ok(stderr);
            }
            if start.elapsed() >= timeout {
                bail!("not in stderr after {timeout:?}: {missing:?}; stderr:\n{stderr}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for `ctr run` to exit.
    ///
    /// # Errors
    /// When it does not exit within `timeout` (it is then killed).
    pub fn wait(mut self, timeout: Duration) -> Result<Output> {
        let Some(mut child) = self.child.take() else {
            bail!("already waited");
        };
        let Some(status) = wait_or_kill(&mut child, timeout)? else {
            bail!(
                "{} did not exit within {timeout:?}; stdout so far: {:?}",
                self.cmdline,
                self.stdout_so_far()
            );
        };
        Ok(Output {
            cmdline: self.cmdline.clone(),
            stdout: self.stdout_so_far(),
            stderr: fs::read_to_string(&self.err).unwrap_or_default(),
            status,
            elapsed: self.started.elapsed(),
        })
    }
}

impl Drop for Spawned<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_file(&self.out);
        let _ = fs::remove_file(&self.err);
    }
}
