//! The engine's vocabulary: what one pass observes ([`Observation`]), what it decides ([`Decision`]), and
//! what the reconciler applies once the `/scale` write is known ([`Outcome`], from [`Decision::settle`]).

use std::{collections::BTreeMap, time::Duration};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{
    SYNC_PERIOD,
    calc::{ExternalSample, MetricResult, Recommendation, ScaleInfo},
    conditions::{self, *},
    fallback::FallbackState,
    gate::Gate,
    limits::Normalized,
    pods::{PodInfo, ReadyCount},
};
use crate::api::{WatermarkPodAutoscaler, WatermarkPodAutoscalerSpec, WatermarkPodAutoscalerStatus};

/// What the reconciler saw of a metric (index-aligned with `spec.metrics`).
#[derive(Clone, Debug, PartialEq)]
pub enum MetricObservation {
    /// The external metrics API's answer (or why it could not be read).
    External(Result<ExternalSample, String>),
    /// Per-pod usage (milli, summed over containers) from the resource metrics API.
    Resource(Result<BTreeMap<String, i64>, String>),
    /// Not fetched (the metric has no source).
    Skipped,
}

/// What the reconciler saw of the DatadogMonitor gating a WPA with lifecycle control.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MonitorObservation {
    /// Lifecycle control is off (nothing was read).
    NotRequested,
    /// The GET failed: upstream blocks on any error.
    Unavailable(String),
    /// The DatadogMonitor CRD is not installed in the cluster.
    CrdMissing,
    Found(MonitorState),
}

impl MonitorObservation {
    /// Whether the monitor lets the WPA proceed (only a monitor in `OK` state does).
    pub fn allows(&self) -> bool {
        matches!(self, MonitorObservation::Found(MonitorState::Ok))
    }
}

/// A DatadogMonitor's `status.monitorState`, as the Datadog Operator writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MonitorState {
    Ok,
    Alert,
    Warn,
    NoData,
    /// Any other state (`Unknown`, `Skipped`, `Ignored`, ...), as written.
    Other(String),
    /// No state yet.
    Unset,
}

impl MonitorState {
    pub fn parse(state: Option<&str>) -> MonitorState {
        match state {
            None => MonitorState::Unset,
            Some("OK") => MonitorState::Ok,
            Some("Alert") => MonitorState::Alert,
            Some("Warn") => MonitorState::Warn,
            Some("No Data") => MonitorState::NoData,
            Some(other) => MonitorState::Other(other.to_string()),
        }
    }

    /// The state as the operator writes it (`None` when unset).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MonitorState::Ok => Some("OK"),
            MonitorState::Alert => Some("Alert"),
            MonitorState::Warn => Some("Warn"),
            MonitorState::NoData => Some("No Data"),
            MonitorState::Other(s) => Some(s),
            MonitorState::Unset => None,
        }
    }
}

/// Why the target's `/scale` could not be read; the message carries upstream's words for the condition and
/// the event, the kind decides how soon to try again.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TargetError {
    pub kind: TargetErrorKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetErrorKind {
    /// `scaleTargetRef.apiVersion` is not a group/version.
    BadApiVersion,
    /// API discovery does not serve the kind (yet).
    UnknownKind,
    /// The `/scale` subresource could not be read: the object is absent, or the GET failed.
    ScaleUnavailable,
}

impl TargetError {
    pub(crate) fn new(kind: TargetErrorKind, message: impl Into<String>) -> Self {
        TargetError { kind, message: message.into() }
    }

    /// Upstream's requeue after the error: 10 s when the scale could not be read, 1 s otherwise.
    pub(crate) fn backoff(&self) -> Duration {
        match self.kind {
            TargetErrorKind::ScaleUnavailable => Duration::from_secs(10),
            TargetErrorKind::BadApiVersion | TargetErrorKind::UnknownKind => Duration::from_secs(1),
        }
    }
}

