//! `reconcileWPA` from a successful scale GET on: the metrics' results → their combination → the limits
//! (`convertDesiredReplicasWithRules`) → the gate (`shouldScale`) → the forced corrections → the scale (or
//! the hold), with the conditions, events and gauges upstream emits at each step.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::{
    calc::ScaleInfo,
    conditions::{self, *},
    decision::{Combined, Decision, Forced, MetricKind, MetricOutcome, ScaleIntent, Series},
    fallback::{self, Fallback, FallbackState},
    gate::{self, Gate, GateInput, WatermarkCondition},
    limits::{self, Bounds, Limit, Normalized},
    metrics::{combine, valid_metric_message},
};
use crate::api::{WatermarkPodAutoscaler, WatermarkPodAutoscalerSpec, WatermarkPodAutoscalerStatus};

const GAUGES_PER_PASS: usize = 13;
const GAUGES_PER_METRIC: usize = 4;

/// A WPA's fallback, for one pass.
pub(super) struct FallbackInput<'f> {
    pub(super) fallback: &'f Fallback,
    /// The pods were listed and pass the readiness gate: a failure of every metric is theirs alone.
    pub(super) pods_fine: bool,
}

/// One pass over computed metric results, with `spec` the effective spec.
pub(super) fn run(
    d: &mut Decision<'_>,
    wpa: &WatermarkPodAutoscaler,
    spec: &WatermarkPodAutoscalerSpec,
    scale: &ScaleInfo,
    outcomes: Vec<MetricOutcome>,
    fallback: Option<FallbackInput<'_>>,
    now: Timestamp,
) {
    // A full pass writes about a dozen gauges plus four per metric: one allocation instead of four.
    d.reserve_gauges(GAUGES_PER_PASS + GAUGES_PER_METRIC * outcomes.len());
    // First, so that upstream's conditions set after it still decide `lastConditionType`.
    let fallback = fallback.map(|f| {
        let every_metric_failed =
            !outcomes.is_empty() && outcomes.iter().all(|o| matches!(o.result, Some(Err(_))));
        let state = fallback::assess(d, f.fallback, every_metric_failed && f.pods_fine, now);
        d.fallback = Some(state);
        state
    });
    check_last_scale_time(d, now);
    record_spec(d, spec);
    report_metrics(d, &outcomes);
    let combined = combine(spec, &outcomes);
    d.metrics = outcomes;
    let (combined, metric_statuses) = match combined {
        Ok(c) => c,
        Err(e) => {
            d.status_mut().current_replicas = scale.status_replicas;
            d.event(true, "FailedComputeMetricsReplicas", e.message.clone(), Some(SCALING_ACTIVE));
            d.reason = e.message.clone();
            d.desired = d.status().desired_replicas;
            d.combined = Some(Err(e));
            if let Some(FallbackState::Active { replicas, .. }) = fallback {
                fall_back(d, wpa, spec, scale, replicas, now);
            }
            return;
        }
    };
    let stable = !combined.is_above && !combined.is_below;
    let current = scale.spec_replicas;
    let (normalized, mut reason) = limit(d, spec, &combined, current, stable);
    let gate = gate(d, spec, current, normalized.replicas, stable, now);
    let mut desired = normalized.replicas;
    let mut rescale = gate.allowed;
    let forced = force(d, spec, scale, &mut desired, &mut rescale, &mut reason);
    let metric_statuses = if matches!(forced, Some(Forced::AboveMax | Forced::BelowMin | Forced::NoReplicas))
    {
        rescale = true;
        wpa.status.as_ref().map(|s| s.current_metrics.clone()).unwrap_or_default()
    } else {
        metric_statuses
    };

    let status = d.status_mut();
    status.current_replicas = scale.status_replicas;
    status.current_metrics = metric_statuses;
    if rescale {
        decide_scale(d, spec, current, desired, &mut reason, now);
    } else {
        desired = hold(d, wpa, spec, current, desired);
        reason = if forced.is_none() {
            gate.blocked.as_ref().map(|b| b.describe()).unwrap_or_default()
        } else {
            text::SCALING_DISABLED_MSG.to_string()
        };
    }
    d.gauge(Series::ReplicasScalingEffective, None, f64::from(desired));
    d.gauge(Series::CurrentReplicas, None, f64::from(scale.status_replicas));
    d.desired = desired;
    d.rescale = rescale;
    d.reason = reason;
    d.forced = forced;
    d.gate = Some(gate);
    d.normalized = Some(normalized);
    d.combined = Some(Ok(combined));
}

