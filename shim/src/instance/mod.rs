//! A wasmpod container: the place where spec, engine, isolation and stdio meet.
//!
//! [`ContainerFactory::create`] reads the bundle, stacks the rootfs, lets the [`Loader`] find and
//! load `process.args[0]` (wasm, ELF / `#!`, a raw wasm layer of the container's image, or a clear
//! error), opens the fifos (or a terminal, see [`io`]), and builds the Linux container whose init
//! process runs the workload. Execs go through the same loader with the exec's process, and join
//! the container. Everything here is glue; the rules live in the modules it calls.

mod guest;
mod io;
mod layers;
mod loader;

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use log::warn;
use oci_spec::runtime::{LinuxResources, Spec};

use crate::error::{Error, Result};
use crate::image::ImageSource;
use crate::isolation::rootfs;
use crate::isolation::{
    Ahead, CgroupStats, ContainerConfig, FirstSpec, Layout, LinuxContainer, Workload,
};
use crate::stages::Stages;
use crate::stdio::LogOwner;
use crate::task::{
    CreateRequest, ExecProcess, ExecRequest, ExitReason, Instance, InstanceFactory, OutputDrained,
};
use guest::OomReport;
use io::{Output, Streams};
pub use layers::ImageLayers;
pub use loader::{compile_stdin_into_cache, Loader, CACHE_DIR_ENV, CACHE_MAX_MB_ENV};

/// The CRI's annotation naming a container's image: used when the container record has none.
pub const CRI_IMAGE_ANNOTATION: &str = "io.kubernetes.cri.image-name";

/// The CRI's annotation of a container's kind: `sandbox` for a pod's pause container.
pub const CRI_CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";

/// Builds containers.
pub struct ContainerFactory {
    loader: Arc<Loader>,
    log_fd: Option<RawFd>,
    images: Option<ImageSource>,
    /// The containerd namespace of its containers.
    namespace: String,
    /// The first container's network namespace and cgroup, made while containerd connects.
    ahead: OnceLock<Ahead>,
}

impl ContainerFactory {
    /// A factory of containers of containerd `namespace`, which keep `log_fd` (the shim log)
    /// open for their failure reports and find raw wasm layers through `images` (none:
    /// programs must be in the rootfs).
    pub fn new(log_fd: Option<RawFd>, images: Option<ImageSource>, namespace: &str) -> Self {
        Self {
            loader: Arc::new(Loader::default()),
            log_fd,
            images,
            namespace: namespace.to_owned(),
            ahead: OnceLock::new(),
        }
    }

    /// Builds the wasm engine ahead, while containerd has yet to send the first Create,
    /// unless that container (in `bundle`) is a pod's sandbox, which runs no wasm (and, in
    /// the same thread, looks up what every build reads of the shim's process); and makes
    /// its network namespace and cgroup ahead where it may ([`Ahead`], which the caller ends
    /// if the bundle goes without a Create).
    pub fn warm_up(&self, bundle: PathBuf) -> Ahead {
        let spec = FirstSpec::new(bundle);
        let ahead = self.ahead.get_or_init(|| Ahead::start(&spec)).clone();
        self.loader.warm_up(move || {
            crate::isolation::warm_up_executor();
            let kind = spec.get().and_then(|s| {
                s.annotations()
                    .as_ref()?
                    .get(CRI_CONTAINER_TYPE_ANNOTATION)
                    .cloned()
            });
            kind.as_deref() != Some("sandbox")
        });
        ahead
    }

    fn image_layers(&self, id: &str, spec: &Spec) -> ImageLayers {
        let Some(source) = self.images.clone() else {
            return ImageLayers::none();
        };
        let id = id.to_owned();
        let hint = spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(CRI_IMAGE_ANNOTATION).cloned());
        ImageLayers::new(Box::new(move || source.wasm_layers(&id, hint.as_deref())))
    }
}

impl InstanceFactory for ContainerFactory {
    type Instance = Container;

