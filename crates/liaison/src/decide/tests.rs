//! Two parties' lines in memory: every record crosses as its entry bytes,
//! exactly as between nodes.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::state::{Delivery, Held};

const A: &str = "alliance";
const F: &str = "federation";
const T0: Millis = 1_795_000_000_000;

struct Node {
    state: LineState,
    signer: tlog::NoteSigner,
    log: Vec<Vec<u8>>,
    tree: tlog::tree::Frontier,
}

impl Node {
    fn new(name: &str, seed: u8) -> Self {
        Node {
            state: LineState::new(name),
            signer: tlog::NoteSigner::from_seed(name, &[seed; 32]).unwrap(),
            log: vec![],
            tree: tlog::tree::Frontier::default(),
        }
    }
    fn vkey(&self) -> String {
        self.signer.verifier().to_vkey()
    }
    /// Commits one decision as a batch of its own (as the store's writer
    /// would with nothing else queued).
    fn run(&mut self, d: Result<LineDecision, LineError>, now: Millis) -> LineOutcome {
        let out = self.run_in_batch(d, now);
        self.end_batch(now);
        out
    }
    /// Appends one decision of a batch still being decided.
    fn run_in_batch(&mut self, d: Result<LineDecision, LineError>, now: Millis) -> LineOutcome {
        let d = d.unwrap();
        let leaves = append(&mut self.state, &self.signer, now, &mut self.tree, d.events).unwrap();
        self.log.extend(leaves);
        d.outcome
    }
    /// The end of a batch: the run of received records is receipted.
    fn end_batch(&mut self, now: Millis) {
        let leaf = end_received_run(&mut self.state, &self.signer, now, &mut self.tree).unwrap();
        self.log.extend(leaf);
    }
    /// Where this node's receipt for `outcome`'s record is.
    fn receipt_index(&self, from: &str, outcome: &LineOutcome) -> u64 {
        match outcome {
            LineOutcome::Duplicate { receipt_index } => *receipt_index,
            LineOutcome::Received { lane, seq } => self
                .state
                .in_lane(from, *lane)
                .unwrap()
                .receipts
                .get(*seq)
                .unwrap(),
            other => panic!("not a received record: {other:?}"),
        }
    }
    /// A fresh state rebuilt from the log alone.
    fn replayed(&self) -> LineState {
        let mut s = LineState::new(self.state.me());
        for (i, leaf) in self.log.iter().enumerate() {
            if let Some(r) = line_entry(leaf) {
                let (e, l) = r.unwrap();
                s.apply(&e.entry.origin, i as u64, tlog::hash::leaf_hash(leaf), l);
            }
        }
        s
    }
}

/// Delivers everything pending from `a` to `b` (all lanes, FLASH first, a
/// lane's records as one batch at `b`) and keeps the receipts at `a`;
/// returns how many records crossed.
fn deliver(a: &mut Node, b: &mut Node, now: Millis) -> usize {
    let mut n = 0;
    for lane in Precedence::ALL {
        let mut receipts: Vec<u64> = Vec::new();
        for (_, p) in a.state.pending(b.state.me(), *lane, usize::MAX) {
            let bytes = a.log[p.index as usize].clone();
            let out = b.run_in_batch(receive(&b.state, a.state.me(), bytes, now), now);
            receipts.push(match out {
                LineOutcome::Duplicate { receipt_index } => receipt_index,
                _ => u64::MAX,
            });
            n += 1;
        }
        b.end_batch(now);
        let at = b.log.len() as u64 - 1;
        for i in &mut receipts {
            if *i == u64::MAX {
                *i = at;
            }
        }
        receipts.dedup();
        for i in receipts {
            let receipt = b.log[i as usize].clone();
            a.run(keep_receipt(&a.state, b.state.me(), receipt), now);
        }
    }
    n
}

fn member(n: u8, spheres: &[Sphere]) -> (MemberSigner, Member) {
    let s = MemberSigner::from_seed(&[n; 32]);
    let m = Member {
        key: s.key(),
        name: format!("member {n}"),
        role: "liaison officer".into(),
        spheres: spheres.to_vec(),
    };
    (s, m)
}

fn text(
    from: &str,
    to: &str,
    s: &MemberSigner,
    seq: u64,
    sphere: Sphere,
    p: Precedence,
) -> Signed<Message> {
    s.sign_message(Message {
        id: Uuid::from_u128(u128::from(seq) << 64 | u128::from(s.key().0[0])),
        from: from.into(),
        to: to.into(),
        sphere,
        precedence: p,
        sender: s.key(),
        seq,
        created_ms: T0,
        body: Body::Text {
            text: format!("message {seq}"),
        },
        group: None,
    })
}

/// Alliance and Federation peered; Alliance's member 1 (all spheres),
/// Federation's member 2 (all spheres) accredited by Alliance for
/// military; Alliance's quota for Federation is 2.
fn peered() -> (Node, Node, MemberSigner, MemberSigner, Uuid) {
    let mut a = Node::new(A, 1);
    let mut f = Node::new(F, 2);
    let (s1, m1) = member(1, Sphere::ALL);
    let (s2, m2) = member(2, Sphere::ALL);
    a.run(register_member(&a.state, m1), T0);
    f.run(register_member(&f.state, m2), T0);
    let (av, fv) = (a.vkey(), f.vkey());
    a.run(add_peer(&a.state, F, "http://f", &fv, T0), T0);
    f.run(add_peer(&f.state, A, "http://a", &av, T0), T0);
    a.run(set_quota(&a.state, F, 2, vec![], T0), T0);
    let id = Uuid::from_u128(42);
    a.run(
        accredit(
            &a.state,
            Accredit {
                id,
                guest: F.into(),
                member: s2.key(),
                name: "Maj. F".into(),
                role: "liaison officer".into(),
                spheres: vec![Sphere::Military],
                valid_from: T0,
                valid_until: T0 + 86_400_000,
            },
            T0,
        ),
        T0,
    );
    deliver(&mut a, &mut f, T0);
    deliver(&mut f, &mut a, T0);
    (a, f, s1, s2, id)
}

#[test]
fn a_message_is_delivered_receipted_and_acknowledged_on_both_sides() {
    let (mut a, mut f, s1, s2, _) = peered();
    // Each side knows the other's members after peering.
    assert_eq!(a.state.member(&s2.key()).unwrap().party, F);
    assert_eq!(f.state.member(&s1.key()).unwrap().party, A);
    let m = text(F, A, &s2, 1, Sphere::Military, Precedence::Flash);
    f.run(send_message(&f.state, m.clone(), T0), T0);
    assert_eq!(
        f.state.message(&m.value.id).unwrap().delivery,
        Delivery::Queued
    );
    assert_eq!(deliver(&mut f, &mut a, T0), 1);
    let at_a = a.state.message(&m.value.id).unwrap();
    assert!(!at_a.outgoing);
    let Delivery::Delivered { index } = f.state.message(&m.value.id).unwrap().delivery else {
        panic!("not delivered");
    };
    assert_eq!(
        index, at_a.index,
        "the receipt names the receiver's log index"
    );
    // Both logs hold the same bytes for the message.
    assert_eq!(
        a.log[at_a.index as usize],
        f.log[f.state.message(&m.value.id).unwrap().index as usize]
    );

    let ack = s1.sign_ack(Ack {
        message: m.value.id,
        from: A.into(),
        to: F.into(),
        by: s1.key(),
        verdict: AckVerdict::Accept,
        text: "wilco".into(),
        at_ms: T0 + 1000,
    });
    a.run(acknowledge(&a.state, ack.clone(), T0), T0);
    assert_eq!(deliver(&mut a, &mut f, T0), 1);
    assert_eq!(
        f.state.message(&m.value.id).unwrap().ack.as_deref(),
        Some(&ack)
    );
    assert!(
        !f.state
            .overdue(f.state.message(&m.value.id).unwrap(), T0 + 3_600_000)
    );
    // Nothing is left pending on either side.
    assert_eq!(a.state.pending_total() + f.state.pending_total(), 0);
}

fn ack_of(s: &MemberSigner, m: &Signed<Message>, text: &str) -> Signed<Ack> {
    s.sign_ack(Ack {
        message: m.value.id,
        from: m.value.to.clone(),
        to: m.value.from.clone(),
        by: s.key(),
        verdict: AckVerdict::Accept,
        text: text.into(),
        at_ms: T0 + 1000,
    })
}

