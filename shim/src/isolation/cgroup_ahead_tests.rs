use super::*;
use crate::isolation::load_spec;
use oci_spec::runtime::{LinuxBuilder, SpecBuilder};

fn bundle_naming(cgroups_path: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut linux = LinuxBuilder::default().build().unwrap();
    linux.set_cgroups_path(cgroups_path.map(PathBuf::from));
    let spec = SpecBuilder::default().linux(linux).build().unwrap();
    spec.save(dir.path().join("config.json")).unwrap();
    dir
}

#[test]
fn only_a_plain_named_path_is_made_ahead() {
    let named = |path| named_path(&load_spec(bundle_naming(path).path()).unwrap());
    assert_eq!(named(Some("/default/c1")), Some("/default/c1".into()));
    assert_eq!(named(Some("relative/c1")), Some("/relative/c1".into()));
    assert_eq!(
        named(Some("system.slice:docker:abc")),
        Some("/system.slice/docker-abc.scope".into())
    );
    // No path: libcontainer's default needs the container's id, which Create brings.
    assert_eq!(named(None), None);
    assert_eq!(named(Some("  ")), None);
    assert_eq!(named(Some("/default/../../escape")), None);
    assert_eq!(
        named(Some("/")),
        None,
        "a hierarchy's root is no container's"
    );
}

#[test]
fn making_records_only_what_it_made_and_removal_leaves_the_rest() {
    let root = tempfile::tempdir().unwrap();
    let (memory, pids) = (root.path().join("memory"), root.path().join("pids"));
    std::fs::create_dir_all(memory.join("default")).unwrap();
    std::fs::create_dir(&pids).unwrap();
    let gone = root.path().join("not-mounted");

    let made = make_all(
        &[memory.clone(), pids.clone(), gone.clone()],
        Path::new("/default/c1"),
    );
    let want: Vec<PathBuf> = vec![
        memory.join("default/c1"),
        pids.join("default"),
        pids.join("default/c1"),
    ];
    assert_eq!(made, want);
    assert!(!gone.exists());

    // One still in use (here: not empty) is left, and the others go.
    std::fs::write(pids.join("default/c1/cgroup.procs"), "42").unwrap();
    remove_made(&made);
    assert!(!memory.join("default/c1").exists());
    assert!(memory.join("default").exists(), "it was there before");
    assert!(pids.join("default/c1").exists());
}

#[test]
fn a_made_cgroup_is_removed_unless_its_container_keeps_it() {
    let root = tempfile::tempdir().unwrap();
    let mount = root.path().join("memory");
    std::fs::create_dir(&mount).unwrap();
    let making = |path: &'static str| {
        let mount = mount.clone();
        MadeCgroup {
            making: Some(std::thread::spawn(move || {
                make_all(&[mount], Path::new(path))
            })),
            dirs: Vec::new(),
        }
    };
    drop(making("/ns/failed"));
    assert!(!mount.join("ns").exists(), "a failed Create leaves nothing");

    let mut kept = making("/ns/built");
    kept.wait();
    assert!(mount.join("ns/built").is_dir(), "made before the build");
    kept.keep();
    assert!(mount.join("ns/built").is_dir(), "the container's now");
}

#[test]
fn the_offer_is_taken_once_and_only_for_its_own_bundle() {
    // A real cgroup when run as root on a cgroup v1 node (CI): its removal is checked too.
    let name = format!("/wasmpod-ahead-test-{}", std::process::id());
    let bundle = bundle_naming(Some(&name));
    let made_anywhere = || {
        v1_mount_points()
            .iter()
            .any(|m| m.join(name.trim_start_matches('/')).exists())
    };

    let other = CgroupAhead::start(FirstSpec::new(bundle.path().to_path_buf()));
    assert!(other.take(Path::new("/elsewhere")).is_none());
    assert!(!made_anywhere(), "made for another bundle, removed");
    assert!(other.take(bundle.path()).is_none(), "the offer ended");

    let own = CgroupAhead::start(FirstSpec::new(bundle.path().to_path_buf()));
    let mut made = own.take(bundle.path()).expect("taken for its bundle");
    made.wait();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 && Layout::detect() == Layout::V1 {
        assert!(made_anywhere(), "root's shim made no cgroup");
    }
    drop(made);
    assert!(!made_anywhere(), "a Create that failed leaves no cgroup");
}

#[test]
fn what_a_dead_shim_left_is_removed_while_empty() {
    let name = format!("/wasmpod-left-test-{}", std::process::id());
    let bundle = bundle_naming(Some(&name));
    let spec = load_spec(bundle.path()).unwrap();
    let made = make_all(&v1_mount_points(), Path::new(&name));
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || Layout::detect() != Layout::V1 || made.is_empty() {
        remove_made(&made);
        return; // Only root on a cgroup v1 node (CI) makes real cgroups.
    }
    remove_left(&spec);
    for dir in &made {
        assert!(!dir.exists(), "{} left", dir.display());
    }
}
