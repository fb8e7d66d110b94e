//! The line as a node knows it, rebuilt from its log: peers, members (its
//! own and the peers'), missions and accreditations (hosted and as guest),
//! channel notices, messages with their delivery and acknowledgement, and
//! per peer and lane the outbox (records not yet receipted) and the inbox
//! high-water mark. [`LineState::apply`] is the only mutation; it takes the
//! log's `line.*` entries in log order, live and at start alike.

use crate::record::*;
use std::collections::{BTreeMap, HashMap, VecDeque};
use uuid::Uuid;

/// How many settled messages (delivered and acknowledged) the line keeps
/// whole in memory, the newest: more than an operator's inbox shows (the
/// console lists the newest 300). Older ones keep a [`Settled`] stub and
/// are read back from the log when shown, so the line's memory is bounded
/// by what is unsettled, not by its history.
pub const KEEP_SETTLED: usize = 512;

#[derive(Clone, Debug)]
pub struct Peer {
    pub name: String,
    pub url: String,
    pub vkey: String,
    pub verifier: tlog::Verifier,
    /// The key the peer handed over from, while its records and receipts
    /// signed before the hand-over may still arrive.
    pub previous: Option<Handover>,
}

/// A peer's node key handed over to its next (its `line.key.rotated` to
/// this node): the key before, and what it still covers.
#[derive(Clone, Debug)]
pub struct Handover {
    pub vkey: String,
    pub verifier: tlog::Verifier,
    /// Per lane (FLASH first): the last of the peer's records to this node
    /// signed by the old key.
    pub sent: [u64; 4],
    /// Per lane: how far the peer had received this node's records; its
    /// receipts for those may be signed by the old key.
    pub received: [u64; 4],
    pub at_ms: Millis,
    /// Where this node's log holds the hand-over.
    pub index: u64,
}

/// The position of `lane` in the per-lane arrays (FLASH first).
pub fn lane_index(lane: Precedence) -> usize {
    Precedence::ALL.iter().position(|p| *p == lane).unwrap_or(0)
}

impl Peer {
    /// The key a record of this peer on `lane` numbered `seq` is signed
    /// with: the old key up to the hand-over, the pinned one after it.
    pub fn record_key(&self, lane: Precedence, seq: u64) -> &tlog::Verifier {
        match &self.previous {
            Some(h) if seq <= h.sent[lane_index(lane)] => &h.verifier,
            _ => &self.verifier,
        }
    }

    /// Whether a receipt of this peer naming `items` may be signed by the
    /// old key: every record it names was received before the hand-over.
    pub fn receipt_by_previous(&self, items: &[ReceiptItem]) -> Option<&tlog::Verifier> {
        let h = self.previous.as_ref()?;
        items
            .iter()
            .all(|i| i.seq <= h.received[lane_index(i.lane)])
            .then_some(&h.verifier)
    }
}

/// This node's own key hand-over: from which key to which, when, and the
/// FLASH record that carried it to each peer (complete once every peer
/// still pinned has receipted its record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnHandover {
    pub old: String,
    pub new: String,
    pub at_ms: Millis,
    /// The log index of the first hand-over record.
    pub index: u64,
    /// (peer, sequence number on its FLASH lane) of each record.
    pub peers: Vec<(String, u64)>,
}

#[derive(Clone, Debug)]
pub struct MemberEntry {
    pub party: String,
    pub member: Member,
    pub removed_at: Option<Millis>,
    /// The key this one replaced, and the key that replaced it.
    pub replaces: Option<MemberKey>,
    pub replaced_by: Option<MemberKey>,
    /// Declared compromised from this time, for this reason.
    pub compromised: Option<(Millis, String)>,
}

/// Polygons of (lat, lng) vertices.
pub type Polygons = Vec<Vec<(f64, f64)>>;

/// What two parties agree on by each proposing the same: it binds once
/// both parties' latest proposals are equal.
pub trait Terms: Clone + PartialEq + std::fmt::Debug {
    /// A proposal that withdraws the party from any agreement.
    fn is_withdrawal(&self) -> bool;
}

impl Terms for Polygons {
    fn is_withdrawal(&self) -> bool {
        self.is_empty()
    }
}

impl Terms for ContactTerms {
    fn is_withdrawal(&self) -> bool {
        self.line.is_empty()
    }
}

/// A party's latest proposal to a peer.
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal<T> {
    pub terms: T,
    pub at_ms: Millis,
    /// This node's log index of the proposal.
    pub index: u64,
}

/// What one pair of parties agrees on: each party's latest proposal and
/// the terms agreed (both proposals equal), which stay in force until
/// others are agreed or either party withdraws.
#[derive(Clone, Debug, PartialEq)]
pub struct Agreement<T> {
    pub ours: Option<Proposal<T>>,
    pub theirs: Option<Proposal<T>>,
    /// The agreed terms and the log index where the agreement was reached
    /// (the later of the two proposals).
    pub agreed: Option<(T, u64)>,
    /// Every agreement reached, in order (the current one last, if any).
    pub history: Vec<(T, u64)>,
}

impl<T> Default for Agreement<T> {
    fn default() -> Self {
        Agreement {
            ours: None,
            theirs: None,
            agreed: None,
            history: Vec::new(),
        }
    }
}

/// The deconfliction area of one pair of parties.
pub type Area = Agreement<Polygons>;

