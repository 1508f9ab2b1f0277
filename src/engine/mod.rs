//! The decision engine: pure (no I/O; the clock is an argument), shared by the reconciler, the webhook
//! (validation and defaults) and `wpa simulate`.
//!
//! One reconcile pass is [`decide`]: given a WPA and what the reconciler observed (the target's scale, its
//! pods, the metric values, the DatadogMonitor), it returns the whole [`Decision`]: each metric's proposal and
//! position, the winner, the normalized count and the limit that applied, whether scaling is allowed now and
//! why not, the forced corrections, the status to write, the events to emit, the gauge values and when to
//! run again. The reconciler only gathers the inputs and applies the outputs.

pub mod calc;
pub mod conditions;
pub mod gate;
pub mod limits;
pub mod pods;
pub mod recommender;
pub mod validation;

use std::{borrow::Cow, collections::BTreeMap, time::Duration};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::ResourceExt;

use crate::{
    api::quantity::Quantity,
    api::selector,
    api::{
        ExternalMetricStatus, MetricSpec, MetricStatus, ResourceMetricStatus, WatermarkPodAutoscaler,
        WatermarkPodAutoscalerSpec, WatermarkPodAutoscalerStatus, annotations,
    },
};
use calc::{CalcSpec, ExternalSample, MetricResult, Recommendation, ScaleInfo};
use conditions::{text, *};
use gate::{Gate, GateInput, WatermarkCondition};
use limits::{Bounds, Limit, Normalized};
use pods::PodInfo;

/// An error of the replica calculator, with upstream's wording.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CalcError(pub String);

impl CalcError {
    pub fn new(msg: impl Into<String>) -> Self {
        CalcError(msg.into())
    }
}

/// Upstream's fixed reconcile period.
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);

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
    Found {
        state: Option<String>,
    },
}

/// Everything one pass needs besides the WPA itself.
#[derive(Clone, Debug)]
pub struct Observation<'a> {
    /// The `/scale` subresource, or why it could not be read (bad apiVersion, unknown kind, scale GET error).
    pub target: Result<ScaleInfo, String>,
    /// The pods selected by the scale's selector, or why the selector could not be used.
    pub pods: Result<&'a [PodInfo], String>,
    pub metrics: &'a [MetricObservation],
    /// The recommender's answer, when the WPA uses one.
    pub recommendation: Option<Result<Recommendation, String>>,
    pub monitor: MonitorObservation,
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: String,
    pub message: String,
    /// The condition whose transition this event reports; events tied to an unchanged condition are
    /// dropped, so a persisting problem does not emit an event every period.
    condition: Option<&'static str>,
}

/// A gauge value. The exporter adds the base labels (WPA, target, dry-run) and, for a metric's series,
/// `metric_name`; it also writes upstream's misspelled twins (`*_watermak`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Name without the `wpa_controller_` prefix.
    pub name: &'static str,
    /// For a metric's series: its index in [`Decision::metrics`].
    pub metric: Option<usize>,
    /// One more label with a fixed value (`reason`, `transition`, `condition`, `lifecycle_status`).
    pub label: Option<(&'static str, &'static str)>,
    pub value: f64,
}

/// Series to delete: every series of `name` for this WPA (and of this metric when given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Removal {
    pub name: &'static str,
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

/// Everything one pass decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision<'a> {
    /// The status to write (assuming a decided `/scale` write succeeds; see [`Decision::scale_failed`]).
    pub status: WatermarkPodAutoscalerStatus,
    /// Whether `status` differs from the stored one (write it only then).
    pub status_changed: bool,
    /// The spec as used: defaults and missing watermarks filled in, in memory only.
    pub spec: Cow<'a, WatermarkPodAutoscalerSpec>,
    /// Upstream's validation message when the spec is invalid.
    pub invalid: Option<String>,
    pub metrics: Vec<MetricOutcome>,
    pub combined: Option<Result<Combined, CombineError>>,
    pub normalized: Option<Normalized>,
    pub gate: Option<Gate>,
    pub forced: Option<Forced>,
    /// The final replica count (`status.desiredReplicas` unless the metrics failed).
    pub desired: i32,
    /// Whether a scale was decided (also in dry-run).
    pub rescale: bool,
    /// The replica count to write to `/scale` (`None` in dry-run or when not scaling).
    pub scale_to: Option<i32>,
    /// The engine's words for what happened.
    pub reason: String,
    pub events: Vec<Event>,
    pub gauges: Vec<Sample>,
    /// Counter increments.
    pub counters: Vec<Sample>,
    pub removals: Vec<Removal>,
    pub action: Action,
    before_write: Option<WatermarkPodAutoscalerStatus>,
    now: Timestamp,
}

