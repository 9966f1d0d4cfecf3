//! Checks of the harness itself against runc, independent of the wasmpod shim and CLI:
//! the busybox image here is packed by umoci.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Result};
use wasmpod_integration::{images, paths, system, with_containerd, Containerd};

/// The daemon under test is the containerd binary the environment names.
#[test]
fn daemon_reports_the_binary_version() -> Result<()> {
    with_containerd(|ctd| {
        let bin = paths::containerd_path();
        let want = std::process::Command::new(&bin).arg("--version").output()?;
        let want = String::from_utf8_lossy(&want.stdout);
        // "containerd github.com/containerd/containerd 1.6.20~ds1 <revision>"
        let version = want.split_whitespace().nth(2).unwrap_or("?").to_string();
        let got = ctd.version()?;
        let server = got.split("Server:").nth(1).unwrap_or_default();
        ensure!(
            server.contains(&version),
            "want {version} from {}, got:\n{got}",
            bin.display()
        );
        ensure!(
            ctd.socket().starts_with(ctd.dir()),
            "socket outside the temp dir"
        );
        Ok(())
    })
}

/// A busybox container under runc prints what it is told and leaves nothing behind.
#[test]
fn runc_busybox_runs_and_cleans_up() -> Result<()> {
    with_containerd(|ctd| {
        let bb = images().busybox_umoci()?;
        let out = ctd
            .import(&bb)?
            .run(&bb)
            .runc()
            .args([
                "-c",
                "echo native; id -u; cat /proc/self/cgroup | grep memory",
            ])
            .exec()?;
        out.success()?;
        let lines: Vec<&str> = out.stdout.lines().collect();
        ensure!(lines.first() == Some(&"native"), "{out}");
        ensure!(lines.get(1) == Some(&"0"), "{out}");
        // ctr puts the task in cgroup /<namespace>/<id>.
        ensure!(
            lines
                .get(2)
                .is_some_and(|l| l.ends_with(&format!("/{}/", ctd.namespace()))
                    || l.contains(&format!(":/{}/", ctd.namespace()))),
            "unexpected cgroup: {out}"
        );
        Ok(())
    })
}

/// `ctr run`'s exit status is the container's, and ctr task delete reports a killed one's.
#[test]
fn runc_exit_codes_reach_ctr() -> Result<()> {
    with_containerd(|ctd| {
        let bb = images().busybox_umoci()?;
        ctd.import(&bb)?;
        let out = ctd.run(&bb).runc().args(["-c", "exit 7"]).exec()?;
        out.expect_code(7)?;
        let task = ctd.run(&bb).runc().argv(["/bin/sleep", "100"]).detach()?;
        task.wait_for_status("RUNNING", Duration::from_secs(10))?;
        ensure!(
            !task.ps()?.stdout.trim().is_empty(),
            "ctr task ps printed nothing"
        );
        task.kill("SIGKILL")?;
        let code = task.wait_for_exit(Duration::from_secs(10))?;
        ensure!(code == 137, "SIGKILL gave {code}, want 137");
        Ok(())
    })
}

/// The cleanup check sees a running container (task, container, snapshot, shim, mount,
/// cgroup), so a clean result means something.
#[test]
fn leftovers_see_a_running_container() -> Result<()> {
    with_containerd(|ctd| {
        let bb = images().busybox_umoci()?;
        ctd.import(&bb)?;
        let task = ctd.run(&bb).runc().argv(["/bin/sleep", "100"]).detach()?;
        task.wait_for_status("RUNNING", Duration::from_secs(10))?;
        let found = ctd.leftovers()?.join("\n");
        for kind in [
            "task ",
            "container ",
            "active snapshot ",
            "task bundle ",
            "process ",
            "mount ",
            "cgroup ",
        ] {
            ensure!(
                found.contains(kind),
                "no {kind:?} among leftovers:\n{found}"
            );
        }
        ensure!(
            found.contains(&format!("/{}/{}", ctd.namespace(), task.id())),
            "no cgroup for the container:\n{found}"
        );
        task.kill("SIGKILL")?;
        task.wait_for_exit(Duration::from_secs(10))?;
        Ok(())
    })
}

/// Dropping the daemon with a container still running removes everything it made.
#[test]
fn drop_tears_down_a_busy_daemon() -> Result<()> {
    let bb = images().busybox_umoci()?;
    let ctd = Containerd::from_env()?;
    ctd.import(&bb)?;
    let task = ctd.run(&bb).runc().argv(["/bin/sleep", "100"]).detach()?;
    task.wait_for_status("RUNNING", Duration::from_secs(10))?;
    std::mem::forget(task); // leave it to the daemon's teardown
    let (dir, sock, ns, pid) = (
        ctd.dir().to_path_buf(),
        ctd.socket().display().to_string(),
        ctd.namespace().to_string(),
        ctd.pid(),
    );
    drop(ctd);
    ensure!(!dir.exists(), "{} still exists", dir.display());
    let procs = system::procs_mentioning(&sock);
    ensure!(procs.is_empty(), "processes left: {procs:?}");
    ensure!(
        system::mounts_under(&dir).is_empty(),
        "mounts left under {}",
        dir.display()
    );
    ensure!(
        system::namespace_cgroups(&ns).is_empty(),
        "cgroups of {ns} left"
    );
    if let Some(pid) = pid {
        ensure!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "containerd {pid} still runs"
        );
    }
    Ok(())
}

/// The spawned-run, pause/resume and metrics paths of the harness work against runc: a
/// ticking shell stops ticking while PAUSED and exits 137 on SIGKILL.
#[test]
fn runc_pause_resume_and_metrics() -> Result<()> {
    with_containerd(|ctd| {
        let bb = images().busybox_umoci()?;
        let script = "i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done";
        let run = ctd
            .import(&bb)?
            .run(&bb)
            .runc()
            .args(["-c", script])
            .spawn()?;
        let task = run.task();
        let ticks = |s: &str| s.lines().filter(|l| l.starts_with("tick ")).count();
        wasmpod_integration::process::poll("a tick", Duration::from_secs(10), || {
            Ok((ticks(&run.stdout_so_far()) >= 1).then_some(()))
        })?;
        let metrics = task.metrics()?;
        ensure!(
            metrics
                .stdout
                .lines()
                .any(|l| l.starts_with("memory.") || l.starts_with("pids.")),
            "{metrics}"
        );
        task.pause()?;
        ensure!(task.status()?.as_deref() == Some("PAUSED"));
        let frozen = ticks(&run.stdout_so_far());
        std::thread::sleep(Duration::from_millis(2200));
        ensure!(ticks(&run.stdout_so_far()) == frozen, "ticked while paused");
        task.resume()?;
        ensure!(task.status()?.as_deref() == Some("RUNNING"));
        wasmpod_integration::process::poll("ticks after resume", Duration::from_secs(10), || {
            Ok((ticks(&run.stdout_so_far()) > frozen).then_some(()))
        })?;
        task.kill("SIGKILL")?;
        run.wait(Duration::from_secs(10))?.expect_code(137)?;
        Ok(())
    })
}
