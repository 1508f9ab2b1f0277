//! `shouldScale` (docs/semantics.md §6.11): what the gate reports besides yes/no (the backoff condition, the
//! countdown gauges, why it blocked), the windows as a general property, and the delay's edges. Upstream's
//! and the reference vectors' yes/no cases run in `tests/upstream_vectors.rs`.

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::*;

fn now() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().expect("a timestamp")
}

fn ago(seconds: f64) -> Timestamp {
    now() - SignedDuration::from_secs_f64(seconds)
}

/// Upstream's defaults (300 s down, 60 s up), no delays, last scale 1000 s ago, 5 → 5 replicas.
fn input() -> GateInput {
    GateInput {
        current: 5,
        desired: 5,
        stable: false,
        last_scale_time: Some(ago(1_000.0)),
        downscale_forbidden_window_seconds: 300,
        upscale_forbidden_window_seconds: 60,
        upscale_delay_above_watermark_seconds: 0,
        downscale_delay_below_watermark_seconds: 0,
        above: None,
        below: None,
        now: now(),
    }
}

fn since(seconds: f64, is_true: bool) -> Option<WatermarkCondition> {
    Some(WatermarkCondition { is_true, last_transition: Some(ago(seconds)) })
}

proptest! {
    /// §6.11 without delays: a change is allowed exactly when the forbidden window of its direction, counted
    /// from the last scale, has passed (`countdown > 0` blocks, so a window that ends now is open). The time
    /// since the last scale is drawn around the end of that window, often exactly on it.
    #[test]
    fn without_delays_a_change_is_allowed_exactly_when_its_window_has_passed(
        current in 1i32..=50,
        desired in 1i32..=50,
        past_the_window_ms in prop_oneof![-2i64..=2, -600_000i64..=600_000],
        down_window in 1i32..=600,
        up_window in 1i32..=600,
    ) {
        let window_ms = 1000 * i64::from(if desired > current { up_window } else { down_window });
        let gate = should_scale(&GateInput {
            current,
            desired,
            last_scale_time: Some(now() - SignedDuration::from_millis(window_ms + past_the_window_ms)),
            downscale_forbidden_window_seconds: down_window,
            upscale_forbidden_window_seconds: up_window,
            ..input()
        });
        prop_assert_eq!(gate.allowed, desired != current && past_the_window_ms >= 0);
    }
}

#[test]
fn without_a_last_scale_time_the_gate_is_open_and_reports_no_backoff() {
    // §6.11: `if status.lastScaleTime == nil: return true`, before the counts are even compared.
    let gate = should_scale(&GateInput { last_scale_time: None, ..input() });
    assert!(gate.allowed);
    assert_eq!(gate.blocked, None);
    assert!(!gate.backoff_down && !gate.backoff_up);
    assert_eq!(gate.backoff_condition, None);
    assert_eq!((gate.downscale_countdown, gate.upscale_countdown), (0.0, 0.0));
}

#[test]
fn the_downscale_backoff_condition_is_set_even_when_the_decision_is_an_upscale() {
    // §3: BackoffDownscale is "set even when the pending decision is an upscale"; 100 s after a scale the
    // 60 s upscale window is over, so the upscale itself goes through.
    let gate = should_scale(&GateInput { desired: 6, last_scale_time: Some(ago(100.0)), ..input() });
    assert!(gate.allowed);
    assert_eq!(
        gate.backoff_condition,
        Some((
            "BackoffDownscale",
            "the time since the previous scale is still within the downscale forbidden window"
        ))
    );
}

#[test]
fn inside_both_windows_the_backoff_condition_is_backoff_both() {
    let gate = should_scale(&GateInput { desired: 6, last_scale_time: Some(ago(30.0)), ..input() });
    assert!(!gate.allowed);
    assert_eq!(
        gate.backoff_condition,
        Some((
            "BackoffBoth",
            "the time since the previous scale is still within both the downscale and upscale forbidden windows"
        ))
    );
}

#[test]
fn inside_only_the_upscale_window_the_backoff_condition_is_backoff_upscale() {
    // A longer upscale window than downscale window: 100 s after a scale only the upscale one is active.
    let gate = should_scale(&GateInput {
        desired: 4,
        last_scale_time: Some(ago(100.0)),
        downscale_forbidden_window_seconds: 60,
        upscale_forbidden_window_seconds: 600,
        ..input()
    });
    assert!(gate.allowed, "the downscale window is over");
    assert_eq!(
        gate.backoff_condition,
        Some((
            "BackoffUpscale",
            "the time since the previous scale is still within the upscale forbidden window"
        ))
    );
}

