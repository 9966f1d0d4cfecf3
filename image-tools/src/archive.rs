//! Reads what `build` and `pull` write, and what other tools write: a bare
//! `.wasm`, an OCI layout (tar or directory) or a docker-archive tar, into
//! an [`Image`] held in memory. Every blob is checked against its digest.
//!
//! Layouts holding one image are supported (a nested index with a single
//! manifest is followed); multi-image layouts are refused by name.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::image::{
    is_index, Blob, Descriptor, Image, IndexDoc, ManifestDoc, ANNOTATION_IMAGE_NAME,
    MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR, MEDIA_OCI_CONFIG,
};
use crate::layer::sha256_hex;
use crate::layout::{DockerManifestEntry, BLOB_DIR};
use crate::reference::Reference;
use crate::spec::Platform;

/// Why a file could not be read as a wasm binary or an image.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file or directory cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Neither wasm, nor an OCI layout, nor a docker-archive.
    #[error("{} is not a .wasm, an OCI layout (tar or directory) or a docker-archive tar", .0.display())]
    Unrecognised(PathBuf),
    /// A document the layout needs is missing.
    #[error("{}: {what} is missing", path.display())]
    Missing {
        /// The archive.
        path: PathBuf,
        /// The missing file or blob.
        what: String,
    },
    /// A document is not valid JSON of the expected shape.
    #[error("{}: {what} is invalid: {source}", path.display())]
    BadJson {
        /// The archive.
        path: PathBuf,
        /// Which document.
        what: String,
        /// The parser's message.
        source: serde_json::Error,
    },
    /// A blob's content does not match its digest.
    #[error("{}: blob {digest} does not match its digest (corrupt archive)", path.display())]
    DigestMismatch {
        /// The archive.
        path: PathBuf,
        /// The expected digest.
        digest: String,
    },
    /// A descriptor's digest is not `sha256:` and 64 hex digits. Checked before the digest
    /// names a file: `sha256:../../x` would read outside the layout.
    #[error("{}: {digest:?} is not a sha256 digest (sha256: and 64 lowercase hex digits)", path.display())]
    BadDigest {
        /// The archive.
        path: PathBuf,
        /// The digest as written.
        digest: String,
    },
    /// A file of a layout directory that is not a regular file (a fifo would block the read
    /// for good, a device or a link could read anything on the host).
    #[error("{}: {name} is not a regular file", path.display())]
    NotAFile {
        /// The layout directory.
        path: PathBuf,
        /// The file, relative to it.
        name: String,
    },
    /// The layout holds more than one image.
    #[error("{}: holds {count} images; wasmpod handles single-image archives", path.display())]
    MultipleImages {
        /// The archive.
        path: PathBuf,
        /// How many manifests the index names.
        count: usize,
    },
}

/// What a file turned out to be.
#[derive(Debug, Clone)]
pub enum Loaded {
    /// A bare WebAssembly binary (not yet validated).
    Wasm(Vec<u8>),
    /// An image or artifact.
    Image(Box<Image>),
}

/// Reads `path`: a `.wasm`, an OCI layout directory, or a tar holding an
/// OCI layout or a docker-archive.
///
/// # Errors
/// Any [`ReadError`]; digests are verified.
pub fn read(path: &Path) -> Result<Loaded, ReadError> {
    let io_err = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    if path.is_dir() {
        let files = Files::Dir(path.to_owned());
        return Ok(Loaded::Image(Box::new(files.oci_image(path)?)));
    }
    let bytes = std::fs::read(path).map_err(io_err)?;
    read_bytes(path, bytes)
}

