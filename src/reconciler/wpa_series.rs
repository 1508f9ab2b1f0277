//! The values of the WPA series (`wpa_controller_*`, `wpa_current_replicas`, `wpa_fallback_active`), kept in
//! each WPA's own sorted list of its series and written out by a collector when `/metrics` is scraped.
//!
//! prometheus-client's `Family` would keep one hash map per family, each series in it with a copy of its
//! labels and an `Arc`'d atomic: at ~30 series a WPA that was ~3.5 KB a WPA beside the list the exporter
//! keeps anyway to delete a WPA's series (70 MB at 20,000 WPAs, docs/performance.md). Here the list is the
//! only copy: a series is its family, its labels and its value, and deleting it is removing it from its
//! WPA's list.
//!
//! The WPAs are spread over shards, each behind its own lock, so that a scrape (seconds at 20,000 WPAs) only
//! ever holds one shard for one family at a time, and a pass recording its series waits for at most that.

use std::{
    borrow::Cow,
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex, MutexGuard},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, LabelSetEncoder, NoLabelSet},
    metrics::MetricType,
};

use crate::engine::{Counter, Series};

/// A label of a WPA series: its name (static but for `--labels-as-tags` ones, so that 20,000 WPAs do not hold
/// 20,000 copies of each), and its value, shared by the labels that repeat it (the namespace is four of the
/// seven base labels).
pub(super) type Label = (Cow<'static, str>, Arc<str>);

/// A WPA series' labels: a set shared by all of the WPA's series (upstream's base labels) and at most one
/// label of its own (`metric_name`, `reason`, `transition`, `condition`). Sharing the set keeps thousands of
/// WPAs × ~30 series each from holding thousands of copies of the same strings.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Labels {
    pub(super) shared: Arc<[Label]>,
    pub(super) extra: Option<(&'static str, Arc<str>)>,
}

impl EncodeLabelSet for Labels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        (&*self.shared).encode(encoder)?;
        match &self.extra {
            Some((k, v)) => [(*k, v.as_ref())].encode(encoder),
            None => Ok(()),
        }
    }
}

/// What a series belongs to: a gauge family, a gauge's misspelled twin, or a counter family. The order is
/// the exposition's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Family {
    Gauge(Series),
    Twin(Series),
    Counter(Counter),
}

/// One series a WPA wrote, without its value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Written {
    pub(super) family: Family,
    pub(super) labels: Labels,
}

impl Written {
    /// The metric the series is about (its `metric_name`), if any.
    pub(super) fn metric(&self) -> Option<&str> {
        self.labels.extra.as_ref().filter(|(k, _)| *k == "metric_name").map(|(_, v)| v.as_ref())
    }

    /// Whether the series carries the WPA's base labels (all but two families do).
    pub(super) fn has_base_labels(&self) -> bool {
        !matches!(self.family, Family::Gauge(Series::LabelsInfo | Series::LifecycleControlStatus))
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Value {
    Gauge(f64),
    Count(u64),
}

/// One series and its value.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) series: Written,
    value: Value,
}

/// A WPA's series, sorted by family and labels, without duplicates.
#[derive(Debug, Default)]
pub(super) struct WpaEntries(Vec<Entry>);

impl WpaEntries {
    fn find(&self, w: &Written) -> Result<usize, usize> {
        self.0.binary_search_by(|e| e.series.cmp(w))
    }

    fn insert(&mut self, at: usize, series: Written, value: Value) {
        // Grown one entry at a time: a WPA's ~30 series in their own size, where doubling would add half.
        self.0.reserve_exact(1);
        self.0.insert(at, Entry { series, value });
    }

    /// Sets a gauge, adding the series if the WPA did not have it.
    pub(super) fn set(&mut self, series: Written, value: f64) {
        match self.find(&series) {
            Ok(i) => self.0[i].value = Value::Gauge(value),
            Err(i) => self.insert(i, series, Value::Gauge(value)),
        }
    }

    /// Adds to a counter, which starts at 0 for a WPA that did not have it.
    pub(super) fn add(&mut self, series: Written, by: u64) {
        match self.find(&series) {
            Ok(i) => {
                if let Value::Count(n) = &mut self.0[i].value {
                    *n = n.saturating_add(by);
                }
            }
            Err(i) => self.insert(i, series, Value::Count(by)),
        }
    }

    /// Keeps the series for which `keep` holds.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Written) -> bool) {
        self.0.retain(|e| keep(&e.series));
    }

