//! The client half of CRI streaming `Exec`, as kubelet's proxy (or `kubectl exec`) speaks it.
//!
//! `RuntimeService.Exec` only returns a URL on containerd's CRI stream server
//! (`http://127.0.0.1:<port>/exec/<token>`, see `stream_server_*` in [`super::config`]); the
//! command starts when a client connects there. The server is kubelet's streaming package
//! (`k8s.io/kubelet/pkg/cri/streaming/remotecommand`) inside containerd: a plain HTTP GET
//! with `Upgrade: websocket` gets the WebSocket transport (`wsstream`), anything else SPDY.
//! This client speaks the WebSocket one: every binary message starts with a channel byte,
//! 0 stdin, 1 stdout, 2 stderr, 3 error (the exit status), 4 resize (tty only).
//!
//! Subprotocols (`Sec-WebSocket-Protocol`), as containerd 1.7.24 answers them:
//! - `v4.channel.k8s.io`: what it picks when offered `v5.channel.k8s.io, v4.channel.k8s.io`.
//!   Channel 3 carries a `metav1.Status` JSON: `{"metadata":{},"status":"Success"}`, or
//!   `"status":"Failure"`, `reason` `NonZeroExitCode` and a `details.causes` entry
//!   `{"reason":"ExitCode","message":"3"}`. There is no way to close stdin alone: a
//!   WebSocket close ends stdin but also the connection, before the status is sent (the
//!   output written until then may arrive, the status does not).
//! - `v5.channel.k8s.io` (Kubernetes 1.30+): adds the client message `[255, channel]` that
//!   closes one channel, so `[255, 0]` ends stdin. containerd 1.7 refuses it alone with
//!   `403 Forbidden`; newer stream servers may pick it, and then [`exec_stream`] uses it.
//! - `channel.k8s.io` (v1): accepted, but channel 3 stays empty on success, so the exit code
//!   is not known; not used here.
//!
//! SPDY (the other transport, which can half-close stdin) is not implemented here.
//!
//! With a tty (`kubectl exec -it`, `kubectl attach -it`) there is no stderr channel: the
//! terminal merges both streams, echoes what is typed and turns `\n` into `\r\n`. Channel 4
//! takes the terminal size as JSON, `{"Width":80,"Height":24}` ([`ExecStream::resize`]); the
//! stream server passes it on as `ResizePty`.
//!
//! The same transport serves `Attach` (`/attach/<token>`): the container's own stdio, no status.
//!
//! The server sends the status on channel 3 and then closes the connection; [`ExecStream::finish`]
//! reads until then. Each read waits at most [`READ_TIMEOUT`], so a hung exec fails the test.

use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::WebSocket;
use tungstenite::{Error as WsError, Message};

/// The subprotocol that can close stdin.
pub const V5: &str = "v5.channel.k8s.io";
/// The subprotocol kubectl used before v5.
pub const V4: &str = "v4.channel.k8s.io";
/// Longest wait for one message from the stream server.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5's close message: `[CLOSE, channel]`.
const CLOSE: u8 = 255;

/// What a streaming exec produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamedExec {
    /// The subprotocol the server chose.
    pub protocol: String,
    /// Everything received on channel 1.
    pub stdout: Vec<u8>,
    /// Everything received on channel 2.
    pub stderr: Vec<u8>,
    /// The text received on channel 3 (a `metav1.Status` JSON), empty when none came.
    pub status: String,
}

impl StreamedExec {
    /// stdout as text (lossy).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text (lossy).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The exit code that the status on channel 3 reports: 0 for `Success`, the `ExitCode`
    /// cause for `NonZeroExitCode`.
    ///
    /// # Errors
    /// No status, not JSON, or a failure that is not an exit code (for example the command
    /// could not start), with the status text.
    pub fn exit_code(&self) -> Result<i32> {
        let v: serde_json::Value = serde_json::from_str(&self.status)
            .with_context(|| format!("exec status is not JSON: {:?}", self.status))?;
        if v["status"] == "Success" {
            return Ok(0);
        }
        ensure!(
            v["reason"] == "NonZeroExitCode",
            "exec failed without an exit code: {v}"
        );
        let causes = v["details"]["causes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let cause = causes
            .iter()
            .find(|c| c["reason"] == "ExitCode")
            .ok_or_else(|| anyhow!("no ExitCode cause in {v}"))?;
        cause["message"]
            .as_str()
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| anyhow!("bad ExitCode cause in {v}"))
    }
}

/// An open WebSocket exec stream; see the module docs.
#[derive(Debug)]
pub struct ExecStream {
    socket: WebSocket<TcpStream>,
    /// What arrived so far.
    out: StreamedExec,
    /// The server ended the stream.
    closed: bool,
}

