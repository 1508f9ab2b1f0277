//! `wpa simulate`: replays a metric series against a WPA offline, through the same engine the reconciler
//! runs, so watermarks can be tuned before deploying.
//!
//! The model: the engine runs every `step` seconds with the latest value of each metric. The target starts
//! with `replicas` ready pods; a scale-up adds pods that become ready `ready_after` seconds later; a
//! scale-down removes the newest pods first. An External metric's value is what the external metrics API
//! would return (the sum of its series); a Resource metric's value is the workload's total usage, spread
//! evenly over its running pods.

pub(crate) mod plot;
pub(crate) mod render;
pub(crate) mod series;

use std::{
    collections::BTreeMap,
    io::IsTerminal,
    path::{Path, PathBuf},
};

use clap::ValueEnum;

use jiff::Timestamp;
use kube::ResourceExt;
use serde::{Serialize, ser::SerializeMap};

use crate::{
    api::{MetricSource, WatermarkPodAutoscaler, WatermarkPodAutoscalerSpec},
    engine::{
        self, MetricObservation, MonitorObservation, Observation, PlainStatus, ScaleResult,
        calc::{Band, ExternalSample, ScaleInfo},
        pods::{ConditionStatus, OwnerKind, OwnerRef, PodInfo, PodPhase, ReadyCondition},
        validation,
    },
};
pub(crate) use series::{InputError, Series, read_series};

#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// Initial replica count (default: minReplicas).
    pub(crate) replicas: Option<i32>,
    /// Seconds between a pod's creation and its readiness.
    pub(crate) ready_after: f64,
    /// Seconds between two engine runs.
    pub(crate) step: f64,
    /// The age past which a metric's last sample is stale, as `wpa serve --metric-max-age` (`None`: no limit).
    pub(crate) metric_max_age: Option<std::time::Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options { replicas: None, ready_after: 0.0, step: 15.0, metric_max_age: None }
    }
}

/// The latest value of each metric, in spec order (a JSON object with the keys in that order).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct MetricValues(pub(crate) Vec<(String, Option<f64>)>);

