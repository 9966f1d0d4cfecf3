//! The guest's WASI context, built strictly from a [`WasiPlan`]: what the plan lists the guest
//! gets, nothing else (no host environment, arguments, directories or sockets leak in).
//!
//! # Working directory
//!
//! WASI has no process cwd. What each guest toolchain does:
//! - wasi-libc (C, C++, Rust `std` on wasip1 *and* wasip2): starts with a libc-internal cwd of
//!   `/` and resolves relative paths against it; it reads neither `PWD` nor p2's
//!   `wasi:cli/environment.initial-cwd`. Only the guest's own `chdir` changes it.
//! - Go (`GOOS=wasip1`): starts in `$PWD` if set.
//! - p2 hosts/languages that follow the spec: `wasi:cli/environment.initial-cwd`.
//!
//! So the engine reports `plan.cwd` as p2's `initial-cwd` and, when it is not `/`, adds
//! `PWD=<cwd>` to the environment unless the plan already sets `PWD` (the plan's value wins).
//! It deliberately does *not* add a preopen named `.` for the cwd: wasi-libc normalises the
//! preopen name `.` to the same empty prefix as `/`, and later preopens win ties, so such a
//! preopen would capture every absolute path not under a longer preopen (`/etc/hosts` would
//! resolve to `<cwd>/etc/hosts`). A wasi-libc guest with a non-`/` cwd therefore resolves
//! relative paths against `/`; that is a limitation of WASI libc, documented for users.
//!
//! # Fork safety
//!
//! Nothing here runs before the fork: contexts are built in the container process right
//! before the guest starts. wasmtime-wasi's blocking calls lazily start a global tokio
//! runtime on first use, which therefore happens in the container process too.

use std::path::Path;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::error::{io_error, EngineError};
use super::limits::GuestLimiter;
use crate::plan::{NetworkAccess, WasiPlan};

/// Where the guest's stdin, stdout and stderr go.
#[derive(Debug, Clone)]
pub enum GuestIo {
    /// The process's own fds 0, 1 and 2 (in the container: the fifos or pty containerd set up).
    Inherit,
    /// In-memory streams, for tests and tools. The pipes are shared handles: keep a clone to
    /// read what the guest wrote after [`super::WasmEngine::run`] returns.
    Captured {
        /// Bytes the guest reads from stdin; `None` for a closed stdin.
        stdin: Option<Vec<u8>>,
        /// Receives the guest's stdout; writes beyond its capacity fail in the guest.
        stdout: MemoryOutputPipe,
        /// Receives the guest's stderr; writes beyond its capacity fail in the guest.
        stderr: MemoryOutputPipe,
    },
}

impl GuestIo {
    /// Captured I/O with the given stdin and `capacity`-byte stdout and stderr pipes; returns
    /// the I/O plus handles to read stdout and stderr afterwards.
    pub fn captured(
        stdin: Option<Vec<u8>>,
        capacity: usize,
    ) -> (Self, MemoryOutputPipe, MemoryOutputPipe) {
        let stdout = MemoryOutputPipe::new(capacity);
        let stderr = MemoryOutputPipe::new(capacity);
        let io = GuestIo::Captured {
            stdin,
            stdout: stdout.clone(),
            stderr: stderr.clone(),
        };
        (io, stdout, stderr)
    }
}

/// Store data for a core module: the WASI preview 1 context plus the limiter.
pub(crate) struct P1State {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: GuestLimiter,
}

/// Store data for a component: the WASI preview 2 context, its resource table, the limiter.
pub(crate) struct P2State {
    pub(crate) ctx: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: GuestLimiter,
}

impl WasiView for P2State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl P1State {
    pub(crate) fn new(plan: &WasiPlan, io: GuestIo) -> Result<Self, EngineError> {
        Ok(Self {
            wasi: builder(plan, io)?.build_p1(),
            limiter: GuestLimiter::new(plan.limits.max_memory_bytes),
        })
    }
}

impl P2State {
    pub(crate) fn new(plan: &WasiPlan, io: GuestIo) -> Result<Self, EngineError> {
        Ok(Self {
            ctx: builder(plan, io)?.build(),
            table: ResourceTable::new(),
            limiter: GuestLimiter::new(plan.limits.max_memory_bytes),
        })
    }
}

