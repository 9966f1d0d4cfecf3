//! What Kubernetes' conformance suite (critest) found wrong under wasmpod, each checked the way
//! kubelet meets it, through containerd's CRI: a pod must stop when a native container whose
//! init forked workers shares the pod's PID namespace; an exec is confined by the container's
//! seccomp profile; HostToContainer and Bidirectional mounts propagate; and a signal to a task
//! that already ended is NotFound, as under runc.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use containerd_shim_protos::ttrpc::Code;
use k8s_cri::v1::{
    ContainerConfig, ContainerState, MountPropagation, NamespaceMode, SecurityProfile,
};
use wasmpod_integration::cri::pod::bind;
use wasmpod_integration::cri::{with_cri, Cri, Pod};
use wasmpod_integration::process::poll;
use wasmpod_integration::{images, with_containerd};

const WAIT: Duration = Duration::from_secs(20);

fn start_running(cri: &Cri, pod: &Pod<'_>, config: &ContainerConfig) -> Result<String> {
    let id = pod.start(config)?;
    cri.wait_state(&id, ContainerState::ContainerRunning, WAIT)?;
    Ok(id)
}

/// Pids on the host whose argv is exactly `argv` and whose cgroup names `container`.
fn processes_of(container: &str, argv: &[&str]) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let got: Vec<&[u8]> = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .collect();
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            got.len() == argv.len()
                && got.iter().zip(argv).all(|(g, a)| *g == a.as_bytes())
                && cgroup.contains(container)
        })
        .collect()
}

/// A busybox container in a pod whose PID namespace it shares (critest's "PodPID" and the
/// nginx-like images under multi-container pods): its init forks two workers that inherit its
/// stdout. When StopContainer ends init, the workers must end too, the container must reach
/// EXITED and the pod must stop and be removed. Before the fix the workers lived on, holding
/// the log open, and containerd waited for them for ever.
#[test]
fn stopping_init_in_a_shared_pid_namespace_ends_its_workers() -> Result<()> {
    with_cri(|cri| {
        let busybox = cri.image(images().busybox()?)?;
        let mut config = cri.pod_config("podpid");
        set_pid_mode(
            config
                .linux
                .as_mut()
                .and_then(|l| l.security_context.as_mut()),
        );
        let pod = cri.run_pod_with(config, wasmpod_integration::cri::WASMPOD_HANDLER)?;
        let script = "sleep 3601 & sleep 3601 & wait";
        let mut web = cri.container_config("web", &busybox, &["/bin/sh"], &["-c", script]);
        if let Some(sc) = web.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
            if let Some(ns) = sc.namespace_options.as_mut() {
                ns.pid = NamespaceMode::Pod as i32;
            }
        }
        let id = start_running(cri, &pod, &web)?;
        let workers = poll("two workers", WAIT, || {
            let found = processes_of(&id, &["sleep", "3601"]);
            Ok((found.len() == 2).then_some(found))
        })?;

        cri.client()?.stop_container(&id, 2)?;
        let status = cri.wait_state(&id, ContainerState::ContainerExited, WAIT)?;
        let alive: Vec<i32> = workers
            .iter()
            .copied()
            .filter(|p| Path::new(&format!("/proc/{p}")).exists())
            .collect();
        ensure!(
            alive.is_empty(),
            "workers {alive:?} outlived their container's init (exit {})",
            status.exit_code
        );
        pod.remove()
    })
}

fn set_pid_mode(sc: Option<&mut k8s_cri::v1::LinuxSandboxSecurityContext>) {
    if let Some(ns) = sc.and_then(|sc| sc.namespace_options.as_mut()) {
        ns.pid = NamespaceMode::Pod as i32;
    }
}

/// With the runtime's default seccomp profile, `kubectl exec` into a busybox container of a
/// wasmpod pod runs filtered (`Seccomp: 2`), like the container's init. Before the fix an exec
/// showed `Seccomp: 0`: it escaped the pod's profile.
#[test]
fn an_exec_is_confined_by_the_containers_seccomp_profile() -> Result<()> {
    with_cri(|cri| {
        let busybox = cri.image(images().busybox()?)?;
        let pod = cri.run_pod("seccomp")?;
        let mut config = cri.container_config("box", &busybox, &["/bin/sleep"], &["3600"]);
        if let Some(sc) = config
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
        {
            sc.seccomp = Some(SecurityProfile {
                profile_type: k8s_cri::v1::security_profile::ProfileType::RuntimeDefault as i32,
                ..Default::default()
            });
        }
        let id = start_running(cri, &pod, &config)?;
        for (who, file) in [("init", "/proc/1/status"), ("exec", "/proc/self/status")] {
            let resp = cri
                .client()?
                .exec_sync(&id, &["/bin/grep", "Seccomp:", file], 10)?;
            let out = String::from_utf8_lossy(&resp.stdout);
            ensure!(
                resp.exit_code == 0 && out.split_whitespace().nth(1) == Some("2"),
                "{who}: want Seccomp: 2, got exit {} {out:?} {:?}",
                resp.exit_code,
                String::from_utf8_lossy(&resp.stderr)
            );
        }
        pod.remove()
    })
}

