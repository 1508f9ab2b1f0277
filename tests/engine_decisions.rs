//! Whole passes of the engine (`engine::decide`) on scenarios the upstream vectors do not cover: dry-run,
//! a failed scale write, events only on transitions, garbage metrics, lifecycle control, invalid specs.

use std::time::Duration;

use jiff::Timestamp;
use wpa::{
    api::{WatermarkPodAutoscaler, WatermarkPodAutoscalerSpec},
    engine::{
        self, Action, ConditionStatus, Decision, ExternalSample, MetricObservation, MonitorObservation,
        Observation, Outcome, OwnerKind, OwnerRef, PodInfo, PodPhase, ReadyCondition, ScaleInfo, ScaleResult,
        conditions::{self, get_condition},
    },
};

fn now() -> Timestamp {
    "2026-01-01T12:00:00Z".parse().expect("a time")
}

fn wpa(extra: serde_json::Value) -> WatermarkPodAutoscaler {
    let mut spec = serde_json::json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 2, "maxReplicas": 10,
        "metrics": [{"type": "External", "external": {
            "metricName": "qps", "metricSelector": {"matchLabels": {"app": "web"}},
            "highWatermark": "100", "lowWatermark": "50"}}]
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    let spec: WatermarkPodAutoscalerSpec = serde_json::from_value(spec).expect("a spec");
    let mut w = WatermarkPodAutoscaler::new("web", spec);
    w.metadata.namespace = Some("default".into());
    w.metadata.generation = Some(7);
    w
}

fn pods(n: usize) -> Vec<PodInfo> {
    (0..n)
        .map(|i| PodInfo {
            name: format!("web-abc-{i}"),
            phase: PodPhase::Running,
            ready: Some(ReadyCondition {
                status: ConditionStatus::True,
                last_transition: Some(now() - Duration::from_secs(600)),
            }),
            start_time: Some(now() - Duration::from_secs(700)),
            deleting: false,
            owners: vec![OwnerRef { kind: OwnerKind::ReplicaSet, name: "web-abc".into() }],
        })
        .collect()
}

fn scale(replicas: i32) -> ScaleInfo {
    ScaleInfo {
        name: "web".into(),
        namespace: "default".into(),
        spec_replicas: replicas,
        status_replicas: replicas,
        selector: "app=web".into(),
    }
}

fn external(milli: i64) -> Vec<MetricObservation> {
    vec![MetricObservation::External(Ok(ExternalSample { values: vec![milli], timestamp: Some(now()) }))]
}

/// A pass: the decision, and its outcome once the `/scale` write (if any) went as `result` says.
struct Pass<'a> {
    decision: Decision<'a>,
    outcome: Outcome,
}

impl std::ops::Deref for Pass<'_> {
    type Target = Outcome;
    fn deref(&self) -> &Outcome {
        &self.outcome
    }
}

fn settle<'a>(
    w: &'a WatermarkPodAutoscaler,
    obs: &Observation<'_>,
    at: Timestamp,
    result: ScaleResult,
) -> Pass<'a> {
    // The decision borrows its plan; a test's passes are few, so the plan simply lives as long as the WPA.
    let plan: &'a engine::Plan<'a> = Box::leak(Box::new(engine::Plan::new(w)));
    let decision = engine::decide(plan, obs, at);
    let outcome = decision.settle(w, result);
    Pass { decision, outcome }
}

fn decide<'a>(w: &'a WatermarkPodAutoscaler, obs: &Observation<'_>, at: Timestamp) -> Pass<'a> {
    settle(w, obs, at, ScaleResult::Written)
}

/// What a pass observes of a target at `replicas` with these pods and metric values.
fn observe<'a>(replicas: i32, pods: &'a [PodInfo], metrics: &'a [MetricObservation]) -> Observation<'a> {
    Observation {
        target: Ok(scale(replicas)),
        pods: Ok(pods),
        metrics,
        recommendation: None,
        monitor: MonitorObservation::NotRequested,
        conflicts: &[],
    }
}

fn run_with<'a>(
    w: &'a WatermarkPodAutoscaler,
    replicas: i32,
    metrics: &[MetricObservation],
    at: Timestamp,
    result: ScaleResult,
) -> Pass<'a> {
    let p = pods(replicas as usize);
    let obs = observe(replicas, &p, metrics);
    settle(w, &obs, at, result)
}

