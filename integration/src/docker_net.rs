//! A private dockerd with Docker's own networking, for `docker run -p` and `--network host`.
//!
//! [`crate::docker::Docker`] runs dockerd without a bridge, iptables or userland proxy on
//! purpose, so nothing it runs can publish a port; and its leftover check counts the host
//! network's sandbox mount (below) as a leak. [`NetDocker::start`] starts the same dockerd
//! (same binaries, the same private `daemon.json` from [`crate::docker::daemon_config`],
//! everything under a temp dir of its own) with one change, `userland-proxy` on (docker-proxy,
//! beside dockerd, forwards a published host port to the container), and creates one
//! user-defined bridge network ([`NetDocker::network`]) on a free `10.88.<n>.0/24` with a
//! bridge name of its own. iptables stays off: no firewall rule is added, the host reaches the
//! bridge's addresses directly.
//!
//! The first `--network host` container makes dockerd (26 and 28, under runc as well) bind
//! the host's network namespace at `<exec-root>/netns/default`, its host sandbox, and leave it
//! mounted even after dockerd exits. That mount is the daemon's, not a container's: the checks
//! skip it and teardown unmounts it.
//!
//! [`with_net_docker`] checks after the test that no container, shim, docker-proxy, mount or
//! container cgroup is left; teardown removes the network, stops dockerd by PID, checks that
//! no process names the temp dir, nothing else is mounted under it, no cgroup and no bridge is
//! left, and removes whatever it finds and the dir.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::containerd::unique_name;
use crate::cri::PodNetwork;
use crate::docker::{containerd_dir, daemon_config, docker_cli_path, dockerd_path};
use crate::images::TestImage;
use crate::process::{poll, run_with_timeout, Output};
use crate::{paths, system};

/// Deadline for one docker CLI command.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(90);
/// How long dockerd gets to stop on SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// The name of the user-defined bridge network each daemon gets.
const NETWORK: &str = "wasmpod-bridge";

/// Spreads the subnets of the daemons of one process away from the CRI setups' choices.
static SEQ: AtomicU32 = AtomicU32::new(101);

/// A private dockerd with a bridge network, published ports and the host network; see the
/// module docs.
#[derive(Debug)]
pub struct NetDocker {
    dir: PathBuf,
    sock: PathBuf,
    cgroup_parent: String,
    child: Option<Child>,
    log: PathBuf,
    net: PodNetwork,
    /// What is mounted under the dir once the daemon and its network are up.
    idle_mounts: Vec<PathBuf>,
    /// Test image name -> the reference `docker load` reported.
    loaded: Mutex<HashMap<String, String>>,
}

impl NetDocker {
    /// Starts dockerd ([`dockerd_path`]) with the userland proxy and creates the network.
    ///
    /// # Errors
    /// When a binary is missing, the daemon does not come up or the network cannot be created
    /// (with dockerd's log tail).
    pub fn start() -> Result<Self> {
        let dockerd = dockerd_path();
        for bin in [
            dockerd.clone(),
            containerd_dir().join("containerd"),
            containerd_dir().join("docker-proxy"),
        ] {
            if !paths::is_executable(&bin) {
                bail!(
                    "{} is missing (`make trixie` / `make forky`, or set WASMPOD_DOCKERD)",
                    bin.display()
                );
            }
        }
        paths::require_shim()?;
        let dir = tempfile::Builder::new()
            .prefix("wasmpod-dkb-")
            .tempdir()
            .context("create temp dir")?
            .keep();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let mut net = PodNetwork::choose(seq);
        net.bridge = format!("wpb{:x}n{seq}", std::process::id());
        net.bridge.truncate(15);
        let mut me = Self {
            sock: dir.join("docker.sock"),
            cgroup_parent: unique_name("wasmpod-dkb"),
            child: None,
            log: dir.join("dockerd.log"),
            net,
            idle_mounts: Vec::new(),
            loaded: Mutex::default(),
            dir,
        };
        me.spawn(&dockerd).with_context(|| {
            format!(
                "start {} with a bridge network (log tail:\n{})",
                dockerd.display(),
                me.log_tail(40)
            )
        })?;
        me.idle_mounts = system::mounts_under(&me.dir);
        Ok(me)
    }

