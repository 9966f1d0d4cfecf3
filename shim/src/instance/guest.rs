//! The wasm guest as an isolation [`Guest`]: runs the loaded program in the container's init
//! process and turns the outcome into an exit status.

use std::sync::Arc;

use log::error;

use crate::engine::{GuestExit, GuestIo, Program, WasmEngine};
use crate::isolation::Guest;
use crate::plan::WasiPlan;

/// Exit status when the guest could not even be set up in the container (e.g. a preopened
/// directory is missing): 126, the shell's "found but cannot be run".
pub const SETUP_FAILED: i32 = 126;

/// A compiled program plus what it is granted.
pub struct WasmGuest {
    id: String,
    engine: Arc<WasmEngine>,
    program: Program,
    plan: WasiPlan,
}

impl WasmGuest {
    /// Wraps a loaded program and its plan.
    pub fn new(id: &str, engine: Arc<WasmEngine>, program: Program, plan: WasiPlan) -> Self {
        Self {
            id: id.to_string(),
            engine,
            program,
            plan,
        }
    }
}

impl Guest for WasmGuest {
    fn keep_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.program.retained_fds()
    }

    fn run(&self) -> i32 {
        match self.engine.run(&self.program, &self.plan, GuestIo::Inherit) {
            Ok(exit) => {
                if let GuestExit::Trapped { message } = &exit {
                    error!("{}: guest trapped: {message}", self.id);
                    eprintln!("wasmpod: guest trapped: {message}");
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
