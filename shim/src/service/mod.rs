//! containerd-facing and thin: the shim lifecycle (`start`, `delete`, serve), the Task service,
//! events and metrics in containerd's protobuf shapes.
//!
//! Process model: one shim per pod (containers are grouped by the
//! `io.kubernetes.cri.sandbox-id` annotation), one per opt-in group (the
//! `io.containerd.wasmpod.group` annotation), one per container otherwise. When it exits is
//! `lifetime`'s to decide.

mod abandoned;
pub mod bootstrap;
mod events;
mod lifetime;
mod logger;
mod metrics;
pub mod start;
mod task;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::asynchronous::monitor::monitor_subscribe;
use containerd_shim::monitor::{Subject, Topic};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{spawn, Config, DeleteResponse, ExitSignal, Flags, Shim, StartOpts};
use log::{error, warn};

pub use events::Publisher;
pub use task::TaskService;

use crate::image::ImageSource;
use crate::instance::ContainerFactory;
use crate::task::Tasks;

/// Annotation the CRI sets on every container of a pod, naming the pod sandbox.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

/// Annotation naming an opt-in group: the containers of a namespace that carry the same
/// value share one shim (`ctr run --annotation`, `docker run --annotation`). A pod's
/// containers are grouped by their pod, whatever they carry.
pub const GROUP_ANNOTATION: &str = "io.containerd.wasmpod.group";

/// The serving shim's environment variable that makes it a group's.
const GROUP_ENV: &str = "WASMPOD_SHIM_GROUP";

/// The shim's async runtime. One worker is plenty for a shim's handful of requests; every
/// thread costs memory.
///
/// # Errors
/// The runtime's threads or its I/O driver could not be made.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
}

/// The shim process.
pub struct Service {
    exit: Arc<ExitSignal>,
    namespace: String,
    id: String,
    debug: bool,
    /// containerd's gRPC socket, where the images of raw wasm layers are read.
    address: String,
    /// This shim's own ttrpc socket (empty for `start` and `delete`).
    socket: String,
    /// The bundle, as containerd names it (`delete` runs in it too).
    bundle: String,
}

/// The shim a container joins.
#[derive(Debug, PartialEq, Eq)]
pub enum Grouping {
    /// Its own, named by the container id.
    Own(String),
    /// Its pod's, named by the sandbox id.
    Pod(String),
    /// Its opt-in group's, named by the group.
    Group(String),
}

impl Grouping {
    /// The name the shim's socket address is made of.
    pub fn name(&self) -> &str {
        match self {
            Grouping::Own(n) | Grouping::Pod(n) | Grouping::Group(n) => n,
        }
    }
}

/// The shim container `id` of `bundle` joins, by its annotations.
pub fn grouping(bundle: &Path, id: &str) -> Grouping {
    let spec = crate::isolation::load_spec(bundle).ok();
    let annotation = |key: &str| {
        spec.as_ref()
            .and_then(|s| s.annotations().as_ref()?.get(key).cloned())
            .filter(|v| !v.is_empty())
    };
    if let Some(sandbox) = annotation(SANDBOX_ID_ANNOTATION) {
        Grouping::Pod(sandbox)
    } else if let Some(group) = annotation(GROUP_ANNOTATION) {
        // Its own name space: a group named like a container id must not take its socket.
        Grouping::Group(format!("group:{group}"))
    } else {
        Grouping::Own(id.to_string())
    }
}

