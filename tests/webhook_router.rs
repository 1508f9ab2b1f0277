//! The webhook's routes in process: every rule accepted and refused, with exact messages and patches, and
//! the answers to malformed input.

use std::sync::Arc;

use axum::{body::Body, http::Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use wpa::{
    api::WatermarkPodAutoscaler,
    engine::AdmissionLimits,
    runtime::registry::Registry,
    state::TargetIndex,
    webhook::{WebhookState, router},
};

fn wpa_obj(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "datadoghq.com/v1alpha1", "kind": "WatermarkPodAutoscaler",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn valid_spec() -> Value {
    json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 2, "maxReplicas": 10,
        "metrics": [{"type": "External", "external": {"metricName": "qps",
            "metricSelector": {"matchLabels": {"app": "web"}}, "highWatermark": "100", "lowWatermark": "50"}}]
    })
}

fn review(version: &str, group: &str, kind: &str, op: &str, object: Value, old: Option<Value>) -> Value {
    json!({
        "apiVersion": format!("admission.k8s.io/{version}"), "kind": "AdmissionReview",
        "request": {
            "uid": "7c0f7c4e-1b1b-4a5e-9f3a-000000000001",
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": format!("{}s", kind.to_lowercase())},
            "name": object.pointer("/metadata/name").cloned().unwrap_or(json!("")),
            "namespace": "default",
            "operation": op,
            "userInfo": {"username": "admin"},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    })
}

fn state(index: Arc<TargetIndex>) -> WebhookState {
    WebhookState::new(index, &Registry::new(), Default::default())
}

async fn call(state: WebhookState, path: &str, body: Vec<u8>) -> (u16, Value) {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("a request");
    let resp = router(state).oneshot(req).await.expect("an answer");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn admit(state: WebhookState, path: &str, review: &Value) -> Value {
    let (status, body) = call(state, path, serde_json::to_vec(review).expect("json")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The patch, in either encoding Go's JSON decoder accepts for `[]byte`: base64 or an array of bytes (kube's).
fn patch_of(resp: &Value) -> Value {
    use base64::Engine;
    let bytes: Vec<u8> = match resp.pointer("/response/patch").expect("a patch") {
        Value::String(b64) => base64::engine::general_purpose::STANDARD.decode(b64).expect("base64"),
        Value::Array(a) => a.iter().map(|b| b.as_u64().expect("a byte") as u8).collect(),
        other => panic!("unexpected patch {other}"),
    };
    serde_json::from_slice(&bytes).expect("a JSON patch")
}

fn denial(resp: &Value) -> String {
    assert_eq!(resp.pointer("/response/allowed"), Some(&json!(false)), "{resp}");
    resp.pointer("/response/status/message").and_then(Value::as_str).expect("a message").to_string()
}

fn allowed(resp: &Value) -> bool {
    resp.pointer("/response/allowed") == Some(&json!(true))
}

#[tokio::test]
async fn mutate_adds_exactly_the_missing_defaults_once() {
    let spec = json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                      "maxReplicas": 10, "tolerance": "0", "algorithm": ""});
    let r =
        review("v1", "datadoghq.com", "WatermarkPodAutoscaler", "CREATE", wpa_obj("w", spec.clone()), None);
    let resp = admit(state(TargetIndex::new()), "/mutate", &r).await;
    assert!(allowed(&resp));
    assert_eq!(resp.pointer("/response/patchType"), Some(&json!("JSONPatch")));
    assert_eq!(
        patch_of(&resp),
        json!([
            {"op": "add", "path": "/spec/minReplicas", "value": 1},
            {"op": "replace", "path": "/spec/algorithm", "value": "absolute"},
            {"op": "replace", "path": "/spec/tolerance", "value": "100m"},
            {"op": "add", "path": "/spec/scaleUpLimitFactor", "value": "50"},
            {"op": "add", "path": "/spec/scaleDownLimitFactor", "value": "20"},
            {"op": "add", "path": "/spec/downscaleForbiddenWindowSeconds", "value": 300},
            {"op": "add", "path": "/spec/replicaScalingAbsoluteModulo", "value": 1},
            {"op": "add", "path": "/spec/upscaleForbiddenWindowSeconds", "value": 60}
        ])
    );
    // Apply the patch and admit again: nothing left to default.
    let mut patched = wpa_obj("w", spec);
    let ops: json_patch::Patch = serde_json::from_value(patch_of(&resp)).expect("a patch");
    json_patch::patch(&mut patched, &ops).expect("applies");
    let again = admit(
        state(TargetIndex::new()),
        "/mutate",
        &review("v1", "datadoghq.com", "WatermarkPodAutoscaler", "CREATE", patched, None),
    )
    .await;
    assert!(allowed(&again));
    assert!(again.pointer("/response/patch").is_none(), "a second pass patches nothing: {again}");
}

#[tokio::test]
async fn validate_refuses_every_upstream_and_stricter_rule_with_its_path() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 5, "maxReplicas": 3}),
            "spec.maxReplicas: watermark pod autoscaler requires the minimum number of replicas to be configured and inferior to the maximum (minReplicas 5 > maxReplicas 3)",
        ),
        (
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "", "name": "web"}, "maxReplicas": 3}),
            "spec.scaleTargetRef: the Spec.ScaleTargetRef should be populated, currently Kind: and/or Name:web are not set properly",
        ),
        (
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3, "tolerance": "5"}),
            "spec.tolerance: tolerance should be set as a quantity between 0 and 1, currently set to : 5, which is 500%",
        ),
        (
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3, "scaleDownLimitFactor": "134"}),
            "spec.scaleDownLimitFactor: scaledownlimitfactor should be set as a quantity between 0 and 100 (exc.), currently set to : 134, which could yield a 134% decrease",
        ),
        (
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3, "algorithm": "Average"}),
            "spec.algorithm: unsupported value \"Average\": supported values: \"absolute\", \"average\"",
        ),
        (
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3, "convergeTowardsWatermark": "high"}),
            "spec.convergeTowardsWatermark: unsupported value \"high\": supported values: \"\", \"highwatermark\", \"lowwatermark\"",
        ),
        (
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3, "minAvailableReplicaPercentage": -5}),
            "spec.minAvailableReplicaPercentage: must be between 0 and 100, got -5",
        ),
        (
            json!({"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3}),
            "spec.scaleTargetRef.apiVersion: required: the target is resolved from its group (e.g. apps/v1 for a Deployment); without it the controller cannot find the target",
        ),
        (
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 1}),
            "spec.maxReplicas: watermark pod autoscaler requires the minimum number of replicas to be configured and inferior to the maximum; spec.maxReplicas: required",
        ),
        (
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3,
                   "metrics": [{"type": "External", "external": {"metricName": "qps", "metricSelector": {"matchLabels": {"a": "b"}}, "highWatermark": "0", "lowWatermark": "0"}}]}),
            "spec.metrics[0].external.highWatermark: must be greater than 0, got 0",
        ),
        (
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3,
                   "metrics": [{"type": "External", "external": {"metricName": "qps", "highWatermark": "5"}}]}),
            "spec.metrics[0].external.metricSelector: missing Labels for the External metric qps (add metricSelector: {matchLabels: {...}} with the tags the metric is queried with, e.g. {app: web}); spec.metrics[0].external.lowWatermark: required: both watermarks must be set (a missing one would be copied from the other, a band of zero width; check the spelling)",
        ),
        (
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3,
                   "metrics": [{"type": "External", "external": {"metricName": "qps", "metricSelector": {}}}]}),
            "spec.metrics[0].external: watermarks are not set correctly, removing the WPA default/w from the Reconciler; spec.metrics[0].external.highWatermark: required: both watermarks must be set (a missing one would be copied from the other, a band of zero width; check the spelling); spec.metrics[0].external.lowWatermark: required: both watermarks must be set (a missing one would be copied from the other, a band of zero width; check the spelling)",
        ),
        (
            // A misspelled key never reaches the webhook (the API server drops it): the watermark is missing.
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3,
                   "metrics": [{"type": "Resource", "resource": {"name": "cpu", "metricSelector": {"matchLabels": {"a": "b"}}, "lowWatermark": "200m"}}]}),
            "spec.metrics[0].resource.highWatermark: required: both watermarks must be set (a missing one would be copied from the other, a band of zero width; check the spelling)",
        ),
        (
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3,
                   "metrics": [{"type": "External", "external": {"metricName": "qps", "metricSelector": {"matchLabels": {"a": "b"}}, "highWatermark": "5", "lowWatermark": "-1"}}]}),
            "spec.metrics[0].external.lowWatermark: must not be negative, got -1",
        ),
        (
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3,
                   "metrics": [{"type": "Pods"}]}),
            "spec.metrics[0].type: incorrect metric.Type: 'Pods'",
        ),
        (
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3,
                   "recommender": {"url": "ftp://reco", "highWatermark": "1"}}),
            "spec.recommender.url: must be an http:// or https:// URL, got \"ftp://reco\"; spec.recommender.lowWatermark: required: both watermarks are sent to the recommender as the target's bounds",
        ),
        (
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3,
                   "metrics": [{"type": "External", "external": {"metricName": "q", "metricSelector": {}, "highWatermark": "1", "lowWatermark": "0"}}],
                   "recommender": {"url": "http://reco", "highWatermark": "1", "lowWatermark": "1"}}),
            "spec.recommender: recommender and metrics can't be set at the same time, please choose one",
        ),
    ];
    for (spec, want) in cases {
        let r = review(
            "v1",
            "datadoghq.com",
            "WatermarkPodAutoscaler",
            "CREATE",
            wpa_obj("w", spec.clone()),
            None,
        );
        let resp = admit(state(TargetIndex::new()), "/validate", &r).await;
        assert_eq!(denial(&resp), want, "spec {spec}");
        assert_eq!(resp.pointer("/response/uid"), Some(&json!("7c0f7c4e-1b1b-4a5e-9f3a-000000000001")));
    }
}

