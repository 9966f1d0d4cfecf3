//! Terminals (`-t`) under wasmpod, driven as a person would: ctr (or the docker CLI) on a
//! terminal of its own (util-linux `script`, see `wasmpod_integration::terminal`), keys typed
//! into it, the screen read back. Wasm programs and native (busybox) containers alike.

use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Result};
use wasmpod_integration::docker::{with_docker, WASM};
use wasmpod_integration::terminal::{InTerminal, SIZE};
use wasmpod_integration::{images, with_containerd, Containerd, Images, WASMPOD_RUNTIME};

const WAIT: Duration = Duration::from_secs(30);

/// The size ctr's terminal has, as `stty size` prints it.
fn size_line() -> String {
    format!("size={} {}", SIZE.0, SIZE.1)
}

/// Shell that prints `size=ROWS COLS` once ctr's ResizePty (sent right after Start, so racing
/// the program) has arrived, or what it has after 5 s. (busybox `stty size` prints nothing on
/// stdout while the size is still 0x0.)
const PRINT_SIZE: &str = "n=0; s=$(stty size 2>/dev/null); \
    until [ -n \"$s\" ] && [ \"$s\" != \"0 0\" ] || [ $n -ge 50 ]; do \
    sleep 0.1; s=$(stty size 2>/dev/null); n=$((n+1)); done; echo size=$s";

/// `ctr task exec -t` of `argv` in container `id`, on a terminal.
fn exec_on_terminal(
    ctd: &Containerd,
    id: &str,
    exec_id: &str,
    argv: &[&str],
) -> Result<InTerminal> {
    let mut cmd: Command = ctd.ctr_command();
    cmd.args(["task", "exec", "-t", "--exec-id", exec_id, id])
        .args(argv);
    InTerminal::spawn(&cmd)
}

/// With the `tty read` program on `term`: types `line` and Enter, sees it echoed by the
/// program, then ^D, which must end its stdin (`eof`, status 0).
fn type_a_line_then_ctrl_d(mut term: InTerminal, line: &str) -> Result<()> {
    term.wait_for("stdin=tty stdout=tty stderr=tty", WAIT)?;
    term.type_keys(&format!("{line}\r"))?;
    term.wait_for(&format!("read: {line}"), WAIT)?;
    term.type_keys("\x04")?;
    let out = term.wait(WAIT)?;
    out.success()?;
    ensure!(out.stdout.contains("eof"), "^D must end stdin: {out}");
    Ok(())
}

/// `ctr run -t` of a wasm program: its stdin, stdout and stderr are a terminal (wasmtime-wasi
/// reports the pty as a character device), and what it prints reaches ctr's terminal.
#[test]
fn a_wasm_program_run_with_t_sees_a_terminal() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("tty")?;
        let out = ctd.import(&img)?.run(&img).terminal()?.wait(WAIT)?;
        out.success()?;
        ensure!(
            out.stdout.contains("stdin=tty stdout=tty stderr=tty"),
            "the guest must see a terminal: {out}"
        );
        Ok(())
    })
}

/// Lines typed at ctr's terminal reach a wasm program's stdin (Enter ends a line), and ^D at the
/// start of a line is end-of-file, as on any terminal.
#[test]
fn typed_lines_and_ctrl_d_reach_a_wasm_program() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("tty")?;
        let term = ctd.import(&img)?.run(&img).args(["read"]).terminal()?;
        type_a_line_then_ctrl_d(term, "hello wasm")
    })
}

/// ^C at the terminal interrupts a wasm program: the runner is the session leader with the pty
/// as its controlling terminal, so the line discipline sends it SIGINT (status 130).
#[test]
fn ctrl_c_interrupts_a_wasm_program() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("sleeper")?;
        let mut term = ctd.import(&img)?.run(&img).terminal()?;
        term.wait_for("tick 1", WAIT)?;
        term.type_keys("\x03")?;
        let out = term.wait(WAIT)?;
        out.expect_code(130)?;
        Ok(())
    })
}

/// A busybox container under wasmpod with `-t` gets a pty of its own devpts sized like ctr's
/// terminal (ResizePty), and every line of a long output reaches ctr before the exit status:
/// the tail is copied out before TaskExit.
#[test]
fn a_native_container_gets_a_sized_terminal_and_all_its_output() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().busybox()?;
        let script = format!(
            "tty; {PRINT_SIZE}; i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done; \
             echo the-end; exit 3"
        );
        let out = ctd
            .import(&img)?
            .run(&img)
            .argv(["sh", "-c", &script])
            .terminal()?
            .wait(WAIT)?;
        out.expect_code(3)?;
        ensure!(
            out.stdout.contains("/dev/pts/0"),
            "a pty of the container: {out}"
        );
        ensure!(out.stdout.contains(&size_line()), "ctr's size: {out}");
        let lines = out.stdout.matches("line-").count();
        ensure!(
            lines == 3000 && out.stdout.trim_end().ends_with("the-end"),
            "all 3000 lines and the last one must arrive, got {lines}; tail: {:?}",
            &out.stdout[out.stdout.len().saturating_sub(200)..]
        );
        Ok(())
    })
}

