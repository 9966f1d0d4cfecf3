//! Serving `wasi:http` handler components through `ctr run --net-host`: a fresh instance per
//! request, per-request limits that fail only their own request, metering, streaming bodies,
//! pause/resume, and SIGTERM draining in-flight requests before exit 0.
//! (Pods, sidecars and Docker port publishing: `http_reach.rs`.)

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use wasmpod_integration::containerd::Containerd;
use wasmpod_integration::http::{self, expect_status};
use wasmpod_integration::process::poll;
use wasmpod_integration::run::Spawned;
use wasmpod_integration::{images, with_containerd};

const READY: Duration = Duration::from_secs(30);

/// Starts the handler on the host network at a free port with `env`; returns it and its address.
fn start<'a>(ctd: &'a Containerd, env: &[(&str, &str)]) -> Result<(Spawned<'a>, SocketAddr)> {
    start_limited(ctd, env, None)
}

/// [`start`], under a cgroup memory limit of `memory_limit` bytes when given.
fn start_limited<'a>(
    ctd: &'a Containerd,
    env: &[(&str, &str)],
    memory_limit: Option<u64>,
) -> Result<(Spawned<'a>, SocketAddr)> {
    let img = images().wasm("http-handler")?;
    let addr: SocketAddr = format!("127.0.0.1:{}", http::free_port()?).parse()?;
    let listen = addr.to_string();
    let mut run = ctd
        .import(&img)?
        .run(&img)
        .flag("--net-host")
        .env("WASMPOD_HTTP_LISTEN", &listen)
        .timeout(Duration::from_secs(120));
    for (k, v) in env {
        run = run.env(k, v);
    }
    if let Some(bytes) = memory_limit {
        run = run.memory_limit(bytes);
    }
    let spawned = run.spawn()?;
    http::wait_ready(addr, "/", READY).with_context(|| {
        format!(
            "stdout {:?} stderr {:?}",
            spawned.stdout_so_far(),
            spawned.stderr_so_far()
        )
    })?;
    Ok((spawned, addr))
}

/// SIGTERM, then the exit status.
fn stop(spawned: Spawned<'_>) -> Result<(i32, String, String)> {
    spawned.task().kill("SIGTERM")?;
    let out = spawned.wait(Duration::from_secs(30))?;
    Ok((out.code(), out.stdout.clone(), out.stderr.clone()))
}

/// Every request gets a fresh instance: a global the guest increments reads 1 every time,
/// also for requests in parallel; routes, 404s and the startup line are the guest's and ours.
#[test]
fn each_request_gets_a_fresh_instance() -> Result<()> {
    with_containerd(|ctd| {
        let (spawned, addr) = start(ctd, &[])?;
        let hello = http::get(addr, "/")?;
        expect_status(&hello, 200, "GET /")?;
        ensure!(hello.text() == "hello from wasm\n", "{hello}");
        for _ in 0..5 {
            let r = http::get(addr, "/counter")?;
            ensure!(r.status == 200 && r.text().trim() == "1", "sequential: {r}");
        }
        let parallel: Vec<_> = (0..16)
            .map(|_| std::thread::spawn(move || http::get(addr, "/counter")))
            .collect();
        for t in parallel {
            let r = t.join().expect("thread")?;
            ensure!(r.status == 200 && r.text().trim() == "1", "parallel: {r}");
        }
        expect_status(&http::get(addr, "/no-such-route")?, 404, "unknown route")?;
        let stderr = spawned.stderr_so_far();
        ensure!(
            stderr.contains("wasmpod: serving"),
            "startup line: {stderr:?}"
        );
        let (code, _, _) = stop(spawned)?;
        ensure!(code == 0, "SIGTERM must drain and exit 0, got {code}");
        Ok(())
    })
}