/// Everything one pass needs besides the WPA itself.
#[derive(Clone, Debug)]
pub struct Observation<'a> {
    /// The `/scale` subresource, or why it could not be read.
    pub target: Result<ScaleInfo, TargetError>,
    /// The pods selected by the scale's selector, or why the selector could not be used.
    pub pods: Result<&'a [PodInfo], String>,
    pub metrics: &'a [MetricObservation],
    /// The recommender's answer, when the WPA uses one.
    pub recommendation: Option<Result<Recommendation, String>>,
    pub monitor: MonitorObservation,
    /// The HorizontalPodAutoscalers that scale the same target (`namespace/name`).
    pub conflicts: &'a [String],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    External,
    Resource,
    Recommender,
}

/// One metric of the pass.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricOutcome {
    pub kind: MetricKind,
    /// The Prometheus `metric_name`: the bare metric name, the resource name, or the recommender's name.
    pub name: String,
    /// The name in conditions and events, e.g. `deadbeef{map[label:value]}`.
    pub display_name: String,
    pub high_milli: i64,
    pub low_milli: i64,
    /// `None`: the metric has no source and is skipped.
    pub result: Option<Result<MetricResult, String>>,
    /// Position in `spec.metrics` (0 for a recommender).
    pub index: usize,
}

/// When to run again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Only a change of the object brings it back (invalid spec).
    Done,
    /// At once.
    Requeue,
    RequeueAfter(Duration),
}

/// What a controller returns after a pass, in controller-runtime's terms (`reconcile.Result`): requeue at
/// once, after a delay, or not (a zero delay without `requeue` is no requeue, as there).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ControllerResult {
    pub requeue: bool,
    pub requeue_after: Duration,
}

impl Action {
    /// The controller's result with `sync_period` as the period of passes ([`SYNC_PERIOD`] stands for it).
    pub fn controller_result(self, sync_period: Duration) -> ControllerResult {
        match self {
            Action::Done => ControllerResult::default(),
            Action::Requeue => ControllerResult { requeue: true, requeue_after: Duration::ZERO },
            Action::RequeueAfter(d) if d == SYNC_PERIOD => {
                ControllerResult { requeue: false, requeue_after: sync_period }
            }
            Action::RequeueAfter(d) => ControllerResult { requeue: false, requeue_after: d },
        }
    }
}

/// A Kubernetes Event about the WPA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    /// Upstream's reason (`Scaling`, `FailedGetExternalMetric`, ...).
    pub reason: &'static str,
    pub message: String,
    /// The Event's `action`: `Scale` for a scale, `Reconcile` for everything else.
    pub action: &'static str,
    /// The condition whose transition this event reports; events tied to an unchanged condition are
    /// dropped, so a persisting problem does not emit an event every period.
    condition: Option<&'static str>,
}

impl Event {
    /// A Warning event the reconciler reports itself (not tied to a condition).
    pub fn warning(reason: &'static str, message: String) -> Event {
        Event { warning: true, reason, message, action: "Reconcile", condition: None }
    }
}

/// A gauge of upstream's `wpa_controller_*` set, and ours (the exporter adds the base labels and, for a
/// metric's series, `metric_name`; it also writes the misspelled twins of the watermarks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Series {
    Value,
    HighWatermark,
    LowWatermark,
    ReplicasScalingProposal,
    ReplicasScalingEffective,
    RestrictedScaling,
    TransitionCountdown,
    MinReplicas,
    MaxReplicas,
    DryRun,
    ScalingActive,
    Conditions,
    LabelsInfo,
    LifecycleControlStatus,
    /// Ours (`wpa_current_replicas`): the target's status.replicas, which upstream exports nowhere.
    CurrentReplicas,
    /// Ours (`wpa_fallback_active`): 1 while the fallback decides the count (WPAs with a fallback only).
    FallbackActive,
}

impl Series {
    pub(crate) const ALL: [Series; 16] = [
        Series::Value,
        Series::HighWatermark,
        Series::LowWatermark,
        Series::ReplicasScalingProposal,
        Series::ReplicasScalingEffective,
        Series::RestrictedScaling,
        Series::TransitionCountdown,
        Series::MinReplicas,
        Series::MaxReplicas,
        Series::DryRun,
        Series::ScalingActive,
        Series::Conditions,
        Series::LabelsInfo,
        Series::LifecycleControlStatus,
        Series::CurrentReplicas,
        Series::FallbackActive,
    ];

