//! http-handler: a `wasi:http/proxy` component (WASI 0.2) that exports
//! `wasi:http/incoming-handler`. Its routes exercise what a host serving such
//! components must get right: streaming both ways, a fresh instance per request,
//! timeouts (sleep, spin), memory limits, traps and outgoing requests.
//!
//!   GET  /              200 `hello from wasm\n` (content-type text/plain)
//!   GET  /counter       200 the value of a static counter after incrementing it
//!   POST /echo          200 the request body, streamed back chunk by chunk
//!   POST /sha256        200 hex sha256 of the request body (read streaming) + `\n`
//!   GET  /bytes?n=N     200 N bytes, byte i = i % 251, content-length N
//!   GET  /sleep?ms=N    200 `slept\n` after N ms (monotonic-clock pollable)
//!   GET  /spin          never answers: a busy loop
//!   GET  /alloc?mb=N    200 `allocated N MiB\n` after filling N MiB with 1s (and holding
//!                       them for `&ms=M` ms, when given)
//!   GET  /trap          traps (`unreachable`)
//!   GET  /fetch?url=U   200 `upstream status S\n` + the upstream body (outgoing GET
//!                       to U, http:// only), or 502 with the error code's Debug text
//!   anything else       404 `not found\n`
//!
//! A bad query (missing or non-numeric N, bad URL) answers 400.

use core::sync::atomic::{AtomicU64, Ordering};

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingRequest,
    OutgoingResponse, ResponseOutparam, Scheme,
};
use wasi::io::streams::{InputStream, OutputStream, StreamError};

/// Largest write a wasi:io output stream must accept in one call.
const WRITE_MAX: usize = 4096;
/// How much one blocking_read asks for.
const READ_MAX: u64 = 64 * 1024;

static COUNTER: AtomicU64 = AtomicU64::new(0);

struct Handler;

wasi::http::proxy::export!(Handler);

impl Guest for Handler {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let method = request.method();
        let pq = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let (path, query) = match pq.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (pq.clone(), String::new()),
        };
        match (&method, path.as_str()) {
            (Method::Get, "/") => text(out, 200, "hello from wasm\n"),
            (Method::Get, "/counter") => {
                let n = COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
                text(out, 200, &format!("{n}"))
            }
            (Method::Post, "/echo") => echo(request, out),
            (Method::Post, "/sha256") => sha256_route(request, out),
            (Method::Get, "/bytes") => match num_param(&query, "n") {
                Some(n) => bytes(out, n),
                None => text(out, 400, "want /bytes?n=N\n"),
            },
            (Method::Get, "/sleep") => match num_param(&query, "ms") {
                Some(ms) => {
                    wasi::clocks::monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000))
                        .block();
                    text(out, 200, "slept\n")
                }
                None => text(out, 400, "want /sleep?ms=N\n"),
            },
            (Method::Get, "/spin") => spin(),
            (Method::Get, "/alloc") => match num_param(&query, "mb") {
                Some(mb) => alloc(out, mb, num_param(&query, "ms").unwrap_or(0)),
                None => text(out, 400, "want /alloc?mb=N\n"),
            },
            (Method::Get, "/trap") => core::arch::wasm32::unreachable(),
            (Method::Get, "/fetch") => match param(&query, "url") {
                Some(url) => fetch(out, &url),
                None => text(out, 400, "want /fetch?url=http://HOST[:PORT]/PATH\n"),
            },
            _ => text(out, 404, "not found\n"),
        }
    }
}

// --- responses ----------------------------------------------------------------

fn headers(list: &[(&str, &str)]) -> Fields {
    let list: Vec<(String, Vec<u8>)> = list
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    Fields::from_list(&list).expect("valid headers")
}

/// Sends the head of a response and returns its body and the body's stream.
fn start(out: ResponseOutparam, status: u16, hdrs: Fields) -> (OutgoingBody, OutputStream) {
    let resp = OutgoingResponse::new(hdrs);
    resp.set_status_code(status).expect("valid status");
    let body = resp.body().expect("outgoing body");
    ResponseOutparam::set(out, Ok(resp));
    let stream = body.write().expect("outgoing body stream");
    (body, stream)
}

