//! wasmpod through Docker Engine (26 with containerd 1.7, 28 with containerd 2.1; containerd
//! image store), as a `docker run` user sees it: one private dockerd per test (see
//! `wasmpod_integration::docker`), images built by the wasmpod CLI and `docker load`ed, and a
//! check that nothing is left behind.

use std::fs;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use wasmpod_integration::docker::{self, with_docker, Docker, RUNTIME_ALIAS, WASM};
use wasmpod_integration::paths::SHIM_BINARY;
use wasmpod_integration::{images, versions, WASMPOD_RUNTIME};

const HELLO: &str = "hello from wasmpod\n";
const RUNC_SHIM: &str = "containerd-shim-runc-v2";

/// The private daemon is the dockerd under test (Engine 26 or 28) on the containerd beside it
/// (1.7 or 2.1), listening inside its temp dir.
#[test]
fn private_dockerd_answers() -> Result<()> {
    let engine = versions::of(&docker::dockerd_path())?;
    let containerd = versions::of(&docker::containerd_dir().join("containerd"))?;
    println!("Docker Engine {engine}, containerd {containerd}");
    with_docker(|d| {
        let out = d.docker(["version", "--format", "{{.Server.Version}}"])?;
        out.success()?;
        ensure!(
            out.stdout.trim() == engine.to_string(),
            "want {engine}: {out}"
        );
        let info = d.docker(["info", "--format", "{{.DockerRootDir}} {{.Driver}}"])?;
        info.success()?;
        ensure!(
            info.stdout.starts_with(&*d.dir().to_string_lossy()),
            "{info}"
        );
        ensure!(
            d.socket().starts_with(d.dir()),
            "socket outside the temp dir"
        );
        let ctd = d.docker([
            "version",
            "--format",
            "{{range .Server.Components}}{{.Name}}={{.Version}} {{end}}",
        ])?;
        let want = format!("containerd={}.{}.", containerd.major, containerd.minor);
        ensure!(ctd.stdout.contains(&want), "want {want}: {ctd}");
        Ok(())
    })
}

/// The leftover check sees a running wasm container (container, containerd task, shim,
/// rootfs mount, cgroup under the daemon's parent); shutdown removes it and then finds the
/// daemon, its temp dir and the cgroups gone.
#[test]
fn leftovers_are_detected_and_removed() -> Result<()> {
    let mut d = Docker::start()?;
    let sleeper = d.load(images().wasm("sleeper")?)?;
    let id = d.run_detached(WASM, &sleeper, &[])?;
    d.wait_for_log(&id, "tick 1\n", Duration::from_secs(15))?;
    let found = d.leftovers()?.join("\n");
    for want in [
        "docker container ",
        "containerd tasks: ",
        SHIM_BINARY,
        d.cgroup_parent(),
    ] {
        ensure!(found.contains(want), "no {want:?} in leftovers:\n{found}");
    }
    ensure!(
        found
            .lines()
            .any(|l| l.starts_with("mount ") && l.ends_with(&format!("/rootfs/overlayfs/{id}"))),
        "no rootfs mount in leftovers:\n{found}"
    );
    let dir = d.dir().to_path_buf();
    d.shutdown()?;
    drop(d);
    ensure!(!dir.exists(), "{} survived", dir.display());
    Ok(())
}

/// `docker run --rm --runtime io.containerd.wasmpod.v1 --platform wasip1/wasm hello`
/// prints the hello line and exits 0.
#[test]
fn run_hello() -> Result<()> {
    with_docker(|d| {
        let hello = d.load(images().wasm("hello")?)?;
        let out = d.run_rm(WASM, &hello, &[])?;
        out.success()?;
        ensure!(out.stdout == HELLO, "{out}");
        Ok(())
    })
}

