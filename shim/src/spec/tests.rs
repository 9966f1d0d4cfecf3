//! End-to-end tests of [`plan_from_spec`] on specs built with the `oci_spec` builders; pure.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxResourcesBuilder, Mount, MountBuilder, Process, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder,
};

use super::*;
use crate::plan::{GuestLimits, NetworkAccess, Preopen};

const ROOTFS: &str = "/run/bundle/rootfs";

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn process(args: &[&str], env: &[&str], cwd: &str) -> Process {
    ProcessBuilder::default()
        .args(strings(args))
        .env(strings(env))
        .cwd(cwd)
        .build()
        .expect("valid process")
}

/// A spec with only `process`. The builders fill unset fields from `Default`, which for
/// `Spec` means default mounts, namespaces and root, so those are cleared explicitly.
fn spec_with(process: Process) -> Spec {
    let mut spec = SpecBuilder::default()
        .process(process)
        .build()
        .expect("valid spec");
    spec.set_root(None).set_mounts(None).set_linux(None);
    spec
}

/// An `is_file` probe knowing these host paths only.
fn files(known: &'static [&'static str]) -> impl Fn(&Path) -> bool {
    move |path| known.iter().any(|k| Path::new(k) == path)
}

fn plan(spec: &Spec, known: &'static [&'static str]) -> Result<WasiPlan, SpecError> {
    plan_from_spec(spec, Path::new(ROOTFS), files(known))
}

fn bind(destination: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source("/host/vol")
        .options(strings(options))
        .build()
        .expect("valid mount")
}

#[test]
fn default_spec_maps_completely() {
    let plan = plan(&Spec::default(), &["/run/bundle/rootfs/bin/sh"]);
    assert_eq!(
        plan,
        Ok(WasiPlan {
            argv: strings(&["sh"]),
            env: vec![
                ("PATH".into(), DEFAULT_PATH.into()),
                ("TERM".into(), "xterm".into()),
            ],
            cwd: PathBuf::from("/"),
            preopens: vec![Preopen {
                host: ROOTFS.into(),
                guest: "/".into(),
                read_only: true
            }],
            entrypoint: Entrypoint {
                path: "/bin/sh".into(),
                export: None
            },
            network: NetworkAccess::ContainerNamespace,
            limits: GuestLimits::default(),
            http: Default::default(),
        })
    );
}

#[test]
fn spec_without_process_is_rejected() {
    let mut spec = Spec::default();
    spec.set_process(None);
    assert_eq!(plan(&spec, &[]), Err(SpecError::MissingProcess));
    assert_eq!(SpecError::MissingProcess.to_string(), "spec has no process");
}

#[test]
fn empty_or_missing_args_are_rejected() {
    assert_eq!(
        plan(&spec_with(process(&[], &[], "/")), &[]),
        Err(SpecError::EmptyArgs)
    );
    let no_args = ProcessBuilder::default()
        .cwd("/")
        .build()
        .expect("valid process");
    let mut spec = spec_with(no_args);
    spec.process_mut()
        .as_mut()
        .expect("has process")
        .set_args(None);
    assert_eq!(plan(&spec, &[]), Err(SpecError::EmptyArgs));
    assert_eq!(
        SpecError::EmptyArgs.to_string(),
        "process.args is empty: nothing to run"
    );
}

#[test]
fn argv_is_verbatim_with_export_stripped_from_argv0() {
    let args = ["/app.wasm#serve", "--port", "8080", "a#b", ""];
    let plan = plan(
        &spec_with(process(&args, &[], "/")),
        &["/run/bundle/rootfs/app.wasm"],
    );
    let plan = plan.expect("valid plan");
    assert_eq!(
        plan.argv,
        strings(&["/app.wasm", "--port", "8080", "a#b", ""])
    );
    assert_eq!(
        plan.entrypoint,
        Entrypoint {
            path: "/app.wasm".into(),
            export: Some("serve".into())
        }
    );
}

#[test]
fn argv0_keeps_the_name_as_written_not_the_resolved_path() {
    let spec = spec_with(process(&["app.wasm", "x"], &["PATH=/opt/bin"], "/"));
    let plan = plan(&spec, &["/run/bundle/rootfs/opt/bin/app.wasm"]).expect("valid plan");
    assert_eq!(plan.argv, strings(&["app.wasm", "x"]));
    assert_eq!(plan.entrypoint.path, PathBuf::from("/opt/bin/app.wasm"));
}

