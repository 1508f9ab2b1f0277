//! The mapping of a HorizontalPodAutoscaler to the WatermarkPodAutoscaler that behaves closest to it
//! (docs/convert.md has the reasoning): an HPA and its target's pod template in, a WPA and the
//! approximations it makes out, or every reason it cannot be made. No I/O.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::autoscaling::{v1 as hpa_v1, v2 as hpa_v2},
    apimachinery::pkg::apis::meta::v1::LabelSelector,
};
use serde_json::Value;

use crate::api::{
    CrossVersionObjectReference, ExternalMetricSource, MetricSpec, ResourceMetricSource,
    WatermarkPodAutoscaler, WatermarkPodAutoscalerSpec, annotations, quantity::Quantity,
};

/// The HPA's own default when it names no metric (autoscaling/v1's and the API server's default).
const DEFAULT_CPU_UTILIZATION: i32 = 80;
/// The smallest tolerance a WPA takes (0 means the default 0.1), in thousandths.
const WPA_TOLERANCE_MILLI: i64 = 1;
/// The largest scaleUpLimitFactor `wpa serve`'s webhook admits by default, in thousandths of a percent.
const MAX_UP_FACTOR_MILLI: i64 = crate::engine::AdmissionLimits::DEFAULT_MAX_SCALE_UP_LIMIT_FACTOR * 1000;
/// The largest scaleDownLimitFactor used, in thousandths of a percent: a WPA's must be below 100.
const MAX_DOWN_FACTOR_MILLI: i64 = 99_900;

/// An HPA as the API server returned it.
#[derive(Clone, Debug)]
pub(crate) struct Hpa {
    pub(crate) namespace: String,
    pub(crate) name: String,
    /// `autoscaling/v2`, `autoscaling/v2beta2` or `autoscaling/v1`.
    pub(crate) api_version: String,
    /// In autoscaling/v2's shape: v2beta2's is the same, v1's is brought to it as the API server does.
    pub(crate) spec: hpa_v2::HorizontalPodAutoscalerSpec,
}

impl Hpa {
    /// From the object's JSON, in any of the three versions.
    pub(crate) fn from_json(object: &Value) -> Result<Hpa, String> {
        let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
        let (api_version, namespace, name) =
            (text("/apiVersion"), text("/metadata/namespace"), text("/metadata/name"));
        let spec = object.get("spec").cloned().unwrap_or(Value::Null);
        let spec = match api_version {
            "autoscaling/v2" | "autoscaling/v2beta2" => serde_json::from_value(spec)
                .map_err(|e| format!("not a valid {api_version} HorizontalPodAutoscaler: {e}"))?,
            "autoscaling/v1" => {
                // The API server keeps what v1 cannot say (more metrics, behavior) in annotations: converting
                // the v1 fields alone would silently drop them.
                let hidden: Vec<&String> = object
                    .pointer("/metadata/annotations")
                    .and_then(Value::as_object)
                    .map(|a| a.keys().filter(|k| k.starts_with("autoscaling.alpha.kubernetes.io/")).collect())
                    .unwrap_or_default();
                if !hidden.is_empty() {
                    return Err(format!(
                        "read as autoscaling/v1, the HPA keeps part of its spec in the annotations {hidden:?}: read it as autoscaling/v2beta2 or v2"
                    ));
                }
                let v1: hpa_v1::HorizontalPodAutoscalerSpec = serde_json::from_value(spec)
                    .map_err(|e| format!("not a valid autoscaling/v1 HorizontalPodAutoscaler: {e}"))?;
                from_v1(v1)
            }
            other => {
                return Err(format!(
                    "apiVersion {other:?}: autoscaling/v2, autoscaling/v2beta2 or autoscaling/v1 is read"
                ));
            }
        };
        Ok(Hpa {
            namespace: namespace.to_string(),
            name: name.to_string(),
            api_version: api_version.into(),
            spec,
        })
    }
}

/// A v1 spec in v2's shape: one cpu Utilization target (80 % when unset).
fn from_v1(v1: hpa_v1::HorizontalPodAutoscalerSpec) -> hpa_v2::HorizontalPodAutoscalerSpec {
    let r = v1.scale_target_ref;
    hpa_v2::HorizontalPodAutoscalerSpec {
        scale_target_ref: hpa_v2::CrossVersionObjectReference {
            api_version: r.api_version,
            kind: r.kind,
            name: r.name,
        },
        min_replicas: v1.min_replicas,
        max_replicas: v1.max_replicas,
        metrics: Some(vec![hpa_v2::MetricSpec {
            type_: "Resource".into(),
            resource: Some(hpa_v2::ResourceMetricSource {
                name: "cpu".into(),
                target: hpa_v2::MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(
                        v1.target_cpu_utilization_percentage.unwrap_or(DEFAULT_CPU_UTILIZATION),
                    ),
                    ..Default::default()
                },
            }),
            ..Default::default()
        }]),
        behavior: None,
    }
}

/// What the conversion needs of the HPA's target: its count, its pods' selector and their requests.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Workload {
    /// `spec.replicas`.
    pub(crate) replicas: Option<i32>,
    /// `spec.selector`: the pods whose usage a Resource metric reads.
    pub(crate) selector: Option<LabelSelector>,
    /// The containers of `spec.template`, in order, with their requests.
    pub(crate) containers: Vec<(String, BTreeMap<String, Quantity>)>,
}

impl Workload {
    /// From the target's JSON (a Deployment, StatefulSet, ReplicaSet or any object with their `spec`).
    pub(crate) fn from_json(object: &Value) -> Result<Workload, String> {
        let replicas = match object.pointer("/spec/replicas") {
            None | Some(Value::Null) => None,
            Some(v) => {
                Some(v.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or("spec.replicas is not a count")?)
            }
        };
        let selector = match object.pointer("/spec/selector") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value(v.clone())
                    .map_err(|e| format!("spec.selector is not a label selector: {e}"))?,
            ),
        };
        let mut containers = Vec::new();
        for c in
            object.pointer("/spec/template/spec/containers").and_then(Value::as_array).into_iter().flatten()
        {
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let mut requests = BTreeMap::new();
            for (resource, q) in
                c.pointer("/resources/requests").and_then(Value::as_object).into_iter().flatten()
            {
                let text = q.as_str().map(str::to_string).unwrap_or_else(|| q.to_string());
                let q = Quantity::parse(&text)
                    .map_err(|e| format!("container {name}: request {resource} {text:?}: {e}"))?;
                requests.insert(resource.clone(), q);
            }
            containers.push((name, requests));
        }
        Ok(Workload { replicas, selector, containers })
    }

    /// The pod's request of `resource` (the sum over its containers, as the HPA computes it), or the
    /// containers that have none.
    fn pod_request(&self, resource: &str) -> Result<i64, Vec<&str>> {
        let missing: Vec<&str> = self
            .containers
            .iter()
            .filter(|(_, r)| !r.contains_key(resource))
            .map(|(n, _)| n.as_str())
            .collect();
        if !missing.is_empty() || self.containers.is_empty() {
            return Err(missing);
        }
        Ok(self.containers.iter().filter_map(|(_, r)| r.get(resource)).map(Quantity::milli).sum())
    }
}

/// The HPA controller's settings that shape an HPA's behaviour (kube-controller-manager flags), and the
/// conversion's own.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// `--horizontal-pod-autoscaler-tolerance`, in thousandths (100 = 0.1).
    pub(crate) tolerance_milli: i64,
    /// `--horizontal-pod-autoscaler-downscale-stabilization`, in seconds: the window of an HPA that sets none.
    pub(crate) downscale_stabilization: i32,
    /// `--horizontal-pod-autoscaler-sync-period`, in seconds: the period of an HPA without `behavior`.
    pub(crate) sync_period: i32,
    /// The replica count at which a Pods policy becomes a percentage [default: the target's count].
    pub(crate) reference_replicas: Option<i32>,
    /// The WPA's name [default: the HPA's].
    pub(crate) name: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tolerance_milli: 100,
            downscale_stabilization: 300,
            sync_period: 15,
            reference_replicas: None,
            name: None,
        }
    }
}

