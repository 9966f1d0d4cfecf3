//! What runs inside the container's init process once isolation is in place.
//!
//! libcontainer calls [`Executor::exec`] in the init process after namespaces, cgroups,
//! pivot_root, capabilities and seccomp are applied and Start has been received. A native
//! workload execs as runc would. An in-process [`Guest`] (the wasm engine) runs right here,
//! without an exec, so the process must first be made clean: it is a fork of the shim.

use std::os::fd::RawFd;
use std::sync::Arc;

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::{
    default::get_executor, Executor, ExecutorError, ExecutorValidationError,
};

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

/// Adapts a [`Workload`] to libcontainer's executor interface.
#[derive(Clone)]
pub(super) struct WorkloadExecutor {
    pub workload: Workload,
    /// The shim's log fd, kept open so the guest's failures reach the shim log.
    pub log_fd: Option<RawFd>,
}

impl Executor for WorkloadExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        match &self.workload {
            Workload::Exec => get_executor().exec(spec),
            Workload::Guest(guest) => {
                let mut keep = guest.keep_fds();
                keep.extend(self.log_fd);
                make_clean_init(keep);
                let code = guest.run();
                let _ = std::io::Write::flush(&mut std::io::stdout());
                let _ = std::io::Write::flush(&mut std::io::stderr());
                // Returning Ok would reach libcontainer's unreachable!() after exec; the process
                // ends here, with the guest's status.
                // SAFETY: ending the process is the intent; nothing else runs in it.
                unsafe { libc::_exit(code) }
            }
        }
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        match &self.workload {
            Workload::Exec => get_executor().validate(spec),
            // The guest was resolved and compiled by the shim before the fork.
            Workload::Guest(_) => Ok(()),
        }
    }
}

/// Closes every inherited fd but stdio and `keep`, and sets the signal dispositions an init
/// process needs. The process is a fork of the shim: without this it would hold the shim's
/// ttrpc socket and other containers' fifos (keeping their readers from ever seeing EOF).
fn make_clean_init(keep: Vec<RawFd>) {
    close_fds_except(3, keep);
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

/// Closes every descriptor from `first` up, except those in `keep`.
fn close_fds_except(first: RawFd, mut keep: Vec<RawFd>) {
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

fn close_range(low: u32, high: u32) {
    // SAFETY: close_range only closes descriptors; nothing in this process uses them again.
    unsafe { libc::syscall(libc::SYS_close_range, low, high, 0) };
}