/// A shared bind mount of a temp dir on the host, unmounted (with what is under it) on drop.
struct SharedDir {
    dir: tempfile::TempDir,
}

impl SharedDir {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().display().to_string();
        mount(&["--bind", &path, &path])?;
        mount(&["--make-rshared", &path])?;
        Ok(Self { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path())
            .status();
    }
}

fn mount(args: &[&str]) -> Result<()> {
    let status = Command::new("mount").args(args).status()?;
    ensure!(status.success(), "mount {args:?}: {status}");
    Ok(())
}

/// Mounts with HostToContainer (rslave) and Bidirectional (rshared) propagation, which the CRI
/// turns into `rootfsPropagation` `rslave` / `rshared`: the container is created (before the
/// fix libcontainer refused both names), and a tmpfs mounted on the host after the start
/// appears inside it under both mounts.
#[test]
fn host_mounts_propagate_into_rslave_and_rshared_mounts() -> Result<()> {
    with_cri(|cri| {
        let busybox = cri.image(images().busybox()?)?;
        // Privileged containers (kubelet allows Bidirectional in no other) need a privileged pod.
        let mut pod_config = cri.pod_config("propagation");
        if let Some(sc) = pod_config
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
        {
            sc.privileged = true;
        }
        let pod = cri.run_pod_with(pod_config, wasmpod_integration::cri::WASMPOD_HANDLER)?;
        let mut started = Vec::new();
        let mut shared = Vec::new();
        for (name, propagation) in [
            ("slave", MountPropagation::PropagationHostToContainer),
            ("shared", MountPropagation::PropagationBidirectional),
        ] {
            let host = SharedDir::new()?;
            let mut config = cri.container_config(name, &busybox, &["/bin/sleep"], &["3600"]);
            let mut m = bind(host.path(), "/mnt/host", false);
            m.propagation = propagation as i32;
            config.mounts.push(m);
            if propagation == MountPropagation::PropagationBidirectional {
                // kubelet allows Bidirectional only in privileged containers.
                if let Some(sc) = config
                    .linux
                    .as_mut()
                    .and_then(|l| l.security_context.as_mut())
                {
                    sc.privileged = true;
                }
            }
            let id =
                start_running(cri, &pod, &config).with_context(|| format!("{name} propagation"))?;
            started.push((name, id));
            shared.push(host);
        }
        for ((name, id), host) in started.iter().zip(&shared) {
            let sub = host.path().join("late");
            std::fs::create_dir_all(&sub)?;
            mount(&["-t", "tmpfs", "late-tmpfs", &sub.display().to_string()])?;
            let resp = cri.client()?.exec_sync(
                id,
                &["/bin/grep", "/mnt/host/late", "/proc/self/mountinfo"],
                10,
            )?;
            ensure!(
                resp.exit_code == 0,
                "{name}: a mount made on the host after the start is not in the container: {:?}",
                String::from_utf8_lossy(&resp.stdout)
            );
        }
        pod.remove()
    })
}

/// `ctr task kill` of a task that already exited gets NotFound ("process already finished"),
/// which containerd tolerates (critest's attach spec stops such a container), as under runc.
/// wasmpod used to answer FailedPrecondition.
#[test]
fn a_signal_after_the_exit_is_not_found() -> Result<()> {
    with_containerd(|ctd| {
        let hello = images().wasm("hello")?;
        let busybox = images().busybox()?;
        ctd.import(&hello)?.import(&busybox)?;
        for task in [
            ctd.run(&hello).detach()?,
            ctd.run(&busybox).argv(["true"]).detach()?,
        ] {
            task.wait_for_status("STOPPED", WAIT)?;
            let out = ctd.ctr(["task", "kill", "--signal", "SIGTERM", task.id()])?;
            if out.status.success() {
                bail!("kill after the exit succeeded: {out}");
            }
            // ctr 1.x: "process already finished: not found"; ctr 2.x prints the message
            // without the code, so the code is asked of the shim itself too.
            ensure!(
                out.stderr.contains("process already finished")
                    && !out.stderr.contains("precondition"),
                "want NotFound for a finished process: {out}"
            );
            let code = ctd.shim_kill(task.id(), 15)?;
            ensure!(
                code == Code::NOT_FOUND,
                "shim Kill after the exit: {code:?}"
            );
            let code = task.wait_for_exit(WAIT)?;
            ensure!(code == 0, "exit {code}");
        }
        Ok(())
    })
}