#[test]
fn a_listing_reads_only_the_runs_of_history_that_can_match() {
    use crate::state::SPAN;
    let (mut a, mut f, s1, s2, _) = peered();
    a.state.set_keep_settled(2);
    let total = 2 * SPAN + 60;
    let sent: Vec<_> = (1..=total as u64)
        .map(|seq| text(F, A, &s2, seq, Sphere::Military, Precedence::Routine))
        .collect();
    for m in &sent {
        f.run(send_message(&f.state, m.clone(), T0), T0);
    }
    deliver(&mut f, &mut a, T0);
    // All but the newest 100 acknowledged: settled, and past the newest
    // two out of memory.
    for m in &sent[..total - 100] {
        a.run(acknowledge(&a.state, ack_of(&s1, m, "wilco"), T0), T0);
    }
    let ids = |it: &mut dyn Iterator<Item = Held<'_>>, after: u64| -> Vec<u64> {
        it.filter(|m| m.index() > after)
            .map(|m| m.index())
            .collect()
    };
    let indices: Vec<u64> = a.state.messages().map(|m| m.index()).collect();
    assert_eq!(indices.len(), total);
    for after in [
        0,
        indices[0],
        indices[700],
        indices[SPAN + 5],
        indices[total - 30],
        u64::MAX,
    ] {
        // The same messages, in the same order, either way — newest first too.
        let all = ids(&mut a.state.messages(), after);
        assert_eq!(
            ids(&mut a.state.messages_where(Some(after), false), after),
            all
        );
        let mut newest = all.clone();
        newest.reverse();
        assert_eq!(
            ids(&mut a.state.messages_where(Some(after), false).rev(), after),
            newest
        );
    }
    // Past the first run, the first run is not read at all.
    let read = a
        .state
        .messages_where(Some(indices[SPAN + 5]), false)
        .count();
    assert_eq!(read, total - SPAN);
    // The whole messages are all found, and the run holding only stubs
    // (the first) is skipped.
    let whole = |it: &mut dyn Iterator<Item = Held<'_>>| -> Vec<u64> {
        it.filter_map(|m| m.whole()).map(|e| e.index).collect()
    };
    assert_eq!(
        whole(&mut a.state.messages_where(None, true)),
        whole(&mut a.state.messages())
    );
    assert_eq!(a.state.message_counts(), (102, total - 102));
    assert_eq!(a.state.messages_where(None, true).count(), total - SPAN);
}

#[test]
fn settled_messages_leave_memory_read_back_whole_and_decide_as_before() {
    let (mut a, mut f, s1, s2, _) = peered();
    a.state.set_keep_settled(2);
    f.state.set_keep_settled(2);
    let sent: Vec<_> = (1..=5)
        .map(|seq| text(F, A, &s2, seq, Sphere::Military, Precedence::Routine))
        .collect();
    for m in &sent {
        f.run(send_message(&f.state, m.clone(), T0), T0);
    }
    deliver(&mut f, &mut a, T0);
    // Delivered but not acknowledged: nothing is settled yet.
    assert_eq!(a.state.message_counts(), (5, 0));
    for m in &sent {
        a.run(acknowledge(&a.state, ack_of(&s1, m, "wilco"), T0), T0);
    }
    deliver(&mut a, &mut f, T0);
    // The newest two settled stay whole, the three before are stubs.
    for n in [&a, &f] {
        assert_eq!(n.state.message_counts(), (2, 3), "{}", n.state.me());
        let whole = n.replayed();
        assert_eq!(whole.message_counts(), (5, 0));
        for (i, m) in sent.iter().enumerate() {
            let id = &m.value.id;
            let Some(Held::Settled(stub)) = n.state.held(id) else {
                assert!(i >= 3, "message {i} should have left memory");
                assert_eq!(n.state.message(id), whole.message(id));
                continue;
            };
            assert!(i < 3, "message {i} should be whole");
            assert!(n.state.message(id).is_none() && n.state.knows_message(id));
            let back = crate::state::read_back(
                stub,
                &n.log[stub.index as usize],
                &n.log[stub.ack as usize],
            );
            assert_eq!(back.as_ref(), whole.message(id), "read back from the log");
            assert_eq!(
                n.state.peer_of(Held::Settled(stub)),
                if n.state.me() == A { F } else { A }
            );
            // Another entry of the log is not this message.
            assert_eq!(
                crate::state::read_back(stub, &n.log[stub.ack as usize], &n.log[stub.ack as usize]),
                None
            );
        }
    }
    // Settled or whole, the same records sent again decide the same.
    let first = &sent[0];
    assert_eq!(
        send_message(&f.state, first.clone(), T0).unwrap().outcome,
        LineOutcome::AlreadyDone
    );
    let mut reused = first.value.clone();
    reused.body = Body::Text {
        text: "another text under the same id".into(),
    };
    let reused = s2.sign_message(reused);
    assert!(matches!(
        send_message(&f.state, reused, T0),
        Err(LineError::Conflict(_))
    ));
    assert_eq!(
        acknowledge(&a.state, ack_of(&s1, first, "wilco"), T0)
            .unwrap()
            .outcome,
        LineOutcome::AlreadyDone
    );
    assert!(matches!(
        acknowledge(&a.state, ack_of(&s1, first, "another answer"), T0),
        Err(LineError::Conflict(m)) if m.contains("already acknowledged")
    ));
    // A settled message is still a message a member can be shown.
    a.run(
        record_access(
            &a.state,
            Access {
                what: "message.seen".into(),
                member: s1.key(),
                subject: Some(first.value.id.to_string()),
                at_ms: T0,
                signed: None,
            },
        ),
        T0,
    );
    assert_eq!(a.state.seen(&first.value.id).len(), 1);
    // The next message of the sender follows the settled ones.
    let next = text(F, A, &s2, 6, Sphere::Military, Precedence::Routine);
    f.run(send_message(&f.state, next, T0), T0);
    assert_eq!(deliver(&mut f, &mut a, T0), 1);
    assert_eq!(a.state.message_counts(), (3, 3));
}

#[test]
fn unacknowledged_messages_become_overdue_at_their_precedence_deadline() {
    let (mut a, mut f, _, s2, _) = peered();
    let m = text(F, A, &s2, 1, Sphere::Military, Precedence::Flash);
    f.run(send_message(&f.state, m.clone(), T0), T0);
    deliver(&mut f, &mut a, T0);
    for side in [&a.state, &f.state] {
        let e = side.message(&m.value.id).unwrap();
        assert_eq!(side.deadline_ms(e), T0 + 10 * 60_000);
        assert!(!side.overdue(e, T0 + 10 * 60_000));
        assert!(side.overdue(e, T0 + 10 * 60_000 + 1));
    }
}

#[test]
fn a_revoked_member_is_refused_at_the_host_even_when_its_own_node_did_not_know_yet() {
    let (mut a, mut f, _, s2, id) = peered();
    let before = text(F, A, &s2, 1, Sphere::Military, Precedence::Routine);
    f.run(send_message(&f.state, before.clone(), T0), T0);
    deliver(&mut f, &mut a, T0);
    a.run(
        revoke(&a.state, id, "persona non grata", T0 + 1, T0 + 1),
        T0 + 1,
    );
    // Federation has not heard of the revocation yet: it still sends.
    let after = text(F, A, &s2, 2, Sphere::Military, Precedence::Routine);
    f.run(send_message(&f.state, after.clone(), T0 + 2), T0 + 2);
    deliver(&mut f, &mut a, T0 + 2);
    let refused = a.state.message(&after.value.id).unwrap();
    assert!(
        matches!(&refused.delivery, Delivery::Refused { reason } if reason.contains("revoked"))
    );
    assert!(matches!(
        f.state.message(&after.value.id).unwrap().delivery,
        Delivery::Refused { .. }
    ));
    // What was sent before stays, accepted.
    assert!(matches!(
        a.state.message(&before.value.id).unwrap().delivery,
        Delivery::Delivered { .. }
    ));
    // Once the revocation reaches Federation, its own node refuses at once.
    deliver(&mut a, &mut f, T0 + 3);
    let third = text(F, A, &s2, 3, Sphere::Military, Precedence::Routine);
    assert!(matches!(
        send_message(&f.state, third, T0 + 3),
        Err(LineError::NotAccredited { reason, .. }) if reason.contains("revoked")
    ));
}

#[test]
fn a_resent_record_gets_the_same_receipt_and_a_gap_is_refused() {
    let (a, mut f, _, s2, _) = peered();
    let mut a = a;
    for seq in 1..=3 {
        let m = text(F, A, &s2, seq, Sphere::Military, Precedence::Priority);
        f.run(send_message(&f.state, m, T0), T0);
    }
    let pending = f.state.pending(A, Precedence::Priority, 10);
    assert_eq!(pending.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 2, 3]);
    let bytes = |i: usize| f.log[pending[i].1.index as usize].clone();
    // Record 2 before 1: a gap.
    assert!(matches!(
        receive(&a.state, F, bytes(1), T0),
        Err(LineError::Gap {
            expected: 1,
            got: 2,
            ..
        })
    ));
    let out = a.run(receive(&a.state, F, bytes(0), T0), T0);
    let first_receipt = a.log.len() - 1;
    assert_eq!(a.receipt_index(F, &out), first_receipt as u64);
    let size = a.log.len();
    // Resent: nothing appended, the same receipt.
    assert_eq!(
        a.run(receive(&a.state, F, bytes(0), T0), T0),
        LineOutcome::Duplicate {
            receipt_index: first_receipt as u64
        }
    );
    assert_eq!(a.log.len(), size);
    // Resent while its batch is still being decided: refused, to be resent.
    a.run_in_batch(receive(&a.state, F, bytes(1), T0), T0);
    assert!(matches!(
        receive(&a.state, F, bytes(1), T0),
        Err(LineError::Conflict(_))
    ));
    a.end_batch(T0);
    assert_eq!(
        a.run(receive(&a.state, F, bytes(1), T0), T0),
        LineOutcome::Duplicate {
            receipt_index: a.log.len() as u64 - 1
        }
    );
}

