//! Which pods count: the owner check, readiness for External metrics and recommenders
//! (`readyPodsCount`), and the different grouping of the Resource path (`groupPods`).

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};

use super::CalcError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl PodPhase {
    pub fn parse(s: &str) -> PodPhase {
        match s {
            "Pending" => PodPhase::Pending,
            "Running" => PodPhase::Running,
            "Succeeded" => PodPhase::Succeeded,
            "Failed" => PodPhase::Failed,
            _ => PodPhase::Unknown,
        }
    }
}

/// A pod condition's status, parsed once where the pod is read: the pod loop runs for every pod of every
/// decision, and a string compare there costs more than the rest of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    /// `Unknown`, and anything else the API server may one day write.
    Unknown,
}

impl ConditionStatus {
    pub fn parse(s: &str) -> ConditionStatus {
        match s {
            "True" => ConditionStatus::True,
            "False" => ConditionStatus::False,
            _ => ConditionStatus::Unknown,
        }
    }
}

/// The pod's `Ready` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyCondition {
    pub status: ConditionStatus,
    pub last_transition: Option<Timestamp>,
}

/// The only owner kind the owner heuristic treats differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerKind {
    ReplicaSet,
    Other,
}

impl OwnerKind {
    pub fn parse(kind: &str) -> OwnerKind {
        if kind == "ReplicaSet" { OwnerKind::ReplicaSet } else { OwnerKind::Other }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerRef {
    pub kind: OwnerKind,
    pub name: String,
}

/// What the engine needs to know about a pod selected by the target's scale selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub name: String,
    pub phase: PodPhase,
    pub ready: Option<ReadyCondition>,
    pub start_time: Option<Timestamp>,
    pub deleting: bool,
    pub owners: Vec<OwnerRef>,
}

/// Index of the first condition of type `lookup` (Go's `getPodCondition`).
pub fn pod_condition_index<S: AsRef<str>>(types: &[S], lookup: &str) -> Option<usize> {
    types.iter().position(|t| t.as_ref() == lookup)
}

/// Upstream's owner heuristic: any owner whose name, with a ReplicaSet's last `-segment` cut off,
/// equals the target's name. Kind, UID and the controller flag are not checked.
pub fn owner_matches(owners: &[OwnerRef], target: &str) -> bool {
    // Bytes, not chars: `-` is ASCII, and a char search costs more than the rest of a decision's pod loop.
    owners.iter().any(|o| {
        let name = o.name.as_bytes();
        match name.iter().rposition(|&c| c == b'-') {
            Some(i) if o.kind == OwnerKind::ReplicaSet => name[..i] == *target.as_bytes(),
            _ => name == target.as_bytes(),
        }
    })
}

/// `skip-owner-check` is on only for the exact string `"true"`.
pub fn should_skip_owner_check(annotations: Option<&BTreeMap<String, String>>) -> bool {
    annotations.and_then(|a| a.get(crate::api::annotations::SKIP_OWNER_CHECK)).is_some_and(|v| v == "true")
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadyCount {
    pub ready: i32,
    /// Pods that fail the owner check or have finished (Failed/Succeeded): out of the availability ratio.
    pub incorrect: i32,
}

fn delay(seconds: i32) -> SignedDuration {
    SignedDuration::from_secs(i64::from(seconds))
}

/// `readyPodsCount`: ready pods among those selected, for the External and recommender paths, or an error
/// when none is ready.
pub fn ready_pods_count(
    pods: &[PodInfo],
    target: &str,
    readiness_delay_seconds: i32,
    skip_owner_check: bool,
    now: Timestamp,
) -> Result<ReadyCount, CalcError> {
    require_ready(count_ready_pods(pods, target, readiness_delay_seconds, skip_owner_check, now), pods.len())
}

/// [`ready_pods_count`]'s verdict on pods already counted (`pods`: how many were selected).
pub(crate) fn require_ready(count: ReadyCount, pods: usize) -> Result<ReadyCount, CalcError> {
    if count.ready == 0 {
        return Err(CalcError::new(format!("among the {pods} pods, none is ready. Skipping recommendation")));
    }
    Ok(count)
}

/// Counts ready and incorrectly targeted pods. A Pending pod counts as ready for `readinessDelaySeconds`
/// after its Ready condition last changed; terminating pods are never ready.
pub fn count_ready_pods(
    pods: &[PodInfo],
    target: &str,
    readiness_delay_seconds: i32,
    skip_owner_check: bool,
    now: Timestamp,
) -> ReadyCount {
    let mut count = ReadyCount::default();
    for pod in pods {
        if !skip_owner_check && !owner_matches(&pod.owners, target) {
            count.incorrect += 1;
            continue;
        }
        if matches!(pod.phase, PodPhase::Failed | PodPhase::Succeeded) {
            count.incorrect += 1;
            continue;
        }
        let Some(ready) = &pod.ready else { continue };
        if pod.start_time.is_none() || pod.deleting {
            continue;
        }
        let running_ready = pod.phase == PodPhase::Running && ready.status == ConditionStatus::True;
        let pending_in_grace = pod.phase == PodPhase::Pending
            && ready.last_transition.is_some_and(|t| now.duration_since(t) < delay(readiness_delay_seconds));
        if running_ready || pending_in_grace {
            count.ready += 1;
        }
    }
    count
}

/// The pods of the Resource path, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodGroups {
    pub ready: BTreeSet<String>,
    /// Pending or Failed pods, and (for cpu) pods not yet ready: their metrics are dropped.
    pub ignored: BTreeSet<String>,
    /// Pods without a metric sample: neither ready nor ignored.
    pub missing: BTreeSet<String>,
    /// Pods that fail the owner check: neither ready nor ignored, but in the ratio's denominator.
    pub unowned: BTreeSet<String>,
    /// Why the pods of `ignored` are: to say so when none is left.
    pub why_ignored: Ignored,
}

/// How many pods were ignored, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ignored {
    pub pending_or_failed: usize,
    /// cpu: Ready is False (or not reported yet).
    pub not_ready: usize,
    /// cpu: Ready, but it became so within `readinessDelaySeconds` of the pod's start (upstream's rule ignores
    /// such a pod until its Ready condition changes again).
    pub ready_within_delay: usize,
}

