//! The strategic deconfliction service (F3548 DSS): what a client may ask,
//! checked against its scopes and the node's quotas, its volumes prepared
//! (off the async workers when costly), turned into a pure `airspace`
//! decision and committed through the writer.

use crate::{Caller, Clock, Ids, Mark, NodeError, Scope, Store, StoreError, contact, invalid};
use airspace::decide::{
    self, DeleteConstraint, DeleteIntent, DeleteSubscription, ImplicitSubscription, PutConstraint,
    PutIntent, PutSubscription,
};
use airspace::geometry::{Limits, PreparedVolume, Volume4D, prepare};
use airspace::state::{Counts, points_of};
use airspace::*;
use std::sync::Arc;
use uuid::Uuid;

/// A create or update of an operational intent, as the use case takes it.
#[derive(Clone, Debug)]
pub struct IntentRequest {
    pub extents: Vec<Volume4D>,
    pub key: Vec<Ovn>,
    pub state: OperationalIntentState,
    pub uss_base_url: String,
    pub subscription_id: Option<SubscriptionId>,
    pub new_subscription: Option<ImplicitSubscription>,
    pub requested_ovn_suffix: Option<Uuid>,
}

#[derive(Clone, Debug)]
pub struct SubscriptionRequest {
    pub extents: Volume4D,
    pub uss_base_url: String,
    pub notify_for_operational_intents: bool,
    pub notify_for_constraints: bool,
}

/// Node settings the use cases need.
#[derive(Clone, Debug)]
pub struct Settings {
    pub limits: Limits,
    /// Default duration of a subscription whose end time is not given
    /// (at most `decide::MAX_SUBSCRIPTION_S`).
    pub default_subscription_s: i64,
    /// How far the time in a `requested_ovn_suffix` may be from now.
    pub ovn_suffix_skew_s: i64,
    /// How long ended entities stay before the sweeper removes them.
    pub expiry_grace_s: i64,
    /// Most live explicit subscriptions of one client meeting one area.
    pub max_subscriptions_per_area: usize,
    /// Most reports one client may file in a day.
    pub max_reports_per_day: usize,
    /// Most outline points one client's live entities may hold.
    pub max_stored_points_per_client: usize,
}

/// Refuses a write that would leave `manager` holding more than `max`
/// outline points (`AirspaceState::stored_points`); a write that does not
/// grow what it holds always passes, so a client over its quota can still
/// shrink and delete.
fn within_storage(
    s: &airspace::AirspaceState,
    manager: &str,
    old: usize,
    new: usize,
    max: usize,
) -> Result<(), DomainError> {
    let after = s
        .stored_points(manager)
        .saturating_sub(old)
        .saturating_add(new);
    if new > old && after > max {
        return Err(DomainError::QuotaExceeded {
            field: "extents".into(),
            message: format!(
                "this client's live operational intents, constraints and subscriptions would hold {after} outline points; at most {max} are allowed (delete some first)"
            ),
        });
    }
    Ok(())
}

/// The reference DSS's limit on one client's subscriptions in an area.
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_AREA: usize = 10;
/// Reports one client may file in a day, by default.
pub const DEFAULT_MAX_REPORTS_PER_DAY: usize = 1_000;
/// Outline points one client's live entities may hold, by default: about
/// 250,000 operations of a few vertices each, with their implicit
/// subscriptions.
pub const DEFAULT_MAX_STORED_POINTS_PER_CLIENT: usize = 2_000_000;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::default(),
            default_subscription_s: 24 * 3600,
            ovn_suffix_skew_s: 300,
            expiry_grace_s: 300,
            max_subscriptions_per_area: DEFAULT_MAX_SUBSCRIPTIONS_PER_AREA,
            max_reports_per_day: DEFAULT_MAX_REPORTS_PER_DAY,
            max_stored_points_per_client: DEFAULT_MAX_STORED_POINTS_PER_CLIENT,
        }
    }
}

