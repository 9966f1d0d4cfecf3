//! The text of every file a private CRI setup needs: containerd's config, the CNI conflist,
//! the registry mirror's `hosts.toml` and docker-registry's config.
//!
//! Pure string building, no I/O: [`super::Cri`] decides the paths and writes the files.

use std::path::Path;

/// CRI runtime handler name that maps to the wasmpod shim.
pub const WASMPOD_HANDLER: &str = "wasmpod";
/// CRI runtime handler name that maps to runc (the default runtime).
pub const RUNC_HANDLER: &str = "runc";
/// Registry host name used in image references; `hosts.toml` mirrors it to the local registry.
pub const REGISTRY_HOST: &str = "wasmpod.test";

/// What differs between two private CRI setups.
#[derive(Debug, Clone)]
pub struct CriSettings<'a> {
    /// Temp dir everything lives under.
    pub dir: &'a Path,
    /// `[debug] level`.
    pub log_level: &'a str,
    /// The sandbox (pause) image reference, already imported into namespace `k8s.io`.
    pub sandbox_image: &'a str,
    /// The bridge device CNI creates (at most 15 bytes).
    pub bridge: &'a str,
    /// The pod subnet, e.g. `10.88.7.0/24`.
    pub subnet: &'a str,
    /// `127.0.0.1:<port>` of the private registry.
    pub registry: &'a str,
    /// containerd's major version: 1 gets a `version = 2` config, 2 and later `version = 3`.
    pub major: u32,
}

