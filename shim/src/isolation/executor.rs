//! What runs inside the container's init process once isolation is in place.
//!
//! libcontainer calls [`Executor::exec`] in the init process after namespaces, cgroups,
//! pivot_root, capabilities and seccomp are applied and Start has been received. A native
//! workload execs as runc would. An in-process [`Guest`] (the wasm engine) runs right here,
//! without an exec, so the process must first be made clean: it is a fork of the shim.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::RawFd;
use std::sync::Arc;

use caps::CapSet;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::{
    default::get_executor, Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};

use super::title::{self, ArgArea};

/// Code that runs inside the container's init process instead of an exec.
pub trait Guest: Send + Sync + 'static {
    /// Runs to completion and returns the exit status. Called once, in the container.
    fn run(&self) -> i32;
    /// Descriptors inherited from the shim that the guest still needs (e.g. mapped code).
    fn keep_fds(&self) -> Vec<RawFd>;
}

/// The workload of one container.
#[derive(Clone)]
pub enum Workload {
    /// `process.args` exec'd as an ordinary Linux process (pause, busybox, sidecars).
    Exec,
    /// Runs in the init process itself.
    Guest(Arc<dyn Guest>),
}

/// Exit status when the in-process runner itself panicked (a wasmpod bug, never a guest's).
pub const GUEST_PANICKED: i32 = 125;

/// Signals whose default action ends a process. PID 1 of a pid namespace ignores them unless it
/// has a handler, so without these a wasm container would shrug off `docker stop` until the
/// grace period's SIGKILL. With them it ends as a plain process would: 128 + signal.
const TERMINATING: [libc::c_int; 7] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
];

extern "C" fn die_by_signal(signal: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + signal) }
}

/// When a running guest's process gives back the pages its start mapped (instantiation, the
/// first WASI calls): as the shim's own release (`service::task`), after a quiet while.
const GUEST_START_RELEASE: std::time::Duration = std::time::Duration::from_secs(2);

/// Adapts a [`Workload`] to libcontainer's executor interface.
#[derive(Clone)]
pub(super) struct WorkloadExecutor {
    workload: Workload,
    /// The shim's log fd, kept open so the guest's failures reach the shim log.
    log_fd: Option<RawFd>,
    /// Where the shim's command line is, read in the shim: a guest shows its own there.
    title: Option<ArgArea>,
    /// The shim's unnamed socketpairs: what may be tokio's signal pipe (see
    /// [`close_fds_except`]). Looked up in the shim: a guest's container has no `/proc`.
    socketpairs: &'static [RawFd],
}

impl WorkloadExecutor {
    /// Called in the shim, before the fork.
    pub(super) fn new(workload: Workload, log_fd: Option<RawFd>) -> Self {
        // Found here, before the fork, so that the guest's process never looks them up.
        crate::idle::program_code();
        Self {
            workload,
            log_fd,
            title: ArgArea::of_this_process(),
            socketpairs: shim_socketpairs(),
        }
    }
}

/// Looks up, ahead of the first build, what every build's executor reads from this process
/// (the program's code ranges, the command line's place, the shim's unnamed socketpairs):
/// 0.15 ms of the first Create otherwise, the only one a shim of one container has. Call it
/// after tokio's signal pipe exists (`service::bootstrap` watches signals first), off the path
/// to serving.
pub fn warm_up() {
    crate::idle::program_code();
    ArgArea::of_this_process();
    shim_socketpairs();
}

/// The shim's unnamed socketpairs, listed once: tokio's signal pipe is made as the shim starts
/// and stays, so one look at `/proc/self/fd` serves every Create and Exec (the init checks
/// each candidate again, see [`close_fds_except`]).
fn shim_socketpairs() -> &'static [RawFd] {
    static PAIRS: std::sync::OnceLock<Vec<RawFd>> = std::sync::OnceLock::new();
    PAIRS.get_or_init(|| unnamed_socketpairs(3))
}

