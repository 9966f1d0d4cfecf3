//! A handle on one running task: signal, pause, inspect and reap it through ctr.
//!
//! Thin: every method forwards to the `task_*` methods of [`Containerd`]. A handle from
//! [`crate::Run::detach`] owns its container and removes it on drop if the test did not.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::containerd::Containerd;
use crate::process::Output;

/// A task in a private daemon.
#[derive(Debug)]
pub struct Task<'a> {
    ctd: &'a Containerd,
    id: String,
    owned: bool,
}

impl<'a> Task<'a> {
    pub(crate) fn new(ctd: &'a Containerd, id: String) -> Self {
        Self {
            ctd,
            id,
            owned: true,
        }
    }

    /// A handle that leaves cleanup to someone else (a foreground `ctr run --rm`).
    pub(crate) fn borrowed(mut self) -> Self {
        self.owned = false;
        self
    }

    /// Gives up the handle without its cleanup and returns the container id: the caller
    /// deletes the task and container (a test that needs the daemon mutably meanwhile).
    pub fn release(mut self) -> String {
        self.owned = false;
        std::mem::take(&mut self.id)
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `ctr task kill -s SIGNAL`.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn kill(&self, signal: &str) -> Result<&Self> {
        self.ctd.task_kill(&self.id, signal)?;
        Ok(self)
    }

    /// `ctr task pause`.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn pause(&self) -> Result<&Self> {
        self.ctd.task_pause(&self.id)?;
        Ok(self)
    }

    /// `ctr task resume`.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn resume(&self) -> Result<&Self> {
        self.ctd.task_resume(&self.id)?;
        Ok(self)
    }

    /// `ctr task metrics`.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn metrics(&self) -> Result<Output> {
        self.ctd.task_metrics(&self.id)
    }

    /// `ctr task ps`.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn ps(&self) -> Result<Output> {
        self.ctd.task_ps(&self.id)
    }

    /// The init process's pid on the host, per `ctr task ls`.
    ///
    /// # Errors
    /// When ctr fails or does not list the task with a pid.
    pub fn pid(&self) -> Result<u32> {
        self.ctd
            .task_list()?
            .into_iter()
            .find(|t| t.id == self.id && t.pid > 0)
            .map(|t| t.pid)
            .with_context(|| format!("ctr task ls has no pid for {}", self.id))
    }

    /// Status per `ctr task ls` (`None` once the task is gone).
    ///
    /// # Errors
    /// When ctr fails.
    pub fn status(&self) -> Result<Option<String>> {
        self.ctd.task_status(&self.id)
    }

    /// Waits until `ctr task ls` shows `status`.
    ///
    /// # Errors
    /// When ctr fails or `timeout` passes.
    pub fn wait_for_status(&self, status: &str, timeout: Duration) -> Result<&Self> {
        self.ctd.wait_for_status(&self.id, status, timeout)?;
        Ok(self)
    }

    /// Waits for the task to stop, deletes task and container, returns the exit code.
    ///
    /// # Errors
    /// See [`Containerd::wait_for_exit`].
    pub fn wait_for_exit(mut self, timeout: Duration) -> Result<i32> {
        self.owned = false;
        self.ctd.wait_for_exit(&self.id, timeout)
    }
}

impl Drop for Task<'_> {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        if let Ok(Some(_)) = self.ctd.task_status(&self.id) {
            let _ = self.ctd.ctr(["task", "kill", "-s", "SIGKILL", &self.id]);
            let _ = self
                .ctd
                .wait_for_status(&self.id, "STOPPED", Duration::from_secs(5));
            let _ = self.ctd.ctr(["task", "delete", "-f", &self.id]);
        }
        let _ = self.ctd.ctr(["containers", "delete", &self.id]);
    }
}
