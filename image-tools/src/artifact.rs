//! The CNCF wasm OCI artifact (TAG Runtime's "Wasm OCI Artifact layout"):
//! an OCI image manifest whose config has media type
//! `application/vnd.wasm.config.v0+json` and whose single layer is the raw
//! `.wasm` (`application/wasm`, not tarred).
//!
//! The manifest carries no `artifactType`: OCI 1.1 requires one only when
//! the config is the empty descriptor; here the config media type already
//! names the artifact, as in the format's reference implementation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::build::WASM_ARCH;
use crate::describe::{self, ComponentSummary, WasmInfo};
use crate::error::BuildError;
use crate::image::{Blob, Image, ANNOTATION_TITLE, MEDIA_WASM_CONFIG, MEDIA_WASM_LAYER};
use crate::layout::canonical_json;
use crate::spec::{rfc3339, ImageSpec, Platform};

/// The artifact's config document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    /// RFC 3339 creation time (`SOURCE_DATE_EPOCH`).
    pub created: String,
    /// Who made it (`--author`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Always `wasm`.
    pub architecture: String,
    /// `wasip1` for modules, `wasip2` for components.
    pub os: String,
    /// The layer digests, in manifest order (makes the config unique per
    /// content, as the format asks).
    pub layer_digests: Vec<String>,
    /// For components: imported and exported interface names and the world.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<ComponentSummary>,
}

/// Builds the artifact for `spec` (which must name a `.wasm`).
///
/// # Errors
/// [`BuildError::Unsupported`] for options an artifact cannot carry or a
/// non-wasm platform, [`BuildError::Wasm`] for a missing or invalid file.
pub fn assemble(spec: &ImageSpec) -> Result<(Image, WasmInfo), BuildError> {
    let Some(path) = &spec.wasm else {
        return Err(unsupported("--artifact needs a .wasm file"));
    };
    if !spec.env.is_empty()
        || !spec.args.is_empty()
        || !spec.dirs.is_empty()
        || !spec.labels.is_empty()
        || spec.entrypoint.is_some()
    {
        return Err(unsupported(
            "--artifact stores only the .wasm: --env, --arg, --dir, --label and --entrypoint \
             apply to images (use --annotation for metadata)",
        ));
    }
    let binary = crate::wasm::load(path)?;
    let info = describe::describe(&binary.bytes, path)?;
    let platform = match &spec.platform {
        None => Platform::new(binary.kind.default_os(), WASM_ARCH),
        Some(p) if p.architecture == WASM_ARCH && matches!(p.os.as_str(), "wasip1" | "wasip2") => {
            p.clone()
        }
        Some(p) => {
            return Err(unsupported(&format!(
                "an artifact's platform must be wasip1/wasm or wasip2/wasm, not {p}"
            )))
        }
    };
    let layer = Blob::new(MEDIA_WASM_LAYER, binary.bytes);
    let config = WasmConfig {
        created: rfc3339(spec.epoch),
        author: spec.author.clone(),
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        layer_digests: vec![layer.digest.clone()],
        component: info.component_summary(),
    };
    let config_json = canonical_json(&config).map_err(|source| BuildError::Encode {
        what: "wasm config",
        source,
    })?;
    // The title lets ORAS-style clients save the layer under its file name.
    let title = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .map(|name| BTreeMap::from([(ANNOTATION_TITLE.to_owned(), name)]));
    let mut image = Image::assemble(
        Blob::new(MEDIA_WASM_CONFIG, config_json),
        vec![(layer, title)],
        &spec.annotations,
    )
    .map_err(|source| BuildError::Encode {
        what: "artifact manifest",
        source,
    })?;
    image.name = Some(spec.reference.clone());
    image.platform = Some(platform);
    Ok((image, info))
}

fn unsupported(message: &str) -> BuildError {
    BuildError::Unsupported(message.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed setup step should just fail the test
mod tests;