impl<T: Terms> Agreement<T> {
    /// `proposed` (this party's proposal awaits the peer's), `offered`
    /// (the peer's awaits this party's), `agreed`, or `none`. A new
    /// proposal leaves an earlier agreement in force: `proposed` or
    /// `offered` with `agreed` still set.
    pub fn status(&self) -> &'static str {
        fn pending<T: Terms>(p: &Option<Proposal<T>>) -> Option<&Proposal<T>> {
            p.as_ref().filter(|p| !p.terms.is_withdrawal())
        }
        let (ours, theirs) = (pending(&self.ours), pending(&self.theirs));
        let differ = self.ours.as_ref().map(|p| &p.terms) != self.theirs.as_ref().map(|p| &p.terms);
        let index = |p: &Option<Proposal<T>>| p.as_ref().map(|p| p.index);
        // Of two differing proposals, the later one awaits the other party
        // (or, when it withdraws, the earlier one still does).
        let ours_awaits = match (ours, theirs) {
            (Some(_), Some(_)) => index(&self.ours) > index(&self.theirs),
            (Some(_), None) => true,
            _ => false,
        };
        if differ && ours_awaits {
            "proposed"
        } else if differ && theirs.is_some() {
            "offered"
        } else if self.agreed.is_some() {
            "agreed"
        } else {
            "none"
        }
    }

    fn propose(&mut self, ours: bool, p: Proposal<T>) {
        let withdrawn = p.terms.is_withdrawal();
        let index = p.index;
        if ours {
            self.ours = Some(p);
        } else {
            self.theirs = Some(p);
        }
        if withdrawn {
            self.agreed = None;
        } else if let (Some(o), Some(t)) = (&self.ours, &self.theirs)
            && o.terms == t.terms
            && self.agreed.as_ref().map(|(a, _)| a) != Some(&o.terms)
        {
            self.agreed = Some((o.terms.clone(), index));
            self.history.push((o.terms.clone(), index));
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Mission {
    pub quota: u32,
    pub closed: Option<(Millis, String)>,
}

#[derive(Clone, Debug)]
pub struct AccreditationEntry {
    pub accreditation: Accreditation,
    pub revoked: Option<(Millis, String)>,
    /// Ended by a lowered quota.
    pub ended: Option<(Millis, String)>,
}

/// Where a message stands from this node's side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Committed here, not yet receipted by the peer.
    Queued,
    /// In the receiving node's log at `index` (for an incoming message:
    /// this node's index).
    Delivered { index: u64 },
    /// Kept as evidence by the receiving node but refused.
    Refused { reason: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct MessageEntry {
    pub signed: Signed<Message>,
    /// This node's log index of the message.
    pub index: u64,
    pub outgoing: bool,
    pub delivery: Delivery,
    /// Boxed: most messages held are never acknowledged, and every entry
    /// would otherwise carry an acknowledgement's room.
    pub ack: Option<Box<Signed<Ack>>>,
    /// This node's log index of the acknowledgement.
    pub ack_index: Option<u64>,
}

/// Positions of the line's message vector summarised together.
pub const SPAN: usize = 1024;

/// What a listing needs to know of [`SPAN`] positions before reading them.
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    /// The highest log index among them.
    max_index: u64,
    /// How many are held whole.
    whole: u32,
}

/// A settled message out of memory (delivered and acknowledged, older
/// than the newest [`KEEP_SETTLED`]): where this node's log holds it and
/// its acknowledgement, and what deciding still asks of it. Nothing about
/// it can change any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settled {
    /// This node's log index of the message.
    pub index: u64,
    /// The receiving node's log index of it (incoming: `index`).
    pub delivered: u64,
    /// This node's log index of the acknowledgement.
    pub ack: u64,
    /// The first bytes of the member's signature of the message, and of
    /// the acknowledgement's: the same signed record sent again is known
    /// as the same (deterministic signatures over verified records).
    pub message_sig: [u8; 8],
    pub ack_sig: [u8; 8],
    /// The other party, as a position in the line's peer names.
    peer: u32,
    pub outgoing: bool,
}

/// A message as the line holds it: whole, or settled and out of memory.
#[derive(Clone, Copy, Debug)]
pub enum Held<'a> {
    Whole(&'a MessageEntry),
    Settled(&'a Settled),
}

impl<'a> Held<'a> {
    /// This node's log index of the message.
    pub fn index(&self) -> u64 {
        match self {
            Held::Whole(e) => e.index,
            Held::Settled(s) => s.index,
        }
    }
    pub fn outgoing(&self) -> bool {
        match self {
            Held::Whole(e) => e.outgoing,
            Held::Settled(s) => s.outgoing,
        }
    }
    pub fn whole(&self) -> Option<&'a MessageEntry> {
        match self {
            Held::Whole(e) => Some(e),
            Held::Settled(_) => None,
        }
    }
}

#[derive(Clone, Debug)]
enum Slot {
    Whole(Box<MessageEntry>),
    Settled(Settled),
}

impl Slot {
    fn held(&self) -> Held<'_> {
        match self {
            Slot::Whole(e) => Held::Whole(e),
            Slot::Settled(s) => Held::Settled(s),
        }
    }
}

/// One of this party's notices of an operation to a peer: which extents
/// it names and whether the peer accepted it.
#[derive(Clone, Debug)]
struct Notice {
    message: Uuid,
    peer: String,
    extents_sha256: [u8; 32],
    accepted: bool,
}

/// The first eight bytes of a signature.
fn sig8(sig: &[u8; 64]) -> [u8; 8] {
    let mut out = [0; 8];
    out.copy_from_slice(&sig[..8]);
    out
}

/// Settled message `s` made whole again from this node's log entries at
/// `s.index` (the message) and `s.ack` (its acknowledgement); `None` if
/// they are not those records.
pub fn read_back(s: &Settled, message: &[u8], ack: &[u8]) -> Option<MessageEntry> {
    let record = |bytes: &[u8]| {
        crate::decide::line_entry(bytes)?
            .ok()
            .map(|(_, l)| l.record)
    };
    let Record::Message(m) = record(message)? else {
        return None;
    };
    let Record::Ack(a) = record(ack)? else {
        return None;
    };
    (sig8(&m.signature) == s.message_sig
        && sig8(&a.signature) == s.ack_sig
        && a.value.message == m.value.id)
        .then(|| MessageEntry {
            signed: m,
            index: s.index,
            outgoing: s.outgoing,
            delivery: Delivery::Delivered { index: s.delivered },
            ack: Some(Box::new(a)),
            ack_index: Some(s.ack),
        })
}

/// A record of this node waiting for the peer's receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    pub index: u64,
    pub leaf_hash: [u8; 32],
    pub message: Option<Uuid>,
}

#[derive(Clone, Debug, Default)]
pub struct OutLane {
    /// The last sequence number assigned.
    pub last_seq: u64,
    /// The highest receipted.
    pub delivered: u64,
    pub pending: BTreeMap<u64, Pending>,
}

#[derive(Clone, Debug, Default)]
pub struct InLane {
    pub received: u64,
    /// Sequence number → this node's log index of its receipt (to answer a
    /// resent record with the same receipt).
    pub receipts: Receipted,
}

/// The log index of this node's receipt for each received sequence
/// number of a lane, kept as runs: one receipt covers a run of
/// consecutive records, so memory grows with receipts (one per batch
/// under load), not with records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receipted {
    /// First sequence number of a run → (its last, the receipt's index).
    runs: BTreeMap<u64, (u64, u64)>,
}