/// A remark about one field: an approximation the WPA makes, or why the field cannot be converted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Remark {
    /// The HPA's field (a refusal) or the WPA's (an approximation), e.g. `spec.metrics[1]`.
    pub(crate) at: String,
    pub(crate) text: String,
}

impl std::fmt::Display for Remark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.text)
    }
}

/// The WPA and the approximations it makes.
#[derive(Clone, Debug)]
pub(crate) struct Converted {
    pub(crate) wpa: WatermarkPodAutoscaler,
    pub(crate) approximations: Vec<Remark>,
}

/// How a metric's value is compared with its watermarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algorithm {
    /// The value as returned: an External `Value` target.
    Absolute,
    /// The value per ready pod: `AverageValue` and `Utilization` targets.
    Average,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Absolute => "absolute",
            Algorithm::Average => "average",
        }
    }
}

/// What is being collected: the approximations and the refusals.
#[derive(Default)]
struct Remarks {
    approximations: Vec<Remark>,
    refusals: Vec<Remark>,
}

impl Remarks {
    fn approximate(&mut self, at: impl Into<String>, text: impl Into<String>) {
        self.approximations.push(Remark { at: at.into(), text: text.into() });
    }

    fn refuse(&mut self, at: impl Into<String>, text: impl Into<String>) {
        self.refusals.push(Remark { at: at.into(), text: text.into() });
    }
}

/// The WPA that behaves closest to `hpa`, or every reason it cannot be made. `workload` is the HPA's
/// target as read, or why it could not be read (needed by Resource metrics).
pub(crate) fn convert(
    hpa: &Hpa,
    workload: Result<&Workload, &str>,
    settings: &Settings,
) -> Result<Converted, Vec<Remark>> {
    let mut r = Remarks::default();
    let spec = &hpa.spec;

    let target = &spec.scale_target_ref;
    if target.api_version.as_deref().unwrap_or_default().is_empty() {
        r.refuse(
            "spec.scaleTargetRef.apiVersion",
            "missing: neither the HPA nor a WPA finds the target without it (e.g. apps/v1 for a Deployment); set it on the HPA",
        );
    }
    let min = match spec.min_replicas {
        Some(n) if n < 1 => {
            r.approximate(
                "spec.minReplicas",
                format!("1: the HPA's {n} (scale to zero) has no WPA equivalent; a target at 0 replicas turns the WPA off"),
            );
            1
        }
        n => n.unwrap_or(1),
    };
    let max = spec.max_replicas;
    if max < min {
        r.refuse(
            "spec.maxReplicas",
            format!("{max} is below minReplicas {min}: the HPA itself is not valid"),
        );
    }
    let reference = match (settings.reference_replicas, workload.ok().and_then(|w| w.replicas)) {
        (Some(n), _) => Reference { count: n, from: "--reference-replicas" },
        (None, Some(n)) => Reference { count: n, from: "the target's count now" },
        (None, None) => Reference { count: min, from: "minReplicas, as the target's count cannot be read" },
    };
    let reference = Reference { count: reference.count.clamp(min, max.max(min)), ..reference };

    let behavior = spec.behavior.as_ref();
    let tolerance = |rules: Option<&hpa_v2::HPAScalingRules>| -> Result<i64, String> {
        match rules.and_then(|r| r.tolerance.as_ref()) {
            None => Ok(settings.tolerance_milli),
            Some(q) => Quantity::parse(&q.0).map(|q| q.milli()).map_err(|e| format!("{:?}: {e}", q.0)),
        }
    };
    let (up_tolerance, down_tolerance) = match (
        tolerance(behavior.and_then(|b| b.scale_up.as_ref())),
        tolerance(behavior.and_then(|b| b.scale_down.as_ref())),
    ) {
        (Ok(u), Ok(d)) => (u, d),
        (u, d) => {
            for (at, e) in [("spec.behavior.scaleUp.tolerance", u), ("spec.behavior.scaleDown.tolerance", d)]
            {
                if let Err(e) = e {
                    r.refuse(at, format!("not a quantity: {e}"));
                }
            }
            (settings.tolerance_milli, settings.tolerance_milli)
        }
    };
    let band = Tolerances { up: up_tolerance, down: down_tolerance };

    let default_metrics;
    let metrics = match spec.metrics.as_deref() {
        Some(m) if !m.is_empty() => m,
        _ => {
            default_metrics =
                from_v1(hpa_v1::HorizontalPodAutoscalerSpec::default()).metrics.unwrap_or_default();
            &default_metrics[..]
        }
    };
    let mut converted = Vec::new();
    for (i, m) in metrics.iter().enumerate() {
        if let Some(c) = metric(i, m, workload, band, &mut r) {
            converted.push(c);
        }
    }
    let algorithms: Vec<(usize, Algorithm)> = converted.iter().map(|c| (c.index, c.algorithm)).collect();
    let algorithm = algorithms.first().map_or(Algorithm::Average, |&(_, a)| a);
    if let Some(&(j, other)) = algorithms.iter().find(|&&(_, a)| a != algorithm) {
        r.refuse(
            "spec.metrics",
            format!(
                "metrics[{}] needs algorithm {} and metrics[{j}] algorithm {}: a WPA compares all its metrics one way (give the HPA's targets the same kind, Value or per pod, first)",
                algorithms[0].0,
                algorithm.name(),
                other.name()
            ),
        );
    }
    if metrics.len() > 1 {
        r.approximate(
            "spec.metrics",
            "when one metric cannot be read, the WPA does not scale at all; the HPA goes on with the others (upward only)",
        );
    }
    if converted.iter().any(|c| c.resource) {
        r.approximate(
            "spec.metrics",
            "Resource metrics: the HPA counts a pod without a measurement as at its target when it would scale down and as idle when it would scale up, and a cpu pod not ready yet as idle when it would scale up; the WPA averages the ready pods that report",
        );
    }
    r.approximate(
        "spec.tolerance",
        "0.001, the smallest a WPA takes (0 means its default 0.1): the band of each metric is 0.1 % wider than the HPA's",
    );

    let (up_rules, down_rules) = rules(behavior, settings);
    let up = limit(Direction::Up, &up_rules, reference, settings, &mut r);
    let down = limit(Direction::Down, &down_rules, reference, settings, &mut r);

    if !r.refusals.is_empty() {
        return Err(r.refusals);
    }
    let external = converted.iter().any(|c| !c.resource);
    let spec = WatermarkPodAutoscalerSpec {
        scale_target_ref: CrossVersionObjectReference {
            kind: target.kind.clone(),
            name: target.name.clone(),
            api_version: target.api_version.clone(),
        },
        min_replicas: Some(min),
        max_replicas: Some(max),
        metrics: Some(converted.into_iter().map(|c| c.spec).collect()),
        algorithm: Some(algorithm.name().into()),
        tolerance: Some(decimal(WPA_TOLERANCE_MILLI)),
        // The HPA scales an External metric that reads 0 down to minReplicas; a WPA holds unless told.
        tolerate_zero: external.then_some(true),
        scale_up_limit_factor: Some(decimal(up.factor_milli)),
        upscale_forbidden_window_seconds: Some(up.window),
        upscale_delay_above_watermark_seconds: (up.delay > 0).then_some(up.delay),
        scale_down_limit_factor: Some(decimal(down.factor_milli)),
        downscale_forbidden_window_seconds: Some(down.window),
        downscale_delay_below_watermark_seconds: (down.delay > 0).then_some(down.delay),
        replica_scaling_absolute_modulo: Some(1),
        dry_run: Some(true),
        ..Default::default()
    };
    let mut wpa = WatermarkPodAutoscaler::new(settings.name.as_deref().unwrap_or(&hpa.name), spec);
    wpa.metadata.namespace = Some(hpa.namespace.clone());
    wpa.metadata.annotations =
        Some(BTreeMap::from([(annotations::ALLOW_CONFLICT.to_string(), "true".to_string())]));
    Ok(Converted { wpa, approximations: r.approximations })
}

