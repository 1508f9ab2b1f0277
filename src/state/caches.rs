//! Watch caches of what a reconcile reads besides the WPA: the pods, and the `/scale` view of the common
//! targets (Deployments and StatefulSets). A steady-state reconcile reads these instead of the API.
//!
//! Each cache keeps only what the engine needs (a pod is a few hundred bytes here instead of the tens of
//! kilobytes of a full object with managedFields), and applies a watcher's re-list atomically: the new
//! list is buffered from `Init` to `InitDone`, so a reconcile never sees a half-listed namespace.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::Pod,
};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::{
    api::selector::Selector,
    engine::{
        calc::ScaleInfo,
        pods::{ConditionStatus, OwnerKind, OwnerRef, PodInfo, PodPhase, ReadyCondition},
    },
    state::{
        store::{Synced, Table, Watched},
        watch::{Namespaces, drive, events},
    },
};

fn timestamp(t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<jiff::Timestamp> {
    t.map(|t| t.0)
}

/// What the engine needs of a pod.
pub(crate) fn pod_info(pod: &Pod) -> PodInfo {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| ReadyCondition {
            status: ConditionStatus::parse(&c.status),
            last_transition: timestamp(c.last_transition_time.as_ref()),
        });
    PodInfo {
        name: pod.name_any(),
        phase: PodPhase::parse(status.and_then(|s| s.phase.as_deref()).unwrap_or("")),
        ready,
        start_time: timestamp(status.and_then(|s| s.start_time.as_ref())),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        owners: pod
            .owner_references()
            .iter()
            .map(|o| OwnerRef { kind: OwnerKind::parse(&o.kind), name: o.name.clone() })
            .collect(),
    }
}

#[derive(Debug)]
struct CachedPod {
    labels: BTreeMap<String, String>,
    info: PodInfo,
    /// For the scheduler extender: which pod, and where it runs.
    uid: String,
    node: Option<String>,
}

/// Where a pod is, for the scheduler extender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    pub(crate) uid: String,
    /// `spec.nodeName`; `None` while unbound.
    pub(crate) node: Option<String>,
}

/// The pods of one namespace, with an index from `key=value` to pod names for selectors that have an
/// equality (most have: `app=web`).
#[derive(Debug, Default)]
struct NamespacePods {
    pods: HashMap<String, CachedPod>,
    by_label: HashMap<(String, String), HashSet<String>>,
}

impl NamespacePods {
    fn remove(&mut self, name: &str) {
        if let Some(old) = self.pods.remove(name) {
            for pair in old.labels {
                if let Some(names) = self.by_label.get_mut(&pair) {
                    names.remove(name);
                    if names.is_empty() {
                        self.by_label.remove(&pair);
                    }
                }
            }
        }
    }

    fn upsert(&mut self, pod: CachedPod) {
        let name = pod.info.name.clone();
        self.remove(&name);
        for (k, v) in &pod.labels {
            self.by_label.entry((k.clone(), v.clone())).or_default().insert(name.clone());
        }
        self.pods.insert(name, pod);
    }

    /// The pods `selector` selects, in no particular order.
    fn matching<'a>(&'a self, selector: &'a Selector) -> Box<dyn Iterator<Item = &'a CachedPod> + 'a> {
        // The smallest posting list of the selector's equalities bounds the candidates.
        let candidates = selector
            .equalities()
            .map(|(k, v)| self.by_label.get(&(k.to_string(), v.to_string())))
            .min_by_key(|names| names.map_or(0, HashSet::len));
        match candidates {
            Some(None) => Box::new(std::iter::empty()),
            Some(Some(names)) => Box::new(
                names.iter().filter_map(|n| self.pods.get(n)).filter(|p| selector.matches(&p.labels)),
            ),
            None => Box::new(self.pods.values().filter(|p| selector.matches(&p.labels))),
        }
    }

    fn select(&self, selector: &Selector) -> Vec<PodInfo> {
        let mut out: Vec<PodInfo> = self.matching(selector).map(|p| p.info.clone()).collect();
        // A stable order, as a list from the API would have.
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// The pods of the watched namespaces, by namespace.
#[derive(Debug, Default)]
pub(crate) struct PodTable(HashMap<String, NamespacePods>);

impl Table<Pod> for PodTable {
    fn upsert(&mut self, pod: &Pod) {
        self.0.entry(pod.namespace().unwrap_or_default()).or_default().upsert(cached(pod));
    }

    fn remove(&mut self, pod: &Pod) {
        let ns = pod.namespace().unwrap_or_default();
        if let Some(n) = self.0.get_mut(&ns) {
            n.remove(&pod.name_any());
            if n.pods.is_empty() {
                self.0.remove(&ns);
            }
        }
    }
}

/// A cache of the pods of the watched namespaces.
pub(crate) type PodCache = Watched<PodTable>;

fn cached(pod: &Pod) -> CachedPod {
    CachedPod {
        labels: pod.labels().clone(),
        info: pod_info(pod),
        uid: pod.uid().unwrap_or_default(),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
    }
}

impl PodTable {
    /// The pods of `namespace` that `selector` selects, ordered by name.
    pub(crate) fn select(&self, namespace: &str, selector: &Selector) -> Vec<PodInfo> {
        self.0.get(namespace).map(|ns| ns.select(selector)).unwrap_or_default()
    }

    /// Where the pods `selector` selects in `namespace` are, leaving out pods being deleted.
    pub(crate) fn placements(&self, namespace: &str, selector: &Selector) -> Vec<Placement> {
        let Some(ns) = self.0.get(namespace) else { return Vec::new() };
        ns.matching(selector)
            .filter(|p| !p.info.deleting)
            .map(|p| Placement { uid: p.uid.clone(), node: p.node.clone() })
            .collect()
    }

    /// Number of pods cached.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.values().map(|n| n.pods.len()).sum()
    }
}

