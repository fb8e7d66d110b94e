//! Deconfliction data shared with peers: which of this party's airspace
//! changes go to which peer (those touching the deconfliction area agreed
//! with it, and the removal of what it holds), and what a peer's shared
//! change does here (a read-only copy, managed by `peer:<peer>:<manager>`,
//! that takes part in key checks and conflicts).
//!
//! A shared change carries the peer's OVN only as its SHA-256 (as the log
//! does), and the peer's OVN never reaches this node. For the copy, this
//! node is the managing USS its own planners talk to: it mints the copy's
//! OVN per version from its own key ([`with_local_ovn`]), answers it at its
//! F3548 USS interface (`/uss/v1/…`), and its key check takes exactly that
//! OVN for the copy's current version.

use crate::entries::entry_body;
use airspace::geometry::{LatLng, Limits, Outline, PreparedVolume, Volume4D, prepare};
use airspace::model::time_bounds;
use airspace::{
    AirspaceState, Constraint, Event, OperationalIntent, OperationalIntentState, Ovn, Timestamp,
};
use liaison::{LineEvent, LineState};
use tlog::cbor::Value;

/// Managers of copies held for peers start with this.
pub const PEER_PREFIX: &str = "peer:";

/// Whether `manager` is a peer's (the entity is a copy held here).
pub fn is_peer_copy(manager: &str) -> bool {
    manager.starts_with(PEER_PREFIX)
}

fn area_volumes(polygons: &[Vec<(f64, f64)>]) -> Vec<PreparedVolume> {
    let limits = Limits {
        max_vertices: 10_000,
        max_area_m2: f64::INFINITY,
        trusted: false,
    };
    polygons
        .iter()
        .filter_map(|p| {
            prepare(
                Volume4D {
                    outline: Outline::Polygon {
                        vertices: p
                            .iter()
                            .map(|(lat, lng)| LatLng {
                                lat: *lat,
                                lng: *lng,
                            })
                            .collect(),
                    },
                    altitude_lower_m: None,
                    altitude_upper_m: None,
                    time_start: None,
                    time_end: None,
                },
                &limits,
            )
            .ok()
        })
        .collect()
}

fn touches(extents: &[PreparedVolume], area: &[PreparedVolume]) -> bool {
    extents.iter().any(|x| area.iter().any(|a| a.intersects(x)))
}

/// The line events sharing one committed airspace change of this node with
/// each peer concerned. Nothing for the copies held for peers.
pub fn outgoing(line: &LineState, e: &Event) -> Vec<LineEvent> {
    let (id, extents) = match e {
        Event::IntentUpserted(i) if !is_peer_copy(&i.manager) => (i.id, Some(&i.extents)),
        Event::ConstraintUpserted(c) if !is_peer_copy(&c.manager) => (c.id, Some(&c.extents)),
        Event::IntentRemoved(id) | Event::ConstraintRemoved(id) => (*id, None),
        _ => return vec![],
    };
    let id_text = id.to_string();
    let mut out = Vec::new();
    for (peer, polygons) in line.areas() {
        let held = line.shared_with(peer, &id_text);
        let share = match extents {
            Some(x) if touches(x, &area_volumes(polygons)) => Some(e.clone()),
            // Moved out of the area, or removed: the peer drops its copy.
            _ if held => Some(match e {
                Event::IntentUpserted(_) | Event::IntentRemoved(_) => Event::IntentRemoved(id),
                _ => Event::ConstraintRemoved(id),
            }),
            _ => None,
        };
        if let Some(ev) = share {
            out.push(share_with(line, peer, &ev));
        }
    }
    out
}

/// The peers whose deconfliction area `events` propose, with the area
/// agreed with each before them.
pub fn areas_concerned(
    line: &LineState,
    events: &[LineEvent],
) -> Vec<(String, liaison::state::Polygons)> {
    let mut out: Vec<(String, liaison::state::Polygons)> = Vec::new();
    for e in events {
        let peer = match e {
            LineEvent::Own(entry) => match &entry.record {
                liaison::Record::AreaProposed { peer, .. } => peer,
                _ => continue,
            },
            LineEvent::Received {
                entry,
                origin,
                refused: None,
                ..
            } if matches!(entry.record, liaison::Record::AreaProposed { .. }) => origin,
            _ => continue,
        };
        if !out.iter().any(|(p, _)| p == peer) {
            out.push((peer.clone(), line.area(peer).to_vec()));
        }
    }
    out
}

