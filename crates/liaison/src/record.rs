//! The line's records and their canonical bytes.
//!
//! Every record is the body of a log entry (`tlog::entry`) of kind
//! `line.*`, in deterministic CBOR. A record meant for a peer carries an
//! envelope — `to`, `lane` (a precedence) and `seq` (gapless per
//! destination and lane) — and its signed entry bytes are exactly what
//! crosses the wire and what the receiver appends verbatim to its own log.
//! Members sign messages and acknowledgements themselves, over
//! `"detente-message/v1\n"` / `"detente-ack/v1\n"` followed by the CBOR of
//! the message or acknowledgement map.
//!
//! Decoding is strict: a map must hold exactly the known keys, so what is
//! decoded re-encodes to the same bytes.

use crate::LineError;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use std::collections::HashMap;
use tlog::cbor::{self, Value};
use uuid::Uuid;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// Largest text body of a message, in bytes (larger content is attached by
/// hash in a structured body; entries stay ≤ 64 KiB).
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

const MESSAGE_DOMAIN: &[u8] = b"detente-message/v1\n";
const ACK_DOMAIN: &[u8] = b"detente-ack/v1\n";

/// A member's Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberKey(pub [u8; 32]);

impl std::fmt::Debug for MemberKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemberKey({})", self.to_hex())
    }
}

impl std::fmt::Display for MemberKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3339 UTC (to the second) of a time in ms, for messages to people.
pub fn rfc3339(ms: Millis) -> String {
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Lowercase or uppercase hex into bytes.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

impl MemberKey {
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// 64 hex digits of a valid Ed25519 public key.
    pub fn parse(s: &str) -> Result<MemberKey, String> {
        let bytes: [u8; 32] = from_hex(s.trim())
            .and_then(|b| b.try_into().ok())
            .ok_or("a member key is 64 hex digits (32 bytes)")?;
        verifying_key(&bytes).ok_or("not an Ed25519 public key")?;
        Ok(MemberKey(bytes))
    }

    /// Whether `signature` is this member's Ed25519 signature of `text`.
    pub fn verify_text(&self, text: &[u8], signature: &[u8; 64]) -> bool {
        verifying_key(&self.0).is_some_and(|key| {
            tlog::ed25519::verify_strict(&key, &[text], &Signature::from_bytes(signature))
        })
    }

    fn verify(&self, domain: &[u8], body: &Value, signature: &[u8; 64]) -> bool {
        let Some(key) = verifying_key(&self.0) else {
            return false;
        };
        tlog::ed25519::verify_strict(
            &key,
            &[domain, &cbor::encode(body)],
            &Signature::from_bytes(signature),
        )
    }
}

/// Most decompressed member keys kept by [`verifying_key`].
const KEY_CACHE: usize = 4096;

/// The key, decompressed once and kept: decompressing (a square root in
/// the field) is a sixth of what verifying a signature costs, and every
/// message and acknowledgement is verified on both nodes. Anyone can present
/// a key, so the memo is emptied once it holds [`KEY_CACHE`] of them.
fn verifying_key(bytes: &[u8; 32]) -> Option<VerifyingKey> {
    static KEYS: std::sync::OnceLock<std::sync::RwLock<HashMap<[u8; 32], VerifyingKey>>> =
        std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(Default::default);
    if let Some(k) = keys.read().unwrap_or_else(|e| e.into_inner()).get(bytes) {
        return Some(*k);
    }
    let key = VerifyingKey::from_bytes(bytes).ok()?;
    let mut keys = keys.write().unwrap_or_else(|e| e.into_inner());
    if keys.len() >= KEY_CACHE {
        keys.clear();
    }
    keys.insert(*bytes, key);
    Some(key)
}

/// A member's signing key, from a 32-byte seed the caller drew.
#[derive(Clone)]
pub struct MemberSigner(SigningKey);

impl std::fmt::Debug for MemberSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemberSigner({})", self.key())
    }
}

impl MemberSigner {
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        MemberSigner(SigningKey::from_bytes(seed))
    }
    pub fn key(&self) -> MemberKey {
        MemberKey(self.0.verifying_key().to_bytes())
    }
    fn sign(&self, domain: &[u8], body: &Value) -> [u8; 64] {
        let mut m = domain.to_vec();
        m.extend(cbor::encode(body));
        self.0.sign(&m).to_bytes()
    }
    pub fn sign_message(&self, m: Message) -> Signed<Message> {
        let signature = self.sign(MESSAGE_DOMAIN, &m.to_value());
        Signed {
            value: m,
            signature,
        }
    }
    /// Signs `text` as it is (a console login's challenge, a seen marker).
    pub fn sign_text(&self, text: &[u8]) -> [u8; 64] {
        self.0.sign(text).to_bytes()
    }
    pub fn sign_ack(&self, a: Ack) -> Signed<Ack> {
        let signature = self.sign(ACK_DOMAIN, &a.to_value());
        Signed {
            value: a,
            signature,
        }
    }
}

macro_rules! names {
    ($(#[$m:meta])* $t:ident { $($v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
        pub enum $t { $($v),+ }
        impl $t {
            pub const ALL: &[$t] = &[$($t::$v),+];
            pub fn as_str(self) -> &'static str {
                match self { $($t::$v => $s),+ }
            }
            pub fn parse(s: &str) -> Option<$t> {
                match s { $($s => Some($t::$v),)+ _ => None }
            }
            /// The accepted spellings, for error messages.
            pub fn expected() -> String {
                [$($s),+].join(", ")
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(
    /// The sphere of a channel between two parties.
    Sphere { Diplomatic = "diplomatic", Information = "information", Military = "military", DirectLine = "direct-line" }
);

impl Sphere {
    /// Mission channels need the sender's accreditation at the host; the
    /// direct line needs only the sender's registration by its own party.
    pub fn is_mission(self) -> bool {
        self != Sphere::DirectLine
    }
}

names!(
    /// Military precedence; declared highest first, so `Flash < Routine`
    /// in `Ord` and a sort puts the most urgent first.
    Precedence { Flash = "FLASH", Immediate = "IMMEDIATE", Priority = "PRIORITY", Routine = "ROUTINE" }
);

impl Precedence {
    /// Default acknowledgement deadline.
    pub fn ack_deadline_ms(self) -> Millis {
        match self {
            Precedence::Flash => 10 * 60_000,
            Precedence::Immediate => 30 * 60_000,
            Precedence::Priority => 3 * 3_600_000,
            Precedence::Routine => 6 * 3_600_000,
        }
    }
}

names!(
    /// The state of a channel.
    ChannelState { Open = "open", Suspended = "suspended", Closed = "closed" }
);

names!(
    /// A member's answer in an acknowledgement.
    AckVerdict { Accept = "accept", Object = "object" }
);

names!(
    /// The answer in a structured reply.
    Verdict { Accept = "accept", Counter = "counter-proposal", Refuse = "refuse" }
);

/// A member, registered by their own party.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub key: MemberKey,
    pub name: String,
    pub role: String,
    pub spheres: Vec<Sphere>,
}

/// A host's accreditation of a guest party's member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accreditation {
    pub id: Uuid,
    pub host: String,
    pub guest: String,
    pub member: MemberKey,
    pub name: String,
    pub role: String,
    pub spheres: Vec<Sphere>,
    pub valid_from: Millis,
    pub valid_until: Millis,
}

/// A message body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Text {
        text: String,
    },
    /// Tells the peer of an operation (an operational intent by id);
    /// `extents_sha256` names the exact 4D extents notified (the SHA-256 of
    /// their canonical CBOR as the log records them), when known.
    OperationNotification {
        intent: Uuid,
        extents_sha256: Option<[u8; 32]>,
        text: String,
    },
    /// Two intents conflict; proposes a change.
    DeconflictionRequest {
        intents: [Uuid; 2],
        proposal: String,
    },
    /// Answers a message (typically a deconfliction request).
    Reply {
        in_reply_to: Uuid,
        verdict: Verdict,
        text: String,
    },
}

/// A message as its sender member signs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The idempotency id.
    pub id: Uuid,
    pub from: String,
    pub to: String,
    pub sphere: Sphere,
    pub precedence: Precedence,
    pub sender: MemberKey,
    /// Gapless per sender, from 1.
    pub seq: u64,
    pub created_ms: Millis,
    pub body: Body,
    /// Set when the same message goes to several peers at once: one
    /// message per peer, each signed, receipted, acknowledged and timed on
    /// its own, all naming the group and every addressee.
    pub group: Option<Group>,
}

/// A message sent to several peers at once: the group's id (shared by the
/// messages of the group) and all its addressees, so that each addressee
/// sees who else was sent the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub id: Uuid,
    pub to: Vec<String>,
}

/// Most peers one announcement names.
pub const MAX_ANNOUNCED_PEERS: usize = 256;

/// The line of contact between two parties as they agree it: a polyline
/// of (lat, lng) points buffered each side by `buffer_m` metres on the
/// WGS-84 ellipsoid, within an altitude band and a time window. Every
/// number is part of the agreement, bit for bit.
#[derive(Clone, Debug, PartialEq)]
pub struct ContactTerms {
    pub line: Vec<(f64, f64)>,
    pub buffer_m: f64,
    pub altitude_lower_m: f64,
    pub altitude_upper_m: f64,
    pub time_start_ms: Millis,
    pub time_end_ms: Millis,
}

impl ContactTerms {
    /// A withdrawal: no line.
    pub fn withdrawal() -> Self {
        ContactTerms {
            line: vec![],
            buffer_m: 0.0,
            altitude_lower_m: 0.0,
            altitude_upper_m: 0.0,
            time_start_ms: 0,
            time_end_ms: 0,
        }
    }

