//! Both stores (embedded, and PostgreSQL when DATABASE_URL is set) through the node's use cases: durability across
//! reopen, serialised key checks under concurrency.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use node::airspace::decide::ImplicitSubscription;
use node::airspace::{LatLng, OperationalIntentState, Timestamp, Volume4D};
use node::entries::LogSigner;
use node::tlog;
use node::{
    Caller, Dss, IntentRequest, Log, NodeError, RandomIds, Scope, Settings, Store, SystemClock,
};
use std::sync::Arc;
use test_support::both_backends;
use uuid::Uuid;

fn caller(sub: &str) -> Caller {
    Caller {
        sub: sub.into(),
        scopes: vec![Scope::StrategicCoordination],
    }
}

fn square(lat: f64, lng: f64, h: f64, now: Timestamp) -> Volume4D {
    Volume4D::square(
        LatLng { lat, lng },
        h,
        (0.0, 300.0),
        (now, now.plus_seconds(3600)),
    )
}

fn request(v: Volume4D, key: Vec<node::airspace::Ovn>) -> IntentRequest {
    IntentRequest {
        extents: vec![v],
        key,
        state: OperationalIntentState::Accepted,
        uss_base_url: "https://uss.example".into(),
        subscription_id: None,
        new_subscription: Some(ImplicitSubscription {
            uss_base_url: "https://uss.example".into(),
            notify_for_constraints: false,
        }),
        requested_ovn_suffix: None,
    }
}

/// A request for `v` under the existing subscription `sub`, keyless.
fn under(sub: Option<Uuid>, v: Volume4D) -> IntentRequest {
    IntentRequest {
        subscription_id: sub,
        new_subscription: None,
        ..request(v, vec![])
    }
}

fn log_signer() -> LogSigner {
    LogSigner {
        previous: None,
        signer: tlog::NoteSigner::from_seed("detente.test/store", &[5; 32]).unwrap(),
        clock: Arc::new(SystemClock),
        member: None,
    }
}

/// The store of folder `dir` on this test's backend (the embedded one, or
/// PostgreSQL in a schema named after the folder).
async fn open(dir: &std::path::Path) -> Arc<dyn Store> {
    if let Some(url) = test_support::postgres_url() {
        let at = store::Location::new(&url, &test_support::schema_for(dir)).unwrap();
        return Arc::new(
            store::open_postgres(&at, log_signer())
                .await
                .expect("open store"),
        );
    }
    Arc::new(
        store::open_sqlite(dir, log_signer())
            .await
            .expect("open store"),
    )
}

/// The store of folder `dir` keeping a single full tile of its log in
/// memory: every other tile a root or proof needs comes from the database.
async fn open_with_one_tile(dir: &std::path::Path) -> Arc<dyn Store> {
    if let Some(url) = test_support::postgres_url() {
        let at = store::Location::new(&url, &test_support::schema_for(dir)).unwrap();
        let s = store::open_postgres(&at, log_signer())
            .await
            .expect("open store");
        s.set_tile_cache(1);
        return Arc::new(s);
    }
    let s = store::open_sqlite(dir, log_signer())
        .await
        .expect("open store");
    s.set_tile_cache(1);
    Arc::new(s)
}

/// Runs one SQL statement on the database of folder `dir`.
async fn sql(dir: &std::path::Path, statement: &str) {
    use sqlx::Connection;
    if let Some(url) = test_support::postgres_url() {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        let schema = test_support::schema_for(dir);
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SET search_path = {schema}; {statement}"
        )))
        .execute(&mut c)
        .await
        .unwrap();
        c.close().await.unwrap();
    } else {
        let url = format!("sqlite://{}", dir.join("detente.db").display());
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    }
}

/// The line's decision registering duty officer `m` (key from seed `[m; 32]`).
fn register(m: u8) -> node::line::LineWrite {
    node::line::LineWrite::RegisterMember(liaison::Member {
        key: liaison::MemberSigner::from_seed(&[m; 32]).key(),
        name: format!("member {m}"),
        role: "duty officer".into(),
        spheres: vec![liaison::Sphere::DirectLine],
    })
}

/// Subscribes "watcher" (at https://watcher.example) to operational
/// intents in `extents`.
async fn watch(d: &Dss, sub: Uuid, extents: Volume4D) {
    d.put_subscription(
        &caller("watcher"),
        sub,
        None,
        node::SubscriptionRequest {
            extents,
            uss_base_url: "https://watcher.example".into(),
            notify_for_operational_intents: true,
            notify_for_constraints: false,
        },
    )
    .await
    .unwrap();
}

async fn dss(dir: &std::path::Path) -> Dss {
    dss_over(open(dir).await)
}

fn dss_over(store: Arc<dyn Store>) -> Dss {
    Dss::new(
        store,
        Arc::new(SystemClock),
        Arc::new(RandomIds),
        Settings::default(),
    )
}