fn q(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// containerd's config with the CRI plugin on and two runtime handlers: `wasmpod`
/// (`io.containerd.wasmpod.v1`) and `runc` (runc state under the temp dir). `version = 2`
/// for containerd 1.x ([`config_v2`]), `version = 3` for 2.x ([`config_v3`]).
///
/// `restrict_oom_score_adj` is needed because root lacks `CAP_SYS_RESOURCE` here;
/// `netns_mounts_under_state_dir` keeps pod network namespaces under the temp dir; NRI is off
/// (containerd 2 turns it on by default, with a socket shared by every daemon on the host).
pub fn containerd_config(s: &CriSettings<'_>) -> String {
    let common = format!(
        r#"root = {root}
state = {state}
temp = {temp}

[grpc]
  address = {grpc}

[ttrpc]
  address = {ttrpc}

[debug]
  level = {level:?}
"#,
        root = q(&s.dir.join("root")),
        state = q(&s.dir.join("state")),
        temp = q(&s.dir.join("tmp")),
        grpc = q(&s.dir.join("c.sock")),
        ttrpc = q(&s.dir.join("t.sock")),
        level = s.log_level,
    );
    if s.major >= 2 {
        format!("version = 3\n{common}{}", config_v3(s))
    } else {
        format!("version = 2\n{common}{}", config_v2(s))
    }
}

/// The `[plugins]` of containerd 1.x: the whole CRI is `io.containerd.grpc.v1.cri`.
fn config_v2(s: &CriSettings<'_>) -> String {
    let d = s.dir;
    let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
    let rt = format!("{cri}.containerd.runtimes");
    format!(
        r#"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = {opt}
  [plugins."io.containerd.nri.v1.nri"]
    disable = true
  [{cri}]
    sandbox_image = {sandbox:?}
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_cdi = false
    disable_apparmor = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    [{cri}.cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = {netd}
      max_conf_num = 1
    [{cri}.containerd]
      default_runtime_name = {runc:?}
      snapshotter = "overlayfs"
      [{rt}.{runc}]
        runtime_type = "io.containerd.runc.v2"
        sandbox_mode = "podsandbox"
        [{rt}.{runc}.options]
          Root = {runc_root}
          SystemdCgroup = false
      [{rt}.{wasmpod}]
        runtime_type = "io.containerd.wasmpod.v1"
        sandbox_mode = "podsandbox"
    [{cri}.registry]
      config_path = {certs}
"#,
        opt = q(&d.join("opt")),
        sandbox = s.sandbox_image,
        netd = q(&d.join("net.d")),
        runc = RUNC_HANDLER,
        runc_root = q(&d.join("runc")),
        wasmpod = WASMPOD_HANDLER,
        certs = q(&d.join("certs.d")),
    )
}

/// The `[plugins]` of containerd 2.x (`containerd config default` of 2.1 lists every key):
/// the CRI is split into `io.containerd.cri.v1.images` (snapshotter, pinned sandbox image,
/// registry), `io.containerd.cri.v1.runtime` (runtimes, CNI, security knobs; `sandbox_mode`
/// became `sandboxer`, CNI's `bin_dir` became `bin_dirs`) and `io.containerd.grpc.v1.cri`
/// (the stream server).
fn config_v3(s: &CriSettings<'_>) -> String {
    let d = s.dir;
    let images = "plugins.'io.containerd.cri.v1.images'";
    let runtime = "plugins.'io.containerd.cri.v1.runtime'";
    let rt = format!("{runtime}.containerd.runtimes");
    format!(
        r#"
[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = {opt}
  [plugins.'io.containerd.image-verifier.v1.bindir']
    bin_dir = {verifiers}
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [{images}]
    snapshotter = "overlayfs"
    [{images}.pinned_images]
      sandbox = {sandbox:?}
    [{images}.registry]
      config_path = {certs}
  [{runtime}]
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_cdi = false
    disable_apparmor = true
    [{runtime}.cni]
      bin_dirs = ["/usr/lib/cni"]
      conf_dir = {netd}
      max_conf_num = 1
    [{runtime}.containerd]
      default_runtime_name = {runc:?}
      [{rt}.{runc}]
        runtime_type = "io.containerd.runc.v2"
        sandboxer = "podsandbox"
        [{rt}.{runc}.options]
          Root = {runc_root}
          SystemdCgroup = false
      [{rt}.{wasmpod}]
        runtime_type = "io.containerd.wasmpod.v1"
        sandboxer = "podsandbox"
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
"#,
        opt = q(&d.join("opt")),
        verifiers = q(&d.join("opt/image-verifier/bin")),
        sandbox = s.sandbox_image,
        certs = q(&d.join("certs.d")),
        netd = q(&d.join("net.d")),
        runc = RUNC_HANDLER,
        runc_root = q(&d.join("runc")),
        wasmpod = WASMPOD_HANDLER,
    )
}

/// A bridge + host-local conflist on `subnet`. No masquerading and no portmap, so CNI
/// creates no iptables rules of its own; the bridge is the pods' gateway, which makes pod
/// IPs reachable from the host. IPAM state lives under the temp dir.
pub fn cni_conflist(s: &CriSettings<'_>) -> String {
    let ipam_dir = s.dir.join("cni-ipam").display().to_string();
    let v = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": format!("{}-net", s.bridge),
        "plugins": [
            {
                "type": "bridge",
                "bridge": s.bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_dir,
                    "ranges": [[{ "subnet": s.subnet }]],
                    "routes": [{ "dst": "0.0.0.0/0" }]
                }
            }
        ]
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// `certs.d/<REGISTRY_HOST>/hosts.toml`: pull and resolve from the local registry over
/// plain HTTP.
pub fn hosts_toml(registry: &str) -> String {
    format!(
        r#"server = "http://{registry}"

[host."http://{registry}"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
"#
    )
}

/// docker-registry (distribution 2.8) config: storage under `storage`, listening on `addr`.
pub fn registry_config(storage: &Path, addr: &str) -> String {
    format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  \
         filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
        storage.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path, major: u32) -> CriSettings<'_> {
        CriSettings {
            dir,
            log_level: "info",
            sandbox_image: "wasmpod.test/pause:1",
            bridge: "wpc1",
            subnet: "10.88.9.0/24",
            registry: "127.0.0.1:5000",
            major,
        }
    }

    /// Checks what both config versions must have.
    fn private_and_complete(cfg: &str) {
        for bad in [
            "/run/containerd",
            "/var/lib/containerd",
            "/opt/containerd",
            "/etc/cni",
        ] {
            assert!(!cfg.contains(bad), "{bad} in:\n{cfg}");
        }
        for want in [
            "root = \"/t/x/root\"",
            "state = \"/t/x/state\"",
            "address = \"/t/x/c.sock\"",
            "restrict_oom_score_adj = true",
            "netns_mounts_under_state_dir = true",
            "runtime_type = \"io.containerd.wasmpod.v1\"",
            "Root = \"/t/x/runc\"",
            "config_path = \"/t/x/certs.d\"",
            "conf_dir = \"/t/x/net.d\"",
            "stream_server_port = \"0\"",
        ] {
            assert!(cfg.contains(want), "{want} missing in:\n{cfg}");
        }
    }

    /// containerd 1.x: version 2, one CRI plugin; no host path of a system containerd appears.
    #[test]
    fn config_is_private_and_complete() {
        let cfg = containerd_config(&settings(Path::new("/t/x"), 1));
        private_and_complete(&cfg);
        assert!(cfg.starts_with("version = 2\n"), "{cfg}");
        for want in [
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wasmpod]",
            "sandbox_image = \"wasmpod.test/pause:1\"",
        ] {
            assert!(cfg.contains(want), "{want} missing in:\n{cfg}");
        }
    }

    /// containerd 2.x: version 3, the CRI's runtime and image plugins hold what 1.x's one
    /// plugin held.
    #[test]
    fn config_v3_is_private_and_complete() {
        let cfg = containerd_config(&settings(Path::new("/t/x"), 2));
        private_and_complete(&cfg);
        assert!(cfg.starts_with("version = 3\n"), "{cfg}");
        for want in [
            "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.wasmpod]",
            "[plugins.'io.containerd.cri.v1.images'.pinned_images]\n      sandbox = \"wasmpod.test/pause:1\"",
            "sandboxer = \"podsandbox\"",
            "bin_dirs = [\"/usr/lib/cni\"]",
        ] {
            assert!(cfg.contains(want), "{want} missing in:\n{cfg}");
        }
        assert!(!cfg.contains("sandbox_mode"), "{cfg}");
        assert!(
            !cfg.contains("\"io.containerd.grpc.v1.cri\".containerd"),
            "{cfg}"
        );
    }

    /// The conflist names the bridge and subnet and keeps IPAM state in the temp dir.
    #[test]
    fn conflist_is_private() -> anyhow::Result<()> {
        let v: serde_json::Value =
            serde_json::from_str(&cni_conflist(&settings(Path::new("/t/x"), 1)))?;
        assert_eq!(v["plugins"][0]["bridge"], "wpc1");
        assert_eq!(v["plugins"][0]["ipMasq"], false);
        assert_eq!(v["plugins"][0]["ipam"]["dataDir"], "/t/x/cni-ipam");
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.88.9.0/24"
        );
        Ok(())
    }
}