#[test]
fn records_signed_by_another_key_or_for_another_node_are_refused() {
    let (a, mut f, _, s2, _) = peered();
    let m = text(F, A, &s2, 1, Sphere::Military, Precedence::Routine);
    f.run(send_message(&f.state, m, T0), T0);
    let bytes = f.log.last().unwrap().clone();
    // Same name, other key.
    let mut impostor = Node::new(F, 9);
    impostor.state = f.state.clone();
    impostor.tree = f.tree.clone();
    let forged = {
        let e = tlog::entry::SignedEntry::parse(&bytes).unwrap().entry;
        e.sign(&impostor.signer).unwrap().to_bytes()
    };
    assert!(matches!(
        receive(&a.state, F, forged, T0),
        Err(LineError::RecordRefused(_))
    ));
    // Not from the peer that carried it.
    assert!(matches!(
        receive(&a.state, "someone", bytes.clone(), T0),
        Err(LineError::RecordRefused(_))
    ));
    let mut flipped = bytes;
    let n = flipped.len();
    flipped[n - 1] ^= 1;
    assert!(receive(&a.state, F, flipped, T0).is_err());
}

#[test]
fn member_sequence_is_gapless_and_a_resend_is_idempotent() {
    let (_, f, _, s2, _) = peered();
    let mut f = f;
    let m1 = text(F, A, &s2, 1, Sphere::Military, Precedence::Routine);
    assert!(matches!(
        send_message(
            &f.state,
            text(F, A, &s2, 2, Sphere::Military, Precedence::Routine),
            T0
        ),
        Err(LineError::OutOfSequence {
            expected: 1,
            got: 2,
            ..
        })
    ));
    f.run(send_message(&f.state, m1.clone(), T0), T0);
    assert_eq!(
        send_message(&f.state, m1.clone(), T0).unwrap().outcome,
        LineOutcome::AlreadyDone
    );
    // A replay of sequence 1 under a new id is refused.
    let mut replay = m1.value.clone();
    replay.id = Uuid::from_u128(99);
    assert!(matches!(
        send_message(&f.state, s2.sign_message(replay), T0),
        Err(LineError::OutOfSequence {
            expected: 2,
            got: 1,
            ..
        })
    ));
    // A forged signature.
    let mut forged = text(F, A, &s2, 2, Sphere::Military, Precedence::Routine);
    forged.signature[0] ^= 1;
    assert!(matches!(
        send_message(&f.state, forged, T0),
        Err(LineError::BadSignature { .. })
    ));
}

#[test]
fn unaccredited_members_cannot_use_mission_channels_but_use_the_direct_line() {
    let (mut a, mut f, s1, s2, _) = peered();
    // Member 1 of Alliance is not accredited by Federation.
    let m = text(A, F, &s1, 1, Sphere::Diplomatic, Precedence::Routine);
    assert!(matches!(
        send_message(&a.state, m, T0),
        Err(LineError::NotAccredited { .. })
    ));
    // Federation's member is accredited for military, not diplomatic.
    let d = text(F, A, &s2, 1, Sphere::Diplomatic, Precedence::Routine);
    assert!(matches!(
        send_message(&f.state, d, T0),
        Err(LineError::NotAccredited { reason, .. }) if reason.contains("does not cover")
    ));
    let dl = text(A, F, &s1, 1, Sphere::DirectLine, Precedence::Flash);
    a.run(send_message(&a.state, dl.clone(), T0), T0);
    deliver(&mut a, &mut f, T0);
    assert!(matches!(
        f.state.message(&dl.value.id).unwrap().delivery,
        Delivery::Delivered { .. }
    ));
}

#[test]
fn a_mission_channel_closes_on_one_notice_the_direct_line_only_on_both() {
    let (mut a, mut f, s1, s2, _) = peered();
    f.run(
        channel_notice(
            &f.state,
            A,
            Sphere::Military,
            ChannelState::Closed,
            T0,
            "recalled",
            T0,
        ),
        T0,
    );
    deliver(&mut f, &mut a, T0);
    for side in [&a.state, &f.state] {
        let other = if side.me() == A { F } else { A };
        assert_eq!(
            side.channel_state(other, Sphere::Military, T0).0,
            ChannelState::Closed
        );
    }
    assert!(matches!(
        send_message(
            &f.state,
            text(F, A, &s2, 1, Sphere::Military, Precedence::Routine),
            T0
        ),
        Err(LineError::ChannelNotOpen { .. })
    ));
    // Direct line: suspension is refused, one closure is not enough.
    assert!(
        channel_notice(
            &a.state,
            F,
            Sphere::DirectLine,
            ChannelState::Suspended,
            T0,
            "",
            T0
        )
        .is_err()
    );
    a.run(
        channel_notice(
            &a.state,
            F,
            Sphere::DirectLine,
            ChannelState::Closed,
            T0,
            "agreed",
            T0,
        ),
        T0,
    );
    deliver(&mut a, &mut f, T0);
    assert_eq!(
        f.state.channel_state(A, Sphere::DirectLine, T0).0,
        ChannelState::Open
    );
    let dl = text(F, A, &s2, 1, Sphere::DirectLine, Precedence::Flash);
    f.run(send_message(&f.state, dl, T0), T0);
    f.run(
        channel_notice(
            &f.state,
            A,
            Sphere::DirectLine,
            ChannelState::Closed,
            T0 + 5,
            "agreed",
            T0,
        ),
        T0,
    );
    deliver(&mut f, &mut a, T0);
    for side in [&a.state, &f.state] {
        let other = if side.me() == A { F } else { A };
        assert_eq!(
            side.channel_state(other, Sphere::DirectLine, T0 + 4).0,
            ChannelState::Open
        );
        let (st, by) = side.channel_state(other, Sphere::DirectLine, T0 + 5);
        assert_eq!(st, ChannelState::Closed);
        assert_eq!(by.unwrap().effective_ms, T0 + 5);
    }
    assert!(matches!(
        send_message(
            &a.state,
            text(A, F, &s1, 1, Sphere::DirectLine, Precedence::Flash),
            T0 + 6
        ),
        Err(LineError::ChannelNotOpen { .. })
    ));
    // History stays: the message sent before the closure is there.
    assert_eq!(a.state.messages().count(), 1);
}

#[test]
fn the_quota_caps_accreditations_and_lowering_it_names_who_ends() {
    let (mut a, mut f, _, _, first) = peered();
    let acc = |id: u128, key: MemberKey| Accredit {
        id: Uuid::from_u128(id),
        guest: F.into(),
        member: key,
        name: "n".into(),
        role: "r".into(),
        spheres: vec![Sphere::Information],
        valid_from: T0,
        valid_until: T0 + 1000,
    };
    let k3 = MemberSigner::from_seed(&[3; 32]).key();
    let k4 = MemberSigner::from_seed(&[4; 32]).key();
    a.run(accredit(&a.state, acc(43, k3), T0), T0);
    assert!(matches!(
        accredit(&a.state, acc(44, k4), T0),
        Err(LineError::QuotaExceeded { quota: 2, .. })
    ));
    assert!(matches!(
        set_quota(&a.state, F, 1, vec![], T0),
        Err(LineError::Invalid { field, .. }) if field == "ending"
    ));
    a.run(set_quota(&a.state, F, 1, vec![first], T0 + 1), T0 + 1);
    deliver(&mut a, &mut f, T0 + 1);
    for side in [&a.state, &f.state] {
        let active: Vec<Uuid> = side
            .active_accreditations(A, F, T0 + 2)
            .iter()
            .map(|x| x.accreditation.id)
            .collect();
        assert_eq!(active, [Uuid::from_u128(43)]);
    }
    // Expiry ends the other one.
    assert!(a.state.active_accreditations(A, F, T0 + 1000).is_empty());
}

#[test]
fn closing_a_mission_ends_its_accreditations_at_the_effective_time() {
    let (mut a, mut f, _, s2, _) = peered();
    a.run(
        close_mission(&a.state, F, T0 + 100, "relations severed", T0),
        T0,
    );
    deliver(&mut a, &mut f, T0);
    let m = |seq| text(F, A, &s2, seq, Sphere::Military, Precedence::Routine);
    f.run(send_message(&f.state, m(1), T0 + 99), T0 + 99);
    assert!(matches!(
        send_message(&f.state, m(2), T0 + 100),
        Err(LineError::NotAccredited { reason, .. }) if reason.contains("mission was closed")
    ));
    assert!(matches!(
        accredit(
            &a.state,
            Accredit {
                id: Uuid::from_u128(50),
                guest: F.into(),
                member: s2.key(),
                name: "n".into(),
                role: "r".into(),
                spheres: vec![Sphere::Military],
                valid_from: T0,
                valid_until: T0 + 10_000,
            },
            T0 + 200
        ),
        Err(LineError::Conflict(_))
    ));
}

