//! Prints what the runtime handed the program, one fact per line:
//!
//!   arg[0]=printer.wasm
//!   arg[1]=...
//!   env K=V            (all variables, sorted by key then value)
//!   cwd=/some/dir      (std::env::current_dir(); if that errors, the PWD
//!                       variable, and then also `cwd_error=<err>`)
//!
//! With `--ls DIR` anywhere in the args it then lists DIR:
//!
//!   ls DIR
//!   entry NAME         (sorted; directories get a trailing `/`)
//!
//! A listing failure prints `error: <err>` to stderr and exits 2.
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let mut out = std::io::stdout().lock();

    for (i, a) in args.iter().enumerate() {
        let _ = writeln!(out, "arg[{i}]={a}");
    }

    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.sort();
    for (k, v) in &env {
        let _ = writeln!(out, "env {k}={v}");
    }

    match std::env::current_dir() {
        Ok(p) => {
            let _ = writeln!(out, "cwd={}", p.display());
        }
        Err(e) => {
            let pwd = std::env::var("PWD").unwrap_or_default();
            let _ = writeln!(out, "cwd={pwd}");
            let _ = writeln!(out, "cwd_error={e}");
        }
    }

    let ls = args
        .iter()
        .position(|a| a == "--ls")
        .map(|i| args.get(i + 1).cloned().unwrap_or_else(|| ".".into()));
    if let Some(dir) = ls {
        let _ = writeln!(out, "ls {dir}");
        match list(&dir) {
            Ok(names) => {
                for n in names {
                    let _ = writeln!(out, "entry {n}");
                }
            }
            Err(e) => {
                let _ = out.flush();
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let _ = out.flush();
    ExitCode::SUCCESS
}

fn list(dir: &str) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for ent in std::fs::read_dir(dir)? {
        let ent = ent?;
        let mut name = ent.file_name().to_string_lossy().into_owned();
        if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            name.push('/');
        }
        names.push(name);
    }
    names.sort();
    Ok(names)
}