/// `-e`, arguments after the image and `-w` reach the guest (with the image's own env);
/// `-v dir:/data` is writable and the file lands on the host; `-v dir:/ro:ro` refuses the
/// write (exit 2) and the host dir stays empty.
#[test]
fn env_args_workdir_and_volumes() -> Result<()> {
    with_docker(|d| {
        let printer = d.load(images().printer()?)?;
        let flags = [WASM, &["-e", "K=V", "-w", "/some/dir"]].concat();
        let out = d.run_rm(&flags, &printer, &["a1", "b 2"])?;
        out.success()?;
        for want in [
            "arg[0]=/app.wasm",
            "arg[1]=a1",
            "arg[2]=b 2",
            "env K=V",
            "env IMAGE_VAR=from-image",
            "env PWD=/some/dir",
        ] {
            ensure!(out.stdout.lines().any(|l| l == want), "no {want:?}: {out}");
        }
        ensure!(!out.stdout.contains("arg[3]"), "{out}");

        let files = d.load(images().wasm("files")?)?;
        let host = tempfile::tempdir()?;
        let rw = format!("{}:/data", host.path().display());
        let out = d.run_rm(
            &[WASM, &["-v", &rw]].concat(),
            &files,
            &["write", "/data/x", "hi"],
        )?;
        out.success()?;
        ensure!(out.stdout == "wrote 2 bytes to /data/x\n", "{out}");
        ensure!(
            fs::read_to_string(host.path().join("x"))? == "hi",
            "not on the host"
        );

        let ro_host = tempfile::tempdir()?;
        let ro = format!("{}:/ro:ro", ro_host.path().display());
        let out = d.run_rm(
            &[WASM, &["-v", &ro]].concat(),
            &files,
            &["write", "/ro/x", "hi"],
        )?;
        out.expect_code(2)?;
        ensure!(out.stderr.contains("error:"), "{out}");
        ensure!(
            fs::read_dir(ro_host.path())?.next().is_none(),
            "ro dir written"
        );
        Ok(())
    })
}

/// The guest's exit code is `docker run`'s: `exit-code 7` exits 7, and 0 stays 0.
#[test]
fn exit_code_propagates() -> Result<()> {
    with_docker(|d| {
        let img = d.load(images().wasm("exit-code")?)?;
        d.run_rm(WASM, &img, &["7"])?.expect_code(7)?;
        d.run_rm(WASM, &img, &["0"])?.expect_code(0)?;
        Ok(())
    })
}

/// A detached sleeper: logs show ticks; a wasm `docker exec` returns its output and exit
/// code; pause freezes the ticks (status paused) and unpause resumes them; stats shows
/// memory and `top` the guest's command line; `stop -t 2` ends it at once with 143 (SIGTERM,
/// no SIGKILL needed); `wait` says 143; `kill` on another gives 137; `rm` removes both.
#[test]
fn detached_lifecycle() -> Result<()> {
    with_docker(|d| {
        let sleeper = d.load(images().wasm("sleeper")?)?;
        let id = d.run_detached(WASM, &sleeper, &[])?;
        d.wait_for_log(&id, "tick 2\n", Duration::from_secs(15))?;
        ensure!(d.status(&id)? == "running");

        let exec = d.docker(["exec", &id, "/app.wasm", "1"])?;
        exec.success()?;
        ensure!(exec.stdout == "tick 1\n", "{exec}");
        let bad = d.docker(["exec", &id, "/app.wasm", "x"])?;
        bad.expect_code(1)?;
        ensure!(bad.stderr.contains("bad tick count"), "{bad}");

        d.docker(["pause", &id])?.success()?;
        ensure!(d.status(&id)? == "paused");
        let frozen = d.logs(&id)?.stdout.lines().count();
        std::thread::sleep(Duration::from_millis(2500));
        let still = d.logs(&id)?.stdout.lines().count();
        ensure!(still == frozen, "ticked while paused: {frozen} -> {still}");
        d.docker(["unpause", &id])?.success()?;
        ensure!(d.status(&id)? == "running");
        d.wait_for_log(
            &id,
            &format!("tick {}\n", still + 1),
            Duration::from_secs(10),
        )?;

        let mem = d.memory_usage(&id)?;
        ensure!(mem > 0.0, "docker stats shows no memory for {id}");
        // `docker top` shows the guest's command line, not the shim's it was forked from.
        let top = d.docker(["top", &id])?;
        top.success()?;
        ensure!(
            top.stdout.contains("/app.wasm") && !top.stdout.contains("containerd-shim"),
            "{top}"
        );

        let start = Instant::now();
        d.docker(["stop", "-t", "2", &id])?.success()?;
        let took = start.elapsed();
        ensure!(
            took < Duration::from_millis(1800),
            "stop took {took:?}: SIGTERM ignored?"
        );
        let wait = d.docker(["wait", &id])?;
        wait.success()?;
        ensure!(wait.stdout.trim() == "143", "{wait}");
        ensure!(d.inspect(&id, "{{.State.ExitCode}}")? == "143");

        let other = d.run_detached(WASM, &sleeper, &[])?;
        d.wait_for_log(&other, "tick 1\n", Duration::from_secs(15))?;
        d.docker(["kill", &other])?.success()?;
        let wait = d.docker(["wait", &other])?;
        ensure!(wait.stdout.trim() == "137", "{wait}");

        d.docker(["rm", &id, &other])?.success()?;
        let left = d.docker(["ps", "-aq"])?;
        ensure!(left.stdout.trim().is_empty(), "{left}");
        Ok(())
    })
}

