//! The ctr operations of a [`Containerd`]: images, runs, tasks and containers.
//!
//! Each method is one ctr invocation (or a poll over them) with its output parsed; none
//! changes the daemon's configuration or touches the host directly.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{Containerd, TaskInfo};
use crate::images::TestImage;
use crate::process::{poll, Output};
use crate::run::Run;

impl Containerd {
    /// Imports an OCI-layout tar.
    ///
    /// Uses `--all-platforms`: a `wasip1/wasm` manifest listed with its platform in the
    /// tar's index is otherwise filtered out ("image might be filtered out"), since ctr keeps
    /// only the host platform by default. `--platform wasip1/wasm` works as well, but would
    /// drop a `linux/amd64` image.
    ///
    /// # Errors
    /// When the import fails.
    pub fn import(&self, image: &TestImage) -> Result<&Self> {
        let before = self.image_refs()?;
        self.import_tar(&image.tar)?;
        let after = self.image_refs()?;
        // ctr may store the name as given or normalised (docker.io/...); find which.
        let matches = |r: &&String| {
            **r == image.name
                || r.strip_suffix(image.name.as_str())
                    .is_some_and(|p| p.ends_with('/'))
        };
        let new: Vec<&String> = after.difference(&before).collect();
        let found = after
            .iter()
            .find(matches)
            .or_else(|| (new.len() == 1).then(|| new[0]))
            .with_context(|| {
                format!(
                    "import of {} stored no image named {}; images: {after:?}",
                    image.tar.display(),
                    image.name
                )
            })?;
        self.refs
            .lock()
            .map_err(|_| anyhow::anyhow!("refs poisoned"))?
            .insert(image.name.clone(), found.clone());
        Ok(self)
    }

