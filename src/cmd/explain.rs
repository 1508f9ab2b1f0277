//! `wpa explain`: the engine's whole decision for a live WPA at this instant, from the user's kubeconfig,
//! so nobody has to read controller logs to learn why a workload did or did not scale. It reads the WPA,
//! its target's `/scale`, the pods and the metrics exactly as the reconciler does, runs the same
//! [`engine::decide`], and writes nothing.

use std::fmt::Write as _;

use jiff::Timestamp;
use kube::{Api, ResourceExt};

use crate::{
    api::WatermarkPodAutoscaler,
    engine::{
        self, Decision, FallbackState, Forced, MetricKind, MonitorObservation, ScaleInfo, ScaleResult,
        gate::Blocked, pods,
    },
    reconciler::inputs::{Inputs, Sources},
    runtime::client::ClientError,
};

#[derive(clap::Args, Debug)]
pub(crate) struct ExplainArgs {
    /// Name of the WatermarkPodAutoscaler, or NAMESPACE/NAME.
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) connection: crate::cmd::connection::Connection,
    #[command(flatten)]
    pub(crate) metric_age: crate::cmd::metric_age::MetricAge,
    /// Same as `wpa serve --cluster-name` (sent to a recommender).
    #[arg(long, env = "K8S_CLUSTER_NAME", default_value = "")]
    pub(crate) cluster_name: String,
    /// `text`, the trace for people; `json`, the WPA's line of `wpa status -o json` (the same fields, with
    /// `schemaVersion` and `generatedAt`; docs/status.md), for scripts.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text, env = "WPA_EXPLAIN_OUTPUT")]
    pub(crate) output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
}

/// `wpa explain -o json`: one WPA as `wpa status -o json` reports each, from the same decision.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Explained {
    schema_version: u32,
    generated_at: Timestamp,
    #[serde(flatten)]
    line: crate::cmd::status::Line,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ExplainError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot read WatermarkPodAutoscaler {namespace}/{name}: {error}")]
    Get { namespace: String, name: String, error: String },
    #[error(transparent)]
    TwoNamespaces(#[from] crate::cmd::namespaced::TwoNamespaces),
}

/// The namespace and name asked for: `NAME` with `-n`, or `NAMESPACE/NAME` as kubectl prints them.
fn target(args: &ExplainArgs, default_namespace: &str) -> Result<(String, String), ExplainError> {
    Ok(crate::cmd::namespaced::parse(&args.name, args.connection.namespace.as_deref(), default_namespace)?)
}

/// Reads everything and returns the trace.
pub(crate) async fn run(args: &ExplainArgs) -> Result<String, ExplainError> {
    let client = args.connection.client().await?;
    let (namespace, name) = target(args, client.default_namespace())?;
    let api: Api<WatermarkPodAutoscaler> = Api::namespaced(client.clone(), &namespace);
    let wpa = api.get(&name).await.map_err(|e| ExplainError::Get {
        namespace: namespace.clone(),
        name: name.clone(),
        error: match e {
            kube::Error::Api(s) => s.message,
            other => crate::runtime::client::describe(&other),
        },
    })?;
    let sources = Sources::read_only(client, args.metric_age.limit(), args.cluster_name.clone());
    let now = Timestamp::now();
    let plan = engine::Plan::new(&wpa);
    let inputs = sources.gather(&plan, true, now).await;
    let decision = engine::decide(&plan, &inputs.observation(), now);
    Ok(output(args.output, &plan, &inputs, &decision, now))
}

/// The decision in the format asked for.
fn output(
    format: Output,
    plan: &engine::Plan<'_>,
    inputs: &Inputs,
    d: &Decision<'_>,
    now: Timestamp,
) -> String {
    match format {
        Output::Text => render(plan, inputs, d, now),
        Output::Json => {
            let explained = Explained {
                schema_version: crate::cmd::status::SCHEMA_VERSION,
                generated_at: now,
                line: crate::cmd::status::Line::of(plan, inputs, d, now),
            };
            // Strings, numbers and times only: serializing cannot fail.
            serde_json::to_string_pretty(&explained).map(|j| j + "\n").unwrap_or_default()
        }
    }
}

