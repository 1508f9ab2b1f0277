//! The `wpa_controller_*` Prometheus series of upstream (§10.2: the same names and labels, the misspelled
//! `*_watermak` twins included), with the values the engine decided, plus the recommender's
//! `http_client_*` series and the reconciler's own.
//!
//! Every series a WPA wrote is remembered, so that its series go away with it: when the WPA is deleted,
//! when one of its metrics leaves the spec, and when a label value changes (e.g. `dry_run`), the old
//! series are deleted instead of being left behind at their last value.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex, atomic::AtomicU64},
};

use kube::ResourceExt;
use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use super::inputs::HttpObserver;
use crate::{
    api::WatermarkPodAutoscaler,
    engine::{Decision, Sample},
};

type Labels = Vec<(String, String)>;
type GaugeFamily = Family<Labels, Gauge<f64, AtomicU64>>;
type CounterFamily = Family<Labels, Counter>;

/// The gauges with the base labels, and which extra label they carry.
const GAUGES: [(&str, &str); 15] = [
    ("value", "Usage of the metric (milli; recommender: observed value × 1000)"),
    ("high_watermark", "High watermark of the metric (milli)"),
    ("high_watermak", "High watermark of the metric (milli; upstream's misspelled twin)"),
    ("low_watermark", "Low watermark of the metric (milli)"),
    ("low_watermak", "Low watermark of the metric (milli; upstream's misspelled twin)"),
    ("replicas_scaling_proposal", "Replica count proposed by the metric"),
    ("replicas_scaling_effective", "Replica count decided"),
    ("restricted_scaling", "1 while the named restriction holds"),
    ("transition_countdown", "Seconds until the forbidden window of the transition ends"),
    ("min_replicas", "spec.minReplicas"),
    ("max_replicas", "spec.maxReplicas"),
    ("dry_run", "1 when the WPA is in dry-run mode"),
    ("scaling_active", "1 when the ScalingActive condition is True"),
    ("conditions", "1 when the condition is True"),
    ("labels_info", "The WPA's labels listed in --labels-as-tags"),
];

/// One series a WPA wrote.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Series {
    family: &'static str,
    labels: Labels,
    /// The metric the series is about (its `metric_name`), if any.
    metric: Option<String>,
}

pub struct Exporter {
    gauges: HashMap<&'static str, GaugeFamily>,
    lifecycle: GaugeFamily,
    upscale: CounterFamily,
    downscale: CounterFamily,
    http_duration: Family<Labels, Histogram, fn() -> Histogram>,
    http_requests: CounterFamily,
    http_errors: CounterFamily,
    http_in_flight: Family<Labels, Gauge>,
    pub reconciles: CounterFamily,
    pub reconcile_duration: Family<Labels, Histogram, fn() -> Histogram>,
    /// WPA labels copied onto `labels_info` (`DD_LABELS_AS_TAGS`).
    labels_as_tags: Vec<String>,
    live: Mutex<HashMap<(String, String), BTreeSet<Series>>>,
}

fn http_histogram() -> Histogram {
    Histogram::new([0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0])
}

fn reconcile_histogram() -> Histogram {
    Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0])
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

