//! The placement policy: which candidate nodes a replica of a WPA target may go to, and how good each is.
//!
//! Pure: everything it knows comes from a [`View`] of the watch caches, the [`Ledger`] of its own recent
//! decisions and the request; `now` is an argument. No I/O, no clock.
//!
//! For a target with `R` desired replicas and `m = minAvailableReplicaPercentage`, losing `c` replicas at
//! once keeps WPA above its readiness gate iff `c <= B = R - ceil(R·m/100)`. The policy keeps every node
//! (and every zone, where there are enough of them) under that failure budget:
//! - Replicas on nodes that are not safe homes (not Ready, cordoned, tainted against the pod, gone) are
//!   already lost, so they consume budget: a node may hold `c(n) + 1 <= B - lost` after this placement.
//! - An optional cap ([`MAX_PER_NODE_ANNOTATION`]) lowers the per-node limit further.
//! - When no candidate is within budget, the policy never rejects them all (a Pending replica is an
//!   unready one, which freezes WPA): it relaxes the zone rule, then the node rule, keeps the nodes with
//!   the fewest replicas (water-filling) and reports the infeasibility.
//!
//! The caches lag the scheduler by tens of milliseconds, so during a scale-up burst a sibling placed a
//! moment ago is not yet visible. Scoring cannot fix that (in-tree plugins outvote us on ties), so
//! `filter` decides itself: it returns exactly one node (the fewest replicas of the target, then the
//! fewest in its zone), records it in the ledger, and the next sibling counts it. One feasible node means
//! the scheduler uses it without prioritizing. It does so for every governed pod, not only once siblings
//! are visibly in flight: the first pod of a burst often arrives before its siblings reach the caches, and
//! a pod allowed several nodes would land where the next decisions cannot know (measured on 1.20.2: 1 run
//! in 5 broke the budget by one that way). The scheduler's own preferences still choose among the
//! candidates of pods without a WPA.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt::Write as _,
    time::{Duration, Instant},
};

use super::wire::{Pod, Toleration};

/// A WPA annotation that turns on a hard cap of replicas per node: a positive integer. Unlike the budget
/// it is not relaxed by water-filling, only when every candidate is at the cap (a list with no node would
/// leave the replica Pending).
pub const MAX_PER_NODE_ANNOTATION: &str = crate::api::annotations::SCHEDULER_MAX_PER_NODE;
/// `MaxExtenderPriority` of `k8s.io/kube-scheduler/extender/v1` (1.20 and newest).
pub const MAX_PRIORITY: i64 = 10;
/// The score of every node for a pod we have no opinion about: equal scores change no ranking.
pub const NEUTRAL_SCORE: i64 = 0;
/// How long a placement stays in the ledger when the caches never show the pod bound. Binding is
/// normally seen within 50 ms, but it can wait for volumes; a deleted, never-bound pod over-counts one
/// node until then.
pub const DEFAULT_LEDGER_TTL: Duration = Duration::from_secs(30);
/// Bounds the ledger's memory whatever the request rate.
const LEDGER_MAX_ENTRIES: usize = 65_536;

const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The only zone label of nodes registered before 1.17, still read by 1.20.
const ZONE_LABEL_BETA: &str = "failure-domain.beta.kubernetes.io/zone";

/// A WPA scale target: a Deployment, a StatefulSet or a ReplicaSet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub namespace: String,
    pub kind: String,
    pub name: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
    }
}

/// The controller of a ReplicaSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

/// What the policy needs of the WPA governing a target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Autoscaler {
    /// The WPA's name, in the target's namespace (where the Event goes).
    pub name: String,
    /// `R`: the target's `spec.replicas` (WPA writes it before the pods exist), else the WPA's
    /// `status.desiredReplicas`.
    pub replicas: i32,
    /// `spec.minAvailableReplicaPercentage`, 0 when unset.
    pub min_available_percentage: i32,
    /// The WPA's annotations; only [`MAX_PER_NODE_ANNOTATION`] is read, so a cache may keep just that.
    pub annotations: BTreeMap<String, String>,
}