both_backends! {
#[tokio::test]
async fn acknowledged_writes_survive_reopening_with_index_and_conflicts_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let (a_id, b_id) = (Uuid::from_u128(1), Uuid::from_u128(2));
    {
        let d = dss(dir.path()).await;
        let now = d.now();
        let (a, _) = d
            .put_intent(
                &caller("alliance"),
                a_id,
                None,
                request(square(50.0, 30.0, 0.01, now), vec![]),
            )
            .await
            .unwrap();
        d.put_intent(
            &caller("federation"),
            b_id,
            None,
            request(square(50.0, 30.01, 0.01, now), vec![a.ovn]),
        )
        .await
        .unwrap();
        assert_eq!(d.conflicts().await.unwrap().len(), 1);
        // A USS's name comes from a URL and may be any text, control
        // characters and quotes included.
        d.set_availability(
            "uss\u{1f}\u{1e}\"x'".into(),
            String::new(),
            node::airspace::UssAvailabilityState::Down,
        )
        .await
        .unwrap();
    }
    let d = dss(dir.path()).await;
    let now = d.now();
    assert_eq!(d.get_intent(a_id).await.unwrap().version, 1);
    assert_eq!(
        d.query_intents(Some(square(50.0, 30.005, 0.001, now))).await
            .unwrap()
            .len(),
        2
    );
    let conflicts = d.conflicts().await.unwrap();
    assert_eq!(conflicts.len(), 1, "conflicts are rebuilt from the rows");
    assert_eq!((conflicts[0].a.id, conflicts[0].b.id), (a_id, b_id));
    assert_eq!(d.counts().unwrap().subscriptions, 2);
    assert_eq!(
        d.get_availability("uss\u{1f}\u{1e}\"x'").unwrap().availability,
        node::airspace::UssAvailabilityState::Down
    );
}
}

both_backends! {
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_of_many_read_pages_reopens_whole_and_in_place() {
    // More rows than the loader decodes at once (512 a page, 8 pages in
    // flight), and not a whole number of pages.
    const N: u128 = 4_700;
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<Uuid> = (1..=N).map(Uuid::from_u128).collect();
    let written = {
        let d = Arc::new(dss(dir.path()).await);
        let now = d.now();
        let writers = (0..16u128).map(|w| {
            let (d, ids) = (d.clone(), ids.clone());
            tokio::spawn(async move {
                let mut written = Vec::new();
                for (k, id) in ids.iter().enumerate().filter(|(k, _)| *k as u128 % 16 == w) {
                    let v = square(-60.0 + (k / 100) as f64 * 0.1, (k % 100) as f64 * 0.1, 0.01, now);
                    let (i, _) = d
                        .put_intent(&caller("alliance"), *id, None, request(v, vec![]))
                        .await
                        .unwrap();
                    written.push(i);
                }
                written
            })
        });
        join_all(writers).await.concat()
    };
    let d = dss(dir.path()).await;
    let now = d.now();
    assert_eq!(d.counts().unwrap().intents, N as usize);
    assert_eq!(d.counts().unwrap().subscriptions, N as usize);
    for w in written.iter().step_by(97) {
        assert_eq!(&d.get_intent(w.id).await.unwrap(), w, "intent {}", w.id);
    }
    // Each record's row is known again: changing one replaces its row (a
    // row id lost at load would add a second row, and a third reopening
    // would find it twice or not at all).
    let last = *ids.last().unwrap();
    let old = d.get_intent(last).await.unwrap();
    d.put_intent(
        &caller("alliance"),
        last,
        Some(old.ovn.clone()),
        request(square(70.0, 70.0, 0.01, now), vec![]),
    )
    .await
    .unwrap();
    drop(d);
    let d = dss(dir.path()).await;
    assert_eq!(d.counts().unwrap().intents, N as usize);
    assert_eq!(d.get_intent(last).await.unwrap().version, 2);
    assert_eq!(
        d.query_intents(Some(square(70.0, 70.0, 0.001, now))).await.unwrap().len(),
        1
    );
}
}

both_backends! {
/// Subscriptions reopen with the extents they were written with, and are
/// found where those extents are: an implicit one covering exactly its
/// intent, one grown to cover two intents, one that followed its intent
/// when it moved, and an explicit one.
#[tokio::test]
async fn subscriptions_reopen_with_the_extents_they_were_written_with() {
    let dir = tempfile::tempdir().unwrap();
    let u = caller("alliance");
    let (a, b, c, s) = (
        Uuid::from_u128(1),
        Uuid::from_u128(2),
        Uuid::from_u128(3),
        Uuid::from_u128(4),
    );
    let (written, now) = {
        let d = dss(dir.path()).await;
        let now = d.now();
        let (ia, _) = d
            .put_intent(&u, a, None, request(square(10.0, 10.0, 0.01, now), vec![]))
            .await
            .unwrap();
        // B joins A's implicit subscription, which grows to cover both.
        let rb = under(ia.subscription_id, square(10.0, 10.05, 0.01, now));
        d.put_intent(&u, b, None, rb).await.unwrap();
        // C moves; its implicit subscription follows it.
        let (ic, _) = d
            .put_intent(&u, c, None, request(square(20.0, 20.0, 0.01, now), vec![]))
            .await
            .unwrap();
        let rc = under(ic.subscription_id, square(21.0, 21.0, 0.01, now));
        d.put_intent(&u, c, Some(ic.ovn.clone()), rc).await.unwrap();
        d.put_subscription(
            &u,
            s,
            None,
            node::SubscriptionRequest {
                extents: square(30.0, 30.0, 0.01, now),
                uss_base_url: "https://uss.example".into(),
                notify_for_operational_intents: true,
                notify_for_constraints: true,
            },
        )
        .await
        .unwrap();
        let mut written = Vec::new();
        for id in [ia.subscription_id.unwrap(), ic.subscription_id.unwrap(), s] {
            written.push(d.get_subscription(&u, id).await.unwrap());
        }
        assert_eq!(written[0].0.extents.len(), 2, "A's subscription covers A and B");
        assert_eq!(written[0].1.len(), 2);
        (written, now)
    };
    let d = dss(dir.path()).await;
    for (sub, dependents) in &written {
        let (got, got_dependents) = d.get_subscription(&u, sub.id).await.unwrap();
        assert_eq!(&got, sub, "subscription {}", sub.id);
        assert_eq!(&got_dependents, dependents);
    }
    for (at, sub) in [((10.0, 10.05), 0), ((21.0, 21.0), 1), ((30.0, 30.0), 2)] {
        let found = d
            .query_subscriptions(&u, Some(square(at.0, at.1, 0.001, now)))
            .await
            .unwrap();
        assert_eq!(
            found.iter().map(|(f, _)| f.id).collect::<Vec<_>>(),
            vec![written[sub].0.id],
            "found at {at:?}"
        );
    }
    assert!(
        d.query_subscriptions(&u, Some(square(20.0, 20.0, 0.001, now)))
            .await
            .unwrap()
            .is_empty(),
        "C's subscription left where C was"
    );
}
}

