//! Combining the metrics (`computeReplicas`, docs/semantics.md §6.4, §6.7, §6.9, §6.14) and running the
//! calculator per metric: the winner, the positions, the abort on the first failure, the status entries, and
//! the errors `compute_outcomes` gives for what was not observed.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::*;
use crate::engine::{
    calc::{ExternalSample, MetricResult},
    fixtures,
};

fn now() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().expect("a timestamp")
}

fn spec(json: serde_json::Value) -> WatermarkPodAutoscalerSpec {
    serde_json::from_value(json).expect("a spec")
}

/// Two External metrics, `qps{app:web}` and `lag{app:web,tier:db}`, both 50..100.
fn two_externals() -> WatermarkPodAutoscalerSpec {
    spec(serde_json::json!({
        "scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 50,
        "metrics": [
            {"type": "External", "external": {"metricName": "qps",
                "metricSelector": {"matchLabels": {"app": "web"}}, "highWatermark": "100", "lowWatermark": "50"}},
            {"type": "External", "external": {"metricName": "lag",
                "metricSelector": {"matchLabels": {"tier": "db", "app": "web"}}, "highWatermark": "100", "lowWatermark": "50"}}
        ]
    }))
}

fn result(replicas: i32, ready: i32, above: bool, below: bool) -> MetricResult {
    MetricResult {
        replica_count: replicas,
        utilization: 75_000,
        usage: 75_000.0,
        timestamp: None,
        ready_replicas: ready,
        is_above: above,
        is_below: below,
        details: String::new(),
        converge: None,
        band: None,
        overflowed: false,
    }
}

fn outcome(kind: MetricKind, name: &str, index: usize, r: Result<MetricResult, &str>) -> MetricOutcome {
    MetricOutcome {
        kind,
        name: name.into(),
        display_name: format!("{name}{{…}}"),
        high_milli: 100_000,
        low_milli: 50_000,
        result: Some(r.map_err(str::to_string)),
        index,
    }
}

fn ok(name: &str, index: usize, replicas: i32, ready: i32) -> MetricOutcome {
    outcome(MetricKind::External, name, index, Ok(result(replicas, ready, false, false)))
}

fn combined(outcomes: &[MetricOutcome]) -> Combined {
    combine(&two_externals(), outcomes).expect("a combination").0
}

// --- combine ---

#[test]
fn the_highest_proposal_wins_and_brings_its_ready_count_and_name() {
    // §6.9: readyReplicas and the display name come from the winning metric.
    let c = combined(&[ok("qps", 0, 4, 3), ok("lag", 1, 6, 5)]);
    assert_eq!((c.replicas, c.winner, c.ready_replicas), (6, Some(1), 5));
    assert_eq!(c.display_name, "lag{…}");
}

#[test]
fn the_first_metric_wins_a_tie() {
    // §6.9: a later proposal replaces the winner only when strictly greater.
    let c = combined(&[ok("qps", 0, 6, 3), ok("lag", 1, 6, 5)]);
    assert_eq!((c.winner, c.ready_replicas), (Some(0), 3));
}

#[test]
fn the_first_metric_wins_even_with_a_proposal_of_zero() {
    // §6.9: the first metric's proposal is taken whatever its value (0 is not "no proposal yet"); only a
    // strictly greater one replaces it.
    let c = combined(&[ok("qps", 0, 0, 3), ok("lag", 1, 0, 5)]);
    assert_eq!((c.replicas, c.winner, c.ready_replicas), (0, Some(0), 3));
}

#[test]
fn the_positions_are_the_or_of_every_metric() {
    // §6.7: one metric below, another above and a third within make both true (the regime is unstable).
    let down = outcome(MetricKind::External, "lag", 0, Ok(result(2, 4, false, true)));
    let up = outcome(MetricKind::External, "qps", 1, Ok(result(8, 4, true, false)));
    let c = combined(&[down, up, ok("cpu", 2, 4, 4)]);
    assert!(c.is_above && c.is_below);
}

#[test]
fn the_winners_recommender_reason_is_kept_for_the_condition() {
    let mut r = result(5, 5, false, false);
    r.details = "traffic forecast".into();
    let c = combined(&[outcome(MetricKind::Recommender, "recommender{targetType:cpu}", 0, Ok(r))]);
    assert_eq!(c.details, "traffic forecast");
}

