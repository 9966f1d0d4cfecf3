//! Turns an [`ImageSpec`] into an image: one filesystem layer (and, with
//! `--wasm-layer`, the module as a raw wasm layer), its config and the
//! image manifest (or, with `--artifact`, the CNCF wasm artifact from
//! [`crate::artifact`]); then writes it in the chosen [`Format`]
//! (atomically, so a failed build leaves no output behind).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use oci_spec::image::{
    Arch, ConfigBuilder, HistoryBuilder, ImageConfigurationBuilder, Os, RootFsBuilder,
};

use crate::error::BuildError;
use crate::image::{
    is_wasm_layer, Blob, Form, Image, ANNOTATION_TITLE, MEDIA_LAYER_GZIP, MEDIA_OCI_CONFIG,
    WASM_LAYER_TYPES,
};
pub use crate::image::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use crate::layer::LayerTree;
use crate::layout::canonical_json;
use crate::output::{self, Format};
use crate::reference::Reference;
use crate::spec::{rfc3339, EnvVar, ImageSpec, Platform};
use crate::wasm::{self, WasmKind};

/// Where the WASM file goes in the image, and the default entrypoint.
pub const WASM_GUEST_PATH: &str = "/app.wasm";
/// `PATH` added unless `--env PATH=...` is given (Docker's default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Architecture of every WASM image.
pub const WASM_ARCH: &str = "wasm";
/// Recorded in the config history so `docker history` says what made it.
const CREATED_BY: &str = "wasmpod image build";

/// What a build produced, for printing and for later commands.
#[derive(Debug, Clone)]
pub struct Built {
    /// The full normalised name.
    pub reference: Reference,
    /// The image platform.
    pub platform: Platform,
    /// Module or component, for WASM images.
    pub wasm_kind: Option<WasmKind>,
    /// Runnable image or wasm artifact.
    pub form: Form,
    /// `sha256:...` of the image manifest (the image's identity).
    pub manifest_digest: String,
    /// `sha256:...` of the config (Docker's image ID).
    pub config_digest: String,
}

/// All documents and blobs of an image, in memory, ready to be written.
#[derive(Debug, Clone)]
pub struct Assembled {
    /// Summary of the image.
    pub built: Built,
    /// The image itself.
    pub image: Image,
    epoch: u64,
}

impl Assembled {
    /// Writes the OCI layout tar to `out` and returns it.
    ///
    /// # Errors
    /// Any I/O error from `out`.
    pub fn write_to<W: Write>(&self, out: W) -> std::io::Result<W> {
        output::oci_archive(&self.image, out, self.epoch)
    }

    /// Writes the image to `out` in `format`.
    ///
    /// # Errors
    /// [`BuildError::Output`] if it cannot be written in that format.
    pub fn write(&self, out: &Path, format: Format) -> Result<(), BuildError> {
        Ok(output::write(&self.image, format, out, self.epoch)?)
    }
}

/// Builds the image described by `spec` and writes it to `out`.
///
/// # Errors
/// Any [`BuildError`] from [`assemble`], or [`BuildError::Write`] if the
/// output cannot be written (no partial file is left behind).
pub fn build(spec: &ImageSpec, out: &Path) -> Result<Built, BuildError> {
    build_as(spec, out, Format::OciArchive)
}

/// Builds the image described by `spec` and writes it to `out` in `format`.
///
/// # Errors
/// As [`build`], plus [`BuildError::Output`] for a format the image cannot
/// take (an artifact as a docker-archive).
pub fn build_as(spec: &ImageSpec, out: &Path, format: Format) -> Result<Built, BuildError> {
    let assembled = assemble(spec)?;
    assembled.write(out, format)?;
    Ok(assembled.built)
}

