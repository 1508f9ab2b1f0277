//! `wpa simulate`: replays a metric series against a WPA offline, through the same engine the reconciler
//! runs, so watermarks can be tuned before deploying.
//!
//! The model: the engine runs every `step` seconds with the latest value of each metric. The target starts
//! with `replicas` ready pods; a scale-up adds pods that become ready `ready_after` seconds later; a
//! scale-down removes the newest pods first. An External metric's value is what the external metrics API
//! would return (the sum of its series); a Resource metric's value is the workload's total usage, spread
//! evenly over its running pods.

pub(crate) mod plot;
pub(crate) mod series;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use clap::ValueEnum;

use jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;

use crate::{
    api::{MetricSource, WatermarkPodAutoscaler},
    engine::{
        self, Decision, MetricObservation, MonitorObservation, Observation, ScaleResult,
        calc::{ExternalSample, ScaleInfo},
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
}

impl Default for Options {
    fn default() -> Self {
        Options { replicas: None, ready_after: 0.0, step: 15.0 }
    }
}

/// One engine run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct Step {
    /// Seconds since the first sample.
    pub(crate) t: f64,
    /// The latest value of each metric (by metric name).
    pub(crate) metrics: BTreeMap<String, Option<f64>>,
    /// The combined proposal of the metrics, before limits (null when the metrics could not be used).
    pub(crate) proposal: Option<i32>,
    /// The engine's final count for this step.
    pub(crate) desired: i32,
    /// Replicas after the step.
    pub(crate) replicas: i32,
    pub(crate) scaled: bool,
    pub(crate) reason: String,
    /// The value each metric was compared with (per ready pod with `algorithm: average`).
    #[serde(skip)]
    pub(crate) compared: BTreeMap<String, f64>,
    #[serde(skip)]
    pub(crate) above: bool,
    #[serde(skip)]
    pub(crate) below: bool,
    #[serde(skip)]
    pub(crate) ready: i32,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub(crate) struct Summary {
    pub(crate) steps: usize,
    pub(crate) duration_seconds: f64,
    pub(crate) scale_ups: usize,
    pub(crate) scale_downs: usize,
    pub(crate) min_replicas_seen: i32,
    pub(crate) max_replicas_seen: i32,
    pub(crate) seconds_above_high_watermark: f64,
    pub(crate) seconds_below_low_watermark: f64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct Report {
    pub(crate) steps: Vec<Step>,
    pub(crate) summary: Summary,
    #[serde(skip)]
    pub(crate) wall_clock_start: Option<f64>,
    /// Per metric: high and low watermark, and the tolerance-adjusted band.
    #[serde(skip)]
    pub(crate) watermarks: BTreeMap<String, Band>,
    #[serde(skip)]
    pub(crate) average: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Band {
    pub(crate) high: f64,
    pub(crate) low: f64,
    pub(crate) adjusted_high: f64,
    pub(crate) adjusted_low: f64,
}

/// The names a series may use for the WPA's metrics, in spec order.
pub(crate) fn metric_names(wpa: &WatermarkPodAutoscaler) -> Vec<String> {
    wpa.spec.metrics.iter().flatten().filter_map(|m| m.source().map(|s| s.name().to_string())).collect()
}

/// Reads the WPA a user would `kubectl apply`, defaulted and validated as the admission webhook would.
/// A key of a metric's source that the API server would drop (a misspelled watermark, typically), with its
/// path: the typed parse would read such a watermark as missing.
fn unknown_metric_field(wpa: &serde_yaml_ng::Value) -> Option<String> {
    let metrics = wpa.get("spec")?.get("metrics")?.as_sequence()?;
    for (i, m) in metrics.iter().enumerate() {
        for (source, known) in [
            ("external", ["metricName", "metricSelector", "highWatermark", "lowWatermark"]),
            ("resource", ["name", "metricSelector", "highWatermark", "lowWatermark"]),
        ] {
            let Some(fields) = m.get(source).and_then(|s| s.as_mapping()) else { continue };
            for key in fields.keys().filter_map(|k| k.as_str()) {
                if !known.contains(&key) {
                    let hint = known
                        .iter()
                        .find(|k| k.eq_ignore_ascii_case(key))
                        .map(|k| format!(" (did you mean {k}?)"))
                        .unwrap_or_default();
                    return Some(format!(
                        "spec.metrics[{i}].{source}.{key}: unknown field{hint}; the API server would drop it"
                    ));
                }
            }
        }
    }
    None
}

pub(crate) fn read_wpa(path: &Path) -> Result<WatermarkPodAutoscaler, InputError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| InputError::new(path, None, format!("cannot read: {e}")))?;
    parse_wpa(path, &text)
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
    if let Some(problem) = unknown_metric_field(&value) {
        return Err(InputError::new(path, None, format!("invalid WPA: {problem}")));
    }
    let mut wpa: WatermarkPodAutoscaler =
        serde_yaml_ng::from_value(value).map_err(|e| yaml_error(e, "not a valid WatermarkPodAutoscaler"))?;
    if wpa.metadata.namespace.is_none() {
        wpa.metadata.namespace = Some("default".into());
    }
    let violations = validation::admission_violations(
        &wpa.spec,
        wpa.annotations(),
        &wpa.namespace().unwrap_or_default(),
        &wpa.name_any(),
        &validation::AdmissionLimits::default(),
    );
    if let Some(v) = violations.first() {
        let more = if violations.len() > 1 {
            format!(" (and {} more problem(s))", violations.len() - 1)
        } else {
            String::new()
        };
        return Err(InputError::new(path, None, format!("invalid WPA: {v}{more}")));
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
    let initial = opts.replicas.unwrap_or(min).max(0);
    let start = series.first();
    // Pods that exist before the replay are ready from its first instant.
    let mut pods: Vec<SimPod> = (0..initial)
        .map(|i| SimPod { name: format!("{target}-{i}"), created: start - opts.ready_after - 1.0 })
        .collect();
    let mut next_pod = initial;
    let mut replicas = initial;
    let mut latest: BTreeMap<String, (f64, i64)> = BTreeMap::new();
    let mut cursor = 0;
    let mut steps = Vec::new();
    let mut summary =
        Summary { min_replicas_seen: replicas, max_replicas_seen: replicas, ..Default::default() };
    let effective = engine::effective_spec(&wpa.spec);
    let tol = effective.tolerance.as_ref().map_or(0, |q| q.milli());
    let watermarks: BTreeMap<String, Band> = effective
        .metrics
        .iter()
        .flatten()
        .filter_map(|m| {
            let (n, h, l) = match (&m.external, &m.resource) {
                (Some(e), _) => (e.metric_name.clone(), e.high_watermark.clone(), e.low_watermark.clone()),
                (_, Some(r)) => (r.name.clone(), r.high_watermark.clone(), r.low_watermark.clone()),
                _ => return None,
            };
            let (h, l) = (h.map_or(0, |q| q.milli()), l.map_or(0, |q| q.milli()));
            // The engine's integer adjustment (docs/semantics.md §6.6), in metric units.
            let band = Band {
                high: h as f64 / 1000.0,
                low: l as f64 / 1000.0,
                adjusted_high: (h + h * tol / 1000) as f64 / 1000.0,
                adjusted_low: (l - l * tol / 1000) as f64 / 1000.0,
            };
            Some((n, band))
        })
        .collect();

    let step = if opts.step > 0.0 { opts.step } else { 15.0 };
    let total = ((series.last() - start) / step).floor() as usize;
    for k in 0..=total {
        let now_s = start + k as f64 * step;
        while cursor < series.samples.len() && series.samples[cursor].at <= now_s {
            let s = &series.samples[cursor];
            latest.insert(s.metric.clone(), (s.value, s.milli));
            cursor += 1;
        }
        let now = ts(now_s);
        let pod_infos: Vec<PodInfo> = pods
            .iter()
            .map(|p| {
                let ready_at = p.created + opts.ready_after;
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
            .collect();
        let running: Vec<&PodInfo> = pod_infos.iter().filter(|p| p.phase == PodPhase::Running).collect();
        let observations: Vec<MetricObservation> = wpa
            .spec
            .metrics
            .iter()
            .flatten()
            .map(|m| {
                let Some(source) = m.source() else { return MetricObservation::Skipped };
                match (source, latest.get(source.name())) {
                    (_, None) => MetricObservation::External(Err("no sample of this metric yet".into())),
                    (MetricSource::Resource(_), Some((_, milli))) => {
                        // The workload's total usage, spread over its running pods.
                        let share = if running.is_empty() { 0 } else { milli / running.len() as i64 };
                        MetricObservation::Resource(Ok(running
                            .iter()
                            .map(|p| (p.name.clone(), share))
                            .collect()))
                    }
                    (_, Some((_, milli))) => MetricObservation::External(Ok(ExternalSample {
                        values: vec![*milli],
                        timestamp: Some(now),
                    })),
                }
            })
            .collect();
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
        // The simulated target always takes the count it is given.
        let outcome = decision.settle(&wpa, ScaleResult::Written);
        let scaled = outcome.scaled_to.is_some();
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
        let (above, below, proposal, ready) = match &decision.combined {
            Some(Ok(c)) => (c.is_above, c.is_below, Some(c.replicas), c.ready_replicas),
            _ => (false, false, None, 0),
        };
        if above {
            summary.seconds_above_high_watermark += step;
        }
        if below {
            summary.seconds_below_low_watermark += step;
        }
        let metrics = names.iter().map(|n| (n.clone(), latest.get(n).map(|(v, _)| *v))).collect();
        let compared = decision
            .metrics
            .iter()
            .filter_map(|m| match &m.result {
                Some(Ok(r)) => Some((m.name.clone(), r.usage / 1000.0)),
                _ => None,
            })
            .collect();
        steps.push(Step {
            t: now_s - start,
            metrics,
            compared,
            proposal,
            desired: decision.desired,
            replicas,
            scaled,
            reason: step_reason(&decision),
            above,
            below,
            ready,
        });
        wpa.status = Some(outcome.status);
    }
    summary.steps = steps.len();
    summary.duration_seconds = steps.last().map_or(0.0, |s| s.t);
    let average = effective.algorithm.as_deref() == Some("average");
    Report { steps, summary, wall_clock_start: series.wall_clock.then_some(start), watermarks, average }
}

fn step_reason(d: &Decision) -> String {
    if d.rescale && d.scale.is_none() && d.spec.dry_run == Some(true) {
        return format!("dry run: would scale to {} ({})", d.desired, d.reason);
    }
    if d.reason.is_empty() { "replicas unchanged".into() } else { d.reason.clone() }
}

fn clock(report: &Report, t: f64) -> String {
    match report.wall_clock_start {
        Some(start) => ts(start + t).strftime("%Y-%m-%d %H:%M:%S").to_string(),
        None => format!("{t}"),
    }
}

fn fmt_value(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    })
}

/// The human-readable table.
pub(crate) fn render_table(report: &Report) -> String {
    let names: Vec<String> =
        report.steps.first().map(|s| s.metrics.keys().cloned().collect()).unwrap_or_default();
    let mut header =
        vec![if report.wall_clock_start.is_some() { "time".to_string() } else { "t(s)".to_string() }];
    header.extend(names.iter().cloned());
    header.extend(["proposal", "desired", "replicas", "scaled", "reason"].map(String::from));
    let mut rows: Vec<Vec<String>> = vec![header];
    for s in &report.steps {
        let mut row = vec![clock(report, s.t)];
        row.extend(names.iter().map(|n| fmt_value(s.metrics.get(n).copied().flatten())));
        row.push(s.proposal.map_or("-".into(), |p| p.to_string()));
        row.push(s.desired.to_string());
        row.push(s.replicas.to_string());
        row.push(if s.scaled { "yes".into() } else { "".into() });
        row.push(s.reason.clone());
        rows.push(row);
    }
    let cols = rows[0].len();
    let widths: Vec<usize> =
        (0..cols - 1).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in &rows {
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == cols {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push('\n');
    }
    let s = &report.summary;
    out.push_str(&format!(
        "\nsummary: {} steps over {}s; {} scale-ups, {} scale-downs; replicas between {} and {}; {}s above the high watermark, {}s below the low watermark\n",
        s.steps, s.duration_seconds, s.scale_ups, s.scale_downs, s.min_replicas_seen, s.max_replicas_seen,
        s.seconds_above_high_watermark, s.seconds_below_low_watermark
    ));
    out
}

/// CSV: `t,<metric>...,proposal,desired,replicas,scaled,reason`.
pub(crate) fn render_csv(report: &Report) -> String {
    let names: Vec<String> =
        report.steps.first().map(|s| s.metrics.keys().cloned().collect()).unwrap_or_default();
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["t".to_string()];
    header.extend(names.iter().cloned());
    header.extend(["proposal", "desired", "replicas", "scaled", "reason"].map(String::from));
    let _ = w.write_record(&header);
    for s in &report.steps {
        let mut row = vec![s.t.to_string()];
        row.extend(
            names
                .iter()
                .map(|n| s.metrics.get(n).copied().flatten().map_or(String::new(), |v| v.to_string())),
        );
        row.push(s.proposal.map_or(String::new(), |p| p.to_string()));
        row.extend([s.desired.to_string(), s.replicas.to_string(), s.scaled.to_string(), s.reason.clone()]);
        let _ = w.write_record(&row);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// `{"steps":[...],"summary":{...}}`.
pub(crate) fn render_json(report: &Report) -> String {
    serde_json::to_string(report).unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
}

#[derive(clap::Args, Debug)]
pub(crate) struct SimulateArgs {
    /// The WatermarkPodAutoscaler YAML, as you would `kubectl apply` it (defaults are applied as the webhook
    /// applies them).
    #[arg(long, env = "WPA_SIMULATE_WPA")]
    pub(crate) wpa: PathBuf,
    /// The metric series (CSV: timestamp,metric,value).
    #[arg(long, env = "WPA_SIMULATE_SERIES")]
    pub(crate) series: PathBuf,
    /// Initial replica count [default: the WPA's minReplicas].
    #[arg(long, env = "WPA_SIMULATE_REPLICAS")]
    pub(crate) replicas: Option<i32>,
    /// Seconds a new pod takes to become ready.
    #[arg(long, default_value_t = 0.0, env = "WPA_SIMULATE_READY_AFTER")]
    pub(crate) ready_after: f64,
    /// Seconds between two engine runs (the reconcile period).
    #[arg(long, default_value_t = 15.0, env = "WPA_SIMULATE_STEP")]
    pub(crate) step: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table, env = "WPA_SIMULATE_FORMAT")]
    pub(crate) format: Format,
    /// Also draw the metrics, both watermarks and the replica count over time into this SVG file.
    #[arg(long, env = "WPA_SIMULATE_PLOT")]
    pub(crate) plot: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Table,
    Json,
    Csv,
}

/// `wpa simulate`: reads the WPA and the series, replays it, prints the report (and draws the plot).
pub(crate) fn command(args: &SimulateArgs) -> Result<(), InputError> {
    let wpa = read_wpa(&args.wpa)?;
    let series = read_series(&args.series, &metric_names(&wpa))?;
    if args.step.is_nan() || args.step <= 0.0 {
        return Err(InputError::new(&args.series, None, "--step must be a positive number of seconds"));
    }
    if args.ready_after < 0.0 {
        return Err(InputError::new(&args.series, None, "--ready-after cannot be negative"));
    }
    let opts = Options { replicas: args.replicas, ready_after: args.ready_after, step: args.step };
    let report = run(&wpa, &series, &opts);
    if let Some(plot) = &args.plot {
        std::fs::write(plot, plot::render_svg(&report))
            .map_err(|e| InputError::new(plot, None, format!("cannot write the plot: {e}")))?;
    }
    let text = match args.format {
        Format::Table => render_table(&report),
        Format::Json => render_json(&report) + "\n",
        Format::Csv => render_csv(&report),
    };
    super::stdout(&text).map_err(|e| InputError::new(Path::new("stdout"), None, format!("cannot write: {e}")))
}
