//! Exits with the code given as arg 1 (default 3) via std::process::exit.
//! Prints nothing. A non-numeric argument exits 1 with a message on stderr.
fn main() {
    let code = match std::env::args().nth(1) {
        None => 3,
        Some(s) => match s.parse::<i32>() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: bad exit code {s:?}: {e}");
                std::process::exit(1);
            }
        },
    };
    std::process::exit(code);
}
