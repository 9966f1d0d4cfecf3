//! Linux isolation: every container is a real Linux container built from its OCI spec by youki's
//! `libcontainer` (namespaces, cgroups, rootfs + mounts + pivot_root, capabilities,
//! no_new_privileges, seccomp, rlimits, user/group), and its workload runs inside it.
//!
//! This module knows Linux and nothing of wasm: the workload is anything implementing
//! [`Workload`]. It owns the fork (in a builder process forked with glibc's `fork()` from a
//! thread with no tokio context, see `builder`, so no child can inherit a held lock), the file
//! descriptors the child keeps, the signals PID 1 must honour, the name `ps` shows for an
//! in-process workload, the cgroup operations, and the network namespace and cgroup
//! directories a new shim makes for its first container before Create arrives
//! (`netns_ahead`, `cgroup_ahead`).

mod ahead;
mod builder;
mod bundle;
mod cgroup;
mod cgroup_ahead;
mod cgroup_path;
#[cfg(test)]
mod clone_into_cgroup_tests;
mod container;
mod executor;
mod first_spec;
mod netns_ahead;
mod process_io;
pub mod rootfs;
pub mod seccomp_filters;
pub mod timeline;
mod title;

pub use ahead::Ahead;
pub use builder::remember_shim_socket;
pub use bundle::load_spec;
pub use cgroup::{remember_mount_points, CgroupStats, Layout};
pub use cgroup_ahead::{CgroupAhead, MadeCgroup};
pub use cgroup_path::cgroupfs_path;
pub use container::{remove_leftovers, signal, ContainerConfig, LinuxContainer};
pub use executor::{reset_environment, warm_up as warm_up_executor, Guest, Workload};
pub use first_spec::FirstSpec;
pub use netns_ahead::NetnsAhead;
pub use process_io::ProcessIo;
pub use title::replace_command_line;

use std::path::PathBuf;

/// Errors of the isolation layer.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// `process.args[0]` does not name a file inside the rootfs.
    #[error("entrypoint {} not found in the container rootfs: {reason}", path.display())]
    EntrypointNotFound {
        /// The path as the container sees it.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The entrypoint is neither wasm nor something Linux can execute.
    #[error(
        "entrypoint {} is neither a WebAssembly module/component nor an ELF executable or #! script (starts with {head})",
        path.display()
    )]
    NotRunnable {
        /// The path as the container sees it.
        path: PathBuf,
        /// Its first bytes, escaped.
        head: String,
    },
    /// The bundle's config.json could not be read or rewritten.
    #[error("bundle {}: {reason}", path.display())]
    Bundle {
        /// Bundle or file path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Mounting or unmounting the rootfs failed.
    #[error("rootfs {}: {reason}", path.display())]
    Rootfs {
        /// Mount target.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// libcontainer refused to build or control the container.
    #[error("container {id}: {action} failed: {reason}")]
    Container {
        /// Container id.
        id: String,
        /// create, start, delete...
        action: &'static str,
        /// libcontainer's error chain.
        reason: String,
    },
    /// The filesystem holding the container's bundle (containerd's state dir, where
    /// libcontainer keeps its state too) is full.
    #[error(
        "container {id}: {action} failed: no space left on device in {}: {reason}",
        dir.display()
    )]
    NoSpace {
        /// Container id.
        id: String,
        /// create or exec.
        action: &'static str,
        /// The directory whose filesystem is full (the bundle).
        dir: PathBuf,
        /// libcontainer's error chain.
        reason: String,
    },
    /// A cgroup operation failed.
    #[error("cgroup {}: {action} failed: {reason}", path.display())]
    Cgroup {
        /// The container's cgroup path.
        path: PathBuf,
        /// freeze, stats, update...
        action: &'static str,
        /// What failed.
        reason: String,
    },
    /// The process a signal was meant for no longer exists (it exited and was reaped).
    #[error("signal {signal} to pid {pid}: process already finished")]
    ProcessGone {
        /// Signal number.
        signal: u32,
        /// Target pid.
        pid: i32,
    },
    /// A signal could not be delivered.
    #[error("signal {signal} to pid {pid}: {reason}")]
    Signal {
        /// Signal number.
        signal: u32,
        /// Target pid.
        pid: i32,
        /// OS error.
        reason: String,
    },
}

/// Renders an error and every source in one line, the way users need to read it in `ctr`.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}
