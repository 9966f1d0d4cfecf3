//! `wasmpod install` / `uninstall`: puts the shim on containerd's PATH and
//! registers (or removes) the `io.containerd.wasmpod.v1` runtime in
//! containerd's `config.toml` and, optionally, Docker's `daemon.json`.
//!
//! Config files are edited in place keeping every other byte, backed up to
//! `<path>.wasmpod.bak` once (before the first change) and written
//! atomically (temporary file + rename). Both commands are idempotent.

pub mod containerd;
pub mod diff;
pub mod docker;

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The runtime type containerd resolves to `containerd-shim-wasmpod-v1`.
pub const RUNTIME_TYPE: &str = "io.containerd.wasmpod.v1";
/// The shim's file name.
pub const SHIM_NAME: &str = "containerd-shim-wasmpod-v1";
/// The runtime name in Docker's `daemon.json`.
pub const DOCKER_RUNTIME: &str = "wasmpod";

/// Why an install or uninstall failed; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{path}: cannot parse: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: runtime `{handler}` already exists with runtime type {existing}, not {RUNTIME_TYPE} (use --force to replace it)")]
    Conflict {
        path: String,
        handler: String,
        existing: String,
    },
    #[error("{path}: {message}")]
    Unsupported { path: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What to install where.
#[derive(Debug, Clone)]
pub struct Options {
    pub shim: PathBuf,
    pub bin_dir: PathBuf,
    pub containerd_config: PathBuf,
    pub handler: String,
    /// `Some(daemon.json)`: also register the runtime with Docker.
    pub docker_config: Option<PathBuf>,
    pub dry_run: bool,
    pub force: bool,
}

/// What a run did (or, with `dry_run`, would do).
#[derive(Debug, Default)]
pub struct Report {
    /// One line per action or non-action.
    pub lines: Vec<String>,
    /// Unified diffs of the config files (dry run only).
    pub diffs: Vec<String>,
    /// Services to restart for the change to take effect.
    pub restart: Vec<&'static str>,
    /// Advice that needs the user's decision.
    pub warnings: Vec<String>,
}

fn read_optional(path: &Path) -> Result<Option<String>, InstallError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io_err(path)(err)),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, with `mode` (or the existing file's mode).
fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), InstallError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mode = match mode {
        Some(mode) => mode,
        None => fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".wasmpod-")
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    temp.write_all(bytes).map_err(io_err(temp.path()))?;
    temp.as_file().sync_all().map_err(io_err(path))?;
    fs::set_permissions(temp.path(), fs::Permissions::from_mode(mode)).map_err(io_err(path))?;
    temp.persist(path).map_err(|err| io_err(path)(err.error))?;
    Ok(())
}

/// `<path>.wasmpod.bak`.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".wasmpod.bak");
    PathBuf::from(name)
}

/// Replaces config `path` (currently `old`) with `new`: backup once, then
/// an atomic write; or, in a dry run, a diff.
fn apply(
    report: &mut Report,
    dry_run: bool,
    path: &Path,
    old: Option<&str>,
    new: &str,
) -> Result<(), InstallError> {
    if dry_run {
        let label = path.display().to_string();
        report
            .diffs
            .push(diff::unified(&label, old.unwrap_or(""), new));
        return Ok(());
    }
    if let Some(old) = old {
        let backup = backup_path(path);
        if !backup.exists() {
            write_atomic(&backup, old.as_bytes(), None)?;
            report.lines.push(format!(
                "backed up {} to {}",
                path.display(),
                backup.display()
            ));
        }
    }
    write_atomic(path, new.as_bytes(), None)
}

fn verb(dry_run: bool, done: &str) -> String {
    if dry_run {
        format!("would have {done}")
    } else {
        done.to_string()
    }
}

