//! The `wpa_controller_*` Prometheus series of upstream (docs/semantics.md §10.2: the same names and labels, the misspelled
//! `*_watermak` twins included), with the values the engine decided, plus the recommender's
//! `http_client_*` series and the reconciler's own.
//!
//! Every series a WPA wrote is kept in its own list with its value (wpa_series.rs), so that its series go away
//! with it: when the WPA is deleted, when one of its metrics leaves the spec, and when a label value changes
//! (the target renamed, a `--labels-as-tags` label), the old series are deleted instead of being left behind
//! at their last value. `wpa_reconciled_wpas` is the number of WPAs in that list.
//!
//! No series carries a `dry_run` label: upstream reverted it (its PR #351), because toggling `dryRun` changed
//! every series' identity and broke Datadog's `label_joins` and monitors keyed on the label set. The
//! `wpa_controller_dry_run` gauge says it.

use std::{
    borrow::Cow,
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

use kube::ResourceExt;
use prometheus_client::{
    metrics::{
        counter::Counter as PromCounter, family::Family as PromFamily, gauge::Gauge, histogram::Histogram,
    },
    registry::Registry,
};

use super::{
    inputs::HttpObserver,
    wpa_series::{Family, Label, Labels, WpaSeries, Written},
};
use crate::{
    api::WatermarkPodAutoscaler,
    engine::{Decision, Outcome, Sample, Series},
};

type PlainLabels = Vec<(String, String)>;
type CounterFamily = PromFamily<PlainLabels, PromCounter>;

fn label(name: &'static str, value: &Arc<str>) -> Label {
    (Cow::Borrowed(name), value.clone())
}

pub(crate) struct Exporter {
    /// Every WPA's series and their values (wpa_series.rs), written out at each scrape.
    series: Arc<WpaSeries>,
    http_duration: PromFamily<PlainLabels, Histogram, fn() -> Histogram>,
    http_requests: CounterFamily,
    http_errors: CounterFamily,
    http_in_flight: PromFamily<PlainLabels, Gauge>,
    pub(crate) reconciles: CounterFamily,
    /// Periodic passes put off for WPAs whose new spec waits (priority.rs).
    pub(crate) yields: PromCounter,
    status_write_errors: CounterFamily,
    pub(crate) reconcile_duration: PromFamily<PlainLabels, Histogram, fn() -> Histogram>,
    /// WPA labels copied onto `labels_info` (`DD_LABELS_AS_TAGS`).
    labels_as_tags: Vec<String>,
    /// Which recommender origin each WPA calls, and what was written per origin.
    clients: Mutex<Clients>,
}

/// The `http_client_*` series per recommender origin, so that an origin no WPA calls any more (its WPA
/// deleted, or pointed elsewhere) loses its series instead of keeping them forever.
#[derive(Default)]
struct Clients {
    /// `namespace/name` → the origin it called last.
    by_wpa: HashMap<String, String>,
    /// Origin → the `client, method, code` label sets written.
    written: HashMap<String, BTreeSet<PlainLabels>>,
}

fn http_histogram() -> Histogram {
    Histogram::new([0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0])
}

fn reconcile_histogram() -> Histogram {
    Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0])
}

/// A WPA's name and namespace, as label values.
fn name_and_namespace(wpa: &WatermarkPodAutoscaler) -> (Arc<str>, Arc<str>) {
    (Arc::from(wpa.name_any()), Arc::from(wpa.namespace().unwrap_or_default()))
}

