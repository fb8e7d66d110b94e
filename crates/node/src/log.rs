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

fn notified((id, index): &(airspace::SubscriptionId, i32)) -> Value {
    Value::Map(vec![
        (t("id"), t(&id.to_string())),
        (t("notification_index"), Value::Uint((*index).max(0) as u64)),
    ])
}

/// Whether `e` writes or removes an operational intent or a constraint.
fn is_entity_write(e: &Event) -> bool {
    matches!(
        e,
        Event::IntentUpserted(_)
            | Event::IntentRemoved(_)
            | Event::ConstraintUpserted(_)
            | Event::ConstraintRemoved(_)
    )
}

/// The log entries (kind and body) for one decision's events, in order.
///
/// A write of one operational intent or constraint is one entry, its own
/// (`operational_intent.upserted`, …), which also records what the write
/// did to subscriptions, under keys present only when not empty:
/// `subscriptions_upserted` (the implicit subscription it made or changed,
/// each body as a `subscription.upserted` entry's), `subscriptions_notified`
/// (`{id, notification_index}` of each subscription it notified) and
/// `subscriptions_removed` (the ids of implicit subscriptions it dropped).
/// One signature and one leaf per write, where each of these effects had
/// its own: a create with its implicit subscription was two signed entries,
/// three when it notified anyone. Every other decision (a subscription's
/// own write, a sweep of expired entities, availability, reports) gets one
/// entry per event.
pub fn entry_bodies(events: &[Event]) -> Vec<(&'static str, Value)> {
    encoded_entry_bodies(events)
        .into_iter()
        .map(|(kind, body, _)| (kind, body))
        .collect()
}