    /// Why the terms are not a line of contact (a withdrawal is fine).
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.line.is_empty() {
            return Ok(());
        }
        let bad = |f: &str, m: &str| Err((f.to_string(), m.to_string()));
        if self.line.len() < 2 || self.line.len() > 10_000 {
            return bad("line", "2 to 10,000 points");
        }
        if let Some(i) = self.line.iter().position(|(lat, lng)| {
            !(lat.is_finite() && lng.is_finite() && lat.abs() <= 90.0 && lng.abs() <= 180.0)
        }) {
            return bad(
                &format!("line[{i}]"),
                "latitude within ±90, longitude within ±180",
            );
        }
        if !(self.buffer_m.is_finite() && self.buffer_m > 0.0 && self.buffer_m <= 500_000.0) {
            return bad("buffer_m", "more than 0 and at most 500,000 metres");
        }
        if !(self.altitude_lower_m.is_finite()
            && self.altitude_upper_m.is_finite()
            && self.altitude_lower_m < self.altitude_upper_m)
        {
            return bad(
                "altitude_upper_m",
                "finite altitudes, the upper above the lower",
            );
        }
        if self.time_end_ms <= self.time_start_ms {
            return bad("time_end", "after time_start");
        }
        Ok(())
    }

    fn to_value(&self) -> Value {
        map(vec![
            (
                "line",
                Value::Array(
                    self.line
                        .iter()
                        .map(|(a, b)| Value::Array(vec![Value::Float(*a), Value::Float(*b)]))
                        .collect(),
                ),
            ),
            ("buffer_m", Value::Float(self.buffer_m)),
            ("altitude_lower_m", Value::Float(self.altitude_lower_m)),
            ("altitude_upper_m", Value::Float(self.altitude_upper_m)),
            ("time_start_ms", Value::Uint(self.time_start_ms)),
            ("time_end_ms", Value::Uint(self.time_end_ms)),
        ])
    }

    fn from_value(v: &Value) -> Result<Self, LineError> {
        let f = Fields::new(
            v,
            "contact",
            &[
                "line",
                "buffer_m",
                "altitude_lower_m",
                "altitude_upper_m",
                "time_start_ms",
                "time_end_ms",
            ],
        )?;
        let line = match polygons_of(&Value::Array(vec![f.get("line")?.clone()]))?.pop() {
            Some(l) => l,
            None => return Err(malformed("contact", "line is an array of [lat, lng]")),
        };
        let float = |k: &str| match f.get(k)? {
            Value::Float(x) => Ok(*x),
            _ => Err(malformed("contact", format!("{k} must be a float"))),
        };
        Ok(ContactTerms {
            line,
            buffer_m: float("buffer_m")?,
            altitude_lower_m: float("altitude_lower_m")?,
            altitude_upper_m: float("altitude_upper_m")?,
            time_start_ms: f.u64("time_start_ms")?,
            time_end_ms: f.u64("time_end_ms")?,
        })
    }

    /// SHA-256 of the terms' canonical bytes: what names them.
    pub fn digest(&self) -> [u8; 32] {
        tlog::hash::sha256(&cbor::encode(&self.to_value()))
    }
}

/// Most addressees of one group.
pub const MAX_GROUP: usize = 32;

impl Group {
    /// Why the group is not one `from` may send to `to` with: 2 to
    /// [`MAX_GROUP`] distinct addressees, `to` among them, `from` not.
    pub fn check(&self, from: &str, to: &str) -> Result<(), String> {
        if self.to.len() < 2 || self.to.len() > MAX_GROUP {
            return Err(format!("a group has 2 to {MAX_GROUP} addressees"));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = self.to.iter().find(|t| !seen.insert(t.as_str())) {
            return Err(format!("{dup:?} is named twice"));
        }
        if !self.to.iter().any(|t| t == to) {
            return Err(format!("the group does not name the addressee {to:?}"));
        }
        if self.to.iter().any(|t| t == from) {
            return Err(format!("the group names the sender's own party {from:?}"));
        }
        Ok(())
    }
}

/// A member's acknowledgement of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub message: Uuid,
    /// The acknowledging member's party (the message's receiver).
    pub from: String,
    /// The message's origin party.
    pub to: String,
    pub by: MemberKey,
    pub verdict: AckVerdict,
    pub text: String,
    pub at_ms: Millis,
}

/// A value with its member's signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed<T> {
    pub value: T,
    pub signature: [u8; 64],
}

impl Signed<Message> {
    pub fn verify(&self) -> bool {
        self.value
            .sender
            .verify(MESSAGE_DOMAIN, &self.value.to_value(), &self.signature)
    }
}

impl Signed<Ack> {
    pub fn verify(&self) -> bool {
        self.value
            .by
            .verify(ACK_DOMAIN, &self.value.to_value(), &self.signature)
    }
}

/// A party's signed notice of a channel's state, effective at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelNotice {
    /// The party giving notice (the entry's origin).
    pub by: String,
    /// The other party of the channel.
    pub peer: String,
    pub sphere: Sphere,
    pub state: ChannelState,
    pub effective_ms: Millis,
    pub reason: String,
}

/// A node's signed statement that it appended a run of a peer's records
/// to its log: one signature for every record of the run ("entry E of
/// origin O is at index i of my log", for each E).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The origin of the records received.
    pub origin: String,
    /// The records, in the order of the receiver's log (1 to
    /// [`RECEIPT_ITEMS`]).
    pub items: Vec<ReceiptItem>,
    /// The receiver's log right after the last record: `tree_size` leaves
    /// and their RFC 9162 root — a checkpoint's claim, signed with the
    /// receipt, that includes every record named.
    pub tree_size: u64,
    pub root: [u8; 32],
    pub form: ReceiptForm,
}

/// How a receipt's body is laid out. Logs written before receipts named
/// runs hold one receipt per record, its fields at the top level; they are
/// still read (and re-encode to their own bytes), never written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptForm {
    /// `{origin, lane, seq, leaf_hash, index, tree_size, root, refused}`.
    Single,
    /// `{origin, items: [{lane, seq, leaf_hash, index, refused}], tree_size, root}`.
    Run,
}

/// One record named by a [`Receipt`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptItem {
    pub lane: Precedence,
    pub seq: u64,
    /// RFC 6962 leaf hash of the record's entry bytes.
    pub leaf_hash: [u8; 32],
    /// Where the receiver's log holds the record.
    pub index: u64,
    /// `None`: accepted; `Some(reason)`: kept as evidence, refused.
    pub refused: Option<String>,
}

/// Most records one receipt names (≈ 100 bytes each: the entry stays far
/// below the log's 64 KiB).
pub const RECEIPT_ITEMS: usize = 256;

/// A record of the line, the body of one log entry.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// A peer added by this node's operator (local, not replicated).
    PeerAdded {
        name: String,
        url: String,
        vkey: String,
    },
    /// A peer unpinned by this node's operator (local), once the direct
    /// line with it was closed by both parties.
    PeerRemoved {
        name: String,
        reason: String,
        at_ms: Millis,
    },
    /// A deconfliction area set by this party alone (local), as logs
    /// written before areas were agreed hold it: read as this party's
    /// proposal ([`Record::AreaProposed`]), never written. Polygons of
    /// (lat, lng) vertices.
    PeerArea {
        peer: String,
        polygons: Vec<Vec<(f64, f64)>>,
    },
    /// The peers this party pins (name and pinned key, by name), announced
    /// to each of them whenever the set changes: how every party shows who
    /// is peered with whom, and whether all pin the same keys.
    PeersAnnounced {
        by: String,
        peers: Vec<(String, String)>,
        at_ms: Millis,
    },
    /// A node key handed over to the next one: signed by the `old` key,
    /// sent to each peer on FLASH (one record per peer, or one kept locally
    /// by a node without peers). For the peer it is sent to, `sent` is the
    /// last sequence number of each lane (FLASH, IMMEDIATE, PRIORITY,
    /// ROUTINE) signed by the old key — this record's own on FLASH — and
    /// `received` how far this node had received on each of that peer's
    /// lanes, its receipts up to there signed by the old key. Everything
    /// else the node signs from this record on is signed by `new`.
    KeyRotated {
        by: String,
        old: String,
        new: String,
        sent: [u64; 4],
        received: [u64; 4],
        at_ms: Millis,
    },
    /// This party's proposal of the line of contact with a peer, sent to
    /// the peer: it binds once both parties' latest proposals hold the same
    /// terms (an empty line withdraws the party).
    ContactProposed {
        by: String,
        peer: String,
        terms: ContactTerms,
        at_ms: Millis,
    },
    /// This party's proposal of the deconfliction area it shares with a
    /// peer, sent to the peer: the area is agreed, and binds, once both
    /// parties' latest proposals hold the same polygons (an empty proposal
    /// withdraws the party from any agreed area).
    AreaProposed {
        by: String,
        peer: String,
        polygons: Vec<Vec<(f64, f64)>>,
        at_ms: Millis,
    },
    /// An operational intent or constraint change shared with a peer: the
    /// origin's own log entry kind and body for it (`node::entries`), which
    /// this crate carries without interpreting.
    Airspace {
        kind: String,
        body: Value,
    },
    /// A member registered by the entry's origin party.
    MemberRegistered(Member),
    MemberRemoved {
        key: MemberKey,
        at_ms: Millis,
    },
    /// A member's key replaced by a new one (a lost or retired key): the
    /// old key is removed and the new one registered in the same record,
    /// which says whose it is.
    MemberReplaced {
        old: MemberKey,
        new: Member,
        at_ms: Millis,
    },
    /// A member's key declared compromised from `from_ms`: it is removed
    /// (nothing it signs is taken from now on) and what it signed from
    /// `from_ms` on is shown as suspect; what it signed before still
    /// verifies and stands.
    MemberCompromised {
        key: MemberKey,
        from_ms: Millis,
        reason: String,
        at_ms: Millis,
    },
    /// A host sets the positions quota of a guest's mission; `ending` are
    /// the accreditations that end with it.
    QuotaSet {
        guest: String,
        quota: u32,
        ending: Vec<Uuid>,
        at_ms: Millis,
    },
    Accredited(Accreditation),
    Revoked {
        id: Uuid,
        reason: String,
        at_ms: Millis,
    },
    MissionClosed {
        guest: String,
        effective_ms: Millis,
        reason: String,
    },
    Channel(ChannelNotice),
    Message(Signed<Message>),
    Ack(Signed<Ack>),
    Receipt(Receipt),
    /// A party sets the acknowledgement deadlines of a channel (per
    /// precedence, FLASH first, in ms), for messages created from
    /// `effective_ms` on.
    ChannelDeadlines {
        by: String,
        peer: String,
        sphere: Sphere,
        deadlines_ms: Vec<u64>,
        effective_ms: Millis,
    },
    /// A constraint this party treats as the line of contact (local):
    /// operations touching it are notified to peers automatically and are
    /// held from activation until a peer acknowledges the notice.
    ContactDesignated {
        constraint: Uuid,
    },
    /// This node, as the managing USS of a peer's copy, notified a local
    /// subscriber of the copy's change, or gave up trying (local).
    UssNotified(UssNotification),
    /// A public statement of the party (its information office): local,
    /// served to anyone with its inclusion proof, never replicated.
    Statement(Statement),
    /// Who saw what (local): a console login or logout, an evidence export,
    /// a message first shown to a member.
    Access(Access),
}

