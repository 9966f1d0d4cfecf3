//! Leak accounting: everything a create/start/wait/delete cycle makes on the host, counted
//! before and after a lane. Every count must come back to where it started.
//!
//! Host-wide things (processes, shim sockets, cgroups) are counted only where they belong to
//! this daemon, so other daemons on the same host (other test runs) do not disturb the count:
//! processes that name its socket or are its children or sit in its namespace's cgroups; the
//! shim sockets of the container ids this run used (`/run/containerd/s/<sha256(address/ns/id)>`,
//! the name every shim derives, checked against a live task); mounts under its temp dir;
//! cgroups below its (unique) namespace.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;
use sha2::{Digest, Sha256};
use wasmpod_integration::system;

use crate::api::Api;

/// Where every shim puts its ttrpc socket, whatever the daemon's state dir.
pub const SHIM_SOCKET_DIR: &str = "/run/containerd/s";

/// What identifies the daemon's things on the host.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The daemon's gRPC socket (the shims' `-address`).
    pub socket: PathBuf,
    /// Its temp dir (root, state, runc root).
    pub dir: PathBuf,
    /// The containerd namespace.
    pub namespace: String,
    /// containerd's pid.
    pub pid: i32,
    /// The compile cache dir and its bound in bytes.
    pub cache: PathBuf,
    /// `WASMPOD_CACHE_MAX_MB` in bytes.
    pub cache_bound: u64,
}

/// One row of the table: a count and, where they have names, the things counted.
#[derive(Debug, Clone)]
pub struct Row {
    /// What is counted.
    pub what: &'static str,
    /// The count.
    pub n: u64,
    /// Their names (paths, pids with argv, fd targets), for the report of what changed.
    pub items: BTreeSet<String>,
    /// Zero whenever the namespace has no task (the baseline included).
    pub zero_when_idle: bool,
}

impl PartialEq for Row {
    /// Rows are compared by count: fd targets and pids are not stable names.
    fn eq(&self, other: &Self) -> bool {
        self.what == other.what && self.n == other.n
    }
}

impl Row {
    fn of(what: &'static str, items: impl IntoIterator<Item = String>) -> Self {
        let items: BTreeSet<String> = items.into_iter().collect();
        Self {
            what,
            n: items.len() as u64,
            items,
            zero_when_idle: true,
        }
    }

    fn number(what: &'static str, n: u64) -> Self {
        Self {
            what,
            n,
            items: BTreeSet::new(),
            zero_when_idle: false,
        }
    }

    fn not_zero_when_idle(mut self) -> Self {
        self.zero_when_idle = false;
        self
    }
}

/// The shim socket of container `id` of namespace `ns` on the daemon at `address`.
pub fn shim_socket(address: &Path, ns: &str, id: &str) -> PathBuf {
    let key = address.join(ns).join(id);
    let hash = Sha256::digest(key.as_os_str().as_encoded_bytes());
    Path::new(SHIM_SOCKET_DIR).join(format!("{hash:x}"))
}

fn entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().display().to_string())
        .collect()
}

/// The compile cache's directory of the records of files whose digest was checked.
const CHECK_RECORDS: &str = "verified";

/// Files and bytes below `dir`, its subdirectory `skip` left out.
fn dir_size_except(dir: &Path, skip: &str) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if !skip.is_empty() && e.file_name() == skip {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => {
                let (f, b) = dir_size_except(&e.path(), "");
                files += f;
                bytes += b;
            }
            Ok(_) => {
                files += 1;
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
            Err(_) => {}
        }
    }
    (files, bytes)
}

/// The processes that belong to the daemon (itself excluded), as `pid argv`.
fn processes(p: &Probe) -> Vec<String> {
    let mut pids: BTreeSet<i32> = system::procs_mentioning(&p.socket.to_string_lossy())
        .into_iter()
        .filter(|q| !q.is_ctr())
        .map(|q| q.pid)
        .collect();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
            if system::ppid(pid) == p.pid {
                pids.insert(pid);
            }
        }
    }
    for cg in system::namespace_cgroups(&p.namespace)
        .into_iter()
        .chain(system::cgroup_children(&p.namespace))
    {
        let procs = fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    pids.remove(&p.pid);
    pids.into_iter()
        .map(|pid| {
            let argv = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv: Vec<String> = argv
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            format!("{pid} {}", argv.join(" "))
        })
        .collect()
}

/// Entries under `/run/containerd/<runtime>/<ns>` (runwasi keeps its containers' state
/// there) plus the daemon's private runc root for the namespace.
fn runtime_state(p: &Probe) -> Vec<String> {
    let mut all = entries(&p.dir.join("runc").join(&p.namespace));
    for e in fs::read_dir("/run/containerd")
        .into_iter()
        .flatten()
        .flatten()
    {
        let d = e.path().join(&p.namespace);
        if d.is_dir() {
            all.extend(entries(&d));
        }
    }
    all
}

/// containerd's fds, as `fd -> target`.
fn fds(pid: i32) -> Vec<String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let target = fs::read_link(e.path()).unwrap_or_default();
            format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                target.display()
            )
        })
        .collect()
}