/// A pod of a target, as the caches see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetPod {
    pub uid: String,
    /// `spec.nodeName`; `None` (or empty) while unbound.
    pub node: Option<String>,
}

/// A `NoSchedule` or `NoExecute` taint (the policy ignores `PreferNoSchedule`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

/// What the policy needs of a Node. [`NodeState::from`] a `k8s_openapi` Node fills it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeState {
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    pub taints: Vec<Taint>,
    /// Read for the zone and to match the pod's `nodeSelector`.
    pub labels: BTreeMap<String, String>,
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

/// What the watch caches must answer. Every call reads memory; none may block on the API server.
pub trait View: Send + Sync {
    /// False until every cache has listed once (or while a watch is failing): the extender then has no
    /// opinion about any pod.
    fn synced(&self) -> bool;
    /// The controller (`ownerReferences[controller=true]`) of a ReplicaSet, `None` when the cache does not
    /// have the ReplicaSet or it has no controller. A miss falls back to the pod-template-hash naming of
    /// Deployments, because a rollout's new ReplicaSet can reach the scheduler before it reaches the cache.
    fn replica_set_owner(&self, namespace: &str, name: &str) -> Option<Owner>;
    /// The WPA whose `scaleTargetRef` is this workload (kind `Deployment`, `StatefulSet` or `ReplicaSet`).
    fn autoscaler(&self, target: &Target) -> Option<Autoscaler>;
    /// The target's pods that are not terminating, selected by the target's own selector (so both
    /// ReplicaSets count during a rollout, as WPA counts them), bound or not.
    fn pods(&self, target: &Target) -> Vec<TargetPod>;
    /// Calls `visit` with every Node in the cache. The budget's capacity and zones are counted over all of
    /// them, not over the candidates, which 1.20 samples on clusters of 100 nodes and more.
    fn for_each_node(&self, visit: &mut dyn FnMut(&str, &NodeState));
}

/// The zone of a node, from its labels.
pub fn zone_of(labels: &BTreeMap<String, String>) -> Option<&str> {
    labels
        .get(ZONE_LABEL)
        .or_else(|| labels.get(ZONE_LABEL_BETA))
        .map(String::as_str)
        .filter(|z| !z.is_empty())
}

/// `ceil(R·m/100)` replicas must stay available; the rest is the failure budget.
pub(crate) fn failure_budget(replicas: i64, min_available_percentage: i64) -> i64 {
    let r = replicas.max(0);
    let m = min_available_percentage.clamp(0, 100);
    let must_stay = (r * m + 99) / 100;
    r - must_stay
}

/// Why the extender has no opinion about a pod (it passes unchanged, scores are neutral).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoOpinion {
    /// The caches have not listed everything yet.
    NotSynced,
    /// The pod already has a node.
    Bound,
    /// No WPA governs the pod's owner chain.
    NotGoverned,
    /// The WPA has no budget to keep: `minAvailableReplicaPercentage` 0 and no cap, or no replicas.
    NoBudget,
    /// The scheduler sent no candidate node.
    NoCandidates,
    /// The decision failed (a panic in a View); the request fails open.
    Internal,
}

impl NoOpinion {
    pub fn as_str(self) -> &'static str {
        match self {
            NoOpinion::NotSynced => "not_synced",
            NoOpinion::Bound => "bound",
            NoOpinion::NotGoverned => "not_governed",
            NoOpinion::NoBudget => "no_budget",
            NoOpinion::NoCandidates => "no_candidates",
            NoOpinion::Internal => "internal",
        }
    }
}

/// How a request was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    NoOpinion(NoOpinion),
    /// No sibling in flight: every node within budget passes.
    Steady,
    /// Siblings in flight: exactly one node passes.
    Burst,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::NoOpinion(n) => n.as_str(),
            Mode::Steady => "steady",
            Mode::Burst => "burst",
        }
    }
}