#[test]
fn the_state_rebuilt_from_the_log_equals_the_live_one() {
    let (mut a, mut f, s1, s2, id) = peered();
    for seq in 1..=5 {
        let m = text(
            F,
            A,
            &s2,
            seq,
            Sphere::Military,
            Precedence::ALL[seq as usize % 4],
        );
        f.run(send_message(&f.state, m, T0), T0);
    }
    deliver(&mut f, &mut a, T0);
    a.run(revoke(&a.state, id, "expelled", T0, T0), T0);
    let dl = text(A, F, &s1, 1, Sphere::DirectLine, Precedence::Flash);
    a.run(send_message(&a.state, dl, T0), T0);
    deliver(&mut a, &mut f, T0);
    for n in [&a, &f] {
        let r = n.replayed();
        let summary = |s: &LineState| {
            let mut v: Vec<String> = s
                .messages()
                .map(|m| match m {
                    Held::Whole(m) => {
                        format!("{} {:?} {}", m.index, m.delivery, m.ack.is_some())
                    }
                    Held::Settled(s) => {
                        format!(
                            "{} {:?} true",
                            s.index,
                            Delivery::Delivered { index: s.delivered }
                        )
                    }
                })
                .collect();
            v.extend(
                s.accreditations()
                    .map(|a| format!("{:?}", (a.accreditation.id, &a.revoked))),
            );
            v.extend(s.peers().map(|p| p.name.clone()));
            v.push(format!("{}", s.pending_total()));
            for lane in Precedence::ALL {
                for p in [A, F] {
                    v.push(format!(
                        "{:?}",
                        s.in_lane(p, *lane)
                            .map(|l| (l.received, l.receipts.clone()))
                    ));
                    v.push(format!(
                        "{:?}",
                        s.out_lane(p, *lane).map(|l| (l.last_seq, l.delivered))
                    ));
                }
            }
            v
        };
        assert_eq!(summary(&r), summary(&n.state));
    }
}

#[test]
fn a_receipt_for_other_bytes_is_refused() {
    let (mut a, mut f, _, s2, _) = peered();
    f.run(
        send_message(
            &f.state,
            text(F, A, &s2, 1, Sphere::Military, Precedence::Routine),
            T0,
        ),
        T0,
    );
    let (_, p) = f.state.pending(A, Precedence::Routine, 1)[0];
    a.run(
        receive(&a.state, F, f.log[p.index as usize].clone(), T0),
        T0,
    );
    // Alliance signs a receipt naming other bytes.
    let wrong = receipt_entry(
        F,
        vec![ReceiptItem {
            lane: Precedence::Routine,
            seq: 1,
            leaf_hash: tlog::leaf_hash(b"other"),
            index: 0,
            refused: None,
        }],
        (1, [0; 32]),
    );
    let bytes = tlog::entry::Entry {
        kind: "line.receipt".into(),
        origin: A.into(),
        timestamp_ms: T0,
        body: wrong.to_value(),
    }
    .sign(&a.signer)
    .unwrap()
    .to_bytes();
    assert!(matches!(
        keep_receipt(&f.state, A, bytes),
        Err(LineError::RecordRefused(_))
    ));
    let good = a.log.last().unwrap().clone();
    f.run(keep_receipt(&f.state, A, good.clone()), T0);
    assert_eq!(
        keep_receipt(&f.state, A, good).unwrap().outcome,
        LineOutcome::AlreadyDone
    );
}

#[test]
fn peers_are_pinned_to_one_key() {
    let (a, _, _, _, _) = peered();
    let other = tlog::NoteSigner::from_seed(F, &[7; 32]).unwrap();
    assert!(matches!(
        add_peer(&a.state, F, "http://f", &other.verifier().to_vkey(), T0),
        Err(LineError::Conflict(_))
    ));
    let wrong_name = tlog::NoteSigner::from_seed("elsewhere", &[7; 32]).unwrap();
    assert!(matches!(
        add_peer(&a.state, "x", "http://x", &wrong_name.verifier().to_vkey(), T0),
        Err(LineError::Invalid { field, .. }) if field == "name"
    ));
}

#[test]
fn a_routine_message_waits_for_the_flash_records_sent_before_it() {
    let mut a = Node::new(A, 1);
    let mut f = Node::new(F, 2);
    let (av, fv) = (a.vkey(), f.vkey());
    a.run(add_peer(&a.state, F, "http://f", &fv, T0), T0);
    f.run(add_peer(&f.state, A, "http://a", &av, T0), T0);
    // Federation registers a member (FLASH lane), who then sends ROUTINE.
    let (s2, m2) = member(2, &[Sphere::DirectLine]);
    f.run(register_member(&f.state, m2), T0);
    let m = text(F, A, &s2, 1, Sphere::DirectLine, Precedence::Routine);
    f.run(send_message(&f.state, m.clone(), T0), T0);
    let (_, routine) = f.state.pending(A, Precedence::Routine, 1)[0];
    // The routine record overtakes the registration (FLASH 2, after the
    // announcement of Federation's peers): it must wait.
    assert!(matches!(
        receive(&a.state, F, f.log[routine.index as usize].clone(), T0),
        Err(LineError::Waiting {
            lane: Precedence::Flash,
            needed: 2,
            have: 0,
            ..
        })
    ));
    assert_eq!(deliver(&mut f, &mut a, T0), 3);
    assert!(matches!(
        a.state.message(&m.value.id).unwrap().delivery,
        Delivery::Delivered { .. }
    ));
}

#[test]
fn a_channel_s_own_deadlines_apply_on_both_sides_from_their_effective_time() {
    let (mut a, mut f, _, s2, _) = peered();
    assert!(set_deadlines(&a.state, F, Sphere::Military, vec![1, 2, 3, 4], T0, T0).is_err());
    a.run(
        set_deadlines(
            &a.state,
            F,
            Sphere::Military,
            vec![120_000, 900_000, 3_600_000, 7_200_000],
            T0 + 1000,
            T0,
        ),
        T0,
    );
    deliver(&mut a, &mut f, T0);
    let early = text(F, A, &s2, 1, Sphere::Military, Precedence::Flash);
    f.run(send_message(&f.state, early.clone(), T0), T0);
    let mut late = text(F, A, &s2, 2, Sphere::Military, Precedence::Flash).value;
    late.created_ms = T0 + 1000;
    let late = s2.sign_message(late);
    f.run(send_message(&f.state, late.clone(), T0 + 1000), T0 + 1000);
    deliver(&mut f, &mut a, T0 + 1000);
    for side in [&a.state, &f.state] {
        let e = side.message(&early.value.id).unwrap();
        assert_eq!(side.deadline_ms(e), T0 + 10 * 60_000, "before: the default");
        let l = side.message(&late.value.id).unwrap();
        assert_eq!(
            side.deadline_ms(l),
            T0 + 1000 + 120_000,
            "after: the channel's"
        );
    }
}

#[test]
fn signatures_checked_off_the_writer_are_those_of_the_pinned_keys() {
    let (a, mut f, _, s2, _) = peered();
    let m = text(F, A, &s2, 1, Sphere::Military, Precedence::Routine);
    f.run(send_message(&f.state, m, T0), T0);
    let bytes = f.log.last().unwrap().clone();
    let pinned = a.state.peer(F).unwrap().clone();
    assert!(record_signatures_ok(&pinned, F, &bytes));
    // Not from this origin, another key, a flipped byte, a forged member signature.
    assert!(!record_signatures_ok(&pinned, "someone", &bytes));
    let mut other = pinned.clone();
    other.verifier = tlog::NoteSigner::from_seed(F, &[9; 32]).unwrap().verifier();
    assert!(!record_signatures_ok(&other, F, &bytes));
    let mut flipped = bytes.clone();
    let n = flipped.len();
    flipped[n - 1] ^= 1;
    assert!(!record_signatures_ok(&pinned, F, &flipped));
    let mut forged = text(F, A, &s2, 2, Sphere::Military, Precedence::Routine);
    forged.signature[0] ^= 1;
    assert!(send_message(&f.state, forged.clone(), T0).is_err());
    // A node that signs a forged member signature into its own entry: the
    // entry verifies, the member's signature does not.
    let mut g = Node::new(F, 2);
    g.state = f.state.clone();
    g.log = f.log.clone();
    g.tree = f.tree.clone();
    g.run(
        send_message_as(&g.state, forged, T0, Signatures::Checked),
        T0,
    );
    assert!(!record_signatures_ok(&pinned, F, g.log.last().unwrap()));
}