/// Ends a body: the stream (a child of the body) must be gone first.
fn finish(body: OutgoingBody, stream: OutputStream) {
    drop(stream);
    OutgoingBody::finish(body, None).expect("finish body");
}

/// Writes all of `data`, at most WRITE_MAX bytes per call. False if the peer went away.
fn write_all(stream: &OutputStream, data: &[u8]) -> bool {
    data.chunks(WRITE_MAX)
        .all(|c| stream.blocking_write_and_flush(c).is_ok())
}

fn text(out: ResponseOutparam, status: u16, body: &str) {
    let len = body.len().to_string();
    let (b, s) = start(
        out,
        status,
        headers(&[("content-type", "text/plain"), ("content-length", &len)]),
    );
    write_all(&s, body.as_bytes());
    finish(b, s);
}

/// Reads the request body chunk by chunk (at most READ_MAX each), calling `f` per chunk.
fn read_body(request: &IncomingRequest, mut f: impl FnMut(&[u8])) -> Result<(), String> {
    let body: IncomingBody = request.consume().map_err(|()| "body already consumed")?;
    let stream: InputStream = body.stream().map_err(|()| "body stream already taken")?;
    let result = loop {
        match stream.blocking_read(READ_MAX) {
            Ok(chunk) => f(&chunk),
            Err(StreamError::Closed) => break Ok(()),
            Err(StreamError::LastOperationFailed(e)) => break Err(e.to_debug_string()),
        }
    };
    drop(stream);
    drop(body);
    result
}

// --- routes -------------------------------------------------------------------

fn echo(request: IncomingRequest, out: ResponseOutparam) {
    let (b, s) = start(
        out,
        200,
        headers(&[("content-type", "application/octet-stream")]),
    );
    let mut ok = true;
    let read = read_body(&request, |chunk| {
        if ok {
            ok = write_all(&s, chunk);
        }
    });
    if read.is_ok() && ok {
        finish(b, s);
    }
    // else: dropping the body unfinished tells the host the response is incomplete.
}

fn sha256_route(request: IncomingRequest, out: ResponseOutparam) {
    let mut h = Sha256::new();
    match read_body(&request, |chunk| h.update(chunk)) {
        Ok(()) => text(out, 200, &format!("{}\n", hex(&h.finish()))),
        Err(e) => text(out, 400, &format!("reading the body failed: {e}\n")),
    }
}

fn bytes(out: ResponseOutparam, n: u64) {
    let len = n.to_string();
    let (b, s) = start(
        out,
        200,
        headers(&[
            ("content-type", "application/octet-stream"),
            ("content-length", &len),
        ]),
    );
    let mut buf = [0u8; WRITE_MAX];
    let mut i: u64 = 0;
    while i < n {
        let m = (n - i).min(WRITE_MAX as u64) as usize;
        for (k, byte) in buf[..m].iter_mut().enumerate() {
            *byte = ((i + k as u64) % 251) as u8;
        }
        if s.blocking_write_and_flush(&buf[..m]).is_err() {
            return;
        }
        i += m as u64;
    }
    finish(b, s);
}

fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = core::hint::black_box(x.wrapping_add(1));
    }
}

fn alloc(out: ResponseOutparam, mb: u64, hold_ms: u64) {
    let failed = |out| text(out, 500, &format!("allocation of {mb} MiB failed\n"));
    // More than a 32-bit address space can hold fails like a refused memory.grow.
    let Some(size) = usize::try_from(mb)
        .ok()
        .and_then(|m| m.checked_mul(1 << 20))
    else {
        return failed(out);
    };
    let mut v: Vec<u8> = Vec::new();
    if v.try_reserve_exact(size).is_err() {
        return failed(out);
    }
    v.resize(size, 1);
    core::hint::black_box(&v);
    if hold_ms > 0 {
        wasi::clocks::monotonic_clock::subscribe_duration(hold_ms.saturating_mul(1_000_000)).block();
    }
    text(out, 200, &format!("allocated {mb} MiB\n"))
}