#[test]
fn entrypoint_is_probed_under_the_rootfs_with_the_spec_path() {
    let spec = spec_with(process(&["app.wasm"], &["PATH=/opt/bin:/usr/bin"], "/"));
    // `/usr/bin/app.wasm` exists only on the "node": it must not be found.
    let plan = plan(
        &spec,
        &["/usr/bin/app.wasm", "/run/bundle/rootfs/usr/bin/app.wasm"],
    );
    assert_eq!(
        plan.map(|p| p.entrypoint.path),
        Ok(PathBuf::from("/usr/bin/app.wasm"))
    );
    let missing = plan_from_spec(&spec, Path::new(ROOTFS), files(&["/opt/bin/app.wasm"]));
    assert_eq!(
        missing.map_err(|e| e.to_string()),
        Err("entrypoint \"app.wasm\" not found in the container rootfs \
             (searched PATH /opt/bin:/usr/bin)"
            .into())
    );
}

#[test]
fn relative_entrypoint_uses_process_cwd() {
    let spec = spec_with(process(&["./bin/app.wasm"], &[], "/srv"));
    let plan = plan(&spec, &["/run/bundle/rootfs/srv/bin/app.wasm"]).expect("valid plan");
    assert_eq!(plan.entrypoint.path, PathBuf::from("/srv/bin/app.wasm"));
    assert_eq!(plan.cwd, PathBuf::from("/srv"));
}

#[test]
fn entrypoint_in_a_volume_inside_the_container() {
    let mut spec = spec_with(process(&["/data/app.wasm"], &[], "/"));
    spec.set_mounts(Some(vec![bind("/data", &["rbind", "ro"])]));
    let plan = plan_from_spec(&spec, Path::new("/"), files(&["/data/app.wasm"]));
    let plan = plan.expect("valid plan");
    assert_eq!(plan.entrypoint.path, PathBuf::from("/data/app.wasm"));
    assert_eq!(
        plan.preopens[1],
        Preopen {
            host: "/data".into(),
            guest: "/data".into(),
            read_only: true
        }
    );
}

#[test]
fn env_errors_name_the_entry() {
    let spec = spec_with(process(&["/a.wasm"], &["OK=1", "FOO"], "/"));
    assert_eq!(
        plan(&spec, &[]),
        Err(SpecError::EnvMissingEquals {
            entry: "FOO".into()
        })
    );
}

#[test]
fn env_duplicates_and_equals_in_values() {
    let spec = spec_with(process(&["/a.wasm"], &["A=1", "B=x=y", "A=2"], "/"));
    let plan = plan(&spec, &["/run/bundle/rootfs/a.wasm"]).expect("valid plan");
    assert_eq!(
        plan.env,
        vec![("A".into(), "2".into()), ("B".into(), "x=y".into())]
    );
}

#[test]
fn missing_env_is_empty_and_uses_default_path() {
    let no_env = ProcessBuilder::default()
        .args(strings(&["app.wasm"]))
        .build();
    let mut spec = spec_with(no_env.expect("valid process"));
    spec.process_mut()
        .as_mut()
        .expect("has process")
        .set_env(None);
    let plan = plan(&spec, &["/run/bundle/rootfs/usr/local/bin/app.wasm"]).expect("valid plan");
    assert!(plan.env.is_empty());
    assert_eq!(
        plan.entrypoint.path,
        PathBuf::from("/usr/local/bin/app.wasm")
    );
}

#[test]
fn empty_cwd_defaults_to_root_and_relative_cwd_is_rejected() {
    let known = &["/run/bundle/rootfs/a.wasm"];
    let spec = spec_with(process(&["/a.wasm"], &[], ""));
    assert_eq!(plan(&spec, known).map(|p| p.cwd), Ok(PathBuf::from("/")));
    let spec = spec_with(process(&["/a.wasm"], &[], "rel"));
    assert_eq!(
        plan(&spec, known),
        Err(SpecError::CwdNotAbsolute { cwd: "rel".into() })
    );
}

#[test]
fn root_readonly_and_mounts_become_preopens() {
    let mut spec = spec_with(process(&["/a.wasm"], &[], "/"));
    spec.set_root(Some(
        RootBuilder::default()
            .path("rootfs")
            .readonly(false)
            .build()
            .expect("root"),
    ));
    let mut mounts = oci_spec::runtime::get_default_mounts();
    mounts.push(bind("/config", &["rbind", "ro"]));
    mounts.push(bind("/data", &["rbind", "rw"]));
    mounts.push(bind("/etc/hosts", &["rbind", "ro"]));
    spec.set_mounts(Some(mounts));
    let known = &["/run/bundle/rootfs/a.wasm", "/run/bundle/rootfs/etc/hosts"];
    let preopens = plan(&spec, known).expect("valid plan").preopens;
    let preopen = |host: &str, guest: &str, read_only| Preopen {
        host: host.into(),
        guest: guest.into(),
        read_only,
    };
    assert_eq!(
        preopens,
        vec![
            preopen(ROOTFS, "/", false),
            preopen("/run/bundle/rootfs/config", "/config", true),
            preopen("/run/bundle/rootfs/data", "/data", false),
        ]
    );
}