impl ExecStream {
    /// Connects to the `http://host:port/path` URL that `Exec` returned, offering
    /// `protocols` in order of preference; the server picks one.
    ///
    /// # Errors
    /// A URL that is not `http://`, no connection, or a refused upgrade (with the server's
    /// answer).
    pub fn connect(url: &str, protocols: &[&str]) -> Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("stream URL {url} is not http://"))?;
        let host = rest.split('/').next().unwrap_or_default();
        let tcp = TcpStream::connect(host).with_context(|| format!("connect to {url}"))?;
        tcp.set_read_timeout(Some(READ_TIMEOUT))?;
        let mut request = format!("ws://{rest}").into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(&protocols.join(", "))?,
        );
        let (socket, response) =
            tungstenite::client::client(request, tcp).map_err(|e| match e {
                tungstenite::HandshakeError::Failure(WsError::Http(r)) => anyhow!(
                    "stream server refused the WebSocket upgrade of {url}: {} {:?}",
                    r.status(),
                    r.body().as_deref().map(String::from_utf8_lossy)
                ),
                e => anyhow!("WebSocket handshake with {url}: {e}"),
            })?;
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let out = StreamedExec {
            protocol,
            stdout: Vec::new(),
            stderr: Vec::new(),
            status: String::new(),
        };
        Ok(Self {
            socket,
            out,
            closed: false,
        })
    }

    /// The subprotocol the server chose.
    pub fn protocol(&self) -> &str {
        &self.out.protocol
    }

    /// Everything received on stdout so far.
    pub fn stdout(&self) -> &[u8] {
        &self.out.stdout
    }

    /// Sends `bytes` on stdin.
    ///
    /// # Errors
    /// When the connection is gone.
    pub fn write_stdin(&mut self, bytes: &[u8]) -> Result<()> {
        let mut frame = Vec::with_capacity(bytes.len() + 1);
        frame.push(STDIN);
        frame.extend_from_slice(bytes);
        self.socket
            .send(Message::Binary(frame.into()))
            .context("send stdin")
    }

    /// Closes stdin (v5 only): the command reads end-of-file.
    ///
    /// # Errors
    /// Under any other protocol, which has no way to say it, or when the connection is gone.
    pub fn close_stdin(&mut self) -> Result<()> {
        if self.protocol() != V5 {
            bail!("{:?} cannot close stdin; only {V5} can", self.protocol());
        }
        self.socket
            .send(Message::Binary(vec![CLOSE, STDIN].into()))
            .context("send the stdin close message")
    }

    /// Sends a terminal size on the resize channel (tty only), as kubectl does on connect
    /// and on every `SIGWINCH`.
    ///
    /// # Errors
    /// When the connection is gone.
    pub fn resize(&mut self, width: u16, height: u16) -> Result<()> {
        let mut frame = vec![RESIZE];
        frame.extend_from_slice(format!(r#"{{"Width":{width},"Height":{height}}}"#).as_bytes());
        self.socket
            .send(Message::Binary(frame.into()))
            .context("send a terminal size")
    }

    /// Reads until stdout holds `needle` after byte `from`; returns the offset just past it.
    ///
    /// # Errors
    /// When the stream ends first (with everything received), or a read fails.
    pub fn wait_stdout(&mut self, needle: &str, from: usize) -> Result<usize> {
        loop {
            let tail = self.out.stdout.get(from..).unwrap_or_default();
            if let Some(at) = find(tail, needle.as_bytes()) {
                return Ok(from + at + needle.len());
            }
            if self.closed {
                bail!("the stream ended without {needle:?}: {:?}", self.out);
            }
            self.read_one()?;
        }
    }

    /// Reads stdout, stderr and the status until the server closes the connection.
    ///
    /// # Errors
    /// A read that times out, an unknown channel, or a broken connection.
    pub fn finish(mut self) -> Result<StreamedExec> {
        while !self.closed {
            self.read_one()?;
        }
        Ok(self.out)
    }

    /// Reads one message into `out`, or notes that the server ended the stream.
    fn read_one(&mut self) -> Result<()> {
        let msg = match self.socket.read() {
            Ok(m) => m,
            // The server closes the TCP connection right after its close frame, or without one.
            Err(
                WsError::ConnectionClosed
                | WsError::AlreadyClosed
                | WsError::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake
                    | tungstenite::error::ProtocolError::ReceivedAfterClosing,
                ),
            ) => {
                self.closed = true;
                return Ok(());
            }
            Err(e) => {
                return Err(anyhow!(
                    "reading the exec stream: {e} (so far: {:?})",
                    self.out
                ));
            }
        };
        let data = match msg {
            Message::Binary(b) => b,
            // The server's close frame ends the stream; reading on would only race with
            // frames it flushes after it ("Remote sent after having closed").
            Message::Close(_) => {
                self.closed = true;
                return Ok(());
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Ok(()),
            Message::Text(t) => bail!("unexpected text message {t:?} (base64 protocol?)"),
        };
        // wsstream sends an empty message on each channel when it opens.
        let Some((&channel, payload)) = data.split_first() else {
            return Ok(());
        };
        match channel {
            STDOUT => self.out.stdout.extend_from_slice(payload),
            STDERR => self.out.stderr.extend_from_slice(payload),
            ERROR => self.out.status.push_str(&String::from_utf8_lossy(payload)),
            other => bail!("message on unexpected channel {other}: {payload:?}"),
        }
        Ok(())
    }
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Connects to `url` (offering [`V5`], then [`V4`]), sends `stdin` if given, closes stdin
/// when the protocol can ([`V5`]; containerd 1.7 picks [`V4`], so there the command must stop
/// reading by itself, e.g. after one line), and reads everything to the end.
///
/// # Errors
/// See [`ExecStream::connect`] and [`ExecStream::finish`].
pub fn exec_stream(url: &str, stdin: Option<&[u8]>) -> Result<StreamedExec> {
    let mut s = ExecStream::connect(url, &[V5, V4])?;
    if let Some(bytes) = stdin {
        s.write_stdin(bytes)?;
        if s.protocol() == V5 {
            s.close_stdin()?;
        }
    }
    s.finish()
}
