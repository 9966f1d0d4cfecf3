//! A loaded program: compiled (or mapped from the cache), its imports checked against what
//! wasmpod provides, and pre-linked, so that a container process only has to instantiate it.
//!
//! All of this happens in the long-lived shim process before the fork. None of it starts a
//! WASI or tokio runtime: linking only records host function pointers.

use std::mem::ManuallyDrop;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre as ComponentPre};
use wasmtime::{ExternType, InstancePre, Module, ValType};
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::error::{reason, EngineError, ProgramKind};
use super::fds::RetainedFd;
use super::http::HttpState;
use super::wasi::{P1State, P2State};

/// Core module import namespaces wasmpod provides (preview 1 and its predecessor).
pub(crate) const P1_MODULES: [&str; 2] = ["wasi_snapshot_preview1", "wasi_unstable"];

/// Default entrypoint of a core module (a WASI command).
pub(crate) const START: &str = "_start";

/// Export a WASI reactor needs called before any other export.
pub(crate) const INITIALIZE: &str = "_initialize";

/// A compiled, import-checked, pre-linked program, ready to run any number of times.
///
/// Cheap to keep around: its code is a shared read-only mapping of the `.cwasm` cache file.
pub struct Program {
    path: PathBuf,
    cache_file: PathBuf,
    from_cache: bool,
    exports: Vec<String>,
    retained: Vec<RetainedFd>,
    /// Dropped under the fork gate (see the `Drop` impl).
    pub(crate) linked: ManuallyDrop<Linked>,
}

impl Drop for Program {
    fn drop(&mut self) {
        // The last reference to its code unregisters it from wasmtime's process-wide registry,
        // which a fork must not catch halfway (see `crate::fork_gate`).
        let _gate = crate::fork_gate::shared();
        // SAFETY: `linked` is never used again: this is the program's drop.
        unsafe { ManuallyDrop::drop(&mut self.linked) };
    }
}

/// The kind-specific part of a [`Program`].
pub(crate) enum Linked {
    Module(InstancePre<P1State>),
    Component(ComponentPre<P2State>),
    /// An HTTP handler, linked by a serving engine: instantiated once per request.
    Http(ProxyPre<HttpState>),
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("path", &self.path)
            .field("kind", &self.kind())
            .field("cache_file", &self.cache_file)
            .field("from_cache", &self.from_cache)
            .field("exports", &self.exports)
            .field("retained_fds", &self.retained_fds())
            .finish()
    }
}

impl Program {
    pub(crate) fn new(
        path: &Path,
        cache_file: PathBuf,
        from_cache: bool,
        retained: Vec<RetainedFd>,
        linked: Linked,
    ) -> Self {
        let exports = match &linked {
            // Only functions: they are what an entrypoint can name.
            Linked::Module(pre) => pre
                .module()
                .exports()
                .filter(|e| matches!(e.ty(), ExternType::Func(_)))
                .map(|e| e.name().to_owned())
                .collect(),
            Linked::Component(pre) => component_exports(pre.component()),
            Linked::Http(pre) => component_exports(pre.instance_pre().component()),
        };
        Self {
            path: path.to_owned(),
            cache_file,
            from_cache,
            exports,
            retained,
            linked: ManuallyDrop::new(linked),
        }
    }

    /// The path the program was loaded as (used in messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Core module or component.
    pub fn kind(&self) -> ProgramKind {
        match *self.linked {
            Linked::Module(_) => ProgramKind::Module,
            Linked::Component(_) | Linked::Http(_) => ProgramKind::Component,
        }
    }

    /// The engine the program was compiled for.
    pub(crate) fn wasmtime_engine(&self) -> &wasmtime::Engine {
        match &*self.linked {
            Linked::Module(pre) => pre.module().engine(),
            Linked::Component(pre) => pre.component().engine(),
            Linked::Http(pre) => pre.engine(),
        }
    }

    /// Whether the program is an HTTP handler to serve, one instance per request, rather than
    /// a program to run once.
    pub fn serves_http(&self) -> bool {
        matches!(*self.linked, Linked::Http(_))
    }

    /// Exported function names of a module, or top-level export names of a component
    /// (e.g. `wasi:cli/run@0.2.0`), in definition order.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    /// `true` if the compiled code came from the cache: nothing was compiled by this load.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// The `.cwasm` file the code is mapped from.
    pub fn cache_file(&self) -> &Path {
        &self.cache_file
    }

    /// Descriptors (on [`Self::cache_file`]) that must stay open in the process that calls
    /// [`super::WasmEngine::run`]: instantiation maps the guest's initial memory through them.
    /// A step that closes inherited descriptors in the container process must skip these.
    /// Empty when [`super::EngineConfig::share_initial_memory`] is off.
    pub fn retained_fds(&self) -> Vec<RawFd> {
        self.retained.iter().map(|r| r.fd).collect()
    }

    /// Fails if a retained descriptor was closed or now refers to another file.
    pub(crate) fn check_retained_fds(&self) -> Result<(), EngineError> {
        match self.retained.iter().find(|r| !r.is_intact()) {
            None => Ok(()),
            Some(r) => Err(EngineError::CodeFileClosed {
                path: self.cache_file.clone(),
                fd: r.fd,
            }),
        }
    }

