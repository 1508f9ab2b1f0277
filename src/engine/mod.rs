//! The decision engine: pure (no I/O; the clock is an argument), shared by the reconciler, the webhook
//! (validation and defaults), `wpa explain` and `wpa simulate`.
//!
//! One reconcile pass is a [`Plan`] (computed once from the WPA: the effective spec, whether it is invalid,
//! what must be read) and [`decide`]: given the plan and what the reconciler observed (the target's scale,
//! its pods, the metric values, the DatadogMonitor), it returns the whole [`Decision`]: each metric's proposal and
//! position, the winner, the normalized count and the limit that applied, whether scaling is allowed now and
//! why not, the forced corrections, and the `/scale` write to make ([`ScaleIntent`]). Once the write's fate
//! is known, [`Decision::settle`] gives the [`Outcome`] to apply: the status, the events, the gauge values and
//! when to run again. The reconciler only gathers the inputs and applies the outcome.
//!
//! ```text
//!   Plan::new ─ effective spec, validation, lifecycle ─→ the gatherer reads what it says
//!   decide(plan) ─ invalid? ─ lifecycle gate ─ target ─ metrics (compute_outcomes) ─ pass::run ─┐
//!                  (done)     (blocked)        (error)                                          │
//!                                                     combine → limits → gate → forced → scale intent
//!   settle(ScaleResult) → Outcome { status, events, gauges, counters, removals, action }
//! ```

pub(crate) mod calc;
pub mod conditions;
mod conflict;
mod decision;
pub(crate) mod fallback;
#[cfg(test)]
pub(crate) mod fixtures;
pub(crate) mod gate;
mod lifecycle;
pub(crate) mod limits;
pub(crate) mod metrics;
mod pass;
pub(crate) mod plain;
mod plan;
pub(crate) mod pods;
pub(crate) mod recommender;
pub(crate) mod validation;

use std::{borrow::Cow, time::Duration};

use jiff::Timestamp;
use kube::ResourceExt;

use crate::api::{MetricSpec, WatermarkPodAutoscaler, WatermarkPodAutoscalerSpec, quantity::Quantity};
use calc::CalcSpec;
pub use calc::{ExternalSample, Recommendation, ScaleInfo};
use conditions::*;
pub use decision::{
    Action, CombineError, Combined, ControllerResult, Counter, Decision, Event, Forced, Increment,
    MetricKind, MetricObservation, MetricOutcome, MonitorObservation, MonitorState, Observation, Outcome,
    Removal, Sample, ScaleIntent, ScaleResult, Series, TargetError, TargetErrorKind,
};
pub use fallback::{Fallback, FallbackError, FallbackState};
use metrics::{MetricContext, compute_outcomes};
pub(crate) use plain::PlainStatus;
pub use plan::{Lifecycle, Plan};
pub use pods::{ConditionStatus, OwnerKind, OwnerRef, PodInfo, PodPhase, ReadyCondition};
pub use validation::AdmissionLimits;

/// An error of the replica calculator, with upstream's wording.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CalcError(pub String);

impl CalcError {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        CalcError(msg.into())
    }
}

/// Upstream's fixed reconcile period.
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);

/// Fills a missing watermark with the other one (`fillMissingWatermark`, in memory).
pub fn fill_missing_watermark(metric: &mut MetricSpec) {
    fn fill(high: &mut Option<Quantity>, low: &mut Option<Quantity>) {
        match (high.is_some(), low.is_some()) {
            (false, true) => *high = low.clone(),
            (true, false) => *low = high.clone(),
            _ => {}
        }
    }
    if let Some(e) = metric.external.as_mut() {
        fill(&mut e.high_watermark, &mut e.low_watermark);
    }
    if let Some(r) = metric.resource.as_mut() {
        fill(&mut r.high_watermark, &mut r.low_watermark);
    }
}

/// The spec a pass works with: defaults and missing watermarks filled in, in memory.
pub(crate) fn effective_spec(spec: &WatermarkPodAutoscalerSpec) -> Cow<'_, WatermarkPodAutoscalerSpec> {
    let one_sided = |h: &Option<Quantity>, l: &Option<Quantity>| h.is_some() != l.is_some();
    let needs_fill = spec.metrics.iter().flatten().any(|m| {
        m.external.as_ref().is_some_and(|e| one_sided(&e.high_watermark, &e.low_watermark))
            || m.resource.as_ref().is_some_and(|r| one_sided(&r.high_watermark, &r.low_watermark))
    });
    if !needs_fill && validation::is_defaulted(spec) {
        return Cow::Borrowed(spec);
    }
    let mut s = validation::with_defaults(spec);
    for m in s.metrics.iter_mut().flatten() {
        fill_missing_watermark(m);
    }
    Cow::Owned(s)
}

