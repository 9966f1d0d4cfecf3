//! PURE: which manifest of an image to read, which of its layers hold wasm, and which of those
//! a process runs. No I/O; [`super::content`] fetches the documents and blobs.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use super::{ImageError, WasmLayer};

/// Layer media types whose blob is a raw `.wasm` (not a tar): the CNCF wasm artifact's
/// `application/wasm`, the older `vnd.wasm.content` type, and the Bytecode Alliance's component
/// layer type.
pub const WASM_LAYER_TYPES: [&str; 3] = [
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
];

/// The annotation that names a layer's file (OCI `org.opencontainers.image.title`).
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// Whether a layer of this media type is a raw wasm binary.
pub fn is_wasm_layer(media_type: &str) -> bool {
    WASM_LAYER_TYPES.contains(&media_type)
}

/// What an image's target descriptor points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An image manifest (single platform).
    Manifest,
    /// An index (or Docker manifest list): a manifest must be picked from it.
    Index,
    /// Anything else (a signature, an unknown artifact): no wasm layers to find.
    Other,
}

/// Classifies a target by media type.
pub fn target_kind(media_type: &str) -> Target {
    match media_type {
        "application/vnd.oci.image.manifest.v1+json"
        | "application/vnd.docker.distribution.manifest.v2+json" => Target::Manifest,
        "application/vnd.oci.image.index.v1+json"
        | "application/vnd.docker.distribution.manifest.list.v2+json" => Target::Index,
        _ => Target::Other,
    }
}

/// The manifest of an index that can carry wasm: a `wasm` architecture first (any `wasi*` or
/// `wasip*` os), else the host's Linux platform, else none.
pub fn pick_manifest(index_json: &[u8], host_arch: &str) -> Result<Option<Descriptor>, ImageError> {
    let index: ImageIndex = parse(index_json, "index")?;
    let platform_of = |d: &Descriptor| {
        d.platform()
            .as_ref()
            .map(|p| (p.os().to_string(), p.architecture().to_string()))
    };
    let wasm = index
        .manifests()
        .iter()
        .find(|d| platform_of(d).is_some_and(|(_, arch)| arch == "wasm"));
    let host = || {
        index
            .manifests()
            .iter()
            .find(|d| platform_of(d).is_some_and(|(os, arch)| os == "linux" && arch == host_arch))
    };
    Ok(wasm.or_else(host).cloned())
}

/// The wasm layers of a manifest, in manifest order.
pub fn wasm_layers(manifest_json: &[u8]) -> Result<Vec<Descriptor>, ImageError> {
    let manifest: ImageManifest = parse(manifest_json, "manifest")?;
    Ok(manifest
        .layers()
        .iter()
        .filter(|l| is_wasm_layer(&media_type_str(l.media_type())))
        .cloned()
        .collect())
}

/// A layer's file name, from its title annotation.
pub fn title(layer: &Descriptor) -> Option<String> {
    layer.annotations().as_ref()?.get(TITLE_ANNOTATION).cloned()
}

/// The layer a process runs, named by its `args[0]` (without any `#export`): the only layer, or
/// the one whose title is `args[0]` or its file name.
///
/// # Errors
/// [`ImageError::NoLayerFor`] when several layers exist and none has that title.
pub fn choose<'a>(layers: &'a [WasmLayer], program: &str) -> Result<&'a WasmLayer, ImageError> {
    if let [only] = layers {
        return Ok(only);
    }
    let file_name = program.rsplit('/').next().unwrap_or(program);
    layers
        .iter()
        .find(|l| {
            l.title
                .as_deref()
                .is_some_and(|t| t == program || t == file_name)
        })
        .ok_or_else(|| ImageError::NoLayerFor {
            program: program.to_owned(),
            titles: layers
                .iter()
                .map(|l| l.title.clone().unwrap_or_else(|| l.digest.clone()))
                .collect(),
        })
}

fn media_type_str(m: &MediaType) -> String {
    m.to_string()
}

fn parse<T: serde::de::DeserializeOwned>(json: &[u8], what: &'static str) -> Result<T, ImageError> {
    serde_json::from_slice(json).map_err(|e| ImageError::BadDocument {
        what,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
