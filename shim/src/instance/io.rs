//! A process's stdio from containerd's request: the fifos handed straight to the process, or a
//! terminal whose master the shim receives over a console socket and copies to the fifos.

use log::warn;

use crate::error::Result;
use crate::isolation::ProcessIo;
use crate::stdio::{self, ConsoleSocket, PendingMaster, Terminal};
use crate::task::OutputDrained;

/// containerd's stdio fields for one process.
pub(super) struct Streams<'a> {
    pub terminal: bool,
    pub stdin: &'a str,
    pub stdout: &'a str,
    pub stderr: &'a str,
}

/// What isolation needs to build the process and, with a terminal, its master on the way
/// (sized `size`, columns and rows, as soon as it arrives).
///
/// If the build then fails, the pending master is simply dropped: its thread stops at once and
/// removes the socket.
pub(super) fn prepare(
    streams: &Streams<'_>,
    size: Option<(u32, u32)>,
) -> Result<(ProcessIo, Option<PendingMaster>)> {
    if streams.terminal {
        let socket = ConsoleSocket::bind()?;
        let io = ProcessIo::Console(socket.path().to_path_buf());
        return Ok((io, Some(socket.receive_in_background(size)?)));
    }
    let fds = stdio::open(streams.stdin, streams.stdout, streams.stderr)?;
    Ok((ProcessIo::Fds(fds), None))
}

/// Once the process is built: takes its terminal's master and starts copying. The stderr fifo
/// is not used: a terminal has one output stream (as with runc).
pub(super) fn attach(
    label: &str,
    pending: Option<PendingMaster>,
    streams: &Streams<'_>,
) -> Result<Option<Terminal>> {
    let Some(pending) = pending else {
        return Ok(None);
    };
    let master = pending.wait()?;
    if !streams.stderr.is_empty() {
        warn!("{label}: a terminal has no separate stderr; the stderr fifo stays empty");
    }
    Terminal::start(label, master, streams.stdin, streams.stdout).map(Some)
}

/// What an exit waits for with `terminal`.
pub(super) fn drained(terminal: Option<&Terminal>) -> Option<OutputDrained> {
    terminal.map(|t| Box::pin(t.drained()) as OutputDrained)
}
