;; imports-env: a module that imports a host function no runtime provides
;; (env.missing_host_fn). It is valid wasm, but instantiation must fail
;; with an unknown-import / link error.
(module
  (import "env" "missing_host_fn" (func $missing (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $missing (i32.const 0)))))
