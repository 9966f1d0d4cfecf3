//! Registry tests against a recording fake instance and a channel event sink.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use tokio::sync::mpsc;

use super::super::api::{CreateRequest, ExitReason, Instance, OutputDrained};
use super::super::api::{ExecProcess, ExecRequest, InstanceFactory};
use super::*;

#[derive(Default)]
struct Fake {
    pid: u32,
    calls: Mutex<Vec<String>>,
    /// What the next exit must wait for (a terminal still being copied out).
    drained: Mutex<Option<OutputDrained>>,
    /// Its cgroup saw an OOM kill.
    oom_killed: bool,
}

struct FakeExec {
    pid: u32,
    fail: bool,
    /// Start takes a while (time for an exit to arrive meanwhile).
    slow: bool,
}

impl ExecProcess for FakeExec {
    fn start(&self) -> Result<u32> {
        if self.fail {
            return Err(Error::InvalidArgument("cannot start".into()));
        }
        if self.slow {
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(self.pid)
    }
    fn kill(&self, _pid: u32, _signal: u32) -> Result<()> {
        Ok(())
    }
    fn close_stdin(&self) {}
    fn resize_pty(&self, _width: u32, _height: u32) -> Result<()> {
        Ok(())
    }
    fn output_drained(&self) -> Option<OutputDrained> {
        None
    }
}

impl Instance for Fake {
    type Stats = u64;
    type Exec = FakeExec;
    fn exec(&self, req: &ExecRequest) -> Result<FakeExec> {
        if req.exec_id == "bad" {
            return Err(Error::InvalidArgument("bad exec".into()));
        }
        Ok(FakeExec {
            pid: self.pid + 1000,
            fail: req.exec_id == "nostart",
            slow: req.exec_id.starts_with("slow"),
        })
    }
    fn pid(&self) -> u32 {
        self.pid
    }
    fn start(&self) -> Result<()> {
        self.record("start");
        Ok(())
    }
    fn kill(&self, signal: u32, all: bool) -> Result<()> {
        self.record(&format!("kill {signal} {all}"));
        Ok(())
    }
    fn pause(&self) -> Result<()> {
        self.record("pause");
        Ok(())
    }
    fn resume(&self) -> Result<()> {
        self.record("resume");
        Ok(())
    }
    fn pids(&self) -> Result<Vec<u32>> {
        Ok(vec![self.pid])
    }
    fn stats(&self) -> Result<u64> {
        Ok(42)
    }
    fn update(&self, _resources: &LinuxResources) -> Result<()> {
        self.record("update");
        Ok(())
    }
    fn close_stdin(&self) {
        self.record("close_stdin");
    }
    fn resize_pty(&self, width: u32, height: u32) -> Result<()> {
        self.record(&format!("resize {width}x{height}"));
        Ok(())
    }
    fn output_drained(&self) -> Option<OutputDrained> {
        self.drained.lock().unwrap().take()
    }
    fn init_exited(&self) {
        self.record("init_exited");
    }
    fn exit_reason(&self, code: u32) -> Option<ExitReason> {
        (code == 137 && self.oom_killed).then_some(ExitReason::OomKilled {
            memory_limit: Some(64 << 20),
        })
    }
    fn delete(&self) -> Result<()> {
        self.record("delete");
        Ok(())
    }
}

impl Fake {
    fn record(&self, call: &str) {
        self.calls.lock().unwrap().push(call.to_string());
    }
}

struct FakeFactory {
    next_pid: AtomicU32,
}

impl InstanceFactory for FakeFactory {
    type Instance = Fake;
    fn create(&self, req: &CreateRequest) -> Result<Fake> {
        if req.id == "bad" {
            return Err(Error::InvalidArgument("bad container".into()));
        }
        if req.id.starts_with("slow") {
            // Time for an exit to arrive while the process is being made.
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Fake {
            pid: self.next_pid.fetch_add(1, Ordering::SeqCst),
            oom_killed: req.id.starts_with("oom"),
            ..Fake::default()
        })
    }
}

struct ChannelSink(mpsc::UnboundedSender<Event>);

#[async_trait::async_trait]
impl EventSink for ChannelSink {
    async fn publish(&self, event: Event) {
        let _ = self.0.send(event);
    }
}

fn tasks() -> (
    Tasks<FakeFactory, ChannelSink>,
    mpsc::UnboundedReceiver<Event>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Tasks::new(
            FakeFactory {
                next_pid: AtomicU32::new(100),
            },
            ChannelSink(tx),
        ),
        rx,
    )
}

