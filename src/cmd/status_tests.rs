//! `wpa status`'s lines from real engine decisions, and its table and JSON as golden outputs.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::*;
use crate::{
    api::WatermarkPodAutoscalerStatus,
    engine::{MonitorObservation, TargetError, TargetErrorKind, fixtures},
};

fn now() -> Timestamp {
    "2026-06-01T12:00:00Z".parse().expect("a time")
}

/// A WPA `name` on Deployment `name` (1..10 replicas, one External metric `qps` with watermarks 50..100)
/// with `extra` spec fields, last scaled `scaled_ago` (if ever).
fn wpa(name: &str, extra: serde_json::Value, scaled_ago: Option<u64>) -> WatermarkPodAutoscaler {
    let mut w = fixtures::wpa("shop", name, fixtures::external_spec(name, 1, extra));
    w.status = Some(WatermarkPodAutoscalerStatus {
        last_scale_time: scaled_ago.map(|s| Time(now() - Duration::from_secs(s))),
        ..Default::default()
    });
    w
}

/// The inputs of a target at `replicas` ready pods whose metric reads `value` (or fails).
fn inputs(name: &str, replicas: i32, value: Result<i64, &str>, conflicts: &[&str]) -> Inputs {
    let mut inputs = Inputs::one_external("shop", name, replicas, value, now());
    inputs.conflicts = conflicts.iter().map(|c| c.to_string()).collect();
    inputs
}

fn line(w: &WatermarkPodAutoscaler, inputs: &Inputs) -> Line {
    let plan = engine::Plan::new(w);
    let d = engine::decide(&plan, &inputs.observation(), now());
    Line::of(&plan, inputs, &d, now())
}

/// Puts condition `type_` in `w`'s status, at `status` since `ago` seconds.
fn with_condition(w: &mut WatermarkPodAutoscaler, type_: &str, status: &str, ago: u64) {
    if let Some(s) = w.status.as_mut() {
        s.conditions.push(crate::api::Condition {
            type_: type_.into(),
            status: status.into(),
            last_transition_time: Some(Time(now() - Duration::from_secs(ago))),
            reason: Some(String::new()),
            message: Some(String::new()),
        });
    }
}

/// `w` with the annotations of a fallback to `replicas` after `after`.
fn with_fallback(mut w: WatermarkPodAutoscaler, replicas: &str, after: &str) -> WatermarkPodAutoscaler {
    let a = w.metadata.annotations.get_or_insert_with(Default::default);
    a.insert(crate::api::annotations::FALLBACK_REPLICAS.into(), replicas.into());
    a.insert(crate::api::annotations::FALLBACK_AFTER.into(), after.into());
    w
}

/// The cells of `l`'s row in the table (the columns are at least three spaces apart).
fn cells(l: Line) -> Vec<String> {
    let table = report(vec![l]).render(Output::Table, false);
    let row = table.lines().nth(1).expect("a row under the header");
    row.split("   ").map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect()
}

fn report(items: Vec<Line>) -> Report {
    Report { schema_version: SCHEMA_VERSION, generated_at: now(), scope: "namespace shop".into(), items }
}

#[test]
fn every_value_within_its_band_is_in_band() {
    let l = line(&wpa("web", json!({}), Some(3600)), &inputs("web", 4, Ok(75), &[]));
    assert_eq!(l.state, State::InBand);
    assert_eq!(l.replicas, Some(Replicas { current: 4, desired: 4 }));
    assert_eq!(l.next_scale, None, "nothing is waited for");
}

#[test]
fn a_scale_decided_now_is_scaling_to_its_count() {
    // 300 against 100: 12 proposed, +50 % per step from 4 gives 6.
    let l = line(&wpa("web", json!({}), Some(3600)), &inputs("web", 4, Ok(300), &[]));
    assert_eq!(l.state, State::Scaling);
    assert_eq!(l.replicas, Some(Replicas { current: 4, desired: 6 }));
    assert_eq!(l.next_scale, Some(now()));
}

#[test]
fn a_change_waiting_for_its_window_says_when_it_ends() {
    let w = wpa("web", json!({"upscaleForbiddenWindowSeconds": 60}), Some(20));
    let l = line(&w, &inputs("web", 4, Ok(300), &[]));
    assert_eq!(l.state, State::Window);
    assert_eq!(l.next_scale, Some(now() + Duration::from_secs(40)));
    assert_eq!(l.replicas, Some(Replicas { current: 4, desired: 6 }));
}

