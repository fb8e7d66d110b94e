//! `detente evidence export` and `detente verify`: evidence bundles that a
//! third party checks offline, without Detente (layout in docs/evidence.md).
//!
//! A bundle is a folder: for each selected entry `<index>.entry` (the exact
//! leaf bytes) and `<index>.tlog-proof` (C2SP tlog-proof: index, inclusion
//! proof, the checkpoint with its signatures), plus `keys.txt` listing the
//! log's verifier key (informational: a verifier is given the keys it
//! trusts separately).

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use tlog::bundle::TlogProof;
use tlog::entry::SignedEntry;
use tlog::tree::MemoryTree;

#[derive(Subcommand, Debug)]
pub enum EvidenceCommand {
    /// Write an evidence bundle for a selection of the node's log.
    Export(ExportArgs),
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The node's data folder (the node may be running).
    #[arg(long, env = "DETENTE_DATA", default_value = crate::config::DEFAULT_DATA)]
    pub(crate) data: PathBuf,
    /// Folder to write the bundle into (created; must be empty if it exists).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Only entries about this entity (operational intent, constraint, subscription, report id).
    #[arg(long)]
    pub(crate) entity: Option<String>,
    /// Only entries committed at or after this time (RFC 3339).
    #[arg(long)]
    pub(crate) since: Option<String>,
    /// Only entries committed before this time (RFC 3339).
    #[arg(long)]
    pub(crate) until: Option<String>,
    /// Every entry (the default when no selection is given).
    #[arg(long)]
    pub(crate) all: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// A bundle folder; or two checkpoint files of one log, to check whether
    /// they prove that the log signed two views that cannot both be true.
    #[arg(required = true, num_args = 1..=2)]
    pub(crate) paths: Vec<PathBuf>,
    /// The log's verifier key, obtained out of band (`detente key` on the node).
    #[arg(long)]
    pub(crate) key: String,
    /// A witness's cosignature verifier key (repeatable).
    #[arg(long)]
    pub(crate) witness: Vec<String>,
    /// Cosignatures by the given witnesses each checkpoint must carry.
    #[arg(long, default_value_t = 0)]
    pub(crate) min_witnesses: usize,
    /// A peer's log verifier key (repeatable): the log holds its records
    /// verbatim, signed by it, and they are checked with this key.
    #[arg(long)]
    pub(crate) peer: Vec<String>,
    /// A witness policy file: each checkpoint's cosignatures must meet its quorum.
    #[arg(long)]
    pub(crate) policy: Option<PathBuf>,
}

/// An RFC 3339 time given on the command line, in ms since the epoch.
pub(crate) fn ms(s: &str, flag: &str) -> Result<u64> {
    let t = api::wire::parse_time(
        &api::wire::Time {
            value: s.to_string(),
            format: "RFC3339".into(),
        },
        flag,
    )
    .map_err(|_| anyhow!("{flag} must be an RFC 3339 date-time, e.g. 2026-11-29T10:00:00Z"))?;
    Ok((t.unix_micros() / 1000).max(0) as u64)
}

pub async fn export(a: ExportArgs) -> Result<()> {
    let since = a.since.as_deref().map(|s| ms(s, "--since")).transpose()?;
    let until = a.until.as_deref().map(|s| ms(s, "--until")).transpose()?;
    if a.all && (a.entity.is_some() || since.is_some() || until.is_some()) {
        bail!("--all cannot be combined with --entity, --since or --until");
    }
    if a.out.exists() && std::fs::read_dir(&a.out)?.next().is_some() {
        bail!("{} exists and is not empty", a.out.display());
    }
    let vkey = crate::key::verifier_key(&a.data)?;
    let existed = a.out.exists();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    // Nothing half-written is left behind (a folder given empty stays).
    let written = write_bundle(&a, since, until, &vkey).await;
    if written.is_err() {
        if existed {
            for f in std::fs::read_dir(&a.out)?.flatten() {
                let _ = std::fs::remove_file(f.path());
            }
        } else {
            let _ = std::fs::remove_dir_all(&a.out);
        }
    }
    written
}

