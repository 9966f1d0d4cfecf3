//! Driving a running wasm task (the `sleeper` program, one `tick N` per second) through ctr:
//! signals, pause/resume, metrics and ps.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use wasmpod_integration::{images, with_containerd, Containerd, Spawned};

const WAIT: Duration = Duration::from_secs(15);

fn ticks(out: &str) -> usize {
    out.lines().filter(|l| l.starts_with("tick ")).count()
}

/// Waits until the spawned sleeper has printed at least `n` ticks.
fn wait_ticks(run: &Spawned<'_>, n: usize) -> Result<usize> {
    let start = Instant::now();
    loop {
        let seen = ticks(&run.stdout_so_far());
        if seen >= n {
            return Ok(seen);
        }
        ensure!(
            start.elapsed() < WAIT,
            "only {seen} ticks after {WAIT:?}, want {n}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills a detached sleeper with `signal` and returns the exit code ctr reports.
fn kill_detached(ctd: &Containerd, signal: &str) -> Result<i32> {
    let img = images().wasm("sleeper")?;
    let task = ctd.import(&img)?.run(&img).detach()?;
    task.wait_for_status("RUNNING", WAIT)?;
    task.kill(signal)?;
    task.wait_for_exit(WAIT)
}

/// SIGTERM to a detached plain module ends it at once with status 143 (128 + 15).
#[test]
fn sigterm_detached_exits_143() -> Result<()> {
    with_containerd(|ctd| {
        let code = kill_detached(ctd, "SIGTERM")?;
        ensure!(code == 143, "SIGTERM gave {code}, want 143");
        Ok(())
    })
}

/// SIGKILL to a detached module ends it with status 137 (128 + 9).
#[test]
fn sigkill_detached_exits_137() -> Result<()> {
    with_containerd(|ctd| {
        let code = kill_detached(ctd, "SIGKILL")?;
        ensure!(code == 137, "SIGKILL gave {code}, want 137");
        Ok(())
    })
}

/// A foreground `ctr run` of a ticking sleeper exits 143 when the task gets SIGTERM, well
/// before any grace period.
#[test]
fn sigterm_ends_foreground_run_with_143() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("sleeper")?;
        let run = ctd.import(&img)?.run(&img).spawn()?;
        wait_ticks(&run, 1)?;
        let sent = Instant::now();
        run.task().kill("SIGTERM")?;
        let out = run.wait(WAIT)?;
        out.expect_code(143)?;
        ensure!(
            sent.elapsed() < Duration::from_secs(5),
            "took {:?} after SIGTERM",
            sent.elapsed()
        );
        Ok(())
    })
}

/// Pause shows PAUSED and stops the ticks; resume shows RUNNING and they go on.
#[test]
fn pause_and_resume_sleeper() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("sleeper")?;
        let run = ctd.import(&img)?.run(&img).spawn()?;
        let task = run.task();
        wait_ticks(&run, 2)?;

        task.pause()?;
        ensure!(
            task.status()?.as_deref() == Some("PAUSED"),
            "status {:?}",
            task.status()?
        );
        // A tick in flight may still land; after that, nothing while frozen.
        std::thread::sleep(Duration::from_millis(300));
        let frozen = ticks(&run.stdout_so_far());
        std::thread::sleep(Duration::from_millis(2500));
        let later = ticks(&run.stdout_so_far());
        ensure!(
            later == frozen,
            "ticks went on while paused: {frozen} -> {later}"
        );

        task.resume()?;
        ensure!(
            task.status()?.as_deref() == Some("RUNNING"),
            "status {:?}",
            task.status()?
        );
        wait_ticks(&run, later + 2)?;

        task.kill("SIGKILL")?;
        run.wait(WAIT)?.expect_code(137)?;
        Ok(())
    })
}