/// Each limit answers for its own request only, with the reason on stderr, while other
/// requests keep being served at the same time.
#[test]
fn per_request_limits_fail_only_their_request() -> Result<()> {
    with_containerd(|ctd| {
        let (spawned, addr) = start(
            ctd,
            &[
                ("WASMPOD_HTTP_TIMEOUT_MS", "2000"),
                ("WASMPOD_HTTP_INSTANCE_MEMORY_MB", "16"),
                ("WASMPOD_HTTP_MAX_BODY_MB", "1"),
            ],
        )?;
        // A request spinning forever is cut at its deadline (epoch interruption) while
        // others are answered meanwhile.
        let spinning = std::thread::spawn(move || http::get(addr, "/spin"));
        std::thread::sleep(Duration::from_millis(50));
        expect_status(&http::get(addr, "/")?, 200, "during the spin")?;
        ensure!(
            !spinning.is_finished(),
            "the spin ended before the other request was answered"
        );
        let spun = spinning.join().expect("thread")?;
        expect_status(&spun, 504, "spin")?;

        let big = http::get(addr, "/alloc?mb=64")?;
        expect_status(&big, 500, "allocation above the instance cap")?;
        expect_status(
            &http::get(addr, "/alloc?mb=4")?,
            200,
            "allocation under the cap",
        )?;

        let trap = http::get(addr, "/trap")?;
        expect_status(&trap, 500, "trap")?;

        let body = vec![7u8; 2 << 20];
        let large =
            http::request_declaring(addr, "POST", "/sha256", 2 << 20, &body[..1000], READY)?;
        expect_status(&large, 413, "2 MiB body over a 1 MiB limit")?;
        let small = http::request(addr, "POST", "/sha256", &body[..1000], READY)?;
        expect_status(&small, 200, "small body")?;

        expect_status(&http::get(addr, "/")?, 200, "after all of it")?;
        // A request's line is written when its handling ends, which can trail its response.
        spawned.stderr_containing(
            &[
                "GET /spin -> 504: request deadline of 2000 ms exceeded",
                "GET /alloc -> 500: instance memory cap reached",
                "GET /trap -> 500: guest trapped",
                "unreachable",
                "POST /sha256 -> 413",
            ],
            Duration::from_secs(10),
        )?;
        let (code, _, _) = stop(spawned)?;
        ensure!(code == 0, "exit {code}");
        Ok(())
    })
}

/// Past the concurrency limit and a full queue a request gets 503 at once; the running ones
/// finish normally.
#[test]
fn past_concurrency_and_queue_requests_get_503() -> Result<()> {
    with_containerd(|ctd| {
        let metrics: SocketAddr = format!("127.0.0.1:{}", http::free_port()?).parse()?;
        let (spawned, addr) = start(
            ctd,
            &[
                ("WASMPOD_HTTP_MAX_CONCURRENCY", "2"),
                ("WASMPOD_HTTP_MAX_QUEUE", "1"),
                ("WASMPOD_HTTP_METRICS_LISTEN", &metrics.to_string()),
            ],
        )?;
        // The gauges as the server reports them.
        let gauges = || -> Result<(String, String)> {
            let text = http::get(metrics, "/metrics")?.text();
            let value = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                    .unwrap_or_default()
                    .to_string()
            };
            Ok((
                value("wasmpod_http_in_flight"),
                value("wasmpod_http_queued"),
            ))
        };
        // One at a time, each seen by the server before the next: the readiness probe's
        // instance holds its slot until it has ended, a moment after its answer.
        let mut slow = Vec::new();
        for (running, queued) in [("0", "0"), ("1", "0"), ("2", "0"), ("2", "1")] {
            let mut last = None;
            poll(
                &format!("{running} running and {queued} queued"),
                READY,
                || {
                    let now = gauges()?;
                    let reached = now.0 == running && now.1 == queued;
                    last = Some(now);
                    Ok(reached.then_some(()))
                },
            )
            .with_context(|| format!("last (running, queued): {last:?}"))?;
            if slow.len() < 3 {
                slow.push(std::thread::spawn(move || {
                    http::get(addr, "/sleep?ms=12000")
                }));
            }
        }
        let refused = http::get(addr, "/")?;
        expect_status(&refused, 503, "fourth request with 2 running and 1 queued")?;
        ensure!(
            slow.iter().all(|t| !t.is_finished()),
            "the 503 must not wait for a slot"
        );
        for t in slow {
            let r = t.join().expect("thread")?;
            ensure!(
                r.status == 200 && r.text() == "slept\n",
                "slow request: {r}"
            );
        }
        expect_status(&http::get(addr, "/")?, 200, "after the burst")?;
        spawned
            .stderr_containing(&["-> 503"], Duration::from_secs(10))
            .context("the refusal is logged")?;
        stop(spawned)?;
        Ok(())
    })
}