/// `groupPods`: for `cpu`, a pod whose Ready condition last changed within `readinessDelaySeconds` of its
/// start is still initializing and ignored; other resources count unready Running pods as ready.
pub fn group_pods(
    pods: &[PodInfo],
    with_metrics: &BTreeSet<&str>,
    resource: &str,
    target: &str,
    readiness_delay_seconds: i32,
    skip_owner_check: bool,
) -> PodGroups {
    let mut g = PodGroups::default();
    for pod in pods {
        if !skip_owner_check && !owner_matches(&pod.owners, target) {
            g.unowned.insert(pod.name.clone());
            continue;
        }
        if matches!(pod.phase, PodPhase::Failed | PodPhase::Pending) {
            g.ignored.insert(pod.name.clone());
            g.why_ignored.pending_or_failed += 1;
            continue;
        }
        if !with_metrics.contains(pod.name.as_str()) {
            g.missing.insert(pod.name.clone());
            continue;
        }
        if resource == "cpu" {
            let initializing = match (&pod.ready, pod.start_time) {
                (Some(ready), Some(start)) => {
                    let transition = ready.last_transition.unwrap_or(Timestamp::MIN);
                    if ready.status == ConditionStatus::False {
                        Some(&mut g.why_ignored.not_ready)
                    } else if start
                        .checked_add(delay(readiness_delay_seconds))
                        .map_or(true, |s| s > transition)
                    {
                        Some(&mut g.why_ignored.ready_within_delay)
                    } else {
                        None
                    }
                }
                _ => Some(&mut g.why_ignored.not_ready),
            };
            if let Some(count) = initializing {
                *count += 1;
                g.ignored.insert(pod.name.clone());
                continue;
            }
        }
        g.ready.insert(pod.name.clone());
    }
    g
}

/// Drops the samples of the given pods (`removeMetricsForPods`).
pub fn remove_metrics_for_pods(metrics: &mut BTreeMap<String, i64>, pods: &BTreeSet<String>) {
    metrics.retain(|name, _| !pods.contains(name));
}

#[cfg(test)]
#[path = "pods_tests.rs"]
mod tests;
