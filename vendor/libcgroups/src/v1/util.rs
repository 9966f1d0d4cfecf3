use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::atomic::{AtomicPtr, Ordering};

use pathrs::flags::OpenFlags;
use pathrs::procfs::{ProcfsBase, ProcfsHandle};
use procfs::ProcError;
use procfs::process::MountInfo;

use super::ControllerType;
use super::controller_type::CONTROLLERS;

#[derive(thiserror::Error, Debug)]
pub enum V1MountPointError {
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
    #[error("failed to get mountinfo: {0}")]
    MountInfo(ProcError),
    #[error("could not find mountpoint for {subsystem}")]
    NotFound { subsystem: ControllerType },
    #[error(transparent)]
    Pathrs(#[from] pathrs::error::Error),
}

/// List all cgroup v1 subsystem mount points on the system. This can include unsupported
/// subsystems, comounted controllers and named hierarchies.
pub fn list_subsystem_mount_points() -> Result<Vec<PathBuf>, V1MountPointError> {
    let reader = BufReader::new(ProcfsHandle::new()?.open(
        ProcfsBase::ProcSelf,
        "mountinfo",
        OpenFlags::O_RDONLY | OpenFlags::O_CLOEXEC,
    )?);

    reader
        .lines()
        .map(|lr| {
            lr.map_err(V1MountPointError::Io)
                .and_then(|line| MountInfo::from_line(&line).map_err(V1MountPointError::MountInfo))
        })
        .try_fold(Vec::new(), |mut mount_points, r| {
            r.map(|m| {
                if m.fs_type == "cgroup" {
                    mount_points.push(m.mount_point);
                }
                mount_points
            })
        })
}

/// List the mount points of all currently supported cgroup subsystems.
pub fn list_supported_mount_points() -> Result<HashMap<ControllerType, PathBuf>, V1MountPointError>
{
    let mut mount_paths = HashMap::with_capacity(CONTROLLERS.len());

    for controller in CONTROLLERS {
        if let Ok(mount_point) = get_subsystem_mount_point(controller) {
            mount_paths.insert(controller.to_owned(), mount_point);
        }
    }

    Ok(mount_paths)
}

pub fn get_subsystem_mount_point(subsystem: &ControllerType) -> Result<PathBuf, V1MountPointError> {
    // wasmpod patch: from the process's list of cgroup v1 mounts, read once. Reading and
    // parsing /proc/self/mountinfo for each of a container's twelve subsystems took 1.5 ms of
    // its Create, more on a node with many mounts; cgroup hierarchies are mounted at boot and
    // stay. A listed mount point that is gone (only the one asked for is checked: checking all
    // of them on each call was 140 stat calls per Create) makes this call read the list afresh;
    // a subsystem the list lacks (not mounted on this node) is not found, without a new read.
    let remembered = match remembered_mounts() {
        Some(mounts) => mounts,
        None => {
            remember_mounts(list_subsystem_mount_points()?);
            remembered_mounts().unwrap_or_default()
        }
    };
    match find_subsystem_mount_point(remembered, subsystem) {
        Ok(mount_point) if !mount_point.exists() => {
            find_subsystem_mount_point(&list_subsystem_mount_points()?, subsystem)
        }
        found => found,
    }
}

fn find_subsystem_mount_point(
    mounts: &[PathBuf],
    subsystem: &ControllerType,
) -> Result<PathBuf, V1MountPointError> {
    let subsystem_name = subsystem.to_string();
    mounts
        .iter()
        .find(|mount_point| {
            // Some systems mount net_prio and net_cls in the same directory
            // other systems mount them in their own directories. This
            // should handle both cases.
            match subsystem_name.as_str() {
                "net_cls" => ["net_cls,net_prio", "net_prio,net_cls", "net_cls"]
                    .iter()
                    .any(|s| mount_point.ends_with(s)),
                "net_prio" => ["net_cls,net_prio", "net_prio,net_cls", "net_prio"]
                    .iter()
                    .any(|s| mount_point.ends_with(s)),
                "cpu" => ["cpu,cpuacct", "cpu"]
                    .iter()
                    .any(|s| mount_point.ends_with(s)),
                "cpuacct" => ["cpu,cpuacct", "cpuacct"]
                    .iter()
                    .any(|s| mount_point.ends_with(s)),
                _ => mount_point.ends_with(&subsystem_name),
            }
        })
        .cloned()
        .ok_or(V1MountPointError::NotFound {
            subsystem: *subsystem,
        })
}

/// wasmpod patch: the cgroup v1 mount points of this process, once read (see
/// `get_subsystem_mount_point`). Set once and never freed, without a lock: processes fork
/// from threads of this one (containers' builders), and a lock held by another thread at
/// that instant would stay held in the child for ever.
static CGROUP_MOUNTS: AtomicPtr<Vec<PathBuf>> = AtomicPtr::new(std::ptr::null_mut());

fn remembered_mounts() -> Option<&'static [PathBuf]> {
    // SAFETY: a non-null pointer is a leaked Box that is never freed or changed.
    unsafe { CGROUP_MOUNTS.load(Ordering::Acquire).as_ref() }.map(Vec::as_slice)
}

fn remember_mounts(mounts: Vec<PathBuf>) {
    let new = Box::into_raw(Box::new(mounts));
    if CGROUP_MOUNTS
        .compare_exchange(std::ptr::null_mut(), new, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // Another thread remembered them first.
        // SAFETY: `new` came from Box::into_raw above and was not published.
        drop(unsafe { Box::from_raw(new) });
    }
}