#[test]
fn a_receipt_names_the_receiver_s_log_root_right_after_the_record() {
    let (mut a, mut f, _, s2, _) = peered();
    f.run(
        send_message(
            &f.state,
            text(F, A, &s2, 1, Sphere::Military, Precedence::Routine),
            T0,
        ),
        T0,
    );
    deliver(&mut f, &mut a, T0);
    let receipt = tlog::entry::SignedEntry::parse(a.log.last().unwrap()).unwrap();
    let Record::Receipt(r) = LineEntry::from_value(&receipt.entry.kind, &receipt.entry.body)
        .unwrap()
        .record
    else {
        panic!("not a receipt");
    };
    let mut tree = tlog::tree::MemoryTree::new();
    for leaf in &a.log[..a.log.len() - 1] {
        tree.append(leaf);
    }
    let [item] = &r.items[..] else {
        panic!("one record, one item: {:?}", r.items);
    };
    assert_eq!(r.tree_size, item.index + 1);
    assert_eq!(tree.root(r.tree_size).unwrap(), r.root);
    assert_eq!(item.leaf_hash, tlog::leaf_hash(&a.log[item.index as usize]));
}

#[test]
fn one_receipt_names_a_run_of_records_which_replays_to_the_same_state() {
    let (mut a, mut f, s1, s2, _) = peered();
    // A member registered, then messages from them on two lanes, then an
    // acknowledgement of one of Alliance's messages: the records after the
    // registration are decided against it within the same batch.
    let m1 = text(A, F, &s1, 1, Sphere::DirectLine, Precedence::Routine);
    a.run(send_message(&a.state, m1.clone(), T0), T0);
    deliver(&mut a, &mut f, T0);
    let (s3, m3) = member(3, &[Sphere::Military]);
    f.run(register_member(&f.state, m3), T0);
    let mut sent = vec![];
    for seq in 1..=3 {
        let m = text(F, A, &s2, seq, Sphere::Military, Precedence::Routine);
        sent.push(m.value.id);
        f.run(send_message(&f.state, m, T0), T0);
    }
    let ack = s2.sign_ack(Ack {
        message: m1.value.id,
        from: F.into(),
        to: A.into(),
        by: s2.key(),
        verdict: AckVerdict::Accept,
        text: "wilco".into(),
        at_ms: T0,
    });
    f.run(acknowledge(&f.state, ack, T0), T0);
    let size = a.log.len();
    let records: Vec<Vec<u8>> = Precedence::ALL
        .iter()
        .flat_map(|l| f.state.pending(A, *l, usize::MAX))
        .map(|(_, p)| f.log[p.index as usize].clone())
        .collect();
    assert!(records.len() >= 5, "{}", records.len());
    let outs: Vec<LineOutcome> = records
        .iter()
        .map(|r| a.run_in_batch(receive(&a.state, F, r.clone(), T0), T0))
        .collect();
    a.end_batch(T0);
    // The records, then one receipt naming each of them in order.
    assert_eq!(a.log.len(), size + records.len() + 1);
    let at = a.log.len() as u64 - 1;
    for o in &outs {
        assert_eq!(a.receipt_index(F, o), at);
    }
    let e = tlog::entry::SignedEntry::parse(&a.log[at as usize]).unwrap();
    e.verify(&a.signer.verifier()).unwrap();
    let Record::Receipt(r) = LineEntry::from_value(&e.entry.kind, &e.entry.body)
        .unwrap()
        .record
    else {
        panic!("not a receipt");
    };
    assert_eq!(
        r.items.iter().map(|i| i.leaf_hash).collect::<Vec<_>>(),
        records
            .iter()
            .map(|b| tlog::leaf_hash(b))
            .collect::<Vec<_>>()
    );
    assert!(r.items.iter().all(|i| i.refused.is_none()), "{:?}", r.items);
    assert_eq!(r.tree_size, at);
    // Alliance sees the messages and the acknowledgement...
    for id in &sent {
        assert!(a.state.message(id).is_some());
    }
    assert!(a.state.message(&m1.value.id).unwrap().ack.is_some());
    assert!(a.state.member(&s3.key()).is_some());
    // ...and so does a state rebuilt from its log alone.
    let replayed = a.replayed();
    assert!(replayed.member(&s3.key()).is_some());
    for id in &sent {
        assert_eq!(
            replayed.message(id).map(|m| m.index),
            a.state.message(id).map(|m| m.index)
        );
    }
    assert!(replayed.message(&m1.value.id).unwrap().ack.is_some());
    // Federation keeps the one receipt: every record is delivered.
    f.run(keep_receipt(&f.state, A, a.log[at as usize].clone()), T0);
    for l in Precedence::ALL {
        assert!(f.state.pending(A, *l, usize::MAX).is_empty(), "{l}");
    }
    for id in &sent {
        assert!(matches!(
            f.state.message(id).unwrap().delivery,
            Delivery::Delivered { .. }
        ));
    }
    // Kept again: nothing to do.
    assert_eq!(
        keep_receipt(&f.state, A, a.log[at as usize].clone())
            .unwrap()
            .outcome,
        LineOutcome::AlreadyDone
    );
}

#[test]
fn receipts_of_one_record_each_as_earlier_logs_hold_them_still_replay_and_are_kept() {
    let (mut a, mut f, _, s2, _) = peered();
    let m = text(F, A, &s2, 1, Sphere::Military, Precedence::Routine);
    f.run(send_message(&f.state, m.clone(), T0), T0);
    let (_, p) = f.state.pending(A, Precedence::Routine, 1)[0];
    let record = f.log[p.index as usize].clone();
    a.run_in_batch(receive(&a.state, F, record.clone(), T0), T0);
    // The receipt as Alliance signed it before receipts named runs.
    let mut tree = tlog::tree::MemoryTree::new();
    for leaf in &a.log {
        tree.append(leaf);
    }
    let size = a.log.len() as u64;
    let old = LineEntry {
        record: Record::Receipt(Receipt {
            origin: F.into(),
            items: vec![ReceiptItem {
                lane: Precedence::Routine,
                seq: 1,
                leaf_hash: tlog::leaf_hash(&record),
                index: size - 1,
                refused: None,
            }],
            tree_size: size,
            root: tree.root(size).unwrap(),
            form: ReceiptForm::Single,
        }),
        envelope: None,
    };
    assert!(
        matches!(&old.record.to_value(), tlog::cbor::Value::Map(m) if m.len() == 8),
        "the single-record layout"
    );
    let body = old.to_value();
    let bytes = tlog::entry::Entry {
        kind: "line.receipt".into(),
        origin: A.into(),
        timestamp_ms: T0,
        body,
    }
    .sign(&a.signer)
    .unwrap()
    .to_bytes();
    a.log.push(bytes.clone());
    let replayed = a.replayed();
    assert!(!replayed.message(&m.value.id).unwrap().outgoing);
    assert_eq!(
        replayed
            .in_lane(F, Precedence::Routine)
            .unwrap()
            .receipts
            .get(1)
            .unwrap(),
        size
    );
    f.run(keep_receipt(&f.state, A, bytes), T0);
    assert_eq!(
        f.state.message(&m.value.id).unwrap().delivery,
        Delivery::Delivered { index: size - 1 }
    );
}

#[test]
fn a_run_ends_before_this_node_appends_anything_else_and_at_its_size_limit() {
    let (mut a, mut f, s1, s2, _) = peered();
    for seq in 1..=(RECEIPT_ITEMS as u64 + 2) {
        let m = text(F, A, &s2, seq, Sphere::Military, Precedence::Routine);
        f.run(send_message(&f.state, m, T0), T0);
    }
    let records: Vec<Vec<u8>> = f
        .state
        .pending(A, Precedence::Routine, usize::MAX)
        .into_iter()
        .map(|(_, p)| f.log[p.index as usize].clone())
        .collect();
    let start = a.log.len();
    for r in &records {
        a.run_in_batch(receive(&a.state, F, r.clone(), T0), T0);
    }
    // RECEIPT_ITEMS records, their receipt, then the rest (unreceipted).
    assert_eq!(a.log.len(), start + records.len() + 1);
    let receipt = |bytes: &[u8]| {
        let e = tlog::entry::SignedEntry::parse(bytes).unwrap();
        match LineEntry::from_value(&e.entry.kind, &e.entry.body)
            .unwrap()
            .record
        {
            Record::Receipt(r) => Some(r),
            _ => None,
        }
    };
    let r = receipt(&a.log[start + RECEIPT_ITEMS]).unwrap();
    assert_eq!(r.items.len(), RECEIPT_ITEMS);
    assert_eq!(a.state.unreceipted().unwrap().1.len(), 2);
    // Alliance's own message ends the run first.
    let m = text(A, F, &s1, 1, Sphere::DirectLine, Precedence::Routine);
    a.run_in_batch(send_message(&a.state, m, T0), T0);
    let n = a.log.len();
    assert_eq!(receipt(&a.log[n - 2]).unwrap().items.len(), 2);
    assert!(receipt(&a.log[n - 1]).is_none());
    assert!(a.state.unreceipted().is_none());
    a.end_batch(T0);
    assert_eq!(a.log.len(), n, "nothing left to receipt");
}

