//! Reaching a served `wasi:http` handler the ways a cluster or a Docker host does: in a CRI
//! pod (its own network namespace, made by CNI) from the host on the pod IP, from a sidecar on
//! localhost and from the handler itself (an outgoing request); through Docker's bridge with a
//! published port; and on the host network, where outgoing requests are denied. Each ends with
//! the runtime's stop (SIGTERM), which must drain and exit 0.
//! (Serving itself, limits and metering through ctr: `http_serving.rs`.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use k8s_cri::v1::{ContainerConfig, ContainerState};
use wasmpod_integration::cri::{with_cri, Cri, Pod};
use wasmpod_integration::docker_net::{with_net_docker, NetDocker};
use wasmpod_integration::http::{self, expect_status};
use wasmpod_integration::process::poll;
use wasmpod_integration::{images, Output, WASMPOD_RUNTIME};

const WAIT: Duration = Duration::from_secs(20);
const HELLO: &str = "hello from wasm\n";
/// `docker run` flags for the handler: wasmpod, and the platform a component's image has.
const WASM_P2: &[&str] = &["--runtime", WASMPOD_RUNTIME, "--platform", "wasip2/wasm"];
/// Runtimes stop a container with SIGTERM, then SIGKILL after this grace period (s).
const STOP_GRACE_S: i64 = 10;
/// A drained stop with nothing in flight is much faster than the grace period.
const STOP_FAST: Duration = Duration::from_secs(5);

fn start_running(cri: &Cri, pod: &Pod<'_>, config: &ContainerConfig) -> Result<String> {
    let id = pod.start(config)?;
    cri.wait_state(&id, ContainerState::ContainerRunning, WAIT)?;
    Ok(id)
}

/// `docker run -d FLAGS IMAGE` of the handler under wasmpod; returns the container id.
fn run_handler(d: &NetDocker, flags: &[&str], image: &str) -> Result<String> {
    let args = [&["run", "-d"], flags, WASM_P2, &[image]].concat();
    let run = d.docker(&args)?;
    run.success()?;
    let id = run.stdout.trim().to_string();
    ensure!(!id.is_empty(), "docker run -d printed no id: {run}");
    Ok(id)
}

/// `docker logs ID`, stdout and stderr kept apart as the container wrote them.
fn logs(d: &NetDocker, id: &str) -> Result<Output> {
    let out = d.docker(["logs", id])?;
    out.success()?;
    Ok(out)
}

/// `docker stop -t GRACE ID`; returns how long it took.
fn stop(d: &NetDocker, id: &str) -> Result<Duration> {
    let grace = STOP_GRACE_S.to_string();
    let t = Instant::now();
    d.docker(["stop", "-t", &grace, id])?.success()?;
    Ok(t.elapsed())
}

/// `GET /` answers 200 with the handler's greeting.
fn expect_hello(addr: SocketAddr, what: &str) -> Result<()> {
    let r = http::get(addr, "/").with_context(|| format!("{what}: GET / on {addr}"))?;
    expect_status(&r, 200, what)?;
    ensure!(r.text() == HELLO, "{what}: {r}");
    Ok(())
}