#[test]
fn a_failing_metric_aborts_the_combination_even_after_a_healthy_one() {
    // §6.4 / §17.8: one failing metric blocks scaling on all the others.
    let failing =
        outcome(MetricKind::External, "lag", 1, Err("no metrics returned from external metrics API"));
    let e = combine(&two_externals(), &[ok("qps", 0, 9, 3), failing]).expect_err("the second metric failed");
    assert_eq!(e.index, 1);
    assert_eq!(e.reason, "FailedGetExternalMetric");
    assert_eq!(
        e.message,
        "failed to compute replicas based on external metric lag: no metrics returned from external metrics API"
    );
}

#[test]
fn a_failing_resource_metric_is_reported_as_a_resource_metric() {
    let failing = outcome(MetricKind::Resource, "cpu", 0, Err("did not receive metrics for any ready pods"));
    let e = combine(&two_externals(), &[failing]).expect_err("the metric failed");
    assert_eq!(e.reason, "FailedGetResourceMetric");
    assert_eq!(e.message, "failed to get resource metric cpu: did not receive metrics for any ready pods");
}

#[test]
fn a_failing_recommender_is_reported_with_its_url_under_the_resource_reason() {
    // §6.4 recommender step 3: upstream files recommender failures under FailedGetResourceMetric.
    let s = spec(serde_json::json!({"recommender": {"url": "https://reco.prod:8443/recommend"}}));
    let failing = outcome(MetricKind::Recommender, "recommender{targetType:}", 0, Err("timeout"));
    let e = combine(&s, &[failing]).expect_err("the recommender failed");
    assert_eq!(e.reason, "FailedGetResourceMetric");
    assert_eq!(e.message, "failed to get the recommendation from https://reco.prod:8443/recommend: timeout");
}

#[test]
fn a_metric_without_a_source_leaves_an_empty_status_slot_and_does_not_vote() {
    // §6.4: such a MetricSpec is skipped, "leaving a zero MetricStatus in its slot".
    let skipped = MetricOutcome { result: None, ..ok("", 0, 0, 0) };
    let (c, statuses) = combine(&two_externals(), &[skipped, ok("lag", 1, 3, 2)]).expect("a combination");
    assert_eq!(c.winner, Some(1));
    assert_eq!(statuses.len(), 2);
    assert_eq!(statuses[0], MetricStatus::default());
}

#[test]
fn without_any_metric_there_is_no_winner_and_no_proposal() {
    let (c, statuses) = combine(&two_externals(), &[]).expect("nothing to combine");
    assert_eq!((c.replicas, c.winner, c.ready_replicas), (0, None, 0));
    assert!(!c.is_above && !c.is_below);
    assert!(statuses.is_empty());
}

#[test]
fn an_external_status_carries_the_bare_name_the_spec_selector_and_the_utilization() {
    // §6.14: {type: External, external: {metricName, metricSelector, currentValue}}.
    let (_, statuses) =
        combine(&two_externals(), &[ok("qps", 0, 2, 2), ok("lag", 1, 2, 2)]).expect("combined");
    let e = statuses[1].external.as_ref().expect("an external status");
    assert_eq!(statuses[1].type_, "External");
    assert_eq!(e.metric_name, "lag");
    let labels = e.metric_selector.as_ref().and_then(|s| s.match_labels.as_ref()).expect("the spec's labels");
    assert_eq!(labels.get("tier").map(String::as_str), Some("db"));
    assert_eq!(e.current_value.milli(), 75_000);
}

#[test]
fn a_resource_status_reports_the_utilization_as_current_average_value() {
    // §6.14: with the absolute algorithm this is really the sum, as upstream.
    let (_, statuses) =
        combine(&two_externals(), &[outcome(MetricKind::Resource, "cpu", 0, Ok(result(2, 2, false, false)))])
            .expect("combined");
    let r = statuses[0].resource.as_ref().expect("a resource status");
    assert_eq!((statuses[0].type_.as_str(), r.name.as_str()), ("Resource", "cpu"));
    assert_eq!(r.current_average_value.milli(), 75_000);
    assert!(statuses[0].external.is_none());
}

