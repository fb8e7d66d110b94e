//! GeoJSON (RFC 7946) read as F3548 volumes: what a staff officer drew in
//! QGIS becomes operational intents or constraints without writing F3548
//! JSON by hand (`detente airspace import`). Each Polygon feature (or each
//! polygon of a MultiPolygon) is one 4D volume: its outer ring, the
//! altitude band and time window from the feature's properties
//! (`altitude_lower_m`, `altitude_upper_m`, `time_start`, `time_end`) or
//! from defaults. Features with the same `id` property (a UUID) make one
//! entity; a feature without one is an entity of its own. Conflict
//! features (as `/detente/v1/export` writes them) are skipped, so an export
//! reads back. Errors name the feature and the member at fault.

use serde_json::{Value, json};

/// One entity to create: its id if the file gave one, and its extents as
/// F3548 `Volume4D` JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    pub id: Option<String>,
    pub extents: Vec<Value>,
}

/// What a feature may leave out.
#[derive(Clone, Debug, Default)]
pub struct Defaults {
    pub altitude_lower_m: Option<f64>,
    pub altitude_upper_m: Option<f64>,
    /// RFC 3339.
    pub time_start: Option<String>,
    pub time_end: Option<String>,
}

/// Why a file was refused: the path of the member at fault and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ImportError {
    pub field: String,
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> ImportError {
    ImportError {
        field: field.into(),
        message: message.into(),
    }
}

/// Most features a file may hold.
pub const MAX_FEATURES: usize = 10_000;

/// Reads a GeoJSON FeatureCollection or Feature.
pub fn features(text: &str, d: &Defaults) -> Result<Vec<Imported>, ImportError> {
    let v: Value = serde_json::from_str(text).map_err(|e| bad("$", format!("not JSON: {e}")))?;
    let list: Vec<(String, &Value)> = match v["type"].as_str() {
        Some("FeatureCollection") => {
            let fs = v["features"]
                .as_array()
                .ok_or_else(|| bad("features", "a FeatureCollection holds a features array"))?;
            if fs.len() > MAX_FEATURES {
                return Err(bad("features", format!("at most {MAX_FEATURES} features")));
            }
            fs.iter()
                .enumerate()
                .map(|(i, f)| (format!("features[{i}]"), f))
                .collect()
        }
        Some("Feature") => vec![("$".to_string(), &v)],
        _ => return Err(bad("type", "a FeatureCollection or a Feature")),
    };
    let mut out: Vec<Imported> = Vec::new();
    for (at, f) in list {
        if f["type"] != "Feature" {
            return Err(bad(format!("{at}.type"), "\"Feature\""));
        }
        let props = &f["properties"];
        // Conflicts (as Detente exports them) are derived, not declared.
        if props["entity"] == "conflict" {
            continue;
        }
        let g = &f["geometry"];
        let polygons: Vec<(String, &Value)> = match g["type"].as_str() {
            Some("Polygon") => vec![(format!("{at}.geometry.coordinates"), &g["coordinates"])],
            Some("MultiPolygon") => g["coordinates"]
                .as_array()
                .ok_or_else(|| bad(format!("{at}.geometry.coordinates"), "an array of polygons"))?
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("{at}.geometry.coordinates[{i}]"), p))
                .collect(),
            _ => {
                return Err(bad(
                    format!("{at}.geometry.type"),
                    "Polygon or MultiPolygon (a line of contact is imported with --buffer)",
                ));
            }
        };
        let band = |k: &str, dflt: Option<f64>| -> Result<f64, ImportError> {
            match &props[k] {
                Value::Null => dflt.ok_or_else(|| {
                    bad(
                        format!("{at}.properties.{k}"),
                        "missing (metres above the WGS-84 ellipsoid; or give a default)",
                    )
                }),
                x => x
                    .as_f64()
                    .filter(|m| m.is_finite())
                    .ok_or_else(|| bad(format!("{at}.properties.{k}"), "a number of metres")),
            }
        };
        let when = |k: &str, dflt: &Option<String>| -> Result<String, ImportError> {
            match &props[k] {
                Value::Null => dflt.clone().ok_or_else(|| {
                    bad(
                        format!("{at}.properties.{k}"),
                        "missing (an RFC 3339 time; or give a default)",
                    )
                }),
                Value::String(s) => Ok(s.clone()),
                _ => Err(bad(format!("{at}.properties.{k}"), "an RFC 3339 time")),
            }
        };
        let (lower, upper) = (
            band("altitude_lower_m", d.altitude_lower_m)?,
            band("altitude_upper_m", d.altitude_upper_m)?,
        );
        let (start, end) = (
            when("time_start", &d.time_start)?,
            when("time_end", &d.time_end)?,
        );
        let id = match &props["id"] {
            Value::Null => None,
            Value::String(s) if uuid::Uuid::parse_str(s).is_ok() => Some(s.to_lowercase()),
            _ => return Err(bad(format!("{at}.properties.id"), "a UUID")),
        };
        let mut extents = Vec::new();
        for (path, p) in polygons {
            let rings = p
                .as_array()
                .ok_or_else(|| bad(&path, "an array of rings"))?;
            match rings.len() {
                0 => return Err(bad(&path, "no outer ring")),
                1 => {}
                _ => {
                    return Err(bad(
                        &path,
                        "holes are not allowed (F3548 outlines have none): draw the volume without them",
                    ));
                }
            }
            let ring = rings[0]
                .as_array()
                .ok_or_else(|| bad(format!("{path}[0]"), "an array of positions"))?;
            let mut vertices = Vec::with_capacity(ring.len());
            for (k, pos) in ring.iter().enumerate() {
                let xy = pos.as_array().filter(|a| (2..=3).contains(&a.len()));
                let (Some(lng), Some(lat)) = (
                    xy.and_then(|a| a[0].as_f64()),
                    xy.and_then(|a| a[1].as_f64()),
                ) else {
                    return Err(bad(
                        format!("{path}[0][{k}]"),
                        "a position [longitude, latitude]",
                    ));
                };
                vertices.push(json!({ "lng": lng, "lat": lat }));
            }
            // GeoJSON repeats the first position at the end; F3548 does not.
            if vertices.len() >= 2 && vertices.first() == vertices.last() {
                vertices.pop();
            }
            if vertices.len() < 3 {
                return Err(bad(format!("{path}[0]"), "at least 3 distinct positions"));
            }
            extents.push(json!({
                "volume": {
                    "outline_polygon": { "vertices": vertices },
                    "altitude_lower": { "value": lower, "reference": "W84", "units": "M" },
                    "altitude_upper": { "value": upper, "reference": "W84", "units": "M" },
                },
                "time_start": { "value": start, "format": "RFC3339" },
                "time_end": { "value": end, "format": "RFC3339" },
            }));
        }
        match out.iter_mut().find(|e| e.id.is_some() && e.id == id) {
            Some(e) => e.extents.extend(extents),
            None => out.push(Imported { id, extents }),
        }
    }
    if out.is_empty() {
        return Err(bad("features", "no feature to import"));
    }
    Ok(out)
}

