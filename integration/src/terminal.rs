//! Commands run with a terminal, as a person at a keyboard would run them.
//!
//! `ctr run -t`, `ctr task exec -t` and `docker run -t` insist on a terminal of their own.
//! [`InTerminal`] gives them one with util-linux `script -qec CMD /dev/null`, which runs CMD on a
//! fresh pty: the test types into script's stdin (it reaches the pty as keystrokes, so `\x03`
//! is ^C and `\r` is Enter once ctr has put the terminal in raw mode) and reads what the
//! terminal showed from script's stdout. The terminal is sized with `stty` first, so the
//! window size ctr forwards (ResizePty) is known.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::process::{wait_or_kill, Output};

/// Rows and columns of the terminal [`InTerminal`] gives a command.
pub const SIZE: (u16, u16) = (30, 100);

/// A command running on a terminal; killed on drop.
#[derive(Debug)]
pub struct InTerminal {
    cmdline: String,
    child: Option<Child>,
    keyboard: Option<ChildStdin>,
    screen: Arc<Mutex<Vec<u8>>>,
    started: Instant,
}

/// `arg` quoted for `sh`.
fn quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// The shell line script runs: size the terminal, then exec `cmd` with only the variables it
/// sets (the commands of this suite start from a clean environment).
fn shell_line(cmd: &Command) -> String {
    let mut line = format!("stty rows {} cols {}; exec env -i", SIZE.0, SIZE.1);
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            line.push(' ');
            line.push_str(&quote(&format!(
                "{}={}",
                key.to_string_lossy(),
                value.to_string_lossy()
            )));
        }
    }
    for part in std::iter::once(cmd.get_program()).chain(cmd.get_args()) {
        line.push(' ');
        line.push_str(&quote(&part.to_string_lossy()));
    }
    line
}

impl InTerminal {
    /// Starts `cmd` on a [`SIZE`] terminal.
    ///
    /// # Errors
    /// When `script` cannot be spawned (it comes with util-linux; scripts/install-deps.sh).
    pub fn spawn(cmd: &Command) -> Result<Self> {
        let line = shell_line(cmd);
        let mut child = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("SHELL", "/bin/sh")
            .env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn script (util-linux) to give the command a terminal")?;
        let screen = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let screen = screen.clone();
            thread::spawn(move || copy_to(stream, &screen));
        }
        Ok(Self {
            cmdline: format!("script -qec {} /dev/null", quote(&line)),
            keyboard: child.stdin.take(),
            child: Some(child),
            screen,
            started: Instant::now(),
        })
    }

    /// The command, as script runs it.
    pub fn cmdline(&self) -> &str {
        &self.cmdline
    }

    /// Types `keys` (raw bytes: `\r` is Enter, `\x03` ^C, `\x04` ^D).
    ///
    /// # Errors
    /// When script's stdin is closed.
    pub fn type_keys(&mut self, keys: &str) -> Result<()> {
        let Some(keyboard) = self.keyboard.as_mut() else {
            bail!("the keyboard was already unplugged");
        };
        keyboard.write_all(keys.as_bytes())?;
        keyboard.flush()?;
        Ok(())
    }

    /// Everything the terminal showed so far (`\r\n` line ends).
    pub fn screen(&self) -> String {
        let screen = self.screen.lock().map(|s| s.clone()).unwrap_or_default();
        String::from_utf8_lossy(&screen).into_owned()
    }

    /// Waits until the terminal shows `needle`; returns the screen.
    ///
    /// # Errors
    /// When it does not within `timeout`, or the command ends first.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if screen.contains(needle) {
                return Ok(screen);
            }
            let ended = match self.child.as_mut() {
                Some(child) => child.try_wait()?.is_some(),
                None => true,
            };
            if ended {
                // The last output may still be on its way through the reader threads.
                thread::sleep(Duration::from_millis(100));
                let screen = self.screen();
                if screen.contains(needle) {
                    return Ok(screen);
                }
                bail!(
                    "{} ended without showing {needle:?}; screen: {screen:?}",
                    self.cmdline
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not show {needle:?} within {timeout:?}; screen: {screen:?}",
                    self.cmdline
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the command to end (the keyboard stays plugged in).
    ///
    /// # Errors
    /// When it does not end within `timeout` (it is then killed).
    pub fn wait(mut self, timeout: Duration) -> Result<Output> {
        let Some(mut child) = self.child.take() else {
            bail!("already waited");
        };
        let Some(status) = wait_or_kill(&mut child, timeout)? else {
            bail!(
                "{} did not end within {timeout:?}; screen: {:?}",
                self.cmdline,
                self.screen()
            );
        };
        // script has exited: its pipes are at end-of-file, give the readers a moment to finish.
        thread::sleep(Duration::from_millis(100));
        Ok(Output {
            cmdline: self.cmdline.clone(),
            stdout: self.screen(),
            stderr: String::new(),
            status,
            elapsed: self.started.elapsed(),
        })
    }
}

fn copy_to(mut stream: Box<dyn Read + Send>, screen: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        if let Ok(mut screen) = screen.lock() {
            screen.extend_from_slice(&buf[..n]);
        }
    }
}

impl Drop for InTerminal {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_line_sizes_the_terminal_and_quotes_everything() {
        let mut cmd = Command::new("ctr");
        cmd.env_clear().env("PATH", "/bin").args(["run", "it's"]);
        assert_eq!(
            shell_line(&cmd),
            "stty rows 30 cols 100; exec env -i 'PATH=/bin' 'ctr' 'run' 'it'\\''s'"
        );
    }

    #[test]
    fn typed_keys_reach_the_command_and_its_output_the_screen() -> Result<()> {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "stty size; read line; echo got-$line"]);
        let mut term = InTerminal::spawn(&cmd)?;
        term.wait_for("30 100", Duration::from_secs(10))?;
        term.type_keys("abc\n")?;
        let out = term.wait(Duration::from_secs(10))?;
        out.success()?;
        assert!(out.stdout.contains("got-abc"), "{out}");
        Ok(())
    }
}