#[test]
fn a_recommender_status_is_filed_as_resource_with_an_external_entry() {
    // §6.4 recommender step 8: type Resource, `external` = {display name, empty selector, value}.
    let name = "recommender{targetType:cpu}";
    let (_, statuses) = combine(
        &two_externals(),
        &[outcome(MetricKind::Recommender, name, 0, Ok(result(2, 2, false, false)))],
    )
    .expect("combined");
    assert_eq!(statuses[0].type_, "Resource");
    assert!(statuses[0].resource.is_none());
    let e = statuses[0].external.as_ref().expect("an external entry");
    assert_eq!(e.metric_name, name);
    assert_eq!(e.metric_selector, Some(LabelSelector::default()));
}

#[test]
fn the_valid_metric_message_adds_the_recommenders_reason_only_when_there_is_one() {
    // §3 ScalingActive/ValidMetricFound.
    assert_eq!(
        valid_metric_message("qps{map[app:web]}", ""),
        "the WPA was able to successfully calculate a replica count from qps{map[app:web]}"
    );
    assert_eq!(
        valid_metric_message("recommender{targetType:cpu}", "peak hours"),
        "the WPA was able to successfully calculate a replica count from recommender{targetType:cpu} because: peak hours"
    );
}

// --- compute_outcomes ---

fn scale() -> ScaleInfo {
    fixtures::scale("prod", "web", 2, 2)
}

fn pods() -> Vec<PodInfo> {
    fixtures::running_pods("web-5d8c", 2, 2, now())
}

fn outcomes_for(
    s: &WatermarkPodAutoscalerSpec,
    pods: Result<&[PodInfo], &str>,
    observed: &[MetricObservation],
    recommendation: Option<Result<&Recommendation, &str>>,
) -> Vec<MetricOutcome> {
    let calc_spec = CalcSpec::from_spec(s, false);
    let scale = scale();
    let cx = MetricContext::new(s, &calc_spec, "prod", &scale, pods, now());
    compute_outcomes(&cx, observed, recommendation)
}

fn external_sample(milli: i64) -> MetricObservation {
    MetricObservation::External(Ok(ExternalSample { values: vec![milli], timestamp: Some(now()) }))
}