impl Executor for WorkloadExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        match &self.workload {
            Workload::Exec => get_executor().exec(spec),
            Workload::Guest(guest) => {
                let mut keep = guest.keep_fds();
                keep.extend(self.log_fd);
                make_clean_init(keep, self.socketpairs);
                // The freed heap of the setup (the shim's, inherited, and libcontainer's, whose
                // mountinfo parses grow with every mount on the node) would stay resident for
                // the container's life. 1,000 idle containers in groups of 100: 1.73 MB PSS each
                // without the trim, 1.09 MB with it (the 1,000th: 2.73 MB, 1.31 MB).
                // SAFETY: plain libc call on this single-threaded process.
                unsafe { libc::malloc_trim(0) };
                // The pages of the setup's code (libcontainer's) and of the guest's start stay
                // mapped too: unmapped once the guest has run for a while.
                crate::idle::release_start_pages_in(GUEST_START_RELEASE);
                let args = spec.process().as_ref().and_then(|p| p.args().as_ref());
                title::set(args.map_or(&[], Vec::as_slice), self.title);
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| guest.run()))
                    .unwrap_or_else(|_| {
                        eprintln!("wasmpod: the guest runner panicked");
                        GUEST_PANICKED
                    });
                let _ = std::io::Write::flush(&mut std::io::stdout());
                let _ = std::io::Write::flush(&mut std::io::stderr());
                // Returning Ok would reach libcontainer's unreachable!() after exec; the process
                // ends here, with the guest's status.
                // SAFETY: ending the process is the intent; nothing else runs in it.
                unsafe { libc::_exit(code) }
            }
        }
    }

    /// libcontainer's default clears and sets the environment with `std::env`, whose lock the
    /// init inherits from the shim: a shim thread reading the environment at the instant the
    /// builder forked leaves it held, and the init's first write then waits for ever (1 of
    /// 1,000 grouped containers hung so, in `remove_var`). libc's own calls take no such lock.
    fn setup_envs(&self, envs: HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        reset_environment(&envs);
        Ok(())
    }

    fn validate(&self, _spec: &Spec) -> Result<(), ExecutorValidationError> {
        match &self.workload {
            // The shim resolved and classified the program before the fork (with the default
            // PATH when the spec has none, as runc does); libcontainer's own check would insist
            // on a PATH variable even for an absolute path.
            Workload::Exec | Workload::Guest(_) => Ok(()),
        }
    }
}

/// Replaces the process environment with `envs`, through libc only (see `setup_envs`). A
/// variable whose name or value holds a NUL byte cannot be set and is left out. Public for
/// `shim/tests/environment_after_fork.rs`, which forks and so needs a process of its own.
pub fn reset_environment(envs: &HashMap<String, String>) {
    // SAFETY: the init is single-threaded; glibc's environment lock is free in it (no shim
    // thread calls setenv).
    unsafe { libc::clearenv() };
    for (key, value) in envs {
        set_env_var(key, value);
    }
}

fn set_env_var(key: &str, value: &str) {
    let (Ok(key), Ok(value)) = (CString::new(key), CString::new(value)) else {
        return;
    };
    // SAFETY: valid C strings; single-threaded process.
    unsafe { libc::setenv(key.as_ptr(), value.as_ptr(), 1) };
}

/// Closes every inherited fd but stdio and `keep`, and sets the signal dispositions an init
/// process needs. The process is a fork of the shim: without this it would hold the shim's
/// ttrpc socket and other containers' fifos (keeping their readers from ever seeing EOF).
fn make_clean_init(keep: Vec<RawFd>, socketpairs: &[RawFd]) {
    close_fds_except(3, keep, socketpairs);
    drop_capabilities_as_execve_would();
    // wasmtime-wasi builds a multi-thread tokio runtime for its blocking calls, one worker per
    // CPU by default; a guest needs one. (The guest's environment is the plan's, not this.)
    // Through libc: see `setup_envs`.
    set_env_var("TOKIO_WORKER_THREADS", "1");
    // SAFETY: plain libc calls on this single-threaded process; the handler only calls _exit.
    unsafe {
        for signal in TERMINATING {
            libc::signal(signal, die_by_signal as *const () as libc::sighandler_t);
        }
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        // A write to a closed fifo must fail with EPIPE inside the guest, not kill it silently.
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
    }
}

