//! What the node writes into its evidence log for each state change, as
//! canonical CBOR bodies (`tlog::entry`). OVNs never enter the log: the log
//! is public and an OVN is a secret of its manager; the log records the
//! SHA-256 of the OVN instead, so a manager can later prove which version
//! another party had presented.

use airspace::{Event, Outline, PreparedVolume, Timestamp};
use std::sync::Arc;
use tlog::cbor::Value;

// Every body is written straight to canonical CBOR (`tlog::cbor::Writer`),
// each map's keys in the order of their encodings (shorter first, then
// bytewise): an entry built as a `Value` tree first was about a hundred
// small allocations, ~9% of the process's CPU under creates.
// `entry_body` gives the same bodies as values by decoding these bytes, and
// the strict decoder refuses a map written out of order.
use tlog::cbor::Writer;

fn opt_f(w: &mut Writer, x: Option<f64>) {
    match x {
        Some(f) => w.float(f),
        None => w.null(),
    };
}

fn opt_ts(w: &mut Writer, x: Option<Timestamp>) {
    match x {
        Some(t) => w.int(t.unix_micros()),
        None => w.null(),
    };
}

fn write_volume(w: &mut Writer, v: &PreparedVolume) {
    let v = &v.volume;
    w.map(5);
    w.text("end_us");
    opt_ts(w, v.time_end);
    w.text("outline").map(1);
    match &v.outline {
        Outline::Polygon { vertices } => {
            w.text("polygon").array(vertices.len());
            for p in vertices {
                w.array(2).float(p.lat).float(p.lng);
            }
        }
        Outline::Circle { center, radius_m } => {
            w.text("circle")
                .array(3)
                .float(center.lat)
                .float(center.lng)
                .float(*radius_m);
        }
    }
    w.text("start_us");
    opt_ts(w, v.time_start);
    w.text("alt_lower_m");
    opt_f(w, v.altitude_lower_m);
    w.text("alt_upper_m");
    opt_f(w, v.altitude_upper_m);
}

fn write_extents(w: &mut Writer, extents: &[PreparedVolume]) {
    w.array(extents.len());
    for v in extents {
        write_volume(w, v);
    }
}

/// SHA-256 of a set of extents' canonical CBOR (as the log records them):
/// names exactly which 4D volumes a notice was about.
pub fn extents_sha256(extents: &[PreparedVolume]) -> [u8; 32] {
    let mut w = Writer::default();
    write_extents(&mut w, extents);
    tlog::hash::sha256(&w.into_bytes())
}

fn write_id(w: &mut Writer, id: &uuid::Uuid) {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    w.text(id.hyphenated().encode_lower(&mut buf));
}

fn write_notified(w: &mut Writer, (id, index): &(airspace::SubscriptionId, i32)) {
    w.map(2).text("id");
    write_id(w, id);
    w.text("notification_index").uint((*index).max(0) as u64);
}

fn write_subscription(w: &mut Writer, s: &airspace::Subscription) {
    w.map(7).text("id");
    write_id(w, &s.id);
    w.text("extents");
    write_extents(w, &s.extents);
    w.text("manager").text(&s.manager);
    w.text("version").text(&s.version);
    w.text("implicit").bool(s.implicit);
    w.text("uss_base_url").text(&s.uss_base_url);
    w.text("notification_index")
        .uint(s.notification_index.max(0) as u64);
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

/// What an entity write did to subscriptions, recorded in its own entry.
#[derive(Default)]
struct Folded<'a> {
    upserted: Vec<&'a airspace::Subscription>,
    notified: Vec<&'a (airspace::SubscriptionId, i32)>,
    removed: Vec<&'a airspace::SubscriptionId>,
}

