//! Settling a decision once the `/scale` write is known, and sealing the pass (`finish`): the counters, what
//! a result without an intent does, the transition filter on events, the kept transition times,
//! observedGeneration (our decision 6), the condition gauges; and the small vocabulary rules (requeues,
//! monitor states).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::api::Condition;

fn now() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().expect("a timestamp")
}

fn ago(seconds: i64) -> Timestamp {
    now() - SignedDuration::from_secs(seconds)
}

fn wpa(status: WatermarkPodAutoscalerStatus) -> WatermarkPodAutoscaler {
    let mut w = WatermarkPodAutoscaler::new("web", WatermarkPodAutoscalerSpec::default());
    w.metadata.namespace = Some("prod".into());
    w.status = Some(status);
    w
}

/// A decision over `w`'s stored status that intends `intent`.
fn deciding<'a>(w: &'a WatermarkPodAutoscaler, intent: Option<ScaleIntent>) -> Decision<'a> {
    let mut d = Decision::new(&w.spec, w.status.clone().unwrap_or_default(), now());
    d.scale = intent;
    d.reason = "qps{map[app:web]} above target".into();
    d
}

fn stored_condition(type_: &str, status: &str, reason: &str, message: &str, at: Timestamp) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        last_transition_time: Some(Time(at)),
        reason: Some(reason.into()),
        message: Some(message.into()),
    }
}

// --- settle ---

#[test]
fn a_written_downscale_counts_the_replicas_removed() {
    // §6.3 step 14: downscale_replicas_total += spec − desired.
    let w = wpa(WatermarkPodAutoscalerStatus::default());
    let out = deciding(&w, Some(ScaleIntent { from: 6, to: 4 })).settle(&w, ScaleResult::Written);
    assert_eq!(out.counters, [Increment { counter: Counter::DownscaleReplicas, value: 2 }]);
    assert_eq!(out.scaled_to, Some(4));
    assert_eq!(out.status.desired_replicas, 4);
}

#[test]
fn a_written_scale_to_the_same_count_is_recorded_but_counts_no_replica() {
    // The first scale ever may "scale" to the same count (§6.11): the event and lastScaleTime are recorded,
    // neither counter moves.
    let w = wpa(WatermarkPodAutoscalerStatus::default());
    let out = deciding(&w, Some(ScaleIntent { from: 5, to: 5 })).settle(&w, ScaleResult::Written);
    assert!(out.counters.is_empty());
    assert_eq!(out.status.scaling_events_count, 1);
    assert_eq!(out.status.last_scale_time.as_ref().map(|t| t.0), Some(now()));
    let scaling: Vec<(&str, &str)> = out.events.iter().map(|e| (e.reason, e.action)).collect();
    assert_eq!(scaling, [("Scaling", "Scale")]);
}

#[test]
fn a_result_without_an_intent_changes_nothing() {
    // No scale was decided (or dry-run recorded it already): whatever the caller reports is ignored.
    let w = wpa(WatermarkPodAutoscalerStatus { desired_replicas: 3, ..Default::default() });
    let out = deciding(&w, None).settle(&w, ScaleResult::Written);
    assert_eq!(out.scaled_to, None);
    assert_eq!(out.status.last_scale_time, None);
    assert_eq!(out.status.desired_replicas, 3);
    assert!(out.events.is_empty() && out.counters.is_empty());
}

#[test]
fn a_refused_write_is_recorded_even_when_the_status_already_says_so() {
    // A persisting failure leaves the status as stored; the failed write is still worth a status write.
    let msg = "the WPA controller was unable to update the target scale: conflict";
    let w = wpa(WatermarkPodAutoscalerStatus {
        conditions: vec![stored_condition(ABLE_TO_SCALE, "False", "FailedScale", msg, ago(30))],
        last_condition_type: Some(ABLE_TO_SCALE.into()),
        last_condition_state: Some("False".into()),
        ..Default::default()
    });
    let out =
        deciding(&w, Some(ScaleIntent { from: 4, to: 6 })).settle(&w, ScaleResult::Failed("conflict".into()));
    assert_eq!(out.status.last_scale_time, None, "a refused write did not happen");
    assert!(out.status_changed);
}

// --- finish ---

#[test]
fn observed_generation_is_written_when_the_object_has_a_generation() {
    // Our decision 6.
    let mut w = wpa(WatermarkPodAutoscalerStatus::default());
    w.metadata.generation = Some(3);
    assert_eq!(deciding(&w, None).settle(&w, ScaleResult::NotNeeded).status.observed_generation, Some(3));
    w.metadata.generation = None;
    w.status = Some(WatermarkPodAutoscalerStatus { observed_generation: Some(2), ..Default::default() });
    assert_eq!(deciding(&w, None).settle(&w, ScaleResult::NotNeeded).status.observed_generation, Some(2));
}

#[test]
fn an_event_tied_to_a_condition_is_kept_only_if_the_condition_changed() {
    // Our decision 7 / §6.15: a persisting problem does not emit an event every period; a changed message is
    // a change.
    let stored = stored_condition(SCALING_ACTIVE, "False", "FailedGetExternalMetric", "old cause", ago(60));
    let w = wpa(WatermarkPodAutoscalerStatus { conditions: vec![stored], ..Default::default() });

    let mut same = deciding(&w, None);
    same.set(SCALING_ACTIVE, false, "FailedGetExternalMetric", "old cause");
    same.event(true, "FailedGetExternalMetric", "old cause".into(), Some(SCALING_ACTIVE));
    same.event(true, "FailedComputeMetricsReplicas", "untied".into(), None);
    let out = same.settle(&w, ScaleResult::NotNeeded);
    assert_eq!(out.events.iter().map(|e| e.reason).collect::<Vec<_>>(), ["FailedComputeMetricsReplicas"]);

    let mut changed = deciding(&w, None);
    changed.set(SCALING_ACTIVE, false, "FailedGetExternalMetric", "new cause");
    changed.event(true, "FailedGetExternalMetric", "new cause".into(), Some(SCALING_ACTIVE));
    let out = changed.settle(&w, ScaleResult::NotNeeded);
    assert_eq!(out.events.iter().map(|e| e.reason).collect::<Vec<_>>(), ["FailedGetExternalMetric"]);
}

