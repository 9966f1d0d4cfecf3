//! wasmpod: a containerd shim v2 that runs WASI WebAssembly containers on wasmtime, side by side
//! with Linux containers.
//!
//! # Layout
//! - [`service`]: containerd-facing and thin: the `Shim` and `Task` ttrpc services, events.
//! - [`task`]: container lifecycle without protocol types: state machine, registry, waiters.
//! - [`instance`]: one container: where spec, engine, isolation and stdio meet.
//! - [`spec`]: PURE mapping of an OCI runtime spec to a [`plan::WasiPlan`].
//! - [`plan`]: the WASI plan, plain data shared by `spec` and `engine`.
//! - [`engine`]: wasmtime only: engine config, compile cache, WASI p1/p2, exit codes, and
//!   one instance per HTTP request for `wasi:http` handlers.
//! - [`serve`]: the HTTP server of a handler container: listener, admission, metering, drain.
//! - [`isolation`]: Linux only: the container (namespaces, cgroups, rootfs) via libcontainer.
//! - [`stdio`]: containerd's fifos; nothing else touches them.
//! - [`image`]: the container's image through containerd's API: wasm layers kept as content.
//! - [`error`]: the crate error and its single mapping to ttrpc codes.
//! - [`fork_gate`]: the lock that keeps forks out of sections whose locks children need.
//! - [`idle`]: what a shim or guest process gives back once started: freed heap, start code.
//! - [`spawn`]: helper programs started without std's `Command`, whose exec error races the
//!   shim's reaper.
//! - [`stages`]: per-stage timing of create, start, run and delete, logged at debug level.

pub mod engine;
pub mod error;
pub mod fork_gate;
pub mod idle;
pub mod image;
pub mod instance;
pub mod isolation;
pub mod plan;
pub mod serve;
pub mod service;
pub mod spawn;
pub mod spec;
pub mod stages;
pub mod stdio;
pub mod task;

/// containerd's runtime type for wasmpod.
pub const RUNTIME_TYPE: &str = "io.containerd.wasmpod.v1";
/// The shim's binary name, which containerd derives from [`RUNTIME_TYPE`].
pub const SHIM_BINARY: &str = "containerd-shim-wasmpod-v1";
/// wasmpod's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
