//! What the node writes into its evidence log for each state change, as
//! canonical CBOR bodies (`tlog::entry`). OVNs never enter the log: the log
//! is public and an OVN is a secret of its manager; the log records the
//! SHA-256 of the OVN instead, so a manager can later prove which version
//! another party had presented.

use airspace::{Event, Outline, PreparedVolume, Timestamp};
use std::sync::Arc;
use tlog::cbor::Value;

fn t(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn ts(x: Timestamp) -> Value {
    let us = x.unix_micros();
    if us >= 0 {
        Value::Uint(us as u64)
    } else {
        Value::Nint((-1 - us) as u64)
    }
}

fn opt_f(x: Option<f64>) -> Value {
    x.map(Value::Float).unwrap_or(Value::Null)
}

fn volume(v: &PreparedVolume) -> Value {
    let v = &v.volume;
    let outline = match &v.outline {
        Outline::Polygon { vertices } => Value::Map(vec![(
            t("polygon"),
            Value::Array(
                vertices
                    .iter()
                    .map(|p| Value::Array(vec![Value::Float(p.lat), Value::Float(p.lng)]))
                    .collect(),
            ),
        )]),
        Outline::Circle { center, radius_m } => Value::Map(vec![(
            t("circle"),
            Value::Array(vec![
                Value::Float(center.lat),
                Value::Float(center.lng),
                Value::Float(*radius_m),
            ]),
        )]),
    };
    Value::Map(vec![
        (t("outline"), outline),
        (t("alt_lower_m"), opt_f(v.altitude_lower_m)),
        (t("alt_upper_m"), opt_f(v.altitude_upper_m)),
        (t("start_us"), v.time_start.map(ts).unwrap_or(Value::Null)),
        (t("end_us"), v.time_end.map(ts).unwrap_or(Value::Null)),
    ])
}

/// SHA-256 of a set of extents' canonical CBOR (as the log records them):
/// names exactly which 4D volumes a notice was about.
pub fn extents_sha256(extents: &[PreparedVolume]) -> [u8; 32] {
    tlog::hash::sha256(&tlog::cbor::encode(&Value::Array(
        extents.iter().map(volume).collect(),
    )))
}

fn ovn_hash(ovn: &str) -> Value {
    Value::Bytes(tlog::hash::sha256(ovn.as_bytes()).to_vec())
}

/// The entry kind and body for an event.
pub fn entry_body(e: &Event) -> (&'static str, Value) {
    match e {
        Event::IntentUpserted(i) => (
            "operational_intent.upserted",
            Value::Map(vec![
                (t("id"), t(&i.id.to_string())),
                (t("manager"), t(&i.manager)),
                (t("version"), Value::Uint(i.version.max(0) as u64)),
                (t("state"), t(i.state.as_str())),
                (t("ovn_sha256"), ovn_hash(i.ovn.as_str())),
                (t("uss_base_url"), t(&i.uss_base_url)),
                (
                    t("subscription_id"),
                    i.subscription_id
                        .map(|s| t(&s.to_string()))
                        .unwrap_or(Value::Null),
                ),
                (
                    t("extents"),
                    Value::Array(i.extents.iter().map(volume).collect()),
                ),
            ]),
        ),
        Event::IntentRemoved(id) => (
            "operational_intent.removed",
            Value::Map(vec![(t("id"), t(&id.to_string()))]),
        ),
        Event::ConstraintUpserted(c) => (
            "constraint.upserted",
            Value::Map(vec![
                (t("id"), t(&c.id.to_string())),
                (t("manager"), t(&c.manager)),
                (t("version"), Value::Uint(c.version.max(0) as u64)),
                (t("ovn_sha256"), ovn_hash(c.ovn.as_str())),
                (t("uss_base_url"), t(&c.uss_base_url)),
                (
                    t("extents"),
                    Value::Array(c.extents.iter().map(volume).collect()),
                ),
            ]),
        ),
        Event::ConstraintRemoved(id) => (
            "constraint.removed",
            Value::Map(vec![(t("id"), t(&id.to_string()))]),
        ),
        Event::SubscriptionUpserted(s) => (
            "subscription.upserted",
            Value::Map(vec![
                (t("id"), t(&s.id.to_string())),
                (t("manager"), t(&s.manager)),
                (t("version"), t(&s.version)),
                (
                    t("notification_index"),
                    Value::Uint(s.notification_index.max(0) as u64),
                ),
                (t("uss_base_url"), t(&s.uss_base_url)),
                (t("implicit"), Value::Bool(s.implicit)),
                (
                    t("extents"),
                    Value::Array(s.extents.iter().map(volume).collect()),
                ),
            ]),
        ),
        Event::SubscriptionsNotified(bumped) => (
            "subscriptions.notified",
            Value::Map(vec![(
                t("subscriptions"),
                Value::Array(
                    bumped
                        .iter()
                        .map(|(id, index)| {
                            Value::Map(vec![
                                (t("id"), t(&id.to_string())),
                                (t("notification_index"), Value::Uint((*index).max(0) as u64)),
                            ])
                        })
                        .collect(),
                ),
            )]),
        ),
        Event::SubscriptionRemoved(id) => (
            "subscription.removed",
            Value::Map(vec![(t("id"), t(&id.to_string()))]),
        ),
        Event::AvailabilitySet(a) => (
            "uss_availability.set",
            Value::Map(vec![
                (t("uss"), t(&a.uss)),
                (t("availability"), t(&format!("{:?}", a.availability))),
                (t("version"), t(&a.version)),
            ]),
        ),
        Event::ReportFiled(r) => (
            "report.filed",
            Value::Map(vec![
                (t("id"), t(&r.id)),
                (t("reporter"), t(&r.reporter)),
                (
                    t("exchange_sha256"),
                    Value::Bytes(tlog::hash::sha256(r.exchange_json.as_bytes()).to_vec()),
                ),
            ]),
        ),
    }
}

/// How a store signs what it appends: the node's key and name (the log's
/// origin) and the clock for entry timestamps.
#[derive(Clone)]
pub struct LogSigner {
    pub signer: tlog::NoteSigner,
    pub clock: Arc<dyn crate::Clock>,
    /// The node's own member key, for the notices it sends by itself
    /// (operations touching the line of contact).
    pub member: Option<liaison::MemberSigner>,
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSigner")
            .field("origin", &self.signer.name)
            .finish_non_exhaustive()
    }
}

