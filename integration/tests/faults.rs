//! Faults from outside the shim: a container's process killed by someone else than containerd.

use std::time::Duration;

use anyhow::{bail, ensure, Result};
use wasmpod_integration::process::poll;
use wasmpod_integration::system::kill_pid;
use wasmpod_integration::{images, with_containerd};

const WAIT: Duration = Duration::from_secs(15);

/// A wasm sleeper and a busybox sleep, their init processes SIGKILLed from the host (an
/// operator's `kill -9`, the kernel's OOM killer): each task ends STOPPED with 137, which
/// `ctr task wait` sees, and `ctr events` shows a /tasks/exit with status 137 for it.
#[test]
fn a_process_killed_from_outside_exits_137_with_its_event() -> Result<()> {
    with_containerd(|ctd| {
        let sleeper = images().wasm("sleeper")?;
        let busybox = images().busybox()?;
        ctd.import(&sleeper)?.import(&busybox)?;
        let events = ctd.events()?;
        let tasks = [
            ctd.run(&sleeper).args(["600"]).detach()?,
            ctd.run(&busybox).argv(["sleep", "600"]).detach()?,
        ];
        for task in &tasks {
            task.wait_for_status("RUNNING", WAIT)?;
            let info = ctd.task_list()?.into_iter().find(|t| t.id == task.id());
            let Some(info) = info.filter(|t| t.pid > 0) else {
                bail!("no pid for {}", task.id());
            };
            kill_pid(info.pid as i32);
        }
        for task in tasks {
            let id = task.id().to_string();
            let code = task.wait_for_exit(WAIT)?;
            ensure!(code == 137, "{id}: SIGKILL from outside gave {code}");
            let exit = poll("the /tasks/exit event", WAIT, || {
                Ok(events
                    .all()
                    .into_iter()
                    .find(|e| e.topic == "/tasks/exit" && e.is_about(&id)))
            })?;
            ensure!(
                exit.body.contains("\"exit_status\":137"),
                "{id}: exit event without status 137: {exit:?}"
            );
        }
        Ok(())
    })
}