both_backends! {
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_on_intersecting_intents_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let d = Arc::new(dss(dir.path()).await);
    let now = d.now();
    for round in 0..20u128 {
        let mut tasks = Vec::new();
        for w in 0..8u128 {
            let d = d.clone();
            let v = square(10.0 + round as f64, 10.0, 0.01, now);
            tasks.push(tokio::spawn(async move {
                d.put_intent(
                    &caller(&format!("uss{w}")),
                    Uuid::from_u128(round * 100 + w + 1),
                    None,
                    request(v, vec![]),
                )
                .await
            }));
        }
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => won += 1,
                Err(NodeError::Domain(node::airspace::DomainError::KeyCheckFailed {
                    missing_operational_intents,
                    ..
                })) => {
                    assert_eq!(missing_operational_intents.len(), 1)
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(
            won, 1,
            "round {round}: exactly one writer may pass the key check"
        );
    }
}
}

both_backends! {
#[tokio::test]
async fn every_committed_event_has_its_signed_entry_and_the_log_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (root_before, size_before) = {
        let store = open(dir.path()).await;
        let d = Dss::new(
            store.clone(),
            Arc::new(SystemClock),
            Arc::new(RandomIds),
            Settings::default(),
        );
        let now = d.now();
        let (a, _) = d
            .put_intent(
                &caller("alliance"),
                Uuid::from_u128(1),
                None,
                request(square(50.0, 30.0, 0.01, now), vec![]),
            )
            .await
            .unwrap();
        // A refused write adds nothing to the log.
        let size_after_one = store.log_size();
        assert!(
            d.put_intent(
                &caller("federation"),
                Uuid::from_u128(2),
                None,
                request(square(50.0, 30.0, 0.01, now), vec![])
            )
            .await
            .is_err()
        );
        assert_eq!(store.log_size(), size_after_one);
        d.delete_intent(&caller("alliance"), a.id, a.ovn)
            .await
            .unwrap();
        // One entry per write: the intent with its implicit subscription,
        // then the removal of both.
        assert_eq!(store.log_size(), 2);
        let entries = store.log_entries(0, 2).await.unwrap();
        let parsed: Vec<_> = entries
            .iter()
            .map(|e| {
                let s = tlog::entry::SignedEntry::parse(e).unwrap();
                // The airspace's entries stay in the log, attested by its
                // checkpoints, not each by a signature (`tlog::entry`).
                assert!(!s.is_signed());
                assert_eq!(s.entry.origin, log_signer().origin());
                s
            })
            .collect();
        let kinds: Vec<&str> = parsed.iter().map(|s| s.entry.kind.as_str()).collect();
        assert_eq!(kinds, ["operational_intent.upserted", "operational_intent.removed"]);
        let sub = a.subscription_id.unwrap().to_string();
        let folded = |e: &tlog::entry::SignedEntry, key: &str| -> Vec<tlog::cbor::Value> {
            match node::evidence::field(&e.entry.body, key) {
                Some(tlog::cbor::Value::Array(items)) => items.clone(),
                _ => vec![],
            }
        };
        let made = folded(&parsed[0], "subscriptions_upserted");
        assert_eq!(made.len(), 1);
        assert_eq!(
            node::evidence::field(&made[0], "id"),
            Some(&tlog::cbor::Value::Text(sub.clone()))
        );
        assert_eq!(
            node::evidence::field(&made[0], "implicit"),
            Some(&tlog::cbor::Value::Bool(true))
        );
        assert_eq!(
            folded(&parsed[1], "subscriptions_removed"),
            [tlog::cbor::Value::Text(sub)]
        );
        // Every entry is included in the root.
        let root = store.log_root(2).await.unwrap();
        for (i, e) in entries.iter().enumerate() {
            let p = store.inclusion_proof(i as u64, 2).await.unwrap().unwrap();
            tlog::proof::verify_inclusion(&tlog::leaf_hash(e), i as u64, 2, &p, &root).unwrap();
        }
        (root, store.log_size())
    };
    let store = open(dir.path()).await;
    assert_eq!(store.log_size(), size_before);
    assert_eq!(store.log_root(size_before).await.unwrap(), root_before);
}
}

both_backends! {
#[tokio::test]
async fn checkpoints_are_signed_notes_and_successive_ones_are_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let d = Dss::new(
        store.clone(),
        Arc::new(SystemClock),
        Arc::new(RandomIds),
        Settings::default(),
    );
    let log = Log::new(store.clone(), log_signer());
    let now = d.now();
    d.put_intent(
        &caller("alliance"),
        Uuid::from_u128(1),
        None,
        request(square(10.0, 10.0, 0.01, now), vec![]),
    )
    .await
    .unwrap();
    assert_eq!(log.checkpoint_tick().await.unwrap(), Some(1));
    assert_eq!(
        log.checkpoint_tick().await.unwrap(),
        None,
        "nothing new, nothing signed"
    );
    let first = log.checkpoint().await.unwrap();
    for i in 2..6 {
        d.put_intent(
            &caller("alliance"),
            Uuid::from_u128(i),
            None,
            request(square(10.0 + i as f64, 10.0, 0.01, now), vec![]),
        )
        .await
        .unwrap();
    }
    log.checkpoint_tick().await.unwrap();
    let second = log.checkpoint().await.unwrap();
    let v = log_signer().signer.verifier();
    let (n1, _) = tlog::note::open(first.as_bytes(), std::slice::from_ref(&v)).unwrap();
    let (n2, _) = tlog::note::open(second.as_bytes(), std::slice::from_ref(&v)).unwrap();
    let (c1, c2) = (
        tlog::Checkpoint::parse(&n1.text).unwrap(),
        tlog::Checkpoint::parse(&n2.text).unwrap(),
    );
    assert_eq!(c1.origin, "detente.test/store");
    assert_eq!((c1.size, c2.size), (1, 5));
    let p = log.consistency_proof(c1.size, c2.size).await.unwrap();
    tlog::proof::verify_consistency(c1.size, c2.size, &p, &c1.root, &c2.root).unwrap();
    assert_eq!(log.verifier_key(), v.to_vkey());
}
}

