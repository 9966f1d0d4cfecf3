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

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// What is counted.
    pub what: &'static str,
    /// The count.
    pub n: u64,
}

/// The shim socket of container `id` of namespace `ns` on the daemon at `address`.
pub fn shim_socket(address: &Path, ns: &str, id: &str) -> PathBuf {
    let key = address.join(ns).join(id);
    let hash = Sha256::digest(key.as_os_str().as_encoded_bytes());
    Path::new(SHIM_SOCKET_DIR).join(format!("{hash:x}"))
}

fn count_entries(dir: &Path) -> u64 {
    fs::read_dir(dir).map(|d| d.count() as u64).unwrap_or(0)
}

fn dir_size(dir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => {
                let (f, b) = dir_size(&e.path());
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

/// Pids of the processes that belong to the daemon (itself excluded).
fn processes(p: &Probe) -> BTreeSet<i32> {
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
    pids
}

/// Entries under `/run/containerd/<runtime>/<ns>` (runwasi keeps its containers' state
/// there) plus the daemon's private runc root for the namespace.
fn runtime_state(p: &Probe) -> u64 {
    let mut n = count_entries(&p.dir.join("runc").join(&p.namespace));
    for e in fs::read_dir("/run/containerd")
        .into_iter()
        .flatten()
        .flatten()
    {
        let d = e.path().join(&p.namespace);
        if d.is_dir() {
            n += count_entries(&d);
        }
    }
    n
}

/// Counts everything; `ids` are the container ids whose shim sockets are looked for.
pub async fn count(p: &Probe, api: &Api, ids: &BTreeSet<String>) -> Result<Vec<Row>> {
    let sockets = ids
        .iter()
        .filter(|id| shim_socket(&p.socket, &p.namespace, id).exists())
        .count() as u64;
    let (cache_files, cache_bytes) = dir_size(&p.cache);
    let v2 = "io.containerd.runtime.v2.task";
    let rows = vec![
        Row {
            what: "processes (shims, containers, children of containerd)",
            n: processes(p).len() as u64,
        },
        Row {
            what: "shim sockets in /run/containerd/s (this run's ids)",
            n: sockets,
        },
        Row {
            what: "mounts under the daemon's root and state",
            n: system::mounts_under(&p.dir).len() as u64,
        },
        Row {
            what: "cgroups below the namespace (v1 and v2)",
            n: system::cgroup_children(&p.namespace).len() as u64,
        },
        Row {
            what: "task bundles (state dir)",
            n: count_entries(&p.dir.join("state").join(v2).join(&p.namespace)),
        },
        Row {
            what: "task work dirs (root dir)",
            n: count_entries(&p.dir.join("root").join(v2).join(&p.namespace)),
        },
        Row {
            what: "runtime state dirs (runc root, /run/containerd/*/NS)",
            n: runtime_state(p),
        },
        Row {
            what: "overlayfs snapshot dirs",
            n: count_entries(
                &p.dir
                    .join("root/io.containerd.snapshotter.v1.overlayfs/snapshots"),
            ),
        },
        Row {
            what: "tasks (Tasks.List)",
            n: api.task_ids().await?.len() as u64,
        },
        Row {
            what: "containers (Containers.List)",
            n: api.container_ids().await?.len() as u64,
        },
        Row {
            what: "active snapshots (Snapshots.List)",
            n: api.active_snapshots().await?.len() as u64,
        },
        Row {
            what: "fds held by containerd",
            n: count_entries(Path::new(&format!("/proc/{}/fd", p.pid))),
        },
        Row {
            what: "compile cache files",
            n: cache_files,
        },
        Row {
            what: "compile cache bytes",
            n: cache_bytes,
        },
    ];
    Ok(rows)
}

/// The rows of `after` that differ from `before`, plus the cache over its bound.
pub fn differences(p: &Probe, before: &[Row], after: &[Row]) -> Vec<String> {
    let mut out: Vec<String> = before
        .iter()
        .zip(after)
        .filter(|(b, a)| b.n != a.n)
        .map(|(b, a)| format!("{}: {} -> {}", b.what, b.n, a.n))
        .collect();
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

/// The before/after table.
pub fn table(p: &Probe, before: &[Row], after: &[Row]) -> String {
    let mut s = format!(
        "   {:<56} {:>10} {:>10}\n",
        "leak accounting", "before", "after"
    );
    for (b, a) in before.iter().zip(after) {
        let mark = if b.n == a.n { "" } else { "  <-- LEAK" };
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