/// A pass whose scale, if any, is written.
fn run<'a>(
    w: &'a WatermarkPodAutoscaler,
    replicas: i32,
    metrics: &[MetricObservation],
    at: Timestamp,
) -> Pass<'a> {
    run_with(w, replicas, metrics, at, ScaleResult::Written)
}

fn condition<'a>(d: &'a Outcome, t: &str) -> (&'a str, &'a str, &'a str) {
    let c = get_condition(&d.status, t).unwrap_or_else(|| panic!("no {t} condition"));
    (c.status.as_str(), c.reason.as_deref().unwrap_or(""), c.message.as_deref().unwrap_or(""))
}

#[test]
fn an_upscale_writes_the_scale_and_records_it() {
    let w = wpa(serde_json::json!({}));
    let d = run(&w, 4, &external(600_000), now());
    // ceil(4 * 600 / 100) = 24, limited to 4 + 50 % = 6.
    assert_eq!(d.scaled_to, Some(6));
    assert_eq!(d.status.desired_replicas, 6);
    assert_eq!(d.status.last_scale_time.as_ref().map(|t| t.0), Some(now()));
    assert_eq!(d.status.scaling_events_count, 1);
    assert_eq!(d.status.observed_generation, Some(7));
    assert_eq!(
        condition(&d.outcome, "AbleToScale"),
        ("True", "SuccessfulScale", "the WPA controller was able to update the target scale to 6")
    );
    assert_eq!(condition(&d.outcome, "ScalingLimited").1, "ScaleUpLimit");
    assert_eq!(d.events.len(), 1);
    assert_eq!(d.events[0].reason, "Scaling");
    assert_eq!(d.events[0].message, "New size: 6; reason: qps{map[app:web]} above target");
    assert_eq!(d.counters[0].counter.name(), "upscale_replicas_total");
    assert_eq!(d.counters[0].value, 2);
    assert_eq!(d.action, Action::RequeueAfter(Duration::from_secs(15)));
    assert!(d.status_changed);
}

#[test]
fn dry_run_records_the_decision_but_never_writes_the_scale() {
    let w = wpa(serde_json::json!({"dryRun": true}));
    let d = run(&w, 4, &external(600_000), now());
    assert_eq!(d.scaled_to, None);
    assert!(d.decision.rescale);
    assert_eq!(d.status.desired_replicas, 6);
    assert_eq!(d.status.scaling_events_count, 1, "dry-run counts the decided scale, as upstream");
    assert_eq!(d.status.last_scale_time.as_ref().map(|t| t.0), Some(now()));
    assert_eq!(
        condition(&d.outcome, "DryRun"),
        ("True", "DryRun mode enabled", "Scaling changes won't be applied")
    );
    assert!(d.gauges.iter().any(|g| g.series.name() == "dry_run" && g.value == 1.0));
    assert!(d.counters.is_empty(), "no replicas were added");
    assert_eq!(d.events.iter().map(|e| e.reason).collect::<Vec<_>>(), ["DryRunScaling"]);
}

#[test]
fn a_failed_scale_write_is_recorded_and_nothing_else_changes() {
    let w = wpa(serde_json::json!({}));
    let d = run_with(
        &w,
        4,
        &external(600_000),
        now(),
        ScaleResult::Failed("Operation cannot be fulfilled: the object has been modified".into()),
    );
    assert_eq!(d.scaled_to, None);
    assert_eq!(d.status.desired_replicas, 0, "desiredReplicas keeps its previous value");
    assert!(d.status.last_scale_time.is_none());
    assert_eq!(d.status.scaling_events_count, 0);
    let (status, reason, message) = condition(&d.outcome, "AbleToScale");
    assert_eq!((status, reason), ("False", "FailedScale"));
    assert!(message.ends_with("the object has been modified"));
    assert_eq!(d.events.iter().map(|e| e.reason).collect::<Vec<_>>(), ["FailedScale"]);
    assert!(d.counters.is_empty());
}

