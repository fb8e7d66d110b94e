//! The line's use cases: what the party's administrators, its duty
//! officers and its peers may ask of the line, turned into `liaison`
//! decisions and committed through [`Store::transact_line`].

use crate::{Clock, Ids, NodeError, Store, StoreError};
use liaison::decide::{self, Accredit};
use liaison::{
    Ack, ChannelState, LineDecision, LineError, LineEvent, LineOutcome, LineState, Member,
    MemberKey, Message, Millis, Precedence, Record, Signed, Sphere,
};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// Most records accepted in one request from a peer.
pub const MAX_RECORDS_PER_REQUEST: usize = 512;

/// What receiving a batch of a peer's records came to: the signed receipts
/// (the receipt entries' bytes) naming the records taken, in order;
/// `stopped` says why the rest was not.
#[derive(Debug)]
pub struct Received {
    pub receipts: Vec<Vec<u8>>,
    pub stopped: Option<LineError>,
}

/// A write of the line, as the writer runs it: which pure decision to make
/// (`liaison::decide`). The writer calls [`LineWrite::decide`] on the line
/// and the airspace as every write before it in the batch left them.
pub enum LineWrite {
    AddPeer {
        name: String,
        url: String,
        vkey: String,
        now: Millis,
    },
    RemovePeer {
        name: String,
        reason: String,
        now: Millis,
    },
    RegisterMember(Member),
    /// This node's key handed over from `old` to `new`.
    RotateKey {
        old: String,
        new: String,
        now: Millis,
    },
    RemoveMember {
        key: MemberKey,
        now: Millis,
    },
    ReplaceMember {
        old: MemberKey,
        new: Member,
        now: Millis,
    },
    DeclareCompromised {
        key: MemberKey,
        from_ms: Millis,
        reason: String,
        now: Millis,
    },
    SetQuota {
        guest: String,
        quota: u32,
        ending: Vec<Uuid>,
        now: Millis,
    },
    Accredit {
        a: Accredit,
        now: Millis,
    },
    Revoke {
        id: Uuid,
        reason: String,
        effective: Millis,
        now: Millis,
    },
    CloseMission {
        guest: String,
        effective: Millis,
        reason: String,
        now: Millis,
    },
    ChannelNotice {
        peer: String,
        sphere: Sphere,
        state: ChannelState,
        effective: Millis,
        reason: String,
        now: Millis,
    },
    SetDeadlines {
        peer: String,
        sphere: Sphere,
        deadlines_ms: Vec<u64>,
        effective: Millis,
        now: Millis,
    },
    DesignateContact(Uuid),
    /// This node's notification of a local subscriber about a peer's copy.
    UssNotified(liaison::UssNotification),
    /// A public statement of this party.
    PublishStatement(liaison::Statement),
    /// Who saw what.
    Access(liaison::Access),
    /// This party's proposal of the line of contact with a peer.
    ProposeContact {
        peer: String,
        terms: liaison::ContactTerms,
        now: Millis,
    },
    /// This party proposes exactly what the peer last proposed.
    Accept {
        peer: String,
        contact: bool,
        now: Millis,
    },
    /// This party's proposal of the deconfliction area with a peer.
    SetArea {
        peer: String,
        polygons: Vec<Vec<(f64, f64)>>,
        now: Millis,
    },
    /// A member-signed message, its signature already checked.
    Send {
        m: Signed<Message>,
        now: Millis,
    },
    Acknowledge {
        a: Signed<Ack>,
        now: Millis,
    },
    /// A peer's record, its signatures checked off the writer (or left to
    /// the decision).
    Receive {
        from: String,
        record: Vec<u8>,
        now: Millis,
        signatures: decide::Signatures,
    },
    /// A peer's receipt for a record this node sent.
    KeepReceipt {
        from: String,
        receipt: Vec<u8>,
        signatures: decide::Signatures,
    },
}

