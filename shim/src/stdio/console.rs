//! The console socket: where a process that gets a terminal sends the shim its pty master.
//!
//! This is runc's `--console-socket` protocol, which libcontainer speaks too: the runtime
//! creates the pty inside the container (from the container's own devpts), makes the slave the
//! process's stdio and controlling terminal, and sends the master over a unix socket as one
//! `SCM_RIGHTS` message. containerd's runc shim listens on a temporary socket the same way
//! (`console.NewTempConsoleSocket`).
//!
//! The socket lives in a private `0700` directory under the temp dir, not in the bundle: a
//! bundle path plus a 64-character container id would not fit in `sun_path` (108 bytes).

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::warn;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use super::terminal::set_window_size;
use crate::error::{Error, Result};

/// How long the process may take to send its master once the runtime has built it. It is sent
/// before libcontainer reports the process ready, so this only bounds a broken runtime.
pub const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listening console socket; its directory is removed on drop.
#[derive(Debug)]
pub struct ConsoleSocket {
    dir: PathBuf,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Listens on a fresh socket in a private temporary directory.
    ///
    /// # Errors
    /// The directory or the socket could not be created.
    pub fn bind() -> Result<Self> {
        let template = std::env::temp_dir().join("wasmpod-console-XXXXXX");
        let dir = nix::unistd::mkdtemp(&template).map_err(|e| {
            Error::io(
                format!("creating a console socket directory {}", template.display()),
                e.into(),
            )
        })?;
        let path = dir.join("sock");
        match UnixListener::bind(&path) {
            Ok(listener) => Ok(Self {
                dir,
                path,
                listener,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(Error::io(
                    format!("listening on the console socket {}", path.display()),
                    e,
                ))
            }
        }
    }

    /// The socket's path, for the runtime.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Receives the pty master the runtime sent, waiting at most `timeout`.
    ///
    /// # Errors
    /// Nothing came in time, or the message held no descriptor.
    pub fn receive_master(&self, timeout: Duration) -> Result<OwnedFd> {
        self.receive_unless_cancelled(timeout, None)
    }

    /// [`Self::receive_master`], giving up as soon as `cancel` (a pipe's read end) reports its
    /// writer closed.
    fn receive_unless_cancelled(
        &self,
        timeout: Duration,
        cancel: Option<BorrowedFd<'_>>,
    ) -> Result<OwnedFd> {
        let context = || format!("receiving the pty master on {}", self.path.display());
        let mut fds = vec![PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        fds.extend(cancel.map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
        let millis = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        let ready = poll(&mut fds, millis).map_err(|e| Error::io(context(), e.into()))?;
        let cancelled = fds
            .get(1)
            .and_then(|fd| fd.revents())
            .is_some_and(|r| !r.is_empty());
        if ready == 0 || cancelled {
            let why = if cancelled {
                "the process was not built"
            } else {
                "nothing was sent"
            };
            return Err(Error::io(
                context(),
                std::io::Error::new(std::io::ErrorKind::TimedOut, why),
            ));
        }
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| Error::io(context(), e))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| Error::io(context(), e))?;
        receive_fd(&stream).map_err(|e| Error::io(context(), e))
    }

    /// Receives the master on a thread of its own, so that it arrives (and gets `size`, columns
    /// and rows) while the runtime is still building the process: an exec runs as soon as the
    /// runtime returns, and a program that asks for its size at once must not see 0x0.
    ///
    /// Dropping the [`PendingMaster`] unwaited (the process was not built) stops the thread at
    /// once, which removes the socket.
    ///
    /// # Errors
    /// The thread or its cancel pipe could not be made.
    pub fn receive_in_background(self, size: Option<(u32, u32)>) -> Result<PendingMaster> {
        let path = self.path.clone();
        let (cancelled, cancel) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::io(format!("receiving on {}", path.display()), e.into()))?;
        let thread = std::thread::Builder::new()
            .name("wasmpod-console".into())
            .spawn(move || {
                let master =
                    self.receive_unless_cancelled(RECEIVE_TIMEOUT, Some(cancelled.as_fd()))?;
                if let Some((width, height)) = size {
                    set_window_size(&master, width, height).map_err(|e| {
                        Error::io(
                            format!("sizing the terminal from {}", self.path.display()),
                            e,
                        )
                    })?;
                }
                Ok(master)
            })
            .map_err(|e| Error::io(format!("receiving on {}", path.display()), e))?;
        Ok(PendingMaster {
            thread,
            _cancel: cancel,
        })
    }
}