    /// The exported name: upstream's under `wpa_controller_`, ours under `wpa_` (kept out of the
    /// `wpa_controller*` series that upstream's Datadog check collects).
    pub fn metric_name(self) -> String {
        match self {
            Series::CurrentReplicas => "wpa_current_replicas".into(),
            Series::FallbackActive => "wpa_fallback_active".into(),
            upstream => format!("wpa_controller_{}", upstream.name()),
        }
    }

    /// The name without its prefix.
    pub fn name(self) -> &'static str {
        match self {
            Series::Value => "value",
            Series::HighWatermark => "high_watermark",
            Series::LowWatermark => "low_watermark",
            Series::ReplicasScalingProposal => "replicas_scaling_proposal",
            Series::ReplicasScalingEffective => "replicas_scaling_effective",
            Series::RestrictedScaling => "restricted_scaling",
            Series::TransitionCountdown => "transition_countdown",
            Series::MinReplicas => "min_replicas",
            Series::MaxReplicas => "max_replicas",
            Series::DryRun => "dry_run",
            Series::ScalingActive => "scaling_active",
            Series::Conditions => "conditions",
            Series::LabelsInfo => "labels_info",
            Series::LifecycleControlStatus => "lifecycle_control_status",
            Series::CurrentReplicas => "current_replicas",
            Series::FallbackActive => "fallback_active",
        }
    }

    /// Upstream's misspelled twin, written with the same value (dashboards use both).
    pub(crate) fn twin(self) -> Option<&'static str> {
        match self {
            Series::HighWatermark => Some("high_watermak"),
            Series::LowWatermark => Some("low_watermak"),
            _ => None,
        }
    }

    pub(crate) fn help(self) -> &'static str {
        match self {
            Series::Value => "Usage of the metric (milli; recommender: observed value × 1000)",
            Series::HighWatermark => "High watermark of the metric (milli)",
            Series::LowWatermark => "Low watermark of the metric (milli)",
            Series::ReplicasScalingProposal => "Replica count proposed by the metric",
            Series::ReplicasScalingEffective => "Replica count decided",
            Series::RestrictedScaling => "1 while the named restriction holds",
            Series::TransitionCountdown => "Seconds until the forbidden window of the transition ends",
            Series::MinReplicas => "spec.minReplicas",
            Series::MaxReplicas => "spec.maxReplicas",
            Series::DryRun => "1 when the WPA is in dry-run mode",
            Series::ScalingActive => "1 when the ScalingActive condition is True",
            Series::Conditions => "1 when the condition is True",
            Series::LabelsInfo => "The WPA's labels listed in --labels-as-tags",
            Series::LifecycleControlStatus => "1 while the DatadogMonitor blocks the WPA, 0 when it is OK",
            Series::CurrentReplicas => "The target's status.replicas at the WPA's last pass",
            Series::FallbackActive => {
                "1 while every metric has failed for longer than fallback-after and the fallback sets the count"
            }
        }
    }
}

/// A counter of upstream's set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    UpscaleReplicas,
    DownscaleReplicas,
}

impl Counter {
    /// The name without the `wpa_controller_` prefix.
    pub fn name(self) -> &'static str {
        match self {
            Counter::UpscaleReplicas => "upscale_replicas_total",
            Counter::DownscaleReplicas => "downscale_replicas_total",
        }
    }
}

/// A gauge value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub series: Series,
    /// For a metric's series: its index in [`Decision::metrics`].
    pub metric: Option<usize>,
    /// One more label with a fixed value (`reason`, `transition`, `condition`, `lifecycle_status`).
    pub label: Option<(&'static str, &'static str)>,
    pub value: f64,
}

/// A counter increment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Increment {
    pub counter: Counter,
    pub value: u64,
}

/// Series to delete: every series of `series` for this WPA (and of this metric when given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Removal {
    pub series: Series,
    pub metric: Option<usize>,
}

