//! `wasmpod install` / `uninstall` against real containerd default configs
//! (generated from the installed binaries), a containerd 2.x (version 3)
//! fixture and Docker's daemon.json; then real containerd 1.6 / 1.7 daemons
//! started on the edited config must register the runtime.

#![allow(clippy::unwrap_used)] // a failed setup step should just fail the test

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CONTAINERD_16: &str = "/usr/bin/containerd";
const CONTAINERD_17: &str = "/work/main/.work/trixie/x/usr/bin/containerd";
const V3_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/containerd-2x-v3.toml"
);

fn wasmpod(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmpod"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `containerd config default` of `binary`, or None (with the reason printed).
fn default_config(binary: &str) -> Option<String> {
    if !Path::new(binary).exists() {
        println!("skipped {binary}: the file is missing");
        return None;
    }
    let out = Command::new(binary)
        .args(["config", "default"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    Some(text(&out.stdout))
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(config: Option<&str>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("shim"), b"#!/bin/sh\necho fake shim\n").unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        if let Some(config) = config {
            std::fs::write(dir.path().join("config.toml"), config).unwrap();
        }
        Setup { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn run(&self, command: &str, extra: &[&str]) -> Output {
        let shim = self.path("shim");
        let bin = self.path("bin");
        let config = self.path("config.toml");
        let mut args = vec![
            command,
            "--shim",
            shim.to_str().unwrap(),
            "--bin-dir",
            bin.to_str().unwrap(),
            "--containerd-config",
            config.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = wasmpod(&args);
        assert!(
            out.status.success(),
            "{command} {extra:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }
    fn config(&self) -> String {
        std::fs::read_to_string(self.path("config.toml")).unwrap()
    }
}

/// Installs into `original`, checks the table and the bytes, idempotency,
/// backup, dry runs and uninstall; returns the installed config.
fn round_trip(original: &str, header: &str) -> String {
    let setup = Setup::new(Some(original));
    // Dry run: a diff, no change.
    let out = setup.run("install", &["--dry-run"]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("+{header}\n")), "{stdout}");
    assert_eq!(setup.config(), original);
    assert!(!setup.path("bin/containerd-shim-wasmpod-v1").exists());
    assert!(!setup.path("config.toml.wasmpod.bak").exists());

    let out = setup.run("install", &[]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("systemctl restart containerd"), "{stdout}");
    let installed = setup.config();
    let added = format!("\n{header}\nruntime_type = \"io.containerd.wasmpod.v1\"\n");
    assert!(installed.contains(&added), "{installed}");
    // Everything else byte-identical: only the added lines differ.
    assert_eq!(installed.replacen(&added, "", 1), original);
    assert_eq!(
        std::fs::read_to_string(setup.path("config.toml.wasmpod.bak")).unwrap(),
        original
    );
    let shim = setup.path("bin/containerd-shim-wasmpod-v1");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&shim).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::read(&shim).unwrap(),
        std::fs::read(setup.path("shim")).unwrap()
    );

    // Idempotent.
    let out = setup.run("install", &[]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("nothing to change"), "{stdout}");
    assert!(!stdout.contains("restart"), "{stdout}");
    assert_eq!(setup.config(), installed);

    // Uninstall: dry run, then the original bytes back.
    let out = setup.run("uninstall", &["--dry-run"]);
    assert!(text(&out.stdout).contains(&format!("-{header}\n")));
    assert_eq!(setup.config(), installed);
    assert!(shim.exists());
    setup.run("uninstall", &[]);
    assert_eq!(setup.config(), original);
    assert!(!shim.exists());
    let out = setup.run("uninstall", &[]);
    assert!(text(&out.stdout).contains("nothing to change"));
    assert_eq!(setup.config(), original);
    installed
}

const V2_HEADER: &str = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wasmpod]";

#[test]
fn containerd_16_default_config() {
    let original = default_config(CONTAINERD_16).unwrap();
    round_trip(&original, V2_HEADER);
}

#[test]
fn containerd_17_default_config() {
    if let Some(original) = default_config(CONTAINERD_17) {
        round_trip(&original, V2_HEADER);
    }
}

#[test]
fn containerd_2x_version_3_fixture() {
    let original = std::fs::read_to_string(V3_FIXTURE).unwrap();
    let installed = round_trip(
        &original,
        "[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.wasmpod]",
    );
    assert!(!installed.contains("grpc.v1.cri"));
}

#[test]
fn missing_config_gets_a_minimal_file() {
    let setup = Setup::new(None);
    let out = setup.run("install", &[]);
    assert!(
        text(&out.stdout).contains("does not exist"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        setup.config(),
        format!("version = 2\n\n{V2_HEADER}\nruntime_type = \"io.containerd.wasmpod.v1\"\n")
    );
    assert!(!setup.path("config.toml.wasmpod.bak").exists());
}

#[test]
fn errors_name_the_file_and_refuse_another_runtime() {
    let setup = Setup::new(Some("version = 2\n[plugins.\"x\"\n"));
    let config = setup.path("config.toml");
    let (shim, bin) = (setup.path("shim"), setup.path("bin"));
    let args = [
        "install",
        "--shim",
        shim.to_str().unwrap(),
        "--bin-dir",
        bin.to_str().unwrap(),
        "--containerd-config",
        config.to_str().unwrap(),
    ];
    let out = wasmpod(&args);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(config.to_str().unwrap()) && stderr.contains("line 2"),
        "{stderr}"
    );

    let other = format!("version = 2\n{V2_HEADER}\nruntime_type = \"io.containerd.runc.v2\"\n");
    std::fs::write(&config, &other).unwrap();
    let out = wasmpod(&args);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--force") && stderr.contains("io.containerd.runc.v2"),
        "{stderr}"
    );
    assert_eq!(setup.config(), other);
    setup.run("install", &["--force"]);
    assert!(setup
        .config()
        .contains("runtime_type = \"io.containerd.wasmpod.v1\""));
}

#[test]
fn docker_daemon_json() {
    let setup = Setup::new(Some(""));
    let daemon = setup.path("daemon.json");
    let original = "{\n  \"log-level\": \"warn\",\n  \"storage-driver\": \"overlay2\"\n}\n";
    std::fs::write(&daemon, original).unwrap();
    let docker = ["--docker", "--docker-config", daemon.to_str().unwrap()];
    let out = setup.run("install", &[&docker[..], &["--dry-run"]].concat());
    assert!(text(&out.stdout).contains("+  \"runtimes\": {"));
    assert_eq!(std::fs::read_to_string(&daemon).unwrap(), original);

    let out = setup.run("install", &docker);
    assert!(text(&out.stdout).contains("systemctl restart containerd docker"));
    assert!(text(&out.stderr).contains("containerd-snapshotter"));
    let installed = std::fs::read_to_string(&daemon).unwrap();
    let json: serde_json::Value = serde_json::from_str(&installed).unwrap();
    assert_eq!(
        json["runtimes"]["wasmpod"]["runtimeType"],
        "io.containerd.wasmpod.v1"
    );
    assert_eq!(json["log-level"], "warn");
    assert!(
        json.get("features").is_none(),
        "storage must not change silently"
    );
    assert_eq!(
        std::fs::read_to_string(setup.path("daemon.json.wasmpod.bak")).unwrap(),
        original
    );
    let out = setup.run("install", &docker);
    assert!(
        !text(&out.stdout).contains("restart"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(std::fs::read_to_string(&daemon).unwrap(), installed);
    setup.run("uninstall", &docker);
    assert_eq!(std::fs::read_to_string(&daemon).unwrap(), original);
}

/// Moves `config` to private paths under `dir` so the daemon cannot touch
/// the host's containerd.
fn privatise(config: &str, dir: &Path) -> String {
    use toml_edit::{value, DocumentMut};
    let mut doc: DocumentMut = config.parse().unwrap();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    doc["root"] = value(p("root"));
    doc["state"] = value(p("state"));
    doc["grpc"]["address"] = value(p("containerd.sock"));
    doc["ttrpc"]["address"] = value(p("containerd.sock.ttrpc"));
    let plugins = &mut doc["plugins"];
    plugins["io.containerd.internal.v1.opt"]["path"] = value(p("opt"));
    let cri = &mut plugins["io.containerd.grpc.v1.cri"];
    cri["disable_apparmor"] = value(true);
    cri["restrict_oom_score_adj"] = value(true);
    if let Some(nri) = plugins.get_mut("io.containerd.nri.v1.nri") {
        nri["disable"] = value(true);
    }
    doc.to_string()
}

/// Starts `binary` on the installed default config and waits for the CRI
/// plugin's config line, which must list the wasmpod runtime.
fn daemon_registers_runtime(binary: &str) {
    let Some(original) = default_config(binary) else {
        return;
    };
    let setup = Setup::new(Some(&original));
    setup.run("install", &[]);
    let config = privatise(&setup.config(), setup.dir.path());
    let path = setup.path("daemon.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(binary)
        .args(["--config", path.to_str().unwrap(), "--log-level", "info"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    let mut found = None;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if line.contains("Start cri plugin with config") {
                    found = Some(line);
                    break;
                }
            }
            Err(_) => break,
        }
    }
    // Stop the daemon we started, by its PID.
    let pid = child.id();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let stopped = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if stopped.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let line = found.unwrap_or_else(|| panic!("{binary}: no CRI config line in:\n{log}"));
    // The running daemon's CRI config, printed with Go's `%+v`: the
    // runtimes map must hold `wasmpod` with wasmpod's runtime type.
    let runtimes = &line[line
        .find("Runtimes:map[")
        .unwrap_or_else(|| panic!("{line}"))..];
    assert!(
        runtimes.contains(" wasmpod:{Type:io.containerd.wasmpod.v1 "),
        "{binary}: wasmpod runtime not registered: {line}"
    );
}

#[test]
fn containerd_16_daemon_registers_the_runtime() {
    daemon_registers_runtime(CONTAINERD_16);
}

#[test]
fn containerd_17_daemon_registers_the_runtime() {
    daemon_registers_runtime(CONTAINERD_17);
}
