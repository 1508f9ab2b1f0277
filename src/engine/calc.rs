//! The replica calculator: one metric's proposal (docs/semantics.md §6.4–6.8).
//!
//! Arithmetic follows upstream to the bit: watermarks, tolerance and values are integer milli-values,
//! proposals are IEEE doubles computed in upstream's order of operations, and float → int32 conversions
//! behave as Go's do on amd64 (truncation; NaN or out of range gives `i32::MIN`).

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{
    CalcError,
    conditions::text,
    pods::{self, PodInfo, ReadyCount},
};
use crate::api::{WatermarkPodAutoscalerSpec, selector::label_selector_string};

/// `convergeTowardsWatermark`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Converge {
    Off,
    High,
    Low,
}

impl Converge {
    pub(crate) fn parse(s: Option<&str>) -> Converge {
        match s {
            Some("highwatermark") => Converge::High,
            Some("lowwatermark") => Converge::Low,
            _ => Converge::Off,
        }
    }
}

/// The part of a WPA spec the calculator reads, with upstream's reading of unset fields.
#[derive(Clone, Debug, PartialEq)]
pub struct CalcSpec {
    pub(crate) tolerance_milli: i64,
    pub(crate) modulo: i32,
    pub(crate) converge: Converge,
    pub(crate) min_replicas: Option<i32>,
    pub(crate) max_replicas: i32,
    /// `algorithm: average`; anything else (typos included) is absolute.
    pub(crate) average: bool,
    pub(crate) tolerate_zero: bool,
    pub(crate) readiness_delay_seconds: i32,
    pub(crate) min_available_percentage: i32,
    pub(crate) skip_owner_check: bool,
}

impl CalcSpec {
    pub fn from_spec(spec: &WatermarkPodAutoscalerSpec, skip_owner_check: bool) -> CalcSpec {
        CalcSpec {
            tolerance_milli: spec.tolerance.as_ref().map_or(0, |q| q.milli()),
            modulo: spec.replica_scaling_absolute_modulo.unwrap_or(1),
            converge: Converge::parse(spec.converge_towards_watermark.as_deref()),
            min_replicas: spec.min_replicas,
            max_replicas: spec.max_replicas.unwrap_or(0),
            average: spec.algorithm.as_deref() == Some("average"),
            tolerate_zero: spec.tolerate_zero.unwrap_or(false),
            readiness_delay_seconds: spec.readiness_delay_seconds.unwrap_or(0),
            min_available_percentage: spec.min_available_replica_percentage.unwrap_or(0),
            skip_owner_check,
        }
    }
}

/// The target's `/scale` subresource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScaleInfo {
    pub name: String,
    pub namespace: String,
    pub spec_replicas: i32,
    pub status_replicas: i32,
    /// `status.selector`, in string form.
    pub selector: String,
}

/// A ConvergeToWatermark condition, as the calculator sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvergeCondition {
    pub(crate) status: bool,
    pub(crate) reason: &'static str,
    pub(crate) message: &'static str,
}

/// The watermarks of a metric and the tolerance band a value is compared with (milli-units): a value above
/// `adjusted_high` is above the band, below `adjusted_low` below it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Band {
    pub(crate) high_milli: i64,
    pub(crate) low_milli: i64,
    pub(crate) adjusted_high: f64,
    pub(crate) adjusted_low: f64,
}

/// The band of watermarks `high_milli`/`low_milli` with `tolerance_milli` (docs/semantics.md §6.6): integer
/// arithmetic in milli-units, widened so that no product overflows.
pub(crate) fn band(high_milli: i64, low_milli: i64, tolerance_milli: i64) -> Band {
    let tol = i128::from(tolerance_milli);
    let (hw, lw) = (i128::from(high_milli), i128::from(low_milli));
    Band {
        high_milli,
        low_milli,
        adjusted_high: (hw + hw * tol / 1000) as f64,
        adjusted_low: (lw - lw * tol / 1000) as f64,
    }
}

