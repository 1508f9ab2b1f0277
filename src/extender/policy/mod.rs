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

mod assess;
mod govern;
mod ledger;
mod nodes;
mod tiers;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use super::wire::Pod;
pub(crate) use crate::state::placement::{NodeState, Owner, Taint};
use assess::{Candidate, assess};
pub(crate) use ledger::Ledger;
use tiers::{Tier, over_reason, stable_hash, tiers};

/// A WPA annotation that turns on a hard cap of replicas per node: a positive integer. Unlike the budget
/// it is not relaxed by water-filling, only when every candidate is at the cap (a list with no node would
/// leave the replica Pending).
pub(super) const MAX_PER_NODE_ANNOTATION: &str = crate::api::annotations::SCHEDULER_MAX_PER_NODE;
/// `MaxExtenderPriority` of `k8s.io/kube-scheduler/extender/v1` (1.20 and newest).
pub(super) const MAX_PRIORITY: i64 = 10;
/// The score of every node for a pod we have no opinion about: equal scores change no ranking.
pub(super) const NEUTRAL_SCORE: i64 = 0;
/// How long a placement stays in the ledger when the caches never show the pod bound. Binding is
/// normally seen within 50 ms, but it can wait for volumes; a deleted, never-bound pod over-counts one
/// node until then.
pub(super) const DEFAULT_LEDGER_TTL: Duration = Duration::from_secs(30);
pub(super) const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The only zone label of nodes registered before 1.17, still read by 1.20.
pub(super) const ZONE_LABEL_BETA: &str = "failure-domain.beta.kubernetes.io/zone";

/// A WPA scale target: a Deployment, a StatefulSet or a ReplicaSet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Target {
    pub namespace: String,
    pub kind: String,
    pub name: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
    }
}

/// What the policy needs of the WPA governing a target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Autoscaler {
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
pub(crate) struct TargetPod {
    pub uid: String,
    /// `spec.nodeName`; `None` (or empty) while unbound.
    pub node: Option<String>,
}

/// What the watch caches must answer. Every call reads memory; none may block on the API server.
pub(crate) trait View: Send + Sync {
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
pub(super) fn zone_of(labels: &BTreeMap<String, String>) -> Option<&str> {
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
pub(crate) enum NoOpinion {
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
    pub(crate) fn as_str(self) -> &'static str {
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
pub(crate) enum Mode {
    NoOpinion(NoOpinion),
    /// No sibling in flight: every node within budget passes.
    Steady,
    /// Siblings in flight: exactly one node passes.
    Burst,
}

impl Mode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::NoOpinion(n) => n.as_str(),
            Mode::Steady => "steady",
            Mode::Burst => "burst",
        }
    }
}

/// Which rule could not be kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    /// No candidate was within the per-node budget; the nodes with the fewest replicas were kept.
    Node,
    /// The zone budget was relaxed, or the zones cannot hold `R` replicas within it at all.
    Zone,
    /// Every candidate was at the [`MAX_PER_NODE_ANNOTATION`] cap.
    Cap,
}

impl Level {
    pub(crate) fn as_str(self) -> &'static str {
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
pub(crate) struct Infeasible {
    pub target: Target,
    /// The WPA's name, in the target's namespace.
    pub autoscaler: String,
    pub level: Level,
    pub message: String,
}

/// Rejected candidates and why, in the scheduler's order. Thousands of names share a handful of reasons
/// (every node within budget but not chosen gets the same one), so each reason is kept once and the
/// names borrow the request's: a filter over 5,000 candidates neither copies a name nor a reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rejections<'a> {
    entries: Vec<(&'a str, usize)>,
    reasons: Vec<String>,
}

impl<'a> Rejections<'a> {
    /// Adds a reason and returns its handle for [`Rejections::reject`]; the same text as the last one
    /// shares its handle.
    pub(super) fn reason(&mut self, why: String) -> usize {
        if self.reasons.last() == Some(&why) {
            return self.reasons.len() - 1;
        }
        self.reasons.push(why);
        self.reasons.len() - 1
    }

    /// Rejects `name`, which is not rejected yet (the assessment's candidates are distinct).
    pub(super) fn reject(&mut self, name: &'a str, reason: usize) {
        self.entries.push((name, reason));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Each rejected name and its reason, in the scheduler's order.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'a str, &str)> + '_ {
        self.entries.iter().map(|(name, r)| (*name, self.reasons[*r].as_str()))
    }

    /// The distinct reasons, and each rejected name with the position of its reason: what the wire
    /// encodes, each reason once.
    pub(crate) fn parts(&self) -> (&[String], &[(&'a str, usize)]) {
        (&self.reasons, &self.entries)
    }

    #[cfg(test)]
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, why)| why)
    }

    #[cfg(test)]
    pub(crate) fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    #[cfg(test)]
    pub(crate) fn keys(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.entries.iter().map(|(name, _)| *name)
    }
}

#[cfg(test)]
impl std::ops::Index<&str> for Rejections<'_> {
    type Output = String;

    fn index(&self, name: &str) -> &String {
        match self.entries.iter().find(|(n, _)| *n == name) {
            Some((_, r)) => &self.reasons[*r],
            None => panic!("{name} is not rejected"),
        }
    }
}

/// What `filter` decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FilterOutcome<'a> {
    /// What the scheduler gets: for a governed pod the one node chosen among `allowed`; otherwise every
    /// candidate. Never empty when there were candidates.
    pub passed: Vec<String>,
    /// The candidates within budget (or, when none is, the water-fill set), in their order.
    pub allowed: Vec<String>,
    /// Rejected candidates and why.
    pub failed: Rejections<'a>,
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

pub(super) fn distinct<'a>(candidates: &[&'a str]) -> Vec<&'a str> {
    let mut seen = foldhash::HashSet::with_capacity_and_hasher(candidates.len(), Default::default());
    candidates.iter().copied().filter(|c| seen.insert(*c)).collect()
}

/// Decides which candidates may receive the pod. `candidates` are the scheduler's, in its order.
pub(crate) fn filter<'a, V: View + ?Sized>(
    view: &V,
    ledger: &mut Ledger,
    pod: &Pod,
    candidates: &[&'a str],
    now: Instant,
) -> FilterOutcome<'a> {
    let a = match assess(view, ledger, pod, candidates, now) {
        Ok(a) => a,
        Err(reason) => {
            let all: Vec<String> = candidates.iter().map(|c| (*c).to_owned()).collect();
            return FilterOutcome {
                passed: all.clone(),
                allowed: all,
                failed: Rejections::default(),
                mode: Mode::NoOpinion(reason),
                infeasible: Vec::new(),
            };
        }
    };
    let (tiers, infeasible) = tiers(&a);
    let mut failed = Rejections::default();
    let mut set: Vec<&Candidate> = Vec::new();
    for (c, tier) in a.candidates.iter().zip(&tiers) {
        match tier {
            Tier::Within { .. } | Tier::Fill { first: true, .. } => set.push(c),
            Tier::Fill { .. } | Tier::Out => {
                let why = failed.reason(over_reason(&a, c));
                failed.reject(c.name, why);
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
            failed: Rejections::default(),
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
    let chose = failed.reason(format!("wpa: placement chose {best}"));
    for c in &set {
        if c.name != best {
            failed.reject(c.name, chose);
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
pub(crate) mod tests;