/// `ctr task metrics` of a running wasm task reports cgroup figures, `ctr task ps` its pid.
#[test]
fn metrics_and_ps_of_a_running_task() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("sleeper")?;
        let task = ctd.import(&img)?.run(&img).detach()?;
        task.wait_for_status("RUNNING", WAIT)?;

        let metrics = task.metrics()?;
        ensure!(
            metrics
                .stdout
                .lines()
                .any(|l| l.starts_with("memory.") || l.starts_with("pids.")),
            "no memory/pids figures in:\n{metrics}"
        );

        let pid = task.pid()?;
        let ps = task.ps()?;
        ensure!(
            ps.stdout.contains(&pid.to_string()),
            "pid {pid} not in:\n{ps}"
        );

        task.kill("SIGKILL")?;
        task.wait_for_exit(WAIT)?;
        Ok(())
    })
}

/// 20 detached sleepers started at once all show RUNNING; SIGTERM to each ends every one
/// with status 143 within a few seconds, and nothing is left behind (checked on return).
#[test]
fn twenty_detached_sleepers_end_on_sigterm() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("sleeper")?;
        ctd.import(&img)?;
        let started: Vec<Result<_>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..20)
                .map(|_| s.spawn(|| ctd.run(&img).timeout(Duration::from_secs(120)).detach()))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| anyhow::anyhow!("detach thread panicked"))?
                })
                .collect()
        });
        let tasks = started.into_iter().collect::<Result<Vec<_>>>()?;
        for t in &tasks {
            t.wait_for_status("RUNNING", WAIT)?;
        }
        let running = ctd
            .task_list()?
            .iter()
            .filter(|t| t.status == "RUNNING")
            .count();
        ensure!(running == 20, "{running} of 20 tasks RUNNING");

        let sent = Instant::now();
        for t in &tasks {
            t.kill("SIGTERM")?;
        }
        wasmpod_integration::process::poll("all 20 to stop", WAIT, || {
            let list = ctd.task_list()?;
            Ok(list.iter().all(|t| t.status == "STOPPED").then_some(()))
        })?;
        ensure!(
            sent.elapsed() < Duration::from_secs(5),
            "20 SIGTERMed sleepers took {:?} to stop",
            sent.elapsed()
        );
        for t in tasks {
            let id = t.id().to_string();
            let code = t.wait_for_exit(WAIT)?;
            ensure!(code == 143, "{id}: SIGTERM gave {code}, want 143");
        }
        Ok(())
    })
}

/// KiB of `pid`'s memory mapped from the shim's binary (its code and read-only data).
fn shim_binary_rss_kb(pid: u32) -> Result<u64> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut total = 0;
    let mut ours = false;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            ours = line.ends_with(wasmpod_integration::paths::SHIM_BINARY);
        } else if ours && first == "Rss:" {
            total += fields
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

/// Once a running container has been quiet for a while, its shim and its process unmap the
/// code their start ran (`shim/src/idle.rs`): what they map of the shim's binary falls by
/// more than half. The container goes on: it ticks, and SIGTERM still ends it with 143.
#[test]
fn a_quiet_container_unmaps_its_start_code_and_goes_on() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("sleeper")?;
        let run = ctd.import(&img)?.run(&img).spawn()?;
        let task = run.task();
        wait_ticks(&run, 1)?;
        let pids = [ctd.shim_pid(task.id())?, task.pid()?];
        let before = [shim_binary_rss_kb(pids[0])?, shim_binary_rss_kb(pids[1])?];
        ensure!(
            before.iter().all(|&kb| kb > 0),
            "nothing mapped: {before:?}"
        );
        let released = wasmpod_integration::process::poll(
            "the start code unmapped",
            Duration::from_secs(20),
            || {
                let now = [shim_binary_rss_kb(pids[0])?, shim_binary_rss_kb(pids[1])?];
                Ok((now[0] < before[0] / 2 && now[1] < before[1] * 3 / 4).then_some(now))
            },
        );
        let after = released.map_err(|e| {
            anyhow::anyhow!("{e}: shim and container mapped {before:?} KiB at the first tick")
        })?;
        let seen = ticks(&run.stdout_so_far());
        wait_ticks(&run, seen + 2)?;
        task.kill("SIGTERM")?;
        let out = run.wait(WAIT)?;
        out.expect_code(143)?;
        eprintln!("mapped of the shim's binary, KiB (shim, container): {before:?} -> {after:?}");
        Ok(())
    })
}
