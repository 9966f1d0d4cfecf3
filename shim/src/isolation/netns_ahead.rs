//! A new shim's first container gets a network namespace made before its Create arrives.
//!
//! A network namespace is the slowest namespace to make: the kernel registers its loopback
//! device and a copy of every network sysctl table, about 0.5 ms here, and the container's
//! init made it in the middle of Create. But a new shim knows its first container's spec
//! before containerd sends Create (the bundle is its working directory), and it waits for
//! containerd to connect meanwhile. So a thread of its own makes the namespace then, and the
//! init joins it by path, as if the spec had named one.
//!
//! Only where that is the namespace the init would have made itself: the spec asks for a new
//! one (a `network` entry without a path) and for no user namespace (a namespace belongs to
//! the user namespace of the process that made it, and the shim's is the node's). The shim
//! keeps its descriptor only until the container is built: then the init alone holds it, and
//! it ends with the container, as before.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};

use log::debug;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::FirstSpec;

/// A namespace being made, or made, for the container of one bundle.
pub struct NetnsAhead {
    bundle: PathBuf,
    made: Mutex<Option<Receiver<Option<OwnedFd>>>>,
}

impl NetnsAhead {
    /// Starts making a network namespace for the container of `spec`, if it wants a fresh one
    /// (see the module docs).
    #[must_use]
    pub fn start(spec: Arc<FirstSpec>) -> Self {
        let (sender, receiver) = sync_channel(1);
        let bundle = spec.bundle().to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("netns-ahead".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let wanted = spec.get().is_some_and(wants_fresh);
                let made = wanted.then(make).and_then(|made| {
                    made.map_err(|e| debug!("no network namespace made ahead: {e}"))
                        .ok()
                });
                let _ = sender.send(made);
            });
        let made = match spawned {
            Ok(_) => Some(receiver),
            Err(e) => {
                debug!("no network namespace made ahead: {e}");
                None
            }
        };
        Self {
            bundle,
            made: Mutex::new(made),
        }
    }

    /// The namespace made for `bundle`'s container, once it is made; None when none was, or
    /// it was taken already, or it was made for another bundle. Whatever the bundle, the first
    /// call ends the offer: a namespace nobody takes is not held on to.
    pub fn take(&self, bundle: &Path) -> Option<OwnedFd> {
        let receiver = self
            .made
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()?;
        let made = receiver.recv().ok().flatten();
        made.filter(|_| bundle == self.bundle)
    }
}

/// Whether the spec asks for a new network namespace and no user namespace.
pub fn wants_fresh(spec: &Spec) -> bool {
    let Some(namespaces) = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()) else {
        return false;
    };
    let new_network = namespaces.iter().any(|ns| {
        ns.typ() == LinuxNamespaceType::Network
            && ns.path().as_ref().is_none_or(|p| p.as_os_str().is_empty())
    });
    let user = namespaces
        .iter()
        .any(|ns| ns.typ() == LinuxNamespaceType::User);
    new_network && !user
}

/// Points the spec's network namespace at `made`, which the container's processes inherit
/// from the shim: `/proc/self/fd/N` names it in each of them.
pub fn join(spec: &mut Spec, made: &OwnedFd) {
    let path = PathBuf::from(format!("/proc/self/fd/{}", made.as_raw_fd()));
    let Some(linux) = spec.linux_mut() else {
        return;
    };
    let Some(namespaces) = linux.namespaces_mut() else {
        return;
    };
    for ns in namespaces
        .iter_mut()
        .filter(|ns| ns.typ() == LinuxNamespaceType::Network)
    {
        ns.set_path(Some(path.clone()));
    }
}

