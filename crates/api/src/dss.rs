//! The F3548-21 DSS endpoints under `/dss/v1`, with the scopes the spec
//! names for each (any one of the listed alternatives suffices).

use crate::error::ApiError;
use crate::extract::Body;
use crate::wire::{self, *};
use crate::{Shared, wire::entity_id};
use airspace::{DomainError, OperationalIntent, UssAvailabilityState};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use node::{NodeError, Scope, SubscriptionRequest};
use serde_json::{Value, json};
use std::collections::HashMap;

use Scope::*;

const OIR_READ: &[Scope] = &[StrategicCoordination, ConformanceMonitoringSa];
const OIR_WRITE: &[Scope] = &[StrategicCoordination, ConformanceMonitoringSa];
const CONSTRAINT_READ: &[Scope] = &[ConstraintManagement, ConstraintProcessing];
const CONSTRAINT_WRITE: &[Scope] = &[ConstraintManagement];
const SUBSCRIPTIONS: &[Scope] = &[ConstraintProcessing, StrategicCoordination];
const REPORTS: &[Scope] = &Scope::ALL;
const AVAILABILITY_WRITE: &[Scope] = &[AvailabilityArbitration];
const AVAILABILITY_READ: &[Scope] = &[
    AvailabilityArbitration,
    StrategicCoordination,
    ConformanceMonitoringSa,
];

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/dss/v1/operational_intent_references/query",
            post(query_intents),
        )
        .route(
            "/dss/v1/operational_intent_references/{entityid}",
            get(get_intent).put(create_intent),
        )
        .route(
            "/dss/v1/operational_intent_references/{entityid}/{ovn}",
            put(update_intent).delete(delete_intent),
        )
        .route(
            "/dss/v1/constraint_references/query",
            post(query_constraints),
        )
        .route(
            "/dss/v1/constraint_references/{entityid}",
            get(get_constraint).put(create_constraint),
        )
        .route(
            "/dss/v1/constraint_references/{entityid}/{ovn}",
            put(update_constraint).delete(delete_constraint),
        )
        .route("/dss/v1/subscriptions/query", post(query_subscriptions))
        .route(
            "/dss/v1/subscriptions/{subscriptionid}",
            get(get_subscription).put(create_subscription),
        )
        .route(
            "/dss/v1/subscriptions/{subscriptionid}/{version}",
            put(update_subscription).delete(delete_subscription),
        )
        // An empty version or OVN (a trailing '/') is the client's mistake
        // to be named, not an unknown path.
        .route(
            "/dss/v1/operational_intent_references/{entityid}/",
            put(empty_intent_ovn).delete(empty_intent_ovn),
        )
        .route(
            "/dss/v1/constraint_references/{entityid}/",
            put(empty_constraint_ovn).delete(empty_constraint_ovn),
        )
        .route(
            "/dss/v1/subscriptions/{subscriptionid}/",
            put(empty_version).delete(empty_version),
        )
        .route("/dss/v1/reports", post(make_report))
        .route(
            "/dss/v1/uss_availability/{uss_id}",
            get(get_availability).put(set_availability),
        )
}

type Reply = Result<(StatusCode, Json<Value>), ApiError>;

fn empty_segment(st: &Shared, headers: &HeaderMap, scopes: &[Scope], field: &str) -> Reply {
    st.require(headers, scopes)?;
    Err(ApiError::bad(
        field,
        format!("the {field} in the path is empty"),
    ))
}

async fn empty_intent_ovn(State(st): State<Shared>, headers: HeaderMap) -> Reply {
    empty_segment(&st, &headers, OIR_WRITE, "ovn")
}

async fn empty_constraint_ovn(State(st): State<Shared>, headers: HeaderMap) -> Reply {
    empty_segment(&st, &headers, CONSTRAINT_WRITE, "ovn")
}

