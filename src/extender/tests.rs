//! The HTTP surface, replayed with the bodies a real kube-scheduler 1.20.2 sent.

use std::sync::{Arc, Mutex};

use axum::{
    body::Body,
    http::{Method, Request, StatusCode},
};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{
    policy::tests::{FakeView, wpa},
    *,
};

/// `nodeCacheCapable: true`: `"Nodes":null`, `NodeNames` in the scheduler's rotating order.
const FILTER_NAMES: &str = include_str!("../../tests/data/extender/filter-1.20.2-node-cache-capable.json");
/// `nodeCacheCapable: false`: `"NodeNames":null`, full Node objects.
const FILTER_NODES: &str = include_str!("../../tests/data/extender/filter-1.20.2-nodes.json");

/// The captured pod belongs to ReplicaSet web12949-54f97866bb of Deployment web12949.
fn captured_view(governed: bool) -> FakeView {
    let mut v = FakeView::web(wpa(8, 70), 4);
    v.rs_owners.insert(
        ("default".into(), "web12949-54f97866bb".into()),
        Owner { kind: "Deployment".into(), name: "web12949".into() },
    );
    if governed {
        let target =
            Target { namespace: "default".into(), kind: "Deployment".into(), name: "web12949".into() };
        v.wpas.insert(target.clone(), wpa(8, 70));
        v.pods.lock().unwrap().insert(
            target,
            vec![
                TargetPod { uid: "a".into(), node: Some("n1".into()) },
                TargetPod { uid: "b".into(), node: Some("n1".into()) },
                TargetPod { uid: "c".into(), node: Some("n3".into()) },
            ],
        );
    }
    v
}

async fn post(state: ExtenderState, path: &str, body: impl Into<Body>) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    let response = router(state).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

fn state(view: FakeView) -> ExtenderState {
    ExtenderState::new(Arc::new(view))
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[test]
fn the_captured_bodies_decode() {
    for body in [FILTER_NAMES, FILTER_NODES] {
        let args: wire::ExtenderArgs = serde_json::from_str(body).unwrap();
        let pod = args.pod.unwrap();
        assert_eq!(pod.metadata.name, "web12949-54f97866bb-2xtmz");
        assert_eq!(pod.metadata.uid, "e541e906-fb31-4acf-b5da-fb3c0bff5547");
        assert_eq!(pod.metadata.owner_references[0].kind, "ReplicaSet");
        assert!(pod.metadata.owner_references[0].controller);
        assert_eq!(pod.metadata.labels["pod-template-hash"], "54f97866bb");
        assert_eq!(pod.spec.tolerations.len(), 2);
        // The full type decodes it too, so a future reader can switch to it.
        let full: Value = serde_json::from_str(body).unwrap();
        let _: k8s_openapi::api::core::v1::Pod = serde_json::from_value(full["Pod"].clone()).unwrap();
    }
    let args: wire::ExtenderArgs = serde_json::from_str(FILTER_NAMES).unwrap();
    assert!(args.nodes.is_none());
    assert_eq!(args.node_names.unwrap(), ["n1", "n3", "n2", "n4"]);
    let args: wire::ExtenderArgs = serde_json::from_str(FILTER_NODES).unwrap();
    assert!(args.node_names.is_none());
    assert_eq!(wire::NodeList::name_of(&args.nodes.unwrap().items[0]), Some("n3"));
}

#[tokio::test]
async fn filter_passes_an_ungoverned_pod_unchanged_in_the_exact_go_shape() {
    let (status, body) = post(state(captured_view(false)), "/scheduler/filter", FILTER_NAMES).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&body), ["Error", "FailedAndUnresolvableNodes", "FailedNodes", "NodeNames", "Nodes"]);
    assert_eq!(
        body,
        json!({"Nodes": null, "NodeNames": ["n1", "n3", "n2", "n4"], "FailedNodes": {},
               "FailedAndUnresolvableNodes": {}, "Error": ""})
    );
}

#[tokio::test]
async fn filter_rejects_a_node_over_budget_in_both_maps() {
    let (status, body) = post(state(captured_view(true)), "/scheduler/filter", FILTER_NAMES).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["Nodes"], Value::Null);
    // n1 is over budget; of the three within it, the one with the fewest replicas (n2, n3, n4 hold 1 each:
    // the stable tie-break) is named.
    assert_eq!(body["NodeNames"].as_array().map(Vec::len), Some(1), "{body}");
    assert!(["n2", "n3", "n4"].contains(&body["NodeNames"][0].as_str().unwrap_or_default()), "{body}");
    let reason =
        "wpa: node holds 2 of 8 replicas of default/web12949; budget 2 (minAvailableReplicaPercentage=70)";
    assert_eq!(body["FailedNodes"]["n1"], reason);
    let chosen = body["NodeNames"][0].as_str().unwrap_or_default();
    for n in ["n2", "n3", "n4"].into_iter().filter(|n| *n != chosen) {
        assert_eq!(body["FailedNodes"][n], format!("wpa: placement chose {chosen}"));
    }
    assert_eq!(body["FailedAndUnresolvableNodes"], body["FailedNodes"]);
    assert_eq!(body["Error"], "");
}

