//! A process's terminal as the shim holds it: the pty master, the two copies between it and
//! containerd's fifos, and the window size.
//!
//! As in containerd's runc shim: stdin fifo -> master, master -> stdout fifo; a terminal has no
//! separate stderr. The output copy runs until the master reports EIO, which Linux does once
//! every descriptor of the slave is closed, after the last buffered byte has been read; only
//! then is the shim's end of the stdout fifo closed, so containerd's reader sees all output and
//! then end-of-file. [`Terminal::drained`] tells the task layer when that point is reached, so
//! TaskExit is not sent before the tail of the output has been copied.
//!
//! The shim keeps a writing end of the stdin fifo open (as runc's shim does), so stdin does not
//! reach end-of-file merely because containerd's writer has not opened yet or went away;
//! CloseIO drops it. When stdin then ends, the shim types the terminal's end-of-file character
//! (VEOF, usually ^D) into the master, as util-linux `script` does, so a program reading the
//! terminal sees end-of-file instead of a hangup.

use std::fs::File;
use std::future::Future;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Mutex};

use log::{debug, warn};
use nix::sys::termios::{tcgetattr, SpecialCharacterIndices};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::open_fifo;
use crate::error::{Error, Result};

/// Bytes copied per read.
const CHUNK: usize = 32 * 1024;

/// A running terminal; dropping it stops both copies and closes the master.
#[derive(Debug)]
pub struct Terminal {
    label: String,
    master: Arc<AsyncFd<File>>,
    stdin_writer: Mutex<Option<File>>,
    drained: watch::Receiver<bool>,
    copies: Vec<JoinHandle<()>>,
}

impl Terminal {
    /// Starts copying between `master` and the fifos at `stdin` and `stdout` (empty: none).
    /// The copies run on the tokio runtime of the calling thread.
    ///
    /// # Errors
    /// No runtime, a fifo could not be opened, or a descriptor cannot be polled.
    pub fn start(label: &str, master: OwnedFd, stdin: &str, stdout: &str) -> Result<Self> {
        let context = |what: &str| format!("{label}: {what}");
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::io(context("copying a terminal"), std::io::Error::other(e)))?;
        let master = nonblocking(File::from(master))
            .and_then(pollable)
            .map_err(|e| Error::io(context("polling the pty master"), e))?;
        let master = Arc::new(master);
        let output = match stdout {
            "" => None,
            path => Some(
                pollable(open_fifo(path, true, "stdout")?)
                    .map_err(|e| Error::io(context("polling the stdout fifo"), e))?,
            ),
        };
        let (stdin_reader, stdin_writer) = match stdin {
            "" => (None, None),
            path => {
                let reader = pollable(open_fifo(path, false, "stdin")?)
                    .map_err(|e| Error::io(context("polling the stdin fifo"), e))?;
                // The shim's reader is already there, so this open succeeds at once.
                let writer = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(path)
                    .map_err(|e| Error::io(context("holding the stdin fifo open"), e))?;
                (Some(reader), Some(writer))
            }
        };
        let (done, drained) = watch::channel(false);
        let mut copies =
            vec![runtime.spawn(copy_output(label.to_string(), master.clone(), output, done))];
        if let Some(reader) = stdin_reader {
            copies.push(runtime.spawn(copy_input(label.to_string(), reader, master.clone())));
        }
        Ok(Self {
            label: label.to_string(),
            master,
            stdin_writer: Mutex::new(stdin_writer),
            drained,
            copies,
        })
    }

    /// Sets the window size (columns, rows); the kernel sends SIGWINCH to the terminal's
    /// foreground process group.
    ///
    /// # Errors
    /// The ioctl failed.
    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        set_window_size(self.master.get_ref(), width, height)
            .map_err(|e| Error::io(format!("{}: resizing the terminal", self.label), e))?;
        debug!("{}: terminal resized to {width}x{height}", self.label);
        Ok(())
    }

    /// Drops the shim's writing end of the stdin fifo (CloseIO): once containerd's is closed
    /// too, stdin ends and the process reads end-of-file from its terminal.
    pub fn close_stdin(&self) {
        let writer = self
            .stdin_writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        drop(writer);
    }

    /// Resolves once all the process's output has been copied to the stdout fifo (or the copy
    /// stopped).
    pub fn drained(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut drained = self.drained.clone();
        async move {
            // An error means the copy is gone (stopped): nothing more will be copied either.
            let _ = drained.wait_for(|done| *done).await;
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        for copy in &self.copies {
            copy.abort();
        }
    }
}