/// One metric's outcome (upstream's `ReplicaCalculation`).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricResult {
    pub replica_count: i32,
    /// Milli-value reported in `status.currentMetrics`.
    pub utilization: i64,
    /// The value compared with the watermarks (the `value` gauge).
    pub usage: f64,
    pub timestamp: Option<Timestamp>,
    pub ready_replicas: i32,
    pub is_above: bool,
    pub is_below: bool,
    /// The recommender's reason, shown in the ScalingActive message.
    pub details: String,
    pub converge: Option<ConvergeCondition>,
    pub band: Option<Band>,
    /// Above the band, the proposal was beyond a 32-bit count: Go's conversion makes it negative, and the
    /// upscale's guard then keeps the current count (upstream's behaviour, kept; said in plain words).
    pub overflowed: bool,
}

impl MetricResult {
    pub(crate) fn position(&self) -> &'static str {
        match (self.is_above, self.is_below) {
            (true, _) => "above",
            (_, true) => "below",
            _ => "within",
        }
    }
}

/// Go's `int32(f)` on amd64: truncation toward zero; NaN and out-of-range values give `i32::MIN`.
pub(crate) fn go_f64_to_i32(f: f64) -> i32 {
    if f.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&f) { i32::MIN } else { f.trunc() as i32 }
}

/// Go's `int64(f)` on amd64.
pub(crate) fn go_f64_to_i64(f: f64) -> i64 {
    if f.is_nan() || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) {
        i64::MIN
    } else {
        f.trunc() as i64
    }
}

/// Rounds up to a multiple of `modulo` (float `fmod`, as upstream), in both scaling directions.
pub(crate) fn round_up_to_modulo(rc: i32, modulo: i32) -> i32 {
    if modulo <= 0 {
        return rc;
    }
    let r = (f64::from(rc)) % f64::from(modulo);
    if r > 0.0 { rc.saturating_add(modulo - go_f64_to_i32(r)) } else { rc }
}

/// Never propose fewer replicas than `current` while scaling up.
pub(crate) fn adjust_up(current: i32, rc: i32, modulo: i32) -> i32 {
    round_up_to_modulo(rc, modulo).max(current)
}

/// Never propose more replicas than `current` while scaling down.
pub(crate) fn adjust_down(current: i32, rc: i32, modulo: i32) -> i32 {
    round_up_to_modulo(rc, modulo).min(current)
}

fn cap(x: i32, lo: i32, hi: i32) -> i32 {
    lo.max(x.min(hi))
}

/// The convergence step (docs/semantics.md §6.8), given the replica counts at which usage would reach the high watermark
/// (`lower_bound`) and the low watermark (`upper_bound`).
pub(crate) fn converge(
    spec: &CalcSpec,
    current: i32,
    lower_bound: i32,
    upper_bound: i32,
) -> (i32, ConvergeCondition) {
    match spec.converge {
        Converge::High => {
            let opt = (current - spec.modulo).max(1);
            if opt < lower_bound {
                (
                    current,
                    ConvergeCondition {
                        status: false,
                        reason: text::CONVERGE_DOWN_REASON,
                        message: text::CONVERGE_UNSTABLE,
                    },
                )
            } else {
                (
                    opt,
                    ConvergeCondition {
                        status: true,
                        reason: text::CONVERGE_DOWN_REASON,
                        message: text::CONVERGE_BETWEEN,
                    },
                )
            }
        }
        Converge::Low => {
            let opt = current.saturating_add(spec.modulo);
            if opt > upper_bound {
                (
                    current,
                    ConvergeCondition {
                        status: false,
                        reason: text::CONVERGE_UP_REASON,
                        message: text::CONVERGE_UNSTABLE,
                    },
                )
            } else {
                (
                    opt,
                    ConvergeCondition {
                        status: true,
                        reason: text::CONVERGE_UP_REASON,
                        message: text::CONVERGE_BETWEEN,
                    },
                )
            }
        }
        Converge::Off => (
            current,
            ConvergeCondition {
                status: false,
                reason: text::CONVERGE_DISABLED,
                message: text::CONVERGE_BETWEEN,
            },
        ),
    }
}

