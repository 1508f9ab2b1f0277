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
//! 2. **Undo only what certainly failed.** A `/scale` write the API server refused (a 4xx: 400, 403, 404,
//!    409, a 422 whose `test` held, 429) is undone by a second status write that restores the previous
//!    `lastScaleTime` and reports the failure. A 5xx proves nothing (kube-apiserver answers 500 or 504 for
//!    writes etcd committed), nor does a lost answer (the request may still land): the target is read back,
//!    and unless it shows the new count the record stays, reported as "may have been applied" (the
//!    conservative choice: at worst one window passes without a scale).
//! 3. **Remember what was written.** The WPAs come from a watch, which can lag behind our own writes (and
//!    re-lists after an API server restart). Each status this replica wrote is kept until the watch shows
//!    a `lastScaleTime` at least as new, and a pass decides from whichever is newer.
//! 4. **Never write over a newer record.** Every status write is a JSON Patch that first `test`s that
//!    `status.lastScaleTime` is still the one the pass decided from (or, after a record, the one it
//!    recorded), and is made only while this replica leads. A replica that lost its Lease in the middle of a
//!    pass (paused, partitioned) and wakes after another took over finds the new leader's record there: its
//!    write fails instead of erasing it.
//!
//! A new leader reads the status from the API server, where step 1 put the record before the scale, so it
//! never repeats its predecessor's last scale.

use std::{borrow::Cow, collections::HashMap, sync::Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
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

/// What a status write expects to find stored: the `lastScaleTime` its pass decided from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expected {
    /// The WPA had no status at all.
    NoStatus,
    /// The status had this `lastScaleTime` (`None`: none).
    LastScale(Option<Time>),
}

impl Expected {
    /// What `wpa` (as the pass decided from it) holds.
    pub(crate) fn of(wpa: &WatermarkPodAutoscaler) -> Expected {
        match &wpa.status {
            None => Expected::NoStatus,
            Some(s) => Expected::LastScale(s.last_scale_time.clone()),
        }
    }

    /// What a status written by this pass leaves.
    pub(crate) fn after(status: &WatermarkPodAutoscalerStatus) -> Expected {
        Expected::LastScale(status.last_scale_time.clone())
    }
}

/// A JSON Patch of the status subresource that makes the stored status exactly `status`, only if its
/// `lastScaleTime` is still `expected` (step 4). A `test` of a member that is absent passes when the value
/// tested is `null`; of a member of an absent object it fails, hence the test of `/status` itself when the WPA
/// had no status.
pub(crate) fn status_patch(expected: &Expected, status: &WatermarkPodAutoscalerStatus) -> json_patch::Patch {
    use json_patch::{AddOperation, PatchOperation, TestOperation, jsonptr::PointerBuf};
    let (path, value) = match expected {
        Expected::NoStatus => (PointerBuf::from_tokens(["status"]), Value::Null),
        Expected::LastScale(t) => (
            PointerBuf::from_tokens(["status", "lastScaleTime"]),
            serde_json::to_value(t).unwrap_or(Value::Null),
        ),
    };
    json_patch::Patch(vec![
        PatchOperation::Test(TestOperation { path, value }),
        // `add` replaces a member that exists: the whole status, so that fields it leaves unset are gone.
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["status"]),
            value: serde_json::to_value(status).unwrap_or(Value::Null),
        }),
    ])
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

    fn applied(
        doc: Value,
        expected: &Expected,
        status: &WatermarkPodAutoscalerStatus,
    ) -> Result<Value, String> {
        let mut doc = doc;
        json_patch::patch(&mut doc, &status_patch(expected, status)).map_err(|e| e.to_string())?;
        Ok(doc)
    }

    #[test]
    fn the_status_patch_replaces_the_whole_status() {
        let stored = serde_json::json!({"status": {"lastScaleTime": "2026-01-01T12:00:00Z", "desiredReplicas": 5,
            "scalingEventsCount": 2}});
        let expected = Expected::of(&wpa(Some("2026-01-01T12:00:00Z")));
        let undo = WatermarkPodAutoscalerStatus { desired_replicas: 3, ..Default::default() };
        let doc = applied(stored, &expected, &undo).expect("the test holds");
        assert_eq!(
            doc["status"],
            serde_json::json!({"currentReplicas": 0, "desiredReplicas": 3}),
            "nothing else stays"
        );
    }

    #[test]
    fn the_status_patch_fails_over_a_newer_record() {
        // Another leader recorded a scale after this pass read the WPA.
        let stored =
            serde_json::json!({"status": {"lastScaleTime": "2026-01-01T12:00:30Z", "desiredReplicas": 4}});
        let expected = Expected::of(&wpa(Some("2026-01-01T12:00:00Z")));
        let stale = WatermarkPodAutoscalerStatus { desired_replicas: 3, ..Default::default() };
        assert!(applied(stored, &expected, &stale).is_err(), "the newer record is kept");
    }

    #[test]
    fn the_status_patch_tests_what_the_pass_saw() {
        // The API server (evanphx/json-patch) passes a `test` of an absent member against `null`, and fails one
        // whose parent is absent: a WPA never scaled tests `lastScaleTime`, a WPA without status tests `status`.
        let status = WatermarkPodAutoscalerStatus { desired_replicas: 2, ..Default::default() };
        let test_of = |expected: &Expected| match &status_patch(expected, &status).0[0] {
            json_patch::PatchOperation::Test(t) => (t.path.to_string(), t.value.clone()),
            other => panic!("the first operation is a test: {other:?}"),
        };
        assert_eq!(test_of(&Expected::of(&wpa(None))), ("/status/lastScaleTime".into(), Value::Null));
        let mut bare = wpa(None);
        bare.status = None;
        assert_eq!(test_of(&Expected::of(&bare)), ("/status".into(), Value::Null));
        let scaled = Expected::of(&wpa(Some("2026-01-01T12:00:00Z")));
        assert_eq!(test_of(&scaled), ("/status/lastScaleTime".into(), Value::from("2026-01-01T12:00:00Z")));
    }
}
