//! The tasks one shim serves, and the async operations on them.
//!
//! Blocking work (fork, cgroup files, freezer) goes to `spawn_blocking`; the lock is never held
//! across it. Exits arrive from the reaper by pid and wake every waiter of that task.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use log::{info, warn};
use oci_spec::runtime::LinuxResources;
use tokio::sync::watch;

use super::{Event, EventSink, Exit, Lifecycle, Status, TaskError};
use crate::error::{Error, Result};

/// How long Delete of a never-started task waits for the killed process to be reaped.
const REAP_GRACE: Duration = Duration::from_secs(5);
/// Exits of pids nobody claimed yet are kept this many at most (a failed create's child).
const MAX_UNCLAIMED_EXITS: usize = 64;

/// What Create needs, free of protocol types.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// Container id.
    pub id: String,
    /// OCI bundle directory (holds config.json and rootfs/).
    pub bundle: PathBuf,
    /// Mounts containerd asks the shim to stack on `bundle/rootfs` (type, source, options).
    pub rootfs: Vec<RootfsMount>,
    /// stdin fifo path, empty for none.
    pub stdin: String,
    /// stdout fifo path, empty for none.
    pub stdout: String,
    /// stderr fifo path, empty for none.
    pub stderr: String,
    /// A terminal was asked for.
    pub terminal: bool,
}

/// One rootfs mount from containerd (usually overlay).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootfsMount {
    /// Filesystem type, e.g. `overlay`.
    pub kind: String,
    /// Source, e.g. `overlay`.
    pub source: String,
    /// Options such as `lowerdir=...`.
    pub options: Vec<String>,
}

/// A running (or ready) container as the task layer sees it.
pub trait Instance: Send + Sync + 'static {
    /// Resource usage as the isolation layer reports it.
    type Stats: Send;
    /// Pid of the init process, in the shim's pid namespace.
    fn pid(&self) -> u32;
    /// Lets the program run.
    ///
    /// # Errors
    /// The container could not be told to start.
    fn start(&self) -> Result<()>;
    /// Sends `signal` to the init process, or to every process of the container with `all`.
    ///
    /// # Errors
    /// Delivery failed.
    fn kill(&self, signal: u32, all: bool) -> Result<()>;
    /// Freezes every process.
    ///
    /// # Errors
    /// The freezer could not be set.
    fn pause(&self) -> Result<()>;
    /// Thaws.
    ///
    /// # Errors
    /// The freezer could not be set.
    fn resume(&self) -> Result<()>;
    /// Pids of every process in the container.
    ///
    /// # Errors
    /// The cgroup could not be read.
    fn pids(&self) -> Result<Vec<u32>>;
    /// Resource usage.
    ///
    /// # Errors
    /// The cgroup could not be read.
    fn stats(&self) -> Result<Self::Stats>;
    /// Applies new resource limits.
    ///
    /// # Errors
    /// The cgroup refused them.
    fn update(&self, resources: &LinuxResources) -> Result<()>;
    /// Closes the program's stdin so it reads end-of-file.
    fn close_stdin(&self);
    /// Why the process ended, when the container knows more than the status (e.g. OOM kill).
    fn exit_reason(&self, code: u32) -> Option<String>;
    /// Releases everything the container holds: processes, cgroup, mounts, state.
    ///
    /// # Errors
    /// Something could not be removed; what could be was.
    fn delete(&self) -> Result<()>;
}

/// Builds instances; the real one is slow (fork, compile) and is run off the async threads.
pub trait InstanceFactory: Send + Sync + 'static {
    /// The instance type.
    type Instance: Instance;
    /// Builds a container in the Created state.
    ///
    /// # Errors
    /// Bad spec, bad program or isolation failure, with nothing left behind.
    fn create(&self, req: &CreateRequest) -> Result<Self::Instance>;
}

struct Task<I> {
    id: String,
    bundle: PathBuf,
    stdio: [String; 3],
    instance: I,
    lifecycle: Mutex<Lifecycle>,
    exit: watch::Sender<Option<Exit>>,
}

impl<I> Task<I> {
    fn lifecycle(&self) -> MutexGuard<'_, Lifecycle> {
        self.lifecycle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
}

/// The registry and its operations.
pub struct Tasks<F: InstanceFactory, E: EventSink> {
    factory: Arc<F>,
    events: E,
    tasks: Mutex<HashMap<String, Arc<Task<F::Instance>>>>,
    unclaimed_exits: Mutex<HashMap<u32, Exit>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
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

    fn get(&self, id: &str) -> Result<Arc<Task<F::Instance>>> {
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
        let factory = self.factory.clone();
        let request = req.clone();
        let instance = blocking(move || factory.create(&request)).await?;
        let pid = instance.pid();
        let task = Arc::new(Task {
            id: req.id.clone(),
            bundle: req.bundle.clone(),
            stdio: [req.stdin, req.stdout, req.stderr],
            instance,
            lifecycle: Mutex::new(Lifecycle::default()),
            exit: watch::channel(None).0,
        });
        let raced = {
            let mut tasks = lock(&self.tasks);
            let raced = tasks.contains_key(&task.id);
            if !raced {
                tasks.insert(task.id.clone(), task.clone());
            }
            raced
        };
        if raced {
            self.discard(task).await;
            return Err(TaskError::AlreadyExists(req.id).into());
        }
        let early_exit = lock(&self.unclaimed_exits).remove(&pid);
        if let Some(exit) = early_exit {
            self.record_exit(&task, exit).await;
        }
        info!("{}: created, init pid {pid}", task.id);
        self.events
            .publish(Event::Created {
                id: task.id.clone(),
                bundle: task.bundle.clone(),
                pid,
                stdio: task.stdio.clone(),
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
        task.lifecycle().check_killable()?;
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
        let mut rx = self.get(id)?.exit.subscribe();
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return Ok(exit);
            }
            if rx.changed().await.is_err() {
                // The task was deleted while we waited; its exit was recorded before that.
                return rx
                    .borrow()
                    .ok_or_else(|| TaskError::NotFound(id.into()).into());
            }
        }
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
            stdio: task.stdio.clone(),
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
        task.lifecycle().check_killable()?;
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
            let mut rx = task.exit.subscribe();
            let _ = tokio::time::timeout(REAP_GRACE, rx.wait_for(Option::is_some)).await;
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

    /// Called by the reaper for every child that ended.
    pub async fn process_exited(&self, pid: u32, code: u32) {
        let exit = Exit {
            code,
            at: SystemTime::now(),
        };
        let task = lock(&self.tasks)
            .values()
            .find(|t| t.instance.pid() == pid)
            .cloned();
        match task {
            Some(task) => self.record_exit(&task, exit).await,
            None => {
                let mut unclaimed = lock(&self.unclaimed_exits);
                if unclaimed.len() >= MAX_UNCLAIMED_EXITS {
                    unclaimed.clear();
                }
                unclaimed.insert(pid, exit);
            }
        }
    }

    async fn record_exit(&self, task: &Task<F::Instance>, exit: Exit) {
        if task.lifecycle().exit().is_some() {
            return;
        }
        task.lifecycle().exited(exit);
        match task.instance.exit_reason(exit.code) {
            Some(reason) => info!("{}: exited with status {} ({reason})", task.id, exit.code),
            None => info!("{}: exited with status {}", task.id, exit.code),
        }
        task.exit.send_replace(Some(exit));
        self.events
            .publish(Event::Exited {
                id: task.id.clone(),
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
