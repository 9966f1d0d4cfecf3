//! Store data of one request's instance, and which outgoing requests it may make.

use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::super::limits::GuestLimiter;

/// Everything one request's store holds: WASI (the plan's env, args, preopens), wasi:http,
/// the resource table both share, and the instance's memory limiter.
pub struct HttpState {
    pub(crate) ctx: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: GuestLimiter,
    pub(crate) outgoing: OutgoingPolicy,
}

impl WasiView for HttpState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outgoing,
        }
    }
}

/// Outgoing requests (`wasi:http/outgoing-handler`) follow the socket rule: only a container
/// with a network namespace of its own may make them, never one on the node's network.
pub(crate) struct OutgoingPolicy {
    pub(crate) allowed: bool,
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for OutgoingPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn std::future::Future<Output = SendResult> + Send> {
        if !self.allowed {
            log::info!(
                "outgoing request to {} denied: the container has no network namespace of its own",
                request.uri()
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        // The stock behaviour (plain TCP or TLS through tokio), inside this process's netns.
        let mut stock: [(); 0] = [];
        WasiHttpHooks::send_request(&mut stock, request, options, fut)
    }
}

/// Adds WASI 0.2 (async) and wasi:http to a serving engine's linker.
pub(crate) fn add_to_linker(linker: &mut Linker<HttpState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
}
