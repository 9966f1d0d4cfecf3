//! Terminals through the CRI, as kubelet serves `kubectl exec -it`, `kubectl attach -it` and
//! a pod spec's `tty: true`: the stream server's tty mode (no stderr channel, sizes on
//! channel 4, which it passes on as `ResizePty`) and containers created with a terminal. Wasm
//! containers and a native busybox sidecar of wasmpod pods, on containerd 1.7. Every test
//! removes its pods and checks that nothing is left behind.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use k8s_cri::v1::{ContainerConfig, ContainerState};
use wasmpod_integration::cri::stream::{ExecStream, V4, V5};
use wasmpod_integration::cri::{with_cri, Cri, Pod};
use wasmpod_integration::images::{images, Images};

const WAIT: Duration = Duration::from_secs(20);
/// What the `tty` test program prints when all three of its stdio are a terminal.
const ALL_TTY: &str = "stdin=tty stdout=tty stderr=tty";
/// ^D: at the start of a line, the terminal gives the reader end-of-file.
const CTRL_D: &[u8] = b"\x04";

/// Starts a wasm container whose `/app.wasm` is the sleeper and whose rootfs holds
/// `/bin/tty.wasm` and `/bin/exit-code.wasm`; returns its id.
fn start_wasm(cri: &Cri, pod: &Pod<'_>) -> Result<String> {
    let sleeper = std::fs::read(Images::program("sleeper")?)?;
    let tty = std::fs::read(Images::program("tty")?)?;
    let exit_code = std::fs::read(Images::program("exit-code")?)?;
    let image = images().wasm_rootfs(
        "tty-tools",
        &[
            ("/app.wasm", sleeper.as_slice()),
            ("/bin/tty.wasm", tty.as_slice()),
            ("/bin/exit-code.wasm", exit_code.as_slice()),
        ],
    )?;
    let config = cri.container_config("wasm", &cri.image(image)?, &[], &[]);
    start(cri, pod, &config)
}

/// Starts a busybox sidecar that sleeps; returns its id.
fn start_sidecar(cri: &Cri, pod: &Pod<'_>) -> Result<String> {
    let busybox = cri.image(images().busybox()?)?;
    let config = cri.container_config("sidecar", &busybox, &["/bin/sleep"], &["3600"]);
    start(cri, pod, &config)
}

fn start(cri: &Cri, pod: &Pod<'_>, config: &ContainerConfig) -> Result<String> {
    let id = pod.start(config)?;
    cri.wait_state(&id, ContainerState::ContainerRunning, WAIT)?;
    Ok(id)
}

/// `kubectl exec -it ID -- CMD`: `Exec` with stdin and a tty, connected, with kubectl's
/// first resize.
fn exec_tty(cri: &Cri, id: &str, cmd: &[&str]) -> Result<ExecStream> {
    let url = cri.client()?.exec(id, cmd, true, true)?;
    let mut s = ExecStream::connect(&url, &[V5, V4])?;
    s.resize(80, 24)?;
    Ok(s)
}

/// `kubectl exec -it` into a wasm container runs a wasm program of its rootfs on a terminal:
/// the program sees a tty on stdin, stdout and stderr; a typed line comes back echoed by the
/// terminal and then read by the program; ^D ends its stdin and it exits 0, with the status
/// on channel 3. An exec -t of a program that exits 7 reports 7.
#[test]
fn exec_it_into_a_wasm_container() -> Result<()> {
    with_cri(|cri| {
        let pod = cri.run_pod("tty-exec-wasm")?;
        let wasm = start_wasm(cri, &pod)?;

        let mut s = exec_tty(cri, &wasm, &["/bin/tty.wasm", "read"])?;
        let at = s.wait_stdout(ALL_TTY, 0)?;
        s.write_stdin(b"hello terminal\n")?;
        // The terminal echoes the line (\n becomes \r\n), then the program answers.
        let at = s.wait_stdout("hello terminal\r\n", at)?;
        let at = s.wait_stdout("read: hello terminal\r\n", at)?;
        s.write_stdin(CTRL_D)?;
        s.wait_stdout("eof\r\n", at)?;
        let r = s.finish()?;
        eprintln!("exec -it tty.wasm: {r:?}");
        ensure!(r.stderr.is_empty(), "a terminal has no stderr: {r:?}");
        ensure!(r.exit_code()? == 0, "{r:?}");

        let r = exec_tty(cri, &wasm, &["/bin/exit-code.wasm", "7"])?.finish()?;
        ensure!(r.exit_code()? == 7, "exit code through a tty exec: {r:?}");

        cri.wait_state(&wasm, ContainerState::ContainerRunning, WAIT)?;
        pod.remove()
    })
}

