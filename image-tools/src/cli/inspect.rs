//! `wasmpod image inspect`.

use std::path::Path;

use anyhow::Result;
use clap::Args;
use wasmpod_image::archive::{self, Loaded};
use wasmpod_image::inspect::{self, Inspection};

use super::registry::RegistryArgs;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A .wasm, an OCI layout (tar or directory), a docker-archive tar, or
    /// (when no such file exists) an image reference in a registry.
    target: String,
    /// Print the report as JSON (stable field names; see `Inspection` in
    /// the wasmpod_image docs).
    #[arg(long)]
    json: bool,
    /// Registry options, used when TARGET is a reference.
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Inspects the file (or the image pulled into memory) and prints the report.
pub fn run(args: InspectArgs) -> Result<()> {
    let report = if super::is_local(&args.target) {
        inspect_file(&args.target)?
    } else {
        let image = args.registry.pull_target(&args.target)?;
        inspect::inspect_image(&args.target, &image)?
    };
    print(&report, args.json)
}

pub(crate) fn inspect_file(target: &str) -> Result<Inspection> {
    Ok(match archive::read(Path::new(target))? {
        Loaded::Wasm(bytes) => inspect::inspect_wasm(target, &bytes)?,
        Loaded::Image(image) => inspect::inspect_image(target, &image)?,
    })
}

pub(crate) fn print(report: &Inspection, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", inspect::render(report));
    }
    Ok(())
}
