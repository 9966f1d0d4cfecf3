//! The HTTP server of a container whose program is an HTTP handler component: it runs in the
//! container's init process (inside the container's namespaces and cgroup), accepts HTTP/1.1
//! connections, admits requests and hands each to a fresh instance (`engine::http`).
//!
//! It knows hyper and tokio and the plan's serving settings; nothing of containerd.
//!
//! - `admission`: concurrency slots and the bounded queue.
//! - `metrics`: counters and their Prometheus exposition.
//! - `report`: the per-request metering line and failure log lines.
//!
//! # Lifecycle
//! SIGTERM (or SIGINT) stops accepting, lets requests in flight finish for at most
//! `plan.http.drain_timeout`, then the process exits 0. SIGKILL cuts whatever still runs.

mod admission;
mod metrics;
mod report;
mod stop;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use wasmtime_wasi_http::io::TokioIo;

use self::admission::Admission;
use self::metrics::Metrics;
use crate::engine::http::{handle_request, plain_response, EpochTicker, ResponseBody};
use crate::engine::Program;
use crate::plan::WasiPlan;

/// Why serving could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The runtime, the ticker or the listener could not be set up.
    #[error("cannot serve HTTP on {addr}: {source}")]
    Listen {
        /// The address from `WASMPOD_HTTP_LISTEN` (or the metrics one).
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The async runtime or the epoch ticker could not start.
    #[error("cannot start the HTTP server: {0}")]
    Runtime(std::io::Error),
}

/// One container's server state, shared by its connections.
struct Server {
    program: Arc<Program>,
    plan: Arc<WasiPlan>,
    ticker: EpochTicker,
    admission: Admission,
    metrics: Metrics,
}

/// Serves `program` as `plan.http` says until SIGTERM; returns the exit status (0 after a
/// drain). Blocks the calling thread, which must not be in a tokio runtime.
///
/// # Errors
/// The runtime cannot start or an address cannot be bound.
pub fn serve(program: Arc<Program>, plan: Arc<WasiPlan>) -> Result<i32, ServeError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The shim limits malloc to one arena (its threads are few); request threads here would
    // all contend for it.
    // SAFETY: mallopt only changes allocator tuning; no other thread allocates yet.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, (2 * threads) as libc::c_int) };
    let stop = stop::on_signals().map_err(ServeError::Runtime)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async move {
        let ticker =
            EpochTicker::start(program.wasmtime_engine().clone()).map_err(ServeError::Runtime)?;
        let http = &plan.http;
        let server = Arc::new(Server {
            admission: Admission::new(http.max_concurrency, http.max_queue),
            metrics: Metrics::default(),
            ticker,
            program: program.clone(),
            plan: plan.clone(),
        });
        let listener = bind(http.listen)?;
        if let Some(addr) = http.metrics_listen {
            let metrics = bind(addr)?;
            tokio::spawn(serve_metrics(metrics, server.clone()));
        }
        eprintln!(
            "wasmpod: serving {} on http://{} (instance per request, at most {} at once)",
            program.path().display(),
            http.listen,
            http.max_concurrency
        );
        Ok(accept_until(stop, listener, server).await)
    })
}

fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    let err = |source| ServeError::Listen { addr, source };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(err)?;
    // A restarted container must not wait out TIME_WAIT of its predecessor's connections.
    socket.set_reuseaddr(true).map_err(err)?;
    socket.set_nodelay(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(1024).map_err(err)
}

async fn accept_until(
    mut stop_signal: watch::Receiver<bool>,
    listener: TcpListener,
    server: Arc<Server>,
) -> i32 {
    let (stop_tx, stop_rx) = watch::channel(false);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(stream, server.clone(), stop_rx.clone()));
                }
                // EMFILE and friends: back off a little instead of spinning.
                Err(e) => {
                    eprintln!("wasmpod: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            _ = stop_signal.wait_for(|stopped| *stopped) => break,
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let limit = server.plan.http.drain_timeout;
    let running = server.admission.running();
    eprintln!(
        "wasmpod: stopping: no new connections; waiting up to {} ms for {running} request(s) in flight",
        limit.as_millis()
    );
    if server.admission.drained(limit).await {
        eprintln!("wasmpod: stopped: every request finished");
    } else {
        eprintln!(
            "wasmpod: stopped with {} request(s) still running after {} ms; they are cut",
            server.admission.running(),
            limit.as_millis()
        );
    }
    0
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    server: Arc<Server>,
    mut stop: watch::Receiver<bool>,
) {
    let service = service_fn(move |req| {
        let server = server.clone();
        async move { Ok::<_, Infallible>(server.handle(req).await) }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
    // Finish the request in progress, then close instead of waiting for the next one.
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

impl Server {
    async fn handle(
        self: Arc<Self>,
        req: hyper::Request<Incoming>,
    ) -> hyper::Response<ResponseBody> {
        let arrived = Instant::now();
        let Some(slot) = self.admission.admit().await else {
            self.metrics.record_rejected(arrived.elapsed());
            report::rejected(
                &req,
                self.plan.http.max_concurrency,
                self.plan.http.max_queue,
            );
            return plain_response(
                503,
                "too many requests: every instance slot is busy and the queue is full",
            );
        };
        let server = self.clone();
        handle_request(
            &self.program,
            &self.plan,
            &self.ticker,
            req,
            move |report| {
                drop(slot);
                server.metrics.record(&report);
                report::finished(&report, server.plan.http.metering);
            },
        )
        .await
    }
}

async fn serve_metrics(listener: TcpListener, server: Arc<Server>) {
    while let Ok((stream, _)) = listener.accept().await {
        let server = server.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req: hyper::Request<Incoming>| {
                let text = server
                    .metrics
                    .render(server.admission.running(), server.admission.queued());
                async move {
                    let mut response = plain_response(200, text.trim_end());
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
