//! Bodies: the request body with its size limit, and the host's own short responses.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};

/// The body type of every response: the guest's stream, or a host message.
pub type ResponseBody = wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// A response made by the host (limits, failures): a status and a one-line text body.
pub fn plain_response(status: u16, text: &str) -> hyper::Response<ResponseBody> {
    let body = Full::new(Bytes::from(format!("{text}\n")))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A request body that fails, and says so, once more than `limit` bytes came through: a
/// chunked upload has no length to check up front.
pub(crate) struct LimitedBody<B> {
    inner: B,
    remaining: u64,
    limit: u64,
    exceeded: Arc<AtomicBool>,
}

impl<B> LimitedBody<B> {
    pub(crate) fn new(inner: B, limit: u64, exceeded: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            remaining: limit,
            limit,
            exceeded,
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > this.remaining {
                    this.exceeded.store(true, Ordering::Relaxed);
                    this.remaining = 0;
                    return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpRequestBodySize(
                        Some(this.limit),
                    ))));
                }
                this.remaining -= len;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_over_the_limit_fails_and_flags_it() {
        let exceeded = Arc::new(AtomicBool::new(false));
        let body = Full::new(Bytes::from(vec![0u8; 100]));
        let limited = LimitedBody::new(body, 99, exceeded.clone());
        assert!(limited.collect().await.is_err());
        assert!(exceeded.load(Ordering::Relaxed));

        let exceeded = Arc::new(AtomicBool::new(false));
        let body = Full::new(Bytes::from(vec![0u8; 100]));
        let collected = LimitedBody::new(body, 100, exceeded.clone())
            .collect()
            .await;
        assert_eq!(collected.ok().map(|c| c.to_bytes().len()), Some(100));
        assert!(!exceeded.load(Ordering::Relaxed));
    }

    #[test]
    fn plain_responses_carry_status_and_text() {
        let r = plain_response(413, "too big");
        assert_eq!(r.status(), 413);
    }
}
