//! A wasmpod container: the place where spec, engine, isolation and stdio meet.
//!
//! [`ContainerFactory::create`] reads the bundle, finds `process.args[0]` in the rootfs, decides
//! what it is (wasm, ELF / `#!`, or neither: a clear error), loads and compiles wasm in the shim
//! (cached), maps the spec to a WASI plan, and builds the Linux container whose init process
//! runs the guest. Everything here is glue; the rules live in the modules it calls.

mod guest;

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use log::{debug, warn};
use oci_spec::runtime::{LinuxResources, Spec};

use crate::engine::{EngineConfig, WasmEngine};
use crate::error::Result;
use crate::isolation::rootfs::{self, ProgramKind};
use crate::isolation::{
    CgroupStats, ContainerConfig, IsolationError, Layout, LinuxContainer, Workload,
};
use crate::spec;
use crate::task::{CreateRequest, Instance, InstanceFactory};
use guest::WasmGuest;

/// Where compiled modules are cached unless `WASMPOD_CACHE_DIR` says otherwise.
pub const CACHE_DIR_ENV: &str = "WASMPOD_CACHE_DIR";

/// Builds containers; holds the shim's one wasmtime engine, made on first use.
pub struct ContainerFactory {
    engine: OnceLock<Arc<WasmEngine>>,
    log_fd: Option<RawFd>,
}

impl ContainerFactory {
    /// A factory whose containers keep `log_fd` (the shim log) open for their failure reports.
    pub fn new(log_fd: Option<RawFd>) -> Self {
        Self {
            engine: OnceLock::new(),
            log_fd,
        }
    }

    fn engine(&self) -> Result<Arc<WasmEngine>> {
        if let Some(engine) = self.engine.get() {
            return Ok(engine.clone());
        }
        let config = match std::env::var_os(CACHE_DIR_ENV) {
            Some(dir) => EngineConfig::with_cache_dir(PathBuf::from(dir)),
            None => EngineConfig::default(),
        };
        let engine = Arc::new(WasmEngine::new(config)?);
        Ok(self.engine.get_or_init(|| engine).clone())
    }

    fn workload(&self, id: &str, spec: &Spec, rootfs: &Path) -> Result<Workload> {
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
        let path = spec::resolve_entrypoint(program_path, &env, &cwd, in_root)?;
        rootfs::create_dir_in_root(rootfs, &cwd).map_err(|e| IsolationError::Rootfs {
            path: cwd.clone(),
            reason: format!("cannot create the working directory (process.cwd): {e}"),
        })?;
        let bytes = rootfs::read_in_root(rootfs, &path)?;
        match rootfs::classify(&bytes) {
            Some(ProgramKind::Native) => {
                debug!("{id}: {} is a native program", path.display());
                Ok(Workload::Exec)
            }
            Some(ProgramKind::Wasm) => {
                let engine = self.engine()?;
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
                let plan = spec::plan_from_spec(spec, Path::new("/"), is_file)?;
                debug!(
                    "{id}: {} is a wasm {}, plan {plan:?}",
                    path.display(),
                    program.kind()
                );
                Ok(Workload::Guest(Arc::new(WasmGuest::new(
                    id, engine, program, plan,
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

impl InstanceFactory for ContainerFactory {
    type Instance = Container;

    fn create(&self, req: &CreateRequest) -> Result<Container> {
        let spec = crate::isolation::load_spec(&req.bundle)?;
        let rootfs = match spec.root() {
            Some(root) if root.path().is_absolute() => root.path().clone(),
            Some(root) => req.bundle.join(root.path()),
            None => req.bundle.join("rootfs"),
        };
        let mounts: Vec<_> = req
            .rootfs
            .iter()
            .map(|m| (m.kind.clone(), m.source.clone(), m.options.clone()))
            .collect();
        rootfs::mount_all(&mounts, &rootfs)?;
        let mounted = !mounts.is_empty();
        let built = self.workload(&req.id, &spec, &rootfs).and_then(|workload| {
            let stdio = crate::stdio::open(&req.stdin, &req.stdout, &req.stderr)?;
            Ok(LinuxContainer::create(ContainerConfig {
                id: req.id.clone(),
                bundle: req.bundle.clone(),
                spec,
                workload,
                stdio,
                log_fd: self.log_fd,
            })?)
        });
        match built {
            Ok(linux) => Ok(Container {
                linux,
                rootfs,
                mounted,
            }),
            Err(e) => {
                if mounted {
                    rootfs::unmount(&rootfs);
                }
                Err(e)
            }
        }
    }
}

/// A built container.
pub struct Container {
    linux: LinuxContainer,
    rootfs: PathBuf,
    mounted: bool,
}

impl Instance for Container {
    type Stats = (Layout, CgroupStats);

    fn pid(&self) -> u32 {
        self.linux.pid() as u32
    }
    fn start(&self) -> Result<()> {
        Ok(self.linux.start()?)
    }
    fn kill(&self, signal: u32, all: bool) -> Result<()> {
        Ok(self.linux.kill(signal, all)?)
    }
    fn pause(&self) -> Result<()> {
        Ok(self.linux.freeze(true)?)
    }
    fn resume(&self) -> Result<()> {
        Ok(self.linux.freeze(false)?)
    }
    fn pids(&self) -> Result<Vec<u32>> {
        Ok(self.linux.pids()?.into_iter().map(|p| p as u32).collect())
    }
    fn stats(&self) -> Result<Self::Stats> {
        Ok((Layout::detect(), self.linux.stats()?))
    }
    fn update(&self, resources: &LinuxResources) -> Result<()> {
        Ok(self.linux.update(resources)?)
    }
    fn close_stdin(&self) {
        // The shim holds no copy of stdin: containerd closing its end is the whole of it.
    }
    fn exit_reason(&self, code: u32) -> Option<String> {
        self.linux.exit_reason(code)
    }
    fn delete(&self) -> Result<()> {
        let result = self.linux.delete();
        if self.mounted {
            rootfs::unmount(&self.rootfs);
        }
        if let Err(e) = &result {
            warn!("delete: {e}");
        }
        Ok(result?)
    }
}
