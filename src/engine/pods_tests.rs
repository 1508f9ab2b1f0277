//! Which pods count (docs/semantics.md §6.5), at this module's boundary: the parsers, the owner heuristic on
//! non-ASCII names, readiness with an unset or extreme delay, zero pods, the order of `groupPods`' checks and
//! the tally of why pods were ignored. Upstream's and the reference vectors' cases run in
//! `tests/upstream_vectors.rs`.

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::*;

fn now() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().expect("a timestamp")
}

fn ago(seconds: i64) -> Timestamp {
    now() - SignedDuration::from_secs(seconds)
}

fn rs(name: &str) -> OwnerRef {
    OwnerRef { kind: OwnerKind::ReplicaSet, name: name.into() }
}

/// A pod of `web` (ReplicaSet `web-5d8c`), started 700 s ago, Ready transition 600 s ago.
fn pod(name: &str, phase: PodPhase, ready: ConditionStatus) -> PodInfo {
    crate::engine::fixtures::pod(name, phase, ready, "web-5d8c", now())
}

#[test]
fn the_parsers_are_exact_and_case_sensitive() {
    // Kubernetes writes `Running`, `True`, `ReplicaSet`; anything else is not that value.
    assert_eq!(PodPhase::parse("Running"), PodPhase::Running);
    assert_eq!(PodPhase::parse("running"), PodPhase::Unknown);
    assert_eq!(PodPhase::parse(""), PodPhase::Unknown);
    assert_eq!(ConditionStatus::parse("True"), ConditionStatus::True);
    assert_eq!(ConditionStatus::parse("true"), ConditionStatus::Unknown);
    assert_eq!(ConditionStatus::parse("False"), ConditionStatus::False);
    assert_eq!(OwnerKind::parse("ReplicaSet"), OwnerKind::ReplicaSet);
    assert_eq!(OwnerKind::parse("replicaset"), OwnerKind::Other);
}

/// Target names as Kubernetes allows them, with a non-ASCII letter mixed in: the cut works on bytes, and a
/// UTF-8 character never contains the byte of `-`.
const NAME: &str = "[a-zé][a-z0-9é]{0,6}(-[a-z0-9é]{1,6}){0,2}";

proptest! {
    /// §6.5: a ReplicaSet's name is cut at its last `-`, so `<target>-<hash>` belongs to the target.
    #[test]
    fn a_replicaset_named_after_its_target_and_a_hash_matches_the_target(
        target in NAME,
        hash in "[a-z0-9é]{1,10}",
    ) {
        let owners = [rs(&format!("{target}-{hash}"))];
        prop_assert!(owner_matches(&owners, &target));
    }

    /// §6.5: any other kind is compared by its full name (kind, UID and the controller flag are not checked).
    #[test]
    fn an_owner_of_another_kind_matches_only_by_its_full_name(target in NAME, suffix in "-[a-z0-9é]{1,6}") {
        let other = |name: String| [OwnerRef { kind: OwnerKind::Other, name }];
        prop_assert!(owner_matches(&other(target.clone()), &target));
        let longer = format!("{target}{suffix}");
        prop_assert!(!owner_matches(&other(longer), &target));
    }
}

#[test]
fn a_pending_pod_is_never_ready_with_the_default_readiness_delay_of_zero() {
    // §2.1: readinessDelaySeconds defaults to 0, and the grace is strict (`now − transition < delay`): even a
    // pod whose Ready condition changed this very instant is not ready.
    let mut p = pod("web-5d8c-0", PodPhase::Pending, ConditionStatus::True);
    p.ready = Some(ReadyCondition { status: ConditionStatus::True, last_transition: Some(now()) });
    assert_eq!(count_ready_pods(&[p], "web", 0, false, now()), ReadyCount { ready: 0, incorrect: 0 });
}

#[test]
fn the_longest_readiness_delay_keeps_a_long_pending_pod_ready() {
    // i32::MAX seconds (68 years) of grace: no overflow, the pod still counts.
    let p = pod("web-5d8c-0", PodPhase::Pending, ConditionStatus::False);
    assert_eq!(count_ready_pods(&[p], "web", i32::MAX, false, now()).ready, 1);
}

