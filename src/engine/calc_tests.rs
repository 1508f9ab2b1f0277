//! The replica calculator's own rules (docs/semantics.md §6.4–§6.8), at the calculator's boundary. The
//! worked examples of upstream's tests and of the reference vectors are run by `tests/upstream_vectors.rs`;
//! these tests pin the rules in general form (properties) and the edges the vectors do not reach.

use std::collections::BTreeMap;

use jiff::Timestamp;
use proptest::prelude::*;

use super::*;
use crate::engine::{
    fixtures,
    pods::{ConditionStatus, PodInfo, PodPhase},
};

fn now() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().expect("a timestamp")
}

/// A defaulted spec as the calculator sees it: tolerance 100m, modulo 1, no convergence, 1..=100 replicas.
fn spec() -> CalcSpec {
    CalcSpec {
        tolerance_milli: 100,
        modulo: 1,
        converge: Converge::Off,
        min_replicas: Some(1),
        max_replicas: 100,
        average: false,
        tolerate_zero: false,
        readiness_delay_seconds: 0,
        min_available_percentage: 0,
        skip_owner_check: false,
    }
}

fn with_converge(converge: Converge, modulo: i32) -> CalcSpec {
    CalcSpec { converge, modulo, ..spec() }
}

fn scale(spec_replicas: i32, status_replicas: i32) -> ScaleInfo {
    fixtures::scale("prod", "web", spec_replicas, status_replicas)
}

/// A pod of the target `web` (through its ReplicaSet), started 700 s ago, with the given phase and Ready.
fn pod(name: &str, phase: PodPhase, ready: ConditionStatus) -> PodInfo {
    fixtures::pod(name, phase, ready, "web-5d8c", now())
}

fn ready_pods(n: usize) -> Vec<PodInfo> {
    fixtures::running_pods("web-5d8c", n, n, now())
}

fn wpa_spec(json: serde_json::Value) -> WatermarkPodAutoscalerSpec {
    serde_json::from_value(json).expect("a WPA spec")
}

// --- The watermark band (§6.6) ---

proptest! {
    /// §6.6: `usage > HW + HW*tol/1000` (integer milli arithmetic), strictly: a value exactly on the widened
    /// high watermark is still within the band.
    #[test]
    fn a_value_is_above_only_strictly_past_the_tolerance_widened_high_watermark(
        high in 3i64..=10_000_000_000,
        tol in 0i64..=1000,
        offset in -2i64..=2,
    ) {
        let edge = high + high * tol / 1000;
        let r = replica_count_for_usage(&CalcSpec { tolerance_milli: tol, ..spec() }, 5, 5, (edge + offset) as f64, 1, high);
        prop_assert_eq!(r.is_above, offset > 0, "edge {}", edge);
        prop_assert!(!r.is_below);
    }

    /// §6.6: `usage < LW − LW*tol/1000`, strictly: a value exactly on the narrowed low watermark is within.
    #[test]
    fn a_value_is_below_only_strictly_under_the_tolerance_narrowed_low_watermark(
        low in 3i64..=10_000_000_000,
        tol in 0i64..=1000,
        offset in -2i64..=2,
    ) {
        let edge = low - low * tol / 1000;
        let high = low * 3;
        let r = replica_count_for_usage(&CalcSpec { tolerance_milli: tol, ..spec() }, 5, 5, (edge + offset) as f64, low, high);
        prop_assert_eq!(r.is_below, offset < 0, "edge {}", edge);
        prop_assert!(!r.is_above);
    }

    /// §6.6 `adjustUp` and §17.5 (never move against the computed direction): above the band, the proposal is
    /// never below the current count, however few pods are ready.
    #[test]
    fn a_proposal_above_the_band_never_goes_below_the_current_count(
        current in 1i32..=1_000,
        ready in 0i32..=1_000,
        high in 1i64..=1_000_000,
        excess in 1i64..=1_000_000_000,
        modulo in 1i32..=10,
    ) {
        let usage = (high + high / 10 + excess) as f64;
        let r = replica_count_for_usage(&CalcSpec { modulo, ..spec() }, current, ready, usage, 1, high);
        prop_assert!(r.is_above);
        prop_assert!(r.replica_count >= current, "{} < {}", r.replica_count, current);
    }

    /// §6.6 `max(rc, 1)` then `adjustDown`: below the band, the proposal lies in `1..=current`.
    #[test]
    fn a_proposal_below_the_band_stays_between_one_and_the_current_count(
        current in 1i32..=1_000,
        ready in 0i32..=1_000,
        low in 10i64..=1_000_000,
        usage_permille in 0i64..900,
        modulo in 1i32..=10,
    ) {
        let usage = (low * usage_permille / 1000) as f64;
        let r = replica_count_for_usage(&CalcSpec { modulo, ..spec() }, current, ready, usage, low, low * 2);
        prop_assert!(r.is_below);
        prop_assert!((1..=current).contains(&r.replica_count), "{}", r.replica_count);
    }

    /// §6.6 `roundUpToModulo`: the smallest multiple of the modulo that is not below the count.
    #[test]
    fn rounding_to_the_modulo_gives_the_next_multiple_at_or_above_the_count(
        rc in 0i32..=10_000_000,
        modulo in 1i32..=1_000,
    ) {
        let r = round_up_to_modulo(rc, modulo);
        prop_assert_eq!(r % modulo, 0);
        prop_assert!(r >= rc && r - rc < modulo, "{} -> {}", rc, r);
    }
}

