//! What one cycle does, per kind, and the lanes (runtime + mix) the driver runs.
//!
//! A container cycle is `ctr run --rm`'s sequence of calls: Containers.Create (the OCI spec
//! built from `ctr oci spec`'s default, the image's config and the cycle's argv),
//! Snapshots.Prepare of the rootfs on the image's chain id, Tasks.Create (no stdio),
//! Tasks.Start, Tasks.Wait, Tasks.Delete, Snapshots.Remove, Containers.Delete. An exec cycle
//! is `ctr task exec`'s: Tasks.Exec, Start, Wait, DeleteProcess into a long-running task
//! (one per worker and exec kind, made on first use and removed when the lane ends).
//! A create that must fail must fail at Tasks.Create with its gRPC code and leave nothing:
//! the container and the snapshot are removed as `ctr run` removes them.
//!
//! stdout and stderr are fifos, as ctr's: made per process in the daemon's fifo dir, opened
//! by the driver before the create (read-write, so the shim's open never waits for a reader
//! and never sees it go), read once the process is gone (the programs print a line, far
//! below a pipe's capacity) and checked against what the program prints. `--stdio null`
//! sends empty paths instead (the shims' null IO) and checks only exit statuses.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use containerd_client::tonic::Code;
use prost_types::Any;
use serde_json::{json, Value};
use wasmpod_integration::paths::GROUP_ANNOTATION;

use crate::api::{Api, CallError, ImageInfo};

/// Set on SIGINT or SIGTERM: workers take no new cycle, the lane ends and is reported, the
/// daemon is torn down.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// SIGKILL, for the exec targets at the end of a lane.
const SIGKILL: u32 = 9;

/// One kind of cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// hello.wasm, a wasip1 module: exit 0.
    Module,
    /// hello-component.wasm, a wasip2 command component: exit 0.
    Component,
    /// busybox `echo hello`, a native Linux process: exit 0.
    Native,
    /// hello.wasm exec'd into a running wasm sleeper: exit 0.
    ExecWasm,
    /// busybox `echo hello` exec'd into a running busybox `sleep`: exit 0.
    ExecNative,
    /// An image whose /app.wasm has the wasm header and garbage after it: Tasks.Create fails
    /// with InvalidArgument.
    BadWasm,
    /// The hello image run with argv `/missing.wasm`: Tasks.Create fails with InvalidArgument
    /// (the shim resolves the entrypoint as part of the spec; runc's create fails the same).
    MissingEntrypoint,
}

impl Kind {
    /// Every kind, in the order of the tables.
    pub const ALL: [Kind; 7] = [
        Kind::Module,
        Kind::Component,
        Kind::Native,
        Kind::ExecWasm,
        Kind::ExecNative,
        Kind::BadWasm,
        Kind::MissingEntrypoint,
    ];

    /// The name used in `--mix` and the tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Module => "module",
            Kind::Component => "component",
            Kind::Native => "native",
            Kind::ExecWasm => "exec-wasm",
            Kind::ExecNative => "exec-native",
            Kind::BadWasm => "bad-wasm",
            Kind::MissingEntrypoint => "missing-entrypoint",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Result<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                anyhow!("unknown kind {s:?}; kinds: {}", names.join(", "))
            })
    }

    /// The gRPC code Tasks.Create must fail with, for the kinds that must fail.
    pub fn must_fail_with(self) -> Option<Code> {
        match self {
            Kind::BadWasm => Some(Code::InvalidArgument),
            Kind::MissingEntrypoint => Some(Code::InvalidArgument),
            _ => None,
        }
    }

    /// What the program prints on stdout, for the kinds that run.
    pub fn stdout(self) -> &'static str {
        match self {
            Kind::Module | Kind::ExecWasm => "hello from wasmpod\n",
            Kind::Component => "hello from a wasmpod component\n",
            Kind::Native | Kind::ExecNative => "hello\n",
            Kind::BadWasm | Kind::MissingEntrypoint => "",
        }
    }

    fn is_exec(self) -> bool {
        matches!(self, Kind::ExecWasm | Kind::ExecNative)
    }
}

/// The images the kinds use, resolved through the API.
#[derive(Debug, Clone)]
pub struct Images {
    /// hello.wasm.
    pub hello: ImageInfo,
    /// hello-component.wasm.
    pub component: ImageInfo,
    /// busybox.
    pub busybox: ImageInfo,
    /// The sleeper with /bin/hello.wasm beside it.
    pub sleeper: ImageInfo,
    /// bad/invalid.wasm as /app.wasm.
    pub bad: ImageInfo,
}

