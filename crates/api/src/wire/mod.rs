//! The F3548-21 JSON shapes (`../shared/specs/astm-utm/utm.yaml`) and their
//! conversion to and from domain types. Inbound conversions name the field
//! at fault; outbound ones apply the spec's visibility rules (an OVN is shown
//! only to the entity's manager).

pub mod line;

use crate::error::ApiError;
use airspace::decide::ImplicitSubscription;
use airspace::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// F3548 `subscription_id` is required in an `OperationalIntentReference`;
/// an Accepted intent may have none, shown as this null UUIDv4.
pub const NULL_SUBSCRIPTION_ID: &str = "00000000-0000-4000-8000-000000000000";

#[derive(Debug, Deserialize, Serialize, Clone)]
pub struct Time {
    pub value: String,
    pub format: String,
}

#[derive(Debug, Deserialize, Serialize, Clone, Copy)]
pub struct LatLngPoint {
    pub lat: f64,
    pub lng: f64,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
pub struct Polygon {
    pub vertices: Vec<LatLngPoint>,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
pub struct Radius {
    pub value: f64,
    pub units: String,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
pub struct Circle {
    pub center: Option<LatLngPoint>,
    pub radius: Option<Radius>,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
pub struct Altitude {
    pub value: f64,
    pub reference: String,
    pub units: String,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
pub struct Volume3D {
    pub outline_circle: Option<Circle>,
    pub outline_polygon: Option<Polygon>,
    pub altitude_lower: Option<Altitude>,
    pub altitude_upper: Option<Altitude>,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
pub struct Volume4D {
    pub volume: Volume3D,
    pub time_start: Option<Time>,
    pub time_end: Option<Time>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
pub enum WireIntentState {
    Accepted,
    Activated,
    Nonconforming,
    Contingent,
}

#[derive(Debug, Deserialize)]
pub struct ImplicitSubscriptionParameters {
    pub uss_base_url: String,
    #[serde(default)]
    pub notify_for_constraints: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct PutOperationalIntentReferenceParameters {
    pub extents: Vec<Volume4D>,
    pub key: Option<Vec<String>>,
    pub state: WireIntentState,
    pub uss_base_url: String,
    pub subscription_id: Option<String>,
    pub new_subscription: Option<ImplicitSubscriptionParameters>,
    pub requested_ovn_suffix: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PutConstraintReferenceParameters {
    pub extents: Vec<Volume4D>,
    pub uss_base_url: String,
}

#[derive(Debug, Deserialize)]
pub struct PutSubscriptionParameters {
    pub extents: Option<Volume4D>,
    pub uss_base_url: String,
    pub notify_for_operational_intents: Option<bool>,
    pub notify_for_constraints: Option<bool>,
}

/// The body of every `.../query` endpoint.
#[derive(Debug, Deserialize)]
pub struct QueryParameters {
    pub area_of_interest: Option<Volume4D>,
}

/// F3548 `UssAvailabilityState`. Read without regard to case, as the
/// reference DSS does (clients send `"normal"`); always written capitalised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WireAvailability {
    Unknown,
    Normal,
    Down,
}

impl<'de> Deserialize<'de> for WireAvailability {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_lowercase().as_str() {
            "unknown" => Ok(WireAvailability::Unknown),
            "normal" => Ok(WireAvailability::Normal),
            "down" => Ok(WireAvailability::Down),
            _ => Err(serde::de::Error::custom(format!(
                "unknown availability {s:?}, expected one of Unknown, Normal, Down"
            ))),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct SetUssAvailabilityStatusParameters {
    #[serde(default)]
    pub old_version: String,
    pub availability: WireAvailability,
}

#[derive(Debug, Deserialize)]
pub struct ErrorReport {
    pub report_id: Option<String>,
    pub exchange: Value,
}

// ---- inbound conversions ----

pub fn parse_time(t: &Time, field: &str) -> Result<Timestamp, ApiError> {
    if t.format != "RFC3339" {
        return Err(ApiError::bad(
            format!("{field}.format"),
            "the only time format is \"RFC3339\"",
        ));
    }
    let dt = OffsetDateTime::parse(&t.value, &Rfc3339).map_err(|e| {
        ApiError::bad(
            format!("{field}.value"),
            format!("not an RFC 3339 date-time: {e}"),
        )
    })?;
    let micros = dt.unix_timestamp_nanos() / 1000;
    Ok(Timestamp::from_unix_micros(micros as i64))
}

pub fn format_time(t: Timestamp) -> Time {
    let value = OffsetDateTime::from_unix_timestamp_nanos(t.unix_micros() as i128 * 1000)
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_else(|| "9999-12-31T23:59:59Z".to_string());
    Time {
        value,
        format: "RFC3339".into(),
    }
}

fn altitude(a: &Option<Altitude>, field: &str) -> Result<Option<f64>, ApiError> {
    let Some(a) = a else { return Ok(None) };
    if a.reference != "W84" {
        return Err(ApiError::bad(
            format!("{field}.reference"),
            "the only altitude reference is \"W84\"",
        ));
    }
    if a.units != "M" {
        return Err(ApiError::bad(
            format!("{field}.units"),
            "the only altitude unit is \"M\"",
        ));
    }
    Ok(Some(a.value))
}

pub fn volume(v: Volume4D, field: &str) -> Result<airspace::Volume4D, ApiError> {
    let f = |s: &str| format!("{field}.{s}");
    let outline = match (v.volume.outline_circle, v.volume.outline_polygon) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad(
                f("volume"),
                "exactly one of outline_circle and outline_polygon may be given, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::bad(
                f("volume"),
                "exactly one of outline_circle and outline_polygon is required",
            ));
        }
        (None, Some(p)) => Outline::Polygon {
            vertices: p
                .vertices
                .into_iter()
                .map(|p| LatLng {
                    lat: p.lat,
                    lng: p.lng,
                })
                .collect(),
        },
        (Some(c), None) => {
            let center = c.center.ok_or_else(|| {
                ApiError::bad(f("volume.outline_circle.center"), "a circle needs a center")
            })?;
            let radius = c.radius.ok_or_else(|| {
                ApiError::bad(f("volume.outline_circle.radius"), "a circle needs a radius")
            })?;
            if radius.units != "M" {
                return Err(ApiError::bad(
                    f("volume.outline_circle.radius.units"),
                    "the only radius unit is \"M\"",
                ));
            }
            Outline::Circle {
                center: LatLng {
                    lat: center.lat,
                    lng: center.lng,
                },
                radius_m: radius.value,
            }
        }
    };
    Ok(airspace::Volume4D {
        outline,
        altitude_lower_m: altitude(&v.volume.altitude_lower, &f("volume.altitude_lower"))?,
        altitude_upper_m: altitude(&v.volume.altitude_upper, &f("volume.altitude_upper"))?,
        time_start: v
            .time_start
            .as_ref()
            .map(|t| parse_time(t, &f("time_start")))
            .transpose()?,
        time_end: v
            .time_end
            .as_ref()
            .map(|t| parse_time(t, &f("time_end")))
            .transpose()?,
    })
}

pub fn volumes(v: Vec<Volume4D>, field: &str) -> Result<Vec<airspace::Volume4D>, ApiError> {
    v.into_iter()
        .enumerate()
        .map(|(i, v)| volume(v, &format!("{field}[{i}]")))
        .collect()
}

/// A domain volume as F3548 `Volume4D` (metres above WGS-84, RFC 3339).
pub fn volume_out(v: &airspace::Volume4D) -> Value {
    let alt = |m: Option<f64>| m.map(altitude_json);
    let mut volume = json!({
        "altitude_lower": alt(v.altitude_lower_m),
        "altitude_upper": alt(v.altitude_upper_m),
    });
    match &v.outline {
        airspace::geometry::Outline::Polygon { vertices } => {
            volume["outline_polygon"] = json!({
                "vertices": vertices.iter().map(|p| json!({ "lat": p.lat, "lng": p.lng })).collect::<Vec<_>>(),
            });
        }
        airspace::geometry::Outline::Circle { center, radius_m } => {
            volume["outline_circle"] = json!({
                "center": { "lat": center.lat, "lng": center.lng },
                "radius": { "value": radius_m, "units": "M" },
            });
        }
    }
    json!({
        "volume": volume,
        "time_start": v.time_start.map(format_time),
        "time_end": v.time_end.map(format_time),
    })
}

/// F3548 `EntityID`/`SubscriptionID`: a UUIDv4.
pub fn entity_id(s: &str, field: &str) -> Result<Uuid, ApiError> {
    let u = Uuid::parse_str(s).map_err(|_| ApiError::bad(field, format!("{s:?} is not a UUID")))?;
    if u.get_version_num() != 4 || s.len() != 36 {
        return Err(ApiError::bad(
            field,
            format!("{s:?} is not a UUIDv4 in its 36-character form"),
        ));
    }
    Ok(u)
}

/// F3548 `EntityOVN`: 16 to 128 characters.
pub fn ovn(s: &str, field: &str) -> Result<Ovn, ApiError> {
    if !(16..=128).contains(&s.chars().count()) {
        return Err(ApiError::bad(field, "an OVN has 16 to 128 characters"));
    }
    Ok(Ovn(s.to_string()))
}

/// F3548 `UssBaseURL`: an absolute http(s) URL. The standard says it
/// should not end with '/'; the reference DSS accepts one, and so do we
/// (it is stored and answered exactly as given).
pub fn base_url(s: String, field: &str) -> Result<String, ApiError> {
    let host = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
        return Err(ApiError::bad(field, "must be an absolute http(s) URL"));
    }
    if s.len() > 2048 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::bad(field, "is not a valid URL"));
    }
    Ok(s)
}

pub fn intent_request(
    p: PutOperationalIntentReferenceParameters,
) -> Result<node::IntentRequest, ApiError> {
    let key = p
        .key
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, k)| ovn(k, &format!("key[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let state = match p.state {
        WireIntentState::Accepted => OperationalIntentState::Accepted,
        WireIntentState::Activated => OperationalIntentState::Activated,
        WireIntentState::Nonconforming => OperationalIntentState::Nonconforming,
        WireIntentState::Contingent => OperationalIntentState::Contingent,
    };
    let requested_ovn_suffix = match p.requested_ovn_suffix {
        Some(s) => Some(
            Uuid::parse_str(&s)
                .map_err(|_| ApiError::bad("requested_ovn_suffix", "must be a UUIDv7"))?,
        ),
        None => None,
    };
    Ok(node::IntentRequest {
        extents: volumes(p.extents, "extents")?,
        key,
        state,
        uss_base_url: base_url(p.uss_base_url, "uss_base_url")?,
        subscription_id: p
            .subscription_id
            .map(|s| entity_id(&s, "subscription_id"))
            .transpose()?,
        new_subscription: p
            .new_subscription
            .map(|n| -> Result<_, ApiError> {
                Ok(ImplicitSubscription {
                    uss_base_url: base_url(n.uss_base_url, "new_subscription.uss_base_url")?,
                    notify_for_constraints: n.notify_for_constraints.unwrap_or(false),
                })
            })
            .transpose()?,
        requested_ovn_suffix,
    })
}

// ---- outbound rendering ----

pub fn availability_str(a: UssAvailabilityState) -> &'static str {
    match a {
        UssAvailabilityState::Unknown => "Unknown",
        UssAvailabilityState::Normal => "Normal",
        UssAvailabilityState::Down => "Down",
    }
}

/// Whose view a reference is rendered for: the client asking (an OVN is
/// shown to its manager only) and where this node serves the peers'
/// copies it holds (their `uss_base_url`: this node is the managing USS
/// its own clients ask for a copy's details).
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub viewer: &'a str,
    /// This node's USS base URL; empty keeps the peer's own.
    pub copies_at: &'a str,
}

impl View<'_> {
    fn base_url<'b>(&'b self, manager: &str, own: &'b str) -> &'b str {
        if node::share::is_peer_copy(manager) && !self.copies_at.is_empty() {
            self.copies_at
        } else {
            own
        }
    }
}

/// F3548 `OperationalIntentReference` as seen from `view`.
pub fn intent(i: &OperationalIntent, view: &View, availability: UssAvailabilityState) -> Value {
    let mut v = json!({
        "id": i.id,
        "manager": i.manager,
        "uss_availability": availability_str(availability),
        "version": i.version,
        "state": i.state.as_str(),
        "time_start": format_time(i.time_start),
        "time_end": format_time(i.time_end),
        "uss_base_url": view.base_url(&i.manager, &i.uss_base_url),
        "subscription_id": i.subscription_id.map(|s| s.to_string()).unwrap_or_else(|| NULL_SUBSCRIPTION_ID.to_string()),
    });
    if i.manager == view.viewer {
        v["ovn"] = json!(i.ovn.as_str());
    }
    v
}

/// F3548 `ConstraintReference` as seen from `view`.
pub fn constraint(c: &Constraint, view: &View, availability: UssAvailabilityState) -> Value {
    let mut v = json!({
        "id": c.id,
        "manager": c.manager,
        "uss_availability": availability_str(availability),
        "version": c.version,
        "time_start": format_time(c.time_start),
        "time_end": format_time(c.time_end),
        "uss_base_url": view.base_url(&c.manager, &c.uss_base_url),
    });
    if c.manager == view.viewer {
        v["ovn"] = json!(c.ovn.as_str());
    }
    v
}

/// F3548 `Subscription`.
pub fn subscription(s: &Subscription, dependents: &[EntityId]) -> Value {
    json!({
        "id": s.id,
        "version": s.version,
        "notification_index": s.notification_index,
        "time_start": format_time(s.time_start),
        "time_end": format_time(s.time_end),
        "uss_base_url": s.uss_base_url,
        "notify_for_operational_intents": s.notify_for_operational_intents,
        "notify_for_constraints": s.notify_for_constraints,
        "implicit_subscription": s.implicit,
        "dependent_operational_intents": dependents,
    })
}

/// F3548 `SubscriberToNotify` list.
pub fn subscribers(list: &[SubscriberToNotify]) -> Value {
    Value::Array(
        list.iter()
            .map(|s| {
                json!({
                    "uss_base_url": s.uss_base_url,
                    "subscriptions": s.subscriptions.iter().map(|(id, idx)| json!({"subscription_id": id, "notification_index": idx})).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// F3548 `AirspaceConflictResponse`.
pub fn conflict_response(
    message: &str,
    intents: &[OperationalIntent],
    constraints: &[Constraint],
    view: &View,
    availability: &dyn Fn(&str) -> UssAvailabilityState,
) -> Value {
    json!({
        "message": message,
        "code": "key_check_failed",
        "missing_operational_intents": intents.iter().map(|i| intent(i, view, availability(&i.manager))).collect::<Vec<_>>(),
        "missing_constraints": constraints.iter().map(|c| constraint(c, view, availability(&c.manager))).collect::<Vec<_>>(),
    })
}

fn altitude_json(m: f64) -> Value {
    json!({ "value": m, "reference": "W84", "units": "M" })
}

/// Detente's conflict record.
pub fn conflict(c: &Conflict) -> Value {
    let (kind, b_type) = match c.kind {
        ConflictKind::IntentIntent => ("intent-intent", "operational_intent"),
        ConflictKind::IntentConstraint => ("intent-constraint", "constraint"),
    };
    json!({
        "kind": kind,
        "a": { "type": "operational_intent", "id": c.a.id, "manager": c.a.manager, "version": c.a.version },
        "b": { "type": b_type, "id": c.b.id, "manager": c.b.manager, "version": c.b.version },
        "overlaps": c.overlaps.iter().map(|o| json!({
            "volume_a": o.volume_a,
            "volume_b": o.volume_b,
            "time_start": format_time(o.time.0),
            "time_end": format_time(o.time.1),
            "altitude_lower": altitude_json(o.altitude_m.0),
            "altitude_upper": altitude_json(o.altitude_m.1),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_rfc3339_z() {
        let t = parse_time(
            &Time {
                value: "2026-11-29T10:00:00.5Z".into(),
                format: "RFC3339".into(),
            },
            "t",
        )
        .unwrap();
        assert_eq!(format_time(t).value, "2026-11-29T10:00:00.5Z");
        let t2 = parse_time(
            &Time {
                value: "2026-11-29T12:00:00.5+02:00".into(),
                format: "RFC3339".into(),
            },
            "t",
        )
        .unwrap();
        assert_eq!(t, t2, "offsets are normalised to UTC");
        assert!(
            parse_time(
                &Time {
                    value: "yesterday".into(),
                    format: "RFC3339".into()
                },
                "t"
            )
            .is_err()
        );
        assert!(
            parse_time(
                &Time {
                    value: "2026-11-29T10:00:00Z".into(),
                    format: "ISO".into()
                },
                "t"
            )
            .is_err()
        );
    }

    #[test]
    fn availability_is_read_in_any_case() {
        let read = |s: &str| serde_json::from_value::<WireAvailability>(json!(s));
        assert_eq!(read("normal").unwrap(), WireAvailability::Normal);
        assert_eq!(read("DOWN").unwrap(), WireAvailability::Down);
        assert_eq!(read("Unknown").unwrap(), WireAvailability::Unknown);
        assert!(read("pUrPlE").is_err());
    }

    #[test]
    fn ids_must_be_uuid_v4() {
        assert!(entity_id("2f8343be-6482-4d1b-a474-16847e01af1e", "id").is_ok());
        assert!(
            entity_id("0191b794-9628-745a-a598-aa1fcd4a82bf", "id").is_err(),
            "v7 is not an EntityID"
        );
        assert!(entity_id("not-a-uuid", "id").is_err());
    }

    #[test]
    fn base_urls_are_absolute_http_urls() {
        assert!(base_url("https://uss.example/utm".into(), "u").is_ok());
        assert!(
            base_url("https://uss.example/utm/".into(), "u").is_ok(),
            "the reference DSS accepts a trailing '/'"
        );
        assert!(base_url("ftp://uss.example".into(), "u").is_err());
        assert!(base_url("https://".into(), "u").is_err());
        assert!(base_url("https:///path".into(), "u").is_err());
    }
}