fn with_annotations(mut obj: Value, annotations: Value) -> Value {
    obj["metadata"]["annotations"] = annotations;
    obj
}

#[tokio::test]
async fn annotations_are_checked_strictly() {
    for (ann, want) in [
        (
            json!({"wpa.datadoghq.com/logs-attributes": "{team: web}"}),
            "metadata.annotations[wpa.datadoghq.com/logs-attributes]: not valid JSON (key must be a string at line 1 column 2); expected an object such as {\"team\":\"web\"}",
        ),
        (
            json!({"wpa.datadoghq.com/logs-attributes": "{\"team\": [\"a\"]}"}),
            "metadata.annotations[wpa.datadoghq.com/logs-attributes]: the value of \"team\" must be a string, number, boolean or null, got [\"a\"]",
        ),
        (
            json!({"wpa.datadoghq.com/skip-owner-check": "True"}),
            "metadata.annotations[wpa.datadoghq.com/skip-owner-check]: must be \"true\" or \"false\", got \"True\" (any other value leaves the owner check on)",
        ),
        (
            json!({"wpa.datadoghq.com/lifecycle-control.enabled": "yes"}),
            "metadata.annotations[wpa.datadoghq.com/lifecycle-control.enabled]: must be a boolean (true, false, 1, 0, t, f), got \"yes\"",
        ),
    ] {
        let obj = with_annotations(wpa_obj("w", valid_spec()), ann);
        let resp = admit(
            state(TargetIndex::new()),
            "/validate",
            &review("v1", "datadoghq.com", "WatermarkPodAutoscaler", "CREATE", obj, None),
        )
        .await;
        assert_eq!(denial(&resp), want);
    }
    let ok = with_annotations(
        wpa_obj("w", valid_spec()),
        json!({"wpa.datadoghq.com/logs-attributes": "{\"team\":\"web\",\"tier\":1}", "wpa.datadoghq.com/lifecycle-control.enabled": "false"}),
    );
    let resp = admit(
        state(TargetIndex::new()),
        "/validate",
        &review("v1", "datadoghq.com", "WatermarkPodAutoscaler", "CREATE", ok, None),
    )
    .await;
    assert!(allowed(&resp), "{resp}");
}

