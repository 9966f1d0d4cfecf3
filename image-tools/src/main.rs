//! `wasmpod`: the command-line front end. Only argument parsing and output
//! live here; the work is done by the `wasmpod_image` library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

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
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once per run; boxing would only add noise"
)]
enum Command {
    /// Work with images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Install the shim and register it with containerd (and Docker).
    Install(cli::install::InstallArgs),
    /// Remove what `install` added.
    Uninstall(cli::install::InstallArgs),
}

/// `image` groups the commands that work on images.
#[derive(Debug, Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once per run; boxing would only add noise"
)]
enum ImageCommand {
    /// Build an OCI image (or wasm artifact) from a .wasm file or host directories.
    Build(cli::build::BuildArgs),
    /// Show what a .wasm, image archive or registry image needs and contains.
    Inspect(cli::inspect::InspectArgs),
    /// Push an image archive, layout or .wasm (as an artifact) to a registry.
    Push(cli::registry::PushArgs),
    /// Pull an image or artifact from a registry into a file.
    Pull(cli::registry::PullArgs),
    /// Load an image archive or registry image into containerd or Docker.
    Import(cli::import::ImportArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Image(ImageCommand::Build(args)) => cli::build::run(args),
        Command::Image(ImageCommand::Inspect(args)) => cli::inspect::run(args),
        Command::Image(ImageCommand::Push(args)) => cli::registry::push(args),
        Command::Image(ImageCommand::Pull(args)) => cli::registry::pull(args),
        Command::Image(ImageCommand::Import(args)) => cli::import::run(args),
        Command::Install(args) => cli::install::run_install(args),
        Command::Uninstall(args) => cli::install::run_uninstall(args),
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
