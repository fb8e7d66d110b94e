use super::*;

/// C2SP signed-note v1.0.0, §Verifier keys, "Example": this verifier key
/// verifies this note.
const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

#[test]
fn the_specs_example_note_verifies_with_the_specs_example_key() {
    let v = Verifier::parse(SPEC_VKEY).unwrap();
    assert_eq!(
        v.key_id, 0x530d903a,
        "key ID = SHA-256(name || 0x0A || 0x01 || key)[:4]"
    );
    assert_eq!(v.to_vkey(), SPEC_VKEY);
    let (note, ok) = open(SPEC_NOTE.as_bytes(), &[v]).unwrap();
    assert_eq!(note.text, "This is an example message.\n");
    assert_eq!(ok.len(), 1);
    assert_eq!(note.to_text(), SPEC_NOTE, "re-encoding is byte-identical");
}

#[test]
fn a_flipped_byte_anywhere_is_caught() {
    let v = Verifier::parse(SPEC_VKEY).unwrap();
    let tampered = SPEC_NOTE.replace("example message", "example massage");
    assert!(matches!(
        open(tampered.as_bytes(), std::slice::from_ref(&v)),
        Err(NoteError::BadSignature { .. })
    ));
    let sig_flip = SPEC_NOTE.replace("Uw2QOkn8", "Uw2QOkn9");
    assert!(open(sig_flip.as_bytes(), std::slice::from_ref(&v)).is_err());
}

#[test]
fn unknown_keys_are_ignored_but_someone_trusted_must_sign() {
    let other = NoteSigner::from_seed("example.com/other", &[7; 32]).unwrap();
    let text = "This is an example message.\n";
    let mut note = Note::parse(SPEC_NOTE.as_bytes()).unwrap();
    note.signatures.insert(0, other.sign(text));
    // An unknown key with a bogus signature is ignored.
    note.signatures.push(NoteSignature {
        name: "example.com/unknown".into(),
        key_id: 1,
        signature: vec![0; 64],
    });
    let v = Verifier::parse(SPEC_VKEY).unwrap();
    let (_, ok) = open(note.to_text().as_bytes(), std::slice::from_ref(&v)).unwrap();
    assert_eq!(ok.len(), 1);
    // Same name, different id: ignored; with no trusted signature left, rejected.
    let impostor = Note {
        text: text.into(),
        signatures: vec![NoteSignature {
            name: "example.com/foo".into(),
            key_id: 0x530d903b,
            signature: vec![0; 64],
        }],
    };
    assert_eq!(
        open(impostor.to_text().as_bytes(), &[v]),
        Err(NoteError::NoTrustedSignature)
    );
}

#[test]
fn sixteen_signatures_are_accepted() {
    let text = "many\n";
    let signers: Vec<NoteSigner> = (0..16u8)
        .map(|i| NoteSigner::from_seed(&format!("w{i}.example"), &[i + 1; 32]).unwrap())
        .collect();
    let note = Note {
        text: text.into(),
        signatures: signers.iter().map(|s| s.sign(text)).collect(),
    };
    let trusted: Vec<Verifier> = signers.iter().map(|s| s.verifier()).collect();
    let (_, ok) = open(note.to_text().as_bytes(), &trusted).unwrap();
    assert_eq!(ok.len(), 16);
}

#[test]
fn malformed_notes_are_refused() {
    for bad in [
        "no blank line\n\u{2014} a AAAAAAA=\n",
        "text\n\n",
        "text\n\n- a AAAAAAAA\n",
        "text\n\n\u{2014} a not-base64!\n",
        "text\n\n\u{2014} a AAAA\n",
        "te\u{7}xt\n\n\u{2014} a AAAAAAAA\n",
        "text\n\n\u{2014} a AAAAAAAA",
    ] {
        assert!(Note::parse(bad.as_bytes()).is_err(), "{bad:?}");
    }
    assert!(Note::parse(&[0xff, 0xfe]).is_err());
    for bad in [
        "nope",
        "a+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530D903A+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530d903a+AQ==",
    ] {
        assert!(Verifier::parse(bad).is_err(), "{bad}");
    }
}
