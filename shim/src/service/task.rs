//! The containerd Task API over ttrpc: thin wrappers that turn protobuf requests into calls on
//! [`crate::task::Tasks`] and results back into protobuf, errors through [`crate::error`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PauseRequest,
    PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest,
    StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse, Status,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim::protos::api::{CheckpointTaskRequest, ProcessInfo};
use containerd_shim::{Task, TtrpcContext, TtrpcResult};
use oci_spec::runtime::LinuxResources;

use super::events::{timestamp, Publisher};
use super::lifetime::Lifetime;
use super::logger::LogFollower;
use super::metrics;
use crate::error::{Error, Result};
use crate::idle::IdleRelease;
use crate::instance::ContainerFactory;
use crate::task::{CreateRequest, ExecRequest, RootfsMount, Tasks};

/// The tasks of this shim, as containerd sees them.
pub type ShimTasks = Tasks<ContainerFactory, Publisher>;

/// The ttrpc Task service.
#[derive(Clone)]
pub struct TaskService {
    tasks: Arc<ShimTasks>,
    /// When the shim exits: told of reservations, Creates and Shutdowns.
    lifetime: Arc<Lifetime>,
    /// Where the shim log goes: told of Creates and Deletes.
    log: Arc<LogFollower>,
    /// Gives back the start's pages once no Start came for a while.
    idle: IdleRelease,
}

/// How long a shim waits after its last Start before it releases the start's pages.
const RELEASE_WHEN_QUIET: Duration = Duration::from_secs(2);

impl TaskService {
    /// Serves `tasks`, exiting as `lifetime` decides, its log following them.
    pub fn new(tasks: Arc<ShimTasks>, lifetime: Arc<Lifetime>, log: Arc<LogFollower>) -> Self {
        Self {
            tasks,
            lifetime,
            log,
            idle: IdleRelease::after(RELEASE_WHEN_QUIET),
        }
    }
}

/// containerd sends an exec's process as the JSON of a runtime-spec `Process`.
fn exec_request(req: &ExecProcessRequest) -> Result<ExecRequest> {
    if req.exec_id.is_empty() {
        return Err(Error::InvalidArgument("exec: the exec id is empty".into()));
    }
    let value = req
        .spec
        .as_ref()
        .map(|any| any.value.as_slice())
        .unwrap_or_default();
    let process = serde_json::from_slice(value).map_err(|e| {
        Error::InvalidArgument(format!(
            "exec {}: the process spec is not valid JSON: {e}",
            req.exec_id
        ))
    })?;
    Ok(ExecRequest {
        exec_id: req.exec_id.clone(),
        process,
        stdin: req.stdin.clone(),
        stdout: req.stdout.clone(),
        stderr: req.stderr.clone(),
        terminal: req.terminal,
    })
}

fn status(s: crate::task::Status) -> Status {
    match s {
        crate::task::Status::Created => Status::CREATED,
        crate::task::Status::Running => Status::RUNNING,
        crate::task::Status::Paused => Status::PAUSED,
        crate::task::Status::Stopped => Status::STOPPED,
    }
}

fn create_request(req: &CreateTaskRequest) -> Result<CreateRequest> {
    if req.id.is_empty() {
        return Err(Error::InvalidArgument(
            "create: the container id is empty".into(),
        ));
    }
    if !req.checkpoint.is_empty() {
        return Err(Error::Unimplemented("restoring from a checkpoint"));
    }
    Ok(CreateRequest {
        id: req.id.clone(),
        bundle: PathBuf::from(&req.bundle),
        rootfs: req
            .rootfs
            .iter()
            .map(|m| RootfsMount {
                kind: m.type_.clone(),
                source: m.source.clone(),
                options: m.options.to_vec(),
            })
            .collect(),
        stdin: req.stdin.clone(),
        stdout: req.stdout.clone(),
        stderr: req.stderr.clone(),
        terminal: req.terminal,
    })
}

/// containerd sends new limits as the JSON of a runtime-spec `LinuxResources`.
fn resources(req: &UpdateTaskRequest) -> Result<LinuxResources> {
    let value = req
        .resources
        .as_ref()
        .map(|any| any.value.as_slice())
        .unwrap_or(b"{}");
    serde_json::from_slice(value).map_err(|e| {
        Error::InvalidArgument(format!(
            "update: resources are not LinuxResources JSON: {e}"
        ))
    })
}

