//! `wpa status` on a real control plane: a fleet of WPAs in three namespaces, reconciled by `wpa serve` (its
//! webhook registered), each held in one state by its metric and spec: in band, above a watermark waiting
//! out its delay, in a forbidden window, pinned at maxReplicas or at minReplicas, a failing metric, a
//! fallback holding its count through an outage, a missing target, a target scaled to 0, an invalid spec,
//! dry-run, and one whose target an HPA also scales. Each test runs the `wpa` binary (or `kubectl wpa`) against it and
//! checks one thing the command promises (docs/status.md).
//!
//! The fleet is built once per test binary ([`Shared`]) and torn down at exit.

mod support;

use std::{
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use devcluster::Shared;
use serde_json::Value;
use support::{Run, ScalingCluster, WpaServe, run, wait_for};

const NS: &str = "fleet";
const OTHER_NS: &str = "fleet-b";
/// A namespace the webhook skips (labelled `wpa.datadoghq.com/webhook=disabled`), so that a WPA with an
/// invalid spec can exist in it, as one created before the webhook was installed.
const UNCHECKED_NS: &str = "fleet-c";
const SECOND: Duration = Duration::from_secs(1);

/// What each WPA of the fleet is made to be, by name: the state `wpa status` must print.
const STATES: [(&str, &str, &str); 12] = [
    (NS, "calm", "in-band"),
    (NS, "hot", "above"),
    (NS, "windowed", "window"),
    (NS, "capped", "at-max"),
    (NS, "broken", "failing"),
    (NS, "orphan", "blocked"),
    (NS, "shared", "in-band"),
    (OTHER_NS, "far", "in-band"),
    (UNCHECKED_NS, "low", "at-min"),
    (UNCHECKED_NS, "rescue", "fallback"),
    (UNCHECKED_NS, "parked", "off"),
    (UNCHECKED_NS, "odd", "invalid"),
];

struct Fleet {
    /// Dropped at exit with the shared fleet: the control plane, the provider's network namespace and
    /// `wpa serve` go.
    cluster: ScalingCluster,
    _serve: WpaServe,
    kubeconfig: PathBuf,
    /// A directory with `kubectl-wpa` (a link to the binary under test) for `kubectl wpa`.
    plugins: PathBuf,
    kubectl: PathBuf,
}

static FLEET: Shared<Fleet> = Shared::new();

async fn fleet() -> Arc<Fleet> {
    FLEET
        .get(|| async {
            let (cluster, serve) = build().await.unwrap_or_else(|e| panic!("{e:#}"));
            let kubeconfig = cluster.cluster.kubeconfig_path().to_path_buf();
            let plugins = cluster.cluster.dir().join("plugins");
            std::fs::create_dir_all(&plugins).expect("a plugin directory");
            symlink(env!("CARGO_BIN_EXE_wpa"), plugins.join("kubectl-wpa")).expect("link kubectl-wpa");
            let kubectl = cluster.cluster.bin_dir().join("kubectl");
            Fleet { cluster, _serve: serve, kubeconfig, plugins, kubectl }
        })
        .await
}

/// A WPA on Deployment `target` with one External metric (absolute: the value itself against the
/// watermarks 50..100), `max` replicas at most, and `extra` spec lines.
fn wpa(namespace: &str, name: &str, target: &str, max: i32, labels: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: datadoghq.com/v1alpha1
kind: WatermarkPodAutoscaler
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{{labels}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {target}}}
  minReplicas: 1
  maxReplicas: {max}
  algorithm: absolute
  metrics:
  - type: External
    external:
      metricName: {name}-m
      metricSelector: {{matchLabels: {{app: {target}}}}}
      highWatermark: "100"
      lowWatermark: "50"
{extra}"#
    )
}

