//! `wasmpod`: the command-line front end. Only argument parsing and output
//! live here; the work is done by the `wasmpod_image` library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use wasmpod_image::{spec, DirMapping, EnvVar, ImageSpec, Label, Platform, Reference};

#[derive(Debug, Parser)]
#[command(
    name = "wasmpod",
    version,
    about = "Build and manage wasmpod WASI OCI images"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with images.
    #[command(subcommand)]
    Image(ImageCommand),
}

/// `image` is a group so inspect/push/pull/import can join `build` later.
#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Build an OCI image archive from a .wasm file or from host directories.
    Build(BuildArgs),
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// WebAssembly core module or component; stored as /app.wasm. Omit it to
    /// build a native image from --dir (needs --entrypoint and --platform).
    wasm: Option<PathBuf>,
    /// Image name, e.g. hello:latest or localhost:5000/app:1.
    #[arg(short = 't', long = "tag", value_name = "NAME:TAG")]
    reference: Reference,
    /// Output archive (OCI layout tar, also loadable by docker load).
    #[arg(short = 'o', long = "output", value_name = "OUT.tar")]
    output: PathBuf,
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
    /// Entrypoint path in the image; defaults to /app.wasm for WASM images.
    #[arg(long, value_name = "PATH")]
    entrypoint: Option<String>,
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Image(ImageCommand::Build(args)) => image_build(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", report(&err));
            ExitCode::FAILURE
        }
    }
}

/// One line: the error and any causes its message does not already include
/// (the library's messages embed their I/O cause; printing the chain as is
/// would repeat it, and anyhow's default report adds a backtrace).
fn report(err: &anyhow::Error) -> String {
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message = format!("{message}: {cause}");
        }
    }
    message
}

fn image_build(args: BuildArgs) -> Result<()> {
    // Lossy so a non-UTF-8 value is reported as invalid rather than ignored.
    let epoch = std::env::var_os("SOURCE_DATE_EPOCH").map(|v| v.to_string_lossy().into_owned());
    let mut image = ImageSpec::new(args.reference);
    image.wasm = args.wasm;
    image.env = args.env;
    image.args = args.args;
    image.dirs = args.dirs;
    image.labels = args.labels.into_iter().map(|l| (l.key, l.value)).collect();
    image.platform = args.platform;
    image.entrypoint = args.entrypoint;
    image.epoch = spec::source_date_epoch(epoch.as_deref())?;
    let built = wasmpod_image::build(&image, &args.output)?;
    println!(
        "built {} {}  -> {} ({})",
        built.reference,
        built.manifest_digest,
        args.output.display(),
        built.platform
    );
    Ok(())
}
