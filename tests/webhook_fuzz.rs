//! Property tests over the AdmissionReview decoder and the rules: whatever arrives, the webhook answers with
//! a well-formed response (an AdmissionReview echoing the uid, or a JSON error with 400) and never panics.

use axum::{body::Body, http::Request};
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;
use wpa::{
    runtime::registry::Registry,
    state::TargetIndex,
    webhook::{WebhookState, router},
};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[a-zA-Z0-9.:/_ -]{0,12}".prop_map(Value::String),
        prop_oneof![Just("100m"), Just("-1"), Just("1e400"), Just("Average"), Just("1Ki"), Just("")]
            .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    "[a-zA-Z]{1,8}",
                    prop_oneof![
                        Just("minReplicas"),
                        Just("maxReplicas"),
                        Just("metrics"),
                        Just("tolerance"),
                        Just("external"),
                        Just("highWatermark"),
                        Just("lowWatermark"),
                        Just("metricSelector"),
                        Just("matchLabels"),
                        Just("recommender"),
                        Just("replicas"),
                        Just("scaleTargetRef"),
                        Just("type"),
                        Just("annotations")
                    ]
                    .prop_map(String::from)
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn review(kind: (&str, &str), object: Value, old: Value, op: &str, sub: Option<&str>) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "fuzz-uid", "kind": {"group": kind.0, "version": "v1", "kind": kind.1},
        "resource": {"group": kind.0, "version": "v1", "resource": "x"}, "subResource": sub,
        "name": "n", "namespace": "default", "operation": op, "userInfo": {},
        "object": object, "oldObject": old, "dryRun": false}})
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
}

fn call(rt: &tokio::runtime::Runtime, path: &str, body: Vec<u8>) -> (u16, Value) {
    let state = WebhookState::new(TargetIndex::new(), &Registry::new(), Default::default());
    rt.block_on(async {
        let req = Request::post(path).body(Body::from(body)).expect("a request");
        let resp = router(state).oneshot(req).await.expect("an answer");
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
        (status, serde_json::from_slice(&bytes).expect("every answer is JSON"))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_get_a_json_error_or_an_answer(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let rt = runtime();
        for path in ["/validate", "/mutate"] {
            let (status, body) = call(&rt, path, bytes.clone());
            prop_assert!(status == 200 || status == 400, "status {status}");
            if status == 400 {
                prop_assert!(body["error"].is_string());
            }
        }
    }

    #[test]
    fn arbitrary_objects_are_answered_with_the_uid(
        spec in arb_json(),
        meta in arb_json(),
        op in prop_oneof![Just("CREATE"), Just("UPDATE"), Just("DELETE")],
        kind in prop_oneof![Just(("datadoghq.com", "WatermarkPodAutoscaler")), Just(("apps", "Deployment")), Just(("apps", "StatefulSet")), Just(("", "Pod"))],
        sub in prop_oneof![Just(None), Just(Some("scale")), Just(Some("status"))],
    ) {
        let rt = runtime();
        let object = json!({"apiVersion": "x/v1", "kind": kind.1, "metadata": {"name": "n", "namespace": "default", "annotations": meta}, "spec": spec});
        let body = serde_json::to_vec(&review(kind, object.clone(), object, op, sub)).expect("json");
        for path in ["/validate", "/mutate"] {
            let (status, resp) = call(&rt, path, body.clone());
            // Either the object decodes and gets an answer echoing the uid, or the review is refused as malformed.
            if status == 200 {
                prop_assert_eq!(&resp["response"]["uid"], "fuzz-uid");
                prop_assert!(resp["response"]["allowed"].is_boolean());
                if resp["response"]["allowed"] == false {
                    prop_assert!(resp["response"]["status"]["message"].as_str().is_some_and(|m| !m.is_empty()));
                }
            } else {
                prop_assert_eq!(status, 400);
            }
        }
    }
}
