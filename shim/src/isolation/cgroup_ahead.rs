//! A new shim's first container gets its cgroup directories made before its Create arrives.
//!
//! A container's cgroup is a directory in each of the node's cgroup v1 hierarchies (eight
//! here), and libcontainer's intermediate process made them in the middle of Create. The
//! memory one costs the most, and more on a node that has made many: the kernel keeps a
//! removed memory cgroup until its last page is freed. As with the network namespace
//! (`netns_ahead`), a new shim knows its first container's spec while containerd connects, so
//! a thread of its own makes the directories then. libcontainer finds them made, puts the
//! init in them as before, and removes them with the container.
//!
//! What the thread made belongs to the container only once it is built ([`MadeCgroup::keep`]).
//! A Create that fails, or that comes for another bundle, removes it: only the directories
//! this shim made, deepest first, and only while empty (the kernel refuses to remove a cgroup
//! that holds a process or a child). A shim that dies before its Create ends leaves them to
//! the `delete` action containerd runs after it ([`remove_left`]). cgroup v1 only: on a unified host the directory is one,
//! and its controllers are enabled from the parents down, which is libcontainer's to do.

use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use log::debug;
use oci_spec::runtime::Spec;

use super::cgroup::Layout;
use super::cgroup_path::cgroupfs_path;
use super::FirstSpec;

/// The directories being made, or made, for the container of one bundle.
pub struct CgroupAhead {
    bundle: PathBuf,
    making: Mutex<Option<JoinHandle<Vec<PathBuf>>>>,
}

impl CgroupAhead {
    /// Starts making the cgroup directories of the container of `spec`, where it names its
    /// cgroup (the container's id is not known yet) and the node is cgroup v1.
    #[must_use]
    pub fn start(spec: Arc<FirstSpec>) -> Self {
        let bundle = spec.bundle().to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("cgroup-ahead".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                if Layout::detect() != Layout::V1 {
                    return Vec::new();
                }
                let Some(path) = spec.get().and_then(named_path) else {
                    return Vec::new();
                };
                make_all(&v1_mount_points(), &path)
            });
        let making = spawned
            .map_err(|e| debug!("no cgroup made ahead: {e}"))
            .ok();
        Self {
            bundle,
            making: Mutex::new(making),
        }
    }

    /// What is made for `bundle`'s container, without waiting for it; None when nothing is
    /// being made, or it was taken already. Whatever the bundle, the first call ends the
    /// offer: directories made for another bundle are removed here.
    pub fn take(&self, bundle: &Path) -> Option<MadeCgroup> {
        let making = self
            .making
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()?;
        let made = MadeCgroup {
            making: Some(making),
            dirs: Vec::new(),
        };
        (bundle == self.bundle).then_some(made)
    }
}

/// Cgroup directories made ahead for one container: removed when dropped, unless kept.
pub struct MadeCgroup {
    making: Option<JoinHandle<Vec<PathBuf>>>,
    dirs: Vec<PathBuf>,
}

impl MadeCgroup {
    /// Waits until the directories are made, so that the build finds them.
    pub fn wait(&mut self) {
        if let Some(making) = self.making.take() {
            self.dirs = making.join().unwrap_or_default();
        }
    }

    /// The container is built: its directories are its own, removed when it is deleted.
    pub fn keep(mut self) {
        self.wait();
        self.dirs.clear();
    }
}

impl Drop for MadeCgroup {
    fn drop(&mut self) {
        self.wait();
        remove_made(&self.dirs);
    }
}

/// Removes what a shim that died before its container was built may have left of the
/// directories made ahead for `spec`'s container: the last level of its cgroup path in each
/// hierarchy, while empty. A built container's are libcontainer's to remove.
pub fn remove_left(spec: &Spec) {
    if Layout::detect() != Layout::V1 {
        return;
    }
    let Some(path) = named_path(spec) else {
        return;
    };
    let relative = path.strip_prefix("/").unwrap_or(&path);
    for mount_point in v1_mount_points() {
        let dir = mount_point.join(relative);
        if dir.is_dir() {
            remove_made(&[dir]);
        }
    }
}

/// The cgroupfs path `spec` names, when it names one made of plain components.
fn named_path(spec: &Spec) -> Option<PathBuf> {
    let raw = spec.linux().as_ref()?.cgroups_path().clone()?;
    let raw = raw.to_str()?;
    if raw.trim().is_empty() {
        return None;
    }
    let path = cgroupfs_path(Some(raw), "");
    let plain = path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    let below_root = path.components().any(|c| matches!(c, Component::Normal(_)));
    (plain && below_root).then_some(path)
}

/// The node's mount points of the cgroup v1 controllers libcontainer puts a container in.
fn v1_mount_points() -> Vec<PathBuf> {
    use libcgroups::v1::{util::get_subsystem_mount_point, CONTROLLERS};
    CONTROLLERS
        .iter()
        .filter_map(|controller| get_subsystem_mount_point(controller).ok())
        .collect()
}

/// Makes `path` (absolute, plain) under each mount point, with its missing parents; returns
/// the directories made here, parents before children.
fn make_all(mount_points: &[PathBuf], path: &Path) -> Vec<PathBuf> {
    let relative = path.strip_prefix("/").unwrap_or(path);
    let mut made = Vec::new();
    for mount_point in mount_points {
        let mut dir = mount_point.clone();
        for component in relative.components() {
            dir.push(component);
            match std::fs::create_dir(&dir) {
                Ok(()) => made.push(dir.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    debug!("cgroup {} not made ahead: {e}", dir.display());
                    break;
                }
            }
        }
    }
    made
}

/// Removes directories `make_all` made, children first; one in use is left alone.
fn remove_made(dirs: &[PathBuf]) {
    for dir in dirs.iter().rev() {
        if let Err(e) = std::fs::remove_dir(dir) {
            debug!("cgroup {} made ahead not removed: {e}", dir.display());
        }
    }
}

#[cfg(test)]
#[path = "cgroup_ahead_tests.rs"]
mod tests;
