//! Faults from outside the shim: a container's process killed by someone else than
//! containerd; containerd itself killed and restarted under running tasks, through ctr and
//! through the CRI; the shim killed in the middle of Start; the state dir full at Create.

use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use k8s_cri::v1::{ContainerState, PodSandboxState};
use nix::sys::signal::Signal;
use wasmpod_integration::cri::{with_cri_mut, CRI_NAMESPACE};
use wasmpod_integration::process::{poll, wait_or_kill};
use wasmpod_integration::spec::{user_spec, SpecParams};
use wasmpod_integration::system::{self, kill_pid, shim_socket};
use wasmpod_integration::tmpfs::FullTmpfs;
use wasmpod_integration::{
    images, paths, unique_name, with_containerd, Containerd, Images, WASMPOD_RUNTIME,
};

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

/// containerd with its CRI plugin killed (SIGKILL, then SIGTERM) and started again under a pod
/// of handler wasmpod that runs a wasm sleeper and a busybox sleep: after each restart the pod
/// is READY, both containers are CONTAINER_RUNNING in ContainerStatus and ExecSync works in
/// each; afterwards StopContainer ends the wasm one with 143 and a SIGKILL from the host the
/// busybox one with 137, both as ContainerStatus reports them; StopPodSandbox and
/// RemovePodSandbox then leave nothing.
#[test]
fn cri_containers_survive_containerd_restarts() -> Result<()> {
    with_cri_mut(|cri| {
        let sleeper = cri.image(images().wasm("sleeper")?)?;
        let busybox = cri.image(images().busybox()?)?;
        // Ids only: the daemon is restarted (mutably borrowed) while the pod runs.
        let (pod, wasm, side, socket) = {
            let pod = cri.run_pod("restarts")?;
            // The one shim of the pod, named after the sandbox: checked gone at the end.
            let socket = shim_socket(&cri.socket(), CRI_NAMESPACE, pod.id());
            ensure!(
                pod.shim_socket()? == socket,
                "the pod's shim socket is not {}",
                socket.display()
            );
            let wasm = pod.start(&cri.container_config("wasm", &sleeper, &[], &[]))?;
            let side_cfg = cri.container_config("sidecar", &busybox, &["/bin/sleep"], &["3600"]);
            let side = pod.start(&side_cfg)?;
            (pod.id().to_string(), wasm, side, socket)
        };
        for id in [&wasm, &side] {
            cri.wait_state(id, ContainerState::ContainerRunning, WAIT)?;
        }

        for signal in [Signal::SIGKILL, Signal::SIGTERM] {
            cri.restart(signal)?;
            let client = cri.client()?;
            let (status, _) = client.pod_status(&pod)?;
            ensure!(
                status.state == PodSandboxState::SandboxReady as i32,
                "pod after containerd's {signal}: {status:?}"
            );
            for id in [&wasm, &side] {
                let (status, _) = client.container_status(id)?;
                ensure!(
                    status.state == ContainerState::ContainerRunning as i32,
                    "{id} after containerd's {signal}: {status:?}"
                );
            }
            let r = client.exec_sync(&wasm, &["/app.wasm", "1"], 20)?;
            ensure!(
                r.exit_code == 0 && r.stdout == b"tick 1\n",
                "wasm ExecSync after containerd's {signal}: {r:?}"
            );
            let r = client.exec_sync(&side, &["/bin/sh", "-c", "echo alive; exit 3"], 20)?;
            ensure!(
                r.exit_code == 3 && r.stdout == b"alive\n",
                "busybox ExecSync after containerd's {signal}: {r:?}"
            );
        }

        let client = cri.client()?;
        client.stop_container(&wasm, 10)?;
        let status = cri.wait_state(&wasm, ContainerState::ContainerExited, WAIT)?;
        ensure!(status.exit_code == 143, "wasm stopped: {status:?}");
        let (_, info) = client.container_status(&side)?;
        let info: serde_json::Value =
            serde_json::from_str(info.get("info").context("no verbose info")?)?;
        let Some(pid) = info["pid"].as_i64().filter(|p| *p > 0) else {
            bail!("no pid for {side} in {info}");
        };
        kill_pid(pid as i32);
        let status = cri.wait_state(&side, ContainerState::ContainerExited, WAIT)?;
        ensure!(status.exit_code == 137, "busybox killed: {status:?}");
        client.stop_pod(&pod)?;
        client.remove_pod(&pod)?;
        cri.wait_clean()?;
        ensure!(!socket.exists(), "shim socket {} left", socket.display());
        Ok(())
    })
}

