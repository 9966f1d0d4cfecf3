//! `Spawn` against real programs: what the child gets, and errors instead of panics.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::sys::wait::{waitpid, WaitStatus};

use super::Spawn;

/// Runs `spawn` with a pipe as its stdout; returns what it wrote and its exit code.
fn output_of(spawn: Spawn) -> (String, i32) {
    let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
    let pid = spawn.dup(w.as_raw_fd(), 1).spawn().expect("spawn");
    drop(w);
    let mut out = String::new();
    std::fs::File::from(r)
        .read_to_string(&mut out)
        .expect("read");
    let code = match waitpid(pid, None).expect("wait") {
        WaitStatus::Exited(_, code) => code,
        other => panic!("{other:?}"),
    };
    (out, code)
}

fn sh(script: &str) -> Spawn {
    Spawn::new(Path::new("/bin/sh"))
        .and_then(|s| s.args(["-c", script, "sh", "first"]))
        .expect("spawn")
}

#[test]
fn the_child_gets_its_arguments_and_only_the_environment_given() {
    let spawn = sh(r#"printf '%s|%s|%s' "$1" "$FOO" "${HOME:-unset}"; exit 3"#)
        .env(["FOO=bar"])
        .expect("env")
        .null(0)
        .null(2);
    assert_eq!(output_of(spawn), ("first|bar|unset".to_owned(), 3));
}

#[test]
fn env_with_keeps_the_shims_environment_and_adds_one() {
    let path = std::env::var("PATH").expect("PATH");
    let spawn = sh(r#"printf '%s|%s' "$PATH" "$WASMPOD_SPAWN_TEST""#)
        .env_with("WASMPOD_SPAWN_TEST", "1")
        .expect("env");
    assert_eq!(output_of(spawn), (format!("{path}|1"), 0));
}

#[test]
fn the_shims_environment_is_the_default() {
    let path = std::env::var("PATH").expect("PATH");
    assert_eq!(output_of(sh(r#"printf '%s' "$PATH""#)), (path, 0));
}

#[test]
fn null_gives_dev_null() {
    let spawn = sh("read line; echo \"[$line]\"; echo lost >&2")
        .null(0)
        .null(2);
    assert_eq!(output_of(spawn), ("[]\n".to_owned(), 0));
}

#[test]
fn a_missing_program_is_an_error_not_a_panic() {
    let err = Spawn::new(Path::new("/nonexistent/wasmpod-helper"))
        .expect("spawn")
        .spawn()
        .expect_err("no such program");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
}

#[test]
fn a_copy_that_could_be_overwritten_is_refused() {
    let err = sh("true")
        .dup(1, 3)
        .null(0)
        .spawn()
        .expect_err("1 is below 3");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("descriptor 1"), "{err}");
}

#[test]
fn a_nul_byte_is_refused_where_it_is() {
    assert!(Spawn::new(Path::new("/bin/sh"))
        .and_then(|s| s.args(["a\0b"]))
        .is_err());
    assert!(Spawn::new(Path::new("/bin/sh"))
        .and_then(|s| s.env(["A=\0"]))
        .is_err());
}