impl Folded<'_> {
    fn pairs(&self) -> usize {
        usize::from(!self.upserted.is_empty())
            + usize::from(!self.notified.is_empty())
            + usize::from(!self.removed.is_empty())
    }

    /// The folded keys, present only when not empty; they sort after every
    /// key of an entity's own body (all are longer).
    fn write(&self, w: &mut Writer) {
        if !self.removed.is_empty() {
            w.text("subscriptions_removed").array(self.removed.len());
            for id in &self.removed {
                write_id(w, id);
            }
        }
        if !self.notified.is_empty() {
            w.text("subscriptions_notified").array(self.notified.len());
            for n in &self.notified {
                write_notified(w, n);
            }
        }
        if !self.upserted.is_empty() {
            w.text("subscriptions_upserted").array(self.upserted.len());
            for s in &self.upserted {
                write_subscription(w, s);
            }
        }
    }
}

/// The entry kind and encoded body of an event, with `folded` recorded in
/// it (an entity write's only: empty for any other).
fn write_body(e: &Event, folded: &Folded) -> (&'static str, Vec<u8>) {
    let mut w = Writer::with_capacity(512);
    let extra = folded.pairs();
    let kind = match e {
        Event::IntentUpserted(i) => {
            w.map(8 + extra).text("id");
            write_id(&mut w, &i.id);
            w.text("state").text(i.state.as_str());
            w.text("extents");
            write_extents(&mut w, &i.extents);
            w.text("manager").text(&i.manager);
            w.text("version").uint(i.version.max(0) as u64);
            w.text("ovn_sha256")
                .bytes(&tlog::hash::sha256(i.ovn.as_str().as_bytes()));
            w.text("uss_base_url").text(&i.uss_base_url);
            w.text("subscription_id");
            match &i.subscription_id {
                Some(s) => write_id(&mut w, s),
                None => {
                    w.null();
                }
            }
            "operational_intent.upserted"
        }
        Event::ConstraintUpserted(c) => {
            w.map(6 + extra).text("id");
            write_id(&mut w, &c.id);
            w.text("extents");
            write_extents(&mut w, &c.extents);
            w.text("manager").text(&c.manager);
            w.text("version").uint(c.version.max(0) as u64);
            w.text("ovn_sha256")
                .bytes(&tlog::hash::sha256(c.ovn.as_str().as_bytes()));
            w.text("uss_base_url").text(&c.uss_base_url);
            "constraint.upserted"
        }
        Event::IntentRemoved(id)
        | Event::ConstraintRemoved(id)
        | Event::SubscriptionRemoved(id) => {
            let extra = if is_entity_write(e) { extra } else { 0 };
            w.map(1 + extra).text("id");
            write_id(&mut w, id);
            match e {
                Event::IntentRemoved(_) => "operational_intent.removed",
                Event::ConstraintRemoved(_) => "constraint.removed",
                _ => "subscription.removed",
            }
        }
        Event::SubscriptionUpserted(s) => {
            write_subscription(&mut w, s);
            "subscription.upserted"
        }
        Event::SubscriptionsNotified(bumped) => {
            w.map(1).text("subscriptions").array(bumped.len());
            for b in bumped {
                write_notified(&mut w, b);
            }
            "subscriptions.notified"
        }
        Event::AvailabilitySet(a) => {
            w.map(3).text("uss").text(&a.uss);
            w.text("version").text(&a.version);
            w.text("availability")
                .text(&format!("{:?}", a.availability));
            "uss_availability.set"
        }
        Event::ReportFiled(r) => {
            w.map(3).text("id").text(&r.id);
            w.text("reporter").text(&r.reporter);
            w.text("exchange_sha256")
                .bytes(&tlog::hash::sha256(r.exchange_json.as_bytes()));
            "report.filed"
        }
    };
    if is_entity_write(e) {
        folded.write(&mut w);
    }
    (kind, w.into_bytes())
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
        .map(|(kind, encoded)| (kind, decoded(&encoded)))
        .collect()
}

/// A body this module wrote, as a value.
fn decoded(encoded: &[u8]) -> Value {
    tlog::cbor::decode(encoded).expect("the log's bodies are written in canonical order")
}

