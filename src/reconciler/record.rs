//! Why a scale is never repeated inside a forbidden window, whatever becomes of a status write.
//!
//! The window is counted from `status.lastScaleTime`, and nothing else records that a scale happened. Upstream
//! (and this reconciler before) wrote `/scale` first and the status after, so a lost status write (an API
//! server restart, a 5xx, a 403 from RBAC, a leader change) left a scaled target with an old
//! `lastScaleTime`, and the next pass scaled again. The design here:
//!
//! 1. **Record, then scale.** A pass that decides a scale first writes the status the scale will leave
//!    (`lastScaleTime`, `desiredReplicas`, the count, the conditions), and only if that write succeeds writes
//!    `/scale`. A status that cannot be written means no scale (fail closed); the pass is retried.
//! 2. **Undo only what certainly failed.** A `/scale` write the API server refused (a conflict, a 4xx)
//!    is undone by a second status write that restores the previous `lastScaleTime` and reports the failure.
//!    A write whose answer was lost (a transport error) is read back: the target holds the new count → it
//!    happened; it holds the old one → undone; it cannot be read → the record stays (the conservative
//!    choice: at worst one window passes without a scale).
//! 3. **Remember what was written.** The WPAs come from a watch, which can lag behind our own writes (and
//!    re-lists after an API server restart). Each status this replica wrote is kept until the watch shows
//!    a `lastScaleTime` at least as new, and a pass decides from whichever is newer.
//!
//! A new leader reads the status from the API server, where step 1 put the record before the scale, so it
//! never repeats its predecessor's last scale.

use std::{borrow::Cow, collections::HashMap, sync::Mutex};

use kube::ResourceExt;
use serde_json::Value;

use crate::api::{WatermarkPodAutoscaler, WatermarkPodAutoscalerStatus};

/// The statuses this replica wrote that the WPA watch may not have delivered yet, by WPA uid.
#[derive(Default)]
pub(crate) struct Written {
    statuses: Mutex<HashMap<String, WatermarkPodAutoscalerStatus>>,
}

impl Written {
    /// Remembers a status that was written.
    pub(crate) fn remember(&self, wpa: &WatermarkPodAutoscaler, status: &WatermarkPodAutoscalerStatus) {
        let Some(uid) = wpa.uid() else { return };
        self.statuses.lock().unwrap_or_else(|p| p.into_inner()).insert(uid, status.clone());
    }

    /// The WPA to decide from: as the watch delivered it, or with the status this replica wrote last when the
    /// watch has not caught up with its `lastScaleTime` yet.
    pub(crate) fn current<'a>(&self, wpa: &'a WatermarkPodAutoscaler) -> Cow<'a, WatermarkPodAutoscaler> {
        let Some(uid) = wpa.uid() else { return Cow::Borrowed(wpa) };
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ours) = statuses.get(&uid) else { return Cow::Borrowed(wpa) };
        let seen = wpa.status.as_ref().and_then(|s| s.last_scale_time.as_ref()).map(|t| t.0);
        let written = ours.last_scale_time.as_ref().map(|t| t.0);
        if written > seen {
            let mut newer = wpa.clone();
            newer.status = Some(ours.clone());
            Cow::Owned(newer)
        } else {
            // The watch has it (or something newer): nothing left to remember.
            statuses.remove(&uid);
            Cow::Borrowed(wpa)
        }
    }

    pub(crate) fn forget(&self, uid: &str) {
        self.statuses.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }
}

/// A merge patch that makes the stored status exactly `status`: fields it leaves unset are deleted (a
/// plain serialization omits them, and a merge patch would keep the stored values: an undone scale would
/// keep its `lastScaleTime`).
pub(crate) fn status_patch(status: &WatermarkPodAutoscalerStatus) -> Value {
    let mut body = serde_json::to_value(status).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut body {
        for key in [
            "observedGeneration",
            "lastScaleTime",
            "scalingEventsCount",
            "currentMetrics",
            "conditions",
            "lastConditionType",
            "lastConditionState",
        ] {
            fields.entry(key).or_insert(Value::Null);
        }
    }
    serde_json::json!({ "status": body })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn wpa(last_scale: Option<&str>) -> WatermarkPodAutoscaler {
        let mut w: WatermarkPodAutoscaler = serde_json::from_value(serde_json::json!({
            "apiVersion": "datadoghq.com/v1alpha1", "kind": "WatermarkPodAutoscaler",
            "metadata": {"name": "web", "namespace": "ns", "uid": "u-1"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}}
        }))
        .unwrap();
        w.status = Some(WatermarkPodAutoscalerStatus {
            last_scale_time: last_scale.map(|t| Time(t.parse().unwrap())),
            ..Default::default()
        });
        w
    }

    #[test]
    fn a_written_scale_is_used_until_the_watch_shows_it() {
        let written = Written::default();
        let ours = wpa(Some("2026-01-01T12:00:10Z"));
        written.remember(&ours, ours.status.as_ref().unwrap());
        // The watch still has the status from before the scale.
        let stale = wpa(Some("2026-01-01T12:00:00Z"));
        let current = written.current(&stale);
        assert_eq!(current.status, ours.status, "the newer record wins");
        let never_scaled = wpa(None);
        assert_eq!(written.current(&never_scaled).status, ours.status);
        // The watch caught up: the record is dropped, the watched object is used as it is.
        let caught_up = wpa(Some("2026-01-01T12:00:10Z"));
        assert!(matches!(written.current(&caught_up), Cow::Borrowed(_)));
        assert!(matches!(written.current(&stale), Cow::Borrowed(_)), "dropped once seen");
    }

    #[test]
    fn the_status_patch_deletes_what_the_status_leaves_unset() {
        let patch = status_patch(&WatermarkPodAutoscalerStatus { desired_replicas: 3, ..Default::default() });
        assert_eq!(patch["status"]["lastScaleTime"], Value::Null);
        assert!(patch["status"].as_object().unwrap().contains_key("lastScaleTime"));
        assert_eq!(patch["status"]["desiredReplicas"], 3);
    }
}