impl Serialize for MetricValues {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// One engine run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct Step {
    /// Seconds since the first sample.
    pub(crate) t: f64,
    pub(crate) metrics: MetricValues,
    /// The combined proposal of the metrics, before limits (null when the metrics could not be used).
    pub(crate) proposal: Option<i32>,
    /// The engine's final count for this step.
    pub(crate) desired: i32,
    /// Replicas after the step.
    pub(crate) replicas: i32,
    pub(crate) scaled: bool,
    /// The engine's words (upstream's).
    pub(crate) reason: String,
    /// The limit that held the proposal back (`ScaleUpLimit`, `TooManyReplicas`, ...), if any.
    pub(crate) limit: Option<&'static str>,
    /// What happened, in plain words.
    pub(crate) status: String,
    #[serde(skip)]
    pub(crate) plain: PlainStatus,
    /// The value each metric was compared with (per ready pod with `algorithm: average`), metric units.
    #[serde(skip)]
    pub(crate) compared: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub(crate) struct Summary {
    pub(crate) steps: usize,
    pub(crate) duration_seconds: f64,
    pub(crate) scale_ups: usize,
    pub(crate) scale_downs: usize,
    /// Scales a WPA in dry-run mode would have made (it never changes the target).
    pub(crate) dry_run_scale_ups: usize,
    pub(crate) dry_run_scale_downs: usize,
    pub(crate) min_replicas_seen: i32,
    pub(crate) max_replicas_seen: i32,
    pub(crate) seconds_at_max_replicas: f64,
    /// The highest proposal of the metrics, before limits.
    pub(crate) highest_proposal: Option<i32>,
    /// Outside the tolerance band (what makes the engine act), any metric.
    pub(crate) seconds_above_band: f64,
    pub(crate) seconds_below_band: f64,
    /// Outside the watermarks themselves, any metric.
    pub(crate) seconds_above_high_watermark: f64,
    pub(crate) seconds_below_low_watermark: f64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct Report {
    pub(crate) steps: Vec<Step>,
    pub(crate) summary: Summary,
    #[serde(skip)]
    pub(crate) wall_clock_start: Option<f64>,
    /// Seconds between two steps.
    #[serde(skip)]
    pub(crate) step: f64,
    /// Each metric's band, as the engine compares values with it, in spec order.
    #[serde(skip)]
    pub(crate) bands: Vec<(String, Band)>,
    #[serde(skip)]
    pub(crate) average: bool,
    #[serde(skip)]
    pub(crate) min_replicas: i32,
    #[serde(skip)]
    pub(crate) max_replicas: i32,
    #[serde(skip)]
    pub(crate) dry_run: bool,
    /// The WPA's readinessDelaySeconds when it has a cpu metric and every simulated pod becomes Ready
    /// within it (`--ready-after` below it): upstream's cpu rule then ignores every pod for good.
    #[serde(skip)]
    pub(crate) cpu_pods_ready_within_delay: Option<i32>,
    /// The count the target had before the first step (`--replicas`, or minReplicas).
    #[serde(skip)]
    pub(crate) initial_replicas: i32,
}

/// Why a metric fails where the series has an empty value.
const OUTAGE: &str = "no value: the series marks an outage of this metric";

/// The names a series may use for the WPA's metrics, in spec order.
pub(crate) fn metric_names(wpa: &WatermarkPodAutoscaler) -> Vec<String> {
    wpa.spec.metrics.iter().flatten().filter_map(|m| m.source().map(|s| s.name().to_string())).collect()
}

/// The fields of a spec that the API server would drop (its structural schema prunes unknown fields).
#[derive(Default)]
struct UnknownFields {
    /// Each with its path and the known field it most resembles, if any.
    problems: Vec<String>,
    /// The paths of the known fields they resemble: the typed parse reads a misspelled field as missing,
    /// which need not be said twice.
    meant: Vec<String>,
}

impl UnknownFields {
    fn of(wpa: &serde_yaml_ng::Value) -> UnknownFields {
        let mut found = UnknownFields::default();
        let crd = serde_json::to_value(crate::api::crd()).unwrap_or_default();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        if let Some(spec) = wpa.get("spec") {
            found.walk(spec, schema, "spec");
        }
        found
    }

    fn walk(&mut self, value: &serde_yaml_ng::Value, schema: &serde_json::Value, path: &str) {
        use serde_yaml_ng::Value;
        match value {
            Value::Mapping(fields) => {
                // A map without declared properties (labels, preserved fields) takes any key.
                let Some(known) = schema.get("properties").and_then(|p| p.as_object()) else { return };
                for (key, v) in fields.iter().filter_map(|(k, v)| Some((k.as_str()?, v))) {
                    if let Some(s) = known.get(key) {
                        self.walk(v, s, &format!("{path}.{key}"));
                        continue;
                    }
                    let closest = known
                        .keys()
                        .map(|k| (strsim::damerau_levenshtein(&k.to_lowercase(), &key.to_lowercase()), k))
                        .filter(|(d, _)| *d <= 2)
                        .min();
                    let hint = match closest {
                        Some((_, k)) => {
                            self.meant.push(format!("{path}.{k}"));
                            format!(" (did you mean {k}?)")
                        }
                        None => String::new(),
                    };
                    self.problems
                        .push(format!("{path}.{key}: unknown field{hint}; the API server would drop it"));
                }
            }
            Value::Sequence(items) => {
                if let Some(item) = schema.get("items") {
                    for (i, v) in items.iter().enumerate() {
                        self.walk(v, item, &format!("{path}[{i}]"));
                    }
                }
            }
            _ => {}
        }
    }
}

/// The text of an input file, or of stdin for `-`.
pub(crate) fn read_input(path: &Path) -> Result<String, InputError> {
    let read = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    };
    read.map_err(|e| InputError::new(path, None, format!("cannot read: {e}")))
}

/// Reads the WPA a user would `kubectl apply` (`-`: stdin), defaulted and validated as the admission
/// webhook would.
pub(crate) fn read_wpa(path: &Path) -> Result<WatermarkPodAutoscaler, InputError> {
    parse_wpa(path, &read_input(path)?)
}

pub(crate) fn parse_wpa(path: &Path, text: &str) -> Result<WatermarkPodAutoscaler, InputError> {
    use serde::Deserialize;
    let yaml_error = |e: serde_yaml_ng::Error, what: &str| {
        let line = e.location().map(|l| l.line() as u64);
        InputError::new(path, line, format!("{what}: {e}"))
    };
    let mut found = None;
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = serde_yaml_ng::Value::deserialize(doc).map_err(|e| yaml_error(e, "not valid YAML"))?;
        if value.get("kind").and_then(|k| k.as_str()) == Some("WatermarkPodAutoscaler") {
            found = Some(value);
            break;
        }
    }
    let value = found
        .ok_or_else(|| InputError::new(path, None, "no WatermarkPodAutoscaler document in this file"))?;
    let served = format!("{}/{}", crate::api::GROUP, crate::api::VERSION);
    match value.get("apiVersion").and_then(|v| v.as_str()) {
        Some(v) if v == served => {}
        other => {
            return Err(InputError::new(
                path,
                None,
                format!(
                    "apiVersion {}: the API server serves WatermarkPodAutoscaler as {served} only",
                    other.unwrap_or("missing")
                ),
            ));
        }
    }
    let UnknownFields { mut problems, meant } = UnknownFields::of(&value);
    // The path names the field: serde's own message says only "expected i32".
    let mut wpa: WatermarkPodAutoscaler = serde_path_to_error::deserialize(value).map_err(|e| {
        let what = format!("not a valid WatermarkPodAutoscaler: {}", e.path());
        yaml_error(e.into_inner(), &what)
    })?;
    if wpa.metadata.namespace.is_none() {
        wpa.metadata.namespace = Some("default".into());
    }
    // Every problem at once, as the webhook lists them (a misspelled field is also a missing one).
    problems.extend(
        validation::admission_violations(
            &wpa.spec,
            wpa.annotations(),
            &wpa.namespace().unwrap_or_default(),
            &wpa.name_any(),
            &validation::AdmissionLimits::default(),
        )
        .iter()
        .filter(|v| !meant.contains(&v.path))
        .map(ToString::to_string),
    );
    if !problems.is_empty() {
        return Err(InputError::new(path, None, format!("invalid WPA: {}", problems.join("; "))));
    }
    if wpa.spec.recommender.is_some() {
        return Err(InputError::new(
            path,
            None,
            "a WPA driven by a recommender cannot be simulated offline (it asks an HTTP service); simulate a metrics-based WPA",
        ));
    }
    if metric_names(&wpa).is_empty() {
        return Err(InputError::new(path, None, "the WPA has no External or Resource metric to replay"));
    }
    wpa.spec = validation::with_defaults(&wpa.spec);
    Ok(wpa)
}