fn index_with(wpas: &[(&str, Value)], hpas: &[(&str, &str)]) -> Arc<TargetIndex> {
    let wpas: Vec<WatermarkPodAutoscaler> = wpas
        .iter()
        .map(|(n, spec)| serde_json::from_value(wpa_obj(n, spec.clone())).expect("a WPA"))
        .collect();
    let hpas: Vec<_> = hpas
        .iter()
        .map(|(n, target)| {
            serde_json::from_value(json!({"metadata": {"name": n, "namespace": "default"},
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}, "maxReplicas": 5}}))
            .expect("an HPA")
        })
        .collect();
    TargetIndex::from_objects(&wpas, &hpas)
}

#[tokio::test]
async fn a_second_autoscaler_on_one_target_is_refused_unless_accepted() {
    let idx = index_with(&[("other", valid_spec())], &[("hpa-web", "web")]);
    let r =
        review("v1", "datadoghq.com", "WatermarkPodAutoscaler", "CREATE", wpa_obj("w", valid_spec()), None);
    let resp = admit(state(idx.clone()), "/validate", &r).await;
    assert_eq!(
        denial(&resp),
        "spec.scaleTargetRef: Deployment/web is already scaled by WatermarkPodAutoscaler default/other and HorizontalPodAutoscaler default/hpa-web; two autoscalers on one target fight over its replica count. Remove the other autoscaler, or set the annotation wpa.datadoghq.com/allow-conflicting-autoscaler: \"true\" to accept the conflict"
    );
    let accepted = with_annotations(
        wpa_obj("w", valid_spec()),
        json!({"wpa.datadoghq.com/allow-conflicting-autoscaler": "true"}),
    );
    let resp = admit(
        state(idx.clone()),
        "/validate",
        &review("v1", "datadoghq.com", "WatermarkPodAutoscaler", "CREATE", accepted, None),
    )
    .await;
    assert!(allowed(&resp));
    let warnings = resp.pointer("/response/warnings").and_then(Value::as_array).expect("warnings");
    assert!(warnings[0].as_str().is_some_and(|w| {
        w.starts_with("Deployment/web is also scaled by WatermarkPodAutoscaler default/other")
    }));
    // The WPA itself (an update of "other") is not a conflict with itself.
    let idx = index_with(&[("other", valid_spec())], &[]);
    let mut changed = valid_spec();
    changed["maxReplicas"] = json!(12);
    let resp = admit(
        state(idx),
        "/validate",
        &review(
            "v1",
            "datadoghq.com",
            "WatermarkPodAutoscaler",
            "UPDATE",
            wpa_obj("other", changed),
            Some(wpa_obj("other", valid_spec())),
        ),
    )
    .await;
    assert!(allowed(&resp), "{resp}");
}

#[tokio::test]
async fn status_label_and_finalizer_updates_are_never_refused() {
    let mut bad = valid_spec();
    bad["minReplicas"] = json!(20);
    let old = wpa_obj("w", bad.clone());
    let mut new = old.clone();
    new["metadata"]["labels"] = json!({"team": "web"});
    new["metadata"]["finalizers"] = json!([]);
    new["status"] = json!({"currentReplicas": 3, "desiredReplicas": 3});
    let resp = admit(
        state(TargetIndex::new()),
        "/validate",
        &review("v1", "datadoghq.com", "WatermarkPodAutoscaler", "UPDATE", new, Some(old)),
    )
    .await;
    assert!(allowed(&resp), "{resp}");
    // A WPA being deleted may always lose its finalizer.
    let mut deleting = wpa_obj("w", bad);
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let resp = admit(
        state(TargetIndex::new()),
        "/validate",
        &review("v1", "datadoghq.com", "WatermarkPodAutoscaler", "UPDATE", deleting.clone(), Some(deleting)),
    )
    .await;
    assert!(allowed(&resp));
}

/// `/validate`'s answer to an UPDATE of a WPA stored with an invalid spec (minReplicas above maxReplicas, as
/// one created before the webhook was installed), changed by `edit`.
async fn update_of_an_invalid_wpa(edit: impl FnOnce(&mut Value)) -> Value {
    let mut bad = valid_spec();
    bad["minReplicas"] = json!(20);
    let old = wpa_obj("w", bad);
    let mut new = old.clone();
    edit(&mut new);
    admit(
        state(TargetIndex::new()),
        "/validate",
        &review("v1", "datadoghq.com", "WatermarkPodAutoscaler", "UPDATE", new, Some(old)),
    )
    .await
}

