//! The witness: cosigning peers' checkpoints (C2SP tlog-witness).

use crate::{Clock, Misbehaviour, NodeError, Store};
use std::sync::Arc;

/// The witness: cosigns peers' checkpoints after checking them against the
/// last one it cosigned (C2SP tlog-witness `add-checkpoint`), one request at
/// a time so that check and persist are atomic.
pub struct Witness {
    store: Arc<dyn Store>,
    cosigner: tlog::cosignature::Cosigner,
    logs: Vec<tlog::Verifier>,
    clock: Arc<dyn Clock>,
    lock: tokio::sync::Mutex<()>,
    /// The line, whose pinned peers' logs are cosigned too.
    peers: Option<Arc<crate::line::Line>>,
}

/// What a witness request came to.
#[derive(Debug)]
pub enum WitnessOutcome {
    /// The cosignature line(s), the 200 body.
    Cosigned(String),
    Refused(tlog::witness::Refusal),
    /// Refused, and the two notes prove the origin signed inconsistent
    /// checkpoints; they are kept.
    Misbehaviour {
        origin: String,
        refusal: tlog::witness::Refusal,
    },
}

impl Witness {
    pub fn new(
        store: Arc<dyn Store>,
        cosigner: tlog::cosignature::Cosigner,
        logs: Vec<tlog::Verifier>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Witness {
            store,
            cosigner,
            logs,
            clock,
            lock: tokio::sync::Mutex::new(()),
            peers: None,
        }
    }

    /// Cosigns the checkpoints of every peer pinned on `line` as well,
    /// from the moment it is pinned (no restart).
    pub fn with_peers(mut self, line: Arc<crate::line::Line>) -> Self {
        self.peers = Some(line);
        self
    }

    /// The logs this witness cosigns now: the configured ones and the
    /// pinned peers'.
    fn logs(&self) -> Vec<tlog::Verifier> {
        let mut logs = self.logs.clone();
        if let Some(line) = &self.peers
            && let Ok(peers) =
                line.read(|s| s.peers().map(|p| p.verifier.clone()).collect::<Vec<_>>())
        {
            for v in peers {
                if !logs
                    .iter()
                    .any(|l| l.name == v.name && l.key_id == v.key_id)
                {
                    logs.push(v);
                }
            }
        }
        logs
    }

    /// The cosigner's verifier key (type 0x04).
    pub fn verifier_key(&self) -> String {
        self.cosigner.verifier().to_vkey()
    }

    /// Pairs of signed checkpoints that cannot both be true, as kept.
    pub async fn misbehaviour(&self) -> Result<Vec<Misbehaviour>, NodeError> {
        Ok(self.store.misbehaviour().await?)
    }

    /// Handles an `add-checkpoint` body.
    pub async fn add_checkpoint(&self, body: &[u8]) -> Result<WitnessOutcome, NodeError> {
        let _guard = self.lock.lock().await;
        // The origin is only known after parsing; the few trusted logs'
        // states are read first.
        let logs = self.logs();
        let mut known = std::collections::HashMap::new();
        for l in &logs {
            if let Some(c) = self.store.witnessed(&l.name).await? {
                known.insert(l.name.clone(), c);
            }
        }
        let now = self.clock.now().unix_micros();
        let ts = (now / 1_000_000).max(0) as u64;
        match tlog::witness::add_checkpoint(
            body,
            &logs,
            |o| known.get(o).cloned(),
            &self.cosigner,
            ts,
        ) {
            Ok(a) => {
                self.store.save_witnessed(&a.origin, a.record).await?;
                Ok(WitnessOutcome::Cosigned(a.response))
            }
            Err(r) => {
                let pair = match &r {
                    tlog::witness::Refusal::Conflict {
                        equivocation: Some((a, b)),
                        ..
                    } => Some((a.clone(), b.clone())),
                    tlog::witness::Refusal::BadProof {
                        previous,
                        submitted,
                    } => Some((previous.clone(), submitted.clone())),
                    _ => None,
                };
                let Some((a, b)) = pair else {
                    return Ok(WitnessOutcome::Refused(r));
                };
                let origin = tlog::Note::parse(b.as_bytes())
                    .ok()
                    .and_then(|n| tlog::Checkpoint::parse(&n.text).ok())
                    .map(|c| c.origin)
                    .unwrap_or_default();
                self.store
                    .save_misbehaviour(&origin, a, b, now / 1000)
                    .await?;
                Ok(WitnessOutcome::Misbehaviour { origin, refusal: r })
            }
        }
    }
}
