use super::*;
use crate::geometry::{LatLng, Limits, Outline, Volume4D, prepare};
use crate::model::OperationalIntentState::*;
use crate::{Conflict, ConflictKind};
use uuid::Uuid;

const HOUR: i64 = 3_600_000_000;
const NOW: Timestamp = Timestamp(1_000 * HOUR);

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}
fn square(lat: f64, lng: f64, h: f64, from_h: i64, to_h: i64) -> PreparedVolume {
    let time = (
        Timestamp(NOW.0 + from_h * HOUR),
        Timestamp(NOW.0 + to_h * HOUR),
    );
    prepare(
        Volume4D::square(LatLng { lat, lng }, h, (0.0, 500.0), time),
        &Limits::default(),
    )
    .unwrap()
}

fn put(n: u128, manager: &str, v: PreparedVolume, key: Vec<Ovn>) -> PutIntent {
    PutIntent {
        id: id(n),
        manager: manager.into(),
        existing_ovn: None,
        extents: vec![v],
        key,
        state: Accepted,
        uss_base_url: format!("https://{manager}.example"),
        subscription_id: None,
        new_subscription: Some(ImplicitSubscription {
            uss_base_url: format!("https://{manager}.example"),
            notify_for_constraints: false,
        }),
        new_ovn: Ovn(format!("ovn-{n}-{}", 1)),
        new_subscription_id: id(1000 + n),
        now: NOW,
    }
}

/// Decides and applies, as a store would.
fn run(
    state: &mut AirspaceState,
    f: impl FnOnce(&AirspaceState) -> Result<Decision, DomainError>,
) -> Outcome {
    let d = f(state).expect("decision accepted");
    state.apply(&d.events);
    d.outcome
}

fn intent_of(o: Outcome) -> (OperationalIntent, Vec<SubscriberToNotify>) {
    match o {
        Outcome::Intent {
            intent,
            subscribers,
        } => (intent, subscribers),
        other => panic!("expected an intent outcome, got {other:?}"),
    }
}

