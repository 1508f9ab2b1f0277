//! What counts as an outage (docs/fallback.md, "The rule"): each kind of failed metric, through whole passes
//! of [`decide`](crate::engine::decide), holds the count before `fallback-after` and lets the fallback scale
//! after it; a failure the pods cause does not count.
//!
//! Stale and NaN values, and an unreachable provider, are refused by the gatherer (reconciler/inputs.rs,
//! tested there and on the control plane); the engine receives them as the metric's error, in the words
//! given here. A negative value, a metric with no series and a recommender's reply are judged by the engine.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::{
    api::{WatermarkPodAutoscaler, WatermarkPodAutoscalerSpec, WatermarkPodAutoscalerStatus},
    engine::{
        ExternalSample, MetricObservation, MonitorObservation, Observation, PodInfo, Recommendation,
        ScaleInfo, ScaleIntent, ScaleResult, decide, fixtures, plan::Plan, recommender::check_recommendation,
    },
};

fn now() -> Timestamp {
    "2026-06-01T12:00:00Z".parse().expect("a time")
}

const ONE_EXTERNAL: &str = r#"{"metrics": [{"type": "External", "external": {"metricName": "qps",
    "metricSelector": {"matchLabels": {"app": "web"}}, "highWatermark": "100", "lowWatermark": "50"}}]}"#;
const ONE_RESOURCE: &str = r#"{"metrics": [{"type": "Resource", "resource": {"name": "cpu",
    "metricSelector": {"matchLabels": {"app": "web"}}, "highWatermark": "800m", "lowWatermark": "400m"}}]}"#;
const A_RECOMMENDER: &str = r#"{"recommender": {"url": "http://reco.prod:8080/recommend", "targetType": "cpu",
    "highWatermark": "800m", "lowWatermark": "400m"}}"#;

/// WPA `web` on Deployment `web` (2..10 replicas; `metrics` as JSON, with `extra` fields), last scaled an
/// hour ago, with a fallback to 6 replicas after 30 s.
fn wpa(metrics: &str, extra: serde_json::Value) -> WatermarkPodAutoscaler {
    let mut spec = serde_json::json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 2, "maxReplicas": 10,
    });
    let metrics: serde_json::Value = serde_json::from_str(metrics).expect("JSON");
    for fields in [metrics, extra] {
        if let (Some(s), Some(e)) = (spec.as_object_mut(), fields.as_object()) {
            s.extend(e.clone());
        }
    }
    let spec: WatermarkPodAutoscalerSpec = serde_json::from_value(spec).expect("a spec");
    let mut w = WatermarkPodAutoscaler::new("web", spec);
    w.metadata.namespace = Some("prod".into());
    w.metadata.annotations = Some(
        [
            (crate::api::annotations::FALLBACK_REPLICAS.to_string(), "6".to_string()),
            (crate::api::annotations::FALLBACK_AFTER.to_string(), "30s".to_string()),
        ]
        .into(),
    );
    w.status = Some(WatermarkPodAutoscalerStatus {
        last_scale_time: Some(Time(now() - Duration::from_secs(3600))),
        ..Default::default()
    });
    w
}

/// `n` Running pods of the target, the first `ready` of them Ready for 10 minutes.
fn pods(n: usize, ready: usize) -> Vec<PodInfo> {
    fixtures::running_pods("web-abc", n, ready, now())
}

/// What each pass reads, besides the target (4 replicas).
struct Reads {
    pods: Result<Vec<PodInfo>, String>,
    metrics: Vec<MetricObservation>,
    recommendation: Option<Result<Recommendation, String>>,
}

impl Reads {
    /// Four ready pods and these metrics.
    fn metrics(metrics: Vec<MetricObservation>) -> Reads {
        Reads { pods: Ok(pods(4, 4)), metrics, recommendation: None }
    }

    fn external(sample: Result<ExternalSample, &str>) -> Reads {
        Reads::metrics(vec![MetricObservation::External(sample.map_err(String::from))])
    }

    /// Four ready pods and this answer of the recommender.
    fn recommendation(answer: Option<Result<Recommendation, String>>) -> Reads {
        Reads { pods: Ok(pods(4, 4)), metrics: Vec::new(), recommendation: answer }
    }
}

/// Passes at 0, 15 and 30 s, each from the status the previous one wrote: each one's fallback state and
/// scale.
fn passes(mut w: WatermarkPodAutoscaler, reads: &Reads) -> Vec<(Option<FallbackState>, Option<ScaleIntent>)> {
    let mut out = Vec::new();
    for i in 0..3 {
        let at = now() + Duration::from_secs(15 * i);
        let plan = Plan::new(&w);
        assert_eq!(plan.invalid, None, "the spec is valid");
        let obs = Observation {
            target: Ok(ScaleInfo {
                name: "web".into(),
                namespace: "prod".into(),
                spec_replicas: 4,
                status_replicas: 4,
                selector: "app=web".into(),
            }),
            pods: reads.pods.as_deref().map_err(Clone::clone),
            metrics: &reads.metrics,
            recommendation: reads.recommendation.clone(),
            monitor: MonitorObservation::NotRequested,
            conflicts: &[],
        };
        let d = decide(&plan, &obs, at);
        out.push((d.fallback, d.scale));
        let status = d.settle(&w, ScaleResult::Written).status;
        w.status = Some(status);
    }
    out
}

