//! Kubernetes through the CRI: containerd 1.7's CRI plugin driven as kubelet drives it,
//! with runtime handler `wasmpod` (see `wasmpod_integration::cri`). Every test gets its
//! own containerd, registry, pod network and temp dir, and checks that removing its pods
//! and tearing down leave nothing behind.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use k8s_cri::v1::{
    ContainerConfig, ContainerState, ContainerStatus, LinuxContainerResources, PodSandboxState,
};
use wasmpod_integration::cgroup::ContainerCgroup;
use wasmpod_integration::cri::pod::{bind, env};
use wasmpod_integration::cri::{with_cri, Cri, LogLine, Pod, WASMPOD_HANDLER};
use wasmpod_integration::images;
use wasmpod_integration::process::poll;
use wasmpod_integration::system;

const WAIT: Duration = Duration::from_secs(20);
const HTTP_BODY: &str = "hello from wasmpod http-server\n";

/// The `pid` in a verbose status's `info` JSON.
fn info_pid(info: &std::collections::HashMap<String, String>) -> Result<i32> {
    let v: serde_json::Value = serde_json::from_str(info.get("info").context("no info")?)?;
    v["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| anyhow!("no pid in {v}"))
}

/// Starts `config` in `pod` and waits until it runs.
fn start_running(cri: &Cri, pod: &Pod<'_>, config: &ContainerConfig) -> Result<String> {
    let id = pod.start(config)?;
    cri.wait_state(&id, ContainerState::ContainerRunning, WAIT)?;
    Ok(id)
}

/// Runs `config` in `pod` to its exit; returns the exit status and the log records.
fn run_to_exit(
    cri: &Cri,
    pod: &Pod<'_>,
    config: &ContainerConfig,
    last_output: &str,
) -> Result<(k8s_cri::v1::ContainerStatus, Vec<LogLine>)> {
    let id = pod.start(config)?;
    let status = cri.wait_state(&id, ContainerState::ContainerExited, WAIT)?;
    let lines = pod.wait_log(config, last_output, WAIT)?;
    Ok((status, lines))
}

fn has_line(lines: &[LogLine], stream: &str, content: &str) -> bool {
    lines
        .iter()
        .any(|l| l.stream == stream && l.tag == "F" && l.content == content)
}

/// RunPodSandbox with handler `wasmpod` runs the (native, static) pause sandbox through
/// wasmpod: the sandbox is READY, its verbose info names `io.containerd.wasmpod.v1`, and
/// the pause process is a child of the pod's wasmpod shim. A wasm container (sleeper) and
/// a native busybox sidecar then both run in the pod, and still exactly one wasmpod shim
/// (and no runc shim) serves this containerd.
#[test]
fn sandbox_wasm_and_sidecar_share_one_shim() -> Result<()> {
    with_cri(|cri| {
        let sleeper = cri.image(images().wasm("sleeper")?)?;
        let busybox = cri.image(images().busybox()?)?;
        let pod = cri.run_pod("mixed")?;
        let (status, info) = cri.client()?.pod_status(pod.id())?;
        ensure!(
            status.state == PodSandboxState::SandboxReady as i32,
            "{status:?}"
        );
        ensure!(status.runtime_handler == WASMPOD_HANDLER, "{status:?}");
        let raw: serde_json::Value = serde_json::from_str(info.get("info").context("no info")?)?;
        ensure!(
            raw["runtimeType"] == "io.containerd.wasmpod.v1",
            "sandbox info: {raw}"
        );
        let shims = cri.shims();
        ensure!(shims.len() == 1, "want 1 wasmpod shim, found {shims:#?}");
        let pause = info_pid(&info)?;
        ensure!(
            system::ppid(pause) == shims[0].pid,
            "pause pid {pause} has parent {}, the shim is {}",
            system::ppid(pause),
            shims[0].pid
        );

        let wasm = cri.container_config("wasm", &sleeper, &[], &[]);
        let side = cri.container_config("sidecar", &busybox, &["/bin/sleep"], &["3600"]);
        start_running(cri, &pod, &wasm)?;
        start_running(cri, &pod, &side)?;
        pod.wait_log(&wasm, "tick 2", WAIT)?;

        let shims = cri.shims();
        ensure!(
            shims.len() == 1,
            "want 1 shim for the pod, found {shims:#?}"
        );
        let sock = cri.socket().display().to_string();
        let runc: Vec<_> = system::shims_of(&sock, "containerd-shim-runc-v2");
        ensure!(runc.is_empty(), "runc shims: {runc:#?}");
        pod.remove()
    })
}

/// A wasm HTTP server (wasip2 `TcpListener` on 0.0.0.0:8080) in a pod with a busybox
/// sidecar: the sidecar's `wget http://127.0.0.1:8080/` (ExecSync) gets the body through
/// the shared network namespace, and the host gets it on the pod IP over plain TCP.
#[test]
fn http_server_reachable_from_sidecar_and_host() -> Result<()> {
    with_cri(|cri| {
        let server_img = cri.image(images().wasm("http-server")?)?;
        let busybox = cri.image(images().busybox()?)?;
        let pod = cri.run_pod("web")?;
        let server = cri.container_config("server", &server_img, &[], &[]);
        let side = cri.container_config("sidecar", &busybox, &["/bin/sleep"], &["3600"]);
        start_running(cri, &pod, &server)?;
        let side_id = start_running(cri, &pod, &side)?;
        pod.wait_log(&server, "listening on 0.0.0.0:8080", WAIT)?;

        let wget = ["/bin/busybox", "wget", "-qO-", "http://127.0.0.1:8080/"];
        let resp = cri.client()?.exec_sync(&side_id, &wget, 10)?;
        let out = String::from_utf8_lossy(&resp.stdout);
        ensure!(
            resp.exit_code == 0 && out == HTTP_BODY,
            "sidecar wget: exit {}, stdout {out:?}, stderr {:?}",
            resp.exit_code,
            String::from_utf8_lossy(&resp.stderr)
        );

        let ip = pod.ip()?;
        ensure!(ip.starts_with(&cri.network().prefix()), "pod IP {ip}");
        let addr = format!("{ip}:8080").parse()?;
        let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connect to {addr} from the host"))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        conn.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")?;
        let mut reply = String::new();
        conn.read_to_string(&mut reply)?;
        ensure!(reply.starts_with("HTTP/1.0 200 OK\r\n"), "{reply:?}");
        ensure!(
            reply.ends_with(&format!("\r\n\r\n{HTTP_BODY}")),
            "{reply:?}"
        );
        pod.remove()
    })
}