/// `kubectl apply` rewrites its last-applied annotation; a team adds notes: neither makes an update of a WPA
/// stored with an invalid spec refusable.
#[tokio::test]
async fn an_update_of_annotations_this_project_does_not_read_is_never_refused() {
    let resp = update_of_an_invalid_wpa(|new| {
        new["metadata"]["annotations"] =
            json!({"incident": "INC-42", "kubectl.kubernetes.io/last-applied-configuration": "{}"});
    })
    .await;
    assert!(allowed(&resp), "{resp}");
}

#[tokio::test]
async fn a_dry_run_switch_applied_with_kubectl_is_never_refused() {
    let resp = update_of_an_invalid_wpa(|new| {
        new["spec"]["dryRun"] = json!(true);
        new["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/last-applied-configuration": "{}"});
    })
    .await;
    assert!(allowed(&resp), "{resp}");
}

#[tokio::test]
async fn an_update_of_an_annotation_this_project_reads_is_checked() {
    let resp = update_of_an_invalid_wpa(|new| {
        new["metadata"]["annotations"] = json!({"wpa.datadoghq.com/skip-owner-check": "true"});
    })
    .await;
    assert!(!allowed(&resp), "{resp}");
}

fn deployment(name: &str, replicas: i64, annotations: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name, "namespace": "default", "annotations": annotations},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
}

#[tokio::test]
async fn deployment_replicas_outside_the_bounds_are_clamped_with_a_warning() {
    let idx = index_with(&[("web-wpa", valid_spec())], &[]);
    let resp = admit(
        state(idx.clone()),
        "/mutate",
        &review(
            "v1",
            "apps",
            "Deployment",
            "UPDATE",
            deployment("web", 50, json!({})),
            Some(deployment("web", 5, json!({}))),
        ),
    )
    .await;
    assert!(allowed(&resp));
    assert_eq!(patch_of(&resp), json!([{"op": "replace", "path": "/spec/replicas", "value": 10}]));
    assert_eq!(
        resp.pointer("/response/warnings"),
        Some(&json!([
            "spec.replicas 50 is above maxReplicas 10 of WatermarkPodAutoscaler default/web-wpa, which governs this Deployment: set to 10"
        ]))
    );
    let resp = admit(
        state(idx.clone()),
        "/mutate",
        &review("v1", "apps", "Deployment", "CREATE", deployment("web", 1, json!({})), None),
    )
    .await;
    assert_eq!(patch_of(&resp), json!([{"op": "replace", "path": "/spec/replicas", "value": 2}]));
    // Within bounds, or not governed: untouched.
    let resp = admit(
        state(idx.clone()),
        "/mutate",
        &review("v1", "apps", "Deployment", "CREATE", deployment("web", 5, json!({})), None),
    )
    .await;
    assert!(allowed(&resp) && resp.pointer("/response/patch").is_none());
    let resp = admit(
        state(idx),
        "/mutate",
        &review("v1", "apps", "Deployment", "CREATE", deployment("api", 500, json!({})), None),
    )
    .await;
    assert!(allowed(&resp) && resp.pointer("/response/patch").is_none());
    // A dry-run WPA only warns.
    let mut dry = valid_spec();
    dry["dryRun"] = json!(true);
    let resp = admit(
        state(index_with(&[("web-wpa", dry)], &[])),
        "/mutate",
        &review("v1", "apps", "Deployment", "CREATE", deployment("web", 50, json!({})), None),
    )
    .await;
    assert!(resp.pointer("/response/patch").is_none());
    assert_eq!(
        resp.pointer("/response/warnings"),
        Some(&json!([
            "spec.replicas 50 is above maxReplicas 10 of WatermarkPodAutoscaler default/web-wpa, which governs this Deployment; left unchanged because that WPA is in dry-run"
        ]))
    );
}

#[tokio::test]
async fn governed_workloads_carry_valid_wpa_annotations() {
    let idx = index_with(&[("web-wpa", valid_spec())], &[]);
    let bad = deployment("web", 3, json!({"wpa.datadoghq.com/skip-owner-check": "yes"}));
    let resp = admit(
        state(idx.clone()),
        "/validate",
        &review("v1", "apps", "Deployment", "CREATE", bad.clone(), None),
    )
    .await;
    assert_eq!(
        denial(&resp),
        "metadata.annotations[wpa.datadoghq.com/skip-owner-check]: must be \"true\" or \"false\", got \"yes\" (any other value leaves the owner check on) (this Deployment is scaled by WatermarkPodAutoscaler default/web-wpa)"
    );
    // Not governed by a WPA: not our business.
    let resp = admit(
        state(TargetIndex::new()),
        "/validate",
        &review("v1", "apps", "Deployment", "CREATE", bad, None),
    )
    .await;
    assert!(allowed(&resp));
}

#[tokio::test]
async fn the_scale_subresource_and_deletions_are_never_touched() {
    let idx = index_with(&[("web-wpa", valid_spec())], &[]);
    let mut r = review(
        "v1",
        "apps",
        "Deployment",
        "UPDATE",
        deployment("web", 50, json!({"wpa.datadoghq.com/skip-owner-check": "no"})),
        None,
    );
    r["request"]["subResource"] = json!("scale");
    for path in ["/mutate", "/validate"] {
        let resp = admit(state(idx.clone()), path, &r).await;
        assert!(allowed(&resp) && resp.pointer("/response/patch").is_none(), "{path}: {resp}");
    }
    let mut deleting = deployment("web", 50, json!({}));
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let resp =
        admit(state(idx), "/mutate", &review("v1", "apps", "Deployment", "UPDATE", deleting, None)).await;
    assert!(resp.pointer("/response/patch").is_none());
}