#[test]
fn the_tolerance_edge_is_truncated_to_whole_milli_before_a_fractional_value_is_compared() {
    // §6.6 / §17.1: 999m widened by 1m is 999 + 999*1/1000 = 999 (integer division), not 999.999; an average
    // usage of 999.5m is therefore above. Symmetrically, 999m narrowed by 1m is 999, and 998.5m is below.
    let tight = CalcSpec { tolerance_milli: 1, ..spec() };
    let above = replica_count_for_usage(&tight, 2, 2, 999.5, 500, 999);
    assert!(above.is_above);
    assert_eq!(above.band.map(|b| b.adjusted_high), Some(999.0));
    let below = replica_count_for_usage(&tight, 2, 2, 998.5, 999, 2_000);
    assert!(below.is_below);
    assert_eq!(below.band.map(|b| b.adjusted_low), Some(999.0));
}

#[test]
fn an_upscale_proposal_rounds_the_replica_count_up() {
    // §6.6: ceil(3 * 500 / 400) = ceil(3.75) = 4.
    let r = replica_count_for_usage(&spec(), 3, 3, 500_000.0, 200_000, 400_000);
    assert!(r.is_above);
    assert_eq!(r.replica_count, 4);
}

#[test]
fn an_upscale_proposal_beyond_int32_keeps_the_current_count_and_says_it_overflowed() {
    // Go's int32(float64) on amd64 gives math.MinInt32 out of range; the upscale's guard then keeps the count.
    let r = replica_count_for_usage(&spec(), 3, 3, 3e17, 200_000, 400_000);
    assert!(r.is_above && r.overflowed);
    assert_eq!(r.replica_count, 3);
    let fits = replica_count_for_usage(&spec(), 3, 3, 5e11, 200_000, 400_000);
    assert!(fits.is_above && !fits.overflowed, "ceil(3 * 5e11 / 4e5) = 3,750,000 fits");
}

#[test]
fn a_downscale_proposal_rounds_the_replica_count_down() {
    // §6.6: floor(6 * 250 / 400) = floor(3.75) = 3.
    let r = replica_count_for_usage(&spec(), 6, 6, 250_000.0, 400_000, 800_000);
    assert!(r.is_below);
    assert_eq!(r.replica_count, 3);
}

#[test]
fn a_downscale_proposal_is_rounded_up_to_the_modulo_not_down() {
    // §6.6: floor(20 * 56 / 100) = 11, then roundUpToModulo rounds *up* in both directions: 15 with modulo 5.
    let r = replica_count_for_usage(&CalcSpec { modulo: 5, ..spec() }, 20, 20, 56_000.0, 100_000, 200_000);
    assert!(r.is_below);
    assert_eq!(r.replica_count, 15);
}

#[test]
fn rounding_to_the_modulo_near_i32_max_saturates_instead_of_wrapping() {
    // Our decision 10's rule for counts (saturate at the int32 bounds, never wrap to a negative count).
    assert_eq!(round_up_to_modulo(i32::MAX - 1, 4), i32::MAX);
}

