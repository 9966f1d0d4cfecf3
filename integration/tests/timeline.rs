//! `WASMPOD_TIMELINE`, the timeline `make trace` sums up: a Create and a Start through a real
//! containerd mark every step of the build's path, each from the process that takes it.

use anyhow::{ensure, Context, Result};
use wasmpod_integration::{images, with_containerd_env};

/// The build's path in the order `scripts/trace-start.sh` sums it up, then Start.
const PATH: [&str; 21] = [
    "shim: create",
    "shim: rootfs, loader and stdio done",
    "shim: bundle written, forking the builder",
    "builder: start",
    "builder: spec loaded",
    "builder: state and config saved",
    "intermediate: start",
    "intermediate: joining cgroups",
    "intermediate: cloning init",
    "init: start",
    "init: namespaces set",
    "init: rootfs mounted and pivot_root done",
    "init: ready",
    "main: init ready",
    "main: state saved",
    "builder: answered",
    "shim: answer received",
    "shim: state read back",
    "shim: create done",
    "shim: start",
    "shim: start done",
];

/// One line of the timeline: `pid label nanoseconds`.
fn parse(line: &str) -> Option<(u32, String, u128)> {
    let mut words: Vec<&str> = line.split(' ').collect();
    let ns = words.pop()?.parse().ok()?;
    let pid = words.first()?.parse().ok()?;
    Some((pid, words[1..].join(" "), ns))
}

#[test]
fn a_run_marks_every_step_of_its_create_in_order_from_each_process() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("timeline");
    let env = [("WASMPOD_TIMELINE", file.to_str().context("temp path")?)];
    with_containerd_env(&env, |ctd| {
        let img = images().wasm("hello")?;
        let out = ctd.import(&img)?.run(&img).exec()?;
        out.success()?;
        ensure!(out.stdout == "hello from wasmpod\n", "{out}");
        Ok(())
    })?;
    let text = std::fs::read_to_string(&file).with_context(|| file.display().to_string())?;
    let marks: Vec<(u32, String, u128)> = text.lines().filter_map(parse).collect();
    let find = |label: &str| marks.iter().find(|(_, l, _)| l == label);
    let mut last = 0;
    for label in PATH {
        let (_, _, at) = find(label).with_context(|| format!("no {label:?} in\n{text}"))?;
        ensure!(
            *at >= last,
            "{label:?} marked before the step before it:\n{text}"
        );
        last = *at;
    }
    let pid = |label: &str| find(label).map(|(pid, _, _)| *pid);
    let processes = [
        "shim: create",
        "builder: start",
        "intermediate: start",
        "init: start",
    ];
    let pids: std::collections::BTreeSet<_> = processes.iter().map(|l| pid(l)).collect();
    ensure!(
        pids.len() == processes.len(),
        "one process each for {processes:?}:\n{text}"
    );
    ensure!(
        pid("builder: start") == pid("main: init ready"),
        "libcontainer's main process is the builder:\n{text}"
    );
    Ok(())
}