/// A master being received; see [`ConsoleSocket::receive_in_background`].
#[derive(Debug)]
pub struct PendingMaster {
    thread: std::thread::JoinHandle<Result<OwnedFd>>,
    /// The write end of the thread's cancel pipe: closed when this is dropped.
    _cancel: OwnedFd,
}

impl PendingMaster {
    /// Waits for the master (at most [`RECEIVE_TIMEOUT`]).
    ///
    /// # Errors
    /// Nothing came in time, or it could not be sized.
    pub fn wait(self) -> Result<OwnedFd> {
        self.thread.join().unwrap_or_else(|_| {
            Err(Error::io(
                "receiving the pty master",
                std::io::Error::other("the console thread panicked"),
            ))
        })
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            warn!(
                "removing the console socket directory {} failed: {e}",
                self.dir.display()
            );
        }
    }
}

/// Reads one message and takes the first descriptor it carries; any other is closed.
fn receive_fd(stream: &std::os::unix::net::UnixStream) -> std::io::Result<OwnedFd> {
    // The payload is the pty's name (libcontainer sends "/dev/ptmx"); only the fd matters.
    let mut name = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut received: Vec<OwnedFd> = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel just installed these descriptors in this process for us.
            received.extend(
                fds.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    received.into_iter().next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the message carried no file descriptor",
        )
    })
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;
    use std::os::unix::net::UnixStream;

    use nix::sys::socket::{sendmsg, ControlMessage};

    use super::super::terminal::window_size;
    use super::*;

    /// Sends `fd` as runc and libcontainer do: the pty's name, the master as SCM_RIGHTS.
    fn send_as_runc(client: &UnixStream, fd: &OwnedFd) {
        let fds = [fd.as_raw_fd()];
        sendmsg::<()>(
            client.as_raw_fd(),
            &[IoSlice::new(b"/dev/ptmx")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
    }

    #[test]
    fn the_master_sent_as_runc_does_is_received_and_the_directory_removed() {
        let socket = ConsoleSocket::bind().unwrap();
        let dir = socket.path().parent().unwrap().to_path_buf();
        let sent = nix::pty::openpty(None, None).unwrap();
        send_as_runc(&UnixStream::connect(socket.path()).unwrap(), &sent.master);

        let got = socket.receive_master(Duration::from_secs(5)).unwrap();
        let ino = |fd: &OwnedFd| nix::sys::stat::fstat(fd.as_raw_fd()).unwrap().st_ino;
        assert_eq!(ino(&got), ino(&sent.master));
        drop(socket);
        assert!(!dir.exists());
    }

    #[test]
    fn a_master_received_in_the_background_is_sized_at_once() {
        let socket = ConsoleSocket::bind().unwrap();
        let client = UnixStream::connect(socket.path()).unwrap();
        let pending = socket.receive_in_background(Some((120, 40))).unwrap();
        let sent = nix::pty::openpty(None, None).unwrap();
        send_as_runc(&client, &sent.master);
        pending.wait().unwrap();
        let size = window_size(&sent.slave).unwrap();
        assert_eq!((size.ws_row, size.ws_col), (40, 120));
    }

    #[test]
    fn a_runtime_that_sends_nothing_times_out_with_the_socket_named() {
        let socket = ConsoleSocket::bind().unwrap();
        let err = socket
            .receive_master(Duration::from_millis(50))
            .unwrap_err();
        assert!(err.to_string().contains("pty master"), "{err}");
        assert!(err.to_string().contains("nothing was sent"), "{err}");
    }

    #[test]
    fn dropping_a_pending_master_stops_its_thread_and_removes_the_socket() {
        let socket = ConsoleSocket::bind().unwrap();
        let dir = socket.path().parent().unwrap().to_path_buf();
        drop(socket.receive_in_background(None).unwrap());
        // Well inside RECEIVE_TIMEOUT (10 s), which is what it waited before the cancel pipe.
        let gone = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            !dir.exists()
        });
        assert!(gone, "{} outlived its PendingMaster", dir.display());
    }

    #[test]
    fn a_message_without_a_descriptor_is_refused() {
        let socket = ConsoleSocket::bind().unwrap();
        let client = UnixStream::connect(socket.path()).unwrap();
        std::io::Write::write_all(&mut &client, b"/dev/ptmx").unwrap();
        let err = socket.receive_master(Duration::from_secs(5)).unwrap_err();
        assert!(err.to_string().contains("no file descriptor"), "{err}");
    }
}