#[tokio::test]
async fn v1beta1_is_answered_in_v1beta1_and_dry_run_gets_the_same_answer() {
    let mut r = review(
        "v1beta1",
        "datadoghq.com",
        "WatermarkPodAutoscaler",
        "CREATE",
        wpa_obj("w", json!({"maxReplicas": 1})),
        None,
    );
    let resp = admit(state(TargetIndex::new()), "/validate", &r).await;
    assert_eq!(resp["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(resp["kind"], "AdmissionReview");
    let first = denial(&resp);
    r["request"]["dryRun"] = json!(true);
    let resp = admit(state(TargetIndex::new()), "/validate", &r).await;
    assert_eq!(denial(&resp), first);
    assert_eq!(resp.pointer("/response/uid"), Some(&json!("7c0f7c4e-1b1b-4a5e-9f3a-000000000001")));
    assert_eq!(resp.pointer("/response/auditAnnotations/decision"), Some(&json!("denied")));
    assert_eq!(resp.pointer("/response/auditAnnotations/reason"), Some(&json!("invalid")));
}

#[tokio::test]
async fn malformed_input_gets_a_clear_http_error() {
    let st = || state(TargetIndex::new());
    let (status, body) = call(st(), "/validate", b"not json".to_vec()).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().is_some_and(|e| e.starts_with("the body is not an AdmissionReview")),
        "{body}"
    );
    // Invalid UTF-8 inside a string (the body is checked once, before it is decoded).
    let (status, body) = call(
        st(),
        "/validate",
        b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"Admission\xffReview\"}".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("the body is not an AdmissionReview: invalid utf-8")),
        "{body}"
    );
    let (status, body) = call(st(), "/validate", br#"{"apiVersion":"v1","kind":"Pod"}"#.to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "expected kind AdmissionReview of admission.k8s.io/v1 or v1beta1, got kind \"Pod\" of \"v1\""
    );
    let (status, body) =
        call(st(), "/mutate", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec())
            .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "the AdmissionReview has no request");
    let (status, body) = call(st(), "/validate", vec![b' '; 3 * 1024 * 1024 + 1]).await;
    assert_eq!(status, 413);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("larger than")));
    // A kind this webhook does not know is allowed.
    let r = review(
        "v1",
        "",
        "ConfigMap",
        "CREATE",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
        None,
    );
    assert!(allowed(&admit(st(), "/validate", &r).await));
}

#[test]
fn timeouts_parse_as_the_api_server_writes_them() {
    use std::time::Duration;
    use wpa::webhook::parse_timeout;
    assert_eq!(parse_timeout(Some("timeout=10s")), Some(Duration::from_secs(10)));
    assert_eq!(parse_timeout(Some("x=1&timeout=2500ms")), Some(Duration::from_millis(2500)));
    // The API server sends 1 s to 30 s; a client's larger value is capped, a huge one is no panic.
    assert_eq!(parse_timeout(Some("timeout=1m0s")), Some(Duration::from_secs(30)));
    assert_eq!(parse_timeout(Some("timeout=100ms")), Some(Duration::from_secs(1)));
    assert_eq!(parse_timeout(Some("timeout=99999999999999999999999s")), None);
    assert_eq!(parse_timeout(Some("timeout=abc")), None);
    assert_eq!(parse_timeout(None), None);
}

#[tokio::test]
async fn a_spec_with_wrong_types_is_left_to_the_schema_at_mutate_and_refused_with_the_reason_at_validate() {
    let st = state(TargetIndex::new());
    let mut spec = valid_spec();
    spec["minReplicas"] = json!("two");
    let obj = with_annotations(wpa_obj("typo", spec), json!({"team": "web"}));
    let r = review("v1", "datadoghq.com", "WatermarkPodAutoscaler", "CREATE", obj, None);
    // /mutate: no patch, no refusal (the API server's schema check gives the precise error next).
    let resp = admit(st.clone(), "/mutate", &r).await;
    assert!(allowed(&resp), "{resp}");
    assert!(resp["response"].get("patch").is_none(), "{resp}");
    assert_eq!(resp["response"]["uid"], r["request"]["uid"]);
    // /validate: refused, saying what could not be read.
    let resp = admit(st, "/validate", &r).await;
    assert!(!allowed(&resp));
    let msg = denial(&resp);
    assert!(
        msg.contains("cannot read the WatermarkPodAutoscaler's spec") && msg.contains("invalid type"),
        "{msg}"
    );
}

/// A WPA object created at `created`.
fn created_at(mut obj: Value, created: &str) -> Value {
    obj["metadata"]["creationTimestamp"] = json!(created);
    obj
}

/// An index holding one HPA on Deployment `web`, created at `created`.
fn hpa_on_web_created(created: &str) -> Arc<TargetIndex> {
    let hpa = serde_json::from_value(json!({"metadata": {"name": "hpa-web", "namespace": "default",
        "creationTimestamp": created},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 5}}))
    .expect("an HPA");
    TargetIndex::from_objects(&[], &[hpa])
}

fn update(new: Value, old: Value) -> Value {
    review("v1", "datadoghq.com", "WatermarkPodAutoscaler", "UPDATE", new, Some(old))
}

const WPA_CREATED: &str = "2026-01-01T00:00:00Z";

