//! Resource limits from the OCI spec applied to wasm guests (the `memhog` program).

use std::time::Duration;

use anyhow::{ensure, Result};
use wasmpod_integration::{images, with_containerd};

const MIB: u64 = 1 << 20;

/// Largest `allocated N MiB` the program reported.
fn allocated(stdout: &str) -> u64 {
    stdout
        .lines()
        .filter_map(|l| {
            l.strip_prefix("allocated ")?
                .strip_suffix(" MiB")?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

/// Under `--memory-limit` 64 MiB, a guest growing towards 512 MiB is stopped quickly with a
/// non-zero status, before it reports more than the limit.
#[test]
fn memhog_stops_at_memory_limit() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("memhog")?;
        let out = ctd
            .import(&img)?
            .run(&img)
            .args(["512"])
            .memory_limit(64 * MIB)
            .timeout(Duration::from_secs(60))
            .exec()?;
        ensure!(
            out.code() != 0,
            "memhog finished under a 64 MiB limit: {out}"
        );
        ensure!(!out.stdout.contains("done"), "{out}");
        ensure!(
            allocated(&out.stdout) <= 64,
            "allocated past the limit: {out}"
        );
        ensure!(
            out.elapsed < Duration::from_secs(20),
            "took {:?}: {out}",
            out.elapsed
        );
        Ok(())
    })
}

/// A guest that aborts when refused memory at the limit (as Rust's allocator does by default)
/// ends as an OOM-killed process would: status 137, and a message that says why.
#[test]
fn memhog_that_aborts_at_the_limit_ends_out_of_memory() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("memhog")?;
        let out = ctd
            .import(&img)?
            .run(&img)
            .args(["512", "--abort"])
            .memory_limit(64 * MIB)
            .timeout(Duration::from_secs(60))
            .exec()?;
        ensure!(out.code() == 137, "{out}");
        ensure!(
            out.stderr.contains("wasmpod: out of memory"),
            "the reason must be in the output: {out}"
        );
        ensure!(allocated(&out.stdout) <= 64, "{out}");
        Ok(())
    })
}

/// Without a limit the same program allocating 96 MiB finishes, so the limit is the cause.
#[test]
fn memhog_completes_without_limit() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("memhog")?;
        let out = ctd.import(&img)?.run(&img).args(["96"]).exec()?;
        out.success()?;
        ensure!(
            allocated(&out.stdout) == 96 && out.stdout.ends_with("done\n"),
            "{out}"
        );
        Ok(())
    })
}
