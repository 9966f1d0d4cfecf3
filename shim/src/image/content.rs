//! Reads a container's image through containerd's gRPC API: containers → images → content.
//!
//! The shim's callers are blocking threads (Create and Exec run off the async workers), so the
//! public call is synchronous and drives the gRPC future on the caller's thread.

use std::future::Future;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{GetContainerRequest, GetImageRequest, ReadContentRequest};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request, Status};
use log::debug;
use sha2::{Digest as _, Sha256};

use super::manifest::{self, Target};
use super::{ImageError, WasmLayer};

/// The containerd that created this shim's containers, and their namespace.
#[derive(Debug, Clone)]
pub struct ImageSource {
    address: String,
    namespace: String,
}

impl ImageSource {
    /// containerd at `address` (its gRPC socket), containers of `namespace`.
    pub fn new(address: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            namespace: namespace.into(),
        }
    }

    /// The wasm layers of the image container `id` was created from, or of `image_hint` when
    /// the container record names no image. None when there is no image to look at (a
    /// container made without one, an image since removed, or no wasm layers in it).
    ///
    /// # Errors
    /// containerd cannot be reached, or a layer cannot be read or fails its digest.
    pub fn wasm_layers(
        &self,
        id: &str,
        image_hint: Option<&str>,
    ) -> Result<Vec<WasmLayer>, ImageError> {
        block_on(self.fetch(id, image_hint))
    }

    async fn fetch(&self, id: &str, hint: Option<&str>) -> Result<Vec<WasmLayer>, ImageError> {
        let channel = containerd_client::connect(&self.address)
            .await
            .map_err(|e| ImageError::Connect {
                address: self.address.clone(),
                reason: e.to_string(),
            })?;
        let Some(image) = self.image_name(&channel, id, hint).await? else {
            debug!("{id}: no image recorded for the container; no wasm layers");
            return Ok(Vec::new());
        };
        let mut images = ImagesClient::new(channel.clone());
        let request = self.request(GetImageRequest {
            name: image.clone(),
        });
        let target = match images.get(request).await {
            Ok(r) => r.into_inner().image.and_then(|i| i.target),
            Err(s) if s.code() == Code::NotFound => None,
            Err(s) => return Err(call_failed(format!("images get {image}"), &s)),
        };
        let Some(target) = target else {
            debug!("{id}: image {image} is not in containerd; no wasm layers");
            return Ok(Vec::new());
        };
        let manifest_digest = match manifest::target_kind(&target.media_type) {
            Target::Manifest => target.digest,
            Target::Index => {
                let index = self.read(&channel, &target.digest, "index").await?;
                match manifest::pick_manifest(&index, host_arch())? {
                    Some(d) => d.digest().to_string(),
                    None => return Ok(Vec::new()),
                }
            }
            Target::Other => return Ok(Vec::new()),
        };
        let manifest_json = self.read(&channel, &manifest_digest, "manifest").await?;
        let mut layers = Vec::new();
        for layer in manifest::wasm_layers(&manifest_json)? {
            let digest = layer.digest().to_string();
            let bytes = self.read(&channel, &digest, "wasm layer").await?;
            verify(&digest, &bytes)?;
            layers.push(WasmLayer {
                media_type: layer.media_type().to_string(),
                title: manifest::title(&layer),
                digest,
                bytes,
            });
        }
        debug!("{id}: image {image} has wasm layers {layers:?}");
        Ok(layers)
    }

    /// The container record's image, else the hint.
    async fn image_name(
        &self,
        channel: &Channel,
        id: &str,
        hint: Option<&str>,
    ) -> Result<Option<String>, ImageError> {
        let mut containers = ContainersClient::new(channel.clone());
        let request = self.request(GetContainerRequest { id: id.to_owned() });
        let recorded = match containers.get(request).await {
            Ok(r) => r.into_inner().container.map(|c| c.image),
            Err(s) if s.code() == Code::NotFound => None,
            Err(s) => return Err(call_failed(format!("containers get {id}"), &s)),
        };
        Ok(recorded
            .filter(|name| !name.is_empty())
            .or_else(|| hint.filter(|h| !h.is_empty()).map(str::to_owned)))
    }

    async fn read(
        &self,
        channel: &Channel,
        digest: &str,
        what: &'static str,
    ) -> Result<Vec<u8>, ImageError> {
        let failed = |s: Status| call_failed(format!("reading the {what} {digest}"), &s);
        let mut content = ContentClient::new(channel.clone());
        let request = self.request(ReadContentRequest {
            digest: digest.to_owned(),
            offset: 0,
            size: 0,
        });
        let mut stream = content.read(request).await.map_err(failed)?.into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(failed)? {
            bytes.extend_from_slice(&chunk.data);
        }
        Ok(bytes)
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        // containerd scopes every object by this header.
        if let Ok(ns) = self.namespace.parse() {
            request.metadata_mut().insert("containerd-namespace", ns);
        }
        request
    }
}

fn call_failed(what: String, status: &Status) -> ImageError {
    ImageError::Containerd {
        what,
        reason: status.message().to_owned(),
    }
}

fn verify(digest: &str, bytes: &[u8]) -> Result<(), ImageError> {
    let actual = format!("sha256:{:x}", Sha256::digest(bytes));
    // Only sha256 is checked: it is what every registry and containerd use for layers.
    if digest.starts_with("sha256:") && digest != actual {
        return Err(ImageError::DigestMismatch {
            digest: digest.to_owned(),
            actual,
        });
    }
    Ok(())
}

/// The OCI name of the host's architecture.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Runs `future` to completion on this (blocking) thread: on the shim's runtime when there is
/// one, else on a small runtime of its own (tests, tools).
fn block_on<F: Future>(future: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(future),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread tokio runtime")
            .block_on(future),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_must_match_its_sha256() {
        let good = format!("sha256:{:x}", Sha256::digest(b"\0asm"));
        assert!(verify(&good, b"\0asm").is_ok());
        let err = verify(&good, b"\0asx").unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    }

    #[test]
    fn an_unreachable_containerd_is_a_connect_error_naming_the_socket() {
        let source = ImageSource::new("/nonexistent/containerd.sock", "default");
        let err = source.wasm_layers("c1", None).unwrap_err();
        assert!(matches!(err, ImageError::Connect { .. }), "{err}");
        assert!(
            err.to_string().contains("/nonexistent/containerd.sock"),
            "{err}"
        );
    }
}