#[test]
fn a_persisting_metric_error_is_reported_once() {
    let mut w = wpa(serde_json::json!({}));
    let broken = vec![MetricObservation::External(Err(
        "unable to fetch metrics from external metrics API: 503".into(),
    ))];
    let first = run(&w, 4, &broken, now());
    assert_eq!(first.scaled_to, None);
    let (status, reason, message) = condition(&first.outcome, "ScalingActive");
    assert_eq!((status, reason), ("False", "FailedGetExternalMetric"));
    assert!(message.starts_with(
        "the WPA was unable to compute the replica count: unable to get external metric default/qps/app=web:"
    ));
    let reasons: Vec<&str> = first.events.iter().map(|e| e.reason).collect();
    assert_eq!(reasons, ["FailedGetExternalMetric", "FailedComputeMetricsReplicas"]);
    assert_eq!(first.action, Action::RequeueAfter(Duration::from_secs(15)));
    w.status = Some(first.status.clone());
    let second = run(&w, 4, &broken, now() + Duration::from_secs(15));
    assert!(second.events.is_empty(), "no event every period: {:?}", second.events);
    assert!(!second.status_changed, "nothing changed, so nothing to write");
}

#[test]
fn garbage_metrics_never_scale_to_min() {
    let w = wpa(serde_json::json!({}));
    for obs in [
        vec![MetricObservation::External(Ok(ExternalSample { values: vec![-5_000], timestamp: None }))],
        vec![MetricObservation::External(Ok(ExternalSample { values: vec![], timestamp: None }))],
        vec![MetricObservation::Skipped],
    ] {
        let d = run(&w, 8, &obs, now());
        assert_eq!(d.scaled_to, None, "{obs:?}");
        assert_eq!(condition(&d.outcome, "ScalingActive").0, "False");
        assert_eq!(d.decision.desired, 0, "desiredReplicas is left as it was (here: unset)");
    }
}

#[test]
fn invalid_specs_stop_with_upstreams_message() {
    let w = wpa(serde_json::json!({"minReplicas": 12}));
    let d = run(&w, 4, &external(1_000), now());
    assert_eq!(d.action, Action::Done);
    assert_eq!(
        condition(&d.outcome, "AbleToScale"),
        (
            "False",
            "FailedSpecCheck",
            "Invalid WPA specification: watermark pod autoscaler requires the minimum number of replicas to be configured and inferior to the maximum"
        )
    );
    assert_eq!(d.events[0].reason, "FailedSpecCheck");
    assert_eq!(d.scaled_to, None);
}

#[test]
fn recommender_without_watermarks_is_a_condition_not_a_crash() {
    let w =
        wpa(serde_json::json!({"metrics": null, "recommender": {"url": "http://reco", "targetType": "cpu"}}));
    let d = run(&w, 4, &[], now());
    let (status, reason, message) = condition(&d.outcome, "ScalingActive");
    assert_eq!((status, reason), ("False", "FailedGetResourceMetric"));
    assert!(message.contains("needs both highWatermark and lowWatermark"), "{message}");
    assert_eq!(d.scaled_to, None);
}

#[test]
fn lifecycle_control_blocks_until_the_monitor_is_ok() {
    let mut w = wpa(serde_json::json!({}));
    w.metadata.annotations =
        Some([("wpa.datadoghq.com/lifecycle-control.enabled".to_string(), "true".to_string())].into());
    let p = pods(4);
    let m = external(600_000);
    let observe = |monitor| Observation {
        target: Ok(scale(4)),
        pods: Ok(&p),
        metrics: &m,
        recommendation: None,
        monitor,
        conflicts: &[],
    };
    let blocked = decide(&w, &observe(MonitorObservation::Found(engine::MonitorState::Alert)), now());
    assert_eq!(
        condition(&blocked.outcome, "ScalingBlocked"),
        (
            "True",
            "DatadogMonitorNotOK",
            "monitor default/web is in Alert state, blocking the WPA from proceeding"
        )
    );
    assert_eq!(blocked.action, Action::RequeueAfter(Duration::from_secs(60)));
    assert_eq!(blocked.scaled_to, None);
    let missing = decide(&w, &observe(MonitorObservation::CrdMissing), now());
    assert_eq!(condition(&missing.outcome, "ScalingBlocked").0, "True");
    assert!(condition(&missing.outcome, "ScalingBlocked").2.contains("DatadogMonitor CRD"));
    assert_eq!(missing.action, Action::RequeueAfter(Duration::from_secs(120)));
    let ok = decide(&w, &observe(MonitorObservation::Found(engine::MonitorState::Ok)), now());
    assert_eq!(condition(&ok.outcome, "ScalingBlocked").1, "DatadogMonitorOK");
    assert_eq!(ok.scaled_to, Some(6));
}

