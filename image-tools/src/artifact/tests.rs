//! The artifact's documents, byte for byte where the format fixes them.

use std::path::Path;

use serde_json::{json, Value};

use super::*;
use crate::image::MEDIA_OCI_MANIFEST;
use crate::reference::Reference;
use crate::testdata::{COMPONENT_WAT, MODULE_WAT};

fn spec(dir: &Path, wat: &str, name: &str) -> ImageSpec {
    let path = dir.join(name);
    std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
    let mut spec = ImageSpec::new(Reference::parse("localhost:5000/app:1").unwrap());
    spec.wasm = Some(path);
    spec.artifact = true;
    spec
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn component_artifact_has_the_cncf_shape() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(dir.path(), COMPONENT_WAT, "comp.wasm");
    spec.author = Some("ci@example.com".into());
    spec.epoch = 1_700_000_000;
    spec.annotations.insert(
        "org.opencontainers.image.source".into(),
        "https://x/y".into(),
    );
    let (image, info) = assemble(&spec).unwrap();
    let wasm = std::fs::read(dir.path().join("comp.wasm")).unwrap();

    assert_eq!(image.layers.len(), 1);
    assert_eq!(image.layers[0].media_type, MEDIA_WASM_LAYER);
    assert_eq!(image.layers[0].bytes, wasm, "the layer is the raw module");
    assert_eq!(image.layers[0].digest, info.digest);

    let config = json_of(&image.config.bytes);
    assert_eq!(
        config,
        json!({
            "created": "2023-11-14T22:13:20Z",
            "author": "ci@example.com",
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [info.digest],
            "component": {
                "imports": ["wasi:cli/environment@0.2.0", "log"],
                "exports": ["wasi:cli/run@0.2.0"],
                "target": "wasi:cli/command@0.2.0"
            }
        })
    );

    let manifest = json_of(&image.manifest.bytes);
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MEDIA_OCI_MANIFEST);
    assert_eq!(manifest.get("artifactType"), None);
    assert_eq!(manifest["config"]["mediaType"], MEDIA_WASM_CONFIG);
    assert_eq!(manifest["config"]["digest"], image.config.digest.as_str());
    assert_eq!(manifest["config"]["size"], image.config.bytes.len());
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(manifest["layers"][0]["size"], wasm.len());
    assert_eq!(
        manifest["layers"][0]["annotations"][ANNOTATION_TITLE],
        "comp.wasm"
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.source"],
        "https://x/y"
    );
    let index = json_of(&image.index_json().unwrap());
    assert_eq!(
        index["manifests"][0]["platform"],
        json!({"architecture": "wasm", "os": "wasip2"})
    );
}

#[test]
fn module_artifact_has_no_component_and_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), MODULE_WAT, "m.wasm");
    let (first, _) = assemble(&spec).unwrap();
    let (second, _) = assemble(&spec).unwrap();
    assert_eq!(first, second);
    let config = json_of(&first.config.bytes);
    assert_eq!(config["os"], "wasip1");
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    assert_eq!(config.get("component"), None);
    assert_eq!(config.get("author"), None);
    assert_eq!(json_of(&first.manifest.bytes).get("annotations"), None);
}

#[test]
fn options_an_artifact_cannot_carry_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut with_env = spec(dir.path(), MODULE_WAT, "m.wasm");
    with_env.env = vec!["A=1".parse().unwrap()];
    let err = assemble(&with_env).unwrap_err().to_string();
    assert!(err.contains("--artifact stores only the .wasm"), "{err}");

    let mut linux = spec(dir.path(), MODULE_WAT, "m.wasm");
    linux.platform = Some("linux/amd64".parse().unwrap());
    let err = assemble(&linux).unwrap_err().to_string();
    assert!(err.contains("wasip1/wasm or wasip2/wasm"), "{err}");

    let mut none = spec(dir.path(), MODULE_WAT, "m.wasm");
    none.wasm = None;
    assert!(assemble(&none).unwrap_err().to_string().contains(".wasm"));

    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x01\0\0\0\x01\x05").unwrap();
    let mut bad = spec(dir.path(), MODULE_WAT, "m.wasm");
    bad.wasm = Some(broken);
    let err = assemble(&bad).unwrap_err().to_string();
    assert!(
        err.contains("broken.wasm is not a valid WebAssembly"),
        "{err}"
    );
}