/// A pod with its own network namespace (CNI bridge, as kubelet asks for) holding the
/// http-handler (no env: 0.0.0.0:8080) and a busybox sidecar, both under the `wasmpod`
/// handler (a pod's containers all run under its runtime handler; wasmpod runs the native
/// sidecar itself). The host gets `GET /` on the pod IP; the sidecar's
/// `wget http://127.0.0.1:8080/counter` prints 1, twice (a fresh instance per request);
/// `/fetch?url=http://127.0.0.1:8080/` makes the handler request itself over the pod's
/// loopback and relays the 200 (outgoing requests are allowed in the pod's own netns).
/// StopContainer (SIGTERM) ends it at once with exit code 0, reason Completed, and its CRI
/// log (stderr) holds `wasmpod: serving ... on http://0.0.0.0:8080` and the drain's
/// `wasmpod: stopped` line; after it the sidecar's wget finds nothing listening.
#[test]
fn pod_ip_sidecar_and_self_fetch_reach_the_handler() -> Result<()> {
    with_cri(|cri| {
        let handler = cri.image(images().wasm("http-handler")?)?;
        let busybox = cri.image(images().busybox()?)?;
        let pod = cri.run_pod("http-reach")?;
        let web = cri.container_config("web", &handler, &[], &[]);
        let side = cri.container_config("sidecar", &busybox, &["/bin/sleep"], &["3600"]);
        let web_id = start_running(cri, &pod, &web)?;
        let side_id = start_running(cri, &pod, &side)?;
        // Printed once the listener is bound.
        pod.wait_log(&web, "wasmpod: serving", WAIT)?;

        // (a) The host, on the pod IP (the CNI bridge's subnet, routed on the host).
        let ip = pod.ip()?;
        ensure!(ip.starts_with(&cri.network().prefix()), "pod IP {ip}");
        let addr: SocketAddr = format!("{ip}:8080").parse()?;
        expect_hello(addr, "GET / on the pod IP from the host")?;

        // (b) The sidecar, on localhost of the shared network namespace.
        let wget = [
            "/bin/busybox",
            "wget",
            "-q",
            "-O",
            "-",
            "http://127.0.0.1:8080/counter",
        ];
        for attempt in 1..=2 {
            let r = cri.client()?.exec_sync(&side_id, &wget, 10)?;
            let out = String::from_utf8_lossy(&r.stdout);
            ensure!(
                r.exit_code == 0 && out.trim() == "1",
                "sidecar wget /counter #{attempt}: exit {}, stdout {out:?}, stderr {:?}",
                r.exit_code,
                String::from_utf8_lossy(&r.stderr)
            );
        }

        // (c) The handler fetches itself: an outgoing request inside the pod's netns.
        let f = http::get(addr, "/fetch?url=http://127.0.0.1:8080/")
            .with_context(|| format!("self fetch in the pod: GET /fetch on {addr}"))?;
        expect_status(&f, 200, "self fetch in the pod")?;
        ensure!(
            f.text().contains("upstream status 200") && f.text().contains(HELLO),
            "self fetch in the pod: {f}"
        );

        // (d) StopContainer sends SIGTERM: drained, exit 0.
        let t = Instant::now();
        cri.client()?.stop_container(&web_id, STOP_GRACE_S)?;
        let took = t.elapsed();
        let (status, _) = cri.client()?.container_status(&web_id)?;
        ensure!(
            status.state == ContainerState::ContainerExited as i32
                && status.exit_code == 0
                && status.reason == "Completed",
            "after StopContainer: {status:?}"
        );
        ensure!(took < STOP_FAST, "StopContainer took {took:?}");
        let lines = pod.wait_log(&web, "wasmpod: stopped", WAIT)?;
        ensure!(
            lines.iter().any(|l| l.stream == "stderr"
                && l.content.starts_with("wasmpod: serving")
                && l.content.contains("on http://0.0.0.0:8080 ")),
            "no serving line on stderr: {lines:#?}"
        );
        let r = cri.client()?.exec_sync(&side_id, &wget, 10)?;
        ensure!(
            r.exit_code != 0,
            "the sidecar still reached port 8080 after the stop: {r:?}"
        );
        pod.remove()
    })
}

/// Docker's bridge networking (a user-defined bridge network; see
/// `wasmpod_integration::docker_net` for why the plain private dockerd cannot publish):
/// `docker run -d -p HOSTPORT:8080 --network <bridge>` of the handler answers `GET /` on
/// 127.0.0.1:HOSTPORT through docker-proxy; the container has its own netns, so the handler's
/// self fetch is allowed (200); `docker stop` ends it at once with `State.ExitCode` 0 and the
/// serving and drain lines in `docker logs`.
#[test]
fn docker_bridge_publishes_the_port_and_stop_exits_0() -> Result<()> {
    with_net_docker(|d| {
        let img = d.load(images().wasm("http-handler")?)?;
        let port = http::free_port()?;
        let publish = format!("{port}:8080");
        let id = run_handler(d, &["-p", &publish, "--network", d.network()], &img)?;
        let network = d.network();
        let ip = d.inspect(
            &id,
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
        )?;
        ensure!(
            ip.starts_with(&d.bridge_network().prefix()),
            "container IP {ip:?} not on the bridge's subnet {}",
            d.bridge_network().subnet()
        );

        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        // docker-proxy accepts before the guest listens and then drops the connection:
        // wait until an HTTP answer comes through.
        let first = http::wait_ready(addr, "/", WAIT)
            .with_context(|| format!("logs: {:?}", logs(d, &id).map(|o| o.combined())))?;
        expect_status(&first, 200, "first GET / on the published port")?;
        ensure!(first.text() == HELLO, "{first}");
        expect_hello(addr, "GET / on the published port")?;
        let f = http::get(addr, "/fetch?url=http://127.0.0.1:8080/")
            .with_context(|| format!("self fetch on Docker's bridge: GET /fetch on {addr}"))?;
        expect_status(&f, 200, "self fetch on Docker's bridge")?;
        ensure!(
            f.text().contains("upstream status 200") && f.text().contains(HELLO),
            "self fetch on Docker's bridge: {f}"
        );

        let took = stop(d, &id)?;
        ensure!(
            d.inspect(&id, "{{.State.Status}} {{.State.ExitCode}}")? == "exited 0",
            "after docker stop: {}",
            d.inspect(&id, "{{json .State}}")?
        );
        ensure!(took < STOP_FAST, "docker stop took {took:?}");
        let logs = logs(d, &id)?;
        ensure!(
            logs.stderr.contains("wasmpod: serving") && logs.stderr.contains("wasmpod: stopped"),
            "{logs}"
        );
        d.docker(["rm", &id])?.success()?;
        Ok(())
    })
}

