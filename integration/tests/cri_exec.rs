//! Streaming `Exec` through the CRI, as kubelet drives `kubectl exec`: `RuntimeService.Exec`
//! returns a URL on containerd's stream server, and the client speaks the Kubernetes
//! WebSocket channel protocol to it (see `wasmpod_integration::cri::stream`). Into a wasm
//! container of a wasmpod pod and into its native busybox sidecar. Every test gets its own
//! containerd 1.7, and checks that removing its pods leaves nothing behind.

use std::time::Duration;

use anyhow::{ensure, Result};
use k8s_cri::v1::{ContainerConfig, ContainerState};
use wasmpod_integration::cri::stream::{exec_stream, StreamedExec, V4};
use wasmpod_integration::cri::{with_cri, Cri, Pod};
use wasmpod_integration::images::{images, Images};

const WAIT: Duration = Duration::from_secs(20);

/// A wasip1 program that reads stdin one byte at a time up to and including the first
/// newline, writes what it read to stdout, then `line\n` to stderr and exits 0; at
/// end-of-file before a newline it writes what it read, `eof\n` to stderr, and exits 1.
/// It stops at the newline because `v4.channel.k8s.io` cannot close stdin.
const READ_LINE_WAT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  ;; 0: one iovec; 8: nread / nwritten; 16, 24: the stderr words; 64..: the line.
  (data (i32.const 16) "line\n")
  (data (i32.const 24) "eof\n")
  (func $write (param $fd i32) (param $buf i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $buf))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (local $end i32)
    (local.set $end (i32.const 64))
    (block $newline
      (loop $next
        (i32.store (i32.const 0) (local.get $end))
        (i32.store (i32.const 4) (i32.const 1))
        (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (call $proc_exit (i32.const 2))))
        (if (i32.eqz (i32.load (i32.const 8)))
          (then
            (call $write (i32.const 1) (i32.const 64) (i32.sub (local.get $end) (i32.const 64)))
            (call $write (i32.const 2) (i32.const 24) (i32.const 4))
            (call $proc_exit (i32.const 1))))
        (local.set $end (i32.add (local.get $end) (i32.const 1)))
        (br_if $newline
          (i32.eq (i32.load8_u (i32.sub (local.get $end) (i32.const 1))) (i32.const 10)))
        (br $next)))
    (call $write (i32.const 1) (i32.const 64) (i32.sub (local.get $end) (i32.const 64)))
    (call $write (i32.const 2) (i32.const 16) (i32.const 5))
    (call $proc_exit (i32.const 0))))
"#;

/// Starts a wasm container whose `/app.wasm` is the sleeper (ticking forever) and whose
/// rootfs also holds `/bin/exit-code.wasm` and `/bin/read-line.wasm` to exec; returns its id.
fn start_wasm(cri: &Cri, pod: &Pod<'_>) -> Result<String> {
    let sleeper = std::fs::read(Images::program("sleeper")?)?;
    let exit_code = std::fs::read(Images::program("exit-code")?)?;
    let read_line = wat::parse_str(READ_LINE_WAT)?;
    let image = images().wasm_rootfs(
        "exec-tools",
        &[
            ("/app.wasm", sleeper.as_slice()),
            ("/bin/exit-code.wasm", exit_code.as_slice()),
            ("/bin/read-line.wasm", read_line.as_slice()),
        ],
    )?;
    let image = cri.image(image)?;
    start(cri, pod, &cri.container_config("wasm", &image, &[], &[]))
}

/// Starts a busybox sidecar that sleeps; returns its id.
fn start_sidecar(cri: &Cri, pod: &Pod<'_>) -> Result<String> {
    let busybox = cri.image(images().busybox()?)?;
    let cfg = cri.container_config("sidecar", &busybox, &["/bin/sleep"], &["3600"]);
    start(cri, pod, &cfg)
}

fn start(cri: &Cri, pod: &Pod<'_>, config: &ContainerConfig) -> Result<String> {
    let id = pod.start(config)?;
    cri.wait_state(&id, ContainerState::ContainerRunning, WAIT)?;
    Ok(id)
}

/// `Exec` of `cmd` in `id`, then the whole stream: stdin if given, stdout, stderr, status.
fn stream(cri: &Cri, id: &str, cmd: &[&str], stdin: Option<&[u8]>) -> Result<StreamedExec> {
    let url = cri.client()?.exec(id, cmd, stdin.is_some(), false)?;
    // containerd's stream server listens where the config puts it (127.0.0.1, any port).
    ensure!(
        url.starts_with("http://127.0.0.1:") && url.contains("/exec/"),
        "unexpected stream URL {url}"
    );
    let r = exec_stream(&url, stdin)?;
    eprintln!(
        "{cmd:?} via {}: stdout {:?} stderr {:?} status {}",
        r.protocol,
        r.stdout_text(),
        r.stderr_text(),
        r.status
    );
    Ok(r)
}

