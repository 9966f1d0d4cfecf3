//! Faults from outside the shim: a container's process killed by someone else than
//! containerd, and containerd itself killed and restarted under running tasks.

use std::time::Duration;

use anyhow::{bail, ensure, Result};
use nix::sys::signal::Signal;
use wasmpod_integration::process::poll;
use wasmpod_integration::system::kill_pid;
use wasmpod_integration::{images, paths, with_containerd, Containerd, Images};

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

/// containerd killed (SIGKILL, then SIGTERM) and started again under a running wasm sleeper
/// and a busybox shell loop, both through wasmpod: after each restart both tasks are still RUNNING
/// and an exec into each works (a wasm program, a shell); at the end a SIGTERM ends each with
/// 143, seen by `ctr task wait` and in a /tasks/exit event of the restarted daemon.
#[test]
fn tasks_survive_containerd_restarts() -> Result<()> {
    let mut ctd = Containerd::start(paths::containerd_path())?;
    let result = survive_restarts(&mut ctd).and_then(|()| ctd.assert_clean());
    if result.is_err() {
        eprintln!("containerd log tail:\n{}", ctd.log_tail(60));
    }
    result
}

fn survive_restarts(ctd: &mut Containerd) -> Result<()> {
    let hello = Images::program("hello")?;
    let sleeper = images().wasm_with(
        "sleeper",
        &["--dir", &format!("{}:/bin/hello.wasm", hello.display())],
    )?;
    let busybox = images().busybox()?;
    ctd.import(&sleeper)?.import(&busybox)?;
    // Released handles: the daemon is restarted (mutably borrowed) while they run.
    let wasm_id = ctd.run(&sleeper).args(["600"]).detach()?.release();
    // PID 1 ignores SIGTERM without a handler: the shell traps it.
    let trap = "trap 'exit 143' TERM; while true; do sleep 1; done";
    let native_id = ctd
        .run(&busybox)
        .argv(["sh", "-c", trap])
        .detach()?
        .release();
    for id in [&wasm_id, &native_id] {
        ctd.wait_for_status(id, "RUNNING", WAIT)?;
    }

    for (n, signal) in [Signal::SIGKILL, Signal::SIGTERM].into_iter().enumerate() {
        ctd.restart(signal)?;
        for id in [&wasm_id, &native_id] {
            let status = ctd.task_status(id)?;
            ensure!(
                status.as_deref() == Some("RUNNING"),
                "{id} after containerd's {signal}: {status:?}"
            );
        }
        let out = ctd.ctr([
            "task",
            "exec",
            "--exec-id",
            &format!("w{n}"),
            &wasm_id,
            "/bin/hello.wasm",
        ])?;
        out.success()?;
        ensure!(
            out.stdout.contains("hello from wasmpod"),
            "wasm exec: {out}"
        );
        let out = ctd.ctr([
            "task",
            "exec",
            "--exec-id",
            &format!("n{n}"),
            &native_id,
            "sh",
            "-c",
            "echo alive",
        ])?;
        out.success()?;
        ensure!(out.stdout.contains("alive"), "native exec: {out}");
    }

    let events = ctd.events()?;
    for id in [&wasm_id, &native_id] {
        ctd.task_kill(id, "SIGTERM")?;
    }
    for id in [&wasm_id, &native_id] {
        let code = ctd.wait_for_exit(id, WAIT)?;
        ensure!(code == 143, "{id}: SIGTERM after the restarts gave {code}");
        let exit = poll("the /tasks/exit event", WAIT, || {
            Ok(events
                .all()
                .into_iter()
                .find(|e| e.topic == "/tasks/exit" && e.is_about(id)))
        })?;
        ensure!(
            exit.body.contains("\"exit_status\":143"),
            "{id}: exit event without status 143: {exit:?}"
        );
        // ctr's detached run may have removed them already; assert_clean checks what is left.
        let _ = ctd.ctr(["task", "delete", id]);
        let _ = ctd.ctr(["containers", "delete", id]);
    }
    Ok(())
}
