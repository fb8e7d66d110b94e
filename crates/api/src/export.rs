//! The airspace for GIS tools: operational intents, constraints and
//! conflicts as GeoJSON (RFC 7946) and KML 2.2, filtered by a box and a
//! time window. `GET /detente/v1/export/airspace.geojson` and
//! `/detente/v1/export/airspace.kml`, with `bbox=west,south,east,north`
//! (degrees; absent: everywhere), `from` and `to` (RFC 3339; absent: now
//! and open). One feature per volume; never an OVN.
//!
//! Outlines are drawn as rings in longitude and latitude (GeoJSON's and
//! KML's edges are straight there): polygon edges split along their
//! ellipsoidal geodesics and circles drawn as points, at most
//! [`EDGE_M`] apart, counterclockwise.

use crate::Shared;
use crate::error::ApiError;
use crate::wire::format_time;
use airspace::{
    Conflict, ConflictKind, Constraint, LatLng, OperationalIntent, PreparedVolume, Timestamp,
};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use node::Scope;
use node::dss::Exported;
use serde::Deserialize;
use serde_json::{Value, json};
use std::fmt::Write as _;

/// The longest straight piece of a drawn outline, in metres.
pub const EDGE_M: f64 = 1_000.0;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/detente/v1/export/airspace.geojson", get(geojson))
        .route("/detente/v1/export/airspace.kml", get(kml))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Only what lies in this box: west,south,east,north (degrees).
    pub bbox: Option<String>,
    /// Only what lasts beyond this time (RFC 3339; default now).
    pub from: Option<String>,
    /// Only what starts before this time (RFC 3339).
    pub to: Option<String>,
}

/// Parses `west,south,east,north`.
pub fn parse_bbox(s: &str) -> Result<[f64; 4], ApiError> {
    let parts: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| ApiError::bad("bbox", "four numbers: west,south,east,north (degrees)"))?;
    <[f64; 4]>::try_from(parts)
        .map_err(|_| ApiError::bad("bbox", "four numbers: west,south,east,north (degrees)"))
}

pub fn parse_instant(s: &str, field: &str) -> Result<Timestamp, ApiError> {
    let t = crate::wire::Time {
        value: s.to_string(),
        format: "RFC3339".into(),
    };
    crate::wire::parse_time(&t, field)
        .map_err(|_| ApiError::bad(field, "an RFC 3339 date-time, e.g. 2026-12-06T10:00:00Z"))
}

async fn exported(
    st: &Shared,
    headers: &HeaderMap,
    q: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Exported, ApiError> {
    st.require(
        headers,
        &[
            Scope::StrategicCoordination,
            Scope::ConformanceMonitoringSa,
            Scope::ConstraintProcessing,
        ],
    )?;
    let Query(q) = q.map_err(|e| ApiError::bad("query", format!("bbox, from, to: {e}")))?;
    let bbox = q.bbox.as_deref().map(parse_bbox).transpose()?;
    let from = match q.from.as_deref() {
        Some(s) => parse_instant(s, "from")?,
        None => Timestamp::from_unix_micros(i64::MIN),
    };
    let to =
        q.to.as_deref()
            .map(|s| parse_instant(s, "to"))
            .transpose()?;
    if let Some(to) = to
        && to <= from
    {
        return Err(ApiError::bad("to", "must be after from"));
    }
    Ok(st.dss.export(bbox, from, to).await?)
}

#[utoipa::path(get, path = "/detente/v1/export/airspace.geojson", tag = "airspace", summary = "The airspace as GeoJSON (RFC 7946): one feature per volume", params(crate::export::ExportQuery), responses((status = 200, description = "A FeatureCollection (application/geo+json)", body = serde_json::Value), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["utm.strategic_coordination"]), ("bearer" = ["utm.conformance_monitoring_sa"]), ("bearer" = ["utm.constraint_processing"])))]
async fn geojson(
    State(st): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let e = exported(&st, &headers, q).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/geo+json")],
        serde_json::to_string(&to_geojson(&e)).unwrap_or_default(),
    ))
}

#[utoipa::path(get, path = "/detente/v1/export/airspace.kml", tag = "airspace", summary = "The airspace as KML 2.2, a folder per kind, each placemark with its TimeSpan", params(crate::export::ExportQuery), responses((status = 200, description = "A KML document (application/vnd.google-earth.kml+xml)", body = String), (status = 400, description = "Invalid input; `field` names what is at fault", body = crate::openapi::ErrorBody), (status = 401, description = "No usable bearer token (or console session)", body = crate::openapi::ErrorBody), (status = 403, description = "Authenticated, but without the scope (or role) this needs", body = crate::openapi::ErrorBody), (status = 503, description = "The store cannot reach its database; retry", body = crate::openapi::ErrorBody)), security(("bearer" = ["utm.strategic_coordination"]), ("bearer" = ["utm.conformance_monitoring_sa"]), ("bearer" = ["utm.constraint_processing"])))]
async fn kml(
    State(st): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let e = exported(&st, &headers, q).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/vnd.google-earth.kml+xml")],
        to_kml(&e),
    ))
}

