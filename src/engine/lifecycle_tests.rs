//! Lifecycle control (docs/semantics.md §4, §6.2 steps 8–9, our decision 9): how the annotation is read, and
//! what each state of the DatadogMonitor does to the pass (condition, gauge, event, requeue).

use std::{collections::BTreeMap, time::Duration};

use jiff::Timestamp;

use super::*;
use crate::{
    api::WatermarkPodAutoscalerSpec,
    engine::{
        conditions::get_condition,
        decision::{Action, Event},
    },
};

fn now() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().expect("a timestamp")
}

fn wpa(annotation: Option<&str>) -> WatermarkPodAutoscaler {
    let mut w = WatermarkPodAutoscaler::new("web", WatermarkPodAutoscalerSpec::default());
    w.metadata.namespace = Some("prod".into());
    if let Some(v) = annotation {
        w.metadata.annotations =
            Some(BTreeMap::from([(annotations::LIFECYCLE_CONTROL.to_string(), v.to_string())]));
    }
    w
}

/// What one call of `blocks` did.
struct Gated {
    blocked: bool,
    condition: Option<(String, String, String)>,
    gauge: Option<f64>,
    events: Vec<Event>,
    action: Action,
}

fn gate(lifecycle: &Lifecycle, monitor: &MonitorObservation) -> Gated {
    let w = wpa(Some("true"));
    let spec = WatermarkPodAutoscalerSpec::default();
    let mut d = Decision::new(&spec, Default::default(), now());
    let blocked = blocks(&mut d, &w, lifecycle, monitor);
    let condition = get_condition(&d.draft.status, SCALING_BLOCKED).map(|c| {
        (c.status.clone(), c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default())
    });
    let gauge = d.draft.gauges.iter().find(|g| g.series == Series::LifecycleControlStatus).map(|g| g.value);
    Gated { blocked, condition, gauge, events: d.draft.events.clone(), action: d.draft.action }
}

fn found(state: &str) -> MonitorObservation {
    MonitorObservation::Found(MonitorState::parse(Some(state)))
}

fn triple(status: &str, reason: &str, message: &str) -> Option<(String, String, String)> {
    Some((status.into(), reason.into(), message.into()))
}

#[test]
fn the_annotation_accepts_exactly_gos_boolean_spellings() {
    // §4: strconv.ParseBool; an empty value means disabled.
    for v in ["1", "t", "T", "TRUE", "true", "True"] {
        assert_eq!(enabled(&wpa(Some(v))), Ok(true), "{v}");
    }
    for v in ["0", "f", "F", "FALSE", "false", "False", ""] {
        assert_eq!(enabled(&wpa(Some(v))), Ok(false), "{v}");
    }
    assert_eq!(enabled(&wpa(None)), Ok(false));
}

#[test]
fn any_other_annotation_value_is_an_error() {
    for v in ["yes", "on", "tRUE", " true", "2"] {
        assert!(enabled(&wpa(Some(v))).is_err(), "{v}");
    }
}

#[test]
fn lifecycle_control_off_neither_blocks_nor_sets_a_condition() {
    let g = gate(&Lifecycle::Off, &MonitorObservation::NotRequested);
    assert!(!g.blocked);
    assert_eq!((g.condition, g.gauge), (None, None));
}

#[test]
fn a_misconfigured_annotation_is_reported_and_the_pass_proceeds() {
    // §6.2 step 8: ScalingBlocked=False/FailedGetDatadogMonitor, the feature counts as disabled.
    let g = gate(&Lifecycle::Misconfigured("invalid syntax".into()), &MonitorObservation::NotRequested);
    assert!(!g.blocked);
    assert_eq!(
        g.condition,
        triple(
            "False",
            "FailedGetDatadogMonitor",
            "Lifecycle Control is not correctly enabled: invalid syntax"
        )
    );
    assert_eq!(g.gauge, None, "no monitor is read");
}

#[test]
fn a_monitor_in_ok_state_lets_the_pass_proceed() {
    let g = gate(&Lifecycle::Monitor, &found("OK"));
    assert!(!g.blocked);
    assert_eq!(
        g.condition,
        triple(
            "False",
            "DatadogMonitorOK",
            "monitor prod/web is in a OK state, allowing the WPA from proceeding"
        )
    );
    assert_eq!(g.gauge, Some(0.0));
    assert!(g.events.is_empty());
}

#[test]
fn a_monitor_that_cannot_be_read_blocks_for_two_minutes_with_a_warning() {
    // §6.2 step 9: any GET error blocks; RequeueAfter 2 min; Warning event FailedGetDatadogMonitor.
    let g = gate(&Lifecycle::Monitor, &MonitorObservation::Unavailable("connection refused".into()));
    assert!(g.blocked);
    assert_eq!(
        g.condition,
        triple(
            "True",
            "FailedGetDatadogMonitor",
            "monitor prod/web not found, blocking the WPA from proceeding"
        )
    );
    assert_eq!(g.gauge, Some(1.0));
    assert_eq!(g.action, Action::RequeueAfter(Duration::from_secs(120)));
    let events: Vec<(bool, &str, &str)> =
        g.events.iter().map(|e| (e.warning, e.reason, e.message.as_str())).collect();
    assert_eq!(events, [(true, "FailedGetDatadogMonitor", "connection refused")]);
}

#[test]
fn a_monitor_without_state_blocks_for_one_minute_without_an_event() {
    let g = gate(&Lifecycle::Monitor, &MonitorObservation::Found(MonitorState::Unset));
    assert!(g.blocked);
    assert_eq!(
        g.condition,
        triple(
            "True",
            "DatadogMonitorNotOK",
            "monitor prod/web state not found, blocking the WPA from proceeding"
        )
    );
    assert_eq!(g.action, Action::RequeueAfter(Duration::from_secs(60)));
    assert!(g.events.is_empty(), "events only for GET errors (§6.15)");
}

#[test]
fn a_monitor_in_another_state_blocks_for_one_minute_naming_the_state() {
    for (state, shown) in [("Alert", "Alert"), ("No Data", "No Data"), ("Skipped", "Skipped")] {
        let g = gate(&Lifecycle::Monitor, &found(state));
        assert!(g.blocked, "{state}");
        let message = format!("monitor prod/web is in {shown} state, blocking the WPA from proceeding");
        assert_eq!(g.condition, triple("True", "DatadogMonitorNotOK", &message));
        assert_eq!(g.gauge, Some(1.0));
        assert_eq!(g.action, Action::RequeueAfter(Duration::from_secs(60)));
    }
}

#[test]
fn only_the_exact_ok_state_allows_the_pass() {
    // §6.2 step 9: `OK`, exact and case-sensitive.
    for state in ["ok", "Ok", "OK "] {
        assert!(gate(&Lifecycle::Monitor, &found(state)).blocked, "{state:?}");
    }
}

#[test]
fn a_missing_datadog_monitor_crd_blocks_with_a_message_that_names_it() {
    // Our decision 9: without the DatadogMonitor CRD, the annotation gives a clear condition.
    let g = gate(&Lifecycle::Monitor, &MonitorObservation::CrdMissing);
    assert!(g.blocked);
    let (status, reason, message) = g.condition.expect("a ScalingBlocked condition");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "FailedGetDatadogMonitor"));
    assert!(
        message.contains("the DatadogMonitor CRD (datadogmonitors.datadoghq.com) is not installed"),
        "{message}"
    );
    assert_eq!(g.action, Action::RequeueAfter(Duration::from_secs(120)));
}
