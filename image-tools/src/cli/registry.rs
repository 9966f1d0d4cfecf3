//! `wasmpod image push` and `pull`, and the registry flags they share with
//! `inspect REF` and `import REF`.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use wasmpod_image::archive::{self, Loaded};
use wasmpod_image::registry::{self, auth, Credentials, Event, Options, RetryPolicy};
use wasmpod_image::{spec, Format, Image, ImageSpec, Reference};

/// How to reach and authenticate to a registry.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Use plain HTTP (for a local registry such as 127.0.0.1:5000).
    #[arg(long)]
    insecure: bool,
    /// User name; the password is read from stdin (needs --password-stdin).
    #[arg(long, short = 'u', value_name = "USER", requires = "password_stdin")]
    username: Option<String>,
    /// Read the password (or token) from stdin.
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Retries on transient failures (connection reset, 5xx, 429), with
    /// exponential backoff from 0.5 s.
    #[arg(long, value_name = "N", default_value_t = 3)]
    retries: u32,
}

impl RegistryArgs {
    /// Pulls `target`, which the caller found is not a local file, from its registry.
    ///
    /// # Errors
    /// `target` is not a valid reference, or the pull failed.
    pub fn pull_target(&self, target: &str) -> Result<Image> {
        let reference = Reference::parse(target).with_context(|| {
            format!("{target} is neither an existing file nor an image reference")
        })?;
        Ok(registry::pull(&reference, &self.options(&reference)?)?)
    }

    /// Options for `reference`: explicit credentials, else Docker's
    /// config.json (`$DOCKER_CONFIG` or `~/.docker`), else anonymous.
    pub fn options(&self, reference: &Reference) -> Result<Options> {
        let credentials = match &self.username {
            Some(username) => {
                let mut password = String::new();
                std::io::stdin()
                    .read_to_string(&mut password)
                    .context("cannot read the password from stdin")?;
                let password = password.trim_end_matches(['\n', '\r']).to_owned();
                if password.is_empty() {
                    bail!("--password-stdin: stdin was empty");
                }
                Some(Credentials {
                    username: username.clone(),
                    password,
                })
            }
            None => {
                let home = std::env::var_os("HOME").map(PathBuf::from);
                let dc = std::env::var_os("DOCKER_CONFIG");
                match auth::docker_config_path(dc.as_deref(), home.as_deref()) {
                    Some(path) => auth::from_docker_config(&path, reference.registry())?,
                    None => None,
                }
            }
        };
        let interactive = std::io::stderr().is_terminal();
        Ok(Options {
            insecure: self.insecure,
            credentials,
            retry: RetryPolicy {
                retries: self.retries,
                ..RetryPolicy::default()
            },
            progress: Some(Box::new(move |event| report(event, interactive))),
        })
    }
}

/// Progress lines on a terminal only; retries are always worth a warning.
fn report(event: &Event, interactive: bool) {
    let short = |d: &str| d.chars().take(19).collect::<String>();
    match event {
        Event::Retry {
            attempt,
            delay,
            error,
        } => eprintln!("warning: retry {attempt} in {delay:?} after: {error}"),
        _ if !interactive => {}
        Event::BlobExists { digest, size } => eprintln!("  exists  {} {size} bytes", short(digest)),
        Event::BlobPushed { digest, size } => eprintln!("  pushed  {} {size} bytes", short(digest)),
        Event::BlobPulled { digest, size } => eprintln!("  pulled  {} {size} bytes", short(digest)),
        Event::Manifest { digest } => eprintln!("  manifest {}", short(digest)),
    }
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Where to push, e.g. 127.0.0.1:5000/hello:1 or ghcr.io/me/app:v1.
    reference: Reference,
    /// The image: an OCI layout (tar or dir), a docker-archive, or a .wasm
    /// (pushed as a wasm artifact).
    #[arg(long, value_name = "FILE", required = true)]
    from: PathBuf,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Pushes and prints `pushed REF DIGEST (...)`.
pub fn push(args: PushArgs) -> Result<()> {
    let image = load_for_push(&args.from, &args.reference)?;
    let options = args.registry.options(&args.reference)?;
    let pushed = registry::push(&image, &args.reference, &options)?;
    println!(
        "pushed {} {} ({} blobs uploaded, {} already present)",
        args.reference, pushed.manifest_digest, pushed.uploaded, pushed.skipped
    );
    Ok(())
}

fn load_for_push(from: &Path, reference: &Reference) -> Result<Image> {
    match archive::read(from)? {
        Loaded::Image(image) => Ok(*image),
        Loaded::Wasm(_) => {
            let epoch =
                std::env::var_os("SOURCE_DATE_EPOCH").map(|v| v.to_string_lossy().into_owned());
            let mut spec = ImageSpec::new(reference.clone());
            spec.wasm = Some(from.to_owned());
            spec.artifact = true;
            spec.epoch = spec::source_date_epoch(epoch.as_deref())?;
            Ok(wasmpod_image::assemble(&spec)?.image)
        }
    }
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// What to pull, e.g. 127.0.0.1:5000/hello:1.
    reference: Reference,
    /// Output file (a directory for --format oci-dir).
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    output: PathBuf,
    /// oci (OCI layout tar), oci-dir or docker-archive.
    #[arg(long, value_name = "FORMAT", default_value = "oci")]
    format: Format,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Pulls and prints `pulled REF DIGEST -> OUT (platform)`.
pub fn pull(args: PullArgs) -> Result<()> {
    let options = args.registry.options(&args.reference)?;
    let image = registry::pull(&args.reference, &options)?;
    wasmpod_image::output::write(&image, args.format, &args.output, 0)?;
    let platform = image
        .platform
        .as_ref()
        .map_or_else(|| "unknown platform".to_owned(), ToString::to_string);
    println!(
        "pulled {} {} -> {} ({platform})",
        args.reference,
        image.manifest.digest,
        args.output.display()
    );
    Ok(())
}
