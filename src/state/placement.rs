//! The scheduler extender's own caches: the controller of each ReplicaSet (a pod's owner chain) and every
//! Node's state. The pods and targets it also reads are [`super::caches`]; the WPAs, [`super::target_index`].

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Node};
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::{
    store::{Synced, Table, Watched},
    watch::{Namespaces, drive, events},
};

/// The controller of a ReplicaSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) kind: String,
    pub(crate) name: String,
}

/// A `NoSchedule` or `NoExecute` taint (the policy ignores `PreferNoSchedule`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Taint {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) effect: String,
}

/// What the extender's placement policy needs of a Node. [`NodeState::from`] a `k8s_openapi` Node fills it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeState {
    /// The `Ready` condition is `True`.
    pub(crate) ready: bool,
    /// `spec.unschedulable` (cordoned).
    pub(crate) unschedulable: bool,
    pub(crate) taints: Vec<Taint>,
    /// Read for the zone and to match the pod's `nodeSelector`.
    pub(crate) labels: BTreeMap<String, String>,
}

impl From<&k8s_openapi::api::core::v1::Node> for NodeState {
    fn from(node: &k8s_openapi::api::core::v1::Node) -> NodeState {
        let spec = node.spec.as_ref();
        NodeState {
            ready: node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == "True"),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            taints: spec
                .and_then(|s| s.taints.as_ref())
                .into_iter()
                .flatten()
                .filter(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute"))
                .map(|t| Taint {
                    key: t.key.clone(),
                    value: t.value.clone().unwrap_or_default(),
                    effect: t.effect.clone(),
                })
                .collect(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
        }
    }
}

/// `namespace/name` of each ReplicaSet → its controller (`ownerReferences[controller=true]`).
#[derive(Debug, Default)]
pub(crate) struct Owners(HashMap<(String, String), Option<Owner>>);

impl Table<ReplicaSet> for Owners {
    fn upsert(&mut self, rs: &ReplicaSet) {
        let controller = rs
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
            .map(|o| Owner { kind: o.kind.clone(), name: o.name.clone() });
        self.0.insert((rs.namespace().unwrap_or_default(), rs.name_any()), controller);
    }

    fn remove(&mut self, rs: &ReplicaSet) {
        self.0.remove(&(rs.namespace().unwrap_or_default(), rs.name_any()));
    }
}

impl Owners {
    /// The controller of a ReplicaSet: `None` when it is not cached or has none.
    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<Owner> {
        self.0.get(&(namespace.to_string(), name.to_string())).cloned().flatten()
    }
}

/// Every Node's state, by name.
#[derive(Debug, Default)]
pub(crate) struct Nodes(HashMap<String, NodeState>);

impl Table<Node> for Nodes {
    fn upsert(&mut self, node: &Node) {
        self.0.insert(node.name_any(), NodeState::from(node));
    }

    fn remove(&mut self, node: &Node) {
        self.0.remove(&node.name_any());
    }
}

impl Nodes {
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &NodeState)> {
        self.0.iter().map(|(name, node)| (name.as_str(), node))
    }
}

/// The extender's caches, kept by watches running until `stop`.
#[derive(Debug, Default)]
pub(crate) struct PlacementCaches {
    pub(crate) replica_sets: Watched<Owners>,
    pub(crate) nodes: Watched<Nodes>,
}

impl PlacementCaches {
    /// Watches the ReplicaSets of `namespaces` and every Node, until `stop`.
    pub(crate) fn start(
        client: &Client,
        namespaces: &Namespaces,
        stop: CancellationToken,
    ) -> Arc<PlacementCaches> {
        let caches = Arc::new(PlacementCaches::default());
        let c = caches.clone();
        let replica_sets = events(namespaces.api::<ReplicaSet>(client), namespaces);
        drive("ReplicaSet", replica_sets, stop.clone(), move |e| c.replica_sets.apply(&e));
        let c = caches.clone();
        let nodes = events(Api::<Node>::all(client.clone()), &Namespaces::default());
        drive("Node", nodes, stop, move |e| c.nodes.apply(&e));
        caches
    }

    /// Caches holding fixed lists, as a first watch list fills them (benchmarks).
    #[cfg(feature = "dev-tools")]
    pub(crate) fn from_lists(replica_sets: Vec<ReplicaSet>, nodes: Vec<Node>) -> Arc<PlacementCaches> {
        let caches = PlacementCaches::default();
        caches.replica_sets.fill(replica_sets);
        caches.nodes.fill(nodes);
        Arc::new(caches)
    }

    pub(crate) fn synced(&self) -> bool {
        self.replica_sets.synced().is_synced() && self.nodes.synced().is_synced()
    }

    /// The first-list signals of its two watches.
    pub(crate) fn signals(&self) -> [Synced; 2] {
        [self.replica_sets.synced().clone(), self.nodes.synced().clone()]
    }
}