/// Why the count was forced regardless of windows and delays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forced {
    TargetAtZero,
    AboveMax,
    BelowMin,
    NoReplicas,
}

/// The combined proposal of all metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Combined {
    pub replicas: i32,
    pub winner: Option<usize>,
    pub ready_replicas: i32,
    pub display_name: String,
    pub is_above: bool,
    pub is_below: bool,
    pub details: String,
}

/// A metric that failed: it aborts the whole computation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CombineError {
    pub index: usize,
    /// `FailedGetExternalMetric` or `FailedGetResourceMetric` (also for recommenders, as upstream).
    pub reason: &'static str,
    /// The calculator's error.
    pub cause: String,
    /// The wrapped error, e.g. `failed to compute replicas based on external metric x: ...`.
    pub message: String,
}

/// A `/scale` write the pass decided: `spec.replicas` from `from` to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleIntent {
    pub from: i32,
    pub to: i32,
}

/// What became of a decision's [`ScaleIntent`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScaleResult {
    /// The decision has no intent (no scale, or dry-run): nothing was written.
    NotNeeded,
    /// `/scale` now holds `to` (or already did).
    Written,
    /// The API server refused the write (it did not happen), in these words.
    Failed(String),
    /// Whether the write happened is unknown (no answer, or a 5xx), in these words: the record of the scale
    /// stays, so that no other scale is made inside the forbidden window (the write may have landed).
    Unknown(String),
}

/// What the reconciler applies after a pass: the status (written only when it changed), the events, the
/// series, and when to run again.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub status: WatermarkPodAutoscalerStatus,
    /// Whether `status` differs from the stored one (write it only then).
    pub status_changed: bool,
    pub events: Vec<Event>,
    pub gauges: Vec<Sample>,
    pub counters: Vec<Increment>,
    pub removals: Vec<Removal>,
    pub action: Action,
    /// The replica count the target was scaled to by this pass.
    pub scaled_to: Option<i32>,
}

/// Everything one pass decided. The status, events and series are an [`Outcome`] only once the `/scale`
/// write of [`Decision::scale`] (if any) is known: [`Decision::settle`].
#[derive(Clone, Debug, PartialEq)]
pub struct Decision<'a> {
    /// The spec as used: the plan's (defaults and missing watermarks filled in, in memory only).
    pub spec: &'a WatermarkPodAutoscalerSpec,
    /// Upstream's validation message when the spec is invalid.
    pub invalid: Option<String>,
    pub metrics: Vec<MetricOutcome>,
    pub combined: Option<Result<Combined, CombineError>>,
    pub normalized: Option<Normalized>,
    pub gate: Option<Gate>,
    pub forced: Option<Forced>,
    /// The target's pods as the readiness rules count them (when the target and its pods were read).
    pub pods: Option<ReadyCount>,
    /// Where a WPA with a fallback stands (`None`: no fallback, or the pass did not get to the metrics).
    pub fallback: Option<FallbackState>,
    /// The final replica count (`status.desiredReplicas` unless the metrics failed).
    pub desired: i32,
    /// Whether a scale was decided (also in dry-run).
    pub rescale: bool,
    /// The `/scale` write to make (`None` in dry-run or when not scaling).
    pub scale: Option<ScaleIntent>,
    /// The engine's words for what happened.
    pub reason: String,
    /// The outcome as it stands before the `/scale` write.
    pub(super) draft: Outcome,
    pub(super) now: Timestamp,
}

impl<'a> Decision<'a> {
    pub(super) fn new(
        spec: &'a WatermarkPodAutoscalerSpec,
        mut status: WatermarkPodAutoscalerStatus,
        now: Timestamp,
    ) -> Self {
        // One allocation for every condition a pass may set, instead of growing through 4 and 8.
        status.conditions.reserve(conditions::TYPES.len().saturating_sub(status.conditions.len()));
        Decision {
            spec,
            invalid: None,
            metrics: Vec::new(),
            combined: None,
            normalized: None,
            gate: None,
            forced: None,
            pods: None,
            fallback: None,
            desired: 0,
            rescale: false,
            scale: None,
            reason: String::new(),
            draft: Outcome {
                status,
                status_changed: false,
                events: Vec::new(),
                gauges: Vec::new(),
                counters: Vec::new(),
                removals: Vec::new(),
                action: Action::RequeueAfter(SYNC_PERIOD),
                scaled_to: None,
            },
            now,
        }
    }

