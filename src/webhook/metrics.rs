//! The webhook's own series: `wpa_webhook_requests` and `wpa_webhook_request_duration_seconds`.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet},
    metrics::MetricType,
};

use crate::runtime::registry::Registry;

/// Labels of an admission request: the object kind, the operation, the answer and a bounded reason. Every
/// value comes from a small fixed set, so a request allocates nothing to count itself.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub(crate) struct AdmissionLabels {
    pub(crate) webhook: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) operation: &'static str,
    pub(crate) allowed: &'static str,
    pub(crate) reason: &'static str,
}

/// Upper bounds of the latency buckets, up to the API server's largest webhook timeout we configure (5 s)
/// and its default (10 s); the last bucket is `+Inf`.
const LATENCY_BOUNDS: [f64; 17] = [
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    f64::MAX,
];

/// One label set's requests: their count, summed latency and latency buckets (not cumulative).
#[derive(Clone, Debug, Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; LATENCY_BOUNDS.len()],
}

impl Series {
    fn add(&mut self, other: &Series) {
        self.count += other.count;
        self.sum += other.sum;
        for (b, o) in self.buckets.iter_mut().zip(other.buckets) {
            *b += o;
        }
    }
}

/// A shard on a cache line of its own.
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<HashMap<AdmissionLabels, Series>>);

const SHARDS: usize = 8;

/// The webhook's request counter and latency histogram. A prometheus-client `Family` would put every
/// request of both runtime workers on the same locks (the histogram takes a write lock per observation):
/// measured, that cost about 8% of the webhook's throughput. Here each thread counts into a shard of its
/// own, which no other thread touches until a scrape sums them.
#[derive(Default)]
pub(crate) struct AdmissionStats {
    shards: [Shard; SHARDS],
}

impl std::fmt::Debug for AdmissionStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdmissionStats")
    }
}

fn shard_of_this_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SLOT.with(|s| *s)
}

impl AdmissionStats {
    /// The webhook's series, registered in the process's registry.
    pub(crate) fn register(registry: &Registry) -> Arc<AdmissionStats> {
        let stats = Arc::new(AdmissionStats::default());
        registry.with_registry(|r| r.register_collector(Box::new(stats.clone())));
        stats
    }

    /// Counts one request answered in `seconds`.
    pub(crate) fn record(&self, labels: &AdmissionLabels, seconds: f64) {
        let mut shard = self.shards[shard_of_this_thread()].0.lock().unwrap_or_else(|p| p.into_inner());
        let series = match shard.get_mut(labels) {
            Some(s) => s,
            None => shard.entry(labels.clone()).or_default(),
        };
        series.count += 1;
        series.sum += seconds;
        // NaN (never from a clock) would land in +Inf.
        let bucket = LATENCY_BOUNDS.iter().position(|b| seconds <= *b).unwrap_or(LATENCY_BOUNDS.len() - 1);
        series.buckets[bucket] += 1;
    }

    /// Every label set's totals over the shards, in label order.
    fn totals(&self) -> BTreeMap<AdmissionLabels, Series> {
        let mut out: BTreeMap<AdmissionLabels, Series> = BTreeMap::new();
        for shard in &self.shards {
            let shard = shard.0.lock().unwrap_or_else(|p| p.into_inner());
            for (labels, series) in shard.iter() {
                out.entry(labels.clone()).or_default().add(series);
            }
        }
        out
    }
}

impl Collector for AdmissionStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let totals = self.totals();
        let mut requests = encoder.encode_descriptor(
            "wpa_webhook_requests",
            "Admission requests answered, by webhook, kind, operation, answer and reason",
            None,
            MetricType::Counter,
        )?;
        for (labels, series) in &totals {
            requests.encode_family(labels)?.encode_counter::<NoLabelSet, _, u64>(&series.count, None)?;
        }
        let mut latency = encoder.encode_descriptor(
            "wpa_webhook_request_duration_seconds",
            "Time to answer an admission request, by webhook, kind, operation, answer and reason",
            None,
            MetricType::Histogram,
        )?;
        for (labels, series) in &totals {
            let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS.iter().copied().zip(series.buckets).collect();
            latency.encode_family(labels)?.encode_histogram::<NoLabelSet>(
                series.sum,
                series.count,
                &buckets,
                None,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(reason: &'static str) -> AdmissionLabels {
        AdmissionLabels {
            webhook: "validate",
            kind: "WatermarkPodAutoscaler",
            operation: "CREATE",
            allowed: "true",
            reason,
        }
    }

    #[test]
    fn admission_requests_from_every_thread_are_summed_at_scrape() {
        let registry = Registry::new();
        let stats = AdmissionStats::register(&registry);
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let m = stats.clone();
                std::thread::spawn(move || {
                    m.record(&labels("ok"), 0.0003);
                    m.record(&labels("ok"), 0.002);
                    m.record(&labels("invalid"), 20.0);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut text = String::new();
        registry.encode_to(&mut text).unwrap();
        let ok = r#"webhook="validate",kind="WatermarkPodAutoscaler",operation="CREATE",allowed="true",reason="ok""#;
        let invalid = ok.replace(r#"reason="ok""#, r#"reason="invalid""#);
        let has = |line: &str| assert!(text.contains(line), "no {line:?} in:\n{text}");
        has("# TYPE wpa_webhook_requests counter\n");
        has(&format!("wpa_webhook_requests_total{{{ok}}} 6\n"));
        has(&format!("wpa_webhook_requests_total{{{invalid}}} 3\n"));
        has("# TYPE wpa_webhook_request_duration_seconds histogram\n");
        // Cumulative buckets: three at 0.3 ms (≤ 0.5 ms), six by 2.5 ms; 20 s only in +Inf.
        let bucket = |le: &str, labels: &str, n: u32| {
            has(&format!("wpa_webhook_request_duration_seconds_bucket{{le=\"{le}\",{labels}}} {n}\n"))
        };
        bucket("0.00025", ok, 0);
        bucket("0.0005", ok, 3);
        bucket("0.0025", ok, 6);
        bucket("10.0", &invalid, 0);
        bucket("+Inf", &invalid, 3);
        has(&format!("wpa_webhook_request_duration_seconds_count{{{invalid}}} 3\n"));
        has(&format!("wpa_webhook_request_duration_seconds_sum{{{invalid}}} 60.0\n"));
    }
}
