//! The docker CLI operations the tests use, on a [`Docker`] daemon.
//!
//! Each method is one docker invocation (or a poll over them) with its output parsed; the
//! exit status is left to the caller wherever it is what a test asserts.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::Docker;
use crate::images::TestImage;
use crate::process::{poll, Output};
use crate::system::{self, Proc};

/// Bytes in a `docker stats` size such as `1.707MiB`, `512KiB`, `3.2MB` or `0B`.
pub fn parse_size(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return None,
    };
    Some(n * mult)
}

impl Docker {
    /// `docker load -i` of a test image's tar; returns the reference docker reports.
    /// Each image is loaded once per daemon.
    ///
    /// # Errors
    /// When the load fails or reports no image name.
    pub fn load(&self, image: impl AsRef<TestImage>) -> Result<String> {
        let image = image.as_ref();
        let mut loaded = self
            .loaded
            .lock()
            .map_err(|_| anyhow!("loaded images poisoned"))?;
        if let Some(r) = loaded.get(&image.name) {
            return Ok(r.clone());
        }
        let out = self.docker(["load".as_ref(), "-i".as_ref(), image.tar.as_os_str()])?;
        out.success()
            .with_context(|| format!("docker load {}", image.tar.display()))?;
        let reference = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("Loaded image: "))
            .map(|r| r.trim().to_string())
            .with_context(|| format!("docker load named no image:\n{out}"))?;
        loaded.insert(image.name.clone(), reference.clone());
        Ok(reference)
    }

    /// `docker run --rm FLAGS IMAGE ARGS`, whatever its exit status.
    ///
    /// # Errors
    /// When the CLI cannot run or times out.
    pub fn run_rm(&self, flags: &[&str], image: &str, args: &[&str]) -> Result<Output> {
        self.docker(
            ["run", "--rm"]
                .iter()
                .chain(flags)
                .chain([&image])
                .chain(args),
        )
    }

    /// `docker run -d FLAGS IMAGE ARGS`; returns the container id.
    ///
    /// # Errors
    /// When the run fails.
    pub fn run_detached(&self, flags: &[&str], image: &str, args: &[&str]) -> Result<String> {
        let out = self.docker(
            ["run", "-d"]
                .iter()
                .chain(flags)
                .chain([&image])
                .chain(args),
        )?;
        out.success()?;
        let id = out.stdout.trim().to_string();
        if id.is_empty() {
            bail!("docker run -d printed no id:\n{out}");
        }
        Ok(id)
    }

    /// `docker inspect -f FORMAT ID`, trimmed.
    ///
    /// # Errors
    /// When inspect fails.
    pub fn inspect(&self, id: &str, format: &str) -> Result<String> {
        let out = self.docker(["inspect", "-f", format, id])?;
        out.success()?;
        Ok(out.stdout.trim().to_string())
    }

    /// The container's status per `docker inspect` (`running`, `paused`, `exited`, ...).
    ///
    /// # Errors
    /// When inspect fails.
    pub fn status(&self, id: &str) -> Result<String> {
        self.inspect(id, "{{.State.Status}}")
    }

    /// `docker logs ID` (stdout and stderr as the container wrote them).
    ///
    /// # Errors
    /// When the CLI cannot run or fails.
    pub fn logs(&self, id: &str) -> Result<Output> {
        let out = self.docker(["logs", id])?;
        out.success()?;
        Ok(out)
    }

    /// Polls `docker logs ID` until its stdout contains `needle`; returns that stdout.
    ///
    /// # Errors
    /// When it does not within `timeout`.
    pub fn wait_for_log(&self, id: &str, needle: &str, timeout: Duration) -> Result<String> {
        let mut last = String::new();
        poll(&format!("{needle:?} in the logs of {id}"), timeout, || {
            last = self.logs(id)?.stdout.clone();
            Ok(last.contains(needle).then(|| last.clone()))
        })
        .with_context(|| format!("logs so far: {last:?}"))
    }

    /// Memory use in bytes per `docker stats --no-stream`.
    ///
    /// # Errors
    /// When stats fails or prints something unparsable.
    pub fn memory_usage(&self, id: &str) -> Result<f64> {
        let out = self.docker(["stats", "--no-stream", "--format", "{{.MemUsage}}", id])?;
        out.success()?;
        let used = out.stdout.split('/').next().unwrap_or_default();
        parse_size(used).with_context(|| format!("unparsable memory usage:\n{out}"))
    }

    /// Shim processes of `binary` (a file name) serving dockerd's containerd.
    pub fn shims(&self, binary: &str) -> Vec<Proc> {
        system::shims_of(&self.containerd_socket().display().to_string(), binary)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    /// docker's human sizes become bytes; garbage is refused.
    #[test]
    fn parses_docker_sizes() {
        assert_eq!(parse_size("0B"), Some(0.0));
        assert_eq!(parse_size("2KiB"), Some(2048.0));
        assert_eq!(parse_size(" 1.5MiB "), Some(1.5 * 1024.0 * 1024.0));
        assert_eq!(parse_size("3MB"), Some(3e6));
        assert_eq!(parse_size("--"), None);
    }
}