fn pairs(p: &[(&str, &str)]) -> Labels {
    p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

impl Exporter {
    /// Creates the families and registers them.
    pub fn new(registry: &mut Registry, labels_as_tags: Vec<String>) -> Arc<Exporter> {
        let mut gauges = HashMap::new();
        for (name, help) in GAUGES {
            let family = GaugeFamily::default();
            registry.register(format!("wpa_controller_{name}"), help, family.clone());
            gauges.insert(name, family);
        }
        let e = Exporter {
            gauges,
            lifecycle: GaugeFamily::default(),
            upscale: CounterFamily::default(),
            downscale: CounterFamily::default(),
            http_duration: Family::new_with_constructor(http_histogram),
            http_requests: CounterFamily::default(),
            http_errors: CounterFamily::default(),
            http_in_flight: Family::default(),
            reconciles: CounterFamily::default(),
            reconcile_duration: Family::new_with_constructor(reconcile_histogram),
            labels_as_tags,
            live: Mutex::default(),
        };
        registry.register(
            "wpa_controller_lifecycle_control_status",
            "1 while the DatadogMonitor blocks the WPA, 0 when it is OK",
            e.lifecycle.clone(),
        );
        registry.register(
            "wpa_controller_upscale_replicas",
            "Replicas added by scale-ups",
            e.upscale.clone(),
        );
        registry.register(
            "wpa_controller_downscale_replicas",
            "Replicas removed by scale-downs",
            e.downscale.clone(),
        );
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
            "wpa_reconcile_duration_seconds",
            "Duration of a reconcile pass (gathering inputs, deciding, writing)",
            e.reconcile_duration.clone(),
        );
        Arc::new(e)
    }

    /// `wpa_name, wpa_namespace, resource_namespace, resource_name, resource_kind, target_name, namespace,
    /// dry_run` (upstream's base labels).
    fn base(wpa: &WatermarkPodAutoscaler, dry_run: bool) -> Labels {
        let ns = wpa.namespace().unwrap_or_default();
        let r = &wpa.spec.scale_target_ref;
        pairs(&[
            ("wpa_name", &wpa.name_any()),
            ("wpa_namespace", &ns),
            ("resource_namespace", &ns),
            ("resource_name", &r.name),
            ("resource_kind", &r.kind),
            ("target_name", &r.name),
            ("namespace", &ns),
            ("dry_run", if dry_run { "true" } else { "false" }),
        ])
    }

    fn labels_for(
        &self,
        wpa: &WatermarkPodAutoscaler,
        decision: &Decision<'_>,
        s: &Sample,
        base: &Labels,
    ) -> Series {
        let dry_run = decision.spec.dry_run.unwrap_or(false);
        let flag = if dry_run { "true" } else { "false" };
        let ns = wpa.namespace().unwrap_or_default();
        match s.name {
            "labels_info" => {
                let mut l = Labels::new();
                for key in &self.labels_as_tags {
                    if let Some(v) = wpa.labels().get(key) {
                        l.push((label_name(key), v.clone()));
                    }
                }
                l.extend(pairs(&[
                    ("wpa_name", &wpa.name_any()),
                    ("wpa_namespace", &ns),
                    ("resource_namespace", &ns),
                    ("namespace", &ns),
                    ("dry_run", flag),
                ]));
                Series { family: "labels_info", labels: l, metric: None }
            }
            "lifecycle_control_status" => Series {
                family: "lifecycle_control_status",
                labels: pairs(&[
                    ("wpa_name", &wpa.name_any()),
                    ("wpa_namespace", &ns),
                    ("lifecycle_status", s.label.map_or("blocked", |l| l.1)),
                    ("monitor_name", &wpa.name_any()),
                    ("monitor_namespace", &ns),
                    ("dry_run", flag),
                ]),
                metric: None,
            },
            name => {
                let mut labels = base.clone();
                let metric = s.metric.and_then(|i| decision.metrics.get(i)).map(|m| m.name.clone());
                if let Some(m) = &metric {
                    labels.push(("metric_name".into(), m.clone()));
                }
                if let Some((k, v)) = s.label {
                    labels.push((k.into(), v.into()));
                }
                Series { family: name, labels, metric }
            }
        }
    }

    fn family(&self, name: &str) -> Option<&GaugeFamily> {
        if name == "lifecycle_control_status" { Some(&self.lifecycle) } else { self.gauges.get(name) }
    }

    fn delete(&self, s: &Series) {
        match s.family {
            "upscale_replicas_total" => {
                self.upscale.remove(&s.labels);
            }
            "downscale_replicas_total" => {
                self.downscale.remove(&s.labels);
            }
            name => {
                if let Some(f) = self.family(name) {
                    f.remove(&s.labels);
                }
            }
        }
    }

    /// Writes one pass's gauges and counters, and deletes what went away.
    pub fn record(&self, wpa: &WatermarkPodAutoscaler, decision: &Decision<'_>) {
        let key = (wpa.namespace().unwrap_or_default(), wpa.name_any());
        let base = Self::base(wpa, decision.spec.dry_run.unwrap_or(false));
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let series = live.entry(key).or_default();

        // Series whose identity no longer holds: another base label set (dry_run toggled, target renamed),
        // or a metric that left the spec.
        let metric_names: BTreeSet<String> = metric_names(wpa);
        let base_set: BTreeSet<&(String, String)> = base.iter().collect();
        series.retain(|s| {
            let same_base = s.family == "labels_info"
                || s.family == "lifecycle_control_status"
                || s.labels
                    .iter()
                    .filter(|(k, _)| base.iter().any(|(bk, _)| bk == k))
                    .all(|l| base_set.contains(l));
            let metric_exists = s.metric.as_ref().is_none_or(|m| metric_names.contains(m));
            let keep = same_base && metric_exists;
            if !keep {
                self.delete(s);
            }
            keep
        });
        for r in &decision.removals {
            let metric = r.metric.and_then(|i| decision.metrics.get(i)).map(|m| m.name.clone());
            series.retain(|s| {
                let hit = s.family == r.name && (metric.is_none() || s.metric == metric);
                if hit {
                    self.delete(s);
                }
                !hit
            });
        }
        for s in &decision.gauges {
            let entry = self.labels_for(wpa, decision, s, &base);
            let twin = match s.name {
                "high_watermark" => Some("high_watermak"),
                "low_watermark" => Some("low_watermak"),
                _ => None,
            };
            if let Some(f) = self.family(entry.family) {
                f.get_or_create(&entry.labels).set(s.value);
            }
            if let Some(twin) = twin {
                let t = Series { family: twin, ..entry.clone() };
                if let Some(f) = self.family(twin) {
                    f.get_or_create(&t.labels).set(s.value);
                }
                series.insert(t);
            }
            series.insert(entry);
        }
        for c in &decision.counters {
            let (family, f) = match c.name {
                "upscale_replicas_total" => ("upscale_replicas_total", &self.upscale),
                _ => ("downscale_replicas_total", &self.downscale),
            };
            f.get_or_create(&base).inc_by(c.value.max(0.0) as u64);
            series.insert(Series { family, labels: base.clone(), metric: None });
        }
    }

    /// Deletes every series of a WPA (it was deleted).
    pub fn forget(&self, namespace: &str, name: &str) {
        let gone = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(namespace.to_string(), name.to_string()));
        for s in gone.into_iter().flatten() {
            self.delete(&s);
        }
    }

    /// Number of series currently exported for a WPA (tests and diagnostics).
    pub fn series_count(&self, namespace: &str, name: &str) -> usize {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.get(&(namespace.to_string(), name.to_string())).map_or(0, BTreeSet::len)
    }
}

fn metric_names(wpa: &WatermarkPodAutoscaler) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = wpa
        .spec
        .metrics
        .iter()
        .flatten()
        .filter_map(|m| {
            m.external
                .as_ref()
                .map(|e| e.metric_name.clone())
                .or_else(|| m.resource.as_ref().map(|r| r.name.clone()))
        })
        .collect();
    if let Some(r) = &wpa.spec.recommender {
        out.insert(crate::engine::recommender::display_name(r));
    }
    out
}

impl HttpObserver for Exporter {
    fn observe(&self, client: &str, method: &str, outcome: Result<u16, ()>, seconds: f64) {
        match outcome {
            Ok(code) => {
                let l = pairs(&[("client", client), ("method", method), ("code", &code.to_string())]);
                self.http_duration.get_or_create(&l).observe(seconds);
                self.http_requests.get_or_create(&l).inc();
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