/// `docker run --network host -e WASMPOD_HTTP_LISTEN=127.0.0.1:<free port>`: the handler
/// listens there on the host (200); the container shares the host's network, so the
/// handler's outgoing request to that very address is refused by the shim (502 with
/// `HttpRequestDenied`) instead of reaching the host's network; `docker stop` exits 0.
/// (On the daemon of `docker_net`: dockerd keeps a mount for the host network that the plain
/// harness daemon's leftover check would count.)
#[test]
fn docker_host_network_serves_and_denies_outgoing_requests() -> Result<()> {
    with_net_docker(|d| {
        let img = d.load(images().wasm("http-handler")?)?;
        let addr: SocketAddr = format!("127.0.0.1:{}", http::free_port()?).parse()?;
        let listen = format!("WASMPOD_HTTP_LISTEN={addr}");
        let flags = ["--network", "host", "-e", &listen];
        let id = run_handler(d, &flags, &img)?;
        let first = http::wait_ready(addr, "/", WAIT)
            .with_context(|| format!("logs: {:?}", logs(d, &id).map(|o| o.combined())))?;
        expect_status(&first, 200, "first GET / on the host network")?;
        ensure!(first.text() == HELLO, "{first}");

        let f = http::get(addr, &format!("/fetch?url=http://{addr}/"))
            .with_context(|| format!("denied fetch: GET /fetch on {addr}"))?;
        expect_status(&f, 502, "outgoing request without an own netns")?;
        ensure!(f.text().contains("HttpRequestDenied"), "{f}");
        expect_hello(addr, "GET / after the denied fetch")?;

        let took = stop(d, &id)?;
        ensure!(d.inspect(&id, "{{.State.ExitCode}}")? == "0", "exit code");
        ensure!(took < STOP_FAST, "docker stop took {took:?}");
        let logs = logs(d, &id)?;
        ensure!(
            logs.stderr
                .contains(&format!("wasmpod: serving /app.wasm on http://{addr} ")),
            "{logs}"
        );
        d.docker(["rm", &id])?.success()?;
        Ok(())
    })
}

/// The harness's own check: a handler left running with a published port shows up in
/// `NetDocker::leftovers` as a container, its shim, its docker-proxy, its rootfs mount and
/// its cgroup; shutdown removes all of it, the bridge and the temp dir.
#[test]
fn net_docker_leftovers_are_detected_and_removed() -> Result<()> {
    let mut d = NetDocker::start()?;
    let img = d.load(images().wasm("http-handler")?)?;
    let publish = format!("{}:8080", http::free_port()?);
    let id = run_handler(&d, &["-p", &publish, "--network", d.network()], &img)?;
    let found = poll("the handler's shim and docker-proxy", WAIT, || {
        let found = d.leftovers()?.join("\n");
        Ok(found.contains("docker-proxy ").then_some(found))
    })?;
    for want in [
        format!("docker container {}", &id[..12]),
        "containerd-shim-wasmpod-v1".to_string(),
        format!("/rootfs/overlayfs/{id}"),
        "cgroup ".to_string(),
    ] {
        ensure!(found.contains(&want), "no {want:?} in leftovers:\n{found}");
    }
    let (dir, net) = (d.dir().to_path_buf(), d.bridge_network().clone());
    d.shutdown()?;
    drop(d);
    ensure!(!dir.exists(), "{} survived", dir.display());
    ensure!(!net.bridge_exists(), "bridge {} survived", net.bridge);
    Ok(())
}