impl<'a> Decision<'a> {
    fn new(
        spec: Cow<'a, WatermarkPodAutoscalerSpec>,
        status: WatermarkPodAutoscalerStatus,
        now: Timestamp,
    ) -> Self {
        Decision {
            status,
            status_changed: false,
            spec,
            invalid: None,
            metrics: Vec::new(),
            combined: None,
            normalized: None,
            gate: None,
            forced: None,
            desired: 0,
            rescale: false,
            scale_to: None,
            reason: String::new(),
            events: Vec::new(),
            gauges: Vec::new(),
            counters: Vec::new(),
            removals: Vec::new(),
            action: Action::RequeueAfter(SYNC_PERIOD),
            before_write: None,
            now,
        }
    }

    fn set(&mut self, type_: &'static str, value: bool, reason: &str, message: &str) {
        set_condition(&mut self.status, type_, value, reason, message, self.now);
    }

    fn gauge(&mut self, name: &'static str, label: Option<(&'static str, &'static str)>, value: f64) {
        self.gauges.push(Sample { name, metric: None, label, value });
    }

    fn metric_gauge(&mut self, name: &'static str, metric: usize, value: f64) {
        self.gauges.push(Sample { name, metric: Some(metric), label: None, value });
    }

    fn event(&mut self, warning: bool, reason: &str, message: String, condition: Option<&'static str>) {
        self.events.push(Event { warning, reason: reason.to_string(), message, condition });
    }

    /// Seals the pass: observedGeneration, the scaling_active gauge, change detection and the
    /// transition filter on events.
    fn finish(mut self, wpa: &WatermarkPodAutoscaler) -> Self {
        if wpa.metadata.generation.is_some() {
            self.status.observed_generation = wpa.metadata.generation;
        }
        let active = is_true(&self.status, SCALING_ACTIVE);
        self.gauge("scaling_active", None, if active { 1.0 } else { 0.0 });
        for (type_, label) in [
            (ABLE_TO_SCALE, "able_to_scale"),
            (SCALING_LIMITED, "scaling_limited"),
            (SCALING_BLOCKED, "scaling_blocked"),
        ] {
            if get_condition(&self.status, type_).is_some() {
                let v = if is_true(&self.status, type_) { 1.0 } else { 0.0 };
                self.gauge("conditions", Some(("condition", label)), v);
            }
        }
        let default_status = WatermarkPodAutoscalerStatus::default();
        let original = wpa.status.as_ref().unwrap_or(&default_status);
        keep_transition_times(&mut self.status, original);
        self.status_changed = self.status != *original;
        let status = &self.status;
        self.events.retain(|e| match e.condition {
            None => true,
            Some(t) => {
                let key = |s: &WatermarkPodAutoscalerStatus| {
                    get_condition(s, t).map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
                };
                key(original) != key(status)
            }
        });
        self
    }

    /// The `/scale` write failed: the status records the failure instead of the scale.
    pub fn scale_failed(&mut self, error: &str) {
        let Some(replicas) = self.scale_to.take() else {
            return;
        };
        if let Some(before) = self.before_write.take() {
            self.status = before;
        }
        self.events.retain(|e| e.reason != "Scaling");
        self.counters.clear();
        self.event(
            true,
            text::FAILED_SCALE,
            format!("New size: {replicas}; reason: {}; error: {error}", self.reason),
            None,
        );
        let msg = format!("the WPA controller was unable to update the target scale: {error}");
        self.set(ABLE_TO_SCALE, false, text::FAILED_SCALE, &msg);
        self.rescale = false;
        // A failed write is always worth recording.
        self.status_changed = true;
    }
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
        status.conditions.sort_by(|a, b| {
            let ta = a.last_transition_time.as_ref().map(|t| t.0);
            let tb = b.last_transition_time.as_ref().map(|t| t.0);
            tb.cmp(&ta)
        });
    }
}

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