#[async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        let created = match create_request(&req) {
            Ok(r) => {
                let new = self.log.created(&r.id, &r.bundle);
                let created = self.tasks.create(r).await;
                if new && created.is_err() {
                    self.log.deleted(&req.id);
                }
                created
            }
            Err(e) => Err(e),
        };
        self.lifetime.created(&req.id);
        let pid = created?;
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(&self, _: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let pid = match req.exec_id.as_str() {
            "" => self.tasks.start(&req.id).await?,
            exec_id => self.tasks.start_exec(&req.id, exec_id).await?,
        };
        self.idle.touch();
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn state(&self, _: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let s = match req.exec_id.as_str() {
            "" => self.tasks.state(&req.id)?,
            exec_id => self.tasks.exec_state(&req.id, exec_id)?,
        };
        let [stdin, stdout, stderr] = s.stdio;
        Ok(StateResponse {
            id: s.id,
            bundle: s.bundle.to_string_lossy().into_owned(),
            pid: s.pid,
            status: status(s.status).into(),
            stdin,
            stdout,
            stderr,
            exit_status: s.exit.map(|e| e.code).unwrap_or_default(),
            exited_at: s.exit.map(|e| timestamp(e.at)).into(),
            exec_id: s.exec_id,
            ..Default::default()
        })
    }

    async fn kill(&self, _: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        match req.exec_id.as_str() {
            "" => self.tasks.kill(&req.id, req.signal, req.all).await?,
            exec_id => self.tasks.kill_exec(&req.id, exec_id, req.signal).await?,
        }
        Ok(Empty::new())
    }

    async fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let exit = match req.exec_id.as_str() {
            "" => self.tasks.wait(&req.id).await?,
            exec_id => self.tasks.wait_exec(&req.id, exec_id).await?,
        };
        Ok(WaitResponse {
            exit_status: exit.code,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        })
    }

    async fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let (pid, exit) = match req.exec_id.as_str() {
            "" => {
                let _held = self.lifetime.hold_while_deleting(&req.id);
                let deleted = self.tasks.delete(&req.id).await?;
                self.log.deleted(&req.id);
                deleted
            }
            exec_id => self.tasks.delete_exec(&req.id, exec_id)?,
        };
        Ok(DeleteResponse {
            pid,
            exit_status: exit.code,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        })
    }

    async fn pids(&self, _: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let processes = self.tasks.pids(&req.id).await?;
        Ok(PidsResponse {
            processes: processes
                .into_iter()
                .map(|pid| ProcessInfo {
                    pid,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    async fn pause(&self, _: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        self.tasks.pause(&req.id).await?;
        Ok(Empty::new())
    }

    async fn resume(&self, _: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        self.tasks.resume(&req.id).await?;
        Ok(Empty::new())
    }

    async fn stats(&self, _: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let (layout, stats) = self.tasks.stats(&req.id).await?;
        Ok(StatsResponse {
            stats: Some(metrics::to_any(layout, &stats)?).into(),
            ..Default::default()
        })
    }

    async fn update(&self, _: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        self.tasks.update(&req.id, resources(&req)?).await?;
        Ok(Empty::new())
    }

    async fn close_io(&self, _: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        match req.exec_id.as_str() {
            "" => self.tasks.close_stdin(&req.id)?,
            exec_id => self.tasks.close_exec_stdin(&req.id, exec_id)?,
        }
        Ok(Empty::new())
    }

    async fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        self.tasks.exec(&req.id, exec_request(&req)?).await?;
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        match req.exec_id.as_str() {
            "" => self.tasks.resize_pty(&req.id, req.width, req.height)?,
            exec_id => self
                .tasks
                .resize_exec_pty(&req.id, exec_id, req.width, req.height)?,
        }
        Ok(Empty::new())
    }

    async fn checkpoint(&self, _: &TtrpcContext, _: CheckpointTaskRequest) -> TtrpcResult<Empty> {
        Err(Error::Unimplemented("checkpoint").into())
    }

    async fn connect(&self, _: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let task_pid = match self.tasks.state(&req.id) {
            Ok(s) => s.pid,
            // A group's next container (see `lifetime`).
            Err(_) if !self.lifetime.reserve(&req.id) => {
                return Err(Error::Unavailable("the group shim is shutting down".into()).into())
            }
            Err(_) => 0,
        };
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: crate::VERSION.to_string(),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _: &TtrpcContext, _: ShutdownRequest) -> TtrpcResult<Empty> {
        self.lifetime.idle();
        Ok(Empty::new())
    }
}

#[cfg(test)]
mod tests {
    use containerd_shim::protos::protobuf::well_known_types::any::Any;

    use super::*;

    #[test]
    fn update_resources_are_parsed_from_json() {
        let req = UpdateTaskRequest {
            resources: Some(Any {
                value: br#"{"memory":{"limit":67108864},"cpu":{"quota":50000,"period":100000}}"#
                    .to_vec(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let r = resources(&req).unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(50000));
    }

    #[test]
    fn bad_update_json_names_the_problem() {
        let req = UpdateTaskRequest {
            resources: Some(Any {
                value: b"nope".to_vec(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let err = resources(&req).unwrap_err();
        assert!(err.to_string().contains("not LinuxResources JSON"), "{err}");
    }

    #[test]
    fn exec_process_json_is_parsed_and_errors_name_the_exec() {
        let mut req = ExecProcessRequest {
            exec_id: "e1".into(),
            spec: Some(Any {
                value: br#"{"args":["/bin/tool.wasm","x"],"cwd":"/","user":{"uid":0,"gid":0}}"#
                    .to_vec(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let exec = exec_request(&req).unwrap();
        assert_eq!(exec.process.args().as_ref().unwrap()[0], "/bin/tool.wasm");
        req.spec = Some(Any {
            value: b"{".to_vec(),
            ..Default::default()
        })
        .into();
        let err = exec_request(&req).unwrap_err();
        assert!(
            err.to_string().contains("exec e1: the process spec"),
            "{err}"
        );
    }

    #[test]
    fn create_requires_an_id() {
        let err = create_request(&CreateTaskRequest::default()).unwrap_err();
        assert!(err.to_string().contains("container id is empty"));
    }
}
