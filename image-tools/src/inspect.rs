//! `wasmpod image inspect`: one report for a bare `.wasm`, an image (the
//! wasm is found at the config's entrypoint in the layers) or a wasm
//! artifact (the wasm is its layer). [`Inspection`] is the `--json` output;
//! [`render`] is the text form. Pure apart from decompressing layers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read};
use std::path::Path;

use flate2::read::GzDecoder;
use serde::Serialize;

use crate::describe::{describe, Interface, WasmInfo};
use crate::image::{is_wasm_layer, Blob, Form, Image, ANNOTATION_TITLE};
use crate::wasm::WasmError;

/// The `--json` output of `wasmpod image inspect`. Field names are stable;
/// optional fields are `null` when they do not apply (e.g. `manifest` for a
/// bare `.wasm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inspection {
    /// What was inspected, as given: a file path or an image reference.
    pub source: String,
    /// `"wasm"` (a bare binary), `"image"` (runnable OCI image) or
    /// `"artifact"` (CNCF wasm OCI artifact).
    pub form: &'static str,
    /// The image name recorded in the archive, or the reference pulled.
    pub name: Option<String>,
    /// `os/arch[/variant]` from the index or the config.
    pub platform: Option<String>,
    /// The manifest blob.
    pub manifest: Option<BlobInfo>,
    /// The config blob.
    pub config: Option<BlobInfo>,
    /// The layer blobs, in manifest order.
    pub layers: Vec<BlobInfo>,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
    /// The config's `created` time.
    pub created: Option<String>,
    /// The config's `author`.
    pub author: Option<String>,
    /// Where the wasm was found: its path in an image's filesystem, the
    /// artifact layer's digest, or the file inspected.
    pub wasm_path: Option<String>,
    /// The wasm itself; `null` for an image with no wasm entrypoint.
    pub wasm: Option<WasmInfo>,
}

/// A blob's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobInfo {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Media type.
    pub media_type: String,
}

impl From<&Blob> for BlobInfo {
    fn from(blob: &Blob) -> Self {
        Self {
            digest: blob.digest.clone(),
            size: blob.bytes.len() as u64,
            media_type: blob.media_type.clone(),
        }
    }
}

/// Why an image could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The wasm (file, entrypoint or artifact layer) is not valid.
    #[error(transparent)]
    Wasm(#[from] WasmError),
    /// A layer cannot be unpacked to look for the entrypoint.
    #[error("cannot read layer {digest}: {source}")]
    Layer {
        /// The layer's digest.
        digest: String,
        /// The underlying error.
        source: io::Error,
    },
    /// An artifact without exactly one layer.
    #[error("a wasm artifact must have exactly one layer, this one has {0}")]
    ArtifactLayers(usize),
}

/// Inspects a bare wasm binary read from `source`.
///
/// # Errors
/// [`InspectError::Wasm`] if it does not validate.
pub fn inspect_wasm(source: &str, bytes: &[u8]) -> Result<Inspection, InspectError> {
    let info = describe(bytes, Path::new(source))?;
    Ok(Inspection {
        source: source.to_owned(),
        form: "wasm",
        name: None,
        platform: Some(format!("{}/wasm", info.kind.default_os())),
        manifest: None,
        config: None,
        layers: Vec::new(),
        annotations: BTreeMap::new(),
        created: None,
        author: None,
        wasm_path: Some(source.to_owned()),
        wasm: Some(info),
    })
}

/// Inspects an image or artifact; `source` is how the user named it.
///
/// # Errors
/// [`InspectError`] if the wasm inside does not validate or a layer cannot
/// be unpacked.
pub fn inspect_image(source: &str, image: &Image) -> Result<Inspection, InspectError> {
    #[derive(serde::Deserialize, Default)]
    struct Config {
        created: Option<String>,
        author: Option<String>,
        #[serde(default)]
        config: Option<RunConfig>,
    }
    #[derive(serde::Deserialize, Default)]
    struct RunConfig {
        #[serde(rename = "Entrypoint")]
        entrypoint: Option<Vec<String>>,
    }
    let config: Config = serde_json::from_slice(&image.config.bytes).unwrap_or_default();
    let (form, wasm_path, wasm) = match image.form() {
        Form::Artifact => {
            let [layer] = image.layers.as_slice() else {
                return Err(InspectError::ArtifactLayers(image.layers.len()));
            };
            let path = format!("{source}@{}", layer.digest);
            let info = describe(&layer.bytes, Path::new(&path))?;
            ("artifact", Some(layer.digest.clone()), Some(info))
        }
        Form::Image => {
            let entrypoint = config
                .config
                .and_then(|c| c.entrypoint)
                .and_then(|e| e.into_iter().next());
            match entrypoint {
                Some(entry) => match wasm_layer_for(image, &entry) {
                    Some(layer) => {
                        let path = format!("{source}@{}", layer.digest);
                        let info = describe(&layer.bytes, Path::new(&path))?;
                        ("image", Some(entry), Some(info))
                    }
                    None => match find_file(image, &entry)? {
                        Some(bytes) if bytes.starts_with(b"\0asm") => {
                            let path = format!("{source}:{entry}");
                            let info = describe(&bytes, Path::new(&path))?;
                            ("image", Some(entry), Some(info))
                        }
                        _ => ("image", None, None),
                    },
                },
                None => ("image", None, None),
            }
        }
    };
    Ok(Inspection {
        source: source.to_owned(),
        form,
        name: image.name.as_ref().map(ToString::to_string),
        platform: image.platform.as_ref().map(ToString::to_string),
        manifest: Some((&image.manifest).into()),
        config: Some((&image.config).into()),
        layers: image.layers.iter().map(BlobInfo::from).collect(),
        annotations: image.doc.annotations.clone().unwrap_or_default(),
        created: config.created,
        author: config.author.filter(|a| !a.is_empty()),
        wasm_path,
        wasm,
    })
}

