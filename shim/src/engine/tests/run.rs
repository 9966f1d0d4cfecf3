//! Running core modules: WASI p1 behaviour, exit codes, limits, entrypoints.

use super::{fixture, plan, preopen, run_captured, run_with_stdin, HELLO};
use crate::engine::{EngineError, GuestExit, GuestIo, TRAP_EXIT_CODE};

const EXIT_7: &str = r#"
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 7))))
"#;

/// Writes all args, then all env entries (each NUL-terminated) to stdout.
const PRINT_ARGS_ENV: &str = r#"
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $env_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; 0: count, 4: buffer size, 16: iovec, 32: nwritten, 64: pointers, 1024: strings
  (func $emit (param $len i32)
    (i32.store (i32.const 16) (i32.const 1024))
    (i32.store (i32.const 20) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32))))
  (func (export "_start")
    (drop (call $args_sizes (i32.const 0) (i32.const 4)))
    (drop (call $args_get (i32.const 64) (i32.const 1024)))
    (call $emit (i32.load (i32.const 4)))
    (drop (call $env_sizes (i32.const 0) (i32.const 4)))
    (drop (call $env_get (i32.const 64) (i32.const 1024)))
    (call $emit (i32.load (i32.const 4)))))
"#;

/// `path_open(fd 3, "new.txt", O_CREAT, FD_WRITE)` and exits with the errno.
const CREATE_IN_FIRST_PREOPEN: &str = r#"
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "new.txt")
  (func (export "_start")
    (call $exit
      (call $path_open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 7)
        (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 0)))))
"#;

/// Grows by 1 page (must succeed), then by 100 pages; exits 0 if the latter returned -1,
/// 2 if it succeeded, 1 if the first growth failed.
const GROW: &str = r#"
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (if (i32.ne (memory.grow (i32.const 1)) (i32.const 1)) (then (call $exit (i32.const 1))))
    (if (i32.ne (memory.grow (i32.const 100)) (i32.const -1)) (then (call $exit (i32.const 2))))
    (call $exit (i32.const 0))))
"#;

/// A module with several entrypoints.
const ENTRYPOINTS: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8) "hi")
  (global $g (mut i32) (i32.const 0))
  (func (export "_initialize") (global.set $g (i32.const 5)))
  (func (export "_start") unreachable)
  (func (export "greet")
    (i32.store (i32.const 0) (i32.const 8))
    (i32.store (i32.const 4) (i32.const 2))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 100))))
  (func (export "initialized") (result i32) (global.get $g))
  (func (export "add") (param i32) (result i32) (local.get 0)))
"#;

#[test]
fn hello_writes_to_stdout() {
    let f = fixture();
    let run = run_captured(&f, &f.load_wat(HELLO), &plan());
    assert_eq!(run.exit, GuestExit::Exited(0));
    assert_eq!(run.stdout, b"hello\n");
    assert!(run.stderr.is_empty());
}

#[test]
fn proc_exit_sets_the_exit_code() {
    let f = fixture();
    let run = run_captured(&f, &f.load_wat(EXIT_7), &plan());
    assert_eq!(run.exit, GuestExit::Exited(7));
    assert_eq!(run.exit.code(), 7);
}