fn error_of(o: &MetricOutcome) -> &str {
    match &o.result {
        Some(Err(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn display_names_list_the_selector_labels_sorted_as_go_prints_a_map() {
    // §6.4: `<metricName>{map[k1:v1 k2:v2]}`, keys sorted; the Prometheus name stays bare.
    let p = pods();
    let out =
        outcomes_for(&two_externals(), Ok(&p), &[external_sample(75_000), external_sample(75_000)], None);
    assert_eq!(out[1].display_name, "lag{map[app:web tier:db]}");
    assert_eq!(out[1].name, "lag");
    assert_eq!((out[1].high_milli, out[1].low_milli), (100_000, 50_000));
}

#[test]
fn an_unreadable_pod_selector_fails_every_metric_with_upstreams_words() {
    let out =
        outcomes_for(&two_externals(), Err("bad selector"), &[external_sample(1), external_sample(1)], None);
    for o in &out {
        assert_eq!(error_of(o), "could not parse the labels of the target: bad selector");
    }
}

#[test]
fn a_metric_that_was_not_observed_fails_instead_of_counting_as_zero() {
    // Fewer observations than metrics: the second metric was never fetched.
    let p = pods();
    let out = outcomes_for(&two_externals(), Ok(&p), &[external_sample(75_000)], None);
    assert!(matches!(out[0].result, Some(Ok(_))));
    assert_eq!(error_of(&out[1]), "the external metric was not fetched");
}

#[test]
fn a_metric_whose_type_names_a_missing_source_is_skipped_under_that_type() {
    let s = spec(serde_json::json!({"metrics": [{"type": "Resource"}, {"type": "External"}]}));
    let p = pods();
    let out = outcomes_for(&s, Ok(&p), &[], None);
    let kinds: Vec<(MetricKind, bool)> = out.iter().map(|o| (o.kind, o.result.is_none())).collect();
    assert_eq!(kinds, [(MetricKind::Resource, true), (MetricKind::External, true)]);
}

#[test]
fn a_recommender_without_a_low_watermark_fails_the_metric_not_the_pass() {
    // Our decision 4: a condition, never a crash (upstream dereferences nil, §16.4).
    let s = spec(
        serde_json::json!({"recommender": {"url": "http://reco", "targetType": "cpu", "highWatermark": "1"}}),
    );
    let p = pods();
    let reply = Recommendation { replicas: 3, ..Default::default() };
    let out = outcomes_for(&s, Ok(&p), &[], Some(Ok(&reply)));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, MetricKind::Recommender);
    assert!(error_of(&out[0]).contains("needs both highWatermark and lowWatermark"), "{:?}", out[0]);
}

#[test]
fn a_recommender_that_was_not_asked_fails_the_metric() {
    let s = spec(
        serde_json::json!({"recommender": {"url": "http://reco", "highWatermark": "1", "lowWatermark": "1"}}),
    );
    let p = pods();
    let out = outcomes_for(&s, Ok(&p), &[], None);
    assert!(error_of(&out[0]).ends_with("no recommendation was fetched"), "{:?}", out[0]);
}

#[test]
fn a_recommender_replaces_the_metrics_of_the_spec() {
    // §6.3 step 8: the recommender path runs when spec.recommender is set, the metrics path otherwise
    // (validation refuses both together; the engine still asks only the recommender).
    let mut s = two_externals();
    s.recommender = serde_json::from_value(
        serde_json::json!({"url": "http://reco", "targetType": "cpu", "highWatermark": "1", "lowWatermark": "1"}),
    )
    .expect("a recommender");
    let p = pods();
    let reply = Recommendation {
        replicas: 2,
        replicas_lower_bound: 1,
        replicas_upper_bound: 3,
        ..Default::default()
    };
    let out = outcomes_for(&s, Ok(&p), &[external_sample(1)], Some(Ok(&reply)));
    let names: Vec<&str> = out.iter().map(|o| o.display_name.as_str()).collect();
    assert_eq!(names, ["recommender{targetType:cpu}"]);
}

#[test]
fn a_resource_metric_is_computed_from_its_per_pod_observation() {
    let s = spec(serde_json::json!({"metrics": [{"type": "Resource", "resource": {"name": "memory",
        "metricSelector": {"matchLabels": {"app": "web"}}, "highWatermark": "100", "lowWatermark": "50"}}]}));
    let p = pods();
    let usage: BTreeMap<String, i64> = p.iter().map(|pod| (pod.name.clone(), 40_000)).collect();
    let out = outcomes_for(&s, Ok(&p), &[MetricObservation::Resource(Ok(usage))], None);
    let r = out[0].result.as_ref().and_then(|r| r.as_ref().ok()).expect("a result");
    // Absolute (the default): the sum over both pods.
    assert_eq!(r.utilization, 80_000);
    assert_eq!(out[0].display_name, "memory{map[app:web]}");
}

fn sampled_ago(secs: i64) -> Option<Timestamp> {
    Some(now() - jiff::SignedDuration::from_secs(secs))
}

const FIVE_MINUTES: Option<std::time::Duration> = Some(std::time::Duration::from_secs(300));

#[test]
fn a_sample_older_than_the_max_age_is_stale_with_the_limit_named() {
    assert_eq!(
        check_sample_age(sampled_ago(301), now(), FIVE_MINUTES),
        Err("the newest value was sampled at 2026-03-01T11:54:59Z, more than --metric-max-age (300s) ago: the metrics provider is not updating it".into())
    );
}

#[test]
fn a_sample_exactly_the_max_age_old_is_fresh() {
    assert_eq!(check_sample_age(sampled_ago(300), now(), FIVE_MINUTES), Ok(()));
}

#[test]
fn no_limit_or_no_timestamp_is_never_stale() {
    assert_eq!(check_sample_age(sampled_ago(86_400), now(), None), Ok(()));
    assert_eq!(check_sample_age(None, now(), FIVE_MINUTES), Ok(()));
}

#[test]
fn a_sample_from_the_future_is_not_stale() {
    assert_eq!(check_sample_age(sampled_ago(-600), now(), FIVE_MINUTES), Ok(()));
}
