//! The tasks one shim serves, and the async operations on them.
//!
//! Blocking work (fork, cgroup files, freezer) goes to `spawn_blocking`; the lock is never held
//! across it. Exits arrive from the reaper by pid and wake every waiter of that task.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use log::{info, warn};
use oci_spec::runtime::LinuxResources;

use super::api::{CreateRequest, ExitReason, Instance, InstanceFactory};
use super::process::{drain, Slot};
use super::{Event, EventSink, Exit, Lifecycle, Status, TaskError};
use crate::error::{Error, Result};

/// How long Delete of a never-started task waits for the killed process to be reaped.
const REAP_GRACE: Duration = Duration::from_secs(5);
/// Exits of pids nobody claimed yet (every create and exec leaves its builder process's) are
/// kept this long: far longer than making a process takes.
const UNCLAIMED_TTL: Duration = Duration::from_secs(60);
/// ... and this many at most.
const MAX_UNCLAIMED_EXITS: usize = 4096;

/// One container: its init process and its execs.
pub(super) struct Task<I: Instance> {
    pub(super) id: String,
    bundle: PathBuf,
    pub(super) instance: I,
    pub(super) init: Slot,
    pub(super) execs: Mutex<HashMap<String, Arc<ExecEntry<I::Exec>>>>,
}

/// Whose process an exit is.
pub(super) enum Owner<I: Instance> {
    Init(Arc<Task<I>>),
    Exec(Arc<Task<I>>, String, Arc<ExecEntry<I::Exec>>),
}

/// One exec of a container.
pub(super) struct ExecEntry<P> {
    pub(super) process: P,
    pub(super) slot: Slot,
}

impl<I: Instance> Task<I> {
    fn lifecycle(&self) -> MutexGuard<'_, Lifecycle> {
        self.init.lifecycle()
    }

    /// The bundle directory.
    pub(super) fn bundle(&self) -> &std::path::Path {
        &self.bundle
    }

    /// The exec with this id.
    ///
    /// # Errors
    /// [`TaskError::NotFound`].
    pub(super) fn exec(&self, exec_id: &str) -> Result<Arc<ExecEntry<I::Exec>>> {
        lock(&self.execs)
            .get(exec_id)
            .cloned()
            .ok_or_else(|| TaskError::NotFound(format!("{} exec {exec_id}", self.id)).into())
    }
}

/// What State reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Init pid.
    pub pid: u32,
    /// Lifecycle status.
    pub status: Status,
    /// Exit, once stopped.
    pub exit: Option<Exit>,
    /// stdin, stdout, stderr paths.
    pub stdio: [String; 3],
    /// Exec id; empty for the init process.
    pub exec_id: String,
}

/// The registry and its operations.
pub struct Tasks<F: InstanceFactory, E: EventSink> {
    factory: Arc<F>,
    pub(super) events: E,
    pub(super) tasks: Mutex<HashMap<String, Arc<Task<F::Instance>>>>,
    /// Exits of pids no task or exec had yet, with when they were seen: a pid's exit counts for
    /// a process only if seen after that process was being made (pids are reused, and the
    /// reaper also sees the shim's other children: libcontainer's helpers, the compile helper).
    unclaimed_exits: Mutex<HashMap<u32, (Instant, Exit)>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("blocking task failed", std::io::Error::other(e)))?
}

