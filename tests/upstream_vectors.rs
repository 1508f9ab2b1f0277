//! Runs every vector of an upstream test-vector file through `wpa`'s own code and compares.
//!
//!     cargo test --test upstream_vectors                  # the project's copy (tests/data/upstream-vectors.json)
//!     WPA_VECTORS=other.json cargo test --test upstream_vectors
//!
//! The file's conventions: quantities are `{quantity, value, milli}`; times are offsets in seconds from the
//! evaluation instant, where `0` is "now at fixture construction", a few milliseconds before evaluation
//! (modelled as 1 ms), and `ZERO_TIME` is Go's zero time (present, not null). `expected` values must match;
//! `derived` values must match too, except where the spec's "Our decisions" change the behaviour. Those
//! exceptions are keyed by behaviour (never by vector name) and listed in `DIVERGENCES`; each vector that
//! relies on one says so.
//!
//! The last line printed is `upstream vectors: P passed, F failed, U unsupported`; the process fails if
//! F + U > 0.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::{Value, json};
use wpa::{
    api::quantity::Quantity,
    api::selector::Selector,
    api::{
        Condition, CrossVersionObjectReference, MetricSpec, RecommenderSpec, WatermarkPodAutoscaler,
        WatermarkPodAutoscalerSpec, WatermarkPodAutoscalerStatus,
    },
    engine::{
        self, Action, ConditionStatus, ExternalSample, FinalizerStep, MetricKind, MetricObservation,
        MetricOutcome, MonitorObservation, Observation, OwnerKind, OwnerRef, PodInfo, PodPhase,
        ReadyCondition, Recommendation, ScaleInfo, conditions,
    },
    vectors::{
        self, Reach, RecommenderClient,
        calc::{self, CalcSpec, MetricResult},
        gate, limits, pods,
        recommender::{self, RecommendationReply, RecommenderQuery},
        validation,
    },
};

/// Behaviours where "Our decisions" (the first section of docs/semantics.md) override upstream.
const DIVERGENCES: &[(&str, &str)] = &[
    (
        "D1",
        "Our decision 1: defaults are applied in memory and the spec is never rewritten, so a pass over an undefaulted spec does not write the object nor requeue for a defaults write",
    ),
    (
        "D2",
        "Our decision 2: the BelowLowWatermark reason is 'Value below Low Watermark' (upstream's typo fixed)",
    ),
    (
        "N1",
        "Negative metric values block scaling (a metric that is negative is garbage; the pass keeps the current count) where upstream would sum them",
    ),
    (
        "D7",
        "Our decision 7: when no scale happens, ScalingActive is True/NotScaling (the condition replaces the NotScaling event)",
    ),
];

const EPSILON: SignedDuration = SignedDuration::from_millis(1);

struct Ctx {
    now: Timestamp,
}

impl Ctx {
    fn time(&self, v: &Value) -> Result<Option<Timestamp>, String> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) if s == "ZERO_TIME" => Ok(Some(zero_time())),
            Value::Number(n) => {
                let secs = n.as_f64().ok_or("bad offset")?;
                Ok(Some(self.now + SignedDuration::from_secs_f64(secs) - EPSILON))
            }
            other => Err(format!("unsupported time {other}")),
        }
    }

    /// The offset (in whole seconds, rounded) of an engine time, for comparison with the file.
    fn offset(&self, t: Timestamp) -> i64 {
        ((t + EPSILON).duration_since(self.now).as_secs_f64()).round() as i64
    }
}

fn zero_time() -> Timestamp {
    "0001-01-01T00:00:00Z".parse().expect("Go's zero time")
}

/// The outcome of one vector.
#[derive(Default)]
struct Check {
    diffs: Vec<String>,
    divergences: BTreeSet<&'static str>,
}

impl Check {
    fn eq(&mut self, key: &str, expected: &Value, actual: &Value) {
        if !matches(expected, actual) {
            self.diffs.push(format!("{key}: expected {expected}, got {actual}"));
        }
    }

    fn expect_keys(&mut self, section: &Value, actual: &BTreeMap<String, Value>, skip: &[&str]) {
        for (k, e) in section.as_object().into_iter().flatten() {
            if skip.contains(&k.as_str()) {
                continue;
            }
            match actual.get(k) {
                Some(a) => self.eq(k, e, a),
                None => self.diffs.push(format!("{k}: not produced by this adapter (expected {e})")),
            }
        }
    }
}

fn is_zero_like(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Expected ⊆ actual; numbers within a small tolerance (time-derived gauges move by the 1 ms epsilon);
/// a field missing on our side matches a zero value (protojson and Go omit zero values).
fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(e), Value::Number(a)) => {
            let (e, a) = (e.as_f64().unwrap_or(f64::NAN), a.as_f64().unwrap_or(f64::NAN));
            (e - a).abs() <= 0.01 + 1e-9 * e.abs()
        }
        (Value::Object(e), Value::Object(a)) => {
            e.iter().all(|(k, ev)| a.get(k).map_or(is_zero_like(ev), |av| matches(ev, av)))
        }
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(e, a)| matches(e, a))
        }
        (e, Value::Null) => is_zero_like(e),
        (e, a) => e == a,
    }
}

/// Replaces `{quantity, value, milli}` by the quantity string, checking that our parser agrees on the milli
/// value.
fn strip_quantities(v: &Value, check: &mut Check) -> Value {
    match v {
        Value::Object(o) if o.contains_key("quantity") && o.contains_key("milli") => {
            let text = o["quantity"].as_str().unwrap_or_default().to_string();
            match Quantity::parse(&text) {
                Ok(q) if Some(q.milli()) == o["milli"].as_i64() => {}
                Ok(q) => check.diffs.push(format!(
                    "quantity {text}: milli {} but upstream says {}",
                    q.milli(),
                    o["milli"]
                )),
                Err(e) => check.diffs.push(format!("quantity {text}: {e}")),
            }
            Value::String(text)
        }
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), strip_quantities(v, check))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| strip_quantities(v, check)).collect()),
        other => other.clone(),
    }
}

fn quantity(v: &Value) -> Result<Option<Quantity>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Object(o) => Quantity::parse(o["quantity"].as_str().ok_or("quantity without text")?)
            .map(Some)
            .map_err(|e| e.to_string()),
        Value::String(s) => Quantity::parse(s).map(Some).map_err(|e| e.to_string()),
        Value::Number(n) => Quantity::parse(&n.to_string()).map(Some).map_err(|e| e.to_string()),
        other => Err(format!("not a quantity: {other}")),
    }
}

fn spec_from(v: &Value, check: &mut Check) -> Result<WatermarkPodAutoscalerSpec, String> {
    let stripped = strip_quantities(v, check);
    serde_json::from_value(stripped).map_err(|e| format!("spec: {e}"))
}

fn conditions_from(ctx: &Ctx, v: &Value) -> Result<Vec<Condition>, String> {
    let mut out = Vec::new();
    for c in v.as_array().into_iter().flatten() {
        out.push(Condition {
            type_: c["type"].as_str().unwrap_or_default().to_string(),
            status: c["status"].as_str().unwrap_or_default().to_string(),
            last_transition_time: ctx.time(&c["lastTransitionTimeOffsetSeconds"])?.map(Time),
            reason: c.get("reason").and_then(Value::as_str).map(str::to_string),
            message: c.get("message").and_then(Value::as_str).map(str::to_string),
        });
    }
    Ok(out)
}

fn status_from(ctx: &Ctx, v: &Value) -> Result<WatermarkPodAutoscalerStatus, String> {
    let mut s = WatermarkPodAutoscalerStatus {
        last_scale_time: ctx.time(v.get("lastScaleTimeOffsetSeconds").unwrap_or(&Value::Null))?.map(Time),
        conditions: conditions_from(ctx, v.get("conditions").unwrap_or(&Value::Null))?,
        ..Default::default()
    };
    for (key, field) in [
        ("desiredReplicas", &mut s.desired_replicas),
        ("currentReplicas", &mut s.current_replicas),
        ("scalingEventsCount", &mut s.scaling_events_count),
    ] {
        if let Some(n) = v.get(key).and_then(Value::as_i64) {
            *field = n as i32;
        }
    }
    Ok(s)
}

