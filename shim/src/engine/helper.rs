//! Compiling in a short-lived helper process instead of the shim.
//!
//! Cranelift's working memory (a few MB of heap for a small program, far more for a large one)
//! and the compiler's code pages would otherwise stay in the shim for as long as its container
//! runs: glibc does not give the freed heap back, and the container process, forked from the
//! shim, shares that heap copy-on-write. Measured on the bench's idle sleeper, the container
//! whose start compiled cost 13 MB PSS (shim and container process) where the others cost 3.
//! So on a cache miss the shim runs the helper, `<helper> compile-cache` with the wasm on stdin,
//! which stores the artifact in the same cache (same engine settings, from the same
//! environment) and exits; the shim then maps the file as on a hit.
//!
//! The shim's exit status of the helper is not relied on: containerd-shim's reaper may collect
//! it first. What counts is whether the file is there and loads; when it is not, the shim
//! compiles in process, which also gives a bad program its precise, typed error.
//!
//! The helper is started with [`crate::spawn`] (a missing binary made std's `Command` panic
//! when the reaper won the race), so no hook runs between its fork and exec: the helper asks
//! the kernel itself to kill it with the shim ([`bind_to_shim`]).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::wait::{waitpid, WaitStatus};

use crate::spawn::Spawn;

/// The helper's command-line argument.
pub const COMPILE_COMMAND: &str = "compile-cache";

/// The shim's pid, in the helper's environment.
pub const SHIM_PID_ENV: &str = "WASMPOD_COMPILE_FOR";

/// Runs `helper compile-cache`, feeding it `wasm`; returns its stderr when it failed (or
/// could not be run).
pub(crate) fn compile_in(helper: &Path, args: &[&str], wasm: &[u8]) -> Result<(), String> {
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("a pipe: {e}"));
    // No container init is forked while the writing end of the helper's stdin is open: one
    // would hold a copy until its Start, and the helper would wait for end-of-file till then.
    // Short: the helper reads all of its stdin first.
    let gate = crate::fork_gate::shared();
    let (stdin_r, stdin_w): (OwnedFd, OwnedFd) = pipe()?;
    let (stderr_r, stderr_w): (OwnedFd, OwnedFd) = pipe()?;
    let pid = Spawn::new(helper)
        .and_then(|s| s.args(std::iter::once(COMPILE_COMMAND).chain(args.iter().copied())))
        .and_then(|s| s.env_with(SHIM_PID_ENV, &std::process::id().to_string()))
        .and_then(|s| {
            s.dup(stdin_r.as_raw_fd(), 0)
                .null(1)
                .dup(stderr_w.as_raw_fd(), 2)
                .spawn()
        })
        .map_err(|e| format!("cannot run {}: {e}", helper.display()))?;
    drop((stdin_r, stderr_w));
    let fed = File::from(stdin_w).write_all(wasm);
    drop(gate);
    let mut stderr = String::new();
    let _ = File::from(stderr_r).read_to_string(&mut stderr);
    let stderr = stderr.trim();
    // Err (ECHILD) when the shim's reaper collected it first: the status is then unknown.
    match (fed, waitpid(pid, None)) {
        (Err(e), _) => Err(format!("feeding it the program: {e}; {stderr}")),
        (Ok(()), Ok(WaitStatus::Exited(_, code))) if code != 0 => {
            Err(format!("exit status: {code}: {stderr}"))
        }
        (Ok(()), Ok(WaitStatus::Signaled(_, signal, _))) => {
            Err(format!("killed by {signal}: {stderr}"))
        }
        _ => Ok(()),
    }
}

/// In the helper, first thing: a helper must not outlive a shim killed mid-compile (SIGKILL
/// gives the shim no chance to stop it), so the kernel is to kill it when the shim's thread
/// that started it, which waits for it, is gone. Had the shim gone before this, the helper's
/// parent is no longer the shim named in [`SHIM_PID_ENV`]: it leaves at once.
///
/// # Errors
/// The shim is gone, or prctl failed.
pub fn bind_to_shim() -> Result<(), String> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and touches no memory.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(format!(
            "prctl(PR_SET_PDEATHSIG): {}",
            std::io::Error::last_os_error()
        ));
    }
    let shim = std::env::var(SHIM_PID_ENV).ok();
    if started_by(shim.as_deref(), std::os::unix::process::parent_id()) {
        Ok(())
    } else {
        Err("the shim that started this compile helper is gone".into())
    }
}

/// Whether the parent `parent` is the shim `shim` (its pid in [`SHIM_PID_ENV`]); true when
/// no shim is named (the helper run by hand).
fn started_by(shim: Option<&str>, parent: u32) -> bool {
    shim.is_none_or(|pid| pid.parse() == Ok(parent))
}

#[cfg(test)]
mod tests {
    use super::started_by;

    #[test]
    fn the_helper_leaves_when_its_parent_is_not_the_shim_that_named_itself() {
        assert!(started_by(Some("4242"), 4242));
        assert!(
            !started_by(Some("4242"), 1),
            "re-parented to init: the shim is gone"
        );
        assert!(!started_by(Some("x"), 4242));
        assert!(started_by(None, 1), "run by hand");
    }
}
