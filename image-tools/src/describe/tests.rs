//! `describe` against small binaries written in WAT.

use super::*;
use crate::testdata::COMPONENT_WAT;

fn info(wat: &str) -> WasmInfo {
    describe(&wat::parse_str(wat).unwrap(), Path::new("x.wasm")).unwrap()
}

fn names(group: &Interface) -> Vec<&str> {
    group.items.iter().map(|i| i.name.as_str()).collect()
}

#[test]
fn component_imports_and_exports_come_from_its_type() {
    let info = info(COMPONENT_WAT);
    assert_eq!(info.kind, WasmKind::Component);
    assert_eq!(info.wasi, WasiVersion::Preview2);
    assert_eq!(info.imports.len(), 2);
    assert_eq!(info.imports[0].name, "wasi:cli/environment@0.2.0");
    assert_eq!(names(&info.imports[0]), ["get-environment", "initial-cwd"]);
    assert_eq!(info.imports[1].name, "");
    assert_eq!(
        info.imports[1].items,
        [Item {
            name: "log".into(),
            kind: "func"
        }]
    );
    assert_eq!(info.exports.len(), 1);
    assert_eq!(info.exports[0].name, "wasi:cli/run@0.2.0");
    assert_eq!(names(&info.exports[0]), ["run"]);
    assert_eq!(info.world.as_deref(), Some("wasi:cli/command@0.2.0"));

    let summary = info.component_summary().unwrap();
    assert_eq!(summary.imports, ["wasi:cli/environment@0.2.0", "log"]);
    assert_eq!(summary.exports, ["wasi:cli/run@0.2.0"]);
    assert_eq!(summary.target.as_deref(), Some("wasi:cli/command@0.2.0"));
}

#[test]
fn core_module_imports_are_grouped_by_module() {
    let info = info(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
          (import "env" "memory" (memory 1))
          (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
          (func (export "_start"))
          (global (export "g") i32 (i32.const 0)))"#,
    );
    assert_eq!(info.kind, WasmKind::Module);
    assert_eq!(info.wasi, WasiVersion::Preview1);
    assert_eq!(info.imports[0].name, "wasi_snapshot_preview1");
    assert_eq!(names(&info.imports[0]), ["fd_write", "proc_exit"]);
    assert_eq!(info.imports[1].name, "env");
    assert_eq!(info.imports[1].items[0].kind, "memory");
    assert_eq!(info.exports[0].name, "");
    let kinds: Vec<&str> = info.exports[0].items.iter().map(|i| i.kind).collect();
    assert_eq!(kinds, ["func", "global"]);
    assert_eq!(info.world, None);
    assert_eq!(info.component_summary(), None);
    assert!(info.digest.starts_with("sha256:") && info.digest.len() == 71);
}

#[test]
fn wasi_version_and_nested_items() {
    assert_eq!(info("(module)").wasi, WasiVersion::None);
    let p0 = info(r#"(module (import "wasi_unstable" "proc_exit" (func (param i32))))"#);
    assert_eq!(p0.wasi, WasiVersion::Preview0);
    // Imports of nested modules are not the component's own.
    let nested = info(
        r#"(component
             (core module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32))))
             (component (import "inner" (func))))"#,
    );
    assert!(nested.imports.is_empty(), "{:?}", nested.imports);
    assert_eq!(nested.wasi, WasiVersion::None);
    let proxy = info(
        r#"(component
             (instance $h)
             (export "wasi:http/incoming-handler@0.2.3" (instance $h)))"#,
    );
    assert_eq!(proxy.world.as_deref(), Some("wasi:http/proxy@0.2.3"));
}

#[test]
fn invalid_binaries_are_refused_with_the_name() {
    let err = describe(b"\0asm\x01\0\0\0\x01", Path::new("bad.wasm")).unwrap_err();
    assert!(err.to_string().contains("bad.wasm"), "{err}");
}
