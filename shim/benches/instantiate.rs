//! `make bench`, section 5: how long the engine takes to start a program it has in its cache,
//! the work the container's init process does after the fork (WASI context, store,
//! instantiation, the entry call), measured in this process with no container around it.
//!
//! `cargo bench -p wasmpod-shim --bench instantiate -- [FILE.wasm ...]`: an empty command module
//! (the engine's own cost) and then each file given (a real program's `_start` included), each
//! loaded once from a fresh cache and run `RUNS` times (default 2000); prints median and p99.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmpod_shim::engine::{EngineConfig, GuestExit, GuestIo, Program, WasmEngine};
use wasmpod_shim::plan::{Entrypoint, GuestLimits, NetworkAccess, WasiPlan};

/// A command whose `_start` returns at once, with one page of memory and a data segment.
const EMPTY: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "wasmpod")
  (func (export "_start")))"#;

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2000);
    // cargo passes `--bench` to harness-less benches.
    let files: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .collect();
    let cache = tempfile::tempdir().expect("temp cache dir");
    let engine = WasmEngine::new(EngineConfig::with_cache_dir(cache.path())).expect("engine");

    let empty = wat::parse_str(EMPTY).expect("the empty module parses");
    report(&engine, Path::new("empty module"), &empty, runs);
    for file in files {
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        report(&engine, &file, &bytes, runs);
    }
}

/// Loads `bytes` (compiling into the cache, then mapping it as a container start would) and
/// prints the median and p99 of `runs` runs.
fn report(engine: &WasmEngine, name: &Path, bytes: &[u8], runs: usize) {
    engine.load(name, bytes).expect("first load compiles");
    let program = engine.load(name, bytes).expect("cached load");
    assert!(program.from_cache(), "the second load must map the cache");
    let plan = plan(name);
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| timed_run(engine, &program, &plan))
        .collect();
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    println!(
        "   {:<28} median {:7.1} us   p99 {:7.1} us   ({runs} runs)",
        name.file_name()
            .unwrap_or(name.as_os_str())
            .to_string_lossy(),
        at(0.5),
        at(0.99)
    );
}

fn timed_run(engine: &WasmEngine, program: &Program, plan: &WasiPlan) -> Duration {
    let (io, _stdout, _stderr) = GuestIo::captured(None, 64 << 10);
    let start = Instant::now();
    let exit = engine.run(program, plan, io).expect("run");
    let took = start.elapsed();
    assert!(
        matches!(exit, GuestExit::Exited(0)),
        "{}: {exit:?}",
        plan.entrypoint.path.display()
    );
    took
}

fn plan(program: &Path) -> WasiPlan {
    WasiPlan {
        argv: vec!["app".into()],
        env: vec![("GREETING".into(), "hello".into())],
        cwd: PathBuf::from("/"),
        preopens: vec![],
        entrypoint: Entrypoint {
            path: program.to_owned(),
            export: None,
        },
        network: NetworkAccess::Denied,
        limits: GuestLimits::default(),
        http: Default::default(),
    }
}
