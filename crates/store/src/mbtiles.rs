//! A local raster basemap from an MBTiles file (MBTiles 1.3: an SQLite
//! database with `metadata(name, value)` and `tiles(zoom_level,
//! tile_column, tile_row, tile_data)`, rows numbered from the south, TMS
//! style). Opened read-only; vector tiles (`pbf`) are refused because the
//! console's map draws raster tiles only.

use node::{BoxFuture, StoreError, TileInfo, TileSource};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use std::collections::HashMap;
use std::path::Path;

pub struct Mbtiles {
    pool: SqlitePool,
    info: TileInfo,
}

impl std::fmt::Debug for Mbtiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mbtiles").field("info", &self.info).finish()
    }
}

fn err(path: &Path, what: &str) -> impl Fn(sqlx::Error) -> StoreError {
    let at = format!("{}: {what}", path.display());
    move |e| StoreError::Failed(format!("{at}: {e}"))
}

impl Mbtiles {
    pub async fn open(path: &Path) -> Result<Mbtiles, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Failed(format!(
                "{}: no such MBTiles file",
                path.display()
            )));
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .immutable(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(err(path, "opening"))?;
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT name, value FROM metadata")
            .fetch_all(&pool)
            .await
            .map_err(err(
                path,
                "reading the metadata table (is it an MBTiles file?)",
            ))?;
        let meta: HashMap<String, String> = rows.into_iter().collect();
        let format = meta
            .get("format")
            .map(|f| f.to_ascii_lowercase())
            .unwrap_or_else(|| "png".into());
        if !matches!(format.as_str(), "png" | "jpg" | "jpeg" | "webp") {
            return Err(StoreError::Failed(format!(
                "{}: tile format {format:?} is not a raster format (png, jpg or webp) the console can draw",
                path.display()
            )));
        }
        let (lo, hi): (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT MIN(zoom_level), MAX(zoom_level) FROM tiles")
                .fetch_one(&pool)
                .await
                .map_err(err(path, "reading the tiles table"))?;
        let zoom = |k: &str, fallback: Option<i64>| {
            meta.get(k)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .or(fallback)
                .unwrap_or(0)
                .clamp(0, 30) as u8
        };
        let info = TileInfo {
            name: meta.get("name").cloned().unwrap_or_default(),
            format,
            min_zoom: zoom("minzoom", lo),
            max_zoom: zoom("maxzoom", hi),
            attribution: meta.get("attribution").cloned().unwrap_or_default(),
        };
        Ok(Mbtiles { pool, info })
    }
}

impl TileSource for Mbtiles {
    fn info(&self) -> &TileInfo {
        &self.info
    }

    fn tile(&self, z: u8, x: u32, y: u32) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            let n = 1u64 << z.min(30);
            if u64::from(x) >= n || u64::from(y) >= n {
                return Ok(None);
            }
            let tms_row = n - 1 - u64::from(y);
            let row: Option<(Vec<u8>,)> = sqlx::query_as(
                "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
            )
            .bind(i64::from(z))
            .bind(i64::from(x))
            .bind(tms_row as i64)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::Failed(format!("reading a tile: {e}")))?;
            Ok(row.map(|r| r.0))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    async fn make(path: &Path, format: &str) {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
        for q in [
            "CREATE TABLE metadata (name TEXT, value TEXT)",
            "CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)",
        ] {
            sqlx::query(q).execute(&mut c).await.unwrap();
        }
        for (k, v) in [
            ("name", "test"),
            ("format", format),
            ("attribution", "© test"),
        ] {
            sqlx::query("INSERT INTO metadata VALUES (?, ?)")
                .bind(k)
                .bind(v)
                .execute(&mut c)
                .await
                .unwrap();
        }
        // Zoom 2: TMS row 0 is the southernmost, XYZ y = 3.
        sqlx::query("INSERT INTO tiles VALUES (2, 1, 0, x'01'), (3, 4, 7, x'02')")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    }

    #[tokio::test]
    async fn tiles_are_read_with_rows_flipped_from_tms_to_xyz() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.mbtiles");
        make(&path, "png").await;
        let m = Mbtiles::open(&path).await.unwrap();
        assert_eq!(
            m.info(),
            &TileInfo {
                name: "test".into(),
                format: "png".into(),
                min_zoom: 2,
                max_zoom: 3,
                attribution: "© test".into()
            }
        );
        assert_eq!(m.tile(2, 1, 3).await.unwrap(), Some(vec![1]));
        assert_eq!(m.tile(2, 1, 0).await.unwrap(), None, "TMS row 0 is XYZ y 3");
        assert_eq!(m.tile(3, 4, 0).await.unwrap(), Some(vec![2]));
        assert_eq!(m.tile(2, 9, 0).await.unwrap(), None, "outside the grid");
    }

    #[tokio::test]
    async fn vector_tiles_and_missing_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.mbtiles");
        make(&path, "pbf").await;
        let e = Mbtiles::open(&path).await.unwrap_err();
        assert!(e.message().contains("not a raster format"), "{e:?}");
        let e = Mbtiles::open(&dir.path().join("none.mbtiles"))
            .await
            .unwrap_err();
        assert!(e.message().contains("no such MBTiles file"), "{e:?}");
    }
}
