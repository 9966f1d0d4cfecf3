//! What users' nodes rely on from a container's cgroup, checked on whatever layout the host
//! has: v1 or hybrid here, cgroup v2 only in the VM of `make cgroup2-test`. The points the
//! other tests leave out: `pids.max`, the metrics shape (`io.containerd.cgroups.v1` or `v2`),
//! the freezer's own file, TaskOOM before the exit for a native and a wasm container, the
//! cgroup gone as soon as the task is deleted, and kubelet's systemd-style `cgroupsPath`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use k8s_cri::v1::{ContainerState, LinuxContainerResources};
use serde_json::{json, Value};
use wasmpod_integration::cgroup::ContainerCgroup;
use wasmpod_integration::cri::{with_cri, WASMPOD_HANDLER};
use wasmpod_integration::process::{poll, run_with_timeout};
use wasmpod_integration::spec::{user_spec, SpecParams};
use wasmpod_integration::{images, system, unique_name, with_containerd, Containerd};
use wasmpod_integration::{RUNC_RUNTIME, WASMPOD_RUNTIME};

const MIB: u64 = 1 << 20;
const WAIT: Duration = Duration::from_secs(20);
const CGROUPFS: &str = "/sys/fs/cgroup";

/// True on a cgroup v2 only host (the unified hierarchy mounted at `/sys/fs/cgroup`).
fn unified() -> bool {
    Path::new(CGROUPFS).join("cgroup.controllers").is_file()
}

/// The directory of cgroup `rel` for v1 `controller`, or the unified one on v2.
fn controller_dir(controller: &str, rel: &str) -> PathBuf {
    if unified() {
        Path::new(CGROUPFS).join(rel)
    } else {
        Path::new(CGROUPFS).join(controller).join(rel)
    }
}

fn read_trimmed(p: &Path) -> Result<String> {
    Ok(fs::read_to_string(p)
        .with_context(|| format!("read {}", p.display()))?
        .trim()
        .to_string())
}

/// Runs the sleeper detached from a whole spec (`ctr run --config`) whose
/// `linux.resources.pids.limit` is `pids`: ctr has no flag for it, Docker's `--pids-limit`
/// puts it in the spec the same way.
fn sleeper_with_pids_limit(ctd: &Containerd, pids: i64) -> Result<String> {
    let img = images().wasm("sleeper")?;
    let id = unique_name("pids");
    let src = img
        .rootfs
        .as_ref()
        .context("the sleeper image has no rootfs")?;
    let rootfs = ctd.dir().join("rootfs").join(&id);
    fs::create_dir_all(&rootfs)?;
    fs::copy(src.join("app.wasm"), rootfs.join("app.wasm"))?;
    let default = ctd.ctr(["oci", "spec"])?;
    default.success()?;
    let argv = [img.entrypoint.clone()];
    let spec = user_spec(
        &default.stdout,
        &SpecParams {
            namespace: ctd.namespace(),
            id: &id,
            rootfs: &rootfs,
            argv: &argv,
            env: &[],
            mounts: &[],
            cwd: None,
            user: (0, 0),
            memory_limit: Some(96 * MIB),
        },
    )?;
    let mut spec: Value = serde_json::from_str(&spec)?;
    spec["linux"]["resources"]["pids"] = json!({ "limit": pids });
    let path = ctd.dir().join(format!("{id}.spec.json"));
    fs::write(&path, serde_json::to_string_pretty(&spec)?)?;
    let mut cmd = ctd.ctr_command();
    cmd.args(["run", "-d", "--runtime", WASMPOD_RUNTIME, "--fifo-dir"])
        .arg(ctd.dir().join("fifo"))
        .arg("--config")
        .arg(&path)
        .arg(&id);
    run_with_timeout(&mut cmd, WAIT)?
        .success()
        .context("ctr run --config")?;
    ctd.wait_for_status(&id, "RUNNING", WAIT)?;
    Ok(id)
}

