//! Per-container counters, served in the Prometheus text format when asked for
//! (`WASMPOD_HTTP_METRICS_LISTEN`): requests by status class, failures by kind (traps,
//! timeouts...), and a latency histogram.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::engine::http::RequestReport;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const FAILURE_KINDS: [&str; 7] = [
    "timeout",
    "memory_cap",
    "trap",
    "body_too_large",
    "no_response",
    "guest_error",
    "setup",
];

/// Counters of one server; every field is a plain atomic, updated once per request.
#[derive(Default)]
pub(crate) struct Metrics {
    by_class: [AtomicU64; 5],
    failures: [AtomicU64; FAILURE_KINDS.len()],
    rejected: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    latency_sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Metrics {
    /// Counts a finished request.
    pub(crate) fn record(&self, report: &RequestReport) {
        self.count_status(report.status);
        if let Some(failure) = &report.failure {
            if let Some(i) = FAILURE_KINDS.iter().position(|k| *k == failure.kind()) {
                self.failures[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.observe(report.wall);
    }

    /// Counts a request turned away by admission (503, no instance).
    pub(crate) fn record_rejected(&self, wall: Duration) {
        self.count_status(503);
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.observe(wall);
    }

    fn count_status(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
    }

    fn observe(&self, wall: Duration) {
        let seconds = wall.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_sum_micros
            .fetch_add(wall.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every counter; `running` and `queued` are the
    /// admission gauges.
    pub(crate) fn render(&self, running: u32, queued: u32) -> String {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        out.push_str(
            "# HELP wasmpod_http_requests_total Requests answered, by status class.\n\
             # TYPE wasmpod_http_requests_total counter\n",
        );
        for (i, counter) in self.by_class.iter().enumerate() {
            let _ = writeln!(
                out,
                "wasmpod_http_requests_total{{class=\"{}xx\"}} {}",
                i + 1,
                load(counter)
            );
        }
        out.push_str(
            "# HELP wasmpod_http_failures_total Requests that did not end as the guest meant.\n\
             # TYPE wasmpod_http_failures_total counter\n",
        );
        for (kind, counter) in FAILURE_KINDS.iter().zip(&self.failures) {
            let _ = writeln!(
                out,
                "wasmpod_http_failures_total{{kind=\"{kind}\"}} {}",
                load(counter)
            );
        }
        let _ = writeln!(
            out,
            "# HELP wasmpod_http_rejected_total Requests refused because the queue was full.\n\
             # TYPE wasmpod_http_rejected_total counter\nwasmpod_http_rejected_total {}",
            load(&self.rejected)
        );
        let _ = writeln!(
            out,
            "# HELP wasmpod_http_in_flight Requests running now.\n\
             # TYPE wasmpod_http_in_flight gauge\nwasmpod_http_in_flight {running}\n\
             # HELP wasmpod_http_queued Requests waiting for a slot now.\n\
             # TYPE wasmpod_http_queued gauge\nwasmpod_http_queued {queued}"
        );
        out.push_str(
            "# HELP wasmpod_http_request_duration_seconds Time from arrival to the instance's end.\n\
             # TYPE wasmpod_http_request_duration_seconds histogram\n",
        );
        let mut cumulative = 0;
        for (bound, counter) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += load(counter);
            let _ = writeln!(
                out,
                "wasmpod_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = load(&self.count);
        let _ = writeln!(
            out,
            "wasmpod_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             wasmpod_http_request_duration_seconds_sum {}\n\
             wasmpod_http_request_duration_seconds_count {count}",
            load(&self.latency_sum_micros) as f64 / 1e6
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::http::Failure;

    fn report(status: u16, failure: Option<Failure>, ms: u64) -> RequestReport {
        RequestReport {
            method: "GET".into(),
            path: "/".into(),
            status,
            wall: Duration::from_millis(ms),
            fuel: None,
            peak_memory_bytes: 0,
            failure,
        }
    }

    #[test]
    fn counts_show_up_in_the_exposition() {
        let m = Metrics::default();
        m.record(&report(200, None, 1));
        m.record(&report(200, None, 30));
        m.record(&report(500, Some(Failure::Trap("x".into())), 2));
        m.record(&report(
            504,
            Some(Failure::Timeout(Duration::from_secs(1))),
            1000,
        ));
        m.record_rejected(Duration::ZERO);
        let text = m.render(3, 2);
        for line in [
            "wasmpod_http_requests_total{class=\"2xx\"} 2",
            "wasmpod_http_requests_total{class=\"5xx\"} 3",
            "wasmpod_http_failures_total{kind=\"trap\"} 1",
            "wasmpod_http_failures_total{kind=\"timeout\"} 1",
            "wasmpod_http_rejected_total 1",
            "wasmpod_http_in_flight 3",
            "wasmpod_http_queued 2",
            "wasmpod_http_request_duration_seconds_bucket{le=\"0.001\"} 2",
            "wasmpod_http_request_duration_seconds_bucket{le=\"+Inf\"} 5",
            "wasmpod_http_request_duration_seconds_count 5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
