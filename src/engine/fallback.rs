//! Ours: an opt-in, up-only fallback for metric outages (KEDA's and Datadog's newer autoscaler's `fallback`).
//!
//! A WPA whose metrics fail holds its count, as upstream does: safe against a wrong downscale, but a service
//! stays under-provisioned through a long outage of its metrics at peak. With the annotations
//! `wpa.datadoghq.com/fallback-replicas: "N"` and `wpa.datadoghq.com/fallback-after: "10m"`, once **every**
//! metric of the WPA has failed for longer than `fallback-after`, the count goes to `max(current, N)`, through
//! the same maxReplicas, scale-up limit and forbidden windows as any scale, and never down.
//!
//! Not an outage: a failure caused by the pods themselves (none listed, none ready, fewer ready than
//! `minAvailableReplicaPercentage`): that gate protects a rollout and a fallback must not defeat it.
//!
//! The state lives in the `Fallback` condition, so that it survives restarts and a change of leader: `False`
//! while a metric answers, `Unknown` while every metric fails and the fallback waits (its transition time is
//! when the outage began), `True` once the fallback decides the count.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use super::{
    conditions::{FALLBACK, get_condition, text},
    decision::{Decision, Series},
};
use crate::api::{annotations, duration};

/// A WPA's fallback, from its annotations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fallback {
    /// The least replicas during an outage.
    pub replicas: i32,
    /// How long every metric must have failed.
    pub after: SignedDuration,
}

/// A fallback annotation that cannot be read: which one, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FallbackError {
    pub annotation: &'static str,
    pub problem: String,
}

impl std::fmt::Display for FallbackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.annotation, self.problem)
    }
}

impl Fallback {
    /// From a WPA's annotations: `Ok(None)` when neither is set; `Err` with what to write instead.
    pub fn from_annotations(a: Option<&BTreeMap<String, String>>) -> Result<Option<Fallback>, FallbackError> {
        let get = |k: &str| a.and_then(|a| a.get(k)).map(String::as_str);
        let error = |annotation, problem| FallbackError { annotation, problem };
        let (replicas, after) = match (get(annotations::FALLBACK_REPLICAS), get(annotations::FALLBACK_AFTER))
        {
            (None, None) => return Ok(None),
            (Some(r), Some(a)) => (r, a),
            (Some(_), None) | (None, Some(_)) => {
                let missing = if get(annotations::FALLBACK_AFTER).is_none() {
                    annotations::FALLBACK_AFTER
                } else {
                    annotations::FALLBACK_REPLICAS
                };
                return Err(error(
                    missing,
                    format!(
                        "missing: set both {} and {} (a replica count, and how long every metric must have failed), or neither",
                        annotations::FALLBACK_REPLICAS,
                        annotations::FALLBACK_AFTER
                    ),
                ));
            }
        };
        let replicas = replicas.trim().parse::<i32>().ok().filter(|n| *n > 0).ok_or_else(|| {
            error(
                annotations::FALLBACK_REPLICAS,
                format!("{replicas:?} is not a positive whole number of replicas (e.g. \"10\")"),
            )
        })?;
        let after = duration::parse_duration(after)
            .and_then(|d| SignedDuration::try_from(d).ok())
            .ok_or_else(|| {
                error(
                    annotations::FALLBACK_AFTER,
                    format!("{after:?} is not a duration such as \"10m\", \"90s\" or \"1h\""),
                )
            })?;
        Ok(Some(Fallback { replicas, after }))
    }

    /// The webhook's check of a WPA's fallback, against its bounds.
    pub(crate) fn check(
        a: Option<&BTreeMap<String, String>>,
        min_replicas: i32,
        max_replicas: i32,
    ) -> Option<FallbackError> {
        match Fallback::from_annotations(a) {
            Err(e) => Some(e),
            Ok(Some(f)) if f.replicas < min_replicas || f.replicas > max_replicas => Some(FallbackError {
                annotation: annotations::FALLBACK_REPLICAS,
                problem: format!(
                    "{} is outside minReplicas..maxReplicas ({min_replicas}..{max_replicas}): give a count the WPA may scale to",
                    f.replicas
                ),
            }),
            Ok(_) => None,
        }
    }
}

/// Where a WPA with a fallback stands after this pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackState {
    /// A metric answers (or the failure is the pods'): the WPA scales on its metrics.
    Off,
    /// Every metric has failed since `since`; the fallback keeps at least `replicas` from `due` on.
    Pending { since: Timestamp, due: Timestamp, replicas: i32 },
    /// Every metric has failed for longer than `fallback-after`: the count is at least `replicas`.
    Active { since: Timestamp, replicas: i32 },
}

