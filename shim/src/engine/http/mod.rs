//! Serving `wasi:http/incoming-handler` components: a fresh instance per request, from the
//! instance pool of a serving engine (see `config`), with per-request limits.
//!
//! This module knows wasmtime and wasmtime-wasi-http; accepting connections, admission and
//! reporting are the server's (`crate::serve`).
//!
//! - `detect`: telling an HTTP handler component from its bytes, before anything is compiled
//!   (it decides which engine compiles it).
//! - `state`: the per-request store data and the outgoing-request policy.
//! - `request`: running one request, and what it cost.
//! - `body`: the request body size limit and plain host-made responses.
//! - `ticker`: the epoch ticker that enforces deadlines inside wasm code.

mod body;
mod detect;
mod request;
mod state;
mod ticker;

pub use body::{plain_response, ResponseBody};
pub use detect::{exports_http_handler, INCOMING_HANDLER};
pub use request::{handle_request, Failure, RequestReport};
pub use state::HttpState;
pub use ticker::{EpochTicker, TICK};

pub(crate) use state::add_to_linker;
