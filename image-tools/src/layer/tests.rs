//! Layer tests: metadata normalisation, symlinks, exec bits, conflicts and
//! byte-for-byte reproducibility.

use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::time::{Duration, SystemTime};

use flate2::read::GzDecoder;

use super::*;

#[derive(Debug, PartialEq)]
struct Seen {
    path: String,
    kind: EntryType,
    mode: u32,
    link: Option<String>,
    content: Vec<u8>,
}

fn entries(layer: &Layer, mtime: u64) -> Vec<Seen> {
    let mut tar = Vec::new();
    GzDecoder::new(layer.blob.as_slice())
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(
        sha256_hex(&tar),
        layer.diff_id_hex,
        "diff_id is the uncompressed sha256"
    );
    assert_eq!(sha256_hex(&layer.blob), layer.digest_hex);
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut seen = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let h = entry.header().clone();
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
        assert_eq!(h.mtime().unwrap(), mtime);
        assert_eq!(h.username().unwrap(), Some(""));
        assert_eq!(h.groupname().unwrap(), Some(""));
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        seen.push(Seen {
            path: entry.path().unwrap().display().to_string(),
            kind: h.entry_type(),
            mode: h.mode().unwrap(),
            link: entry.link_name().unwrap().map(|l| l.display().to_string()),
            content,
        });
    }
    seen
}

/// rootfs/bin/tool (0755), rootfs/etc/conf (0640), rootfs/bin/alias -> tool,
/// rootfs/abs -> /etc/conf
fn sample_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(
        root.join("bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(root.join("etc/conf"), b"x=1\n").unwrap();
    std::fs::set_permissions(
        root.join("etc/conf"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    symlink("tool", root.join("bin/alias")).unwrap();
    symlink("/etc/conf", root.join("abs")).unwrap();
    dir
}

fn mapping(spec: &str) -> DirMapping {
    spec.parse().unwrap()
}

#[test]
fn keeps_symlinks_and_exec_bits_and_normalises_the_rest() {
    let dir = sample_tree();
    let mut tree = LayerTree::new();
    tree.add_mapping(&mapping(&format!(
        "{}:/opt/app",
        dir.path().join("rootfs").display()
    )))
    .unwrap();
    let layer = tree.write(1234).unwrap();
    let seen = entries(&layer, 1234);
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "opt/",
            "opt/app/",
            "opt/app/abs",
            "opt/app/bin/",
            "opt/app/bin/alias",
            "opt/app/bin/tool",
            "opt/app/etc/",
            "opt/app/etc/conf"
        ]
    );
    let by_path = |p: &str| seen.iter().find(|s| s.path == p).unwrap();
    assert_eq!(by_path("opt/").mode, 0o755, "implicit parent");
    let tool = by_path("opt/app/bin/tool");
    assert_eq!((tool.kind, tool.mode & 0o777), (EntryType::Regular, 0o755));
    assert_eq!(tool.content, b"#!/bin/sh\necho hi\n");
    assert_eq!(by_path("opt/app/etc/conf").mode & 0o777, 0o640);
    let alias = by_path("opt/app/bin/alias");
    assert_eq!(
        (alias.kind, alias.link.as_deref()),
        (EntryType::Symlink, Some("tool"))
    );
    assert_eq!(by_path("opt/app/abs").link.as_deref(), Some("/etc/conf"));
}

#[test]
fn single_files_go_to_the_guest_path_or_inside_it() {
    let dir = sample_tree();
    let conf = dir.path().join("rootfs/etc/conf");
    let mut tree = LayerTree::new();
    tree.add_mapping(&mapping(&format!("{}:/cfg/app.conf", conf.display())))
        .unwrap();
    tree.add_mapping(&mapping(&format!("{}:/etc/", conf.display())))
        .unwrap();
    let seen = entries(&tree.write(0).unwrap(), 0);
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["cfg/", "cfg/app.conf", "etc/", "etc/conf"]);
}

#[test]
fn same_inputs_give_same_bytes_whatever_the_host_mtimes() {
    let dir = sample_tree();
    let spec = mapping(&format!("{}:/", dir.path().join("rootfs").display()));
    let build = || {
        let mut tree = LayerTree::new();
        tree.add_mapping(&spec).unwrap();
        tree.add_bytes("app.wasm", b"\0asm".to_vec(), 0o755)
            .unwrap();
        tree.write(0).unwrap()
    };
    let first = build();
    let later = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(dir.path().join("rootfs/etc/conf"))
        .unwrap()
        .set_modified(later)
        .unwrap();
    let second = build();
    assert_eq!(first.blob, second.blob);
    assert_eq!(first.digest_hex, second.digest_hex);
    // gzip header: no FNAME flag, mtime field zero.
    assert_eq!(first.blob[3], 0, "gzip flags");
    assert_eq!(&first.blob[4..8], &[0, 0, 0, 0], "gzip mtime");
}

