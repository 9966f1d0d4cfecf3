//! A process's stdin, stdout and stderr: containerd's fifos, and the terminal when one is asked
//! for. Nothing else in the shim touches these descriptors.
//!
//! Without a terminal the fifos are handed to the process as its fds 0, 1 and 2; the shim
//! copies no bytes and keeps no copy of stdin once the process is built, so stdin reaches
//! end-of-file when containerd closes its writing end (which is what CloseIO asks for). It
//! holds the output fifos until the process has exited and its output was read
//! ([`HeldOutput`]).
//!
//! With a terminal (`ctr run -t`, `docker run -t`, `kubectl exec -t`) the process gets a pty
//! instead; [`ConsoleSocket`] receives its master and [`Terminal`] copies between the master and
//! the fifos, as containerd's runc shim does.
//!
//! stdout and stderr may also come as a log URI (`ctr run --log-uri file:///var/log/c.log`):
//! a `file://` one is opened for appending (made, with its directory, when missing) and
//! handed to the process as well, both streams to the one file, as the runc shim does; a
//! `binary://` one names a logging program, which reads both streams from pipes
//! ([`LogProgram`]).

mod console;
mod logger;
mod terminal;

pub use console::{ConsoleSocket, PendingMaster, RECEIVE_TIMEOUT};
pub use logger::{LogOwner, LogProgram};
pub use terminal::Terminal;

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::error::{Error, Result};

/// Opens the three fifos; an empty path means none (the container gets /dev/null). When stdout
/// is a `binary://` log URI, its program is started for `owner` and reads both output streams
/// (containerd gives stderr the same URI).
///
/// # Errors
/// A fifo could not be opened, for example because nobody reads it; a bad log URI, or its
/// program would not start.
pub fn open(
    stdin: &str,
    stdout: &str,
    stderr: &str,
    owner: LogOwner<'_>,
) -> Result<[Option<OwnedFd>; 3]> {
    if let Some(program) = LogProgram::of(stdout)? {
        let [out, err] = program.start(owner, logger::READY_TIMEOUT)?;
        return Ok([open_one(stdin, false, "stdin")?, Some(out), Some(err)]);
    }
    Ok([
        open_one(stdin, false, "stdin")?,
        open_one(stdout, true, "stdout")?,
        open_one(stderr, true, "stderr")?,
    ])
}

fn open_one(path: &str, write: bool, name: &str) -> Result<Option<OwnedFd>> {
    if path.is_empty() {
        return Ok(None);
    }
    if let Some(file) = log_uri_file(path, name)? {
        return open_log_file(&file, write, name).map(|f| Some(f.into()));
    }
    let context = || format!("opening the {name} fifo {path}");
    let file = open_fifo(path, write, name)?;
    // The guest expects ordinary blocking descriptors.
    let flags =
        fcntl(file.as_raw_fd(), FcntlArg::F_GETFL).map_err(|e| Error::io(context(), e.into()))?;
    let blocking = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(blocking))
        .map_err(|e| Error::io(context(), e.into()))?;
    Ok(Some(file.into()))
}

/// The shim's own copies of a process's output fifos, held until the process has exited and
/// its output was read.
///
/// A fifo's buffer lives only while one of its ends is open. The process is handed the fifos
/// and may write, exit and close them before the client's reader has opened them (ctr opens
/// its readers in a goroutine, which a busy node can leave waiting): its output was then
/// dropped (an exec exited 0 with empty stdout), and a reader opened after that waited for a
/// writer for ever. The runc shim copies through a pipe it holds, so its output waits; these
/// copies keep the fifos' buffers, and with them the output, for the reader.
pub struct HeldOutput {
    fifos: Vec<OwnedFd>,
}