/// The rule: nothing before `fallback-after` (the outage counted from the first pass), then the scale to
/// `max(current, fallback-replicas)`: 4 -> 6.
fn assert_falls_back_after_30_s(w: WatermarkPodAutoscaler, reads: &Reads) {
    let p = passes(w, reads);
    let due = now() + Duration::from_secs(30);
    for (i, (state, scale)) in p[..2].iter().enumerate() {
        assert_eq!(*scale, None, "pass {i}: no scale before fallback-after");
        assert_eq!(
            *state,
            Some(FallbackState::Pending { since: now(), due, replicas: 6 }),
            "pass {i}: the outage counts"
        );
    }
    assert_eq!(p[2].0, Some(FallbackState::Active { since: due, replicas: 6 }));
    assert_eq!(p[2].1, Some(ScaleIntent { from: 4, to: 6 }), "the fallback's scale, at fallback-after");
}

fn sample(values: Vec<i64>) -> ExternalSample {
    ExternalSample { values, timestamp: Some(now()) }
}

#[test]
fn an_external_metric_with_no_series_counts_toward_the_fallback() {
    assert_falls_back_after_30_s(
        wpa(ONE_EXTERNAL, serde_json::json!({})),
        &Reads::external(Ok(sample(vec![]))),
    );
}

#[test]
fn a_negative_external_value_counts_toward_the_fallback() {
    let reads = Reads::external(Ok(sample(vec![-5_000])));
    assert_falls_back_after_30_s(wpa(ONE_EXTERNAL, serde_json::json!({})), &reads);
}

/// Whatever the gatherer refused the read for (a stale or NaN value, no provider), the engine gets an error
/// for the metric, and an error counts.
#[test]
fn an_external_read_the_gatherer_refused_counts_toward_the_fallback() {
    for error in [
        "the newest value was sampled at 2026-06-01T11:50:00Z, more than --metric-max-age (300s) ago: the metrics provider is not updating it",
        "the metrics API returned an invalid value \"NaN\": not a quantity",
        "unable to fetch metrics from external metrics API: no metrics provider serves external.metrics.k8s.io/v1beta1",
    ] {
        assert_falls_back_after_30_s(wpa(ONE_EXTERNAL, serde_json::json!({})), &Reads::external(Err(error)));
    }
}

#[test]
fn a_resource_metric_the_metrics_api_cannot_serve_counts_toward_the_fallback() {
    let reads = Reads::metrics(vec![MetricObservation::Resource(Err(
        "unable to fetch metrics from resource metrics API: service unavailable".into(),
    ))]);
    assert_falls_back_after_30_s(wpa(ONE_RESOURCE, serde_json::json!({})), &reads);
}

#[test]
fn a_recommender_that_does_not_answer_counts_toward_the_fallback() {
    let reads = Reads::recommendation(Some(Err(
        "unable to get external recommendation http://reco.prod:8080/recommend: connection refused".into(),
    )));
    assert_falls_back_after_30_s(wpa(A_RECOMMENDER, serde_json::json!({})), &reads);
}

#[test]
fn a_recommender_that_was_not_asked_counts_toward_the_fallback() {
    assert_falls_back_after_30_s(wpa(A_RECOMMENDER, serde_json::json!({})), &Reads::recommendation(None));
}

#[test]
fn a_refused_recommendation_counts_toward_the_fallback() {
    // A reply ten minutes old, against --metric-max-age 5m: the engine's own check refuses it.
    let stale = Recommendation {
        replicas: 5,
        replicas_lower_bound: 4,
        replicas_upper_bound: 6,
        timestamp: Some((now() - Duration::from_secs(600)).to_string()),
        details: String::new(),
        observed_target_value: 0.5,
    };
    let refused = check_recommendation(&stale, 10, now(), Some(Duration::from_secs(300)))
        .expect_err("a stale reply is refused");
    let reads = Reads::recommendation(Some(Err(refused)));
    assert_falls_back_after_30_s(wpa(A_RECOMMENDER, serde_json::json!({})), &reads);
}

#[test]
fn pods_that_cannot_be_listed_do_not_count_toward_the_fallback() {
    let reads = Reads {
        pods: Err("unable to list the pods of the target: forbidden".into()),
        metrics: vec![MetricObservation::External(Err("503 Service Unavailable".into()))],
        recommendation: None,
    };
    for (i, (state, scale)) in
        passes(wpa(ONE_EXTERNAL, serde_json::json!({})), &reads).into_iter().enumerate()
    {
        assert_eq!(state, Some(FallbackState::Off), "pass {i}: the pods' failure is not an outage");
        assert_eq!(scale, None, "pass {i}");
    }
}

#[test]
fn too_few_ready_pods_do_not_count_toward_the_fallback() {
    // One pod of four ready, against minAvailableReplicaPercentage 50: every metric fails because of the
    // pods (a rollout), which the fallback must not defeat.
    let w = wpa(ONE_EXTERNAL, serde_json::json!({"minAvailableReplicaPercentage": 50}));
    let reads = Reads {
        pods: Ok(pods(4, 1)),
        metrics: vec![MetricObservation::External(Ok(sample(vec![300_000])))],
        recommendation: None,
    };
    for (i, (state, scale)) in passes(w, &reads).into_iter().enumerate() {
        assert_eq!(state, Some(FallbackState::Off), "pass {i}: the readiness gate is not an outage");
        assert_eq!(scale, None, "pass {i}");
    }
}
