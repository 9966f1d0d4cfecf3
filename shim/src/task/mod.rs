//! Container lifecycle without protocol types: the registry of tasks, their state machine,
//! exits and waiters, and the events they produce.
//!
//! [`Tasks`] runs the plain async `create/start/kill/wait/delete...` operations that the ttrpc
//! service wraps. It drives an [`Instance`] (the real one combines spec, engine and isolation; tests
//! plug in a fake) and reports [`Event`]s to an [`EventSink`] (containerd's publisher, or a
//! channel in tests). It must not know ttrpc, protobuf or wasmtime.

mod api;
mod exec;
mod process;
mod registry;
mod state;

use std::path::PathBuf;
use std::time::SystemTime;

pub use api::{
    CreateRequest, ExecProcess, ExecRequest, ExitReason, Instance, InstanceFactory, OutputDrained,
    RootfsMount,
};
pub use registry::{TaskState, Tasks};
pub use state::{Exit, Lifecycle, Status};

/// Lifecycle errors: the caller asked for something the task's state does not allow.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// No task has this id in this shim.
    #[error("task {0} not found")]
    NotFound(String),
    /// Create was called twice for one id.
    #[error("task {0} already exists")]
    AlreadyExists(String),
    /// The process already ended: a signal has nothing to reach. containerd tolerates exactly
    /// NotFound here (runc's shim answers "process already finished"), e.g. when the CRI stops
    /// a container whose process just exited.
    #[error("{0}: process already finished")]
    Finished(String),
    /// The state machine refused the move.
    #[error("cannot {action} a task that is {status}")]
    InvalidTransition {
        /// What was asked.
        action: &'static str,
        /// Where the task was.
        status: &'static str,
    },
}

/// What happened to a task; the service turns these into containerd's `/tasks/*` events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The container was built (TaskCreate).
    Created {
        /// Container id.
        id: String,
        /// Bundle directory.
        bundle: PathBuf,
        /// Init pid.
        pid: u32,
        /// stdin, stdout, stderr fifo paths as containerd gave them.
        stdio: [String; 3],
    },
    /// The program was started (TaskStart).
    Started {
        /// Container id.
        id: String,
        /// Init pid.
        pid: u32,
    },
    /// An exec was registered (TaskExecAdded).
    ExecAdded {
        /// Container id.
        id: String,
        /// Exec id.
        exec_id: String,
    },
    /// An exec was started (TaskExecStarted).
    ExecStarted {
        /// Container id.
        id: String,
        /// Exec id.
        exec_id: String,
        /// Its pid.
        pid: u32,
    },
    /// The init process or an exec ended (TaskExit).
    Exited {
        /// Container id.
        id: String,
        /// Exec id; empty for the init process.
        exec_id: String,
        /// Init pid.
        pid: u32,
        /// Exit status.
        code: u32,
        /// When.
        at: SystemTime,
    },
    /// The task was deleted (TaskDelete).
    Deleted {
        /// Container id.
        id: String,
        /// Init pid.
        pid: u32,
        /// Exit status.
        code: u32,
        /// When the process ended.
        at: SystemTime,
    },
    /// The kernel's OOM killer killed a process of the container (TaskOOM): containerd's CRI
    /// then reports the container as OOMKilled, Docker sets `State.OOMKilled`.
    OomKilled {
        /// Container id.
        id: String,
    },
    /// Frozen (TaskPaused).
    Paused {
        /// Container id.
        id: String,
    },
    /// Thawed (TaskResumed).
    Resumed {
        /// Container id.
        id: String,
    },
}

/// Where events go. The real sink is containerd's event publisher.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Delivers one event; failures are the sink's to log, a lost event must not fail a request.
    async fn publish(&self, event: Event);
}
