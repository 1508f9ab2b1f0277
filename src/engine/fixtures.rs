//! What the unit tests of the engine and of the commands build again and again, named once: a WPA with one
//! External metric, its target's `/scale`, the target's pods. A change of one of these types is then one
//! edit here, not one per test module.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::{
    api::{WatermarkPodAutoscaler, WatermarkPodAutoscalerSpec},
    engine::{ConditionStatus, OwnerKind, OwnerRef, PodInfo, PodPhase, ReadyCondition, ScaleInfo},
};

/// The spec of a WPA on Deployment `target`: `min_replicas`..=10 replicas, one External metric `qps`
/// (selector `app=target`, watermarks 50..100), with `extra`'s fields set over it.
pub(crate) fn external_spec(target: &str, min_replicas: i32, extra: Value) -> WatermarkPodAutoscalerSpec {
    let mut spec = json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "minReplicas": min_replicas, "maxReplicas": 10,
        "metrics": [{"type": "External", "external": {"metricName": "qps",
            "metricSelector": {"matchLabels": {"app": target}}, "highWatermark": "100", "lowWatermark": "50"}}]
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    serde_json::from_value(spec).expect("a spec")
}

/// WPA `name` in `namespace` with `spec`, no status.
pub(crate) fn wpa(namespace: &str, name: &str, spec: WatermarkPodAutoscalerSpec) -> WatermarkPodAutoscaler {
    let mut w = WatermarkPodAutoscaler::new(name, spec);
    w.metadata.namespace = Some(namespace.into());
    w
}

/// The `/scale` of Deployment `target` in `namespace` (selector `app=target`).
pub(crate) fn scale(namespace: &str, target: &str, spec_replicas: i32, status_replicas: i32) -> ScaleInfo {
    ScaleInfo {
        name: target.into(),
        namespace: namespace.into(),
        spec_replicas,
        status_replicas,
        selector: format!("app={target}"),
    }
}

/// Pod `name` of ReplicaSet `replica_set`, started 700 s before `now`, its Ready condition `ready` since 600 s
/// before `now`.
pub(crate) fn pod(
    name: &str,
    phase: PodPhase,
    ready: ConditionStatus,
    replica_set: &str,
    now: Timestamp,
) -> PodInfo {
    PodInfo {
        name: name.into(),
        phase,
        ready: Some(ReadyCondition { status: ready, last_transition: Some(now - Duration::from_secs(600)) }),
        start_time: Some(now - Duration::from_secs(700)),
        deleting: false,
        owners: vec![OwnerRef { kind: OwnerKind::ReplicaSet, name: replica_set.into() }],
    }
}

/// `n` Running pods of ReplicaSet `replica_set` (`{replica_set}-0`, `-1`, ...), as [`pod`] makes them; the
/// first `ready` of them Ready, the others not.
pub(crate) fn running_pods(replica_set: &str, n: usize, ready: usize, now: Timestamp) -> Vec<PodInfo> {
    (0..n)
        .map(|i| {
            let status = if i < ready { ConditionStatus::True } else { ConditionStatus::False };
            pod(&format!("{replica_set}-{i}"), PodPhase::Running, status, replica_set, now)
        })
        .collect()
}
