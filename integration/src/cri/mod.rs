//! Kubernetes through the CRI: a private containerd (1.7 or 2.x) with its CRI plugin, driven
//! over gRPC the way kubelet drives it, with runtime handler `wasmpod`.
//!
//! [`Cri::start`] sets up, under one temp dir: a `docker-registry` on `127.0.0.1:<port>`
//! that `certs.d/wasmpod.test/hosts.toml` mirrors (so `PullImage` of `wasmpod.test/...`
//! works, as CRI always contacts a registry); a CNI bridge + host-local conflist on a free
//! `10.88.<n>.0/24` with its own bridge name; a static pause image imported into namespace
//! `k8s.io`; and containerd itself, started with `PATH` = wasmpod's bin dir, containerd's
//! dir, `/usr/sbin:/usr/bin:/sbin:/bin`. Pods get a unique cgroup parent
//! (`/wasmpod-cri-<pid>-<n>/pod<uid>`), so their cgroupfs dirs are easy to find.
//!
//! Dropping a [`Cri`] stops and removes every pod through CRI, stops containerd and the
//! registry by PID, kills leftover processes that name the temp dir or sit in its cgroups,
//! unmounts everything under the temp dir, removes the cgroups, the bridge and any iptables
//! chain of the subnet, and the temp dir. [`with_cri`] also checks that all of that worked.
//!
//! - `config`: the files' text (pure); `client`: the blocking CRI client;
//!   `pod`: pod and container configs like kubelet's, [`Pod`]; `logs`: the CRI log format;
//!   `stream`: the WebSocket client of streaming `Exec`;
//!   `registry`, `pause`, `network`, `teardown`: the pieces named above.
//!
//! Environment: `WASMPOD_CRI_CONTAINERD` (default: see [`containerd_path`]),
//! `WASMPOD_IT_LOG_LEVEL` (containerd's log level), `WASMPOD_CRI_LOG_DIR` (keep a copy of
//! each containerd log there).

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;

use crate::images::TestImage;
use crate::paths;
use crate::process::{poll, run_with_timeout, signal_and_wait};
use crate::versions::{self, Version};

pub mod client;
pub mod config;
pub mod logs;
pub mod network;
pub mod pause;
pub mod pod;
pub mod registry;
pub mod stream;
mod teardown;

pub use client::CriClient;
pub use config::{REGISTRY_HOST, RUNC_HANDLER, WASMPOD_HANDLER};
pub use logs::{parse_cri_log, LogLine};
pub use network::PodNetwork;
pub use pod::Pod;
pub use registry::Registry;

use config::CriSettings;

/// The sandbox image reference (imported, never pulled).
pub const PAUSE_IMAGE: &str = "wasmpod.test/wasmpod-test/pause:1";
/// containerd namespace of the CRI plugin.
pub const CRI_NAMESPACE: &str = "k8s.io";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The containerd the CRI tests (and the raw wasm layer tests) run on:
/// `WASMPOD_CRI_CONTAINERD`; else the lane's own ([`paths::containerd_path`]) when it is 1.7 or
/// newer; else (bookworm's 1.6, which predates the raw wasm layer support of 1.6.25 and
/// 1.7.7) containerd 1.7 from `.work/trixie` (`make trixie`).
pub fn containerd_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("WASMPOD_CRI_CONTAINERD").filter(|v| !v.is_empty()) {
            return PathBuf::from(p);
        }
        let lane = paths::containerd_path();
        if versions::of(&lane).is_ok_and(|v| v.at_least(1, 7)) {
            lane
        } else {
            paths::workspace_root().join(".work/trixie/bin/containerd")
        }
    })
    .clone()
}

/// A private containerd with CRI; see the module docs.
#[derive(Debug)]
pub struct Cri {
    dir: PathBuf,
    binary: PathBuf,
    version: Version,
    child: Option<Child>,
    registry: Option<Registry>,
    net: PodNetwork,
    cgroup_root: String,
    client: Option<CriClient>,
    /// Test image name -> CRI reference, once pushed and pulled.
    pulled: Mutex<HashMap<String, String>>,
    log: PathBuf,
}

