//! Many processes made at once by one pod's shim: no fork may deadlock.
//!
//! libcontainer clones with the raw syscall, so a child cloned straight from the shim (which
//! has other threads) could wait for ever on a lock another thread held at that instant. Before
//! builder processes, about 3% of concurrent execs never returned, stuck in `futex_wait` on
//! glibc's allocator lock. Exec probes in every pod make this the normal load of a node.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use wasmpod_integration::paths::SHIM_BINARY;
use wasmpod_integration::process::run_with_timeout;
use wasmpod_integration::system;
use wasmpod_integration::{images, unique_name, with_containerd, Containerd, Images, Run};

const WAIT: Duration = Duration::from_secs(15);
/// Far above one operation's time (tens of milliseconds), far below "never".
const OP_TIMEOUT: Duration = Duration::from_secs(40);
const OPERATIONS: usize = 240;
const AT_ONCE: usize = 8;

/// 240 operations, 8 at a time, all through the shim of one pod (a wasm sleeper and a busybox
/// sleeper sharing the `io.kubernetes.cri.sandbox-id` annotation): wasm execs, native execs,
/// and whole `ctr run --rm` create/start/wait/delete cycles of wasm and busybox containers of
/// the same pod. Each must finish within 40 s with the expected output and status. On a hang
/// the test dumps the stacks of the shim's descendants (gdb when present, else the kernel
/// stack and wait channel) before it fails.
#[test]
fn concurrent_execs_and_creates_in_one_pod_never_hang() -> Result<()> {
    with_containerd(|ctd| {
        if !ctd.ctr_run_has_flag("--annotation")? {
            eprintln!("SKIPPED: `ctr run --help` lists no --annotation flag");
            return Ok(());
        }
        let hello = Images::program("hello")?;
        let wasm = images().wasm_with(
            "sleeper",
            &["--dir", &format!("{}:/bin/hello.wasm", hello.display())],
        )?;
        let busybox = images().busybox()?;
        ctd.import(&wasm)?.import(&busybox)?;
        let annotation = format!("io.kubernetes.cri.sandbox-id={}", unique_name("pod"));
        let annotation = annotation.as_str();
        fn in_pod<'a>(run: Run<'a>, annotation: &str) -> Run<'a> {
            run.flag("--annotation").flag(annotation)
        }
        let wasm_task = in_pod(ctd.run(&wasm).args(["600"]), annotation).detach()?;
        let native_task = in_pod(ctd.run(&busybox).argv(["sleep", "600"]), annotation).detach()?;
        wasm_task.wait_for_status("RUNNING", WAIT)?;
        native_task.wait_for_status("RUNNING", WAIT)?;
        let shims = system::shims_of(&ctd.socket().to_string_lossy(), SHIM_BINARY);
        ensure!(shims.len() == 1, "want one shim for the pod: {shims:#?}");
        let shim = shims[0].pid;

        let next = AtomicUsize::new(0);
        let failures = Mutex::new(Vec::<String>::new());
        let started = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..AT_ONCE {
                scope.spawn(|| {
                    while failures.lock().map_or(true, |f| f.is_empty()) {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        if n >= OPERATIONS {
                            break;
                        }
                        let result = match n % 4 {
                            0 => exec(
                                ctd,
                                wasm_task.id(),
                                n,
                                &["/bin/hello.wasm"],
                                "hello from wasmpod",
                            ),
                            1 => exec(ctd, native_task.id(), n, &["sh", "-c", "echo hi"], "hi"),
                            2 => in_pod(ctd.run(&wasm).argv(["/bin/hello.wasm"]), annotation)
                                .timeout(OP_TIMEOUT)
                                .exec()
                                .and_then(|out| expect(&out, "hello from wasmpod")),
                            _ => in_pod(ctd.run(&busybox).argv(["echo", "ran"]), annotation)
                                .timeout(OP_TIMEOUT)
                                .exec()
                                .and_then(|out| expect(&out, "ran")),
                        };
                        if let Err(e) = result {
                            let dump = stacks_under(shim);
                            if let Ok(mut f) = failures.lock() {
                                f.push(format!("operation {n}: {e:#}\n{dump}"));
                            }
                        }
                    }
                });
            }
        });
        let failures = failures.into_inner().unwrap_or_default();
        eprintln!(
            "{} operations in {:?}, {} failed",
            next.load(Ordering::SeqCst).min(OPERATIONS),
            started.elapsed(),
            failures.len()
        );
        // The failures first: a stop that fails after them must not hide them.
        for f in &failures {
            eprintln!("{f}");
        }
        for task in [wasm_task, native_task] {
            task.kill("SIGKILL")?;
            task.wait_for_exit(WAIT)?;
        }
        if let Some(first) = failures.first() {
            bail!("{} operations failed; the first:\n{first}", failures.len());
        }
        Ok(())
    })
}

fn exec(ctd: &Containerd, task: &str, n: usize, argv: &[&str], want: &str) -> Result<()> {
    let exec_id = format!("e{n}");
    let mut cmd = ctd.ctr_command();
    cmd.args(["task", "exec", "--exec-id", &exec_id, task])
        .args(argv);
    let out = run_with_timeout(&mut cmd, OP_TIMEOUT)?;
    expect(&out, want)
}

fn expect(out: &wasmpod_integration::Output, want: &str) -> Result<()> {
    out.success()?;
    ensure!(
        out.stdout.contains(want),
        "want {want:?} in the output: {out}"
    );
    Ok(())
}

/// Stacks of every process below `root` (the shim): where a hung child waits.
fn stacks_under(root: i32) -> String {
    let mut below = vec![root];
    let mut i = 0;
    while i < below.len() {
        let parent = below[i];
        below.extend(children(parent));
        i += 1;
    }
    let gdb = std::path::Path::new("/usr/bin/gdb").exists();
    let mut dump = String::new();
    for pid in below.into_iter().skip(1) {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        dump.push_str(&format!(
            "--- pid {pid} ({}) waits in {wchan}\n",
            comm.trim()
        ));
        let stack = if gdb {
            std::process::Command::new("gdb")
                .args(["-p", &pid.to_string(), "-batch", "-ex", "bt"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        } else {
            std::fs::read_to_string(format!("/proc/{pid}/stack")).unwrap_or_default()
        };
        dump.push_str(&stack);
    }
    dump
}

fn children(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| system::ppid(p) == pid)
        .collect()
}
