//! Loading: kind detection, validation, import checks, the compile cache.

use std::path::Path;

use super::{fixture, wat, Fixture, APP, HELLO};
use crate::engine::{EngineConfig, EngineError, GuestExit, ProgramKind, WasmEngine};

#[test]
fn garbage_is_not_wasm() {
    let f = fixture();
    let err = f
        .engine
        .load(Path::new(APP), b"#!/bin/sh\necho hi\n")
        .expect_err("garbage");
    assert!(matches!(err, EngineError::NotWasm { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "/app.wasm is not a WebAssembly module or component"
    );
}

#[test]
fn precompiled_artifacts_are_not_accepted_as_programs() {
    let f = fixture();
    let program = f.load_wat(HELLO);
    let cwasm = std::fs::read(program.cache_file()).expect("read cache file");
    let err = f.engine.load(Path::new(APP), &cwasm).expect_err("cwasm");
    assert!(matches!(err, EngineError::NotWasm { .. }), "{err:?}");
}

#[test]
fn invalid_module_reports_the_reason() {
    let f = fixture();
    // A valid header followed by a truncated type section.
    let bytes = b"\0asm\x01\0\0\0\x01\x05\x01";
    let err = f.engine.load(Path::new(APP), bytes).expect_err("invalid");
    match &err {
        EngineError::Invalid { kind, reason, .. } => {
            assert_eq!(*kind, ProgramKind::Module);
            assert!(!reason.is_empty());
        }
        other => panic!("unexpected error: {other:?}"),
    }
    assert!(err
        .to_string()
        .starts_with("/app.wasm is not a valid WebAssembly module: "));
}

#[test]
fn module_kind_and_function_exports() {
    let f = fixture();
    let program = f.load_wat(HELLO);
    assert_eq!(program.kind(), ProgramKind::Module);
    // `memory` is not callable, so it is not listed.
    assert_eq!(program.exports(), ["_start".to_owned()]);
    assert_eq!(program.path(), Path::new(APP));
}

#[test]
fn non_wasi_import_is_rejected_at_load_naming_it() {
    let f = fixture();
    let bytes = wat(r#"(module (import "env" "foo" (func)) (func (export "_start")))"#);
    let err = f.engine.load(Path::new(APP), &bytes).expect_err("env.foo");
    match &err {
        EngineError::UnsatisfiedImport {
            module, name, kind, ..
        } => {
            assert_eq!(
                (module.as_str(), name.as_str(), *kind),
                ("env", "foo", "function")
            );
        }
        other => panic!("unexpected error: {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "/app.wasm imports `env`.`foo` (function), which wasmpod does not provide: only WASI \
         preview 1 `wasi_snapshot_preview1` / preview 2 `wasi:*` interfaces are available"
    );
}

#[test]
fn non_wasi_memory_import_names_its_kind() {
    let f = fixture();
    let bytes = wat(r#"(module (import "env" "memory" (memory 1)) (func (export "_start")))"#);
    let err = f
        .engine
        .load(Path::new(APP), &bytes)
        .expect_err("env.memory");
    assert!(
        matches!(&err, EngineError::UnsatisfiedImport { kind: "memory", .. }),
        "{err:?}"
    );
}

#[test]
fn unknown_wasi_function_is_a_link_error_naming_it() {
    let f = fixture();
    let bytes = wat(
        r#"(module (import "wasi_snapshot_preview1" "no_such_call" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
    );
    let err = f
        .engine
        .load(Path::new(APP), &bytes)
        .expect_err("unknown wasi import");
    assert!(matches!(&err, EngineError::Link { .. }), "{err:?}");
    assert!(err.to_string().contains("no_such_call"), "{err}");
}

#[test]
fn wasi_unstable_imports_are_provided() {
    let f = fixture();
    let bytes = wat(
        r#"(module (import "wasi_unstable" "proc_exit" (func (param i32))) (memory (export "memory") 1) (func (export "_start")))"#,
    );
    f.engine
        .load(Path::new(APP), &bytes)
        .expect("wasi_unstable module loads");
}

#[test]
fn second_load_is_a_cache_hit_and_does_not_compile() {
    let f = fixture();
    let bytes = wat(HELLO);
    let first = f.engine.load(Path::new(APP), &bytes).expect("first load");
    assert!(!first.from_cache());
    assert!(first.cache_file().starts_with(f.cache_dir()));
    assert!(first.cache_file().is_file());
    assert_eq!(
        first.cache_file().extension().and_then(|e| e.to_str()),
        Some("cwasm")
    );

    let second = f.engine.load(Path::new(APP), &bytes).expect("second load");
    assert!(second.from_cache(), "second load must map the cached code");
    assert_eq!(first.cache_file(), second.cache_file());

    // A new engine (a restarted shim) with the same settings hits too.
    let restarted = WasmEngine::new(EngineConfig::with_cache_dir(f.cache_dir())).expect("engine");
    assert!(restarted
        .load(Path::new(APP), &bytes)
        .expect("load")
        .from_cache());
    // Only the one artifact, no temporary files left behind.
    assert_eq!(
        std::fs::read_dir(f.cache_dir()).expect("read dir").count(),
        1
    );
}

#[test]
fn engine_settings_are_part_of_the_cache_key() {
    let f = fixture();
    let bytes = wat(HELLO);
    let default = f.engine.load(Path::new(APP), &bytes).expect("load");
    let small = WasmEngine::new(EngineConfig {
        memory_reservation: 1 << 20,
        ..EngineConfig::with_cache_dir(f.cache_dir())
    })
    .expect("engine");
    let other = small.load(Path::new(APP), &bytes).expect("load");
    assert!(!other.from_cache());
    assert_ne!(default.cache_file(), other.cache_file());
}

#[test]
fn corrupt_cache_file_is_recompiled_and_replaced() {
    let f = fixture();
    let bytes = wat(HELLO);
    let file = f
        .engine
        .load(Path::new(APP), &bytes)
        .expect("load")
        .cache_file()
        .to_owned();
    // The program (and its mapping) is dropped above, so rewriting in place is safe here.
    std::fs::write(&file, b"not a cwasm").expect("corrupt the cache file");

    let recovered = f
        .engine
        .load(Path::new(APP), &bytes)
        .expect("load after corruption");
    assert!(!recovered.from_cache(), "a corrupt file must be recompiled");
    assert_eq!(recovered.cache_file(), file);
    let run = super::run_captured(&f, &recovered, &super::plan());
    assert_eq!(run.stdout, b"hello\n");

    let again = f.engine.load(Path::new(APP), &bytes).expect("load");
    assert!(again.from_cache(), "the replaced file must be usable");
}

#[test]
fn concurrent_loads_of_the_same_program_are_safe() {
    let Fixture { cache, .. } = fixture();
    let bytes = wat(HELLO);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    // Separate engines stand in for separate shim processes.
                    let engine = WasmEngine::new(EngineConfig::with_cache_dir(cache.path()))
                        .expect("engine");
                    engine
                        .load(Path::new(APP), &bytes)
                        .map(|p| p.cache_file().to_owned())
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("thread").expect("concurrent load");
        }
    });
    let engine = WasmEngine::new(EngineConfig::with_cache_dir(cache.path())).expect("engine");
    assert!(engine
        .load(Path::new(APP), &bytes)
        .expect("load")
        .from_cache());
    assert_eq!(
        std::fs::read_dir(cache.path()).expect("read dir").count(),
        1
    );
}

#[test]
fn cache_dir_is_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().expect("temp dir");
    let dir = parent.path().join("a/b/cwasm");
    WasmEngine::new(EngineConfig::with_cache_dir(&dir)).expect("engine");
    let mode = std::fs::metadata(&dir)
        .expect("cache dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn default_config_is_documented_values() {
    let config = EngineConfig::default();
    assert_eq!(
        config.cache_dir,
        Path::new(crate::engine::DEFAULT_CACHE_DIR)
    );
    assert_eq!(config.memory_reservation, 4 << 30);
    assert_eq!(config.memory_guard_size, 32 << 20);
    assert!(config.parallel_compilation);
}

#[test]
fn retained_fds_refer_to_the_cache_file() {
    use std::os::unix::fs::MetadataExt;
    let f = fixture();
    for src in [HELLO, super::component::EXPORTS] {
        let program = f.load_wat(src);
        let fds = program.retained_fds();
        assert_eq!(fds.len(), 1, "{:?}: {fds:?}", program.kind());
        let cache = std::fs::metadata(program.cache_file()).expect("cache file");
        let held = std::fs::metadata(format!("/proc/self/fd/{}", fds[0])).expect("fd");
        assert_eq!((held.dev(), held.ino()), (cache.dev(), cache.ino()));
        // A cache hit retains its own descriptor too.
        let again = f.load_wat(src);
        assert_eq!(again.retained_fds().len(), 1);
        assert_ne!(again.retained_fds(), fds);
    }
}

#[test]
fn closed_retained_fd_is_reported_before_instantiation() {
    let f = fixture();
    let program = f.load_wat(HELLO);
    let fd = program.retained_fds()[0];
    // Stand-in for a close-all-fds step followed by an unrelated open reusing the number.
    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd).expect("dup2");
    let (io, _, _) = crate::engine::GuestIo::captured(None, 1024);
    let err = f
        .engine
        .run(&program, &super::plan(), io)
        .expect_err("fd was replaced");
    assert!(
        matches!(&err, EngineError::CodeFileClosed { fd: f, .. } if *f == fd),
        "{err:?}"
    );
}

#[test]
fn without_shared_initial_memory_nothing_is_retained() {
    let f = fixture();
    let engine = WasmEngine::new(EngineConfig {
        share_initial_memory: false,
        ..EngineConfig::with_cache_dir(f.cache_dir())
    })
    .expect("engine");
    for src in [HELLO, super::component::EXPORTS] {
        let program = engine.load(Path::new(APP), &wat(src)).expect("load");
        assert!(program.retained_fds().is_empty());
    }
    let program = engine.load(Path::new(APP), &wat(HELLO)).expect("load");
    let (io, stdout, _) = crate::engine::GuestIo::captured(None, 1024);
    assert_eq!(
        engine.run(&program, &super::plan(), io).expect("run"),
        GuestExit::Exited(0)
    );
    assert_eq!(&stdout.contents()[..], b"hello\n");
}
