//! The embedded store through the node's use cases: durability across
//! reopen, serialised key checks under concurrency.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use node::airspace::decide::ImplicitSubscription;
use node::airspace::{LatLng, OperationalIntentState, Outline, Timestamp, Volume4D};
use node::{Caller, Dss, IntentRequest, NodeError, RandomIds, Scope, Settings, SystemClock};
use std::sync::Arc;
use store::SqliteStore;
use uuid::Uuid;

fn caller(sub: &str) -> Caller {
    Caller {
        sub: sub.into(),
        scopes: vec![Scope::StrategicCoordination],
    }
}

fn square(lat: f64, lng: f64, h: f64, now: Timestamp) -> Volume4D {
    Volume4D {
        outline: Outline::Polygon {
            vertices: vec![
                LatLng {
                    lat: lat - h,
                    lng: lng - h,
                },
                LatLng {
                    lat: lat - h,
                    lng: lng + h,
                },
                LatLng {
                    lat: lat + h,
                    lng: lng + h,
                },
                LatLng {
                    lat: lat + h,
                    lng: lng - h,
                },
            ],
        },
        altitude_lower_m: Some(0.0),
        altitude_upper_m: Some(300.0),
        time_start: Some(now),
        time_end: Some(now.plus_seconds(3600)),
    }
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

async fn dss(dir: &std::path::Path) -> Dss {
    let store = SqliteStore::open(dir).await.expect("open store");
    Dss::new(
        Arc::new(store),
        Arc::new(SystemClock),
        Arc::new(RandomIds),
        Settings::default(),
    )
}

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
        assert_eq!(d.conflicts().unwrap().len(), 1);
    }
    // Give the old writer a moment to close its connection; SQLite itself
    // would cope either way.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let d = dss(dir.path()).await;
    let now = d.now();
    assert_eq!(d.get_intent(a_id).unwrap().version, 1);
    assert_eq!(
        d.query_intents(Some(square(50.0, 30.005, 0.001, now)))
            .unwrap()
            .len(),
        2
    );
    let conflicts = d.conflicts().unwrap();
    assert_eq!(conflicts.len(), 1, "conflicts are rebuilt from the rows");
    assert_eq!((conflicts[0].a.id, conflicts[0].b.id), (a_id, b_id));
    assert_eq!(d.counts().unwrap().subscriptions, 2);
}

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