struct SimPod {
    name: String,
    created: f64,
}

fn ts(secs: f64) -> Timestamp {
    Timestamp::from_millisecond((secs * 1000.0).round() as i64).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Runs the simulation.
pub(crate) fn run(wpa: &WatermarkPodAutoscaler, series: &Series, opts: &Options) -> Report {
    let mut wpa = wpa.clone();
    let names = metric_names(&wpa);
    let target = wpa.spec.scale_target_ref.name.clone();
    let min = wpa.spec.min_replicas.unwrap_or(1);
    let max = wpa.spec.max_replicas.unwrap_or(0);
    let initial = opts.replicas.unwrap_or(min).max(0);
    let start = series.first();
    // Pods that exist before the replay are ready from its first instant.
    let mut pods: Vec<SimPod> = (0..initial)
        .map(|i| SimPod { name: format!("{target}-{i}"), created: start - opts.ready_after - 1.0 })
        .collect();
    let mut next_pod = initial;
    let mut replicas = initial;
    // A metric's last sample: when it was taken, and its value or `None` during an outage (an empty value in
    // the series).
    let mut latest: BTreeMap<String, Latest> = BTreeMap::new();
    let mut cursor = 0;
    let mut steps = Vec::new();
    let mut summary =
        Summary { min_replicas_seen: replicas, max_replicas_seen: replicas, ..Default::default() };

    let step = if opts.step > 0.0 { opts.step } else { 15.0 };
    let total = ((series.last() - start) / step).floor() as usize;
    for k in 0..=total {
        let now_s = start + k as f64 * step;
        while cursor < series.samples.len() && series.samples[cursor].at <= now_s {
            let s = &series.samples[cursor];
            latest.insert(s.metric.clone(), Latest { at: s.at, value: s.value });
            cursor += 1;
        }
        let now = ts(now_s);
        let pod_infos = sim_pods(&pods, &target, opts.ready_after, now_s);
        let observations = observe(&wpa, &latest, &pod_infos, now, opts.metric_max_age);
        let scale = ScaleInfo {
            name: target.clone(),
            namespace: wpa.namespace().unwrap_or_default(),
            spec_replicas: replicas,
            status_replicas: pods.len() as i32,
            selector: String::new(),
        };
        let obs = Observation {
            target: Ok(scale),
            pods: Ok(&pod_infos),
            metrics: &observations,
            recommendation: None,
            monitor: MonitorObservation::Found(engine::MonitorState::Ok),
            conflicts: &[],
        };
        let plan = engine::Plan::new(&wpa);
        let decision = engine::decide(&plan, &obs, now);
        let plain = PlainStatus::of(&decision, replicas);
        // The simulated target always takes the count it is given.
        let outcome = decision.settle(&wpa, ScaleResult::Written);
        let scaled = outcome.scaled_to.is_some();
        if let PlainStatus::Scaling { from, to, dry_run: true, .. } = plain {
            if to > from {
                summary.dry_run_scale_ups += 1;
            } else {
                summary.dry_run_scale_downs += 1;
            }
        }
        if let Some(n) = outcome.scaled_to {
            if n > replicas {
                summary.scale_ups += 1;
            } else if n < replicas {
                summary.scale_downs += 1;
            }
            replicas = n;
            while (pods.len() as i32) < n {
                pods.push(SimPod { name: format!("{target}-{next_pod}"), created: now_s });
                next_pod += 1;
            }
            pods.truncate(n.max(0) as usize);
        }
        summary.min_replicas_seen = summary.min_replicas_seen.min(replicas);
        summary.max_replicas_seen = summary.max_replicas_seen.max(replicas);
        if replicas == max {
            summary.seconds_at_max_replicas += step;
        }
        let proposal = match &decision.combined {
            Some(Ok(c)) => Some(c.replicas),
            _ => None,
        };
        summary.highest_proposal = summary.highest_proposal.max(proposal);
        let compared = compare(&decision, step, &mut summary);
        let metrics = MetricValues(
            names.iter().map(|n| (n.clone(), latest.get(n).and_then(|l| l.value).map(|(v, _)| v))).collect(),
        );
        steps.push(Step {
            t: now_s - start,
            metrics,
            compared,
            proposal,
            desired: decision.desired,
            replicas,
            scaled,
            reason: step_reason(&decision),
            limit: plain.limit(),
            status: plain.to_string(),
            plain,
        });
        wpa.status = Some(outcome.status);
    }
    summary.steps = steps.len();
    summary.duration_seconds = steps.last().map_or(0.0, |s| s.t);
    let effective = validation::with_defaults(&wpa.spec);
    Report {
        steps,
        summary,
        wall_clock_start: series.wall_clock.then_some(start),
        step,
        bands: engine::metric_bands(&wpa.spec),
        average: effective.algorithm.as_deref() == Some("average"),
        min_replicas: min,
        max_replicas: max,
        dry_run: effective.dry_run.unwrap_or(false),
        cpu_pods_ready_within_delay: cpu_pods_ready_within_delay(&effective, opts.ready_after),
        initial_replicas: initial,
    }
}

/// `Some(readinessDelaySeconds)` when the WPA (its spec with defaults) reads cpu and each simulated pod, ready `ready_after` seconds
/// after it starts, is ready within the delay: the engine ignores such a pod (docs/semantics.md §6.5), so
/// every cpu reading fails. The pods of a real cluster that become Ready that fast would be ignored too;
/// usually they take longer, which only `--ready-after` can tell the simulation.
fn cpu_pods_ready_within_delay(spec: &WatermarkPodAutoscalerSpec, ready_after: f64) -> Option<i32> {
    let delay = spec.readiness_delay_seconds.unwrap_or(0);
    let reads_cpu = spec
        .metrics
        .iter()
        .flatten()
        .any(|m| matches!(m.source(), Some(MetricSource::Resource(r)) if r.name == "cpu"));
    (reads_cpu && delay > 0 && ready_after < f64::from(delay)).then_some(delay)
}

/// The simulated pods as the engine reads them: each ready `ready_after` seconds after it was created.
fn sim_pods(pods: &[SimPod], target: &str, ready_after: f64, now_s: f64) -> Vec<PodInfo> {
    pods.iter()
        .map(|p| {
            let ready_at = p.created + ready_after;
            let ready = now_s >= ready_at;
            PodInfo {
                name: p.name.clone(),
                phase: if ready { PodPhase::Running } else { PodPhase::Pending },
                ready: Some(ReadyCondition {
                    status: if ready { ConditionStatus::True } else { ConditionStatus::False },
                    last_transition: Some(ts(if ready { ready_at } else { p.created })),
                }),
                start_time: Some(ts(p.created)),
                deleting: false,
                owners: vec![OwnerRef { kind: OwnerKind::ReplicaSet, name: format!("{target}-sim") }],
            }
        })
        .collect()
}

/// A metric's last sample in the series.
#[derive(Clone, Copy, Debug)]
struct Latest {
    /// Seconds, on the series' clock.
    at: f64,
    /// The value as given and in thousandths; `None`: an outage (an empty value).
    value: Option<(f64, i64)>,
}

/// What the metrics API would answer now: each metric's latest sample (a Resource metric's total spread
/// over the running pods), an outage's error, or no sample yet. An External sample carries its own time,
/// which the engine judges against `--metric-max-age` as the reconciler does.
fn observe(
    wpa: &WatermarkPodAutoscaler,
    latest: &BTreeMap<String, Latest>,
    pod_infos: &[PodInfo],
    now: Timestamp,
    metric_max_age: Option<std::time::Duration>,
) -> Vec<MetricObservation> {
    let running: Vec<&PodInfo> = pod_infos.iter().filter(|p| p.phase == PodPhase::Running).collect();
    wpa.spec
        .metrics
        .iter()
        .flatten()
        .map(|m| {
            let Some(source) = m.source() else { return MetricObservation::Skipped };
            let Some(last) = latest.get(source.name()) else {
                return MetricObservation::External(Err("no sample of this metric yet".into()));
            };
            let sampled = ts(last.at);
            // Only External values are judged by age, as live: metrics-server's are read as they come.
            if let MetricSource::External(_) = source
                && let Err(stale) = engine::metrics::check_sample_age(Some(sampled), now, metric_max_age)
            {
                return MetricObservation::External(Err(stale));
            }
            match (source, last.value) {
                (MetricSource::Resource(_), None) => MetricObservation::Resource(Err(OUTAGE.into())),
                (MetricSource::External(_), None) => MetricObservation::External(Err(OUTAGE.into())),
                (MetricSource::Resource(_), Some((_, milli))) => {
                    // The workload's total usage, spread over its running pods.
                    let share = if running.is_empty() { 0 } else { milli / running.len() as i64 };
                    MetricObservation::Resource(Ok(running.iter().map(|p| (p.name.clone(), share)).collect()))
                }
                (MetricSource::External(_), Some((_, milli))) => {
                    MetricObservation::External(Ok(ExternalSample {
                        values: vec![milli],
                        timestamp: Some(sampled),
                    }))
                }
            }
        })
        .collect()
}

/// The values compared with the watermarks in this step, and the step's time counted where they were.
fn compare(decision: &engine::Decision<'_>, step: f64, summary: &mut Summary) -> BTreeMap<String, f64> {
    let mut compared = BTreeMap::new();
    let (mut above_band, mut below_band, mut above_high, mut below_low) = (false, false, false, false);
    for m in &decision.metrics {
        let Some(Ok(r)) = &m.result else { continue };
        compared.insert(m.name.clone(), r.usage / 1000.0);
        above_band |= r.is_above;
        below_band |= r.is_below;
        if let Some(b) = &r.band {
            above_high |= r.usage > b.high_milli as f64;
            below_low |= r.usage < b.low_milli as f64;
        }
    }
    for (outside, seconds) in [
        (above_band, &mut summary.seconds_above_band),
        (below_band, &mut summary.seconds_below_band),
        (above_high, &mut summary.seconds_above_high_watermark),
        (below_low, &mut summary.seconds_below_low_watermark),
    ] {
        if outside {
            *seconds += step;
        }
    }
    compared
}

fn step_reason(d: &engine::Decision<'_>) -> String {
    if d.rescale && d.scale.is_none() && d.spec.dry_run == Some(true) {
        return format!("dry run: would scale to {} ({})", d.desired, d.reason);
    }
    if d.reason.is_empty() { "replicas unchanged".into() } else { d.reason.clone() }
}

/// A number of seconds on the command line: `15`, `0.5`, or a duration such as `15s` or `1m`.
fn seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("{s} is not a number of seconds")),
        Err(_) => crate::api::duration::arg(s).map(|d| d.as_secs_f64()),
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match seconds(s)? {
        v if v > 0.0 => Ok(v),
        _ => Err("must be more than 0 seconds (the engine runs every --step seconds)".into()),
    }
}