/// Sends lines to a shell that answers each with the terminal's size, until it answers
/// `rows cols`; returns where that answer ends in stdout. Each size change reaches the shim as
/// `ResizePty` while stdin travels separately, so the first line may still see the old size.
fn wait_for_size(s: &mut ExecStream, rows: u16, cols: u16, mut at: usize) -> Result<usize> {
    let want = format!("{rows} {cols}");
    for n in 0..50 {
        let line = format!("l{rows}x{cols}n{n}");
        s.write_stdin(format!("{line}\n").as_bytes())?;
        let end = s.wait_stdout(&format!(" for {line}\r\n"), at)?;
        let answer = String::from_utf8_lossy(&s.stdout()[at..end]).into_owned();
        at = end;
        if answer.contains(&format!("size {want} for {line}")) {
            return Ok(at);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("the terminal never became {want}")
}

/// `kubectl exec -it` into the native busybox sidecar of a wasmpod pod: `stty size` follows
/// the sizes sent on the resize channel (80x24 at connect, then 132x43), and ^D ends the
/// shell's loop with exit 0.
#[test]
fn exec_it_into_the_sidecar_follows_resizes() -> Result<()> {
    with_cri(|cri| {
        let pod = cri.run_pod("tty-exec-sidecar")?;
        let side = start_sidecar(cri, &pod)?;

        let sh = [
            "/bin/sh",
            "-c",
            "while read l; do echo \"size $(stty size) for $l\"; done; exit 0",
        ];
        let mut s = exec_tty(cri, &side, &sh)?;
        let at = wait_for_size(&mut s, 24, 80, 0)?;
        s.resize(132, 43)?;
        wait_for_size(&mut s, 43, 132, at)?;
        s.write_stdin(CTRL_D)?;
        let r = s.finish()?;
        ensure!(
            r.stderr.is_empty() && r.exit_code()? == 0,
            "sidecar exec -it: {r:?}"
        );

        cri.wait_state(&side, ContainerState::ContainerRunning, WAIT)?;
        pod.remove()
    })
}

/// A pod spec's `tty: true` (no stdin): the wasm container's stdio are a terminal, its output
/// lands in the CRI log as stdout, and it exits 0; a busybox container beside it also finds a
/// terminal and its exit code (5) is reported.
#[test]
fn tty_containers_write_their_terminal_to_the_cri_log() -> Result<()> {
    with_cri(|cri| {
        let pod = cri.run_pod("tty-containers")?;
        let tty = std::fs::read(Images::program("tty")?)?;
        let image = images().wasm_rootfs("tty-app", &[("/app.wasm", tty.as_slice())])?;
        let mut wasm = cri.container_config("wasm", &cri.image(image)?, &[], &[]);
        wasm.tty = true;
        let wasm_id = pod.start(&wasm)?;
        let status = cri.wait_state(&wasm_id, ContainerState::ContainerExited, WAIT)?;
        ensure!(status.exit_code == 0, "tty wasm container: {status:?}");
        let log = pod.wait_log(&wasm, ALL_TTY, WAIT)?;
        ensure!(
            log.iter()
                .all(|l| l.stream == "stdout" && !l.content.contains('\r')),
            "a terminal's output is stdout, with CRI's line handling: {log:?}"
        );

        let busybox = cri.image(images().busybox()?)?;
        let sh = "if [ -t 0 ] && [ -t 1 ]; then echo on a terminal; fi; exit 5";
        let mut native = cri.container_config("native", &busybox, &["/bin/sh", "-c"], &[sh]);
        native.tty = true;
        let native_id = pod.start(&native)?;
        let status = cri.wait_state(&native_id, ContainerState::ContainerExited, WAIT)?;
        ensure!(status.exit_code == 5, "tty busybox container: {status:?}");
        pod.wait_log(&native, "on a terminal", WAIT)?;

        pod.remove()
    })
}

/// `kubectl run -it` / `kubectl attach -it`: a wasm container created with `stdin`,
/// `stdin_once` and `tty`; attaching gives its terminal: a typed line reaches the program,
/// ^D ends its stdin, and the container exits 0 with everything in its CRI log.
#[test]
fn attach_it_to_a_wasm_container() -> Result<()> {
    with_cri(|cri| {
        let pod = cri.run_pod("tty-attach")?;
        let tty = std::fs::read(Images::program("tty")?)?;
        let image = images().wasm_rootfs("tty-app", &[("/app.wasm", tty.as_slice())])?;
        let mut config = cri.container_config("wasm", &cri.image(image)?, &[], &["read"]);
        config.tty = true;
        config.stdin = true;
        config.stdin_once = true;
        let id = start(cri, &pod, &config)?;
        pod.wait_log(&config, ALL_TTY, WAIT)?;

        let url = cri.client()?.attach(&id, true)?;
        let mut s = ExecStream::connect(&url, &[V5, V4])?;
        s.resize(100, 30)?;
        s.write_stdin(b"via attach\n")?;
        s.wait_stdout("read: via attach\r\n", 0)?;
        s.write_stdin(CTRL_D)?;
        s.wait_stdout("eof\r\n", 0)
            .context("the program's last line, through the attach stream")?;

        let status = cri.wait_state(&id, ContainerState::ContainerExited, WAIT)?;
        ensure!(status.exit_code == 0, "attached wasm container: {status:?}");
        pod.wait_log(&config, "eof", WAIT)?;
        pod.wait_log(&config, "read: via attach", WAIT)?;
        pod.remove()
    })
}
