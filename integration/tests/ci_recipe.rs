//! The documented CI recipe (`scripts/ci-recipe.sh`) run end to end: build a wasm program from
//! source, `wasmpod image build`, push to a real registry, pull and run it with a real dockerd
//! through wasmpod.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Result};
use wasmpod_integration::cri::registry::Registry;
use wasmpod_integration::docker::{docker_cli_path, with_docker};
use wasmpod_integration::paths::{require_cli, workspace_root};
use wasmpod_integration::process::run_with_timeout;

/// The recipe succeeds against a private docker-registry and dockerd, the smoke run prints the
/// program's line, and the image it pushed is in the registry and in Docker afterwards.
#[test]
fn ci_recipe_builds_pushes_and_smoke_runs() -> Result<()> {
    with_docker(|docker| {
        let dir = tempfile::tempdir()?;
        let registry = Registry::start(dir.path())?;
        // The recipe's docker is the harness's private CLI setup, through a wrapper.
        let wrapper = dir.path().join("docker");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec env HOME={home} DOCKER_CONFIG={home}/cli {cli} -H unix://{sock} \"$@\"\n",
                home = docker.dir().display(),
                cli = docker_cli_path().display(),
                sock = docker.socket().display(),
            ),
        )?;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
        let mut cmd = Command::new(workspace_root().join("scripts/ci-recipe.sh"));
        cmd.env("REGISTRY", registry.addr())
            .env("IMAGE", "recipe/hello:ci")
            .env("INSECURE", "1")
            .env("WASMPOD", require_cli()?)
            .env("DOCKER", &wrapper);
        let out = run_with_timeout(&mut cmd, Duration::from_secs(300))?;
        out.success()?;
        ensure!(
            out.stdout.lines().any(|l| l == "hello from wasmpod"),
            "smoke run output: {out}"
        );
        let reference = format!("{}/recipe/hello:ci", registry.addr());
        let images = docker.docker(["images", "--format", "{{.Repository}}:{{.Tag}}"])?;
        ensure!(
            images.stdout.contains(&reference),
            "docker has {reference}: {images}"
        );
        Ok(())
    })
}
