//! The `WatermarkPodAutoscaler` API (`datadoghq.com/v1alpha1`), field for field compatible with upstream.
//!
//! Optional scalars are `Option`s so that a typed round trip keeps exactly what the user wrote; the accessors
//! give upstream's reading (Go's `omitempty` zero values). The CRD served to the API server is generated from
//! these types ([`crd`]); its schema carries the bounds the API server enforces by itself.

use std::collections::BTreeMap;

use k8s_openapi::{
    apiextensions_apiserver::pkg::apis::apiextensions::v1::{CustomResourceDefinition, JSONSchemaProps},
    apimachinery::pkg::apis::meta::v1::{LabelSelector, Time},
};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod duration;
pub mod quantity;
pub mod selector;

use quantity::Quantity;

pub const GROUP: &str = "datadoghq.com";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "WatermarkPodAutoscaler";
pub const FINALIZER: &str = "finalizer.watermarkpodautoscaler.datadoghq.com";

/// Annotations read on a WatermarkPodAutoscaler.
pub mod annotations {
    /// JSON object whose pairs are added to every log line about this WPA.
    pub const LOGS_ATTRIBUTES: &str = "wpa.datadoghq.com/logs-attributes";
    /// Exactly `"true"` turns off the pod owner check.
    pub const SKIP_OWNER_CHECK: &str = "wpa.datadoghq.com/skip-owner-check";
    /// A boolean (Go `strconv.ParseBool`); when true a DatadogMonitor of the same name gates scaling.
    pub const LIFECYCLE_CONTROL: &str = "wpa.datadoghq.com/lifecycle-control.enabled";
    /// `"true"` lets this WPA share its target with another autoscaler (checked by the webhook only).
    pub const ALLOW_CONFLICT: &str = "wpa.datadoghq.com/allow-conflicting-autoscaler";
    /// Prefix of every annotation this project reads.
    pub const PREFIX: &str = "wpa.datadoghq.com/";
    /// A positive integer: the scheduler extender never places more of the target's replicas on one node.
    pub const SCHEDULER_MAX_PER_NODE: &str = "wpa.datadoghq.com/scheduler-max-per-node";
    /// With [`FALLBACK_AFTER`]: the least replicas while every metric has failed for that long.
    pub const FALLBACK_REPLICAS: &str = "wpa.datadoghq.com/fallback-replicas";
    /// A duration (`10m`): how long every metric must have failed before [`FALLBACK_REPLICAS`] applies.
    pub const FALLBACK_AFTER: &str = "wpa.datadoghq.com/fallback-after";
}

