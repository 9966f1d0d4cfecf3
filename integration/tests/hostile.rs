//! Huge input and the shim killed mid-Create: a module with 100,000 functions runs (compiled
//! in the compile helper, so the compiler's memory never lands in the shim); a shim SIGKILLed
//! while it creates a container leaves no process, mount, cgroup, bundle or helper behind, and
//! the next create works.

use std::time::Duration;

use anyhow::{bail, ensure, Result};
use wasmpod_integration::process::poll;
use wasmpod_integration::system::{kill_pid, procs_mentioning};
use wasmpod_integration::{images, with_containerd_env};

/// A core module of `n` functions `() -> ()`, each `ops` times `i32.const 1; drop`; exports
/// function 0 as `_start`. Encoded by hand: no toolchain needed for the huge input.
fn many_functions(n: usize, ops: usize) -> Vec<u8> {
    let mut out = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut out);
    let mut funcs = Vec::new();
    leb(n, &mut funcs);
    funcs.resize(funcs.len() + n, 0);
    section(3, &funcs, &mut out);
    let mut exports = vec![1, 6];
    exports.extend_from_slice(b"_start");
    exports.extend_from_slice(&[0, 0]);
    section(7, &exports, &mut out);
    let mut body = vec![0];
    for _ in 0..ops {
        body.extend_from_slice(&[0x41, 0x01, 0x1a]);
    }
    body.push(0x0b);
    let mut code = Vec::new();
    leb(n, &mut code);
    for _ in 0..n {
        leb(body.len(), &mut code);
        code.extend_from_slice(&body);
    }
    section(10, &code, &mut out);
    out
}

#[test]
fn a_module_with_100k_functions_runs() -> Result<()> {
    let cache = tempfile::tempdir()?;
    let cache_env = cache.path().display().to_string();
    with_containerd_env(&[("WASMPOD_CACHE_DIR", &cache_env)], |ctd| {
        let wasm = many_functions(100_000, 1);
        let img = images().wasm_rootfs("f100k", &[("/app.wasm", &wasm)])?;
        let out = ctd
            .import(&img)?
            .run(&img)
            .timeout(Duration::from_secs(300))
            .exec()?;
        out.success()?;
        let log = ctd.log_tail(400);
        ensure!(
            log.contains("compiled in the compile helper"),
            "the compile must happen outside the shim: {}",
            ctd.log_tail(30)
        );
        // The cached start maps the code instead of compiling it.
        let again = ctd.run(&img).timeout(Duration::from_secs(120)).exec()?;
        again.success()?;
        Ok(())
    })
}

/// The shim SIGKILLed while its compile helper compiles (the middle of Create): ctr fails,
/// the helper dies with the shim, containerd's cleanup (`shim delete`) leaves nothing behind,
/// and the same program then runs.
#[test]
fn a_shim_killed_mid_create_leaves_nothing_behind() -> Result<()> {
    let cache = tempfile::tempdir()?;
    let cache_env = cache.path().display().to_string();
    with_containerd_env(&[("WASMPOD_CACHE_DIR", &cache_env)], |ctd| {
        let wasm = many_functions(100_000, 20);
        let img = images().wasm_rootfs("f100k-ops", &[("/app.wasm", &wasm)])?;
        ctd.import(&img)?;
        let run = ctd.run(&img).timeout(Duration::from_secs(120)).spawn()?;
        // Only this daemon's helper: another test's shim compiles beside this one (a shim
        // of the 200 MB test was once killed here in its place).
        let socket = ctd.socket().display().to_string();
        let helper = poll("the compile helper", Duration::from_secs(60), || {
            let ours: Vec<i32> = procs_mentioning(&socket).iter().map(|p| p.pid).collect();
            Ok(procs_mentioning("compile-cache")
                .into_iter()
                .find(|p| p.argv.iter().any(|a| a == "compile-cache") && ours.contains(&p.ppid)))
        })?;
        let shim = helper.ppid;
        ensure!(shim > 1, "helper {} has no parent shim", helper.pid);
        kill_pid(shim);
        let out = run.wait(Duration::from_secs(60))?;
        ensure!(
            out.code() != 0,
            "ctr run succeeded with its shim killed: {out}"
        );
        poll(
            "the orphaned compile helper to die",
            Duration::from_secs(10),
            || Ok((!std::path::Path::new(&format!("/proc/{}", helper.pid)).exists()).then_some(())),
        )?;
        // ctr run --rm could not remove what it made: the user's `ctr c rm` then finds
        // nothing else to clean.
        for c in ctd.containers()? {
            let _ = ctd.ctr(["containers", "rm", &c])?;
        }
        ctd.assert_clean()?;
        let cached = cache
            .path()
            .read_dir()?
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .count();
        if cached > 1 {
            bail!("{cached} cache files for one program");
        }
        let out = ctd.run(&img).timeout(Duration::from_secs(300)).exec()?;
        out.success()?;
        Ok(())
    })
}