/// The PostGIS `volumes` table (what SQL and GIS tools read) follows every
/// write: a create adds the volumes, an update replaces them (none of the
/// old outline is left behind), a removal takes them away — for intents
/// and constraints alike. PostgreSQL only: the embedded store keeps no
/// such table.
#[tokio::test]
async fn the_postgis_volumes_follow_creates_updates_and_removals() {
    let Some(_pg) =
        test_support::OnPostgres::enter("the_postgis_volumes_follow_creates_updates_and_removals")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dss(dir.path()).await;
    let url = test_support::postgres_url().unwrap();
    let schema = test_support::schema_for(dir.path());
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    // (rows of the entity, rows of it covering this point) in its schema.
    let count = |kind: &'static str, id: Uuid, lat: f64, lng: f64| {
        let (pool, schema) = (pool.clone(), schema.clone());
        async move {
            let sql = format!(
                "SELECT count(*), count(*) FILTER (WHERE ST_Intersects(area, ST_SetSRID(ST_MakePoint($3, $4), 4326))) \
                 FROM {schema}.volumes WHERE kind = $1 AND entity = $2"
            );
            let (all, here): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(kind)
                .bind(id)
                .bind(lng)
                .bind(lat)
                .fetch_one(&pool)
                .await
                .unwrap();
            (all, here)
        }
    };
    let now = d.now();
    let (intent, constraint) = (Uuid::from_u128(7), Uuid::from_u128(8));
    let (a, _) = d
        .put_intent(
            &caller("alliance"),
            intent,
            None,
            request(square(50.0, 30.0, 0.01, now), vec![]),
        )
        .await
        .unwrap();
    assert_eq!(count("intent", intent, 50.0, 30.0).await, (1, 1));
    // Updated to two volumes elsewhere: the old outline is gone.
    let mut moved = request(square(51.0, 31.0, 0.01, now), vec![a.ovn.clone()]);
    moved.extents.push(square(52.0, 32.0, 0.01, now));
    let (a, _) = d
        .put_intent(&caller("alliance"), intent, Some(a.ovn), moved)
        .await
        .unwrap();
    assert_eq!(count("intent", intent, 50.0, 30.0).await, (2, 0));
    assert_eq!(count("intent", intent, 52.0, 32.0).await, (2, 1));
    let (c, _) = d
        .put_constraint(
            &caller("authority"),
            constraint,
            None,
            vec![square(50.0, 30.0, 0.01, now)],
            "https://authority.example".into(),
        )
        .await
        .unwrap();
    assert_eq!(count("constraint", constraint, 50.0, 30.0).await, (1, 1));
    let (c, _) = d
        .put_constraint(
            &caller("authority"),
            constraint,
            Some(c.ovn),
            vec![square(53.0, 33.0, 0.01, now)],
            "https://authority.example".into(),
        )
        .await
        .unwrap();
    assert_eq!(count("constraint", constraint, 50.0, 30.0).await, (1, 0));
    assert_eq!(count("constraint", constraint, 53.0, 33.0).await, (1, 1));
    d.delete_intent(&caller("alliance"), intent, a.ovn)
        .await
        .unwrap();
    d.delete_constraint(&caller("authority"), constraint, c.ovn)
        .await
        .unwrap();
    assert_eq!(count("intent", intent, 52.0, 32.0).await, (0, 0));
    assert_eq!(count("constraint", constraint, 53.0, 33.0).await, (0, 0));
    pool.close().await;
}

