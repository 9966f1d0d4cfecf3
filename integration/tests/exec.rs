//! `ctr task exec` into running containers under wasmpod: another wasm program of the image
//! runs inside the container with its own argv and the container's mounts; a native container
//! execs as it would under runc; exit codes and errors reach ctr.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::time::Duration;

use anyhow::{ensure, Result};
use wasmpod_integration::{images, with_containerd, Containerd, Images};

const WAIT: Duration = Duration::from_secs(15);

/// An exec, failed or not, must leave its container running.
fn still_running(ctd: &Containerd, id: &str) -> Result<()> {
    ensure!(
        ctd.task_status(id)?.as_deref() == Some("RUNNING"),
        "the container must keep running after an exec"
    );
    Ok(())
}

/// An exec's output reaches a reader that opens its fifo only after the exec exited. ctr
/// opens its readers in a goroutine, which a busy node can start late: a fifo whose every end
/// was closed had dropped the output (an exec exited 0 with nothing on ctr's stdout). The shim
/// holds the fifo until the output was read; here the exec runs through the shim's own API
/// (Exec, Start, Wait, Delete), and its stdout fifo is opened only after all of that.
#[test]
fn exec_output_waits_for_a_reader_that_comes_after_the_exit() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("sleeper")?;
        let task = ctd.import(&img)?.run(&img).args(["100"]).detach()?;
        task.wait_for_status("RUNNING", WAIT)?;
        let fifo = ctd.dir().join("late-reader.out");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU)?;
        let process = serde_json::json!({
            "args": ["/app.wasm", "1"],
            "cwd": "/",
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "user": { "uid": 0, "gid": 0 },
        });
        let status = ctd.shim_exec(task.id(), "late", &process, &fifo)?;
        ensure!(status == 0, "the exec exited {status}");
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)?;
        // Until end-of-file: the shim lets the fifo go once it was read.
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let mut chunk = [0u8; 256];
            match std::io::Read::read(&mut reader, &mut chunk) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    ensure!(
                        std::time::Instant::now() < deadline,
                        "no end-of-file after {WAIT:?}, read {got:?}"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let got = String::from_utf8_lossy(&got);
        ensure!(got == "tick 1\n", "a late reader read {got:?}");
        still_running(ctd, task.id())
    })
}

/// A wasm exec (the printer program, shipped in the sleeper's image as /bin/tool.wasm) gets its
/// own argv and working directory, the container's environment, sees the container's bind mount, and its output and exit status
/// come back to `ctr task exec`; the container keeps running.
#[test]
fn wasm_exec_runs_another_program_of_the_image() -> Result<()> {
    with_containerd(|ctd| {
        let tool = Images::program("printer")?;
        let exit = Images::program("exit-code")?;
        let img = images().wasm_with(
            "sleeper",
            &[
                "--dir",
                &format!("{}:/bin/tool.wasm", tool.display()),
                "--dir",
                &format!("{}:/bin/exit.wasm", exit.display()),
            ],
        )?;
        let host = tempfile::tempdir()?;
        std::fs::write(host.path().join("shared.txt"), "x")?;
        let task = ctd
            .import(&img)?
            .run(&img)
            .args(["100"])
            .mount_ro(host.path(), "/data")
            .detach()?;
        task.wait_for_status("RUNNING", WAIT)?;

        let out = ctd.ctr([
            "task",
            "exec",
            "--exec-id",
            "e1",
            "--cwd",
            "/data",
            task.id(),
            "/bin/tool.wasm",
            "one",
            "--ls",
            "/data",
        ])?;
        out.success()?;
        ensure!(out.stdout.contains("arg[1]=one"), "exec argv: {out}");
        ensure!(out.stdout.contains("env PWD=/data"), "exec cwd: {out}");
        ensure!(
            out.stdout.contains("env PATH="),
            "exec env is the container's: {out}"
        );
        ensure!(
            out.stdout.contains("entry shared.txt"),
            "exec sees the mount: {out}"
        );

        let out = ctd.ctr([
            "task",
            "exec",
            "--exec-id",
            "e2",
            task.id(),
            "/bin/exit.wasm",
            "5",
        ])?;
        ensure!(out.code() == 5, "exec exit status must reach ctr: {out}");
        still_running(ctd, task.id())?;
        Ok(())
    })
}

/// An exec of a program the image does not have fails with a message naming it, and the
/// container is unharmed.
#[test]
fn exec_of_a_missing_program_is_named() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("sleeper")?;
        let task = ctd.import(&img)?.run(&img).args(["100"]).detach()?;
        task.wait_for_status("RUNNING", WAIT)?;
        let out = ctd.ctr(["task", "exec", "--exec-id", "bad", task.id(), "/nope.wasm"])?;
        ensure!(
            out.code() != 0,
            "exec of a missing program must fail: {out}"
        );
        ensure!(
            out.combined().contains("/nope.wasm"),
            "the message must name it: {out}"
        );
        still_running(ctd, task.id())?;
        Ok(())
    })
}

