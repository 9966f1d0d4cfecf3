//! Layer check tests: each hostile entry is refused by name, legitimate links pass, and the
//! symlink rule follows the layers (a later layer may replace or white out the link).

use wasmpod_integration::hostile_layer::{layer_tar, oci_layout, Entry};

use super::*;
use crate::archive::{read_bytes, Loaded};

fn refused(entries: &[Entry<'_>]) -> Option<(String, String)> {
    match check_tar(layer_tar(entries).unwrap().as_slice(), &mut Escaping::new()) {
        Ok(()) => None,
        Err(Found::Unsafe { entry, reason }) => Some((entry, reason)),
        Err(Found::Io(e)) => panic!("not a tar: {e}"),
    }
}

#[test]
fn escaping_names_links_devices_and_fifos_are_refused_by_name() {
    let cases: [(Entry<'_>, &str); 7] = [
        (Entry::File("../evil", b"x"), "leaves the rootfs"),
        (Entry::File("a/../../evil", b"x"), "leaves the rootfs"),
        (Entry::File("/etc/evil", b"x"), "leaves the rootfs"),
        (
            Entry::HardLink("a/passwd", "../../etc/passwd"),
            "hard link out",
        ),
        (Entry::HardLink("a/shadow", "/etc/shadow"), "hard link out"),
        (Entry::Char("a/mem", 1, 1), "device node"),
        (Entry::Fifo("a/pipe"), "is a fifo"),
    ];
    for (entry, why) in cases {
        let name = match &entry {
            Entry::File(n, _) | Entry::HardLink(n, _) | Entry::Char(n, ..) | Entry::Fifo(n) => *n,
            _ => unreachable!(),
        };
        let (seen, reason) = refused(&[Entry::Dir("a/"), entry.clone()])
            .unwrap_or_else(|| panic!("{entry:?} passed"));
        assert_eq!(seen, name);
        assert!(reason.contains(why), "{entry:?}: {reason}");
    }
}

#[test]
fn a_file_through_a_symlink_out_of_the_rootfs_is_refused_and_plain_links_pass() {
    let through = [
        Entry::Symlink("data", "../../etc"),
        Entry::File("data/passwd", b"x"),
    ];
    let (entry, reason) = refused(&through).unwrap();
    assert_eq!(entry, "data/passwd");
    assert!(reason.contains("through the symlink \"data\""), "{reason}");
    let nested = [Entry::Symlink("./up", "../../.."), Entry::Dir("./up/x/")];
    assert!(refused(&nested).is_some());
    let deep = [
        Entry::Symlink("a/b/up", "../../../x"),
        Entry::File("a/b/up/f", b"x"),
    ];
    assert!(refused(&deep).is_some());

    // Merged-/usr images write through links that stay inside the rootfs.
    let merged_usr = [
        Entry::Symlink("lib", "usr/lib"),
        Entry::Symlink("bin", "/usr/bin"),
        Entry::Symlink("usr/lib/up", "../../etc"),
        Entry::File("lib/libc.so", b"x"),
        Entry::File("bin/sh", b"x"),
        Entry::File("usr/lib/up/hosts", b"x"),
    ];
    assert_eq!(refused(&merged_usr), None);

    // Links anywhere are fine on their own: they resolve inside the rootfs at run.
    let fine = [
        Entry::Dir("./"),
        Entry::Symlink("root", "/"),
        Entry::Symlink("etc-link", "/etc"),
        Entry::Symlink("dangling", "/no/such/file"),
        Entry::Symlink("up", "../../../.."),
        Entry::File("app.wasm", b"\0asm"),
        Entry::HardLink("copy.wasm", "./app.wasm"),
        Entry::File("rootish/file", b"x"),
    ];
    assert_eq!(refused(&fine), None);
}

#[test]
fn the_symlink_rule_follows_the_layers_and_whiteouts() {
    let link = layer_tar(&[Entry::Symlink("data", "../..")]).unwrap();
    let through = layer_tar(&[Entry::File("data/x", b"x")]).unwrap();
    let gone = layer_tar(&[Entry::File(".wh.data", b"")]).unwrap();
    let check = |layers: &[&Vec<u8>]| {
        let mut symlinks = Escaping::new();
        layers
            .iter()
            .try_for_each(|l| check_tar(l.as_slice(), &mut symlinks))
            .is_ok()
    };
    assert!(!check(&[&link, &through]), "a lower layer's link counts");
    assert!(
        check(&[&link, &gone, &through]),
        "a whiteout removes the link"
    );
}

/// Through the image, as `import` sees it: the error names the archive, the layer and the
/// entry.
#[test]
fn an_image_with_a_device_node_is_refused_naming_archive_layer_and_entry() {
    let bad = layer_tar(&[
        Entry::File("app.wasm", b"\0asm"),
        Entry::Char("dev/kmsg", 1, 11),
    ])
    .unwrap();
    let layout = oci_layout("x:1", ("wasip1", "wasm"), "/app.wasm", &[bad]).unwrap();
    let path = Path::new("hostile.tar");
    let Loaded::Image(image) = read_bytes(path, layout).unwrap() else {
        panic!("not an image")
    };
    let err = check_image(&image, path).unwrap_err().to_string();
    assert!(err.starts_with("hostile.tar: layer sha256:"), "{err}");
    assert!(
        err.contains("entry \"dev/kmsg\" is a device node; refusing the image"),
        "{err}"
    );
}

/// wasmpod's own images (gzip'd layers, symlinks of every kind from a `--dir`) pass.
#[test]
fn a_built_image_with_links_passes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::os::unix::fs::symlink("/", root.join("data")).unwrap();
    std::os::unix::fs::symlink("../../..", root.join("etc/up")).unwrap();
    std::os::unix::fs::symlink("/missing", root.join("dangling")).unwrap();
    let wasm = dir.path().join("app.wasm");
    std::fs::write(&wasm, wat::parse_str(crate::testdata::MODULE_WAT).unwrap()).unwrap();
    let mut spec = crate::ImageSpec::new(crate::Reference::parse("ok:1").unwrap());
    spec.wasm = Some(wasm);
    spec.dirs
        .push(format!("{}:/", root.display()).parse().unwrap());
    let image = crate::assemble(&spec).unwrap().image;
    assert!(image.layers[0].bytes.starts_with(&[0x1f, 0x8b]));
    check_image(&image, Path::new("ok.tar")).unwrap();
}