/// Go's `%v` of a `*metav1.Time`.
fn go_time(t: Option<&Time>) -> String {
    match t {
        None => "<nil>".into(),
        Some(t) => {
            jiff::fmt::strtime::format("%Y-%m-%d %H:%M:%S +0000 UTC", t.0).unwrap_or_else(|_| t.0.to_string())
        }
    }
}

fn milli(q: &Option<Quantity>) -> i64 {
    q.as_ref().map_or(0, Quantity::milli)
}

/// The display name of an External or Resource metric: `<name>{map[k:v]}`.
fn metric_display_name(name: &str, selector: Option<&LabelSelector>) -> String {
    format!("{name}{{{}}}", selector::go_map_string(selector.and_then(|s| s.match_labels.as_ref())))
}

/// Runs the calculator for each metric of the spec (or the recommender).
#[allow(clippy::too_many_arguments)]
pub fn compute_outcomes(
    spec: &WatermarkPodAutoscalerSpec,
    calc_spec: &CalcSpec,
    wpa_namespace: &str,
    scale: &ScaleInfo,
    pods: Result<&[PodInfo], &str>,
    metrics: &[MetricObservation],
    recommendation: Option<Result<&Recommendation, &str>>,
    now: Timestamp,
) -> Vec<MetricOutcome> {
    let pods_err = |e: &str| format!("could not parse the labels of the target: {e}");
    if let Some(reco) = &spec.recommender {
        let name = recommender::display_name(reco);
        let result = if reco.high_watermark.is_none() || reco.low_watermark.is_none() {
            Err("the recommender needs both highWatermark and lowWatermark (they are sent as the target's bounds)".to_string())
        } else {
            match pods {
                Err(e) => Err(pods_err(e)),
                Ok(pods) => {
                    let reply = recommendation.unwrap_or(Err("no recommendation was fetched"));
                    calc::recommender(calc_spec, scale, pods, &name, reply, now).map_err(|e| e.0)
                }
            }
        };
        return vec![MetricOutcome {
            kind: MetricKind::Recommender,
            display_name: name.clone(),
            name,
            high_milli: milli(&reco.high_watermark),
            low_milli: milli(&reco.low_watermark),
            result: Some(result),
            index: 0,
        }];
    }
    let specs = spec.metrics.as_deref().unwrap_or_default();
    // Counted once for all the External metrics of the pass.
    let ready = std::cell::OnceCell::new();
    specs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let obs = metrics.get(i).unwrap_or(&MetricObservation::Skipped);
            match (m.type_.as_str(), &m.external, &m.resource) {
                ("External", Some(e), _) => {
                    let (high, low) = (milli(&e.high_watermark), milli(&e.low_watermark));
                    let result = match (pods, obs) {
                        (Err(err), _) => Err(pods_err(err)),
                        (Ok(pods), MetricObservation::External(sample)) => calc::external_with_ready(
                            calc_spec,
                            scale,
                            ready
                                .get_or_init(|| calc::ready_replicas_for_target(calc_spec, scale, pods, now))
                                .clone(),
                            wpa_namespace,
                            &e.metric_name,
                            e.metric_selector.as_ref(),
                            sample.as_ref().map_err(String::as_str),
                            (low, high),
                        )
                        .map_err(|e| e.0),
                        (Ok(_), _) => Err("the external metric was not fetched".into()),
                    };
                    MetricOutcome {
                        kind: MetricKind::External,
                        name: e.metric_name.clone(),
                        display_name: metric_display_name(&e.metric_name, e.metric_selector.as_ref()),
                        high_milli: high,
                        low_milli: low,
                        result: Some(result),
                        index: i,
                    }
                }
                ("Resource", _, Some(r)) => {
                    let (high, low) = (milli(&r.high_watermark), milli(&r.low_watermark));
                    let result = match (pods, obs) {
                        (Err(err), _) => Err(pods_err(err)),
                        (Ok(pods), MetricObservation::Resource(usage)) => calc::resource(
                            calc_spec,
                            scale,
                            pods,
                            wpa_namespace,
                            &r.name,
                            r.metric_selector.as_ref(),
                            usage.as_ref().map_err(String::as_str),
                            (low, high),
                        )
                        .map_err(|e| e.0),
                        (Ok(_), _) => Err("the resource metric was not fetched".into()),
                    };
                    MetricOutcome {
                        kind: MetricKind::Resource,
                        name: r.name.clone(),
                        display_name: metric_display_name(&r.name, r.metric_selector.as_ref()),
                        high_milli: high,
                        low_milli: low,
                        result: Some(result),
                        index: i,
                    }
                }
                _ => MetricOutcome {
                    kind: if m.type_ == "Resource" { MetricKind::Resource } else { MetricKind::External },
                    name: String::new(),
                    display_name: String::new(),
                    high_milli: 0,
                    low_milli: 0,
                    result: None,
                    index: i,
                },
            }
        })
        .collect()
}

