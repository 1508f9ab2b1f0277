use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::{Duration, Instant},
};

use proptest::prelude::*;

use super::*;
use crate::extender::wire::{OwnerReference, Pod, PodMeta, PodSpec, Toleration};

/// A View over plain maps. `pods` is behind a Mutex so a test can show a placement bound mid-burst.
#[derive(Default)]
pub(crate) struct FakeView {
    pub unsynced: bool,
    pub rs_owners: HashMap<(String, String), Owner>,
    pub wpas: HashMap<Target, Autoscaler>,
    pub pods: Mutex<HashMap<Target, Vec<TargetPod>>>,
    pub nodes: BTreeMap<String, NodeState>,
}

impl View for FakeView {
    fn synced(&self) -> bool {
        !self.unsynced
    }
    fn replica_set_owner(&self, namespace: &str, name: &str) -> Option<Owner> {
        self.rs_owners.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }
    fn autoscaler(&self, target: &Target) -> Option<Autoscaler> {
        self.wpas.get(target).cloned()
    }
    fn pods(&self, target: &Target) -> Vec<TargetPod> {
        self.pods.lock().unwrap().get(target).cloned().unwrap_or_default()
    }
    fn for_each_node(&self, visit: &mut dyn FnMut(&str, &NodeState)) {
        for (name, node) in &self.nodes {
            visit(name, node);
        }
    }
}

pub(crate) fn deployment(name: &str) -> Target {
    Target { namespace: "default".into(), kind: "Deployment".into(), name: name.into() }
}

pub(crate) fn ready(zone: Option<&str>) -> NodeState {
    let mut labels = BTreeMap::new();
    if let Some(z) = zone {
        labels.insert("topology.kubernetes.io/zone".to_owned(), z.to_owned());
    }
    NodeState { ready: true, labels, ..NodeState::default() }
}

pub(crate) fn wpa(replicas: i32, percent: i32) -> Autoscaler {
    Autoscaler {
        name: "web-wpa".into(),
        replicas,
        min_available_percentage: percent,
        ..Autoscaler::default()
    }
}

impl FakeView {
    /// A Deployment `web` (ReplicaSet `web-abc`) governed by `wpa`, on nodes n1..=n{nodes} without zones.
    pub(crate) fn web(autoscaler: Autoscaler, nodes: usize) -> FakeView {
        let mut v = FakeView::default();
        v.rs_owners.insert(
            ("default".into(), "web-abc".into()),
            Owner { kind: "Deployment".into(), name: "web".into() },
        );
        v.wpas.insert(deployment("web"), autoscaler);
        for i in 1..=nodes {
            v.nodes.insert(format!("n{i}"), ready(None));
        }
        v
    }

    /// `count` bound replicas of `web` on `node`.
    pub(crate) fn bind(&self, node: &str, count: usize) {
        let mut pods = self.pods.lock().unwrap();
        let list = pods.entry(deployment("web")).or_default();
        for _ in 0..count {
            let uid = format!("bound-{}", list.len());
            list.push(TargetPod { uid, node: Some(node.to_owned()) });
        }
    }

    /// A pod of `web`, unbound, known to the cache.
    fn pending(&self, uid: &str) {
        self.pods
            .lock()
            .unwrap()
            .entry(deployment("web"))
            .or_default()
            .push(TargetPod { uid: uid.to_owned(), node: None });
    }

    /// The cache catches up: `uid` is now bound to `node`.
    fn bound_now(&self, uid: &str, node: &str) {
        let mut pods = self.pods.lock().unwrap();
        let list = pods.entry(deployment("web")).or_default();
        match list.iter_mut().find(|p| p.uid == uid) {
            Some(p) => p.node = Some(node.to_owned()),
            None => list.push(TargetPod { uid: uid.to_owned(), node: Some(node.to_owned()) }),
        }
    }
}

/// A pod of ReplicaSet `web-abc`.
pub(crate) fn web_pod(uid: &str) -> Pod {
    Pod {
        metadata: PodMeta {
            name: format!("web-abc-{uid}"),
            namespace: "default".into(),
            uid: uid.into(),
            labels: BTreeMap::from([("pod-template-hash".to_owned(), "abc".to_owned())]),
            owner_references: vec![OwnerReference {
                kind: "ReplicaSet".into(),
                name: "web-abc".into(),
                controller: true,
            }],
        },
        spec: PodSpec::default(),
    }
}

