//! Each metric's proposal (`computeReplicas` per metric, through the calculator) and their combination:
//! the highest proposal wins, and one failing metric aborts the computation.

use std::cell::OnceCell;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{
    CalcError,
    calc::{self, CalcSpec, Recommendation, ScaleInfo},
    conditions::text,
    decision::{CombineError, Combined, MetricKind, MetricObservation, MetricOutcome},
    pods::{self, PodInfo, ReadyCount},
    recommender,
};
use crate::api::{
    ExternalMetricStatus, MetricSource, MetricStatus, ResourceMetricStatus, WatermarkPodAutoscalerSpec,
    quantity::Quantity, selector,
};

/// What every metric of a pass is computed against.
pub(crate) struct MetricContext<'a> {
    pub(crate) spec: &'a WatermarkPodAutoscalerSpec,
    pub(crate) calc_spec: &'a CalcSpec,
    pub(crate) namespace: &'a str,
    pub(crate) scale: &'a ScaleInfo,
    /// The target's pods with their count by the readiness rules, or why they could not be listed.
    pods: Result<(&'a [PodInfo], ReadyCount), &'a str>,
}

impl<'a> MetricContext<'a> {
    /// Counts the pods by the readiness rules, once: the pod loop is most of a pass, and its count serves
    /// every External metric, the recommender, the fallback and the readers.
    pub(crate) fn new(
        spec: &'a WatermarkPodAutoscalerSpec,
        calc_spec: &'a CalcSpec,
        namespace: &'a str,
        scale: &'a ScaleInfo,
        pods: Result<&'a [PodInfo], &'a str>,
        now: Timestamp,
    ) -> Self {
        let pods = pods.map(|list| {
            let delay = calc_spec.readiness_delay_seconds;
            (list, pods::count_ready_pods(list, &scale.name, delay, calc_spec.skip_owner_check, now))
        });
        MetricContext { spec, calc_spec, namespace, scale, pods }
    }

    /// The pods as the readiness rules count them (`None`: they could not be listed).
    pub(crate) fn ready_count(&self) -> Option<ReadyCount> {
        self.pods.as_ref().ok().map(|(_, count)| *count)
    }

    /// Upstream's ready replicas of the External and recommender paths (`None`: the pods could not be listed).
    pub(crate) fn ready_replicas(&self) -> Option<Result<i32, CalcError>> {
        let (list, count) = self.pods.as_ref().ok()?;
        Some(calc::ready_replicas_from_count(self.calc_spec, self.scale, list.len(), *count))
    }
}

fn milli(q: &Option<Quantity>) -> i64 {
    q.as_ref().map_or(0, Quantity::milli)
}

/// The display name of an External or Resource metric: `<name>{map[k:v]}`.
fn display_name(name: &str, selector: Option<&LabelSelector>) -> String {
    let mut out = String::with_capacity(name.len() + 32);
    out.push_str(name);
    out.push('{');
    selector::push_go_map(&mut out, selector.and_then(|s| s.match_labels.as_ref()));
    out.push('}');
    out
}

fn pods_error(e: &str) -> String {
    format!("could not parse the labels of the target: {e}")
}

