//! Engine configuration: the few knobs wasmpod exposes and the wasmtime [`Config`] built from
//! them.
//!
//! Everything chosen here that affects generated code also changes the engine's
//! `precompile_compatibility_hash`, which is part of every compile cache key, so changing a
//! setting can never make the shim load code compiled under another setting.
//!
//! # Memory layout choice
//!
//! Each 32-bit linear memory gets a 4 GiB *reservation* plus a 32 MiB guard after it (and the
//! same guard before it). This looks large but it is only address space: wasmtime maps it
//! `PROT_NONE`, so it costs no RSS, is not charged to the container's memory cgroup and is not
//! counted against the commit limit; an idle guest costs exactly the pages it has touched.
//! What it buys matters for density as well as speed:
//! - loads and stores need no bounds checks (the guard pages trap instead);
//! - a memory never *moves* when it grows. With a smaller reservation, growing past it makes
//!   wasmtime allocate a new region and copy the whole memory, which turns every untouched
//!   (zero) page into a private dirty page and breaks the copy-on-write sharing of data
//!   segments with the mmapped `.cwasm` file; i.e. it would make idle guests *more* expensive.
//!
//! The one place where address space is a real limit is an `RLIMIT_AS` on the container
//! process; hosts that set one below ~4.1 GiB can lower [`EngineConfig::memory_reservation`]
//! (bounds checks and moving growth come back). `memory_reservation_for_growth` only applies
//! to memories that do move (64-bit memories, or an initial size above the reservation); it is
//! cut from wasmtime's 2 GiB to 64 MiB so those rare cases do not reserve GBs per growth step.
//!
//! Nothing is allocated per instance up front: the default on-demand allocator is used (the
//! pooling allocator would pre-reserve slots for many instances; each container runs exactly
//! one), tables are initialised lazily and data segments are mapped copy-on-write from the
//! compiled file (see [`EngineConfig::share_initial_memory`] for what that requires).

use std::path::PathBuf;

use wasmtime::{
    Config, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, WasmBacktraceDetails,
};

/// Default directory of the compile cache. `/var/cache` because its content is derived data:
/// deleting it is always safe (running guests keep their unlinked files mapped) and only
/// costs a recompilation on the next start.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/wasmpod/cwasm";

/// Default size bound of the compile cache: 2 GiB.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 2 << 30;

/// Size of the address-space reservation of each linear memory: 4 GiB, see [`EngineConfig`].
pub const DEFAULT_MEMORY_RESERVATION: u64 = 4 << 30;

/// Size of the guard region after (and before) each linear memory: 32 MiB.
pub const DEFAULT_MEMORY_GUARD_SIZE: u64 = 32 << 20;

/// Extra room reserved when a memory has to move anyway (see the module docs).
const MEMORY_RESERVATION_FOR_GROWTH: u64 = 64 << 20;

/// How the shim configures its one wasmtime engine.
///
/// [`EngineConfig::default`] is what production uses: cache in [`DEFAULT_CACHE_DIR`], memory
/// layout below, copy-on-write initial memory, parallel compilation on.
///
/// # Memory layout
///
/// Each linear memory reserves [`DEFAULT_MEMORY_RESERVATION`] (4 GiB) of address space plus a
/// [`DEFAULT_MEMORY_GUARD_SIZE`] guard on each side. That is address space only (`PROT_NONE`:
/// no RSS, no cgroup charge, no commit charge); an idle guest costs exactly the pages it
/// touched. It makes bounds checks unnecessary and, more importantly for density, means a
/// memory never moves when it grows: a move copies the whole memory, turning untouched pages
/// into private dirty ones. Lower `memory_reservation` only where an `RLIMIT_AS` forbids
/// ~4.1 GiB per process. Nothing is allocated per instance up front (no pooling allocator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Directory of compiled `.cwasm` files, created (mode 0700) if missing. It must be
    /// writable only by the shim: the engine maps these files as executable code.
    pub cache_dir: PathBuf,
    /// Size bound of the cache directory in bytes; least recently used files are evicted.
    pub cache_max_bytes: u64,
    /// Address space reserved per linear memory, in bytes.
    pub memory_reservation: u64,
    /// Guard region after (and before) each linear memory, in bytes.
    pub memory_guard_size: u64,
    /// Map each guest's initial linear memory copy-on-write from the `.cwasm` file, so pages
    /// the guest never writes stay shared (page cache) across all containers running the same
    /// program. Requires the container process to keep [`super::Program::retained_fds`] open.
    /// `false` copies data segments into private memory at instantiation instead.
    pub share_initial_memory: bool,
    /// Compile functions on all cores. Compilation happens in the shim or its compile helper,
    /// never in a forked container process.
    pub parallel_compilation: bool,
    /// The compile helper: on a cache miss, `<helper> compile-cache` gets the wasm on stdin
    /// and stores the artifact in this cache, so the compiler's memory is not kept by the shim
    /// (see `engine::helper`). `None` compiles in process.
    pub compile_helper: Option<PathBuf>,
    /// `Some` for an engine that serves HTTP handler components (see [`Serving`]).
    pub serving: Option<Serving>,
}