#[tokio::test]
async fn prioritize_answers_a_host_priority_list_of_integer_scores() {
    for (governed, expected) in [
        (
            false,
            json!([{"Host":"n1","Score":0},{"Host":"n3","Score":0},{"Host":"n2","Score":0},{"Host":"n4","Score":0}]),
        ),
        (
            true,
            json!([{"Host":"n1","Score":0},{"Host":"n3","Score":6},{"Host":"n2","Score":10},{"Host":"n4","Score":10}]),
        ),
    ] {
        let (status, body) =
            post(state(captured_view(governed)), "/scheduler/prioritize", FILTER_NAMES).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, expected);
        for entry in body.as_array().unwrap() {
            assert_eq!(keys(entry), ["Host", "Score"]);
            // Go decodes Score as int64: 5.0 would drop the whole answer.
            assert!(entry["Score"].is_i64(), "{entry}");
        }
    }
}

#[tokio::test]
async fn filter_echoes_full_nodes_to_a_scheduler_that_sent_them() {
    let (status, body) = post(state(captured_view(false)), "/scheduler/filter", FILTER_NODES).await;
    assert_eq!(status, StatusCode::OK);
    let sent: Value = serde_json::from_str(FILTER_NODES).unwrap();
    assert_eq!(body["Nodes"], json!({"metadata": {}, "items": sent["Nodes"]["items"]}));
    assert_eq!(body["NodeNames"], json!(["n3"]));
    // Governed, and the only candidate over budget: still never an empty list (water-fill keeps it).
    let view = captured_view(true);
    let target = Target { namespace: "default".into(), kind: "Deployment".into(), name: "web12949".into() };
    view.pods
        .lock()
        .unwrap()
        .get_mut(&target)
        .unwrap()
        .push(TargetPod { uid: "d".into(), node: Some("n3".into()) });
    let (_, body) = post(state(view), "/scheduler/filter", FILTER_NODES).await;
    assert!(body["FailedNodes"].as_object().unwrap().is_empty());
    assert_eq!(body["NodeNames"], json!(["n3"]));
    assert_eq!(body["Nodes"]["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_paths_kube_scheduler_builds_are_served() {
    for path in [
        "/scheduler/filter",
        "/scheduler//filter",
        "/scheduler/filter/",
        "/scheduler///filter//",
        "//scheduler/filter",
    ] {
        let (status, body) = post(state(captured_view(false)), path, FILTER_NAMES).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(body["NodeNames"].is_array(), "{path}");
    }
    let (status, _) = post(state(captured_view(false)), "/scheduler/prioritize/", FILTER_NAMES).await;
    assert_eq!(status, StatusCode::OK);
    for path in ["/scheduler/bind", "/scheduler/preempt", "/scheduler/filterx"] {
        let (status, body) = post(state(captured_view(false)), path, FILTER_NAMES).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(body["error"].as_str().unwrap().contains("only filter and prioritize"));
    }
    let get = Request::builder().uri("/scheduler/filter").body(Body::empty()).unwrap();
    let response = router(state(captured_view(false))).oneshot(get).await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn malformed_requests_get_400_with_a_message() {
    let cases = [
        ("", "not a scheduler ExtenderArgs"),
        ("not json", "not a scheduler ExtenderArgs"),
        ("[]", "not a scheduler ExtenderArgs"),
        (r#"{"Pod":{},"NodeNames":"n1"}"#, "not a scheduler ExtenderArgs"),
        (r#"{"Pod":{"metadata":{"labels":["x"]}},"NodeNames":["n1"]}"#, "not a scheduler ExtenderArgs"),
        (r#"{"Pod":null,"Nodes":null,"NodeNames":["n1"]}"#, "has no Pod"),
        (r#"{"NodeNames":["n1"]}"#, "has no Pod"),
        (r#"{"Pod":{},"Nodes":null,"NodeNames":null}"#, "neither NodeNames nor Nodes"),
        (
            r#"{"Pod":{},"Nodes":{"metadata":{},"items":[{"metadata":{}}]},"NodeNames":null}"#,
            "Nodes.items[0]",
        ),
    ];
    for verb in ["filter", "prioritize"] {
        for (body, message) in cases {
            let (status, answer) =
                post(state(captured_view(true)), &format!("/scheduler/{verb}"), body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{verb} {body}");
            let error = answer["error"].as_str().unwrap();
            assert!(error.contains(message), "{verb} {body}: {error}");
        }
    }
}

#[tokio::test]
async fn null_fields_of_the_pod_read_as_empty() {
    let body = r#"{"Pod":{"metadata":{"name":"p","namespace":"default","labels":null,"ownerReferences":null},
                  "spec":{"tolerations":null,"nodeSelector":null},"status":null},"Nodes":null,"NodeNames":["a","b"]}"#;
    let (status, answer) = post(state(captured_view(true)), "/scheduler/filter", body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["NodeNames"], json!(["a", "b"]));
}

#[tokio::test]
async fn an_oversized_body_gets_413() {
    let body = vec![b' '; MAX_BODY + 1];
    let (status, _) = post(state(captured_view(false)), "/scheduler/filter", body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn the_observer_hears_every_decision_and_every_infeasible_budget() {
    // Three bound on each of the four nodes: nothing is within B=2.
    let view = captured_view(true);
    let target = Target { namespace: "default".into(), kind: "Deployment".into(), name: "web12949".into() };
    view.pods.lock().unwrap().insert(
        target.clone(),
        (0..12).map(|i| TargetPod { uid: format!("u{i}"), node: Some(format!("n{}", i % 4 + 1)) }).collect(),
    );
    type Heard = (Verb, String, Mode, Vec<Infeasible>);
    let heard: Arc<Mutex<Vec<Heard>>> = Arc::default();
    let sink = heard.clone();
    let state = state(view).with_observer(move |r: &Report<'_>| {
        sink.lock().unwrap().push((r.verb, r.pod.to_owned(), r.mode, r.infeasible.to_vec()));
    });
    let (_, body) = post(state.clone(), "/scheduler/filter", FILTER_NAMES).await;
    assert_eq!(
        body["NodeNames"].as_array().map(Vec::len),
        Some(1),
        "water-fill: one of the equal nodes: {body}"
    );
    post(state, "/scheduler/prioritize", FILTER_NAMES).await;
    let heard = heard.lock().unwrap();
    assert_eq!(heard.len(), 2);
    let (verb, pod, mode, infeasible) = &heard[0];
    assert_eq!((*verb, pod.as_str(), *mode), (Verb::Filter, "web12949-54f97866bb-2xtmz", Mode::Steady));
    assert_eq!(infeasible.len(), 1);
    assert_eq!(infeasible[0].level, Level::Node);
    assert_eq!(infeasible[0].autoscaler, "web-wpa");
    assert_eq!(infeasible[0].target, target);
    assert_eq!(heard[1].0, Verb::Prioritize);
    assert!(heard[1].3.is_empty());
}

/// A View whose every answer panics: stands for a bug in the caches.
struct Broken;

impl View for Broken {
    fn synced(&self) -> bool {
        true
    }
    fn replica_set_owner(&self, _: &str, _: &str) -> Option<Owner> {
        panic!("broken cache")
    }
    fn autoscaler(&self, _: &Target) -> Option<Autoscaler> {
        panic!("broken cache")
    }
    fn pods(&self, _: &Target) -> Vec<TargetPod> {
        panic!("broken cache")
    }
    fn for_each_node(&self, _: &mut dyn FnMut(&str, &NodeState)) {
        panic!("broken cache")
    }
}

#[tokio::test]
async fn an_internal_failure_fails_open() {
    let modes: Arc<Mutex<Vec<Mode>>> = Arc::default();
    let sink = modes.clone();
    let state = ExtenderState::new(Arc::new(Broken)).with_observer(move |r: &Report<'_>| {
        sink.lock().unwrap().push(r.mode);
    });
    let (status, body) = post(state.clone(), "/scheduler/filter", FILTER_NAMES).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["NodeNames"], json!(["n1", "n3", "n2", "n4"]));
    assert_eq!(body["FailedNodes"], json!({}));
    let (status, body) = post(state.clone(), "/scheduler/prioritize", FILTER_NAMES).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.as_array().unwrap().iter().all(|e| e["Score"] == NEUTRAL_SCORE));
    // The ledger lock survived the panics.
    let (status, _) = post(state, "/scheduler/filter", FILTER_NAMES).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(*modes.lock().unwrap(), [Mode::NoOpinion(NoOpinion::Internal); 3]);
}

#[tokio::test]
async fn a_burst_over_http_spreads_siblings_through_the_shared_ledger() {
    // Pods p0..p7 of web12949 are pending in the cache and stay so: every placement is known only to us.
    let view = captured_view(true);
    let target = Target { namespace: "default".into(), kind: "Deployment".into(), name: "web12949".into() };
    let pending: Vec<TargetPod> = (0..8).map(|i| TargetPod { uid: format!("p{i}"), node: None }).collect();
    view.pods.lock().unwrap().insert(target, pending);
    let state = state(view);
    let template: Value = serde_json::from_str(FILTER_NAMES).unwrap();
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..8 {
        let mut body = template.clone();
        body["Pod"]["metadata"]["uid"] = json!(format!("p{i}"));
        let (status, answer) = post(state.clone(), "/scheduler/filter", body.to_string()).await;
        assert_eq!(status, StatusCode::OK);
        let names = answer["NodeNames"].as_array().unwrap();
        assert_eq!(names.len(), 1, "{answer}");
        *per_node.entry(names[0].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), [2, 2, 2, 2]);
}
