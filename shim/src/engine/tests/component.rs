//! Components: loading, import checks and entrypoints. A real wasip2 command is exercised by
//! the integration suite; here only hand-written components without WASI imports.

use std::path::Path;

use super::{fixture, plan, run_captured, wat, APP};
use crate::engine::{EngineError, GuestExit, GuestIo, ProgramKind};

/// Exports `hello: func() -> s32` (3), `fails: func() -> result` (err) and
/// `quiet: func()`, but no `wasi:cli/run`.
pub(super) const EXPORTS: &str = r#"
(component
  (core module $m
    (func (export "three") (result i32) i32.const 3)
    (func (export "one") (result i32) i32.const 1)
    (func (export "nothing")))
  (core instance $i (instantiate $m))
  (func $hello (result s32) (canon lift (core func $i "three")))
  (func $fails (result (result)) (canon lift (core func $i "one")))
  (func $quiet (canon lift (core func $i "nothing")))
  (export "hello" (func $hello))
  (export "fails" (func $fails))
  (export "quiet" (func $quiet)))
"#;

#[test]
fn empty_component_is_not_a_command() {
    let f = fixture();
    let program = f.load_wat("(component)");
    assert_eq!(program.kind(), ProgramKind::Component);
    assert!(program.exports().is_empty());

    let err = program.check_entry(None).expect_err("no wasi:cli/run");
    assert!(matches!(&err, EngineError::NotACommand { .. }), "{err:?}");
    assert!(err.to_string().contains("`wasi:cli/run`"), "{err}");

    let (io, _, _) = GuestIo::captured(None, 1024);
    let err = f
        .engine
        .run(&program, &plan(), io)
        .expect_err("run without wasi:cli/run");
    assert!(err.to_string().contains("wasi:cli/run"), "{err}");
}

#[test]
fn component_cache_hit() {
    let f = fixture();
    let bytes = wat(EXPORTS);
    assert!(!f
        .engine
        .load(Path::new(APP), &bytes)
        .expect("load")
        .from_cache());
    assert!(f
        .engine
        .load(Path::new(APP), &bytes)
        .expect("load")
        .from_cache());
}

#[test]
fn named_component_exports_run() {
    let f = fixture();
    let program = f.load_wat(EXPORTS);
    assert_eq!(program.exports(), ["hello", "fails", "quiet"]);
    for (export, code) in [("hello", 3), ("fails", 1), ("quiet", 0)] {
        let mut p = plan();
        p.entrypoint.export = Some(export.into());
        assert_eq!(
            run_captured(&f, &program, &p).exit,
            GuestExit::Exited(code),
            "{export}"
        );
    }
}

#[test]
fn missing_component_export_lists_exports() {
    let f = fixture();
    let program = f.load_wat(EXPORTS);
    let err = program.check_entry(Some("run")).expect_err("missing");
    assert_eq!(
        err.to_string(),
        "export `run` not found in /app.wasm; exports: hello, fails, quiet"
    );
    let err = program.check_entry(None).expect_err("not a command");
    assert!(
        err.to_string().contains("exports: hello, fails, quiet"),
        "{err}"
    );
}

#[test]
fn non_wasi_component_import_is_rejected_at_load() {
    let f = fixture();
    let bytes = wat(r#"(component (import "foo:bar/baz" (instance)))"#);
    let err = f
        .engine
        .load(Path::new(APP), &bytes)
        .expect_err("foo:bar/baz");
    match &err {
        EngineError::UnsatisfiedComponentImport { name, kind, .. } => {
            assert_eq!((name.as_str(), *kind), ("foo:bar/baz", "instance"));
        }
        other => panic!("unexpected error: {other:?}"),
    }
    assert!(
        err.to_string().contains("imports `foo:bar/baz` (instance)"),
        "{err}"
    );
}

#[test]
fn unknown_wasi_component_import_is_a_link_error_at_load() {
    let f = fixture();
    let bytes =
        wat(r#"(component (import "wasi:nope/thing@0.2.0" (instance (export "f" (func)))))"#);
    let err = f
        .engine
        .load(Path::new(APP), &bytes)
        .expect_err("wasi:nope");
    assert!(matches!(&err, EngineError::Link { .. }), "{err:?}");
    assert!(err.to_string().contains("wasi:nope/thing"), "{err}");
}
