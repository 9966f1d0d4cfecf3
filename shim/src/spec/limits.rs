//! Network access and engine-side limits from the `linux` section of the OCI spec.
//!
//! Owns the socket rule ([`network_access`]) and the guest memory cap policy
//! ([`guest_memory_cap`]). Pure functions, no I/O.

use oci_spec::runtime::{Linux, LinuxNamespaceType};

use crate::plan::{GuestLimits, NetworkAccess};

/// Headroom kept between the guest's linear memory and the cgroup limit, at most.
pub const MEMORY_HEADROOM_BYTES: u64 = 16 * 1024 * 1024;

/// Sockets only when the spec gives the container a network namespace of its own (created, or
/// joined by path such as a pod sandbox's).
///
/// Without a `network` entry in `linux.namespaces` the container shares the node's network,
/// and a wasm guest must never get the node's network by accident: such a spec gets
/// [`NetworkAccess::Denied`], no sockets at all. A spec without a `linux` section is treated
/// the same way.
pub fn network_access(linux: Option<&Linux>) -> NetworkAccess {
    let has_netns = linux
        .and_then(|linux| linux.namespaces().as_deref())
        .unwrap_or_default()
        .iter()
        .any(|ns| ns.typ() == LinuxNamespaceType::Network);
    if has_netns {
        NetworkAccess::ContainerNamespace
    } else {
        NetworkAccess::Denied
    }
}

/// Limits for the engine from `linux.resources`: a memory cap when
/// `linux.resources.memory.limit` is positive (`-1` and `0` mean unlimited), see
/// [`guest_memory_cap`].
pub fn guest_limits(linux: Option<&Linux>) -> GuestLimits {
    let limit = linux
        .and_then(|linux| linux.resources().as_ref())
        .and_then(|resources| resources.memory().as_ref())
        .and_then(|memory| memory.limit())
        .and_then(|limit| u64::try_from(limit).ok())
        .filter(|limit| *limit > 0);
    GuestLimits {
        max_memory_bytes: limit.map(guest_memory_cap),
    }
}

/// The guest's linear memory cap for a cgroup memory limit of `cgroup_limit` bytes.
///
/// The engine, the shim's own allocations and the kernel's page cache share the cgroup with
/// the guest. Capping the guest a little below the limit makes an over-eager guest see
/// `memory.grow` fail (which it can handle) instead of the whole container being OOM-killed.
///
/// Policy: `limit - min(16 MiB, limit / 8)`, never below `limit / 2`. So large limits lose a
/// fixed 16 MiB and small ones lose an eighth. With these constants the floor never binds; it
/// is there so that a future, larger headroom cannot starve small containers.
pub fn guest_memory_cap(cgroup_limit: u64) -> u64 {
    let headroom = MEMORY_HEADROOM_BYTES.min(cgroup_limit / 8);
    cgroup_limit.saturating_sub(headroom).max(cgroup_limit / 2)
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{
        LinuxBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxResourcesBuilder,
    };

    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn linux_with_namespaces(types: &[LinuxNamespaceType], path: Option<&str>) -> Linux {
        let namespaces: Vec<_> = types
            .iter()
            .map(|typ| {
                let builder = LinuxNamespaceBuilder::default().typ(*typ);
                match path {
                    Some(path) => builder.path(path),
                    None => builder,
                }
                .build()
                .expect("valid namespace")
            })
            .collect();
        LinuxBuilder::default()
            .namespaces(namespaces)
            .build()
            .expect("valid linux")
    }

    fn linux_with_memory(limit: Option<i64>) -> Linux {
        let mut memory = LinuxMemoryBuilder::default();
        if let Some(limit) = limit {
            memory = memory.limit(limit);
        }
        let resources = LinuxResourcesBuilder::default()
            .memory(memory.build().expect("valid memory"))
            .build()
            .expect("valid resources");
        LinuxBuilder::default()
            .resources(resources)
            .build()
            .expect("valid linux")
    }

    #[test]
    fn own_network_namespace_allows_sockets() {
        let linux = linux_with_namespaces(&[LinuxNamespaceType::Network], None);
        assert_eq!(
            network_access(Some(&linux)),
            NetworkAccess::ContainerNamespace
        );
    }

    #[test]
    fn joined_network_namespace_allows_sockets() {
        let types = [LinuxNamespaceType::Pid, LinuxNamespaceType::Network];
        let linux = linux_with_namespaces(&types, Some("/var/run/netns/cni-1234"));
        assert_eq!(
            network_access(Some(&linux)),
            NetworkAccess::ContainerNamespace
        );
    }

    #[test]
    fn host_network_denies_sockets() {
        let types = [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Uts,
        ];
        let linux = linux_with_namespaces(&types, None);
        assert_eq!(network_access(Some(&linux)), NetworkAccess::Denied);
    }

    #[test]
    fn no_namespaces_or_no_linux_denies_sockets() {
        // The builder fills unset fields from `Linux::default()`, which has namespaces.
        let mut linux = LinuxBuilder::default().build().expect("valid linux");
        linux.set_namespaces(None);
        assert_eq!(network_access(Some(&linux)), NetworkAccess::Denied);
        linux.set_namespaces(Some(Vec::new()));
        assert_eq!(network_access(Some(&linux)), NetworkAccess::Denied);
        assert_eq!(network_access(None), NetworkAccess::Denied);
    }

    #[test]
    fn default_linux_has_a_network_namespace() {
        assert_eq!(
            network_access(Some(&Linux::default())),
            NetworkAccess::ContainerNamespace
        );
    }

    #[test]
    fn large_limit_loses_fixed_headroom() {
        assert_eq!(guest_memory_cap(1024 * MIB), 1008 * MIB);
        assert_eq!(guest_memory_cap(128 * MIB), 112 * MIB);
    }

    #[test]
    fn small_limit_loses_an_eighth() {
        assert_eq!(guest_memory_cap(64 * MIB), 56 * MIB);
        assert_eq!(guest_memory_cap(8 * MIB), 7 * MIB);
        assert_eq!(guest_memory_cap(800), 700);
    }

    #[test]
    fn cap_never_below_half_and_never_above_limit() {
        for limit in [
            0,
            1,
            2,
            7,
            8,
            9,
            4096,
            16 * MIB,
            200 * MIB,
            u64::MAX / 2,
            u64::MAX,
        ] {
            let cap = guest_memory_cap(limit);
            assert!(cap <= limit, "cap {cap} above limit {limit}");
            assert!(cap >= limit / 2, "cap {cap} below half of {limit}");
        }
    }

    #[test]
    fn memory_limit_sets_the_cap() {
        let limits = guest_limits(Some(&linux_with_memory(Some(256 * 1024 * 1024))));
        assert_eq!(limits.max_memory_bytes, Some(240 * MIB));
    }

    #[test]
    fn unlimited_memory_sets_no_cap() {
        for limit in [Some(-1), Some(0), None] {
            let limits = guest_limits(Some(&linux_with_memory(limit)));
            assert_eq!(limits, GuestLimits::default(), "limit {limit:?}");
        }
        assert_eq!(guest_limits(None), GuestLimits::default());
        assert_eq!(
            guest_limits(Some(&Linux::default())),
            GuestLimits::default()
        );
    }
}
