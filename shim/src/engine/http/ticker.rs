//! The epoch ticker: wasm code checks the engine's epoch at function entries and loop heads,
//! and a store past its deadline traps. Something has to advance the epoch; this thread does,
//! but only while a request is running, so an idle server costs no wake-ups.

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

    /// Ticks in `timeout`, rounded up, plus one: the epoch may advance right after the
    /// deadline is set, so one tick less would cut a request early.
    pub fn ticks_for(timeout: Duration) -> u64 {
        let tick = TICK.as_nanos();
        u64::try_from(timeout.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX / 2) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_up_and_add_one() {
        assert_eq!(EpochTicker::ticks_for(Duration::from_millis(10)), 2);
        assert_eq!(EpochTicker::ticks_for(Duration::from_millis(11)), 3);
        assert_eq!(EpochTicker::ticks_for(Duration::from_millis(1000)), 101);
    }
}
