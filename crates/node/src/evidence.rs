//! Choosing what goes into an evidence bundle (docs/evidence.md): the
//! entries about one entity, with the receipts for them, within a time
//! range; and the peers' keys the log pinned. Pure: both the offline export
//! (`detente evidence export`, from the data folder) and the console's
//! export (from the running node) use it.

use tlog::cbor::Value;
use tlog::entry::SignedEntry;

/// What a bundle should hold.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Only entries about this entity (an operational intent, constraint,
    /// subscription, report, message, accreditation id), with the receipts
    /// of the selected line records.
    pub entity: Option<String>,
    /// Only entries committed at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Only entries committed before this time.
    pub until_ms: Option<u64>,
}

/// The value of `key` in a CBOR map.
pub fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let Value::Map(pairs) = v else {
        return None;
    };
    pairs.iter().find_map(|(k, v)| match k {
        Value::Text(k) if k == key => Some(v),
        _ => None,
    })
}

/// The entity an entry is about: the `id` of an airspace entry; for the
/// line, the id of the message, acknowledged message, accreditation or
/// revocation.
pub fn body_id(e: &SignedEntry) -> Option<&str> {
    let b = &e.entry.body;
    let candidates = [
        field(b, "id"),
        field(b, "record").and_then(|r| field(r, "id")),
        // A shared airspace change: the entity's own entry body.
        field(b, "record")
            .and_then(|r| field(r, "body"))
            .and_then(|v| field(v, "id")),
        field(b, "record")
            .and_then(|r| field(r, "value"))
            .and_then(|v| field(v, "id").or_else(|| field(v, "message"))),
    ];
    candidates.into_iter().flatten().find_map(|v| match v {
        Value::Text(t) => Some(t.as_str()),
        _ => None,
    })
}

/// Whether an airspace entry records something done to `id` beside its
/// own entity: a subscription an intent's or constraint's write made,
/// notified or dropped (`node::entries::entry_bodies`).
fn folds(e: &SignedEntry, id: &str) -> bool {
    let b = &e.entry.body;
    let named = |v: &Value| match v {
        Value::Text(t) => t == id,
        v => matches!(field(v, "id"), Some(Value::Text(t)) if t == id),
    };
    [
        "subscriptions_upserted",
        "subscriptions_notified",
        "subscriptions_removed",
    ]
    .iter()
    .any(|k| matches!(field(b, k), Some(Value::Array(items)) if items.iter().any(named)))
}

/// Picks a selection's entries from a log read in order, page by page:
/// it keeps the chosen entries and the peers' pinned keys, never the log.
pub struct Selector<'a> {
    s: &'a Selection,
    /// Leaf hashes of the chosen records (their receipts go with them).
    selected_leaves: std::collections::HashSet<Vec<u8>>,
    next: u64,
    /// The chosen entries, `(index, bytes)`, in log order.
    pub chosen: Vec<(u64, Vec<u8>)>,
    /// The peers whose records the log holds, with the keys this node
    /// pinned (`line.peer.added` entries, and the keys peers handed over
    /// to), by name.
    pub peers: std::collections::BTreeMap<String, String>,
    /// Node key hand-overs the log holds, (origin, old key, new key), in
    /// order: their entries always go into a bundle, so that a verifier
    /// holding either key can follow the hand-over.
    pub handovers: Vec<(String, String, String)>,
}

impl<'a> Selector<'a> {
    pub fn new(s: &'a Selection) -> Self {
        Selector {
            s,
            selected_leaves: Default::default(),
            next: 0,
            chosen: Vec::new(),
            peers: Default::default(),
            handovers: Vec::new(),
        }
    }

    /// The log's next entries (the first of them is entry `self.next`); an
    /// unreadable entry is an error naming its index.
    pub fn feed(&mut self, page: &[Vec<u8>]) -> Result<(), String> {
        for bytes in page {
            let i = self.next;
            self.next += 1;
            let e = SignedEntry::parse(bytes)
                .map_err(|err| format!("entry {i} is unreadable: {err}"))?;
            if let Some((name, key)) = pinned_peer(&e) {
                self.peers.insert(name, key);
            }
            if let Some((old, new)) = handover(&e) {
                if self.peers.get(&e.entry.origin) == Some(&old) {
                    self.peers.insert(e.entry.origin.clone(), new.clone());
                }
                let h = (e.entry.origin.clone(), old, new);
                if !self.handovers.contains(&h) {
                    self.handovers.push(h);
                }
                self.chosen.push((i, bytes.clone()));
                continue;
            }
            if let Some(id) = &self.s.entity {
                // A receipt names the leaf hashes of the records it is for
                // (in `items`; at the top level in logs written before
                // receipts named runs).
                let names = |v: &Value| {
                    matches!(field(v, "leaf_hash"),
                        Some(Value::Bytes(h)) if self.selected_leaves.contains(h.as_slice()))
                };
                let receipt_of_selected = e.entry.kind == "line.receipt"
                    && field(&e.entry.body, "record").is_some_and(|r| {
                        names(r)
                            || matches!(field(r, "items"),
                                Some(Value::Array(items)) if items.iter().any(names))
                    });
                if body_id(&e) != Some(id.as_str()) && !folds(&e, id) && !receipt_of_selected {
                    continue;
                }
                self.selected_leaves.insert(tlog::leaf_hash(bytes).to_vec());
            }
            if self.s.since_ms.is_some_and(|t| e.entry.timestamp_ms < t)
                || self.s.until_ms.is_some_and(|t| e.entry.timestamp_ms >= t)
            {
                continue;
            }
            self.chosen.push((i, bytes.clone()));
        }
        Ok(())
    }
}

