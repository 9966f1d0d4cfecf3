//! Terminal tests on a real pty pair from the host's devpts and real fifos.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use nix::pty::openpty;
use nix::sys::stat::Mode;

use super::*;

const DEADLINE: Duration = Duration::from_secs(5);

fn fifo(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    nix::unistd::mkfifo(&path, Mode::S_IRWXU).unwrap();
    path.to_str().unwrap().to_string()
}

/// A test-side end of a fifo, opened without blocking (and left so).
fn open_end(path: &str, write: bool) -> File {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .unwrap()
}

/// Blocking read of the slave, off the async threads, with a deadline.
async fn read_slave(slave: Arc<File>) -> Vec<u8> {
    let read = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 256];
        let n = (&*slave).read(&mut buf).unwrap();
        buf[..n].to_vec()
    });
    tokio::time::timeout(DEADLINE, read).await.unwrap().unwrap()
}

#[tokio::test]
async fn output_is_copied_to_stdout_and_drained_when_the_slave_closes() {
    let dir = tempfile::tempdir().unwrap();
    let out = fifo(dir.path(), "out");
    let mut reader = open_end(&out, false);
    let pty = openpty(None, None).unwrap();
    let terminal = Terminal::start("t", pty.master, "", &out).unwrap();

    let mut slave = File::from(pty.slave);
    slave.write_all(b"hello\nlast line").unwrap();
    drop(slave);
    tokio::time::timeout(DEADLINE, terminal.drained())
        .await
        .unwrap();

    // Everything is in the fifo and the shim's end is closed: the read ends at end-of-file
    // instead of failing with EAGAIN.
    let mut copied = String::new();
    reader.read_to_string(&mut copied).unwrap();
    assert_eq!(copied, "hello\r\nlast line");
}

#[tokio::test]
async fn stdin_is_copied_and_close_io_ends_it_with_veof() {
    let dir = tempfile::tempdir().unwrap();
    let input = fifo(dir.path(), "in");
    let pty = openpty(None, None).unwrap();
    let terminal = Terminal::start("t", pty.master, &input, "").unwrap();
    let slave = Arc::new(File::from(pty.slave));

    let mut writer = open_end(&input, true);
    writer.write_all(b"typed\n").unwrap();
    assert_eq!(read_slave(slave.clone()).await, b"typed\n");

    // containerd closes its end, then asks for CloseIO: a canonical-mode read sees end-of-file.
    drop(writer);
    terminal.close_stdin();
    assert_eq!(read_slave(slave).await, b"");
}

#[tokio::test]
async fn resize_sets_the_window_size_the_process_sees() {
    let pty = openpty(None, None).unwrap();
    let slave = File::from(pty.slave);
    let terminal = Terminal::start("t", pty.master, "", "").unwrap();
    terminal.resize(100, 30).unwrap();
    let size = window_size(&slave).unwrap();
    assert_eq!((size.ws_row, size.ws_col), (30, 100));
}

#[test]
fn sizes_beyond_a_winsize_are_clamped() {
    let size = winsize(70_000, 24);
    assert_eq!((size.ws_col, size.ws_row), (u16::MAX, 24));
    assert_eq!((size.ws_xpixel, size.ws_ypixel), (0, 0));
}

#[tokio::test]
async fn a_missing_stdout_fifo_is_an_error_naming_it() {
    let pty = openpty(None, None).unwrap();
    let err = Terminal::start("t", pty.master, "", "/nonexistent/wasmpod-out").unwrap_err();
    assert!(err.to_string().contains("stdout fifo"), "{err}");
}
