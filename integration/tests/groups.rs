//! Opt-in groups (`--annotation io.containerd.wasmpod.group=NAME`): the containers of a group
//! share one shim, which stays for its linger after the last one and then leaves, socket
//! included; a container that starts while the shim leaves gets a new shim, never an error.

use std::path::Path;
use std::thread;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use wasmpod_integration::paths::GROUP_ANNOTATION;
use wasmpod_integration::system::{alive, gone_within};
use wasmpod_integration::{images, with_containerd_env, Containerd};

const WAIT: Duration = Duration::from_secs(15);

/// The linger the first test gives group shims (`WASMPOD_GROUP_LINGER_MS`): long enough that
/// the next container starts within it on a slow machine (the cgroup v2 lane's emulated VM
/// took over 1.5 s between two containers).
const LINGER_MS: u64 = 10_000;

fn group_flag(group: &str) -> String {
    format!("{GROUP_ANNOTATION}={group}")
}

/// The socket file of a `unix://` shim address.
fn socket_file(address: &str) -> &Path {
    Path::new(address.strip_prefix("unix://").unwrap_or(address))
}

/// Kills task `id` and deletes it and its container.
fn remove(ctd: &Containerd, id: &str) -> Result<()> {
    ctd.task_kill(id, "SIGKILL")?.success()?;
    ctd.wait_for_exit(id, WAIT)?;
    Ok(())
}

#[test]
fn a_group_shares_one_shim_which_lingers_then_leaves_with_its_socket() -> Result<()> {
    wasmpod_integration::require_shim()?;
    let linger = LINGER_MS.to_string();
    with_containerd_env(&[("WASMPOD_GROUP_LINGER_MS", &linger)], |ctd| {
        let img = images().wasm("sleeper")?;
        ctd.import(&img)?;
        let run = |group: Option<&str>| -> Result<String> {
            let mut r = ctd.run(&img).args(["100000"]);
            if let Some(g) = group {
                r = r.flag("--annotation").flag(group_flag(g));
            }
            let task = r.detach()?;
            task.wait_for_status("RUNNING", WAIT)?;
            Ok(task.release())
        };
        let (a, b, own) = (run(Some("g1"))?, run(Some("g1"))?, run(None)?);
        let other = run(Some("g2"))?;

        let shim = ctd.shim_pid(&a)?;
        ensure!(ctd.shim_pid(&b)? == shim, "a and b of g1 share a shim");
        ensure!(
            ctd.shim_pid(&own)? != shim,
            "a container without a group has its own"
        );
        let other_shim = ctd.shim_pid(&other)?;
        ensure!(other_shim != shim, "g2 has a shim of its own");
        let address = ctd.shim_address(&a)?;
        ensure!(ctd.shim_address(&b)? == address, "one socket for g1");

        // The group outlives the container whose bundle its shim runs in.
        remove(ctd, &a)?;
        ensure!(
            ctd.task_status(&b)?.as_deref() == Some("RUNNING"),
            "b runs on"
        );
        let out = ctd.ctr(["task", "exec", "--exec-id", "e1", &b, "/app.wasm", "0"])?;
        ensure!(out.status.success(), "exec in b after a left: {out}");

        // The last one goes: the shim stays for its linger, and takes the next container.
        remove(ctd, &b)?;
        thread::sleep(Duration::from_millis(300));
        ensure!(
            alive(shim),
            "the group shim lingers after its last container"
        );
        let c = run(Some("g1"))?;
        ensure!(
            ctd.shim_pid(&c)? == shim,
            "a container within the linger reuses the shim"
        );
        remove(ctd, &c)?;
        // The linger runs from here: what follows takes seconds of its own on a slow node (the
        // cgroup v2 VM emulates its CPU), so the shim's stay is measured from this point.
        let last_left = std::time::Instant::now();
        // g2's shim lingers as long as g1's: its container goes now, so that its shim leaves
        // while g1's lingers (waited for below; the final check polls for less than a linger).
        remove(ctd, &other)?;
        // The shim's log reaches containerd after the container whose bundle it started in
        // is gone (containerd reads each bundle's log fifo only while that container lives).
        for line in [
            format!("{b}: exec e1 exited with status 0"),
            format!("{b}: exited with status"),
            format!("{c}: exited with status"),
        ] {
            ensure!(
                !ctd.log_lines_with(&line).is_empty(),
                "the group shim's line \"{line}\" is not in containerd's log"
            );
        }

        gone_within(shim, Duration::from_millis(LINGER_MS) + WAIT)?;
        let stayed = last_left.elapsed();
        ensure!(
            stayed >= Duration::from_millis(LINGER_MS / 2),
            "the shim left {stayed:?} after its last container, before its linger of {LINGER_MS} ms"
        );
        ensure!(
            !socket_file(&address).exists(),
            "the group shim left its socket {address}"
        );
        gone_within(other_shim, Duration::from_millis(LINGER_MS) + WAIT)?;
        remove(ctd, &own)?;
        ctd.assert_clean()
    })
}

#[test]
fn containers_starting_while_their_group_shim_leaves_all_run() -> Result<()> {
    wasmpod_integration::require_shim()?;
    // No linger: the shim leaves at every moment it is idle, as the next containers start.
    with_containerd_env(&[("WASMPOD_GROUP_LINGER_MS", "0")], |ctd| {
        let img = images().wasm("hello")?;
        ctd.import(&img)?;
        let failures: Vec<String> = thread::scope(|s| {
            let workers: Vec<_> = (0..3)
                .map(|w| {
                    let img = img.clone();
                    s.spawn(move || {
                        let mut failed = Vec::new();
                        for i in 0..20 {
                            let out = ctd
                                .run(&img)
                                .id(format!("race-{w}-{i}"))
                                .flag("--annotation")
                                .flag(group_flag("race"))
                                .exec();
                            match out {
                                Ok(o) if o.status.success() && o.stdout.contains("hello") => {}
                                Ok(o) => failed.push(format!("race-{w}-{i}: {o}")),
                                Err(e) => failed.push(format!("race-{w}-{i}: {e:#}")),
                            }
                        }
                        failed
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_else(|_| vec!["worker panicked".into()]))
                .collect()
        });
        ensure!(failures.is_empty(), "runs failed:\n{}", failures.join("\n"));
        let leaves = ctd.log_lines_with("shutting down").len();
        ensure!(
            leaves >= 2,
            "the group shim left {leaves} times in 60 runs: the race was not exercised"
        );
        eprintln!("60 grouped runs, 3 at a time: the group shim left {leaves} times");
        ctd.assert_clean().context("after the race")
    })
}