/// What sharing with `peer` calls for once the area agreed with it has
/// changed (share each with [`share_with`]): this party's intents and constraints inside the area that the
/// peer does not hold yet, and the removal of those it holds that are no
/// longer inside.
pub fn resync(line: &LineState, air: &AirspaceState, peer: &str) -> Vec<Event> {
    let area = area_volumes(line.area(peer));
    let mut changes = Vec::new();
    for i in air.intents().filter(|i| !is_peer_copy(&i.manager)) {
        let (inside, held) = (
            touches(&i.extents, &area),
            line.shared_with(peer, &i.id.to_string()),
        );
        if inside && !held {
            changes.push(Event::IntentUpserted(i.clone()));
        } else if held && !inside {
            changes.push(Event::IntentRemoved(i.id));
        }
    }
    for c in air.constraints().filter(|c| !is_peer_copy(&c.manager)) {
        let (inside, held) = (
            touches(&c.extents, &area),
            line.shared_with(peer, &c.id.to_string()),
        );
        if inside && !held {
            changes.push(Event::ConstraintUpserted(c.clone()));
        } else if held && !inside {
            changes.push(Event::ConstraintRemoved(c.id));
        }
    }
    changes
}

/// The line event sharing one airspace change with `peer` (its sequence
/// number the next on its lane: append each before making the next).
pub fn share_with(line: &LineState, peer: &str, e: &Event) -> LineEvent {
    let (kind, body) = entry_body(e);
    liaison::decide::share_airspace(line, peer, kind, body)
}

/// A change of a peer's copy, for the local subscriptions it touched: this
/// node notifies them as the copy's managing USS would (F3548
/// `notifyOperationalIntentDetailsChanged` / `notifyConstraintDetailsChanged`).
#[derive(Clone, Debug)]
pub struct CopyNotice {
    /// The copy as it now is (its OVN this node's), or its removal.
    pub change: Event,
    /// Each subscriber's base URL with its subscriptions and their
    /// notification indices after the change.
    pub subscribers: Vec<airspace::SubscriberToNotify>,
}

/// Most copy notices waiting for delivery; beyond, the newest are dropped
/// with a warning (subscribers still see their notification index move).
pub const MAX_PENDING_NOTICES: usize = 4096;

/// A peer's shared change as this node holds it: the copy's OVN (the
/// peer's, known only by its hash) replaced by the one this node mints for
/// that version (`LogSigner::copy_ovn`).
pub fn with_local_ovn(e: Event, signer: &crate::entries::LogSigner) -> Event {
    match e {
        Event::IntentUpserted(mut i) => {
            i.ovn = signer.copy_ovn(&i.manager, i.id, i.version, i.ovn.as_str());
            Event::IntentUpserted(i)
        }
        Event::ConstraintUpserted(mut c) => {
            c.ovn = signer.copy_ovn(&c.manager, c.id, c.version, c.ovn.as_str());
            Event::ConstraintUpserted(c)
        }
        other => other,
    }
}

fn field<'a>(v: &'a Value, k: &str) -> Result<&'a Value, String> {
    let Value::Map(pairs) = v else {
        return Err("the shared change is not a map".into());
    };
    pairs
        .iter()
        .find_map(|(key, val)| matches!(key, Value::Text(x) if x == k).then_some(val))
        .ok_or_else(|| format!("the shared change has no {k}"))
}

fn text<'a>(v: &'a Value, k: &str) -> Result<&'a str, String> {
    match field(v, k)? {
        Value::Text(s) => Ok(s),
        _ => Err(format!("{k} must be text")),
    }
}

fn uint(v: &Value, k: &str) -> Result<u64, String> {
    match field(v, k)? {
        Value::Uint(n) => Ok(*n),
        _ => Err(format!("{k} must be an unsigned integer")),
    }
}

fn float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Uint(n) => Ok(*n as f64),
        Value::Nint(n) => Ok(-1.0 - *n as f64),
        _ => Err("a coordinate must be a number".into()),
    }
}

fn opt_f(v: &Value, k: &str) -> Result<Option<f64>, String> {
    match field(v, k)? {
        Value::Null => Ok(None),
        x => float(x).map(Some),
    }
}

fn opt_ts(v: &Value, k: &str) -> Result<Option<Timestamp>, String> {
    match field(v, k)? {
        Value::Null => Ok(None),
        Value::Uint(n) => Ok(Some(Timestamp::from_unix_micros(
            i64::try_from(*n).map_err(|_| format!("{k} is out of range"))?,
        ))),
        Value::Nint(n) => Ok(Some(Timestamp::from_unix_micros(
            -1 - i64::try_from(*n).map_err(|_| format!("{k} is out of range"))?,
        ))),
        _ => Err(format!("{k} must be a time")),
    }
}

fn point(v: &Value) -> Result<LatLng, String> {
    match v {
        Value::Array(a) if a.len() == 2 => Ok(LatLng {
            lat: float(&a[0])?,
            lng: float(&a[1])?,
        }),
        _ => Err("a vertex is [lat, lng]".into()),
    }
}