/// Scales a workload between two watermarks of one or more metrics (or on an external recommender's advice).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "datadoghq.com",
    version = "v1alpha1",
    kind = "WatermarkPodAutoscaler",
    plural = "watermarkpodautoscalers",
    singular = "watermarkpodautoscaler",
    shortname = "wpa",
    namespaced,
    status = "WatermarkPodAutoscalerStatus",
    // `kubectl get wpa -o wide` only (priority 1), so that the default output stays upstream's: the target
    // and the replicas, as HPA's REFERENCE and REPLICAS. Two target columns: a column shows the first value
    // its JSONPath finds, so kind and name cannot share one.
    printcolumn = r#"{"name": "target kind", "type": "string", "jsonPath": ".spec.scaleTargetRef.kind", "priority": 1}"#,
    printcolumn = r#"{"name": "target", "type": "string", "jsonPath": ".spec.scaleTargetRef.name", "priority": 1}"#,
    printcolumn = r#"{"name": "scaling active", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"ScalingActive\")].status"}"#,
    printcolumn = r#"{"name": "condition", "type": "string", "jsonPath": ".status.lastConditionType"}"#,
    printcolumn = r#"{"name": "condition state", "type": "string", "jsonPath": ".status.lastConditionState"}"#,
    // Upstream's column reads External metrics only (its issue #126: empty for Resource metrics).
    printcolumn = r#"{"name": "value", "type": "string", "jsonPath": ".status.currentMetrics[*]['external.currentValue','resource.currentAverageValue']"}"#,
    printcolumn = r#"{"name": "high watermark", "type": "string", "jsonPath": ".spec..highWatermark"}"#,
    printcolumn = r#"{"name": "low watermark", "type": "string", "jsonPath": ".spec..lowWatermark"}"#,
    printcolumn = r#"{"name": "age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name": "min replicas", "type": "integer", "jsonPath": ".spec.minReplicas"}"#,
    printcolumn = r#"{"name": "max replicas", "type": "integer", "jsonPath": ".spec.maxReplicas"}"#,
    printcolumn = r#"{"name": "desired", "type": "integer", "jsonPath": ".status.desiredReplicas", "priority": 1}"#,
    printcolumn = r#"{"name": "current", "type": "integer", "jsonPath": ".status.currentReplicas", "priority": 1}"#,
    printcolumn = r#"{"name": "dry-run", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"DryRun\")].status"}"#,
    printcolumn = r#"{"name": "last scale", "type": "date", "jsonPath": ".status.lastScaleTime"}"#,
    printcolumn = r#"{"name": "scale count", "type": "integer", "jsonPath": ".status.scalingEventsCount", "priority": 1}"#
)]
#[serde(rename_all = "camelCase")]
pub struct WatermarkPodAutoscalerSpec {
    /// Seconds after any scaling event (up or down) before a downscale is allowed. Default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub downscale_forbidden_window_seconds: Option<i32>,

    /// Seconds after any scaling event before an upscale is allowed. Default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub upscale_forbidden_window_seconds: Option<i32>,

    /// Largest upscale per event, as a percentage of the current replicas (always at least +1). Values above
    /// 100 are allowed; 0 disables upscaling. Default 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up_limit_factor: Option<Quantity>,

    /// Upscale only after the value has been above the high watermark (any metric) for this many seconds
    /// without interruption. 0 disables the delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub upscale_delay_above_watermark_seconds: Option<i32>,

    /// Largest downscale per event, as a percentage of the current replicas (always at least −1), in [0, 100).
    /// 0 disables downscaling. Default 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_limit_factor: Option<Quantity>,

    /// Downscale only after the value has been below the low watermark (any metric) for this many seconds
    /// without interruption. 0 disables the delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub downscale_delay_below_watermark_seconds: Option<i32>,

    /// Proposals are rounded up to a multiple of this number; also the step of convergence. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replica_scaling_absolute_modulo: Option<i32>,

    /// While every value is between the watermarks, step the replica count toward one watermark:
    /// `highwatermark` steps down while the predicted usage stays at or under the high watermark,
    /// `lowwatermark` steps up while it stays at or over the low watermark. Empty disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converge_towards_watermark: Option<String>,

    /// Widens the band between the watermarks: high × (1 + tolerance), low × (1 − tolerance). A quantity
    /// between 0 and 1; 0 means the default 0.1 (`100m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<Quantity>,

    /// `absolute` compares the metric as returned; `average` divides it by the number of ready pods first.
    /// Default `absolute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,

    /// Compute and record every decision without ever writing the target's scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,

    /// When false, an external metric (or recommendation) of exactly 0 leaves the target alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerate_zero: Option<bool>,

    /// The object whose `/scale` subresource is read and written.
    #[serde(default)]
    #[schemars(extend("x-wpa-required" = true))]
    pub scale_target_ref: CrossVersionObjectReference,

    /// Metrics that drive scaling; the highest proposal wins. Cannot be combined with `recommender`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub metrics: Option<Vec<MetricSpec>>,

    /// An external HTTP replica recommender. Cannot be combined with `metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommender: Option<RecommenderSpec>,

    /// Lower bound of the replica count. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_replicas: Option<i32>,

    /// Scaling is refused while fewer than this percentage of the target's pods are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub min_available_replica_percentage: Option<i32>,