/// `getReplicaCount`: compare `usage` with the tolerance-adjusted watermarks and propose a replica count.
pub(crate) fn replica_count_for_usage(
    spec: &CalcSpec,
    current: i32,
    ready: i32,
    usage: f64,
    low_milli: i64,
    high_milli: i64,
) -> MetricResult {
    let band = band(high_milli, low_milli, spec.tolerance_milli);
    let (adjusted_high, adjusted_low) = (band.adjusted_high, band.adjusted_low);
    let ready_f = f64::from(ready);
    let mut overflowed = false;
    let (replica_count, is_above, is_below, converge_cond) = if usage > adjusted_high {
        let rc = go_f64_to_i32((ready_f * usage / high_milli as f64).ceil());
        overflowed = rc == i32::MIN;
        let cond = ConvergeCondition {
            status: false,
            reason: text::CONVERGE_DOWN_REASON,
            message: text::CONVERGE_STABLE_ONLY,
        };
        (adjust_up(current, rc, spec.modulo), true, false, cond)
    } else if usage < adjusted_low {
        let rc = go_f64_to_i32((ready_f * usage / low_milli as f64).floor()).max(1);
        let cond = ConvergeCondition {
            status: false,
            reason: text::CONVERGE_STABLE_ONLY,
            message: text::CONVERGE_STABLE_ONLY,
        };
        (adjust_down(current, rc, spec.modulo), false, true, cond)
    } else {
        let min_r = spec.min_replicas.filter(|m| *m > 0).unwrap_or(1);
        let max_r = spec.max_replicas;
        let lower_bound = if high_milli == 0 {
            current
        } else {
            cap(go_f64_to_i32((ready_f / high_milli as f64 * usage).ceil()), min_r, max_r)
        };
        let upper_bound = if low_milli == 0 {
            current
        } else {
            cap(go_f64_to_i32((ready_f / low_milli as f64 * usage).floor()), min_r, max_r)
        };
        let (rc, cond) = converge(spec, current, lower_bound, upper_bound);
        (rc, false, false, cond)
    };
    MetricResult {
        replica_count,
        utilization: go_f64_to_i64(usage),
        usage,
        timestamp: None,
        ready_replicas: ready,
        is_above,
        is_below,
        details: String::new(),
        converge: Some(converge_cond),
        band: Some(band),
        overflowed,
    }
}

fn unready_error(ratio: i64, scale: &ScaleInfo) -> CalcError {
    CalcError::new(format!(
        "{ratio} % of the pods are unready, will not autoscale {}/{}",
        scale.namespace, scale.name
    ))
}

const NO_PODS: &str = "no pods returned by selector while calculating replica count";

/// Steps shared by the External and recommender paths: ready pods (clamped to the scale's status
/// replicas) and the `minAvailableReplicaPercentage` gate.
pub(crate) fn ready_replicas_for_target(
    spec: &CalcSpec,
    scale: &ScaleInfo,
    pods: &[PodInfo],
    now: Timestamp,
) -> Result<i32, CalcError> {
    let count =
        pods::count_ready_pods(pods, &scale.name, spec.readiness_delay_seconds, spec.skip_owner_check, now);
    ready_replicas_from_count(spec, scale, pods.len(), count)
}

/// [`ready_replicas_for_target`] for `selected` pods already counted: a pass counts its pods once for
/// every metric, the fallback and the readers.
pub(crate) fn ready_replicas_from_count(
    spec: &CalcSpec,
    scale: &ScaleInfo,
    selected: usize,
    count: ReadyCount,
) -> Result<i32, CalcError> {
    if selected == 0 {
        return Err(CalcError::new(NO_PODS));
    }
    let count = pods::require_ready(count, selected).map_err(|e| {
        CalcError::new(format!(
            "unable to get the number of ready pods across all namespaces for {}: {e}",
            scale.selector
        ))
    })?;
    let ready = count.ready.min(scale.status_replicas);
    let eligible = selected as i64 - i64::from(count.incorrect);
    let ratio = if eligible > 0 { 100 * i64::from(ready) / eligible } else { 0 };
    if ratio < i64::from(spec.min_available_percentage) {
        return Err(unready_error(ratio, scale));
    }
    Ok(ready)
}

/// The values of an external metric, as served by external.metrics.k8s.io.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExternalSample {
    /// Milli-values of every returned series (they are summed).
    pub values: Vec<i64>,
    pub timestamp: Option<Timestamp>,
}

fn checked_sum(values: impl Iterator<Item = i64>) -> Result<i64, CalcError> {
    let mut sum: i64 = 0;
    for v in values {
        if v < 0 {
            return Err(CalcError::new(format!(
                "invalid metric value {v}m: metric values cannot be negative"
            )));
        }
        sum = sum.checked_add(v).ok_or_else(|| CalcError::new("the sum of the metric values overflows"))?;
    }
    Ok(sum)
}