/// A Prometheus label name from a Kubernetes label key (`app.kubernetes.io/name` → `app_kubernetes_io_name`).
fn label_name(key: &str) -> String {
    let mut s: String =
        key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

fn pairs(p: &[(&str, &str)]) -> PlainLabels {
    p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

impl Exporter {
    /// Creates the families and registers them.
    pub(crate) fn new(registry: &mut Registry, labels_as_tags: Vec<String>) -> Arc<Exporter> {
        let series = Arc::new(WpaSeries::new());
        registry.register_collector(Box::new(series.clone()));
        let e = Exporter {
            series,
            http_duration: PromFamily::new_with_constructor(http_histogram),
            http_requests: CounterFamily::default(),
            http_errors: CounterFamily::default(),
            http_in_flight: PromFamily::default(),
            reconciles: CounterFamily::default(),
            yields: PromCounter::default(),
            status_write_errors: CounterFamily::default(),
            reconcile_duration: PromFamily::new_with_constructor(reconcile_histogram),
            labels_as_tags,
            clients: Mutex::default(),
        };
        registry.register(
            "http_client_request_duration_seconds",
            "Duration of recommender requests",
            e.http_duration.clone(),
        );
        registry.register("http_client_requests", "Recommender requests", e.http_requests.clone());
        registry.register(
            "http_client_requests_errors",
            "Recommender transport errors",
            e.http_errors.clone(),
        );
        registry.register(
            "http_client_requests_inflight",
            "Recommender requests in flight",
            e.http_in_flight.clone(),
        );
        registry.register("wpa_reconciles", "Reconcile passes, by result", e.reconciles.clone());
        registry.register(
            "wpa_reconcile_yields",
            "Periodic passes put off because WPAs with a new spec were waiting",
            e.yields.clone(),
        );
        // At 0 from the start: an alert on `increase()` sees the first failure, which a series born at 1
        // would hide.
        for phase in ["record", "result"] {
            drop(e.status_write_errors.get_or_create(&pairs(&[("phase", phase)])));
        }
        registry.register(
            "wpa_status_write_errors",
            "WPA status writes that failed, by phase: record (before a scale, which is then not made) or result",
            e.status_write_errors.clone(),
        );
        registry.register(
            "wpa_reconcile_duration_seconds",
            "Duration of a reconcile pass (gathering inputs, deciding, writing)",
            e.reconcile_duration.clone(),
        );
        Arc::new(e)
    }

    /// `wpa_name, wpa_namespace, resource_namespace, resource_name, resource_kind, target_name, namespace`
    /// (upstream's base labels).
    fn base(wpa: &WatermarkPodAutoscaler) -> Arc<[Label]> {
        let (name, ns) = name_and_namespace(wpa);
        let r = &wpa.spec.scale_target_ref;
        let target: Arc<str> = Arc::from(r.name.as_str());
        Arc::from([
            label("wpa_name", &name),
            label("wpa_namespace", &ns),
            label("resource_namespace", &ns),
            label("resource_name", &target),
            label("resource_kind", &Arc::from(r.kind.as_str())),
            label("target_name", &target),
            label("namespace", &ns),
        ])
    }

    fn labels_for(
        &self,
        wpa: &WatermarkPodAutoscaler,
        decision: &Decision<'_>,
        s: &Sample,
        base: &Arc<[Label]>,
    ) -> Written {
        let family = Family::Gauge(s.series);
        match s.series {
            Series::LabelsInfo => {
                let (name, ns) = name_and_namespace(wpa);
                let mut l: Vec<Label> = Vec::new();
                for key in &self.labels_as_tags {
                    if let Some(v) = wpa.labels().get(key) {
                        l.push((Cow::Owned(label_name(key)), Arc::from(v.as_str())));
                    }
                }
                l.extend([
                    label("wpa_name", &name),
                    label("wpa_namespace", &ns),
                    label("resource_namespace", &ns),
                    label("namespace", &ns),
                ]);
                Written { family, labels: Labels { shared: Arc::from(l), extra: None } }
            }
            Series::LifecycleControlStatus => {
                let (name, ns) = name_and_namespace(wpa);
                let l = [
                    label("wpa_name", &name),
                    label("wpa_namespace", &ns),
                    label("lifecycle_status", &Arc::from(s.label.map_or("blocked", |l| l.1))),
                    label("monitor_name", &name),
                    label("monitor_namespace", &ns),
                ];
                Written { family, labels: Labels { shared: Arc::from(l), extra: None } }
            }
            _ => {
                let metric = s.metric.and_then(|i| decision.metrics.get(i)).map(|m| m.name.as_str());
                let extra = match (metric, s.label) {
                    (Some(m), _) => Some(("metric_name", Arc::from(m))),
                    (None, Some((k, v))) => Some((k, Arc::from(v))),
                    (None, None) => None,
                };
                Written { family, labels: Labels { shared: base.clone(), extra } }
            }
        }
    }

    /// Writes one pass's gauges and counters, and deletes what went away.
    pub(crate) fn record(&self, wpa: &WatermarkPodAutoscaler, decision: &Decision<'_>, outcome: &Outcome) {
        let key = (wpa.namespace().unwrap_or_default(), wpa.name_any());
        let base = Self::base(wpa);
        let metric_names: BTreeSet<String> = metric_names(wpa);
        let mut written: Vec<(Written, f64)> = Vec::with_capacity(outcome.gauges.len() + 2);
        for s in &outcome.gauges {
            let entry = self.labels_for(wpa, decision, s, &base);
            if s.series.twin().is_some() {
                written.push((Written { family: Family::Twin(s.series), ..entry.clone() }, s.value));
            }
            written.push((entry, s.value));
        }

        let mut shard = self.series.shard(&key);
        let series = shard.entry(key).or_default();
        // Series whose identity no longer holds: another base label set (target renamed), or a metric that
        // left the spec.
        series.retain(|s| {
            let same_base = !s.has_base_labels() || *s.labels.shared == *base;
            let metric_exists = s.metric().is_none_or(|m| metric_names.contains(m));
            same_base && metric_exists
        });
        for r in &outcome.removals {
            let metric = r.metric.and_then(|i| decision.metrics.get(i)).map(|m| m.name.as_str());
            series.retain(|s| {
                let hit = matches!(s.family, Family::Gauge(g) | Family::Twin(g) if g == r.series)
                    && (metric.is_none() || s.metric() == metric);
                !hit
            });
        }
        // A series written again under other labels (labels_info after a label change) replaces its old
        // self.
        series.retain(|old| {
            !written.iter().any(|(w, _)| {
                w.family == old.family && w.labels.extra == old.labels.extra && w.labels != old.labels
            })
        });
        for (w, value) in written {
            series.set(w, value);
        }
        for c in &outcome.counters {
            let labels = Labels { shared: base.clone(), extra: None };
            series.add(Written { family: Family::Counter(c.counter), labels }, c.value);
        }
    }

    /// Counts a failed status write.
    pub(crate) fn status_write_failed(&self, phase: &'static str) {
        self.status_write_errors.get_or_create(&pairs(&[("phase", phase)])).inc();
    }

    /// Deletes every series of a WPA (it was deleted).
    pub(crate) fn forget(&self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        self.series.shard(&key).remove(&key);
        self.calls(&format!("{namespace}/{name}"), None);
    }

    /// Notes that `wpa` calls `origin` now (`None`: nothing any more), and deletes the series of an origin
    /// that no WPA calls any more.
    fn calls(&self, wpa: &str, origin: Option<&str>) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let before = match origin {
            Some(o) => clients.by_wpa.insert(wpa.to_string(), o.to_string()),
            None => clients.by_wpa.remove(wpa),
        };
        let Some(before) = before.filter(|b| Some(b.as_str()) != origin) else { return };
        if clients.by_wpa.values().any(|o| *o == before) {
            return;
        }
        for labels in clients.written.remove(&before).into_iter().flatten() {
            self.http_duration.remove(&labels);
            self.http_requests.remove(&labels);
        }
        let client = pairs(&[("client", &before)]);
        self.http_errors.remove(&client);
        if self.http_in_flight.get(&client).is_none_or(|g| g.get() == 0) {
            self.http_in_flight.remove(&client);
        }
    }

    /// Deletes every WPA's series: this replica stopped reconciling (it lost the Lease). Its last values
    /// would otherwise stay exported beside the new leader's, twice the WPAs for dashboards and alerts
    /// (upstream's process exits when it loses the lease, which has the same effect).
    pub(crate) fn forget_all(&self) {
        self.series.clear();
    }

    /// Number of series currently exported for a WPA (tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn series_count(&self, namespace: &str, name: &str) -> usize {
        let key = (namespace.to_string(), name.to_string());
        self.series.shard(&key).get(&key).map_or(0, |s| s.len())
    }
}

