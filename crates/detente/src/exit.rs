//! `detente`'s exit codes, by what went wrong, so that a script can tell a
//! refusal from a typo from an outage:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | the evidence does not verify, or the node refused the request (4xx: token, scope, input); or any other failure |
//! | 2 | the command line is wrong (as clap's own usage errors) |
//! | 3 | the node could not be reached or failed (5xx), or a local file could not be read or written |

pub const FAILED: u8 = 1;
pub const NOT_VERIFIED: u8 = 1;
pub const REFUSED: u8 = 1;
pub const USAGE: u8 = 2;
pub const UNREACHABLE: u8 = 3;

/// What kind of failure an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Usage,
    NotVerified,
    Refused,
    Unreachable,
}

impl Kind {
    pub fn code(self) -> u8 {
        match self {
            Kind::Usage => USAGE,
            Kind::NotVerified => NOT_VERIFIED,
            Kind::Refused => REFUSED,
            Kind::Unreachable => UNREACHABLE,
        }
    }
}

/// An error that says what kind of failure it is.
#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
}

impl Failure {
    pub fn error(kind: Kind, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Failure {
            kind,
            message: message.into(),
        })
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code for `e`: its outermost [`Failure`]'s kind; else
/// [`UNREACHABLE`] for an I/O error anywhere in its chain; else [`FAILED`].
pub fn code(e: &anyhow::Error) -> u8 {
    if let Some(k) = kind_of(e) {
        return k.code();
    }
    if e.chain()
        .any(|c| c.downcast_ref::<std::io::Error>().is_some())
    {
        return UNREACHABLE;
    }
    FAILED
}

/// The kind `e` says it is (its outermost [`Failure`]), if any.
fn kind_of(e: &anyhow::Error) -> Option<Kind> {
    e.downcast_ref::<Failure>()
        .or_else(|| e.chain().find_map(|c| c.downcast_ref::<Failure>()))
        .map(|f| f.kind)
}

/// `r`'s error marked as `kind` unless it already says what it is.
pub fn mark<T>(r: anyhow::Result<T>, kind: Kind, what: &str) -> anyhow::Result<T> {
    r.map_err(|e| {
        if kind_of(&e).is_none() {
            e.context(Failure {
                kind,
                message: what.to_string(),
            })
        } else {
            e
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outermost_kind_names_the_code_and_context_keeps_it() {
        let refused = Failure::error(Kind::Refused, "401 unauthenticated");
        assert_eq!(code(&refused), REFUSED);
        let wrapped = refused.context("sending the message");
        assert_eq!(code(&wrapped), REFUSED, "a context above keeps the kind");
        assert_eq!(code(&anyhow::anyhow!("out of ideas")), FAILED);
        let io = anyhow::Error::new(std::io::Error::other("disk full")).context("writing x");
        assert_eq!(code(&io), UNREACHABLE, "I/O is 3");
        assert_eq!(
            [
                Kind::NotVerified,
                Kind::Refused,
                Kind::Usage,
                Kind::Unreachable
            ]
            .map(Kind::code),
            [1, 1, 2, 3],
            "the codes the README documents"
        );
        let missing = mark::<()>(
            Err(anyhow::Error::new(std::io::Error::other(
                "1.entry is missing",
            ))),
            Kind::NotVerified,
            "x",
        );
        assert_eq!(
            code(&missing.unwrap_err()),
            1,
            "a bundle missing a file does not verify"
        );
        let marked = mark::<()>(Err(anyhow::anyhow!("bad proof")), Kind::NotVerified, "x");
        assert_eq!(code(&marked.unwrap_err()), NOT_VERIFIED);
        let kept = mark::<()>(
            Err(Failure::error(Kind::Usage, "--key")),
            Kind::NotVerified,
            "x",
        );
        assert_eq!(
            code(&kept.unwrap_err()),
            USAGE,
            "an error that says its kind keeps it"
        );
    }
}