/// What a serving engine adds: async calls (requests share threads), epoch interruption
/// (per-request deadlines), the pooling allocator (an instance per request in microseconds,
/// memory slots reused copy-on-write), and, for metering, fuel.
///
/// Each of these changes the generated code or the engine's compatibility hash, so a serving
/// engine compiles its own cache files and a program compiled to be run never meets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serving {
    /// Count fuel (one unit per wasm operator, roughly) so each request's cost can be billed.
    pub metering: bool,
}

/// Component instances the pool holds: the most requests one container can run at once.
/// Only address space is reserved up front; slots are touched as requests use them.
pub const POOL_INSTANCES: u32 = 1000;

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            cache_dir: PathBuf::from(DEFAULT_CACHE_DIR),
            memory_reservation: DEFAULT_MEMORY_RESERVATION,
            memory_guard_size: DEFAULT_MEMORY_GUARD_SIZE,
            share_initial_memory: true,
            parallel_compilation: true,
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            compile_helper: None,
            serving: None,
        }
    }
}

impl EngineConfig {
    /// The default configuration with another cache directory (tests, non-root setups).
    pub fn with_cache_dir(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            ..Self::default()
        }
    }

    /// Translates this configuration into wasmtime's.
    pub(crate) fn wasmtime_config(&self) -> Config {
        let mut config = Config::new();
        config
            .cranelift_opt_level(OptLevel::Speed)
            .parallel_compilation(self.parallel_compilation)
            // wasmpod keeps its own cache keyed by content; wasmtime's cache would read whole
            // artifacts into memory instead of mapping them.
            .cache(None)
            // No preemption or metering yet: a guest is bounded by its cgroup and by being
            // killed, like any container process.
            .consume_fuel(false)
            .epoch_interruption(false)
            .signals_based_traps(true)
            .memory_reservation(self.memory_reservation)
            .memory_guard_size(self.memory_guard_size)
            .guard_before_linear_memory(true)
            .memory_reservation_for_growth(MEMORY_RESERVATION_FOR_GROWTH)
            .memory_init_cow(self.share_initial_memory)
            .table_lazy_init(true)
            // Wasm backtraces stay on (the default). Function names from the name section are
            // enough for the trap log; DWARF
            // details would make every load parse debug info, and would otherwise depend on
            // the WASMTIME_BACKTRACE_DETAILS variable of whoever started the shim.
            .wasm_backtrace_details(WasmBacktraceDetails::Disable);
        if let Some(serving) = self.serving {
            config
                .epoch_interruption(true)
                .consume_fuel(serving.metering)
                .allocation_strategy(InstanceAllocationStrategy::Pooling(pool()));
        }
        config
    }

    /// Arguments that make the compile helper build the same engine (see `engine::helper`).
    pub(crate) fn helper_args(&self) -> Vec<&'static str> {
        match self.serving {
            None => vec![],
            Some(Serving { metering: false }) => vec![SERVING_ARG],
            Some(Serving { metering: true }) => vec![SERVING_ARG, METERING_ARG],
        }
    }

    /// The serving settings that [`Self::helper_args`] wrote.
    pub fn serving_from_args<S: AsRef<str>>(args: &[S]) -> Option<Serving> {
        let has = |want: &str| args.iter().any(|a| a.as_ref() == want);
        has(SERVING_ARG).then(|| Serving {
            metering: has(METERING_ARG),
        })
    }
}

const SERVING_ARG: &str = "--serving";
const METERING_ARG: &str = "--metering";

/// The instance pool of a serving engine. A component is several core instances (the
/// program, the WASI adapter's shims) with one or two memories and a few tables, hence the
/// multiples; limits per slot stay wasmtime's defaults.
fn pool() -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(4 * POOL_INSTANCES)
        .total_memories(2 * POOL_INSTANCES)
        .total_tables(4 * POOL_INSTANCES)
        .total_stacks(POOL_INSTANCES);
    pool
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_args_round_trip() {
        for serving in [
            None,
            Some(Serving { metering: false }),
            Some(Serving { metering: true }),
        ] {
            let config = EngineConfig {
                serving,
                ..EngineConfig::default()
            };
            assert_eq!(
                EngineConfig::serving_from_args(&config.helper_args()),
                serving
            );
        }
    }

    #[test]
    fn serving_engines_compile_for_other_cache_files() {
        let plain = wasmtime::Engine::new(&EngineConfig::default().wasmtime_config()).unwrap();
        let serving = EngineConfig {
            serving: Some(Serving { metering: false }),
            ..EngineConfig::default()
        };
        let metered = EngineConfig {
            serving: Some(Serving { metering: true }),
            ..EngineConfig::default()
        };
        let serving = wasmtime::Engine::new(&serving.wasmtime_config()).unwrap();
        let metered = wasmtime::Engine::new(&metered.wasmtime_config()).unwrap();
        let hash = |e: &wasmtime::Engine| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            e.precompile_compatibility_hash().hash(&mut h);
            h.finish()
        };
        assert_ne!(hash(&plain), hash(&serving));
        assert_ne!(hash(&serving), hash(&metered));
    }
}