#[test]
fn spec_without_root_gets_a_writable_rootfs() {
    let spec = spec_with(process(&["/a.wasm"], &[], "/"));
    let plan = plan(&spec, &["/run/bundle/rootfs/a.wasm"]).expect("valid plan");
    assert_eq!(
        plan.preopens,
        vec![Preopen {
            host: ROOTFS.into(),
            guest: "/".into(),
            read_only: false
        }]
    );
}

#[test]
fn mount_errors_propagate() {
    let mut spec = spec_with(process(&["/a.wasm"], &[], "/"));
    spec.set_mounts(Some(vec![bind("x", &[])]));
    let err = plan(&spec, &["/run/bundle/rootfs/a.wasm"]);
    assert_eq!(
        err,
        Err(SpecError::MountDestinationNotAbsolute {
            destination: "x".into()
        })
    );
}

#[test]
fn network_follows_the_network_namespace() {
    let mut spec = spec_with(process(&["/a.wasm"], &[], "/"));
    let known = &["/run/bundle/rootfs/a.wasm"];
    assert_eq!(
        plan(&spec, known).map(|p| p.network),
        Ok(NetworkAccess::Denied)
    );

    let pid = LinuxNamespaceBuilder::default()
        .typ(LinuxNamespaceType::Pid)
        .build();
    let host_net = LinuxBuilder::default()
        .namespaces(vec![pid.expect("namespace")])
        .build();
    spec.set_linux(Some(host_net.expect("linux")));
    assert_eq!(
        plan(&spec, known).map(|p| p.network),
        Ok(NetworkAccess::Denied)
    );

    let net = LinuxNamespaceBuilder::default()
        .typ(LinuxNamespaceType::Network)
        .path("/var/run/netns/cni-1")
        .build();
    let pod_net = LinuxBuilder::default()
        .namespaces(vec![net.expect("namespace")])
        .build();
    spec.set_linux(Some(pod_net.expect("linux")));
    assert_eq!(
        plan(&spec, known).map(|p| p.network),
        Ok(NetworkAccess::ContainerNamespace)
    );
}

#[test]
fn memory_limit_caps_the_guest() {
    let mut spec = spec_with(process(&["/a.wasm"], &[], "/"));
    let memory = LinuxMemoryBuilder::default()
        .limit(512 * 1024 * 1024_i64)
        .build();
    let resources = LinuxResourcesBuilder::default()
        .memory(memory.expect("memory"))
        .build();
    let linux = LinuxBuilder::default()
        .resources(resources.expect("resources"))
        .build();
    spec.set_linux(Some(linux.expect("linux")));
    let limits = plan(&spec, &["/run/bundle/rootfs/a.wasm"]).map(|p| p.limits);
    assert_eq!(
        limits,
        Ok(GuestLimits {
            max_memory_bytes: Some(496 * 1024 * 1024)
        })
    );
}

#[test]
fn export_errors_propagate() {
    let spec = spec_with(process(&["/a.wasm#"], &[], "/"));
    let err = plan(&spec, &["/run/bundle/rootfs/a.wasm"]);
    assert_eq!(
        err,
        Err(SpecError::EmptyExportName {
            arg0: "/a.wasm#".into()
        })
    );
}

#[test]
fn host_path_stays_under_the_rootfs() {
    assert_eq!(
        host_path(Path::new("/r"), Path::new("/a/b")),
        PathBuf::from("/r/a/b")
    );
    assert_eq!(
        host_path(Path::new("/r"), Path::new("/")),
        PathBuf::from("/r")
    );
    assert_eq!(
        host_path(Path::new("/"), Path::new("/a")),
        PathBuf::from("/a")
    );
    assert_eq!(
        host_path(Path::new("/r"), Path::new("a")),
        PathBuf::from("/r/a")
    );
}

#[test]
fn a_program_from_an_image_layer_is_not_looked_up_in_the_rootfs() {
    let spec = spec_with(process(&["hello.wasm#run", "x"], &["A=1"], "/"));
    let plan = plan_for_program(
        &spec,
        Path::new(ROOTFS),
        files(&[]),
        PathBuf::from("hello.wasm"),
    )
    .expect("no rootfs lookup");
    assert_eq!(plan.entrypoint.path, PathBuf::from("hello.wasm"));
    assert_eq!(plan.entrypoint.export.as_deref(), Some("run"));
    assert_eq!(plan.argv, strings(&["hello.wasm", "x"]));
    assert_eq!(plan.env, vec![("A".into(), "1".into())]);
}
