//! Running a loaded program to completion on the calling thread.
//!
//! This is what the container's init process does after the fork, namespaces and
//! pivot_root; it never compiles anything (the program was compiled and linked before the
//! fork) and blocks until the guest is done.

use wasmtime::component::Func as ComponentFunc;
use wasmtime::Store;

use super::error::{reason, EngineError};
use super::exit::GuestExit;
use super::program::{EntryResult, Linked, Program, INITIALIZE, START};
use super::wasi::{GuestIo, P1State, P2State};
use crate::plan::WasiPlan;

/// Runs `program` as `plan` describes. See [`super::WasmEngine::run`].
pub(crate) fn run(
    program: &Program,
    plan: &WasiPlan,
    io: GuestIo,
) -> Result<GuestExit, EngineError> {
    // wasmtime-wasi's synchronous bindings `block_on` the current tokio runtime if there is
    // one. Inside a runtime that panics; in a process forked from a runtime worker thread the
    // thread-local handle still points at workers that no longer exist, and it deadlocks.
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(EngineError::InsideAsyncRuntime);
    }
    let export = plan.entrypoint.export.as_deref();
    // Fail with a precise message before creating any WASI state.
    program.check_entry(export)?;
    program.check_retained_fds()?;
    // The store uses the program's own engine, so a program can never meet a foreign engine.
    match &*program.linked {
        Linked::Http(_) => Err(EngineError::WrongEngine {
            path: program.path().to_owned(),
            reason: "an HTTP handler component is served (crate::serve), not run to completion",
        }),
        Linked::Module(pre) => {
            let mut store = Store::new(pre.module().engine(), P1State::new(plan, io)?);
            store.limiter(|state| &mut state.limiter);
            let exit = run_module(program, pre, &mut store, export)?;
            Ok(exit.after_refusal(store.data().limiter.refused()))
        }
        Linked::Component(pre) => {
            let mut store = Store::new(pre.component().engine(), P2State::new(plan, io)?);
            store.limiter(|state| &mut state.limiter);
            let exit = match export {
                None => run_command(program, pre, &mut store)?,
                Some(name) => run_component_export(program, pre, &mut store, name)?,
            };
            Ok(exit.after_refusal(store.data().limiter.refused()))
        }
    }
}

fn run_module(
    program: &Program,
    pre: &wasmtime::InstancePre<P1State>,
    store: &mut Store<P1State>,
    export: Option<&str>,
) -> Result<GuestExit, EngineError> {
    let instance = match pre.instantiate(&mut *store) {
        Ok(instance) => instance,
        Err(err) => return instantiate_failure(program, &err),
    };
    let name = export.unwrap_or(START);
    // A reactor (library-style module) must be initialised before any other export is
    // called; a command's `_start` does that itself.
    if export.is_some() {
        if let Some(init) = instance.get_func(&mut *store, INITIALIZE) {
            let init = init
                .typed::<(), ()>(&*store)
                .map_err(|err| signature_error(program, INITIALIZE, &err))?;
            if let Err(err) = init.call(&mut *store, ()) {
                return Ok(GuestExit::from_error(&err));
            }
        }
    }
    let func = instance
        .get_func(&mut *store, name)
        .ok_or_else(|| program.export_not_found(name))?;
    let outcome = match program.module_entry_type(pre.module(), name)? {
        EntryResult::Unit => func
            .typed::<(), ()>(&*store)
            .map_err(|err| signature_error(program, name, &err))?
            .call(&mut *store, ())
            .map(|()| 0),
        EntryResult::ExitCode => func
            .typed::<(), i32>(&*store)
            .map_err(|err| signature_error(program, name, &err))?
            .call(&mut *store, ()),
    };
    Ok(match outcome {
        Ok(code) => GuestExit::Exited(code),
        Err(err) => GuestExit::from_error(&err),
    })
}

fn run_command(
    program: &Program,
    pre: &wasmtime::component::InstancePre<P2State>,
    store: &mut Store<P2State>,
) -> Result<GuestExit, EngineError> {
    let command = match program.command(pre)?.instantiate(&mut *store) {
        Ok(command) => command,
        Err(err) => return instantiate_failure(program, &err),
    };
    Ok(match command.wasi_cli_run().call_run(&mut *store) {
        Ok(Ok(())) => GuestExit::Exited(0),
        // `run` returning `err` is the command's way of saying "failed", like exit(1).
        Ok(Err(())) => GuestExit::Exited(1),
        Err(err) => GuestExit::from_error(&err),
    })
}

fn run_component_export(
    program: &Program,
    pre: &wasmtime::component::InstancePre<P2State>,
    store: &mut Store<P2State>,
    name: &str,
) -> Result<GuestExit, EngineError> {
    let instance = match pre.instantiate(&mut *store) {
        Ok(instance) => instance,
        Err(err) => return instantiate_failure(program, &err),
    };
    let func = instance
        .get_func(&mut *store, name)
        .ok_or_else(|| program.export_not_found(name))?;
    let outcome = call_component_func(store, func).ok_or_else(|| EngineError::ExportSignature {
        path: program.path().to_owned(),
        name: name.to_owned(),
        found: format!("{:?}", func.ty(&*store)),
    })?;
    Ok(match outcome {
        Ok(code) => GuestExit::Exited(code),
        Err(err) => GuestExit::from_error(&err),
    })
}

/// Calls a parameterless component function whose result is nothing, an `s32` exit status or
/// a payload-less `result` (`ok` = 0, `err` = 1, as for `wasi:cli/run`). `None` if the
/// function has another type.
fn call_component_func(
    store: &mut Store<P2State>,
    func: ComponentFunc,
) -> Option<wasmtime::Result<i32>> {
    if let Ok(f) = func.typed::<(), ()>(&*store) {
        return Some(f.call(&mut *store, ()).map(|()| 0));
    }
    if let Ok(f) = func.typed::<(), (i32,)>(&*store) {
        return Some(f.call(&mut *store, ()).map(|(code,)| code));
    }
    if let Ok(f) = func.typed::<(), (Result<(), ()>,)>(&*store) {
        return Some(
            f.call(&mut *store, ())
                .map(|(result,)| if result.is_ok() { 0 } else { 1 }),
        );
    }
    None
}

/// An instantiation failure is the guest's if its start function trapped or exited, and a
/// setup error otherwise (e.g. initial memory above the plan's limit).
fn instantiate_failure(program: &Program, err: &wasmtime::Error) -> Result<GuestExit, EngineError> {
    if GuestExit::is_guest_error(err) {
        Ok(GuestExit::from_error(err))
    } else {
        Err(EngineError::Instantiate {
            path: program.path().to_owned(),
            reason: reason(err),
        })
    }
}

fn signature_error(program: &Program, name: &str, err: &wasmtime::Error) -> EngineError {
    EngineError::ExportSignature {
        path: program.path().to_owned(),
        name: name.to_owned(),
        found: reason(err),
    }
}
