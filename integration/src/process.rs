//! Running helper commands (ctr, the CLI, umoci) with a deadline and captured output.
//!
//! Every external command in the suite goes through [`run_with_timeout`], so a hung shim
//! turns into a test failure with the output so far, never a hung test run.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What a finished command printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub cmdline: String,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
    /// How the process ended.
    pub status: ExitStatus,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
}

impl Output {
    /// The exit code, or `128 + signal` when the process was killed by a signal.
    pub fn code(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        self.status
            .code()
            .or_else(|| self.status.signal().map(|s| 128 + s))
            .unwrap_or(-1)
    }

    /// Stdout then stderr, for searching messages wherever ctr put them.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// True when stdout or stderr contains one of `needles`, ignoring ASCII case.
    pub fn mentions_any(&self, needles: &[&str]) -> bool {
        let hay = self.combined().to_ascii_lowercase();
        needles
            .iter()
            .any(|n| hay.contains(&n.to_ascii_lowercase()))
    }

    /// Returns `self` when the exit code is 0.
    ///
    /// # Errors
    /// Any other exit, with the full output in the message.
    pub fn success(&self) -> Result<&Self> {
        self.expect_code(0)
    }

    /// Returns `self` when the exit code is `code`.
    ///
    /// # Errors
    /// Any other exit, with the full output in the message.
    pub fn expect_code(&self, code: i32) -> Result<&Self> {
        if self.code() != code {
            bail!("expected exit code {code}, got {}\n{self}", self.code());
        }
        Ok(self)
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\n  exit: {} ({:?})\n  stdout: {:?}\n  stderr: {:?}",
            self.cmdline,
            self.code(),
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
}

/// Renders a command line for messages.
pub fn cmdline(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn reader<R: Read + Send + 'static>(r: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `cmd` to completion, killing it after `timeout`.
///
/// # Errors
/// When it cannot be spawned, or does not exit in time (the message holds what it printed).
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let line = cmdline(cmd);
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {line}"))?;
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait()?;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let output = Output {
        cmdline: line,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        status,
        elapsed: start.elapsed(),
    };
    if timed_out {
        bail!("timed out after {timeout:?}, killed\n{output}");
    }
    Ok(output)
}

/// Waits for `child` to exit; after `timeout` it is killed and reaped, and `None` returned.
///
/// # Errors
/// When its status cannot be read.
pub fn wait_or_kill(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `signal` to `child` (a daemon being restarted) and waits for it to exit.
///
/// # Errors
/// When the signal cannot be sent or `timeout` passes.
pub fn signal_and_wait(
    child: &mut Child,
    signal: nix::sys::signal::Signal,
    timeout: Duration,
) -> Result<()> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, signal)?;
    poll(&format!("pid {pid} to exit on {signal}"), timeout, || {
        Ok(child.try_wait()?.map(drop))
    })
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `timeout`.
///
/// # Errors
/// When `f` fails, or `timeout` passes; the message names `what`.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The last `lines` lines of the text file at `path` (empty when it cannot be read).
pub fn tail_of(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
