//! Wasm kind detection on arbitrary bytes: the shim's entrypoint classification
//! (`isolation::rootfs::classify`), its HTTP handler detection
//! (`engine::http::exports_http_handler`), and the CLI's module/component detection and
//! validation (`wasmpod_image::describe`).
//!
//! Checks that the three agree: a component is wasm to `classify`; an HTTP handler is a valid
//! component to the CLI, which names the `wasi:http/proxy` world for it.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wasmpod_image::describe::describe;
use wasmpod_image::wasm::WasmKind;
use wasmpod_shim::engine::http::exports_http_handler;
use wasmpod_shim::isolation::rootfs::{classify, ProgramKind};

fuzz_target!(|data: &[u8]| {
    let kind = classify(data);
    let handler = exports_http_handler(data);
    if handler {
        assert_eq!(kind, Some(ProgramKind::Wasm));
    }
    match describe(data, Path::new("fuzz.wasm")) {
        Ok(info) => {
            assert_eq!(
                kind,
                Some(ProgramKind::Wasm),
                "valid wasm starts with \\0asm"
            );
            assert_eq!(info.size as usize, data.len());
            if info.kind == WasmKind::Module {
                assert!(!handler, "a core module is no HTTP handler");
            }
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
});
