//! PURE mapping of an OCI runtime spec to a [`WasiPlan`].
//!
//! This module decides everything a guest is granted, from `config.json` alone: argv, env,
//! working directory, preopened directories, the entrypoint, socket access and the engine-side
//! memory cap. It does no I/O: the only filesystem question (is there a file at this path?) is
//! asked through a caller-supplied closure, so every rule is unit-tested without a container.
//! It depends on nothing but `oci_spec` and [`crate::plan`].
//!
//! - [`error`]: [`SpecError`], one variant per malformed field.
//! - [`process`]: `process.env` and `process.cwd`.
//! - [`entrypoint`]: `process.args[0]`, its `#export` suffix and `PATH` lookup.
//! - [`mounts`]: the rootfs and mounts as preopens.
//! - [`limits`]: network namespace to socket access, cgroup memory to the guest cap.

pub mod entrypoint;
pub mod error;
pub mod http;
pub mod limits;
pub mod mounts;
pub mod process;

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

pub use entrypoint::{resolve_entrypoint, split_export, DEFAULT_PATH};
pub use error::{EntrypointLookup, SpecError};
pub use http::http_plan;
pub use limits::{guest_limits, guest_memory_cap, network_access};
pub use mounts::{made_for_guest, paths_left_for_guest, preopens};
pub use process::{guest_cwd, parse_env};

use crate::plan::{Entrypoint, WasiPlan};

/// Builds the guest's [`WasiPlan`] from an OCI runtime spec.
///
/// - `argv`: `process.args` verbatim, except that a `#export` suffix is stripped from
///   `argv[0]`: it addresses the shim, not the program, and a guest parsing its own `argv[0]`
///   should see a plain path.
/// - `env`: `process.env` as by [`parse_env`]; `cwd`: `process.cwd` as by [`guest_cwd`].
/// - `preopens`: `rootfs_host` as guest `/` (read-only per `root.readonly`), then the mounts,
///   as by [`preopens`].
/// - `entrypoint`: `process.args[0]` as by [`split_export`] and [`resolve_entrypoint`].
/// - `network` as by [`network_access`]; `limits` as by [`guest_limits`].
///
/// `is_file` answers whether a regular file exists at a path of the engine's process (a path
/// under `rootfs_host`); it is used to find the entrypoint and to leave single-file mounts out
/// of the preopens. Call this once the container's mounts are in place (typically after
/// `pivot_root`, with `rootfs_host` = `/`), so that programs and volumes are seen as the guest
/// will see them.
///
/// # Errors
/// [`SpecError::MissingProcess`] and [`SpecError::EmptyArgs`] when there is nothing to run, and any
/// error of the functions above, naming the spec field at fault.
pub fn plan_from_spec(
    spec: &Spec,
    rootfs_host: &Path,
    is_file: impl Fn(&Path) -> bool,
) -> Result<WasiPlan, SpecError> {
    plan_with(spec, rootfs_host, is_file, None)
}

/// [`plan_from_spec`] for a program that is not a file of the rootfs (a raw wasm layer of the
/// image): `program` is recorded as the entrypoint instead of resolving `args[0]`.
///
/// # Errors
/// As [`plan_from_spec`], without [`SpecError::EntrypointNotFound`].
pub fn plan_for_program(
    spec: &Spec,
    rootfs_host: &Path,
    is_file: impl Fn(&Path) -> bool,
    program: PathBuf,
) -> Result<WasiPlan, SpecError> {
    plan_with(spec, rootfs_host, is_file, Some(program))
}

fn plan_with(
    spec: &Spec,
    rootfs_host: &Path,
    is_file: impl Fn(&Path) -> bool,
    resolved: Option<PathBuf>,
) -> Result<WasiPlan, SpecError> {
    let process = spec.process().as_ref().ok_or(SpecError::MissingProcess)?;
    let args = process.args().as_deref().unwrap_or_default();
    let (arg0, rest) = args.split_first().ok_or(SpecError::EmptyArgs)?;
    let (program, export) = split_export(arg0)?;
    let env = parse_env(process.env().as_deref().unwrap_or_default())?;
    let cwd = guest_cwd(process.cwd())?;

    let root_read_only = spec
        .root()
        .as_ref()
        .and_then(|root| root.readonly())
        .unwrap_or(false);
    let mounts = spec.mounts().as_deref().unwrap_or_default();
    let preopens = preopens(mounts, rootfs_host, root_read_only, &is_file)?;

    let path = match resolved {
        Some(path) => path,
        None => resolve_entrypoint(program, &env, &cwd, |guest| {
            is_file(&host_path(rootfs_host, guest))
        })?,
    };

    let argv = std::iter::once(program.to_owned())
        .chain(rest.iter().cloned())
        .collect();
    let linux = spec.linux().as_ref();
    let http = http_plan(&env)?;
    Ok(WasiPlan {
        argv,
        env,
        cwd,
        preopens,
        entrypoint: Entrypoint {
            path,
            export: export.map(str::to_owned),
        },
        network: network_access(linux),
        limits: guest_limits(linux),
        http,
    })
}

/// Where an absolute guest path is for the engine's process: under `rootfs_host`. A plain
/// `join` would replace the base with the absolute path, hence the prefix strip.
fn host_path(rootfs_host: &Path, guest: &Path) -> PathBuf {
    let relative = guest.strip_prefix("/").unwrap_or(guest);
    if relative.as_os_str().is_empty() {
        // `join("")` would add a trailing slash.
        rootfs_host.to_owned()
    } else {
        rootfs_host.join(relative)
    }
}

#[cfg(test)]
mod tests;