#[test]
fn a_change_waiting_for_the_delay_above_the_watermark_is_above() {
    let mut w = wpa("web", json!({"upscaleDelayAboveWatermarkSeconds": 120}), Some(3600));
    // Above the high watermark for 30 s.
    with_condition(&mut w, "AboveHighWatermark", "True", 30);
    let l = line(&w, &inputs("web", 4, Ok(300), &[]));
    assert_eq!(l.state, State::Above);
    assert_eq!(l.next_scale, Some(now() + Duration::from_secs(90)));
}

#[test]
fn metrics_asking_for_more_than_max_replicas_at_max_are_at_max() {
    let l = line(&wpa("web", json!({"maxReplicas": 4}), Some(3600)), &inputs("web", 4, Ok(300), &[]));
    assert_eq!(l.state, State::AtMax);
}

#[test]
fn a_failing_metric_is_failing_with_no_value() {
    let l = line(&wpa("web", json!({}), Some(3600)), &inputs("web", 4, Err("503 Service Unavailable"), &[]));
    assert_eq!(l.state, State::Failing);
    assert_eq!(l.metrics[0].value, None);
    assert_eq!(l.metrics[0].position, "failed");
}

#[test]
fn an_unreadable_target_is_blocked() {
    let mut i = inputs("web", 4, Ok(75), &[]);
    i.target = Err(TargetError::new(TargetErrorKind::ScaleUnavailable, "deployments.apps \"web\" not found"));
    let l = line(&wpa("web", json!({}), Some(3600)), &i);
    assert_eq!(l.state, State::Blocked);
    assert_eq!(l.replicas, None);
}

#[test]
fn a_value_below_the_low_watermark_waiting_out_its_delay_is_below_with_the_time_left() {
    let mut w = wpa("web", json!({"downscaleDelayBelowWatermarkSeconds": 120}), Some(3600));
    // Below the low watermark for 30 s: 90 s of the delay are left.
    with_condition(&mut w, "BelowLowWatermark", "True", 30);
    // 20 against 50 at 4 pods asks for 1; -20 % per step from 4 gives 3.
    let l = line(&w, &inputs("web", 4, Ok(20), &[]));
    assert_eq!(l.state, State::Below);
    assert_eq!(l.replicas, Some(Replicas { current: 4, desired: 3 }));
    assert_eq!(l.next_scale, Some(now() + Duration::from_secs(90)));
    assert_eq!(cells(l), ["web", "Deployment/web", "4 -> 3", "below", "qps 20 (50..100)", "in 1 min 30 s"]);
}

#[test]
fn a_change_cancelled_by_a_scale_up_limit_factor_is_limited() {
    // scaleUpLimitFactor 0 turns upscaling off: 300 against 100 asks for 12, the factor keeps 4.
    let w = wpa("web", json!({"scaleUpLimitFactor": 0}), Some(3600));
    let l = line(&w, &inputs("web", 4, Ok(300), &[]));
    assert_eq!(l.state, State::Limited);
    assert_eq!(l.replicas, Some(Replicas { current: 4, desired: 4 }));
    assert_eq!(l.next_scale, None, "only a change of the metrics (or the spec) can start a scale");
    assert_eq!(cells(l), ["web", "Deployment/web", "4", "limited", "qps 300 (50..100)", "-"]);
}

#[test]
fn metrics_asking_for_fewer_than_min_replicas_at_min_are_at_min() {
    // 10 against 50 at 4 pods asks for 1; minReplicas 4 keeps 4.
    let l = line(&wpa("web", json!({"minReplicas": 4}), Some(3600)), &inputs("web", 4, Ok(10), &[]));
    assert_eq!(l.state, State::AtMin);
    assert_eq!(l.replicas, Some(Replicas { current: 4, desired: 4 }));
    assert_eq!(l.next_scale, None);
    assert_eq!(cells(l), ["web", "Deployment/web", "4", "at-min", "qps 10 (50..100)", "-"]);
}

