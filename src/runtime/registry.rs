//! Prometheus metrics, served as text on the health port's `/metrics`.

use std::sync::Mutex;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

/// Labels of an admission request: the object kind, the operation, the answer and a bounded reason. Every
/// value comes from a small fixed set, so a request allocates nothing to count itself.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AdmissionLabels {
    pub(crate) webhook: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) operation: &'static str,
    pub(crate) allowed: &'static str,
    pub(crate) reason: &'static str,
}

/// Latency buckets up to the API server's largest webhook timeout we configure (5 s) and its default (10 s).
fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// Labels of a Kubernetes API request made by this process. Counted on every request: a fixed set of
/// values, so counting allocates nothing (as for [`AdmissionLabels`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KubeRequestLabels {
    pub(crate) method: &'static str,
}

impl KubeRequestLabels {
    pub(crate) fn of(method: &http::Method) -> KubeRequestLabels {
        let method = match *method {
            http::Method::GET => "GET",
            http::Method::POST => "POST",
            http::Method::PUT => "PUT",
            http::Method::PATCH => "PATCH",
            http::Method::DELETE => "DELETE",
            _ => "other",
        };
        KubeRequestLabels { method }
    }
}

pub struct Metrics {
    registry: Mutex<Registry>,
    /// Requests to the Kubernetes API (the reconciler's cost per pass, in the benchmark).
    pub(crate) kube_requests: Family<KubeRequestLabels, Counter>,
    pub(crate) admission_requests: Family<AdmissionLabels, Counter>,
    pub(crate) admission_latency: Family<AdmissionLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let admission_requests = Family::<AdmissionLabels, Counter>::default();
        let admission_latency =
            Family::<AdmissionLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "wpa_webhook_requests",
            "Admission requests answered, by webhook, kind, operation, answer and reason",
            admission_requests.clone(),
        );
        registry.register(
            "wpa_webhook_request_duration_seconds",
            "Time to answer an admission request, by webhook, kind, operation, answer and reason",
            admission_latency.clone(),
        );
        let kube_requests = Family::<KubeRequestLabels, Counter>::default();
        registry.register(
            "wpa_kube_client_requests",
            "Requests this process made to the Kubernetes API, by HTTP method",
            kube_requests.clone(),
        );
        Metrics { registry: Mutex::new(registry), admission_requests, admission_latency, kube_requests }
    }

    /// Registers more metrics (the reconciler's).
    pub(crate) fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut registry)
    }

    /// The exposition, written piece by piece (with thousands of WPAs it is tens of megabytes: the health
    /// server streams it instead of building it whole).
    pub(crate) fn encode_to(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        let registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        encode(out, &registry)
    }
}

/// A `fmt::Write` that hands out 64 KiB chunks to a channel (the body of a streamed response). Writing fails
/// once the receiver is gone, which stops the encoding.
pub(crate) struct ChunkWriter {
    buf: String,
    tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
}

const CHUNK: usize = 64 * 1024;

impl ChunkWriter {
    pub(crate) fn new(tx: tokio::sync::mpsc::Sender<bytes::Bytes>) -> ChunkWriter {
        ChunkWriter { buf: String::with_capacity(CHUNK), tx }
    }

    fn send(&mut self) -> std::fmt::Result {
        let chunk = std::mem::replace(&mut self.buf, String::with_capacity(CHUNK));
        self.tx.blocking_send(bytes::Bytes::from(chunk)).map_err(|_| std::fmt::Error)
    }

    /// Sends what is left.
    pub(crate) fn finish(mut self) -> std::fmt::Result {
        if self.buf.is_empty() { Ok(()) } else { self.send() }
    }
}

impl std::fmt::Write for ChunkWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.buf.push_str(s);
        if self.buf.len() >= CHUNK { self.send() } else { Ok(()) }
    }
}
