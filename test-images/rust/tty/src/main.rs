//! Says whether its stdio are terminals, then optionally echoes stdin.
//!
//!   tty         prints `stdin=tty stdout=tty stderr=tty` (`notty` for a stream that is not a
//!               terminal), then exits 0
//!   tty read    then prints `read: LINE` for every line of stdin and `eof` when it ends
//!
//! Any other argument exits 1 with a message on stderr.
use std::io::{BufRead, IsTerminal, Write};

fn kind(is: bool) -> &'static str {
    if is {
        "tty"
    } else {
        "notty"
    }
}

fn main() {
    let read = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("read") => true,
        Some(other) => {
            eprintln!("error: unknown argument {other:?} (expected nothing or `read`)");
            std::process::exit(1);
        }
    };
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "stdin={} stdout={} stderr={}",
        kind(std::io::stdin().is_terminal()),
        kind(out.is_terminal()),
        kind(std::io::stderr().is_terminal()),
    );
    let _ = out.flush();
    if read {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(line) => {
                    let _ = writeln!(out, "read: {line}");
                    let _ = out.flush();
                }
                Err(e) => {
                    eprintln!("error: reading stdin: {e}");
                    std::process::exit(2);
                }
            }
        }
        let _ = writeln!(out, "eof");
    }
}