/// A `linux.resources.pids.limit` of 64 in the spec reads back as `pids.max` 64 in the
/// container's cgroup, and an `Update` (as the CRI forwards it) to 32 changes the file.
#[test]
fn pids_limit_reaches_pids_max_and_update_changes_it() -> Result<()> {
    with_containerd(|ctd| {
        let id = sleeper_with_pids_limit(ctd, 64)?;
        let rel = format!("{}/{id}", ctd.namespace());
        let pids_max = controller_dir("pids", &rel).join("pids.max");
        ensure!(read_trimmed(&pids_max)? == "64", "{}", pids_max.display());
        ctd.shim_update(&id, &json!({ "pids": { "limit": 32 } }))?;
        ensure!(
            read_trimmed(&pids_max)? == "32",
            "after Update: {}",
            pids_max.display()
        );
        ensure!(
            ctd.task_status(&id)?.as_deref() == Some("RUNNING"),
            "the task stopped after Update"
        );
        ctd.task_kill(&id, "SIGKILL")?;
        ensure!(ctd.wait_for_exit(&id, WAIT)? == 137);
        Ok(())
    })
}

/// `ctr task metrics --format json` of a sleeper limited to 96 MiB has the shape of the
/// host's cgroup version (containerd decodes the type URL the shim sends): on v2
/// `memory.usage_limit`, `cpu.usage_usec`, `pids.current`; on v1 `memory.usage.limit`,
/// `cpu.usage.total`, `pids.current`. A v1 shape on a v2 node would leave the CRI's
/// ContainerStats and kubelet's eviction figures empty.
#[test]
fn metrics_have_the_shape_of_the_hosts_cgroup_version() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("sleeper")?;
        let task = ctd
            .import(&img)?
            .run(&img)
            .memory_limit(96 * MIB)
            .detach()?;
        task.wait_for_status("RUNNING", WAIT)?;
        let mut last = String::new();
        let ok = poll("metrics with usage figures", WAIT, || {
            let out = ctd.ctr(["task", "metrics", "--format", "json", task.id()])?;
            out.success()?;
            last = out.stdout.clone();
            let m: Value = serde_json::from_str(&out.stdout)
                .with_context(|| format!("metrics are no JSON: {}", out.stdout))?;
            let (limit, cpu) = if unified() {
                (&m["memory"]["usage_limit"], &m["cpu"]["usage_usec"])
            } else {
                (&m["memory"]["usage"]["limit"], &m["cpu"]["usage"]["total"])
            };
            let ok = limit.as_u64() == Some(96 * MIB)
                && cpu.as_u64().is_some_and(|c| c > 0)
                && m["pids"]["current"].as_u64().is_some_and(|p| p >= 1);
            Ok(ok.then_some(()))
        });
        let v = if unified() { "v2" } else { "v1" };
        ok.with_context(|| format!("want the cgroup {v} shape, ctr printed:\n{last}"))?;
        task.kill("SIGKILL")?;
        task.wait_for_exit(WAIT)?;
        Ok(())
    })
}

/// Pause freezes the container's cgroup through the kernel's own switch (`cgroup.freeze` 1
/// and `frozen 1` in `cgroup.events` on v2, `freezer.state` FROZEN on v1), resume thaws it;
/// once the task is deleted its cgroup directory is gone.
#[test]
fn pause_freezes_the_cgroup_and_delete_removes_it() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("sleeper")?;
        let task = ctd.import(&img)?.run(&img).detach()?;
        task.wait_for_status("RUNNING", WAIT)?;
        let rel = format!("{}/{}", ctd.namespace(), task.id());
        let dir = controller_dir("freezer", &rel);
        let state = |want_frozen: bool| -> Result<()> {
            let what = if want_frozen { "frozen" } else { "thawed" };
            poll(&format!("the cgroup {what}"), WAIT, || {
                let ok = if unified() {
                    let freeze = read_trimmed(&dir.join("cgroup.freeze"))?;
                    let events = read_trimmed(&dir.join("cgroup.events"))?;
                    let frozen = events.lines().any(|l| l == "frozen 1");
                    (freeze == "1") == want_frozen && frozen == want_frozen
                } else {
                    let s = read_trimmed(&dir.join("freezer.state"))?;
                    s == if want_frozen { "FROZEN" } else { "THAWED" }
                };
                Ok(ok.then_some(()))
            })
        };
        state(false)?;
        task.pause()?;
        ensure!(task.status()?.as_deref() == Some("PAUSED"));
        state(true)?;
        task.resume()?;
        ensure!(task.status()?.as_deref() == Some("RUNNING"));
        state(false)?;
        let memory = controller_dir("memory", &rel);
        ensure!(memory.is_dir(), "{} is missing", memory.display());
        task.kill("SIGKILL")?;
        ensure!(task.wait_for_exit(WAIT)? == 137);
        for d in [&dir, &memory] {
            ensure!(!d.exists(), "{} is left after delete", d.display());
        }
        Ok(())
    })
}