/// The shim SIGKILLed under running tasks (a wasm sleeper and a busybox sleep, each with its
/// own shim): containerd reports the tasks gone, and its cleanup (`shim delete`) kills what
/// ran in them: no process, mount, cgroup or bundle is left.
#[test]
fn a_shim_killed_under_running_tasks_leaves_nothing_behind() -> Result<()> {
    let cache = tempfile::tempdir()?;
    let cache_env = cache.path().display().to_string();
    with_containerd_env(&[("WASMPOD_CACHE_DIR", &cache_env)], |ctd| {
        let sleeper = images().wasm("sleeper")?;
        let busybox = images().busybox()?;
        ctd.import(&sleeper)?.import(&busybox)?;
        let tasks = [
            ctd.run(&sleeper).args(["600"]).detach()?,
            ctd.run(&busybox).argv(["sleep", "600"]).detach()?,
        ];
        for task in &tasks {
            task.wait_for_status("RUNNING", Duration::from_secs(15))?;
            let info = ctd.task_list()?.into_iter().find(|t| t.id == task.id());
            let Some(init) = info.map(|t| t.pid as i32) else {
                bail!("no pid for {}", task.id());
            };
            let shim = procs_mentioning(&ctd.socket().display().to_string())
                .into_iter()
                .find(|p| {
                    p.argv
                        .first()
                        .is_some_and(|a| a.contains("containerd-shim-wasmpod"))
                        && p.argv.iter().any(|a| a == task.id())
                });
            let Some(shim) = shim else {
                bail!("no shim for {}", task.id());
            };
            kill_pid(shim.pid);
            poll(
                "the container process to be gone",
                Duration::from_secs(15),
                || Ok((!std::path::Path::new(&format!("/proc/{init}")).exists()).then_some(())),
            )?;
        }
        for task in tasks {
            let id = task.release();
            let _ = ctd.ctr(["tasks", "delete", "--force", &id]);
            let _ = ctd.ctr(["containers", "rm", &id]);
        }
        ctd.assert_clean()
    })
}

