//! Hostile image layers at run: tars crafted with `../` and absolute names, symlinks out of the
//! rootfs (`/data -> /`, `-> /etc`, `..` chains, absolute host paths, dangling), a file written
//! through a symlink, a hard link to a host file, a device node of the node's own disk and a
//! fifo at the entrypoint. They are imported with `ctr` (not `wasmpod image import`, which
//! refuses them) so that containerd unpacks them as root and the shim runs what it made.
//!
//! Nothing may land on or be read from the host: every entry ends up inside the rootfs (or
//! the unpack fails), a guest's paths through the links resolve inside the rootfs or fail,
//! the disk cannot be opened, a volume on a symlink lands inside the rootfs, and a fifo
//! entrypoint fails Create instead of hanging it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{ensure, Result};
use wasmpod_integration::hostile_layer::{layer_tar, oci_layout, Entry};
use wasmpod_integration::images::{Images, TestImage};
use wasmpod_integration::{unique_name, with_containerd, Containerd};

/// Writes the layout of one wasip1 image of `layers` to `dir` and imports it with ctr.
fn import(ctd: &Containerd, dir: &Path, key: &str, layers: &[Vec<u8>]) -> Result<TestImage> {
    let name = format!("wasmpod-test/{}:latest", unique_name(key));
    let tar = dir.join(format!("{key}.tar"));
    fs::write(
        &tar,
        oci_layout(&name, ("wasip1", "wasm"), "/app.wasm", layers)?,
    )?;
    let image = TestImage {
        name,
        tar,
        entrypoint: "/app.wasm".into(),
        rootfs: None,
    };
    ctd.import(&image)?;
    Ok(image)
}

/// Escaping names and links: what containerd unpacks stays in the rootfs, and the guest (the
/// `files` tool) reaches nothing of the host through any of the links, reading or writing.
#[test]
fn escaping_entries_and_links_stay_inside_the_rootfs() -> Result<()> {
    with_containerd(|ctd| {
        let files = fs::read(Images::program("files")?)?;
        let u = unique_name("esc");
        let host = |what: &str| format!("/tmp/wasmpod-{what}-{u}");
        let secret = format!("HOST-SECRET-{u}");
        fs::write(host("secret"), &secret)?;
        let (dotdot, abs, through) = (host("dotdot"), host("abs"), host("through"));
        let names = [
            format!("../../../..{dotdot}"),
            abs.clone(),
            format!("through{}", through.trim_start_matches("/tmp")),
            host("secret"),
        ];
        let layer = layer_tar(&[
            Entry::File("app.wasm", &files),
            Entry::Dir("tmp/"),
            Entry::Dir("etc/"),
            Entry::File("etc/marker", b"INSIDE"),
            Entry::File(&names[0], b"dotdot"),
            Entry::File(&names[1], b"abs"),
            Entry::Symlink("through", "/tmp"),
            Entry::File(&names[2], b"through"),
            Entry::Symlink("data", "/"),
            Entry::Symlink("etc-link", "/etc"),
            Entry::Symlink("up", "../../../../../.."),
            Entry::Symlink("host-secret", &names[3]),
            Entry::Symlink("dangling", "/no/such/file"),
        ])?;
        let dir = tempfile::tempdir()?;
        let img = import(ctd, dir.path(), "escape", &[layer])?;

        // The entries landed inside the rootfs, where the guest sees them.
        for (path, content) in [(&dotdot, "dotdot"), (&abs, "abs"), (&through, "through")] {
            let out = ctd.run(&img).args(["read", path]).exec()?;
            ensure!(out.stdout == content, "{path} in the rootfs: {out}");
        }
        // Links resolve inside the rootfs or fail; none reaches the host's files.
        let secret_paths = [
            format!("/data{}", host("secret")),
            format!("/up{}", host("secret")),
            "/host-secret".to_owned(),
        ];
        for path in &secret_paths {
            let out = ctd.run(&img).args(["read", path]).exec()?;
            ensure!(
                !out.combined().contains(&secret),
                "{path} read the host: {out}"
            );
        }
        for path in ["/etc-link/marker", "/data/etc/marker"] {
            let out = ctd.run(&img).args(["read", path]).exec()?;
            ensure!(
                out.stdout == "INSIDE" || out.code() != 0,
                "{path} resolved outside the rootfs: {out}"
            );
        }
        let out = ctd.run(&img).args(["read", "/dangling"]).exec()?;
        ensure!(out.code() == 2, "a dangling link reads: {out}");
        let written = host("written");
        for path in [format!("/data{written}"), format!("/up{written}")] {
            let out = ctd.run(&img).args(["write", &path, "x"]).exec()?;
            ensure!(
                !Path::new(&written).exists(),
                "{path} wrote on the host: {out}"
            );
        }

        for path in [dotdot, abs, through, written] {
            ensure!(!Path::new(&path).exists(), "{path} was written on the host");
        }
        ensure!(fs::read_to_string(host("secret"))? == secret);
        fs::remove_file(host("secret"))?;
        Ok(())
    })
}