impl Cri {
    /// Starts a registry and containerd ([`containerd_path`]) with the CRI plugin.
    ///
    /// # Errors
    /// When a binary is missing, or a daemon does not come up (with its log tail).
    pub fn start() -> Result<Self> {
        let binary = containerd_path();
        if !paths::is_executable(&binary) {
            bail!(
                "containerd is missing at {} (run `make trixie` for 1.7, `make forky` for 2.1, \
                 or set WASMPOD_CRI_CONTAINERD)",
                binary.display(),
            );
        }
        let version = versions::of(&binary)?;
        paths::require_shim()?;
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = tempfile::Builder::new()
            .prefix("wasmpod-cri-")
            .tempdir()
            .context("create temp dir")?
            .keep();
        let mut me = Self {
            log: dir.join("containerd.log"),
            dir,
            binary,
            version,
            child: None,
            registry: None,
            net: PodNetwork::choose(seq),
            cgroup_root: format!("wasmpod-cri-{}-{seq}", std::process::id()),
            client: None,
            pulled: Mutex::default(),
        };
        // On failure `me` is dropped, which removes whatever was set up so far.
        me.setup().with_context(|| {
            format!(
                "start CRI on containerd {} (log tail:\n{})",
                me.version,
                me.log_tail(40)
            )
        })?;
        Ok(me)
    }

    fn setup(&mut self) -> Result<()> {
        let d = self.dir.clone();
        for sub in [
            "net.d", "runc", "logs", "registry", "cni-ipam", "tmp", "pause",
        ] {
            fs::create_dir_all(d.join(sub))?;
        }
        let registry = Registry::start(&d)?;
        let addr = registry.addr().to_string();
        self.registry = Some(registry);
        let level = std::env::var("WASMPOD_IT_LOG_LEVEL").unwrap_or_else(|_| "info".into());
        let subnet = self.net.subnet();
        let s = CriSettings {
            dir: &d,
            log_level: &level,
            sandbox_image: PAUSE_IMAGE,
            bridge: &self.net.bridge,
            subnet: &subnet,
            registry: &addr,
            major: self.version.major,
        };
        let hosts = d.join("certs.d").join(REGISTRY_HOST);
        fs::create_dir_all(&hosts)?;
        fs::write(hosts.join("hosts.toml"), config::hosts_toml(&addr))?;
        fs::write(
            d.join("net.d/10-wasmpod.conflist"),
            config::cni_conflist(&s),
        )?;
        let config_path = d.join("config.toml");
        fs::write(&config_path, config::containerd_config(&s))?;
        let pause = pause::build_pause_image(&d.join("pause"), PAUSE_IMAGE)?;
        self.spawn(&config_path)?;
        self.ctr_import(&pause)?;
        // containerd 2's CRI learns of an image from the ImageCreate event, after ctr returns.
        poll(
            "CRI to see the imported sandbox image",
            Duration::from_secs(10),
            || Ok(self.client()?.has_image(PAUSE_IMAGE)?.then_some(())),
        )
        .with_context(|| format!("CRI does not see the imported sandbox image {PAUSE_IMAGE}"))
    }

    fn spawn(&mut self, config_path: &Path) -> Result<()> {
        let mut path = vec![paths::bin_dir()];
        if let Some(d) = self.binary.parent() {
            path.push(d.to_path_buf());
        }
        path.extend(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
        // Appended: a restarted daemon's log follows the first one's.
        let log = File::options().create(true).append(true).open(&self.log)?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--config")
            .arg(config_path)
            .env_clear()
            .env("PATH", std::env::join_paths(path)?)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        for pass in [
            "RUST_LOG",
            "RUST_BACKTRACE",
            "WASMPOD_CACHE_DIR",
            "WASMPOD_LOG",
        ] {
            if let Some(v) = std::env::var_os(pass) {
                cmd.env(pass, v);
            }
        }
        // SAFETY: prctl is async-signal-safe; if the test process dies, containerd follows.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        self.child = Some(cmd.spawn().context("spawn containerd")?);
        let sock = self.socket();
        poll("the containerd socket", Duration::from_secs(20), || {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok()?) {
                bail!("containerd exited early: {status}");
            }
            Ok(sock.exists().then_some(()))
        })?;
        let client = poll("CRI to answer", Duration::from_secs(20), || {
            Ok(CriClient::connect(&sock)
                .ok()
                .filter(|c| c.version().is_ok()))
        })?;
        self.client = Some(client);
        Ok(())
    }

