//! `wasmpod image inspect` on arbitrary bytes: the file as the CLI reads it
//! (`archive::read_bytes`: a `.wasm`, an OCI layout tar or a docker-archive tar), then the
//! report (`inspect::inspect_wasm` / `inspect_image`, its text and JSON forms).
//!
//! Layout blobs are checked against their digests, which mutated inputs rarely keep, so the
//! bytes are also inspected as the one layer of an image (a tar, gzip'd or not, holding the
//! entrypoint) and as the layer of a wasm artifact, assembled with correct digests.

#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wasmpod_image::archive::{read_bytes, Loaded};
use wasmpod_image::image::{
    Blob, Image, ANNOTATION_TITLE, MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR, MEDIA_OCI_CONFIG,
    MEDIA_WASM_CONFIG, MEDIA_WASM_LAYER,
};
use wasmpod_image::inspect::{inspect_image, inspect_wasm, render, Inspection};

const IMAGE_CONFIG: &[u8] = br#"{"architecture":"wasm","os":"wasip1","created":"1970-01-01T00:00:00Z","config":{"Entrypoint":["/app.wasm"]},"rootfs":{"type":"layers","diff_ids":[]}}"#;
const ARTIFACT_CONFIG: &[u8] = br#"{"architecture":"wasm","os":"wasip2","layerDigests":[]}"#;

fn report(inspection: &Inspection) {
    let _ = render(inspection);
    serde_json::to_string(inspection).expect("the report serialises");
}

fn assembled(config: Blob, layer: Blob, title: Option<&str>) {
    let annotations = title.map(|t| BTreeMap::from([(ANNOTATION_TITLE.to_owned(), t.to_owned())]));
    let image =
        Image::assemble(config, vec![(layer, annotations)], &BTreeMap::new()).expect("assembles");
    if let Ok(inspection) = inspect_image("fuzz", &image) {
        report(&inspection);
    }
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.tar");
    match read_bytes(path, data.to_vec()) {
        Ok(Loaded::Wasm(bytes)) => {
            if let Ok(inspection) = inspect_wasm("fuzz.wasm", &bytes) {
                report(&inspection);
            }
        }
        Ok(Loaded::Image(image)) => {
            let _ = image.index_json();
            if let Ok(inspection) = inspect_image("fuzz.tar", &image) {
                report(&inspection);
            }
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
    let media_type = if data.starts_with(&[0x1f, 0x8b]) {
        MEDIA_LAYER_GZIP
    } else {
        MEDIA_LAYER_TAR
    };
    // An image whose filesystem layer is these bytes, or whose raw wasm layer they are.
    let image_config = Blob::new(MEDIA_OCI_CONFIG, IMAGE_CONFIG.to_vec());
    assembled(
        image_config.clone(),
        Blob::new(media_type, data.to_vec()),
        None,
    );
    if data.starts_with(b"\0asm") {
        let layer = Blob::new(MEDIA_WASM_LAYER, data.to_vec());
        assembled(image_config, layer.clone(), Some("app.wasm"));
        let artifact_config = Blob::new(MEDIA_WASM_CONFIG, ARTIFACT_CONFIG.to_vec());
        assembled(artifact_config, layer, None);
    }
});
