//! A blocking CRI v1 client over containerd's unix socket: one call per kubelet action.
//!
//! tonic is async; tests are not. [`CriClient`] owns a current-thread tokio runtime and
//! blocks on each call, with a deadline, so a hung runtime fails the test instead of
//! hanging it. Methods return the protobuf types of `k8s_cri::v1` unchanged.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    AttachRequest, ContainerConfig, ContainerStats, ContainerStatsRequest, ContainerStatus,
    ContainerStatusRequest, CreateContainerRequest, ExecRequest, ExecSyncRequest, ExecSyncResponse,
    ImageSpec, ImageStatusRequest, ListContainersRequest, ListPodSandboxRequest, PodSandboxConfig,
    PodSandboxStatus, PodSandboxStatusRequest, PullImageRequest, RemoveContainerRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StatusRequest,
    StatusResponse, StopContainerRequest, StopPodSandboxRequest, VersionRequest, VersionResponse,
};
use tonic::transport::{Channel, Endpoint, Uri};

/// Deadline for a call that does not carry its own timeout.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A blocking CRI client; see the module docs.
#[derive(Debug)]
pub struct CriClient {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    image: ImageServiceClient<Channel>,
}

impl CriClient {
    /// Connects to the CRI socket at `socket` (containerd's gRPC address).
    ///
    /// # Errors
    /// When the runtime cannot be built or the socket does not accept a connection.
    pub fn connect(socket: &Path) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("build tokio runtime")?;
        let path: PathBuf = socket.to_path_buf();
        let channel = rt.block_on(async move {
            Endpoint::try_from("http://[::]:50051")?
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let s = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(s))
                    }
                }))
                .await
        })?;
        Ok(Self {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            image: ImageServiceClient::new(channel),
        })
    }

    fn call<T, F>(&self, what: &str, timeout: Duration, fut: F) -> Result<T>
    where
        F: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.rt
            .block_on(async { tokio::time::timeout(timeout, fut).await })
            .map_err(|_| anyhow!("CRI {what}: no answer within {timeout:?}"))?
            .map(tonic::Response::into_inner)
            .map_err(|s| anyhow!("CRI {what}: {:?}: {}", s.code(), s.message()))
    }

    /// `Version`.
    ///
    /// # Errors
    /// When the call fails.
    pub fn version(&self) -> Result<VersionResponse> {
        let mut c = self.runtime.clone();
        let req = VersionRequest {
            version: "v1".into(),
        };
        self.call("Version", CALL_TIMEOUT, c.version(req))
    }

    /// `Status` with `verbose: true`: the runtime's conditions, its runtime handlers
    /// (containerd 2.x fills `runtime_handlers`; 1.x does not) and, in `info["config"]`, the
    /// CRI plugin's config as JSON.
    ///
    /// # Errors
    /// When the call fails.
    pub fn status(&self) -> Result<StatusResponse> {
        let mut c = self.runtime.clone();
        let req = StatusRequest { verbose: true };
        self.call("Status", CALL_TIMEOUT, c.status(req))
    }

    /// `PullImage`; returns the image ref (digest) the runtime stored.
    ///
    /// # Errors
    /// When the pull fails.
    pub fn pull_image(&self, image: &str) -> Result<String> {
        let mut c = self.image.clone();
        let req = PullImageRequest {
            image: Some(image_spec(image)),
            ..Default::default()
        };
        Ok(self
            .call(
                &format!("PullImage {image}"),
                CALL_TIMEOUT,
                c.pull_image(req),
            )?
            .image_ref)
    }

    /// `ImageStatus`: true when the runtime knows `image`.
    ///
    /// # Errors
    /// When the call fails.
    pub fn has_image(&self, image: &str) -> Result<bool> {
        let mut c = self.image.clone();
        let req = ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        let resp = self.call(
            &format!("ImageStatus {image}"),
            CALL_TIMEOUT,
            c.image_status(req),
        )?;
        Ok(resp.image.is_some())
    }

    /// `RunPodSandbox` with `handler` as runtime handler; returns the sandbox id.
    ///
    /// # Errors
    /// When the call fails.
    pub fn run_pod_sandbox(&self, config: &PodSandboxConfig, handler: &str) -> Result<String> {
        let mut c = self.runtime.clone();
        let req = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        };
        Ok(self
            .call("RunPodSandbox", CALL_TIMEOUT, c.run_pod_sandbox(req))?
            .pod_sandbox_id)
    }

    /// `PodSandboxStatus` (verbose): the status and the `info` map (JSON values).
    ///
    /// # Errors
    /// When the call fails or returns no status.
    pub fn pod_status(&self, id: &str) -> Result<(PodSandboxStatus, HashMap<String, String>)> {
        let mut c = self.runtime.clone();
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        };
        let resp = self.call("PodSandboxStatus", CALL_TIMEOUT, c.pod_sandbox_status(req))?;
        let status = resp
            .status
            .ok_or_else(|| anyhow!("PodSandboxStatus {id}: no status"))?;
        Ok((status, resp.info))
    }

    /// `ListPodSandbox` ids (all states).
    ///
    /// # Errors
    /// When the call fails.
    pub fn list_pods(&self) -> Result<Vec<String>> {
        let mut c = self.runtime.clone();
        let req = ListPodSandboxRequest { filter: None };
        let resp = self.call("ListPodSandbox", CALL_TIMEOUT, c.list_pod_sandbox(req))?;
        Ok(resp.items.into_iter().map(|p| p.id).collect())
    }

    /// `ListContainers` ids (all states, all pods).
    ///
    /// # Errors
    /// When the call fails.
    pub fn list_containers(&self) -> Result<Vec<String>> {
        let mut c = self.runtime.clone();
        let req = ListContainersRequest { filter: None };
        let resp = self.call("ListContainers", CALL_TIMEOUT, c.list_containers(req))?;
        Ok(resp.containers.into_iter().map(|c| c.id).collect())
    }

    /// `StopPodSandbox`.
    ///
    /// # Errors
    /// When the call fails.
    pub fn stop_pod(&self, id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let req = StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.call("StopPodSandbox", CALL_TIMEOUT, c.stop_pod_sandbox(req))?;
        Ok(())
    }

    /// `RemovePodSandbox` (removes its containers too).
    ///
    /// # Errors
    /// When the call fails.
    pub fn remove_pod(&self, id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.call("RemovePodSandbox", CALL_TIMEOUT, c.remove_pod_sandbox(req))?;
        Ok(())
    }

    /// `CreateContainer` in pod `pod` (whose config was `sandbox`); returns the container id.
    ///
    /// # Errors
    /// When the call fails.
    pub fn create_container(
        &self,
        pod: &str,
        config: &ContainerConfig,
        sandbox: &PodSandboxConfig,
    ) -> Result<String> {
        let mut c = self.runtime.clone();
        let req = CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config.clone()),
            sandbox_config: Some(sandbox.clone()),
        };
        Ok(self
            .call("CreateContainer", CALL_TIMEOUT, c.create_container(req))?
            .container_id)
    }

    /// `StartContainer`.
    ///
    /// # Errors
    /// When the call fails.
    pub fn start_container(&self, id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let req = StartContainerRequest {
            container_id: id.into(),
        };
        self.call("StartContainer", CALL_TIMEOUT, c.start_container(req))?;
        Ok(())
    }

    /// `StopContainer` with a grace period of `timeout_s` seconds.
    ///
    /// # Errors
    /// When the call fails.
    pub fn stop_container(&self, id: &str, timeout_s: i64) -> Result<()> {
        let mut c = self.runtime.clone();
        let req = StopContainerRequest {
            container_id: id.into(),
            timeout: timeout_s,
        };
        let deadline = CALL_TIMEOUT + Duration::from_secs(timeout_s.unsigned_abs());
        self.call("StopContainer", deadline, c.stop_container(req))?;
        Ok(())
    }

    /// `RemoveContainer`.
    ///
    /// # Errors
    /// When the call fails.
    pub fn remove_container(&self, id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let req = RemoveContainerRequest {
            container_id: id.into(),
        };
        self.call("RemoveContainer", CALL_TIMEOUT, c.remove_container(req))?;
        Ok(())
    }

    /// `ContainerStatus` (verbose): the status and the `info` map (JSON values).
    ///
    /// # Errors
    /// When the call fails or returns no status.
    pub fn container_status(&self, id: &str) -> Result<(ContainerStatus, HashMap<String, String>)> {
        let mut c = self.runtime.clone();
        let req = ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        };
        let resp = self.call("ContainerStatus", CALL_TIMEOUT, c.container_status(req))?;
        let status = resp
            .status
            .ok_or_else(|| anyhow!("ContainerStatus {id}: no status"))?;
        Ok((status, resp.info))
    }

    /// `ExecSync` of `cmd` in container `id`, with a timeout of `timeout_s` seconds.
    ///
    /// # Errors
    /// When the call fails (a non-zero exit of `cmd` is not an error).
    pub fn exec_sync(&self, id: &str, cmd: &[&str], timeout_s: i64) -> Result<ExecSyncResponse> {
        let mut c = self.runtime.clone();
        let req = ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| (*s).to_string()).collect(),
            timeout: timeout_s,
        };
        let deadline = CALL_TIMEOUT + Duration::from_secs(timeout_s.unsigned_abs());
        self.call(&format!("ExecSync {cmd:?}"), deadline, c.exec_sync(req))
    }

    /// `Exec` of `cmd` in container `id` with stdout and stderr (and stdin or a tty when
    /// asked); returns the streaming URL to connect to (see [`super::stream`]). The command
    /// only starts once a client connects to that URL.
    ///
    /// # Errors
    /// When the call fails.
    pub fn exec(&self, id: &str, cmd: &[&str], stdin: bool, tty: bool) -> Result<String> {
        let mut c = self.runtime.clone();
        let req = ExecRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| (*s).to_string()).collect(),
            tty,
            stdin,
            stdout: true,
            // CRI rejects stderr with a tty: the terminal merges both streams.
            stderr: !tty,
        };
        Ok(self
            .call(&format!("Exec {cmd:?}"), CALL_TIMEOUT, c.exec(req))?
            .url)
    }

    /// `Attach` to container `id`'s own stdio, with stdin, as `kubectl attach -i[t]` does
    /// (`tty` must match the container's config); returns the streaming URL.
    ///
    /// # Errors
    /// When the call fails.
    pub fn attach(&self, id: &str, tty: bool) -> Result<String> {
        let mut c = self.runtime.clone();
        let req = AttachRequest {
            container_id: id.into(),
            stdin: true,
            tty,
            stdout: true,
            stderr: !tty,
        };
        Ok(self.call("Attach", CALL_TIMEOUT, c.attach(req))?.url)
    }

    /// `ContainerStats`.
    ///
    /// # Errors
    /// When the call fails or returns no stats.
    pub fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        let mut c = self.runtime.clone();
        let req = ContainerStatsRequest {
            container_id: id.into(),
        };
        self.call("ContainerStats", CALL_TIMEOUT, c.container_stats(req))?
            .stats
            .ok_or_else(|| anyhow!("ContainerStats {id}: no stats"))
    }
}

/// An `ImageSpec` naming `image`.
pub fn image_spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.into(),
        ..Default::default()
    }
}
