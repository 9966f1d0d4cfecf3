//! Exec operations: additional processes in a running container (`ctr task exec`,
//! `docker exec`, `kubectl exec`). Same lifecycle rules as the init process, keyed by exec id.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use log::info;

use super::api::{ExecProcess, ExecRequest, Instance, InstanceFactory};
use super::process::{drain, Slot};
use super::registry::{blocking, lock, ExecEntry, TaskState, Tasks};
use super::{Event, EventSink, Exit, Status, TaskError};
use crate::error::Result;

impl<F: InstanceFactory, E: EventSink> Tasks<F, E> {
    /// Registers an exec (prepared, not started).
    ///
    /// # Errors
    /// Unknown container, container not running, duplicate exec id, or a bad program.
    pub async fn exec(&self, id: &str, req: ExecRequest) -> Result<()> {
        let task = self.get(id)?;
        let status = task.init.lifecycle().status();
        if status != Status::Running {
            return Err(TaskError::InvalidTransition {
                action: "exec in",
                status: status.name(),
            }
            .into());
        }
        if lock(&task.execs).contains_key(&req.exec_id) {
            return Err(TaskError::AlreadyExists(format!("{id} exec {}", req.exec_id)).into());
        }
        let t = task.clone();
        let request = req.clone();
        let process = blocking(move || t.instance.exec(&request)).await?;
        let entry = Arc::new(ExecEntry {
            process,
            slot: Slot::new(0, [req.stdin, req.stdout, req.stderr]),
        });
        lock(&task.execs).insert(req.exec_id.clone(), entry);
        info!("{id}: exec {} added", req.exec_id);
        self.events
            .publish(Event::ExecAdded {
                id: id.into(),
                exec_id: req.exec_id,
            })
            .await;
        Ok(())
    }

    /// Starts an exec; returns its pid.
    ///
    /// # Errors
    /// Unknown ids, already started, or the process could not start.
    pub async fn start_exec(&self, id: &str, exec_id: &str) -> Result<u32> {
        let entry = self.get(id)?.exec(exec_id)?;
        entry.slot.lifecycle().clone().start()?;
        let e = entry.clone();
        let since = Instant::now();
        let pid = blocking(move || e.process.start()).await?;
        // A short exec may have ended (and been reaped) before its pid was known here.
        let early_exit = self.claim_pid(pid, since, || {
            entry.slot.set_pid(pid);
            let _ = entry.slot.lifecycle().start();
        });
        if let Some(exit) = early_exit {
            self.record_exec_exit(id, exec_id.to_string(), &entry, exit)
                .await;
        }
        info!("{id}: exec {exec_id} started, pid {pid}");
        self.events
            .publish(Event::ExecStarted {
                id: id.into(),
                exec_id: exec_id.into(),
                pid,
            })
            .await;
        Ok(pid)
    }

    /// Signals an exec.
    ///
    /// # Errors
    /// Unknown ids, not running, or delivery failed.
    pub async fn kill_exec(&self, id: &str, exec_id: &str, signal: u32) -> Result<()> {
        let entry = self.get(id)?.exec(exec_id)?;
        entry
            .slot
            .lifecycle()
            .check_killable(&format!("{id} exec {exec_id}"))?;
        let pid = entry.slot.pid();
        blocking(move || entry.process.kill(pid, signal)).await
    }

    /// Waits for an exec to end.
    ///
    /// # Errors
    /// Unknown ids.
    pub async fn wait_exec(&self, id: &str, exec_id: &str) -> Result<Exit> {
        let entry = self.get(id)?.exec(exec_id)?;
        Ok(entry.slot.wait().await)
    }

    /// State of an exec.
    ///
    /// # Errors
    /// Unknown ids.
    pub fn exec_state(&self, id: &str, exec_id: &str) -> Result<TaskState> {
        let task = self.get(id)?;
        let entry = task.exec(exec_id)?;
        let lifecycle = entry.slot.lifecycle().clone();
        Ok(TaskState {
            id: id.into(),
            bundle: task.bundle().to_path_buf(),
            pid: entry.slot.pid(),
            status: lifecycle.status(),
            exit: lifecycle.exit(),
            stdio: entry.slot.stdio.clone(),
            exec_id: exec_id.into(),
        })
    }

    /// Closes an exec's stdin (CloseIO with an exec id).
    ///
    /// # Errors
    /// Unknown ids.
    pub fn close_exec_stdin(&self, id: &str, exec_id: &str) -> Result<()> {
        self.get(id)?.exec(exec_id)?.process.close_stdin();
        Ok(())
    }

    /// Sets the window size of an exec's terminal (nothing without one).
    ///
    /// # Errors
    /// Unknown ids, or the terminal refused the size.
    pub fn resize_exec_pty(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<()> {
        self.get(id)?
            .exec(exec_id)?
            .process
            .resize_pty(width, height)
    }

    /// Forgets an exec that has ended or never started.
    ///
    /// # Errors
    /// Unknown ids, or still running.
    pub fn delete_exec(&self, id: &str, exec_id: &str) -> Result<(u32, Exit)> {
        let task = self.get(id)?;
        let entry = task.exec(exec_id)?;
        entry.slot.lifecycle().check_deletable()?;
        lock(&task.execs).remove(exec_id);
        let exit = entry.slot.lifecycle().exit().unwrap_or(Exit {
            code: 0,
            at: SystemTime::now(),
        });
        info!("{id}: exec {exec_id} deleted");
        Ok((entry.slot.pid(), exit))
    }

    /// Records the exit of an exec and reports it, once.
    pub(super) async fn record_exec_exit(
        &self,
        id: &str,
        exec_id: String,
        entry: &ExecEntry<<F::Instance as Instance>::Exec>,
        exit: Exit,
    ) {
        let label = format!("{id} exec {exec_id}");
        drain(&label, entry.process.output_drained()).await;
        if entry.slot.record_exit(exit) {
            info!("{id}: exec {exec_id} exited with status {}", exit.code);
            self.events
                .publish(Event::Exited {
                    id: id.to_string(),
                    exec_id,
                    pid: entry.slot.pid(),
                    code: exit.code,
                    at: exit.at,
                })
                .await;
        }
    }
}