/// The `wasmpod` runtime name from daemon.json's `runtimes` selects the shim as well.
#[test]
fn daemon_json_alias() -> Result<()> {
    with_docker(|d| {
        let hello = d.load(images().wasm("hello")?)?;
        let flags = ["--runtime", RUNTIME_ALIAS, "--platform", "wasip1/wasm"];
        let out = d.run_rm(&flags, &hello, &[])?;
        out.success()?;
        ensure!(out.stdout == HELLO, "{out}");
        Ok(())
    })
}

/// A busybox container under the default runtime (runc) runs while a wasm one runs, each
/// under its own shim, and the wasm one keeps running.
#[test]
fn runc_beside_wasm() -> Result<()> {
    with_docker(|d| {
        let sleeper = d.load(images().wasm("sleeper")?)?;
        let bb = d.load(images().busybox()?)?;
        let wasm = d.run_detached(WASM, &sleeper, &[])?;
        d.wait_for_log(&wasm, "tick 1\n", Duration::from_secs(15))?;

        let out = d.run_rm(&[], &bb, &["-c", "echo native"])?;
        out.success()?;
        ensure!(out.stdout == "native\n", "{out}");

        let native = d.run_detached(&[], &bb, &["-c", "sleep 30"])?;
        ensure!(d.inspect(&native, "{{.HostConfig.Runtime}}")? == "runc");
        ensure!(
            d.shims(RUNC_SHIM).len() == 1,
            "runc shims: {:?}",
            d.shims(RUNC_SHIM)
        );
        ensure!(
            d.shims(SHIM_BINARY).len() == 1,
            "wasmpod shims: {:?}",
            d.shims(SHIM_BINARY)
        );
        ensure!(d.status(&wasm)? == "running");
        d.docker(["rm", "-f", &native, &wasm])?.success()?;
        Ok(())
    })
}

/// A native (ELF) busybox under `--runtime io.containerd.wasmpod.v1`: output and exit code
/// reach `docker run`, and `docker exec` into a running one works, served by the wasmpod shim.
#[test]
fn native_busybox_under_wasmpod() -> Result<()> {
    with_docker(|d| {
        let bb = d.load(images().busybox()?)?;
        let rt = ["--runtime", WASMPOD_RUNTIME];
        let out = d.run_rm(&rt, &bb, &["-c", "echo hi; exit 3"])?;
        out.expect_code(3)?;
        ensure!(out.stdout == "hi\n", "{out}");

        let id = d.run_detached(&rt, &bb, &["-c", "sleep 30"])?;
        ensure!(
            d.shims(SHIM_BINARY).len() == 1,
            "wasmpod shims: {:?}",
            d.shims(SHIM_BINARY)
        );
        ensure!(
            d.shims(RUNC_SHIM).is_empty(),
            "runc shims: {:?}",
            d.shims(RUNC_SHIM)
        );
        let exec = d.docker(["exec", &id, "sh", "-c", "echo x"])?;
        exec.success()?;
        ensure!(exec.stdout == "x\n", "{exec}");
        d.docker(["exec", &id, "sh", "-c", "exit 4"])?
            .expect_code(4)?;
        d.docker(["rm", "-f", &id])?.success()?;
        Ok(())
    })
}

