//! The WebAssembly engine: wasmtime configuration, the compile cache, WASI preview 1 / 2
//! contexts built from a [`WasiPlan`], and exit codes. It knows nothing of containerd, OCI or
//! Linux containers.
//!
//! # Two phases, two processes
//!
//! 1. **Load**, in the long-lived shim process: [`WasmEngine::new`] once, then
//!    [`WasmEngine::load`] per container. Loading compiles (in the compile helper when one is
//!    configured, see [`WasmEngine::compile_into_cache`]) or maps from the cache, checks
//!    imports and pre-links, and never starts a WASI or tokio runtime, so the process can fork
//!    safely afterwards.
//! 2. **Run**, in the forked container init process (after namespaces and pivot_root):
//!    [`WasmEngine::run`] builds the WASI context from the plan and runs the guest, blocking,
//!    on the calling thread. It compiles nothing and needs no access to the cache directory
//!    (the code is already mapped), but it does need the descriptors listed by
//!    [`Program::retained_fds`] to still be open.
//!
//! # Files
//! - `config`: [`EngineConfig`] and the wasmtime settings (memory layout rationale).
//! - `cache`: content-addressed `.cwasm` cache with atomic writes.
//! - `helper`: compiling a cache miss in a short-lived helper process.
//! - `fds`: the descriptors a program needs after the fork ([`Program::retained_fds`]).
//! - `program`: [`Program`], import checks, entrypoint checks.
//! - `wasi`: [`GuestIo`] and the WASI context (cwd handling is documented there).
//! - `limits`: the memory limiter.
//! - `run`: instantiating and calling the entrypoint.
//! - `exit`: [`GuestExit`], [`TRAP_EXIT_CODE`] and [`OOM_EXIT_CODE`].
//! - `error`: the error type, [`EngineError`], and [`ProgramKind`].

mod cache;
mod config;
mod error;
mod evict;
mod exit;
mod fds;
mod helper;
pub mod http;
mod limits;
mod program;
mod run;
mod verified;
mod wasi;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::OnceLock;

use wasmtime::component::{Component, Linker as ComponentLinker};
use wasmtime::{Engine, Linker, Module};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

pub use self::config::{
    EngineConfig, Serving, DEFAULT_CACHE_DIR, DEFAULT_CACHE_MAX_BYTES, DEFAULT_MEMORY_GUARD_SIZE,
    DEFAULT_MEMORY_RESERVATION, POOL_INSTANCES,
};
pub use self::error::{EngineError, ProgramKind};
pub use self::exit::{GuestExit, OOM_EXIT_CODE, TRAP_EXIT_CODE};
pub use self::helper::{bind_to_shim, COMPILE_COMMAND};
pub use self::program::Program;
pub use self::wasi::GuestIo;
/// In-memory stdout/stderr for [`GuestIo::Captured`].
pub use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use self::cache::CompileCache;
use self::error::reason;
use self::program::{check_component_imports, check_module_imports, link_error, Linked};
use self::wasi::{P1State, P2State};
use crate::plan::WasiPlan;

/// The wasmtime version the shim is built with (reported by `--version`). Kept in sync with
/// `Cargo.lock` by a test, since wasmtime exposes no such constant.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// A linker that cannot be built is the engine's configuration's fault.
fn linker_err(err: wasmtime::Error) -> EngineError {
    EngineError::Config {
        reason: reason(&err),
    }
}

/// One wasmtime engine with its compile cache and WASI linkers; shared by all containers of a
/// shim.
pub struct WasmEngine {
    engine: Engine,
    cache: CompileCache,
    /// Built on first use: a shim that runs only modules never builds the component linker
    /// (and the other way round). Building both took 0.4 ms of a shim's first Create, and
    /// their tables stay in the heap every container's process inherits.
    p1_linker: OnceLock<Linker<P1State>>,
    p2_linker: OnceLock<ComponentLinker<P2State>>,
    /// Set for a serving engine, which loads only HTTP handlers.
    http_linker: Option<ComponentLinker<http::HttpState>>,
    share_initial_memory: bool,
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl WasmEngine {
    /// Creates the engine and opens (creating if needed) its cache directory.
    ///
    /// # Errors
    ///
    /// [`EngineError::Config`] if wasmtime rejects the configuration or the WASI linkers
    /// cannot be built. A cache directory that cannot be created is only a warning: programs then
    /// run from memory.
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        let config_err = |err: wasmtime::Error| EngineError::Config {
            reason: reason(&err),
        };
        let engine = Engine::new(&config.wasmtime_config()).map_err(config_err)?;
        let share_initial_memory = config.share_initial_memory;
        let cache = CompileCache::open(
            &config.cache_dir,
            &engine,
            config.cache_max_bytes,
            config.compile_helper.clone(),
            config.helper_args(),
        )?;

        let http_linker = match config.serving {
            None => None,
            Some(_) => {
                let mut linker = ComponentLinker::new(&engine);
                http::add_to_linker(&mut linker).map_err(config_err)?;
                Some(linker)
            }
        };

        Ok(Self {
            engine,
            cache,
            p1_linker: OnceLock::new(),
            p2_linker: OnceLock::new(),
            http_linker,
            share_initial_memory,
        })
    }

