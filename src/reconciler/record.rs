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
//!
//! [`carry_out`] is steps 1 and 2 for one pass, over the writes a [`Steps`] makes; [`Written`] is step 3;
//! [`status_patch`] is step 4.

use std::{borrow::Cow, collections::HashMap, sync::Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    ResourceExt,
    runtime::reflector::{ObjectRef, Store},
};
use serde_json::Value;

use super::{ReconcileError, scale::ScaleWrite};
use crate::{
    api::{WatermarkPodAutoscaler, WatermarkPodAutoscalerStatus},
    engine::{Decision, Outcome, Plan, ScaleIntent, ScaleResult},
};

/// Which status write of a pass: the record before a scale, or the pass's result (an undo among them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Record,
    Result,
}

impl Phase {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Record => "record",
            Phase::Result => "result",
        }
    }
}

/// The writes and reads the protocol makes, for one pass over one WPA. `Seen` is what a decision was made
/// from (the target as read).
pub(crate) trait Steps {
    type Seen;
    /// Reads the target again past any cache, and decides again (after a conflict).
    async fn decide_again<'p>(&self, plan: &'p Plan<'_>) -> (Self::Seen, Decision<'p>);
    /// Writes `status` if the stored `lastScaleTime` is still `expected` (step 4) and this replica leads.
    /// `Ok(false)`: not written, and nothing more of the pass may be.
    async fn write_status(
        &self,
        expected: &Expected,
        status: &WatermarkPodAutoscalerStatus,
        phase: Phase,
    ) -> Result<bool, ReconcileError>;
    async fn write_scale(&self, seen: &Self::Seen, intent: ScaleIntent) -> ScaleWrite;
    /// The target's `spec.replicas` as the API server has it now.
    async fn read_back(&self, seen: &Self::Seen) -> Result<i32, String>;
}

/// A pass whose writes are made.
pub(crate) struct Carried<'p> {
    pub(crate) decision: Decision<'p>,
    pub(crate) outcome: Outcome,
}

/// How the writes of a pass ended.
pub(crate) enum Ending<'p> {
    /// Every write the pass needed is made: publish its events and series.
    Done(Carried<'p>),
    /// A status write was not made (another writer got there first, or this replica stopped leading):
    /// nothing more of this pass may be written; the next pass decides on fresh data.
    Yielded,
    /// The result's status write failed: publish the series, then hand the error to the error policy.
    ResultFailed(Carried<'p>, ReconcileError),
}

/// Steps 1 and 2 for one pass: records a decided scale, makes it, and writes the result, which undoes the
/// record of a scale that certainly failed and keeps the record of one that may have landed. A conflict on
/// `/scale` (the target changed since it was read) decides again once on fresh data.
pub(crate) async fn carry_out<'p, W: Steps>(
    steps: &W,
    wpa: &WatermarkPodAutoscaler,
    plan: &'p Plan<'_>,
    mut seen: W::Seen,
    mut decision: Decision<'p>,
) -> Result<Ending<'p>, ReconcileError> {
    let mut expected = Expected::of(wpa);
    let mut recorded = false;
    let mut conflicts = 0;
    let outcome = loop {
        let Some(intent) = decision.scale else { break decision.settle(wpa, ScaleResult::NotNeeded) };
        let scaled = decision.settle(wpa, ScaleResult::Written);
        if !steps.write_status(&expected, &scaled.status, Phase::Record).await? {
            return Ok(Ending::Yielded);
        }
        expected = Expected::after(&scaled.status);
        recorded = true;
        let result = match steps.write_scale(&seen, intent).await {
            ScaleWrite::Written => break scaled,
            ScaleWrite::Conflict if conflicts == 0 => {
                conflicts += 1;
                tracing::info!("the target's replica count changed since it was read: deciding again on fresh data");
                (seen, decision) = steps.decide_again(plan).await;
                continue;
            }
            ScaleWrite::Conflict => ScaleResult::Failed(
                "the target's replica count changed again while it was being written (conflict); retrying next period".into(),
            ),
            ScaleWrite::Refused(e) => ScaleResult::Failed(e),
            ScaleWrite::Unknown(e) => match steps.read_back(&seen).await {
                Ok(n) if n == intent.to => break scaled,
                // The count read back is no proof that the write will not land: the record stays.
                Ok(n) => ScaleResult::Unknown(format!("{e}; the target holds {n} for now")),
                Err(read) => ScaleResult::Unknown(format!("{e}; reading it back: {read}")),
            },
        };
        break decision.settle(wpa, result);
    };
    // A scale that happened was written with its record; anything else is written now, and so is any
    // status after a record of a scale that did not happen (undoing it) or may not have.
    let already_written = recorded && outcome.scaled_to.is_some();
    let carried = Carried { decision, outcome };
    if (carried.outcome.status_changed || recorded) && !already_written {
        match steps.write_status(&expected, &carried.outcome.status, Phase::Result).await {
            Ok(true) => {}
            Ok(false) => return Ok(Ending::Yielded),
            Err(e) => return Ok(Ending::ResultFailed(carried, e)),
        }
    }
    Ok(Ending::Done(carried))
}

