//! The epoch ticker: wasm code checks the engine's epoch at function entries and loop heads,
//! and each request's store yields to the async runtime at every new epoch, so its deadline
//! timer can fire and a busy guest shares the worker threads. Something has to advance the
//! epoch; this thread does, but only while a request is running, so an idle server costs no
//! wake-ups.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use wasmtime::Engine;

/// One epoch: the granularity of request deadlines.
pub const TICK: Duration = Duration::from_millis(10);

/// Advances an engine's epoch every [`TICK`] while at least one request holds a [`Running`].
#[derive(Clone)]
pub struct EpochTicker {
    shared: Arc<(Mutex<usize>, Condvar)>,
}

/// Held for as long as one request runs.
pub struct Running {
    shared: Arc<(Mutex<usize>, Condvar)>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let (count, _) = &*self.shared;
        if let Ok(mut n) = count.lock() {
            *n = n.saturating_sub(1);
        }
    }
}

impl EpochTicker {
    /// Starts the ticker thread for `engine`.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn start(engine: Engine) -> std::io::Result<Self> {
        let shared = Arc::new((Mutex::new(0usize), Condvar::new()));
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                let (count, wake) = &*thread_shared;
                loop {
                    let Ok(guard) = count.lock() else { return };
                    let Ok(guard) = wake.wait_while(guard, |n| *n == 0) else {
                        return;
                    };
                    drop(guard);
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self { shared })
    }

    /// Marks a request as running until the returned guard drops.
    pub fn running(&self) -> Running {
        let (count, wake) = &*self.shared;
        if let Ok(mut n) = count.lock() {
            *n += 1;
        }
        wake.notify_one();
        Running {
            shared: self.shared.clone(),
        }
    }
}
