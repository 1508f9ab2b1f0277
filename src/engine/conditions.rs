//! Status conditions: upstream's exact types, reasons and messages (dashboards and alerts match on them),
//! and its update rule: the transition time moves only when the status changes, and the list is kept
//! newest-transition first.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{Condition, WatermarkPodAutoscalerStatus};

pub const SCALING_ACTIVE: &str = "ScalingActive";
pub(crate) const ABLE_TO_SCALE: &str = "AbleToScale";
pub(crate) const SCALING_LIMITED: &str = "ScalingLimited";
pub(crate) const DRY_RUN: &str = "DryRun";
pub const ABOVE_HIGH_WATERMARK: &str = "AboveHighWatermark";
pub const BELOW_LOW_WATERMARK: &str = "BelowLowWatermark";
pub(crate) const CONVERGE_TO_WATERMARK: &str = "ConvergeToWatermark";
pub(crate) const SCALING_BLOCKED: &str = "ScalingBlocked";
/// Ours: another autoscaler (an HPA) scales the same target.
pub(crate) const CONFLICTING_AUTOSCALER: &str = "ConflictingAutoscaler";
/// Ours: the fallback of a WPA with `fallback-replicas` (False: a metric answers; Unknown: every metric fails
/// and the fallback waits; True: the fallback decides the count).
pub const FALLBACK: &str = "Fallback";

/// Every condition type a pass may set.
pub(crate) const TYPES: [&str; 10] = [
    SCALING_ACTIVE,
    ABLE_TO_SCALE,
    SCALING_LIMITED,
    DRY_RUN,
    ABOVE_HIGH_WATERMARK,
    BELOW_LOW_WATERMARK,
    CONVERGE_TO_WATERMARK,
    SCALING_BLOCKED,
    CONFLICTING_AUTOSCALER,
    FALLBACK,
];

const LONGEST_TYPE: usize = {
    let mut i = 0;
    let mut n = 0;
    while i < TYPES.len() {
        if TYPES[i].len() > n {
            n = TYPES[i].len();
        }
        i += 1;
    }
    n
};

