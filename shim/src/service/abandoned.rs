//! A serving shim that containerd gave up on before it ever used it exits by itself.
//!
//! containerd starts the serving shim (`start`), then writes files of its own into the bundle
//! (`shim-binary-path` in 1.7 and 2.x) and only then connects. When one of those writes fails
//! (the state dir is full), containerd reports the error and removes the bundle, but never
//! kills the shim it started nor calls its Shutdown: the shim would serve its socket in
//! `/run/containerd/s` for ever, with no task and no bundle. The same holds for any failure
//! between `start` and the first Create.
//!
//! The bundle (the shim's working directory) is the signal: containerd removes it only once it
//! is done with the task, and without it containerd can never find this shim again, not even
//! after a restart (it recovers shims from their bundles). So when the bundle goes, `lifetime`
//! decides: a shim with no task removes its socket and exits. With tasks it stays: a pod's or
//! a group's shim runs in the bundle of the container that started it, which may be deleted
//! before its neighbours. Either way, what the shim made ahead for the bundle's container and
//! no Create took is let go first (its cgroup directories). This module only watches.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use log::{info, warn};
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;

use super::lifetime::Lifetime;
use crate::isolation::Ahead;

/// Watches `bundle`, the working directory as the shim found it as it started; see the module
/// docs. A working directory already removed then (`getcwd` says `NotFound`) counts as a
/// bundle removed.
pub async fn exit_when_abandoned(
    lifetime: Arc<Lifetime>,
    ahead: Option<Ahead>,
    bundle: Result<PathBuf, std::io::ErrorKind>,
) {
    let bundle = match bundle {
        Ok(dir) => {
            if let Err(e) = removed(&dir).await {
                warn!(
                    "cannot watch the bundle {} ({e}): a shim containerd abandons stays",
                    dir.display()
                );
                return;
            }
            dir
        }
        Err(std::io::ErrorKind::NotFound) => PathBuf::from("(the working directory)"),
        Err(e) => {
            warn!("cannot find the bundle to watch ({e}): a shim containerd abandons stays");
            return;
        }
    };
    if let Some(ahead) = ahead {
        // A Create of this bundle took the offers at its start: then this ends nothing.
        ahead.end();
    }
    if lifetime.bundle_removed() {
        warn!(
            "bundle {} removed before containerd used this shim: exiting",
            bundle.display()
        );
    } else {
        info!("bundle {} removed: serving on", bundle.display());
    }
}

/// The inotify instance as the raw fd tokio's reactor polls.
struct Watch(Inotify);

impl std::os::fd::AsRawFd for Watch {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

/// Resolves once `dir` is removed or moved away (containerd renames a bundle to a hidden name
/// before removing it), at once when it is already gone.
///
/// # Errors
/// When inotify cannot be set up or read, or the watch ends otherwise (its filesystem
/// unmounted).
pub async fn removed(dir: &Path) -> std::io::Result<()> {
    let gone = AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF;
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    match inotify.add_watch(dir, gone | AddWatchFlags::IN_ONLYDIR) {
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    // Removed between the caller's look and the watch: no event will come.
    if !dir.exists() {
        return Ok(());
    }
    // SAFETY: `Watch` owns the inotify fd and hands out that one fd until it is dropped with
    // the `AsyncFd`.
    let fd = unsafe { AsyncFd::register(Watch(inotify)) }.map_err(std::io::Error::from)?;
    loop {
        let mut ready = fd.readable().await?;
        match ready.get_inner().0.read_events() {
            Ok(events) => {
                if events.iter().any(|e| e.mask.intersects(gone)) {
                    return Ok(());
                }
                if events
                    .iter()
                    .any(|e| e.mask.contains(AddWatchFlags::IN_IGNORED))
                {
                    return Err(std::io::Error::other("the watch ended (unmounted)"));
                }
            }
            Err(Errno::EAGAIN) => ready.clear_ready(),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A bound on a test that would otherwise hang, not a timing assertion.
    const BOUND: Duration = Duration::from_secs(30);

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_removed_dir_is_noticed() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("bundle");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("config.json"), "{}").expect("write");
        runtime().block_on(async {
            let watch = tokio::spawn({
                let dir = dir.clone();
                async move { removed(&dir).await }
            });
            tokio::task::yield_now().await;
            std::fs::remove_dir_all(&dir).expect("remove");
            let result = tokio::time::timeout(BOUND, watch).await;
            assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
        });
    }

    #[test]
    fn a_dir_moved_away_counts_as_removed() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("bundle");
        std::fs::create_dir(&dir).expect("mkdir");
        runtime().block_on(async {
            let watch = tokio::spawn({
                let dir = dir.clone();
                async move { removed(&dir).await }
            });
            tokio::task::yield_now().await;
            std::fs::rename(&dir, parent.path().join(".bundle")).expect("rename");
            let result = tokio::time::timeout(BOUND, watch).await;
            assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
        });
    }

    #[test]
    fn a_dir_already_gone_resolves_at_once() {
        let parent = tempfile::tempdir().expect("tempdir");
        let result = runtime().block_on(removed(&parent.path().join("never")));
        assert!(result.is_ok(), "{result:?}");
    }

    #[test]
    fn a_dir_that_stays_keeps_the_watch() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().to_path_buf();
        std::fs::write(dir.join("file"), "x").expect("write");
        runtime().block_on(async {
            let watch = tokio::spawn(async move { removed(&dir).await });
            tokio::task::yield_now().await;
            assert!(!watch.is_finished());
            watch.abort();
        });
    }
}
