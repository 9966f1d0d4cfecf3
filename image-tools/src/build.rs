//! Turns an [`ImageSpec`] into an image: one layer, its config, the image
//! manifest, the index that names it, and the docker-archive manifest; then
//! writes them as a layout tar (atomically, so a failed build leaves no
//! output file behind).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, Digest, HistoryBuilder,
    ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, Os,
    PlatformBuilder, RootFsBuilder, ANNOTATION_REF_NAME,
};

use crate::error::BuildError;
use crate::layer::{sha256_hex, Layer, LayerTree};
use crate::layout::{self, canonical_json, Blob, DockerManifestEntry};
use crate::reference::Reference;
use crate::spec::{rfc3339, EnvVar, ImageSpec, Platform};
use crate::wasm::{self, WasmKind};

/// The annotation containerd (and Docker's containerd store) take the image
/// name from on import.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
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
    /// The single layer.
    pub layer: Layer,
    /// The image config JSON.
    pub config_json: Vec<u8>,
    /// The image manifest JSON.
    pub manifest_json: Vec<u8>,
    /// The layout's `index.json`.
    pub index_json: Vec<u8>,
    /// The docker-archive `manifest.json`.
    pub docker_manifest_json: Vec<u8>,
    epoch: u64,
}

impl Assembled {
    /// Writes the layout tar to `out` and returns it.
    ///
    /// # Errors
    /// Any I/O error from `out`.
    pub fn write_to<W: Write>(&self, out: W) -> std::io::Result<W> {
        let config_hex = hex_of(&self.built.config_digest);
        let manifest_hex = hex_of(&self.built.manifest_digest);
        let blobs = [
            Blob {
                digest_hex: &self.layer.digest_hex,
                bytes: &self.layer.blob,
            },
            Blob {
                digest_hex: config_hex,
                bytes: &self.config_json,
            },
            Blob {
                digest_hex: manifest_hex,
                bytes: &self.manifest_json,
            },
        ];
        layout::write_archive(
            out,
            &blobs,
            &self.index_json,
            &self.docker_manifest_json,
            self.epoch,
        )
    }
}

/// Builds the image described by `spec` and writes it to `out`.
///
/// # Errors
/// Any [`BuildError`] from [`assemble`], or [`BuildError::Write`] if the
/// output cannot be written (no partial file is left behind).
pub fn build(spec: &ImageSpec, out: &Path) -> Result<Built, BuildError> {
    let assembled = assemble(spec)?;
    write_atomically(out, |file| assembled.write_to(file).map(drop))?;
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
    let tag = reference
        .tag()
        .unwrap_or(crate::reference::DEFAULT_TAG)
        .to_owned();

    let mut tree = LayerTree::new();
    for mapping in &spec.dirs {
        tree.add_mapping(mapping)?;
    }
    let (platform, wasm_kind, default_entrypoint) = match &spec.wasm {
        Some(path) => {
            let binary = wasm::load(path)?;
            let platform = spec
                .platform
                .clone()
                .unwrap_or_else(|| Platform::new(binary.kind.default_os(), WASM_ARCH));
            // Added last so the module wins over a --dir file at the same path;
            // 0755 because it is the entrypoint, as tools expect of one.
            tree.add_bytes(guest_rel(WASM_GUEST_PATH), binary.bytes, 0o755)?;
            (
                platform,
                Some(binary.kind),
                Some(WASM_GUEST_PATH.to_owned()),
            )
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
    let layer = tree.write(spec.epoch)?;

    let config_json = config_json(spec, &platform, entrypoint, &layer)?;
    let config_digest = format!("sha256:{}", sha256_hex(&config_json));
    let manifest_json = manifest_json(&config_digest, &config_json, &layer)?;
    let manifest_digest = format!("sha256:{}", sha256_hex(&manifest_json));

    let mut annotations = HashMap::new();
    annotations.insert(ANNOTATION_IMAGE_NAME.to_owned(), reference.to_string());
    annotations.insert(ANNOTATION_REF_NAME.to_owned(), tag);
    let manifest_desc = DescriptorBuilder::default()
        .media_type(MediaType::ImageManifest)
        .digest(digest(&manifest_digest)?)
        .size(manifest_json.len() as u64)
        .annotations(annotations)
        .platform(oci_platform(&platform)?)
        .build()
        .map_err(spec_error("index manifest descriptor"))?;
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest_desc])
        .build()
        .map_err(spec_error("index"))?;
    let index_json = encode("index.json", &index)?;

    let docker_entry = DockerManifestEntry::new(
        hex_of(&config_digest),
        vec![reference.familiar()],
        &[&layer.digest_hex],
    );
    let docker_manifest_json =
        serde_json::to_vec(&[docker_entry]).map_err(|source| BuildError::Encode {
            what: "manifest.json",
            source,
        })?;

    Ok(Assembled {
        built: Built {
            reference,
            platform,
            wasm_kind,
            manifest_digest,
            config_digest,
        },
        layer,
        config_json,
        manifest_json,
        index_json,
        docker_manifest_json,
        epoch: spec.epoch,
    })
}

fn config_json(
    spec: &ImageSpec,
    platform: &Platform,
    entrypoint: Option<String>,
    layer: &Layer,
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
        .diff_ids(vec![format!("sha256:{}", layer.diff_id_hex)])
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
    let image = image.build().map_err(spec_error("image config"))?;
    encode("image config", &image)
}

fn manifest_json(
    config_digest: &str,
    config_json: &[u8],
    layer: &Layer,
) -> Result<Vec<u8>, BuildError> {
    let config = Descriptor::new(
        MediaType::ImageConfig,
        config_json.len() as u64,
        digest(config_digest)?,
    );
    let layer = Descriptor::new(
        MediaType::ImageLayerGzip,
        layer.blob.len() as u64,
        digest(&format!("sha256:{}", layer.digest_hex))?,
    );
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(vec![layer])
        .build()
        .map_err(spec_error("manifest"))?;
    encode("image manifest", &manifest)
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

fn oci_platform(platform: &Platform) -> Result<oci_spec::image::Platform, BuildError> {
    // `Other` writes the strings verbatim; oci-spec's own string mapping
    // is lossy for some values (e.g. it turns "armbe" into "arm64be").
    let mut builder = PlatformBuilder::default()
        .os(Os::Other(platform.os.clone()))
        .architecture(Arch::Other(platform.architecture.clone()));
    if let Some(variant) = &platform.variant {
        builder = builder.variant(variant.clone());
    }
    builder.build().map_err(spec_error("platform"))
}

fn digest(text: &str) -> Result<Digest, BuildError> {
    Digest::from_str(text).map_err(spec_error("digest"))
}

fn encode<T: serde::Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, BuildError> {
    canonical_json(value).map_err(|source| BuildError::Encode { what, source })
}

fn spec_error(what: &'static str) -> impl Fn(oci_spec::OciSpecError) -> BuildError {
    move |source| BuildError::Spec { what, source }
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn guest_rel(path: &str) -> &str {
    path.trim_start_matches('/')
}

/// Writes via a temporary file in the same directory and renames it into
/// place, so readers never see a half-written archive and errors leave
/// nothing behind.
fn write_atomically(
    out: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), BuildError> {
    let fail = |source| BuildError::Write {
        path: out.to_owned(),
        source,
    };
    let Some(name) = out.file_name() else {
        let reason = "the output path does not name a file";
        return Err(fail(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            reason,
        )));
    };
    let tmp: PathBuf = out.with_file_name(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = BufWriter::new(File::create(&tmp)?);
        write(&mut file)?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, out)
    })();
    if result.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed setup step should just fail the test
mod tests;