/// Sets the window size of the terminal whose master is `master` (TIOCSWINSZ).
pub(super) fn set_window_size(
    master: &impl AsRawFd,
    width: u32,
    height: u32,
) -> std::io::Result<()> {
    let size = winsize(width, height);
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which outlives the call.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The window size of a terminal (TIOCGWINSZ), for tests.
#[cfg(test)]
pub(super) fn window_size(fd: &impl AsRawFd) -> std::io::Result<libc::winsize> {
    let mut size = winsize(0, 0);
    // SAFETY: TIOCGWINSZ writes one `winsize` into `size`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(size)
}

/// A `winsize` for TIOCSWINSZ; sizes beyond what it holds are clamped.
fn winsize(width: u32, height: u32) -> libc::winsize {
    let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
    libc::winsize {
        ws_row: clamp(height),
        ws_col: clamp(width),
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Registers a non-blocking file with the runtime's poller.
fn pollable(file: File) -> std::io::Result<AsyncFd<File>> {
    // SAFETY: the File owns its descriptor, which stays open and the same until the AsyncFd
    // (which owns the File) is dropped.
    Ok(unsafe { AsyncFd::register(file) }?)
}

fn nonblocking(file: File) -> std::io::Result<File> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(file.as_raw_fd(), FcntlArg::F_GETFL)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(flags))?;
    Ok(file)
}

/// master -> stdout until every slave descriptor is closed; then signals `done`.
async fn copy_output(
    label: String,
    master: Arc<AsyncFd<File>>,
    mut stdout: Option<AsyncFd<File>>,
    done: watch::Sender<bool>,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match read(&master, &mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            // Every slave descriptor is closed: the process (and all that shared its terminal)
            // is gone and the buffer has been read to the end.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => {
                warn!("{label}: reading the terminal failed: {e}");
                break;
            }
        };
        if let Some(out) = &stdout {
            if let Err(e) = write_all(out, &buf[..n]).await {
                // Keep draining the master, or the process would block on a full terminal.
                warn!("{label}: writing terminal output to the stdout fifo failed: {e}");
                stdout = None;
            }
        }
    }
    // Closing the shim's end lets containerd's reader see end-of-file.
    drop(stdout);
    debug!("{label}: terminal output drained");
    done.send_replace(true);
}

/// stdin -> master until stdin ends; then types VEOF.
async fn copy_input(label: String, stdin: AsyncFd<File>, master: Arc<AsyncFd<File>>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match read(&stdin, &mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if let Err(e) = write_all(&master, &buf[..n]).await {
                    debug!("{label}: stdin not copied to the terminal: {e}");
                    return;
                }
            }
            Err(e) => {
                warn!("{label}: reading the stdin fifo failed: {e}");
                return;
            }
        }
    }
    debug!("{label}: stdin closed; sending end-of-file to the terminal");
    if let Err(e) = write_all(&master, &[eof_char(master.get_ref())]).await {
        debug!("{label}: end-of-file not sent to the terminal: {e}");
    }
}

/// The terminal's VEOF character, ^D when it cannot be read.
fn eof_char(master: &File) -> u8 {
    tcgetattr(master)
        .map(|t| t.control_chars[SpecialCharacterIndices::VEOF as usize])
        .unwrap_or(0x04)
}

async fn read(fd: &AsyncFd<File>, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        let mut ready = fd.readable().await?;
        match ready.try_io(|f| f.get_ref().read(buf)) {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

async fn write_all(fd: &AsyncFd<File>, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        let mut ready = fd.writable().await?;
        match ready.try_io(|f| f.get_ref().write(buf)) {
            Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => buf = &buf[n..],
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "terminal_tests.rs"]
mod tests;
