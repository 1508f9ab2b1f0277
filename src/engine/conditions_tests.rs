//! Setting a condition (docs/semantics.md §3, rules 1–5): when the transition time moves, what is always
//! overwritten, the order of the list, and `lastConditionType/State`.

use jiff::{SignedDuration, Timestamp};

use super::*;

fn now() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().expect("a timestamp")
}

fn ago(seconds: i64) -> Timestamp {
    now() - SignedDuration::from_secs(seconds)
}

fn condition(type_: &str, status: &str, at: Option<Timestamp>) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        last_transition_time: at.map(Time),
        reason: Some("Old".into()),
        message: Some("old".into()),
    }
}

fn status_with(conditions: Vec<Condition>) -> WatermarkPodAutoscalerStatus {
    WatermarkPodAutoscalerStatus { conditions, ..Default::default() }
}

fn types(status: &WatermarkPodAutoscalerStatus) -> Vec<&str> {
    status.conditions.iter().map(|c| c.type_.as_str()).collect()
}

fn transition(status: &WatermarkPodAutoscalerStatus, type_: &str) -> Option<Timestamp> {
    get_condition(status, type_).and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0)
}

#[test]
fn a_new_condition_is_stamped_now_and_listed_first() {
    let mut s = status_with(vec![condition(DRY_RUN, "False", Some(ago(60)))]);
    set_condition(&mut s, SCALING_LIMITED, false, "DesiredWithinRange", "ok", now());
    assert_eq!(types(&s), [SCALING_LIMITED, DRY_RUN]);
    assert_eq!(transition(&s, SCALING_LIMITED), Some(now()));
}

#[test]
fn a_new_reason_or_message_with_the_same_status_keeps_the_transition_time() {
    // §3 rules 2 and 3: reason and message are always overwritten; the time moves only with the status.
    let mut s = status_with(vec![condition(ABLE_TO_SCALE, "True", Some(ago(60)))]);
    set_condition(&mut s, ABLE_TO_SCALE, true, "ReadyForScale", "new message", now());
    let c = get_condition(&s, ABLE_TO_SCALE).expect("the condition");
    assert_eq!((c.reason.as_deref(), c.message.as_deref()), (Some("ReadyForScale"), Some("new message")));
    assert_eq!(transition(&s, ABLE_TO_SCALE), Some(ago(60)));
}

#[test]
fn a_status_change_moves_the_transition_time_to_now() {
    let mut s = status_with(vec![condition(ABOVE_HIGH_WATERMARK, "False", Some(ago(60)))]);
    set_condition(&mut s, ABOVE_HIGH_WATERMARK, true, "r", "m", now());
    assert_eq!(get_condition(&s, ABOVE_HIGH_WATERMARK).map(|c| c.status.as_str()), Some("True"));
    assert_eq!(transition(&s, ABOVE_HIGH_WATERMARK), Some(now()));
}

#[test]
fn an_unknown_status_set_to_false_is_a_transition() {
    // Only `True` and `False` are written, so a stored `Unknown` changes either way.
    let mut s = status_with(vec![condition(SCALING_ACTIVE, "Unknown", Some(ago(60)))]);
    set_condition(&mut s, SCALING_ACTIVE, false, "r", "m", now());
    assert_eq!(transition(&s, SCALING_ACTIVE), Some(now()));
}

#[test]
fn the_list_is_kept_newest_transition_first() {
    // §3 rule 4: re-sorted by lastTransitionTime descending after every set.
    let mut s = status_with(vec![
        condition(DRY_RUN, "False", Some(ago(300))),
        condition(ABLE_TO_SCALE, "True", Some(ago(10))),
        condition(SCALING_LIMITED, "False", Some(ago(100))),
    ]);
    set_condition(&mut s, DRY_RUN, false, "r", "m", now());
    assert_eq!(types(&s), [ABLE_TO_SCALE, SCALING_LIMITED, DRY_RUN]);
}

#[test]
fn of_conditions_changed_in_the_same_pass_the_last_one_set_comes_first() {
    // Upstream stamps each with its own clock reading, so a later one sorts first; with one `now` per pass the
    // condition that changed is moved to the front.
    let mut s = status_with(vec![
        condition(ABOVE_HIGH_WATERMARK, "False", Some(ago(60))),
        condition(BELOW_LOW_WATERMARK, "False", Some(ago(60))),
    ]);
    set_condition(&mut s, ABOVE_HIGH_WATERMARK, true, "r", "m", now());
    set_condition(&mut s, BELOW_LOW_WATERMARK, true, "r", "m", now());
    assert_eq!(types(&s), [BELOW_LOW_WATERMARK, ABOVE_HIGH_WATERMARK]);
}

#[test]
fn conditions_without_a_transition_time_sort_last() {
    // Go's zero time is never After another time.
    let mut s = status_with(vec![
        condition(DRY_RUN, "False", None),
        condition(SCALING_LIMITED, "False", Some(ago(3_600))),
    ]);
    set_condition(&mut s, SCALING_LIMITED, false, "r", "m", now());
    assert_eq!(types(&s), [SCALING_LIMITED, DRY_RUN]);
}

#[test]
fn the_last_condition_set_is_recorded_even_when_it_did_not_change() {
    // §3 rule 5: lastConditionType/State follow every set (they feed the printer columns).
    let mut s = status_with(vec![condition(DRY_RUN, "False", Some(ago(60)))]);
    set_condition(&mut s, SCALING_ACTIVE, true, "r", "m", now());
    set_condition(&mut s, DRY_RUN, false, "r", "m", now());
    assert_eq!(s.last_condition_type.as_deref(), Some(DRY_RUN));
    assert_eq!(s.last_condition_state.as_deref(), Some("False"));
}

#[test]
fn only_a_present_true_condition_is_true() {
    let s = status_with(vec![
        condition(ABLE_TO_SCALE, "True", None),
        condition(SCALING_ACTIVE, "Unknown", None),
        condition(DRY_RUN, "False", None),
    ]);
    assert!(is_true(&s, ABLE_TO_SCALE));
    assert!(!is_true(&s, SCALING_ACTIVE));
    assert!(!is_true(&s, DRY_RUN));
    assert!(!is_true(&s, SCALING_BLOCKED));
}

#[test]
fn the_below_low_watermark_reason_says_below() {
    // Our decision 2: upstream's `Value above Low Watermark` typo is fixed; the rest is verbatim (§3).
    assert_eq!(text::BELOW_REASON, "Value below Low Watermark");
    assert_eq!(text::ABOVE_REASON, "Value above High Watermark");
    assert_eq!(text::BELOW_MSG, "Allow downscaling if the value stays under the Watermark");
}

#[test]
fn every_condition_type_a_pass_sets_is_upstreams_word_or_ours_listed_once() {
    // §3's types, plus ConflictingAutoscaler and Fallback (ours); `TYPES` sizes the status' condition list.
    let mut all = TYPES.to_vec();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), TYPES.len());
    assert_eq!(
        all,
        [
            "AbleToScale",
            "AboveHighWatermark",
            "BelowLowWatermark",
            "ConflictingAutoscaler",
            "ConvergeToWatermark",
            "DryRun",
            "Fallback",
            "ScalingActive",
            "ScalingBlocked",
            "ScalingLimited",
        ]
    );
}
