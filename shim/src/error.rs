//! The crate error, and the one place where errors become ttrpc status codes.
//!
//! Each layer has its own typed error (`SpecError`, `EngineError`, `IsolationError`,
//! `TaskError`); they fold into [`Error`] here. Messages are lower case and say what is wrong and
//! where, because containerd passes them verbatim to `ctr`, Docker and the kubelet.

use containerd_shim::protos::ttrpc::{self, Code};

use crate::engine::EngineError;
use crate::isolation::IsolationError;
use crate::spec::SpecError;
use crate::task::TaskError;

/// Everything that can go wrong while serving the task API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OCI spec does not describe something wasmpod can run.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The program could not be loaded or compiled.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The Linux container could not be built or controlled.
    #[error(transparent)]
    Isolation(#[from] IsolationError),
    /// A lifecycle rule was broken (unknown id, illegal transition).
    #[error(transparent)]
    Task(#[from] TaskError),
    /// A request field is missing or malformed.
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// The API exists but wasmpod does not implement it (yet).
    #[error("{0} is not supported by wasmpod")]
    Unimplemented(&'static str),
    /// Reading or writing a file of the shim's own failed.
    #[error("{context}: {source}")]
    Io {
        /// What the shim was doing.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what the shim was doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The gRPC code containerd sees; it decides how `ctr` and the kubelet react.
    pub fn code(&self) -> Code {
        match self {
            Error::Spec(_) | Error::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            Error::Engine(
                EngineError::NotWasm { .. }
                | EngineError::Invalid { .. }
                | EngineError::UnsatisfiedImport { .. }
                | EngineError::UnsatisfiedComponentImport { .. }
                | EngineError::ExportNotFound { .. }
                | EngineError::ExportSignature { .. }
                | EngineError::NotACommand { .. },
            ) => Code::INVALID_ARGUMENT,
            Error::Engine(_) => Code::INTERNAL,
            Error::Isolation(IsolationError::EntrypointNotFound { .. }) => Code::NOT_FOUND,
            Error::Isolation(IsolationError::NotRunnable { .. }) => Code::INVALID_ARGUMENT,
            Error::Isolation(_) => Code::INTERNAL,
            Error::Task(TaskError::NotFound(_)) => Code::NOT_FOUND,
            Error::Task(TaskError::AlreadyExists(_)) => Code::ALREADY_EXISTS,
            Error::Task(TaskError::InvalidTransition { .. }) => Code::FAILED_PRECONDITION,
            Error::Unimplemented(_) => Code::UNIMPLEMENTED,
            Error::Io { .. } => Code::INTERNAL,
        }
    }
}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}