const NODES4: [&str; 4] = ["n1", "n2", "n3", "n4"];

fn run_filter<'a>(
    v: &FakeView,
    ledger: &mut Ledger,
    uid: &str,
    candidates: &[&'a str],
    now: Instant,
) -> FilterOutcome<'a> {
    filter(v, ledger, &web_pod(uid), candidates, now)
}

fn scores(v: &FakeView, uid: &str, candidates: &[&str]) -> BTreeMap<String, i64> {
    prioritize(v, &mut Ledger::default(), &web_pod(uid), candidates, Instant::now())
        .scores
        .into_iter()
        .map(|(node, score)| (node.to_owned(), score))
        .collect()
}

#[test]
fn budget_is_r_minus_ceil_r_m() {
    // (R, m, B)
    let cases = [
        (8, 70, 2),  // 5.6 → 6 must stay
        (10, 70, 3), // exactly 7
        (10, 50, 5),
        (3, 50, 1), // 1.5 → 2
        (1, 50, 0),
        (2, 70, 0), // the common minReplicas 2: no single loss tolerated
        (4, 75, 1),
        (7, 71, 2), // 4.97 → 5
        (100, 99, 1),
        (5, 0, 5),
        (8, 100, 0),
        (0, 70, 0),
        (8, 150, 0), // clamped to 100
        (8, -5, 8),  // clamped to 0
    ];
    for (r, m, b) in cases {
        assert_eq!(failure_budget(r, m), b, "R={r} m={m}");
    }
}

#[test]
fn nodes_at_the_budget_are_rejected_with_a_reason_in_failed_nodes() {
    let v = FakeView::web(wpa(8, 70), 4);
    v.bind("n1", 2);
    v.bind("n2", 1);
    let out = run_filter(&v, &mut Ledger::default(), "p", &NODES4, Instant::now());
    assert_eq!(out.mode, Mode::Steady);
    assert_eq!(out.allowed, ["n2", "n3", "n4"]);
    assert!(
        out.passed.len() == 1 && out.allowed.contains(&out.passed[0]),
        "one node, among the allowed: {out:?}"
    );
    let over: Vec<&str> = out
        .failed
        .iter()
        .filter(|(_, why)| !why.starts_with("wpa: placement chose"))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(over, ["n1"]);
    assert_eq!(out.failed.len(), 3, "the allowed nodes not chosen are refused too: {out:?}");
    assert_eq!(
        out.failed["n1"],
        "wpa: node holds 2 of 8 replicas of default/web; budget 2 (minAvailableReplicaPercentage=70)"
    );
    assert!(out.infeasible.is_empty());
}

#[test]
fn over_budget_scores_zero_and_within_budget_six_to_ten() {
    // R=20, m=50: B=10.
    let v = FakeView::web(wpa(20, 50), 5);
    v.bind("n1", 10);
    v.bind("n2", 9);
    v.bind("n3", 5);
    v.bind("n4", 1);
    let s = scores(&v, "p", &["n1", "n2", "n3", "n4", "n5"]);
    assert_eq!(s["n1"], 0);
    assert_eq!(s["n5"], 10);
    assert_eq!(s["n2"], 6);
    for n in ["n2", "n3", "n4", "n5"] {
        assert!((6..=10).contains(&s[n]), "{n}: {}", s[n]);
    }
    // Fewer replicas, higher score.
    assert!(s["n5"] >= s["n4"] && s["n4"] >= s["n3"] && s["n3"] >= s["n2"]);
    assert!(s["n5"] > s["n3"] && s["n3"] > s["n2"]);
}

