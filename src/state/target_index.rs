//! Which autoscalers govern a workload, answered from memory, never with an API call per admission request.
//!
//! The index is keyed by target (namespace, kind, name) and kept current from the watch streams of
//! WatermarkPodAutoscalers and HorizontalPodAutoscalers, so a lookup costs one hash, not a scan of every
//! autoscaler in the cluster.

use std::{collections::HashMap, sync::Arc};

use jiff::Timestamp;
use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use kube::{ResourceExt, runtime::watcher::Event};

use super::{
    store::{self, Synced, Watched},
    wpa_feed::WpaSink,
};
use crate::api::WatermarkPodAutoscaler;

/// A WPA that targets a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Governing {
    pub(crate) name: String,
    pub(crate) min_replicas: i32,
    pub(crate) max_replicas: Option<i32>,
    pub(crate) dry_run: bool,
    /// For the scheduler extender: `minAvailableReplicaPercentage` (0 when unset) and the per-node cap
    /// annotation, as written.
    pub(crate) min_available_percentage: i32,
    pub(crate) max_per_node: Option<String>,
    /// `metadata.creationTimestamp`: which of two autoscalers of a target came first.
    pub(crate) created: Option<Timestamp>,
}

impl Governing {
    pub(crate) fn of(wpa: &WatermarkPodAutoscaler) -> Governing {
        Governing {
            created: wpa.metadata.creation_timestamp.as_ref().map(|t| t.0),
            name: wpa.name_any(),
            // Upstream's default when unset.
            min_replicas: wpa.spec.min_replicas.unwrap_or(1),
            max_replicas: wpa.spec.max_replicas,
            dry_run: wpa.spec.dry_run.unwrap_or(false),
            min_available_percentage: wpa.spec.min_available_replica_percentage.unwrap_or(0),
            max_per_node: wpa.annotations().get(crate::api::annotations::SCHEDULER_MAX_PER_NODE).cloned(),
        }
    }
}

/// (namespace, kind, name) of a scale target.
type Target = (String, String, String);
/// (namespace, name) of an autoscaler.
type Key = (String, String);

/// The autoscalers of one target name, sorted by (target kind, autoscaler name). Almost every target has
/// one: a vector grown one entry at a time holds it in its own size, where a `BTreeMap`'s first node has
/// room for eleven (~1.6 KiB per WPA, measured at 5,000 WPAs).
#[derive(Debug)]
struct ByKindAndName<V>(Vec<((String, String), V)>);

impl<V> Default for ByKindAndName<V> {
    fn default() -> Self {
        ByKindAndName(Vec::new())
    }
}

impl<V> ByKindAndName<V> {
    fn position(&self, key: &(String, String)) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.cmp(key))
    }

    fn insert(&mut self, key: (String, String), value: V) {
        match self.position(&key) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => {
                self.0.reserve_exact(1);
                self.0.insert(i, (key, value));
            }
        }
    }

    fn remove(&mut self, key: &(String, String)) {
        if let Ok(i) = self.position(key) {
            self.0.remove(i);
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &((String, String), V)> {
        self.0.iter()
    }
}

/// One autoscaler kind, indexed both ways: by object (to handle updates and deletions) and by target (to
/// answer). Targets are nested namespace → name so that a lookup borrows `&str`s and allocates nothing.
#[derive(Debug)]
struct Table<V> {
    by_object: HashMap<Key, Target>,
    /// namespace → target name → (target kind, autoscaler name) → value.
    by_target: HashMap<String, HashMap<String, ByKindAndName<V>>>,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table { by_object: HashMap::new(), by_target: HashMap::new() }
    }
}

impl<V> Table<V> {
    fn remove_key(&mut self, key: &Key) {
        let Some((ns, kind, name)) = self.by_object.remove(key) else { return };
        if let Some(names) = self.by_target.get_mut(&ns) {
            if let Some(entries) = names.get_mut(&name) {
                entries.remove(&(kind, key.1.clone()));
                if entries.is_empty() {
                    names.remove(&name);
                }
            }
            if names.is_empty() {
                self.by_target.remove(&ns);
            }
        }
    }

    fn insert_entry(&mut self, key: Key, target: Option<Target>, value: V) {
        self.remove_key(&key);
        if let Some((ns, kind, name)) = target {
            let entries = self.by_target.entry(ns.clone()).or_default().entry(name.clone()).or_default();
            entries.insert((kind.clone(), key.1.clone()), value);
            self.by_object.insert(key, (ns, kind, name));
        }
    }

    /// The values for a target, ordered by autoscaler name.
    fn get<'a>(&'a self, namespace: &str, kind: &'a str, name: &str) -> impl Iterator<Item = &'a V> {
        self.by_target
            .get(namespace)
            .and_then(|names| names.get(name))
            .into_iter()
            .flat_map(move |entries| entries.iter().filter(move |((k, _), _)| k == kind).map(|(_, v)| v))
    }
}

fn wpa_entry(w: &WatermarkPodAutoscaler) -> (Key, Option<Target>, Governing) {
    let ns = w.namespace().unwrap_or_default();
    // A WPA being deleted no longer governs anything.
    let target =
        w.metadata.deletion_timestamp.is_none().then(|| {
            (ns.clone(), w.spec.scale_target_ref.kind.clone(), w.spec.scale_target_ref.name.clone())
        });
    ((ns, w.name_any()), target, Governing::of(w))
}

/// An HPA that targets a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hpa {
    pub(crate) name: String,
    pub(crate) created: Option<Timestamp>,
}