#[test]
fn the_target_at_zero_turns_scaling_off() {
    let w = wpa(serde_json::json!({}));
    let p: Vec<PodInfo> = vec![];
    let m = external(600_000);
    let obs = observe(0, &p, &m);
    let d = decide(&w, &obs, now());
    assert_eq!(d.scaled_to, None);
    // No pods: the metric computation fails first, as upstream notes; scaling stays off.
    assert_eq!(condition(&d.outcome, "ScalingActive").0, "False");
}

#[test]
fn a_manual_scale_outside_the_bounds_is_corrected_at_once() {
    let mut w = wpa(serde_json::json!({}));
    // A scale a second ago: the windows are closed, the correction ignores them.
    let mut status = w.status.clone().unwrap_or_default();
    status.last_scale_time =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now() - Duration::from_secs(1)));
    w.status = Some(status);
    let d = run(&w, 14, &external(700_000), now());
    assert_eq!(d.scaled_to, Some(10));
    assert_eq!(d.decision.reason, "Current number of replicas above Spec.MaxReplicas");
    let d = run(&w, 1, &external(50_000), now());
    assert_eq!(d.scaled_to, Some(2));
    assert_eq!(d.decision.reason, "Current number of replicas below Spec.MinReplicas");
    assert_eq!(conditions::status_str(true), "True");
}

#[test]
fn not_scaling_is_a_condition() {
    let w = wpa(serde_json::json!({}));
    let mut w2 = w.clone();
    let first = run(&w, 4, &external(70_000), now());
    w2.status = Some(first.status.clone());
    let d = run(&w2, 4, &external(70_000), now() + Duration::from_secs(15));
    assert_eq!(d.scaled_to, None);
    let (status, reason, message) = condition(&d.outcome, "ScalingActive");
    assert_eq!((status, reason), ("True", "NotScaling"));
    assert!(message.starts_with("the WPA was able to successfully calculate a replica count and decided not to scale Deployment/default/web to 4 (last scale time was 2026-01-01 12:00:00 +0000 UTC )"), "{message}");
    assert!(d.events.iter().all(|e| e.reason != "NotScaling"));
}

#[test]
fn a_steady_pass_inside_a_window_writes_nothing() {
    // First pass: an upscale at now(); its windows (60 s up, 300 s down) start.
    let mut w = wpa(serde_json::json!({}));
    let first = run(&w, 4, &external(600_000), now());
    assert_eq!(first.scaled_to, Some(6));
    w.status = Some(first.status.clone());
    // Ten seconds later, at 6 replicas and within the watermarks: AbleToScale is set True
    // (SucceededGetScale), then False (BackoffBoth) in the same pass, as upstream does.
    let second = run(&w, 6, &external(450_000), now() + Duration::from_secs(10));
    assert_eq!(condition(&second.outcome, "AbleToScale").1, "BackoffBoth");
    w.status = Some(second.status.clone());
    let third = run(&w, 6, &external(450_000), now() + Duration::from_secs(25));
    // The stored status is False/BackoffBoth already: its transition time stays, nothing is rewritten.
    let stored =
        get_condition(w.status.as_ref().unwrap(), "AbleToScale").unwrap().last_transition_time.clone();
    assert_eq!(get_condition(&third.status, "AbleToScale").unwrap().last_transition_time, stored);
    assert!(!third.status_changed, "a pass that changes nothing writes nothing");
    assert!(third.events.is_empty());
}

#[test]
fn from_the_third_pass_on_a_stable_wpa_writes_nothing() {
    let mut w = wpa(serde_json::json!({}));
    let mut changed = Vec::new();
    // 75 for 4 replicas is within [45, 110]; the windows are 60 s (up) and 300 s (down).
    for pass in 0..24u64 {
        let d = run(&w, 4, &external(75_000), now() + Duration::from_secs(15 * pass));
        changed.push(d.status_changed);
        w.status = Some(d.status.clone());
    }
    // Pass 1 records the first "scale" (no lastScaleTime yet), pass 2 the windows it opened, pass 5 the
    // upscale window closing (60 s), pass 21 the downscale window closing (300 s); nothing else is written.
    let writes: Vec<usize> = changed.iter().enumerate().filter(|(_, c)| **c).map(|(i, _)| i + 1).collect();
    assert_eq!(writes, [1, 2, 5, 21]);
}

