//! SQL shared by both backends.

/// `Persistence::mark_once` and `Persistence::marks` over the `console_marks`
/// table, for a backend whose queries run through `self.on_pool` and
/// whose SQL numbers its parameters `$a`, `$b`, `$c`.
macro_rules! console_marks {
    ($a:literal, $b:literal, $c:literal) => {
        fn mark_once(
            &self,
            kind: node::Mark,
            id: String,
            until_ms: u64,
            now_ms: u64,
        ) -> BoxFuture<'_, Result<bool, StoreError>> {
            Box::pin(crate::sql::pool_query!(
                self,
                "recording a console mark",
                |c| {
                    // Past marks go first: an id seen again after its time is new.
                    sqlx::query(concat!(
                        "DELETE FROM console_marks WHERE kind = ",
                        $a,
                        " AND until_ms < ",
                        $b
                    ))
                    .bind(kind.as_str())
                    .bind(now_ms as i64)
                    .execute(&mut *c)
                    .await?;
                    let done = sqlx::query(concat!(
                        "INSERT INTO console_marks (kind, id, until_ms) VALUES (",
                        $a,
                        ", ",
                        $b,
                        ", ",
                        $c,
                        ") ON CONFLICT (kind, id) DO NOTHING"
                    ))
                    .bind(kind.as_str())
                    .bind(id)
                    .bind(until_ms as i64)
                    .execute(&mut *c)
                    .await?;
                    Ok(done.rows_affected() == 1)
                }
            ))
        }

        fn marks(
            &self,
            kind: node::Mark,
            now_ms: u64,
        ) -> BoxFuture<'_, Result<Vec<(String, u64)>, StoreError>> {
            Box::pin(async move {
                let rows: Vec<(String, i64)> =
                    crate::sql::pool_query!(self, "reading console marks", |c| {
                        sqlx::query_as(concat!(
                            "SELECT id, until_ms FROM console_marks WHERE kind = ",
                            $a,
                            " AND until_ms >= ",
                            $b
                        ))
                        .bind(kind.as_str())
                        .bind(now_ms as i64)
                        .fetch_all(&mut *c)
                        .await
                    })
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, t)| (id, t.max(0) as u64))
                    .collect())
            })
        }
    };
}
pub(crate) use console_marks;

/// A query on one pooled connection, `$c` in `$body`, run through the
/// backend's `on_pool` (which bounds it where the link can fail).
macro_rules! pool_query {
    ($store:ident, $what:expr, |$c:ident| $body:block) => {
        $store.on_pool($what, Box::new(move |$c| Box::pin(async move $body)))
    };
}
pub(crate) use pool_query;