/// Moves the `Fallback` condition for this pass and says where the WPA stands. `outage`: every metric failed
/// and the pods are not the cause.
pub(super) fn assess(
    d: &mut Decision<'_>,
    fallback: &Fallback,
    outage: bool,
    now: Timestamp,
) -> FallbackState {
    let previous =
        get_condition(d.status(), FALLBACK).map(|c| (c.status.clone(), c.last_transition_time.clone()));
    let since = |p: &Option<(String, Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>)>| {
        p.as_ref().and_then(|(_, t)| t.as_ref()).map_or(now, |t| t.0)
    };
    let status = previous.as_ref().map(|(s, _)| s.as_str());
    if !outage {
        if status == Some("True") {
            d.event(false, text::FALLBACK_ENDED, text::FALLBACK_ENDED_MSG.into(), Some(FALLBACK));
        }
        d.set(FALLBACK, false, text::METRICS_AVAILABLE, text::METRICS_AVAILABLE_MSG);
        d.gauge(Series::FallbackActive, None, 0.0);
        return FallbackState::Off;
    }
    let state = match status {
        Some("True") => FallbackState::Active { since: since(&previous), replicas: fallback.replicas },
        Some("Unknown") => {
            let since = since(&previous);
            let due = since.saturating_add(fallback.after).unwrap_or(since);
            if now >= due {
                FallbackState::Active { since: now, replicas: fallback.replicas }
            } else {
                FallbackState::Pending { since, due, replicas: fallback.replicas }
            }
        }
        // The outage begins with this pass; a fallback-after shorter than a period still waits for the next.
        _ => FallbackState::Pending {
            since: now,
            due: now.saturating_add(fallback.after).unwrap_or(now),
            replicas: fallback.replicas,
        },
    };
    match state {
        FallbackState::Active { .. } => {
            let message = format!(
                "every metric of the WPA has failed for more than {}: it keeps at least {} replicas (fallback-replicas) until a metric answers",
                human(fallback.after),
                fallback.replicas
            );
            d.event(true, text::FALLBACK_ACTIVE, message.clone(), Some(FALLBACK));
            d.set(FALLBACK, true, text::FALLBACK_ACTIVE, &message);
            d.gauge(Series::FallbackActive, None, 1.0);
        }
        FallbackState::Pending { since, due, .. } => {
            let message = format!(
                "every metric of the WPA has failed since {since}: unless one answers, it keeps at least {} replicas (fallback-replicas) from {due}",
                fallback.replicas
            );
            d.set_to(FALLBACK, "Unknown", text::METRICS_FAILING, &message);
            d.gauge(Series::FallbackActive, None, 0.0);
        }
        FallbackState::Off => {}
    }
    state
}

/// `10m`, `1h30m`, `45s`: as the annotation would say it.
pub(crate) fn human(d: SignedDuration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s % 3600 / 60, s % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() { "0s".into() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const R: &str = annotations::FALLBACK_REPLICAS;
    const A: &str = annotations::FALLBACK_AFTER;

    #[test]
    fn both_annotations_make_a_fallback() {
        let a = annotations(&[(R, "8"), (A, "10m")]);
        assert_eq!(
            Fallback::from_annotations(Some(&a)),
            Ok(Some(Fallback { replicas: 8, after: SignedDuration::from_mins(10) }))
        );
    }

    #[test]
    fn neither_annotation_is_no_fallback() {
        assert_eq!(Fallback::from_annotations(None), Ok(None));
        assert_eq!(Fallback::from_annotations(Some(&annotations(&[("other", "x")]))), Ok(None));
    }

    #[test]
    fn one_annotation_alone_is_refused_naming_both() {
        let e = Fallback::from_annotations(Some(&annotations(&[(R, "8")]))).expect_err("refused");
        assert_eq!(e.annotation, A, "the missing one is named");
        assert!(e.problem.contains(R) && e.problem.contains("or neither"), "{e}");
    }

    #[test]
    fn a_count_that_is_not_a_positive_number_is_refused_with_an_example() {
        for bad in ["eight", "0", "-3", "2.5", ""] {
            let e = Fallback::from_annotations(Some(&annotations(&[(R, bad), (A, "1m")]))).expect_err(bad);
            assert!(e.annotation == R && e.problem.contains("e.g. \"10\""), "{bad}: {e}");
        }
    }

    #[test]
    fn a_delay_that_is_not_a_duration_is_refused_with_examples() {
        for bad in ["10", "ten minutes", "0s", "-1m"] {
            let e = Fallback::from_annotations(Some(&annotations(&[(R, "3"), (A, bad)]))).expect_err(bad);
            assert!(e.annotation == A && e.problem.contains("\"10m\""), "{bad}: {e}");
        }
    }

    #[test]
    fn a_count_outside_min_and_max_is_refused_with_the_bounds() {
        let a = annotations(&[(R, "30"), (A, "5m")]);
        let e = Fallback::check(Some(&a), 2, 20).expect("refused");
        assert!(e.problem.contains("30 is outside minReplicas..maxReplicas (2..20)"), "{e}");
        assert_eq!(
            Fallback::check(Some(&annotations(&[(R, "20"), (A, "5m")])), 2, 20),
            None,
            "max itself is fine"
        );
    }

    #[test]
    fn durations_read_as_the_annotation_would_say_them() {
        assert_eq!(human(SignedDuration::from_mins(10)), "10m");
        assert_eq!(human(SignedDuration::from_secs(5400)), "1h30m");
        assert_eq!(human(SignedDuration::from_secs(45)), "45s");
    }
}

#[cfg(test)]
#[path = "fallback_tests.rs"]
mod outage_tests;