fn pod_from(ctx: &Ctx, v: &Value) -> Result<LabelledPod, String> {
    let cond_types: Vec<&str> = v["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["type"].as_str().unwrap_or_default())
        .collect();
    let ready = match pods::pod_condition_index(&cond_types, "Ready") {
        Some(i) => {
            let c = &v["conditions"][i];
            Some(ReadyCondition {
                status: ConditionStatus::parse(c["status"].as_str().unwrap_or_default()),
                last_transition: ctx.time(&c["lastTransitionTimeOffsetSeconds"])?,
            })
        }
        None => None,
    };
    let labels = v["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    Ok((
        PodInfo {
            name: v["name"].as_str().unwrap_or_default().to_string(),
            phase: PodPhase::parse(v["phase"].as_str().unwrap_or_default()),
            ready,
            start_time: ctx.time(&v["startTimeOffsetSeconds"])?,
            deleting: v["deletionTimestampSet"].as_bool().unwrap_or(false),
            owners: owners_from(&v["ownerReferences"]),
        },
        labels,
    ))
}

fn owners_from(v: &Value) -> Vec<OwnerRef> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|o| OwnerRef {
            kind: OwnerKind::parse(o["kind"].as_str().unwrap_or_default()),
            name: o["name"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// A pod and its labels.
type LabelledPod = (PodInfo, BTreeMap<String, String>);

fn pods_from(ctx: &Ctx, v: &Value) -> Result<Vec<LabelledPod>, String> {
    v.as_array().into_iter().flatten().map(|p| pod_from(ctx, p)).collect()
}

fn annotations_from(v: &Value) -> Option<BTreeMap<String, String>> {
    v.as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
}

fn scale_from(v: &Value) -> ScaleInfo {
    ScaleInfo {
        name: v["name"].as_str().unwrap_or_default().to_string(),
        namespace: v["namespace"].as_str().unwrap_or_default().to_string(),
        spec_replicas: v["specReplicas"].as_i64().unwrap_or(0) as i32,
        status_replicas: v["statusReplicas"].as_i64().unwrap_or(0) as i32,
        selector: v["selector"].as_str().unwrap_or_default().to_string(),
    }
}

fn i32_of(v: &Value) -> i32 {
    v.as_i64().unwrap_or(0) as i32
}

fn result_json(r: &MetricResult) -> BTreeMap<String, Value> {
    BTreeMap::from([
        ("replicaCount".into(), json!(r.replica_count)),
        ("utilization".into(), json!(r.utilization)),
        ("readyReplicas".into(), json!(r.ready_replicas)),
        ("isAbove".into(), json!(r.is_above)),
        ("isBelow".into(), json!(r.is_below)),
        ("details".into(), json!(r.details)),
    ])
}

fn check_error_contains(check: &mut Check, expected: &Value, actual: Option<&str>) {
    if let Some(want) = expected.get("error_contains").and_then(Value::as_str) {
        match actual {
            Some(got) if got.contains(want) => {}
            Some(got) => check.diffs.push(format!("error: expected it to contain {want:?}, got {got:?}")),
            None => check.diffs.push(format!("error: expected one containing {want:?}, got a result")),
        }
    }
}

// ===== adapters =====

fn replica_calculation(
    ctx: &Ctx,
    i: &Value,
    exp: &Value,
    der: &Value,
    check: &mut Check,
) -> Result<(), String> {
    let mut spec_json = i["spec"].clone();
    let recommender_json = spec_json.as_object_mut().and_then(|o| o.remove("recommender"));
    let mut spec = spec_from(&spec_json, check)?;
    if let Some(r) = recommender_json.filter(|r| !r.is_null()) {
        spec.recommender =
            Some(serde_json::from_value(strip_quantities(&r, check)).map_err(|e| e.to_string())?);
    }
    let skip = i.get("skipOwnerCheck").and_then(Value::as_bool).unwrap_or(false)
        || pods::should_skip_owner_check(annotations_from(&i["annotations"]).as_ref());
    let calc_spec = CalcSpec::from_spec(&spec, skip);
    let scale = scale_from(&i["scale"]);
    let selector = Selector::parse(&scale.selector).map_err(|e| e.to_string())?;
    let selected: Vec<PodInfo> = pods_from(ctx, &i["pods"])?
        .into_iter()
        .filter(|(_, l)| selector.matches(l))
        .map(|(p, _)| p)
        .collect();
    // The WPA's namespace: given, or (as in upstream's fixtures) the pods'.
    let wpa_ns = i["namespace"]
        .as_str()
        .or_else(|| i["wpa"]["namespace"].as_str())
        .or_else(|| i["pods"][0]["namespace"].as_str())
        .unwrap_or("");
    // A fetch failure, however the file names it (`externalMetricError`, `podMetricsError`, ...).
    let fetch_error: Option<String> = i.as_object().and_then(|o| {
        o.iter()
            .find(|(k, v)| k.to_ascii_lowercase().ends_with("error") && v.is_string())
            .and_then(|(_, v)| v.as_str().map(String::from))
    });
    let metric = &i["metric"];
    let band = |m: &Value| -> Result<(i64, i64), String> {
        Ok((
            quantity(&m["lowWatermark"])?.map_or(0, |q| q.milli()),
            quantity(&m["highWatermark"])?.map_or(0, |q| q.milli()),
        ))
    };
    let metric_selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector> =
        serde_json::from_value(metric["metricSelector"].clone()).ok().flatten();
    let result = match i["metricType"].as_str() {
        Some("External") => {
            let values = i["externalMetricValues"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|q| quantity(q).map(|q| q.map_or(0, |q| q.milli())))
                .collect::<Result<Vec<_>, _>>()?;
            let sample = ExternalSample { values, timestamp: None };
            calc::external(
                &calc_spec,
                &scale,
                &selected,
                wpa_ns,
                metric["metricName"].as_str().unwrap_or_default(),
                metric_selector.as_ref(),
                fetch_error.as_deref().map_or(Ok(&sample), Err),
                band(metric)?,
                ctx.now,
            )
        }
        Some("Resource") => {
            let usage: BTreeMap<String, i64> = i["podMetrics"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, q)| quantity(q).map(|q| (k.clone(), q.map_or(0, |q| q.milli()))))
                .collect::<Result<_, _>>()?;
            calc::resource(
                &calc_spec,
                &scale,
                &selected,
                wpa_ns,
                metric["name"].as_str().unwrap_or_default(),
                metric_selector.as_ref(),
                fetch_error.as_deref().map_or(Ok(&usage), Err),
                band(metric)?,
            )
        }
        Some("Recommender") => {
            // The request the reconciler sends for this pass, as the engine builds it.
            let cluster = i["targetCluster"].as_str().unwrap_or_default();
            // The request carries the WPA's own namespace (the pods' is only the metric lookups' fallback).
            let wpa_own_ns = i["namespace"].as_str().or_else(|| i["wpa"]["namespace"].as_str()).unwrap_or("");
            let query = recommender::query(wpa_own_ns, &spec, &scale, &selected, skip, cluster, ctx.now)
                .ok_or("the spec has no recommender")?;
            for section in [exp, der] {
                if let Some(want) = section.get("recommenderRequest") {
                    let reco = query.recommender.clone().unwrap_or_default();
                    let wire = serde_json::to_value(recommender::build_request(&query, &reco))
                        .map_err(|e| e.to_string())?;
                    let actual = json!({
                        "namespace": query.namespace, "targetCluster": query.target_cluster,
                        "currentReplicas": query.current_replicas, "desiredReplicas": query.desired_replicas,
                        "currentReadyReplicas": query.current_ready_replicas,
                        "minReplicas": query.min_replicas, "maxReplicas": query.max_replicas,
                        "targets": wire["targets"],
                    });
                    for (k, w) in want.as_object().into_iter().flatten() {
                        check.eq(&format!("recommenderRequest.{k}"), w, &actual[k]);
                    }
                }
            }
            let r = &i["recommenderResponse"];
            let ts = ctx.time(r.get("timestampOffsetSeconds").unwrap_or(&Value::Null))?;
            let echo = i.get("recommenderEcho").is_some();
            // A recommender that answers from the request: `currentReplicas`, within ±2 (upstream #333).
            let answer = |n: i32| if echo { query.current_replicas + n } else { n };
            let rec = Recommendation {
                replicas: answer(if echo { 0 } else { i32_of(&r["replicas"]) }),
                replicas_lower_bound: answer(if echo { -2 } else { i32_of(&r["replicasLowerBound"]) }),
                replicas_upper_bound: answer(if echo { 2 } else { i32_of(&r["replicasUpperBound"]) }),
                timestamp: ts.map(|t| t.to_string()),
                details: r["details"].as_str().unwrap_or_default().to_string(),
                observed_target_value: r["observedTargetValue"].as_f64().unwrap_or(0.0),
            };
            let name = spec.recommender.as_ref().map(recommender::display_name).unwrap_or_default();
            let reply = match (fetch_error.as_deref(), r.get("error").and_then(Value::as_str)) {
                (Some(e), _) | (None, Some(e)) => Err(e),
                _ => Ok(&rec),
            };
            let out = calc::recommender(&calc_spec, &scale, &selected, &name, reply, ctx.now);
            if let (Ok(r), Some(ts)) = (&out, ts) {
                // "timestamp equals the recommender response's": the reply's time is passed through.
                if r.timestamp.map(|t| t.as_second()) != Some(ts.as_second()) {
                    check.diffs.push(format!("timestamp: expected {ts}, got {:?}", r.timestamp));
                }
            }
            out
        }
        other => return Err(format!("metricType {other:?}")),
    };
    match &result {
        Ok(r) => {
            let actual = result_json(r);
            check.expect_keys(exp, &actual, &["error_contains", "timestamp", "recommenderRequest"]);
            check.expect_keys(der, &actual, &["timestamp", "recommenderRequest"]);
            check_error_contains(check, exp, None);
        }
        Err(e)
            if exp.get("error_contains").is_none()
                && e.0.contains("cannot be negative")
                && has_negative(i) =>
        {
            check.divergences.insert("N1");
        }
        Err(e) => {
            if exp.get("error_contains").is_none() {
                check.diffs.push(format!("unexpected error: {e}"));
            }
            check_error_contains(check, exp, Some(&e.0));
        }
    }
    Ok(())
}

/// Whether a vector feeds a negative metric value.
fn has_negative(i: &Value) -> bool {
    let values = i["externalMetricValues"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(i["podMetrics"].as_object().into_iter().flat_map(|o| o.values()));
    values.filter_map(|q| quantity(q).ok().flatten()).any(|q| q.milli() < 0)
}

fn group_pods(ctx: &Ctx, i: &Value, exp: &Value, der: &Value, check: &mut Check) -> Result<(), String> {
    let ps: Vec<PodInfo> = pods_from(ctx, &i["pods"])?.into_iter().map(|(p, _)| p).collect();
    let with: BTreeSet<&str> =
        i["podsWithMetrics"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let g = pods::group_pods(
        &ps,
        &with,
        i["resource"].as_str().unwrap_or_default(),
        i["targetName"].as_str().unwrap_or_default(),
        i32_of(&i["readinessDelaySeconds"]),
        i["skipOwnerCheck"].as_bool().unwrap_or(false),
    );
    let sorted = |v: &Value| -> Value {
        let mut names: Vec<&str> = v.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        names.sort();
        json!(names)
    };
    let actual: BTreeMap<String, Value> = BTreeMap::from([
        ("readyPodCount".into(), json!(g.ready.len())),
        ("readyPods".into(), json!(g.ready)),
        ("ignoredPods".into(), json!(g.ignored)),
        ("missingPods".into(), json!(g.missing)),
        ("unownedPods".into(), json!(g.unowned)),
    ]);
    for section in [exp, der] {
        for (k, e) in section.as_object().into_iter().flatten() {
            let e = if e.is_array() { sorted(e) } else { e.clone() };
            match actual.get(k) {
                Some(a) => check.eq(k, &e, a),
                None => check.diffs.push(format!("{k}: not produced (expected {e})")),
            }
        }
    }
    Ok(())
}

fn ready_pods_count(ctx: &Ctx, i: &Value, exp: &Value, der: &Value, check: &mut Check) -> Result<(), String> {
    let ps: Vec<PodInfo> = pods_from(ctx, &i["pods"])?.into_iter().map(|(p, _)| p).collect();
    let target = i["targetName"].as_str().unwrap_or_default();
    let delay = i32_of(&i["readinessDelaySeconds"]);
    let skip = i["skipOwnerCheck"].as_bool().unwrap_or(false);
    let count = pods::count_ready_pods(&ps, target, delay, skip, ctx.now);
    let err = pods::ready_pods_count(&ps, target, delay, skip, ctx.now).err().map(|e| e.0);
    let actual: BTreeMap<String, Value> = BTreeMap::from([
        ("readyCount".into(), json!(count.ready)),
        ("incorrectTargetPodsCount".into(), json!(count.incorrect)),
        ("error".into(), err.map_or(Value::Null, Value::String)),
    ]);
    check.expect_keys(exp, &actual, &[]);
    check.expect_keys(der, &actual, &[]);
    Ok(())
}

fn simple(check: &mut Check, exp: &Value, der: &Value, actual: BTreeMap<String, Value>) {
    check.expect_keys(exp, &actual, &[]);
    check.expect_keys(der, &actual, &[]);
}

fn outcome_for(index: usize, spec_metric: &MetricSpec, r: &Value) -> MetricOutcome {
    let mut m = spec_metric.clone();
    vectors::fill_missing_watermark(&mut m);
    let (kind, name, sel, high, low) = match (&m.external, &m.resource) {
        (Some(e), _) if m.type_ != "Resource" => (
            MetricKind::External,
            e.metric_name.clone(),
            e.metric_selector.clone(),
            e.high_watermark.clone(),
            e.low_watermark.clone(),
        ),
        (_, Some(r)) => (
            MetricKind::Resource,
            r.name.clone(),
            r.metric_selector.clone(),
            r.high_watermark.clone(),
            r.low_watermark.clone(),
        ),
        _ => (MetricKind::External, String::new(), None, None, None),
    };
    let display_name = format!(
        "{name}{{{}}}",
        wpa::api::selector::go_map_string(sel.as_ref().and_then(|s| s.match_labels.as_ref()))
    );
    MetricOutcome {
        kind,
        name,
        display_name,
        high_milli: high.map_or(0, |q| q.milli()),
        low_milli: low.map_or(0, |q| q.milli()),
        result: Some(faked_result(r)),
        index,
    }
}

fn faked_result(r: &Value) -> Result<MetricResult, String> {
    if let Some(e) = r.get("error").and_then(Value::as_str) {
        return Err(e.to_string());
    }
    let utilization = r["utilization"].as_i64().unwrap_or(0);
    Ok(MetricResult {
        replica_count: i32_of(&r["replicaCount"]),
        utilization,
        usage: utilization as f64,
        timestamp: None,
        ready_replicas: i32_of(&r["readyReplicas"]),
        is_above: r["isAbove"].as_bool().unwrap_or(false),
        is_below: r["isBelow"].as_bool().unwrap_or(false),
        details: r.get("details").and_then(Value::as_str).unwrap_or_default().to_string(),
        converge: None,
        band: None,
        overflowed: false,
    })
}

/// `name{label=value,...}` → the gauge (or counter) value the pass produced; an unset series reads 0.
/// A pass whose `/scale` write (if any) succeeded: upstream's tests use a fake client that accepts it.
struct Pass<'a> {
    d: engine::Decision<'a>,
    o: engine::Outcome,
    /// What `wpa serve` exports after the pass (the product's exporter).
    exposition: String,
}

impl<'a> Pass<'a> {
    fn settled(wpa: &WatermarkPodAutoscaler, d: engine::Decision<'a>) -> Self {
        let o = d.settle(wpa, engine::ScaleResult::Written);
        let exposition = vectors::exposition(wpa, &d, &o, Vec::new()).unwrap_or_default();
        Pass { d, o, exposition }
    }
}

impl<'a> std::ops::Deref for Pass<'a> {
    type Target = engine::Decision<'a>;
    fn deref(&self) -> &Self::Target {
        &self.d
    }
}

fn prom_value(d: &Pass, key: &str) -> Value {
    let (name, labels) = match key.split_once('{') {
        Some((n, rest)) => {
            let inner = rest.trim_end_matches('}');
            let labels: Vec<(String, String)> = inner
                .split(',')
                .filter(|s| !s.is_empty())
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                .collect();
            (n, labels)
        }
        None => (key, vec![]),
    };
    let name = name.strip_prefix("wpa_controller_").unwrap_or(name);
    // A counter is written `<name>_total`; a vector may name it either way.
    let names = [format!("wpa_controller_{name}"), format!("wpa_controller_{name}_total")];
    // The series as `wpa serve` exports them: every label the key names must be on the series (a key names
    // the labels it cares about; the exporter adds the WPA's).
    let mut values = d.exposition.lines().filter(|l| !l.starts_with('#')).filter_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if !names.iter().any(|n| n == series_name) {
            return None;
        }
        let has = |k: &str, v: &str| series_labels.contains(&format!("{k}=\"{v}\""));
        let counter = series_name.ends_with("_total");
        labels
            .iter()
            .all(|(k, v)| has(k, v))
            .then(|| value.parse::<f64>().ok().map(|v| (counter, v)))
            .flatten()
    });
    // A gauge is one series; a counter's increments add up.
    let total = match values.next() {
        Some((true, first)) => first + values.map(|(_, v)| v).sum::<f64>(),
        Some((false, first)) => first,
        None => 0.0,
    };
    json!(total)
}