fn request(id: &str) -> CreateRequest {
    CreateRequest {
        id: id.into(),
        bundle: "/b".into(),
        ..CreateRequest::default()
    }
}

#[tokio::test]
async fn a_task_lives_and_its_events_follow_in_order() {
    let (tasks, mut events) = tasks();
    let pid = tasks.create(request("a")).await.unwrap();
    assert_eq!(tasks.start("a").await.unwrap(), pid);
    tasks.pause("a").await.unwrap();
    tasks.resume("a").await.unwrap();
    tasks.process_exited(pid, 7).await;
    assert_eq!(tasks.wait("a").await.unwrap().code, 7);
    let (_, exit) = tasks.delete("a").await.unwrap();
    assert_eq!(exit.code, 7);
    assert!(tasks.is_empty());

    let mut kinds = Vec::new();
    while let Ok(e) = events.try_recv() {
        kinds.push(match e {
            Event::Created { .. } => "create",
            Event::Started { .. } => "start",
            Event::Paused { .. } => "pause",
            Event::Resumed { .. } => "resume",
            Event::Exited { code: 7, .. } => "exit",
            Event::Exited { .. } => "exit with the wrong code",
            Event::Deleted { .. } => "delete",
            Event::ExecAdded { .. } | Event::ExecStarted { .. } => "exec",
            Event::OomKilled { .. } => "oom",
        });
    }
    assert_eq!(
        kinds,
        ["create", "start", "pause", "resume", "exit", "delete"]
    );
}

/// An OOM kill is announced (TaskOOM) before the exit; a SIGKILL that was not the OOM
/// killer's, or another status, announces nothing.
#[tokio::test]
async fn an_oom_kill_is_announced_before_the_exit() {
    let (tasks, mut events) = tasks();
    let mut seen = Vec::new();
    for (id, code) in [("oom-1", 137), ("oom-2", 1), ("other", 137)] {
        let pid = tasks.create(request(id)).await.unwrap();
        tasks.start(id).await.unwrap();
        tasks.process_exited(pid, code).await;
        while let Ok(e) = events.try_recv() {
            match e {
                Event::OomKilled { id } => seen.push(format!("oom {id}")),
                Event::Exited { id, code, .. } => seen.push(format!("exit {id} {code}")),
                _ => {}
            }
        }
    }
    assert_eq!(
        seen,
        [
            "oom oom-1",
            "exit oom-1 137",
            "exit oom-2 1",
            "exit other 137"
        ]
    );
    let reason = ExitReason::OomKilled {
        memory_limit: Some(64 << 20),
    };
    assert_eq!(
        reason.to_string(),
        "out of memory: the container reached its memory limit of 64 MiB"
    );
}

#[tokio::test]
async fn a_waiter_is_woken_by_the_exit() {
    let (tasks, _events) = tasks();
    let tasks = Arc::new(tasks);
    let pid = tasks.create(request("w")).await.unwrap();
    tasks.start("w").await.unwrap();
    let waiter = tokio::spawn({
        let tasks = tasks.clone();
        async move { tasks.wait("w").await.unwrap().code }
    });
    tokio::task::yield_now().await;
    tasks.process_exited(pid, 143).await;
    assert_eq!(waiter.await.unwrap(), 143);
}

#[tokio::test]
async fn a_running_task_cannot_be_deleted_or_started_again() {
    let (tasks, _events) = tasks();
    tasks.create(request("r")).await.unwrap();
    tasks.start("r").await.unwrap();
    let err = tasks.delete("r").await.unwrap_err();
    assert_eq!(err.to_string(), "cannot delete a task that is running");
    assert!(tasks.start("r").await.is_err());
}