#[test]
fn a_pending_pod_without_a_ready_transition_time_is_not_in_its_grace_period() {
    // Go reads the missing time as the zero time: the pod has been pending "forever".
    let mut p = pod("web-5d8c-0", PodPhase::Pending, ConditionStatus::False);
    p.ready = Some(ReadyCondition { status: ConditionStatus::False, last_transition: None });
    assert_eq!(count_ready_pods(&[p], "web", 30, false, now()).ready, 0);
}

#[test]
fn zero_pods_count_nothing_and_are_reported_as_none_ready() {
    // §6.5 step 5, with the pod count of the message at 0.
    assert_eq!(count_ready_pods(&[], "web", 0, false, now()), ReadyCount::default());
    let e = ready_pods_count(&[], "web", 0, false, now()).expect_err("no pod at all");
    assert_eq!(e.0, "among the 0 pods, none is ready. Skipping recommendation");
}

#[test]
fn the_owner_check_comes_before_the_phase_and_the_metrics_in_group_pods() {
    // §6.5 groupPods step 1: a foreign pod is neither ready nor ignored (it stays in the denominator), even
    // when it is Pending and has no sample.
    let mut foreign = pod("api-77-0", PodPhase::Pending, ConditionStatus::False);
    foreign.owners = vec![rs("api-77")];
    let g = group_pods(&[foreign], &BTreeSet::new(), "cpu", "web", 0, false);
    assert_eq!(g.unowned, BTreeSet::from(["api-77-0".to_string()]));
    assert!(g.ignored.is_empty() && g.missing.is_empty() && g.ready.is_empty());
}

#[test]
fn ignored_pods_are_tallied_by_why_they_were_ignored() {
    // §6.5 groupPods steps 2 and 4, for cpu with a 30 s readiness delay.
    let pending = pod("p", PodPhase::Pending, ConditionStatus::True);
    let failed = pod("f", PodPhase::Failed, ConditionStatus::False);
    let not_ready = pod("n", PodPhase::Running, ConditionStatus::False);
    let mut no_start = pod("s", PodPhase::Running, ConditionStatus::True);
    no_start.start_time = None;
    let mut fast = pod("w", PodPhase::Running, ConditionStatus::True);
    fast.ready = Some(ReadyCondition { status: ConditionStatus::True, last_transition: Some(ago(690)) });
    let ready = pod("r", PodPhase::Running, ConditionStatus::True);
    let pods = [pending, failed, not_ready, no_start, fast, ready];
    let with_metrics: BTreeSet<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    let g = group_pods(&pods, &with_metrics, "cpu", "web", 30, false);
    assert_eq!(g.why_ignored, Ignored { pending_or_failed: 2, not_ready: 2, ready_within_delay: 1 });
    assert_eq!(g.ready, BTreeSet::from(["r".to_string()]));
    assert_eq!(g.ignored.len(), 5);
}

#[test]
fn a_cpu_pod_whose_start_plus_delay_is_past_the_last_representable_time_is_ignored() {
    // §6.5 groupPods step 4: `start + delay > transition` holds when the sum is beyond any timestamp.
    let mut p = pod("web-5d8c-0", PodPhase::Running, ConditionStatus::True);
    p.start_time = Some(Timestamp::MAX - SignedDuration::from_secs(10));
    p.ready = Some(ReadyCondition { status: ConditionStatus::True, last_transition: Some(Timestamp::MAX) });
    let g = group_pods(&[p], &BTreeSet::from(["web-5d8c-0"]), "cpu", "web", 60, false);
    assert_eq!(g.why_ignored.ready_within_delay, 1);
    assert!(g.ready.is_empty());
}

#[test]
fn the_first_condition_of_a_type_is_the_one_read() {
    // Go's getPodCondition returns the first match.
    assert_eq!(pod_condition_index(&["PodScheduled", "Ready", "Ready"], "Ready"), Some(1));
    assert_eq!(pod_condition_index::<&str>(&[], "Ready"), None);
}
