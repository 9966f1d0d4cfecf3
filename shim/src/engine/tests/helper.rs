//! The compile helper contract: what [`WasmEngine::compile_into_cache`] stores is what a load
//! maps; a load uses the file its helper left; a helper that fails or is missing only means
//! compiling in process. Helpers here are shell scripts standing in for the shim binary.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::super::helper::compile_in;
use super::*;

/// An executable `sh` script `body` in `dir`.
fn script(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("helper.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write helper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn engine_with_helper(cache: &Path, helper: PathBuf) -> WasmEngine {
    WasmEngine::new(EngineConfig {
        compile_helper: Some(helper),
        ..EngineConfig::with_cache_dir(cache)
    })
    .expect("engine")
}

#[test]
fn what_the_helper_stores_is_what_a_load_maps() {
    let f = fixture();
    let bytes = wat(HELLO);
    let file = f.engine.compile_into_cache(&bytes).expect("compile");
    let program = f.engine.load(Path::new(APP), &bytes).expect("load");
    assert!(program.from_cache(), "the stored file must be a hit");
    assert_eq!(program.cache_file(), file);
}

#[test]
fn the_helper_refuses_what_is_not_wasm_or_invalid() {
    let f = fixture();
    let err = f.engine.compile_into_cache(b"#!/bin/sh\n").unwrap_err();
    assert!(err.to_string().contains("not a WebAssembly"), "{err}");
    let err = f
        .engine
        .compile_into_cache(b"\0asm\x01\0\0\0\x05")
        .unwrap_err();
    assert!(
        err.to_string().contains("not a valid WebAssembly module"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(f.cache_dir()).unwrap().count(), 0);
}

/// The helper puts the artifact in place (a copy made beforehand, with a new inode); the load
/// maps that very file instead of compiling and replacing it.
#[test]
fn a_load_maps_the_file_its_helper_stored() {
    let f = fixture();
    let bytes = wat(HELLO);
    let file = f.engine.compile_into_cache(&bytes).expect("compile");
    let work = tempfile::tempdir().unwrap();
    let saved = work.path().join("saved.cwasm");
    std::fs::rename(&file, &saved).unwrap();
    let inode = work.path().join("inode");
    let helper = script(
        work.path(),
        &format!(
            "cat >/dev/null; cp {} {f} && stat -c %i {f} > {}",
            saved.display(),
            inode.display(),
            f = file.display()
        ),
    );

    let engine = engine_with_helper(f.cache_dir(), helper);
    let program = engine.load(Path::new(APP), &bytes).expect("load");
    assert!(!program.from_cache(), "a miss, filled by the helper");
    let written: u64 = std::fs::read_to_string(&inode)
        .expect("the helper ran")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().ino(), written);
}

#[test]
fn a_failing_or_missing_helper_means_compiling_in_process() {
    let work = tempfile::tempdir().unwrap();
    let failing = script(work.path(), "cat >/dev/null; echo boom >&2; exit 3");
    for helper in [failing, work.path().join("missing")] {
        let cache = tempfile::tempdir().unwrap();
        let engine = engine_with_helper(cache.path(), helper);
        let program = engine.load(Path::new(APP), &wat(HELLO)).expect("load");
        assert!(!program.from_cache());
        assert!(program.cache_file().is_file());
    }
}

#[test]
fn an_invalid_program_keeps_its_precise_error_behind_a_helper() {
    let work = tempfile::tempdir().unwrap();
    let failing = script(work.path(), "cat >/dev/null; echo invalid >&2; exit 1");
    let engine = engine_with_helper(work.path(), failing);
    let err = engine
        .load(Path::new(APP), b"\0asm\x01\0\0\0\x05")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("/app.wasm is not a valid WebAssembly module"),
        "{err}"
    );
}

#[test]
fn a_helper_failure_names_its_status_and_stderr() {
    let work = tempfile::tempdir().unwrap();
    let helper = script(work.path(), "cat >/dev/null; echo it broke >&2; exit 3");
    let err = compile_in(&helper, &[], b"\0asm").unwrap_err();
    assert!(
        err.contains("exit status: 3") && err.contains("it broke"),
        "{err}"
    );
    let err = compile_in(&work.path().join("missing"), &[], b"").unwrap_err();
    assert!(err.contains("cannot run"), "{err}");
    // A helper that exits 0 is taken at its word; the caller then checks the file.
    compile_in(&script(work.path(), "cat >/dev/null"), &[], b"\0asm").expect("success");
}
