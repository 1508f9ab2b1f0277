//! Rate limits and the bounds (`convertDesiredReplicasWithRules`, docs/semantics.md §6.10) as general
//! properties, with the edges upstream's table does not reach: saturation (our decision 10), min == max,
//! zero replicas, minReplicas unset, and the ready-count guard at its boundary.

use proptest::prelude::*;

use super::*;

fn q(s: &str) -> Quantity {
    Quantity::parse(s).expect("a quantity")
}

fn normalize_with(
    min: i32,
    max: i32,
    up: &str,
    down: &str,
    current: i32,
    desired: i32,
    ready: i32,
) -> Normalized {
    let (up, down) = (q(up), q(down));
    normalize(&Bounds { min, max, up_factor: Some(&up), down_factor: Some(&down) }, current, desired, ready)
}

/// A factor in percent as the spec may hold it (milli precision, 0 included).
fn factor() -> impl Strategy<Value = String> {
    prop_oneof![Just("0".to_string()), (1i64..=300_000).prop_map(|m| format!("{m}m"))]
}

/// A consistent setting: 1 ≤ min ≤ current ≤ max, as upstream's precedence expects after the forced
/// corrections (§6.3 step 13).
fn setting() -> impl Strategy<Value = (i32, i32, i32)> {
    (1i32..=200, 0i32..=200, 0i32..=200).prop_map(|(min, a, b)| (min, min + a, min + a + b))
}

proptest! {
    /// §6.10: with the count inside [min, max], normalization never leaves [min, max].
    #[test]
    fn a_normalized_count_stays_within_min_and_max(
        (min, current, max) in setting(),
        desired in 0i32..=1_000,
        ready in 0i32..=400,
        up in factor(),
        down in factor(),
    ) {
        let n = normalize_with(min, max, &up, &down, current, desired, ready);
        prop_assert!((min..=max).contains(&n.replicas), "{n:?}");
    }

    /// §17.5: limits never move the count against the proposal's direction.
    #[test]
    fn a_normalized_count_never_moves_against_the_proposal(
        (min, current, max) in setting(),
        desired in 0i32..=1_000,
        ready in 0i32..=400,
        up in factor(),
        down in factor(),
    ) {
        let n = normalize_with(min, max, &up, &down, current, desired, ready);
        if desired >= current {
            prop_assert!(n.replicas >= current, "{n:?}");
        }
        if desired <= current {
            prop_assert!(n.replicas <= current, "{n:?}");
        }
    }

    /// §6.10 / §17.4: one pass moves the count by at most one rate-limited step each way.
    #[test]
    fn a_normalized_count_stays_within_one_rate_limited_step(
        (min, current, max) in setting(),
        desired in 0i32..=1_000,
        ready in 0i32..=400,
        up in factor(),
        down in factor(),
    ) {
        let n = normalize_with(min, max, &up, &down, current, desired, ready);
        prop_assert_eq!(n.up_limit, scale_up_limit(Some(&q(&up)), current));
        prop_assert_eq!(n.down_limit, scale_down_limit(Some(&q(&down)), current));
        prop_assert!((n.down_limit..=n.up_limit).contains(&n.replicas), "{n:?}");
    }

    /// The restriction gauges read `clamped`: it is set exactly when the proposal was changed.
    #[test]
    fn a_normalization_is_clamped_exactly_when_it_changed_the_proposal(
        (min, current, max) in setting(),
        desired in 0i32..=1_000,
        ready in 0i32..=400,
        up in factor(),
        down in factor(),
    ) {
        let n = normalize_with(min, max, &up, &down, current, desired, ready);
        prop_assert_eq!(n.clamped, n.replicas != desired, "{:?}", n);
        prop_assert_eq!(n.limit == Limit::DesiredWithinRange, !n.clamped);
    }

    /// §6.10: "the step is always at least 1 replica"; with our decision 10, up to i32::MAX and no further.
    #[test]
    fn a_nonzero_up_factor_adds_at_least_one_replica_until_i32_max(
        current in prop_oneof![0i32..=10_000, (i32::MAX - 10)..=i32::MAX],
        up in (1i64..=10_000_000).prop_map(|m| format!("{m}m")),
    ) {
        let limit = scale_up_limit(Some(&q(&up)), current);
        prop_assert!(limit > current || limit == i32::MAX, "{current} -> {limit}");
    }

    /// The mirror rule for downscales: at least one replica less (from i32::MIN on, nothing less).
    #[test]
    fn a_nonzero_down_factor_removes_at_least_one_replica(
        current in 0i32..=1_000_000,
        down in (1i64..=99_999).prop_map(|m| format!("{m}m")),
    ) {
        let limit = scale_down_limit(Some(&q(&down)), current);
        prop_assert!(limit < current, "{current} -> {limit}");
    }
}

