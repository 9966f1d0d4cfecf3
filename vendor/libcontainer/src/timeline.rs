//! wasmpod patch: the timestamps of a build's steps, for `scripts/trace-start.sh`.
//!
//! Off unless the runtime hands a descriptor to [`record_to`]: each [`mark`] then appends one
//! line, `pid label nanoseconds` (`CLOCK_MONOTONIC`), in a single `write(2)`, so that the
//! lines of the main, intermediate and init processes (forks that inherit the descriptor)
//! never interleave within a line. Marking costs one `clock_gettime` and one `write`.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

static FD: AtomicI32 = AtomicI32::new(-1);

/// Sends every later mark of this process and of its forks to `fd` (opened for append).
pub fn record_to(fd: RawFd) {
    FD.store(fd, Ordering::Relaxed);
}

/// Records that this process reached `label` now, if a descriptor was given.
pub fn mark(label: &str) {
    let fd = FD.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    let line = line(std::process::id(), label, now_ns());
    // SAFETY: writes a buffer this function owns to a descriptor; a failure is ignored, as
    // a lost mark is.
    unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
}

fn now_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

fn line(pid: u32, label: &str, ns: u128) -> String {
    format!("{pid} {label} {ns}\n")
}
