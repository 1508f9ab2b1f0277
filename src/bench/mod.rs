//! `wpa bench`: throughput measured against a baseline taken in the same run, so the figures stay
//! comparable on noisy machines.

pub mod admission;
pub mod reconciler;

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use jiff::Timestamp;

use crate::{
    api::{ExternalMetricSource, MetricSpec, WatermarkPodAutoscaler, WatermarkPodAutoscalerSpec},
    engine::{
        self, MetricObservation, MonitorObservation, Observation,
        calc::{ExternalSample, ScaleInfo},
        pods::{OwnerRef, PodInfo, PodPhase, ReadyCondition},
    },
    quantity::Quantity,
};

/// The benchmark's WPA: three External metrics, defaulted, and its 50 pods.
pub fn engine_fixture(
    now: Timestamp,
) -> (WatermarkPodAutoscaler, Vec<PodInfo>, Vec<MetricObservation>, ScaleInfo) {
    let metric = |name: &str, high: &str, low: &str| MetricSpec {
        type_: "External".into(),
        external: Some(ExternalMetricSource {
            metric_name: name.into(),
            metric_selector: Some(
                serde_json::from_value(serde_json::json!({"matchLabels": {"app": "web"}}))
                    .unwrap_or_default(),
            ),
            high_watermark: Quantity::parse(high).ok(),
            low_watermark: Quantity::parse(low).ok(),
        }),
        resource: None,
    };
    let spec = WatermarkPodAutoscalerSpec {
        scale_target_ref: crate::api::CrossVersionObjectReference {
            kind: "Deployment".into(),
            name: "web".into(),
            api_version: Some("apps/v1".into()),
        },
        min_replicas: Some(10),
        max_replicas: Some(200),
        algorithm: Some("average".into()),
        downscale_delay_below_watermark_seconds: Some(300),
        metrics: Some(vec![
            metric("requests_per_second", "100", "60"),
            metric("queue_depth", "20", "5"),
            metric("p99_latency_ms", "250", "100"),
        ]),
        ..Default::default()
    };
    let mut wpa = WatermarkPodAutoscaler::new("web", engine::validation::with_defaults(&spec));
    wpa.metadata.namespace = Some("default".into());
    let pods: Vec<PodInfo> = (0..50)
        .map(|i| PodInfo {
            name: format!("web-7d9f-{i}"),
            phase: PodPhase::Running,
            ready: Some(ReadyCondition {
                status: "True".into(),
                last_transition: Some(now - Duration::from_secs(600)),
            }),
            start_time: Some(now - Duration::from_secs(700)),
            deleting: false,
            owners: vec![OwnerRef { kind: "ReplicaSet".into(), name: "web-7d9f".into() }],
        })
        .collect();
    let sample = |milli: i64| {
        MetricObservation::External(Ok(ExternalSample { values: vec![milli], timestamp: Some(now) }))
    };
    let metrics = vec![sample(6_000_000), sample(400_000), sample(9_000_000)];
    let scale = ScaleInfo {
        name: "web".into(),
        namespace: "default".into(),
        spec_replicas: 50,
        status_replicas: 50,
        selector: "app=web".into(),
    };
    (wpa, pods, metrics, scale)
}

fn rate(seconds: f64, mut f: impl FnMut()) -> f64 {
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < budget {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Runs the engine benchmark and returns a report.
pub fn engine(seconds: f64) -> String {
    let now = Timestamp::now();
    let (wpa, pods, metrics, scale) = engine_fixture(now);
    let decide = || {
        let obs = Observation {
            target: Ok(scale.clone()),
            pods: Ok(&pods),
            metrics: &metrics,
            recommendation: None,
            monitor: MonitorObservation::NotRequested,
        };
        black_box(engine::decide(black_box(&wpa), &obs, now));
    };
    // Warm up, then measure the decision and the baseline (copying the same inputs) alternately.
    let _ = rate(0.2, decide);
    let copy = || {
        black_box((black_box(&wpa).clone(), black_box(&pods).clone(), black_box(&metrics).clone()));
    };
    let decisions = rate(seconds, decide);
    let copies = rate(seconds, copy);
    format!(
        "engine: {decisions:.0} decisions/s on one core ({:.2} µs each) for 3 External metrics and 50 pods\n\
         baseline: {copies:.0} copies/s of the same inputs; one decision costs {:.2}× a copy of its inputs",
        1e6 / decisions,
        copies / decisions
    )
}