#[test]
fn conflicts_and_missing_inputs_are_reported() {
    let dir = sample_tree();
    let conf = dir.path().join("rootfs/etc/conf");
    let mut tree = LayerTree::new();
    tree.add_mapping(&mapping(&format!("{}:/x", conf.display())))
        .unwrap();
    let err = tree
        .add_bytes("x/y", Vec::new(), 0o644)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("conflict at /x") && err.contains("directory"),
        "{err}"
    );
    let err = tree
        .add_mapping(&mapping(&format!("{}:/x", dir.path().display())))
        .unwrap_err()
        .to_string();
    assert!(err.contains("conflict at /x"), "{err}");

    let missing = dir.path().join("nope");
    let err = tree
        .add_mapping(&mapping(&format!("{}:/n", missing.display())))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot read") && err.contains("nope"), "{err}");
}

#[test]
fn later_files_replace_earlier_ones() {
    let mut tree = LayerTree::new();
    tree.add_bytes("a", b"old".to_vec(), 0o644).unwrap();
    tree.add_bytes("a", b"new".to_vec(), 0o600).unwrap();
    let seen = entries(&tree.write(0).unwrap(), 0);
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].content.as_slice(), seen[0].mode),
        (&b"new"[..], 0o600)
    );
}

/// What `image build` packs from a host tree that reaches out of itself: symlinks (absolute,
/// dangling, `..` out of the tree) are stored as links and never followed, so no file outside
/// the tree gets in; fifos, sockets and device nodes are refused by path; a later `--dir` that
/// would write through an earlier one's symlink is a conflict, not a write to the link's target.
#[test]
fn inputs_that_reach_out_are_stored_as_links_or_refused() {
    let top = tempfile::tempdir().unwrap();
    std::fs::write(top.path().join("secret"), b"SECRET").unwrap();
    let root = top.path().join("root");
    std::fs::create_dir(&root).unwrap();
    symlink("/etc", root.join("data")).unwrap();
    symlink("../secret", root.join("up")).unwrap();
    symlink(top.path().join("secret"), root.join("abs")).unwrap();
    symlink("/no/such/file", root.join("dangling")).unwrap();
    // A hard link to a file outside the tree is just that file's bytes: the user put it there.
    std::fs::hard_link(top.path().join("secret"), root.join("hard")).unwrap();
    let mut tree = LayerTree::new();
    tree.add_mapping(&mapping(&format!("{}:/", root.display())))
        .unwrap();
    let seen = entries(&tree.write(0).unwrap(), 0);
    let links: Vec<(&str, Option<&str>)> = seen
        .iter()
        .filter(|s| s.kind == EntryType::Symlink)
        .map(|s| (s.path.as_str(), s.link.as_deref()))
        .collect();
    let abs = top.path().join("secret").display().to_string();
    assert_eq!(
        links,
        [
            ("abs", Some(abs.as_str())),
            ("dangling", Some("/no/such/file")),
            ("data", Some("/etc")),
            ("up", Some("../secret")),
        ]
    );
    let with_secret: Vec<&str> = seen
        .iter()
        .filter(|s| s.content == b"SECRET")
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(with_secret, ["hard"]);

    let err = tree
        .add_mapping(&mapping(&format!(
            "{}:/data/etc/",
            top.path().join("secret").display()
        )))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("conflict at /data") && err.contains("it is a symlink"),
        "{err}"
    );

    let odd = top.path().join("odd");
    for (name, make) in [
        ("fifo", vec!["mkfifo", "F"]),
        ("device", vec!["mknod", "F", "c", "1", "3"]),
    ] {
        std::fs::create_dir_all(&odd).unwrap();
        let file = odd.join(name);
        let made = std::process::Command::new(make[0])
            .args(make[1..].iter().map(|a| {
                if *a == "F" {
                    file.as_os_str()
                } else {
                    a.as_ref()
                }
            }))
            .status()
            .unwrap();
        if !made.success() {
            assert_eq!(name, "device", "mkfifo failed");
            continue; // mknod needs CAP_MKNOD
        }
        let err = LayerTree::new()
            .add_mapping(&mapping(&format!("{}:/", odd.display())))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&file.display().to_string()) && err.contains("cannot go into an image"),
            "{name}: {err}"
        );
        std::fs::remove_dir_all(&odd).unwrap();
    }
    let socket = odd.join("sock");
    std::fs::create_dir_all(&odd).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let err = LayerTree::new()
        .add_mapping(&mapping(&format!("{}:/", odd.display())))
        .unwrap_err()
        .to_string();
    assert!(err.contains("sock is not a regular file"), "{err}");
}
