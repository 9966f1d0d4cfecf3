//! `churn`: create/start/wait/delete cycles through containerd's gRPC API, N at a time, with
//! leak accounting before and after each lane.
//!
//! It starts a private containerd through the integration harness (so the daemon, its config
//! and its teardown are the test suite's), imports the test images with ctr, and from then on
//! talks to containerd's API directly: no `ctr` process per cycle, whose own CPU would bound
//! the figure. Each lane is a runtime and a mix of cycles (see `workload`): it warms up (each
//! kind twice), counts what the daemon holds (`leaks`), runs its cycles, waits for the counts
//! to settle and counts again. Every count must be back where it started and every cycle must
//! end as its kind says (exit 0, or Tasks.Create failing with the kind's gRPC code); else the
//! exit status is 1.
//!
//! ```text
//! churn [--containerd BIN] [--cycles N] [--concurrency N] [--lane NAME[:CYCLES]]...
//!       [--mix KIND:W,...] [--runwasi SHIM] [--cache-max-mb MB] [--settle SECS]
//!       [--stdio fifo|null]
//! ```
//! Lanes: `wasmpod-mix` (the default; the mix on wasmpod), `wasmpod-hello` (hello.wasm on
//! wasmpod), `wasmpod-group-mix` and `wasmpod-group-hello` (the same, every container in one
//! opt-in wasmpod group: one shim serves them), `runc-echo` (busybox `echo hello` on runc), `runwasi-hello` (hello.wasm on
//! runwasi's wasmtime shim, `io.containerd.wasmtime.v1`, which `--runwasi` names; it is put
//! on the daemon's PATH beside the wasmpod shim). Defaults: containerd `WASMPOD_CONTAINERD`
//! (else /usr/bin/containerd), cycles `CHURN_CYCLES` (else 1000), 8 at a time, mix
//! `module:4,component:2,native:2,exec-wasm:1,exec-native:1,bad-wasm:1,missing-entrypoint:1`,
//! cache bound 256 MB, settle 30 s, stdio fifos (as ctr's; `null`: empty paths).

#[path = "churn/api.rs"]
mod api;
#[path = "churn/leaks.rs"]
mod leaks;
#[path = "churn/report.rs"]
mod report;
#[path = "churn/workload.rs"]
mod workload;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use wasmpod_integration::{images, paths, versions, Containerd, TestImage};

use crate::api::{runc_root_options, Api, ImageInfo};
use crate::leaks::Probe;
use crate::report::Figures;
use crate::workload::{Ctx, Lane, Mix};

const DEFAULT_MIX: &str =
    "module:4,component:2,native:2,exec-wasm:1,exec-native:1,bad-wasm:1,missing-entrypoint:1";
const RUNWASI_RUNTIME: &str = "io.containerd.wasmtime.v1";
const RUNWASI_SHIM: &str = "containerd-shim-wasmtime-v1";

#[derive(Debug)]
struct Args {
    containerd: PathBuf,
    cycles: usize,
    concurrency: usize,
    lanes: Vec<(String, Option<usize>)>,
    /// The lanes run in this many rounds, interleaved (each round a share of every lane's
    /// cycles, the lanes in turn): a drift of the machine's speed then moves them alike.
    rounds: usize,
    mix: Mix,
    runwasi: Option<PathBuf>,
    cache_max_mb: u64,
    settle: Duration,
    null_io: bool,
}

fn usage() -> &'static str {
    "usage: churn [--containerd BIN] [--cycles N] [--concurrency N] [--lane NAME[:CYCLES]]... \
     [--rounds N] [--mix KIND:W,...] [--runwasi SHIM] [--cache-max-mb MB] [--settle SECS] [--stdio fifo|null]\n\
     lanes: wasmpod-mix wasmpod-hello wasmpod-group-mix wasmpod-group-hello runc-echo runwasi-hello"
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        containerd: paths::containerd_path(),
        cycles: std::env::var("CHURN_CYCLES")
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| v.parse())
            .transpose()
            .context("CHURN_CYCLES")?
            .unwrap_or(1000),
        concurrency: 8,
        lanes: Vec::new(),
        rounds: 1,
        mix: Mix::parse(DEFAULT_MIX)?,
        runwasi: None,
        cache_max_mb: 256,
        settle: Duration::from_secs(30),
        null_io: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{}", usage());
            std::process::exit(0);
        }
        let value = it
            .next()
            .ok_or_else(|| anyhow!("{flag} needs a value\n{}", usage()))?;
        match flag.as_str() {
            "--containerd" => a.containerd = value.into(),
            "--cycles" => a.cycles = value.parse().context("--cycles")?,
            "--concurrency" => a.concurrency = value.parse().context("--concurrency")?,
            "--lane" => {
                let (name, n) = match value.split_once(':') {
                    Some((name, n)) => (name.to_string(), Some(n.parse().context("--lane")?)),
                    None => (value, None),
                };
                a.lanes.push((name, n));
            }
            "--rounds" => a.rounds = value.parse().context("--rounds")?,
            "--mix" => a.mix = Mix::parse(&value)?,
            "--runwasi" => a.runwasi = Some(value.into()),
            "--cache-max-mb" => a.cache_max_mb = value.parse().context("--cache-max-mb")?,
            "--settle" => a.settle = Duration::from_secs(value.parse().context("--settle")?),
            "--stdio" => {
                a.null_io = match value.as_str() {
                    "fifo" => false,
                    "null" => true,
                    _ => bail!("--stdio is fifo or null"),
                }
            }
            _ => bail!("unknown flag {flag}\n{}", usage()),
        }
    }
    if a.lanes.is_empty() {
        a.lanes.push(("wasmpod-mix".into(), None));
    }
    if a.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if a.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    Ok(a)
}