/// Makes a network namespace in the calling thread and returns a descriptor of it. The thread
/// is left in it, so it must be one that ends right after (see [`NetnsAhead::start`]).
fn make() -> std::io::Result<OwnedFd> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
    let file = std::fs::File::open("/proc/thread-self/ns/net")?;
    Ok(file.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxNamespace, LinuxNamespaceBuilder, SpecBuilder};

    fn namespace(typ: LinuxNamespaceType, path: Option<&str>) -> LinuxNamespace {
        let mut ns = LinuxNamespaceBuilder::default().typ(typ).build().unwrap();
        ns.set_path(path.map(PathBuf::from));
        ns
    }

    fn spec(namespaces: Vec<LinuxNamespace>) -> Spec {
        SpecBuilder::default()
            .linux(
                LinuxBuilder::default()
                    .namespaces(namespaces)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn only_a_new_network_namespace_without_a_user_namespace_is_made_ahead() {
        use LinuxNamespaceType::{Mount, Network, User};
        let new_net = || namespace(Network, None);
        assert!(wants_fresh(&spec(vec![namespace(Mount, None), new_net()])));
        assert!(wants_fresh(&spec(vec![namespace(Network, Some(""))])));
        // A pod's container joins its sandbox's; `--net-host` has no entry at all.
        assert!(!wants_fresh(&spec(vec![namespace(
            Network,
            Some("/proc/42/ns/net")
        )])));
        assert!(!wants_fresh(&spec(vec![namespace(Mount, None)])));
        // Made by the shim, it would belong to the node's user namespace, not the container's.
        assert!(!wants_fresh(&spec(vec![new_net(), namespace(User, None)])));
        // oci-spec's default is runc's: a new network namespace among others.
        let mut default = SpecBuilder::default().build().unwrap();
        assert!(wants_fresh(&default));
        default.set_linux(None);
        assert!(!wants_fresh(&default));
    }

    #[test]
    fn joining_names_the_inherited_descriptor_and_leaves_the_rest() {
        use LinuxNamespaceType::{Mount, Network};
        let mut spec = spec(vec![namespace(Mount, None), namespace(Network, None)]);
        let fd: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        join(&mut spec, &fd);
        let namespaces = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        let want = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        assert_eq!(namespaces[1].path().as_ref(), Some(&want));
        assert_eq!(namespaces[0].path(), &None);
    }

    #[test]
    fn a_namespace_is_taken_once_and_only_for_its_own_bundle() {
        let dir = tempfile::tempdir().unwrap();
        // No config.json: nothing is made, and take says so without waiting for ever.
        let ahead = NetnsAhead::start(FirstSpec::new(dir.path().to_path_buf()));
        assert!(ahead.take(dir.path()).is_none());
        assert!(ahead.take(dir.path()).is_none());

        let config = spec(vec![namespace(LinuxNamespaceType::Network, None)]);
        config.save(dir.path().join("config.json")).unwrap();
        let other = NetnsAhead::start(FirstSpec::new(dir.path().to_path_buf()));
        assert!(other.take(Path::new("/elsewhere")).is_none());
        assert!(other.take(dir.path()).is_none(), "the offer ended");

        let own = NetnsAhead::start(FirstSpec::new(dir.path().to_path_buf()));
        let made = own.take(dir.path());
        // SAFETY: geteuid has no preconditions. Only root may make one (CI runs as root).
        if unsafe { libc::geteuid() } == 0 {
            assert!(made.is_some(), "root's shim made no namespace");
        }
    }

    #[test]
    fn the_namespace_made_is_new_and_the_shims_own_is_left_alone() {
        let inode = |path: &str| std::fs::read_link(path).unwrap();
        let before = inode("/proc/thread-self/ns/net");
        let made = std::thread::spawn(make).join().unwrap();
        let made = match made {
            Ok(fd) => fd,
            // Unprivileged test runs cannot make one; CI runs these as root.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => return,
            Err(e) => panic!("making a network namespace: {e}"),
        };
        let theirs = inode(&format!("/proc/self/fd/{}", made.as_raw_fd()));
        assert!(theirs.to_string_lossy().starts_with("net:["), "{theirs:?}");
        assert_ne!(theirs, before);
        assert_eq!(inode("/proc/thread-self/ns/net"), before);
        assert_eq!(inode("/proc/self/ns/net"), before);
    }
}
