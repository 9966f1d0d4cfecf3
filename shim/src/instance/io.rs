//! A process's stdio from containerd's request: the fifos handed straight to the process, or a
//! terminal whose master the shim receives over a console socket and copies to the fifos.

use std::time::Duration;

use log::warn;

use crate::error::Result;
use crate::isolation::ProcessIo;
use crate::stdio::{self, ConsoleSocket, HeldOutput, PendingMaster, Terminal};
use crate::task::OutputDrained;

/// containerd's stdio fields for one process.
pub(super) struct Streams<'a> {
    /// Whom a `binary://` log URI's program logs for.
    pub owner: stdio::LogOwner<'a>,
    pub terminal: bool,
    pub stdin: &'a str,
    pub stdout: &'a str,
    pub stderr: &'a str,
}

/// What isolation needs to build the process and, with a terminal, its master on the way
/// (sized `size`, columns and rows, as soon as it arrives); without one, the shim's hold on
/// the output fifos (see [`HeldOutput`]).
///
/// If the build then fails, the pending master is simply dropped: its thread stops at once and
/// removes the socket.
pub(super) fn prepare(
    streams: &Streams<'_>,
    size: Option<(u32, u32)>,
) -> Result<(ProcessIo, Prepared)> {
    if streams.terminal {
        let socket = ConsoleSocket::bind()?;
        let io = ProcessIo::Console(socket.path().to_path_buf());
        let pending = socket.receive_in_background(size)?;
        return Ok((io, Prepared::Console(pending)));
    }
    let fds = stdio::open(streams.stdin, streams.stdout, streams.stderr, streams.owner)?;
    let held = HeldOutput::of(&fds)?;
    Ok((ProcessIo::Fds(fds), Prepared::Fifos(held)))
}

/// What [`prepare`] keeps besides the process's io.
pub(super) enum Prepared {
    /// The terminal's master, on its way.
    Console(PendingMaster),
    /// The shim's copies of the output fifos.
    Fifos(HeldOutput),
}

/// After the build, the process's output: its terminal, or the held fifos.
#[derive(Default)]
pub(super) struct Output {
    pub terminal: Option<Terminal>,
    pub held: Option<HeldOutput>,
}

impl Output {
    /// At the exit: what it waits for (the terminal's copy), and the held fifos let go once
    /// read (at most [`HELD_OUTPUT_GRACE`] later).
    pub fn drained(&mut self) -> Option<OutputDrained> {
        if let Some(held) = self.held.take() {
            held.release_when_read(HELD_OUTPUT_GRACE);
        }
        self.terminal
            .as_ref()
            .map(|t| Box::pin(t.drained()) as OutputDrained)
    }
}

/// How long the held fifos wait for a reader after the exit: containerd's clients read the
/// output before they delete the process, well within this.
const HELD_OUTPUT_GRACE: Duration = Duration::from_secs(10);

/// Once the process is built: takes its terminal's master and starts copying. The stderr fifo
/// is not used: a terminal has one output stream (as with runc).
pub(super) fn attach(label: &str, prepared: Prepared, streams: &Streams<'_>) -> Result<Output> {
    let pending = match prepared {
        Prepared::Fifos(held) => {
            return Ok(Output {
                terminal: None,
                held: Some(held),
            })
        }
        Prepared::Console(pending) => pending,
    };
    let master = pending.wait()?;
    if !streams.stderr.is_empty() {
        warn!("{label}: a terminal has no separate stderr; the stderr fifo stays empty");
    }
    let terminal = Terminal::start(label, master, streams.stdin, streams.stdout)?;
    Ok(Output {
        terminal: Some(terminal),
        held: None,
    })
}