fn hpa_entry(h: &HorizontalPodAutoscaler) -> (Key, Option<Target>, Hpa) {
    let ns = h.namespace().unwrap_or_default();
    let target = h
        .spec
        .as_ref()
        .map(|s| (ns.clone(), s.scale_target_ref.kind.clone(), s.scale_target_ref.name.clone()));
    let hpa = Hpa { name: h.name_any(), created: h.metadata.creation_timestamp.as_ref().map(|t| t.0) };
    ((ns, h.name_any()), target, hpa)
}

/// The autoscalers of every workload, by target.
#[derive(Debug, Default)]
pub struct TargetIndex {
    wpas: Watched<Table<Governing>>,
    hpas: Watched<Table<Hpa>>,
}

impl store::Table<WatermarkPodAutoscaler> for Table<Governing> {
    fn upsert(&mut self, w: &WatermarkPodAutoscaler) {
        let (key, target, value) = wpa_entry(w);
        self.insert_entry(key, target, value);
    }

    fn remove(&mut self, w: &WatermarkPodAutoscaler) {
        self.remove_key(&(w.namespace().unwrap_or_default(), w.name_any()));
    }
}

impl store::Table<HorizontalPodAutoscaler> for Table<Hpa> {
    fn upsert(&mut self, h: &HorizontalPodAutoscaler) {
        let (key, target, value) = hpa_entry(h);
        self.insert_entry(key, target, value);
    }

    fn remove(&mut self, h: &HorizontalPodAutoscaler) {
        self.remove_key(&(h.namespace().unwrap_or_default(), h.name_any()));
    }
}

impl TargetIndex {
    pub fn new() -> Arc<TargetIndex> {
        Arc::new(TargetIndex::default())
    }

    /// An index of a fixed set of autoscalers (tests, benchmarks).
    pub fn from_objects(
        wpas: &[WatermarkPodAutoscaler],
        hpas: &[HorizontalPodAutoscaler],
    ) -> Arc<TargetIndex> {
        let index = TargetIndex::default();
        index.wpas.fill(wpas.iter().cloned());
        index.hpas.fill(hpas.iter().cloned());
        Arc::new(index)
    }

    pub(crate) fn apply_wpa(&self, event: &Event<WatermarkPodAutoscaler>) {
        self.wpas.apply(event);
    }

    pub(crate) fn apply_hpa(&self, event: &Event<HorizontalPodAutoscaler>) {
        self.hpas.apply(event);
    }

    /// Whether both watches have listed once.
    pub(crate) fn synced(&self) -> bool {
        self.wpas.synced().is_synced() && self.hpas.synced().is_synced()
    }

    /// The first-list signals of its two watches.
    pub(crate) fn signals(&self) -> [Synced; 2] {
        [self.wpas.synced().clone(), self.hpas.synced().clone()]
    }

    /// The WPAs that target `kind`/`name` in `namespace`, by name.
    pub(crate) fn wpas_for(&self, namespace: &str, kind: &str, name: &str) -> Vec<Governing> {
        self.wpas.read().get(namespace, kind, name).cloned().collect()
    }

    /// The HPAs that target `kind`/`name` in `namespace`, by name.
    pub(crate) fn hpas_for(&self, namespace: &str, kind: &str, name: &str) -> Vec<Hpa> {
        self.hpas.read().get(namespace, kind, name).cloned().collect()
    }
}

impl WpaSink for TargetIndex {
    fn apply(&self, event: &Event<WatermarkPodAutoscaler>) {
        self.apply_wpa(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wpa(name: &str, target: &str) -> WatermarkPodAutoscaler {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "namespace": "ns"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": target}, "minReplicas": 2, "maxReplicas": 5}}))
        .expect("a WPA")
    }

    #[test]
    fn follows_updates_deletions_and_relists() {
        let index = TargetIndex::default();
        index.apply_wpa(&Event::Apply(wpa("a", "web")));
        index.apply_wpa(&Event::Apply(wpa("b", "web")));
        assert_eq!(
            index.wpas_for("ns", "Deployment", "web").iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        // Retargeting moves the entry.
        index.apply_wpa(&Event::Apply(wpa("b", "api")));
        assert_eq!(index.wpas_for("ns", "Deployment", "web").len(), 1);
        assert_eq!(index.wpas_for("ns", "Deployment", "api")[0].max_replicas, Some(5));
        index.apply_wpa(&Event::Delete(wpa("a", "web")));
        assert!(index.wpas_for("ns", "Deployment", "web").is_empty());
        assert!(!index.synced());
        // A relist replaces everything once complete.
        index.apply_wpa(&Event::Init);
        index.apply_wpa(&Event::InitApply(wpa("c", "web")));
        assert_eq!(
            index.wpas_for("ns", "Deployment", "api").len(),
            1,
            "the old view serves until the list completes"
        );
        index.apply_wpa(&Event::InitDone);
        assert!(index.wpas_for("ns", "Deployment", "api").is_empty());
        assert_eq!(index.wpas_for("ns", "Deployment", "web")[0].name, "c");
        assert!(!index.wpas_for("other", "Deployment", "web").iter().any(|_| true));
    }

    #[test]
    fn the_autoscalers_of_one_target_come_by_name_whatever_the_order_they_arrive_in() {
        let index = TargetIndex::default();
        for name in ["c", "a", "b"] {
            index.apply_wpa(&Event::Apply(wpa(name, "web")));
        }
        let mut changed = wpa("a", "web");
        changed.spec.max_replicas = Some(9);
        index.apply_wpa(&Event::Apply(changed));
        let found = index.wpas_for("ns", "Deployment", "web");
        assert_eq!(found.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(found[0].max_replicas, Some(9), "an update replaces the entry, it does not add one");
        assert!(index.wpas_for("ns", "StatefulSet", "web").is_empty(), "kinds are told apart");
        index.apply_wpa(&Event::Delete(wpa("b", "web")));
        assert_eq!(index.wpas_for("ns", "Deployment", "web").len(), 2);
    }
}
