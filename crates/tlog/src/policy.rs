//! A witness policy: which witnesses a log's checkpoints go to and how many
//! of their cosignatures make a checkpoint count as witnessed. The text
//! format follows the shape of Sigsum's policy files with C2SP vkeys:
//!
//! ```text
//! # comments and blank lines are ignored
//! witness <name> <cosigner vkey> [<submission prefix URL>]
//! group <name> <k | any | all> <member>...
//! quorum <name>
//! ```
//!
//! A `witness` is a C2SP `tlog-cosignature` key (type 0x04); with a URL the
//! log submits its checkpoints to it (C2SP `tlog-witness`, `POST
//! <prefix>/add-checkpoint`). A `group` is satisfied when at least `k` of
//! its members are (`any`: 1, `all`: every one); members are witnesses or
//! groups defined above it. Exactly one `quorum` line names the witness or
//! group that must be satisfied.

use crate::note::{Note, Verifier};

/// One witness of a policy.
#[derive(Clone, Debug)]
pub struct PolicyWitness {
    pub name: String,
    pub verifier: Verifier,
    /// Where checkpoints are submitted (`None`: only counted).
    pub url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Member {
    Witness(usize),
    Group(usize),
}

#[derive(Clone, Debug)]
struct Group {
    name: String,
    threshold: usize,
    members: Vec<Member>,
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub witnesses: Vec<PolicyWitness>,
    groups: Vec<Group>,
    quorum: Member,
}

/// Why a policy text is refused: the line (from 1) and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct PolicyError {
    pub line: usize,
    pub message: String,
}