fn seconds(s: f64) -> String {
    if s <= 0.0 { "open".into() } else { format!("{}s left", s.ceil()) }
}

/// A milli-value as a plain number (`1500` → `1.5`).
fn plain(milli: f64) -> String {
    let v = milli / 1000.0;
    if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v}") }
}

/// The trace, as text: one section after the other, each stopping the trace where the pass stops.
pub(crate) fn render(plan: &engine::Plan<'_>, inputs: &Inputs, d: &Decision<'_>, now: Timestamp) -> String {
    let wpa = plan.wpa;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "WatermarkPodAutoscaler {}/{} at {now} (read only: nothing is written)",
        wpa.namespace().unwrap_or_default(),
        wpa.name_any()
    );
    conflict_section(&mut o, wpa, inputs);
    if let Some(msg) = &d.invalid {
        let _ = writeln!(
            o,
            "\nInvalid spec: {msg}\nThe reconciler does nothing with this WPA until it is edited."
        );
        return o;
    }
    bounds_section(&mut o, plan, inputs, d);
    let Some(scale) = target_section(&mut o, wpa, inputs, d) else { return o };
    metrics_section(&mut o, d);
    if let Some(line) = fallback_line(plan, d, now) {
        let _ = writeln!(o, "{line}");
    }
    if !combined_section(&mut o, d) {
        return finish(o, wpa, d);
    }
    limits_section(&mut o, wpa, d, scale, now);
    decision_section(&mut o, d, scale);
    finish(o, wpa, d)
}

/// Another autoscaler on the same target.
fn conflict_section(o: &mut String, wpa: &WatermarkPodAutoscaler, inputs: &Inputs) {
    if !inputs.conflicts.is_empty() {
        let r = &wpa.spec.scale_target_ref;
        let _ = writeln!(
            o,
            "\nConflict: HorizontalPodAutoscaler {} also scales {}/{}: the two fight over its replica count \
             (delete one, or set wpa.datadoghq.com/allow-conflicting-autoscaler: \"true\" to accept it).",
            inputs.conflicts.join(", "),
            r.kind,
            r.name
        );
    }
}

/// The bounds and mode of the effective spec, and the lifecycle monitor when one is read.
fn bounds_section(o: &mut String, plan: &engine::Plan<'_>, inputs: &Inputs, d: &Decision<'_>) {
    let (wpa, spec) = (plan.wpa, &d.spec);
    let ns = wpa.namespace().unwrap_or_default();
    let mode = if spec.dry_run.unwrap_or(false) { " (dry run: /scale is never written)" } else { "" };
    let _ = writeln!(
        o,
        "Bounds: minReplicas {}, maxReplicas {}, tolerance {}, algorithm {}{mode}",
        spec.min_replicas.unwrap_or(0),
        spec.max_replicas.unwrap_or(0),
        spec.tolerance.as_ref().map_or_else(|| "0".into(), |t| t.to_string()),
        spec.algorithm.as_deref().unwrap_or("absolute"),
    );
    if plan.lifecycle == engine::Lifecycle::Monitor {
        let state = match &inputs.monitor {
            MonitorObservation::Found(s) => match s.as_str() {
                Some(s) => format!("state {s}"),
                None => "no state".into(),
            },
            MonitorObservation::CrdMissing => "the DatadogMonitor CRD is not installed".into(),
            MonitorObservation::Unavailable(e) => format!("cannot be read: {e}"),
            MonitorObservation::NotRequested => "not read".into(),
        };
        let _ = writeln!(o, "Lifecycle control: DatadogMonitor {ns}/{}: {state}", wpa.name_any());
    }
}

