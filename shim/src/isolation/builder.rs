//! Builder processes: where libcontainer makes every container init and exec.
//!
//! libcontainer clones with the raw `clone3` syscall, so glibc's atfork handlers never run in
//! its children. Cloned straight from the shim, which has other threads, a child could wait
//! for ever on a lock one of them held at that instant: 7 of 200 concurrent execs hung in
//! `futex_wait` on glibc's `main_arena` lock at their first allocation.
//!
//! So the shim never lets libcontainer clone from itself. It forks a builder with glibc's
//! `fork()`, which takes the allocator's locks around the fork and resets them in the child,
//! and does so under the exclusive [`crate::fork_gate`], so no thread is halfway through
//! wasmtime's code registry (the shim's logger takes no lock). The builder has one thread
//! from birth, so libcontainer's clones from it are safe. It sends back the pid libcontainer
//! made, or its error, and exits. The container's process is then reparented to the shim (a
//! child subreaper, as every containerd shim is) and reaped by it as before.
//!
//! A builder first closes what it inherited of the shim's ttrpc socket: its listener and the
//! connections containerd made to it. The builder and the container's process (until its
//! Start, when it closes every inherited fd) would otherwise hold them, and a shim that died
//! meanwhile stayed connected for containerd, whose calls waited for ever.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// What a build sends back: the pid of the process it made, or why it failed.
pub(super) type BuildResult = Result<i32, String>;

/// Runs `build` in a builder process and returns its result.
///
/// Must be called from a thread outside the tokio runtime (the child keeps the calling
/// thread's thread-locals, and a guest builds its own runtime).
///
/// # Errors
/// `build`'s error, or why the builder could not be made or ended without an answer.
pub(super) fn in_builder_process(build: impl FnOnce() -> BuildResult) -> BuildResult {
    let (reader, writer) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("creating a pipe: {e}"))?;
    let gate = crate::fork_gate::exclusive();
    // SAFETY: glibc's fork. The child runs `build` (libcontainer, on a process with a single
    // thread and consistent locks), writes its answer and leaves with _exit.
    let pid = unsafe { libc::fork() };
    // In both processes: the child must be able to take it too (a program dropped there).
    drop(gate);
    if pid == 0 {
        drop(reader);
        close_shim_sockets();
        super::timeline::mark("builder: start");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(build))
            .unwrap_or_else(|_| Err("the builder process panicked".into()));
        super::timeline::mark("builder: answered");
        let _ = std::fs::File::from(writer).write_all(&encode(&result));
        // SAFETY: ending the builder is the intent; nothing of the shim's may run here.
        unsafe { libc::_exit(0) };
    }
    drop(writer);
    if pid < 0 {
        return Err(format!(
            "forking a builder process: {}",
            std::io::Error::last_os_error()
        ));
    }
    let answer = receive(reader, pid);
    super::timeline::mark("shim: answer received");
    answer
}

/// The path the shim's ttrpc socket is bound to (see the module docs).
static SHIM_SOCKET: OnceLock<PathBuf> = OnceLock::new();

/// Names the shim's ttrpc socket, whose listener and connections no builder keeps.
pub fn remember_shim_socket(path: &Path) {
    let _ = SHIM_SOCKET.set(path.to_owned());
}

/// Closes this process's descriptors of sockets bound to the shim's socket path. Run in a
/// builder: the shim keeps its own.
fn close_shim_sockets() {
    let Some(path) = SHIM_SOCKET.get() else {
        return;
    };
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds.into_iter().filter(|&fd| fd > 2 && bound_to(fd, path)) {
        // SAFETY: closes a descriptor nothing in this process uses again (the builder runs
        // only libcontainer's build, which knows nothing of the shim's sockets).
        unsafe { libc::close(fd) };
    }
}

/// Whether `fd` is a unix socket bound to `path`: a listener there, or a connection it
/// accepted (which carries the listener's address).
fn bound_to(fd: RawFd, path: &Path) -> bool {
    use nix::sys::socket::{getsockname, UnixAddr};
    getsockname::<UnixAddr>(fd)
        .ok()
        .is_some_and(|addr| addr.path() == Some(path))
}