fn time_text(t: Timestamp) -> String {
    format_time(t).value
}

/// A drawn volume: its ring and what it is.
struct Drawn {
    ring: Vec<LatLng>,
    properties: Vec<(&'static str, Value)>,
    begin: Timestamp,
    end: Timestamp,
    upper_m: f64,
}

fn volume_properties(v: &PreparedVolume, index: usize) -> Vec<(&'static str, Value)> {
    vec![
        ("volume", json!(index)),
        ("altitude_lower_m", json!(v.altitude.0)),
        ("altitude_upper_m", json!(v.altitude.1)),
        ("altitude_reference", json!("W84")),
        ("time_start", json!(time_text(v.time.0))),
        ("time_end", json!(time_text(v.time.1))),
    ]
}

fn drawn_intent(i: &OperationalIntent) -> impl Iterator<Item = Drawn> + '_ {
    i.extents.iter().enumerate().map(move |(n, v)| {
        let mut p = vec![
            ("entity", json!("operational_intent")),
            ("id", json!(i.id)),
            ("manager", json!(i.manager)),
            ("state", json!(i.state.as_str())),
            ("version", json!(i.version)),
        ];
        p.extend(volume_properties(v, n));
        Drawn {
            ring: airspace::geometry::outline_ring(&v.volume.outline, EDGE_M),
            properties: p,
            begin: v.time.0,
            end: v.time.1,
            upper_m: v.altitude.1,
        }
    })
}

fn drawn_constraint(c: &Constraint) -> impl Iterator<Item = Drawn> + '_ {
    c.extents.iter().enumerate().map(move |(n, v)| {
        let mut p = vec![
            ("entity", json!("constraint")),
            ("id", json!(c.id)),
            ("manager", json!(c.manager)),
            ("version", json!(c.version)),
        ];
        p.extend(volume_properties(v, n));
        Drawn {
            ring: airspace::geometry::outline_ring(&v.volume.outline, EDGE_M),
            properties: p,
            begin: v.time.0,
            end: v.time.1,
            upper_m: v.altitude.1,
        }
    })
}

/// One feature per overlap of a conflict: both volumes' outlines (their
/// shared area lies within both), the overlap's time window and band.
fn drawn_conflicts<'a>(
    c: &'a Conflict,
    e: &'a Exported,
) -> impl Iterator<Item = (Vec<Vec<LatLng>>, Drawn)> + 'a {
    let a = e.intents.iter().find(|i| i.id == c.a.id);
    let b_extents: Option<&Vec<PreparedVolume>> = match c.kind {
        ConflictKind::IntentIntent => e
            .intents
            .iter()
            .find(|i| i.id == c.b.id)
            .map(|i| &i.extents),
        ConflictKind::IntentConstraint => e
            .constraints
            .iter()
            .find(|x| x.id == c.b.id)
            .map(|x| &x.extents),
    };
    c.overlaps.iter().filter_map(move |o| {
        let va = a?.extents.get(o.volume_a)?;
        let vb = b_extents?.get(o.volume_b)?;
        let kind = match c.kind {
            ConflictKind::IntentIntent => "intent-intent",
            ConflictKind::IntentConstraint => "intent-constraint",
        };
        let rings = vec![
            airspace::geometry::outline_ring(&va.volume.outline, EDGE_M),
            airspace::geometry::outline_ring(&vb.volume.outline, EDGE_M),
        ];
        let properties = vec![
            ("entity", json!("conflict")),
            ("kind", json!(kind)),
            ("a_id", json!(c.a.id)),
            ("a_manager", json!(c.a.manager)),
            ("a_version", json!(c.a.version)),
            ("a_volume", json!(o.volume_a)),
            ("b_id", json!(c.b.id)),
            ("b_manager", json!(c.b.manager)),
            ("b_version", json!(c.b.version)),
            ("b_volume", json!(o.volume_b)),
            ("altitude_lower_m", json!(o.altitude_m.0)),
            ("altitude_upper_m", json!(o.altitude_m.1)),
            ("altitude_reference", json!("W84")),
            ("time_start", json!(time_text(o.time.0))),
            ("time_end", json!(time_text(o.time.1))),
        ];
        Some((
            rings,
            Drawn {
                ring: Vec::new(),
                properties,
                begin: o.time.0,
                end: o.time.1,
                upper_m: o.altitude_m.1,
            },
        ))
    })
}

fn position(p: &LatLng) -> Value {
    json!([p.lng, p.lat])
}