/// The environment the guest sees: the plan's, plus `PWD` for a non-root cwd (module docs).
pub(crate) fn guest_env(plan: &WasiPlan) -> Vec<(String, String)> {
    let mut env = plan.env.clone();
    let cwd = plan.cwd.to_string_lossy();
    if cwd != "/" && !cwd.is_empty() && !env.iter().any(|(k, _)| k == "PWD") {
        env.push(("PWD".to_owned(), cwd.into_owned()));
    }
    env
}

/// The WASI context of one HTTP request's instance: the plan's grants, the container's stdio
/// (stdout and stderr are its log). Instances share the server's threads, so filesystem calls
/// go through tokio's blocking pool instead of blocking a worker.
pub(crate) fn serving_ctx(plan: &WasiPlan) -> Result<WasiCtx, EngineError> {
    Ok(configured(WasiCtxBuilder::new(), plan, GuestIo::Inherit)?.build())
}

/// A WASI context builder configured from the plan.
fn builder(plan: &WasiPlan, io: GuestIo) -> Result<WasiCtxBuilder, EngineError> {
    let mut b = WasiCtxBuilder::new();
    // The guest runs alone on this thread: filesystem calls may block it directly instead of
    // bouncing through tokio's blocking pool. Must be set before the preopens are added.
    b.allow_blocking_current_thread(true);
    configured(b, plan, io)
}

fn configured(
    mut b: WasiCtxBuilder,
    plan: &WasiPlan,
    io: GuestIo,
) -> Result<WasiCtxBuilder, EngineError> {
    b.args(&plan.argv);
    b.envs(&guest_env(plan));
    b.initial_cwd(plan.cwd.to_string_lossy());

    match io {
        GuestIo::Inherit => {
            b.inherit_stdio();
        }
        GuestIo::Captured {
            stdin,
            stdout,
            stderr,
        } => {
            if let Some(bytes) = stdin {
                b.stdin(MemoryInputPipe::new(bytes));
            }
            b.stdout(stdout).stderr(stderr);
        }
    }

    for preopen in &plan.preopens {
        let perms = if preopen.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        b.preopened_dir(&preopen.host, &preopen.guest, perms)
            .map_err(|err| preopen_error(&preopen.host, &preopen.guest, err))?;
    }

    match plan.network {
        NetworkAccess::Denied => {
            b.allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false);
        }
        NetworkAccess::ContainerNamespace => {
            // The process is inside the container's own network namespace: every address
            // it can reach is one the container is meant to reach.
            b.inherit_network()
                .allow_tcp(true)
                .allow_udp(true)
                .allow_ip_name_lookup(true);
        }
    }
    Ok(b)
}

fn preopen_error(host: &Path, guest: &str, err: wasmtime::Error) -> EngineError {
    EngineError::Preopen {
        host: host.to_owned(),
        guest: guest.to_owned(),
        source: io_error(err),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::plan::{Entrypoint, GuestLimits, Preopen};

    fn plan(cwd: &str, env: &[(&str, &str)]) -> WasiPlan {
        WasiPlan {
            argv: vec!["app".into()],
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            cwd: PathBuf::from(cwd),
            preopens: vec![],
            entrypoint: Entrypoint {
                path: PathBuf::from("/app.wasm"),
                export: None,
            },
            network: NetworkAccess::Denied,
            limits: GuestLimits::default(),
            http: Default::default(),
        }
    }

    #[test]
    fn pwd_added_only_for_non_root_cwd() {
        assert_eq!(
            guest_env(&plan("/", &[("A", "1")])),
            vec![("A".into(), "1".into())]
        );
        assert_eq!(
            guest_env(&plan("/srv", &[("A", "1")])),
            vec![("A".into(), "1".into()), ("PWD".into(), "/srv".into())]
        );
        assert_eq!(
            guest_env(&plan("/srv", &[("PWD", "/other")])),
            vec![("PWD".into(), "/other".into())]
        );
    }

    #[test]
    fn missing_preopen_is_a_typed_error_with_paths() {
        let mut p = plan("/", &[]);
        p.preopens.push(Preopen {
            host: PathBuf::from("/nonexistent/wasmpod-test"),
            guest: "/data".into(),
            read_only: true,
        });
        match P1State::new(&p, GuestIo::Inherit) {
            Err(EngineError::Preopen {
                host,
                guest,
                source,
            }) => {
                assert_eq!(host, PathBuf::from("/nonexistent/wasmpod-test"));
                assert_eq!(guest, "/data");
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            Err(other) => panic!("unexpected error: {other}"),
            Ok(_) => panic!("a missing preopen must fail"),
        }
    }
}
