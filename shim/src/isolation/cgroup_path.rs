//! Where a container's cgroup lives: `linux.cgroupsPath` normalised to a cgroupfs path.
//!
//! Pure string work, no I/O. wasmpod always drives cgroupfs directly (no systemd D-Bus), so a
//! systemd-style `slice:prefix:name` path is expanded the way systemd itself lays units out, and
//! the container lands exactly where a systemd-driven runc would have put it.

use std::path::PathBuf;

/// The cgroupfs path (absolute, relative to each hierarchy's root) for a container.
///
/// - `None` or empty: `/wasmpod/<id>`, never libcontainer's literal `:youki:<id>`.
/// - `/a/b`: as is. `a/b` (relative): `/a/b`.
/// - `slice:prefix:name`: `/<slice expanded>/<prefix>-<name>.scope`, e.g.
///   `kubepods-besteffort-pod1.slice:cri-containerd:abc` ->
///   `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope`.
pub fn cgroupfs_path(cgroups_path: Option<&str>, container_id: &str) -> PathBuf {
    let raw = cgroups_path.unwrap_or("").trim();
    if raw.is_empty() {
        return PathBuf::from(format!("/wasmpod/{container_id}"));
    }
    let parts: Vec<&str> = raw.split(':').collect();
    if let [slice, prefix, name] = parts[..] {
        if !raw.starts_with('/') {
            let mut path = expand_slice(slice);
            let unit = match (prefix, name) {
                (_, n) if n.ends_with(".slice") => n.to_string(),
                ("", n) => format!("{n}.scope"),
                (p, n) => format!("{p}-{n}.scope"),
            };
            path.push(unit);
            return path;
        }
    }
    if raw.starts_with('/') {
        PathBuf::from(raw)
    } else {
        PathBuf::from(format!("/{raw}"))
    }
}

/// `a-b-c.slice` -> `/a.slice/a-b.slice/a-b-c.slice`; empty or `-.slice` -> `/`.
fn expand_slice(slice: &str) -> PathBuf {
    let mut path = PathBuf::from("/");
    let Some(stem) = slice.strip_suffix(".slice") else {
        if !slice.is_empty() {
            path.push(slice);
        }
        return path;
    };
    if stem.is_empty() || stem == "-" {
        return path;
    }
    let mut prefix = String::new();
    for component in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(component);
        path.push(format!("{prefix}.slice"));
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_path_gets_a_wasmpod_default() {
        assert_eq!(cgroupfs_path(None, "c1"), PathBuf::from("/wasmpod/c1"));
        assert_eq!(cgroupfs_path(Some(""), "c1"), PathBuf::from("/wasmpod/c1"));
    }

    #[test]
    fn cgroupfs_paths_are_kept_and_relative_ones_anchored() {
        assert_eq!(
            cgroupfs_path(Some("/default/c1"), "c1"),
            PathBuf::from("/default/c1")
        );
        assert_eq!(
            cgroupfs_path(Some("k8s/pod/c1"), "c1"),
            PathBuf::from("/k8s/pod/c1")
        );
    }

    #[test]
    fn docker_systemd_style_becomes_a_scope() {
        assert_eq!(
            cgroupfs_path(Some("system.slice:docker:abc"), "abc"),
            PathBuf::from("/system.slice/docker-abc.scope")
        );
    }

    #[test]
    fn kubelet_slices_expand_like_systemd() {
        assert_eq!(
            cgroupfs_path(Some("kubepods-besteffort-pod1.slice:cri-containerd:abc"), "abc"),
            PathBuf::from(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope"
            )
        );
    }

    #[test]
    fn root_slice_and_empty_prefix() {
        assert_eq!(
            cgroupfs_path(Some("-.slice::abc"), "abc"),
            PathBuf::from("/abc.scope")
        );
        assert_eq!(
            cgroupfs_path(Some(":p:abc"), "abc"),
            PathBuf::from("/p-abc.scope")
        );
    }
}
