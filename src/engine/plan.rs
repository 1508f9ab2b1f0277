//! What one pass over a WPA works with, computed once: the effective spec (defaults and a missing watermark
//! filled in, in memory), whether upstream's `CheckWPAValidity` refuses it, whether lifecycle control gates
//! it, and so what the pass must read. The reconciler's gatherer reads what the plan says, and
//! [`super::decide`] decides from the same plan: no step is repeated, and the two cannot disagree.

use std::borrow::Cow;

use kube::ResourceExt;

use super::{
    effective_spec,
    fallback::{Fallback, FallbackError},
    lifecycle, validation,
};
use crate::api::{MetricSource, RecommenderSpec, WatermarkPodAutoscaler, WatermarkPodAutoscalerSpec};

/// How lifecycle control applies to a WPA (`wpa.datadoghq.com/lifecycle-control.enabled`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    Off,
    /// The DatadogMonitor named like the WPA gates it.
    Monitor,
    /// The annotation is not a Go boolean: reported, and the WPA proceeds as if off (upstream).
    Misconfigured(String),
}

/// The plan of one pass.
#[derive(Clone, Debug)]
pub struct Plan<'a> {
    pub wpa: &'a WatermarkPodAutoscaler,
    pub namespace: String,
    /// The spec as the pass uses it.
    pub spec: Cow<'a, WatermarkPodAutoscalerSpec>,
    /// Upstream's validation message when the spec is invalid: the pass reads nothing and stops.
    pub invalid: Option<String>,
    pub lifecycle: Lifecycle,
    /// The fallback of the annotations, or why they cannot be read (the fallback is then off).
    pub fallback: Result<Option<Fallback>, FallbackError>,
}

impl<'a> Plan<'a> {
    pub fn new(wpa: &'a WatermarkPodAutoscaler) -> Plan<'a> {
        let namespace = wpa.namespace().unwrap_or_default();
        // Difference "defaults in memory": the stored spec is never rewritten. Filling a missing watermark
        // first does not change what validation accepts (it only copies a watermark that is set).
        let spec = effective_spec(&wpa.spec);
        let invalid = validation::check_wpa_validity(&spec, &namespace, &wpa.name_any()).err();
        let lifecycle = match lifecycle::enabled(wpa) {
            Ok(false) => Lifecycle::Off,
            Ok(true) => Lifecycle::Monitor,
            Err(e) => Lifecycle::Misconfigured(e),
        };
        let fallback = Fallback::from_annotations(wpa.metadata.annotations.as_ref());
        Plan { wpa, namespace, spec, invalid, lifecycle, fallback }
    }

    /// Whether the pass reads the WPA's DatadogMonitor first (and stops there unless it is OK).
    pub fn reads_monitor(&self) -> bool {
        self.invalid.is_none() && self.lifecycle == Lifecycle::Monitor
    }

    /// Whether the pass reads the target, its pods and the metrics (the monitor allowing).
    pub fn reads_target(&self) -> bool {
        self.invalid.is_none()
    }

    /// The recommender the pass asks instead of reading metrics.
    pub fn recommender(&self) -> Option<&RecommenderSpec> {
        self.spec.recommender.as_ref()
    }

    /// The metrics the pass reads, in the spec's order (`None`: a metric without a source, skipped).
    pub fn metrics(&self) -> impl Iterator<Item = Option<MetricSource<'_>>> {
        self.spec.metrics.iter().flatten().map(|m| m.source())
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
