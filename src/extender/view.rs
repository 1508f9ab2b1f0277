//! The extender's [`View`] over `wpa serve`'s cluster state: pods and targets, the WPAs by target, the
//! ReplicaSets' owners and the Nodes.

use std::sync::Arc;

use super::policy::{Autoscaler, MAX_PER_NODE_ANNOTATION, NodeState, Owner, Target, TargetPod, View};
use crate::{
    api::selector::Selector,
    state::{
        ClusterState,
        caches::{CachedScale, Caches},
        placement::PlacementCaches,
        target_index::TargetIndex,
    },
};

/// What the extender reads, all from memory.
pub(crate) struct ClusterView {
    pub(crate) caches: Arc<Caches>,
    pub(crate) index: Arc<TargetIndex>,
    pub(crate) placement: Arc<PlacementCaches>,
}

impl ClusterView {
    /// The view over `state`, if it holds what the extender reads (started with [`Needs::placement`]).
    ///
    /// [`Needs::placement`]: crate::state::Needs::placement
    pub(crate) fn of(state: &ClusterState) -> Option<ClusterView> {
        Some(ClusterView {
            caches: state.workloads.clone()?,
            index: state.autoscalers.clone(),
            placement: state.placement.clone()?,
        })
    }

    /// The cached `/scale` of a Deployment or StatefulSet target.
    fn scale(&self, target: &Target) -> Option<CachedScale> {
        self.caches.targets.get("apps", &target.kind, &target.namespace, &target.name).flatten()
    }
}

impl View for ClusterView {
    fn synced(&self) -> bool {
        self.caches.synced() && self.index.synced() && self.placement.synced()
    }

    fn replica_set_owner(&self, namespace: &str, name: &str) -> Option<Owner> {
        self.placement.replica_sets.read().get(namespace, name)
    }

    fn autoscaler(&self, target: &Target) -> Option<Autoscaler> {
        let wpa = self.index.wpas_for(&target.namespace, &target.kind, &target.name).into_iter().next()?;
        // R: the count WPA wrote to the target, which leads the pods it asks for.
        let replicas = self.scale(target)?.spec_replicas;
        Some(Autoscaler {
            name: wpa.name,
            replicas,
            min_available_percentage: wpa.min_available_percentage,
            annotations: wpa
                .max_per_node
                .into_iter()
                .map(|v| (MAX_PER_NODE_ANNOTATION.to_string(), v))
                .collect(),
        })
    }

    fn pods(&self, target: &Target) -> Vec<TargetPod> {
        let Some(selector) = self.scale(target).and_then(|s| Selector::parse(&s.selector).ok()) else {
            return Vec::new();
        };
        self.caches
            .pods
            .read()
            .placements(&target.namespace, &selector)
            .into_iter()
            .map(|p| TargetPod { uid: p.uid, node: p.node })
            .collect()
    }

    fn for_each_node(&self, visit: &mut dyn FnMut(&str, &NodeState)) {
        for (name, node) in self.placement.nodes.read().iter() {
            visit(name, node);
        }
    }
}