/// Runs the calculator for each metric of the spec (or the recommender).
pub(crate) fn compute_outcomes(
    cx: &MetricContext<'_>,
    metrics: &[MetricObservation],
    recommendation: Option<Result<&Recommendation, &str>>,
) -> Vec<MetricOutcome> {
    if let Some(reco) = &cx.spec.recommender {
        let name = recommender::display_name(reco);
        let result = if reco.high_watermark.is_none() || reco.low_watermark.is_none() {
            Err("the recommender needs both highWatermark and lowWatermark (they are sent as the target's bounds)".to_string())
        } else {
            match cx.pods {
                Err(e) => Err(pods_error(e)),
                Ok((list, count)) => {
                    let reply = recommendation.unwrap_or(Err("no recommendation was fetched"));
                    let ready = calc::ready_replicas_from_count(cx.calc_spec, cx.scale, list.len(), count);
                    calc::recommender_with_ready(cx.calc_spec, cx.scale, ready, &name, reply).map_err(|e| e.0)
                }
            }
        };
        return vec![MetricOutcome {
            kind: MetricKind::Recommender,
            display_name: name.clone(),
            name,
            high_milli: milli(&reco.high_watermark),
            low_milli: milli(&reco.low_watermark),
            result: Some(result),
            index: 0,
        }];
    }
    let specs = cx.spec.metrics.as_deref().unwrap_or_default();
    // Counted once for all the External metrics of the pass.
    let ready: OnceCell<Result<i32, CalcError>> = OnceCell::new();
    specs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let obs = metrics.get(i).unwrap_or(&MetricObservation::Skipped);
            let Some(source) = m.source() else {
                return MetricOutcome {
                    kind: if m.type_ == "Resource" { MetricKind::Resource } else { MetricKind::External },
                    name: String::new(),
                    display_name: String::new(),
                    high_milli: 0,
                    low_milli: 0,
                    result: None,
                    index: i,
                };
            };
            let (high, low) = (milli(source.high_watermark()), milli(source.low_watermark()));
            let result = match (cx.pods, source, obs) {
                (Err(err), ..) => Err(pods_error(err)),
                (Ok((list, count)), MetricSource::External(e), MetricObservation::External(sample)) => {
                    let ready = ready
                        .get_or_init(|| {
                            calc::ready_replicas_from_count(cx.calc_spec, cx.scale, list.len(), count)
                        })
                        .clone();
                    calc::external_with_ready(
                        cx.calc_spec,
                        cx.scale,
                        ready,
                        cx.namespace,
                        &e.metric_name,
                        e.metric_selector.as_ref(),
                        sample.as_ref().map_err(String::as_str),
                        (low, high),
                    )
                    .map_err(|e| e.0)
                }
                (Ok((list, _)), MetricSource::Resource(r), MetricObservation::Resource(usage)) => {
                    calc::resource(
                        cx.calc_spec,
                        cx.scale,
                        list,
                        cx.namespace,
                        &r.name,
                        r.metric_selector.as_ref(),
                        usage.as_ref().map_err(String::as_str),
                        (low, high),
                    )
                    .map_err(|e| e.0)
                }
                (Ok(_), MetricSource::External(_), _) => Err("the external metric was not fetched".into()),
                (Ok(_), MetricSource::Resource(_), _) => Err("the resource metric was not fetched".into()),
            };
            MetricOutcome {
                kind: match source {
                    MetricSource::External(_) => MetricKind::External,
                    MetricSource::Resource(_) => MetricKind::Resource,
                },
                name: source.name().to_string(),
                display_name: display_name(source.name(), source.selector()),
                high_milli: high,
                low_milli: low,
                result: Some(result),
                index: i,
            }
        })
        .collect()
}

