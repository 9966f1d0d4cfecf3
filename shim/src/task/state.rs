//! The lifecycle of one task (a container's init process): which moves are legal.
//!
//! Pure bookkeeping: no processes, no protocol types. containerd drives a task through
//! `Created -> Running <-> Paused -> Stopped`; anything else is a caller error that becomes
//! FailedPrecondition, as in runc's shim.

use std::time::SystemTime;

use super::TaskError;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Built, isolation applied, waiting for Start.
    Created,
    /// Running its program.
    Running,
    /// Frozen by the cgroup freezer.
    Paused,
    /// Its process has exited; the status is final.
    Stopped,
}

impl Status {
    /// Lower-case name used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// How a task's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit status as containerd reports it: the code, or 128+signal.
    pub code: u32,
    /// When the shim saw the process end.
    pub at: SystemTime,
}

/// The state machine of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    status: Status,
    exit: Option<Exit>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            status: Status::Created,
            exit: None,
        }
    }
}

impl Lifecycle {
    /// The current status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The exit, once the process has ended.
    pub fn exit(&self) -> Option<Exit> {
        self.exit
    }

    /// Created -> Running.
    ///
    /// # Errors
    /// [`TaskError::InvalidTransition`] from any other status.
    pub fn start(&mut self) -> Result<(), TaskError> {
        self.step("start", &[Status::Created], Status::Running)
    }

    /// Running -> Paused.
    ///
    /// # Errors
    /// [`TaskError::InvalidTransition`] unless running.
    pub fn pause(&mut self) -> Result<(), TaskError> {
        self.step("pause", &[Status::Running], Status::Paused)
    }

    /// Paused -> Running.
    ///
    /// # Errors
    /// [`TaskError::InvalidTransition`] unless paused.
    pub fn resume(&mut self) -> Result<(), TaskError> {
        self.step("resume", &[Status::Paused], Status::Running)
    }

    /// Checks that signals can still be delivered (the process exists).
    ///
    /// # Errors
    /// [`TaskError::Finished`] once stopped, which the service answers with NotFound as
    /// runc's shim does; `who` names the process in the message.
    pub fn check_killable(&self, who: &str) -> Result<(), TaskError> {
        match self.status {
            Status::Stopped => Err(TaskError::Finished(who.to_string())),
            _ => Ok(()),
        }
    }

    /// Checks that the task may be deleted: never started, or stopped.
    ///
    /// # Errors
    /// [`TaskError::InvalidTransition`] while the process runs or is paused.
    pub fn check_deletable(&self) -> Result<(), TaskError> {
        self.check("delete", &[Status::Created, Status::Stopped])
    }

    /// Records the end of the process. Idempotent: the first exit seen wins, because the
    /// reaper and a failed start may both report one.
    pub fn exited(&mut self, exit: Exit) {
        if self.exit.is_none() {
            self.exit = Some(exit);
        }
        self.status = Status::Stopped;
    }

    fn check(&self, action: &'static str, allowed: &[Status]) -> Result<(), TaskError> {
        if allowed.contains(&self.status) {
            Ok(())
        } else {
            Err(TaskError::InvalidTransition {
                action,
                status: self.status.name(),
            })
        }
    }

    fn step(&mut self, action: &'static str, from: &[Status], to: Status) -> Result<(), TaskError> {
        self.check(action, from)?;
        self.status = to;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: u32) -> Exit {
        Exit {
            code,
            at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_task_runs_pauses_resumes_and_stops() {
        let mut t = Lifecycle::default();
        assert_eq!(t.status(), Status::Created);
        t.start().unwrap();
        t.pause().unwrap();
        assert_eq!(t.status(), Status::Paused);
        t.resume().unwrap();
        t.exited(exit(0));
        assert_eq!(t.status(), Status::Stopped);
        assert_eq!(t.exit(), Some(exit(0)));
        t.check_deletable().unwrap();
    }

    #[test]
    fn starting_twice_is_refused_with_the_status() {
        let mut t = Lifecycle::default();
        t.start().unwrap();
        let err = t.start().unwrap_err();
        assert_eq!(err.to_string(), "cannot start a task that is running");
    }

    #[test]
    fn a_running_task_cannot_be_deleted() {
        let mut t = Lifecycle::default();
        t.start().unwrap();
        assert!(t.check_deletable().is_err());
        t.pause().unwrap();
        assert!(t.check_deletable().is_err());
    }

    #[test]
    fn a_created_task_can_be_deleted_and_killed() {
        let t = Lifecycle::default();
        t.check_deletable().unwrap();
        t.check_killable("t").unwrap();
    }

    #[test]
    fn pause_needs_running_and_resume_needs_paused() {
        let mut t = Lifecycle::default();
        assert!(t.pause().is_err());
        assert!(t.resume().is_err());
        t.start().unwrap();
        assert!(t.resume().is_err());
    }

    #[test]
    fn the_first_exit_wins_and_a_stopped_task_takes_no_signal() {
        let mut t = Lifecycle::default();
        t.start().unwrap();
        t.exited(exit(143));
        t.exited(exit(137));
        assert_eq!(t.exit().map(|e| e.code), Some(143));
        let err = t.check_killable("c1").unwrap_err();
        assert!(matches!(err, TaskError::Finished(_)), "{err:?}");
        assert_eq!(err.to_string(), "c1: process already finished");
        assert!(t.start().is_err());
    }

    #[test]
    fn a_task_that_dies_before_start_is_stopped() {
        let mut t = Lifecycle::default();
        t.exited(exit(1));
        assert!(t.start().is_err());
        t.check_deletable().unwrap();
    }
}