/// Under a cgroup memory limit of 64 MiB, one request asking for more than the container has
/// gets 500 alone (the instance cap is lowered to the container's) and the server serves on;
/// requests that only together outgrow the limit get the container OOM-killed, reported as
/// for any container: exit 137, and `/tasks/oom` before `/tasks/exit`.
#[test]
fn memory_beyond_the_container_limit_is_refused_per_request_or_reported_as_oom() -> Result<()> {
    with_containerd(|ctd| {
        let events = ctd.events()?;
        let (spawned, addr) = start_limited(ctd, &[], Some(64 << 20))?;
        let id = spawned.id().to_string();
        expect_status(&http::get(addr, "/alloc?mb=100")?, 500, "100 MiB in 64 MiB")?;
        expect_status(&http::get(addr, "/alloc?mb=8")?, 200, "8 MiB in 64 MiB")?;
        // Four instances holding 40 MiB each at once: 160 MiB in a 64 MiB cgroup.
        let hogs: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(move || http::get(addr, "/alloc?mb=40&ms=20000")))
            .collect();
        let out = spawned.wait(Duration::from_secs(60))?;
        ensure!(out.code() == 137, "want the OOM kill's 137: {out}");
        for hog in hogs {
            if let Ok(Ok(r)) = hog.join() {
                ensure!(
                    r.status != 200,
                    "a hog was answered 200 by a killed server: {r}"
                );
            }
        }
        events.expect_oom_before_exit(&id, READY)?;
        Ok(())
    })
}

/// 100 MB up and down, streamed: hashes match and the serving process never holds the body.
#[test]
fn streams_100_mb_each_way_with_bounded_memory() -> Result<()> {
    const SIZE: u64 = 100 << 20;
    with_containerd(|ctd| {
        let (spawned, addr) = start(ctd, &[])?;
        let (status, sent, echoed) = http::stream_through(addr, "POST", "/echo", SIZE)?;
        ensure!(status == 200, "echo status {status}");
        ensure!(sent == echoed, "echo: sent {sent}, got back {echoed}");
        let digest = http::request(addr, "POST", "/sha256", &pattern(SIZE), READY)?;
        ensure!(
            digest.text().trim() == http::pattern_sha256(SIZE),
            "upload digest {digest}"
        );
        let (status, _, down) = http::stream_through(addr, "GET", &format!("/bytes?n={SIZE}"), 0)?;
        ensure!(
            status == 200 && down == http::pattern_sha256(SIZE),
            "download"
        );

        let pid = ctd
            .task_list()?
            .into_iter()
            .find(|t| t.id == spawned.id())
            .context("task listed")?
            .pid;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let hwm_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmHWM")?;
        ensure!(
            hwm_kb < 64 * 1024,
            "the serving process peaked at {hwm_kb} kB RSS for 300 MB of bodies: it buffers"
        );
        stop(spawned)?;
        Ok(())
    })
}

