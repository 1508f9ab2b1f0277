//! Who governs a pod: the workload its controller chain leads to, and the WPA of that workload, with the
//! failure budget it gives.

use super::{MAX_PER_NODE_ANNOTATION, NoOpinion, Target, View, failure_budget};
use crate::extender::wire::Pod;

/// The workloads a pod's controller chain leads to, most specific scale target first.
fn owner_chain<V: View + ?Sized>(view: &V, pod: &Pod) -> Vec<Target> {
    let namespace = &pod.metadata.namespace;
    let Some(controller) = pod.metadata.owner_references.iter().find(|o| o.controller) else {
        return Vec::new();
    };
    let target = |kind: &str, name: &str| Target {
        namespace: namespace.clone(),
        kind: kind.to_owned(),
        name: name.to_owned(),
    };
    match controller.kind.as_str() {
        "StatefulSet" => vec![target("StatefulSet", &controller.name)],
        "ReplicaSet" => {
            let rs = &controller.name;
            let deployment = match view.replica_set_owner(namespace, rs) {
                Some(owner) => (owner.kind == "Deployment").then_some(owner.name),
                None => pod
                    .metadata
                    .labels
                    .get("pod-template-hash")
                    .and_then(|hash| rs.strip_suffix(hash.as_str()))
                    .and_then(|prefix| prefix.strip_suffix('-'))
                    .filter(|name| !name.is_empty())
                    .map(str::to_owned),
            };
            let mut chain: Vec<Target> = deployment.iter().map(|d| target("Deployment", d)).collect();
            chain.push(target("ReplicaSet", rs));
            chain
        }
        _ => Vec::new(),
    }
}

/// A pod under a WPA budget.
#[derive(Clone, Debug)]
pub(super) struct Governed {
    pub(super) target: Target,
    pub(super) autoscaler: String,
    pub(super) replicas: i64,
    pub(super) percent: i64,
    pub(super) budget: i64,
    pub(super) cap: Option<i64>,
}

pub(super) fn govern<V: View + ?Sized>(view: &V, pod: &Pod) -> Result<Governed, NoOpinion> {
    let (target, wpa) = owner_chain(view, pod)
        .into_iter()
        .find_map(|t| view.autoscaler(&t).map(|a| (t, a)))
        .ok_or(NoOpinion::NotGoverned)?;
    let replicas = i64::from(wpa.replicas);
    let percent = i64::from(wpa.min_available_percentage).clamp(0, 100);
    // A value that is not a positive integer leaves the cap off rather than capping at nonsense.
    let cap = wpa
        .annotations
        .get(MAX_PER_NODE_ANNOTATION)
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|c| *c > 0);
    if replicas <= 0 || (percent == 0 && cap.is_none()) {
        return Err(NoOpinion::NoBudget);
    }
    Ok(Governed {
        target,
        autoscaler: wpa.name,
        replicas,
        percent,
        budget: failure_budget(replicas, percent),
        cap,
    })
}