/// A bin dir holding links to the wasmpod shim and CLI and to runwasi's shim, made the
/// harness's `WASMPOD_BIN_DIR`: the harness puts that dir first on the daemon's PATH.
fn bin_dir_with_runwasi(work: &Path, runwasi: &Path) -> Result<()> {
    let shim = paths::require_shim()?.canonicalize()?;
    let cli = paths::require_cli()?.canonicalize()?;
    let runwasi = runwasi
        .canonicalize()
        .with_context(|| format!("runwasi shim {}", runwasi.display()))?;
    let bin = work.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::os::unix::fs::symlink(&shim, bin.join(paths::SHIM_BINARY))?;
    std::os::unix::fs::symlink(&cli, bin.join("wasmpod"))?;
    std::os::unix::fs::symlink(&runwasi, bin.join(RUNWASI_SHIM))?;
    // Before any thread starts: the tokio runtime is built after this.
    std::env::set_var("WASMPOD_BIN_DIR", &bin);
    Ok(())
}

/// The reference `image` was stored under (ctr may add `docker.io/`).
fn stored_ref(ctd: &Containerd, image: Result<Arc<TestImage>>) -> Result<String> {
    let image = image?;
    ctd.import(&image)?;
    let refs = ctd.image_refs()?;
    refs.iter()
        .find(|r| {
            **r == image.name
                || r.strip_suffix(image.name.as_str())
                    .is_some_and(|p| p.ends_with('/'))
        })
        .cloned()
        .ok_or_else(|| anyhow!("no image {} among {refs:?}", image.name))
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage writes the struct it is given and nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

struct Setup<'a> {
    ctd: &'a Containerd,
    probe: Probe,
    api: Api,
    template: Value,
    images: workload::Images,
    version: String,
}

async fn resolve(api: &Api, name: &str) -> Result<ImageInfo> {
    api.image(name).await
}

fn lane(args: &Args, name: &str, cycles: Option<usize>, ctd: &Containerd) -> Result<Lane> {
    let cycles = cycles.unwrap_or(args.cycles);
    let wasmpod = paths::WASMPOD_RUNTIME.to_string();
    let group = name
        .starts_with("wasmpod-group-")
        .then(|| "churn".to_string());
    let (runtime, options, mix) = match name {
        "wasmpod-mix" | "wasmpod-group-mix" => (wasmpod, None, args.mix.clone()),
        "wasmpod-hello" | "wasmpod-group-hello" => (wasmpod, None, Mix::parse("module")?),
        "runc-echo" => (
            paths::RUNC_RUNTIME.to_string(),
            Some(runc_root_options(&ctd.dir().join("runc").to_string_lossy())),
            Mix::parse("native")?,
        ),
        "runwasi-hello" => {
            if args.runwasi.is_none() {
                bail!("lane runwasi-hello needs --runwasi PATH-OF-{RUNWASI_SHIM}");
            }
            (RUNWASI_RUNTIME.to_string(), None, Mix::parse("module")?)
        }
        _ => bail!("unknown lane {name}\n{}", usage()),
    };
    Ok(Lane {
        name: name.to_string(),
        runtime,
        options,
        mix,
        cycles,
        group,
    })
}