/// Which rule could not be kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// No candidate was within the per-node budget; the nodes with the fewest replicas were kept.
    Node,
    /// The zone budget was relaxed, or the zones cannot hold `R` replicas within it at all.
    Zone,
    /// Every candidate was at the [`MAX_PER_NODE_ANNOTATION`] cap.
    Cap,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Node => "node",
            Level::Zone => "zone",
            Level::Cap => "cap",
        }
    }
}

/// A budget that could not be kept for one decision: what a caller turns into a metric and an Event on
/// the WPA. Reported on every decision while it lasts, so Events need de-duplicating per (WPA, level).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Infeasible {
    pub target: Target,
    /// The WPA's name, in the target's namespace.
    pub autoscaler: String,
    pub level: Level,
    pub message: String,
}

/// What `filter` decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FilterOutcome {
    /// What the scheduler gets: for a governed pod the one node chosen among `allowed`; otherwise every
    /// candidate. Never empty when there were candidates.
    pub passed: Vec<String>,
    /// The candidates within budget (or, when none is, the water-fill set), in their order.
    pub allowed: Vec<String>,
    /// Rejected candidates and why.
    pub failed: BTreeMap<String, String>,
    pub mode: Mode,
    pub infeasible: Vec<Infeasible>,
}

/// What `prioritize` decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PrioritizeOutcome<'a> {
    /// One entry per distinct candidate (the scheduler sums duplicates), in 0..=MAX_PRIORITY.
    pub scores: Vec<(&'a str, i64)>,
    pub mode: Mode,
}

#[derive(Clone, Debug)]
struct Entry {
    at: Instant,
    /// The one node the pod was allowed.
    node: String,
}

/// Our recent placements that the caches may not show yet, by target and pod uid. An entry goes when the
/// caches show the pod bound (then the cache counts it), when the same pod is decided again, or after
/// the TTL.
#[derive(Debug)]
pub(crate) struct Ledger {
    ttl: Duration,
    by_target: HashMap<Target, HashMap<String, Entry>>,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::new(DEFAULT_LEDGER_TTL)
    }
}

impl Ledger {
    pub fn new(ttl: Duration) -> Ledger {
        Ledger { ttl, by_target: HashMap::new() }
    }

    pub fn len(&self) -> usize {
        self.by_target.values().map(HashMap::len).sum()
    }

    fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        self.by_target.retain(|_, entries| {
            entries.retain(|_, e| now.saturating_duration_since(e.at) < ttl);
            !entries.is_empty()
        });
    }

    fn record(&mut self, target: &Target, uid: &str, node: String, now: Instant) {
        if self.len() >= LEDGER_MAX_ENTRIES {
            self.expire(now);
        }
        if self.len() >= LEDGER_MAX_ENTRIES {
            // Only a flood of distinct pods gets here; dropping the oldest under-counts one node at worst.
            let oldest = self
                .by_target
                .iter()
                .flat_map(|(t, es)| es.iter().map(move |(u, e)| (e.at, t, u)))
                .min_by_key(|(at, _, _)| *at)
                .map(|(_, t, u)| (t.clone(), u.clone()));
            if let Some((t, u)) = oldest
                && let Some(es) = self.by_target.get_mut(&t)
            {
                es.remove(&u);
            }
        }
        self.by_target.entry(target.clone()).or_default().insert(uid.to_owned(), Entry { at: now, node });
    }
}

/// The ledger key of a pod: its uid, or namespace/name for a pod without one.
fn pod_key(pod: &Pod) -> String {
    if pod.metadata.uid.is_empty() {
        format!("{}/{}", pod.metadata.namespace, pod.metadata.name)
    } else {
        pod.metadata.uid.clone()
    }
}

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
struct Governed {
    target: Target,
    autoscaler: String,
    replicas: i64,
    percent: i64,
    budget: i64,
    cap: Option<i64>,
}

