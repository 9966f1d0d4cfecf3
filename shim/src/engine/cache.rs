//! The compile-once cache of `.cwasm` files.
//!
//! Key: `sha256(engine compatibility digest ‖ wasm bytes)` in hex, so the same program under
//! the same wasmtime build and settings maps to one file, and any change to either (a
//! wasmtime upgrade, a new memory layout) simply misses. File: `<cache_dir>/<key>.cwasm`.
//!
//! Hits are mapped with `deserialize_file` (mmap of a file in the page cache): every container
//! running the same program shares one copy of its machine code and of its initial data.
//!
//! Writes go to a unique temporary file in the same directory, are fsynced and renamed over
//! the final name. Concurrent shims compiling the same program therefore race harmlessly
//! (both write identical bytes, the last rename wins) and nobody ever maps a half-written file.
//! A file is never modified in place, which also keeps existing mappings valid (truncating a
//! mapped file would SIGBUS the guests using it).
//!
//! # Integrity
//!
//! wasmtime checks an artifact's header and engine compatibility, not its code: a bit flipped
//! on disk would run. So every file ends in a trailer, [`TRAILER_MAGIC`] and the sha256 of
//! everything before it, and a file is mapped only after its digest checks out (reading a
//! file that is in the page cache costs a fraction of a millisecond per MB with SHA-NI). A
//! truncated, corrupt or trailer-less file is logged, removed and recompiled; it never runs.
//! A file that checked out is recorded as checked (`verified`): until it changes or the node
//! reboots, loads of it skip reading it whole.
//!
//! # When the directory cannot be written
//!
//! A full or read-only cache directory does not stop a container: the artifact compiled in
//! the shim is used from memory (private to that container, not shared), with a warning.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::hash::Hasher;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::error::{reason, EngineError};

/// Distinguishes temporary files of concurrent loads within one process (the pid distinguishes
/// processes).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Marks the end of a cache file: magic, then the sha256 of everything before the trailer.
pub(crate) const TRAILER_MAGIC: &[u8; 8] = b"wpodsum1";
const TRAILER_LEN: usize = TRAILER_MAGIC.len() + 32;

/// The cache directory plus the digest of everything about the engine that compiled code
/// depends on.
#[derive(Debug)]
pub(crate) struct CompileCache {
    dir: PathBuf,
    engine_digest: [u8; 32],
    /// Size bound of the directory's `.cwasm` files; least recently used go first.
    max_bytes: u64,
    /// Compiles on a miss out of process (see [`super::helper`]); `None`: in process.
    helper: Option<PathBuf>,
    /// The helper's arguments after the command: which engine to build.
    helper_args: Vec<&'static str>,
}

/// Result of [`CompileCache::load_or_compile`].
pub(crate) struct Cached<T> {
    /// The deserialized module or component.
    pub value: T,
    /// The `.cwasm` file it is mapped from.
    pub file: PathBuf,
    /// `true` if the file existed and was usable: nothing was compiled.
    pub hit: bool,
}

impl CompileCache {
    /// Opens (creating if needed) the cache directory for `engine`.
    pub(crate) fn open(
        dir: &Path,
        engine: &wasmtime::Engine,
        max_bytes: u64,
        helper: Option<PathBuf>,
        helper_args: Vec<&'static str>,
    ) -> Result<Self, EngineError> {
        let created = DirBuilder::new()
            .recursive(true)
            // The engine maps these files as code: nobody else may write here.
            .mode(0o700)
            .create(dir);
        if let Err(source) = created {
            // Containers still start: every store fails and programs run from memory.
            log::warn!(
                "{}; programs will be compiled for each container",
                EngineError::CacheDir {
                    path: dir.to_owned(),
                    source
                }
            );
        }
        Ok(Self {
            dir: dir.to_owned(),
            engine_digest: engine_digest(engine),
            max_bytes,
            helper,
            helper_args,
        })
    }

    /// The file that holds (or will hold) the compiled form of `wasm`.
    pub(crate) fn file_for(&self, wasm: &[u8]) -> PathBuf {
        let mut hasher = Sha256::new();
        hasher.update(self.engine_digest);
        hasher.update(wasm);
        self.dir.join(format!("{}.cwasm", hex(&hasher.finalize())))
    }