/// Applies what `execve` does to the capability sets of a non-root process: permitted and
/// effective shrink to the ambient set (capabilities(7), "Transformation of capabilities
/// during execve"). A native workload gets this from its exec; the guest runs without one, so a
/// container started as `--user 1000` would otherwise keep CAP_DAC_OVERRIDE and friends.
fn drop_capabilities_as_execve_would() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // For root, execve grants bounding | inheritable, which libcontainer already set up.
        return;
    }
    let ambient = caps::read(None, CapSet::Ambient).unwrap_or_default();
    for set in [CapSet::Effective, CapSet::Permitted] {
        if let Err(e) = caps::set(None, set, &ambient) {
            // Failing open would hand the guest privileges; end the container instead.
            eprintln!("wasmpod: cannot drop capabilities for a non-root guest: {e}");
            // SAFETY: ending the process is the intent.
            unsafe { libc::_exit(126) };
        }
    }
}

/// Closes every descriptor from `first` up, except those in `keep` and tokio's signal pipe,
/// which is replaced by a private one. Which of the `candidates` (the shim's unnamed
/// socketpairs, listed in the shim) is still one: the init has no `/proc` to list its own.
///
/// tokio keeps one process-wide socketpair for signal delivery, created in the shim before the
/// fork; any tokio runtime built later in this process (wasmtime-wasi builds one for its
/// blocking calls) dups it and fails if it was closed. It is recognised as an AF_UNIX socket
/// bound to no address and connected to no address, which no containerd socket or fifo is.
/// It must not stay *shared* either: the shim's signal handler writes its SIGCHLD wake-ups
/// into it, and a runtime here would read them, leaving the shim's children unreaped.
fn close_fds_except(first: RawFd, mut keep: Vec<RawFd>, candidates: &[RawFd]) {
    let pairs: Vec<RawFd> = candidates
        .iter()
        .copied()
        .filter(|&fd| fd >= first && is_unnamed_unix_pair(fd))
        .collect();
    replace_with_private_pairs(&pairs);
    keep.extend(pairs);
    keep.retain(|&fd| fd >= first);
    keep.sort_unstable();
    keep.dedup();
    let mut low = first as u32;
    for fd in keep {
        let fd = fd as u32;
        if fd > low {
            close_range(low, fd - 1);
        }
        low = fd + 1;
    }
    close_range(low, u32::MAX);
}

/// Puts fresh socketpairs at the numbers of `fds`, connecting them two by two (tokio creates
/// its sender and receiver together, so they are neighbours); an odd last one gets a pair whose
/// other end stays open, unused.
fn replace_with_private_pairs(fds: &[RawFd]) {
    for chunk in fds.chunks(2) {
        let mut pair = [0 as libc::c_int; 2];
        // SAFETY: socketpair writes two fds into `pair`; dup2 onto fds we own in this process.
        unsafe {
            if libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                pair.as_mut_ptr(),
            ) != 0
            {
                continue;
            }
            for (new, &old) in pair.iter().zip(chunk) {
                libc::dup3(*new, old, libc::O_CLOEXEC);
                libc::close(*new);
            }
        }
    }
}

fn unnamed_socketpairs(first: RawFd) -> Vec<RawFd> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
        .filter(|&fd| fd >= first && is_unnamed_unix_pair(fd))
        .collect()
}

fn is_unnamed_unix_pair(fd: RawFd) -> bool {
    let unnamed = |get: unsafe extern "C" fn(
        libc::c_int,
        *mut libc::sockaddr,
        *mut libc::socklen_t,
    ) -> libc::c_int| {
        // SAFETY: the kernel writes at most `len` bytes into `addr`, a properly sized buffer.
        unsafe {
            let mut addr: libc::sockaddr_un = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            get(fd, &mut addr as *mut _ as *mut libc::sockaddr, &mut len) == 0
                && addr.sun_family == libc::AF_UNIX as libc::sa_family_t
                && len as usize <= std::mem::size_of::<libc::sa_family_t>()
        }
    };
    unnamed(libc::getsockname) && unnamed(libc::getpeername)
}

fn close_range(low: u32, high: u32) {
    // SAFETY: close_range only closes descriptors; nothing in this process uses them again.
    unsafe { libc::syscall(libc::SYS_close_range, low, high, 0) };
}
