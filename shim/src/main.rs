//! `containerd-shim-wasmpod-v1`: containerd starts it; `-v` prints the version.

use wasmpod_shim::{service::Service, RUNTIME_TYPE, VERSION};

fn main() {
    if std::env::args()
        .skip(1)
        .any(|a| a == "-v" || a == "--version" || a == "-version")
    {
        println!("containerd-shim-wasmpod-v1 (wasmpod) {VERSION}");
        println!("runtime type: {RUNTIME_TYPE}");
        println!("wasmtime: {}", wasmpod_shim::engine::WASMTIME_VERSION);
        return;
    }
    // One malloc arena: glibc otherwise gives each thread its own, and their touched pages are
    // private memory of every shim and of every container process forked from it.
    // SAFETY: called before any other thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    // One worker is plenty for a shim's handful of requests; every thread costs memory.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build();
    match runtime {
        Ok(rt) => rt.block_on(containerd_shim::asynchronous::run::<Service>(
            RUNTIME_TYPE,
            None,
        )),
        Err(e) => {
            eprintln!("containerd-shim-wasmpod-v1: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    }
}
