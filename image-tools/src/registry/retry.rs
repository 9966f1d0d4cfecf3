//! Which registry failures are worth retrying, and the backoff between
//! tries. Pure apart from sleeping: the classification is a function of
//! the HTTP status or the I/O error kind, tested on its own.

use std::future::Future;
use std::io;
use std::time::Duration;

/// What a failure means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Worth another try: connection reset/refused, timeouts, 5xx, 429.
    Transient,
    /// 401: credentials missing or wrong.
    Unauthorized,
    /// 403: the credentials are valid but not allowed to do this.
    Forbidden,
    /// 404 or a registry "unknown" error code.
    NotFound,
    /// Anything else: retrying will not help.
    Fatal,
}

/// Classifies an HTTP status code.
pub fn classify_status(code: u16) -> Class {
    match code {
        401 => Class::Unauthorized,
        403 => Class::Forbidden,
        404 => Class::NotFound,
        // Request timeout, too early, too many requests.
        408 | 425 | 429 => Class::Transient,
        // 501 (not implemented) and 505 (HTTP version) will not change.
        501 | 505 => Class::Fatal,
        500..=599 => Class::Transient,
        _ => Class::Fatal,
    }
}

/// Classifies an I/O error by kind: broken or refused connections and
/// timeouts are transient (a registry restarting, a proxy dropping idle
/// connections); everything else is not.
pub fn classify_io(kind: io::ErrorKind) -> Class {
    use io::ErrorKind as K;
    match kind {
        K::ConnectionReset
        | K::ConnectionAborted
        | K::ConnectionRefused
        | K::BrokenPipe
        | K::TimedOut
        | K::UnexpectedEof
        | K::Interrupted
        | K::NotConnected => Class::Transient,
        _ => Class::Fatal,
    }
}

/// Classifies a registry error code from an OCI error envelope.
pub fn classify_code(code: &str) -> Class {
    match code {
        "UNAUTHORIZED" => Class::Unauthorized,
        "DENIED" => Class::Forbidden,
        "MANIFEST_UNKNOWN" | "BLOB_UNKNOWN" | "NAME_UNKNOWN" | "NOT_FOUND" => Class::NotFound,
        "TOOMANYREQUESTS" => Class::Transient,
        _ => Class::Fatal,
    }
}

/// How many times to try and how long to wait in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try (0 = try once).
    pub retries: u32,
    /// Delay before the first retry; doubled each time.
    pub base_delay: Duration,
    /// Upper bound on one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 3 retries, 500 ms doubling up to 8 s (at most 3.5 s of waiting).
    fn default() -> Self {
        Self {
            retries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0-based).
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Runs `op` until it succeeds, fails with a non-transient error, or the
/// retries are used up; `on_retry(retry, delay, &error)` is called before
/// each wait.
///
/// # Errors
/// The last error from `op`.
pub async fn retry<T, E, Op, Fut>(
    policy: RetryPolicy,
    classify: impl Fn(&E) -> Class,
    mut on_retry: impl FnMut(u32, Duration, &E),
    mut op: Op,
) -> Result<T, E>
where
    Op: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut retry = 0;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(err) if retry < policy.retries && classify(&err) == Class::Transient => {
                let delay = policy.delay(retry);
                on_retry(retry + 1, delay, &err);
                tokio::time::sleep(delay).await;
                retry += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed setup step should just fail the test
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn statuses_and_io_errors_are_classified() {
        assert_eq!(classify_status(401), Class::Unauthorized);
        assert_eq!(classify_status(403), Class::Forbidden);
        assert_eq!(classify_status(404), Class::NotFound);
        for transient in [429, 500, 502, 503, 504, 408] {
            assert_eq!(classify_status(transient), Class::Transient, "{transient}");
        }
        for fatal in [400, 405, 413, 501, 505, 302] {
            assert_eq!(classify_status(fatal), Class::Fatal, "{fatal}");
        }
        assert_eq!(
            classify_io(io::ErrorKind::ConnectionReset),
            Class::Transient
        );
        assert_eq!(classify_io(io::ErrorKind::TimedOut), Class::Transient);
        assert_eq!(classify_io(io::ErrorKind::PermissionDenied), Class::Fatal);
        assert_eq!(classify_code("MANIFEST_UNKNOWN"), Class::NotFound);
        assert_eq!(classify_code("TOOMANYREQUESTS"), Class::Transient);
        assert_eq!(classify_code("DENIED"), Class::Forbidden);
        assert_eq!(classify_code("MANIFEST_INVALID"), Class::Fatal);
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let delays: Vec<u64> = (0..6).map(|r| policy.delay(r).as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 8000]);
        assert_eq!(policy.delay(40), policy.max_delay);
    }

    fn run<T>(future: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn fast(retries: u32) -> RetryPolicy {
        RetryPolicy {
            retries,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    #[test]
    fn transient_errors_are_retried_until_success_or_exhaustion() {
        let calls = Cell::new(0);
        let retried = Cell::new(0);
        let flaky = || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(503)
                } else {
                    Ok(n)
                }
            }
        };
        let ok = run(retry(
            fast(3),
            |c: &u16| classify_status(*c),
            |_, _, _| retried.set(retried.get() + 1),
            flaky,
        ));
        assert_eq!((ok, calls.get(), retried.get()), (Ok(3), 3, 2));

        calls.set(0);
        let always = || {
            calls.set(calls.get() + 1);
            async { Err::<(), u16>(502) }
        };
        let err = run(retry(
            fast(2),
            |c: &u16| classify_status(*c),
            |_, _, _| {},
            always,
        ));
        assert_eq!((err, calls.get()), (Err(502), 3));
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        let calls = Cell::new(0);
        let denied = || {
            calls.set(calls.get() + 1);
            async { Err::<(), u16>(401) }
        };
        let err = run(retry(
            fast(5),
            |c: &u16| classify_status(*c),
            |_, _, _| {},
            denied,
        ));
        assert_eq!((err, calls.get()), (Err(401), 1));
    }
}
