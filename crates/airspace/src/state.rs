//! The airspace as a node holds it: entities, their index and the conflicts
//! among them. Decisions read it; only [`AirspaceState::apply`] changes it,
//! with the events a decision produced.

use crate::conflict::{Conflict, ConflictKind, ConflictParty, volume_overlaps};
use crate::decide::Event;
use crate::geometry::PreparedVolume;
use crate::index::SpaceTimeIndex;
use crate::model::*;
use crate::timestamp::Timestamp;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The records are in ordered maps, not hash maps: a hash map that grows
/// moves every entry in one insert — at 114,688 intents a 60 ms stall of the
/// writer, every request in flight waiting behind it (the create p99).
#[derive(Default, Debug)]
pub struct AirspaceState {
    intents: BTreeMap<EntityId, OperationalIntent>,
    constraints: BTreeMap<EntityId, Constraint>,
    subscriptions: BTreeMap<SubscriptionId, Subscription>,
    availability: HashMap<String, UssAvailability>,
    intent_index: SpaceTimeIndex,
    constraint_index: SpaceTimeIndex,
    subscription_index: SpaceTimeIndex,
    /// (subscription, intent depending on it). One set of pairs, not a set
    /// per subscription: most have one dependent, and a set of one is a
    /// whole B-tree node (~200 bytes).
    dependents: BTreeSet<(SubscriptionId, EntityId)>,
    /// Keyed by (a, b): the intent first; for two intents the smaller id first.
    conflicts: BTreeMap<(EntityId, EntityId), Conflict>,
    conflicts_of: BTreeMap<EntityId, BTreeSet<(EntityId, EntityId)>>,
    reports: usize,
    /// Each reporter's reports of the last [`REPORT_WINDOW_S`], oldest
    /// first (older ones are dropped as new ones come).
    recent_reports: HashMap<String, std::collections::VecDeque<Timestamp>>,
    /// The outline points each manager's live intents, constraints and
    /// subscriptions hold ([`points_of`]).
    stored: HashMap<String, usize>,
    seq: u64,
}

/// The outline points of an entity's volumes.
pub fn points_of(extents: &[PreparedVolume]) -> usize {
    extents.iter().map(PreparedVolume::points).sum()
}

/// The window the report quota counts in: a day.
pub const REPORT_WINDOW_S: i64 = 24 * 3600;

fn exact<'a, T>(
    ids: Vec<EntityId>,
    map: &'a BTreeMap<EntityId, T>,
    extents: impl Fn(&T) -> &[PreparedVolume],
    volumes: &[PreparedVolume],
) -> Vec<&'a T> {
    ids.into_iter()
        .filter_map(|id| map.get(&id))
        .filter(|e| {
            extents(e)
                .iter()
                .any(|a| volumes.iter().any(|b| a.intersects(b)))
        })
        .collect()
}

/// A scoped thread's result (its panic, if it panicked).
fn joined<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Records by id, and their index.
/// A kind's map and index from its records, each with its id: collected
/// as they are (a vector's own allocation becomes the map's input, sorted
/// in place; records already by id, or in a few runs by id, sort in one
/// pass or a merge).
fn indexed<T>(
    records: Vec<(EntityId, T)>,
    extents: impl Fn(&T) -> &[PreparedVolume],
) -> (BTreeMap<EntityId, T>, SpaceTimeIndex) {
    let index = SpaceTimeIndex::bulk(records.iter().map(|(id, r)| (*id, extents(r))));
    (BTreeMap::from_iter(records), index)
}

impl AirspaceState {
    /// A state holding exactly these records (used when a store loads).
    pub fn load(
        seq: u64,
        intents: Vec<OperationalIntent>,
        constraints: Vec<Constraint>,
        subscriptions: Vec<Subscription>,
        availability: Vec<UssAvailability>,
        reports: Vec<ReportStamp>,
    ) -> Self {
        Self::load_keyed(
            seq,
            intents.into_iter().map(|r| (r.id, r)).collect(),
            constraints.into_iter().map(|r| (r.id, r)).collect(),
            subscriptions.into_iter().map(|r| (r.id, r)).collect(),
            availability,
            reports,
        )
    }