    /// The status as decided so far (before any `/scale` write).
    pub(crate) fn status(&self) -> &WatermarkPodAutoscalerStatus {
        &self.draft.status
    }

    pub(super) fn status_mut(&mut self) -> &mut WatermarkPodAutoscalerStatus {
        &mut self.draft.status
    }

    pub(super) fn set(&mut self, type_: &'static str, value: bool, reason: &str, message: &str) {
        set_condition(&mut self.draft.status, type_, value, reason, message, self.now);
    }

    /// [`Self::set`] with any status (`Unknown`).
    pub(super) fn set_to(&mut self, type_: &'static str, value: &str, reason: &str, message: &str) {
        conditions::set_condition_to(&mut self.draft.status, type_, value, reason, message, self.now);
    }

    pub(super) fn gauge(&mut self, series: Series, label: Option<(&'static str, &'static str)>, value: f64) {
        self.draft.gauges.push(Sample { series, metric: None, label, value });
    }

    pub(super) fn reserve_gauges(&mut self, n: usize) {
        self.draft.gauges.reserve(n);
    }

    pub(super) fn metric_gauge(&mut self, series: Series, metric: usize, value: f64) {
        self.draft.gauges.push(Sample { series, metric: Some(metric), label: None, value });
    }

    pub(super) fn remove(&mut self, series: Series, metric: Option<usize>) {
        self.draft.removals.push(Removal { series, metric });
    }

    pub(super) fn event(
        &mut self,
        warning: bool,
        reason: &'static str,
        message: String,
        condition: Option<&'static str>,
    ) {
        self.draft.events.push(Event { warning, reason, message, action: "Reconcile", condition });
    }

    pub(super) fn requeue_after(&mut self, after: Duration) {
        self.draft.action = Action::RequeueAfter(after);
    }

    pub(super) fn done(&mut self) {
        self.draft.action = Action::Done;
    }

    /// The outcome of the pass once `result` of its `/scale` write is known. A written scale is recorded
    /// (`lastScaleTime`, `desiredReplicas`, the event and counters); a failed one leaves the count decided
    /// before it and reports the failure instead. The result is ignored when [`Decision::scale`] is `None`.
    pub fn settle(&self, wpa: &WatermarkPodAutoscaler, result: ScaleResult) -> Outcome {
        let mut out = self.draft.clone();
        let now = self.now;
        let set = |out: &mut Outcome, type_, value, reason: &str, message: &str| {
            set_condition(&mut out.status, type_, value, reason, message, now)
        };
        let mut failed = false;
        match (self.scale, result) {
            (None, _) | (Some(_), ScaleResult::NotNeeded) => {}
            (Some(ScaleIntent { from, to }), ScaleResult::Written) => {
                out.status.desired_replicas = to;
                out.status.last_scale_time = Some(Time(now));
                out.status.scaling_events_count += 1;
                let msg = format!("the WPA controller was able to update the target scale to {to}");
                set(&mut out, ABLE_TO_SCALE, true, text::SUCCESSFUL_SCALE, &msg);
                out.events.push(Event {
                    warning: false,
                    reason: "Scaling",
                    message: format!("New size: {to}; reason: {}", self.reason),
                    action: "Scale",
                    condition: None,
                });
                let (counter, value) = if to > from {
                    (Counter::UpscaleReplicas, to - from)
                } else {
                    (Counter::DownscaleReplicas, from - to)
                };
                if value > 0 {
                    out.counters.push(Increment { counter, value: value.unsigned_abs().into() });
                }
                out.scaled_to = Some(to);
            }
            (Some(ScaleIntent { to, .. }), ScaleResult::Unknown(error)) => {
                out.status.desired_replicas = to;
                out.status.last_scale_time = Some(Time(now));
                out.events.push(Event {
                    warning: true,
                    reason: text::FAILED_SCALE,
                    message: format!(
                        "New size: {to}; reason: {}; error: {error}; the write may have been applied: no other scale before the forbidden window has passed",
                        self.reason
                    ),
                    action: "Reconcile",
                    condition: None,
                });
                let msg = format!(
                    "the WPA controller cannot tell whether the target scale was updated to {to} ({error}): the forbidden window counts from this attempt"
                );
                set(&mut out, ABLE_TO_SCALE, false, text::FAILED_SCALE, &msg);
                failed = true;
            }
            (Some(ScaleIntent { to, .. }), ScaleResult::Failed(error)) => {
                out.events.push(Event {
                    warning: true,
                    reason: text::FAILED_SCALE,
                    message: format!("New size: {to}; reason: {}; error: {error}", self.reason),
                    action: "Reconcile",
                    condition: None,
                });
                let msg = format!("the WPA controller was unable to update the target scale: {error}");
                set(&mut out, ABLE_TO_SCALE, false, text::FAILED_SCALE, &msg);
                failed = true;
            }
        }
        finish(&mut out, wpa);
        // A failed write is always worth recording.
        out.status_changed |= failed;
        out
    }
}