/// Reads the log page by page — hashing every entry into the tree, writing
/// the chosen ones out as they come — then checks the tree against the
/// signed checkpoint and writes each chosen entry's proof. Only the tree's
/// hashes and the chosen entries' indices stay in memory, never the log.
async fn write_bundle(
    a: &ExportArgs,
    since: Option<u64>,
    until: Option<u64>,
    vkey: &str,
) -> Result<()> {
    let selection = node::evidence::Selection {
        entity: a.entity.clone(),
        since_ms: since,
        until_ms: until,
    };
    let mut sel = node::evidence::Selector::new(&selection);
    let mut tree = MemoryTree::new();
    let mut chosen: Vec<u64> = Vec::new();
    let out = a.out.clone();
    let (latest, total) =
        store::read_log_pages(&a.data, store::LOG_PAGE, &mut |page: &[Vec<u8>]| {
            for e in page {
                tree.append(e);
            }
            sel.feed(page)?;
            for (i, bytes) in sel.chosen.drain(..) {
                std::fs::write(out.join(format!("{i}.entry")), bytes)
                    .map_err(|e| format!("writing {i}.entry: {e}"))?;
                chosen.push(i);
            }
            Ok(())
        })
        .await
        .map_err(|e| anyhow!(e))?;
    let (size, checkpoint) = latest.ok_or_else(|| {
        anyhow!("the node has not signed a checkpoint yet; start it and let it run a second")
    })?;
    let cp_note = tlog::Note::parse(checkpoint.as_bytes())
        .map_err(|e| anyhow!("the stored checkpoint: {e}"))?;
    let cp = tlog::Checkpoint::parse(&cp_note.text)
        .map_err(|e| anyhow!("the stored checkpoint: {e}"))?;
    if tree.root(size).map_err(|e| anyhow!("{e}"))? != cp.root {
        bail!("the log's entries do not hash to the checkpoint's root: the data folder is damaged");
    }
    std::fs::write(
        a.out.join("keys.txt"),
        node::evidence::keys_txt(vkey, &sel.peers, &sel.handovers),
    )?;
    for &i in &chosen {
        let proof = tlog::proof::inclusion_proof(&tree, i, size)
            .map_err(|err| anyhow!("{err}"))?
            .map_err(|err| anyhow!("{err}"))?;
        let p = TlogProof {
            extra: None,
            index: i,
            proof,
            checkpoint: checkpoint.clone(),
        };
        std::fs::write(a.out.join(format!("{i}.tlog-proof")), p.to_text())?;
    }
    let skipped = total.saturating_sub(size);
    println!(
        "wrote {} entries with proofs to {} (checkpoint {} size {size})",
        chosen.len(),
        a.out.display(),
        cp.origin
    );
    if skipped > 0 {
        println!("{skipped} newer entries are not covered by a checkpoint yet and were left out");
    }
    if chosen.is_empty() {
        bail!("the selection matched no entry");
    }
    Ok(())
}

fn verify_one(
    dir: &Path,
    index: &str,
    log: &OwnKeys,
    peers: &[tlog::Verifier],
    witnesses: &[tlog::Verifier],
    min: usize,
    policy: Option<&tlog::policy::Policy>,
) -> Result<String> {
    let entry = std::fs::read(dir.join(format!("{index}.entry")))
        .with_context(|| format!("{index}.entry is missing"))?;
    let text = std::fs::read_to_string(dir.join(format!("{index}.tlog-proof")))
        .with_context(|| format!("{index}.tlog-proof is missing"))?;
    let proof = TlogProof::parse(&text).map_err(|e| anyhow!("{index}.tlog-proof: {e}"))?;
    if proof.index.to_string() != index {
        bail!(
            "{index}.tlog-proof is for index {}, not {index}",
            proof.index
        );
    }
    let c = log
        .checkpoint_of(&proof, &entry, witnesses, min)
        .map_err(|e| anyhow!("{index}: {e}"))?;
    if let Some(p) = policy {
        let note = tlog::Note::parse(proof.checkpoint.as_bytes())
            .map_err(|e| anyhow!("{index}: the checkpoint: {e}"))?;
        let marks = p.cosigners(&note);
        if !p.satisfied(&marks) {
            let by: Vec<&str> = p
                .witnesses
                .iter()
                .zip(&marks)
                .filter(|(_, m)| **m)
                .map(|(w, _)| w.name.as_str())
                .collect();
            bail!(
                "{index}: the checkpoint (size {}) does not meet the witness policy's quorum (cosigned by {})",
                c.size,
                if by.is_empty() {
                    "none of its witnesses".to_string()
                } else {
                    by.join(", ")
                }
            );
        }
    }
    let e = SignedEntry::parse(&entry)
        .map_err(|err| anyhow!("{index}.entry is not a canonical entry: {err}"))?;
    own_attestation(&e, proof.index, log, peers).map_err(|err| anyhow!("{index}.entry {err}"))?;
    let by = if e.entry.origin == log.name() {
        String::new()
    } else {
        format!(" by {}", e.entry.origin)
    };
    let attested = if e.is_signed() {
        "signed, "
    } else {
        "unattested, "
    };
    Ok(format!(
        "ok {index} {}{by} ts={} ({attested}checkpoint size {})",
        e.entry.kind, e.entry.timestamp_ms, c.size
    ))
}