#[test]
fn a_huge_up_factor_saturates_the_scale_up_limit_at_i32_max() {
    // Our decision 10: upstream's int32(float64) gives -2147483648 past the range; the limit saturates instead.
    assert_eq!(scale_up_limit(Some(&q("1e15")), 1_000), i32::MAX);
    assert_eq!(scale_up_limit(Some(&q("999999999999999999999")), 4), i32::MAX);
}

#[test]
fn a_huge_down_factor_saturates_the_scale_down_limit_at_i32_min() {
    // Our decision 10 for the other direction (validation refuses such a factor; the engine still must not wrap).
    assert_eq!(scale_down_limit(Some(&q("1e15")), 1_000), i32::MIN);
}

#[test]
fn an_unset_factor_disables_its_direction() {
    // Validation refuses a nil factor (§8 rule 4) and defaulting fills 50 and 20; should one still reach the
    // engine, that direction is held (as with an exact 0) rather than left without a limit.
    assert_eq!(scale_up_limit(None, 7), 7);
    assert_eq!(scale_down_limit(None, 7), 7);
}

#[test]
fn a_ready_count_equal_to_the_down_limit_keeps_the_capped_downscale() {
    // §6.10: the downscale is dropped only when 0 < ready < minAllowed (strict); 20 % of 10 gives 8.
    let n = normalize_with(1, 20, "50", "20", 10, 2, 8);
    assert_eq!((n.replicas, n.limit), (8, Limit::ScaleDownLimit));
}

#[test]
fn a_ready_count_just_under_the_down_limit_drops_the_downscale_entirely() {
    let n = normalize_with(1, 20, "50", "20", 10, 2, 7);
    assert_eq!((n.replicas, n.limit), (10, Limit::ScaleDownLimit));
}

#[test]
fn a_ready_count_of_zero_never_drops_the_downscale() {
    // §6.10: `0 < ready` is part of the guard; zero ready pods (unknown) keep the rate-limited downscale.
    let n = normalize_with(1, 20, "50", "20", 10, 2, 0);
    assert_eq!((n.replicas, n.limit), (8, Limit::ScaleDownLimit));
}

#[test]
fn min_equal_to_max_pins_the_count_whatever_the_proposal() {
    for desired in [0, 1, 4, 5, 6, 50, i32::MAX] {
        let n = normalize_with(5, 5, "50", "20", 5, desired, 5);
        assert_eq!(n.replicas, 5, "desired {desired}: {n:?}");
    }
}

#[test]
fn without_min_replicas_the_floor_is_one_and_no_down_limit_or_reason_applies() {
    // §6.10: `min == 0` gives minAllowed = 1 with an empty reason (unreachable after defaulting).
    let n = normalize_with(0, 20, "50", "20", 10, 0, 10);
    assert_eq!((n.replicas, n.limit), (1, Limit::Unset));
    assert_eq!((n.limit.reason(), n.limit.message()), ("", ""));
}

#[test]
fn from_zero_replicas_an_upscale_reaches_one_replica() {
    // §6.10: the step is at least 1, also from 0 (floor(50 % of 0) = 0).
    let n = normalize_with(1, 20, "50", "20", 0, 9, 0);
    assert_eq!((n.replicas, n.limit), (1, Limit::ScaleUpLimit));
}

#[test]
fn a_proposal_below_min_within_the_down_rate_is_raised_to_min_as_too_few_replicas() {
    // 50 % of 10 allows 5; 6 is within the rate but below minReplicas 7.
    let n = normalize_with(7, 20, "50", "50", 10, 6, 10);
    assert_eq!((n.replicas, n.limit), (7, Limit::TooFewReplicas));
}

#[test]
fn each_limit_carries_upstreams_condition_reason_and_message() {
    // §3, ScalingLimited: dashboards and alerts match on these strings.
    let expected = [
        (
            Limit::ScaleDownLimit,
            "ScaleDownLimit",
            "the desired replica count is decreasing faster than the maximum scale rate",
        ),
        (
            Limit::TooFewReplicas,
            "TooFewReplicas",
            "the desired replica count is below the minimum replica count",
        ),
        (
            Limit::ScaleUpLimit,
            "ScaleUpLimit",
            "the desired replica count is increasing faster than the maximum scale rate",
        ),
        (
            Limit::TooManyReplicas,
            "TooManyReplicas",
            "the desired replica count is above the maximum replica count",
        ),
        (Limit::DesiredWithinRange, "DesiredWithinRange", "the desired count is within the acceptable range"),
    ];
    for (limit, reason, message) in expected {
        assert_eq!((limit.reason(), limit.message()), (reason, message));
    }
}
