//! Defaulting and validation of a WPA spec: one implementation for the admission webhook (every problem,
//! each with its field path) and the reconciler (upstream's `CheckWPAValidity`: the first failing rule,
//! with upstream's exact message).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{
    api::quantity::Quantity,
    api::selector,
    api::{MetricSource, WatermarkPodAutoscalerSpec, annotations},
};

/// The bounds `wpa serve`'s webhook adds to upstream's rules (Difference "admission bounds"): upstream
/// admits `minReplicas = maxReplicas = 2147483647` (which scales a Deployment to two billion pods in one
/// pass) and recommender URLs on the node itself or the cloud metadata address (which any WPA author could
/// then make the controller call). Configurable with `wpa serve --admission-max-replicas`,
/// `--admission-max-scale-up-limit-factor` and `--allow-local-recommenders`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// The largest `maxReplicas` (and so `minReplicas`) admitted.
    pub max_replicas: i32,
    /// The largest `scaleUpLimitFactor` admitted, in percent.
    pub max_scale_up_limit_factor: i64,
    /// Whether a recommender URL may name a loopback or link-local address (or `localhost`).
    pub allow_local_recommenders: bool,
}

impl AdmissionLimits {
    pub const DEFAULT_MAX_REPLICAS: i32 = 10_000;
    pub const DEFAULT_MAX_SCALE_UP_LIMIT_FACTOR: i64 = 10_000;
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            max_replicas: Self::DEFAULT_MAX_REPLICAS,
            max_scale_up_limit_factor: Self::DEFAULT_MAX_SCALE_UP_LIMIT_FACTOR,
            allow_local_recommenders: false,
        }
    }
}

/// A default the spec lacks: the JSON pointer of the field, its value, and whether the field is present
/// (with a zero value that counts as unset, like `tolerance: 0`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MissingDefault {
    pub(crate) pointer: &'static str,
    pub(crate) value: Value,
    pub(crate) present: bool,
}

/// The defaults upstream writes (`DefaultWatermarkPodAutoscaler`): same fields, same values.
pub(crate) fn missing_defaults(spec: &WatermarkPodAutoscalerSpec) -> Vec<MissingDefault> {
    let mut out = Vec::new();
    let mut push = |pointer, value: Value, present| out.push(MissingDefault { pointer, value, present });
    if spec.min_replicas.is_none() {
        push("/spec/minReplicas", 1.into(), false);
    }
    if spec.algorithm.as_deref().unwrap_or("").is_empty() {
        push("/spec/algorithm", "absolute".into(), spec.algorithm.is_some());
    }
    if spec.tolerance.as_ref().is_none_or(|t| t.milli() == 0) {
        push("/spec/tolerance", "100m".into(), spec.tolerance.is_some());
    }
    if spec.scale_up_limit_factor.is_none() {
        push("/spec/scaleUpLimitFactor", "50".into(), false);
    }
    if spec.scale_down_limit_factor.is_none() {
        push("/spec/scaleDownLimitFactor", "20".into(), false);
    }
    if spec.downscale_forbidden_window_seconds.unwrap_or(0) == 0 {
        push(
            "/spec/downscaleForbiddenWindowSeconds",
            300.into(),
            spec.downscale_forbidden_window_seconds.is_some(),
        );
    }
    if spec.replica_scaling_absolute_modulo.is_none() {
        push("/spec/replicaScalingAbsoluteModulo", 1.into(), false);
    }
    if spec.upscale_forbidden_window_seconds.unwrap_or(0) == 0 {
        push(
            "/spec/upscaleForbiddenWindowSeconds",
            60.into(),
            spec.upscale_forbidden_window_seconds.is_some(),
        );
    }
    out
}

