//! `wasmpod image import` into a private containerd (through `ctr`), from
//! files and from a registry reference.

#![allow(clippy::unwrap_used)] // a failed setup step should just fail the test

mod common;

use common::containerd::{self, Containerd};
use common::{have, test_program, wasmpod, Registry};

const NS: &str = "wasmpod-test";

/// An image tar, an artifact tar and a registry reference all end up in
/// `ctr images ls`; the image with its wasm platform.
#[test]
fn imports_files_and_references_into_containerd() {
    if !have(&containerd::binary(), "apt-get install containerd")
        || !have("ctr", "it ships with containerd")
        || !have("docker-registry", "apt-get install docker-registry")
    {
        return;
    }
    let daemon = Containerd::start().unwrap();
    let socket = daemon.socket();
    let socket = socket.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (hello, component) = (
        test_program("hello.wasm"),
        test_program("hello-component.wasm"),
    );
    let build = |wasm: &std::path::Path, tag: &str, out: &str, extra: &[&str]| {
        let mut args = vec![
            "image",
            "build",
            wasm.to_str().unwrap(),
            "-t",
            tag,
            "-o",
            out,
        ];
        args.extend(extra);
        wasmpod(dir.path(), &args, "", &[]).expect_ok();
    };
    build(&hello, "hello:1", "image.tar", &[]);
    build(&component, "comp:1", "artifact.tar", &["--artifact"]);
    build(&hello, "hello-dir:1", "layout", &["--format", "oci-dir"]);

    for file in ["image.tar", "artifact.tar", "layout"] {
        let run = wasmpod(
            dir.path(),
            &[
                "image",
                "import",
                file,
                "--containerd",
                socket,
                "--namespace",
                NS,
            ],
            "",
            &[],
        )
        .expect_ok();
        assert!(
            run.stdout.contains(&format!("imported {file} as")),
            "{}",
            run.stdout
        );
    }

    let registry = Registry::start(false).unwrap();
    let reference = registry.image("pulled/hello:2");
    wasmpod(
        dir.path(),
        &[
            "image",
            "push",
            &reference,
            "--from",
            "image.tar",
            "--insecure",
        ],
        "",
        &[],
    )
    .expect_ok();
    wasmpod(
        dir.path(),
        &[
            "image",
            "import",
            &reference,
            "--insecure",
            "--containerd",
            socket,
            "--namespace",
            NS,
        ],
        "",
        &[],
    )
    .expect_ok();

    let names = daemon.ctr(NS, &["images", "ls", "-q"]).unwrap();
    for name in [
        "docker.io/library/hello:1",
        "docker.io/library/comp:1",
        "docker.io/library/hello-dir:1",
        reference.as_str(),
    ] {
        assert!(
            names.lines().any(|l| l == name),
            "{name} missing from:\n{names}"
        );
    }
    let listing = daemon.ctr(NS, &["images", "ls"]).unwrap();
    let hello_line = listing
        .lines()
        .find(|l| l.starts_with("docker.io/library/hello:1 "))
        .unwrap();
    assert!(hello_line.contains("wasip1/wasm"), "{listing}");
}

/// Without `ctr` on PATH the error says so, and a .wasm is not an image.
#[test]
fn missing_ctr_and_bare_wasm_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let hello = test_program("hello.wasm");
    wasmpod(
        dir.path(),
        &[
            "image",
            "build",
            hello.to_str().unwrap(),
            "-t",
            "h:1",
            "-o",
            "i.tar",
        ],
        "",
        &[],
    )
    .expect_ok();
    let empty = dir.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let run = wasmpod(
        dir.path(),
        &[
            "image",
            "import",
            "i.tar",
            "--containerd",
            "/nonexistent.sock",
        ],
        "",
        &[("PATH", empty.to_str().unwrap())],
    );
    assert!(!run.ok);
    assert!(
        run.stderr.contains("ctr not found on PATH"),
        "{}",
        run.stderr
    );

    let run = wasmpod(
        dir.path(),
        &["image", "import", hello.to_str().unwrap(), "--docker"],
        "",
        &[],
    );
    assert!(
        run.stderr.contains("is a .wasm, not an image"),
        "{}",
        run.stderr
    );
}

/// Layers with entries that would leave the rootfs or make devices when containerd unpacks
/// them as root are refused before `ctr` is ever run (it is not on PATH here, so an image
/// that got past the check would fail with "ctr not found" instead), naming file and entry.
#[test]
fn hostile_layers_are_refused_before_ctr_runs() {
    use wasmpod_integration::hostile_layer::{layer_tar, oci_layout, Entry};
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let app = Entry::File("app.wasm", b"\0asm\x01\0\0\0");
    let cases: [(&str, Vec<Entry<'_>>, &str); 6] = [
        (
            "dotdot",
            vec![Entry::File("../../etc/cron.d/x", b"x")],
            "leaves the rootfs",
        ),
        (
            "absolute",
            vec![Entry::File("/etc/passwd", b"x")],
            "leaves the rootfs",
        ),
        (
            "hardlink",
            vec![Entry::HardLink("shadow", "/etc/shadow")],
            "is a hard link out",
        ),
        (
            "device",
            vec![Entry::Char("disk", 8, 0)],
            "is a device node",
        ),
        ("fifo", vec![Entry::Fifo("pipe")], "is a fifo"),
        (
            "through",
            vec![
                Entry::Symlink("etc", "../../../etc"),
                Entry::File("etc/passwd", b"x"),
            ],
            "is written through the symlink",
        ),
    ];
    for (name, mut entries, why) in cases {
        entries.insert(0, app.clone());
        let entry = match entries.last().unwrap() {
            Entry::File(n, _) | Entry::HardLink(n, _) | Entry::Char(n, ..) | Entry::Fifo(n) => *n,
            other => panic!("{other:?}"),
        };
        let layer = layer_tar(&entries).unwrap();
        let tar = format!("{name}.tar");
        let layout = oci_layout(name, ("wasip1", "wasm"), "/app.wasm", &[layer]).unwrap();
        std::fs::write(dir.path().join(&tar), layout).unwrap();
        let run = wasmpod(
            dir.path(),
            &["image", "import", &tar, "--containerd", "/nonexistent.sock"],
            "",
            &[("PATH", empty.to_str().unwrap())],
        );
        assert!(!run.ok, "{name}: {}", run.stdout);
        let says = format!("entry {entry:?} {why}");
        assert!(
            run.stderr.contains(&tar) && run.stderr.contains(&says),
            "{name}: {}",
            run.stderr
        );
    }
}
