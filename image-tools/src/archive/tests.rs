//! Every output format reads back to the same image.

use super::*;
use crate::build::{assemble, Assembled};
use crate::output::Format;
use crate::spec::ImageSpec;
use crate::testdata::{COMPONENT_WAT, MODULE_WAT};

fn assembled(dir: &Path, wat: &str, artifact: bool) -> Assembled {
    let path = dir.join("app.wasm");
    std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
    let mut spec = ImageSpec::new(Reference::parse("localhost:5000/app:2").unwrap());
    spec.wasm = Some(path);
    spec.artifact = artifact;
    spec.annotations.insert("a".into(), "b".into());
    assemble(&spec).unwrap()
}

fn image(loaded: Loaded) -> Image {
    match loaded {
        Loaded::Image(image) => *image,
        Loaded::Wasm(_) => panic!("expected an image"),
    }
}

#[test]
fn oci_tar_and_dir_read_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    for (wat, artifact) in [(MODULE_WAT, false), (COMPONENT_WAT, true)] {
        let built = assembled(dir.path(), wat, artifact);
        for format in [Format::OciArchive, Format::OciDir] {
            let out = dir.path().join(format!("out-{format}"));
            built.write(&out, format).unwrap();
            let read = image(read(&out).unwrap());
            assert_eq!(read, built.image, "{format}");
        }
        // The same tar, already in memory (what the fuzz targets use).
        let tar = built.write_to(Vec::new()).unwrap();
        let read = image(read_bytes(Path::new("mem.tar"), tar).unwrap());
        assert_eq!(read, built.image);
    }
}

#[test]
fn docker_archive_reads_back_with_the_same_config_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let built = assembled(dir.path(), MODULE_WAT, false);
    let out = dir.path().join("docker.tar");
    built.write(&out, Format::DockerArchive).unwrap();
    let read = image(read(&out).unwrap());
    assert_eq!(read.config.bytes, built.image.config.bytes);
    assert_eq!(read.layers[0].media_type, MEDIA_LAYER_TAR);
    assert_eq!(read.name, built.image.name);
    assert_eq!(read.platform.unwrap().to_string(), "wasip1/wasm");
}

#[test]
fn wasm_files_are_recognised_and_junk_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("m.wasm");
    std::fs::write(&wasm, wat::parse_str(MODULE_WAT).unwrap()).unwrap();
    assert!(matches!(read(&wasm).unwrap(), Loaded::Wasm(_)));
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"hello").unwrap();
    let err = read(&junk).unwrap_err().to_string();
    assert!(err.contains("is not a .wasm, an OCI layout"), "{err}");
    let err = read(&dir.path().join("gone.tar")).unwrap_err().to_string();
    assert!(err.contains("gone.tar"), "{err}");
}

#[test]
fn corrupt_blobs_and_multi_image_layouts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let built = assembled(dir.path(), MODULE_WAT, false);
    let out = dir.path().join("layout");
    built.write(&out, Format::OciDir).unwrap();
    let layer = out.join(BLOB_DIR).join(built.image.layers[0].hex());
    std::fs::write(&layer, b"tampered").unwrap();
    let err = read(&out).unwrap_err().to_string();
    assert!(err.contains("does not match its digest"), "{err}");

    let mut index: IndexDoc =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    index.manifests.push(index.manifests[0].clone());
    std::fs::write(out.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let err = read(&out).unwrap_err().to_string();
    assert!(err.contains("holds 2 images"), "{err}");
}

/// A layout directory's documents name files only through well-formed digests, and only
/// regular files are read: `sha256:../..` would read beside the layout (and `/dev/zero` would
/// never end), a fifo would block for good, a symlink could point anywhere on the host.
#[test]
fn a_layout_dir_reads_nothing_outside_itself() {
    let dir = tempfile::tempdir().unwrap();
    let built = assembled(dir.path(), MODULE_WAT, false);
    let out = dir.path().join("layout");
    built.write(&out, Format::OciDir).unwrap();
    let index_path = out.join("index.json");
    let good_index = std::fs::read(&index_path).unwrap();

    let mut index: IndexDoc = serde_json::from_slice(&good_index).unwrap();
    index.manifests[0].digest = "sha256:../../../app.wasm".into();
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let err = read(&out).unwrap_err().to_string();
    assert!(
        err.contains("\"sha256:../../../app.wasm\" is not a sha256 digest"),
        "{err}"
    );

    std::fs::write(&index_path, &good_index).unwrap();
    let layer = out.join(BLOB_DIR).join(built.image.layers[0].hex());
    let moved = dir.path().join("elsewhere");
    std::fs::rename(&layer, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &layer).unwrap();
    let err = read(&out).unwrap_err().to_string();
    let name = format!(
        "{BLOB_DIR}/{} is not a regular file",
        built.image.layers[0].hex()
    );
    assert!(err.contains(&name), "{err}");

    std::fs::remove_file(&index_path).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&index_path)
        .status()
        .unwrap();
    assert!(made.success());
    let err = read(&out).unwrap_err().to_string();
    assert!(err.contains("index.json is not a regular file"), "{err}");
}