/// The tolerances around each target, in thousandths: above (up) and below (down).
#[derive(Clone, Copy, Debug)]
struct Tolerances {
    up: i64,
    down: i64,
}

/// One metric, converted.
struct MetricOut {
    index: usize,
    spec: MetricSpec,
    algorithm: Algorithm,
    resource: bool,
}

/// A target in thousandths of the metric's unit, as a fraction (a Utilization target is a percentage of a
/// request).
#[derive(Clone, Copy, Debug)]
struct Target {
    numerator: i128,
    denominator: i128,
}

/// `n / d` rounded up, for positive `d`.
fn div_ceil(n: i128, d: i128) -> i128 {
    n.div_euclid(d) + i128::from(n.rem_euclid(d) != 0)
}

/// The watermarks of `target`: high = target × (1 + up tolerance), low = target × (1 − down tolerance),
/// rounded outward to whole thousandths (the HPA compares milli-values too); whether rounding moved one.
fn watermarks(target: Target, t: Tolerances) -> (i64, i64, bool) {
    let Target { numerator: n, denominator: d } = target;
    let (high_n, low_n) = (n * i128::from(1000 + t.up), n * i128::from(1000 - t.down));
    let den = d * 1000;
    let mut high = div_ceil(high_n, den);
    let low = low_n.div_euclid(den).max(0);
    let rounded = high * den != high_n || low * den != low_n;
    // A band of zero width (tolerance 0) scales on every wobble, and the webhook refuses it.
    if high <= low {
        high = low + 1;
    }
    let clamp = |v: i128| i64::try_from(v).unwrap_or(i64::MAX);
    (clamp(high), clamp(low), rounded)
}

/// `milli` thousandths as a plain decimal (`110000` → `110`, `99900` → `99.9`, `1` → `0.001`).
fn decimal_text(milli: i64) -> String {
    let (units, frac) = (milli / 1000, (milli % 1000).abs());
    let sign = if milli < 0 && units == 0 { "-" } else { "" };
    if frac == 0 {
        format!("{units}")
    } else {
        format!("{sign}{units}.{}", format!("{frac:03}").trim_end_matches('0'))
    }
}

/// [`decimal_text`] as a quantity, which keeps that text when serialized.
fn decimal(milli: i64) -> Quantity {
    Quantity::parse(&decimal_text(milli)).unwrap_or_else(|_| Quantity::from_milli(milli))
}

/// Thousandths as a number for a message, saturating what does not fit.
fn decimal_text_wide(milli: i128) -> String {
    decimal_text(i64::try_from(milli).unwrap_or(i64::MAX))
}

fn metric(
    i: usize,
    m: &hpa_v2::MetricSpec,
    workload: Result<&Workload, &str>,
    band: Tolerances,
    r: &mut Remarks,
) -> Option<MetricOut> {
    let at = format!("spec.metrics[{i}]");
    let refused = |r: &mut Remarks, text: &str| {
        r.refuse(at.clone(), text.to_string());
        None
    };
    match m.type_.as_str() {
        "External" => {
            let Some(e) = &m.external else {
                return refused(r, "type External without its `external` field");
            };
            let name = &e.metric.name;
            let (algorithm, q, kind) = match e.target.type_.as_str() {
                "Value" => (Algorithm::Absolute, e.target.value.as_ref(), "value"),
                "AverageValue" => (Algorithm::Average, e.target.average_value.as_ref(), "averageValue"),
                other => {
                    r.refuse(
                        format!("{at}.external.target.type"),
                        format!("{other:?}: an External target is a Value or an AverageValue"),
                    );
                    return None;
                }
            };
            let target = quantity_target(&format!("{at}.external.target.{kind}"), q, r)?;
            let (high, low) = band_of(&format!("{at}.external"), target, band, r);
            if algorithm == Algorithm::Average {
                r.approximate(
                    format!("{at}.external"),
                    format!(
                        "{name} per pod: the HPA divides it by the target's replica count, the WPA by its ready pods (higher while pods start or fail)"
                    ),
                );
            }
            Some(MetricOut {
                index: i,
                spec: MetricSpec {
                    type_: "External".into(),
                    external: Some(ExternalMetricSource {
                        metric_name: name.clone(),
                        // No selector means every series of the metric to the HPA; `{}` says so to a WPA.
                        metric_selector: Some(e.metric.selector.clone().unwrap_or_default()),
                        high_watermark: Some(decimal(high)),
                        low_watermark: Some(decimal(low)),
                    }),
                    resource: None,
                },
                algorithm,
                resource: false,
            })
        }
        "Resource" => {
            let Some(res) = &m.resource else {
                return refused(r, "type Resource without its `resource` field");
            };
            let name = &res.name;
            let target = match res.target.type_.as_str() {
                "AverageValue" => quantity_target(
                    &format!("{at}.resource.target.averageValue"),
                    res.target.average_value.as_ref(),
                    r,
                )?,
                "Utilization" => utilization_target(&at, name, res.target.average_utilization, workload, r)?,
                other => {
                    r.refuse(
                        format!("{at}.resource.target.type"),
                        format!("{other:?}: a Resource target is a Utilization or an AverageValue"),
                    );
                    return None;
                }
            };
            let selector = match workload {
                Ok(w) => match &w.selector {
                    Some(s) => s.clone(),
                    None => {
                        return refused(
                            r,
                            "the target has no spec.selector: a WPA's Resource metric needs the labels of the pods it reads",
                        );
                    }
                },
                Err(e) => {
                    return refused(
                        r,
                        &format!("a Resource metric needs the labels of the target's pods: {e}"),
                    );
                }
            };
            let (high, low) = band_of(&format!("{at}.resource"), target, band, r);
            Some(MetricOut {
                index: i,
                spec: MetricSpec {
                    type_: "Resource".into(),
                    external: None,
                    resource: Some(ResourceMetricSource {
                        name: name.clone(),
                        metric_selector: Some(selector),
                        high_watermark: Some(decimal(high)),
                        low_watermark: Some(decimal(low)),
                    }),
                },
                algorithm: Algorithm::Average,
                resource: true,
            })
        }
        "Pods" => refused(
            r,
            "a Pods metric (custom.metrics.k8s.io) has no WPA equivalent: a WPA reads External and Resource metrics; serve the metric through the external metrics API and convert again",
        ),
        "Object" => refused(
            r,
            "an Object metric (custom.metrics.k8s.io) has no WPA equivalent: a WPA reads External and Resource metrics; serve the metric through the external metrics API and convert again",
        ),
        "ContainerResource" => refused(
            r,
            "a ContainerResource metric (one container's usage) has no WPA equivalent: a WPA's Resource metric adds up every container of the pod",
        ),
        other => refused(r, &format!("unknown metric type {other:?}")),
    }
}

/// A Value or AverageValue target, in thousandths as the HPA reads it (`MilliValue()`).
fn quantity_target(
    at: &str,
    q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    r: &mut Remarks,
) -> Option<Target> {
    let Some(q) = q else {
        r.refuse(at, "missing");
        return None;
    };
    match Quantity::parse(&q.0) {
        Ok(q) if q.milli() > 0 => Some(Target { numerator: i128::from(q.milli()), denominator: 1 }),
        Ok(q) => {
            r.refuse(at, format!("{q}: a target must be above 0"));
            None
        }
        Err(e) => {
            r.refuse(at, format!("{:?} is not a quantity: {e}", q.0));
            None
        }
    }
}

