//! One request, one instance: instantiate from the pool, call `handle`, stream the response,
//! and report what the request cost and how it ended.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::WasiHttpView;

use super::body::{plain_response, LimitedBody, ResponseBody};
use super::state::HttpState;
use super::ticker::EpochTicker;
use crate::engine::program::{Linked, Program};
use crate::engine::EngineError;
use crate::plan::WasiPlan;

/// Fuel given to a metered request: more than any request can burn, so fuel only counts.
const FUEL_BUDGET: u64 = i64::MAX as u64;

/// Why a request did not end the way the guest meant it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Past the deadline (epoch interruption in wasm code, or a timer while it waited).
    Timeout(Duration),
    /// The instance's memory growth was refused at its cap and the guest then trapped.
    MemoryCap(String),
    /// The guest trapped (the message has the trap and its wasm backtrace).
    Trap(String),
    /// The request body was larger than allowed.
    BodyTooLarge(u64),
    /// The guest returned without ever setting a response.
    NoResponse,
    /// The guest set an error code instead of a response.
    GuestError(String),
    /// The instance could not be made (pool exhausted, a preopen missing...).
    Setup(String),
}

impl Failure {
    /// The status a client gets when this happens before the response headers were sent.
    pub fn status(&self) -> u16 {
        match self {
            Failure::Timeout(_) => 504,
            Failure::BodyTooLarge(_) => 413,
            Failure::Setup(_) => 503,
            Failure::MemoryCap(_) | Failure::Trap(_) | Failure::NoResponse => 500,
            Failure::GuestError(_) => 500,
        }
    }

    /// A short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Timeout(_) => "timeout",
            Failure::MemoryCap(_) => "memory_cap",
            Failure::Trap(_) => "trap",
            Failure::BodyTooLarge(_) => "body_too_large",
            Failure::NoResponse => "no_response",
            Failure::GuestError(_) => "guest_error",
            Failure::Setup(_) => "setup",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout(t) => write!(f, "request deadline of {} ms exceeded", t.as_millis()),
            Failure::MemoryCap(m) => write!(f, "instance memory cap reached: {m}"),
            Failure::Trap(m) => write!(f, "guest trapped: {m}"),
            Failure::BodyTooLarge(limit) => {
                write!(f, "request body larger than the limit of {limit} bytes")
            }
            Failure::NoResponse => write!(f, "the handler returned without a response"),
            Failure::GuestError(m) => write!(f, "the handler answered with an error: {m}"),
            Failure::Setup(m) => write!(f, "no instance for this request: {m}"),
        }
    }
}

/// What one request cost and how it ended; given to the server when the instance is gone.
#[derive(Debug, Clone)]
pub struct RequestReport {
    /// Request method.
    pub method: String,
    /// Request path (no query).
    pub path: String,
    /// Status sent to the client (the guest's, or the host's for a failure).
    pub status: u16,
    /// From arrival to the instance's end (the response body included).
    pub wall: Duration,
    /// Fuel the guest burnt, when metering is on.
    pub fuel: Option<u64>,
    /// Largest linear memory the instance had, in bytes.
    pub peak_memory_bytes: u64,
    /// Set when the request did not end as the guest meant.
    pub failure: Option<Failure>,
}

/// How the instance's task ended.
struct Ended {
    failure: Option<Failure>,
    fuel: Option<u64>,
    peak_memory_bytes: u64,
}

