//! The F3548-21 DSS rules as pure decisions: `fn(state, command) ->
//! Result<Decision, DomainError>`. A decision is the list of events to commit
//! and the outcome to answer with; nothing here changes the state.

use crate::error::DomainError;
use crate::geometry::{Limits, PreparedVolume, Volume4D};
use crate::model::*;
use crate::state::AirspaceState;
use crate::timestamp::Timestamp;
use std::collections::{BTreeMap, HashSet};

/// A change to commit. The store persists these and applies them to its state.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    IntentUpserted(OperationalIntent),
    IntentRemoved(EntityId),
    ConstraintUpserted(Constraint),
    ConstraintRemoved(EntityId),
    SubscriptionUpserted(Subscription),
    /// Subscriptions whose notification index a write bumped: (id, the new
    /// index). Nothing else of them changes.
    SubscriptionsNotified(Vec<(SubscriptionId, i32)>),
    SubscriptionRemoved(SubscriptionId),
    AvailabilitySet(UssAvailability),
    ReportFiled(Report),
}

/// What the caller is told once the events are committed.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Intent {
        intent: OperationalIntent,
        subscribers: Vec<SubscriberToNotify>,
    },
    Constraint {
        constraint: Constraint,
        subscribers: Vec<SubscriberToNotify>,
    },
    Subscription {
        subscription: Subscription,
        intents: Vec<OperationalIntent>,
        constraints: Vec<Constraint>,
    },
    SubscriptionDeleted(Subscription),
    Availability(UssAvailability),
    Report(Report),
    Expired {
        intents: usize,
        constraints: usize,
        subscriptions: usize,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub events: Vec<Event>,
    pub outcome: Outcome,
}

/// `new_subscription` of an F3548 `PutOperationalIntentReferenceParameters`.
#[derive(Clone, Debug, PartialEq)]
pub struct ImplicitSubscription {
    pub uss_base_url: String,
    pub notify_for_constraints: bool,
}

/// Whether the key holds `ovn` (or, for a peer's copy, an OVN of its hash).
fn presented(key: &HashSet<&Ovn>, ovn: &Ovn) -> bool {
    key.contains(ovn)
        || (ovn.as_str().starts_with(crate::model::OVN_HASH_PREFIX)
            && key.iter().any(|k| crate::model::key_matches(ovn, k)))
}

/// The 4D area an F3548 `.../query` asks about, or `None` when it can
/// match nothing (an area that ended before now, its start left out).
///
/// As the reference DSS reads it: an absent start is "from now on"; a
/// start equal to its end is that instant (matching what is under way
/// then); an end before an explicit start is an error, naming the field.
pub fn area_of_interest(
    mut area: Volume4D,
    now: Timestamp,
    limits: &Limits,
    field: &str,
) -> Result<Option<PreparedVolume>, DomainError> {
    let start_given = area.time_start.is_some();
    let start = *area.time_start.get_or_insert(now);
    if let Some(end) = area.time_end {
        if end < start {
            if !start_given {
                return Ok(None);
            }
            return Err(invalid(
                format!("{field}.time_end"),
                "the end of the area of interest is before its start",
            ));
        }
        if end == start {
            // An instant: what holds at `start` (entities hold on [start, end)).
            area.time_end = Some(Timestamp::from_unix_micros(
                start.unix_micros().saturating_add(1),
            ));
        }
    }
    crate::geometry::prepare(area, limits)
        .map(Some)
        .map_err(|e| e.under(field).into())
}

