//! Task events to containerd: [`crate::task::Event`] as the `/tasks/*` protobuf events.

use std::time::SystemTime;

use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::topics;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;
use log::warn;

use crate::task::{Event, EventSink};

/// Publishes to containerd through the shim's ttrpc events client.
pub struct Publisher {
    remote: RemotePublisher,
    namespace: String,
}

impl Publisher {
    /// Events for `namespace`.
    pub fn new(remote: RemotePublisher, namespace: &str) -> Self {
        Self {
            remote,
            namespace: namespace.to_string(),
        }
    }
}

/// A protobuf timestamp.
pub fn timestamp(at: SystemTime) -> Timestamp {
    let d = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

/// The topic and protobuf message for an event.
pub fn to_proto(event: Event) -> (&'static str, Box<dyn MessageDyn>) {
    match event {
        Event::Created {
            id,
            bundle,
            pid,
            stdio: [stdin, stdout, stderr],
        } => (
            topics::TASK_CREATE_EVENT_TOPIC,
            Box::new(TaskCreate {
                container_id: id,
                bundle: bundle.to_string_lossy().into_owned(),
                pid,
                io: Some(TaskIO {
                    stdin,
                    stdout,
                    stderr,
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            }),
        ),
        Event::Started { id, pid } => (
            topics::TASK_START_EVENT_TOPIC,
            Box::new(TaskStart {
                container_id: id,
                pid,
                ..Default::default()
            }),
        ),
        Event::ExecAdded { id, exec_id } => (
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            Box::new(TaskExecAdded {
                container_id: id,
                exec_id,
                ..Default::default()
            }),
        ),
        Event::ExecStarted { id, exec_id, pid } => (
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            Box::new(TaskExecStarted {
                container_id: id,
                exec_id,
                pid,
                ..Default::default()
            }),
        ),
        Event::Exited {
            id,
            exec_id,
            pid,
            code,
            at,
        } => (
            topics::TASK_EXIT_EVENT_TOPIC,
            Box::new(TaskExit {
                // containerd names an exec by its exec id, the init process by the container id.
                id: if exec_id.is_empty() {
                    id.clone()
                } else {
                    exec_id
                },
                container_id: id,
                pid,
                exit_status: code,
                exited_at: Some(timestamp(at)).into(),
                ..Default::default()
            }),
        ),
        Event::Deleted { id, pid, code, at } => (
            topics::TASK_DELETE_EVENT_TOPIC,
            Box::new(TaskDelete {
                container_id: id.clone(),
                id,
                pid,
                exit_status: code,
                exited_at: Some(timestamp(at)).into(),
                ..Default::default()
            }),
        ),
        Event::OomKilled { id } => (
            topics::TASK_OOM_EVENT_TOPIC,
            Box::new(TaskOOM {
                container_id: id,
                ..Default::default()
            }),
        ),
        Event::Paused { id } => (
            topics::TASK_PAUSED_EVENT_TOPIC,
            Box::new(TaskPaused {
                container_id: id,
                ..Default::default()
            }),
        ),
        Event::Resumed { id } => (
            topics::TASK_RESUMED_EVENT_TOPIC,
            Box::new(TaskResumed {
                container_id: id,
                ..Default::default()
            }),
        ),
    }
}

#[async_trait::async_trait]
impl EventSink for Publisher {
    async fn publish(&self, event: Event) {
        let (topic, message) = to_proto(event);
        if let Err(e) = self
            .remote
            .publish(Context::default(), topic, &self.namespace, message)
            .await
        {
            warn!("publishing {topic} failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_carry_status_and_time() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1500);
        let (topic, message) = to_proto(Event::Exited {
            id: "c".into(),
            exec_id: "e1".into(),
            pid: 9,
            code: 143,
            at,
        });
        assert_eq!(topic, "/tasks/exit");
        let exit = message.downcast_ref::<TaskExit>().unwrap();
        assert_eq!((exit.exit_status, exit.pid), (143, 9));
        assert_eq!((exit.container_id.as_str(), exit.id.as_str()), ("c", "e1"));
        assert_eq!(exit.exited_at.seconds, 1);
        assert_eq!(exit.exited_at.nanos, 500_000_000);
    }

    #[test]
    fn every_event_has_its_topic() {
        let topics: Vec<_> = [
            Event::Started {
                id: "c".into(),
                pid: 1,
            },
            Event::Paused { id: "c".into() },
            Event::Resumed { id: "c".into() },
            Event::OomKilled { id: "c".into() },
        ]
        .into_iter()
        .map(|e| to_proto(e).0)
        .collect();
        assert_eq!(
            topics,
            [
                "/tasks/start",
                "/tasks/paused",
                "/tasks/resumed",
                "/tasks/oom"
            ]
        );
        let (_, oom) = to_proto(Event::OomKilled { id: "c".into() });
        assert_eq!(oom.downcast_ref::<TaskOOM>().unwrap().container_id, "c");
    }
}
