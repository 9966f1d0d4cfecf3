//! containerd's gRPC API, the calls `ctr run --rm` and `ctr task exec` make, made directly.
//!
//! Every request carries the `containerd-namespace` header. Images are read as containerd's
//! client reads them: Images.Get, then the index, manifest and config blobs from the content
//! store, whose `rootfs.diff_ids` give the chain id of the unpacked snapshot that each
//! container's rootfs is prepared from.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    ListSnapshotsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    containers_client::ContainersClient, content_client::ContentClient,
    images_client::ImagesClient, tasks_client::TasksClient, Container, CreateContainerRequest,
    CreateTaskRequest, DeleteContainerRequest, DeleteProcessRequest, DeleteTaskRequest,
    ExecProcessRequest, GetImageRequest, KillRequest, ListContainersRequest, ListTasksRequest,
    ReadContentRequest, StartRequest, WaitRequest,
};
use containerd_client::services::v1::{
    leases_client::LeasesClient, CreateRequest as LeaseCreateRequest,
    DeleteRequest as LeaseDeleteRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request, Status};
use containerd_client::types::Mount;
use prost_types::Any;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The snapshotter `ctr run` uses by default.
pub const SNAPSHOTTER: &str = "overlayfs";
/// Deadline of one API call; Wait included (every program of the churn ends within it).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const PROCESS_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
const RUNC_OPTIONS_TYPE: &str = "containerd.runc.v1.Options";

/// A failed call: which step and the gRPC status.
#[derive(Debug, Clone)]
pub struct CallError {
    /// The API call, as `Tasks.Create`.
    pub step: &'static str,
    /// The status code (`Code::DeadlineExceeded` for the driver's own deadline).
    pub code: Code,
    /// The status message.
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:?}: {}", self.step, self.code, self.message)
    }
}

impl std::error::Error for CallError {}

/// One connection to a daemon, for one namespace.
#[derive(Clone)]
pub struct Api {
    channel: Channel,
    namespace: String,
}

/// What a cycle needs of an image.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// The reference containerd stores.
    pub name: String,
    /// Chain id of its top layer: the committed snapshot rootfs snapshots are prepared from.
    pub chain_id: String,
    /// Entrypoint followed by Cmd.
    pub argv: Vec<String>,
    /// Config Env.
    pub env: Vec<String>,
    /// Config WorkingDir ("/" when empty).
    pub cwd: String,
}

async fn timed<T>(
    step: &'static str,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(CallError {
            step,
            code: s.code(),
            message: s.message().to_string(),
        }),
        Err(_) => Err(CallError {
            step,
            code: Code::DeadlineExceeded,
            message: format!("no answer within {CALL_TIMEOUT:?} (the driver's deadline)"),
        }),
    }
}