/// Compares expected conditions (`{Type: {status, reason, message}}`), applying the documented divergences.
fn check_conditions(check: &mut Check, d: &Pass, expected: &Value) {
    for (type_, want) in expected.as_object().into_iter().flatten() {
        let Some(c) = conditions::get_condition(&d.o.status, type_) else {
            check.diffs.push(format!("condition {type_}: missing"));
            continue;
        };
        for (field, want_v) in want.as_object().into_iter().flatten() {
            let got = match field.as_str() {
                "status" => json!(c.status),
                "reason" => json!(c.reason),
                "message" => json!(c.message),
                other => {
                    check.diffs.push(format!("condition {type_}.{other}: unknown field"));
                    continue;
                }
            };
            if matches(want_v, &got) {
                continue;
            }
            if type_ == conditions::BELOW_LOW_WATERMARK
                && field == "reason"
                && want_v == "Value above Low Watermark"
                && got == "Value below Low Watermark"
            {
                check.divergences.insert("D2");
                continue;
            }
            if type_ == conditions::SCALING_ACTIVE
                && field != "status"
                && c.reason.as_deref() == Some("NotScaling")
                && !d.rescale
            {
                check.divergences.insert("D7");
                continue;
            }
            check.diffs.push(format!("condition {type_}.{field}: expected {want_v}, got {got}"));
        }
    }
}

