//! The size bound of the compile cache: least recently used `.cwasm` files go first.
//!
//! "Used" is the file's mtime, which a cache hit refreshes. Removing a file that running
//! containers have mapped is safe: the mapping keeps the inode alive until they exit.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A temporary file older than this was left by a writer that died (a compile helper killed
/// mid-write); a live one finishes in far less.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

fn remove_if_abandoned(path: &Path, meta: &fs::Metadata) {
    let age = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok());
    if age.is_some_and(|age| age > ABANDONED_AFTER) && fs::remove_file(path).is_ok() {
        log::info!(
            "compile cache: removed abandoned temporary file {}",
            path.display()
        );
    }
}

/// How recent a use eviction needs to know of: a file used within it is not marked again.
pub(crate) const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Marks `file` (whose metadata is `meta`) as just used, unless it was within
/// [`TOUCH_EVERY`]. Best effort. Not at every use: marking it changes its change time too,
/// and with it what records it as checked (`verified`), which a busy program would then never
/// keep.
pub(crate) fn touch(file: &Path, meta: &fs::Metadata) {
    let recent = meta
        .modified()
        .ok()
        .and_then(|at| SystemTime::now().duration_since(at).ok())
        .is_some_and(|age| age < TOUCH_EVERY);
    if recent {
        return;
    }
    if let Ok(f) = fs::File::open(file) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Removes the least recently used `.cwasm` files of `dir` until their total size is at most
/// `max_bytes`; never `keep` (the file just stored). Returns the files removed.
pub(crate) fn evict(dir: &Path, max_bytes: u64, keep: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let path = e.path();
            let meta = e.metadata().ok()?;
            if path.extension()? == "tmp" {
                remove_if_abandoned(&path, &meta);
                return None;
            }
            if path.extension()? != "cwasm" {
                return None;
            }
            Some((meta.modified().ok()?, meta.len(), path))
        })
        .collect();
    let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
    files.sort();
    let mut removed = Vec::new();
    for (_, len, path) in files {
        if total <= max_bytes {
            break;
        }
        if path == keep {
            continue;
        }
        if fs::remove_file(&path).is_ok() {
            super::verified::forget(dir, &path);
            log::info!(
                "compile cache over {} MiB: evicted {}",
                max_bytes >> 20,
                path.display()
            );
            total = total.saturating_sub(len);
            removed.push(path);
        }
    }
    super::verified::forget_missing(dir);
    removed
}

#[cfg(test)]
mod tests {

    use super::*;

    fn file(dir: &Path, name: &str, len: usize, age_secs: u64) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, vec![0u8; len]).unwrap();
        let f = fs::File::open(&path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(age_secs))
            .unwrap();
        path
    }

    #[test]
    fn the_least_recently_used_go_first_and_the_new_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let old = file(dir.path(), "old.cwasm", 400, 300);
        let mid = file(dir.path(), "mid.cwasm", 400, 200);
        let new = file(dir.path(), "new.cwasm", 400, 0);
        let other = file(dir.path(), "notes.txt", 10_000, 900);
        let removed = evict(dir.path(), 800, &new);
        assert_eq!(removed, vec![old.clone()]);
        assert!(!old.exists() && mid.exists() && new.exists() && other.exists());
    }

    #[test]
    fn a_touched_file_counts_as_recent() {
        let dir = tempfile::tempdir().unwrap();
        let a = file(dir.path(), "a.cwasm", 400, 300);
        let b = file(dir.path(), "b.cwasm", 400, 200);
        let c = file(dir.path(), "c.cwasm", 400, 0);
        touch(&a, &fs::metadata(&a).unwrap());
        assert_eq!(evict(dir.path(), 800, &c), vec![b]);
        assert!(a.exists());
    }

    #[test]
    fn under_the_bound_nothing_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let a = file(dir.path(), "a.cwasm", 400, 300);
        assert!(evict(dir.path(), 1000, &a).is_empty());
    }
}