impl LineWrite {
    /// The decision on the line `s` (and the airspace `air`, which a peer's
    /// shared change must apply to): the events to apply, or why not.
    pub fn decide(
        self,
        s: &LineState,
        air: &airspace::AirspaceState,
    ) -> Result<LineDecision, LineError> {
        match self {
            LineWrite::AddPeer {
                name,
                url,
                vkey,
                now,
            } => decide::add_peer(s, &name, &url, &vkey, now),
            LineWrite::RotateKey { old, new, now } => decide::rotate_key(s, &old, &new, now),
            LineWrite::RemovePeer { name, reason, now } => {
                decide::remove_peer(s, &name, &reason, now)
            }
            LineWrite::RegisterMember(m) => decide::register_member(s, m),
            LineWrite::RemoveMember { key, now } => decide::remove_member(s, key, now),
            LineWrite::ReplaceMember { old, new, now } => decide::replace_member(s, old, new, now),
            LineWrite::DeclareCompromised {
                key,
                from_ms,
                reason,
                now,
            } => decide::declare_compromised(s, key, from_ms, &reason, now),
            LineWrite::SetQuota {
                guest,
                quota,
                ending,
                now,
            } => decide::set_quota(s, &guest, quota, ending, now),
            LineWrite::Accredit { a, now } => decide::accredit(s, a, now),
            LineWrite::Revoke {
                id,
                reason,
                effective,
                now,
            } => decide::revoke(s, id, &reason, effective, now),
            LineWrite::CloseMission {
                guest,
                effective,
                reason,
                now,
            } => decide::close_mission(s, &guest, effective, &reason, now),
            LineWrite::ChannelNotice {
                peer,
                sphere,
                state,
                effective,
                reason,
                now,
            } => decide::channel_notice(s, &peer, sphere, state, effective, &reason, now),
            LineWrite::SetDeadlines {
                peer,
                sphere,
                deadlines_ms,
                effective,
                now,
            } => decide::set_deadlines(s, &peer, sphere, deadlines_ms, effective, now),
            LineWrite::DesignateContact(constraint) => decide::designate_contact(s, constraint),
            LineWrite::UssNotified(n) => decide::uss_notified(s, n),
            LineWrite::PublishStatement(st) => decide::publish_statement(s, st),
            LineWrite::Access(a) => decide::record_access(s, a),
            LineWrite::SetArea {
                peer,
                polygons,
                now,
            } => decide::set_area(s, &peer, polygons, now),
            LineWrite::ProposeContact { peer, terms, now } => {
                decide::propose_contact(s, &peer, terms, now)
            }
            LineWrite::Accept { peer, contact, now } => {
                decide::accept_proposal(s, &peer, contact, now)
            }
            LineWrite::Send { m, now } => {
                decide::send_message_as(s, m, now, decide::Signatures::Checked)
            }
            LineWrite::Acknowledge { a, now } => decide::acknowledge(s, a, now),
            LineWrite::Receive {
                from,
                record,
                now,
                signatures,
            } => {
                let mut d = decide::receive_as(s, &from, record, now, signatures)?;
                // A shared airspace change this node cannot apply is kept
                // as evidence and refused, with the reason.
                for e in &mut d.events {
                    if let LineEvent::Received {
                        entry,
                        origin,
                        refused: refused @ None,
                        ..
                    } = e
                        && let Record::Airspace { kind, body } = &entry.record
                        && let Err(why) = crate::share::incoming(origin, kind, body, air)
                    {
                        *refused = Some(why);
                    }
                }
                Ok(d)
            }
            LineWrite::KeepReceipt {
                from,
                receipt,
                signatures,
            } => decide::keep_receipt_as(s, &from, receipt, signatures),
        }
    }
}

/// See [`Line::health`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LineHealth {
    /// (peer, lane, records not yet receipted, log index of the oldest).
    pub lanes: Vec<(String, Precedence, usize, Option<u64>)>,
    /// (peer, messages awaiting acknowledgement, of which overdue).
    pub acks: Vec<(String, usize, usize)>,
    /// Messages held whole, and settled out of memory.
    pub messages: (usize, usize),
}

pub struct Line {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    /// The node's own member (for the notices it sends by itself).
    node_member: Option<Member>,
}