fn pattern(size: u64) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// Metering: one JSON line per request on stdout with fuel, wall time, peak memory and
/// status; Prometheus counters on the opt-in port.
#[test]
fn metering_lines_and_prometheus_counters() -> Result<()> {
    with_containerd(|ctd| {
        let metrics: SocketAddr = format!("127.0.0.1:{}", http::free_port()?).parse()?;
        let (spawned, addr) = start(
            ctd,
            &[
                ("WASMPOD_HTTP_METERING", "1"),
                ("WASMPOD_HTTP_METRICS_LISTEN", &metrics.to_string()),
            ],
        )?;
        expect_status(&http::get(addr, "/alloc?mb=8")?, 200, "alloc")?;
        expect_status(&http::get(addr, "/trap")?, 500, "trap")?;
        // A request is counted when its instance is gone, a moment after its response.
        let want = [
            "wasmpod_http_requests_total{class=\"2xx\"} 2",
            "wasmpod_http_requests_total{class=\"5xx\"} 1",
            "wasmpod_http_failures_total{kind=\"trap\"} 1",
            "wasmpod_http_request_duration_seconds_count 3",
        ];
        let mut text = String::new();
        let counted = poll("the counters", READY, || {
            text = http::get(metrics, "/metrics")?.text();
            Ok(want
                .iter()
                .all(|w| text.lines().any(|l| l == *w))
                .then_some(()))
        });
        ensure!(counted.is_ok(), "want {want:?} in\n{text}");
        let (code, stdout, _) = stop(spawned)?;
        ensure!(code == 0, "exit {code}");
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .filter(|l| l.contains("wasmpod_request"))
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        ensure!(lines.len() == 3, "one line per request:\n{stdout}");
        let alloc = lines
            .iter()
            .map(|l| &l["wasmpod_request"])
            .find(|r| r["path"] == "/alloc")
            .context("the alloc line")?;
        ensure!(alloc["status"] == 200, "{alloc}");
        ensure!(alloc["fuel"].as_u64().unwrap_or(0) > 1000, "fuel: {alloc}");
        ensure!(
            alloc["peak_memory_bytes"].as_u64().unwrap_or(0) >= 8 << 20,
            "peak memory: {alloc}"
        );
        ensure!(alloc["wall_us"].as_u64().is_some(), "{alloc}");
        let trap = lines
            .iter()
            .map(|l| &l["wasmpod_request"])
            .find(|r| r["path"] == "/trap")
            .context("the trap line")?;
        ensure!(trap["status"] == 500 && trap["failure"] == "trap", "{trap}");
        Ok(())
    })
}

/// SIGTERM: no new connections, the request in flight finishes, exit 0. On the host network
/// the guest may not make outgoing requests; pause holds requests, resume lets them through.
#[test]
fn sigterm_drains_and_net_host_denies_outgoing() -> Result<()> {
    with_containerd(|ctd| {
        let (spawned, addr) = start(ctd, &[])?;
        let denied = http::get(addr, &format!("/fetch?url=http://{addr}/"))?;
        ensure!(
            denied.status == 502 && denied.text().contains("HttpRequestDenied"),
            "outgoing on the host network: {denied}"
        );

        let task = spawned.task();
        task.pause()?;
        let held = std::thread::spawn(move || http::get(addr, "/counter"));
        std::thread::sleep(Duration::from_millis(300));
        ensure!(!held.is_finished(), "a paused container answered");
        task.resume()?;
        let r = held.join().expect("thread")?;
        ensure!(r.status == 200, "after resume: {r}");

        let in_flight = std::thread::spawn(move || http::get(addr, "/sleep?ms=1500"));
        std::thread::sleep(Duration::from_millis(300));
        task.kill("SIGTERM")?;
        std::thread::sleep(Duration::from_millis(200));
        ensure!(
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
            "still accepting after SIGTERM"
        );
        let r = in_flight.join().expect("thread")?;
        ensure!(
            r.status == 200 && r.text() == "slept\n",
            "in-flight request: {r}"
        );
        let out = spawned.wait(Duration::from_secs(30))?;
        ensure!(out.code() == 0, "exit after drain: {out}");
        ensure!(
            out.stderr.contains("every request finished"),
            "{}",
            out.stderr
        );
        Ok(())
    })
}