both_backends! {
/// The log's tree is not held in memory whole: its full tiles are stored
/// with the entries that complete them, and roots and proofs read back
/// the ones the (here one-tile) cache lacks — after a restart too, and
/// for a log whose tiles were never stored (they are rebuilt at open).
#[tokio::test]
async fn proofs_read_the_logs_stored_tiles_when_the_tree_is_not_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_one_tile(dir.path()).await;
    let d = Arc::new(dss_over(store.clone()));
    let now = d.now();
    // One entry per create: 1,400 creates → 1,400 entries, and 60 of the
    // line: five full level-0 tiles and a partial one.
    let mut tasks = Vec::new();
    for t in 0..40u32 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..35u32 {
                let n = t * 35 + i;
                let (lat, lng) = (40.0 + f64::from(n / 30) * 0.05, 10.0 + f64::from(n % 30) * 0.05);
                d.put_intent(
                    &caller("alliance"),
                    Uuid::from_u128(u128::from(n) + 1),
                    None,
                    request(square(lat, lng, 0.01, now), vec![]),
                )
                .await
                .unwrap();
            }
        }));
    }
    // Meanwhile 60 members are registered on the line: its entries are
    // spread over the tiles, and the line's state must come back whole.
    let line_store = store.clone();
    tasks.push(tokio::spawn(async move {
        for m in 0..60u8 {
            for r in line_store.transact_line(vec![register(m)]).await {
                r.unwrap().unwrap();
            }
        }
    }));
    for t in tasks {
        t.await.unwrap();
    }
    let size = store.log_size();
    assert_eq!(size, 1460);
    let members = |store: &Arc<dyn Store>| {
        let mut out = Vec::new();
        store
            .read_line(&mut |s| {
                out = s
                    .members()
                    .map(|m| format!("{} {}", m.member.key.to_hex(), m.member.name))
                    .collect();
            })
            .unwrap();
        out.sort();
        out
    };
    let registered = members(&store);
    assert_eq!(registered.len(), 60);
    let entries = store.log_entries(0, size).await.unwrap();
    let mut whole = tlog::tree::MemoryTree::new();
    for e in &entries {
        whole.append(e);
    }
    // Every answer equals the whole tree's, and verifies.
    let check = |store: Arc<dyn Store>| {
        let (entries, whole) = (entries.clone(), whole.clone());
        async move {
            for s in [1, 255, 256, 257, 700, 1024, size] {
                let root = store.log_root(s).await.unwrap();
                assert_eq!(root, whole.root(s).unwrap(), "root at {s}");
                for i in [0, s / 2, s - 1] {
                    let p = store.inclusion_proof(i, s).await.unwrap().unwrap();
                    tlog::proof::verify_inclusion(
                        &tlog::leaf_hash(&entries[i as usize]),
                        i,
                        s,
                        &p,
                        &root,
                    )
                    .unwrap();
                }
                let p = store.consistency_proof(s / 3, s).await.unwrap().unwrap();
                assert_eq!(
                    p,
                    tlog::proof::consistency_proof(&whole, s / 3, s).unwrap().unwrap()
                );
            }
        }
    };
    check(store.clone()).await;
    // Entries are found by leaf hash as soon as they are committed (the
    // first of that hash); a hash never logged is not.
    for i in [0u64, 1, 777, size - 1] {
        let leaf = tlog::leaf_hash(&entries[i as usize]);
        assert_eq!(store.log_index_of(leaf).await.unwrap(), Some(i));
    }
    assert_eq!(store.log_index_of([9; 32]).await.unwrap(), None);
    drop(d);
    drop(store);
    // Reopened: the same answers, from the stored tiles (the tree from
    // its partial tiles, the line from its own entries only).
    let reopened = open_with_one_tile(dir.path()).await;
    assert_eq!(members(&reopened), registered);
    // Every row read back (the embedded store reads them page by page).
    let mut counts = None;
    reopened.read(&mut |s| counts = Some(s.counts())).unwrap();
    let counts = counts.unwrap();
    assert_eq!((counts.intents, counts.subscriptions), (1400, 1400));
    // The embedded store's leaf index, rebuilt from the level-0 tiles and
    // the entries after the last full one.
    for i in [0u64, 1, 255, 256, 777, size - 1] {
        let leaf = tlog::leaf_hash(&entries[i as usize]);
        assert_eq!(reopened.log_index_of(leaf).await.unwrap(), Some(i));
    }
    check(reopened).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    // Without its tiles (a log from before they were stored), a proof
    // into the old part cannot be made — until the store opens again and
    // stores them.
    sql(dir.path(), "DELETE FROM log_tiles").await;
    let stale = open_with_one_tile(dir.path()).await;
    sql(dir.path(), "DELETE FROM log_tiles").await;
    assert!(stale.inclusion_proof(0, size).await.is_err());
    drop(stale);
    let store = open_with_one_tile(dir.path()).await;
    // Every entry read again: the same line.
    assert_eq!(members(&store), registered);
    check(store.clone()).await;
    // Entries are found by leaf hash (the first of that hash) — on the
    // embedded store through the tiles stored again at this open.
    for i in [0u64, 1, 255, 256, 777, size - 1] {
        let leaf = tlog::leaf_hash(&entries[i as usize]);
        assert_eq!(store.log_index_of(leaf).await.unwrap(), Some(i));
    }
    assert_eq!(store.log_index_of([9; 32]).await.unwrap(), None);
}
}