/// The statuses this replica wrote that the WPA watch may not have delivered yet, by WPA uid.
pub(crate) struct Written {
    statuses: Mutex<HashMap<String, WatermarkPodAutoscalerStatus>>,
    /// The watched WPAs (the feed's store, updated before [`Written::seen`] is called).
    watched: Store<WatermarkPodAutoscaler>,
}

impl Written {
    pub(crate) fn new(watched: Store<WatermarkPodAutoscaler>) -> Written {
        Written { statuses: Mutex::default(), watched }
    }

    /// Remembers a status that was written, unless the watch has delivered it already (its event often
    /// arrives before the write's answer; [`Written::seen`] has then been and gone).
    pub(crate) fn remember(&self, wpa: &WatermarkPodAutoscaler, status: &WatermarkPodAutoscalerStatus) {
        let Some(uid) = wpa.uid() else { return };
        // Under the lock: a store updated after this look is followed by a `seen`, which waits for it.
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        let delivered = self
            .watched
            .get(&ObjectRef::from_obj(wpa))
            .is_some_and(|w| w.uid().as_ref() == Some(&uid) && !newer_than_watched(status, &w));
        if delivered {
            statuses.remove(&uid);
        } else {
            statuses.insert(uid, status.clone());
        }
    }

    /// The WPA to decide from: as the watch delivered it, or with the status this replica wrote last when the
    /// watch has not caught up with its `lastScaleTime` yet.
    pub(crate) fn current<'a>(&self, wpa: &'a WatermarkPodAutoscaler) -> Cow<'a, WatermarkPodAutoscaler> {
        let Some(uid) = wpa.uid() else { return Cow::Borrowed(wpa) };
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ours) = statuses.get(&uid) else { return Cow::Borrowed(wpa) };
        if newer_than_watched(ours, wpa) {
            let mut newer = wpa.clone();
            newer.status = Some(ours.clone());
            Cow::Owned(newer)
        } else {
            // The watch has it (or something newer): nothing left to remember.
            statuses.remove(&uid);
            Cow::Borrowed(wpa)
        }
    }

    /// The watch delivered `wpa`: a status kept for it is dropped as soon as the watch shows its
    /// `lastScaleTime` (or a newer one), instead of at the WPA's next pass. With thousands of WPAs, every
    /// first pass's status (a few KiB each) would otherwise stay until the next period.
    pub(crate) fn seen(&self, wpa: &WatermarkPodAutoscaler) {
        let Some(uid) = wpa.uid() else { return };
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        if statuses.get(&uid).is_some_and(|ours| !newer_than_watched(ours, wpa)) {
            statuses.remove(&uid);
        }
    }

    /// Statuses kept (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.statuses.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub(crate) fn forget(&self, uid: &str) {
        self.statuses.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }
}

