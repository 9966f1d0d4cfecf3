//! `wasmpod install` and `wasmpod uninstall`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use wasmpod_image::install::{self, Options, Report, SHIM_NAME};

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The shim binary to install (default: the containerd-shim-wasmpod-v1
    /// next to this wasmpod binary).
    #[arg(long, value_name = "PATH")]
    shim: Option<PathBuf>,
    /// Where to put the shim (must be on containerd's PATH).
    #[arg(long, value_name = "DIR", default_value = "/usr/local/bin")]
    bin_dir: PathBuf,
    /// containerd's config file.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/etc/containerd/config.toml"
    )]
    containerd_config: PathBuf,
    /// The runtime handler name (RuntimeClass `handler`).
    #[arg(long, value_name = "NAME", default_value = "wasmpod")]
    handler: String,
    /// Also register the runtime with Docker (daemon.json).
    #[arg(long)]
    docker: bool,
    /// Docker's daemon.json.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/etc/docker/daemon.json",
        requires = "docker"
    )]
    docker_config: PathBuf,
    /// Print a diff of each file instead of changing anything.
    #[arg(long)]
    dry_run: bool,
    /// Replace a runtime of the same name with another runtime type.
    #[arg(long)]
    force: bool,
}

impl InstallArgs {
    fn options(self) -> Result<Options> {
        let shim = match self.shim {
            Some(shim) => shim,
            None => std::env::current_exe()
                .context("cannot find the wasmpod binary's directory (use --shim)")?
                .with_file_name(SHIM_NAME),
        };
        Ok(Options {
            shim,
            bin_dir: self.bin_dir,
            containerd_config: self.containerd_config,
            handler: self.handler,
            docker_config: self.docker.then_some(self.docker_config),
            dry_run: self.dry_run,
            force: self.force,
        })
    }
}

fn print(report: &Report, dry_run: bool) {
    for diff in &report.diffs {
        print!("{diff}");
    }
    for line in &report.lines {
        println!("{line}");
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    if dry_run {
        println!("dry run: nothing was changed");
    } else if !report.restart.is_empty() {
        let services = report.restart.join(" ");
        println!("restart to apply: systemctl restart {services}");
    }
}

/// `wasmpod install`.
pub fn run_install(args: InstallArgs) -> Result<()> {
    let opts = args.options()?;
    let report = install::install(&opts)?;
    print(&report, opts.dry_run);
    Ok(())
}

/// `wasmpod uninstall`.
pub fn run_uninstall(args: InstallArgs) -> Result<()> {
    let opts = args.options()?;
    let report = install::uninstall(&opts)?;
    print(&report, opts.dry_run);
    Ok(())
}