    /// Stops containerd with `signal` (SIGKILL: a crash; SIGTERM: a service restart) and starts
    /// it again on the same config, root and state, as an operator's restart would. Shims,
    /// pods and containers are not its children: they live on, and the new daemon's CRI
    /// plugin finds them again in its store and reconnects to their shims.
    ///
    /// # Errors
    /// When containerd does not stop within 10 s or does not come back.
    pub fn restart(&mut self, signal: Signal) -> Result<()> {
        self.client = None;
        let Some(mut child) = self.child.take() else {
            bail!("containerd is not running");
        };
        signal_and_wait(&mut child, signal, Duration::from_secs(10))?;
        let config = self.dir.join("config.toml");
        self.spawn(&config)
            .with_context(|| format!("restart (log tail:\n{})", self.log_tail(40)))
    }

    fn ctr_import(&self, tar: &Path) -> Result<()> {
        let ctr = self.binary.with_file_name("ctr");
        let mut cmd = Command::new(ctr);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .arg("-a")
            .arg(self.socket())
            .args(["-n", CRI_NAMESPACE, "images", "import", "--all-platforms"])
            .arg(tar);
        run_with_timeout(&mut cmd, Duration::from_secs(60))?
            .success()
            .context("ctr images import of the pause image")?;
        Ok(())
    }

    /// The CRI client.
    ///
    /// # Errors
    /// Only before containerd is up.
    pub fn client(&self) -> Result<&CriClient> {
        self.client
            .as_ref()
            .ok_or_else(|| anyhow!("containerd is not running"))
    }

    /// The version of the containerd under test.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// The temp dir holding everything of this setup.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// containerd's gRPC (and CRI) socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("c.sock")
    }

    /// The pod network (bridge and subnet).
    pub fn network(&self) -> &PodNetwork {
        &self.net
    }

    /// The cgroup every pod's cgroup parent sits under (no leading `/`).
    pub fn cgroup_root(&self) -> &str {
        &self.cgroup_root
    }

    /// PIDs of containerd and the registry.
    pub fn daemon_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.child.iter().map(Child::id).collect();
        pids.extend(self.registry.as_ref().map(Registry::pid));
        pids
    }

    /// The last `lines` lines of containerd's log (the shim logs there too).
    pub fn log_tail(&self, lines: usize) -> String {
        crate::process::tail_of(&self.log, lines)
    }

    /// containerd's log lines that contain `needle`.
    pub fn log_grep(&self, needle: &str) -> Vec<String> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// Pushes `image` to the registry (once) and pulls it through CRI; returns the
    /// reference to put in a container config (`wasmpod.test/<name>`).
    ///
    /// # Errors
    /// When the push or the pull fails.
    pub fn image(&self, image: impl AsRef<TestImage>) -> Result<String> {
        let image = image.as_ref();
        let mut pulled = self
            .pulled
            .lock()
            .map_err(|_| anyhow!("image map poisoned"))?;
        if let Some(r) = pulled.get(&image.name) {
            return Ok(r.clone());
        }
        let registry = self
            .registry
            .as_ref()
            .ok_or_else(|| anyhow!("registry is not running"))?;
        registry.push(&image.tar, &image.name)?;
        let reference = format!("{REGISTRY_HOST}/{}", image.name);
        self.client()?.pull_image(&reference)?;
        pulled.insert(image.name.clone(), reference.clone());
        Ok(reference)
    }
}

/// Runs `body` against a fresh [`Cri`]; then removes every pod through CRI and checks that
/// nothing of theirs is left ([`Cri::leftovers`]), and after teardown that the host is
/// clean ([`teardown::host_leftovers`]). Prints containerd's log tail on failure.
///
/// # Errors
/// What `body` returns, or what the checks find.
pub fn with_cri(body: impl FnOnce(&Cri) -> Result<()>) -> Result<()> {
    with_cri_mut(|cri| body(cri))
}

/// [`with_cri`] for a body that needs the [`Cri`] mutably ([`Cri::restart`]).
///
/// # Errors
/// See [`with_cri`].
pub fn with_cri_mut(body: impl FnOnce(&mut Cri) -> Result<()>) -> Result<()> {
    let mut cri = Cri::start()?;
    let mut result = body(&mut cri);
    let removed = cri.remove_all_pods().and_then(|()| cri.wait_clean());
    result = result.and(removed);
    if result.is_err() {
        eprintln!("containerd {} log tail:\n{}", cri.version, cri.log_tail(60));
    }
    let (dir, net, root) = (cri.dir.clone(), cri.net.clone(), cri.cgroup_root.clone());
    drop(cri);
    let left = teardown::host_leftovers(&dir, &net, &root);
    if left.is_empty() {
        result
    } else {
        result.and(Err(anyhow!("left on the host after teardown: {left:#?}")))
    }
}