#[tokio::test]
async fn switching_dry_run_is_never_refused() {
    // The HPA came after the WPA, and the WPA's spec is not even valid any more (min > max): dry-run, the
    // incident tool, still goes through.
    let idx = hpa_on_web_created("2026-01-02T00:00:00Z");
    let mut invalid = valid_spec();
    invalid["minReplicas"] = json!(50);
    let mut frozen = invalid.clone();
    frozen["dryRun"] = json!(true);
    let old = created_at(wpa_obj("w", invalid), WPA_CREATED);
    let resp =
        admit(state(idx), "/validate", &update(created_at(wpa_obj("w", frozen), WPA_CREATED), old)).await;
    assert!(allowed(&resp), "{resp}");
}

/// The review as the API server sends it to `/validate`: with `/mutate`'s patch applied to the object.
async fn through_mutate(st: WebhookState, mut review: Value) -> Value {
    let resp = admit(st, "/mutate", &review).await;
    assert!(allowed(&resp), "{resp}");
    if resp.pointer("/response/patch").is_some() {
        let ops: json_patch::Patch = serde_json::from_value(patch_of(&resp)).expect("a patch");
        json_patch::patch(&mut review["request"]["object"], &ops).expect("applies");
    }
    review
}

/// A spec as stored while the webhook was absent: no defaults, and invalid (minReplicas above maxReplicas).
fn undefaulted_invalid_spec() -> Value {
    let mut spec = valid_spec();
    spec["minReplicas"] = json!(50);
    spec
}

#[tokio::test]
async fn switching_dry_run_of_a_wpa_stored_without_defaults_is_never_refused() {
    // /mutate also runs on UPDATE and adds the defaults the stored WPA lacks, so /validate sees more than
    // dryRun changed. The WPA came second and its spec is invalid: only the dry-run exemption can admit it.
    let st = state(hpa_on_web_created("2025-12-01T00:00:00Z"));
    let mut frozen = undefaulted_invalid_spec();
    frozen["dryRun"] = json!(true);
    let old = created_at(wpa_obj("w", undefaulted_invalid_spec()), WPA_CREATED);
    let review = through_mutate(st.clone(), update(created_at(wpa_obj("w", frozen), WPA_CREATED), old)).await;
    assert_eq!(review.pointer("/request/object/spec/upscaleForbiddenWindowSeconds"), Some(&json!(60)));
    let resp = admit(st, "/validate", &review).await;
    assert!(allowed(&resp), "{resp}");
}

#[tokio::test]
async fn a_label_change_on_a_wpa_stored_without_defaults_is_never_refused() {
    let st = state(hpa_on_web_created("2025-12-01T00:00:00Z"));
    let old = created_at(wpa_obj("w", undefaulted_invalid_spec()), WPA_CREATED);
    let mut labelled = old.clone();
    labelled["metadata"]["labels"] = json!({"incident": "42"});
    let review = through_mutate(st.clone(), update(labelled, old)).await;
    let resp = admit(st, "/validate", &review).await;
    assert!(allowed(&resp), "{resp}");
}

#[tokio::test]
async fn a_real_change_to_a_wpa_stored_without_defaults_is_still_validated() {
    // The defaults /mutate adds are not a change; maxReplicas is, and the spec stays invalid (min > max).
    let st = state(hpa_on_web_created("2025-12-01T00:00:00Z"));
    let old = created_at(wpa_obj("w", undefaulted_invalid_spec()), WPA_CREATED);
    let mut changed = undefaulted_invalid_spec();
    changed["maxReplicas"] = json!(12);
    let review =
        through_mutate(st.clone(), update(created_at(wpa_obj("w", changed), WPA_CREATED), old)).await;
    let resp = admit(st, "/validate", &review).await;
    assert!(!allowed(&resp), "{resp}");
    assert!(resp.to_string().contains("minReplicas 50 > maxReplicas 12"), "{resp}");
}

#[tokio::test]
async fn an_update_of_a_wpa_that_came_before_the_other_autoscaler_is_allowed_with_a_warning() {
    let idx = hpa_on_web_created("2026-01-02T00:00:00Z");
    let mut changed = valid_spec();
    changed["maxReplicas"] = json!(30);
    let old = created_at(wpa_obj("w", valid_spec()), WPA_CREATED);
    let resp =
        admit(state(idx), "/validate", &update(created_at(wpa_obj("w", changed), WPA_CREATED), old)).await;
    assert!(allowed(&resp), "{resp}");
    let warning = resp.pointer("/response/warnings/0").and_then(Value::as_str).expect("a warning");
    assert!(
        warning.starts_with(
            "Deployment/web is also scaled by HorizontalPodAutoscaler default/hpa-web (created after this WatermarkPodAutoscaler, at 2026-01-02T00:00:00Z)"
        ),
        "{warning}"
    );
}

#[tokio::test]
async fn an_update_of_a_wpa_that_came_after_the_other_autoscaler_is_refused_saying_so() {
    let idx = hpa_on_web_created("2025-12-01T00:00:00Z");
    let mut changed = valid_spec();
    changed["maxReplicas"] = json!(30);
    let old = created_at(wpa_obj("w", valid_spec()), WPA_CREATED);
    let resp =
        admit(state(idx), "/validate", &update(created_at(wpa_obj("w", changed), WPA_CREATED), old)).await;
    assert_eq!(
        denial(&resp),
        "spec.scaleTargetRef: Deployment/web is already scaled by HorizontalPodAutoscaler default/hpa-web (created before this WatermarkPodAutoscaler, at 2025-12-01T00:00:00Z); two autoscalers on one target fight over its replica count. Remove the other autoscaler, or set the annotation wpa.datadoghq.com/allow-conflicting-autoscaler: \"true\" to accept the conflict"
    );
}

