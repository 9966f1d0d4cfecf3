//! `ctr events` in the background: the event stream of one daemon, parsed per container.
//!
//! [`Containerd::events`] spawns ctr, makes sure it is subscribed (it labels the namespace
//! until the `/namespaces/update` event shows up), and returns an [`Events`] that kills
//! ctr when dropped. ctr prints one event per line:
//! `<date> <time> +0000 UTC <namespace> <topic> <json>`.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::containerd::{unique_name, Containerd};
use crate::process::poll;

/// One event line of `ctr events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// containerd namespace.
    pub namespace: String,
    /// `/tasks/create`, `/tasks/exit`...
    pub topic: String,
    /// The event body (JSON).
    pub body: String,
}

impl Event {
    /// Parses one line; `None` for anything that is not an event.
    pub fn parse(line: &str) -> Option<Self> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|w| w.starts_with('/'))?;
        let namespace = (*words.get(at.checked_sub(1)?)?).to_string();
        let topic = words[at].to_string();
        let body = line[line.find(&topic)? + topic.len()..].trim().to_string();
        Some(Self {
            namespace,
            topic,
            body,
        })
    }

    /// True when the body names container `id` (`container_id`, or `id` of container events).
    pub fn is_about(&self, id: &str) -> bool {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&self.body) else {
            return false;
        };
        ["container_id", "id"]
            .iter()
            .any(|k| v.get(k).and_then(|x| x.as_str()) == Some(id))
    }
}

/// A running `ctr events`; see the module docs.
#[derive(Debug)]
pub struct Events {
    child: Option<Child>,
    out: PathBuf,
}

impl Containerd {
    /// Starts `ctr events` and returns once it receives events.
    ///
    /// # Errors
    /// When ctr cannot be spawned or no probe event arrives within 10 s.
    pub fn events(&self) -> Result<Events> {
        let out = self.dir().join(format!("{}.events", unique_name("ev")));
        let mut cmd = self.ctr_command();
        cmd.arg("events")
            .stdin(Stdio::null())
            .stdout(File::create(&out)?)
            .stderr(Stdio::null());
        let events = Events {
            child: Some(cmd.spawn().context("spawn ctr events")?),
            out,
        };
        let mut n = 0;
        poll("ctr events to subscribe", Duration::from_secs(10), || {
            n += 1;
            let label = format!("wasmpod-it-probe={n}");
            self.ctr(["namespaces", "label", self.namespace(), &label])?
                .success()?;
            std::thread::sleep(Duration::from_millis(100));
            Ok(events
                .all()
                .iter()
                .any(|e| e.topic == "/namespaces/update")
                .then_some(()))
        })?;
        Ok(events)
    }
}

impl Events {
    /// Everything ctr printed so far.
    pub fn text(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Every event so far.
    pub fn all(&self) -> Vec<Event> {
        self.text().lines().filter_map(Event::parse).collect()
    }

    /// Topics of the events about container `id`, in order.
    pub fn topics_for(&self, id: &str) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|e| e.is_about(id))
            .map(|e| e.topic)
            .collect()
    }

    /// Waits up to `timeout` for the `/tasks/exit` of container `id`, then checks that a
    /// `/tasks/oom` came before it, as runc's shim sends them (what Kubernetes and Docker
    /// read OOMKilled from).
    ///
    /// # Errors
    /// No exit in time, or no OOM event before it (the message lists what was seen).
    pub fn expect_oom_before_exit(&self, id: &str, timeout: Duration) -> Result<()> {
        let seen = poll(&format!("the /tasks/exit of {id}"), timeout, || {
            let seen = self.topics_for(id);
            Ok(seen.iter().any(|t| t == "/tasks/exit").then_some(seen))
        })?;
        let oom = seen.iter().position(|t| t == "/tasks/oom");
        let exit = seen.iter().position(|t| t == "/tasks/exit");
        anyhow::ensure!(
            matches!((oom, exit), (Some(o), Some(e)) if o < e),
            "{id}: want /tasks/oom before /tasks/exit, got {seen:?}; ctr events:\n{}",
            self.text()
        );
        Ok(())
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_file(&self.out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ctr events line splits into namespace, topic and body, and the body names its task.
    #[test]
    fn parses_event_lines() {
        let line =
            r#"2026-11-24 06:36:28.54 +0000 UTC ns1 /tasks/start {"container_id":"s1","pid":4}"#;
        let e = Event::parse(line);
        assert_eq!(
            e.as_ref().map(|e| (e.namespace.as_str(), e.topic.as_str())),
            Some(("ns1", "/tasks/start"))
        );
        assert!(e
            .as_ref()
            .is_some_and(|e| e.is_about("s1") && !e.is_about("s2")));
        assert_eq!(Event::parse("time=... level=warning"), None);
    }
}
