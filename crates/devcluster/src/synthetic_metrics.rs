//! A synthetic metrics provider: serves `external.metrics.k8s.io/v1beta1` (what the Datadog Cluster Agent,
//! KEDA or prometheus-adapter serve) and the pod metrics of `metrics.k8s.io/v1beta1` (metrics-server's) with
//! values set by a program instead of measured. `wpa demo` and the tests register it as APIServices, so the
//! reconciler reads it through the API server exactly as it reads a real provider. Every external value it
//! serves carries the label `synthetic: "true"`, and every pod metric the annotation
//! `wpa.datadoghq.com/synthetic: "true"`, so neither can be mistaken for a measurement.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};

use anyhow::{Context, Result};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;

use crate::{HttpsServer, LocalCluster, NetnsHost, TlsIdentity};

pub const GROUP_VERSION: &str = "external.metrics.k8s.io/v1beta1";
pub const POD_METRICS_GROUP_VERSION: &str = "metrics.k8s.io/v1beta1";

/// namespace → pod → resource → usage (a quantity).
type PodUsage = BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>;

/// What a metric answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// One series with this value (a quantity string such as `"250"` or `"1500m"`).
    Value(String),
    /// Several series, summed by the consumer.
    Values(Vec<String>),
    /// The item's `value` field as given, to test garbage (`"NaN"`, `null`, `-1`).
    Raw(Value),
    /// An HTTP error (a provider that is down or refuses).
    Error(u16),
    /// A value sampled this many seconds before it was set (a provider that stopped updating).
    Stale { value: String, age_seconds: i64 },
}

/// The provider's state, shared with whoever sets the values.
#[derive(Clone, Default)]
pub struct SyntheticMetrics {
    /// Each answer with the instant it was set.
    answers: Arc<RwLock<HashMap<String, (Answer, jiff::Timestamp)>>>,
    pods: Arc<RwLock<PodUsage>>,
    requests: Arc<AtomicU64>,
    /// When each external series was asked for, once [`SyntheticMetrics::record_requests`] has been called.
    log: Arc<Mutex<Option<RequestLog>>>,
}

/// The instants of the external metric requests, per series (namespace and label selector).
#[derive(Default)]
struct RequestLog {
    since: Option<Instant>,
    series: HashMap<String, Vec<Instant>>,
}

/// How regularly the series were asked for since an instant: see [`SyntheticMetrics::longest_gaps`].
#[derive(Clone, Debug, PartialEq)]
pub struct Gaps {
    /// Per series, the longest interval between two requests that ended after the instant, or from its
    /// last request to now; sorted, longest last.
    pub longest: Vec<Duration>,
}

impl Gaps {
    /// Series whose longest interval is over `limit`.
    pub fn over(&self, limit: Duration) -> usize {
        self.longest.iter().filter(|g| **g > limit).count()
    }

    /// The `q` quantile of the series' longest intervals (0 when there is none).
    pub fn quantile(&self, q: f64) -> Duration {
        let n = self.longest.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let i = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
        self.longest[i]
    }
}

/// A [`SyntheticMetrics`] served from a network namespace this machine made and registered with a cluster as
/// both metrics APIs (`v1beta1.external.metrics.k8s.io`, `v1beta1.metrics.k8s.io`, Service
/// `wpa-metrics/external-metrics`), so clients read it through the API server as they read a real provider.
pub struct Provider {
    pub metrics: SyntheticMetrics,
    _server: HttpsServer,
    // Dropped after the server, which serves inside it.
    _host: NetnsHost,
}

impl Provider {
    /// The network namespace the provider serves in.
    pub fn netns(&self) -> &str {
        self._host.name()
    }

    /// Registers the provider and waits until the API server routes both groups to it.
    pub async fn register(cluster: &LocalCluster) -> Result<Provider> {
        let host = NetnsHost::create().context("the synthetic metrics provider needs a network namespace")?;
        let metrics = SyntheticMetrics::new();
        let ns_ip = host.ns_ip().to_string();
        let identity = TlsIdentity::new(&["external-metrics.wpa-metrics.svc", &ns_ip])?;
        let server = HttpsServer::start(host.bind_tcp(443)?, &identity, metrics.router())?;
        // An API server on a real node's bridge reaches the Service through kube-proxy, from its own address.
        if let std::net::IpAddr::V4(address) = cluster.address()
            && !address.is_loopback()
        {
            host.route_to_host(address)?;
        }
        cluster.create_namespace("wpa-metrics", &[]).await?;
        host.register_service(&cluster.client(), "wpa-metrics", "external-metrics", 443).await?;
        for (group, version) in [("external.metrics.k8s.io", "v1beta1"), ("metrics.k8s.io", "v1beta1")] {
            let api_service: APIService = serde_json::from_value(json!({
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": { "name": format!("{version}.{group}") },
                "spec": {
                    "group": group, "version": version,
                    "service": { "namespace": "wpa-metrics", "name": "external-metrics", "port": 443 },
                    "insecureSkipTLSVerify": true, "groupPriorityMinimum": 100, "versionPriority": 100
                }
            }))?;
            cluster.create_cluster_object(&api_service).await?;
            cluster
                .wait_api_service_available(&format!("{version}.{group}"), std::time::Duration::from_secs(60))
                .await?;
        }
        Ok(Provider { metrics, _server: server, _host: host })
    }
}