/// Combines the metrics (`computeReplicas`): the highest proposal wins, the first on ties; one failing
/// metric aborts the computation.
/// Also returns the `status.currentMetrics` entries, one per metric.
pub fn combine(
    spec: &WatermarkPodAutoscalerSpec,
    outcomes: &[MetricOutcome],
) -> Result<(Combined, Vec<MetricStatus>), CombineError> {
    let mut statuses = Vec::with_capacity(outcomes.len());
    let mut c = Combined {
        replicas: 0,
        winner: None,
        ready_replicas: 0,
        display_name: String::new(),
        is_above: false,
        is_below: false,
        details: String::new(),
    };
    for (i, o) in outcomes.iter().enumerate() {
        let Some(result) = &o.result else {
            statuses.push(MetricStatus::default());
            continue;
        };
        let r = match result {
            Ok(r) => r,
            Err(cause) => {
                let (reason, message) = match o.kind {
                    MetricKind::External => (
                        text::FAILED_GET_EXTERNAL_METRIC,
                        format!("failed to compute replicas based on external metric {}: {cause}", o.name),
                    ),
                    MetricKind::Resource => (
                        text::FAILED_GET_RESOURCE_METRIC,
                        format!("failed to get resource metric {}: {cause}", o.name),
                    ),
                    MetricKind::Recommender => {
                        let url = spec.recommender.as_ref().map_or("", |r| r.url.as_str());
                        (
                            text::FAILED_GET_RESOURCE_METRIC,
                            format!("failed to get the recommendation from {url}: {cause}"),
                        )
                    }
                };
                return Err(CombineError { index: i, reason, cause: cause.clone(), message });
            }
        };
        c.is_above |= r.is_above;
        c.is_below |= r.is_below;
        if c.winner.is_none() || r.replica_count > c.replicas {
            c.replicas = r.replica_count;
            c.winner = Some(i);
            c.ready_replicas = r.ready_replicas;
            c.display_name = o.display_name.clone();
            c.details = r.details.clone();
        }
        let value = Quantity::from_milli(r.utilization);
        statuses.push(match o.kind {
            MetricKind::External => MetricStatus {
                type_: "External".into(),
                external: Some(ExternalMetricStatus {
                    metric_name: o.name.clone(),
                    metric_selector: spec
                        .metrics
                        .as_ref()
                        .and_then(|m| m.get(o.index))
                        .and_then(|m| m.external.as_ref())
                        .and_then(|e| e.metric_selector.clone()),
                    current_value: value,
                    current_average_value: None,
                }),
                resource: None,
            },
            MetricKind::Resource => MetricStatus {
                type_: "Resource".into(),
                external: None,
                resource: Some(ResourceMetricStatus {
                    name: o.name.clone(),
                    current_average_utilization: None,
                    current_average_value: value,
                }),
            },
            // Upstream files the recommender under Resource but fills `external`, so that the `value`
            // printer column shows it.
            MetricKind::Recommender => MetricStatus {
                type_: "Resource".into(),
                external: Some(ExternalMetricStatus {
                    metric_name: o.name.clone(),
                    metric_selector: Some(LabelSelector::default()),
                    current_value: value,
                    current_average_value: None,
                }),
                resource: None,
            },
        });
    }
    Ok((c, statuses))
}

/// The ScalingActive message of a successful computation.
pub fn valid_metric_message(display_name: &str, details: &str) -> String {
    let mut m = format!("the WPA was able to successfully calculate a replica count from {display_name}");
    if !details.is_empty() {
        m.push_str(" because: ");
        m.push_str(details);
    }
    m
}

