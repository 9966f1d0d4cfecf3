//! The `wasmpod image ...` subcommands: one file per command, each with its
//! clap `Args` and a `run` that calls the library and prints. Binary-only
//! (errors are `anyhow` here, typed in the library).

pub mod build;
pub mod import;
pub mod inspect;
pub mod install;
pub mod registry;

use std::path::Path;

/// Whether a command-line TARGET names a local file (an existing path, or
/// one that looks like a path: `./x`, `/x`, `x.tar`, `x.wasm`) rather than
/// a registry reference. A typo in a file name must not turn into a pull.
pub fn is_local(target: &str) -> bool {
    Path::new(target).exists()
        || target.starts_with(['/', '.'])
        || [".tar", ".wasm", ".json"]
            .iter()
            .any(|suffix| target.ends_with(suffix))
}
