//! One Linux container built by libcontainer, and its control: start, signals, freezer,
//! limits, delete.

use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use log::{debug, warn};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Process, Spec};

use super::builder::{in_builder_process, BuildResult};
use super::bundle::{self, PreparedBundle};
use super::cgroup::{Cgroup, CgroupStats};
use super::executor::WorkloadExecutor;
use super::{chain, netns_ahead, IsolationError, MadeCgroup, ProcessIo, Workload};

/// What it takes to build a container.
pub struct ContainerConfig {
    /// Container id.
    pub id: String,
    /// containerd's bundle directory.
    pub bundle: PathBuf,
    /// The bundle's spec, as loaded.
    pub spec: Spec,
    /// What runs inside.
    pub workload: Workload,
    /// stdio of the init process.
    pub io: ProcessIo,
    /// The shim log's fd, which the init process keeps.
    pub log_fd: Option<RawFd>,
    /// Where compiled seccomp filters are kept (`seccomp_filters`); None: the init compiles.
    pub seccomp_dir: Option<PathBuf>,
    /// A network namespace made ahead for this container ([`super::NetnsAhead`]).
    pub netns: Option<OwnedFd>,
    /// Cgroup directories made ahead for this container ([`super::CgroupAhead`]).
    pub cgroup: Option<MadeCgroup>,
}

/// A container in the Created state or later.
pub struct LinuxContainer {
    id: String,
    bundle: PathBuf,
    state_root: PathBuf,
    pid: i32,
    cgroup: Cgroup,
    /// The container has a PID namespace of its own (see [`Self::init_exited`]).
    owns_pid_namespace: bool,
    inner: Mutex<Container>,
}

impl LinuxContainer {
    /// Builds the container: the init process exists, isolated, waiting for [`Self::start`].
    ///
    /// # Errors
    /// Bad bundle or libcontainer failure; the partial container is deleted.
    pub fn create(config: ContainerConfig) -> Result<Self, IsolationError> {
        let ContainerConfig {
            id,
            bundle,
            spec,
            workload,
            io,
            log_fd,
            seccomp_dir,
            netns,
            cgroup,
        } = config;
        let mut spec = spec;
        if let Some(made) = netns.as_ref().filter(|_| netns_ahead::wants_fresh(&spec)) {
            netns_ahead::join(&mut spec, made);
        }
        let owns_pid_namespace = owns_pid_namespace(&spec);
        if let Some(dir) = &seccomp_dir {
            super::seccomp_filters::offer(&spec, dir);
        }
        let (prepared, spec) = bundle::prepare(&bundle, &id, spec, io.is_terminal())?;
        let mut cgroup = cgroup;
        if let Some(made) = cgroup.as_mut() {
            made.wait();
        }
        let kept = workload.clone();
        let executor = WorkloadExecutor::new(workload, log_fd);
        let build_id = id.clone();
        let build_prepared = prepared.clone();
        super::timeline::mark("shim: bundle written, forking the builder");
        let built = off_runtime(&id, "create", &bundle, move || {
            in_builder_process(|| build(&build_id, &build_prepared, spec, executor, io))
        })
        // libcontainer saved the container's state in the builder: the shim's copy is read back.
        .and_then(|_| {
            Container::load(prepared.state_root.join(&id)).map_err(|e| IsolationError::Container {
                id: id.clone(),
                action: "create",
                reason: chain(&e),
            })
        });
        super::timeline::mark("shim: state read back");
        // The shim's last handle of what runs inside: dropping it unmaps a guest's code, work
        // that Create need not wait for (the container's process has its own mapping).
        crate::idle::drop_when_quiet(Box::new(kept));
        // The init has joined it (or failed): the shim holds it no longer.
        drop(netns);
        let container = match built {
            Ok(c) => c,
            Err(e) => {
                cleanup_failed(&id, &bundle, &prepared);
                return Err(e);
            }
        };
        // Built: libcontainer removes the directories made ahead with the container.
        if let Some(made) = cgroup {
            made.keep();
        }
        let Some(pid) = container.pid() else {
            cleanup_failed(&id, &bundle, &prepared);
            return Err(IsolationError::Container {
                id,
                action: "create",
                reason: "libcontainer reported no init pid".into(),
            });
        };
        if let Some(adj) = prepared.oom_score_adj {
            let file = format!("/proc/{pid}/oom_score_adj");
            if let Err(e) = std::fs::write(&file, adj.to_string()) {
                warn!("{id}: setting oom_score_adj {adj} failed: {e}");
            }
        }
        debug!(
            "{id}: container built, init pid {pid}, cgroup {}",
            prepared.cgroup_path.display()
        );
        Ok(Self {
            cgroup: Cgroup::new(prepared.cgroup_path.clone(), &id),
            state_root: prepared.state_root.clone(),
            id,
            bundle,
            pid: pid.as_raw(),
            owns_pid_namespace,
            inner: Mutex::new(container),
        })
    }