/// The target's scale and pods; `None` when the target cannot be read (the pass stops there).
fn target_section<'a>(
    o: &mut String,
    wpa: &WatermarkPodAutoscaler,
    inputs: &'a Inputs,
    d: &Decision<'_>,
) -> Option<&'a ScaleInfo> {
    let spec = &d.spec;
    let (ns, r) = (wpa.namespace().unwrap_or_default(), &spec.scale_target_ref);
    let _ = writeln!(
        o,
        "\nTarget {} {}/{} ({})",
        r.kind,
        ns,
        r.name,
        r.api_version.as_deref().unwrap_or("no apiVersion")
    );
    let scale = match &inputs.target {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(o, "  cannot be read: {e}\n\nDecision: nothing happens ({})", d.reason);
            return None;
        }
    };
    let _ = writeln!(
        o,
        "  spec.replicas {} (every decision starts from it), status.replicas {}, selector {:?}",
        scale.spec_replicas, scale.status_replicas, scale.selector
    );
    // A count outside the bounds is corrected by a pass that can read its metrics: say it is waiting.
    if matches!(d.combined, Some(Err(_))) {
        let (min, max) = (spec.min_replicas.unwrap_or(1), spec.max_replicas.unwrap_or(0));
        let outside = if scale.spec_replicas > max {
            Some(format!("above maxReplicas {max}"))
        } else if scale.spec_replicas < min && scale.spec_replicas > 0 {
            Some(format!("below minReplicas {min}"))
        } else {
            None
        };
        if let Some(outside) = outside {
            let _ = writeln!(
                o,
                "  spec.replicas {} is {outside}: it is corrected once the metrics can be read (a failing metric stops the pass before the correction, as upstream)",
                scale.spec_replicas
            );
        }
    }
    match (&inputs.pods, &d.pods) {
        (Ok(p), Some(count)) => {
            let skip = pods::should_skip_owner_check(wpa.metadata.annotations.as_ref());
            let delay = spec.readiness_delay_seconds.unwrap_or(0);
            let _ = writeln!(
                o,
                "  pods: {} selected, {} ready, {} not counted (other owner or finished); minAvailableReplicaPercentage {}, readinessDelaySeconds {delay}{}",
                p.len(),
                count.ready,
                count.incorrect,
                spec.min_available_replica_percentage.unwrap_or(0),
                if skip { ", owner check skipped" } else { "" },
            );
        }
        (Err(e), _) => {
            let _ = writeln!(o, "  pods: cannot be listed: {e}");
        }
        (Ok(_), None) => {}
    }
    Some(scale)
}

/// Each metric's value against its watermarks, and its proposal.
fn metrics_section(o: &mut String, d: &Decision<'_>) {
    let spec = &d.spec;
    let _ = writeln!(o, "\nMetrics (the highest proposal wins; one failing metric blocks the pass)");
    for (i, m) in d.metrics.iter().enumerate() {
        let kind = match m.kind {
            MetricKind::External => "External",
            MetricKind::Resource => "Resource",
            MetricKind::Recommender => "Recommender",
        };
        let _ = write!(o, "  {}. {} ({kind})", i + 1, m.display_name);
        match &m.result {
            None => {
                let _ = writeln!(o, ": no source, skipped");
            }
            Some(Err(e)) => {
                let _ = writeln!(o, ": ERROR {e}");
            }
            Some(Ok(res)) => {
                // Labelled as the demo labels it: the value compared with the watermarks is per pod with
                // `algorithm: average` (the metric's total over the ready pods), the total otherwise.
                let per = match (m.kind, spec.algorithm.as_deref()) {
                    (MetricKind::Recommender, _) => "",
                    (_, Some("average")) => " per ready pod",
                    _ => " in total",
                };
                let _ = writeln!(o, ": value {}{per} ({} ready pods)", plain(res.usage), res.ready_replicas);
                match &res.band {
                    Some(b) => {
                        let _ = writeln!(
                            o,
                            "     low {} (with tolerance {}), high {} (with tolerance {}): {} → proposal {}",
                            plain(b.low_milli as f64),
                            plain(b.adjusted_low),
                            plain(b.high_milli as f64),
                            plain(b.adjusted_high),
                            res.position(),
                            res.replica_count
                        );
                    }
                    None => {
                        let _ = writeln!(o, "     {} → proposal {}", res.position(), res.replica_count);
                    }
                }
                if res.overflowed {
                    let _ = writeln!(o, "     {}", engine::plain::PROPOSAL_OVERFLOWED);
                }
                if !res.details.is_empty() {
                    let _ = writeln!(o, "     recommender: {}", res.details);
                }
            }
        }
    }
}

