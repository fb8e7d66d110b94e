//! What ships for operators in `ops/`: the Prometheus alert rules, checked
//! and unit-tested by Prometheus's own `promtool`, and the Grafana
//! dashboard; and that every metric either names is one a node exports.
//!
//! Needs `promtool` (Debian: `apt install prometheus`); without it the
//! promtool checks say they were skipped, unless `DETENTE_REQUIRE_PROMTOOL`
//! is set (CI sets it).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn ops() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops")
}

/// Runs promtool with `args` in `ops/prometheus` (see
/// `test_support::promtool`).
fn promtool(args: &[&str]) -> Option<std::process::Output> {
    test_support::promtool(args, &ops().join("prometheus"), "")
}

fn succeeded(o: &std::process::Output) -> bool {
    use std::io::Write as _;
    if !o.status.success() {
        let _ = writeln!(
            std::io::stderr(),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    o.status.success()
}

#[test]
fn the_alert_rules_are_valid_and_fire_as_their_tests_expect() {
    if let Some(o) = promtool(&["check", "rules", "detente.rules.yml"]) {
        assert!(succeeded(&o), "promtool check rules");
    }
    if let Some(o) = promtool(&["test", "rules", "detente.rules.test.yml"]) {
        assert!(succeeded(&o), "promtool test rules");
    }
}

/// The `detente_*` metric names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("detente_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// The family a sample name belongs to (as registered).
fn family(name: &str) -> &str {
    for suffix in ["_total", "_bucket", "_sum", "_count", "_info"] {
        if let Some(base) = name.strip_suffix(suffix) {
            return base;
        }
    }
    name
}

#[test]
fn the_rules_and_the_dashboard_name_only_metrics_a_node_exports() {
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/src/metrics.rs"),
    )
    .unwrap();
    let exported: BTreeSet<String> = metric_names(&source)
        .into_iter()
        .filter(|n| source.contains(&format!("\"{n}\"")))
        .collect();
    assert!(exported.len() > 20, "{exported:?}");
    let rules = std::fs::read_to_string(ops().join("prometheus/detente.rules.yml")).unwrap();
    let dashboard = std::fs::read_to_string(ops().join("grafana/detente.json")).unwrap();
    // Help texts name metrics too (`Check detente_line_peer_reachable`).
    for (what, text) in [("rules", &rules), ("dashboard", &dashboard)] {
        let named = metric_names(text);
        assert!(named.len() > 5, "{what}: {named:?}");
        for n in named {
            assert!(
                exported.contains(family(&n)),
                "{what} names {n}, which no node exports"
            );
        }
    }
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_of_prometheus_queries() {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ops().join("grafana/detente.json")).unwrap())
            .unwrap();
    assert_eq!(v["uid"], "detente-node");
    let panels = v["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut queries = Vec::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "panel ids are unique"
        );
        let g = &p["gridPos"];
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "{p}"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["type"], "prometheus", "{p}");
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            assert!(expr.contains("detente_"), "{expr}");
            queries.push(expr.to_string());
        }
    }
    assert!(queries.len() >= 20, "{queries:?}");
    // Prometheus's own parser reads every query (Grafana's variables
    // given values), as recording rules of a file promtool checks.
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        let q = q
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&q).unwrap()
        ));
    }
    let file = dir.path().join("dashboard.rules.yml");
    std::fs::write(&file, rules).unwrap();
    if let Some(o) = promtool(&["check", "rules", file.to_str().unwrap()]) {
        assert!(succeeded(&o), "the dashboard's queries parse");
    }
}