#[test]
fn a_failing_metric_with_a_fallback_set_says_when_the_fallback_takes_over() {
    let mut w = with_fallback(wpa("web", json!({}), Some(3600)), "8", "10m");
    // Every metric has failed for 2 minutes: the fallback takes over in 8.
    with_condition(&mut w, "Fallback", "Unknown", 120);
    let l = line(&w, &inputs("web", 4, Err("503 Service Unavailable"), &[]));
    assert_eq!(l.state, State::Failing);
    assert_eq!(l.replicas, Some(Replicas { current: 4, desired: 4 }));
    assert_eq!(l.next_scale, Some(now() + Duration::from_secs(480)));
    assert_eq!(cells(l), ["web", "Deployment/web", "4", "failing", "qps failed", "in 8 min"]);
}

#[test]
fn a_failing_metric_at_or_above_the_fallback_count_predicts_no_scale() {
    let mut w = with_fallback(wpa("web", json!({}), Some(3600)), "4", "10m");
    with_condition(&mut w, "Fallback", "Unknown", 120);
    let l = line(&w, &inputs("web", 4, Err("503 Service Unavailable"), &[]));
    assert_eq!(l.state, State::Failing);
    assert_eq!(l.next_scale, None, "the fallback would keep 4, which the target has");
}

#[test]
fn a_failing_metric_at_max_replicas_predicts_no_fallback_scale() {
    let mut w = with_fallback(wpa("web", json!({"maxReplicas": 4}), Some(3600)), "8", "10m");
    with_condition(&mut w, "Fallback", "Unknown", 120);
    let l = line(&w, &inputs("web", 4, Err("503 Service Unavailable"), &[]));
    assert_eq!(l.next_scale, None, "maxReplicas 4 caps the fallback's 8 at the current 4");
}

#[test]
fn a_failing_metric_with_upscaling_disabled_predicts_no_fallback_scale() {
    let mut w = with_fallback(wpa("web", json!({"scaleUpLimitFactor": "0"}), Some(3600)), "8", "10m");
    with_condition(&mut w, "Fallback", "Unknown", 120);
    let l = line(&w, &inputs("web", 4, Err("503 Service Unavailable"), &[]));
    assert_eq!(l.next_scale, None, "a scale-up limit factor of 0 allows no step up");
}

#[test]
fn every_metric_failed_for_longer_than_fallback_after_is_fallback_scaling_now() {
    let mut w = with_fallback(wpa("web", json!({}), Some(3600)), "8", "10m");
    with_condition(&mut w, "Fallback", "Unknown", 660);
    // max(4, 8) is 8; +50 % per step from 4 gives 6.
    let l = line(&w, &inputs("web", 4, Err("503 Service Unavailable"), &[]));
    assert_eq!(l.state, State::Fallback);
    assert_eq!(l.replicas, Some(Replicas { current: 4, desired: 6 }));
    assert_eq!(l.next_scale, Some(now()), "the pass scales now");
    assert_eq!(cells(l), ["web", "Deployment/web", "4 -> 6", "fallback", "qps failed", "now"]);
}

#[test]
fn a_fallback_waiting_for_the_upscale_window_says_when_it_ends() {
    let w = wpa("web", json!({"upscaleForbiddenWindowSeconds": 60}), Some(20));
    let mut w = with_fallback(w, "8", "10m");
    with_condition(&mut w, "Fallback", "True", 660);
    let l = line(&w, &inputs("web", 4, Err("503 Service Unavailable"), &[]));
    assert_eq!(l.state, State::Fallback);
    assert_eq!(l.replicas, Some(Replicas { current: 4, desired: 6 }));
    assert_eq!(l.next_scale, Some(now() + Duration::from_secs(40)));
    assert_eq!(cells(l), ["web", "Deployment/web", "4 -> 6", "fallback", "qps failed", "in 40 s"]);
}

#[test]
fn a_fallback_holding_a_target_above_its_count_is_fallback_with_nothing_to_wait_for() {
    let mut w = with_fallback(wpa("web", json!({}), Some(3600)), "3", "10m");
    with_condition(&mut w, "Fallback", "True", 660);
    let l = line(&w, &inputs("web", 4, Err("503 Service Unavailable"), &[]));
    assert_eq!(l.state, State::Fallback);
    assert_eq!(l.replicas, Some(Replicas { current: 4, desired: 4 }), "a fallback never scales down");
    assert_eq!(l.next_scale, None);
}

