//! The shim log: containerd's `log` fifo in the bundle directory, in logfmt lines.
//!
//! Opened here (not by containerd-shim's logger) so the fd number is known: container init
//! processes keep it, and a guest's trap or setup failure reaches this log from inside the
//! container.
//!
//! The logger takes no lock: each line is formatted into its own buffer and written with one
//! `write(2)`. containerd-shim's `FifoLogger` holds a mutex while it writes; a process forked
//! while another thread held it (every container and exec is made by a fork of the shim)
//! would wait for it forever at its first log line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};

use log::{LevelFilter, Log, Metadata, Record};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Installs the logger; returns the log fd.
///
/// # Errors
/// The fifo could not be opened.
pub fn init(debug: bool) -> std::io::Result<RawFd> {
    let file = OpenOptions::new().write(true).open("log")?;
    let fd = file.as_raw_fd();
    log::set_boxed_logger(Box::new(LineLogger { file }))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let level = std::env::var("WASMPOD_LOG")
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(if debug {
            LevelFilter::Debug
        } else {
            LevelFilter::Info
        });
    log::set_max_level(level);
    Ok(fd)
}

/// One logfmt line per record, written whole.
struct LineLogger {
    file: File,
}

impl Log for LineLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format_line(OffsetDateTime::now_utc(), record);
            // A containerd that stopped reading must not stop the shim: errors are dropped.
            let _ = (&self.file).write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// `time="..." level=... msg="..."`, as containerd's own shims write; quotes and newlines
/// in the message are escaped so that one record stays one line.
fn format_line(now: OffsetDateTime, record: &Record<'_>) -> String {
    let time = now.format(&Rfc3339).unwrap_or_default();
    let message = record.args().to_string();
    let mut line = String::with_capacity(message.len() + 64);
    line.push_str("time=\"");
    line.push_str(&time);
    line.push_str("\" level=");
    line.push_str(&record.level().as_str().to_ascii_lowercase());
    line.push_str(" msg=\"");
    for c in message.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            c => line.push(c),
        }
    }
    line.push_str("\"\n");
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_one_logfmt_line_with_its_quotes_escaped() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let line = format_line(
            now,
            &Record::builder()
                .level(log::Level::Warn)
                .args(format_args!("c1: said \"no\"\nthen left"))
                .build(),
        );
        assert_eq!(
            line,
            "time=\"1970-01-01T00:00:00Z\" level=warn msg=\"c1: said \\\"no\\\"\\nthen left\"\n"
        );
    }
}