/// A Utilization target as a value per pod: the percentage of the pod template's request.
fn utilization_target(
    at: &str,
    resource: &str,
    utilization: Option<i32>,
    workload: Result<&Workload, &str>,
    r: &mut Remarks,
) -> Option<Target> {
    let Some(u) = utilization.filter(|u| *u > 0) else {
        r.refuse(format!("{at}.resource.target.averageUtilization"), "missing or not above 0");
        return None;
    };
    let w = match workload {
        Ok(w) => w,
        Err(e) => {
            r.refuse(
                at,
                format!("a Utilization target needs the requests of the target's pod template: {e}"),
            );
            return None;
        }
    };
    match w.pod_request(resource) {
        Ok(request) if request > 0 => {
            r.approximate(
                format!("{at}.resource"),
                format!(
                    "{u} % of the pod template's {resource} request ({}) read now: the WPA's watermarks are values, they do not follow a later change of the requests (the HPA's percentage does)",
                    decimal_text(request)
                ),
            );
            Some(Target { numerator: i128::from(request) * i128::from(u), denominator: 100 })
        }
        Ok(_) => {
            r.refuse(at, format!("the pod template requests 0 {resource}: a Utilization target has nothing to be a percentage of"));
            None
        }
        Err(missing) if missing.is_empty() => {
            r.refuse(
                at,
                "the target has no pod template with containers: a Utilization target needs their requests",
            );
            None
        }
        Err(missing) => {
            r.refuse(
                at,
                format!(
                    "container{} {} of the pod template request{} no {resource}: the HPA cannot compute a Utilization without it either (set the request, or use an AverageValue target)",
                    if missing.len() > 1 { "s" } else { "" },
                    missing.join(", "),
                    if missing.len() > 1 { "" } else { "s" },
                ),
            );
            None
        }
    }
}

/// The watermarks of a target, with the approximation they make named.
fn band_of(at: &str, target: Target, t: Tolerances, r: &mut Remarks) -> (i64, i64) {
    let (high, low, rounded) = watermarks(target, t);
    let target_milli = target.numerator as f64 / target.denominator as f64;
    // After a scale-up the WPA has about 1 / (1 + t) of the HPA's count, after a scale-down 1 / (1 − t).
    let fewer = 100.0 * t.up as f64 / (1000 + t.up) as f64;
    let more = 100.0 * t.down as f64 / (1000 - t.down).max(1) as f64;
    r.approximate(
        at.to_string(),
        format!(
            "target {} with tolerances +{} % and -{} % → highWatermark {} and lowWatermark {}: both autoscalers hold any count that keeps the value within this band, but after a scale the HPA aims at the target and the WPA at the watermark it crossed (up to {:.1} % fewer replicas after a scale-up, {:.1} % more after a scale-down){}",
            plain_milli(target_milli),
            decimal_text(t.up * 100),
            decimal_text(t.down * 100),
            decimal_text(high),
            decimal_text(low),
            fewer,
            more,
            if rounded { "; the watermarks are rounded outward to thousandths" } else { "" },
        ),
    );
    (high, low)
}

/// A milli-value as a plain number, with at most three decimals.
fn plain_milli(milli: f64) -> String {
    let v = (milli).round() / 1000.0;
    if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v}") }
}

/// Which way a limit works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

/// How the HPA picks among its policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Select {
    Max,
    Min,
    Disabled,
}

/// One direction's rules, with the API server's and the controller's defaults filled in.
#[derive(Clone, Debug, PartialEq)]
enum Rules {
    /// `behavior` (or this direction of it) as set, defaults filled.
    Policies { stabilization: i32, select: Select, policies: Vec<hpa_v2::HPAScalingPolicy> },
    /// No `behavior` at all: the controller's fixed rules (up to max(2 × current, 4) per sync up; down, the
    /// downscale stabilization and no limit).
    Legacy { stabilization: i32 },
}

fn policy(kind: &str, value: i32, period: i32) -> hpa_v2::HPAScalingPolicy {
    hpa_v2::HPAScalingPolicy { type_: kind.into(), value, period_seconds: period }
}

/// Both directions' rules.
fn rules(behavior: Option<&hpa_v2::HorizontalPodAutoscalerBehavior>, settings: &Settings) -> (Rules, Rules) {
    let Some(b) = behavior else {
        return (
            Rules::Legacy { stabilization: 0 },
            Rules::Legacy { stabilization: settings.downscale_stabilization },
        );
    };
    let filled = |rules: Option<&hpa_v2::HPAScalingRules>, direction: Direction| {
        // The API server's defaults (SetDefaults_HorizontalPodAutoscalerBehavior); an unset downscale window
        // is the controller's flag.
        let (stabilization, policies) = match direction {
            Direction::Up => (0, vec![policy("Percent", 100, 15), policy("Pods", 4, 15)]),
            Direction::Down => (settings.downscale_stabilization, vec![policy("Percent", 100, 15)]),
        };
        let select = match rules.and_then(|r| r.select_policy.as_deref()) {
            Some("Min") => Select::Min,
            Some("Disabled") => Select::Disabled,
            _ => Select::Max,
        };
        Rules::Policies {
            stabilization: rules.and_then(|r| r.stabilization_window_seconds).unwrap_or(stabilization),
            select,
            policies: rules.and_then(|r| r.policies.clone()).filter(|p| !p.is_empty()).unwrap_or(policies),
        }
    };
    (filled(b.scale_up.as_ref(), Direction::Up), filled(b.scale_down.as_ref(), Direction::Down))
}

/// One direction of the WPA: its limit factor (thousandths of a percent), forbidden window and delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Limit {
    factor_milli: i64,
    window: i32,
    delay: i32,
}

/// The WPA fields of one direction.
struct Fields {
    factor: &'static str,
    window: &'static str,
    delay: &'static str,
}

fn fields(direction: Direction) -> Fields {
    match direction {
        Direction::Up => Fields {
            factor: "spec.scaleUpLimitFactor",
            window: "spec.upscaleForbiddenWindowSeconds",
            delay: "spec.upscaleDelayAboveWatermarkSeconds",
        },
        Direction::Down => Fields {
            factor: "spec.scaleDownLimitFactor",
            window: "spec.downscaleForbiddenWindowSeconds",
            delay: "spec.downscaleDelayBelowWatermarkSeconds",
        },
    }
}

/// The replica count at which a number of replicas becomes a percentage, and where it comes from.
#[derive(Clone, Copy, Debug)]
struct Reference {
    count: i32,
    from: &'static str,
}

