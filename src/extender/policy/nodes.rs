//! What makes a node a safe home for a replica: Ready, schedulable, no taint the pod does not tolerate,
//! and the pod's nodeSelector.

use std::collections::BTreeMap;

use super::{NodeState, Taint};
use crate::extender::wire::Toleration;

fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect = t.effect.is_empty() || t.effect == taint.effect;
        let key = if t.key.is_empty() { t.operator == "Exists" } else { t.key == taint.key };
        let value = match t.operator.as_str() {
            "Exists" => true,
            // Equal is the default operator.
            _ => t.value == taint.value,
        };
        effect && key && value
    })
}

/// Why replicas on a node do not count as available. Kept as data: the text is written only for the
/// few answers that carry it (a filter's rejections), not for each of thousands of candidates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Unsafe {
    NotReady,
    Unschedulable,
    Taint(Taint),
}

impl std::fmt::Display for Unsafe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unsafe::NotReady => f.write_str("not Ready"),
            Unsafe::Unschedulable => f.write_str("unschedulable"),
            Unsafe::Taint(t) if t.value.is_empty() => write!(f, "taint {}:{} not tolerated", t.key, t.effect),
            Unsafe::Taint(t) => write!(f, "taint {}={}:{} not tolerated", t.key, t.value, t.effect),
        }
    }
}

/// `Ok` if replicas on this node count as available, else why not.
pub(super) fn safety(node: &NodeState, tolerations: &[Toleration]) -> Result<(), Unsafe> {
    if !node.ready {
        return Err(Unsafe::NotReady);
    }
    if node.unschedulable {
        return Err(Unsafe::Unschedulable);
    }
    match node.taints.iter().find(|t| !tolerates(tolerations, t)) {
        Some(t) => Err(Unsafe::Taint(t.clone())),
        None => Ok(()),
    }
}

/// What the node cache says of one node. Zones are numbered in the assessment's `zone_names`.
#[derive(Clone, Debug)]
pub(super) struct Facts {
    pub(super) safe: Result<(), Unsafe>,
    pub(super) zone: Option<usize>,
}

/// A node the scheduler has and our cache has not seen yet: new, so presumably healthy.
pub(super) const UNSEEN: Facts = Facts { safe: Ok(()), zone: None };

pub(super) fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}
