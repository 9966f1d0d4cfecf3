//! Reproducible filesystem layers: a sorted tar with normalised metadata,
//! gzip'd with a fixed header and level.
//!
//! Entries are collected into a [`LayerTree`] first (so they can be sorted,
//! de-duplicated and checked for conflicts), then written in path order with
//! uid/gid 0, no user names, and one fixed mtime. Parent directories that no
//! input names are added with mode 0755.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use crate::error::BuildError;
use crate::spec::DirMapping;

/// Fixed gzip level: the output bytes (and so the digest) depend on it.
/// 6 is gzip's own default, a fair size/speed trade-off.
const GZIP_LEVEL: u32 = 6;
/// Mode for directories created only because something lives below them.
const IMPLICIT_DIR_MODE: u32 = 0o755;

/// What lives at one path in the layer.
#[derive(Debug, Clone)]
enum Node {
    Dir { mode: u32 },
    File { mode: u32, content: Content },
    Symlink { target: PathBuf },
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Self::Dir { .. } => "a directory",
            Self::File { .. } => "a file",
            Self::Symlink { .. } => "a symlink",
        }
    }
}

/// Where a file's bytes come from; host files are read only when writing,
/// so large trees are not held in memory all at once.
#[derive(Debug, Clone)]
enum Content {
    Host(PathBuf),
    Bytes(Vec<u8>),
}

/// The files of one layer, keyed by path relative to `/`.
#[derive(Debug, Default)]
pub struct LayerTree {
    nodes: BTreeMap<String, Node>,
}

/// A finished layer.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The gzip'd tar (the blob).
    pub blob: Vec<u8>,
    /// Hex sha256 of `blob`.
    pub digest_hex: String,
    /// Hex sha256 of the uncompressed tar (the config's diff_id).
    pub diff_id_hex: String,
}