#[test]
fn returning_from_start_exits_zero() {
    let f = fixture();
    let program = f.load_wat(r#"(module (func (export "_start")))"#);
    assert_eq!(
        run_captured(&f, &program, &plan()).exit,
        GuestExit::Exited(0)
    );
}

#[test]
fn unreachable_traps_with_code_134_and_a_backtrace() {
    let f = fixture();
    let program =
        f.load_wat(r#"(module (func $boom unreachable) (func (export "_start") (call $boom)))"#);
    let exit = run_captured(&f, &program, &plan()).exit;
    assert_eq!(exit.code(), TRAP_EXIT_CODE);
    assert_eq!(TRAP_EXIT_CODE, 134);
    match exit {
        GuestExit::Trapped { message } => {
            assert!(message.contains("unreachable"), "{message}");
            assert!(
                message.contains("boom"),
                "backtrace names the function: {message}"
            );
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn wasi_unstable_proc_exit_works() {
    let f = fixture();
    let program = f.load_wat(
        r#"(module (import "wasi_unstable" "proc_exit" (func $exit (param i32)))
             (memory (export "memory") 1) (func (export "_start") (call $exit (i32.const 3))))"#,
    );
    assert_eq!(
        run_captured(&f, &program, &plan()).exit,
        GuestExit::Exited(3)
    );
}

#[test]
fn guest_sees_exactly_the_plan_args_and_env() {
    let f = fixture();
    let mut p = plan();
    p.argv = vec!["app".into(), "one".into()];
    p.env = vec![("A".into(), "1".into()), ("B".into(), "two=2".into())];
    let run = run_captured(&f, &f.load_wat(PRINT_ARGS_ENV), &p);
    assert_eq!(run.exit, GuestExit::Exited(0));
    // Nothing of the test process's own environment (PATH, HOME...) leaks in.
    assert_eq!(run.stdout, b"app\0one\0A=1\0B=two=2\0");
}

#[test]
fn non_root_cwd_is_exported_as_pwd() {
    let f = fixture();
    let mut p = plan();
    p.cwd = "/srv/app".into();
    let run = run_captured(&f, &f.load_wat(PRINT_ARGS_ENV), &p);
    assert_eq!(run.stdout, b"app\0PWD=/srv/app\0");
}

#[test]
fn captured_stdin_is_readable() {
    let f = fixture();
    let program = f.load_wat(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 64))
            (i32.store (i32.const 4) (i32.const 32))
            (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
            (i32.store (i32.const 4) (i32.load (i32.const 8)))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
    );
    let run = run_with_stdin(&f, &program, &plan(), Some(b"ping"));
    assert_eq!(run.stdout, b"ping");
}

#[test]
fn read_only_preopen_rejects_create_and_read_write_accepts() {
    let f = fixture();
    let program = f.load_wat(CREATE_IN_FIRST_PREOPEN);
    let dir = tempfile::tempdir().expect("temp dir");

    let mut ro = plan();
    ro.preopens = vec![preopen(dir.path(), "/data", true)];
    let exit = run_captured(&f, &program, &ro).exit;
    assert!(
        matches!(exit, GuestExit::Exited(errno) if errno != 0),
        "create in a read-only preopen must fail, got {exit:?}"
    );
    assert!(!dir.path().join("new.txt").exists());

    let mut rw = plan();
    rw.preopens = vec![preopen(dir.path(), "/data", false)];
    assert_eq!(run_captured(&f, &program, &rw).exit, GuestExit::Exited(0));
    assert!(dir.path().join("new.txt").is_file());
}

#[test]
fn missing_preopen_dir_is_an_error() {
    let f = fixture();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut p = plan();
    p.preopens = vec![preopen(&dir.path().join("missing"), "/data", false)];
    let (io, _, _) = GuestIo::captured(None, 1024);
    let err = f
        .engine
        .run(&f.load_wat(HELLO), &p, io)
        .expect_err("missing dir");
    assert!(matches!(&err, EngineError::Preopen { .. }), "{err:?}");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn memory_growth_beyond_the_limit_returns_minus_one() {
    let f = fixture();
    let program = f.load_wat(GROW);
    let mut limited = plan();
    limited.limits.max_memory_bytes = Some(2 * 65536);
    assert_eq!(
        run_captured(&f, &program, &limited).exit,
        GuestExit::Exited(0)
    );
    // Without a limit the same growth succeeds.
    assert_eq!(
        run_captured(&f, &program, &plan()).exit,
        GuestExit::Exited(2)
    );
}

/// A guest that aborts when refused memory (as Rust's allocator does) ran out of memory: it ends
/// with 137 like an OOM-killed process; the same trap without a refusal stays a trap (134).
#[test]
fn a_trap_after_a_refused_growth_is_out_of_memory() {
    let f = fixture();
    let program = f.load_wat(
        r#"(module
          (memory (export "memory") 1)
          (func (export "_start")
            (if (i32.eq (memory.grow (i32.const 100)) (i32.const -1)) (then unreachable))
            unreachable))"#,
    );
    let mut limited = plan();
    limited.limits.max_memory_bytes = Some(2 * 65536);
    let exit = run_captured(&f, &program, &limited).exit;
    assert!(matches!(exit, GuestExit::OutOfMemory { .. }), "{exit:?}");
    assert_eq!(exit.code(), 137);
    assert!(exit
        .trap_message()
        .is_some_and(|m| m.contains("unreachable")));

    let exit = run_captured(&f, &program, &plan()).exit;
    assert!(matches!(exit, GuestExit::Trapped { .. }), "{exit:?}");
    assert_eq!(exit.code(), 134);
}

#[test]
fn initial_memory_above_the_limit_fails_to_instantiate() {
    let f = fixture();
    let program = f.load_wat(r#"(module (memory (export "memory") 4) (func (export "_start")))"#);
    let mut p = plan();
    p.limits.max_memory_bytes = Some(65536);
    let (io, _, _) = GuestIo::captured(None, 1024);
    let err = f
        .engine
        .run(&program, &p, io)
        .expect_err("too much initial memory");
    assert!(matches!(&err, EngineError::Instantiate { .. }), "{err:?}");
}

#[test]
fn named_export_runs_instead_of_start() {
    let f = fixture();
    let program = f.load_wat(ENTRYPOINTS);
    let mut p = plan();
    p.entrypoint.export = Some("greet".into());
    let run = run_captured(&f, &program, &p);
    assert_eq!(run.exit, GuestExit::Exited(0));
    assert_eq!(run.stdout, b"hi");
}

#[test]
fn named_export_returning_i32_sets_exit_code_after_initialize() {
    let f = fixture();
    let program = f.load_wat(ENTRYPOINTS);
    let mut p = plan();
    p.entrypoint.export = Some("initialized".into());
    // 5 proves `_initialize` ran before the export.
    assert_eq!(run_captured(&f, &program, &p).exit, GuestExit::Exited(5));
}

#[test]
fn missing_export_names_the_available_ones() {
    let f = fixture();
    let program = f.load_wat(ENTRYPOINTS);
    let err = program
        .check_entry(Some("nope"))
        .expect_err("missing export");
    assert_eq!(
        err.to_string(),
        "export `nope` not found in /app.wasm; exports: _initialize, _start, greet, initialized, add"
    );
    let mut p = plan();
    p.entrypoint.export = Some("nope".into());
    let (io, _, _) = GuestIo::captured(None, 1024);
    let err = f.engine.run(&program, &p, io).expect_err("missing export");
    assert!(matches!(err, EngineError::ExportNotFound { .. }), "{err:?}");
}

#[test]
fn module_without_start_names_start() {
    let f = fixture();
    let program = f.load_wat(r#"(module (func (export "main")))"#);
    let err = program.check_entry(None).expect_err("no _start");
    assert_eq!(
        err.to_string(),
        "export `_start` not found in /app.wasm; exports: main"
    );
}

#[test]
fn export_with_parameters_is_rejected() {
    let f = fixture();
    let program = f.load_wat(ENTRYPOINTS);
    let err = program
        .check_entry(Some("add"))
        .expect_err("wrong signature");
    assert!(
        matches!(&err, EngineError::ExportSignature { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("`add`"), "{err}");
}

#[test]
fn run_refuses_to_block_inside_a_tokio_runtime() {
    let f = fixture();
    let program = f.load_wat(HELLO);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let result = runtime.block_on(async {
        let (io, _, _) = GuestIo::captured(None, 1024);
        f.engine.run(&program, &plan(), io)
    });
    assert!(
        matches!(result, Err(EngineError::InsideAsyncRuntime)),
        "{result:?}"
    );
}