/// The runc shim's options with only `root` set (`ctr run --runc-root`), so runc's state
/// stays in the daemon's temp dir. Field 7 of `containerd.runc.v1.Options`, hand-encoded.
pub fn runc_root_options(root: &str) -> Any {
    let mut value = vec![(7 << 3) | 2];
    let mut len = root.len();
    while len >= 0x80 {
        value.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    value.push(len as u8);
    value.extend_from_slice(root.as_bytes());
    Any {
        type_url: RUNC_OPTIONS_TYPE.into(),
        value,
    }
}

/// The chain id of layers with these diff ids (OCI image spec, "ChainID").
pub fn chain_id(diff_ids: &[String]) -> Option<String> {
    let mut ids = diff_ids.iter();
    let mut chain = ids.next()?.clone();
    for d in ids {
        chain = format!("sha256:{:x}", Sha256::digest(format!("{chain} {d}")));
    }
    Some(chain)
}

impl Api {
    /// Connects to the daemon's gRPC socket.
    pub async fn connect(socket: &std::path::Path, namespace: &str) -> Result<Self> {
        let channel = containerd_client::connect(socket)
            .await
            .with_context(|| format!("connect to {}", socket.display()))?;
        Ok(Self {
            channel,
            namespace: namespace.to_string(),
        })
    }

    fn req<T>(&self, message: T) -> Request<T> {
        let mut r = Request::new(message);
        if let Ok(ns) = self.namespace.parse() {
            r.metadata_mut().insert("containerd-namespace", ns);
        }
        r
    }

    fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }

    fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }

    fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }

    async fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let mut stream = ContentClient::new(self.channel.clone())
            .read(self.req(ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            }))
            .await
            .with_context(|| format!("Content.Read {digest}"))?
            .into_inner();
        let mut data = Vec::new();
        while let Some(chunk) = stream.message().await? {
            data.extend_from_slice(&chunk.data);
        }
        Ok(data)
    }

    /// Resolves `name` to its config and chain id, and checks the snapshot is unpacked.
    pub async fn image(&self, name: &str) -> Result<ImageInfo> {
        let image = ImagesClient::new(self.channel.clone())
            .get(self.req(GetImageRequest { name: name.into() }))
            .await
            .with_context(|| format!("Images.Get {name}"))?
            .into_inner()
            .image
            .ok_or_else(|| anyhow!("no image {name}"))?;
        let target = image
            .target
            .ok_or_else(|| anyhow!("image {name} has no target"))?;
        let mut doc: Value = serde_json::from_slice(&self.read_blob(&target.digest).await?)?;
        if doc.get("manifests").is_some() {
            // An index: the one manifest this host runs (linux/amd64 or wasm), else the first.
            let manifests = doc["manifests"].as_array().cloned().unwrap_or_default();
            let pick = manifests
                .iter()
                .find(|m| {
                    let arch = m["platform"]["architecture"].as_str().unwrap_or_default();
                    arch == "amd64" || arch == "wasm"
                })
                .or(manifests.first())
                .ok_or_else(|| anyhow!("image {name}: empty index"))?;
            let digest = pick["digest"].as_str().unwrap_or_default().to_string();
            doc = serde_json::from_slice(&self.read_blob(&digest).await?)?;
        }
        let config_digest = doc["config"]["digest"]
            .as_str()
            .ok_or_else(|| anyhow!("image {name}: manifest without config"))?
            .to_string();
        let config: Value = serde_json::from_slice(&self.read_blob(&config_digest).await?)?;
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let diff_ids = strings(&config["rootfs"]["diff_ids"]);
        let chain_id = chain_id(&diff_ids).ok_or_else(|| anyhow!("image {name}: no layers"))?;
        let c = &config["config"];
        let mut argv = strings(&c["Entrypoint"]);
        argv.extend(strings(&c["Cmd"]));
        let cwd = c["WorkingDir"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("/")
            .to_string();
        self.snapshots()
            .stat(self.req(StatSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: chain_id.clone(),
            }))
            .await
            .with_context(|| format!("image {name} is not unpacked: no snapshot {chain_id}"))?;
        Ok(ImageInfo {
            name: name.into(),
            chain_id,
            argv,
            env: strings(&c["Env"]),
            cwd,
        })
    }

    /// Containers.Create with the spec `spec` (JSON), runtime `runtime` (and its options),
    /// rootfs snapshot `id` of the overlayfs snapshotter.
    pub async fn create_container(
        &self,
        id: &str,
        image: &str,
        runtime: &str,
        options: Option<Any>,
        spec: &Value,
    ) -> Result<(), CallError> {
        let container = Container {
            id: id.into(),
            image: image.into(),
            runtime: Some(Runtime {
                name: runtime.into(),
                options,
            }),
            spec: Some(Any {
                type_url: SPEC_TYPE.into(),
                value: serde_json::to_vec(spec).unwrap_or_default(),
            }),
            snapshotter: SNAPSHOTTER.into(),
            snapshot_key: id.into(),
            ..Default::default()
        };
        timed(
            "Containers.Create",
            self.containers().create(self.req(CreateContainerRequest {
                container: Some(container),
            })),
        )
        .await
        .map(drop)
    }

    /// Snapshots.Prepare of an active snapshot `key` on `parent`; its mounts.
    pub async fn prepare(&self, key: &str, parent: &str) -> Result<Vec<Mount>, CallError> {
        timed(
            "Snapshots.Prepare",
            self.snapshots().prepare(self.req(PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.into(),
                parent: parent.into(),
                labels: HashMap::new(),
            })),
        )
        .await
        .map(|r| r.mounts)
    }

    /// Tasks.Create with `rootfs`, no stdin, stdout and stderr to `out` (empty: none).
    pub async fn create_task(
        &self,
        id: &str,
        rootfs: Vec<Mount>,
        out: [String; 2],
    ) -> Result<u32, CallError> {
        let [stdout, stderr] = out;
        timed(
            "Tasks.Create",
            self.tasks().create(self.req(CreateTaskRequest {
                container_id: id.into(),
                rootfs,
                stdout,
                stderr,
                ..Default::default()
            })),
        )
        .await
        .map(|r| r.pid)
    }

    /// Tasks.Start of the task (`exec_id` empty) or of one of its execs.
    pub async fn start(&self, id: &str, exec_id: &str) -> Result<u32, CallError> {
        timed(
            "Tasks.Start",
            self.tasks().start(self.req(StartRequest {
                container_id: id.into(),
                exec_id: exec_id.into(),
            })),
        )
        .await
        .map(|r| r.pid)
    }

    /// Tasks.Wait; the exit status.
    pub async fn wait(&self, id: &str, exec_id: &str) -> Result<u32, CallError> {
        timed(
            "Tasks.Wait",
            self.tasks().wait(self.req(WaitRequest {
                container_id: id.into(),
                exec_id: exec_id.into(),
            })),
        )
        .await
        .map(|r| r.exit_status)
    }

    /// Tasks.Kill with `signal`.
    pub async fn kill(&self, id: &str, signal: u32) -> Result<(), CallError> {
        timed(
            "Tasks.Kill",
            self.tasks().kill(self.req(KillRequest {
                container_id: id.into(),
                exec_id: String::new(),
                signal,
                all: false,
            })),
        )
        .await
        .map(drop)
    }

    /// Tasks.Delete; the exit status.
    pub async fn delete_task(&self, id: &str) -> Result<u32, CallError> {
        timed(
            "Tasks.Delete",
            self.tasks().delete(self.req(DeleteTaskRequest {
                container_id: id.into(),
            })),
        )
        .await
        .map(|r| r.exit_status)
    }

    /// Tasks.Exec of `process` (an OCI process, JSON) as `exec_id`, no stdin, stdout and
    /// stderr to `out`.
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        process: &Value,
        out: [String; 2],
    ) -> Result<(), CallError> {
        let [stdout, stderr] = out;
        timed(
            "Tasks.Exec",
            self.tasks().exec(self.req(ExecProcessRequest {
                container_id: id.into(),
                exec_id: exec_id.into(),
                stdout,
                stderr,
                spec: Some(Any {
                    type_url: PROCESS_TYPE.into(),
                    value: serde_json::to_vec(process).unwrap_or_default(),
                }),
                ..Default::default()
            })),
        )
        .await
        .map(drop)
    }

    /// Tasks.DeleteProcess of an exec; its exit status.
    pub async fn delete_process(&self, id: &str, exec_id: &str) -> Result<u32, CallError> {
        timed(
            "Tasks.DeleteProcess",
            self.tasks().delete_process(self.req(DeleteProcessRequest {
                container_id: id.into(),
                exec_id: exec_id.into(),
            })),
        )
        .await
        .map(|r| r.exit_status)
    }

    /// Containers.Delete.
    pub async fn delete_container(&self, id: &str) -> Result<(), CallError> {
        timed(
            "Containers.Delete",
            self.containers()
                .delete(self.req(DeleteContainerRequest { id: id.into() })),
        )
        .await
        .map(drop)
    }

    /// Snapshots.Remove.
    pub async fn remove_snapshot(&self, key: &str) -> Result<(), CallError> {
        timed(
            "Snapshots.Remove",
            self.snapshots().remove(self.req(RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.into(),
            })),
        )
        .await
        .map(drop)
    }

    /// A synchronous garbage collection, as `ctr leases delete --sync` makes one: an empty
    /// lease created and deleted with `sync`, whose delete returns once the collector has
    /// run, the snapshotters' removed directories cleaned up included (containerd 1.7's
    /// overlayfs removes them asynchronously, at the next collection).
    pub async fn gc(&self, lease: &str) -> Result<()> {
        let mut leases = LeasesClient::new(self.channel.clone());
        leases
            .create(self.req(LeaseCreateRequest {
                id: lease.into(),
                labels: HashMap::new(),
            }))
            .await
            .context("Leases.Create")?;
        leases
            .delete(self.req(LeaseDeleteRequest {
                id: lease.into(),
                sync: true,
            }))
            .await
            .context("Leases.Delete (sync)")?;
        Ok(())
    }

    /// Ids of the namespace's tasks.
    pub async fn task_ids(&self) -> Result<Vec<String>> {
        let r = self
            .tasks()
            .list(self.req(ListTasksRequest::default()))
            .await?
            .into_inner();
        Ok(r.tasks.into_iter().map(|t| t.id).collect())
    }

    /// Ids of the namespace's containers.
    pub async fn container_ids(&self) -> Result<Vec<String>> {
        let r = self
            .containers()
            .list(self.req(ListContainersRequest::default()))
            .await?
            .into_inner();
        Ok(r.containers.into_iter().map(|c| c.id).collect())
    }

    /// Keys of the snapshotter's active snapshots (kind 2 in the API's enum).
    pub async fn active_snapshots(&self) -> Result<Vec<String>> {
        let mut stream = self
            .snapshots()
            .list(self.req(ListSnapshotsRequest {
                snapshotter: SNAPSHOTTER.into(),
                filters: Vec::new(),
            }))
            .await?
            .into_inner();
        let mut keys = Vec::new();
        while let Some(page) = stream.message().await? {
            keys.extend(
                page.info
                    .into_iter()
                    .filter(|i| i.kind == 2)
                    .map(|i| i.name),
            );
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain id of one layer is its diff id; of two, the sha256 of "a b".
    #[test]
    fn chain_ids() {
        let a = "sha256:aa".to_string();
        assert_eq!(chain_id(std::slice::from_ref(&a)), Some(a.clone()));
        let two = chain_id(&[a, "sha256:bb".into()]).unwrap_or_default();
        assert_eq!(
            two,
            format!("sha256:{:x}", Sha256::digest("sha256:aa sha256:bb"))
        );
    }

    /// The runc options carry the root as field 7, length-delimited.
    #[test]
    fn runc_options_encoding() {
        let any = runc_root_options("/tmp/r");
        assert_eq!(any.value, b"\x3a\x06/tmp/r");
    }
}