/// [`entry_bodies`] with each body's CBOR encoding (each encoded once).
fn encoded_entry_bodies(events: &[Event]) -> Vec<(&'static str, Value, Vec<u8>)> {
    let each = || {
        events
            .iter()
            .map(|e| {
                let (kind, body) = entry_body(e);
                let encoded = tlog::cbor::encode(&body);
                (kind, body, encoded)
            })
            .collect()
    };
    let folds = events.len() > 1
        && events.iter().filter(|e| is_entity_write(e)).count() == 1
        && events.iter().all(|e| {
            is_entity_write(e)
                || matches!(
                    e,
                    Event::SubscriptionUpserted(_)
                        | Event::SubscriptionsNotified(_)
                        | Event::SubscriptionRemoved(_)
                )
        });
    if !folds {
        return each();
    }
    let mut own = None;
    let (mut upserted, mut notices, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for e in events {
        match e {
            Event::SubscriptionUpserted(_) => upserted.push(entry_body(e).1),
            Event::SubscriptionsNotified(bumped) => notices.extend(bumped.iter().map(notified)),
            Event::SubscriptionRemoved(id) => removed.push(t(&id.to_string())),
            _ => own = Some(entry_body(e)),
        }
    }
    let Some((kind, Value::Map(mut body))) = own else {
        // Unreachable (exactly one entity write, whose body is a map);
        // if it were not, one entry per event records the same.
        return each();
    };
    for (key, list) in [
        ("subscriptions_upserted", upserted),
        ("subscriptions_notified", notices),
        ("subscriptions_removed", removed),
    ] {
        if !list.is_empty() {
            body.push((t(key), Value::Array(list)));
        }
    }
    let body = Value::Map(body);
    let encoded = tlog::cbor::encode(&body);
    if encoded.len() > MAX_BODY_BYTES {
        // Too large to keep whole (an intent of thousands of vertices and
        // its implicit subscription repeating them): one entry per event,
        // each of which may still fit, rather than one body replaced by
        // its hash.
        return each();
    }
    vec![(kind, body, encoded)]
}

/// Bodies larger than this (encoded) are logged as their hash (DESIGN §3:
/// entries stay ≤ 64 KiB).
pub const MAX_BODY_BYTES: usize = 60 * 1024;

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
                Value::Array(bumped.iter().map(notified).collect()),
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

    /// The entries (leaf bytes) recording one decision's events
    /// ([`entry_bodies`]), unattested (`tlog::entry`): the airspace's
    /// entries stay in this log, attested by its signed and cosigned
    /// checkpoints. What crosses to a peer is a record of the line, signed
    /// (`node::share`). An Ed25519 signature per write was half of the
    /// writer's time per create (docs/benchmarks.md, session 14).
    pub fn entries(&self, events: &[Event]) -> Result<Vec<Vec<u8>>, tlog::entry::EntryError> {
        encoded_entry_bodies(events)
            .into_iter()
            .map(|(kind, body, encoded)| self.entry(kind, body, encoded))
            .collect()
    }

    /// The unattested entry of `body`, whose encoding is `encoded`.
    fn entry(
        &self,
        kind: &str,
        mut body: Value,
        mut encoded: Vec<u8>,
    ) -> Result<Vec<u8>, tlog::entry::EntryError> {
        // DESIGN §3: entries stay ≤ 64 KiB; a larger body (a polygon of
        // thousands of vertices) is committed to by its hash.
        if encoded.len() > MAX_BODY_BYTES {
            body = Value::Map(vec![
                (
                    t("body_sha256"),
                    Value::Bytes(tlog::hash::sha256(&encoded).to_vec()),
                ),
                (t("body_bytes"), Value::Uint(encoded.len() as u64)),
            ]);
            encoded = tlog::cbor::encode(&body);
        }
        let ms = (self.clock.now().unix_micros() / 1000).max(0) as u64;
        let entry = tlog::entry::Entry {
            kind: kind.to_string(),
            origin: self.signer.name.clone(),
            timestamp_ms: ms,
            body,
        };
        entry.unsigned_encoded_to_bytes(&encoded)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use airspace::{OperationalIntent, OperationalIntentState, Ovn, Subscription};
    use uuid::Uuid;

    fn intent(sub: Option<Uuid>) -> OperationalIntent {
        OperationalIntent {
            id: Uuid::from_u128(7),
            manager: "alliance-uss".into(),
            version: 1,
            state: OperationalIntentState::Accepted,
            ovn: Ovn("ovn-of-alliance-uss-0123456789".into()),
            extents: vec![],
            uss_base_url: "https://alliance.example/utm".into(),
            subscription_id: sub,
            time_start: Timestamp::from_unix_micros(1_000_000),
            time_end: Timestamp::from_unix_micros(9_000_000_000),
            updated_seq: 1,
        }
    }

    fn subscription(n: u128) -> Subscription {
        Subscription {
            id: Uuid::from_u128(n),
            manager: "alliance-uss".into(),
            version: "v1".into(),
            notification_index: 0,
            extents: vec![],
            uss_base_url: "https://alliance.example/utm".into(),
            notify_for_operational_intents: true,
            notify_for_constraints: false,
            implicit: true,
            time_start: Timestamp::from_unix_micros(1_000_000),
            time_end: Timestamp::from_unix_micros(9_000_000_000),
            updated_seq: 1,
        }
    }

    fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
        crate::evidence::field(v, key)
    }

    #[test]
    fn a_write_is_one_entry_recording_what_it_did_to_subscriptions() {
        let events = vec![
            Event::SubscriptionUpserted(subscription(1)),
            Event::SubscriptionsNotified(vec![(Uuid::from_u128(2), 5), (Uuid::from_u128(3), 9)]),
            Event::IntentUpserted(intent(Some(Uuid::from_u128(1)))),
            Event::SubscriptionRemoved(Uuid::from_u128(4)),
        ];
        let entries = entry_bodies(&events);
        assert_eq!(entries.len(), 1);
        let (kind, body) = &entries[0];
        assert_eq!(*kind, "operational_intent.upserted");
        // The intent's own body, unchanged, plus the folded effects.
        let own = entry_body(&events[2]).1;
        let Value::Map(own) = own else { panic!() };
        for (k, v) in &own {
            let Value::Text(k) = k else { panic!() };
            assert_eq!(get(body, k), Some(v), "{k}");
        }
        let Some(Value::Array(made)) = get(body, "subscriptions_upserted") else {
            panic!()
        };
        assert_eq!(made, &vec![entry_body(&events[0]).1]);
        let Some(Value::Array(notified)) = get(body, "subscriptions_notified") else {
            panic!()
        };
        assert_eq!(notified.len(), 2);
        assert_eq!(
            get(&notified[1], "id"),
            Some(&t(&Uuid::from_u128(3).to_string()))
        );
        assert_eq!(
            get(&notified[1], "notification_index"),
            Some(&Value::Uint(9))
        );
        assert_eq!(
            get(body, "subscriptions_removed"),
            Some(&Value::Array(vec![t(&Uuid::from_u128(4).to_string())]))
        );
        // The body stays canonical CBOR: it re-encodes to the same bytes.
        let bytes = tlog::cbor::encode(body);
        assert_eq!(
            tlog::cbor::encode(&tlog::cbor::decode(&bytes).unwrap()),
            bytes
        );
    }

    #[test]
    fn a_write_too_large_to_fold_keeps_one_entry_per_event() {
        // ~2,500 vertices: each body ~45 KB fits, the two folded would not.
        let ring: Vec<airspace::geometry::LatLng> = (0..2500)
            .map(|k| {
                let a = std::f64::consts::TAU * k as f64 / 2500.0;
                airspace::geometry::LatLng {
                    lat: 45.0 + 0.01 * a.sin(),
                    lng: 10.0 + 0.01 * a.cos(),
                }
            })
            .collect();
        let v = airspace::geometry::prepare(
            airspace::geometry::Volume4D {
                outline: Outline::Polygon { vertices: ring },
                altitude_lower_m: Some(0.0),
                altitude_upper_m: Some(500.0),
                time_start: Some(Timestamp::from_unix_micros(1_000_000)),
                time_end: Some(Timestamp::from_unix_micros(9_000_000_000)),
            },
            &airspace::geometry::Limits::default(),
        )
        .unwrap();
        let mut sub = subscription(1);
        sub.extents = vec![v.clone()];
        let mut i = intent(Some(sub.id));
        i.extents = vec![v];
        let events = [Event::SubscriptionUpserted(sub), Event::IntentUpserted(i)];
        let entries = entry_bodies(&events);
        assert_eq!(entries, events.iter().map(entry_body).collect::<Vec<_>>());
        for (_, body) in &entries {
            assert!(tlog::cbor::encode(body).len() <= MAX_BODY_BYTES);
        }
    }

    #[test]
    fn a_write_alone_is_its_plain_entry_and_other_decisions_one_entry_per_event() {
        let alone = [Event::IntentUpserted(intent(None))];
        assert_eq!(entry_bodies(&alone), vec![entry_body(&alone[0])]);
        // Without any subscription effect, no folded keys appear.
        let (_, body) = &entry_bodies(&alone)[0];
        assert!(get(body, "subscriptions_upserted").is_none());
        // A sweep of expired entities: several writes, each its own entry.
        let sweep = [
            Event::IntentRemoved(Uuid::from_u128(7)),
            Event::IntentRemoved(Uuid::from_u128(8)),
            Event::SubscriptionRemoved(Uuid::from_u128(1)),
        ];
        assert_eq!(
            entry_bodies(&sweep),
            sweep.iter().map(entry_body).collect::<Vec<_>>()
        );
        // A subscription's own write has no entity write to fold into.
        let own = [Event::SubscriptionUpserted(subscription(1))];
        assert_eq!(entry_bodies(&own)[0].0, "subscription.upserted");
    }
}
