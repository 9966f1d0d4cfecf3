//! The shim log: containerd's `log` fifo in the bundle directory, in logfmt lines.
//!
//! Opened here (not by containerd-shim's logger) so the fd number is known: container init
//! processes keep it, and a guest's trap or setup failure reaches this log from inside the
//! container.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, RawFd};

use containerd_shim::logger::FifoLogger;
use log::LevelFilter;

/// Installs the logger; returns the log fd.
///
/// # Errors
/// The fifo could not be opened.
pub fn init(debug: bool) -> std::io::Result<RawFd> {
    let file = OpenOptions::new().write(true).open("log")?;
    let fd = file.as_raw_fd();
    log::set_boxed_logger(Box::new(FifoLogger::with_file(file)))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let level = std::env::var("WASMPOD_LOG")
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(if debug {
            LevelFilter::Debug
        } else {
            LevelFilter::Info
        });
    log::set_max_level(level);
    Ok(fd)
}