/// Whether the status this replica wrote records a later scale than the watched `wpa` shows.
fn newer_than_watched(ours: &WatermarkPodAutoscalerStatus, wpa: &WatermarkPodAutoscaler) -> bool {
    let seen = wpa.status.as_ref().and_then(|s| s.last_scale_time.as_ref()).map(|t| t.0);
    ours.last_scale_time.as_ref().map(|t| t.0) > seen
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
    use kube::runtime::reflector;

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
        let written = Written::new(reflector::store().0);
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
    fn a_status_the_watch_delivered_before_the_writes_answer_is_not_kept() {
        let (store, mut writer) = reflector::store();
        let written = Written::new(store);
        let ours = wpa(Some("2026-01-01T12:00:10Z"));
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(ours.clone()));
        written.remember(&wpa(Some("2026-01-01T12:00:00Z")), ours.status.as_ref().unwrap());
        assert_eq!(written.len(), 0, "the store already shows it");
        let later = wpa(Some("2026-01-01T12:00:20Z"));
        written.remember(&ours, later.status.as_ref().unwrap());
        assert_eq!(written.len(), 1, "a status newer than the store's is kept");
    }

    #[test]
    fn a_written_status_is_dropped_when_the_watch_delivers_it() {
        let written = Written::new(reflector::store().0);
        let ours = wpa(Some("2026-01-01T12:00:10Z"));
        written.remember(&ours, ours.status.as_ref().unwrap());
        written.seen(&wpa(Some("2026-01-01T12:00:00Z")));
        written.seen(&wpa(None));
        assert_eq!(written.len(), 1, "kept while the watch shows an older lastScaleTime");
        written.seen(&wpa(Some("2026-01-01T12:00:10Z")));
        assert_eq!(written.len(), 0, "dropped once the watch shows it, before any pass asks");
        let stale = wpa(Some("2026-01-01T12:00:00Z"));
        assert!(matches!(written.current(&stale), Cow::Borrowed(_)));
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

    // The protocol (steps 1 and 2) over scripted writes: what is written, in which order, and what is kept.

    use std::{collections::VecDeque, sync::Mutex as StdMutex};

    use crate::engine::{ExternalSample, MetricObservation, MonitorObservation, Observation, fixtures};

    fn now() -> jiff::Timestamp {
        "2026-01-01T12:00:00Z".parse().expect("a time")
    }

    /// A WPA at 4 replicas whose one metric (at 300 against a high watermark of 100) asks for a scale up
    /// (a scale-up limit of +300 % does not bind).
    fn busy() -> WatermarkPodAutoscaler {
        let mut w: WatermarkPodAutoscaler = serde_json::from_value(serde_json::json!({
            "apiVersion": "datadoghq.com/v1alpha1", "kind": "WatermarkPodAutoscaler",
            "metadata": {"name": "web", "namespace": "ns", "uid": "u-1", "generation": 1},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 20, "scaleUpLimitFactor": 300,
                "metrics": [{"type": "External", "external": {"metricName": "qps",
                    "metricSelector": {"matchLabels": {"app": "web"}}, "highWatermark": "100", "lowWatermark": "50"}}]}
        }))
        .expect("a WPA");
        w.status = Some(WatermarkPodAutoscalerStatus {
            last_scale_time: Some(Time("2026-01-01T11:00:00Z".parse().expect("a time"))),
            ..Default::default()
        });
        w
    }

    fn decide_at<'p>(plan: &'p Plan<'_>, replicas: i32) -> Decision<'p> {
        let count = usize::try_from(replicas).expect("a count");
        let pods = fixtures::running_pods("web-abc", count, count, now());
        let metrics = [MetricObservation::External(Ok(ExternalSample {
            values: vec![300_000],
            timestamp: Some(now()),
        }))];
        let obs = Observation {
            target: Ok(fixtures::scale("ns", "web", replicas, replicas)),
            pods: Ok(&pods),
            metrics: &metrics,
            recommendation: None,
            monitor: MonitorObservation::NotRequested,
            conflicts: &[],
        };
        crate::engine::decide(plan, &obs, now())
    }

    /// Writes answered from a script, and a log of what was asked.
    #[derive(Default)]
    struct Script {
        status: StdMutex<VecDeque<Result<bool, u16>>>,
        scale: StdMutex<VecDeque<ScaleWrite>>,
        read_back: Option<Result<i32, String>>,
        /// The target's count when deciding again after a conflict.
        fresh_replicas: i32,
        log: StdMutex<Vec<String>>,
    }

    impl Script {
        fn log(&self) -> Vec<String> {
            self.log.lock().expect("log").clone()
        }
    }

    impl Steps for Script {
        type Seen = ();

        async fn decide_again<'p>(&self, plan: &'p Plan<'_>) -> ((), Decision<'p>) {
            self.log.lock().expect("log").push(format!("decide again at {}", self.fresh_replicas));
            ((), decide_at(plan, self.fresh_replicas))
        }

        async fn write_status(
            &self,
            expected: &Expected,
            status: &WatermarkPodAutoscalerStatus,
            phase: Phase,
        ) -> Result<bool, ReconcileError> {
            let answer = self.status.lock().expect("script").pop_front().unwrap_or(Ok(true));
            let scaled = status.last_scale_time.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
            let tested = match expected {
                Expected::NoStatus => "no status".to_string(),
                Expected::LastScale(t) => t.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
            };
            self.log.lock().expect("log").push(format!(
                "{} status: lastScaleTime {scaled} over {tested}{}",
                phase.as_str(),
                if answer == Ok(true) { "" } else { " (not written)" }
            ));
            answer.map_err(|code| {
                let status: kube::core::Status = serde_json::from_value(serde_json::json!(
                    {"status": "Failure", "code": code, "message": "boom"}))
                .expect("a status");
                ReconcileError::Status(kube::Error::Api(Box::new(status)))
            })
        }

        async fn write_scale(&self, _: &(), intent: ScaleIntent) -> ScaleWrite {
            self.log.lock().expect("log").push(format!("scale to {}", intent.to));
            self.scale.lock().expect("script").pop_front().unwrap_or(ScaleWrite::Written)
        }

        async fn read_back(&self, _: &()) -> Result<i32, String> {
            self.log.lock().expect("log").push("read back".into());
            self.read_back.clone().unwrap_or(Err("no read-back scripted".into()))
        }
    }

    const BEFORE: &str = "2026-01-01T11:00:00Z";
    const NOW: &str = "2026-01-01T12:00:00Z";

    async fn run(script: &Script) -> Result<Option<Option<i32>>, ReconcileError> {
        let wpa = busy();
        let plan = Plan::new(&wpa);
        let decision = decide_at(&plan, 4);
        assert!(decision.scale.is_some(), "the fixture decides a scale");
        Ok(match carry_out(script, &wpa, &plan, (), decision).await? {
            Ending::Done(c) => Some(c.outcome.scaled_to),
            Ending::Yielded => None,
            Ending::ResultFailed(_, e) => return Err(e),
        })
    }

    #[tokio::test]
    async fn a_scale_is_recorded_before_it_is_made_and_not_written_twice() {
        let script = Script::default();
        let scaled = run(&script).await.expect("no error");
        assert_eq!(scaled, Some(Some(12)), "300 against 100 at 4 replicas: 12");
        assert_eq!(
            script.log(),
            [format!("record status: lastScaleTime {NOW} over {BEFORE}"), "scale to 12".into()]
        );
    }

    #[tokio::test]
    async fn a_record_that_cannot_be_written_means_no_scale() {
        let script = Script { status: StdMutex::new(VecDeque::from([Err(500)])), ..Default::default() };
        assert!(run(&script).await.is_err(), "the error goes to the error policy");
        assert_eq!(script.log(), [format!("record status: lastScaleTime {NOW} over {BEFORE} (not written)")]);
    }

    #[tokio::test]
    async fn a_record_over_a_newer_one_stops_the_pass_without_a_scale() {
        let script = Script { status: StdMutex::new(VecDeque::from([Ok(false)])), ..Default::default() };
        assert_eq!(run(&script).await.expect("no error"), None, "yielded");
        assert_eq!(script.log().len(), 1, "nothing after the refused record: {:?}", script.log());
    }

    #[tokio::test]
    async fn a_refused_scale_is_undone_by_restoring_the_previous_record() {
        let script = Script {
            scale: StdMutex::new(VecDeque::from([ScaleWrite::Refused("403 forbidden".into())])),
            ..Default::default()
        };
        assert_eq!(run(&script).await.expect("no error"), Some(None), "no scale happened");
        assert_eq!(
            script.log(),
            [
                format!("record status: lastScaleTime {NOW} over {BEFORE}"),
                "scale to 12".into(),
                format!("result status: lastScaleTime {BEFORE} over {NOW}"),
            ]
        );
    }

    #[tokio::test]
    async fn a_scale_without_an_answer_keeps_its_record_when_the_target_does_not_show_it() {
        let script = Script {
            scale: StdMutex::new(VecDeque::from([ScaleWrite::Unknown("504 timeout".into())])),
            read_back: Some(Ok(4)),
            ..Default::default()
        };
        assert_eq!(run(&script).await.expect("no error"), Some(None));
        let log = script.log();
        assert_eq!(log[2], "read back");
        assert_eq!(log[3], format!("result status: lastScaleTime {NOW} over {NOW}"), "the record stays");
    }

    #[tokio::test]
    async fn a_scale_without_an_answer_that_the_target_shows_is_a_scale() {
        let script = Script {
            scale: StdMutex::new(VecDeque::from([ScaleWrite::Unknown("connection reset".into())])),
            read_back: Some(Ok(12)),
            ..Default::default()
        };
        assert_eq!(run(&script).await.expect("no error"), Some(Some(12)));
        assert_eq!(script.log().last().map(String::as_str), Some("read back"), "no second status write");
    }

    #[tokio::test]
    async fn a_conflict_decides_again_once_on_fresh_data() {
        let script = Script {
            scale: StdMutex::new(VecDeque::from([ScaleWrite::Conflict])),
            fresh_replicas: 5,
            ..Default::default()
        };
        assert_eq!(run(&script).await.expect("no error"), Some(Some(15)), "300 against 100 at 5: 15");
        assert_eq!(
            script.log(),
            [
                format!("record status: lastScaleTime {NOW} over {BEFORE}"),
                "scale to 12".into(),
                "decide again at 5".into(),
                format!("record status: lastScaleTime {NOW} over {NOW}"),
                "scale to 15".into(),
            ]
        );
    }

    #[tokio::test]
    async fn a_second_conflict_is_undone_and_left_to_the_next_period() {
        let script = Script {
            scale: StdMutex::new(VecDeque::from([ScaleWrite::Conflict, ScaleWrite::Conflict])),
            fresh_replicas: 5,
            ..Default::default()
        };
        assert_eq!(run(&script).await.expect("no error"), Some(None));
        assert_eq!(
            script.log().last().cloned(),
            Some(format!("result status: lastScaleTime {BEFORE} over {NOW}"))
        );
    }
}