    fn create(&self, req: &CreateRequest) -> Result<Container> {
        let mut stages = Stages::new(format!("{}: create", req.id));
        crate::isolation::timeline::mark("shim: create");
        // Taken first, so that a Create failing before the build lets it go too.
        let (netns, cgroup, spec) = match self.ahead.get() {
            Some(ahead) => {
                let (netns, cgroup) = ahead.take(&req.bundle);
                (netns, cgroup, ahead.take_spec(&req.bundle))
            }
            None => (None, None, None),
        };
        let spec = match spec {
            Some(spec) => spec,
            None => crate::isolation::load_spec(&req.bundle)?,
        };
        stages.mark("spec");
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
        // Before the mounts: failing after them would leave them behind.
        let oom_report = OomReport::new().map_err(|e| Error::io("creating a pipe", e))?;
        rootfs::mount_all(&mounts, &rootfs)?;
        let mounted = !mounts.is_empty();
        stages.mark("rootfs mount");
        let image = Arc::new(self.image_layers(&req.id, &spec));
        stages.mark("image layers");
        let streams = Streams {
            owner: LogOwner {
                id: &req.id,
                namespace: &self.namespace,
            },
            terminal: req.terminal,
            stdin: &req.stdin,
            stdout: &req.stdout,
            stderr: &req.stderr,
        };
        let built = self
            .loader
            .workload(&req.id, &spec, &rootfs, &image, Some(oom_report.writer()))
            .and_then(|workload| {
                stages.mark("loader (plan, program, cache map)");
                // The init process waits for Start; ctr and Docker size its terminal after it.
                let (io, prepared) = io::prepare(&streams, None)?;
                stages.mark("stdio");
                crate::isolation::timeline::mark("shim: rootfs, loader and stdio done");
                let linux = LinuxContainer::create(ContainerConfig {
                    id: req.id.clone(),
                    bundle: req.bundle.clone(),
                    spec: spec_to_build(&spec, &workload),
                    workload,
                    io,
                    log_fd: self.log_fd,
                    seccomp_dir: Some(self.loader.seccomp_dir().to_path_buf()),
                    netns,
                    cgroup,
                })?;
                stages.mark("container (libcontainer: cgroup, clone, namespaces, pivot_root)");
                match io::attach(&req.id, prepared, &streams) {
                    Ok(output) => Ok((linux, output)),
                    Err(e) => {
                        if let Err(d) = linux.delete() {
                            warn!(
                                "{}: removing the container after a terminal failure: {d}",
                                req.id
                            );
                        }
                        Err(e)
                    }
                }
            });
        crate::isolation::timeline::mark("shim: create done");
        if built.is_ok() {
            stages.mark("terminal");
            stages.log();
        }
        match built {
            Ok((linux, output)) => Ok(Container {
                id: req.id.clone(),
                linux: Arc::new(linux),
                spec,
                rootfs,
                mounted,
                image,
                loader: self.loader.clone(),
                log_fd: self.log_fd,
                namespace: self.namespace.clone(),
                output: Mutex::new(output),
                oom_report,
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

/// The spec libcontainer builds the container from: a guest's leaves out the kernel's
/// filesystems it never sees (see [`crate::spec::made_for_guest`]) and the masked and
/// read-only paths under them; a native workload's is the bundle's, whole.
fn spec_to_build(spec: &Spec, workload: &Workload) -> Spec {
    let mut spec = spec.clone();
    if !matches!(workload, Workload::Guest(_)) {
        return spec;
    }
    if let Some(mounts) = spec.mounts() {
        let made = crate::spec::made_for_guest(mounts);
        spec.set_mounts(Some(made));
    }
    if let Some(linux) = spec.linux_mut() {
        if let Some(masked) = linux.masked_paths() {
            let left = crate::spec::paths_left_for_guest(masked);
            linux.set_masked_paths(Some(left));
        }
        if let Some(readonly) = linux.readonly_paths() {
            let left = crate::spec::paths_left_for_guest(readonly);
            linux.set_readonly_paths(Some(left));
        }
    }
    spec
}

/// A built container.
pub struct Container {
    id: String,
    linux: Arc<LinuxContainer>,
    spec: Spec,
    rootfs: PathBuf,
    mounted: bool,
    image: Arc<ImageLayers>,
    loader: Arc<Loader>,
    log_fd: Option<RawFd>,
    /// Its containerd namespace (its execs' logging programs are told).
    namespace: String,
    /// The init process's terminal, when containerd asked for one, or its held fifos.
    output: Mutex<Output>,
    /// Where a wasm init process reports running out of memory.
    oom_report: OomReport,
}

impl Container {
    fn output(&self) -> std::sync::MutexGuard<'_, Output> {
        self.output
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Instance for Container {
    type Stats = (Layout, CgroupStats);
    type Exec = ContainerExec;

    fn pid(&self) -> u32 {
        self.linux.pid() as u32
    }
    fn start(&self) -> Result<()> {
        let mut stages = Stages::new(format!("{}: start", self.id));
        crate::isolation::timeline::mark("shim: start");
        self.linux.start()?;
        crate::isolation::timeline::mark("shim: start done");
        stages.mark("signal init");
        stages.log();
        Ok(())
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
        // Without a terminal the shim holds no copy of stdin: containerd closing its end is the
        // whole of it.
        if let Some(terminal) = &self.output().terminal {
            terminal.close_stdin();
        }
    }
    fn resize_pty(&self, width: u32, height: u32) -> Result<()> {
        self.output()
            .terminal
            .as_ref()
            .map_or(Ok(()), |t| t.resize(width, height))
    }
    fn output_drained(&self) -> Option<OutputDrained> {
        self.output().drained()
    }
    fn init_exited(&self) {
        self.linux.init_exited();
    }
    fn exit_reason(&self, code: u32) -> Option<ExitReason> {
        // 137 is SIGKILL's status: the cgroup's OOM kill count tells the OOM killer's apart
        // from `docker kill`'s; a wasm guest that ran out of memory reported it.
        let oom = code == 137 && (self.oom_report.reported() || self.linux.oom_killed());
        oom.then(|| ExitReason::OomKilled {
            memory_limit: self.linux.memory_limit(),
        })
    }
    fn delete(&self) -> Result<()> {
        let mut stages = Stages::new(format!("{}: delete", self.id));
        let result = self.linux.delete();
        stages.mark("container (cgroup, state)");
        if self.mounted {
            rootfs::unmount(&self.rootfs);
        }
        stages.mark("rootfs unmount");
        stages.log();
        if let Err(e) = &result {
            warn!("delete: {e}");
        }
        Ok(result?)
    }

    fn exec(&self, req: &ExecRequest) -> Result<ContainerExec> {
        // The exec sees what the container sees (rootfs, mounts, network), with its own process.
        let mut spec = self.spec.clone();
        spec.set_process(Some(req.process.clone()));
        let label = format!("{} exec {}", self.id, req.exec_id);
        let workload = self
            .loader
            .workload(&label, &spec, &self.rootfs, &self.image, None)?;
        Ok(ContainerExec {
            linux: self.linux.clone(),
            request: req.clone(),
            label,
            workload,
            log_fd: self.log_fd,
            namespace: self.namespace.clone(),
            terminal: Mutex::default(),
        })
    }
}

/// A prepared exec.
pub struct ContainerExec {
    linux: Arc<LinuxContainer>,
    request: ExecRequest,
    label: String,
    workload: Workload,
    log_fd: Option<RawFd>,
    namespace: String,
    terminal: Mutex<ExecTerminal>,
}

/// An exec's output (its terminal or held fifos): made by Start; a terminal size that came
/// before it is kept for it.
#[derive(Default)]
struct ExecTerminal {
    /// Set by a start, before the pid is known to anyone: a terminal, or the held fifos.
    output: Output,
    /// A client may send the window size before Start (some versions of `ctr task exec -t`
    /// do; runc's shim drops it and the exec starts at 0x0). It is applied as soon as the
    /// master arrives, while libcontainer is still finishing the build, so normally before the
    /// program runs.
    early_size: Option<(u32, u32)>,
}

impl ContainerExec {
    fn terminal(&self) -> std::sync::MutexGuard<'_, ExecTerminal> {
        self.terminal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ExecProcess for ContainerExec {
    fn start(&self) -> Result<u32> {
        let r = &self.request;
        let streams = Streams {
            owner: LogOwner {
                id: &r.exec_id,
                namespace: &self.namespace,
            },
            terminal: r.terminal,
            stdin: &r.stdin,
            stdout: &r.stdout,
            stderr: &r.stderr,
        };
        let early_size = self.terminal().early_size;
        let (io, prepared) = io::prepare(&streams, early_size)?;
        let pid = self.linux.exec(
            &r.exec_id,
            &r.process,
            self.workload.clone(),
            io,
            self.log_fd,
        )?;
        match io::attach(&self.label, prepared, &streams) {
            Ok(output) => {
                let mut state = self.terminal();
                // A size that came while the process was being built.
                if let (Some(t), Some((width, height))) = (&output.terminal, state.early_size) {
                    if state.early_size != early_size {
                        if let Err(e) = t.resize(width, height) {
                            warn!("{}: {e}", self.label);
                        }
                    }
                }
                state.output = output;
                Ok(pid as u32)
            }
            Err(e) => {
                let _ = crate::isolation::signal(pid, libc::SIGKILL as u32);
                Err(e)
            }
        }
    }

    fn kill(&self, pid: u32, signal: u32) -> Result<()> {
        Ok(crate::isolation::signal(pid as i32, signal)?)
    }

    fn close_stdin(&self) {
        if let Some(terminal) = &self.terminal().output.terminal {
            terminal.close_stdin();
        }
    }

    fn resize_pty(&self, width: u32, height: u32) -> Result<()> {
        let mut state = self.terminal();
        match &state.output.terminal {
            Some(t) => t.resize(width, height),
            None => {
                state.early_size = Some((width, height));
                Ok(())
            }
        }
    }

    fn output_drained(&self) -> Option<OutputDrained> {
        self.terminal().output.drained()
    }
}