/// Builds every document and blob of the image in memory.
///
/// # Errors
/// Bad inputs: a digest in the name, a missing or invalid WASM file,
/// missing options for a native image, unreadable or conflicting `--dir`s.
pub fn assemble(spec: &ImageSpec) -> Result<Assembled, BuildError> {
    let reference = spec.reference.clone();
    if reference.digest().is_some() {
        return Err(BuildError::DigestInName(reference.to_string()));
    }
    if spec.artifact {
        let (image, info) = crate::artifact::assemble(spec)?;
        return Ok(finish(spec, image, Some(info.kind)));
    }

    if let Some(media_type) = &spec.wasm_layer {
        if !is_wasm_layer(media_type) {
            return Err(BuildError::Unsupported(format!(
                "--wasm-layer {media_type:?} is not a wasm layer media type (expected one of: {})",
                WASM_LAYER_TYPES.join(", ")
            )));
        }
        if spec.wasm.is_none() {
            return Err(BuildError::Unsupported(
                "--wasm-layer needs a WASM file to put in the layer".into(),
            ));
        }
    }

    let mut tree = LayerTree::new();
    for mapping in &spec.dirs {
        tree.add_mapping(mapping)?;
    }
    let mut raw_layer = None;
    let (platform, wasm_kind, default_entrypoint) = match &spec.wasm {
        Some(path) => {
            let binary = wasm::load(path)?;
            let platform = spec
                .platform
                .clone()
                .unwrap_or_else(|| Platform::new(binary.kind.default_os(), WASM_ARCH));
            let entrypoint = match &spec.wasm_layer {
                // The raw layer is not unpacked into the rootfs: the shim finds it by title.
                Some(media_type) => {
                    let title = file_name(path);
                    let annotations =
                        BTreeMap::from([(ANNOTATION_TITLE.to_owned(), title.clone())]);
                    raw_layer = Some((Blob::new(media_type, binary.bytes), Some(annotations)));
                    title
                }
                None => {
                    // Added last so the module wins over a --dir file at the same path;
                    // 0755 because it is the entrypoint, as tools expect of one.
                    tree.add_bytes(guest_rel(WASM_GUEST_PATH), binary.bytes, 0o755)?;
                    WASM_GUEST_PATH.to_owned()
                }
            };
            (platform, Some(binary.kind), Some(entrypoint))
        }
        None => {
            if spec.entrypoint.is_none() {
                return Err(BuildError::NativeNeeds("--entrypoint"));
            }
            let platform = spec
                .platform
                .clone()
                .ok_or(BuildError::NativeNeeds("--platform (e.g. linux/amd64)"))?;
            if spec.dirs.is_empty() {
                return Err(BuildError::NativeNeeds("at least one --dir HOST:GUEST"));
            }
            (platform, None, None)
        }
    };
    let entrypoint = spec.entrypoint.clone().or(default_entrypoint);
    // A raw wasm layer alone needs no filesystem layer; anything else gets one tar.
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    if raw_layer.is_none() || !spec.dirs.is_empty() {
        let layer = tree.write(spec.epoch)?;
        diff_ids.push(format!("sha256:{}", layer.diff_id_hex));
        layers.push((Blob::new(MEDIA_LAYER_GZIP, layer.blob), None));
    }
    layers.extend(raw_layer);

    let config_json = config_json(spec, &platform, entrypoint, diff_ids)?;
    let mut image = Image::assemble(
        Blob::new(MEDIA_OCI_CONFIG, config_json),
        layers,
        &spec.annotations,
    )
    .map_err(|source| BuildError::Encode {
        what: "image manifest",
        source,
    })?;
    image.name = Some(reference);
    image.platform = Some(platform);
    Ok(finish(spec, image, wasm_kind))
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || "app.wasm".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn finish(spec: &ImageSpec, image: Image, wasm_kind: Option<WasmKind>) -> Assembled {
    let built = Built {
        reference: spec.reference.clone(),
        platform: image
            .platform
            .clone()
            .unwrap_or_else(|| Platform::new("", "")),
        wasm_kind,
        form: image.form(),
        manifest_digest: image.manifest.digest.clone(),
        config_digest: image.config.digest.clone(),
    };
    Assembled {
        built,
        image,
        epoch: spec.epoch,
    }
}

fn config_json(
    spec: &ImageSpec,
    platform: &Platform,
    entrypoint: Option<String>,
    diff_ids: Vec<String>,
) -> Result<Vec<u8>, BuildError> {
    let created = rfc3339(spec.epoch);
    let mut config = ConfigBuilder::default()
        .env(environment(&spec.env))
        .working_dir("/");
    if let Some(entrypoint) = entrypoint {
        config = config.entrypoint(vec![entrypoint]);
    }
    if !spec.args.is_empty() {
        config = config.cmd(spec.args.clone());
    }
    if !spec.labels.is_empty() {
        let labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        config = config.labels(labels);
    }
    let config = config.build().map_err(spec_error("config"))?;
    let history = HistoryBuilder::default()
        .created(created.clone())
        .created_by(CREATED_BY)
        .build()
        .map_err(spec_error("history"))?;
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(diff_ids)
        .build()
        .map_err(spec_error("rootfs"))?;
    let mut image = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(Arch::Other(platform.architecture.clone()))
        .os(Os::Other(platform.os.clone()))
        .config(config)
        .rootfs(rootfs)
        .history(vec![history]);
    if let Some(variant) = &platform.variant {
        image = image.variant(variant.clone());
    }
    if let Some(author) = &spec.author {
        image = image.author(author.clone());
    }
    let image = image.build().map_err(spec_error("image config"))?;
    encode("image config", &image)
}

/// `PATH` first (unless given), then the user's variables in order; a
/// repeated key keeps its first position and takes its last value.
fn environment(env: &[EnvVar]) -> Vec<String> {
    let mut vars: Vec<EnvVar> = Vec::new();
    if !env.iter().any(|v| v.key == "PATH") {
        if let Ok(path) = EnvVar::from_str(DEFAULT_PATH) {
            vars.push(path);
        }
    }
    for var in env {
        match vars.iter_mut().find(|v| v.key == var.key) {
            Some(existing) => existing.value.clone_from(&var.value),
            None => vars.push(var.clone()),
        }
    }
    vars.iter().map(EnvVar::to_string).collect()
}

fn encode<T: serde::Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, BuildError> {
    canonical_json(value).map_err(|source| BuildError::Encode { what, source })
}

fn spec_error(what: &'static str) -> impl Fn(oci_spec::OciSpecError) -> BuildError {
    move |source| BuildError::Spec { what, source }
}

fn guest_rel(path: &str) -> &str {
    path.trim_start_matches('/')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed setup step should just fail the test
mod tests;
