//! Seccomp filters compiled once per profile and kept on disk, so that a container's init
//! loads its filter instead of compiling its profile.
//!
//! libseccomp compiled Docker's default profile (about 300 rules for three architectures) in
//! every container's init: 15 ms of each `docker run`, and of each pod container with the
//! RuntimeDefault profile. Every container of a node with one profile gets the same program,
//! so the shim compiles it once, keeps it as `<dir>/<sha256 of the profile>.bpf` and, before it
//! forks the builder, offers it to libcontainer (a vendored patch, `vendor/README.md`), whose
//! init loads it with one seccomp(2) call when the profile matches byte for byte. The key also
//! covers what the program depends on besides the profile: libseccomp's version and the
//! kernel's, since libseccomp adapts the program to the kernel it runs on. Profiles with notify
//! actions are compiled by the init as before.
//!
//! Anything wrong here only costs the saving: the init then compiles the profile itself.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use libcontainer::seccomp::{compile, is_offered, offer_compiled, CompiledFilter};
use log::{debug, warn};
use oci_spec::runtime::{LinuxSeccomp, Spec};
use sha2::{Digest, Sha256};

/// A file larger than this is not a filter (the kernel takes at most 4096 instructions).
const MAX_BPF_BYTES: u64 = 4096 * 8;

/// At most this many filters are kept; the oldest go first. Docker orders its default
/// profile's architectures anew at each daemon start, so each start may add one (8 kB).
const MAX_KEPT: usize = 64;

/// Offers the compiled filter of `spec`'s seccomp profile, from `dir` or compiled now and
/// written there. Best effort (see the module docs).
pub fn offer(spec: &Spec, dir: &Path) {
    let Some(seccomp) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return;
    };
    let Ok(profile) = serde_json::to_vec(seccomp) else {
        return;
    };
    // This shim offered it for an earlier container: no key, no file to read.
    if is_offered(&profile) {
        return;
    }
    let path = dir.join(format!("{}.bpf", key(&profile)));
    let filter = match read(&path) {
        Some(kept) => Some((kept, "kept")),
        None => compile_to(seccomp, &path, dir).map(|new| (new, "compiled now")),
    };
    if let Some(((bpf, flags), how)) = filter {
        debug!(
            "seccomp filter {} offered ({how}, {} instructions)",
            path.display(),
            bpf.len() / 8
        );
        offer_compiled(CompiledFilter {
            profile,
            bpf,
            flags,
        });
    }
}

/// The file name of a profile's filter: the profile, libseccomp's version and the kernel's.
fn key(profile: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(profile);
    let v = libseccomp::ScmpVersion::current().ok();
    h.update(format!("{v:?}"));
    if let Ok(uname) = nix::sys::utsname::uname() {
        h.update(uname.release().as_encoded_bytes());
        h.update(uname.version().as_encoded_bytes());
    }
    format!("{:x}", h.finalize())
}

/// A kept filter: a 4-byte little-endian flags word, then the program.
fn read(path: &Path) -> Option<(Vec<u8>, u32)> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    if !(4..=4 + MAX_BPF_BYTES).contains(&len) || (len - 4) % 8 != 0 {
        warn!(
            "{}: not a kept seccomp filter; compiling anew",
            path.display()
        );
        return None;
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.read_to_end(&mut bytes).ok()?;
    let flags = u32::from_le_bytes(bytes[..4].try_into().ok()?);
    Some((bytes.split_off(4), flags))
}

