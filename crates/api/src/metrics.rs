//! `/metrics`: the Prometheus text exposition (format 0.0.4) written by the
//! Prometheus project's own Rust client (`prometheus-client`: names,
//! types, label escaping). Requests by route, method and status with their
//! latency; group commits (writes per batch, time to durable); the line
//! per peer and lane (outbox depth, age of the oldest undelivered record,
//! records delivered and refused, failed attempts, reachability); overdue
//! acknowledgements; the log and each witness's cosignatures; notifications
//! of local subscribers; what the node holds; the build.

use crate::Shared;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the batch-size buckets, in writes.
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

#[derive(Clone)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Http {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLane {
    pub peer: String,
    pub lane: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Peer {
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Witness {
    pub witness: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: &'static str,
}

/// What the delivery tasks count, per peer and lane.
#[derive(Clone, Debug, Default)]
pub struct LineMetrics {
    delivered: Family<PeerLane, Counter>,
    refused: Family<PeerLane, Counter>,
    failures: Family<PeerLane, Counter>,
    reachable: Family<Peer, Gauge>,
}

impl LineMetrics {
    /// `n` records the peer receipted, `refused` of them kept as evidence
    /// but refused.
    pub fn receipted(&self, peer: &str, lane: &'static str, n: u64, refused: u64) {
        let l = PeerLane {
            peer: peer.to_string(),
            lane,
        };
        self.delivered.get_or_create(&l).inc_by(n);
        if refused > 0 {
            self.refused.get_or_create(&l).inc_by(refused);
        }
    }
    /// A delivery attempt that did not end in receipts.
    pub fn failed(&self, peer: &str, lane: &'static str) {
        self.failures
            .get_or_create(&PeerLane {
                peer: peer.to_string(),
                lane,
            })
            .inc();
    }
    /// Whether the last attempt to reach `peer` got an HTTP answer.
    pub fn reached(&self, peer: &str, answered: bool) {
        self.reachable
            .get_or_create(&Peer {
                peer: peer.to_string(),
            })
            .set(i64::from(answered));
    }
}

/// What the witness submitters record, per witness.
#[derive(Clone, Debug, Default)]
pub struct WitnessMetrics {
    size: Family<Witness, Gauge>,
    at: Family<Witness, Gauge>,
    failures: Family<Witness, Counter>,
    /// The witnesses that ever cosigned (a family cannot be listed).
    names: std::sync::Arc<Mutex<std::collections::BTreeSet<String>>>,
}

impl WitnessMetrics {
    /// `witness` cosigned the checkpoint of `size` at `unix_s`.
    pub fn cosigned(&self, witness: &str, size: u64, unix_s: i64) {
        let w = Witness {
            witness: witness.to_string(),
        };
        self.size
            .get_or_create(&w)
            .set(i64::try_from(size).unwrap_or(i64::MAX));
        self.at.get_or_create(&w).set(unix_s);
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(witness.to_string());
    }
    pub fn failed(&self, witness: &str) {
        self.failures
            .get_or_create(&Witness {
                witness: witness.to_string(),
            })
            .inc();
    }
    /// Each witness's last cosignature: (name, size, unix seconds).
    pub fn last(&self) -> Vec<(String, u64, i64)> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner()).clone();
        names
            .into_iter()
            .map(|name| {
                let w = Witness {
                    witness: name.clone(),
                };
                let size = self.size.get_or_create(&w).get().max(0) as u64;
                let at = self.at.get_or_create(&w).get();
                (name, size, at)
            })
            .collect()
    }
}

/// Group commits, as the store's writer reports them.
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    batch: Histogram,
    seconds: Histogram,
    failed: Counter,
}

impl node::CommitObserver for StoreMetrics {
    fn committed(&self, writes: usize, seconds: f64, ok: bool) {
        if ok {
            self.batch.observe(writes as f64);
            self.seconds.observe(seconds);
        } else {
            self.failed.inc();
        }
    }
}

