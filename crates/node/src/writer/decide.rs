//! What a batch decides: the airspace's decisions in order, then their
//! follow-ups on the line (line-of-contact notices, sharing with peers,
//! read-only copies of a peer's operations), then the line's own decisions
//! and the receipts for what peers sent; every event becomes a log entry.

use super::*;

impl Decider {
    /// Runs the batch's decisions in order against the in-memory states
    /// (each sees those before it), makes a log entry for every event and
    /// appends the batch's leaves to the log's tree.
    pub(super) fn decide(&self, jobs: Jobs, begin_us: u64) -> Decided {
        let (state, line, log, signer) = (&self.state, &self.line, &self.log, &*self.signer);
        let Jobs {
            air: air_jobs,
            line: line_jobs,
            taken,
        } = jobs;
        let mut replies: Vec<(oneshot::Sender<Reply>, Reply)> = Vec::with_capacity(air_jobs.len());
        let t_decide = std::time::Instant::now();
        let t_all = t_decide;
        let seq = {
            let mut st = state.write().unwrap_or_else(|e| e.into_inner());
            for (write, reply) in air_jobs {
                // A decision that panics refuses that one write, not the node.
                let r = std::panic::catch_unwind(AssertUnwindSafe(|| (*write).decide(&st)))
                    .unwrap_or_else(|_| {
                        Err(DomainError::InvalidInput {
                            field: String::new(),
                            message: "internal error while deciding".into(),
                        })
                    });
                if let Ok(d) = &r {
                    st.apply(&d.events);
                }
                replies.push((reply, Ok(r)));
            }
            st.seq()
        };
        let decide_us = t_decide.elapsed().as_micros() as u64;
        // Encoding happens outside the lock: readers wait only for
        // decisions. Every event gets its log entry.
        let t_encode = std::time::Instant::now();
        let mut dirty = Dirty::new(self.with_extents);
        let mut notices = Vec::new();
        let encoded = replies.iter().try_for_each(|(_, r)| match r {
            Ok(Ok(d)) => dirty.record(&d.events),
            _ => Ok(()),
        });
        let decisions: Vec<&[airspace::Event]> = replies
            .iter()
            .filter_map(|(_, r)| match r {
                Ok(Ok(d)) => Some(d.events.as_slice()),
                _ => None,
            })
            .collect();
        let events: Vec<&airspace::Event> = decisions.iter().copied().flatten().collect();
        let encode_us = t_encode.elapsed().as_micros() as u64;
        let t_entries = std::time::Instant::now();
        let (mut leaves, mut encoded) = match encoded {
            Ok(()) => match entries_of(signer, &decisions) {
                Ok(l) => (l, Ok(())),
                Err(e) => (Vec::new(), Err(e)),
            },
            Err(e) => (Vec::new(), Err(e)),
        };
        let entries_us = t_entries.elapsed().as_micros() as u64;
        // The tree holds the leaves of every batch decided so far, the one
        // still being synced included.
        let first_leaf = log.tree.read().unwrap_or_else(|e| e.into_inner()).size();
        let air_leaves = leaves.len();
        let mut seq = seq;
        // The line's part of the batch comes after the airspace's: first the
        // airspace changes shared with peers, then the line's decisions, each
        // seeing the ones before it; their leaves follow the airspace's.
        let mut line_replies: Vec<(oneshot::Sender<LineReply>, LineReply)> = Vec::new();
        let mut line_us = 0u64;
        let sharing = {
            let ls = line.read().unwrap_or_else(|e| e.into_inner());
            (ls.areas().next().is_some() || ls.contact_constraints().next().is_some())
                && !events.is_empty()
        };
        if let Err(e) = &encoded {
            for (_, reply) in line_jobs {
                line_replies.push((reply, Err(e.clone())));
            }
        } else if !line_jobs.is_empty() || sharing {
            let t_line = std::time::Instant::now();
            let mut st = state.write().unwrap_or_else(|e| e.into_inner());
            let mut ls = line.write().unwrap_or_else(|e| e.into_inner());
            let now_ms = (signer.clock.now().unix_micros() / 1000).max(0) as u64;
            // The log as it will stand after the airspace's leaves: receipts
            // name the root right after their run of records. (No root is
            // needed per leaf: `push_hash` does not compute one.)
            let mut frontier = {
                let tree = log.tree.read().unwrap_or_else(|e| e.into_inner());
                tlog::tree::Frontier::of(&*tree, first_leaf)
                    .expect("the tree holds every decided leaf")
            };
            for l in &leaves {
                frontier.push_hash(tlog::leaf_hash(l));
            }
            // Operations touching the line of contact: the node's notices.
            if let Some(member) = &signer.member
                && ls.contact_constraints().next().is_some()
            {
                for ev in &events {
                    for m in crate::contact::notices(&ls, &st, ev, member, now_ms) {
                        let r = liaison::decide::send_message(&ls, m, now_ms).and_then(|d| {
                            let key = signer.line_signer(&ls).clone();
                            liaison::decide::append(&mut ls, &key, now_ms, &mut frontier, d.events)
                        });
                        match r {
                            Ok(new) => leaves.extend(new),
                            Err(e) => {
                                tracing::warn!(error = %e, "a line-of-contact notice could not be sent")
                            }
                        }
                    }
                }
            }
            for ev in &events {
                for share in crate::share::outgoing(&ls, ev) {
                    leaves.extend(share_one(&mut ls, signer, now_ms, &mut frontier, share));
                }
            }
            for (write, reply) in line_jobs {
                let r = std::panic::catch_unwind(AssertUnwindSafe(|| (*write).decide(&ls, &st)))
                    .unwrap_or_else(|_| {
                        Err(LineError::invalid("", "internal error while deciding"))
                    });
                let next = first_leaf + leaves.len() as u64;
                let r = r.and_then(|d| {
                    // A peer's accepted airspace change updates its copy here.
                    let (copies, copy_notices) =
                        crate::line::peer_airspace_effects(&d.events, &st, signer);
                    let areas_before = crate::share::areas_concerned(&ls, &d.events);
                    let key = signer.line_signer(&ls).clone();
                    let mut new =
                        liaison::decide::append(&mut ls, &key, now_ms, &mut frontier, d.events)?;
                    // An area agreed (or withdrawn) now: what this party
                    // holds in it is shared at once, what left it removed.
                    for (peer, before) in areas_before {
                        if ls.area(&peer) != before.as_slice() {
                            for change in crate::share::resync(&ls, &st, &peer) {
                                let share = crate::share::share_with(&ls, &peer, &change);
                                new.extend(share_one(
                                    &mut ls,
                                    signer,
                                    now_ms,
                                    &mut frontier,
                                    share,
                                ));
                            }
                        }
                    }
                    let commit = LineCommit {
                        outcome: d.outcome,
                        first_index: next,
                        leaves: new,
                    };
                    notices.extend(copy_notices);
                    if !copies.is_empty() {
                        st.apply(&copies);
                        if let Err(e) = dirty.record(&copies) {
                            tracing::error!(error = %e, "encoding a peer's copy failed");
                        }
                    }
                    Ok(commit)
                });
                if let Ok(c) = &r {
                    leaves.extend(c.leaves.iter().cloned());
                }
                line_replies.push((reply, Ok(r)));
            }
            // The peer records of this batch are receipted in it: a record
            // and its receipt commit together.
            let key = signer.line_signer(&ls).clone();
            match liaison::decide::end_received_run(&mut ls, &key, now_ms, &mut frontier) {
                Ok(receipt) => leaves.extend(receipt),
                Err(e) => {
                    encoded = Err(StoreError::Failed(format!("signing a receipt: {e}")));
                }
            }
            seq = st.seq();
            line_us = t_line.elapsed().as_micros() as u64;
        }
        if encoded.is_ok() {
            let st = state.read().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = dirty.refresh(&st) {
                encoded = Err(e);
            }
        }
        let mut tiles = Vec::new();
        // Each leaf is hashed once: for the tree and for the leaf-hash index.
        let leaf_hashes: Vec<tlog::Hash> = leaves.iter().map(|l| tlog::leaf_hash(l)).collect();
        if encoded.is_ok() {
            let mut tree = log.tree.write().unwrap_or_else(|e| e.into_inner());
            for h in &leaf_hashes {
                tree.append_hash(*h);
            }
            tiles = tree.take_completed();
        }
        Decided {
            replies,
            line_replies,
            encoded,
            rows: dirty.rows.len(),
            dirty,
            seq,
            first_leaf,
            line_entries: leaves.len() > air_leaves,
            leaves,
            leaf_hashes,
            tiles,
            taken,
            begin_us,
            decide_us,
            line_us,
            encode_us,
            entries_us,
            total_us: t_all.elapsed().as_micros() as u64,
            persist_us: 0,
            notices,
        }
    }
}

/// Appends one airspace change shared with a peer; one that cannot be
/// appended is logged and skipped, never the batch.
fn share_one(
    ls: &mut liaison::LineState,
    signer: &crate::entries::LogSigner,
    now_ms: u64,
    frontier: &mut tlog::tree::Frontier,
    share: liaison::LineEvent,
) -> Vec<Vec<u8>> {
    let key = signer.line_signer(ls).clone();
    liaison::decide::append(ls, &key, now_ms, frontier, vec![share]).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "an airspace change could not be shared with a peer");
        Vec::new()
    })
}