/// Reserves the group shim at `address` for container `id` (see `lifetime`).
///
/// # Errors
/// No shim serves there, or it is leaving.
async fn reserve(address: &str, id: &str) -> std::result::Result<(), String> {
    use containerd_shim::protos::shim_async::{Client, TaskClient};
    let client = Client::connect(address).await.map_err(|e| e.to_string())?;
    let req = containerd_shim::api::ConnectRequest {
        id: id.to_string(),
        ..Default::default()
    };
    let ctx = containerd_shim::protos::ttrpc::context::with_timeout(RESERVE_TIMEOUT_NS);
    TaskClient::new(client)
        .connect(ctx, &req)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A group shim for container `id`, started (or found) and reserved. `spawn` names the
/// group's shim when its socket answers, and that shim may decide to leave before our
/// reservation reaches it: it then refuses it, its socket already removed, and the next
/// `spawn` starts a new shim.
async fn spawn_reserved(
    opts: &StartOpts,
    group: &str,
    id: &str,
) -> containerd_shim::Result<String> {
    let mut last = String::new();
    for _ in 0..SPAWN_ATTEMPTS {
        // (StartOpts is not Clone.)
        let copy = StartOpts {
            id: opts.id.clone(),
            publish_binary: opts.publish_binary.clone(),
            address: opts.address.clone(),
            ttrpc_address: opts.ttrpc_address.clone(),
            namespace: opts.namespace.clone(),
            debug: opts.debug,
        };
        let address = spawn(copy, group, vec![(GROUP_ENV, "1")]).await?;
        match reserve(&address, id).await {
            Ok(()) => return Ok(address),
            Err(e) => last = format!("{address}: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Err(containerd_shim::Error::Other(format!(
        "{id}: no shim of group {group} took the container ({SPAWN_ATTEMPTS} tries); last: {last}"
    )))
}

/// Tries of [`spawn_reserved`], 20 ms apart: each one that fails met a shim leaving.
const SPAWN_ATTEMPTS: u32 = 10;

/// Deadline of a reservation call: a live shim answers in well under a millisecond.
const RESERVE_TIMEOUT_NS: i64 = 2_000_000_000;

#[async_trait]
impl Shim for Service {
    type T = TaskService;

    async fn new(_runtime_id: &str, args: &Flags, config: &mut Config) -> Self {
        // wasmpod opens the log fifo itself: it must know the fd to keep it in containers.
        config.no_setup_logger = true;
        Service {
            exit: Arc::new(ExitSignal::default()),
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            debug: args.debug,
            address: args.address.clone(),
            socket: args.socket.clone(),
            bundle: args.bundle.clone(),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        // containerd runs `start` in the bundle directory.
        let grouping = grouping(Path::new("."), &opts.id);
        let id = opts.id.clone();
        let address = match &grouping {
            Grouping::Group(name) => {
                let address = containerd_shim::socket_address(&opts.address, &opts.namespace, name);
                // The group's shim is there: no process to start. Otherwise (none, or leaving),
                // a new one, reserved as well (another `start` may have made it meanwhile).
                match reserve(&address, &id).await {
                    Ok(()) => address,
                    Err(_) => spawn_reserved(&opts, name, &id).await?,
                }
            }
            // `main` forks these itself (`start::start_by_fork`); this stays as the fallback.
            _ => spawn(opts, grouping.name(), Vec::new()).await?,
        };
        // The serving shim removes the socket named here when it exits, and `delete` does when
        // it did not; without the file the socket would outlive the shim.
        if let Err(e) = std::fs::write(ADDRESS_FILE, &address) {
            warn!("cannot record the shim address: {e}");
        }
        Ok(address)
    }

    async fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        // containerd runs `delete` in the bundle after a shim died: remove what it left. The
        // socket's address needs no bundle: containerd 2.x may be removing the bundle meanwhile
        // (the working directory then no longer resolves).
        let bundle = if self.bundle.is_empty() {
            std::env::current_dir().ok()
        } else {
            Some(PathBuf::from(&self.bundle))
        };
        let recorded = bundle
            .as_ref()
            .and_then(|b| std::fs::read_to_string(b.join(ADDRESS_FILE)).ok());
        let address = recorded.unwrap_or_else(|| {
            containerd_shim::socket_address(&self.address, &self.namespace, &self.id)
        });
        // The leftovers first: a container's init made before Start is a fork of the shim and
        // still holds its listening socket (it closes it when it starts), so the socket
        // accepts connections until that process is gone. Without leftovers (containerd runs
        // `delete` after every clean Delete of a pod's container too) a socket that answers is
        // the pod's live shim: waiting for it would hold containerd's exit handling up.
        let killed = bundle.is_some_and(|b| crate::isolation::remove_leftovers(&b, &self.id));
        remove_dead_socket(&address, if killed { DEAD_SOCKET_CHECKS } else { 1 });
        Ok(DeleteResponse {
            exit_status: 137,
            exited_at: Some(events::timestamp(std::time::SystemTime::now())).into(),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> TaskService {
        let log_fd = match logger::init(self.debug) {
            Ok(fd) => Some(fd),
            Err(e) => {
                eprintln!("wasmpod: cannot open the shim log fifo: {e}");
                None
            }
        };
        let images =
            (!self.address.is_empty()).then(|| ImageSource::new(&self.address, &self.namespace));
        let factory = ContainerFactory::new(log_fd, images, &self.namespace);
        let ahead = std::env::current_dir()
            .ok()
            .map(|bundle| factory.warm_up(bundle));
        let tasks = Arc::new(Tasks::new(
            factory,
            Publisher::new(publisher, &self.namespace),
        ));
        tokio::spawn(forward_exits(tasks.clone()));
        crate::isolation::remember_mount_points();
        crate::isolation::remember_shim_socket(Path::new(socket_path(&self.socket)));
        crate::stages::log_bootstrap(&self.id);
        let group = std::env::var_os(GROUP_ENV).is_some();
        let held = tasks.clone();
        let lifetime = Arc::new(lifetime::Lifetime::new(
            self.exit.clone(),
            self.socket.clone(),
            group.then(lifetime::group_linger),
            move || !held.is_empty(),
        ));
        lifetime.leave_on_sigterm();
        // Looked up now, not in the watching task: containerd may remove the bundle as soon as
        // `start` has returned, and the working directory's path is then gone.
        let bundle = std::env::current_dir();
        tokio::spawn(abandoned::exit_when_abandoned(
            lifetime.clone(),
            ahead,
            bundle.as_ref().map_err(std::io::Error::kind).cloned(),
        ));
        // The log fd is the fifo of the working directory, the first container's bundle.
        let log = logger::LogFollower::new(log_fd, bundle.ok());
        TaskService::new(tasks, lifetime, Arc::new(log))
    }
}

/// File in the bundle holding the shim's socket address (containerd-shim reads it at exit).
const ADDRESS_FILE: &str = "address";

/// Removes the socket of a shim that died, unless another shim of the pod still serves it:
/// a socket that still takes connections is checked `checks` times, 20 ms apart (its last
/// holders, killed just before, may not have exited yet) and is left alone if it still does.
/// Only the socket file seen before the checks is removed: a group's next shim may bind a new
/// socket at the same path meanwhile (its last shim left just before), and removing that one
/// made containerd's dial fail with "no such file or directory".
fn remove_dead_socket(address: &str, checks: u32) {
    let path = socket_path(address);
    let Some(seen) = socket_id(path) else {
        return;
    };
    for check in 1..=checks {
        if std::os::unix::net::UnixStream::connect(path).is_err() {
            remove_socket_if_still(path, seen);
            return;
        }
        if check < checks {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// 2 s of checks, after leftovers were killed.
const DEAD_SOCKET_CHECKS: u32 = 100;

/// The file of a `unix://` address.
fn socket_path(address: &str) -> &str {
    let address = address.trim();
    address.strip_prefix("unix://").unwrap_or(address)
}

/// Removes the socket file of `address`, if it is one: a file of another kind at that path
/// is none of the shim's business.
fn remove_socket(address: &str) {
    use std::os::unix::fs::FileTypeExt;
    let path = socket_path(address);
    if path.is_empty() {
        return;
    }
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => {
            if let Err(e) = std::fs::remove_file(path) {
                warn!("cannot remove the shim socket {path}: {e}");
            }
        }
        _ => {}
    }
}

/// What identifies the socket file of `address`, if there is one: device, inode and change
/// time (a socket made again at the path may get the freed inode back, never the old time).
fn socket_id(address: &str) -> Option<SocketId> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = std::fs::symlink_metadata(socket_path(address)).ok()?;
    md.file_type()
        .is_socket()
        .then(|| (md.dev(), md.ino(), md.ctime(), md.ctime_nsec()))
}

type SocketId = (u64, u64, i64, i64);

/// Removes the socket file of `address` if it is still the one `seen` identified (see
/// [`remove_dead_socket`]).
fn remove_socket_if_still(address: &str, seen: SocketId) {
    if socket_id(address) == Some(seen) {
        remove_socket(address);
    }
}

/// Hands every child exit the shim's reaper sees to the task registry.
async fn forward_exits(tasks: Arc<task::ShimTasks>) {
    let mut subscription = match monitor_subscribe(Topic::Pid).await {
        Ok(s) => s,
        Err(e) => {
            error!("cannot watch child exits: {e}");
            return;
        }
    };
    while let Some(event) = subscription.rx.recv().await {
        match event.subject {
            Subject::Pid(pid) => {
                tasks
                    .process_exited(pid as u32, event.exit_code as u32)
                    .await
            }
            Subject::Exec(..) => warn!("unexpected exec exit event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    fn bundle_with(annotations: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let spec = format!(r#"{{"ociVersion":"1.1.0","annotations":{{{annotations}}}}}"#);
        std::fs::write(dir.path().join("config.json"), spec).unwrap();
        dir
    }

    #[test]
    fn a_container_joins_its_pod_its_group_or_its_own_shim() {
        let own = bundle_with("");
        assert_eq!(grouping(own.path(), "c1"), Grouping::Own("c1".into()));
        let group = bundle_with(r#""io.containerd.wasmpod.group":"web""#);
        let g = grouping(group.path(), "c1");
        assert_eq!(g, Grouping::Group("group:web".into()));
        assert_eq!(g.name(), "group:web");
        let pod = bundle_with(
            r#""io.containerd.wasmpod.group":"web","io.kubernetes.cri.sandbox-id":"pod1""#,
        );
        assert_eq!(grouping(pod.path(), "c1"), Grouping::Pod("pod1".into()));
        let empty = bundle_with(r#""io.containerd.wasmpod.group":"""#);
        assert_eq!(grouping(empty.path(), "c1"), Grouping::Own("c1".into()));
        let missing = tempfile::tempdir().unwrap();
        assert_eq!(grouping(missing.path(), "c1"), Grouping::Own("c1".into()));
    }

    #[test]
    fn socket_path_strips_the_scheme() {
        assert_eq!(
            socket_path("unix:///run/containerd/s/ab\n"),
            "/run/containerd/s/ab"
        );
        assert_eq!(socket_path("/tmp/x.sock"), "/tmp/x.sock");
    }

    #[test]
    fn remove_socket_removes_a_listening_socket_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        let _listener = UnixListener::bind(&sock).unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "not a socket").unwrap();

        remove_socket(&format!("unix://{}", sock.display()));
        remove_socket(&format!("unix://{}", file.display()));
        remove_socket(&format!("unix://{}", dir.path().join("missing").display()));
        remove_socket("");

        assert!(!sock.exists(), "the socket is gone");
        assert!(file.exists(), "a regular file is left alone");
    }

    #[test]
    fn a_socket_bound_again_at_the_path_is_not_removed_as_the_dead_one() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        let address = format!("unix://{}", sock.display());
        drop(UnixListener::bind(&sock).unwrap());
        let dead = socket_id(&address).expect("a socket file");
        std::fs::remove_file(&sock).unwrap();
        // Past the kernel's coarse clock tick, as any shim bound later is.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let _next = UnixListener::bind(&sock).unwrap();

        remove_socket_if_still(&address, dead);
        assert!(sock.exists(), "the new socket stays");
        let next = socket_id(&address).unwrap();
        assert_ne!(next, dead);
        remove_socket_if_still(&address, next);
        assert!(!sock.exists(), "the one seen goes");
        remove_dead_socket(&address, 1);
    }

    #[test]
    fn a_served_socket_is_left_and_a_dead_one_removed() {
        let dir = tempfile::tempdir().unwrap();
        let served = dir.path().join("served");
        let _listener = UnixListener::bind(&served).unwrap();
        let dead = dir.path().join("dead");
        drop(UnixListener::bind(&dead).unwrap());

        remove_dead_socket(&format!("unix://{}", served.display()), 1);
        remove_dead_socket(&format!("unix://{}", dead.display()), 1);

        assert!(served.exists(), "the pod's live shim keeps its socket");
        assert!(!dead.exists(), "nothing listens: the socket is removed");
    }
}
