//! Small binaries shared by the unit tests.

/// A component importing one WASI interface and one bare function, and
/// exporting `wasi:cli/run` (so it targets `wasi:cli/command`).
pub(crate) const COMPONENT_WAT: &str = r#"
(component
  (import "wasi:cli/environment@0.2.0" (instance
    (export "get-environment" (func (result (list (tuple string string)))))
    (export "initial-cwd" (func (result (option string))))
  ))
  (import "log" (func (param "msg" string)))
  (core module $m (func (export "run") (result i32) i32.const 0))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $run-instance (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $run-instance))
)
"#;

/// A WASI preview 1 command module.
pub(crate) const MODULE_WAT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")))
"#;
