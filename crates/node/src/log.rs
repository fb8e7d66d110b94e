//! The evidence log's use cases: signing checkpoints, serving entries and
//! proofs, submitting checkpoints to witnesses. (How each write becomes an
//! entry is [`crate::entries`].)

use crate::entries::LogSigner;
use crate::{NodeError, Store, StoreError, evidence, invalid};
use airspace::DomainError;
use std::sync::Arc;

/// Largest range of entries served in one request.
pub const MAX_ENTRIES_PER_REQUEST: u64 = 1000;

/// The evidence log's use cases: signing checkpoints, serving entries and
/// proofs.
pub struct Log {
    store: Arc<dyn Store>,
    signer: LogSigner,
    /// Which cosignatures make a checkpoint count as witnessed.
    policy: Option<tlog::policy::Policy>,
    /// The largest checkpoint size seen to satisfy the policy.
    witnessed: std::sync::atomic::AtomicU64,
}

/// How far the log is witnessed under its policy (see [`Log::witnessed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witnessed {
    /// The newest checkpoint's size, and whether its cosignatures satisfy
    /// the policy's quorum.
    pub latest_size: u64,
    pub latest: bool,
    /// The largest size known to be witnessed (this process's view).
    pub size: u64,
    /// The policy's witnesses that cosigned the newest checkpoint.
    pub cosigned_by: Vec<String>,
}