#[test]
fn in_flight_siblings_get_exactly_one_node_and_the_ledger_spreads_the_burst() {
    // 2 → 8 with a cache that never catches up: all eight pods stay Pending in the View.
    let v = FakeView::web(wpa(8, 70), 4);
    let uids: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    for u in &uids {
        v.pending(u);
    }
    let mut ledger = Ledger::default();
    let now = Instant::now();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut previous: Option<String> = None;
    for (i, u) in uids.iter().enumerate() {
        let out = run_filter(&v, &mut ledger, u, &NODES4, now + Duration::from_millis(i as u64));
        assert_eq!(out.mode, Mode::Burst);
        assert_eq!(out.passed.len(), 1, "{out:?}");
        let chosen = out.passed[0].clone();
        // The sibling just placed made its node fuller than the others: the next one goes elsewhere.
        if i % 4 != 0 {
            assert_ne!(Some(&chosen), previous.as_ref());
        }
        for other in NODES4.iter().filter(|n| **n != chosen) {
            assert!(out.failed.contains_key(other));
        }
        *per_node.entry(chosen.clone()).or_default() += 1;
        previous = Some(chosen);
    }
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), [2, 2, 2, 2]);
    assert_eq!(ledger.len(), 8);
}

#[test]
fn a_count_behind_the_pods_is_raised_to_the_replicas_that_exist() {
    // The Deployment watch still says 2 while the pods of the scale to 8 already exist: 2 bound on n1 and 5
    // pending. Against R=2 the budget would be 0 (every node over it); against the 8 that exist it is 2.
    let v = FakeView::web(wpa(2, 70), 4);
    v.bind("n1", 2);
    for i in 0..5 {
        v.pending(&format!("q{i}"));
    }
    let out = run_filter(&v, &mut Ledger::default(), "p", &NODES4, Instant::now());
    assert!(out.infeasible.is_empty(), "{:?}", out.infeasible);
    assert_eq!(out.passed.len(), 1, "siblings are in flight: {out:?}");
    assert_ne!(out.passed[0], "n1");
    assert!(out.failed["n1"].contains("holds 2 of 8 replicas"), "{}", out.failed["n1"]);
}

#[test]
fn a_steady_decision_makes_the_next_sibling_a_burst() {
    let v = FakeView::web(wpa(8, 70), 4);
    let mut ledger = Ledger::default();
    let now = Instant::now();
    let first = run_filter(&v, &mut ledger, "p1", &NODES4, now);
    assert_eq!(first.mode, Mode::Steady);
    assert_eq!(first.allowed, NODES4);
    assert!(
        first.passed.len() == 1 && first.allowed.contains(&first.passed[0]),
        "one node, among the allowed: {first:?}"
    );
    let second = run_filter(&v, &mut ledger, "p2", &NODES4, now);
    assert_eq!(second.mode, Mode::Burst);
    assert_eq!(second.passed.len(), 1);
}

#[test]
fn a_placement_seen_bound_leaves_the_ledger_and_is_counted_once() {
    // R=4, m=50: B=2. p1 goes to n1 in a burst; once the cache shows it there, n1 holds 1, not 2.
    let v = FakeView::web(wpa(4, 50), 2);
    v.bind("n1", 0);
    v.pending("p1");
    v.pending("p2");
    let mut ledger = Ledger::default();
    let now = Instant::now();
    let out = run_filter(&v, &mut ledger, "p1", &["n1"], now);
    assert_eq!(out.passed, ["n1"]);
    v.bound_now("p1", "n1");
    v.bind("n2", 1);
    let out = run_filter(&v, &mut ledger, "p2", &["n1", "n2"], now);
    assert_eq!(out.mode, Mode::Steady, "p1 is bound, nothing is in flight");
    assert_eq!(out.allowed, ["n1", "n2"]);
    assert!(
        out.passed.len() == 1 && out.allowed.contains(&out.passed[0]),
        "one node, among the allowed: {out:?}"
    );
    assert_eq!(ledger.len(), 1, "only p2's own decision remains");
}