/// The line of a GeoJSON LineString (a bare geometry, a Feature, or the
/// only LineString feature of a FeatureCollection) as [latitude,
/// longitude] points.
pub fn line_string(text: &str) -> Result<Vec<[f64; 2]>, ImportError> {
    let v: Value = serde_json::from_str(text).map_err(|e| bad("$", format!("not JSON: {e}")))?;
    let (at, g) = match v["type"].as_str() {
        Some("LineString") => ("$".to_string(), &v),
        Some("Feature") => ("$.geometry".to_string(), &v["geometry"]),
        Some("FeatureCollection") => {
            let lines: Vec<(usize, &Value)> = v["features"]
                .as_array()
                .ok_or_else(|| bad("features", "a FeatureCollection holds a features array"))?
                .iter()
                .enumerate()
                .filter(|(_, f)| f["geometry"]["type"] == "LineString")
                .collect();
            match lines.as_slice() {
                [(i, f)] => (format!("features[{i}].geometry"), &f["geometry"]),
                [] => return Err(bad("features", "no LineString feature")),
                _ => {
                    return Err(bad(
                        "features",
                        "more than one LineString: one line of contact per file",
                    ));
                }
            }
        }
        _ => {
            return Err(bad(
                "type",
                "a LineString, or a Feature or FeatureCollection holding one",
            ));
        }
    };
    if g["type"] != "LineString" {
        return Err(bad(format!("{at}.type"), "\"LineString\""));
    }
    let coords = g["coordinates"]
        .as_array()
        .ok_or_else(|| bad(format!("{at}.coordinates"), "an array of positions"))?;
    if coords.len() > MAX_FEATURES {
        return Err(bad(
            format!("{at}.coordinates"),
            format!("at most {MAX_FEATURES} positions"),
        ));
    }
    coords
        .iter()
        .enumerate()
        .map(|(k, pos)| {
            let xy = pos.as_array().filter(|a| (2..=3).contains(&a.len()));
            match (
                xy.and_then(|a| a[0].as_f64()),
                xy.and_then(|a| a[1].as_f64()),
            ) {
                (Some(lng), Some(lat)) => Ok([lat, lng]),
                _ => Err(bad(
                    format!("{at}.coordinates[{k}]"),
                    "a position [longitude, latitude]",
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(id: Option<&str>, lower: Option<f64>) -> Value {
        let mut props = json!({ "altitude_upper_m": 300.0, "time_start": "2026-12-06T10:00:00Z" });
        if let Some(id) = id {
            props["id"] = json!(id);
        }
        if let Some(l) = lower {
            props["altitude_lower_m"] = json!(l);
        }
        json!({ "type": "Feature", "properties": props, "geometry": { "type": "Polygon",
            "coordinates": [[[10.0, 45.0], [10.1, 45.0], [10.1, 45.1], [10.0, 45.1], [10.0, 45.0]]] } })
    }

    #[test]
    fn features_with_one_id_make_one_entity_and_defaults_fill_the_gaps() {
        let id = "7f0c1b2a-0000-4000-8000-000000000001";
        let fc = json!({ "type": "FeatureCollection", "features": [
            square(Some(id), Some(0.0)), square(None, None), square(Some(id), Some(100.0)) ] });
        let d = Defaults {
            altitude_lower_m: Some(50.0),
            time_end: Some("2026-12-06T12:00:00Z".into()),
            ..Defaults::default()
        };
        let got = features(&fc.to_string(), &d).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id.as_deref(), Some(id));
        assert_eq!(got[0].extents.len(), 2);
        assert_eq!(got[1].id, None);
        let v = &got[1].extents[0];
        assert_eq!(v["volume"]["altitude_lower"]["value"], 50.0);
        assert_eq!(v["time_end"]["value"], "2026-12-06T12:00:00Z");
        // The closing position is dropped, the order kept.
        let vs = v["volume"]["outline_polygon"]["vertices"]
            .as_array()
            .unwrap();
        assert_eq!(vs.len(), 4);
        assert_eq!(vs[1], json!({"lng": 10.1, "lat": 45.0}));
    }

    #[test]
    fn what_cannot_be_a_volume_is_refused_naming_the_member() {
        let d = Defaults::default();
        let err = |v: Value| features(&v.to_string(), &d).unwrap_err();
        let e = err(square(None, None));
        assert_eq!(e.field, "$.properties.altitude_lower_m");
        let mut holed = square(None, Some(0.0));
        holed["properties"]["time_end"] = json!("2026-12-06T12:00:00Z");
        holed["geometry"]["coordinates"]
            .as_array_mut()
            .unwrap()
            .push(json!([
                [10.02, 45.02],
                [10.03, 45.02],
                [10.03, 45.03],
                [10.02, 45.02]
            ]));
        assert!(err(holed).message.contains("holes"));
        let mut line = square(None, Some(0.0));
        line["geometry"] =
            json!({ "type": "LineString", "coordinates": [[10.0, 45.0], [10.1, 45.1]] });
        assert_eq!(err(line).field, "$.geometry.type");
        let mut bad_pos = square(None, Some(0.0));
        bad_pos["properties"]["time_end"] = json!("2026-12-06T12:00:00Z");
        bad_pos["geometry"]["coordinates"][0][2] = json!(["x", 1]);
        assert_eq!(err(bad_pos).field, "$.geometry.coordinates[0][2]");
        assert_eq!(err(json!({"type": "Topology"})).field, "type");
        // A line of contact: lat/lng swapped into [latitude, longitude].
        let line = json!({"type": "Feature", "properties": {}, "geometry": {"type": "LineString",
            "coordinates": [[10.0, 45.0], [10.5, 45.2, 0.0]]}});
        assert_eq!(
            line_string(&line.to_string()).unwrap(),
            vec![[45.0, 10.0], [45.2, 10.5]]
        );
        let two = json!({"type": "FeatureCollection", "features": [line, line]});
        assert!(
            line_string(&two.to_string())
                .unwrap_err()
                .message
                .contains("more than one")
        );
        assert_eq!(features("{", &d).unwrap_err().field, "$");
    }
}