/// The metrics combined; `false` when a failing metric stops the pass (without a fallback to decide).
fn combined_section(o: &mut String, d: &Decision<'_>) -> bool {
    match &d.combined {
        None => {}
        // The fallback decides the count: its limits, windows and decision follow.
        Some(Err(_)) if matches!(d.fallback, Some(FallbackState::Active { .. })) => {}
        Some(Err(e)) => {
            let _ = writeln!(o, "\nDecision: no scaling. {}", e.message);
            return false;
        }
        Some(Ok(c)) => {
            let _ = writeln!(
                o,
                "  combined: proposal {} from {} ({})",
                c.replicas,
                c.display_name,
                match (c.is_above, c.is_below) {
                    (false, false) => "every value within its band".to_string(),
                    (a, b) => format!("above: {a}, below: {b}"),
                }
            );
        }
    }
    true
}

/// The rate limits from the current count, the forbidden windows and the delays.
fn limits_section(
    o: &mut String,
    wpa: &WatermarkPodAutoscaler,
    d: &Decision<'_>,
    scale: &ScaleInfo,
    now: Timestamp,
) {
    let spec = &d.spec;
    if let Some(n) = &d.normalized {
        let current = scale.spec_replicas;
        let _ = writeln!(
            o,
            "\nLimits from {current}: up to {} (scaleUpLimitFactor {}%), down to {} (scaleDownLimitFactor {}%), within [{}, {}] → {} ({})",
            n.up_limit,
            spec.scale_up_limit_factor.as_ref().map_or_else(|| "-".into(), |q| q.to_string()),
            n.down_limit,
            spec.scale_down_limit_factor.as_ref().map_or_else(|| "-".into(), |q| q.to_string()),
            spec.min_replicas.unwrap_or(0),
            spec.max_replicas.unwrap_or(0),
            n.replicas,
            n.limit.reason(),
        );
    }
    if let Some(g) = &d.gate {
        let last = wpa.status.as_ref().and_then(|s| s.last_scale_time.as_ref()).map_or_else(
            || "never".to_string(),
            |t| format!("{} ({}s ago)", t.0, now.duration_since(t.0).as_secs()),
        );
        let _ = writeln!(
            o,
            "Windows (from the last scale, {last}): upscale {}s: {}; downscale {}s: {}",
            spec.upscale_forbidden_window_seconds.unwrap_or(0),
            seconds(g.upscale_countdown),
            spec.downscale_forbidden_window_seconds.unwrap_or(0),
            seconds(g.downscale_countdown),
        );
        let _ = writeln!(
            o,
            "Delays: above the high watermark {}s, below the low watermark {}s{}",
            spec.upscale_delay_above_watermark_seconds.unwrap_or(0),
            spec.downscale_delay_below_watermark_seconds.unwrap_or(0),
            match &g.blocked {
                Some(Blocked::Delay { seconds_left, .. }) => format!(" ({seconds_left}s left)"),
                _ => String::new(),
            }
        );
    }
}