/// The fallback's pass: every metric has failed for longer than `fallback-after`, so the proposal is
/// `max(current, replicas)`, through maxReplicas, the scale-up limit and the forbidden windows (not the
/// delays above a watermark: no value is above one, and `fallback-after` was the wait). Never down.
/// The fallback's next count from `current` toward `replicas` (its `fallback-replicas`): up only, within
/// maxReplicas and the scale-up limit; with the limits' verdict.
pub(crate) fn fallback_step(
    spec: &WatermarkPodAutoscalerSpec,
    current: i32,
    replicas: i32,
) -> (i32, limits::Normalized) {
    let bounds = Bounds {
        min: spec.min_replicas.unwrap_or(0),
        max: spec.max_replicas.unwrap_or(0),
        up_factor: spec.scale_up_limit_factor.as_ref(),
        down_factor: spec.scale_down_limit_factor.as_ref(),
    };
    let normalized = limits::normalize(&bounds, current, replicas.max(current), 0);
    (normalized.replicas.max(current), normalized)
}

fn fall_back(
    d: &mut Decision<'_>,
    wpa: &WatermarkPodAutoscaler,
    spec: &WatermarkPodAutoscalerSpec,
    scale: &ScaleInfo,
    replicas: i32,
    now: Timestamp,
) {
    let current = scale.spec_replicas;
    if current == 0 {
        // Scaling is off for a target at zero (upstream): a fallback does not turn it back on.
        return;
    }
    let proposal = replicas.max(current);
    let (desired, normalized) = fallback_step(spec, current, replicas);
    d.set(SCALING_LIMITED, desired != proposal, normalized.limit.reason(), normalized.limit.message());
    let gate = gate::should_scale(&GateInput {
        current,
        desired,
        stable: false,
        last_scale_time: d.status().last_scale_time.as_ref().map(|t| t.0),
        downscale_forbidden_window_seconds: spec.downscale_forbidden_window_seconds.unwrap_or(0),
        upscale_forbidden_window_seconds: spec.upscale_forbidden_window_seconds.unwrap_or(0),
        upscale_delay_above_watermark_seconds: 0,
        downscale_delay_below_watermark_seconds: 0,
        above: None,
        below: None,
        now,
    });
    if let Some((r, m)) = gate.backoff_condition {
        d.set(ABLE_TO_SCALE, false, r, m);
    }
    let mut reason = format!(
        "fallback: every metric has failed for longer than fallback-after; fallback-replicas is {replicas}"
    );
    // Unlike upstream's first pass, a fallback never "scales" to the count the target has.
    if gate.allowed && desired != current {
        decide_scale(d, spec, current, desired, &mut reason, now);
        d.desired = desired;
        d.rescale = true;
    } else {
        d.desired = hold(d, wpa, spec, current, desired);
        reason = match gate.blocked.as_ref().filter(|_| desired != current) {
            Some(gate::Blocked::Unchanged) | None => format!(
                "fallback: the target has {current} replicas, at least fallback-replicas ({replicas}); a fallback never scales down"
            ),
            Some(blocked) => blocked.describe(),
        };
    }
    d.gauge(Series::ReplicasScalingEffective, None, f64::from(d.desired));
    d.reason = reason;
    d.gate = Some(gate);
    d.normalized = Some(normalized);
}