async fn empty_version(State(st): State<Shared>, headers: HeaderMap) -> Reply {
    empty_segment(&st, &headers, SUBSCRIPTIONS, "version")
}

/// Availability of each manager, read once per response.
fn availability_of(
    st: &Shared,
    managers: impl Iterator<Item = String>,
) -> Result<HashMap<String, UssAvailabilityState>, ApiError> {
    let mut out = HashMap::new();
    for m in managers {
        if let std::collections::hash_map::Entry::Vacant(e) = out.entry(m) {
            let a = availability(st, e.key())?;
            e.insert(a);
        }
    }
    Ok(out)
}

/// A manager's availability for a response. While the store is
/// unavailable it is `Unknown`: a write that committed just before the
/// database went away is still answered as committed.
fn availability(st: &Shared, manager: &str) -> Result<UssAvailabilityState, ApiError> {
    match st.dss.get_availability(manager) {
        Ok(a) => Ok(a.availability),
        Err(NodeError::Store(e)) if e.is_unavailable() => Ok(UssAvailabilityState::Unknown),
        Err(e) => Err(e.into()),
    }
}

fn render_intent(st: &Shared, i: &OperationalIntent, viewer: &str) -> Result<Value, ApiError> {
    let a = availability(st, &i.manager)?;
    Ok(wire::intent(i, &view(st, viewer), a))
}

/// References as `viewer` sees them through this node.
fn view<'a>(st: &'a Shared, viewer: &'a str) -> wire::View<'a> {
    wire::View {
        viewer,
        copies_at: &st.uss_base_url,
    }
}

/// A key-check refusal is rendered for the caller (OVNs of others hidden).
fn domain(st: &Shared, e: NodeError, viewer: &str) -> ApiError {
    match e {
        NodeError::Domain(DomainError::KeyCheckFailed {
            missing_operational_intents,
            missing_constraints,
        }) => {
            let managers = missing_operational_intents
                .iter()
                .map(|i| i.manager.clone())
                .chain(missing_constraints.iter().map(|c| c.manager.clone()));
            let avail = match availability_of(st, managers) {
                Ok(a) => a,
                Err(e) => return e,
            };
            let message = format!(
                "the key does not prove knowledge of {} operational intent(s) and {} constraint(s) in this airspace; \
                 obtain their current OVNs from their managers and retry",
                missing_operational_intents.len(),
                missing_constraints.len()
            );
            ApiError::KeyCheck(wire::conflict_response(
                &message,
                &missing_operational_intents,
                &missing_constraints,
                &view(st, viewer),
                &|m| {
                    avail
                        .get(m)
                        .copied()
                        .unwrap_or(UssAvailabilityState::Unknown)
                },
            ))
        }
        other => ApiError::Node(other),
    }
}

async fn query_intents(
    State(st): State<Shared>,
    headers: HeaderMap,
    Body(q): Body<QueryParameters>,
) -> Reply {
    let caller = st.require(&headers, OIR_READ)?;
    let area = q
        .area_of_interest
        .map(|a| wire::volume(a, "area_of_interest"))
        .transpose()?;
    let found = st.dss.query_intents(area).await?;
    let avail = availability_of(&st, found.iter().map(|i| i.manager.clone()))?;
    let list: Vec<Value> = found
        .iter()
        .map(|i| wire::intent(i, &view(&st, &caller.sub), avail[&i.manager]))
        .collect();
    Ok((
        StatusCode::OK,
        Json(json!({ "operational_intent_references": list })),
    ))
}

