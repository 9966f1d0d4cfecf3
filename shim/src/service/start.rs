//! `start` without a second exec. containerd runs the shim binary with `start` in the bundle,
//! and `start` must leave a serving shim behind and print its socket address. containerd-shim's
//! `spawn` exec's the binary again for that; here `start` forks the serving shim while it is
//! still single-threaded, before any async runtime exists. That saves, once per container, an
//! exec of a 47 MB binary: its page faults and the dynamic loader's work (loading and
//! relocating libc and the other libraries, and probing CPU features, which traps under
//! virtualisation).
//!
//! A group's `start` keeps containerd-shim's path: it first asks a running group shim to take
//! the container, which needs a ttrpc client and so the runtime.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use containerd_shim::Flags;

use super::{grouping, Grouping, ADDRESS_FILE};

/// Runs `start` for the container of `flags` by forking the serving shim; `None` when the
/// container joins a group, which containerd-shim's `start` handles. Call only while the
/// process has one thread.
pub fn start_by_fork(flags: &Flags, runtime_id: &str) -> Option<i32> {
    let grouping = grouping(Path::new("."), &flags.id);
    if matches!(grouping, Grouping::Group(_)) {
        return None;
    }
    let address =
        containerd_shim::socket_address(&flags.address, &flags.namespace, grouping.name());
    Some(match fork_serving_shim(flags, &address, runtime_id) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{runtime_id}: start: {e}");
            1
        }
    })
}

/// The arguments an exec'd serving shim would get (containerd-shim's `spawn` gives these).
pub fn serving_args(program: &str, flags: &Flags, socket: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        program,
        "-namespace",
        &flags.namespace,
        "-id",
        &flags.id,
        "-address",
        &flags.address,
        "-socket",
        socket,
    ]
    .map(String::from)
    .into();
    if flags.debug {
        args.push("-debug".into());
    }
    args
}

fn fork_serving_shim(flags: &Flags, socket: &str, runtime_id: &str) -> Result<(), String> {
    let program = std::env::args().next().unwrap_or_default();
    let args = serving_args(&program, flags, socket);
    let serving = Flags {
        namespace: flags.namespace.clone(),
        id: flags.id.clone(),
        address: flags.address.clone(),
        socket: socket.to_string(),
        debug: flags.debug,
        ..Default::default()
    };
    // Recorded before the serving shim exists, so that a full disk fails `start` with
    // nothing to undo. The serving shim removes the socket named there when it exits, and
    // `delete` does when it did not; without the file the socket would outlive the shim.
    std::fs::write(ADDRESS_FILE, socket).map_err(|e| {
        let file = std::env::current_dir()
            .unwrap_or_default()
            .join(ADDRESS_FILE);
        format!("cannot record the shim address in {}: {e}", file.display())
    })?;
    let pipe = || nix::unistd::pipe().map_err(|e| format!("pipe: {e}"));
    let (from_shim, to_start) = pipe()?;
    let (wait_for_go, go) = pipe()?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("/dev/null: {e}"))?;
    // SAFETY: the caller guarantees one thread, so the child may do anything the parent could.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            drop((from_shim, go));
            // Nothing is made (no cgroup, namespace or socket) before `start` says go.
            if !went_ahead(wait_for_go) {
                std::process::exit(0);
            }
            become_serving_shim(&args, null.into(), to_start, serving, runtime_id)
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop((to_start, null, wait_for_go));
            let placed = containerd_shim::cgroup::set_cgroup_and_oom_score(child.as_raw() as u32);
            if let Err(e) = placed {
                drop(go);
                let _ = nix::sys::wait::waitpid(child, None);
                return Err(format!("shim cgroup or OOM score: {e}"));
            }
            let _ = std::fs::File::from(go).write_all(b"go");
            if let Err(e) = wait_until_serving(from_shim) {
                abandon(child, socket);
                return Err(e);
            }
            // containerd reads stdout and stderr together as the address: nothing else goes
            // to either.
            let mut stdout = std::io::stdout();
            stdout
                .write_all(socket.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|e| format!("cannot write the address to containerd: {e}"))
        }
    }
}

/// In the child: whether `start` placed it in its cgroup and said go (it closes the pipe
/// unwritten when it could not).
fn went_ahead(wait_for_go: OwnedFd) -> bool {
    let mut word = [0u8; 2];
    matches!(std::fs::File::from(wait_for_go).read(&mut word), Ok(n) if n > 0)
}

/// Kills the serving shim of a failed `start`, and removes its socket unless another shim
/// (a pod's, which the child found serving) still answers there.
fn abandon(child: nix::unistd::Pid, socket: &str) {
    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(child, None);
    super::remove_dead_socket(socket, 1);
}

/// In the parent: the serving shim's stdout, read until it closes it: once it serves, or when
/// it leaves because a pod's shim serves the socket. It writes there only why it could not
/// serve (and then exits).
fn wait_until_serving(from_shim: OwnedFd) -> Result<(), String> {
    let mut output = Vec::new();
    std::fs::File::from(from_shim)
        .read_to_end(&mut output)
        .map_err(|e| format!("reading the serving shim's output: {e}"))?;
    match String::from_utf8_lossy(&output).trim() {
        "" => Ok(()),
        failed => Err(failed.to_string()),
    }
}

/// In the child: stdin and stderr on /dev/null and stdout on the pipe to `start` (as an
/// exec'd shim gets them), the command line of an exec'd shim, then serve until it leaves.
fn become_serving_shim(
    args: &[String],
    null: OwnedFd,
    to_start: OwnedFd,
    flags: Flags,
    runtime_id: &str,
) -> ! {
    for (from, to) in [(&null, 0), (&null, 2), (&to_start, 1)] {
        // SAFETY: dup2 onto the standard descriptors, which this process owns.
        unsafe { libc::dup2(from.as_raw_fd(), to) };
    }
    drop((null, to_start));
    // If the kernel refuses (built without checkpoint/restore), `ps` shows `start`'s
    // arguments: harmless.
    let _ = crate::isolation::replace_command_line(args);
    let served = match super::runtime() {
        Ok(rt) => rt.block_on(super::bootstrap::serve(runtime_id, flags)),
        Err(e) => Err(format!("cannot start the async runtime: {e}")),
    };
    std::process::exit(match served {
        Ok(()) => 0,
        Err(e) => {
            // To `start`, if it still reads (before this shim served), which reports it.
            let _ = writeln!(std::io::stdout(), "{runtime_id}: {e}");
            1
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_shim_gets_the_arguments_containerd_shim_would_give() {
        let mut flags = Flags {
            namespace: "default".into(),
            id: "c1".into(),
            address: "/run/containerd/containerd.sock".into(),
            publish_binary: "/usr/bin/containerd".into(),
            ..Default::default()
        };
        let args = serving_args("shim", &flags, "unix:///s/x");
        assert_eq!(
            args.join(" "),
            "shim -namespace default -id c1 -address /run/containerd/containerd.sock \
             -socket unix:///s/x"
        );
        flags.debug = true;
        assert_eq!(serving_args("shim", &flags, "s").last().unwrap(), "-debug");
        let parsed = containerd_shim::parse(&args[1..]).unwrap();
        assert_eq!(parsed.socket, "unix:///s/x");
        assert!(parsed.action.is_empty(), "an exec'd shim with these serves");
    }
}
