//! One pass from the calculator's results on (docs/semantics.md §6.3 steps 8–16): the forced corrections and
//! their order, what a failed computation keeps, the reasons, the conditions and gauges the pass sets, and the
//! future `lastScaleTime` threshold (our decision 10).

use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::{
    api::{ExternalMetricStatus, MetricStatus, quantity::Quantity},
    engine::{
        calc::MetricResult,
        conditions::get_condition,
        decision::{Sample, Series},
        fixtures, validation,
    },
};

fn now() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().expect("a timestamp")
}

fn ago(seconds: i64) -> Timestamp {
    now() - SignedDuration::from_secs(seconds)
}

/// A defaulted WPA `prod/web` on Deployment `web`: 2..=10 replicas, one External metric `qps` (50..100).
fn wpa(status: WatermarkPodAutoscalerStatus) -> WatermarkPodAutoscaler {
    let spec = fixtures::external_spec("web", 2, serde_json::json!({}));
    let mut w = fixtures::wpa("prod", "web", validation::with_defaults(&spec));
    w.status = Some(status);
    w
}

fn scaled_before(seconds: i64) -> WatermarkPodAutoscalerStatus {
    WatermarkPodAutoscalerStatus { last_scale_time: Some(Time(ago(seconds))), ..Default::default() }
}

fn scale(spec_replicas: i32, status_replicas: i32) -> ScaleInfo {
    fixtures::scale("prod", "web", spec_replicas, status_replicas)
}

fn metric(name: &str, replicas: i32, above: bool, below: bool) -> MetricOutcome {
    MetricOutcome {
        kind: MetricKind::External,
        name: name.into(),
        display_name: format!("{name}{{map[app:web]}}"),
        high_milli: 100_000,
        low_milli: 50_000,
        result: Some(Ok(MetricResult {
            replica_count: replicas,
            utilization: 75_000,
            usage: 75_000.0,
            timestamp: None,
            ready_replicas: replicas.max(1),
            is_above: above,
            is_below: below,
            details: String::new(),
            converge: None,
            band: None,
            overflowed: false,
        })),
        index: 0,
    }
}

/// A metric within its band proposing the given count.
fn within(replicas: i32) -> MetricOutcome {
    metric("qps", replicas, false, false)
}

fn pass<'a>(w: &'a WatermarkPodAutoscaler, target: ScaleInfo, outcomes: Vec<MetricOutcome>) -> Decision<'a> {
    let mut d = Decision::new(&w.spec, w.status.clone().unwrap_or_default(), now());
    run(&mut d, w, &w.spec, &target, outcomes, None, now());
    d
}

fn condition<'a>(d: &'a Decision<'_>, type_: &str) -> (&'a str, &'a str) {
    let c = get_condition(d.status(), type_).unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.as_str(), c.reason.as_deref().unwrap_or(""))
}

fn gauge(d: &Decision<'_>, series: Series, label: Option<(&str, &str)>) -> Option<f64> {
    let matches = |s: &&Sample| s.series == series && s.label == label;
    d.draft.gauges.iter().rev().find(matches).map(|s| s.value)
}

// --- Forced corrections (§6.3 step 13) ---

#[test]
fn the_target_at_zero_turns_scaling_off_whatever_the_metrics_propose() {
    let w = wpa(WatermarkPodAutoscalerStatus::default());
    let d = pass(&w, scale(0, 0), vec![metric("qps", 6, true, false)]);
    assert_eq!(d.forced, Some(Forced::TargetAtZero));
    assert_eq!((d.desired, d.rescale, d.scale), (0, false, None));
    assert_eq!(condition(&d, "ScalingActive"), ("False", "ScalingDisabled"));
}

#[test]
fn below_min_is_corrected_before_a_target_without_running_replicas() {
    // Step 13's order: 13.3 (below min) comes before 13.4 (status replicas at 0).
    let w = wpa(WatermarkPodAutoscalerStatus::default());
    let d = pass(&w, scale(1, 0), vec![within(1)]);
    assert_eq!(d.forced, Some(Forced::BelowMin));
    assert_eq!(d.scale, Some(ScaleIntent { from: 1, to: 2 }));
}