#[test]
fn key_check_refuses_a_write_that_misses_an_intersecting_ovn() {
    let mut s = AirspaceState::default();
    let (a, _) = intent_of(run(&mut s, |s| {
        put_intent(
            s,
            put(1, "alliance", square(50.0, 30.0, 0.01, 0, 2), vec![]),
        )
    }));
    let err = put_intent(
        &s,
        put(2, "federation", square(50.0, 30.01, 0.01, 1, 3), vec![]),
    )
    .unwrap_err();
    match err {
        DomainError::KeyCheckFailed {
            missing_operational_intents,
            missing_constraints,
        } => {
            assert_eq!(missing_operational_intents.len(), 1);
            assert_eq!(missing_operational_intents[0].id, a.id);
            assert!(missing_constraints.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // With the OVN, the same write passes and both intents now conflict.
    run(&mut s, |s| {
        put_intent(
            s,
            put(
                2,
                "federation",
                square(50.0, 30.01, 0.01, 1, 3),
                vec![a.ovn.clone()],
            ),
        )
    });
    let conflicts: Vec<_> = s.conflicts().collect();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(
        conflicts[0].overlaps[0].time,
        (Timestamp(NOW.0 + HOUR), Timestamp(NOW.0 + 2 * HOUR))
    );
    assert_eq!(conflicts[0].overlaps[0].altitude_m, (0.0, 500.0));
}

#[test]
fn key_check_ignores_disjoint_time_and_nonconforming_states() {
    let mut s = AirspaceState::default();
    run(&mut s, |s| {
        put_intent(
            s,
            put(1, "alliance", square(50.0, 30.0, 0.01, 0, 2), vec![]),
        )
    });
    // Same area, later window: no key needed.
    run(&mut s, |s| {
        put_intent(
            s,
            put(2, "federation", square(50.0, 30.0, 0.01, 2, 3), vec![]),
        )
    });
    // A stale OVN is not knowledge.
    let err = put_intent(
        &s,
        put(
            3,
            "federation",
            square(50.0, 30.0, 0.01, 1, 2),
            vec![Ovn("stale-ovn-0000000".into())],
        ),
    )
    .unwrap_err();
    assert!(matches!(err, DomainError::KeyCheckFailed { .. }));
}

#[test]
fn the_key_must_include_constraints_only_when_the_subscription_asks_for_them() {
    let mut s = AirspaceState::default();
    let c = put_constraint(
        &s,
        PutConstraint {
            id: id(9),
            manager: "authority".into(),
            existing_ovn: None,
            extents: vec![square(50.0, 30.0, 0.05, 0, 24)],
            uss_base_url: "https://authority.example".into(),
            new_ovn: Ovn("constraint-ovn-1".into()),
            now: NOW,
        },
    );
    run(&mut s, |_| c);
    run(&mut s, |s| {
        put_intent(
            s,
            put(1, "alliance", square(50.0, 30.0, 0.01, 0, 2), vec![]),
        )
    });
    let mut p = put(2, "federation", square(50.0, 30.0, 0.01, 3, 4), vec![]);
    p.new_subscription = Some(ImplicitSubscription {
        uss_base_url: "https://f.example".into(),
        notify_for_constraints: true,
    });
    match put_intent(&s, p.clone()).unwrap_err() {
        DomainError::KeyCheckFailed {
            missing_constraints,
            ..
        } => assert_eq!(missing_constraints[0].id, id(9)),
        other => panic!("{other:?}"),
    }
    p.key = vec![Ovn("constraint-ovn-1".into())];
    run(&mut s, |s| put_intent(s, p));
    assert_eq!(
        s.conflicts()
            .filter(|c| c.kind == crate::ConflictKind::IntentConstraint)
            .count(),
        2
    );
}

#[test]
fn update_needs_the_current_ovn_and_the_same_manager() {
    let mut s = AirspaceState::default();
    let (a, _) = intent_of(run(&mut s, |s| {
        put_intent(
            s,
            put(1, "alliance", square(50.0, 30.0, 0.01, 0, 2), vec![]),
        )
    }));
    let mut upd = put(1, "alliance", square(50.0, 30.0, 0.02, 0, 2), vec![]);
    upd.existing_ovn = Some(Ovn("not-the-ovn-000000".into()));
    upd.new_ovn = Ovn("ovn-1-2".into());
    assert!(matches!(
        put_intent(&s, upd.clone()).unwrap_err(),
        DomainError::OvnMismatch { .. }
    ));
    upd.existing_ovn = Some(a.ovn.clone());
    let mut thief = upd.clone();
    thief.manager = "federation".into();
    assert!(matches!(
        put_intent(&s, thief).unwrap_err(),
        DomainError::NotManager { .. }
    ));
    let (b, _) = intent_of(run(&mut s, |s| put_intent(s, upd)));
    assert_eq!(b.version, 2);
    assert_eq!(b.ovn, Ovn("ovn-1-2".into()));
    assert_eq!(
        b.subscription_id, a.subscription_id,
        "the implicit subscription is reused"
    );
    assert!(matches!(
        put_intent(
            &s,
            put(1, "alliance", square(50.0, 30.0, 0.01, 0, 2), vec![])
        )
        .unwrap_err(),
        DomainError::AlreadyExists { .. }
    ));
}

#[test]
fn state_transitions_follow_f3548() {
    assert!(transition_allowed(None, Accepted));
    assert!(transition_allowed(None, Activated));
    assert!(!transition_allowed(None, Nonconforming));
    assert!(!transition_allowed(None, Contingent));
    assert!(transition_allowed(Some(Accepted), Activated));
    assert!(!transition_allowed(Some(Accepted), Contingent));
    assert!(transition_allowed(Some(Activated), Nonconforming));
    assert!(transition_allowed(Some(Nonconforming), Activated));
    assert!(transition_allowed(Some(Activated), Contingent));
    assert!(!transition_allowed(Some(Activated), Accepted));
    assert!(!transition_allowed(Some(Contingent), Activated));
    assert!(transition_allowed(Some(Contingent), Contingent));

    let mut s = AirspaceState::default();
    let (a, _) = intent_of(run(&mut s, |s| {
        put_intent(
            s,
            put(1, "alliance", square(50.0, 30.0, 0.01, 0, 2), vec![]),
        )
    }));
    let mut c = put(1, "alliance", square(50.0, 30.0, 0.01, 0, 2), vec![]);
    c.existing_ovn = Some(a.ovn);
    c.state = Contingent;
    assert!(matches!(
        put_intent(&s, c).unwrap_err(),
        DomainError::InvalidTransition {
            from: Some(Accepted),
            to: Contingent
        }
    ));
}

#[test]
fn activated_without_any_subscription_is_refused() {
    let s = AirspaceState::default();
    let mut p = put(1, "alliance", square(50.0, 30.0, 0.01, 0, 2), vec![]);
    p.state = Activated;
    p.new_subscription = None;
    match put_intent(&s, p).unwrap_err() {
        DomainError::InvalidInput { field, .. } => assert_eq!(field, "new_subscription"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn extents_must_be_complete_and_not_over() {
    let s = AirspaceState::default();
    let mut p = put(1, "alliance", square(50.0, 30.0, 0.01, -3, -1), vec![]);
    match put_intent(&s, p.clone()).unwrap_err() {
        DomainError::InvalidInput { field, .. } => assert_eq!(field, "extents[0].time_end"),
        other => panic!("{other:?}"),
    }
    let mut v = square(50.0, 30.0, 0.01, 0, 1).volume;
    v.altitude_upper_m = None;
    p.extents = vec![prepare(v, &Limits::default()).unwrap()];
    match put_intent(&s, p).unwrap_err() {
        DomainError::InvalidInput { field, .. } => {
            assert_eq!(field, "extents[0].volume.altitude_upper")
        }
        other => panic!("{other:?}"),
    }
}

/// An explicit subscription, id 500 of "watcher", over a 0.2° square
/// around (50, 30) for a day.
fn watch(s: &mut AirspaceState) {
    let d = put_subscription(
        s,
        PutSubscription {
            id: id(500),
            manager: "watcher".into(),
            existing_version: None,
            extents: square(50.0, 30.0, 0.1, 0, 24),
            uss_base_url: "https://watcher.example".into(),
            notify_for_operational_intents: true,
            notify_for_constraints: false,
            now: NOW,
            start_given: true,
            end_given: true,
            max_per_area: 10,
        },
    );
    run(s, |_| d);
}

#[test]
fn subscribers_are_told_with_increasing_notification_indices() {
    let mut s = AirspaceState::default();
    watch(&mut s);
    let (a, subs) = intent_of(run(&mut s, |s| {
        put_intent(
            s,
            put(1, "alliance", square(50.0, 30.0, 0.01, 0, 2), vec![]),
        )
    }));
    assert_eq!(
        subs,
        vec![SubscriberToNotify {
            uss_base_url: "https://watcher.example".into(),
            subscriptions: vec![(id(500), 1)]
        }]
    );
    let (_, subs) = intent_of(run(&mut s, |s| {
        put_intent(
            s,
            put(2, "alliance", square(50.0, 30.02, 0.01, 0, 2), vec![a.ovn]),
        )
    }));
    // The watcher (index 2) and alliance's first implicit subscription (index 1).
    let watcher = subs
        .iter()
        .find(|x| x.uss_base_url == "https://watcher.example")
        .unwrap();
    assert_eq!(watcher.subscriptions, vec![(id(500), 2)]);
    assert_eq!(s.subscription(&id(500)).unwrap().notification_index, 2);
}

#[test]
fn a_notified_subscription_changes_by_its_index_alone() {
    let mut s = AirspaceState::default();
    watch(&mut s);
    let before = s.subscription(&id(500)).unwrap().clone();
    let (a, _) = intent_of(run(&mut s, |s| {
        put_intent(
            s,
            put(1, "alliance", square(50.0, 30.0, 0.01, 0, 2), vec![]),
        )
    }));
    let implicit_a = a.subscription_id.unwrap();
    // A second intent meets the watcher and alliance's implicit
    // subscription: one compact event names both with their new indices;
    // the only subscription written whole is the new intent's own.
    let d = put_intent(
        &s,
        put(
            2,
            "alliance",
            square(50.0, 30.02, 0.01, 0, 2),
            vec![a.ovn.clone()],
        ),
    )
    .unwrap();
    let mut want = vec![(id(500), 2), (implicit_a, 1)];
    want.sort();
    let notified: Vec<_> = d
        .events
        .iter()
        .filter_map(|e| match e {
            Event::SubscriptionsNotified(n) => Some(n.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(notified, vec![want]);
    let written: Vec<SubscriptionId> = d
        .events
        .iter()
        .filter_map(|e| match e {
            Event::SubscriptionUpserted(u) => Some(u.id),
            _ => None,
        })
        .collect();
    assert_eq!(written.len(), 1);
    assert!(written[0] != id(500) && written[0] != implicit_a);
    s.apply(&d.events);
    let after = s.subscription(&id(500)).unwrap();
    assert_eq!(after.notification_index, 2);
    assert_eq!(
        Subscription {
            notification_index: before.notification_index,
            ..after.clone()
        },
        before,
        "nothing but the index changed"
    );
    // An intent updated in place notifies its own implicit subscription,
    // which the update also rewrites: the bump is in the rewrite.
    let mut update = put(1, "alliance", square(50.0, 30.0, 0.012, 0, 2), vec![]);
    update.existing_ovn = Some(a.ovn.clone());
    update.key = s
        .intents_intersecting(&update.extents)
        .iter()
        .map(|o| o.ovn.clone())
        .collect();
    let d = put_intent(&s, update).unwrap();
    let rewritten = d
        .events
        .iter()
        .find_map(|e| match e {
            Event::SubscriptionUpserted(u) if u.id == implicit_a => Some(u.clone()),
            _ => None,
        })
        .expect("the implicit subscription is rewritten");
    assert_eq!(rewritten.notification_index, 2);
    assert!(d.events.iter().all(|e| match e {
        Event::SubscriptionsNotified(n) => n.iter().all(|(i, _)| *i != implicit_a),
        _ => true,
    }));
    s.apply(&d.events);
    assert_eq!(s.subscription(&implicit_a).unwrap().notification_index, 2);
}

#[test]
fn deleting_an_intent_removes_its_implicit_subscription_and_notifies() {
    let mut s = AirspaceState::default();
    let (a, _) = intent_of(run(&mut s, |s| {
        put_intent(
            s,
            put(1, "alliance", square(50.0, 30.0, 0.01, 0, 2), vec![]),
        )
    }));
    let sub = a.subscription_id.unwrap();
    assert!(s.subscription(&sub).unwrap().implicit);
    // The implicit subscription cannot be deleted while the intent needs it.
    let version = s.subscription(&sub).unwrap().version.clone();
    let err = delete_subscription(
        &s,
        DeleteSubscription {
            id: sub,
            manager: "alliance".into(),
            version,
        },
    )
    .unwrap_err();
    assert!(matches!(err, DomainError::SubscriptionInUse { .. }));
    let wrong = delete_intent(
        &s,
        DeleteIntent {
            id: a.id,
            manager: "alliance".into(),
            ovn: Ovn("wrong-ovn-00000000".into()),
        },
    );
    assert!(matches!(
        wrong.unwrap_err(),
        DomainError::OvnMismatch { .. }
    ));
    run(&mut s, |s| {
        delete_intent(
            s,
            DeleteIntent {
                id: a.id,
                manager: "alliance".into(),
                ovn: a.ovn,
            },
        )
    });
    assert!(s.intent(&a.id).is_none());
    assert!(s.subscription(&sub).is_none());
}

#[test]
fn down_uss_cannot_plan_or_delete() {
    let mut s = AirspaceState::default();
    let (a, _) = intent_of(run(&mut s, |s| {
        put_intent(
            s,
            put(1, "alliance", square(50.0, 30.0, 0.01, 0, 2), vec![]),
        )
    }));
    run(&mut s, |s| {
        set_availability(
            s,
            SetAvailability {
                uss: "alliance".into(),
                old_version: String::new(),
                availability: UssAvailabilityState::Down,
            },
        )
    });
    assert!(matches!(
        put_intent(
            &s,
            put(2, "alliance", square(51.0, 30.0, 0.01, 0, 2), vec![])
        )
        .unwrap_err(),
        DomainError::UssDown { .. }
    ));
    let del = delete_intent(
        &s,
        DeleteIntent {
            id: a.id,
            manager: "alliance".into(),
            ovn: a.ovn,
        },
    );
    assert!(matches!(del.unwrap_err(), DomainError::UssDown { .. }));
    let stale = set_availability(
        &s,
        SetAvailability {
            uss: "alliance".into(),
            old_version: String::new(),
            availability: UssAvailabilityState::Normal,
        },
    );
    assert!(matches!(
        stale.unwrap_err(),
        DomainError::AvailabilityVersionMismatch { .. }
    ));
}

#[test]
fn subscription_update_may_not_uncover_its_intents() {
    let mut s = AirspaceState::default();
    run(&mut s, |s| {
        put_subscription(
            s,
            PutSubscription {
                id: id(500),
                manager: "alliance".into(),
                existing_version: None,
                extents: square(50.0, 30.0, 0.1, 0, 24),
                uss_base_url: "https://alliance.example".into(),
                notify_for_operational_intents: true,
                notify_for_constraints: false,
                now: NOW,
                start_given: true,
                end_given: true,
                max_per_area: 10,
            },
        )
    });
    let mut p = put(1, "alliance", square(50.0, 30.0, 0.01, 0, 2), vec![]);
    p.new_subscription = None;
    p.subscription_id = Some(id(500));
    p.state = Activated;
    run(&mut s, |s| put_intent(s, p));
    let version = s.subscription(&id(500)).unwrap().version.clone();
    let shrink = PutSubscription {
        id: id(500),
        manager: "alliance".into(),
        existing_version: Some(version),
        extents: square(51.0, 30.0, 0.1, 0, 24),
        uss_base_url: "https://alliance.example".into(),
        notify_for_operational_intents: true,
        notify_for_constraints: false,
        now: NOW,
        start_given: true,
        end_given: true,
        max_per_area: 10,
    };
    assert!(matches!(
        put_subscription(&s, shrink).unwrap_err(),
        DomainError::SubscriptionInUse { .. }
    ));
    // Using somebody else's subscription is forbidden.
    let mut p = put(2, "federation", square(50.0, 30.0, 0.01, 3, 4), vec![]);
    p.new_subscription = None;
    p.subscription_id = Some(id(500));
    assert!(matches!(
        put_intent(&s, p).unwrap_err(),
        DomainError::NotManager { .. }
    ));
}

fn sub_cmd(extents: PreparedVolume, version: Option<String>) -> PutSubscription {
    PutSubscription {
        id: id(600),
        manager: "watcher".into(),
        existing_version: version,
        extents,
        uss_base_url: "https://watcher.example".into(),
        notify_for_operational_intents: true,
        notify_for_constraints: false,
        now: NOW,
        start_given: true,
        end_given: true,
        max_per_area: 10,
    }
}

fn field_of(e: DomainError) -> String {
    match e {
        DomainError::InvalidInput { field, .. } => field,
        other => panic!("not an input error: {other:?}"),
    }
}

#[test]
fn a_subscription_lasts_at_most_a_day_and_starts_at_most_five_minutes_ago() {
    let s = AirspaceState::default();
    // Exactly 24 h is allowed; a microsecond more is not.
    put_subscription(&s, sub_cmd(square(50.0, 30.0, 0.1, 0, 24), None)).unwrap();
    let mut long = square(50.0, 30.0, 0.1, 0, 24);
    long.set_time(long.time.0, Timestamp(long.time.1.0 + 1));
    let e = put_subscription(&s, sub_cmd(long, None)).unwrap_err();
    assert_eq!(field_of(e), "extents.time_end");
    // A start given up to 5 min in the past is clock skew; more is refused.
    let mut v = square(50.0, 30.0, 0.1, 0, 2);
    v.set_time(Timestamp(NOW.0 - MAX_START_SKEW_S * 1_000_000), v.time.1);
    put_subscription(&s, sub_cmd(v.clone(), None)).unwrap();
    v.set_time(Timestamp(v.time.0.0 - 1), v.time.1);
    let e = put_subscription(&s, sub_cmd(v.clone(), None)).unwrap_err();
    assert_eq!(field_of(e), "extents.time_start");
    // Defaulted by the node (not given), an old start is not the client's.
    let mut c = sub_cmd(v, None);
    c.start_given = false;
    put_subscription(&s, c).unwrap();
}

#[test]
fn an_update_keeps_the_bounds_it_does_not_give() {
    let mut s = AirspaceState::default();
    run(&mut s, |s| {
        put_subscription(s, sub_cmd(square(50.0, 30.0, 0.1, 1, 20), None))
    });
    let old = s.subscription(&id(600)).unwrap().clone();
    // The node defaults both to now … now + 24 h; not given, they stay.
    let mut c = sub_cmd(square(50.0, 30.0, 0.2, 0, 24), Some(old.version.clone()));
    c.start_given = false;
    c.end_given = false;
    run(&mut s, |s| put_subscription(s, c));
    let new = s.subscription(&id(600)).unwrap();
    assert_eq!(
        (new.time_start, new.time_end),
        (old.time_start, old.time_end)
    );
    assert_eq!(new.extents[0].time, (old.time_start, old.time_end));
    assert_eq!(new.extents[0].volume.time_end, Some(old.time_end));
    // A given end replaces the old one, and is checked against the kept start.
    let mut c = sub_cmd(square(50.0, 30.0, 0.2, 0, 26), Some(new.version.clone()));
    c.start_given = false;
    let e = put_subscription(&s, c).unwrap_err();
    assert_eq!(field_of(e), "extents.time_end", "1 h … 26 h is 25 h");
}

#[test]
fn expiry_removes_ended_entities_and_their_conflicts() {
    let mut s = AirspaceState::default();
    let (a, _) = intent_of(run(&mut s, |s| {
        put_intent(
            s,
            put(1, "alliance", square(50.0, 30.0, 0.01, 0, 1), vec![]),
        )
    }));
    run(&mut s, |s| {
        put_intent(
            s,
            put(2, "federation", square(50.0, 30.0, 0.01, 0, 3), vec![a.ovn]),
        )
    });
    assert_eq!(s.counts().conflicts, 1);
    let later = Timestamp(NOW.0 + 2 * HOUR);
    let d = expire(&s, later, 60).unwrap();
    assert_eq!(
        d.outcome,
        Outcome::Expired {
            intents: 1,
            constraints: 0,
            subscriptions: 1
        }
    );
    s.apply(&d.events);
    assert!(s.intent(&id(1)).is_none());
    assert!(s.intent(&id(2)).is_some());
    assert_eq!(s.counts().conflicts, 0);
    assert_eq!(s.counts().subscriptions, 1);
}

#[test]
fn same_manager_overlaps_are_not_conflicts() {
    let mut s = AirspaceState::default();
    let (a, _) = intent_of(run(&mut s, |s| {
        put_intent(
            s,
            put(1, "alliance", square(50.0, 30.0, 0.01, 0, 2), vec![]),
        )
    }));
    run(&mut s, |s| {
        put_intent(
            s,
            put(2, "alliance", square(50.0, 30.0, 0.01, 0, 2), vec![a.ovn]),
        )
    });
    assert_eq!(s.counts().conflicts, 0);
}

#[test]
fn reloading_a_state_rebuilds_index_and_conflicts() {
    let mut s = AirspaceState::default();
    let (a, _) = intent_of(run(&mut s, |s| {
        put_intent(
            s,
            put(1, "alliance", square(50.0, 30.0, 0.01, 0, 2), vec![]),
        )
    }));
    run(&mut s, |s| {
        put_intent(
            s,
            put(2, "federation", square(50.0, 30.0, 0.01, 0, 3), vec![a.ovn]),
        )
    });
    let intents: Vec<_> = s.intents().cloned().collect();
    let subs: Vec<_> = s.subscriptions().cloned().collect();
    // Round-trip through the persisted form.
    let json = serde_json::to_string(&intents).unwrap();
    let back: Vec<OperationalIntent> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, intents);
    let r = AirspaceState::load(s.seq(), back, vec![], subs, vec![], vec![]);
    assert_eq!(r.counts(), s.counts());
    assert_eq!(
        r.intents_intersecting(&[square(50.0, 30.0, 0.001, 0, 1)])
            .len(),
        2
    );
    assert_eq!(r.dependents(&a.subscription_id.unwrap()), vec![a.id]);
}

#[test]
fn reloading_many_entities_finds_exactly_the_conflicts_built_one_write_at_a_time() {
    let mut s = AirspaceState::default();
    // Constraints over parts of the grid (conflicts with every intent they
    // meet, whoever manages it).
    for (n, (lat, lng, hours)) in [
        (50.03, 30.03, (0, 3)),
        (50.08, 30.05, (2, 9)),
        (50.0, 30.1, (5, 6)),
    ]
    .into_iter()
    .enumerate()
    {
        let c = put_constraint(
            &s,
            PutConstraint {
                id: id(5000 + n as u128),
                manager: "authority".into(),
                existing_ovn: None,
                extents: vec![square(lat, lng, 0.02, hours.0, hours.1)],
                uss_base_url: "https://authority.example".into(),
                new_ovn: Ovn(format!("constraint-ovn-{n}")),
                now: NOW,
            },
        );
        run(&mut s, |_| c);
    }
    // 90 intents of three managers on a tight grid: many overlaps, some
    // between managers (conflicts), some within one (not); every seventh
    // has a second volume, so that two intents can meet twice.
    for n in 0..90u128 {
        let manager = ["alliance", "federation", "neutral"][(n % 3) as usize];
        let (lat, lng) = (50.0 + (n % 9) as f64 * 0.012, 30.0 + (n / 9) as f64 * 0.012);
        let mut p = put(
            n + 1,
            manager,
            square(lat, lng, 0.01, (n % 4) as i64, 4 + (n % 5) as i64),
            vec![],
        );
        if n % 7 == 0 {
            p.extents
                .push(square(lat + 0.011, lng, 0.01, 6 + (n % 3) as i64, 9));
        }
        // Every OVN held (the key check reaches wider than conflicts).
        p.key = s.intents().map(|i| i.ovn.clone()).collect();
        run(&mut s, |s| put_intent(s, p));
    }
    // Every eleventh deleted again (with its implicit subscription).
    for n in (0..90u128).step_by(11) {
        let i = s.intent(&id(n + 1)).unwrap().clone();
        run(&mut s, |s| {
            delete_intent(
                s,
                DeleteIntent {
                    id: i.id,
                    manager: i.manager.clone(),
                    ovn: i.ovn.clone(),
                },
            )
        });
    }
    let conflicts = |s: &AirspaceState| {
        let mut c: Vec<Conflict> = s.conflicts().cloned().collect();
        c.sort_by_key(|c| (c.a.id, c.b.id));
        c
    };
    let built = conflicts(&s);
    assert!(built.len() > 100, "the grid overlaps: {}", built.len());
    let with_constraints = built
        .iter()
        .filter(|c| c.kind == ConflictKind::IntentConstraint)
        .count();
    assert!(with_constraints > 5, "constraints met: {with_constraints}");
    let r = AirspaceState::load(
        s.seq(),
        s.intents().cloned().collect(),
        s.constraints().cloned().collect(),
        s.subscriptions().cloned().collect(),
        vec![],
        vec![],
    );
    assert_eq!(conflicts(&r), built);
    assert_eq!(r.counts(), s.counts());
    // What each manager stores, counted write by write (updates and
    // deletions included), is what a reload counts.
    let managers: std::collections::BTreeSet<String> =
        s.intents().map(|i| i.manager.clone()).collect();
    assert!(!managers.is_empty());
    for m in managers {
        assert!(s.stored_points(&m) > 0);
        assert_eq!(r.stored_points(&m), s.stored_points(&m), "{m}");
    }
}

fn at(h: i64) -> Timestamp {
    Timestamp(NOW.0 + h * HOUR)
}

#[test]
fn an_area_of_interest_is_an_instant_a_window_or_nothing() {
    let limits = Limits::default();
    let area = |start: Option<i64>, end: Option<i64>| {
        let mut v = square(50.0, 30.0, 0.01, 0, 1).volume;
        v.time_start = start.map(at);
        v.time_end = end.map(at);
        area_of_interest(v, NOW, &limits, "area_of_interest")
    };
    // No start: from now on.
    assert_eq!(area(None, Some(2)).unwrap().unwrap().time, (NOW, at(2)));
    // No start and an end already past: a query that can match nothing.
    assert!(area(None, Some(-1)).unwrap().is_none());
    // Start = end: that instant.
    let instant = area(Some(1), Some(1)).unwrap().unwrap();
    assert_eq!(instant.time, (at(1), Timestamp(at(1).0 + 1)));
    // An explicit end before an explicit start is an error naming the field.
    match area(Some(2), Some(1)).unwrap_err() {
        DomainError::InvalidInput { field, .. } => assert_eq!(field, "area_of_interest.time_end"),
        other => panic!("{other:?}"),
    }
    // An instant query finds what is under way then, and not what ended.
    let mut s = AirspaceState::default();
    run(&mut s, |s| {
        put_intent(
            s,
            put(1, "alliance", square(50.0, 30.0, 0.01, 0, 2), vec![]),
        )
    });
    let found = |h: i64| {
        let a = area(Some(h), Some(h)).unwrap().unwrap();
        s.intents_intersecting(&[a]).len()
    };
    assert_eq!((found(0), found(1), found(2)), (1, 1, 0));
}

#[test]
fn an_entity_may_have_volumes_in_the_past_if_it_has_not_ended() {
    let s = AirspaceState::default();
    let mut p = put(1, "alliance", square(50.0, 30.0, 0.01, -3, -2), vec![]);
    p.extents.push(square(50.0, 30.0, 0.01, -1, 1));
    assert!(put_intent(&s, p.clone()).is_ok());
    p.extents.pop();
    match put_intent(&s, p).unwrap_err() {
        DomainError::InvalidInput { field, .. } => assert_eq!(field, "extents[0].time_end"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_implicit_subscription_grows_to_cover_its_intents_new_extents() {
    let mut s = AirspaceState::default();
    let (a, _) = intent_of(run(&mut s, |s| {
        put_intent(
            s,
            put(1, "alliance", square(50.0, 30.0, 0.01, 0, 2), vec![]),
        )
    }));
    let sub = a.subscription_id.unwrap();
    // Update naming the implicit subscription, with extents it does not cover.
    let mut p = put(1, "alliance", square(50.0, 30.05, 0.01, 1, 4), vec![]);
    p.existing_ovn = Some(a.ovn.clone());
    p.new_ovn = Ovn("ovn-1-2".into());
    p.new_subscription = None;
    p.subscription_id = Some(sub);
    let (b, _) = intent_of(run(&mut s, |s| put_intent(s, p)));
    assert_eq!(b.subscription_id, Some(sub));
    let grown = s.subscription(&sub).unwrap();
    assert!(grown.implicit);
    assert_eq!((grown.time_start, grown.time_end), (at(1), at(4)));
    assert!(
        b.extents
            .iter()
            .all(|v| grown.extents.iter().any(|g| g.covers(v)))
    );

    // An explicit subscription does not grow: the write is refused.
    watch(&mut s);
    let mut p = put(2, "watcher", square(50.5, 30.0, 0.01, 0, 1), vec![]);
    p.new_subscription = None;
    p.subscription_id = Some(id(500));
    match put_intent(&s, p).unwrap_err() {
        DomainError::InvalidInput { field, .. } => assert_eq!(field, "subscription_id"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_key_check_reaches_as_far_as_the_reference_dss_reads_an_entity() {
    // Alliance: two volumes at the same place, one low and one high. The
    // reference DSS reads it as one box from 0 to 500 m... here from 0 to
    // 100 m and 400 to 500 m.
    let mut s = AirspaceState::default();
    let low = {
        let mut v = square(50.0, 30.0, 0.01, 0, 2).volume;
        v.altitude_lower_m = Some(0.0);
        v.altitude_upper_m = Some(100.0);
        prepare(v, &Limits::default()).unwrap()
    };
    let mut high = low.volume.clone();
    high.altitude_lower_m = Some(400.0);
    high.altitude_upper_m = Some(500.0);
    high.outline = Outline::Circle {
        center: LatLng {
            lat: 50.2,
            lng: 30.2,
        },
        radius_m: 100.0,
    };
    let mut p = put(1, "alliance", low, vec![]);
    p.extents.push(prepare(high, &Limits::default()).unwrap());
    let (a, _) = intent_of(run(&mut s, |s| put_intent(s, p)));
    // Federation at 200-300 m over Alliance's low square: no exact 4D
    // intersection, so no conflict; but within Alliance's box, so the key
    // check asks for its OVN, as every DSS would.
    let mut v = square(50.0, 30.0, 0.01, 0, 2).volume;
    v.altitude_lower_m = Some(200.0);
    v.altitude_upper_m = Some(300.0);
    let mid = prepare(v, &Limits::default()).unwrap();
    match put_intent(&s, put(2, "federation", mid.clone(), vec![])).unwrap_err() {
        DomainError::KeyCheckFailed {
            missing_operational_intents,
            ..
        } => assert_eq!(missing_operational_intents[0].id, a.id),
        other => panic!("{other:?}"),
    }
    run(&mut s, |s| {
        put_intent(s, put(2, "federation", mid, vec![a.ovn.clone()]))
    });
    assert_eq!(
        s.conflicts().count(),
        0,
        "a conflict stays an exact 4D overlap"
    );
    // Above the whole box: nothing to present.
    let mut v = square(50.0, 30.0, 0.01, 0, 2).volume;
    v.altitude_lower_m = Some(600.0);
    v.altitude_upper_m = Some(700.0);
    let above = prepare(v, &Limits::default()).unwrap();
    assert!(put_intent(&s, put(3, "federation", above, vec![])).is_ok());
}

#[test]
fn a_subscription_update_checks_its_own_fields_first_and_becomes_explicit() {
    let mut s = AirspaceState::default();
    let (a, _) = intent_of(run(&mut s, |s| {
        put_intent(
            s,
            put(1, "alliance", square(50.0, 30.0, 0.01, 0, 2), vec![]),
        )
    }));
    let sub = a.subscription_id.unwrap();
    let version = s.subscription(&sub).unwrap().version.clone();
    let mut cmd = PutSubscription {
        id: sub,
        manager: "alliance".into(),
        existing_version: None,
        extents: square(50.0, 30.0, 0.1, 0, 24),
        uss_base_url: "https://alliance.example".into(),
        notify_for_operational_intents: false,
        notify_for_constraints: false,
        now: NOW,
        start_given: true,
        end_given: true,
        max_per_area: 10,
    };
    // Asking for no notification is the request's own fault (400), even
    // where the subscription exists and no version was given.
    match put_subscription(&s, cmd.clone()).unwrap_err() {
        DomainError::InvalidInput { field, .. } => {
            assert_eq!(field, "notify_for_operational_intents")
        }
        other => panic!("{other:?}"),
    }
    cmd.notify_for_operational_intents = true;
    cmd.existing_version = Some(version);
    // Starting a few minutes after its intent starts still serves it.
    let mut late = square(50.0, 30.0, 0.1, 0, 24);
    late.time.0 = Timestamp(NOW.0 + DEPENDENT_START_SLACK_S * 1_000_000 - 1);
    cmd.extents = late;
    match run(&mut s, |s| put_subscription(s, cmd)) {
        Outcome::Subscription { subscription, .. } => {
            assert!(!subscription.implicit, "written explicitly, it is explicit")
        }
        other => panic!("{other:?}"),
    }
    // So deleting the intent keeps it.
    let d = DeleteIntent {
        id: id(1),
        manager: "alliance".into(),
        ovn: a.ovn,
    };
    run(&mut s, |s| delete_intent(s, d));
    assert!(s.subscription(&sub).is_some());
}

#[test]
fn a_client_may_have_at_most_its_quota_of_subscriptions_in_one_area() {
    let mut s = AirspaceState::default();
    let here = || square(10.0, 10.0, 0.1, 0, 2);
    let sub = |n: u128, manager: &str, v: PreparedVolume, version: Option<String>| {
        let mut c = sub_cmd(v, version);
        c.id = id(n);
        c.manager = manager.into();
        c.max_per_area = 3;
        c
    };
    for n in 0..2 {
        run(&mut s, |st| {
            put_subscription(st, sub(700 + n, "watcher", here(), None))
        });
    }
    // An intent's implicit subscription here does not count: a third
    // explicit one is still accepted.
    run(&mut s, |st| {
        put_intent(st, put(1, "watcher", here(), vec![]))
    });
    run(&mut s, |st| {
        put_subscription(st, sub(702, "watcher", here(), None))
    });
    let e = put_subscription(&s, sub(710, "watcher", here(), None)).unwrap_err();
    let DomainError::QuotaExceeded { field, message } = e else {
        panic!("a quota refusal: {e:?}");
    };
    assert_eq!(field, "extents");
    assert!(message.contains("at most 3"), "{message}");
    // Another client, another area, another time, an update: not held back.
    put_subscription(&s, sub(711, "other", here(), None)).unwrap();
    put_subscription(&s, sub(712, "watcher", square(30.0, 30.0, 0.1, 0, 2), None)).unwrap();
    put_subscription(&s, sub(713, "watcher", square(10.0, 10.0, 0.1, 5, 7), None)).unwrap();
    let version = s.subscription(&id(700)).unwrap().version.clone();
    put_subscription(&s, sub(700, "watcher", here(), Some(version))).unwrap();
}

#[test]
fn a_report_is_bounded_in_size_and_a_reporters_reports_per_day() {
    let mut s = AirspaceState::default();
    let report = |n: u32, who: &str, at: Timestamp, bytes: usize| Report {
        id: format!("r{n}"),
        reporter: who.into(),
        received: at,
        exchange_json: "x".repeat(bytes),
    };
    let e = file_report(&s, report(0, "uss1", NOW, MAX_REPORT_BYTES + 1), 2).unwrap_err();
    assert!(
        matches!(&e, DomainError::TooLarge { field, .. } if field == "exchange"),
        "{e:?}"
    );
    run(&mut s, |st| {
        file_report(st, report(1, "uss1", NOW, MAX_REPORT_BYTES), 2)
    });
    run(&mut s, |st| file_report(st, report(2, "uss1", NOW, 10), 2));
    let e = file_report(&s, report(3, "uss1", NOW, 10), 2).unwrap_err();
    assert!(matches!(e, DomainError::QuotaExceeded { .. }), "{e:?}");
    file_report(&s, report(4, "uss2", NOW, 10), 2).expect("another reporter has its own");
    // A day later the first ones no longer count.
    let later = NOW.plus_seconds(crate::state::REPORT_WINDOW_S);
    run(&mut s, |st| {
        file_report(st, report(5, "uss1", later, 10), 2)
    });
    // A store reloading the reports counts them again.
    let stamps = |st: &AirspaceState| st.reports_since_a_day("uss1", later);
    let reloaded = AirspaceState::load(
        s.seq(),
        vec![],
        vec![],
        vec![],
        vec![],
        [NOW, NOW, later]
            .into_iter()
            .map(|t| ReportStamp {
                reporter: "uss1".into(),
                received: t,
            })
            .collect(),
    );
    assert_eq!(stamps(&reloaded), stamps(&s));
    assert_eq!(reloaded.counts().reports, 3);
}