/// Compiles `seccomp` and keeps it at `path` (written whole under a temporary name, then
/// renamed, so no reader sees half a file).
fn compile_to(seccomp: &LinuxSeccomp, path: &Path, dir: &Path) -> Option<(Vec<u8>, u32)> {
    let mut program: File = nix::sys::memfd::memfd_create(
        c"wasmpod-seccomp",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .ok()?
    .into();
    let flags = match compile(seccomp, &program) {
        Ok(Some(flags)) => flags,
        Ok(None) => return None,
        Err(e) => {
            // The init will compile it and report the error with the container's id.
            debug!("seccomp profile not compiled ahead: {e}");
            return None;
        }
    };
    let mut bpf = Vec::new();
    use std::io::Seek;
    program.rewind().ok()?;
    program.read_to_end(&mut bpf).ok()?;
    if bpf.is_empty() || bpf.len() as u64 > MAX_BPF_BYTES || bpf.len() % 8 != 0 {
        return None;
    }
    if let Err(e) = keep(path, dir, flags, &bpf) {
        warn!("cannot keep the seccomp filter in {}: {e}", dir.display());
    }
    Some((bpf, flags))
}

fn keep(path: &Path, dir: &Path, flags: u32, bpf: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(&flags.to_le_bytes())?;
        f.write_all(bpf)
    });
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => {
            evict(dir, MAX_KEPT);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Removes the oldest `.bpf` files of `dir` beyond the newest `keep`.
fn evict(dir: &Path, keep: usize) {
    let mut kept: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "bpf"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if kept.len() <= keep {
        return;
    }
    kept.sort();
    for (_, path) in &kept[..kept.len() - keep] {
        let _ = std::fs::remove_file(path);
    }
}

/// Where the filters are kept: beside the compile cache's files, in `seccomp/`.
pub fn dir_in(cache_dir: &Path) -> PathBuf {
    cache_dir.join("seccomp")
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder};

    fn profile() -> LinuxSeccomp {
        LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![LinuxSyscallBuilder::default()
                .names(vec!["keyctl".to_string(), "add_key".to_string()])
                .action(LinuxSeccompAction::ScmpActErrno)
                .build()
                .unwrap()])
            .build()
            .unwrap()
    }

    #[test]
    fn a_compiled_filter_is_kept_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let seccomp = profile();
        let profile = serde_json::to_vec(&seccomp).unwrap();
        let path = dir.path().join(format!("{}.bpf", key(&profile)));
        let (bpf, flags) = compile_to(&seccomp, &path, dir.path()).expect("compiled");
        assert!(!bpf.is_empty() && bpf.len() % 8 == 0, "a whole program");
        assert_eq!(flags, 0);
        assert_eq!(read(&path), Some((bpf, flags)), "read back as written");
    }

    #[test]
    fn the_key_follows_the_profile() {
        let a = serde_json::to_vec(&profile()).unwrap();
        let mut other = profile();
        other.set_default_action(LinuxSeccompAction::ScmpActLog);
        let b = serde_json::to_vec(&other).unwrap();
        assert_eq!(key(&a), key(&a));
        assert_ne!(key(&a), key(&b));
    }

    #[test]
    fn only_the_newest_filters_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = std::time::SystemTime::now() - std::time::Duration::from_secs(100);
        for i in 0..5u64 {
            let path = dir.path().join(format!("{i}.bpf"));
            std::fs::write(&path, b"x").unwrap();
            let f = File::options().write(true).open(&path).unwrap();
            f.set_modified(t0 + std::time::Duration::from_secs(i))
                .unwrap();
        }
        std::fs::write(dir.path().join("other.cwasm"), b"x").unwrap();
        evict(dir.path(), 3);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["2.bpf", "3.bpf", "4.bpf", "other.cwasm"]);
    }

    #[test]
    fn a_damaged_file_is_not_a_filter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bpf");
        std::fs::write(&path, b"\0\0\0\0abc").unwrap();
        assert_eq!(read(&path), None);
        std::fs::write(&path, b"").unwrap();
        assert_eq!(read(&path), None);
    }

    #[test]
    fn a_notify_profile_is_left_to_the_init() {
        let dir = tempfile::tempdir().unwrap();
        let notify = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![LinuxSyscallBuilder::default()
                .names(vec!["mkdir".to_string()])
                .action(LinuxSeccompAction::ScmpActNotify)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        let path = dir.path().join("n.bpf");
        assert_eq!(compile_to(&notify, &path, dir.path()), None);
        assert!(!path.exists());
    }
}