both_backends! {
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notification_indices_are_logged_compactly_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Uuid::from_u128(77);
    let writes = 12u128;
    {
        let store = open(dir.path()).await;
        let d = Arc::new(dss_over(store.clone()));
        let now = d.now();
        watch(&d, sub, square(40.0, 20.0, 0.05, now)).await;
        let size = store.log_size();
        // Disjoint intents inside the subscription, written at once: most
        // share a batch, each notifies the subscription once.
        let tasks: Vec<_> = (0..writes)
            .map(|i| {
                let d = d.clone();
                tokio::spawn(async move {
                    let v = square(40.0, 19.96 + 0.006 * i as f64, 0.001, now);
                    d.put_intent(&caller(&format!("uss{i}")), Uuid::from_u128(100 + i), None, request(v, vec![]))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut seen = Vec::new();
        for t in tasks {
            let (_, subscribers) = t.await.unwrap();
            let watcher: Vec<_> = subscribers
                .iter()
                .filter(|s| s.uss_base_url == "https://watcher.example")
                .flat_map(|s| s.subscriptions.iter().copied())
                .collect();
            assert_eq!(watcher.len(), 1, "{subscribers:?}");
            assert_eq!(watcher[0].0, sub);
            seen.push(watcher[0].1);
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=writes as i32).collect::<Vec<_>>(), "each write its own index");
        assert_eq!(d.get_subscription(&caller("watcher"), sub).await.unwrap().0.notification_index, writes as i32);
        // One entry per write: the intent, with its implicit subscription
        // and the watcher's new index.
        let entries = store.log_entries(size, store.log_size()).await.unwrap();
        let mut logged = Vec::new();
        for e in &entries {
            let e = tlog::entry::SignedEntry::parse(e).unwrap();
            assert!(!e.is_signed() && e.entry.origin == log_signer().origin());
            assert_eq!(e.entry.kind, "operational_intent.upserted");
            let Some(tlog::cbor::Value::Array(items)) =
                node::evidence::field(&e.entry.body, "subscriptions_notified")
            else {
                panic!("{:?}", e.entry.body)
            };
            for i in items {
                assert_eq!(
                    node::evidence::field(i, "id"),
                    Some(&tlog::cbor::Value::Text(sub.to_string()))
                );
                let Some(tlog::cbor::Value::Uint(n)) = node::evidence::field(i, "notification_index") else { panic!() };
                logged.push(*n);
            }
        }
        logged.sort_unstable();
        assert_eq!(logged, (1..=writes as u64).collect::<Vec<_>>());
        assert_eq!(entries.len() as u128, writes);
        store.close().await;
    }
    let d = dss(dir.path()).await;
    let (s, _) = d.get_subscription(&caller("watcher"), sub).await.unwrap();
    assert_eq!(s.notification_index, writes as i32, "the row holds the last index");
    assert_eq!(s.extents.len(), 1, "and the rest of the subscription");
}
}

both_backends! {
/// Writes that arrive while a batch is being synced are decided into the
/// next batch as they come (several decisions, one transaction): every
/// row must hold its last acknowledged write and every leaf its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_decided_while_a_batch_syncs_commit_in_order_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let sub = Uuid::from_u128(7);
    let (writers, updates) = (24u128, 6u32);
    let (size, root, versions) = {
        let store = open(dir.path()).await;
        let d = Arc::new(dss_over(store.clone()));
        let now = d.now();
        watch(&d, sub, square(30.0, 20.0, 0.5, now)).await;
        // Each writer creates its own intent, then updates it again and
        // again as soon as each write is acknowledged.
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let d = d.clone();
                tokio::spawn(async move {
                    let who = caller(&format!("uss{w}"));
                    let id = Uuid::from_u128(1000 + w);
                    let v = |k: u32| square(30.0, 19.8 + 0.015 * w as f64, 0.001 * f64::from(updates + 1 - k), now);
                    let (mut oi, _) = d.put_intent(&who, id, None, request(v(0), vec![])).await.unwrap();
                    for k in 1..=updates {
                        let mut r = request(v(k), vec![]);
                        r.new_subscription = None;
                        r.subscription_id = oi.subscription_id;
                        oi = d.put_intent(&who, id, Some(oi.ovn.clone()), r).await.unwrap().0;
                    }
                    (id, oi.version)
                })
            })
            .collect();
        let mut versions = Vec::new();
        for t in tasks {
            versions.push(t.await.unwrap());
        }
        for (id, v) in &versions {
            assert_eq!(*v, updates as i32 + 1, "{id}");
        }
        let index = d.get_subscription(&caller("watcher"), sub).await.unwrap().0.notification_index;
        assert_eq!(index, (writers * (u128::from(updates) + 1)) as i32, "every write notified the watcher once");
        let size = store.log_size();
        assert_eq!(u128::from(size), 1 + writers * (u128::from(updates) + 1), "one entry per write");
        let root = store.log_root(size).await.unwrap();
        store.close().await;
        (size, root, versions)
    };
    let store = open(dir.path()).await;
    assert_eq!(store.log_size(), size);
    assert_eq!(store.log_root(size).await.unwrap(), root, "the leaves were stored in the order they were hashed");
    let d = dss_over(store.clone());
    for (id, v) in versions {
        let oi = d.get_intent(id).await.unwrap();
        assert_eq!(oi.version, v, "{id}: the row holds the last acknowledged write");
    }
    assert_eq!(
        d.get_subscription(&caller("watcher"), sub).await.unwrap().0.notification_index,
        (writers * (u128::from(updates) + 1)) as i32,
        "the subscription's row holds its last index"
    );
    // And the entries read back are the ones the root covers.
    let entries = store.log_entries(0, size).await.unwrap();
    let mut recomputed = tlog::tree::Frontier::default();
    for e in &entries {
        recomputed.push(e);
    }
    assert_eq!(recomputed.root(), root);
}
}