/// The indices of the entries (the log's first `entries.len()`) that the
/// selection takes; an unreadable entry is an error naming its index.
pub fn select(entries: &[Vec<u8>], s: &Selection) -> Result<Vec<u64>, String> {
    let mut sel = Selector::new(s);
    sel.feed(entries)?;
    Ok(sel.chosen.into_iter().map(|(i, _)| i).collect())
}

/// A `line.key.rotated` entry's old and new key.
pub fn handover(e: &SignedEntry) -> Option<(String, String)> {
    if e.entry.kind != "line.key.rotated" {
        return None;
    }
    let r = field(&e.entry.body, "record")?;
    match (field(r, "old"), field(r, "new")) {
        (Some(Value::Text(o)), Some(Value::Text(n))) => Some((o.clone(), n.clone())),
        _ => None,
    }
}

/// A `line.peer.added` entry's peer: its name and the key pinned for it.
fn pinned_peer(e: &SignedEntry) -> Option<(String, String)> {
    if e.entry.kind != "line.peer.added" {
        return None;
    }
    let r = field(&e.entry.body, "record")?;
    match (field(r, "name"), field(r, "vkey")) {
        (Some(Value::Text(n)), Some(Value::Text(k))) => Some((n.clone(), k.clone())),
        _ => None,
    }
}

/// The peers whose records the log holds, with the keys this node pinned
/// (`line.peer.added` entries), by name.
pub fn peer_keys(entries: &[Vec<u8>]) -> std::collections::BTreeMap<String, String> {
    entries
        .iter()
        .filter_map(|bytes| SignedEntry::parse(bytes).ok())
        .filter_map(|e| pinned_peer(&e))
        .collect()
}

/// The bundle's `keys.txt`.
pub fn keys_txt(
    log_vkey: &str,
    peers: &std::collections::BTreeMap<String, String>,
    handovers: &[(String, String, String)],
) -> String {
    let mut keys = format!(
        "# Verifier keys (informational: trust keys you obtained out of band)\nlog {log_vkey}\n"
    );
    for k in peers.values() {
        keys.push_str(&format!("peer {k}\n"));
    }
    if !handovers.is_empty() {
        keys.push_str(
            "# Node key hand-overs in this log (the line.key.rotated entries, signed by the old key): origin, old key, new key\n",
        );
    }
    for (origin, old, new) in handovers {
        keys.push_str(&format!("handover {origin} {old} {new}\n"));
    }
    keys
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use liaison::{LineEntry, Precedence, Receipt, ReceiptForm, ReceiptItem, Record};

    fn entry(kind: &str, body: Value) -> Vec<u8> {
        let signer = tlog::NoteSigner::from_seed("alliance", &[1; 32]).unwrap();
        tlog::entry::Entry {
            kind: kind.into(),
            origin: "alliance".into(),
            timestamp_ms: 1,
            body,
        }
        .sign(&signer)
        .unwrap()
        .to_bytes()
    }

    fn receipt(leaf: &[u8], form: ReceiptForm) -> Vec<u8> {
        let r = LineEntry {
            record: Record::Receipt(Receipt {
                origin: "federation".into(),
                items: vec![ReceiptItem {
                    lane: Precedence::Routine,
                    seq: 1,
                    leaf_hash: tlog::leaf_hash(leaf),
                    index: 0,
                    refused: None,
                }],
                tree_size: 1,
                root: [0; 32],
                form,
            }),
            envelope: None,
        };
        entry("line.receipt", r.to_value())
    }

    #[test]
    fn a_subscriptions_entries_include_the_writes_that_made_notified_or_dropped_it() {
        let sub = "5f0c2a4e-8d3b-4c1a-9e7f-1a2b3c4d5e6f";
        let t = |s: &str| Value::Text(s.into());
        let write = |key: &str, item: Value| {
            entry(
                "operational_intent.upserted",
                Value::Map(vec![
                    (t("id"), t("an-intent")),
                    (t(key), Value::Array(vec![item])),
                ]),
            )
        };
        let entries = vec![
            write(
                "subscriptions_upserted",
                Value::Map(vec![(t("id"), t(sub))]),
            ),
            write(
                "subscriptions_upserted",
                Value::Map(vec![(t("id"), t("other"))]),
            ),
            write(
                "subscriptions_notified",
                Value::Map(vec![
                    (t("id"), t(sub)),
                    (t("notification_index"), Value::Uint(2)),
                ]),
            ),
            write("subscriptions_removed", t(sub)),
            write("subscriptions_removed", t("other")),
            entry("subscription.upserted", Value::Map(vec![(t("id"), t(sub))])),
        ];
        let s = Selection {
            entity: Some(sub.into()),
            ..Selection::default()
        };
        assert_eq!(select(&entries, &s).unwrap(), vec![0, 2, 3, 5]);
    }

    #[test]
    fn an_entitys_entries_come_with_the_receipts_naming_them_in_either_layout() {
        let id = "8c1d7b0e-64a0-4bd8-a8a1-3ce0d2b9c2f1";
        let about = entry(
            "operational_intent.upserted",
            Value::Map(vec![(Value::Text("id".into()), Value::Text(id.into()))]),
        );
        let other = entry(
            "operational_intent.upserted",
            Value::Map(vec![(Value::Text("id".into()), Value::Text("x".into()))]),
        );
        let entries = vec![
            about.clone(),
            other.clone(),
            receipt(&about, ReceiptForm::Run),
            receipt(&other, ReceiptForm::Run),
            receipt(&about, ReceiptForm::Single),
            receipt(&other, ReceiptForm::Single),
        ];
        let s = Selection {
            entity: Some(id.into()),
            ..Selection::default()
        };
        assert_eq!(select(&entries, &s).unwrap(), vec![0, 2, 4]);
    }
}
