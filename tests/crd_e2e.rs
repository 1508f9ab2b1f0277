//! The CRD behaves as upstream's on a real API server: server-side apply replaces a metric's selector whole,
//! explicit nulls are pruned rather than stored, and status metrics need their type and name.

mod support;

use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;
use support::TestCluster;
use wpa::api::WatermarkPodAutoscaler;

fn wpa_with_selector(labels: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "datadoghq.com/v1alpha1", "kind": "WatermarkPodAutoscaler",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 5,
            "metrics": [{"type": "External", "external": {"metricName": "qps", "highWatermark": "10",
                "lowWatermark": "5", "metricSelector": {"matchLabels": labels}}}]
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_are_atomic_nulls_are_pruned_and_status_metrics_are_strict() {
    let cluster = TestCluster::start().await;
    cluster.install_crd(wpa::api::crd()).await.expect("the CRD");
    let served = cluster.kubectl(&["get", "crd", "watermarkpodautoscalers.datadoghq.com", "-o", "json"]);
    let served: serde_json::Value = serde_json::from_slice(&served.stdout).expect("the CRD as served");
    let selector = &served["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["metrics"]["items"]["properties"]["external"]["properties"]["metricSelector"];
    assert_eq!(selector["x-kubernetes-map-type"], "atomic", "{selector}");
    assert_eq!(selector["properties"]["matchExpressions"]["x-kubernetes-list-type"], "atomic");
    assert_eq!(
        selector["properties"]["matchExpressions"]["items"]["properties"]["values"]["x-kubernetes-list-type"],
        "atomic"
    );
    assert_eq!(served["spec"]["names"]["listKind"], "WatermarkPodAutoscalerList");

    // Two managers apply the WPA: the second one's selector replaces the first's, labels are not merged.
    let api: Api<WatermarkPodAutoscaler> = Api::namespaced(cluster.client(), "default");
    let first = wpa_with_selector(json!({"app": "web", "tier": "front"}));
    api.patch("web", &PatchParams::apply("team-a"), &Patch::Apply(&first)).await.expect("first apply");
    let second = wpa_with_selector(json!({"app": "web"}));
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

    // An explicit null (what a Helm value left empty renders) is pruned, as by upstream's CRD.
    cluster
        .kubectl_apply(
            "apiVersion: datadoghq.com/v1alpha1\nkind: WatermarkPodAutoscaler\nmetadata: {name: nulls, namespace: default}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  maxReplicas: 5\n  minReplicas: null\n  tolerance: null\n",
        )
        .expect("apply with nulls");
    let stored = cluster.kubectl(&["get", "wpa", "nulls", "-n", "default", "-o", "json"]);
    let stored: serde_json::Value = serde_json::from_slice(&stored.stdout).expect("the stored WPA");
    let spec = stored["spec"].as_object().expect("spec");
    assert!(!spec.contains_key("minReplicas") && !spec.contains_key("tolerance"), "nulls pruned: {spec:?}");

    // `kubectl get wpa` shows the value of Resource metrics too (upstream's column shows External ones only).
    for (name, status_metric, want) in [
        ("web", json!({"type": "External", "external": {"metricName": "qps", "currentValue": "7"}}), "7"),
        (
            "nulls",
            json!({"type": "Resource", "resource": {"name": "cpu", "currentAverageValue": "250m"}}),
            "250m",
        ),
    ] {
        let status = json!({"status": {"currentReplicas": 1, "desiredReplicas": 1, "currentMetrics": [status_metric]}});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.expect("status");
        let table = cluster.kubectl(&["get", "wpa", name, "-n", "default"]);
        let table = String::from_utf8_lossy(&table.stdout).to_string();
        // Columns are aligned on the header; empty cells are blanks.
        let column = table.lines().next().and_then(|h| h.find("VALUE")).unwrap_or(0);
        let value = table
            .lines()
            .nth(1)
            .and_then(|row| row.get(column..))
            .and_then(|cell| cell.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        assert_eq!(value, want, "the value column of {name}:\n{table}");
    }

    // A status metric without its type, or an external one without its metric name, is refused.
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