/// The spec with upstream's defaults filled in (in memory; the reconciler never writes `.spec`).
pub(crate) fn with_defaults(spec: &WatermarkPodAutoscalerSpec) -> WatermarkPodAutoscalerSpec {
    let mut s = spec.clone();
    for d in missing_defaults(spec) {
        match d.pointer {
            "/spec/minReplicas" => s.min_replicas = Some(1),
            "/spec/algorithm" => s.algorithm = Some("absolute".into()),
            "/spec/tolerance" => s.tolerance = Some(Quantity::from_milli(100)),
            "/spec/scaleUpLimitFactor" => s.scale_up_limit_factor = Some(Quantity::from_units(50)),
            "/spec/scaleDownLimitFactor" => s.scale_down_limit_factor = Some(Quantity::from_units(20)),
            "/spec/downscaleForbiddenWindowSeconds" => s.downscale_forbidden_window_seconds = Some(300),
            "/spec/replicaScalingAbsoluteModulo" => s.replica_scaling_absolute_modulo = Some(1),
            "/spec/upscaleForbiddenWindowSeconds" => s.upscale_forbidden_window_seconds = Some(60),
            other => unreachable!("no default for {other}"),
        }
    }
    s
}

/// Whether upstream would consider the spec defaulted.
pub fn is_defaulted(spec: &WatermarkPodAutoscalerSpec) -> bool {
    missing_defaults(spec).is_empty()
}

/// Go's `%.0f`.
fn pct(v: f64) -> String {
    format!("{v:.0}")
}

/// One rule of `CheckWPAValidity`, with the field it concerns, and what the webhook adds to upstream's words
/// to say how to fix it (the reconciler's conditions keep upstream's words alone).
struct Finding {
    path: String,
    message: String,
    hint: Option<String>,
}

