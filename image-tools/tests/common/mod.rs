//! Shared harness for the black-box tests: the `wasmpod` binary, the test
//! programs, and private daemons (a `docker-registry`, a containerd) that
//! live in a temp dir and are stopped by PID when their guard drops.

#![allow(dead_code)] // each test file uses a different part of the harness

pub mod containerd;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Output of one `wasmpod` run.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Self {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panics with both streams unless the run succeeded.
    pub fn expect_ok(self) -> Self {
        assert!(self.ok, "wasmpod failed:\n{}\n{}", self.stdout, self.stderr);
        self
    }
}

/// Runs `wasmpod ARGS` in `cwd` with `stdin` piped in and `env` set
/// (`DOCKER_CONFIG` points at an empty dir unless given, so the user's
/// own Docker credentials never leak into a test).
pub fn wasmpod(cwd: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    let empty_config = cwd.join(".no-docker-config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmpod"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("SOURCE_DATE_EPOCH")
        .env("DOCKER_CONFIG", &empty_config)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn wasmpod");
    if let Some(mut pipe) = child.stdin.take() {
        let _ = pipe.write_all(stdin.as_bytes());
    }
    Run::from(child.wait_with_output().expect("wait for wasmpod"))
}

/// A test program from `test-images/out`, built with `make` if missing.
pub fn test_program(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-images");
    let path = dir.join("out").join(name);
    if !path.exists() {
        let status = Command::new("make").arg("-C").arg(&dir).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "make -C {} failed",
            dir.display()
        );
    }
    path
}

/// True if `program` is on PATH; otherwise prints why the test is skipped.
pub fn have(program: &str, why: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()));
    if !found {
        eprintln!("SKIPPED: {program} is not on PATH ({why})");
    }
    found
}

/// A free loopback port (released just before the daemon binds it).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something listens on `addr`, or the child dies, or 15 s pass.
pub fn wait_for_port(addr: &str, child: &mut Child, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            bail!("daemon exited ({status}) before listening on {addr}:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on {addr} after 15 s")
}

/// Stops `child` by its PID: SIGTERM, then SIGKILL after 5 s.
pub fn stop(child: &mut Child) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A private `docker-registry` (distribution 2.8) on 127.0.0.1, storing in
/// a temp dir; stopped by PID on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    _dir: tempfile::TempDir,
}

/// `user:password` accepted by a registry started with auth.
pub const USER: &str = "ci";
pub const PASSWORD: &str = "s3cret-pw";

impl Registry {
    /// Starts a registry, with `htpasswd` auth for [`USER`]/[`PASSWORD`]
    /// if `auth` is true.
    pub fn start(auth: bool) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n  secret: wasmpod-test\n",
            dir.path().join("data").display()
        );
        if auth {
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{USER}:{}\n", bcrypt(PASSWORD)?))?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: wasmpod-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let log = dir.path().join("registry.log");
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(dir.path().join("registry.err"))?)
            .spawn()
            .context("start docker-registry")?;
        if let Err(e) = wait_for_port(&addr, &mut child, &dir.path().join("registry.err")) {
            stop(&mut child);
            return Err(e);
        }
        Ok(Self {
            child,
            addr,
            _dir: dir,
        })
    }

    /// `127.0.0.1:<port>/<name>`.
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A bcrypt hash of `password`: `htpasswd -nbB` if apache2-utils is
/// installed, else libxcrypt's bcrypt through perl's `crypt`.
fn bcrypt(password: &str) -> Result<String> {
    if let Ok(out) = Command::new("htpasswd")
        .args(["-nbB", "x", password])
        .output()
    {
        if out.status.success() {
            let line = String::from_utf8(out.stdout)?;
            if let Some((_, hash)) = line.trim().split_once(':') {
                return Ok(hash.to_owned());
            }
        }
    }
    let out = Command::new("perl")
        .args([
            "-e",
            r#"print crypt($ARGV[0], '$2b$05$wasmpodtestsaltsaltsau')"#,
            password,
        ])
        .output()
        .context("neither htpasswd nor perl is available to make a bcrypt hash")?;
    let hash = String::from_utf8(out.stdout)?;
    if !hash.starts_with("$2b$") {
        bail!("perl's crypt does not support bcrypt here (got {hash:?})");
    }
    Ok(hash)
}

/// An image of a module that only exports `_start`, named `app:1`: the smallest thing a
/// registry test can serve.
pub fn tiny_image(dir: &Path) -> wasmpod_image::Image {
    let wasm = dir.join("m.wasm");
    let module = wat::parse_str("(module (func (export \"_start\")))").expect("valid wat");
    std::fs::write(&wasm, module).expect("write m.wasm");
    let reference = wasmpod_image::Reference::parse("app:1").expect("valid reference");
    let mut spec = wasmpod_image::ImageSpec::new(reference);
    spec.wasm = Some(wasm);
    wasmpod_image::assemble(&spec).expect("assemble").image
}