#[test]
fn a_condition_that_flips_and_flips_back_in_a_pass_keeps_its_stored_transition_time_and_place() {
    // `keep_transition_times`: the time only moves when the status written differs from the one stored; the
    // list is re-sorted afterwards (newest first, §3 rule 4), and nothing needs writing.
    let w = wpa(WatermarkPodAutoscalerStatus {
        conditions: vec![
            stored_condition(
                DRY_RUN,
                "False",
                "DryRun mode disabled",
                "Scaling changes can be applied",
                ago(50),
            ),
            stored_condition(ABLE_TO_SCALE, "False", "BackoffBoth", "both", ago(100)),
        ],
        last_condition_type: Some(ABLE_TO_SCALE.into()),
        last_condition_state: Some("False".into()),
        ..Default::default()
    });
    let mut d = deciding(&w, None);
    d.set(ABLE_TO_SCALE, true, "SucceededGetScale", "got it");
    d.set(ABLE_TO_SCALE, false, "BackoffBoth", "both");
    let out = d.settle(&w, ScaleResult::NotNeeded);
    let order: Vec<(&str, Option<Timestamp>)> = out
        .status
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.last_transition_time.as_ref().map(|t| t.0)))
        .collect();
    assert_eq!(order, [(DRY_RUN, Some(ago(50))), (ABLE_TO_SCALE, Some(ago(100)))]);
    assert!(!out.status_changed);
}

#[test]
fn condition_gauges_are_exported_only_for_the_conditions_a_wpa_has() {
    // §3 rule 6 (1 when True, 0 otherwise) for the tracked types; our decision 12: conflicting_autoscaler only
    // on WPAs that had the condition. scaling_active is always exported (§6.2 step 5).
    let w = wpa(WatermarkPodAutoscalerStatus::default());
    let mut d = deciding(&w, None);
    d.set(ABLE_TO_SCALE, true, "SucceededGetScale", "got it");
    d.set(SCALING_LIMITED, false, "DesiredWithinRange", "ok");
    let out = d.settle(&w, ScaleResult::NotNeeded);
    let exported: Vec<(Series, Option<&str>, f64)> =
        out.gauges.iter().map(|g| (g.series, g.label.map(|(_, v)| v), g.value)).collect();
    assert_eq!(
        exported,
        [
            (Series::ScalingActive, None, 0.0),
            (Series::Conditions, Some("able_to_scale"), 1.0),
            (Series::Conditions, Some("scaling_limited"), 0.0),
        ]
    );
}

// --- The vocabulary ---

#[test]
fn the_controller_result_substitutes_the_configured_period_for_the_sync_period() {
    // §6.1: 15 s steady state (the period), other delays as they are, no requeue after Done.
    let period = Duration::from_secs(30);
    assert_eq!(Action::Done.controller_result(period), ControllerResult::default());
    assert_eq!(
        Action::Requeue.controller_result(period),
        ControllerResult { requeue: true, requeue_after: Duration::ZERO }
    );
    assert_eq!(Action::RequeueAfter(SYNC_PERIOD).controller_result(period).requeue_after, period);
    let after_error = Action::RequeueAfter(Duration::from_secs(10)).controller_result(period);
    assert_eq!(after_error, ControllerResult { requeue: false, requeue_after: Duration::from_secs(10) });
}

#[test]
fn a_target_that_cannot_be_read_is_retried_after_ten_seconds_and_a_bad_reference_after_one() {
    // §6.1: RequeueAfter 10 s when the scale is not found, otherwise 1 s.
    assert_eq!(TargetError::new(TargetErrorKind::ScaleUnavailable, "x").backoff(), Duration::from_secs(10));
    assert_eq!(TargetError::new(TargetErrorKind::BadApiVersion, "x").backoff(), Duration::from_secs(1));
    assert_eq!(TargetError::new(TargetErrorKind::UnknownKind, "x").backoff(), Duration::from_secs(1));
}

#[test]
fn monitor_states_read_back_as_the_operator_wrote_them() {
    for state in ["OK", "Alert", "Warn", "No Data", "Unknown", "ok"] {
        assert_eq!(MonitorState::parse(Some(state)).as_str(), Some(state));
    }
    assert_eq!(MonitorState::parse(None), MonitorState::Unset);
    assert_eq!(MonitorState::Unset.as_str(), None);
}

#[test]
fn only_a_monitor_found_in_ok_state_allows_the_pass() {
    assert!(MonitorObservation::Found(MonitorState::Ok).allows());
    for blocked in [
        MonitorObservation::Found(MonitorState::parse(Some("ok"))),
        MonitorObservation::Found(MonitorState::Unset),
        MonitorObservation::Unavailable("timeout".into()),
        MonitorObservation::CrdMissing,
        MonitorObservation::NotRequested,
    ] {
        assert!(!blocked.allows(), "{blocked:?}");
    }
}