/// One access to the line by a member of this party.
#[derive(Clone, Debug, PartialEq)]
pub struct Access {
    /// One of [`ACCESS_KINDS`].
    pub what: String,
    pub member: MemberKey,
    /// The message or entity it was about (none for a login or logout).
    pub subject: Option<String>,
    pub at_ms: Millis,
    /// The member's own signature over `text`, where the console holds its
    /// key (the login's challenge, a seen marker).
    pub signed: Option<(String, [u8; 64])>,
}

/// What an [`Access`] records.
pub const ACCESS_KINDS: [&str; 4] = [
    "console.login",
    "console.logout",
    "evidence.export",
    "message.seen",
];

/// The text a member signs to mark a message seen on this node.
pub fn seen_text(node: &str, message: &Uuid, at_ms: Millis) -> String {
    format!("detente-seen/v1\n{node}\n{message}\n{at_ms}")
}

/// A public statement: its text and language, and the earlier entries
/// (its own party's or another's statements) it answers, each named by
/// log origin, index and leaf hash, so that the answer proves which exact
/// bytes it answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub id: Uuid,
    /// BCP 47 language tag (`en`, `ru`, `fr-BE`).
    pub language: String,
    pub text: String,
    pub answers: Vec<StatementRef>,
    pub at_ms: Millis,
}

/// An entry of a log, named by origin, index and RFC 9162 leaf hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementRef {
    pub origin: String,
    pub index: u64,
    pub leaf_hash: [u8; 32],
}

/// Longest statement text, in bytes.
pub const MAX_STATEMENT_BYTES: usize = 16 * 1024;
/// Most entries one statement answers.
pub const MAX_ANSWERS: usize = 16;

/// One notification of a local subscriber about a peer's copy: which copy
/// and version (none: its removal), to whom, for which subscriptions at
/// which notification indices, and how the subscriber answered.
#[derive(Clone, Debug, PartialEq)]
pub struct UssNotification {
    /// `operational_intent` or `constraint`.
    pub entity_kind: String,
    pub entity: Uuid,
    /// The copy's version notified; `None`: its removal.
    pub version: Option<u64>,
    /// The subscriber's base URL.
    pub subscriber: String,
    /// The subscriptions notified, with their notification indices.
    pub subscriptions: Vec<(Uuid, u64)>,
    /// The subscriber's last HTTP status (`None`: it never answered).
    pub status: Option<u16>,
    pub attempts: u32,
    /// Why it was not delivered (`None`: delivered).
    pub error: Option<String>,
    pub at_ms: Millis,
}

/// The entity kinds a [`UssNotification`] names.
pub const NOTIFIED_KINDS: [&str; 2] = ["operational_intent", "constraint"];

/// Where a replicated record goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub to: String,
    pub lane: Precedence,
    pub seq: u64,
    /// Causal order across lanes: for each lane of higher precedence (in
    /// order, FLASH first), the last sequence number the sender had
    /// assigned on it to the same destination when this record was made.
    /// The receiver takes the record only once it has those. Higher
    /// precedence never waits for lower.
    pub after: Vec<u64>,
}

/// The body of a `line.*` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct LineEntry {
    pub record: Record,
    pub envelope: Option<Envelope>,
}

fn t(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn map(pairs: Vec<(&str, Value)>) -> Value {
    Value::Map(pairs.into_iter().map(|(k, v)| (t(k), v)).collect())
}

fn uuid(u: &Uuid) -> Value {
    t(&u.to_string())
}

fn spheres(s: &[Sphere]) -> Value {
    Value::Array(s.iter().map(|x| t(x.as_str())).collect())
}

/// Polygons of (lat, lng) vertices as CBOR: arrays of [lat, lng] floats.
fn polygons_value(polygons: &[Vec<(f64, f64)>]) -> Value {
    Value::Array(
        polygons
            .iter()
            .map(|p| {
                Value::Array(
                    p.iter()
                        .map(|(lat, lng)| {
                            Value::Array(vec![Value::Float(*lat), Value::Float(*lng)])
                        })
                        .collect(),
                )
            })
            .collect(),
    )
}

fn polygons_of(v: &Value) -> Result<Vec<Vec<(f64, f64)>>, LineError> {
    let bad = || malformed("area", "polygons are arrays of [lat, lng] pairs");
    let Value::Array(ps) = v else {
        return Err(bad());
    };
    ps.iter()
        .map(|p| match p {
            Value::Array(vs) => vs
                .iter()
                .map(|v| match v {
                    Value::Array(ll) => match ll.as_slice() {
                        [Value::Float(a), Value::Float(b)] => Ok((*a, *b)),
                        _ => Err(bad()),
                    },
                    _ => Err(bad()),
                })
                .collect::<Result<Vec<_>, _>>(),
            _ => Err(bad()),
        })
        .collect()
}

/// One number per lane, in precedence order (FLASH first).
fn lanes_value(lanes: &[u64; 4]) -> Value {
    Value::Array(lanes.iter().map(|n| Value::Uint(*n)).collect())
}

fn lanes_of(v: &Value, what: &'static str) -> Result<[u64; 4], LineError> {
    let Value::Array(items) = v else {
        return Err(malformed(what, "an array of four sequence numbers"));
    };
    let mut out = [0u64; 4];
    if items.len() != out.len() {
        return Err(malformed(
            what,
            "one sequence number per lane: FLASH, IMMEDIATE, PRIORITY, ROUTINE",
        ));
    }
    for (o, i) in out.iter_mut().zip(items) {
        let Value::Uint(n) = i else {
            return Err(malformed(what, "sequence numbers are unsigned integers"));
        };
        *o = *n;
    }
    Ok(out)
}

fn opt_text(s: &Option<String>) -> Value {
    s.as_ref().map(|s| t(s)).unwrap_or(Value::Null)
}

/// Strict reader of a CBOR map with a known set of keys.
struct Fields<'a> {
    pairs: &'a [(Value, Value)],
    what: &'static str,
}

fn malformed(what: &'static str, why: impl Into<String>) -> LineError {
    LineError::Malformed {
        field: what.to_string(),
        message: why.into(),
    }
}

impl<'a> Fields<'a> {
    fn new(v: &'a Value, what: &'static str, keys: &[&str]) -> Result<Self, LineError> {
        let Value::Map(pairs) = v else {
            return Err(malformed(what, "expected a map"));
        };
        if pairs.len() != keys.len() {
            return Err(malformed(
                what,
                format!("expected exactly the keys {}", keys.join(", ")),
            ));
        }
        for (k, _) in pairs {
            match k {
                Value::Text(k) if keys.contains(&k.as_str()) => {}
                _ => {
                    return Err(malformed(
                        what,
                        format!("expected exactly the keys {}", keys.join(", ")),
                    ));
                }
            }
        }
        Ok(Fields { pairs, what })
    }
    fn get(&self, k: &str) -> Result<&'a Value, LineError> {
        self.pairs
            .iter()
            .find(|(key, _)| matches!(key, Value::Text(x) if x == k))
            .map(|(_, v)| v)
            .ok_or_else(|| malformed(self.what, format!("missing {k}")))
    }
    fn text(&self, k: &str) -> Result<String, LineError> {
        match self.get(k)? {
            Value::Text(s) => Ok(s.clone()),
            _ => Err(malformed(self.what, format!("{k} must be text"))),
        }
    }
    fn opt_text(&self, k: &str) -> Result<Option<String>, LineError> {
        match self.get(k)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s.clone())),
            _ => Err(malformed(self.what, format!("{k} must be text or null"))),
        }
    }
    fn u64(&self, k: &str) -> Result<u64, LineError> {
        match self.get(k)? {
            Value::Uint(n) => Ok(*n),
            _ => Err(malformed(
                self.what,
                format!("{k} must be an unsigned integer"),
            )),
        }
    }
    fn opt_u64(&self, k: &str) -> Result<Option<u64>, LineError> {
        match self.get(k)? {
            Value::Null => Ok(None),
            Value::Uint(n) => Ok(Some(*n)),
            _ => Err(malformed(
                self.what,
                format!("{k} must be an unsigned integer or null"),
            )),
        }
    }
    fn bytes<const N: usize>(&self, k: &str) -> Result<[u8; N], LineError> {
        match self.get(k)? {
            Value::Bytes(b) => b
                .as_slice()
                .try_into()
                .map_err(|_| malformed(self.what, format!("{k} must be {N} bytes"))),
            _ => Err(malformed(self.what, format!("{k} must be bytes"))),
        }
    }
    fn uuid(&self, k: &str) -> Result<Uuid, LineError> {
        let s = self.text(k)?;
        let u =
            Uuid::parse_str(&s).map_err(|_| malformed(self.what, format!("{k} must be a UUID")))?;
        // Only the hyphenated lowercase form re-encodes identically.
        if u.to_string() != s {
            return Err(malformed(
                self.what,
                format!("{k} must be a lowercase UUID"),
            ));
        }
        Ok(u)
    }
    fn key(&self, k: &str) -> Result<MemberKey, LineError> {
        let b: [u8; 32] = self.bytes(k)?;
        Ok(MemberKey(b))
    }
    fn named<T>(&self, k: &str, parse: fn(&str) -> Option<T>) -> Result<T, LineError> {
        let s = self.text(k)?;
        parse(&s).ok_or_else(|| malformed(self.what, format!("{k}: unknown value {s:?}")))
    }
    /// A receipt's record (`lane`, `seq`, `leaf_hash`, `index`, `refused`),
    /// which must lie within the receipt's `tree_size`.
    fn receipt_item(&self, tree_size: u64) -> Result<ReceiptItem, LineError> {
        let item = ReceiptItem {
            lane: self.named("lane", Precedence::parse)?,
            seq: self.u64("seq")?,
            leaf_hash: self.bytes("leaf_hash")?,
            index: self.u64("index")?,
            refused: self.opt_text("refused")?,
        };
        if item.index >= tree_size {
            return Err(malformed(
                self.what,
                "index must be below the receipt's tree_size",
            ));
        }
        Ok(item)
    }
    fn spheres(&self, k: &str) -> Result<Vec<Sphere>, LineError> {
        let Value::Array(a) = self.get(k)? else {
            return Err(malformed(self.what, format!("{k} must be an array")));
        };
        a.iter()
            .map(|v| match v {
                Value::Text(s) => Sphere::parse(s)
                    .ok_or_else(|| malformed(self.what, format!("{k}: unknown sphere {s:?}"))),
                _ => Err(malformed(self.what, format!("{k} holds text"))),
            })
            .collect()
    }
}

