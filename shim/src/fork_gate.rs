//! The fork gate: a process-wide lock between making a process (a fork of the shim) and the
//! few operations whose locks a forked child may need afterwards.
//!
//! A child of a multi-threaded process gets every lock in the state it had at the fork, and
//! only the forking thread. A lock another thread held then is held for ever in the child.
//! glibc's `fork()` takes care of its own (the allocator's); the shim's logger takes none;
//! what is left is wasmtime's process-wide code registry, written when a program is loaded or
//! dropped and read by a container's guest on every trap. Those operations run under
//! [`shared`]; the fork runs under [`exclusive`], so it never happens in the middle of one.
//! So does handing a logging program its pipes (`stdio`), whose ends no fork may inherit.
//!
//! It must not be held across anything slow (a compile): forks would wait for it.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static GATE: RwLock<()> = RwLock::new(());

/// Held while touching state a forked child needs consistent; many at once.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    GATE.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Held across a fork: no [`shared`] section is in progress in any thread.
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    GATE.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_fork_waits_for_the_sections_in_progress() {
        let section = shared();
        let (tx, rx) = mpsc::channel();
        let forker = std::thread::spawn(move || {
            let _fork = exclusive();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        drop(section);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        forker.join().unwrap();
    }
}