/// What the pass does.
fn decision_section(o: &mut String, d: &Decision<'_>, scale: &ScaleInfo) {
    let spec = &d.spec;
    let forced = match d.forced {
        Some(Forced::TargetAtZero) => " (the target is at 0 replicas: scaling is off)",
        Some(Forced::AboveMax) => " (forced: above maxReplicas, windows ignored)",
        Some(Forced::BelowMin) => " (forced: below minReplicas, windows ignored)",
        Some(Forced::NoReplicas) => " (forced: no replicas running)",
        None => "",
    };
    if d.rescale {
        let what = if spec.dry_run.unwrap_or(false) { "would scale (dry run)" } else { "scales" };
        let _ =
            writeln!(o, "\nDecision: {what} {} → {}{forced}: {}", scale.spec_replicas, d.desired, d.reason);
    } else {
        let _ = writeln!(o, "\nDecision: stays at {}{forced}: {}", scale.spec_replicas, d.reason);
    }
}

/// The WPA's fallback (annotations `fallback-replicas` and `fallback-after`), where one is set.
fn fallback_line(plan: &engine::Plan<'_>, d: &Decision<'_>, now: Timestamp) -> Option<String> {
    let fallback = match &plan.fallback {
        Ok(f) => (*f)?,
        Err(e) => return Some(format!("Fallback: off, its annotations cannot be read: {e}")),
    };
    let after = engine::fallback::human(fallback.after);
    let setting = format!("at least {} replicas once every metric has failed for {after}", fallback.replicas);
    Some(match d.fallback? {
        FallbackState::Off => format!("Fallback: {setting}; off (a metric answers)"),
        FallbackState::Pending { since, due, .. } => format!(
            "Fallback: {setting}; every metric has failed since {since}: from {due} ({}s from now) unless one answers",
            due.duration_since(now).as_secs().max(0)
        ),
        FallbackState::Active { since, .. } => {
            format!("Fallback: {setting}; active since {since}: the fallback sets the count (up only)")
        }
    })
}