/// Weighted kinds: cycle `i` is the kind at `i % period` of a sequence in which each kind
/// appears as often as its weight, interleaved (`a:2,b:1` is `a b a`), so every run of the
/// same mix makes the same cycles.
#[derive(Debug, Clone)]
pub struct Mix {
    weights: Vec<(Kind, u32)>,
    seq: Vec<Kind>,
}

impl Mix {
    /// `kind:weight,kind:weight,...` (weight 1 when left out).
    pub fn parse(s: &str) -> Result<Mix> {
        let mut weights = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, w) = part.split_once(':').unwrap_or((part, "1"));
            let w: u32 = w.parse().map_err(|_| anyhow!("bad weight in {part:?}"))?;
            if w > 0 {
                weights.push((Kind::parse(k)?, w));
            }
        }
        let max = weights.iter().map(|(_, w)| *w).max().unwrap_or(0);
        let seq: Vec<Kind> = (0..max)
            .flat_map(|round| {
                weights
                    .iter()
                    .filter(move |(_, w)| round < *w)
                    .map(|(k, _)| *k)
            })
            .collect();
        if seq.is_empty() {
            bail!("empty mix {s:?}");
        }
        Ok(Mix { weights, seq })
    }

    /// The kind of cycle `i`.
    pub fn kind(&self, i: usize) -> Kind {
        self.seq[i % self.seq.len()]
    }

    /// The kinds in the mix, each once.
    pub fn kinds(&self) -> Vec<Kind> {
        self.weights.iter().map(|(k, _)| *k).collect()
    }

    /// `kind:weight,...`.
    pub fn describe(&self) -> String {
        self.weights
            .iter()
            .map(|(k, w)| format!("{}:{w}", k.name()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A runtime and the mix of cycles it runs.
#[derive(Debug, Clone)]
pub struct Lane {
    /// Its name in the tables (`wasmpod-mix`, `runc-echo`...).
    pub name: String,
    /// The runtime type.
    pub runtime: String,
    /// Runtime options for Containers.Create (runc's root).
    pub options: Option<Any>,
    /// The cycles.
    pub mix: Mix,
    /// How many.
    pub cycles: usize,
    /// The wasmpod group every container of the lane joins (the `io.containerd.wasmpod.group`
    /// annotation): one shim serves them all.
    pub group: Option<String>,
}

/// How one cycle ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Ran and exited 0.
    Ok,
    /// Failed as it must.
    FailedAsExpected(CallError),
    /// Anything else.
    Unexpected(String),
}

/// One timed cycle.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its kind.
    pub kind: Kind,
    /// Wall time of all its calls.
    pub took: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

/// A process's stdout and stderr: two fifos the driver holds open, or none.
pub struct Stdio {
    fifos: Option<[(PathBuf, File); 2]>,
}

impl Stdio {
    /// Empty paths: the shim's null IO.
    pub fn null() -> Self {
        Self { fifos: None }
    }

    /// `<dir>/<name>-stdout` and `-stderr`, made and opened read-write, non-blocking.
    pub fn fifos(dir: &Path, name: &str) -> std::io::Result<Self> {
        let open = |suffix: &str| -> std::io::Result<(PathBuf, File)> {
            let path = dir.join(format!("{name}-{suffix}"));
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)?;
            Ok((path, file))
        };
        Ok(Self {
            fifos: Some([open("stdout")?, open("stderr")?]),
        })
    }

    /// The paths for the API (empty for null IO).
    pub fn paths(&self) -> [String; 2] {
        match &self.fifos {
            Some([(o, _), (e, _)]) => [o.display().to_string(), e.display().to_string()],
            None => [String::new(), String::new()],
        }
    }

    /// What is in the fifos now (stdout, stderr); `None` for null IO.
    pub fn take(&mut self) -> Option<(String, String)> {
        let fifos = self.fifos.as_mut()?;
        let mut out = [String::new(), String::new()];
        for (i, (_, f)) in fifos.iter_mut().enumerate() {
            let mut buf = [0u8; 4096];
            let mut bytes = Vec::new();
            loop {
                match f.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => bytes.extend_from_slice(&buf[..n]),
                    Err(_) => break,
                }
            }
            out[i] = String::from_utf8_lossy(&bytes).into_owned();
        }
        let [o, e] = out;
        Some((o, e))
    }

    /// Checks stdout is `want` (nothing to check for null IO).
    fn check(&mut self, want: &str) -> Result<(), String> {
        match self.take() {
            Some((out, err)) if out != want => {
                Err(format!("stdout {out:?}, want {want:?}; stderr {err:?}"))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for Stdio {
    fn drop(&mut self) {
        if let Some(fifos) = self.fifos.take() {
            for (path, file) in fifos {
                drop(file);
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// What every worker of a lane shares.
pub struct Ctx {
    /// The API.
    pub api: Api,
    /// The namespace (for cgroup paths).
    pub namespace: String,
    /// `ctr oci spec`'s default spec.
    pub template: Value,
    /// The images.
    pub images: Images,
    /// The lane.
    pub lane: Lane,
    /// Where the stdio fifos go; `None`: null IO.
    pub fifo_dir: Option<PathBuf>,
    /// Every container id used (for the shim socket count).
    pub ids: Mutex<BTreeSet<String>>,
    /// Called with the id of a task just created, until it returns true once (the shim
    /// socket formula's check against a live task).
    pub check_socket: Box<dyn Fn(&str) -> bool + Send + Sync>,
    /// Set once `check_socket` held.
    pub socket_checked: std::sync::atomic::AtomicBool,
}

impl Ctx {
    fn stdio(&self, name: &str) -> Result<Stdio, String> {
        match &self.fifo_dir {
            Some(dir) => Stdio::fifos(dir, name).map_err(|e| format!("fifos for {name}: {e}")),
            None => Ok(Stdio::null()),
        }
    }

    fn remember(&self, id: &str) {
        if let Ok(mut ids) = self.ids.lock() {
            ids.insert(id.to_string());
        }
    }

    /// The name container `id`'s shim socket is made of: its group's, or its own.
    fn shim_key(&self, id: &str) -> String {
        match &self.lane.group {
            Some(group) => format!("group:{group}"),
            None => id.to_string(),
        }
    }

    /// The spec of container `id` running `argv` with the image's env and cwd.
    fn spec(&self, id: &str, image: &ImageInfo, argv: &[String]) -> Value {
        let mut spec = self.template.clone();
        spec["process"]["args"] = json!(argv);
        spec["process"]["env"] = json!(image.env);
        spec["process"]["cwd"] = json!(image.cwd);
        spec["process"]["terminal"] = json!(false);
        spec["linux"]["cgroupsPath"] = json!(format!("/{}/{id}", self.namespace));
        if let Some(group) = &self.lane.group {
            spec["annotations"][GROUP_ANNOTATION] = json!(group);
        }
        spec
    }

    fn image_and_argv(&self, kind: Kind) -> (&ImageInfo, Vec<String>) {
        let i = &self.images;
        let strings = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match kind {
            Kind::Module => (&i.hello, i.hello.argv.clone()),
            Kind::Component => (&i.component, i.component.argv.clone()),
            Kind::Native => (&i.busybox, strings(&["/bin/echo", "hello"])),
            Kind::ExecWasm => (&i.sleeper, strings(&["/app.wasm", "100000"])),
            Kind::ExecNative => (&i.busybox, strings(&["/bin/sleep", "100000"])),
            Kind::BadWasm => (&i.bad, i.bad.argv.clone()),
            Kind::MissingEntrypoint => (&i.hello, strings(&["/missing.wasm"])),
        }
    }

    /// Removes what a cycle made, best effort: the task (killed first when `kill`), the
    /// container, the snapshot. Returns what failed.
    async fn remove(&self, id: &str, task: bool, kill: bool) -> Vec<String> {
        let api = &self.api;
        let mut errs = Vec::new();
        if task {
            if kill {
                if let Err(e) = api.kill(id, SIGKILL).await {
                    errs.push(e.to_string());
                }
                if let Err(e) = api.wait(id, "").await {
                    errs.push(e.to_string());
                }
            }
            if let Err(e) = api.delete_task(id).await {
                errs.push(e.to_string());
            }
        }
        // The snapshot first, as ctr's WithSnapshotCleanup: once the container is gone the
        // snapshot is unreferenced and containerd's garbage collector may remove it first.
        if let Err(e) = api.remove_snapshot(id).await {
            errs.push(e.to_string());
        }
        if let Err(e) = api.delete_container(id).await {
            errs.push(e.to_string());
        }
        errs
    }

    /// Create, prepare, create task; on failure everything made is removed again.
    async fn create(&self, id: &str, kind: Kind, stdio: &Stdio) -> Result<(), CallError> {
        let (image, argv) = self.image_and_argv(kind);
        let spec = self.spec(id, image, &argv);
        self.remember(id);
        self.remember(&self.shim_key(id));
        let api = &self.api;
        api.create_container(
            id,
            &image.name,
            &self.lane.runtime,
            self.lane.options.clone(),
            &spec,
        )
        .await?;
        let mounts = match api.prepare(id, &image.chain_id).await {
            Ok(m) => m,
            Err(e) => {
                let _ = api.delete_container(id).await;
                return Err(e);
            }
        };
        if let Err(e) = api.create_task(id, mounts, stdio.paths()).await {
            let _ = api.remove_snapshot(id).await;
            let _ = api.delete_container(id).await;
            return Err(e);
        }
        if !self
            .socket_checked
            .load(std::sync::atomic::Ordering::Relaxed)
            && (self.check_socket)(&self.shim_key(id))
        {
            self.socket_checked
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// One container cycle.
    async fn container_cycle(&self, id: &str, kind: Kind) -> Outcome {
        let mut stdio = match self.stdio(id) {
            Ok(s) => s,
            Err(e) => return Outcome::Unexpected(e),
        };
        let created = self.create(id, kind, &stdio).await;
        if let Some(code) = kind.must_fail_with() {
            return match created {
                Err(e) if e.code == code && e.step == "Tasks.Create" => {
                    Outcome::FailedAsExpected(e)
                }
                Err(e) => Outcome::Unexpected(format!("{e}; want Tasks.Create: {code:?}")),
                Ok(()) => {
                    let errs = self.remove(id, true, true).await;
                    Outcome::Unexpected(format!(
                        "Tasks.Create succeeded; it must fail with {code:?} {errs:?}"
                    ))
                }
            };
        }
        if let Err(e) = created {
            return Outcome::Unexpected(e.to_string());
        }
        let api = &self.api;
        if let Err(e) = api.start(id, "").await {
            let errs = self.remove(id, true, false).await;
            return Outcome::Unexpected(format!("{e} {errs:?}"));
        }
        let status = match api.wait(id, "").await {
            Ok(s) => s,
            Err(e) => {
                let errs = self.remove(id, true, true).await;
                return Outcome::Unexpected(format!("{e} {errs:?}"));
            }
        };
        let errs = self.remove(id, true, false).await;
        if status != 0 {
            return Outcome::Unexpected(format!("exit status {status} {errs:?}"));
        }
        if !errs.is_empty() {
            return Outcome::Unexpected(errs.join("; "));
        }
        match stdio.check(kind.stdout()) {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Unexpected(e),
        }
    }

    /// One exec cycle into `target`.
    async fn exec_cycle(&self, target: &str, exec_id: &str, kind: Kind) -> Outcome {
        let (image, _) = self.image_and_argv(kind);
        let argv = match kind {
            Kind::ExecWasm => vec!["/bin/hello.wasm".to_string()],
            _ => vec!["/bin/echo".to_string(), "hello".to_string()],
        };
        let process = self.spec(target, image, &argv)["process"].clone();
        let mut stdio = match self.stdio(&format!("{target}-{exec_id}")) {
            Ok(s) => s,
            Err(e) => return Outcome::Unexpected(e),
        };
        let api = &self.api;
        if let Err(e) = api.exec(target, exec_id, &process, stdio.paths()).await {
            return Outcome::Unexpected(e.to_string());
        }
        if let Err(e) = api.start(target, exec_id).await {
            let _ = api.delete_process(target, exec_id).await;
            return Outcome::Unexpected(e.to_string());
        }
        let status = api.wait(target, exec_id).await;
        let deleted = api.delete_process(target, exec_id).await;
        match (status, deleted) {
            (Ok(0), Ok(_)) => match stdio.check(kind.stdout()) {
                Ok(()) => Outcome::Ok,
                Err(e) => Outcome::Unexpected(e),
            },
            (Ok(s), Ok(_)) => Outcome::Unexpected(format!("exec exit status {s}")),
            (Err(e), _) | (_, Err(e)) => Outcome::Unexpected(e.to_string()),
        }
    }
}

/// A worker's long-running exec targets, by kind (with their stdio).
#[derive(Default)]
pub struct Targets(HashMap<Kind, (String, Stdio)>);

impl Targets {
    async fn get(
        &mut self,
        ctx: &Ctx,
        kind: Kind,
        prefix: &str,
        worker: usize,
    ) -> Result<String, String> {
        if let Some((id, _)) = self.0.get(&kind) {
            return Ok(id.clone());
        }
        let id = format!("churn-{}-{prefix}-w{worker}-{}", ctx.lane.name, kind.name());
        let stdio = ctx.stdio(&id)?;
        ctx.create(&id, kind, &stdio)
            .await
            .map_err(|e| e.to_string())?;
        if let Err(e) = ctx.api.start(&id, "").await {
            let errs = ctx.remove(&id, true, false).await;
            return Err(format!("exec target {id}: {e} {errs:?}"));
        }
        self.0.insert(kind, (id.clone(), stdio));
        Ok(id)
    }

    /// Kills and removes every target; what failed.
    pub async fn remove_all(&mut self, ctx: &Ctx) -> Vec<String> {
        let mut errs = Vec::new();
        for (_, (id, stdio)) in self.0.drain() {
            errs.extend(ctx.remove(&id, true, true).await);
            drop(stdio);
        }
        errs
    }
}

/// Runs cycle `i` of `kind` (ids prefixed with `prefix`), timed.
pub async fn cycle(
    ctx: &Ctx,
    targets: &mut Targets,
    worker: usize,
    prefix: &str,
    i: usize,
    kind: Kind,
) -> Record {
    if kind.is_exec() {
        let target = match targets.get(ctx, kind, prefix, worker).await {
            Ok(t) => t,
            Err(e) => {
                return Record {
                    kind,
                    took: Duration::ZERO,
                    outcome: Outcome::Unexpected(e),
                }
            }
        };
        let started = Instant::now();
        let outcome = ctx
            .exec_cycle(&target, &format!("{prefix}-e{i}"), kind)
            .await;
        return Record {
            kind,
            took: started.elapsed(),
            outcome,
        };
    }
    let id = format!("churn-{}-{prefix}-{i}", ctx.lane.name);
    let started = Instant::now();
    let outcome = ctx.container_cycle(&id, kind).await;
    Record {
        kind,
        took: started.elapsed(),
        outcome,
    }
}

/// Runs `cycles` cycles of the lane's mix, `concurrency` at a time; the records in cycle
/// order and the wall time. The exec targets are removed at the end (not timed).
pub async fn run(
    ctx: Arc<Ctx>,
    prefix: &str,
    cycles: usize,
    concurrency: usize,
) -> Result<(Vec<Record>, Duration, Vec<String>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let (ctx, next, prefix) = (ctx.clone(), next.clone(), prefix.to_string());
        set.spawn(async move {
            let mut targets = Targets::default();
            let mut records = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= cycles || STOP.load(Ordering::Relaxed) {
                    break;
                }
                let kind = ctx.lane.mix.kind(i);
                records.push((i, cycle(&ctx, &mut targets, worker, &prefix, i, kind).await));
            }
            let finished = started.elapsed();
            let errs = targets.remove_all(&ctx).await;
            (records, errs, finished)
        });
    }
    let mut all = Vec::with_capacity(cycles);
    let mut errs = Vec::new();
    let mut wall = Duration::ZERO;
    while let Some(done) = set.join_next().await {
        let (records, e, finished) = done?;
        all.extend(records);
        errs.extend(e);
        wall = wall.max(finished);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok((all.into_iter().map(|(_, r)| r).collect(), wall, errs))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Weights spread over the period: a:2,b:1 gives a b a, a b a, ...
    #[test]
    fn mix_interleaves_by_weight() {
        let mix = Mix::parse("module:2,native:1").unwrap_or_else(|e| panic!("{e}"));
        let kinds: Vec<Kind> = (0..6).map(|i| mix.kind(i)).collect();
        assert_eq!(
            kinds,
            [
                Kind::Module,
                Kind::Native,
                Kind::Module,
                Kind::Module,
                Kind::Native,
                Kind::Module
            ]
        );
        assert!(Mix::parse("nope:1").is_err());
        assert_eq!(mix.describe(), "module:2,native:1");
    }
}
