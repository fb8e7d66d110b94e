//! The committed fuzz corpus of the log formats (`fuzz/corpus/log_formats`)
//! runs on stable as a regression test: every input goes through every
//! parser, and whatever parses re-encodes to the same bytes.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

#[test]
fn log_format_corpus_holds_its_properties() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/log_formats");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        tlog::fuzzing::all(&std::fs::read(e.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= 8, "the corpus is committed");
}