#[test]
fn ledger_entries_expire_after_the_ttl() {
    let v = FakeView::web(wpa(4, 50), 2);
    let mut ledger = Ledger::new(Duration::from_secs(5));
    let t0 = Instant::now();
    v.pending("p1");
    v.pending("p2");
    assert_eq!(run_filter(&v, &mut ledger, "p1", &["n1"], t0).passed, ["n1"]);
    // Still in flight one second later: n1 counts p1.
    let out = prioritize(&v, &mut ledger, &web_pod("p3"), &["n1", "n2"], t0 + Duration::from_secs(1));
    assert_eq!(out.scores, [("n1", 6), ("n2", 10)]);
    // Forgotten after the TTL (a pod deleted before it was bound).
    let out = prioritize(&v, &mut ledger, &web_pod("p3"), &["n1", "n2"], t0 + Duration::from_secs(6));
    assert_eq!(out.scores, [("n1", 10), ("n2", 10)]);
    assert_eq!(ledger.len(), 0);
}

#[test]
fn water_fills_and_reports_when_no_node_is_within_budget() {
    // Scenario B of the review: three usable nodes cannot hold 8 with B=2.
    let v = FakeView::web(wpa(8, 70), 3);
    v.bind("n1", 3);
    v.bind("n2", 2);
    v.bind("n3", 2);
    let out = run_filter(&v, &mut Ledger::default(), "p", &["n1", "n2", "n3"], Instant::now());
    assert_eq!(out.allowed, ["n2", "n3"]);
    assert!(
        out.passed.len() == 1 && out.allowed.contains(&out.passed[0]),
        "one node, among the allowed: {out:?}"
    );
    assert!(out.failed.contains_key("n1"));
    assert_eq!(out.infeasible.len(), 1);
    let i = &out.infeasible[0];
    assert_eq!(i.level, Level::Node);
    assert_eq!(i.autoscaler, "web-wpa");
    assert_eq!(i.target, deployment("web"));
    assert!(i.message.contains("needs at least 4 usable nodes, has 3"), "{}", i.message);
    // Prioritize water-fills too, below every within-budget score.
    let s = scores(&v, "p", &["n1", "n2", "n3"]);
    assert_eq!((s["n1"], s["n2"], s["n3"]), (4, 5, 5));
}

#[test]
fn a_zero_budget_still_spreads_and_says_why() {
    // R=2, m=70: ceil(1.4) = 2 must stay, B = 0.
    let v = FakeView::web(wpa(2, 70), 3);
    v.bind("n1", 1);
    let out = run_filter(&v, &mut Ledger::default(), "p", &["n1", "n2", "n3"], Instant::now());
    assert_eq!(out.allowed, ["n2", "n3"]);
    assert!(
        out.passed.len() == 1 && out.allowed.contains(&out.passed[0]),
        "one node, among the allowed: {out:?}"
    );
    assert_eq!(out.infeasible[0].level, Level::Node);
    assert!(out.infeasible[0].message.contains("no room for any loss"), "{}", out.infeasible[0].message);
}

#[test]
fn unready_and_tainted_nodes_are_no_home_and_their_replicas_are_lost() {
    // R=14, m=70: B=4. One replica on a NotReady node, one on a tainted node and one on a node gone from
    // the cache are already lost, so a live node may hold 1 after this placement: c(n) + 1 <= 4 - 3.
    let mut v = FakeView::web(wpa(14, 70), 4);
    v.nodes.insert("n1".into(), NodeState { ready: false, ..ready(None) });
    v.nodes.insert(
        "n2".into(),
        NodeState {
            taints: vec![Taint {
                key: "node.kubernetes.io/unreachable".into(),
                value: String::new(),
                effect: "NoSchedule".into(),
            }],
            ..ready(None)
        },
    );
    v.bind("n1", 1);
    v.bind("n2", 1);
    v.bind("n3", 1);
    v.bind("gone", 1);
    let out = run_filter(&v, &mut Ledger::default(), "p", &NODES4, Instant::now());
    assert_eq!(out.passed, ["n4"]);
    assert_eq!(out.failed["n1"], "wpa: node is not a safe home for default/web: not Ready");
    assert_eq!(
        out.failed["n2"],
        "wpa: node is not a safe home for default/web: taint node.kubernetes.io/unreachable:NoSchedule not tolerated"
    );
    assert!(out.failed["n3"].contains("3 on lost nodes"), "{}", out.failed["n3"]);
    let s = scores(&v, "p", &NODES4);
    assert_eq!((s["n1"], s["n2"], s["n3"], s["n4"]), (0, 0, 0, 10));
}