/// How much earlier than `started_at` a container may have finished. containerd's CRI stamps
/// `started_at` with its own clock after the shim answered Start, and `finished_at` is the
/// shim's exit time (containerd 2.1: `internal/cri/server/container_start.go`): a program that
/// is done within a fraction of a millisecond (hello on wasmtime) can end before that stamp.
/// containerd 2.1 shows it about every other run (0.3-0.5 ms), 1.7 has not here.
const START_STAMP_SLACK_NS: i64 = 20_000_000;

/// created <= started, and the finish no earlier than the start, within
/// [`START_STAMP_SLACK_NS`].
fn times_are_ordered(status: &ContainerStatus) -> Result<()> {
    ensure!(
        0 < status.created_at
            && status.created_at <= status.started_at
            && status.created_at <= status.finished_at
            && status.started_at - START_STAMP_SLACK_NS <= status.finished_at,
        "times: created {}, started {}, finished {}: {status:?}",
        status.created_at,
        status.started_at,
        status.finished_at
    );
    Ok(())
}

/// After a wasm container exits, ContainerStatus reports exit code, reason ("Error" for
/// non-zero, "Completed" for 0) and ordered created/started/finished times; its log at the
/// CRI log path is in CRI format, with stdout and stderr records tagged as such.
#[test]
fn exited_container_status_and_cri_logs() -> Result<()> {
    with_cri(|cri| {
        let printer = cri.image(images().wasm("printer")?)?;
        let hello = cri.image(images().wasm("hello")?)?;
        let pod = cri.run_pod("logs")?;

        let failing = cri.container_config("printer", &printer, &[], &["--ls", "/missing"]);
        let (status, lines) = run_to_exit(cri, &pod, &failing, "error:")?;
        ensure!(status.exit_code == 2, "{status:?}");
        ensure!(status.reason == "Error", "{status:?}");
        times_are_ordered(&status)?;
        ensure!(has_line(&lines, "stdout", "arg[1]=--ls"), "{lines:#?}");
        ensure!(has_line(&lines, "stdout", "ls /missing"), "{lines:#?}");
        ensure!(
            lines
                .iter()
                .any(|l| l.stream == "stderr" && l.content.starts_with("error: ")),
            "no stderr record: {lines:#?}"
        );
        ensure!(lines
            .iter()
            .all(|l| l.stream != "stderr" || l.content.starts_with("error")));

        let ok = cri.container_config("hello", &hello, &[], &[]);
        let (status, lines) = run_to_exit(cri, &pod, &ok, "hello from wasmpod")?;
        ensure!(
            status.exit_code == 0 && status.reason == "Completed",
            "{status:?}"
        );
        times_are_ordered(&status)?;
        ensure!(
            has_line(&lines, "stdout", "hello from wasmpod"),
            "{lines:#?}"
        );
        pod.remove()
    })
}

