//! Writes an OCI image layout as a single tar (what `ctr images import`,
//! `docker load` and `skopeo ... oci-archive:` read), plus a docker-archive
//! style `manifest.json` so the classic `docker load` path accepts it too.
//!
//! Archive order is fixed: `oci-layout`, the `blobs/` directories, blobs
//! sorted by digest, `index.json`, `manifest.json` (images only); every
//! entry has uid/gid 0 and the same mtime, so equal inputs give equal bytes.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};
use tar::{EntryType, Header};

/// Content of the `oci-layout` marker file.
pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// Directory holding the sha256 blobs inside the layout.
pub const BLOB_DIR: &str = "blobs/sha256";

/// One content-addressed blob.
#[derive(Debug, Clone, Copy)]
pub struct Blob<'a> {
    /// Hex sha256 of `bytes` (its file name under `blobs/sha256/`).
    pub digest_hex: &'a str,
    /// The content.
    pub bytes: &'a [u8],
}

/// One entry of a docker-archive `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerManifestEntry {
    /// Path of the config blob inside the archive.
    pub config: String,
    /// Familiar names (`hello:latest`) to tag the image with.
    pub repo_tags: Vec<String>,
    /// Paths of the layer blobs, base first.
    pub layers: Vec<String>,
}

impl DockerManifestEntry {
    /// An entry pointing at blobs in this layout.
    pub fn new(config_hex: &str, repo_tags: Vec<String>, layer_hexes: &[&str]) -> Self {
        Self {
            config: blob_path(config_hex),
            repo_tags,
            layers: layer_hexes.iter().map(|h| blob_path(h)).collect(),
        }
    }
}

/// Path of a blob inside the layout, `blobs/sha256/<hex>`.
pub fn blob_path(digest_hex: &str) -> String {
    format!("{BLOB_DIR}/{digest_hex}")
}

/// Serialises `value` as compact JSON with object keys sorted at every
/// level. oci-spec keeps annotations and labels in `HashMap`s, whose order
/// changes from run to run; sorting makes the bytes, and so the digests,
/// reproducible.
///
/// # Errors
/// Whatever `serde_json` reports for values it cannot represent.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let value = sort_keys(serde_json::to_value(value)?);
    serde_json::to_vec(&value)
}

fn sort_keys(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

/// Writes the layout tar to `out` and returns it.
///
/// # Errors
/// Any I/O error from `out`.
pub fn write_archive<W: Write>(
    out: W,
    blobs: &[Blob<'_>],
    index_json: &[u8],
    docker_manifest_json: Option<&[u8]>,
    mtime: u64,
) -> io::Result<W> {
    let mut tar = tar::Builder::new(out);
    append_file(&mut tar, "oci-layout", OCI_LAYOUT, mtime)?;
    append_dir(&mut tar, "blobs/", mtime)?;
    append_dir(&mut tar, &format!("{BLOB_DIR}/"), mtime)?;
    let mut sorted: Vec<&Blob<'_>> = blobs.iter().collect();
    sorted.sort_by(|a, b| a.digest_hex.cmp(b.digest_hex));
    // Identical blobs (same digest) are stored once.
    sorted.dedup_by(|a, b| a.digest_hex == b.digest_hex);
    for blob in sorted {
        append_file(&mut tar, &blob_path(blob.digest_hex), blob.bytes, mtime)?;
    }
    append_file(&mut tar, "index.json", index_json, mtime)?;
    if let Some(docker) = docker_manifest_json {
        append_file(&mut tar, "manifest.json", docker, mtime)?;
    }
    tar.into_inner()
}

fn header(entry_type: EntryType, mode: u32, size: u64, mtime: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_size(size);
    header
}

/// Appends a regular file (mode 0644, uid/gid 0) to `tar`.
///
/// # Errors
/// Any I/O error from the underlying writer.
pub fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
    mtime: u64,
) -> io::Result<()> {
    append_reader(tar, path, bytes.len() as u64, bytes, mtime)
}

/// [`append_file`] for content read from `reader`, which must give exactly `size` bytes.
///
/// # Errors
/// Any I/O error from `reader` or `tar`.
pub fn append_reader<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    reader: impl io::Read,
    mtime: u64,
) -> io::Result<()> {
    let mut header = header(EntryType::Regular, 0o644, size, mtime);
    tar.append_data(&mut header, path, reader)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str, mtime: u64) -> io::Result<()> {
    let mut header = header(EntryType::Directory, 0o755, 0, mtime);
    tar.append_data(&mut header, path, io::empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed setup step should just fail the test
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn canonical_json_sorts_keys_everywhere() {
        let mut map = HashMap::new();
        for key in ["zeta", "alpha", "mid"] {
            map.insert(key, serde_json::json!({"b": 1, "a": [{"y": 0, "x": 0}]}));
        }
        let json = String::from_utf8(canonical_json(&map).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"alpha":{"a":[{"x":0,"y":0}],"b":1},"mid":{"a":[{"x":0,"y":0}],"b":1},"zeta":{"a":[{"x":0,"y":0}],"b":1}}"#
        );
    }

    #[test]
    fn archive_has_fixed_order_and_metadata() {
        let blobs = [
            Blob {
                digest_hex: "bb",
                bytes: b"two",
            },
            Blob {
                digest_hex: "aa",
                bytes: b"one",
            },
            Blob {
                digest_hex: "bb",
                bytes: b"two",
            },
        ];
        let bytes = write_archive(Vec::new(), &blobs, b"{}", Some(b"[]"), 42).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut names = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            assert_eq!(
                (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
                (0, 0, 42)
            );
            assert_eq!(h.username().unwrap(), Some(""));
            names.push(entry.path().unwrap().display().to_string());
        }
        assert_eq!(
            names,
            [
                "oci-layout",
                "blobs/",
                "blobs/sha256/",
                "blobs/sha256/aa",
                "blobs/sha256/bb",
                "index.json",
                "manifest.json"
            ]
        );
    }

    #[test]
    fn docker_manifest_shape() {
        let entry = DockerManifestEntry::new("c0", vec!["hello:latest".into()], &["l1"]);
        let json = serde_json::to_string(&[entry]).unwrap();
        assert_eq!(
            json,
            r#"[{"Config":"blobs/sha256/c0","RepoTags":["hello:latest"],"Layers":["blobs/sha256/l1"]}]"#
        );
    }
}