#[test]
fn the_reported_utilization_is_the_usage_truncated_toward_zero() {
    // §6.6: utilization = trunc_toward_zero(usage); the compared value keeps its fraction.
    let r = replica_count_for_usage(&spec(), 4, 4, 1_234.9, 1_000, 2_000);
    assert_eq!(r.utilization, 1_234);
    assert_eq!(r.usage, 1_234.9);
}

#[test]
fn a_value_above_a_zero_high_watermark_keeps_the_current_count() {
    // §8: a zero high watermark is not validated and gives an infinite proposal; adjustUp (§6.6) keeps the
    // count where it is rather than letting the conversion produce a negative count.
    let r = replica_count_for_usage(&spec(), 4, 4, 5_000.0, 0, 0);
    assert!(r.is_above);
    assert_eq!(r.replica_count, 4);
}

// --- Convergence (§6.8) ---

#[test]
fn high_watermark_convergence_accepts_a_step_landing_exactly_on_the_lower_bound() {
    // opt = 10 − 2 = 8, refused only when opt < lowerBound.
    let (rc, cond) = converge(&with_converge(Converge::High, 2), 10, 8, 20);
    assert_eq!(rc, 8);
    assert_eq!(
        (cond.status, cond.reason, cond.message),
        (true, "Allow downscaling to converge to the High Watermark", "Value between Watermarks")
    );
}

#[test]
fn high_watermark_convergence_refuses_a_step_below_the_lower_bound() {
    let (rc, cond) = converge(&with_converge(Converge::High, 2), 10, 9, 20);
    assert_eq!(rc, 10);
    assert_eq!(
        (cond.status, cond.reason, cond.message),
        (
            false,
            "Allow downscaling to converge to the High Watermark",
            "Proposal could lead to an unstable regime"
        )
    );
}

#[test]
fn high_watermark_convergence_never_proposes_fewer_than_one_replica() {
    // opt = max(current − modulo, 1).
    let (rc, cond) = converge(&with_converge(Converge::High, 5), 2, 1, 20);
    assert_eq!(rc, 1);
    assert!(cond.status);
}

#[test]
fn low_watermark_convergence_accepts_a_step_landing_exactly_on_the_upper_bound() {
    // opt = 10 + 3 = 13, refused only when opt > upperBound.
    let (rc, cond) = converge(&with_converge(Converge::Low, 3), 10, 1, 13);
    assert_eq!(rc, 13);
    assert_eq!(
        (cond.status, cond.reason, cond.message),
        (true, "Allow upscaling to converge to the Low Watermark", "Value between Watermarks")
    );
}

#[test]
fn low_watermark_convergence_refuses_a_step_past_the_upper_bound() {
    let (rc, cond) = converge(&with_converge(Converge::Low, 3), 10, 1, 12);
    assert_eq!(rc, 10);
    assert_eq!(
        (cond.status, cond.reason, cond.message),
        (
            false,
            "Allow upscaling to converge to the Low Watermark",
            "Proposal could lead to an unstable regime"
        )
    );
}

#[test]
fn convergence_off_keeps_the_count_and_says_the_feature_is_not_enabled() {
    let (rc, cond) = converge(&spec(), 10, 1, 100);
    assert_eq!(rc, 10);
    assert_eq!(
        (cond.status, cond.reason, cond.message),
        (false, "Feature not enabled", "Value between Watermarks")
    );
}

#[test]
fn only_upstreams_exact_convergence_strings_turn_convergence_on() {
    // §2.1: `highwatermark` / `lowwatermark`; any other value (no enum in the CRD) turns the feature off.
    assert_eq!(Converge::parse(Some("highwatermark")), Converge::High);
    assert_eq!(Converge::parse(Some("lowwatermark")), Converge::Low);
    for other in [None, Some(""), Some("HighWatermark"), Some("high"), Some("lowwatermark ")] {
        assert_eq!(Converge::parse(other), Converge::Off, "{other:?}");
    }
}

#[test]
fn a_zero_high_watermark_leaves_high_watermark_convergence_at_the_current_count() {
    // §6.8: lowerBound = current when HW == 0 (upstream #279), so a step down is refused. With both watermarks
    // at 0, a usage of 0 is within the band (neither strictly above nor strictly below).
    let r = replica_count_for_usage(&with_converge(Converge::High, 1), 6, 6, 0.0, 0, 0);
    assert!(!r.is_above && !r.is_below);
    assert_eq!(r.replica_count, 6);
    assert_eq!(r.converge.map(|c| c.status), Some(false));
}

