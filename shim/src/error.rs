//! The crate error, and the one place where errors become ttrpc status codes.
//!
//! Each layer has its own typed error (`SpecError`, `EngineError`, `IsolationError`,
//! `TaskError`); they fold into [`Error`] here. Messages are lower case and say what is wrong and
//! where, because containerd passes them verbatim to `ctr`, Docker and the kubelet.

use containerd_shim::protos::ttrpc::{self, Code};

use crate::engine::EngineError;
use crate::image::ImageError;
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
    /// The image's wasm layers could not be read or none fits the process.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A lifecycle rule was broken (unknown id, illegal transition).
    #[error(transparent)]
    Task(#[from] TaskError),
    /// A request field is missing or malformed.
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// The shim cannot take the request now; another shim will (a group shim leaving).
    #[error("unavailable: {0}")]
    Unavailable(String),
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
            Error::Isolation(IsolationError::ProcessGone { .. }) => Code::NOT_FOUND,
            Error::Isolation(IsolationError::NoSpace { .. }) => Code::RESOURCE_EXHAUSTED,
            Error::Isolation(_) => Code::INTERNAL,
            Error::Image(ImageError::NoLayerFor { .. }) => Code::NOT_FOUND,
            Error::Image(ImageError::BadDocument { .. }) => Code::INVALID_ARGUMENT,
            Error::Image(_) => Code::INTERNAL,
            Error::Task(TaskError::NotFound(_) | TaskError::Finished(_)) => Code::NOT_FOUND,
            Error::Task(TaskError::AlreadyExists(_)) => Code::ALREADY_EXISTS,
            Error::Task(TaskError::InvalidTransition { .. }) => Code::FAILED_PRECONDITION,
            Error::Unimplemented(_) => Code::UNIMPLEMENTED,
            Error::Unavailable(_) => Code::UNAVAILABLE,
            Error::Io { .. } => Code::INTERNAL,
        }
    }
}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn what_the_user_got_wrong_is_invalid_argument_or_not_found() {
        let missing = Error::Isolation(IsolationError::EntrypointNotFound {
            path: PathBuf::from("/app.wasm"),
            reason: "no such file".into(),
        });
        assert_eq!(missing.code(), Code::NOT_FOUND);
        let no_layer = Error::Image(ImageError::NoLayerFor {
            program: "x.wasm".into(),
            titles: vec!["a.wasm".into(), "b.wasm".into()],
        });
        assert_eq!(no_layer.code(), Code::NOT_FOUND);
        let bad_manifest = Error::Image(ImageError::BadDocument {
            what: "manifest",
            reason: "eof".into(),
        });
        assert_eq!(bad_manifest.code(), Code::INVALID_ARGUMENT);
        assert_eq!(
            Error::InvalidArgument("x".into()).code(),
            Code::INVALID_ARGUMENT
        );
    }

    #[test]
    fn what_the_node_got_wrong_is_internal() {
        let unreachable = Error::Image(ImageError::Connect {
            address: "/run/containerd/containerd.sock".into(),
            reason: "refused".into(),
        });
        assert_eq!(unreachable.code(), Code::INTERNAL);
        let io = Error::io("reading x", std::io::Error::other("boom"));
        assert_eq!(io.code(), Code::INTERNAL);
        // A full state dir: retrying will not help until someone frees space, as gRPC says.
        let full = Error::Isolation(IsolationError::NoSpace {
            id: "c".into(),
            action: "create",
            dir: PathBuf::from("/run/containerd/io.containerd.runtime.v2.task/k8s.io/c"),
            reason: "failed to save config: No space left on device (os error 28)".into(),
        });
        assert_eq!(full.code(), Code::RESOURCE_EXHAUSTED);
    }

    #[test]
    fn lifecycle_errors_keep_their_grpc_meaning() {
        assert_eq!(
            Error::Task(TaskError::NotFound("c".into())).code(),
            Code::NOT_FOUND
        );
        assert_eq!(
            Error::Task(TaskError::AlreadyExists("c".into())).code(),
            Code::ALREADY_EXISTS
        );
        // containerd accepts only NotFound for a signal to a process that already ended.
        assert_eq!(
            Error::Task(TaskError::Finished("c".into())).code(),
            Code::NOT_FOUND
        );
        assert_eq!(
            Error::Isolation(IsolationError::ProcessGone { pid: 7, signal: 9 }).code(),
            Code::NOT_FOUND
        );
        assert_eq!(
            Error::Unimplemented("checkpoint").code(),
            Code::UNIMPLEMENTED
        );
        assert_eq!(
            Error::Unavailable("the group shim is shutting down".into()).code(),
            Code::UNAVAILABLE
        );
    }

    #[test]
    fn the_ttrpc_status_carries_the_code_and_the_message() {
        let e: ttrpc::Error = Error::InvalidArgument("exec: the exec id is empty".into()).into();
        let ttrpc::Error::RpcStatus(status) = e else {
            panic!("not a status: {e:?}");
        };
        assert_eq!(status.code(), Code::INVALID_ARGUMENT);
        assert!(status.message().contains("exec id is empty"));
    }
}
