//! The witness side of C2SP `tlog-witness` v1.0.0 `add-checkpoint`, as a
//! pure decision: given the request body, the trusted log keys and the last
//! checkpoint cosigned for the origin, either a cosignature and the new
//! record to persist, or the refusal with the status the spec requires.

use crate::checkpoint::Checkpoint;
use crate::cosignature::Cosigner;
use crate::hash::Hash;
use crate::note::{self, Note, NoteError, Verifier};
use crate::proof::verify_consistency;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// The latest checkpoint a witness cosigned for one origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    pub size: u64,
    pub root: Hash,
    /// The checkpoint note as it was submitted (kept as evidence).
    pub note: String,
}

/// Why a checkpoint is not cosigned, with the HTTP status the spec gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("400: {0}")]
    BadRequest(String),
    #[error("403: no signature by a trusted key of this origin verifies")]
    Forbidden,
    #[error("404: unknown origin {0}")]
    UnknownOrigin(String),
    /// 409 with the size of the latest cosigned checkpoint. `equivocation`
    /// holds the two notes when the log signed two different roots for
    /// one size — a transferable proof that it lied.
    #[error("409: the latest cosigned size is {size}")]
    Conflict {
        size: u64,
        equivocation: Option<(String, String)>,
    },
    /// 422: the consistency proof does not verify. The two notes are kept:
    /// with a signed checkpoint at each size, they may prove misbehaviour.
    #[error("422: the consistency proof does not verify")]
    BadProof { previous: String, submitted: String },
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Forbidden => 403,
            Refusal::UnknownOrigin(_) => 404,
            Refusal::Conflict { .. } => 409,
            Refusal::BadProof { .. } => 422,
        }
    }
}

/// A request the witness accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub origin: String,
    pub record: Cosigned,
    /// The response body: the witness's cosignature line(s).
    pub response: String,
}

/// Most consistency proof lines a client may send.
pub const MAX_PROOF_LINES: usize = 63;

