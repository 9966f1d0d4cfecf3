//! The engine's error type: every way loading or running a guest can fail before the guest
//! itself decides its fate (a guest's own exit or trap is a [`super::GuestExit`], not an error).
//!
//! Messages are lower-case, name the program path and the offending item, and say what is
//! available instead, because they end up verbatim in `ctr run` / kubelet events.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Whether a program is a core WebAssembly module or a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgramKind {
    /// A core module (`\0asm` version 1), run through WASI preview 1.
    Module,
    /// A component (component-model binary), run through WASI preview 2.
    Component,
}

impl fmt::Display for ProgramKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProgramKind::Module => "module",
            ProgramKind::Component => "component",
        })
    }
}

/// Why the engine could not load or run a program.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime rejected the engine configuration (for example a setting the host CPU cannot
    /// support).
    #[error("cannot configure wasmtime: {reason}")]
    Config {
        /// wasmtime's reason.
        reason: String,
    },

    /// The bytes are neither a core module nor a component (not even the magic number).
    #[error("{path} is not a WebAssembly module or component")]
    NotWasm {
        /// The program, as named to the caller.
        path: PathBuf,
    },

    /// The binary looked like wasm but failed validation or compilation.
    #[error("{path} is not a valid WebAssembly {kind}: {reason}")]
    Invalid {
        /// The program.
        path: PathBuf,
        /// What the header said it is.
        kind: ProgramKind,
        /// The validator's or compiler's reason, with the byte offset when known.
        reason: String,
    },

    /// A core module imports something outside WASI preview 1.
    #[error(
        "{path} imports `{module}`.`{name}` ({kind}), which wasmpod does not provide: only WASI \
         preview 1 `wasi_snapshot_preview1` / preview 2 `wasi:*` interfaces are available"
    )]
    UnsatisfiedImport {
        /// The program.
        path: PathBuf,
        /// Import module name (`env` in the classic mistake).
        module: String,
        /// Import field name.
        name: String,
        /// `function`, `memory`, `global`, `table` or `tag`.
        kind: &'static str,
    },

    /// A component imports something outside WASI preview 2.
    #[error(
        "{path} imports `{name}` ({kind}), which wasmpod does not provide: only WASI preview 1 \
         `wasi_snapshot_preview1` / preview 2 `wasi:*` interfaces are available"
    )]
    UnsatisfiedComponentImport {
        /// The program.
        path: PathBuf,
        /// The import name, e.g. `wasi:http/outgoing-handler@0.2.0` or `foo:bar/baz`.
        name: String,
        /// `instance`, `function`, `module`, `component`, `type` or `resource`.
        kind: &'static str,
    },

    /// Every import names a WASI interface, but wasmtime cannot satisfy one of them (unknown
    /// function in `wasi_snapshot_preview1`, wrong signature, unsupported WASI version...).
    #[error("{path} cannot be linked against the WASI wasmpod provides: {reason}")]
    Link {
        /// The program.
        path: PathBuf,
        /// wasmtime's reason, naming the import.
        reason: String,
    },

    /// The requested entrypoint export does not exist (or is not a function).
    #[error(
        "export `{name}` not found in {path}; exports: {}",
        list_or_none(available)
    )]
    ExportNotFound {
        /// The program.
        path: PathBuf,
        /// The export that was asked for (`_start` when none was named).
        name: String,
        /// What the program does export (functions for modules, top-level items for components).
        available: Vec<String>,
    },

    /// The requested entrypoint export exists but cannot be called without arguments.
    #[error(
        "export `{name}` in {path} has type {found}; an entrypoint must take no parameters and \
         return nothing or an i32 exit code"
    )]
    ExportSignature {
        /// The program.
        path: PathBuf,
        /// The export.
        name: String,
        /// Its type, as wasmtime prints it.
        found: String,
    },

    /// A component without an explicit export must be a WASI command.
    #[error(
        "{path} does not export `wasi:cli/run` (it is not a WASI command component); exports: {}; \
         build it as a command or name an export with `#name`",
        list_or_none(available)
    )]
    NotACommand {
        /// The program.
        path: PathBuf,
        /// Its top-level exports.
        available: Vec<String>,
    },

    /// The compile cache directory could not be created.
    #[error("cannot create compile cache directory {path}: {source}")]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Writing a compiled artifact into the cache failed.
    #[error("cannot write compile cache file {path}: {source}")]
    CacheWrite {
        /// The file being written (the temporary file or the final name).
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A freshly written cache file could not be mapped back in.
    #[error("cannot load compiled code from compile cache file {path}: {reason}")]
    CacheLoad {
        /// The `.cwasm` file.
        path: PathBuf,
        /// wasmtime's reason.
        reason: String,
    },

    /// A descriptor the program's initial memory is mapped from was closed (or reused) in the
    /// process that runs the guest; see [`super::Program::retained_fds`].
    #[error(
        "descriptor {fd} of compiled code file {path} was closed before the guest started; \
         the container process must keep the program's retained descriptors open"
    )]
    CodeFileClosed {
        /// The `.cwasm` file.
        path: PathBuf,
        /// The descriptor number.
        fd: i32,
    },

    /// A directory the plan grants could not be opened.
    #[error("cannot preopen {host} as `{guest}` for the guest: {source}")]
    Preopen {
        /// The directory in the engine's view of the filesystem.
        host: PathBuf,
        /// The name the guest would have seen.
        guest: String,
        /// Why it could not be opened (typically it does not exist).
        #[source]
        source: io::Error,
    },

    /// Instantiation failed for a reason other than the guest trapping, e.g. the module's
    /// initial memory is already above the plan's memory limit.
    #[error("cannot instantiate {path}: {reason}")]
    Instantiate {
        /// The program.
        path: PathBuf,
        /// wasmtime's reason.
        reason: String,
    },

    /// [`super::WasmEngine::run`] was called on a thread that is inside a tokio runtime.
    #[error(
        "the engine must run the guest on a plain thread, not inside a tokio runtime: WASI's \
         blocking calls would block_on that runtime (and after a fork its workers are gone)"
    )]
    InsideAsyncRuntime,

    /// An HTTP handler was given to [`super::WasmEngine::run`], or a program that is not one
    /// to a serving engine.
    #[error("{path}: {reason}")]
    WrongEngine {
        /// The program.
        path: PathBuf,
        /// Which way round.
        reason: &'static str,
    },
}

