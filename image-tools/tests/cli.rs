//! Runs the `wasmpod` binary: argument errors, SOURCE_DATE_EPOCH from the
//! environment, and the one-line success message.

#![allow(clippy::unwrap_used)] // a failed setup step should just fail the test

use std::path::Path;
use std::process::{Command, Output};

fn wasmpod(args: &[&str], epoch: Option<&str>, cwd: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmpod"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("SOURCE_DATE_EPOCH");
    if let Some(epoch) = epoch {
        cmd.env("SOURCE_DATE_EPOCH", epoch);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn builds_reproducibly_and_honours_source_date_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = wat::parse_str(r#"(module (func (export "_start")))"#).unwrap();
    std::fs::write(dir.path().join("hello.wasm"), wasm).unwrap();
    let build = |out: &str, epoch| {
        let args = [
            "image",
            "build",
            "hello.wasm",
            "-t",
            "hello:latest",
            "-o",
            out,
            "--env",
            "A=1",
        ];
        let output = wasmpod(&args, epoch, dir.path());
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout)
    };
    let line = build("a.tar", None);
    assert!(
        line.starts_with("built docker.io/library/hello:latest sha256:"),
        "{line}"
    );
    assert!(
        line.trim_end().ends_with("-> a.tar (wasip1/wasm)"),
        "{line}"
    );
    build("b.tar", None);
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    assert_eq!(read("a.tar"), read("b.tar"));

    let dated = build("c.tar", Some("1700000000"));
    assert_ne!(read("a.tar"), read("c.tar"));
    assert_ne!(
        line.split_whitespace().nth(2),
        dated.split_whitespace().nth(2)
    );
    let mut archive = tar::Archive::new(std::io::Cursor::new(read("c.tar")));
    for entry in archive.entries().unwrap() {
        assert_eq!(entry.unwrap().header().mtime().unwrap(), 1_700_000_000);
    }

    let output = wasmpod(
        &["image", "build", "hello.wasm", "-t", "x:1", "-o", "d.tar"],
        Some("soon"),
        dir.path(),
    );
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("SOURCE_DATE_EPOCH"));
    assert!(!dir.path().join("d.tar").exists());
}

#[test]
fn bad_arguments_get_specific_messages() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.wasm"), b"not wasm at all").unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["--env", "NOEQUALS"], "has no '='"),
        (&["--dir", "nocolon"], "expected HOST:GUEST"),
        (&["--dir", "x:relative"], "must be absolute"),
        (&["--label", "=v"], "label"),
        (&["--platform", "linux"], "OS/ARCH"),
        (&["-t", "Bad:Name"], "lower case"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["image", "build", "bad.wasm", "-o", "out.tar"];
        if !extra.contains(&"-t") {
            args.extend(["-t", "ok:1"]);
        }
        args.extend(extra);
        let output = wasmpod(&args, None, dir.path());
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }

    let output = wasmpod(
        &["image", "build", "bad.wasm", "-t", "ok:1", "-o", "out.tar"],
        None,
        dir.path(),
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("bad.wasm is not a WebAssembly binary"),
        "{stderr}"
    );
    let output = wasmpod(
        &["image", "build", "gone.wasm", "-t", "ok:1", "-o", "out.tar"],
        None,
        dir.path(),
    );
    assert!(text(&output.stderr).contains("gone.wasm"));
    let output = wasmpod(
        &["image", "build", "-t", "ok:1", "-o", "out.tar"],
        None,
        dir.path(),
    );
    assert!(text(&output.stderr).contains("--entrypoint"));
    assert!(!dir.path().join("out.tar").exists());
}

/// The new build flags: annotations reach the manifest, --artifact and
/// --format pick the form, and a broken module leaves no output.
#[test]
fn build_forms_formats_and_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let module = wat::parse_str(
        r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
                   (func (export "_start")))"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("m.wasm"), module).unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["image", "build", "m.wasm", "-t", "m:1"];
        all.extend(args);
        wasmpod(&all, None, dir.path())
    };
    let out = run(&[
        "-o",
        "a.tar",
        "--artifact",
        "--annotation",
        "k=v",
        "--author",
        "me",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("(wasip1/wasm, wasm artifact)"));

    let out = run(&["-o", "layout", "--format", "oci-dir"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.path().join("layout/index.json").is_file());

    let out = run(&["-o", "d.tar", "--format", "docker-archive", "--artifact"]);
    assert!(text(&out.stderr).contains("cannot be written as a docker-archive"));
    assert!(!dir.path().join("d.tar").exists());
    let out = run(&["-o", "x.tar", "--format", "zip"]);
    assert!(text(&out.stderr).contains("oci, oci-dir or docker-archive"));

    let inspect = |target: &str, json: bool| {
        let mut args = vec!["image", "inspect", target];
        if json {
            args.push("--json");
        }
        let out = wasmpod(&args, None, dir.path());
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let report: serde_json::Value = serde_json::from_str(&inspect("a.tar", true)).unwrap();
    assert_eq!(report["form"], "artifact");
    assert_eq!(report["annotations"]["k"], "v");
    assert_eq!(report["author"], "me");
    assert_eq!(report["wasm"]["wasi"], "preview1");
    let text_report = inspect("layout", false);
    assert!(
        text_report.contains("wasi_snapshot_preview1: proc_exit"),
        "{text_report}"
    );
    assert!(inspect("m.wasm", false).contains("form:       wasm"));

    std::fs::write(dir.path().join("broken.wasm"), b"\0asm\x01\0\0\0\x01\x05").unwrap();
    let out = wasmpod(
        &[
            "image",
            "build",
            "broken.wasm",
            "-t",
            "b:1",
            "-o",
            "b.tar",
            "--artifact",
        ],
        None,
        dir.path(),
    );
    assert!(text(&out.stderr).contains("broken.wasm is not a valid WebAssembly core module"));
    assert!(!dir.path().join("b.tar").exists());
    let out = wasmpod(&["image", "inspect", "nope.tar"], None, dir.path());
    assert!(!out.status.success());
}