/// Serves `req` with a fresh instance of `program` (an HTTP handler loaded by a serving
/// engine), under `plan.http`'s per-request limits; `done` gets the report once the instance
/// has finished, response body included. Returns the response to send (streaming).
pub async fn handle_request<B>(
    program: &Program,
    plan: &WasiPlan,
    ticker: &EpochTicker,
    req: hyper::Request<B>,
    done: impl FnOnce(RequestReport) + Send + 'static,
) -> hyper::Response<ResponseBody>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let start = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let report = move |status: u16, ended: Ended| RequestReport {
        method: method.clone(),
        path: path.clone(),
        status,
        wall: start.elapsed(),
        fuel: ended.fuel,
        peak_memory_bytes: ended.peak_memory_bytes,
        failure: ended.failure,
    };
    let fail = |failure: Failure, report: &dyn Fn(u16, Ended) -> RequestReport| {
        let status = failure.status();
        let text = failure.to_string();
        (status, text, report(status, Ended::failed(failure)))
    };

    let limits = &plan.http;
    if declared_length(&req).is_some_and(|n| n > limits.max_body_bytes) {
        let (status, text, r) = fail(Failure::BodyTooLarge(limits.max_body_bytes), &report);
        done(r);
        return plain_response(status, &text);
    }
    let Linked::Http(pre) = &*program.linked else {
        let (status, text, r) = fail(Failure::Setup("not an HTTP handler".into()), &report);
        done(r);
        return plain_response(status, &text);
    };
    let mut store = match HttpState::new(plan) {
        Ok(state) => Store::new(pre.engine(), state),
        Err(e) => {
            let (status, text, r) = fail(Failure::Setup(e.to_string()), &report);
            done(r);
            return plain_response(status, &text);
        }
    };
    store.limiter(|state| &mut state.limiter);
    // Every tick, wasm code yields to the runtime: a spinning guest cannot hold a worker
    // thread from other requests, and the deadline's timer below can fire and drop it.
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
    if limits.metering {
        let _ = store.set_fuel(FUEL_BUDGET);
    }

    let exceeded = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| LimitedBody::new(body, limits.max_body_bytes, exceeded.clone()));
    let sent_status = Arc::new(AtomicU16::new(0));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let seen = sent_status.clone();
    let resources = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, req)
        .and_then(|req| {
            let out = store
                .data_mut()
                .http()
                .new_response_outparam_from_callback(move |response| {
                    if let Ok(r) = &response {
                        seen.store(r.status().as_u16(), Ordering::Relaxed);
                    }
                    let _ = tx.send(response);
                })?;
            Ok((req, out))
        });
    let (req, out) = match resources {
        Ok(pair) => pair,
        Err(e) => {
            let (status, text, r) = fail(Failure::Setup(format!("{e:#}")), &report);
            done(r);
            return plain_response(status, &text);
        }
    };

    let pre = pre.clone();
    let timeout = limits.request_timeout;
    let body_limit = limits.max_body_bytes;
    let metering = limits.metering;
    let memory_cap = store.data().limiter.cap();
    let running = ticker.running();
    let task = tokio::spawn(async move {
        let _running = running;
        let outcome = tokio::time::timeout(timeout, async {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        })
        .await;
        let state = store.data();
        let failure = match outcome {
            Err(_elapsed) => Some(Failure::Timeout(timeout)),
            // The guest coped with a refused allocation itself; the reason still belongs in
            // the log.
            Ok(Ok(())) if state.limiter.refused() => Some(Failure::MemoryCap(format!(
                "a memory growth was refused at the cap of {} MiB; the guest answered itself",
                memory_cap >> 20
            ))),
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(classify(
                &err,
                state.limiter.refused(),
                exceeded.load(Ordering::Relaxed).then_some(body_limit),
                timeout,
                pre_instantiate_failed(&err),
            )),
        };
        Ended {
            failure,
            fuel: metering.then(|| FUEL_BUDGET.saturating_sub(store.get_fuel().unwrap_or(0))),
            peak_memory_bytes: state.limiter.granted() as u64,
        }
    });

    match rx.await {
        Ok(Ok(response)) => {
            // Headers are out; the instance may still be writing the body.
            tokio::spawn(async move {
                let ended = task.await.unwrap_or_else(Ended::panicked);
                done(report(sent_status.load(Ordering::Relaxed), ended));
            });
            response
        }
        Ok(Err(code)) => {
            let mut ended = task.await.unwrap_or_else(Ended::panicked);
            let failure = ended
                .failure
                .take()
                .unwrap_or(Failure::GuestError(format!("{code:?}")));
            let status = failure.status();
            let text = failure.to_string();
            ended.failure = Some(failure);
            done(report(status, ended));
            plain_response(status, &text)
        }
        Err(_) => {
            // The store, and with it the outparam, is gone: the instance ended without a
            // response. Why is in its result.
            let mut ended = task.await.unwrap_or_else(Ended::panicked);
            let failure = ended.failure.take().unwrap_or(Failure::NoResponse);
            let status = failure.status();
            let text = failure.to_string();
            ended.failure = Some(failure);
            done(report(status, ended));
            plain_response(status, &text)
        }
    }
}

