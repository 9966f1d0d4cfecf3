//! Images whose wasm is a raw layer (not a file in a tar layer), and the CNCF wasm artifact:
//! built with `wasmpod image build`, pushed to a real registry, pulled through containerd 1.7
//! or 2.x, run by wasmpod, which reads the layer from containerd's content store.
//!
//! containerd keeps such layers out of the snapshot since 1.7.7 / 1.6.25 (before that the
//! unpack fails with "mismatched image rootfs and manifest layers"), so these tests use the
//! containerd the CRI tests use ([`cri::containerd_path`]: the lane's own from 1.7 on, else
//! trixie's 1.7) and its ctr.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use k8s_cri::v1::ContainerState;
use wasmpod_integration::cri::registry::Registry;
use wasmpod_integration::cri::{self, with_cri};
use wasmpod_integration::{images, Containerd, TestImage};

const LAYER_TYPES: [&str; 3] = [
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
];

const HELLO: &str = "hello from wasmpod\n";

/// A private containerd of 1.7 or later (with its own ctr) and a registry; checks nothing is
/// left after.
fn with_layer_containerd(body: impl FnOnce(&Containerd, &Registry) -> Result<()>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut registry = Registry::start(dir.path())?;
    let ctd = Containerd::start(cri::containerd_path())?;
    let result = body(&ctd, &registry).and_then(|()| ctd.assert_clean());
    if result.is_err() {
        eprintln!("containerd log tail:\n{}", ctd.log_tail(40));
    }
    drop(ctd);
    registry.stop();
    result
}

/// Pushes `image` to `registry` and pulls it with ctr; returns the reference.
fn push_and_pull(ctd: &Containerd, registry: &Registry, image: &TestImage) -> Result<String> {
    registry.push(&image.tar, &image.name)?;
    let reference = format!("{}/{}", registry.addr(), image.name);
    ctd.ctr([
        "images",
        "pull",
        "--plain-http",
        "--all-platforms",
        &reference,
    ])?
    .success()
    .with_context(|| format!("ctr images pull {reference}"))?;
    Ok(reference)
}

/// Each wasm layer media type: `ctr run` of the pulled image prints hello; the program is
/// nowhere in the container's rootfs, only in the content store.
#[test]
fn ctr_runs_every_wasm_layer_media_type_from_a_registry() -> Result<()> {
    with_layer_containerd(|ctd, registry| {
        for media_type in LAYER_TYPES {
            let image = images().wasm_layer("hello", media_type, None)?;
            let reference = push_and_pull(ctd, registry, &image)?;
            let out = ctd.run_ref(&reference).exec()?;
            out.success().with_context(|| media_type.to_string())?;
            ensure!(out.stdout == HELLO, "{media_type}: {out}");
        }
        Ok(())
    })
}

/// A raw wasm layer next to a filesystem layer: the program comes from the layer, its files
/// from the rootfs; args reach it; exec of the same program by its title works too.
#[test]
fn a_wasm_layer_reads_files_of_the_images_filesystem_layer() -> Result<()> {
    let data = tempfile::tempdir()?;
    std::fs::write(data.path().join("greeting.txt"), "hi from the tar layer")?;
    with_layer_containerd(|ctd, registry| {
        let image = images().wasm_layer("files", LAYER_TYPES[1], Some((data.path(), "/data")))?;
        let reference = push_and_pull(ctd, registry, &image)?;
        let out = ctd
            .run_ref(&reference)
            .argv(["files.wasm", "read", "/data/greeting.txt"])
            .exec()?;
        out.success()?;
        ensure!(out.stdout == "hi from the tar layer", "{out}");
        let out = ctd
            .run_ref(&reference)
            .argv(["files.wasm", "read", "/data/missing"])
            .exec()?;
        ensure!(out.code() == 2, "a failed read exits 2: {out}");
        Ok(())
    })
}

/// An image with one wasm layer runs it whatever `args[0]` names, once the rootfs has no such
/// file (as runwasi does): a command override keeps working.
#[test]
fn one_wasm_layer_runs_whatever_args0_names() -> Result<()> {
    with_layer_containerd(|ctd, registry| {
        let image = images().wasm_layer("hello", LAYER_TYPES[0], None)?;
        let reference = push_and_pull(ctd, registry, &image)?;
        let out = ctd.run_ref(&reference).argv(["/bin/other.wasm"]).exec()?;
        out.success()?;
        ensure!(out.stdout == HELLO, "{out}");
        Ok(())
    })
}

/// ctr 1.7 imports the CNCF artifact but refuses to run it ("unknown image config media
/// type"), before any shim is involved: the limit is ctr's, and this test pins it so the README's
/// statement stays true.
#[test]
fn ctr_cannot_run_the_cncf_artifact_but_says_why() -> Result<()> {
    with_layer_containerd(|ctd, registry| {
        let image = images().artifact("hello")?;
        let reference = push_and_pull(ctd, registry, &image)?;
        let out = ctd.run_ref(&reference).argv(["hello.wasm"]).exec()?;
        ensure!(out.code() != 0, "ctr ran the artifact: {out}");
        ensure!(
            out.stderr.contains("application/vnd.wasm.config.v0+json"),
            "{out}"
        );
        Ok(())
    })
}

/// Through the CRI, as kubelet drives it: PullImage, then a pod; for each wasm layer type and
/// for the CNCF artifact (whose command the pod spec must give: it has no entrypoint).
#[test]
fn cri_runs_wasm_layer_images_and_the_cncf_artifact() -> Result<()> {
    with_cri(|cri| {
        let mut cases: Vec<(String, std::sync::Arc<TestImage>, Vec<&str>)> = Vec::new();
        for media_type in LAYER_TYPES {
            let image = images().wasm_layer("hello", media_type, None)?;
            cases.push((media_type.into(), image, vec![]));
        }
        cases.push((
            "cncf artifact".into(),
            images().artifact("hello")?,
            vec!["hello.wasm"],
        ));
        for (i, (what, image, command)) in cases.iter().enumerate() {
            let reference = cri.image(image.clone()).with_context(|| what.clone())?;
            let pod = cri.run_pod(&format!("layers-{i}"))?;
            let cfg = cri.container_config("hello", &reference, command, &[]);
            let id = pod.start(&cfg).with_context(|| what.clone())?;
            let status = cri.wait_state(
                &id,
                ContainerState::ContainerExited,
                Duration::from_secs(30),
            )?;
            ensure!(status.exit_code == 0, "{what}: {status:?}");
            let log = pod.wait_log(&cfg, "hello from wasmpod", Duration::from_secs(10))?;
            ensure!(
                log.iter()
                    .any(|l| l.stream == "stdout" && l.content == HELLO.trim_end()),
                "{what}: {log:?}"
            );
            pod.remove()?;
        }
        Ok(())
    })
}
