use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use super::*;

const OWNER: LogOwner<'static> = LogOwner {
    id: "c1",
    namespace: "ns1",
};

/// A shell script at `dir/name`, made executable.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `path`'s content once it holds `want` (or what it holds after 10 s).
fn eventually(path: &Path, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = std::fs::read_to_string(path).unwrap_or_default();
        if got == want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_binary_uri_names_its_program_and_its_query_pairs_become_arguments() {
    let p = LogProgram::of("binary:///usr/bin/log%20it?a=b&c&a=z&d=e%20f+g")
        .unwrap()
        .unwrap();
    assert_eq!(p.path, PathBuf::from("/usr/bin/log it"));
    assert_eq!(p.args, ["a", "b", "c", "", "d", "e f g"]);
    let nerdctl = LogProgram::of(
        "binary:///usr/local/bin/nerdctl?_NERDCTL_INTERNAL_LOGGING=/var/lib/nerdctl/1935db59",
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        nerdctl.args,
        ["_NERDCTL_INTERNAL_LOGGING", "/var/lib/nerdctl/1935db59"]
    );
    assert_eq!(LogProgram::of("/run/fifo/c1-stdout").unwrap(), None);
    assert_eq!(LogProgram::of("file:///var/log/c.log").unwrap(), None);
    let err = LogProgram::of("binary://host/x").unwrap_err();
    assert!(err.to_string().contains("binary://host/x"), "{err}");
}

#[test]
fn the_program_reads_both_streams_knows_its_container_and_nothing_of_the_shims_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let body = format!(
        "/usr/bin/env > {d}/env\necho \"$@\" > {d}/args\nexec 5>&-\n\
         /bin/cat <&3 > {d}/out.tmp && /bin/mv {d}/out.tmp {d}/out &\n\
         /bin/cat <&4 > {d}/err.tmp && /bin/mv {d}/err.tmp {d}/err\nwait\n",
        d = dir.path().display()
    );
    let program = script(dir.path(), "logger", &body);
    let uri = format!("binary://{}?dir=x&y", program.display());
    let [stdout, stderr] = LogProgram::of(&uri)
        .unwrap()
        .unwrap()
        .start(OWNER, READY_TIMEOUT)
        .unwrap();
    std::fs::File::from(stdout)
        .write_all(b"to stdout\n")
        .unwrap();
    std::fs::File::from(stderr)
        .write_all(b"to stderr\n")
        .unwrap();
    // Both writing ends are gone now: the program reads to end-of-file.
    assert_eq!(eventually(&out, "to stdout\n"), "to stdout\n");
    let err = dir.path().join("err");
    assert_eq!(eventually(&err, "to stderr\n"), "to stderr\n");
    let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
    assert_eq!(args, "dir x y \n");
    let env = std::fs::read_to_string(dir.path().join("env")).unwrap();
    let mut vars: Vec<&str> = env.lines().filter(|l| !l.starts_with("PWD=")).collect();
    vars.sort();
    assert_eq!(
        vars,
        ["CONTAINER_ID=c1", "CONTAINER_NAMESPACE=ns1"],
        "{env}"
    );
}

#[test]
fn a_missing_program_is_an_error_naming_the_uri() {
    let uri = "binary:///nonexistent/wasmpod-logger?a=b";
    let err = LogProgram::of(uri)
        .unwrap()
        .unwrap()
        .start(OWNER, READY_TIMEOUT)
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains(uri) && text.contains("cannot run"), "{text}");
    assert_eq!(
        err.code(),
        containerd_shim::protos::ttrpc::Code::INVALID_ARGUMENT
    );
}

#[test]
fn a_program_that_leaves_without_reading_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let program = script(dir.path(), "quitter", "exit 3\n");
    let uri = format!("binary://{}", program.display());
    let program = LogProgram::of(&uri).unwrap().unwrap();
    // Another test's child, between its fork and its exec, may hold the pipe a moment (the
    // shim's own builders cannot: the fork gate): then the start goes through, as it would
    // with a live reader. A start never fails for any other reason here.
    let mut errors = Vec::new();
    for _ in 0..5 {
        if let Err(e) = program.start(OWNER, READY_TIMEOUT) {
            errors.push(e.to_string());
        }
    }
    assert!(
        !errors.is_empty(),
        "a program that exited at once was taken"
    );
    for err in errors {
        assert!(
            err.contains(&uri) && err.contains("without reading"),
            "{err}"
        );
    }
}

#[test]
fn a_program_that_never_gets_ready_is_killed_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let body = format!("echo $$ > {}\nexec /bin/sleep 60\n", pid_file.display());
    let program = script(dir.path(), "sleepy", &body);
    let uri = format!("binary://{}", program.display());
    let started = Instant::now();
    let err = LogProgram::of(&uri)
        .unwrap()
        .unwrap()
        .start(OWNER, Duration::from_millis(300))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&uri) && err.contains("did not get ready"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it waited too long"
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Killed and collected: no such process is left.
    assert_eq!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    );
}
