//! The recommender wire protocol (docs/semantics.md §9): the protojson of `WorkloadRecommendationRequest` and
//! `WorkloadRecommendationReply` (agent-payload `autoscaling/kubernetes`). Pure mapping; the HTTP client
//! is the reconciler's (`reconciler::recommender_client`), above this layer.

use std::{collections::BTreeMap, net::IpAddr};

use serde::{Deserialize, Deserializer, Serialize};

use jiff::Timestamp;

use super::{
    calc::{Recommendation, ScaleInfo},
    pods::{self, PodInfo},
};
use crate::api::{CrossVersionObjectReference, RecommenderSpec, WatermarkPodAutoscalerSpec};

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}
fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

/// `targetRef`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TargetRef {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) cluster: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) api_version: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Constraints {
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub(crate) min_replicas: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub(crate) max_replicas: i32,
}

/// `state`: `currentReplicas` and `readyReplicas` are proto3 `optional`, so they are always sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct State {
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub(crate) desired_replicas: i32,
    pub(crate) current_replicas: i32,
    pub(crate) ready_replicas: i32,
}

/// One target (request) or observed target (reply).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Target {
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub(crate) type_: String,
    #[serde(
        default,
        alias = "target_value",
        skip_serializing_if = "is_zero_f64",
        deserialize_with = "proto_f64"
    )]
    pub(crate) target_value: f64,
    #[serde(
        default,
        alias = "lower_bound",
        skip_serializing_if = "is_zero_f64",
        deserialize_with = "proto_f64"
    )]
    pub(crate) lower_bound: f64,
    #[serde(
        default,
        alias = "upper_bound",
        skip_serializing_if = "is_zero_f64",
        deserialize_with = "proto_f64"
    )]
    pub(crate) upper_bound: f64,
}

/// The request body.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecommendationRequest {
    pub(crate) target_ref: TargetRef,
    pub(crate) constraints: Constraints,
    pub(crate) state: State,
    pub(crate) targets: Vec<Target>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) settings: BTreeMap<String, String>,
}

/// What the controller asks (upstream's `ReplicaRecommendationRequest`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecommenderQuery {
    pub namespace: String,
    pub target_ref: CrossVersionObjectReference,
    pub target_cluster: String,
    pub recommender: Option<RecommenderSpec>,
    pub desired_replicas: i32,
    pub current_replicas: i32,
    pub current_ready_replicas: i32,
    pub min_replicas: i32,
    pub max_replicas: i32,
}

/// What to ask the WPA's recommender in this pass (`GetRecommenderReplicas`): the target's spec replicas as
/// both current and desired (upstream #334: status replicas inflate during a rolling update, and a
/// recommender that follows `currentReplicas` would climb one replica per cycle), the ready pods clamped to
/// status replicas, the WPA's bounds. `None` when the WPA has no recommender.
pub fn query(
    namespace: &str,
    spec: &WatermarkPodAutoscalerSpec,
    scale: &ScaleInfo,
    pods: &[PodInfo],
    skip_owner_check: bool,
    cluster: &str,
    now: Timestamp,
) -> Option<RecommenderQuery> {
    let reco = spec.recommender.as_ref()?;
    let ready = pods::count_ready_pods(
        pods,
        &scale.name,
        spec.readiness_delay_seconds.unwrap_or(0),
        skip_owner_check,
        now,
    )
    .ready
    .min(scale.status_replicas);
    Some(RecommenderQuery {
        namespace: namespace.to_string(),
        target_ref: spec.scale_target_ref.clone(),
        target_cluster: cluster.to_string(),
        recommender: Some(reco.clone()),
        desired_replicas: scale.spec_replicas,
        current_replicas: scale.spec_replicas,
        current_ready_replicas: ready,
        min_replicas: spec.min_replicas.unwrap_or(0),
        max_replicas: spec.max_replicas.unwrap_or(0),
    })
}

