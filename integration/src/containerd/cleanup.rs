//! Checking and removing what a [`Containerd`] leaves behind.
//!
//! `leftovers` reads ctr, the state dir, `/proc`, mountinfo and cgroupfs; the removal
//! helpers act only on this daemon's tasks, containers and PID.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::Containerd;
use crate::process::poll;
use crate::system;

impl Containerd {
    /// Everything a finished test may not leave behind, as descriptions; empty when clean.
    ///
    /// Checks tasks and containers, active snapshots, task bundles in the state dir, shim
    /// (and guest) processes naming this daemon's socket, mounts under the temp dir and
    /// container cgroups below the namespace's cgroup in every hierarchy.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn leftovers(&self) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for t in self.task_list()? {
            found.push(format!("task {} (pid {}, {})", t.id, t.pid, t.status));
        }
        for c in self.containers()? {
            found.push(format!("container {c}"));
        }
        let snaps = self.ctr(["snapshots", "ls"])?;
        for l in snaps.stdout.lines().filter(|l| l.contains("Active")) {
            found.push(format!("active snapshot {}", l.trim()));
        }
        let bundles = self
            .dir
            .join("state/io.containerd.runtime.v2.task")
            .join(&self.namespace);
        for e in fs::read_dir(&bundles).into_iter().flatten().flatten() {
            found.push(format!("task bundle {}", e.path().display()));
        }
        for p in system::procs_mentioning(&self.grpc.to_string_lossy()) {
            if !p.is_ctr() {
                found.push(format!("process {}: {}", p.pid, p.argv.join(" ")));
            }
        }
        for m in system::mounts_under(&self.dir) {
            found.push(format!("mount {}", m.display()));
        }
        for c in system::cgroup_children(&self.namespace) {
            found.push(format!("cgroup {}", c.display()));
        }
        Ok(found)
    }

    /// Waits (up to 10 s, shims exit asynchronously) until [`Containerd::leftovers`] is empty.
    ///
    /// # Errors
    /// Listing what is left, with the daemon's log tail.
    pub fn assert_clean(&self) -> Result<()> {
        self.assert_clean_but(&[])
    }

    /// [`Containerd::assert_clean`] for a test that mounted something under the daemon's dir
    /// itself (a tmpfs over its state dir): the mounts at `own_mounts` are not leftovers.
    ///
    /// # Errors
    /// See [`Containerd::assert_clean`].
    pub fn assert_clean_but(&self, own_mounts: &[&Path]) -> Result<()> {
        let own: Vec<String> = own_mounts
            .iter()
            .map(|m| format!("mount {}", m.display()))
            .collect();
        let mut last = Vec::new();
        let clean = poll("a clean daemon", Duration::from_secs(10), || {
            last = self.leftovers()?;
            last.retain(|l| !own.contains(l));
            Ok(last.is_empty().then_some(()))
        });
        if clean.is_err() {
            bail!(
                "left behind after the test:\n  {}\ncontainerd log tail:\n{}",
                last.join("\n  "),
                self.log_tail(30)
            );
        }
        Ok(())
    }

    pub(super) fn remove_everything(&self) {
        for t in self.task_list().unwrap_or_default() {
            let _ = self.ctr(["task", "kill", "-s", "SIGKILL", &t.id]);
            let _ = self.wait_for_status(&t.id, "STOPPED", Duration::from_secs(5));
            let _ = self.ctr(["task", "delete", "-f", &t.id]);
        }
        for c in self.containers().unwrap_or_default() {
            let _ = self.ctr(["containers", "delete", &c]);
        }
    }

    pub(super) fn stop_daemon(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = kill(pid, Signal::SIGKILL);
        let _ = child.wait();
    }
}
