//! The ranking of the candidates: within every budget (graded by penalties), water-filling when nothing
//! is, or out; and which rules had to give way (reported as [`Infeasible`]).

use std::fmt::Write as _;

use foldhash::HashSet;

use super::{
    Infeasible, Level, MAX_PER_NODE_ANNOTATION,
    assess::{Assessment, Candidate},
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Tier {
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

pub(super) fn over_reason(a: &Assessment, c: &Candidate) -> String {
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

/// Ranks the candidates, and says which rules had to give way: every candidate within the budgets that
/// are within them; else, when the zone budget is what no node meets, water-filling over zones; else over
/// nodes.
pub(super) fn tiers(a: &Assessment) -> (Vec<Tier>, Vec<Infeasible>) {
    let mut infeasible = Vec::new();
    if a.zoned && a.k_zone.is_none() {
        infeasible.push(report(
            a,
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
    let tiers =
        within(a).or_else(|| zone_fill(a, &mut infeasible)).unwrap_or_else(|| node_fill(a, &mut infeasible));
    (tiers, infeasible)
}

fn report(a: &Assessment, level: Level, message: String) -> Infeasible {
    Infeasible { target: a.gov.target.clone(), autoscaler: a.gov.autoscaler.clone(), level, message }
}

fn node_ok(a: &Assessment, c: &Candidate) -> bool {
    c.safe.is_ok() && c.count < a.k_node
}

/// The candidates within every budget, graded; `None` when there is none.
fn within(a: &Assessment) -> Option<Vec<Tier>> {
    let zone_ok = |c: &Candidate| match (a.k_zone, &c.zone) {
        (Some(k), Some(_)) => c.zone_count < k,
        _ => true,
    };
    let within: Vec<bool> = a.candidates.iter().map(|c| node_ok(a, c) && zone_ok(c)).collect();
    if !within.iter().any(|w| *w) {
        return None;
    }
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
    Some(tiers)
}

/// Nodes within their own budget exist, but none in a zone within the zone budget: the zones with the
/// fewest replicas first. `None` when the zone budget is not what fails.
fn zone_fill(a: &Assessment, infeasible: &mut Vec<Infeasible>) -> Option<Vec<Tier>> {
    if a.k_zone.is_none() || !a.candidates.iter().any(|c| node_ok(a, c)) {
        return None;
    }
    let min = a.candidates.iter().filter(|c| node_ok(a, c)).map(|c| c.zone_count).min().unwrap_or(0);
    infeasible.push(report(
        a,
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
            if node_ok(a, c) {
                Tier::Fill { excess: c.zone_count - min, first: c.zone_count == min }
            } else {
                Tier::Out
            }
        })
        .collect();
    Some(tiers)
}

/// No node is within budget: the safe nodes (under the cap, unless all are at it) with the fewest replicas
/// first; every candidate when none is safe by our caches.
fn node_fill(a: &Assessment, infeasible: &mut Vec<Infeasible>) -> Vec<Tier> {
    let r = a.gov.replicas;
    let safe: Vec<&Candidate> = a.candidates.iter().filter(|c| c.safe.is_ok()).collect();
    let under_cap = |c: &Candidate| a.gov.cap.is_none_or(|cap| c.count < cap);
    let mut pool: Vec<&Candidate> = safe.iter().copied().filter(|c| under_cap(c)).collect();
    if pool.is_empty() && !safe.is_empty() {
        infeasible.push(report(
            a,
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
    infeasible.push(report(a, Level::Node, format!("{message}; {}", budget_text(a))));
    let zone_key = |c: &Candidate| if a.zoned { c.zone_count } else { 0 };
    let min_count = pool.iter().map(|c| c.count).min().unwrap_or(0);
    let min_zone = pool.iter().filter(|c| c.count == min_count).map(|c| zone_key(c)).min().unwrap_or(0);
    let in_pool: HashSet<&str> = pool.iter().map(|c| c.name).collect();
    a.candidates
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
        .collect()
}

/// FNV-1a: a tie-break that is stable across processes and restarts, unlike `RandomState`.
pub(super) fn stable_hash(a: &str, b: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.bytes().chain([0u8]).chain(b.bytes()) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