/// An exec into a native (busybox) container under wasmpod behaves as runc's: output and
/// exit status.
#[test]
fn native_exec_behaves_like_runc() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().busybox()?;
        let task = ctd
            .import(&img)?
            .run(&img)
            .argv(["sleep", "100"])
            .detach()?;
        task.wait_for_status("RUNNING", WAIT)?;
        let out = ctd.ctr([
            "task",
            "exec",
            "--exec-id",
            "n1",
            task.id(),
            "sh",
            "-c",
            "echo in-exec; exit 3",
        ])?;
        ensure!(out.stdout.contains("in-exec"), "exec output: {out}");
        ensure!(out.code() == 3, "exec status: {out}");
        Ok(())
    })
}

/// `ps` on the node shows a wasm container's process and a wasm exec as their own command
/// lines and program names, not as copies of the shim (both are forks of it).
#[test]
fn wasm_processes_show_their_own_command_line() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("sleeper")?;
        let task = ctd.import(&img)?.run(&img).args(["100"]).detach()?;
        task.wait_for_status("RUNNING", WAIT)?;
        let exec = ctd.ctr([
            "task",
            "exec",
            "--detach",
            "--exec-id",
            "e1",
            task.id(),
            "/app.wasm",
            "200",
        ])?;
        exec.success()?;

        let pids: Vec<String> = task
            .ps()?
            .stdout
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect();
        let mut seen: Vec<(String, String)> = pids
            .iter()
            .map(|pid| {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))?;
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
                let args: Vec<String> = cmdline
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                Ok((comm.trim().to_owned(), args.join(" ")))
            })
            .collect::<Result<_>>()?;
        seen.sort();
        let want = [("app.wasm", "/app.wasm 100"), ("app.wasm", "/app.wasm 200")]
            .map(|(c, a)| (c.to_owned(), a.to_owned()));
        ensure!(seen == want, "processes of {}: {seen:?}", task.id());
        Ok(())
    })
}

/// Both kinds of exec run in their container's own root and mounts, whatever sits at the top
/// of the node's mount tree: a wasm exec of /bin/hello.wasm beside a sleeper prints its line,
/// the printer exec lists the image's root, and a native exec sees the `/` of the container's
/// init (same device and inode), reads a file of the container's bind mount and is in its
/// init's cgroups. The cgroup v2 lane's VM once ran its tests from a chroot: an exec joined
/// the container's mount namespace but landed in the initramfs, the wasm ones failing at their
/// preopens and the native one running the initramfs' busybox without a word (runc's too; see
/// scripts/cgroup2-vm/init).
#[test]
fn execs_run_in_the_containers_root_and_mounts() -> Result<()> {
    with_containerd(|ctd| {
        let hello = Images::program("hello")?;
        let tool = Images::program("printer")?;
        let sleeper = images().wasm_with(
            "sleeper",
            &[
                "--dir",
                &format!("{}:/bin/hello.wasm", hello.display()),
                "--dir",
                &format!("{}:/bin/tool.wasm", tool.display()),
            ],
        )?;
        let busybox = images().busybox()?;
        let host = tempfile::tempdir()?;
        let marker = format!("marker of run {}", std::process::id());
        std::fs::write(host.path().join("marker.txt"), &marker)?;
        ctd.import(&sleeper)?.import(&busybox)?;

        let wasm = ctd
            .run(&sleeper)
            .args(["100"])
            .mount_ro(host.path(), "/data")
            .detach()?;
        let native = ctd
            .run(&busybox)
            .argv(["sleep", "100"])
            .mount_ro(host.path(), "/data")
            .detach()?;
        for task in [&wasm, &native] {
            task.wait_for_status("RUNNING", WAIT)?;
        }

        let out = ctd.ctr([
            "task",
            "exec",
            "--exec-id",
            "w1",
            wasm.id(),
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
            "w2",
            wasm.id(),
            "/bin/tool.wasm",
            "--ls",
            "/",
        ])?;
        out.success()?;
        for entry in ["entry app.wasm", "entry bin/", "entry data/"] {
            ensure!(
                out.stdout.lines().any(|l| l == entry),
                "the wasm exec's / must be the image's ({entry}): {out}"
            );
        }

        let root = std::fs::metadata(format!("/proc/{}/root", native.pid()?))?;
        let out = ctd.ctr([
            "task",
            "exec",
            "--exec-id",
            "n1",
            native.id(),
            "sh",
            "-c",
            "stat -c %d:%i /; cat /data/marker.txt; echo; echo ==; cat /proc/self/cgroup; \
             echo ==; cat /proc/1/cgroup",
        ])?;
        out.success()?;
        let want = format!("{}:{}", root.dev(), root.ino());
        ensure!(
            out.stdout.lines().next() == Some(want.as_str()),
            "the native exec's / must be its init's ({want}): {out}"
        );
        ensure!(
            out.stdout.contains(&marker),
            "the native exec must see the bind mount: {out}"
        );
        // Its cgroups are its init's (pid 1 of the container's own pid namespace), as both
        // see them: the same paths per hierarchy on v1, the same `0::/...` line on v2.
        let parts: Vec<&str> = out.stdout.split("==\n").collect();
        ensure!(
            parts.len() == 3 && !parts[1].trim().is_empty() && parts[1] == parts[2],
            "the native exec must be in its init's cgroups: {out}"
        );
        for task in [&wasm, &native] {
            still_running(ctd, task.id())?;
        }
        Ok(())
    })
}