fn properties(p: &[(&'static str, Value)]) -> Value {
    Value::Object(
        p.iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect(),
    )
}

/// The export as a GeoJSON FeatureCollection.
pub fn to_geojson(e: &Exported) -> Value {
    let mut features = Vec::new();
    let polygon = |d: &Drawn| {
        json!({
            "type": "Feature",
            "geometry": { "type": "Polygon", "coordinates": [d.ring.iter().map(position).collect::<Vec<_>>()] },
            "properties": properties(&d.properties),
        })
    };
    for i in &e.intents {
        features.extend(drawn_intent(i).map(|d| polygon(&d)));
    }
    for c in &e.constraints {
        features.extend(drawn_constraint(c).map(|d| polygon(&d)));
    }
    for c in &e.conflicts {
        for (rings, d) in drawn_conflicts(c, e) {
            features.push(json!({
                "type": "Feature",
                "geometry": { "type": "MultiPolygon", "coordinates": rings.iter().map(|r| vec![r.iter().map(position).collect::<Vec<_>>()]).collect::<Vec<_>>() },
                "properties": properties(&d.properties),
            }));
        }
    }
    json!({ "type": "FeatureCollection", "features": features })
}

/// XML text with the five predefined entities escaped.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot hold at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A ring at `alt_m` as KML coordinates (`lng,lat,alt` tuples).
fn kml_ring(ring: &[LatLng], alt_m: f64) -> String {
    let mut s = String::new();
    for p in ring {
        let _ = write!(s, "{},{},{} ", p.lng, p.lat, alt_m);
    }
    s.trim_end().to_string()
}

/// A volume as KML: its top at the upper altitude, extruded down (KML has
/// no floating prism; the lower altitude is in the data).
fn kml_polygon(ring: &[LatLng], upper_m: f64) -> String {
    format!(
        "<Polygon><extrude>1</extrude><altitudeMode>absolute</altitudeMode><outerBoundaryIs><LinearRing><coordinates>{}</coordinates></LinearRing></outerBoundaryIs></Polygon>",
        kml_ring(ring, upper_m)
    )
}

fn kml_placemark(out: &mut String, name: &str, style: &str, d: &Drawn, geometry: &str) {
    let _ = write!(
        out,
        "<Placemark><name>{}</name><styleUrl>#{style}</styleUrl><TimeSpan><begin>{}</begin><end>{}</end></TimeSpan><ExtendedData>",
        xml(name),
        time_text(d.begin),
        time_text(d.end)
    );
    for (k, v) in &d.properties {
        let _ = write!(
            out,
            "<Data name=\"{k}\"><value>{}</value></Data>",
            xml(&plain(v))
        );
    }
    let _ = write!(out, "</ExtendedData>{geometry}</Placemark>");
}

/// The export as a KML 2.2 document: a folder each for operational
/// intents, constraints and conflicts.
pub fn to_kml(e: &Exported) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<kml xmlns=\"http://www.opengis.net/kml/2.2\"><Document><name>Detente airspace</name>\
<Style id=\"intent\"><LineStyle><color>ffd08a3a</color><width>2</width></LineStyle><PolyStyle><color>553a8ad0</color></PolyStyle></Style>\
<Style id=\"constraint\"><LineStyle><color>ff2a2ad0</color><width>2</width></LineStyle><PolyStyle><color>552a2ad0</color></PolyStyle></Style>\
<Style id=\"conflict\"><LineStyle><color>ff00a5ff</color><width>3</width></LineStyle><PolyStyle><color>7700a5ff</color></PolyStyle></Style>",
    );
    out.push_str("<Folder><name>Operational intents</name>");
    for i in &e.intents {
        for d in drawn_intent(i) {
            let name = format!("{} ({}, {})", i.id, i.manager, i.state.as_str());
            kml_placemark(
                &mut out,
                &name,
                "intent",
                &d,
                &kml_polygon(&d.ring, d.upper_m),
            );
        }
    }
    out.push_str("</Folder><Folder><name>Constraints</name>");
    for c in &e.constraints {
        for d in drawn_constraint(c) {
            let name = format!("{} ({})", c.id, c.manager);
            kml_placemark(
                &mut out,
                &name,
                "constraint",
                &d,
                &kml_polygon(&d.ring, d.upper_m),
            );
        }
    }
    out.push_str("</Folder><Folder><name>Conflicts</name>");
    for c in &e.conflicts {
        for (rings, d) in drawn_conflicts(c, e) {
            let name = format!("{} × {}", c.a.id, c.b.id);
            let geometry = format!(
                "<MultiGeometry>{}</MultiGeometry>",
                rings
                    .iter()
                    .map(|r| kml_polygon(r, d.upper_m))
                    .collect::<String>()
            );
            kml_placemark(&mut out, &name, "conflict", &d, &geometry);
        }
    }
    out.push_str("</Folder></Document></kml>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_is_escaped_and_never_holds_what_xml_cannot() {
        assert_eq!(xml("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(xml("x\u{1}y\tz"), "x\u{FFFD}y\tz");
    }

    #[test]
    fn a_bbox_is_four_numbers() {
        assert_eq!(
            parse_bbox("9.5,44.5,11,45.5").ok(),
            Some([9.5, 44.5, 11.0, 45.5])
        );
        for bad in ["", "1,2,3", "1,2,3,4,5", "a,b,c,d", "1,,2,3"] {
            assert!(parse_bbox(bad).is_err(), "{bad}");
        }
    }
}