fn non_negative_seconds(s: &str) -> Result<f64, String> {
    match seconds(s)? {
        v if v >= 0.0 => Ok(v),
        _ => Err(
            "cannot be negative: a new pod becomes ready this many seconds after it is created (0: at once)"
                .into(),
        ),
    }
}

fn initial_replicas(s: &str) -> Result<i32, String> {
    match s.trim().parse::<i32>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => {
            Err("a WPA leaves a target at 0 replicas alone (scaling is off until something else scales it \
                      up), so there is nothing to simulate: give 1 or more"
                .into())
        }
        Err(_) => Err(format!("{s:?} is not a replica count")),
    }
}

fn svg_file(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("svg") => Ok(path),
        _ => Err(format!(
            "the plot is an SVG image: name it FILE.svg (for a PNG, convert it, e.g. rsvg-convert -o {} FILE.svg)",
            path.with_extension("png").display()
        )),
    }
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  # A day of traffic against the example WPA; on a terminal, only the steps where something changes
  wpa simulate --wpa examples/wpa.yaml --series examples/series.csv --ready-after 30

  # The same day as a picture: each metric against its band, the replicas, the proposal, min and max
  wpa simulate --wpa examples/wpa.yaml --series examples/series.csv --ready-after 30 --plot simulation.svg

  # Every step as CSV, for a spreadsheet
  wpa simulate --wpa examples/wpa.yaml --series examples/series.csv -o csv > steps.csv

  # The WPA of a live cluster against your own export
  kubectl get wpa web -o yaml | wpa simulate --wpa - --series my-metric.csv")]