impl HeldOutput {
    /// Copies of the fifos among `fds` (stdout and stderr; a log file needs none).
    pub fn of(fds: &[Option<OwnedFd>; 3]) -> Result<Self> {
        let mut fifos = Vec::new();
        for fd in fds[1..].iter().flatten() {
            let is_fifo = nix::sys::stat::fstat(fd.as_raw_fd())
                .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO);
            if is_fifo {
                let copy = fd
                    .try_clone()
                    .map_err(|e| Error::io("holding an output fifo", e))?;
                fifos.push(copy);
            }
        }
        Ok(Self { fifos })
    }

    /// The process exited: lets each fifo go once nothing is left in it to read, or after
    /// `grace` (nobody reads it), in a thread of its own when it has to wait. Letting go is
    /// what gives the reader its end-of-file.
    pub fn release_when_read(self, grace: Duration) {
        let unread: Vec<OwnedFd> = self.fifos.into_iter().filter(|f| unread(f) > 0).collect();
        if unread.is_empty() {
            return;
        }
        let deadline = Instant::now() + grace;
        let spawned = std::thread::Builder::new()
            .name("held-output".into())
            .spawn(move || {
                let mut unread = unread;
                let mut pause = FIRST_READ_CHECK;
                while !unread.is_empty() && Instant::now() < deadline {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(LAST_READ_CHECK);
                    unread.retain(|f| self::unread(f) > 0);
                }
            });
        if let Err(e) = spawned {
            log::warn!("cannot wait for the output to be read ({e}): letting it go now");
        }
    }
}

/// How soon a held fifo is looked at again, at first: a client that reads as the output comes
/// (ctr, Docker) has read it within a fraction of a millisecond, and it waits for the
/// end-of-file this release gives before it asks for Delete.
const FIRST_READ_CHECK: Duration = Duration::from_micros(100);
/// The longest pause between two looks, doubling from [`FIRST_READ_CHECK`]: a reader slower
/// than that is not kept waiting more than this after it read the last byte.
const LAST_READ_CHECK: Duration = Duration::from_millis(5);