/// The External path.
#[allow(clippy::too_many_arguments)]
pub fn external(
    spec: &CalcSpec,
    scale: &ScaleInfo,
    pods: &[PodInfo],
    wpa_namespace: &str,
    metric_name: &str,
    selector: Option<&LabelSelector>,
    sample: Result<&ExternalSample, &str>,
    band: (i64, i64),
    now: Timestamp,
) -> Result<MetricResult, CalcError> {
    let ready = ready_replicas_for_target(spec, scale, pods, now);
    external_with_ready(spec, scale, ready, wpa_namespace, metric_name, selector, sample, band)
}

/// The External path with the target's ready count already counted (it is the same for every External
/// metric of a pass).
#[allow(clippy::too_many_arguments)]
pub(crate) fn external_with_ready(
    spec: &CalcSpec,
    scale: &ScaleInfo,
    ready: Result<i32, CalcError>,
    wpa_namespace: &str,
    metric_name: &str,
    selector: Option<&LabelSelector>,
    sample: Result<&ExternalSample, &str>,
    band: (i64, i64),
) -> Result<MetricResult, CalcError> {
    let ready = ready?;
    let wrap = |e: &str| {
        let sel = label_selector_string(selector).unwrap_or_default();
        CalcError::new(format!("unable to get external metric {wpa_namespace}/{metric_name}/{sel}: {e}"))
    };
    let sample = sample.map_err(wrap)?;
    if sample.values.is_empty() {
        return Err(wrap("no metrics returned from external metrics API"));
    }
    let sum = checked_sum(sample.values.iter().copied()).map_err(|e| wrap(&e.0))?;
    if sum == 0 && !spec.tolerate_zero {
        // Upstream proposes the ready count (not spec replicas) with a "within" position.
        return Ok(MetricResult {
            replica_count: ready,
            utilization: 0,
            usage: 0.0,
            timestamp: sample.timestamp,
            ready_replicas: ready,
            is_above: false,
            is_below: false,
            details: String::new(),
            converge: None,
            band: None,
            overflowed: false,
        });
    }
    let usage = sum as f64 / if spec.average { f64::from(ready) } else { 1.0 };
    let (low, high) = band;
    let mut result = replica_count_for_usage(spec, scale.spec_replicas, ready, usage, low, high);
    result.timestamp = sample.timestamp;
    Ok(result)
}

/// The Resource path. `usage_by_pod` is the per-pod usage (milli, summed over containers) returned for the
/// metric's own selector.
#[allow(clippy::too_many_arguments)]
pub fn resource(
    spec: &CalcSpec,
    scale: &ScaleInfo,
    pods: &[PodInfo],
    wpa_namespace: &str,
    resource_name: &str,
    selector: Option<&LabelSelector>,
    usage_by_pod: Result<&BTreeMap<String, i64>, &str>,
    band: (i64, i64),
) -> Result<MetricResult, CalcError> {
    let wrap = |e: &str| {
        let sel = label_selector_string(selector).unwrap_or_default();
        CalcError::new(format!("unable to get resource metric {wpa_namespace}/{resource_name}/{sel}: {e}"))
    };
    let usage_by_pod = usage_by_pod.map_err(wrap)?;
    if usage_by_pod.is_empty() {
        return Err(wrap("no metrics returned from resource metrics API"));
    }
    if pods.is_empty() {
        return Err(CalcError::new(NO_PODS));
    }
    let with_metrics: BTreeSet<&str> = usage_by_pod.keys().map(String::as_str).collect();
    let groups = pods::group_pods(
        pods,
        &with_metrics,
        resource_name,
        &scale.name,
        spec.readiness_delay_seconds,
        spec.skip_owner_check,
    );
    let eligible = pods.len() as i64 - groups.ignored.len() as i64;
    if eligible <= 0 {
        // Upstream divides by zero here (and recovers from the panic); we say why instead.
        return Err(CalcError::new(none_counted(
            pods.len(),
            &groups.why_ignored,
            spec.readiness_delay_seconds,
        )));
    }
    let ready = groups.ready.len() as i32;
    let ratio = 100 * i64::from(ready) / eligible;
    if ratio < i64::from(spec.min_available_percentage) {
        return Err(unready_error(ratio, scale));
    }
    let mut remaining = usage_by_pod.clone();
    pods::remove_metrics_for_pods(&mut remaining, &groups.ignored);
    if remaining.is_empty() {
        return Err(CalcError::new("did not receive metrics for any ready pods"));
    }
    let sum = checked_sum(remaining.values().copied())?;
    if spec.average && ready == 0 {
        return Err(CalcError::new("cannot average the metric: none of the target's pods is ready"));
    }
    let usage = sum as f64 / if spec.average { f64::from(ready) } else { 1.0 };
    let (low, high) = band;
    Ok(replica_count_for_usage(spec, scale.spec_replicas, ready, usage, low, high))
}