/// Combines the metrics (`computeReplicas`): the highest proposal wins, the first on ties; one failing
/// metric aborts the computation. Also returns the `status.currentMetrics` entries, one per metric.
pub fn combine(
    spec: &WatermarkPodAutoscalerSpec,
    outcomes: &[MetricOutcome],
) -> Result<(Combined, Vec<MetricStatus>), CombineError> {
    let mut statuses = Vec::with_capacity(outcomes.len());
    let mut c = Combined {
        replicas: 0,
        winner: None,
        ready_replicas: 0,
        display_name: String::new(),
        is_above: false,
        is_below: false,
        details: String::new(),
    };
    for (i, o) in outcomes.iter().enumerate() {
        let Some(result) = &o.result else {
            statuses.push(MetricStatus::default());
            continue;
        };
        let r = match result {
            Ok(r) => r,
            Err(cause) => {
                let (reason, message) = match o.kind {
                    MetricKind::External => (
                        text::FAILED_GET_EXTERNAL_METRIC,
                        format!("failed to compute replicas based on external metric {}: {cause}", o.name),
                    ),
                    MetricKind::Resource => (
                        text::FAILED_GET_RESOURCE_METRIC,
                        format!("failed to get resource metric {}: {cause}", o.name),
                    ),
                    MetricKind::Recommender => {
                        let url = spec.recommender.as_ref().map_or("", |r| r.url.as_str());
                        (
                            text::FAILED_GET_RESOURCE_METRIC,
                            format!("failed to get the recommendation from {url}: {cause}"),
                        )
                    }
                };
                return Err(CombineError { index: i, reason, cause: cause.clone(), message });
            }
        };
        c.is_above |= r.is_above;
        c.is_below |= r.is_below;
        if c.winner.is_none() || r.replica_count > c.replicas {
            c.replicas = r.replica_count;
            c.winner = Some(i);
            c.ready_replicas = r.ready_replicas;
            c.display_name = o.display_name.clone();
            c.details = r.details.clone();
        }
        let value = Quantity::from_milli(r.utilization);
        statuses.push(match o.kind {
            MetricKind::External => MetricStatus {
                type_: "External".into(),
                external: Some(ExternalMetricStatus {
                    metric_name: o.name.clone(),
                    metric_selector: spec
                        .metrics
                        .as_ref()
                        .and_then(|m| m.get(o.index))
                        .and_then(|m| m.source())
                        .and_then(|s| s.selector().cloned()),
                    current_value: value,
                    current_average_value: None,
                }),
                resource: None,
            },
            MetricKind::Resource => MetricStatus {
                type_: "Resource".into(),
                external: None,
                resource: Some(ResourceMetricStatus {
                    name: o.name.clone(),
                    current_average_utilization: None,
                    current_average_value: value,
                }),
            },
            // Upstream files the recommender under Resource but fills `external`, so that the `value`
            // printer column shows it.
            MetricKind::Recommender => MetricStatus {
                type_: "Resource".into(),
                external: Some(ExternalMetricStatus {
                    metric_name: o.name.clone(),
                    metric_selector: Some(LabelSelector::default()),
                    current_value: value,
                    current_average_value: None,
                }),
                resource: None,
            },
        });
    }
    Ok((c, statuses))
}

/// Whether `t` lies more than `max` (`--metric-max-age`; `None`: no limit) before `now`. A time ahead of
/// `now` is never too old: the metric's and the recommender's checks judge the future apart.
pub(crate) fn older_than(t: Timestamp, now: Timestamp, max: Option<std::time::Duration>) -> bool {
    let age = now.duration_since(t);
    max.is_some_and(|max| age.is_positive() && age.unsigned_abs() > max)
}

/// Whether an External metric's newest sample (`newest`, the provider's timestamp) is recent enough at
/// `now`: a provider that stops updating a value keeps serving the last one, and scaling on it would follow a
/// past load. `max` is `--metric-max-age` (`None`: no limit). Shared by the reconciler and `wpa simulate`,
/// where a gap in the series longer than the limit is an outage as it is live.
pub(crate) fn check_sample_age(
    newest: Option<Timestamp>,
    now: Timestamp,
    max: Option<std::time::Duration>,
) -> Result<(), String> {
    let (Some(max), Some(t)) = (max, newest) else { return Ok(()) };
    if older_than(t, now, Some(max)) {
        // No age in the text: it grows every pass, and a changing message would mean a status write and an
        // event each time.
        return Err(format!(
            "the newest value was sampled at {t}, more than --metric-max-age ({}s) ago: the metrics provider is not updating it",
            max.as_secs()
        ));
    }
    Ok(())
}

/// The ScalingActive message of a successful computation.
pub fn valid_metric_message(display_name: &str, details: &str) -> String {
    let mut m = format!("the WPA was able to successfully calculate a replica count from {display_name}");
    if !details.is_empty() {
        m.push_str(" because: ");
        m.push_str(details);
    }
    m
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