/// Upstream's rules in upstream's order. `first_only` stops at the first failure (the reconciler's
/// behaviour); the webhook collects them all.
fn upstream_rules(
    spec: &WatermarkPodAutoscalerSpec,
    namespace: &str,
    name: &str,
    first_only: bool,
) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    macro_rules! fail {
        ($path:expr, $msg:expr) => {{ fail!($path, $msg, None) }};
        ($path:expr, $msg:expr, $hint:expr) => {{
            out.push(Finding { path: $path.into(), message: $msg, hint: $hint });
            if first_only {
                return out;
            }
        }};
    }
    let r = &spec.scale_target_ref;
    if r.kind.is_empty() || r.name.is_empty() {
        fail!(
            "spec.scaleTargetRef",
            format!(
                "the Spec.ScaleTargetRef should be populated, currently Kind:{} and/or Name:{} are not set properly",
                r.kind, r.name
            )
        );
    }
    match spec.min_replicas {
        Some(min) if spec.max_replicas.unwrap_or(0) >= min => {}
        _ => fail!(
            if spec.min_replicas.is_none() { "spec.minReplicas" } else { "spec.maxReplicas" },
            "watermark pod autoscaler requires the minimum number of replicas to be configured and inferior to the maximum".to_string(),
            match (spec.min_replicas, spec.max_replicas) {
                (Some(min), Some(max)) => Some(format!("minReplicas {min} > maxReplicas {max}")),
                // A missing maxReplicas has its own "required".
                _ => None,
            }
        ),
    }
    let unset;
    let tolerance = match &spec.tolerance {
        Some(t) => t,
        None => {
            unset = Quantity::default();
            &unset
        }
    };
    if tolerance.milli() > 1000 || tolerance.milli() < 0 {
        fail!(
            "spec.tolerance",
            format!(
                "tolerance should be set as a quantity between 0 and 1, currently set to : {}, which is {}%",
                tolerance,
                pct(tolerance.milli() as f64 / 10.0)
            )
        );
    }
    match (&spec.scale_up_limit_factor, &spec.scale_down_limit_factor) {
        (Some(up), Some(down)) => {
            if up.milli() < 0 {
                fail!(
                    "spec.scaleUpLimitFactor",
                    format!(
                        "scaleuplimitfactor should be set as a positive quantity, currently set to : {}, which could yield a {}% growth",
                        up,
                        pct(up.milli() as f64 / 1000.0)
                    )
                );
            }
            if down.milli() >= 100_000 || down.milli() < 0 {
                fail!(
                    "spec.scaleDownLimitFactor",
                    format!(
                        "scaledownlimitfactor should be set as a quantity between 0 and 100 (exc.), currently set to : {}, which could yield a {}% decrease",
                        down,
                        pct(down.milli() as f64 / 1000.0)
                    )
                );
            }
        }
        _ => fail!(
            "spec.scaleUpLimitFactor",
            "scaleuplimitfactor and scaledownlimitfactor can't be nil, make sure the WPA spec is defaulted"
                .to_string()
        ),
    }
    let metrics = spec.metrics.as_deref().unwrap_or_default();
    if spec.recommender.is_some() && !metrics.is_empty() {
        fail!(
            "spec.recommender",
            "recommender and metrics can't be set at the same time, please choose one".to_string()
        );
    }
    for (i, m) in metrics.iter().enumerate() {
        // Paths are written only for a failure: this runs on every pass of every WPA.
        let (source, kind) = match m.type_.as_str() {
            "External" => (
                m.external
                    .as_ref()
                    .map(|e| (&e.metric_name, &e.metric_selector, &e.high_watermark, &e.low_watermark)),
                "External",
            ),
            "Resource" => (
                m.resource
                    .as_ref()
                    .map(|r| (&r.name, &r.metric_selector, &r.high_watermark, &r.low_watermark)),
                "Resource",
            ),
            other => {
                fail!(format!("spec.metrics[{i}].type"), format!("incorrect metric.Type: '{other}'"));
                continue;
            }
        };
        let field = if kind == "External" { "external" } else { "resource" };
        let Some((metric_name, sel, high, low)) = source else {
            fail!(
                format!("spec.metrics[{i}].{field}"),
                format!("metric.{kind} is nil while metric.Type is '{kind}'")
            );
            continue;
        };
        if high.is_none() && low.is_none() {
            fail!(
                format!("spec.metrics[{i}].{field}"),
                format!(
                    "watermarks are not set correctly, removing the WPA {namespace}/{name} from the Reconciler"
                )
            );
        }
        if sel.is_none() {
            let add = if kind == "Resource" {
                "add metricSelector: {matchLabels: {...}} with the labels of the target's pods (its spec.selector.matchLabels): their usage is what the watermarks are compared with"
            } else {
                "add metricSelector: {matchLabels: {...}} with the tags the metric is queried with, e.g. {app: web}"
            };
            fail!(
                format!("spec.metrics[{i}].{field}.metricSelector"),
                format!("missing Labels for the {kind} metric {metric_name}"),
                Some(add.to_string())
            );
        }
        if let (Some(h), Some(l)) = (high, low)
            && h.milli() < l.milli()
        {
            let labels = sel.as_ref().and_then(|s| s.match_labels.as_ref());
            fail!(
                format!("spec.metrics[{i}].{field}.lowWatermark"),
                format!(
                    "low WaterMark of {kind} metric {metric_name}{{{}}} has to be strictly inferior to the High Watermark",
                    selector::go_map_string(labels)
                ),
                Some(format!("lowWatermark {l} > highWatermark {h}"))
            );
        }
    }
    out
}

/// `CheckWPAValidity`: upstream's first failing rule, with its exact message.
pub fn check_wpa_validity(
    spec: &WatermarkPodAutoscalerSpec,
    namespace: &str,
    name: &str,
) -> Result<(), String> {
    match upstream_rules(spec, namespace, name, true).into_iter().next() {
        Some(f) => Err(f.message),
        None => Ok(()),
    }
}

/// A refusal of the admission webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Violation {
    /// Field path, e.g. `spec.metrics[0].external.highWatermark`.
    pub(crate) path: String,
    pub(crate) message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn quoted_list(values: &[&str]) -> String {
    values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ")
}

