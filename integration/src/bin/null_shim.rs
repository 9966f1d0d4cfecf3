//! `containerd-shim-null-v1`: a shim v2 that runs nothing, the floor of `make trace`.
//!
//! It does what containerd needs from any shim and no more: it starts and serves its socket,
//! answers Create with its own pid, and on Start reports the task started and at once exited
//! with 0, publishing the same `/tasks/*` events a real shim does. Whatever a `ctr run --rm`
//! through it costs is containerd's and ctr's fixed cost plus one shim exec: what no runtime
//! can go below. Run it by path: `ctr run --runtime /path/to/containerd-shim-null-v1`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use containerd_shim::api::{
    ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse, DeleteRequest,
    DeleteResponse, Empty, KillRequest, ShutdownRequest, StartRequest, StartResponse, StateRequest,
    StateResponse, Status, WaitRequest, WaitResponse,
};
use containerd_shim::asynchronous::{publisher::RemotePublisher, spawn, ExitSignal, Shim};
use containerd_shim::protos::events::task::{TaskCreate, TaskDelete, TaskExit, TaskStart};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::topics;
use containerd_shim::{Config, Context, Error, Flags, StartOpts, Task, TtrpcContext, TtrpcResult};
use tokio::sync::watch;

const RUNTIME: &str = "io.containerd.null.v1";

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(rt) => rt.block_on(containerd_shim::asynchronous::run::<NullShim>(
            RUNTIME, None,
        )),
        Err(e) => eprintln!("containerd-shim-null-v1: {e}"),
    }
}

struct NullShim {
    exit: Arc<ExitSignal>,
    namespace: String,
    socket: String,
    id: String,
}

#[async_trait]
impl Shim for NullShim {
    type T = NullTasks;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        NullShim {
            exit: Arc::new(ExitSignal::default()),
            namespace: args.namespace.clone(),
            socket: args.socket.clone(),
            id: args.id.clone(),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let id = opts.id.clone();
        spawn(opts, &id, Vec::new()).await
    }

    async fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        Ok(DeleteResponse {
            exit_status: 137,
            exited_at: Some(now()).into(),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> NullTasks {
        // `make trace` takes the moment the shim serves from this line.
        log::info!("{}: null shim serving", self.id);
        NullTasks {
            tasks: Arc::new(Mutex::new(HashMap::new())),
            publisher: Arc::new(publisher),
            namespace: self.namespace.clone(),
            exit: self.exit.clone(),
            socket: self.socket.clone(),
        }
    }
}

/// A task: its bundle and, once Started (or killed), its exit time, watched by Wait.
struct NullTask {
    bundle: String,
    exited: watch::Sender<Option<Timestamp>>,
}

#[derive(Clone)]
struct NullTasks {
    tasks: Arc<Mutex<HashMap<String, NullTask>>>,
    publisher: Arc<RemotePublisher>,
    namespace: String,
    exit: Arc<ExitSignal>,
    /// The `unix://` address served, removed at Shutdown: containerd removes the bundle, and
    /// with it the file containerd-shim would find it by, once Shutdown returns.
    socket: String,
}

impl NullTasks {
    async fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        let _ = self
            .publisher
            .publish(Context::default(), topic, &self.namespace, event)
            .await;
    }

    fn watch(&self, id: &str) -> TtrpcResult<watch::Receiver<Option<Timestamp>>> {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        Ok(tasks
            .get(id)
            .ok_or_else(|| not_found(id))?
            .exited
            .subscribe())
    }

    /// Marks `id` exited now, if it was not; says whether this call did.
    fn finish(&self, id: &str) -> TtrpcResult<bool> {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let task = tasks.get(id).ok_or_else(|| not_found(id))?;
        Ok(task.exited.send_if_modified(|at| {
            at.is_none() && {
                *at = Some(now());
                true
            }
        }))
    }

    async fn publish_exit(&self, id: &str) {
        let exited_at = self.watch(id).ok().and_then(|w| w.borrow().clone());
        let event = TaskExit {
            container_id: id.to_string(),
            id: id.to_string(),
            pid: std::process::id(),
            exit_status: 0,
            exited_at: exited_at.into(),
            ..Default::default()
        };
        self.publish(topics::TASK_EXIT_EVENT_TOPIC, Box::new(event))
            .await;
    }
}

#[async_trait]
impl Task for NullTasks {
    async fn create(
        &self,
        _: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        let task = NullTask {
            bundle: req.bundle.clone(),
            exited: watch::channel(None).0,
        };
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(req.id.clone(), task);
        let event = TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle,
            pid: std::process::id(),
            ..Default::default()
        };
        self.publish(topics::TASK_CREATE_EVENT_TOPIC, Box::new(event))
            .await;
        Ok(CreateTaskResponse {
            pid: std::process::id(),
            ..Default::default()
        })
    }

    async fn start(&self, _: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let event = TaskStart {
            container_id: req.id.clone(),
            pid: std::process::id(),
            ..Default::default()
        };
        self.publish(topics::TASK_START_EVENT_TOPIC, Box::new(event))
            .await;
        if self.finish(&req.id)? {
            self.publish_exit(&req.id).await;
        }
        Ok(StartResponse {
            pid: std::process::id(),
            ..Default::default()
        })
    }

    async fn state(&self, _: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let exited = self.watch(&req.id)?.borrow().clone();
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let bundle = tasks.get(&req.id).map(|t| t.bundle.clone());
        Ok(StateResponse {
            id: req.id.clone(),
            bundle: bundle.unwrap_or_default(),
            pid: std::process::id(),
            status: if exited.is_some() {
                Status::STOPPED
            } else {
                Status::CREATED
            }
            .into(),
            exited_at: exited.clone().into(),
            ..Default::default()
        })
    }

    async fn kill(&self, _: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        if self.finish(&req.id)? {
            self.publish_exit(&req.id).await;
        }
        Ok(Empty::new())
    }

    async fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let mut exited = self.watch(&req.id)?;
        let at = exited
            .wait_for(Option::is_some)
            .await
            .map_err(|_| not_found(&req.id))?
            .clone()
            .unwrap_or_else(now);
        Ok(WaitResponse {
            exited_at: Some(at).into(),
            ..Default::default()
        })
    }

    async fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let task = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&req.id)
            .ok_or_else(|| not_found(&req.id))?;
        let at = task.exited.borrow().clone().unwrap_or_else(now);
        let event = TaskDelete {
            container_id: req.id.clone(),
            pid: std::process::id(),
            exited_at: Some(at.clone()).into(),
            ..Default::default()
        };
        self.publish(topics::TASK_DELETE_EVENT_TOPIC, Box::new(event))
            .await;
        Ok(DeleteResponse {
            pid: std::process::id(),
            exited_at: Some(at).into(),
            ..Default::default()
        })
    }

    async fn connect(&self, _: &TtrpcContext, _: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: std::process::id(),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _: &TtrpcContext, _: ShutdownRequest) -> TtrpcResult<Empty> {
        if self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
        {
            let path = self.socket.trim_start_matches("unix://");
            let _ = std::fs::remove_file(path);
            self.exit.signal();
        }
        Ok(Empty::new())
    }
}

fn not_found(id: &str) -> ttrpc::Error {
    Error::NotFoundError(format!("task {id}")).into()
}

/// The time now, as the events carry it.
fn now() -> Timestamp {
    containerd_shim::util::timestamp().unwrap_or_default()
}