#[test]
fn a_guest_whose_clock_is_behind_the_hosts_can_send_as_soon_as_it_is_accredited() {
    let (mut a, mut f, _, _, _) = peered();
    let (s3, m3) = member(3, Sphere::ALL);
    f.run(register_member(&f.state, m3), T0);
    deliver(&mut f, &mut a, T0);
    // Alliance accredits at t1 by its clock; Federation's runs 90 s behind.
    let (t1, behind) = (T0 + 3_600_000, 90_000);
    a.run(
        accredit(
            &a.state,
            Accredit {
                id: Uuid::from_u128(60),
                guest: F.into(),
                member: s3.key(),
                name: "Capt. F".into(),
                role: "liaison officer".into(),
                spheres: vec![Sphere::Military],
                valid_from: t1,
                valid_until: t1 + 86_400_000,
            },
            t1,
        ),
        t1,
    );
    deliver(&mut a, &mut f, t1 + 200 - behind);
    // One second later in real time, Federation's node takes the message...
    let m = text(F, A, &s3, 1, Sphere::Military, Precedence::Routine);
    let id = m.value.id;
    f.run(
        send_message(&f.state, m, t1 + 1000 - behind),
        t1 + 1000 - behind,
    );
    // ...and Alliance, whose clock decides, accepts it on receipt.
    deliver(&mut f, &mut a, t1 + 1000);
    assert!(matches!(
        f.state.message(&id).unwrap().delivery,
        Delivery::Delivered { .. }
    ));
    // A clock further behind than the tolerance is still told to wait.
    let early = text(F, A, &s3, 2, Sphere::Military, Precedence::Routine);
    assert!(matches!(
        send_message(&f.state, early, t1 - CLOCK_SKEW_MS - 1),
        Err(LineError::NotAccredited { reason, .. }) if reason.contains("valid only from")
    ));
}

