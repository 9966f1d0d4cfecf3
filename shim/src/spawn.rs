//! Starting a helper program (a logging program, the compile helper) with `posix_spawn`, not
//! `std::process::Command`.
//!
//! When an exec fails (the program is missing, or was replaced under a running shim), Command
//! waits for its child to learn why, and containerd-shim's reaper, which collects every child
//! of the shim, may have collected it first: Command then panics ("wait() should either return
//! Ok or panic"). glibc's `posix_spawn` returns the exec's error itself and waits for nothing.
//! Whoever spawns may still `waitpid` the child, and must take ECHILD as "status unknown".

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::unistd::Pid;

/// What becomes of one of the child's descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FdAction {
    /// `/dev/null`, read-only for fd 0 and write-only for the others.
    Null(RawFd),
    /// A copy of the shim's `from` (which must be above every target, so that no copy
    /// overwrites a descriptor still to be copied).
    Dup { from: RawFd, to: RawFd },
}

/// A program to start: its arguments, its environment and its descriptors.
#[derive(Debug)]
pub struct Spawn {
    program: CString,
    args: Vec<CString>,
    /// `None`: the shim's own environment.
    env: Option<Vec<CString>>,
    fds: Vec<FdAction>,
}

/// The shim's environment as `KEY=value` strings, but for `except`.
fn shim_env(except: Option<&str>) -> Vec<OsString> {
    std::env::vars_os()
        .filter(|(k, _)| except.is_none_or(|e| k != e))
        .map(|(mut k, v)| {
            k.push("=");
            k.push(v);
            k
        })
        .collect()
}

fn c_string(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

impl Spawn {
    /// `program`, which gets itself as `argv[0]`, the shim's environment and, of the shim's
    /// descriptors, only those without close-on-exec.
    ///
    /// # Errors
    /// A path with a NUL byte.
    pub fn new(program: &Path) -> io::Result<Self> {
        Ok(Self {
            program: c_string(program.as_os_str())?,
            args: Vec::new(),
            env: None,
            fds: Vec::new(),
        })
    }

    /// Appends arguments.
    ///
    /// # Errors
    /// An argument with a NUL byte.
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> io::Result<Self> {
        for arg in args {
            self.args.push(c_string(arg.as_ref())?);
        }
        Ok(self)
    }

    /// Replaces the environment with `vars` (`KEY=value` each).
    ///
    /// # Errors
    /// A variable with a NUL byte.
    pub fn env<S: AsRef<OsStr>>(mut self, vars: impl IntoIterator<Item = S>) -> io::Result<Self> {
        self.env = Some(
            vars.into_iter()
                .map(|v| c_string(v.as_ref()))
                .collect::<io::Result<_>>()?,
        );
        Ok(self)
    }

    /// The shim's environment with `key=value` added (or replacing `key`'s value).
    ///
    /// # Errors
    /// A NUL byte in the environment, `key` or `value`.
    pub fn env_with(self, key: &str, value: &str) -> io::Result<Self> {
        let mut vars = shim_env(Some(key));
        vars.push(format!("{key}={value}").into());
        self.env(vars)
    }

    /// The child's `fd` is `/dev/null`.
    #[must_use]
    pub fn null(mut self, fd: RawFd) -> Self {
        self.fds.push(FdAction::Null(fd));
        self
    }

    /// The child's `to` is a copy of the shim's `from`, which must be above every descriptor
    /// the child gets (see [`Spawn::spawn`]).
    #[must_use]
    pub fn dup(mut self, from: RawFd, to: RawFd) -> Self {
        self.fds.push(FdAction::Dup { from, to });
        self
    }

    /// The highest descriptor the child gets.
    fn highest_target(&self) -> RawFd {
        self.fds
            .iter()
            .map(|a| match *a {
                FdAction::Null(fd) | FdAction::Dup { to: fd, .. } => fd,
            })
            .max()
            .unwrap_or(-1)
    }

    /// Starts the program; returns its pid.
    ///
    /// # Errors
    /// The exec's error (no such program, not executable...), or a copied descriptor that is
    /// not above every target (a copy could then overwrite one still to be copied).
    pub fn spawn(&self) -> io::Result<Pid> {
        let highest = self.highest_target();
        if let Some(FdAction::Dup { from, .. }) = self
            .fds
            .iter()
            .find(|a| matches!(a, FdAction::Dup { from, .. } if *from <= highest))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("descriptor {from} is not above the child's {highest}"),
            ));
        }
        let mut argv: Vec<*mut libc::c_char> = std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.as_ptr().cast_mut())
            .collect();
        argv.push(std::ptr::null_mut());
        let inherited;
        let env = match &self.env {
            Some(env) => env,
            None => {
                inherited = shim_env(None)
                    .iter()
                    .map(|v| c_string(v))
                    .collect::<io::Result<Vec<_>>>()?;
                &inherited
            }
        };
        let mut envp: Vec<*mut libc::c_char> = env.iter().map(|e| e.as_ptr().cast_mut()).collect();
        envp.push(std::ptr::null_mut());
        let null: &CStr = c"/dev/null";
        let check = |rc: libc::c_int| match rc {
            0 => Ok(()),
            errno => Err(io::Error::from_raw_os_error(errno)),
        };
        // SAFETY: the file actions are initialised before use and destroyed once; every pointer
        // handed over (program, argv, envp, /dev/null) outlives the call; argv and envp end with
        // a null pointer.
        unsafe {
            let mut actions = std::mem::zeroed::<libc::posix_spawn_file_actions_t>();
            check(libc::posix_spawn_file_actions_init(&mut actions))?;
            let mut result = Ok(());
            for action in &self.fds {
                result =
                    result.and_then(|()| match *action {
                        FdAction::Null(fd) => {
                            let flags = if fd == 0 {
                                libc::O_RDONLY
                            } else {
                                libc::O_WRONLY
                            };
                            check(libc::posix_spawn_file_actions_addopen(
                                &mut actions,
                                fd,
                                null.as_ptr(),
                                flags,
                                0,
                            ))
                        }
                        // dup2 clears close-on-exec on the copy.
                        FdAction::Dup { from, to } => check(
                            libc::posix_spawn_file_actions_adddup2(&mut actions, from, to),
                        ),
                    });
            }
            let mut pid: libc::pid_t = 0;
            let result = result.and_then(|()| {
                check(libc::posix_spawn(
                    &mut pid,
                    self.program.as_ptr(),
                    &actions,
                    std::ptr::null(),
                    argv.as_ptr(),
                    envp.as_ptr(),
                ))
            });
            libc::posix_spawn_file_actions_destroy(&mut actions);
            result.map(|()| Pid::from_raw(pid))
        }
    }
}

#[cfg(test)]
#[path = "spawn_tests.rs"]
mod tests;
