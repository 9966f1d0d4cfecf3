//! A complete OCI spec for `ctr run --config`, derived from `ctr oci spec`.
//!
//! ctr 1.6 has no `--user` flag; the only way it offers to run a process as another user is a
//! whole spec file (`--config`), which it then uses as is: no image, no snapshot, no other
//! spec flag. [`user_spec`] rewrites ctr's own default spec for that: rootfs path, process
//! (argv, env, cwd, user), bind mounts, cgroup path and memory limit. Pure JSON rewriting,
//! no I/O.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use serde_json::{json, Value};

/// `PATH` ctr gives a process whose image sets none (containerd's default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A bind mount: host source, container destination, `:`-separated options (`rbind:ro`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Host path.
    pub src: PathBuf,
    /// Path in the container.
    pub dst: String,
    /// Options as ctr's `--mount` takes them, `:`-separated.
    pub options: String,
}

/// What goes into the spec besides ctr's defaults.
#[derive(Debug, Clone)]
pub struct SpecParams<'a> {
    /// containerd namespace (for the cgroup path `/<ns>/<id>`).
    pub namespace: &'a str,
    /// Container id.
    pub id: &'a str,
    /// Host directory used as the rootfs (absolute).
    pub rootfs: &'a Path,
    /// Process argv.
    pub argv: &'a [String],
    /// `KEY=VALUE` pairs added after [`DEFAULT_PATH`].
    pub env: &'a [String],
    /// Bind mounts added after ctr's default ones.
    pub mounts: &'a [BindMount],
    /// Working directory (default `/`).
    pub cwd: Option<&'a str>,
    /// uid and gid of the process.
    pub user: (u32, u32),
    /// `linux.resources.memory.limit`.
    pub memory_limit: Option<u64>,
}

/// Rewrites `default` (the JSON `ctr oci spec` prints) for one container; see the module docs.
///
/// # Errors
/// When `default` is not a JSON object with `process` and `linux` objects.
pub fn user_spec(default: &str, p: &SpecParams<'_>) -> Result<String> {
    let mut spec: Value = serde_json::from_str(default)?;
    let obj = spec
        .as_object_mut()
        .ok_or_else(|| anyhow!("ctr oci spec printed no JSON object"))?;
    obj.insert(
        "root".into(),
        json!({ "path": p.rootfs.display().to_string(), "readonly": false }),
    );
    let mut env = vec![DEFAULT_PATH.to_string()];
    env.extend(p.env.iter().cloned());
    let process = obj
        .get_mut("process")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| anyhow!("default spec has no process"))?;
    process.insert("args".into(), json!(p.argv));
    process.insert("env".into(), json!(env));
    process.insert("cwd".into(), json!(p.cwd.unwrap_or("/")));
    process.insert("user".into(), json!({ "uid": p.user.0, "gid": p.user.1 }));
    let mounts = obj
        .entry("mounts")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or_else(|| anyhow!("default spec's mounts is no array"))?;
    for m in p.mounts {
        mounts.push(json!({
            "destination": m.dst,
            "type": "bind",
            "source": m.src.display().to_string(),
            "options": m.options.split(':').collect::<Vec<_>>(),
        }));
    }
    let linux = obj
        .get_mut("linux")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| anyhow!("default spec has no linux"))?;
    linux.insert(
        "cgroupsPath".into(),
        json!(format!("/{}/{}", p.namespace, p.id)),
    );
    if let Some(limit) = p.memory_limit {
        let resources = linux.entry("resources").or_insert_with(|| json!({}));
        resources["memory"] = json!({ "limit": limit });
    }
    Ok(serde_json::to_string_pretty(&spec)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rewritten spec names the rootfs, process, mount, cgroup and limit asked for and
    /// keeps ctr's defaults (capabilities) untouched.
    #[test]
    fn rewrites_ctr_default_spec() -> Result<()> {
        let default = r#"{"ociVersion":"1.0.2","process":{"user":{"uid":0,"gid":0},"cwd":"/",
            "capabilities":{"bounding":["CAP_KILL"]}},"root":{"path":"rootfs"},
            "mounts":[{"destination":"/proc","type":"proc","source":"proc"}],
            "linux":{"cgroupsPath":"/ns","resources":{"devices":[]}}}"#;
        let argv = ["/bin/id".to_string()];
        let env = ["A=b".to_string()];
        let mounts = [BindMount {
            src: "/h".into(),
            dst: "/data".into(),
            options: "rbind:rw".into(),
        }];
        let out = user_spec(
            default,
            &SpecParams {
                namespace: "ns",
                id: "c1",
                rootfs: Path::new("/r"),
                argv: &argv,
                env: &env,
                mounts: &mounts,
                cwd: None,
                user: (1000, 1001),
                memory_limit: Some(64),
            },
        )?;
        let v: Value = serde_json::from_str(&out)?;
        assert_eq!(v["root"]["path"], "/r");
        assert_eq!(v["process"]["args"], json!(["/bin/id"]));
        assert_eq!(v["process"]["env"], json!([DEFAULT_PATH, "A=b"]));
        assert_eq!(v["process"]["user"], json!({"uid": 1000, "gid": 1001}));
        assert_eq!(
            v["process"]["capabilities"]["bounding"],
            json!(["CAP_KILL"])
        );
        assert_eq!(v["mounts"][1]["options"], json!(["rbind", "rw"]));
        assert_eq!(v["linux"]["cgroupsPath"], "/ns/c1");
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 64);
        Ok(())
    }
}