/// Past `-m 64m`, a busybox under wasmpod is killed by the kernel's OOM killer and a wasm
/// guest (memhog, aborting like ordinary Rust code) traps when refused memory: both exit 137
/// and Docker records `State.OOMKilled` (from the shim's TaskOOM event).
#[test]
fn oom_kills_are_recorded() -> Result<()> {
    with_docker(|d| {
        let bb = d.load(images().busybox()?)?;
        let memhog = d.load(images().wasm("memhog")?)?;
        let native = [
            "--runtime",
            WASMPOD_RUNTIME,
            &bb,
            "-c",
            "x=a; while :; do x=$x$x; done",
        ];
        let wasm = [WASM, &[memhog.as_str(), "512", "--abort"]].concat();
        for (name, run) in [("oom-native", &native[..]), ("oom-wasm", &wasm[..])] {
            let mut args = vec!["run", "--name", name, "-m", "64m"];
            args.extend(run);
            d.docker(args)?.expect_code(137)?;
            ensure!(
                d.inspect(name, "{{.State.OOMKilled}}")? == "true",
                "{name} not recorded as OOMKilled"
            );
        }
        d.docker(["rm", "oom-native", "oom-wasm"])?.success()?;
        Ok(())
    })
}

/// An image whose wasm is a raw layer, and the CNCF wasm artifact, need the container's image
/// in containerd's container record, where the shim looks for the layer. Docker 28 records it
/// (`Image` of the moby container): both run under `docker run`. Docker 26 leaves it empty:
/// the run fails with the shim's "not found in the container rootfs", as the README says.
#[test]
fn raw_wasm_layers_and_the_artifact_run_from_docker_28_on() -> Result<()> {
    let engine = versions::of(&docker::dockerd_path())?;
    with_docker(|d| {
        let layer = d.load(images().wasm_layer("hello", "application/wasm", None)?)?;
        let artifact = d.load(images().artifact("hello")?)?;
        let runs = [
            ("raw layer", d.run_rm(WASM, &layer, &[])?),
            // The artifact has no entrypoint: the command names the module.
            ("artifact", d.run_rm(WASM, &artifact, &["hello.wasm"])?),
        ];
        for (what, out) in runs {
            if engine.at_least(28, 0) {
                out.success()?;
                ensure!(out.stdout == HELLO, "{what} on Docker {engine}: {out}");
            } else {
                ensure!(
                    out.code() == 125 && out.stderr.contains("not found in the container rootfs"),
                    "{what} on Docker {engine}: {out}"
                );
            }
        }
        Ok(())
    })
}

/// `docker run --annotation io.containerd.wasmpod.group=NAME`: the group's containers share
/// one shim, a container without the annotation has its own; the group's shim leaves after
/// its last container (once its linger is over).
#[test]
fn containers_of_an_annotated_group_share_one_shim() -> Result<()> {
    with_docker(|d| {
        let sleeper = d.load(images().wasm("sleeper")?)?;
        let group: Vec<&str> = WASM
            .iter()
            .copied()
            .chain(["--annotation", "io.containerd.wasmpod.group=web"])
            .collect();
        let a = d.run_detached(&group, &sleeper, &[])?;
        let b = d.run_detached(&group, &sleeper, &[])?;
        let own = d.run_detached(WASM, &sleeper, &[])?;
        for id in [&a, &b, &own] {
            d.wait_for_log(id, "tick 1\n", Duration::from_secs(15))?;
        }
        let shims = d.shims(SHIM_BINARY);
        ensure!(
            shims.len() == 2,
            "one shim for the group and one of its own: {shims:?}"
        );
        d.docker(["rm", "-f", &a, &b, &own])?.success()?;
        // The group's linger is 5 s by default.
        let start = Instant::now();
        while !d.shims(SHIM_BINARY).is_empty() {
            ensure!(
                start.elapsed() < Duration::from_secs(20),
                "shims left: {:?}",
                d.shims(SHIM_BINARY)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    })
}