fn decision_facts(d: &Pass) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::from([
        ("status.desiredReplicas".into(), json!(d.o.status.desired_replicas)),
        ("conditionCount".into(), json!(d.o.status.conditions.len())),
        ("scaleUpdated".into(), json!(d.o.scaled_to.is_some())),
        ("scaleUpdatedTo".into(), d.o.scaled_to.map_or(Value::Null, |n| json!(n))),
        ("normalizedDesired".into(), d.normalized.map_or(Value::Null, |n| json!(n.replicas))),
        ("rescaleReason".into(), json!(d.reason)),
        ("status.currentReplicas".into(), json!(d.o.status.current_replicas)),
    ]);
    if let Some(gate::Blocked::Delay { seconds_left, .. }) = d.gate.as_ref().and_then(|g| g.blocked.clone()) {
        m.insert("delayRemainingSeconds".into(), json!(seconds_left));
    }
    // The limits inside the decision (`convertDesiredReplicasWithRules` as reconcileWPA runs it), under the
    // names of upstream's functions and variables.
    if let Some(n) = &d.normalized {
        let limits = json!({
            "scaleUpLimit": n.up_limit, "scaleDownLimit": n.down_limit, "replicas": n.replicas,
            "condition": n.limit.reason(), "reason": n.limit.message(),
        });
        for (key, value) in [
            ("scaleUpLimit", json!(n.up_limit)),
            ("scaleDownLimit", json!(n.down_limit)),
            ("possibleLimitingCondition", json!(n.limit.reason())),
            ("possibleLimitingReason", json!(n.limit.message())),
            ("limits", limits),
        ] {
            m.insert(key.into(), value);
        }
    }
    // The gate (`shouldScale`), under the names of the should_scale vectors.
    if let Some(g) = &d.gate {
        m.insert("shouldScale".into(), json!(g.allowed));
        m.insert("backoffUp".into(), json!(g.backoff_up));
        m.insert("backoffDown".into(), json!(g.backoff_down));
        m.insert("ableToScaleReason".into(), g.backoff_condition.map_or(Value::Null, |(r, _)| json!(r)));
        if let Some(gate::Blocked::Window { seconds_left, .. }) = &g.blocked {
            m.insert("timeLeft".into(), json!(seconds_left));
        }
    }
    m
}

/// Checks the keys common to reconcile_decision and reconcile_entry.
fn check_decision(ctx: &Ctx, check: &mut Check, d: &Pass, section: &Value) {
    let facts = decision_facts(d);
    for (k, e) in section.as_object().into_iter().flatten() {
        match k.as_str() {
            "conditions" => check_conditions(check, d, e),
            "promMetrics" => {
                for (key, want) in e.as_object().into_iter().flatten() {
                    check.eq(&format!("promMetrics {key}"), want, &prom_value(d, key));
                }
            }
            "ScalingActive"
            | "AbleToScale"
            | "ScalingLimited"
            | "DryRun"
            | "AboveHighWatermark"
            | "BelowLowWatermark"
            | "ConvergeToWatermark"
            | "ScalingBlocked" => check_conditions(check, d, &json!({ k.clone(): e.clone() })),
            "events" => check_events(check, d, e),
            "result" | "error" | "sideEffects" => {}
            key if key.starts_with("status.conditions[") => {
                let (idx, field) = key
                    .trim_start_matches("status.conditions[")
                    .split_once(']')
                    .map(|(i, rest)| (i.parse::<usize>().unwrap_or(usize::MAX), rest.trim_start_matches('.')))
                    .unwrap_or((usize::MAX, ""));
                let Some(c) = d.o.status.conditions.get(idx) else {
                    check
                        .diffs
                        .push(format!("{key}: there are only {} conditions", d.o.status.conditions.len()));
                    continue;
                };
                let cj = json!({"type": c.type_, "status": c.status, "reason": c.reason, "message": c.message,
                    "lastTransitionTimeOffsetSeconds": c.last_transition_time.as_ref().map(|t| ctx.offset(t.0))});
                let got = if field.is_empty() { cj } else { cj.get(field).cloned().unwrap_or(Value::Null) };
                check.eq(key, e, &got);
            }
            other => match facts.get(other) {
                Some(a) => check.eq(other, e, a),
                None => check.diffs.push(format!("{other}: not produced by this adapter (expected {e})")),
            },
        }
    }
}

/// Every expected event must be among the pass's events (in any order; others may be there too). An event is
/// an object `{type, reason, message | messageContains}` (any field may be left out), or the line a
/// client-go FakeRecorder records, `"<type> <reason> <message>"`.
fn check_events(check: &mut Check, d: &Pass, expected: &Value) {
    let lines: Vec<(String, String, String)> =
        d.o.events
            .iter()
            .map(|e| {
                (
                    (if e.warning { "Warning" } else { "Normal" }).to_string(),
                    e.reason.to_string(),
                    e.message.clone(),
                )
            })
            .collect();
    for want in expected.as_array().into_iter().flatten() {
        let found = lines.iter().any(|(ty, reason, message)| match want {
            Value::String(line) => *line == format!("{ty} {reason} {message}"),
            Value::Object(w) => {
                let field = |k: &str| w.get(k).and_then(Value::as_str);
                field("type").or(field("eventType")).is_none_or(|t| t == ty)
                    && field("reason").is_none_or(|r| r == reason)
                    && field("message").is_none_or(|m| m == message)
                    && field("messageContains").is_none_or(|m| message.contains(m))
            }
            _ => false,
        });
        if !found {
            check.diffs.push(format!("events: {want} not among {lines:?}"));
        }
    }
}