    /// Checks that the program can be started with this entrypoint, without running anything,
    /// so the shim can reject a bad `#export` at create time instead of in the container.
    ///
    /// `None` means the default: `_start` for a module, `wasi:cli/run` for a component.
    ///
    /// # Errors
    ///
    /// [`EngineError::ExportNotFound`], [`EngineError::ExportSignature`], or
    /// [`EngineError::NotACommand`] for a component without `wasi:cli/run`.
    pub fn check_entry(&self, export: Option<&str>) -> Result<(), EngineError> {
        match (&*self.linked, export) {
            (Linked::Module(pre), _) => {
                self.module_entry_type(pre.module(), export.unwrap_or(START))?;
                Ok(())
            }
            (Linked::Component(pre), None) => self.command(pre).map(drop),
            (Linked::Component(pre), Some(name)) => self.check_component_export(pre, name),
            (Linked::Http(_), None) => Ok(()),
            (Linked::Http(pre), Some(name)) => {
                self.check_component_export(pre.instance_pre(), name)
            }
        }
    }

    /// Type of a module's entrypoint export; only `() -> ()` and `() -> i32` are accepted.
    pub(crate) fn module_entry_type(
        &self,
        module: &Module,
        name: &str,
    ) -> Result<EntryResult, EngineError> {
        let ty = match module.get_export(name) {
            Some(ExternType::Func(ty)) => ty,
            _ => return Err(self.export_not_found(name)),
        };
        let results: Vec<ValType> = ty.results().collect();
        if ty.params().len() == 0 {
            match results.as_slice() {
                [] => return Ok(EntryResult::Unit),
                [ValType::I32] => return Ok(EntryResult::ExitCode),
                _ => {}
            }
        }
        Err(EngineError::ExportSignature {
            path: self.path.clone(),
            name: name.to_owned(),
            found: ty.to_string(),
        })
    }

    /// The `wasi:cli/run` bindings of a command component.
    pub(crate) fn command(
        &self,
        pre: &ComponentPre<P2State>,
    ) -> Result<CommandPre<P2State>, EngineError> {
        CommandPre::new(pre.clone()).map_err(|_| EngineError::NotACommand {
            path: self.path.clone(),
            available: self.exports.clone(),
        })
    }

    fn check_component_export<T: 'static>(
        &self,
        pre: &ComponentPre<T>,
        name: &str,
    ) -> Result<(), EngineError> {
        let component = pre.component();
        let ty = component.component_type();
        let func = match ty.get_export(component.engine(), name).map(|e| e.ty) {
            Some(ComponentItem::ComponentFunc(func)) => func,
            _ => return Err(self.export_not_found(name)),
        };
        if func.params().len() == 0 && func.results().len() <= 1 {
            // The exact result type is checked when the call is typed; see `run`.
            return Ok(());
        }
        Err(EngineError::ExportSignature {
            path: self.path.clone(),
            name: name.to_owned(),
            found: format!("{func:?}"),
        })
    }

    pub(crate) fn export_not_found(&self, name: &str) -> EngineError {
        EngineError::ExportNotFound {
            path: self.path.clone(),
            name: name.to_owned(),
            available: self.exports.clone(),
        }
    }
}

/// What a module entrypoint returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryResult {
    /// `() -> ()`: exit status 0.
    Unit,
    /// `() -> i32`: the result is the exit status.
    ExitCode,
}

fn component_exports(component: &Component) -> Vec<String> {
    component
        .component_type()
        .exports(component.engine())
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// Rejects core module imports outside WASI preview 1 with a message naming the first one.
pub(crate) fn check_module_imports(path: &Path, module: &Module) -> Result<(), EngineError> {
    for import in module.imports() {
        if !P1_MODULES.contains(&import.module()) {
            return Err(EngineError::UnsatisfiedImport {
                path: path.to_owned(),
                module: import.module().to_owned(),
                name: import.name().to_owned(),
                kind: match import.ty() {
                    ExternType::Func(_) => "function",
                    ExternType::Global(_) => "global",
                    ExternType::Table(_) => "table",
                    ExternType::Memory(_) => "memory",
                    ExternType::Tag(_) => "tag",
                },
            });
        }
    }
    Ok(())
}

/// Rejects component imports outside `wasi:*` with a message naming the first one.
pub(crate) fn check_component_imports(
    path: &Path,
    component: &Component,
) -> Result<(), EngineError> {
    let ty = component.component_type();
    for (name, item) in ty.imports(component.engine()) {
        if !name.starts_with("wasi:") {
            return Err(EngineError::UnsatisfiedComponentImport {
                path: path.to_owned(),
                name: name.to_owned(),
                kind: match item.ty {
                    ComponentItem::ComponentFunc(_) | ComponentItem::CoreFunc(_) => "function",
                    ComponentItem::Module(_) => "module",
                    ComponentItem::Component(_) => "component",
                    ComponentItem::ComponentInstance(_) => "instance",
                    ComponentItem::Type(_) => "type",
                    ComponentItem::Resource(_) => "resource",
                },
            });
        }
    }
    Ok(())
}

/// Maps a linker failure (an import that names WASI but that wasmtime-wasi does not define
/// with that type) to an error.
pub(crate) fn link_error(path: &Path, err: &wasmtime::Error) -> EngineError {
    EngineError::Link {
        path: path.to_owned(),
        reason: reason(err),
    }
}