/// Checks what an entry carries of its own beyond the inclusion proof: the
/// log's signature on its own signed entries, a peer's on the peer's
/// records kept verbatim. An unattested entry (the log's own airspace
/// writes, `tlog::entry`) stands on the proof to the checked checkpoint
/// alone — only when it names the log's origin and is not of the line.
fn own_attestation(
    e: &SignedEntry,
    index: u64,
    log: &OwnKeys,
    peers: &[tlog::Verifier],
) -> Result<()> {
    let own = e.entry.origin == log.name();
    if !e.is_signed() && own && !e.entry.kind.starts_with("line.") {
        return Ok(());
    }
    if own {
        // Each key of the log signs its own stretch of it: the old key up
        // to its hand-over, the new one from it.
        let mut last = None;
        for k in log.at(index) {
            match e.verify(k) {
                Ok(()) => return Ok(()),
                Err(err) => last = Some(err),
            }
        }
        return Err(match last {
            Some(err) => anyhow!("({}): {err}", e.entry.origin),
            None => anyhow!(
                "({}): no key of the log covers index {index}",
                e.entry.origin
            ),
        });
    }
    // A peer's records: any key followed for it (the node that received
    // them checked which stretch each key signs).
    let mut keys = peers.iter().filter(|p| p.name == e.entry.origin).peekable();
    if keys.peek().is_none() {
        bail!(
            "is a record of {:?}: give its key with --peer (keys.txt lists the one the log pinned)",
            e.entry.origin
        );
    }
    let mut last = None;
    for k in keys {
        match e.verify(k) {
            Ok(()) => return Ok(()),
            Err(err) => last = Some(err),
        }
    }
    Err(anyhow!(
        "({}): {}",
        e.entry.origin,
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// The log's keys as a verifier follows them: the key given, and the keys
/// the bundle's hand-over entries lead to — forwards, an entry signed by a
/// followed key naming its successor; backwards, an entry signed by the
/// key before and included under a checkpoint of a followed key — each with
/// the stretch of the log it signs (`from..=to`).
struct OwnKeys {
    keys: Vec<(tlog::Verifier, u64, u64)>,
}

impl OwnKeys {
    fn single(k: tlog::Verifier) -> Self {
        OwnKeys {
            keys: vec![(k, 0, u64::MAX)],
        }
    }

    fn name(&self) -> &str {
        &self.keys[0].0.name
    }

    /// The keys whose stretch holds `index`.
    fn at(&self, index: u64) -> impl Iterator<Item = &tlog::Verifier> {
        self.keys
            .iter()
            .filter(move |(_, from, to)| *from <= index && index <= *to)
            .map(|(k, _, _)| k)
    }

    fn find(&self, vkey: &str) -> Option<usize> {
        self.keys.iter().position(|(k, _, _)| k.to_vkey() == vkey)
    }

    /// The checkpoint of `proof` for `entry`, signed by one of the keys.
    fn checkpoint_of(
        &self,
        proof: &TlogProof,
        entry: &[u8],
        witnesses: &[tlog::Verifier],
        min: usize,
    ) -> std::result::Result<tlog::Checkpoint, tlog::bundle::BundleError> {
        let mut last = None;
        for (k, _, _) in &self.keys {
            match proof.verify(entry, k, witnesses, min) {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| tlog::bundle::BundleError::Checkpoint("no key".into())))
    }

    /// Follows the hand-overs among `entries` ((index, entry, proof)) of
    /// the log, forwards and backwards, until nothing new is learnt.
    fn follow(&mut self, entries: &[(u64, SignedEntry, Vec<u8>, TlogProof)]) {
        loop {
            let mut learnt = false;
            for (i, e, leaf, proof) in entries {
                if e.entry.origin != self.name() {
                    continue;
                }
                let Some((old, new)) = node::evidence::handover(e) else {
                    continue;
                };
                let (Ok(o), Ok(n)) = (tlog::Verifier::parse(&old), tlog::Verifier::parse(&new))
                else {
                    continue;
                };
                // Always signed by the old key: forwards that is the old
                // key naming its successor; backwards the new key's log
                // must hold it (under a checkpoint of a followed key).
                if e.verify(&o).is_err() || n.name != self.name() {
                    continue;
                }
                let backwards_ok = || self.checkpoint_of(proof, leaf, &[], 0).is_ok();
                match (self.find(&old), self.find(&new)) {
                    (Some(a), None) => {
                        self.keys[a].2 = self.keys[a].2.min(*i);
                        self.keys.push((n, *i, u64::MAX));
                        learnt = true;
                    }
                    (None, Some(b)) if backwards_ok() => {
                        self.keys[b].1 = self.keys[b].1.max(*i);
                        self.keys.push((o, 0, *i));
                        learnt = true;
                    }
                    (Some(a), Some(b)) => {
                        // One hand-over is one record per peer: the old key
                        // signs up to the last of them, the new from the
                        // first.
                        if self.keys[a].2 < *i {
                            self.keys[a].2 = *i;
                        }
                        if self.keys[b].1 > *i {
                            self.keys[b].1 = *i;
                        }
                    }
                    (None, _) => {}
                }
            }
            if !learnt {
                return;
            }
        }
    }
}

/// Two signed checkpoints of one origin: an equivocation proof when they
/// give one size two roots (nothing else is needed to convince a third
/// party); otherwise consistent or not provable from the pair alone.
fn verify_pair(a: &Path, b: &Path, log: &tlog::Verifier) -> Result<()> {
    let read = |p: &Path| -> Result<(String, tlog::Checkpoint)> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let (n, _) = tlog::note::open(text.as_bytes(), std::slice::from_ref(log))
            .map_err(|e| anyhow!("{}: {e}", p.display()))?;
        let c = tlog::Checkpoint::parse(&n.text).map_err(|e| anyhow!("{}: {e}", p.display()))?;
        if c.origin != log.name {
            bail!(
                "{}: origin {:?} is not the log {:?}",
                p.display(),
                c.origin,
                log.name
            );
        }
        Ok((text, c))
    };
    let (_, ca) = read(a)?;
    let (_, cb) = read(b)?;
    use base64::Engine;
    let b64 = |h: &tlog::Hash| base64::engine::general_purpose::STANDARD.encode(h);
    if ca.size == cb.size && ca.root != cb.root {
        println!("PROOF OF EQUIVOCATION by {}", log.name);
        println!(
            "both checkpoints carry a valid signature of {} and state tree size {}",
            log.to_vkey(),
            ca.size
        );
        println!("  {}: root {}", a.display(), b64(&ca.root));
        println!("  {}: root {}", b.display(), b64(&cb.root));
        println!(
            "one append-only log has exactly one root per size: the log showed two different histories"
        );
        return Ok(());
    }
    if ca.size == cb.size {
        bail!(
            "not an equivocation: both checkpoints state size {} with the same root",
            ca.size
        );
    }
    bail!(
        "not provable from the pair alone: sizes {} and {} differ; the log must produce a consistency proof between them \
         (GET /log/proof/consistency), and a witness that received a failing one keeps it",
        ca.size,
        cb.size
    )
}

/// A bundle archive unpacked into a temporary folder, removed when dropped.
struct Unpacked {
    root: PathBuf,
    /// The bundle's folder: the archive's one top folder, or its root.
    bundle: PathBuf,
}

impl Unpacked {
    fn of(archive: &std::path::Path) -> Result<Unpacked> {
        let bytes =
            std::fs::read(archive).with_context(|| format!("reading {}", archive.display()))?;
        let files =
            tlog::archive::read(&bytes).map_err(|e| anyhow!("{}: {e}", archive.display()))?;
        let root = std::env::temp_dir().join(format!(
            "detente-verify-{}-{}",
            std::process::id(),
            files.len()
        ));
        let _ = std::fs::remove_dir_all(&root);
        let mut unpacked = Unpacked {
            root: root.clone(),
            bundle: root.clone(),
        };
        for (path, contents) in &files {
            // Paths are relative and never leave the folder (`archive::read`).
            let to = root.join(path);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&to, contents)?;
        }
        let tops: std::collections::BTreeSet<&str> = files
            .iter()
            .map(|(p, _)| p.split('/').next().unwrap_or(""))
            .collect();
        if let (1, Some(top)) = (tops.len(), tops.iter().next())
            && files.iter().all(|(p, _)| p.contains('/'))
        {
            unpacked.bundle = root.join(top);
        }
        Ok(unpacked)
    }
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

pub fn verify(a: VerifyArgs) -> Result<()> {
    use detente::exit::{Failure, Kind};
    let log = tlog::Verifier::parse(a.key.trim())
        .map_err(|e| Failure::error(Kind::Usage, format!("--key: {e}")))?;
    if log.kind != tlog::note::TYPE_ED25519 {
        return Err(Failure::error(
            Kind::Usage,
            "--key must be the log's Ed25519 (type 0x01) verifier key",
        ));
    }
    if a.paths.len() == 2 {
        return verify_pair(&a.paths[0], &a.paths[1], &log);
    }
    // A bundle as one file (the console's .tar): unpacked beside, verified
    // as a folder, removed again.
    if a.paths[0].is_file() {
        let unpacked = Unpacked::of(&a.paths[0])?;
        let folder = unpacked.bundle.clone();
        let mut a = a;
        a.paths = vec![folder];
        return verify(a);
    }
    let bundle = &a.paths[0];
    let witnesses = a
        .witness
        .iter()
        .map(|w| {
            tlog::Verifier::parse(w.trim())
                .map_err(|e| Failure::error(Kind::Usage, format!("--witness {w}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut peers = a
        .peer
        .iter()
        .map(|w| {
            tlog::Verifier::parse(w.trim())
                .map_err(|e| Failure::error(Kind::Usage, format!("--peer {w}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let policy = match &a.policy {
        None => None,
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                Failure::error(Kind::Usage, format!("--policy {}: {e}", p.display()))
            })?;
            Some(tlog::policy::Policy::parse(&text).map_err(|e| {
                Failure::error(Kind::Usage, format!("--policy {}: {e}", p.display()))
            })?)
        }
    };
    let mut indices: Vec<(u64, String)> = Vec::new();
    for f in std::fs::read_dir(bundle).with_context(|| format!("reading {}", bundle.display()))? {
        let name = f?.file_name().to_string_lossy().to_string();
        if let Some(i) = name
            .strip_suffix(".entry")
            .or_else(|| name.strip_suffix(".tlog-proof"))
        {
            let n: u64 = i
                .parse()
                .map_err(|_| anyhow!("{name}: not named <index>.entry or <index>.tlog-proof"))?;
            if !indices.iter().any(|(m, _)| *m == n) {
                indices.push((n, i.to_string()));
            }
        }
    }
    if indices.is_empty() {
        bail!("{} holds no entries", bundle.display());
    }
    indices.sort();
    // Key hand-overs in the bundle: the log's are followed from the key
    // given to the next (or back to the one before); a peer's from the key
    // given for it.
    // keys.txt names the hand-overs an export holds: without any there,
    // the entries are not read twice (a bundle whose keys.txt hides one
    // only fails to verify what the new key signed).
    let scan = std::fs::read_to_string(bundle.join("keys.txt"))
        .map(|t| t.lines().any(|l| l.starts_with("handover ")))
        .unwrap_or(true);
    let mut handovers = Vec::new();
    for (n, i) in indices.iter().filter(|_| scan) {
        let (Ok(leaf), Ok(text)) = (
            std::fs::read(bundle.join(format!("{i}.entry"))),
            std::fs::read_to_string(bundle.join(format!("{i}.tlog-proof"))),
        ) else {
            continue;
        };
        if let (Ok(e), Ok(proof)) = (SignedEntry::parse(&leaf), TlogProof::parse(&text))
            && e.entry.kind == "line.key.rotated"
        {
            handovers.push((*n, e, leaf, proof));
        }
    }
    let mut own = OwnKeys::single(log.clone());
    own.follow(&handovers);
    for (n, e, _, _) in &handovers {
        if let Some((old, new)) = node::evidence::handover(e)
            && e.entry.origin != log.name
            && let Some(p) = peers
                .iter()
                .find(|p| p.name == e.entry.origin && p.to_vkey() == old)
            && e.verify(p).is_ok()
            && let Ok(v) = tlog::Verifier::parse(&new)
            && v.name == e.entry.origin
            && !peers.iter().any(|p| p.to_vkey() == new)
        {
            println!("{} handed its key over at {n}: {new}", e.entry.origin);
            peers.push(v);
        }
    }
    for (k, from, to) in own.keys.iter().skip(1) {
        if *from == 0 {
            println!(
                "{} signed with {} up to its hand-over at {to}",
                log.name,
                k.to_vkey()
            );
        } else {
            println!(
                "{} handed its key over at {from}: {}",
                log.name,
                k.to_vkey()
            );
        }
    }
    for (_, i) in &indices {
        println!(
            "{}",
            verify_one(
                bundle,
                i,
                &own,
                &peers,
                &witnesses,
                a.min_witnesses,
                policy.as_ref()
            )?
        );
    }
    println!(
        "verified {} entries of {} against {}",
        indices.len(),
        log.name,
        a.key.trim()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tlog::entry::Entry;

    fn entry(origin: &str, kind: &str) -> Entry {
        Entry {
            kind: kind.into(),
            origin: origin.into(),
            timestamp_ms: 1_795_000_000_000,
            body: tlog::cbor::Value::Text("x".into()),
        }
    }

    fn unattested(e: &Entry) -> SignedEntry {
        let leaf = e
            .unsigned_encoded_to_bytes(&tlog::cbor::encode(&e.body))
            .unwrap();
        SignedEntry::parse(&leaf).unwrap()
    }

    #[test]
    fn only_the_logs_own_airspace_entries_may_come_unsigned() {
        let log = tlog::NoteSigner::from_seed("alliance", &[1; 32]).unwrap();
        let peer = tlog::NoteSigner::from_seed("federation", &[2; 32]).unwrap();
        let (lv, pv) = (log.verifier(), peer.verifier());
        let peers = std::slice::from_ref(&pv);
        let own = entry("alliance", "operational_intent.upserted");
        let lv = OwnKeys::single(lv);
        let own_attestation =
            |e: &SignedEntry, lv: &OwnKeys, p: &[tlog::Verifier]| own_attestation(e, 5, lv, p);
        assert!(own_attestation(&unattested(&own), &lv, peers).is_ok());
        assert!(own_attestation(&own.clone().sign(&log).unwrap(), &lv, peers).is_ok());
        // Signed by the wrong key: refused even though unsigned would pass.
        let err = own_attestation(&own.sign(&peer).unwrap(), &lv, peers).unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
        // The line's entries and a peer's records must carry a signature.
        let line = entry("alliance", "line.message");
        let err = own_attestation(&unattested(&line), &lv, peers).unwrap_err();
        assert!(err.to_string().contains("no signature"), "{err}");
        assert!(own_attestation(&line.sign(&log).unwrap(), &lv, peers).is_ok());
        let theirs = entry("federation", "operational_intent.upserted");
        let err = own_attestation(&unattested(&theirs), &lv, peers).unwrap_err();
        assert!(err.to_string().contains("no signature"), "{err}");
        assert!(own_attestation(&theirs.clone().sign(&peer).unwrap(), &lv, peers).is_ok());
        let err = own_attestation(&theirs.sign(&peer).unwrap(), &lv, &[]).unwrap_err();
        assert!(err.to_string().contains("--peer"), "{err}");
    }
}
