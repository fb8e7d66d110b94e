//! A PostgreSQL outage: the node reaches its database through a TCP proxy
//! that the test cuts (every connection reset, new ones refused) and then
//! restores. While the database cannot be reached, writes and reads must be
//! answered promptly as unavailable (the API's 503), not left waiting and
//! not answered from an in-memory state that may hold uncommitted
//! decisions; once it is back the store reloads and takes writes again,
//! with exactly the acknowledged ones kept.
//!
//! Runs when DATABASE_URL is set (see `test_support::database_url`).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use node::airspace::decide::ImplicitSubscription;
use node::airspace::{LatLng, OperationalIntentState, Volume4D};
use node::entries::LogSigner;
use node::tlog;
use node::{
    Caller, Dss, IntentRequest, NodeError, RandomIds, Scope, Settings, Store, StoreError,
    SystemClock,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_support::{CuttableProxy, postgres_target, through};
use uuid::Uuid;

/// A store on this test's PostgreSQL reached through a proxy, with the
/// node's use cases over it.
struct Proxied {
    proxy: CuttableProxy,
    /// Drops the test's schema last (bind it: `_pg`).
    _pg: test_support::OnPostgres,
    url: String,
    schema: String,
    store: Arc<store::PostgresStore>,
    d: Dss,
    _dir: tempfile::TempDir,
}

/// `None` (the test skipped, saying so) without a database.
async fn proxied(test: &str) -> Option<Proxied> {
    let _pg = test_support::OnPostgres::enter(test)?;
    let url = test_support::postgres_url().unwrap();
    let proxy = CuttableProxy::start(postgres_target(&url));
    let dir = tempfile::tempdir().unwrap();
    let schema = test_support::schema_for(dir.path());
    let at = store::Location::new(&through(&url, proxy.addr), &schema).unwrap();
    let store = Arc::new(store::open_postgres(&at, log_signer()).await.unwrap());
    Some(Proxied {
        proxy,
        _pg,
        d: dss(store.clone()),
        url,
        schema,
        store,
        _dir: dir,
    })
}

/// The same node's store opened straight on the database: what it holds,
/// as a restart without the proxy would find it.
async fn without_proxy(url: &str, schema: &str) -> Arc<dyn Store> {
    let at = store::Location::new(url, schema).unwrap();
    Arc::new(store::open_postgres(&at, log_signer()).await.unwrap())
}

/// The node's use cases over `store`.
fn dss(store: Arc<dyn Store>) -> Dss {
    Dss::new(
        store,
        Arc::new(SystemClock),
        Arc::new(RandomIds),
        Settings::default(),
    )
}

fn log_signer() -> LogSigner {
    LogSigner {
        previous: None,
        signer: tlog::NoteSigner::from_seed("detente.test/outage", &[7; 32]).unwrap(),
        clock: Arc::new(SystemClock),
        member: None,
    }
}

fn caller() -> Caller {
    Caller {
        sub: "uss-outage".into(),
        scopes: vec![Scope::StrategicCoordination],
    }
}

/// An intent on a square of its own (no key needed), `n` apart.
async fn create(d: &Dss, id: Uuid, n: u32) -> Result<(), NodeError> {
    let now = d.now();
    let v = Volume4D::square(
        LatLng {
            lat: 40.0 + f64::from(n) * 0.05,
            lng: 20.0,
        },
        0.001,
        (0.0, 300.0),
        (now, now.plus_seconds(3600)),
    );
    let req = IntentRequest {
        extents: vec![v],
        key: vec![],
        state: OperationalIntentState::Accepted,
        uss_base_url: "https://uss.example".into(),
        subscription_id: None,
        new_subscription: Some(ImplicitSubscription {
            uss_base_url: "https://uss.example".into(),
            notify_for_constraints: false,
        }),
        requested_ovn_suffix: None,
    };
    d.put_intent(&caller(), id, None, req).await.map(|_| ())
}

/// Creates intent `id` (see [`create`]), retrying while refused, for at
/// most `within` once the database is back.
async fn created_within(d: &Dss, id: Uuid, n: u32, within: Duration) {
    let t = Instant::now();
    while let Err(e) = create(d, id, n).await {
        assert!(
            t.elapsed() < within,
            "writes still refused {:?} after the database came back: {e}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn unavailable(r: &Result<impl std::fmt::Debug, NodeError>) -> bool {
    matches!(r, Err(NodeError::Store(StoreError::Unavailable(_))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_answered_unavailable_and_the_store_recovers() {
    let Some(Proxied {
        proxy,
        url,
        schema,
        store,
        d,
        _dir,
        _pg,
    }) = proxied("a_database_outage_is_answered_unavailable_and_the_store_recovers").await
    else {
        return;
    };
    let ids: Vec<Uuid> = (1..=6).map(Uuid::from_u128).collect();
    create(&d, ids[0], 0).await.unwrap();
    assert!(store.available());

    proxy.cut();
    // The first write after the cut fails (its batch could not start or
    // commit): answered, not left waiting for the database.
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(20), create(&d, ids[1], 1))
        .await
        .expect("a write during the outage is answered");
    assert!(
        matches!(r, Err(NodeError::Store(_))),
        "refused by the store: {r:?}"
    );
    // From then on the store is unavailable: writes and reads are refused
    // as such, at once.
    assert!(!store.available(), "unavailable after {:?}", t.elapsed());
    for (n, id) in ids[2..4].iter().enumerate() {
        let t = Instant::now();
        let r = create(&d, *id, 2 + n as u32).await;
        assert!(unavailable(&r), "a write while down: {r:?}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
    let r = d.get_intent(ids[0]).await;
    assert!(unavailable(&r), "a read while down: {r:?}");
    let r = d.counts();
    assert!(unavailable(&r), "counts while down: {r:?}");
    // A few seconds of retries, all failing, leave it unavailable.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!store.available());

    proxy.restore();
    created_within(&d, ids[4], 4, Duration::from_secs(20)).await;
    assert!(store.available());
    // Exactly the acknowledged writes are there.
    d.get_intent(ids[0]).await.unwrap();
    d.get_intent(ids[4]).await.unwrap();
    for id in &ids[1..4] {
        let r = d.get_intent(*id).await;
        assert!(
            matches!(r, Err(NodeError::Domain(_))),
            "a refused write was not kept: {r:?}"
        );
    }
    assert_eq!(d.counts().unwrap().intents, 2);
    d.close().await;
    drop(d);

    // And so says the database itself, opened without the proxy.
    let again = without_proxy(&url, &schema).await;
    let d = dss(again);
    assert_eq!(d.counts().unwrap().intents, 2);
    d.get_intent(ids[4]).await.unwrap();
    d.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_answered_as_committed() {
    let Some(Proxied {
        proxy,
        url,
        schema,
        store,
        d,
        _dir,
        _pg,
    }) = proxied("a_commit_whose_answer_is_lost_is_answered_as_committed").await
    else {
        return;
    };
    let ids: Vec<Uuid> = (1..=3).map(Uuid::from_u128).collect();
    // The writer's COMMIT (a simple-protocol query) reaches the database,
    // which commits; the connection then drops before the answer.
    proxy.lose_reply_after(b"COMMIT\0");
    let r = tokio::time::timeout(Duration::from_secs(20), create(&d, ids[0], 0))
        .await
        .expect("answered");
    assert!(proxy.reply_lost(), "the commit's answer was lost");
    assert!(
        r.is_ok(),
        "the database holds the write: it is answered as committed, not as failed: {r:?}"
    );
    d.get_intent(ids[0]).await.unwrap();
    assert!(store.available());
    create(&d, ids[1], 1).await.unwrap();
    d.close().await;
    drop(d);

    // The database holds both, each once, with their log entries.
    let again = without_proxy(&url, &schema).await;
    assert_eq!(again.log_size(), 2, "one entry per write");
    let d = dss(again);
    assert_eq!(d.counts().unwrap().intents, 2);
    d.get_intent(ids[0]).await.unwrap();
    d.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stops_answering_is_given_up_on_and_the_store_recovers() {
    let Some(Proxied {
        proxy,
        store,
        d,
        _dir,
        _pg,
        ..
    }) = proxied("a_database_that_stops_answering_is_given_up_on_and_the_store_recovers").await
    else {
        return;
    };
    let ids: Vec<Uuid> = (1..=4).map(Uuid::from_u128).collect();
    create(&d, ids[0], 0).await.unwrap();

    // The link goes silent: no reset, no answer. TCP alone would keep the
    // writer waiting for many minutes.
    proxy.stall();
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(40), create(&d, ids[1], 1))
        .await
        .expect("a write on a silent link is answered");
    assert!(matches!(r, Err(NodeError::Store(_))), "{r:?}");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "given up on in {:?}",
        t.elapsed()
    );
    assert!(!store.available());
    let t = Instant::now();
    let r = create(&d, ids[2], 2).await;
    assert!(unavailable(&r), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

    proxy.restore();
    created_within(&d, ids[3], 3, Duration::from_secs(30)).await;
    d.get_intent(ids[0]).await.unwrap();
    d.get_intent(ids[3]).await.unwrap();
    for id in &ids[1..3] {
        let r = d.get_intent(*id).await;
        assert!(matches!(r, Err(NodeError::Domain(_))), "{r:?}");
    }
    d.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_lost_with_its_database_is_answered_as_of_unknown_outcome() {
    let Some(Proxied {
        proxy,
        store,
        d,
        _dir,
        _pg,
        ..
    }) = proxied("a_commit_lost_with_its_database_is_answered_as_of_unknown_outcome").await
    else {
        return;
    };
    let id = Uuid::from_u128(1);
    // The database takes the commit, the answer is lost, and the node
    // cannot reconnect to ask: it must not say "nothing was changed".
    proxy.lose_reply_and_cut(b"COMMIT\0");
    let r = tokio::time::timeout(Duration::from_secs(20), create(&d, id, 0))
        .await
        .expect("answered");
    assert!(proxy.reply_lost());
    assert!(
        matches!(r, Err(NodeError::Store(StoreError::OutcomeUnknown(_)))),
        "{r:?}"
    );
    assert!(!store.available());
    // Once the database is back, the write is there: it had been committed.
    proxy.restore();
    let t = Instant::now();
    while let Err(e) = d.get_intent(id).await {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "not readable {:?} after the database came back: {e}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_whose_link_dies_midway_is_given_up_on() {
    let Some(Proxied {
        proxy,
        store,
        d,
        _dir,
        _pg,
        ..
    }) = proxied("a_read_whose_link_dies_midway_is_given_up_on").await
    else {
        return;
    };
    create(&d, Uuid::from_u128(1), 0).await.unwrap();

    // The link dies after the query reached the database (the connection
    // was taken from the pool and checked before): TCP alone would keep
    // the reader waiting for many minutes.
    proxy.stall_after(b"WHERE idx >= $1 AND idx < $2 ORDER BY idx");
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(40), store.log_entries(0, 1))
        .await
        .expect("a read on a link that died midway is answered");
    assert!(proxy.reply_lost(), "the query went out");
    assert!(
        matches!(r, Err(StoreError::Unavailable(_))),
        "{:?}",
        r.map(|e| e.len())
    );
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "given up on in {:?}",
        t.elapsed()
    );

    // Once the link is back, reads and writes go on, on fresh connections.
    proxy.restore();
    let t = Instant::now();
    loop {
        match store.log_entries(0, 1).await {
            Ok(entries) => {
                assert_eq!(entries.len(), 1);
                break;
            }
            Err(e) => assert!(t.elapsed() < Duration::from_secs(30), "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    created_within(&d, Uuid::from_u128(2), 1, Duration::from_secs(30)).await;
    d.close().await;
}