/// A write of the airspace, as the writer runs it: which pure decision
/// to make (`airspace::decide`), with the quota it is checked against.
/// The writer calls [`AirspaceWrite::decide`] on the state as every write
/// before it in the batch left it.
pub enum AirspaceWrite {
    PutIntent {
        cmd: PutIntent,
        max_points: usize,
    },
    DeleteIntent(DeleteIntent),
    PutConstraint {
        cmd: PutConstraint,
        max_points: usize,
    },
    DeleteConstraint(DeleteConstraint),
    PutSubscription {
        cmd: PutSubscription,
        max_points: usize,
    },
    DeleteSubscription(DeleteSubscription),
    SetAvailability(decide::SetAvailability),
    FileReport {
        report: Report,
        max_per_day: usize,
    },
    /// Removes what ended more than `grace_s` before `now`.
    Expire {
        now: Timestamp,
        grace_s: i64,
    },
}

impl AirspaceWrite {
    /// The decision on `s`: the events to apply, or why not.
    pub fn decide(self, s: &AirspaceState) -> Result<Decision, DomainError> {
        match self {
            AirspaceWrite::PutIntent { cmd, max_points } => {
                let old = s.intent(&cmd.id).map_or(0, |i| points_of(&i.extents));
                within_storage(s, &cmd.manager, old, points_of(&cmd.extents), max_points)?;
                decide::put_intent(s, cmd)
            }
            AirspaceWrite::DeleteIntent(cmd) => decide::delete_intent(s, cmd),
            AirspaceWrite::PutConstraint { cmd, max_points } => {
                let old = s.constraint(&cmd.id).map_or(0, |c| points_of(&c.extents));
                within_storage(s, &cmd.manager, old, points_of(&cmd.extents), max_points)?;
                decide::put_constraint(s, cmd)
            }
            AirspaceWrite::DeleteConstraint(cmd) => decide::delete_constraint(s, cmd),
            AirspaceWrite::PutSubscription { cmd, max_points } => {
                let old = s.subscription(&cmd.id).map_or(0, |c| points_of(&c.extents));
                let new = cmd.extents.points();
                within_storage(s, &cmd.manager, old, new, max_points)?;
                decide::put_subscription(s, cmd)
            }
            AirspaceWrite::DeleteSubscription(cmd) => decide::delete_subscription(s, cmd),
            AirspaceWrite::SetAvailability(cmd) => decide::set_availability(s, cmd),
            AirspaceWrite::FileReport {
                report,
                max_per_day,
            } => decide::file_report(s, report, max_per_day),
            AirspaceWrite::Expire { now, grace_s } => decide::expire(s, now, grace_s),
        }
    }
}

/// The strategic deconfliction service.
/// See [`Dss::export`].
#[derive(Clone, Debug, Default)]
pub struct Exported {
    pub intents: Vec<OperationalIntent>,
    pub constraints: Vec<Constraint>,
    pub conflicts: Vec<Conflict>,
}

