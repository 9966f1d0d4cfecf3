use super::*;

fn layer(title: Option<&str>, digest: &str) -> WasmLayer {
    WasmLayer {
        media_type: WASM_LAYER_TYPES[0].into(),
        digest: digest.into(),
        title: title.map(str::to_owned),
        bytes: b"\0asm".to_vec(),
    }
}

const DIGEST_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DIGEST_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const DIGEST_C: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

fn manifest_with(layers: &[(&str, &str, Option<&str>)]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(media_type, digest, title)| {
            let mut d = serde_json::json!({"mediaType": media_type, "digest": digest, "size": 4});
            if let Some(t) = title {
                d["annotations"] = serde_json::json!({ TITLE_ANNOTATION: t });
            }
            d
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": DIGEST_C,
            "size": 2
        },
        "layers": layers,
    }))
    .unwrap()
}

#[test]
fn every_wasm_media_type_is_a_wasm_layer_and_tar_layers_are_not() {
    for media_type in WASM_LAYER_TYPES {
        assert!(is_wasm_layer(media_type), "{media_type}");
    }
    assert!(!is_wasm_layer(
        "application/vnd.oci.image.layer.v1.tar+gzip"
    ));
    assert!(!is_wasm_layer("application/vnd.wasm.config.v0+json"));
}

#[test]
fn wasm_layers_keeps_only_wasm_layers_in_order_with_titles() {
    let json = manifest_with(&[
        (
            "application/vnd.oci.image.layer.v1.tar+gzip",
            DIGEST_A,
            None,
        ),
        (WASM_LAYER_TYPES[2], DIGEST_B, Some("server.wasm")),
        (WASM_LAYER_TYPES[1], DIGEST_C, None),
    ]);
    let layers = wasm_layers(&json).unwrap();
    let digests: Vec<_> = layers.iter().map(|l| l.digest().to_string()).collect();
    assert_eq!(digests, [DIGEST_B, DIGEST_C]);
    assert_eq!(title(&layers[0]).as_deref(), Some("server.wasm"));
    assert_eq!(title(&layers[1]), None);
}

#[test]
fn a_broken_manifest_is_a_bad_document_error() {
    let err = wasm_layers(b"{not json").unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::BadDocument {
                what: "manifest",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn targets_are_classified_by_media_type() {
    assert_eq!(
        target_kind("application/vnd.oci.image.manifest.v1+json"),
        Target::Manifest
    );
    assert_eq!(
        target_kind("application/vnd.docker.distribution.manifest.v2+json"),
        Target::Manifest
    );
    assert_eq!(
        target_kind("application/vnd.oci.image.index.v1+json"),
        Target::Index
    );
    assert_eq!(
        target_kind("application/vnd.docker.distribution.manifest.list.v2+json"),
        Target::Index
    );
    assert_eq!(target_kind("application/vnd.dev.sigstore"), Target::Other);
}

fn index_with(platforms: &[(&str, &str, &str)]) -> Vec<u8> {
    let manifests: Vec<_> = platforms
        .iter()
        .map(|(os, arch, digest)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": 10,
                "platform": {"os": os, "architecture": arch}
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap()
}

#[test]
fn an_index_prefers_the_wasm_platform_then_the_host() {
    let both = index_with(&[("linux", "amd64", DIGEST_A), ("wasip1", "wasm", DIGEST_B)]);
    let picked = pick_manifest(&both, "amd64").unwrap().unwrap();
    assert_eq!(picked.digest().to_string(), DIGEST_B);

    let linux_only = index_with(&[("linux", "arm64", DIGEST_A), ("linux", "amd64", DIGEST_C)]);
    let picked = pick_manifest(&linux_only, "amd64").unwrap().unwrap();
    assert_eq!(picked.digest().to_string(), DIGEST_C);

    let foreign = index_with(&[("linux", "arm64", DIGEST_A)]);
    assert_eq!(pick_manifest(&foreign, "amd64").unwrap(), None);
}

#[test]
fn a_single_layer_runs_whatever_args0_says() {
    let layers = [layer(None, DIGEST_A)];
    assert_eq!(choose(&layers, "anything.wasm").unwrap().digest, DIGEST_A);
}

#[test]
fn several_layers_are_chosen_by_title_or_its_file_name() {
    let layers = [
        layer(Some("tool.wasm"), DIGEST_A),
        layer(Some("server.wasm"), DIGEST_B),
    ];
    assert_eq!(choose(&layers, "server.wasm").unwrap().digest, DIGEST_B);
    assert_eq!(choose(&layers, "/bin/tool.wasm").unwrap().digest, DIGEST_A);
}

#[test]
fn several_layers_and_no_matching_title_names_them_all() {
    let layers = [layer(Some("tool.wasm"), DIGEST_A), layer(None, DIGEST_B)];
    let err = choose(&layers, "other.wasm").unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ImageError::NoLayerFor { .. }), "{message}");
    assert!(message.contains("other.wasm"), "{message}");
    assert!(message.contains("tool.wasm"), "{message}");
    assert!(message.contains(DIGEST_B), "{message}");
}
