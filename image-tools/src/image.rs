//! An image held in memory: its manifest (raw bytes, so digests survive a
//! round trip through a file or a registry), its config and layers, and the
//! name and platform an OCI index records next to it. Shared by `build`,
//! the readers in [`crate::archive`], the writers in [`crate::output`] and
//! the registry client.
//!
//! The document types here are deliberately loose (`String` media types,
//! unknown fields ignored) so that images made by other tools read fine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::layer::sha256_hex;
use crate::layout::canonical_json;
use crate::reference::Reference;
use crate::spec::Platform;

/// OCI image manifest.
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image config.
pub const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config.
pub const MEDIA_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Config of the CNCF wasm OCI artifact.
pub const MEDIA_WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The wasm artifact's layer: the raw `.wasm` bytes.
pub const MEDIA_WASM_LAYER: &str = "application/wasm";
/// Layer media types whose blob is a raw `.wasm`, not a tar: what `--wasm-layer` accepts and
/// what the shim reads from containerd's content store.
pub const WASM_LAYER_TYPES: [&str; 3] = [
    MEDIA_WASM_LAYER,
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
];
/// Uncompressed OCI layer.
pub const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Gzip'd OCI layer.
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Gzip'd Docker layer.
pub const MEDIA_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Index annotation containerd (and Docker's containerd store) name an
/// imported image after.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI annotation for the tag of a manifest in a layout.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// OCI annotation naming a layer's file (ORAS writes the file under it).
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the content.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Annotations, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Platform (index entries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformDoc>,
}

/// A platform as written in an index or config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformDoc {
    /// `wasm`, `amd64`...
    pub architecture: String,
    /// `wasip1`, `linux`...
    pub os: String,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestDoc {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// OCI 1.1 artifact type (only needed when the config is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
    /// Manifest annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index (or Docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexDoc {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests it names.
    pub manifests: Vec<Descriptor>,
}

/// A blob and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Its media type.
    pub media_type: String,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
    /// The content.
    pub bytes: Vec<u8>,
}

impl Blob {
    /// A blob whose digest is computed from `bytes`.
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: format!("sha256:{}", sha256_hex(&bytes)),
            bytes,
        }
    }

    /// The hex part of the digest.
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }

    /// A descriptor for this blob.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
            annotations: None,
            platform: None,
        }
    }
}

/// Runnable image or wasm artifact, told apart by the config media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Form {
    /// A container image: an image config and filesystem layers.
    Image,
    /// The CNCF wasm OCI artifact: a wasm config and one `application/wasm` layer.
    Artifact,
}

/// One image: manifest, config and layers, all in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The name to record in an index (`io.containerd.image.name`).
    pub name: Option<Reference>,
    /// The platform to record in an index.
    pub platform: Option<Platform>,
    /// The manifest, byte for byte.
    pub manifest: Blob,
    /// The parsed manifest (consistent with `manifest`).
    pub doc: ManifestDoc,
    /// The config blob.
    pub config: Blob,
    /// The layer blobs, in manifest order.
    pub layers: Vec<Blob>,
}

impl Image {
    /// Builds the manifest for `config` and `layers` (with `layer_titles`
    /// as per-layer annotations) and returns the image.
    ///
    /// # Errors
    /// Only if JSON encoding fails, which cannot happen for these types.
    pub fn assemble(
        config: Blob,
        layers: Vec<(Blob, Option<BTreeMap<String, String>>)>,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Self, serde_json::Error> {
        let doc = ManifestDoc {
            schema_version: 2,
            media_type: Some(MEDIA_OCI_MANIFEST.to_owned()),
            artifact_type: None,
            config: config.descriptor(),
            layers: layers
                .iter()
                .map(|(blob, annotations)| Descriptor {
                    annotations: annotations.clone(),
                    ..blob.descriptor()
                })
                .collect(),
            annotations: (!annotations.is_empty()).then(|| annotations.clone()),
        };
        let manifest = Blob::new(MEDIA_OCI_MANIFEST, canonical_json(&doc)?);
        Ok(Self {
            name: None,
            platform: None,
            manifest,
            doc,
            config,
            layers: layers.into_iter().map(|(blob, _)| blob).collect(),
        })
    }

    /// Image or artifact.
    pub fn form(&self) -> Form {
        if self.config.media_type == MEDIA_WASM_CONFIG {
            Form::Artifact
        } else {
            Form::Image
        }
    }

    /// Every blob: layers, config, manifest (upload order for a registry).
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        self.layers.iter().chain([&self.config, &self.manifest])
    }

    /// The `index.json` of a layout holding just this image: the manifest
    /// descriptor with its platform and the name annotations containerd
    /// and `docker load` (containerd store) use.
    ///
    /// # Errors
    /// Only if JSON encoding fails, which cannot happen for these types.
    pub fn index_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut descriptor = self.manifest.descriptor();
        if let Some(name) = &self.name {
            let mut annotations = BTreeMap::new();
            annotations.insert(ANNOTATION_IMAGE_NAME.to_owned(), name.to_string());
            if let Some(tag) = name.tag() {
                annotations.insert(ANNOTATION_REF_NAME.to_owned(), tag.to_owned());
            }
            descriptor.annotations = Some(annotations);
        }
        descriptor.platform = self.platform.as_ref().map(|p| PlatformDoc {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            variant: p.variant.clone(),
        });
        canonical_json(&IndexDoc {
            schema_version: 2,
            media_type: Some(MEDIA_OCI_INDEX.to_owned()),
            manifests: vec![descriptor],
        })
    }
}

/// True for manifest media types that name an index rather than an image.
pub fn is_index(media_type: &str) -> bool {
    media_type == MEDIA_OCI_INDEX || media_type == MEDIA_DOCKER_LIST
}

/// True for the raw wasm layer media types.
pub fn is_wasm_layer(media_type: &str) -> bool {
    WASM_LAYER_TYPES.contains(&media_type)
}

/// True for gzip'd layer media types.
pub fn is_gzip_layer(media_type: &str) -> bool {
    media_type.ends_with("+gzip") || media_type.ends_with(".tar.gzip")
}
