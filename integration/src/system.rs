//! What a daemon left on the host: processes, mounts and cgroups, and how to remove them.
//!
//! Reads `/proc` and `/sys/fs/cgroup` only; it acts (kill, unmount, rmdir) strictly on things
//! under the daemon's own temp dir, address or containerd namespace.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A process whose command line names the daemon's socket.
#[derive(Debug, Clone)]
pub struct Proc {
    /// Its pid.
    pub pid: i32,
    /// Its parent's pid (0 when unknown).
    pub ppid: i32,
    /// Its argv.
    pub argv: Vec<String>,
}

impl Proc {
    /// True for a `ctr` client (the harness's own children), not a shim or container.
    pub fn is_ctr(&self) -> bool {
        self.argv
            .first()
            .is_some_and(|a| Path::new(a).file_name().is_some_and(|n| n == "ctr"))
    }
}

/// Processes other than this one whose argv mentions `needle` (a daemon's socket path).
///
/// Shims get `-address <socket>`; a wasm container that never execs keeps the shim's argv,
/// so leaked guests show up here too.
pub fn procs_mentioning(needle: &str) -> Vec<Proc> {
    let me = std::process::id() as i32;
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let argv: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            argv.iter().any(|a| a.contains(needle)).then(|| Proc {
                pid,
                ppid: ppid(pid),
                argv,
            })
        })
        .collect()
}

/// The parent pid of `pid` per `/proc/<pid>/stat`, 0 when unreadable.
pub fn ppid(pid: i32) -> i32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so cut at the last ')'.
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// The inodes of the unix sockets bound to `path` (a listener and the connections it
/// accepted), per `/proc/net/unix`.
pub fn unix_socket_inodes(path: &Path) -> Vec<u64> {
    let table = fs::read_to_string("/proc/net/unix").unwrap_or_default();
    // "Num RefCount Protocol Flags Type St Inode Path"
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() == 8 && Path::new(cols[7]) == path).then(|| cols[6].parse().ok())?
        })
        .collect()
}

/// The processes holding a unix socket bound to `path` (see [`unix_socket_inodes`]).
pub fn socket_holders(path: &Path) -> Vec<i32> {
    let bound = unix_socket_inodes(path);
    let pids = fs::read_dir("/proc").into_iter().flatten().flatten();
    let mut holders: Vec<i32> = pids
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&pid| socket_inodes_of(pid).iter().any(|i| bound.contains(i)))
        .collect();
    holders.sort_unstable();
    holders
}