    fn spawn(&mut self, dockerd: &Path) -> Result<()> {
        let debug = std::env::var("WASMPOD_IT_LOG_LEVEL").is_ok_and(|l| l == "debug");
        let mut config = daemon_config(&self.dir, &self.cgroup_parent, debug);
        config["userland-proxy"] = serde_json::Value::Bool(true);
        let config_path = self.dir.join("daemon.json");
        fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
        let path = std::env::join_paths(
            [paths::bin_dir(), containerd_dir()]
                .into_iter()
                .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from)),
        )?;
        let log = File::create(&self.log)?;
        let mut cmd = Command::new(dockerd);
        cmd.arg("--config-file")
            .arg(&config_path)
            .env_clear()
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        for pass in ["RUST_LOG", "RUST_BACKTRACE", "WASMPOD_LOG"] {
            if let Some(v) = std::env::var_os(pass) {
                cmd.env(pass, v);
            }
        }
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        // If the test process dies, dockerd gets SIGTERM (and stops its containerd).
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        self.child = Some(cmd.spawn().context("spawn dockerd")?);
        poll("dockerd to answer", Duration::from_secs(60), || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("dockerd exited early: {status}");
            }
            if !self.sock.exists() {
                return Ok(None);
            }
            Ok(self.docker(["version"])?.success().is_ok().then_some(()))
        })?;
        let bridge_opt = format!("com.docker.network.bridge.name={}", self.net.bridge);
        self.docker([
            "network",
            "create",
            "--driver",
            "bridge",
            "--subnet",
            &self.net.subnet(),
            "-o",
            &bridge_opt,
            NETWORK,
        ])?
        .success()
        .context("docker network create")?;
        Ok(())
    }

    /// The user-defined bridge network to pass to `docker run --network`.
    pub fn network(&self) -> &str {
        NETWORK
    }

    /// Its bridge device and subnet.
    pub fn bridge_network(&self) -> &PodNetwork {
        &self.net
    }

    /// The temp dir holding everything of this daemon.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last `lines` lines of dockerd's log (its containerd and the shims log there too).
    pub fn log_tail(&self, lines: usize) -> String {
        crate::process::tail_of(&self.log, lines)
    }

    fn containerd_socket(&self) -> String {
        self.dir
            .join("exec/containerd/containerd.sock")
            .display()
            .to_string()
    }

    /// Runs `docker -H unix://SOCK ARGS` (clean environment, private CLI config), whatever
    /// its exit status.
    ///
    /// # Errors
    /// When the CLI cannot be spawned or takes longer than 90 s.
    pub fn docker<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(docker_cli_path());
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &self.dir)
            .env("DOCKER_CONFIG", self.dir.join("cli"))
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args);
        run_with_timeout(&mut cmd, DOCKER_TIMEOUT)
    }

    /// `docker load -i` of a test image's tar (once per daemon); returns the reference.
    ///
    /// # Errors
    /// When the load fails or reports no image name.
    pub fn load(&self, image: impl AsRef<TestImage>) -> Result<String> {
        let image = image.as_ref();
        let mut loaded = self
            .loaded
            .lock()
            .map_err(|_| anyhow!("loaded images poisoned"))?;
        if let Some(r) = loaded.get(&image.name) {
            return Ok(r.clone());
        }
        let out = self.docker(["load".as_ref(), "-i".as_ref(), image.tar.as_os_str()])?;
        out.success()
            .with_context(|| format!("docker load {}", image.tar.display()))?;
        let reference = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("Loaded image: "))
            .map(|r| r.trim().to_string())
            .with_context(|| format!("docker load named no image:\n{out}"))?;
        loaded.insert(image.name.clone(), reference.clone());
        Ok(reference)
    }

    /// `docker inspect -f FORMAT ID`, trimmed.
    ///
    /// # Errors
    /// When inspect fails.
    pub fn inspect(&self, id: &str, format: &str) -> Result<String> {
        let out = self.docker(["inspect", "-f", format, id])?;
        out.success()?;
        Ok(out.stdout.trim().to_string())
    }

    /// A mount under the dir that belongs to the daemon rather than to a container: those of
    /// the idle daemon, and the host network's sandbox (see the module docs).
    fn daemon_mount(&self, m: &Path) -> bool {
        self.idle_mounts.iter().any(|i| i == m) || m == self.dir.join("exec/netns/default")
    }

    /// docker-proxy processes forwarding to this daemon's subnet.
    fn proxies(&self) -> Vec<system::Proc> {
        system::procs_mentioning(&self.net.prefix())
            .into_iter()
            .filter(|p| {
                p.argv.first().is_some_and(|a| {
                    Path::new(a)
                        .file_name()
                        .is_some_and(|n| n == "docker-proxy")
                })
            })
            .collect()
    }

    /// Everything a finished test may not leave in the running daemon; empty when clean.
    ///
    /// # Errors
    /// When docker fails.
    pub fn leftovers(&self) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let ps = self.docker(["ps", "-a", "--format", "{{.ID}} {{.Image}} {{.Status}}"])?;
        ps.success()?;
        found.extend(ps.stdout.lines().map(|l| format!("docker container {l}")));
        for p in system::procs_mentioning(&self.containerd_socket()) {
            let shim = p.argv.first().is_some_and(|a| {
                Path::new(a)
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("containerd-shim"))
            });
            if shim {
                found.push(format!("process {}: {}", p.pid, p.argv.join(" ")));
            }
        }
        for p in self.proxies() {
            found.push(format!("docker-proxy {}: {}", p.pid, p.argv.join(" ")));
        }
        for m in system::mounts_under(&self.dir) {
            if !self.daemon_mount(&m) {
                found.push(format!("mount {}", m.display()));
            }
        }
        for c in system::cgroup_children(&self.cgroup_parent) {
            found.push(format!("cgroup {}", c.display()));
        }
        Ok(found)
    }

    /// Waits (up to 10 s: shims exit asynchronously) until [`NetDocker::leftovers`] is
    /// empty.
    ///
    /// # Errors
    /// Listing what is left.
    pub fn assert_clean(&self) -> Result<()> {
        let mut last = Vec::new();
        let clean = poll("a clean dockerd", Duration::from_secs(10), || {
            last = self.leftovers()?;
            Ok(last.is_empty().then_some(()))
        });
        if clean.is_err() {
            bail!("left behind after the test:\n  {}", last.join("\n  "));
        }
        Ok(())
    }

    fn remove_containers(&self) {
        let Ok(out) = self.docker(["ps", "-aq"]) else {
            return;
        };
        let ids: Vec<&str> = out.stdout.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = self.docker(["rm", "-f"].into_iter().chain(ids));
        }
    }

    /// Stops dockerd by PID; true when SIGTERM was enough.
    fn stop_daemon(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = kill(pid, Signal::SIGKILL);
        let _ = child.wait();
        false
    }

    /// Removes every container and the network, stops dockerd, then checks that no process
    /// names the temp dir, no docker-proxy, no mount but the daemon's own, no cgroup and no
    /// bridge is left; everything is removed anyway (the daemon's mounts too), and the dir.
    ///
    /// # Errors
    /// Listing what was left.
    pub fn shutdown(&mut self) -> Result<()> {
        self.remove_containers();
        let mut problems = Vec::new();
        if self.child.is_some() {
            match self.docker(["network", "rm", NETWORK]) {
                Ok(rm) if rm.success().is_ok() => {}
                Ok(rm) => problems.push(format!("docker network rm: {rm}")),
                Err(e) => problems.push(format!("docker network rm: {e:#}")),
            }
        }
        if !self.stop_daemon() {
            problems.push(format!(
                "dockerd did not stop on SIGTERM within {STOP_GRACE:?}"
            ));
        }
        let needle = format!("{}/", self.dir.display());
        let mut last = Vec::new();
        let _ = poll(
            "the daemon's processes to exit",
            Duration::from_secs(10),
            || {
                last = system::procs_mentioning(&needle)
                    .into_iter()
                    .map(|p| format!("process {}: {}", p.pid, p.argv.join(" ")))
                    .collect();
                last.extend(
                    self.proxies()
                        .into_iter()
                        .map(|p| format!("docker-proxy {}: {}", p.pid, p.argv.join(" "))),
                );
                Ok(last.is_empty().then_some(()))
            },
        );
        problems.extend(last);
        problems.extend(
            system::mounts_under(&self.dir)
                .into_iter()
                .filter(|m| !self.daemon_mount(m))
                .map(|m| format!("mount {}", m.display())),
        );
        problems.extend(
            system::cgroup_children(&self.cgroup_parent)
                .into_iter()
                .map(|c| format!("cgroup {}", c.display())),
        );
        if self.net.bridge_exists() {
            problems.push(format!("bridge {}", self.net.bridge));
        }
        let failed = self.force_cleanup();
        problems.extend(failed.into_iter().map(|f| format!("cleanup: {f}")));
        if !problems.is_empty() {
            bail!(
                "left behind by the stopped dockerd:\n  {}\ndockerd log tail:\n{}",
                problems.join("\n  "),
                self.log_tail(30)
            );
        }
        Ok(())
    }

    /// Kills every process naming the temp dir and every docker-proxy of the subnet,
    /// unmounts everything under the dir, removes the cgroups, the bridge and the dir;
    /// returns what failed.
    fn force_cleanup(&self) -> Vec<String> {
        let needle = format!("{}/", self.dir.display());
        for p in system::procs_mentioning(&needle)
            .into_iter()
            .chain(self.proxies())
        {
            system::kill_pid(p.pid);
        }
        let _ = poll("killed processes to go", Duration::from_secs(5), || {
            Ok(
                (system::procs_mentioning(&needle).is_empty() && self.proxies().is_empty())
                    .then_some(()),
            )
        });
        let mut problems = system::unmount_under(&self.dir);
        problems.extend(system::remove_namespace_cgroups(&self.cgroup_parent));
        problems.extend(self.net.remove());
        if self.dir.exists() {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                problems.push(format!("remove {}: {e}", self.dir.display()));
            }
        }
        problems
    }
}

impl Drop for NetDocker {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.remove_containers();
            let _ = self.docker(["network", "rm", NETWORK]);
        }
        self.stop_daemon();
        let problems = self.force_cleanup();
        if !problems.is_empty() {
            eprintln!("dockerd (networking on) teardown: {}", problems.join("; "));
        }
    }
}

/// Runs `body` against a fresh [`NetDocker`], checks that it left no container, shim,
/// docker-proxy, mount or cgroup, then shuts the daemon down and checks that nothing of it
/// is left. Prints dockerd's log tail on failure.
///
/// # Errors
/// What `body` returns, or what the checks find.
pub fn with_net_docker(body: impl FnOnce(&NetDocker) -> Result<()>) -> Result<()> {
    let mut d = NetDocker::start()?;
    let result = body(&d).and_then(|()| d.assert_clean());
    if result.is_err() {
        eprintln!("dockerd log tail:\n{}", d.log_tail(60));
    }
    let stopped = d.shutdown();
    result.and(stopped)
}