/// The shim SIGKILLed while its Create runs the container's prestart hook, which
/// libcontainer runs from the builder process (a fork of the shim) while the container's
/// process (a fork of that) waits. Holding the shim's ttrpc sockets (its listener and
/// containerd's connections), those forks kept containerd from seeing the shim die, and `ctr
/// run` waited on. No process but the shim holds them: `ctr run` fails while the hook still
/// blocks, and once it is gone nothing is left.
#[test]
fn a_shim_killed_mid_create_is_seen_gone_at_once() -> Result<()> {
    with_containerd(|ctd| {
        let BlockedInHook {
            id,
            mut run,
            hook,
            parent,
        } = run_blocked_in_hook(ctd, "prestart")?;
        let shim = system::shims_of(&ctd.socket().to_string_lossy(), paths::SHIM_BINARY);
        let [shim] = shim.as_slice() else {
            bail!("not one shim: {shim:?}");
        };
        let socket = shim_socket(ctd.socket(), ctd.namespace(), &id);
        let holders = system::socket_holders(&socket);
        ensure!(
            holders == [shim.pid],
            "the shim's sockets are held by {holders:?}, not the shim {} alone (the hook's \
             parent is {parent})",
            shim.pid
        );

        kill_pid(shim.pid);
        let status = wait_or_kill(&mut run, WAIT)?;
        ensure!(
            status.is_some_and(|s| !s.success()),
            "ctr run with its shim killed mid-Create: {status:?}, {}",
            read_all(run.stderr.take())
        );
        drop(hook);
        for c in ctd.containers()? {
            ctd.ctr(["containers", "rm", &c])?.success()?;
        }
        ctd.assert_clean()?;
        poll("the shim socket to be removed", WAIT, || {
            Ok((!socket.exists()).then_some(()))
        })
        .map(drop)
    })
}

/// A `ctr run` of a wasm sleeper whose `kind` hook (prestart, poststart) blocks: the run, its
/// container id, the hook (killed on drop) and the hook's parent.
struct BlockedInHook {
    id: String,
    run: Child,
    hook: KillOnDrop,
    parent: i32,
}

fn run_blocked_in_hook(ctd: &Containerd, kind: &str) -> Result<BlockedInHook> {
    let id = unique_name(&format!("mid-{kind}"));
    let marker = ctd.dir().join(format!("{id}.hook"));
    let script = format!(
        "echo $$ $PPID > {m}.tmp && /bin/mv {m}.tmp {m}; exec /bin/sleep 600",
        m = marker.display()
    );
    let hooks = serde_json::json!({
        kind: [{ "path": "/bin/sh", "args": ["sh", "-c", script] }]
    });
    let spec = sleeper_spec(ctd, &id, &["600"], hooks)?;
    let mut run = spawn_config_run(ctd, &id, &spec)?;
    let pids = poll(&format!("the {kind} hook to run"), WAIT, || {
        if let Some(status) = run.try_wait()? {
            bail!("ctr run ended before its {kind} hook ran: {status}");
        }
        Ok(std::fs::read_to_string(&marker).ok())
    })?;
    match pids
        .split_whitespace()
        .map(str::parse::<i32>)
        .collect::<Result<Vec<_>, _>>()?[..]
    {
        // The hook is the test's own, not the shim's: it would sleep on, also when the test
        // fails half-way.
        [hook, parent] => Ok(BlockedInHook {
            id,
            run,
            hook: KillOnDrop(hook),
            parent,
        }),
        _ => bail!("hook marker {pids:?}"),
    }
}