async fn get_intent(State(st): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Reply {
    let caller = st.require(&headers, OIR_READ)?;
    let i = st.dss.get_intent(entity_id(&id, "entityid")?).await?;
    Ok((
        StatusCode::OK,
        Json(json!({ "operational_intent_reference": render_intent(&st, &i, &caller.sub)? })),
    ))
}

async fn put_intent_common(
    st: Shared,
    headers: HeaderMap,
    id: String,
    ovn: Option<String>,
    body: PutOperationalIntentReferenceParameters,
) -> Reply {
    let caller = st.require(&headers, OIR_WRITE)?;
    let id = entity_id(&id, "entityid")?;
    let existing = ovn.map(|o| wire::ovn(&o, "ovn")).transpose()?;
    let created = existing.is_none();
    let req = wire::intent_request(body)?;
    let (intent, subscribers) = st
        .dss
        .put_intent(&caller, id, existing, req)
        .await
        .map_err(|e| domain(&st, e, &caller.sub))?;
    tracing::info!(id = %intent.id, manager = %intent.manager, version = intent.version, state = intent.state.as_str(), "operational intent written");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(
            json!({ "subscribers": wire::subscribers(&subscribers), "operational_intent_reference": render_intent(&st, &intent, &caller.sub)? }),
        ),
    ))
}

async fn create_intent(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(b): Body<PutOperationalIntentReferenceParameters>,
) -> Reply {
    put_intent_common(st, headers, id, None, b).await
}

async fn update_intent(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path((id, ovn)): Path<(String, String)>,
    Body(b): Body<PutOperationalIntentReferenceParameters>,
) -> Reply {
    put_intent_common(st, headers, id, Some(ovn), b).await
}

async fn delete_intent(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path((id, ovn)): Path<(String, String)>,
) -> Reply {
    let caller = st.require(&headers, OIR_READ)?;
    let id = entity_id(&id, "entityid")?;
    let (intent, subscribers) = st
        .dss
        .delete_intent(&caller, id, wire::ovn(&ovn, "ovn")?)
        .await?;
    tracing::info!(id = %intent.id, manager = %intent.manager, "operational intent deleted");
    Ok((
        StatusCode::OK,
        Json(
            json!({ "subscribers": wire::subscribers(&subscribers), "operational_intent_reference": render_intent(&st, &intent, &caller.sub)? }),
        ),
    ))
}

async fn query_constraints(
    State(st): State<Shared>,
    headers: HeaderMap,
    Body(q): Body<QueryParameters>,
) -> Reply {
    let caller = st.require(&headers, CONSTRAINT_READ)?;
    let area = q
        .area_of_interest
        .map(|a| wire::volume(a, "area_of_interest"))
        .transpose()?;
    let found = st.dss.query_constraints(area).await?;
    let avail = availability_of(&st, found.iter().map(|c| c.manager.clone()))?;
    let list: Vec<Value> = found
        .iter()
        .map(|c| wire::constraint(c, &view(&st, &caller.sub), avail[&c.manager]))
        .collect();
    Ok((
        StatusCode::OK,
        Json(json!({ "constraint_references": list })),
    ))
}

async fn get_constraint(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let caller = st.require(&headers, CONSTRAINT_READ)?;
    let c = st.dss.get_constraint(entity_id(&id, "entityid")?).await?;
    let a = availability(&st, &c.manager)?;
    Ok((
        StatusCode::OK,
        Json(json!({ "constraint_reference": wire::constraint(&c, &view(&st, &caller.sub), a) })),
    ))
}

async fn put_constraint_common(
    st: Shared,
    headers: HeaderMap,
    id: String,
    ovn: Option<String>,
    b: PutConstraintReferenceParameters,
) -> Reply {
    let caller = st.require(&headers, CONSTRAINT_WRITE)?;
    let id = entity_id(&id, "entityid")?;
    let existing = ovn.map(|o| wire::ovn(&o, "ovn")).transpose()?;
    let created = existing.is_none();
    let extents = wire::volumes(b.extents, "extents")?;
    let url = wire::base_url(b.uss_base_url, "uss_base_url")?;
    let (c, subscribers) = st
        .dss
        .put_constraint(&caller, id, existing, extents, url)
        .await?;
    tracing::info!(id = %c.id, manager = %c.manager, version = c.version, "constraint written");
    let a = availability(&st, &c.manager)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(
            json!({ "subscribers": wire::subscribers(&subscribers), "constraint_reference": wire::constraint(&c, &view(&st, &caller.sub), a) }),
        ),
    ))
}