impl Line {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ids: Arc<dyn Ids>) -> Self {
        Line {
            store,
            clock,
            ids,
            node_member: None,
        }
    }

    pub fn now_ms(&self) -> Millis {
        (self.clock.now().unix_micros() / 1000).max(0) as u64
    }

    /// A fresh id.
    pub fn new_id(&self) -> Uuid {
        self.ids.uuid_v4()
    }

    /// Runs `f` on the line's state.
    /// Settled messages made whole again from the log, by their log index
    /// (they left memory; nothing about them changes any more).
    pub async fn read_back(
        &self,
        settled: Vec<liaison::state::Settled>,
    ) -> Result<Vec<(u64, liaison::state::MessageEntry)>, NodeError> {
        let mut wanted: Vec<u64> = settled.iter().flat_map(|s| [s.index, s.ack]).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let leaves: HashMap<u64, Vec<u8>> =
            self.store.log_leaves(wanted).await?.into_iter().collect();
        settled
            .iter()
            .map(|s| {
                leaves
                    .get(&s.index)
                    .zip(leaves.get(&s.ack))
                    .and_then(|(m, a)| liaison::state::read_back(s, m, a))
                    .map(|e| (s.index, e))
                    .ok_or_else(|| {
                        NodeError::Store(StoreError::Failed(format!(
                            "the log's entries {} and {} are not the settled message and its acknowledgement the line names",
                            s.index, s.ack
                        )))
                    })
            })
            .collect()
    }

    /// Whether `name` is a peer of this node.
    pub fn is_peer(&self, name: &str) -> Result<bool, NodeError> {
        self.read(|s| s.peer(name).is_some())
    }

    pub fn read<T>(&self, f: impl FnOnce(&LineState) -> T) -> Result<T, NodeError> {
        let mut f = Some(f);
        let mut out = None;
        self.store.read_line(&mut |s| {
            if let Some(f) = f.take() {
                out = Some(f(s));
            }
        })?;
        out.ok_or_else(|| {
            NodeError::Store(StoreError::Failed("the store did not run the read".into()))
        })
    }

    async fn commit(&self, w: LineWrite) -> Result<LineOutcome, NodeError> {
        self.commit_as(false, w).await
    }

    async fn commit_as(&self, urgent: bool, w: LineWrite) -> Result<LineOutcome, NodeError> {
        let jobs = vec![w];
        let mut r = if urgent {
            self.store.transact_line_urgent(jobs).await
        } else {
            self.store.transact_line(jobs).await
        };
        let c = r.pop().ok_or_else(|| {
            NodeError::Store(StoreError::Failed("the store answered nothing".into()))
        })???;
        Ok(c.outcome)
    }

    /// Notified whenever records were queued for a peer. Register
    /// (`notified()` + `enable()`) before looking at the outbox so that no
    /// wake-up is missed.
    /// Whether this process delivers to peers (one replica of several).
    pub fn is_leader(&self) -> bool {
        self.store.is_leader()
    }

    pub fn queued(&self) -> &tokio::sync::Notify {
        self.store.line_appended()
    }

    pub async fn add_peer(&self, name: String, url: String, vkey: String) -> Result<(), NodeError> {
        let now = self.now_ms();
        self.commit(LineWrite::AddPeer {
            name,
            url,
            vkey,
            now,
        })
        .await
        .map(|_| ())
    }

    pub async fn register_member(&self, m: Member) -> Result<(), NodeError> {
        self.commit(LineWrite::RegisterMember(m)).await.map(|_| ())
    }

    pub async fn remove_member(&self, key: MemberKey) -> Result<(), NodeError> {
        let now = self.now_ms();
        self.commit(LineWrite::RemoveMember { key, now })
            .await
            .map(|_| ())
    }

    pub async fn set_quota(
        &self,
        guest: String,
        quota: u32,
        ending: Vec<Uuid>,
    ) -> Result<(), NodeError> {
        let now = self.now_ms();
        self.commit(LineWrite::SetQuota {
            guest,
            quota,
            ending,
            now,
        })
        .await
        .map(|_| ())
    }

    /// Accredits a guest's member; `a.id` is replaced by a fresh id, which
    /// is returned.
    pub async fn accredit(&self, mut a: Accredit) -> Result<Uuid, NodeError> {
        let now = self.now_ms();
        a.id = self.new_id();
        let id = a.id;
        self.commit(LineWrite::Accredit { a, now }).await?;
        Ok(id)
    }

    /// Unpins a peer once the direct line with it is closed by both.
    pub async fn remove_peer(&self, name: String, reason: String) -> Result<(), NodeError> {
        let now = self.now_ms();
        self.commit(LineWrite::RemovePeer { name, reason, now })
            .await
            .map(|_| ())
    }

    /// Revokes an accreditation, effective at `effective` (`None`: now):
    /// until then its member may still act (expulsion with notice).
    pub async fn revoke(
        &self,
        id: Uuid,
        reason: String,
        effective: Option<Millis>,
    ) -> Result<(), NodeError> {
        let now = self.now_ms();
        self.commit(LineWrite::Revoke {
            id,
            reason,
            effective: effective.unwrap_or(now),
            now,
        })
        .await
        .map(|_| ())
    }

    pub async fn close_mission(
        &self,
        guest: String,
        effective: Option<Millis>,
        reason: String,
    ) -> Result<(), NodeError> {
        let now = self.now_ms();
        let effective = effective.unwrap_or(now);
        self.commit(LineWrite::CloseMission {
            guest,
            effective,
            reason,
            now,
        })
        .await
        .map(|_| ())
    }

    pub async fn channel_notice(
        &self,
        peer: String,
        sphere: Sphere,
        state: ChannelState,
        effective: Option<Millis>,
        reason: String,
    ) -> Result<(), NodeError> {
        let now = self.now_ms();
        let effective = effective.unwrap_or(now);
        self.commit(LineWrite::ChannelNotice {
            peer,
            sphere,
            state,
            effective,
            reason,
            now,
        })
        .await
        .map(|_| ())
    }

    /// Relays a member-signed message; answers once it is durable here.
    pub async fn send(&self, m: Signed<Message>) -> Result<LineOutcome, NodeError> {
        let now = self.now_ms();
        let urgent = m.value.precedence == Precedence::Flash;
        // The member's signature is checked here, in parallel with other
        // requests, not in the serialised writer.
        if !m.verify() {
            return Err(LineError::BadSignature {
                field: "signature".into(),
            }
            .into());
        }
        self.commit_as(urgent, LineWrite::Send { m, now }).await
    }

    /// Sends a group's messages (one member's, to several peers) in one
    /// commit: every signature checked first (none sent if one fails),
    /// then each decided in order; one result per message.
    pub async fn send_group(
        &self,
        ms: Vec<Signed<Message>>,
    ) -> Result<Vec<Result<LineOutcome, NodeError>>, NodeError> {
        let now = self.now_ms();
        if let Some(i) = ms.iter().position(|m| !m.verify()) {
            return Err(LineError::BadSignature {
                field: format!("messages[{i}].signature"),
            }
            .into());
        }
        let urgent = ms.iter().any(|m| m.value.precedence == Precedence::Flash);
        let jobs: Vec<LineWrite> = ms.into_iter().map(|m| LineWrite::Send { m, now }).collect();
        let n = jobs.len();
        let r = if urgent {
            self.store.transact_line_urgent(jobs).await
        } else {
            self.store.transact_line(jobs).await
        };
        if r.len() != n {
            return Err(NodeError::Store(StoreError::Failed(
                "the store answered another number of results".into(),
            )));
        }
        Ok(r.into_iter()
            .map(|x| -> Result<LineOutcome, NodeError> { Ok(x??.outcome) })
            .collect())
    }

    pub async fn acknowledge(&self, a: Signed<Ack>) -> Result<LineOutcome, NodeError> {
        let now = self.now_ms();
        self.commit(LineWrite::Acknowledge { a, now }).await
    }

    /// Takes a peer's records in order, each durable with the receipt that
    /// names it before the receipts are returned (one receipt names a run
    /// of records: each receipt is returned once, in log order).
    pub async fn receive(&self, from: &str, records: Vec<Vec<u8>>) -> Result<Received, NodeError> {
        // A name that is no peer costs nothing more than this look-up.
        if !self.is_peer(from)? {
            return Err(
                LineError::RecordRefused(format!("{from:?} is not a peer of this node")).into(),
            );
        }
        if records.len() > MAX_RECORDS_PER_REQUEST {
            return Err(LineError::invalid(
                "records",
                format!("at most {MAX_RECORDS_PER_REQUEST} per request"),
            )
            .into());
        }
        let now = self.now_ms();
        // FLASH-lane records go ahead of the rest.
        let urgent = records
            .first()
            .and_then(|r| decide::line_entry(r))
            .and_then(|r| r.ok())
            .and_then(|(_, l)| l.envelope)
            .is_some_and(|e| e.lane == Precedence::Flash);
        let (records, checked) = self.check_signatures(from, records).await?;
        let jobs: Vec<LineWrite> = records
            .into_iter()
            .zip(checked)
            .map(|(record, signatures)| LineWrite::Receive {
                from: from.to_string(),
                record,
                now,
                signatures,
            })
            .collect();
        let results = if urgent {
            self.store.transact_line_urgent(jobs).await
        } else {
            self.store.transact_line(jobs).await
        };
        let mut out = Received {
            receipts: vec![],
            stopped: None,
        };
        // The log index of the receipt naming each record taken, in order.
        let mut receipt_at: Vec<u64> = Vec::new();
        for r in results {
            match r? {
                Ok(c) => {
                    let index = match c.outcome {
                        LineOutcome::Duplicate { receipt_index } => Some(receipt_index),
                        LineOutcome::Received { lane, seq } => {
                            self.read(|s| s.in_lane(from, lane).and_then(|l| l.receipts.get(seq)))?
                        }
                        _ => None,
                    };
                    let Some(index) = index else {
                        return Err(
                            StoreError::Failed("a received record has no receipt".into()).into(),
                        );
                    };
                    receipt_at.push(index);
                }
                Err(e) => {
                    out.stopped = Some(e);
                    break;
                }
            }
        }
        // One receipt names a run of records: each is returned once.
        receipt_at.dedup();
        let found = self.store.log_leaves(receipt_at.clone()).await?;
        for index in receipt_at {
            match found.iter().find(|(i, _)| *i == index) {
                Some((_, bytes)) => out.receipts.push(bytes.clone()),
                None => {
                    // The first copy's batch is still being synced.
                    out.stopped = Some(LineError::Conflict(
                        "the record's first copy is still being committed; resend".into(),
                    ));
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Checks the signatures of a peer's records against its pinned key off
    /// the writer (on a blocking thread: a batch is up to 512 records).
    /// A record whose signatures do not check out is left to the decision,
    /// which refuses it with the reason.
    async fn check_signatures(
        &self,
        from: &str,
        records: Vec<Vec<u8>>,
    ) -> Result<(Vec<Vec<u8>>, Vec<decide::Signatures>), NodeError> {
        let Some(key) = self.read(|s| s.peer(from).cloned())? else {
            let n = records.len();
            return Ok((records, vec![decide::Signatures::Check; n]));
        };
        let from = from.to_string();
        tokio::task::spawn_blocking(move || {
            let checked = records
                .iter()
                .map(|r| {
                    if decide::record_signatures_ok(&key, &from, r) {
                        decide::Signatures::Checked
                    } else {
                        decide::Signatures::Check
                    }
                })
                .collect();
            (records, checked)
        })
        .await
        .map_err(|e| NodeError::Store(StoreError::Failed(format!("checking signatures: {e}"))))
    }

    /// Keeps a peer's receipts for records this node sent.
    pub async fn keep_receipts(
        &self,
        from: &str,
        receipts: Vec<Vec<u8>>,
        urgent: bool,
    ) -> Result<usize, NodeError> {
        let (receipts, checked) = self.check_signatures(from, receipts).await?;
        let jobs: Vec<LineWrite> = receipts
            .into_iter()
            .zip(checked)
            .map(|(receipt, signatures)| LineWrite::KeepReceipt {
                from: from.to_string(),
                receipt,
                signatures,
            })
            .collect();
        let mut kept = 0;
        let results = if urgent {
            self.store.transact_line_urgent(jobs).await
        } else {
            self.store.transact_line(jobs).await
        };
        for r in results {
            r??;
            kept += 1;
        }
        Ok(kept)
    }

    /// Up to `limit` committed records for `peer` on `lane` that the peer
    /// has not receipted, in sequence order, as (seq, entry bytes).
    pub async fn outbox(
        &self,
        peer: &str,
        lane: Precedence,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, NodeError> {
        let committed = self.store.log_size();
        let pending = self.read(|s| s.pending(peer, lane, limit))?;
        // Only what is durable here may leave: a record lost in a crash
        // must never be known to the peer.
        let pending: Vec<(u64, u64)> = pending
            .into_iter()
            .take_while(|(_, p)| p.index < committed)
            .map(|(seq, p)| (seq, p.index))
            .collect();
        if pending.is_empty() {
            return Ok(vec![]);
        }
        let leaves = self
            .store
            .log_leaves(pending.iter().map(|(_, i)| *i).collect())
            .await?;
        Ok(pending
            .iter()
            .zip(leaves)
            .take_while(|((_, i), (j, _))| i == j)
            .map(|((seq, _), (_, bytes))| (*seq, bytes))
            .collect())
    }

    /// Peers and their URLs.
    pub fn peers(&self) -> Result<Vec<(String, String)>, NodeError> {
        self.read(|s| s.peers().map(|p| (p.name.clone(), p.url.clone())).collect())
    }
}

/// The changes to the airspace a line decision's events make here: each
/// peer's accepted shared change, applied to the copy held for it, then the
/// notification index of every subscription here that such a change
/// touches (by its old or new volumes, for the kind it wants), once per
/// change — as a write by a USS here would. No USS of this party notifies
/// for a peer's change, so the bumped index is how a subscriber learns
/// that something changed in its area and queries again (F3548's
/// `notification_index` "so the subscriber can detect missed notifications").
///
/// The copies carry this node's OVN (`share::with_local_ovn`); with them
/// come the notices for the local subscribers each change touched.
pub fn peer_airspace_effects(
    events: &[LineEvent],
    air: &airspace::AirspaceState,
    signer: &crate::entries::LogSigner,
) -> (Vec<airspace::Event>, Vec<crate::share::CopyNotice>) {
    use airspace::Event;
    let mut out = Vec::new();
    let mut notices = Vec::new();
    let mut bumps: std::collections::BTreeMap<airspace::SubscriptionId, i32> =
        std::collections::BTreeMap::new();
    for e in events {
        let Some(copy) = peer_airspace_effect(e, air) else {
            continue;
        };
        let copy = crate::share::with_local_ovn(copy, signer);
        let constraints = matches!(
            copy,
            Event::ConstraintUpserted(_) | Event::ConstraintRemoved(_)
        );
        let mut volumes = match &copy {
            Event::IntentUpserted(i) => i.extents.clone(),
            Event::ConstraintUpserted(c) => c.extents.clone(),
            _ => Vec::new(),
        };
        let old = match &copy {
            Event::IntentUpserted(i) => air.intent(&i.id).map(|o| &o.extents),
            Event::IntentRemoved(id) => air.intent(id).map(|o| &o.extents),
            Event::ConstraintUpserted(c) => air.constraint(&c.id).map(|o| &o.extents),
            Event::ConstraintRemoved(id) => air.constraint(id).map(|o| &o.extents),
            _ => None,
        };
        volumes.extend(old.into_iter().flatten().cloned());
        let mut notify: std::collections::BTreeMap<String, Vec<(airspace::SubscriptionId, i32)>> =
            std::collections::BTreeMap::new();
        for sub in air.subscriptions_intersecting(&volumes) {
            let wants = if constraints {
                sub.notify_for_constraints
            } else {
                sub.notify_for_operational_intents
            };
            if wants {
                let i = bumps.entry(sub.id).or_insert(sub.notification_index);
                *i = i.saturating_add(1);
                notify
                    .entry(sub.uss_base_url.clone())
                    .or_default()
                    .push((sub.id, *i));
            }
        }
        if !notify.is_empty() {
            notices.push(crate::share::CopyNotice {
                change: copy.clone(),
                subscribers: notify
                    .into_iter()
                    .map(
                        |(uss_base_url, subscriptions)| airspace::SubscriberToNotify {
                            uss_base_url,
                            subscriptions,
                        },
                    )
                    .collect(),
            });
        }
        out.push(copy);
    }
    if !bumps.is_empty() {
        out.push(Event::SubscriptionsNotified(bumps.into_iter().collect()));
    }
    (out, notices)
}

/// The change to the airspace a committed line event makes here: a peer's
/// accepted shared change, applied to the copy held for it.
fn peer_airspace_effect(e: &LineEvent, air: &airspace::AirspaceState) -> Option<airspace::Event> {
    let LineEvent::Received {
        entry,
        origin,
        refused: None,
        ..
    } = e
    else {
        return None;
    };
    let Record::Airspace { kind, body } = &entry.record else {
        return None;
    };
    crate::share::incoming(origin, kind, body, air).ok()
}

impl Line {
    /// The node's own member, registered when it first needs to notify.
    pub fn with_node_member(mut self, m: Member) -> Self {
        self.node_member = Some(m);
        self
    }

    /// Sets a channel's acknowledgement deadlines (ms, FLASH first).
    pub async fn set_deadlines(
        &self,
        peer: String,
        sphere: Sphere,
        deadlines_ms: Vec<u64>,
        effective: Option<Millis>,
    ) -> Result<(), NodeError> {
        let now = self.now_ms();
        let effective = effective.unwrap_or(now);
        self.commit(LineWrite::SetDeadlines {
            peer,
            sphere,
            deadlines_ms,
            effective,
            now,
        })
        .await
        .map(|_| ())
    }

    /// Hands this node's key over from `old` (the key in force in its log)
    /// to `new`, telling every peer (`line.key.rotated`, signed by `old`);
    /// and, when the node's own member key changes with it, replaces that
    /// member. Done once: a hand-over already in the log changes nothing.
    pub async fn rotate_key(
        &self,
        old: &str,
        new: &str,
        member: Option<(MemberKey, Member)>,
    ) -> Result<bool, NodeError> {
        let now = self.now_ms();
        let done = self
            .commit(LineWrite::RotateKey {
                old: old.into(),
                new: new.into(),
                now,
            })
            .await?;
        let rotated = !matches!(done, LineOutcome::AlreadyDone);
        if let Some((before, after)) = member
            && self.read(|s| s.member(&before).is_some_and(|m| m.removed_at.is_none()))?
        {
            self.commit(LineWrite::ReplaceMember {
                old: before,
                new: after,
                now,
            })
            .await?;
        }
        Ok(rotated)
    }

    /// Designates a constraint as the line of contact (registering the
    /// node's own member, which signs the notices, if it is not yet).
    pub async fn designate_contact(&self, constraint: Uuid) -> Result<(), NodeError> {
        if let Some(m) = self.node_member.clone() {
            self.commit(LineWrite::RegisterMember(m)).await?;
        }
        self.commit(LineWrite::DesignateContact(constraint))
            .await
            .map(|_| ())
    }

    /// How the line stands for monitoring: per peer and lane, the records
    /// not yet receipted and the log index of the oldest; per peer, the
    /// outgoing messages awaiting acknowledgement and those overdue.
    pub fn health(&self, now: Millis) -> Result<LineHealth, NodeError> {
        self.read(|s| {
            let mut h = LineHealth::default();
            for p in s.peers() {
                for lane in Precedence::ALL {
                    let (n, first) = s
                        .out_lane(&p.name, *lane)
                        .map(|l| (l.pending.len(), l.pending.values().next().map(|x| x.index)))
                        .unwrap_or((0, None));
                    h.lanes.push((p.name.clone(), *lane, n, first));
                }
                h.acks.push((p.name.clone(), 0, 0));
            }
            h.messages = s.message_counts();
            // Settled messages are acknowledged: only whole ones await
            // (the runs of the history settled out of memory are skipped).
            for m in s
                .messages_where(None, true)
                .filter_map(|m| m.whole())
                .filter(|m| m.outgoing && m.ack.is_none())
            {
                if matches!(m.delivery, liaison::state::Delivery::Refused { .. }) {
                    continue;
                }
                if let Some(a) = h.acks.iter_mut().find(|a| a.0 == m.signed.value.to) {
                    a.1 += 1;
                    a.2 += usize::from(s.overdue(m, now));
                }
            }
            h
        })
    }

    /// Records who saw what: a console login or logout, an evidence export
    /// (at this node's now), a message's first display to a member (at the
    /// time the member signed).
    pub async fn record_access(&self, mut a: liaison::Access) -> Result<(), NodeError> {
        if a.what != "message.seen" {
            a.at_ms = self.now_ms();
        }
        self.commit(LineWrite::Access(a)).await.map(|_| ())
    }

    /// Publishes a statement of this party (`id` `None`: a new one); answers
    /// the log index it holds (the same for the same id again).
    pub async fn publish_statement(
        &self,
        id: Option<Uuid>,
        language: String,
        text: String,
        answers: Vec<liaison::StatementRef>,
    ) -> Result<(Uuid, u64), NodeError> {
        let id = id.unwrap_or_else(|| self.new_id());
        let st = liaison::Statement {
            id,
            language,
            text,
            answers,
            at_ms: self.now_ms(),
        };
        self.commit(LineWrite::PublishStatement(st)).await?;
        let index = self
            .read(|s| s.statements().find(|(_, x)| x.id == id).map(|(i, _)| *i))?
            .ok_or_else(|| {
                NodeError::Store(StoreError::Failed("the statement was not kept".into()))
            })?;
        Ok((id, index))
    }

    /// Logs a notification of a local subscriber about a peer's copy (its
    /// time this node's now).
    pub async fn uss_notified(&self, mut n: liaison::UssNotification) -> Result<(), NodeError> {
        n.at_ms = self.now_ms();
        self.commit(LineWrite::UssNotified(n)).await.map(|_| ())
    }

    /// Replaces the key of a member of this party.
    pub async fn replace_member(&self, old: MemberKey, new: Member) -> Result<(), NodeError> {
        let now = self.now_ms();
        self.commit(LineWrite::ReplaceMember { old, new, now })
            .await
            .map(|_| ())
    }

    /// Declares the key of a member of this party compromised from
    /// `from_ms` (default: now).
    pub async fn declare_compromised(
        &self,
        key: MemberKey,
        from_ms: Option<Millis>,
        reason: String,
    ) -> Result<(), NodeError> {
        let now = self.now_ms();
        self.commit(LineWrite::DeclareCompromised {
            key,
            from_ms: from_ms.unwrap_or(now),
            reason,
            now,
        })
        .await
        .map(|_| ())
    }

    /// Proposes to `peer` the line of contact (it binds once the peer
    /// proposes the same terms).
    pub async fn propose_contact(
        &self,
        peer: String,
        terms: liaison::ContactTerms,
    ) -> Result<(), NodeError> {
        let now = self.now_ms();
        self.commit(LineWrite::ProposeContact { peer, terms, now })
            .await
            .map(|_| ())
    }

    /// Proposes exactly what `peer` last proposed (the line of contact, or
    /// the deconfliction area), agreeing to it.
    pub async fn accept(&self, peer: String, contact: bool) -> Result<(), NodeError> {
        let now = self.now_ms();
        self.commit(LineWrite::Accept { peer, contact, now })
            .await
            .map(|_| ())
    }

    /// Proposes to `peer` the deconfliction area the two share (it binds
    /// once the peer proposes the same polygons).
    pub async fn set_area(
        &self,
        peer: String,
        polygons: Vec<Vec<(f64, f64)>>,
    ) -> Result<(), NodeError> {
        let now = self.now_ms();
        self.commit(LineWrite::SetArea {
            peer,
            polygons,
            now,
        })
        .await
        .map(|_| ())
    }
}
