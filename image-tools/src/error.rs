//! The library's error type. Every variant names the input at fault so the
//! CLI can print it as is, without extra context.

use std::io;
use std::path::PathBuf;

use crate::output::OutputError;
use crate::reference::ReferenceError;
use crate::wasm::WasmError;

/// Everything that can go wrong while building an image.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The `-t NAME:TAG` value is not a valid reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A build needs a tag to name the image; a digest cannot be chosen.
    #[error("image name {0:?} must use a tag, not a digest (the digest is computed by the build)")]
    DigestInName(String),
    /// An `--env` value without `=`.
    #[error("environment variable {0:?} has no '=' (expected KEY=VALUE)")]
    BadEnv(String),
    /// A `--label` value without `=` or with an empty key.
    #[error("label {0:?} is not KEY=VALUE with a non-empty KEY")]
    BadLabel(String),
    /// An `--annotation` value without `=` or with an empty key.
    #[error("annotation {0:?} is not KEY=VALUE with a non-empty KEY")]
    BadAnnotation(String),
    /// An option that the chosen form or format cannot carry.
    #[error("{0}")]
    Unsupported(String),
    /// A `--dir` value that is not `HOST:GUEST` with an absolute GUEST.
    #[error("directory mapping {spec:?} is invalid: {reason}")]
    BadDir {
        /// The mapping as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--platform` value that is not `OS/ARCH[/VARIANT]`.
    #[error("platform {0:?} is invalid (expected OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64)")]
    BadPlatform(String),
    /// `SOURCE_DATE_EPOCH` is set but is not a number of seconds.
    #[error("SOURCE_DATE_EPOCH={0:?} is not a non-negative integer number of seconds")]
    BadSourceDateEpoch(String),
    /// A native image (no WASM file) is missing a required option.
    #[error("an image without a WASM file needs {0}")]
    NativeNeeds(&'static str),
    /// An input file or directory is missing or unreadable.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The WASM file is not a valid module or component.
    #[error(transparent)]
    Wasm(#[from] WasmError),
    /// A host file that cannot go into a layer (device, fifo, socket).
    #[error("{} is not a regular file, directory or symlink; it cannot go into an image", .0.display())]
    UnsupportedFileType(PathBuf),
    /// A host file name that is not UTF-8 (image paths must be).
    #[error("{} has a file name that is not UTF-8", .0.display())]
    NonUtf8Name(PathBuf),
    /// Two inputs want incompatible things at one path in the image.
    #[error("conflict at /{path} in the image: {reason}")]
    PathConflict {
        /// The guest path, without its leading '/'.
        path: String,
        /// What collided.
        reason: String,
    },
    /// The image cannot be written in the chosen format, or writing failed.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// Writing the output archive failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The output file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Assembling an in-memory archive failed (should not happen).
    #[error("cannot assemble {what}: {source}")]
    Assemble {
        /// Which archive was being assembled.
        what: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// Serialising an image document failed (should not happen).
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// Which document.
        what: &'static str,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// oci-spec refused to build a document (should not happen).
    #[error("cannot build OCI {what}: {source}")]
    Spec {
        /// Which document.
        what: &'static str,
        /// The underlying error.
        source: oci_spec::OciSpecError,
    },
}
