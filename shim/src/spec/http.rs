//! Serving settings of an HTTP handler component, from `WASMPOD_HTTP_*` variables of
//! `process.env` (set with `docker run -e`, a pod's `env:` or `ctr run --env`). Pure, no I/O.
//!
//! Environment variables rather than annotations because every front end passes them
//! through unchanged: Docker and the CRI drop annotations they do not know. The guest sees
//! them too, which does no harm and lets it know its own limits.

use std::net::SocketAddr;
use std::time::Duration;

use super::error::SpecError;
use crate::plan::HttpPlan;

/// Prefix of every serving variable; an unknown variable with it is an error (a typo must not
/// silently fall back to a default).
pub const HTTP_ENV_PREFIX: &str = "WASMPOD_HTTP_";

/// Largest `WASMPOD_HTTP_MAX_CONCURRENCY`: the instance pool's size (see the engine).
pub const MAX_CONCURRENCY_LIMIT: u32 = 1000;

/// The variables, their meaning and default, as the README documents them.
pub const HTTP_SETTINGS: [(&str, &str); 9] = [
    (
        "WASMPOD_HTTP_LISTEN",
        "address to serve on (default 0.0.0.0:8080)",
    ),
    (
        "WASMPOD_HTTP_TIMEOUT_MS",
        "per-request deadline, 504 past it (default 60000)",
    ),
    (
        "WASMPOD_HTTP_INSTANCE_MEMORY_MB",
        "linear memory of one instance, 500 past it (default 256)",
    ),
    (
        "WASMPOD_HTTP_MAX_CONCURRENCY",
        "requests running at once (default 256, at most 1000)",
    ),
    (
        "WASMPOD_HTTP_MAX_QUEUE",
        "requests waiting for a slot, 503 past it (default 1024)",
    ),
    (
        "WASMPOD_HTTP_MAX_BODY_MB",
        "request body size, 413 past it (default 1024)",
    ),
    (
        "WASMPOD_HTTP_METERING",
        "1: one JSON line per request on stdout, with fuel (default 0)",
    ),
    (
        "WASMPOD_HTTP_METRICS_LISTEN",
        "address of the Prometheus endpoint (default: none)",
    ),
    (
        "WASMPOD_HTTP_DRAIN_MS",
        "how long SIGTERM waits for requests in flight (default 30000)",
    ),
];

/// Reads the serving settings from the guest's environment, defaults for what is unset.
///
/// # Errors
/// [`SpecError::HttpSetting`] naming the variable for a value that does not parse, is out of
/// range, or a `WASMPOD_HTTP_*` variable that does not exist.
pub fn http_plan(env: &[(String, String)]) -> Result<HttpPlan, SpecError> {
    let mut plan = HttpPlan::default();
    for (name, value) in env.iter().filter(|(k, _)| k.starts_with(HTTP_ENV_PREFIX)) {
        let bad = |reason: &str| SpecError::HttpSetting {
            name: name.clone(),
            value: value.clone(),
            reason: reason.to_owned(),
        };
        let v = value.trim();
        match name.as_str() {
            "WASMPOD_HTTP_LISTEN" => plan.listen = address(v).ok_or_else(|| bad(ADDRESS))?,
            "WASMPOD_HTTP_METRICS_LISTEN" => {
                plan.metrics_listen = if v.is_empty() {
                    None
                } else {
                    Some(address(v).ok_or_else(|| bad(ADDRESS))?)
                }
            }
            "WASMPOD_HTTP_TIMEOUT_MS" => {
                plan.request_timeout = Duration::from_millis(positive(v).ok_or_else(|| bad(NUM))?)
            }
            "WASMPOD_HTTP_DRAIN_MS" => {
                plan.drain_timeout = Duration::from_millis(v.parse().map_err(|_| bad(NUM0))?)
            }
            "WASMPOD_HTTP_INSTANCE_MEMORY_MB" => {
                plan.instance_memory_bytes = mib(positive(v).ok_or_else(|| bad(NUM))?, &bad)?
            }
            "WASMPOD_HTTP_MAX_BODY_MB" => {
                plan.max_body_bytes = mib(v.parse().map_err(|_| bad(NUM0))?, &bad)?
            }
            "WASMPOD_HTTP_MAX_CONCURRENCY" => {
                plan.max_concurrency = positive(v)
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n <= MAX_CONCURRENCY_LIMIT)
                    .ok_or_else(|| bad("expected a whole number from 1 to 1000"))?
            }
            "WASMPOD_HTTP_MAX_QUEUE" => {
                plan.max_queue = v.parse().map_err(|_| bad(NUM0))?;
            }
            "WASMPOD_HTTP_METERING" => {
                plan.metering = match v {
                    "1" | "true" | "on" => true,
                    "0" | "false" | "off" | "" => false,
                    _ => return Err(bad("expected 1 or 0")),
                }
            }
            _ => {
                let known: Vec<&str> = HTTP_SETTINGS.iter().map(|(n, _)| *n).collect();
                return Err(bad(&format!(
                    "no such setting; known: {}",
                    known.join(", ")
                )));
            }
        }
    }
    Ok(plan)
}