    /// Builds ahead what loading a module needs (its linker): modules are what most wasm
    /// images hold (Rust, C and TinyGo for WASI preview 1). A failure is left to the load.
    pub fn warm_up(&self) {
        let _ = self.p1_linker();
    }

    /// The linker of modules (WASI preview 1, and preview 0 for pre-snapshot modules, which
    /// import `wasi_unstable`: same context, older ABI), built on first use.
    fn p1_linker(&self) -> Result<&Linker<P1State>, EngineError> {
        if let Some(linker) = self.p1_linker.get() {
            return Ok(linker);
        }
        // Linkers only hold host function definitions: building them starts no runtime.
        let mut linker = Linker::new(&self.engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut P1State| &mut s.wasi)
            .map_err(linker_err)?;
        wasmtime_wasi::p0::add_to_linker_sync(&mut linker, |s: &mut P1State| &mut s.wasi)
            .map_err(linker_err)?;
        Ok(self.p1_linker.get_or_init(|| linker))
    }

    /// The linker of components (WASI preview 2), built on first use.
    fn p2_linker(&self) -> Result<&ComponentLinker<P2State>, EngineError> {
        if let Some(linker) = self.p2_linker.get() {
            return Ok(linker);
        }
        let mut linker = ComponentLinker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(linker_err)?;
        Ok(self.p2_linker.get_or_init(|| linker))
    }

    /// The compile helper's job: compiles `bytes` (module or component) and stores the
    /// artifact where [`Self::load`] of the same bytes, with an engine of the same settings,
    /// will find it; returns that file.
    ///
    /// # Errors
    ///
    /// [`EngineError::NotWasm`], [`EngineError::Invalid`], [`EngineError::CacheWrite`].
    pub fn compile_into_cache(&self, bytes: &[u8]) -> Result<std::path::PathBuf, EngineError> {
        let path = Path::new("the program on stdin");
        let invalid = |kind| {
            move |err: wasmtime::Error| EngineError::Invalid {
                path: path.to_owned(),
                kind,
                reason: reason(&err),
            }
        };
        let artifact = if wasmparser::Parser::is_core_wasm(bytes) {
            self.engine
                .precompile_module(bytes)
                .map_err(invalid(ProgramKind::Module))?
        } else if wasmparser::Parser::is_component(bytes) {
            self.engine
                .precompile_component(bytes)
                .map_err(invalid(ProgramKind::Component))?
        } else {
            return Err(EngineError::NotWasm {
                path: path.to_owned(),
            });
        };
        let file = self.cache.file_for(bytes);
        self.cache.store(&file, &artifact)?;
        Ok(file)
    }

