//! A minimal HTTP/1.0 server for network tests (WASI preview 2: `std::net` sockets).
//!
//!   http-server [ADDR]     listens on ADDR (default `0.0.0.0:8080`), prints
//!                          `listening on ADDR` (flushed), then answers every
//!                          connection with `HTTP/1.0 200 OK` and the body
//!                          `hello from wasmpod http-server\n` (or `$BODY` + `\n`
//!                          when the `BODY` variable is set), and closes it.
//!
//! The request is read up to its blank line (at most 8 KiB) and otherwise ignored.
//! Exit codes: 2 when binding fails (`error: ...` on stderr).
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;

fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "0.0.0.0:8080".to_string());
    let body = match std::env::var("BODY") {
        Ok(b) => format!("{b}\n"),
        Err(_) => "hello from wasmpod http-server\n".to_string(),
    };
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: bind {addr}: {e}");
            return ExitCode::from(2);
        }
    };
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                if let Err(e) = answer(stream, &body) {
                    eprintln!("connection: {e}");
                }
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
    ExitCode::SUCCESS
}

fn answer(mut stream: TcpStream, body: &str) -> std::io::Result<()> {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while req.len() < 8192 && !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let head = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