#[test]
fn an_invalid_spec_is_invalid_and_waits_for_nothing() {
    let w = wpa("web", json!({"minReplicas": 5, "maxReplicas": 2}), Some(3600));
    let l = line(&w, &inputs("web", 4, Ok(75), &[]));
    assert_eq!(l.state, State::Invalid);
    assert!(l.detail.starts_with("invalid spec: "), "{}", l.detail);
    assert_eq!(l.next_scale, None);
    assert_eq!(cells(l), ["web", "Deployment/web", "4", "invalid", "-", "-"]);
}

#[test]
fn a_target_at_zero_replicas_is_off() {
    // Scaled to zero: no pod left, so the metric's computation fails first (as upstream's does); the WPA
    // leaves the target alone either way.
    let l = line(&wpa("web", json!({}), Some(3600)), &inputs("web", 0, Ok(75), &[]));
    assert_eq!(l.state, State::Off);
    assert_eq!(l.replicas, Some(Replicas { current: 0, desired: 0 }));
    assert_eq!(l.next_scale, None);
}

#[test]
fn a_target_at_zero_replicas_with_pods_left_is_off() {
    // Its pods are still there: the metric computes and the engine turns scaling off itself.
    let mut i = inputs("web", 2, Ok(300), &[]);
    if let Ok(t) = i.target.as_mut() {
        t.spec_replicas = 0;
    }
    let l = line(&wpa("web", json!({}), Some(3600)), &i);
    assert_eq!(l.state, State::Off);
    assert_eq!(l.replicas, Some(Replicas { current: 0, desired: 0 }));
    assert_eq!(cells(l), ["web", "Deployment/web", "0", "off", "qps 300 (50..100)", "-"]);
}

#[test]
fn a_lifecycle_monitor_that_is_not_ok_is_blocked() {
    let mut w = wpa("web", json!({}), Some(3600));
    w.metadata.annotations =
        Some([(crate::api::annotations::LIFECYCLE_CONTROL.to_string(), "true".to_string())].into());
    let mut i = inputs("web", 4, Ok(300), &[]);
    i.monitor = MonitorObservation::Found(engine::MonitorState::Alert);
    let l = line(&w, &i);
    assert_eq!(l.state, State::Blocked);
    assert_eq!(l.reason, "monitor shop/web is in Alert state, blocking the WPA from proceeding");
    assert_eq!(l.next_scale, None);
    assert_eq!(cells(l), ["web", "Deployment/web", "4", "blocked", "-", "-"]);
}

#[test]
fn pods_that_cannot_be_listed_are_blocked_not_a_failing_metric() {
    let mut i = inputs("web", 4, Ok(75), &[]);
    i.pods = Err("couldn't parse the selector".into());
    let l = line(&wpa("web", json!({}), Some(3600)), &i);
    assert_eq!(l.state, State::Blocked);
    assert_eq!(l.replicas, Some(Replicas { current: 4, desired: 4 }));
}

#[test]
fn dry_run_and_a_conflicting_hpa_are_flags_on_any_state() {
    let l =
        line(&wpa("web", json!({"dryRun": true}), Some(3600)), &inputs("web", 4, Ok(75), &["shop/web-hpa"]));
    assert_eq!(l.state, State::InBand);
    assert_eq!(l.flags, [State::DryRun, State::Conflict]);
}

#[test]
fn fail_on_names_the_lines_in_those_states_or_flags() {
    let r = report(vec![
        line(&wpa("a", json!({}), Some(3600)), &inputs("a", 4, Ok(75), &[])),
        line(&wpa("b", json!({}), Some(3600)), &inputs("b", 4, Err("503"), &[])),
        line(&wpa("c", json!({"dryRun": true}), Some(3600)), &inputs("c", 4, Ok(75), &[])),
    ]);
    assert_eq!(r.matching(&[State::Blocked, State::Failing]), ["shop/b (failing)"]);
    assert_eq!(r.matching(&[State::DryRun]), ["shop/c (in-band, dry-run)"]);
    assert!(r.matching(&[]).is_empty());
}

/// A report with one WPA per common state.
fn fleet() -> Report {
    report(vec![
        line(&wpa("api", json!({}), Some(3600)), &inputs("api", 4, Ok(300), &[])),
        line(
            &wpa("cart", json!({"upscaleForbiddenWindowSeconds": 60}), Some(20)),
            &inputs("cart", 4, Ok(300), &[]),
        ),
        line(&wpa("front", json!({}), Some(3600)), &inputs("front", 4, Ok(75), &[])),
        line(&wpa("jobs", json!({}), Some(3600)), &inputs("jobs", 3, Err("503 Service Unavailable"), &[])),
        line(
            &wpa("search", json!({"maxReplicas": 4, "dryRun": true}), Some(3600)),
            &inputs("search", 4, Ok(300), &["shop/search-hpa"]),
        ),
    ])
}

