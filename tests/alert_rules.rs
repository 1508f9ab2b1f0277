//! The chart's alerts and dashboard, checked without a cluster: the PrometheusRule as the chart renders it
//! (`tests/helm/chart.py`) through Debian's `promtool` (`check rules`, and the unit tests of
//! `charts/wpa/tests/alerts_test.yaml`, which fire and hold back every alert on series shaped as wpa exports
//! them), and the structure of `charts/wpa/dashboards/wpa.json`. tests/observability_e2e.rs runs both against
//! a real Prometheus scraping `wpa serve`.
//!
//! Needs python3 with helm-python-sdk and promtool (`bash scripts/test.sh e2e` installs both; the tests find
//! promtool in WPA_PROMETHEUS_BIN_DIR, else on PATH). Nothing is skipped: without them the tests fail and say so.

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{Value, json};
use support::prometheus::{bin, dashboard, dashboard_queries, render_chart, rules_file};

fn repo() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every alert (the scheduler extender on, so that all nine render).
fn all_alerts() -> Value {
    json!({"prometheusRule": {"enabled": true}, "schedulerExtender": {"enabled": true}})
}

#[test]
fn the_rendered_rules_pass_promtool_check() {
    let promtool = bin("promtool");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rules = rules_file(&all_alerts(), dir.path());
    let out = Command::new(&promtool).args(["check", "rules"]).arg(&rules).output().expect("promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check rules:\n{text}");
    assert!(text.contains("SUCCESS: 9 rules found"), "{text}");
    // The extender's alert only with the extender, the leader's only with the reconciler.
    let rules = rules_file(
        &json!({"prometheusRule": {"enabled": true}, "reconciler": {"enabled": false}}),
        dir.path(),
    );
    let text = std::fs::read_to_string(rules).expect("rules");
    assert!(!text.contains("WPAExtenderNoSafeNode") && !text.contains("WPANoLeader"), "{text}");
}

#[test]
fn promtool_unit_tests_fire_and_hold_back_every_alert() {
    let promtool = bin("promtool");
    let dir = tempfile::tempdir().expect("a temporary directory");
    rules_file(&all_alerts(), dir.path());
    let tests = std::fs::read_to_string(repo().join("charts/wpa/tests/alerts_test.yaml")).expect("the tests");
    // Every alert has a test in which it fires and one in which it does not (yet).
    let rules = std::fs::read_to_string(dir.path().join("wpa-rules.yaml")).expect("rules");
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        let name = format!("alertname: {alert}\n");
        let blocks: Vec<&str> = tests.split("  - eval_time:").filter(|b| b.contains(&name)).collect();
        assert!(blocks.iter().any(|b| b.contains("exp_alerts: []")), "no test where {alert} stays silent");
        assert!(blocks.iter().any(|b| b.contains("- exp_labels:")), "no test where {alert} fires");
    }
    let copy = dir.path().join("alerts_test.yaml");
    std::fs::write(&copy, tests).expect("copy the tests");
    let out = Command::new(&promtool).args(["test", "rules"]).arg(&copy).output().expect("promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("SUCCESS"), "promtool test rules:\n{text}");
}

/// Every alert's runbook_url leads to a section of docs/runbook.md (its anchor as Markdown renderers make
/// it from the heading), and every section of the runbook is an alert's.
#[test]
fn every_runbook_url_names_a_section_of_the_runbook() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let docs = render_chart(&all_alerts(), dir.path(), "runbook");
    let rule = docs.iter().find(|d| d["kind"] == "PrometheusRule").expect("a PrometheusRule");
    let urls: BTreeSet<String> = rule["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .map(|r| r["annotations"]["runbook_url"].as_str().expect("a runbook_url").to_string())
        .collect();
    let runbook = std::fs::read_to_string(repo().join("docs/runbook.md")).expect("the runbook");
    let sections: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| {
            h.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ')
                .collect::<String>()
        })
        .map(|h| h.replace(' ', "-"))
        .collect();
    let linked: BTreeSet<String> = urls
        .iter()
        .map(|u| {
            let (page, anchor) = u.split_once('#').unwrap_or_else(|| panic!("no section in {u}"));
            assert_eq!(page, "docs/runbook.md", "the default runbookUrl");
            anchor.to_string()
        })
        .collect();
    assert_eq!(urls.len(), 9, "{urls:?}");
    assert_eq!(linked, sections, "the alerts' sections against the runbook's");
}

#[test]
fn the_dashboard_has_a_datasource_variable_unique_panel_ids_and_prometheus_targets() {
    let d = dashboard();
    let vars = d["templating"]["list"].as_array().expect("variables");
    let var = |name: &str| vars.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no ${name}"));
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    for name in ["namespace", "wpa"] {
        assert_eq!(var(name)["type"], "query");
        assert_eq!(var(name)["datasource"]["uid"], "${datasource}");
    }
    let panels = d["panels"].as_array().expect("panels");
    let ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().expect("a numeric id")).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "panel ids are unique: {ids:?}");
    let mut titles = BTreeSet::new();
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let title = p["title"].as_str().expect("a title");
        assert!(titles.insert(title), "two panels are titled {title}");
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title} uses the datasource variable");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has a query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()), "{title}");
        }
    }
    // What the issue asks the dashboard to show, each by the series that carries it.
    let queries = dashboard_queries(&d).join("\n");
    for series in [
        "wpa_controller_value",
        "wpa_controller_high_watermark",
        "wpa_controller_low_watermark",
        "wpa_current_replicas",
        "wpa_controller_replicas_scaling_effective",
        "wpa_controller_replicas_scaling_proposal",
        "wpa_controller_conditions",
        "wpa_controller_upscale_replicas_total",
        "wpa_controller_downscale_replicas_total",
        "wpa_reconciles_total",
        "wpa_reconcile_yields_total",
        "wpa_kube_client_requests_total",
        "wpa_webhook_requests_total",
        "wpa_webhook_request_duration_seconds_bucket",
        "wpa_scheduler_extender_requests_total",
        "wpa_scheduler_extender_infeasible_total",
    ] {
        assert!(queries.contains(series), "no panel shows {series}");
    }
    // Grafana's sidecar gets the same JSON from the chart.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let docs = render_chart(&json!({"grafanaDashboard": {"enabled": true}}), dir.path(), "dashboard");
    let cm = docs.iter().find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "wpa-dashboard");
    let cm = cm.expect("the dashboard ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let embedded: Value =
        serde_json::from_str(cm["data"]["wpa.json"].as_str().expect("wpa.json")).expect("JSON");
    assert_eq!(embedded, d);
}
