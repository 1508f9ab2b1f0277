//! `wpa status`: every WPA of a namespace (or of the cluster) at a glance, one line each.
//!
//! Each line is the engine's own decision at this instant, as `wpa explain` shows it at length: the WPAs,
//! their HPAs, Deployments, StatefulSets and pods are listed once for the whole scope (a few requests,
//! whatever the number of WPAs), each WPA's metrics are read (several at a time), and [`engine::decide`]
//! runs on them. Nothing is written. The state of a line is read from the decision
//! ([`PlainStatus`](crate::engine::PlainStatus), the words `wpa simulate` and `wpa demo` print), never
//! recomputed here.

use std::{collections::BTreeSet, fmt::Write as _, sync::Arc, time::Duration};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    autoscaling::v1::HorizontalPodAutoscaler,
    core::v1::Pod,
};
use kube::{Api, Client, ResourceExt, api::ListParams};
use serde::Serialize;

use crate::{
    api::WatermarkPodAutoscaler,
    engine::{self, Decision, Forced, PlainStatus, limits::Bound, plain},
    reconciler::inputs::{Inputs, Sources},
    runtime::client::{ClientError, describe},
    state::{TargetIndex, caches::Caches},
};

/// The JSON output's version: a field renamed or removed, or a meaning changed, increments it.
pub(crate) const SCHEMA_VERSION: u32 = 1;

#[derive(clap::Args, Debug)]
pub(crate) struct StatusArgs {
    /// The WPAs of every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub(crate) all_namespaces: bool,
    #[command(flatten)]
    pub(crate) connection: crate::cmd::connection::Connection,
    /// Only the WPAs whose labels match, in kubectl's syntax (`team=web,tier!=batch`).
    #[arg(short = 'l', long = "selector")]
    pub(crate) selector: Option<String>,
    /// `table`; `wide` adds what each line means in words, the reason and the flags; `json` is the whole
    /// report, documented in docs/status.md (`schemaVersion` says which version).
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table, env = "WPA_STATUS_OUTPUT")]
    pub(crate) output: Output,
    /// Exit with status 1 when a WPA is in one of these states (comma-separated), after printing the report:
    /// for CI and cron. E.g. `--fail-on blocked,failing,fallback`.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub(crate) fail_on: Vec<State>,
    #[command(flatten)]
    pub(crate) metric_age: crate::cmd::metric_age::MetricAge,
    /// WPAs whose metrics are read at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) concurrency: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    Table,
    Wide,
    Json,
}

/// Where a WPA stands, in one word (the `state` of the JSON, the values of `--fail-on`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum State {
    /// The pass scales now.
    Scaling,
    /// Every value within its band.
    InBand,
    /// Above the high watermark, waiting out the upscale delay.
    Above,
    /// Below the low watermark, waiting out the downscale delay.
    Below,
    /// A change the metrics ask for waits for a forbidden window after the last scale.
    Window,
    /// A change held back by scaleUpLimitFactor or scaleDownLimitFactor (or the ready pods).
    Limited,
    /// The metrics ask for more than maxReplicas.
    AtMax,
    /// The metrics ask for fewer than minReplicas.
    AtMin,
    /// A metric fails: no scaling (a fallback, if set, is waiting).
    Failing,
    /// Every metric has failed for longer than fallback-after: the fallback sets the count.
    Fallback,
    /// Something other than the metrics stops the pass: the target, its pods, the lifecycle monitor.
    Blocked,
    /// The spec is invalid.
    Invalid,
    /// The target is at 0 replicas: the WPA leaves it alone.
    Off,
    /// Not a state of its own: the WPA is in dry-run mode (any state can be).
    DryRun,
    /// Not a state of its own: an HPA also scales the target.
    Conflict,
}

impl State {
    pub(crate) fn word(self) -> &'static str {
        match self {
            State::Scaling => "scaling",
            State::InBand => "in-band",
            State::Above => "above",
            State::Below => "below",
            State::Window => "window",
            State::Limited => "limited",
            State::AtMax => "at-max",
            State::AtMin => "at-min",
            State::Failing => "failing",
            State::Fallback => "fallback",
            State::Blocked => "blocked",
            State::Invalid => "invalid",
            State::Off => "off",
            State::DryRun => "dry-run",
            State::Conflict => "conflict",
        }
    }
}