/// Create (`existing_ovn: None`) or update an operational intent reference.
#[derive(Clone, Debug)]
pub struct PutIntent {
    pub id: EntityId,
    pub manager: String,
    pub existing_ovn: Option<Ovn>,
    pub extents: Vec<PreparedVolume>,
    pub key: Vec<Ovn>,
    pub state: OperationalIntentState,
    pub uss_base_url: String,
    pub subscription_id: Option<SubscriptionId>,
    pub new_subscription: Option<ImplicitSubscription>,
    /// Fresh values drawn by the node: the OVN of the new version, and the id
    /// an implicit subscription gets if one is created.
    pub new_ovn: Ovn,
    pub new_subscription_id: SubscriptionId,
    pub now: Timestamp,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> DomainError {
    DomainError::InvalidInput {
        field: field.into(),
        message: message.into(),
    }
}

/// F3548: every extent of an entity carries both time bounds and both
/// altitudes, and may not have ended already.
fn check_entity_extents(extents: &[PreparedVolume], now: Timestamp) -> Result<(), DomainError> {
    if extents.is_empty() {
        return Err(invalid("extents", "at least one volume is required"));
    }
    for (i, v) in extents.iter().enumerate() {
        let missing = [
            (v.volume.time_start.is_none(), "time_start"),
            (v.volume.time_end.is_none(), "time_end"),
            (v.volume.altitude_lower_m.is_none(), "volume.altitude_lower"),
            (v.volume.altitude_upper_m.is_none(), "volume.altitude_upper"),
        ];
        if let Some((_, f)) = missing.iter().find(|(m, _)| *m) {
            return Err(invalid(
                format!("extents[{i}].{f}"),
                format!("{f} is required for every volume of an entity"),
            ));
        }
    }
    // F3548 and the reference DSS: the entity as a whole may not have ended;
    // single volumes of it may lie in the past.
    let (_, end) = time_bounds(extents);
    if end <= now {
        let last = extents
            .iter()
            .position(|v| v.time.1 == end)
            .unwrap_or_default();
        return Err(invalid(
            format!("extents[{last}].time_end"),
            "the entity ends in the past: at least one volume must end after now",
        ));
    }
    Ok(())
}

/// F3548 state machine: Accepted → Activated → {Nonconforming ⇄ Activated,
/// Contingent}; Nonconforming → Contingent; every state may be rewritten as
/// itself; Ended is reached by deletion. New intents start Accepted or
/// Activated.
pub fn transition_allowed(
    from: Option<OperationalIntentState>,
    to: OperationalIntentState,
) -> bool {
    use OperationalIntentState::*;
    match from {
        None => matches!(to, Accepted | Activated),
        Some(Accepted) => matches!(to, Accepted | Activated),
        Some(Activated) => matches!(to, Activated | Nonconforming | Contingent),
        Some(Nonconforming) => matches!(to, Nonconforming | Activated | Contingent),
        Some(Contingent) => matches!(to, Contingent),
    }
}

/// The subscriptions one write changes: written whole (an implicit
/// subscription made or updated), or only notified (index bumped).
#[derive(Default)]
struct SubscriptionChanges {
    upserted: BTreeMap<SubscriptionId, Subscription>,
    notified: BTreeMap<SubscriptionId, i32>,
}

impl SubscriptionChanges {
    /// The events, before the write's own: the subscriptions written
    /// whole, then one event for all the notified ones.
    fn into_events(self) -> Vec<Event> {
        let mut events: Vec<Event> = self
            .upserted
            .into_values()
            .map(Event::SubscriptionUpserted)
            .collect();
        if !self.notified.is_empty() {
            events.push(Event::SubscriptionsNotified(
                self.notified.into_iter().collect(),
            ));
        }
        events
    }
}

/// Bumps the notification index of every subscription (with `wants`) whose
/// extents meet `volumes`, collecting the changes in `changed`.
fn notify(
    state: &AirspaceState,
    volumes: &[PreparedVolume],
    wants: impl Fn(&Subscription) -> bool,
    changed: &mut SubscriptionChanges,
) -> Vec<SubscriberToNotify> {
    let mut by_url: BTreeMap<String, Vec<(SubscriptionId, i32)>> = BTreeMap::new();
    for s in state.subscriptions_intersecting(volumes) {
        if !wants(s) {
            continue;
        }
        // A subscription this write also rewrites is notified at its new URL.
        let (index, url) = match changed.upserted.get_mut(&s.id) {
            Some(u) => {
                u.notification_index = u.notification_index.saturating_add(1);
                (u.notification_index, &u.uss_base_url)
            }
            None => {
                let i = changed.notified.entry(s.id).or_insert(s.notification_index);
                *i = i.saturating_add(1);
                (*i, &s.uss_base_url)
            }
        };
        match by_url.get_mut(url) {
            Some(v) => v.push((s.id, index)),
            None => {
                by_url.insert(url.clone(), vec![(s.id, index)]);
            }
        }
    }
    by_url
        .into_iter()
        .map(|(uss_base_url, subscriptions)| SubscriberToNotify {
            uss_base_url,
            subscriptions,
        })
        .collect()
}

fn both(a: &[PreparedVolume], b: &[PreparedVolume]) -> Vec<PreparedVolume> {
    a.iter().chain(b.iter()).cloned().collect()
}

/// Removes an implicit subscription once no operational intent needs it.
fn drop_orphaned_implicit(
    state: &AirspaceState,
    sub: Option<SubscriptionId>,
    leaving: EntityId,
    events: &mut Vec<Event>,
) {
    let Some(sub) = sub else { return };
    let Some(s) = state.subscription(&sub) else {
        return;
    };
    if s.implicit && state.dependents(&sub).iter().all(|d| *d == leaving) {
        events.push(Event::SubscriptionRemoved(sub));
    }
}

/// The key check's reach. The reference DSS, and so every client, takes an
/// entity as one 4D box per entity: the union of its volumes' footprints,
/// between its lowest floor and highest ceiling, from its first start to
/// its last end. Two entities are relevant to each other when those meet.
/// That is wider than the exact 4D intersection Detente reports conflicts
/// by, never narrower, so the key check asks for every OVN either reading
/// would (a safe superset: an extra OVN is never missing). These volumes
/// find the candidates: each footprint, any altitude, over the entity's
/// whole time span; [`hulls_meet`] then compares the two boxes.
fn key_check_volumes(extents: &[PreparedVolume]) -> Vec<PreparedVolume> {
    let time = time_bounds(extents);
    extents
        .iter()
        .map(|v| {
            let mut v = v.clone();
            v.altitude = (f64::NEG_INFINITY, f64::INFINITY);
            v.time = time;
            v
        })
        .collect()
}

/// Whether the altitude and time spans of two entities overlap (see
/// [`key_check_volumes`]).
fn hulls_meet(a: &[PreparedVolume], b: &[PreparedVolume]) -> bool {
    let span = |e: &[PreparedVolume]| {
        e.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v.altitude.0), hi.max(v.altitude.1))
            })
    };
    let (ta, tb) = (time_bounds(a), time_bounds(b));
    let (aa, ab) = (span(a), span(b));
    ta.0 < tb.1 && tb.0 < ta.1 && aa.0 < ab.1 && ab.0 < aa.1
}

