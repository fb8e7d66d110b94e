//! C2SP `tlog-checkpoint` v1.0.0: origin, decimal size, base64 root hash,
//! optional extension lines — the text of a signed note.

use crate::hash::Hash;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub extensions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed checkpoint: {0}")]
pub struct CheckpointError(pub String);

impl Checkpoint {
    /// The note text, ending in a newline.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a note text (as returned by `Note::parse`).
    pub fn parse(text: &str) -> Result<Checkpoint, CheckpointError> {
        let bad = |s: &str| CheckpointError(s.to_string());
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("the text must end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("empty origin"))?;
        let size_line = lines.next().ok_or_else(|| bad("no size line"))?;
        if size_line.is_empty()
            || !size_line.bytes().all(|b| b.is_ascii_digit())
            || (size_line.len() > 1 && size_line.starts_with('0'))
        {
            return Err(bad("the size must be decimal without leading zeroes"));
        }
        let size: u64 = size_line
            .parse()
            .map_err(|_| bad("the size does not fit 64 bits"))?;
        let root_line = lines.next().ok_or_else(|| bad("no root hash line"))?;
        let raw = B64
            .decode(root_line)
            .map_err(|_| bad("the root hash is not base64"))?;
        let root: Hash = raw
            .as_slice()
            .try_into()
            .map_err(|_| bad("the root hash must be 32 bytes"))?;
        let extensions: Vec<String> = lines.map(|l| l.to_string()).collect();
        if extensions.iter().any(|e| e.is_empty()) {
            return Err(bad("extension lines must be non-empty"));
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::Note;

    /// C2SP tlog-checkpoint v1.0.0, the example at the top of the spec.
    const SPEC_EXAMPLE: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";

    #[test]
    fn the_specs_example_parses_and_re_encodes_identically() {
        let note = Note::parse(SPEC_EXAMPLE.as_bytes()).unwrap();
        let c = Checkpoint::parse(&note.text).unwrap();
        assert_eq!(c.origin, "example.com/behind-the-sofa");
        assert_eq!(c.size, 20_852_163);
        assert_eq!(c.to_text(), note.text);
        assert_eq!(note.to_text(), SPEC_EXAMPLE);
    }

    #[test]
    fn malformed_checkpoints_are_refused() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        for bad in [
            format!("\n1\n{root}\n"),
            format!("o\n01\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            "o\n1\nAAAA\n".to_string(),
            format!("o\n1\n{root}"),
            format!("o\n1\n{root}\n\n"),
            "o\n1\n".to_string(),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Checkpoint::parse(&format!("o\n0\n{root}\next\n"))
                .unwrap()
                .extensions,
            vec!["ext"]
        );
    }
}
