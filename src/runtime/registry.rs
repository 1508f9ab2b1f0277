//! Prometheus metrics, served as text on the health port's `/metrics`.

use std::sync::Mutex;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family},
    registry::Registry as Families,
};

/// Labels of a Kubernetes API request made by this process. Counted on every request: a fixed set of
/// values, so counting allocates nothing.
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

/// The process's one registry: each role registers its own series in it at start, and the health port's
/// `/metrics` serves them all.
pub struct Registry {
    families: Mutex<Families>,
    /// Requests to the Kubernetes API (the reconciler's cost per pass, in the benchmark).
    pub(crate) kube_requests: Family<KubeRequestLabels, Counter>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Registry {
        let mut families = Families::default();
        let kube_requests = Family::<KubeRequestLabels, Counter>::default();
        families.register(
            "wpa_kube_client_requests",
            "Requests this process made to the Kubernetes API, by HTTP method",
            kube_requests.clone(),
        );
        Registry { families: Mutex::new(families), kube_requests }
    }

    /// Registers a role's series.
    pub(crate) fn with_registry<R>(&self, f: impl FnOnce(&mut Families) -> R) -> R {
        let mut families = self.families.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut families)
    }

    /// The exposition, written piece by piece (with thousands of WPAs it is tens of megabytes: the health
    /// server streams it instead of building it whole).
    pub(crate) fn encode_to(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        let families = self.families.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        encode(out, &families)
    }
}

/// A `fmt::Write` that hands out 64 KiB chunks to a channel (the body of a streamed response). Writing fails
/// once the receiver is gone, which stops the encoding.
///
/// It never waits for the reader: the encoder holds the registry's locks (each family's, while it writes
/// that family), so waiting for a slow client would hold them for as long as the scrape lasts, and a pass
/// creating a series would block a runtime worker on them; with both workers blocked, nothing would read the
/// body any more (a deadlock, seen at 5,000 WPAs). Chunks the client has not read yet wait in the channel.
pub(crate) struct ChunkWriter {
    buf: String,
    tx: tokio::sync::mpsc::UnboundedSender<bytes::Bytes>,
}

const CHUNK: usize = 64 * 1024;

impl ChunkWriter {
    pub(crate) fn new(tx: tokio::sync::mpsc::UnboundedSender<bytes::Bytes>) -> ChunkWriter {
        ChunkWriter { buf: String::with_capacity(CHUNK), tx }
    }

    fn send(&mut self) -> std::fmt::Result {
        let chunk = std::mem::replace(&mut self.buf, String::with_capacity(CHUNK));
        self.tx.send(bytes::Bytes::from(chunk)).map_err(|_| std::fmt::Error)
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