/// ExecSync into a running wasm container runs `/app.wasm` with the given args and returns
/// its stdout, stderr and exit code; ExecSync into the busybox sidecar works too.
#[test]
fn exec_sync_in_wasm_container_and_sidecar() -> Result<()> {
    with_cri(|cri| {
        let sleeper = cri.image(images().wasm("sleeper")?)?;
        let busybox = cri.image(images().busybox()?)?;
        let pod = cri.run_pod("exec")?;
        let wasm = start_running(cri, &pod, &cri.container_config("wasm", &sleeper, &[], &[]))?;
        let side_cfg = cri.container_config("sidecar", &busybox, &["/bin/sleep"], &["3600"]);
        let side = start_running(cri, &pod, &side_cfg)?;
        let client = cri.client()?;

        let r = client.exec_sync(&wasm, &["/app.wasm", "2"], 20)?;
        let out = String::from_utf8_lossy(&r.stdout);
        ensure!(r.exit_code == 0 && out == "tick 1\ntick 2\n", "{r:?}");

        let r = client.exec_sync(&wasm, &["/app.wasm", "x"], 20)?;
        let err = String::from_utf8_lossy(&r.stderr);
        ensure!(
            r.exit_code == 1 && err.contains("bad tick count") && r.stdout.is_empty(),
            "{r:?}"
        );

        let sh = ["/bin/sh", "-c", "echo side; echo oops >&2; exit 3"];
        let r = client.exec_sync(&side, &sh, 20)?;
        ensure!(
            r.exit_code == 3 && r.stdout == b"side\n" && r.stderr == b"oops\n",
            "{r:?}"
        );
        // The wasm container itself still runs after the execs.
        cri.wait_state(&wasm, ContainerState::ContainerRunning, WAIT)?;
        pod.remove()
    })
}

