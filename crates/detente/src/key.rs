//! The node key: an Ed25519 seed kept in the data folder (`node.key`, mode
//! 0600), created on first start from the OS's CSPRNG. Its public half and
//! name are the node's identity: the log's origin, the key peers pin.

use anyhow::{Context, Result, bail};
use node::Ids;
use std::io::Write;
use std::path::Path;
use tlog::NoteSigner;
use tlog::cosignature::Cosigner;

const FILE: &str = "node.key";
/// The next key, prepared by `detente key rotate` and handed over to at
/// the node's next start.
const NEXT: &str = "node.key.next";
/// The key handed over from, kept while the hand-over is under way.
const PREVIOUS: &str = "node.key.previous";

fn parse(text: &str) -> Result<(String, [u8; 32])> {
    let mut lines = text.lines();
    let (Some(name), Some(hex)) = (lines.next(), lines.next()) else {
        bail!("expected the key name and the hex seed on two lines")
    };
    if hex.len() != 64 {
        bail!("the seed must be 64 hex digits");
    }
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).context("the seed is not hex")?;
    }
    Ok((name.to_string(), seed))
}

/// The witness's cosigning key is derived from the node seed, so that the
/// node key is never reused across signature types (signed-note: SHOULD NOT).
pub fn cosigner(signer_seed: &[u8; 32], name: &str) -> Result<Cosigner> {
    let mut m = b"detente cosigner v1\n".to_vec();
    m.extend_from_slice(signer_seed);
    Cosigner::from_seed(name, &tlog::hash::sha256(&m)).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The node key's name and seed (the node's TLS identity is made from it).
pub fn load_seed(data: &Path) -> Result<(String, [u8; 32])> {
    parse(&std::fs::read_to_string(data.join(FILE))?)
}

/// The node's log signer and witness cosigner.
pub fn load_or_create_both(data: &Path, name: &str) -> Result<(NoteSigner, Cosigner)> {
    let signer = load_or_create(data, name)?;
    let (_, seed) = parse(&std::fs::read_to_string(data.join(FILE))?)?;
    let cosigner = cosigner(&seed, &signer.name)?;
    Ok((signer, cosigner))
}

/// The node's signer: loaded from `data/node.key`, or created there with
/// `name` if there is none yet (an existing key keeps its own name).
pub fn load_or_create(data: &Path, name: &str) -> Result<NoteSigner> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let path = data.join(FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let (stored, seed) = parse(&text)
            .with_context(|| format!("{} is not a Detente node key", path.display()))?;
        if stored != name {
            tracing::warn!(configured = %name, key = %stored, "the node key carries its own name; the configured name is ignored");
        }
        return NoteSigner::from_seed(&stored, &seed).map_err(|e| anyhow::anyhow!("{e}"));
    }
    // A database without its key is a node whose identity is lost: a new
    // key would sign the old node's log as someone else.
    if data.join("detente.db").exists() {
        anyhow::bail!(
            "{} is missing, but {} holds a node's store: it cannot start as that node without its \
             key. {}",
            path.display(),
            data.join("detente.db").display(),
            store::seal::RECOVERY
        );
    }
    let seed = node::RandomIds.seed().map_err(|e| anyhow::anyhow!(e))?;
    let signer = NoteSigner::from_seed(name, &seed)
        .map_err(|e| anyhow::anyhow!("invalid node name {name:?}: {e}"))?;
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(format!("{name}\n{hex}\n").as_bytes())?;
    f.sync_all()?;
    tracing::info!(vkey = %signer.verifier().to_vkey(), "created the node key");
    Ok(signer)
}

/// The node's keys at start: the key in force (after a prepared rotation,
/// the next one) and the key handed over from, if a hand-over is prepared
/// or under way.
pub struct StartKeys {
    pub name: String,
    pub seed: [u8; 32],
    pub previous: Option<[u8; 32]>,
    /// A rotation prepared by `detente key rotate` is being taken up:
    /// [`finish_rotation`] once the log holds the hand-over.
    pub rotating: bool,
}

fn read_key(path: &Path) -> Result<(String, [u8; 32])> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("{} is not a Detente node key", path.display()))
}

/// Loads (or creates) the node key and takes up a prepared rotation.
pub fn load_for_start(data: &Path, name: &str) -> Result<StartKeys> {
    load_or_create(data, name)?;
    let (name, seed) = read_key(&data.join(FILE))?;
    if data.join(NEXT).exists() {
        let (next_name, next) = read_key(&data.join(NEXT))?;
        if next_name != name {
            bail!("{NEXT} is named {next_name:?}, the node key {name:?}");
        }
        return Ok(StartKeys {
            name,
            seed: next,
            previous: Some(seed),
            rotating: true,
        });
    }
    let previous = if data.join(PREVIOUS).exists() {
        Some(read_key(&data.join(PREVIOUS))?.1)
    } else {
        None
    };
    Ok(StartKeys {
        name,
        seed,
        previous,
        rotating: false,
    })
}

fn hex(seed: &[u8; 32]) -> String {
    seed.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `text` to `data/file` durably and privately: beside, synced,
/// renamed over, the folder synced.
fn write_durably(data: &Path, file: &str, text: &str) -> Result<()> {
    let tmp = data.join(format!("{file}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, data.join(file))?;
    sync_dir(data)
}

fn sync_dir(data: &Path) -> Result<()> {
    std::fs::File::open(data)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", data.display()))
}

/// Prepares the node's next key (`node.key.next`), handed over to at the
/// node's next start; returns its verifier key. Refused while a prepared
/// rotation waits or the last hand-over is still under way.
pub fn rotate(data: &Path) -> Result<String> {
    let (name, _) = read_key(&data.join(FILE)).context("no node key to rotate")?;
    if data.join(NEXT).exists() {
        bail!(
            "a rotation is already prepared ({}): start the node to hand over to it",
            data.join(NEXT).display()
        );
    }
    if data.join(PREVIOUS).exists() {
        bail!(
            "the last key hand-over is still under way (not every peer has receipted it; `detente              peer list` shows who has): the node removes {} when it is complete",
            data.join(PREVIOUS).display()
        );
    }
    let seed = node::RandomIds.seed().map_err(|e| anyhow::anyhow!(e))?;
    let signer = NoteSigner::from_seed(&name, &seed).map_err(|e| anyhow::anyhow!("{e}"))?;
    write_durably(data, NEXT, &format!("{name}\n{}\n", hex(&seed)))?;
    Ok(signer.verifier().to_vkey())
}

/// Once the log holds the hand-over: the old key kept as
/// `node.key.previous`, the next one made `node.key` (each step durable, so
/// that a stop between them starts again where it was).
pub fn finish_rotation(data: &Path) -> Result<()> {
    if !data.join(NEXT).exists() {
        return Ok(());
    }
    let current = std::fs::read_to_string(data.join(FILE))?;
    write_durably(data, PREVIOUS, &current)?;
    std::fs::rename(data.join(NEXT), data.join(FILE))?;
    sync_dir(data)
}

/// Removes the key handed over from, once the hand-over is complete.
pub fn retire_previous(data: &Path) -> Result<bool> {
    match std::fs::remove_file(data.join(PREVIOUS)) {
        Ok(()) => {
            sync_dir(data)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The verifier key of the node whose data folder is `data`.
pub fn verifier_key(data: &Path) -> Result<String> {
    let path = data.join(FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (has a node run on this folder?)",
            path.display()
        )
    })?;
    let (name, seed) = parse(&text)?;
    Ok(NoteSigner::from_seed(&name, &seed)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .verifier()
        .to_vkey())
}
