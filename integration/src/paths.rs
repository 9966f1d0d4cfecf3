//! Where the binaries under test and the tools live, from the environment.
//!
//! Owns the environment variables the suite reads; nothing else here looks at `std::env`.
//! It must not build anything: a missing binary is reported with the command that builds it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// Runtime type of the shim under test.
pub const WASMPOD_RUNTIME: &str = "io.containerd.wasmpod.v1";

/// The annotation that puts containers in one opt-in wasmpod group (one shim for them all).
pub const GROUP_ANNOTATION: &str = "io.containerd.wasmpod.group";
/// Runtime type of containerd's own runc shim.
pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";
/// File name containerd derives from [`WASMPOD_RUNTIME`].
pub const SHIM_BINARY: &str = "containerd-shim-wasmpod-v1";

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Directory holding the wasmpod shim and CLI: `WASMPOD_BIN_DIR`, default `target/release`.
pub fn bin_dir() -> PathBuf {
    env_path("WASMPOD_BIN_DIR").unwrap_or_else(|| workspace_root().join("target/release"))
}

/// Path of the shim binary containerd will find first on its `PATH`.
pub fn shim_path() -> PathBuf {
    bin_dir().join(SHIM_BINARY)
}

/// Path of the `wasmpod` CLI: `WASMPOD_CLI`, default `<bin dir>/wasmpod`.
pub fn cli_path() -> PathBuf {
    env_path("WASMPOD_CLI").unwrap_or_else(|| bin_dir().join("wasmpod"))
}

/// The containerd binary: `WASMPOD_CONTAINERD`, default `/usr/bin/containerd`.
pub fn containerd_path() -> PathBuf {
    env_path("WASMPOD_CONTAINERD").unwrap_or_else(|| PathBuf::from("/usr/bin/containerd"))
}

/// The ctr binary: `WASMPOD_CTR`, else the `ctr` next to containerd, else `/usr/bin/ctr`.
pub fn ctr_path() -> PathBuf {
    if let Some(p) = env_path("WASMPOD_CTR") {
        return p;
    }
    let beside = containerd_path().with_file_name("ctr");
    if beside.is_file() {
        beside
    } else {
        PathBuf::from("/usr/bin/ctr")
    }
}

/// Built test programs: `WASMPOD_TEST_PROGRAMS`, default `test-images/out`.
pub fn programs_dir() -> PathBuf {
    env_path("WASMPOD_TEST_PROGRAMS").unwrap_or_else(|| workspace_root().join("test-images/out"))
}

/// Fails with a clear message when the wasmpod shim binary has not been built.
///
/// # Errors
/// When [`shim_path`] is not an executable file.
pub fn require_shim() -> Result<PathBuf> {
    let p = shim_path();
    if !is_executable(&p) {
        bail!(
            "the wasmpod shim is missing: {} does not exist or is not executable \
             (build it with `cargo build --release -p wasmpod-shim`, or point WASMPOD_BIN_DIR \
             at the directory holding {SHIM_BINARY})",
            p.display()
        );
    }
    Ok(p)
}

/// Fails with a clear message when the wasmpod CLI has not been built.
///
/// # Errors
/// When [`cli_path`] is not an executable file.
pub fn require_cli() -> Result<PathBuf> {
    let p = cli_path();
    if !is_executable(&p) {
        bail!(
            "the wasmpod CLI is missing: {} does not exist or is not executable \
             (build it with `cargo build --release -p wasmpod-image-tools`, or set WASMPOD_CLI)",
            p.display()
        );
    }
    Ok(p)
}

/// True when `p` is a regular file with an execute bit.
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