#[test]
fn the_table_is_one_aligned_line_per_wpa() {
    assert_eq!(
        fleet().render(Output::Table, false),
        "\
NAME     TARGET              REPLICAS   STATE                     VALUE (LOW..HIGH)   NEXT SCALE
api      Deployment/api      4 -> 6     scaling                   qps 300 (50..100)   now
cart     Deployment/cart     4 -> 6     window                    qps 300 (50..100)   in 40 s
front    Deployment/front    4          in-band                   qps 75 (50..100)    -
jobs     Deployment/jobs     3          failing                   qps failed          -
search   Deployment/search   4          at-max+dry-run+conflict   qps 300 (50..100)   -
"
    );
}

/// Three WPAs in three other states: below its low watermark in dry-run, a fallback scaling now, and a
/// target that cannot be read (with a conflicting HPA).
fn another_fleet() -> Report {
    let mut api = wpa("api", json!({"downscaleDelayBelowWatermarkSeconds": 120, "dryRun": true}), Some(3600));
    with_condition(&mut api, "BelowLowWatermark", "True", 30);
    let mut jobs = with_fallback(wpa("jobs", json!({}), Some(3600)), "8", "10m");
    with_condition(&mut jobs, "Fallback", "Unknown", 660);
    let mut orphan = inputs("orphan", 2, Ok(75), &["shop/orphan-hpa"]);
    orphan.target =
        Err(TargetError::new(TargetErrorKind::ScaleUnavailable, "deployments.apps \"orphan\" not found"));
    report(vec![
        line(&api, &inputs("api", 4, Ok(20), &[])),
        line(&jobs, &inputs("jobs", 4, Err("503 Service Unavailable"), &[])),
        line(&wpa("orphan", json!({}), Some(3600)), &orphan),
    ])
}

#[test]
fn the_json_is_the_documented_report_in_full() {
    let v: serde_json::Value =
        serde_json::from_str(&another_fleet().render(Output::Json, false)).expect("the output is JSON");
    let qps = |app: &str, value: serde_json::Value, position: &str| {
        json!({"name": "qps", "displayName": format!("qps{{map[app:{app}]}}"), "value": value,
            "lowWatermark": 50.0, "highWatermark": 100.0, "position": position})
    };
    assert_eq!(
        v,
        json!({
            "schemaVersion": 1,
            "generatedAt": "2026-06-01T12:00:00Z",
            "scope": "namespace shop",
            "items": [
                {
                    "namespace": "shop", "name": "api", "target": "Deployment/api",
                    "state": "below", "flags": ["dry-run"],
                    "detail": "waiting: downscale delay (below the band), 1 min 30 s left, then down 4 -> 3",
                    "reason": "Will not scale: value has not been out of bounds for long enough (below the low watermark for 90s more)",
                    "replicas": {"current": 4, "desired": 3},
                    "metrics": [qps("api", json!(20.0), "below")],
                    "nextScale": "2026-06-01T12:01:30Z"
                },
                {
                    "namespace": "shop", "name": "jobs", "target": "Deployment/jobs",
                    "state": "fallback", "flags": [],
                    "detail": "fallback: scaling up 4 -> 6 (every metric has failed for longer than fallback-after: at least 8)",
                    "reason": "fallback: every metric has failed for longer than fallback-after; fallback-replicas is 8",
                    "replicas": {"current": 4, "desired": 6},
                    "metrics": [qps("jobs", serde_json::Value::Null, "failed")],
                    "nextScale": "2026-06-01T12:00:00Z"
                },
                {
                    "namespace": "shop", "name": "orphan", "target": "Deployment/orphan",
                    "state": "blocked", "flags": ["conflict"],
                    "detail": "cannot scale: deployments.apps \"orphan\" not found",
                    "reason": "deployments.apps \"orphan\" not found",
                    "replicas": null,
                    "metrics": [],
                    "nextScale": null
                }
            ]
        })
    );
}

#[test]
fn no_wpa_says_where_it_looked() {
    assert_eq!(
        report(Vec::new()).render(Output::Table, false),
        "No WatermarkPodAutoscaler in namespace shop.\n"
    );
}
