//! The embedded store's state snapshot: a clean close leaves one, and the
//! store writes one while it runs; the next open reads the airspace from it
//! and the rows changed since, instead of every row — exactly the state the
//! rows give, after a clean close or a crash; a snapshot that is not a base
//! of the database (older than the changes kept, cut short, damaged) is not
//! used, and nothing is lost. The
//! embedded store's alone: a PostgreSQL node keeps no snapshot (its
//! replicas share the database and each reads it at start).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use node::airspace::decide::ImplicitSubscription;
use node::airspace::{AirspaceState, LatLng, OperationalIntentState, Ovn, Timestamp, Volume4D};
use node::entries::LogSigner;
use node::tlog;
use node::{Caller, Dss, IntentRequest, RandomIds, Scope, Settings, Store, SystemClock};
use std::path::Path;
use std::sync::Arc;
use uuid::Uuid;

const FILE: &str = "airspace.snapshot";

fn caller(sub: &str) -> Caller {
    Caller {
        sub: sub.into(),
        scopes: vec![Scope::StrategicCoordination],
    }
}

fn square(lat: f64, lng: f64, now: Timestamp) -> Volume4D {
    Volume4D::square(
        LatLng { lat, lng },
        0.01,
        (0.0, 300.0),
        (now, now.plus_seconds(3600)),
    )
}

fn request(v: Volume4D, key: Vec<Ovn>) -> IntentRequest {
    IntentRequest {
        extents: vec![v],
        key,
        state: OperationalIntentState::Accepted,
        uss_base_url: "https://uss.example".into(),
        subscription_id: None,
        new_subscription: Some(ImplicitSubscription {
            uss_base_url: "https://uss.example".into(),
            notify_for_constraints: true,
        }),
        requested_ovn_suffix: None,
    }
}

fn log_signer() -> LogSigner {
    LogSigner {
        previous: None,
        signer: tlog::NoteSigner::from_seed("detente.test/snapshot", &[6; 32]).unwrap(),
        clock: Arc::new(SystemClock),
        member: None,
    }
}

/// The embedded store of `dir`, and a DSS over it.
async fn open(dir: &Path) -> (Arc<store::SqliteStore>, Dss) {
    let s = Arc::new(store::open_sqlite(dir, log_signer()).await.unwrap());
    let d = Dss::new(
        s.clone() as Arc<dyn Store>,
        Arc::new(SystemClock),
        Arc::new(RandomIds),
        Settings::default(),
    );
    (s, d)
}

/// Everything a reader of the airspace sees, in a stable order.
fn everything(s: &AirspaceState) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        s.intents().collect::<Vec<_>>(),
        s.constraints().collect::<Vec<_>>(),
        s.subscriptions().collect::<Vec<_>>(),
        s.conflicts().collect::<Vec<_>>(),
        (s.counts(), s.seq()),
    )
}