    /// Image references per `ctr images ls -q`.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn image_refs(&self) -> Result<BTreeSet<String>> {
        let out = self.ctr(["images", "ls", "-q"])?;
        out.success()?;
        Ok(out.stdout.split_whitespace().map(str::to_string).collect())
    }

    /// Imports the OCI-layout tar at `tar` (see [`Containerd::import`]).
    ///
    /// # Errors
    /// When the import fails.
    pub fn import_tar(&self, tar: &Path) -> Result<Output> {
        let out = self.ctr([
            "images".as_ref(),
            "import".as_ref(),
            "--all-platforms".as_ref(),
            tar.as_os_str(),
        ])?;
        out.success()
            .with_context(|| format!("import {}", tar.display()))?;
        Ok(out)
    }

    /// A `ctr run` of `image` (see [`Run`]); run `.exec()`, `.spawn()` or `.detach()` on it.
    pub fn run<'a>(&'a self, image: &TestImage) -> Run<'a> {
        let reference = self
            .refs
            .lock()
            .ok()
            .and_then(|r| r.get(&image.name).cloned())
            .unwrap_or_else(|| image.name.clone());
        Run::new(
            self,
            &reference,
            Some(&image.entrypoint),
            image.rootfs.clone(),
        )
    }

    /// A `ctr run` of the image named `reference` whose entrypoint the harness does not know:
    /// use `.argv(...)` rather than `.args(...)`.
    pub fn run_ref<'a>(&'a self, reference: &str) -> Run<'a> {
        Run::new(self, reference, None, None)
    }

    /// True when `ctr run --help` lists `flag` (`--user` is missing from ctr 1.6).
    ///
    /// # Errors
    /// When `ctr run --help` fails.
    pub fn ctr_run_has_flag(&self, flag: &str) -> Result<bool> {
        static HELP: OnceLock<String> = OnceLock::new();
        let help = match HELP.get() {
            Some(h) => h,
            None => {
                let out = self.ctr(["run", "--help"])?;
                out.success()?;
                HELP.get_or_init(|| out.stdout.clone())
            }
        };
        Ok(help
            .split(|c: char| c.is_whitespace() || c == ',')
            .any(|w| w == flag))
    }

    /// `ctr task ls`, parsed.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn task_list(&self) -> Result<Vec<TaskInfo>> {
        let out = self.ctr(["task", "ls"])?;
        out.success()?;
        Ok(out
            .stdout
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some(TaskInfo {
                    id: (*f.first()?).to_string(),
                    pid: f.get(1)?.parse().unwrap_or(0),
                    status: (*f.get(2)?).to_string(),
                })
            })
            .collect())
    }

    /// The status of task `id` per `ctr task ls`, `None` when there is no such task.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn task_status(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .task_list()?
            .into_iter()
            .find(|t| t.id == id)
            .map(|t| t.status))
    }

    /// Waits until task `id` shows `status` in `ctr task ls`.
    ///
    /// # Errors
    /// When ctr fails or `timeout` passes.
    pub fn wait_for_status(&self, id: &str, status: &str, timeout: Duration) -> Result<()> {
        let mut last = None;
        poll(&format!("task {id} to be {status}"), timeout, || {
            last = self.task_status(id)?;
            Ok((last.as_deref() == Some(status)).then_some(()))
        })
        .with_context(|| format!("last status of {id}: {last:?}"))
    }

    /// Waits for task `id` to stop, deletes it and its container, and returns its exit code.
    ///
    /// The code comes from `ctr task delete`, which logs
    /// `task <id> exit with non-zero exit code <n>` (and exits 0) for a non-zero status.
    ///
    /// # Errors
    /// When the task does not stop within `timeout` or ctr fails.
    pub fn wait_for_exit(&self, id: &str, timeout: Duration) -> Result<i32> {
        self.wait_for_status(id, "STOPPED", timeout)?;
        let out = self.ctr(["task", "delete", id])?;
        out.success().context("ctr task delete")?;
        self.ctr(["containers", "delete", id])?.success()?;
        parse_delete_exit(&out.stderr).with_context(|| format!("exit code of {id} in\n{out}"))
    }

    /// `ctr task kill -s SIGNAL ID` (signal like `SIGTERM` or `9`).
    ///
    /// # Errors
    /// When ctr fails.
    pub fn task_kill(&self, id: &str, signal: &str) -> Result<Output> {
        let out = self.ctr(["task", "kill", "-s", signal, id])?;
        out.success()?;
        Ok(out)
    }

    /// `ctr task pause ID`.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn task_pause(&self, id: &str) -> Result<Output> {
        let out = self.ctr(["task", "pause", id])?;
        out.success()?;
        Ok(out)
    }

    /// `ctr task resume ID`.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn task_resume(&self, id: &str) -> Result<Output> {
        let out = self.ctr(["task", "resume", id])?;
        out.success()?;
        Ok(out)
    }

    /// `ctr task metrics ID` (table format).
    ///
    /// # Errors
    /// When ctr fails.
    pub fn task_metrics(&self, id: &str) -> Result<Output> {
        let out = self.ctr(["task", "metrics", id])?;
        out.success()?;
        Ok(out)
    }

    /// `ctr task ps ID`.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn task_ps(&self, id: &str) -> Result<Output> {
        let out = self.ctr(["task", "ps", id])?;
        out.success()?;
        Ok(out)
    }

    /// Container ids per `ctr containers ls -q`.
    ///
    /// # Errors
    /// When ctr fails.
    pub fn containers(&self) -> Result<Vec<String>> {
        let out = self.ctr(["containers", "ls", "-q"])?;
        out.success()?;
        Ok(out.stdout.split_whitespace().map(str::to_string).collect())
    }
}

/// The exit code `ctr task delete` reports: 0 unless it logs a non-zero one.
fn parse_delete_exit(stderr: &str) -> Result<i32> {
    const MARK: &str = "exit with non-zero exit code ";
    match stderr.find(MARK) {
        None => Ok(0),
        Some(i) => {
            let digits: String = stderr[i + MARK.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            Ok(digits.parse()?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exit code is read from ctr's warning, and no warning means 0.
    #[test]
    fn parses_task_delete_exit_codes() -> Result<()> {
        let line = "time=\"...\" level=warning msg=\"task s1 exit with non-zero exit code 137\"\n";
        assert_eq!(parse_delete_exit(line)?, 137);
        assert_eq!(parse_delete_exit("")?, 0);
        Ok(())
    }
}
