//! How a guest ended, and its container exit code.
//!
//! A guest ends by returning from its entrypoint (status 0, or the `i32` it returned), by
//! calling WASI `proc_exit(n)` / `wasi:cli/exit` (status n; wasmtime-wasi surfaces it as an
//! [`wasmtime_wasi::I32Exit`] error), or by trapping. A trap is reported like a native process
//! killed by `SIGABRT`: exit code [`TRAP_EXIT_CODE`] = 128 + 6 = 134, which is what a shell,
//! `ctr` and Kubernetes users already read as "the program aborted".
//!
//! One trap is told apart: a guest that traps after the engine refused it memory at its cap
//! (set just below the container's memory limit, see `limits`) died of the limit, as a native
//! process the kernel's OOM killer ends. It is reported the same way, exit code
//! [`OOM_EXIT_CODE`] = 128 + `SIGKILL` = 137, so that Kubernetes and Docker can say OOMKilled. A
//! guest that handles the refusal and exits keeps its own status.

use wasmtime_wasi::I32Exit;

/// Exit code of a trapped guest: 128 + `SIGABRT` (6), as for an aborted native process.
pub const TRAP_EXIT_CODE: i32 = 134;

/// Exit code of a guest that ran out of memory at its cap: 128 + `SIGKILL` (9), as for a
/// native process the kernel's OOM killer ended. A WASI exit status cannot be 137 (`proc_exit`
/// is limited to 0..126), so this status never comes from the guest itself.
pub const OOM_EXIT_CODE: i32 = 137;

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
    /// The guest trapped after a memory growth was refused at its cap: it ran out of memory.
    /// The container exits with [`OOM_EXIT_CODE`].
    OutOfMemory {
        /// The trap with its wasm backtrace, for the container log.
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
            GuestExit::OutOfMemory { .. } => OOM_EXIT_CODE,
        }
    }

    /// The trap message (with wasm backtrace) if the guest trapped, for the container log.
    pub fn trap_message(&self) -> Option<&str> {
        match self {
            GuestExit::Exited(_) => None,
            GuestExit::Trapped { message } | GuestExit::OutOfMemory { message } => Some(message),
        }
    }

    /// This exit, given whether the limiter refused the guest memory during the run: a trap
    /// after a refusal is the guest running out of memory.
    pub(crate) fn after_refusal(self, refused: bool) -> Self {
        match self {
            GuestExit::Trapped { message } if refused => GuestExit::OutOfMemory { message },
            other => other,
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
