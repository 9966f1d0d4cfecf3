//! How a guest ended, and its container exit code.
//!
//! A guest ends by returning from its entrypoint (status 0, or the `i32` it returned), by
//! calling WASI `proc_exit(n)` / `wasi:cli/exit` (status n; wasmtime-wasi surfaces it as an
//! [`wasmtime_wasi::I32Exit`] error), or by trapping. A trap is reported like a native process
//! killed by `SIGABRT`: exit code [`TRAP_EXIT_CODE`] = 128 + 6 = 134, which is what a shell,
//! `ctr` and Kubernetes users already read as "the program aborted".

use wasmtime_wasi::I32Exit;

/// Exit code of a trapped guest: 128 + `SIGABRT` (6), as for an aborted native process.
pub const TRAP_EXIT_CODE: i32 = 134;

/// How a guest run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestExit {
    /// The guest finished with this status (0 for a normal return).
    Exited(i32),
    /// The guest trapped (or a host call failed fatally); the container exits with
    /// [`TRAP_EXIT_CODE`].
    Trapped {
        /// The trap with its wasm backtrace, multi-line, for the container log.
        message: String,
    },
}

impl GuestExit {
    /// The exit code of the container process. The kernel keeps only the low 8 bits when the
    /// process exits; WASI already restricts `proc_exit` to 0..126.
    pub fn code(&self) -> i32 {
        match self {
            GuestExit::Exited(code) => *code,
            GuestExit::Trapped { .. } => TRAP_EXIT_CODE,
        }
    }

    /// The trap message (with wasm backtrace) if the guest trapped, for the container log.
    pub fn trap_message(&self) -> Option<&str> {
        match self {
            GuestExit::Exited(_) => None,
            GuestExit::Trapped { message } => Some(message),
        }
    }

    /// Classifies the error a guest call returned: an exit request or a trap.
    pub(crate) fn from_error(err: &wasmtime::Error) -> Self {
        match err.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => GuestExit::Exited(*code),
            // `{:?}` prints the trap, its cause chain and the wasm backtrace context.
            None => GuestExit::Trapped {
                message: format!("{err:?}"),
            },
        }
    }

    /// Whether an instantiation error is the guest's doing (a trapping start function or an
    /// exit during it) rather than a setup failure.
    pub(crate) fn is_guest_error(err: &wasmtime::Error) -> bool {
        err.is::<I32Exit>() || err.is::<wasmtime::Trap>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(GuestExit::Exited(0).code(), 0);
        assert_eq!(GuestExit::Exited(7).code(), 7);
        let trapped = GuestExit::Trapped {
            message: String::new(),
        };
        assert_eq!(trapped.code(), 134);
        assert_eq!(trapped.trap_message(), Some(""));
        assert_eq!(GuestExit::Exited(1).trap_message(), None);
    }

    #[test]
    fn classifies_exit_requests_and_traps() {
        let exit = wasmtime::Error::new(I32Exit(3));
        assert_eq!(GuestExit::from_error(&exit), GuestExit::Exited(3));
        let other = wasmtime::Error::msg("boom");
        assert!(matches!(
            GuestExit::from_error(&other),
            GuestExit::Trapped { message } if message.contains("boom")
        ));
    }
}