async fn build() -> anyhow::Result<(ScalingCluster, WpaServe)> {
    let c = ScalingCluster::start().await;
    c.cluster.create_namespace(UNCHECKED_NS, &[("wpa.datadoghq.com/webhook", "disabled")]).await?;
    for (ns, name, replicas) in
        [(NS, "calm", 2), (NS, "hot", 2), (NS, "windowed", 2), (NS, "capped", 4), (NS, "broken", 2)]
            .into_iter()
            .chain([(NS, "shared", 2), (OTHER_NS, "far", 1)])
            .chain([(UNCHECKED_NS, "low", 2), (UNCHECKED_NS, "rescue", 2), (UNCHECKED_NS, "parked", 0)])
            .chain([(UNCHECKED_NS, "odd", 2)])
    {
        c.deployment(ns, name, replicas).await?;
    }
    for (metric, value) in [("calm-m", 75.0), ("hot-m", 300.0), ("windowed-m", 300.0), ("capped-m", 900.0)]
        .into_iter()
        .chain([("shared-m", 60.0), ("far-m", 70.0), ("orphan-m", 75.0)])
        .chain([("low-m", 10.0), ("parked-m", 75.0), ("odd-m", 75.0)])
    {
        c.metrics.set(metric, value);
    }
    c.metrics.answer("broken-m", devcluster::synthetic_metrics::Answer::Error(503));
    c.metrics.answer("rescue-m", devcluster::synthetic_metrics::Answer::Error(503));
    let (serve, _ca) = support::start_with_webhook(&c.cluster, "status", &["--sync-period", "2s"]).await?;
    let windows = "  upscaleForbiddenWindowSeconds: 0\n  downscaleForbiddenWindowSeconds: 0\n";
    for text in [
        wpa(NS, "calm", "calm", 10, "team: a", "  dryRun: true\n"),
        wpa(NS, "hot", "hot", 10, "team: a", &format!("{windows}  upscaleDelayAboveWatermarkSeconds: 900\n")),
        wpa(NS, "windowed", "windowed", 10, "team: a", "  upscaleForbiddenWindowSeconds: 900\n"),
        wpa(NS, "capped", "capped", 4, "team: b", windows),
        wpa(NS, "broken", "broken", 10, "team: b", ""),
        wpa(NS, "orphan", "ghost", 10, "team: b", ""),
        wpa(NS, "shared", "shared", 10, "team: b", ""),
        wpa(OTHER_NS, "far", "far", 10, "team: a", ""),
        // The metrics ask for 1 replica (10 against 50..100 over 2): held at minReplicas 2.
        wpa(UNCHECKED_NS, "low", "low", 10, "team: c", "").replace("  minReplicas: 1\n", "  minReplicas: 2\n"),
        // Every metric failing for over a second: the fallback holds the 2 replicas it asks for.
        wpa(UNCHECKED_NS, "rescue", "rescue", 10, "team: c", "").replace(
            "  labels: {team: c}\n",
            "  labels: {team: c}\n  annotations: {wpa.datadoghq.com/fallback-replicas: \"2\", wpa.datadoghq.com/fallback-after: 1s}\n",
        ),
        // Scaled to 0 by hand: the WPA is off, as upstream's.
        wpa(UNCHECKED_NS, "parked", "parked", 10, "team: c", ""),
        // minReplicas above maxReplicas: the webhook would refuse it; here it was never asked.
        wpa(UNCHECKED_NS, "odd", "odd", 10, "team: c", "").replace("  minReplicas: 1\n", "  minReplicas: 20\n"),
    ] {
        c.cluster.kubectl_apply(&text).map_err(|e| anyhow::anyhow!("{e}\n{text}"))?;
    }
    // An HPA created after the WPA on the same target: admitted, reported as a conflict. Its bounds are
    // the target's count, so that it never moves it.
    c.cluster
        .kubectl_apply(
            "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: shared, namespace: fleet}\n\
             spec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: shared}\n  minReplicas: 2\n  \
             maxReplicas: 2\n",
        )
        .map_err(|e| anyhow::anyhow!("the HPA: {e}"))?;
    // Until `wpa serve` has passed every WPA (the window opens with the first scale, the delay counts from
    // the first pass above the watermark) and the states are the fleet's.
    let kubeconfig = c.cluster.kubeconfig_path().to_path_buf();
    wait_for(120 * SECOND, || {
        let kubeconfig = kubeconfig.clone();
        async move {
            let r = wpa_status(&kubeconfig, &["-A", "-o", "json"]);
            let report: Value = serde_json::from_str(&r.stdout).map_err(|e| format!("{e}: {}", r.stderr))?;
            let seen = states(&report);
            let settled = STATES.iter().all(|(ns, name, state)| {
                seen.iter().any(|(n, m, s, next)| {
                    n == ns
                        && m == name
                        && s == state
                        && (!["above", "window"].contains(state) || next.is_some())
                })
            });
            if settled { Ok(()) } else { Err(format!("{seen:?}")) }
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("the fleet's states: {e}"))?;
    Ok((c, serve))
}

/// (namespace, name, state, nextScale) of each item of a JSON report.
fn states(report: &Value) -> Vec<(String, String, String, Option<String>)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    report["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    (
                        text(&i["namespace"]),
                        text(&i["name"]),
                        text(&i["state"]),
                        i["nextScale"].as_str().map(String::from),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn wpa_status(kubeconfig: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wpa"));
    cmd.arg("status")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("WPA_NAMESPACE")
        .env_remove("WPA_STATUS_OUTPUT");
    run(cmd)
}

async fn status(args: &[&str]) -> Run {
    wpa_status(&fleet().await.kubeconfig, args)
}

async fn json(args: &[&str]) -> Value {
    let r = status(&[args, &["-o", "json"]].concat()).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

fn item<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["name"] == name))
        .unwrap_or_else(|| panic!("{name} in {report:#}"))
}

/// The table's row of `name`, split on the column gaps (three spaces or more).
fn row(table: &str, name: &str) -> Vec<String> {
    let line = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("a row for {name} in\n{table}"));
    line.split("   ").map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect()
}