/// The line's state comes back from the entries `log_line` lists, which a
/// store written before that table existed gets filled by its migration.
#[tokio::test]
async fn the_line_replays_from_its_listed_entries_and_older_stores_get_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let open = |dir: std::path::PathBuf| async move {
        Arc::new(
            store::open_sqlite(&dir, log_signer())
                .await
                .expect("open store"),
        ) as Arc<dyn Store>
    };
    let sql = |dir: std::path::PathBuf, statement: &'static str| async move {
        use sqlx::Connection;
        let url = format!("sqlite://{}", dir.join("detente.db").display());
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(statement).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    };
    let members = |store: &Arc<dyn Store>| {
        let mut n = 0;
        store.read_line(&mut |s| n = s.members().count()).unwrap();
        n
    };
    {
        let store = open(dir.path().to_path_buf()).await;
        let d = dss_over(store.clone());
        for m in 0..5u8 {
            for r in store.transact_line(vec![register(m)]).await {
                r.unwrap().unwrap();
            }
            // Airspace entries between the line's.
            d.put_intent(
                &caller("alliance"),
                Uuid::from_u128(u128::from(m) + 1),
                None,
                request(square(10.0 + f64::from(m), 10.0, 0.01, d.now()), vec![]),
            )
            .await
            .unwrap();
        }
        assert_eq!(members(&store), 5);
        store.close().await;
    }
    // A store from before the list: the migration lists its line entries.
    sql(
        dir.path().to_path_buf(),
        "DROP TABLE log_line; DELETE FROM schema_version WHERE version >= 7",
    )
    .await;
    let store = open(dir.path().to_path_buf()).await;
    assert_eq!(members(&store), 5);
    store.close().await;
    // The start reads the list, not the whole log: emptied, the line is.
    sql(dir.path().to_path_buf(), "DELETE FROM log_line").await;
    let store = open(dir.path().to_path_buf()).await;
    assert_eq!(members(&store), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closing_commits_what_is_queued_and_leaves_no_wal_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        store::open_sqlite(dir.path(), log_signer())
            .await
            .expect("open store"),
    );
    let d = Arc::new(dss_over(store.clone()));
    let now = d.now();
    let mut acknowledged = Vec::new();
    for n in 0..8u128 {
        let id = Uuid::from_u128(n + 1);
        let v = square(50.0, 20.0 + n as f64 * 0.05, 0.001, now);
        d.put_intent(&caller("alliance"), id, None, request(v, vec![]))
            .await
            .unwrap();
        acknowledged.push(id);
    }
    // Writes in flight while the store is asked to close: each is either
    // acknowledged (and then there after reopening) or refused.
    let mut writes = tokio::task::JoinSet::new();
    for n in 0..64u128 {
        let d = d.clone();
        writes.spawn(async move {
            let id = Uuid::from_u128(100 + n);
            let v = square(10.0 + n as f64 * 0.05, 20.0, 0.001, now);
            (
                id,
                d.put_intent(&caller("alliance"), id, None, request(v, vec![]))
                    .await
                    .is_ok(),
            )
        });
    }
    tokio::task::yield_now().await;
    d.close().await;
    while let Some(w) = writes.join_next().await {
        let (id, ok) = w.unwrap();
        if ok {
            acknowledged.push(id);
        }
    }
    let late = d
        .put_intent(
            &caller("alliance"),
            Uuid::from_u128(99),
            None,
            request(square(60.0, 20.0, 0.001, now), vec![]),
        )
        .await;
    assert!(late.is_err(), "a write after closing is refused");
    let wal = dir.path().join("detente.db-wal");
    let wal_bytes = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(
        wal_bytes, 0,
        "the WAL was checkpointed and removed at close"
    );
    drop((d, store));
    let d = dss(dir.path()).await;
    for id in &acknowledged {
        assert!(
            d.get_intent(*id).await.is_ok(),
            "acknowledged {id} is there"
        );
    }
    assert_eq!(d.counts().unwrap().intents, acknowledged.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_into_the_database_while_the_store_is_open() {
    // The writer never checkpoints (a checkpoint inside a commit held up
    // every batch behind it): a task beside it does, every 50 ms.
    let dir = tempfile::tempdir().unwrap();
    let d = dss(dir.path()).await;
    let db = dir.path().join("detente.db");
    let size = || std::fs::metadata(&db).unwrap().len();
    // Let the first checkpoint take in the schema.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before = size();
    let now = d.now();
    for n in 0..200u128 {
        let v = square(40.0 + n as f64 * 0.05, 20.0, 0.001, now);
        d.put_intent(
            &caller("alliance"),
            Uuid::from_u128(n + 1),
            None,
            request(v, vec![]),
        )
        .await
        .unwrap();
    }
    let mut after = size();
    for _ in 0..20 {
        if after > before + 100 * 1024 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = size();
    }
    assert!(
        after > before + 100 * 1024,
        "200 intents and their entries reach the database file while it is open: {before} -> {after} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_steady_load_the_wal_starts_over_instead_of_growing() {
    // SQLite restarts the WAL only when a write begins with every frame
    // checkpointed, which a steady stream of batches never allows: the
    // writer checkpoints the last frames itself once the WAL passes its
    // bound (here 64 frames, cut back to 64 KiB), so the file stays small.
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        store::open_sqlite_tuned(dir.path(), log_signer(), 64, 64 * 1024)
            .await
            .expect("open store"),
    );
    let d = Arc::new(dss_over(store.clone()));
    let now = d.now();
    let wal = dir.path().join("detente.db-wal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(2500);
    let mut writers = Vec::new();
    for w in 0..8u128 {
        let d = d.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0u128;
            while std::time::Instant::now() < deadline {
                // Apart from every other: 400 rows of 0.05° per column,
                // columns 0.005° apart within the writer's 0.5°.
                let v = square(
                    30.0 + (n % 400) as f64 * 0.05,
                    0.5 * w as f64 + (n / 400) as f64 * 0.005,
                    0.001,
                    now,
                );
                d.put_intent(
                    &caller("alliance"),
                    Uuid::from_u128((w << 64) | (n + 1)),
                    None,
                    request(v, vec![]),
                )
                .await
                .unwrap();
                n += 1;
            }
            n
        }));
    }
    // An open WAL file only ever grows, except when a restart cuts it back
    // to the size limit.
    let (mut largest, mut cut_back) = (0, None);
    while std::time::Instant::now() < deadline {
        let now = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if now < largest && cut_back.is_none() {
            cut_back = Some((largest, now));
        }
        largest = largest.max(now);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut written = 0;
    for w in writers {
        written += w.await.unwrap();
    }
    assert!(
        store.backend.wal_restarts() >= 2,
        "the writer restarted the WAL {} times in 2.5 s of {written} creates",
        store.backend.wal_restarts()
    );
    assert!(
        cut_back.is_some(),
        "the WAL was never cut back; it reached {largest} bytes"
    );
    d.close().await;
}

