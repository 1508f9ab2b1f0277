//! The plan of a pass (docs/semantics.md §6.2 steps 6–10, §8, our decision 1): the effective spec is built in
//! memory and validated as upstream validates a defaulted spec; what the pass reads follows from it.

use std::collections::BTreeMap;

use super::*;
use crate::api::{annotations, quantity::Quantity};

fn wpa(spec: serde_json::Value) -> WatermarkPodAutoscaler {
    let spec: WatermarkPodAutoscalerSpec = serde_json::from_value(spec).expect("a spec");
    let mut w = WatermarkPodAutoscaler::new("web", spec);
    w.metadata.namespace = Some("prod".into());
    w
}

/// A valid WPA without any of the defaulted fields, with one External metric (high watermark only).
fn minimal() -> WatermarkPodAutoscaler {
    wpa(serde_json::json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "maxReplicas": 10,
        "metrics": [{"type": "External", "external": {
            "metricName": "qps", "metricSelector": {"matchLabels": {"app": "web"}}, "highWatermark": "100"}}]
    }))
}

fn with_annotation(mut w: WatermarkPodAutoscaler, value: &str) -> WatermarkPodAutoscaler {
    w.metadata.annotations =
        Some(BTreeMap::from([(annotations::LIFECYCLE_CONTROL.to_string(), value.to_string())]));
    w
}

#[test]
fn defaults_are_applied_to_the_plans_spec_and_never_to_the_stored_one() {
    // Our decision 1 (defaults in memory only), with upstream's defaults (§2.1).
    let w = minimal();
    let plan = Plan::new(&w);
    assert_eq!(plan.spec.min_replicas, Some(1));
    assert_eq!(plan.spec.tolerance.as_ref().map(Quantity::milli), Some(100));
    assert_eq!(plan.spec.downscale_forbidden_window_seconds, Some(300));
    assert_eq!(w.spec.min_replicas, None);
    assert_eq!(w.spec.tolerance, None);
}

#[test]
fn a_missing_watermark_is_filled_from_the_other_in_the_plan_only() {
    // §2.2 fillMissingWatermark, in memory (§6.2 step 10).
    let w = minimal();
    let plan = Plan::new(&w);
    let planned = plan.spec.metrics.as_ref().and_then(|m| m[0].external.as_ref()).expect("the metric");
    assert_eq!(planned.low_watermark.as_ref().map(Quantity::milli), Some(100_000));
    let stored = w.spec.metrics.as_ref().and_then(|m| m[0].external.as_ref()).expect("the metric");
    assert_eq!(stored.low_watermark, None);
}

#[test]
fn a_defaulted_spec_with_both_watermarks_is_used_as_stored() {
    // Nothing to fill in: the plan borrows the WPA's spec instead of copying it.
    let mut w = minimal();
    w.spec = validation::with_defaults(&w.spec);
    if let Some(e) = w.spec.metrics.as_mut().and_then(|m| m[0].external.as_mut()) {
        e.low_watermark = Some(Quantity::from_units(50));
    }
    let plan = Plan::new(&w);
    assert!(matches!(plan.spec, Cow::Borrowed(_)));
}

#[test]
fn validation_sees_the_defaulted_spec() {
    // §8: defaulting comes before CheckWPAValidity, so an unset minReplicas is 1, not "missing".
    let w = minimal();
    let plan = Plan::new(&w);
    assert_eq!(plan.invalid, None);
    assert!(plan.reads_target());
}

#[test]
fn an_invalid_spec_reads_nothing_not_even_the_monitor() {
    // §6.2 step 7 comes before the lifecycle gate (step 9): the pass stops with the first failing rule.
    let mut w = with_annotation(minimal(), "true");
    w.spec.min_replicas = Some(12);
    let plan = Plan::new(&w);
    assert_eq!(
        plan.invalid.as_deref(),
        Some(
            "watermark pod autoscaler requires the minimum number of replicas to be configured and inferior to the maximum"
        )
    );
    assert!(!plan.reads_target());
    assert!(!plan.reads_monitor());
}

#[test]
fn a_valid_wpa_with_lifecycle_control_reads_the_monitor_and_the_target() {
    let plan_wpa = with_annotation(minimal(), "True");
    let plan = Plan::new(&plan_wpa);
    assert_eq!(plan.lifecycle, Lifecycle::Monitor);
    assert!(plan.reads_monitor() && plan.reads_target());
}

#[test]
fn a_misconfigured_lifecycle_annotation_proceeds_without_reading_the_monitor() {
    // §6.2 step 8: the feature counts as disabled.
    let w = with_annotation(minimal(), "yes");
    let plan = Plan::new(&w);
    assert!(matches!(plan.lifecycle, Lifecycle::Misconfigured(_)));
    assert!(!plan.reads_monitor());
    assert!(plan.reads_target());
}

#[test]
fn the_metrics_to_read_follow_the_spec_order_with_none_for_a_metric_without_its_source() {
    // §6.4: a metric whose type names a missing source is skipped (its status slot stays empty).
    let w = wpa(serde_json::json!({
        "scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 10,
        "metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "highWatermark": "1"}},
            {"type": "External"},
            {"type": "External", "external": {"metricName": "qps", "highWatermark": "1"}}
        ]
    }));
    let plan = Plan::new(&w);
    let names: Vec<Option<&str>> = plan.metrics().map(|m| m.map(|s| s.name())).collect();
    assert_eq!(names, [Some("cpu"), None, Some("qps")]);
}
