//! Faults in the compile cache (issue: nothing lost, nothing leaked): a cache file truncated or
//! bit-flipped on disk is detected by its digest before anything runs, logged and recompiled;
//! a compile helper killed mid-write leaves no file that is ever mapped, only a temporary one
//! that eviction later removes; a cache that cannot be written still lets the program run.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::super::cache::verify;
use super::*;

fn cached_file(f: &Fixture, bytes: &[u8]) -> PathBuf {
    f.engine
        .load(Path::new(APP), bytes)
        .expect("load")
        .cache_file()
        .to_owned()
}

/// Loads again after damage: recompiled (not a hit), runs correctly, and the file is sound again.
fn recovers(f: &Fixture, bytes: &[u8], file: &Path) {
    let program = f
        .engine
        .load(Path::new(APP), bytes)
        .expect("load after damage");
    assert!(!program.from_cache(), "a damaged file must never be used");
    let run = super::run_captured(f, &program, &super::plan());
    assert_eq!(run.stdout, b"hello\n");
    assert_eq!(verify(file), Ok(()), "the replaced file checks out");
    let again = f.engine.load(Path::new(APP), bytes).expect("load");
    assert!(again.from_cache());
}

#[test]
fn a_flipped_bit_anywhere_is_detected() {
    let f = fixture();
    let bytes = wat(HELLO);
    let file = cached_file(&f, &bytes);
    let good = std::fs::read(&file).unwrap();
    assert_eq!(verify(&file), Ok(()));
    // The code, the middle, the trailer's digest and its magic: each flip is caught.
    for offset in [64, good.len() / 2, good.len() - 1, good.len() - 40] {
        let mut bad = good.clone();
        bad[offset] ^= 0x10;
        std::fs::write(&file, &bad).unwrap();
        assert!(
            verify(&file).is_err(),
            "flip at {offset} of {} undetected",
            good.len()
        );
    }
    recovers(&f, &bytes, &file);
}

#[test]
fn a_truncated_file_is_recompiled() {
    let f = fixture();
    let bytes = wat(HELLO);
    let file = cached_file(&f, &bytes);
    let good = std::fs::read(&file).unwrap();
    std::fs::write(&file, &good[..good.len() / 3]).unwrap();
    assert!(verify(&file).unwrap_err().contains("trailer"));
    recovers(&f, &bytes, &file);
    std::fs::write(&file, &good[..10]).unwrap();
    assert!(verify(&file).unwrap_err().contains("truncated"));
    recovers(&f, &bytes, &file);
}

/// A helper that dies (SIGKILL) after writing half a temporary file: the load compiles in the
/// shim, the half file is never mapped, and eviction removes it once it is old.
#[test]
fn a_helper_killed_mid_write_leaves_nothing_that_is_mapped() {
    let f = fixture();
    let work = tempfile::tempdir().unwrap();
    let helper = work.path().join("helper.sh");
    let tmp_name = ".deadbeef.cwasm.999.0.tmp";
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\ncat >/dev/null\nhead -c 1000 /dev/urandom > '{}/{tmp_name}'\nkill -9 $$\n",
            f.cache_dir().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let engine = WasmEngine::new(EngineConfig {
        compile_helper: Some(helper),
        ..EngineConfig::with_cache_dir(f.cache_dir())
    })
    .expect("engine");
    let bytes = wat(HELLO);
    let program = engine.load(Path::new(APP), &bytes).expect("load");
    assert!(!program.from_cache());
    assert_eq!(verify(program.cache_file()), Ok(()));
    let leftover = f.cache_dir().join(tmp_name);
    assert!(
        leftover.exists(),
        "a fresh temporary file may belong to a live writer"
    );

    let old = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&leftover)
        .unwrap()
        .set_modified(old)
        .unwrap();
    super::super::evict::evict(f.cache_dir(), u64::MAX, program.cache_file());
    assert!(!leftover.exists(), "an abandoned temporary file is removed");
}

/// The cache file cannot be written (here: a directory is in its way, which stops root too):
/// the program runs from memory and nothing fails.
#[test]
fn an_unwritable_cache_still_runs_the_program() {
    let f = fixture();
    let bytes = wat(HELLO);
    let file = cached_file(&f, &bytes);
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    std::fs::write(file.join("keep"), b"x").unwrap();

    let program = f
        .engine
        .load(Path::new(APP), &bytes)
        .expect("load without a cache");
    assert!(!program.from_cache());
    let run = super::run_captured(&f, &program, &super::plan());
    assert_eq!(run.stdout, b"hello\n");
    assert!(file.is_dir(), "nothing was written over it");
}

/// A cache directory that cannot even be created: the engine still starts, programs run.
#[test]
fn a_cache_directory_that_cannot_be_created_is_not_fatal() {
    let work = tempfile::tempdir().unwrap();
    let blocker = work.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let engine =
        WasmEngine::new(EngineConfig::with_cache_dir(blocker.join("cache"))).expect("engine");
    let program = engine.load(Path::new(APP), &wat(HELLO)).expect("load");
    let f = fixture();
    let run = super::run_captured(&f, &program, &super::plan());
    assert_eq!(run.stdout, b"hello\n");
}

/// A file checked once it has been quiet for a while is recorded as checked (`verified`), so
/// that loads after it skip reading it whole; damage after that is still caught, since the
/// write changes what the record names.
#[test]
fn a_checked_file_is_recorded_and_damage_after_it_is_still_caught() {
    let f = fixture();
    let bytes = wat(HELLO);
    let file = cached_file(&f, &bytes);
    let record = f
        .cache_dir()
        .join("verified")
        .join(file.file_name().unwrap());
    assert!(!record.exists(), "a file just written is not recorded");
    std::thread::sleep(super::super::verified::QUIET);
    assert!(f.engine.load(Path::new(APP), &bytes).unwrap().from_cache());
    assert!(record.exists(), "a quiet file checked is recorded");
    assert!(f.engine.load(Path::new(APP), &bytes).unwrap().from_cache());

    let mut bad = std::fs::read(&file).unwrap();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x01;
    std::fs::write(&file, &bad).unwrap();
    recovers(&f, &bytes, &file);
}
