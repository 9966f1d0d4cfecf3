//! A minimal blocking HTTP/1.1 client for the serving tests: one request per connection
//! (`Connection: close`), fixed-length or chunked responses, and a streaming upload that
//! hashes what comes back without holding it.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// A response: status, headers (names lower-cased) and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {:?}", self.status, self.text())
    }
}

/// `GET path` with a 30 s deadline.
pub fn get(addr: SocketAddr, path: &str) -> Result<Response> {
    request(addr, "GET", path, &[], Duration::from_secs(30))
}

/// One request; `body` is sent with a content-length when not empty.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Response> {
    request_declaring(addr, method, path, body.len() as u64, body, timeout)
}

/// A request whose `content-length` says `declared` while only `body` is sent: a server that
/// refuses by the declared length answers without waiting for the rest (and may close the
/// connection early, so a failed write is not an error when an answer can still be read).
pub fn request_declaring(
    addr: SocketAddr,
    method: &str,
    path: &str,
    declared: u64,
    body: &[u8],
    timeout: Duration,
) -> Result<Response> {
    let mut stream = connect(addr, timeout)?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {declared}\r\n\r\n"
    )?;
    let written = stream.write_all(body);
    if declared == body.len() as u64 {
        written?;
    }
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader)?;
    let mut body = Vec::new();
    read_body(&mut reader, &headers, |chunk| {
        body.extend_from_slice(chunk);
        Ok(())
    })?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Streams `size` deterministic bytes to `method path` and returns the status, the sha256 of
/// what was sent and the sha256 of the response body, hashed as it arrives.
pub fn stream_through(
    addr: SocketAddr,
    method: &str,
    path: &str,
    size: u64,
) -> Result<(u16, String, String)> {
    let stream = connect(addr, Duration::from_secs(120))?;
    let mut writer = stream.try_clone()?;
    write!(
        writer,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {size}\r\n\r\n"
    )?;
    // Send from another thread: an echo answers while the upload is still going.
    let sender = std::thread::spawn(move || -> Result<String> {
        let mut hash = Sha256::new();
        let mut block = vec![0u8; 64 << 10];
        let mut sent = 0u64;
        while sent < size {
            let n = block.len().min((size - sent) as usize);
            for (i, b) in block[..n].iter_mut().enumerate() {
                *b = ((sent + i as u64) % 251) as u8;
            }
            writer.write_all(&block[..n])?;
            hash.update(&block[..n]);
            sent += n as u64;
        }
        Ok(hex(&hash.finalize()))
    });
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader)?;
    let mut hash = Sha256::new();
    read_body(&mut reader, &headers, |chunk| {
        hash.update(chunk);
        Ok(())
    })?;
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("the upload thread panicked"))??;
    Ok((status, sent, hex(&hash.finalize())))
}

/// sha256 of `size` bytes of the pattern [`stream_through`] sends (byte i = i % 251).
pub fn pattern_sha256(size: u64) -> String {
    let mut hash = Sha256::new();
    let mut i = 0u64;
    let mut block = vec![0u8; 64 << 10];
    while i < size {
        let n = block.len().min((size - i) as usize);
        for (j, b) in block[..n].iter_mut().enumerate() {
            *b = ((i + j as u64) % 251) as u8;
        }
        hash.update(&block[..n]);
        i += n as u64;
    }
    hex(&hash.finalize())
}

/// Waits until `GET path` answers at all (any status), for at most `timeout`.
pub fn wait_ready(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response> {
    let deadline = Instant::now() + timeout;
    loop {
        match request(addr, "GET", path, &[], Duration::from_secs(5)) {
            Ok(r) => return Ok(r),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("{addr} never answered within {timeout:?}")))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

fn read_head(reader: &mut impl BufRead) -> Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    Ok((status, headers))
}

fn read_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let mut buf = vec![0u8; 64 << 10];
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .with_context(|| format!("bad chunk size line {line:?}"))?;
            if size == 0 {
                return Ok(());
            }
            let mut left = size;
            while left > 0 {
                let n = left.min(buf.len());
                reader.read_exact(&mut buf[..n])?;
                sink(&buf[..n])?;
                left -= n;
            }
            line.clear();
            reader.read_line(&mut line)?;
        }
    }
    if let Some(len) = header("content-length") {
        let mut left: u64 = len.parse().context("bad content-length")?;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            reader.read_exact(&mut buf[..n])?;
            sink(&buf[..n])?;
            left -= n as u64;
        }
        return Ok(());
    }
    loop {
        match reader.read(&mut buf)? {
            0 => return Ok(()),
            n => sink(&buf[..n])?,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fails unless the response has `status`.
pub fn expect_status(response: &Response, status: u16, what: &str) -> Result<()> {
    if response.status != status {
        bail!("{what}: want {status}, got {response}");
    }
    Ok(())
}
