//! hyper-hello: answers every request `200 hello from native\n`, HTTP/1.1 with
//! keep-alive, on a multi-thread tokio runtime. The floor of the HTTP benchmark.
//! Usage: hyper-hello [ADDR]   (default 127.0.0.1:8081)

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &[u8] = b"hello from native\n";

async fn hello(_req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(BODY)))
        .expect("valid response"))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(a) => a.parse().unwrap_or_else(|e| {
            eprintln!("hyper-hello: bad address {a:?}: {e}");
            std::process::exit(1)
        }),
        None => "127.0.0.1:8081".parse().unwrap(),
    };
    let listener = TcpListener::bind(addr).await.unwrap_or_else(|e| {
        eprintln!("hyper-hello: bind {addr}: {e}");
        std::process::exit(2)
    });
    eprintln!(
        "hyper-hello: listening on http://{}",
        listener.local_addr().unwrap()
    );
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("hyper-hello: accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            // keep-alive is on by default for HTTP/1.1 connections.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(hello))
                .await;
        });
    }
}