impl Member {
    fn to_value(&self) -> Value {
        map(vec![
            ("key", Value::Bytes(self.key.0.to_vec())),
            ("name", t(&self.name)),
            ("role", t(&self.role)),
            ("spheres", spheres(&self.spheres)),
        ])
    }
    fn from_value(v: &Value) -> Result<Self, LineError> {
        let f = Fields::new(v, "member", &["key", "name", "role", "spheres"])?;
        Ok(Member {
            key: f.key("key")?,
            name: f.text("name")?,
            role: f.text("role")?,
            spheres: f.spheres("spheres")?,
        })
    }
}

impl Accreditation {
    fn to_value(&self) -> Value {
        map(vec![
            ("id", uuid(&self.id)),
            ("host", t(&self.host)),
            ("guest", t(&self.guest)),
            ("member", Value::Bytes(self.member.0.to_vec())),
            ("name", t(&self.name)),
            ("role", t(&self.role)),
            ("spheres", spheres(&self.spheres)),
            ("valid_from", Value::Uint(self.valid_from)),
            ("valid_until", Value::Uint(self.valid_until)),
        ])
    }
    fn from_value(v: &Value) -> Result<Self, LineError> {
        let f = Fields::new(
            v,
            "accreditation",
            &[
                "id",
                "host",
                "guest",
                "member",
                "name",
                "role",
                "spheres",
                "valid_from",
                "valid_until",
            ],
        )?;
        Ok(Accreditation {
            id: f.uuid("id")?,
            host: f.text("host")?,
            guest: f.text("guest")?,
            member: f.key("member")?,
            name: f.text("name")?,
            role: f.text("role")?,
            spheres: f.spheres("spheres")?,
            valid_from: f.u64("valid_from")?,
            valid_until: f.u64("valid_until")?,
        })
    }
}

impl Body {
    fn to_value(&self) -> Value {
        match self {
            Body::Text { text } => map(vec![("type", t("text")), ("text", t(text))]),
            Body::OperationNotification {
                intent,
                extents_sha256,
                text,
            } => map(vec![
                ("type", t("operation-notification")),
                ("intent", uuid(intent)),
                (
                    "extents_sha256",
                    extents_sha256
                        .map(|h| Value::Bytes(h.to_vec()))
                        .unwrap_or(Value::Null),
                ),
                ("text", t(text)),
            ]),
            Body::DeconflictionRequest { intents, proposal } => map(vec![
                ("type", t("deconfliction-request")),
                ("intents", Value::Array(intents.iter().map(uuid).collect())),
                ("proposal", t(proposal)),
            ]),
            Body::Reply {
                in_reply_to,
                verdict,
                text,
            } => map(vec![
                ("type", t("reply")),
                ("in_reply_to", uuid(in_reply_to)),
                ("verdict", t(verdict.as_str())),
                ("text", t(text)),
            ]),
        }
    }
    fn from_value(v: &Value) -> Result<Self, LineError> {
        let Value::Map(pairs) = v else {
            return Err(malformed("body", "expected a map"));
        };
        let kind = pairs
            .iter()
            .find(|(k, _)| matches!(k, Value::Text(x) if x == "type"))
            .and_then(|(_, v)| match v {
                Value::Text(s) => Some(s.as_str()),
                _ => None,
            })
            .ok_or_else(|| malformed("body", "missing type"))?;
        Ok(match kind {
            "text" => {
                let f = Fields::new(v, "body", &["type", "text"])?;
                Body::Text {
                    text: f.text("text")?,
                }
            }
            "operation-notification" => {
                let f = Fields::new(v, "body", &["type", "intent", "extents_sha256", "text"])?;
                let extents_sha256 = match f.get("extents_sha256")? {
                    Value::Null => None,
                    _ => Some(f.bytes("extents_sha256")?),
                };
                Body::OperationNotification {
                    intent: f.uuid("intent")?,
                    extents_sha256,
                    text: f.text("text")?,
                }
            }
            "deconfliction-request" => {
                let f = Fields::new(v, "body", &["type", "intents", "proposal"])?;
                let Value::Array(a) = f.get("intents")? else {
                    return Err(malformed("body", "intents must be an array"));
                };
                let ids: Vec<Uuid> = a
                    .iter()
                    .map(|x| match x {
                        Value::Text(s) => Uuid::parse_str(s)
                            .ok()
                            .filter(|u| u.to_string() == *s)
                            .ok_or_else(|| malformed("body", "intents holds lowercase UUIDs")),
                        _ => Err(malformed("body", "intents holds UUIDs")),
                    })
                    .collect::<Result<_, _>>()?;
                let intents: [Uuid; 2] = ids
                    .try_into()
                    .map_err(|_| malformed("body", "intents holds exactly two intents"))?;
                Body::DeconflictionRequest {
                    intents,
                    proposal: f.text("proposal")?,
                }
            }
            "reply" => {
                let f = Fields::new(v, "body", &["type", "in_reply_to", "verdict", "text"])?;
                Body::Reply {
                    in_reply_to: f.uuid("in_reply_to")?,
                    verdict: f.named("verdict", Verdict::parse)?,
                    text: f.text("text")?,
                }
            }
            other => return Err(malformed("body", format!("unknown type {other:?}"))),
        })
    }

    /// The free text of the body (for display and size limits).
    pub fn text(&self) -> &str {
        match self {
            Body::Text { text }
            | Body::OperationNotification { text, .. }
            | Body::Reply { text, .. } => text,
            Body::DeconflictionRequest { proposal, .. } => proposal,
        }
    }
}

impl Message {
    /// The map the sender signs.
    /// The map the sender signs; `group` is a key only of a group's
    /// messages.
    pub fn to_value(&self) -> Value {
        let mut pairs = vec![
            ("id", uuid(&self.id)),
            ("from", t(&self.from)),
            ("to", t(&self.to)),
            ("sphere", t(self.sphere.as_str())),
            ("precedence", t(self.precedence.as_str())),
            ("sender", Value::Bytes(self.sender.0.to_vec())),
            ("seq", Value::Uint(self.seq)),
            ("created_ms", Value::Uint(self.created_ms)),
            ("body", self.body.to_value()),
        ];
        if let Some(g) = &self.group {
            pairs.push((
                "group",
                map(vec![
                    ("id", uuid(&g.id)),
                    ("to", Value::Array(g.to.iter().map(|x| t(x)).collect())),
                ]),
            ));
        }
        map(pairs)
    }
    pub fn from_value(v: &Value) -> Result<Self, LineError> {
        const KEYS: [&str; 10] = [
            "id",
            "from",
            "to",
            "sphere",
            "precedence",
            "sender",
            "seq",
            "created_ms",
            "body",
            "group",
        ];
        let grouped = matches!(v, Value::Map(pairs)
            if pairs.iter().any(|(k, _)| matches!(k, Value::Text(x) if x == "group")));
        let f = Fields::new(v, "message", &KEYS[..if grouped { 10 } else { 9 }])?;
        let group = if grouped {
            let g = Fields::new(f.get("group")?, "message.group", &["id", "to"])?;
            let Value::Array(to) = g.get("to")? else {
                return Err(malformed("message.group", "to must be an array"));
            };
            Some(Group {
                id: g.uuid("id")?,
                to: to
                    .iter()
                    .map(|x| match x {
                        Value::Text(s) => Ok(s.clone()),
                        _ => Err(malformed("message.group", "to holds party names")),
                    })
                    .collect::<Result<_, _>>()?,
            })
        } else {
            None
        };
        Ok(Message {
            group,
            id: f.uuid("id")?,
            from: f.text("from")?,
            to: f.text("to")?,
            sphere: f.named("sphere", Sphere::parse)?,
            precedence: f.named("precedence", Precedence::parse)?,
            sender: f.key("sender")?,
            seq: f.u64("seq")?,
            created_ms: f.u64("created_ms")?,
            body: Body::from_value(f.get("body")?)?,
        })
    }
    /// The exact bytes a sender signs (domain ‖ CBOR), e.g. for a client
    /// that signs elsewhere.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut m = MESSAGE_DOMAIN.to_vec();
        m.extend(cbor::encode(&self.to_value()));
        m
    }
}

