//! The sandbox (pause) image: a static C program built with the host's gcc at test time,
//! packed as a linux/amd64 image by the wasmpod CLI.
//!
//! It sleeps until SIGTERM or SIGINT and then exits 0, and reaps children meanwhile, like
//! Kubernetes' pause. (busybox `sleep` as PID 1 would ignore SIGTERM.)

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::paths;
use crate::process::run_with_timeout;

const PAUSE_C: &str = r#"#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction sa = {0};
  sa.sa_handler = stop;
  sigaction(SIGTERM, &sa, 0);
  sigaction(SIGINT, &sa, 0);
  sa.sa_handler = reap;
  sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  sigaction(SIGCHLD, &sa, 0);
  for (;;) pause();
}
"#;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Builds the pause image tagged `reference` under `work`; returns the OCI-layout tar.
///
/// # Errors
/// When gcc (with a static libc) or the wasmpod CLI is missing or fails.
pub fn build_pause_image(work: &Path, reference: &str) -> Result<PathBuf> {
    let root = work.join("root");
    fs::create_dir_all(&root)?;
    let src = work.join("pause.c");
    fs::write(&src, PAUSE_C)?;
    let mut gcc = Command::new("gcc");
    gcc.args(["-static", "-Os", "-s", "-Wall", "-o"])
        .arg(root.join("pause"))
        .arg(&src);
    run_with_timeout(&mut gcc, TIMEOUT)?
        .success()
        .context("build the pause program (needs gcc and libc6-dev)")?;
    let tar = work.join("pause.tar");
    let mut build = Command::new(paths::require_cli()?);
    build
        .args(["image", "build", "--dir"])
        .arg(format!("{}:/", root.display()))
        .args(["--entrypoint", "/pause", "--platform", "linux/amd64", "-t"])
        .arg(reference)
        .arg("-o")
        .arg(&tar);
    run_with_timeout(&mut build, TIMEOUT)?.success()?;
    Ok(tar)
}