fn metric_names(wpa: &WatermarkPodAutoscaler) -> BTreeSet<String> {
    let mut out: BTreeSet<String> =
        wpa.spec.metrics.iter().flatten().filter_map(|m| m.source().map(|s| s.name().to_string())).collect();
    if let Some(r) = &wpa.spec.recommender {
        out.insert(crate::engine::recommender::display_name(r));
    }
    out
}

impl HttpObserver for Exporter {
    fn observe(&self, wpa: &str, client: &str, method: &str, outcome: Result<u16, ()>, seconds: f64) {
        self.calls(wpa, Some(client));
        match outcome {
            Ok(code) => {
                let l = pairs(&[("client", client), ("method", method), ("code", &code.to_string())]);
                self.http_duration.get_or_create(&l).observe(seconds);
                self.http_requests.get_or_create(&l).inc();
                let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
                clients.written.entry(client.to_string()).or_default().insert(l);
            }
            Err(()) => {
                self.http_errors.get_or_create(&pairs(&[("client", client)])).inc();
            }
        }
    }

    fn in_flight(&self, client: &str, delta: i64) {
        self.http_in_flight.get_or_create(&pairs(&[("client", client)])).inc_by(delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{
        self, MetricObservation, MonitorObservation, Observation,
        calc::{ExternalSample, ScaleInfo},
        pods::{ConditionStatus, OwnerKind, OwnerRef, PodInfo, PodPhase, ReadyCondition},
    };

    fn wpa(metric: &str, dry_run: bool) -> WatermarkPodAutoscaler {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "datadoghq.com/v1alpha1", "kind": "WatermarkPodAutoscaler",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "front"},
                     "minReplicas": 1, "maxReplicas": 10, "dryRun": dry_run,
                     "metrics": [{"type": "External", "external": {"metricName": metric,
                        "metricSelector": {"matchLabels": {"app": "front"}}, "highWatermark": "100", "lowWatermark": "50"}}]}
        }))
        .unwrap()
    }

    fn record(e: &Exporter, w: &WatermarkPodAutoscaler) {
        let now = jiff::Timestamp::now();
        let pods = vec![PodInfo {
            name: "front-abc-1".into(),
            phase: PodPhase::Running,
            ready: Some(ReadyCondition { status: ConditionStatus::True, last_transition: Some(now) }),
            start_time: Some(now),
            deleting: false,
            owners: vec![OwnerRef { kind: OwnerKind::ReplicaSet, name: "front-abc".into() }],
        }];
        let metrics =
            [MetricObservation::External(Ok(ExternalSample { values: vec![300_000], timestamp: Some(now) }))];
        let obs = Observation {
            target: Ok(ScaleInfo {
                name: "front".into(),
                namespace: "shop".into(),
                spec_replicas: 1,
                status_replicas: 1,
                selector: "app=front".into(),
            }),
            pods: Ok(&pods),
            metrics: &metrics,
            recommendation: None,
            monitor: MonitorObservation::NotRequested,
            conflicts: &[],
        };
        let plan = engine::Plan::new(w);
        let decision = engine::decide(&plan, &obs, now);
        e.record(w, &decision, &decision.settle(w, engine::ScaleResult::Written));
    }

    fn text(r: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, r).unwrap();
        out
    }

    /// Every series of the exposition (name and labels), without its value.
    fn series(text: &str) -> BTreeSet<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_string()))
            .collect()
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn series_carry_upstreams_labels_and_go_away_with_their_wpa_or_metric() {
        let mut registry = Registry::default();
        let e = Exporter::new(&mut registry, vec![]);
        record(&e, &wpa("qps", false));
        let out = text(&registry);
        let base = r#"wpa_name="web",wpa_namespace="shop",resource_namespace="shop",resource_name="front",resource_kind="Deployment",target_name="front",namespace="shop""#;
        assert!(
            out.contains(&format!("wpa_controller_high_watermak{{{base},metric_name=\"qps\"}} 100000.0")),
            "{out}"
        );
        assert!(
            out.contains(&format!("wpa_controller_high_watermark{{{base},metric_name=\"qps\"}} 100000.0"))
        );
        assert!(out.contains(&format!(
            "wpa_controller_restricted_scaling{{{base},reason=\"upscale_capping\"}} 1.0"
        )));
        assert!(out.contains(&format!("wpa_controller_upscale_replicas_total{{{base}}} 1")), "{out}");
        assert!(out.contains("wpa_reconciled_wpas 1"));
        assert!(out.contains("wpa_status_write_errors_total{phase=\"record\"} 0"), "counted from 0: {out}");
        let before = e.series_count("shop", "web");
        // The metric is renamed: the old metric's series go, the new one's come.
        record(&e, &wpa("rps", false));
        let out = text(&registry);
        assert!(!out.contains("metric_name=\"qps\""), "{out}");
        assert!(out.contains("metric_name=\"rps\""));
        assert_eq!(e.series_count("shop", "web"), before);
        // Deleted: nothing of it is left.
        e.forget("shop", "web");
        let out = text(&registry);
        assert!(!out.contains("wpa_name=\"web\""), "{out}");
        assert!(out.contains("wpa_reconciled_wpas 0"));
    }

    #[test]
    fn recommender_series_name_the_origin_only_and_go_when_no_wpa_calls_it() {
        let mut registry = Registry::default();
        let e = Exporter::new(&mut registry, vec![]);
        let secret =
            super::super::inputs::origin("http://svc-user:S3cr3t@reco.team.svc:8080/recommend?api_key=K");
        assert_eq!(secret, "http://reco.team.svc:8080");
        e.observe("team/web", &secret, "POST", Ok(200), 0.01);
        e.observe("team/api", &secret, "POST", Ok(503), 0.01);
        e.observe("team/api", &secret, "POST", Err(()), 0.01);
        let out = text(&registry);
        assert!(
            out.contains(
                r#"http_client_requests_total{client="http://reco.team.svc:8080",method="POST",code="200"} 1"#
            ),
            "{out}"
        );
        assert!(!out.contains("S3cr3t") && !out.contains("api_key"), "{out}");
        // One of the two WPAs moves to another recommender: the origin stays while the other calls it.
        e.observe("team/web", "https://other.team.svc:443", "POST", Ok(200), 0.01);
        assert!(text(&registry).contains("reco.team.svc"));
        // The last WPA calling it is deleted: its series go.
        e.forget("team", "api");
        let out = text(&registry);
        assert!(!out.contains("reco.team.svc"), "{out}");
        assert!(out.contains("other.team.svc"), "{out}");
    }

    #[test]
    fn a_replica_that_stops_leading_exports_no_wpa_series() {
        let mut registry = Registry::default();
        let e = Exporter::new(&mut registry, vec![]);
        record(&e, &wpa("qps", false));
        let mut other = wpa("rps", false);
        other.metadata.name = Some("api".into());
        record(&e, &other);
        assert!(text(&registry).contains("wpa_reconciled_wpas 2"));
        e.forget_all();
        let out = text(&registry);
        assert!(!out.contains("wpa_name="), "{out}");
        assert!(out.contains("wpa_reconciled_wpas 0"), "{out}");
        // Leading again, it exports what its passes write.
        record(&e, &wpa("qps", false));
        assert!(text(&registry).contains("wpa_reconciled_wpas 1"));
    }

    #[test]
    fn toggling_dry_run_keeps_every_series_identity_and_flips_the_dry_run_gauge() {
        let mut registry = Registry::default();
        let e = Exporter::new(&mut registry, vec!["team".into()]);
        let mut live = wpa("qps", false);
        live.metadata.labels = Some([("team".to_string(), "payments".to_string())].into());
        record(&e, &live);
        let off = text(&registry);
        assert!(!off.contains("dry_run=\""), "no series carries a dry_run label:\n{off}");
        live.spec.dry_run = Some(true);
        record(&e, &live);
        let on = text(&registry);
        assert!(!on.contains("dry_run=\""), "{on}");
        // The scale-up counter only counts real scales, so it is the one series a dry-run pass leaves alone;
        // every series is still there under the same labels.
        assert_eq!(series(&on), series(&off));
        let gauge = r#"wpa_controller_dry_run{wpa_name="web",wpa_namespace="shop",resource_namespace="shop",resource_name="front",resource_kind="Deployment",target_name="front",namespace="shop"}"#;
        assert_eq!(value(&off, gauge), Some(0.0), "{off}");
        assert_eq!(value(&on, gauge), Some(1.0), "{on}");
        let info = r#"wpa_controller_labels_info{team="payments",wpa_name="web",wpa_namespace="shop",resource_namespace="shop",namespace="shop"}"#;
        assert_eq!(value(&on, info), Some(1.0), "labels_info keeps its labels:\n{on}");
    }
}