impl Ack {
    pub fn to_value(&self) -> Value {
        map(vec![
            ("message", uuid(&self.message)),
            ("from", t(&self.from)),
            ("to", t(&self.to)),
            ("by", Value::Bytes(self.by.0.to_vec())),
            ("verdict", t(self.verdict.as_str())),
            ("text", t(&self.text)),
            ("at_ms", Value::Uint(self.at_ms)),
        ])
    }
    pub fn from_value(v: &Value) -> Result<Self, LineError> {
        let f = Fields::new(
            v,
            "ack",
            &["message", "from", "to", "by", "verdict", "text", "at_ms"],
        )?;
        Ok(Ack {
            message: f.uuid("message")?,
            from: f.text("from")?,
            to: f.text("to")?,
            by: f.key("by")?,
            verdict: f.named("verdict", AckVerdict::parse)?,
            text: f.text("text")?,
            at_ms: f.u64("at_ms")?,
        })
    }
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut m = ACK_DOMAIN.to_vec();
        m.extend(cbor::encode(&self.to_value()));
        m
    }
}

fn signed_value(v: Value, signature: &[u8; 64]) -> Value {
    map(vec![
        ("value", v),
        ("sig", Value::Bytes(signature.to_vec())),
    ])
}

impl Record {
    /// The entry kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::PeerAdded { .. } => "line.peer.added",
            Record::PeerArea { .. } => "line.peer.area",
            Record::AreaProposed { .. } => "line.area.proposed",
            Record::PeersAnnounced { .. } => "line.peers.announced",
            Record::KeyRotated { .. } => "line.key.rotated",
            Record::ContactProposed { .. } => "line.contact.proposed",
            Record::PeerRemoved { .. } => "line.peer.removed",
            Record::Airspace { .. } => "line.airspace",
            Record::MemberRegistered(_) => "line.member.registered",
            Record::MemberRemoved { .. } => "line.member.removed",
            Record::MemberReplaced { .. } => "line.member.replaced",
            Record::MemberCompromised { .. } => "line.member.compromised",
            Record::QuotaSet { .. } => "line.mission.quota",
            Record::Accredited(_) => "line.accreditation.granted",
            Record::Revoked { .. } => "line.accreditation.revoked",
            Record::MissionClosed { .. } => "line.mission.closed",
            Record::Channel(_) => "line.channel",
            Record::Message(_) => "line.message",
            Record::Ack(_) => "line.ack",
            Record::Receipt(_) => "line.receipt",
            Record::ContactDesignated { .. } => "line.contact",
            Record::ChannelDeadlines { .. } => "line.channel.deadlines",
            Record::UssNotified(_) => "line.uss.notified",
            Record::Statement(_) => "line.statement",
            Record::Access(_) => "line.access",
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            Record::PeerAdded { name, url, vkey } => {
                map(vec![("name", t(name)), ("url", t(url)), ("vkey", t(vkey))])
            }
            Record::PeerArea { peer, polygons } => map(vec![
                ("peer", t(peer)),
                ("polygons", polygons_value(polygons)),
            ]),
            Record::ContactProposed {
                by,
                peer,
                terms,
                at_ms,
            } => map(vec![
                ("by", t(by)),
                ("peer", t(peer)),
                ("terms", terms.to_value()),
                ("at_ms", Value::Uint(*at_ms)),
            ]),
            Record::KeyRotated {
                by,
                old,
                new,
                sent,
                received,
                at_ms,
            } => map(vec![
                ("by", t(by)),
                ("old", t(old)),
                ("new", t(new)),
                ("sent", lanes_value(sent)),
                ("received", lanes_value(received)),
                ("at_ms", Value::Uint(*at_ms)),
            ]),
            Record::PeersAnnounced { by, peers, at_ms } => map(vec![
                ("by", t(by)),
                (
                    "peers",
                    Value::Array(
                        peers
                            .iter()
                            .map(|(n, k)| map(vec![("name", t(n)), ("vkey", t(k))]))
                            .collect(),
                    ),
                ),
                ("at_ms", Value::Uint(*at_ms)),
            ]),
            Record::AreaProposed {
                by,
                peer,
                polygons,
                at_ms,
            } => map(vec![
                ("by", t(by)),
                ("peer", t(peer)),
                ("polygons", polygons_value(polygons)),
                ("at_ms", Value::Uint(*at_ms)),
            ]),
            Record::PeerRemoved {
                name,
                reason,
                at_ms,
            } => map(vec![
                ("name", t(name)),
                ("reason", t(reason)),
                ("at_ms", Value::Uint(*at_ms)),
            ]),
            Record::Airspace { kind, body } => map(vec![("kind", t(kind)), ("body", body.clone())]),
            Record::MemberRegistered(m) => m.to_value(),
            Record::MemberRemoved { key, at_ms } => map(vec![
                ("key", Value::Bytes(key.0.to_vec())),
                ("at_ms", Value::Uint(*at_ms)),
            ]),
            Record::MemberReplaced { old, new, at_ms } => map(vec![
                ("old", Value::Bytes(old.0.to_vec())),
                ("new", new.to_value()),
                ("at_ms", Value::Uint(*at_ms)),
            ]),
            Record::MemberCompromised {
                key,
                from_ms,
                reason,
                at_ms,
            } => map(vec![
                ("key", Value::Bytes(key.0.to_vec())),
                ("from_ms", Value::Uint(*from_ms)),
                ("reason", t(reason)),
                ("at_ms", Value::Uint(*at_ms)),
            ]),
            Record::QuotaSet {
                guest,
                quota,
                ending,
                at_ms,
            } => map(vec![
                ("guest", t(guest)),
                ("quota", Value::Uint(u64::from(*quota))),
                ("ending", Value::Array(ending.iter().map(uuid).collect())),
                ("at_ms", Value::Uint(*at_ms)),
            ]),
            Record::Accredited(a) => a.to_value(),
            Record::Revoked { id, reason, at_ms } => map(vec![
                ("id", uuid(id)),
                ("reason", t(reason)),
                ("at_ms", Value::Uint(*at_ms)),
            ]),
            Record::MissionClosed {
                guest,
                effective_ms,
                reason,
            } => map(vec![
                ("guest", t(guest)),
                ("effective_ms", Value::Uint(*effective_ms)),
                ("reason", t(reason)),
            ]),
            Record::Channel(c) => map(vec![
                ("by", t(&c.by)),
                ("peer", t(&c.peer)),
                ("sphere", t(c.sphere.as_str())),
                ("state", t(c.state.as_str())),
                ("effective_ms", Value::Uint(c.effective_ms)),
                ("reason", t(&c.reason)),
            ]),
            Record::Message(m) => signed_value(m.value.to_value(), &m.signature),
            Record::Ack(a) => signed_value(a.value.to_value(), &a.signature),
            Record::ContactDesignated { constraint } => map(vec![("constraint", uuid(constraint))]),
            Record::Access(a) => map(vec![
                ("what", t(&a.what)),
                ("member", Value::Bytes(a.member.0.to_vec())),
                ("subject", opt_text(&a.subject)),
                ("at_ms", Value::Uint(a.at_ms)),
                (
                    "signed_text",
                    a.signed.as_ref().map_or(Value::Null, |(x, _)| t(x)),
                ),
                (
                    "sig",
                    a.signed
                        .as_ref()
                        .map_or(Value::Null, |(_, s)| Value::Bytes(s.to_vec())),
                ),
            ]),
            Record::Statement(st) => map(vec![
                ("id", uuid(&st.id)),
                ("language", t(&st.language)),
                ("text", t(&st.text)),
                (
                    "answers",
                    Value::Array(
                        st.answers
                            .iter()
                            .map(|r| {
                                map(vec![
                                    ("origin", t(&r.origin)),
                                    ("index", Value::Uint(r.index)),
                                    ("leaf_hash", Value::Bytes(r.leaf_hash.to_vec())),
                                ])
                            })
                            .collect(),
                    ),
                ),
                ("at_ms", Value::Uint(st.at_ms)),
            ]),
            Record::UssNotified(n) => map(vec![
                ("kind", t(&n.entity_kind)),
                ("entity", uuid(&n.entity)),
                ("version", n.version.map_or(Value::Null, Value::Uint)),
                ("subscriber", t(&n.subscriber)),
                (
                    "subscriptions",
                    Value::Array(
                        n.subscriptions
                            .iter()
                            .map(|(id, index)| {
                                map(vec![
                                    ("id", uuid(id)),
                                    ("notification_index", Value::Uint(*index)),
                                ])
                            })
                            .collect(),
                    ),
                ),
                (
                    "status",
                    n.status.map_or(Value::Null, |s| Value::Uint(u64::from(s))),
                ),
                ("attempts", Value::Uint(u64::from(n.attempts))),
                ("error", opt_text(&n.error)),
                ("at_ms", Value::Uint(n.at_ms)),
            ]),
            Record::ChannelDeadlines {
                by,
                peer,
                sphere,
                deadlines_ms,
                effective_ms,
            } => map(vec![
                ("by", t(by)),
                ("peer", t(peer)),
                ("sphere", t(sphere.as_str())),
                (
                    "deadlines_ms",
                    Value::Array(deadlines_ms.iter().map(|d| Value::Uint(*d)).collect()),
                ),
                ("effective_ms", Value::Uint(*effective_ms)),
            ]),
            Record::Receipt(Receipt {
                origin,
                items,
                tree_size,
                root,
                form: ReceiptForm::Single,
            }) if items.len() == 1 => map(vec![
                ("origin", t(origin)),
                ("lane", t(items[0].lane.as_str())),
                ("seq", Value::Uint(items[0].seq)),
                ("leaf_hash", Value::Bytes(items[0].leaf_hash.to_vec())),
                ("index", Value::Uint(items[0].index)),
                ("tree_size", Value::Uint(*tree_size)),
                ("root", Value::Bytes(root.to_vec())),
                ("refused", opt_text(&items[0].refused)),
            ]),
            Record::Receipt(r) => map(vec![
                ("origin", t(&r.origin)),
                (
                    "items",
                    Value::Array(
                        r.items
                            .iter()
                            .map(|i| {
                                map(vec![
                                    ("lane", t(i.lane.as_str())),
                                    ("seq", Value::Uint(i.seq)),
                                    ("leaf_hash", Value::Bytes(i.leaf_hash.to_vec())),
                                    ("index", Value::Uint(i.index)),
                                    ("refused", opt_text(&i.refused)),
                                ])
                            })
                            .collect(),
                    ),
                ),
                ("tree_size", Value::Uint(r.tree_size)),
                ("root", Value::Bytes(r.root.to_vec())),
            ]),
        }
    }

    pub fn from_value(kind: &str, v: &Value) -> Result<Record, LineError> {
        let signed = |what: &'static str| -> Result<(&Value, [u8; 64]), LineError> {
            let f = Fields::new(v, what, &["value", "sig"])?;
            Ok((f.get("value")?, f.bytes("sig")?))
        };
        Ok(match kind {
            "line.peer.added" => {
                let f = Fields::new(v, "peer", &["name", "url", "vkey"])?;
                Record::PeerAdded {
                    name: f.text("name")?,
                    url: f.text("url")?,
                    vkey: f.text("vkey")?,
                }
            }
            "line.peer.area" => {
                let f = Fields::new(v, "area", &["peer", "polygons"])?;
                Record::PeerArea {
                    peer: f.text("peer")?,
                    polygons: polygons_of(f.get("polygons")?)?,
                }
            }
            "line.contact.proposed" => {
                let f = Fields::new(v, "contact", &["by", "peer", "terms", "at_ms"])?;
                Record::ContactProposed {
                    by: f.text("by")?,
                    peer: f.text("peer")?,
                    terms: ContactTerms::from_value(f.get("terms")?)?,
                    at_ms: f.u64("at_ms")?,
                }
            }
            "line.key.rotated" => {
                let f = Fields::new(v, "key", &["by", "old", "new", "sent", "received", "at_ms"])?;
                Record::KeyRotated {
                    by: f.text("by")?,
                    old: f.text("old")?,
                    new: f.text("new")?,
                    sent: lanes_of(f.get("sent")?, "sent")?,
                    received: lanes_of(f.get("received")?, "received")?,
                    at_ms: f.u64("at_ms")?,
                }
            }
            "line.peers.announced" => {
                let f = Fields::new(v, "peers", &["by", "peers", "at_ms"])?;
                let Value::Array(ps) = f.get("peers")? else {
                    return Err(malformed("peers", "peers must be an array"));
                };
                let peers = ps
                    .iter()
                    .map(|p| {
                        let g = Fields::new(p, "peers", &["name", "vkey"])?;
                        Ok((g.text("name")?, g.text("vkey")?))
                    })
                    .collect::<Result<Vec<_>, LineError>>()?;
                Record::PeersAnnounced {
                    by: f.text("by")?,
                    peers,
                    at_ms: f.u64("at_ms")?,
                }
            }
            "line.area.proposed" => {
                let f = Fields::new(v, "area", &["by", "peer", "polygons", "at_ms"])?;
                Record::AreaProposed {
                    by: f.text("by")?,
                    peer: f.text("peer")?,
                    polygons: polygons_of(f.get("polygons")?)?,
                    at_ms: f.u64("at_ms")?,
                }
            }
            "line.airspace" => {
                let f = Fields::new(v, "airspace", &["kind", "body"])?;
                Record::Airspace {
                    kind: f.text("kind")?,
                    body: f.get("body")?.clone(),
                }
            }
            "line.member.registered" => Record::MemberRegistered(Member::from_value(v)?),
            "line.member.removed" => {
                let f = Fields::new(v, "member", &["key", "at_ms"])?;
                Record::MemberRemoved {
                    key: f.key("key")?,
                    at_ms: f.u64("at_ms")?,
                }
            }
            "line.member.replaced" => {
                let f = Fields::new(v, "member", &["old", "new", "at_ms"])?;
                Record::MemberReplaced {
                    old: f.key("old")?,
                    new: Member::from_value(f.get("new")?)?,
                    at_ms: f.u64("at_ms")?,
                }
            }
            "line.member.compromised" => {
                let f = Fields::new(v, "member", &["key", "from_ms", "reason", "at_ms"])?;
                Record::MemberCompromised {
                    key: f.key("key")?,
                    from_ms: f.u64("from_ms")?,
                    reason: f.text("reason")?,
                    at_ms: f.u64("at_ms")?,
                }
            }
            "line.mission.quota" => {
                let f = Fields::new(v, "quota", &["guest", "quota", "ending", "at_ms"])?;
                let Value::Array(a) = f.get("ending")? else {
                    return Err(malformed("quota", "ending must be an array"));
                };
                let ending = a
                    .iter()
                    .map(|x| match x {
                        Value::Text(s) => Uuid::parse_str(s)
                            .ok()
                            .filter(|u| u.to_string() == *s)
                            .ok_or_else(|| malformed("quota", "ending holds lowercase UUIDs")),
                        _ => Err(malformed("quota", "ending holds UUIDs")),
                    })
                    .collect::<Result<_, _>>()?;
                Record::QuotaSet {
                    guest: f.text("guest")?,
                    quota: u32::try_from(f.u64("quota")?)
                        .map_err(|_| malformed("quota", "quota is too large"))?,
                    ending,
                    at_ms: f.u64("at_ms")?,
                }
            }
            "line.accreditation.granted" => Record::Accredited(Accreditation::from_value(v)?),
            "line.accreditation.revoked" => {
                let f = Fields::new(v, "revocation", &["id", "reason", "at_ms"])?;
                Record::Revoked {
                    id: f.uuid("id")?,
                    reason: f.text("reason")?,
                    at_ms: f.u64("at_ms")?,
                }
            }
            "line.mission.closed" => {
                let f = Fields::new(v, "closure", &["guest", "effective_ms", "reason"])?;
                Record::MissionClosed {
                    guest: f.text("guest")?,
                    effective_ms: f.u64("effective_ms")?,
                    reason: f.text("reason")?,
                }
            }
            "line.channel" => {
                let f = Fields::new(
                    v,
                    "channel",
                    &["by", "peer", "sphere", "state", "effective_ms", "reason"],
                )?;
                Record::Channel(ChannelNotice {
                    by: f.text("by")?,
                    peer: f.text("peer")?,
                    sphere: f.named("sphere", Sphere::parse)?,
                    state: f.named("state", ChannelState::parse)?,
                    effective_ms: f.u64("effective_ms")?,
                    reason: f.text("reason")?,
                })
            }
            "line.message" => {
                let (value, signature) = signed("message")?;
                Record::Message(Signed {
                    value: Message::from_value(value)?,
                    signature,
                })
            }
            "line.ack" => {
                let (value, signature) = signed("ack")?;
                Record::Ack(Signed {
                    value: Ack::from_value(value)?,
                    signature,
                })
            }
            "line.channel.deadlines" => {
                let f = Fields::new(
                    v,
                    "deadlines",
                    &["by", "peer", "sphere", "deadlines_ms", "effective_ms"],
                )?;
                let Value::Array(a) = f.get("deadlines_ms")? else {
                    return Err(malformed("deadlines", "deadlines_ms must be an array"));
                };
                let deadlines_ms = a
                    .iter()
                    .map(|x| match x {
                        Value::Uint(n) => Ok(*n),
                        _ => Err(malformed("deadlines", "deadlines_ms holds milliseconds")),
                    })
                    .collect::<Result<Vec<u64>, _>>()?;
                if deadlines_ms.len() != Precedence::ALL.len() {
                    return Err(malformed("deadlines", "one deadline per precedence"));
                }
                Record::ChannelDeadlines {
                    by: f.text("by")?,
                    peer: f.text("peer")?,
                    sphere: f.named("sphere", Sphere::parse)?,
                    deadlines_ms,
                    effective_ms: f.u64("effective_ms")?,
                }
            }
            "line.peer.removed" => {
                let f = Fields::new(v, "peer", &["name", "reason", "at_ms"])?;
                Record::PeerRemoved {
                    name: f.text("name")?,
                    reason: f.text("reason")?,
                    at_ms: f.u64("at_ms")?,
                }
            }
            "line.access" => {
                let f = Fields::new(
                    v,
                    "access",
                    &["what", "member", "subject", "at_ms", "signed_text", "sig"],
                )?;
                let what = f.text("what")?;
                if !ACCESS_KINDS.contains(&what.as_str()) {
                    return Err(malformed("access", format!("what: unknown value {what:?}")));
                }
                let signed = match (f.opt_text("signed_text")?, f.get("sig")?) {
                    (None, Value::Null) => None,
                    (Some(x), Value::Bytes(_)) => Some((x, f.bytes("sig")?)),
                    _ => return Err(malformed("access", "signed_text and sig go together")),
                };
                Record::Access(Access {
                    what,
                    member: f.key("member")?,
                    subject: f.opt_text("subject")?,
                    at_ms: f.u64("at_ms")?,
                    signed,
                })
            }
            "line.statement" => {
                let f = Fields::new(
                    v,
                    "statement",
                    &["id", "language", "text", "answers", "at_ms"],
                )?;
                let Value::Array(refs) = f.get("answers")? else {
                    return Err(malformed("statement", "answers must be an array"));
                };
                let answers = refs
                    .iter()
                    .map(|r| {
                        let g = Fields::new(r, "statement", &["origin", "index", "leaf_hash"])?;
                        Ok(StatementRef {
                            origin: g.text("origin")?,
                            index: g.u64("index")?,
                            leaf_hash: g.bytes("leaf_hash")?,
                        })
                    })
                    .collect::<Result<Vec<_>, LineError>>()?;
                Record::Statement(Statement {
                    id: f.uuid("id")?,
                    language: f.text("language")?,
                    text: f.text("text")?,
                    answers,
                    at_ms: f.u64("at_ms")?,
                })
            }
            "line.uss.notified" => {
                const KEYS: [&str; 9] = [
                    "kind",
                    "entity",
                    "version",
                    "subscriber",
                    "subscriptions",
                    "status",
                    "attempts",
                    "error",
                    "at_ms",
                ];
                let f = Fields::new(v, "notified", &KEYS)?;
                let entity_kind = f.text("kind")?;
                if !NOTIFIED_KINDS.contains(&entity_kind.as_str()) {
                    return Err(malformed(
                        "notified",
                        format!("kind: unknown value {entity_kind:?}"),
                    ));
                }
                let Value::Array(subs) = f.get("subscriptions")? else {
                    return Err(malformed("notified", "subscriptions must be an array"));
                };
                let subscriptions = subs
                    .iter()
                    .map(|s| {
                        let g = Fields::new(s, "notified", &["id", "notification_index"])?;
                        Ok((g.uuid("id")?, g.u64("notification_index")?))
                    })
                    .collect::<Result<Vec<_>, LineError>>()?;
                let status = match f.opt_u64("status")? {
                    None => None,
                    Some(s) => Some(
                        u16::try_from(s)
                            .map_err(|_| malformed("notified", "status must be an HTTP status"))?,
                    ),
                };
                let attempts = u32::try_from(f.u64("attempts")?)
                    .map_err(|_| malformed("notified", "attempts out of range"))?;
                Record::UssNotified(UssNotification {
                    entity_kind,
                    entity: f.uuid("entity")?,
                    version: f.opt_u64("version")?,
                    subscriber: f.text("subscriber")?,
                    subscriptions,
                    status,
                    attempts,
                    error: f.opt_text("error")?,
                    at_ms: f.u64("at_ms")?,
                })
            }
            "line.contact" => {
                let f = Fields::new(v, "contact", &["constraint"])?;
                Record::ContactDesignated {
                    constraint: f.uuid("constraint")?,
                }
            }
            "line.receipt" => {
                const SINGLE: [&str; 8] = [
                    "origin",
                    "lane",
                    "seq",
                    "leaf_hash",
                    "index",
                    "tree_size",
                    "root",
                    "refused",
                ];
                if let Ok(f) = Fields::new(v, "receipt", &SINGLE) {
                    let tree_size = f.u64("tree_size")?;
                    let item = f.receipt_item(tree_size)?;
                    return Ok(Record::Receipt(Receipt {
                        origin: f.text("origin")?,
                        items: vec![item],
                        tree_size,
                        root: f.bytes("root")?,
                        form: ReceiptForm::Single,
                    }));
                }
                let f = Fields::new(v, "receipt", &["origin", "items", "tree_size", "root"])?;
                let Value::Array(a) = f.get("items")? else {
                    return Err(malformed("receipt", "items must be an array"));
                };
                if a.is_empty() || a.len() > RECEIPT_ITEMS {
                    return Err(malformed(
                        "receipt",
                        format!("a receipt names 1 to {RECEIPT_ITEMS} records"),
                    ));
                }
                let tree_size = f.u64("tree_size")?;
                let items = a
                    .iter()
                    .map(|v| {
                        Fields::new(
                            v,
                            "receipt item",
                            &["lane", "seq", "leaf_hash", "index", "refused"],
                        )?
                        .receipt_item(tree_size)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Record::Receipt(Receipt {
                    origin: f.text("origin")?,
                    items,
                    tree_size,
                    root: f.bytes("root")?,
                    form: ReceiptForm::Run,
                })
            }
            other => {
                return Err(LineError::Malformed {
                    field: "kind".into(),
                    message: format!("{other:?} is not a record of the line"),
                });
            }
        })
    }
}