const ADDRESS: &str = "expected IP:PORT such as 0.0.0.0:8080, or a port";
const NUM: &str = "expected a whole number above 0";
const NUM0: &str = "expected a whole number";

/// `IP:PORT`, `[IPv6]:PORT`, or a bare port (all IPv4 addresses).
fn address(v: &str) -> Option<SocketAddr> {
    v.parse::<SocketAddr>().ok().or_else(|| {
        v.parse::<u16>()
            .ok()
            .map(|p| SocketAddr::from(([0, 0, 0, 0], p)))
    })
}

fn positive(v: &str) -> Option<u64> {
    v.parse::<u64>().ok().filter(|n| *n > 0)
}

fn mib(n: u64, bad: &dyn Fn(&str) -> SpecError) -> Result<u64, SpecError> {
    n.checked_mul(1 << 20).ok_or_else(|| bad("too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_without_variables() {
        let plan = http_plan(&env(&[("PATH", "/bin")])).unwrap();
        assert_eq!(plan, HttpPlan::default());
        assert_eq!(plan.listen.to_string(), "0.0.0.0:8080");
        assert!(!plan.metering);
    }

    #[test]
    fn every_setting_parses() {
        let plan = http_plan(&env(&[
            ("WASMPOD_HTTP_LISTEN", "127.0.0.1:9000"),
            ("WASMPOD_HTTP_TIMEOUT_MS", "250"),
            ("WASMPOD_HTTP_INSTANCE_MEMORY_MB", "16"),
            ("WASMPOD_HTTP_MAX_CONCURRENCY", "4"),
            ("WASMPOD_HTTP_MAX_QUEUE", "0"),
            ("WASMPOD_HTTP_MAX_BODY_MB", "2"),
            ("WASMPOD_HTTP_METERING", "1"),
            ("WASMPOD_HTTP_METRICS_LISTEN", "9100"),
            ("WASMPOD_HTTP_DRAIN_MS", "0"),
        ]))
        .unwrap();
        assert_eq!(plan.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(plan.request_timeout, Duration::from_millis(250));
        assert_eq!(plan.instance_memory_bytes, 16 << 20);
        assert_eq!(plan.max_concurrency, 4);
        assert_eq!(plan.max_queue, 0);
        assert_eq!(plan.max_body_bytes, 2 << 20);
        assert!(plan.metering);
        assert_eq!(plan.metrics_listen.unwrap().to_string(), "0.0.0.0:9100");
        assert_eq!(plan.drain_timeout, Duration::ZERO);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("WASMPOD_HTTP_LISTEN", "localhost"),
            ("WASMPOD_HTTP_TIMEOUT_MS", "0"),
            ("WASMPOD_HTTP_TIMEOUT_MS", "-5"),
            ("WASMPOD_HTTP_MAX_CONCURRENCY", "1001"),
            ("WASMPOD_HTTP_MAX_CONCURRENCY", "0"),
            ("WASMPOD_HTTP_METERING", "yes please"),
            ("WASMPOD_HTTP_INSTANCE_MEMORY_MB", "99999999999999999"),
            ("WASMPOD_HTTP_TIMOUT_MS", "100"),
        ] {
            let err = http_plan(&env(&[(name, value)])).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(name), "{text}");
            assert!(text.contains(value), "{text}");
        }
    }

    #[test]
    fn a_typo_lists_the_known_settings() {
        let err = http_plan(&env(&[("WASMPOD_HTTP_TIMOUT_MS", "100")])).unwrap_err();
        assert!(err.to_string().contains("WASMPOD_HTTP_TIMEOUT_MS"), "{err}");
    }
}