impl Receipted {
    /// Notes that `seq`'s receipt is at `index` (replacing any earlier).
    pub fn insert(&mut self, seq: u64, index: u64) {
        if let Some((_, (last, i))) = self.runs.iter_mut().next_back() {
            if *last < seq {
                if *i == index && *last + 1 == seq {
                    *last = seq;
                    return;
                }
            } else if let Some((&start, &(last, i))) = self.runs.range(..=seq).next_back()
                && seq <= last
            {
                // Inside a run: split it around `seq`.
                self.runs.remove(&start);
                if start < seq {
                    self.runs.insert(start, (seq - 1, i));
                }
                if seq < last {
                    self.runs.insert(seq + 1, (last, i));
                }
            }
        }
        self.runs.insert(seq, (seq, index));
    }

    /// Where `seq`'s receipt is, if it was receipted.
    pub fn get(&self, seq: u64) -> Option<u64> {
        self.runs
            .range(..=seq)
            .next_back()
            .filter(|(_, (last, _))| seq <= *last)
            .map(|(_, (_, i))| *i)
    }

    /// How many runs are kept.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }
}

/// A channel's deadlines (ms, FLASH first) from `effective` on, set by
/// the record at `index` of the log.
type DeadlineSetting = (Millis, u64, Vec<u64>);

#[derive(Clone, Debug)]
struct Awaiting {
    origin: String,
    index: u64,
    leaf_hash: [u8; 32],
    entry: LineEntry,
}

#[derive(Clone, Debug)]
pub struct LineState {
    me: String,
    peers: BTreeMap<String, Peer>,
    members: HashMap<MemberKey, MemberEntry>,
    sender_seq: HashMap<MemberKey, u64>,
    missions: BTreeMap<(String, String), Mission>,
    accreditations: BTreeMap<Uuid, AccreditationEntry>,
    channels: BTreeMap<(String, Sphere), Vec<ChannelNotice>>,
    /// Every message this node holds, in log order (a vector: its memory
    /// is what the messages take, where a hash table would take twice
    /// that once it doubles): whole, or settled and out of memory.
    messages: Vec<Slot>,
    /// Position in `messages` by message id.
    message_at: HashMap<Uuid, u32>,
    /// Per [`SPAN`] positions of `messages`: the highest log index there
    /// and how many are whole, so that a listing skips what cannot match
    /// (the vector is in the order messages took effect, not by index).
    spans: Vec<Span>,
    /// Positions of the settled messages still whole, in the order they
    /// settled: past `keep_settled`, the oldest leaves memory.
    settling: VecDeque<u32>,
    keep_settled: usize,
    /// How many messages are settled out of memory.
    put_away: usize,
    /// The other parties named by settled messages.
    peer_names: Vec<String>,
    /// The messages of each group this node holds (its own: one per
    /// addressee; a peer's: the one addressed here), in log order.
    groups: HashMap<Uuid, Vec<Uuid>>,
    out: HashMap<(String, Precedence), OutLane>,
    inbound: HashMap<(String, Precedence), InLane>,
    /// Replaying the log: the peer's records since this node's last
    /// receipt, which take effect (or are refused) when the receipt that
    /// names them comes.
    awaiting: Vec<Awaiting>,
    /// Deciding live: the peer (origin) and the receipt items of the run
    /// of its records appended since this node's last receipt.
    unreceipted: Option<(String, Vec<ReceiptItem>)>,
    areas: BTreeMap<String, Area>,
    /// The line of contact agreed with each peer, and the proposals.
    contact_lines: BTreeMap<String, Agreement<ContactTerms>>,
    /// Whom each peer pins (name, key), as it last announced, and when.
    mesh: BTreeMap<String, (Vec<(String, String)>, Millis)>,
    /// (peer, entity id) of this party's intents and constraints the peer holds.
    shared: std::collections::HashSet<(String, String)>,
    contact: std::collections::BTreeSet<Uuid>,
    /// This party's operation notices by the operation they are about.
    notices: HashMap<Uuid, Vec<Notice>>,
    /// Per (other party, sphere): the deadline settings in force.
    deadlines: BTreeMap<(String, Sphere), Vec<DeadlineSetting>>,
    /// This party's public statements, by log index, in order.
    statements: Vec<(u64, Statement)>,
    /// Who saw what: (log index, access), in order.
    access: Vec<(u64, Access)>,
    /// Per message, the members it was first shown to, and when.
    seen: HashMap<Uuid, Vec<(MemberKey, Millis)>>,
    /// This node's key hand-overs, in order.
    handovers: Vec<OwnHandover>,
}

impl LineState {
    /// An empty line for the node whose log origin is `me`.
    pub fn new(me: impl Into<String>) -> Self {
        LineState {
            me: me.into(),
            peers: BTreeMap::new(),
            members: HashMap::new(),
            sender_seq: HashMap::new(),
            missions: BTreeMap::new(),
            accreditations: BTreeMap::new(),
            channels: BTreeMap::new(),
            messages: Vec::new(),
            message_at: HashMap::new(),
            settling: VecDeque::new(),
            keep_settled: KEEP_SETTLED,
            put_away: 0,
            spans: Vec::new(),
            peer_names: Vec::new(),
            groups: HashMap::new(),
            out: HashMap::new(),
            inbound: HashMap::new(),
            awaiting: Vec::new(),
            unreceipted: None,
            handovers: Vec::new(),
            areas: BTreeMap::new(),
            contact_lines: BTreeMap::new(),
            mesh: BTreeMap::new(),
            shared: std::collections::HashSet::new(),
            contact: std::collections::BTreeSet::new(),
            notices: HashMap::new(),
            statements: Vec::new(),
            access: Vec::new(),
            seen: HashMap::new(),
            deadlines: BTreeMap::new(),
        }
    }

