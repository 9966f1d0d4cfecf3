//! Checks the filesystem layers of an image someone else made before `import` hands it to a
//! daemon that unpacks them as root.
//!
//! Owns the rule of what a layer tar may hold; it reads tar headers only (streaming through
//! gzip, so a huge layer costs no memory) and writes nothing. Refused, with the entry, the
//! layer and the archive named:
//! - entry names that are absolute or have a `..` component, and hard links whose target is:
//!   containerd cleans them into the rootfs (`fs.RootPath`), but no tool that packs a
//!   directory writes them, so they only come from a crafted tar;
//! - an entry below a path that an earlier entry (of this layer or a lower one) made a
//!   symlink climbing out of the rootfs (`up -> ../../..`): a file written "through" it
//!   lands wherever the link points, outside the rootfs for an unpacker that does not resolve
//!   links in the root. Links that stay inside (`lib -> usr/lib`, `/bin -> /usr/bin`) are
//!   fine: merged-/usr images write through them;
//! - device nodes and fifos: containerd runs `mknod` for them, and a guest or native process
//!   could then open a device of the node; a wasm image has no use for either.
//!
//! Symlinks themselves may point anywhere (absolute, dangling, `..`): they are resolved inside
//! the rootfs by containerd when unpacking, by the kernel after `pivot_root`, and by the shim
//! (`openat2(RESOLVE_IN_ROOT)`), so `/data -> /` is the container's own root.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use tar::EntryType;

use crate::image::{is_wasm_layer, Image};

/// Why an image's layers are refused.
#[derive(Debug, thiserror::Error)]
pub enum LayerCheckError {
    /// An entry that could write outside the rootfs or create a device.
    #[error("{}: layer {layer}: entry {entry:?} {reason}; refusing the image", archive.display())]
    Unsafe {
        /// The archive (or reference) the image came from.
        archive: PathBuf,
        /// The layer's digest.
        layer: String,
        /// The entry's name as written in the tar.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A layer that is not a (gzip'd) tar, so its entries cannot be checked.
    #[error("{}: layer {layer} cannot be read as a tar: {source}", archive.display())]
    Unreadable {
        /// The archive (or reference) the image came from.
        archive: PathBuf,
        /// The layer's digest.
        layer: String,
        /// The reader's error.
        source: io::Error,
    },
}

/// Checks every filesystem layer of `image`, base first (raw wasm layers are not tars and are
/// never unpacked); `archive` names the image in errors.
///
/// # Errors
/// [`LayerCheckError::Unsafe`] for the first entry the rules above refuse,
/// [`LayerCheckError::Unreadable`] for a layer that is not a tar or gzip'd tar.
pub fn check_image(image: &Image, archive: &Path) -> Result<(), LayerCheckError> {
    let mut symlinks = BTreeMap::new();
    for layer in image
        .layers
        .iter()
        .filter(|l| !is_wasm_layer(&l.media_type))
    {
        let unreadable = |source| LayerCheckError::Unreadable {
            archive: archive.to_owned(),
            layer: layer.digest.clone(),
            source,
        };
        let bytes = layer.bytes.as_slice();
        let reader: Box<dyn Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
            Box::new(GzDecoder::new(bytes))
        } else {
            Box::new(bytes)
        };
        check_tar(reader, &mut symlinks).map_err(|err| match err {
            Found::Io(source) => unreadable(source),
            Found::Unsafe { entry, reason } => LayerCheckError::Unsafe {
                archive: archive.to_owned(),
                layer: layer.digest.clone(),
                entry,
                reason,
            },
        })?;
    }
    Ok(())
}

enum Found {
    Io(io::Error),
    Unsafe { entry: String, reason: String },
}

/// Paths that layers left as symlinks climbing out of the rootfs, with their targets.
type Escaping = BTreeMap<String, String>;

/// Checks one layer; `symlinks` holds the escaping links that lower layers left, and is
/// updated for the layers above.
fn check_tar(reader: impl Read, symlinks: &mut Escaping) -> Result<(), Found> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(Found::Io)? {
        let entry = entry.map_err(Found::Io)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let unsafe_entry = |reason: &str| Found::Unsafe {
            entry: raw.clone(),
            reason: reason.to_owned(),
        };
        let path = clean(&raw).ok_or_else(|| unsafe_entry("leaves the rootfs (absolute or ..)"))?;
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Block | EntryType::Char => return Err(unsafe_entry("is a device node")),
            EntryType::Fifo => return Err(unsafe_entry("is a fifo")),
            EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default();
                if clean(&String::from_utf8_lossy(&target)).is_none() {
                    return Err(unsafe_entry(
                        "is a hard link out of the rootfs (absolute or ..)",
                    ));
                }
            }
            _ => {}
        }
        if let Some(link) = below_symlink(&path, symlinks) {
            let reason = format!("is written through the symlink {link:?}");
            return Err(unsafe_entry(&reason));
        }
        // A whiteout removes the path below it; anything else replaces what was there.
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        let removed = match name.strip_prefix(".wh.") {
            Some(".wh..opq") => dir.to_owned(),
            Some(hidden) if dir.is_empty() => hidden.to_owned(),
            Some(hidden) => format!("{dir}/{hidden}"),
            None => path.clone(),
        };
        let below = format!("{removed}/");
        symlinks.retain(|s, _| s != &removed && !s.starts_with(&below));
        if kind == EntryType::Symlink {
            let target =
                String::from_utf8_lossy(&entry.link_name_bytes().unwrap_or_default()).into_owned();
            if climbs_out(dir, &target) {
                symlinks.insert(path, target);
            }
        }
    }
    Ok(())
}

/// The entry name relative to the rootfs (`./a//b/` -> `a/b`), or `None` when it is absolute
/// or has a `..` component.
fn clean(name: &str) -> Option<String> {
    let mut parts = Vec::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy()),
            Component::CurDir => {}
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// Whether a symlink in directory `dir` (relative to the rootfs) pointing at `target` climbs
/// above the rootfs when resolved lexically (absolute targets start at the rootfs).
fn climbs_out(dir: &str, target: &str) -> bool {
    let mut depth: usize = if target.starts_with('/') {
        0
    } else {
        dir.split('/').filter(|p| !p.is_empty()).count()
    };
    for component in Path::new(target).components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return true,
            },
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    false
}

/// The escaping symlink among `path`'s proper ancestors, if any.
fn below_symlink<'a>(path: &str, symlinks: &'a Escaping) -> Option<&'a String> {
    let mut end = 0;
    while let Some(slash) = path[end..].find('/') {
        end += slash;
        if let Some((link, _)) = symlinks.get_key_value(&path[..end]) {
            return Some(link);
        }
        end += 1;
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed setup step should just fail the test
mod tests;
