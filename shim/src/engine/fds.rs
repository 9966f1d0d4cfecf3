//! The file descriptors a loaded program still needs in the container process.
//!
//! wasmtime maps compiled code from the `.cwasm` file once, at load; that mapping survives
//! the fork and needs no descriptor. But with copy-on-write memory initialisation (on by
//! default, see [`super::EngineConfig::share_initial_memory`]) every *instantiation* maps the
//! guest's initial linear memory from the same file again, through the descriptor wasmtime
//! kept open at load. So that descriptor must survive into the container's init process: a
//! "close every inherited fd" step there must exclude [`super::Program::retained_fds`].
//!
//! Modules are deserialized from a file this module opens, so the descriptor is known
//! exactly. wasmtime has no such entry point for components; for them the file is first opened
//! here (fixing the exact inode, whatever concurrent renames do to the path), wasmtime opens
//! it again through `/proc/self/fd`, and the new descriptor is the one on that inode that was
//! not open before; a process-wide lock keeps concurrent component loads out of the diff.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Mutex;

use wasmtime::component::Component;
use wasmtime::{Engine, Module};

/// Serializes component deserialization so the `/proc/self/fd` diff sees only its own open.
static COMPONENT_OPEN: Mutex<()> = Mutex::new(());

/// A descriptor the engine maps from, with the identity of the file it must still refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetainedFd {
    pub(crate) fd: RawFd,
    file: FileId,
}

/// Device and inode: what identifies a file independently of paths and descriptor numbers.
type FileId = (libc::dev_t, libc::ino_t);

fn file_id(fd: RawFd) -> Option<FileId> {
    nix::sys::stat::fstat(fd)
        .ok()
        .map(|st| (st.st_dev, st.st_ino))
}

impl RetainedFd {
    fn of(fd: RawFd) -> std::io::Result<Self> {
        let st = nix::sys::stat::fstat(fd)?;
        Ok(Self {
            fd,
            file: (st.st_dev, st.st_ino),
        })
    }

    /// Whether `fd` is still open on the same file (a close-all step followed by an unrelated
    /// open could have reused the number).
    pub(crate) fn is_intact(&self) -> bool {
        file_id(self.fd) == Some(self.file)
    }
}

/// Maps a cached module and returns the descriptor wasmtime keeps for it.
///
/// # Safety
///
/// As for `Module::deserialize_file`: `path` must hold an artifact produced by
/// `Engine::precompile_module` for a compatible engine, not modified while mapped.
pub(crate) unsafe fn deserialize_module(
    engine: &Engine,
    path: &Path,
) -> wasmtime::Result<(Module, Vec<RetainedFd>)> {
    let file = File::open(path)?;
    let retained = RetainedFd::of(file.as_raw_fd())?;
    // SAFETY: forwarded to the caller. wasmtime keeps `file` (and so `retained.fd`) open for
    // as long as the module lives.
    let module = unsafe { Module::deserialize_open_file(engine, file)? };
    Ok((module, vec![retained]))
}

/// Maps a cached component and returns the descriptor(s) wasmtime keeps for it.
///
/// # Safety
///
/// As for `Component::deserialize_file`: `path` must hold an artifact produced by
/// `Engine::precompile_component` for a compatible engine, not modified while mapped.
pub(crate) unsafe fn deserialize_component(
    engine: &Engine,
    path: &Path,
) -> wasmtime::Result<(Component, Vec<RetainedFd>)> {
    let pinned = File::open(path)?;
    let id = RetainedFd::of(pinned.as_raw_fd())?.file;
    let via_proc = format!("/proc/self/fd/{}", pinned.as_raw_fd());

    // A poisoned lock only means another load panicked; the diff is still sound.
    let _guard = COMPONENT_OPEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut attempt = 1;
    loop {
        // Only descriptors on this very inode are compared: `pinned`, those of earlier
        // programs of the same component, and after the call the one wasmtime opened.
        let before = fds_on(id)?;
        // SAFETY: forwarded to the caller; `via_proc` is the very inode `pinned` holds.
        let component = unsafe { Component::deserialize_file(engine, &via_proc)? };
        let retained: Vec<RetainedFd> = fds_on(id)?
            .difference(&before)
            .map(|&fd| RetainedFd { fd, file: id })
            .collect();
        // Empty means another thread dropped an earlier program of this component in the
        // window and wasmtime got its number back: try again. wasmtime 48 always keeps the
        // file, but should a later version not, the last attempt accepts "nothing to keep".
        if !retained.is_empty() || attempt == 3 {
            return Ok((component, retained));
        }
        attempt += 1;
    }
}

/// The descriptors of this process open on the file `id`.
fn fds_on(id: FileId) -> std::io::Result<BTreeSet<RawFd>> {
    Ok(open_fds()?
        .into_iter()
        .filter(|&fd| file_id(fd) == Some(id))
        .collect())
}

/// The descriptors currently open in this process.
fn open_fds() -> std::io::Result<BTreeSet<RawFd>> {
    let mut fds = BTreeSet::new();
    for entry in fs::read_dir("/proc/self/fd")? {
        if let Some(fd) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
            fds.insert(fd);
        }
    }
    Ok(fds)
}
