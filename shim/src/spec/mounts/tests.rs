//! Tests of the mount to preopen mapping; pure, no I/O.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{get_default_mounts, Mount, MountBuilder};

use super::*;

fn mount(destination: &str, typ: &str, options: &[&str]) -> Mount {
    let mut builder = MountBuilder::default()
        .destination(destination)
        .source("/src");
    if !typ.is_empty() {
        builder = builder.typ(typ);
    }
    if !options.is_empty() {
        builder = builder.options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>());
    }
    builder.build().expect("valid test mount")
}

fn bind(destination: &str, options: &[&str]) -> Mount {
    mount(destination, "bind", options)
}

fn preopen(host: &str, guest: &str, read_only: bool) -> Preopen {
    Preopen {
        host: PathBuf::from(host),
        guest: guest.to_owned(),
        read_only,
    }
}

/// Preopens with no file mounts, rootfs at `/rootfs`, writable.
fn map(mounts: &[Mount]) -> Result<Vec<Preopen>, SpecError> {
    preopens(mounts, Path::new("/rootfs"), false, |_| false)
}

fn guests(preopens: &[Preopen]) -> Vec<&str> {
    preopens.iter().map(|p| p.guest.as_str()).collect()
}

#[test]
fn no_mounts_gives_only_the_rootfs() {
    assert_eq!(map(&[]), Ok(vec![preopen("/rootfs", "/", false)]));
}

#[test]
fn root_read_only_applies_to_rootfs_only() {
    let mapped = preopens(&[bind("/data", &[])], Path::new("/r"), true, |_| false);
    assert_eq!(
        mapped,
        Ok(vec![
            preopen("/r", "/", true),
            preopen("/r/data", "/data", false)
        ])
    );
}

#[test]
fn default_spec_mounts_are_all_system_mounts() {
    assert_eq!(
        map(&get_default_mounts()),
        Ok(vec![preopen("/rootfs", "/", false)])
    );
}

#[test]
fn rw_and_ro_binds() {
    let mapped = map(&[
        bind("/data", &["rbind", "rw"]),
        bind("/config", &["rbind", "ro"]),
    ]);
    assert_eq!(
        mapped,
        Ok(vec![
            preopen("/rootfs", "/", false),
            preopen("/rootfs/data", "/data", false),
            preopen("/rootfs/config", "/config", true),
        ])
    );
}

#[test]
fn bind_is_recognised_by_option_without_type() {
    let mapped = map(&[
        mount("/a", "", &["rbind"]),
        mount("/b", "none", &["bind", "ro"]),
    ]);
    assert_eq!(guests(&mapped.expect("valid")), ["/", "/a", "/b"]);
}

#[test]
fn last_of_ro_and_rw_wins() {
    assert!(!is_read_only(&["ro".into(), "rw".into()]));
    assert!(is_read_only(&["rw".into(), "ro".into()]));
    assert!(is_read_only(&["rbind".into(), "rro".into()]));
    assert!(!is_read_only(&["rbind".into(), "nosuid".into()]));
    assert!(!is_read_only(&[]));
}

#[test]
fn user_tmpfs_is_preopened_writable() {
    let mapped = map(&[mount("/tmp", "tmpfs", &["nosuid", "mode=1777"])]);
    assert_eq!(
        mapped,
        Ok(vec![
            preopen("/rootfs", "/", false),
            preopen("/rootfs/tmp", "/tmp", false)
        ])
    );
}

#[test]
fn system_destinations_are_skipped_whatever_the_type() {
    let mapped = map(&[
        mount("/dev/shm", "tmpfs", &[]),
        bind("/dev/termination-log", &["rbind"]),
        bind("/sys/fs/cgroup", &["rbind", "ro"]),
        mount("/proc/", "tmpfs", &[]),
        bind("//dev//x", &[]),
    ]);
    assert_eq!(mapped, Ok(vec![preopen("/rootfs", "/", false)]));
}

#[test]
fn system_types_are_skipped_at_any_destination() {
    let mounts: Vec<Mount> = ["proc", "sysfs", "cgroup", "cgroup2", "mqueue", "devpts"]
        .iter()
        .map(|typ| mount(&format!("/data/{typ}"), typ, &["rbind"]))
        .collect();
    assert_eq!(map(&mounts), Ok(vec![preopen("/rootfs", "/", false)]));
}

#[test]
fn other_filesystem_types_are_not_preopened() {
    let mapped = map(&[mount("/nfs", "nfs", &[]), mount("/ovl", "overlay", &[])]);
    assert_eq!(guests(&mapped.expect("valid")), ["/"]);
}

#[test]
fn names_like_system_ones_are_not_system() {
    let mapped = map(&[
        bind("/devices", &[]),
        bind("/process", &[]),
        bind("/system", &[]),
    ]);
    assert_eq!(
        guests(&mapped.expect("valid")),
        ["/", "/devices", "/process", "/system"]
    );
}

#[test]
fn later_mount_at_same_destination_shadows_earlier() {
    let mapped = map(&[
        bind("/data", &["ro"]),
        bind("/other", &[]),
        bind("/data/", &["rw"]),
    ]);
    assert_eq!(
        mapped,
        Ok(vec![
            preopen("/rootfs", "/", false),
            preopen("/rootfs/other", "/other", false),
            preopen("/rootfs/data", "/data", false),
        ])
    );
}