/// Builds the wire request. Watermarks are sent as `milli / 1000` (so `800m` is `0.8`).
pub fn build_request(q: &RecommenderQuery, reco: &RecommenderSpec) -> RecommendationRequest {
    let bound =
        |w: &Option<crate::api::quantity::Quantity>| w.as_ref().map_or(0.0, |w| w.milli() as f64 / 1000.0);
    RecommendationRequest {
        target_ref: TargetRef {
            cluster: q.target_cluster.clone(),
            namespace: q.namespace.clone(),
            kind: q.target_ref.kind.clone(),
            name: q.target_ref.name.clone(),
            api_version: q.target_ref.api_version.clone().unwrap_or_default(),
        },
        constraints: Constraints { min_replicas: q.min_replicas, max_replicas: q.max_replicas },
        state: State {
            desired_replicas: q.desired_replicas,
            current_replicas: q.current_replicas,
            ready_replicas: q.current_ready_replicas,
        },
        targets: vec![Target {
            type_: reco.target_type.clone().unwrap_or_default(),
            target_value: 0.0,
            lower_bound: bound(&reco.low_watermark),
            upper_bound: bound(&reco.high_watermark),
        }],
        settings: reco.settings.clone().unwrap_or_default(),
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ReplyError {
    #[serde(default, deserialize_with = "proto_i32")]
    pub(crate) code: i32,
    #[serde(default)]
    pub(crate) message: String,
}

/// The reply body. Unknown fields are refused, as upstream's protojson decoder does.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecommendationReply {
    #[serde(default)]
    pub(crate) error: Option<ReplyError>,
    #[serde(default)]
    pub(crate) timestamp: Option<String>,
    #[serde(default, alias = "target_replicas", deserialize_with = "proto_i32")]
    pub(crate) target_replicas: i32,
    #[serde(default, alias = "lower_bound_replicas", deserialize_with = "proto_opt_i32")]
    pub(crate) lower_bound_replicas: Option<i32>,
    #[serde(default, alias = "upper_bound_replicas", deserialize_with = "proto_opt_i32")]
    pub(crate) upper_bound_replicas: Option<i32>,
    #[serde(default, alias = "observed_targets")]
    pub(crate) observed_targets: Vec<Target>,
    #[serde(default)]
    pub(crate) reason: String,
}

/// `buildReplicaRecommendationResponse`: an error in the reply becomes an error; missing bounds read as 0;
/// the observed value is the first observed target's.
pub fn recommendation_from_reply(reply: &RecommendationReply) -> Result<Recommendation, String> {
    if let Some(e) = &reply.error {
        return Err(format!("error from recommender: {} {}", e.code, e.message));
    }
    Ok(Recommendation {
        replicas: reply.target_replicas,
        replicas_lower_bound: reply.lower_bound_replicas.unwrap_or(0),
        replicas_upper_bound: reply.upper_bound_replicas.unwrap_or(0),
        timestamp: reply.timestamp.clone(),
        details: reply.reason.clone(),
        observed_target_value: reply.observed_targets.first().map_or(0.0, |t| t.target_value),
    })
}

/// How far beyond `maxReplicas` a recommendation may go before it is taken for garbage rather than for a
/// recommender that does not read the constraints it is sent (the engine clamps an honest one to max).
const FAR_BEYOND_MAX: i32 = 10;
/// How far in the future a reply's timestamp may be (clock skew between the recommender and us).
const MAX_FUTURE: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// Difference "garbage recommendations": upstream scales on any reply that decodes. A reply this refuses is
/// a failed metric (the pass holds, `ScalingActive` False with these words), as a negative or stale metric
/// value is: a negative count or bound, a lower bound above the upper one, a count more than ten times
/// `maxReplicas`, a timestamp that is not RFC 3339, more than a minute in the future, or older than
/// `max_age` (`--metric-max-age`). A reply without a timestamp is taken as fresh, as upstream does.
pub fn check_recommendation(
    r: &Recommendation,
    max_replicas: i32,
    now: Timestamp,
    max_age: Option<std::time::Duration>,
) -> Result<(), String> {
    if r.replicas < 0 || r.replicas_lower_bound < 0 || r.replicas_upper_bound < 0 {
        return Err(format!(
            "the recommender proposed a negative count (targetReplicas {}, bounds {}..{})",
            r.replicas, r.replicas_lower_bound, r.replicas_upper_bound
        ));
    }
    if r.replicas_upper_bound > 0 && r.replicas_lower_bound > r.replicas_upper_bound {
        return Err(format!(
            "the recommender's lowerBoundReplicas {} is above its upperBoundReplicas {}",
            r.replicas_lower_bound, r.replicas_upper_bound
        ));
    }
    let far = max_replicas.max(1).saturating_mul(FAR_BEYOND_MAX);
    if [r.replicas, r.replicas_upper_bound].iter().any(|&n| n > far) {
        return Err(format!(
            "the recommender proposed {} replicas (upper bound {}), more than {FAR_BEYOND_MAX} times maxReplicas {max_replicas}: refused as garbage",
            r.replicas, r.replicas_upper_bound
        ));
    }
    let Some(text) = r.timestamp.as_deref().filter(|t| !t.is_empty()) else { return Ok(()) };
    let Ok(at) = text.parse::<Timestamp>() else {
        return Err("the recommender's timestamp is not an RFC 3339 time".into());
    };
    if at.duration_since(now) > MAX_FUTURE {
        return Err(format!("the recommender's timestamp {at} is in the future"));
    }
    if let Some(max) = max_age
        && super::metrics::older_than(at, now, max_age)
    {
        // No age in the text: it grows every pass (a status write and an event each time).
        return Err(format!(
            "the recommendation was made at {at}, more than --metric-max-age ({}s) ago: the recommender is not updating it",
            max.as_secs()
        ));
    }
    Ok(())
}

/// Whether `ip` is the machine's own (loopback, unspecified) or link-local (169.254.0.0/16, where clouds
/// serve instance metadata and credentials; fe80::/10).
pub(crate) fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local(IpAddr::V4(v4));
            }
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The host of a URL as an IP literal, if it is one (`[::1]` included).
fn ip_literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// Whether a URL's host is local by name or address: an IP literal that [`is_local`], or `localhost`.
pub(crate) fn is_local_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost") || ip_literal(&host).is_some_and(is_local)
}

