//! The upstream-vector runner's door (`tests/upstream_vectors.rs`): what it drives besides the engine's
//! public surface, each a path of the product, so that the runner checks the product and nothing is `pub`
//! for its sake alone. Not an API: hidden from the docs, and free to change with the runner.

use kube::api::DynamicObject;
use prometheus_client::registry::Registry;

use crate::{
    api::WatermarkPodAutoscaler,
    engine::{Decision, MetricOutcome, MonitorObservation, Outcome, ScaleInfo},
    reconciler::{exporter::Exporter, inputs},
};

pub use crate::{
    engine::{
        fill_missing_watermark,
        metrics::{combine, valid_metric_message},
    },
    reconciler::recommender_client::{Reach, RecommenderClient},
};

/// The replica calculator's three proposals (upstream's `replica_calculator.go`).
pub mod calc {
    pub use crate::engine::calc::{CalcSpec, MetricResult, external, recommender, resource};
}

/// Whether a proposal may be applied now (upstream's `shouldScale`).
pub mod gate {
    pub use crate::engine::gate::{Blocked, GateInput, WatermarkCondition, should_scale};
}

/// The rate limits and the min/max clamp (upstream's `normalizeDesiredReplicas`).
pub mod limits {
    pub use crate::engine::limits::{Bounds, normalize, scale_down_limit, scale_up_limit};
}

/// Pod readiness and ownership (upstream's `getReadyPodsCount`, `groupPods`, ...).
pub mod pods {
    pub use crate::engine::pods::{
        count_ready_pods, group_pods, owner_matches, pod_condition_index, ready_pods_count,
        remove_metrics_for_pods, should_skip_owner_check,
    };
}

/// The recommender protocol (upstream's `recommender_client.go`).
pub mod recommender {
    pub use crate::engine::recommender::{
        RecommendationReply, RecommenderQuery, build_request, check_recommendation, display_name, query,
        recommendation_from_reply,
    };
}

/// Upstream's `checkWPAValidity` and its defaulting check.
pub mod validation {
    pub use crate::engine::validation::{check_wpa_validity, is_defaulted, logs_attributes};
}

/// `reconcileWPA` from a successful scale GET on, with the calculator's results given (the spec used as it
/// is: the runner defaults it as the reconciler does).
pub fn decide_from_results<'a>(
    wpa: &'a WatermarkPodAutoscaler,
    scale: &ScaleInfo,
    outcomes: Vec<MetricOutcome>,
    now: jiff::Timestamp,
) -> Decision<'a> {
    crate::engine::decide_from_results(wpa, scale, outcomes, now)
}

/// The exposition `wpa serve` would serve after this pass (the reconciler's exporter, from a fresh
/// registry), with `labels_as_tags` as `--labels-as-tags`.
pub fn exposition(
    wpa: &WatermarkPodAutoscaler,
    decision: &Decision<'_>,
    outcome: &Outcome,
    labels_as_tags: Vec<String>,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    let exporter = Exporter::new(&mut registry, labels_as_tags);
    exporter.record(wpa, decision, outcome);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// What the reconciler makes of a GET of the WPA's DatadogMonitor.
pub fn monitor_observation(got: Result<DynamicObject, kube::Error>) -> MonitorObservation {
    inputs::monitor_observation(got)
}
