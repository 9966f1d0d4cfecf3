//! Each output format read back the way its consumer reads it.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::layer::sha256_hex;
use crate::layout::DockerManifestEntry;
use crate::reference::Reference;
use crate::spec::ImageSpec;
use crate::testdata::MODULE_WAT;

fn assembled(dir: &Path, artifact: bool) -> crate::build::Assembled {
    let path = dir.join("app.wasm");
    std::fs::write(&path, wat::parse_str(MODULE_WAT).unwrap()).unwrap();
    let mut spec = ImageSpec::new(Reference::parse("hello:1").unwrap());
    spec.wasm = Some(path);
    spec.artifact = artifact;
    crate::build::assemble(&spec).unwrap()
}

fn tar_files(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let file = File::open(path).unwrap();
    for entry in tar::Archive::new(file).entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.insert(entry.path().unwrap().display().to_string(), bytes);
    }
    out
}

#[test]
fn docker_archive_has_config_and_uncompressed_layers() {
    let dir = tempfile::tempdir().unwrap();
    let built = assembled(dir.path(), false);
    let out = dir.path().join("docker.tar");
    built.write(&out, Format::DockerArchive).unwrap();
    let files = tar_files(&out);
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].repo_tags, ["hello:1"]);
    let config = &files[&entries[0].config];
    assert_eq!(config, &built.image.config.bytes);
    let config: serde_json::Value = serde_json::from_slice(config).unwrap();
    let layer = &files[&entries[0].layers[0]];
    // Docker checks each layer tar against the config's diff_ids.
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        format!("sha256:{}", sha256_hex(layer))
    );
    let names: Vec<String> = tar::Archive::new(layer.as_slice())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["app.wasm"]);
}

#[test]
fn artifacts_are_not_docker_archives_and_have_no_docker_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let built = assembled(dir.path(), true);
    let out = dir.path().join("docker.tar");
    let err = built.write(&out, Format::DockerArchive).unwrap_err();
    assert!(err
        .to_string()
        .contains("cannot be written as a docker-archive"));
    assert!(!out.exists());
    let oci = dir.path().join("oci.tar");
    built.write(&oci, Format::OciArchive).unwrap();
    let files = tar_files(&oci);
    assert!(files.contains_key("index.json") && !files.contains_key("manifest.json"));
}

#[test]
fn oci_dir_is_a_layout_and_replaces_only_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let built = assembled(dir.path(), false);
    let out = dir.path().join("layout");
    built.write(&out, Format::OciDir).unwrap();
    assert_eq!(std::fs::read(out.join("oci-layout")).unwrap(), OCI_LAYOUT);
    for blob in built.image.blobs() {
        let path = out.join("blobs/sha256").join(blob.hex());
        assert_eq!(std::fs::read(path).unwrap(), blob.bytes);
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        built.image.manifest.digest.as_str()
    );
    // Writing again over our own layout is fine.
    built.write(&out, Format::OciDir).unwrap();

    let other = dir.path().join("precious");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"keep").unwrap();
    let err = built.write(&other, Format::OciDir).unwrap_err().to_string();
    assert!(err.contains("not an OCI layout directory"), "{err}");
    assert!(other.join("notes.txt").exists());
}

#[test]
fn formats_parse_and_print() {
    for name in ["oci", "oci-dir", "docker-archive"] {
        assert_eq!(name.parse::<Format>().unwrap().to_string(), name);
    }
    assert_eq!("oci-archive".parse::<Format>().unwrap(), Format::OciArchive);
    let err = "zip".parse::<Format>().unwrap_err().to_string();
    assert!(err.contains("oci, oci-dir or docker-archive"), "{err}");
}