#[tokio::test]
async fn each_wpa_of_a_namespace_is_one_row_in_its_state() {
    let r = status(&["-n", NS]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let header: Vec<&str> = r
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        ["NAME", "TARGET", "REPLICAS", "STATE", "VALUE (LOW..HIGH)", "NEXT SCALE"],
        "{}",
        r.stdout
    );
    assert_eq!(r.stdout.lines().count(), 1 + 7, "a header and the 7 WPAs of {NS}:\n{}", r.stdout);
    for (ns, name, state) in STATES.iter().filter(|(ns, ..)| *ns == NS) {
        let cells = row(&r.stdout, name);
        let word = cells[3].split('+').next().unwrap_or_default();
        assert_eq!(word, *state, "{ns}/{name}:\n{}", r.stdout);
    }
}

/// The states a WPA holds without a scale in sight: pinned at its minimum, in fallback, off, invalid.
#[tokio::test]
async fn at_min_fallback_off_and_invalid_wpas_are_one_row_each_in_their_state() {
    let r = status(&["-n", UNCHECKED_NS]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 1 + 4, "a header and the 4 WPAs of {UNCHECKED_NS}:\n{}", r.stdout);
    for (_, name, state) in STATES.iter().filter(|(ns, ..)| *ns == UNCHECKED_NS) {
        assert_eq!(row(&r.stdout, name)[3], *state, "{name}:\n{}", r.stdout);
    }
}