#[test]
fn a_target_without_running_replicas_is_set_to_one_even_inside_a_forbidden_window() {
    // Step 13.4: desired = 1 (not minReplicas), ignoring the windows; the next pass corrects it up to min.
    let w = wpa(scaled_before(1));
    let d = pass(&w, scale(3, 0), vec![within(3)]);
    assert_eq!(d.forced, Some(Forced::NoReplicas));
    assert_eq!(d.scale, Some(ScaleIntent { from: 3, to: 1 }));
    assert_eq!(d.reason, "Current number of replicas must be greater than 0");
}

#[test]
fn a_forced_correction_keeps_the_previous_metric_statuses() {
    // §6.14: during forced corrections the previous status's entries are kept.
    let previous = MetricStatus {
        type_: "External".into(),
        external: Some(ExternalMetricStatus {
            metric_name: "qps".into(),
            metric_selector: None,
            current_value: Quantity::from_milli(42_000),
            current_average_value: None,
        }),
        resource: None,
    };
    let w = wpa(WatermarkPodAutoscalerStatus { current_metrics: vec![previous.clone()], ..scaled_before(1) });
    let d = pass(&w, scale(12, 12), vec![within(12)]);
    assert_eq!(d.forced, Some(Forced::AboveMax));
    assert_eq!(d.scale, Some(ScaleIntent { from: 12, to: 10 }));
    assert_eq!(d.status().current_metrics, [previous]);
}

// --- A failed computation (§6.3 step 8, §6.13) ---

#[test]
fn a_failed_computation_keeps_desired_replicas_and_the_watermark_conditions() {
    // desiredReplicas unchanged, currentReplicas refreshed, Above/Below kept (upstream #286), no scale.
    let mut status = scaled_before(1_000);
    status.desired_replicas = 7;
    set_condition(&mut status, ABOVE_HIGH_WATERMARK, true, "r", "m", ago(100));
    let w = wpa(status);
    let failing = MetricOutcome { result: Some(Err("no metrics returned".into())), ..within(0) };
    let d = pass(&w, scale(6, 5), vec![failing]);
    assert_eq!((d.desired, d.rescale, d.scale), (7, false, None));
    assert_eq!((d.status().desired_replicas, d.status().current_replicas), (7, 5));
    let above = get_condition(d.status(), ABOVE_HIGH_WATERMARK).expect("kept");
    assert_eq!(
        (above.status.as_str(), above.last_transition_time.as_ref().map(|t| t.0)),
        ("True", Some(ago(100)))
    );
    assert!(matches!(d.combined, Some(Err(_))));
}

// --- Conditions and reasons ---

#[test]
fn the_watermark_conditions_are_the_or_of_all_metrics() {
    // §6.7: one metric above and another below set both conditions.
    let w = wpa(scaled_before(1_000));
    let d = pass(&w, scale(5, 5), vec![metric("qps", 8, true, false), metric("lag", 3, false, true)]);
    assert_eq!(condition(&d, "AboveHighWatermark").0, "True");
    assert_eq!(condition(&d, "BelowLowWatermark").0, "True");
}

#[test]
fn an_upscale_is_explained_by_the_winning_metric() {
    let w = wpa(scaled_before(1_000));
    let d = pass(&w, scale(5, 5), vec![metric("qps", 7, true, false)]);
    assert_eq!(d.scale, Some(ScaleIntent { from: 5, to: 7 }));
    assert_eq!(d.reason, "qps{map[app:web]} above target");
}

#[test]
fn a_downscale_is_explained_by_all_metrics() {
    let w = wpa(scaled_before(1_000));
    let d = pass(&w, scale(5, 5), vec![metric("qps", 4, false, true)]);
    assert_eq!(d.scale, Some(ScaleIntent { from: 5, to: 4 }));
    assert_eq!(d.reason, "All metrics below target");
}

#[test]
fn a_stable_pass_that_changes_the_count_is_explained_as_convergence() {
    // §6.3 step 11.
    let w = wpa(scaled_before(1_000));
    let d = pass(&w, scale(5, 5), vec![within(4)]);
    assert_eq!(d.scale, Some(ScaleIntent { from: 5, to: 4 }));
    assert_eq!(d.reason, "Metric within watermarks, attempting to scale to converge towards watermark");
}