#[tokio::test]
async fn a_new_wpa_stamped_in_the_same_second_as_the_hpa_names_the_hpa_as_first() {
    // The API server stamps a WPA being created with the current second before /validate sees it: an HPA
    // created in that second is still the older of the two.
    let idx = hpa_on_web_created(WPA_CREATED);
    let review = review(
        "v1",
        "datadoghq.com",
        "WatermarkPodAutoscaler",
        "CREATE",
        created_at(wpa_obj("w", valid_spec()), WPA_CREATED),
        None,
    );
    let resp = admit(state(idx), "/validate", &review).await;
    assert!(
        denial(&resp).starts_with(
            "spec.scaleTargetRef: Deployment/web is already scaled by HorizontalPodAutoscaler default/hpa-web (created before this WatermarkPodAutoscaler, at 2026-01-01T00:00:00Z)"
        ),
        "{resp}"
    );
}

#[tokio::test]
async fn moving_a_wpa_onto_a_target_another_autoscaler_scales_is_refused() {
    // The WPA is older than the HPA, but it was scaling another target: moving in is a new conflict.
    let idx = hpa_on_web_created("2026-01-02T00:00:00Z");
    let mut elsewhere = valid_spec();
    elsewhere["scaleTargetRef"]["name"] = json!("api");
    let old = created_at(wpa_obj("w", elsewhere), WPA_CREATED);
    let resp =
        admit(state(idx), "/validate", &update(created_at(wpa_obj("w", valid_spec()), WPA_CREATED), old))
            .await;
    assert!(denial(&resp).contains("is already scaled by HorizontalPodAutoscaler default/hpa-web"), "{resp}");
}

fn create(spec: Value) -> Value {
    review("v1", "datadoghq.com", "WatermarkPodAutoscaler", "CREATE", wpa_obj("w", spec), None)
}

#[tokio::test]
async fn replica_counts_above_the_admission_bound_are_refused() {
    let mut huge = valid_spec();
    huge["minReplicas"] = json!(2147483647);
    huge["maxReplicas"] = json!(2147483647);
    let resp = admit(state(TargetIndex::new()), "/validate", &create(huge.clone())).await;
    assert_eq!(
        denial(&resp),
        "spec.minReplicas: 2147483647 is above the 10000 replicas this webhook admits (wpa serve --admission-max-replicas); spec.maxReplicas: 2147483647 is above the 10000 replicas this webhook admits (wpa serve --admission-max-replicas)"
    );
    let limits = AdmissionLimits { max_replicas: i32::MAX, ..Default::default() };
    let raised = WebhookState::new(TargetIndex::new(), &Registry::new(), limits);
    assert!(allowed(&admit(raised, "/validate", &create(huge)).await));
}

#[tokio::test]
async fn a_scale_up_limit_factor_above_the_admission_bound_is_refused() {
    let mut spec = valid_spec();
    spec["scaleUpLimitFactor"] = json!("999999999999999999999");
    let resp = admit(state(TargetIndex::new()), "/validate", &create(spec)).await;
    assert!(
        denial(&resp).starts_with("spec.scaleUpLimitFactor: ")
            && denial(&resp).ends_with("(percent) is above the 10000 this webhook admits (wpa serve --admission-max-scale-up-limit-factor)"),
        "{resp}"
    );
}

#[tokio::test]
async fn a_recommender_on_the_node_itself_or_the_metadata_address_is_refused_unless_allowed() {
    let reco = |url: &str| {
        json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2, "maxReplicas": 10,
            "recommender": {"url": url, "targetType": "cpu", "highWatermark": "800m", "lowWatermark": "200m"}})
    };
    for url in [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/node-role",
        "http://127.0.0.1:8080/recommend",
        "https://user:secret@localhost/recommend",
        "http://[::1]:8080/",
        "http://[fe80::1]/",
        "http://0.0.0.0:80/",
    ] {
        let resp = admit(state(TargetIndex::new()), "/validate", &create(reco(url))).await;
        let message = denial(&resp);
        assert!(
            message.starts_with("spec.recommender.url: ") && message.contains("--allow-local-recommenders"),
            "{url}: {message}"
        );
        let limits = AdmissionLimits { allow_local_recommenders: true, ..Default::default() };
        let allowing = WebhookState::new(TargetIndex::new(), &Registry::new(), limits);
        assert!(allowed(&admit(allowing, "/validate", &create(reco(url))).await), "{url}");
    }
    let service =
        admit(state(TargetIndex::new()), "/validate", &create(reco("http://reco.team.svc:8080/r"))).await;
    assert!(allowed(&service), "{service}");
}

#[tokio::test]
async fn a_zero_width_band_and_a_resource_metric_without_selector_say_how_to_fix() {
    let mut equal = valid_spec();
    equal["metrics"][0]["external"]["lowWatermark"] = json!("100");
    assert_eq!(
        denial(&admit(state(TargetIndex::new()), "/validate", &create(equal)).await),
        "spec.metrics[0].external.lowWatermark: must be below highWatermark, got both 100: a band of zero width scales on every wobble of the value"
    );
    let mut cpu = valid_spec();
    cpu["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu", "highWatermark": "400m", "lowWatermark": "200m"}}]);
    assert_eq!(
        denial(&admit(state(TargetIndex::new()), "/validate", &create(cpu)).await),
        "spec.metrics[0].resource.metricSelector: missing Labels for the Resource metric cpu (add metricSelector: {matchLabels: {...}} with the labels of the target's pods (its spec.selector.matchLabels): their usage is what the watermarks are compared with)"
    );
}