impl LogSigner {
    pub fn origin(&self) -> &str {
        &self.signer.name
    }

    /// The signed entry (leaf bytes) recording `e`.
    pub fn entry(&self, e: &Event) -> Result<Vec<u8>, tlog::entry::EntryError> {
        let (kind, mut body) = entry_body(e);
        // DESIGN §3: entries stay ≤ 64 KiB; a larger body (a polygon of
        // thousands of vertices) is committed to by its hash.
        let encoded = tlog::cbor::encode(&body);
        if encoded.len() > 60 * 1024 {
            body = Value::Map(vec![
                (
                    t("body_sha256"),
                    Value::Bytes(tlog::hash::sha256(&encoded).to_vec()),
                ),
                (t("body_bytes"), Value::Uint(encoded.len() as u64)),
            ]);
        }
        let ms = (self.clock.now().unix_micros() / 1000).max(0) as u64;
        let entry = tlog::entry::Entry {
            kind: kind.to_string(),
            origin: self.signer.name.clone(),
            timestamp_ms: ms,
            body,
        };
        entry.sign_to_bytes(&self.signer)
    }

    /// A signed checkpoint note for a tree of `size` leaves with `root`.
    pub fn checkpoint(&self, size: u64, root: tlog::Hash) -> String {
        let text = tlog::Checkpoint {
            origin: self.signer.name.clone(),
            size,
            root,
            extensions: vec![],
        }
        .to_text();
        let note = tlog::Note {
            signatures: vec![self.signer.sign(&text)],
            text,
        };
        note.to_text()
    }
}