/// [`read`] for the content of a file already in memory: a `.wasm`, or a
/// tar holding an OCI layout or a docker-archive; `path` only names it in
/// errors.
///
/// # Errors
/// Any [`ReadError`]; digests are verified.
pub fn read_bytes(path: &Path, bytes: Vec<u8>) -> Result<Loaded, ReadError> {
    let io_err = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    if bytes.starts_with(b"\0asm") {
        return Ok(Loaded::Wasm(bytes));
    }
    let mut map = BTreeMap::new();
    let mut archive = tar::Archive::new(bytes.as_slice());
    let entries = archive.entries().map_err(io_err)?;
    for entry in entries {
        let Ok(mut entry) = entry else {
            return Err(ReadError::Unrecognised(path.to_owned()));
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(io_err)?.display().to_string();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).map_err(io_err)?;
        map.insert(name.trim_start_matches("./").to_owned(), content);
    }
    let files = Files::Tar(map);
    if files.get("index.json", path)?.is_some() {
        Ok(Loaded::Image(Box::new(files.oci_image(path)?)))
    } else if files.get("manifest.json", path)?.is_some() {
        Ok(Loaded::Image(Box::new(files.docker_image(path)?)))
    } else {
        Err(ReadError::Unrecognised(path.to_owned()))
    }
}

/// The files of a layout, from a tar (in memory) or a directory.
enum Files {
    Tar(BTreeMap<String, Vec<u8>>),
    Dir(PathBuf),
}

impl Files {
    fn get(&self, name: &str, path: &Path) -> Result<Option<Vec<u8>>, ReadError> {
        match self {
            Self::Tar(map) => Ok(map.get(name).cloned()),
            Self::Dir(dir) => match read_regular(&dir.join(name)) {
                Ok(Some(bytes)) => Ok(Some(bytes)),
                Ok(None) => Err(ReadError::NotAFile {
                    path: path.to_owned(),
                    name: name.to_owned(),
                }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(ReadError::Io {
                    path: path.to_owned(),
                    source,
                }),
            },
        }
    }

    fn need(&self, name: &str, path: &Path) -> Result<Vec<u8>, ReadError> {
        self.get(name, path)?.ok_or_else(|| ReadError::Missing {
            path: path.to_owned(),
            what: name.to_owned(),
        })
    }

    fn blob(&self, desc: &Descriptor, path: &Path) -> Result<Blob, ReadError> {
        let hex = sha256_hex_of(&desc.digest).ok_or_else(|| ReadError::BadDigest {
            path: path.to_owned(),
            digest: desc.digest.clone(),
        })?;
        let bytes = self
            .get(&format!("{BLOB_DIR}/{hex}"), path)?
            .ok_or_else(|| ReadError::Missing {
                path: path.to_owned(),
                what: format!("blob {}", desc.digest),
            })?;
        checked(path, &desc.media_type, &desc.digest, bytes)
    }

    fn oci_image(&self, path: &Path) -> Result<Image, ReadError> {
        let index: IndexDoc = json(path, "index.json", &self.need("index.json", path)?)?;
        let mut desc = only_one(path, index.manifests)?;
        let mut outer_annotations = desc.annotations.clone();
        if is_index(&desc.media_type) {
            let nested = self.blob(&desc, path)?;
            let nested: IndexDoc = json(path, &format!("index {}", desc.digest), &nested.bytes)?;
            desc = only_one(path, nested.manifests)?;
            outer_annotations = outer_annotations.or_else(|| desc.annotations.clone());
        }
        let manifest = self.blob(&desc, path)?;
        let doc: ManifestDoc = json(path, &format!("manifest {}", desc.digest), &manifest.bytes)?;
        let config = self.blob(&doc.config, path)?;
        let layers = doc
            .layers
            .iter()
            .map(|l| self.blob(l, path))
            .collect::<Result<Vec<_>, _>>()?;
        let name = outer_annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_IMAGE_NAME))
            .and_then(|n| Reference::parse(n).ok());
        let platform = desc
            .platform
            .map(|p| Platform {
                os: p.os,
                architecture: p.architecture,
                variant: p.variant,
            })
            .or_else(|| config_platform(&config.bytes));
        Ok(Image {
            name,
            platform,
            manifest,
            doc,
            config,
            layers,
        })
    }

    /// A docker-archive has no manifest blob: one is made (OCI media types,
    /// canonical JSON), so the digest is wasmpod's, not the original
    /// registry's.
    fn docker_image(&self, path: &Path) -> Result<Image, ReadError> {
        let entries: Vec<DockerManifestEntry> =
            json(path, "manifest.json", &self.need("manifest.json", path)?)?;
        let count = entries.len();
        let Some(entry) = entries.into_iter().next().filter(|_| count == 1) else {
            return Err(ReadError::MultipleImages {
                path: path.to_owned(),
                count,
            });
        };
        let config = Blob::new(MEDIA_OCI_CONFIG, self.need(&entry.config, path)?);
        let mut layers = Vec::new();
        for layer in &entry.layers {
            let bytes = self.need(layer, path)?;
            let media_type = if bytes.starts_with(&[0x1f, 0x8b]) {
                MEDIA_LAYER_GZIP
            } else {
                MEDIA_LAYER_TAR
            };
            layers.push((Blob::new(media_type, bytes), None));
        }
        let mut image = Image::assemble(config, layers, &BTreeMap::new()).map_err(|source| {
            ReadError::BadJson {
                path: path.to_owned(),
                what: "manifest.json".to_owned(),
                source,
            }
        })?;
        image.name = entry
            .repo_tags
            .first()
            .and_then(|t| Reference::parse(t).ok());
        image.platform = config_platform(&image.config.bytes);
        Ok(image)
    }
}

