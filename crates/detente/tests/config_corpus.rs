//! The committed fuzz corpus of the configuration file
//! (`fuzz/corpus/config`) runs as a regression test on stable: every input
//! is judged without a panic, and the documented example is taken.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

#[test]
fn config_corpus_is_judged_without_panicking() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/config");
    let mut taken = Vec::new();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        n += 1;
        if detente::fuzzing::config_file(&std::fs::read(&p).unwrap()) {
            taken.push(p.file_name().unwrap().to_string_lossy().to_string());
        }
    }
    assert!(n >= 5, "the corpus is committed");
    assert!(taken.iter().any(|f| f == "example.toml"), "{taken:?}");
    assert!(
        !taken
            .iter()
            .any(|f| f == "unknown_key.toml" || f == "bad_schema.toml"),
        "{taken:?}"
    );
}