#[test]
fn a_tolerated_taint_is_a_home() {
    let mut v = FakeView::web(wpa(8, 70), 2);
    let dedicated = Taint { key: "dedicated".into(), value: "web".into(), effect: "NoSchedule".into() };
    v.nodes.insert("n1".into(), NodeState { taints: vec![dedicated], ..ready(None) });
    v.bind("n1", 1);
    let mut pod = web_pod("p");
    let toleration = |op: &str, value: &str| Toleration {
        key: "dedicated".into(),
        operator: op.into(),
        value: value.into(),
        effect: "NoSchedule".into(),
    };
    for tolerations in
        [vec![toleration("Equal", "web")], vec![toleration("Exists", "")], vec![toleration("", "web")]]
    {
        pod.spec.tolerations = tolerations;
        let out = filter(&v, &mut Ledger::default(), &pod, &["n1", "n2"], Instant::now());
        assert_eq!(out.allowed, ["n1", "n2"], "{:?}", pod.spec.tolerations);
        assert!(
            out.passed.len() == 1 && out.allowed.contains(&out.passed[0]),
            "one node, among the allowed: {out:?}"
        );
    }
    pod.spec.tolerations = vec![toleration("Equal", "db")];
    let out = filter(&v, &mut Ledger::default(), &pod, &["n1", "n2"], Instant::now());
    assert_eq!(out.passed, ["n2"]);
}

/// Zones z1{n1} and z2{n2,n3,n4}.
fn one_plus_three(autoscaler: Autoscaler) -> FakeView {
    let mut v = FakeView::web(autoscaler, 0);
    v.nodes.insert("n1".into(), ready(Some("z1")));
    for n in ["n2", "n3", "n4"] {
        v.nodes.insert(n.into(), ready(Some("z2")));
    }
    v
}

#[test]
fn the_budget_applies_per_zone_when_the_zones_can_hold_it() {
    // Scenario C: m=50, R=8, B=4 and two zones of room 4 each. z2 already holds 4.
    let v = one_plus_three(wpa(8, 50));
    v.bind("n2", 2);
    v.bind("n3", 1);
    v.bind("n4", 1);
    let out = run_filter(&v, &mut Ledger::default(), "p", &NODES4, Instant::now());
    assert_eq!(out.passed, ["n1"]);
    assert_eq!(
        out.failed["n3"],
        "wpa: zone z2 holds 4 of 8 replicas of default/web; budget 4 (minAvailableReplicaPercentage=50) per zone"
    );
    assert!(out.infeasible.is_empty());
    let s = scores(&v, "p", &NODES4);
    assert_eq!((s["n1"], s["n2"], s["n3"], s["n4"]), (10, 0, 0, 0));
}

#[test]
fn zone_balance_ranks_nodes_within_budget() {
    let v = one_plus_three(wpa(8, 50));
    v.bind("n1", 1);
    v.bind("n2", 1);
    v.bind("n3", 1);
    // z1 holds 1, z2 holds 2: n4 (empty node, fuller zone) scores below n1's zone-mate would.
    let s = scores(&v, "p", &NODES4);
    assert_eq!(s["n4"], 9);
    assert_eq!(s["n1"], 9);
    assert_eq!(s["n2"], 8);
}

#[test]
fn a_zone_rule_the_zones_cannot_hold_is_reported_not_enforced() {
    // Three zones of one node, R=8, m=70: B=2, so the zones hold at most 6 within budget.
    let mut v = FakeView::web(wpa(8, 70), 0);
    for (n, z) in [("n1", "a"), ("n2", "b"), ("n3", "c"), ("n4", "c")] {
        v.nodes.insert(n.into(), ready(Some(z)));
    }
    v.bind("n3", 1);
    v.bind("n4", 1);
    let out = run_filter(&v, &mut Ledger::default(), "p", &NODES4, Instant::now());
    assert_eq!(out.allowed, NODES4, "the node budget still holds everywhere");
    assert!(
        out.passed.len() == 1 && out.allowed.contains(&out.passed[0]),
        "one node, among the allowed: {out:?}"
    );
    assert_eq!(out.infeasible.len(), 1);
    assert_eq!(out.infeasible[0].level, Level::Zone);
}