    fn inner(&self) -> MutexGuard<'_, Container> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn error(&self, action: &'static str, e: &dyn std::error::Error) -> IsolationError {
        IsolationError::Container {
            id: self.id.clone(),
            action,
            reason: chain(e),
        }
    }

    /// Init pid in the shim's pid namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The container's cgroup path.
    pub fn cgroup_path(&self) -> &Path {
        self.cgroup.path()
    }

    /// Tells the init process to run its workload.
    ///
    /// # Errors
    /// libcontainer could not signal it.
    pub fn start(&self) -> Result<(), IsolationError> {
        self.inner().start().map_err(|e| self.error("start", &e))
    }

    /// Sends `signal` to init, or to every process in the cgroup with `all`.
    ///
    /// # Errors
    /// Unknown signal, or delivery failed for init.
    pub fn kill(&self, signal: u32, all: bool) -> Result<(), IsolationError> {
        let sig = parse_signal(signal, self.pid)?;
        if all {
            for pid in self.cgroup.pids().unwrap_or_default() {
                let _ = kill(Pid::from_raw(pid), sig);
            }
        }
        match kill(Pid::from_raw(self.pid), sig) {
            // Already gone after every process was just signalled: nothing left to do.
            Err(nix::errno::Errno::ESRCH) if all => Ok(()),
            result => signal_result(result, self.pid, signal),
        }
    }

    /// Called once init has exited. In a PID namespace of its own the kernel has already killed
    /// every other process of the container; in a shared one (the pod's or the host's) they
    /// live on, e.g. the workers of a web server, holding the container's stdout and stderr
    /// open. Kill them all, as runc's shim does when init exits (`ShouldKillAllOnExit`), two
    /// passes to catch a fork that raced the first.
    pub fn init_exited(&self) {
        if self.owns_pid_namespace {
            return;
        }
        for _ in 0..2 {
            let pids = self.cgroup.pids().unwrap_or_default();
            if pids.is_empty() {
                break;
            }
            debug!(
                "{}: init exited, killing {} processes left in its cgroup",
                self.id,
                pids.len()
            );
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }

    /// Freezes or thaws the container.
    ///
    /// # Errors
    /// The freezer could not be written.
    pub fn freeze(&self, frozen: bool) -> Result<(), IsolationError> {
        self.cgroup.freeze(frozen)
    }

    /// Processes in the container.
    ///
    /// # Errors
    /// The cgroup could not be read.
    pub fn pids(&self) -> Result<Vec<i32>, IsolationError> {
        self.cgroup.pids()
    }

    /// Resource usage.
    ///
    /// # Errors
    /// The cgroup could not be read.
    pub fn stats(&self) -> Result<CgroupStats, IsolationError> {
        self.cgroup.stats()
    }

    /// New resource limits.
    ///
    /// # Errors
    /// The kernel refused them.
    pub fn update(&self, resources: &LinuxResources) -> Result<(), IsolationError> {
        self.cgroup.update(resources)
    }

    /// True when the kernel's OOM killer has killed a process of this container.
    pub fn oom_killed(&self) -> bool {
        self.cgroup.oom_killed()
    }

    /// The container's memory limit in bytes, if it has one.
    pub fn memory_limit(&self) -> Option<u64> {
        self.cgroup.memory_limit()
    }

    /// Runs `process` inside this container (its namespaces, cgroup and rootfs), as
    /// `ctr task exec` / `docker exec` do; returns its pid. The process is a child of the shim.
    ///
    /// # Errors
    /// libcontainer could not join the container or start the process.
    pub fn exec(
        &self,
        exec_id: &str,
        process: &Process,
        workload: Workload,
        io: ProcessIo,
        log_fd: Option<RawFd>,
    ) -> Result<i32, IsolationError> {
        let err = |e: &dyn std::error::Error| build_error(&self.id, "exec", &self.bundle, chain(e));
        // libcontainer reads the exec's process from a file; its `terminal` must match the io.
        let mut process = process.clone();
        process.set_terminal(Some(io.is_terminal()));
        let file = self
            .bundle
            .join(bundle::PRIVATE_DIR)
            .join(format!("exec-{}.json", sanitize(exec_id)));
        let json = serde_json::to_vec(&process).map_err(|e| err(&e))?;
        std::fs::write(&file, json).map_err(|e| err(&e))?;
        let id = self.id.clone();
        let state_root = self.state_root.clone();
        let executor = WorkloadExecutor::new(workload, log_fd);
        let process_file = file.clone();
        let built = off_runtime(&self.id, "exec", &self.bundle, move || {
            in_builder_process(|| build_exec(&id, &state_root, executor, io, process_file))
        });
        let _ = std::fs::remove_file(&file);
        built
    }

    /// Kills what is left, removes the cgroup and libcontainer's state.
    ///
    /// # Errors
    /// libcontainer could not delete the container.
    pub fn delete(&self) -> Result<(), IsolationError> {
        let result = self
            .inner()
            .delete(true)
            .map_err(|e| self.error("delete", &e));
        bundle::remove(&self.bundle);
        result
    }
}