/// The whole spec (`ctr run --config`) of a wasm sleeper run as `id` with `args`, its rootfs a
/// copy of the image's under the daemon's dir; `hooks` goes into the spec as is.
fn sleeper_spec(
    ctd: &Containerd,
    id: &str,
    args: &[&str],
    hooks: serde_json::Value,
) -> Result<std::path::PathBuf> {
    let image = images().wasm("sleeper")?;
    let Some(src) = &image.rootfs else {
        bail!("the sleeper image has no host rootfs");
    };
    let rootfs = ctd.dir().join("rootfs").join(id);
    std::fs::create_dir_all(&rootfs)?;
    std::fs::copy(src.join("app.wasm"), rootfs.join("app.wasm"))?;
    let default = ctd.ctr(["oci", "spec"])?;
    default.success()?;
    let argv: Vec<String> = ["/app.wasm"]
        .iter()
        .chain(args)
        .map(|a| a.to_string())
        .collect();
    let spec = user_spec(
        &default.stdout,
        &SpecParams {
            namespace: ctd.namespace(),
            id,
            rootfs: &rootfs,
            argv: &argv,
            env: &[],
            mounts: &[],
            cwd: None,
            user: (0, 0),
            memory_limit: None,
        },
    )?;
    let mut spec: serde_json::Value = serde_json::from_str(&spec)?;
    spec["hooks"] = hooks;
    let path = ctd.dir().join(format!("{id}.spec.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&spec)?)?;
    Ok(path)
}

/// `ctr run --rm --config SPEC ID` on wasmpod, in the background.
fn spawn_config_run(ctd: &Containerd, id: &str, spec: &std::path::Path) -> Result<Child> {
    let mut cmd = ctd.ctr_command();
    cmd.args(["run", "--rm", "--runtime", WASMPOD_RUNTIME, "--fifo-dir"])
        .arg(ctd.dir().join("fifo"))
        .arg("--config")
        .arg(spec)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Ok(cmd.spawn()?)
}

/// A process of the test's own, SIGKILLed when the guard goes.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill_pid(self.0);
    }
}

/// What is left to read of a finished child's pipe (small: ctr's messages).
fn read_all(pipe: Option<impl std::io::Read>) -> String {
    let mut text = String::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_string(&mut text);
    }
    text
}

