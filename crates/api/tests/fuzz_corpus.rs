//! The committed fuzz corpus and crash reproducers (`fuzz/corpus/*`) run as
//! regression tests on stable: every input goes through the same entry
//! points as the fuzz targets and must not panic.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        out.push(std::fs::read(e.unwrap().path()).unwrap());
    }
    out
}

#[test]
fn dss_body_corpus_parses_without_panicking() {
    let corpus = inputs("dss_bodies");
    assert!(!corpus.is_empty(), "the corpus is committed");
    let (mut accepted, mut queries) = (0, 0);
    for input in &corpus {
        if api::fuzzing::intent_body(input) {
            accepted += 1;
        }
        let _ = api::fuzzing::query_body(input);
        let _ = api::fuzzing::subscription_body(input);
        let _ = api::fuzzing::availability_body(input);
        if api::fuzzing::export_query(input) {
            queries += 1;
        }
        if api::fuzzing::geojson_import(input) {
            queries += 1;
        }
    }
    assert!(
        accepted > 0,
        "the seed corpus holds at least one valid intent body"
    );
    assert!(queries > 1, "and a valid export query and GeoJSON import");
}

#[test]
fn bearer_token_corpus_is_refused_without_panicking() {
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-support/keys/test-public.pem");
    let auth = api::Authenticator::new(&api::AuthConfig {
        keys: vec![api::KeySource::Pem(key)],
        audience: "fuzz".into(),
        insecure_dev: false,
    })
    .unwrap();
    let corpus = inputs("bearer_token");
    assert!(!corpus.is_empty());
    for input in &corpus {
        assert!(
            !api::fuzzing::bearer_token(&auth, input),
            "no corpus entry is a valid token for audience 'fuzz'"
        );
    }
}

#[test]
fn line_corpus_parses_without_panicking_and_reencodes_identically() {
    let corpus = inputs("line_records");
    assert!(!corpus.is_empty(), "the corpus is committed");
    let accepted = corpus
        .iter()
        .filter(|i| api::fuzzing::line_inputs(i))
        .count();
    assert!(
        accepted >= 3,
        "the seed corpus holds valid records and bodies ({accepted} parsed)"
    );
}

#[test]
fn console_corpus_is_refused_without_panicking() {
    let console = api::console::Console::new(&[7; 32], "fuzz.node", vec![]);
    let corpus = inputs("console_inputs");
    assert!(!corpus.is_empty(), "the corpus is committed");
    for input in &corpus {
        assert!(
            !api::fuzzing::console_inputs(&console, input),
            "no corpus entry carries a challenge or a session of this node: {}",
            String::from_utf8_lossy(input)
        );
    }
    // The same path takes a well-formed login that answers a live challenge.
    let login = format!(
        r#"{{"member":"{}","challenge":"{}","signature":"{}"}}"#,
        liaison::MemberSigner::from_seed(&[1; 32]).key().to_hex(),
        console.challenge(0),
        "22".repeat(64)
    );
    assert!(api::fuzzing::console_inputs(&console, login.as_bytes()));
}