/// Every problem the admission webhook refuses: upstream's rules (on the spec as defaulted, since the
/// mutating webhook runs first) and the stricter checks upstream lacks.
pub(crate) fn admission_violations(
    spec: &WatermarkPodAutoscalerSpec,
    annotations: &BTreeMap<String, String>,
    namespace: &str,
    name: &str,
    limits: &AdmissionLimits,
) -> Vec<Violation> {
    // The API server calls the mutating webhook first, so the spec validated is nearly always defaulted
    // already: no copy then.
    let defaulted = if is_defaulted(spec) {
        std::borrow::Cow::Borrowed(spec)
    } else {
        std::borrow::Cow::Owned(with_defaults(spec))
    };
    let mut out: Vec<Violation> = upstream_rules(&defaulted, namespace, name, false)
        .into_iter()
        .map(|f| Violation {
            path: f.path,
            message: match f.hint {
                Some(hint) => format!("{} ({hint})", f.message),
                None => f.message,
            },
        })
        .collect();
    let mut add = |path: &str, message: String| out.push(Violation { path: path.to_string(), message });

    let r = &spec.scale_target_ref;
    if r.api_version.as_deref().unwrap_or("").is_empty() {
        add(
            "spec.scaleTargetRef.apiVersion",
            "required: the target is resolved from its group (e.g. apps/v1 for a Deployment); without it the controller cannot find the target".into(),
        );
    }
    if spec.max_replicas.is_none() {
        add("spec.maxReplicas", "required".into());
    }
    for (field, value) in [("minReplicas", spec.min_replicas), ("maxReplicas", spec.max_replicas)] {
        if let Some(n) = value
            && n > limits.max_replicas
        {
            add(
                &format!("spec.{field}"),
                format!(
                    "{n} is above the {} replicas this webhook admits (wpa serve --admission-max-replicas)",
                    limits.max_replicas
                ),
            );
        }
    }
    if let Some(f) = &spec.scale_up_limit_factor
        && f.milli() > limits.max_scale_up_limit_factor.saturating_mul(1000)
    {
        add(
            "spec.scaleUpLimitFactor",
            format!(
                "{f} (percent) is above the {} this webhook admits (wpa serve --admission-max-scale-up-limit-factor)",
                limits.max_scale_up_limit_factor
            ),
        );
    }
    if let Some(algo) = spec.algorithm.as_deref()
        && !algo.is_empty()
        && !["absolute", "average"].contains(&algo)
    {
        add(
            "spec.algorithm",
            format!(
                "unsupported value {algo:?}: supported values: {}",
                quoted_list(&["absolute", "average"])
            ),
        );
    }
    if let Some(c) = spec.converge_towards_watermark.as_deref()
        && !["", "highwatermark", "lowwatermark"].contains(&c)
    {
        add(
            "spec.convergeTowardsWatermark",
            format!(
                "unsupported value {c:?}: supported values: {}",
                quoted_list(&["", "highwatermark", "lowwatermark"])
            ),
        );
    }
    if let Some(p) = spec.min_available_replica_percentage
        && !(0..=100).contains(&p)
    {
        add("spec.minAvailableReplicaPercentage", format!("must be between 0 and 100, got {p}"));
    }
    for (i, m) in spec.metrics.iter().flatten().enumerate() {
        let Some(source) = m.source() else { continue };
        // Paths are only written out for a violation: most specs have none.
        let kind = match source {
            MetricSource::External(_) => "external",
            MetricSource::Resource(_) => "resource",
        };
        // Upstream copies a missing watermark from the other one: a band of zero width, which scales on
        // every wobble. Both are required here (a misspelled key, dropped by the API server, reads as
        // missing). lowWatermark 0 is allowed: "never downscale on this metric" (upstream issue #153).
        for (field, q, zero_ok) in [
            ("highWatermark", source.high_watermark(), false),
            ("lowWatermark", source.low_watermark(), true),
        ] {
            let path = || format!("spec.metrics[{i}].{kind}.{field}");
            match q {
                None => out.push(Violation {
                    path: path(),
                    message: "required: both watermarks must be set (a missing one would be copied from the other, a band of zero width; check the spelling)".into(),
                }),
                Some(q) if q.milli() < 0 || (q.milli() == 0 && !zero_ok) => out.push(Violation {
                    path: path(),
                    message: if zero_ok {
                        format!("must not be negative, got {q}")
                    } else {
                        format!("must be greater than 0, got {q}")
                    },
                }),
                Some(_) => {}
            }
        }
        if let (Some(h), Some(l)) = (source.high_watermark(), source.low_watermark())
            && h.milli() == l.milli()
            && h.milli() > 0
        {
            out.push(Violation {
                path: format!("spec.metrics[{i}].{kind}.lowWatermark"),
                message: format!(
                    "must be below highWatermark, got both {h}: a band of zero width scales on every wobble of the value"
                ),
            });
        }
        if let Some(sel) = source.selector()
            && let Err(err) = selector::Selector::check(sel)
        {
            out.push(Violation {
                path: format!("spec.metrics[{i}].{kind}.metricSelector"),
                message: err.problem,
            });
        }
    }
    if let Some(reco) = &spec.recommender {
        let url_ok = reco.url.starts_with("http://") || reco.url.starts_with("https://");
        if !url_ok || reco.url.split_once("://").is_none_or(|(_, rest)| rest.is_empty()) {
            out.push(Violation {
                path: "spec.recommender.url".into(),
                message: format!("must be an http:// or https:// URL, got {:?}", reco.url),
            });
        } else if !limits.allow_local_recommenders
            && let Some(host) = url_host(&reco.url)
            && super::recommender::is_local_host(host)
        {
            out.push(Violation {
                path: "spec.recommender.url".into(),
                message: format!(
                    "{host} is a loopback or link-local address: the controller would call its own node's services (or the cloud metadata address); use the recommender's Service name, or start wpa serve with --allow-local-recommenders"
                ),
            });
        }
        for (field, q) in [("highWatermark", &reco.high_watermark), ("lowWatermark", &reco.low_watermark)] {
            if q.is_none() {
                out.push(Violation {
                    path: format!("spec.recommender.{field}"),
                    message: "required: both watermarks are sent to the recommender as the target's bounds"
                        .into(),
                });
            }
        }
        if let (Some(h), Some(l)) = (&reco.high_watermark, &reco.low_watermark)
            && h.milli() < l.milli()
        {
            out.push(Violation {
                path: "spec.recommender.lowWatermark".into(),
                message: format!("must not be greater than highWatermark ({l} > {h})"),
            });
        }
    }
    out.extend(annotation_violations(annotations, true));
    let (min, max) = (spec.min_replicas.unwrap_or(1), spec.max_replicas.unwrap_or(0));
    if let Some(e) = super::fallback::Fallback::check(Some(annotations), min, max) {
        out.push(Violation { path: format!("metadata.annotations[{}]", e.annotation), message: e.problem });
    }
    out
}