#[test]
fn a_zero_low_watermark_leaves_low_watermark_convergence_at_the_current_count() {
    // §6.8: upperBound = current when LW == 0, so a step up is refused.
    let r = replica_count_for_usage(&with_converge(Converge::Low, 1), 6, 6, 0.0, 0, 0);
    assert_eq!(r.replica_count, 6);
    assert_eq!(r.converge.map(|c| c.status), Some(false));
}

#[test]
fn above_the_band_convergence_is_reported_as_allowed_only_in_the_stable_regime() {
    // §3: ConvergeToWatermark False, reason "Allow downscaling to converge to the High Watermark".
    let r = replica_count_for_usage(&with_converge(Converge::High, 1), 4, 4, 500_000.0, 200_000, 400_000);
    let cond = r.converge.expect("a convergence condition");
    assert_eq!(
        (cond.status, cond.reason, cond.message),
        (
            false,
            "Allow downscaling to converge to the High Watermark",
            "Converging to Watermark only allowed in stable regime"
        )
    );
}

#[test]
fn below_the_band_convergence_is_reported_as_allowed_only_in_the_stable_regime() {
    // §3: the below branch uses the message as its reason too.
    let r = replica_count_for_usage(&with_converge(Converge::Low, 1), 6, 6, 250_000.0, 400_000, 800_000);
    let cond = r.converge.expect("a convergence condition");
    assert_eq!(
        (cond.status, cond.reason, cond.message),
        (
            false,
            "Converging to Watermark only allowed in stable regime",
            "Converging to Watermark only allowed in stable regime"
        )
    );
}

// --- Go's conversions ---

#[test]
fn float_to_int32_truncates_toward_zero() {
    // Notation: conversion from float to int truncates toward zero.
    assert_eq!(go_f64_to_i32(2.999), 2);
    assert_eq!(go_f64_to_i32(-2.999), -2);
    assert_eq!(go_f64_to_i64(-0.5), 0);
}

#[test]
fn float_to_int32_out_of_range_or_nan_gives_i32_min_as_go_does_on_amd64() {
    // The module's contract: Go's `int32(f)` on amd64.
    for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 2_147_483_648.0, -2_147_483_649.0] {
        assert_eq!(go_f64_to_i32(f), i32::MIN, "{f}");
    }
    assert_eq!(go_f64_to_i32(2_147_483_647.9), i32::MAX);
    assert_eq!(go_f64_to_i64(f64::NAN), i64::MIN);
}

// --- The spec as the calculator reads it ---

#[test]
fn unset_fields_read_as_upstreams_defaults() {
    // §2.1: modulo 1 if nil; algorithm absolute; tolerateZero false; minAvailable 0; readiness delay 0;
    // convergence off; minReplicas stays unset (convergence then uses 1, §6.8).
    let c = CalcSpec::from_spec(&WatermarkPodAutoscalerSpec::default(), false);
    assert_eq!(c.modulo, 1);
    assert!(!c.average);
    assert!(!c.tolerate_zero);
    assert_eq!(c.min_available_percentage, 0);
    assert_eq!(c.readiness_delay_seconds, 0);
    assert_eq!(c.converge, Converge::Off);
    assert_eq!(c.min_replicas, None);
}

#[test]
fn only_the_exact_string_average_selects_the_average_algorithm() {
    // §2.1: any other string, typos included, behaves as absolute.
    let read = |a: &str| CalcSpec::from_spec(&wpa_spec(serde_json::json!({"algorithm": a})), false).average;
    assert!(read("average"));
    for other in ["absolute", "Average", "avg", ""] {
        assert!(!read(other), "{other}");
    }
}

// --- Availability (§6.4 step 5, §6.5) ---

#[test]
fn an_unset_min_available_percentage_never_blocks_scaling() {
    // §2.1: minAvailableReplicaPercentage defaults to 0: one ready pod of ten is enough.
    let c = CalcSpec::from_spec(&wpa_spec(serde_json::json!({})), false);
    let mut pods = ready_pods(1);
    pods.extend((1..10).map(|i| pod(&format!("web-5d8c-{i}"), PodPhase::Running, ConditionStatus::False)));
    assert_eq!(ready_replicas_for_target(&c, &scale(10, 10), &pods, now()), Ok(1));
}