/// Checks a streamed exec's stdout, stderr and exit code exactly.
fn expect(r: &StreamedExec, stdout: &str, stderr: &str, code: i32) -> Result<()> {
    ensure!(
        r.stdout == stdout.as_bytes() && r.stderr == stderr.as_bytes() && r.exit_code()? == code,
        "expected stdout {stdout:?}, stderr {stderr:?}, exit code {code}; got {r:?}"
    );
    Ok(())
}

/// Streaming exec into a running wasm container runs a wasm program of the container's
/// rootfs with the given args: `/app.wasm 2` prints two ticks on stdout and exits 0;
/// `/app.wasm x` writes only to stderr and exits 1; `/bin/exit-code.wasm 42` exits 42 with
/// no output. containerd 1.7 speaks `v4.channel.k8s.io`, whose status carries the code. The
/// container itself keeps running.
#[test]
fn streaming_exec_runs_wasm_programs_with_args_and_exit_codes() -> Result<()> {
    with_cri(|cri| {
        let pod = cri.run_pod("stream-wasm")?;
        let wasm = start_wasm(cri, &pod)?;

        let r = stream(cri, &wasm, &["/app.wasm", "2"], None)?;
        ensure!(r.protocol == V4, "containerd 1.7 picks v4: {r:?}");
        ensure!(r.status == r#"{"metadata":{},"status":"Success"}"#, "{r:?}");
        expect(&r, "tick 1\ntick 2\n", "", 0)?;

        let r = stream(cri, &wasm, &["/app.wasm", "x"], None)?;
        ensure!(
            r.stdout.is_empty()
                && r.stderr_text().contains("bad tick count")
                && r.exit_code()? == 1,
            "{r:?}"
        );

        let r = stream(cri, &wasm, &["/bin/exit-code.wasm", "42"], None)?;
        expect(&r, "", "", 42)?;

        cri.wait_state(&wasm, ContainerState::ContainerRunning, WAIT)?;
        pod.remove()
    })
}

/// Streaming exec with stdin into a wasm container: `/bin/read-line.wasm` gets the bytes
/// sent on channel 0, echoes the first line on stdout and reports `line` on stderr, exit 0;
/// the second line stays unread.
#[test]
fn streaming_exec_feeds_stdin_to_a_wasm_program() -> Result<()> {
    with_cri(|cri| {
        let pod = cri.run_pod("stream-stdin")?;
        let wasm = start_wasm(cri, &pod)?;

        let input = b"hello from stdin\nnot read\n";
        let r = stream(cri, &wasm, &["/bin/read-line.wasm"], Some(input))?;
        expect(&r, "hello from stdin\n", "line\n", 0)?;

        // Twice, so each exec gets its own stdin.
        let r = stream(cri, &wasm, &["/bin/read-line.wasm"], Some(b"again\n"))?;
        expect(&r, "again\n", "line\n", 0)?;

        cri.wait_state(&wasm, ContainerState::ContainerRunning, WAIT)?;
        pod.remove()
    })
}

/// Streaming exec into the native busybox sidecar of a wasmpod pod: a shell that writes to
/// both streams and exits 3, then `head -n1` and a shell `read` that get their stdin.
#[test]
fn streaming_exec_into_the_busybox_sidecar() -> Result<()> {
    with_cri(|cri| {
        let pod = cri.run_pod("stream-sidecar")?;
        let side = start_sidecar(cri, &pod)?;

        let sh = ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"];
        let r = stream(cri, &side, &sh, None)?;
        expect(&r, "out\n", "err\n", 3)?;

        let r = stream(cri, &side, &["/bin/head", "-n1"], Some(b"first\nsecond\n"))?;
        expect(&r, "first\n", "", 0)?;

        let sh = [
            "/bin/sh",
            "-c",
            "read l; echo \"got $l\"; echo \"$l\" >&2; exit 4",
        ];
        let r = stream(cri, &side, &sh, Some(b"a line\n"))?;
        expect(&r, "got a line\n", "a line\n", 4)?;

        cri.wait_state(&side, ContainerState::ContainerRunning, WAIT)?;
        pod.remove()
    })
}