fn govern<V: View + ?Sized>(view: &V, pod: &Pod) -> Result<Governed, NoOpinion> {
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
enum Unsafe {
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
fn safety(node: &NodeState, tolerations: &[Toleration]) -> Result<(), Unsafe> {
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

/// What the node cache says of one node. Zones are numbered in [`Assessment::zone_names`].
#[derive(Clone, Debug)]
struct Facts {
    safe: Result<(), Unsafe>,
    zone: Option<usize>,
}

/// A node the scheduler has and our cache has not seen yet: new, so presumably healthy.
const UNSEEN: Facts = Facts { safe: Ok(()), zone: None };

#[derive(Clone, Debug)]
struct Candidate<'a> {
    name: &'a str,
    safe: Result<(), Unsafe>,
    count: i64,
    zone: Option<usize>,
    zone_count: i64,
}

/// Everything a decision about one governed pod reads, counted once.
#[derive(Debug)]
struct Assessment<'a> {
    gov: Governed,
    key: String,
    /// Replicas on nodes that are not safe homes.
    lost: i64,
    /// `B - lost`: the most replicas one more loss may take.
    k_budget: i64,
    /// A node is within limits iff `count + 1 <= k_node` (budget and cap).
    k_node: i64,
    /// `Some(B - lost)` when the zones can hold `R` replicas within the budget.
    k_zone: Option<i64>,
    /// At least two zones: zone balance ranks nodes.
    zoned: bool,
    /// The zones seen on nodes, numbered by first sight (what [`Candidate::zone`] indexes).
    zone_names: Vec<String>,
    zones: usize,
    /// Usable nodes (safe, matching the pod's nodeSelector).
    capacity: i64,
    min_zone_count: i64,
    in_flight: usize,
    candidates: Vec<Candidate<'a>>,
}

fn selector_matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn distinct<'a>(candidates: &[&'a str]) -> Vec<&'a str> {
    let mut seen = HashSet::with_capacity(candidates.len());
    candidates.iter().copied().filter(|c| seen.insert(*c)).collect()
}