/// The host of an `http(s)://` URL as written (`[::1]` keeps its brackets off), without credentials or port.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    Some(host_port.rsplit_once(':').map_or(host_port, |(h, _)| h))
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {s:?}: invalid syntax")),
    }
}

/// The `wpa.datadoghq.com/*` annotations, checked strictly. `on_wpa` adds the WPA-only annotations.
pub(crate) fn annotation_violations(annotations: &BTreeMap<String, String>, on_wpa: bool) -> Vec<Violation> {
    let mut out = Vec::new();
    let path = |key: &str| format!("metadata.annotations[{key}]");
    if let Some(v) = annotations.get(annotations::LOGS_ATTRIBUTES)
        && let Err(e) = logs_attributes_strict(v)
    {
        out.push(Violation { path: path(annotations::LOGS_ATTRIBUTES), message: e });
    }
    if let Some(v) = annotations.get(annotations::SKIP_OWNER_CHECK)
        && v != "true"
        && v != "false"
    {
        out.push(Violation {
            path: path(annotations::SKIP_OWNER_CHECK),
            message: format!(
                "must be \"true\" or \"false\", got {v:?} (any other value leaves the owner check on)"
            ),
        });
    }
    if on_wpa {
        if let Some(v) = annotations.get(annotations::LIFECYCLE_CONTROL)
            && !v.is_empty()
            && parse_go_bool(v).is_err()
        {
            out.push(Violation {
                path: path(annotations::LIFECYCLE_CONTROL),
                message: format!("must be a boolean (true, false, 1, 0, t, f), got {v:?}"),
            });
        }
        if let Some(v) = annotations.get(annotations::ALLOW_CONFLICT)
            && v != "true"
            && v != "false"
        {
            out.push(Violation {
                path: path(annotations::ALLOW_CONFLICT),
                message: format!("must be \"true\" or \"false\", got {v:?}"),
            });
        }
        if let Some(v) = annotations.get(annotations::SCHEDULER_MAX_PER_NODE)
            && !v.trim().parse::<u32>().is_ok_and(|n| n > 0)
        {
            out.push(Violation {
                path: path(annotations::SCHEDULER_MAX_PER_NODE),
                message: format!("must be a positive integer (replicas of the target per node), got {v:?}"),
            });
        }
    }
    out
}