/// How far ahead of this controller's clock a `lastScaleTime` may be before it is taken for a clock that ran
/// ahead (a leader on a node whose clock was fast) rather than for skew between nodes.
pub(crate) const MAX_FUTURE_LAST_SCALE: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// Difference "future lastScaleTime": upstream counts the windows from a `lastScaleTime` in the future, so a
/// WPA written by a leader whose clock ran ahead stays frozen, silently, until that time (for a year in 2099,
/// for years). More than [`MAX_FUTURE_LAST_SCALE`] ahead, it is replaced by now (written with the status),
/// reported once, and the windows count from now: the safe reading of "a scale happened recently".
fn check_last_scale_time(d: &mut Decision<'_>, now: Timestamp) {
    let Some(last) = d.status().last_scale_time.as_ref().map(|t| t.0) else { return };
    let ahead = last.duration_since(now);
    if ahead <= MAX_FUTURE_LAST_SCALE {
        return;
    }
    d.status_mut().last_scale_time = Some(Time(now));
    let msg = format!(
        "status.lastScaleTime {last} is {}s ahead of this controller's clock (was it written by a replica whose clock runs ahead?): it was reset to {now}, and the forbidden windows count from now",
        ahead.as_secs()
    );
    d.event(true, text::FUTURE_LAST_SCALE_TIME, msg, None);
}

/// The series and conditions that only depend on the spec.
fn record_spec(d: &mut Decision<'_>, spec: &WatermarkPodAutoscalerSpec) {
    d.gauge(Series::LabelsInfo, None, 1.0);
    let dry_run = spec.dry_run.unwrap_or(false);
    if dry_run {
        d.set(DRY_RUN, true, text::DRY_RUN_ENABLED, text::DRY_RUN_ENABLED_MSG);
    } else {
        d.set(DRY_RUN, false, text::DRY_RUN_DISABLED, text::DRY_RUN_DISABLED_MSG);
    }
    d.gauge(Series::DryRun, None, if dry_run { 1.0 } else { 0.0 });
    d.set(ABLE_TO_SCALE, true, text::SUCCEEDED_GET_SCALE, text::SUCCEEDED_GET_SCALE_MSG);
    d.gauge(Series::MinReplicas, None, f64::from(spec.min_replicas.unwrap_or(0)));
    d.gauge(Series::MaxReplicas, None, f64::from(spec.max_replicas.unwrap_or(0)));
}

/// Per-metric gauges and conditions, in order, up to the first failure (which aborts the pass).
fn report_metrics(d: &mut Decision<'_>, outcomes: &[MetricOutcome]) {
    for (i, o) in outcomes.iter().enumerate() {
        let Some(result) = &o.result else { continue };
        match result {
            Ok(r) => {
                if let Some(c) = r.converge {
                    d.set(CONVERGE_TO_WATERMARK, c.status, c.reason, c.message);
                }
                d.metric_gauge(Series::Value, i, r.usage);
                d.metric_gauge(Series::LowWatermark, i, o.low_milli as f64);
                d.metric_gauge(Series::HighWatermark, i, o.high_milli as f64);
                d.metric_gauge(Series::ReplicasScalingProposal, i, f64::from(r.replica_count));
            }
            Err(cause) => {
                let reason = if o.kind == MetricKind::External {
                    text::FAILED_GET_EXTERNAL_METRIC
                } else {
                    text::FAILED_GET_RESOURCE_METRIC
                };
                d.remove(Series::RestrictedScaling, None);
                d.remove(Series::Value, Some(i));
                d.remove(Series::ReplicasScalingProposal, Some(i));
                d.event(true, reason, cause.clone(), Some(SCALING_ACTIVE));
                let msg = format!("the WPA was unable to compute the replica count: {cause}");
                d.set(SCALING_ACTIVE, false, reason, &msg);
                break;
            }
        }
    }
}

