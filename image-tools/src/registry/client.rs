//! The async side of push and pull: `oci-client` calls wrapped in retries,
//! and its errors turned into [`RegistryError`]s that say what to do.
//!
//! `oci-client` is used for the wire protocol (token and basic auth
//! challenges, chunked uploads, digest checks on download); the choice of
//! what to send, in which order, and what to skip stays here. Manifests are
//! fetched with a bound on their size (see [`super::bounded`]), with the
//! token `oci-client` negotiated.

use std::sync::OnceLock;
use std::time::Duration;

use futures_util::StreamExt;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};

use super::bounded::{self, Refused};
use super::retry::{self, classify_code, classify_io, classify_status, Class};
use super::{Event, Options, Pushed, RegistryError};
use crate::image::{
    is_index, Blob, Descriptor, Image, IndexDoc, ManifestDoc, MEDIA_DOCKER_LIST,
    MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST,
};
use crate::reference::Reference;
use crate::spec::Platform;

/// Manifest types asked for on pull.
const ACCEPTED: [&str; 4] = [
    MEDIA_OCI_MANIFEST,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX,
    MEDIA_DOCKER_LIST,
];

/// The most of a blob allocated ahead of its bytes: a descriptor's size is the registry's
/// word, not yet a fact.
const PREALLOCATE_MAX: u64 = 64 << 20;

/// One registry conversation: client, target and how to report.
struct Session<'a> {
    client: Client,
    /// For manifests (see [`bounded::manifest`]).
    http: reqwest::Client,
    /// The bearer token `oci-client` got at [`Session::authenticate`], if the registry wants one.
    token: OnceLock<String>,
    target: oci_client::Reference,
    reference: &'a Reference,
    auth: RegistryAuth,
    options: &'a Options,
}

impl<'a> Session<'a> {
    fn new(reference: &'a Reference, options: &'a Options) -> Self {
        let config = ClientConfig {
            protocol: if options.insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(Duration::from_secs(30)),
            ..ClientConfig::default()
        };
        let auth = match &options.credentials {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        // reqwest's default policy follows at most 10 redirects, so a loop ends in an error.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Self {
            client: Client::new(config),
            http,
            token: OnceLock::new(),
            target: oci_reference(reference),
            reference,
            auth,
            options,
        }
    }

    fn report(&self, event: &Event) {
        if let Some(progress) = &self.options.progress {
            progress(event);
        }
    }

    /// Runs one registry call with retries; maps the final error.
    async fn call<T, Fut>(&self, op: impl FnMut() -> Fut) -> Result<T, RegistryError>
    where
        Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
    {
        let mut retries = 0;
        let on_retry = |attempt, delay, err: &OciDistributionError| {
            retries = attempt;
            self.report(&Event::Retry {
                attempt,
                delay,
                error: chain(err),
            });
        };
        let result = retry::retry(self.options.retry, classify, on_retry, op).await;
        result.map_err(|err| self.failure(&err, retries))
    }

    fn failure(&self, err: &OciDistributionError, retries: u32) -> RegistryError {
        if let Some(reason) = bounded::refused(err) {
            return self.refused(reason.clone());
        }
        let registry = self.reference.registry().to_owned();
        match classify(err) {
            Class::Unauthorized => match &self.options.credentials {
                Some(c) => RegistryError::AuthFailed {
                    registry,
                    username: c.username.clone(),
                },
                None => RegistryError::AuthRequired { registry },
            },
            Class::Forbidden => RegistryError::Forbidden {
                registry,
                reference: self.reference.to_string(),
            },
            Class::NotFound => RegistryError::NotFound {
                registry,
                reference: self.reference.to_string(),
            },
            Class::Transient | Class::Fatal => RegistryError::Failed {
                registry,
                message: chain(err),
                retries,
            },
        }
    }

    fn refused(&self, reason: Refused) -> RegistryError {
        RegistryError::Refused {
            registry: self.reference.registry().to_owned(),
            reason,
        }
    }

    async fn authenticate(&self, operation: RegistryOperation) -> Result<(), RegistryError> {
        let (client, target, auth) = (&self.client, &self.target, &self.auth);
        if let Some(token) = self.call(|| client.auth(target, auth, operation)).await? {
            let _ = self.token.set(token);
        }
        Ok(())
    }

