//! The upstream-vector runner's door (`tests/upstream_vectors.rs`): what it drives besides the engine's
//! public surface, each a path of the product, so that the runner checks the product and nothing is `pub`
//! for its sake alone. Not an API: hidden from the docs, and free to change with the runner.

use kube::api::DynamicObject;
use prometheus_client::registry::Registry;

use crate::{
    api::WatermarkPodAutoscaler,
    engine::{Decision, MonitorObservation, Outcome},
    reconciler::{exporter::Exporter, inputs},
};

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