/// An implicit subscription widened to cover `extents` (the new extents of
/// intent `id`) and every other intent that depends on it.
fn grown_implicit(
    state: &AirspaceState,
    s: &Subscription,
    id: EntityId,
    extents: &[PreparedVolume],
    seq: u64,
) -> Subscription {
    let mut volumes: Vec<PreparedVolume> = state
        .dependents(&s.id)
        .iter()
        .filter(|d| **d != id)
        .filter_map(|d| state.intent(d))
        .flat_map(|d| d.extents.iter().cloned())
        .collect();
    volumes.extend(extents.iter().cloned());
    let (time_start, time_end) = time_bounds(&volumes);
    Subscription {
        version: seq.to_string(),
        extents: volumes,
        time_start,
        time_end,
        updated_seq: seq,
        ..s.clone()
    }
}

pub fn put_intent(state: &AirspaceState, cmd: PutIntent) -> Result<Decision, DomainError> {
    let existing = state.intent(&cmd.id);
    match (&cmd.existing_ovn, existing) {
        (None, Some(_)) => {
            return Err(DomainError::AlreadyExists {
                kind: "operational intent",
                id: cmd.id.to_string(),
            });
        }
        (Some(_), None) => {
            return Err(DomainError::NotFound {
                kind: "operational intent",
                id: cmd.id.to_string(),
            });
        }
        (Some(ovn), Some(old)) => {
            if old.manager != cmd.manager {
                return Err(DomainError::NotManager {
                    kind: "operational intent",
                    id: cmd.id.to_string(),
                });
            }
            if &old.ovn != ovn {
                return Err(DomainError::OvnMismatch {
                    kind: "operational intent",
                    id: cmd.id,
                });
            }
        }
        (None, None) => {}
    }
    let from = existing.map(|o| o.state);
    if !transition_allowed(from, cmd.state) {
        return Err(DomainError::InvalidTransition {
            from,
            to: cmd.state,
        });
    }
    // F3548 UssAvailabilityState: a Down USS may not create or keep an intent Accepted or Activated.
    if cmd.state.requires_key() && state.is_down(&cmd.manager) {
        return Err(DomainError::UssDown {
            uss: cmd.manager.clone(),
            action: "create or modify an Accepted or Activated operational intent",
        });
    }
    check_entity_extents(&cmd.extents, cmd.now)?;
    let seq = state.seq() + 1;
    let (time_start, time_end) = time_bounds(&cmd.extents);
    let mut changed = SubscriptionChanges::default();

    // Which subscription will keep this intent's manager informed.
    let old_sub = existing.and_then(|o| o.subscription_id);
    let subscription_id = if let Some(sid) = cmd.subscription_id {
        let s = state.subscription(&sid).ok_or_else(|| {
            invalid(
                "subscription_id",
                format!("subscription {sid} does not exist"),
            )
        })?;
        if s.manager != cmd.manager {
            return Err(DomainError::NotManager {
                kind: "subscription",
                id: sid.to_string(),
            });
        }
        if !s.notify_for_operational_intents {
            return Err(invalid(
                "subscription_id",
                "the subscription must notify for operational intents",
            ));
        }
        if let Some(i) = cmd
            .extents
            .iter()
            .position(|v| !s.extents.iter().any(|o| o.covers(v)))
        {
            if !s.implicit {
                return Err(invalid(
                    "subscription_id",
                    format!("subscription {sid} does not cover extents[{i}]"),
                ));
            }
            // An implicit subscription grows to keep covering what depends
            // on it (the reference DSS grows it the same way): its extents
            // become those of its other dependents plus this intent's.
            changed
                .upserted
                .insert(sid, grown_implicit(state, s, cmd.id, &cmd.extents, seq));
        }
        Some(sid)
    } else if let Some(ns) = &cmd.new_subscription {
        // Reuse the intent's own implicit subscription when it has one.
        let reuse = old_sub
            .and_then(|s| state.subscription(&s))
            .filter(|s| s.implicit && s.manager == cmd.manager);
        let id = reuse.map(|s| s.id).unwrap_or(cmd.new_subscription_id);
        let others_covered = state
            .dependents(&id)
            .iter()
            .filter(|d| **d != cmd.id)
            .filter_map(|d| state.intent(d))
            .all(|d| {
                d.extents
                    .iter()
                    .all(|v| cmd.extents.iter().any(|o| o.covers(v)))
            });
        if !others_covered {
            return Err(invalid(
                "new_subscription",
                "the implicit subscription is shared with other operational intents it would no longer cover",
            ));
        }
        changed.upserted.insert(
            id,
            Subscription {
                id,
                manager: cmd.manager.clone(),
                version: seq.to_string(),
                notification_index: reuse.map(|s| s.notification_index).unwrap_or(0),
                extents: cmd.extents.clone(),
                uss_base_url: ns.uss_base_url.clone(),
                notify_for_operational_intents: true,
                notify_for_constraints: ns.notify_for_constraints,
                implicit: true,
                time_start,
                time_end,
                updated_seq: seq,
            },
        );
        Some(id)
    } else if cmd.state.requires_subscription() {
        return Err(invalid(
            "new_subscription",
            format!(
                "an operational intent in state {} needs subscription_id or new_subscription",
                cmd.state.as_str()
            ),
        ));
    } else {
        None
    };

    // The key check (F3548 SCD: a write must prove knowledge of every relevant entity).
    if cmd.state.requires_key() {
        let key: HashSet<&Ovn> = cmd.key.iter().collect();
        let searched = key_check_volumes(&cmd.extents);
        let missing_operational_intents: Vec<OperationalIntent> = state
            .intents_intersecting(&searched)
            .into_iter()
            .filter(|o| o.id != cmd.id && o.time_end > cmd.now && !presented(&key, &o.ovn))
            .filter(|o| hulls_meet(&cmd.extents, &o.extents))
            .cloned()
            .collect();
        let checks_constraints = match subscription_id {
            Some(sid) => changed
                .upserted
                .get(&sid)
                .or_else(|| state.subscription(&sid))
                .is_some_and(|s| s.notify_for_constraints),
            None => false,
        };
        let missing_constraints: Vec<Constraint> = if checks_constraints {
            state
                .constraints_intersecting(&searched)
                .into_iter()
                .filter(|c| c.time_end > cmd.now && !presented(&key, &c.ovn))
                .filter(|c| hulls_meet(&cmd.extents, &c.extents))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        if !missing_operational_intents.is_empty() || !missing_constraints.is_empty() {
            return Err(DomainError::KeyCheckFailed {
                missing_operational_intents,
                missing_constraints,
            });
        }
    }

    let intent = OperationalIntent {
        id: cmd.id,
        manager: cmd.manager.clone(),
        version: existing.map(|o| o.version.saturating_add(1)).unwrap_or(1),
        state: cmd.state,
        ovn: cmd.new_ovn,
        extents: cmd.extents,
        uss_base_url: cmd.uss_base_url,
        subscription_id,
        time_start,
        time_end,
        updated_seq: seq,
    };
    let touched = both(
        existing.map(|o| o.extents.as_slice()).unwrap_or(&[]),
        &intent.extents,
    );
    let fresh_implicit: Option<SubscriptionId> =
        subscription_id.filter(|s| state.subscription(s).is_none());
    let subscribers = notify(
        state,
        &touched,
        |s| s.notify_for_operational_intents && Some(s.id) != fresh_implicit,
        &mut changed,
    );
    let mut events = changed.into_events();
    events.push(Event::IntentUpserted(intent.clone()));
    if old_sub != subscription_id {
        drop_orphaned_implicit(state, old_sub, cmd.id, &mut events);
    }
    Ok(Decision {
        events,
        outcome: Outcome::Intent {
            intent,
            subscribers,
        },
    })
}

#[derive(Clone, Debug)]
pub struct DeleteIntent {
    pub id: EntityId,
    pub manager: String,
    pub ovn: Ovn,
}

pub fn delete_intent(state: &AirspaceState, cmd: DeleteIntent) -> Result<Decision, DomainError> {
    let old = state.intent(&cmd.id).ok_or_else(|| DomainError::NotFound {
        kind: "operational intent",
        id: cmd.id.to_string(),
    })?;
    if old.manager != cmd.manager {
        return Err(DomainError::NotManager {
            kind: "operational intent",
            id: cmd.id.to_string(),
        });
    }
    if old.ovn != cmd.ovn {
        return Err(DomainError::OvnMismatch {
            kind: "operational intent",
            id: cmd.id,
        });
    }
    if state.is_down(&cmd.manager) {
        return Err(DomainError::UssDown {
            uss: cmd.manager,
            action: "delete an operational intent",
        });
    }
    let mut changed = SubscriptionChanges::default();
    let mut events = Vec::new();
    drop_orphaned_implicit(state, old.subscription_id, old.id, &mut events);
    let removed: HashSet<SubscriptionId> = events
        .iter()
        .filter_map(|e| {
            if let Event::SubscriptionRemoved(s) = e {
                Some(*s)
            } else {
                None
            }
        })
        .collect();
    let subscribers = notify(
        state,
        &old.extents,
        |s| s.notify_for_operational_intents && !removed.contains(&s.id),
        &mut changed,
    );
    let mut all = changed.into_events();
    all.push(Event::IntentRemoved(old.id));
    all.extend(events);
    Ok(Decision {
        events: all,
        outcome: Outcome::Intent {
            intent: old.clone(),
            subscribers,
        },
    })
}

#[derive(Clone, Debug)]
pub struct PutConstraint {
    pub id: EntityId,
    pub manager: String,
    pub existing_ovn: Option<Ovn>,
    pub extents: Vec<PreparedVolume>,
    pub uss_base_url: String,
    pub new_ovn: Ovn,
    pub now: Timestamp,
}

pub fn put_constraint(state: &AirspaceState, cmd: PutConstraint) -> Result<Decision, DomainError> {
    let existing = state.constraint(&cmd.id);
    match (&cmd.existing_ovn, existing) {
        (None, Some(_)) => {
            return Err(DomainError::AlreadyExists {
                kind: "constraint",
                id: cmd.id.to_string(),
            });
        }
        (Some(_), None) => {
            return Err(DomainError::NotFound {
                kind: "constraint",
                id: cmd.id.to_string(),
            });
        }
        (Some(ovn), Some(old)) => {
            if old.manager != cmd.manager {
                return Err(DomainError::NotManager {
                    kind: "constraint",
                    id: cmd.id.to_string(),
                });
            }
            if &old.ovn != ovn {
                return Err(DomainError::OvnMismatch {
                    kind: "constraint",
                    id: cmd.id,
                });
            }
        }
        (None, None) => {}
    }
    check_entity_extents(&cmd.extents, cmd.now)?;
    let seq = state.seq() + 1;
    let (time_start, time_end) = time_bounds(&cmd.extents);
    let constraint = Constraint {
        id: cmd.id,
        manager: cmd.manager,
        version: existing.map(|o| o.version.saturating_add(1)).unwrap_or(1),
        ovn: cmd.new_ovn,
        extents: cmd.extents,
        uss_base_url: cmd.uss_base_url,
        time_start,
        time_end,
        updated_seq: seq,
    };
    let touched = both(
        existing.map(|o| o.extents.as_slice()).unwrap_or(&[]),
        &constraint.extents,
    );
    let mut changed = SubscriptionChanges::default();
    let subscribers = notify(state, &touched, |s| s.notify_for_constraints, &mut changed);
    let mut events = changed.into_events();
    events.push(Event::ConstraintUpserted(constraint.clone()));
    Ok(Decision {
        events,
        outcome: Outcome::Constraint {
            constraint,
            subscribers,
        },
    })
}

#[derive(Clone, Debug)]
pub struct DeleteConstraint {
    pub id: EntityId,
    pub manager: String,
    pub ovn: Ovn,
}

pub fn delete_constraint(
    state: &AirspaceState,
    cmd: DeleteConstraint,
) -> Result<Decision, DomainError> {
    let old = state
        .constraint(&cmd.id)
        .ok_or_else(|| DomainError::NotFound {
            kind: "constraint",
            id: cmd.id.to_string(),
        })?;
    if old.manager != cmd.manager {
        return Err(DomainError::NotManager {
            kind: "constraint",
            id: cmd.id.to_string(),
        });
    }
    if old.ovn != cmd.ovn {
        return Err(DomainError::OvnMismatch {
            kind: "constraint",
            id: cmd.id,
        });
    }
    let mut changed = SubscriptionChanges::default();
    let subscribers = notify(
        state,
        &old.extents,
        |s| s.notify_for_constraints,
        &mut changed,
    );
    let mut events = changed.into_events();
    events.push(Event::ConstraintRemoved(old.id));
    Ok(Decision {
        events,
        outcome: Outcome::Constraint {
            constraint: old.clone(),
            subscribers,
        },
    })
}

/// How much later than a dependent intent a subscription may start and
/// still serve it (the reference DSS's maximum latency, 5 minutes).
pub const DEPENDENT_START_SLACK_S: i64 = 300;

/// The longest a subscription may last, end minus start (F3548 leaves it to
/// the DSS; the reference DSS allows 24 hours and clients are built to it).
pub const MAX_SUBSCRIPTION_S: i64 = 24 * 3600;

/// How far in the past an explicitly given subscription start may lie (the
/// reference DSS's allowance for clock skew, 5 minutes).
pub const MAX_START_SKEW_S: i64 = 300;

/// Create (`existing_version: None`) or update an explicit subscription.
#[derive(Clone, Debug)]
pub struct PutSubscription {
    pub id: SubscriptionId,
    pub manager: String,
    pub existing_version: Option<String>,
    /// One volume, with its time bounds defaulted by the node (start: now;
    /// end: a default duration after the start). On an update, a bound the
    /// client did not give is the subscription's current one instead.
    pub extents: PreparedVolume,
    /// Whether the client gave `time_start` / `time_end`.
    pub start_given: bool,
    pub end_given: bool,
    pub uss_base_url: String,
    pub notify_for_operational_intents: bool,
    pub notify_for_constraints: bool,
    pub now: Timestamp,
    /// Most live explicit subscriptions one client may have meeting any one
    /// subscription's extents (the reference DSS: 10 per area).
    pub max_per_area: usize,
}

pub fn put_subscription(
    state: &AirspaceState,
    cmd: PutSubscription,
) -> Result<Decision, DomainError> {
    // The request's own faults first (400), as the reference DSS checks them.
    if !cmd.notify_for_operational_intents && !cmd.notify_for_constraints {
        return Err(invalid(
            "notify_for_operational_intents",
            "at least one of notify_for_operational_intents and notify_for_constraints must be true",
        ));
    }
    let existing = state.subscription(&cmd.id);
    let mut cmd = cmd;
    if let Some(old) = existing.filter(|_| cmd.existing_version.is_some()) {
        let (mut start, mut end) = cmd.extents.time;
        if !cmd.start_given {
            start = old.time_start;
        }
        if !cmd.end_given {
            end = old.time_end;
        }
        cmd.extents.set_time(start, end);
    }
    let (start, end) = cmd.extents.time;
    if cmd.start_given && start < cmd.now.minus_seconds(MAX_START_SKEW_S) {
        return Err(invalid(
            "extents.time_start",
            format!("the start may be at most {MAX_START_SKEW_S} s in the past"),
        ));
    }
    if end <= cmd.now {
        return Err(invalid(
            "extents.time_end",
            "the end time may not be in the past",
        ));
    }
    if end < start {
        return Err(invalid(
            "extents.time_end",
            "the end time must not be before the start time",
        ));
    }
    if end.unix_micros() - start.unix_micros() > MAX_SUBSCRIPTION_S * 1_000_000 {
        return Err(invalid(
            "extents.time_end",
            format!(
                "a subscription may last at most {} hours",
                MAX_SUBSCRIPTION_S / 3600
            ),
        ));
    }
    match (&cmd.existing_version, existing) {
        (None, Some(_)) => {
            return Err(DomainError::AlreadyExists {
                kind: "subscription",
                id: cmd.id.to_string(),
            });
        }
        (Some(_), None) => {
            return Err(DomainError::NotFound {
                kind: "subscription",
                id: cmd.id.to_string(),
            });
        }
        (Some(v), Some(old)) => {
            if old.manager != cmd.manager {
                // F3548: 409 when the subscription is managed by a different client.
                return Err(DomainError::AlreadyExists {
                    kind: "subscription managed by another client",
                    id: cmd.id.to_string(),
                });
            }
            if &old.version != v {
                return Err(DomainError::VersionMismatch { id: cmd.id });
            }
        }
        (None, None) => {}
    }
    // A client's own live subscriptions meeting these extents (the one
    // updated aside): at most max_per_area, as the reference DSS (which
    // counts per S2 cell; here per extents, in space and time).
    let mine = state
        .subscriptions_intersecting(std::slice::from_ref(&cmd.extents))
        .into_iter()
        .filter(|s| s.manager == cmd.manager && !s.implicit && s.id != cmd.id)
        .filter(|s| s.time_end > cmd.now)
        .count();
    if mine >= cmd.max_per_area {
        return Err(DomainError::QuotaExceeded {
            field: "extents".into(),
            message: format!(
                "this client already has {mine} subscriptions in this area; at most {} are allowed (delete one, or subscribe to a wider area once)",
                cmd.max_per_area
            ),
        });
    }
    let dependents = state.dependents(&cmd.id);
    if !dependents.is_empty() {
        if !cmd.notify_for_operational_intents {
            return Err(DomainError::SubscriptionInUse {
                id: cmd.id,
                dependents,
                message: "it must keep notifying for operational intents".into(),
            });
        }
        // The reference DSS lets the subscription start up to the maximum
        // latency (5 min) after a dependent intent starts.
        let mut relaxed = cmd.extents.clone();
        relaxed.time.0 = relaxed.time.0.minus_seconds(DEPENDENT_START_SLACK_S);
        let uncovered: Vec<EntityId> = dependents
            .iter()
            .filter_map(|d| state.intent(d))
            .filter(|i| !i.extents.iter().all(|v| relaxed.covers(v)))
            .map(|i| i.id)
            .collect();
        if !uncovered.is_empty() {
            return Err(DomainError::SubscriptionInUse {
                id: cmd.id,
                dependents: uncovered,
                message: "the new extents would no longer cover them".into(),
            });
        }
    }
    let seq = state.seq() + 1;
    let (time_start, time_end) = cmd.extents.time;
    let subscription = Subscription {
        id: cmd.id,
        manager: cmd.manager,
        version: seq.to_string(),
        notification_index: existing.map(|s| s.notification_index).unwrap_or(0),
        extents: vec![cmd.extents],
        uss_base_url: cmd.uss_base_url,
        notify_for_operational_intents: cmd.notify_for_operational_intents,
        notify_for_constraints: cmd.notify_for_constraints,
        // Written through the subscriptions endpoint, a subscription is the
        // client's own from now on: it outlives the intents it serves, as
        // in the reference DSS.
        implicit: false,
        time_start,
        time_end,
        updated_seq: seq,
    };
    let intents = if subscription.notify_for_operational_intents {
        state
            .intents_intersecting(&subscription.extents)
            .into_iter()
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let constraints = if subscription.notify_for_constraints {
        state
            .constraints_intersecting(&subscription.extents)
            .into_iter()
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    Ok(Decision {
        events: vec![Event::SubscriptionUpserted(subscription.clone())],
        outcome: Outcome::Subscription {
            subscription,
            intents,
            constraints,
        },
    })
}

#[derive(Clone, Debug)]
pub struct DeleteSubscription {
    pub id: SubscriptionId,
    pub manager: String,
    pub version: String,
}

pub fn delete_subscription(
    state: &AirspaceState,
    cmd: DeleteSubscription,
) -> Result<Decision, DomainError> {
    let old = state
        .subscription(&cmd.id)
        .ok_or_else(|| DomainError::NotFound {
            kind: "subscription",
            id: cmd.id.to_string(),
        })?;
    if old.manager != cmd.manager {
        // F3548's text lists 409 here; the reference DSS and InterUSS's
        // qualification tooling agree on 403, which is what clients handle.
        return Err(DomainError::NotManager {
            kind: "subscription",
            id: cmd.id.to_string(),
        });
    }
    if old.version != cmd.version {
        return Err(DomainError::VersionMismatch { id: cmd.id });
    }
    let dependents = state.dependents(&cmd.id);
    if !dependents.is_empty() {
        return Err(DomainError::SubscriptionInUse {
            id: cmd.id,
            dependents,
            message: "delete or move them first".into(),
        });
    }
    Ok(Decision {
        events: vec![Event::SubscriptionRemoved(cmd.id)],
        outcome: Outcome::SubscriptionDeleted(old.clone()),
    })
}

/// F3548 `SetUssAvailabilityStatusParameters`.
#[derive(Clone, Debug)]
pub struct SetAvailability {
    pub uss: String,
    pub old_version: String,
    pub availability: UssAvailabilityState,
}

pub fn set_availability(
    state: &AirspaceState,
    cmd: SetAvailability,
) -> Result<Decision, DomainError> {
    let current = state.availability(&cmd.uss);
    if current.version != cmd.old_version {
        return Err(DomainError::AvailabilityVersionMismatch {
            uss: cmd.uss,
            current: current.version,
            given: cmd.old_version,
        });
    }
    let a = UssAvailability {
        uss: cmd.uss,
        availability: cmd.availability,
        version: (state.seq() + 1).to_string(),
    };
    Ok(Decision {
        events: vec![Event::AvailabilitySet(a.clone())],
        outcome: Outcome::Availability(a),
    })
}

/// Most bytes of a report's `exchange` kept.
pub const MAX_REPORT_BYTES: usize = 64 * 1024;

/// Files a report: at most [`MAX_REPORT_BYTES`] of exchange (413), and at
/// most `max_per_day` from one reporter in any day (429).
pub fn file_report(
    state: &AirspaceState,
    report: Report,
    max_per_day: usize,
) -> Result<Decision, DomainError> {
    if report.exchange_json.len() > MAX_REPORT_BYTES {
        return Err(DomainError::TooLarge {
            field: "exchange".into(),
            message: format!(
                "a report's exchange may be at most {MAX_REPORT_BYTES} bytes, this one is {}",
                report.exchange_json.len()
            ),
        });
    }
    let filed = state.reports_since_a_day(&report.reporter, report.received);
    if filed >= max_per_day {
        return Err(DomainError::QuotaExceeded {
            field: "exchange".into(),
            message: format!(
                "this client filed {filed} reports in the last 24 hours; at most {max_per_day} are kept"
            ),
        });
    }
    Ok(Decision {
        events: vec![Event::ReportFiled(report.clone())],
        outcome: Outcome::Report(report),
    })
}

/// Removes what has ended: intents and constraints whose end is more than
/// `grace_s` in the past, and subscriptions past their end that no intent
/// needs.
pub fn expire(
    state: &AirspaceState,
    now: Timestamp,
    grace_s: i64,
) -> Result<Decision, DomainError> {
    let cutoff = now.minus_seconds(grace_s);
    let mut events = Vec::new();
    let mut leaving_intents = HashSet::new();
    let mut intents: Vec<&OperationalIntent> =
        state.intents().filter(|i| i.time_end <= cutoff).collect();
    intents.sort_by_key(|i| i.id);
    for i in &intents {
        events.push(Event::IntentRemoved(i.id));
        leaving_intents.insert(i.id);
    }
    let mut constraints: Vec<EntityId> = state
        .constraints()
        .filter(|c| c.time_end <= cutoff)
        .map(|c| c.id)
        .collect();
    constraints.sort();
    let nc = constraints.len();
    events.extend(constraints.into_iter().map(Event::ConstraintRemoved));
    let mut subs: Vec<SubscriptionId> = state
        .subscriptions()
        .filter(|s| {
            let orphan = state
                .dependents(&s.id)
                .iter()
                .all(|d| leaving_intents.contains(d));
            orphan && (s.time_end <= cutoff || (s.implicit && !state.dependents(&s.id).is_empty()))
        })
        .map(|s| s.id)
        .collect();
    subs.sort();
    let ns = subs.len();
    events.extend(subs.into_iter().map(Event::SubscriptionRemoved));
    Ok(Decision {
        events,
        outcome: Outcome::Expired {
            intents: intents.len(),
            constraints: nc,
            subscriptions: ns,
        },
    })
}

#[cfg(test)]
mod tests;
