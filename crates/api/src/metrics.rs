//! Prometheus text exposition (format 0.0.4) of request counts, latency
//! histograms per route, and the node's live entities and conflicts.

use crate::Shared;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    /// Whether `/metrics` needs a bearer token with `detente.metrics`
    /// (otherwise it is public, like `/healthz`).
    pub(crate) private: bool,
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<(String, String), Histogram>>,
}

impl Metrics {
    /// `private`: `/metrics` needs a bearer token with `detente.metrics`.
    pub fn new(private: bool) -> Self {
        Metrics {
            private,
            ..Metrics::default()
        }
    }
    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        {
            let mut r = self.requests.lock().unwrap_or_else(|e| e.into_inner());
            *r.entry((route.to_string(), method.to_string(), status))
                .or_default() += 1;
        }
        let mut l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = l
            .entry((route.to_string(), method.to_string()))
            .or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP detente_http_requests_total HTTP requests answered, by route, method and status."
        );
        let _ = writeln!(out, "# TYPE detente_http_requests_total counter");
        for ((route, method, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "detente_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP detente_http_request_duration_seconds Time to answer an HTTP request."
        );
        let _ = writeln!(
            out,
            "# TYPE detente_http_request_duration_seconds histogram"
        );
        for ((route, method), h) in self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "detente_http_request_duration_seconds_bucket{{route=\"{route}\",method=\"{method}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "detente_http_request_duration_seconds_bucket{{route=\"{route}\",method=\"{method}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "detente_http_request_duration_seconds_sum{{route=\"{route}\",method=\"{method}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "detente_http_request_duration_seconds_count{{route=\"{route}\",method=\"{method}\"}} {}",
                h.count
            );
        }
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {v}");
        }
        out
    }
}

/// The method as a label from a closed set: HTTP lets a client make up
/// any method name, and every label value is a series kept forever.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: counts and times every request by its route template (a
/// closed set: unrouted paths are `unmatched`), method (closed set) and
/// status.
pub async fn track(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method());
    let started = Instant::now();
    let resp = next.run(req).await;
    st.metrics.observe(
        &route,
        method,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..1000 {
            let m = axum::http::Method::from_bytes(format!("X{i}").as_bytes()).unwrap();
            seen.insert(method_label(&m));
        }
        seen.insert(method_label(&axum::http::Method::GET));
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["GET", "other"]);
    }
}
