//! Reading a container's resource settings back from cgroupfs, v1 (also hybrid) or v2.
//!
//! ctr places a task at cgroup path `/<namespace>/<id>`. On a v1 or hybrid host the memory
//! and cpu controllers have their own hierarchies (`/sys/fs/cgroup/memory/<ns>/<id>`...); on
//! a pure v2 host everything is in `/sys/fs/cgroup/<ns>/<id>` with v2 file names and units.
//! Read-only.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The cgroup of one container; see the module docs.
#[derive(Debug, Clone)]
pub enum ContainerCgroup {
    /// Per-controller directories, `memory` and `cpu`.
    V1 {
        /// `/sys/fs/cgroup/memory/<ns>/<id>`.
        memory: PathBuf,
        /// `/sys/fs/cgroup/cpu/<ns>/<id>` (often `cpu,cpuacct`).
        cpu: PathBuf,
    },
    /// One unified directory.
    V2(PathBuf),
}

fn read(dir: &Path, file: &str) -> Result<String> {
    let p = dir.join(file);
    Ok(fs::read_to_string(&p)
        .with_context(|| format!("read {}", p.display()))?
        .trim()
        .to_string())
}

fn number<T: std::str::FromStr>(dir: &Path, file: &str) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text = read(dir, file)?;
    text.parse()
        .with_context(|| format!("{}/{file} holds {text:?}", dir.display()))
}

/// The cgroup v2 `cpu.weight` that runc (since 1.3.2), crun and youki's libcgroups derive
/// from OCI `cpu.shares`: a quadratic fit in log space that keeps the ends and the defaults,
/// 2 -> 1, 1024 (v1's default) -> 100 (v2's default), 262144 -> 10000
/// (<https://github.com/opencontainers/cgroups/pull/20>). Older runc mapped linearly, which
/// sent 1024 to 39.
pub fn shares_to_weight(shares: u64) -> u64 {
    const MAX_WEIGHT: u64 = 10_000;
    match shares {
        0 => 0,
        1..=2 => 1,
        262_144.. => MAX_WEIGHT,
        _ => {
            let log = (shares as f64).log2();
            let exponent = (log * log + 125.0 * log) / 612.0 - 7.0 / 34.0;
            (10f64.powf(exponent).ceil() as u64).clamp(1, MAX_WEIGHT)
        }
    }
}

impl ContainerCgroup {
    /// Finds the cgroup of container `id` in namespace `ns`, v1 first.
    ///
    /// # Errors
    /// When neither a v1 memory cgroup nor a v2 one with controllers exists.
    pub fn find(ns: &str, id: &str) -> Result<Self> {
        let base = Path::new("/sys/fs/cgroup");
        let rel = Path::new(ns).join(id);
        let memory = base.join("memory").join(&rel);
        if memory.is_dir() {
            let cpu = ["cpu", "cpu,cpuacct"]
                .iter()
                .map(|c| base.join(c).join(&rel))
                .find(|p| p.is_dir())
                .with_context(|| format!("no v1 cpu cgroup for {}", rel.display()))?;
            return Ok(Self::V1 { memory, cpu });
        }
        let unified = base.join(&rel);
        if unified.join("cgroup.controllers").is_file() {
            return Ok(Self::V2(unified));
        }
        bail!("no cgroup for {} under {}", rel.display(), base.display())
    }

    /// The memory limit in bytes (`memory.limit_in_bytes` / `memory.max`); `None` if unlimited.
    ///
    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn memory_limit(&self) -> Result<Option<u64>> {
        match self {
            Self::V1 { memory, .. } => {
                let v: u64 = number(memory, "memory.limit_in_bytes")?;
                // v1 reports "no limit" as the largest page-aligned i64.
                let unlimited = (i64::MAX as u64) & !0xfff;
                Ok((v < unlimited).then_some(v))
            }
            Self::V2(dir) => {
                let v = read(dir, "memory.max")?;
                if v == "max" {
                    return Ok(None);
                }
                Ok(Some(v.parse()?))
            }
        }
    }

    /// The CFS quota (`None` if unlimited) and period in µs.
    ///
    /// # Errors
    /// When the files cannot be read or parsed.
    pub fn cpu_quota_period(&self) -> Result<(Option<u64>, u64)> {
        match self {
            Self::V1 { cpu, .. } => {
                let quota: i64 = number(cpu, "cpu.cfs_quota_us")?;
                let period: u64 = number(cpu, "cpu.cfs_period_us")?;
                Ok((u64::try_from(quota).ok(), period))
            }
            Self::V2(dir) => {
                let v = read(dir, "cpu.max")?;
                let (quota, period) = v.split_once(' ').unwrap_or((v.as_str(), "100000"));
                Ok((quota.parse().ok(), period.parse()?))
            }
        }
    }

    /// `cpu.shares` (v1), or `cpu.weight` (v2; compare with [`shares_to_weight`]).
    ///
    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn cpu_shares_or_weight(&self) -> Result<u64> {
        match self {
            Self::V1 { cpu, .. } => number(cpu, "cpu.shares"),
            Self::V2(dir) => number(dir, "cpu.weight"),
        }
    }

    /// What [`ContainerCgroup::cpu_shares_or_weight`] should read for OCI `cpu.shares`.
    pub fn expected_shares(&self, shares: u64) -> u64 {
        match self {
            Self::V1 { .. } => shares,
            Self::V2(_) => shares_to_weight(shares),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v2 weight conversion matches runc 1.3.2's and libcgroups': 2 -> 1, 512 -> 59,
    /// 1024 -> 100, 262144 -> 10000.
    #[test]
    fn converts_shares_like_runc() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(256), 35);
        assert_eq!(shares_to_weight(512), 59);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }
}