pub(crate) struct SimulateArgs {
    /// The WatermarkPodAutoscaler YAML, as you would `kubectl apply` it (defaults are applied as the webhook
    /// applies them); `-` reads it from stdin.
    #[arg(long, env = "WPA_SIMULATE_WPA")]
    pub(crate) wpa: PathBuf,
    /// The metric series: CSV `timestamp,metric,value`; timestamps in RFC 3339, in Unix seconds or
    /// milliseconds, or in seconds from 0; an empty value is an outage of the metric until its next sample.
    /// `-` reads it from stdin.
    #[arg(long, env = "WPA_SIMULATE_SERIES")]
    pub(crate) series: PathBuf,
    /// Initial replica count, 1 or more [default: the WPA's minReplicas].
    #[arg(long, env = "WPA_SIMULATE_REPLICAS", value_parser = initial_replicas)]
    pub(crate) replicas: Option<i32>,
    /// Seconds a new pod takes to become ready (a number, or a duration such as 30s).
    #[arg(long, default_value = "0", env = "WPA_SIMULATE_READY_AFTER", value_parser = non_negative_seconds, allow_negative_numbers = true)]
    pub(crate) ready_after: f64,
    /// Seconds between two engine runs, the reconcile period (a number, or a duration such as 15s).
    #[arg(long, default_value = "15", env = "WPA_SIMULATE_STEP", value_parser = positive_seconds, allow_negative_numbers = true)]
    pub(crate) step: f64,
    /// Output format.
    #[arg(short = 'o', long = "output", visible_alias = "format", value_enum, default_value_t = Format::Table, env = "WPA_SIMULATE_OUTPUT")]
    pub(crate) output: Format,
    /// Only the steps where something changes: a scale, or a new reason to wait or hold (the default for
    /// the table on a terminal). The summary always covers every step.
    #[arg(long, conflicts_with = "all_steps")]
    pub(crate) changes_only: bool,
    /// Every step (the default, except for the table on a terminal).
    #[arg(long)]
    pub(crate) all_steps: bool,
    /// Also draw each metric against its band, and the replicas with the metrics' proposal, min/max, a mark
    /// at each scale and a shade where a window or a delay held one back, into this SVG file.
    #[arg(long, env = "WPA_SIMULATE_PLOT", value_parser = svg_file)]
    pub(crate) plot: Option<PathBuf>,
    // An External metric whose last sample is older than this fails as stale, as live: a gap in the series
    // longer than it is an outage.
    #[command(flatten)]
    pub(crate) metric_age: crate::cmd::metric_age::MetricAge,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Table,
    Json,
    Csv,
}

