//! Lifecycle control: with the `wpa.datadoghq.com/lifecycle-control.enabled` annotation, a DatadogMonitor
//! named like the WPA gates scaling; anything but a monitor in `OK` state blocks the WPA (upstream's
//! `ScalingBlocked` condition and `lifecycle_control_status` gauge).

use std::time::Duration;

use kube::ResourceExt;

use super::{
    conditions::{SCALING_BLOCKED, text},
    decision::{Decision, MonitorObservation, MonitorState, Series},
    plan::Lifecycle,
    validation,
};
use crate::api::{WatermarkPodAutoscaler, annotations};

/// Whether lifecycle control is on, as upstream parses the annotation.
pub(super) fn enabled(wpa: &WatermarkPodAutoscaler) -> Result<bool, String> {
    match wpa.annotations().get(annotations::LIFECYCLE_CONTROL).map(String::as_str) {
        None | Some("") => Ok(false),
        Some(v) => validation::parse_go_bool(v),
    }
}

/// Applies the gate; `true` when the pass must stop here (blocked, with the requeue set).
pub(super) fn blocks(
    d: &mut Decision<'_>,
    wpa: &WatermarkPodAutoscaler,
    lifecycle: &Lifecycle,
    monitor: &MonitorObservation,
) -> bool {
    match lifecycle {
        Lifecycle::Misconfigured(e) => {
            let msg = format!("Lifecycle Control is not correctly enabled: {e}");
            d.set(SCALING_BLOCKED, false, text::FAILED_GET_DATADOG_MONITOR, &msg);
            false
        }
        Lifecycle::Off => false,
        Lifecycle::Monitor => {
            let monitor_name = format!("{}/{}", wpa.namespace().unwrap_or_default(), wpa.name_any());
            // The exporter adds monitor_name/monitor_namespace: the monitor is named after the WPA.
            let labels = Some(("lifecycle_status", "blocked"));
            match why_blocked(monitor, &monitor_name) {
                None => {
                    d.gauge(Series::LifecycleControlStatus, labels, 0.0);
                    let msg =
                        format!("monitor {monitor_name} is in a OK state, allowing the WPA from proceeding");
                    d.set(SCALING_BLOCKED, false, text::DATADOG_MONITOR_OK, &msg);
                    false
                }
                Some((reason, msg, requeue)) => {
                    d.gauge(Series::LifecycleControlStatus, labels, 1.0);
                    if reason == text::FAILED_GET_DATADOG_MONITOR {
                        let detail = match monitor {
                            MonitorObservation::Unavailable(e) => e.clone(),
                            _ => msg.clone(),
                        };
                        d.event(true, text::FAILED_GET_DATADOG_MONITOR, detail, Some(SCALING_BLOCKED));
                    }
                    d.set(SCALING_BLOCKED, true, reason, &msg);
                    d.reason = msg;
                    d.requeue_after(requeue);
                    true
                }
            }
        }
    }
}

/// The condition reason, message and requeue when `monitor` blocks the WPA.
fn why_blocked(monitor: &MonitorObservation, name: &str) -> Option<(&'static str, String, Duration)> {
    match monitor {
        MonitorObservation::Found(MonitorState::Ok) => None,
        MonitorObservation::Found(MonitorState::Unset) => Some((
            text::DATADOG_MONITOR_NOT_OK,
            format!("monitor {name} state not found, blocking the WPA from proceeding"),
            Duration::from_secs(60),
        )),
        MonitorObservation::Found(state) => Some((
            text::DATADOG_MONITOR_NOT_OK,
            format!(
                "monitor {name} is in {} state, blocking the WPA from proceeding",
                state.as_str().unwrap_or_default()
            ),
            Duration::from_secs(60),
        )),
        MonitorObservation::CrdMissing => Some((
            text::FAILED_GET_DATADOG_MONITOR,
            format!(
                "lifecycle control is enabled but the DatadogMonitor CRD (datadogmonitors.datadoghq.com) is not installed, so monitor {name} cannot be read; blocking the WPA from proceeding"
            ),
            Duration::from_secs(120),
        )),
        MonitorObservation::Unavailable(_) | MonitorObservation::NotRequested => Some((
            text::FAILED_GET_DATADOG_MONITOR,
            format!("monitor {name} not found, blocking the WPA from proceeding"),
            Duration::from_secs(120),
        )),
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