/// A hard link to a host file: containerd resolves its target inside the rootfs, so the
/// unpack fails (no such file there) or the link is to a file of the rootfs; the host file
/// gains no link either way.
#[test]
fn a_hard_link_to_a_host_file_links_nothing_of_the_host() -> Result<()> {
    with_containerd(|ctd| {
        let files = fs::read(Images::program("files")?)?;
        let secret_path = format!("/tmp/wasmpod-hard-{}", unique_name("s"));
        let secret = format!("HOST-SECRET-{secret_path}");
        fs::write(&secret_path, &secret)?;
        let layer = layer_tar(&[
            Entry::File("app.wasm", &files),
            Entry::HardLink("hl", &secret_path),
        ])?;
        let dir = tempfile::tempdir()?;
        let outcome = import(ctd, dir.path(), "hardlink", &[layer])
            .and_then(|img| ctd.run(&img).args(["read", "/hl"]).exec());
        if let Ok(out) = &outcome {
            ensure!(
                !out.combined().contains(&secret),
                "read the host file: {out}"
            );
        }
        let links = fs::metadata(&secret_path)?.nlink();
        fs::remove_file(&secret_path)?;
        ensure!(links == 1, "the host file has {links} links: {outcome:?}");
        Ok(())
    })
}

/// A block device node of the node's own root disk, made by containerd's unpack: the guest
/// cannot open it (EPERM), so not a byte of the disk is read.
#[test]
fn a_device_node_of_the_host_disk_cannot_be_opened() -> Result<()> {
    with_containerd(|ctd| {
        let files = fs::read(Images::program("files")?)?;
        let dev = fs::metadata("/")?.dev();
        let (major, minor) = (libc::major(dev), libc::minor(dev));
        let layer = layer_tar(&[
            Entry::File("app.wasm", &files),
            Entry::Block("disk", major, minor),
        ])?;
        let dir = tempfile::tempdir()?;
        let img = import(ctd, dir.path(), "device", &[layer])?;
        // `exhaust` only opens, never reads: were the open allowed, nothing would be read.
        let out = ctd.run(&img).args(["exhaust", "/disk"]).exec()?;
        ensure!(out.stdout.starts_with("opened 0, then:"), "{out}");
        Ok(())
    })
}

/// A fifo at the entrypoint's path fails Create with the entrypoint named, instead of blocking
/// the shim on an open that waits for a writer; the next container of the same shim binary runs.
#[test]
fn a_fifo_entrypoint_fails_create_without_hanging() -> Result<()> {
    with_containerd(|ctd| {
        let layer = layer_tar(&[Entry::Fifo("app.wasm")])?;
        let dir = tempfile::tempdir()?;
        let img = import(ctd, dir.path(), "fifo", &[layer])?;
        let out = ctd.run(&img).exec()?;
        ensure!(out.code() != 0, "a fifo ran: {out}");
        let says = "entrypoint /app.wasm not found in the container rootfs: it is a fifo";
        ensure!(out.combined().contains(says), "{out}");
        let hello = wasmpod_integration::images().wasm("hello")?;
        ctd.import(&hello)?.run(&hello).exec()?.success()?;
        Ok(())
    })
}

/// A volume whose destination is a symlink of the image (`/data -> /etc`, `/up -> ../..`):
/// the runtime mounts it at the link's target inside the rootfs, the guest's preopen of the
/// destination reaches the volume, and nothing is written to the node's `/etc`.
#[test]
fn a_volume_on_a_symlink_destination_stays_in_the_rootfs() -> Result<()> {
    with_containerd(|ctd| {
        let files = fs::read(Images::program("files")?)?;
        let layer = layer_tar(&[
            Entry::File("app.wasm", &files),
            Entry::Dir("etc/"),
            Entry::Symlink("data", "/etc"),
            Entry::Symlink("up", "../../../../etc"),
        ])?;
        let dir = tempfile::tempdir()?;
        let img = import(ctd, dir.path(), "volume", &[layer])?;
        for link in ["/data", "/up"] {
            let volume = tempfile::tempdir()?;
            let name = unique_name("wasmpod-volume");
            let target = format!("{link}/{name}");
            let out = ctd
                .run(&img)
                .args(["write", &target, "x"])
                .mount_rw(volume.path(), link)
                .exec()?;
            let on_host = Path::new("/etc").join(&name);
            ensure!(
                !on_host.exists(),
                "{target} wrote {}: {out}",
                on_host.display()
            );
            ensure!(
                out.code() == 0 && volume.path().join(&name).is_file(),
                "{target} did not reach the volume: {out}"
            );
        }
        Ok(())
    })
}
