//! A tiny file tool for bind-mount tests.
//!
//!   files read PATH        prints the file's bytes exactly (no added newline)
//!   files write PATH TEXT  writes TEXT exactly (create/truncate), prints
//!                          `wrote N bytes to PATH`
//!   files ls DIR           one entry per line, sorted, directories get `/`
//!   files exhaust PATH     opens PATH again and again, keeping every handle, until an
//!                          open fails; prints `opened N, then: <err>` and exits 0
//!
//! Exit codes: 0 ok; 2 the operation failed (`error: <err>` on stderr);
//! 1 usage error (`usage: ...` on stderr).
use std::io::Write;
use std::process::ExitCode;

const USAGE: &str =
    "usage: files read PATH | files write PATH TEXT | files ls DIR | files exhaust PATH";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let res = match argv.as_slice() {
        ["read", path] => read(path),
        ["write", path, text] => write(path, text),
        ["ls", dir] => ls(dir),
        ["exhaust", path] => exhaust(path),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(1);
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn read(path: &str) -> std::io::Result<()> {
    let data = std::fs::read(path)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&data)?;
    out.flush()
}

fn write(path: &str, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text.as_bytes())?;
    println!("wrote {} bytes to {path}", text.len());
    Ok(())
}

fn ls(dir: &str) -> std::io::Result<()> {
    let mut names = Vec::new();
    for ent in std::fs::read_dir(dir)? {
        let ent = ent?;
        let mut name = ent.file_name().to_string_lossy().into_owned();
        if ent.file_type()?.is_dir() {
            name.push('/');
        }
        names.push(name);
    }
    names.sort();
    let mut out = std::io::stdout().lock();
    for n in names {
        writeln!(out, "{n}")?;
    }
    out.flush()
}

fn exhaust(path: &str) -> std::io::Result<()> {
    let mut open = Vec::new();
    // Bounded, so a host without a descriptor limit cannot make this run forever.
    while open.len() < 1_000_000 {
        match std::fs::File::open(path) {
            Ok(f) => open.push(f),
            Err(e) => {
                println!("opened {}, then: {e}", open.len());
                return Ok(());
            }
        }
    }
    println!("opened {} without an error", open.len());
    Ok(())
}
