//! Black-box integration tests of wasmpod against a real containerd (1.6, 1.7 or 2.1).
//!
//! # Layout
//! - `paths`: where the shim, CLI, containerd, ctr and test programs are (env overrides).
//! - `config`: pure rewrite of `containerd config default` into a private config.
//! - `containerd`: [`Containerd`], one private daemon per test and its RAII teardown;
//!   `containerd/ops` the ctr wrappers (import, run, task_*), `containerd/cleanup` the
//!   leftover checks.
//! - `run`: [`Run`], the `ctr run` builder (exec / spawn / detach), and [`Spawned`].
//! - `task`: [`Task`], a handle on a running task (kill, pause, metrics, exit code).
//! - `images`: [`Images`], test image tars built once per process (wasmpod CLI, umoci).
//! - `process`: commands with deadlines and captured [`Output`].
//! - `system`: leftover processes, mounts, cgroups and shim sockets on the host, and their removal;
//!   `cgroup`: a container's resource settings read back from cgroupfs (v1 or v2).
//! - `spec`: the whole-spec file for runs as another user on a ctr without `--user`.
//! - `cri`: containerd (1.7 or 2.x) with its CRI plugin driven as kubelet would (pods, exec,
//!   logs, stats); `docker`: a private dockerd (26 or 28) with the containerd image store.
//! - `versions`: the daemons' versions, from their `--version`.
//! - `events`: `ctr events` in the background; `shim_api`: direct ttrpc calls to a shim
//!   (`Update` and `ResizePty` with sizes of the test's choosing, which ctr cannot send;
//!   `Kill`, whose status code ctr 2.x does not print).
//! - `terminal`: [`terminal::InTerminal`], a command on a pty of its own (`ctr run -t`).
//! - `http`: a minimal HTTP/1.1 client for the serving tests (streams and hashes bodies).
//! - `hostile_layer`: crafted layer tars (`../` names, device nodes, links out of the tree)
//!   and the OCI layout around them, for the hostile-input tests.
//! - `tmpfs`: [`tmpfs::FullTmpfs`], a small tmpfs over a daemon's dir, filled to nearly full.
//!
//! ```no_run
//! use wasmpod_integration::{images, with_containerd};
//! with_containerd(|ctd| {
//!     let hello = images().wasm("hello")?;
//!     let out = ctd.import(&hello)?.run(&hello).exec()?;
//!     out.success()?;
//!     Ok(())
//! })
//! # .unwrap();
//! ```
//!
//! Environment: `WASMPOD_CONTAINERD` (containerd binary, default `/usr/bin/containerd`; it
//! picks the lane: from 1.7 on the CRI tests run on it too, and the Docker tests on the
//! dockerd beside it, as in `.work/forky/bin`), `WASMPOD_CTR` (default: the ctr beside it),
//! `WASMPOD_BIN_DIR` (shim and CLI, default `target/release`), `WASMPOD_CLI`,
//! `WASMPOD_TEST_PROGRAMS`, `WASMPOD_IT_LOG_LEVEL`; `WASMPOD_CRI_CONTAINERD` and
//! `WASMPOD_DOCKERD` override the CRI's and Docker's choice (see `cri` and `docker`).

pub mod cgroup;
pub mod config;
pub mod containerd;
pub mod cri;
pub mod docker;
pub mod docker_net;
pub mod events;
pub mod hostile_layer;
pub mod http;
pub mod images;
pub mod paths;
pub mod process;
pub mod run;
pub mod shim_api;
pub mod spec;
pub mod system;
pub mod task;
pub mod terminal;
pub mod tmpfs;
pub mod versions;

pub use containerd::{unique_name, with_containerd, with_containerd_env, Containerd, TaskInfo};
pub use images::{images, Images, TestImage};
pub use paths::{require_shim, RUNC_RUNTIME, WASMPOD_RUNTIME};
pub use process::Output;
pub use run::{Run, Spawned};
pub use task::Task;
