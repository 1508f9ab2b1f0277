//! The extender's [`View`] over `wpa serve`'s watch caches: pods and targets (the reconciler's caches), the
//! WPAs by target (the webhook's index), and two caches of its own, ReplicaSet owners and Nodes.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Node};
use kube::{Api, Client, ResourceExt, runtime::watcher};
use tokio_util::sync::CancellationToken;

use super::policy::{Autoscaler, MAX_PER_NODE_ANNOTATION, NodeState, Owner, Target, TargetPod, View};
use crate::{
    api::selector::Selector,
    reconciler::caches::Caches,
    runtime::watch::{Namespaces, drive, events},
    webhook::TargetIndex,
};

/// A map fed by a watch, a re-list applied at once (as the reconciler's caches do).
struct Keyed<V> {
    entries: RwLock<HashMap<String, V>>,
    relist: Mutex<Option<HashMap<String, V>>>,
    synced: AtomicBool,
}

impl<V> Default for Keyed<V> {
    fn default() -> Self {
        Keyed { entries: RwLock::default(), relist: Mutex::default(), synced: AtomicBool::new(false) }
    }
}

impl<V> Keyed<V> {
    fn apply<K>(&self, event: watcher::Event<K>, key: impl Fn(&K) -> String, value: impl Fn(&K) -> V) {
        match event {
            watcher::Event::Init => {
                *self.relist.lock().unwrap_or_else(|p| p.into_inner()) = Some(HashMap::new())
            }
            watcher::Event::InitApply(o) => {
                let mut relist = self.relist.lock().unwrap_or_else(|p| p.into_inner());
                relist.get_or_insert_with(HashMap::new).insert(key(&o), value(&o));
            }
            watcher::Event::InitDone => {
                let fresh = self.relist.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_default();
                *self.entries.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                self.synced.store(true, Ordering::Release);
            }
            watcher::Event::Apply(o) => {
                self.entries.write().unwrap_or_else(|p| p.into_inner()).insert(key(&o), value(&o));
            }
            watcher::Event::Delete(o) => {
                self.entries.write().unwrap_or_else(|p| p.into_inner()).remove(&key(&o));
            }
        }
    }

    fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }
}

/// The extender's own caches.
#[derive(Default)]
pub(crate) struct PlacementCaches {
    /// `namespace/name` of a ReplicaSet → its controller.
    replica_sets: Keyed<Option<Owner>>,
    nodes: Keyed<NodeState>,
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
        drive(
            "ReplicaSet",
            events(namespaces.api::<ReplicaSet>(client), namespaces),
            stop.clone(),
            move |e| c.replica_sets.apply(e, replica_set_key, controller),
        );
        let c = caches.clone();
        let nodes = events(Api::<Node>::all(client.clone()), &Namespaces::default());
        drive("Node", nodes, stop, move |e| c.nodes.apply(e, node_key, node_state));
        caches
    }
}

#[cfg(feature = "dev-tools")]
impl PlacementCaches {
    /// Caches holding fixed lists, as a first watch list fills them (benchmarks).
    pub(crate) fn from_lists(replica_sets: Vec<ReplicaSet>, nodes: Vec<Node>) -> Arc<PlacementCaches> {
        use crate::runtime::watch::replay_list;
        let caches = PlacementCaches::default();
        replay_list(replica_sets, |e| caches.replica_sets.apply(e, replica_set_key, controller));
        replay_list(nodes, |e| caches.nodes.apply(e, node_key, node_state));
        Arc::new(caches)
    }
}

fn replica_set_key(rs: &ReplicaSet) -> String {
    format!("{}/{}", rs.namespace().unwrap_or_default(), rs.name_any())
}

fn node_key(node: &Node) -> String {
    node.name_any()
}

fn node_state(node: &Node) -> NodeState {
    NodeState::from(node)
}

fn controller(rs: &ReplicaSet) -> Option<Owner> {
    rs.owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| Owner { kind: o.kind.clone(), name: o.name.clone() })
}

/// What the extender reads, all from memory.
pub(crate) struct ClusterView {
    pub(crate) caches: Arc<Caches>,
    pub(crate) index: Arc<TargetIndex>,
    pub(crate) placement: Arc<PlacementCaches>,
}

impl ClusterView {
    /// The cached `/scale` of a Deployment or StatefulSet target.
    fn scale(&self, target: &Target) -> Option<crate::reconciler::caches::CachedScale> {
        self.caches.targets.get("apps", &target.kind, &target.namespace, &target.name).flatten()
    }
}

impl View for ClusterView {
    fn synced(&self) -> bool {
        self.caches.synced()
            && self.index.synced()
            && self.placement.replica_sets.synced()
            && self.placement.nodes.synced()
    }

    fn replica_set_owner(&self, namespace: &str, name: &str) -> Option<Owner> {
        let entries = self.placement.replica_sets.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.get(&format!("{namespace}/{name}")).cloned().flatten()
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
            .placements(&target.namespace, &selector)
            .into_iter()
            .map(|p| TargetPod { uid: p.uid, node: p.node })
            .collect()
    }

    fn for_each_node(&self, visit: &mut dyn FnMut(&str, &NodeState)) {
        let nodes = self.placement.nodes.entries.read().unwrap_or_else(|p| p.into_inner());
        for (name, node) in nodes.iter() {
            visit(name, node);
        }
    }
}