/// A metric of a line: its value against its watermarks, as the engine compared them.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MetricLine {
    /// The metric's name (`metricName`, or the resource's).
    pub(crate) name: String,
    /// As upstream's conditions and series name it: with its selector (`qps{map[app:web]}`).
    pub(crate) display_name: String,
    /// `null` when the metric failed.
    pub(crate) value: Option<f64>,
    pub(crate) low_watermark: f64,
    pub(crate) high_watermark: f64,
    /// `above`, `below`, `within`, or `failed`.
    pub(crate) position: &'static str,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Replicas {
    /// The target's `spec.replicas`.
    pub(crate) current: i32,
    /// Where the decision goes: the count being scaled to, or waited for; `current` when holding.
    pub(crate) desired: i32,
}

/// One WPA's line.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Line {
    pub(crate) namespace: String,
    pub(crate) name: String,
    /// `Kind/name` of the scale target.
    pub(crate) target: String,
    pub(crate) state: State,
    /// `dry-run`, `conflict`.
    pub(crate) flags: Vec<State>,
    /// The decision in plain words.
    pub(crate) detail: String,
    /// The engine's reason (upstream's words).
    pub(crate) reason: String,
    /// `null` when the target could not be read.
    pub(crate) replicas: Option<Replicas>,
    pub(crate) metrics: Vec<MetricLine>,
    /// When the next scale could happen: now when scaling, the end of the wait when waiting, `null` when
    /// nothing is waited for (a change of the metrics decides).
    pub(crate) next_scale: Option<Timestamp>,
}

/// The report of one run.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    pub(crate) schema_version: u32,
    pub(crate) generated_at: Timestamp,
    /// What was listed: `namespace NS`, `all namespaces`, with the label selector.
    pub(crate) scope: String,
    pub(crate) items: Vec<Line>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StatusError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot list {what} in {scope}: {message}")]
    List { what: &'static str, scope: String, message: String },
    #[error(
        "{} WatermarkPodAutoscaler(s) in a state of --fail-on: {}",
        lines.len(),
        lines.join(", ")
    )]
    FailOn { lines: Vec<String> },
}

impl Line {
    /// The line of `d`, the engine's decision from `plan` and `inputs` at `now`.
    pub(crate) fn of(plan: &engine::Plan<'_>, inputs: &Inputs, d: &Decision<'_>, now: Timestamp) -> Line {
        let wpa = plan.wpa;
        let target = &wpa.spec.scale_target_ref;
        let current = inputs.target.as_ref().ok().map(|s| s.spec_replicas);
        let plain = PlainStatus::of(d, current.unwrap_or(0));
        let (state, desired, wait) = classify(d, &plain, current.unwrap_or(0));
        let mut flags = Vec::new();
        if d.spec.dry_run.unwrap_or(false) {
            flags.push(State::DryRun);
        }
        if !inputs.conflicts.is_empty() {
            flags.push(State::Conflict);
        }
        let next_scale = match state {
            State::Scaling => Some(now),
            // A fallback that scales in this pass.
            State::Fallback if d.rescale => Some(now),
            _ => wait.map(|seconds| now + Duration::from_secs_f64(seconds.max(0.0).ceil())),
        };
        Line {
            namespace: plan.namespace.clone(),
            name: wpa.name_any(),
            target: format!("{}/{}", target.kind, target.name),
            state,
            flags,
            detail: plain.to_string(),
            reason: d.reason.clone(),
            replicas: current.map(|current| Replicas { current, desired }),
            metrics: d
                .metrics
                .iter()
                .map(|m| {
                    let result = m.result.as_ref().and_then(|r| r.as_ref().ok());
                    MetricLine {
                        name: m.name.clone(),
                        display_name: m.display_name.clone(),
                        value: result.map(|r| r.usage / 1000.0),
                        low_watermark: m.low_milli as f64 / 1000.0,
                        high_watermark: m.high_milli as f64 / 1000.0,
                        position: result.map_or("failed", |r| r.position()),
                    }
                })
                .collect(),
            next_scale,
        }
    }
}