/// Decides an `add-checkpoint` request. `last` gives the latest cosigned
/// checkpoint of an origin; `timestamp` is the cosignature time (POSIX s).
pub fn add_checkpoint(
    body: &[u8],
    logs: &[Verifier],
    last: impl Fn(&str) -> Option<Cosigned>,
    cosigner: &Cosigner,
    timestamp: u64,
) -> Result<Accepted, Refusal> {
    let bad = |s: &str| Refusal::BadRequest(s.to_string());
    let text = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8"))?;
    let (head, note_text) = text
        .split_once("\n\n")
        .ok_or_else(|| bad("no empty line before the checkpoint"))?;
    let mut lines = head.split('\n');
    let old = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .ok_or_else(|| bad("the first line must be 'old <size>'"))?;
    if old.is_empty()
        || !old.bytes().all(|b| b.is_ascii_digit())
        || (old.len() > 1 && old.starts_with('0'))
    {
        return Err(bad("the old size must be decimal without leading zeroes"));
    }
    let old: u64 = old
        .parse()
        .map_err(|_| bad("the old size does not fit 64 bits"))?;
    let mut proof: Vec<Hash> = Vec::new();
    for l in lines {
        let raw = B64
            .decode(l)
            .map_err(|_| bad("a consistency proof line is not base64"))?;
        proof.push(
            raw.as_slice()
                .try_into()
                .map_err(|_| bad("a proof hash must be 32 bytes"))?,
        );
        if proof.len() > MAX_PROOF_LINES {
            return Err(bad("more than 63 consistency proof lines"));
        }
    }
    let note = Note::parse(note_text.as_bytes()).map_err(|e| Refusal::BadRequest(e.to_string()))?;
    let c = Checkpoint::parse(&note.text).map_err(|e| Refusal::BadRequest(e.to_string()))?;
    let trusted: Vec<Verifier> = logs
        .iter()
        .filter(|v| v.name == c.origin && v.kind == note::TYPE_ED25519)
        .cloned()
        .collect();
    if trusted.is_empty() {
        return Err(Refusal::UnknownOrigin(c.origin));
    }
    match note::open(note_text.as_bytes(), &trusted) {
        Ok(_) => {}
        Err(NoteError::Malformed(m)) => return Err(Refusal::BadRequest(m)),
        Err(_) => return Err(Refusal::Forbidden),
    }
    if old > c.size {
        return Err(bad("the old size is larger than the checkpoint's size"));
    }
    let previous = last(&c.origin);
    let last_size = previous.as_ref().map(|p| p.size).unwrap_or(0);
    if old != last_size {
        return Err(Refusal::Conflict {
            size: last_size,
            equivocation: None,
        });
    }
    match &previous {
        Some(p) if old == c.size => {
            if p.root != c.root {
                return Err(Refusal::Conflict {
                    size: last_size,
                    equivocation: Some((p.note.clone(), note_text.to_string())),
                });
            }
        }
        Some(p) => {
            if verify_consistency(old, c.size, &proof, &p.root, &c.root).is_err() {
                return Err(Refusal::BadProof {
                    previous: p.note.clone(),
                    submitted: note_text.to_string(),
                });
            }
        }
        None => {
            if !proof.is_empty() {
                return Err(bad(
                    "the consistency proof must be empty when the old size is 0",
                ));
            }
        }
    }
    let line = cosigner.cosign(&note.text, timestamp).line();
    Ok(Accepted {
        origin: c.origin.clone(),
        record: Cosigned {
            size: c.size,
            root: c.root,
            note: note_text.to_string(),
        },
        response: line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::NoteSigner;
    use crate::proof::consistency_proof;
    use crate::tree::MemoryTree;

    struct Log {
        tree: MemoryTree,
        key: NoteSigner,
    }
    impl Log {
        fn grow(&mut self, n: u8) {
            for i in 0..n {
                self.tree.append(&[i, self.tree.size() as u8]);
            }
        }
        fn note(&self, size: u64) -> String {
            let text = Checkpoint {
                origin: self.key.name.clone(),
                size,
                root: self.tree.root(size).unwrap(),
                extensions: vec![],
            }
            .to_text();
            Note {
                signatures: vec![self.key.sign(&text)],
                text,
            }
            .to_text()
        }
        fn request(&self, old: u64, size: u64) -> Vec<u8> {
            let mut s = format!("old {old}\n");
            if old > 0 && old <= size {
                for h in consistency_proof(&self.tree, old, size).unwrap().unwrap() {
                    s.push_str(&B64.encode(h));
                    s.push('\n');
                }
            }
            s.push('\n');
            s.push_str(&self.note(size));
            s.into_bytes()
        }
    }

    fn setup() -> (Log, Cosigner) {
        let log = Log {
            tree: MemoryTree::new(),
            key: NoteSigner::from_seed("detente.example/alliance", &[1; 32]).unwrap(),
        };
        (
            log,
            Cosigner::from_seed("detente.example/federation", &[2; 32]).unwrap(),
        )
    }

    #[test]
    fn first_then_consistent_checkpoints_are_cosigned() {
        let (mut log, w) = setup();
        log.grow(5);
        let logs = [log.key.verifier()];
        let a = add_checkpoint(&log.request(0, 5), &logs, |_| None, &w, 100).unwrap();
        assert_eq!(a.record.size, 5);
        // The response is a cosignature line that verifies over the checkpoint.
        let with_cosig = format!("{}{}", log.note(5), a.response);
        let (_, ok) = note::open(with_cosig.as_bytes(), &[w.verifier()]).unwrap();
        assert_eq!(ok[0].timestamp, Some(100));
        log.grow(6);
        let prev = a.record.clone();
        let b =
            add_checkpoint(&log.request(5, 11), &logs, |_| Some(prev.clone()), &w, 101).unwrap();
        assert_eq!(b.record.size, 11);
    }

    #[test]
    fn refusals_follow_the_spec() {
        let (mut log, w) = setup();
        log.grow(5);
        let logs = [log.key.verifier()];
        let first = add_checkpoint(&log.request(0, 5), &logs, |_| None, &w, 100)
            .unwrap()
            .record;
        log.grow(3);
        let at =
            |req: Vec<u8>| add_checkpoint(&req, &logs, |_| Some(first.clone()), &w, 1).unwrap_err();
        // 409: the client's old size is not the last cosigned one; the body gives it.
        assert_eq!(
            at(log.request(0, 8)),
            Refusal::Conflict {
                size: 5,
                equivocation: None
            }
        );
        // 400: old larger than new.
        assert_eq!(at(log.request(8, 5)).status(), 400);
        // 422: a proof that does not verify.
        let mut req = log.request(5, 8);
        let p = req.iter().position(|b| *b == b'\n').unwrap() + 1;
        req[p] = if req[p] == b'A' { b'B' } else { b'A' };
        assert_eq!(at(req).status(), 422);
        // 404: an origin the witness does not know.
        let stranger = Log {
            tree: log.tree.clone(),
            key: NoteSigner::from_seed("detente.example/unknown", &[3; 32]).unwrap(),
        };
        assert!(matches!(
            add_checkpoint(&stranger.request(0, 8), &logs, |_| None, &w, 1),
            Err(Refusal::UnknownOrigin(_))
        ));
        // 403: the right origin signed by the wrong key.
        let forger = Log {
            tree: log.tree.clone(),
            key: NoteSigner::from_seed("detente.example/alliance", &[4; 32]).unwrap(),
        };
        assert_eq!(
            add_checkpoint(&forger.request(0, 8), &logs, |_| None, &w, 1).unwrap_err(),
            Refusal::Forbidden
        );
        // Same size, another root: a signed equivocation.
        let mut fork = Log {
            tree: MemoryTree::new(),
            key: NoteSigner::from_seed("detente.example/alliance", &[1; 32]).unwrap(),
        };
        fork.grow(4);
        fork.tree.append(b"rewritten history");
        match at(fork.request(5, 5)) {
            Refusal::Conflict {
                size: 5,
                equivocation: Some((a, b)),
            } => assert_ne!(a, b),
            other => panic!("{other:?}"),
        }
        // Malformed bodies.
        for body in [
            &b"old 01\n\nx"[..],
            b"new 1\n\nx",
            b"old 1\nnot base64!\n\nx",
            b"old 0\n",
        ] {
            assert_eq!(
                add_checkpoint(body, &logs, |_| None, &w, 1)
                    .unwrap_err()
                    .status(),
                400
            );
        }
    }
}