/// Each metric's band (External and Resource metrics, in spec order, by metric or resource name), as the
/// calculator compares values with it: for readers that show the band without a pass (`wpa simulate`'s plot).
pub(crate) fn metric_bands(spec: &WatermarkPodAutoscalerSpec) -> Vec<(String, calc::Band)> {
    let spec = effective_spec(spec);
    let tolerance = CalcSpec::from_spec(&spec, false).tolerance_milli;
    let milli = |q: &Option<Quantity>| q.as_ref().map_or(0, Quantity::milli);
    spec.metrics
        .iter()
        .flatten()
        .filter_map(MetricSpec::source)
        .map(|s| {
            (s.name().to_string(), calc::band(milli(s.high_watermark()), milli(s.low_watermark()), tolerance))
        })
        .collect()
}

/// One reconcile pass (upstream's `Reconcile` from the status snapshot on, and `reconcileWPA`), from the
/// pass's [`Plan`] and what the reconciler observed.
pub fn decide<'a>(plan: &'a Plan<'_>, obs: &Observation<'_>, now: Timestamp) -> Decision<'a> {
    let wpa = plan.wpa;
    let spec = plan.spec.as_ref();
    let mut d = Decision::new(spec, wpa.status.clone().unwrap_or_default(), now);
    d.set(SCALING_ACTIVE, false, text::FAILED_PROCESS_WPA, text::FAILED_PROCESS_WPA_MSG);
    conflict::report(&mut d, wpa, obs.conflicts);

    if let Some(msg) = &plan.invalid {
        d.set(ABLE_TO_SCALE, false, text::FAILED_SPEC_CHECK, &format!("Invalid WPA specification: {msg}"));
        d.event(true, text::FAILED_SPEC_CHECK, msg.clone(), Some(ABLE_TO_SCALE));
        d.reason = format!("Invalid WPA specification: {msg}");
        d.invalid = Some(msg.clone());
        d.done();
    } else if lifecycle::blocks(&mut d, wpa, &plan.lifecycle, &obs.monitor) {
    } else {
        match &obs.target {
            Err(e) => {
                d.event(true, text::FAILED_PROCESS_WPA, e.message.clone(), Some(ABLE_TO_SCALE));
                d.set(ABLE_TO_SCALE, false, text::FAILED_PROCESS_WPA, text::FAILED_PROCESS_WPA_MSG);
                d.reason = e.message.clone();
                d.requeue_after(e.backoff());
            }
            Ok(scale) => {
                let calc_spec = CalcSpec::from_spec(
                    spec,
                    pods::should_skip_owner_check(wpa.metadata.annotations.as_ref()),
                );
                let pods = obs.pods.as_ref().map(|p| *p).map_err(String::as_str);
                let cx = MetricContext::new(spec, &calc_spec, &plan.namespace, scale, pods, now);
                // The count every metric's calculation starts from, kept for the readers (explain).
                d.pods = cx.ready_count();
                let recommendation = obs.recommendation.as_ref().map(|r| r.as_ref().map_err(String::as_str));
                let outcomes = compute_outcomes(&cx, obs.metrics, recommendation);
                let fallback = match &plan.fallback {
                    Ok(f) => f.as_ref().map(|fallback| pass::FallbackInput {
                        fallback,
                        // A failure of every metric is an outage only if the pods are not its cause.
                        pods_fine: cx.ready_replicas().is_some_and(|r| r.is_ok()),
                    }),
                    Err(e) => {
                        let message = format!("the fallback is off: {e}");
                        d.event(true, text::INVALID_FALLBACK, message.clone(), Some(FALLBACK));
                        d.set(FALLBACK, false, text::INVALID_FALLBACK, &message);
                        None
                    }
                };
                pass::run(&mut d, wpa, spec, scale, outcomes, fallback, now);
            }
        }
    }
    d
}

/// `reconcileWPA` from a successful scale GET on, with the calculator's results given. The WPA's spec is
/// used as it is (the caller has defaulted it). Only the upstream-vector runner drives a pass from given
/// results (`crate::vectors`).
pub(crate) fn decide_from_results<'a>(
    wpa: &'a WatermarkPodAutoscaler,
    scale: &ScaleInfo,
    outcomes: Vec<MetricOutcome>,
    now: Timestamp,
) -> Decision<'a> {
    let mut d = Decision::new(&wpa.spec, wpa.status.clone().unwrap_or_default(), now);
    pass::run(&mut d, wpa, &wpa.spec, scale, outcomes, None, now);
    d
}

/// What the finalizer requires before a pass (upstream's `Reconcile` prologue).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalizerStep {
    /// Our finalizer is missing: add it (an object update), then go on in the same pass.
    Add,
    /// Being deleted with our finalizer: delete the WPA's series, remove the finalizer, stop.
    Finalize,
    /// Being deleted without our finalizer: nothing to do.
    Skip,
    Proceed,
}

pub fn finalizer_step(wpa: &WatermarkPodAutoscaler) -> FinalizerStep {
    let ours = wpa.finalizers().iter().any(|f| f == crate::api::FINALIZER);
    match (wpa.metadata.deletion_timestamp.is_some(), ours) {
        (true, true) => FinalizerStep::Finalize,
        (true, false) => FinalizerStep::Skip,
        (false, false) => FinalizerStep::Add,
        (false, true) => FinalizerStep::Proceed,
    }
}