/// The device rules of a wasm container's cgroup are runc's for the same spec (cgroup v1's
/// `devices.list`; v2 has no such file, its rules are an eBPF program). wasmpod's libcgroups
/// skips the allow rules that repeat one already written (`vendor/README.md`): this shows the
/// kernel ends with the same list.
#[test]
fn device_rules_are_runcs() -> Result<()> {
    if unified() {
        eprintln!("cgroup v2: no devices.list to compare");
        return Ok(());
    }
    with_containerd(|ctd| {
        let sleeper = images().wasm("sleeper")?;
        let busybox = images().busybox()?;
        ctd.import(&sleeper)?;
        ctd.import(&busybox)?;
        let wasm = ctd.run(&sleeper).detach()?;
        let native = ctd
            .run(&busybox)
            .runtime(RUNC_RUNTIME)
            .argv(["sleep", "100"])
            .detach()?;
        let mut lists = Vec::new();
        for task in [&wasm, &native] {
            task.wait_for_status("RUNNING", WAIT)?;
            let rel = format!("{}/{}", ctd.namespace(), task.id());
            let list = read_trimmed(&controller_dir("devices", &rel).join("devices.list"))?;
            let mut rules: Vec<String> = list.lines().map(str::to_string).collect();
            rules.sort();
            lists.push(rules);
        }
        for task in [wasm, native] {
            task.kill("SIGKILL")?;
            task.wait_for_exit(WAIT)?;
        }
        ensure!(
            !lists[0].is_empty(),
            "the wasm container's devices.list is empty"
        );
        ensure!(
            lists[0] == lists[1],
            "device rules differ:\nwasmpod {:?}\nrunc    {:?}",
            lists[0],
            lists[1]
        );
        Ok(())
    })
}

/// A busybox that outgrows `--memory-limit` 32 MiB is killed by the kernel's OOM killer
/// (137), and a wasm guest that aborts when refused memory at 64 MiB ends with 137 too;
/// for both the shim publishes `/tasks/oom` before `/tasks/exit`, as runc's shim does, so
/// Kubernetes and Docker say OOMKilled. A runc busybox under the same limit shows the event
/// is there to be seen on this host.
#[test]
fn oom_kills_publish_task_oom_before_the_exit() -> Result<()> {
    with_containerd(|ctd| {
        let busybox = images().busybox()?;
        let memhog = images().wasm("memhog")?;
        ctd.import(&busybox)?.import(&memhog)?;
        let events = ctd.events()?;
        let hog = ["/bin/sh", "-c", "x=a; while :; do x=$x$x; done"];
        let runs = [
            (
                "runc busybox",
                ctd.run(&busybox).runtime(RUNC_RUNTIME).argv(hog),
            ),
            ("wasmpod busybox", ctd.run(&busybox).argv(hog)),
            ("wasmpod memhog", ctd.run(&memhog).args(["512", "--abort"])),
        ];
        for (what, run) in runs {
            let limit = if what.contains("memhog") { 64 } else { 32 };
            let id = run.container_id().to_string();
            let out = run.memory_limit(limit * MIB).timeout(WAIT * 3).exec()?;
            ensure!(out.code() == 137, "{what}: {out}");
            events
                .expect_oom_before_exit(&id, WAIT)
                .with_context(|| what.to_string())?;
        }
        Ok(())
    })
}

