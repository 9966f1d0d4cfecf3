//! `wasmpod image import`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;
use wasmpod_image::archive::{self, Loaded};
use wasmpod_image::import::{self, Engine};
use wasmpod_image::layer_check::check_image;
use wasmpod_image::{output, Form, Format};

use super::registry::RegistryArgs;

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("engine").required(true).args(["containerd", "docker"]))]
pub struct ImportArgs {
    /// An image archive (OCI tar or dir, docker-archive), or a registry
    /// reference (pulled to a temporary file first).
    target: String,
    /// Import into the containerd listening on SOCK, with `ctr` (on PATH).
    #[arg(long, value_name = "SOCK")]
    containerd: Option<std::path::PathBuf>,
    /// containerd namespace (`k8s.io` for images Kubernetes should see).
    #[arg(
        long,
        value_name = "NS",
        default_value = "default",
        requires = "containerd"
    )]
    namespace: String,
    /// Import into Docker with `docker load` (docker CLI on PATH).
    #[arg(long)]
    docker: bool,
    /// Docker daemon to talk to (`docker -H`), e.g. unix:///run/user/1000/docker.sock.
    #[arg(long, value_name = "URL", requires = "docker")]
    docker_host: Option<String>,
    /// Registry options, used when TARGET is a reference.
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Imports and prints what the engine's CLI printed plus one summary line.
pub fn run(args: ImportArgs) -> Result<()> {
    let engine = match (&args.containerd, args.docker) {
        (Some(socket), _) => Engine::Containerd {
            socket: socket.clone(),
            namespace: args.namespace.clone(),
        },
        (None, _) => Engine::Docker {
            host: args.docker_host.clone(),
        },
    };
    let temp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let tar = temp.path().join("image.tar");
    let path = Path::new(&args.target);
    let (archive, form) = if super::is_local(&args.target) {
        match archive::read(path)? {
            Loaded::Wasm(_) => bail!(
                "{} is a .wasm, not an image: build one first with `wasmpod image build`",
                args.target
            ),
            // Checked before the daemon unpacks the layers as root: see `layer_check`.
            Loaded::Image(image) if path.is_dir() => {
                check_image(&image, path)?;
                output::write(&image, Format::OciArchive, &tar, 0)?;
                (tar.clone(), image.form())
            }
            Loaded::Image(image) => {
                check_image(&image, path)?;
                (path.to_owned(), image.form())
            }
        }
    } else {
        let image = args.registry.pull_target(&args.target)?;
        check_image(&image, path)?;
        output::write(&image, Format::OciArchive, &tar, 0)?;
        (tar.clone(), image.form())
    };
    let printed = import::import(&engine, &archive, form)?;
    print!("{printed}");
    let into = match &engine {
        Engine::Containerd { socket, namespace } => {
            format!("containerd {} (namespace {namespace})", socket.display())
        }
        Engine::Docker { host } => {
            format!("docker {}", host.as_deref().unwrap_or("(default host)"))
        }
    };
    let what = match (form, &engine) {
        (Form::Image, _) => "image",
        (Form::Artifact, Engine::Containerd { .. }) => "wasm artifact (stored, not unpacked)",
        (Form::Artifact, Engine::Docker { .. }) => "wasm artifact",
    };
    println!("imported {} as {what} into {into}", args.target);
    Ok(())
}