fn fetch(out: ResponseOutparam, url: &str) {
    match fetch_upstream(url) {
        Ok(Ok(resp)) => {
            let status = resp.status();
            let (b, s) = start(out, 200, headers(&[("content-type", "text/plain")]));
            if !write_all(&s, format!("upstream status {status}\n").as_bytes()) {
                return;
            }
            let body = resp.consume().expect("upstream body");
            let up = body.stream().expect("upstream body stream");
            loop {
                match up.blocking_read(READ_MAX) {
                    Ok(chunk) => {
                        if !write_all(&s, &chunk) {
                            return;
                        }
                    }
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(_)) => return,
                }
            }
            drop(up);
            drop(body);
            finish(b, s);
        }
        Ok(Err(e)) => text(out, 502, &format!("{e:?}\n")),
        Err(msg) => text(out, 400, &msg),
    }
}

/// Outer Err: the URL is not one we can fetch; inner Err: the request failed.
fn fetch_upstream(
    url: &str,
) -> Result<Result<wasi::http::types::IncomingResponse, ErrorCode>, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs: {url}\n"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("no host in {url}\n"));
    }
    let req = OutgoingRequest::new(Fields::new());
    req.set_method(&Method::Get).map_err(|()| "method")?;
    req.set_scheme(Some(&Scheme::Http)).map_err(|()| "scheme")?;
    req.set_authority(Some(authority))
        .map_err(|()| format!("bad authority {authority}\n"))?;
    req.set_path_with_query(Some(path))
        .map_err(|()| format!("bad path {path}\n"))?;
    // An empty request body: take it and finish it.
    let body = req.body().map_err(|()| "body")?;
    let future = match outgoing_handler::handle(req, None) {
        Ok(f) => f,
        Err(e) => return Ok(Err(e)),
    };
    OutgoingBody::finish(body, None).ok();
    future.subscribe().block();
    match future.get() {
        Some(Ok(r)) => Ok(r),
        Some(Err(())) => Err("response already taken\n".to_string()),
        None => Err("response not ready after block\n".to_string()),
    }
}

// --- query strings --------------------------------------------------------------

/// The percent-decoded value of `key` in `a=1&b=2`, if present.
fn param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

fn num_param(query: &str, key: &str) -> Option<u64> {
    param(query, key)?.parse().ok()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hexval(b[i + 1]), hexval(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hexval(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// --- sha256 (FIPS 180-4) ----------------------------------------------------------

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

struct Sha256 {
    h: [u32; 8],
    buf: [u8; 64],
    buf_len: usize,
    total: u64,
}

impl Sha256 {
    fn new() -> Self {
        Sha256 {
            h: [
                0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                0x5be0cd19,
            ],
            buf: [0; 64],
            buf_len: 0,
            total: 0,
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if self.buf_len > 0 {
            let n = (64 - self.buf_len).min(data.len());
            self.buf[self.buf_len..self.buf_len + n].copy_from_slice(&data[..n]);
            self.buf_len += n;
            data = &data[n..];
            if self.buf_len < 64 {
                return;
            }
            let block = self.buf;
            self.block(&block);
            self.buf_len = 0;
        }
        let mut blocks = data.chunks_exact(64);
        for b in &mut blocks {
            self.block(b.try_into().unwrap());
        }
        let rest = blocks.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buf_len = rest.len();
    }

    fn finish(mut self) -> [u8; 32] {
        let bits = self.total.wrapping_mul(8);
        let mut pad = [0u8; 72];
        pad[0] = 0x80;
        let pad_len = if self.buf_len < 56 {
            56 - self.buf_len
        } else {
            120 - self.buf_len
        };
        pad[pad_len..pad_len + 8].copy_from_slice(&bits.to_be_bytes());
        let total = self.total;
        self.update(&pad[..pad_len + 8]);
        self.total = total;
        let mut out = [0u8; 32];
        for (o, h) in out.chunks_exact_mut(4).zip(self.h) {
            o.copy_from_slice(&h.to_be_bytes());
        }
        out
    }

    fn block(&mut self, block: &[u8; 64]) {
        let mut w = [0u32; 64];
        for (i, c) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes(c.try_into().unwrap());
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = self.h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = h
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            h = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (s, v) in self.h.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *s = s.wrapping_add(v);
        }
    }
}