#[test]
fn an_hpa_on_the_same_target_is_a_condition_and_one_event() {
    let mut w = wpa(serde_json::json!({}));
    let p = pods(4);
    let m = external(400_000);
    let observe = |conflicts: &'static [String]| Observation {
        target: Ok(scale(4)),
        pods: Ok(&p),
        metrics: &m,
        recommendation: None,
        monitor: MonitorObservation::NotRequested,
        conflicts,
    };
    static HPA: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| vec!["default/web-hpa".into()]);
    let first = decide(&w, &observe(&HPA), now());
    let (status, reason, message) = condition(&first.outcome, "ConflictingAutoscaler");
    assert_eq!((status, reason), ("True", "HorizontalPodAutoscalerFound"));
    assert!(
        message.starts_with("HorizontalPodAutoscaler default/web-hpa also scales Deployment/web"),
        "{message}"
    );
    let warnings: Vec<&str> = first.events.iter().filter(|e| e.warning).map(|e| e.reason).collect();
    assert_eq!(warnings, ["HorizontalPodAutoscalerFound"]);
    // The conditions gauge carries it, for the alert on a WPA fighting another autoscaler.
    let conflict_gauge = |p: &Pass<'_>| {
        p.gauges
            .iter()
            .find(|g| {
                g.series.name() == "conditions" && g.label == Some(("condition", "conflicting_autoscaler"))
            })
            .map(|g| g.value)
    };
    assert_eq!(conflict_gauge(&first), Some(1.0));
    // The conflict persists: no second event. Scaling is not blocked by it.
    w.status = Some(first.status.clone());
    let again = decide(&w, &observe(&HPA), now() + Duration::from_secs(15));
    assert!(again.events.iter().all(|e| e.reason != "HorizontalPodAutoscalerFound"));
    // The HPA is gone: the condition says so.
    w.status = Some(again.status.clone());
    let gone = decide(&w, &observe(&[]), now() + Duration::from_secs(30));
    assert_eq!(condition(&gone.outcome, "ConflictingAutoscaler").0, "False");
    assert_eq!(conflict_gauge(&gone), Some(0.0));
    // A WPA that never had a conflict never carries the condition; an accepted one is not reported.
    let fresh = wpa(serde_json::json!({}));
    let plain = decide(&fresh, &observe(&[]), now());
    assert!(get_condition(&plain.status, "ConflictingAutoscaler").is_none());
    assert_eq!(conflict_gauge(&plain), None, "no conflict series for a WPA that never had one");
    let mut accepted = wpa(serde_json::json!({}));
    accepted.metadata.annotations =
        Some([("wpa.datadoghq.com/allow-conflicting-autoscaler".to_string(), "true".to_string())].into());
    assert!(
        get_condition(&decide(&accepted, &observe(&HPA), now()).status, "ConflictingAutoscaler").is_none()
    );
}

#[test]
fn a_write_of_unknown_fate_keeps_the_record_and_says_so() {
    let w = wpa(serde_json::json!({}));
    let d = run_with(
        &w,
        4,
        &external(600_000),
        now(),
        ScaleResult::Unknown("Timeout: request did not complete within requested timeout 34s (504)".into()),
    );
    assert_eq!(d.scaled_to, None);
    assert_eq!(
        d.status.last_scale_time.as_ref().map(|t| t.0),
        Some(now()),
        "the window counts from the attempt"
    );
    assert_eq!(d.status.desired_replicas, 6);
    assert_eq!(d.status.scaling_events_count, 0, "no scale is counted that may not have happened");
    let (status, reason, message) = condition(&d.outcome, "AbleToScale");
    assert_eq!((status, reason), ("False", "FailedScale"));
    assert!(message.contains("cannot tell whether") && message.contains("(504)"), "{message}");
    assert_eq!(d.events.iter().map(|e| e.reason).collect::<Vec<_>>(), ["FailedScale"]);
    assert!(d.counters.is_empty());
}

#[test]
fn a_last_scale_time_far_in_the_future_is_reset_to_now_and_reported() {
    let mut w = wpa(serde_json::json!({"upscaleForbiddenWindowSeconds": 60}));
    let future = now() + Duration::from_secs(600);
    w.status = Some(wpa::api::WatermarkPodAutoscalerStatus {
        last_scale_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(future)),
        ..Default::default()
    });
    let d = run(&w, 4, &external(600_000), now());
    assert_eq!(d.scaled_to, None, "the window counts from now");
    assert_eq!(d.status.last_scale_time.as_ref().map(|t| t.0), Some(now()));
    let event = d.events.iter().find(|e| e.reason == "FutureLastScaleTime").expect("an event says why");
    assert!(event.warning && event.message.contains("600s ahead"), "{}", event.message);
    assert_eq!(
        d.decision.reason, "Too early to upscale: forbidden window ends in 60s",
        "and the window is the WPA's own, from now"
    );
}