/// A guest that opens files until it cannot: its opens fail once the container process hits
/// RLIMIT_NOFILE (ctr's 1024), the guest handles the error and exits 0, and the next container
/// of the shim's daemon runs. WASI has no "too many open files" error code (neither
/// wasi:filesystem's `error-code` nor what preview 1 guests get through wasmtime), so the host's
/// EMFILE reaches the guest as `io` (errno 29 in wasi-libc), not as EMFILE.
#[test]
fn a_guest_exhausting_its_descriptors_is_refused_more() -> Result<()> {
    let cache = tempfile::tempdir()?;
    let cache_env = cache.path().display().to_string();
    with_containerd_env(&[("WASMPOD_CACHE_DIR", &cache_env)], |ctd| {
        let files = images().wasm("files")?;
        ctd.import(&files)?;
        let out = ctd
            .run(&files)
            .args(["exhaust", "/app.wasm"])
            .timeout(Duration::from_secs(60))
            .exec()?;
        out.success()?;
        let opened: usize = out
            .stdout
            .strip_prefix("opened ")
            .and_then(|s| s.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        ensure!(
            (900..1024).contains(&opened) && out.stdout.contains("then: "),
            "want the opens to fail at the 1024 descriptor limit: {out}"
        );
        let again = ctd.run(&files).args(["ls", "/"]).exec()?;
        again.success()?;
        ensure!(again.stdout.contains("app.wasm"), "{again}");
        Ok(())
    })
}

/// A 200 MB module (a 200 MB data segment): it compiles in the helper and runs; the shim
/// reads the program to hash and hand it over, then gives that memory back: once the task
/// has run, the shim's resident memory is far below the module's size.
#[test]
fn a_200_mb_module_runs_and_the_shim_gives_the_memory_back() -> Result<()> {
    const SIZE: usize = 200 << 20;
    let cache = tempfile::tempdir()?;
    let cache_env = cache.path().display().to_string();
    with_containerd_env(&[("WASMPOD_CACHE_DIR", &cache_env)], |ctd| {
        let wasm = big_data_module(SIZE);
        let img = images().wasm_rootfs("big200", &[("/app.wasm", &wasm)])?;
        drop(wasm);
        let task = ctd
            .import(&img)?
            .run(&img)
            .timeout(Duration::from_secs(300))
            .detach()?;
        let id = task.id().to_owned();
        // The container's own process carries the shim's argv too: the shim is the one whose
        // parent is not among them.
        let matching: Vec<_> = procs_mentioning(&ctd.socket().display().to_string())
            .into_iter()
            .filter(|p| {
                p.argv
                    .first()
                    .is_some_and(|a| a.contains("containerd-shim-wasmpod"))
                    && p.argv.contains(&id)
            })
            .collect();
        let shim = matching
            .iter()
            .find(|p| !matching.iter().any(|q| q.pid == p.ppid));
        let Some(shim) = shim.cloned() else {
            bail!("no shim for {id}: {matching:?}");
        };
        // STOPPED, not yet deleted: the shim is still there to be measured.
        task.wait_for_status("STOPPED", Duration::from_secs(120))?;
        let status = std::fs::read_to_string(format!("/proc/{}/status", shim.pid))?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(u64::MAX)
        };
        let anon_kb = field("RssAnon:");
        ensure!(
            anon_kb < 64 * 1024,
            "the shim keeps {anon_kb} kB of anonymous memory after a 200 MB module ran: {shim:?} {status}"
        );
        let code = task.wait_for_exit(Duration::from_secs(60))?;
        ensure!(code == 0, "the 200 MB module exited {code}");
        Ok(())
    })
}

/// A module whose one memory starts with `size` bytes of data (a single data segment).
fn big_data_module(size: usize) -> Vec<u8> {
    let mut out = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut out);
    section(3, &[1, 0], &mut out);
    let mut memory = vec![1, 0];
    leb((size >> 16) + 2, &mut memory);
    section(5, &memory, &mut out);
    let mut exports = vec![1, 6];
    exports.extend_from_slice(b"_start");
    exports.extend_from_slice(&[0, 0]);
    section(7, &exports, &mut out);
    section(10, &[1, 2, 0, 0x0b], &mut out);
    let mut data = vec![1, 0, 0x41, 0, 0x0b];
    leb(size, &mut data);
    data.extend((0..size).map(|i| i as u8));
    section(11, &data, &mut out);
    out
}

/// Unsigned LEB128, as the wasm binary format encodes sizes and counts.
fn leb(mut v: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A wasm section: id, size, payload.
fn section(id: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(payload.len(), out);
    out.extend_from_slice(payload);
}
