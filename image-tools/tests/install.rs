//! `wasmpod install` / `uninstall` against real containerd default configs
//! (`containerd config default` of bookworm's 1.6, trixie's 1.7 and forky's
//! 2.1), a containerd 2.x (version 3) fixture and Docker's daemon.json; then a
//! private containerd of each version, started on the edited config, must list
//! the wasmpod runtime handler in its CRI `Status`.
//!
//! containerd 1.7 and 2.1 are the ones `make trixie` and `make forky` unpack
//! into the workspace's `.work/` (scripts/fetch-debian.sh); a test whose
//! binary is missing says so and passes.

#![allow(clippy::unwrap_used)] // a failed setup step should just fail the test

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use wasmpod_integration::cri::CriClient;

const CONTAINERD_16: &str = "/usr/bin/containerd";
const V3_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/containerd-2x-v3.toml"
);

/// containerd as `make SUITE` unpacks it: `.work/SUITE/bin/containerd` of the workspace.
fn work_containerd(suite: &str) -> String {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let bin = workspace.join(".work").join(suite).join("bin/containerd");
    bin.to_str().unwrap().to_string()
}

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
    if let Some(original) = default_config(&work_containerd("trixie")) {
        round_trip(&original, V2_HEADER);
    }
}

/// containerd 2.1's own default: `version = 3` with `'`-quoted plugin ids, a
/// `runtimes` table holding `runc` already. The new table goes under it, its
/// header written with the file's own quoting.
#[test]
fn containerd_21_default_config() {
    let Some(original) = default_config(&work_containerd("forky")) else {
        return;
    };
    assert!(original.starts_with("version = 3\n"), "{original}");
    let installed = round_trip(&original, V3_DEFAULT_HEADER);
    assert!(
        !installed.contains("grpc.v1.cri'.containerd"),
        "{installed}"
    );
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

/// containerd 2.x's own default config quotes plugin ids with `'`, and the
/// installed table's header keeps that quoting.
const V3_DEFAULT_HEADER: &str =
    "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.wasmpod]";

/// Moves `config` to private paths under `dir` so the daemon cannot touch
/// the host's containerd; NRI (on by default in 2.x, socket in /var/run/nri)
/// is turned off. The CRI knobs this machine needs live in
/// `io.containerd.grpc.v1.cri` (version 2) or `io.containerd.cri.v1.runtime`
/// (version 3).
fn privatise(config: &str, dir: &Path) -> String {
    use toml_edit::{value, DocumentMut};
    let mut doc: DocumentMut = config.parse().unwrap();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let cri = match doc["version"].as_integer() {
        Some(3) => "io.containerd.cri.v1.runtime",
        _ => "io.containerd.grpc.v1.cri",
    };
    doc["root"] = value(p("root"));
    doc["state"] = value(p("state"));
    doc["grpc"]["address"] = value(p("containerd.sock"));
    doc["ttrpc"]["address"] = value(p("containerd.sock.ttrpc"));
    let plugins = &mut doc["plugins"];
    plugins["io.containerd.internal.v1.opt"]["path"] = value(p("opt"));
    let cri = &mut plugins[cri];
    cri["disable_apparmor"] = value(true);
    cri["restrict_oom_score_adj"] = value(true);
    if let Some(nri) = plugins.get_mut("io.containerd.nri.v1.nri") {
        nri["disable"] = value(true);
    }
    doc.to_string()
}

/// A containerd this test started, stopped by its PID on drop (also when an
/// assertion fails first).
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = self.child.id();
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let stopped = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) {
            if stopped.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The names of the runtime handlers CRI `Status` reports, from
/// `runtime_handlers` (containerd 2.x) and from the CRI config in
/// `info["config"]` (every version): `(handlers, runtimes with their type)`.
fn handlers(status: &k8s_cri::v1::StatusResponse) -> (Vec<String>, Vec<(String, String)>) {
    let listed = status
        .runtime_handlers
        .iter()
        .map(|h| h.name.clone())
        .collect();
    let config: serde_json::Value = status
        .info
        .get("config")
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_default();
    let runtimes = config["containerd"]["runtimes"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(name, rt)| {
                    let kind = rt["runtimeType"].as_str().unwrap_or_default();
                    (name.clone(), kind.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    (listed, runtimes)
}

/// Installs into `binary`'s default config, starts a private `binary` on the
/// result and asks its CRI `Status`, as kubelet does: the `wasmpod` runtime
/// must be there with wasmpod's runtime type, and from containerd 2.0 on in
/// the `runtime_handlers` list too.
fn daemon_registers_runtime(binary: &str) {
    let Some(original) = default_config(binary) else {
        return;
    };
    let setup = Setup::new(Some(&original));
    setup.run("install", &[]);
    let config = privatise(&setup.config(), setup.dir.path());
    let path = setup.path("daemon.toml");
    std::fs::write(&path, config).unwrap();
    let log = setup.path("containerd.log");
    let out = File::create(&log).unwrap();
    let child = Command::new(binary)
        .args(["--config", path.to_str().unwrap(), "--log-level", "info"])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let daemon = Daemon { child, log };
    let sock = setup.path("containerd.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let answer = CriClient::connect(&sock).and_then(|c| c.status());
        match answer {
            Ok(status) => break status,
            Err(e) if Instant::now() > deadline => {
                panic!("{binary}: no CRI Status: {e:#}\n{}", daemon.log())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let (listed, runtimes) = handlers(&status);
    println!("{binary}: runtime_handlers {listed:?}, runtimes {runtimes:?}");
    assert!(
        runtimes.contains(&("wasmpod".into(), "io.containerd.wasmpod.v1".into())),
        "{binary}: wasmpod runtime not in the CRI config: {runtimes:?}\n{status:?}"
    );
    let version = Command::new(binary).arg("--version").output().unwrap();
    if text(&version.stdout).contains("containerd/v2 ") {
        assert!(
            listed.iter().any(|h| h == "wasmpod"),
            "{binary}: wasmpod not in runtime_handlers {listed:?}"
        );
    }
    drop(daemon);
}

#[test]
fn containerd_16_daemon_registers_the_runtime() {
    daemon_registers_runtime(CONTAINERD_16);
}

#[test]
fn containerd_17_daemon_registers_the_runtime() {
    daemon_registers_runtime(&work_containerd("trixie"));
}

#[test]
fn containerd_21_daemon_registers_the_runtime() {
    daemon_registers_runtime(&work_containerd("forky"));
}