#[test]
fn a_last_scale_time_less_than_a_minute_ahead_is_clock_skew_and_kept() {
    let mut w = wpa(serde_json::json!({"upscaleForbiddenWindowSeconds": 60}));
    let skewed = now() + Duration::from_secs(30);
    w.status = Some(wpa::api::WatermarkPodAutoscalerStatus {
        last_scale_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(skewed)),
        ..Default::default()
    });
    let d = run(&w, 4, &external(600_000), now());
    assert_eq!(d.status.last_scale_time.as_ref().map(|t| t.0), Some(skewed));
    assert!(d.events.iter().all(|e| e.reason != "FutureLastScaleTime"));
}

#[test]
fn a_huge_limit_factor_scales_to_max_replicas_not_below_zero() {
    let w = wpa(serde_json::json!({"scaleUpLimitFactor": "999999999999999999999", "maxReplicas": 10}));
    let d = run(&w, 4, &external(600_000), now());
    assert_eq!(d.decision.scale.map(|s| s.to), Some(10), "{}", d.decision.reason);
}

proptest::proptest! {
    /// Whatever the spec and the metric, a scale the engine asks for stays within 0..=maxReplicas.
    #[test]
    fn a_scale_never_leaves_zero_to_max_replicas(
        min in 1i32..=50,
        extra in 0i32..=1_000_000,
        current in 1i32..=2_000,
        up in proptest::prop_oneof![proptest::strategy::Just("0".to_string()), "[0-9]{1,22}"],
        down in proptest::prop_oneof![proptest::strategy::Just("0".to_string()), "[0-9]{1,22}"],
        value in 0i64..=i64::MAX / 4,
    ) {
        let max = min.saturating_add(extra);
        let w = wpa(serde_json::json!({"minReplicas": min, "maxReplicas": max,
            "scaleUpLimitFactor": up, "scaleDownLimitFactor": down}));
        let d = run(&w, current, &external(value), now());
        if let Some(s) = d.decision.scale {
            proptest::prop_assert!((0..=max).contains(&s.to), "{s:?} outside 0..={max}");
        }
    }
}

#[test]
fn cpu_pods_that_became_ready_within_the_readiness_delay_are_named_as_such() {
    let w = wpa(
        serde_json::json!({"readinessDelaySeconds": 30, "metrics": [{"type": "Resource", "resource": {
        "name": "cpu", "metricSelector": {"matchLabels": {"app": "web"}}, "highWatermark": "400m", "lowWatermark": "200m"}}]}),
    );
    // Started 700 s ago, Ready 10 s later: within the 30 s delay, so upstream's rule ignores them for good.
    let mut p = pods(3);
    for pod in &mut p {
        pod.ready.as_mut().expect("a Ready condition").last_transition =
            Some(now() - Duration::from_secs(690));
    }
    let usage: std::collections::BTreeMap<String, i64> =
        p.iter().map(|pod| (pod.name.clone(), 300)).collect();
    let metrics = [MetricObservation::Resource(Ok(usage))];
    let obs = observe(3, &p, &metrics);
    let d = decide(&w, &obs, now());
    let (_, _, message) = condition(&d.outcome, "ScalingActive");
    assert!(
        message.contains(
            "all 3 pods are ignored for cpu: each became Ready within readinessDelaySeconds (30s) of starting"
        ),
        "{message}"
    );
    assert!(!message.contains("pending or failed"), "{message}");
}

// The fallback (ours, issue 26): `fallback-replicas` once every metric has failed for `fallback-after`.

fn with_fallback(replicas: &str, after: &str, extra: serde_json::Value) -> WatermarkPodAutoscaler {
    let mut w = wpa(extra);
    w.metadata.annotations = Some(
        [
            ("wpa.datadoghq.com/fallback-replicas".to_string(), replicas.to_string()),
            ("wpa.datadoghq.com/fallback-after".to_string(), after.to_string()),
        ]
        .into(),
    );
    w
}

fn outage() -> Vec<MetricObservation> {
    vec![MetricObservation::External(Err("unable to fetch metrics from external metrics API: 503".into()))]
}