fn finish(mut o: String, wpa: &WatermarkPodAutoscaler, d: &Decision<'_>) -> String {
    let _ = writeln!(o, "\nConditions the next pass writes (when its scale, if any, is written):");
    let conditions = d.settle(wpa, ScaleResult::Written).status.conditions;
    // Columns as wide as their longest cell; a message that repeats its reason (some of upstream's do)
    // is printed once.
    let type_width = conditions.iter().map(|c| c.type_.len()).max().unwrap_or(0);
    let reason_width = conditions.iter().map(|c| c.reason.as_deref().unwrap_or("").len()).max().unwrap_or(0);
    for c in &conditions {
        let reason = c.reason.as_deref().unwrap_or("");
        let message = c.message.as_deref().filter(|m| *m != reason).unwrap_or("");
        let line = format!("  {:<type_width$} {:<5} {reason:<reason_width$} {message}", c.type_, c.status);
        let _ = writeln!(o, "{}", line.trim_end());
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str, namespace: Option<&str>) -> ExplainArgs {
        ExplainArgs {
            name: name.into(),
            connection: crate::cmd::connection::Connection {
                namespace: namespace.map(String::from),
                kubeconfig: None,
                context: None,
            },
            metric_age: crate::cmd::metric_age::MetricAge { metric_max_age: std::time::Duration::ZERO },
            cluster_name: String::new(),
            output: Output::Text,
        }
    }

    /// The decision of a pass where 3 ready pods serve `total` of the example WPA's metric (watermarks 70
    /// and 100 per pod).
    fn conditions_table(total: i64) -> String {
        use crate::engine::{
            MetricObservation, MonitorObservation, Observation,
            calc::{ExternalSample, ScaleInfo},
            pods::{ConditionStatus, OwnerKind, OwnerRef, PodInfo, PodPhase, ReadyCondition},
        };
        let text = include_str!("../../examples/wpa.yaml");
        let wpa =
            crate::cmd::simulate::parse_wpa(std::path::Path::new("wpa.yaml"), text).expect("the example");
        let now = Timestamp::from_second(1_714_521_600).expect("a time");
        let long_ago = Timestamp::from_second(1_714_500_000).expect("a time");
        let pods: Vec<PodInfo> = (0..3)
            .map(|i| PodInfo {
                name: format!("web-{i}"),
                phase: PodPhase::Running,
                ready: Some(ReadyCondition {
                    status: ConditionStatus::True,
                    last_transition: Some(long_ago),
                }),
                start_time: Some(long_ago),
                deleting: false,
                owners: vec![OwnerRef { kind: OwnerKind::ReplicaSet, name: "web-1".into() }],
            })
            .collect();
        let metrics = [MetricObservation::External(Ok(ExternalSample {
            values: vec![total * 1000],
            timestamp: Some(now),
        }))];
        let obs = Observation {
            target: Ok(ScaleInfo {
                name: "web".into(),
                namespace: "default".into(),
                spec_replicas: 3,
                status_replicas: 3,
                selector: "app=web".into(),
            }),
            pods: Ok(&pods),
            metrics: &metrics,
            recommendation: None,
            monitor: MonitorObservation::Found(engine::MonitorState::Ok),
            conflicts: &[],
        };
        let plan = engine::Plan::new(&wpa);
        finish(String::new(), &wpa, &engine::decide(&plan, &obs, now))
    }

    #[test]
    fn the_conditions_table_fits_its_cells_and_says_a_repeated_message_once() {
        // 60 req/s over 3 pods, 20 per pod: below the band, where upstream's ConvergeToWatermark reason
        // is also its message.
        let table = conditions_table(60);
        let rows: Vec<&str> = table.lines().skip(2).collect();
        assert!(rows.len() >= 5, "{table}");
        let converge = rows.iter().find(|r| r.contains("ConvergeToWatermark")).expect("the converge row");
        assert_eq!(
            converge.matches("Converging to Watermark only allowed in stable regime").count(),
            1,
            "{table}"
        );
        // The status column starts at the same place on every row, however long a type is.
        let status_at: Vec<usize> = rows
            .iter()
            .map(|r| [r.find(" True "), r.find(" False ")].into_iter().flatten().min().expect("a status"))
            .collect();
        assert!(status_at.windows(2).all(|w| w[0] == w[1]), "{table}");
    }

    /// `wpa explain`'s trace at 12:00 of WPA `web` (2..10 replicas, `qps` with watermarks 50..100, last scaled
    /// an hour ago, `annotations`, `condition` in its status: type, status, seconds since) on a Deployment at
    /// `replicas` ready pods whose metric reads `value` (or fails).
    fn trace(
        annotations: &[(&str, &str)],
        condition: Option<(&str, &str, u64)>,
        replicas: i32,
        value: Result<i64, &str>,
    ) -> String {
        trace_as(Output::Text, annotations, condition, replicas, value)
    }

    /// [`trace`] in the format `format`.
    fn trace_as(
        format: Output,
        annotations: &[(&str, &str)],
        condition: Option<(&str, &str, u64)>,
        replicas: i32,
        value: Result<i64, &str>,
    ) -> String {
        use std::time::Duration;

        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

        use crate::{
            api::{Condition, WatermarkPodAutoscalerStatus},
            engine::fixtures,
        };
        let now: Timestamp = "2026-06-01T12:00:00Z".parse().expect("a time");
        let ago = |s: u64| now - Duration::from_secs(s);
        let mut wpa = fixtures::wpa("shop", "web", fixtures::external_spec("web", 2, serde_json::json!({})));
        wpa.metadata.annotations =
            Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        wpa.status = Some(WatermarkPodAutoscalerStatus {
            last_scale_time: Some(Time(ago(3600))),
            conditions: condition
                .map(|(type_, status, since)| Condition {
                    type_: type_.into(),
                    status: status.into(),
                    last_transition_time: Some(Time(ago(since))),
                    reason: None,
                    message: None,
                })
                .into_iter()
                .collect(),
            ..Default::default()
        });
        let inputs = Inputs::one_external("shop", "web", replicas, value, now);
        let plan = engine::Plan::new(&wpa);
        let d = engine::decide(&plan, &inputs.observation(), now);
        output(format, &plan, &inputs, &d, now)
    }

    #[test]
    fn a_proposal_past_a_32_bit_count_is_named_on_its_metric() {
        // 3e11 in total against a high watermark of 100 at 4 pods asks for 1.2e10 replicas.
        let overflowing = trace(&[], None, 4, Ok(300_000_000_000));
        assert!(line_of(&overflowing, "the proposal is past a 32-bit count").contains("check the metric"));
        assert!(!trace(&[], None, 4, Ok(300)).contains("32-bit"));
    }

    #[test]
    fn json_names_the_wpa_its_state_replicas_and_metrics_with_the_schema_version() {
        let v: serde_json::Value =
            serde_json::from_str(&trace_as(Output::Json, &[], None, 4, Ok(300))).expect("JSON");
        assert_eq!(v["schemaVersion"], crate::cmd::status::SCHEMA_VERSION);
        assert_eq!(v["generatedAt"], "2026-06-01T12:00:00Z");
        assert_eq!((v["namespace"].as_str(), v["name"].as_str()), (Some("shop"), Some("web")));
        assert_eq!(v["target"], "Deployment/web");
        assert_eq!(v["state"], "scaling", "{v}");
        assert_eq!(v["replicas"]["current"], 4);
        assert_eq!(v["metrics"][0]["value"], 300.0, "absolute: the total is compared");
        assert_eq!(v["metrics"][0]["position"], "above");
    }

    #[test]
    fn json_of_a_failing_metric_says_failed_and_gives_the_reason() {
        let v: serde_json::Value =
            serde_json::from_str(&trace_as(Output::Json, &[], None, 4, Err("boom"))).expect("JSON");
        assert_eq!(v["state"], "failing", "{v}");
        assert_eq!(v["metrics"][0]["position"], "failed");
        assert!(v["metrics"][0]["value"].is_null());
        assert!(v["reason"].as_str().is_some_and(|r| r.contains("boom")), "{v}");
    }

    const FALLBACK: [(&str, &str); 2] =
        [(crate::api::annotations::FALLBACK_REPLICAS, "8"), (crate::api::annotations::FALLBACK_AFTER, "10m")];

    /// The trace's line that starts with `start` (after its indent, which is left out).
    fn line_of<'t>(trace: &'t str, start: &str) -> &'t str {
        trace
            .lines()
            .map(str::trim_start)
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start:?} in\n{trace}"))
    }

    #[test]
    fn the_fallback_line_says_when_a_waiting_fallback_takes_over() {
        // Every metric has failed for 4 minutes, of the 10 fallback-after asks.
        let t = trace(&FALLBACK, Some(("Fallback", "Unknown", 240)), 4, Err("503 Service Unavailable"));
        assert_eq!(
            line_of(&t, "Fallback:"),
            "Fallback: at least 8 replicas once every metric has failed for 10m; every metric has failed since 2026-06-01T11:56:00Z: from 2026-06-01T12:06:00Z (360s from now) unless one answers"
        );
        assert!(t.contains("\nDecision: no scaling. "), "{t}");
    }

    #[test]
    fn the_fallback_line_says_since_when_an_active_fallback_sets_the_count_and_its_scale_follows() {
        let t = trace(&FALLBACK, Some(("Fallback", "True", 300)), 4, Err("503 Service Unavailable"));
        assert_eq!(
            line_of(&t, "Fallback:"),
            "Fallback: at least 8 replicas once every metric has failed for 10m; active since 2026-06-01T11:55:00Z: the fallback sets the count (up only)"
        );
        // The fallback's scale: max(4, 8) through the +50 % limit of 4.
        assert!(line_of(&t, "Limits from 4:").contains("→ 6 (ScaleUpLimit)"), "{t}");
        assert!(line_of(&t, "Decision:").starts_with("Decision: scales 4 → 6: fallback: "), "{t}");
    }

    #[test]
    fn the_fallback_line_says_off_while_a_metric_answers() {
        let t = trace(&FALLBACK, None, 4, Ok(300));
        assert_eq!(
            line_of(&t, "Fallback:"),
            "Fallback: at least 8 replicas once every metric has failed for 10m; off (a metric answers)"
        );
    }

    #[test]
    fn unreadable_fallback_annotations_are_named_in_the_fallback_line() {
        let bad = [(FALLBACK[0].0, "lots"), FALLBACK[1]];
        let t = trace(&bad, None, 4, Err("503 Service Unavailable"));
        assert_eq!(
            line_of(&t, "Fallback:"),
            "Fallback: off, its annotations cannot be read: wpa.datadoghq.com/fallback-replicas: \"lots\" is not a positive whole number of replicas (e.g. \"10\")"
        );
    }

    #[test]
    fn a_wpa_without_a_fallback_has_no_fallback_line() {
        let t = trace(&[], None, 4, Err("503 Service Unavailable"));
        assert!(!t.contains("Fallback:"), "{t}");
    }

    #[test]
    fn a_target_above_max_replicas_while_metrics_fail_is_said_to_be_corrected_once_they_can_be_read() {
        let t = trace(&[], None, 12, Err("503 Service Unavailable"));
        assert_eq!(
            line_of(&t, "spec.replicas 12 is"),
            "spec.replicas 12 is above maxReplicas 10: it is corrected once the metrics can be read (a failing metric stops the pass before the correction, as upstream)"
        );
        assert!(t.contains("\nDecision: no scaling. "), "no correction while the metric fails: {t}");
    }

    #[test]
    fn a_target_below_min_replicas_while_metrics_fail_is_said_to_be_corrected_once_they_can_be_read() {
        let t = trace(&[], None, 1, Err("503 Service Unavailable"));
        assert!(
            line_of(&t, "spec.replicas 1 is").starts_with(
                "spec.replicas 1 is below minReplicas 2: it is corrected once the metrics can be read"
            ),
            "{t}"
        );
    }

    #[test]
    fn a_target_outside_its_bounds_with_metrics_that_answer_is_corrected_with_no_note() {
        let t = trace(&[], None, 12, Ok(75));
        assert!(!t.contains("corrected once the metrics can be read"), "{t}");
        assert!(
            line_of(&t, "Decision:").starts_with("Decision: scales 12 → 10 (forced: above maxReplicas"),
            "{t}"
        );
    }

    #[test]
    fn a_target_in_its_bounds_while_metrics_fail_has_no_correction_note() {
        let t = trace(&[], None, 4, Err("503 Service Unavailable"));
        assert!(!t.contains("corrected once the metrics can be read"), "{t}");
    }

    #[test]
    fn a_wpa_is_named_as_kubectl_prints_it_or_with_n() {
        let ok = |a: ExplainArgs| target(&a, "ctx").map_err(|e| e.to_string());
        assert_eq!(ok(args("web", None)), Ok(("ctx".into(), "web".into())));
        assert_eq!(ok(args("web", Some("shop"))), Ok(("shop".into(), "web".into())));
        assert_eq!(ok(args("shop/web", None)), Ok(("shop".into(), "web".into())));
        assert_eq!(ok(args("shop/web", Some("shop"))), Ok(("shop".into(), "web".into())));
        assert_eq!(
            ok(args("shop/web", Some("other"))),
            Err("shop/web names namespace shop, and -n names other: give one of them".into())
        );
    }
}
