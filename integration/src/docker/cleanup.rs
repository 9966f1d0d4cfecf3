//! Checking and removing what a [`Docker`] daemon leaves behind.
//!
//! Two checks: [`Docker::leftovers`] while the daemon runs (containers, containerd tasks,
//! shim and guest processes, mounts beyond the idle daemon's, container cgroups), and
//! [`Docker::shutdown`] after it stopped (any process naming the temp dir, any mount under
//! it, any container cgroup). Removal acts only on this daemon's containers, PID, temp dir
//! and cgroup parent.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::Docker;
use crate::process::poll;
use crate::system;

/// How long dockerd gets to stop on SIGTERM (it stops its containerd first).
const STOP_GRACE: Duration = Duration::from_secs(20);

fn is_shim_or_guest(argv0: &str) -> bool {
    Path::new(argv0)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("containerd-shim"))
}

impl Docker {
    /// The `/`-terminated temp dir, so no other dir's name matches it as a prefix.
    fn dir_needle(&self) -> String {
        format!("{}/", self.dir.display())
    }

    /// Everything a finished test may not leave in the running daemon; empty when clean.
    ///
    /// # Errors
    /// When docker or ctr fails.
    pub fn leftovers(&self) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let ps = self.docker(["ps", "-a", "--format", "{{.ID}} {{.Image}} {{.Status}}"])?;
        ps.success()?;
        found.extend(ps.stdout.lines().map(|l| format!("docker container {l}")));
        for what in ["tasks", "containers"] {
            let out = crate::process::run_with_timeout(
                self.ctr_command().args([what, "ls", "-q"]),
                super::DOCKER_TIMEOUT,
            )?;
            out.success()?;
            found.extend(
                out.stdout
                    .split_whitespace()
                    .map(|id| format!("containerd {what}: {id}")),
            );
        }
        let sock = self.containerd_socket().display().to_string();
        for p in system::procs_mentioning(&sock) {
            if p.argv.first().is_some_and(|a| is_shim_or_guest(a)) {
                found.push(format!("process {}: {}", p.pid, p.argv.join(" ")));
            }
        }
        for m in system::mounts_under(&self.dir) {
            if !self.idle_mounts.contains(&m) {
                found.push(format!("mount {}", m.display()));
            }
        }
        for c in system::cgroup_children(&self.cgroup_parent) {
            found.push(format!("cgroup {}", c.display()));
        }
        Ok(found)
    }

    /// Waits (up to 10 s: shims exit asynchronously) until [`Docker::leftovers`] is empty.
    ///
    /// # Errors
    /// Listing what is left, with dockerd's log tail.
    pub fn assert_clean(&self) -> Result<()> {
        let mut last = Vec::new();
        let clean = poll("a clean dockerd", Duration::from_secs(10), || {
            last = self.leftovers()?;
            Ok(last.is_empty().then_some(()))
        });
        if clean.is_err() {
            bail!(
                "left behind after the test:\n  {}\ndockerd log tail:\n{}",
                last.join("\n  "),
                self.log_tail(30)
            );
        }
        Ok(())
    }

    /// Removes every container (`docker rm -f`), stops dockerd (SIGTERM, SIGKILL after
    /// 20 s), then checks that no process names the temp dir, nothing is mounted under it
    /// and no container cgroup is left. Drop removes whatever it finds anyway.
    ///
    /// # Errors
    /// Listing what is left.
    pub fn shutdown(&mut self) -> Result<()> {
        self.remove_containers();
        let mut problems = Vec::new();
        if !self.stop_daemon() {
            problems.push(format!(
                "dockerd did not stop on SIGTERM within {STOP_GRACE:?}"
            ));
        }
        let needle = self.dir_needle();
        let mut last = Vec::new();
        let _ = poll(
            "the daemon's processes to exit",
            Duration::from_secs(10),
            || {
                last = system::procs_mentioning(&needle)
                    .into_iter()
                    .map(|p| format!("process {}: {}", p.pid, p.argv.join(" ")))
                    .collect();
                Ok(last.is_empty().then_some(()))
            },
        );
        problems.extend(last);
        problems.extend(
            system::mounts_under(&self.dir)
                .into_iter()
                .map(|m| format!("mount {}", m.display())),
        );
        problems.extend(
            system::cgroup_children(&self.cgroup_parent)
                .into_iter()
                .map(|c| format!("cgroup {}", c.display())),
        );
        if !problems.is_empty() {
            bail!(
                "left behind by the stopped dockerd:\n  {}\ndockerd log tail:\n{}",
                problems.join("\n  "),
                self.log_tail(30)
            );
        }
        Ok(())
    }

    /// `docker rm -f` of every container, running or not.
    pub(super) fn remove_containers(&self) {
        let Ok(out) = self.docker(["ps", "-aq"]) else {
            return;
        };
        let ids: Vec<&str> = out.stdout.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = self.docker(["rm", "-f"].into_iter().chain(ids));
        }
    }

    /// Stops dockerd by PID; true when SIGTERM was enough.
    pub(super) fn stop_daemon(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = kill(pid, Signal::SIGKILL);
        let _ = child.wait();
        false
    }

    /// Kills every process naming the temp dir, unmounts everything under it (lazily,
    /// deepest first), removes the daemon's cgroups and the dir; returns what failed.
    pub(super) fn force_cleanup(&self) -> Vec<String> {
        let needle = self.dir_needle();
        for p in system::procs_mentioning(&needle) {
            system::kill_pid(p.pid);
        }
        let _ = poll("killed processes to go", Duration::from_secs(5), || {
            Ok(system::procs_mentioning(&needle).is_empty().then_some(()))
        });
        let mut problems = system::unmount_under(&self.dir);
        problems.extend(system::remove_namespace_cgroups(&self.cgroup_parent));
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            problems.push(format!("remove {}: {e}", self.dir.display()));
        }
        problems
    }
}
