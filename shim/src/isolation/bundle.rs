//! A private copy of the bundle's config.json, adjusted for how wasmpod runs containers.
//!
//! containerd's bundle is left untouched; libcontainer reads the copy under
//! `<bundle>/.wasmpod/`, which containerd removes with the bundle. The adjustments:
//! - `root.path` made absolute (the copy lives elsewhere);
//! - `linux.cgroupsPath` normalised to cgroupfs (see [`super::cgroupfs_path`]);
//! - `process.oomScoreAdj` taken out: libcontainer writes it to the *calling* process before the
//!   fork, which would change the shim's own score for good (or fail without CAP_SYS_RESOURCE);
//!   the shim applies it to the container's pid instead;
//! - `linux.rootfsPropagation` `rshared`/`rslave`/`rprivate`/`runbindable` (what the CRI sends
//!   for Bidirectional and HostToContainer mounts) written as libcontainer's names: it applies
//!   the root's propagation recursively anyway and rejects the `r` forms;
//! - `process.terminal` set to whether the shim asked for a terminal (containerd's `terminal`
//!   flag, see [`super::ProcessIo::Console`]): libcontainer demands a console socket exactly
//!   when it is true.

use std::path::{Path, PathBuf};

use log::warn;
use oci_spec::runtime::Spec;

use super::{cgroupfs_path, IsolationError};

/// Where wasmpod keeps its per-container files inside the bundle.
pub const PRIVATE_DIR: &str = ".wasmpod";

/// The adjusted bundle.
#[derive(Debug, Clone)]
pub struct PreparedBundle {
    /// Directory holding the adjusted config.json.
    pub dir: PathBuf,
    /// libcontainer's state root for this container.
    pub state_root: PathBuf,
    /// The container's cgroup, as a cgroupfs path.
    pub cgroup_path: PathBuf,
    /// `process.oomScoreAdj` from the original spec.
    pub oom_score_adj: Option<i32>,
}

/// Reads `bundle/config.json`.
///
/// # Errors
/// [`IsolationError::Bundle`] when it is missing or not a valid OCI spec.
pub fn load_spec(bundle: &Path) -> Result<Spec, IsolationError> {
    let path = bundle.join("config.json");
    Spec::load(&path).map_err(|e| IsolationError::Bundle {
        path,
        reason: super::chain(&e),
    })
}

/// Writes the adjusted copy of the spec; `terminal` says whether the process gets one.
///
/// # Errors
/// [`IsolationError::Bundle`] when the copy cannot be written.
pub fn prepare(
    bundle: &Path,
    id: &str,
    mut spec: Spec,
    terminal: bool,
) -> Result<(PreparedBundle, Spec), IsolationError> {
    let private = bundle.join(PRIVATE_DIR);
    let dir = private.join("bundle");
    let state_root = private.join("state");
    let bundle_err = |path: &Path, reason: String| IsolationError::Bundle {
        path: path.to_path_buf(),
        reason,
    };
    for d in [&dir, &state_root] {
        std::fs::create_dir_all(d).map_err(|e| bundle_err(d, e.to_string()))?;
    }

    let mut root = spec.root().clone().unwrap_or_default();
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    root.set_path(rootfs);
    spec.set_root(Some(root));

    let mut oom_score_adj = None;
    if let Some(mut process) = spec.process().clone() {
        oom_score_adj = process.oom_score_adj();
        process.set_oom_score_adj(None);
        if process.terminal().unwrap_or(false) != terminal {
            warn!("{id}: process.terminal disagrees with containerd's terminal flag ({terminal}); following containerd");
        }
        process.set_terminal(Some(terminal));
        spec.set_process(Some(process));
    }

    let mut linux = spec.linux().clone().unwrap_or_default();
    if let Some(propagation) = linux.rootfs_propagation().clone() {
        linux.set_rootfs_propagation(Some(recursive_propagation_name(&propagation).to_string()));
    }
    let cgroup_path = cgroupfs_path(linux.cgroups_path().as_ref().and_then(|p| p.to_str()), id);
    linux.set_cgroups_path(Some(cgroup_path.clone()));
    spec.set_linux(Some(linux));

    let config = dir.join("config.json");
    spec.save(&config)
        .map_err(|e| bundle_err(&config, super::chain(&e)))?;
    let prepared = PreparedBundle {
        dir,
        state_root,
        cgroup_path,
        oom_score_adj,
    };
    Ok((prepared, spec))
}