/// Counts until they equal `before` or `settle` passes; the last counts and the time taken.
async fn settled(
    probe: &Probe,
    api: &Api,
    ids: &BTreeSet<String>,
    before: &[leaks::Row],
    settle: Duration,
) -> Result<(Vec<leaks::Row>, Duration)> {
    let start = Instant::now();
    loop {
        let now = leaks::count(probe, api, ids).await?;
        if leaks::differences(probe, before, &now).is_empty() || start.elapsed() > settle {
            return Ok((now, start.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Counts once they have not changed for 2 s (at most `settle`): the baseline, taken after
/// the warm-up's removals (the snapshotter's directories, the shims' exits) are done.
async fn stable(
    probe: &Probe,
    api: &Api,
    ids: &BTreeSet<String>,
    settle: Duration,
) -> Result<Vec<leaks::Row>> {
    let start = Instant::now();
    let mut last = leaks::count(probe, api, ids).await?;
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_secs(2) && start.elapsed() < settle {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = leaks::count(probe, api, ids).await?;
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    Ok(last)
}

/// Runs round `round` (of `args.rounds`) of `lane`: its warm-up, its cycles, its leak count.
async fn run_lane(setup: &Setup<'_>, args: &Args, lane: Lane, round: usize) -> Result<Figures> {
    let of_rounds = if args.rounds > 1 {
        format!(" (round {}/{})", round + 1, args.rounds)
    } else {
        String::new()
    };
    let probe = setup.probe.clone();
    let socket = probe.socket.clone();
    let ns = probe.namespace.clone();
    println!(
        "== lane {}{of_rounds}: {} x ({}) on {}, {} at a time",
        lane.name,
        lane.cycles,
        lane.mix.describe(),
        lane.runtime,
        args.concurrency
    );
    let kinds = lane.mix.kinds();
    let ctx = Arc::new(Ctx {
        api: setup.api.clone(),
        namespace: ns.clone(),
        template: setup.template.clone(),
        images: setup.images.clone(),
        lane,
        fifo_dir: (!args.null_io).then(|| setup.ctd.dir().join("fifo")),
        ids: Mutex::new(BTreeSet::new()),
        check_socket: Box::new(move |id| leaks::shim_socket(&socket, &ns, id).exists()),
        socket_checked: AtomicBool::new(false),
    });

    // Warm-up: each kind twice, one at a time, then its exec targets removed. What the
    // daemon and the shims set up once (compiled programs, lazily opened files) is then in
    // the baseline.
    for (n, kind) in kinds.iter().flat_map(|k| [*k, *k]).enumerate() {
        let mut targets = workload::Targets::default();
        let r = workload::cycle(&ctx, &mut targets, 0, "warm", n, kind).await;
        let errs = targets.remove_all(&ctx).await;
        if let workload::Outcome::Unexpected(e) = &r.outcome {
            bail!("warm-up cycle {} failed: {e}", kind.name());
        }
        if !errs.is_empty() {
            bail!("warm-up exec targets: {errs:?}");
        }
    }
    let ids_now = || ctx.ids.lock().map(|i| i.clone()).unwrap_or_default();
    let before = stable(&probe, &ctx.api, &ids_now(), args.settle).await?;

    let cpu0 = cpu_time();
    let cycles = ctx.lane.cycles;
    let (records, wall, target_errs) =
        workload::run(ctx.clone(), &format!("c{round}"), cycles, args.concurrency).await?;
    let cpu = cpu_time().saturating_sub(cpu0);

    let (after, took) = settled(&probe, &ctx.api, &ids_now(), &before, args.settle).await?;
    let mut diffs = leaks::not_idle(&before);
    diffs.extend(leaks::differences(&probe, &before, &after));
    if !ctx
        .socket_checked
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        diffs.push(format!(
            "no shim socket at /run/containerd/s/<sha256(address/ns/id)> for a live task: \
             the socket count would count nothing ({} ids looked for)",
            ids_now().len()
        ));
    }
    for e in &target_errs {
        diffs.push(format!("removing an exec target: {e}"));
    }

    // Leaked shim sockets are reported above; remove them now (those nobody listens on), so
    // the host's /run/containerd/s does not keep them.
    let mut removed = 0;
    for id in ids_now() {
        let socket = leaks::shim_socket(&probe.socket, &probe.namespace, &id);
        if socket.exists()
            && std::os::unix::net::UnixStream::connect(&socket).is_err()
            && std::fs::remove_file(&socket).is_ok()
        {
            removed += 1;
        }
    }

    let t = report::times(&records, None);
    let (ok, failed_as_expected, unexpected) = report::outcomes(&records, None);
    let f = Figures {
        lane: ctx.lane.name.clone(),
        runtime: ctx.lane.runtime.clone(),
        cycles: records.len(),
        ok,
        failed_as_expected,
        unexpected,
        wall,
        p50_ms: report::percentile(&t, 50.0),
        p99_ms: report::percentile(&t, 99.0),
        max_ms: report::percentile(&t, 100.0),
        driver_cpu_ms: cpu.as_secs_f64() * 1000.0 / records.len().max(1) as f64,
        leaks: diffs,
        times: t,
    };
    print!("{}", report::per_kind(&records, &kinds));
    println!(
        "   {} cycles in {:.1} s: {:.1} tasks/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         driver CPU {:.2} ms per cycle",
        f.cycles,
        f.wall.as_secs_f64(),
        f.tasks_per_s(),
        f.p50_ms,
        f.p99_ms,
        f.max_ms,
        f.driver_cpu_ms
    );
    if unexpected > 0 {
        println!("   unexpected outcomes ({unexpected}), the first ones:");
        print!("{}", report::unexpected_sample(&records, 10));
    }
    println!(
        "   counts settled {:.1} s after the last cycle; shim socket names checked on a live task: {}",
        took.as_secs_f64(),
        if ctx.socket_checked.load(std::sync::atomic::Ordering::Relaxed) {
            "yes"
        } else {
            "NO"
        }
    );
    print!("{}", leaks::table(&probe, &before, &after));
    for d in &f.leaks {
        println!("   LEAK: {d}");
    }
    if removed > 0 {
        println!("   (the driver removed the {removed} leaked shim sockets after counting them)");
    }
    if !f.leaks.is_empty() {
        // What the daemon and the shims logged about the containers a leak names.
        let ids: BTreeSet<&str> = f
            .leaks
            .iter()
            .flat_map(|l| l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')))
            .filter(|w| w.starts_with("churn-"))
            .collect();
        for id in ids.iter().take(3) {
            println!("   containerd's log (and its shims') on {id}:");
            for l in setup
                .ctd
                .log_lines_with(id)
                .iter()
                .filter(|l| names(l, id))
                .take(30)
            {
                println!("   | {l}");
            }
        }
        // Its errors and warnings, but for those every shim exit or this host's cgroup v1
        // layout brings.
        let noise = [
            "cleaning up after shim disconnected",
            "not supported on this system",
            "cleanup warnings",
        ];
        // Distinct messages (time stamps and numbers left out), with how often each came.
        let mut messages: std::collections::BTreeMap<String, usize> = Default::default();
        for l in ["level=error", "level=warn"]
            .iter()
            .flat_map(|l| setup.ctd.log_lines_with(l))
            .filter(|l| !noise.iter().any(|n| l.contains(n)))
        {
            let text = l.split_once("level=").map_or(l.as_str(), |(_, m)| m);
            *messages.entry(normalized(text)).or_default() += 1;
        }
        println!(
            "   containerd's log: {} other kinds of errors and warnings:",
            messages.len()
        );
        for (m, n) in messages.iter().take(10) {
            println!("   | {n} x level={m}");
        }
    }
    Ok(f)
}

/// `text` with numbers and hashes left out, so repeats of one message compare equal.
fn normalized(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 12 {
            out.push('#');
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            continue;
        }
        if c.is_ascii_hexdigit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// True when `line` names container `id` (not merely one whose id starts with it).
fn names(line: &str, id: &str) -> bool {
    line.match_indices(id).any(|(i, _)| {
        !line[i + id.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("churn: {e:#}");
            ExitCode::from(2)
        }
    }
}

extern "C" fn on_signal(_: libc::c_int) {
    // Async-signal-safe: one atomic store.
    workload::STOP.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// SIGINT and SIGTERM end the run early but cleanly (the daemon, its shims, mounts and dirs
/// are removed as after a full run); a second one kills at once.
fn stop_on_signals() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESETHAND | SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

fn real_main() -> Result<bool> {
    let args = parse_args()?;
    stop_on_signals()?;
    let work = tempfile::Builder::new()
        .prefix("wasmpod-churn-")
        .tempdir()?;
    if let Some(runwasi) = &args.runwasi {
        bin_dir_with_runwasi(work.path(), runwasi)?;
    }
    paths::require_shim()?;
    let version = versions::of(&args.containerd)?.to_string();
    let cache = work.path().join("cache");
    let cache_env = cache.display().to_string();
    let bound = args.cache_max_mb.to_string();
    let ctd = Containerd::start_with_env(
        &args.containerd,
        &[
            ("WASMPOD_CACHE_DIR", &cache_env),
            ("WASMPOD_CACHE_MAX_MB", &bound),
        ],
    )?;
    println!(
        "== churn on containerd {version} ({}), namespace {}, {} at a time, compile cache {} \
         (bound {} MB)",
        args.containerd.display(),
        ctd.namespace(),
        args.concurrency,
        cache.display(),
        args.cache_max_mb
    );

    let hello_wasm = wasmpod_integration::Images::program("hello")?;
    let imgs = images();
    let refs = [
        stored_ref(&ctd, imgs.wasm("hello"))?,
        stored_ref(&ctd, imgs.wasm("hello-component"))?,
        stored_ref(&ctd, imgs.busybox())?,
        stored_ref(
            &ctd,
            imgs.wasm_with(
                "sleeper",
                &[
                    "--dir",
                    &format!("{}:/bin/hello.wasm", hello_wasm.display()),
                ],
            ),
        )?,
        stored_ref(&ctd, imgs.bad("invalid"))?,
    ];
    let spec = ctd.ctr(["oci", "spec"])?;
    spec.success().context("ctr oci spec")?;
    let template: Value = serde_json::from_str(&spec.stdout).context("ctr oci spec output")?;
    let pid = ctd
        .pid()
        .ok_or_else(|| anyhow!("containerd is not running"))? as i32;
    let probe = Probe {
        socket: ctd.socket().to_path_buf(),
        dir: ctd.dir().to_path_buf(),
        namespace: ctd.namespace().to_string(),
        pid,
        cache,
        cache_bound: args.cache_max_mb << 20,
    };
    // Each lane's cycles split into the rounds, the first rounds taking what does not divide.
    let rounds: Vec<Vec<Lane>> = (0..args.rounds)
        .map(|round| {
            args.lanes
                .iter()
                .map(|(name, n)| {
                    let mut lane = lane(&args, name, *n, &ctd)?;
                    lane.cycles =
                        lane.cycles / args.rounds + usize::from(round < lane.cycles % args.rounds);
                    Ok(lane)
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<_>>()?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let figures = rt.block_on(async {
        let api = Api::connect(ctd.socket(), ctd.namespace()).await?;
        let [hello, component, busybox, sleeper, bad] = &refs;
        let images = workload::Images {
            hello: resolve(&api, hello).await?,
            component: resolve(&api, component).await?,
            busybox: resolve(&api, busybox).await?,
            sleeper: resolve(&api, sleeper).await?,
            bad: resolve(&api, bad).await?,
        };
        let setup = Setup {
            ctd: &ctd,
            probe,
            api,
            template,
            images,
            version,
        };
        let mut by_lane: Vec<Vec<Figures>> = args.lanes.iter().map(|_| Vec::new()).collect();
        for (round, lanes) in rounds.into_iter().enumerate() {
            for (i, lane) in lanes.into_iter().enumerate() {
                if workload::STOP.load(std::sync::atomic::Ordering::Relaxed) {
                    println!("== lane {}: not run (interrupted)", lane.name);
                    continue;
                }
                by_lane[i].push(run_lane(&setup, &args, lane, round).await?);
            }
        }
        let figures: Vec<Figures> = by_lane.into_iter().filter_map(Figures::merged).collect();
        for f in &figures {
            println!("{}", report::machine_line(f, &setup.version));
        }
        anyhow::Ok((figures, setup.version))
    });
    let (figures, version) = match figures {
        Ok(f) => f,
        Err(e) => {
            eprintln!("containerd log tail:\n{}", ctd.log_tail(40));
            return Err(e);
        }
    };

    println!(
        "== churn summary: containerd {version}, {} at a time",
        args.concurrency
    );
    print!("{}", report::summary(&figures));
    let leftovers = ctd.leftovers()?;
    for l in &leftovers {
        println!("   LEFT BEHIND: {l}");
    }
    let interrupted = workload::STOP.load(std::sync::atomic::Ordering::Relaxed);
    if interrupted {
        println!("   interrupted: the lanes stopped early");
    }
    // A peer's own faults (runwasi has leaked shim sockets) are reported, not wasmpod's
    // failure: the run goes on to its other figures.
    let wasmpod = paths::WASMPOD_RUNTIME;
    for f in figures.iter().filter(|f| f.runtime != wasmpod) {
        if f.unexpected > 0 || !f.leaks.is_empty() {
            println!(
                "   peer lane {} ({}): {} unexpected cycles, leaks {:?}: the peer's, not counted",
                f.lane, f.runtime, f.unexpected, f.leaks
            );
        }
    }
    let clean = figures
        .iter()
        .filter(|f| f.runtime == wasmpod)
        .all(|f| f.unexpected == 0 && f.leaks.is_empty())
        && leftovers.is_empty()
        && !interrupted;
    println!(
        "== churn {}",
        if clean {
            "passed: every wasmpod cycle ended as its kind says, every count back where it started"
        } else {
            "FAILED"
        }
    );
    Ok(clean)
}