#[tokio::test]
async fn fail_on_fallback_names_the_wpa_in_fallback() {
    let r = status(&["-n", UNCHECKED_NS, "--fail-on", "fallback"]).await;
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("1 WatermarkPodAutoscaler(s) in a state of --fail-on: fleet-c/rescue (fallback)"),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn a_row_shows_the_value_against_its_watermarks_and_the_target() {
    let r = status(&["-n", NS]).await;
    let cells = row(&r.stdout, "hot");
    assert_eq!(cells[1], "Deployment/hot", "{}", r.stdout);
    assert_eq!(cells[4], "hot-m 300 (50..100)", "{}", r.stdout);
    assert_eq!(row(&r.stdout, "broken")[4], "broken-m failed", "{}", r.stdout);
    assert_eq!(row(&r.stdout, "orphan")[2], "-", "a missing target has no count:\n{}", r.stdout);
}

/// The whole minutes at the start of `text` ("14 min 58 s left" -> 14).
fn whole_minutes(text: &str) -> Option<u64> {
    text.split_once(" min")?.0.parse().ok()
}

#[tokio::test]
async fn a_wait_says_when_the_next_scale_can_happen() {
    let r = status(&["-n", NS]).await;
    for name in ["hot", "windowed"] {
        let next = row(&r.stdout, name).last().cloned().unwrap_or_default();
        // A 900 s delay or window, counted from a pass when the fleet settled (tests of this binary share the
        // fleet and may run minutes later).
        let left = next.strip_prefix("in ").and_then(whole_minutes);
        assert!(left.is_some_and(|m| (5..=15).contains(&m)), "{name}: {next}\n{}", r.stdout);
    }
    assert_eq!(row(&r.stdout, "calm").last().map(String::as_str), Some("-"), "{}", r.stdout);
}

#[tokio::test]
async fn wide_adds_the_flags_and_the_decision_in_words() {
    let r = status(&["-n", NS, "-o", "wide"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let header = row(&r.stdout, "NAME");
    assert_eq!(header[5..], ["NEXT SCALE", "FLAGS", "DETAIL"], "{}", r.stdout);
    let hot = row(&r.stdout, "hot");
    assert_eq!(hot[3], "above", "the flags have their own column:\n{}", r.stdout);
    let detail = hot.last().cloned().unwrap_or_default();
    let left = detail.strip_prefix("waiting: upscale delay (above the band), ").and_then(whole_minutes);
    assert!(
        left.is_some_and(|m| (5..=15).contains(&m)) && detail.ends_with(" left, then up 3 -> 4"),
        "{detail}\n{}",
        r.stdout
    );
    assert_eq!(row(&r.stdout, "shared")[6], "conflict", "{}", r.stdout);
}

#[tokio::test]
async fn a_capped_wpa_holds_at_its_maximum() {
    let report = json(&["-n", NS]).await;
    let capped = item(&report, "capped");
    assert_eq!(capped["state"], "at-max", "{capped:#}");
    assert_eq!(capped["replicas"], serde_json::json!({"current": 4, "desired": 4}), "{capped:#}");
}

#[tokio::test]
async fn dry_run_and_a_conflicting_hpa_are_flags_on_the_row() {
    let r = status(&["-n", NS]).await;
    assert_eq!(row(&r.stdout, "calm")[3], "in-band+dry-run", "{}", r.stdout);
    assert_eq!(row(&r.stdout, "shared")[3], "in-band+conflict", "{}", r.stdout);
    let report = json(&["-n", NS]).await;
    assert_eq!(item(&report, "shared")["flags"], serde_json::json!(["conflict"]));
}

#[tokio::test]
async fn all_namespaces_adds_the_namespace_column() {
    let r = status(&["-A"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.starts_with("NAMESPACE   NAME"), "{}", r.stdout);
    let far = r.stdout.lines().find(|l| l.contains(" far ")).unwrap_or_else(|| panic!("far:\n{}", r.stdout));
    assert!(far.starts_with(OTHER_NS), "{}", r.stdout);
    assert_eq!(r.stdout.lines().count(), 1 + STATES.len(), "{}", r.stdout);
}

#[tokio::test]
async fn a_label_selector_keeps_only_the_matching_wpas() {
    let report = json(&["-A", "-l", "team=a"]).await;
    let mut names: Vec<String> = states(&report).into_iter().map(|(_, name, ..)| name).collect();
    names.sort();
    assert_eq!(names, ["calm", "far", "hot", "windowed"], "{report:#}");
    assert_eq!(report["scope"], "all namespaces with labels team=a");
}

#[tokio::test]
async fn the_json_report_carries_its_schema_version_and_each_metric() {
    let report = json(&["-n", NS]).await;
    assert_eq!(report["schemaVersion"], 1);
    assert!(report["generatedAt"].as_str().is_some_and(|t| t.ends_with('Z')), "{report:#}");
    let hot = item(&report, "hot");
    assert_eq!(
        hot["metrics"],
        serde_json::json!([{
            "name": "hot-m", "displayName": "hot-m{map[app:hot]}", "value": 300.0,
            "lowWatermark": 50.0, "highWatermark": 100.0, "position": "above"
        }]),
        "{hot:#}"
    );
    assert_eq!(item(&report, "broken")["metrics"][0]["value"], Value::Null);
}

#[tokio::test]
async fn fail_on_exits_1_naming_the_wpas_in_those_states() {
    let r = status(&["-n", NS, "--fail-on", "blocked,failing"]).await;
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("orphan"), "the report is printed first:\n{}", r.stdout);
    assert!(
        r.stderr.contains("2 WatermarkPodAutoscaler(s) in a state of --fail-on: fleet/broken (failing), fleet/orphan (blocked)"),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn fail_on_exits_0_when_no_wpa_is_in_those_states() {
    let r = status(&["-n", OTHER_NS, "--fail-on", "blocked,failing,fallback"]).await;
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
}

#[tokio::test]
async fn kubectl_wpa_status_is_the_same_command() {
    let f = fleet().await;
    let path = format!("{}:{}", f.plugins.display(), std::env::var("PATH").unwrap_or_default());
    let mut kubectl = Command::new(&f.kubectl);
    kubectl
        .args(["wpa", "status", "-n", OTHER_NS, "-o", "json"])
        .env("PATH", path)
        .env("KUBECONFIG", &f.kubeconfig);
    let r = run(kubectl);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    assert_eq!(states(&report).len(), 1, "{report:#}");
    assert_eq!(item(&report, "far")["state"], "in-band");
}

#[tokio::test]
async fn an_empty_namespace_says_so() {
    let f = fleet().await;
    f.cluster.cluster.create_namespace("fleet-empty", &[]).await.expect("a namespace");
    let r = status(&["-n", "fleet-empty"]).await;
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (Some(0), "No WatermarkPodAutoscaler in namespace fleet-empty.\n")
    );
}