async fn create_constraint(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(b): Body<PutConstraintReferenceParameters>,
) -> Reply {
    put_constraint_common(st, headers, id, None, b).await
}

async fn update_constraint(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path((id, ovn)): Path<(String, String)>,
    Body(b): Body<PutConstraintReferenceParameters>,
) -> Reply {
    put_constraint_common(st, headers, id, Some(ovn), b).await
}

async fn delete_constraint(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path((id, ovn)): Path<(String, String)>,
) -> Reply {
    let caller = st.require(&headers, CONSTRAINT_WRITE)?;
    let id = entity_id(&id, "entityid")?;
    let (c, subscribers) = st
        .dss
        .delete_constraint(&caller, id, wire::ovn(&ovn, "ovn")?)
        .await?;
    tracing::info!(id = %c.id, "constraint deleted");
    let a = availability(&st, &c.manager)?;
    Ok((
        StatusCode::OK,
        Json(
            json!({ "subscribers": wire::subscribers(&subscribers), "constraint_reference": wire::constraint(&c, &view(&st, &caller.sub), a) }),
        ),
    ))
}

async fn query_subscriptions(
    State(st): State<Shared>,
    headers: HeaderMap,
    Body(q): Body<QueryParameters>,
) -> Reply {
    let caller = st.require(&headers, SUBSCRIPTIONS)?;
    let area = q
        .area_of_interest
        .map(|a| wire::volume(a, "area_of_interest"))
        .transpose()?;
    let found = st.dss.query_subscriptions(&caller, area).await?;
    let list: Vec<Value> = found
        .iter()
        .map(|(s, dependents)| wire::subscription(s, dependents))
        .collect();
    Ok((StatusCode::OK, Json(json!({ "subscriptions": list }))))
}

async fn get_subscription(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let caller = st.require(&headers, SUBSCRIPTIONS)?;
    let (s, dependents) = st
        .dss
        .get_subscription(&caller, entity_id(&id, "subscriptionid")?)
        .await?;
    Ok((
        StatusCode::OK,
        Json(json!({ "subscription": wire::subscription(&s, &dependents) })),
    ))
}

async fn put_subscription_common(
    st: Shared,
    headers: HeaderMap,
    id: String,
    version: Option<String>,
    b: PutSubscriptionParameters,
) -> Reply {
    let caller = st.require(&headers, SUBSCRIPTIONS)?;
    let id = entity_id(&id, "subscriptionid")?;
    let extents = b
        .extents
        .ok_or_else(|| ApiError::bad("extents", "the subscription's extents are required"))?;
    let req = SubscriptionRequest {
        extents: wire::volume(extents, "extents")?,
        uss_base_url: wire::base_url(b.uss_base_url, "uss_base_url")?,
        notify_for_operational_intents: b.notify_for_operational_intents.unwrap_or(false),
        notify_for_constraints: b.notify_for_constraints.unwrap_or(false),
    };
    let (s, intents, constraints) = st.dss.put_subscription(&caller, id, version, req).await?;
    tracing::info!(id = %s.id, manager = %s.manager, version = %s.version, "subscription written");
    let avail = availability_of(
        &st,
        intents
            .iter()
            .map(|i| i.manager.clone())
            .chain(constraints.iter().map(|c| c.manager.clone())),
    )?;
    // F3548 PutSubscriptionResponse: each list is present exactly when the
    // subscription notifies for that kind of entity.
    let mut body = json!({ "subscription": wire::subscription(&s, &st.dss.dependents(s.id)?) });
    if s.notify_for_operational_intents {
        body["operational_intent_references"] = intents
            .iter()
            .map(|i| wire::intent(i, &view(&st, &caller.sub), avail[&i.manager]))
            .collect();
    }
    if s.notify_for_constraints {
        body["constraint_references"] = constraints
            .iter()
            .map(|c| wire::constraint(c, &view(&st, &caller.sub), avail[&c.manager]))
            .collect();
    }
    Ok((StatusCode::OK, Json(body)))
}