#[test]
fn a_peer_is_removed_only_once_both_parties_closed_the_direct_line() {
    let (mut a, mut f, _, _, _) = peered();
    let refused = remove_peer(&a.state, F, "relations downgraded", T0);
    assert!(
        matches!(
            refused,
            Err(LineError::ChannelNotOpen {
                sphere: Sphere::DirectLine,
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(matches!(
        remove_peer(&a.state, "nobody", "x", T0),
        Err(LineError::UnknownPeer(_))
    ));
    for (n, other) in [(&mut a, F), (&mut f, A)] {
        let d = channel_notice(
            &n.state,
            other,
            Sphere::DirectLine,
            ChannelState::Closed,
            T0,
            "agreed",
            T0,
        );
        n.run(d, T0);
    }
    deliver(&mut a, &mut f, T0);
    deliver(&mut f, &mut a, T0);
    // One closure each: closed, and now the peer may go.
    assert!(matches!(
        remove_peer(&a.state, F, " ", T0 + 1),
        Err(LineError::Invalid { .. })
    ));
    a.run(
        remove_peer(&a.state, F, "relations downgraded", T0 + 1),
        T0 + 1,
    );
    assert!(a.state.peer(F).is_none());
    assert!(a.state.area(F).is_empty());
    assert!(a.replayed().peer(F).is_none(), "the log says so too");
    // Pinned again (e.g. under a new key), it is a peer again.
    let vkey = f.vkey();
    a.run(
        add_peer(&a.state, F, "https://federation.example", &vkey, T0),
        T0 + 2,
    );
    assert!(a.state.peer(F).is_some());
}

#[test]
fn an_expulsion_with_notice_lets_the_member_act_until_it_takes_effect() {
    let (mut a, mut f, _, s2, id) = peered();
    let leave = T0 + 12 * 3_600_000; // within the accreditation's day
    assert!(matches!(
        revoke(&a.state, id, "leave within twelve hours", T0 - 1, T0),
        Err(LineError::Invalid { .. })
    ));
    a.run(
        revoke(&a.state, id, "leave within twelve hours", leave, T0),
        T0,
    );
    deliver(&mut a, &mut f, T0);
    // Both sides see it coming, and the member still acts until then.
    for side in [&a.state, &f.state] {
        let acc = side.accreditation(&id).unwrap();
        assert_eq!(acc.revoked.as_ref().map(|r| r.0), Some(leave));
        assert_eq!(side.inactive_reason(acc, leave - 1), None);
        let after = side.inactive_reason(acc, leave).unwrap();
        assert!(after.contains("leave within twelve hours"), "{after}");
    }
    let during = text(F, A, &s2, 1, Sphere::Military, Precedence::Routine);
    f.run(send_message(&f.state, during.clone(), leave - 1), leave - 1);
    deliver(&mut f, &mut a, leave - 1);
    assert!(matches!(
        a.state.message(&during.value.id).unwrap().delivery,
        Delivery::Delivered { .. }
    ));
    // Afterwards every record of the member is refused with the reason.
    let late = text(F, A, &s2, 2, Sphere::Military, Precedence::Routine);
    assert!(matches!(
        send_message(&f.state, late, leave),
        Err(LineError::NotAccredited { reason, .. }) if reason.contains("leave within twelve hours")
    ));
    // Notice may be shortened, not lengthened.
    assert_eq!(
        revoke(&a.state, id, "later", leave + 1, T0 + 1)
            .unwrap()
            .outcome,
        LineOutcome::AlreadyDone
    );
    a.run(revoke(&a.state, id, "at once", T0 + 2, T0 + 2), T0 + 2);
    let acc = a.state.accreditation(&id).unwrap();
    assert_eq!(acc.revoked.as_ref().map(|r| r.0), Some(T0 + 2));
    assert_eq!(
        a.replayed()
            .accreditation(&id)
            .unwrap()
            .revoked
            .as_ref()
            .map(|r| r.0),
        Some(T0 + 2)
    );
}

#[test]
fn who_saw_what_is_kept_once_per_member_and_message_and_signed_by_the_member() {
    let (mut a, mut f, s1, s2, _) = peered();
    let m = text(F, A, &s2, 1, Sphere::Military, Precedence::Routine);
    f.run(send_message(&f.state, m.clone(), T0), T0);
    deliver(&mut f, &mut a, T0);
    let id = m.value.id;
    let seen = |at: Millis, signed: Option<(String, [u8; 64])>| Access {
        what: "message.seen".into(),
        member: s1.key(),
        subject: Some(id.to_string()),
        at_ms: at,
        signed,
    };
    let text_of = |at| seen_text(A, &id, at);
    let good = (text_of(T0 + 5), s1.sign_text(text_of(T0 + 5).as_bytes()));
    // Another member's signature, or another text, is refused.
    let forged = (text_of(T0 + 5), s2.sign_text(text_of(T0 + 5).as_bytes()));
    assert!(matches!(
        record_access(&a.state, seen(T0 + 5, Some(forged))),
        Err(LineError::BadSignature { .. })
    ));
    let other = (text_of(T0 + 6), s1.sign_text(text_of(T0 + 6).as_bytes()));
    assert!(record_access(&a.state, seen(T0 + 5, Some(other))).is_err());
    a.run(
        record_access(&a.state, seen(T0 + 5, Some(good.clone()))),
        T0 + 5,
    );
    assert_eq!(a.state.seen(&id), &[(s1.key(), T0 + 5)]);
    // The first display only.
    assert_eq!(
        record_access(&a.state, seen(T0 + 9, None)).unwrap().outcome,
        LineOutcome::AlreadyDone
    );
    // Only this party's members; only messages this node holds.
    let mut theirs = seen(T0, None);
    theirs.member = s2.key();
    assert!(matches!(
        record_access(&a.state, theirs),
        Err(LineError::UnknownMember { .. })
    ));
    let mut unknown = seen(T0, None);
    unknown.subject = Some(Uuid::from_u128(77).to_string());
    assert!(matches!(
        record_access(&a.state, unknown),
        Err(LineError::NotFound { .. })
    ));
    // Logins are kept as they come; the log says the same after a replay.
    let login = Access {
        what: "console.login".into(),
        member: s1.key(),
        subject: None,
        at_ms: T0 + 6,
        signed: None,
    };
    a.run(record_access(&a.state, login), T0 + 6);
    let replayed = a.replayed();
    assert_eq!(replayed.seen(&id), a.state.seen(&id));
    assert_eq!(replayed.access().count(), 2);
}

#[test]
fn a_deconfliction_area_binds_only_once_both_parties_propose_the_same_polygons() {
    let (mut a, mut f, _, _, _) = peered();
    let box1 = vec![vec![(44.5, 9.5), (44.5, 11.0), (45.5, 11.0), (45.5, 9.5)]];
    let box2 = vec![vec![(44.0, 9.0), (44.0, 12.0), (46.0, 12.0), (46.0, 9.0)]];
    // Alliance's proposal alone binds nothing, on either side.
    a.run(set_area(&a.state, F, box1.clone(), T0), T0);
    deliver(&mut a, &mut f, T0);
    assert!(a.state.area(F).is_empty() && f.state.area(A).is_empty());
    assert_eq!(a.state.area_state(F).unwrap().status(), "proposed");
    assert_eq!(f.state.area_state(A).unwrap().status(), "offered");
    // Federation proposes other polygons: still nothing agreed.
    f.run(set_area(&f.state, A, box2.clone(), T0 + 1), T0 + 1);
    deliver(&mut f, &mut a, T0 + 1);
    assert!(a.state.area(F).is_empty() && f.state.area(A).is_empty());
    // The same polygons: agreed on both sides, the same area.
    f.run(set_area(&f.state, A, box1.clone(), T0 + 2), T0 + 2);
    assert_eq!(f.state.area(A), box1.as_slice());
    assert!(a.state.area(F).is_empty(), "not before it arrives");
    deliver(&mut f, &mut a, T0 + 2);
    assert_eq!(a.state.area(F), box1.as_slice());
    assert_eq!(a.state.area_state(F).unwrap().status(), "agreed");
    assert_eq!(f.state.area_state(A).unwrap().status(), "agreed");
    // A new proposal leaves the agreed area in force until agreed in turn.
    a.run(set_area(&a.state, F, box2.clone(), T0 + 3), T0 + 3);
    deliver(&mut a, &mut f, T0 + 3);
    assert_eq!(a.state.area(F), box1.as_slice());
    assert_eq!(f.state.area_state(A).unwrap().status(), "offered");
    f.run(set_area(&f.state, A, box2.clone(), T0 + 4), T0 + 4);
    deliver(&mut f, &mut a, T0 + 4);
    assert_eq!(a.state.area(F), box2.as_slice());
    assert_eq!(f.state.area(A), box2.as_slice());
    // Either party withdraws alone: nothing is agreed any more.
    f.run(set_area(&f.state, A, vec![], T0 + 5), T0 + 5);
    deliver(&mut f, &mut a, T0 + 5);
    assert!(a.state.area(F).is_empty() && f.state.area(A).is_empty());
    assert_eq!(a.state.area_state(F).unwrap().status(), "proposed");
    // The log alone rebuilds the same agreement.
    assert_eq!(a.replayed().area_state(F), a.state.area_state(F));
    // A proposal naming another pair, or bad polygons, is refused.
    assert!(
        set_area(
            &a.state,
            F,
            vec![vec![(91.0, 0.0), (0.0, 0.0), (1.0, 1.0)]],
            T0
        )
        .is_err()
    );
    let forged = Record::AreaProposed {
        by: "commonwealth".into(),
        peer: A.into(),
        polygons: box1,
        at_ms: T0,
    };
    assert!(refusal(&a.state, F, &forged, T0, Signatures::Checked).is_some());
}

#[test]
fn a_group_message_names_its_addressee_and_never_its_sender() {
    let (mut a, mut f, s1, _, _) = peered();
    let grouped = |to: &str, group: Vec<&str>, seq: u64| {
        s1.sign_message(Message {
            group: Some(Group {
                id: Uuid::from_u128(77),
                to: group.into_iter().map(String::from).collect(),
            }),
            ..text(A, to, &s1, seq, Sphere::DirectLine, Precedence::Flash).value
        })
    };
    // Refused when sent: another pair's group, a group of one, the sender
    // named, a stranger named.
    for group in [vec!["x", "y"], vec![F], vec![A, F], vec![F, "nobody"]] {
        let r = send_message(&a.state, grouped(F, group.clone(), 1), T0);
        assert!(
            matches!(&r, Err(LineError::Invalid { field, .. }) if field.starts_with("group")),
            "{group:?}: {r:?}"
        );
    }
    // A peer's node that let such a group through: kept, refused.
    let bad = grouped(F, vec![A, F], 1);
    let reason = refusal(&f.state, A, &Record::Message(bad), T0, Signatures::Checked);
    assert!(reason.is_some_and(|r| r.starts_with("group:")));
    // A group of two peers, one addressed: accepted; the state indexes it.
    let c = Node::new("commonwealth", 3);
    a.run(
        add_peer(&a.state, "commonwealth", "http://c", &c.vkey(), T0),
        T0,
    );
    let m = grouped(F, vec![F, "commonwealth"], 1);
    a.run(send_message(&a.state, m.clone(), T0), T0);
    deliver(&mut a, &mut f, T0);
    assert_eq!(a.state.group(&Uuid::from_u128(77)).count(), 1);
    let at_f = f.state.message(&m.value.id).unwrap();
    assert_eq!(at_f.delivery, Delivery::Delivered { index: at_f.index });
    assert_eq!(f.state.group(&Uuid::from_u128(77)).count(), 1);
}

#[test]
fn each_party_announces_whom_it_pins_to_all_it_pins() {
    let (mut a, mut f, _, _, _) = peered();
    let (av, fv) = (a.vkey(), f.vkey());
    assert_eq!(
        f.state.announced_peers(A).map(|(p, _)| p.clone()),
        Some(vec![(F.to_string(), fv.clone())])
    );
    assert_eq!(
        a.state.announced_peers(F).map(|(p, _)| p.clone()),
        Some(vec![(A.to_string(), av)])
    );
    // A third peer pinned: the new one and the old one both learn it.
    let c = Node::new("commonwealth", 3);
    a.run(
        add_peer(&a.state, "commonwealth", "http://c", &c.vkey(), T0 + 1),
        T0 + 1,
    );
    deliver(&mut a, &mut f, T0 + 1);
    let (peers, at) = f.state.announced_peers(A).unwrap().clone();
    assert_eq!(at, T0 + 1);
    assert_eq!(
        peers,
        vec![("commonwealth".to_string(), c.vkey()), (F.to_string(), fv)]
    );
    let to_c = a.state.pending("commonwealth", Precedence::Flash, 10);
    assert!(
        !to_c.is_empty(),
        "the new peer is sent the announcement too"
    );
    // Nobody announces for another party.
    let forged = Record::PeersAnnounced {
        by: "commonwealth".into(),
        peers: vec![],
        at_ms: T0,
    };
    assert!(refusal(&f.state, A, &forged, T0, Signatures::Checked).is_some());
    assert_eq!(a.replayed().announced_peers(F), a.state.announced_peers(F));
}

#[test]
fn a_line_of_contact_is_agreed_on_identical_terms_and_its_history_kept() {
    let (mut a, mut f, _, _, _) = peered();
    let terms = |buffer_m: f64| ContactTerms {
        line: vec![(45.0, 9.8), (45.0, 10.8)],
        buffer_m,
        altitude_lower_m: 0.0,
        altitude_upper_m: 20_000.0,
        time_start_ms: T0,
        time_end_ms: T0 + 86_400_000,
    };
    a.run(propose_contact(&a.state, F, terms(2000.0), T0), T0);
    deliver(&mut a, &mut f, T0);
    assert_eq!(f.state.contact_line(A).unwrap().status(), "offered");
    // Federation accepts: exactly Alliance's terms, agreed on both sides.
    f.run(accept_proposal(&f.state, A, true, T0 + 1), T0 + 1);
    deliver(&mut f, &mut a, T0 + 1);
    let agreed = |n: &Node, peer: &str| n.state.contact_line(peer).unwrap().agreed.clone();
    assert_eq!(agreed(&a, F).map(|(t, _)| t), Some(terms(2000.0)));
    assert_eq!(agreed(&f, A).map(|(t, _)| t), Some(terms(2000.0)));
    // A buffer one millimetre off is another line: not agreed.
    f.run(
        propose_contact(&f.state, A, terms(2000.001), T0 + 2),
        T0 + 2,
    );
    deliver(&mut f, &mut a, T0 + 2);
    assert_eq!(agreed(&a, F).map(|(t, _)| t.buffer_m), Some(2000.0));
    a.run(accept_proposal(&a.state, F, true, T0 + 3), T0 + 3);
    deliver(&mut a, &mut f, T0 + 3);
    assert_eq!(agreed(&f, A).map(|(t, _)| t.buffer_m), Some(2000.001));
    assert_eq!(f.state.contact_line(A).unwrap().history.len(), 2);
    // Withdrawn by one: nothing binds; the history stays for the node to
    // unbind what it bound.
    a.run(
        propose_contact(&a.state, F, ContactTerms::withdrawal(), T0 + 4),
        T0 + 4,
    );
    deliver(&mut a, &mut f, T0 + 4);
    assert!(agreed(&f, A).is_none() && agreed(&a, F).is_none());
    assert_eq!(a.state.contact_line(F).unwrap().history.len(), 2);
    assert_eq!(a.replayed().contact_line(F), a.state.contact_line(F));
    // Nothing offered (no area proposed by Federation): nothing to accept;
    // bad terms refused with the field.
    assert!(matches!(
        accept_proposal(&a.state, F, false, T0),
        Err(LineError::NotFound { .. })
    ));
    let mut bad = terms(2000.0);
    bad.time_end_ms = bad.time_start_ms;
    assert!(matches!(
        propose_contact(&a.state, F, bad, T0),
        Err(LineError::Invalid { field, .. }) if field == "time_end"
    ));
}

#[test]
fn a_replaced_or_compromised_key_signs_nothing_more_and_its_earlier_records_stand() {
    let (mut a, mut f, _, s2, _) = peered();
    // Maj. F's messages: one before the compromise, one after.
    let early = text(F, A, &s2, 1, Sphere::Military, Precedence::Routine);
    let late = s2.sign_message(Message {
        created_ms: T0 + 10_000,
        ..text(F, A, &s2, 2, Sphere::Military, Precedence::Routine).value
    });
    f.run(send_message(&f.state, early.clone(), T0), T0);
    f.run(
        send_message(&f.state, late.clone(), T0 + 10_000),
        T0 + 10_000,
    );
    deliver(&mut f, &mut a, T0 + 10_000);
    // Only its own party declares it; not in the future.
    assert!(declare_compromised(&a.state, s2.key(), T0, "x", T0 + 20_000).is_err());
    assert!(declare_compromised(&f.state, s2.key(), T0 + 30_000, "x", T0 + 20_000).is_err());
    f.run(
        declare_compromised(&f.state, s2.key(), T0 + 5_000, "laptop stolen", T0 + 20_000),
        T0 + 20_000,
    );
    deliver(&mut f, &mut a, T0 + 20_000);
    assert!(a.state.suspect(&s2.key(), early.value.created_ms).is_none());
    assert_eq!(
        a.state
            .suspect(&s2.key(), late.value.created_ms)
            .map(|(f, _)| *f),
        Some(T0 + 5_000)
    );
    // Its next message is refused at its own node, and its registration
    // again is refused at the peer.
    let next = text(F, A, &s2, 3, Sphere::Military, Precedence::Routine);
    assert!(matches!(
        send_message(&f.state, next, T0 + 30_000),
        Err(LineError::UnknownMember { detail, .. }) if detail.contains("compromised")
    ));
    let again = Record::MemberRegistered(Member {
        key: s2.key(),
        name: "Maj. F".into(),
        role: "x".into(),
        spheres: vec![Sphere::DirectLine],
    });
    assert!(refusal(&a.state, F, &again, T0, Signatures::Checked).is_some());
    // A key replaced: the old one removed, the new one registered, at both.
    let (s4, m4) = member(4, &[Sphere::DirectLine]);
    let (s5, m5) = member(5, &[Sphere::DirectLine]);
    f.run(register_member(&f.state, m4), T0);
    assert!(replace_member(&f.state, s4.key(), m5.clone(), T0).is_ok());
    assert!(
        replace_member(&f.state, s2.key(), m5.clone(), T0).is_err(),
        "already removed"
    );
    f.run(replace_member(&f.state, s4.key(), m5, T0 + 1), T0 + 1);
    deliver(&mut f, &mut a, T0 + 1);
    let old = a.state.member(&s4.key()).unwrap();
    assert_eq!(
        (old.removed_at, old.replaced_by),
        (Some(T0 + 1), Some(s5.key()))
    );
    assert_eq!(a.state.member(&s5.key()).unwrap().replaces, Some(s4.key()));
    let by_new = text(F, A, &s5, 1, Sphere::DirectLine, Precedence::Flash);
    f.run(send_message(&f.state, by_new.clone(), T0 + 2), T0 + 2);
    deliver(&mut f, &mut a, T0 + 2);
    assert!(matches!(
        a.state.message(&by_new.value.id).unwrap().delivery,
        Delivery::Delivered { .. }
    ));
    let replayed = a.replayed();
    assert_eq!(
        replayed.member(&s2.key()).map(|m| m.compromised.clone()),
        a.state.member(&s2.key()).map(|m| m.compromised.clone())
    );
}

#[test]
fn a_node_key_is_handed_over_signed_by_the_old_key_and_the_old_key_covers_only_what_came_before() {
    let (mut a, mut f, s1, s2, _) = peered();
    // Before the hand-over: F's routine message, signed by the old key, not
    // yet delivered; A's message received by F, its receipt lost on the way.
    let before = text(F, A, &s2, 1, Sphere::Military, Precedence::Routine);
    f.run(send_message(&f.state, before.clone(), T0), T0);
    let to_f = text(A, F, &s1, 1, Sphere::DirectLine, Precedence::Priority);
    a.run(send_message(&a.state, to_f, T0), T0);
    let (_, p) = a.state.pending(F, Precedence::Priority, 1)[0];
    let bytes = a.log[p.index as usize].clone();
    f.run(receive(&f.state, A, bytes, T0), T0);
    let lost_receipt = f.log.last().unwrap().clone();

    // The hand-over: signed by the old key, then the new key signs.
    let old = f.signer.clone();
    let new = tlog::NoteSigner::from_seed(F, &[7; 32]).unwrap();
    let (ov, nv) = (old.verifier().to_vkey(), new.verifier().to_vkey());
    assert!(
        rotate_key(
            &f.state,
            &ov,
            &tlog::NoteSigner::from_seed(A, &[7; 32])
                .unwrap()
                .verifier()
                .to_vkey(),
            T0
        )
        .is_err(),
        "another name"
    );
    assert!(rotate_key(&f.state, &ov, &ov, T0).is_err(), "the same key");
    let flash = f.state.out_lane(A, Precedence::Flash).unwrap().last_seq;
    let mut got = [0u64; 4];
    for (g, l) in got.iter_mut().zip(Precedence::ALL) {
        *g = f.state.in_lane(A, *l).map_or(0, |l| l.received);
    }
    assert_eq!(got[2], 1, "A's priority message");
    f.run(rotate_key(&f.state, &ov, &nv, T0 + 1), T0 + 1);
    f.signer = new.clone();
    assert_eq!(f.state.own_key(), Some(nv.as_str()));
    assert!(matches!(
        rotate_key(&f.state, &ov, &nv, T0 + 2),
        Ok(LineDecision {
            outcome: LineOutcome::AlreadyDone,
            ..
        })
    ));
    assert_eq!(f.state.handover_receipts(), vec![(A.to_string(), false)]);
    assert!(!f.state.handover_complete());
    let after = text(F, A, &s2, 2, Sphere::Military, Precedence::Routine);
    f.run(send_message(&f.state, after.clone(), T0 + 2), T0 + 2);

    // A record of the new key before A has the hand-over waits for it
    // (it names the hand-over on FLASH as its predecessor).
    let (_, p) = f.state.pending(A, Precedence::Routine, 2)[1];
    let newer = f.log[p.index as usize].clone();
    assert!(matches!(
        receive(&a.state, F, newer, T0 + 2),
        Err(LineError::Waiting { .. })
    ));

    // Delivered in lane order: the hand-over, then both messages — the
    // old key's (before it) and the new key's.
    deliver(&mut f, &mut a, T0 + 3);
    let peer = a.state.peer(F).unwrap();
    assert_eq!(peer.vkey, nv);
    let h = peer.previous.as_ref().unwrap();
    assert_eq!(h.vkey, ov);
    assert_eq!(
        h.sent,
        [flash + 1, 0, 0, 1],
        "the hand-over itself, and the routine message"
    );
    assert_eq!(h.received, got);
    assert!(a.state.message(&before.value.id).is_some());
    assert!(a.state.message(&after.value.id).is_some());
    assert!(f.state.handover_complete(), "A receipted the hand-over");
    // A announced the key it now pins for F.
    assert!(a.log.iter().any(|l| {
        line_entry(l).and_then(|r| r.ok()).is_some_and(|(_, e)| {
            matches!(&e.record, Record::PeersAnnounced { peers, .. } if peers == &vec![(F.to_string(), nv.clone())])
        })
    }));

    // The old key's receipt for what F received before the hand-over is
    // still taken.
    assert!(keep_receipt(&a.state, F, lost_receipt).is_ok());

    // Whoever still holds the old key can sign nothing new.
    let stolen = text(F, A, &s2, 3, Sphere::Military, Precedence::Routine);
    let mut thief = Node {
        state: f.state.clone(),
        signer: old.clone(),
        log: f.log.clone(),
        tree: f.tree.clone(),
    };
    thief.run(send_message(&thief.state, stolen, T0 + 4), T0 + 4);
    let forged = thief.log.last().unwrap().clone();
    assert!(matches!(
        receive(&a.state, F, forged, T0 + 4),
        Err(LineError::RecordRefused(_))
    ));
    // A hand-over from a key that is not the pinned one is refused.
    let mut rogue = Node {
        state: thief.state.clone(),
        signer: old.clone(),
        log: thief.log.clone(),
        tree: thief.tree.clone(),
    };
    let other = tlog::NoteSigner::from_seed(F, &[8; 32])
        .unwrap()
        .verifier()
        .to_vkey();
    rogue.run(rotate_key(&rogue.state, &ov, &other, T0 + 5), T0 + 5);
    let record = rogue.log.last().unwrap().clone();
    assert!(receive(&a.state, F, record, T0 + 5).is_err());

    // Both logs replay to the same keys.
    let replayed_a = a.replayed();
    assert_eq!(replayed_a.peer(F).unwrap().vkey, nv);
    assert_eq!(
        replayed_a.peer(F).unwrap().previous.as_ref().unwrap().sent,
        h.sent
    );
    let replayed_f = f.replayed();
    assert_eq!(replayed_f.handovers(), f.state.handovers());
    assert_eq!(replayed_f.own_key(), Some(nv.as_str()));
}