/// The inodes of the sockets process `pid` has open.
fn socket_inodes_of(pid: i32) -> Vec<u64> {
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten();
    fds.flatten()
        .filter_map(|fd| {
            let target = fs::read_link(fd.path()).ok()?;
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Shim processes of the daemon at socket `address`: processes running `binary` (a file name)
/// that name the socket and whose parent does not. A wasm guest is forked from its shim and
/// keeps the shim's argv, so only the topmost such process of each tree is a shim.
pub fn shims_of(address: &str, binary: &str) -> Vec<Proc> {
    let procs: Vec<Proc> = procs_mentioning(address)
        .into_iter()
        .filter(|p| {
            p.argv
                .first()
                .is_some_and(|a| Path::new(a).file_name().is_some_and(|n| n == binary))
        })
        .collect();
    let pids: Vec<i32> = procs.iter().map(|p| p.pid).collect();
    procs
        .into_iter()
        .filter(|p| !pids.contains(&p.ppid))
        .collect()
}

/// Whether process `pid` exists.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Polls until process `pid` is gone, up to `timeout`; returns how long it took.
///
/// # Errors
/// When it is still there after `timeout`.
pub fn gone_within(pid: u32, timeout: std::time::Duration) -> anyhow::Result<std::time::Duration> {
    let start = std::time::Instant::now();
    while alive(pid) {
        anyhow::ensure!(
            start.elapsed() < timeout,
            "process {pid} still there after {timeout:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(start.elapsed())
}

/// Where shims put their ttrpc sockets, whatever the daemon's own dirs.
pub const SHIM_SOCKET_DIR: &str = "/run/containerd/s";

/// The ttrpc socket of the shim of container (or pod sandbox) `id` in namespace `ns` of the
/// daemon at `address`: `/run/containerd/s/<sha256(address/ns/id)>`, as containerd's shim
/// library and the Rust one name it.
pub fn shim_socket(address: &Path, ns: &str, id: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    let key = address.join(ns).join(id);
    let hash = Sha256::digest(key.as_os_str().as_encoded_bytes());
    Path::new(SHIM_SOCKET_DIR).join(format!("{hash:x}"))
}

/// Sends SIGKILL to `pid`, ignoring a process that is already gone.
pub fn kill_pid(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// SIGTERM to each of `pids`, up to 1 s for them to go, then SIGKILL to those left. An idle
/// wasmpod group shim leaves on SIGTERM and removes its socket; SIGKILL would leave the socket.
pub fn stop_pids(pids: &[i32]) {
    for &p in pids {
        let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
    }
    let alive = |p: i32| kill(Pid::from_raw(p), None).is_ok();
    for _ in 0..20 {
        if !pids.iter().any(|&p| alive(p)) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    pids.iter().for_each(|&p| kill_pid(p));
}

fn unescape_mountinfo(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let digits = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let (b'\\', Some(d)) = (b[i], digits) {
            let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or below `root`, deepest first.
pub fn mounts_under(root: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mountinfo(m)))
        .filter(|m| m.starts_with(root))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Lazily unmounts everything at or below `root`, deepest first; returns what failed.
pub fn unmount_under(root: &Path) -> Vec<String> {
    let mut failed = Vec::new();
    // A path can be mounted over more than once: repeat until nothing is left or no progress.
    for _ in 0..8 {
        let mounts = mounts_under(root);
        if mounts.is_empty() {
            return failed;
        }
        failed.clear();
        for m in mounts {
            if let Err(e) = umount2(&m, MntFlags::MNT_DETACH) {
                failed.push(format!("{}: {e}", m.display()));
            }
        }
    }
    failed
}

/// The cgroup directories containerd's namespace `ns` maps to, in every hierarchy.
///
/// ctr places a task at cgroup path `/<namespace>/<id>`; on the hybrid layout that is
/// `/sys/fs/cgroup/<controller>/<ns>/<id>` for each v1 controller plus
/// `/sys/fs/cgroup/unified/<ns>/<id>`; on a pure v2 host `/sys/fs/cgroup/<ns>/<id>`.
pub fn namespace_cgroups(ns: &str) -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![base.join(ns)];
    if let Ok(entries) = fs::read_dir(base) {
        for e in entries.flatten() {
            // cpu and cpuacct are often symlinks to one hierarchy: skip links, keep real dirs.
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(e.path().join(ns));
            }
        }
    }
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

/// Sub-cgroups (containers) below the namespace cgroups of `ns`, deepest first.
pub fn cgroup_children(ns: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                    out.push(e.path());
                }
            }
        }
    }
    let mut out = Vec::new();
    for d in namespace_cgroups(ns) {
        walk(&d, &mut out);
    }
    out
}

/// Removes the (empty) cgroups of namespace `ns`, children first; returns what failed.
pub fn remove_namespace_cgroups(ns: &str) -> Vec<String> {
    let mut failed = Vec::new();
    let dirs = cgroup_children(ns).into_iter().chain(namespace_cgroups(ns));
    for d in dirs {
        if let Err(e) = fs::remove_dir(&d) {
            failed.push(format!("{}: {e}", d.display()));
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Octal escapes in mountinfo paths are decoded.
    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo(r"/tmp/plain"), "/tmp/plain");
        assert_eq!(unescape_mountinfo(r"/tmp/end\"), r"/tmp/end\");
    }
}
