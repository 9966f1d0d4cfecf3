//! The wasm guest as an isolation [`Guest`]: runs the loaded program in the container's init
//! process and turns the outcome into an exit status; an init guest that runs out of memory
//! says so to the shim through an [`OomReport`].

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use log::error;

use crate::engine::{GuestExit, GuestIo, Program, WasmEngine};
use crate::isolation::Guest;
use crate::plan::WasiPlan;
use crate::stages::Stages;

/// Exit status when the guest could not even be set up in the container (e.g. a preopened
/// directory is missing): 126, the shell's "found but cannot be run".
pub const SETUP_FAILED: i32 = 126;

/// A compiled program plus what it is granted.
pub struct WasmGuest {
    id: String,
    engine: Arc<WasmEngine>,
    program: Arc<Program>,
    plan: Arc<WasiPlan>,
    /// Where to report running out of memory: the init process's [`OomReport::writer`].
    oom_report: Option<RawFd>,
}

impl WasmGuest {
    /// Wraps a loaded program and its plan; `oom_report` for a container's init process.
    pub fn new(
        id: &str,
        engine: Arc<WasmEngine>,
        program: Program,
        plan: WasiPlan,
        oom_report: Option<RawFd>,
    ) -> Self {
        Self {
            id: id.to_string(),
            engine,
            program: Arc::new(program),
            plan: Arc::new(plan),
            oom_report,
        }
    }
}

/// How a container's guest tells the shim that it ran out of memory, which its exit status
/// cannot: 137 is also what `kill -9` gives. A pipe: the guest writes a byte before it exits,
/// the shim reads it once the exit has arrived.
#[derive(Debug)]
pub struct OomReport {
    read: OwnedFd,
    write: OwnedFd,
}

impl OomReport {
    /// A new, empty report.
    ///
    /// # Errors
    /// No descriptors left.
    pub fn new() -> std::io::Result<Self> {
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        Ok(Self { read, write })
    }

    /// The end the guest writes to (kept open in the container process).
    pub fn writer(&self) -> RawFd {
        self.write.as_raw_fd()
    }

    /// Whether the guest reported running out of memory; call after its exit.
    pub fn reported(&self) -> bool {
        let mut byte = [0u8; 1];
        matches!(nix::unistd::read(self.read.as_raw_fd(), &mut byte), Ok(1))
    }
}

fn report_oom(fd: RawFd) {
    // SAFETY: writing one byte from a valid buffer; a bad fd only makes write fail.
    unsafe { libc::write(fd, b"m".as_ptr().cast(), 1) };
}

impl Guest for WasmGuest {
    fn keep_fds(&self) -> Vec<RawFd> {
        let mut fds = self.program.retained_fds();
        fds.extend(self.oom_report);
        fds
    }

    fn run(&self) -> i32 {
        if self.program.serves_http() {
            return match crate::serve::serve(self.program.clone(), self.plan.clone()) {
                Ok(code) => code,
                Err(e) => {
                    error!("{}: {e}", self.id);
                    eprintln!("wasmpod: {e}");
                    SETUP_FAILED
                }
            };
        }
        let mut stages = Stages::new(format!("{}: guest", self.id));
        let ran = self.engine.run(&self.program, &self.plan, GuestIo::Inherit);
        stages.mark("instantiate and run");
        stages.log();
        match ran {
            Ok(exit) => {
                match &exit {
                    GuestExit::Trapped { message } => {
                        error!("{}: guest trapped: {message}", self.id);
                        eprintln!("wasmpod: guest trapped: {message}");
                    }
                    GuestExit::OutOfMemory { message } => {
                        error!("{}: guest out of memory at its limit: {message}", self.id);
                        eprintln!(
                            "wasmpod: out of memory: the guest trapped after the container's \
                             memory limit refused it more: {message}"
                        );
                        self.oom_report.into_iter().for_each(report_oom);
                    }
                    GuestExit::Exited(_) => {}
                }
                exit.code()
            }
            Err(e) => {
                error!("{}: {e}", self.id);
                eprintln!("wasmpod: {e}");
                SETUP_FAILED
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_read_once_written() {
        let report = OomReport::new().unwrap();
        assert!(!report.reported(), "empty");
        report_oom(report.writer());
        assert!(report.reported());
    }
}