    /// A blob, verified against its descriptor: size bounded before the request, Content-Length
    /// checked before the body, the body cut off at the declared size, the digest checked at
    /// its end (by `oci-client`'s verifying stream).
    async fn blob(&self, desc: &Descriptor) -> Result<Vec<u8>, RegistryError> {
        let (client, target) = (&self.client, &self.target);
        let what = format!("blob {}", desc.digest);
        bounded::check_declared(&what, desc.size).map_err(|r| self.refused(r))?;
        let (digest, size, what) = (desc.digest.as_str(), desc.size, what.as_str());
        let bytes = self
            .call(|| async move {
                let mut stream = client.pull_blob_stream(target, digest).await?;
                if let Some(length) = stream.content_length.filter(|n| *n != size) {
                    let what = what.to_owned();
                    let expected = size;
                    return Err(Refused::LengthMismatch {
                        what,
                        length,
                        expected,
                    }
                    .into());
                }
                let mut bytes = Vec::with_capacity(size.min(PREALLOCATE_MAX) as usize);
                while let Some(chunk) = stream.next().await {
                    let bound = "its descriptor declares";
                    bounded::append(&mut bytes, &chunk?, size, what, bound)?;
                }
                Ok(bytes)
            })
            .await?;
        self.report(&Event::BlobPulled {
            digest: digest.to_owned(),
            size: bytes.len() as u64,
        });
        Ok(bytes)
    }

    async fn manifest(&self, target: &oci_client::Reference) -> Result<Blob, RegistryError> {
        let scheme = if self.options.insecure {
            "http"
        } else {
            "https"
        };
        let url = format!(
            "{scheme}://{}/v2/{}/manifests/{}",
            target.resolve_registry(),
            target.repository(),
            target
                .digest()
                .or(target.tag())
                .unwrap_or(crate::reference::DEFAULT_TAG),
        );
        let what = format!("manifest {}", self.reference);
        let request = || {
            let request = self
                .http
                .get(&url)
                .header(http::header::ACCEPT, ACCEPTED.join(", "));
            match (self.token.get(), &self.options.credentials) {
                (Some(token), _) => request.bearer_auth(token),
                (None, Some(c)) => request.basic_auth(&c.username, Some(&c.password)),
                (None, None) => request,
            }
        };
        let (bytes, digest) = self
            .call(|| bounded::manifest(request(), &what, target.digest()))
            .await?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Kind {
            media_type: Option<String>,
        }
        let kind: Option<Kind> = serde_json::from_slice(&bytes).ok();
        let media_type = kind
            .and_then(|k| k.media_type)
            .unwrap_or_else(|| MEDIA_OCI_MANIFEST.to_owned());
        Ok(Blob {
            media_type,
            digest,
            bytes,
        })
    }
}

pub(super) async fn push(
    image: &Image,
    reference: &Reference,
    options: &Options,
) -> Result<Pushed, RegistryError> {
    let session = Session::new(reference, options);
    session.authenticate(RegistryOperation::Push).await?;
    let (client, target) = (&session.client, &session.target);
    let (mut uploaded, mut skipped) = (0, 0);
    for blob in image.layers.iter().chain([&image.config]) {
        let size = blob.bytes.len() as u64;
        let digest = blob.digest.as_str();
        if session.call(|| client.blob_exists(target, digest)).await? {
            skipped += 1;
            session.report(&Event::BlobExists {
                digest: digest.to_owned(),
                size,
            });
            continue;
        }
        session
            .call(|| client.push_blob(target, blob.bytes.clone(), digest))
            .await?;
        uploaded += 1;
        session.report(&Event::BlobPushed {
            digest: digest.to_owned(),
            size,
        });
    }
    let content_type = http::HeaderValue::from_str(&image.manifest.media_type)
        .unwrap_or_else(|_| http::HeaderValue::from_static(MEDIA_OCI_MANIFEST));
    session
        .call(|| {
            client.push_manifest_raw(target, image.manifest.bytes.clone(), content_type.clone())
        })
        .await?;
    session.report(&Event::Manifest {
        digest: image.manifest.digest.clone(),
    });
    Ok(Pushed {
        manifest_digest: image.manifest.digest.clone(),
        uploaded,
        skipped,
    })
}