    /// Maps the cached compiled form of `wasm`, compiling and storing it first on a miss.
    ///
    /// `compile` must return the serialized artifact (`Engine::precompile_*`); `deserialize`
    /// maps a file produced by it. A cache file that exists but cannot be deserialized
    /// (truncated, corrupt, foreign) is logged, recompiled and atomically replaced.
    ///
    /// # Errors
    ///
    /// Whatever `compile` returns; [`EngineError::CacheWrite`] if the artifact cannot be
    /// stored; [`EngineError::CacheLoad`] if the freshly stored file cannot be mapped.
    pub(crate) fn load_or_compile<T>(
        &self,
        wasm: &[u8],
        compile: impl FnOnce() -> Result<Vec<u8>, EngineError>,
        deserialize: impl Fn(&Path) -> wasmtime::Result<T>,
        deserialize_bytes: impl FnOnce(&[u8]) -> wasmtime::Result<T>,
    ) -> Result<Cached<T>, EngineError> {
        let file = self.file_for(wasm);
        // Looked at, then opened: racy, but losing the race only means a spurious miss below.
        let meta = fs::metadata(&file).ok();
        if let Some(meta) = meta.as_ref().filter(|meta| self.intact(&file, meta)) {
            match deserialize(&file) {
                Ok(value) => {
                    log::debug!("compile cache hit: {}", file.display());
                    super::evict::touch(&file, meta);
                    return Ok(Cached {
                        value,
                        file,
                        hit: true,
                    });
                }
                Err(err) => log::warn!(
                    "discarding unusable compile cache file {}: {}; recompiling",
                    file.display(),
                    reason(&err)
                ),
            }
        }

        if let Some(helper) = &self.helper {
            let compiled = super::helper::compile_in(helper, &self.helper_args, wasm)
                .and_then(|()| verify(&file));
            match compiled.map(|()| deserialize(&file)) {
                Ok(Ok(value)) => {
                    log::info!("compiled in the compile helper: {}", file.display());
                    return Ok(Cached {
                        value,
                        file,
                        hit: false,
                    });
                }
                Ok(Err(err)) => log::info!(
                    "compile helper left no usable {}: {}; compiling in the shim",
                    file.display(),
                    reason(&err)
                ),
                Err(why) => log::info!("compile helper failed: {why}; compiling in the shim"),
            }
        }
        let artifact = compile()?;
        if let Err(err) = self.store(&file, &artifact) {
            log::warn!("{err}; running this program from memory, not shared with others");
            let value = deserialize_bytes(&artifact).map_err(|err| EngineError::CacheLoad {
                path: file.clone(),
                reason: reason(&err),
            })?;
            return Ok(Cached {
                value,
                file,
                hit: false,
            });
        }
        // Map the file rather than the in-memory artifact: the page cache copy is shared with
        // every other container running this program, the Vec would be private to this one.
        let value = deserialize(&file).map_err(|err| EngineError::CacheLoad {
            path: file.clone(),
            reason: reason(&err),
        })?;
        Ok(Cached {
            value,
            file,
            hit: false,
        })
    }
}

impl CompileCache {
    /// Stores `artifact` as `file` (from [`Self::file_for`]) and keeps the cache in its bound.
    pub(crate) fn store(&self, file: &Path, artifact: &[u8]) -> Result<(), EngineError> {
        let digest = Sha256::digest(artifact);
        let mut trailer = Vec::with_capacity(TRAILER_LEN);
        trailer.extend_from_slice(TRAILER_MAGIC);
        trailer.extend_from_slice(&digest);
        write_atomically(file, &[artifact, &trailer])?;
        log::debug!("compile cache store: {}", file.display());
        super::evict::evict(&self.dir, self.max_bytes, file);
        Ok(())
    }
}

impl CompileCache {
    /// Whether `file`'s digest checks out; a file that fails is logged and removed.
    /// Whether `file` (`meta` now) is whole: checked since the node booted and unchanged
    /// since (`verified`), or its digest checks out now.
    fn intact(&self, file: &Path, meta: &fs::Metadata) -> bool {
        if super::verified::is_current(&self.dir, file, meta) {
            return true;
        }
        match verify_file(file) {
            Ok(checked) => {
                if let Some(checked) = checked {
                    super::verified::record(&self.dir, file, &checked);
                }
                true
            }
            Err(why) => {
                super::verified::forget(&self.dir, file);
                log::warn!(
                    "compile cache file {} is unusable ({why}): removed, recompiling",
                    file.display()
                );
                let _ = fs::remove_file(file);
                false
            }
        }
    }
}

/// Checks a cache file's trailer and digest, reading the file in chunks: a large artifact
/// must not cost its size in the shim's memory.
pub(crate) fn verify(file: &Path) -> Result<(), String> {
    verify_file(file).map(|_| ())
}

