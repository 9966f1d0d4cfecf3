//! A process's stdin, stdout and stderr: containerd's fifos, and the terminal when one is asked
//! for. Nothing else in the shim touches these descriptors.
//!
//! Without a terminal the fifos are handed to the process as its fds 0, 1 and 2; the shim
//! copies no bytes and keeps no copy once the process is built. stdin therefore reaches
//! end-of-file when containerd closes its writing end (which is what CloseIO asks for).
//!
//! With a terminal (`ctr run -t`, `docker run -t`, `kubectl exec -t`) the process gets a pty
//! instead; [`ConsoleSocket`] receives its master and [`Terminal`] copies between the master and
//! the fifos, as containerd's runc shim does.

mod console;
mod terminal;

pub use console::{ConsoleSocket, PendingMaster, RECEIVE_TIMEOUT};
pub use terminal::Terminal;

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::error::{Error, Result};

/// Opens the three fifos; an empty path means none (the container gets /dev/null).
///
/// # Errors
/// A fifo could not be opened, for example because nobody reads it.
pub fn open(stdin: &str, stdout: &str, stderr: &str) -> Result<[Option<OwnedFd>; 3]> {
    Ok([
        open_one(stdin, false, "stdin")?,
        open_one(stdout, true, "stdout")?,
        open_one(stderr, true, "stderr")?,
    ])
}

fn open_one(path: &str, write: bool, name: &str) -> Result<Option<OwnedFd>> {
    if path.is_empty() {
        return Ok(None);
    }
    let context = || format!("opening the {name} fifo {path}");
    let file = open_fifo(path, write, name)?;
    // The guest expects ordinary blocking descriptors.
    let flags =
        fcntl(file.as_raw_fd(), FcntlArg::F_GETFL).map_err(|e| Error::io(context(), e.into()))?;
    let blocking = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(blocking))
        .map_err(|e| Error::io(context(), e.into()))?;
    Ok(Some(file.into()))
}

/// Opens a fifo without blocking and leaves it non-blocking.
///
/// A reader never waits for a writer. Writers (stdout, stderr) are opened read-write, as
/// containerd's runc shim holds both ends: the open cannot fail or block for want of a reader
/// (ctr opens its readers asynchronously), and a reader that goes away does not end the
/// program (or the shim's copy) with SIGPIPE.
fn open_fifo(path: &str, write: bool, name: &str) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(format!("opening the {name} fifo {path}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_paths_mean_no_stream() {
        let fds = open("", "", "").unwrap();
        assert!(fds.iter().all(Option::is_none));
    }

    #[test]
    fn a_fifo_with_a_reader_opens_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let p = path.to_str().unwrap();
        let reader = open_one(p, false, "stdin").unwrap().unwrap();
        let writer = open_one(p, true, "stdout").unwrap().unwrap();
        let flags = fcntl(writer.as_raw_fd(), FcntlArg::F_GETFL).unwrap();
        assert_eq!(flags & libc::O_NONBLOCK, 0);
        drop(reader);
    }

    #[test]
    fn a_fifo_nobody_reads_yet_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lonely");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let [_, stdout, _] = open("", path.to_str().unwrap(), "").unwrap();
        assert!(stdout.is_some());
    }

    #[test]
    fn a_missing_fifo_is_an_error_naming_it() {
        let err = open("", "/nonexistent/wasmpod-fifo", "").unwrap_err();
        assert!(err.to_string().contains("stdout fifo"), "{err}");
    }
}