    /// Keeps `n` settled messages whole instead of [`KEEP_SETTLED`].
    pub fn set_keep_settled(&mut self, n: usize) {
        self.keep_settled = n;
        while self.settling.len() > n {
            if let Some(old) = self.settling.pop_front() {
                self.put_away(old);
            }
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// Applies one `line.*` entry of the log: `origin` is the entry's
    /// origin, `index` its position in this node's log.
    pub fn apply(&mut self, origin: &str, index: u64, leaf_hash: [u8; 32], entry: LineEntry) {
        if origin == self.me {
            if let Some(env) = &entry.envelope {
                let lane = self.out.entry((env.to.clone(), env.lane)).or_default();
                lane.last_seq = lane.last_seq.max(env.seq);
                let message = match &entry.record {
                    Record::Message(m) => Some(m.value.id),
                    _ => None,
                };
                lane.pending.insert(
                    env.seq,
                    Pending {
                        index,
                        leaf_hash,
                        message,
                    },
                );
            }
            if let (Some(env), Record::Airspace { kind, body }) = (&entry.envelope, &entry.record)
                && let Some(id) = airspace_id(body)
            {
                let key = (env.to.clone(), id);
                if kind.ends_with(".removed") {
                    self.shared.remove(&key);
                } else {
                    self.shared.insert(key);
                }
            }
            match entry.record {
                Record::Receipt(r) => self.issued_receipt(index, r),
                Record::KeyRotated {
                    old, new, at_ms, ..
                } => {
                    let to = entry.envelope.map(|e| (e.to, e.seq));
                    match self.handovers.last_mut() {
                        Some(h) if h.new == new && h.old == old => h.peers.extend(to),
                        _ => self.handovers.push(OwnHandover {
                            old,
                            new,
                            at_ms,
                            index,
                            peers: to.into_iter().collect(),
                        }),
                    }
                }
                record => self.effect(&self.me.clone(), index, record),
            }
            return;
        }
        match entry.record {
            Record::Receipt(r) if r.origin == self.me => {
                for item in r.items {
                    let lane = self.out.entry((origin.to_string(), item.lane)).or_default();
                    lane.delivered = lane.delivered.max(item.seq);
                    if let Some(p) = lane.pending.remove(&item.seq)
                        && let Some(id) = p.message
                        && let Some(m) = self.message_mut(&id)
                    {
                        m.delivery = match item.refused {
                            None => Delivery::Delivered { index: item.index },
                            Some(reason) => Delivery::Refused { reason },
                        };
                        self.settle(&id);
                    }
                }
            }
            _ => self.awaiting.push(Awaiting {
                origin: origin.to_string(),
                index,
                leaf_hash,
                entry,
            }),
        }
    }

    /// A peer's record this node has just appended to its log, while
    /// deciding (not replaying): it takes effect now — the records after
    /// it are decided against it — and waits for this node's receipt for
    /// the run it belongs to ([`LineState::unreceipted`]).
    #[allow(clippy::too_many_arguments)]
    pub fn apply_received(
        &mut self,
        origin: &str,
        index: u64,
        leaf_hash: [u8; 32],
        entry: LineEntry,
        lane: Precedence,
        seq: u64,
        refused: Option<String>,
    ) {
        let l = self.inbound.entry((origin.to_string(), lane)).or_default();
        l.received = l.received.max(seq);
        self.take_effect(origin, index, entry.record, refused.clone());
        let item = ReceiptItem {
            lane,
            seq,
            leaf_hash,
            index,
            refused,
        };
        match &mut self.unreceipted {
            Some((o, items)) if o == origin => items.push(item),
            _ => self.unreceipted = Some((origin.to_string(), vec![item])),
        }
    }

    /// The peer and receipt items of the records appended since this
    /// node's last receipt (deciding live), if any.
    pub fn unreceipted(&self) -> Option<(&str, &[ReceiptItem])> {
        self.unreceipted
            .as_ref()
            .map(|(o, items)| (o.as_str(), items.as_slice()))
    }

    /// This node's receipt for the run of peer records just before it.
    fn issued_receipt(&mut self, index: u64, r: Receipt) {
        for item in &r.items {
            let lane = self
                .inbound
                .entry((r.origin.clone(), item.lane))
                .or_default();
            lane.received = lane.received.max(item.seq);
            lane.receipts.insert(item.seq, index);
        }
        if self
            .unreceipted
            .as_ref()
            .is_some_and(|(o, _)| *o == r.origin)
        {
            self.unreceipted = None;
        }
        // Replaying: the records it names take effect now, in log order.
        for a in std::mem::take(&mut self.awaiting) {
            if let Some(item) = r.items.iter().find(|i| i.leaf_hash == a.leaf_hash) {
                self.take_effect(&a.origin, a.index, a.entry.record, item.refused.clone());
            }
        }
    }

    /// A received record's effect: accepted, or kept and visibly refused.
    fn take_effect(&mut self, origin: &str, index: u64, record: Record, refused: Option<String>) {
        match (refused, record) {
            (None, record) => self.effect(origin, index, record),
            (Some(reason), Record::Message(m)) => {
                // Kept, visibly refused: the host's operators see attempts.
                self.insert_message(m, index, false, Delivery::Refused { reason });
            }
            (Some(_), _) => {}
        }
    }

    fn insert_message(&mut self, m: Signed<Message>, index: u64, outgoing: bool, d: Delivery) {
        let id = m.value.id;
        if self.message_at.contains_key(&id) {
            return;
        }
        if !matches!(d, Delivery::Refused { .. }) {
            let s = self.sender_seq.entry(m.value.sender).or_default();
            *s = (*s).max(m.value.seq);
        }
        if let Some(g) = &m.value.group {
            self.groups.entry(g.id).or_default().push(id);
        }
        if let Body::OperationNotification {
            intent,
            extents_sha256: Some(h),
            ..
        } = &m.value.body
            && outgoing
        {
            self.notices.entry(*intent).or_default().push(Notice {
                message: id,
                peer: m.value.to.clone(),
                extents_sha256: *h,
                accepted: false,
            });
        }
        let at = self.messages.len();
        if at.is_multiple_of(SPAN) {
            self.spans.push(Span::default());
        }
        if let Some(span) = self.spans.last_mut() {
            span.max_index = span.max_index.max(index);
            span.whole += 1;
        }
        self.message_at.insert(id, at as u32);
        self.messages.push(Slot::Whole(Box::new(MessageEntry {
            signed: m,
            index,
            outgoing,
            delivery: d,
            ack: None,
            ack_index: None,
        })));
    }

    /// Message `id` settled if it is delivered and acknowledged (called
    /// when either happens): the oldest settled messages past
    /// `keep_settled` leave memory.
    fn settle(&mut self, id: &Uuid) {
        let Some(&at) = self.message_at.get(id) else {
            return;
        };
        let settled = matches!(
            self.messages.get(at as usize),
            Some(Slot::Whole(e)) if e.ack.is_some() && matches!(e.delivery, Delivery::Delivered { .. })
        );
        if !settled {
            return;
        }
        self.settling.push_back(at);
        while self.settling.len() > self.keep_settled {
            if let Some(old) = self.settling.pop_front() {
                self.put_away(old);
            }
        }
    }

    /// Replaces the settled message at `at` with its stub.
    fn put_away(&mut self, at: u32) {
        let Some(Slot::Whole(e)) = self.messages.get(at as usize) else {
            return;
        };
        let (Delivery::Delivered { index: delivered }, Some(ack), Some(ack_index)) =
            (&e.delivery, &e.ack, e.ack_index)
        else {
            return;
        };
        let v = &e.signed.value;
        let peer = if e.outgoing { &v.to } else { &v.from };
        let stub = Settled {
            index: e.index,
            delivered: *delivered,
            ack: ack_index,
            message_sig: sig8(&e.signed.signature),
            ack_sig: sig8(&ack.signature),
            peer: 0,
            outgoing: e.outgoing,
        };
        let peer = match self.peer_names.iter().position(|p| p == peer) {
            Some(p) => p,
            None => {
                self.peer_names.push(peer.clone());
                self.peer_names.len() - 1
            }
        };
        self.messages[at as usize] = Slot::Settled(Settled {
            peer: peer as u32,
            ..stub
        });
        self.put_away += 1;
        if let Some(span) = self.spans.get_mut(at as usize / SPAN) {
            span.whole -= 1;
        }
    }

    /// What an accepted record changes.
    fn effect(&mut self, origin: &str, index: u64, record: Record) {
        match record {
            Record::PeerAdded { name, url, vkey } => {
                if let Ok(verifier) = tlog::Verifier::parse(&vkey) {
                    self.peers.insert(
                        name.clone(),
                        Peer {
                            name,
                            url,
                            vkey,
                            verifier,
                            previous: None,
                        },
                    );
                }
            }
            // An area set alone, as earlier logs hold it: this party's
            // proposal.
            Record::PeerArea { peer, polygons } => {
                self.areas.entry(peer).or_default().propose(
                    true,
                    Proposal {
                        terms: polygons,
                        at_ms: 0,
                        index,
                    },
                );
            }
            // A peer's hand-over: its new key pinned, the old one kept for
            // what was signed before.
            Record::KeyRotated {
                by,
                old,
                new,
                sent,
                received,
                at_ms,
            } => {
                if let (Some(p), Ok(verifier)) =
                    (self.peers.get_mut(&by), tlog::Verifier::parse(&new))
                    && p.vkey == old
                {
                    p.previous = Some(Handover {
                        vkey: old,
                        verifier: p.verifier.clone(),
                        sent,
                        received,
                        at_ms,
                        index,
                    });
                    p.vkey = new;
                    p.verifier = verifier;
                }
            }
            Record::PeersAnnounced { by, peers, at_ms } => {
                if by != self.me {
                    self.mesh.insert(by, (peers, at_ms));
                }
            }
            Record::AreaProposed {
                by,
                peer,
                polygons,
                at_ms,
            } => {
                let ours = by == self.me;
                let other = if ours { peer } else { by };
                self.areas.entry(other).or_default().propose(
                    ours,
                    Proposal {
                        terms: polygons,
                        at_ms,
                        index,
                    },
                );
            }
            Record::ContactProposed {
                by,
                peer,
                terms,
                at_ms,
            } => {
                let ours = by == self.me;
                let other = if ours { peer } else { by };
                self.contact_lines.entry(other).or_default().propose(
                    ours,
                    Proposal {
                        terms,
                        at_ms,
                        index,
                    },
                );
            }
            // Nothing is shared with it any more; pinned again, it needs
            // an area agreed again.
            Record::PeerRemoved { name, .. } => {
                self.peers.remove(&name);
                self.areas.remove(&name);
                // Its line of contact no longer binds (the history stays:
                // the node removes what it bound).
                if let Some(c) = self.contact_lines.get_mut(&name) {
                    (c.ours, c.theirs, c.agreed) = (None, None, None);
                }
            }
            Record::ContactDesignated { constraint } => {
                self.contact.insert(constraint);
            }
            Record::ChannelDeadlines {
                by,
                peer,
                sphere,
                deadlines_ms,
                effective_ms,
            } => {
                let other = if by == self.me { peer } else { by };
                self.deadlines.entry((other, sphere)).or_default().push((
                    effective_ms,
                    index,
                    deadlines_ms,
                ));
            }
            // What a peer's shared airspace changes do is the airspace's
            // business (node::share); the line only carries them.
            Record::Airspace { .. } => {}
            Record::MemberRegistered(m) => {
                // A key declared compromised never comes back.
                if self
                    .members
                    .get(&m.key)
                    .is_some_and(|e| e.compromised.is_some())
                {
                    return;
                }
                let replaces = self.members.get(&m.key).and_then(|e| e.replaces);
                self.members.insert(
                    m.key,
                    MemberEntry {
                        party: origin.to_string(),
                        member: m,
                        removed_at: None,
                        replaces,
                        replaced_by: None,
                        compromised: None,
                    },
                );
            }
            Record::MemberRemoved { key, at_ms } => {
                if let Some(m) = self.members.get_mut(&key) {
                    m.removed_at.get_or_insert(at_ms);
                }
            }
            Record::MemberReplaced { old, new, at_ms } => {
                if let Some(m) = self.members.get_mut(&old) {
                    m.removed_at.get_or_insert(at_ms);
                    m.replaced_by = Some(new.key);
                }
                self.members.insert(
                    new.key,
                    MemberEntry {
                        party: origin.to_string(),
                        member: new,
                        removed_at: None,
                        replaces: Some(old),
                        replaced_by: None,
                        compromised: None,
                    },
                );
            }
            Record::MemberCompromised {
                key,
                from_ms,
                reason,
                at_ms,
            } => {
                if let Some(m) = self.members.get_mut(&key) {
                    m.removed_at.get_or_insert(at_ms);
                    // The earliest time stated holds.
                    match &m.compromised {
                        Some((from, _)) if *from <= from_ms => {}
                        _ => m.compromised = Some((from_ms, reason)),
                    }
                }
            }
            Record::QuotaSet {
                guest,
                quota,
                ending,
                at_ms,
            } => {
                self.missions
                    .entry((origin.to_string(), guest))
                    .or_default()
                    .quota = quota;
                for id in ending {
                    if let Some(a) = self.accreditations.get_mut(&id) {
                        a.ended
                            .get_or_insert((at_ms, format!("positions quota lowered to {quota}")));
                    }
                }
            }
            Record::Accredited(a) => {
                self.missions
                    .entry((a.host.clone(), a.guest.clone()))
                    .or_default();
                self.accreditations
                    .entry(a.id)
                    .or_insert(AccreditationEntry {
                        accreditation: a,
                        revoked: None,
                        ended: None,
                    });
            }
            // Effective at `at_ms` (notice may be given); the earliest
            // revocation stands.
            Record::Revoked { id, reason, at_ms } => {
                if let Some(a) = self.accreditations.get_mut(&id)
                    && a.revoked.as_ref().is_none_or(|(at, _)| at_ms < *at)
                {
                    a.revoked = Some((at_ms, reason));
                }
            }
            Record::MissionClosed {
                guest,
                effective_ms,
                reason,
            } => {
                self.missions
                    .entry((origin.to_string(), guest))
                    .or_default()
                    .closed
                    .get_or_insert((effective_ms, reason));
            }
            Record::Channel(n) => {
                let other = if n.by == self.me {
                    n.peer.clone()
                } else {
                    n.by.clone()
                };
                let v = self.channels.entry((other, n.sphere)).or_default();
                v.push(n);
            }
            Record::Message(m) => {
                let outgoing = origin == self.me;
                let d = if outgoing {
                    Delivery::Queued
                } else {
                    Delivery::Delivered { index }
                };
                self.insert_message(m, index, outgoing, d);
            }
            Record::Ack(a) => {
                let id = a.value.message;
                let accept = a.value.verdict == AckVerdict::Accept;
                let Some(m) = self.message_mut(&id) else {
                    return;
                };
                if m.ack.is_some() {
                    return;
                }
                m.ack = Some(Box::new(a));
                m.ack_index = Some(index);
                if let (true, Body::OperationNotification { intent, .. }) =
                    (accept, &m.signed.value.body)
                {
                    let intent = *intent;
                    for n in self.notices.get_mut(&intent).into_iter().flatten() {
                        n.accepted |= n.message == id;
                    }
                }
                self.settle(&id);
            }
            Record::Statement(st) => self.statements.push((index, st)),
            Record::Access(a) => {
                if a.what == "message.seen"
                    && let Some(id) = a.subject.as_deref().and_then(|s| Uuid::parse_str(s).ok())
                {
                    self.seen.entry(id).or_default().push((a.member, a.at_ms));
                }
                self.access.push((index, a));
            }
            // Evidence only: nothing of the line's state changes.
            Record::Receipt(_) | Record::UssNotified(_) => {}
        }
    }

    // ---- queries ----

    /// The deconfliction area agreed with `peer` (empty: nothing shared).
    /// The deconfliction area agreed with `peer` (none: nothing shared).
    pub fn area(&self, peer: &str) -> &[Vec<(f64, f64)>] {
        self.areas
            .get(peer)
            .and_then(|a| a.agreed.as_ref())
            .map(|(p, _)| p.as_slice())
            .unwrap_or(&[])
    }
    /// The line of contact with `peer`: both parties' proposals and the
    /// agreement.
    pub fn contact_line(&self, peer: &str) -> Option<&Agreement<ContactTerms>> {
        self.contact_lines.get(peer)
    }
    /// Every peer's line-of-contact agreement.
    pub fn contact_lines(&self) -> impl Iterator<Item = (&String, &Agreement<ContactTerms>)> {
        self.contact_lines.iter()
    }
    /// Whether what `key` signed at `at` is suspect: the key was declared
    /// compromised from then or earlier (the time and the reason).
    pub fn suspect(&self, key: &MemberKey, at: Millis) -> Option<&(Millis, String)> {
        self.members
            .get(key)
            .and_then(|m| m.compromised.as_ref())
            .filter(|(from, _)| at >= *from)
    }
    /// This node's key hand-overs, in log order.
    pub fn handovers(&self) -> &[OwnHandover] {
        &self.handovers
    }

    /// The key this node's log has handed over to last, if any.
    pub fn own_key(&self) -> Option<&str> {
        self.handovers.last().map(|h| h.new.as_str())
    }

    /// Per peer still pinned, whether it has receipted this node's last
    /// key hand-over (empty when there was none).
    pub fn handover_receipts(&self) -> Vec<(String, bool)> {
        let Some(h) = self.handovers.last() else {
            return vec![];
        };
        h.peers
            .iter()
            .filter(|(p, _)| self.peers.contains_key(p))
            .map(|(p, seq)| {
                let done = self
                    .out_lane(p, Precedence::Flash)
                    .is_some_and(|l| l.delivered >= *seq);
                (p.clone(), done)
            })
            .collect()
    }

    /// Whether every peer still pinned has receipted this node's last key
    /// hand-over (true when there was none).
    pub fn handover_complete(&self) -> bool {
        self.handover_receipts().iter().all(|(_, done)| *done)
    }

    /// Whom `party` pins (name, key), as it last announced, and when.
    pub fn announced_peers(&self, party: &str) -> Option<&(Vec<(String, String)>, Millis)> {
        self.mesh.get(party)
    }
    /// Both parties' proposals of the area with `peer` and the agreement.
    pub fn area_state(&self, peer: &str) -> Option<&Area> {
        self.areas.get(peer)
    }
    /// The acknowledgement deadline of `precedence` on the channel with
    /// `peer` for a message created at `at`: the latest setting by either
    /// party in effect then, else the default of the precedence.
    pub fn ack_deadline(
        &self,
        peer: &str,
        sphere: Sphere,
        precedence: Precedence,
        at: Millis,
    ) -> Millis {
        let i = Precedence::ALL
            .iter()
            .position(|p| *p == precedence)
            .unwrap_or(0);
        self.deadlines
            .get(&(peer.to_string(), sphere))
            .and_then(|v| {
                v.iter()
                    .filter(|(e, _, _)| *e <= at)
                    .max_by_key(|(e, idx, _)| (*e, *idx))
                    .and_then(|(_, _, d)| d.get(i).copied())
            })
            .unwrap_or_else(|| precedence.ack_deadline_ms())
    }

    /// When a message must be acknowledged by.
    pub fn deadline_ms(&self, m: &MessageEntry) -> Millis {
        let v = &m.signed.value;
        let peer = if m.outgoing { &v.to } else { &v.from };
        v.created_ms
            .saturating_add(self.ack_deadline(peer, v.sphere, v.precedence, v.created_ms))
    }

    /// Accepted, not acknowledged, past its deadline.
    pub fn overdue(&self, m: &MessageEntry, now: Millis) -> bool {
        m.ack.is_none()
            && !matches!(m.delivery, Delivery::Refused { .. })
            && now > self.deadline_ms(m)
    }

    /// The constraints designated as the line of contact.
    pub fn contact_constraints(&self) -> impl Iterator<Item = &Uuid> {
        self.contact.iter()
    }

    /// This party's notices of operation `intent` with these extents, sent
    /// to `peer`: (message, acknowledged with acceptance).
    pub fn operation_notices(
        &self,
        peer: &str,
        intent: &Uuid,
        extents_sha256: &[u8; 32],
    ) -> impl Iterator<Item = (&Uuid, bool)> {
        self.notices
            .get(intent)
            .into_iter()
            .flatten()
            .filter(move |n| n.peer == peer && n.extents_sha256 == *extents_sha256)
            .map(|n| (&n.message, n.accepted))
    }

    /// Peers with a deconfliction area.
    /// The agreed deconfliction areas, per peer.
    pub fn areas(&self) -> impl Iterator<Item = (&String, &Vec<Vec<(f64, f64)>>)> {
        self.areas
            .iter()
            .filter_map(|(peer, a)| a.agreed.as_ref().map(|(p, _)| (peer, p)))
    }
    /// Whether the peer holds this party's entity `id` (shared and not
    /// since removed).
    pub fn shared_with(&self, peer: &str, id: &str) -> bool {
        self.shared.contains(&(peer.to_string(), id.to_string()))
    }

    pub fn peer(&self, name: &str) -> Option<&Peer> {
        self.peers.get(name)
    }
    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }
    pub fn member(&self, key: &MemberKey) -> Option<&MemberEntry> {
        self.members.get(key)
    }
    pub fn members(&self) -> impl Iterator<Item = &MemberEntry> {
        self.members.values()
    }
    /// The last message sequence number of `sender` seen here.
    pub fn sender_seq(&self, sender: &MemberKey) -> u64 {
        self.sender_seq.get(sender).copied().unwrap_or(0)
    }
    pub fn mission(&self, host: &str, guest: &str) -> Option<&Mission> {
        self.missions.get(&(host.to_string(), guest.to_string()))
    }
    pub fn missions(&self) -> impl Iterator<Item = (&(String, String), &Mission)> {
        self.missions.iter()
    }
    pub fn accreditation(&self, id: &Uuid) -> Option<&AccreditationEntry> {
        self.accreditations.get(id)
    }
    pub fn accreditations(&self) -> impl Iterator<Item = &AccreditationEntry> {
        self.accreditations.values()
    }

    /// Why `a` does not let its member act at `now`, if it does not.
    pub fn inactive_reason(&self, a: &AccreditationEntry, now: Millis) -> Option<String> {
        self.inactive_reason_at(a, now, 0)
    }

    /// As [`LineState::inactive_reason`], but taking an accreditation that
    /// starts up to `early` ms after `now` as started (a guest's node whose
    /// clock is behind the host's).
    fn inactive_reason_at(
        &self,
        a: &AccreditationEntry,
        now: Millis,
        early: Millis,
    ) -> Option<String> {
        let acc = &a.accreditation;
        // The member's own revocation first: it is the more specific reason.
        if let Some((at, reason)) = &a.revoked
            && *at <= now
        {
            return Some(format!("revoked at {}: {reason}", rfc3339(*at)));
        }
        if let Some(m) = self.mission(&acc.host, &acc.guest)
            && let Some((at, reason)) = &m.closed
            && *at <= now
        {
            return Some(format!(
                "the mission was closed at {}: {reason}",
                rfc3339(*at)
            ));
        }
        if let Some((at, reason)) = &a.ended
            && *at <= now
        {
            return Some(format!("ended at {}: {reason}", rfc3339(*at)));
        }
        if now.saturating_add(early) < acc.valid_from {
            return Some(format!("valid only from {}", rfc3339(acc.valid_from)));
        }
        if now >= acc.valid_until {
            return Some(format!("expired at {}", rfc3339(acc.valid_until)));
        }
        None
    }

    /// Accreditations of a mission that let their member act at `now`.
    pub fn active_accreditations(
        &self,
        host: &str,
        guest: &str,
        now: Millis,
    ) -> Vec<&AccreditationEntry> {
        self.accreditations
            .values()
            .filter(|a| a.accreditation.host == host && a.accreditation.guest == guest)
            .filter(|a| self.inactive_reason(a, now).is_none())
            .collect()
    }

    /// `Ok` if `member` of `guest` may use `sphere` at `host` at `now`,
    /// else the reason. An accreditation starting up to `early` ms after
    /// `now` counts as started: the guest's own node passes its clock-skew
    /// tolerance, the host (whose clock decides) 0.
    pub fn accredited(
        &self,
        host: &str,
        guest: &str,
        member: &MemberKey,
        sphere: Sphere,
        now: Millis,
        early: Millis,
    ) -> Result<(), String> {
        let mut reason = format!("no accreditation at {host}");
        for a in self.accreditations.values().filter(|a| {
            a.accreditation.host == host
                && a.accreditation.guest == guest
                && a.accreditation.member == *member
        }) {
            match self.inactive_reason_at(a, now, early) {
                None if a.accreditation.spheres.contains(&sphere) => return Ok(()),
                None => reason = format!("the accreditation does not cover the {sphere} channel"),
                Some(r) => reason = r,
            }
        }
        Err(reason)
    }

    pub fn channel_notices(&self, peer: &str, sphere: Sphere) -> &[ChannelNotice] {
        self.channels
            .get(&(peer.to_string(), sphere))
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }

    /// The state of the channel with `peer` at `now`, and the notice that
    /// set it. Mission channels follow the latest notice in effect from
    /// either party; the direct line is closed only while both parties'
    /// latest notices in effect are closures.
    pub fn channel_state(
        &self,
        peer: &str,
        sphere: Sphere,
        now: Millis,
    ) -> (ChannelState, Option<&ChannelNotice>) {
        let notices = self.channel_notices(peer, sphere);
        let latest_of = |by: Option<&str>| {
            notices
                .iter()
                .enumerate()
                .filter(|(_, n)| n.effective_ms <= now && by.is_none_or(|b| n.by == b))
                .max_by_key(|(i, n)| (n.effective_ms, *i))
                .map(|(_, n)| n)
        };
        if sphere != Sphere::DirectLine {
            return match latest_of(None) {
                Some(n) => (n.state, Some(n)),
                None => (ChannelState::Open, None),
            };
        }
        match (latest_of(Some(&self.me)), latest_of(Some(peer))) {
            (Some(a), Some(b))
                if a.state == ChannelState::Closed && b.state == ChannelState::Closed =>
            {
                let last = if a.effective_ms >= b.effective_ms {
                    a
                } else {
                    b
                };
                (ChannelState::Closed, Some(last))
            }
            _ => (ChannelState::Open, None),
        }
    }

    /// Message `id`, whole or settled.
    pub fn held(&self, id: &Uuid) -> Option<Held<'_>> {
        self.message_at
            .get(id)
            .and_then(|&at| self.messages.get(at as usize))
            .map(Slot::held)
    }
    /// Message `id` if it is held whole (an unsettled message always is).
    pub fn message(&self, id: &Uuid) -> Option<&MessageEntry> {
        self.held(id).and_then(|h| h.whole())
    }
    /// Whether message `id` is known here, whole or settled.
    pub fn knows_message(&self, id: &Uuid) -> bool {
        self.message_at.contains_key(id)
    }
    fn message_mut(&mut self, id: &Uuid) -> Option<&mut MessageEntry> {
        let at = *self.message_at.get(id)?;
        match self.messages.get_mut(at as usize) {
            Some(Slot::Whole(e)) => Some(e),
            _ => None,
        }
    }
    /// The messages of group `id` this node holds, in log order.
    pub fn group(&self, id: &Uuid) -> impl Iterator<Item = Held<'_>> {
        self.groups
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|m| self.held(m))
    }
    /// Messages in log order.
    pub fn messages(&self) -> impl DoubleEndedIterator<Item = Held<'_>> {
        self.messages.iter().map(Slot::held)
    }
    /// Messages in log order, leaving out runs of [`SPAN`] where none has
    /// a log index above `after`, or (`whole_only`) none is whole: what a
    /// listing of the newest messages or of the unsettled ones reads,
    /// without walking the whole history. Others may still be among those
    /// yielded; the caller filters as before.
    pub fn messages_where(
        &self,
        after: Option<u64>,
        whole_only: bool,
    ) -> impl DoubleEndedIterator<Item = Held<'_>> {
        self.spans
            .iter()
            .enumerate()
            .filter(move |(_, span)| {
                after.is_none_or(|a| span.max_index > a) && (!whole_only || span.whole > 0)
            })
            .flat_map(move |(i, _)| {
                let end = ((i + 1) * SPAN).min(self.messages.len());
                self.messages
                    .get(i * SPAN..end)
                    .unwrap_or_default()
                    .iter()
                    .map(Slot::held)
            })
    }
    /// The other party of a message.
    pub fn peer_of<'a>(&'a self, m: Held<'a>) -> &'a str {
        match m {
            Held::Whole(e) => {
                let v = &e.signed.value;
                if e.outgoing { &v.to } else { &v.from }
            }
            Held::Settled(s) => self
                .peer_names
                .get(s.peer as usize)
                .map(String::as_str)
                .unwrap_or_default(),
        }
    }
    /// How many messages are held whole, and how many settled out of
    /// memory.
    pub fn message_counts(&self) -> (usize, usize) {
        (self.messages.len() - self.put_away, self.put_away)
    }

    pub fn out_lane(&self, peer: &str, lane: Precedence) -> Option<&OutLane> {
        self.out.get(&(peer.to_string(), lane))
    }
    pub fn in_lane(&self, peer: &str, lane: Precedence) -> Option<&InLane> {
        self.inbound.get(&(peer.to_string(), lane))
    }
    /// Up to `limit` records for `peer` on `lane` not yet receipted, in
    /// sequence order.
    pub fn pending(&self, peer: &str, lane: Precedence, limit: usize) -> Vec<(u64, Pending)> {
        self.out_lane(peer, lane)
            .map(|l| {
                l.pending
                    .iter()
                    .take(limit)
                    .map(|(s, p)| (*s, *p))
                    .collect()
            })
            .unwrap_or_default()
    }
    /// Who saw what: (log index, access), in order.
    pub fn access(&self) -> impl DoubleEndedIterator<Item = &(u64, Access)> {
        self.access.iter()
    }
    /// The members a message was first shown to, and when.
    pub fn seen(&self, message: &Uuid) -> &[(MemberKey, Millis)] {
        self.seen.get(message).map(|v| v.as_slice()).unwrap_or(&[])
    }
    /// This party's public statements: (log index, statement), in order.
    pub fn statements(&self) -> impl DoubleEndedIterator<Item = &(u64, Statement)> {
        self.statements.iter()
    }
    /// Records not yet receipted, over all peers and lanes.
    pub fn pending_total(&self) -> usize {
        self.out.values().map(|l| l.pending.len()).sum()
    }
}

