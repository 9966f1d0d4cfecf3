//! Which compile cache files had their whole digest checked since the node booted, so that a
//! program started again is mapped without reading and hashing its whole artifact first: that
//! check costs about 0.1 ms for a hello, and grows with the artifact (tens of milliseconds for
//! the tens of megabytes of a language runtime), on every start.
//!
//! A record `<cache>/verified/<file name>` holds the node's boot id and what identified the
//! file when its digest checked out: device, inode, size and change time. A write to the file
//! changes its change time, a replacement its inode, a reboot the boot id: each makes the
//! record stale, and the next load checks the whole file again. A file is recorded only once
//! its change time is [`QUIET`] old: the kernel stamps it from a coarse clock, and a write in
//! the same tick as the check would leave it as it was. What a record cannot see is a change
//! behind the kernel's back while the node runs (a disk returning other bytes for a page the
//! page cache let go); after a reboot every file is checked whole again.

use std::fs::{self, DirBuilder, Metadata};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// How old a file's change time must be before a check of it is recorded.
pub(crate) const QUIET: Duration = Duration::from_secs(2);

/// The directory of the records, inside the cache directory.
const DIR: &str = "verified";

/// Whether `file`, as `meta` describes it now, is the file whose digest was checked.
pub(crate) fn is_current(cache_dir: &Path, file: &Path, meta: &Metadata) -> bool {
    let Some(line) = identity(meta) else {
        return false;
    };
    record_path(cache_dir, file)
        .and_then(|path| fs::read_to_string(path).ok())
        .is_some_and(|recorded| recorded == line)
}

/// Records that `file`, as `meta` described it while its digest was checked, checked out.
/// Best effort: a record that cannot be written only means a full check next time.
pub(crate) fn record(cache_dir: &Path, file: &Path, meta: &Metadata) {
    let quiet = changed_at(meta)
        .and_then(|at| SystemTime::now().duration_since(at).ok())
        .is_some_and(|age| age >= QUIET);
    if !quiet {
        return;
    }
    let (Some(line), Some(path)) = (identity(meta), record_path(cache_dir, file)) else {
        return;
    };
    let written = DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(cache_dir.join(DIR))
        .and_then(|()| fs::write(&path, line));
    if let Err(e) = written {
        log::debug!("cannot record {} as checked: {e}", file.display());
    }
}

/// Forgets `file`'s record (the file was removed).
pub(crate) fn forget(cache_dir: &Path, file: &Path) {
    if let Some(path) = record_path(cache_dir, file) {
        let _ = fs::remove_file(path);
    }
}

/// Removes the records of files that are gone (removed by hand, or while a record was made).
pub(crate) fn forget_missing(cache_dir: &Path) {
    let Ok(records) = fs::read_dir(cache_dir.join(DIR)) else {
        return;
    };
    for record in records.flatten() {
        if !cache_dir.join(record.file_name()).exists() {
            let _ = fs::remove_file(record.path());
        }
    }
}

fn record_path(cache_dir: &Path, file: &Path) -> Option<PathBuf> {
    Some(cache_dir.join(DIR).join(file.file_name()?))
}

/// The record's line for a file described by `meta`; None without a boot id.
fn identity(meta: &Metadata) -> Option<String> {
    Some(format!(
        "{} {} {} {} {} {}\n",
        boot_id()?,
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.ctime(),
        meta.ctime_nsec()
    ))
}

fn changed_at(meta: &Metadata) -> Option<SystemTime> {
    let secs = u64::try_from(meta.ctime()).ok()?;
    let nanos = u32::try_from(meta.ctime_nsec()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// The kernel's id of this boot, read once.
fn boot_id() -> Option<&'static str> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty())
    })
    .as_deref()
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;

    /// A file whose change time is `QUIET` old: its metadata as if it had been checked then.
    fn quiet_file(dir: &Path) -> (PathBuf, Metadata) {
        let file = dir.join("a.cwasm");
        fs::write(&file, b"artifact").unwrap();
        let meta = fs::metadata(&file).unwrap();
        std::thread::sleep(QUIET);
        (file, meta)
    }

    #[test]
    fn a_recorded_file_is_current_until_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (file, meta) = quiet_file(dir.path());
        assert!(
            !is_current(dir.path(), &file, &meta),
            "nothing recorded yet"
        );
        record(dir.path(), &file, &meta);
        assert!(is_current(dir.path(), &file, &fs::metadata(&file).unwrap()));

        // The same size, written in place: the change time moves.
        fs::write(&file, b"artefact").unwrap();
        assert!(!is_current(
            dir.path(),
            &file,
            &fs::metadata(&file).unwrap()
        ));
    }

    #[test]
    fn a_replaced_or_removed_file_is_not_current() {
        let dir = tempfile::tempdir().unwrap();
        let (file, meta) = quiet_file(dir.path());
        record(dir.path(), &file, &meta);
        let other = dir.path().join("b.tmp");
        fs::write(&other, b"artifact").unwrap();
        fs::rename(&other, &file).unwrap();
        assert!(!is_current(
            dir.path(),
            &file,
            &fs::metadata(&file).unwrap()
        ));

        record(dir.path(), &file, &meta);
        fs::remove_file(&file).unwrap();
        forget_missing(dir.path());
        assert!(!dir.path().join(DIR).join("a.cwasm").exists());
    }

    #[test]
    fn a_file_changed_just_now_is_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.cwasm");
        fs::write(&file, b"artifact").unwrap();
        let meta = File::open(&file).unwrap().metadata().unwrap();
        record(dir.path(), &file, &meta);
        assert!(!is_current(dir.path(), &file, &meta));
    }

    #[test]
    fn forgetting_removes_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let (file, meta) = quiet_file(dir.path());
        record(dir.path(), &file, &meta);
        forget(dir.path(), &file);
        assert!(!is_current(dir.path(), &file, &meta));
    }
}