fn watermark_condition(status: &WatermarkPodAutoscalerStatus, type_: &str) -> Option<WatermarkCondition> {
    get_condition(status, type_).map(|c| WatermarkCondition {
        is_true: c.status == "True",
        last_transition: c.last_transition_time.as_ref().map(|t| t.0),
    })
}

/// Whether lifecycle control is on, as upstream parses the annotation.
fn lifecycle_control(wpa: &WatermarkPodAutoscaler) -> Result<bool, String> {
    match wpa.annotations().get(annotations::LIFECYCLE_CONTROL).map(String::as_str) {
        None | Some("") => Ok(false),
        Some(v) => validation::parse_go_bool(v),
    }
}

/// Whether the reconciler must read the DatadogMonitor for this WPA.
pub fn needs_monitor(wpa: &WatermarkPodAutoscaler) -> bool {
    lifecycle_control(wpa) == Ok(true)
}

/// The spec a pass works with: defaults and missing watermarks filled in, in memory.
pub fn effective_spec(spec: &WatermarkPodAutoscalerSpec) -> Cow<'_, WatermarkPodAutoscalerSpec> {
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

/// One reconcile pass (upstream's `Reconcile` from the status snapshot on, and `reconcileWPA`).
pub fn decide<'a>(wpa: &'a WatermarkPodAutoscaler, obs: &Observation<'_>, now: Timestamp) -> Decision<'a> {
    let namespace = wpa.namespace().unwrap_or_default();
    let name = wpa.name_any();
    // Our decision 1: defaults are applied in memory; the stored spec is never rewritten. Filling a missing
    // watermark first does not change what validation accepts (it only copies a watermark that is set).
    let spec = effective_spec(&wpa.spec);
    let mut d = Decision::new(spec, wpa.status.clone().unwrap_or_default(), now);
    d.set(SCALING_ACTIVE, false, text::FAILED_PROCESS_WPA, text::FAILED_PROCESS_WPA_MSG);

    if let Err(msg) = validation::check_wpa_validity(&d.spec, &namespace, &name) {
        d.set(ABLE_TO_SCALE, false, text::FAILED_SPEC_CHECK, &format!("Invalid WPA specification: {msg}"));
        d.event(true, text::FAILED_SPEC_CHECK, msg.clone(), Some(ABLE_TO_SCALE));
        d.reason = format!("Invalid WPA specification: {msg}");
        d.invalid = Some(msg);
        d.action = Action::Done;
        return d.finish(wpa);
    }

    match lifecycle_control(wpa) {
        Err(e) => d.set(
            SCALING_BLOCKED,
            false,
            text::FAILED_GET_DATADOG_MONITOR,
            &format!("Lifecycle Control is not correctly enabled: {e}"),
        ),
        Ok(true) => {
            let monitor = format!("{namespace}/{name}");
            // The exporter adds monitor_name/monitor_namespace: the monitor is named after the WPA.
            let labels = Some(("lifecycle_status", "blocked"));
            let blocked = match &obs.monitor {
                MonitorObservation::Found { state: Some(s) } if s == "OK" => None,
                MonitorObservation::Found { state: Some(s) } => Some((
                    text::DATADOG_MONITOR_NOT_OK,
                    format!("monitor {monitor} is in {s} state, blocking the WPA from proceeding"),
                    Duration::from_secs(60),
                )),
                MonitorObservation::Found { state: None } => Some((
                    text::DATADOG_MONITOR_NOT_OK,
                    format!("monitor {monitor} state not found, blocking the WPA from proceeding"),
                    Duration::from_secs(60),
                )),
                MonitorObservation::CrdMissing => Some((
                    text::FAILED_GET_DATADOG_MONITOR,
                    format!(
                        "lifecycle control is enabled but the DatadogMonitor CRD (datadogmonitors.datadoghq.com) is not installed, so monitor {monitor} cannot be read; blocking the WPA from proceeding"
                    ),
                    Duration::from_secs(120),
                )),
                MonitorObservation::Unavailable(_) | MonitorObservation::NotRequested => Some((
                    text::FAILED_GET_DATADOG_MONITOR,
                    format!("monitor {monitor} not found, blocking the WPA from proceeding"),
                    Duration::from_secs(120),
                )),
            };
            match blocked {
                None => {
                    d.gauge("lifecycle_control_status", labels, 0.0);
                    let msg = format!("monitor {monitor} is in a OK state, allowing the WPA from proceeding");
                    d.set(SCALING_BLOCKED, false, text::DATADOG_MONITOR_OK, &msg);
                }
                Some((reason, msg, requeue)) => {
                    d.gauge("lifecycle_control_status", labels, 1.0);
                    if reason == text::FAILED_GET_DATADOG_MONITOR {
                        let detail = match &obs.monitor {
                            MonitorObservation::Unavailable(e) => e.clone(),
                            _ => msg.clone(),
                        };
                        d.event(true, text::FAILED_GET_DATADOG_MONITOR, detail, Some(SCALING_BLOCKED));
                    }
                    d.set(SCALING_BLOCKED, true, reason, &msg);
                    d.reason = msg;
                    d.action = Action::RequeueAfter(requeue);
                    return d.finish(wpa);
                }
            }
        }
        Ok(false) => {}
    }

    let scale = match &obs.target {
        Ok(s) => s.clone(),
        Err(e) => {
            d.event(true, text::FAILED_PROCESS_WPA, e.clone(), Some(ABLE_TO_SCALE));
            d.set(ABLE_TO_SCALE, false, text::FAILED_PROCESS_WPA, text::FAILED_PROCESS_WPA_MSG);
            d.reason = e.clone();
            let backoff = if e.contains("scale not found") { 10 } else { 1 };
            d.action = Action::RequeueAfter(Duration::from_secs(backoff));
            return d.finish(wpa);
        }
    };
    let calc_spec =
        CalcSpec::from_spec(&d.spec, pods::should_skip_owner_check(wpa.metadata.annotations.as_ref()));
    let outcomes = compute_outcomes(
        &d.spec,
        &calc_spec,
        &namespace,
        &scale,
        obs.pods.as_ref().map(|p| *p).map_err(String::as_str),
        obs.metrics,
        obs.recommendation.as_ref().map(|r| r.as_ref().map_err(String::as_str)),
        now,
    );
    decide_pass(&mut d, wpa, &scale, outcomes, now);
    d.finish(wpa)
}

