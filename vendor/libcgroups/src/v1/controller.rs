use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::unistd::Pid;

use crate::common::{self, CGROUP_PROCS, ControllerOpt, WrapIoResult, WrappedIoError};

pub(super) trait Controller {
    type Error: From<WrappedIoError>;
    type Resource;

    /// Adds a new task specified by its pid to the cgroup
    fn add_task(pid: Pid, cgroup_path: &Path) -> Result<(), Self::Error> {
        fs::create_dir_all(cgroup_path).wrap_create_dir(cgroup_path)?;
        join(pid, cgroup_path)?;
        Ok(())
    }

    /// Applies resource restrictions to the cgroup
    fn apply(controller_opt: &ControllerOpt, cgroup_root: &Path) -> Result<(), Self::Error>;

    /// Checks if the controller needs to handle this request
    fn needs_to_handle<'a>(controller_opt: &'a ControllerOpt) -> Option<&'a Self::Resource>;
}

/// wasmpod patch: moves `pid` into the cgroup at `cgroup_path`.
///
/// A write to `cgroup.procs` takes the kernel's global `cgroup_threadgroup_rwsem` for
/// writing, which waits for an RCU grace period when no other migration ran just before: 7 to
/// 16 ms on a 2-core node, most of a container's creation. Moving only the calling thread
/// (`0` into `tasks`) skips that lock. For a process with a single thread, as libcontainer's
/// intermediate process is when it joins the container's cgroups, it moves the same process.
pub(super) fn join(pid: Pid, cgroup_path: &Path) -> Result<(), WrappedIoError> {
    if pid == nix::unistd::getpid() && single_threaded() {
        return common::write_cgroup_file(cgroup_path.join("tasks"), 0);
    }
    common::write_cgroup_file(cgroup_path.join(CGROUP_PROCS), pid)
}

/// Whether the calling process has one thread (`num_threads`, field 20 of /proc/self/stat).
///
/// A process found single-threaded is remembered by its pid, as joining a container's cgroups
/// asks once per hierarchy (a dozen reads of /proc/self/stat otherwise). A fork has another
/// pid, so it never inherits the answer; the processes that join so (libcontainer's
/// intermediate) start no threads.
fn single_threaded() -> bool {
    static SINGLE_THREADED_PID: AtomicI32 = AtomicI32::new(0);
    let pid = nix::unistd::getpid().as_raw();
    if SINGLE_THREADED_PID.load(Ordering::Relaxed) == pid {
        return true;
    }
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else {
        return false;
    };
    // The command name, field 2, is in parentheses and may hold spaces: count after it.
    let single = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(17))
        .is_some_and(|threads| threads == "1");
    if single {
        SINGLE_THREADED_PID.store(pid, Ordering::Relaxed);
    }
    single
}
