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
//!
//! [`LogFollower`] keeps the log reaching containerd in a shim that serves many containers:
//! containerd reads a bundle's `log` fifo only while that bundle's container lives, so the log
//! follows the newest live container's bundle.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

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

/// Points the shim log (the fd [`init`] returned) at the `log` fifo of the newest live
/// container's bundle. A group shim starts in the bundle of its first container; once that
/// container was deleted, every line the shim wrote was lost, those about the group's other
/// containers too. Each container's init keeps the log fd it was forked with, so its own
/// lines go to its own bundle.
pub struct LogFollower {
    fd: Option<RawFd>,
    state: Mutex<Following>,
}

struct Following {
    /// Live containers and their bundles, oldest first; the log goes to the last one's.
    live: Vec<(String, PathBuf)>,
    /// The bundle whose fifo the log fd is now.
    target: Option<PathBuf>,
}

impl LogFollower {
    /// Follows containers with the log fd `fd` (`None`: no log, nothing to follow), which is
    /// the fifo of bundle `first` (the shim's working directory) to begin with.
    pub fn new(fd: Option<RawFd>, first: Option<PathBuf>) -> Self {
        Self {
            fd,
            state: Mutex::new(Following {
                live: Vec::new(),
                target: first,
            }),
        }
    }

    /// Container `id` is being created in `bundle`: the log goes to its fifo from now on.
    /// False when `id` was already live (a duplicate Create, which fails).
    pub fn created(&self, id: &str, bundle: &Path) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.live.iter().any(|(live, _)| live == id) {
            return false;
        }
        state.live.push((id.to_owned(), bundle.to_owned()));
        self.point_at(&mut state.target, bundle);
        true
    }

    /// Container `id` was deleted: if the log went to its bundle, it goes to the newest
    /// remaining container's. With none left it stays (containerd may still read it until
    /// the shim is shut down).
    pub fn deleted(&self, id: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Following { live, target } = &mut *state;
        let was_newest = live.last().is_some_and(|(newest, _)| newest == id);
        live.retain(|(l, _)| l != id);
        if let (true, Some((_, bundle))) = (was_newest, live.last()) {
            self.point_at(target, bundle);
        }
    }

    /// `dup2`s `bundle/log` onto the log fd, which stays the same number (the logger and
    /// container inits hold it), unless it is that fifo already (a shim's first container:
    /// nothing to reopen on its create path). A fifo nobody reads (ENXIO) or a missing one
    /// leaves the log where it was.
    fn point_at(&self, target: &mut Option<PathBuf>, bundle: &Path) {
        let Some(fd) = self.fd else { return };
        if target.as_deref() == Some(bundle) {
            return;
        }
        let fifo = bundle.join("log");
        // Non-blocking, so a fifo without a reader fails instead of hanging Create; then
        // blocking again, as the first log is, so a busy reader slows lines, never drops them.
        let opened = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .and_then(|file| {
                fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(OFlag::empty()))?;
                nix::unistd::dup2(file.as_raw_fd(), fd)?;
                Ok(())
            });
        match opened {
            Ok(()) => *target = Some(bundle.to_owned()),
            Err(e) => log::debug!("the shim log stays where it was: {}: {e}", fifo.display()),
        }
    }
}

/// One logfmt line per record, written whole.
struct LineLogger {
    file: File,
}

impl Log for LineLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        wanted(metadata.target(), metadata.level(), log::max_level())
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