/// Passes every 15 s from `now()` at `replicas`, each starting from the status the previous one wrote;
/// returns the last.
fn passes(w: &mut WatermarkPodAutoscaler, replicas: i32, metrics: &[MetricObservation], n: u64) -> Outcome {
    let mut last = None;
    for i in 0..n {
        let d = run(w, replicas, metrics, now() + Duration::from_secs(15 * i));
        let outcome = d.outcome.clone();
        w.status = Some(outcome.status.clone());
        last = Some(outcome);
    }
    last.expect("at least one pass")
}

#[test]
fn before_fallback_after_an_outage_holds_the_count_and_says_when_the_fallback_comes() {
    let w = with_fallback("8", "10m", serde_json::json!({}));
    let d = run(&w, 4, &outage(), now());
    assert_eq!(d.scaled_to, None);
    assert_eq!(
        d.decision.fallback,
        Some(engine::FallbackState::Pending {
            since: now(),
            due: now() + Duration::from_secs(600),
            replicas: 8,
        })
    );
    let (status, reason, message) = condition(&d.outcome, "Fallback");
    assert_eq!((status, reason), ("Unknown", "MetricsFailing"));
    assert!(
        message.contains("keeps at least 8 replicas (fallback-replicas) from 2026-01-01T12:10:00Z"),
        "{message}"
    );
    assert!(d.gauges.iter().any(|g| g.series.metric_name() == "wpa_fallback_active" && g.value == 0.0));
}

#[test]
fn once_every_metric_has_failed_for_fallback_after_the_count_goes_up_to_the_fallback() {
    let mut w = with_fallback("6", "1m", serde_json::json!({}));
    passes(&mut w, 4, &outage(), 4); // 0 s, 15 s, 30 s, 45 s: still waiting
    assert_eq!(condition(&passes(&mut w.clone(), 4, &outage(), 1), "Fallback").0, "Unknown");
    let d = run(&w, 4, &outage(), now() + Duration::from_secs(60));
    assert_eq!(d.scaled_to, Some(6), "max(current 4, fallback 6), within the +50 % limit of 4");
    let (status, reason, _) = condition(&d.outcome, "Fallback");
    assert_eq!((status, reason), ("True", "FallbackActive"));
    let fallback_events: Vec<_> = d.events.iter().filter(|e| e.reason == "FallbackActive").collect();
    assert_eq!(fallback_events.len(), 1, "{:?}", d.events);
    assert!(fallback_events[0].warning);
    assert!(d.gauges.iter().any(|g| g.series.metric_name() == "wpa_fallback_active" && g.value == 1.0));
    assert_eq!(condition(&d.outcome, "ScalingActive").0, "False", "the metrics still fail");
}

#[test]
fn a_fallback_scale_obeys_the_scale_up_limit_and_max_replicas() {
    let mut w = with_fallback("10", "30s", serde_json::json!({"maxReplicas": 10}));
    passes(&mut w, 4, &outage(), 2);
    let d = run(&w, 4, &outage(), now() + Duration::from_secs(30));
    assert_eq!(d.scaled_to, Some(6), "4 + 50 % per step, not 10 at once");
    assert_eq!(condition(&d.outcome, "ScalingLimited").1, "ScaleUpLimit");
}

#[test]
fn a_fallback_waits_for_the_upscale_forbidden_window() {
    let mut w = with_fallback("8", "30s", serde_json::json!({"upscaleForbiddenWindowSeconds": 300}));
    passes(&mut w, 4, &outage(), 2);
    if let Some(s) = w.status.as_mut() {
        s.last_scale_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    }
    let d = run(&w, 4, &outage(), now() + Duration::from_secs(30));
    assert_eq!(d.scaled_to, None, "the window after the last scale holds");
    assert_eq!(condition(&d.outcome, "Fallback").0, "True", "the fallback is active, waiting for the window");
    assert!(d.decision.reason.starts_with("Too early to upscale"), "{}", d.decision.reason);
}

#[test]
fn a_fallback_never_scales_down() {
    let mut w = with_fallback("3", "30s", serde_json::json!({}));
    passes(&mut w, 5, &outage(), 2);
    let d = run(&w, 5, &outage(), now() + Duration::from_secs(30));
    assert_eq!(d.scaled_to, None);
    assert_eq!(d.status.desired_replicas, 5);
    assert!(d.decision.reason.contains("never scales down"), "{}", d.decision.reason);
}