/// The watermark conditions, then the proposal normalized by the bounds and rate limits; returns it with
/// the reason a scale would give.
fn limit(
    d: &mut Decision<'_>,
    spec: &WatermarkPodAutoscalerSpec,
    combined: &Combined,
    current: i32,
    stable: bool,
) -> (Normalized, String) {
    d.set(ABOVE_HIGH_WATERMARK, combined.is_above, text::ABOVE_REASON, text::ABOVE_MSG);
    d.set(BELOW_LOW_WATERMARK, combined.is_below, text::BELOW_REASON, text::BELOW_MSG);
    d.set(
        SCALING_ACTIVE,
        true,
        text::VALID_METRIC_FOUND,
        &valid_metric_message(&combined.display_name, &combined.details),
    );
    let proposal = combined.replicas.max(0);
    let mut reason = match proposal.cmp(&current) {
        std::cmp::Ordering::Greater => format!("{} above target", combined.display_name),
        std::cmp::Ordering::Less => "All metrics below target".to_string(),
        std::cmp::Ordering::Equal => String::new(),
    };
    let bounds = Bounds {
        min: spec.min_replicas.unwrap_or(0),
        max: spec.max_replicas.unwrap_or(0),
        up_factor: spec.scale_up_limit_factor.as_ref(),
        down_factor: spec.scale_down_limit_factor.as_ref(),
    };
    let normalized = limits::normalize(&bounds, current, proposal, combined.ready_replicas);
    d.set(
        SCALING_LIMITED,
        normalized.replicas != proposal,
        normalized.limit.reason(),
        normalized.limit.message(),
    );
    // Difference "restriction gauges": each restriction gauge is 1 exactly while it holds.
    let holds = |l: Limit| if normalized.clamped && normalized.limit == l { 1.0 } else { 0.0 };
    let restricted = Series::RestrictedScaling;
    d.gauge(restricted, Some(("reason", "downscale_capping")), holds(Limit::ScaleDownLimit));
    d.gauge(restricted, Some(("reason", "upscale_capping")), holds(Limit::ScaleUpLimit));
    // within_bounds: scaling is held back because every value is inside its band (upstream only ever
    // writes 0 here, from its calculator).
    d.gauge(restricted, Some(("reason", "within_bounds")), if stable { 1.0 } else { 0.0 });
    if stable && normalized.replicas != current {
        reason = "Metric within watermarks, attempting to scale to converge towards watermark".to_string();
    }
    (normalized, reason)
}

/// The forbidden windows and the delays above/below the watermarks (`shouldScale`).
fn gate(
    d: &mut Decision<'_>,
    spec: &WatermarkPodAutoscalerSpec,
    current: i32,
    desired: i32,
    stable: bool,
    now: Timestamp,
) -> Gate {
    let status = d.status();
    let gate = gate::should_scale(&GateInput {
        current,
        desired,
        stable,
        last_scale_time: status.last_scale_time.as_ref().map(|t| t.0),
        downscale_forbidden_window_seconds: spec.downscale_forbidden_window_seconds.unwrap_or(0),
        upscale_forbidden_window_seconds: spec.upscale_forbidden_window_seconds.unwrap_or(0),
        upscale_delay_above_watermark_seconds: spec.upscale_delay_above_watermark_seconds.unwrap_or(0),
        downscale_delay_below_watermark_seconds: spec.downscale_delay_below_watermark_seconds.unwrap_or(0),
        above: watermark_condition(status, ABOVE_HIGH_WATERMARK),
        below: watermark_condition(status, BELOW_LOW_WATERMARK),
        now,
    });
    if let Some((r, m)) = gate.backoff_condition {
        d.set(ABLE_TO_SCALE, false, r, m);
    }
    d.gauge(Series::TransitionCountdown, Some(("transition", "downscale")), gate.downscale_countdown);
    d.gauge(Series::TransitionCountdown, Some(("transition", "upscale")), gate.upscale_countdown);
    gate
}

