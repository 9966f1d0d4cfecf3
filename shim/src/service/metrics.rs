//! Container metrics in containerd's shapes: `io.containerd.cgroups.v1.Metrics` on v1 and hybrid
//! hosts, `io.containerd.cgroups.v2.Metrics` on unified ones (what `ctr task metrics`, the CRI
//! and `docker stats` decode).

use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::well_known_types::any::Any;

use crate::error::{Error, Result};
use crate::isolation::{CgroupStats, Layout};

/// Packs cgroup stats as the Any that containerd expects for this host's layout.
///
/// # Errors
/// Protobuf encoding failed.
pub fn to_any(layout: Layout, stats: &CgroupStats) -> Result<Any> {
    // Packed without protobuf's reflection (see `pack_in`).
    let packed = match layout {
        Layout::V1 => super::events::pack_in("io.containerd.cgroups.v1", &v1_metrics(stats)),
        Layout::V2 => super::events::pack_in("io.containerd.cgroups.v2", &v2_metrics(stats)),
    };
    packed.map_err(|e| Error::io("encoding metrics", std::io::Error::other(e.to_string())))
}

fn stat(stats: &CgroupStats, key: &str) -> u64 {
    stats.memory.stats.get(key).copied().unwrap_or(0)
}

fn v1_metrics(s: &CgroupStats) -> v1::Metrics {
    let entry = |d: &libcgroups::stats::MemoryData| v1::MemoryEntry {
        limit: d.limit,
        usage: d.usage,
        max: d.max_usage,
        failcnt: d.fail_count,
        ..Default::default()
    };
    v1::Metrics {
        pids: Some(v1::PidsStat {
            current: s.pids.current,
            limit: s.pids.limit,
            ..Default::default()
        })
        .into(),
        cpu: Some(v1::CPUStat {
            usage: Some(v1::CPUUsage {
                total: s.cpu.usage.usage_total,
                kernel: s.cpu.usage.usage_kernel,
                user: s.cpu.usage.usage_user,
                per_cpu: s.cpu.usage.per_core_usage_total.clone(),
                ..Default::default()
            })
            .into(),
            throttling: Some(v1::Throttle {
                periods: s.cpu.throttling.periods,
                throttled_periods: s.cpu.throttling.throttled_periods,
                throttled_time: s.cpu.throttling.throttled_time,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into(),
        memory: Some(v1::MemoryStat {
            cache: s.memory.cache,
            rss: stat(s, "rss"),
            rss_huge: stat(s, "rss_huge"),
            mapped_file: stat(s, "mapped_file"),
            dirty: stat(s, "dirty"),
            writeback: stat(s, "writeback"),
            pg_pg_in: stat(s, "pgpgin"),
            pg_pg_out: stat(s, "pgpgout"),
            pg_fault: stat(s, "pgfault"),
            pg_maj_fault: stat(s, "pgmajfault"),
            inactive_anon: stat(s, "inactive_anon"),
            active_anon: stat(s, "active_anon"),
            inactive_file: stat(s, "inactive_file"),
            active_file: stat(s, "active_file"),
            unevictable: stat(s, "unevictable"),
            hierarchical_memory_limit: stat(s, "hierarchical_memory_limit"),
            hierarchical_swap_limit: stat(s, "hierarchical_memsw_limit"),
            total_cache: stat(s, "total_cache"),
            total_rss: stat(s, "total_rss"),
            total_rss_huge: stat(s, "total_rss_huge"),
            total_mapped_file: stat(s, "total_mapped_file"),
            total_dirty: stat(s, "total_dirty"),
            total_writeback: stat(s, "total_writeback"),
            total_pg_pg_in: stat(s, "total_pgpgin"),
            total_pg_pg_out: stat(s, "total_pgpgout"),
            total_pg_fault: stat(s, "total_pgfault"),
            total_pg_maj_fault: stat(s, "total_pgmajfault"),
            total_inactive_anon: stat(s, "total_inactive_anon"),
            total_active_anon: stat(s, "total_active_anon"),
            total_inactive_file: stat(s, "total_inactive_file"),
            total_active_file: stat(s, "total_active_file"),
            total_unevictable: stat(s, "total_unevictable"),
            usage: Some(entry(&s.memory.memory)).into(),
            swap: Some(entry(&s.memory.memswap)).into(),
            kernel: Some(entry(&s.memory.kernel)).into(),
            kernel_tcp: Some(entry(&s.memory.kernel_tcp)).into(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

fn v2_metrics(s: &CgroupStats) -> v2::Metrics {
    // libcgroups copies v2's cpu.stat as is: the values are already microseconds.
    let usec = |us: u64| us;
    v2::Metrics {
        pids: Some(v2::PidsStat {
            current: s.pids.current,
            limit: s.pids.limit,
            ..Default::default()
        })
        .into(),
        cpu: Some(v2::CPUStat {
            usage_usec: usec(s.cpu.usage.usage_total),
            user_usec: usec(s.cpu.usage.usage_user),
            system_usec: usec(s.cpu.usage.usage_kernel),
            nr_periods: s.cpu.throttling.periods,
            nr_throttled: s.cpu.throttling.throttled_periods,
            throttled_usec: usec(s.cpu.throttling.throttled_time),
            ..Default::default()
        })
        .into(),
        memory: Some(v2::MemoryStat {
            anon: stat(s, "anon"),
            file: stat(s, "file"),
            kernel_stack: stat(s, "kernel_stack"),
            slab: stat(s, "slab"),
            sock: stat(s, "sock"),
            shmem: stat(s, "shmem"),
            file_mapped: stat(s, "file_mapped"),
            file_dirty: stat(s, "file_dirty"),
            file_writeback: stat(s, "file_writeback"),
            inactive_anon: stat(s, "inactive_anon"),
            active_anon: stat(s, "active_anon"),
            usage: s.memory.memory.usage,
            usage_limit: s.memory.memory.limit,
            swap_usage: s.memory.memswap.usage,
            swap_limit: s.memory.memswap.limit,
            max_usage: s.memory.memory.max_usage,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use containerd_shim::protos::protobuf::Message;

    use super::*;

    fn sample() -> CgroupStats {
        let mut s = CgroupStats::default();
        s.cpu.usage.usage_total = 5_000_000;
        s.memory.memory.usage = 3 << 20;
        s.memory.memory.limit = 64 << 20;
        s.memory.stats.insert("total_rss".into(), 1 << 20);
        s.pids.current = 1;
        s
    }

    #[test]
    fn v1_metrics_carry_cpu_memory_and_pids() {
        let any = to_any(Layout::V1, &sample()).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        let m = v1::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.cpu.usage.total, 5_000_000);
        assert_eq!(m.memory.usage.usage, 3 << 20);
        assert_eq!(m.memory.usage.limit, 64 << 20);
        assert_eq!(m.memory.total_rss, 1 << 20);
        assert_eq!(m.pids.current, 1);
    }

    #[test]
    fn v2_metrics_keep_cpu_stat_microseconds() {
        let any = to_any(Layout::V2, &sample()).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        let m = v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.cpu.usage_usec, 5_000_000);
        assert_eq!(m.memory.usage, 3 << 20);
    }
}
