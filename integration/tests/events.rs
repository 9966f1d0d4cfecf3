//! Task events the shim publishes through containerd, as `ctr events` shows them.

use std::time::Duration;

use anyhow::{ensure, Result};
use wasmpod_integration::process::poll;
use wasmpod_integration::{images, with_containerd};

const WAIT: Duration = Duration::from_secs(15);

/// Topics a full lifecycle must produce, in this order.
const LIFECYCLE: &[&str] = &[
    "/tasks/create",
    "/tasks/start",
    "/tasks/paused",
    "/tasks/resumed",
    "/tasks/exit",
    "/tasks/delete",
];

/// True when `want` appears in `seen` in order (other topics may sit between).
fn in_order(seen: &[String], want: &[&str]) -> bool {
    let mut it = seen.iter();
    want.iter().all(|w| it.any(|s| s == w))
}

/// A sleeper created, started, paused, resumed, killed and deleted while `ctr events` runs
/// yields /tasks/create, /tasks/start, /tasks/paused, /tasks/resumed, /tasks/exit (status
/// 143) and /tasks/delete for its id, in that order.
#[test]
fn lifecycle_events_reach_ctr_events() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("sleeper")?;
        ctd.import(&img)?;
        let events = ctd.events()?;
        let task = ctd.run(&img).detach()?;
        let id = task.id().to_string();
        task.wait_for_status("RUNNING", WAIT)?;
        task.pause()?;
        task.wait_for_status("PAUSED", WAIT)?;
        task.resume()?;
        task.wait_for_status("RUNNING", WAIT)?;
        task.kill("SIGTERM")?;
        let code = task.wait_for_exit(WAIT)?;
        ensure!(code == 143, "SIGTERM gave {code}");

        let seen = poll("the /tasks/delete event", WAIT, || {
            let seen = events.topics_for(&id);
            Ok(seen.iter().any(|t| t == "/tasks/delete").then_some(seen))
        });
        let seen = match seen {
            Ok(seen) => seen,
            Err(e) => anyhow::bail!("{e}; ctr events printed:\n{}", events.text()),
        };
        ensure!(
            in_order(&seen, LIFECYCLE),
            "want {LIFECYCLE:?} in order for {id}, got {seen:?}; ctr events printed:\n{}",
            events.text()
        );
        let exit = events
            .all()
            .into_iter()
            .find(|e| e.topic == "/tasks/exit" && e.is_about(&id));
        ensure!(
            exit.as_ref()
                .is_some_and(|e| e.body.contains("\"exit_status\":143")),
            "exit event without status 143: {exit:?}"
        );
        Ok(())
    })
}
