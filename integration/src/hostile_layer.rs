//! Crafted layer tars and OCI layouts for the hostile-input tests: entries no packing tool
//! writes (`../` and absolute names, hard links out of the tree, device nodes, fifos, a file
//! written through a symlink), put in the tar byte for byte, since the `tar` crate's own
//! setters refuse them.
//!
//! Owns building these inputs only; what each consumer must do with them is in the tests.

use anyhow::{ensure, Result};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

/// One tar entry, names as written in the tar (not checked).
#[derive(Debug, Clone)]
pub enum Entry<'a> {
    /// A regular file with its bytes.
    File(&'a str, &'a [u8]),
    /// A directory.
    Dir(&'a str),
    /// A symlink to a target.
    Symlink(&'a str, &'a str),
    /// A hard link to a target (an archive path).
    HardLink(&'a str, &'a str),
    /// A character device `major:minor`.
    Char(&'a str, u32, u32),
    /// A block device `major:minor`.
    Block(&'a str, u32, u32),
    /// A fifo.
    Fifo(&'a str),
}

/// An uncompressed layer tar holding `entries` in order.
///
/// # Errors
/// A name or link target longer than the 100 bytes a plain header holds.
pub fn layer_tar(entries: &[Entry<'_>]) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for entry in entries {
        let (name, kind, link, data, device): (&str, _, _, &[u8], _) = match *entry {
            Entry::File(name, data) => (name, EntryType::Regular, None, data, None),
            Entry::Dir(name) => (name, EntryType::Directory, None, &[], None),
            Entry::Symlink(name, to) => (name, EntryType::Symlink, Some(to), &[], None),
            Entry::HardLink(name, to) => (name, EntryType::Link, Some(to), &[], None),
            Entry::Char(name, major, minor) => {
                (name, EntryType::Char, None, &[], Some((major, minor)))
            }
            Entry::Block(name, major, minor) => {
                (name, EntryType::Block, None, &[], Some((major, minor)))
            }
            Entry::Fifo(name) => (name, EntryType::Fifo, None, &[], None),
        };
        let mut header = Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_size(data.len() as u64);
        if let Some((major, minor)) = device {
            header.set_device_major(major)?;
            header.set_device_minor(minor)?;
        }
        let old = header.as_old_mut();
        put(&mut old.name, name)?;
        if let Some(link) = link {
            put(&mut old.linkname, link)?;
        }
        header.set_cksum();
        tar.append(&header, data)?;
    }
    Ok(tar.into_inner()?)
}

fn put(field: &mut [u8; 100], value: &str) -> Result<()> {
    ensure!(
        value.len() < field.len(),
        "{value:?} is too long for a tar header"
    );
    field.fill(0);
    field[..value.len()].copy_from_slice(value.as_bytes());
    Ok(())
}

/// An OCI layout tar of one image named `name` (`io.containerd.image.name`) for
/// `os`/`architecture`, whose layers are the uncompressed tars `layers` (base first) and whose
/// entrypoint is `entrypoint`.
///
/// # Errors
/// Encoding a document failed (does not happen).
pub fn oci_layout(
    name: &str,
    platform: (&str, &str),
    entrypoint: &str,
    layers: &[Vec<u8>],
) -> Result<Vec<u8>> {
    let digest = |bytes: &[u8]| format!("sha256:{:x}", Sha256::digest(bytes));
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": platform.1,
        "os": platform.0,
        "config": { "Entrypoint": [entrypoint] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))?;
    let descriptor = |media: &str, bytes: &[u8]| serde_json::json!({ "mediaType": media, "digest": digest(bytes), "size": bytes.len() });
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": layers.iter()
            .map(|l| descriptor("application/vnd.oci.image.layer.v1.tar", l))
            .collect::<Vec<_>>(),
    }))?;
    let mut top = descriptor("application/vnd.oci.image.manifest.v1+json", &manifest);
    top["annotations"] = serde_json::json!({ "io.containerd.image.name": name });
    top["platform"] = serde_json::json!({ "os": platform.0, "architecture": platform.1 });
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [top],
    }))?;
    let mut files: Vec<(String, &[u8])> = vec![
        ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json".into(), &index),
    ];
    for blob in [&config, &manifest].into_iter().chain(layers) {
        let hex = digest(blob).trim_start_matches("sha256:").to_owned();
        files.push((format!("blobs/sha256/{hex}"), blob));
    }
    let mut tar = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = Header::new_ustar();
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        tar.append_data(&mut header, path, bytes)?;
    }
    Ok(tar.into_inner()?)
}
