//! Resources from the spec reach the container's cgroup on the host (v1 or v2 files), and
//! the shim's `Update` changes them on a running task.

use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::json;
use wasmpod_integration::cgroup::ContainerCgroup;
use wasmpod_integration::{images, with_containerd};

const MIB: u64 = 1 << 20;
const WAIT: Duration = Duration::from_secs(15);

/// A detached sleeper run with `--memory-limit 96MiB --cpus 0.5 --cpu-shares 512` has
/// exactly those limits in its host cgroup (quota 50000 of period 100000); an `Update` sent
/// to its shim (ctr has no `task update`, so over the shim's ttrpc socket, as containerd
/// forwards it) to 128 MiB, quota 25000 and shares 256 shows up in the same files.
#[test]
fn limits_reach_the_cgroup_and_update_changes_them() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("sleeper")?;
        let task = ctd
            .import(&img)?
            .run(&img)
            .memory_limit(96 * MIB)
            .flag("--cpus")
            .flag("0.5")
            .flag("--cpu-shares")
            .flag("512")
            .detach()?;
        task.wait_for_status("RUNNING", WAIT)?;
        let cg = ContainerCgroup::find(ctd.namespace(), task.id())?;

        ensure!(
            cg.memory_limit()? == Some(96 * MIB),
            "memory limit {:?} in {cg:?}",
            cg.memory_limit()?
        );
        ensure!(
            cg.cpu_quota_period()? == (Some(50_000), 100_000),
            "cpu quota/period {:?} in {cg:?}",
            cg.cpu_quota_period()?
        );
        ensure!(
            cg.cpu_shares_or_weight()? == cg.expected_shares(512),
            "cpu shares {} in {cg:?}",
            cg.cpu_shares_or_weight()?
        );

        ctd.shim_update(
            task.id(),
            &json!({
                "memory": { "limit": 128 * MIB },
                "cpu": { "shares": 256, "quota": 25_000, "period": 100_000 }
            }),
        )?;
        ensure!(
            cg.memory_limit()? == Some(128 * MIB),
            "after Update: memory limit {:?}",
            cg.memory_limit()?
        );
        ensure!(
            cg.cpu_quota_period()? == (Some(25_000), 100_000),
            "after Update: cpu quota/period {:?}",
            cg.cpu_quota_period()?
        );
        ensure!(
            cg.cpu_shares_or_weight()? == cg.expected_shares(256),
            "after Update: cpu shares {}",
            cg.cpu_shares_or_weight()?
        );
        ensure!(
            task.status()?.as_deref() == Some("RUNNING"),
            "the task stopped after Update"
        );

        task.kill("SIGKILL")?;
        task.wait_for_exit(WAIT)?;
        Ok(())
    })
}