    /// Upper bound of the replica count; must be at least minReplicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_replicas: Option<i32>,

    /// Grace period, in seconds, during which new or pending pods count as ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub readiness_delay_seconds: Option<i32>,
}

/// Identifies the scaled object (any resource with a `/scale` subresource).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrossVersionObjectReference {
    /// Kind of the referent, e.g. `Deployment`.
    #[serde(default)]
    #[schemars(extend("x-wpa-required" = true))]
    pub kind: String,
    /// Name of the referent, in the WPA's namespace.
    #[serde(default)]
    #[schemars(extend("x-wpa-required" = true))]
    pub name: String,
    /// API version of the referent, e.g. `apps/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
}

/// One metric that drives scaling.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricSpec {
    /// `External` (a metric of external.metrics.k8s.io) or `Resource` (pod usage from metrics.k8s.io).
    #[serde(rename = "type", default)]
    #[schemars(extend("x-wpa-required" = true, "enum" = ["External", "Resource"]))]
    pub type_: String,
    /// Set when type is External.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalMetricSource>,
    /// Set when type is Resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceMetricSource>,
}

/// The source a metric reads, when its `type` names one that is set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MetricSource<'a> {
    External(&'a ExternalMetricSource),
    Resource(&'a ResourceMetricSource),
}

impl MetricSpec {
    /// `external` for type External, `resource` for type Resource; `None` for another type or when the
    /// named source is missing (such a metric is skipped, as upstream skips it).
    pub fn source(&self) -> Option<MetricSource<'_>> {
        match (self.type_.as_str(), &self.external, &self.resource) {
            ("External", Some(e), _) => Some(MetricSource::External(e)),
            ("Resource", _, Some(r)) => Some(MetricSource::Resource(r)),
            _ => None,
        }
    }
}

impl<'a> MetricSource<'a> {
    /// The metric name (External) or the resource name (Resource).
    pub fn name(self) -> &'a str {
        match self {
            MetricSource::External(e) => &e.metric_name,
            MetricSource::Resource(r) => &r.name,
        }
    }

    pub fn selector(self) -> Option<&'a LabelSelector> {
        match self {
            MetricSource::External(e) => e.metric_selector.as_ref(),
            MetricSource::Resource(r) => r.metric_selector.as_ref(),
        }
    }

    pub fn high_watermark(self) -> &'a Option<Quantity> {
        match self {
            MetricSource::External(e) => &e.high_watermark,
            MetricSource::Resource(r) => &r.high_watermark,
        }
    }

    pub fn low_watermark(self) -> &'a Option<Quantity> {
        match self {
            MetricSource::External(e) => &e.low_watermark,
            MetricSource::Resource(r) => &r.low_watermark,
        }
    }
}

/// A metric served by the external metrics API (Datadog Cluster Agent, KEDA, prometheus-adapter...).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricSource {
    /// Name of the external metric.
    #[serde(default)]
    #[schemars(extend("x-wpa-required" = true))]
    pub metric_name: String,
    /// Labels that select the metric's series (required at run time); their values are summed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_selector: Option<LabelSelector>,
    /// Upscale above this value (widened by the tolerance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_watermark: Option<Quantity>,
    /// Downscale below this value (narrowed by the tolerance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_watermark: Option<Quantity>,
}

/// A resource (e.g. `cpu`, `memory`) of the target's pods, from the resource metrics API.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceMetricSource {
    /// Name of the resource, e.g. `cpu`.
    #[serde(default)]
    #[schemars(extend("x-wpa-required" = true))]
    pub name: String,
    /// Labels of the pods whose usage is read (required at run time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_selector: Option<LabelSelector>,
    /// Upscale above this usage (widened by the tolerance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_watermark: Option<Quantity>,
    /// Downscale below this usage (narrowed by the tolerance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_watermark: Option<Quantity>,
}

