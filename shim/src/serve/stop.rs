//! SIGTERM and SIGINT for a serving container's init process.
//!
//! tokio's signal handling cannot be used here: this process is a fork of the shim, whose
//! tokio already registered these signals, so tokio here believes its handler is installed
//! while the init process's own (exit at once) is. A handler that writes to a pipe and a
//! thread that reads it does the job with nothing inherited.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::sync::watch;

/// The pipe's write end, for the handler.
static STOP_WRITER: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_stop(_signal: libc::c_int) {
    let fd = STOP_WRITER.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; a full pipe only drops a redundant byte.
        unsafe { libc::write(fd, b"s".as_ptr().cast(), 1) };
    }
}

/// Installs the handlers; the receiver turns `true` at the first SIGTERM or SIGINT.
///
/// # Errors
/// No pipe, or the reader thread could not start.
pub(crate) fn on_signals() -> std::io::Result<watch::Receiver<bool>> {
    let (read, write): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    STOP_WRITER.store(write.as_raw_fd(), Ordering::Relaxed);
    // The write end lives as long as the process.
    std::mem::forget(write);
    let (tx, rx) = watch::channel(false);
    std::thread::Builder::new()
        .name("stop-signal".into())
        .spawn(move || {
            let mut byte = [0u8; 1];
            loop {
                match nix::unistd::read(read.as_raw_fd(), &mut byte) {
                    Ok(1) => {
                        let _ = tx.send(true);
                        return;
                    }
                    Err(nix::errno::Errno::EINTR) => continue,
                    _ => return,
                }
            }
        })?;
    // SAFETY: sigaction with a handler that only calls write(2).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_stop as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        for signal in [libc::SIGTERM, libc::SIGINT] {
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(rx)
}