impl LineEntry {
    /// The entry body: `{"record": …}` plus `to`, `lane`, `seq` when the
    /// record goes to a peer.
    pub fn to_value(&self) -> Value {
        let mut pairs = vec![("record", self.record.to_value())];
        if let Some(e) = &self.envelope {
            pairs.push(("to", t(&e.to)));
            pairs.push(("lane", t(e.lane.as_str())));
            pairs.push(("seq", Value::Uint(e.seq)));
            pairs.push((
                "after",
                Value::Array(e.after.iter().map(|n| Value::Uint(*n)).collect()),
            ));
        }
        map(pairs)
    }

    pub fn from_value(kind: &str, v: &Value) -> Result<LineEntry, LineError> {
        let n = match v {
            Value::Map(p) => p.len(),
            _ => 0,
        };
        if n == 1 {
            let f = Fields::new(v, "entry", &["record"])?;
            return Ok(LineEntry {
                record: Record::from_value(kind, f.get("record")?)?,
                envelope: None,
            });
        }
        let f = Fields::new(v, "entry", &["record", "to", "lane", "seq", "after"])?;
        let lane = f.named("lane", Precedence::parse)?;
        let Value::Array(a) = f.get("after")? else {
            return Err(malformed("entry", "after must be an array"));
        };
        let after = a
            .iter()
            .map(|x| match x {
                Value::Uint(n) => Ok(*n),
                _ => Err(malformed("entry", "after holds sequence numbers")),
            })
            .collect::<Result<Vec<u64>, _>>()?;
        let higher = Precedence::ALL.iter().position(|p| *p == lane).unwrap_or(0);
        if after.len() != higher {
            return Err(malformed(
                "entry",
                format!("after holds one sequence number per lane above {lane}"),
            ));
        }
        Ok(LineEntry {
            record: Record::from_value(kind, f.get("record")?)?,
            envelope: Some(Envelope {
                to: f.text("to")?,
                lane,
                seq: f.u64("seq")?,
                after,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn signer(n: u8) -> MemberSigner {
        MemberSigner::from_seed(&[n; 32])
    }

    fn message() -> Message {
        Message {
            id: Uuid::from_u128(0x1234),
            from: "alliance".into(),
            to: "federation".into(),
            sphere: Sphere::Military,
            precedence: Precedence::Flash,
            sender: signer(1).key(),
            seq: 1,
            created_ms: 1_795_000_000_000,
            body: Body::DeconflictionRequest {
                intents: [Uuid::from_u128(1), Uuid::from_u128(2)],
                proposal: "move yours 2 km north".into(),
            },
            group: None,
        }
    }

    #[test]
    fn every_record_re_encodes_byte_identically() {
        let m = signer(1).sign_message(message());
        let ack = signer(2).sign_ack(Ack {
            message: m.value.id,
            from: "federation".into(),
            to: "alliance".into(),
            by: signer(2).key(),
            verdict: AckVerdict::Accept,
            text: String::new(),
            at_ms: 5,
        });
        let records = vec![
            Record::PeerAdded {
                name: "federation".into(),
                url: "https://127.0.0.1:1".into(),
                vkey: "x".into(),
            },
            Record::PeerArea {
                peer: "federation".into(),
                polygons: vec![vec![(45.0, 10.0), (45.5, 10.0), (45.5, 10.5)]],
            },
            Record::AreaProposed {
                by: "alliance".into(),
                peer: "federation".into(),
                polygons: vec![vec![(45.0, 10.0), (45.5, 10.0), (45.5, 10.5)]],
                at_ms: 7,
            },
            Record::ContactProposed {
                by: "alliance".into(),
                peer: "federation".into(),
                terms: ContactTerms {
                    line: vec![(46.0, 12.0), (46.1, 12.3)],
                    buffer_m: 3000.0,
                    altitude_lower_m: 0.0,
                    altitude_upper_m: 20_000.0,
                    time_start_ms: 1,
                    time_end_ms: 2,
                },
                at_ms: 3,
            },
            Record::ContactProposed {
                by: "alliance".into(),
                peer: "federation".into(),
                terms: ContactTerms::withdrawal(),
                at_ms: 4,
            },
            Record::KeyRotated {
                by: "alliance".into(),
                old: "alliance+01+old".into(),
                new: "alliance+02+new".into(),
                sent: [3, 0, 2, 9],
                received: [1, 1, 0, 4],
                at_ms: 9,
            },
            Record::PeersAnnounced {
                by: "alliance".into(),
                peers: vec![
                    ("commonwealth".into(), "commonwealth+01+key".into()),
                    ("federation".into(), "federation+02+key".into()),
                ],
                at_ms: 8,
            },
            Record::Airspace {
                kind: "operational_intent.removed".into(),
                body: map(vec![("id", t("2f8343be-6482-4d1b-a474-16847e01af1e"))]),
            },
            Record::MemberRegistered(Member {
                key: signer(1).key(),
                name: "Col. A".into(),
                role: "liaison".into(),
                spheres: vec![Sphere::Military, Sphere::DirectLine],
            }),
            Record::MemberRemoved {
                key: signer(1).key(),
                at_ms: 9,
            },
            Record::MemberReplaced {
                old: signer(1).key(),
                new: Member {
                    key: signer(2).key(),
                    name: "Col. Adams".into(),
                    role: "duty officer".into(),
                    spheres: vec![Sphere::DirectLine],
                },
                at_ms: 10,
            },
            Record::MemberCompromised {
                key: signer(1).key(),
                from_ms: 8,
                reason: "laptop stolen".into(),
                at_ms: 11,
            },
            Record::QuotaSet {
                guest: "federation".into(),
                quota: 3,
                ending: vec![Uuid::from_u128(7)],
                at_ms: 1,
            },
            Record::Accredited(Accreditation {
                id: Uuid::from_u128(7),
                host: "alliance".into(),
                guest: "federation".into(),
                member: signer(2).key(),
                name: "Maj. F".into(),
                role: "liaison officer".into(),
                spheres: vec![Sphere::Diplomatic],
                valid_from: 1,
                valid_until: u64::MAX,
            }),
            Record::Revoked {
                id: Uuid::from_u128(7),
                reason: "persona non grata".into(),
                at_ms: 2,
            },
            Record::MissionClosed {
                guest: "federation".into(),
                effective_ms: 3,
                reason: "r".into(),
            },
            Record::Channel(ChannelNotice {
                by: "alliance".into(),
                peer: "federation".into(),
                sphere: Sphere::DirectLine,
                state: ChannelState::Closed,
                effective_ms: 4,
                reason: "agreed".into(),
            }),
            Record::Message(m.clone()),
            Record::Message(signer(1).sign_message(Message {
                body: Body::Reply {
                    in_reply_to: Uuid::from_u128(3),
                    verdict: Verdict::Counter,
                    text: "later".into(),
                },
                ..message()
            })),
            Record::Message(signer(1).sign_message(Message {
                body: Body::OperationNotification {
                    intent: Uuid::from_u128(3),
                    extents_sha256: Some([5; 32]),
                    text: "".into(),
                },
                ..message()
            })),
            Record::Message(signer(1).sign_message(Message {
                group: Some(Group {
                    id: Uuid::from_u128(11),
                    to: vec!["federation".into(), "commonwealth".into()],
                }),
                ..message()
            })),
            Record::Ack(ack),
            Record::ContactDesignated {
                constraint: Uuid::from_u128(9),
            },
            Record::PeerRemoved {
                name: "federation".into(),
                reason: "relations downgraded".into(),
                at_ms: 9,
            },
            Record::Access(Access {
                what: "message.seen".into(),
                member: signer(1).key(),
                subject: Some(Uuid::from_u128(15).to_string()),
                at_ms: 11,
                signed: Some(("detente-seen/v1\nalliance\nx\n11".into(), [6; 64])),
            }),
            Record::Access(Access {
                what: "console.logout".into(),
                member: signer(1).key(),
                subject: None,
                at_ms: 12,
                signed: None,
            }),
            Record::Statement(Statement {
                id: Uuid::from_u128(14),
                language: "en".into(),
                text: "No evidence has been produced.".into(),
                answers: vec![StatementRef {
                    origin: "federation".into(),
                    index: 41,
                    leaf_hash: [3; 32],
                }],
                at_ms: 10,
            }),
            Record::UssNotified(UssNotification {
                entity_kind: "operational_intent".into(),
                entity: Uuid::from_u128(10),
                version: Some(3),
                subscriber: "https://uss.example/".into(),
                subscriptions: vec![(Uuid::from_u128(11), 4), (Uuid::from_u128(12), 1)],
                status: Some(204),
                attempts: 2,
                error: None,
                at_ms: 7,
            }),
            Record::UssNotified(UssNotification {
                entity_kind: "constraint".into(),
                entity: Uuid::from_u128(13),
                version: None,
                subscriber: "http://127.0.0.1:9/".into(),
                subscriptions: vec![],
                status: None,
                attempts: 6,
                error: Some("connection refused".into()),
                at_ms: 8,
            }),
            Record::ChannelDeadlines {
                by: "alliance".into(),
                peer: "federation".into(),
                sphere: Sphere::Military,
                deadlines_ms: vec![300_000, 900_000, 3_600_000, 7_200_000],
                effective_ms: 5,
            },
            Record::Receipt(Receipt {
                origin: "alliance".into(),
                items: vec![
                    ReceiptItem {
                        lane: Precedence::Routine,
                        seq: 4,
                        leaf_hash: [9; 32],
                        index: 76,
                        refused: Some("revoked".into()),
                    },
                    ReceiptItem {
                        lane: Precedence::Flash,
                        seq: 1,
                        leaf_hash: [8; 32],
                        index: 77,
                        refused: None,
                    },
                ],
                tree_size: 78,
                root: [3; 32],
                form: ReceiptForm::Run,
            }),
            // As logs written before receipts named runs hold them.
            Record::Receipt(Receipt {
                origin: "alliance".into(),
                items: vec![ReceiptItem {
                    lane: Precedence::Priority,
                    seq: 4,
                    leaf_hash: [9; 32],
                    index: 76,
                    refused: Some("revoked".into()),
                }],
                tree_size: 77,
                root: [3; 32],
                form: ReceiptForm::Single,
            }),
        ];
        for (i, r) in records.into_iter().enumerate() {
            let e = LineEntry {
                record: r,
                envelope: (i % 2 == 0).then(|| Envelope {
                    to: "federation".into(),
                    lane: Precedence::Immediate,
                    seq: i as u64 + 1,
                    after: vec![7],
                }),
            };
            let bytes = cbor::encode(&e.to_value());
            let back = LineEntry::from_value(e.record.kind(), &cbor::decode(&bytes).unwrap())
                .unwrap_or_else(|err| panic!("{}: {err}", e.record.kind()));
            assert_eq!(back, e);
            assert_eq!(cbor::encode(&back.to_value()), bytes);
        }
    }

    #[test]
    fn member_signatures_cover_every_field() {
        let m = signer(1).sign_message(message());
        assert!(m.verify());
        let mut changed = m.clone();
        changed.value.seq = 2;
        assert!(!changed.verify());
        let mut other = m.clone();
        other.value.sender = signer(2).key();
        assert!(!other.verify());
        // The domain separates messages from acknowledgements.
        let a = Ack {
            message: Uuid::from_u128(1),
            from: "f".into(),
            to: "a".into(),
            by: signer(1).key(),
            verdict: AckVerdict::Object,
            text: "no".into(),
            at_ms: 1,
        };
        let sa = signer(1).sign_ack(a.clone());
        assert!(sa.verify());
        assert!(
            !Signed {
                value: a,
                signature: m.signature
            }
            .verify()
        );
    }

    #[test]
    fn kept_keys_verify_exactly_as_fresh_ones_also_once_the_memo_is_emptied() {
        let m = signer(1).sign_message(message());
        let mut forged = m.clone();
        forged.value.sender = signer(2).key();
        for _ in 0..2 {
            assert!(m.verify());
            assert!(!forged.verify());
        }
        // More keys than the memo keeps: it is emptied and refilled.
        for n in 0..KEY_CACHE + 10 {
            let seed = tlog::hash::sha256(&n.to_be_bytes());
            assert!(verifying_key(&MemberSigner::from_seed(&seed).key().0).is_some());
        }
        assert!(m.verify());
        assert!(!forged.verify());
        // Some other bytes as the key: nothing verifies.
        let mut bad = m.clone();
        bad.value.sender = MemberKey([0xff; 32]);
        assert!(!bad.verify());
    }

    #[test]
    fn unknown_or_missing_keys_are_refused() {
        let mut v = message().to_value();
        if let Value::Map(p) = &mut v {
            p.push((t("extra"), Value::Null));
        }
        assert!(Message::from_value(&v).is_err());
        let mut v = message().to_value();
        if let Value::Map(p) = &mut v {
            p.retain(|(k, _)| *k != t("seq"));
        }
        assert!(Message::from_value(&v).is_err());
        assert!(Record::from_value("line.nope", &Value::Null).is_err());
    }

    #[test]
    fn a_receipt_names_one_to_the_limit_of_records_each_within_its_tree() {
        let item = |index| ReceiptItem {
            lane: Precedence::Routine,
            seq: index + 1,
            leaf_hash: [1; 32],
            index,
            refused: None,
        };
        let receipt = |items: Vec<ReceiptItem>, tree_size| {
            Record::Receipt(Receipt {
                origin: "alliance".into(),
                items,
                tree_size,
                root: [0; 32],
                form: ReceiptForm::Run,
            })
            .to_value()
        };
        let full: Vec<ReceiptItem> = (0..RECEIPT_ITEMS as u64).map(item).collect();
        let v = receipt(full.clone(), RECEIPT_ITEMS as u64);
        assert!(Record::from_value("line.receipt", &v).is_ok());
        assert!(cbor::encode(&v).len() < 60 * 1024);
        let mut over = full;
        over.push(item(RECEIPT_ITEMS as u64));
        for (items, size, why) in [
            (vec![], 1, "no record"),
            (over, RECEIPT_ITEMS as u64 + 1, "too many records"),
            (vec![item(5)], 5, "a record outside the tree"),
        ] {
            assert!(
                Record::from_value("line.receipt", &receipt(items, size)).is_err(),
                "{why}"
            );
        }
    }

    #[test]
    fn member_keys_parse_from_hex_only_when_valid() {
        let k = signer(3).key();
        assert_eq!(MemberKey::parse(&k.to_hex()), Ok(k));
        assert!(MemberKey::parse("abc").is_err());
        assert!(MemberKey::parse(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn times_read_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // 2000-02-29 (a leap day) 12:34:56 UTC.
        assert_eq!(rfc3339(951_827_696_000), "2000-02-29T12:34:56Z");
        assert_eq!(rfc3339(1_795_000_000_999), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn precedence_orders_flash_first() {
        let mut p = vec![
            Precedence::Routine,
            Precedence::Flash,
            Precedence::Priority,
            Precedence::Immediate,
        ];
        p.sort();
        assert_eq!(p, Precedence::ALL);
    }
}
