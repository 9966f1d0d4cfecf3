//! Preopened directories from `root` and `mounts` of the OCI spec.
//!
//! Owns which mounts a guest can open as WASI preopens and whether they are read-only.
//! No I/O: the one question that needs the filesystem (is this mount a single file?) goes
//! through a caller-supplied closure.
//!
//! Why preopen mounts at all when the rootfs is already preopened as `/`: WASI enforces
//! read-only per preopen, and wasi-libc resolves a guest path through the preopen with the
//! longest matching name. A writable volume under a read-only rootfs is only writable if it
//! has its own preopen; a read-only volume under a writable rootfs is only read-only to the
//! guest if it has its own read-only preopen (the kernel's `ro` flag backs it either way).

use std::path::{Component, Path};

use oci_spec::runtime::Mount;

use super::{host_path, SpecError};
use crate::plan::Preopen;

/// Filesystem types that are kernel interfaces, not data. WASI guests get files, not kernel
/// interfaces, and leaving these out keeps the guest's capability surface small.
const SYSTEM_TYPES: &[&str] = &["proc", "sysfs", "cgroup", "cgroup2", "mqueue", "devpts"];

/// Destinations (and everything below) that hold kernel or device interfaces whatever their
/// mount type, e.g. the `/dev` and `/dev/shm` tmpfs of every default spec.
const SYSTEM_DESTINATIONS: &[&str] = &["/proc", "/sys", "/dev"];

/// The preopens of a container: the rootfs as guest `/`, then every bind mount and every
/// non-system tmpfs at its destination, in spec order.
///
/// - `rootfs_host` is the rootfs as the engine's process sees it (`/` after `pivot_root`); a
///   mount's host path is `rootfs_host` joined with its destination, because the mount is
///   already in place there when the engine opens it.
/// - `root_read_only` is `root.readonly`; it applies to the rootfs preopen only, since the
///   runtime mounts volumes with their own flags.
/// - A mount is read-only when its options say so (`ro` or `rro`; the last of `ro`/`rw` wins,
///   as with `mount(8)`).
/// - A later mount at a destination shadows earlier ones at or below it (as the kernel's mount
///   stacking does), so those earlier preopens are dropped.
/// - `is_file` is asked about the host path of each eligible mount; a mount of a single file
///   (Kubernetes' `/etc/hosts`, `/etc/resolv.conf`) cannot be a preopen, and the guest still
///   reaches it through the rootfs preopen. Call this after the mounts are in place.
///
/// # Errors
/// [`SpecError::MountDestinationNotAbsolute`] or [`SpecError::MountDestinationHasParent`]
/// for any mount, eligible or not: such a spec is malformed.
pub fn preopens(
    mounts: &[Mount],
    rootfs_host: &Path,
    root_read_only: bool,
    is_file: impl Fn(&Path) -> bool,
) -> Result<Vec<Preopen>, SpecError> {
    let mut preopens = vec![Preopen {
        host: rootfs_host.to_owned(),
        guest: "/".to_owned(),
        read_only: root_read_only,
    }];
    for mount in mounts {
        let guest = guest_destination(mount.destination())?;
        preopens.retain(|earlier| !Path::new(&earlier.guest).starts_with(&guest));
        if !is_preopenable(mount, &guest) {
            continue;
        }
        let host = host_path(rootfs_host, Path::new(&guest));
        if is_file(&host) {
            continue;
        }
        preopens.push(Preopen {
            host,
            guest,
            read_only: is_read_only(mount.options().as_deref().unwrap_or_default()),
        });
    }
    Ok(preopens)
}

