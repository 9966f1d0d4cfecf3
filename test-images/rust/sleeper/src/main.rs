//! Prints `tick N` (N = 1, 2, ...) once per second, flushing each line.
//!
//!   sleeper        ticks forever
//!   sleeper N      prints tick 1..=N, sleeping 1 s after each, then exits 0
//!                  (so it runs for about N seconds; N = 0 exits at once)
//!
//! A non-numeric N exits 1 with a message on stderr.
use std::io::Write;
use std::time::Duration;

fn main() {
    let limit: Option<u64> = match std::env::args().nth(1) {
        None => None,
        Some(s) => match s.parse() {
            Ok(n) => Some(n),
            Err(e) => {
                eprintln!("error: bad tick count {s:?}: {e}");
                std::process::exit(1);
            }
        },
    };
    let mut out = std::io::stdout();
    let mut n: u64 = 0;
    while limit.is_none_or(|l| n < l) {
        n += 1;
        let _ = writeln!(out, "tick {n}");
        let _ = out.flush();
        std::thread::sleep(Duration::from_secs(1));
    }
}
