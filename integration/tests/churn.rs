//! Churn with leak accounting: the `churn` driver (src/bin/churn.rs) runs 1,000 create/start/
//! wait/delete cycles (`CHURN_CYCLES` to change it), 8 at a time, through containerd's gRPC API
//! on the lane's containerd: wasm modules, components, native busybox, execs into running
//! tasks, and creates that must fail (bad wasm, missing entrypoint). Every cycle must end as
//! its kind says and every count (processes, shim sockets, mounts, cgroups, bundles and state
//! dirs, containerd's fds, snapshots, the compile cache against its bound) must be back where
//! it started.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use wasmpod_integration::process::run_with_timeout;

/// Far above 1,000 cycles on a loaded 2-core machine (about a minute), far below "hung".
const TIMEOUT: Duration = Duration::from_secs(900);

/// The value of `key=` in the `churn-result` line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn churn_ends_every_cycle_as_expected_and_leaks_nothing() -> Result<()> {
    wasmpod_integration::require_shim()?;
    // The cgroup v2 VM runs a snapshot of the binaries: it names its copy.
    let churn = std::env::var_os("WASMPOD_CHURN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_churn")));
    let cycles = std::env::var("CHURN_CYCLES").unwrap_or_else(|_| "1000".into());
    let out = run_with_timeout(
        Command::new(&churn).args(["--cycles", &cycles, "--lane", "wasmpod-mix"]),
        TIMEOUT,
    )?;
    // The whole report, for the test log.
    eprintln!("{}\n{}", out.stdout, out.stderr);
    let result = out
        .stdout
        .lines()
        .find(|l| l.starts_with("churn-result "))
        .with_context(|| format!("no churn-result line:\n{out}"))?;
    // What went wrong, as the driver names it: leaks with what was added, unexpected ends,
    // the daemon's log lines on them.
    let why: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with("LEAK") || l.starts_with('|') || l.starts_with("unexpected")
        })
        .collect();
    let why = why.join("\n");
    ensure!(
        field(result, "cycles") == Some(cycles.as_str()),
        "not every cycle ran: {result}\n{why}"
    );
    ensure!(
        field(result, "unexpected") == Some("0"),
        "cycles ended otherwise than their kind says: {result}\n{why}"
    );
    ensure!(
        field(result, "leaks") == Some("0"),
        "counts not back where they started: {result}\n{why}"
    );
    ensure!(out.code() == 0, "churn failed:\n{out}");
    Ok(())
}
