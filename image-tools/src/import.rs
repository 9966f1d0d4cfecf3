//! Loads an image archive into a container engine by running its own CLI:
//! `ctr -a SOCK -n NS images import --all-platforms FILE` for containerd,
//! `docker [-H HOST] load -i FILE` for Docker. The engines' CLIs are used
//! (not their APIs) so that what is imported is exactly what a user would
//! get by hand, with the engine's own error messages.
//!
//! Wasm artifacts are imported with `--no-unpack`: containerd stores them
//! but cannot unpack a layer that is not a filesystem tar ("mismatched image
//! rootfs and manifest layers"); shims that run artifacts read the wasm
//! layer from the content store.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::image::Form;

/// Where to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// A containerd daemon, through `ctr`.
    Containerd {
        /// Its gRPC socket (`ctr -a`).
        socket: PathBuf,
        /// The namespace (`ctr -n`), e.g. `default` or `k8s.io`.
        namespace: String,
    },
    /// A Docker daemon, through the `docker` CLI.
    Docker {
        /// `-H` value (`unix:///path`, `tcp://...`); `None` uses the CLI's default.
        host: Option<String>,
    },
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The engine's CLI is not installed.
    #[error("{program} not found on PATH: {hint}")]
    NotFound {
        /// `ctr` or `docker`.
        program: &'static str,
        /// How to get it.
        hint: &'static str,
    },
    /// The CLI could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// `ctr` or `docker`.
        program: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The CLI ran and failed.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// The program and arguments that import `archive` (of `form`) into `engine`.
pub fn command(engine: &Engine, archive: &Path, form: Form) -> (&'static str, Vec<OsString>) {
    match engine {
        Engine::Containerd { socket, namespace } => {
            let mut args: Vec<OsString> = vec![
                "-a".into(),
                socket.into(),
                "-n".into(),
                namespace.into(),
                "images".into(),
                "import".into(),
                "--all-platforms".into(),
            ];
            if form == Form::Artifact {
                args.push("--no-unpack".into());
            }
            args.push(archive.into());
            ("ctr", args)
        }
        Engine::Docker { host } => {
            let mut args: Vec<OsString> = Vec::new();
            if let Some(host) = host {
                args.extend(["-H".into(), host.into()]);
            }
            args.extend(["load".into(), "-i".into(), archive.into()]);
            ("docker", args)
        }
    }
}

/// Imports the archive at `archive` (an OCI layout tar, or a
/// docker-archive) into `engine`; returns what the CLI printed.
///
/// # Errors
/// [`ImportError::NotFound`] if the CLI is missing, [`ImportError::Failed`]
/// with its stderr if it fails.
pub fn import(engine: &Engine, archive: &Path, form: Form) -> Result<String, ImportError> {
    let (program, args) = command(engine, archive, form);
    let output = match Command::new(program).args(&args).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let hint = match program {
                "ctr" => "it ships with containerd (apt-get install containerd)",
                _ => "install the docker CLI, or use --containerd",
            };
            return Err(ImportError::NotFound { program, hint });
        }
        Err(source) => return Err(ImportError::Spawn { program, source }),
    };
    if !output.status.success() {
        let line: Vec<String> = std::iter::once(program.to_owned())
            .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect();
        return Err(ImportError::Failed {
            command: line.join(" "),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn containerd_and_docker_command_lines() {
        let ctr = Engine::Containerd {
            socket: "/tmp/c.sock".into(),
            namespace: "k8s.io".into(),
        };
        let (program, args) = command(&ctr, Path::new("a.tar"), Form::Image);
        assert_eq!(program, "ctr");
        assert_eq!(
            strings(&args),
            [
                "-a",
                "/tmp/c.sock",
                "-n",
                "k8s.io",
                "images",
                "import",
                "--all-platforms",
                "a.tar"
            ]
        );
        let (_, args) = command(&ctr, Path::new("a.tar"), Form::Artifact);
        assert!(strings(&args).contains(&"--no-unpack".to_owned()));

        let docker = Engine::Docker {
            host: Some("unix:///tmp/d.sock".into()),
        };
        let (program, args) = command(&docker, Path::new("a.tar"), Form::Image);
        assert_eq!(program, "docker");
        assert_eq!(
            strings(&args),
            ["-H", "unix:///tmp/d.sock", "load", "-i", "a.tar"]
        );
        let (_, args) = command(&Engine::Docker { host: None }, Path::new("b"), Form::Image);
        assert_eq!(strings(&args), ["load", "-i", "b"]);
    }
}
