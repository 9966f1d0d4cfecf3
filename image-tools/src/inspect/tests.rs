//! The report's fields for each form, and its text rendering.

use super::*;
use crate::build::assemble;
use crate::reference::Reference;
use crate::spec::ImageSpec;
use crate::testdata::{COMPONENT_WAT, MODULE_WAT};

fn built(wat: &str, artifact: bool) -> Image {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.wasm");
    std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
    let mut spec = ImageSpec::new(Reference::parse("app:1").unwrap());
    spec.wasm = Some(path);
    spec.artifact = artifact;
    spec.author = Some("me".into());
    assemble(&spec).unwrap().image
}

#[test]
fn json_fields_are_stable() {
    let image = built(MODULE_WAT, false);
    let report = inspect_image("app.tar", &image).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "annotations",
            "author",
            "config",
            "created",
            "form",
            "layers",
            "manifest",
            "name",
            "platform",
            "source",
            "wasm",
            "wasm_path"
        ]
    );
    assert_eq!(json["form"], "image");
    assert_eq!(json["name"], "docker.io/library/app:1");
    assert_eq!(json["platform"], "wasip1/wasm");
    assert_eq!(json["author"], "me");
    assert_eq!(json["manifest"]["digest"], image.manifest.digest.as_str());
    assert_eq!(
        json["config"]["media_type"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(json["wasm_path"], "/app.wasm");
    let wasm = &json["wasm"];
    assert_eq!(wasm["kind"], "module");
    assert_eq!(wasm["wasi"], "preview1");
    assert_eq!(wasm["imports"][0]["name"], "wasi_snapshot_preview1");
    assert_eq!(wasm["imports"][0]["items"][0]["name"], "proc_exit");
    assert_eq!(wasm["imports"][0]["items"][0]["kind"], "func");
    assert_eq!(wasm["world"], serde_json::Value::Null);
    let wasm_keys: Vec<&str> = wasm
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        wasm_keys,
        ["digest", "exports", "imports", "kind", "size", "wasi", "world"]
    );
}

#[test]
fn artifacts_and_bare_wasm_are_described() {
    let image = built(COMPONENT_WAT, true);
    let report = inspect_image("localhost:5000/app:1", &image).unwrap();
    assert_eq!(report.form, "artifact");
    assert_eq!(report.platform.as_deref(), Some("wasip2/wasm"));
    assert_eq!(
        report.wasm_path.as_deref(),
        Some(image.layers[0].digest.as_str())
    );
    let wasm = report.wasm.as_ref().unwrap();
    assert_eq!(wasm.world.as_deref(), Some("wasi:cli/command@0.2.0"));
    assert_eq!(wasm.digest, image.layers[0].digest);

    let text = render(&report);
    assert!(text.contains("form:       artifact"), "{text}");
    assert!(
        text.contains("  wasi:cli/environment@0.2.0: get-environment, initial-cwd"),
        "{text}"
    );
    assert!(text.contains("  (top level): log"), "{text}");
    assert!(text.contains("  wasi:cli/run@0.2.0: run"), "{text}");

    let bytes = wat::parse_str(MODULE_WAT).unwrap();
    let bare = inspect_wasm("m.wasm", &bytes).unwrap();
    assert_eq!((bare.form, bare.manifest.as_ref()), ("wasm", None));
    let text = render(&bare);
    assert!(text.contains("wasi:       preview1"), "{text}");
    assert!(
        text.contains("(top level): memory (memory), _start"),
        "{text}"
    );
    assert!(inspect_wasm("bad.wasm", b"\0asm\x01\0\0\0\x01").is_err());
}

#[test]
fn native_images_have_no_wasm() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tool"), b"#!/bin/sh\n").unwrap();
    let mut spec = ImageSpec::new(Reference::parse("native:1").unwrap());
    spec.dirs = vec![format!("{}:/bin/", dir.path().join("tool").display())
        .parse()
        .unwrap()];
    spec.entrypoint = Some("/bin/tool".into());
    spec.platform = Some("linux/amd64".parse().unwrap());
    let image = assemble(&spec).unwrap().image;
    let report = inspect_image("native.tar", &image).unwrap();
    assert_eq!(report.wasm, None);
    assert!(render(&report).contains("wasm:       none"));
}

#[test]
fn a_raw_wasm_layer_is_described_as_the_images_wasm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hello.wasm");
    std::fs::write(&path, wat::parse_str(COMPONENT_WAT).unwrap()).unwrap();
    let mut spec = ImageSpec::new(Reference::parse("layered:1").unwrap());
    spec.wasm = Some(path);
    spec.wasm_layer = Some(crate::image::WASM_LAYER_TYPES[2].into());
    let image = assemble(&spec).unwrap().image;
    let report = inspect_image("layered.tar", &image).unwrap();
    assert_eq!(report.form, "image");
    assert_eq!(report.wasm_path.as_deref(), Some("hello.wasm"));
    let wasm = report.wasm.expect("the layer's wasm is described");
    assert_eq!(wasm.kind, crate::wasm::WasmKind::Component);
    assert_eq!(report.platform.as_deref(), Some("wasip2/wasm"));
}
