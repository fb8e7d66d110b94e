//! The line's rules as decisions: `fn(&LineState, command, now) ->
//! Result<LineDecision, LineError>`. A decision returns the entries to
//! append; the store signs and commits them and applies them to the state
//! (in order, before the next decision runs).

use crate::LineError;
use crate::record::*;
use crate::state::{Delivery, Held, LineState};
use tlog::cbor::Value;
use tlog::entry::SignedEntry;
use uuid::Uuid;

/// What a decision appends to the log.
#[derive(Clone, Debug, PartialEq)]
// Events live for one decision; most are `Own`, so boxing it would only add
// an allocation per record.
#[allow(clippy::large_enum_variant)]
pub enum LineEvent {
    /// A new entry this node signs.
    Own(LineEntry),
    /// A peer's record, appended verbatim; this node's signed receipt
    /// follows the run of the peer's records it ends (`refused`: kept as
    /// evidence, not accepted).
    Received {
        bytes: Vec<u8>,
        /// The record as decoded from `bytes` (decoded once).
        entry: Box<LineEntry>,
        origin: String,
        lane: Precedence,
        seq: u64,
        refused: Option<String>,
    },
    /// A peer's receipt for one of this node's records, appended verbatim.
    Kept {
        bytes: Vec<u8>,
        entry: Box<LineEntry>,
        origin: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineOutcome {
    Committed,
    /// Nothing to do: the same command was already committed.
    AlreadyDone,
    /// A peer resent a record already receipted: the receipt is at
    /// `receipt_index` of this node's log.
    Duplicate {
        receipt_index: u64,
    },
    /// A peer's record taken: its receipt, signed at the end of the run it
    /// belongs to, is found under (lane, seq) in the inbound lane.
    Received {
        lane: Precedence,
        seq: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct LineDecision {
    pub events: Vec<LineEvent>,
    pub outcome: LineOutcome,
}

impl LineDecision {
    fn commit(events: Vec<LineEvent>) -> Self {
        LineDecision {
            events,
            outcome: LineOutcome::Committed,
        }
    }
    fn nothing(outcome: LineOutcome) -> Self {
        LineDecision {
            events: vec![],
            outcome,
        }
    }
}

/// Longest name, role, reason or URL accepted.
pub const MAX_NAME_BYTES: usize = 256;

/// How far behind the host's clock a guest's node may be and still take its
/// member's message right after the accreditation starts: the sender's node
/// treats an accreditation starting within this much of its own now as
/// started. The host's clock decides: it checks again on receipt.
pub const CLOCK_SKEW_MS: Millis = 120_000;

/// The shortest and longest acknowledgement deadline a channel may set.
pub const DEADLINE_MIN_MS: Millis = 60_000;
pub const DEADLINE_MAX_MS: Millis = 7 * 86_400_000;

fn short(field: &str, s: &str) -> Result<(), LineError> {
    if s.len() > MAX_NAME_BYTES {
        return Err(LineError::invalid(
            field,
            format!("at most {MAX_NAME_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn non_empty(field: &str, s: &str) -> Result<(), LineError> {
    if s.trim().is_empty() {
        return Err(LineError::invalid(field, "must not be empty"));
    }
    short(field, s)
}

fn own(state: &LineState, record: Record, to: Option<(&str, Precedence)>) -> LineEvent {
    let envelope = to.map(|(to, lane)| Envelope {
        to: to.to_string(),
        lane,
        seq: state.out_lane(to, lane).map(|l| l.last_seq).unwrap_or(0) + 1,
        after: Precedence::ALL
            .iter()
            .take_while(|p| **p != lane)
            .map(|p| state.out_lane(to, *p).map(|l| l.last_seq).unwrap_or(0))
            .collect(),
    });
    LineEvent::Own(LineEntry { record, envelope })
}

fn known_peer<'a>(state: &'a LineState, name: &str) -> Result<&'a crate::state::Peer, LineError> {
    state
        .peer(name)
        .ok_or_else(|| LineError::UnknownPeer(name.to_string()))
}

/// Adds a peer by its pinned verifier key; the node's members are sent to
/// it. Adding the same peer again changes nothing.
pub fn add_peer(
    state: &LineState,
    name: &str,
    url: &str,
    vkey: &str,
    now: Millis,
) -> Result<LineDecision, LineError> {
    let v = tlog::Verifier::parse(vkey).map_err(|e| LineError::invalid("key", e.to_string()))?;
    if v.kind != 0x01 {
        return Err(LineError::invalid(
            "key",
            "a peer's key is its Ed25519 note key (type 0x01)",
        ));
    }
    if v.name != name {
        return Err(LineError::invalid(
            "name",
            format!("the key is for {:?}, not {name:?}", v.name),
        ));
    }
    if name == state.me() {
        return Err(LineError::invalid("name", "a node cannot peer with itself"));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(LineError::invalid(
            "url",
            "must be an http:// or https:// URL",
        ));
    }
    short("url", url)?;
    if let Some(p) = state.peer(name) {
        if p.vkey == vkey && p.url == url {
            return Ok(LineDecision::nothing(LineOutcome::AlreadyDone));
        }
        if p.vkey != vkey {
            return Err(LineError::Conflict(format!(
                "peer {name} is already pinned to another key; its records would no longer verify"
            )));
        }
    }
    let mut events = vec![own(
        state,
        Record::PeerAdded {
            name: name.into(),
            url: url.into(),
            vkey: vkey.into(),
        },
        None,
    )];
    if state.peer(name).is_none() {
        // The new peer learns this party's members (to verify their
        // acknowledgements and direct-line messages).
        let mut mine: Vec<_> = state
            .members()
            .filter(|m| m.party == state.me() && m.removed_at.is_none())
            .collect();
        mine.sort_by_key(|m| m.member.key);
        let last = state
            .out_lane(name, Precedence::Flash)
            .map(|l| l.last_seq)
            .unwrap_or(0);
        for (seq, m) in (last + 1..).zip(mine) {
            events.push(LineEvent::Own(LineEntry {
                record: Record::MemberRegistered(m.member.clone()),
                envelope: Some(Envelope {
                    to: name.into(),
                    lane: Precedence::Flash,
                    seq,
                    after: vec![],
                }),
            }));
        }
    }
    // Every peer, the new one included, learns whom this party now pins.
    let mut after: Vec<(String, String)> = state
        .peers()
        .filter(|p| p.name != name)
        .map(|p| (p.name.clone(), p.vkey.clone()))
        .collect();
    after.push((name.into(), vkey.into()));
    after.sort();
    let new_peer_seq = (state.peer(name).is_none()).then(|| {
        state
            .out_lane(name, Precedence::Flash)
            .map(|l| l.last_seq)
            .unwrap_or(0)
            + events.len() as u64
    });
    events.extend(announce(
        state,
        &after,
        now,
        new_peer_seq.map(|s| (name, s)),
    ));
    Ok(LineDecision::commit(events))
}

/// This party's peers (name and pinned key, by name) announced to each of
/// them on FLASH, so every party can show who is peered with whom and with
/// which keys. `fresh`: a peer pinned in this same decision, with the
/// sequence number its announcement takes (its lane's state is not there
/// yet).
fn announce(
    state: &LineState,
    peers: &[(String, String)],
    now: Millis,
    fresh: Option<(&str, u64)>,
) -> Vec<LineEvent> {
    peers
        .iter()
        .map(|(to, _)| {
            let record = Record::PeersAnnounced {
                by: state.me().into(),
                peers: peers.to_vec(),
                at_ms: now,
            };
            match fresh {
                Some((n, seq)) if n == to => LineEvent::Own(LineEntry {
                    record,
                    envelope: Some(Envelope {
                        to: to.clone(),
                        lane: Precedence::Flash,
                        seq,
                        after: vec![],
                    }),
                }),
                _ => own(state, record, Some((to, Precedence::Flash))),
            }
        })
        .collect()
}

/// Polygons of a deconfliction area: each of 3 to 10,000 (lat, lng)
/// vertices within range.
fn check_polygons(polygons: &[Vec<(f64, f64)>]) -> Result<(), LineError> {
    if polygons.len() > 1_000 {
        return Err(LineError::invalid("polygons", "at most 1,000 polygons"));
    }
    for (i, p) in polygons.iter().enumerate() {
        if p.len() < 3 || p.len() > 10_000 {
            return Err(LineError::invalid(
                format!("polygons[{i}]"),
                "a polygon has 3 to 10,000 vertices",
            ));
        }
        if let Some(j) = p.iter().position(|(lat, lng)| {
            !(lat.is_finite() && lng.is_finite() && lat.abs() <= 90.0 && lng.abs() <= 180.0)
        }) {
            return Err(LineError::invalid(
                format!("polygons[{i}][{j}]"),
                "latitude within ±90, longitude within ±180",
            ));
        }
    }
    Ok(())
}

/// Proposes to `peer` the deconfliction area the two share: polygons of at
/// least three (lat, lng) vertices, sent on the FLASH lane. The area binds
/// once the peer's latest proposal holds the same polygons; an empty list
/// withdraws this party from the area agreed.
pub fn set_area(
    state: &LineState,
    peer: &str,
    polygons: Vec<Vec<(f64, f64)>>,
    now: Millis,
) -> Result<LineDecision, LineError> {
    known_peer(state, peer)?;
    check_polygons(&polygons)?;
    Ok(LineDecision::commit(vec![own(
        state,
        Record::AreaProposed {
            by: state.me().into(),
            peer: peer.into(),
            polygons,
            at_ms: now,
        },
        Some((peer, Precedence::Flash)),
    )]))
}

/// Proposes to `peer` the line of contact between the two (on the FLASH
/// lane): it binds once the peer's latest proposal holds the same terms;
/// an empty line withdraws this party from the line agreed.
pub fn propose_contact(
    state: &LineState,
    peer: &str,
    terms: ContactTerms,
    now: Millis,
) -> Result<LineDecision, LineError> {
    known_peer(state, peer)?;
    terms
        .check()
        .map_err(|(field, message)| LineError::invalid(field, message))?;
    Ok(LineDecision::commit(vec![own(
        state,
        Record::ContactProposed {
            by: state.me().into(),
            peer: peer.into(),
            terms,
            at_ms: now,
        },
        Some((peer, Precedence::Flash)),
    )]))
}

/// Proposes exactly what `peer` last proposed: the line of contact
/// (`contact`) or the deconfliction area, so that it is agreed.
pub fn accept_proposal(
    state: &LineState,
    peer: &str,
    contact: bool,
    now: Millis,
) -> Result<LineDecision, LineError> {
    known_peer(state, peer)?;
    let nothing = || LineError::NotFound {
        kind: if contact {
            "line-of-contact proposal"
        } else {
            "deconfliction area proposal"
        },
        id: peer.to_string(),
    };
    if contact {
        let theirs = state
            .contact_line(peer)
            .and_then(|a| a.theirs.as_ref())
            .filter(|p| !p.terms.line.is_empty())
            .ok_or_else(nothing)?;
        propose_contact(state, peer, theirs.terms.clone(), now)
    } else {
        let theirs = state
            .area_state(peer)
            .and_then(|a| a.theirs.as_ref())
            .filter(|p| !p.terms.is_empty())
            .ok_or_else(nothing)?;
        set_area(state, peer, theirs.terms.clone(), now)
    }
}

/// This party sets the acknowledgement deadlines of a channel with `peer`
/// (one per precedence, FLASH first), for messages created from
/// `effective` on; both parties then compute the same deadlines.
pub fn set_deadlines(
    state: &LineState,
    peer: &str,
    sphere: Sphere,
    deadlines_ms: Vec<u64>,
    effective: Millis,
    now: Millis,
) -> Result<LineDecision, LineError> {
    known_peer(state, peer)?;
    if deadlines_ms.len() != Precedence::ALL.len() {
        return Err(LineError::invalid(
            "deadlines",
            "one deadline per precedence: FLASH, IMMEDIATE, PRIORITY, ROUTINE",
        ));
    }
    if let Some(i) = deadlines_ms
        .iter()
        .position(|d| !(DEADLINE_MIN_MS..=DEADLINE_MAX_MS).contains(d))
    {
        return Err(LineError::invalid(
            format!("deadlines[{i}]"),
            "between one minute and seven days",
        ));
    }
    if effective < now {
        return Err(LineError::invalid("effective", "now or later"));
    }
    Ok(LineDecision::commit(vec![own(
        state,
        Record::ChannelDeadlines {
            by: state.me().into(),
            peer: peer.into(),
            sphere,
            deadlines_ms,
            effective_ms: effective,
        },
        Some((peer, Precedence::Flash)),
    )]))
}

/// Unpins `name` (local): refused while the direct line with it is open,
/// for the direct line closes only by mutual consent — both parties'
/// closure notices in effect. Its records already kept stay evidence;
/// records for it not yet delivered stay in its lanes (they go if it is
/// pinned again).
pub fn remove_peer(
    state: &LineState,
    name: &str,
    reason: &str,
    now: Millis,
) -> Result<LineDecision, LineError> {
    if state.peer(name).is_none() {
        return Err(LineError::UnknownPeer(name.to_string()));
    }
    non_empty("reason", reason)?;
    let (line, _) = state.channel_state(name, Sphere::DirectLine, now);
    if line != ChannelState::Closed {
        return Err(LineError::ChannelNotOpen {
            peer: name.to_string(),
            sphere: Sphere::DirectLine,
            state: line,
            detail: ": a peer is removed only once both parties have closed the direct line (it closes only by mutual consent)".into(),
        });
    }
    let mut events = vec![own(
        state,
        Record::PeerRemoved {
            name: name.to_string(),
            reason: reason.to_string(),
            at_ms: now,
        },
        None,
    )];
    let after: Vec<(String, String)> = state
        .peers()
        .filter(|p| p.name != name)
        .map(|p| (p.name.clone(), p.vkey.clone()))
        .collect();
    events.extend(announce(state, &after, now, None));
    Ok(LineDecision::commit(events))
}

/// Hands this node's key over from `old` (the key its entries are signed
/// with now) to `new`: one `line.key.rotated` signed by the old key to
/// every peer on FLASH, saying per lane what the old key signed and what
/// its receipts covered (one kept locally without peers). Handing over to
/// the key already in force changes nothing.
pub fn rotate_key(
    state: &LineState,
    old: &str,
    new: &str,
    now: Millis,
) -> Result<LineDecision, LineError> {
    if state.own_key() == Some(new) {
        return Ok(LineDecision::nothing(LineOutcome::AlreadyDone));
    }
    let parsed =
        tlog::Verifier::parse(new).map_err(|e| LineError::invalid("new", e.to_string()))?;
    if parsed.name != state.me() || parsed.kind != tlog::note::TYPE_ED25519 {
        return Err(LineError::invalid(
            "new",
            format!("the next key must be an Ed25519 key named {}", state.me()),
        ));
    }
    if old == new {
        return Err(LineError::invalid(
            "new",
            "the next key is the key in force",
        ));
    }
    let record = |peer: Option<&str>| {
        let seqs = |f: &dyn Fn(Precedence) -> u64| {
            let mut out = [0u64; 4];
            for (o, lane) in out.iter_mut().zip(Precedence::ALL) {
                *o = f(*lane);
            }
            out
        };
        let (sent, received) = match peer {
            None => ([0; 4], [0; 4]),
            Some(p) => (
                seqs(&|lane| {
                    state.out_lane(p, lane).map(|l| l.last_seq).unwrap_or(0)
                        + u64::from(lane == Precedence::Flash)
                }),
                seqs(&|lane| state.in_lane(p, lane).map(|l| l.received).unwrap_or(0)),
            ),
        };
        Record::KeyRotated {
            by: state.me().into(),
            old: old.into(),
            new: new.into(),
            sent,
            received,
            at_ms: now,
        }
    };
    let peers: Vec<String> = state.peers().map(|p| p.name.clone()).collect();
    let events = if peers.is_empty() {
        vec![own(state, record(None), None)]
    } else {
        peers
            .iter()
            .map(|p| own(state, record(Some(p)), Some((p, Precedence::Flash))))
            .collect()
    };
    Ok(LineDecision::commit(events))
}

/// Designates a constraint as the line of contact (local).
pub fn designate_contact(state: &LineState, constraint: Uuid) -> Result<LineDecision, LineError> {
    if state.contact_constraints().any(|c| *c == constraint) {
        return Ok(LineDecision::nothing(LineOutcome::AlreadyDone));
    }
    Ok(LineDecision::commit(vec![own(
        state,
        Record::ContactDesignated { constraint },
        None,
    )]))
}

/// Records who saw what (local). A seen marker is kept once per member and
/// message (the first display); its signature, when given, must be the
/// member's over [`seen_text`].
pub fn record_access(state: &LineState, a: Access) -> Result<LineDecision, LineError> {
    if !ACCESS_KINDS.contains(&a.what.as_str()) {
        return Err(LineError::invalid("what", ACCESS_KINDS.join(", ")));
    }
    if let Some(s) = &a.subject {
        short("subject", s)?;
    }
    match state.member(&a.member) {
        Some(m) if m.party == state.me() => {}
        _ => {
            return Err(LineError::UnknownMember {
                member: a.member.to_hex(),
                detail: String::new(),
            });
        }
    }
    if a.what == "message.seen" {
        let Some(id) = a.subject.as_deref().and_then(|s| Uuid::parse_str(s).ok()) else {
            return Err(LineError::invalid("message", "a message id"));
        };
        if !state.knows_message(&id) {
            return Err(LineError::NotFound {
                kind: "message",
                id: id.to_string(),
            });
        }
        if state.seen(&id).iter().any(|(k, _)| *k == a.member) {
            return Ok(LineDecision::nothing(LineOutcome::AlreadyDone));
        }
        if let Some((text, sig)) = &a.signed
            && (*text != seen_text(state.me(), &id, a.at_ms)
                || !a.member.verify_text(text.as_bytes(), sig))
        {
            return Err(LineError::BadSignature {
                field: "signature".into(),
            });
        }
    }
    if let Some((text, _)) = &a.signed {
        short("signed_text", text)?;
    }
    Ok(LineDecision::commit(vec![own(
        state,
        Record::Access(a),
        None,
    )]))
}

/// Publishes a statement of this party (local: public through the feed,
/// whatever the state of any channel).
pub fn publish_statement(state: &LineState, st: Statement) -> Result<LineDecision, LineError> {
    if st.text.trim().is_empty() {
        return Err(LineError::invalid("text", "must not be empty"));
    }
    if st.text.len() > MAX_STATEMENT_BYTES {
        return Err(LineError::invalid(
            "text",
            format!("at most {MAX_STATEMENT_BYTES} bytes"),
        ));
    }
    let tag_ok = !st.language.is_empty()
        && st.language.len() <= 35
        && st
            .language
            .split('-')
            .all(|p| !p.is_empty() && p.len() <= 8 && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if !tag_ok {
        return Err(LineError::invalid(
            "language",
            "a BCP 47 tag such as en, ru or fr-BE",
        ));
    }
    if st.answers.len() > MAX_ANSWERS {
        return Err(LineError::invalid(
            "answers",
            format!("at most {MAX_ANSWERS}"),
        ));
    }
    for (i, r) in st.answers.iter().enumerate() {
        short(&format!("answers[{i}].origin"), &r.origin)?;
    }
    if state.statements().any(|(_, s)| s.id == st.id) {
        return Ok(LineDecision::nothing(LineOutcome::AlreadyDone));
    }
    Ok(LineDecision::commit(vec![own(
        state,
        Record::Statement(st),
        None,
    )]))
}

/// Keeps this node's notification of a local subscriber about a peer's
/// copy (local): what it sent and how it was answered.
pub fn uss_notified(state: &LineState, n: UssNotification) -> Result<LineDecision, LineError> {
    short("subscriber", &n.subscriber)?;
    if !NOTIFIED_KINDS.contains(&n.entity_kind.as_str()) {
        return Err(LineError::invalid(
            "kind",
            "operational_intent or constraint",
        ));
    }
    let mut n = n;
    if let Some(e) = &mut n.error
        && e.len() > MAX_NAME_BYTES
    {
        let mut end = MAX_NAME_BYTES;
        while !e.is_char_boundary(end) {
            end -= 1;
        }
        e.truncate(end);
    }
    Ok(LineDecision::commit(vec![own(
        state,
        Record::UssNotified(n),
        None,
    )]))
}

/// Shares one of this party's airspace changes with `peer` (IMMEDIATE
/// lane); the caller decided that it concerns the peer's area.
pub fn share_airspace(state: &LineState, peer: &str, kind: &str, body: Value) -> LineEvent {
    own(
        state,
        Record::Airspace {
            kind: kind.into(),
            body,
        },
        Some((peer, Precedence::Immediate)),
    )
}

/// The airspace entry kinds a peer may share.
pub const SHARED_KINDS: [&str; 4] = [
    "operational_intent.upserted",
    "operational_intent.removed",
    "constraint.upserted",
    "constraint.removed",
];

/// One entry of `record` to each peer (FLASH lane), or one local entry when
/// there is no peer yet.
fn to_every_peer(state: &LineState, record: Record) -> Vec<LineEvent> {
    let peers: Vec<&str> = state.peers().map(|p| p.name.as_str()).collect();
    if peers.is_empty() {
        return vec![own(state, record, None)];
    }
    peers
        .into_iter()
        .map(|p| own(state, record.clone(), Some((p, Precedence::Flash))))
        .collect()
}

/// Registers one of this party's members.
pub fn register_member(state: &LineState, m: Member) -> Result<LineDecision, LineError> {
    non_empty("name", &m.name)?;
    non_empty("role", &m.role)?;
    if m.spheres.is_empty() {
        return Err(LineError::invalid(
            "spheres",
            format!("at least one of {}", Sphere::expected()),
        ));
    }
    if let Some(e) = state.member(&m.key) {
        if e.party != state.me() {
            return Err(LineError::Conflict(format!(
                "key {} belongs to a member of {}",
                m.key, e.party
            )));
        }
        if e.removed_at.is_some() {
            return Err(LineError::Conflict(format!(
                "member {} was removed; register a new key",
                m.key
            )));
        }
        if e.member == m {
            return Ok(LineDecision::nothing(LineOutcome::AlreadyDone));
        }
    }
    Ok(LineDecision::commit(to_every_peer(
        state,
        Record::MemberRegistered(m),
    )))
}

pub fn remove_member(
    state: &LineState,
    key: MemberKey,
    now: Millis,
) -> Result<LineDecision, LineError> {
    match state.member(&key) {
        Some(e) if e.party == state.me() => {
            if e.removed_at.is_some() {
                return Ok(LineDecision::nothing(LineOutcome::AlreadyDone));
            }
            Ok(LineDecision::commit(to_every_peer(
                state,
                Record::MemberRemoved { key, at_ms: now },
            )))
        }
        _ => Err(LineError::NotFound {
            kind: "member",
            id: key.to_hex(),
        }),
    }
}

/// Replaces the key of a member of this party by `new` (the same person:
/// name, role and spheres as given): the old key is removed and the new
/// one registered, in one record sent to every peer.
pub fn replace_member(
    state: &LineState,
    old: MemberKey,
    new: Member,
    now: Millis,
) -> Result<LineDecision, LineError> {
    match state.member(&old) {
        Some(e) if e.party == state.me() => {
            if let Some(at) = e.removed_at {
                return Err(LineError::Conflict(format!(
                    "member {old} was removed at {}; register the new key",
                    rfc3339(at)
                )));
            }
        }
        _ => {
            return Err(LineError::NotFound {
                kind: "member",
                id: old.to_hex(),
            });
        }
    }
    if state.member(&new.key).is_some() {
        return Err(LineError::invalid(
            "key",
            format!("{} is already a registered key", new.key),
        ));
    }
    non_empty("name", &new.name)?;
    non_empty("role", &new.role)?;
    if new.spheres.is_empty() {
        return Err(LineError::invalid(
            "spheres",
            format!("at least one of {}", Sphere::expected()),
        ));
    }
    Ok(LineDecision::commit(to_every_peer(
        state,
        Record::MemberReplaced {
            old,
            new,
            at_ms: now,
        },
    )))
}

/// Declares the key of a member of this party compromised from `from_ms`
/// (now or earlier): nothing it signs is taken any more, and what it signed
/// from `from_ms` on is suspect. Sent to every peer.
pub fn declare_compromised(
    state: &LineState,
    key: MemberKey,
    from_ms: Millis,
    reason: &str,
    now: Millis,
) -> Result<LineDecision, LineError> {
    match state.member(&key) {
        Some(e) if e.party == state.me() => {
            if e.compromised.as_ref().is_some_and(|(f, _)| *f <= from_ms) {
                return Ok(LineDecision::nothing(LineOutcome::AlreadyDone));
            }
        }
        _ => {
            return Err(LineError::NotFound {
                kind: "member",
                id: key.to_hex(),
            });
        }
    }
    non_empty("reason", reason)?;
    if from_ms > now {
        return Err(LineError::invalid(
            "from",
            "now or earlier: a key is declared compromised once it is (remove a member at a later time with `member remove`)",
        ));
    }
    Ok(LineDecision::commit(to_every_peer(
        state,
        Record::MemberCompromised {
            key,
            from_ms,
            reason: reason.into(),
            at_ms: now,
        },
    )))
}

/// The host (this node) sets the positions quota of `guest`'s mission.
/// Lowering it below the active accreditations must name those that end.
pub fn set_quota(
    state: &LineState,
    guest: &str,
    quota: u32,
    ending: Vec<Uuid>,
    now: Millis,
) -> Result<LineDecision, LineError> {
    known_peer(state, guest)?;
    let active = state.active_accreditations(state.me(), guest, now);
    for (i, id) in ending.iter().enumerate() {
        if !active.iter().any(|a| a.accreditation.id == *id) {
            return Err(LineError::invalid(
                format!("ending[{i}]"),
                format!("{id} is not an active accreditation of {guest}'s mission"),
            ));
        }
    }
    let remaining = active.len().saturating_sub(ending.len());
    if remaining > quota as usize {
        return Err(LineError::invalid(
            "ending",
            format!(
                "{} accreditations are active; name {} of them to end with a quota of {quota}",
                active.len(),
                remaining - quota as usize
            ),
        ));
    }
    Ok(LineDecision::commit(vec![own(
        state,
        Record::QuotaSet {
            guest: guest.into(),
            quota,
            ending,
            at_ms: now,
        },
        Some((guest, Precedence::Flash)),
    )]))
}

/// What a host gives when accrediting a guest's member.
#[derive(Clone, Debug)]
pub struct Accredit {
    pub id: Uuid,
    pub guest: String,
    pub member: MemberKey,
    pub name: String,
    pub role: String,
    pub spheres: Vec<Sphere>,
    pub valid_from: Millis,
    pub valid_until: Millis,
}

pub fn accredit(state: &LineState, a: Accredit, now: Millis) -> Result<LineDecision, LineError> {
    known_peer(state, &a.guest)?;
    non_empty("name", &a.name)?;
    non_empty("role", &a.role)?;
    if a.spheres.is_empty() || a.spheres.contains(&Sphere::DirectLine) {
        return Err(LineError::invalid(
            "spheres",
            "one or more of diplomatic, information, military (the direct line needs no accreditation)",
        ));
    }
    if a.valid_until <= a.valid_from || a.valid_until <= now {
        return Err(LineError::invalid(
            "valid_until",
            "must be after valid_from and in the future",
        ));
    }
    let me = state.me().to_string();
    if let Some(m) = state.mission(&me, &a.guest)
        && let Some((at, _)) = &m.closed
    {
        return Err(LineError::Conflict(format!(
            "the mission of {} is closed (effective {})",
            a.guest,
            rfc3339(*at)
        )));
    }
    if state.member(&a.member).is_some_and(|m| m.party != a.guest) {
        return Err(LineError::invalid(
            "member",
            format!("this key is registered by another party than {}", a.guest),
        ));
    }
    let active = state.active_accreditations(&me, &a.guest, now);
    if active.iter().any(|x| x.accreditation.member == a.member) {
        return Err(LineError::Conflict(format!(
            "member {} is already accredited to this mission",
            a.member
        )));
    }
    let quota = state.mission(&me, &a.guest).map(|m| m.quota).unwrap_or(0);
    if active.len() >= quota as usize {
        return Err(LineError::QuotaExceeded {
            guest: a.guest,
            quota,
        });
    }
    if state.accreditation(&a.id).is_some() {
        return Err(LineError::Conflict(format!(
            "accreditation {} exists",
            a.id
        )));
    }
    let guest = a.guest.clone();
    Ok(LineDecision::commit(vec![own(
        state,
        Record::Accredited(Accreditation {
            id: a.id,
            host: me,
            guest: a.guest,
            member: a.member,
            name: a.name,
            role: a.role,
            spheres: a.spheres,
            valid_from: a.valid_from,
            valid_until: a.valid_until,
        }),
        Some((&guest, Precedence::Flash)),
    )]))
}

/// The host revokes an accreditation ("expulsion"); it takes effect at once.
pub fn revoke(
    state: &LineState,
    id: Uuid,
    reason: &str,
    effective: Millis,
    now: Millis,
) -> Result<LineDecision, LineError> {
    non_empty("reason", reason)?;
    if effective < now {
        return Err(LineError::invalid(
            "effective_ms",
            "now or later: a revocation cannot take effect in the past",
        ));
    }
    let a = state
        .accreditation(&id)
        .filter(|a| a.accreditation.host == state.me())
        .ok_or_else(|| LineError::NotFound {
            kind: "accreditation",
            id: id.to_string(),
        })?;
    // Notice may be shortened, never lengthened: a revocation already
    // effective by then stands.
    if a.revoked.as_ref().is_some_and(|(at, _)| *at <= effective) {
        return Ok(LineDecision::nothing(LineOutcome::AlreadyDone));
    }
    let guest = a.accreditation.guest.clone();
    Ok(LineDecision::commit(vec![own(
        state,
        Record::Revoked {
            id,
            reason: reason.into(),
            at_ms: effective,
        },
        Some((&guest, Precedence::Flash)),
    )]))
}

/// The host closes `guest`'s mission at `effective` (now or later): every
/// accreditation of it ends then. The direct line is not affected.
pub fn close_mission(
    state: &LineState,
    guest: &str,
    effective: Millis,
    reason: &str,
    now: Millis,
) -> Result<LineDecision, LineError> {
    known_peer(state, guest)?;
    non_empty("reason", reason)?;
    if effective < now {
        return Err(LineError::invalid(
            "effective",
            "a closure takes effect now or later",
        ));
    }
    if let Some(m) = state.mission(state.me(), guest)
        && m.closed.is_some()
    {
        return Ok(LineDecision::nothing(LineOutcome::AlreadyDone));
    }
    Ok(LineDecision::commit(vec![own(
        state,
        Record::MissionClosed {
            guest: guest.into(),
            effective_ms: effective,
            reason: reason.into(),
        },
        Some((guest, Precedence::Flash)),
    )]))
}

/// This party's notice on a channel with `peer`.
pub fn channel_notice(
    state: &LineState,
    peer: &str,
    sphere: Sphere,
    to: ChannelState,
    effective: Millis,
    reason: &str,
    now: Millis,
) -> Result<LineDecision, LineError> {
    known_peer(state, peer)?;
    short("reason", reason)?;
    if sphere == Sphere::DirectLine && to == ChannelState::Suspended {
        return Err(LineError::invalid(
            "state",
            "the direct line is never suspended; it closes only when both parties sign its closure",
        ));
    }
    if effective < now {
        return Err(LineError::invalid(
            "effective",
            "a notice takes effect now or later",
        ));
    }
    Ok(LineDecision::commit(vec![own(
        state,
        Record::Channel(ChannelNotice {
            by: state.me().into(),
            peer: peer.into(),
            sphere,
            state: to,
            effective_ms: effective,
            reason: reason.into(),
        }),
        Some((peer, Precedence::Flash)),
    )]))
}

fn check_body(m: &Message) -> Result<(), LineError> {
    if m.body.text().len() > MAX_TEXT_BYTES {
        return Err(LineError::invalid(
            "body.text",
            format!("at most {MAX_TEXT_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn open_channel(
    state: &LineState,
    peer: &str,
    sphere: Sphere,
    now: Millis,
) -> Result<(), LineError> {
    let (s, notice) = state.channel_state(peer, sphere, now);
    if s == ChannelState::Open {
        return Ok(());
    }
    Err(LineError::ChannelNotOpen {
        peer: peer.into(),
        sphere,
        state: s,
        detail: notice
            .map(|n| {
                format!(
                    " since {} by {} ({})",
                    rfc3339(n.effective_ms),
                    n.by,
                    n.reason
                )
            })
            .unwrap_or_default(),
    })
}

/// Whose job checking signatures is: the decision's, or its caller's —
/// the node checks them in parallel before its serialised writer, against
/// the same pinned keys (which never change once pinned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signatures {
    Check,
    Checked,
}

/// A member of this party sends a signed message to a peer.
pub fn send_message(
    state: &LineState,
    m: Signed<Message>,
    now: Millis,
) -> Result<LineDecision, LineError> {
    send_message_as(state, m, now, Signatures::Check)
}

/// [`send_message`], the member's signature already checked or not.
pub fn send_message_as(
    state: &LineState,
    m: Signed<Message>,
    now: Millis,
    sigs: Signatures,
) -> Result<LineDecision, LineError> {
    if sigs == Signatures::Check && !m.verify() {
        return Err(LineError::BadSignature {
            field: "signature".into(),
        });
    }
    let msg = &m.value;
    if let Some(existing) = state.held(&msg.id) {
        let same = match existing {
            Held::Whole(e) => e.signed == m,
            Held::Settled(s) => s.outgoing && s.message_sig[..] == m.signature[..8],
        };
        if same {
            return Ok(LineDecision::nothing(LineOutcome::AlreadyDone));
        }
        return Err(LineError::Conflict(format!(
            "message id {} was already used for another message",
            msg.id
        )));
    }
    if msg.from != state.me() {
        return Err(LineError::invalid(
            "from",
            format!("this node sends for {}", state.me()),
        ));
    }
    known_peer(state, &msg.to).map_err(|_| {
        LineError::invalid("to", format!("{:?} is not a peer of this node", msg.to))
    })?;
    check_body(msg)?;
    if let Some(g) = &msg.group {
        g.check(&msg.from, &msg.to)
            .map_err(|e| LineError::invalid("group", e))?;
        if let Some(p) = g.to.iter().find(|p| state.peer(p).is_none()) {
            return Err(LineError::invalid(
                "group.to",
                format!("{p:?} is not a peer of this node"),
            ));
        }
    }
    let member = state
        .member(&msg.sender)
        .filter(|e| e.party == state.me())
        .ok_or_else(|| LineError::UnknownMember {
            member: msg.sender.to_hex(),
            detail: String::new(),
        })?;
    if let Some(at) = member.removed_at {
        return Err(LineError::UnknownMember {
            member: msg.sender.to_hex(),
            detail: match &member.compromised {
                Some((from, reason)) => format!(
                    " (its key was declared compromised from {}: {reason})",
                    rfc3339(*from)
                ),
                None => format!(" (removed at {})", rfc3339(at)),
            },
        });
    }
    if !member.member.spheres.contains(&msg.sphere) {
        return Err(LineError::invalid(
            "sphere",
            format!(
                "{} may not use the {} channel",
                member.member.name, msg.sphere
            ),
        ));
    }
    let expected = state.sender_seq(&msg.sender) + 1;
    if msg.seq != expected {
        return Err(LineError::OutOfSequence {
            field: "seq".into(),
            expected,
            got: msg.seq,
        });
    }
    open_channel(state, &msg.to, msg.sphere, now)?;
    if msg.sphere.is_mission() {
        // As this node knows the host's accreditations, allowing for this
        // node's clock being behind the host's; the host checks again.
        state
            .accredited(
                &msg.to,
                state.me(),
                &msg.sender,
                msg.sphere,
                now,
                CLOCK_SKEW_MS,
            )
            .map_err(|reason| LineError::NotAccredited {
                member: format!("{} ({}…)", member.member.name, &msg.sender.to_hex()[..8]),
                reason,
            })?;
    }
    let to = msg.to.clone();
    let lane = msg.precedence;
    Ok(LineDecision::commit(vec![own(
        state,
        Record::Message(m),
        Some((&to, lane)),
    )]))
}

/// A member of this party acknowledges a message it received.
pub fn acknowledge(
    state: &LineState,
    a: Signed<Ack>,
    _now: Millis,
) -> Result<LineDecision, LineError> {
    if !a.verify() {
        return Err(LineError::BadSignature {
            field: "signature".into(),
        });
    }
    let ack = &a.value;
    let held = state
        .held(&ack.message)
        .filter(|m| !m.outgoing())
        .ok_or_else(|| LineError::NotFound {
            kind: "received message",
            id: ack.message.to_string(),
        })?;
    let m = match held {
        Held::Whole(m) => m,
        // Settled: acknowledged already.
        Held::Settled(s) if s.ack_sig[..] == a.signature[..8] => {
            return Ok(LineDecision::nothing(LineOutcome::AlreadyDone));
        }
        Held::Settled(_) => {
            return Err(LineError::Conflict(format!(
                "message {} is already acknowledged",
                ack.message
            )));
        }
    };
    if let Delivery::Refused { reason } = &m.delivery {
        return Err(LineError::Conflict(format!(
            "message {} was refused ({reason}); there is nothing to acknowledge",
            ack.message
        )));
    }
    if let Some(existing) = &m.ack {
        if **existing == a {
            return Ok(LineDecision::nothing(LineOutcome::AlreadyDone));
        }
        return Err(LineError::Conflict(format!(
            "message {} is already acknowledged",
            ack.message
        )));
    }
    if ack.from != state.me() || ack.to != m.signed.value.from {
        return Err(LineError::invalid(
            "to",
            format!(
                "an acknowledgement goes from {} to {}",
                state.me(),
                m.signed.value.from
            ),
        ));
    }
    short("text", &ack.text)?;
    match state.member(&ack.by) {
        Some(e) if e.party == state.me() && e.removed_at.is_none() => {}
        _ => {
            return Err(LineError::UnknownMember {
                member: ack.by.to_hex(),
                detail: String::new(),
            });
        }
    }
    let to = ack.to.clone();
    let lane = m.signed.value.precedence;
    Ok(LineDecision::commit(vec![own(
        state,
        Record::Ack(a),
        Some((&to, lane)),
    )]))
}

/// Why this node, as receiver, does not accept a peer's record (it is
/// still kept as evidence and receipted).
fn refusal(
    state: &LineState,
    origin: &str,
    record: &Record,
    now: Millis,
    sigs: Signatures,
) -> Option<String> {
    let me = state.me();
    match record {
        Record::PeerAdded { .. }
        | Record::PeerRemoved { .. }
        | Record::PeerArea { .. }
        | Record::ContactDesignated { .. }
        | Record::UssNotified(_)
        | Record::Statement(_)
        | Record::Access(_)
        | Record::Receipt(_) => Some("not a record a peer sends on a lane".into()),
        Record::Airspace { kind, body } => {
            if !SHARED_KINDS.contains(&kind.as_str()) {
                Some(format!("{kind} is not an airspace change a peer shares"))
            } else if crate::state::airspace_id(body).is_none() {
                Some("the shared change names no entity".into())
            } else {
                None
            }
        }
        Record::MemberRegistered(m) => state.member(&m.key).and_then(|e| {
            if e.party != origin {
                Some(format!("key {} belongs to a member of {}", m.key, e.party))
            } else {
                e.compromised.as_ref().map(|(from, _)| {
                    format!(
                        "key {} was declared compromised from {}",
                        m.key,
                        rfc3339(*from)
                    )
                })
            }
        }),
        Record::MemberReplaced { old, new, .. } => {
            match (state.member(old), state.member(&new.key)) {
                (Some(e), _) if e.party != origin => {
                    Some(format!("{old} is not a member of {origin}"))
                }
                (None, _) => Some(format!("{old} is not a member of {origin}")),
                (_, Some(n)) => Some(format!(
                    "key {} is already registered by {}",
                    new.key, n.party
                )),
                _ => None,
            }
        }
        Record::MemberCompromised { key, .. } => match state.member(key) {
            Some(e) if e.party == origin => None,
            _ => Some(format!("{key} is not a member of {origin}")),
        },
        Record::MemberRemoved { key, .. } => match state.member(key) {
            Some(e) if e.party == origin => None,
            _ => Some(format!("{key} is not a member of {origin}")),
        },
        Record::QuotaSet { guest, .. } | Record::MissionClosed { guest, .. } => {
            (guest != me).then(|| format!("the mission concerned is {guest}'s, not {me}'s"))
        }
        Record::Accredited(a) => (a.host != origin || a.guest != me)
            .then(|| "an accreditation comes from its host for this party".to_string()),
        Record::Revoked { id, .. } => match state.accreditation(id) {
            Some(a) if a.accreditation.host == origin => None,
            _ => Some(format!("{id} is not an accreditation by {origin}")),
        },
        Record::Channel(n) => (n.by != origin || n.peer != me)
            .then(|| "a channel notice comes from one party of the channel".to_string()),
        Record::ChannelDeadlines { by, peer, .. } => (by != origin || peer != me)
            .then(|| "deadlines come from one party of the channel".to_string()),
        Record::ContactProposed {
            by, peer, terms, ..
        } => {
            if by != origin || peer != me {
                Some(
                    "a line of contact is proposed by one party of the pair to the other"
                        .to_string(),
                )
            } else {
                terms.check().err().map(|(f, m)| format!("{f}: {m}"))
            }
        }
        Record::KeyRotated {
            by,
            old,
            new,
            received,
            ..
        } => {
            let pinned = state.peer(origin).map(|p| p.vkey.as_str());
            if by != origin {
                Some("a party hands over its own key".to_string())
            } else if pinned != Some(old.as_str()) {
                Some(format!(
                    "the key handed over from is not the one pinned for {origin}"
                ))
            } else {
                match tlog::Verifier::parse(new) {
                    Err(e) => Some(format!("new: {e}")),
                    Ok(v) if v.name != origin || v.kind != tlog::note::TYPE_ED25519 => {
                        Some(format!("new: not an Ed25519 key named {origin}"))
                    }
                    Ok(_) if new == old => Some("new: the key in force".to_string()),
                    Ok(_) => Precedence::ALL.iter().zip(received).find_map(|(lane, n)| {
                        let sent = state
                            .out_lane(origin, *lane)
                            .map(|l| l.last_seq)
                            .unwrap_or(0);
                        (*n > sent)
                            .then(|| format!("received: {n} on {lane}, but this node sent {sent}"))
                    }),
                }
            }
        }
        Record::PeersAnnounced { by, peers, .. } => {
            if by != origin {
                Some("a party announces its own peers".to_string())
            } else if peers.len() > MAX_ANNOUNCED_PEERS {
                Some(format!("at most {MAX_ANNOUNCED_PEERS} peers"))
            } else {
                None
            }
        }
        Record::AreaProposed {
            by, peer, polygons, ..
        } => {
            if by != origin || peer != me {
                Some("an area is proposed by one party of the pair to the other".to_string())
            } else {
                check_polygons(polygons).err().map(|e| e.to_string())
            }
        }
        Record::Message(m) => {
            let msg = &m.value;
            if msg.from != origin || msg.to != me {
                return Some(format!("the message is from {} to {}", msg.from, msg.to));
            }
            if sigs == Signatures::Check && !m.verify() {
                return Some("the sender's signature does not verify".into());
            }
            if state.knows_message(&msg.id) {
                return Some(format!("message id {} was already used", msg.id));
            }
            if msg.body.text().len() > MAX_TEXT_BYTES {
                return Some(format!("the body is over {MAX_TEXT_BYTES} bytes"));
            }
            if let Some(Err(e)) = msg.group.as_ref().map(|g| g.check(&msg.from, &msg.to)) {
                return Some(format!("group: {e}"));
            }
            if let Err(e) = open_channel(state, origin, msg.sphere, now) {
                return Some(e.to_string());
            }
            if msg.sphere.is_mission() {
                if let Err(reason) = state.accredited(me, origin, &msg.sender, msg.sphere, now, 0) {
                    return Some(format!("member {} is not accredited: {reason}", msg.sender));
                }
            } else {
                match state.member(&msg.sender) {
                    Some(e) if e.party == origin && e.removed_at.is_none() => {}
                    _ => {
                        return Some(format!(
                            "{} is not a registered member of {origin}",
                            msg.sender
                        ));
                    }
                }
            }
            None
        }
        Record::Ack(a) => {
            let ack = &a.value;
            if ack.from != origin || ack.to != me {
                return Some(format!(
                    "the acknowledgement is from {} to {}",
                    ack.from, ack.to
                ));
            }
            if sigs == Signatures::Check && !a.verify() {
                return Some("the member's signature does not verify".into());
            }
            match state.held(&ack.message) {
                Some(m) if m.outgoing() && state.peer_of(m) == origin => {
                    if m.whole().is_none_or(|m| m.ack.is_some()) {
                        return Some("the message is already acknowledged".into());
                    }
                }
                _ => return Some(format!("{} is not a message sent to {origin}", ack.message)),
            }
            let registered = state
                .member(&ack.by)
                .is_some_and(|e| e.party == origin && e.removed_at.is_none());
            let accredited = Sphere::ALL.iter().any(|s| {
                s.is_mission() && state.accredited(me, origin, &ack.by, *s, now, 0).is_ok()
            });
            (!registered && !accredited).then(|| format!("{} is not a member of {origin}", ack.by))
        }
    }
}

/// A record from `from` (the peer whose request carried it): checked,
/// sequenced and, if it is the next on its lane, appended with a receipt.
pub fn receive(
    state: &LineState,
    from: &str,
    bytes: Vec<u8>,
    now: Millis,
) -> Result<LineDecision, LineError> {
    receive_as(state, from, bytes, now, Signatures::Check)
}

/// Whether every signature a peer's record carries verifies: the origin
/// node's (with the pinned key `peer`) and, in a message or an
/// acknowledgement, the member's. For checking outside the writer.
pub fn record_signatures_ok(peer: &crate::state::Peer, from: &str, bytes: &[u8]) -> bool {
    let Ok(entry) = SignedEntry::parse(bytes) else {
        return false;
    };
    if entry.entry.origin != from {
        return false;
    }
    let Ok(line) = LineEntry::from_value(&entry.entry.kind, &entry.entry.body) else {
        return false;
    };
    let key = match (&line.envelope, &line.record) {
        (Some(env), _) => peer.record_key(env.lane, env.seq),
        (None, Record::Receipt(r)) => match peer.receipt_by_previous(&r.items) {
            Some(old) if entry.verify(&peer.verifier).is_err() => old,
            _ => &peer.verifier,
        },
        (None, _) => &peer.verifier,
    };
    if entry.verify(key).is_err() {
        return false;
    }
    match line.record {
        Record::Message(m) => m.verify(),
        Record::Ack(a) => a.verify(),
        _ => true,
    }
}

/// [`receive`], the record's signatures already checked
/// ([`record_signatures_ok`]) or not.
pub fn receive_as(
    state: &LineState,
    from: &str,
    bytes: Vec<u8>,
    now: Millis,
    sigs: Signatures,
) -> Result<LineDecision, LineError> {
    let peer = state
        .peer(from)
        .ok_or_else(|| LineError::RecordRefused(format!("{from:?} is not a peer of this node")))?;
    let entry = SignedEntry::parse(&bytes).map_err(|e| LineError::Malformed {
        field: "record".into(),
        message: e.to_string(),
    })?;
    if entry.entry.origin != from {
        return Err(LineError::RecordRefused(format!(
            "the record's origin is {:?}, not the peer {from:?}",
            entry.entry.origin
        )));
    }
    // What crosses between parties is always signed (`tlog::entry`).
    if !entry.is_signed() {
        return Err(LineError::RecordRefused("the record is not signed".into()));
    }
    let line = LineEntry::from_value(&entry.entry.kind, &entry.entry.body)?;
    let Some(env) = &line.envelope else {
        return Err(LineError::RecordRefused(
            "the record has no destination".into(),
        ));
    };
    if sigs == Signatures::Check && entry.verify(peer.record_key(env.lane, env.seq)).is_err() {
        // Signed by a key this node does not hold yet: the peer's key
        // hand-over, on a higher lane, may still be on its way.
        if let Some(waiting) = waiting_for(state, from, env) {
            return Err(waiting);
        }
        return Err(LineError::RecordRefused(format!(
            "the signature is not {from}'s pinned key"
        )));
    }
    if env.to != state.me() {
        return Err(LineError::RecordRefused(format!(
            "the record is for {:?}, not {:?}",
            env.to,
            state.me()
        )));
    }
    let lane = state.in_lane(from, env.lane);
    let received = lane.map(|l| l.received).unwrap_or(0);
    if env.seq <= received {
        return match lane.and_then(|l| l.receipts.get(env.seq)) {
            Some(i) => Ok(LineDecision::nothing(LineOutcome::Duplicate {
                receipt_index: i,
            })),
            None => Err(LineError::Conflict(format!(
                "record {} of lane {} was received and is being committed with its receipt; resend",
                env.seq, env.lane
            ))),
        };
    }
    if env.seq != received + 1 {
        return Err(LineError::Gap {
            origin: from.into(),
            lane: env.lane,
            expected: received + 1,
            got: env.seq,
        });
    }
    // Causal order across lanes: what the sender had sent on higher lanes
    // before this record must be here first (a member's registration before
    // their routine message).
    if let Some(waiting) = waiting_for(state, from, env) {
        return Err(waiting);
    }
    let refused = refusal(state, from, &line.record, now, sigs).or_else(|| match &line.record {
        Record::KeyRotated { sent, .. } if env.lane != Precedence::Flash || env.seq != sent[0] => {
            Some("a key hand-over is the last FLASH record its old key signs".into())
        }
        _ => None,
    });
    let (lane, seq) = (env.lane, env.seq);
    // A peer's key accepted: every peer learns the key this party pins now.
    let repinned = match (&refused, &line.record) {
        (None, Record::KeyRotated { new, .. }) => {
            let mut pins: Vec<(String, String)> = state
                .peers()
                .map(|p| {
                    let key = if p.name == from { new } else { &p.vkey };
                    (p.name.clone(), key.clone())
                })
                .collect();
            pins.sort();
            Some(pins)
        }
        _ => None,
    };
    let mut events = vec![LineEvent::Received {
        origin: from.into(),
        lane,
        seq,
        refused,
        bytes,
        entry: Box::new(line),
    }];
    if let Some(pins) = repinned {
        events.extend(announce(state, &pins, now, None));
    }
    Ok(LineDecision {
        events,
        outcome: LineOutcome::Received { lane, seq },
    })
}

/// The wait a record of `from` is in, if what its sender had sent before
/// it on higher lanes has not all arrived.
fn waiting_for(state: &LineState, from: &str, env: &Envelope) -> Option<LineError> {
    Precedence::ALL
        .iter()
        .zip(&env.after)
        .find_map(|(lane, needed)| {
            let have = state.in_lane(from, *lane).map(|l| l.received).unwrap_or(0);
            (have < *needed).then(|| LineError::Waiting {
                origin: from.into(),
                lane: *lane,
                needed: *needed,
                have,
            })
        })
}

/// A peer's signed receipt for a run of this node's records, checked
/// against what is pending, then kept.
pub fn keep_receipt(
    state: &LineState,
    from: &str,
    bytes: Vec<u8>,
) -> Result<LineDecision, LineError> {
    keep_receipt_as(state, from, bytes, Signatures::Check)
}

/// [`keep_receipt`], its signature already checked
/// ([`record_signatures_ok`]) or not. Every record it names must be one
/// this node sent that peer, with the same bytes; it is kept if it names
/// at least one still pending (a receipt already kept, or one for records
/// another receipt covered, changes nothing).
pub fn keep_receipt_as(
    state: &LineState,
    from: &str,
    bytes: Vec<u8>,
    sigs: Signatures,
) -> Result<LineDecision, LineError> {
    let peer = known_peer(state, from)?;
    let entry = SignedEntry::parse(&bytes).map_err(|e| LineError::Malformed {
        field: "receipt".into(),
        message: e.to_string(),
    })?;
    let refused =
        || LineError::RecordRefused(format!("the receipt is not signed by {from}'s pinned key"));
    if entry.entry.origin != from || !entry.is_signed() {
        return Err(refused());
    }
    let line = LineEntry::from_value(&entry.entry.kind, &entry.entry.body)?;
    let (Record::Receipt(r), None) = (&line.record, &line.envelope) else {
        return Err(LineError::RecordRefused("not a receipt".into()));
    };
    // Receipts for what the peer received before its key hand-over may
    // carry the old key's signature.
    if sigs == Signatures::Check
        && entry.verify(&peer.verifier).is_err()
        && peer
            .receipt_by_previous(&r.items)
            .is_none_or(|old| entry.verify(old).is_err())
    {
        return Err(refused());
    }
    if r.origin != state.me() {
        return Err(LineError::RecordRefused(format!(
            "the receipt is for {}'s records",
            r.origin
        )));
    }
    let mut pending = 0;
    for item in &r.items {
        let Some(lane) = state.out_lane(from, item.lane) else {
            return Err(LineError::RecordRefused(format!(
                "no record was sent on lane {}",
                item.lane
            )));
        };
        match lane.pending.get(&item.seq) {
            Some(p) if p.leaf_hash == item.leaf_hash => pending += 1,
            Some(_) => {
                return Err(LineError::RecordRefused(format!(
                    "the receipt names different bytes than record {} of lane {} sent",
                    item.seq, item.lane
                )));
            }
            None if item.seq <= lane.delivered => {}
            None => {
                return Err(LineError::RecordRefused(format!(
                    "no record {} is pending on lane {}",
                    item.seq, item.lane
                )));
            }
        }
    }
    if pending == 0 {
        return Ok(LineDecision::nothing(LineOutcome::AlreadyDone));
    }
    Ok(LineDecision::commit(vec![LineEvent::Kept {
        bytes,
        entry: Box::new(line),
        origin: from.into(),
    }]))
}

/// The receipt entry body this node signs for a run of `origin`'s records
/// (`items`, in log order); `after` is this node's log right after the
/// last of them.
pub fn receipt_entry(origin: &str, items: Vec<ReceiptItem>, after: (u64, [u8; 32])) -> LineEntry {
    LineEntry {
        record: Record::Receipt(Receipt {
            origin: origin.into(),
            items,
            tree_size: after.0,
            root: after.1,
            form: ReceiptForm::Run,
        }),
        envelope: None,
    }
}

/// Signs this node's receipt for the run of a peer's records appended
/// since its last one (if any), appends it to the log whose frontier is
/// `tree` and applies it: the leaf. A run ends before anything else is
/// appended, at [`RECEIPT_ITEMS`] records, and at the end of every batch
/// the store commits, so that a record and its receipt are always
/// committed together and nothing else stands between them in the log.
pub fn end_received_run(
    state: &mut LineState,
    signer: &tlog::NoteSigner,
    now: Millis,
    tree: &mut tlog::tree::Frontier,
) -> Result<Option<Vec<u8>>, LineError> {
    let Some((origin, items)) = state.unreceipted() else {
        return Ok(None);
    };
    let receipt = receipt_entry(origin, items.to_vec(), (tree.size(), tree.root()));
    let leaf = sign_entry(signer, now, &receipt)?;
    let index = tree.size();
    let hash = tlog::hash::leaf_hash(&leaf);
    tree.push_hash(hash);
    state.apply(&signer.name, index, hash, receipt);
    Ok(Some(leaf))
}

fn sign_entry(
    signer: &tlog::NoteSigner,
    now: Millis,
    entry: &LineEntry,
) -> Result<Vec<u8>, LineError> {
    let e = tlog::entry::Entry {
        kind: entry.record.kind().to_string(),
        origin: signer.name.clone(),
        timestamp_ms: now,
        body: entry.to_value(),
    };
    e.sign_to_bytes(signer)
        .map_err(|e| LineError::invalid("body", e.to_string()))
}

/// Parses a log entry of the line (kind `line.*`) for [`LineState::apply`];
/// `None` for entries of other kinds.
pub fn line_entry(leaf: &[u8]) -> Option<Result<(SignedEntry, LineEntry), LineError>> {
    let e = match SignedEntry::parse(leaf) {
        Ok(e) => e,
        Err(e) => {
            return Some(Err(LineError::Malformed {
                field: "entry".into(),
                message: e.to_string(),
            }));
        }
    };
    if !e.entry.kind.starts_with("line.") {
        return None;
    }
    if !e.is_signed() {
        return Some(Err(LineError::Malformed {
            field: "entry".into(),
            message: "a line entry must be signed".into(),
        }));
    }
    Some(LineEntry::from_value(&e.entry.kind, &e.entry.body).map(|l| (e, l)))
}

/// Turns a decision's events into the leaves to append to the log whose
/// frontier is `tree` (signing this node's entries with `signer`,
/// timestamped `now`), applies them to `state` in order and advances
/// `tree`. A peer's records wait for [`end_received_run`]; anything else
/// ends the run first (its receipt is the first leaf). Nothing is applied
/// or advanced if any leaf cannot be made.
pub fn append(
    state: &mut LineState,
    signer: &tlog::NoteSigner,
    now: Millis,
    tree: &mut tlog::tree::Frontier,
    events: Vec<LineEvent>,
) -> Result<Vec<Vec<u8>>, LineError> {
    let mut own = Vec::new();
    for ev in &events {
        if let LineEvent::Own(entry) = ev {
            own.push(sign_entry(signer, now, entry)?);
        }
    }
    let mut frontier = tree.clone();
    let mut leaves: Vec<Vec<u8>> = Vec::new();
    let run_ends = state.unreceipted().is_some_and(|(from, items)| {
        let mut received = 0;
        let other = events.iter().any(|ev| match ev {
            LineEvent::Received { origin, .. } => {
                received += 1;
                origin != from
            }
            _ => true,
        });
        other || items.len() + received > RECEIPT_ITEMS
    });
    if run_ends && let Some(leaf) = end_received_run(state, signer, now, &mut frontier)? {
        leaves.push(leaf);
    }
    let mut own = own.into_iter();
    for ev in events {
        let index = frontier.size();
        match ev {
            LineEvent::Own(entry) => {
                let Some(leaf) = own.next() else {
                    return Err(LineError::invalid("", "an entry was not signed"));
                };
                let hash = tlog::hash::leaf_hash(&leaf);
                frontier.push_hash(hash);
                state.apply(&signer.name, index, hash, entry);
                leaves.push(leaf);
            }
            LineEvent::Received {
                bytes,
                entry,
                origin,
                lane,
                seq,
                refused,
            } => {
                let hash = tlog::hash::leaf_hash(&bytes);
                frontier.push_hash(hash);
                state.apply_received(&origin, index, hash, *entry, lane, seq, refused);
                leaves.push(bytes);
            }
            LineEvent::Kept {
                bytes,
                entry,
                origin,
            } => {
                let hash = tlog::hash::leaf_hash(&bytes);
                frontier.push_hash(hash);
                state.apply(&origin, index, hash, *entry);
                leaves.push(bytes);
            }
        }
    }
    *tree = frontier;
    Ok(leaves)
}

#[cfg(test)]
mod tests;
