//! Which autoscalers govern a workload, answered from memory, never with an API call per admission request.
//!
//! The index is keyed by target (namespace, kind, name) and kept current from the watch streams of
//! WatermarkPodAutoscalers and HorizontalPodAutoscalers, so a lookup costs one hash, not a scan of every
//! autoscaler in the cluster.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use jiff::Timestamp;
use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use kube::{ResourceExt, runtime::watcher::Event};

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

/// The autoscalers of one target name, keyed by (target kind, autoscaler name).
type ByKindAndName<V> = BTreeMap<(String, String), V>;

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
    fn remove(&mut self, key: &Key) {
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

    fn upsert(&mut self, key: Key, target: Option<Target>, value: V) {
        self.remove(&key);
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
    wpas: RwLock<Table<Governing>>,
    hpas: RwLock<Table<Hpa>>,
    /// Objects listed since a watch (re)started, swapped in when the list completes.
    wpa_relist: RwLock<Option<Table<Governing>>>,
    hpa_relist: RwLock<Option<Table<Hpa>>>,
    wpas_synced: AtomicBool,
    hpas_synced: AtomicBool,
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Applies one watch event to a table (with relist buffering).
fn apply<K, V>(
    table: &RwLock<Table<V>>,
    relist: &RwLock<Option<Table<V>>>,
    synced: &AtomicBool,
    event: &Event<K>,
    entry: impl Fn(&K) -> (Key, Option<Target>, V),
) {
    match event {
        Event::Apply(obj) => {
            let (key, target, value) = entry(obj);
            write(table).upsert(key, target, value);
        }
        Event::Delete(obj) => {
            let (key, _, _) = entry(obj);
            write(table).remove(&key);
        }
        Event::Init => *write(relist) = Some(Table::default()),
        Event::InitApply(obj) => {
            let (key, target, value) = entry(obj);
            write(relist).get_or_insert_with(Table::default).upsert(key, target, value);
        }
        Event::InitDone => {
            if let Some(fresh) = write(relist).take() {
                *write(table) = fresh;
            }
            synced.store(true, Ordering::Release);
        }
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
        for w in wpas {
            index.apply_wpa(&Event::Apply(w.clone()));
        }
        for h in hpas {
            index.apply_hpa(&Event::Apply(h.clone()));
        }
        index.wpas_synced.store(true, Ordering::Release);
        index.hpas_synced.store(true, Ordering::Release);
        Arc::new(index)
    }

    pub(crate) fn apply_wpa(&self, event: &Event<WatermarkPodAutoscaler>) {
        apply(&self.wpas, &self.wpa_relist, &self.wpas_synced, event, wpa_entry);
    }

    pub(crate) fn apply_hpa(&self, event: &Event<HorizontalPodAutoscaler>) {
        apply(&self.hpas, &self.hpa_relist, &self.hpas_synced, event, hpa_entry);
    }

    /// Whether both watches have listed once.
    pub(crate) fn synced(&self) -> bool {
        self.wpas_synced.load(Ordering::Acquire) && self.hpas_synced.load(Ordering::Acquire)
    }

    /// The WPAs that target `kind`/`name` in `namespace`, by name.
    pub(crate) fn wpas_for(&self, namespace: &str, kind: &str, name: &str) -> Vec<Governing> {
        read(&self.wpas).get(namespace, kind, name).cloned().collect()
    }

    /// The HPAs that target `kind`/`name` in `namespace`, by name.
    pub(crate) fn hpas_for(&self, namespace: &str, kind: &str, name: &str) -> Vec<Hpa> {
        read(&self.hpas).get(namespace, kind, name).cloned().collect()
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
}