/// [`verify`], which also returns the metadata of the file checked when it did not change
/// while it was read (then that is the file whose digest checked out).
fn verify_file(file: &Path) -> Result<Option<fs::Metadata>, String> {
    use std::os::unix::fs::MetadataExt;
    let mut f = File::open(file).map_err(|e| format!("cannot read it: {e}"))?;
    let before = f.metadata().map_err(|e| format!("cannot read it: {e}"))?;
    verify_open(&mut f, before.len())?;
    let same = |after: &fs::Metadata| {
        (after.ctime(), after.ctime_nsec(), after.len())
            == (before.ctime(), before.ctime_nsec(), before.len())
    };
    Ok(f.metadata().ok().filter(same).map(|_| before))
}

fn verify_open(mut f: &mut File, len: u64) -> Result<(), String> {
    use std::io::Read;
    let Some(body_len) = len.checked_sub(TRAILER_LEN as u64) else {
        return Err(format!("truncated: {len} bytes"));
    };
    let mut hasher = Sha256::new();
    let copied = io::copy(&mut (&mut f).take(body_len), &mut hasher)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let mut trailer = [0u8; TRAILER_LEN];
    f.read_exact(&mut trailer)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if copied != body_len {
        return Err(format!(
            "truncated while read: {copied} of {body_len} bytes"
        ));
    }
    if &trailer[..TRAILER_MAGIC.len()] != TRAILER_MAGIC {
        return Err("no integrity trailer (truncated, or written by another version)".into());
    }
    if hasher.finalize()[..] != trailer[TRAILER_MAGIC.len()..] {
        return Err("digest mismatch: the file changed on disk".into());
    }
    Ok(())
}

/// sha256 of the engine's `precompile_compatibility_hash` stream: wasmtime version, compiler,
/// target flags, tunables and enabled features.
fn engine_digest(engine: &wasmtime::Engine) -> [u8; 32] {
    let mut hasher = Sha256Hasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    hasher.0.finalize().into()
}

/// Feeds everything `Hash` writes into sha256, so the digest is stable across processes
/// (unlike `DefaultHasher`, whose keys are random per process).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        // Never used: the digest is taken from the inner sha256 state.
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            // Writing into a String cannot fail.
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Writes `parts` to `dest` so that readers see either the old file or the complete new one.
fn write_atomically(dest: &Path, parts: &[&[u8]]) -> Result<(), EngineError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| EngineError::CacheWrite { path, source }
    };

    let result = write_and_sync(&tmp, parts)
        .map_err(write_err(&tmp))
        .and_then(|()| fs::rename(&tmp, dest).map_err(write_err(dest)));
    if result.is_err() {
        // Leave no garbage behind; the original error is what matters.
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Persist the rename itself. Failing here loses nothing but durability across a power
    // cut, after which the file is simply missing and gets recompiled.
    if let Err(err) = File::open(dir).and_then(|d| d.sync_all()) {
        log::debug!(
            "cannot fsync compile cache directory {}: {err}",
            dir.display()
        );
    }
    Ok(())
}

fn write_and_sync(path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    for part in parts {
        file.write_all(part)?;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab]), "000fab");
    }

    #[test]
    fn key_depends_on_bytes_and_is_stable() -> Result<(), EngineError> {
        let dir = tempfile::tempdir().map_err(|source| EngineError::CacheDir {
            path: PathBuf::new(),
            source,
        })?;
        let engine = wasmtime::Engine::default();
        let a = CompileCache::open(dir.path(), &engine, u64::MAX, None, vec![])?;
        let b = CompileCache::open(dir.path(), &engine, u64::MAX, None, vec![])?;
        assert_eq!(a.file_for(b"one"), b.file_for(b"one"));
        assert_ne!(a.file_for(b"one"), a.file_for(b"two"));
        let name = a.file_for(b"one");
        let name = name.file_name().map(|n| n.to_string_lossy().into_owned());
        assert!(name.is_some_and(|n| n.len() == 64 + ".cwasm".len() && n.ends_with(".cwasm")));
        Ok(())
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let dest = dir.path().join("x.cwasm");
        write_atomically(&dest, &[b"first"])?;
        write_atomically(&dest, &[b"sec", b"ond"])?;
        assert_eq!(fs::read(&dest)?, b"second");
        assert_eq!(fs::read_dir(dir.path())?.count(), 1);
        Ok(())
    }
}
