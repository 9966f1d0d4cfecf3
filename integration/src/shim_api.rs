//! Talking to a task's shim directly over its ttrpc socket, for calls ctr cannot make.
//!
//! Neither ctr 1.6 nor 1.7 has `ctr task update`, yet the Task service's `Update` is what the
//! CRI calls for `UpdateContainerResources`. [`Containerd::shim_update`] sends the same request
//! containerd would forward: a `LinuxResources` as JSON in an `Any` of the type containerd's
//! typeurl registers for it. ctr sends `ResizePty` only with its own terminal's size;
//! [`Containerd::shim_resize_pty`] sends any. ctr 2.x no longer prints the status code of a
//! failed call ("process already finished", where ctr 1.x says "...: not found");
//! [`Containerd::shim_kill`] returns the code itself. The shim's address comes from the
//! `address` file containerd keeps in the task bundle.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use containerd_shim_protos::api::{
    ConnectRequest, DeleteRequest, ExecProcessRequest, KillRequest, ResizePtyRequest, StartRequest,
    UpdateTaskRequest, WaitRequest,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::ttrpc::{self, context, Client, Code};
use containerd_shim_protos::TaskClient;

use crate::containerd::Containerd;

/// Type URL containerd's typeurl gives `specs.LinuxResources` (marshalled as JSON).
pub const LINUX_RESOURCES_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

/// Type URL containerd's typeurl gives `specs.Process` (marshalled as JSON), an exec's spec.
const PROCESS_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// Deadline of one ttrpc call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl Containerd {
    /// The task bundle directory of container `id` in this daemon's state dir.
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.dir()
            .join("state/io.containerd.runtime.v2.task")
            .join(self.namespace())
            .join(id)
    }

    /// The ttrpc address (`unix:///...`) of the shim serving task `id`.
    ///
    /// # Errors
    /// When the bundle has no readable `address` file.
    pub fn shim_address(&self, id: &str) -> Result<String> {
        let file = self.bundle_dir(id).join("address");
        let address = fs::read_to_string(&file)
            .with_context(|| format!("read the shim address in {}", file.display()))?;
        Ok(address.trim().to_string())
    }

    /// A Task service client on the shim of task `id`.
    fn shim_tasks(&self, id: &str) -> Result<TaskClient> {
        let address = self.shim_address(id)?;
        let client =
            Client::connect(&address).with_context(|| format!("connect to shim {address}"))?;
        Ok(TaskClient::new(client))
    }

    /// Sends `Update` for task `id` with `resources` (OCI `LinuxResources` JSON) to its shim.
    ///
    /// # Errors
    /// When the shim cannot be reached or refuses the update (with its message).
    pub fn shim_update(&self, id: &str, resources: &serde_json::Value) -> Result<()> {
        let tasks = self.shim_tasks(id)?;
        let req = UpdateTaskRequest {
            id: id.to_string(),
            resources: Some(Any {
                type_url: LINUX_RESOURCES_URL.to_string(),
                value: serde_json::to_vec(resources)?,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        tasks
            .update(context::with_duration(CALL_TIMEOUT), &req)
            .map_err(|e| anyhow!("shim Update of {id} with {resources}: {e}"))?;
        Ok(())
    }

    /// Sends `ResizePty` for task `id` (its init with an empty `exec_id`, else that exec).
    ///
    /// # Errors
    /// When the shim cannot be reached or refuses (with its message).
    pub fn shim_resize_pty(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let req = ResizePtyRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            width,
            height,
            ..Default::default()
        };
        self.shim_tasks(id)?
            .resize_pty(context::with_duration(CALL_TIMEOUT), &req)
            .map_err(|e| anyhow!("shim ResizePty of {id} {exec_id:?} to {width}x{height}: {e}"))?;
        Ok(())
    }

    /// Sends `Kill` of `signal` to the init of task `id`; returns the status code of the
    /// shim's answer (`Code::OK` when it took the signal).
    ///
    /// # Errors
    /// When the shim cannot be reached or the call fails other than with a status.
    pub fn shim_kill(&self, id: &str, signal: u32) -> Result<Code> {
        let req = KillRequest {
            id: id.to_string(),
            signal,
            ..Default::default()
        };
        match self
            .shim_tasks(id)?
            .kill(context::with_duration(CALL_TIMEOUT), &req)
        {
            Ok(_) => Ok(Code::OK),
            Err(ttrpc::Error::RpcStatus(status)) => Ok(status.code()),
            Err(e) => Err(anyhow!("shim Kill of {id} with signal {signal}: {e}")),
        }
    }

    /// Runs exec `exec_id` of `process` (an OCI `Process` as JSON) in task `id` through its
    /// shim, its stdout the fifo `stdout` (which nobody need read meanwhile): Exec, Start and
    /// Wait, then Delete. Returns its exit status.
    ///
    /// # Errors
    /// When the shim cannot be reached or a call fails (with its message).
    pub fn shim_exec(
        &self,
        id: &str,
        exec_id: &str,
        process: &serde_json::Value,
        stdout: &std::path::Path,
    ) -> Result<u32> {
        let tasks = self.shim_tasks(id)?;
        let ctx = || context::with_duration(CALL_TIMEOUT);
        let req = ExecProcessRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            stdout: stdout.to_string_lossy().into_owned(),
            spec: Some(Any {
                type_url: PROCESS_URL.to_string(),
                value: serde_json::to_vec(process)?,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        tasks
            .exec(ctx(), &req)
            .map_err(|e| anyhow!("shim Exec {exec_id} in {id}: {e}"))?;
        let start = StartRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        tasks
            .start(ctx(), &start)
            .map_err(|e| anyhow!("shim Start of exec {exec_id} in {id}: {e}"))?;
        let wait = WaitRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let exit = tasks
            .wait(ctx(), &wait)
            .map_err(|e| anyhow!("shim Wait for exec {exec_id} in {id}: {e}"))?;
        let delete = DeleteRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        tasks
            .delete(ctx(), &delete)
            .map_err(|e| anyhow!("shim Delete of exec {exec_id} in {id}: {e}"))?;
        Ok(exit.exit_status)
    }

    /// The pid of the shim serving task `id` (its answer to Connect).
    ///
    /// # Errors
    /// When the shim cannot be reached or the call fails.
    pub fn shim_pid(&self, id: &str) -> Result<u32> {
        let req = ConnectRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let resp = self
            .shim_tasks(id)?
            .connect(context::with_duration(CALL_TIMEOUT), &req)
            .map_err(|e| anyhow!("shim Connect for {id}: {e}"))?;
        Ok(resp.shim_pid)
    }
}
