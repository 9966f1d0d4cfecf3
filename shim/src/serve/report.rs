//! What a request leaves behind on the container's output: with metering on, one JSON line
//! per request on stdout (the CRI log), for billing; always, a line on stderr for a request
//! that failed, with the reason.

use std::io::Write;

use crate::engine::http::RequestReport;

/// Writes the report of a finished request.
pub(crate) fn finished(report: &RequestReport, metering: bool) {
    if metering {
        let line = metering_line(report);
        // One write per line: lines of concurrent requests never interleave.
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
    if let Some(failure) = &report.failure {
        let line = format!(
            "wasmpod: {} {} -> {}: {failure}\n",
            report.method, report.path, report.status
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// Logs a request turned away by admission.
pub(crate) fn rejected<B>(req: &hyper::Request<B>, concurrency: u32, queue: u32) {
    let line = format!(
        "wasmpod: {} {} -> 503: {concurrency} requests running and {queue} queued (the limits)\n",
        req.method(),
        req.uri().path()
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `{"wasmpod_request":{...}}` with method, path, status, wall time, fuel, peak memory and
/// the failure kind; the key makes the lines easy to pick out of a mixed log.
pub(crate) fn metering_line(report: &RequestReport) -> String {
    let value = serde_json::json!({
        "wasmpod_request": {
            "method": report.method,
            "path": report.path,
            "status": report.status,
            "wall_us": report.wall.as_micros() as u64,
            "fuel": report.fuel,
            "peak_memory_bytes": report.peak_memory_bytes,
            "failure": report.failure.as_ref().map(|f| f.kind()),
        }
    });
    format!("{value}\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::http::Failure;

    #[test]
    fn the_metering_line_is_one_json_object() {
        let line = metering_line(&RequestReport {
            method: "POST".into(),
            path: "/echo".into(),
            status: 504,
            wall: Duration::from_micros(1500),
            fuel: Some(12345),
            peak_memory_bytes: 1 << 20,
            failure: Some(Failure::Timeout(Duration::from_secs(1))),
        });
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let r = &v["wasmpod_request"];
        assert_eq!(r["status"], 504);
        assert_eq!(r["wall_us"], 1500);
        assert_eq!(r["fuel"], 12345);
        assert_eq!(r["peak_memory_bytes"], 1 << 20);
        assert_eq!(r["failure"], "timeout");
    }
}
