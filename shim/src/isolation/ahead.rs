//! What a new shim makes for its first container while containerd connects: its network
//! namespace (`netns_ahead`) and its cgroup directories (`cgroup_ahead`), from one read of
//! its spec (`first_spec`). The container's Create takes them; when its bundle goes without
//! one (containerd gave up on the shim), [`Ahead::end`] lets them go, so that an abandoned
//! shim leaves no cgroup behind.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{CgroupAhead, FirstSpec, MadeCgroup, NetnsAhead};

/// The offers for one bundle's container; clones share them.
#[derive(Clone)]
pub struct Ahead {
    netns: Arc<NetnsAhead>,
    cgroup: Arc<CgroupAhead>,
}

impl Ahead {
    /// Starts making both for the container of `spec`, where its spec allows.
    #[must_use]
    pub fn start(spec: &Arc<FirstSpec>) -> Self {
        Self {
            netns: Arc::new(NetnsAhead::start(spec.clone())),
            cgroup: Arc::new(CgroupAhead::start(spec.clone())),
        }
    }

    /// What was made for `bundle`'s container (see [`NetnsAhead::take`] and
    /// [`CgroupAhead::take`]): the first call ends the offers, whatever the bundle.
    pub fn take(&self, bundle: &Path) -> (Option<OwnedFd>, Option<MadeCgroup>) {
        (self.netns.take(bundle), self.cgroup.take(bundle))
    }

    /// Ends the offers: what was made and not taken is let go (cgroup directories removed).
    pub fn end(&self) {
        let _ = self.take(&PathBuf::new());
    }
}