/// Seals a pass: observedGeneration, the scaling_active and conditions gauges, change detection and the
/// transition filter on events.
fn finish(out: &mut Outcome, wpa: &WatermarkPodAutoscaler) {
    if wpa.metadata.generation.is_some() {
        out.status.observed_generation = wpa.metadata.generation;
    }
    let bit = |b: bool| if b { 1.0 } else { 0.0 };
    let active = is_true(&out.status, SCALING_ACTIVE);
    out.gauges.push(Sample { series: Series::ScalingActive, metric: None, label: None, value: bit(active) });
    // Upstream's three, and ours: an alert on a WPA fighting another autoscaler needs a series (only WPAs
    // that ever had the condition export it).
    for (type_, label) in [
        (ABLE_TO_SCALE, "able_to_scale"),
        (SCALING_LIMITED, "scaling_limited"),
        (SCALING_BLOCKED, "scaling_blocked"),
        (CONFLICTING_AUTOSCALER, "conflicting_autoscaler"),
    ] {
        if get_condition(&out.status, type_).is_some() {
            out.gauges.push(Sample {
                series: Series::Conditions,
                metric: None,
                label: Some(("condition", label)),
                value: bit(is_true(&out.status, type_)),
            });
        }
    }
    let default_status = WatermarkPodAutoscalerStatus::default();
    let original = wpa.status.as_ref().unwrap_or(&default_status);
    keep_transition_times(&mut out.status, original);
    out.status_changed = out.status != *original;
    let status = &out.status;
    out.events.retain(|e| match e.condition {
        None => true,
        Some(t) => {
            let key = |s: &WatermarkPodAutoscalerStatus| {
                conditions::get_condition(s, t)
                    .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
            };
            key(original) != key(status)
        }
    });
}

/// A condition that ends the pass with the status it was stored with keeps its stored `lastTransitionTime`.
/// Upstream sets conditions one after the other on the same object, so one that flips and flips back within
/// a pass (AbleToScale: `SucceededGetScale`, then `BackoffDownscale`) gets a new transition time that does
/// not mark any transition, and a status write every pass. Our change: the time only moves when the status
/// written differs from the status stored.
fn keep_transition_times(status: &mut WatermarkPodAutoscalerStatus, original: &WatermarkPodAutoscalerStatus) {
    let mut moved = false;
    for c in &mut status.conditions {
        if let Some(o) = get_condition(original, &c.type_)
            && o.status == c.status
            && o.last_transition_time != c.last_transition_time
        {
            c.last_transition_time = o.last_transition_time.clone();
            moved = true;
        }
    }
    if moved {
        conditions::sort_newest_first(&mut status.conditions);
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
