//! Operations on a container's cgroup: freeze, stats, pids, limits, and why a process died.
//!
//! Goes through libcgroups, which picks the v1 manager on legacy and hybrid hosts (this
//! project's CI machines are v1-hybrid) and the v2 manager on unified ones.

use std::path::{Path, PathBuf};

use libcgroups::common::{
    create_cgroup_manager, get_cgroup_setup, AnyCgroupManager, CgroupConfig, CgroupManager,
    CgroupSetup, ControllerOpt, FreezerState,
};
use oci_spec::runtime::LinuxResources;

use super::{chain, IsolationError};

/// Resource usage as libcgroups reads it.
pub type CgroupStats = libcgroups::stats::Stats;

/// Which cgroup API the metrics follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Per-controller hierarchies (legacy or hybrid).
    V1,
    /// The unified hierarchy.
    V2,
}

impl Layout {
    /// The layout of this host.
    pub fn detect() -> Layout {
        match get_cgroup_setup() {
            Ok(CgroupSetup::Unified) => Layout::V2,
            _ => Layout::V1,
        }
    }
}

/// Reads the host's cgroup v1 mount points into libcgroups' process-wide list (a wasmpod
/// patch, `vendor/README.md`) while the shim starts, so that no container's Create reads
/// them and every builder process inherits them. One read of mountinfo; on a unified host
/// the list is empty and nothing uses it.
pub fn remember_mount_points() {
    let _ = libcgroups::v1::util::get_subsystem_mount_point(&libcgroups::v1::ControllerType::Cpu);
}

/// A container's cgroup.
#[derive(Debug, Clone)]
pub struct Cgroup {
    path: PathBuf,
    id: String,
}

impl Cgroup {
    /// The cgroup at `path` (a cgroupfs path) for container `id`.
    pub fn new(path: PathBuf, id: &str) -> Self {
        Self {
            path,
            id: id.to_string(),
        }
    }

    /// The cgroupfs path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn manager(&self, action: &'static str) -> Result<AnyCgroupManager, IsolationError> {
        create_cgroup_manager(CgroupConfig {
            cgroup_path: self.path.clone(),
            systemd_cgroup: false,
            container_name: self.id.clone(),
        })
        .map_err(|e| self.error(action, &e))
    }

    fn error(&self, action: &'static str, e: &dyn std::error::Error) -> IsolationError {
        IsolationError::Cgroup {
            path: self.path.clone(),
            action,
            reason: chain(e),
        }
    }

    /// Freezes or thaws every process of the container.
    ///
    /// # Errors
    /// The freezer could not be written.
    pub fn freeze(&self, frozen: bool) -> Result<(), IsolationError> {
        let action = if frozen { "pause" } else { "resume" };
        let state = if frozen {
            FreezerState::Frozen
        } else {
            FreezerState::Thawed
        };
        self.manager(action)?
            .freeze(state)
            .map_err(|e| self.error(action, &e))
    }

    /// Current usage.
    ///
    /// # Errors
    /// The cgroup could not be read.
    pub fn stats(&self) -> Result<CgroupStats, IsolationError> {
        self.manager("stats")?
            .stats()
            .map_err(|e| self.error("stats", &e))
    }

    /// Pids of every process in the cgroup.
    ///
    /// # Errors
    /// The cgroup could not be read.
    pub fn pids(&self) -> Result<Vec<i32>, IsolationError> {
        let pids = self
            .manager("pids")?
            .get_all_pids()
            .map_err(|e| self.error("pids", &e))?;
        Ok(pids.into_iter().map(|p| p.as_raw()).collect())
    }

    /// Applies new limits.
    ///
    /// # Errors
    /// The kernel refused a value.
    pub fn update(&self, resources: &LinuxResources) -> Result<(), IsolationError> {
        let opt = ControllerOpt {
            resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        };
        self.manager("update")?
            .apply(&opt)
            .map_err(|e| self.error("update", &e))
    }

    /// True when the kernel's OOM killer has killed a process of this cgroup.
    pub fn oom_killed(&self) -> bool {
        let relative = self.path.strip_prefix("/").unwrap_or(&self.path);
        let counters = [
            (
                Path::new("/sys/fs/cgroup/memory")
                    .join(relative)
                    .join("memory.oom_control"),
                "oom_kill ",
            ),
            (
                Path::new("/sys/fs/cgroup")
                    .join(relative)
                    .join("memory.events"),
                "oom_kill ",
            ),
            (
                Path::new("/sys/fs/cgroup/unified")
                    .join(relative)
                    .join("memory.events"),
                "oom_kill ",
            ),
        ];
        counters.iter().any(|(file, key)| {
            std::fs::read_to_string(file).is_ok_and(|text| {
                text.lines().any(|l| {
                    l.strip_prefix(key)
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .unwrap_or(0)
                        > 0
                })
            })
        })
    }

    /// The memory limit in bytes, when one is set.
    pub fn memory_limit(&self) -> Option<u64> {
        let limit = self.stats().ok()?.memory.memory.limit;
        (limit > 0 && limit < i64::MAX as u64 / 2).then_some(limit)
    }
}
