//! What a new shim makes for its first container while containerd connects: its network
//! namespace (`netns_ahead`) and its cgroup directories (`cgroup_ahead`), from one read of
//! its spec (`first_spec`), which the container's Create then takes too instead of reading it
//! again. The container's Create takes them; when its bundle goes without one (containerd
//! gave up on the shim), [`Ahead::end`] lets them go, so that an abandoned shim leaves no
//! cgroup behind.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use oci_spec::runtime::Spec;

use super::{CgroupAhead, FirstSpec, MadeCgroup, NetnsAhead};

/// The offers for one bundle's container; clones share them.
#[derive(Clone)]
pub struct Ahead {
    netns: Arc<NetnsAhead>,
    cgroup: Arc<CgroupAhead>,
    spec: Arc<FirstSpec>,
    spec_taken: Arc<AtomicBool>,
}

impl Ahead {
    /// Starts making both for the container of `spec`, where its spec allows.
    #[must_use]
    pub fn start(spec: &Arc<FirstSpec>) -> Self {
        Self {
            netns: Arc::new(NetnsAhead::start(spec.clone())),
            cgroup: Arc::new(CgroupAhead::start(spec.clone())),
            spec: spec.clone(),
            spec_taken: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The spec read ahead, for the first Create of its own bundle only: a later Create, or
    /// one of another bundle, reads its own (a bundle made again may hold another spec).
    /// None also when the read failed: the Create reads it again and says why.
    pub fn take_spec(&self, bundle: &Path) -> Option<Spec> {
        if self.spec_taken.swap(true, Ordering::AcqRel) || self.spec.bundle() != bundle {
            return None;
        }
        self.spec.get().cloned()
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

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::SpecBuilder;

    #[test]
    fn the_spec_read_ahead_goes_to_the_first_create_of_its_bundle_only() {
        let dir = tempfile::tempdir().unwrap();
        SpecBuilder::default()
            .hostname("first")
            .build()
            .unwrap()
            .save(dir.path().join("config.json"))
            .unwrap();
        let ahead = Ahead::start(&FirstSpec::new(dir.path().to_path_buf()));
        assert!(ahead.take_spec(Path::new("/elsewhere")).is_none());
        assert!(
            ahead.take_spec(dir.path()).is_none(),
            "taken (by another bundle's Create) once already"
        );

        let ahead = Ahead::start(&FirstSpec::new(dir.path().to_path_buf()));
        let spec = ahead.take_spec(dir.path()).expect("the spec read ahead");
        assert_eq!(spec.hostname().as_deref(), Some("first"));
        assert!(
            ahead.take_spec(dir.path()).is_none(),
            "a second Create reads its own"
        );
        ahead.end();
    }

    #[test]
    fn no_spec_is_offered_when_it_could_not_be_read() {
        let dir = tempfile::tempdir().unwrap();
        let ahead = Ahead::start(&FirstSpec::new(dir.path().to_path_buf()));
        assert!(ahead.take_spec(dir.path()).is_none());
        ahead.end();
    }
}
