//! Errors of the OCI spec to WASI plan mapping.
//!
//! Owns [`SpecError`] and [`EntrypointLookup`] (how an entrypoint was searched, for the
//! not-found message). Plain data, no I/O.

use std::fmt;
use std::path::PathBuf;

/// Why an OCI runtime spec cannot be turned into a [`crate::plan::WasiPlan`].
///
/// Every message names the spec field at fault so that `crictl`/`ctr` users can fix their
/// pod or container definition without reading shim logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The spec has no `process` section; there is nothing to run.
    #[error("spec has no process")]
    MissingProcess,

    /// `process.args` is absent or empty.
    #[error("process.args is empty: nothing to run")]
    EmptyArgs,

    /// `process.args[0]` has no program path, e.g. `""` or `"#main"`.
    #[error("process.args[0] {arg0:?} names no program")]
    EmptyProgramPath {
        /// `process.args[0]` as written.
        arg0: String,
    },

    /// `process.args[0]` ends in `#` with nothing after it.
    #[error("entrypoint export name after '#' is empty in process.args[0] {arg0:?}")]
    EmptyExportName {
        /// `process.args[0]` as written.
        arg0: String,
    },

    /// A `process.env` entry is not of the form `NAME=value`.
    #[error("process.env entry {entry:?} has no '='")]
    EnvMissingEquals {
        /// The entry as written.
        entry: String,
    },

    /// A `process.env` entry starts with `=`.
    #[error("process.env entry {entry:?} has an empty name")]
    EnvEmptyName {
        /// The entry as written.
        entry: String,
    },

    /// `process.cwd` is a relative path.
    #[error("process.cwd {cwd:?} is not absolute")]
    CwdNotAbsolute {
        /// `process.cwd` as written.
        cwd: PathBuf,
    },

    /// A `mounts[].destination` is a relative path.
    #[error("mount destination {destination:?} is not absolute")]
    MountDestinationNotAbsolute {
        /// The destination as written.
        destination: PathBuf,
    },

    /// A `mounts[].destination` contains a `..` component.
    #[error("mount destination {destination:?} contains '..'")]
    MountDestinationHasParent {
        /// The destination as written.
        destination: PathBuf,
    },

    /// A `WASMPOD_HTTP_*` serving setting in `process.env` is unknown or has a bad value.
    #[error("process.env {name}={value:?}: {reason}")]
    HttpSetting {
        /// The variable.
        name: String,
        /// Its value as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The entrypoint program does not exist in the container.
    #[error("entrypoint {entrypoint:?} not found in the container rootfs ({searched})")]
    EntrypointNotFound {
        /// The program path from `process.args[0]`, without any `#export` suffix.
        entrypoint: String,
        /// Where it was looked for.
        searched: EntrypointLookup,
    },
}

/// How an entrypoint was looked up; rendered into [`SpecError::EntrypointNotFound`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntrypointLookup {
    /// An absolute path, checked as is.
    Absolute,
    /// A relative path with a `/`, resolved against `process.cwd`.
    Cwd(PathBuf),
    /// A bare name, searched in the spec's `PATH` (the value, colon separated).
    Path(String),
}

impl fmt::Display for EntrypointLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Absolute => f.write_str("absolute path"),
            Self::Cwd(cwd) => write!(f, "relative to process.cwd {}", cwd.display()),
            Self::Path(path) => write!(f, "searched PATH {path}"),
        }
    }
}