/// Bytes in a fifo nobody has read yet (0 when it cannot tell).
fn unread(fifo: &OwnedFd) -> libc::c_int {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which is valid.
    let r = unsafe { libc::ioctl(fifo.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r == 0 {
        n
    } else {
        0
    }
}

/// The file of a `file://` log URI; `None` for a fifo path.
///
/// # Errors
/// Another scheme (`binary://`), or a `file://` URI without an absolute path.
fn log_uri_file(stream: &str, name: &str) -> Result<Option<PathBuf>> {
    let Some((scheme, rest)) = stream.split_once("://") else {
        return Ok(None);
    };
    let path = percent_decoded(rest);
    match scheme {
        "file" if path.starts_with('/') => Ok(Some(PathBuf::from(path))),
        "file" => Err(Error::InvalidArgument(format!(
            "the {name} log URI {stream} names no absolute path (file:///path/to/log)"
        ))),
        "binary" => Err(Error::InvalidArgument(format!(
            "the {name} log URI {stream}: a logging program takes both streams from stdout's \
             URI"
        ))),
        _ => Err(Error::InvalidArgument(format!(
            "the {name} log URI {stream}: wasmpod takes file:// and binary:// log URIs only"
        ))),
    }
}

/// `%XX` escapes decoded, as in a URI's path; a malformed escape stays as it is.
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Opens a log file for appending, making it and its directory when missing.
fn open_log_file(path: &Path, write: bool, name: &str) -> Result<File> {
    let context = || format!("opening the {name} log file {}", path.display());
    if !write {
        return Err(Error::InvalidArgument(format!(
            "{name} cannot be a log file ({})",
            path.display()
        )));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(context(), e))?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| Error::io(context(), e))
}

/// Opens a fifo without blocking and leaves it non-blocking.
///
/// A reader never waits for a writer. Writers (stdout, stderr) are opened read-write, as
/// containerd's runc shim holds both ends: the open cannot fail or block for want of a reader
/// (ctr opens its readers asynchronously), and a reader that goes away does not end the
/// program (or the shim's copy) with SIGPIPE.
fn open_fifo(path: &str, write: bool, name: &str) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(format!("opening the {name} fifo {path}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `super::open` for a container `c1` of namespace `default`.
    fn open(stdin: &str, stdout: &str, stderr: &str) -> Result<[Option<OwnedFd>; 3]> {
        let owner = LogOwner {
            id: "c1",
            namespace: "default",
        };
        super::open(stdin, stdout, stderr, owner)
    }

    #[test]
    fn empty_paths_mean_no_stream() {
        let fds = open("", "", "").unwrap();
        assert!(fds.iter().all(Option::is_none));
    }

    #[test]
    fn a_fifo_with_a_reader_opens_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let p = path.to_str().unwrap();
        let reader = open_one(p, false, "stdin").unwrap().unwrap();
        let writer = open_one(p, true, "stdout").unwrap().unwrap();
        let flags = fcntl(writer.as_raw_fd(), FcntlArg::F_GETFL).unwrap();
        assert_eq!(flags & libc::O_NONBLOCK, 0);
        drop(reader);
    }

    #[test]
    fn a_fifo_nobody_reads_yet_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lonely");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let [_, stdout, _] = open("", path.to_str().unwrap(), "").unwrap();
        assert!(stdout.is_some());
    }

    #[test]
    fn a_file_log_uri_appends_to_its_file_both_streams_and_makes_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs dir/c.log");
        let uri = format!("file://{}", log.display()).replace(' ', "%20");
        let [_, out, err] = open("", &uri, &uri).unwrap();
        nix::unistd::write(out.as_ref().unwrap(), b"out\n").unwrap();
        nix::unistd::write(err.as_ref().unwrap(), b"err\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "out\nerr\n");
        let [_, again, _] = open("", &uri, "").unwrap();
        nix::unistd::write(again.as_ref().unwrap(), b"more\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "out\nerr\nmore\n");
    }

    #[test]
    fn other_log_uris_are_refused_naming_them() {
        for (uri, words) in [
            ("syslog:///dev/log", "file:// and binary:// log URIs only"),
            ("binary://relative/logger", "names no absolute path"),
            ("file://relative/c.log", "names no absolute path"),
        ] {
            let err = open("", uri, "").unwrap_err();
            let text = err.to_string();
            assert!(text.contains(uri) && text.contains(words), "{uri}: {text}");
            assert_eq!(
                err.code(),
                containerd_shim::protos::ttrpc::Code::INVALID_ARGUMENT
            );
        }
        assert!(open("file:///tmp/in", "", "").is_err(), "stdin is no log");
        let err = open("", "", "binary:///bin/cat").unwrap_err().to_string();
        assert!(err.contains("from stdout's URI"), "{err}");
    }

    #[test]
    fn percent_escapes_are_decoded_and_bad_ones_kept() {
        assert_eq!(percent_decoded("/a%20b/c%2Fd"), "/a b/c/d");
        assert_eq!(percent_decoded("/50%/x%2"), "/50%/x%2");
    }

    #[test]
    fn held_output_keeps_what_a_process_wrote_for_a_late_reader_then_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let p = path.to_str().unwrap();
        let fds = open("", p, "").unwrap();
        let held = HeldOutput::of(&fds).unwrap();
        // The process writes and exits before anyone reads.
        nix::unistd::write(fds[1].as_ref().unwrap(), b"hello\n").unwrap();
        drop(fds);
        held.release_when_read(Duration::from_secs(10));
        let mut reader = std::fs::File::open(&path).unwrap();
        let mut got = String::new();
        std::io::Read::read_to_string(&mut reader, &mut got).unwrap();
        assert_eq!(got, "hello\n", "the output, then end-of-file");
    }

    #[test]
    fn held_output_goes_at_once_when_all_was_read_and_holds_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let uri = format!("file://{}", dir.path().join("log").display());
        let fds = open("", path.to_str().unwrap(), &uri).unwrap();
        let held = HeldOutput::of(&fds).unwrap();
        assert_eq!(held.fifos.len(), 1, "the fifo, not the log file");
        let mut reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        drop(fds);
        held.release_when_read(Duration::from_secs(10));
        let mut got = Vec::new();
        let n = std::io::Read::read_to_end(&mut reader, &mut got).unwrap();
        assert_eq!(n, 0, "no writer left: end-of-file at once");
    }

    #[test]
    fn a_missing_fifo_is_an_error_naming_it() {
        let err = open("", "/nonexistent/wasmpod-fifo", "").unwrap_err();
        assert!(err.to_string().contains("stdout fifo"), "{err}");
    }
}