/// A (west, south, east, north) box as a 4D area, its edges along
/// parallels and meridians to within a degree's geodesic.
fn bbox_volume(
    [w, s, e, n]: [f64; 4],
    from: Timestamp,
    to: Option<Timestamp>,
) -> Result<airspace::PreparedVolume, NodeError> {
    let bad = |m: &str| -> NodeError {
        DomainError::InvalidInput {
            field: "bbox".into(),
            message: m.into(),
        }
        .into()
    };
    if ![w, s, e, n].iter().all(|x| x.is_finite()) {
        return Err(bad("four finite numbers: west,south,east,north"));
    }
    if !(-180.0..=180.0).contains(&w) || !(-180.0..=180.0).contains(&e) {
        return Err(bad("longitudes lie in [-180, 180]"));
    }
    if !(-90.0..=90.0).contains(&s) || !(-90.0..=90.0).contains(&n) {
        return Err(bad("latitudes lie in [-90, 90]"));
    }
    if w >= e || s >= n {
        return Err(bad(
            "west below east and south below north (a box across the antimeridian is two exports)",
        ));
    }
    if e - w >= 180.0 || n - s >= 90.0 {
        return Err(bad(
            "at most 180° of longitude and 90° of latitude (leave bbox out for everything)",
        ));
    }
    let mut vertices = Vec::new();
    let steps = |a: f64, b: f64| ((b - a).abs().ceil() as usize).max(1);
    let (k_lng, k_lat) = (steps(w, e), steps(s, n));
    for i in 0..k_lng {
        vertices.push(LatLng {
            lat: s,
            lng: w + (e - w) * i as f64 / k_lng as f64,
        });
    }
    for i in 0..k_lat {
        vertices.push(LatLng {
            lat: s + (n - s) * i as f64 / k_lat as f64,
            lng: e,
        });
    }
    for i in 0..k_lng {
        vertices.push(LatLng {
            lat: n,
            lng: e - (e - w) * i as f64 / k_lng as f64,
        });
    }
    for i in 0..k_lat {
        vertices.push(LatLng {
            lat: n - (n - s) * i as f64 / k_lat as f64,
            lng: w,
        });
    }
    let limits = airspace::Limits {
        max_area_m2: f64::INFINITY,
        ..airspace::Limits::default()
    };
    airspace::geometry::prepare(
        Volume4D {
            outline: airspace::Outline::Polygon { vertices },
            altitude_lower_m: None,
            altitude_upper_m: None,
            time_start: Some(from),
            time_end: to,
        },
        &limits,
    )
    .map_err(NodeError::from)
}

pub struct Dss {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    settings: Settings,
}

/// Outline points (`airspace::geometry::cost`) above which a request's
/// volumes are prepared on a blocking thread instead of an async worker:
/// about a millisecond of work.
const HEAVY_POINTS: usize = 1_000;

/// Heavy preparations under way at once: one per core less one (at least
/// one), so that they cannot take every core from the async workers that
/// answer everyone else.
fn heavy_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores.saturating_sub(1).max(1))
    })
}

/// Runs `f` (geometry of `cost` outline points) where it holds up nobody:
/// inline when cheap, else on a blocking thread once a heavy slot is free.
async fn off_workers<T: Send + 'static>(
    cost: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NodeError> {
    if cost <= HEAVY_POINTS {
        return Ok(f());
    }
    let _slot = heavy_slots()
        .acquire()
        .await
        .map_err(|e| NodeError::Store(StoreError::Failed(format!("geometry slots: {e}"))))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NodeError::Store(StoreError::Failed(format!("preparing geometry: {e}"))))
}

/// Prepares a request's volumes. Their outlines together may have at most
/// `MAX_OUTLINE_POINTS` points (one volume at its limit, or several
/// smaller), which bounds a request's geometry before any of it is
/// computed.
async fn prepare_all(
    extents: Vec<Volume4D>,
    limits: &Limits,
    field: &str,
) -> Result<Vec<PreparedVolume>, NodeError> {
    if extents.is_empty() {
        return Err(invalid(field, "at least one volume is required"));
    }
    let cost = extents
        .iter()
        .map(airspace::geometry::cost)
        .fold(0usize, usize::saturating_add);
    if cost > airspace::geometry::MAX_OUTLINE_POINTS {
        return Err(NodeError::from(airspace::GeometryError::too_large(
            field,
            format!(
                "the volumes' outlines would have up to {cost} points in all once their edges are split every {:.0} km; at most {} per request are accepted",
                airspace::geometry::MAX_EDGE_M / 1e3,
                airspace::geometry::MAX_OUTLINE_POINTS
            ),
        )));
    }
    let (limits, field) = (limits.clone(), field.to_string());
    off_workers(cost, move || {
        extents
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                prepare(v, &limits).map_err(|e| NodeError::from(e.under(&format!("{field}[{i}]"))))
            })
            .collect()
    })
    .await?
}