#[test]
fn when_a_metric_answers_again_the_fallback_ends_with_an_event_and_normal_scaling_resumes() {
    let mut w = with_fallback("6", "30s", serde_json::json!({}));
    let active = passes(&mut w, 4, &outage(), 3);
    assert_eq!(condition(&active, "Fallback").0, "True");
    // The fallback scaled to 6; the metric is back, within its band at 6 pods (6 × 75 = 450).
    let d = run(&w, 6, &external(450_000), now() + Duration::from_secs(60));
    let (status, reason, _) = condition(&d.outcome, "Fallback");
    assert_eq!((status, reason), ("False", "MetricsAvailable"));
    let ended: Vec<_> = d.events.iter().filter(|e| e.reason == "FallbackEnded").collect();
    assert_eq!(ended.len(), 1, "{:?}", d.events);
    assert!(!ended[0].warning);
    assert_eq!(d.decision.fallback, Some(engine::FallbackState::Off));
    assert_eq!(d.scaled_to, None, "within the band: no scale");
}

#[test]
fn one_failing_metric_among_several_is_not_an_outage() {
    let metrics = serde_json::json!({"metrics": [
        {"type": "External", "external": {"metricName": "qps", "metricSelector": {"matchLabels": {"app": "web"}},
            "highWatermark": "100", "lowWatermark": "50"}},
        {"type": "External", "external": {"metricName": "lag", "metricSelector": {"matchLabels": {"app": "web"}},
            "highWatermark": "100", "lowWatermark": "50"}}]});
    let mut w = with_fallback("8", "30s", metrics);
    let mut half = external(300_000);
    half.extend(outage());
    let last = passes(&mut w, 4, &half, 4);
    assert_eq!(last.scaled_to, None, "one failing metric blocks the pass, as upstream");
    assert_eq!(condition(&last, "Fallback").0, "False");
}

#[test]
fn metrics_failing_because_no_pod_is_ready_are_not_an_outage() {
    let mut w = with_fallback("8", "30s", serde_json::json!({}));
    let p: Vec<PodInfo> = pods(4)
        .into_iter()
        .map(|mut p| {
            p.ready = Some(ReadyCondition { status: ConditionStatus::False, last_transition: Some(now()) });
            p
        })
        .collect();
    for i in 0..4 {
        let metrics = external(300_000);
        let obs = observe(4, &p, &metrics);
        let d = decide(&w, &obs, now() + Duration::from_secs(15 * i));
        assert_eq!(d.scaled_to, None);
        assert_eq!(condition(&d.outcome, "Fallback").0, "False", "the readiness gate is not an outage");
        w.status = Some(d.outcome.status.clone());
    }
}

#[test]
fn the_fallback_condition_leaves_upstreams_last_condition_type_alone() {
    let plain = wpa(serde_json::json!({}));
    let with = with_fallback("8", "10m", serde_json::json!({}));
    for metrics in [outage(), external(300_000)] {
        let a = run(&plain, 4, &metrics, now());
        let b = run(&with, 4, &metrics, now());
        assert_eq!(a.status.last_condition_type, b.status.last_condition_type);
        assert_eq!(a.status.last_condition_state, b.status.last_condition_state);
    }
}

#[test]
fn unreadable_fallback_annotations_turn_the_fallback_off_and_say_why() {
    let w = with_fallback("lots", "10m", serde_json::json!({}));
    let d = run(&w, 4, &outage(), now());
    let (status, reason, message) = condition(&d.outcome, "Fallback");
    assert_eq!((status, reason), ("False", "InvalidFallback"));
    assert!(message.contains("\"lots\" is not a positive whole number"), "{message}");
    assert_eq!(d.decision.fallback, None);
}

#[test]
fn the_decisions_pod_count_is_the_one_its_metrics_used() {
    // Two ready pods, one Running but not Ready, one of another workload: counted once per pass, the same
    // count reaches the metric's proposal and the readers (explain's pods line).
    let mut p = pods(4);
    p[2].ready = Some(ReadyCondition { status: ConditionStatus::False, last_transition: Some(now()) });
    p[3].owners = vec![OwnerRef { kind: OwnerKind::ReplicaSet, name: "api-xyz".into() }];
    let metrics = external(300_000);
    let obs = observe(4, &p, &metrics);
    let w = wpa(serde_json::json!({}));
    let d = decide(&w, &obs, now());
    let count = d.decision.pods.expect("the pods were counted");
    assert_eq!((count.ready, count.incorrect), (2, 1));
    match &d.decision.metrics[0].result {
        Some(Ok(r)) => assert_eq!(r.ready_replicas, 2),
        other => panic!("expected a proposal, got {other:?}"),
    }
}