fn limit(
    direction: Direction,
    rules: &Rules,
    reference: Reference,
    settings: &Settings,
    r: &mut Remarks,
) -> Limit {
    let f = fields(direction);
    let c = i128::from(reference.count.max(1));
    let (stabilization, factor, window, mut why) = match rules {
        Rules::Policies { select: Select::Disabled, policies, .. } => {
            // Exact: a factor of 0 disables the direction, as selectPolicy Disabled does, and both still
            // enforce minReplicas and maxReplicas. A delay would change nothing.
            let window = policies.iter().map(|p| p.period_seconds).filter(|p| *p > 0).min();
            return Limit {
                factor_milli: 0,
                window: window.unwrap_or(settings.sync_period).max(1),
                delay: 0,
            };
        }
        Rules::Legacy { stabilization } => {
            let window = settings.sync_period.max(1);
            let (factor, why) = match direction {
                Direction::Up => {
                    // max(2 × current, 4) − current, as a percentage of the current count.
                    let change = (2 * c).max(4) - c;
                    let why = format!(
                        "without behavior the controller's fixed limit applies, at most max(2 × current, 4) replicas per sync ({window} s): +{change} at {} replicas ({}), a percentage for the WPA",
                        reference.count, reference.from
                    );
                    (div_ceil(change * 100_000, c), why)
                }
                Direction::Down => (
                    i128::from(100_000),
                    "without behavior the HPA may scale down to its proposal at once".to_string(),
                ),
            };
            (*stabilization, factor, window, vec![why])
        }
        Rules::Policies { stabilization, select, policies } => {
            let window = policies
                .iter()
                .map(|p| p.period_seconds)
                .filter(|p| *p > 0)
                .min()
                .unwrap_or(settings.sync_period);
            let window = window.max(1);
            let (factor, why) = policy_factor(*select, policies, reference, window);
            (*stabilization, factor, window, why)
        }
    };
    let factor_milli = match direction {
        Direction::Up if factor > i128::from(MAX_UP_FACTOR_MILLI) => {
            why.push(format!(
                "{} is above the most `wpa serve`'s webhook admits by default (--admission-max-scale-up-limit-factor)",
                decimal_text_wide(factor)
            ));
            MAX_UP_FACTOR_MILLI
        }
        Direction::Down if factor > i128::from(MAX_DOWN_FACTOR_MILLI) => {
            why.push(format!(
                "{} % in one step, but a WPA's limit must be below 100 (minReplicas still holds)",
                decimal_text_wide(factor)
            ));
            MAX_DOWN_FACTOR_MILLI
        }
        _ => i64::try_from(factor).unwrap_or(i64::MAX),
    };
    r.approximate(f.factor, format!("{}: {}", decimal_text(factor_milli), why.join("; ")));
    if let Rules::Policies { .. } = rules {
        r.approximate(
            f.window,
            format!(
                "{window}: the HPA limits what it adds or removes over any {window} s (a rolling window); the WPA makes one step, then waits {window} s, counted from its last scale in either direction"
            ),
        );
    }
    if stabilization > 0 {
        let (way, watermark, extreme) = match direction {
            Direction::Up => ("up", "above the high watermark", "lowest"),
            Direction::Down => ("down", "below the low watermark", "highest"),
        };
        r.approximate(
            f.delay,
            format!(
                "{stabilization}: the HPA scales {way} to the {extreme} of its recommendations of the last {stabilization} s, so it can move part of the way while the value still changes; the WPA waits until the value has been {watermark} for {stabilization} s without a break, then scales to the proposal of the moment"
            ),
        );
    }
    Limit { factor_milli, window, delay: stabilization }
}

/// The limit factor of a direction's policies (thousandths of a percent), each brought to `window` seconds,
/// and what that approximates.
fn policy_factor(
    select: Select,
    policies: &[hpa_v2::HPAScalingPolicy],
    reference: Reference,
    window: i32,
) -> (i128, Vec<String>) {
    let c = i128::from(reference.count.max(1));
    let w = i128::from(window);
    // A Percent policy is the same percentage at every count, a Pods policy only at the reference count.
    let percents = policies.iter().map(|p| {
        let period = i128::from(p.period_seconds.max(1));
        let value = i128::from(p.value.max(0));
        if p.type_ == "Pods" {
            div_ceil(value * 100_000 * w, period * c)
        } else {
            div_ceil(value * 1000 * w, period)
        }
    });
    let chosen = if select == Select::Min { percents.min() } else { percents.max() }.unwrap_or(0).max(1);

    let pods: Vec<&hpa_v2::HPAScalingPolicy> = policies.iter().filter(|p| p.type_ == "Pods").collect();
    let percent_policies = policies.len() - pods.len();
    let mut why = Vec::new();
    if let Some(p) = pods.first() {
        why.push(format!(
            "a Pods policy is a number of replicas and a WPA's limit a percentage of the current count: {} per {} s is {} % at {} replicas ({}), and twice as many replicas at twice the count",
            p.value,
            p.period_seconds,
            decimal_text_wide(div_ceil(i128::from(p.value) * 100_000, c)),
            reference.count,
            reference.from,
        ));
    }
    if percent_policies > 0 {
        why.push("the WPA's step is floor(factor % × current), at least 1, the HPA's is rounded up: up to one replica less per step".to_string());
    }
    if !pods.is_empty() && percent_policies > 0 {
        why.push(format!(
            "the HPA picks among its policies at every step (selectPolicy {}); the WPA keeps the one picked at {} replicas",
            if select == Select::Min { "Min" } else { "Max" },
            reference.count
        ));
    }
    if policies.iter().any(|p| p.period_seconds != window) {
        why.push(format!("policies over longer periods are brought to {window} s in proportion"));
    }
    (chosen, why)
}

#[cfg(test)]
mod tests {
    use kube::ResourceExt;
    use serde_json::json;

    use super::*;
    use crate::engine::{
        calc::{CalcSpec, replica_count_for_usage},
        limits,
    };