#[test]
fn the_zone_rule_gives_way_before_the_node_rule() {
    // Only z2 nodes are candidates (n1 full for the pod's requests), and z2 is at its budget.
    let v = one_plus_three(wpa(8, 50));
    v.bind("n2", 2);
    v.bind("n3", 2);
    let out = run_filter(&v, &mut Ledger::default(), "p", &["n2", "n3", "n4"], Instant::now());
    assert_eq!(out.allowed, ["n2", "n3", "n4"]);
    assert!(
        out.passed.len() == 1 && out.allowed.contains(&out.passed[0]),
        "one node, among the allowed: {out:?}"
    );
    assert_eq!(out.infeasible.iter().map(|i| i.level).collect::<Vec<_>>(), [Level::Zone]);
}

fn capped(cap: &str) -> Autoscaler {
    let mut a = wpa(10, 50);
    a.annotations.insert(MAX_PER_NODE_ANNOTATION.into(), cap.into());
    a
}

#[test]
fn the_cap_annotation_limits_replicas_per_node() {
    // B=5 alone would allow 5 per node; the cap says 2.
    let v = FakeView::web(capped("2"), 3);
    v.bind("n1", 2);
    v.bind("n2", 1);
    let out = run_filter(&v, &mut Ledger::default(), "p", &["n1", "n2", "n3"], Instant::now());
    assert_eq!(out.allowed, ["n2", "n3"]);
    assert!(
        out.passed.len() == 1 && out.allowed.contains(&out.passed[0]),
        "one node, among the allowed: {out:?}"
    );
    assert_eq!(
        out.failed["n1"],
        "wpa: node holds 2 of 10 replicas of default/web; cap 2 (wpa.datadoghq.com/scheduler-max-per-node)"
    );
    // Off by default, and a value that is not a positive integer leaves it off.
    for a in [wpa(10, 50), capped("two"), capped("0")] {
        let v = FakeView::web(a, 3);
        v.bind("n1", 2);
        let out = run_filter(&v, &mut Ledger::default(), "p", &["n1", "n2", "n3"], Instant::now());
        assert_eq!(out.allowed, ["n1", "n2", "n3"]);
    }
}

#[test]
fn the_cap_survives_water_filling_and_gives_way_only_when_every_node_is_at_it() {
    // R=10, m=90: B=1, cap 3. n1 holds 3, n2 and n3 hold 1: nothing within the budget; water-filling keeps
    // n2 and n3 under the cap.
    let mut a = capped("3");
    a.min_available_percentage = 90;
    let v = FakeView::web(a.clone(), 3);
    v.bind("n1", 3);
    v.bind("n2", 1);
    v.bind("n3", 1);
    let out = run_filter(&v, &mut Ledger::default(), "p", &["n1", "n2", "n3"], Instant::now());
    assert_eq!(out.allowed, ["n2", "n3"]);
    assert!(
        out.passed.len() == 1 && out.allowed.contains(&out.passed[0]),
        "one node, among the allowed: {out:?}"
    );
    assert_eq!(out.infeasible.iter().map(|i| i.level).collect::<Vec<_>>(), [Level::Node]);
    // Every candidate at the cap: never an empty answer.
    let v = FakeView::web(a, 2);
    v.bind("n1", 3);
    v.bind("n2", 3);
    let out = run_filter(&v, &mut Ledger::default(), "p", &["n1", "n2"], Instant::now());
    assert_eq!(out.allowed, ["n1", "n2"]);
    assert_eq!(out.passed.len(), 1);
    assert_eq!(out.infeasible.iter().map(|i| i.level).collect::<Vec<_>>(), [Level::Cap, Level::Node]);
}

#[test]
fn a_cap_without_a_percentage_still_applies() {
    let mut a = capped("1");
    a.min_available_percentage = 0;
    let v = FakeView::web(a, 2);
    v.bind("n1", 1);
    let out = run_filter(&v, &mut Ledger::default(), "p", &["n1", "n2"], Instant::now());
    assert_eq!(out.passed, ["n2"]);
}