#[test]
fn the_countdowns_are_the_seconds_left_in_each_window_and_zero_once_it_has_closed() {
    // §6.11: transition_countdown = countdown or 0; 100.5 s after a scale, 199.5 s of the 300 s window remain.
    let gate = should_scale(&GateInput { desired: 4, last_scale_time: Some(ago(100.5)), ..input() });
    assert_eq!(gate.downscale_countdown, 199.5);
    assert_eq!(gate.upscale_countdown, 0.0);
}

#[test]
fn an_unchanged_count_is_blocked_as_unchanged_once_a_scale_has_happened() {
    let gate = should_scale(&input());
    assert!(!gate.allowed);
    assert_eq!(gate.blocked, Some(Blocked::Unchanged));
    assert_eq!(Blocked::Unchanged.describe(), "Will not scale: number of replicas has not changed");
}

#[test]
fn a_window_block_names_its_direction_and_the_seconds_left_rounded_up() {
    let gate = should_scale(&GateInput { desired: 4, last_scale_time: Some(ago(100.5)), ..input() });
    let blocked = gate.blocked.expect("inside the downscale window");
    assert_eq!(blocked, Blocked::Window { upscale: false, seconds_left: 199.5 });
    assert_eq!(blocked.describe(), "Too early to downscale: forbidden window ends in 200s");
}

#[test]
fn in_the_stable_regime_the_delays_do_not_apply() {
    // §6.11 delayGate: `if delay == 0 || stable: return !backoff`; convergence is not held back by a delay,
    // not even by a missing watermark condition.
    let gate = should_scale(&GateInput {
        desired: 4,
        stable: true,
        downscale_delay_below_watermark_seconds: 600,
        below: None,
        ..input()
    });
    assert!(gate.allowed, "{:?}", gate.blocked);
}

#[test]
fn the_delay_counts_whole_seconds_truncated() {
    // §6.11: remaining = delay − int32(elapsed seconds), truncated: 59.9 s above a 60 s delay is 59 s.
    let gate = should_scale(&GateInput {
        desired: 6,
        upscale_delay_above_watermark_seconds: 60,
        above: since(59.9, true),
        ..input()
    });
    assert!(!gate.allowed);
    assert_eq!(gate.blocked, Some(Blocked::Delay { upscale: true, seconds_left: 1 }));
}

#[test]
fn the_delay_is_checked_before_the_forbidden_window() {
    // §6.11 delayGate: the delay refuses first; only a satisfied delay defers to the window.
    let gate = should_scale(&GateInput {
        desired: 4,
        last_scale_time: Some(ago(10.0)),
        downscale_delay_below_watermark_seconds: 60,
        below: since(30.0, true),
        ..input()
    });
    assert_eq!(gate.blocked, Some(Blocked::Delay { upscale: false, seconds_left: 30 }));
}

#[test]
fn a_delay_refused_by_a_false_condition_never_reports_negative_seconds_left() {
    // The condition has been False for an hour: the delay is long over, but the value is not out of bounds.
    let gate = should_scale(&GateInput {
        desired: 4,
        downscale_delay_below_watermark_seconds: 60,
        below: since(3_600.0, false),
        ..input()
    });
    let blocked = gate.blocked.expect("the value is not below the low watermark");
    assert_eq!(blocked, Blocked::Delay { upscale: false, seconds_left: -3_540 });
    assert_eq!(
        blocked.describe(),
        "Will not scale: value has not been out of bounds for long enough (below the low watermark for 0s more)"
    );
}

#[test]
fn a_condition_true_since_gos_zero_time_satisfies_any_delay() {
    // The elapsed time since year 1 does not fit an int32: it saturates, and the longest delay is met.
    let zero_time: Timestamp = "0001-01-01T00:00:00Z".parse().expect("Go's zero time");
    let gate = should_scale(&GateInput {
        desired: 6,
        upscale_delay_above_watermark_seconds: i32::MAX,
        above: Some(WatermarkCondition { is_true: true, last_transition: Some(zero_time) }),
        ..input()
    });
    assert!(gate.allowed, "{:?}", gate.blocked);
}

#[test]
fn a_true_condition_without_a_transition_time_does_not_block_a_delayed_scale_forever() {
    // §6.11: remaining = delay − int32(now − cond.lastTransitionTime); a condition read without the field has
    // Go's zero time there (§18's ZERO_TIME), so the delay is long over. Only a *missing condition* blocks.
    // A status written by upstream's controller or by hand (kubectl edit --subresource=status) can lack it.
    let gate = should_scale(&GateInput {
        desired: 6,
        upscale_delay_above_watermark_seconds: 60,
        above: Some(WatermarkCondition { is_true: true, last_transition: None }),
        ..input()
    });
    assert!(gate.allowed, "{:?}", gate.blocked);
}