impl Log {
    pub fn new(store: Arc<dyn Store>, signer: LogSigner) -> Self {
        Log {
            store,
            signer,
            policy: None,
            witnessed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Judges checkpoints by `policy` ([`Log::witnessed`]).
    pub fn with_policy(mut self, policy: Option<tlog::policy::Policy>) -> Self {
        self.policy = policy;
        self
    }

    pub fn policy(&self) -> Option<&tlog::policy::Policy> {
        self.policy.as_ref()
    }

    /// Whether the newest checkpoint, with the cosignatures it has
    /// gathered, satisfies the witness policy; `None` without a policy.
    pub fn witnessed(&self) -> Option<Witnessed> {
        use std::sync::atomic::Ordering;
        let policy = self.policy.as_ref()?;
        let Some((latest_size, note)) = self.store.latest_checkpoint() else {
            return Some(Witnessed {
                latest_size: 0,
                latest: false,
                size: self.witnessed.load(Ordering::SeqCst),
                cosigned_by: vec![],
            });
        };
        let (latest, cosigned_by) = match tlog::Note::parse(note.as_bytes()) {
            Ok(n) => {
                let marks = policy.cosigners(&n);
                let by = policy
                    .witnesses
                    .iter()
                    .zip(&marks)
                    .filter(|(_, m)| **m)
                    .map(|(w, _)| w.name.clone())
                    .collect();
                (policy.satisfied(&marks), by)
            }
            Err(_) => (false, vec![]),
        };
        if latest {
            self.witnessed.fetch_max(latest_size, Ordering::SeqCst);
        }
        Some(Witnessed {
            latest_size,
            latest,
            size: self.witnessed.load(Ordering::SeqCst),
            cosigned_by,
        })
    }

    /// The verifier key of this log (C2SP signed-note vkey, type 0x01).
    /// Whether this process runs the log's singleton duties (signing
    /// checkpoints, submitting them to witnesses).
    pub fn is_leader(&self) -> bool {
        self.store.is_leader()
    }

    pub fn verifier_key(&self) -> String {
        self.signer.signer.verifier().to_vkey()
    }

    pub fn origin(&self) -> &str {
        self.signer.origin()
    }

    /// Signs and keeps a checkpoint if the log grew since the last one;
    /// returns the new size when it did. Sizes only grow and every root is
    /// computed over committed leaves of one append-only tree, so no two
    /// checkpoints this node signs can be inconsistent.
    pub async fn checkpoint_tick(&self) -> Result<Option<u64>, NodeError> {
        let size = self.store.log_size();
        let last = self.store.latest_checkpoint().map(|(s, _)| s);
        if last.is_some_and(|l| l >= size) {
            return Ok(None);
        }
        let root = self.store.log_root(size).await?;
        let note = self.signer_now()?.checkpoint(size, root);
        self.store.save_checkpoint(size, note).await?;
        Ok(Some(size))
    }

    /// The newest signed checkpoint (signing one first if none exists yet).
    pub async fn checkpoint(&self) -> Result<String, NodeError> {
        if self.store.latest_checkpoint().is_none() {
            self.checkpoint_tick().await?;
        }
        self.store
            .latest_checkpoint()
            .map(|(_, n)| n)
            .ok_or_else(|| {
                NodeError::Store(StoreError::Failed("no checkpoint could be signed".into()))
            })
    }

    /// `text` (ending in a newline) as a signed note of the node's key: what
    /// a peer that pinned the key can check came from this node.
    pub fn sign_note(&self, text: &str) -> String {
        match self.signer_now() {
            Ok(s) => s.note(text),
            Err(_) => self.signer.note(text),
        }
    }

    /// The signer as the line stands: with the previous key while this
    /// node's key hand-over has not been receipted by every peer.
    fn signer_now(&self) -> Result<std::borrow::Cow<'_, LogSigner>, NodeError> {
        if self.signer.previous.is_none() {
            return Ok(std::borrow::Cow::Borrowed(&self.signer));
        }
        let mut complete = false;
        self.store
            .read_line(&mut |s| complete = s.handover_complete() && s.own_key().is_some())?;
        Ok(if complete {
            std::borrow::Cow::Owned(self.signer.settled())
        } else {
            std::borrow::Cow::Borrowed(&self.signer)
        })
    }

    /// Whether this node's key hand-over is under way: a previous key is
    /// kept and not every peer has receipted the hand-over.
    pub fn handing_over(&self) -> bool {
        self.signer.previous.is_some()
            && self
                .signer_now()
                .is_ok_and(|s| matches!(s, std::borrow::Cow::Borrowed(_)))
    }

    /// The size of the newest signed checkpoint (0: none yet).
    pub fn checkpoint_size(&self) -> u64 {
        self.store.latest_checkpoint().map_or(0, |(n, _)| n)
    }

    /// When the entry at `index` was made (ms since the epoch), if it is
    /// committed and readable.
    pub async fn entry_time_ms(&self, index: u64) -> Option<u64> {
        let leaf = self.entries(index, index + 1).await.ok()?.pop()?;
        tlog::entry::SignedEntry::parse(&leaf)
            .ok()
            .map(|e| e.entry.timestamp_ms)
    }

    pub async fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, NodeError> {
        let size = self.store.log_size();
        if start >= end || end > size {
            return Err(invalid(
                "end",
                format!("need start < end ≤ {size} (the log size)"),
            ));
        }
        if end - start > MAX_ENTRIES_PER_REQUEST {
            return Err(invalid(
                "end",
                format!("at most {MAX_ENTRIES_PER_REQUEST} entries per request"),
            ));
        }
        Ok(self.store.log_entries(start, end).await?)
    }

    pub async fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<Vec<tlog::Hash>, NodeError> {
        if size > self.store.log_size() {
            return Err(invalid("size", "larger than the log"));
        }
        self.store
            .inclusion_proof(index, size)
            .await?
            .map_err(|e| invalid("index", e.to_string()))
    }

    /// A tile per C2SP tlog-tiles (its hashes concatenated): `width` 256
    /// for a full tile, fewer for a partial one; None if the log does not
    /// hold it (yet).
    pub async fn tile(
        &self,
        level: u8,
        index: u64,
        width: usize,
    ) -> Result<Option<Vec<u8>>, NodeError> {
        Ok(self
            .store
            .log_tile(level, index, width)
            .await?
            .map(|hs| hs.concat()))
    }

    /// An entry bundle per C2SP tlog-tiles: entries `index * 256 ..` (as
    /// many as `width`), each after its length as a big-endian uint16.
    pub async fn entry_bundle(
        &self,
        index: u64,
        width: usize,
    ) -> Result<Option<Vec<u8>>, NodeError> {
        let Some(start) = index.checked_mul(256) else {
            return Ok(None);
        };
        let end = start.saturating_add(width as u64);
        if end > self.store.log_size() {
            return Ok(None);
        }
        let mut out = Vec::new();
        for e in self.store.log_entries(start, end).await? {
            let len = u16::try_from(e.len()).map_err(|_| {
                NodeError::Store(StoreError::Failed(
                    "an entry over 65,535 bytes does not fit an entry bundle's uint16 length"
                        .into(),
                ))
            })?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&e);
        }
        Ok(Some(out))
    }

    /// The inclusion proof of the entry with this leaf hash (RFC 6962's
    /// get-proof-by-hash), with its index: the first entry of that hash.
    pub async fn inclusion_proof_by_hash(
        &self,
        leaf: tlog::Hash,
        size: u64,
    ) -> Result<(u64, Vec<tlog::Hash>), NodeError> {
        if size > self.store.log_size() {
            return Err(invalid("size", "larger than the log"));
        }
        let index = self
            .store
            .log_index_of(leaf)
            .await?
            .filter(|i| *i < size)
            .ok_or_else(|| {
                NodeError::Domain(DomainError::NotFound {
                    kind: "log entry with this leaf hash",
                    id: format!("{} in the tree of size {size}", tlog::hash::to_hex(&leaf)),
                })
            })?;
        Ok((index, self.inclusion_proof(index, size).await?))
    }

    pub async fn consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> Result<Vec<tlog::Hash>, NodeError> {
        if second > self.store.log_size() {
            return Err(invalid("second", "larger than the log"));
        }
        self.store
            .consistency_proof(first, second)
            .await?
            .map_err(|e| invalid("first", e.to_string()))
    }