/// `reconcileWPA` from a successful scale GET on, with the calculator's results given. The WPA's spec is
/// used as it is (the caller has defaulted it).
pub fn decide_from_results<'a>(
    wpa: &'a WatermarkPodAutoscaler,
    scale: &ScaleInfo,
    outcomes: Vec<MetricOutcome>,
    now: Timestamp,
) -> Decision<'a> {
    let mut d = Decision::new(Cow::Borrowed(&wpa.spec), wpa.status.clone().unwrap_or_default(), now);
    decide_pass(&mut d, wpa, scale, outcomes, now);
    d.finish(wpa)
}

fn decide_pass<'a>(
    d: &mut Decision<'a>,
    wpa: &'a WatermarkPodAutoscaler,
    scale: &ScaleInfo,
    outcomes: Vec<MetricOutcome>,
    now: Timestamp,
) {
    // The spec moves out of the decision for the pass (so the decision can be borrowed mutably) and back.
    let spec = std::mem::replace(&mut d.spec, Cow::Borrowed(&wpa.spec));
    let namespace = wpa.namespace().unwrap_or_default();
    d.gauge("labels_info", None, 1.0);
    let dry_run = spec.dry_run.unwrap_or(false);
    if dry_run {
        d.set(DRY_RUN, true, text::DRY_RUN_ENABLED, text::DRY_RUN_ENABLED_MSG);
    } else {
        d.set(DRY_RUN, false, text::DRY_RUN_DISABLED, text::DRY_RUN_DISABLED_MSG);
    }
    d.gauge("dry_run", None, if dry_run { 1.0 } else { 0.0 });
    d.set(ABLE_TO_SCALE, true, text::SUCCEEDED_GET_SCALE, text::SUCCEEDED_GET_SCALE_MSG);
    let max_replicas = spec.max_replicas.unwrap_or(0);
    d.gauge("min_replicas", None, f64::from(spec.min_replicas.unwrap_or(0)));
    d.gauge("max_replicas", None, f64::from(max_replicas));

    // Per-metric gauges and conditions, in order, up to the first failure (which aborts the pass).
    for (i, o) in outcomes.iter().enumerate() {
        let Some(result) = &o.result else { continue };
        match result {
            Ok(r) => {
                if let Some(c) = r.converge {
                    d.set(CONVERGE_TO_WATERMARK, c.status, c.reason, c.message);
                }
                d.metric_gauge("value", i, r.usage);
                d.metric_gauge("low_watermark", i, o.low_milli as f64);
                d.metric_gauge("high_watermark", i, o.high_milli as f64);
                d.metric_gauge("replicas_scaling_proposal", i, f64::from(r.replica_count));
            }
            Err(cause) => {
                let reason = if o.kind == MetricKind::External {
                    text::FAILED_GET_EXTERNAL_METRIC
                } else {
                    text::FAILED_GET_RESOURCE_METRIC
                };
                d.removals.push(Removal { name: "restricted_scaling", metric: None });
                d.removals.push(Removal { name: "value", metric: Some(i) });
                d.removals.push(Removal { name: "replicas_scaling_proposal", metric: Some(i) });
                d.event(true, reason, cause.clone(), Some(SCALING_ACTIVE));
                let msg = format!("the WPA was unable to compute the replica count: {cause}");
                d.set(SCALING_ACTIVE, false, reason, &msg);
                break;
            }
        }
    }
    let combined = combine(&spec, &outcomes);
    d.metrics = outcomes;
    let combined = match combined {
        Err(e) => {
            d.status.current_replicas = scale.status_replicas;
            d.event(true, "FailedComputeMetricsReplicas", e.message.clone(), Some(SCALING_ACTIVE));
            d.reason = e.message.clone();
            d.desired = d.status.desired_replicas;
            d.combined = Some(Err(e));
            d.spec = spec;
            return;
        }
        Ok(c) => c,
    };
    let (combined, mut metric_statuses) = combined;
    d.set(ABOVE_HIGH_WATERMARK, combined.is_above, text::ABOVE_REASON, text::ABOVE_MSG);
    d.set(BELOW_LOW_WATERMARK, combined.is_below, text::BELOW_REASON, text::BELOW_MSG);
    d.set(
        SCALING_ACTIVE,
        true,
        text::VALID_METRIC_FOUND,
        &valid_metric_message(&combined.display_name, &combined.details),
    );
    let stable = !combined.is_above && !combined.is_below;
    let current = scale.spec_replicas;
    let proposal = combined.replicas.max(0);
    let mut reason = match proposal.cmp(&current) {
        std::cmp::Ordering::Greater => format!("{} above target", combined.display_name),
        std::cmp::Ordering::Less => "All metrics below target".to_string(),
        std::cmp::Ordering::Equal => String::new(),
    };

    let bounds = Bounds {
        min: spec.min_replicas.unwrap_or(0),
        max: max_replicas,
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
    // Our decision 3: each restriction gauge is 1 exactly while it holds.
    let holds = |l: &[Limit]| {
        if normalized.clamped && l.contains(&normalized.limit) { 1.0 } else { 0.0 }
    };
    d.gauge("restricted_scaling", Some(("reason", "downscale_capping")), holds(&[Limit::ScaleDownLimit]));
    d.gauge("restricted_scaling", Some(("reason", "upscale_capping")), holds(&[Limit::ScaleUpLimit]));
    // within_bounds: scaling is held back because every value is inside its band (upstream only ever
    // writes 0 here, from its calculator).
    d.gauge("restricted_scaling", Some(("reason", "within_bounds")), if stable { 1.0 } else { 0.0 });
    let mut desired = normalized.replicas;
    if stable && desired != current {
        reason = "Metric within watermarks, attempting to scale to converge towards watermark".to_string();
    }

    let gate = gate::should_scale(&GateInput {
        current,
        desired,
        stable,
        last_scale_time: d.status.last_scale_time.as_ref().map(|t| t.0),
        downscale_forbidden_window_seconds: spec.downscale_forbidden_window_seconds.unwrap_or(0),
        upscale_forbidden_window_seconds: spec.upscale_forbidden_window_seconds.unwrap_or(0),
        upscale_delay_above_watermark_seconds: spec.upscale_delay_above_watermark_seconds.unwrap_or(0),
        downscale_delay_below_watermark_seconds: spec.downscale_delay_below_watermark_seconds.unwrap_or(0),
        above: watermark_condition(&d.status, ABOVE_HIGH_WATERMARK),
        below: watermark_condition(&d.status, BELOW_LOW_WATERMARK),
        now,
    });
    if let Some((r, m)) = gate.backoff_condition {
        d.set(ABLE_TO_SCALE, false, r, m);
    }
    d.gauge("transition_countdown", Some(("transition", "downscale")), gate.downscale_countdown);
    d.gauge("transition_countdown", Some(("transition", "upscale")), gate.upscale_countdown);
    let mut rescale = gate.allowed;

    // Forced corrections: they ignore windows, delays and rate limits.
    let forced = if scale.spec_replicas == 0 {
        desired = 0;
        rescale = false;
        d.set(SCALING_ACTIVE, false, text::SCALING_DISABLED, text::SCALING_DISABLED_MSG);
        Some(Forced::TargetAtZero)
    } else if current > max_replicas {
        desired = max_replicas;
        reason = "Current number of replicas above Spec.MaxReplicas".into();
        Some(Forced::AboveMax)
    } else if spec.min_replicas.is_some_and(|min| current < min) {
        desired = spec.min_replicas.unwrap_or(1);
        reason = "Current number of replicas below Spec.MinReplicas".into();
        Some(Forced::BelowMin)
    } else if scale.status_replicas == 0 {
        desired = 1;
        reason = "Current number of replicas must be greater than 0".into();
        Some(Forced::NoReplicas)
    } else {
        None
    };
    if matches!(forced, Some(Forced::AboveMax | Forced::BelowMin | Forced::NoReplicas)) {
        rescale = true;
        metric_statuses = wpa.status.as_ref().map(|s| s.current_metrics.clone()).unwrap_or_default();
    }

    d.status.current_replicas = scale.status_replicas;
    d.status.current_metrics = metric_statuses;
    if rescale {
        if reason.is_empty() {
            // Upstream allows the first scale before comparing counts, so it can "scale" to the same count.
            reason = "No timestamp for the lastScale event".into();
        }
        d.set(ABLE_TO_SCALE, true, text::READY_FOR_SCALE, text::READY_FOR_SCALE_MSG);
        let before = d.status.clone();
        d.status.desired_replicas = desired;
        d.status.last_scale_time = Some(Time(now));
        d.status.scaling_events_count += 1;
        if dry_run {
            d.event(
                false,
                "DryRunScaling",
                format!("New size: {desired}; reason: {reason}; dry run: the target was not changed"),
                None,
            );
        } else {
            d.before_write = Some(before);
            d.scale_to = Some(desired);
            d.set(
                ABLE_TO_SCALE,
                true,
                text::SUCCESSFUL_SCALE,
                &format!("the WPA controller was able to update the target scale to {desired}"),
            );
            d.event(false, "Scaling", format!("New size: {desired}; reason: {reason}"), None);
            if desired > current {
                d.counters.push(Sample {
                    name: "upscale_replicas_total",
                    metric: None,
                    label: None,
                    value: f64::from(desired - current),
                });
            } else if desired < current {
                d.counters.push(Sample {
                    name: "downscale_replicas_total",
                    metric: None,
                    label: None,
                    value: f64::from(current - desired),
                });
            }
        }
    } else {
        if is_true(&d.status, SCALING_ACTIVE) {
            // Our decision 7: a condition instead of a NotScaling event every period.
            let target = &spec.scale_target_ref;
            let msg = format!(
                "the WPA was able to successfully calculate a replica count and decided not to scale {}/{}/{} to {desired} (last scale time was {} )",
                target.kind,
                namespace,
                target.name,
                go_time(d.status.last_scale_time.as_ref())
            );
            d.set(SCALING_ACTIVE, true, text::NOT_SCALING, &msg);
        }
        if forced.is_none() {
            reason = gate.blocked.as_ref().map(|b| b.describe()).unwrap_or_default();
        } else {
            reason = text::SCALING_DISABLED_MSG.to_string();
        }
        desired = current;
        d.status.desired_replicas = desired;
    }
    d.gauge("replicas_scaling_effective", None, f64::from(desired));
    d.desired = desired;
    d.rescale = rescale;
    d.reason = reason;
    d.forced = forced;
    d.gate = Some(gate);
    d.normalized = Some(normalized);
    d.combined = Some(Ok(combined));
    d.spec = spec;
}

/// What the finalizer requires before a pass (§6.2 step 3).
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