#[test]
fn a_negative_min_available_percentage_never_blocks_scaling() {
    // §2.1: the CRD caps the field at 100 but sets no minimum; a negative threshold is always met.
    let c = CalcSpec { min_available_percentage: -5, ..spec() };
    let mut pods = ready_pods(1);
    pods.push(pod("web-5d8c-x", PodPhase::Pending, ConditionStatus::False));
    assert_eq!(ready_replicas_for_target(&c, &scale(2, 2), &pods, now()), Ok(1));
}

// --- External values ---

fn external_with(values: Vec<i64>) -> Result<MetricResult, CalcError> {
    let sample = ExternalSample { values, timestamp: Some(now()) };
    external(
        &spec(),
        &scale(3, 3),
        &ready_pods(3),
        "prod",
        "qps",
        None,
        Ok(&sample),
        (50_000, 100_000),
        now(),
    )
}

#[test]
fn a_negative_external_value_fails_the_metric() {
    // Vector divergence N1: a negative value is garbage; it blocks scaling instead of being summed.
    let e = external_with(vec![40_000, -1]).expect_err("a negative value");
    assert!(e.0.starts_with("unable to get external metric prod/qps/"), "{e}");
    assert!(e.0.contains("cannot be negative"), "{e}");
}

#[test]
fn an_external_sum_beyond_i64_fails_the_metric_instead_of_wrapping() {
    // §6.4 step 7 sums into an int64; a sum that does not fit is an error, never a wrapped negative value.
    let e = external_with(vec![i64::MAX, 1]).expect_err("an overflowing sum");
    assert!(e.0.ends_with("the sum of the metric values overflows"), "{e}");
}

#[test]
fn the_largest_external_sum_that_fits_is_still_compared_with_the_watermarks() {
    // The overflow check refuses only a sum past i64::MAX, not the largest one.
    let r = external_with(vec![i64::MAX - 1, 1]).expect("a sum of exactly i64::MAX");
    assert!(r.is_above);
}

// --- Resource path edges (our decision 4: a zero denominator is an error, never a crash) ---

#[test]
fn a_resource_metric_whose_pods_are_all_ignored_is_an_error_that_says_why() {
    let pods = vec![
        pod("web-5d8c-0", PodPhase::Pending, ConditionStatus::False),
        pod("web-5d8c-1", PodPhase::Running, ConditionStatus::False),
    ];
    let usage: BTreeMap<String, i64> = pods.iter().map(|p| (p.name.clone(), 100)).collect();
    let e = resource(&spec(), &scale(2, 2), &pods, "prod", "cpu", None, Ok(&usage), (200, 400))
        .expect_err("every pod is ignored");
    assert_eq!(e.0, "none of the 2 pods of the target can be counted: 1 pending or failed, 1 not ready");
}

#[test]
fn averaging_a_resource_metric_without_a_ready_pod_is_an_error_not_a_division_by_zero() {
    // One listed pod without a sample (missing: neither ready nor ignored) and a sample of a pod the list does
    // not have (kept and summed, §6.4 Resource step 5): the average would divide by zero ready pods.
    let pods = vec![pod("web-5d8c-0", PodPhase::Running, ConditionStatus::True)];
    let usage = BTreeMap::from([("web-5d8c-gone".to_string(), 300)]);
    let avg = CalcSpec { average: true, ..spec() };
    let e = resource(&avg, &scale(1, 1), &pods, "prod", "memory", None, Ok(&usage), (200, 400))
        .expect_err("nothing to average over");
    assert_eq!(e.0, "cannot average the metric: none of the target's pods is ready");
}

// --- Recommender positions (§6.4 recommender step 6) ---

#[test]
fn a_count_exactly_on_the_recommenders_bounds_is_neither_above_nor_below() {
    // isBelow := current > upperBound, isAbove := current < lowerBound (both strict).
    let rec = Recommendation {
        replicas: 7,
        replicas_lower_bound: 5,
        replicas_upper_bound: 5,
        ..Default::default()
    };
    let (rc, above, below, converge) = adjust_recommendation(&spec(), 5, &rec);
    assert_eq!((rc, above, below), (7, false, false));
    assert_eq!(converge, None, "convergence only runs when the recommendation equals the current count");
}