fn assess<'a, V: View + ?Sized>(
    view: &V,
    ledger: &mut Ledger,
    pod: &Pod,
    candidates: &[&'a str],
    now: Instant,
) -> Result<Assessment<'a>, NoOpinion> {
    if candidates.is_empty() {
        return Err(NoOpinion::NoCandidates);
    }
    if !view.synced() {
        return Err(NoOpinion::NotSynced);
    }
    if !pod.spec.node_name.is_empty() {
        return Err(NoOpinion::Bound);
    }
    let mut gov = govern(view, pod)?;
    let key = pod_key(pod);

    let mut per_node: HashMap<String, i64> = HashMap::new();
    let mut bound = HashSet::new();
    let mut pending = HashSet::new();
    for p in view.pods(&gov.target) {
        if p.uid == key {
            continue;
        }
        match p.node.filter(|n| !n.is_empty()) {
            Some(node) => {
                *per_node.entry(node).or_default() += 1;
                bound.insert(p.uid);
            }
            None => {
                pending.insert(p.uid);
            }
        }
    }

    ledger.expire(now);
    let mut in_flight_ledger = 0;
    if let Some(entries) = ledger.by_target.get_mut(&gov.target) {
        entries.retain(|uid, _| !bound.contains(uid));
        for (uid, entry) in entries.iter() {
            if *uid == key {
                continue;
            }
            in_flight_ledger += 1;
            pending.remove(uid);
            *per_node.entry(entry.node.clone()).or_default() += 1;
        }
    }
    // Unbound siblings in the cache are in flight too: the first pod of a burst sees the others pending.
    let in_flight = in_flight_ledger + pending.len();
    // R can lag behind the pods: a scale-up's pods reach the scheduler as soon as the Deployment's new
    // count reaches our watch, or sooner. In a burst the replicas that exist (this one included) are a
    // floor for it, so a burst is never placed against the budget of the count before the scale. (Outside
    // a burst, more pods than R is a scale-down under way, and R is right.)
    let existing = i64::try_from(bound.len() + pending.len() + in_flight_ledger + 1).unwrap_or(i64::MAX);
    if in_flight > 0 && existing > gov.replicas {
        gov.replicas = existing;
        gov.budget = failure_budget(existing, gov.percent);
    }

    // Candidates by name, distinct, in the scheduler's order: one hash each, and every per-candidate fact
    // after this is read by index. A request carries thousands of names (5,000 in the benchmark).
    let mut index: HashMap<&'a str, usize> = HashMap::with_capacity(candidates.len());
    let mut names: Vec<&'a str> = Vec::with_capacity(candidates.len());
    for c in candidates {
        if let std::collections::hash_map::Entry::Vacant(e) = index.entry(*c) {
            e.insert(names.len());
            names.push(*c);
        }
    }
    let mut facts: Vec<Option<Facts>> = vec![None; names.len()];
    // Nodes holding replicas of the target that are not candidates (they still decide what is lost).
    let mut holders: HashMap<&str, Facts> = HashMap::new();
    let mut zone_ids: HashMap<String, usize> = HashMap::new();
    let mut zone_names: Vec<String> = Vec::new();
    // Usable nodes per zone number; a zone with none is no zone for the budget.
    let mut zone_capacity: Vec<i64> = Vec::new();
    let mut capacity = 0i64;
    view.for_each_node(&mut |name, node| {
        let safe = safety(node, &pod.spec.tolerations);
        let zone = zone_of(&node.labels).map(|z| match zone_ids.get(z) {
            Some(id) => *id,
            None => {
                zone_ids.insert(z.to_owned(), zone_names.len());
                zone_names.push(z.to_owned());
                zone_capacity.push(0);
                zone_names.len() - 1
            }
        });
        if safe.is_ok() && selector_matches(&pod.spec.node_selector, &node.labels) {
            capacity += 1;
            if let Some(z) = zone {
                zone_capacity[z] += 1;
            }
        }
        if let Some(&i) = index.get(name) {
            facts[i] = Some(Facts { safe, zone });
        } else if let Some((held, _)) = per_node.get_key_value(name) {
            holders.insert(held.as_str(), Facts { safe, zone });
        }
    });
    let facts: Vec<Facts> = facts
        .into_iter()
        .map(|f| {
            f.unwrap_or_else(|| {
                capacity += 1;
                UNSEEN
            })
        })
        .collect();

    let mut lost = 0i64;
    let mut zone_count: Vec<i64> = vec![0; zone_names.len()];
    let mut counts: Vec<i64> = vec![0; names.len()];
    for (node, count) in &per_node {
        let f = match index.get(node.as_str()) {
            Some(&i) => {
                counts[i] = *count;
                Some(&facts[i])
            }
            None => holders.get(node.as_str()),
        };
        match f {
            Some(Facts { safe: Ok(()), zone }) => {
                if let Some(z) = zone {
                    zone_count[*z] += count;
                }
            }
            // Not Ready, tainted, or gone from the cache.
            _ => lost += count,
        }
    }

    let b = gov.budget;
    let k_budget = b - lost;
    let k_node = gov.cap.map_or(k_budget, |cap| cap.min(k_budget));
    let usable_zones = || zone_capacity.iter().enumerate().filter(|(_, nodes)| **nodes > 0);
    let zones = usable_zones().count();
    let zoned = zones >= 2;
    // How many replicas the zones can hold with at most B per zone and the per-node limit per node.
    let per_node_limit = gov.cap.map_or(b, |cap| cap.min(b));
    let zone_room: i64 = usable_zones().map(|(_, nodes)| b.min(nodes.saturating_mul(per_node_limit))).sum();
    let k_zone = (zoned && b > 0 && zone_room >= gov.replicas).then_some(k_budget);
    let min_zone_count = usable_zones().map(|(z, _)| zone_count[z]).min().unwrap_or(0);

    let candidates = names
        .into_iter()
        .zip(facts)
        .zip(counts)
        .map(|((name, f), count)| Candidate {
            name,
            count,
            safe: f.safe,
            zone: f.zone,
            zone_count: f.zone.map_or(0, |z| zone_count[z]),
        })
        .collect();

    Ok(Assessment {
        gov,
        key,
        lost,
        k_budget,
        k_node,
        k_zone,
        zoned,
        zone_names,
        zones,
        capacity,
        min_zone_count,
        in_flight,
        candidates,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tier {
    /// Within every budget; the penalties grade it from 10 down to 6.
    Within { node_penalty: i64, zone_penalty: i64 },
    /// Nothing is within budget; `excess` replicas more than the emptiest usable node, `first` when it is
    /// among the emptiest (the water-fill set).
    Fill { excess: i64, first: bool },
    /// Refused; [`over_reason`] says why, written only where an answer carries it.
    Out,
}

fn replicas_of(a: &Assessment) -> String {
    format!("{} replicas of {}/{}", a.gov.replicas, a.gov.target.namespace, a.gov.target.name)
}

fn budget_text(a: &Assessment) -> String {
    let mut s = format!("budget {} (minAvailableReplicaPercentage={}", a.gov.budget, a.gov.percent);
    if a.lost > 0 {
        let _ = write!(s, ", {} on lost nodes", a.lost);
    }
    s.push(')');
    s
}

fn over_reason(a: &Assessment, c: &Candidate) -> String {
    if let Err(why) = &c.safe {
        return format!(
            "wpa: node is not a safe home for {}/{}: {why}",
            a.gov.target.namespace, a.gov.target.name
        );
    }
    if let Some(cap) = a.gov.cap
        && c.count >= cap
        && c.count < a.k_budget
    {
        return format!(
            "wpa: node holds {} of {}; cap {cap} ({MAX_PER_NODE_ANNOTATION})",
            c.count,
            replicas_of(a)
        );
    }
    if c.count + 1 > a.k_node {
        return format!("wpa: node holds {} of {}; {}", c.count, replicas_of(a), budget_text(a));
    }
    format!(
        "wpa: zone {} holds {} of {}; {} per zone",
        c.zone.and_then(|z| a.zone_names.get(z)).map_or("", String::as_str),
        c.zone_count,
        replicas_of(a),
        budget_text(a)
    )
}

/// Ranks the candidates, and says which rules had to give way.
fn tiers(a: &Assessment) -> (Vec<Tier>, Vec<Infeasible>) {
    let report = |level, message: String| Infeasible {
        target: a.gov.target.clone(),
        autoscaler: a.gov.autoscaler.clone(),
        level,
        message,
    };
    let mut infeasible = Vec::new();
    let r = a.gov.replicas;
    if a.zoned && a.k_zone.is_none() {
        infeasible.push(report(
            Level::Zone,
            format!(
                "losing one of {} zones can leave fewer than {}% of {} ready: the zones cannot hold them \
                 with at most {} per zone",
                a.zones,
                a.gov.percent,
                replicas_of(a),
                a.gov.budget
            ),
        ));
    }
    let node_ok = |c: &Candidate| c.safe.is_ok() && c.count < a.k_node;
    let zone_ok = |c: &Candidate| match (a.k_zone, &c.zone) {
        (Some(k), Some(_)) => c.zone_count < k,
        _ => true,
    };
    let within: Vec<bool> = a.candidates.iter().map(|c| node_ok(c) && zone_ok(c)).collect();
    if within.iter().any(|w| *w) {
        let tiers = a
            .candidates
            .iter()
            .zip(&within)
            .map(|(c, w)| {
                if !*w {
                    return Tier::Out;
                }
                // c.count <= k_node - 1 here: round(4·c/(k-1)) spans 0..=4, and the total stays within 4 so
                // that a within-budget node always outscores the water-fill tier.
                let node_penalty =
                    if a.k_node >= 2 { (8 * c.count + (a.k_node - 1)) / (2 * (a.k_node - 1)) } else { 0 };
                let zone_penalty = i64::from(a.zoned && c.zone.is_some() && c.zone_count > a.min_zone_count);
                let node_penalty = node_penalty.clamp(0, 4);
                Tier::Within { node_penalty, zone_penalty: zone_penalty.min(4 - node_penalty) }
            })
            .collect();
        return (tiers, infeasible);
    }

    if a.k_zone.is_some() && a.candidates.iter().any(node_ok) {
        let min = a.candidates.iter().filter(|c| node_ok(c)).map(|c| c.zone_count).min().unwrap_or(0);
        infeasible.push(report(
            Level::Zone,
            format!(
                "no candidate node is in a zone holding fewer than {} of {}; spreading to the zones with \
                 the fewest",
                a.k_budget.max(0),
                replicas_of(a)
            ),
        ));
        let tiers = a
            .candidates
            .iter()
            .map(|c| {
                if node_ok(c) {
                    Tier::Fill { excess: c.zone_count - min, first: c.zone_count == min }
                } else {
                    Tier::Out
                }
            })
            .collect();
        return (tiers, infeasible);
    }

    let safe: Vec<&Candidate> = a.candidates.iter().filter(|c| c.safe.is_ok()).collect();
    let under_cap = |c: &Candidate| a.gov.cap.is_none_or(|cap| c.count < cap);
    let mut pool: Vec<&Candidate> = safe.iter().copied().filter(|c| under_cap(c)).collect();
    if pool.is_empty() && !safe.is_empty() {
        infeasible.push(report(
            Level::Cap,
            format!(
                "every candidate node holds {} or more of {} ({MAX_PER_NODE_ANNOTATION}); the cap gives way \
                 rather than leave the replica Pending",
                a.gov.cap.unwrap_or(0),
                replicas_of(a)
            ),
        ));
        pool = safe;
    }
    let message = if pool.is_empty() {
        // Every candidate is unsafe by our caches, which may be the stale side: keep them all.
        pool = a.candidates.iter().collect();
        format!("no candidate node is a safe home for {}; passing them all", replicas_of(a))
    } else if a.k_budget <= 0 {
        format!(
            "{}: a budget of {} leaves no room for any loss; spreading to the nodes with the fewest",
            replicas_of(a),
            a.k_budget.max(0)
        )
    } else {
        let needed = (r + a.k_node - 1) / a.k_node.max(1);
        format!(
            "no candidate node holds fewer than {} of {} (needs at least {needed} usable nodes, has {}); \
             spreading to the nodes with the fewest",
            a.k_node.max(0),
            replicas_of(a),
            a.capacity
        )
    };
    infeasible.push(report(Level::Node, format!("{message}; {}", budget_text(a))));
    let zone_key = |c: &Candidate| if a.zoned { c.zone_count } else { 0 };
    let min_count = pool.iter().map(|c| c.count).min().unwrap_or(0);
    let min_zone = pool.iter().filter(|c| c.count == min_count).map(|c| zone_key(c)).min().unwrap_or(0);
    let in_pool: HashSet<&str> = pool.iter().map(|c| c.name).collect();
    let tiers = a
        .candidates
        .iter()
        .map(|c| {
            if !in_pool.contains(c.name) {
                return Tier::Out;
            }
            let first = c.count == min_count && zone_key(c) == min_zone;
            if first {
                Tier::Fill { excess: 0, first }
            } else {
                Tier::Fill { excess: (c.count - min_count).max(1), first }
            }
        })
        .collect();
    (tiers, infeasible)
}

/// FNV-1a: a tie-break that is stable across processes and restarts, unlike `RandomState`.
fn stable_hash(a: &str, b: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.bytes().chain([0u8]).chain(b.bytes()) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Decides which candidates may receive the pod. `candidates` are the scheduler's, in its order.
pub(crate) fn filter<V: View + ?Sized>(
    view: &V,
    ledger: &mut Ledger,
    pod: &Pod,
    candidates: &[&str],
    now: Instant,
) -> FilterOutcome {
    let a = match assess(view, ledger, pod, candidates, now) {
        Ok(a) => a,
        Err(reason) => {
            let all: Vec<String> = candidates.iter().map(|c| (*c).to_owned()).collect();
            return FilterOutcome {
                passed: all.clone(),
                allowed: all,
                failed: BTreeMap::new(),
                mode: Mode::NoOpinion(reason),
                infeasible: Vec::new(),
            };
        }
    };
    let (tiers, infeasible) = tiers(&a);
    let mut failed = BTreeMap::new();
    let mut set: Vec<&Candidate> = Vec::new();
    for (c, tier) in a.candidates.iter().zip(&tiers) {
        match tier {
            Tier::Within { .. } | Tier::Fill { first: true, .. } => set.push(c),
            Tier::Fill { .. } | Tier::Out => {
                failed.insert(c.name.to_owned(), over_reason(&a, c));
            }
        }
    }
    if set.is_empty() {
        // Unreachable by construction (water-filling keeps at least one node), but an empty answer would
        // reject every node, so fail open rather than trust that.
        let all: Vec<String> = a.candidates.iter().map(|c| c.name.to_owned()).collect();
        return FilterOutcome {
            passed: all.clone(),
            allowed: all,
            failed: BTreeMap::new(),
            mode: Mode::NoOpinion(NoOpinion::Internal),
            infeasible,
        };
    }
    let zone_key = |c: &Candidate| if a.zoned { c.zone_count } else { 0 };
    let best = set
        .iter()
        .min_by_key(|c| (c.count, zone_key(c), stable_hash(&a.key, c.name)))
        .map(|c| c.name)
        .unwrap_or(set[0].name);
    let chose = format!("wpa: placement chose {best}");
    for c in &set {
        if c.name != best {
            failed.insert(c.name.to_owned(), chose.clone());
        }
    }
    ledger.record(&a.gov.target, &a.key, best.to_owned(), now);
    let mode = if a.in_flight > 0 { Mode::Burst } else { Mode::Steady };
    let allowed = set.iter().map(|c| c.name.to_owned()).collect();
    FilterOutcome { passed: vec![best.to_owned()], allowed, failed, mode, infeasible }
}

/// Scores the candidates 0..=10: over budget 0, within budget 6..=10 (fewer of the target's replicas on
/// the node, and in its zone, score higher); when nothing is within budget, 1..=5 by how few replicas the
/// node holds, so that even a prioritize-only setup water-fills. Pods without an opinion score
/// [`NEUTRAL_SCORE`] everywhere.
pub(crate) fn prioritize<'a, V: View + ?Sized>(
    view: &V,
    ledger: &mut Ledger,
    pod: &Pod,
    candidates: &[&'a str],
    now: Instant,
) -> PrioritizeOutcome<'a> {
    let a = match assess(view, ledger, pod, candidates, now) {
        Ok(a) => a,
        Err(reason) => return neutral(candidates, Mode::NoOpinion(reason)),
    };
    let (tiers, _) = tiers(&a);
    let scores = a
        .candidates
        .iter()
        .zip(tiers)
        .map(|(c, tier)| {
            let score = match tier {
                Tier::Within { node_penalty, zone_penalty } => MAX_PRIORITY - node_penalty - zone_penalty,
                Tier::Fill { excess, .. } => 5 - excess.clamp(0, 4),
                Tier::Out => 0,
            };
            (c.name, score.clamp(0, MAX_PRIORITY))
        })
        .collect();
    PrioritizeOutcome { scores, mode: if a.in_flight > 0 { Mode::Burst } else { Mode::Steady } }
}

/// The same score for every distinct candidate.
pub(crate) fn neutral<'a>(candidates: &[&'a str], mode: Mode) -> PrioritizeOutcome<'a> {
    PrioritizeOutcome { scores: distinct(candidates).into_iter().map(|c| (c, NEUTRAL_SCORE)).collect(), mode }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
pub(crate) mod tests;