/// The spec's mounts that a wasm guest's container still needs made: every mount but the
/// kernel's filesystems the guest never sees.
///
/// A guest reaches files only through its preopens, and none is ever made of `/proc`, `/sys`
/// or what lies below `/dev` (see [`preopens`]). Yet each `proc`, `sysfs`, `mqueue` and tmpfs
/// mount is a superblock of its own per container, and so are the read-only tmpfs mounts
/// that mask the directories of `/proc` and `/sys` (`linux.maskedPaths`). The kernel sizes
/// every memory cgroup's shrinker table by the most superblocks the node has held at once:
/// ten superblocks per container made each container's memory cgroup cost 0.78 MB of kernel
/// memory at 5,000 containers, and twice that at 10,000.
///
/// Left out: everything at or below `/proc` and `/sys` (binds too: nothing there is the
/// guest's), and mounts of types that are kernel interfaces (`proc`, `sysfs`, `cgroup`,
/// `cgroup2`, `mqueue`) wherever they are, and tmpfs mounts below `/dev` (`/dev/shm`). Kept:
/// `/dev` itself (libcontainer makes the device nodes there, and masks with `/dev/null`),
/// `devpts` (a terminal exec's console is made there), every bind elsewhere (Kubernetes'
/// `/dev/termination-log` among them) and every other mount.
pub fn made_for_guest(mounts: &[Mount]) -> Vec<Mount> {
    mounts
        .iter()
        .filter(|mount| {
            let typ = mount.typ().as_deref().unwrap_or_default();
            let destination = mount.destination();
            let under = |dir: &str| destination.starts_with(dir);
            let strictly_under_dev = under("/dev") && destination != Path::new("/dev");
            let unseen = in_proc_or_sys(destination)
                || (SYSTEM_TYPES.contains(&typ) && typ != "devpts")
                || (typ == "tmpfs" && strictly_under_dev);
            !unseen
        })
        .cloned()
        .collect()
}

/// The paths of `linux.maskedPaths` or `linux.readonlyPaths` that a guest's container still
/// has: none at or below `/proc` and `/sys`, which [`made_for_guest`] leaves unmounted, so
/// there is nothing there to mask or make read-only (libcontainer tried a bind mount of each
/// and skipped it on `ENOENT`).
pub fn paths_left_for_guest(paths: &[String]) -> Vec<String> {
    paths
        .iter()
        .filter(|path| !in_proc_or_sys(Path::new(path.as_str())))
        .cloned()
        .collect()
}

/// At or below `/proc` or `/sys`, the trees a guest's container is made without.
fn in_proc_or_sys(path: &Path) -> bool {
    path.starts_with("/proc") || path.starts_with("/sys")
}

/// The destination as a clean guest path (`/a/b`): absolute, `.` and repeated or trailing
/// slashes removed, so `/proc/` and `//data` are recognised like `/proc` and `/data`.
fn guest_destination(destination: &Path) -> Result<String, SpecError> {
    if !destination.is_absolute() {
        return Err(SpecError::MountDestinationNotAbsolute {
            destination: destination.to_owned(),
        });
    }
    let mut guest = String::new();
    for component in destination.components() {
        match component {
            Component::Normal(part) => {
                guest.push('/');
                // Specs come from JSON, so destinations are UTF-8 in practice; the lossy form
                // only affects the name the guest sees, never the host path.
                guest.push_str(&part.to_string_lossy());
            }
            // `..` cannot be folded without I/O (symlinks), and the runtime resolves it inside
            // the rootfs differently from a lexical fold, so refuse it.
            Component::ParentDir => {
                return Err(SpecError::MountDestinationHasParent {
                    destination: destination.to_owned(),
                })
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if guest.is_empty() {
        guest.push('/');
    }
    Ok(guest)
}

/// Bind mounts and tmpfs outside the system destinations; nothing of a system type.
fn is_preopenable(mount: &Mount, guest: &str) -> bool {
    let typ = mount.typ().as_deref().unwrap_or_default();
    if SYSTEM_TYPES.contains(&typ) {
        return false;
    }
    if SYSTEM_DESTINATIONS
        .iter()
        .any(|system| Path::new(guest).starts_with(system))
    {
        return false;
    }
    let options = mount.options().as_deref().unwrap_or_default();
    let is_bind = typ == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
    is_bind || typ == "tmpfs"
}

/// Read-only per the mount options: the last of `ro`/`rro`/`rw` decides, default writable.
fn is_read_only(options: &[String]) -> bool {
    options
        .iter()
        .rev()
        .find_map(|option| match option.as_str() {
            "ro" | "rro" => Some(true),
            "rw" => Some(false),
            _ => None,
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests;
