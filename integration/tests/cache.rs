//! The compile-once cache: with `WASMPOD_CACHE_DIR` in containerd's environment (which its
//! shims inherit) compiled code lands in `<dir>/<sha256>.cwasm`, one file per program, and a
//! later run maps that file instead of compiling again.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use wasmpod_integration::{images, with_containerd_env};

/// Every entry of the cache dir, sorted.
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut all: Vec<PathBuf> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    all.sort();
    Ok(all)
}

/// True for a `<64 hex digits>.cwasm` file name.
fn is_cwasm(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.strip_suffix(".cwasm")
        .is_some_and(|sha| sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Inode and size of `p`. The shim stores a compiled file by writing a temporary file and
/// renaming it over the name, so a recompile always shows as a new inode. (The mtime is no
/// evidence: a cache hit refreshes it, it is the cache's least-recently-used clock.)
fn identity(p: &Path) -> Result<(u64, u64)> {
    let m = fs::metadata(p)?;
    Ok((m.ino(), m.len()))
}

/// Lines of the shim log (in containerd's) that report a compile done by the compile helper.
fn helper_compiles(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("compiled in the compile helper"))
        .count()
}

/// The first run of hello leaves exactly one `<sha>.cwasm` in the private cache dir; a second
/// run leaves that same file (same inode) and nothing new, so it did not compile;
/// running a different program adds a second file. Each compile ran in the shim's compile
/// helper process, not in the shim (whose memory would keep the compiler's heap).
#[test]
fn compiles_each_program_once() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let cache = tmp.path().join("cache");
    let cache_env = cache.display().to_string();
    with_containerd_env(&[("WASMPOD_CACHE_DIR", &cache_env)], |ctd| {
        let hello = images().wasm("hello")?;
        let other = images().wasm("exit-code")?;
        ctd.import(&hello)?.import(&other)?;

        let out = ctd.run(&hello).exec()?;
        out.success()?;
        ensure!(out.stdout == "hello from wasmpod\n", "{out}");
        let first = entries(&cache)?;
        ensure!(
            first.len() == 1 && is_cwasm(&first[0]),
            "want exactly one <sha>.cwasm in {} after the first run, found {first:?}",
            cache.display()
        );
        let before = identity(&first[0])?;
        ensure!(
            helper_compiles(&ctd.log_tail(400)) == 1,
            "want one compile by the helper; log: {}",
            ctd.log_tail(40)
        );

        let out = ctd.run(&hello).exec()?;
        out.success()?;
        ensure!(out.stdout == "hello from wasmpod\n", "{out}");
        let second = entries(&cache)?;
        ensure!(
            second == first,
            "second run changed the cache: {first:?} -> {second:?}"
        );
        let after = identity(&first[0])?;
        ensure!(
            after == before,
            "{} was rewritten (inode, size) {before:?} -> {after:?}: the second run compiled",
            first[0].display()
        );

        ctd.run(&other).args(["0"]).exec()?.success()?;
        let third = entries(&cache)?;
        ensure!(
            third.len() == 2 && third.iter().all(|p| is_cwasm(p)) && third.contains(&first[0]),
            "want hello's file plus one for exit-code, found {third:?}"
        );
        ensure!(
            helper_compiles(&ctd.log_tail(400)) == 2,
            "want two compiles by the helper, hello's and exit-code's; log: {}",
            ctd.log_tail(40)
        );
        Ok(())
    })
}

/// A cache file damaged on disk (one bit flipped) is caught by its digest before it is mapped:
/// the next run recompiles (a new inode), says why in the shim log, and prints the right output.
#[test]
fn a_bit_flipped_cache_file_is_detected_and_recompiled() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let cache = tmp.path().join("cache");
    let cache_env = cache.display().to_string();
    with_containerd_env(&[("WASMPOD_CACHE_DIR", &cache_env)], |ctd| {
        let hello = images().wasm("hello")?;
        ctd.import(&hello)?;
        ctd.run(&hello).exec()?.success()?;
        let file = entries(&cache)?.into_iter().find(|p| is_cwasm(p));
        let Some(file) = file else {
            anyhow::bail!("no cache file after the first run");
        };
        let original = fs::read(&file)?;
        let mut bytes = original.clone();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        fs::write(&file, &bytes)?;

        let out = ctd.run(&hello).exec()?;
        out.success()?;
        ensure!(out.stdout == "hello from wasmpod\n", "{out}");
        // By content: the recompiled file may well get the freed inode number back.
        ensure!(
            fs::read(&file)? == original,
            "the cache file is not the recompiled program: the damaged file was kept"
        );
        let log = ctd.log_tail(400);
        ensure!(
            log.contains("digest mismatch") && log.contains("recompiling"),
            "no digest line in the log: {}",
            ctd.log_tail(40)
        );
        Ok(())
    })
}

/// A full cache filesystem (a 4 KiB tmpfs): the container still starts, the program runs from
/// memory, and the shim says so once per load.
#[test]
fn a_full_cache_filesystem_still_runs_the_program() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let cache = tmp.path().join("cache");
    fs::create_dir(&cache)?;
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4k,mode=0700", "tmpfs"])
        .arg(&cache)
        .status()?;
    ensure!(mounted.success(), "mount a 4k tmpfs");
    let _unmount = Unmount(cache.clone());
    let cache_env = cache.display().to_string();
    with_containerd_env(&[("WASMPOD_CACHE_DIR", &cache_env)], |ctd| {
        let hello = images().wasm("hello")?;
        ctd.import(&hello)?;
        let out = ctd.run(&hello).exec()?;
        out.success()?;
        ensure!(out.stdout == "hello from wasmpod\n", "{out}");
        let warnings = ctd.log_lines_with("running this program from memory");
        ensure!(
            warnings.len() == 1,
            "want one warning, got {warnings:?}; log: {}",
            ctd.log_tail(30)
        );
        ensure!(
            entries(&cache)?.iter().all(|p| !is_cwasm(p)),
            "nothing complete fits"
        );
        Ok(())
    })
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}