/// Reads the builder's answer. Not until EOF: the process it made inherited the pipe and
/// holds it until it starts. The builder's own end tells when it died without answering.
fn receive(reader: OwnedFd, pid: libc::pid_t) -> BuildResult {
    let died = || format!("the builder process {pid} ended without an answer");
    let flags = fcntl(reader.as_raw_fd(), FcntlArg::F_GETFL).map_err(|e| e.to_string())?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(reader.as_raw_fd(), FcntlArg::F_SETFL(flags)).map_err(|e| e.to_string())?;
    // Fails when the builder was already reaped: then its answer is in the pipe, or never.
    let pidfd = pidfd_open(pid);
    let mut pipe = std::fs::File::from(reader);
    let mut received = Vec::new();
    let mut gone = pidfd.is_none();
    loop {
        let mut chunk = [0u8; 4096];
        match pipe.read(&mut chunk) {
            Ok(0) => return decode(&received).unwrap_or_else(|| Err(died())),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if let Some(result) = decode(&received) {
                    return result;
                }
                if gone {
                    return Err(died());
                }
                let mut fds = vec![PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
                if let Some(pidfd) = &pidfd {
                    fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {
                        // Read once more after the builder ended: its answer may be there.
                        gone = fds
                            .get(1)
                            .and_then(|fd| fd.revents())
                            .is_some_and(|r| !r.is_empty());
                    }
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(format!("waiting for the builder process: {e}")),
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the builder's answer: {e}")),
        }
    }
}

fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative result is a descriptor this process now owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `0, pid (i32 LE)` or `1, length (u32 LE), message`.
fn encode(result: &BuildResult) -> Vec<u8> {
    match result {
        Ok(pid) => [&[0u8][..], &pid.to_le_bytes()].concat(),
        Err(message) => {
            let bytes = message.as_bytes();
            let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            [&[1u8][..], &len.to_le_bytes(), &bytes[..len as usize]].concat()
        }
    }
}

/// The answer in `bytes`, once it is complete.
fn decode(bytes: &[u8]) -> Option<BuildResult> {
    let (&tag, rest) = bytes.split_first()?;
    let word = |at: usize| -> Option<[u8; 4]> { rest.get(at..at + 4)?.try_into().ok() };
    match tag {
        0 => Some(Ok(i32::from_le_bytes(word(0)?))),
        1 => {
            let len = u32::from_le_bytes(word(0)?) as usize;
            let message = rest.get(4..4 + len)?;
            Some(Err(String::from_utf8_lossy(message).into_owned()))
        }
        other => Some(Err(format!(
            "the builder process answered garbage ({other})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shims_listener_and_its_connections_are_bound_to_its_path_and_nothing_else() {
        use std::os::unix::net::{UnixListener, UnixStream};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shim.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let client = UnixStream::connect(&path).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let other = UnixListener::bind(dir.path().join("other.sock")).unwrap();
        let file = std::fs::File::create(dir.path().join("file")).unwrap();

        assert!(bound_to(listener.as_raw_fd(), &path));
        assert!(bound_to(accepted.as_raw_fd(), &path));
        assert!(!bound_to(client.as_raw_fd(), &path), "containerd's end");
        assert!(!bound_to(other.as_raw_fd(), &path));
        assert!(!bound_to(file.as_raw_fd(), &path));
    }

    #[test]
    fn answers_survive_the_pipe_and_partial_ones_wait() {
        for result in [Ok(4242), Err("container c1: create failed: no".to_string())] {
            let bytes = encode(&result);
            assert_eq!(decode(&bytes), Some(result));
            assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        }
        assert_eq!(decode(&[]), None);
    }

    #[test]
    fn the_build_runs_in_another_process_and_its_answer_comes_back() {
        let me = std::process::id() as i32;
        // SAFETY: getpid has no preconditions.
        let result = in_builder_process(|| Ok(unsafe { libc::getpid() }));
        let builder = result.unwrap();
        assert_ne!(builder, me);
        let err = in_builder_process(|| Err("refused".into())).unwrap_err();
        assert_eq!(err, "refused");
    }

    #[test]
    fn a_builder_that_dies_without_answering_is_an_error_not_a_hang() {
        let holder = std::sync::Mutex::new(());
        // The builder leaves a grandchild holding the pipe, as libcontainer's init does.
        let err = in_builder_process(|| {
            let _held = holder.lock();
            // SAFETY: fork in the single-threaded builder; the grandchild only sleeps.
            if unsafe { libc::fork() } == 0 {
                std::thread::sleep(std::time::Duration::from_secs(2));
                unsafe { libc::_exit(0) };
            }
            // SAFETY: the builder dies abruptly, without an answer.
            unsafe { libc::_exit(3) }
        })
        .unwrap_err();
        assert!(err.contains("ended without an answer"), "{err}");
    }
}