impl Ended {
    fn failed(failure: Failure) -> Self {
        Self {
            failure: Some(failure),
            fuel: None,
            peak_memory_bytes: 0,
        }
    }

    fn panicked(err: tokio::task::JoinError) -> Self {
        Self::failed(Failure::Trap(format!("the request task failed: {err}")))
    }
}

/// The request's `content-length`, when it has a valid one.
fn declared_length<B>(req: &hyper::Request<B>) -> Option<u64> {
    req.headers()
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Instantiation errors that are not traps: the pool is full, a preopen vanished.
fn pre_instantiate_failed(err: &wasmtime::Error) -> bool {
    err.downcast_ref::<wasmtime::Trap>().is_none() && err.to_string().contains("concurrent")
}

fn classify(
    err: &wasmtime::Error,
    memory_refused: bool,
    body_exceeded: Option<u64>,
    timeout: Duration,
    setup: bool,
) -> Failure {
    let message = format!("{err:?}");
    if err.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        Failure::Timeout(timeout)
    } else if let Some(limit) = body_exceeded {
        Failure::BodyTooLarge(limit)
    } else if memory_refused {
        Failure::MemoryCap(message)
    } else if setup {
        Failure::Setup(message)
    } else {
        Failure::Trap(message)
    }
}

impl HttpState {
    /// Store data for one request: the plan's WASI grants, a memory cap of
    /// `plan.http.instance_memory_bytes` (or the container's, if lower).
    pub(crate) fn new(plan: &WasiPlan) -> Result<Self, EngineError> {
        let cap = match plan.limits.max_memory_bytes {
            Some(container) => container.min(plan.http.instance_memory_bytes),
            None => plan.http.instance_memory_bytes,
        };
        Ok(Self {
            ctx: crate::engine::wasi::serving_ctx(plan)?,
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            table: wasmtime::component::ResourceTable::new(),
            limiter: crate::engine::limits::GuestLimiter::new(Some(cap)),
            outgoing: super::state::OutgoingPolicy {
                allowed: plan.network == crate::plan::NetworkAccess::ContainerNamespace,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_statuses() {
        assert_eq!(Failure::Timeout(Duration::from_secs(1)).status(), 504);
        assert_eq!(Failure::MemoryCap(String::new()).status(), 500);
        assert_eq!(Failure::Trap(String::new()).status(), 500);
        assert_eq!(Failure::BodyTooLarge(1).status(), 413);
        assert_eq!(Failure::NoResponse.status(), 500);
        assert_eq!(Failure::Setup(String::new()).status(), 503);
    }

    #[test]
    fn an_interrupt_trap_is_a_timeout() {
        let err = wasmtime::Error::new(wasmtime::Trap::Interrupt);
        let t = Duration::from_millis(5);
        assert_eq!(classify(&err, false, None, t, false), Failure::Timeout(t));
        let err = wasmtime::Error::new(wasmtime::Trap::UnreachableCodeReached);
        assert!(matches!(
            classify(&err, true, None, t, false),
            Failure::MemoryCap(_)
        ));
        assert!(matches!(
            classify(&err, false, None, t, false),
            Failure::Trap(_)
        ));
    }
}
