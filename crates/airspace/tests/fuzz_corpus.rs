//! The committed fuzz corpus of the state-snapshot records
//! (`fuzz/corpus/snapshot_records`) runs as a regression test on stable:
//! every input goes through the fuzz target's entry points and must not
//! panic; the seeds decode.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use airspace::snapshot::{Reader, Snap};
use airspace::{Constraint, OperationalIntent, Subscription};
use std::path::Path;

/// Decodes as `T`; when it does, re-encoding is stable. Whether it decoded.
fn again<T: Snap>(data: &[u8]) -> bool {
    let Ok(v) = T::take(&mut Reader::new(data)) else {
        return false;
    };
    let mut out = Vec::new();
    v.put(&mut out);
    let back = T::take(&mut Reader::new(&out)).unwrap();
    let mut twice = Vec::new();
    back.put(&mut twice);
    assert_eq!(twice, out);
    true
}

#[test]
fn snapshot_record_corpus_decodes_without_panicking() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/snapshot_records");
    let mut decoded = 0;
    let mut inputs = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        inputs += 1;
        decoded += usize::from(again::<OperationalIntent>(&data))
            + usize::from(again::<Subscription>(&data))
            + usize::from(again::<Constraint>(&data));
    }
    assert!(inputs >= 4, "the corpus is committed");
    assert!(
        decoded >= 3,
        "the seeds hold an intent, a subscription and a constraint"
    );
}
