//! Bind mounts seen by a wasm guest (the `files` program): read-only stays read-only,
//! read-write reaches the host, and neither `..` nor symlinks lead out of a mount. What is
//! mounted in a wasm container at all, next to a native one.

use std::fs;
use std::time::Duration;

use anyhow::{ensure, Result};
use wasmpod_integration::{images, unique_name, with_containerd};

/// Mount points and filesystem types in a process's mount namespace, from its mountinfo.
fn mounts_of(pid: u32) -> Result<Vec<(String, String)>> {
    let info = fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
    Ok(info
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?;
            let typ = right.split_whitespace().next()?;
            Some((point.to_owned(), typ.to_owned()))
        })
        .collect())
}

/// A wasm container is made without the kernel filesystems its guest could never open (each a
/// superblock of the kernel's per container): no proc, sysfs, mqueue or `/dev/shm`, and
/// nothing masked under them. `/dev`, `/dev/pts`, the rootfs and the spec's own mounts are
/// there. A native container next to it gets every mount of its spec, `/proc` first.
#[test]
fn a_wasm_container_mounts_only_what_its_guest_can_use() -> Result<()> {
    with_containerd(|ctd| {
        let sleeper = images().wasm("sleeper")?;
        let busybox = images().busybox()?;
        let host = tempfile::tempdir()?;
        ctd.import(&sleeper)?.import(&busybox)?;
        let wasm = ctd
            .run(&sleeper)
            .args(["100"])
            .mount_ro(host.path(), "/data")
            .detach()?;
        let native = ctd.run(&busybox).argv(["sleep", "100"]).detach()?;
        for task in [&wasm, &native] {
            task.wait_for_status("RUNNING", Duration::from_secs(15))?;
        }

        let made = mounts_of(wasm.pid()?)?;
        let points: Vec<&str> = made.iter().map(|(p, _)| p.as_str()).collect();
        for wanted in ["/", "/dev", "/dev/pts", "/data"] {
            ensure!(points.contains(&wanted), "{wanted} missing: {made:?}");
        }
        for (point, typ) in &made {
            ensure!(
                !["proc", "sysfs", "mqueue", "cgroup", "cgroup2"].contains(&typ.as_str())
                    && !point.starts_with("/proc")
                    && !point.starts_with("/sys")
                    && point != "/dev/shm",
                "{point} ({typ}) is mounted in a wasm container: {made:?}"
            );
        }

        let native_made = mounts_of(native.pid()?)?;
        for (point, typ) in [("/proc", "proc"), ("/sys", "sysfs"), ("/dev/shm", "tmpfs")] {
            ensure!(
                native_made.iter().any(|(p, t)| p == point && t == typ),
                "the native container lacks {point} ({typ}): {native_made:?}"
            );
        }
        // The guest runs on without /proc: it answers SIGTERM as ever.
        wasm.kill("SIGTERM")?;
        let code = wasm.wait_for_exit(Duration::from_secs(15))?;
        ensure!(code == 143, "SIGTERM gave {code}, want 143");
        Ok(())
    })
}

/// Reading through a read-only mount works; writing, new or existing file, fails inside the
/// guest with exit 2 and changes nothing on the host.
#[test]
fn read_only_mount_rejects_writes() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("files")?;
        let host = tempfile::tempdir()?;
        fs::write(host.path().join("in.txt"), "from host")?;
        ctd.import(&img)?;
        let run = |args: &[&str]| {
            ctd.run(&img)
                .args(args.iter().copied())
                .mount_ro(host.path(), "/data")
                .exec()
        };

        let out = run(&["read", "/data/in.txt"])?;
        out.success()?;
        ensure!(out.stdout == "from host", "{out}");

        let out = run(&["write", "/data/new.txt", "nope"])?;
        out.expect_code(2)?;
        ensure!(out.stderr.contains("error:"), "{out}");
        ensure!(
            !host.path().join("new.txt").exists(),
            "write through a ro mount landed"
        );

        run(&["write", "/data/in.txt", "nope"])?.expect_code(2)?;
        ensure!(fs::read_to_string(host.path().join("in.txt"))? == "from host");
        Ok(())
    })
}

/// A write through a read-write mount lands on the host, and the guest lists it.
#[test]
fn read_write_mount_reaches_host() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("files")?;
        let host = tempfile::tempdir()?;
        ctd.import(&img)?;
        let out = ctd
            .run(&img)
            .args(["write", "/data/out.txt", "written by guest"])
            .mount_rw(host.path(), "/data")
            .exec()?;
        out.success()?;
        ensure!(
            fs::read_to_string(host.path().join("out.txt"))? == "written by guest",
            "{out}"
        );
        let out = ctd
            .run(&img)
            .args(["ls", "/data"])
            .mount_rw(host.path(), "/data")
            .exec()?;
        out.success()?;
        ensure!(out.stdout == "out.txt\n", "{out}");
        Ok(())
    })
}

/// Neither `..` out of a mount nor symlinks in it (absolute to a host file, relative to
/// one, or to the parent directory) reach the host file beside the mounted directory.
#[test]
fn no_escape_from_a_mount() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("files")?;
        let top = tempfile::tempdir()?;
        let secret = format!("TOP-SECRET-{}", unique_name("s"));
        let secret_path = top.path().join("secret.txt");
        fs::write(&secret_path, &secret)?;
        let mnt = top.path().join("mnt");
        fs::create_dir(&mnt)?;
        std::os::unix::fs::symlink(&secret_path, mnt.join("abs-link"))?;
        std::os::unix::fs::symlink("../secret.txt", mnt.join("rel-link"))?;
        std::os::unix::fs::symlink("..", mnt.join("up"))?;
        ctd.import(&img)?;

        let reads: [(&[&str], Option<&str>); 5] = [
            (&["read", "/data/../secret.txt"], None),
            (&["read", "../secret.txt"], Some("/data")),
            (&["read", "/data/abs-link"], None),
            (&["read", "/data/rel-link"], None),
            (&["read", "/data/up/secret.txt"], None),
        ];
        for (args, cwd) in reads {
            let mut run = ctd
                .run(&img)
                .args(args.iter().copied())
                .mount_rw(&mnt, "/data");
            if let Some(cwd) = cwd {
                run = run.cwd(cwd);
            }
            let out = run.exec()?;
            ensure!(
                !out.combined().contains(&secret),
                "escaped with {args:?}: {out}"
            );
            ensure!(out.code() != 0, "{args:?} succeeded: {out}");
        }

        for target in ["/data/../escaped.txt", "/data/up/escaped.txt"] {
            let out = ctd
                .run(&img)
                .args(["write", target, "out"])
                .mount_rw(&mnt, "/data")
                .exec()?;
            ensure!(
                !top.path().join("escaped.txt").exists(),
                "{target} reached the host: {out}"
            );
        }
        ensure!(fs::read_to_string(&secret_path)? == secret);
        Ok(())
    })
}