/// A volume as `node::entries` encodes it, checked like outside input.
fn volume(v: &Value) -> Result<PreparedVolume, String> {
    let o = field(v, "outline")?;
    let outline = if let Ok(Value::Array(vs)) = field(o, "polygon") {
        Outline::Polygon {
            vertices: vs.iter().map(point).collect::<Result<_, _>>()?,
        }
    } else if let Ok(Value::Array(c)) = field(o, "circle") {
        let [lat, lng, r] = c.as_slice() else {
            return Err("a circle is [lat, lng, radius_m]".into());
        };
        Outline::Circle {
            center: LatLng {
                lat: float(lat)?,
                lng: float(lng)?,
            },
            radius_m: float(r)?,
        }
    } else {
        return Err("an outline is a polygon or a circle".into());
    };
    let v4 = Volume4D {
        outline,
        altitude_lower_m: opt_f(v, "alt_lower_m")?,
        altitude_upper_m: opt_f(v, "alt_upper_m")?,
        time_start: opt_ts(v, "start_us")?,
        time_end: opt_ts(v, "end_us")?,
    };
    prepare(
        v4,
        &Limits {
            max_vertices: 10_000,
            max_area_m2: f64::INFINITY,
            trusted: false,
        },
    )
    .map_err(|e| format!("a shared volume: {}", e.message))
}

fn extents(v: &Value) -> Result<Vec<PreparedVolume>, String> {
    match field(v, "extents")? {
        Value::Array(a) if !a.is_empty() => a.iter().map(volume).collect(),
        _ => Err("extents must be a non-empty array".into()),
    }
}

fn ovn_hash(v: &Value) -> Result<Ovn, String> {
    match field(v, "ovn_sha256")? {
        Value::Bytes(b) if b.len() == 32 => Ok(Ovn(format!(
            "{}{}",
            airspace::OVN_HASH_PREFIX,
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ))),
        _ => Err("ovn_sha256 must be 32 bytes".into()),
    }
}

