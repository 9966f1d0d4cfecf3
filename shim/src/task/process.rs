//! One process of a task (its init or an exec): pid, stdio, lifecycle, and its exit, which any
//! number of waiters await.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use log::warn;
use tokio::sync::watch;

use super::{Exit, Lifecycle, OutputDrained};

/// How long an exit waits for the process's terminal output to be copied out. The copy ends as
/// soon as the last descriptor of the terminal closes, which for a container's init is at once
/// (its pid namespace dies with it). Only a background job an exec left behind, still holding
/// the terminal (or a stdout fifo nobody reads any more), makes an exit wait this long; exits
/// are handled one after another, in the order the reaper saw them, so the others wait too.
pub(super) const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Waits (at most [`DRAIN_GRACE`]) until `drained` resolves, so that containerd hears of an
/// exit only after the last output has been copied: clients delete the task right after the
/// exit (`ctr run --rm -t`), and that ends the copy.
pub(super) async fn drain(label: &str, drained: Option<OutputDrained>) {
    let Some(drained) = drained else { return };
    if tokio::time::timeout(DRAIN_GRACE, drained).await.is_err() {
        warn!(
            "{label}: terminal output still not copied out {DRAIN_GRACE:?} after the exit \
             (another process holds the terminal, or nobody reads stdout); reporting the exit"
        );
    }
}

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
