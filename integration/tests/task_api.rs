//! Which shim task API containerd speaks with wasmpod, on the lane's containerd.
//!
//! wasmpod's shim (the containerd-shim 0.11 crate) serves `containerd.task.v2.Task` and answers
//! `start` with a plain socket address; containerd 2 reads that as bootstrap version 2 and uses
//! its task API v2 client (a v3 shim would print `{"version":3,...}` JSON). containerd 2.x
//! supports both; these tests pin that it connects with v2 and records no deprecation for it.

use anyhow::{ensure, Result};
use wasmpod_integration::{images, versions, with_containerd};

const HELLO: &str = "hello from wasmpod\n";

/// A wasm container runs; containerd 2 logs its connection to the shim as `version=2`, and
/// (from 1.7 on, which has the deprecation service) `ctr deprecations list` names nothing.
#[test]
fn containerd_connects_with_task_api_v2_and_deprecates_nothing() -> Result<()> {
    with_containerd(|ctd| {
        let version = versions::of(ctd.binary())?;
        println!("containerd {version}");
        let hello = images().wasm("hello")?;
        let out = ctd.import(&hello)?.run(&hello).exec()?;
        out.success()?;
        ensure!(out.stdout == HELLO, "{out}");
        if version.at_least(2, 0) {
            let lines = ctd.log_lines_with("connecting to shim");
            ensure!(
                !lines.is_empty() && lines.iter().all(|l| l.contains(" version=2")),
                "containerd {version} did not connect with task API v2: {lines:#?}"
            );
        }
        if version.at_least(1, 7) {
            let deprecations = ctd.ctr(["deprecations", "list"])?;
            deprecations.success()?;
            // Nothing at all when there is none; else a header (`ID  LAST OCCURRENCE
            // MESSAGE`) and one `io.containerd.deprecation/...` row each.
            ensure!(
                !deprecations.stdout.contains("io.containerd.deprecation/"),
                "containerd {version} warns: {deprecations}"
            );
        }
        Ok(())
    })
}