/// What a peer's shared change does here: the event on the copy it holds
/// for the peer, or why it does nothing (it would touch an entity of this
/// party or of another peer, or it is malformed).
pub fn incoming(
    peer: &str,
    kind: &str,
    body: &Value,
    air: &AirspaceState,
) -> Result<Event, String> {
    let id =
        uuid::Uuid::parse_str(text(body, "id")?).map_err(|_| "id must be a UUID".to_string())?;
    let prefix = format!("{PEER_PREFIX}{peer}:");
    let own_copy = |manager: Option<&str>| match manager {
        None => Ok(()),
        Some(m) if m.starts_with(&prefix) => Ok(()),
        Some(_) => Err(format!("{id} is not {peer}'s to change here")),
    };
    match kind {
        "operational_intent.upserted" | "operational_intent.removed" => {
            own_copy(air.intent(&id).map(|i| i.manager.as_str()))?;
        }
        "constraint.upserted" | "constraint.removed" => {
            own_copy(air.constraint(&id).map(|c| c.manager.as_str()))?;
        }
        _ => {}
    }
    let seq = air.seq() + 1;
    match kind {
        "operational_intent.upserted" => {
            let extents = extents(body)?;
            let (time_start, time_end) = time_bounds(&extents);
            let state = match text(body, "state")? {
                "Accepted" => OperationalIntentState::Accepted,
                "Activated" => OperationalIntentState::Activated,
                "Nonconforming" => OperationalIntentState::Nonconforming,
                "Contingent" => OperationalIntentState::Contingent,
                s => return Err(format!("unknown state {s:?}")),
            };
            Ok(Event::IntentUpserted(OperationalIntent {
                id,
                manager: format!("{prefix}{}", text(body, "manager")?),
                version: i32::try_from(uint(body, "version")?)
                    .map_err(|_| "version is too large")?,
                state,
                ovn: ovn_hash(body)?,
                extents,
                uss_base_url: text(body, "uss_base_url")?.to_string(),
                subscription_id: None,
                time_start,
                time_end,
                updated_seq: seq,
            }))
        }
        "constraint.upserted" => {
            let extents = extents(body)?;
            let (time_start, time_end) = time_bounds(&extents);
            Ok(Event::ConstraintUpserted(Constraint {
                id,
                manager: format!("{prefix}{}", text(body, "manager")?),
                version: i32::try_from(uint(body, "version")?)
                    .map_err(|_| "version is too large")?,
                ovn: ovn_hash(body)?,
                extents,
                uss_base_url: text(body, "uss_base_url")?.to_string(),
                time_start,
                time_end,
                updated_seq: seq,
            }))
        }
        "operational_intent.removed" => Ok(Event::IntentRemoved(id)),
        "constraint.removed" => Ok(Event::ConstraintRemoved(id)),
        other => Err(format!("{other} is not a shared airspace change")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use airspace::geometry::Volume4D;

    fn intent(manager: &str, lat: f64) -> OperationalIntent {
        let v = prepare(
            Volume4D::square(
                LatLng { lat, lng: 10.0 },
                0.01,
                (0.0, 500.0),
                (
                    Timestamp::from_unix_micros(1_000_000),
                    Timestamp::from_unix_micros(9_000_000_000),
                ),
            ),
            &Limits::default(),
        )
        .unwrap();
        OperationalIntent {
            id: uuid::Uuid::from_u128(7),
            manager: manager.into(),
            version: 3,
            state: OperationalIntentState::Activated,
            ovn: Ovn("secret-ovn-of-alliance-uss-0123456789".into()),
            extents: vec![v],
            uss_base_url: "https://alliance.example/utm".into(),
            subscription_id: None,
            time_start: Timestamp::from_unix_micros(1_000_000),
            time_end: Timestamp::from_unix_micros(9_000_000_000),
            updated_seq: 1,
        }
    }

    #[test]
    fn a_shared_intent_arrives_as_a_read_only_copy_with_the_ovn_hashed() {
        let i = intent("alliance-uss", 45.0);
        let (kind, body) = entry_body(&Event::IntentUpserted(i.clone()));
        let air = AirspaceState::default();
        let Event::IntentUpserted(copy) = incoming("alliance", kind, &body, &air).unwrap() else {
            panic!("not an upsert");
        };
        assert_eq!(copy.id, i.id);
        assert_eq!(copy.manager, "peer:alliance:alliance-uss");
        assert_eq!(
            (copy.version, copy.state),
            (3, OperationalIntentState::Activated)
        );
        assert_eq!(copy.extents[0].volume, i.extents[0].volume);
        // The OVN itself never crosses; its hash proves a presented key.
        assert!(!copy.ovn.as_str().contains("secret"));
        assert!(airspace::key_matches(&copy.ovn, &i.ovn));
        assert!(!airspace::key_matches(&copy.ovn, &Ovn("another".into())));
    }

    #[test]
    fn the_copys_ovn_is_minted_here_per_version_and_the_peers_is_not_taken() {
        let signer = |seed: u8| crate::entries::LogSigner {
            previous: None,
            signer: tlog::NoteSigner::from_seed("federation.example", &[seed; 32]).unwrap(),
            clock: std::sync::Arc::new(crate::SystemClock),
            member: None,
        };
        let held = |i: &OperationalIntent, s: &crate::entries::LogSigner| {
            let (kind, body) = entry_body(&Event::IntentUpserted(i.clone()));
            let e = incoming("alliance", kind, &body, &AirspaceState::default()).unwrap();
            let Event::IntentUpserted(copy) = with_local_ovn(e, s) else {
                panic!("not an upsert");
            };
            copy
        };
        let mut i = intent("alliance-uss", 45.0);
        let first = held(&i, &signer(1));
        // The same version, minted again (another replica, a restart): the same OVN.
        assert_eq!(first.ovn, held(&i, &signer(1)).ovn);
        // Only the presented OVN this node minted proves knowledge of the copy.
        assert!(airspace::key_matches(&first.ovn, &first.ovn));
        assert!(
            !airspace::key_matches(&first.ovn, &i.ovn),
            "the peer's own OVN"
        );
        assert!(first.ovn.as_str().len() >= 16 && !first.ovn.as_str().contains("secret"));
        // Another node's key mints another OVN.
        assert_ne!(first.ovn, held(&i, &signer(2)).ovn);
        // A new version of the copy (a new OVN at the peer): the old one no longer proves it.
        i.version += 1;
        i.ovn = Ovn("secret-ovn-of-alliance-uss-version-4".into());
        let second = held(&i, &signer(1));
        assert!(!airspace::key_matches(&second.ovn, &first.ovn));
    }

    #[test]
    fn a_peer_cannot_change_an_entity_that_is_not_its_copy() {
        let mut air = AirspaceState::default();
        air.apply(&[Event::IntentUpserted(intent("local-uss", 45.0))]);
        let (kind, body) = entry_body(&Event::IntentUpserted(intent("alliance-uss", 45.0)));
        assert!(incoming("alliance", kind, &body, &air).is_err());
        let (kind, body) = entry_body(&Event::IntentRemoved(uuid::Uuid::from_u128(7)));
        assert!(incoming("alliance", kind, &body, &air).is_err());
    }
}