/// [`entry_bodies`] encoded.
fn encoded_entry_bodies(events: &[Event]) -> Vec<(&'static str, Vec<u8>)> {
    let each = || {
        events
            .iter()
            .map(|e| write_body(e, &Folded::default()))
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
    let mut folded = Folded::default();
    for e in events {
        match e {
            Event::SubscriptionUpserted(s) => folded.upserted.push(s),
            Event::SubscriptionsNotified(bumped) => folded.notified.extend(bumped),
            Event::SubscriptionRemoved(id) => folded.removed.push(id),
            _ => own = Some(e),
        }
    }
    let Some(own) = own else {
        // Unreachable (exactly one entity write); if it were not, one
        // entry per event records the same.
        return each();
    };
    let (kind, encoded) = write_body(own, &folded);
    if encoded.len() > MAX_BODY_BYTES {
        // Too large to keep whole (an intent of thousands of vertices and
        // its implicit subscription repeating them): one entry per event,
        // each of which may still fit, rather than one body replaced by
        // its hash.
        return each();
    }
    vec![(kind, encoded)]
}

/// Bodies larger than this (encoded) are logged as their hash (entries
/// stay ≤ 64 KiB).
pub const MAX_BODY_BYTES: usize = 60 * 1024;

/// The entry kind and body for an event.
pub fn entry_body(e: &Event) -> (&'static str, Value) {
    let (kind, encoded) = write_body(e, &Folded::default());
    (kind, decoded(&encoded))
}

/// How a store signs what it appends: the node's key and name (the log's
/// origin) and the clock for entry timestamps.
#[derive(Clone)]
pub struct LogSigner {
    /// The node key in force (after a hand-over, the new one).
    pub signer: tlog::NoteSigner,
    /// The key handed over from, while the hand-over is under way: it
    /// signs the hand-over itself, and checkpoints are signed by both until
    /// every peer has receipted the hand-over.
    pub previous: Option<tlog::NoteSigner>,
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

    /// The key the line's entries are signed with as `line` stands: the
    /// previous key until the log holds the hand-over to the key in force.
    pub fn line_signer(&self, line: &liaison::LineState) -> &tlog::NoteSigner {
        match &self.previous {
            Some(old) if line.own_key() != Some(self.signer.verifier().to_vkey().as_str()) => old,
            _ => &self.signer,
        }
    }

    /// This signer without the previous key (the hand-over complete).
    pub fn settled(&self) -> LogSigner {
        LogSigner {
            previous: None,
            ..self.clone()
        }
    }

    /// `text` as a note signed by the key in force (and the previous one
    /// while it is kept).
    pub fn note(&self, text: &str) -> String {
        let mut signatures = vec![self.signer.sign(text)];
        signatures.extend(self.previous.as_ref().map(|p| p.sign(text)));
        tlog::Note {
            text: text.to_string(),
            signatures,
        }
        .to_text()
    }

    /// The keys this node's checkpoints may carry: the one in force, and
    /// the previous while a hand-over is under way.
    pub fn verifiers(&self) -> Vec<tlog::Verifier> {
        let mut v = vec![self.signer.verifier()];
        v.extend(self.previous.as_ref().map(|p| p.verifier()));
        v
    }

    /// The entries (leaf bytes) recording one decision's events
    /// ([`entry_bodies`]), unattested (`tlog::entry`): the airspace's
    /// entries stay in this log, attested by its signed and cosigned
    /// checkpoints. What crosses to a peer is a record of the line, signed
    /// (`node::share`). An Ed25519 signature per write was half of the
    /// writer's time per create.
    pub fn entries(&self, events: &[Event]) -> Result<Vec<Vec<u8>>, tlog::entry::EntryError> {
        let ms = (self.clock.now().unix_micros() / 1000).max(0) as u64;
        encoded_entry_bodies(events)
            .into_iter()
            .map(|(kind, encoded)| self.entry(kind, encoded, ms))
            .collect()
    }

    /// The unattested entry of the body encoded as `encoded`.
    fn entry(
        &self,
        kind: &str,
        mut encoded: Vec<u8>,
        ms: u64,
    ) -> Result<Vec<u8>, tlog::entry::EntryError> {
        // Entries stay ≤ 64 KiB; a larger body (a polygon of
        // thousands of vertices) is committed to by its hash.
        if encoded.len() > MAX_BODY_BYTES {
            let mut w = Writer::default();
            w.map(2).text("body_bytes").uint(encoded.len() as u64);
            w.text("body_sha256").bytes(&tlog::hash::sha256(&encoded));
            encoded = w.into_bytes();
        }
        tlog::entry::unattested_leaf(kind, &self.signer.name, ms, &encoded)
    }

    /// The OVN this node answers for version `version` of a peer's entity
    /// `id` held here as a copy managed by `manager`, whose own OVN the
    /// peer's record carries only as `peer_ovn_sha256`: derived from the
    /// node key (a deterministic Ed25519 signature, hashed), so that only
    /// this node can mint it, every replica mints the same, nothing has to
    /// be kept, and a new version of the copy has a new OVN. It reveals
    /// nothing of the peer's OVN beyond the hash its record already holds.
    pub fn copy_ovn(
        &self,
        manager: &str,
        id: uuid::Uuid,
        version: i32,
        peer_ovn_sha256: &str,
    ) -> airspace::Ovn {
        use base64::Engine as _;
        let text = format!("detente copy ovn v1\n{manager}\n{id}\n{version}\n{peer_ovn_sha256}\n");
        let sig = self.signer.sign(&text).signature;
        airspace::Ovn(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tlog::hash::sha256(&sig)),
        )
    }

    /// A signed checkpoint note for a tree of `size` leaves with `root`
    /// (signed by the previous key too while one is kept: [`Self::settled`]
    /// drops it once the hand-over is complete).
    pub fn checkpoint(&self, size: u64, root: tlog::Hash) -> String {
        let text = tlog::Checkpoint {
            origin: self.signer.name.clone(),
            size,
            root,
            extensions: vec![],
        }
        .to_text();
        let mut signatures = vec![self.signer.sign(&text)];
        signatures.extend(self.previous.as_ref().map(|p| p.sign(&text)));
        let note = tlog::Note { signatures, text };
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

    /// The bodies built the older way, as `Value` trees sorted by the
    /// encoder: the layout `write_body` must keep byte for byte.
    mod reference {
        use super::super::*;
        pub fn t(s: &str) -> Value {
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
        pub fn extents_sha256_reference(extents: &[PreparedVolume]) -> [u8; 32] {
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

        /// The entry kind and body for an event.
        pub fn entry_body_reference(e: &Event) -> (&'static str, Value) {
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
    }

    use reference::{entry_body_reference, extents_sha256_reference, t};

    fn volume(
        outline: Outline,
        alt: Option<(f64, f64)>,
        time: Option<(i64, i64)>,
    ) -> PreparedVolume {
        airspace::geometry::prepare(
            airspace::geometry::Volume4D {
                outline,
                altitude_lower_m: alt.map(|a| a.0),
                altitude_upper_m: alt.map(|a| a.1),
                time_start: time.map(|t| Timestamp::from_unix_micros(t.0)),
                time_end: time.map(|t| Timestamp::from_unix_micros(t.1)),
            },
            &airspace::geometry::Limits::default(),
        )
        .unwrap()
    }

    fn volumes() -> Vec<PreparedVolume> {
        use airspace::geometry::LatLng;
        let p = |lat, lng| LatLng { lat, lng };
        vec![
            volume(
                Outline::Polygon {
                    vertices: vec![
                        p(45.05, 10.0),
                        p(45.05, 10.1),
                        p(45.150000001, 10.1),
                        p(45.15, 9.95),
                    ],
                },
                Some((0.0, 152.4)),
                Some((1_796_000_000_000_000, 1_796_003_600_000_000)),
            ),
            volume(
                Outline::Circle {
                    center: p(-33.5, -70.25),
                    radius_m: 1234.5,
                },
                None,
                Some((-5_000_000, 3_000_000)),
            ),
            volume(
                Outline::Circle {
                    center: p(0.0, 179.999),
                    radius_m: 100.0,
                },
                Some((-10.0, 1e4)),
                None,
            ),
        ]
    }

    #[test]
    fn bodies_are_written_byte_for_byte_as_before() {
        let mut i = intent(Some(Uuid::from_u128(1)));
        i.extents = volumes();
        let mut bare = intent(None);
        bare.extents = volumes()[1..].to_vec();
        bare.version = -3;
        let mut s = subscription(1);
        s.extents = volumes();
        s.notification_index = 41;
        let c = airspace::Constraint {
            id: Uuid::from_u128(9),
            manager: "federation-uss".into(),
            version: 4,
            ovn: Ovn("constraint-ovn-0123456789".into()),
            extents: volumes(),
            uss_base_url: "https://federation.example/utm".into(),
            time_start: Timestamp::from_unix_micros(1_000_000),
            time_end: Timestamp::from_unix_micros(9_000_000_000),
            updated_seq: 2,
        };
        let events = vec![
            Event::IntentUpserted(i.clone()),
            Event::IntentUpserted(bare),
            Event::IntentRemoved(Uuid::from_u128(7)),
            Event::ConstraintUpserted(c),
            Event::ConstraintRemoved(Uuid::from_u128(9)),
            Event::SubscriptionUpserted(s.clone()),
            Event::SubscriptionsNotified(vec![(Uuid::from_u128(2), 5), (Uuid::from_u128(3), -1)]),
            Event::SubscriptionRemoved(Uuid::from_u128(4)),
            Event::AvailabilitySet(airspace::UssAvailability {
                uss: "alliance-uss".into(),
                availability: airspace::UssAvailabilityState::Down,
                version: "3".into(),
            }),
            Event::ReportFiled(airspace::Report {
                id: "report-1".into(),
                reporter: "alliance-uss".into(),
                received: Timestamp::from_unix_micros(2_000_000),
                exchange_json: "{\"a\":1}".into(),
            }),
        ];
        for e in &events {
            let (kind, bytes) = write_body(e, &Folded::default());
            let (ref_kind, ref_body) = entry_body_reference(e);
            assert_eq!(kind, ref_kind);
            assert_eq!(bytes, tlog::cbor::encode(&ref_body), "{kind}");
            assert_eq!(
                entry_body(e),
                (ref_kind, tlog::cbor::decode(&bytes).unwrap())
            );
        }
        assert_eq!(
            extents_sha256(&i.extents),
            extents_sha256_reference(&i.extents)
        );
        // Folded: the intent's body with the three keys added.
        let decision = vec![
            Event::SubscriptionUpserted(s.clone()),
            Event::SubscriptionsNotified(vec![(Uuid::from_u128(2), 5)]),
            Event::IntentUpserted(i.clone()),
            Event::SubscriptionRemoved(Uuid::from_u128(4)),
        ];
        let (_, Value::Map(mut whole)) = entry_body_reference(&decision[2]) else {
            panic!()
        };
        whole.push((
            t("subscriptions_upserted"),
            Value::Array(vec![entry_body_reference(&decision[0]).1]),
        ));
        whole.push((
            t("subscriptions_notified"),
            Value::Array(vec![Value::Map(vec![
                (t("id"), t(&Uuid::from_u128(2).to_string())),
                (t("notification_index"), Value::Uint(5)),
            ])]),
        ));
        whole.push((
            t("subscriptions_removed"),
            Value::Array(vec![t(&Uuid::from_u128(4).to_string())]),
        ));
        let got = encoded_entry_bodies(&decision);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, tlog::cbor::encode(&Value::Map(whole)));
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
