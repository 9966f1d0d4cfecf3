//! Registry answers read with a bound, so a hostile or broken registry cannot make a pull hold
//! more than it declared: a blob is read up to its descriptor's size, a manifest up to
//! [`MAX_MANIFEST_BYTES`], and a declared size (descriptor or Content-Length) above the bound
//! is refused before the body is read. Manifests are fetched here rather than by `oci-client`,
//! whose `pull_manifest_raw` reads the whole body whatever its length.
//!
//! What is refused travels as a [`Refused`] inside an `io::Error` through `oci-client`'s error
//! type, so the retry loop treats it as fatal and `client` turns it back into
//! [`super::RegistryError::Refused`].

use std::io;

use oci_client::errors::OciDistributionError;
use sha2::{Digest, Sha256};

/// The largest manifest or index read. The distribution spec asks clients and registries to
/// handle manifests of at least 4 MiB; a wasm image's manifest is about 1 KiB.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// The largest blob a descriptor may declare. A pull holds the image in memory, so this is a
/// bound on that memory too; a wasm module of more than 4 GiB does not exist in practice.
pub const MAX_BLOB_BYTES: u64 = 4 << 30;

/// An answer refused for its size or content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A declared size above the bound.
    #[error("{what} declares {declared} bytes, more than the {limit} a pull accepts")]
    TooLarge {
        /// `blob sha256:...` or `manifest REF`.
        what: String,
        /// The size declared.
        declared: u64,
        /// The bound.
        limit: u64,
    },
    /// A Content-Length that is not the descriptor's size.
    #[error(
        "{what}: the registry announced Content-Length {length} for a blob of {expected} bytes"
    )]
    LengthMismatch {
        /// `blob sha256:...`.
        what: String,
        /// The Content-Length header.
        length: u64,
        /// The descriptor's size.
        expected: u64,
    },
    /// A body that went on past its bound (no or a lying Content-Length).
    #[error("{what} sent more than the {limit} bytes {bound}; cut off")]
    TooLong {
        /// `blob sha256:...` or `manifest REF`.
        what: String,
        /// The bound.
        limit: u64,
        /// What set it.
        bound: &'static str,
    },
    /// A manifest whose bytes do not hash to the digest asked for or announced.
    #[error("{what} does not match digest {expected} (its bytes hash to {actual})")]
    DigestMismatch {
        /// `manifest REF`.
        what: String,
        /// The digest asked for or announced in Docker-Content-Digest.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
}

impl From<Refused> for OciDistributionError {
    fn from(refused: Refused) -> Self {
        OciDistributionError::IoError(io::Error::new(io::ErrorKind::InvalidData, refused))
    }
}

/// The [`Refused`] carried by `err`, if that is what it is.
pub fn refused(err: &OciDistributionError) -> Option<&Refused> {
    match err {
        OciDistributionError::IoError(io) => io.get_ref()?.downcast_ref::<Refused>(),
        _ => None,
    }
}

/// Checks a descriptor's size against [`MAX_BLOB_BYTES`].
///
/// # Errors
/// [`Refused::TooLarge`].
pub fn check_declared(what: &str, declared: u64) -> Result<(), Refused> {
    if declared > MAX_BLOB_BYTES {
        return Err(Refused::TooLarge {
            what: what.to_owned(),
            declared,
            limit: MAX_BLOB_BYTES,
        });
    }
    Ok(())
}

/// Appends `chunk` to `into` unless that would pass `limit`.
///
/// # Errors
/// [`Refused::TooLong`], with `into` left as it was.
pub fn append(
    into: &mut Vec<u8>,
    chunk: &[u8],
    limit: u64,
    what: &str,
    bound: &'static str,
) -> Result<(), Refused> {
    if (into.len() + chunk.len()) as u64 > limit {
        return Err(Refused::TooLong {
            what: what.to_owned(),
            limit,
            bound,
        });
    }
    into.extend_from_slice(chunk);
    Ok(())
}

/// GETs a manifest at `url`, reading at most [`MAX_MANIFEST_BYTES`], and checks it against
/// `expected` (the digest asked for) and the Docker-Content-Digest header; returns the bytes
/// and their digest.
///
/// # Errors
/// Transport errors and error statuses as `oci-client` reports them (so they are retried and
/// classified alike), and any [`Refused`].
pub async fn manifest(
    request: reqwest::RequestBuilder,
    what: &str,
    expected: Option<&str>,
) -> Result<(Vec<u8>, String), OciDistributionError> {
    let mut response = request.send().await?;
    let status = response.status();
    if !status.is_success() {
        let url = response.url().to_string();
        let mut message = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            // The message is for the error line only; a few KiB is plenty.
            if append(&mut message, &chunk, 4096, what, "").is_err() {
                break;
            }
        }
        return Err(OciDistributionError::ServerError {
            code: status.as_u16(),
            url,
            message: String::from_utf8_lossy(&message).into_owned(),
        });
    }
    if let Some(length) = response
        .content_length()
        .filter(|n| *n > MAX_MANIFEST_BYTES)
    {
        return Err(Refused::TooLarge {
            what: what.to_owned(),
            declared: length,
            limit: MAX_MANIFEST_BYTES,
        }
        .into());
    }
    let announced = response
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let bound = "a manifest may have";
        append(&mut bytes, &chunk, MAX_MANIFEST_BYTES, what, bound)?;
    }
    let actual = format!("sha256:{:x}", Sha256::digest(&bytes));
    for digest in expected.into_iter().chain(announced.as_deref()) {
        // Only sha256 is computed here; another algorithm's digest is the registry's to keep.
        if digest.starts_with("sha256:") && digest != actual {
            return Err(Refused::DigestMismatch {
                what: what.to_owned(),
                expected: digest.to_owned(),
                actual,
            }
            .into());
        }
    }
    Ok((bytes, actual))
}