/// The `/scale` view of a cached target, as the API server computes it for Deployments and StatefulSets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CachedScale {
    pub(crate) spec_replicas: i32,
    pub(crate) status_replicas: i32,
    pub(crate) selector: String,
}

impl CachedScale {
    pub(crate) fn scale_info(&self, namespace: &str, name: &str) -> ScaleInfo {
        ScaleInfo {
            name: name.to_string(),
            namespace: namespace.to_string(),
            spec_replicas: self.spec_replicas,
            status_replicas: self.status_replicas,
            selector: self.selector.clone(),
        }
    }
}

fn scale_view(
    replicas: Option<i32>,
    status_replicas: Option<i32>,
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> CachedScale {
    CachedScale {
        // The API server defaults spec.replicas to 1; the scale reports what is stored.
        spec_replicas: replicas.unwrap_or(1),
        status_replicas: status_replicas.unwrap_or(0),
        selector: Selector::from_label_selector(selector).map(|s| s.sorted().to_string()).unwrap_or_default(),
    }
}

/// A kind whose `/scale` this cache can answer.
pub(crate) trait CachedTarget:
    kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static
{
    fn scale(&self) -> CachedScale;
}

impl CachedTarget for Deployment {
    fn scale(&self) -> CachedScale {
        let spec = self.spec.clone().unwrap_or_default();
        scale_view(spec.replicas, self.status.as_ref().and_then(|s| s.replicas), &spec.selector)
    }
}

impl CachedTarget for StatefulSet {
    fn scale(&self) -> CachedScale {
        let spec = self.spec.clone().unwrap_or_default();
        scale_view(spec.replicas, self.status.as_ref().map(|s| s.replicas), &spec.selector)
    }
}

/// The scales of one kind, by (namespace, name).
#[derive(Debug, Default)]
pub(crate) struct Scales(HashMap<(String, String), CachedScale>);

impl<K: CachedTarget> Table<K> for Scales {
    fn upsert(&mut self, o: &K) {
        self.0.insert((o.namespace().unwrap_or_default(), o.name_any()), o.scale());
    }

    fn remove(&mut self, o: &K) {
        self.0.remove(&(o.namespace().unwrap_or_default(), o.name_any()));
    }
}

/// The scale of every watched Deployment and StatefulSet.
#[derive(Debug, Default)]
pub(crate) struct TargetCache {
    deployments: Watched<Scales>,
    stateful_sets: Watched<Scales>,
}

impl TargetCache {
    pub(crate) fn synced(&self) -> bool {
        self.deployments.synced().is_synced() && self.stateful_sets.synced().is_synced()
    }

    /// The cached scale of `group`/`kind` `namespace`/`name`; `None` when the kind is not cached (the
    /// caller reads `/scale` from the API) and `Some(None)` when the object does not exist.
    pub(crate) fn get(
        &self,
        group: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Option<CachedScale>> {
        let cache = match (group, kind) {
            ("apps", "Deployment") => &self.deployments,
            ("apps", "StatefulSet") => &self.stateful_sets,
            _ => return None,
        };
        if !cache.synced().is_synced() {
            return None;
        }
        Some(cache.read().0.get(&(namespace.to_string(), name.to_string())).cloned())
    }
}

/// The pods and the targets of the watched namespaces, kept by watches running until `stop`.
pub(crate) struct Caches {
    pub(crate) pods: Arc<PodCache>,
    pub(crate) targets: Arc<TargetCache>,
}

impl Caches {
    pub(crate) fn synced(&self) -> bool {
        self.pods.synced().is_synced() && self.targets.synced()
    }

    /// The first-list signals of its three watches.
    pub(crate) fn signals(&self) -> [Synced; 3] {
        [
            self.pods.synced().clone(),
            self.targets.deployments.synced().clone(),
            self.targets.stateful_sets.synced().clone(),
        ]
    }

    /// Returns once the pods and both target kinds have listed.
    pub(crate) async fn listed(&self) {
        for signal in self.signals() {
            signal.wait().await;
        }
    }

    /// Caches holding lists read once, as a first watch list fills them (`wpa status`, benchmarks).
    pub(crate) fn from_lists(
        pods: Vec<Pod>,
        deployments: Vec<Deployment>,
        stateful_sets: Vec<StatefulSet>,
    ) -> Caches {
        let caches = Caches { pods: Arc::default(), targets: Arc::default() };
        caches.pods.fill(pods);
        caches.targets.deployments.fill(deployments);
        caches.targets.stateful_sets.fill(stateful_sets);
        caches
    }

    /// Starts the watches of pods, Deployments and StatefulSets in `namespaces`.
    pub(crate) fn start(client: &Client, namespaces: &Namespaces, stop: CancellationToken) -> Caches {
        let caches = Caches { pods: Arc::default(), targets: Arc::default() };
        // Pods change status often; only the fields read here matter, the rest is dropped on arrival.
        let pods = caches.pods.clone();
        drive("Pod", events(namespaces.api::<Pod>(client), namespaces), stop.clone(), move |e| {
            pods.apply(&e)
        });
        let targets = caches.targets.clone();
        drive(
            "Deployment",
            events(namespaces.api::<Deployment>(client), namespaces),
            stop.clone(),
            move |e| targets.deployments.apply(&e),
        );
        let targets = caches.targets.clone();
        drive("StatefulSet", events(namespaces.api::<StatefulSet>(client), namespaces), stop, move |e| {
            targets.stateful_sets.apply(&e)
        });
        caches
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher;

    fn pod(name: &str, labels: &[(&str, &str)]) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "labels": labels.iter().cloned().collect::<BTreeMap<_, _>>()},
            "status": {"phase": "Running"}
        }))
        .unwrap()
    }

    fn names(pods: Vec<PodInfo>) -> Vec<String> {
        pods.into_iter().map(|p| p.name).collect()
    }

    #[test]
    fn selects_by_index_and_by_scan_and_follows_label_changes() {
        let cache = PodCache::default();
        cache.fill([
            pod("a", &[("app", "web"), ("tier", "1")]),
            pod("b", &[("app", "web")]),
            pod("c", &[("app", "db")]),
        ]);
        let select = |s: &str| names(cache.read().select("ns", &Selector::parse(s).unwrap()));
        assert_eq!(select("app=web"), ["a", "b"]);
        assert_eq!(select("app=web,tier=1"), ["a"]);
        assert_eq!(select("app in (db,web),!tier"), ["b", "c"]);
        assert!(cache.read().select("other", &Selector::parse("app=web").unwrap()).is_empty());
        // A label change moves the pod between index entries.
        cache.apply(&watcher::Event::Apply(pod("b", &[("app", "db")])));
        assert_eq!(select("app=web"), ["a"]);
        assert_eq!(select("app=db"), ["b", "c"]);
        cache.apply(&watcher::Event::Delete(pod("a", &[])));
        assert!(select("app=web").is_empty());
        cache.fill([pod("z", &[("app", "web")])]);
        assert_eq!(select("app=web"), ["z"]);
        assert_eq!(cache.read().len(), 1);
    }

    #[test]
    fn deployment_scale_view_matches_the_api_servers() {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"tier": "a", "app": "web"}}, "template": {}},
            "status": {"replicas": 4}
        }))
        .unwrap();
        assert_eq!(
            d.scale(),
            CachedScale { spec_replicas: 3, status_replicas: 4, selector: "app=web,tier=a".into() }
        );
    }

    #[test]
    fn the_target_cache_answers_once_listed_and_only_for_apps_kinds() {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {}}
        }))
        .unwrap();
        let cache = TargetCache::default();
        assert_eq!(cache.get("apps", "Deployment", "ns", "web"), None, "not synced: ask the API");
        cache.deployments.fill(Vec::<Deployment>::new());
        cache.stateful_sets.fill(Vec::<StatefulSet>::new());
        cache.deployments.apply(&watcher::Event::Apply(d.clone()));
        assert_eq!(cache.get("apps", "Deployment", "ns", "web").flatten().map(|s| s.spec_replicas), Some(3));
        assert_eq!(cache.get("apps", "Deployment", "ns", "gone"), Some(None));
        assert_eq!(cache.get("apps", "StatefulSet", "ns", "web"), Some(None), "kinds are kept apart");
        assert_eq!(cache.get("apps", "ReplicaSet", "ns", "web"), None, "ReplicaSets are read from the API");
        assert_eq!(cache.get("extensions", "Deployment", "ns", "web"), None);
        cache.deployments.apply(&watcher::Event::Delete(d));
        assert_eq!(cache.get("apps", "Deployment", "ns", "web"), Some(None));
    }
}
