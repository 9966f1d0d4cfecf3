//! The spec of a new shim's first container, read once for all the work done before its
//! Create arrives: the engine's warm-up, the network namespace and the cgroup made ahead each
//! run in a thread of their own, and whichever needs the spec first reads it for all three.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use oci_spec::runtime::Spec;

/// `config.json` of one bundle, read on first use.
pub struct FirstSpec {
    bundle: PathBuf,
    spec: OnceLock<Option<Spec>>,
}

impl FirstSpec {
    /// The spec of the container of `bundle`, not read yet.
    #[must_use]
    pub fn new(bundle: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            bundle,
            spec: OnceLock::new(),
        })
    }

    /// The bundle it belongs to.
    pub fn bundle(&self) -> &Path {
        &self.bundle
    }

    /// The spec, read by the first caller (the others wait for that read); None when it is
    /// missing or invalid, which the container's Create reports.
    pub fn get(&self) -> Option<&Spec> {
        self.spec
            .get_or_init(|| super::load_spec(&self.bundle).ok())
            .as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::SpecBuilder;

    #[test]
    fn the_spec_is_read_once_and_shared() {
        let dir = tempfile::tempdir().unwrap();
        let missing = FirstSpec::new(dir.path().to_path_buf());
        assert!(missing.get().is_none());

        let config = dir.path().join("config.json");
        SpecBuilder::default()
            .hostname("first")
            .build()
            .unwrap()
            .save(&config)
            .unwrap();
        let first = FirstSpec::new(dir.path().to_path_buf());
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let first = first.clone();
                std::thread::spawn(move || first.get().and_then(|s| s.hostname().clone()))
            })
            .collect();
        for reader in readers {
            assert_eq!(reader.join().unwrap().as_deref(), Some("first"));
        }
        std::fs::remove_file(&config).unwrap();
        assert!(
            first.get().is_some(),
            "read once: the file is not read again"
        );
        assert_eq!(first.bundle(), dir.path());
    }
}