/// The `id` field of a shared airspace body.
pub fn airspace_id(body: &tlog::cbor::Value) -> Option<String> {
    let tlog::cbor::Value::Map(pairs) = body else {
        return None;
    };
    pairs.iter().find_map(|(k, v)| match (k, v) {
        (tlog::cbor::Value::Text(k), tlog::cbor::Value::Text(v)) if k == "id" => Some(v.clone()),
        _ => None,
    })
}

#[cfg(test)]
mod receipted_tests {
    use super::Receipted;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// What a settled message costs in the line's vector: the stub, its
    /// tag folded into the stub's spare bits.
    #[test]
    fn a_settled_message_takes_48_bytes_in_the_vector() {
        assert_eq!(std::mem::size_of::<super::Settled>(), 48);
        assert_eq!(std::mem::size_of::<super::Slot>(), 48);
    }

    #[test]
    fn a_receipt_for_a_run_of_records_is_one_entry() {
        let mut r = Receipted::default();
        for seq in 1..=200 {
            r.insert(seq, 7);
        }
        for seq in 201..=300 {
            r.insert(seq, 9);
        }
        assert_eq!(r.runs(), 2);
        assert_eq!(
            (r.get(1), r.get(200), r.get(201), r.get(300)),
            (Some(7), Some(7), Some(9), Some(9))
        );
        assert_eq!((r.get(0), r.get(301)), (None, None));
    }

    proptest! {
        /// Whatever the order, it answers as a plain map of every seq would.
        #[test]
        fn answers_as_a_map_of_every_record(ops in proptest::collection::vec((0u64..60, 0u64..4, any::<bool>()), 0..200)) {
            let (mut r, mut model) = (Receipted::default(), BTreeMap::new());
            let mut next = 1u64;
            for (seq, index, in_order) in ops {
                // Mostly the next sequence number, as a lane receives them.
                let seq = if in_order { next } else { seq };
                next = next.max(seq + 1);
                r.insert(seq, index);
                model.insert(seq, index);
            }
            for seq in 0..next + 2 {
                prop_assert_eq!(r.get(seq), model.get(&seq).copied(), "seq {}", seq);
            }
        }
    }
}