async fn validate_create(obj: Value) -> Value {
    admit(
        state(TargetIndex::new()),
        "/validate",
        &review("v1", "datadoghq.com", "WatermarkPodAutoscaler", "CREATE", obj, None),
    )
    .await
}

#[tokio::test]
async fn a_fallback_within_the_bounds_is_admitted() {
    let obj = with_annotations(
        wpa_obj("w", valid_spec()),
        json!({"wpa.datadoghq.com/fallback-replicas": "8", "wpa.datadoghq.com/fallback-after": "10m"}),
    );
    let resp = validate_create(obj).await;
    assert!(allowed(&resp), "{resp}");
}

#[tokio::test]
async fn a_fallback_that_cannot_work_is_refused_saying_how_to_fix_it() {
    for (ann, want) in [
        (
            json!({"wpa.datadoghq.com/fallback-replicas": "8"}),
            "metadata.annotations[wpa.datadoghq.com/fallback-after]: missing: set both wpa.datadoghq.com/fallback-replicas and wpa.datadoghq.com/fallback-after (a replica count, and how long every metric must have failed), or neither",
        ),
        (
            json!({"wpa.datadoghq.com/fallback-replicas": "12", "wpa.datadoghq.com/fallback-after": "10m"}),
            "metadata.annotations[wpa.datadoghq.com/fallback-replicas]: 12 is outside minReplicas..maxReplicas (2..10): give a count the WPA may scale to",
        ),
        (
            json!({"wpa.datadoghq.com/fallback-replicas": "8", "wpa.datadoghq.com/fallback-after": "10"}),
            "metadata.annotations[wpa.datadoghq.com/fallback-after]: \"10\" is not a duration such as \"10m\", \"90s\" or \"1h\"",
        ),
        (
            json!({"wpa.datadoghq.com/fallback-replicas": "many", "wpa.datadoghq.com/fallback-after": "10m"}),
            "metadata.annotations[wpa.datadoghq.com/fallback-replicas]: \"many\" is not a positive whole number of replicas (e.g. \"10\")",
        ),
    ] {
        let resp = validate_create(with_annotations(wpa_obj("w", valid_spec()), ann)).await;
        assert_eq!(denial(&resp), want);
    }
}

/// The review's text with `request.kind` moved after the objects (serde_json keeps keys sorted, so the text
/// is edited: "kind" sorts before "object").
fn kind_last(review: &Value) -> Vec<u8> {
    let mut request = review["request"].as_object().expect("a request").clone();
    let kind = request.remove("kind").expect("a kind");
    let mut text =
        serde_json::to_string(&json!({"apiVersion": review["apiVersion"], "kind": review["kind"]}))
            .expect("json");
    let members: Vec<String> = request
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
        .chain([format!("\"kind\":{kind}")])
        .collect();
    text.pop();
    text.push_str(&format!(",\"request\":{{{}}}}}", members.join(",")));
    text.into_bytes()
}

#[tokio::test]
async fn objects_sent_before_the_request_kind_get_the_same_answer() {
    let idx = index_with(&[("web-wpa", valid_spec())], &[]);
    let clamp = review("v1", "apps", "Deployment", "UPDATE", deployment("web", 50, json!({})), None);
    let (status, resp) = call(state(idx.clone()), "/mutate", kind_last(&clamp)).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(patch_of(&resp), json!([{"op": "replace", "path": "/spec/replicas", "value": 10}]));
    let mut bad = valid_spec();
    bad["minReplicas"] = json!(20);
    let create = review("v1", "datadoghq.com", "WatermarkPodAutoscaler", "CREATE", wpa_obj("w", bad), None);
    let (status, resp) = call(state(TargetIndex::new()), "/validate", kind_last(&create)).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(denial(&resp), denial(&admit(state(TargetIndex::new()), "/validate", &create).await));
}

#[tokio::test]
async fn what_no_rule_reads_is_stepped_over_whatever_it_holds() {
    // Escaped keys, deep nesting, long strings and every scalar in the parts no rule reads.
    let mut object = deployment("web", 50, json!({"wpa.datadoghq.com/x\"y": "v", "other": "w"}));
    object["metadata"]["managedFields"] = json!([{"fieldsV1": {"f:spec": {"k:{\"name\":\"c0\"}": {".": {}}}},
        "time": "2026-01-01T00:00:00Z", "n": [1, -2.5e3, true, false, null, "a\\\"b\u{e9}"]}]);
    object["spec"]["template"]["spec"]["deep"] = (0..100).fold(json!("x".repeat(5000)), |v, _| json!([v]));
    let idx = index_with(&[("web-wpa", valid_spec())], &[]);
    let resp =
        admit(state(idx), "/mutate", &review("v1", "apps", "Deployment", "UPDATE", object, None)).await;
    assert_eq!(patch_of(&resp), json!([{"op": "replace", "path": "/spec/replicas", "value": 10}]));
    // Nesting deeper than serde_json's own limit is refused as malformed, not followed.
    let mut deep = deployment("web", 5, json!({}));
    deep["spec"]["template"]["x"] = json!(null);
    let text = serde_json::to_string(&review("v1", "apps", "Deployment", "CREATE", deep, None))
        .expect("json")
        .replace("\"x\":null", &format!("\"x\":{}{}", "[".repeat(200), "]".repeat(200)));
    let (status, body) = call(state(TargetIndex::new()), "/mutate", text.into_bytes()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("less nesting")), "{body}");
}