fn wpa_object(
    ns: &str,
    name: &str,
    spec: WatermarkPodAutoscalerSpec,
    status: Option<WatermarkPodAutoscalerStatus>,
    extra: &Value,
) -> WatermarkPodAutoscaler {
    let mut wpa = WatermarkPodAutoscaler::new(name, spec);
    wpa.metadata = ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(ns.to_string()),
        labels: annotations_from(&extra["labels"]),
        annotations: annotations_from(&extra["annotations"]),
        finalizers: extra["finalizers"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect()),
        deletion_timestamp: extra
            .get("deletionTimestampSet")
            .and_then(Value::as_bool)
            .filter(|b| *b)
            .map(|_| Time(Timestamp::now())),
        ..Default::default()
    };
    wpa.status = status;
    wpa
}

fn reconcile_decision(
    ctx: &Ctx,
    i: &Value,
    exp: &Value,
    der: &Value,
    check: &mut Check,
) -> Result<(), String> {
    let spec = spec_from(&i["spec"], check)?;
    let status = status_from(ctx, &i["status"])?;
    let wpa = wpa_object("default", "test", spec.clone(), Some(status), i);
    let results: Vec<Value> = i["metricResults"].as_array().cloned().unwrap_or_default();
    let outcomes: Vec<MetricOutcome> = spec
        .metrics
        .iter()
        .flatten()
        .enumerate()
        .map(|(n, m)| outcome_for(n, m, results.get(n).or(results.last()).unwrap_or(&Value::Null)))
        .collect();
    let mut scale = scale_from(&i["scale"]);
    if scale.name.is_empty() {
        scale.name = spec.scale_target_ref.name.clone();
    }
    let d = Pass::settled(&wpa, vectors::decide_from_results(&wpa, &scale, outcomes, ctx.now));
    check_decision(ctx, check, &d, exp);
    check_decision(ctx, check, &d, der);
    Ok(())
}

/// Upstream's tests build the reconciler without `SetupWithManager`, which sets its sync period: it is 0
/// there, and a pass that waits for the next period returns an empty `reconcile.Result`.
const TEST_SYNC_PERIOD: std::time::Duration = std::time::Duration::ZERO;

/// Our controller result for a pass (the product's mapping of the engine's action), as JSON.
fn action_json(a: Action) -> Value {
    let r = a.controller_result(TEST_SYNC_PERIOD);
    let mut o = serde_json::Map::new();
    if r.requeue {
        o.insert("requeue".into(), json!(true));
    }
    if !r.requeue_after.is_zero() {
        o.insert("requeueAfter".into(), json!(r.requeue_after.as_secs_f64()));
    }
    Value::Object(o)
}

/// A `reconcile.Result` as a vector may write it: `{}`, `{"requeue": true, "requeueAfter": "2m0s"}`, Go's
/// field names (`Requeue`, `RequeueAfter` in nanoseconds), or its `%v` form `{false 2m0s}`.
fn normalized_result(expected: &Value) -> Option<Value> {
    let secs = |v: &Value| match v {
        Value::String(s) => parse_go_duration(s),
        Value::Number(n) if n.as_f64().unwrap_or(0.0) >= 1e6 => n.as_f64().map(|n| n / 1e9),
        Value::Number(n) => n.as_f64(),
        _ => None,
    };
    let (requeue, after) = match expected {
        Value::String(s) if s.starts_with('{') => {
            let inner = s.trim_matches(|c| c == '{' || c == '}');
            let mut parts = inner.split_whitespace();
            (parts.next()? == "true", parts.next().and_then(parse_go_duration).unwrap_or(0.0))
        }
        Value::String(s) => (false, parse_go_duration(s)?),
        Value::Object(o) => {
            let get = |a: &str, b: &str| o.get(a).or_else(|| o.get(b));
            (
                get("requeue", "Requeue").and_then(Value::as_bool).unwrap_or(false),
                get("requeueAfter", "RequeueAfter").map_or(Some(0.0), secs)?,
            )
        }
        _ => return None,
    };
    let mut o = serde_json::Map::new();
    if requeue {
        o.insert("requeue".into(), json!(true));
    }
    if after != 0.0 {
        o.insert("requeueAfter".into(), json!(after));
    }
    Some(Value::Object(o))
}

/// Compares an expected controller-runtime `Result` with ours.
fn check_result(check: &mut Check, expected: &Value, ours: Action, spec_was_defaulted: bool) {
    let want = match expected {
        // Prose for the period of passes: in upstream's test that period is 0, so the Result is empty.
        Value::String(s) if s.contains("sync period") => json!({}),
        other => match normalized_result(other) {
            Some(w) => w,
            None => {
                check.diffs.push(format!("result: cannot read {other}"));
                return;
            }
        },
    };
    let got = action_json(ours);
    if want == got || matches(&want, &got) && matches(&got, &want) {
        return;
    }
    if want == json!({"requeue": true}) && !spec_was_defaulted && ours == Action::Done {
        check.divergences.insert("D1");
        return;
    }
    check.diffs.push(format!("result: expected {want}, got {got}"));
}

/// Go's `time.Duration` string, e.g. `2m0s`, `15s`, `1.5s`.
fn parse_go_duration(s: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push(chars.next()?);
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            _ => return None,
        };
        any = true;
    }
    if !num.is_empty() {
        return None;
    }
    any.then_some(total)
}

fn reconcile_entry(ctx: &Ctx, i: &Value, exp: &Value, der: &Value, check: &mut Check) -> Result<(), String> {
    let w = &i["wpa"];
    if w.is_null() {
        // The WPA is gone: done, no error (the reconciler maps NotFound to "nothing to do").
        check_result(check, &exp["result"], Action::Done, true);
        check.eq("error", exp.get("error").unwrap_or(&json!(false)), &json!(false));
        return Ok(());
    }
    let spec = spec_from(&w["spec"], check)?;
    let defaulted = validation::is_defaulted(&spec);
    let status = match w.get("status") {
        Some(s) if !s.is_null() => Some(status_from(ctx, s)?),
        _ => None,
    };
    let wpa = wpa_object(
        w["namespace"].as_str().unwrap_or_default(),
        w["name"].as_str().unwrap_or_default(),
        spec,
        status,
        w,
    );
    let mut side_effects = Vec::new();
    let step = engine::finalizer_step(&wpa);
    let plan = engine::Plan::new(&wpa);
    let decision = match step {
        FinalizerStep::Finalize | FinalizerStep::Skip => None,
        FinalizerStep::Add | FinalizerStep::Proceed => {
            if step == FinalizerStep::Add {
                side_effects.push(format!("finalizer '{}' added via object update", wpa::api::FINALIZER));
            }
            let monitor = match i.get("datadogMonitor") {
                Some(m) if !m.is_null() => MonitorObservation::Found(engine::MonitorState::parse(
                    m["status"]["monitorState"].as_str(),
                )),
                // No such object: the API server's 404, through the reconciler's own reading of it.
                _ if plan.lifecycle == engine::Lifecycle::Monitor => {
                    let status: kube::core::Status = serde_json::from_value(json!({
                        "status": "Failure", "reason": "NotFound", "code": 404,
                        "message": format!("datadogmonitors.datadoghq.com \"{}\" not found", w["name"].as_str().unwrap_or_default()),
                    }))
                    .map_err(|e| e.to_string())?;
                    vectors::monitor_observation(Err(kube::Error::Api(Box::new(status))))
                }
                _ => MonitorObservation::NotRequested,
            };
            let mut scale = scale_from(i.get("scale").unwrap_or(&Value::Null));
            scale.name = wpa.spec.scale_target_ref.name.clone();
            let pod_list: Vec<PodInfo> = pods_from(ctx, &i["pods"])?.into_iter().map(|(p, _)| p).collect();
            let metric_obs: Vec<MetricObservation> =
                wpa.spec.metrics.iter().flatten().map(|_| MetricObservation::Skipped).collect();
            let obs = Observation {
                target: Ok(scale),
                pods: Ok(&pod_list),
                metrics: &metric_obs,
                recommendation: None,
                monitor,
                conflicts: &[],
            };
            Some(Pass::settled(&wpa, engine::decide(&plan, &obs, ctx.now)))
        }
    };
    let action = decision.as_ref().map_or(Action::Done, |d| d.o.action);
    if let Some(r) = exp.get("result") {
        check_result(check, r, action, defaulted);
    }
    check.eq("error", exp.get("error").unwrap_or(&json!(false)), &json!(false));
    if let Some(d) = &decision {
        check_decision(ctx, check, d, exp);
        check_decision(ctx, check, d, der);
    }
    if let Some(want) = der.get("sideEffects").and_then(Value::as_array) {
        for e in want {
            let e = e.as_str().unwrap_or_default();
            if side_effects.iter().any(|s| s == e) {
                continue;
            }
            if e.contains("defaulted spec") && !defaulted {
                check.divergences.insert("D1");
                continue;
            }
            check.diffs.push(format!("sideEffects: expected {e:?}, ours are {side_effects:?}"));
        }
    }
    Ok(())
}

