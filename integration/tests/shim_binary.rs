//! The shim binary on its own, without containerd.

use std::fs;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use wasmpod_integration::paths::{require_shim, workspace_root};
use wasmpod_integration::process::run_with_timeout;

/// The `version = "..."` line of the TOML section `section` in `text`.
fn toml_version(text: &str, section: &str) -> Option<String> {
    let mut current = "";
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            current = line;
        } else if current == section {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            if key.trim() == "version" {
                return Some(value.trim().trim_matches('"').to_string());
            }
        }
    }
    None
}

/// wasmpod's version per `shim/Cargo.toml`, following `version.workspace = true`.
fn shim_version() -> Result<String> {
    let root = workspace_root();
    let shim = fs::read_to_string(root.join("shim/Cargo.toml"))?;
    if let Some(v) = toml_version(&shim, "[package]") {
        return Ok(v);
    }
    if shim.contains("version.workspace = true") {
        let ws = fs::read_to_string(root.join("Cargo.toml"))?;
        return toml_version(&ws, "[workspace.package]")
            .context("no version in [workspace.package] of Cargo.toml");
    }
    bail!("no version in shim/Cargo.toml")
}

/// `containerd-shim-wasmpod-v1 -v` exits 0 and prints a line naming wasmpod and the version
/// from `shim/Cargo.toml`.
#[test]
fn version_flag_prints_wasmpod_and_version() -> Result<()> {
    let shim = require_shim()?;
    let version = shim_version()?;
    let out = run_with_timeout(Command::new(&shim).arg("-v"), Duration::from_secs(10))?;
    out.success()?;
    ensure!(
        out.stdout
            .lines()
            .any(|l| l.contains("wasmpod") && l.split_whitespace().any(|w| w == version)),
        "no line with wasmpod and {version}:\n{out}"
    );
    Ok(())
}

/// `containerd-shim-wasmpod-v1 -info` (what containerd 2 asks before any shim runs) exits 0
/// and writes a RuntimeInfo protobuf naming the runtime type and carrying the version.
#[test]
fn info_flag_prints_the_runtime_info_protobuf() -> Result<()> {
    use containerd_shim_protos::protobuf::Message;
    use containerd_shim_protos::types::introspection::RuntimeInfo;
    use std::io::Write;
    use std::process::Stdio;

    let shim = require_shim()?;
    let mut child = Command::new(&shim)
        .arg("-info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    // containerd pipes the runtime options (none here) and closes stdin.
    child.stdin.take().context("stdin")?.write_all(b"")?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "-info failed: {:?}", out.status);
    let info =
        RuntimeInfo::parse_from_bytes(&out.stdout).context("-info output is not RuntimeInfo")?;
    ensure!(
        info.name == "io.containerd.wasmpod.v1",
        "name {:?}",
        info.name
    );
    ensure!(
        info.version.version == shim_version()?,
        "version {:?}",
        info.version.version
    );
    Ok(())
}

/// An action containerd never gives fails at once, naming it.
#[test]
fn an_unknown_action_is_refused_by_name() -> Result<()> {
    let shim = require_shim()?;
    let out = run_with_timeout(
        Command::new(&shim)
            .args(["-namespace", "default", "-id", "c1", "bogus"])
            .stdin(std::process::Stdio::null()),
        Duration::from_secs(10),
    )?;
    ensure!(out.code() == 1, "exit code {}: {out}", out.code());
    ensure!(
        out.stderr.contains("unknown action \"bogus\""),
        "the error does not name the action: {out}"
    );
    Ok(())
}

/// `start` forks the serving shim; when that shim cannot serve (here: no TTRPC_ADDRESS, which
/// containerd always sets), `start` fails with its reason, and leaves no process or socket.
#[test]
fn start_fails_with_the_serving_shims_reason() -> Result<()> {
    use wasmpod_integration::system::{procs_mentioning, shim_socket};
    let shim = require_shim()?;
    let bundle = tempfile::tempdir()?;
    let address = bundle.path().join("containerd.sock");
    let id = format!("no-ttrpc-{}", std::process::id());
    let out = run_with_timeout(
        Command::new(&shim)
            .args(["-namespace", "default", "-id", &id, "-address"])
            .arg(&address)
            .args(["-publish-binary", "/bin/false", "start"])
            .current_dir(bundle.path())
            .env_remove("TTRPC_ADDRESS")
            .stdin(std::process::Stdio::null()),
        Duration::from_secs(10),
    )?;
    ensure!(out.code() == 1, "start exit code {}: {out}", out.code());
    ensure!(
        out.stderr.contains("TTRPC_ADDRESS is not set"),
        "start does not say why its shim could not serve: {out}"
    );
    ensure!(
        !shim_socket(&address, "default", &id).exists(),
        "a socket was left"
    );
    let left = procs_mentioning(&id);
    ensure!(left.is_empty(), "processes left: {left:?}");
    Ok(())
}