impl<F: InstanceFactory, E: EventSink> Tasks<F, E> {
    /// An empty registry.
    pub fn new(factory: F, events: E) -> Self {
        Self {
            factory: Arc::new(factory),
            events,
            tasks: Mutex::new(HashMap::new()),
            unclaimed_exits: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn get(&self, id: &str) -> Result<Arc<Task<F::Instance>>> {
        lock(&self.tasks)
            .get(id)
            .cloned()
            .ok_or_else(|| TaskError::NotFound(id.into()).into())
    }

    /// True when the shim serves no task any more (it may exit).
    pub fn is_empty(&self) -> bool {
        lock(&self.tasks).is_empty()
    }

    /// Builds the container. Returns the init pid.
    ///
    /// # Errors
    /// The id exists, or the factory failed.
    pub async fn create(&self, req: CreateRequest) -> Result<u32> {
        if lock(&self.tasks).contains_key(&req.id) {
            return Err(TaskError::AlreadyExists(req.id).into());
        }
        let since = Instant::now();
        let factory = self.factory.clone();
        let request = req.clone();
        let instance = blocking(move || factory.create(&request)).await?;
        let pid = instance.pid();
        let task = Arc::new(Task {
            id: req.id.clone(),
            bundle: req.bundle.clone(),
            init: Slot::new(pid, [req.stdin, req.stdout, req.stderr]),
            instance,
            execs: Mutex::new(HashMap::new()),
        });
        let mut raced = false;
        let early_exit = self.claim_pid(pid, since, || {
            let mut tasks = lock(&self.tasks);
            raced = tasks.contains_key(&task.id);
            if !raced {
                tasks.insert(task.id.clone(), task.clone());
            }
        });
        if raced {
            self.discard(task).await;
            return Err(TaskError::AlreadyExists(req.id).into());
        }
        if let Some(exit) = early_exit {
            self.record_exit(&task, exit).await;
        }
        info!("{}: created, init pid {pid}", task.id);
        self.events
            .publish(Event::Created {
                id: task.id.clone(),
                bundle: task.bundle.clone(),
                pid,
                stdio: task.init.stdio.clone(),
            })
            .await;
        Ok(pid)
    }

    async fn discard(&self, task: Arc<Task<F::Instance>>) {
        let result = blocking(move || {
            task.instance.kill(libc::SIGKILL as u32, true)?;
            task.instance.delete()
        })
        .await;
        if let Err(e) = result {
            warn!("discarding a duplicate container failed: {e}");
        }
    }

    /// Lets the program run. Returns the pid.
    ///
    /// # Errors
    /// Unknown id, not in Created, or the container could not be started.
    pub async fn start(&self, id: &str) -> Result<u32> {
        let task = self.get(id)?;
        {
            let lifecycle = task.lifecycle();
            if lifecycle.status() != Status::Created {
                return Err(TaskError::InvalidTransition {
                    action: "start",
                    status: lifecycle.status().name(),
                }
                .into());
            }
        }
        let t = task.clone();
        blocking(move || t.instance.start()).await?;
        // The process may already have exited (and been recorded) by now; that is fine.
        let _ = task.lifecycle().start();
        let pid = task.instance.pid();
        info!("{id}: started");
        self.events
            .publish(Event::Started { id: id.into(), pid })
            .await;
        Ok(pid)
    }

    /// Delivers a signal.
    ///
    /// # Errors
    /// Unknown id, already stopped, or delivery failed.
    pub async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        let task = self.get(id)?;
        task.lifecycle().check_killable(id)?;
        info!(
            "{id}: signal {signal}{}",
            if all { " to all processes" } else { "" }
        );
        blocking(move || task.instance.kill(signal, all)).await
    }

    /// Waits for the init process to end.
    ///
    /// # Errors
    /// Unknown id.
    pub async fn wait(&self, id: &str) -> Result<Exit> {
        let task = self.get(id)?;
        Ok(task.init.wait().await)
    }

    /// The task's state.
    ///
    /// # Errors
    /// Unknown id.
    pub fn state(&self, id: &str) -> Result<TaskState> {
        let task = self.get(id)?;
        let lifecycle = task.lifecycle().clone();
        Ok(TaskState {
            id: task.id.clone(),
            bundle: task.bundle.clone(),
            pid: task.instance.pid(),
            status: lifecycle.status(),
            exit: lifecycle.exit(),
            stdio: task.init.stdio.clone(),
            exec_id: String::new(),
        })
    }

    /// Freezes the container.
    ///
    /// # Errors
    /// Unknown id, not running, or the freezer failed.
    pub async fn pause(&self, id: &str) -> Result<()> {
        let task = self.get(id)?;
        task.lifecycle().clone().pause()?;
        let t = task.clone();
        blocking(move || t.instance.pause()).await?;
        task.lifecycle().pause()?;
        info!("{id}: paused");
        self.events.publish(Event::Paused { id: id.into() }).await;
        Ok(())
    }

    /// Thaws the container.
    ///
    /// # Errors
    /// Unknown id, not paused, or the freezer failed.
    pub async fn resume(&self, id: &str) -> Result<()> {
        let task = self.get(id)?;
        task.lifecycle().clone().resume()?;
        let t = task.clone();
        blocking(move || t.instance.resume()).await?;
        task.lifecycle().resume()?;
        info!("{id}: resumed");
        self.events.publish(Event::Resumed { id: id.into() }).await;
        Ok(())
    }

    /// Pids in the container.
    ///
    /// # Errors
    /// Unknown id or unreadable cgroup.
    pub async fn pids(&self, id: &str) -> Result<Vec<u32>> {
        let task = self.get(id)?;
        blocking(move || task.instance.pids()).await
    }

    /// Resource usage.
    ///
    /// # Errors
    /// Unknown id or unreadable cgroup.
    pub async fn stats(&self, id: &str) -> Result<<F::Instance as Instance>::Stats>
    where
        <F::Instance as Instance>::Stats: 'static,
    {
        let task = self.get(id)?;
        blocking(move || task.instance.stats()).await
    }

    /// New resource limits.
    ///
    /// # Errors
    /// Unknown id, stopped, or refused by the cgroup.
    pub async fn update(&self, id: &str, resources: LinuxResources) -> Result<()> {
        let task = self.get(id)?;
        task.lifecycle().check_killable(id)?;
        blocking(move || task.instance.update(&resources)).await
    }

    /// Closes the program's stdin.
    ///
    /// # Errors
    /// Unknown id.
    pub fn close_stdin(&self, id: &str) -> Result<()> {
        self.get(id)?.instance.close_stdin();
        Ok(())
    }

    /// Sets the window size of the init process's terminal (nothing without one).
    ///
    /// # Errors
    /// Unknown id, or the terminal refused the size.
    pub fn resize_pty(&self, id: &str, width: u32, height: u32) -> Result<()> {
        self.get(id)?.instance.resize_pty(width, height)
    }

    /// Deletes a task that is stopped or was never started; returns how it ended.
    ///
    /// # Errors
    /// Unknown id, still running, or cleanup failed.
    pub async fn delete(&self, id: &str) -> Result<(u32, Exit)> {
        let task = self.get(id)?;
        task.lifecycle().check_deletable()?;
        if task.lifecycle().status() == Status::Created {
            // Never started: its init is parked waiting for Start. Kill it and reap it so the
            // exit status is real and no process outlives the task.
            let t = task.clone();
            blocking(move || t.instance.kill(libc::SIGKILL as u32, true)).await?;
            let _ = tokio::time::timeout(REAP_GRACE, task.init.wait()).await;
        }
        let t = task.clone();
        blocking(move || t.instance.delete()).await?;
        lock(&self.tasks).remove(id);
        let pid = task.instance.pid();
        let exit = task.lifecycle().exit().unwrap_or(Exit {
            code: 137,
            at: SystemTime::now(),
        });
        info!("{id}: deleted");
        self.events
            .publish(Event::Deleted {
                id: id.into(),
                pid,
                code: exit.code,
                at: exit.at,
            })
            .await;
        Ok((pid, exit))
    }

    /// Registers a new process's pid (`register`) and takes the exit the reaper may already
    /// have reported for it since `since` (when the claimant began making the process; an
    /// older one was another process's). Atomic with respect to [`Self::process_exited`], which
    /// looks for the owner under the same lock: an exit is either found by its owner or left
    /// here for the claim, never lost between the two.
    pub(super) fn claim_pid(
        &self,
        pid: u32,
        since: Instant,
        register: impl FnOnce(),
    ) -> Option<Exit> {
        let mut unclaimed = lock(&self.unclaimed_exits);
        register();
        unclaimed
            .remove(&pid)
            .filter(|(seen, _)| *seen >= since)
            .map(|(_, exit)| exit)
    }

    /// Called by the reaper for every child that ended.
    pub async fn process_exited(&self, pid: u32, code: u32) {
        let exit = Exit {
            code,
            at: SystemTime::now(),
        };
        let owner = {
            let mut unclaimed = lock(&self.unclaimed_exits);
            let owner = self.owner_of(pid);
            if owner.is_none() {
                // Not yet claimed, or never will be (a builder process, a failed create's).
                unclaimed.retain(|_, (seen, _)| seen.elapsed() < UNCLAIMED_TTL);
                if unclaimed.len() >= MAX_UNCLAIMED_EXITS {
                    unclaimed.clear();
                }
                unclaimed.insert(pid, (Instant::now(), exit));
            }
            owner
        };
        match owner {
            Some(Owner::Init(task)) => self.record_exit(&task, exit).await,
            Some(Owner::Exec(task, exec_id, entry)) => {
                self.record_exec_exit(&task.id, exec_id, &entry, exit).await;
            }
            None => {}
        }
    }

    /// The init process or exec whose pid is `pid`.
    fn owner_of(&self, pid: u32) -> Option<Owner<F::Instance>> {
        let tasks: Vec<_> = lock(&self.tasks).values().cloned().collect();
        if let Some(task) = tasks.iter().find(|t| t.instance.pid() == pid) {
            return Some(Owner::Init(task.clone()));
        }
        tasks.into_iter().find_map(|task| {
            let found = lock(&task.execs)
                .iter()
                .find(|(_, e)| e.slot.pid() == pid)
                .map(|(exec_id, e)| (exec_id.clone(), e.clone()));
            found.map(|(exec_id, entry)| Owner::Exec(task, exec_id, entry))
        })
    }

    async fn record_exit(&self, task: &Task<F::Instance>, exit: Exit) {
        // First: orphans left in a shared PID namespace hold the container's stdio open, and
        // containerd waits for the output to close before it deletes the task.
        task.instance.init_exited();
        drain(&task.id, task.instance.output_drained()).await;
        if !task.init.record_exit(exit) {
            return;
        }
        let reason = task.instance.exit_reason(exit.code);
        match reason {
            Some(reason) => info!("{}: exited with status {} ({reason})", task.id, exit.code),
            None => info!("{}: exited with status {}", task.id, exit.code),
        }
        if let Some(ExitReason::OomKilled { .. }) = reason {
            // Before the exit, as runc's shim (which sees the OOM first) has it arrive.
            self.events
                .publish(Event::OomKilled {
                    id: task.id.clone(),
                })
                .await;
        }
        self.events
            .publish(Event::Exited {
                id: task.id.clone(),
                exec_id: String::new(),
                pid: task.instance.pid(),
                code: exit.code,
                at: exit.at,
            })
            .await;
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
