//! The CRD behaves as upstream's on a real API server: server-side apply replaces a metric's selector whole,
//! explicit nulls are pruned rather than stored, and status metrics need their type and name.
//!
//! One control plane for the binary (with the CRD), a namespace per test.

mod support;

use std::sync::Arc;

use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};
use support::{Shared, TestCluster, TestNamespace};
use wpa::api::WatermarkPodAutoscaler;

static CLUSTER: Shared<TestCluster> = Shared::new();

/// The binary's control plane, with the WPA CRD.
async fn cluster() -> Arc<TestCluster> {
    CLUSTER.get(support::cluster_with_crd).await
}

fn wpa_with_selector(namespace: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "datadoghq.com/v1alpha1", "kind": "WatermarkPodAutoscaler",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 5,
            "metrics": [{"type": "External", "external": {"metricName": "qps", "highWatermark": "10",
                "lowWatermark": "5", "metricSelector": {"matchLabels": labels}}}]
        }
    })
}

/// WPA `name` of `ns`, without metrics.
fn plain_wpa(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: datadoghq.com/v1alpha1\nkind: WatermarkPodAutoscaler\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\n  maxReplicas: 5\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_schema_marks_selectors_atomic_and_names_the_list_kind() {
    let cluster = cluster().await;
    let served = support::kubectl_json(&cluster, &["get", "crd", "watermarkpodautoscalers.datadoghq.com"]);
    let selector = &served["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["metrics"]["items"]["properties"]["external"]["properties"]["metricSelector"];
    assert_eq!(selector["x-kubernetes-map-type"], "atomic", "{selector}");
    assert_eq!(selector["properties"]["matchExpressions"]["x-kubernetes-list-type"], "atomic");
    assert_eq!(
        selector["properties"]["matchExpressions"]["items"]["properties"]["values"]["x-kubernetes-list-type"],
        "atomic"
    );
    assert_eq!(served["spec"]["names"]["listKind"], "WatermarkPodAutoscalerList");
}

/// Two managers apply the WPA: the second one's selector replaces the first's, labels are not merged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_replaces_a_selector_whole_after_a_conflict() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster).await;
    let api: Api<WatermarkPodAutoscaler> = Api::namespaced(cluster.client(), &ns);
    let first = wpa_with_selector(&ns, json!({"app": "web", "tier": "front"}));
    api.patch("web", &PatchParams::apply("team-a"), &Patch::Apply(&first)).await.expect("first apply");
    let second = wpa_with_selector(&ns, json!({"app": "web"}));
    let conflict = api.patch("web", &PatchParams::apply("team-b"), &Patch::Apply(&second)).await;
    assert!(
        matches!(&conflict, Err(kube::Error::Api(s)) if s.code == 409),
        "another manager's selector: {conflict:?}"
    );
    let applied = api
        .patch("web", &PatchParams::apply("team-b").force(), &Patch::Apply(&second))
        .await
        .expect("forced");
    let labels =
        serde_json::to_value(&applied.spec.metrics.as_ref().expect("metrics")[0]).expect("JSON")["external"]
            ["metricSelector"]["matchLabels"]
            .clone();
    assert_eq!(labels, json!({"app": "web"}), "the selector is replaced whole");
}

/// An explicit null (what a Helm value left empty renders) is pruned, as by upstream's CRD.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_nulls_are_pruned_not_stored() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster).await;
    cluster
        .kubectl_apply(&(plain_wpa(&ns, "nulls") + "  minReplicas: null\n  tolerance: null\n"))
        .expect("apply with nulls");
    let stored = support::kubectl_json(&cluster, &["get", "wpa", "nulls", "-n", &ns]);
    let spec = stored["spec"].as_object().expect("spec");
    assert!(!spec.contains_key("minReplicas") && !spec.contains_key("tolerance"), "nulls pruned: {spec:?}");
}

/// The VALUE cell of `kubectl get wpa NAME` once the status holds `status_metric`.
async fn value_column(cluster: &TestCluster, ns: &str, name: &str, status_metric: Value) -> String {
    cluster.kubectl_apply(&plain_wpa(ns, name)).expect("a WPA");
    let api: Api<WatermarkPodAutoscaler> = Api::namespaced(cluster.client(), ns);
    let status =
        json!({"status": {"currentReplicas": 1, "desiredReplicas": 1, "currentMetrics": [status_metric]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.expect("status");
    let table = cluster.kubectl(&["get", "wpa", name, "-n", ns]);
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    eprintln!("{table}");
    // Columns are aligned on the header; empty cells are blanks.
    let column = table.lines().next().and_then(|h| h.find("VALUE")).unwrap_or(0);
    table
        .lines()
        .nth(1)
        .and_then(|row| row.get(column..))
        .and_then(|cell| cell.split_whitespace().next())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_wpa_shows_an_external_metrics_value() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster).await;
    let metric = json!({"type": "External", "external": {"metricName": "qps", "currentValue": "7"}});
    assert_eq!(value_column(&cluster, &ns, "web", metric).await, "7");
}

/// Upstream's column shows External metrics only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_wpa_shows_a_resource_metrics_value_too() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster).await;
    let metric = json!({"type": "Resource", "resource": {"name": "cpu", "currentAverageValue": "250m"}});
    assert_eq!(value_column(&cluster, &ns, "cpu", metric).await, "250m");
}

/// A status metric without its type, or an external one without its metric name, or a resource one without
/// its name, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_metric_without_its_type_or_name_is_refused_naming_the_field() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster).await;
    cluster.kubectl_apply(&plain_wpa(&ns, "web")).expect("a WPA");
    let api: Api<WatermarkPodAutoscaler> = Api::namespaced(cluster.client(), &ns);
    for (entry, field) in [
        (json!({"external": {"metricName": "qps", "currentValue": "1"}}), "type"),
        (json!({"type": "External", "external": {"currentValue": "1"}}), "metricName"),
        (json!({"type": "Resource", "resource": {"currentAverageValue": "1"}}), "name"),
    ] {
        let status =
            json!({"status": {"currentReplicas": 1, "desiredReplicas": 1, "currentMetrics": [entry]}});
        let refused = api.patch_status("web", &PatchParams::default(), &Patch::Merge(&status)).await;
        match refused {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{s:?}");
                assert!(s.message.contains(field), "the message names {field}: {}", s.message);
            }
            other => panic!("a status metric without {field} is stored: {other:?}"),
        }
    }
}