impl Dss {
    /// Commits what is queued and closes the store (shutting down).
    pub async fn close(&self) {
        self.store.close().await
    }

    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn Ids>,
        settings: Settings,
    ) -> Self {
        Dss {
            store,
            clock,
            ids,
            settings,
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    async fn commit(&self, w: AirspaceWrite) -> Result<Outcome, NodeError> {
        Ok(self.store.transact(w).await??.outcome)
    }

    /// Runs `f` on the whole current state (for views such as the console's map).
    pub fn view<T>(&self, f: impl FnOnce(&AirspaceState) -> T) -> Result<T, NodeError> {
        self.read(f)
    }

    /// [`Self::read`] after every write any replica had answered (see
    /// [`Store::settle`]): what the DSS's own reads use.
    async fn read_settled<T>(&self, f: impl FnOnce(&AirspaceState) -> T) -> Result<T, NodeError> {
        self.store.settle().await?;
        self.read(f)
    }

    fn read<T>(&self, f: impl FnOnce(&AirspaceState) -> T) -> Result<T, NodeError> {
        let mut f = Some(f);
        let mut out = None;
        self.store.read(&mut |s| {
            if let Some(f) = f.take() {
                out = Some(f(s));
            }
        })?;
        out.ok_or_else(|| {
            NodeError::Store(StoreError::Failed("the store did not run the read".into()))
        })
    }

    /// F3548 `requested_ovn_suffix`: a UUIDv7 whose time is close to now.
    fn ovn_for(&self, id: EntityId, suffix: Option<Uuid>) -> Result<Ovn, NodeError> {
        let Some(s) = suffix else {
            return Ok(self.ids.ovn());
        };
        let ts = match (s.get_version_num(), s.get_timestamp()) {
            (7, Some(t)) => t,
            _ => return Err(invalid("requested_ovn_suffix", "must be a UUIDv7")),
        };
        let (secs, nanos) = ts.to_unix();
        let t = Timestamp::from_unix_micros(secs as i64 * 1_000_000 + nanos as i64 / 1000);
        let skew = (t.unix_micros() - self.now().unix_micros()).abs() / 1_000_000;
        if skew > self.settings.ovn_suffix_skew_s {
            return Err(invalid(
                "requested_ovn_suffix",
                format!(
                    "its time is {skew} s from now; at most {} s is accepted",
                    self.settings.ovn_suffix_skew_s
                ),
            ));
        }
        Ok(Ovn(format!("{id}_{s}")))
    }

    pub async fn put_intent(
        &self,
        caller: &Caller,
        id: EntityId,
        existing_ovn: Option<Ovn>,
        req: IntentRequest,
    ) -> Result<(OperationalIntent, Vec<SubscriberToNotify>), NodeError> {
        // F3548: only conformance monitoring declares an operation off its plan.
        if matches!(
            req.state,
            OperationalIntentState::Nonconforming | OperationalIntentState::Contingent
        ) && !caller.has(Scope::ConformanceMonitoringSa)
        {
            return Err(NodeError::Forbidden(format!(
                "only a client with the scope {} may declare an operational intent {}",
                Scope::ConformanceMonitoringSa.as_str(),
                req.state.as_str()
            )));
        }
        let extents = prepare_all(req.extents, &self.settings.limits, "extents").await?;
        if req.state == OperationalIntentState::Activated {
            // The line of contact: a peer must have accepted the notice of
            // exactly these extents first (acceptance only ever arrives, so
            // checking before the commit is enough).
            let mut hold = None;
            let mut line_read = Ok(());
            self.store.read(&mut |air| {
                line_read = self.store.read_line(&mut |line| {
                    hold = contact::activation_hold(line, air, &id, &extents);
                });
            })?;
            // Unread, the hold is unknown: refuse rather than let it pass.
            line_read?;
            if let Some(reason) = hold {
                return Err(liaison::LineError::ActivationHeld {
                    intent: id.to_string(),
                    reason,
                }
                .into());
            }
        }
        let cmd = PutIntent {
            id,
            manager: caller.sub.clone(),
            existing_ovn,
            extents,
            key: req.key,
            state: req.state,
            uss_base_url: req.uss_base_url,
            subscription_id: req.subscription_id,
            new_subscription: req.new_subscription,
            new_ovn: self.ovn_for(id, req.requested_ovn_suffix)?,
            new_subscription_id: self.ids.uuid_v4(),
            now: self.now(),
        };
        let max = self.settings.max_stored_points_per_client;
        intent_outcome(
            self.commit(AirspaceWrite::PutIntent {
                cmd,
                max_points: max,
            })
            .await?,
        )
    }

    pub async fn delete_intent(
        &self,
        caller: &Caller,
        id: EntityId,
        ovn: Ovn,
    ) -> Result<(OperationalIntent, Vec<SubscriberToNotify>), NodeError> {
        let cmd = DeleteIntent {
            id,
            manager: caller.sub.clone(),
            ovn,
        };
        intent_outcome(self.commit(AirspaceWrite::DeleteIntent(cmd)).await?)
    }

    /// What has ended is gone for every read, whenever the sweeper
    /// removes it.
    pub async fn get_intent(&self, id: EntityId) -> Result<OperationalIntent, NodeError> {
        let now = self.now();
        self.read_settled(|s| s.intent(&id).filter(|i| i.time_end > now).cloned())
            .await?
            .ok_or_else(|| {
                DomainError::NotFound {
                    kind: "operational intent",
                    id: id.to_string(),
                }
                .into()
            })
    }

    /// An area of interest (`decide::area_of_interest`); `None` matches nothing.
    async fn area(
        &self,
        area: Option<Volume4D>,
        field: &str,
    ) -> Result<Option<PreparedVolume>, NodeError> {
        let Some(v) = area else {
            return Err(invalid(field, "an area_of_interest is required"));
        };
        let (now, limits, field) = (self.now(), self.settings.limits.clone(), field.to_string());
        off_workers(airspace::geometry::cost(&v), move || {
            decide::area_of_interest(v, now, &limits, &field).map_err(NodeError::from)
        })
        .await?
    }

    pub async fn query_intents(
        &self,
        area: Option<Volume4D>,
    ) -> Result<Vec<OperationalIntent>, NodeError> {
        let Some(a) = self.area(area, "area_of_interest").await? else {
            return Ok(Vec::new());
        };
        let (a, now) = ([a], self.now());
        self.read_settled(|s| {
            s.intents_intersecting(&a)
                .into_iter()
                .filter(|i| i.time_end > now)
                .cloned()
                .collect()
        })
        .await
    }

    pub async fn put_constraint(
        &self,
        caller: &Caller,
        id: EntityId,
        existing_ovn: Option<Ovn>,
        extents: Vec<Volume4D>,
        uss_base_url: String,
    ) -> Result<(Constraint, Vec<SubscriberToNotify>), NodeError> {
        let extents = prepare_all(extents, &self.settings.limits, "extents").await?;
        let cmd = PutConstraint {
            id,
            manager: caller.sub.clone(),
            existing_ovn,
            extents,
            uss_base_url,
            new_ovn: self.ids.ovn(),
            now: self.now(),
        };
        let max = self.settings.max_stored_points_per_client;
        constraint_outcome(
            self.commit(AirspaceWrite::PutConstraint {
                cmd,
                max_points: max,
            })
            .await?,
        )
    }

    pub async fn delete_constraint(
        &self,
        caller: &Caller,
        id: EntityId,
        ovn: Ovn,
    ) -> Result<(Constraint, Vec<SubscriberToNotify>), NodeError> {
        let cmd = DeleteConstraint {
            id,
            manager: caller.sub.clone(),
            ovn,
        };
        constraint_outcome(self.commit(AirspaceWrite::DeleteConstraint(cmd)).await?)
    }

    pub async fn get_constraint(&self, id: EntityId) -> Result<Constraint, NodeError> {
        let now = self.now();
        self.read_settled(|s| s.constraint(&id).filter(|c| c.time_end > now).cloned())
            .await?
            .ok_or_else(|| {
                DomainError::NotFound {
                    kind: "constraint",
                    id: id.to_string(),
                }
                .into()
            })
    }

    pub async fn query_constraints(
        &self,
        area: Option<Volume4D>,
    ) -> Result<Vec<Constraint>, NodeError> {
        let Some(a) = self.area(area, "area_of_interest").await? else {
            return Ok(Vec::new());
        };
        let (a, now) = ([a], self.now());
        self.read_settled(|s| {
            s.constraints_intersecting(&a)
                .into_iter()
                .filter(|c| c.time_end > now)
                .cloned()
                .collect()
        })
        .await
    }

    pub async fn put_subscription(
        &self,
        caller: &Caller,
        id: SubscriptionId,
        existing_version: Option<String>,
        req: SubscriptionRequest,
    ) -> Result<(Subscription, Vec<OperationalIntent>, Vec<Constraint>), NodeError> {
        // F3548 and the reference DSS: either subscription scope may ask for
        // either kind of notification (what a client is then told is
        // governed by the read scopes of the references it fetches).
        let now = self.now();
        let mut v = req.extents;
        let (start_given, end_given) = (v.time_start.is_some(), v.time_end.is_some());
        // F3548 PutSubscriptionParameters: start defaults to now, end is
        // chosen by the DSS (on an update, `decide` keeps the current ones).
        let start = *v.time_start.get_or_insert(now);
        v.time_end.get_or_insert(
            start.plus_seconds(
                self.settings
                    .default_subscription_s
                    .min(decide::MAX_SUBSCRIPTION_S),
            ),
        );
        let limits = self.settings.limits.clone();
        let extents = off_workers(airspace::geometry::cost(&v), move || {
            prepare(v, &limits).map_err(|e| NodeError::from(e.under("extents")))
        })
        .await??;
        let cmd = PutSubscription {
            id,
            manager: caller.sub.clone(),
            existing_version,
            extents,
            uss_base_url: req.uss_base_url,
            notify_for_operational_intents: req.notify_for_operational_intents,
            notify_for_constraints: req.notify_for_constraints,
            now,
            start_given,
            end_given,
            max_per_area: self.settings.max_subscriptions_per_area,
        };
        let max = self.settings.max_stored_points_per_client;
        match self
            .commit(AirspaceWrite::PutSubscription {
                cmd,
                max_points: max,
            })
            .await?
        {
            Outcome::Subscription {
                subscription,
                intents,
                constraints,
            } => Ok((subscription, intents, constraints)),
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_subscription(
        &self,
        caller: &Caller,
        id: SubscriptionId,
        version: String,
    ) -> Result<Subscription, NodeError> {
        let cmd = DeleteSubscription {
            id,
            manager: caller.sub.clone(),
            version,
        };
        match self.commit(AirspaceWrite::DeleteSubscription(cmd)).await? {
            Outcome::SubscriptionDeleted(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// A subscription is shown only to its manager.
    pub async fn get_subscription(
        &self,
        caller: &Caller,
        id: SubscriptionId,
    ) -> Result<(Subscription, Vec<EntityId>), NodeError> {
        let now = self.now();
        let (s, dependents) = self
            .read_settled(|s| {
                s.subscription(&id)
                    .filter(|x| x.time_end > now)
                    .map(|x| (x.clone(), s.dependents(&id)))
            })
            .await?
            .ok_or_else(|| {
                NodeError::from(DomainError::NotFound {
                    kind: "subscription",
                    id: id.to_string(),
                })
            })?;
        if s.manager != caller.sub {
            return Err(NodeError::Forbidden(format!(
                "subscription {id} is managed by another client"
            )));
        }
        Ok((s, dependents))
    }

    /// F3548: only the caller's own subscriptions are returned.
    /// With each subscription, its dependent operational intents.
    pub async fn query_subscriptions(
        &self,
        caller: &Caller,
        area: Option<Volume4D>,
    ) -> Result<Vec<(Subscription, Vec<EntityId>)>, NodeError> {
        let Some(a) = self.area(area, "area_of_interest").await? else {
            return Ok(Vec::new());
        };
        let (a, now) = ([a], self.now());
        self.read_settled(|s| {
            s.subscriptions_intersecting(&a)
                .into_iter()
                .filter(|x| x.manager == caller.sub && x.time_end > now)
                .map(|x| (x.clone(), s.dependents(&x.id)))
                .collect()
        })
        .await
    }

    /// Dependent operational intents of a subscription (F3548 `dependent_operational_intents`).
    pub fn dependents(&self, id: SubscriptionId) -> Result<Vec<EntityId>, NodeError> {
        self.read(|s| s.dependents(&id))
    }

    /// A USS's availability as every replica has it.
    pub async fn get_availability_settled(&self, uss: &str) -> Result<UssAvailability, NodeError> {
        self.read_settled(|s| s.availability(uss)).await
    }

    /// A USS's availability as this replica has it (for rendering
    /// references whose read has settled already).
    pub fn get_availability(&self, uss: &str) -> Result<UssAvailability, NodeError> {
        self.read(|s| s.availability(uss))
    }

    pub async fn set_availability(
        &self,
        uss: String,
        old_version: String,
        availability: UssAvailabilityState,
    ) -> Result<UssAvailability, NodeError> {
        let cmd = decide::SetAvailability {
            uss,
            old_version,
            availability,
        };
        match self.commit(AirspaceWrite::SetAvailability(cmd)).await? {
            Outcome::Availability(a) => Ok(a),
            other => Err(unexpected(other)),
        }
    }

    pub async fn file_report(
        &self,
        caller: &Caller,
        exchange_json: String,
    ) -> Result<Report, NodeError> {
        let report = Report {
            id: self.ids.uuid_v4().to_string(),
            reporter: caller.sub.clone(),
            received: self.now(),
            exchange_json,
        };
        let max = self.settings.max_reports_per_day;
        match self
            .commit(AirspaceWrite::FileReport {
                report,
                max_per_day: max,
            })
            .await?
        {
            Outcome::Report(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// What an export shows: the live operational intents and constraints
    /// with a volume inside `bbox` (west, south, east, north degrees; `None`:
    /// anywhere) during `[from, to)` (`to` `None`: open), and the conflicts
    /// between them. Never an OVN: callers write what they need of each.
    pub async fn export(
        &self,
        bbox: Option<[f64; 4]>,
        from: Timestamp,
        to: Option<Timestamp>,
    ) -> Result<Exported, NodeError> {
        let now = self.now();
        let from = if from < now { now } else { from };
        let area = match bbox {
            None => None,
            Some(b) => Some(bbox_volume(b, from, to)?),
        };
        let during = move |t: (Timestamp, Timestamp)| t.1 > from && to.is_none_or(|to| t.0 < to);
        self.read_settled(move |s| {
            let (intents, constraints): (Vec<OperationalIntent>, Vec<Constraint>) = match &area {
                Some(a) => {
                    let a = std::slice::from_ref(a);
                    (
                        s.intents_intersecting(a)
                            .into_iter()
                            .filter(|i| i.time_end > now)
                            .cloned()
                            .collect(),
                        s.constraints_intersecting(a)
                            .into_iter()
                            .filter(|c| c.time_end > now)
                            .cloned()
                            .collect(),
                    )
                }
                None => (
                    s.intents()
                        .filter(|i| i.extents.iter().any(|v| during(v.time)))
                        .cloned()
                        .collect(),
                    s.constraints()
                        .filter(|c| c.extents.iter().any(|v| during(v.time)))
                        .cloned()
                        .collect(),
                ),
            };
            let ids: std::collections::HashSet<EntityId> = intents
                .iter()
                .map(|i| i.id)
                .chain(constraints.iter().map(|c| c.id))
                .collect();
            let conflicts = s
                .conflicts()
                .filter(|c| ids.contains(&c.a.id) && ids.contains(&c.b.id))
                .cloned()
                .collect();
            Exported {
                intents,
                constraints,
                conflicts,
            }
        })
        .await
    }

    /// Current conflicts, in a stable order.
    pub async fn conflicts(&self) -> Result<Vec<Conflict>, NodeError> {
        self.read_settled(|s| s.conflicts().cloned().collect())
            .await
    }

    /// See [`Store::mark_once`].
    pub async fn mark_once(
        &self,
        kind: Mark,
        id: String,
        until_ms: u64,
        now_ms: u64,
    ) -> Result<bool, NodeError> {
        Ok(self.store.mark_once(kind, id, until_ms, now_ms).await?)
    }

    /// See [`Store::marks`].
    pub async fn marks(&self, kind: Mark, now_ms: u64) -> Result<Vec<(String, u64)>, NodeError> {
        Ok(self.store.marks(kind, now_ms).await?)
    }

    /// Whether the store answers now (see [`Store::available`]).
    pub fn store_available(&self) -> bool {
        self.store.available()
    }

    pub fn counts(&self) -> Result<Counts, NodeError> {
        self.read(|s| s.counts())
    }

    /// Removes ended entities; returns (intents, constraints, subscriptions) removed.
    pub async fn expire(&self) -> Result<(usize, usize, usize), NodeError> {
        let (now, grace) = (self.now(), self.settings.expiry_grace_s);
        match self
            .commit(AirspaceWrite::Expire {
                now,
                grace_s: grace,
            })
            .await?
        {
            Outcome::Expired {
                intents,
                constraints,
                subscriptions,
            } => Ok((intents, constraints, subscriptions)),
            other => Err(unexpected(other)),
        }
    }
}

fn intent_outcome(o: Outcome) -> Result<(OperationalIntent, Vec<SubscriberToNotify>), NodeError> {
    match o {
        Outcome::Intent {
            intent,
            subscribers,
        } => Ok((intent, subscribers)),
        other => Err(unexpected(other)),
    }
}

fn constraint_outcome(o: Outcome) -> Result<(Constraint, Vec<SubscriberToNotify>), NodeError> {
    match o {
        Outcome::Constraint {
            constraint,
            subscribers,
        } => Ok((constraint, subscribers)),
        other => Err(unexpected(other)),
    }
}

fn unexpected(o: Outcome) -> NodeError {
    NodeError::Store(StoreError::Failed(format!(
        "internal: unexpected outcome {o:?}"
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use airspace::geometry::{LatLng, Outline};

    /// A polygon of `n` vertices on a circle of 0.5° around `lat`, 0: every
    /// edge under 10 km, so it costs `n` outline points.
    fn ring(n: usize, lat: f64) -> Volume4D {
        let vertices = (0..n)
            .map(|i| {
                let a = i as f64 / n as f64 * std::f64::consts::TAU;
                LatLng {
                    lat: lat + 0.5 * a.sin(),
                    lng: 0.5 * a.cos(),
                }
            })
            .collect();
        Volume4D {
            outline: Outline::Polygon { vertices },
            altitude_lower_m: Some(0.0),
            altitude_upper_m: Some(100.0),
            time_start: Some(Timestamp::from_unix_micros(0)),
            time_end: Some(Timestamp::from_unix_micros(1)),
        }
    }

    #[tokio::test]
    async fn heavy_geometry_runs_off_the_async_workers_and_light_inline() {
        let here = std::thread::current().id();
        let light = off_workers(HEAVY_POINTS, move || std::thread::current().id());
        assert_eq!(light.await.unwrap(), here);
        let heavy = off_workers(HEAVY_POINTS + 1, move || std::thread::current().id());
        assert_ne!(heavy.await.unwrap(), here);
    }

    #[tokio::test]
    async fn a_requests_volumes_share_one_outline_budget() {
        let limits = Limits::default();
        let big = |lat| ring(8_000, lat);
        assert_eq!(airspace::geometry::cost(&big(10.0)), 8_000);
        let two = prepare_all(vec![big(10.0), big(20.0)], &limits, "extents").await;
        assert_eq!(two.unwrap().len(), 2);
        let three = prepare_all(vec![big(10.0), big(20.0), big(30.0)], &limits, "extents").await;
        let Err(NodeError::Domain(DomainError::Geometry(e))) = three else {
            panic!("refused as too large: {three:?}");
        };
        assert!(e.too_large);
        assert_eq!(e.field, "extents");
        assert!(e.message.contains("24000 points"), "{e}");
    }
}