    pub fn size(&self) -> u64 {
        self.store.log_size()
    }

    /// An evidence bundle from the running node, as `(file name, bytes)` in
    /// the layout `detente evidence export` writes (docs/evidence.md):
    /// the selected entries, each with its inclusion proof against the
    /// newest checkpoint, and `keys.txt`. Entries newer than that checkpoint
    /// are left out.
    pub async fn bundle(
        &self,
        selection: &evidence::Selection,
    ) -> Result<Vec<(String, Vec<u8>)>, NodeError> {
        let checkpoint = self.checkpoint().await?;
        let (size, _) = self
            .store
            .latest_checkpoint()
            .ok_or_else(|| NodeError::Store(StoreError::Failed("no checkpoint".into())))?;
        // Read page by page: only the chosen entries are kept.
        let mut sel = evidence::Selector::new(selection);
        let mut start = 0;
        while start < size {
            let end = (start + MAX_ENTRIES_PER_REQUEST).min(size);
            sel.feed(&self.store.log_entries(start, end).await?)
                .map_err(|e| NodeError::Store(StoreError::Failed(e)))?;
            start = end;
        }
        if sel.chosen.is_empty() {
            return Err(invalid(
                "entity",
                "no entry covered by the newest checkpoint matches this selection",
            ));
        }
        let mut files = vec![(
            "keys.txt".to_string(),
            evidence::keys_txt(&self.verifier_key(), &sel.peers, &sel.handovers).into_bytes(),
        )];
        for (i, bytes) in sel.chosen {
            let proof = self
                .store
                .inclusion_proof(i, size)
                .await?
                .map_err(|e| invalid("index", e.to_string()))?;
            let p = tlog::bundle::TlogProof {
                extra: None,
                index: i,
                proof,
                checkpoint: checkpoint.clone(),
            };
            files.push((format!("{i}.entry"), bytes));
            files.push((format!("{i}.tlog-proof"), p.to_text().into_bytes()));
        }
        Ok(files)
    }
}

impl Log {
    /// Submits the newest checkpoint to a witness (C2SP tlog-witness):
    /// `post(body)` performs the HTTP request and returns (status, body).
    /// `last` is the size the witness last cosigned, as this node believes;
    /// returns the size the witness has cosigned afterwards. A valid
    /// cosignature is kept with the checkpoint.
    pub async fn submit_to_witness<F, Fut>(
        &self,
        witness: &tlog::Verifier,
        last: u64,
        post: F,
    ) -> Result<u64, NodeError>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<(u16, String), String>>,
    {
        let Some((size, note)) = self.store.latest_checkpoint() else {
            return Ok(last);
        };
        if size <= last {
            return Ok(last);
        }
        let mut body = format!("old {last}\n");
        if last > 0 {
            use base64::Engine;
            for h in self.consistency_proof(last, size).await? {
                body.push_str(&base64::engine::general_purpose::STANDARD.encode(h));
                body.push('\n');
            }
        }
        body.push('\n');
        // The witness sees the log's own signatures only (the previous
        // key's too during a key hand-over, for witnesses that pin it).
        let parsed = tlog::Note::parse(note.as_bytes())
            .map_err(|e| NodeError::Store(StoreError::Failed(e.to_string())))?;
        let keys = self.signer.verifiers();
        let own = tlog::Note {
            text: parsed.text.clone(),
            signatures: parsed
                .signatures
                .iter()
                .filter(|s| {
                    keys.iter()
                        .any(|k| s.name == k.name && s.key_id == k.key_id)
                })
                .cloned()
                .collect(),
        };
        body.push_str(&own.to_text());
        let (status, reply) = post(body).await.map_err(|e| {
            NodeError::Store(StoreError::Failed(format!("witness {}: {e}", witness.name)))
        })?;
        match status {
            200 => {
                let with = format!("{}{}", own.to_text(), reply);
                let (n, ok) = tlog::note::open(with.as_bytes(), std::slice::from_ref(witness))
                    .map_err(|e| {
                        NodeError::Store(StoreError::Failed(format!(
                            "witness {} answered with an invalid cosignature: {e}",
                            witness.name
                        )))
                    })?;
                if ok.is_empty() {
                    return Err(NodeError::Store(StoreError::Failed(format!(
                        "witness {} did not cosign",
                        witness.name
                    ))));
                }
                for s in n
                    .signatures
                    .iter()
                    .filter(|s| s.name == witness.name && s.key_id == witness.key_id)
                {
                    self.store.add_cosignature(size, s.line()).await?;
                }
                Ok(size)
            }
            409 => reply.trim().parse::<u64>().map_err(|_| {
                NodeError::Store(StoreError::Failed(format!(
                    "witness {} answered 409 without a size",
                    witness.name
                )))
            }),
            other => Err(NodeError::Store(StoreError::Failed(format!(
                "witness {} refused the checkpoint ({other}): {}",
                witness.name,
                reply.trim()
            )))),
        }
    }
}
