//! `containerd-shim-wasmpod-v1`: containerd starts it; `-v` prints the version, `-info` the
//! runtime info protobuf containerd 2 asks for.

use std::io::{Read, Write};

use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::types::introspection::{RuntimeInfo, RuntimeVersion};
use wasmpod_shim::service::{self, Service};
use wasmpod_shim::{RUNTIME_TYPE, VERSION};

fn main() {
    wasmpod_shim::stages::process_started();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| a == "-v" || a == "--version" || a == "-version")
    {
        println!("containerd-shim-wasmpod-v1 (wasmpod) {VERSION}");
        println!("runtime type: {RUNTIME_TYPE}");
        println!("wasmtime: {}", wasmpod_shim::engine::WASMTIME_VERSION);
        return;
    }
    if args.first().map(String::as_str) == Some(wasmpod_shim::engine::COMPILE_COMMAND) {
        // The shim's compile helper (see wasmpod_shim::engine's `helper` module).
        if let Err(e) = wasmpod_shim::engine::bind_to_shim() {
            eprintln!("{e}");
            std::process::exit(1);
        }
        std::process::exit(
            match wasmpod_shim::instance::compile_stdin_into_cache(&args[1..]) {
                Ok(_) => 0,
                Err(e) => {
                    eprintln!("{e}");
                    1
                }
            },
        );
    }
    if args.iter().any(|a| a == "-info" || a == "--info") {
        std::process::exit(match print_info() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("containerd-shim-wasmpod-v1: -info: {e}");
                1
            }
        });
    }
    // One malloc arena: glibc otherwise gives each thread its own, and their touched pages are
    // private memory of every shim and of every container process forked from it.
    // SAFETY: called before any other thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let flags = match containerd_shim::parse(&args) {
        Ok(flags) => flags,
        Err(e) => fail(&format!("{e}")),
    };
    match flags.action.as_str() {
        // Still one thread: `start` may fork the serving shim.
        "start" => {
            if let Some(code) = service::start::start_by_fork(&flags, RUNTIME_TYPE) {
                std::process::exit(code);
            }
        }
        "" | "delete" => {}
        other => fail(&format!(
            "unknown action {other:?}: containerd runs the shim with start, delete or none"
        )),
    }
    let runtime = match service::runtime() {
        Ok(rt) => rt,
        Err(e) => fail(&format!("cannot start the async runtime: {e}")),
    };
    if flags.action.is_empty() {
        if let Err(e) = runtime.block_on(service::bootstrap::serve(RUNTIME_TYPE, flags)) {
            fail(&e);
        }
    } else {
        // A group's `start`, and `delete`.
        runtime.block_on(containerd_shim::asynchronous::run::<Service>(
            RUNTIME_TYPE,
            None,
        ));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("containerd-shim-wasmpod-v1: {message}");
    std::process::exit(1)
}

/// Writes the RuntimeInfo protobuf; containerd pipes the runtime options on stdin, which
/// wasmpod has none of yet, so they are read and ignored.
fn print_info() -> std::io::Result<()> {
    let mut options = Vec::new();
    std::io::stdin().read_to_end(&mut options)?;
    let info = RuntimeInfo {
        name: RUNTIME_TYPE.to_string(),
        version: MessageField::some(RuntimeVersion {
            version: VERSION.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let bytes = info.write_to_bytes().map_err(std::io::Error::other)?;
    std::io::stdout().write_all(&bytes)
}