/// The pairs of the `logs-attributes` annotation, as upstream reads it: absent or empty means none; a
/// value that is not a JSON object is an error (upstream logs it and goes on without attributes).
pub fn logs_attributes(
    annotations: Option<&BTreeMap<String, String>>,
) -> Result<Option<Vec<(String, Value)>>, String> {
    let Some(raw) = annotations.and_then(|a| a.get(annotations::LOGS_ATTRIBUTES)) else {
        return Ok(None);
    };
    let map: serde_json::Map<String, Value> =
        serde_json::from_str(raw).map_err(|e| format!("invalid logs attributes: {e}"))?;
    if map.is_empty() {
        return Ok(None);
    }
    Ok(Some(map.into_iter().collect()))
}

/// The admission check of `logs-attributes`: a JSON object whose values are scalars.
fn logs_attributes_strict(raw: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(raw)
        .map_err(|e| format!("not valid JSON ({e}); expected an object such as {{\"team\":\"web\"}}"))?;
    let Value::Object(map) = v else {
        return Err(format!("must be a JSON object such as {{\"team\":\"web\"}}, got {v}"));
    };
    for (k, v) in map {
        if v.is_object() || v.is_array() {
            return Err(format!("the value of {k:?} must be a string, number, boolean or null, got {v}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_percent_formatting_rounds_half_to_even() {
        assert_eq!(pct(2.5), "2");
        assert_eq!(pct(3.5), "4");
        assert_eq!(pct(500.0), "500");
        assert_eq!(pct(-1.0), "-1");
    }

    #[test]
    fn defaults_are_upstreams() {
        let spec = WatermarkPodAutoscalerSpec::default();
        let d = with_defaults(&spec);
        assert_eq!(d.min_replicas, Some(1));
        assert_eq!(d.algorithm.as_deref(), Some("absolute"));
        assert_eq!(d.tolerance.as_ref().map(Quantity::milli), Some(100));
        assert_eq!(d.scale_up_limit_factor.as_ref().map(|q| q.to_string()).as_deref(), Some("50"));
        assert_eq!(d.scale_down_limit_factor.as_ref().map(|q| q.to_string()).as_deref(), Some("20"));
        assert_eq!(d.downscale_forbidden_window_seconds, Some(300));
        assert_eq!(d.upscale_forbidden_window_seconds, Some(60));
        assert_eq!(d.replica_scaling_absolute_modulo, Some(1));
        assert!(is_defaulted(&d));
        assert!(missing_defaults(&d).is_empty(), "defaulting twice changes nothing");
    }

    #[test]
    fn explicit_zero_tolerance_is_replaced() {
        let spec: WatermarkPodAutoscalerSpec =
            serde_json::from_value(serde_json::json!({"tolerance": "0"})).unwrap();
        let tol = missing_defaults(&spec).into_iter().find(|d| d.pointer == "/spec/tolerance").unwrap();
        assert!(tol.present);
        assert_eq!(tol.value, Value::from("100m"));
    }
}