/// Counts everything, after a synchronous garbage collection (what containerd removes only
/// when its collector runs is not a leak until a collection leaves it); `ids` are the
/// container ids whose shim sockets are looked for.
pub async fn count(p: &Probe, api: &Api, ids: &BTreeSet<String>) -> Result<Vec<Row>> {
    static GC: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = GC.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    api.gc(&format!("churn-gc-{n}")).await?;
    let sockets = ids
        .iter()
        .map(|id| (id, shim_socket(&p.socket, &p.namespace, id)))
        .filter(|(_, s)| s.exists())
        .map(|(id, s)| format!("{} (of {id})", s.display()));
    // The shim's records of files checked (`verified/`) appear as files become quiet, one per
    // file at most: not counted with the files, checked against them (`differences`).
    let (cache_files, cache_bytes) = dir_size_except(&p.cache, CHECK_RECORDS);
    let v2 = "io.containerd.runtime.v2.task";
    let rows = vec![
        Row::of(
            "processes (shims, containers, children of containerd)",
            processes(p),
        ),
        Row::of(
            "shim sockets in /run/containerd/s (this run's ids)",
            sockets,
        ),
        Row::of(
            "mounts under the daemon's root and state",
            system::mounts_under(&p.dir)
                .into_iter()
                .map(|m| m.display().to_string()),
        ),
        Row::of(
            "cgroups below the namespace (v1 and v2)",
            system::cgroup_children(&p.namespace)
                .into_iter()
                .map(|c| c.display().to_string()),
        ),
        Row::of(
            "task bundles (state dir)",
            entries(&p.dir.join("state").join(v2).join(&p.namespace)),
        ),
        Row::of(
            "task work dirs (root dir)",
            entries(&p.dir.join("root").join(v2).join(&p.namespace)),
        ),
        Row::of(
            "runtime state dirs (runc root, /run/containerd/*/NS)",
            runtime_state(p),
        ),
        Row::of(
            "overlayfs snapshot dirs",
            entries(
                &p.dir
                    .join("root/io.containerd.snapshotter.v1.overlayfs/snapshots"),
            ),
        )
        .not_zero_when_idle(),
        Row::of("tasks (Tasks.List)", api.task_ids().await?),
        Row::of("containers (Containers.List)", api.container_ids().await?),
        Row::of(
            "active snapshots (Snapshots.List)",
            api.active_snapshots().await?,
        ),
        Row::of("fds held by containerd", fds(p.pid)).not_zero_when_idle(),
        Row::number("compile cache files", cache_files),
        Row::number("compile cache bytes", cache_bytes),
    ];
    Ok(rows)
}

/// The rows of `after` that differ from `before` (with what was added and what went, up to
/// 10 of each), plus the cache over its bound.
pub fn differences(p: &Probe, before: &[Row], after: &[Row]) -> Vec<String> {
    let mut out: Vec<String> = before
        .iter()
        .zip(after)
        .filter(|(b, a)| b.n != a.n)
        .map(|(b, a)| {
            let added: Vec<&String> = a.items.difference(&b.items).take(10).collect();
            let gone: Vec<&String> = b.items.difference(&a.items).take(10).collect();
            let mut s = format!("{}: {} -> {}", b.what, b.n, a.n);
            if !added.is_empty() {
                s.push_str(&format!("; new: {added:?}"));
            }
            if !gone.is_empty() {
                s.push_str(&format!("; gone: {gone:?}"));
            }
            s
        })
        .collect();
    let records = fs::read_dir(p.cache.join(CHECK_RECORDS)).map_or(0, Iterator::count) as u64;
    if let Some(files) = after.iter().find(|r| r.what == "compile cache files") {
        if records > files.n {
            out.push(format!(
                "compile cache: {records} records of checked files for {} files",
                files.n
            ));
        }
    }
    if let Some(bytes) = after.iter().find(|r| r.what == "compile cache bytes") {
        if bytes.n > p.cache_bound {
            out.push(format!(
                "compile cache {} bytes over its bound of {}",
                bytes.n, p.cache_bound
            ));
        }
    }
    out
}

/// The rows of an idle baseline that are not zero: what the warm-up (or a lane before)
/// left behind.
pub fn not_idle(before: &[Row]) -> Vec<String> {
    before
        .iter()
        .filter(|r| r.zero_when_idle && r.n != 0)
        .map(|r| {
            let items: Vec<&String> = r.items.iter().take(10).collect();
            format!("{} already {} before the cycles: {items:?}", r.what, r.n)
        })
        .collect()
}

/// The before/after table.
pub fn table(p: &Probe, before: &[Row], after: &[Row]) -> String {
    let mut s = format!(
        "   {:<56} {:>10} {:>10}\n",
        "leak accounting", "before", "after"
    );
    for (b, a) in before.iter().zip(after) {
        let mark = if b.n != a.n || (b.zero_when_idle && b.n != 0) {
            "  <-- LEAK"
        } else {
            ""
        };
        s.push_str(&format!(
            "   {:<56} {:>10} {:>10}{mark}\n",
            b.what, b.n, a.n
        ));
    }
    s.push_str(&format!(
        "   {:<56} {:>10} {:>10}\n",
        "compile cache bound (WASMPOD_CACHE_MAX_MB, bytes)", p.cache_bound, p.cache_bound
    ));
    s
}
