//! Which autoscalers govern a workload, answered from memory (kube-rs reflector caches), never with an API
//! call per admission request.

use std::sync::Arc;

use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use kube::{ResourceExt, runtime::reflector::Store};

use crate::api::WatermarkPodAutoscaler;

/// A WPA that targets a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Governing {
    pub name: String,
    pub min_replicas: i32,
    pub max_replicas: Option<i32>,
    pub dry_run: bool,
}

impl Governing {
    pub fn of(wpa: &WatermarkPodAutoscaler) -> Governing {
        Governing {
            name: wpa.name_any(),
            // Upstream's default when unset.
            min_replicas: wpa.spec.min_replicas.unwrap_or(1),
            max_replicas: wpa.spec.max_replicas,
            dry_run: wpa.spec.dry_run.unwrap_or(false),
        }
    }
}

/// Looks up the autoscalers of a workload (`kind`/`name` in `namespace`).
pub trait AutoscalerIndex: Send + Sync + 'static {
    fn wpas_for(&self, namespace: &str, kind: &str, name: &str) -> Vec<Governing>;
    fn hpas_for(&self, namespace: &str, kind: &str, name: &str) -> Vec<String>;
}

fn wpa_matches(w: &WatermarkPodAutoscaler, namespace: &str, kind: &str, name: &str) -> bool {
    w.namespace().as_deref() == Some(namespace)
        && w.spec.scale_target_ref.kind == kind
        && w.spec.scale_target_ref.name == name
        && w.metadata.deletion_timestamp.is_none()
}

fn hpa_matches(h: &HorizontalPodAutoscaler, namespace: &str, kind: &str, name: &str) -> bool {
    h.namespace().as_deref() == Some(namespace)
        && h.spec.as_ref().is_some_and(|s| s.scale_target_ref.kind == kind && s.scale_target_ref.name == name)
}

fn sorted<T, K: Ord>(mut v: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    v.sort_by_key(key);
    v
}

/// The reflector-backed index `wpa serve` uses.
#[derive(Clone)]
pub struct StoreIndex {
    pub wpas: Store<WatermarkPodAutoscaler>,
    pub hpas: Store<HorizontalPodAutoscaler>,
}

impl AutoscalerIndex for StoreIndex {
    fn wpas_for(&self, namespace: &str, kind: &str, name: &str) -> Vec<Governing> {
        let found = self
            .wpas
            .state()
            .iter()
            .filter(|w| wpa_matches(w, namespace, kind, name))
            .map(|w| Governing::of(w))
            .collect();
        sorted(found, |g: &Governing| g.name.clone())
    }

    fn hpas_for(&self, namespace: &str, kind: &str, name: &str) -> Vec<String> {
        let found = self
            .hpas
            .state()
            .iter()
            .filter(|h| hpa_matches(h, namespace, kind, name))
            .map(|h| h.name_any())
            .collect();
        sorted(found, |n: &String| n.clone())
    }
}

/// A fixed set of autoscalers (tests, and `wpa serve --no-reconciler` without API access).
#[derive(Clone, Default)]
pub struct StaticIndex {
    pub wpas: Vec<Arc<WatermarkPodAutoscaler>>,
    pub hpas: Vec<Arc<HorizontalPodAutoscaler>>,
}

impl AutoscalerIndex for StaticIndex {
    fn wpas_for(&self, namespace: &str, kind: &str, name: &str) -> Vec<Governing> {
        let found = self
            .wpas
            .iter()
            .filter(|w| wpa_matches(w, namespace, kind, name))
            .map(|w| Governing::of(w))
            .collect();
        sorted(found, |g: &Governing| g.name.clone())
    }

    fn hpas_for(&self, namespace: &str, kind: &str, name: &str) -> Vec<String> {
        let found = self
            .hpas
            .iter()
            .filter(|h| hpa_matches(h, namespace, kind, name))
            .map(|h| h.name_any())
            .collect();
        sorted(found, |n: &String| n.clone())
    }
}
