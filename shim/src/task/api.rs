//! What the task layer needs from a container, as traits and plain request types.
//!
//! The real implementations live in `instance`; tests use fakes.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use oci_spec::runtime::{LinuxResources, Process};

use crate::error::Result;

/// What Create needs, free of protocol types.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// Container id.
    pub id: String,
    /// OCI bundle directory (holds config.json and rootfs/).
    pub bundle: PathBuf,
    /// Mounts containerd asks the shim to stack on `bundle/rootfs` (type, source, options).
    pub rootfs: Vec<RootfsMount>,
    /// stdin fifo path, empty for none.
    pub stdin: String,
    /// stdout fifo path, empty for none.
    pub stdout: String,
    /// stderr fifo path, empty for none.
    pub stderr: String,
    /// A terminal was asked for.
    pub terminal: bool,
}

/// One rootfs mount from containerd (usually overlay).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootfsMount {
    /// Filesystem type, e.g. `overlay`.
    pub kind: String,
    /// Source, e.g. `overlay`.
    pub source: String,
    /// Options such as `lowerdir=...`.
    pub options: Vec<String>,
}

/// Why a process ended, when its exit status alone does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// It ran out of memory at the container's limit (bytes, when it has one): the kernel's OOM
    /// killer ended it, or a wasm guest trapped when the engine refused it more.
    OomKilled {
        /// The container's memory limit.
        memory_limit: Option<u64>,
    },
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitReason::OomKilled {
                memory_limit: Some(bytes),
            } => write!(
                f,
                "out of memory: the container reached its memory limit of {} MiB",
                bytes >> 20
            ),
            ExitReason::OomKilled { memory_limit: None } => {
                f.write_str("out of memory: the container reached its memory limit")
            }
        }
    }
}

/// Resolves once everything a process wrote has been copied out to containerd (its terminal's
/// output); the exit is reported after it.
pub type OutputDrained = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A running (or ready) container as the task layer sees it.
pub trait Instance: Send + Sync + 'static {
    /// Resource usage as the isolation layer reports it.
    type Stats: Send;
    /// Pid of the init process, in the shim's pid namespace.
    fn pid(&self) -> u32;
    /// Lets the program run.
    ///
    /// # Errors
    /// The container could not be told to start.
    fn start(&self) -> Result<()>;
    /// Sends `signal` to the init process, or to every process of the container with `all`.
    ///
    /// # Errors
    /// Delivery failed.
    fn kill(&self, signal: u32, all: bool) -> Result<()>;
    /// Freezes every process.
    ///
    /// # Errors
    /// The freezer could not be set.
    fn pause(&self) -> Result<()>;
    /// Thaws.
    ///
    /// # Errors
    /// The freezer could not be set.
    fn resume(&self) -> Result<()>;
    /// Pids of every process in the container.
    ///
    /// # Errors
    /// The cgroup could not be read.
    fn pids(&self) -> Result<Vec<u32>>;
    /// Resource usage.
    ///
    /// # Errors
    /// The cgroup could not be read.
    fn stats(&self) -> Result<Self::Stats>;
    /// Applies new resource limits.
    ///
    /// # Errors
    /// The cgroup refused them.
    fn update(&self, resources: &LinuxResources) -> Result<()>;
    /// Closes the program's stdin so it reads end-of-file.
    fn close_stdin(&self);
    /// Sets the window size of the init process's terminal; nothing without one (as runc).
    ///
    /// # Errors
    /// The terminal refused the size.
    fn resize_pty(&self, width: u32, height: u32) -> Result<()>;
    /// What the exit of the init process must wait for; `None` when the shim copies nothing.
    fn output_drained(&self) -> Option<OutputDrained>;
    /// The init process ended: ends what the kernel leaves running (the container's other
    /// processes, when its PID namespace is shared with the pod or the host), before the exit is
    /// reported. Best effort, never fails.
    fn init_exited(&self);
    /// Why the init process ended with `code`, when the container knows more than the status.
    fn exit_reason(&self, code: u32) -> Option<ExitReason>;
    /// Releases everything the container holds: processes, cgroup, mounts, state.
    ///
    /// # Errors
    /// Something could not be removed; what could be was.
    fn delete(&self) -> Result<()>;
    /// An additional process to run in the container (not started yet).
    type Exec: ExecProcess;
    /// Prepares an exec: resolves and loads its program, so a bad one fails here.
    ///
    /// # Errors
    /// Bad process spec or program.
    fn exec(&self, req: &ExecRequest) -> Result<Self::Exec>;
}

/// What Exec needs, free of protocol types.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// Exec id, unique within the container.
    pub exec_id: String,
    /// The process to run (args, env, cwd, user...).
    pub process: Process,
    /// stdin fifo path, empty for none.
    pub stdin: String,
    /// stdout fifo path, empty for none.
    pub stdout: String,
    /// stderr fifo path, empty for none.
    pub stderr: String,
    /// A terminal was asked for (`exec -t`).
    pub terminal: bool,
}

/// An exec'd process of a container.
pub trait ExecProcess: Send + Sync + 'static {
    /// Starts it inside the container's namespaces and cgroup; returns its pid.
    ///
    /// # Errors
    /// The process could not be started.
    fn start(&self) -> Result<u32>;
    /// Sends a signal to it.
    ///
    /// # Errors
    /// Delivery failed.
    fn kill(&self, pid: u32, signal: u32) -> Result<()>;
    /// Closes its stdin (CloseIO).
    fn close_stdin(&self);
    /// Sets its terminal's window size; nothing without one.
    ///
    /// # Errors
    /// The terminal refused the size.
    fn resize_pty(&self, width: u32, height: u32) -> Result<()>;
    /// What its exit must wait for; `None` when the shim copies nothing.
    fn output_drained(&self) -> Option<OutputDrained>;
}

/// Builds instances; the real one is slow (fork, compile) and is run off the async threads.
pub trait InstanceFactory: Send + Sync + 'static {
    /// The instance type.
    type Instance: Instance;
    /// Builds a container in the Created state.
    ///
    /// # Errors
    /// Bad spec, bad program or isolation failure, with nothing left behind.
    fn create(&self, req: &CreateRequest) -> Result<Self::Instance>;
}