fn quantity(v: f64) -> String {
    // Milli precision, as the metrics API's quantities have.
    format!("{}m", (v * 1000.0).round() as i64)
}

impl SyntheticMetrics {
    pub fn new() -> SyntheticMetrics {
        SyntheticMetrics::default()
    }

    pub fn set(&self, metric: &str, value: f64) {
        self.answer(metric, Answer::Value(quantity(value)));
    }

    pub fn answer(&self, metric: &str, answer: Answer) {
        let now = jiff::Timestamp::now();
        self.answers.write().unwrap_or_else(|p| p.into_inner()).insert(metric.to_string(), (answer, now));
    }

    /// Sets a pod's usage of a resource (`cpu`, `memory`), e.g. `"250m"`.
    pub fn set_pod_usage(&self, namespace: &str, pod: &str, resource: &str, quantity: &str) {
        let mut pods = self.pods.write().unwrap_or_else(|p| p.into_inner());
        pods.entry(namespace.into())
            .or_default()
            .entry(pod.into())
            .or_default()
            .insert(resource.into(), quantity.into());
    }

    /// Metric requests served so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// From now on, notes when each external series (a namespace and a label selector: one WPA's metric) is
    /// asked for, so that [`SyntheticMetrics::longest_gaps`] can tell how regularly each was read.
    pub fn record_requests(&self) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        *log = Some(RequestLog { since: Some(Instant::now()), series: HashMap::new() });
    }

    /// For each of `expected` series (names as `namespace?labelSelector`), the longest interval between two
    /// of its requests that ended at or after `from`, or from its last request (or, never asked for, from
    /// the start of the recording) to now. `None` unless recording.
    pub fn longest_gaps(&self, from: Instant, expected: impl IntoIterator<Item = String>) -> Option<Gaps> {
        let now = Instant::now();
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let log = log.as_ref()?;
        let start = log.since.unwrap_or(now);
        let mut longest: Vec<Duration> = expected
            .into_iter()
            .map(|key| {
                let times = log.series.get(&key).map(Vec::as_slice).unwrap_or_default();
                let tail = now.duration_since(times.last().copied().unwrap_or(start));
                times
                    .windows(2)
                    .filter(|w| w[1] >= from)
                    .map(|w| w[1].duration_since(w[0]))
                    .fold(tail, Duration::max)
            })
            .collect();
        longest.sort();
        Some(Gaps { longest })
    }

    fn note_request(&self, namespace: &str, selector: Option<&String>) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(log) = log.as_mut() {
            let key = format!("{namespace}?{}", selector.map_or("", String::as_str));
            log.series.entry(key).or_default().push(Instant::now());
        }
    }

    /// The API the aggregator proxies to (discovery and the metric values).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/apis/external.metrics.k8s.io/v1beta1", get(resources))
            .route("/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}", get(value))
            .route("/apis/metrics.k8s.io/v1beta1", get(pod_resources))
            .route("/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods", get(pod_metrics))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(self.clone())
    }
}

async fn resources(State(s): State<SyntheticMetrics>) -> Json<Value> {
    let names: Vec<String> = s.answers.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
    let resources: Vec<Value> = names
        .iter()
        .map(|n| json!({"name": n, "singularName": "", "namespaced": true, "kind": "ExternalMetricValueList", "verbs": ["get"]}))
        .collect();
    Json(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": resources}),
    )
}

