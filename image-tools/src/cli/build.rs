//! `wasmpod image build`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use wasmpod_image::{
    spec, Annotation, DirMapping, EnvVar, Form, Format, ImageSpec, Label, Platform, Reference,
};

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// WebAssembly core module or component; stored as /app.wasm. Omit it to
    /// build a native image from --dir (needs --entrypoint and --platform).
    wasm: Option<PathBuf>,
    /// Image name, e.g. hello:latest or localhost:5000/app:1.
    #[arg(short = 't', long = "tag", value_name = "NAME:TAG")]
    reference: Reference,
    /// Output: a tar for --format oci and docker-archive, a directory for oci-dir.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    output: PathBuf,
    /// Output format: oci (OCI layout tar, also loadable by docker load with
    /// the containerd store), oci-dir (OCI layout directory), docker-archive
    /// (docker save format; Docker's classic store may refuse wasm platforms).
    #[arg(long, value_name = "FORMAT", default_value = "oci")]
    format: Format,
    /// Build the CNCF wasm OCI artifact (config application/vnd.wasm.config.v0+json,
    /// one application/wasm layer) instead of a runnable image.
    #[arg(long)]
    artifact: bool,
    /// Put the wasm in a raw (non-tar) layer of this media type, titled with
    /// the file name, instead of /app.wasm in the filesystem layer:
    /// application/wasm, application/vnd.wasm.content.layer.v1+wasm or
    /// application/vnd.bytecodealliance.wasm.component.layer.v0+wasm.
    /// containerd keeps such layers in its content store (1.7.7 and later).
    #[arg(long, value_name = "MEDIA_TYPE", conflicts_with = "artifact")]
    wasm_layer: Option<String>,
    /// Manifest annotation (repeatable).
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    annotations: Vec<Annotation>,
    /// The config's author field.
    #[arg(long, value_name = "NAME")]
    author: Option<String>,
    /// Environment variable for the image config (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<EnvVar>,
    /// Default argument (config Cmd), in order (repeatable).
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    args: Vec<String>,
    /// Copy a host directory tree or file to GUEST in the image (repeatable).
    #[arg(long = "dir", value_name = "HOST:GUEST")]
    dirs: Vec<DirMapping>,
    /// Image config label (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<Label>,
    /// Platform; defaults to wasip1/wasm (module) or wasip2/wasm (component).
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<Platform>,
    /// Entrypoint path in the image; defaults to /app.wasm for WASM images
    /// (the file name with --wasm-layer).
    #[arg(long, value_name = "PATH")]
    entrypoint: Option<String>,
}

/// Builds and prints one line: name, manifest digest, output, platform.
pub fn run(args: BuildArgs) -> Result<()> {
    // Lossy so a non-UTF-8 value is reported as invalid rather than ignored.
    let epoch = std::env::var_os("SOURCE_DATE_EPOCH").map(|v| v.to_string_lossy().into_owned());
    let mut image = ImageSpec::new(args.reference);
    image.wasm = args.wasm;
    image.env = args.env;
    image.args = args.args;
    image.dirs = args.dirs;
    image.labels = args.labels.into_iter().map(|l| (l.key, l.value)).collect();
    image.annotations = args
        .annotations
        .into_iter()
        .map(|a| (a.key, a.value))
        .collect();
    image.author = args.author;
    image.artifact = args.artifact;
    image.wasm_layer = args.wasm_layer;
    image.platform = args.platform;
    image.entrypoint = args.entrypoint;
    image.epoch = spec::source_date_epoch(epoch.as_deref())?;
    let built = wasmpod_image::build_as(&image, &args.output, args.format)?;
    let form = match built.form {
        Form::Image => "",
        Form::Artifact => ", wasm artifact",
    };
    println!(
        "built {} {}  -> {} ({}{form})",
        built.reference,
        built.manifest_digest,
        args.output.display(),
        built.platform
    );
    Ok(())
}
