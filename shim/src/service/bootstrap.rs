//! The serving shim's bootstrap: what containerd-shim's `run` does for a shim started without
//! an action (watch signals, become the subreaper, build the Task service, listen, tell
//! `start` it serves, reap children until the shim leaves), done here so that the shim that
//! `start` forks ([`super::start`]) and one exec'd with `-socket` run the same code.

use std::sync::Arc;

use containerd_shim::asynchronous::monitor::monitor_notify_by_pid;
use containerd_shim::protos::shim_async::{create_task, Client, Task};
use containerd_shim::protos::ttrpc::r#async::transport::Listener;
use containerd_shim::protos::ttrpc::r#async::Server;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, Flags, Shim};
use log::{debug, info, warn};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, Signal, SignalKind};

use super::{remove_socket, Service, ADDRESS_FILE};

/// Environment variable holding containerd's ttrpc address, where events are published.
const TTRPC_ADDRESS: &str = "TTRPC_ADDRESS";

/// Serves the Task API on `flags.socket` until the shim leaves.
///
/// # Errors
/// What stops the shim from serving, named.
pub async fn serve(runtime_id: &str, flags: Flags) -> Result<(), String> {
    let ttrpc_address = std::env::var(TTRPC_ADDRESS)
        .map_err(|_| format!("{TTRPC_ADDRESS} is not set: containerd starts the shim with it"))?;
    if flags.socket.is_empty() {
        return Err("no -socket to serve on".into());
    }
    // Watched before anything else: SIGTERM and SIGINT must not kill the shim (it decides
    // when to leave), and SIGCHLD must reach the reaper.
    let signals = Signals::watch().map_err(|e| format!("cannot watch signals: {e}"))?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("cannot become the subreaper: {e}"));
    }
    // Listening comes first: when a pod's shim already serves the socket, this one leaves
    // before it builds a Task service (and makes a network namespace ahead) for nothing.
    // Connections made meanwhile wait in the listen backlog.
    let Some(server) = listen(&flags.socket).await? else {
        tell_start_it_serves();
        return Ok(());
    };
    // A shim that cannot serve takes its socket with it.
    let unbind = |e: String| {
        remove_socket(&flags.socket);
        e
    };
    let mut config = Config::default();
    let mut shim = Service::new(runtime_id, &flags, &mut config).await;
    let publisher = RemotePublisher::new(&ttrpc_address)
        .await
        .map_err(|e| unbind(format!("cannot reach containerd at {ttrpc_address}: {e}")))?;
    let task: Arc<dyn Task + Send + Sync> = Arc::new(shim.create_task_service(publisher).await);
    let mut server = server.register_service(create_task(task));
    server
        .start()
        .await
        .map_err(|e| unbind(format!("cannot serve on {}: {e}", flags.socket)))?;
    tell_start_it_serves();
    info!("serving on {}", flags.socket);
    tokio::spawn(signals.reap());
    shim.wait().await;
    info!("shutting down");
    server.shutdown().await.unwrap_or_default();
    // The socket `start` recorded: a pod's shim serves another container's address.
    if let Ok(address) = std::fs::read_to_string(ADDRESS_FILE) {
        remove_socket(&address);
    }
    Ok(())
}

/// A ttrpc server on `socket`, or `None` if a live shim already serves there (`start` has
/// recorded the address in the bundle already, forked or exec'd).
async fn listen(socket: &str) -> Result<Option<Server>, String> {
    let path = super::socket_path(socket);
    let bind = || -> std::io::Result<std::os::unix::net::UnixListener> {
        if let Some(parent) = std::path::Path::new(path).parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::os::unix::net::UnixListener::bind(path)
    };
    let in_use = |e: &std::io::Error| e.kind() == std::io::ErrorKind::AddrInUse;
    let listener = match bind() {
        Ok(l) => l,
        Err(e) if in_use(&e) => {
            let seen = super::socket_id(socket);
            if answers(socket).await {
                return Ok(None);
            }
            // Only the dead socket seen: another shim may have bound a new one meanwhile.
            if let Some(seen) = seen {
                super::remove_socket_if_still(socket, seen);
            }
            match bind() {
                Ok(l) => l,
                Err(e) if in_use(&e) && answers(socket).await => return Ok(None),
                Err(e) => return Err(format!("cannot listen on {path}: {e}")),
            }
        }
        Err(e) => return Err(format!("cannot listen on {path}: {e}")),
    };
    let listener =
        Listener::try_from(listener).map_err(|e| format!("cannot serve ttrpc on {path}: {e}"))?;
    Ok(Some(Server::new().add_listener(listener)))
}

/// Whether a shim answers at `socket` within a second (5 tries, 200 ms apart).
async fn answers(socket: &str) -> bool {
    for _ in 0..5 {
        if Client::connect(socket).await.is_ok() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    false
}

/// `start` reads this process's stdout until it closes, then names the socket to containerd:
/// stdout becomes stderr (which `start` gave as /dev/null).
fn tell_start_it_serves() {
    // SAFETY: dup2 on the standard descriptors.
    if unsafe { libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) } < 0 {
        warn!(
            "cannot close the pipe to start: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The signals the serving shim handles itself.
struct Signals {
    child: Signal,
    terminate: Signal,
    interrupt: Signal,
    pipe: Signal,
}

impl Signals {
    fn watch() -> std::io::Result<Self> {
        Ok(Self {
            child: signal(SignalKind::child())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            pipe: signal(SignalKind::pipe())?,
        })
    }

    /// Reaps every child that exits and tells the monitor (the task registry subscribes to
    /// it); SIGTERM and SIGINT are only logged: `lifetime` has its own SIGTERM watch.
    async fn reap(mut self) {
        loop {
            tokio::select! {
                Some(()) = self.child.recv() => reap_exited().await,
                Some(()) = self.terminate.recv() => debug!("received SIGTERM"),
                Some(()) = self.interrupt.recv() => debug!("received SIGINT"),
                Some(()) = self.pipe.recv() => {}
                else => return,
            }
        }
    }
}

/// Collects every child that exited; one SIGCHLD may stand for several.
async fn reap_exited() {
    loop {
        let exit = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, code),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return,
            Ok(_) => continue,
            Err(e) => {
                warn!("waitpid: {e}");
                return;
            }
        };
        if let Err(e) = monitor_notify_by_pid(exit.0.as_raw(), exit.1).await {
            warn!("cannot report the exit of {}: {e}", exit.0);
        }
    }
}
