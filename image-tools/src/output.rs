//! Writes an [`Image`] to disk in one of three forms: an OCI layout tar
//! (what `ctr images import`, `docker load` with the containerd store, and
//! `skopeo ... oci-archive:` read), an OCI layout directory, or a classic
//! docker-archive tar (what `docker save` writes).
//!
//! Every write is atomic: a temporary sibling is renamed into place, so a
//! failure leaves no partial output behind.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};

use crate::image::{is_gzip_layer, is_wasm_layer, Blob, Form, Image};
use crate::layer::hex;
use crate::layout::{self, Blob as LayoutBlob, DockerManifestEntry, OCI_LAYOUT};

/// The output forms of `build` and `pull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// An OCI image layout in a tar (`oci`; also has a docker `manifest.json`
    /// for images).
    #[default]
    OciArchive,
    /// An OCI image layout directory (`oci-dir`).
    OciDir,
    /// A docker-archive tar (`docker-archive`): `manifest.json`, the config
    /// and uncompressed layer tars, as `docker save` writes.
    DockerArchive,
}

impl FromStr for Format {
    type Err = OutputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "oci" | "oci-archive" => Ok(Self::OciArchive),
            "oci-dir" => Ok(Self::OciDir),
            "docker-archive" => Ok(Self::DockerArchive),
            other => Err(OutputError::UnknownFormat(other.to_owned())),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OciArchive => "oci",
            Self::OciDir => "oci-dir",
            Self::DockerArchive => "docker-archive",
        })
    }
}

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// `--format` names no known format.
    #[error("unknown format {0:?} (expected oci, oci-dir or docker-archive)")]
    UnknownFormat(String),
    /// Docker cannot load an artifact: it has no filesystem layers.
    #[error(
        "a wasm artifact cannot be written as a docker-archive (it has no filesystem layer); \
         use --format oci or oci-dir, or build without --artifact"
    )]
    ArtifactAsDockerArchive,
    /// docker-archive layers must be tars; a raw wasm layer is not.
    #[error(
        "an image with a raw wasm layer ({0}) cannot be written as a docker-archive; \
         use --format oci or oci-dir, or build without --wasm-layer"
    )]
    WasmLayerAsDockerArchive(String),
    /// The output directory exists and is not an OCI layout we may replace.
    #[error("{} exists and is not an OCI layout directory; refusing to replace it", .0.display())]
    NotALayoutDir(PathBuf),
    /// Writing failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The output path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A layer could not be decompressed for the docker-archive.
    #[error("layer {digest} is not a valid gzip stream: {source}")]
    BadLayer {
        /// The layer's digest.
        digest: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// Writes `image` to `out` in `format`; `mtime` is every tar entry's time.
///
/// # Errors
/// [`OutputError::ArtifactAsDockerArchive`], [`OutputError::NotALayoutDir`],
/// [`OutputError::BadLayer`] or [`OutputError::Write`].
pub fn write(image: &Image, format: Format, out: &Path, mtime: u64) -> Result<(), OutputError> {
    let fail = |source| OutputError::Write {
        path: out.to_owned(),
        source,
    };
    match format {
        Format::OciArchive => {
            write_file_atomically(out, |w| oci_archive(image, w, mtime).map(drop)).map_err(fail)
        }
        Format::OciDir => write_dir(image, out),
        Format::DockerArchive => {
            if image.form() == Form::Artifact {
                return Err(OutputError::ArtifactAsDockerArchive);
            }
            if let Some(raw) = image.layers.iter().find(|l| is_wasm_layer(&l.media_type)) {
                return Err(OutputError::WasmLayerAsDockerArchive(
                    raw.media_type.clone(),
                ));
            }
            let layers = uncompressed_sizes(image)?;
            write_file_atomically(out, |w| docker_archive(image, &layers, w, mtime).map(drop))
                .map_err(fail)
        }
    }
}

/// Writes the OCI layout tar to `out` and returns it.
///
/// # Errors
/// Any I/O error from `out`.
pub fn oci_archive<W: Write>(image: &Image, out: W, mtime: u64) -> io::Result<W> {
    let blobs: Vec<LayoutBlob<'_>> = image
        .blobs()
        .map(|b| LayoutBlob {
            digest_hex: b.hex(),
            bytes: &b.bytes,
        })
        .collect();
    let index = image.index_json().map_err(io::Error::other)?;
    // Docker's classic store reads `manifest.json`; only images can use it.
    let docker = match image.form() {
        Form::Image => {
            // Docker's classic store knows only tar layers (what the config's diff_ids list).
            let layers: Vec<&str> = image
                .layers
                .iter()
                .filter(|l| !is_wasm_layer(&l.media_type))
                .map(|l| l.hex())
                .collect();
            let tags = image.name.iter().map(|n| n.familiar()).collect();
            let entry = DockerManifestEntry::new(image.config.hex(), tags, &layers);
            Some(serde_json::to_vec(&[entry]).map_err(io::Error::other)?)
        }
        Form::Artifact => None,
    };
    layout::write_archive(out, &blobs, &index, docker.as_deref(), mtime)
}

/// The diff ID (hex) and size of each layer tar, decompressed as a stream: a gzip layer may
/// grow a thousandfold (a registry's "gzip bomb"), so it is never held whole; it is
/// decompressed again as it is written.
fn uncompressed_sizes(image: &Image) -> Result<Vec<(String, u64)>, OutputError> {
    image
        .layers
        .iter()
        .map(|layer| {
            let mut sink = HashingSink::default();
            io::copy(&mut uncompressed(layer), &mut sink).map_err(|source| {
                OutputError::BadLayer {
                    digest: layer.digest.clone(),
                    source,
                }
            })?;
            Ok((hex(&sink.hasher.finalize()), sink.size))
        })
        .collect()
}

/// The layer's tar bytes, decompressed on the fly if it is gzip'd.
fn uncompressed(layer: &Blob) -> Box<dyn Read + '_> {
    if is_gzip_layer(&layer.media_type) {
        Box::new(GzDecoder::new(layer.bytes.as_slice()))
    } else {
        Box::new(layer.bytes.as_slice())
    }
}

