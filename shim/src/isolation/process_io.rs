//! How a process the isolation layer starts gets its stdin, stdout and stderr: descriptors
//! handed over as they are, or a terminal made inside the container.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use libcontainer::container::builder::ContainerBuilder;

/// The stdio of one process (a container's init or an exec).
#[derive(Debug)]
pub enum ProcessIo {
    /// These become its fds 0, 1 and 2 (`None`: /dev/null).
    Fds([Option<OwnedFd>; 3]),
    /// A terminal (`process.terminal`). libcontainer opens a pty from the container's own
    /// devpts after pivot_root, makes the slave the process's stdio and, after `setsid`, its
    /// controlling terminal (so ^C reaches it as SIGINT), bind-mounts it on `/dev/console` for
    /// an init process, and sends the master over the unix socket at this path: runc's
    /// `--console-socket` protocol, which containerd's runc shim uses too.
    ///
    /// libcontainer briefly changes the shim's working directory while it connects (to keep
    /// the socket's path short); the shim uses absolute paths only.
    Console(PathBuf),
}

impl ProcessIo {
    /// Whether the process gets a terminal; `process.terminal` must say the same, or
    /// libcontainer refuses the console socket (or demands one).
    pub fn is_terminal(&self) -> bool {
        matches!(self, ProcessIo::Console(_))
    }

    /// Applies this stdio to a container builder.
    pub(super) fn apply(self, builder: ContainerBuilder) -> std::io::Result<ContainerBuilder> {
        match self {
            ProcessIo::Fds([stdin, stdout, stderr]) => Ok(builder
                .with_stdin(or_devnull(stdin)?)
                .with_stdout(or_devnull(stdout)?)
                .with_stderr(or_devnull(stderr)?)),
            ProcessIo::Console(socket) => Ok(builder.with_console_socket(Some(socket))),
        }
    }
}

/// The fd itself, or /dev/null when the stream was not asked for.
fn or_devnull(fd: Option<OwnedFd>) -> std::io::Result<OwnedFd> {
    match fd {
        Some(fd) => Ok(fd),
        None => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map(OwnedFd::from),
    }
}