#[test]
fn later_mount_at_parent_shadows_mounts_below_it() {
    let mapped = map(&[
        bind("/data/sub", &[]),
        bind("/database", &[]),
        bind("/data", &["ro"]),
    ]);
    assert_eq!(
        mapped,
        Ok(vec![
            preopen("/rootfs", "/", false),
            preopen("/rootfs/database", "/database", false),
            preopen("/rootfs/data", "/data", true),
        ])
    );
}

#[test]
fn earlier_parent_is_kept_under_later_child() {
    let mapped = map(&[bind("/data", &["ro"]), bind("/data/cache", &[])]);
    assert_eq!(
        guests(&mapped.expect("valid")),
        ["/", "/data", "/data/cache"]
    );
}

#[test]
fn skipped_mount_still_shadows_what_it_covers() {
    let mapped = map(&[bind("/data", &[]), mount("/data", "overlay", &[])]);
    assert_eq!(guests(&mapped.expect("valid")), ["/"]);
}

#[test]
fn file_binds_are_not_preopened() {
    let is_file = |host: &Path| host == Path::new("/rootfs/etc/hosts");
    let mapped = preopens(
        &[bind("/etc/hosts", &["ro"]), bind("/etc/app", &["ro"])],
        Path::new("/rootfs"),
        false,
        is_file,
    );
    assert_eq!(guests(&mapped.expect("valid")), ["/", "/etc/app"]);
}

#[test]
fn inside_the_container_host_equals_guest() {
    let mapped = preopens(&[bind("/data", &[])], Path::new("/"), true, |_| false);
    assert_eq!(
        mapped,
        Ok(vec![
            preopen("/", "/", true),
            preopen("/data", "/data", false)
        ])
    );
}

#[test]
fn destination_is_normalised() {
    let mapped = map(&[bind("/a/./b//", &[])]);
    assert_eq!(
        mapped,
        Ok(vec![
            preopen("/rootfs", "/", false),
            preopen("/rootfs/a/b", "/a/b", false)
        ])
    );
}

#[test]
fn relative_destination_is_rejected() {
    let err = map(&[bind("x", &[])]);
    assert_eq!(
        err,
        Err(SpecError::MountDestinationNotAbsolute {
            destination: "x".into()
        })
    );
    let msg = SpecError::MountDestinationNotAbsolute {
        destination: "x".into(),
    }
    .to_string();
    assert_eq!(msg, "mount destination \"x\" is not absolute");
}

#[test]
fn relative_destination_is_rejected_even_for_system_mounts() {
    let err = map(&[mount("proc", "proc", &[])]);
    assert_eq!(
        err,
        Err(SpecError::MountDestinationNotAbsolute {
            destination: "proc".into()
        })
    );
}

#[test]
fn parent_component_in_destination_is_rejected() {
    let err = map(&[bind("/data/../etc", &[])]);
    assert_eq!(
        err,
        Err(SpecError::MountDestinationHasParent {
            destination: "/data/../etc".into()
        })
    );
}

#[test]
fn bind_over_root_replaces_the_rootfs_preopen() {
    let mapped = map(&[bind("/data", &[]), bind("/", &["ro"])]);
    assert_eq!(mapped, Ok(vec![preopen("/rootfs", "/", true)]));
}

fn destinations(mounts: &[Mount]) -> Vec<String> {
    mounts
        .iter()
        .map(|m| m.destination().display().to_string())
        .collect()
}

#[test]
fn a_guest_keeps_of_the_default_mounts_only_dev_and_its_terminals() {
    let made = made_for_guest(&get_default_mounts());
    assert_eq!(destinations(&made), ["/dev", "/dev/pts"]);
}

#[test]
fn a_guest_keeps_binds_and_its_own_tmpfs_but_nothing_of_proc_and_sys() {
    let mounts = [
        mount("/proc", "proc", &[]),
        bind("/proc/meminfo", &["ro"]),
        mount("/sys/fs/cgroup", "cgroup", &["ro"]),
        mount("/sys/firmware", "tmpfs", &["ro"]),
        mount("/dev/", "tmpfs", &[]),
        mount("/dev/shm", "tmpfs", &[]),
        bind("/dev/shm", &["rbind"]),
        bind("/dev/termination-log", &[]),
        mount("/queue", "mqueue", &[]),
        mount("/run", "tmpfs", &[]),
        bind("/etc/hosts", &["ro"]),
        mount("/data", "", &["rbind", "rw"]),
        mount("/processes", "tmpfs", &[]),
    ];
    let made = made_for_guest(&mounts);
    assert_eq!(
        destinations(&made),
        [
            "/dev/",
            "/dev/shm",
            "/dev/termination-log",
            "/run",
            "/etc/hosts",
            "/data",
            "/processes"
        ]
    );
    assert_eq!(made[1].typ().as_deref(), Some("bind"));
}

#[test]
fn every_mount_a_guest_keeps_is_still_made_in_spec_order_and_unchanged() {
    let mounts = [bind("/b", &["ro"]), bind("/a", &[])];
    assert_eq!(made_for_guest(&mounts), mounts.to_vec());
}

#[test]
fn a_guest_masks_and_protects_nothing_under_the_proc_and_sys_it_does_not_have() {
    let paths: Vec<String> = [
        "/proc/acpi",
        "/proc/sys",
        "/sys/firmware",
        "/processes/keys",
        "/system",
        "/dev/secret",
        "/run/lock",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    assert_eq!(
        paths_left_for_guest(&paths),
        ["/processes/keys", "/system", "/dev/secret", "/run/lock"]
    );
}