/// The raw wasm layer the shim would run for `entrypoint`: the only one, or the one titled
/// with the entrypoint's file name.
fn wasm_layer_for<'a>(image: &'a Image, entrypoint: &str) -> Option<&'a Blob> {
    let raw: Vec<(usize, &Blob)> = image
        .layers
        .iter()
        .enumerate()
        .filter(|(_, l)| is_wasm_layer(&l.media_type))
        .collect();
    if let [(_, only)] = raw.as_slice() {
        return Some(only);
    }
    let file_name = entrypoint.rsplit('/').next().unwrap_or(entrypoint);
    raw.into_iter().map(|(_, l)| l).find(|l| {
        let title = image.doc.layers.iter().find(|d| d.digest == l.digest);
        title
            .and_then(|d| d.annotations.as_ref())
            .and_then(|a| a.get(ANNOTATION_TITLE))
            .is_some_and(|t| t == entrypoint || t == file_name)
    })
}

/// The content of `path` in the image's filesystem (later layers win);
/// whiteouts are not followed, which is fine for finding an entrypoint.
fn find_file(image: &Image, path: &str) -> Result<Option<Vec<u8>>, InspectError> {
    let wanted = path.trim_start_matches('/');
    let mut found = None;
    for layer in image
        .layers
        .iter()
        .filter(|l| !is_wasm_layer(&l.media_type))
    {
        let fail = |source| InspectError::Layer {
            digest: layer.digest.clone(),
            source,
        };
        let reader: Box<dyn Read> = if layer.bytes.starts_with(&[0x1f, 0x8b]) {
            Box::new(GzDecoder::new(layer.bytes.as_slice()))
        } else {
            Box::new(layer.bytes.as_slice())
        };
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(fail)? {
            let mut entry = entry.map_err(fail)?;
            let name = entry.path().map_err(fail)?.display().to_string();
            if name.trim_start_matches("./").trim_start_matches('/') == wanted
                && entry.header().entry_type().is_file()
            {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(fail)?;
                found = Some(bytes);
            }
        }
    }
    Ok(found)
}

/// The human-readable report.
pub fn render(report: &Inspection) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(out, "{label:<12}{value}");
    };
    line("source:", &report.source);
    line("form:", report.form);
    if let Some(name) = &report.name {
        line("name:", name);
    }
    if let Some(platform) = &report.platform {
        line("platform:", platform);
    }
    let blob = |b: &BlobInfo| format!("{} {} ({} bytes)", b.digest, b.media_type, b.size);
    if let Some(manifest) = &report.manifest {
        line("manifest:", &blob(manifest));
    }
    if let Some(config) = &report.config {
        line("config:", &blob(config));
    }
    for layer in &report.layers {
        line("layer:", &blob(layer));
    }
    for (key, value) in &report.annotations {
        line("annotation:", &format!("{key}={value}"));
    }
    if let Some(created) = &report.created {
        line("created:", created);
    }
    if let Some(author) = &report.author {
        line("author:", author);
    }
    let Some(wasm) = &report.wasm else {
        line("wasm:", "none (no wasm entrypoint in this image)");
        return out;
    };
    if let Some(path) = &report.wasm_path {
        line("wasm:", path);
    }
    line("kind:", &wasm.kind.to_string());
    line("wasi:", wasm.wasi.as_str());
    line("size:", &format!("{} bytes", wasm.size));
    line("digest:", &wasm.digest);
    if let Some(world) = &wasm.world {
        line("world:", world);
    }
    let _ = writeln!(out, "imports (what the host must provide):");
    groups(&mut out, &wasm.imports);
    let _ = writeln!(out, "exports:");
    groups(&mut out, &wasm.exports);
    out
}

fn groups(out: &mut String, groups: &[Interface]) {
    if groups.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for group in groups {
        let items: Vec<String> = group
            .items
            .iter()
            .map(|i| match i.kind {
                "func" => i.name.clone(),
                kind => format!("{} ({kind})", i.name),
            })
            .collect();
        let name = if group.name.is_empty() {
            "(top level)"
        } else {
            &group.name
        };
        let items = if items.is_empty() {
            "(types only)".to_owned()
        } else {
            items.join(", ")
        };
        let _ = writeln!(out, "  {name}: {items}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed setup step should just fail the test
mod tests;