fn compute_replicas(
    _ctx: &Ctx,
    i: &Value,
    exp: &Value,
    der: &Value,
    check: &mut Check,
) -> Result<(), String> {
    let metrics: Vec<MetricSpec> =
        serde_json::from_value(strip_quantities(&i["metrics"], check)).map_err(|e| e.to_string())?;
    let recommender: Option<RecommenderSpec> = match i.get("recommender") {
        Some(r) if !r.is_null() => {
            Some(serde_json::from_value(strip_quantities(r, check)).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    let spec = WatermarkPodAutoscalerSpec {
        metrics: Some(metrics.clone()),
        recommender: recommender.clone(),
        ..Default::default()
    };
    let results = &i["replicaCalculatorResults"];
    let outcomes: Vec<MetricOutcome> = match &recommender {
        Some(r) => {
            let name = recommender::display_name(r);
            vec![MetricOutcome {
                kind: MetricKind::Recommender,
                display_name: name.clone(),
                name,
                high_milli: r.high_watermark.as_ref().map_or(0, Quantity::milli),
                low_milli: r.low_watermark.as_ref().map_or(0, Quantity::milli),
                result: Some(faked_result(&results["recommender"])),
                index: 0,
            }]
        }
        None => metrics
            .iter()
            .enumerate()
            .map(|(n, m)| {
                let key = m
                    .external
                    .as_ref()
                    .map(|e| e.metric_name.clone())
                    .or_else(|| m.resource.as_ref().map(|r| r.name.clone()))
                    .unwrap_or_default();
                outcome_for(n, m, &results[key.as_str()])
            })
            .collect(),
    };
    let actual: BTreeMap<String, Value> = match vectors::combine(&spec, &outcomes) {
        Ok((c, statuses)) => BTreeMap::from([
            ("replicas".into(), json!(c.replicas)),
            ("metricName".into(), json!(c.display_name)),
            ("statusesCount".into(), json!(statuses.len())),
            ("error".into(), Value::Null),
            ("conditionMessage".into(), json!(vectors::valid_metric_message(&c.display_name, &c.details))),
        ]),
        Err(e) => BTreeMap::from([
            ("replicas".into(), json!(0)),
            ("metricName".into(), json!("")),
            ("statusesCount".into(), json!(0)),
            ("error".into(), json!(e.message)),
            (
                "conditionMessage".into(),
                json!(format!("the WPA was unable to compute the replica count: {}", e.cause)),
            ),
        ]),
    };
    for section in [exp, der] {
        for (k, e) in section.as_object().into_iter().flatten() {
            if k == "someConditionMessageContains" {
                let msg = actual["conditionMessage"].as_str().unwrap_or_default();
                if !msg.contains(e.as_str().unwrap_or_default()) {
                    check.diffs.push(format!("condition message {msg:?} does not contain {e}"));
                }
                continue;
            }
            match actual.get(k) {
                Some(a) => check.eq(k, e, a),
                None => check.diffs.push(format!("{k}: not produced (expected {e})")),
            }
        }
    }
    Ok(())
}

fn validation_vector(
    _ctx: &Ctx,
    i: &Value,
    exp: &Value,
    der: &Value,
    check: &mut Check,
) -> Result<(), String> {
    let spec = spec_from(&i["spec"], check)?;
    let err = validation::check_wpa_validity(
        &spec,
        i["namespace"].as_str().or_else(|| i["wpa"]["namespace"].as_str()).unwrap_or_default(),
        i["name"].as_str().or_else(|| i["wpa"]["name"].as_str()).unwrap_or_default(),
    )
    .err();
    check_error_contains(
        check,
        exp,
        err.as_deref().or(Some("<no error>")).filter(|_| exp.get("error_contains").is_some()),
    );
    let actual = BTreeMap::from([("error".into(), err.map_or(Value::Null, Value::String))]);
    check.expect_keys(exp, &actual, &["error_contains"]);
    check.expect_keys(der, &actual, &["error_contains"]);
    Ok(())
}

fn should_scale(ctx: &Ctx, i: &Value, exp: &Value, der: &Value, check: &mut Check) -> Result<(), String> {
    let s = &i["spec"];
    let status = status_from(ctx, &i["status"])?;
    let cond = |t: &str| {
        conditions::get_condition(&status, t).map(|c| gate::WatermarkCondition {
            is_true: c.status == "True",
            last_transition: c.last_transition_time.as_ref().map(|t| t.0),
        })
    };
    let g = gate::should_scale(&gate::GateInput {
        current: i32_of(&i["currentReplicas"]),
        desired: i32_of(&i["desiredReplicas"]),
        stable: i["isStable"].as_bool().unwrap_or(false),
        last_scale_time: status.last_scale_time.as_ref().map(|t| t.0),
        downscale_forbidden_window_seconds: i32_of(&s["downscaleForbiddenWindowSeconds"]),
        upscale_forbidden_window_seconds: i32_of(&s["upscaleForbiddenWindowSeconds"]),
        upscale_delay_above_watermark_seconds: i32_of(&s["upscaleDelayAboveWatermarkSeconds"]),
        downscale_delay_below_watermark_seconds: i32_of(&s["downscaleDelayBelowWatermarkSeconds"]),
        above: cond(conditions::ABOVE_HIGH_WATERMARK),
        below: cond(conditions::BELOW_LOW_WATERMARK),
        now: ctx.now,
    });
    let mut actual = BTreeMap::from([
        ("shouldScale".into(), json!(g.allowed)),
        ("backoffUp".into(), json!(g.backoff_up)),
        ("backoffDown".into(), json!(g.backoff_down)),
    ]);
    if let Some(gate::Blocked::Delay { seconds_left, .. }) = &g.blocked {
        actual.insert("timeLeft".into(), json!(seconds_left));
        actual.insert("delayRemainingSeconds".into(), json!(seconds_left));
    }
    if let Some((reason, _)) = g.backoff_condition {
        actual.insert("ableToScaleReason".into(), json!(reason));
    }
    simple(check, exp, der, actual);
    Ok(())
}

fn limit_vector(i: &Value, exp: &Value, der: &Value, check: &mut Check, up: bool) -> Result<(), String> {
    let key = if up { "scaleUpLimitFactor" } else { "scaleDownLimitFactor" };
    let f = quantity(&i[key])?;
    let cur = i32_of(&i["currentReplicas"]);
    let limit =
        if up { limits::scale_up_limit(f.as_ref(), cur) } else { limits::scale_down_limit(f.as_ref(), cur) };
    simple(check, exp, der, BTreeMap::from([("limit".into(), json!(limit))]));
    Ok(())
}

fn normalize_vector(i: &Value, exp: &Value, der: &Value, check: &mut Check) -> Result<(), String> {
    let up = quantity(&i["scaleUpLimitFactor"])?;
    let down = quantity(&i["scaleDownLimitFactor"])?;
    let bounds = limits::Bounds {
        min: i32_of(&i["minReplicas"]),
        max: i32_of(&i["maxReplicas"]),
        up_factor: up.as_ref(),
        down_factor: down.as_ref(),
    };
    let n = limits::normalize(
        &bounds,
        i32_of(&i["currentReplicas"]),
        i32_of(&i["desiredReplicas"]),
        i32_of(&i["readyReplicas"]),
    );
    simple(
        check,
        exp,
        der,
        BTreeMap::from([
            ("replicas".into(), json!(n.replicas)),
            ("condition".into(), json!(n.limit.reason())),
            ("reason".into(), json!(n.limit.message())),
        ]),
    );
    Ok(())
}

fn set_condition_vector(
    ctx: &Ctx,
    i: &Value,
    exp: &Value,
    der: &Value,
    check: &mut Check,
) -> Result<(), String> {
    let mut status = WatermarkPodAutoscalerStatus {
        conditions: conditions_from(ctx, &i["existing"])?,
        ..Default::default()
    };
    let s = &i["set"];
    conditions::set_condition(
        &mut status,
        s["type"].as_str().unwrap_or_default(),
        s["status"].as_str() == Some("True"),
        s["reason"].as_str().unwrap_or_default(),
        s["message"].as_str().unwrap_or_default(),
        ctx.now,
    );
    if s["status"].as_str().is_some_and(|v| v != "True" && v != "False") {
        return Err(format!("condition status {} is neither True nor False", s["status"]));
    }
    let set = conditions::get_condition(&status, s["type"].as_str().unwrap_or_default())
        .cloned()
        .unwrap_or_default();
    simple(
        check,
        exp,
        der,
        BTreeMap::from([
            (
                "orderedTypes".into(),
                json!(status.conditions.iter().map(|c| c.type_.clone()).collect::<Vec<_>>()),
            ),
            ("count".into(), json!(status.conditions.len())),
            ("lastConditionType".into(), json!(status.last_condition_type)),
            ("lastConditionState".into(), json!(status.last_condition_state)),
            (
                "lastTransitionTimeOffsetSeconds".into(),
                json!(set.last_transition_time.map(|t| ctx.offset(t.0))),
            ),
            ("reason".into(), json!(set.reason)),
            ("message".into(), json!(set.message)),
            ("status".into(), json!(set.status)),
        ]),
    );
    Ok(())
}

fn get_condition_vector(
    ctx: &Ctx,
    i: &Value,
    exp: &Value,
    der: &Value,
    check: &mut Check,
) -> Result<(), String> {
    let status = WatermarkPodAutoscalerStatus {
        conditions: conditions_from(ctx, &i["existing"])?,
        ..Default::default()
    };
    let t = i["type"].as_str().unwrap_or_default();
    let actual: BTreeMap<String, Value> = match conditions::get_condition(&status, t) {
        Some(c) => BTreeMap::from([
            ("status".into(), json!(c.status)),
            (
                "lastTransitionTimeOffsetSeconds".into(),
                json!(c.last_transition_time.as_ref().map(|t| ctx.offset(t.0))),
            ),
            ("error".into(), Value::Null),
        ]),
        None => BTreeMap::from([
            ("status".into(), Value::Null),
            ("lastTransitionTimeOffsetSeconds".into(), Value::Null),
            ("error".into(), json!(format!("condition {t} not found"))),
        ]),
    };
    for section in [exp, der] {
        for (k, e) in section.as_object().into_iter().flatten() {
            let a = actual.get(k).cloned().unwrap_or(Value::Null);
            // `error: true` / a message: any error; `null`: none.
            let ok = match (k.as_str(), e) {
                ("error", Value::Bool(want)) => *want != a.is_null(),
                ("error", Value::String(_)) => !a.is_null(),
                _ => matches(e, &a),
            };
            if !ok {
                check.diffs.push(format!("{k}: expected {e}, got {a}"));
            }
        }
    }
    Ok(())
}

fn logs_attributes(i: &Value, exp: &Value, der: &Value, check: &mut Check) -> Result<(), String> {
    let annotations = annotations_from(&i["annotations"]);
    let (attrs, err) = match validation::logs_attributes(annotations.as_ref()) {
        Ok(None) => (Value::Null, false),
        Ok(Some(pairs)) => {
            (Value::Array(pairs.into_iter().flat_map(|(k, v)| [Value::String(k), v]).collect()), false)
        }
        Err(_) => (Value::Null, true),
    };
    simple(check, exp, der, BTreeMap::from([("attributes".into(), attrs), ("error".into(), json!(err))]));
    Ok(())
}

fn fill_missing_watermark(i: &Value, exp: &Value, der: &Value, check: &mut Check) -> Result<(), String> {
    // The file flattens the metric: {type, metricName|name, metricSelector, highWatermark, lowWatermark}.
    let flat = strip_quantities(&i["metric"], check);
    let type_ = flat["type"].as_str().unwrap_or("External").to_string();
    let mut source = flat.clone();
    source.as_object_mut().map(|o| o.remove("type"));
    let mut m = MetricSpec { type_: type_.clone(), ..Default::default() };
    if type_ == "Resource" {
        m.resource = Some(serde_json::from_value(source).map_err(|e| e.to_string())?);
    } else {
        m.external = Some(serde_json::from_value(source).map_err(|e| e.to_string())?);
    }
    vectors::fill_missing_watermark(&mut m);
    let mut out = serde_json::to_value(
        m.external
            .as_ref()
            .map(serde_json::to_value)
            .or_else(|| m.resource.as_ref().map(serde_json::to_value))
            .transpose()
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    if let Some(o) = out.as_object_mut() {
        o.insert("type".into(), json!(type_));
        for w in ["highWatermark", "lowWatermark"] {
            o.entry(w).or_insert(Value::Null);
        }
    }
    for section in [exp, der] {
        if let Some(want) = section.get("metric") {
            let want = strip_quantities(want, check);
            check.eq("metric", &want, &out);
        }
    }
    Ok(())
}

fn recommender_spec(v: &Value, check: &mut Check) -> Result<RecommenderSpec, String> {
    serde_json::from_value(strip_quantities(v, check)).map_err(|e| e.to_string())
}

fn query_from(i: &Value, check: &mut Check) -> Result<RecommenderQuery, String> {
    let target_ref: CrossVersionObjectReference =
        serde_json::from_value(i.get("targetRef").cloned().unwrap_or(json!({})))
            .map_err(|e| e.to_string())?;
    Ok(RecommenderQuery {
        namespace: i["namespace"].as_str().unwrap_or_default().to_string(),
        target_ref,
        target_cluster: i["targetCluster"].as_str().unwrap_or_default().to_string(),
        recommender: match i.get("recommender") {
            Some(r) if !r.is_null() => Some(recommender_spec(r, check)?),
            _ => None,
        },
        desired_replicas: i32_of(&i["desiredReplicas"]),
        current_replicas: i32_of(&i["currentReplicas"]),
        current_ready_replicas: i32_of(&i["currentReadyReplicas"]),
        min_replicas: i32_of(&i["minReplicas"]),
        max_replicas: i32_of(&i["maxReplicas"]),
    })
}

fn request_build(i: &Value, exp: &Value, der: &Value, check: &mut Check) -> Result<(), String> {
    let q = query_from(i, check)?;
    let reco = q.recommender.clone().ok_or("no recommender")?;
    let req = serde_json::to_value(recommender::build_request(&q, &reco)).map_err(|e| e.to_string())?;
    let actual: BTreeMap<String, Value> = req.as_object().cloned().unwrap_or_default().into_iter().collect();
    for section in [exp, der] {
        for (k, e) in section.as_object().into_iter().flatten() {
            check.eq(k, e, actual.get(k).unwrap_or(&Value::Null));
        }
    }
    Ok(())
}

fn recommendation_json(r: &Recommendation) -> Value {
    json!({
        "replicas": r.replicas,
        "replicasLowerBound": r.replicas_lower_bound,
        "replicasUpperBound": r.replicas_upper_bound,
        "timestamp": r.timestamp,
        "details": r.details,
        "observedTargetValue": r.observed_target_value,
    })
}

fn response_parse(i: &Value, exp: &Value, der: &Value, check: &mut Check) -> Result<(), String> {
    let parsed: Result<RecommendationReply, String> =
        serde_json::from_value(i["reply"].clone()).map_err(|e| format!("error unmarshaling response: {e}"));
    let actual: BTreeMap<String, Value> =
        match parsed.and_then(|r| recommender::recommendation_from_reply(&r)) {
            Ok(r) => {
                let mut m: BTreeMap<String, Value> =
                    recommendation_json(&r).as_object().cloned().unwrap_or_default().into_iter().collect();
                m.insert("error".into(), json!(false));
                m
            }
            Err(e) => BTreeMap::from([("error".into(), json!(true)), ("errorMessage".into(), json!(e))]),
        };
    simple(check, exp, der, actual);
    Ok(())
}

async fn http_client(i: &Value, exp: &Value, der: &Value, check: &mut Check) -> Result<(), String> {
    let mut query = query_from(&i["request"], check)?;
    // "T" stands for the server's now (upstream's tests answer with time.Now()): the reply carries a real
    // time, so that it goes through the reconciler's checks of a recommendation as it would in production.
    let now = Timestamp::now();
    let now_text = jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", now).map_err(|e| e.to_string())?;
    let mut routes = i["server"]["routes"].clone();
    for route in routes.as_object_mut().into_iter().flat_map(|r| r.values_mut()) {
        if route["body"]["timestamp"] == json!("T") {
            route["body"]["timestamp"] = json!(now_text);
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let routes = routes.clone();
        async move {
            use axum::response::IntoResponse;
            let Some(r) = routes.get(uri.path()) else {
                return axum::http::StatusCode::NOT_FOUND.into_response();
            };
            let code = axum::http::StatusCode::from_u16(r["status"].as_u64().unwrap_or(200) as u16)
                .unwrap_or(axum::http::StatusCode::OK);
            let body = match r.get("body") {
                Some(Value::String(raw)) => raw.clone(),
                Some(b) => b.to_string(),
                None => String::new(),
            };
            let mut resp = (code, body).into_response();
            if let Some(loc) = r.get("location").and_then(Value::as_str) {
                resp.headers_mut()
                    .insert(axum::http::header::LOCATION, loc.parse().expect("a location header"));
            }
            resp
        }
    });
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    if let Some(r) = query.recommender.as_mut() {
        r.url = r.url.replace("<server>", &format!("http://{addr}"));
    }
    // The vectors test the protocol against a server on loopback: the local-address rule is not theirs.
    let client = RecommenderClient::new(None, Reach::Any).map_err(|e| e.to_string())?;
    let out = client.recommend(&query).await.map_err(|e| e.to_string()).and_then(|r| {
        // The reconciler's path: a reply is also checked before it is used (the request's inverted
        // watermarks are not judged, as upstream's client does not).
        let max_age = Some(std::time::Duration::from_secs(300));
        recommender::check_recommendation(&r, query.max_replicas, Timestamp::now(), max_age).map(|()| r)
    });
    server.abort();
    let actual: BTreeMap<String, Value> = match out {
        Ok(r) => {
            let mut response = recommendation_json(&r);
            if response["timestamp"] == json!(now_text) {
                response["timestamp"] = json!("T");
            }
            BTreeMap::from([("error".into(), json!(false)), ("response".into(), response)])
        }
        Err(e) => BTreeMap::from([
            ("error".into(), json!(true)),
            ("response".into(), Value::Null),
            ("errorMessage".into(), json!(e)),
        ]),
    };
    simple(check, exp, der, actual);
    Ok(())
}

async fn run_vector(ctx: &Ctx, v: &Value) -> Result<Check, String> {
    let mut check = Check::default();
    let (i, e) = (&v["inputs"], &v["expected"]);
    let d = v.get("derived").cloned().unwrap_or(Value::Null);
    let c = &mut check;
    match v["function"].as_str().unwrap_or_default() {
        "replica_calculation" => replica_calculation(ctx, i, e, &d, c)?,
        "group_pods_resource_metric" => group_pods(ctx, i, e, &d, c)?,
        "ready_pods_count" => ready_pods_count(ctx, i, e, &d, c)?,
        "get_pod_condition" => {
            let types: Vec<&str> =
                i["conditionTypes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let idx = pods::pod_condition_index(&types, i["lookup"].as_str().unwrap_or_default());
            simple(
                c,
                e,
                &d,
                BTreeMap::from([
                    ("index".into(), json!(idx.map_or(-1, |i| i as i64))),
                    ("found".into(), json!(idx.is_some())),
                ]),
            );
        }
        "check_owner_ref" => {
            let m = pods::owner_matches(
                &owners_from(&i["ownerReferences"]),
                i["targetName"].as_str().unwrap_or_default(),
            );
            simple(c, e, &d, BTreeMap::from([("match".into(), json!(m))]));
        }
        "should_skip_owner_check" => {
            let s = pods::should_skip_owner_check(annotations_from(&i["annotations"]).as_ref());
            simple(c, e, &d, BTreeMap::from([("skip".into(), json!(s))]));
        }
        "remove_metrics_for_pods" => {
            let mut m: BTreeMap<String, i64> = i["podMetrics"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(0)))
                .collect();
            let remove: BTreeSet<String> = i["podsToRemove"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            pods::remove_metrics_for_pods(&mut m, &remove);
            simple(
                c,
                e,
                &d,
                BTreeMap::from([
                    ("remainingCount".into(), json!(m.len())),
                    ("remaining".into(), json!(m.keys().collect::<Vec<_>>())),
                ]),
            );
        }
        "reconcile_decision" => reconcile_decision(ctx, i, e, &d, c)?,
        "reconcile_entry" => reconcile_entry(ctx, i, e, &d, c)?,
        "compute_replicas" => compute_replicas(ctx, i, e, &d, c)?,
        "validation" => validation_vector(ctx, i, e, &d, c)?,
        "should_scale" => should_scale(ctx, i, e, &d, c)?,
        "scale_up_limit" => limit_vector(i, e, &d, c, true)?,
        "scale_down_limit" => limit_vector(i, e, &d, c, false)?,
        "normalize_desired_replicas" => normalize_vector(i, e, &d, c)?,
        "set_condition" => set_condition_vector(ctx, i, e, &d, c)?,
        "get_condition" => get_condition_vector(ctx, i, e, &d, c)?,
        "logs_attributes" => logs_attributes(i, e, &d, c)?,
        "fill_missing_watermark" => fill_missing_watermark(i, e, &d, c)?,
        "recommender_metric_name" => {
            let r = recommender_spec(&i["recommender"], c)?;
            simple(c, e, &d, BTreeMap::from([("metricName".into(), json!(recommender::display_name(&r)))]));
        }
        "recommender_request_build" => request_build(i, e, &d, c)?,
        "recommender_response_parse" => response_parse(i, e, &d, c)?,
        "recommender_http_client" => http_client(i, e, &d, c).await?,
        other => return Err(format!("unsupported function {other:?}")),
    }
    Ok(check)
}

fn main() {
    let path = std::env::var("WPA_VECTORS").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/upstream-vectors.json").to_string()
    });
    let file: Value = match std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            println!("cannot read vectors from {path}: {e}");
            println!("upstream vectors: 0 passed, 0 failed, 1 unsupported");
            std::process::exit(1);
        }
    };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let ctx = Ctx { now: Timestamp::now() };
    let (mut passed, mut failed, mut unsupported) = (0, 0, 0);
    let mut used = BTreeSet::new();
    let vectors = file["vectors"].as_array().cloned().unwrap_or_default();
    for v in &vectors {
        let source = v["source"].as_str().unwrap_or("?");
        match runtime.block_on(run_vector(&ctx, v)) {
            Ok(check) if check.diffs.is_empty() => {
                passed += 1;
                if !check.divergences.is_empty() {
                    let ids: Vec<_> = check.divergences.iter().copied().collect();
                    println!("PASS (diverges as documented: {}) {source}", ids.join(", "));
                    used.extend(ids);
                }
            }
            Ok(check) => {
                failed += 1;
                println!("FAIL {source} [{}]", v["function"].as_str().unwrap_or("?"));
                for d in check.diffs {
                    println!("    {d}");
                }
            }
            Err(e) => {
                unsupported += 1;
                println!("UNSUPPORTED {source} [{}]: {e}", v["function"].as_str().unwrap_or("?"));
            }
        }
    }
    for (id, text) in DIVERGENCES {
        if used.contains(id) {
            println!("{id}: {text}");
        }
    }
    println!("upstream vectors: {passed} passed, {failed} failed, {unsupported} unsupported");
    if failed + unsupported > 0 {
        std::process::exit(1);
    }
}