/// An external replica recommender reached over HTTP(S).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecommenderSpec {
    /// `http://` or `https://` URL the recommendation request is POSTed to.
    #[serde(default)]
    #[schemars(extend("x-wpa-required" = true))]
    pub url: String,
    /// TLS settings of this recommender (this WPA's own; nothing is shared between WPAs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
    /// Free-form settings forwarded to the recommender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<BTreeMap<String, String>>,
    /// The target type sent to the recommender (e.g. `cpu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    /// Sent as the target's upper bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_watermark: Option<Quantity>,
    /// Sent as the target's lower bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_watermark: Option<Quantity>,
}

/// TLS settings for a recommender.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfig {
    /// CA bundle (PEM file) that verifies the recommender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Client certificate (PEM file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// Client key (PEM file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// Server name to verify and send as SNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Skip verification of the recommender's certificate (honoured, unlike upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// Lowest TLS version: TLS10, TLS11, TLS12 or TLS13.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^TLS1[0-3]$"))]
    pub min_version: Option<String>,
    /// Highest TLS version: TLS10, TLS11, TLS12 or TLS13.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^TLS1[0-3]$"))]
    pub max_version: Option<String>,
}

/// What the autoscaler last observed and decided.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatermarkPodAutoscalerStatus {
    /// The spec generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the target was last scaled (or, in dry-run, when a scale was last decided).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// Number of scaling events so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub scaling_events_count: i32,
    /// The target's `status.replicas`.
    #[serde(default)]
    #[schemars(extend("x-wpa-required" = true))]
    pub current_replicas: i32,
    /// The replica count last decided.
    #[serde(default)]
    #[schemars(extend("x-wpa-required" = true))]
    pub desired_replicas: i32,
    /// The value of each metric, in the order of `spec.metrics`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub current_metrics: Vec<MetricStatus>,
    /// Conditions, newest transition first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub conditions: Vec<Condition>,
    /// Type of the last condition written (for `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_condition_type: Option<String>,
    /// Status of the last condition written (for `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_condition_state: Option<String>,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// A metric's last value (the shape of autoscaling/v2beta1 `MetricStatus`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricStatus {
    /// `External` or `Resource`.
    #[serde(rename = "type", default)]
    #[schemars(extend("x-wpa-required" = true))]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalMetricStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceMetricStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricStatus {
    /// The metric's name (for a recommender, its display name).
    #[serde(default)]
    #[schemars(extend("x-wpa-required" = true))]
    pub metric_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_selector: Option<LabelSelector>,
    /// The value compared with the watermarks.
    pub current_value: Quantity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_average_value: Option<Quantity>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceMetricStatus {
    /// The resource's name.
    #[serde(default)]
    #[schemars(extend("x-wpa-required" = true))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_average_utilization: Option<i32>,
    /// The value compared with the watermarks (the sum over pods with the absolute algorithm).
    pub current_average_value: Quantity,
}

/// A condition, in the HorizontalPodAutoscaler shape.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Default for Quantity {
    fn default() -> Self {
        Quantity::from_milli(0)
    }
}

/// The CustomResourceDefinition, as generated from the types above.
pub fn crd() -> CustomResourceDefinition {
    use schemars::generate::SchemaSettings;
    let mut crd = WatermarkPodAutoscaler::crd();
    // The same generator settings as kube-derive, but the schema is normalized while it is still JSON:
    // converting to `JSONSchemaProps` would drop the `x-wpa-required` markers.
    let generator = SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(kube::core::schema::StructuralSchemaRewriter)
        .with_transform(kube::core::schema::OptionalEnum)
        .with_transform(kube::core::schema::OptionalIntOrString)
        .into_generator();
    let mut value = generator.into_root_schema_for::<WatermarkPodAutoscaler>().to_value();
    normalize_schema(&mut value);
    atomic_selectors(&mut value);
    if let Some(obj) = value.as_object_mut() {
        obj.remove("title");
        obj.insert(
            "description".into(),
            "WatermarkPodAutoscaler scales a workload between the watermarks of its metrics.".into(),
        );
    }
    let schema: JSONSchemaProps =
        serde_json::from_value(value).expect("a normalized schema is valid JSONSchemaProps");
    crd.spec.names.list_kind = Some(format!("{KIND}List"));
    for version in &mut crd.spec.versions {
        if let Some(validation) = version.schema.as_mut() {
            validation.open_api_v3_schema = Some(schema.clone());
        }
    }
    crd
}

