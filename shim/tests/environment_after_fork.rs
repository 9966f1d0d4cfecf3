//! The container init's environment reset after a fork. A test binary of its own: its forks
//! would otherwise hold other tests' descriptors (a pty's slave) open for an instant, and those
//! tests wait for them to close.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmpod_shim::isolation::reset_environment;

/// Forks while another thread reads the environment, as the shim's threads do while a
/// builder forks, and resets the environment in each child: with `std::env` the child
/// could inherit its lock held and hang; through libc it never waits.
#[test]
fn resetting_the_environment_after_a_fork_never_waits_for_the_parents_lock() {
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = std::env::var("PATH");
            }
        })
    };
    let envs = HashMap::from([("A".to_string(), "1".to_string())]);
    let mut hung = 0;
    for _ in 0..200 {
        // SAFETY: the child only calls libc and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            reset_environment(&envs);
            // SAFETY: getenv of a valid C string in the child.
            let ok = unsafe { !libc::getenv(c"A".as_ptr()).is_null() };
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        assert!(pid > 0, "fork failed");
        let start = Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                assert_eq!(libc::WEXITSTATUS(status), 0, "the child did not set A");
                break;
            }
            if start.elapsed() > Duration::from_secs(5) {
                hung += 1;
                // SAFETY: killing and reaping our own child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if hung > 0 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert_eq!(hung, 0, "children hung resetting the environment");
}