/// Which steps to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rows {
    All,
    Changes,
}

impl SimulateArgs {
    fn rows(&self, terminal: bool) -> Rows {
        if self.changes_only || (!self.all_steps && terminal && self.output == Format::Table) {
            Rows::Changes
        } else {
            Rows::All
        }
    }
}

/// `wpa simulate`: reads the WPA and the series, replays it, prints the report (and draws the plot).
pub(crate) fn command(args: &SimulateArgs) -> Result<(), InputError> {
    if args.wpa == Path::new("-") && args.series == Path::new("-") {
        return Err(InputError::new(
            Path::new("-"),
            None,
            "--wpa and --series cannot both be read from stdin: give one of them as a file",
        ));
    }
    let wpa = read_wpa(&args.wpa)?;
    let series = read_series(&args.series, &metric_names(&wpa), args.step)?;
    let opts = Options {
        replicas: args.replicas,
        ready_after: args.ready_after,
        step: args.step,
        metric_max_age: args.metric_age.limit(),
    };
    let report = run(&wpa, &series, &opts);
    if let Some(plot) = &args.plot {
        std::fs::write(plot, plot::render_svg(&report))
            .map_err(|e| InputError::new(plot, None, format!("cannot write the plot: {e}")))?;
    }
    let rows = args.rows(std::io::stdout().is_terminal());
    let text = match args.output {
        Format::Table => render::table(&report, rows),
        Format::Json => render::json(&report, rows) + "\n",
        Format::Csv => render::csv(&report, rows),
    };
    super::stdout(&text).map_err(|e| InputError::new(Path::new("stdout"), None, format!("cannot write: {e}")))
}