impl EngineError {
    /// `true` if the program itself is at fault (not wasm, invalid, imports something
    /// wasmpod does not provide, no usable entrypoint): the user must change the image or the
    /// command, retrying cannot help. `false` for host-side failures (cache I/O, engine
    /// configuration, setup inside the container).
    pub fn is_bad_program(&self) -> bool {
        match self {
            EngineError::NotWasm { .. }
            | EngineError::Invalid { .. }
            | EngineError::UnsatisfiedImport { .. }
            | EngineError::UnsatisfiedComponentImport { .. }
            | EngineError::Link { .. }
            | EngineError::ExportNotFound { .. }
            | EngineError::ExportSignature { .. }
            | EngineError::NotACommand { .. } => true,
            EngineError::Config { .. }
            | EngineError::CacheDir { .. }
            | EngineError::CacheWrite { .. }
            | EngineError::CacheLoad { .. }
            | EngineError::CodeFileClosed { .. }
            | EngineError::Preopen { .. }
            | EngineError::Instantiate { .. }
            | EngineError::InsideAsyncRuntime
            | EngineError::WrongEngine { .. } => false,
        }
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}

/// Renders a wasmtime error with its whole cause chain on one line (`outer: inner: root`).
pub(crate) fn reason(err: &wasmtime::Error) -> String {
    format!("{err:#}")
}

/// Best-effort reconstruction of an `io::Error` from a wasmtime error that wraps one, so that
/// callers can still match on `kind()` (e.g. `NotFound` for a missing preopen).
pub(crate) fn io_error(err: wasmtime::Error) -> io::Error {
    match err.downcast::<io::Error>() {
        Ok(io) => io,
        Err(other) => io::Error::other(reason(&other)),
    }
}