/// StopContainer with a 10 s grace period stops a running wasm sleeper at once (SIGTERM),
/// with exit code 143; RemovePodSandbox then leaves no shim (nor its socket), no process
/// naming the temp dir, no mount (the pod's network namespace included) and no container
/// cgroup.
#[test]
fn stop_container_then_remove_pod_leaves_nothing() -> Result<()> {
    with_cri(|cri| {
        let sleeper = cri.image(images().wasm("sleeper")?)?;
        let pod = cri.run_pod("stop")?;
        let cfg = cri.container_config("wasm", &sleeper, &[], &[]);
        let id = start_running(cri, &pod, &cfg)?;
        pod.wait_log(&cfg, "tick 1", WAIT)?;

        let t = Instant::now();
        cri.client()?.stop_container(&id, 10)?;
        let took = t.elapsed();
        ensure!(took < Duration::from_secs(5), "StopContainer took {took:?}");
        let (status, _) = cri.client()?.container_status(&id)?;
        ensure!(
            status.state == ContainerState::ContainerExited as i32 && status.exit_code == 143,
            "{status:?}"
        );

        let netns: Vec<_> = system::mounts_under(cri.dir())
            .into_iter()
            .filter(|m| m.to_string_lossy().contains("netns"))
            .collect();
        ensure!(
            !netns.is_empty(),
            "the pod's netns is not mounted under the temp dir"
        );
        let socket = pod.shim_socket()?;
        ensure!(socket.exists(), "shim socket {} missing", socket.display());
        pod.remove()?;
        cri.wait_clean()?;
        ensure!(!socket.exists(), "shim socket {} left", socket.display());
        for m in &netns {
            ensure!(!m.exists(), "netns file {} still exists", m.display());
        }
        Ok(())
    })
}

/// ContainerStats of a running wasm container reports non-zero CPU time and memory.
#[test]
fn container_stats_report_cpu_and_memory() -> Result<()> {
    with_cri(|cri| {
        let sleeper = cri.image(images().wasm("sleeper")?)?;
        let pod = cri.run_pod("stats")?;
        let cfg = cri.container_config("wasm", &sleeper, &[], &[]);
        let id = start_running(cri, &pod, &cfg)?;
        pod.wait_log(&cfg, "tick 2", WAIT)?;
        let mut last = None;
        let stats = poll("non-zero stats", WAIT, || {
            let s = cri.client()?.container_stats(&id)?;
            let cpu = s
                .cpu
                .as_ref()
                .and_then(|c| c.usage_core_nano_seconds.as_ref());
            let mem = s.memory.as_ref().and_then(|m| m.working_set_bytes.as_ref());
            let ok = cpu.is_some_and(|c| c.value > 0) && mem.is_some_and(|m| m.value > 0);
            last = Some(s.clone());
            Ok(ok.then_some(s))
        })
        .with_context(|| format!("last stats: {last:?}"))?;
        let attrs = stats.attributes.context("no attributes")?;
        ensure!(attrs.id == id, "stats of {}, want {id}", attrs.id);
        pod.remove()
    })
}

/// A memory limit, CPU quota/period and CPU shares in the container config reach the
/// container's cgroup v1 files, and the guest process sits in that memory cgroup.
#[test]
fn resources_reach_the_cgroup() -> Result<()> {
    const LIMIT: i64 = 96 * 1024 * 1024;
    with_cri(|cri| {
        let sleeper = cri.image(images().wasm("sleeper")?)?;
        let pod = cri.run_pod("limits")?;
        let mut cfg = cri.container_config("wasm", &sleeper, &[], &[]);
        if let Some(linux) = cfg.linux.as_mut() {
            linux.resources = Some(LinuxContainerResources {
                memory_limit_in_bytes: LIMIT,
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 512,
                ..Default::default()
            });
        }
        let id = start_running(cri, &pod, &cfg)?;
        let cg = pod.container_cgroup(&id)?;
        ensure!(cg.memory_limit()? == Some(LIMIT as u64), "{cg:?}");
        ensure!(cg.cpu_quota_period()? == (Some(50_000), 100_000), "{cg:?}");
        ensure!(
            cg.cpu_shares_or_weight()? == cg.expected_shares(512),
            "{cg:?}"
        );
        let (_, info) = cri.client()?.container_status(&id)?;
        let pid = info_pid(&info)?;
        let procs_dir = match &cg {
            ContainerCgroup::V1 { memory, .. } => memory.clone(),
            ContainerCgroup::V2(dir) => dir.clone(),
        };
        let procs = fs::read_to_string(procs_dir.join("cgroup.procs"))?;
        ensure!(
            procs.lines().any(|l| l.trim() == pid.to_string()),
            "pid {pid} not in {}: {procs:?}",
            procs_dir.display()
        );
        pod.remove()
    })
}