impl LayerTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an in-memory file at `guest` (relative to `/`).
    ///
    /// # Errors
    /// [`BuildError::PathConflict`] if a parent is not a directory or
    /// `guest` is already a directory.
    pub fn add_bytes(&mut self, guest: &str, bytes: Vec<u8>, mode: u32) -> Result<(), BuildError> {
        let node = Node::File {
            mode,
            content: Content::Bytes(bytes),
        };
        self.insert(guest, node)
    }

    /// Copies a host file or directory tree into the layer. Symlinks inside
    /// the tree are stored as symlinks (not followed); the host path itself
    /// is followed if it is a symlink, since the user named it.
    ///
    /// # Errors
    /// [`BuildError::Read`] if the host path is missing or unreadable,
    /// [`BuildError::UnsupportedFileType`] for devices, fifos and sockets,
    /// [`BuildError::PathConflict`] on clashes with earlier entries.
    pub fn add_mapping(&mut self, mapping: &DirMapping) -> Result<(), BuildError> {
        let host = &mapping.host;
        let meta = std::fs::metadata(host).map_err(|source| read_error(host, source))?;
        if meta.is_dir() {
            if !mapping.guest.is_empty() {
                self.insert(
                    &mapping.guest,
                    Node::Dir {
                        mode: mode_of(&meta),
                    },
                )?;
            }
            return self.add_tree(host, &mapping.guest);
        }
        if !meta.is_file() {
            return Err(BuildError::UnsupportedFileType(host.clone()));
        }
        let guest = if mapping.into_dir || mapping.guest.is_empty() {
            let name = host.file_name().ok_or_else(|| BuildError::BadDir {
                spec: format!("{}:/{}", host.display(), mapping.guest),
                reason: "cannot tell the file's name".to_owned(),
            })?;
            let name = name
                .to_str()
                .ok_or_else(|| BuildError::NonUtf8Name(host.clone()))?;
            join(&mapping.guest, name)
        } else {
            mapping.guest.clone()
        };
        let node = Node::File {
            mode: mode_of(&meta),
            content: Content::Host(host.clone()),
        };
        self.insert(&guest, node)
    }

    fn add_tree(&mut self, dir: &Path, guest: &str) -> Result<(), BuildError> {
        let entries = std::fs::read_dir(dir).map_err(|source| read_error(dir, source))?;
        for entry in entries {
            let entry = entry.map_err(|source| read_error(dir, source))?;
            let path = entry.path();
            let meta =
                std::fs::symlink_metadata(&path).map_err(|source| read_error(&path, source))?;
            // Lossy names would silently rename files; refuse them instead.
            let name = entry.file_name();
            let name = name
                .to_str()
                .ok_or_else(|| BuildError::NonUtf8Name(path.clone()))?;
            let child = join(guest, name);
            let file_type = meta.file_type();
            if file_type.is_symlink() {
                let target =
                    std::fs::read_link(&path).map_err(|source| read_error(&path, source))?;
                self.insert(&child, Node::Symlink { target })?;
            } else if file_type.is_dir() {
                self.insert(
                    &child,
                    Node::Dir {
                        mode: mode_of(&meta),
                    },
                )?;
                self.add_tree(&path, &child)?;
            } else if file_type.is_file() {
                let node = Node::File {
                    mode: mode_of(&meta),
                    content: Content::Host(path),
                };
                self.insert(&child, node)?;
            } else {
                return Err(BuildError::UnsupportedFileType(path));
            }
        }
        Ok(())
    }

    /// Inserts `node`, creating missing parents. A later file or symlink
    /// replaces an earlier one (like a later COPY); a directory over a
    /// directory takes the newer mode; anything else is a conflict.
    fn insert(&mut self, path: &str, node: Node) -> Result<(), BuildError> {
        let conflict = |path: &str, reason: String| BuildError::PathConflict {
            path: path.to_owned(),
            reason,
        };
        let mut parent = String::new();
        for part in path
            .split('/')
            .take(path.split('/').count().saturating_sub(1))
        {
            parent = join(&parent, part);
            match self.nodes.get(&parent) {
                None => {
                    let dir = Node::Dir {
                        mode: IMPLICIT_DIR_MODE,
                    };
                    self.nodes.insert(parent.clone(), dir);
                }
                Some(Node::Dir { .. }) => {}
                Some(other) => {
                    let reason = format!(
                        "it is {}, but /{path} needs it to be a directory",
                        other.kind()
                    );
                    return Err(conflict(&parent, reason));
                }
            }
        }
        match (self.nodes.get(path), &node) {
            (Some(Node::Dir { .. }), Node::Dir { .. }) | (None, _) => {}
            (Some(Node::Dir { .. }), _) | (Some(_), Node::Dir { .. }) => {
                let old = self.nodes.get(path).map_or("nothing", Node::kind);
                let reason = format!("{} would replace {old}", node.kind());
                return Err(conflict(path, reason));
            }
            (Some(_), _) => {}
        }
        self.nodes.insert(path.to_owned(), node);
        Ok(())
    }

    /// Number of entries (including implicit parent directories).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True if nothing has been added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Writes the layer: sorted tar, fixed metadata, gzip with a fixed
    /// header (no name, mtime 0) and level.
    ///
    /// # Errors
    /// [`BuildError::Read`] if a host file vanished or became unreadable
    /// since it was added.
    pub fn write(&self, mtime: u64) -> Result<Layer, BuildError> {
        let assemble = |source| BuildError::Assemble {
            what: "layer",
            source,
        };
        let gzip = GzBuilder::new().write(Vec::new(), Compression::new(GZIP_LEVEL));
        let mut tar = tar::Builder::new(HashingWriter::new(gzip));
        for (path, node) in &self.nodes {
            let mut header = Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(mtime);
            header.set_size(0);
            match node {
                Node::Dir { mode } => {
                    header.set_entry_type(EntryType::Directory);
                    header.set_mode(*mode);
                    tar.append_data(&mut header, format!("{path}/"), io::empty())
                        .map_err(assemble)?;
                }
                Node::Symlink { target } => {
                    header.set_entry_type(EntryType::Symlink);
                    header.set_mode(0o777);
                    tar.append_link(&mut header, path, target)
                        .map_err(assemble)?;
                }
                Node::File { mode, content } => {
                    // Read whole files so the size in the header is exactly
                    // what is written even if the file changes meanwhile.
                    let bytes = match content {
                        Content::Bytes(bytes) => std::borrow::Cow::Borrowed(bytes.as_slice()),
                        Content::Host(host) => std::borrow::Cow::Owned(
                            std::fs::read(host).map_err(|source| read_error(host, source))?,
                        ),
                    };
                    header.set_entry_type(EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(bytes.len() as u64);
                    tar.append_data(&mut header, path, bytes.as_ref())
                        .map_err(assemble)?;
                }
            }
        }
        let hashing = tar.into_inner().map_err(assemble)?;
        let (gzip, diff_id) = hashing.finish();
        let blob = gzip.finish().map_err(assemble)?;
        Ok(Layer {
            digest_hex: sha256_hex(&blob),
            diff_id_hex: diff_id,
            blob,
        })
    }
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

fn mode_of(meta: &std::fs::Metadata) -> u32 {
    // Keep permission, setuid/setgid and sticky bits; the type bits come
    // from the tar entry type.
    meta.permissions().mode() & 0o7777
}

fn read_error(path: &Path, source: io::Error) -> BuildError {
    BuildError::Read {
        path: path.to_owned(),
        source,
    }
}

/// Hashes everything written through it: the uncompressed tar stream on
/// its way into the gzip encoder, which gives the diff_id in one pass.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn finish(self) -> (W, String) {
        (self.inner, hex(&self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed setup step should just fail the test
mod tests;