#[test]
fn pods_without_a_wpa_pass_unchanged_with_neutral_scores() {
    let v = FakeView::web(wpa(8, 70), 4);
    v.bind("n1", 5);
    let candidates = ["n3", "n1", "n2", "n1"];
    let mut ledger = Ledger::default();
    let mut pods = Vec::new();
    // No controller.
    pods.push(Pod {
        metadata: PodMeta { namespace: "default".into(), ..PodMeta::default() },
        ..Pod::default()
    });
    // A DaemonSet pod.
    let mut ds = web_pod("d");
    ds.metadata.owner_references[0].kind = "DaemonSet".into();
    pods.push(ds);
    // A ReplicaSet of another Deployment, and one in another namespace.
    let mut other = web_pod("o");
    other.metadata.owner_references[0].name = "api-abc".into();
    pods.push(other);
    let mut elsewhere = web_pod("e");
    elsewhere.metadata.namespace = "prod".into();
    pods.push(elsewhere);
    for pod in &pods {
        let out = filter(&v, &mut ledger, pod, &candidates, Instant::now());
        assert_eq!(out.passed, candidates, "{pod:?}");
        assert!(out.failed.is_empty());
        assert_eq!(out.mode, Mode::NoOpinion(NoOpinion::NotGoverned));
        let s = prioritize(&v, &mut ledger, pod, &candidates, Instant::now());
        assert_eq!(s.scores, [("n3", 0), ("n1", 0), ("n2", 0)]);
    }
    assert_eq!(ledger.len(), 0);
}

#[test]
fn no_opinion_without_a_budget_or_before_the_caches_sync() {
    for (autoscaler, reason) in [(wpa(8, 0), NoOpinion::NoBudget), (wpa(0, 70), NoOpinion::NoBudget)] {
        let v = FakeView::web(autoscaler, 2);
        v.bind("n1", 5);
        let out = run_filter(&v, &mut Ledger::default(), "p", &["n1", "n2"], Instant::now());
        assert_eq!((out.passed.len(), out.mode), (2, Mode::NoOpinion(reason)));
    }
    let mut v = FakeView::web(wpa(8, 70), 2);
    v.unsynced = true;
    v.bind("n1", 5);
    let out = run_filter(&v, &mut Ledger::default(), "p", &["n1", "n2"], Instant::now());
    assert_eq!((out.passed.len(), out.mode), (2, Mode::NoOpinion(NoOpinion::NotSynced)));
}

#[test]
fn the_owner_chain_reaches_deployments_statefulsets_and_bare_replicasets() {
    // The ReplicaSet is not in the cache yet: its pod-template-hash name still leads to the Deployment.
    let mut v = FakeView::web(wpa(8, 70), 2);
    v.rs_owners.clear();
    v.bind("n1", 2);
    let out = run_filter(&v, &mut Ledger::default(), "p", &["n1", "n2"], Instant::now());
    assert_eq!(out.passed, ["n2"]);

    // A WPA on a StatefulSet.
    let sts = Target { namespace: "default".into(), kind: "StatefulSet".into(), name: "db".into() };
    let mut v = FakeView::default();
    v.wpas.insert(sts.clone(), wpa(4, 75));
    v.nodes.insert("n1".into(), ready(None));
    v.nodes.insert("n2".into(), ready(None));
    v.pods.lock().unwrap().insert(sts, vec![TargetPod { uid: "db-0".into(), node: Some("n1".into()) }]);
    let mut pod = web_pod("db-1");
    pod.metadata.labels.clear();
    pod.metadata.owner_references =
        vec![OwnerReference { kind: "StatefulSet".into(), name: "db".into(), controller: true }];
    let out = filter(&v, &mut Ledger::default(), &pod, &["n1", "n2"], Instant::now());
    assert_eq!(out.passed, ["n2"]);
    // A non-controller owner is not a controller chain.
    pod.metadata.owner_references[0].controller = false;
    let out = filter(&v, &mut Ledger::default(), &pod, &["n1", "n2"], Instant::now());
    assert_eq!(out.mode, Mode::NoOpinion(NoOpinion::NotGoverned));

    // A WPA on the ReplicaSet itself.
    let rs = Target { namespace: "default".into(), kind: "ReplicaSet".into(), name: "web-abc".into() };
    let mut v = FakeView::default();
    v.wpas.insert(rs.clone(), wpa(4, 75));
    v.nodes.insert("n1".into(), ready(None));
    v.nodes.insert("n2".into(), ready(None));
    v.pods.lock().unwrap().insert(rs, vec![TargetPod { uid: "x".into(), node: Some("n2".into()) }]);
    let out = run_filter(&v, &mut Ledger::default(), "p", &["n1", "n2"], Instant::now());
    assert_eq!(out.passed, ["n1"]);
}