/// The state of a decision, where it goes, and the seconds it waits for (if it does).
fn classify(d: &Decision<'_>, plain: &PlainStatus, current: i32) -> (State, i32, Option<f64>) {
    use plain::{Hold, Wait};
    match plain {
        PlainStatus::Invalid(_) => (State::Invalid, current, None),
        PlainStatus::Off => (State::Off, current, None),
        // A target scaled to zero has no pods, so its metrics fail first (as upstream's do): it is still
        // left alone, never scaled (a fallback included).
        _ if current == 0 && d.combined.is_some() => (State::Off, current, None),
        PlainStatus::Fallback { to, wait, .. } => {
            let seconds = match wait {
                Some(Wait::Window { seconds_left, .. }) => Some(*seconds_left),
                _ => None,
            };
            (State::Fallback, *to, seconds)
        }
        // The fallback only scales up, within the limits: a start that cannot raise the count is no next scale.
        PlainStatus::FallbackPending { seconds_left, raises, .. } => {
            (State::Failing, current, raises.then_some(*seconds_left))
        }
        // A metric failed; when the pods could not be listed (`d.pods` is `None`), they are the cause.
        PlainStatus::Stopped(_) if matches!(d.combined, Some(Err(_))) && d.pods.is_some() => {
            (State::Failing, current, None)
        }
        PlainStatus::Stopped(_) => (State::Blocked, current, None),
        PlainStatus::Scaling { to, .. } if d.forced == Some(Forced::TargetAtZero) => (State::Off, *to, None),
        PlainStatus::Scaling { to, .. } => (State::Scaling, *to, None),
        PlainStatus::FirstPass { replicas } => (position(d), *replicas, None),
        PlainStatus::Waiting { wait: Wait::Window { seconds_left, .. }, to, .. } => {
            (State::Window, *to, Some(*seconds_left))
        }
        PlainStatus::Waiting { wait: Wait::Delay { upscale, seconds_left }, to, .. } => {
            let state = if *upscale { State::Above } else { State::Below };
            (state, *to, Some(*seconds_left as f64))
        }
        PlainStatus::Holding(Hold::WithinBand) => (State::InBand, current, None),
        PlainStatus::Holding(Hold::Capped(cap)) => {
            let state = match cap.bound {
                Bound::MaxReplicas => State::AtMax,
                Bound::MinReplicas => State::AtMin,
                Bound::UpRate | Bound::DownRate | Bound::ReadyPods => State::Limited,
            };
            (state, current, None)
        }
        PlainStatus::Holding(Hold::Asks { above, .. }) => {
            (if *above { State::Above } else { State::Below }, current, None)
        }
    }
}

/// Where the combined metrics stand.
fn position(d: &Decision<'_>) -> State {
    match &d.combined {
        Some(Ok(c)) if c.is_above => State::Above,
        Some(Ok(c)) if c.is_below => State::Below,
        _ => State::InBand,
    }
}

/// Lists what the scope holds and decides for each WPA.
pub(crate) async fn run(args: &StatusArgs) -> Result<Report, StatusError> {
    let client = args.connection.client().await?;
    let namespace = (!args.all_namespaces)
        .then(|| args.connection.namespace.clone().unwrap_or_else(|| client.default_namespace().into()));
    let scope = match (&namespace, &args.selector) {
        (Some(ns), None) => format!("namespace {ns}"),
        (Some(ns), Some(l)) => format!("namespace {ns} with labels {l}"),
        (None, None) => "all namespaces".into(),
        (None, Some(l)) => format!("all namespaces with labels {l}"),
    };
    let list = Lister { client: client.clone(), namespace: namespace.clone(), scope: scope.clone() };
    let mut params = ListParams::default();
    if let Some(l) = &args.selector {
        params = params.labels(l);
    }
    let wpas: Vec<WatermarkPodAutoscaler> = list.all("WatermarkPodAutoscalers", &params).await?;
    let all = ListParams::default();
    // The rest is listed only when there is something to decide.
    let (hpas, deployments, stateful_sets, pods) = if wpas.is_empty() {
        Default::default()
    } else {
        tokio::try_join!(
            list.all::<HorizontalPodAutoscaler>("HorizontalPodAutoscalers", &all),
            list.all::<Deployment>("Deployments", &all),
            list.all::<StatefulSet>("StatefulSets", &all),
            list.all::<Pod>("Pods", &all),
        )?
    };
    let sources = Sources {
        caches: Some(Arc::new(Caches::from_lists(pods, deployments, stateful_sets))),
        autoscalers: Some(TargetIndex::from_objects(&wpas, &hpas)),
        ..Sources::read_only(client, args.metric_age.limit(), String::new())
    };
    let now = Timestamp::now();
    let mut items: Vec<Line> = futures::stream::iter(wpas.iter())
        .map(|wpa| {
            let sources = &sources;
            async move {
                let plan = engine::Plan::new(wpa);
                let inputs = sources.gather(&plan, false, now).await;
                let decision = engine::decide(&plan, &inputs.observation(), now);
                Line::of(&plan, &inputs, &decision, now)
            }
        })
        .buffer_unordered(usize::from(args.concurrency))
        .collect()
        .await;
    items.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(Report { schema_version: SCHEMA_VERSION, generated_at: now, scope, items })
}