/// Containers that outgrow their memory limit show as OOMKilled, as under runc: exit code
/// 137, reason "OOMKilled" (from the shim's TaskOOM event; without it the reason would be
/// "Error"). A busybox sidecar is killed by the kernel's OOM killer; a wasm guest (memhog,
/// aborting like ordinary Rust code) traps when the engine refuses it memory at the limit.
#[test]
fn oom_killed_containers_are_reported_as_oomkilled() -> Result<()> {
    with_cri(|cri| {
        let busybox = cri.image(images().busybox()?)?;
        let memhog = cri.image(images().wasm("memhog")?)?;
        let pod = cri.run_pod("oom")?;
        let native = cri.container_config(
            "hog",
            &busybox,
            &["/bin/sh"],
            &["-c", "x=a; while :; do x=$x$x; done"],
        );
        let wasm = cri.container_config("memhog", &memhog, &[], &["512", "--abort"]);
        for mut cfg in [native, wasm] {
            if let Some(linux) = cfg.linux.as_mut() {
                linux.resources = Some(LinuxContainerResources {
                    memory_limit_in_bytes: 64 * 1024 * 1024,
                    ..Default::default()
                });
            }
            let id = pod.start(&cfg)?;
            let status = cri.wait_state(&id, ContainerState::ContainerExited, WAIT)?;
            ensure!(
                status.exit_code == 137 && status.reason == "OOMKilled",
                "{status:?}"
            );
        }
        pod.remove()
    })
}

/// An env var, a read-only file mount (ConfigMap-like, `/etc/config/x`) and a read-write
/// host dir (emptyDir-like, `/data`) reach wasm guests: printer sees the variable (and the
/// image's own), files reads the config, cannot write it, and writes through to the host.
#[test]
fn env_and_mounts_reach_the_wasm_guest() -> Result<()> {
    with_cri(|cri| {
        let printer = cri.image(images().printer()?)?;
        let files = cri.image(images().wasm("files")?)?;
        let config = cri.dir().join("configmap-x");
        fs::write(&config, "key=value\n")?;
        let empty = cri.dir().join("empty-dir");
        fs::create_dir_all(&empty)?;
        let pod = cri.run_pod("mounts")?;
        let with_mounts = |name: &str, image: &str, args: &[&str]| {
            let mut c = cri.container_config(name, image, &[], args);
            c.envs.push(env("APP_MODE", "cri"));
            c.mounts.push(bind(&config, "/etc/config/x", true));
            c.mounts.push(bind(&empty, "/data", false));
            c
        };

        let cfg = with_mounts("printer", &printer, &["--ls", "/etc/config"]);
        let (st, lines) = run_to_exit(cri, &pod, &cfg, "entry x")?;
        ensure!(st.exit_code == 0, "{st:?} {lines:#?}");
        ensure!(has_line(&lines, "stdout", "env APP_MODE=cri"), "{lines:#?}");
        ensure!(
            has_line(&lines, "stdout", "env IMAGE_VAR=from-image"),
            "{lines:#?}"
        );

        let cfg = with_mounts("read", &files, &["read", "/etc/config/x"]);
        let (st, lines) = run_to_exit(cri, &pod, &cfg, "key=value")?;
        ensure!(st.exit_code == 0, "{st:?} {lines:#?}");

        let cfg = with_mounts("write-ro", &files, &["write", "/etc/config/x", "nope"]);
        let (st, lines) = run_to_exit(cri, &pod, &cfg, "error:")?;
        ensure!(st.exit_code == 2, "{st:?} {lines:#?}");
        ensure!(
            fs::read_to_string(&config)? == "key=value\n",
            "ro file changed"
        );

        let cfg = with_mounts(
            "write-rw",
            &files,
            &["write", "/data/out.txt", "from guest"],
        );
        let (st, lines) = run_to_exit(cri, &pod, &cfg, "wrote 10 bytes")?;
        ensure!(st.exit_code == 0, "{st:?} {lines:#?}");
        let written = fs::read_to_string(empty.join("out.txt"))?;
        ensure!(written == "from guest", "host sees {written:?}");
        pod.remove()
    })
}