#[tokio::test]
async fn unknown_ids_and_duplicates_are_refused() {
    let (tasks, _events) = tasks();
    assert!(matches!(
        tasks.start("nope").await,
        Err(Error::Task(TaskError::NotFound(_)))
    ));
    tasks.create(request("d")).await.unwrap();
    assert!(matches!(
        tasks.create(request("d")).await,
        Err(Error::Task(TaskError::AlreadyExists(_)))
    ));
}

#[tokio::test]
async fn a_failed_create_registers_nothing() {
    let (tasks, mut events) = tasks();
    assert!(tasks.create(request("bad")).await.is_err());
    assert!(tasks.is_empty());
    assert!(events.try_recv().is_err());
}

#[tokio::test]
async fn deleting_a_never_started_task_kills_it_first() {
    let (tasks, _events) = tasks();
    let tasks = Arc::new(tasks);
    let pid = tasks.create(request("c")).await.unwrap();
    let reaper = tokio::spawn({
        let tasks = tasks.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tasks.process_exited(pid, 137).await;
        }
    });
    let (_, exit) = tasks.delete("c").await.unwrap();
    reaper.await.unwrap();
    assert_eq!(exit.code, 137);
}

#[tokio::test]
async fn an_exit_seen_before_registration_is_not_lost() {
    let (tasks, _events) = tasks();
    let tasks = Arc::new(tasks);
    // The process (pid 100) exits while Create is still making it.
    let reaper = tokio::spawn({
        let tasks = tasks.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tasks.process_exited(100, 3).await;
        }
    });
    tasks.create(request("slow-early")).await.unwrap();
    reaper.await.unwrap();
    assert_eq!(tasks.wait("slow-early").await.unwrap().code, 3);
}

#[tokio::test]
async fn an_exit_of_a_pid_before_it_was_reused_is_not_the_new_process() {
    let (tasks, _events) = tasks();
    // Another child of the shim had pid 100 and exited before this task was created.
    tasks.process_exited(100, 3).await;
    let pid = tasks.create(request("reused")).await.unwrap();
    assert_eq!(pid, 100);
    tasks.start("reused").await.unwrap();
    assert_eq!(tasks.state("reused").unwrap().status, Status::Running);
    // Its own exit still counts.
    tasks.process_exited(100, 0).await;
    assert_eq!(tasks.wait("reused").await.unwrap().code, 0);
}

#[tokio::test]
async fn a_stopped_task_takes_no_signal_nor_update() {
    let (tasks, _events) = tasks();
    let pid = tasks.create(request("s")).await.unwrap();
    tasks.start("s").await.unwrap();
    tasks.kill("s", 15, false).await.unwrap();
    tasks.process_exited(pid, 143).await;
    assert!(tasks.kill("s", 9, false).await.is_err());
    assert!(tasks.update("s", LinuxResources::default()).await.is_err());
}

fn exec_request(exec_id: &str) -> ExecRequest {
    ExecRequest {
        exec_id: exec_id.into(),
        process: oci_spec::runtime::Process::default(),
        stdin: String::new(),
        stdout: String::new(),
        stderr: String::new(),
        terminal: false,
    }
}