/// `True` / `False` as Kubernetes writes them.
pub fn status_str(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// Reasons and messages, verbatim from upstream (except the BelowLowWatermark reason, fixed on purpose).
pub(crate) mod text {
    /// The reason of upstream's first scale, made when there is no lastScaleTime (even to the same count).
    pub(crate) const FIRST_SCALE: &str = "No timestamp for the lastScale event";
    pub(crate) const FAILED_PROCESS_WPA: &str = "FailedProcessWPA";
    pub(crate) const FAILED_PROCESS_WPA_MSG: &str = "Error happened while processing the WPA";
    pub(crate) const VALID_METRIC_FOUND: &str = "ValidMetricFound";
    pub(crate) const FAILED_GET_EXTERNAL_METRIC: &str = "FailedGetExternalMetric";
    pub(crate) const FAILED_GET_RESOURCE_METRIC: &str = "FailedGetResourceMetric";
    pub(crate) const SCALING_DISABLED: &str = "ScalingDisabled";
    pub(crate) const SCALING_DISABLED_MSG: &str =
        "scaling is disabled since the replica count of the target is zero";
    pub(crate) const NOT_SCALING: &str = "NotScaling";
    pub(crate) const FAILED_SPEC_CHECK: &str = "FailedSpecCheck";
    pub(crate) const SUCCEEDED_GET_SCALE: &str = "SucceededGetScale";
    pub(crate) const SUCCEEDED_GET_SCALE_MSG: &str =
        "the WPA controller was able to get the target's current scale";
    pub(crate) const BACKOFF_DOWNSCALE: &str = "BackoffDownscale";
    pub(crate) const BACKOFF_DOWNSCALE_MSG: &str =
        "the time since the previous scale is still within the downscale forbidden window";
    pub(crate) const BACKOFF_BOTH: &str = "BackoffBoth";
    pub(crate) const BACKOFF_BOTH_MSG: &str =
        "the time since the previous scale is still within both the downscale and upscale forbidden windows";
    pub(crate) const BACKOFF_UPSCALE: &str = "BackoffUpscale";
    pub(crate) const BACKOFF_UPSCALE_MSG: &str =
        "the time since the previous scale is still within the upscale forbidden window";
    pub(crate) const READY_FOR_SCALE: &str = "ReadyForScale";
    pub(crate) const READY_FOR_SCALE_MSG: &str =
        "the last scaling time was sufficiently old as to warrant a new scale";
    pub(crate) const SUCCESSFUL_SCALE: &str = "SuccessfulScale";
    pub(crate) const FAILED_SCALE: &str = "FailedScale";
    /// Ours: the ConflictingAutoscaler condition.
    pub(crate) const CONFLICT_FOUND: &str = "HorizontalPodAutoscalerFound";
    pub(crate) const NO_CONFLICT: &str = "NoOtherAutoscaler";
    pub(crate) const NO_CONFLICT_MSG: &str = "no other autoscaler scales the target";
    pub(crate) const CONFLICT_ACCEPTED: &str = "ConflictAccepted";
    pub(crate) const CONFLICT_ACCEPTED_MSG: &str = "another autoscaler scales the target, and the WPA's allow-conflicting-autoscaler annotation accepts it";
    /// Ours: the Fallback condition and its events.
    pub(crate) const METRICS_AVAILABLE: &str = "MetricsAvailable";
    pub(crate) const METRICS_AVAILABLE_MSG: &str = "a metric of the WPA answers: it scales on its metrics";
    pub(crate) const METRICS_FAILING: &str = "MetricsFailing";
    pub(crate) const FALLBACK_ACTIVE: &str = "FallbackActive";
    pub(crate) const FALLBACK_ENDED: &str = "FallbackEnded";
    pub(crate) const INVALID_FALLBACK: &str = "InvalidFallback";
    pub(crate) const FALLBACK_ENDED_MSG: &str =
        "a metric of the WPA answers again: it scales on its metrics from the current count";
    /// Ours (the HPA's word): a status write failed.
    pub(crate) const FAILED_UPDATE_STATUS: &str = "FailedUpdateStatus";
    /// Our event: `status.lastScaleTime` lay in the future and was reset to now.
    pub(crate) const FUTURE_LAST_SCALE_TIME: &str = "FutureLastScaleTime";
    pub(crate) const DRY_RUN_ENABLED: &str = "DryRun mode enabled";
    pub(crate) const DRY_RUN_ENABLED_MSG: &str = "Scaling changes won't be applied";
    pub(crate) const DRY_RUN_DISABLED: &str = "DryRun mode disabled";
    pub(crate) const DRY_RUN_DISABLED_MSG: &str = "Scaling changes can be applied";
    pub(crate) const ABOVE_REASON: &str = "Value above High Watermark";
    pub(crate) const ABOVE_MSG: &str = "Allow upscaling if the value stays over the Watermark";
    /// Upstream writes `Value above Low Watermark` here (a typo); we write what it means.
    pub(crate) const BELOW_REASON: &str = "Value below Low Watermark";
    pub(crate) const BELOW_MSG: &str = "Allow downscaling if the value stays under the Watermark";
    pub(crate) const CONVERGE_DOWN_REASON: &str = "Allow downscaling to converge to the High Watermark";
    pub(crate) const CONVERGE_UP_REASON: &str = "Allow upscaling to converge to the Low Watermark";
    pub(crate) const CONVERGE_STABLE_ONLY: &str = "Converging to Watermark only allowed in stable regime";
    pub(crate) const CONVERGE_BETWEEN: &str = "Value between Watermarks";
    pub(crate) const CONVERGE_UNSTABLE: &str = "Proposal could lead to an unstable regime";
    pub(crate) const CONVERGE_DISABLED: &str = "Feature not enabled";
    pub(crate) const FAILED_GET_DATADOG_MONITOR: &str = "FailedGetDatadogMonitor";
    pub(crate) const DATADOG_MONITOR_NOT_OK: &str = "DatadogMonitorNotOK";
    pub(crate) const DATADOG_MONITOR_OK: &str = "DatadogMonitorOK";
    pub(crate) const SCALE_DOWN_LIMIT: &str = "ScaleDownLimit";
    pub(crate) const SCALE_DOWN_LIMIT_MSG: &str =
        "the desired replica count is decreasing faster than the maximum scale rate";
    pub(crate) const TOO_FEW_REPLICAS: &str = "TooFewReplicas";
    pub(crate) const TOO_FEW_REPLICAS_MSG: &str =
        "the desired replica count is below the minimum replica count";
    pub(crate) const SCALE_UP_LIMIT: &str = "ScaleUpLimit";
    pub(crate) const SCALE_UP_LIMIT_MSG: &str =
        "the desired replica count is increasing faster than the maximum scale rate";
    pub(crate) const TOO_MANY_REPLICAS: &str = "TooManyReplicas";
    pub(crate) const TOO_MANY_REPLICAS_MSG: &str =
        "the desired replica count is above the maximum replica count";
    pub(crate) const DESIRED_WITHIN_RANGE: &str = "DesiredWithinRange";
    pub(crate) const DESIRED_WITHIN_RANGE_MSG: &str = "the desired count is within the acceptable range";
}

/// Sets a condition as upstream does: update in place or append; the transition time moves to `now` only
/// when the status changes (a new condition counts as a change); reason and message are always
/// overwritten; the list is re-sorted newest transition first; `lastConditionType/State` follow.
///
/// Upstream stamps each condition with its own `metav1.Now()`, so conditions set later in a pass sort
/// first. With one `now` per pass, a condition whose status changed is moved to the front before the
/// stable sort, which gives the same order.
pub fn set_condition(
    status: &mut WatermarkPodAutoscalerStatus,
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    set_condition_to(status, type_, status_str(value), reason, message, now);
}

/// [`set_condition`] with any status (`Unknown` too).
pub(crate) fn set_condition_to(
    status: &mut WatermarkPodAutoscalerStatus,
    type_: &str,
    new_status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let conditions = &mut status.conditions;
    match conditions.iter().position(|c| c.type_ == type_) {
        Some(i) => {
            let c = &mut conditions[i];
            assign(&mut c.reason, reason);
            assign(&mut c.message, message);
            if c.status != new_status {
                overwrite(&mut c.status, new_status);
                c.last_transition_time = Some(Time(now));
                conditions[..=i].rotate_right(1);
            }
        }
        None => conditions.insert(
            0,
            Condition {
                type_: type_.to_string(),
                status: new_status.to_string(),
                last_transition_time: Some(Time(now)),
                reason: Some(reason.to_string()),
                message: Some(message.to_string()),
            },
        ),
    }
    sort_newest_first(conditions);
    // Sized for every type at once: it changes with nearly every call.
    let last = status.last_condition_type.get_or_insert_with(|| String::with_capacity(LONGEST_TYPE));
    overwrite(last, type_);
    assign(&mut status.last_condition_state, new_status);
}

/// A stable sort, newest transition first; conditions without a time sort last. After a pass's first
/// [`set_condition`] the list is nearly always in order already (a changed condition moves to the front with
/// the newest time), and checking costs a fraction of the sort.
pub(crate) fn sort_newest_first(conditions: &mut [Condition]) {
    let newest_first = |a: &Condition, b: &Condition| {
        let ta = a.last_transition_time.as_ref().map(|t| t.0);
        let tb = b.last_transition_time.as_ref().map(|t| t.0);
        tb.cmp(&ta)
    };
    if !conditions.is_sorted_by(|a, b| newest_first(a, b).is_le()) {
        conditions.sort_by(newest_first);
    }
}

/// Writes `value` into `slot`, reusing its buffer: a pass sets about ten conditions, most to the text they
/// already hold.
fn assign(slot: &mut Option<String>, value: &str) {
    match slot {
        Some(s) => overwrite(s, value),
        None => *slot = Some(value.to_string()),
    }
}

/// `*s = value` in `s`'s own buffer (no write when equal).
fn overwrite(s: &mut String, value: &str) {
    if s != value {
        s.clear();
        s.push_str(value);
    }
}

pub fn get_condition<'a>(status: &'a WatermarkPodAutoscalerStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// Whether a condition exists and is `True`.
pub(crate) fn is_true(status: &WatermarkPodAutoscalerStatus, type_: &str) -> bool {
    get_condition(status, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
#[path = "conditions_tests.rs"]
mod tests;