/// libcontainer's name for a root propagation: it always sets the root's propagation with
/// `MS_REC`, so runc's recursive forms mean the plain ones; anything else is left for
/// libcontainer to accept or refuse.
fn recursive_propagation_name(propagation: &str) -> &str {
    match propagation {
        "rshared" => "shared",
        "rslave" => "slave",
        "rprivate" => "private",
        "runbindable" => "unbindable",
        other => other,
    }
}

/// Removes the private directory (best effort).
pub fn remove(bundle: &Path) {
    let private = bundle.join(PRIVATE_DIR);
    if let Err(e) = std::fs::remove_dir_all(&private) {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!("removing {} failed: {e}", private.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{LinuxBuilder, ProcessBuilder, SpecBuilder};

    use super::*;

    #[test]
    fn the_copy_is_absolute_normalised_and_keeps_the_shim_score() {
        let bundle = tempfile::tempdir().unwrap();
        let process = ProcessBuilder::default()
            .args(vec!["/app.wasm".to_string()])
            .oom_score_adj(-998)
            .terminal(true)
            .build()
            .unwrap();
        let linux = LinuxBuilder::default()
            .cgroups_path(PathBuf::from("system.slice:docker:abc"))
            .build()
            .unwrap();
        let spec = SpecBuilder::default()
            .process(process)
            .linux(linux)
            .build()
            .unwrap();
        let (prepared, held) = prepare(bundle.path(), "abc", spec, false).unwrap();

        assert_eq!(prepared.oom_score_adj, Some(-998));
        assert_eq!(
            prepared.cgroup_path,
            PathBuf::from("/system.slice/docker-abc.scope")
        );
        let written = Spec::load(prepared.dir.join("config.json")).unwrap();
        let process = written.process().as_ref().unwrap();
        assert_eq!(process.oom_score_adj(), None);
        assert_eq!(process.terminal(), Some(false));
        assert_eq!(
            written.root().as_ref().unwrap().path(),
            &bundle.path().join("rootfs")
        );
        assert_eq!(
            held, written,
            "libcontainer builds from the spec as written"
        );

        remove(bundle.path());
        assert!(!bundle.path().join(PRIVATE_DIR).exists());
    }

    #[test]
    fn recursive_root_propagation_is_written_as_libcontainer_names_it() {
        let bundle = tempfile::tempdir().unwrap();
        for (asked, written) in [
            ("rshared", "shared"),
            ("rslave", "slave"),
            ("rprivate", "private"),
            ("shared", "shared"),
        ] {
            let linux = LinuxBuilder::default()
                .rootfs_propagation(asked)
                .build()
                .unwrap();
            let spec = SpecBuilder::default().linux(linux).build().unwrap();
            let (prepared, _) = prepare(bundle.path(), "p", spec, false).unwrap();
            let copy = Spec::load(prepared.dir.join("config.json")).unwrap();
            let linux = copy.linux().as_ref().unwrap();
            assert_eq!(linux.rootfs_propagation().as_deref(), Some(written));
        }
    }

    #[test]
    fn a_terminal_is_kept_in_the_copy_when_containerd_asks_for_one() {
        let bundle = tempfile::tempdir().unwrap();
        let process = ProcessBuilder::default()
            .args(vec!["/bin/sh".to_string()])
            .build()
            .unwrap();
        let spec = SpecBuilder::default().process(process).build().unwrap();
        let (prepared, _) = prepare(bundle.path(), "t", spec, true).unwrap();
        let written = Spec::load(prepared.dir.join("config.json")).unwrap();
        assert_eq!(written.process().as_ref().unwrap().terminal(), Some(true));
    }

    /// libcontainer builds from the spec the shim holds, not from the file the shim wrote
    /// (`with_spec`, a vendored patch): they must be the same spec. The default spec has every
    /// part a runtime's has (namespaces, mounts, capabilities, masked paths, rlimits).
    #[test]
    fn the_spec_held_is_the_spec_written_for_a_whole_spec() {
        let bundle = tempfile::tempdir().unwrap();
        let mut spec = Spec::default();
        let mut annotations = std::collections::HashMap::new();
        annotations.insert(
            "io.kubernetes.cri.container-type".into(),
            "container".into(),
        );
        spec.set_annotations(Some(annotations));
        let (prepared, held) = prepare(bundle.path(), "whole", spec, false).unwrap();
        let written = Spec::load(prepared.dir.join("config.json")).unwrap();
        assert_eq!(held, written);
    }
}
