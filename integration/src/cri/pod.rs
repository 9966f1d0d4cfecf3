//! Pod and container configs shaped like kubelet's, and [`Pod`], a running sandbox.
//!
//! Like kubelet: network and IPC namespaces are the pod's, PID namespaces are per
//! container, the cgroup parent is per pod (cgroupfs style), logs go to
//! `<log dir>/<container>/0.log`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, KeyValue,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata,
};

use super::client::image_spec;
use super::logs::{parse_cri_log, LogLine};
use super::{Cri, WASMPOD_HANDLER};
use crate::cgroup::ContainerCgroup;
use crate::containerd::unique_name;
use crate::process::poll;

fn namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// A `KeyValue` environment entry.
pub fn env(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
    }
}

/// A bind mount of `host` at `container`.
pub fn bind(host: impl Into<PathBuf>, container: &str, readonly: bool) -> Mount {
    Mount {
        host_path: host.into().display().to_string(),
        container_path: container.into(),
        readonly,
        ..Default::default()
    }
}

impl Cri {
    /// A pod config named `name` with a fresh uid, its own log dir and cgroup parent.
    pub fn pod_config(&self, name: &str) -> PodSandboxConfig {
        let uid = unique_name("uid");
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self
                .dir()
                .join("logs")
                .join(format!("default_{name}_{uid}"))
                .display()
                .to_string(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("/{}/pod{uid}", self.cgroup_root()),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Runs a pod named `name` with runtime handler `wasmpod`.
    ///
    /// # Errors
    /// When `RunPodSandbox` fails.
    pub fn run_pod(&self, name: &str) -> Result<Pod<'_>> {
        self.run_pod_with(self.pod_config(name), WASMPOD_HANDLER)
    }

    /// Runs a pod from `config` with runtime handler `handler`.
    ///
    /// # Errors
    /// When `RunPodSandbox` fails.
    pub fn run_pod_with(&self, config: PodSandboxConfig, handler: &str) -> Result<Pod<'_>> {
        std::fs::create_dir_all(&config.log_directory)?;
        let id = self.client()?.run_pod_sandbox(&config, handler)?;
        Ok(Pod {
            cri: self,
            id,
            config,
        })
    }

    /// A container config: `name`, image reference `image`, `command` (empty: the image's
    /// entrypoint) and `args`, empty resources, log path `<name>/0.log`.
    pub fn container_config(
        &self,
        name: &str,
        image: &str,
        command: &[&str],
        args: &[&str],
    ) -> ContainerConfig {
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_string()).collect();
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(image_spec(image)),
            command: strings(command),
            args: strings(args),
            log_path: format!("{name}/0.log"),
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources::default()),
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(namespaces()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    /// Polls `ContainerStatus` until the container is in `state`; returns that status.
    ///
    /// # Errors
    /// When a call fails or `timeout` passes (the last status is in the message).
    pub fn wait_state(
        &self,
        id: &str,
        state: ContainerState,
        timeout: Duration,
    ) -> Result<ContainerStatus> {
        let mut last = None;
        poll(
            &format!("container {id} to be {}", state.as_str_name()),
            timeout,
            || {
                let (s, _) = self.client()?.container_status(id)?;
                let done = s.state == state as i32;
                last = Some(s.clone());
                Ok(done.then_some(s))
            },
        )
        .with_context(|| format!("last status: {last:?}"))
    }
}

/// A pod sandbox that `RunPodSandbox` created.
#[derive(Debug)]
pub struct Pod<'a> {
    cri: &'a Cri,
    id: String,
    config: PodSandboxConfig,
}

impl Pod<'_> {
    /// The sandbox id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The config it was created with.
    pub fn config(&self) -> &PodSandboxConfig {
        &self.config
    }

    /// Creates a container from `config` in this pod; returns its id.
    ///
    /// # Errors
    /// When `CreateContainer` fails.
    pub fn create(&self, config: &ContainerConfig) -> Result<String> {
        std::fs::create_dir_all(self.log_path(config).parent().unwrap_or(self.cri.dir()))?;
        self.cri
            .client()?
            .create_container(&self.id, config, &self.config)
    }

    /// Creates and starts a container from `config`; returns its id.
    ///
    /// # Errors
    /// When `CreateContainer` or `StartContainer` fails.
    pub fn start(&self, config: &ContainerConfig) -> Result<String> {
        let id = self.create(config)?;
        self.cri.client()?.start_container(&id)?;
        Ok(id)
    }

    /// The pod's IP per `PodSandboxStatus`.
    ///
    /// # Errors
    /// When the call fails or the status has no IP.
    pub fn ip(&self) -> Result<String> {
        let (status, _) = self.cri.client()?.pod_status(&self.id)?;
        status
            .network
            .map(|n| n.ip)
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| anyhow!("pod {} has no IP", self.id))
    }

    /// Where CRI writes the log of a container created from `config`.
    pub fn log_path(&self, config: &ContainerConfig) -> PathBuf {
        PathBuf::from(&self.config.log_directory).join(&config.log_path)
    }

    /// Polls the CRI log of the container made from `config` until a record's content
    /// contains `needle`; returns every record so far.
    ///
    /// # Errors
    /// When a line is not in CRI format, or `timeout` passes (the log is in the message).
    pub fn wait_log(
        &self,
        config: &ContainerConfig,
        needle: &str,
        timeout: Duration,
    ) -> Result<Vec<LogLine>> {
        let path = self.log_path(config);
        let mut text = String::new();
        poll(
            &format!("{needle:?} in {}", path.display()),
            timeout,
            || {
                text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines = parse_cri_log(&text)?;
                let found = lines.iter().any(|l| l.content.contains(needle));
                Ok(found.then_some(lines))
            },
        )
        .with_context(|| format!("log so far: {text:?}"))
    }

    /// The unix socket of the shim serving this pod, per the `address` file in the
    /// sandbox's bundle (`unix://` stripped).
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn shim_socket(&self) -> Result<PathBuf> {
        let file = self
            .cri
            .dir()
            .join("state/io.containerd.runtime.v2.task")
            .join(super::CRI_NAMESPACE)
            .join(&self.id)
            .join("address");
        let address =
            std::fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
        Ok(PathBuf::from(address.trim().trim_start_matches("unix://")))
    }

    /// The cgroup dirs of container `id` (under this pod's cgroup parent).
    ///
    /// # Errors
    /// When they do not exist.
    pub fn container_cgroup(&self, id: &str) -> Result<ContainerCgroup> {
        let parent = self
            .config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.trim_start_matches('/').to_string())
            .unwrap_or_default();
        ContainerCgroup::find(&parent, id)
    }

    /// `StopPodSandbox` then `RemovePodSandbox`.
    ///
    /// # Errors
    /// When a call fails.
    pub fn remove(self) -> Result<()> {
        let client = self.cri.client()?;
        client.stop_pod(&self.id)?;
        client.remove_pod(&self.id)
    }
}