/// Counts and hashes what is written to it, keeping nothing.
#[derive(Default)]
struct HashingSink {
    hasher: Sha256,
    size: u64,
}

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn docker_archive<W: Write>(
    image: &Image,
    layers: &[(String, u64)],
    out: W,
    mtime: u64,
) -> io::Result<W> {
    let config_path = format!("{}.json", image.config.hex());
    let layer_paths: Vec<String> = layers.iter().map(|(hex, _)| format!("{hex}.tar")).collect();
    let entry = DockerManifestEntry {
        config: config_path.clone(),
        repo_tags: image.name.iter().map(|n| n.familiar()).collect(),
        layers: layer_paths.clone(),
    };
    let manifest = serde_json::to_vec(&[entry]).map_err(io::Error::other)?;
    // (path, size, which layer; None for the config)
    let mut files: Vec<(&str, u64, Option<&Blob>)> =
        vec![(&config_path, image.config.bytes.len() as u64, None)];
    for ((path, (_, size)), layer) in layer_paths.iter().zip(layers).zip(&image.layers) {
        files.push((path, *size, Some(layer)));
    }
    files.sort_by(|a, b| a.0.cmp(b.0));
    files.dedup_by(|a, b| a.0 == b.0);
    let mut tar = tar::Builder::new(out);
    for (path, size, layer) in files {
        match layer {
            // Decompressed a second time: the size and digest came from the first pass.
            Some(layer) => layout::append_reader(&mut tar, path, size, uncompressed(layer), mtime)?,
            None => layout::append_file(&mut tar, path, &image.config.bytes, mtime)?,
        }
    }
    layout::append_file(&mut tar, "manifest.json", &manifest, mtime)?;
    tar.into_inner()
}

fn write_dir(image: &Image, out: &Path) -> Result<(), OutputError> {
    let fail = |path: &Path| {
        let path = path.to_owned();
        move |source| OutputError::Write { path, source }
    };
    if out.exists() {
        let replaceable = out.join("oci-layout").is_file()
            || std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_none());
        if !replaceable {
            return Err(OutputError::NotALayoutDir(out.to_owned()));
        }
    }
    let tmp = temp_sibling(out).map_err(fail(out))?;
    let result = (|| {
        let blobs = tmp.join(layout::BLOB_DIR);
        std::fs::create_dir_all(&blobs)?;
        std::fs::write(tmp.join("oci-layout"), OCI_LAYOUT)?;
        for blob in image.blobs() {
            std::fs::write(blobs.join(blob.hex()), &blob.bytes)?;
        }
        std::fs::write(
            tmp.join("index.json"),
            image.index_json().map_err(io::Error::other)?,
        )?;
        if out.exists() {
            std::fs::remove_dir_all(out)?;
        }
        std::fs::rename(&tmp, out)
    })();
    if result.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map_err(fail(out))
}

fn temp_sibling(out: &Path) -> io::Result<PathBuf> {
    let name = out.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the output path does not name a file",
        )
    })?;
    Ok(out.with_file_name(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Writes via a temporary file in the same directory and renames it into
/// place, so readers never see a half-written archive and errors leave
/// nothing behind.
///
/// # Errors
/// Any I/O error from creating, writing, syncing or renaming the file.
pub fn write_file_atomically(
    out: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = temp_sibling(out)?;
    let result = (|| {
        let mut file = BufWriter::new(File::create(&tmp)?);
        write(&mut file)?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, out)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed setup step should just fail the test
mod tests;