/// The recommender's display name: `recommender{targetType:<t>,<k>:<v>,...}`, settings sorted by key.
pub fn display_name(reco: &RecommenderSpec) -> String {
    let mut s = format!("recommender{{targetType:{}", reco.target_type.as_deref().unwrap_or(""));
    for (k, v) in reco.settings.iter().flatten() {
        s.push_str(&format!(",{k}:{v}"));
    }
    s.push('}');
    s
}

/// protojson accepts 32-bit integers as numbers or decimal strings.
fn proto_i32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    proto_opt_i32(d).map(Option::unwrap_or_default)
}

fn proto_opt_i32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    use serde::de::Error;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Number(n) => n
            .as_i64()
            .and_then(|v| i32::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{n} is not a 32-bit integer"))),
        serde_json::Value::String(s) => {
            s.parse::<i32>().map(Some).map_err(|_| D::Error::custom(format!("{s:?} is not a 32-bit integer")))
        }
        other => Err(D::Error::custom(format!("{other} is not a 32-bit integer"))),
    }
}

/// protojson accepts doubles as numbers or strings (including "NaN"/"Infinity", which we refuse).
fn proto_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    use serde::de::Error;
    let v = match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => 0.0,
        serde_json::Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        serde_json::Value::String(s) => {
            s.parse::<f64>().map_err(|_| D::Error::custom(format!("{s:?} is not a number")))?
        }
        other => return Err(D::Error::custom(format!("{other} is not a number"))),
    };
    if v.is_finite() { Ok(v) } else { Err(D::Error::custom("the value is not a finite number")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-06-01T12:00:00Z".parse().expect("a time")
    }

    fn reco(replicas: i32, lower: i32, upper: i32, timestamp: Option<&str>) -> Recommendation {
        Recommendation {
            replicas,
            replicas_lower_bound: lower,
            replicas_upper_bound: upper,
            timestamp: timestamp.map(String::from),
            details: String::new(),
            observed_target_value: 0.5,
        }
    }

    const FIVE_MINUTES: Option<std::time::Duration> = Some(std::time::Duration::from_secs(300));

    #[test]
    fn an_honest_recommendation_passes() {
        let fresh = reco(12, 10, 14, Some("2026-06-01T11:59:30Z"));
        assert_eq!(check_recommendation(&fresh, 20, now(), FIVE_MINUTES), Ok(()));
        // Upstream's "no recommendation" and a reply without timestamp or bounds.
        assert_eq!(check_recommendation(&reco(0, 0, 0, None), 20, now(), FIVE_MINUTES), Ok(()));
        // Above maxReplicas, but not absurdly: clamped by the engine, not refused.
        assert_eq!(check_recommendation(&reco(30, 0, 0, None), 20, now(), FIVE_MINUTES), Ok(()));
    }

    #[test]
    fn negative_counts_and_inverted_bounds_are_refused() {
        for r in [reco(-5, 0, 0, None), reco(3, -1, 4, None), reco(3, 5, 4, None)] {
            assert!(check_recommendation(&r, 20, now(), FIVE_MINUTES).is_err(), "{r:?}");
        }
    }

    #[test]
    fn a_count_far_beyond_max_replicas_is_refused() {
        let e =
            check_recommendation(&reco(i32::MAX, 0, 0, None), 20, now(), FIVE_MINUTES).expect_err("garbage");
        assert!(e.contains("more than 10 times maxReplicas 20"), "{e}");
        assert!(check_recommendation(&reco(10, 0, 201, None), 20, now(), FIVE_MINUTES).is_err());
    }

    #[test]
    fn stale_future_and_unreadable_timestamps_are_refused() {
        for t in ["2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z", "yesterday"] {
            assert!(check_recommendation(&reco(12, 0, 0, Some(t)), 20, now(), FIVE_MINUTES).is_err(), "{t}");
        }
        // Without --metric-max-age, an old timestamp is accepted; a future one never is.
        assert_eq!(
            check_recommendation(&reco(12, 0, 0, Some("2020-01-01T00:00:00Z")), 20, now(), None),
            Ok(())
        );
        assert!(
            check_recommendation(&reco(12, 0, 0, Some("2099-01-01T00:00:00Z")), 20, now(), None).is_err()
        );
    }
}
