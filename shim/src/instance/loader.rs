//! From a spec's process to a workload: find the program in the rootfs (else in the image's raw
//! wasm layers), classify it, load and check wasm (compile once, cached), map the spec to a WASI
//! plan.

use std::borrow::Cow;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use log::{debug, warn};
use oci_spec::runtime::Spec;

use super::guest::WasmGuest;
use super::layers::ImageLayers;
use crate::engine::{http::exports_http_handler, EngineConfig, Serving, WasmEngine};
use crate::error::Result;
use crate::image::manifest;
use crate::isolation::rootfs::{self, ProgramKind};
use crate::isolation::{IsolationError, Workload};
use crate::spec;

/// Where compiled modules are cached unless `WASMPOD_CACHE_DIR` says otherwise.
pub const CACHE_DIR_ENV: &str = "WASMPOD_CACHE_DIR";
/// Size bound of the compile cache in MiB, unless the default (2048) is fine.
pub const CACHE_MAX_MB_ENV: &str = "WASMPOD_CACHE_MAX_MB";

/// Turns a spec's process into a workload; holds the shim's wasmtime engines, each made on
/// first use (a shim that only runs native containers never builds one): one for programs
/// that run to completion, and one each for serving HTTP handlers with and without metering.
/// A slot holds `None` when its engine could not be built (the configuration is wrong: the
/// next use builds again, to report why).
#[derive(Default)]
pub struct Loader {
    engine: OnceLock<Option<Arc<WasmEngine>>>,
    serving: OnceLock<Option<Arc<WasmEngine>>>,
    metered: OnceLock<Option<Arc<WasmEngine>>>,
    seccomp_dir: OnceLock<PathBuf>,
}

impl Loader {
    fn engine(&self, serving: Option<Serving>) -> Result<Arc<WasmEngine>> {
        let slot = match serving {
            None => &self.engine,
            Some(Serving { metering: false }) => &self.serving,
            Some(Serving { metering: true }) => &self.metered,
        };
        let build = || {
            WasmEngine::new(EngineConfig {
                compile_helper: shim_binary(),
                serving,
                ..engine_config_from_env()
            })
        };
        // One build per slot: a Create that comes while `warm_up`'s build runs waits for it
        // rather than building a second engine.
        let mut failure = None;
        let built = slot.get_or_init(|| build().map(Arc::new).map_err(|e| failure = Some(e)).ok());
        match (built, failure) {
            (Some(engine), _) => Ok(engine.clone()),
            (None, Some(err)) => Err(err.into()),
            (None, None) => Err(build()
                .err()
                .unwrap_or_else(|| crate::engine::EngineError::Config {
                    reason: "the engine failed to build before and built now".into(),
                })
                .into()),
        }
    }

    /// Builds the engine for programs that run to completion, unless `wanted` (run first,
    /// in the same thread) says no: in a thread of its own, while containerd has yet to send
    /// the first Create, which so no longer builds it (0.5 ms: wasmtime's engine, the compile
    /// cache and the module linker). A failure is reported by the Create that needs it.
    pub fn warm_up(self: &Arc<Self>, wanted: impl FnOnce() -> bool + Send + 'static) {
        let loader = self.clone();
        let spawned = std::thread::Builder::new()
            .name("engine-warm-up".into())
            .spawn(move || {
                // A container's builder forks from another thread meanwhile (a native
                // container needs no engine): it waits for the build, so that no lock the
                // build takes (the environment's, wasmtime's) is held for ever in its child.
                let _gate = crate::fork_gate::shared();
                if wanted() {
                    if let Ok(engine) = loader.engine(None) {
                        engine.warm_up();
                    }
                }
            });
        if let Err(e) = spawned {
            debug!("no engine warm-up: {e}");
        }
    }