#[tokio::test]
async fn an_exec_runs_exits_and_is_deleted_while_the_task_runs_on() {
    let (tasks, mut events) = tasks();
    let pid = tasks.create(request("x")).await.unwrap();
    tasks.start("x").await.unwrap();
    tasks.exec("x", exec_request("e1")).await.unwrap();
    assert_eq!(tasks.exec_state("x", "e1").unwrap().status, Status::Created);
    let exec_pid = tasks.start_exec("x", "e1").await.unwrap();
    assert_eq!(exec_pid, pid + 1000);
    tasks.process_exited(exec_pid, 3).await;
    assert_eq!(tasks.wait_exec("x", "e1").await.unwrap().code, 3);
    assert_eq!(tasks.delete_exec("x", "e1").unwrap().1.code, 3);
    assert!(tasks.exec_state("x", "e1").is_err());
    assert_eq!(tasks.state("x").unwrap().status, Status::Running);

    let mut exec_events = Vec::new();
    while let Ok(e) = events.try_recv() {
        match e {
            Event::ExecAdded { exec_id, .. } => exec_events.push(format!("added {exec_id}")),
            Event::ExecStarted { exec_id, .. } => exec_events.push(format!("started {exec_id}")),
            Event::Exited { exec_id, code, .. } if !exec_id.is_empty() => {
                exec_events.push(format!("exited {exec_id} {code}"))
            }
            _ => {}
        }
    }
    assert_eq!(exec_events, ["added e1", "started e1", "exited e1 3"]);
}

#[tokio::test]
async fn an_exec_that_ends_before_its_pid_is_known_is_not_lost() {
    let (tasks, _events) = tasks();
    let tasks = Arc::new(tasks);
    let pid = tasks.create(request("x")).await.unwrap();
    tasks.start("x").await.unwrap();
    tasks.exec("x", exec_request("slow-quick")).await.unwrap();
    // The reaper reports the exit before start_exec has recorded the pid.
    let reaper = tokio::spawn({
        let tasks = tasks.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tasks.process_exited(pid + 1000, 7).await;
        }
    });
    tasks.start_exec("x", "slow-quick").await.unwrap();
    reaper.await.unwrap();
    assert_eq!(tasks.wait_exec("x", "slow-quick").await.unwrap().code, 7);
}

#[tokio::test]
async fn an_exec_does_not_take_the_exit_of_an_earlier_holder_of_its_pid() {
    let (tasks, _events) = tasks();
    let pid = tasks.create(request("x")).await.unwrap();
    tasks.start("x").await.unwrap();
    tasks.exec("x", exec_request("e")).await.unwrap();
    tasks.process_exited(pid + 1000, 9).await;
    tasks.start_exec("x", "e").await.unwrap();
    assert_eq!(tasks.exec_state("x", "e").unwrap().status, Status::Running);
    tasks.process_exited(pid + 1000, 0).await;
    assert_eq!(tasks.wait_exec("x", "e").await.unwrap().code, 0);
}

#[tokio::test]
async fn exec_needs_a_running_task_and_unique_ids() {
    let (tasks, _events) = tasks();
    tasks.create(request("x")).await.unwrap();
    let err = tasks.exec("x", exec_request("e1")).await.unwrap_err();
    assert_eq!(err.to_string(), "cannot exec in a task that is created");
    tasks.start("x").await.unwrap();
    tasks.exec("x", exec_request("e1")).await.unwrap();
    assert!(matches!(
        tasks.exec("x", exec_request("e1")).await,
        Err(Error::Task(TaskError::AlreadyExists(_)))
    ));
    assert!(tasks.exec("x", exec_request("bad")).await.is_err());
    assert!(tasks.exec_state("x", "bad").is_err());
}

#[tokio::test]
async fn a_running_exec_cannot_be_deleted_and_a_failed_start_leaves_it_created() {
    let (tasks, _events) = tasks();
    tasks.create(request("x")).await.unwrap();
    tasks.start("x").await.unwrap();
    tasks.exec("x", exec_request("e1")).await.unwrap();
    tasks.start_exec("x", "e1").await.unwrap();
    assert!(tasks.delete_exec("x", "e1").is_err());
    assert!(tasks.start_exec("x", "e1").await.is_err());
    tasks.exec("x", exec_request("nostart")).await.unwrap();
    assert!(tasks.start_exec("x", "nostart").await.is_err());
    assert_eq!(
        tasks.exec_state("x", "nostart").unwrap().status,
        Status::Created
    );
    tasks.delete_exec("x", "nostart").unwrap();
}