#[test]
fn the_first_scale_ever_may_write_the_same_count() {
    // §6.11: without lastScaleTime the gate allows before comparing counts; the scale records the first event.
    let w = wpa(WatermarkPodAutoscalerStatus::default());
    let d = pass(&w, scale(5, 5), vec![within(5)]);
    assert!(d.rescale);
    assert_eq!(d.scale, Some(ScaleIntent { from: 5, to: 5 }));
    assert_eq!(d.reason, "No timestamp for the lastScale event");
}

#[test]
fn scaling_limited_is_true_exactly_when_normalization_changed_the_proposal() {
    // §3 / §6.10: 50 % of 5 allows 7; a proposal of 9 is limited, one of 6 is not.
    let w = wpa(scaled_before(1_000));
    let limited = pass(&w, scale(5, 5), vec![metric("qps", 9, true, false)]);
    assert_eq!(condition(&limited, "ScalingLimited"), ("True", "ScaleUpLimit"));
    let free = pass(&w, scale(5, 5), vec![metric("qps", 6, true, false)]);
    assert_eq!(condition(&free, "ScalingLimited"), ("False", "DesiredWithinRange"));
}

// --- Gauges ---

#[test]
fn each_restriction_gauge_is_one_exactly_while_its_restriction_holds() {
    // Our decision 3 (upstream leaves upscale_capping at 1 and never sets within_bounds).
    let w = wpa(scaled_before(1_000));
    let reason = |r| Some(("reason", r));
    let capped = pass(&w, scale(5, 5), vec![metric("qps", 9, true, false)]);
    assert_eq!(gauge(&capped, Series::RestrictedScaling, reason("upscale_capping")), Some(1.0));
    assert_eq!(gauge(&capped, Series::RestrictedScaling, reason("downscale_capping")), Some(0.0));
    assert_eq!(gauge(&capped, Series::RestrictedScaling, reason("within_bounds")), Some(0.0));
    let stable = pass(&w, scale(5, 5), vec![within(5)]);
    assert_eq!(gauge(&stable, Series::RestrictedScaling, reason("upscale_capping")), Some(0.0));
    assert_eq!(gauge(&stable, Series::RestrictedScaling, reason("within_bounds")), Some(1.0));
}

#[test]
fn the_effective_gauge_is_the_spec_count_on_a_hold_and_current_replicas_is_the_status_count() {
    // §6.3 steps 15–16 (no scale: desired = spec replicas) and our decision 12 (`wpa_current_replicas` is the
    // target's status.replicas, here one surge pod above spec).
    let w = wpa(scaled_before(1_000));
    let d = pass(&w, scale(5, 6), vec![within(5)]);
    assert!(!d.rescale);
    assert_eq!(gauge(&d, Series::ReplicasScalingEffective, None), Some(5.0));
    assert_eq!(gauge(&d, Series::CurrentReplicas, None), Some(6.0));
}

// --- A lastScaleTime in the future (our decision 10) ---

#[test]
fn a_last_scale_time_up_to_sixty_seconds_ahead_is_kept_and_beyond_is_reset_to_now() {
    // "a lastScaleTime more than 60 s ahead is reset to now with a FutureLastScaleTime Warning event".
    let at_limit = now() + SignedDuration::from_secs(60);
    let w = wpa(WatermarkPodAutoscalerStatus { last_scale_time: Some(Time(at_limit)), ..Default::default() });
    let kept = pass(&w, scale(5, 5), vec![within(5)]);
    assert_eq!(kept.status().last_scale_time.as_ref().map(|t| t.0), Some(at_limit));
    assert!(kept.draft.events.iter().all(|e| e.reason != "FutureLastScaleTime"));

    let beyond = at_limit + SignedDuration::from_millis(1);
    let w = wpa(WatermarkPodAutoscalerStatus { last_scale_time: Some(Time(beyond)), ..Default::default() });
    let reset = pass(&w, scale(5, 5), vec![within(5)]);
    assert_eq!(reset.status().last_scale_time.as_ref().map(|t| t.0), Some(now()));
    let warnings: Vec<_> = reset.draft.events.iter().filter(|e| e.reason == "FutureLastScaleTime").collect();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].warning);
}
