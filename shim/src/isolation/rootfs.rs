//! The container's root filesystem as the shim sees it from outside: stacking containerd's
//! rootfs mounts on `bundle/rootfs`, undoing them, and reading files inside it safely.
//!
//! Reads use `openat2(RESOLVE_IN_ROOT)`, so an image's absolute or `..` symlinks resolve inside
//! the rootfs the way they will inside the container, never onto the node's own files. Only
//! regular files are opened for reading: an image's fifo or device node at the entrypoint's
//! path is looked at through an `O_PATH` descriptor and refused, because opening it would
//! block Create for good (a fifo with no writer) or read a device from the shim (`/dev/zero`
//! never ends).

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use log::warn;
use nix::mount::{umount2, MntFlags};

use super::IsolationError;

/// What the first bytes of an entrypoint say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramKind {
    /// `\0asm`: a core module or a component.
    Wasm,
    /// An ELF binary or a `#!` script: run as an ordinary Linux process.
    Native,
}

/// Classifies a file by its magic bytes.
pub fn classify(head: &[u8]) -> Option<ProgramKind> {
    if head.starts_with(b"\0asm") {
        Some(ProgramKind::Wasm)
    } else if head.starts_with(b"\x7fELF") || head.starts_with(b"#!") {
        Some(ProgramKind::Native)
    } else {
        None
    }
}

/// Mounts containerd's rootfs mounts (usually one overlay) on `target`.
///
/// # Errors
/// A mount failed; the ones already done are undone.
pub fn mount_all(
    mounts: &[(String, String, Vec<String>)],
    target: &Path,
) -> Result<(), IsolationError> {
    for (i, (kind, source, options)) in mounts.iter().enumerate() {
        let kind = Some(kind.as_str()).filter(|s| !s.is_empty());
        let source = Some(source.as_str()).filter(|s| !s.is_empty());
        if let Err(e) = containerd_shim::mount::mount_rootfs(kind, source, options, target) {
            if i > 0 {
                unmount(target);
            }
            return Err(IsolationError::Rootfs {
                path: target.to_path_buf(),
                reason: e.to_string(),
            });
        }
    }
    Ok(())
}

/// Unmounts everything stacked on `target` (best effort; logs what stays).
pub fn unmount(target: &Path) {
    for _ in 0..8 {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return,
            Err(e) => {
                warn!("unmounting {} failed: {e}", target.display());
                return;
            }
        }
    }
}

/// Opens `path` (absolute, as the container sees it) inside `rootfs` for reading, if it is a
/// regular file.
///
/// # Errors
/// The file does not exist, cannot be opened, or is not a regular file (`InvalidInput`, with
/// its type: a fifo or device node is never opened for reading).
pub fn open_in_root(rootfs: &Path, path: &Path) -> std::io::Result<File> {
    // O_PATH opens nothing: no fifo wait, no device driver's open.
    let handle = open_in_root_with(rootfs, path, libc::O_PATH)?;
    if let Some(what) = not_regular(&handle.metadata()?.file_type()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is {what}", path.display()),
        ));
    }
    // Reopening the checked descriptor (not the path) reads the very file that was checked.
    File::open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
}

/// What `path` inside `rootfs` is ("a fifo", "a device node"...) when it exists and is not a
/// regular file; `None` for a regular file or nothing there. Looked at, never opened.
pub fn non_regular_in_root(rootfs: &Path, path: &Path) -> Option<&'static str> {
    let handle = open_in_root_with(rootfs, path, libc::O_PATH).ok()?;
    not_regular(&handle.metadata().ok()?.file_type())
}

fn not_regular(file_type: &std::fs::FileType) -> Option<&'static str> {
    Some(if file_type.is_file() {
        return None;
    } else if file_type.is_fifo() {
        "a fifo"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "a device node"
    } else if file_type.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    })
}

