//! What both backends check before migrating: each applied migration is
//! recorded with the SHA-256 of its text, and a binary refuses a database
//! whose applied migrations differ from its own (someone edited one after
//! it shipped) or that has migrations it does not know (a newer binary
//! wrote it: running an older one on it would misread its rows).

use node::StoreError;

/// The hex SHA-256 of a migration's text.
pub fn checksum(sql: &str) -> String {
    tlog::hash::sha256(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Given the migrations applied (version, checksum if recorded) and the
/// ones this binary knows, the applied versions whose checksum is still to
/// be recorded (applied before checksums were kept) — or why this binary
/// must not touch the database.
pub fn check(
    applied: &[(i64, Option<String>)],
    known: &[(i64, &str)],
    backend: &str,
) -> Result<Vec<i64>, StoreError> {
    let newest_known = known.iter().map(|(v, _)| *v).max().unwrap_or(0);
    if let Some((newest, _)) = applied.iter().max_by_key(|(v, _)| *v)
        && *newest > newest_known
    {
        return Err(StoreError::Failed(format!(
            "the {backend} database's schema is at migration {newest}, newer than this binary \
             knows ({newest_known}): a newer detente wrote it; run that version (or a later one) \
             on it, or restore a backup taken before it"
        )));
    }
    let mut unrecorded = Vec::new();
    for (version, sum) in applied {
        let Some((_, sql)) = known.iter().find(|(v, _)| v == version) else {
            return Err(StoreError::Failed(format!(
                "the {backend} database records migration {version}, which this binary does not \
                 have: it was not made by a detente this one descends from"
            )));
        };
        match sum {
            None => unrecorded.push(*version),
            Some(s) if *s == checksum(sql) => {}
            Some(s) => {
                return Err(StoreError::Failed(format!(
                    "the {backend} database's migration {version} was applied from another text \
                     (checksum {s}, this binary's {}): the schema may not be what this binary \
                     expects; refusing to start",
                    checksum(sql)
                )));
            }
        }
    }
    Ok(unrecorded)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KNOWN: &[(i64, &str)] = &[(1, "CREATE TABLE a (x);"), (2, "CREATE TABLE b (y);")];

    #[test]
    fn applied_migrations_must_be_known_and_unchanged() {
        let sum = |i: usize| Some(checksum(KNOWN[i].1));
        assert_eq!(check(&[], KNOWN, "test").unwrap(), Vec::<i64>::new());
        assert_eq!(
            check(&[(1, sum(0)), (2, sum(1))], KNOWN, "test").unwrap(),
            Vec::<i64>::new()
        );
        // Applied before checksums were kept: recorded now.
        assert_eq!(
            check(&[(1, None), (2, sum(1))], KNOWN, "test").unwrap(),
            vec![1]
        );
        // Edited after it was applied.
        let e = check(&[(1, Some(checksum("CREATE TABLE a (z);")))], KNOWN, "test").unwrap_err();
        assert!(
            e.to_string()
                .contains("migration 1 was applied from another text"),
            "{e}"
        );
        // Written by a newer binary.
        let e = check(&[(1, sum(0)), (3, None)], KNOWN, "test").unwrap_err();
        assert!(
            e.to_string().contains("newer than this binary knows (2)"),
            "{e}"
        );
    }
}