    /// Loads a program: detects module vs component, compiles it once (or maps the cached
    /// code), checks that it imports only WASI and pre-links it.
    ///
    /// `path` is only used in messages; `bytes` is the program's content.
    ///
    /// # Errors
    ///
    /// [`EngineError::NotWasm`], [`EngineError::Invalid`] (validation or compilation failed),
    /// [`EngineError::UnsatisfiedImport`] / [`EngineError::UnsatisfiedComponentImport`] (a
    /// non-WASI import), [`EngineError::Link`] (a WASI import wasmtime-wasi does not define),
    /// [`EngineError::CacheWrite`] / [`EngineError::CacheLoad`].
    pub fn load(&self, path: &Path, bytes: &[u8]) -> Result<Program, EngineError> {
        let invalid = |kind| {
            move |err: wasmtime::Error| EngineError::Invalid {
                path: path.to_owned(),
                kind,
                reason: reason(&err),
            }
        };
        // Checked on the header before anything else; this also guarantees that the bytes
        // handed to the cache are never a precompiled artifact (those are ELF files).
        // wasmtime registers and unregisters code process-wide when a program is mapped or
        // dropped; a fork must not catch it halfway (see `fork_gate`). Declared first, the
        // guard is dropped last, after whatever an error path drops; compiling runs outside.
        let _gate;
        if self.http_linker.is_some() && !http::exports_http_handler(bytes) {
            return Err(EngineError::WrongEngine {
                path: path.to_owned(),
                reason: "a serving engine loads only components exporting \
                         wasi:http/incoming-handler",
            });
        }
        if wasmparser::Parser::is_core_wasm(bytes) {
            let cached = self.cache.load_or_compile(
                bytes,
                || {
                    self.engine
                        .precompile_module(bytes)
                        .map_err(invalid(ProgramKind::Module))
                },
                // SAFETY: the file is in the shim's private (0700) cache directory and was
                // written only by `CompileCache` from `Engine::precompile_module` with an
                // engine of the same compatibility hash (it is part of the file name); files
                // are replaced by rename, never modified in place while mapped. wasmtime
                // additionally checks the artifact's header and engine compatibility.
                |file| {
                    let _gate = crate::fork_gate::shared();
                    unsafe { fds::deserialize_module(&self.engine, file) }
                },
                // SAFETY: the artifact `precompile_module` just returned, never written out.
                |artifact| {
                    let _gate = crate::fork_gate::shared();
                    unsafe { Module::deserialize(&self.engine, artifact) }.map(|m| (m, Vec::new()))
                },
            )?;
            _gate = crate::fork_gate::shared();
            let (module, retained) = cached.value;
            check_module_imports(path, &module)?;
            let pre = self
                .p1_linker()?
                .instantiate_pre(&module)
                .map_err(|err| link_error(path, &err))?;
            let retained = self.retained(retained);
            Ok(Program::new(
                path,
                cached.file,
                cached.hit,
                retained,
                Linked::Module(pre),
            ))
        } else if wasmparser::Parser::is_component(bytes) {
            let cached = self.cache.load_or_compile(
                bytes,
                || {
                    self.engine
                        .precompile_component(bytes)
                        .map_err(invalid(ProgramKind::Component))
                },
                // SAFETY (both branches): as for modules above, with
                // `Engine::precompile_component`.
                |file| {
                    let _gate = crate::fork_gate::shared();
                    if self.share_initial_memory {
                        unsafe { fds::deserialize_component(&self.engine, file) }
                    } else {
                        // No descriptor is needed after the fork: skip the fd bookkeeping.
                        unsafe { Component::deserialize_file(&self.engine, file) }
                            .map(|c| (c, Vec::new()))
                    }
                },
                // SAFETY: the artifact `precompile_component` just returned.
                |artifact| {
                    let _gate = crate::fork_gate::shared();
                    unsafe { Component::deserialize(&self.engine, artifact) }
                        .map(|c| (c, Vec::new()))
                },
            )?;
            _gate = crate::fork_gate::shared();
            let (component, retained) = cached.value;
            check_component_imports(path, &component)?;
            let linked = match &self.http_linker {
                None => Linked::Component(
                    self.p2_linker()?
                        .instantiate_pre(&component)
                        .map_err(|err| link_error(path, &err))?,
                ),
                Some(linker) => {
                    let pre = linker
                        .instantiate_pre(&component)
                        .map_err(|err| link_error(path, &err))?;
                    Linked::Http(ProxyPre::new(pre).map_err(|_| EngineError::WrongEngine {
                        path: path.to_owned(),
                        reason: "a serving engine was given a component that does not export \
                                 wasi:http/incoming-handler",
                    })?)
                }
            };
            let retained = self.retained(retained);
            Ok(Program::new(
                path,
                cached.file,
                cached.hit,
                retained,
                linked,
            ))
        } else {
            Err(EngineError::NotWasm {
                path: path.to_owned(),
            })
        }
    }

    /// Without copy-on-write memory images nothing maps from the descriptors after load.
    fn retained(&self, fds: Vec<fds::RetainedFd>) -> Vec<fds::RetainedFd> {
        if self.share_initial_memory {
            fds
        } else {
            Vec::new()
        }
    }

    /// Runs `program` with exactly what `plan` grants and returns how the guest ended.
    ///
    /// Blocks the calling thread until the guest returns, exits or traps. The entrypoint is
    /// `plan.entrypoint.export` if set (a function taking no parameters and returning nothing
    /// or an `i32` exit status; a reactor's `_initialize` is called first), otherwise `_start`
    /// for a module and `wasi:cli/run` for a component. The guest's own exit and traps are
    /// [`GuestExit`] values, not errors.
    ///
    /// Must be called on a thread outside any tokio runtime (in production: the container
    /// init process, which never returns to the shim).
    ///
    /// # Errors
    ///
    /// [`EngineError::InsideAsyncRuntime`]; entrypoint errors as for
    /// [`Program::check_entry`]; [`EngineError::CodeFileClosed`] if a descriptor of
    /// [`Program::retained_fds`] was closed; [`EngineError::Preopen`] if a planned directory cannot be
    /// opened; [`EngineError::Instantiate`] if instantiation fails for a reason other than the
    /// guest trapping (e.g. its initial memory exceeds `plan.limits.max_memory_bytes`).
    pub fn run(
        &self,
        program: &Program,
        plan: &WasiPlan,
        io: GuestIo,
    ) -> Result<GuestExit, EngineError> {
        run::run(program, plan, io)
    }
}
