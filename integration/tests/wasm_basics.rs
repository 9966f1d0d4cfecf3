//! Wasm programs under `io.containerd.wasmpod.v1`: output, argv, environment, cwd and exit
//! statuses as `ctr run` reports them.

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use wasmpod_integration::{images, with_containerd};

/// A WASI p1 module prints its line to ctr's stdout and exits 0.
#[test]
fn hello_module() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("hello")?;
        let out = ctd.import(&img)?.run(&img).exec()?;
        out.success()?;
        ensure!(out.stdout == "hello from wasmpod\n", "{out}");
        Ok(())
    })
}

/// `ctr run --log-uri file://...`: the program's output goes to that file, appended to run
/// after run, its directory made when missing; ctr prints none of it.
#[test]
fn a_file_log_uri_gets_the_output() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("hello")?;
        ctd.import(&img)?;
        let log = ctd.dir().join("logs/hello.log");
        let uri = format!("--log-uri=file://{}", log.display());
        for _ in 0..2 {
            let out = ctd.run(&img).flag(&uri).exec()?;
            out.success()?;
            ensure!(out.stdout.is_empty(), "{out}");
        }
        let logged = std::fs::read_to_string(&log).with_context(|| log.display().to_string())?;
        ensure!(
            logged == "hello from wasmpod\n".repeat(2),
            "{}: {logged:?}",
            log.display()
        );
        Ok(())
    })
}

/// `ctr run --log-uri binary://...` (nerdctl's log drivers are such programs): the logging
/// program gets the output on its fds 3 and 4, the container's id and namespace in its
/// environment and the URI's query as arguments, and leaves once the container is gone.
#[test]
fn a_logging_program_gets_the_output() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("hello")?;
        ctd.import(&img)?;
        let dir = ctd.dir().join("logger");
        std::fs::create_dir_all(&dir)?;
        let logger = dir.join("logger.sh");
        std::fs::write(
            &logger,
            "#!/bin/sh\nd=$2\necho \"$CONTAINER_NAMESPACE $CONTAINER_ID\" > $d/who\nexec 5>&-\n\
             /bin/cat <&3 > $d/stdout &\n/bin/cat <&4 > $d/stderr\nwait\n/bin/touch $d/done\n",
        )?;
        std::fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let uri = format!(
            "--log-uri=binary://{}?dir={}",
            logger.display(),
            dir.display()
        );
        let run = ctd.run(&img).flag(&uri);
        let id = run.container_id().to_string();
        let out = run.exec()?;
        out.success()?;
        ensure!(out.stdout.is_empty(), "ctr printed the output: {out}");
        let done = dir.join("done");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !done.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        ensure!(
            done.exists(),
            "the logging program did not leave after the container"
        );
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        ensure!(
            read("stdout") == "hello from wasmpod\n",
            "stdout: {:?}",
            read("stdout")
        );
        ensure!(read("stderr").is_empty(), "stderr: {:?}", read("stderr"));
        let who = format!("{} {id}\n", ctd.namespace());
        ensure!(read("who") == who, "who: {:?}, want {who:?}", read("who"));
        Ok(())
    })
}

/// A WASI p2 component (wasi:cli/run) prints its line and exits 0.
#[test]
fn hello_component() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("hello-component")?;
        let out = ctd.import(&img)?.run(&img).exec()?;
        out.success()?;
        ensure!(out.stdout == "hello from a wasmpod component\n", "{out}");
        Ok(())
    })
}

/// A C program built against wasi-libc gets its argument and prints both lines.
#[test]
fn hello_c_with_argument() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("hello-c")?;
        let out = ctd.import(&img)?.run(&img).args(["extra word"]).exec()?;
        out.success()?;
        ensure!(
            out.stdout == "hello from C on wasmpod\nextra word\n",
            "{out}"
        );
        Ok(())
    })
}

/// The guest sees exactly the argv, env and cwd ctr asked for: env holds PATH, the image's
/// variable and the `--env` ones plus `PWD` naming `process.cwd`, and nothing of the shim's
/// environment (the canary set on containerd only, TTRPC_ADDRESS...). WASI preview 1 has no
/// working directory and wasi-libc (this Rust guest) starts at `/` whatever the host says, so
/// the cwd reaches the guest as `PWD` (which Go's wasip1 runtime honours); the mount at the
/// cwd is reachable by its absolute path.
#[test]
fn printer_sees_args_env_and_cwd() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().printer()?;
        let host = tempfile::tempdir()?;
        std::fs::write(host.path().join("marker.txt"), "x")?;
        let out = ctd
            .import(&img)?
            .run(&img)
            .args(["first", "second arg", "--ls", "/work"])
            .env("GREETING", "hi there")
            .env("EMPTY", "")
            .mount_ro(host.path(), "/work")
            .cwd("/work")
            .exec()?;
        out.success()?;
        let lines: Vec<&str> = out.stdout.lines().collect();

        let args: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("arg["))
            .collect();
        ensure!(args.len() == 5, "want 5 args:\n{out}");
        ensure!(
            args[0].starts_with("0]=") && args[0].ends_with("app.wasm"),
            "argv[0]: {out}"
        );
        for (i, want) in ["first", "second arg", "--ls", "/work"].iter().enumerate() {
            ensure!(
                args[i + 1] == format!("{}]={want}", i + 1),
                "arg {}: {out}",
                i + 1
            );
        }

        let env: BTreeMap<&str, &str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("env ")?.split_once('='))
            .collect();
        let keys: Vec<&str> = env.keys().copied().collect();
        ensure!(
            keys == ["EMPTY", "GREETING", "IMAGE_VAR", "PATH", "PWD"],
            "environment must be PATH + image + --env only, got {keys:?}\n{out}"
        );
        ensure!(
            env["GREETING"] == "hi there" && env["EMPTY"].is_empty(),
            "{out}"
        );
        ensure!(env["IMAGE_VAR"] == "from-image", "{out}");
        ensure!(!env["PATH"].is_empty(), "empty PATH: {out}");
        ensure!(
            !out.stdout.contains("WASMPOD_LEAK_CANARY"),
            "shim env leaked: {out}"
        );

        ensure!(
            env["PWD"] == "/work",
            "process.cwd must reach the guest as PWD: {out}"
        );
        ensure!(
            lines.contains(&"entry marker.txt"),
            "ls of the cwd mount: {out}"
        );
        // Neither the guest's WASI calls (each was a line at info, through wasmtime-wasi's
        // tracing spans) nor libcgroups' warnings about a cgroup v1 hierarchy the node lacks
        // (four at each Create and Delete here) are lines at containerd's default level.
        for chatter in ["fd_write", "not supported on this system"] {
            let lines = ctd.log_lines_with(chatter);
            ensure!(
                lines.is_empty(),
                "{} lines with {chatter:?} in containerd's log, first: {}",
                lines.len(),
                lines[0]
            );
        }
        Ok(())
    })
}

/// `proc_exit(7)` becomes ctr run's exit status 7; 0 stays 0.
#[test]
fn exit_code_propagates() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("exit-code")?;
        ctd.import(&img)?;
        ctd.run(&img).args(["7"]).exec()?.expect_code(7)?;
        ctd.run(&img).args(["0"]).exec()?.expect_code(0)?;
        Ok(())
    })
}

/// A wasm trap (`unreachable`) ends the task with exit status 134 (128 + SIGABRT).
#[test]
fn trap_exits_134() -> Result<()> {
    with_containerd(|ctd| {
        let img = images().wasm("trap")?;
        let out = ctd.import(&img)?.run(&img).exec()?;
        out.expect_code(134).context("trap")?;
        Ok(())
    })
}