    /// An autoscaling/v2beta2 HPA `shop/web` on Deployment web (min 2, max 20) with `metrics` and
    /// `behavior` (JSON).
    fn hpa(metrics: Value, behavior: Value) -> Hpa {
        let mut spec = json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2, "maxReplicas": 20, "metrics": metrics,
        });
        if !behavior.is_null() {
            spec["behavior"] = behavior;
        }
        Hpa::from_json(&json!({
            "apiVersion": "autoscaling/v2beta2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"namespace": "shop", "name": "web"}, "spec": spec,
        }))
        .expect("a valid HPA")
    }

    fn external_average(value: &str) -> Value {
        json!([{"type": "External", "external": {
            "metric": {"name": "rps", "selector": {"matchLabels": {"app": "web"}}},
            "target": {"type": "AverageValue", "averageValue": value}}}])
    }

    /// Deployment web: 10 replicas, `app=web`, containers app (cpu 200m, memory 256Mi) and sidecar
    /// (cpu 300m).
    fn workload() -> Workload {
        Workload::from_json(&json!({"spec": {
        "replicas": 10, "selector": {"matchLabels": {"app": "web"}},
        "template": {"spec": {"containers": [
            {"name": "app", "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}}},
            {"name": "sidecar", "resources": {"requests": {"cpu": "300m"}}},
        ]}}}}))
        .expect("a workload")
    }

    fn ok(hpa: &Hpa) -> Converted {
        convert(hpa, Ok(&workload()), &Settings::default()).unwrap_or_else(|r| panic!("refused: {r:?}"))
    }

    fn refusals(hpa: &Hpa, workload: Result<&Workload, &str>) -> Vec<Remark> {
        match convert(hpa, workload, &Settings::default()) {
            Ok(c) => panic!("converted: {:?}", c.wpa.spec),
            Err(r) => r,
        }
    }

    fn q(text: &str) -> Option<Quantity> {
        Some(Quantity::parse(text).expect("a quantity"))
    }

    fn external(c: &Converted, i: usize) -> &ExternalMetricSource {
        c.wpa.spec.metrics.as_ref().and_then(|m| m[i].external.as_ref()).expect("an External metric")
    }

    fn resource(c: &Converted, i: usize) -> &ResourceMetricSource {
        c.wpa.spec.metrics.as_ref().and_then(|m| m[i].resource.as_ref()).expect("a Resource metric")
    }

    fn noted(c: &Converted, at: &str) -> String {
        c.approximations
            .iter()
            .filter(|a| a.at == at)
            .map(|a| a.text.clone())
            .reduce(|a, b| format!("{a}\n{b}"))
            .unwrap_or_else(|| panic!("no approximation at {at}: {:?}", c.approximations))
    }

    #[test]
    fn an_external_average_value_becomes_watermarks_at_the_target_plus_and_minus_the_tolerance() {
        let c = ok(&hpa(external_average("100"), Value::Null));
        let e = external(&c, 0);
        assert_eq!(
            (e.metric_name.as_str(), &e.high_watermark, &e.low_watermark),
            ("rps", &q("110"), &q("90"))
        );
        assert_eq!(
            e.metric_selector.as_ref().and_then(|s| s.match_labels.as_ref()).map(|l| l["app"].as_str()),
            Some("web")
        );
        assert_eq!(c.wpa.spec.algorithm.as_deref(), Some("average"));
        assert_eq!(c.wpa.spec.tolerance, q("0.001"));
    }

    #[test]
    fn an_external_value_target_is_compared_absolute() {
        let metrics = json!([{"type": "External", "external": {
            "metric": {"name": "queue", "selector": {"matchLabels": {"q": "jobs"}}},
            "target": {"type": "Value", "value": "30"}}}]);
        let c = ok(&hpa(metrics, Value::Null));
        assert_eq!(c.wpa.spec.algorithm.as_deref(), Some("absolute"));
        assert_eq!((&external(&c, 0).high_watermark, &external(&c, 0).low_watermark), (&q("33"), &q("27")));
    }

    #[test]
    fn an_external_metric_without_a_selector_reads_every_series() {
        let metrics = json!([{"type": "External", "external": {
            "metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "100"}}}]);
        let c = ok(&hpa(metrics, Value::Null));
        assert_eq!(external(&c, 0).metric_selector, Some(LabelSelector::default()));
    }

    #[test]
    fn an_external_metric_reading_zero_scales_down_as_the_hpa_does() {
        // The HPA's proposal for 0 is 0, then minReplicas; a WPA holds on a 0 unless it tolerates it.
        assert_eq!(ok(&hpa(external_average("100"), Value::Null)).wpa.spec.tolerate_zero, Some(true));
    }

    #[test]
    fn a_resource_average_value_reads_the_pods_the_target_selects() {
        let metrics = json!([{"type": "Resource", "resource": {"name": "memory",
            "target": {"type": "AverageValue", "averageValue": "512Mi"}}}]);
        let c = ok(&hpa(metrics, Value::Null));
        let r = resource(&c, 0);
        assert_eq!(r.name, "memory");
        assert_eq!(r.metric_selector, workload().selector);
        // 512 Mi = 536870912; ± 10 %.
        assert_eq!((&r.high_watermark, &r.low_watermark), (&q("590558003.2"), &q("483183820.8")));
        assert_eq!(c.wpa.spec.algorithm.as_deref(), Some("average"));
        assert_eq!(c.wpa.spec.tolerate_zero, None, "tolerateZero applies to External metrics only");
    }

    #[test]
    fn a_utilization_target_is_a_share_of_the_pod_templates_requests() {
        let metrics = json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 70}}}]);
        let c = ok(&hpa(metrics, Value::Null));
        // The pod requests 200m + 300m; 70 % of 500m is 350m a pod.
        let r = resource(&c, 0);
        assert_eq!((&r.high_watermark, &r.low_watermark), (&q("0.385"), &q("0.315")));
        assert!(
            noted(&c, "spec.metrics[0].resource").contains("70 % of the pod template's cpu request (0.5)")
        );
    }

    #[test]
    fn a_utilization_target_on_a_container_without_the_request_is_refused_naming_it() {
        let metrics = json!([{"type": "Resource", "resource": {"name": "memory",
            "target": {"type": "Utilization", "averageUtilization": 70}}}]);
        let r = refusals(&hpa(metrics, Value::Null), Ok(&workload()));
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].at, "spec.metrics[0]");
        assert!(
            r[0].text.starts_with("container sidecar of the pod template requests no memory"),
            "{}",
            r[0].text
        );
    }

    #[test]
    fn a_resource_metric_of_an_unreadable_target_is_refused_with_the_read_error() {
        let metrics = json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "AverageValue", "averageValue": "300m"}}}]);
        let r = refusals(&hpa(metrics, Value::Null), Err("cannot read Deployment shop/web: forbidden"));
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(r[0].text.ends_with("cannot read Deployment shop/web: forbidden"), "{}", r[0].text);
    }

    #[test]
    fn an_external_only_hpa_converts_without_its_target() {
        let c = convert(&hpa(external_average("100"), Value::Null), Err("forbidden"), &Settings::default());
        assert!(c.is_ok(), "{c:?}");
    }

    #[test]
    fn metrics_a_wpa_cannot_read_are_refused_one_line_each_with_the_reason() {
        let metrics = json!([
            {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
            {"type": "Object", "object": {"metric": {"name": "hits"},
                "describedObject": {"kind": "Ingress", "name": "web"}, "target": {"type": "Value", "value": "10"}}},
            {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app",
                "target": {"type": "Utilization", "averageUtilization": 60}}},
        ]);
        let r = refusals(&hpa(metrics, Value::Null), Ok(&workload()));
        let at: Vec<&str> = r.iter().map(|r| r.at.as_str()).collect();
        assert_eq!(at, ["spec.metrics[0]", "spec.metrics[1]", "spec.metrics[2]"]);
        assert!(r[0].text.starts_with("a Pods metric"), "{}", r[0].text);
        assert!(r[1].text.starts_with("an Object metric"), "{}", r[1].text);
        assert!(r[2].text.starts_with("a ContainerResource metric"), "{}", r[2].text);
        assert!(r.iter().all(|r| !r.text.contains('\n')));
    }

    #[test]
    fn a_value_target_beside_a_per_pod_target_is_refused() {
        let metrics = json!([
            {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "30"}}},
            {"type": "External", "external": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "100"}}},
        ]);
        let r = refusals(&hpa(metrics, Value::Null), Ok(&workload()));
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].at, "spec.metrics");
        assert!(
            r[0].text.contains("metrics[0] needs algorithm absolute and metrics[1] algorithm average"),
            "{}",
            r[0].text
        );
    }

    #[test]
    fn an_autoscaling_v1_hpa_is_its_cpu_utilization_target() {
        let v1 = |percent: Value| {
            Hpa::from_json(&json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
                "metadata": {"namespace": "shop", "name": "web"},
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "maxReplicas": 5, "targetCPUUtilizationPercentage": percent}}))
            .expect("a v1 HPA")
        };
        // 60 % of 500m = 300m; unset is the controller's 80 % = 400m.
        assert_eq!(resource(&ok(&v1(json!(60))), 0).high_watermark, q("0.33"));
        assert_eq!(resource(&ok(&v1(Value::Null)), 0).high_watermark, q("0.44"));
        assert_eq!(ok(&v1(json!(60))).wpa.spec.min_replicas, Some(1));
    }

    #[test]
    fn an_autoscaling_v1_read_that_hides_metrics_in_annotations_is_refused() {
        let e = Hpa::from_json(&json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"namespace": "shop", "name": "web",
                "annotations": {"autoscaling.alpha.kubernetes.io/metrics": "[]"}},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5}}))
        .expect_err("refused");
        assert!(e.contains("read it as autoscaling/v2beta2 or v2"), "{e}");
    }

    #[test]
    fn the_controllers_tolerance_setting_sets_the_band() {
        let settings = Settings { tolerance_milli: 50, ..Settings::default() };
        let c = convert(&hpa(external_average("100"), Value::Null), Ok(&workload()), &settings)
            .expect("converted");
        assert_eq!((&external(&c, 0).high_watermark, &external(&c, 0).low_watermark), (&q("105"), &q("95")));
    }

    #[test]
    fn a_tolerance_in_the_behavior_sets_its_side_of_the_band() {
        // Kubernetes 1.33+ (HPAConfigurableTolerance): one tolerance per direction.
        let behavior = json!({"scaleUp": {"tolerance": "0.05"}, "scaleDown": {"tolerance": "0.2"}});
        let c = ok(&hpa(external_average("100"), behavior));
        assert_eq!((&external(&c, 0).high_watermark, &external(&c, 0).low_watermark), (&q("105"), &q("80")));
    }

    #[test]
    fn a_zero_tolerance_still_gives_a_band_the_webhook_admits() {
        let settings = Settings { tolerance_milli: 0, ..Settings::default() };
        let c = convert(&hpa(external_average("100"), Value::Null), Ok(&workload()), &settings)
            .expect("converted");
        assert_eq!(
            (&external(&c, 0).high_watermark, &external(&c, 0).low_watermark),
            (&q("100.001"), &q("100"))
        );
        assert_admitted(&c);
    }

    #[test]
    fn a_target_finer_than_thousandths_is_rounded_outward_and_said() {
        let c = ok(&hpa(external_average("0.0155"), Value::Null));
        // 16m (MilliValue rounds up) ± 10 %: 17.6m up to 18m, 14.4m down to 14m.
        assert_eq!(
            (&external(&c, 0).high_watermark, &external(&c, 0).low_watermark),
            (&q("0.018"), &q("0.014"))
        );
        assert!(noted(&c, "spec.metrics[0].external").contains("rounded outward"));
    }

    #[test]
    fn without_behavior_the_controllers_fixed_limits_apply() {
        let c = ok(&hpa(external_average("100"), Value::Null));
        let s = &c.wpa.spec;
        // max(2 × 10, 4): +100 % per sync; down at once after the 5-minute stabilization.
        assert_eq!((&s.scale_up_limit_factor, s.upscale_forbidden_window_seconds), (&q("100"), Some(15)));
        assert_eq!(
            (&s.scale_down_limit_factor, s.downscale_forbidden_window_seconds),
            (&q("99.9"), Some(15))
        );
        assert_eq!(
            (s.upscale_delay_above_watermark_seconds, s.downscale_delay_below_watermark_seconds),
            (None, Some(300))
        );
        // At 1 replica the controller allows 4 (+3).
        let one = Settings { reference_replicas: Some(1), ..Settings::default() };
        let hpa1 = hpa(external_average("100"), Value::Null);
        let mut hpa1 = hpa1;
        hpa1.spec.min_replicas = Some(1);
        let c = convert(&hpa1, Ok(&workload()), &one).expect("converted");
        assert_eq!(c.wpa.spec.scale_up_limit_factor, q("300"));
    }

    #[test]
    fn a_percent_policy_is_the_limit_factor_and_its_period_the_forbidden_window() {
        let behavior = json!({
            "scaleUp": {"policies": [{"type": "Percent", "value": 50, "periodSeconds": 30}]},
            "scaleDown": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Percent", "value": 10, "periodSeconds": 20}]},
        });
        let s = ok(&hpa(external_average("100"), behavior)).wpa.spec;
        assert_eq!((&s.scale_up_limit_factor, s.upscale_forbidden_window_seconds), (&q("50"), Some(30)));
        assert_eq!((&s.scale_down_limit_factor, s.downscale_forbidden_window_seconds), (&q("10"), Some(20)));
    }

    #[test]
    fn a_pods_policy_is_the_percentage_it_is_at_the_targets_count() {
        let behavior =
            json!({"scaleDown": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}});
        let c = ok(&hpa(external_average("100"), behavior));
        // 2 of the target's 10 replicas.
        assert_eq!(c.wpa.spec.scale_down_limit_factor, q("20"));
        assert!(
            noted(&c, "spec.scaleDownLimitFactor")
                .contains("2 per 60 s is 20 % at 10 replicas (the target's count now)")
        );
        // The engine then removes exactly 2 at 10 replicas.
        assert_eq!(limits::scale_down_limit(c.wpa.spec.scale_down_limit_factor.as_ref(), 10), 8);
    }

    #[test]
    fn the_reference_count_is_the_flags_then_the_targets_within_min_and_max() {
        let behavior = json!({"scaleUp": {"policies": [{"type": "Pods", "value": 3, "periodSeconds": 15}]}});
        let h = hpa(external_average("100"), behavior);
        let factor = |reference: Option<i32>, w: &Workload| {
            let settings = Settings { reference_replicas: reference, ..Settings::default() };
            convert(&h, Ok(w), &settings).expect("converted").wpa.spec.scale_up_limit_factor
        };
        assert_eq!(factor(None, &workload()), q("30"), "3 of the target's 10");
        assert_eq!(factor(Some(6), &workload()), q("50"), "3 of the 6 asked for");
        assert_eq!(factor(Some(100), &workload()), q("15"), "3 of maxReplicas 20");
        assert_eq!(
            factor(None, &Workload::default()),
            q("150"),
            "3 of minReplicas 2 when the target has no count"
        );
        // A fraction is rounded up, so that the step at the reference count is the policy's.
        assert_eq!(factor(Some(7), &workload()), q("42.858"));
        assert_eq!(limits::scale_up_limit(q("42.858").as_ref(), 7), 10);
    }

    #[test]
    fn select_policy_max_takes_the_larger_limit_and_min_the_smaller() {
        let rules = |select: &str| {
            json!({"scaleUp": {"selectPolicy": select, "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 15},
                {"type": "Pods", "value": 4, "periodSeconds": 15}]}})
        };
        // At 10 replicas: +100 % or +4 (40 %).
        let factor = |select| ok(&hpa(external_average("100"), rules(select))).wpa.spec.scale_up_limit_factor;
        assert_eq!(factor("Max"), q("100"));
        assert_eq!(factor("Min"), q("40"));
        let c = ok(&hpa(external_average("100"), rules("Max")));
        assert!(noted(&c, "spec.scaleUpLimitFactor").contains("the WPA keeps the one picked at 10 replicas"));
    }

    #[test]
    fn policies_of_different_periods_are_brought_to_the_shortest() {
        let behavior = json!({"scaleUp": {"policies": [
            {"type": "Percent", "value": 100, "periodSeconds": 60},
            {"type": "Percent", "value": 10, "periodSeconds": 15}]}});
        let c = ok(&hpa(external_average("100"), behavior));
        // 100 % a minute is 25 % every 15 s.
        assert_eq!(
            (&c.wpa.spec.scale_up_limit_factor, c.wpa.spec.upscale_forbidden_window_seconds),
            (&q("25"), Some(15))
        );
        assert!(noted(&c, "spec.scaleUpLimitFactor").contains("brought to 15 s in proportion"));
    }

    #[test]
    fn select_policy_disabled_is_a_limit_factor_of_zero() {
        let behavior = json!({"scaleDown": {"selectPolicy": "Disabled"}});
        let c = ok(&hpa(external_average("100"), behavior));
        assert_eq!(c.wpa.spec.scale_down_limit_factor, q("0"));
        // The engine reads 0 as "never down", as the HPA reads Disabled.
        assert_eq!(limits::scale_down_limit(c.wpa.spec.scale_down_limit_factor.as_ref(), 10), 10);
        assert!(
            c.approximations.iter().all(|a| a.at != "spec.scaleDownLimitFactor"),
            "exact, not approximated"
        );
        assert_admitted(&c);
    }

    #[test]
    fn stabilization_windows_become_delays() {
        let behavior = json!({"scaleUp": {"stabilizationWindowSeconds": 30}, "scaleDown": {}});
        let c = ok(&hpa(external_average("100"), behavior));
        let s = &c.wpa.spec;
        // scaleDown without a window: the controller's --horizontal-pod-autoscaler-downscale-stabilization.
        assert_eq!(
            (s.upscale_delay_above_watermark_seconds, s.downscale_delay_below_watermark_seconds),
            (Some(30), Some(300))
        );
        assert!(
            noted(&c, "spec.upscaleDelayAboveWatermarkSeconds").contains("above the high watermark for 30 s")
        );
        let none = ok(&hpa(external_average("100"), json!({"scaleDown": {"stabilizationWindowSeconds": 0}})));
        assert_eq!(none.wpa.spec.downscale_delay_below_watermark_seconds, None);
    }

    #[test]
    fn a_downscale_limit_of_100_percent_or_more_is_just_below_it() {
        let behavior =
            json!({"scaleDown": {"policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}});
        let c = ok(&hpa(external_average("100"), behavior));
        assert_eq!(c.wpa.spec.scale_down_limit_factor, q("99.9"));
        assert!(noted(&c, "spec.scaleDownLimitFactor").contains("below 100"));
        // From 10 a step may go to 1; minReplicas holds the rest.
        assert_eq!(limits::scale_down_limit(q("99.9").as_ref(), 10), 1);
    }

    #[test]
    fn an_upscale_limit_above_what_the_webhook_admits_is_capped_and_said() {
        let behavior =
            json!({"scaleUp": {"policies": [{"type": "Pods", "value": 1000, "periodSeconds": 15}]}});
        let settings = Settings { reference_replicas: Some(2), ..Settings::default() };
        let c =
            convert(&hpa(external_average("100"), behavior), Ok(&workload()), &settings).expect("converted");
        assert_eq!(c.wpa.spec.scale_up_limit_factor, q("10000"));
        assert!(noted(&c, "spec.scaleUpLimitFactor").contains("50000 is above the most"));
        assert_admitted(&c);
    }

    #[test]
    fn min_replicas_zero_becomes_one_and_is_said() {
        let mut h = hpa(external_average("100"), Value::Null);
        h.spec.min_replicas = Some(0);
        let c = ok(&h);
        assert_eq!(c.wpa.spec.min_replicas, Some(1));
        assert!(noted(&c, "spec.minReplicas").contains("scale to zero"));
    }

    #[test]
    fn a_target_without_api_version_is_refused() {
        let mut h = hpa(external_average("100"), Value::Null);
        h.spec.scale_target_ref.api_version = None;
        let r = refusals(&h, Ok(&workload()));
        assert_eq!(r.iter().map(|r| r.at.as_str()).collect::<Vec<_>>(), ["spec.scaleTargetRef.apiVersion"]);
    }

    #[test]
    fn every_reason_is_given_at_once() {
        let mut h = hpa(
            json!([{"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1"}}}]),
            Value::Null,
        );
        h.spec.scale_target_ref.api_version = None;
        assert_eq!(refusals(&h, Ok(&workload())).len(), 2);
    }

    #[test]
    fn the_wpa_runs_in_dry_run_beside_the_hpa() {
        let c = ok(&hpa(external_average("100"), Value::Null));
        assert_eq!(c.wpa.spec.dry_run, Some(true));
        assert_eq!(c.wpa.annotations().get(annotations::ALLOW_CONFLICT).map(String::as_str), Some("true"));
        assert_eq!(
            (c.wpa.metadata.namespace.as_deref(), c.wpa.metadata.name.as_deref()),
            (Some("shop"), Some("web"))
        );
        let r = &c.wpa.spec.scale_target_ref;
        assert_eq!(
            (r.api_version.as_deref(), r.kind.as_str(), r.name.as_str()),
            (Some("apps/v1"), "Deployment", "web")
        );
        let named = convert(
            &hpa(external_average("100"), Value::Null),
            Ok(&workload()),
            &Settings { name: Some("web-wpa".into()), ..Settings::default() },
        )
        .expect("converted");
        assert_eq!(named.wpa.metadata.name.as_deref(), Some("web-wpa"));
    }

    #[test]
    fn each_approximation_is_named_at_its_field() {
        let behavior = json!({
            "scaleUp": {"stabilizationWindowSeconds": 10},
            "scaleDown": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]},
        });
        let metrics = json!([
            {"type": "External", "external": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "100"}}},
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
        ]);
        let c = ok(&hpa(metrics, behavior));
        let mut at: Vec<&str> = c.approximations.iter().map(|a| a.at.as_str()).collect();
        at.dedup();
        assert_eq!(
            at,
            [
                "spec.metrics[0].external",
                "spec.metrics[1].resource",
                "spec.metrics",
                "spec.tolerance",
                "spec.scaleUpLimitFactor",
                "spec.upscaleForbiddenWindowSeconds",
                "spec.upscaleDelayAboveWatermarkSeconds",
                "spec.scaleDownLimitFactor",
                "spec.downscaleForbiddenWindowSeconds",
                "spec.downscaleDelayBelowWatermarkSeconds",
            ]
        );
    }

    /// The webhook's own rules find nothing to refuse.
    fn assert_admitted(c: &Converted) {
        let violations = crate::engine::validation::admission_violations(
            &c.wpa.spec,
            c.wpa.annotations(),
            "shop",
            "web",
            &crate::engine::AdmissionLimits::default(),
        );
        assert!(violations.is_empty(), "{violations:?}");
    }

    #[test]
    fn every_conversion_is_admitted_by_the_webhooks_rules() {
        let behaviors = [
            Value::Null,
            json!({}),
            json!({"scaleUp": {"selectPolicy": "Disabled"}, "scaleDown": {"selectPolicy": "Min"}}),
            json!({"scaleDown": {"policies": [{"type": "Pods", "value": 50, "periodSeconds": 1}]}}),
        ];
        let metrics = [
            external_average("100"),
            external_average("1m"),
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 1}}}]),
            json!([{"type": "External", "external": {"metric": {"name": "q"}, "target": {"type": "Value", "value": "5k"}}}]),
        ];
        for b in &behaviors {
            for m in &metrics {
                assert_admitted(&ok(&hpa(m.clone(), b.clone())));
            }
        }
    }

    /// The HPA's decision for a per-pod target of 100 (AverageValue) with tolerance 0.1: it holds while the
    /// total is within 10 % of 100 a replica (in exact arithmetic: at the very edge the controller's floats
    /// can go either way).
    fn hpa_moves(total: i64, current: i32) -> bool {
        let wanted = 100 * i64::from(current);
        10 * (total - wanted).abs() > wanted
    }

    #[test]
    fn the_converted_wpa_holds_where_the_hpa_holds_and_moves_where_it_moves() {
        let c = ok(&hpa(external_average("100"), Value::Null));
        let spec = CalcSpec::from_spec(&crate::engine::validation::with_defaults(&c.wpa.spec), false);
        for current in 1..=30 {
            for total in (0..=4000).step_by(7) {
                let per_pod = total as f64 * 1000.0 / f64::from(current);
                let wpa = replica_count_for_usage(&spec, current, current, per_pod, 90_000, 110_000);
                let (wpa_moves, hpa) = (wpa.is_above || wpa.is_below, hpa_moves(total, current));
                if hpa && !wpa_moves {
                    // Only in the 0.1 % that the WPA's smallest tolerance adds on each side.
                    let ratio = per_pod / 100_000.0;
                    assert!(
                        (1.1..=1.1011).contains(&ratio) || (0.8991..=0.9).contains(&ratio),
                        "{total} at {current}"
                    );
                } else {
                    assert_eq!(wpa_moves, hpa, "{total} at {current} replicas");
                }
            }
        }
    }

    #[test]
    fn from_six_replicas_up_the_wpa_scales_to_a_count_the_hpa_holds_at() {
        // docs/convert.md: after a scale-up to n ≥ (1 + t) / 2t = 5.5, after a scale-down to m ≥ (1 − t) / 2t
        // = 4.5, the HPA would hold.
        let c = ok(&hpa(external_average("100"), Value::Null));
        let spec = CalcSpec::from_spec(&crate::engine::validation::with_defaults(&c.wpa.spec), false);
        for current in 1..=40 {
            for total in (0..=6000).step_by(3) {
                let per_pod = total as f64 * 1000.0 / f64::from(current);
                let wpa = replica_count_for_usage(&spec, current, current, per_pod, 90_000, 110_000);
                let n = wpa.replica_count;
                if (wpa.is_above && n >= 6) || (wpa.is_below && n >= 5) {
                    assert!(
                        !hpa_moves(total, n),
                        "{total} from {current}: the WPA goes to {n}, where the HPA would not hold"
                    );
                }
            }
        }
    }
}
