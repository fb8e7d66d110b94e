//! The airspace exported for GIS tools, read back by an independent
//! reader: GDAL's `ogrinfo` (Debian `gdal-bin`) opens the GeoJSON and the
//! KML the CLI writes and finds every volume, constraint and conflict with
//! its properties. Without ogrinfo the reading is skipped, saying so,
//! unless `DETENTE_REQUIRE_GDAL` is set (CI sets it).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use serde_json::{Value, json};
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use test_support::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_detente"))
}

const SC: &str = "utm.strategic_coordination";
const CM: &str = "utm.constraint_management";

/// `ogrinfo` with `args` on `file`: its output, or `None` (skipped) where
/// GDAL is not installed.
fn ogrinfo(args: &[&str], file: &Path) -> Option<String> {
    match Command::new("ogrinfo").args(args).arg(file).output() {
        Ok(o) => {
            assert!(
                o.status.success(),
                "ogrinfo {args:?} {}: {}{}",
                file.display(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            Some(String::from_utf8_lossy(&o.stdout).into_owned())
        }
        Err(e) => {
            assert!(
                std::env::var_os("DETENTE_REQUIRE_GDAL").is_none(),
                "DETENTE_REQUIRE_GDAL is set but ogrinfo cannot run: {e}"
            );
            // Straight to the terminal: the test harness would hide eprintln!.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED reading exports with ogrinfo: {e} (apt install gdal-bin); set DETENTE_REQUIRE_GDAL=1 to make this a failure"
            );
            None
        }
    }
}

async fn put(node: &TestNode, path: &str, scope: &str, sub: &str, body: Value) -> Value {
    let r = test_support::http()
        .put(node.url(path))
        .bearer_auth(token(sub, scope))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{status} {v}");
    v
}

fn export(node: &TestNode, tok: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["airspace", "export", "--node", &node.base, "--token", tok];
    all.extend_from_slice(args);
    run_cli(bin(), &all, &[])
}

#[tokio::test]
async fn exports_open_in_gdal_with_every_volume_constraint_and_conflict() {
    let node = TestNode::start(bin());
    // ALPHA (uss1, two volumes), BRAVO (uss2) across ALPHA's first volume,
    // a circular constraint (authority) under BRAVO.
    let alpha = new_id();
    let a = put(
        &node,
        &format!("/dss/v1/operational_intent_references/{alpha}"),
        SC,
        "uss1",
        json!({
            "extents": [square(45.0, 10.2, 0.02), square(45.5, 10.5, 0.01)],
            "key": [], "state": "Accepted", "uss_base_url": "https://uss1.example",
            "new_subscription": { "uss_base_url": "https://uss1.example", "notify_for_constraints": false },
        }),
    )
    .await;
    let alpha_ovn = a["operational_intent_reference"]["ovn"]
        .as_str()
        .unwrap()
        .to_string();
    let zone = new_id();
    put(
        &node,
        &format!("/dss/v1/constraint_references/{zone}"),
        CM,
        "authority",
        json!({
            "extents": [{
                "volume": {
                    "outline_circle": { "center": {"lat": 45.0, "lng": 10.23}, "radius": {"value": 1500, "units": "M"} },
                    "altitude_lower": { "value": 0, "reference": "W84", "units": "M" },
                    "altitude_upper": { "value": 300, "reference": "W84", "units": "M" },
                },
                "time_start": at(0), "time_end": at(3600),
            }],
            "uss_base_url": "https://authority.example",
        }),
    )
    .await;
    let zone_ovn = {
        let r = test_support::http()
            .get(node.url(&format!("/dss/v1/constraint_references/{zone}")))
            .bearer_auth(token("authority", CM))
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        v["constraint_reference"]["ovn"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let bravo = new_id();
    put(
        &node,
        &format!("/dss/v1/operational_intent_references/{bravo}"),
        SC,
        "uss2",
        json!({
            "extents": [square(45.0, 10.22, 0.02)],
            "key": [alpha_ovn, zone_ovn], "state": "Accepted", "uss_base_url": "https://uss2.example",
            "new_subscription": { "uss_base_url": "https://uss2.example", "notify_for_constraints": true },
        }),
    )
    .await;
    let tok = token("viewer", SC);
    let dir = tempfile::tempdir().unwrap();

    // GeoJSON: 2 + 1 intent volumes, 1 constraint, 3 conflicts (BRAVO ×
    // ALPHA, each of them × the zone), each a feature.
    let gj = dir.path().join("airspace.geojson");
    let (ok, out) = export(
        &node,
        &tok,
        &["--bbox", "9.5,44.5,11,46", "--out", gj.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&gj).unwrap()).unwrap();
    let features = v["features"].as_array().unwrap();
    let count = |entity: &str| {
        features
            .iter()
            .filter(|f| f["properties"]["entity"] == entity)
            .count()
    };
    assert_eq!(
        (
            count("operational_intent"),
            count("constraint"),
            count("conflict")
        ),
        (3, 1, 3),
        "{v}"
    );
    assert!(!v.to_string().contains(&alpha_ovn), "never an OVN");
    // The circle is drawn at its radius, counterclockwise and closed.
    let circle = features
        .iter()
        .find(|f| f["properties"]["entity"] == "constraint")
        .unwrap();
    let ring = circle["geometry"]["coordinates"][0].as_array().unwrap();
    assert!(ring.len() > 32);
    assert_eq!(ring.first(), ring.last());
    if let Some(info) = ogrinfo(&["-ro", "-al", "-so"], &gj) {
        assert!(info.contains("Feature Count: 7"), "{info}");
        for field in [
            "entity: String",
            "manager: String",
            "altitude_lower_m: Real",
            "time_start:",
        ] {
            assert!(info.contains(field), "{field} in {info}");
        }
    }
    if let Some(all) = ogrinfo(&["-ro", "-al"], &gj) {
        assert_eq!(
            all.matches("entity (String) = conflict").count(),
            3,
            "{all}"
        );
        assert_eq!(
            all.matches("\n  manager (String) = uss1").count(),
            2,
            "{all}"
        );
        assert!(all.contains(&format!("b_id (String) = {zone}")), "{all}");
        assert_eq!(all.matches("MULTIPOLYGON").count(), 3, "{all}");
    }

    // Filters: a box elsewhere holds nothing; a window after everything
    // ends holds nothing.
    let (ok, out) = export(&node, &tok, &["--bbox", "-10,-10,-9,-9"]);
    assert!(ok, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap()["features"],
        json!([])
    );
    let later = at(7200);
    let (ok, out) = export(&node, &tok, &["--from", later["value"].as_str().unwrap()]);
    assert!(ok, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap()["features"],
        json!([])
    );
    // A bad box is refused naming the flag's field, exit code 1.
    let (ok, out) = export(&node, &tok, &["--bbox", "11,44,9,46"]);
    assert!(!ok && out.contains("bbox"), "{out}");

    // KML: a folder per kind, each placemark with its time span.
    let kml = dir.path().join("airspace.kml");
    let (ok, out) = export(
        &node,
        &tok,
        &["--format", "kml", "--out", kml.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(&kml).unwrap();
    assert_eq!(text.matches("<TimeSpan>").count(), 7, "{text}");
    if let Some(info) = ogrinfo(&["-ro", "-so", "-al"], &kml) {
        for (layer, n) in [
            ("Operational intents", 3),
            ("Constraints", 1),
            ("Conflicts", 3),
        ] {
            let at = info
                .find(&format!("Layer name: {layer}"))
                .unwrap_or_else(|| panic!("{layer} in {info}"));
            assert!(
                info[at..].contains(&format!("Feature Count: {n}")),
                "{layer}: {n} in {info}"
            );
        }
    }
    if let Some(all) = ogrinfo(&["-ro", "-al"], &kml) {
        assert!(all.contains("POLYGON Z"), "{all}");
        assert!(all.contains("300"), "the constraint's top at 300 m: {all}");
    }
}

#[tokio::test]
async fn geojson_imports_as_constraints_and_a_line_string_becomes_the_line_of_contact() {
    let node = TestNode::start(bin());
    let dir = tempfile::tempdir().unwrap();
    // Two features of one zone (same id) and one of another; the
    // altitude of one comes from the command line.
    let zone = new_id();
    let square = |lng: f64, props: Value| {
        json!({ "type": "Feature", "properties": props, "geometry": { "type": "Polygon",
            "coordinates": [[[lng, 46.0], [lng + 0.05, 46.0], [lng + 0.05, 46.05], [lng, 46.05], [lng, 46.0]]] } })
    };
    let fc = json!({ "type": "FeatureCollection", "features": [
        square(11.0, json!({ "id": zone, "altitude_lower_m": 0, "altitude_upper_m": 150 })),
        square(11.1, json!({ "id": zone, "altitude_lower_m": 0, "altitude_upper_m": 300 })),
        square(11.2, json!({ "altitude_upper_m": 1000 })),
    ]});
    let file = dir.path().join("zones.geojson");
    std::fs::write(&file, fc.to_string()).unwrap();
    let (from, to) = (at(0), at(3600));
    let cm = token("authority", CM);
    let (ok, out) = run_cli(
        bin(),
        &[
            "airspace",
            "import",
            file.to_str().unwrap(),
            "--as",
            "constraint",
            "--altitude-lower",
            "50",
            "--from",
            from["value"].as_str().unwrap(),
            "--to",
            to["value"].as_str().unwrap(),
            "--uss-base-url",
            "https://authority.example",
            "--node",
            &node.base,
            "--token",
            &cm,
        ],
        &[],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("constraint {zone}: 2 volume(s)")),
        "{out}"
    );
    assert_eq!(out.matches("constraint ").count(), 2, "{out}");
    // What the node holds now exports back as three constraint volumes.
    let viewer = token("viewer", SC);
    let (ok, out) = export(&node, &viewer, &[]);
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let uppers: Vec<f64> = v["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["altitude_upper_m"].as_f64().unwrap())
        .collect();
    assert_eq!(uppers.len(), 3, "{v}");
    for u in [150.0, 300.0, 1000.0] {
        assert!(uppers.contains(&u), "{uppers:?}");
    }
    // A bad file is refused naming the member at fault, nothing created.
    std::fs::write(&file, json!({"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [1, 2]}}).to_string()).unwrap();
    let (ok, out) = run_cli(
        bin(),
        &[
            "airspace",
            "import",
            file.to_str().unwrap(),
            "--as",
            "constraint",
            "--uss-base-url",
            "https://a.example",
            "--node",
            &node.base,
            "--token",
            &cm,
        ],
        &[],
    );
    assert!(!ok && out.contains("$.geometry.type"), "{out}");

    // The line of contact, drawn as a LineString: the node buffers it.
    let line = dir.path().join("contact.geojson");
    std::fs::write(
        &line,
        json!({ "type": "Feature", "properties": {}, "geometry": { "type": "LineString",
            "coordinates": [[12.0, 46.0], [12.3, 46.1], [12.6, 46.0]] } })
        .to_string(),
    )
    .unwrap();
    let admin = token("line-admin", "detente.line.admin");
    // The line in `line`, declared with a 3 km buffer.
    let declare = || {
        run_cli(
            bin(),
            &[
                "airspace",
                "import",
                line.to_str().unwrap(),
                "--as",
                "contact",
                "--buffer-m",
                "3000",
                "--to",
                to["value"].as_str().unwrap(),
                "--node",
                &node.base,
                "--token",
                &admin,
            ],
            &[],
        )
    };
    let (ok, out) = declare();
    assert!(ok && out.contains("line of contact: constraint"), "{out}");
    let contact = out
        .split("constraint ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();
    // Local planners learn its OVN from the node, its managing USS.
    let cp = token("planner", "utm.constraint_processing");
    let r = test_support::http()
        .get(node.url(&format!("/uss/v1/constraints/{contact}")))
        .bearer_auth(&cp)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let details: Value = r.json().await.unwrap();
    let reference = &details["constraint"]["reference"];
    assert_eq!(reference["uss_base_url"], node.base.as_str(), "{details}");
    let contact_ovn = reference["ovn"].as_str().unwrap().to_string();
    // An operation 2 km off the line (inside the 3 km buffer) must prove it
    // knows the line; 5 km off (outside) it need not.
    let planner = token("planner", SC);
    let put = |id: String, lat: f64, key: Vec<String>| {
        let (url, planner) = (
            node.url(&format!("/dss/v1/operational_intent_references/{id}")),
            planner.clone(),
        );
        async move {
            let r = test_support::http()
                .put(url)
                .bearer_auth(planner)
                .json(&json!({
                    "extents": [square_during(lat, 12.3, 0.002, 0, 1800)], "key": key, "state": "Accepted",
                    "uss_base_url": "https://planner.example",
                    "new_subscription": { "uss_base_url": "https://planner.example", "notify_for_constraints": true },
                }))
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap())
        }
    };
    // 46.1 N is on the line at 12.3 E; 0.018° of latitude is 2 km.
    let (s, v) = put(new_id(), 46.1 - 0.018, vec![]).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["missing_constraints"][0]["id"], contact.as_str(), "{v}");
    let (s, v) = put(new_id(), 46.1 - 0.018, vec![contact_ovn]).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = put(new_id(), 46.1 - 0.045, vec![]).await;
    assert_eq!(s, 201, "5 km off the line: {v}");
    // A line that turns back on itself is refused, naming the line.
    std::fs::write(
        &line,
        json!({ "type": "LineString", "coordinates": [[12.0, 46.0], [12.3, 46.0], [12.0, 46.001]] }).to_string(),
    )
    .unwrap();
    let (ok, out) = declare();
    assert!(!ok && out.contains("line[1]"), "{out}");
}