/// Removes what is left of the slice tree `top` in every hierarchy, killing any process in
/// it first (only after a failure could one be there); returns what could not be removed.
fn remove_slice_tree(top: &str) -> Vec<String> {
    for dir in system::cgroup_children(top)
        .into_iter()
        .chain(system::namespace_cgroups(top))
    {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse().ok()) {
            system::kill_pid(pid);
        }
    }
    let mut failed = Vec::new();
    let _ = poll("the slice tree removed", Duration::from_secs(5), || {
        failed = system::remove_namespace_cgroups(top);
        Ok(failed.is_empty().then_some(()))
    });
    failed
}

/// kubelet's systemd cgroup driver gives each pod a slice as cgroup parent
/// (`/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice`), and
/// containerd's CRI turns that into `cgroupsPath` `<pod slice>:cri-containerd:<id>`. wasmpod
/// drives cgroupfs itself, so it must expand that as systemd would: the sandbox and a wasm
/// container with limits land in `cri-containerd-<id>.scope` under the expanded slices,
/// with the limits in place and the guest in `cgroup.procs`; removing the pod removes both
/// scopes. (A private top slice stands in for `kubepods.slice`, removed at the end.)
#[test]
fn systemd_cgroups_path_of_a_cri_pod_becomes_slices_and_scopes() -> Result<()> {
    const LIMIT: i64 = 96 * 1024 * 1024;
    let top = unique_name("wasmpod_it").replace('-', "_");
    let pod_slice = format!("{top}-besteffort-pod1.slice");
    let parent_rel = format!("{top}.slice/{top}-besteffort.slice/{pod_slice}");
    let result = with_cri(|cri| {
        let sleeper = cri.image(images().wasm("sleeper")?)?;
        let mut pod_config = cri.pod_config("systemd");
        if let Some(linux) = pod_config.linux.as_mut() {
            linux.cgroup_parent = format!("/{parent_rel}");
        }
        let pod = cri.run_pod_with(pod_config, WASMPOD_HANDLER)?;
        let mut cfg = cri.container_config("wasm", &sleeper, &[], &[]);
        if let Some(linux) = cfg.linux.as_mut() {
            linux.resources = Some(LinuxContainerResources {
                memory_limit_in_bytes: LIMIT,
                cpu_period: 100_000,
                cpu_quota: 50_000,
                ..Default::default()
            });
        }
        let id = pod.start(&cfg)?;
        cri.wait_state(&id, ContainerState::ContainerRunning, WAIT)?;
        let scopes = [pod.id().to_string(), id.clone()]
            .map(|i| format!("{parent_rel}/cri-containerd-{i}.scope"));
        let cg = ContainerCgroup::find(&parent_rel, &format!("cri-containerd-{id}.scope"))
            .with_context(|| format!("no scope of container {id} under /{parent_rel}"))?;
        ensure!(cg.memory_limit()? == Some(LIMIT as u64), "{cg:?}");
        ensure!(cg.cpu_quota_period()? == (Some(50_000), 100_000), "{cg:?}");
        let (_, info) = cri.client()?.container_status(&id)?;
        let info: Value = serde_json::from_str(info.get("info").context("no info")?)?;
        let pid = info["pid"].as_i64().context("no pid in the status")?;
        let procs = read_trimmed(&controller_dir("memory", &scopes[1]).join("cgroup.procs"))?;
        ensure!(
            procs.lines().any(|l| l == pid.to_string()),
            "pid {pid} not in {}: {procs:?}",
            scopes[1]
        );
        let sandbox = controller_dir("memory", &scopes[0]);
        ensure!(sandbox.is_dir(), "no sandbox scope {}", sandbox.display());
        pod.remove()?;
        for scope in &scopes {
            let left: Vec<PathBuf> = system::cgroup_children(&format!("{top}.slice"))
                .into_iter()
                .filter(|d| d.ends_with(scope))
                .collect();
            ensure!(left.is_empty(), "left after RemovePodSandbox: {left:?}");
        }
        Ok(())
    });
    let failed = remove_slice_tree(&format!("{top}.slice"));
    if !failed.is_empty() {
        bail!("slices of /{parent_rel} not removable (not empty?): {failed:?}; test: {result:?}");
    }
    result
}