#[test]
fn a_node_unknown_to_the_cache_is_a_candidate_like_any() {
    let v = FakeView::web(wpa(8, 70), 1);
    v.bind("n1", 2);
    let out = run_filter(&v, &mut Ledger::default(), "p", &["n1", "brand-new"], Instant::now());
    assert_eq!(out.passed, ["brand-new"]);
}

#[test]
fn every_candidate_lost_still_passes_some() {
    let mut v = FakeView::web(wpa(8, 70), 2);
    for n in ["n1", "n2"] {
        v.nodes.insert(n.into(), NodeState { ready: false, ..ready(None) });
    }
    let out = run_filter(&v, &mut Ledger::default(), "p", &["n1", "n2"], Instant::now());
    assert_eq!(out.allowed, ["n1", "n2"]);
    assert!(
        out.passed.len() == 1 && out.allowed.contains(&out.passed[0]),
        "one node, among the allowed: {out:?}"
    );
    assert_eq!(out.infeasible[0].level, Level::Node);
}

#[test]
fn node_state_from_a_kubernetes_node() {
    let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "n3", "labels": {"failure-domain.beta.kubernetes.io/zone": "old"}},
        "spec": {"unschedulable": true, "taints": [
            {"key": "a", "effect": "PreferNoSchedule"},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]},
        "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}
    }))
    .unwrap();
    let state = NodeState::from(&node);
    assert!(!state.ready);
    assert!(state.unschedulable);
    assert_eq!(state.taints.len(), 1);
    assert_eq!(zone_of(&state.labels), Some("old"));
}

proptest! {
    #[test]
    fn answers_are_never_empty_subsets_and_scores_stay_in_range(
        r in 0i32..30,
        m in 0i32..=100,
        cap in proptest::option::of(0i64..5),
        nodes in proptest::collection::vec((0usize..6, any::<bool>(), 0usize..3), 1..7),
        pending in 0usize..3,
        subset in 1usize..7,
    ) {
        let mut a = wpa(r, m);
        if let Some(c) = cap {
            a.annotations.insert(MAX_PER_NODE_ANNOTATION.into(), c.to_string());
        }
        let mut v = FakeView::web(a, 0);
        let names: Vec<String> = (0..nodes.len()).map(|i| format!("n{i}")).collect();
        for (name, (count, is_ready, zone)) in names.iter().zip(&nodes) {
            let zone = ["a", "b", "c"][*zone];
            v.nodes.insert(name.clone(), NodeState { ready: *is_ready, ..ready(Some(zone)) });
            v.bind(name, *count);
        }
        for i in 0..pending {
            v.pending(&format!("q{i}"));
        }
        let candidates: Vec<&str> = names.iter().take(subset).map(String::as_str).collect();
        let mut ledger = Ledger::default();
        let now = Instant::now();
        for step in 0..3 {
            let uid = format!("p{step}");
            let out = filter(&v, &mut ledger, &web_pod(&uid), &candidates, now);
            prop_assert!(!out.passed.is_empty());
            prop_assert!(out.passed.iter().all(|p| candidates.contains(&p.as_str())));
            prop_assert!(out.passed.iter().all(|p| !out.failed.contains_key(p)));
            prop_assert!(out.failed.keys().all(|f| candidates.contains(&f)));
            let s = prioritize(&v, &mut ledger, &web_pod(&uid), &candidates, now);
            prop_assert_eq!(s.scores.len(), candidates.len());
            prop_assert!(s.scores.iter().all(|(_, x)| (0..=MAX_PRIORITY).contains(x)));
        }
    }
}
