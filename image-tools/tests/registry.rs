//! `push`, `pull` and `inspect REF` against a real registry
//! (`docker-registry`, distribution 2.8, private instance), with `skopeo`
//! as a third-party reader of what was pushed.

#![allow(clippy::unwrap_used)] // a failed setup step should just fail the test

mod common;

use std::path::Path;
use std::process::Command;

use common::{have, test_program, wasmpod, Registry, PASSWORD, USER};
use serde_json::Value;
use wasmpod_image::archive::{self, Loaded};
use wasmpod_image::Image;

fn read_image(path: &Path) -> Image {
    match archive::read(path).unwrap() {
        Loaded::Image(image) => *image,
        Loaded::Wasm(_) => panic!("{} is not an image", path.display()),
    }
}

/// Builds the image (module) and the artifact (component) from the test
/// programs into `dir`.
fn build_both(dir: &Path) {
    let hello = test_program("hello.wasm");
    let component = test_program("hello-component.wasm");
    let (hello, component) = (hello.to_str().unwrap(), component.to_str().unwrap());
    wasmpod(
        dir,
        &["image", "build", hello, "-t", "hello:1", "-o", "image.tar"],
        "",
        &[],
    )
    .expect_ok();
    wasmpod(
        dir,
        &[
            "image",
            "build",
            component,
            "-t",
            "comp:1",
            "-o",
            "artifact.tar",
            "--artifact",
        ],
        "",
        &[],
    )
    .expect_ok();
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Both forms push, pull back byte-identical (same manifest, config and
/// layer digests), inspect by reference, and a second push skips every blob.
#[test]
fn push_pull_round_trip_for_image_and_artifact() {
    if !have("docker-registry", "apt-get install docker-registry") {
        return;
    }
    let registry = Registry::start(false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    build_both(dir.path());
    for (file, name, form) in [
        ("image.tar", "hello:1", "image"),
        ("artifact.tar", "comp:1", "artifact"),
    ] {
        let reference = registry.image(name);
        let push = ["image", "push", &reference, "--from", file, "--insecure"];
        let first = wasmpod(dir.path(), &push, "", &[]).expect_ok();
        assert!(
            first.stdout.contains("2 blobs uploaded, 0 already present"),
            "{}",
            first.stdout
        );
        let again = wasmpod(dir.path(), &push, "", &[]).expect_ok();
        assert!(
            again.stdout.contains("0 blobs uploaded, 2 already present"),
            "{}",
            again.stdout
        );

        let out = format!("pulled-{file}");
        wasmpod(
            dir.path(),
            &["image", "pull", &reference, "-o", &out, "--insecure"],
            "",
            &[],
        )
        .expect_ok();
        let (built, pulled) = (
            read_image(&dir.path().join(file)),
            read_image(&dir.path().join(&out)),
        );
        assert_eq!(
            pulled.manifest, built.manifest,
            "{form}: manifest bytes and digest"
        );
        assert_eq!(pulled.config, built.config, "{form}: config");
        assert_eq!(pulled.layers, built.layers, "{form}: layers");

        let report = wasmpod(
            dir.path(),
            &["image", "inspect", &reference, "--insecure", "--json"],
            "",
            &[],
        )
        .expect_ok();
        let json: Value = serde_json::from_str(&report.stdout).unwrap();
        assert_eq!(json["form"], form);
        assert_eq!(json["manifest"]["digest"], built.manifest.digest.as_str());
        let kind = if form == "image" {
            "module"
        } else {
            "component"
        };
        assert_eq!(json["wasm"]["kind"], kind);
    }
}

/// skopeo reads both forms from the registry with the right config media
/// type and platform.
#[test]
fn skopeo_sees_media_types_and_platforms() {
    if !have("docker-registry", "apt-get install docker-registry")
        || !have("skopeo", "apt-get install skopeo")
    {
        return;
    }
    let registry = Registry::start(false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    build_both(dir.path());
    let cases = [
        (
            "image.tar",
            "hello:1",
            "application/vnd.oci.image.config.v1+json",
            "wasip1",
        ),
        (
            "artifact.tar",
            "comp:1",
            "application/vnd.wasm.config.v0+json",
            "wasip2",
        ),
    ];
    for (file, name, config_type, os) in cases {
        let reference = registry.image(name);
        wasmpod(
            dir.path(),
            &["image", "push", &reference, "--from", file, "--insecure"],
            "",
            &[],
        )
        .expect_ok();
        let docker = format!("docker://{reference}");
        let manifest: Value = serde_json::from_str(&skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &docker,
        ]))
        .unwrap();
        assert_eq!(
            manifest["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(manifest["config"]["mediaType"], config_type);
        let config: Value = serde_json::from_str(&skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--config",
            "--raw",
            &docker,
        ]))
        .unwrap();
        assert_eq!(
            (config["os"].as_str(), config["architecture"].as_str()),
            (Some(os), Some("wasm"))
        );
        if config_type == "application/vnd.wasm.config.v0+json" {
            assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
            assert_eq!(config["component"]["exports"][0], "wasi:cli/run@0.2.0");
        } else {
            // skopeo's image view (it refuses artifacts there by design).
            let view: Value =
                serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &docker])).unwrap();
            assert_eq!(
                (view["Os"].as_str(), view["Architecture"].as_str()),
                (Some(os), Some("wasm"))
            );
        }
    }
}