async fn create_subscription(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(b): Body<PutSubscriptionParameters>,
) -> Reply {
    put_subscription_common(st, headers, id, None, b).await
}

async fn update_subscription(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path((id, version)): Path<(String, String)>,
    Body(b): Body<PutSubscriptionParameters>,
) -> Reply {
    put_subscription_common(st, headers, id, Some(version), b).await
}

async fn delete_subscription(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path((id, version)): Path<(String, String)>,
) -> Reply {
    let caller = st.require(&headers, SUBSCRIPTIONS)?;
    let s = st
        .dss
        .delete_subscription(&caller, entity_id(&id, "subscriptionid")?, version)
        .await?;
    tracing::info!(id = %s.id, "subscription deleted");
    Ok((
        StatusCode::OK,
        Json(json!({ "subscription": wire::subscription(&s, &[]) })),
    ))
}

async fn make_report(
    State(st): State<Shared>,
    headers: HeaderMap,
    Body(r): Body<ErrorReport>,
) -> Reply {
    let caller = st.require(&headers, REPORTS)?;
    if !r.exchange.is_object() {
        return Err(ApiError::bad(
            "exchange",
            "the exchange must be an ExchangeRecord object",
        ));
    }
    // F3548's schema also lists `request_source`; the reference DSS and
    // the qualification tooling accept a record without it, and so does
    // this node (a report is evidence: refusing it loses it).
    for f in ["url", "method", "recorder_role", "request_time"] {
        if r.exchange.get(f).is_none() {
            return Err(ApiError::bad(
                format!("exchange.{f}"),
                format!("{f} is required in an ExchangeRecord"),
            ));
        }
    }
    let _ = r.report_id; // assigned by the server, ignored when submitted
    let exchange_json =
        serde_json::to_string(&r.exchange).map_err(|e| ApiError::bad("exchange", e.to_string()))?;
    if exchange_json.len() > 256 * 1024 {
        return Err(ApiError::TooLarge {
            field: "exchange".into(),
            message: "an exchange record may have at most 256 KiB".into(),
        });
    }
    let report = st.dss.file_report(&caller, exchange_json).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "report_id": report.id, "exchange": r.exchange })),
    ))
}

fn availability_json(a: &airspace::UssAvailability) -> Value {
    json!({ "status": { "uss": a.uss, "availability": wire::availability_str(a.availability) }, "version": a.version })
}

async fn get_availability(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(uss): Path<String>,
) -> Reply {
    st.require(&headers, AVAILABILITY_READ)?;
    Ok((
        StatusCode::OK,
        Json(availability_json(
            &st.dss.get_availability_settled(&uss).await?,
        )),
    ))
}

async fn set_availability(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(uss): Path<String>,
    Body(b): Body<SetUssAvailabilityStatusParameters>,
) -> Reply {
    let caller = st.require(&headers, AVAILABILITY_WRITE)?;
    if uss.is_empty() || uss.len() > 256 {
        return Err(ApiError::bad("uss_id", "a USS id has 1 to 256 characters"));
    }
    let availability = match b.availability {
        WireAvailability::Unknown => UssAvailabilityState::Unknown,
        WireAvailability::Normal => UssAvailabilityState::Normal,
        WireAvailability::Down => UssAvailabilityState::Down,
    };
    let a = st
        .dss
        .set_availability(uss, b.old_version, availability)
        .await?;
    tracing::info!(uss = %a.uss, availability = wire::availability_str(a.availability), by = %caller.sub, "USS availability set");
    Ok((StatusCode::OK, Json(availability_json(&a))))
}