pub(super) async fn pull(reference: &Reference, options: &Options) -> Result<Image, RegistryError> {
    let session = Session::new(reference, options);
    session.authenticate(RegistryOperation::Pull).await?;
    let mut manifest = session.manifest(&session.target).await?;
    let mut platform = None;
    if is_index(&manifest.media_type) {
        let index: IndexDoc = parse(reference, &manifest.bytes)?;
        let wasm: Vec<_> = index
            .manifests
            .iter()
            .filter(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.architecture == "wasm")
            })
            .cloned()
            .collect();
        let chosen = match (index.manifests.as_slice(), wasm.as_slice()) {
            ([only], _) | (_, [only]) => only.clone(),
            _ => {
                let platforms: Vec<String> = index
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref())
                    .map(|p| format!("{}/{}", p.os, p.architecture))
                    .collect();
                return Err(RegistryError::Index {
                    reference: reference.to_string(),
                    platforms: platforms.join(", "),
                });
            }
        };
        platform = chosen.platform.map(|p| Platform {
            os: p.os,
            architecture: p.architecture,
            variant: p.variant,
        });
        let by_digest = oci_client::Reference::with_digest(
            session.target.registry().to_owned(),
            session.target.repository().to_owned(),
            chosen.digest,
        );
        manifest = session.manifest(&by_digest).await?;
    }
    session.report(&Event::Manifest {
        digest: manifest.digest.clone(),
    });
    let doc: ManifestDoc = parse(reference, &manifest.bytes)?;
    let config = Blob {
        media_type: doc.config.media_type.clone(),
        digest: doc.config.digest.clone(),
        bytes: session.blob(&doc.config).await?,
    };
    let mut layers = Vec::new();
    for layer in &doc.layers {
        layers.push(Blob {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            bytes: session.blob(layer).await?,
        });
    }
    let platform = platform.or_else(|| crate::archive::config_platform(&config.bytes));
    Ok(Image {
        name: Some(reference.clone()),
        platform,
        manifest,
        doc,
        config,
        layers,
    })
}

fn parse<T: serde::de::DeserializeOwned>(
    reference: &Reference,
    bytes: &[u8],
) -> Result<T, RegistryError> {
    serde_json::from_slice(bytes).map_err(|source| RegistryError::BadManifest {
        reference: reference.to_string(),
        source,
    })
}

fn oci_reference(reference: &Reference) -> oci_client::Reference {
    let (registry, repository) = (
        reference.registry().to_owned(),
        reference.repository().to_owned(),
    );
    match (reference.tag(), reference.digest()) {
        (Some(tag), Some(digest)) => oci_client::Reference::with_tag_and_digest(
            registry,
            repository,
            tag.to_owned(),
            digest.to_owned(),
        ),
        (_, Some(digest)) => {
            oci_client::Reference::with_digest(registry, repository, digest.to_owned())
        }
        (tag, None) => oci_client::Reference::with_tag(
            registry,
            repository,
            tag.unwrap_or(crate::reference::DEFAULT_TAG).to_owned(),
        ),
    }
}

/// Classifies an `oci-client` error (see [`retry`] for the rules).
pub(crate) fn classify(err: &OciDistributionError) -> Class {
    match err {
        OciDistributionError::ServerError { code, .. } => classify_status(*code),
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => Class::Unauthorized,
        OciDistributionError::ImageManifestNotFoundError(_) => Class::NotFound,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .map(|e| classify_code(&code_name(&e.code)))
            .find(|c| *c != Class::Fatal)
            .unwrap_or(Class::Fatal),
        OciDistributionError::IoError(e) => classify_io(e.kind()),
        OciDistributionError::RequestError(e) => match e.status() {
            Some(status) => classify_status(status.as_u16()),
            None if e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() => {
                Class::Transient
            }
            None => io_kind_in(e).map_or(Class::Fatal, classify_io),
        },
        _ => Class::Fatal,
    }
}

fn code_name(code: &OciErrorCode) -> String {
    match code {
        OciErrorCode::Other(name) => name.clone(),
        known => serde_json::to_value(known)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
    }
}

fn io_kind_in(err: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut source = err.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = e.source();
    }
    None
}

/// The error and its causes on one line (reqwest's top-level message alone
/// is "error sending request", which says nothing).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = e.source();
    }
    message
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed setup step should just fail the test
mod tests;