both_backends! {
#[tokio::test]
async fn console_marks_are_kept_once_until_their_time_and_across_reopening() {
    use node::Mark;
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path()).await;
        assert!(s.mark_once(Mark::ConsoleChallenge, "n1".into(), 2_000, 1_000).await.unwrap());
        assert!(
            !s.mark_once(Mark::ConsoleChallenge, "n1".into(), 2_000, 1_500).await.unwrap(),
            "a second time"
        );
        // Kinds are apart.
        assert!(s.mark_once(Mark::ConsoleLogout, "n1".into(), 5_000, 1_500).await.unwrap());
        assert!(s.mark_once(Mark::ConsoleLogout, "s2".into(), 9_000, 1_500).await.unwrap());
        s.close().await;
    }
    let s = open(dir.path()).await;
    assert_eq!(
        s.marks(Mark::ConsoleLogout, 4_000).await.unwrap().len(),
        2,
        "kept across reopening"
    );
    assert_eq!(
        s.marks(Mark::ConsoleLogout, 6_000).await.unwrap(),
        vec![("s2".to_string(), 9_000)],
        "only those still in force"
    );
    assert!(
        !s.mark_once(Mark::ConsoleChallenge, "n1".into(), 2_000, 1_900).await.unwrap(),
        "still in force after reopening"
    );
    // Past its time, the same id is new again (and the old mark gone).
    assert!(s.mark_once(Mark::ConsoleChallenge, "n1".into(), 4_000, 2_001).await.unwrap());
    s.close().await;
}
}

both_backends! {
#[tokio::test]
async fn the_log_is_read_offline_page_by_page_up_to_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    if let Some(url) = test_support::postgres_url() {
        // What `detente serve` leaves for the offline tools.
        let at = store::Location::new(&url, &test_support::schema_for(dir.path())).unwrap();
        store::postgres::remember(dir.path(), &at).unwrap();
    }
    let store = open(dir.path()).await;
    let d = dss_over(store.clone());
    let log = Log::new(store.clone(), log_signer());
    let now = d.now();
    let mut page = |_: &[Vec<u8>]| -> Result<(), String> { panic!("read before any checkpoint") };
    let (latest, total) = store::read_log_pages(dir.path(), 3, &mut page).await.unwrap();
    assert_eq!((latest, total), (None, 0));
    let create = async |i: u32| {
        d.put_intent(
            &caller("alliance"),
            Uuid::from_u128(u128::from(i) + 1),
            None,
            request(square(10.0 + f64::from(i), 10.0, 0.01, now), vec![]),
        )
        .await
        .unwrap();
    };
    for i in 0..10u32 {
        create(i).await;
    }
    log.checkpoint_tick().await.unwrap();
    // Two more, not yet under a checkpoint.
    for i in 10..12u32 {
        create(i).await;
    }
    let mut pages: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut keep = |p: &[Vec<u8>]| -> Result<(), String> {
        pages.push(p.to_vec());
        Ok(())
    };
    let (latest, total) = store::read_log_pages(dir.path(), 3, &mut keep).await.unwrap();
    let (size, note) = latest.unwrap();
    assert_eq!((size, total), (10, 12));
    assert!(note.contains("\n10\n"), "{note}");
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 3, 1],
        "pages of 3 up to the checkpoint's size"
    );
    let all: Vec<Vec<u8>> = pages.into_iter().flatten().collect();
    assert_eq!(all, store.log_entries(0, 10).await.unwrap(), "the entries, in order");
    // A page refused stops the reading with its reason.
    let mut refuse = |_: &[Vec<u8>]| -> Result<(), String> { Err("no thanks".into()) };
    let e = store::read_log_pages(dir.path(), 3, &mut refuse).await.unwrap_err();
    assert!(e.message().contains("no thanks"), "{e}");
    d.close().await;
}
}

/// The seal beside the embedded store (`store::seal`) is replaced by every
/// checkpoint saved, however many are saved at once (the checkpointer and
/// readers asking for a first checkpoint do), and never by an older one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checkpoints_all_seal_and_the_newest_stays() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let signer = log_signer();
    let note = |size: u64| signer.checkpoint(size, [size as u8; 32]);
    let saves = (1..=40u64).map(|size| {
        let (store, note) = (store.clone(), note(size));
        tokio::spawn(async move { store.save_checkpoint(size, note).await })
    });
    for s in join_all(saves).await {
        s.expect("every save succeeds");
    }
    let sealed = std::fs::read_to_string(store::seal::path(dir.path())).unwrap();
    assert_eq!(sealed, note(40), "the newest checkpoint is sealed");
}

async fn join_all<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}

/// The store of folder `dir` on this test's backend, or why it refused to
/// open.
async fn try_open(dir: &std::path::Path) -> Result<(), String> {
    if let Some(url) = test_support::postgres_url() {
        let at = store::Location::new(&url, &test_support::schema_for(dir)).unwrap();
        return store::open_postgres(&at, log_signer())
            .await
            .map(drop)
            .map_err(|e| e.to_string());
    }
    store::open_sqlite(dir, log_signer())
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

both_backends! {
/// Each applied migration is recorded with its checksum: a database whose
/// migration differs from the binary's, or that a newer binary migrated
/// further, is refused before anything is read or written.
#[tokio::test]
async fn a_schema_edited_or_newer_than_the_binary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.close().await;
    drop(store);
    // Recorded, and a reopening checks them.
    try_open(dir.path()).await.expect("the same binary opens its own schema");
    sql(dir.path(), "UPDATE schema_version SET checksum = 'edited' WHERE version = 1").await;
    let e = try_open(dir.path()).await.unwrap_err();
    assert!(e.contains("migration 1 was applied from another text"), "{e}");
    // Checksums from before they were kept are filled in, not refused.
    sql(dir.path(), "UPDATE schema_version SET checksum = NULL").await;
    try_open(dir.path()).await.expect("unrecorded checksums are recorded");
    sql(dir.path(), "INSERT INTO schema_version (version) VALUES (9999)").await;
    let e = try_open(dir.path()).await.unwrap_err();
    assert!(e.contains("newer than this binary knows"), "{e}");
}
}
