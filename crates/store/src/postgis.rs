//! The hand-written PostGIS baseline `detente bench --postgis URL` measures
//! the embedded index against: the table and query a developer would write
//! for "operational intents intersecting this 4D area" — one row per volume,
//! `geometry(Polygon, 4326)`, `tstzrange`, `numrange`, one GiST index over
//! the three — loaded with the same intents and asked the same areas.
//! Not a store: it only loads and queries its own table
//! (`detente_bench_intents`), which it drops and recreates. Its SQL is built
//! from constants only; every value is bound.

use airspace::{Outline, Volume4D};
use node::StoreError;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

const TABLE: &str = "detente_bench_intents";
const ROWS_PER_INSERT: usize = 5_000;

/// One volume as loaded: id, volume index, WKT, circle radius (0 for a
/// polygon), start and end (s since the epoch), lower and upper altitude.
type Row = (String, i32, String, f64, f64, f64, f64, f64);

pub struct PostgisBaseline {
    pool: PgPool,
}

impl std::fmt::Debug for PostgisBaseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostgisBaseline")
    }
}

fn err(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| StoreError::Failed(format!("PostGIS baseline: {what}: {e}"))
}

/// The outline as WKT in (lng lat) order, closed; a circle as its centre
/// and radius (buffered on the geography by the query).
pub(crate) fn wkt(v: &Volume4D) -> (String, f64) {
    match &v.outline {
        Outline::Polygon { vertices } => {
            let mut pts: Vec<String> = vertices
                .iter()
                .map(|p| format!("{} {}", p.lng, p.lat))
                .collect();
            if let Some(first) = pts.first().cloned() {
                pts.push(first);
            }
            (format!("POLYGON(({}))", pts.join(",")), 0.0)
        }
        Outline::Circle { center, radius_m } => {
            (format!("POINT({} {})", center.lng, center.lat), *radius_m)
        }
    }
}

/// The shape expression for a `(wkt, radius)` pair bound at `$w`, `$r`.
fn shape(w: usize, r: usize) -> String {
    format!(
        "CASE WHEN ${r} > 0 THEN ST_Buffer(ST_GeomFromText(${w}, 4326)::geography, ${r})::geometry \
         ELSE ST_GeomFromText(${w}, 4326) END"
    )
}

/// The ids of the intents meeting a volume bound as `$1` (WKT), `$2`
/// (radius), `$3`/`$4` (start, end in s) and `$5`/`$6` (altitudes).
fn intersecting() -> String {
    format!(
        "SELECT DISTINCT id FROM {TABLE} WHERE ST_Intersects(area, {}) \
         AND during && tstzrange(to_timestamp($3), to_timestamp($4)) \
         AND alt && numrange($5::numeric, $6::numeric)",
        shape(1, 2)
    )
}

fn seconds(t: Option<airspace::Timestamp>, default: f64) -> f64 {
    t.map_or(default, |t| t.unix_micros() as f64 / 1e6)
}

impl PostgisBaseline {
    pub async fn connect(url: &str, connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(connections.max(1))
            .connect(url)
            .await
            .map_err(err("connecting"))?;
        sqlx::query("CREATE EXTENSION IF NOT EXISTS postgis")
            .execute(&pool)
            .await
            .map_err(err(
                "creating the postgis extension (is postgresql-15-postgis-3 installed?)",
            ))?;
        Ok(PostgisBaseline { pool })
    }

