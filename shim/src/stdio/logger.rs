//! `binary://` log URIs: a logging program reads the process's output, as with containerd's
//! runc shim. nerdctl's log drivers (its default `json-file` among them) are such programs.
//!
//! The protocol is containerd's (`NewBinaryIO`, `NewBinaryCmd`):
//! - the program is the URI's path; each query pair becomes two arguments, key then value;
//! - its environment is `CONTAINER_ID` and `CONTAINER_NAMESPACE`, nothing else;
//! - it gets the reading ends of two pipes as fds 3 (stdout) and 4 (stderr), and the writing
//!   end of a third as fd 5, which it closes (or writes to) once it is ready to read;
//! - the process gets the two writing ends.
//!
//! The program sees end-of-file once the process has exited and the shim let its copies go,
//! and then leaves by itself. The shim does not wait for it (as the runc shim does not): the
//! shim's reaper collects it, and a program still writing its log may outlive the shim.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;

use super::percent_decoded;
use crate::error::{Error, Result};
use crate::spawn::Spawn;

/// Whom a logging program logs for.
#[derive(Debug, Clone, Copy)]
pub struct LogOwner<'a> {
    /// The process's id: the container's, or the exec's.
    pub id: &'a str,
    /// The containerd namespace.
    pub namespace: &'a str,
}

/// The program of a `binary://` URI and its arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct LogProgram {
    uri: String,
    path: PathBuf,
    args: Vec<String>,
}

/// How long a logging program has to get ready (close fd 5) before Create fails.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

impl LogProgram {
    /// The program a `binary://` URI names; `None` for any other stream.
    ///
    /// # Errors
    /// A `binary://` URI without an absolute path (`binary:///path/to/program`).
    pub fn of(uri: &str) -> Result<Option<Self>> {
        let Some(rest) = uri.strip_prefix("binary://") else {
            return Ok(None);
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let path = percent_decoded(path);
        if !path.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "the log URI {uri} names no absolute path (binary:///path/to/program)"
            )));
        }
        Ok(Some(Self {
            uri: uri.to_owned(),
            path: PathBuf::from(path),
            args: query_args(query),
        }))
    }

    /// Starts the program and waits (at most `ready_within`) until it is ready; returns the
    /// writing ends of the stdout and stderr pipes.
    ///
    /// # Errors
    /// The program cannot be run, leaves before it reads (it exited, say), or does not get
    /// ready in time (it is killed then); each names the URI.
    pub fn start(&self, owner: LogOwner<'_>, ready_within: Duration) -> Result<[OwnedFd; 2]> {
        // No builder forks while the program's ends are open in the shim: a container's init
        // would hold them until its Start, and so delay the ready signal, or hide that the
        // program left.
        let gate = crate::fork_gate::shared();
        let (out_r, out_w) = pipe(&self.uri)?;
        let (err_r, err_w) = pipe(&self.uri)?;
        let (ready_r, ready_w) = pipe(&self.uri)?;
        // Above fd 5, so that no dup2 below overwrites a descriptor it has yet to dup.
        let theirs = [out_r, err_r, ready_w]
            .iter()
            .map(|fd| above_five(fd, &self.uri))
            .collect::<Result<Vec<OwnedFd>>>()?;
        let fds = [0, 1, 2].map(|i| theirs[i].as_raw_fd());
        let env = [
            format!("CONTAINER_ID={}", owner.id),
            format!("CONTAINER_NAMESPACE={}", owner.namespace),
        ];
        // Its stdin, stdout and stderr are /dev/null; no dup overwrites a source, which are
        // above fd 5 (see `above_five`).
        let pid = Spawn::new(&self.path)
            .and_then(|s| s.args(&self.args))
            .and_then(|s| s.env(&env))
            .and_then(|s| {
                s.null(0)
                    .null(1)
                    .null(2)
                    .dup(fds[0], 3)
                    .dup(fds[1], 4)
                    .dup(fds[2], 5)
                    .spawn()
            })
            .map_err(|e| {
                Error::InvalidArgument(format!(
                    "the log URI {}: cannot run the logging program {}: {e}",
                    self.uri,
                    self.path.display()
                ))
            })?;
        drop(theirs);
        drop(gate);
        if !ready(&ready_r, ready_within) {
            let _ = kill(pid, Signal::SIGKILL);
            // ECHILD when the shim's reaper collected it first.
            let _ = waitpid(pid, None);
            return Err(Error::InvalidArgument(format!(
                "the log URI {}: the logging program did not get ready within {} s (it closes \
                 its fd 5 when it is)",
                self.uri,
                ready_within.as_secs()
            )));
        }
        // Its fds 3 and 4 close before its fd 5 when it exits, so a program that ended (or let
        // go of stdout) before it was ready has left the pipe without a reader by now.
        if !has_reader(&out_w) {
            return Err(Error::InvalidArgument(format!(
                "the log URI {}: the logging program left without reading the output",
                self.uri
            )));
        }
        Ok([out_w, err_w])
    }
}

/// Query pairs as arguments, key then value, in the URI's order; a key without a value gets an
/// empty one and a repeated key its first value only (as containerd's `url.Values` gives them).
fn query_args(query: &str) -> Vec<String> {
    let decode = |s: &str| percent_decoded(&s.replace('+', " "));
    let mut keys: Vec<String> = Vec::new();
    let mut args = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key);
        if keys.contains(&key) {
            continue;
        }
        keys.push(key.clone());
        args.push(key);
        args.push(decode(value));
    }
    args
}

fn pipe(uri: &str) -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| Error::io(format!("making a pipe for the log URI {uri}"), e.into()))
}

fn above_five(fd: &OwnedFd, uri: &str) -> Result<OwnedFd> {
    let copy = fcntl(fd.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(10))
        .map_err(|e| Error::io(format!("passing a pipe to the log URI {uri}"), e.into()))?;
    // SAFETY: fcntl returned a new descriptor that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(copy) })
}

/// Whether the pipe `writer` writes to still has a reader (poll reports an error when not).
fn has_reader(writer: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(writer),
        PollFlags::POLLOUT,
    )];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => !fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLERR)),
        Err(_) => true,
    }
}

/// Whether the program closed (or wrote to) its end of the ready pipe within `within`.
fn ready(reader: &OwnedFd, within: Duration) -> bool {
    let timeout = PollTimeout::try_from(within).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(reader),
        PollFlags::POLLIN,
    )];
    loop {
        match poll(&mut fds, timeout) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
#[path = "logger_tests.rs"]
mod tests;