    /// [`Self::load`] from records each with its id, as a store that keeps
    /// them so reads them (fastest by id).
    pub fn load_keyed(
        seq: u64,
        intents: Vec<(EntityId, OperationalIntent)>,
        constraints: Vec<(EntityId, Constraint)>,
        subscriptions: Vec<(SubscriptionId, Subscription)>,
        availability: Vec<UssAvailability>,
        reports: Vec<ReportStamp>,
    ) -> Self {
        // Each kind's index and map are built on a thread of their own (a
        // cold start waits for them).
        let (
            (intents, intent_index),
            (constraints, constraint_index),
            (subscriptions, subscription_index),
        ) = std::thread::scope(|t| {
            let subs = t.spawn(|| indexed(subscriptions, |c| &c.extents));
            let intents = t.spawn(|| indexed(intents, |i| &i.extents));
            let constraints = indexed(constraints, |c| &c.extents);
            (joined(intents), constraints, joined(subs))
        });
        let mut s = AirspaceState {
            intent_index,
            constraint_index,
            subscription_index,
            seq,
            reports: reports.len(),
            ..Default::default()
        };
        for (manager, extents) in intents
            .values()
            .map(|i| (&i.manager, &i.extents))
            .chain(constraints.values().map(|c| (&c.manager, &c.extents)))
            .chain(subscriptions.values().map(|c| (&c.manager, &c.extents)))
        {
            s.store(manager, extents, true);
        }
        let mut reports = reports;
        reports.sort_by_key(|r| r.received);
        for r in reports {
            s.note_report(&r.reporter, r.received);
        }
        // Collected, a B-tree is sorted once and built in bulk (inserted one
        // by one in the rows' order, random ids, it took ~10 ms more of a
        // cold start at 100k).
        s.dependents = intents
            .values()
            .filter_map(|i| i.subscription_id.map(|sub| (sub, i.id)))
            .collect();
        s.intents = intents;
        s.constraints = constraints;
        s.subscriptions = subscriptions;
        s.availability = availability
            .into_iter()
            .map(|a| (a.uss.clone(), a))
            .collect();
        // Every conflict: the pairs whose boxes meet, from the indexes
        // walked together, tested exactly on all cores (read-only), then
        // recorded.
        let mut pairs: Vec<(EntityId, EntityId, bool)> = s
            .intent_index
            .pairs_with(&s.intent_index)
            .into_iter()
            .map(|(a, b)| (a, b, false))
            .collect();
        pairs.extend(
            s.intent_index
                .pairs_with(&s.constraint_index)
                .into_iter()
                .map(|(i, c)| (i, c, true)),
        );
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = pairs.len().div_ceil(threads).max(1);
        let found: Vec<Vec<((EntityId, EntityId), Conflict)>> = std::thread::scope(|t| {
            let s = &s;
            let parts: Vec<_> = pairs
                .chunks(chunk)
                .map(|part| {
                    t.spawn(move || {
                        part.iter()
                            .filter_map(|(a, b, with_constraint)| {
                                s.conflict_between(*a, *b, *with_constraint)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            parts.into_iter().map(joined).collect()
        });
        for (key, c) in found.into_iter().flatten() {
            s.add_conflict(key, c);
        }
        s
    }

    /// The node's change sequence: one more for every applied decision.
    pub fn seq(&self) -> u64 {
        self.seq
    }
    pub fn intent(&self, id: &EntityId) -> Option<&OperationalIntent> {
        self.intents.get(id)
    }
    pub fn constraint(&self, id: &EntityId) -> Option<&Constraint> {
        self.constraints.get(id)
    }
    pub fn subscription(&self, id: &SubscriptionId) -> Option<&Subscription> {
        self.subscriptions.get(id)
    }
    /// A USS's availability; `Unknown` with an empty version until set.
    pub fn availability(&self, uss: &str) -> UssAvailability {
        self.availability
            .get(uss)
            .cloned()
            .unwrap_or_else(|| UssAvailability {
                uss: uss.to_string(),
                availability: UssAvailabilityState::Unknown,
                version: String::new(),
            })
    }
    pub fn is_down(&self, uss: &str) -> bool {
        self.availability
            .get(uss)
            .is_some_and(|a| a.availability == UssAvailabilityState::Down)
    }
    /// Operational intents that depend on a subscription.
    pub fn dependents(&self, sub: &SubscriptionId) -> Vec<EntityId> {
        self.dependents
            .range((*sub, EntityId::nil())..=(*sub, EntityId::max()))
            .map(|d| d.1)
            .collect()
    }

    /// Operational intents any of whose volumes intersect any of `volumes`.
    pub fn intents_intersecting(&self, volumes: &[PreparedVolume]) -> Vec<&OperationalIntent> {
        exact(
            self.intent_index.candidates(volumes),
            &self.intents,
            |i| &i.extents,
            volumes,
        )
    }
    pub fn constraints_intersecting(&self, volumes: &[PreparedVolume]) -> Vec<&Constraint> {
        exact(
            self.constraint_index.candidates(volumes),
            &self.constraints,
            |c| &c.extents,
            volumes,
        )
    }
    pub fn subscriptions_intersecting(&self, volumes: &[PreparedVolume]) -> Vec<&Subscription> {
        exact(
            self.subscription_index.candidates(volumes),
            &self.subscriptions,
            |s| &s.extents,
            volumes,
        )
    }

    pub fn intents(&self) -> impl ExactSizeIterator<Item = &OperationalIntent> {
        self.intents.values()
    }
    pub fn constraints(&self) -> impl ExactSizeIterator<Item = &Constraint> {
        self.constraints.values()
    }
    pub fn subscriptions(&self) -> impl ExactSizeIterator<Item = &Subscription> {
        self.subscriptions.values()
    }
    /// Current conflicts, in a stable order.
    pub fn conflicts(&self) -> impl Iterator<Item = &Conflict> {
        self.conflicts.values()
    }
    pub fn counts(&self) -> Counts {
        Counts {
            intents: self.intents.len(),
            constraints: self.constraints.len(),
            subscriptions: self.subscriptions.len(),
            conflicts: self.conflicts.len(),
            reports: self.reports,
        }
    }

    /// Applies the events of one decision, in order, and advances `seq`.
    pub fn apply(&mut self, events: &[Event]) {
        for e in events {
            self.apply_one(e);
        }
        self.seq += 1;
    }

    /// Takes in records that another writer on the same database changed
    /// (upserts and removals, as events) and that writer's sequence number.
    pub fn catch_up(&mut self, seq: u64, events: &[Event]) {
        for e in events {
            self.apply_one(e);
        }
        self.seq = seq;
    }

    fn apply_one(&mut self, e: &Event) {
        match e {
            Event::IntentUpserted(i) => {
                self.remove_intent(&i.id);
                self.intent_index.insert(i.id, &i.extents);
                self.store(&i.manager, &i.extents, true);
                if let Some(sub) = i.subscription_id {
                    self.dependents.insert((sub, i.id));
                }
                self.intents.insert(i.id, i.clone());
                self.recompute_conflicts(i.id, false);
            }
            Event::IntentRemoved(id) => self.remove_intent(id),
            Event::ConstraintUpserted(c) => {
                self.remove_constraint(&c.id);
                self.constraint_index.insert(c.id, &c.extents);
                self.store(&c.manager, &c.extents, true);
                self.constraints.insert(c.id, c.clone());
                self.recompute_conflicts(c.id, true);
            }
            Event::ConstraintRemoved(id) => self.remove_constraint(id),
            Event::SubscriptionUpserted(s) => {
                if let Some(old) = self.subscriptions.remove(&s.id) {
                    self.subscription_index.remove(old.id, &old.extents);
                    self.store(&old.manager, &old.extents, false);
                }
                self.subscription_index.insert(s.id, &s.extents);
                self.store(&s.manager, &s.extents, true);
                self.subscriptions.insert(s.id, s.clone());
            }
            Event::SubscriptionsNotified(bumped) => {
                for (id, index) in bumped {
                    if let Some(s) = self.subscriptions.get_mut(id) {
                        s.notification_index = *index;
                    }
                }
            }
            Event::SubscriptionRemoved(id) => {
                if let Some(old) = self.subscriptions.remove(id) {
                    self.subscription_index.remove(old.id, &old.extents);
                    self.store(&old.manager, &old.extents, false);
                }
            }
            Event::AvailabilitySet(a) => {
                self.availability.insert(a.uss.clone(), a.clone());
            }
            Event::ReportFiled(r) => {
                self.reports += 1;
                self.note_report(&r.reporter, r.received);
            }
        }
    }

    /// Counts an entity's points in (`add`) or out of its manager's total.
    fn store(&mut self, manager: &str, extents: &[PreparedVolume], add: bool) {
        let n = points_of(extents);
        if add {
            // The manager's name is copied only the first time (a load
            // adds every record).
            match self.stored.get_mut(manager) {
                Some(total) => *total += n,
                None => {
                    self.stored.insert(manager.to_string(), n);
                }
            }
        } else if let Some(total) = self.stored.get_mut(manager) {
            *total = total.saturating_sub(n);
            if *total == 0 {
                self.stored.remove(manager);
            }
        }
    }

    /// The outline points `manager`'s live intents, constraints and
    /// subscriptions (implicit ones included) hold.
    pub fn stored_points(&self, manager: &str) -> usize {
        self.stored.get(manager).copied().unwrap_or(0)
    }

    fn note_report(&mut self, reporter: &str, at: Timestamp) {
        let recent = self.recent_reports.entry(reporter.to_string()).or_default();
        let since = at.minus_seconds(REPORT_WINDOW_S);
        while recent.front().is_some_and(|t| *t <= since) {
            recent.pop_front();
        }
        recent.push_back(at);
    }

    /// How many reports `reporter` filed in the [`REPORT_WINDOW_S`] up to `now`.
    pub fn reports_since_a_day(&self, reporter: &str, now: Timestamp) -> usize {
        let since = now.minus_seconds(REPORT_WINDOW_S);
        self.recent_reports
            .get(reporter)
            .map_or(0, |r| r.iter().filter(|t| **t > since).count())
    }

    fn remove_intent(&mut self, id: &EntityId) {
        if let Some(old) = self.intents.remove(id) {
            self.intent_index.remove(old.id, &old.extents);
            self.store(&old.manager, &old.extents, false);
            if let Some(sub) = old.subscription_id {
                self.dependents.remove(&(sub, *id));
            }
            self.drop_conflicts(id);
        }
    }

    fn remove_constraint(&mut self, id: &EntityId) {
        if let Some(old) = self.constraints.remove(id) {
            self.constraint_index.remove(old.id, &old.extents);
            self.store(&old.manager, &old.extents, false);
            self.drop_conflicts(id);
        }
    }

    fn drop_conflicts(&mut self, id: &EntityId) {
        for key in self.conflicts_of.remove(id).unwrap_or_default() {
            self.conflicts.remove(&key);
            let other = if key.0 == *id { key.1 } else { key.0 };
            if let Some(set) = self.conflicts_of.get_mut(&other) {
                set.remove(&key);
            }
        }
    }

    fn add_conflict(&mut self, key: (EntityId, EntityId), c: Conflict) {
        self.conflicts_of.entry(key.0).or_default().insert(key);
        self.conflicts_of.entry(key.1).or_default().insert(key);
        self.conflicts.insert(key, c);
    }

    /// Recomputes every conflict of one entity (it must be in the maps).
    fn recompute_conflicts(&mut self, id: EntityId, is_constraint: bool) {
        self.drop_conflicts(&id);
        for (key, c) in self.find_conflicts(id, is_constraint) {
            self.add_conflict(key, c);
        }
    }

    /// The conflict between intent `a` and intent `b` (`a` < `b`) or
    /// constraint `b`, if their volumes meet exactly — what
    /// [`Self::find_conflicts`] finds for that pair.
    fn conflict_between(
        &self,
        a: EntityId,
        b: EntityId,
        with_constraint: bool,
    ) -> Option<((EntityId, EntityId), Conflict)> {
        let meet = |x: &[PreparedVolume], y: &[PreparedVolume]| {
            x.iter().any(|v| y.iter().any(|w| v.intersects(w)))
        };
        let i = self.intents.get(&a)?;
        let (kind, other, extents) = if with_constraint {
            let c = self.constraints.get(&b)?;
            let party = ConflictParty {
                id: c.id,
                manager: c.manager.clone(),
                version: c.version,
            };
            (ConflictKind::IntentConstraint, party, &c.extents)
        } else {
            let j = self.intents.get(&b)?;
            if j.manager == i.manager {
                return None;
            }
            let party = ConflictParty {
                id: j.id,
                manager: j.manager.clone(),
                version: j.version,
            };
            (ConflictKind::IntentIntent, party, &j.extents)
        };
        if !meet(&i.extents, extents) {
            return None;
        }
        Some((
            (a, b),
            Conflict {
                kind,
                a: ConflictParty {
                    id: i.id,
                    manager: i.manager.clone(),
                    version: i.version,
                },
                b: other,
                overlaps: volume_overlaps(&i.extents, extents),
            },
        ))
    }

    /// The conflicts entity `id` is in, by the current state.
    fn find_conflicts(
        &self,
        id: EntityId,
        is_constraint: bool,
    ) -> Vec<((EntityId, EntityId), Conflict)> {
        let mut found = Vec::new();
        if is_constraint {
            let Some(c) = self.constraints.get(&id) else {
                return found;
            };
            for i in self.intents_intersecting(&c.extents) {
                let overlaps = volume_overlaps(&i.extents, &c.extents);
                found.push((
                    (i.id, c.id),
                    Conflict {
                        kind: ConflictKind::IntentConstraint,
                        a: ConflictParty {
                            id: i.id,
                            manager: i.manager.clone(),
                            version: i.version,
                        },
                        b: ConflictParty {
                            id: c.id,
                            manager: c.manager.clone(),
                            version: c.version,
                        },
                        overlaps,
                    },
                ));
            }
        } else {
            let Some(me) = self.intents.get(&id) else {
                return found;
            };
            for other in self.intents_intersecting(&me.extents) {
                if other.id == me.id || other.manager == me.manager {
                    continue;
                }
                let (a, b) = if me.id < other.id {
                    (me, other)
                } else {
                    (other, me)
                };
                found.push((
                    (a.id, b.id),
                    Conflict {
                        kind: ConflictKind::IntentIntent,
                        a: ConflictParty {
                            id: a.id,
                            manager: a.manager.clone(),
                            version: a.version,
                        },
                        b: ConflictParty {
                            id: b.id,
                            manager: b.manager.clone(),
                            version: b.version,
                        },
                        overlaps: volume_overlaps(&a.extents, &b.extents),
                    },
                ));
            }
            for c in self.constraints_intersecting(&me.extents) {
                found.push((
                    (me.id, c.id),
                    Conflict {
                        kind: ConflictKind::IntentConstraint,
                        a: ConflictParty {
                            id: me.id,
                            manager: me.manager.clone(),
                            version: me.version,
                        },
                        b: ConflictParty {
                            id: c.id,
                            manager: c.manager.clone(),
                            version: c.version,
                        },
                        overlaps: volume_overlaps(&me.extents, &c.extents),
                    },
                ));
            }
        }
        found
    }
}

/// Live entity counts (for metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub intents: usize,
    pub constraints: usize,
    pub subscriptions: usize,
    pub conflicts: usize,
    pub reports: usize,
}