async fn pod_resources() -> Json<Value> {
    Json(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": POD_METRICS_GROUP_VERSION,
        "resources": [{"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]}]}))
}

/// Every pod of the namespace that has a usage set (one container, `app`). The label selector is not
/// applied: a test sets usage only for the pods it means.
async fn pod_metrics(State(s): State<SyntheticMetrics>, Path(namespace): Path<String>) -> Json<Value> {
    s.requests.fetch_add(1, Ordering::Relaxed);
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let pods = s.pods.read().unwrap_or_else(|p| p.into_inner());
    let items: Vec<Value> = pods
        .get(&namespace)
        .into_iter()
        .flatten()
        .map(|(pod, usage)| {
            json!({"metadata": {"name": pod, "namespace": namespace, "annotations": {"wpa.datadoghq.com/synthetic": "true"}},
                "timestamp": now, "window": "30s", "containers": [{"name": "app", "usage": usage}]})
        })
        .collect();
    Json(
        json!({"kind": "PodMetricsList", "apiVersion": POD_METRICS_GROUP_VERSION, "metadata": {}, "items": items}),
    )
}

fn item(metric: &str, labels: &BTreeMap<String, String>, value: Value, at: jiff::Timestamp) -> Value {
    json!({
        "metricName": metric,
        "metricLabels": labels,
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "value": value,
    })
}

async fn value(
    State(s): State<SyntheticMetrics>,
    Path((namespace, metric)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    s.requests.fetch_add(1, Ordering::Relaxed);
    s.note_request(&namespace, query.get("labelSelector"));
    let answer = s.answers.read().unwrap_or_else(|p| p.into_inner()).get(&metric).cloned();
    let now = jiff::Timestamp::now();
    // The selector's equalities come back as the series' labels, as an adapter reports what it matched.
    let mut labels: BTreeMap<String, String> = query
        .get("labelSelector")
        .map(|s| {
            s.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect()
        })
        .unwrap_or_default();
    labels.insert("synthetic".into(), "true".into());
    let items = match answer {
        None => {
            let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                "reason": "NotFound", "message": format!("no synthetic metric {metric:?}")});
            return (StatusCode::NOT_FOUND, Json(body)).into_response();
        }
        Some((Answer::Error(code), _)) => {
            let code = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code.as_u16(),
                "message": format!("synthetic metric {metric:?} is set to fail")});
            return (code, Json(body)).into_response();
        }
        Some((Answer::Value(v), _)) => vec![item(&metric, &labels, Value::String(v), now)],
        Some((Answer::Values(vs), _)) => {
            vs.into_iter().map(|v| item(&metric, &labels, Value::String(v), now)).collect()
        }
        Some((Answer::Raw(v), _)) => vec![item(&metric, &labels, v, now)],
        Some((Answer::Stale { value, age_seconds }, set)) => {
            let at = set - jiff::SignedDuration::from_secs(age_seconds);
            vec![item(&metric, &labels, Value::String(value), at)]
        }
    };
    Json(json!({"kind": "ExternalMetricValueList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn get_json(router: Router, path: &str) -> (u16, Value) {
        let resp = router
            .oneshot(axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let code = resp.status().as_u16();
        let bytes = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
        (code, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn longest_gaps_measure_each_series_between_its_requests_and_to_now() {
        let m = SyntheticMetrics::new();
        m.set("qps", 1.0);
        assert_eq!(m.longest_gaps(Instant::now(), ["a?app=x".to_string()]), None, "not recording yet");
        m.record_requests();
        std::thread::sleep(Duration::from_millis(150));
        let path = "/apis/external.metrics.k8s.io/v1beta1/namespaces/a/qps?labelSelector=app%3Dx";
        get_json(m.router(), path).await;
        std::thread::sleep(Duration::from_millis(50));
        let from = Instant::now();
        get_json(m.router(), path).await;
        let gaps =
            m.longest_gaps(from, ["a?app=x".to_string(), "b?app=never".to_string()]).expect("recording");
        assert_eq!(gaps.longest.len(), 2);
        // Asked for twice: the 50 ms between its requests; never asked for: all 200 ms of the recording.
        assert!(gaps.longest[0] >= Duration::from_millis(50), "{gaps:?}");
        assert!(gaps.longest[1] >= Duration::from_millis(200), "{gaps:?}");
        assert_eq!(gaps.over(Duration::from_millis(190)), 1, "{gaps:?}");
        assert_eq!(gaps.quantile(1.0), gaps.longest[1]);
    }

    #[tokio::test]
    async fn serves_set_values_errors_and_labels() {
        let m = SyntheticMetrics::new();
        m.set("qps", 250.5);
        let (code, v) = get_json(
            m.router(),
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/x/qps?labelSelector=app%3Dweb",
        )
        .await;
        assert_eq!(code, 200);
        assert_eq!(v["items"][0]["value"], "250500m");
        assert_eq!(v["items"][0]["metricLabels"], json!({"app": "web", "synthetic": "true"}));
        m.answer("qps", Answer::Error(503));
        let (code, _) = get_json(m.router(), "/apis/external.metrics.k8s.io/v1beta1/namespaces/x/qps").await;
        assert_eq!(code, 503);
        let (code, _) =
            get_json(m.router(), "/apis/external.metrics.k8s.io/v1beta1/namespaces/x/other").await;
        assert_eq!(code, 404);
        assert_eq!(m.requests(), 3);
        let (_, r) = get_json(m.router(), "/apis/external.metrics.k8s.io/v1beta1").await;
        assert_eq!(r["resources"][0]["name"], "qps");
        m.set_pod_usage("x", "web-1", "cpu", "250m");
        let (code, p) =
            get_json(m.router(), "/apis/metrics.k8s.io/v1beta1/namespaces/x/pods?labelSelector=app%3Dweb")
                .await;
        assert_eq!(code, 200);
        assert_eq!(p["items"][0]["containers"][0]["usage"]["cpu"], "250m");
        assert_eq!(p["items"][0]["metadata"]["name"], "web-1");
    }
}