/// The label set of a series that has none: a family of it holds the
/// series while its value is known and drops it (`clear`) while not.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Unlabelled;

impl EncodeLabelSet for Unlabelled {
    fn encode(
        &self,
        _: &mut prometheus_client::encoding::LabelSetEncoder,
    ) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

/// Values read from the node's state at each scrape.
#[derive(Clone, Debug, Default)]
pub struct Scraped {
    /// What the node holds: absent while the store cannot say.
    pub intents: Family<Unlabelled, Gauge>,
    pub constraints: Family<Unlabelled, Gauge>,
    pub subscriptions: Family<Unlabelled, Gauge>,
    pub conflicts: Family<Unlabelled, Gauge>,
    pub reports: Family<Unlabelled, Gauge>,
    pub store_available: Gauge,
    pub leader: Gauge,
    pub log_size: Gauge,
    pub checkpoint_size: Gauge,
    /// The largest checkpoint size meeting the witness policy (absent
    /// without a policy).
    pub witnessed_size: Family<Unlabelled, Gauge>,
    pub outbox: Family<PeerLane, Gauge>,
    pub oldest_undelivered: Family<PeerLane, Gauge<f64, AtomicU64>>,
    pub overdue_acks: Family<Peer, Gauge>,
    pub awaiting_acks: Family<Peer, Gauge>,
    /// Messages held whole in memory and settled out of it.
    pub messages: Family<HeldAs, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HeldAs {
    pub held: &'static str,
}

pub struct Metrics {
    /// Whether `/metrics` needs a bearer token with `detente.metrics`
    /// (otherwise it is public, like `/healthz`).
    pub(crate) private: bool,
    registry: Registry,
    requests: Family<Http, Counter>,
    latency: Family<Route, Histogram, Buckets>,
    pub line: LineMetrics,
    pub witnesses: WitnessMetrics,
    store: StoreMetrics,
    notified: Family<Outcome, Counter>,
    pub(crate) scraped: Scraped,
    /// One scrape at a time: each sets the scraped values, then encodes.
    pub(crate) scraping: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("private", &self.private)
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(false)
    }
}

impl Metrics {
    /// `private`: `/metrics` needs a bearer token with `detente.metrics`.
    pub fn new(private: bool) -> Self {
        let mut r = Registry::default();
        let requests = Family::<Http, Counter>::default();
        r.register(
            "detente_http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        let latency = Family::new_with_constructor(Buckets(&LATENCY_BUCKETS));
        r.register(
            "detente_http_request_duration_seconds",
            "Time to answer an HTTP request",
            latency.clone(),
        );
        let store = StoreMetrics {
            batch: Histogram::new(BATCH_BUCKETS),
            seconds: Histogram::new(LATENCY_BUCKETS),
            failed: Counter::default(),
        };
        r.register(
            "detente_store_batch_writes",
            "Writes per group commit",
            store.batch.clone(),
        );
        r.register(
            "detente_store_commit_duration_seconds",
            "Time from a group commit's start to durable",
            store.seconds.clone(),
        );
        r.register(
            "detente_store_commit_failures",
            "Group commits that failed (the node reloads its state after each)",
            store.failed.clone(),
        );
        let line = LineMetrics::default();
        r.register(
            "detente_line_records_delivered",
            "Records a peer receipted, by peer and lane",
            line.delivered.clone(),
        );
        r.register(
            "detente_line_records_refused",
            "Records a peer receipted but refused (kept as evidence), by peer and lane",
            line.refused.clone(),
        );
        r.register(
            "detente_line_delivery_failures",
            "Delivery attempts that ended without receipts, by peer and lane",
            line.failures.clone(),
        );
        r.register(
            "detente_line_peer_reachable",
            "1 if the last attempt to deliver to the peer got an HTTP answer",
            line.reachable.clone(),
        );
        let witnesses = WitnessMetrics::default();
        r.register(
            "detente_witness_cosigned_size",
            "Size of the newest checkpoint the witness cosigned",
            witnesses.size.clone(),
        );
        r.register(
            "detente_witness_last_cosignature_timestamp_seconds",
            "When the witness last cosigned a checkpoint (Unix time)",
            witnesses.at.clone(),
        );
        r.register(
            "detente_witness_failures",
            "Submissions to the witness that failed",
            witnesses.failures.clone(),
        );
        let notified = Family::<Outcome, Counter>::default();
        r.register(
            "detente_uss_notifications",
            "Notifications of local subscribers about peers' copies: delivered or given up",
            notified.clone(),
        );
        let s = Scraped::default();
        for (name, help, f) in [
            (
                "detente_live_operational_intents",
                "Operational intent references held",
                &s.intents,
            ),
            (
                "detente_live_constraints",
                "Constraint references held",
                &s.constraints,
            ),
            (
                "detente_live_subscriptions",
                "Subscriptions held",
                &s.subscriptions,
            ),
            (
                "detente_conflicts",
                "Current conflicts between intents of different managers or with constraints",
                &s.conflicts,
            ),
            ("detente_reports", "DSS reports archived", &s.reports),
        ] {
            r.register(name, help, f.clone());
        }
        for (name, help, g) in [
            (
                "detente_store_available",
                "1 if the store answers; 0 while it cannot reach its database and refuses requests with 503",
                &s.store_available,
            ),
            (
                "detente_leader",
                "1 if this process runs the node's singleton duties (of several replicas, exactly one)",
                &s.leader,
            ),
            (
                "detente_log_size",
                "Committed entries of the evidence log, as this process sees them",
                &s.log_size,
            ),
            (
                "detente_log_checkpoint_size",
                "Size of the newest signed checkpoint",
                &s.checkpoint_size,
            ),
        ] {
            r.register(name, help, g.clone());
        }
        r.register(
            "detente_log_witnessed_size",
            "Largest checkpoint size whose cosignatures meet the witness policy's quorum",
            s.witnessed_size.clone(),
        );
        r.register(
            "detente_line_outbox_records",
            "Records committed for a peer and not yet receipted, by peer and lane",
            s.outbox.clone(),
        );
        r.register(
            "detente_line_oldest_undelivered_seconds",
            "Age of the oldest record not yet receipted, by peer and lane (0: none)",
            s.oldest_undelivered.clone(),
        );
        r.register(
            "detente_line_overdue_acknowledgements",
            "Messages to the peer past their acknowledgement deadline without an acknowledgement",
            s.overdue_acks.clone(),
        );
        r.register(
            "detente_line_awaiting_acknowledgements",
            "Messages to the peer not yet acknowledged",
            s.awaiting_acks.clone(),
        );
        r.register(
            "detente_line_messages",
            "Messages the line holds: whole in memory (unsettled, or among the newest settled), or settled and read back from the log when shown",
            s.messages.clone(),
        );
        r.register(
            "detente_build",
            "The running build",
            Info::new(Build {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        Metrics {
            private,
            registry: r,
            requests,
            latency,
            line,
            witnesses,
            store,
            notified,
            scraped: s,
            scraping: tokio::sync::Mutex::new(()),
        }
    }

    /// What the store's writer reports to (`Store::observe_commits`).
    pub fn commits(&self) -> std::sync::Arc<dyn node::CommitObserver> {
        std::sync::Arc::new(self.store.clone())
    }

    /// A notification of a local subscriber delivered (`true`) or given up.
    pub fn notified(&self, delivered: bool) {
        self.notified
            .get_or_create(&Outcome {
                outcome: if delivered { "delivered" } else { "failed" },
            })
            .inc();
    }

    pub fn observe(&self, route: &str, method: &'static str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&Http {
                route: route.to_string(),
                method,
                status,
            })
            .inc();
        self.latency
            .get_or_create(&Route {
                route: route.to_string(),
                method,
            })
            .observe(seconds);
    }

    /// The exposition, as things stand (the scraped values set first).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
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
