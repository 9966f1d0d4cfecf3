//! Image documents and wasm layer selection: arbitrary bytes as an OCI index, manifest or
//! config, read by the shim (`wasmpod_shim::image::manifest`: which manifest, which layers
//! are wasm, which layer `args[0]` runs) and by the CLI (`wasmpod_image`: the index and
//! manifest documents, the config's platform, image names).
//!
//! Input: the first line is a program (`args[0]`) and an image name; the rest is the JSON
//! document. Checks the selection rules the functions document.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmpod_image::archive::config_platform;
use wasmpod_image::image::{IndexDoc, ManifestDoc};
use wasmpod_image::Reference;
use wasmpod_shim::image::manifest::{
    choose, is_wasm_layer, pick_manifest, target_kind, title, wasm_layers,
};
use wasmpod_shim::image::WasmLayer;

fn split(data: &[u8]) -> (String, &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        None => (String::new(), data),
    }
}

fuzz_target!(|data: &[u8]| {
    let (program, doc) = split(data);
    let _ = target_kind(&program);

    // The shim: an index's manifest for this host.
    for arch in ["amd64", "arm64"] {
        if let Ok(Some(chosen)) = pick_manifest(doc, arch) {
            let index: oci_spec::image::ImageIndex =
                serde_json::from_slice(doc).expect("pick_manifest parsed it");
            assert!(index.manifests().contains(&chosen));
            let platform = chosen.platform().as_ref().expect("chosen by platform");
            let wasm_exists = index.manifests().iter().any(|d| {
                d.platform()
                    .as_ref()
                    .is_some_and(|p| p.architecture().to_string() == "wasm")
            });
            let arch_of = platform.architecture().to_string();
            if wasm_exists {
                assert_eq!(arch_of, "wasm", "a wasm manifest comes first");
            } else {
                assert_eq!(arch_of, arch);
                assert_eq!(platform.os().to_string(), "linux");
            }
        }
    }

    // The shim: a manifest's wasm layers and the one `program` runs.
    if let Ok(layers) = wasm_layers(doc) {
        let layers: Vec<WasmLayer> = layers
            .iter()
            .map(|d| {
                let media_type = d.media_type().to_string();
                assert!(is_wasm_layer(&media_type), "{media_type}");
                WasmLayer {
                    media_type,
                    digest: d.digest().to_string(),
                    title: title(d),
                    bytes: Vec::new(),
                }
            })
            .collect();
        for program in [program.as_str(), "/app.wasm", "app.wasm"] {
            match choose(&layers, program) {
                Ok(layer) => {
                    let file_name = program.rsplit('/').next().unwrap_or(program);
                    assert!(
                        layers.len() == 1
                            || layer.title.as_deref() == Some(program)
                            || layer.title.as_deref() == Some(file_name),
                        "{layer:?} for {program:?}"
                    );
                }
                Err(err) => {
                    assert!(layers.len() != 1);
                    let _ = err.to_string();
                }
            }
        }
    }

    // The CLI: the same documents, its own types.
    if let Ok(index) = serde_json::from_slice::<IndexDoc>(doc) {
        let again = serde_json::to_vec(&index).expect("serialises");
        let back: IndexDoc = serde_json::from_slice(&again).expect("round trip");
        assert_eq!(back, index);
    }
    if let Ok(manifest) = serde_json::from_slice::<ManifestDoc>(doc) {
        let again = serde_json::to_vec(&manifest).expect("serialises");
        let back: ManifestDoc = serde_json::from_slice(&again).expect("round trip");
        assert_eq!(back, manifest);
    }
    if let Some(platform) = config_platform(doc) {
        let _ = platform.to_string();
    }

    // Image names (an index's `io.containerd.image.name`, `RepoTags`): normalised once.
    if let Ok(reference) = Reference::parse(&program) {
        let full = reference.to_string();
        let again = Reference::parse(&full).expect("a normalised name parses");
        assert_eq!(again, reference, "{program:?} -> {full:?}");
        let _ = reference.familiar();
    }
});
