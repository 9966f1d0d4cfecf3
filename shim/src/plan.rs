//! The WASI plan: everything a guest is granted, as plain data.
//!
//! `spec` builds a plan from an OCI spec (pure, no I/O); `engine` turns a plan into a wasmtime
//! WASI context. The plan holds no wasmtime or containerd types, so both sides stay testable
//! on their own. Anything the plan does not list, the guest does not get.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What a container's guest may see and do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasiPlan {
    /// `argv` of the guest: `process.args`, `argv[0]` as the spec wrote it.
    pub argv: Vec<String>,
    /// The guest's environment: `process.env` only, in spec order (never the shim's own).
    pub env: Vec<(String, String)>,
    /// Working directory of the guest (`process.cwd`), a guest path.
    pub cwd: PathBuf,
    /// Directories the guest can reach, longest guest path wins inside WASI libc.
    pub preopens: Vec<Preopen>,
    /// The program to run and which export to call.
    pub entrypoint: Entrypoint,
    /// Whether the guest may open sockets (only ever inside the container's own netns).
    pub network: NetworkAccess,
    /// Limits the engine enforces on the guest itself, below the cgroup's.
    pub limits: GuestLimits,
    /// How an HTTP handler component (`wasi:http/incoming-handler`) is served; unused for
    /// programs that run to completion.
    pub http: HttpPlan,
}

/// One preopened directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// Where the directory is for the process that runs the engine. Inside the container (after
    /// pivot_root) this equals `guest`; tests point it at a temp dir.
    pub host: PathBuf,
    /// The name the guest sees, an absolute path such as `/` or `/data`.
    pub guest: String,
    /// Read-only to the guest: no write, create, rename, unlink or metadata change.
    pub read_only: bool,
}

/// The program to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entrypoint {
    /// Absolute path of the program inside the container, `PATH` already resolved.
    pub path: PathBuf,
    /// `path#name` in `process.args[0]`: call this export instead of `_start` / `wasi:cli/run`.
    pub export: Option<String>,
}

/// Socket access of the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkAccess {
    /// No sockets at all: the spec did not give the container its own network namespace.
    Denied,
    /// TCP/UDP and name lookup through the network namespace the process runs in.
    ContainerNamespace,
}

/// Limits applied inside the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuestLimits {
    /// Cap on the guest's total linear memory in bytes; growth past it fails inside the guest
    /// (`memory.grow` returns -1) instead of the cgroup OOM-killing the whole container.
    pub max_memory_bytes: Option<u64>,
}

/// Serving settings of an HTTP handler component: one fresh instance per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPlan {
    /// Address the container's process listens on, inside the container's network namespace.
    pub listen: SocketAddr,
    /// A request still running after this gets 504 and its instance is dropped.
    pub request_timeout: Duration,
    /// Cap on one instance's linear memory; a request whose instance needs more gets 500.
    pub instance_memory_bytes: u64,
    /// Requests handled at once; more wait in the queue.
    pub max_concurrency: u32,
    /// Requests allowed to wait for a free slot; past it a request gets 503 at once.
    pub max_queue: u32,
    /// Largest request body accepted; a larger one gets 413.
    pub max_body_bytes: u64,
    /// One structured line per request on stdout (fuel, wall time, peak memory, status).
    pub metering: bool,
    /// Where Prometheus counters are served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// SIGTERM drains in-flight requests for at most this long, then the process exits 0.
    pub drain_timeout: Duration,
}

impl Default for HttpPlan {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            request_timeout: Duration::from_secs(60),
            instance_memory_bytes: 256 << 20,
            max_concurrency: 256,
            max_queue: 1024,
            max_body_bytes: 1 << 30,
            metering: false,
            metrics_listen: None,
            drain_timeout: Duration::from_secs(30),
        }
    }
}