/// The shim SIGKILLed in the middle of Start: the container's spec has a poststart hook, which
/// the runtime (here the shim, in libcontainer's `start`) runs after the workload started and
/// before Start returns; the hook records its parent, the shim, and blocks. `ctr run` fails;
/// containerd's cleanup (`shim delete`) leaves no process, mount, cgroup, bundle or state dir,
/// and no shim socket under /run/containerd/s; the next create and start of the same program
/// works.
#[test]
fn a_shim_killed_mid_start_leaves_nothing_behind() -> Result<()> {
    with_containerd(|ctd| {
        let BlockedInHook {
            id,
            mut run,
            hook: _hook,
            parent: shim,
        } = run_blocked_in_hook(ctd, "poststart")?;
        let argv = std::fs::read(format!("/proc/{shim}/cmdline")).unwrap_or_default();
        ensure!(
            String::from_utf8_lossy(&argv).contains(paths::SHIM_BINARY),
            "the hook's parent {shim} is no wasmpod shim: {argv:?}"
        );
        // `start` forks the serving shim, which shows the arguments an exec'd one would have.
        let args: Vec<String> = argv
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        ensure!(
            args.iter().any(|a| a == "-socket") && !args.iter().any(|a| a == "start"),
            "the serving shim {shim} does not show its own command line: {args:?}"
        );
        let socket = shim_socket(ctd.socket(), ctd.namespace(), &id);
        ensure!(socket.exists(), "no shim socket {}", socket.display());
        let Some(init) = ctd.task_list()?.into_iter().find(|t| t.id == id) else {
            bail!("no task {id} while it starts");
        };
        kill_pid(shim);
        let status = wait_or_kill(&mut run, WAIT)?;
        ensure!(
            status.is_some_and(|s| !s.success()),
            "ctr run with its shim killed mid-Start: {status:?}, {}",
            read_all(run.stderr.take())
        );
        poll("the container's init to be gone", WAIT, || {
            Ok((!std::path::Path::new(&format!("/proc/{}", init.pid)).exists()).then_some(()))
        })?;
        // ctr run --rm could not remove what it made: the user's `ctr c rm` then finds
        // nothing else to clean.
        for c in ctd.containers()? {
            ctd.ctr(["containers", "rm", &c])?.success()?;
        }
        ctd.assert_clean()?;
        // containerd 2.x may remove the bundle (a delete of its own) while the `shim delete`
        // of its dead-shim cleanup still runs: the socket goes last.
        poll("the shim socket to be removed", WAIT, || {
            Ok((!socket.exists()).then_some(()))
        })
        .with_context(|| {
            format!(
                "shim socket {} left; containerd's log:\n{}",
                socket.display(),
                ctd.log_tail(80)
            )
        })?;

        let next = unique_name("after-mid-start");
        let spec = sleeper_spec(ctd, &next, &["1"], serde_json::json!({}))?;
        let mut run = spawn_config_run(ctd, &next, &spec)?;
        let status = wait_or_kill(&mut run, WAIT)?;
        let stdout = read_all(run.stdout.take());
        ensure!(
            status.is_some_and(|s| s.success()) && stdout == "tick 1\n",
            "the run after the killed Start: {status:?} {stdout:?} {}",
            read_all(run.stderr.take())
        );
        Ok(())
    })
}

/// The state dir of the daemon's tasks full at Create: a 1 MiB tmpfs over
/// `state/io.containerd.runtime.v2.task` (where containerd makes each bundle, and the shim and
/// libcontainer keep their files in it) is filled until 0, 1, 2... pages are free, and hello
/// is run at each level until one has room. Every run that fails says "no space left on
/// device" and names the file it could not write, and leaves nothing behind (process, mount,
/// cgroup, bundle, shim socket); once the filler is removed hello runs.
#[test]
fn a_full_state_dir_fails_create_clearly_and_leaves_nothing() -> Result<()> {
    const PAGE: u64 = 4096;
    with_containerd(|ctd| {
        let hello = images().wasm("hello")?;
        ctd.import(&hello)?;
        let tasks = ctd.dir().join("state/io.containerd.runtime.v2.task");
        let tmpfs = FullTmpfs::mount(&tasks, 1 << 20)?;
        let (mut failed, mut ran) = (0, false);
        for pages in 0..64 {
            let free = tmpfs.leave_free(pages * PAGE)?;
            let id = unique_name("full");
            let out = ctd.run(&hello).id(&id).exec()?;
            if out.code() == 0 {
                ran = true;
                break;
            }
            failed += 1;
            let text = out.combined();
            eprintln!("{free} bytes free: {}", text.trim());
            ensure!(
                text.to_lowercase().contains("no space left on device")
                    && text.contains(&tasks.display().to_string()),
                "with {free} bytes free, the error names neither the cause nor the file: {out}"
            );
            for c in ctd.containers()? {
                ctd.ctr(["containers", "rm", &c])?.success()?;
            }
            ctd.assert_clean_but(&[&tasks])
                .with_context(|| format!("after the run with {free} bytes free"))?;
            let socket = shim_socket(ctd.socket(), ctd.namespace(), &id);
            ensure!(!socket.exists(), "shim socket {} left", socket.display());
        }
        ensure!(failed > 0, "hello ran in a full state dir");
        ensure!(
            ran,
            "hello never ran, even with 256 KiB of the state dir free"
        );
        tmpfs.release()?;
        let out = ctd.run(&hello).exec()?;
        out.success()?;
        ensure!(out.stdout.contains("hello from wasmpod"), "{out}");
        ctd.assert_clean_but(&[&tasks])
    })
}
