//! The vendored libcgroups' cgroup v2 clone path (`vendor/README.md`): a process cloned with
//! `CLONE_INTO_CGROUP` into the directory `open_for_clone` made is born in that cgroup, and
//! the manager then sees it there, so the intermediate process skips its `cgroup.procs` write.
//! Runs on the node's cgroup v2 hierarchy: `/sys/fs/cgroup` on a cgroup v2 node,
//! `/sys/fs/cgroup/unified` on this hybrid one.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use libcgroups::v2::manager::Manager;
use nix::unistd::Pid;

use super::builder::in_builder_process;

/// Not libc's, which reads 0 on glibc targets (a `c_int` too small for it); as in `fork.rs`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

fn unified_root() -> PathBuf {
    let own = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    own.lines()
        .filter(|line| {
            line.split(" - ")
                .nth(1)
                .is_some_and(|f| f.starts_with("cgroup2 "))
        })
        .filter_map(|line| line.split(' ').nth(4).map(PathBuf::from))
        .next()
        .expect("a cgroup v2 hierarchy is mounted (root and /sys/fs/cgroup/unified on CI)")
}

/// Clones a child into the cgroup of `dir` with a raw `clone3`, as libcontainer does; the child
/// answers with `child`'s status. Returns that status.
fn clone_into(dir: &OwnedFd, child: impl FnOnce() -> i32) -> i32 {
    #[repr(C)]
    struct CloneArgs([u64; 11]);
    let mut args = CloneArgs([0; 11]);
    args.0[0] = CLONE_INTO_CGROUP;
    args.0[4] = libc::SIGCHLD as u64;
    args.0[10] = dir.as_raw_fd() as u64;
    // SAFETY: called in a single-threaded builder process; the child runs `child` and _exits.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        let status = child();
        // SAFETY: ends the cloned child.
        unsafe { libc::_exit(status) };
    }
    assert!(pid > 0, "clone3: {}", std::io::Error::last_os_error());
    let mut status = 0;
    // SAFETY: reaps the child just made.
    unsafe { libc::waitpid(pid as i32, &mut status, 0) };
    libc::WEXITSTATUS(status)
}

#[test]
fn a_process_cloned_into_the_cgroup_is_born_there_and_the_manager_knows_it() {
    let root = unified_root();
    let relative = PathBuf::from(format!("/wasmpod-unit-clone-{}/c1", std::process::id()));
    let full = root.join(relative.strip_prefix("/").unwrap());
    let manager = Manager::new(root.clone(), relative.clone()).unwrap();

    let dir = manager
        .open_for_clone()
        .unwrap()
        .expect("root makes the cgroup");
    assert!(full.is_dir(), "{} made", full.display());
    assert!(
        !manager.holds_this_process(),
        "the test process is elsewhere"
    );

    let wanted = format!("0::{}", relative.display());
    let answer = in_builder_process(|| {
        let status = clone_into(&dir, || {
            let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
            let born_there = own.lines().any(|l| l == wanted);
            let known = manager.holds_this_process();
            // Joining again is a no-op for a process already there.
            let joined = libcgroups::common::CgroupManager::add_task(&manager, Pid::this()).is_ok();
            i32::from(born_there) | i32::from(known) << 1 | i32::from(joined) << 2
        });
        Ok(status)
    });
    assert_eq!(
        answer,
        Ok(0b111),
        "bits: born in the cgroup, seen there by the manager, add_task ok"
    );
    remove(&full);
}

#[test]
fn a_cgroup_that_was_already_made_is_opened_as_it_is() {
    let root = unified_root();
    let relative = PathBuf::from(format!("/wasmpod-unit-made-{}/c1", std::process::id()));
    let full = root.join(relative.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&full).unwrap();
    let manager = Manager::new(root, relative).unwrap();
    assert!(manager.open_for_clone().unwrap().is_some());
    remove(&full);
}

/// Removes a test's cgroup and its parent, which is the test's own: the tests run at once, so
/// they share no level the other could remove while it is being made.
fn remove(dir: &Path) {
    std::fs::remove_dir(dir).unwrap();
    std::fs::remove_dir(dir.parent().unwrap()).unwrap();
}
