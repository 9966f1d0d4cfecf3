//! What a [`Cri`] setup leaves behind, and removing it: pods through CRI, then the daemons
//! by PID, stray processes, mounts, cgroups, the bridge and iptables chains, the temp dir.
//!
//! Acts only on this setup's temp dir, cgroup root, bridge and subnet.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::network::PodNetwork;
use super::Cri;
use crate::paths::SHIM_BINARY;
use crate::process::poll;
use crate::system::{self, Proc};

/// PIDs listed in `cgroup.procs` of the cgroups under `root` (every hierarchy).
fn cgroup_pids(root: &str) -> Vec<i32> {
    let dirs = system::cgroup_children(root)
        .into_iter()
        .chain(system::namespace_cgroups(root));
    let mut pids: Vec<i32> = dirs
        .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Everything of a torn-down setup still on the host: processes naming `dir`, mounts
/// under it, the dir itself, cgroups under `root`, the bridge and iptables rules of `net`.
pub fn host_leftovers(dir: &Path, net: &PodNetwork, root: &str) -> Vec<String> {
    let mut found = Vec::new();
    for p in system::procs_mentioning(&dir.to_string_lossy()) {
        found.push(format!("process {}: {}", p.pid, p.argv.join(" ")));
    }
    for m in system::mounts_under(dir) {
        found.push(format!("mount {}", m.display()));
    }
    if dir.exists() {
        found.push(format!("dir {}", dir.display()));
    }
    for c in system::namespace_cgroups(root) {
        found.push(format!("cgroup {}", c.display()));
    }
    if net.bridge_exists() {
        found.push(format!("bridge {}", net.bridge));
    }
    found.extend(
        net.iptables_rules()
            .into_iter()
            .map(|r| format!("iptables {r}")),
    );
    found
}

impl Cri {
    /// wasmpod shim processes serving this containerd (not the guests forked from them).
    pub fn shims(&self) -> Vec<Proc> {
        system::shims_of(&self.socket().to_string_lossy(), SHIM_BINARY)
    }

    /// Processes other than containerd and the registry whose argv names the temp dir.
    pub fn stray_procs(&self) -> Vec<Proc> {
        let daemons = self.daemon_pids();
        system::procs_mentioning(&self.dir.to_string_lossy())
            .into_iter()
            .filter(|p| !daemons.iter().any(|d| *d as i32 == p.pid))
            .collect()
    }

    /// Stops and removes every pod sandbox (and so its containers) through CRI.
    ///
    /// # Errors
    /// When a CRI call fails.
    pub fn remove_all_pods(&self) -> Result<()> {
        let client = self.client()?;
        for id in client.list_pods()? {
            client.stop_pod(&id)?;
            client.remove_pod(&id)?;
        }
        Ok(())
    }

    /// What no pod may leave once all pods are removed: pods, containers, wasmpod shims,
    /// stray processes (in the temp dir's name or the pods' cgroups), mounts under the temp
    /// dir (network namespaces included) and container cgroups.
    ///
    /// # Errors
    /// When a CRI call fails.
    pub fn leftovers(&self) -> Result<Vec<String>> {
        let client = self.client()?;
        let mut found: Vec<String> = client
            .list_pods()?
            .into_iter()
            .map(|p| format!("pod sandbox {p}"))
            .collect();
        for c in client.list_containers()? {
            found.push(format!("container {c}"));
        }
        for p in self.shims() {
            found.push(format!("shim {}: {}", p.pid, p.argv.join(" ")));
        }
        for p in self.stray_procs() {
            found.push(format!("process {}: {}", p.pid, p.argv.join(" ")));
        }
        for pid in cgroup_pids(&self.cgroup_root) {
            found.push(format!("process {pid} in a pod cgroup"));
        }
        for m in system::mounts_under(&self.dir) {
            found.push(format!("mount {}", m.display()));
        }
        // Pod cgroups (`<root>/pod<uid>`) are kubelet's to remove, as runtimes create but
        // never remove cgroup parents; container cgroups below them are the runtime's.
        let pod_level = system::namespace_cgroups(&self.cgroup_root);
        for c in system::cgroup_children(&self.cgroup_root) {
            if !c.parent().is_some_and(|p| pod_level.iter().any(|l| l == p)) {
                found.push(format!("cgroup {}", c.display()));
            }
        }
        Ok(found)
    }

    /// Waits up to 10 s (shims exit asynchronously) for [`Cri::leftovers`] to be empty.
    ///
    /// # Errors
    /// When something is still there, listed.
    pub fn wait_clean(&self) -> Result<()> {
        let mut last = Vec::new();
        let clean = poll("pods to leave nothing", Duration::from_secs(10), || {
            last = self.leftovers()?;
            Ok(last.is_empty().then_some(()))
        });
        if clean.is_err() {
            bail!("left behind after removing all pods: {last:#?}");
        }
        Ok(())
    }

    fn stop_containerd(&mut self) {
        self.client = None;
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let gone = poll("containerd to exit", Duration::from_secs(10), || {
            Ok(child.try_wait()?.map(|_| ()))
        });
        if gone.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("containerd log tail:\n{}", self.log_tail(60));
        }
        if self.client.is_some() {
            if let Err(e) = self.remove_all_pods() {
                eprintln!("CRI teardown: removing pods: {e:#}");
            }
        }
        self.stop_containerd();
        if let Some(keep) = std::env::var_os("WASMPOD_CRI_LOG_DIR") {
            let name = self.dir.file_name().unwrap_or_default().to_os_string();
            let dest = Path::new(&keep).join(name).with_extension("log");
            let _ = fs::create_dir_all(&keep).and_then(|()| fs::copy(&self.log, dest).map(drop));
        }
        if let Some(mut r) = self.registry.take() {
            r.stop();
        }
        // Shims name the socket (guests keep their argv); a pause orphaned by a dead shim
        // names nothing of ours but sits in a pod cgroup.
        for _ in 0..3 {
            let mut pids: Vec<i32> = system::procs_mentioning(&self.dir.to_string_lossy())
                .into_iter()
                .map(|p| p.pid)
                .collect();
            pids.extend(cgroup_pids(&self.cgroup_root));
            if pids.is_empty() {
                break;
            }
            pids.into_iter().for_each(system::kill_pid);
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut problems = system::unmount_under(&self.dir);
        problems.extend(system::remove_namespace_cgroups(&self.cgroup_root));
        problems.extend(self.net.remove());
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            problems.push(format!("remove {}: {e}", self.dir.display()));
        }
        if !problems.is_empty() {
            eprintln!("CRI teardown: {}", problems.join("; "));
        }
    }
}
