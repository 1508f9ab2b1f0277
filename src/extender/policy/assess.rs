//! One governed pod, assessed in phases that each read the caches once: who governs it ([`govern`]), where
//! its siblings are ([`census`]: bound, pending, and our own placements still in flight), what the node cache
//! says of the candidates and of the nodes holding siblings ([`survey`]), and what the failure budget
//! leaves ([`budget`]).

use std::time::Instant;

// Thousands of node names are hashed per request (every candidate, every node of the cache): foldhash costs a
// fraction of SipHash there. The names come from the scheduler and the API server, not from a tenant.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::{
    NoOpinion, View, failure_budget,
    govern::{Governed, govern},
    ledger::{Ledger, pod_key},
    nodes::{Facts, UNSEEN, Unsafe, safety, selector_matches},
    zone_of,
};
use crate::extender::wire::Pod;

#[derive(Clone, Debug)]
pub(super) struct Candidate<'a> {
    pub(super) name: &'a str,
    pub(super) safe: Result<(), Unsafe>,
    pub(super) count: i64,
    pub(super) zone: Option<usize>,
    pub(super) zone_count: i64,
}

/// Everything a decision about one governed pod reads, counted once.
#[derive(Debug)]
pub(super) struct Assessment<'a> {
    pub(super) gov: Governed,
    pub(super) key: String,
    /// Replicas on nodes that are not safe homes.
    pub(super) lost: i64,
    /// `B - lost`: the most replicas one more loss may take.
    pub(super) k_budget: i64,
    /// A node is within limits iff `count + 1 <= k_node` (budget and cap).
    pub(super) k_node: i64,
    /// `Some(B - lost)` when the zones can hold `R` replicas within the budget.
    pub(super) k_zone: Option<i64>,
    /// At least two zones: zone balance ranks nodes.
    pub(super) zoned: bool,
    /// The zones seen on nodes, numbered by first sight (what [`Candidate::zone`] indexes).
    pub(super) zone_names: Vec<String>,
    pub(super) zones: usize,
    /// Usable nodes (safe, matching the pod's nodeSelector).
    pub(super) capacity: i64,
    pub(super) min_zone_count: i64,
    pub(super) in_flight: usize,
    pub(super) candidates: Vec<Candidate<'a>>,
}

pub(super) fn assess<'a, V: View + ?Sized>(
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
    let census = census(view, ledger, &mut gov, &key, now);
    let survey = survey(view, pod, candidates, &census.per_node);
    Ok(budget(gov, key, census, survey))
}

/// Where the target's other replicas are.
struct Census {
    /// Replicas per node: the bound ones, and ours in flight where we sent them.
    per_node: HashMap<String, i64>,
    /// Siblings not bound yet (pending in the cache, or placed by us and not seen bound).
    in_flight: usize,
}

/// Counts the target's replicas per node, from the pod cache and from the ledger (our placements the cache
/// does not show bound yet). In a burst, the replicas that exist raise `gov`'s count to at least them.
fn census<V: View + ?Sized>(
    view: &V,
    ledger: &mut Ledger,
    gov: &mut Governed,
    key: &str,
    now: Instant,
) -> Census {
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
    Census { per_node, in_flight }
}

/// What the node cache says of the candidates and of the nodes holding replicas.
struct Survey<'a> {
    /// The distinct candidates, in the scheduler's order.
    names: Vec<&'a str>,
    /// A candidate's position in `names`.
    index: HashMap<&'a str, usize>,
    /// Per candidate (by position).
    facts: Vec<Facts>,
    /// Nodes holding replicas of the target that are not candidates (they still decide what is lost).
    holders: HashMap<String, Facts>,
    /// Zones, numbered by first sight.
    zone_names: Vec<String>,
    /// Usable nodes per zone number; a zone with none is no zone for the budget.
    zone_capacity: Vec<i64>,
    /// Usable nodes: safe, matching the pod's nodeSelector.
    capacity: i64,
}

fn survey<'a, V: View + ?Sized>(
    view: &V,
    pod: &Pod,
    candidates: &[&'a str],
    per_node: &HashMap<String, i64>,
) -> Survey<'a> {
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
    let mut holders: HashMap<String, Facts> = HashMap::new();
    let mut zone_ids: HashMap<String, usize> = HashMap::new();
    let mut zone_names: Vec<String> = Vec::new();
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
        } else if per_node.contains_key(name) {
            holders.insert(name.to_owned(), Facts { safe, zone });
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
    Survey { names, index, facts, holders, zone_names, zone_capacity, capacity }
}

/// What the failure budget leaves once the replicas on unsafe nodes are counted as lost.
fn budget<'a>(gov: Governed, key: String, census: Census, survey: Survey<'a>) -> Assessment<'a> {
    let Survey { names, index, facts, holders, zone_names, zone_capacity, capacity } = survey;
    let mut lost = 0i64;
    let mut zone_count: Vec<i64> = vec![0; zone_names.len()];
    let mut counts: Vec<i64> = vec![0; names.len()];
    for (node, count) in &census.per_node {
        let f = match index.get(node.as_str()) {
            Some(&i) => {
                counts[i] = *count;
                Some(&facts[i])
            }
            None => holders.get(node),
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

    Assessment {
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
        in_flight: census.in_flight,
        candidates,
    }
}