/// Most witnesses and groups a policy may name (a policy is read by hand).
pub const MAX_ENTRIES: usize = 256;

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'))
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let mut witnesses: Vec<PolicyWitness> = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut quorum = None;
        let find = |witnesses: &[PolicyWitness], groups: &[Group], name: &str| {
            witnesses
                .iter()
                .position(|w| w.name == name)
                .map(Member::Witness)
                .or_else(|| {
                    groups
                        .iter()
                        .position(|g| g.name == name)
                        .map(Member::Group)
                })
        };
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |message: String| PolicyError { line, message };
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let words: Vec<&str> = content.split_whitespace().collect();
            if witnesses.len() + groups.len() >= MAX_ENTRIES {
                return Err(err(format!("at most {MAX_ENTRIES} witnesses and groups")));
            }
            match words[0] {
                "witness" => {
                    if !(3..=4).contains(&words.len()) {
                        return Err(err("expected: witness <name> <vkey> [<url>]".into()));
                    }
                    let name = words[1];
                    if !valid_name(name) {
                        return Err(err(format!("{name:?} is not a valid name")));
                    }
                    if find(&witnesses, &groups, name).is_some() {
                        return Err(err(format!("{name} is defined twice")));
                    }
                    let verifier = Verifier::parse(words[2])
                        .map_err(|e| err(format!("{name}: the key: {e}")))?;
                    if let Some(w) = witnesses.iter().find(|w| {
                        w.verifier.key_id == verifier.key_id && w.verifier.key == verifier.key
                    }) {
                        return Err(err(format!(
                            "{name}: the same key as {} (one witness, counted once)",
                            w.name
                        )));
                    }
                    if verifier.kind != 0x04 {
                        return Err(err(format!(
                            "{name}: a witness key is a cosignature/v1 key (type 0x04)"
                        )));
                    }
                    let url = match words.get(3) {
                        None => None,
                        Some(u) if u.starts_with("https://") || u.starts_with("http://") => {
                            Some(u.trim_end_matches('/').to_string())
                        }
                        Some(u) => {
                            return Err(err(format!("{name}: {u:?} is not an http(s) URL")));
                        }
                    };
                    witnesses.push(PolicyWitness {
                        name: name.to_string(),
                        verifier,
                        url,
                    });
                }
                "group" => {
                    if words.len() < 4 {
                        return Err(err(
                            "expected: group <name> <k | any | all> <member>...".into()
                        ));
                    }
                    let name = words[1];
                    if !valid_name(name) {
                        return Err(err(format!("{name:?} is not a valid name")));
                    }
                    if find(&witnesses, &groups, name).is_some() {
                        return Err(err(format!("{name} is defined twice")));
                    }
                    let mut members = Vec::new();
                    for m in &words[3..] {
                        let Some(found) = find(&witnesses, &groups, m) else {
                            return Err(err(format!("{m} is not defined above")));
                        };
                        if members.contains(&found) {
                            return Err(err(format!("{m} is listed twice")));
                        }
                        members.push(found);
                    }
                    let threshold = match words[2] {
                        "any" => 1,
                        "all" => members.len(),
                        k => match k.parse::<usize>() {
                            Ok(k) if (1..=members.len()).contains(&k) => k,
                            _ => {
                                return Err(err(format!(
                                    "the threshold is any, all or 1 to {}",
                                    members.len()
                                )));
                            }
                        },
                    };
                    groups.push(Group {
                        name: name.to_string(),
                        threshold,
                        members,
                    });
                }
                "quorum" => {
                    if words.len() != 2 {
                        return Err(err("expected: quorum <name>".into()));
                    }
                    if quorum.is_some() {
                        return Err(err("one quorum line only".into()));
                    }
                    quorum = Some(
                        find(&witnesses, &groups, words[1])
                            .ok_or_else(|| err(format!("{} is not defined above", words[1])))?,
                    );
                }
                other => {
                    return Err(err(format!(
                        "unknown keyword {other:?} (witness, group, quorum)"
                    )));
                }
            }
        }
        let quorum = quorum.ok_or(PolicyError {
            line: text.lines().count().max(1),
            message: "no quorum line".into(),
        })?;
        Ok(Policy {
            witnesses,
            groups,
            quorum,
        })
    }

    /// Which witnesses validly cosigned the checkpoint `note` (its text
    /// as signed; bad or foreign signatures are ignored).
    pub fn cosigners(&self, note: &Note) -> Vec<bool> {
        self.witnesses
            .iter()
            .map(|w| {
                note.signatures.iter().any(|s| {
                    s.name == w.verifier.name
                        && s.key_id == w.verifier.key_id
                        && w.verifier.verify(&note.text, s).is_ok()
                })
            })
            .collect()
    }

    /// Whether the witnesses marked in `cosigned` (by index) satisfy the
    /// quorum.
    pub fn satisfied(&self, cosigned: &[bool]) -> bool {
        self.member_satisfied(&self.quorum, cosigned)
    }

    fn member_satisfied(&self, m: &Member, cosigned: &[bool]) -> bool {
        match m {
            Member::Witness(i) => cosigned.get(*i).copied().unwrap_or(false),
            Member::Group(g) => {
                let g = &self.groups[*g];
                g.members
                    .iter()
                    .filter(|m| self.member_satisfied(m, cosigned))
                    .count()
                    >= g.threshold
            }
        }
    }

    /// Whether `note` carries cosignatures that satisfy the quorum.
    pub fn witnessed(&self, note: &Note) -> bool {
        self.satisfied(&self.cosigners(note))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosignature::Cosigner;

    fn cosigner(name: &str, seed: u8) -> Cosigner {
        Cosigner::from_seed(name, &[seed; 32]).unwrap()
    }

    #[test]
    fn a_quorum_of_groups_counts_only_valid_cosignatures() {
        let (a, b, c) = (cosigner("w.a", 1), cosigner("w.b", 2), cosigner("w.c", 3));
        let text = format!(
            "# two of three outside witnesses, and the peer\n\
             witness a {} https://a.example/prefix/\n\
             witness b {}\n\
             witness c {} http://c.example\n\
             group outside 2 a b c\n\
             witness peer {}\n\
             group both all outside peer\n\
             quorum both\n",
            a.verifier().to_vkey(),
            b.verifier().to_vkey(),
            c.verifier().to_vkey(),
            cosigner("peer", 4).verifier().to_vkey(),
        );
        let p = Policy::parse(&text).unwrap();
        assert_eq!(p.witnesses.len(), 4);
        assert_eq!(
            p.witnesses[0].url.as_deref(),
            Some("https://a.example/prefix")
        );
        assert_eq!(p.witnesses[1].url, None);
        let mark = |on: &[usize]| (0..4).map(|i| on.contains(&i)).collect::<Vec<_>>();
        assert!(p.satisfied(&mark(&[0, 1, 3])));
        assert!(p.satisfied(&mark(&[0, 2, 3])));
        assert!(!p.satisfied(&mark(&[0, 1, 2])), "the peer is required");
        assert!(!p.satisfied(&mark(&[0, 3])), "two outside witnesses are");

        // On a real note: cosignatures of the checkpoint's text.
        let log = crate::note::NoteSigner::from_seed("log", &[9; 32]).unwrap();
        let body = "log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n".to_string();
        let mut note = Note {
            signatures: vec![log.sign(&body)],
            text: body.clone(),
        };
        for w in [&a, &b] {
            note.signatures.push(w.cosign(&body, 1_700_000_000));
        }
        assert_eq!(p.cosigners(&note), vec![true, true, false, false]);
        assert!(!p.witnessed(&note));
        note.signatures
            .push(cosigner("peer", 4).cosign(&body, 1_700_000_000));
        assert!(p.witnessed(&note));
        // A cosignature over other text does not count.
        let other = cosigner("w.c", 3).cosign("log\n6\nx\n", 1_700_000_000);
        note.signatures.push(other);
        assert!(!p.cosigners(&note)[2]);
    }

    #[test]
    fn bad_policies_name_the_line() {
        let k = cosigner("w.a", 1).verifier().to_vkey();
        let note_key = crate::note::NoteSigner::from_seed("n", &[1; 32])
            .unwrap()
            .verifier()
            .to_vkey();
        for (text, line, what) in [
            ("quorum x\n".to_string(), 1, "not defined"),
            (format!("witness a {k}\n"), 1, "no quorum"),
            (
                format!("witness a {k}\nwitness a {k}\nquorum a\n"),
                2,
                "twice",
            ),
            (
                format!("witness a {k}\nwitness b {k}\nquorum a\n"),
                2,
                "same key",
            ),
            (format!("witness a {note_key}\nquorum a\n"), 1, "0x04"),
            (format!("witness a {k} ftp://x\nquorum a\n"), 1, "URL"),
            (
                format!("witness a {k}\ngroup g 2 a\nquorum g\n"),
                2,
                "threshold",
            ),
            (
                format!("witness a {k}\ngroup g any a b\nquorum g\n"),
                2,
                "b is not defined",
            ),
            (
                format!("witness a {k}\nquorum a\nquorum a\n"),
                3,
                "one quorum",
            ),
            (
                format!("witness a {k}\nwitnesses b\nquorum a\n"),
                2,
                "unknown keyword",
            ),
        ] {
            let e = Policy::parse(&text).unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.message.contains(what), "{text}: {e}");
        }
    }
}