/// With htpasswd auth: a clear message without credentials or with wrong
/// ones; success with --username/--password-stdin and with Docker's
/// config.json.
#[test]
fn htpasswd_auth_errors_are_clear_and_credentials_work() {
    if !have("docker-registry", "apt-get install docker-registry") {
        return;
    }
    let registry = match Registry::start(true) {
        Ok(registry) => registry,
        Err(e) => {
            eprintln!("SKIPPED: cannot start a registry with htpasswd auth: {e:#}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    build_both(dir.path());
    let reference = registry.image("private/hello:1");
    let push = [
        "image",
        "push",
        &reference,
        "--from",
        "image.tar",
        "--insecure",
    ];

    let denied = wasmpod(dir.path(), &push, "", &[]);
    assert!(!denied.ok);
    let expected = format!(
        "authentication required for {}: use --username/--password-stdin or docker login",
        registry.addr
    );
    assert!(denied.stderr.contains(&expected), "{}", denied.stderr);
    let pull_denied = wasmpod(
        dir.path(),
        &["image", "pull", &reference, "-o", "x.tar", "--insecure"],
        "",
        &[],
    );
    assert!(
        pull_denied.stderr.contains(&expected),
        "{}",
        pull_denied.stderr
    );

    let mut with_user = push.to_vec();
    with_user.extend(["--username", USER, "--password-stdin"]);
    let wrong = wasmpod(dir.path(), &with_user, "wrong\n", &[]);
    assert!(
        wrong.stderr.contains("authentication failed for"),
        "{}",
        wrong.stderr
    );
    wasmpod(dir.path(), &with_user, &format!("{PASSWORD}\n"), &[]).expect_ok();

    // `docker login` style credentials, found through $DOCKER_CONFIG.
    let config_dir = dir.path().join("docker");
    std::fs::create_dir(&config_dir).unwrap();
    let auth = base64_encode(&format!("{USER}:{PASSWORD}"));
    let config = format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.addr);
    std::fs::write(config_dir.join("config.json"), config).unwrap();
    let env = [("DOCKER_CONFIG", config_dir.to_str().unwrap())];
    wasmpod(
        dir.path(),
        &["image", "pull", &reference, "-o", "p.tar", "--insecure"],
        "",
        &env,
    )
    .expect_ok();
}

/// A missing image is reported as such, without retries.
#[test]
fn missing_images_are_not_found() {
    if !have("docker-registry", "apt-get install docker-registry") {
        return;
    }
    let registry = Registry::start(false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reference = registry.image("nothing:here");
    let run = wasmpod(
        dir.path(),
        &["image", "pull", &reference, "-o", "x.tar", "--insecure"],
        "",
        &[],
    );
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains(&format!("{reference} not found in {}", registry.addr)),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("retry"), "{}", run.stderr);
    assert!(!dir.path().join("x.tar").exists());
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
