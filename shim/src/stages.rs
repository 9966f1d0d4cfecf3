//! Where a container's time goes: named stages timed back to back and logged as one debug
//! line each (`<id>: create stages: spec 0.05 ms, ... (total 3.91 ms)`), which
//! `scripts/trace-start.sh` lines up with containerd's own log into the README's trace.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use log::debug;

/// The stages of one operation, each measured from the end of the one before.
pub struct Stages {
    what: String,
    started: Instant,
    last: Instant,
    marks: Vec<(&'static str, Duration)>,
}

impl Stages {
    /// Starts timing `what` (e.g. `c1: create`).
    pub fn new(what: impl Into<String>) -> Self {
        let now = Instant::now();
        Self {
            what: what.into(),
            started: now,
            last: now,
            marks: Vec::new(),
        }
    }

    /// Ends stage `name` now; the next stage starts here.
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.marks.push((name, now - self.last));
        self.last = now;
    }

    /// Logs the stages at debug level.
    pub fn log(&self) {
        if log::log_enabled!(log::Level::Debug) {
            debug!("{}", self.line(self.last - self.started));
        }
    }

    fn line(&self, total: Duration) -> String {
        let mut line = format!("{} stages:", self.what);
        for (i, (name, took)) in self.marks.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            let _ = write!(line, "{sep}{name} {:.2} ms", ms(*took));
        }
        let _ = write!(line, " (total {:.2} ms)", ms(total));
        line
    }
}

static PROCESS_START: OnceLock<Instant> = OnceLock::new();

/// Notes that the shim process starts now; `main` calls it first thing.
pub fn process_started() {
    let _ = PROCESS_START.set(Instant::now());
}

/// Logs how long the shim took from `main` to serving ttrpc (its bootstrap), at debug level.
pub fn log_bootstrap(id: &str) {
    if let Some(start) = PROCESS_START.get() {
        debug!(
            "{id}: shim bootstrap: {:.2} ms from main to serving",
            ms(start.elapsed())
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_each_stage_in_order_with_the_total() {
        let mut stages = Stages::new("c1: create");
        stages.mark("spec");
        stages.mark("rootfs");
        let mut fixed = stages.marks.clone();
        fixed[0].1 = Duration::from_micros(120);
        fixed[1].1 = Duration::from_micros(2_500);
        stages.marks = fixed;
        assert_eq!(
            stages.line(Duration::from_micros(2_620)),
            "c1: create stages: spec 0.12 ms, rootfs 2.50 ms (total 2.62 ms)"
        );
    }

    #[test]
    fn stages_follow_each_other() {
        let mut stages = Stages::new("x");
        stages.mark("a");
        std::thread::sleep(Duration::from_millis(2));
        stages.mark("b");
        let sum: Duration = stages.marks.iter().map(|(_, d)| *d).sum();
        assert_eq!(sum, stages.last - stages.started);
        assert!(stages.marks[1].1 >= Duration::from_millis(2));
    }
}
