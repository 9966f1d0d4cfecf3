//! Entrypoints wasmpod cannot run: each `ctr run` fails, says what is wrong, and leaves no
//! task, container, shim, mount or cgroup behind (checked by `with_containerd`).

use std::time::Duration;

use anyhow::{ensure, Result};
use wasmpod_integration::{images, with_containerd};

/// Runs the bad image `name` and checks the failure mentions one of `words`.
fn fails_naming(name: &str, words: &[&str]) -> Result<()> {
    with_containerd(|ctd| {
        let img = images().bad(name)?;
        let out = ctd
            .import(&img)?
            .run(&img)
            .timeout(Duration::from_secs(30))
            .exec()?;
        ensure!(out.code() != 0, "{name} ran successfully: {out}");
        ensure!(
            out.mentions_any(words),
            "{name}: no message with any of {words:?}:\n{out}"
        );
        Ok(())
    })
}

/// A text file as `/app.wasm` (neither ELF, `#!` nor wasm) is refused as not WebAssembly.
#[test]
fn not_wasm_is_refused() -> Result<()> {
    fails_naming(
        "not-wasm",
        &[
            "neither a webassembly",
            "not a wasm",
            "not webassembly",
            "not a webassembly",
            "magic",
        ],
    )
}

/// A file with the wasm header but garbage sections is refused as invalid.
#[test]
fn invalid_module_is_refused() -> Result<()> {
    fails_naming(
        "invalid",
        &["invalid", "malformed", "failed to parse", "section"],
    )
}

/// A module importing a host function nobody provides fails naming the import.
#[test]
fn unknown_import_is_named() -> Result<()> {
    fails_naming("imports-env", &["missing_host_fn", "unknown import"])
}

/// An entrypoint path that does not exist in the rootfs fails naming the path.
#[test]
fn missing_entrypoint_is_named() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("hello")?;
        let out = ctd
            .import(&img)?
            .run(&img)
            .argv(["/missing.wasm"])
            .timeout(Duration::from_secs(30))
            .exec()?;
        ensure!(out.code() != 0, "ran: {out}");
        ensure!(
            out.mentions_any(&["/missing.wasm"]),
            "path not named:\n{out}"
        );
        ensure!(
            out.mentions_any(&["not found", "no such file", "does not exist"]),
            "problem not named:\n{out}"
        );
        Ok(())
    })
}

/// A logging program (`ctr run --log-uri binary://...`) that does not exist: Create fails,
/// naming the URI.
#[test]
fn a_missing_logging_program_is_refused_naming_it() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("hello")?;
        let out = ctd
            .import(&img)?
            .run(&img)
            .flag("--log-uri=binary:///nonexistent/wasmpod-logger")
            .timeout(Duration::from_secs(30))
            .exec()?;
        ensure!(out.code() != 0, "ran without its logging program: {out}");
        ensure!(
            out.mentions_any(&[
                "binary:///nonexistent/wasmpod-logger: cannot run the logging program"
            ]),
            "{out}"
        );
        Ok(())
    })
}