/// Runs `make` on a thread of its own: a builder process forked from a tokio thread would
/// keep that runtime's thread-locals, whose workers do not exist in it.
fn off_runtime(
    id: &str,
    action: &'static str,
    bundle: &Path,
    make: impl FnOnce() -> BuildResult + Send + 'static,
) -> Result<i32, IsolationError> {
    let err = |reason: String| build_error(id, action, bundle, reason);
    std::thread::Builder::new()
        .name(format!("wasmpod-{action}"))
        .spawn(make)
        .map_err(|e| err(e.to_string()))?
        .join()
        .map_err(|_| err("the builder thread panicked".into()))?
        .map_err(err)
}

/// A failed build as an error. libcontainer writes its state into the bundle (`.wasmpod/state`),
/// and its message then says "failed to save config: No space left on device" without saying
/// where: a full disk gets an error of its own that names the bundle, so the user knows which
/// filesystem to free. The chain comes back from the builder process as text, and both std's
/// and nix's rendering of ENOSPC carry the OS's wording of it.
fn build_error(id: &str, action: &'static str, bundle: &Path, reason: String) -> IsolationError {
    if reason.contains(nix::errno::Errno::ENOSPC.desc()) {
        IsolationError::NoSpace {
            id: id.to_string(),
            action,
            dir: bundle.to_path_buf(),
            reason,
        }
    } else {
        IsolationError::Container {
            id: id.to_string(),
            action,
            reason,
        }
    }
}

/// In the builder process: the container's init, built from `spec` (the one written to the
/// prepared bundle), waiting for Start. Returns its pid.
fn build(
    id: &str,
    prepared: &PreparedBundle,
    spec: Spec,
    executor: WorkloadExecutor,
    io: ProcessIo,
) -> BuildResult {
    keep_workload_to_the_end(&executor);
    let builder = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
        .with_root_path(&prepared.state_root)
        .map_err(|e| chain(&e))?
        .with_executor(executor);
    let container = io
        .apply(builder)
        .map_err(|e| chain(&e))?
        .validate_id()
        .map_err(|e| chain(&e))?
        .as_init(&prepared.dir)
        // The spec written to `prepared.dir` as the shim holds it: not read back and parsed.
        .with_spec(spec)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| chain(&e))?;
    container
        .pid()
        .map(Pid::as_raw)
        .ok_or_else(|| "libcontainer reported no init pid".to_string())
}

/// In the builder process, which leaves with `_exit` after its answer: libcontainer drops the
/// executor before it returns the pid, and the last handle of a guest dropped there unmapped
/// its code first (0.24 ms before every answer, measured). A handle forgotten here keeps it.
fn keep_workload_to_the_end(executor: &WorkloadExecutor) {
    std::mem::forget(executor.clone());
}

/// In the builder process: an exec, joined to the container and started. Returns its pid.
fn build_exec(
    id: &str,
    state_root: &Path,
    executor: WorkloadExecutor,
    io: ProcessIo,
    process_file: PathBuf,
) -> BuildResult {
    keep_workload_to_the_end(&executor);
    let builder = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
        .with_root_path(state_root)
        .map_err(|e| chain(&e))?
        .with_executor(executor);
    let pid = io
        .apply(builder)
        .map_err(|e| chain(&e))?
        .as_tenant()
        .with_detach(true)
        .with_process(Some(process_file))
        .build()
        .map_err(|e| chain(&e))?;
    Ok(pid.as_raw())
}

/// True when the spec asks for a new PID namespace (a `pid` entry without a path); false when
/// it joins one (the pod's) or has none (the host's).
fn owns_pid_namespace(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|namespaces| {
            namespaces
                .iter()
                .any(|ns| ns.typ() == LinuxNamespaceType::Pid && ns.path().is_none())
        })
}

