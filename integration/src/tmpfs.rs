//! The "disk full" fault: a small tmpfs mounted over a directory of a private daemon and filled
//! until only a chosen number of bytes is free.
//!
//! [`FullTmpfs`] is a guard: dropping it unmounts the tmpfs (lazily, so a file still open in it
//! cannot keep the mount), also when the test fails half-way. It only ever mounts over a
//! directory the caller names, which must belong to the test's own daemon.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::statvfs::statvfs;

/// Name of the filler file at the top of the tmpfs.
const FILL: &str = ".wasmpod-it-fill";

/// A tmpfs mounted over a directory; see the module docs.
#[derive(Debug)]
pub struct FullTmpfs {
    path: PathBuf,
}

impl FullTmpfs {
    /// Mounts a tmpfs of `size` bytes over `path` (created when missing). What `path` held
    /// is hidden until the guard is dropped.
    ///
    /// # Errors
    /// When the directory cannot be made or the mount fails (not root).
    pub fn mount(path: &Path, size: u64) -> Result<Self> {
        fs::create_dir_all(path)?;
        let options = format!("size={size},mode=0711");
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .with_context(|| format!("mount a tmpfs over {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// Bytes a non-root writer could still write.
    ///
    /// # Errors
    /// When statvfs fails.
    pub fn free(&self) -> Result<u64> {
        let st = statvfs(&self.path)?;
        Ok(st.blocks_available() * st.fragment_size())
    }

    /// Rewrites the filler so that about `bytes` stay free (rounded down to whole pages, which
    /// is what tmpfs hands out); returns what is free afterwards.
    ///
    /// # Errors
    /// When the filler cannot be written.
    pub fn leave_free(&self, bytes: u64) -> Result<u64> {
        let fill = self.path.join(FILL);
        let mut file = File::create(&fill)?;
        let want = self.free()?.saturating_sub(bytes);
        let chunk = vec![0xa5u8; 64 << 10];
        let mut written = 0u64;
        while written < want {
            let n = usize::try_from(want - written)
                .unwrap_or(chunk.len())
                .min(chunk.len());
            file.write_all(&chunk[..n])
                .with_context(|| format!("fill {}", fill.display()))?;
            written += n as u64;
        }
        file.sync_all()?;
        self.free()
    }

    /// Removes the filler: the space is free again.
    ///
    /// # Errors
    /// When it cannot be removed.
    pub fn release(&self) -> Result<()> {
        match fs::remove_file(self.path.join(FILL)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

impl Drop for FullTmpfs {
    fn drop(&mut self) {
        if let Err(e) = umount2(&self.path, MntFlags::MNT_DETACH) {
            eprintln!("unmount the tmpfs over {}: {e}", self.path.display());
        }
    }
}