    /// Replaces the table's rows with these intents' volumes, then builds
    /// the index and the planner's statistics.
    pub async fn load(&self, intents: &[(Uuid, Vec<Volume4D>)]) -> Result<(), StoreError> {
        for q in [
            format!("DROP TABLE IF EXISTS {TABLE}"),
            format!(
                "CREATE TABLE {TABLE} (id uuid NOT NULL, volume int NOT NULL, \
                 area geometry(Geometry, 4326) NOT NULL, during tstzrange NOT NULL, alt numrange NOT NULL)"
            ),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(q.clone()))
                .execute(&self.pool)
                .await
                .map_err(err("creating the table"))?;
        }
        let rows: Vec<Row> = intents
            .iter()
            .flat_map(|(id, vs)| {
                vs.iter().enumerate().map(move |(i, v)| {
                    let (w, r) = wkt(v);
                    (
                        id.to_string(),
                        i as i32,
                        w,
                        r,
                        seconds(v.time_start, -1e12),
                        seconds(v.time_end, 1e12),
                        v.altitude_lower_m.unwrap_or(-1e6),
                        v.altitude_upper_m.unwrap_or(1e6),
                    )
                })
            })
            .collect();
        let insert = format!(
            "INSERT INTO {TABLE} (id, volume, area, during, alt) \
             SELECT u::uuid, v, {}, tstzrange(to_timestamp(s), to_timestamp(e)), numrange(lo::numeric, hi::numeric) \
             FROM UNNEST($1::text[], $2::int[], $3::text[], $4::float8[], $5::float8[], $6::float8[], $7::float8[], $8::float8[]) \
             AS x(u, v, w, r, s, e, lo, hi)",
            shape(3, 4).replace("$3", "w").replace("$4", "r")
        );
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            macro_rules! col {
                ($i:tt) => {
                    chunk.iter().map(|r| r.$i.clone()).collect::<Vec<_>>()
                };
            }
            sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
                .bind(col!(0))
                .bind(col!(1))
                .bind(col!(2))
                .bind(col!(3))
                .bind(col!(4))
                .bind(col!(5))
                .bind(col!(6))
                .bind(col!(7))
                .execute(&self.pool)
                .await
                .map_err(err("loading the intents"))?;
        }
        for q in [
            format!("CREATE INDEX ON {TABLE} USING gist (area, during, alt)"),
            format!("ANALYZE {TABLE}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(q.clone()))
                .execute(&self.pool)
                .await
                .map_err(err("indexing"))?;
        }
        Ok(())
    }

    /// The ids of the intents with a volume intersecting `area` in space,
    /// time and altitude.
    pub async fn query(&self, area: &Volume4D) -> Result<Vec<Uuid>, StoreError> {
        let (w, r) = wkt(area);
        let rows: Vec<(Uuid,)> = sqlx::query_as(sqlx::AssertSqlSafe(intersecting()))
            .bind(w)
            .bind(r)
            .bind(seconds(area.time_start, -1e12))
            .bind(seconds(area.time_end, 1e12))
            .bind(area.altitude_lower_m.unwrap_or(-1e6))
            .bind(area.altitude_upper_m.unwrap_or(1e6))
            .fetch_all(&self.pool)
            .await
            .map_err(err("querying"))?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Creates intent `id` with one volume the way a developer would by
    /// hand, key check included: one SERIALIZABLE transaction that reads
    /// the intents intersecting it (whose OVNs the caller would have to
    /// present) and inserts it, retried on serialization failures (which
    /// is what keeps two concurrent writers from both missing each other).
    /// Answers the number of intersecting intents it saw.
    pub async fn create(&self, id: Uuid, v: &Volume4D) -> Result<usize, StoreError> {
        let (w, r) = wkt(v);
        let check = intersecting();
        let insert = format!(
            "INSERT INTO {TABLE} (id, volume, area, during, alt) VALUES ($7::uuid, 0, {}, \
             tstzrange(to_timestamp($3), to_timestamp($4)), numrange($5::numeric, $6::numeric))",
            shape(1, 2)
        );
        let times = (seconds(v.time_start, -1e12), seconds(v.time_end, 1e12));
        let alts = (
            v.altitude_lower_m.unwrap_or(-1e6),
            v.altitude_upper_m.unwrap_or(1e6),
        );
        for _ in 0..20 {
            let attempt = async {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                    .execute(&mut *tx)
                    .await?;
                let seen: Vec<(Uuid,)> = sqlx::query_as(sqlx::AssertSqlSafe(check.clone()))
                    .bind(&w)
                    .bind(r)
                    .bind(times.0)
                    .bind(times.1)
                    .bind(alts.0)
                    .bind(alts.1)
                    .fetch_all(&mut *tx)
                    .await?;
                sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
                    .bind(&w)
                    .bind(r)
                    .bind(times.0)
                    .bind(times.1)
                    .bind(alts.0)
                    .bind(alts.1)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok::<usize, sqlx::Error>(seen.len())
            };
            match attempt.await {
                Ok(n) => return Ok(n),
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("40001") => continue,
                Err(e) => return Err(err("creating")(e)),
            }
        }
        Err(StoreError::Failed(
            "PostGIS baseline: creating: serialization failures 20 times".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airspace::{LatLng, Timestamp};

    use test_support::database_url;

    fn square(lat: f64, lng: f64, hours: (i64, i64), alt: (f64, f64)) -> Volume4D {
        Volume4D::square(
            LatLng { lat, lng },
            0.01,
            alt,
            (
                Timestamp::from_unix_micros(hours.0 * 3_600_000_000),
                Timestamp::from_unix_micros(hours.1 * 3_600_000_000),
            ),
        )
    }

    #[tokio::test]
    async fn the_baseline_finds_what_intersects_in_space_time_and_altitude() {
        let Some(url) =
            database_url("the_baseline_finds_what_intersects_in_space_time_and_altitude")
        else {
            return;
        };
        let b = PostgisBaseline::connect(&url, 2).await.unwrap();
        let (a, far, later, higher) = (
            Uuid::from_u128(1),
            Uuid::from_u128(2),
            Uuid::from_u128(3),
            Uuid::from_u128(4),
        );
        b.load(&[
            (a, vec![square(45.0, 10.0, (1, 2), (0.0, 500.0))]),
            (far, vec![square(47.0, 10.0, (1, 2), (0.0, 500.0))]),
            (later, vec![square(45.0, 10.0, (5, 6), (0.0, 500.0))]),
            (higher, vec![square(45.0, 10.0, (1, 2), (1000.0, 2000.0))]),
        ])
        .await
        .unwrap();
        let hits = b
            .query(&square(45.005, 10.005, (0, 3), (100.0, 200.0)))
            .await
            .unwrap();
        assert_eq!(hits, vec![a]);
        let circle = Volume4D {
            outline: Outline::Circle {
                center: LatLng {
                    lat: 47.0,
                    lng: 10.0,
                },
                radius_m: 300.0,
            },
            ..square(0.0, 0.0, (0, 3), (0.0, 100.0))
        };
        assert_eq!(b.query(&circle).await.unwrap(), vec![far]);
    }
}