#[tokio::test]
async fn an_exit_is_reported_only_once_the_terminal_output_is_drained() {
    let (tasks, mut events) = tasks();
    let tasks = Arc::new(tasks);
    let pid = tasks.create(request("t")).await.unwrap();
    tasks.start("t").await.unwrap();
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    *tasks.get("t").unwrap().instance.drained.lock().unwrap() = Some(Box::pin(async move {
        let _ = drained_rx.await;
    }));
    let exited = tokio::spawn({
        let tasks = tasks.clone();
        async move { tasks.process_exited(pid, 0).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(tasks.state("t").unwrap().status, Status::Running);
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(e, Event::Exited { .. }),
            "exit before the output: {e:?}"
        );
    }

    drained_tx.send(()).unwrap();
    exited.await.unwrap();
    assert_eq!(tasks.wait("t").await.unwrap().code, 0);
    assert!(matches!(events.try_recv(), Ok(Event::Exited { .. })));
}

#[tokio::test]
async fn resize_and_close_io_reach_the_process_and_unknown_ids_are_refused() {
    let (tasks, _events) = tasks();
    tasks.create(request("r")).await.unwrap();
    tasks.start("r").await.unwrap();
    tasks.resize_pty("r", 80, 24).unwrap();
    assert!(tasks
        .get("r")
        .unwrap()
        .instance
        .calls
        .lock()
        .unwrap()
        .contains(&"resize 80x24".to_string()));
    tasks.exec("r", exec_request("e")).await.unwrap();
    tasks.start_exec("r", "e").await.unwrap();
    tasks.resize_exec_pty("r", "e", 80, 24).unwrap();
    tasks.close_exec_stdin("r", "e").unwrap();
    assert!(tasks.resize_pty("nope", 1, 1).is_err());
    assert!(tasks.resize_exec_pty("r", "nope", 1, 1).is_err());
    assert!(tasks.close_exec_stdin("r", "nope").is_err());
}

/// When init exits, what it left running is ended before the exit waits for the output:
/// those processes hold the output open (a pod whose native container forked workers would
/// otherwise never stop).
#[tokio::test]
async fn leftovers_are_ended_before_the_exit_waits_for_the_output() {
    let (tasks, _events) = tasks();
    let tasks = Arc::new(tasks);
    let pid = tasks.create(request("p")).await.unwrap();
    tasks.start("p").await.unwrap();
    let task = tasks.get("p").unwrap();
    let seen_at_drain = Arc::new(Mutex::new(Vec::new()));
    *task.instance.drained.lock().unwrap() = Some(Box::pin({
        let task = task.clone();
        let seen = seen_at_drain.clone();
        async move { *seen.lock().unwrap() = task.instance.calls.lock().unwrap().clone() }
    }));
    tasks.process_exited(pid, 0).await;
    assert_eq!(*seen_at_drain.lock().unwrap(), ["start", "init_exited"]);
}

/// A signal to a task or exec that already ended is NotFound for containerd ("process already
/// finished", as runc's shim answers); FailedPrecondition made the CRI's StopContainer fail.
#[tokio::test]
async fn a_kill_after_the_exit_is_not_found() {
    let (tasks, _events) = tasks();
    let pid = tasks.create(request("k")).await.unwrap();
    tasks.start("k").await.unwrap();
    tasks.exec("k", exec_request("e")).await.unwrap();
    let exec_pid = tasks.start_exec("k", "e").await.unwrap();
    tasks.process_exited(exec_pid, 0).await;
    let err = tasks.kill_exec("k", "e", 9).await.unwrap_err();
    assert_eq!(
        err.code(),
        containerd_shim::protos::ttrpc::Code::NOT_FOUND,
        "{err}"
    );
    assert_eq!(err.to_string(), "k exec e: process already finished");

    tasks.process_exited(pid, 0).await;
    let err = tasks.kill("k", 15, false).await.unwrap_err();
    assert_eq!(
        err.code(),
        containerd_shim::protos::ttrpc::Code::NOT_FOUND,
        "{err}"
    );
    assert_eq!(err.to_string(), "k: process already finished");
}