fn open_in_root_with(rootfs: &Path, path: &Path, flags: libc::c_int) -> std::io::Result<File> {
    let root = File::open(rootfs)?;
    let relative = path.strip_prefix("/").unwrap_or(path);
    let relative = if relative.as_os_str().is_empty() {
        Path::new(".")
    } else {
        relative
    };
    let name = CString::new(relative.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: open_how is plain integers; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 reads `name` and `how` only for the call; both outlive it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

/// Creates directory `path` (absolute, as the container sees it) and its parents inside
/// `rootfs`, as runc does for a `process.cwd` the image lacks. Symlinks resolve inside the root.
///
/// # Errors
/// A component exists and is not a directory, or cannot be created.
pub fn create_dir_in_root(rootfs: &Path, path: &Path) -> std::io::Result<()> {
    let mut current = PathBuf::from("/");
    for component in path.components().skip_while(|c| c.as_os_str() == "/") {
        let parent = open_in_root_with(rootfs, &current, libc::O_DIRECTORY)?;
        current.push(component);
        let name = CString::new(component.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: mkdirat reads `name` only during the call.
        if unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(e);
            }
        }
    }
    open_in_root_with(rootfs, path, libc::O_DIRECTORY).map(drop)
}

/// True when `path` names a regular file inside `rootfs` (looked at, never opened).
pub fn is_file_in_root(rootfs: &Path, path: &Path) -> bool {
    open_in_root_with(rootfs, path, libc::O_PATH)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.is_file())
}

/// Reads a whole file inside `rootfs`.
///
/// # Errors
/// [`IsolationError::EntrypointNotFound`] when it cannot be opened.
pub fn read_in_root(rootfs: &Path, path: &Path) -> Result<Vec<u8>, IsolationError> {
    let not_found = |e: std::io::Error| IsolationError::EntrypointNotFound {
        path: PathBuf::from(path),
        reason: e.to_string(),
    };
    let mut file = open_in_root(rootfs, path).map_err(not_found)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(not_found)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_decide_the_kind() {
        assert_eq!(classify(b"\0asm\x01\0\0\0"), Some(ProgramKind::Wasm));
        assert_eq!(classify(b"\x7fELF\x02"), Some(ProgramKind::Native));
        assert_eq!(classify(b"#!/bin/sh\n"), Some(ProgramKind::Native));
        assert_eq!(classify(b"hello"), None);
        assert_eq!(classify(b""), None);
    }

    #[test]
    fn a_missing_cwd_is_created_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("link")).unwrap();
        create_dir_in_root(&root, Path::new("/link/work/dir")).unwrap();
        assert!(root.join("real/work/dir").is_dir());
        std::fs::write(root.join("file"), b"x").unwrap();
        assert!(create_dir_in_root(&root, Path::new("/file/sub")).is_err());
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/app"), b"inside").unwrap();
        std::os::unix::fs::symlink("/etc/app", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/app", root.join("dots")).unwrap();
        assert_eq!(read_in_root(&root, Path::new("/abs")).unwrap(), b"inside");
        assert_eq!(read_in_root(&root, Path::new("/dots")).unwrap(), b"inside");
        assert!(is_file_in_root(&root, Path::new("/etc/app")));
        assert!(!is_file_in_root(&root, Path::new("/etc")));
        assert!(!is_file_in_root(&root, Path::new("/missing")));
    }

    /// A fifo at the entrypoint's path (an image layer can hold one) is refused at once: an
    /// open for reading would wait for a writer for good, and Create with it.
    #[test]
    fn a_fifo_is_refused_without_being_opened() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(&root).unwrap();
        nix::unistd::mkfifo(&root.join("app.wasm"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::os::unix::fs::symlink("/app.wasm", root.join("link")).unwrap();
        assert!(!is_file_in_root(&root, Path::new("/app.wasm")));
        let kind = non_regular_in_root(&root, Path::new("/link"));
        assert_eq!(kind, Some("a fifo"));
        assert_eq!(non_regular_in_root(&root, Path::new("/missing")), None);
        for path in ["/app.wasm", "/link"] {
            let err = read_in_root(&root, Path::new(path))
                .unwrap_err()
                .to_string();
            assert!(err.contains("is a fifo"), "{err}");
        }
        assert!(read_in_root(&root, Path::new("/")).is_err());
    }
}