/// SIGKILL (what follows SIGTERM once the grace period is over) cuts the requests still
/// running: the client gets no answer, and the task ends with 137.
#[test]
fn sigkill_cuts_requests_in_flight() -> Result<()> {
    with_containerd(|ctd| {
        let (spawned, addr) = start(ctd, &[])?;
        let in_flight = std::thread::spawn(move || http::get(addr, "/sleep?ms=20000"));
        std::thread::sleep(Duration::from_millis(300));
        ensure!(!in_flight.is_finished(), "the sleep ended early");
        spawned.task().kill("SIGKILL")?;
        let out = spawned.wait(Duration::from_secs(30))?;
        ensure!(out.code() == 137, "want 137 after SIGKILL: {out}");
        match in_flight.join().expect("thread") {
            Ok(r) => anyhow::bail!("a request in flight at SIGKILL was answered: {r}"),
            Err(e) => eprintln!("the cut request: {e:#}"),
        }
        Ok(())
    })
}

/// A misspelt setting fails Create with the variable's name, and leaves nothing behind.
#[test]
fn a_misspelt_setting_fails_create() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("http-handler")?;
        let out = ctd
            .import(&img)?
            .run(&img)
            .flag("--net-host")
            .env("WASMPOD_HTTP_TIMOUT_MS", "100")
            .exec()?;
        ensure!(out.code() != 0, "created anyway: {out}");
        ensure!(
            out.combined().contains("WASMPOD_HTTP_TIMOUT_MS")
                && out.combined().contains("WASMPOD_HTTP_TIMEOUT_MS"),
            "{out}"
        );
        Ok(())
    })
}

/// `wasmpod image inspect` says a handler targets the `wasi:http/proxy` world, so users know
/// before running it that it will be served.
#[test]
fn inspect_names_the_proxy_world() -> Result<()> {
    let cli = wasmpod_integration::paths::require_cli()?;
    let wasm = wasmpod_integration::paths::programs_dir().join("http-handler.wasm");
    let out = std::process::Command::new(cli)
        .args(["image", "inspect"])
        .arg(&wasm)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "{stdout} {:?}", out.stderr);
    ensure!(
        stdout
            .lines()
            .any(|l| l.starts_with("world:") && l.contains("wasi:http/proxy@0.2")),
        "{stdout}"
    );
    Ok(())
}

/// A serving container is a container like any other: an exec runs another program of the
/// image beside the server, `ctr task metrics` reports its cgroup, and requests keep working.
#[test]
fn exec_and_metrics_work_on_a_serving_container() -> Result<()> {
    with_containerd(|ctd| {
        let hello = wasmpod_integration::Images::program("hello")?;
        let img = images().wasm_with(
            "http-handler",
            &["--dir", &format!("{}:/bin/hello.wasm", hello.display())],
        )?;
        let addr: SocketAddr = format!("127.0.0.1:{}", http::free_port()?).parse()?;
        let spawned = ctd
            .import(&img)?
            .run(&img)
            .flag("--net-host")
            .env("WASMPOD_HTTP_LISTEN", &addr.to_string())
            .timeout(Duration::from_secs(120))
            .spawn()?;
        http::wait_ready(addr, "/", READY)?;
        let out = ctd.ctr([
            "task",
            "exec",
            "--exec-id",
            "hello1",
            spawned.id(),
            "/bin/hello.wasm",
        ])?;
        out.success()?;
        ensure!(out.stdout == "hello from wasmpod\n", "exec: {out}");
        let metrics = spawned.task().metrics()?;
        metrics.success()?;
        ensure!(
            metrics.stdout.to_lowercase().contains("memory"),
            "metrics: {metrics}"
        );
        expect_status(&http::get(addr, "/counter")?, 200, "after the exec")?;
        let (code, _, _) = stop(spawned)?;
        ensure!(code == 0, "exit {code}");
        Ok(())
    })
}