/// `ctr task exec -t` into a running wasm container and into a native one: the exec gets a
/// terminal of its own with ctr's size, its output, and its exit status.
#[test]
fn exec_with_t_into_wasm_and_native_containers() -> Result<()> {
    with_containerd(|ctd| {
        let tool = Images::program("tty")?;
        let wasm = images().wasm_with(
            "sleeper",
            &["--dir", &format!("{}:/bin/tty.wasm", tool.display())],
        )?;
        let task = ctd.import(&wasm)?.run(&wasm).args(["100"]).detach()?;
        task.wait_for_status("RUNNING", WAIT)?;
        let out = exec_on_terminal(ctd, task.id(), "w1", &["/bin/tty.wasm"])?.wait(WAIT)?;
        out.success()?;
        ensure!(
            out.stdout.contains("stdin=tty stdout=tty stderr=tty"),
            "a wasm exec must see a terminal: {out}"
        );

        let busybox = images().busybox()?;
        let native = ctd
            .import(&busybox)?
            .run(&busybox)
            .argv(["sleep", "100"])
            .detach()?;
        native.wait_for_status("RUNNING", WAIT)?;
        let script = format!("tty; {PRINT_SIZE}; exit 4");
        let out = exec_on_terminal(ctd, native.id(), "n1", &["sh", "-c", &script])?.wait(WAIT)?;
        out.expect_code(4)?;
        ensure!(out.stdout.contains("/dev/pts/"), "a pty: {out}");
        ensure!(out.stdout.contains(&size_line()), "ctr's size: {out}");
        Ok(())
    })
}

/// ResizePty sent straight to the shim, for the init process and for an exec, changes the size
/// each one sees (busybox `stty size` in a loop).
#[test]
fn resize_pty_reaches_the_init_process_and_an_exec() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().busybox()?;
        let watch = "while true; do stty size; sleep 0.2; done";
        let run = ctd.import(&img)?.run(&img).argv(["sh", "-c", watch]);
        let id = run.container_id().to_string();
        let mut init = run.terminal()?;
        init.wait_for(&format!("{} {}", SIZE.0, SIZE.1), WAIT)?;
        ctd.shim_resize_pty(&id, "", 123, 45)?;
        init.wait_for("45 123", WAIT)?;

        let mut exec = exec_on_terminal(ctd, &id, "e1", &["sh", "-c", watch])?;
        exec.wait_for(&format!("{} {}", SIZE.0, SIZE.1), WAIT)?;
        ctd.shim_resize_pty(&id, "e1", 77, 22)?;
        exec.wait_for("22 77", WAIT)?;
        ensure!(
            !init.screen().contains("22 77"),
            "an exec's resize must not reach the init's terminal"
        );

        ctd.task_kill(&id, "SIGKILL")?.success()?;
        exec.wait(WAIT)?;
        init.wait(WAIT)?;
        Ok(())
    })
}

/// `docker run -it` of a wasm program and `docker exec -it` into a busybox container, both
/// under wasmpod: a terminal, typed input, Docker's window size, exit statuses.
#[test]
fn docker_run_and_exec_with_a_terminal() -> Result<()> {
    with_docker(|d| {
        let tty = d.load(images().wasm("tty")?)?;
        let mut run = d.command();
        run.args(["run", "--rm", "-it"])
            .args(WASM)
            .args([&tty, "read"]);
        type_a_line_then_ctrl_d(InTerminal::spawn(&run)?, "from docker")?;

        let busybox = d.load(images().busybox()?)?;
        let id = d.run_detached(
            &["--runtime", WASMPOD_RUNTIME],
            &busybox,
            &["-c", "sleep 60"],
        )?;
        let script = format!("tty; {PRINT_SIZE}; exit 5");
        let mut exec = d.command();
        exec.args(["exec", "-it", &id, "sh", "-c", &script]);
        let out = InTerminal::spawn(&exec)?.wait(WAIT)?;
        out.expect_code(5)?;
        ensure!(out.stdout.contains("/dev/pts/"), "a pty: {out}");
        ensure!(
            out.stdout.contains(&size_line()),
            "the docker CLI's size: {out}"
        );
        d.docker(["rm", "-f", &id])?.success()?;
        Ok(())
    })
}
