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

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// The helper's command-line argument.
pub const COMPILE_COMMAND: &str = "compile-cache";

/// Runs `helper compile-cache`, feeding it `wasm`; returns its stderr when it failed (or
/// could not be run).
pub(crate) fn compile_in(helper: &Path, args: &[&str], wasm: &[u8]) -> Result<(), String> {
    let mut command = Command::new(helper);
    // A helper must not outlive a shim killed mid-compile (SIGKILL gives the shim no chance to
    // stop it): the kernel kills it when the thread that started it, which waits for it,
    // is gone.
    // SAFETY: prctl is async-signal-safe, which is all a pre_exec hook may rely on.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .arg(COMPILE_COMMAND)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", helper.display()))?;
    // The helper reads all of stdin before it writes anything, so this cannot deadlock.
    let fed = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(wasm))
        .unwrap_or(Ok(()));
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    // Err (ECHILD) when the shim's reaper collected it first: the status is then unknown.
    let status = child.wait();
    match (fed, status) {
        (Err(e), _) => Err(format!("feeding it the program: {e}; {}", stderr.trim())),
        (Ok(()), Ok(s)) if !s.success() => Err(format!("{s}: {}", stderr.trim())),
        _ => Ok(()),
    }
}