fn watermark_condition(status: &WatermarkPodAutoscalerStatus, type_: &str) -> Option<WatermarkCondition> {
    conditions::get_condition(status, type_).map(|c| WatermarkCondition {
        is_true: c.status == "True",
        last_transition: c.last_transition_time.as_ref().map(|t| t.0),
    })
}

/// Forced corrections: they ignore windows, delays and rate limits.
fn force(
    d: &mut Decision<'_>,
    spec: &WatermarkPodAutoscalerSpec,
    scale: &ScaleInfo,
    desired: &mut i32,
    rescale: &mut bool,
    reason: &mut String,
) -> Option<Forced> {
    let current = scale.spec_replicas;
    let max_replicas = spec.max_replicas.unwrap_or(0);
    if scale.spec_replicas == 0 {
        *desired = 0;
        *rescale = false;
        d.set(SCALING_ACTIVE, false, text::SCALING_DISABLED, text::SCALING_DISABLED_MSG);
        Some(Forced::TargetAtZero)
    } else if current > max_replicas {
        *desired = max_replicas;
        *reason = "Current number of replicas above Spec.MaxReplicas".into();
        Some(Forced::AboveMax)
    } else if spec.min_replicas.is_some_and(|min| current < min) {
        *desired = spec.min_replicas.unwrap_or(1);
        *reason = "Current number of replicas below Spec.MinReplicas".into();
        Some(Forced::BelowMin)
    } else if scale.status_replicas == 0 {
        *desired = 1;
        *reason = "Current number of replicas must be greater than 0".into();
        Some(Forced::NoReplicas)
    } else {
        None
    }
}

/// A scale: recorded at once in dry-run, otherwise left as an intent for [`Decision::settle`].
fn decide_scale(
    d: &mut Decision<'_>,
    spec: &WatermarkPodAutoscalerSpec,
    current: i32,
    desired: i32,
    reason: &mut String,
    now: Timestamp,
) {
    if reason.is_empty() {
        // Upstream allows the first scale before comparing counts, so it can "scale" to the same count.
        *reason = text::FIRST_SCALE.into();
    }
    d.set(ABLE_TO_SCALE, true, text::READY_FOR_SCALE, text::READY_FOR_SCALE_MSG);
    if spec.dry_run.unwrap_or(false) {
        let status = d.status_mut();
        status.desired_replicas = desired;
        status.last_scale_time = Some(Time(now));
        status.scaling_events_count += 1;
        let msg = format!("New size: {desired}; reason: {reason}; dry run: the target was not changed");
        d.event(false, "DryRunScaling", msg, None);
    } else {
        d.scale = Some(ScaleIntent { from: current, to: desired });
    }
}

/// No scale: the count stays; returns it.
fn hold(
    d: &mut Decision<'_>,
    wpa: &WatermarkPodAutoscaler,
    spec: &WatermarkPodAutoscalerSpec,
    current: i32,
    desired: i32,
) -> i32 {
    if is_true(d.status(), SCALING_ACTIVE) {
        // Difference "NotScaling condition": a condition instead of a NotScaling event every period.
        let target = &spec.scale_target_ref;
        let msg = format!(
            "the WPA was able to successfully calculate a replica count and decided not to scale {}/{}/{} to {desired} (last scale time was {} )",
            target.kind,
            wpa.namespace().unwrap_or_default(),
            target.name,
            go_time(d.status().last_scale_time.as_ref())
        );
        d.set(SCALING_ACTIVE, true, text::NOT_SCALING, &msg);
    }
    d.status_mut().desired_replicas = current;
    current
}

/// Go's `%v` of a `*metav1.Time`.
fn go_time(t: Option<&Time>) -> String {
    match t {
        None => "<nil>".into(),
        Some(t) => {
            jiff::fmt::strtime::format("%Y-%m-%d %H:%M:%S +0000 UTC", t.0).unwrap_or_else(|_| t.0.to_string())
        }
    }
}

#[cfg(test)]
#[path = "pass_tests.rs"]
mod tests;