/// Lists of one scope.
struct Lister {
    client: Client,
    namespace: Option<String>,
    scope: String,
}

impl Lister {
    async fn all<K>(&self, what: &'static str, params: &ListParams) -> Result<Vec<K>, StatusError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let message = |e: kube::Error| match e {
            kube::Error::Api(s) => s.message,
            other => describe(&other),
        };
        api.list(params).await.map(|l| l.items).map_err(|e| StatusError::List {
            what,
            scope: self.scope.clone(),
            message: message(e),
        })
    }
}

impl Report {
    /// The lines in a state of `states`, as `namespace/name (state)`.
    pub(crate) fn matching(&self, states: &[State]) -> Vec<String> {
        let wanted: BTreeSet<State> = states.iter().copied().collect();
        self.items
            .iter()
            .filter(|l| wanted.contains(&l.state) || l.flags.iter().any(|f| wanted.contains(f)))
            .map(|l| {
                let mut states = vec![l.state.word()];
                states.extend(l.flags.iter().filter(|f| wanted.contains(f)).map(|f| f.word()));
                format!("{}/{} ({})", l.namespace, l.name, states.join(", "))
            })
            .collect()
    }

    /// The report as `output` asks.
    pub(crate) fn render(&self, output: Output, all_namespaces: bool) -> String {
        match output {
            Output::Json => {
                let mut text =
                    serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
                text.push('\n');
                text
            }
            Output::Table | Output::Wide => self.table(output == Output::Wide, all_namespaces),
        }
    }

    fn table(&self, wide: bool, all_namespaces: bool) -> String {
        if self.items.is_empty() {
            return format!("No WatermarkPodAutoscaler in {}.\n", self.scope);
        }
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut header: Vec<&str> = Vec::new();
        if all_namespaces {
            header.push("NAMESPACE");
        }
        header.extend(["NAME", "TARGET", "REPLICAS", "STATE", "VALUE (LOW..HIGH)", "NEXT SCALE"]);
        if wide {
            header.extend(["FLAGS", "DETAIL"]);
        }
        rows.push(header.iter().map(|h| h.to_string()).collect());
        for l in &self.items {
            let mut row = Vec::new();
            if all_namespaces {
                row.push(l.namespace.clone());
            }
            row.push(l.name.clone());
            row.push(l.target.clone());
            row.push(match &l.replicas {
                None => "-".into(),
                Some(r) if r.desired != r.current => format!("{} -> {}", r.current, r.desired),
                Some(r) => r.current.to_string(),
            });
            let mut state = l.state.word().to_string();
            if !wide {
                for f in &l.flags {
                    state.push('+');
                    state.push_str(f.word());
                }
            }
            row.push(state);
            row.push(value_cell(&l.metrics));
            row.push(match l.next_scale {
                None => "-".into(),
                Some(t) if t <= self.generated_at => "now".into(),
                Some(t) => {
                    format!("in {}", plain::duration_words(t.duration_since(self.generated_at).as_secs_f64()))
                }
            });
            if wide {
                let flags: Vec<&str> = l.flags.iter().map(|f| f.word()).collect();
                row.push(if flags.is_empty() { "-".into() } else { flags.join(",") });
                row.push(l.detail.clone());
            }
            rows.push(row);
        }
        let columns = rows[0].len();
        let widths: Vec<usize> =
            (0..columns).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        let mut out = String::new();
        for r in &rows {
            let mut line = String::new();
            for (c, cell) in r.iter().enumerate() {
                if c + 1 == columns {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}   ", width = widths[c]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The metrics of a line: `qps 150 (50..100)`, or `qps failed`; of several, the first failing one (else the
/// first) and how many others there are (the JSON has them all).
fn value_cell(metrics: &[MetricLine]) -> String {
    let number = |v: f64| {
        if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.3}").trim_end_matches('0').to_string() }
    };
    let Some(m) = metrics.iter().find(|m| m.value.is_none()).or_else(|| metrics.first()) else {
        return "-".into();
    };
    let mut cell = match m.value {
        None => format!("{} failed", m.name),
        Some(v) => {
            format!("{} {} ({}..{})", m.name, number(v), number(m.low_watermark), number(m.high_watermark))
        }
    };
    if metrics.len() > 1 {
        let _ = write!(cell, " +{} more", metrics.len() - 1);
    }
    cell
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