/// Why no pod of the Resource path could be counted, in words that say what to change.
fn none_counted(pods: usize, why: &pods::Ignored, delay: i32) -> String {
    if why.ready_within_delay == pods {
        return format!(
            "all {pods} pods are ignored for cpu: each became Ready within readinessDelaySeconds ({delay}s) of starting, and such a pod is not counted until its Ready condition changes again (upstream's rule); set readinessDelaySeconds below the time the pods take to become Ready"
        );
    }
    let mut parts = Vec::new();
    for (n, what) in [
        (why.pending_or_failed, "pending or failed"),
        (why.not_ready, "not ready"),
        (why.ready_within_delay, &*format!("ready within readinessDelaySeconds ({delay}s) of starting")),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    format!("none of the {pods} pods of the target can be counted: {}", parts.join(", "))
}

/// A recommender's answer (`ReplicaRecommendationResponse`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recommendation {
    pub replicas: i32,
    pub replicas_lower_bound: i32,
    pub replicas_upper_bound: i32,
    /// The reply's timestamp, as sent.
    pub timestamp: Option<String>,
    pub details: String,
    pub observed_target_value: f64,
}

/// `adjustReplicaCount` of the recommender path.
pub(crate) fn adjust_recommendation(
    spec: &CalcSpec,
    current: i32,
    rec: &Recommendation,
) -> (i32, bool, bool, Option<ConvergeCondition>) {
    let is_below = current > rec.replicas_upper_bound;
    let is_above = current < rec.replicas_lower_bound;
    if rec.replicas > current {
        (adjust_up(current, rec.replicas, spec.modulo), is_above, is_below, None)
    } else if rec.replicas < current {
        (adjust_down(current, rec.replicas, spec.modulo), is_above, is_below, None)
    } else {
        let (rc, cond) = converge(spec, current, rec.replicas_lower_bound, rec.replicas_upper_bound);
        (rc, false, false, Some(cond))
    }
}

/// The recommender path, once the recommendation has been fetched.
pub fn recommender(
    spec: &CalcSpec,
    scale: &ScaleInfo,
    pods: &[PodInfo],
    reco_name: &str,
    reply: Result<&Recommendation, &str>,
    now: Timestamp,
) -> Result<MetricResult, CalcError> {
    recommender_with_ready(spec, scale, ready_replicas_for_target(spec, scale, pods, now), reco_name, reply)
}

/// The recommender path with the target's ready count already counted.
pub(crate) fn recommender_with_ready(
    spec: &CalcSpec,
    scale: &ScaleInfo,
    ready: Result<i32, CalcError>,
    reco_name: &str,
    reply: Result<&Recommendation, &str>,
) -> Result<MetricResult, CalcError> {
    let ready = ready?;
    let rec = reply
        .map_err(|e| CalcError::new(format!("unable to get external recommendation {reco_name}: {e}")))?;
    let timestamp = rec.timestamp.as_deref().and_then(|t| t.parse().ok());
    if rec.replicas == 0 && !spec.tolerate_zero {
        return Ok(MetricResult {
            replica_count: ready,
            utilization: 0,
            usage: 0.0,
            timestamp,
            ready_replicas: ready,
            is_above: false,
            is_below: false,
            details: rec.details.clone(),
            converge: None,
            band: None,
            overflowed: false,
        });
    }
    let utilization = go_f64_to_i64(rec.observed_target_value * 1000.0);
    let (replica_count, is_above, is_below, converge) = adjust_recommendation(spec, scale.spec_replicas, rec);
    Ok(MetricResult {
        replica_count,
        utilization,
        usage: utilization as f64,
        timestamp,
        ready_replicas: ready,
        is_above,
        is_below,
        details: rec.details.clone(),
        converge,
        band: None,
        overflowed: false,
    })
}

#[cfg(test)]
#[path = "calc_tests.rs"]
mod tests;
