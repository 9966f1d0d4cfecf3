//! One process of a task (its init or an exec): pid, stdio, lifecycle, and its exit, which any
//! number of waiters await.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

use super::{Exit, Lifecycle};

/// Bookkeeping of one process.
pub(super) struct Slot {
    pid: AtomicU32,
    pub(super) stdio: [String; 3],
    lifecycle: Mutex<Lifecycle>,
    exit: watch::Sender<Option<Exit>>,
}

impl Slot {
    /// A process in the Created state; `pid` 0 until it has one.
    pub(super) fn new(pid: u32, stdio: [String; 3]) -> Self {
        Self {
            pid: AtomicU32::new(pid),
            stdio,
            lifecycle: Mutex::new(Lifecycle::default()),
            exit: watch::channel(None).0,
        }
    }

    pub(super) fn pid(&self) -> u32 {
        self.pid.load(Ordering::SeqCst)
    }

    pub(super) fn set_pid(&self, pid: u32) {
        self.pid.store(pid, Ordering::SeqCst);
    }

    pub(super) fn lifecycle(&self) -> MutexGuard<'_, Lifecycle> {
        self.lifecycle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the exit; false when one was recorded already (the first wins).
    pub(super) fn record_exit(&self, exit: Exit) -> bool {
        let mut lifecycle = self.lifecycle();
        if lifecycle.exit().is_some() {
            return false;
        }
        lifecycle.exited(exit);
        drop(lifecycle);
        self.exit.send_replace(Some(exit));
        true
    }

    /// Waits for the exit.
    pub(super) async fn wait(&self) -> Exit {
        let mut rx = self.exit.subscribe();
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return exit;
            }
            // The sender lives as long as `self`, so the channel cannot close under us.
            let _ = rx.changed().await;
        }
    }
}
