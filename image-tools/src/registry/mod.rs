//! Pushes images to and pulls them from OCI registries (the distribution
//! API, through `oci-client`), for both forms: runnable images and wasm
//! artifacts. Manifests travel byte for byte, so digests survive a round
//! trip.
//!
//! - [`auth`]: credentials from flags or Docker's `config.json`.
//! - [`retry`]: which failures are transient, and the backoff.
//! - [`bounded`]: size and digest bounds on what the registry sends.
//! - `client`: the async calls; [`push`] and [`pull`] wrap them for
//!   blocking callers.
//!
//! Blobs the registry already has (HEAD 200) are not uploaded again, so an
//! interrupted push resumes where it stopped.

pub mod auth;
pub mod bounded;
mod client;
pub mod retry;

use std::fmt;
use std::time::Duration;

pub use auth::Credentials;
pub use retry::RetryPolicy;

use crate::image::Image;
use crate::reference::Reference;

/// A progress callback.
pub type ProgressFn = dyn Fn(&Event) + Send + Sync;

/// How to reach the registry.
#[derive(Default)]
pub struct Options {
    /// Plain HTTP instead of HTTPS (`--insecure`).
    pub insecure: bool,
    /// Credentials; `None` is anonymous.
    pub credentials: Option<Credentials>,
    /// Retries on transient failures.
    pub retry: RetryPolicy,
    /// Called for each step (blob uploaded, skipped, downloaded, retries).
    pub progress: Option<Box<ProgressFn>>,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("insecure", &self.insecure)
            .field("credentials", &self.credentials)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// One step of a push or pull, for progress output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The registry already has this blob; not uploaded.
    BlobExists {
        /// `sha256:...`
        digest: String,
        /// Bytes.
        size: u64,
    },
    /// A blob was uploaded.
    BlobPushed {
        /// `sha256:...`
        digest: String,
        /// Bytes.
        size: u64,
    },
    /// A blob was downloaded and verified.
    BlobPulled {
        /// `sha256:...`
        digest: String,
        /// Bytes.
        size: u64,
    },
    /// The manifest was uploaded or downloaded.
    Manifest {
        /// `sha256:...`
        digest: String,
    },
    /// A transient failure; the step is tried again after `delay`.
    Retry {
        /// Which retry this is (1-based).
        attempt: u32,
        /// The wait before it.
        delay: Duration,
        /// What failed.
        error: String,
    },
}

/// Why a push or pull failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 401 without credentials.
    #[error(
        "authentication required for {registry}: use --username/--password-stdin or docker login"
    )]
    AuthRequired {
        /// The registry host.
        registry: String,
    },
    /// 401 with credentials.
    #[error(
        "authentication failed for {registry} as {username:?}: check the user name and password"
    )]
    AuthFailed {
        /// The registry host.
        registry: String,
        /// The user that was refused.
        username: String,
    },
    /// 403.
    #[error("{registry} denied access to {reference}")]
    Forbidden {
        /// The registry host.
        registry: String,
        /// The image.
        reference: String,
    },
    /// 404 for the manifest.
    #[error("{reference} not found in {registry}")]
    NotFound {
        /// The registry host.
        registry: String,
        /// The image.
        reference: String,
    },
    /// An index with no single wasm manifest to choose.
    #[error(
        "{reference} is a multi-platform index ({platforms}); pull a platform's digest instead"
    )]
    Index {
        /// The image.
        reference: String,
        /// The platforms it offers.
        platforms: String,
    },
    /// A manifest that is not an image manifest.
    #[error("{reference}: the manifest is not a valid image manifest: {source}")]
    BadManifest {
        /// The image.
        reference: String,
        /// The parser's message.
        source: serde_json::Error,
    },
    /// An answer refused for its declared or actual size, or its digest.
    #[error("{registry}: {reason}; refusing it")]
    Refused {
        /// The registry host.
        registry: String,
        /// What was wrong with the answer.
        #[source]
        reason: bounded::Refused,
    },
    /// Anything else, after retries.
    #[error("{registry}: {message}{}", retried_note(*.retries))]
    Failed {
        /// The registry host.
        registry: String,
        /// What went wrong, with its causes.
        message: String,
        /// How many retries were made.
        retries: u32,
    },
    /// The async runtime could not start.
    #[error("cannot start the network runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

fn retried_note(retries: u32) -> String {
    match retries {
        0 => String::new(),
        n => format!(" (gave up after {n} retries)"),
    }
}

/// What [`push`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// `sha256:...` of the manifest, as the registry now serves it.
    pub manifest_digest: String,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs the registry already had.
    pub skipped: usize,
}

/// Pushes `image` (its blobs, then its manifest) as `reference`.
///
/// # Errors
/// [`RegistryError`] with a message naming the registry and what to do.
pub fn push(
    image: &Image,
    reference: &Reference,
    options: &Options,
) -> Result<Pushed, RegistryError> {
    runtime()?.block_on(client::push(image, reference, options))
}

/// Pulls `reference` (manifest, config, layers, all verified) into memory.
/// A multi-platform index is followed when it offers exactly one `wasm`
/// manifest.
///
/// # Errors
/// [`RegistryError`] with a message naming the registry and what to do.
pub fn pull(reference: &Reference, options: &Options) -> Result<Image, RegistryError> {
    runtime()?.block_on(client::pull(reference, options))
}

fn runtime() -> Result<tokio::runtime::Runtime, RegistryError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RegistryError::Runtime)
}