/// Label selectors are replaced whole by server-side apply, as upstream's CRD (controller-gen, from the
/// `+structType=atomic` of `metav1.LabelSelector`) declares: one manager owns a selector, and an apply that
/// drops a label drops it.
fn atomic_selectors(node: &mut serde_json::Value) {
    use serde_json::Value;
    match node {
        Value::Object(obj) => {
            if let Some(Value::Object(props)) = obj.get_mut("properties") {
                for (name, prop) in props.iter_mut() {
                    if name == "metricSelector"
                        && let Value::Object(selector) = prop
                    {
                        selector.insert("x-kubernetes-map-type".into(), "atomic".into());
                        if let Some(Value::Object(expressions)) =
                            selector.get_mut("properties").and_then(|p| p.get_mut("matchExpressions"))
                        {
                            expressions.insert("x-kubernetes-list-type".into(), "atomic".into());
                            if let Some(Value::Object(values)) = expressions
                                .get_mut("items")
                                .and_then(|i| i.get_mut("properties"))
                                .and_then(|p| p.get_mut("values"))
                            {
                                values.insert("x-kubernetes-list-type".into(), "atomic".into());
                            }
                        }
                    }
                }
            }
            obj.values_mut().for_each(atomic_selectors);
        }
        Value::Array(items) => items.iter_mut().for_each(atomic_selectors),
        _ => {}
    }
}

/// Brings the derived schema to what the API server should enforce, as controller-gen would write it:
/// no defaults (upstream's CRD has none; serde defaults only serve deserialization of partial objects),
/// explicit `required` lists (marked on fields with `x-wpa-required`), int-or-string quantities typed as
/// such, and integer bounds.
fn normalize_schema(node: &mut serde_json::Value) {
    use serde_json::Value;
    let Value::Object(obj) = node else {
        if let Value::Array(items) = node {
            items.iter_mut().for_each(normalize_schema);
        }
        return;
    };
    obj.remove("default");
    // Upstream declares nothing nullable: the API server prunes an explicit null (Helm's `minReplicas:
    // null`) instead of storing it.
    obj.remove("nullable");
    if obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        obj.insert("anyOf".into(), serde_json::json!([{"type": "integer"}, {"type": "string"}]));
    }
    for bound in ["minimum", "maximum"] {
        if let Some(v) = obj.get(bound).and_then(Value::as_f64).filter(|v| v.fract() == 0.0) {
            obj.insert(bound.into(), Value::from(v as i64));
        }
    }
    let mut required: Vec<String> = Vec::new();
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        for (name, prop) in props.iter_mut() {
            if let Some(p) = prop.as_object_mut()
                && p.remove("x-wpa-required") == Some(Value::Bool(true))
            {
                required.push(name.clone());
            }
        }
    }
    if !required.is_empty() {
        let list = obj.entry("required").or_insert_with(|| Value::Array(vec![]));
        if let Value::Array(list) = list {
            for r in required {
                if !list.iter().any(|v| v.as_str() == Some(r.as_str())) {
                    list.push(Value::String(r));
                }
            }
            list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        }
    }
    for (_, child) in obj.iter_mut() {
        normalize_schema(child);
    }
}

/// The CRD as the YAML document the project ships (`wpa crd`).
pub fn crd_yaml() -> String {
    let yaml = serde_yaml_ng::to_string(&crd()).expect("a CRD always serializes");
    format!("---\n{yaml}")
}