/// Whether a record is logged at `max`: each is logged from a level of its own, which is its
/// record's level but for the chatty ones, so that containerd's log at its default level has
/// a container's news, not its steps:
/// - tracing spans (`tracing::span*`) and wasmtime-wasi's records below warn, only at trace:
///   `tracing` turns each span into a `log` record at the span's level, and wasmtime-wasi opens
///   an info span per WASI call, so every guest `fd_write` was a line in containerd's log (a
///   build of the whole workspace turns on `tracing`'s `log` feature, for oci-client);
/// - libcontainer's and libcgroups' info records (its steps: "cgroup manager V1 will be used")
///   and libcgroups' warning that the node lacks a cgroup v1 hierarchy (four of them at every
///   Create and every Delete on this project's nodes), at debug.
fn wanted(target: &str, level: log::Level, max: LevelFilter) -> bool {
    use log::Level::{Debug, Trace, Warn};
    let libcontainer = target.starts_with("libcontainer") || target.starts_with("libcgroups");
    let from = if target.starts_with("tracing::span")
        || (target.starts_with("wasmtime_wasi") && level > Warn)
    {
        Trace
    } else if (libcontainer && level > Warn)
        || (target.starts_with("libcgroups::v1::manager") && level == Warn)
    {
        Debug.max(level)
    } else {
        level
    };
    from <= max
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
    use std::io::Read;

    /// A bundle dir with a `log` fifo and, when `read`, a reader of it (non-blocking).
    fn bundle(root: &Path, name: &str, read: bool) -> (PathBuf, Option<File>) {
        let dir = root.join(name);
        std::fs::create_dir(&dir).unwrap();
        nix::unistd::mkfifo(&dir.join("log"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let reader = read.then(|| {
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(dir.join("log"))
                .unwrap()
        });
        (dir, reader)
    }

    /// Writes `what` to the log fd, wherever it points now.
    fn say(log: &File, what: &str) {
        nix::unistd::write(log, what.as_bytes()).unwrap();
    }

    fn drained(reader: &mut Option<File>) -> String {
        let mut got = String::new();
        let _ = reader.as_mut().unwrap().read_to_string(&mut got);
        got
    }

    #[test]
    fn the_log_follows_the_newest_live_container_and_falls_back_when_it_goes() {
        let root = tempfile::tempdir().unwrap();
        let (a, mut read_a) = bundle(root.path(), "a", true);
        let (b, mut read_b) = bundle(root.path(), "b", true);
        let (silent, _) = bundle(root.path(), "silent", false);
        let sink = File::create(root.path().join("first")).unwrap();
        let follower = LogFollower::new(Some(sink.as_raw_fd()), None);

        assert!(follower.created("a", &a));
        say(&sink, "1");
        assert!(follower.created("b", &b));
        say(&sink, "2");
        assert!(!follower.created("b", &b), "a duplicate is not new");
        // A container whose fifo nobody reads does not take the log.
        assert!(follower.created("s", &silent));
        say(&sink, "3");
        follower.deleted("s");
        follower.deleted("b");
        say(&sink, "4");
        follower.deleted("a");
        say(&sink, "5");
        assert_eq!(drained(&mut read_a), "145");
        assert_eq!(drained(&mut read_b), "23");
    }

    #[test]
    fn the_first_container_of_the_shims_own_bundle_keeps_the_log_as_it_is() {
        let root = tempfile::tempdir().unwrap();
        let (a, mut read_a) = bundle(root.path(), "a", true);
        let (b, mut read_b) = bundle(root.path(), "b", true);
        // The log fd stands for a's fifo, opened at the shim's start.
        let sink_path = root.path().join("as-opened");
        let sink = File::create(&sink_path).unwrap();
        let follower = LogFollower::new(Some(sink.as_raw_fd()), Some(a.clone()));

        assert!(follower.created("a", &a));
        say(&sink, "1");
        assert!(follower.created("b", &b));
        say(&sink, "2");
        follower.deleted("b");
        say(&sink, "3");
        assert_eq!(std::fs::read_to_string(&sink_path).unwrap(), "1");
        assert_eq!(drained(&mut read_b), "2");
        assert_eq!(drained(&mut read_a), "3", "reopened once b took the log");
    }

    #[test]
    fn chatty_records_are_logged_only_at_a_finer_level() {
        use log::Level::{Debug, Error, Info, Warn};
        use LevelFilter as At;
        // (target, record level, logger level, logged)
        let cases = [
            ("wasmpod_shim::task", Info, At::Info, true),
            ("wasmpod_shim::task", Debug, At::Info, false),
            ("tracing::span", Info, At::Info, false),
            ("tracing::span::active", Info, At::Debug, false),
            ("tracing::span", Info, At::Trace, true),
            ("wasmtime_wasi::p1", Info, At::Debug, false),
            ("wasmtime_wasi_http::types", Info, At::Info, false),
            ("wasmtime_wasi::p1", Warn, At::Info, true),
            ("wasmtime_wasi::p1", Info, At::Trace, true),
            ("libcgroups::common", Info, At::Info, false),
            ("libcgroups::common", Info, At::Debug, true),
            ("libcgroups::v1::manager", Warn, At::Info, false),
            ("libcgroups::v1::manager", Warn, At::Debug, true),
            ("libcontainer::process", Warn, At::Info, true),
            ("libcontainer::process", Error, At::Warn, true),
            ("libcontainer::process", Debug, At::Info, false),
        ];
        for (target, level, at, logged) in cases {
            assert_eq!(
                wanted(target, level, at),
                logged,
                "{target} {level} at {at}"
            );
        }
    }

    #[test]
    fn without_a_log_fd_following_does_nothing() {
        let root = tempfile::tempdir().unwrap();
        let (a, mut read_a) = bundle(root.path(), "a", true);
        let follower = LogFollower::new(None, None);
        assert!(follower.created("a", &a));
        follower.deleted("a");
        assert_eq!(drained(&mut read_a), "");
    }

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