    /// Finds `process.args[0]` in `rootfs`, else among the image's wasm layers; decides what it
    /// is, and for wasm loads (or maps the cached) program and maps the spec to its WASI plan.
    ///
    /// # Errors
    /// Bad spec, missing or unrunnable entrypoint, invalid module, unreadable image layers.
    pub fn workload(
        &self,
        id: &str,
        spec: &Spec,
        rootfs: &Path,
        image: &ImageLayers,
        oom_report: Option<RawFd>,
    ) -> Result<Workload> {
        let process = spec
            .process()
            .as_ref()
            .ok_or(spec::SpecError::MissingProcess)?;
        let env = spec::parse_env(process.env().as_deref().unwrap_or_default())?;
        let cwd = spec::guest_cwd(process.cwd())?;
        let arg0 = process
            .args()
            .as_ref()
            .and_then(|a| a.first())
            .ok_or(spec::SpecError::EmptyArgs)?;
        let (program_path, export) = spec::split_export(arg0)?;
        let in_root = |p: &Path| rootfs::is_file_in_root(rootfs, p);
        let resolved = spec::resolve_entrypoint(program_path, &env, &cwd, in_root);
        rootfs::create_dir_in_root(rootfs, &cwd).map_err(|e| IsolationError::Rootfs {
            path: cwd.clone(),
            reason: format!("cannot create the working directory (process.cwd): {e}"),
        })?;
        // An image's fifo or device node at an absolute entrypoint is named as what it is, not
        // "not found" (a directory there may still be a wasm layer's name, so it goes on).
        if resolved.is_err() && Path::new(program_path).is_absolute() {
            let odd = rootfs::non_regular_in_root(rootfs, Path::new(program_path));
            if let Some(what) = odd.filter(|what| *what != "a directory") {
                return Err(IsolationError::EntrypointNotFound {
                    path: PathBuf::from(program_path),
                    reason: format!("it is {what}, not a regular file"),
                }
                .into());
            }
        }
        let (path, bytes, from_layer) = match resolved {
            Ok(path) => {
                let bytes = rootfs::read_in_root(rootfs, &path)?;
                (path, Cow::Owned(bytes), false)
            }
            // containerd keeps raw wasm layers out of the snapshot: look there before giving up.
            Err(not_found) => match image.get()? {
                [] => return Err(not_found.into()),
                layers => {
                    let layer = manifest::choose(layers, program_path)?;
                    debug!("{id}: {program_path} is the image's wasm layer {layer:?}");
                    (
                        PathBuf::from(layer.name()),
                        Cow::Borrowed(&layer.bytes[..]),
                        true,
                    )
                }
            },
        };
        match rootfs::classify(&bytes).filter(|k| !from_layer || *k == ProgramKind::Wasm) {
            Some(ProgramKind::Native) => {
                debug!("{id}: {} is a native program", path.display());
                Ok(Workload::Exec)
            }
            Some(ProgramKind::Wasm) => {
                // An HTTP handler is served, by an engine built for it; `#export` runs one
                // function of it instead, like any component.
                let serving = (export.is_none() && exports_http_handler(&bytes))
                    .then(|| spec::http_plan(&env))
                    .transpose()?
                    .map(|http| Serving {
                        metering: http.metering,
                    });
                let engine = self.engine(serving)?;
                let program = engine.load(&path, &bytes)?;
                // A missing `_start` / `wasi:cli/run` / `#export` fails Create, not the container.
                program.check_entry(export)?;
                // Inside the container, after pivot_root, the rootfs is `/`. Bind mounts are not
                // in place yet, so a mount destination is a file when its source is.
                let mounts = spec.mounts().as_deref().unwrap_or_default();
                let is_file = |p: &Path| match mounts.iter().rev().find(|m| m.destination() == p) {
                    Some(m) => m.source().as_ref().is_some_and(|s| s.is_file()),
                    None => in_root(p),
                };
                let plan = if from_layer {
                    spec::plan_for_program(spec, Path::new("/"), is_file, path.clone())?
                } else {
                    spec::plan_from_spec(spec, Path::new("/"), is_file)?
                };
                debug!(
                    "{id}: {} is a wasm {}, plan {plan:?}",
                    path.display(),
                    program.kind()
                );
                Ok(Workload::Guest(Arc::new(WasmGuest::new(
                    id, engine, program, plan, oom_report,
                ))))
            }
            None => Err(IsolationError::NotRunnable {
                path,
                head: escape_head(&bytes),
            }
            .into()),
        }
    }
}

impl Loader {
    /// Where compiled seccomp filters are kept: in the compile cache's directory (the
    /// environment is read once per shim, not on every Create).
    pub fn seccomp_dir(&self) -> &Path {
        self.seccomp_dir.get_or_init(|| {
            crate::isolation::seccomp_filters::dir_in(&engine_config_from_env().cache_dir)
        })
    }
}

/// The engine settings the shim's environment asks for; the compile helper reads the same
/// environment (it inherits the shim's), so both compile for the same cache files.
fn engine_config_from_env() -> EngineConfig {
    let mut config = match std::env::var_os(CACHE_DIR_ENV) {
        Some(dir) => EngineConfig::with_cache_dir(PathBuf::from(dir)),
        None => EngineConfig::default(),
    };
    if let Ok(mb) = std::env::var(CACHE_MAX_MB_ENV) {
        match mb.trim().parse::<u64>() {
            Ok(mb) => config.cache_max_bytes = mb << 20,
            Err(_) => warn!("{CACHE_MAX_MB_ENV}={mb:?} is not a number of MiB; using the default"),
        }
    }
    config
}

/// This program, when it is the shim binary (which is its own compile helper); `None` in unit
/// tests and other hosts of this library, which then compile in process.
fn shim_binary() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .filter(|exe| exe.file_name().is_some_and(|n| n == crate::SHIM_BINARY))
}

/// The compile helper (`containerd-shim-wasmpod-v1 compile-cache`): compiles the wasm read
/// from stdin into the compile cache the shim's environment names; returns the file.
///
/// # Errors
/// Unreadable stdin, not wasm, invalid wasm, or the cache could not be written.
pub fn compile_stdin_into_cache(args: &[String]) -> Result<PathBuf> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
        .map_err(|e| crate::error::Error::io("reading the program from stdin", e))?;
    let engine = WasmEngine::new(EngineConfig {
        serving: EngineConfig::serving_from_args(args),
        ..engine_config_from_env()
    })?;
    Ok(engine.compile_into_cache(&bytes)?)
}

fn escape_head(bytes: &[u8]) -> String {
    let head: String = bytes
        .iter()
        .take(8)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    if head.is_empty() {
        "nothing: the file is empty".into()
    } else {
        format!("\"{head}\"")
    }
}