    /// The series of one family.
    fn of(&self, family: Family) -> &[Entry] {
        let start = self.0.partition_point(|e| e.series.family < family);
        let len = self.0[start..].partition_point(|e| e.series.family == family);
        &self.0[start..start + len]
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

type Key = (String, String);
type Shard = HashMap<Key, WpaEntries>;

/// Enough shards that a scrape holding one for one family keeps a pass waiting for well under a millisecond
/// at 20,000 WPAs (~300 WPAs a shard).
const SHARDS: usize = 64;

/// A family as the exposition names it.
#[derive(Debug)]
struct Descriptor {
    family: Family,
    name: String,
    help: String,
    kind: MetricType,
}

/// Every WPA's series, by `(namespace, name)`.
#[derive(Debug)]
pub(super) struct WpaSeries {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    descriptors: Vec<Descriptor>,
}

impl WpaSeries {
    pub(super) fn new() -> WpaSeries {
        let mut descriptors = Vec::new();
        // A period, as prometheus-client's registry adds to the help of what is registered with it.
        let help = |h: &str| format!("{h}.");
        for series in Series::ALL {
            descriptors.push(Descriptor {
                family: Family::Gauge(series),
                name: series.metric_name(),
                help: help(series.help()),
                kind: MetricType::Gauge,
            });
            if let Some(twin) = series.twin() {
                descriptors.push(Descriptor {
                    family: Family::Twin(series),
                    name: format!("wpa_controller_{twin}"),
                    help: help(&format!("{} (upstream's misspelled twin)", series.help())),
                    kind: MetricType::Gauge,
                });
            }
        }
        for (counter, text) in [
            (Counter::UpscaleReplicas, "Replicas added by scale-ups"),
            (Counter::DownscaleReplicas, "Replicas removed by scale-downs"),
        ] {
            descriptors.push(Descriptor {
                family: Family::Counter(counter),
                name: format!("wpa_controller_{}", counter.name().trim_end_matches("_total")),
                help: help(text),
                kind: MetricType::Counter,
            });
        }
        WpaSeries {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            descriptors,
        }
    }

    /// The shard holding `key`'s series, locked.
    pub(super) fn shard(&self, key: &Key) -> MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes every WPA's series.
    pub(super) fn clear(&self) {
        for s in &self.shards {
            s.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    /// The WPAs with series: those with at least one completed pass.
    fn wpas(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len()).sum()
    }
}

impl Collector for WpaSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for d in &self.descriptors {
            // Described at its first series: a family no WPA has is left out, as the registry leaves out an
            // empty `Family`.
            let mut metric = None;
            for shard in &self.shards {
                let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
                for e in shard.values().flat_map(|wpa| wpa.of(d.family)) {
                    if metric.is_none() {
                        metric = Some(encoder.encode_descriptor(&d.name, &d.help, None, d.kind)?);
                    }
                    let Some(metric) = &mut metric else { continue }; // set just above
                    let mut m = metric.encode_family(&e.series.labels)?;
                    match e.value {
                        Value::Gauge(v) => m.encode_gauge(&v)?,
                        Value::Count(n) => m.encode_counter::<NoLabelSet, _, u64>(&n, None)?,
                    }
                }
            }
        }
        // Counted from the series themselves, so that it cannot drift from them.
        let wpas = i64::try_from(self.wpas()).unwrap_or(i64::MAX);
        encoder
            .encode_descriptor(
                "wpa_reconciled_wpas",
                "WPAs with at least one completed pass.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&wpas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(family: Family, metric: &str) -> Written {
        let shared: Arc<[Label]> = Arc::from([(Cow::Borrowed("wpa_name"), Arc::from("web"))]);
        Written { family, labels: Labels { shared, extra: Some(("metric_name", Arc::from(metric))) } }
    }

    fn text(s: WpaSeries) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(s));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn a_series_set_twice_keeps_its_last_value_and_a_counter_adds_up() {
        let mut wpa = WpaEntries::default();
        wpa.set(written(Family::Gauge(Series::Value), "qps"), 1.0);
        wpa.set(written(Family::Gauge(Series::Value), "qps"), 2.0);
        wpa.add(written(Family::Counter(Counter::UpscaleReplicas), "qps"), 2);
        wpa.add(written(Family::Counter(Counter::UpscaleReplicas), "qps"), 3);
        assert_eq!(wpa.len(), 2);
        assert_eq!(wpa.of(Family::Gauge(Series::Value))[0].value, Value::Gauge(2.0));
        assert_eq!(wpa.of(Family::Counter(Counter::UpscaleReplicas))[0].value, Value::Count(5));
    }

    #[test]
    fn each_family_is_written_once_with_all_its_wpas_series_and_an_empty_one_not_at_all() {
        let s = WpaSeries::new();
        for name in ["a", "b", "c"] {
            let key = ("shop".to_string(), name.to_string());
            let mut shard = s.shard(&key);
            let wpa = shard.entry(key.clone()).or_default();
            wpa.set(written(Family::Gauge(Series::Value), name), 1.5);
            wpa.set(written(Family::Gauge(Series::MaxReplicas), name), 10.0);
            wpa.add(written(Family::Counter(Counter::UpscaleReplicas), name), 1);
        }
        let out = text(s);
        assert_eq!(out.matches("# TYPE wpa_controller_value gauge").count(), 1, "{out}");
        // The text format wants a family's samples together, under its one TYPE line.
        let value_lines: Vec<usize> = out
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with("wpa_controller_value{"))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(value_lines.len(), 3, "{out}");
        assert_eq!(value_lines[2] - value_lines[0], 2, "{out}");
        assert!(out.contains(r#"wpa_controller_value{wpa_name="web",metric_name="b"} 1.5"#), "{out}");
        assert!(out.contains(r#"wpa_controller_upscale_replicas_total{wpa_name="web",metric_name="c"} 1"#));
        assert!(out.contains("# HELP wpa_controller_max_replicas "), "{out}");
        assert!(!out.contains("wpa_controller_min_replicas"), "no WPA has it: {out}");
    }
}