fn parse_signal(signal: u32, pid: i32) -> Result<Signal, IsolationError> {
    Signal::try_from(signal as i32).map_err(|e| IsolationError::Signal {
        signal,
        pid,
        reason: e.to_string(),
    })
}

/// Sends `signal` to one process (an exec).
///
/// # Errors
/// Unknown signal or delivery failed.
pub fn signal(pid: i32, signal: u32) -> Result<(), IsolationError> {
    signal_result(
        kill(Pid::from_raw(pid), parse_signal(signal, pid)?),
        pid,
        signal,
    )
}

/// ESRCH is its own error: containerd treats a signal to a finished process as NotFound.
fn signal_result(result: nix::Result<()>, pid: i32, signal: u32) -> Result<(), IsolationError> {
    match result {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::ESRCH) => Err(IsolationError::ProcessGone { signal, pid }),
        Err(e) => Err(IsolationError::Signal {
            signal,
            pid,
            reason: e.to_string(),
        }),
    }
}

/// An exec id as a file name: anything but `[A-Za-z0-9_.-]` becomes `_`.
fn sanitize(exec_id: &str) -> String {
    exec_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Undo a failed build: libcontainer may have left a state dir, a cgroup or a process.
fn cleanup_failed(id: &str, bundle: &Path, prepared: &PreparedBundle) {
    let state = prepared.state_root.join(id);
    if state.exists() {
        match Container::load(state) {
            Ok(mut c) => {
                if let Err(e) = c.delete(true) {
                    warn!("{id}: cleaning up a failed create: {}", chain(&e));
                }
            }
            Err(e) => warn!("{id}: loading a failed container: {}", chain(&e)),
        }
    }
    let cgroup = Cgroup::new(prepared.cgroup_path.clone(), id);
    if let Ok(pids) = cgroup.pids() {
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    bundle::remove(bundle);
}

/// Removes what a dead shim left of container `id` in `bundle`: its processes, cgroup,
/// libcontainer state and rootfs mount (best effort; used by the `delete` action). Says
/// whether the container was still there: none is after a clean Delete.
pub fn remove_leftovers(bundle: &Path, id: &str) -> bool {
    let state = bundle.join(bundle::PRIVATE_DIR).join("state").join(id);
    let found = state.exists();
    if found {
        match Container::load(state) {
            Ok(mut c) => {
                if let Err(e) = c.delete(true) {
                    warn!("{id}: deleting the leftover container: {}", chain(&e));
                }
            }
            Err(e) => warn!("{id}: loading the leftover container: {}", chain(&e)),
        }
    }
    if let Ok(spec) = bundle::load_spec(bundle) {
        super::cgroup_ahead::remove_left(&spec);
    }
    super::rootfs::unmount(&bundle.join("rootfs"));
    bundle::remove(bundle);
    found
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, SpecBuilder};

    use super::*;

    fn with_pid_namespace(path: Option<&str>) -> Spec {
        let mut ns = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Pid);
        if let Some(path) = path {
            ns = ns.path(PathBuf::from(path));
        }
        let linux = LinuxBuilder::default()
            .namespaces(vec![ns.build().unwrap()])
            .build()
            .unwrap();
        SpecBuilder::default().linux(linux).build().unwrap()
    }

    #[test]
    fn a_full_disk_is_named_with_the_bundle() {
        let bundle = Path::new("/run/state/ns/c1");
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let e = build_error(
            "c1",
            "create",
            bundle,
            format!("failed to save config: {full}"),
        );
        assert!(matches!(e, IsolationError::NoSpace { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("no space left on device in /run/state/ns/c1")
                && text.contains("failed to save config"),
            "{text}"
        );
        let nix_rendering = format!("mkdir: {}", nix::errno::Errno::ENOSPC);
        let e = build_error("c1", "exec", bundle, nix_rendering);
        assert!(matches!(e, IsolationError::NoSpace { .. }), "{e:?}");
        let other = std::io::Error::from_raw_os_error(libc::EACCES);
        let e = build_error("c1", "create", bundle, other.to_string());
        assert!(matches!(e, IsolationError::Container { .. }), "{e:?}");
    }

    #[test]
    fn only_a_new_pid_namespace_is_the_containers_own() {
        assert!(owns_pid_namespace(&with_pid_namespace(None)));
        // A pod's containers join the sandbox's namespace; hostPID has no entry at all.
        assert!(!owns_pid_namespace(&with_pid_namespace(Some(
            "/proc/42/ns/pid"
        ))));
        let host = SpecBuilder::default()
            .linux(LinuxBuilder::default().namespaces(vec![]).build().unwrap())
            .build()
            .unwrap();
        assert!(!owns_pid_namespace(&host));
    }
}