/// Rows in a table of the database of `dir`.
async fn rows(dir: &Path, table: &str) -> i64 {
    use sqlx::Connection;
    let url = format!("sqlite://{}", dir.join("detente.db").display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let n = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    n
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Writes intents (each with its implicit subscription), some of them
/// conflicting, a constraint, an explicit subscription with a circle, then
/// updates and removes some: rowids with gaps, every kind of record.
async fn populate(d: &Dss, n: u128) -> Vec<Uuid> {
    let now = d.now();
    let mut ids = Vec::new();
    for k in 0..n {
        let id = Uuid::from_u128(0x5eed_0000 + k);
        // Pairs of intents overlap, each of another party: the second of
        // each pair presents the first's key, and the two conflict.
        let pair = k / 2;
        let (lat, lng) = (
            40.0 + (pair / 150) as f64 * 0.1,
            20.0 + (pair % 150) as f64 * 0.1 + (k % 2) as f64 * 0.01,
        );
        let key = match k % 2 {
            1 => vec![d.get_intent(ids[k as usize - 1]).await.unwrap().ovn],
            _ => vec![],
        };
        let manager = caller(["alliance", "federation"][k as usize % 2]);
        d.put_intent(&manager, id, None, request(square(lat, lng, now), key))
            .await
            .unwrap();
        ids.push(id);
    }
    d.put_constraint(
        &caller("authority"),
        Uuid::from_u128(0xc0),
        None,
        vec![square(40.0, 20.0, now)],
        "https://authority.example".into(),
    )
    .await
    .unwrap();
    d.put_subscription(
        &caller("watcher"),
        Uuid::from_u128(0x5b),
        None,
        node::SubscriptionRequest {
            extents: Volume4D {
                outline: node::airspace::Outline::Circle {
                    center: LatLng {
                        lat: 40.0,
                        lng: 20.0,
                    },
                    radius_m: 2500.0,
                },
                altitude_lower_m: Some(0.0),
                altitude_upper_m: Some(500.0),
                time_start: Some(now),
                time_end: Some(now.plus_seconds(7200)),
            },
            uss_base_url: "https://watcher.example".into(),
            notify_for_operational_intents: true,
            notify_for_constraints: true,
        },
    )
    .await
    .unwrap();
    // One removed, one moved to a new version.
    let gone = d.get_intent(ids[3]).await.unwrap();
    d.delete_intent(&caller("federation"), gone.id, gone.ovn)
        .await
        .unwrap();
    let moved = d.get_intent(ids[4]).await.unwrap();
    let neighbour = d.get_intent(ids[5]).await.unwrap();
    d.put_intent(
        &caller("alliance"),
        moved.id,
        Some(moved.ovn),
        request(square(40.0, 20.205, now), vec![neighbour.ovn]),
    )
    .await
    .unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_close_leaves_a_snapshot_the_next_open_reads_as_the_rows_would() {
    let root = tempfile::tempdir().unwrap();
    let (dir, rows_dir) = (root.path().join("a"), root.path().join("b"));
    // More records than a snapshot block holds (4,096), so that blocks
    // decode on both cores.
    let ids = {
        let (s, d) = open(&dir).await;
        assert!(
            !s.backend.loaded_from_snapshot(),
            "a new store has no snapshot"
        );
        let ids = populate(&d, 4_500).await;
        d.close().await;
        ids
    };
    assert!(dir.join(FILE).is_file(), "a clean close leaves a snapshot");
    // The same database without the snapshot: what the rows give.
    copy_dir(&dir, &rows_dir);
    std::fs::remove_file(rows_dir.join(FILE)).unwrap();

    let (s, d) = open(&dir).await;
    assert!(s.backend.loaded_from_snapshot());
    assert_eq!(s.backend.rows_laid_over_snapshot(), 0);
    assert!(
        dir.join(FILE).exists(),
        "a snapshot stays: the base the changes after it are laid over"
    );
    let (rs, rd) = open(&rows_dir).await;
    assert!(!rs.backend.loaded_from_snapshot());
    let from_snapshot = d.view(everything).unwrap();
    assert_eq!(from_snapshot, rd.view(everything).unwrap());
    let counts = d.counts().unwrap();
    assert_eq!((counts.intents, counts.constraints), (4_499, 1));
    assert_eq!(counts.subscriptions, 4_500, "4,499 implicit, one explicit");
    assert!(counts.conflicts >= 2_000, "{counts:?}");
    drop((rs, rd));

    // Each record's rowid came back with it: an update replaces its row, a
    // removal removes it, a new record gets a rowid of its own.
    let now = d.now();
    let first = d.get_intent(ids[0]).await.unwrap();
    let second = d.get_intent(ids[1]).await.unwrap();
    d.put_intent(
        &caller("alliance"),
        first.id,
        Some(first.ovn),
        request(
            square(40.0, 20.0, now),
            vec![
                second.ovn.clone(),
                d.get_constraint(Uuid::from_u128(0xc0)).await.unwrap().ovn,
            ],
        ),
    )
    .await
    .unwrap();
    d.delete_intent(&caller("federation"), second.id, second.ovn)
        .await
        .unwrap();
    d.put_intent(
        &caller("alliance"),
        Uuid::from_u128(0xfeed),
        None,
        request(square(10.0, 10.0, now), vec![]),
    )
    .await
    .unwrap();
    let after = d.view(everything).unwrap();
    d.close().await;
    drop((s, d));
    // Read back from the rows alone: the same state, one row a record.
    std::fs::remove_file(dir.join(FILE)).unwrap();
    let (s, d) = open(&dir).await;
    assert!(!s.backend.loaded_from_snapshot());
    assert_eq!(d.view(everything).unwrap(), after);
    let counts = d.counts().unwrap();
    assert_eq!(counts.intents, 4_499);
    assert_eq!(rows(&dir, "intents").await, 4_499);
    assert_eq!(
        rows(&dir, "subscriptions").await,
        counts.subscriptions as i64
    );
    assert_eq!(d.get_intent(ids[0]).await.unwrap().version, 2);
}

/// Opens `dir` with `snapshot` in place of whatever snapshot is there:
/// whether it was used, and the state.
async fn open_with(dir: &Path, snapshot: &[u8]) -> (bool, String) {
    std::fs::write(dir.join(FILE), snapshot).unwrap();
    let (s, d) = open(dir).await;
    let used = s.backend.loaded_from_snapshot();
    assert_eq!(
        dir.join(FILE).exists(),
        used,
        "a snapshot not used is removed"
    );
    let state = d.view(everything).unwrap();
    d.close().await;
    (used, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_not_of_the_database_as_it_is_is_not_used_and_nothing_is_lost() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("node");
    {
        let (_, d) = open(&dir).await;
        populate(&d, 40).await;
        d.close().await;
    }
    let good = std::fs::read(dir.join(FILE)).unwrap();
    let (used, before) = open_with(&dir, &good).await;
    assert!(used, "the snapshot the close left is used");
    let rows_state = {
        let (s, d) = open(&dir).await;
        assert!(
            s.backend.loaded_from_snapshot(),
            "each clean close leaves one"
        );
        let state = d.view(everything).unwrap();
        d.close().await;
        state
    };
    assert_eq!(rows_state, before);

    // Cut short anywhere, or any one byte changed: not used, and the
    // state is whole (read from the rows).
    let mut cuts = vec![0, 10, good.len() / 2, good.len() - 1];
    cuts.extend((good.len() - 60..good.len()).step_by(7));
    for cut in cuts {
        let (used, state) = open_with(&dir, &good[..cut]).await;
        assert!(!used, "a snapshot cut to {cut} bytes was used");
        assert_eq!(state, before);
    }
    for at in (0..good.len()).step_by(good.len() / 24) {
        let mut damaged = good.clone();
        damaged[at] ^= 0x20;
        let (used, state) = open_with(&dir, &damaged).await;
        assert!(!used, "a snapshot with byte {at} changed was used");
        assert_eq!(state, before);
    }

    // Stale: a write after the snapshot was taken, and a clean close that
    // wrote a newer one and dropped the changes noted before it.
    {
        let (_, d) = open(&dir).await;
        let now = d.now();
        d.put_intent(
            &caller("alliance"),
            Uuid::from_u128(0xa11),
            None,
            request(square(-10.0, -10.0, now), vec![]),
        )
        .await
        .unwrap();
        d.close().await;
    }
    let (used, state) = open_with(&dir, &good).await;
    assert!(!used, "a snapshot older than the changes kept was used");
    assert!(state.contains("00000000-0000-0000-0000-000000000a11"));
    assert_ne!(state, before);

    // What a crash in the middle of writing one leaves is removed at the
    // next open, and the rows are read.
    std::fs::remove_file(dir.join(FILE)).unwrap();
    std::fs::write(dir.join("airspace.snapshot.tmp"), &good[..good.len() / 3]).unwrap();
    let (s, d) = open(&dir).await;
    assert!(!s.backend.loaded_from_snapshot());
    assert!(!dir.join("airspace.snapshot.tmp").exists());
    assert_eq!(d.view(everything).unwrap(), state);
    d.close().await;
}

/// Moves Alliance's intent `id` to a square at (lat, lng): a new version
/// at the same rowid.
async fn update(d: &Dss, id: Uuid, lat: f64, lng: f64) {
    let old = d.get_intent(id).await.unwrap();
    d.put_intent(
        &caller("alliance"),
        old.id,
        Some(old.ovn),
        request(square(lat, lng, d.now()), vec![]),
    )
    .await
    .unwrap();
}

/// Changes a running store: an intent updated (a new version at the same
/// rowid), one removed, one created.
async fn change(d: &Dss, ids: &[Uuid], k: usize, new: u128) {
    let now = d.now();
    let second = d.get_intent(ids[k + 1]).await.unwrap();
    update(d, ids[k], -41.0, -21.0 - k as f64 * 0.1).await;
    d.delete_intent(&caller("federation"), second.id, second.ovn)
        .await
        .unwrap();
    d.put_intent(
        &caller("alliance"),
        Uuid::from_u128(new),
        None,
        request(square(-10.0, -10.0 - k as f64 * 0.1, now), vec![]),
    )
    .await
    .unwrap();
}

/// The data folder as a crash of the running store would leave it: its
/// files copied while nothing is being written (SQLite's WAL holds every
/// commit; what a checkpoint did not copy yet is read from it).
fn crash_copy(dir: &Path, to: &Path) {
    copy_dir(dir, to);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_snapshot_written_while_running_and_the_rows_changed_since_give_the_state()
 {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("node");
    let (s, d) = open(&dir).await;
    let ids = populate(&d, 4_500).await;
    // Written from every row (none before) — unless the store, past
    // 4,096 changes, already wrote one by itself: then laid over it.
    assert!(s.backend.write_snapshot().await.unwrap());
    assert!(dir.join(FILE).is_file());
    change(&d, &ids, 10, 0xc1).await;
    let live = d.view(everything).unwrap();

    // A crash now: the snapshot, and the six rows changed since.
    let crashed = root.path().join("crashed");
    crash_copy(&dir, &crashed);
    let rows_only = root.path().join("rows");
    crash_copy(&dir, &rows_only);
    std::fs::remove_file(rows_only.join(FILE)).unwrap();
    {
        let (cs, cd) = open(&crashed).await;
        assert!(cs.backend.loaded_from_snapshot());
        // The intent updated, the one removed and the one created, each
        // with its implicit subscription (the removed one's went with it).
        assert!(
            (5..=6).contains(&cs.backend.rows_laid_over_snapshot()),
            "{}",
            cs.backend.rows_laid_over_snapshot()
        );
        assert_eq!(cd.view(everything).unwrap(), live);
        let (rs, rd) = open(&rows_only).await;
        assert!(!rs.backend.loaded_from_snapshot());
        assert_eq!(rd.view(everything).unwrap(), live);
        rd.close().await;
        drop(rs);
        // The rowids came back with the records: later writes land on
        // the right rows (read back from the rows alone below).
        change(&cd, &ids, 20, 0xc2).await;
        let after = cd.view(everything).unwrap();
        cd.close().await;
        drop(cs);
        std::fs::remove_file(crashed.join(FILE)).unwrap();
        let (cs, cd) = open(&crashed).await;
        assert!(!cs.backend.loaded_from_snapshot());
        assert_eq!(cd.view(everything).unwrap(), after);
        assert_eq!(
            rows(&crashed, "intents").await,
            cd.counts().unwrap().intents as i64
        );
        cd.close().await;
    }

    // The next snapshot is laid over this one: the changes since go, at the
    // writer's next batch.
    assert!(s.backend.write_snapshot().await.unwrap());
    change(&d, &ids, 30, 0xc3).await;
    // The noted rows it holds go, the oldest 512 a batch: how many are
    // left from before depends on when the store wrote snapshots by
    // itself, so batches that change none of its tables follow until they
    // are gone (at most 64: far more than populating noted). Only the
    // last three batches' rows are left then (the update, the removal and
    // the create, each an intent and its subscription).
    let mut kept = rows(&dir, "snapshot_changes").await;
    for i in 0..64 {
        if kept <= 8 {
            break;
        }
        d.set_availability(
            format!("uss-{i}"),
            String::new(),
            node::airspace::UssAvailabilityState::Normal,
        )
        .await
        .unwrap();
        kept = rows(&dir, "snapshot_changes").await;
    }
    assert!(
        (6..=8).contains(&kept),
        "the changes the snapshot holds were dropped: {kept} kept"
    );
    let live = d.view(everything).unwrap();
    let crashed = root.path().join("crashed-again");
    crash_copy(&dir, &crashed);
    {
        let (cs, cd) = open(&crashed).await;
        assert!(cs.backend.loaded_from_snapshot());
        assert!((5..=6).contains(&cs.backend.rows_laid_over_snapshot()));
        assert_eq!(cd.view(everything).unwrap(), live);
        cd.close().await;
    }

    // A snapshot on disk that is no base (damaged here) is not laid over:
    // the next one is written from the rows.
    let mut damaged = std::fs::read(dir.join(FILE)).unwrap();
    let at = damaged.len() / 2;
    damaged[at] ^= 0x20;
    std::fs::write(dir.join(FILE), &damaged).unwrap();
    change(&d, &ids, 40, 0xc4).await;
    assert!(s.backend.write_snapshot().await.unwrap());
    let live = d.view(everything).unwrap();
    let crashed = root.path().join("crashed-third");
    crash_copy(&dir, &crashed);
    {
        let (cs, cd) = open(&crashed).await;
        assert!(cs.backend.loaded_from_snapshot());
        assert_eq!(cs.backend.rows_laid_over_snapshot(), 0);
        assert_eq!(cd.view(everything).unwrap(), live);
        cd.close().await;
    }
    d.close().await;
    assert!(
        !s.backend.write_snapshot().await.unwrap(),
        "nothing is written after the close"
    );
}

/// The segment files of the snapshot's changes in `dir`, by name.
fn segments(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("airspace.changes.") && !n.ends_with(".tmp"))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_segments_of_the_changes_are_laid_and_only_the_rows_after_them_read() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("node");
    let (s, d) = open(&dir).await;
    let ids = populate(&d, 4_500).await;
    assert!(s.backend.write_snapshot().await.unwrap());
    assert!(
        !s.backend.write_changes().await.unwrap(),
        "nothing changed since the snapshot: no segment"
    );
    // Those the store wrote by itself while populating came before.
    let written_before = s.backend.change_segments_written();
    change(&d, &ids, 10, 0xd1).await;
    assert!(s.backend.write_changes().await.unwrap());
    assert_eq!(segments(&dir).len(), 1);
    change(&d, &ids, 20, 0xd2).await;
    let live = d.view(everything).unwrap();

    // A crash now: the snapshot, the segment's six rows (or five), and the
    // rows changed after it read as rows.
    let crashed = root.path().join("crashed");
    crash_copy(&dir, &crashed);
    {
        let (cs, cd) = open(&crashed).await;
        assert!(cs.backend.loaded_from_snapshot());
        assert_eq!(cs.backend.change_segments_read(), 1);
        let beside = cs.backend.rows_read_beside_snapshot();
        assert!((5..=6).contains(&beside), "{beside} rows read beside");
        let laid = cs.backend.rows_laid_over_snapshot();
        assert!((10..=12).contains(&laid), "{laid} rows laid");
        assert_eq!(cd.view(everything).unwrap(), live);
        cd.close().await;
    }

    // A second segment continues the first; a row changed in two is taken
    // as the later holds it (the intent updated in the first is updated
    // again in the third).
    assert!(s.backend.write_changes().await.unwrap());
    change(&d, &ids, 8, 0xd3).await;
    update(&d, ids[10], -42.0, -22.0).await;
    assert!(s.backend.write_changes().await.unwrap());
    assert_eq!(segments(&dir).len(), 3);
    assert_eq!(s.backend.change_segments_written() - written_before, 3);
    let live = d.view(everything).unwrap();
    let crashed = root.path().join("crashed-again");
    crash_copy(&dir, &crashed);
    let damaged = root.path().join("damaged");
    crash_copy(&dir, &damaged);
    {
        let (cs, cd) = open(&crashed).await;
        assert_eq!(cs.backend.change_segments_read(), 3);
        assert_eq!(cs.backend.rows_read_beside_snapshot(), 0);
        assert_eq!(cd.view(everything).unwrap(), live);
        cd.close().await;
    }

    // The second segment damaged: the first is laid, the rows changed
    // after it are read as rows, and the segments from the damaged one
    // on are removed; the state is the same.
    let second = damaged.join(&segments(&damaged)[1]);
    let mut bytes = std::fs::read(&second).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x08;
    std::fs::write(&second, bytes).unwrap();
    {
        let (cs, cd) = open(&damaged).await;
        assert!(cs.backend.loaded_from_snapshot());
        assert_eq!(cs.backend.change_segments_read(), 1);
        assert!(cs.backend.rows_read_beside_snapshot() >= 5);
        assert_eq!(cd.view(everything).unwrap(), live);
        assert_eq!(segments(&damaged).len(), 1);
        // The next segment continues the one left.
        change(&cd, &ids, 30, 0xd4).await;
        assert!(cs.backend.write_changes().await.unwrap());
        assert_eq!(segments(&damaged).len(), 2);
        let after = cd.view(everything).unwrap();
        let again = root.path().join("damaged-crashed");
        crash_copy(&damaged, &again);
        cd.close().await;
        let (cs, cd) = open(&again).await;
        assert_eq!(cs.backend.change_segments_read(), 2);
        assert_eq!(cd.view(everything).unwrap(), after);
        cd.close().await;
    }

    // The next snapshot lays the segments in; they go with it.
    assert!(s.backend.write_snapshot().await.unwrap());
    assert!(segments(&dir).is_empty());
    change(&d, &ids, 40, 0xd5).await;
    assert!(s.backend.write_changes().await.unwrap());
    let live = d.view(everything).unwrap();
    let crashed = root.path().join("crashed-third");
    crash_copy(&dir, &crashed);
    {
        let (cs, cd) = open(&crashed).await;
        assert_eq!(cs.backend.change_segments_read(), 1);
        assert_eq!(cd.view(everything).unwrap(), live);
        cd.close().await;
        // Read from the rows alone, the same.
        std::fs::remove_file(crashed.join(FILE)).unwrap();
        let (cs, cd) = open(&crashed).await;
        assert!(!cs.backend.loaded_from_snapshot());
        assert!(segments(&crashed).is_empty(), "no snapshot: its changes go");
        assert_eq!(cd.view(everything).unwrap(), live);
        cd.close().await;
    }
    // The clean close writes the snapshot whole: no segment is left.
    d.close().await;
    assert!(segments(&dir).is_empty());
    assert!(!s.backend.write_changes().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_opened_while_the_last_one_still_closes_waits_for_it_and_reads_everything() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("node");
    let (s, d) = open(&dir).await;
    let ids = populate(&d, 300).await;
    // A snapshot written while running, then changes after it: the close
    // writes the next snapshot and drops the changes noted, which an open
    // beside it would read half-way (the older snapshot, its changes gone).
    assert!(s.backend.write_snapshot().await.unwrap());
    change(&d, &ids, 10, 0xe1).await;
    change(&d, &ids, 20, 0xe2).await;
    let live = d.view(everything).unwrap();

    let next = tokio::spawn({
        let dir = dir.clone();
        async move { open(&dir).await }
    });
    // However long it is given, the second open cannot finish while the
    // first store holds the folder.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!next.is_finished(), "a second store opened the folder");
    // The close is asked for without waiting for it, as a drop does.
    let closing = tokio::spawn(async move { d.close().await });
    let (ns, nd) = next.await.unwrap();
    assert!(ns.backend.loaded_from_snapshot());
    assert_eq!(ns.backend.rows_laid_over_snapshot(), 0);
    assert_eq!(nd.view(everything).unwrap(), live);
    closing.await.unwrap();
    drop(s);
    nd.close().await;
}
