//! Engine tests: small inline WAT programs, a fresh temp cache per test.
//!
//! `load`: kind detection, cache behaviour, import checks. `helper`: the compile helper. `run`: WASI p1 behaviour, exit
//! codes, limits, entrypoints. `component`: component-model loading and entrypoints.

mod component;
mod helper;
mod integrity;
mod load;
mod run;

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::{EngineConfig, GuestExit, GuestIo, Program, WasmEngine};
use crate::plan::{Entrypoint, GuestLimits, NetworkAccess, Preopen, WasiPlan};

/// The path programs are loaded as in tests (only used in messages).
const APP: &str = "/app.wasm";

/// An engine whose cache lives in a temp dir that lives as long as the fixture.
struct Fixture {
    cache: TempDir,
    engine: WasmEngine,
}

fn fixture() -> Fixture {
    let cache = tempfile::tempdir().expect("temp cache dir");
    let engine = WasmEngine::new(EngineConfig::with_cache_dir(cache.path())).expect("engine");
    Fixture { cache, engine }
}

fn wat(src: &str) -> Vec<u8> {
    wat::parse_str(src).expect("test WAT must parse")
}

impl Fixture {
    fn load_wat(&self, src: &str) -> Program {
        self.engine.load(Path::new(APP), &wat(src)).expect("load")
    }

    fn cache_dir(&self) -> &Path {
        self.cache.path()
    }
}

fn plan() -> WasiPlan {
    WasiPlan {
        argv: vec!["app".into()],
        env: vec![],
        cwd: PathBuf::from("/"),
        preopens: vec![],
        entrypoint: Entrypoint {
            path: PathBuf::from(APP),
            export: None,
        },
        network: NetworkAccess::Denied,
        limits: GuestLimits::default(),
        http: Default::default(),
    }
}

fn preopen(host: &Path, guest: &str, read_only: bool) -> Preopen {
    Preopen {
        host: host.to_owned(),
        guest: guest.to_owned(),
        read_only,
    }
}

/// Output of a captured run.
struct Captured {
    exit: GuestExit,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs with captured I/O and the given stdin.
fn run_with_stdin(
    f: &Fixture,
    program: &Program,
    plan: &WasiPlan,
    stdin: Option<&[u8]>,
) -> Captured {
    let (io, stdout, stderr) = GuestIo::captured(stdin.map(<[u8]>::to_vec), 1 << 20);
    let exit = f.engine.run(program, plan, io).expect("run");
    Captured {
        exit,
        stdout: stdout.contents().to_vec(),
        stderr: stderr.contents().to_vec(),
    }
}

fn run_captured(f: &Fixture, program: &Program, plan: &WasiPlan) -> Captured {
    run_with_stdin(f, program, plan, None)
}

/// `_start` writes "hello\n" to stdout with `fd_write`.
const HELLO: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8) "hello\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 8))
    (i32.store (i32.const 4) (i32.const 6))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 100)))))
"#;

#[test]
fn engine_and_program_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<WasmEngine>();
    assert_send_sync::<Program>();
}

#[test]
fn wasmtime_version_matches_the_lock_file() {
    let lock = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"));
    let expected = format!(
        "name = \"wasmtime\"\nversion = \"{}\"",
        super::WASMTIME_VERSION
    );
    assert!(
        lock.contains(&expected),
        "update engine::WASMTIME_VERSION to match Cargo.lock"
    );
}
