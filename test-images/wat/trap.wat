;; trap: a WASI command whose _start executes `unreachable`.
;; No imports, so it instantiates anywhere; it must end with a wasm trap.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    unreachable))