/// Installs per `opts`.
pub fn install(opts: &Options) -> Result<Report, InstallError> {
    let mut report = Report::default();
    // 1. The shim.
    let shim = fs::read(&opts.shim).map_err(io_err(&opts.shim))?;
    let target = opts.bin_dir.join(SHIM_NAME);
    let same = fs::read(&target).is_ok_and(|existing| existing == shim)
        && fs::metadata(&target).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o755);
    if same {
        report
            .lines
            .push(format!("{} is up to date", target.display()));
    } else {
        if !opts.dry_run {
            write_atomic(&target, &shim, Some(0o755))?;
        }
        let done = format!(
            "installed {} as {} (mode 0755)",
            opts.shim.display(),
            target.display()
        );
        report.lines.push(verb(opts.dry_run, &done));
    }
    // 2. containerd.
    let path = &opts.containerd_config;
    let name = path.display().to_string();
    let old = read_optional(path)?;
    match containerd::add(&name, old.as_deref(), &opts.handler, opts.force)? {
        None => report.lines.push(format!(
            "{name}: runtime `{}` is already registered: nothing to change",
            opts.handler
        )),
        Some(edited) => {
            apply(
                &mut report,
                opts.dry_run,
                path,
                old.as_deref(),
                &edited.text,
            )?;
            if let Some(note) = edited.note {
                report.lines.push(note);
            }
            let done = format!("added {} to {name}", edited.schema.header(&opts.handler));
            report.lines.push(verb(opts.dry_run, &done));
            report.restart.push("containerd");
        }
    }
    // 3. Docker.
    if let Some(path) = &opts.docker_config {
        let name = path.display().to_string();
        let old = read_optional(path)?;
        match docker::add(&name, old.as_deref(), DOCKER_RUNTIME, opts.force)? {
            None => report.lines.push(format!(
                "{name}: Docker runtime `{DOCKER_RUNTIME}` is already registered: nothing to change"
            )),
            Some(new) => {
                apply(&mut report, opts.dry_run, path, old.as_deref(), &new)?;
                let done = if old.is_none() {
                    format!("created {name} with Docker runtime `{DOCKER_RUNTIME}`")
                } else {
                    format!("added Docker runtime `{DOCKER_RUNTIME}` to {name}")
                };
                report.lines.push(verb(opts.dry_run, &done));
                report.restart.push("docker");
            }
        }
        if !docker::has_containerd_snapshotter(old.as_deref()) {
            report.warnings.push(format!(
                "Docker runs wasm images only with the containerd image store: add \
                 \"features\": {{\"containerd-snapshotter\": true}} to {name} yourself \
                 (this switches Docker's storage: images and containers in the old store \
                 are no longer visible); wasmpod did not change it"
            ));
        }
    }
    Ok(report)
}

/// Undoes [`install`]: removes only what it added.
pub fn uninstall(opts: &Options) -> Result<Report, InstallError> {
    let mut report = Report::default();
    let path = &opts.containerd_config;
    let name = path.display().to_string();
    let old = read_optional(path)?;
    match old
        .as_deref()
        .map(|old| containerd::remove(&name, old, &opts.handler))
        .transpose()?
        .flatten()
    {
        Some(edited) if Some(&edited.text) == old.as_ref() => {
            report.lines.extend(edited.note);
        }
        Some(edited) => {
            apply(
                &mut report,
                opts.dry_run,
                path,
                old.as_deref(),
                &edited.text,
            )?;
            let done = format!(
                "removed {} from {name}",
                edited.schema.header(&opts.handler)
            );
            report.lines.push(verb(opts.dry_run, &done));
            report.restart.push("containerd");
        }
        None => report.lines.push(format!(
            "{name}: no wasmpod runtime `{}`: nothing to change",
            opts.handler
        )),
    }
    if let Some(path) = &opts.docker_config {
        let name = path.display().to_string();
        let old = read_optional(path)?;
        match old
            .as_deref()
            .map(|old| docker::remove(&name, old, DOCKER_RUNTIME))
            .transpose()?
            .flatten()
        {
            Some(new) => {
                apply(&mut report, opts.dry_run, path, old.as_deref(), &new)?;
                let done = format!("removed Docker runtime `{DOCKER_RUNTIME}` from {name}");
                report.lines.push(verb(opts.dry_run, &done));
                report.restart.push("docker");
            }
            None => report.lines.push(format!(
                "{name}: no wasmpod Docker runtime: nothing to change"
            )),
        }
    }
    let target = opts.bin_dir.join(SHIM_NAME);
    if target.exists() {
        if !opts.dry_run {
            fs::remove_file(&target).map_err(io_err(&target))?;
        }
        report
            .lines
            .push(verb(opts.dry_run, &format!("removed {}", target.display())));
    } else {
        report.lines.push(format!(
            "{} is not there: nothing to remove",
            target.display()
        ));
    }
    Ok(report)
}