/// Checks `bytes` against `digest` and wraps them as a blob.
///
/// # Errors
/// [`ReadError::DigestMismatch`] if they differ.
pub fn checked(
    path: &Path,
    media_type: &str,
    digest: &str,
    bytes: Vec<u8>,
) -> Result<Blob, ReadError> {
    if digest.strip_prefix("sha256:") != Some(sha256_hex(&bytes).as_str()) {
        return Err(ReadError::DigestMismatch {
            path: path.to_owned(),
            digest: digest.to_owned(),
        });
    }
    Ok(Blob {
        media_type: media_type.to_owned(),
        digest: digest.to_owned(),
        bytes,
    })
}

/// The hex part of a well-formed `sha256:<64 lowercase hex>` digest.
pub fn sha256_hex_of(digest: &str) -> Option<&str> {
    digest.strip_prefix("sha256:").filter(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The content of `path` if it is a regular file (not followed if it is a symlink), `None`
/// if it is anything else.
fn read_regular(path: &Path) -> io::Result<Option<Vec<u8>>> {
    if !std::fs::symlink_metadata(path)?.is_file() {
        return Ok(None);
    }
    std::fs::read(path).map(Some)
}

fn only_one(path: &Path, manifests: Vec<Descriptor>) -> Result<Descriptor, ReadError> {
    let count = manifests.len();
    match <[Descriptor; 1]>::try_from(manifests) {
        Ok([desc]) => Ok(desc),
        Err(_) => Err(ReadError::MultipleImages {
            path: path.to_owned(),
            count,
        }),
    }
}

fn json<T: DeserializeOwned>(path: &Path, what: &str, bytes: &[u8]) -> Result<T, ReadError> {
    serde_json::from_slice(bytes).map_err(|source| ReadError::BadJson {
        path: path.to_owned(),
        what: what.to_owned(),
        source,
    })
}

/// `os`/`architecture`/`variant` from an image or wasm config.
pub fn config_platform(config: &[u8]) -> Option<Platform> {
    #[derive(serde::Deserialize)]
    struct Fields {
        os: Option<String>,
        architecture: Option<String>,
        variant: Option<String>,
    }
    let fields: Fields = serde_json::from_slice(config).ok()?;
    Some(Platform {
        os: fields.os?,
        architecture: fields.architecture?,
        variant: fields.variant,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed setup step should just fail the test
mod tests;
