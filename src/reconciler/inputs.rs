//! Gathering the engine's inputs for one WPA: the target's `/scale`, its pods, the metric values, the
//! recommender's answer and the DatadogMonitor. Used by the reconciler (from the watch caches, falling back
//! to the API) and by `wpa explain` (from the API only). Every failure becomes the text the engine reports
//! in its condition; nothing here decides anything.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use jiff::Timestamp;
use k8s_openapi::{api::autoscaling::v1::Scale, apimachinery::pkg::apis::meta::v1::LabelSelector};
use kube::{
    Api, Client, ResourceExt,
    api::DynamicObject,
    discovery::{self, ApiResource},
};
use serde::Deserialize;

use crate::state::caches::Caches;
use crate::{
    api::quantity::Quantity,
    api::selector::{self, Selector},
    api::{MetricSource, TlsConfig, WatermarkPodAutoscaler},
    engine::{
        self, MetricObservation, MonitorObservation, MonitorState, Observation, Plan, TargetError,
        TargetErrorKind,
        calc::{ExternalSample, Recommendation, ScaleInfo},
        pods::{self, PodInfo},
    },
    reconciler::recommender_client::{Reach, RecommenderClient, RecommenderError},
};

/// How long a failed discovery (an unknown kind, a CRD not installed yet) is remembered before asking
/// again: long enough not to query discovery every reconcile, short enough to notice a new CRD.
const NEGATIVE_DISCOVERY_TTL: Duration = Duration::from_secs(30);

/// A discovery answer and when it was obtained.
type Resolution = (Instant, Result<ApiResource, String>);

/// How long a metrics API call may take (upstream's recommender timeout; the API server's proxy would wait
/// much longer for a provider that hangs).
const METRIC_TIMEOUT: Duration = Duration::from_secs(10);

/// `group`+`kind` → the resource to call, from API discovery, cached.
#[derive(Default)]
pub(crate) struct DiscoveryCache {
    entries: Mutex<HashMap<(String, String), Resolution>>,
}

impl DiscoveryCache {
    /// The resource for `kind` in `group`, in the group's preferred version (upstream's REST mapper also
    /// ignores the version of `apiVersion`).
    pub(crate) async fn resolve(
        &self,
        client: &Client,
        group: &str,
        kind: &str,
    ) -> Result<ApiResource, String> {
        let key = (group.to_string(), kind.to_string());
        if let Some((at, result)) = self.entries.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && (result.is_ok() || at.elapsed() < NEGATIVE_DISCOVERY_TTL)
        {
            return result.clone();
        }
        let result = match discovery::group(client, group).await {
            Ok(g) => g
                .recommended_kind(kind)
                .map(|(ar, _)| ar)
                .ok_or_else(|| format!("no kind {kind:?} is served in API group {group:?}")),
            Err(e) => Err(e.to_string()),
        };
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).insert(key, (Instant::now(), result.clone()));
        result
    }

    /// Forgets a resolution (after a call on it failed with 404: the CRD may have been removed).
    pub(crate) fn forget(&self, group: &str, kind: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(&(group.to_string(), kind.to_string()));
    }
}

/// Recommender clients, one per WPA and TLS configuration (each WPA's TLS settings are its own).
#[derive(Default)]
pub(crate) struct RecommenderClients {
    clients: Mutex<HashMap<String, (Option<TlsConfig>, RecommenderClient)>>,
    /// Which addresses recommenders may have (`--allow-local-recommenders`).
    pub(crate) reach: Reach,
}

impl RecommenderClients {
    pub(crate) fn new(reach: Reach) -> Self {
        RecommenderClients { clients: Mutex::default(), reach }
    }

    fn get(&self, key: &str, tls: Option<&TlsConfig>) -> Result<RecommenderClient, RecommenderError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t, c)) = clients.get(key)
            && t.as_ref() == tls
        {
            return Ok(c.clone());
        }
        let client = RecommenderClient::new(tls, self.reach)?;
        clients.insert(key.to_string(), (tls.cloned(), client.clone()));
        Ok(client)
    }

    pub(crate) fn remove(&self, key: &str) {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// Observes recommender calls (`http_client_*` metrics); implemented by the exporter. `client` is the
/// recommender's origin (`scheme://host:port`: never its path, query or credentials), `wpa` the
/// `namespace/name` of the WPA calling it (so that an origin no WPA uses any more loses its series).
pub(crate) trait HttpObserver: Send + Sync {
    fn observe(&self, wpa: &str, client: &str, method: &str, outcome: Result<u16, ()>, seconds: f64);
    fn in_flight(&self, client: &str, delta: i64);
}

/// `scheme://host:port` of a URL, without credentials, path or query.
pub(crate) fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or_default();
            match u.port_or_known_default() {
                Some(port) => format!("{}://{host}:{port}", u.scheme()),
                None => format!("{}://{host}", u.scheme()),
            }
        }
        Err(_) => "invalid".into(),
    }
}

/// What the gatherer reads from, and its settings.
pub(crate) struct Sources {
    pub(crate) client: Client,
    /// Watch caches; `None` reads everything from the API (`wpa explain`).
    pub(crate) caches: Option<Arc<Caches>>,
    /// Which autoscalers scale which target (the HPAs that fight a WPA); `None` lists them from the API.
    pub(crate) autoscalers: Option<Arc<crate::state::TargetIndex>>,
    pub(crate) discovery: DiscoveryCache,
    pub(crate) recommenders: RecommenderClients,
    pub(crate) http: Option<Arc<dyn HttpObserver>>,
    /// A metric sample older than this blocks scaling (`None`: no limit).
    pub(crate) metric_max_age: Option<Duration>,
    /// Sent to recommenders as `targetRef.cluster` (`K8S_CLUSTER_NAME`).
    pub(crate) cluster_name: String,
}

impl Sources {
    /// Sources that read everything from the API server, for a one-off look at a WPA (`wpa explain`,
    /// `wpa demo`): no caches, no recommender client, nothing observed.
    pub(crate) fn read_only(
        client: Client,
        metric_max_age: Option<Duration>,
        cluster_name: String,
    ) -> Sources {
        Sources {
            client,
            caches: None,
            autoscalers: None,
            discovery: Default::default(),
            recommenders: Default::default(),
            http: None,
            metric_max_age,
            cluster_name,
        }
    }
}

/// The resolved target: what `/scale` writes go to.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) resource: ApiResource,
    pub(crate) namespace: String,
    pub(crate) name: String,
}

/// Everything the engine needs besides the WPA, owned.
#[derive(Debug)]
pub(crate) struct Inputs {
    pub(crate) target: Result<ScaleInfo, TargetError>,
    pub(crate) resolved: Option<Target>,
    pub(crate) pods: Result<Vec<PodInfo>, String>,
    pub(crate) metrics: Vec<MetricObservation>,
    pub(crate) recommendation: Option<Result<Recommendation, String>>,
    pub(crate) monitor: MonitorObservation,
    pub(crate) conflicts: Vec<String>,
}

impl Inputs {
    pub(crate) fn observation(&self) -> Observation<'_> {
        Observation {
            target: self.target.clone(),
            pods: self.pods.as_deref().map_err(Clone::clone),
            metrics: &self.metrics,
            recommendation: self.recommendation.clone(),
            monitor: self.monitor.clone(),
            conflicts: &self.conflicts,
        }
    }

    /// What the commands' unit tests decide from: Deployment `namespace/name` at `replicas` Running and Ready
    /// pods (ReplicaSet `{name}-abc`), its one External metric reading `value` in total at `now` (or failing
    /// with it), no conflict.
    #[cfg(test)]
    pub(crate) fn one_external(
        namespace: &str,
        name: &str,
        replicas: i32,
        value: Result<i64, &str>,
        now: Timestamp,
    ) -> Inputs {
        use crate::engine::fixtures;
        let count = usize::try_from(replicas).unwrap_or(0);
        Inputs {
            target: Ok(fixtures::scale(namespace, name, replicas, replicas)),
            resolved: None,
            pods: Ok(fixtures::running_pods(&format!("{name}-abc"), count, count, now)),
            metrics: vec![MetricObservation::External(
                value
                    .map(|v| ExternalSample { values: vec![v * 1000], timestamp: Some(now) })
                    .map_err(String::from),
            )],
            recommendation: None,
            monitor: MonitorObservation::NotRequested,
            conflicts: Vec::new(),
        }
    }
}

/// `group` of an `apiVersion` (`apps/v1` → `apps`, `v1` → core).
fn api_group(api_version: &str) -> Result<&str, String> {
    match api_version.split('/').collect::<Vec<_>>().as_slice() {
        [_version] if !api_version.is_empty() => Ok(""),
        [group, version] if !group.is_empty() && !version.is_empty() => Ok(group),
        _ => Err(format!(
            "invalid API version in scale target reference: unexpected GroupVersion string: {api_version}"
        )),
    }
}

fn scale_info(scale: &Scale, namespace: &str, name: &str) -> ScaleInfo {
    ScaleInfo {
        name: name.to_string(),
        namespace: namespace.to_string(),
        spec_replicas: scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
        status_replicas: scale.status.as_ref().map_or(0, |s| s.replicas),
        selector: scale.status.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default(),
    }
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    api_code(e) == Some(404)
}

/// What to say when no provider serves a metrics API, and how to check it.
fn no_provider(group_version: &str) -> String {
    let (version, group) = match group_version.split_once('/') {
        Some((g, v)) => (v, g),
        None => ("", group_version),
    };
    let providers = if group == "metrics.k8s.io" {
        "metrics-server registers it"
    } else {
        "the Datadog Cluster Agent or prometheus-adapter registers it"
    };
    format!(
        "no metrics provider serves {group_version} (check `kubectl get apiservice {version}.{group}`: {providers})"
    )
}

pub(super) fn short_kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => crate::runtime::client::error_chain(other),
    }
}

impl Sources {
    /// Reads what `plan` says one pass needs. `fresh_scale` bypasses the target cache (after a conflict).
    pub(crate) async fn gather(&self, plan: &Plan<'_>, fresh_scale: bool, now: Timestamp) -> Inputs {
        let (wpa, namespace) = (plan.wpa, plan.namespace.as_str());
        let mut inputs = Inputs {
            target: Err(TargetError::new(TargetErrorKind::ScaleUnavailable, "not read")),
            resolved: None,
            pods: Ok(Vec::new()),
            metrics: Vec::new(),
            recommendation: None,
            monitor: MonitorObservation::NotRequested,
            conflicts: self.conflicting_hpas(wpa, namespace).await,
        };
        if !plan.reads_target() {
            return inputs;
        }
        if plan.reads_monitor() {
            inputs.monitor = self.monitor(namespace, &wpa.name_any()).await;
            if !inputs.monitor.allows() {
                return inputs;
            }
        }
        let (target, resolved) = self.scale(wpa, namespace, fresh_scale).await;
        inputs.target = target;
        inputs.resolved = resolved;
        let Ok(scale) = inputs.target.clone() else { return inputs };
        inputs.pods = self.pods(&scale).await;
        if plan.recommender().is_some() {
            if let Ok(pods) = &inputs.pods {
                inputs.recommendation = Some(self.recommend(wpa, &plan.spec, &scale, pods, now).await);
            }
            return inputs;
        }
        for source in plan.metrics() {
            let obs = match source {
                Some(MetricSource::External(e)) => MetricObservation::External(
                    self.external(namespace, &e.metric_name, e.metric_selector.as_ref(), now).await,
                ),
                Some(MetricSource::Resource(r)) => MetricObservation::Resource(
                    self.resource(namespace, &r.name, r.metric_selector.as_ref()).await,
                ),
                None => MetricObservation::Skipped,
            };
            inputs.metrics.push(obs);
        }
        inputs
    }

    /// The HorizontalPodAutoscalers scaling the WPA's target: from the autoscaler index, else listed from the
    /// API (`wpa explain`). A failed list is not a conflict: it is logged and the pass goes on.
    async fn conflicting_hpas(&self, wpa: &WatermarkPodAutoscaler, namespace: &str) -> Vec<String> {
        let r = &wpa.spec.scale_target_ref;
        if let Some(index) = &self.autoscalers {
            return index
                .hpas_for(namespace, &r.kind, &r.name)
                .into_iter()
                .map(|h| format!("{namespace}/{}", h.name))
                .collect();
        }
        let api: Api<k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler> =
            Api::namespaced(self.client.clone(), namespace);
        match api.list(&Default::default()).await {
            Ok(list) => list
                .items
                .iter()
                .filter(|h| {
                    h.spec.as_ref().is_some_and(|s| {
                        s.scale_target_ref.kind == r.kind && s.scale_target_ref.name == r.name
                    })
                })
                .map(|h| format!("{namespace}/{}", h.name_any()))
                .collect(),
            Err(e) => {
                tracing::debug!(error = %short_kube_error(&e), "cannot list HorizontalPodAutoscalers");
                Vec::new()
            }
        }
    }

    /// The target's scale: from the cache for Deployments and StatefulSets, else `GET /scale`.
    async fn scale(
        &self,
        wpa: &WatermarkPodAutoscaler,
        namespace: &str,
        fresh: bool,
    ) -> (Result<ScaleInfo, TargetError>, Option<Target>) {
        let r = &wpa.spec.scale_target_ref;
        let group = match api_group(r.api_version.as_deref().unwrap_or_default()) {
            Ok(g) => g,
            Err(e) => return (Err(TargetError::new(TargetErrorKind::BadApiVersion, e)), None),
        };
        let resource = match self.discovery.resolve(&self.client, group, &r.kind).await {
            Ok(ar) => ar,
            Err(e) => {
                let msg = format!("unable to determine resource for scale target reference: {e}");
                return (Err(TargetError::new(TargetErrorKind::UnknownKind, msg)), None);
            }
        };
        let target = Target { resource, namespace: namespace.to_string(), name: r.name.clone() };
        if !fresh
            && let Some(cached) =
                self.caches.as_ref().and_then(|c| c.targets.get(group, &r.kind, namespace, &r.name))
        {
            let result = cached.map(|s| s.scale_info(namespace, &r.name)).ok_or_else(|| {
                TargetError::new(
                    TargetErrorKind::ScaleUnavailable,
                    format!("failed to query scale subresource for {}/{namespace}/{}: scale not found: no such object", r.kind, r.name),
                )
            });
            return (result, Some(target));
        }
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &target.resource);
        let result = match api.get_scale(&r.name).await {
            Ok(s) => Ok(scale_info(&s, namespace, &r.name)),
            Err(e) => {
                if matches!(&e, kube::Error::Api(s) if s.code == 404) {
                    self.discovery.forget(group, &r.kind);
                }
                Err(TargetError::new(
                    TargetErrorKind::ScaleUnavailable,
                    format!(
                        "failed to query scale subresource for {}/{namespace}/{}: scale not found: {}",
                        r.kind,
                        r.name,
                        short_kube_error(&e)
                    ),
                ))
            }
        };
        (result, Some(target))
    }

    /// The pods the scale's selector selects in the target's namespace.
    async fn pods(&self, scale: &ScaleInfo) -> Result<Vec<PodInfo>, String> {
        let selector = Selector::parse(&scale.selector).map_err(|e| e.to_string())?;
        // Until the pod watch has listed once, an empty cache would read as "no pods": ask the API instead.
        if let Some(caches) = self.caches.as_ref().filter(|c| c.pods.synced().is_synced()) {
            return Ok(caches.pods.read().select(&scale.namespace, &selector));
        }
        let api: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(self.client.clone(), &scale.namespace);
        let list = api
            .list(&kube::api::ListParams::default().labels(&scale.selector))
            .await
            .map_err(|e| format!("unable to list the pods of the target: {}", short_kube_error(&e)))?;
        Ok(list.items.iter().map(crate::state::caches::pod_info).collect())
    }

    /// `external.metrics.k8s.io/v1beta1`: the values of `metric` selected by `selector`.
    pub(crate) async fn external(
        &self,
        namespace: &str,
        metric: &str,
        selector: Option<&LabelSelector>,
        now: Timestamp,
    ) -> Result<ExternalSample, String> {
        #[derive(Deserialize)]
        struct List {
            #[serde(default)]
            items: Vec<Item>,
        }
        #[derive(Deserialize)]
        struct Item {
            #[serde(default)]
            timestamp: Option<Timestamp>,
            value: serde_json::Value,
        }
        let collection = format!(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/{}/{}",
            encode(namespace),
            encode(metric)
        );
        let list: List = self.list_metrics(&collection, selector, "external").await?;
        let mut values = Vec::with_capacity(list.items.len());
        for item in &list.items {
            values.push(metric_milli(&item.value)?);
        }
        let newest = list.items.iter().filter_map(|i| i.timestamp).max();
        engine::metrics::check_sample_age(newest, now, self.metric_max_age)?;
        Ok(ExternalSample { values, timestamp: list.items.first().and_then(|i| i.timestamp) })
    }

    /// `metrics.k8s.io/v1beta1` pod metrics: per pod, the sum of its containers' usage of `resource`.
    /// A pod with a container that does not report the resource is left out, as upstream does.
    pub(crate) async fn resource(
        &self,
        namespace: &str,
        resource: &str,
        selector: Option<&LabelSelector>,
    ) -> Result<BTreeMap<String, i64>, String> {
        #[derive(Deserialize)]
        struct List {
            #[serde(default)]
            items: Vec<PodMetrics>,
        }
        #[derive(Deserialize)]
        struct PodMetrics {
            metadata: kube::api::ObjectMeta,
            #[serde(default)]
            containers: Vec<Container>,
        }
        #[derive(Deserialize)]
        struct Container {
            #[serde(default)]
            usage: BTreeMap<String, serde_json::Value>,
        }
        let collection = format!("/apis/metrics.k8s.io/v1beta1/namespaces/{}/pods", encode(namespace));
        let list: List = self.list_metrics(&collection, selector, "resource").await?;
        let mut out = BTreeMap::new();
        'pods: for pod in list.items {
            if pod.containers.is_empty() {
                continue;
            }
            let mut sum: i64 = 0;
            for c in &pod.containers {
                let Some(v) = c.usage.get(resource) else { continue 'pods };
                sum = sum.saturating_add(metric_milli(v)?);
            }
            out.insert(pod.metadata.name.unwrap_or_default(), sum);
        }
        Ok(out)
    }

    /// GETs a metrics API collection filtered by `selector`; errors in upstream's words for `api`
    /// (`external` or `resource`), and when no provider serves that API at all, a sentence that says so and
    /// how to check (the API server's bare `404 page not found` says neither).
    async fn list_metrics<T: serde::de::DeserializeOwned>(
        &self,
        collection: &str,
        selector: Option<&LabelSelector>,
        api: &str,
    ) -> Result<T, String> {
        let sel = selector::label_selector_string(selector).map_err(|e| e.to_string())?;
        let path = format!("{collection}?labelSelector={}", encode(&sel));
        let failed = |e: String| format!("unable to fetch metrics from {api} metrics API: {e}");
        let req = http::Request::get(path).body(Vec::new()).map_err(|e| failed(e.to_string()))?;
        match tokio::time::timeout(METRIC_TIMEOUT, self.client.request::<T>(req)).await {
            Ok(Ok(list)) => Ok(list),
            Ok(Err(e @ kube::Error::Api(_))) if is_not_found(&e) => match self.unserved(collection).await {
                Some(group_version) => Err(failed(no_provider(&group_version))),
                None => Err(failed(short_kube_error(&e))),
            },
            Ok(Err(e)) => Err(failed(short_kube_error(&e))),
            Err(_) => Err(failed(format!("no answer within {}s", METRIC_TIMEOUT.as_secs()))),
        }
    }

    /// The metrics API (`group/version`) of `collection` when the API server does not serve it at all: no
    /// APIService, or one that is not available.
    async fn unserved(&self, collection: &str) -> Option<String> {
        let mut parts = collection.strip_prefix("/apis/")?.split('/');
        let group_version = format!("{}/{}", parts.next()?, parts.next()?);
        let req = http::Request::get(format!("/apis/{group_version}")).body(Vec::new()).ok()?;
        match tokio::time::timeout(METRIC_TIMEOUT, self.client.request_text(req)).await {
            Ok(Err(e)) if matches!(api_code(&e), Some(404 | 503)) => Some(group_version),
            _ => None,
        }
    }

    /// Asks the WPA's recommender (upstream sends spec replicas as both current and desired).
    async fn recommend(
        &self,
        wpa: &WatermarkPodAutoscaler,
        spec: &crate::api::WatermarkPodAutoscalerSpec,
        scale: &ScaleInfo,
        pods: &[PodInfo],
        now: Timestamp,
    ) -> Result<Recommendation, String> {
        let Some(reco) = &spec.recommender else { return Err("no recommender configured".into()) };
        let skip_owner = pods::should_skip_owner_check(wpa.metadata.annotations.as_ref());
        let namespace = wpa.namespace().unwrap_or_default();
        let query =
            engine::recommender::query(&namespace, spec, scale, pods, skip_owner, &self.cluster_name, now)
                .ok_or("no recommender configured")?;
        let key = format!("{}/{}", wpa.namespace().unwrap_or_default(), wpa.name_any());
        let client = self.recommenders.get(&key, reco.tls_config.as_ref()).map_err(|e| e.to_string())?;
        let origin = origin(&reco.url);
        if let Some(h) = &self.http {
            h.in_flight(&origin, 1);
        }
        let started = Instant::now();
        let result = client.recommend(&query).await;
        if let Some(h) = &self.http {
            h.in_flight(&origin, -1);
            let outcome = match &result {
                Ok(_) => Ok(200),
                Err(RecommenderError::Status { code }) => Ok(*code),
                Err(
                    RecommenderError::Decode(_) | RecommenderError::Reply(_) | RecommenderError::TooLarge,
                ) => Ok(200),
                Err(_) => Err(()),
            };
            h.observe(&key, &origin, "POST", outcome, started.elapsed().as_secs_f64());
        }
        let name = engine::recommender::display_name(reco);
        let failed = |e: String| format!("unable to get external recommendation {name}: {e}");
        let recommendation = result.map_err(|e| failed(e.to_string()))?;
        let max_replicas = spec.max_replicas.unwrap_or(0);
        engine::recommender::check_recommendation(&recommendation, max_replicas, now, self.metric_max_age)
            .map_err(failed)?;
        Ok(recommendation)
    }

    /// The DatadogMonitor named like the WPA (lifecycle control).
    async fn monitor(&self, namespace: &str, name: &str) -> MonitorObservation {
        let resource = match self.discovery.resolve(&self.client, "datadoghq.com", "DatadogMonitor").await {
            Ok(r) => r,
            Err(_) => return MonitorObservation::CrdMissing,
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &resource);
        monitor_observation(api.get(name).await)
    }
}

/// What a GET of a WPA's DatadogMonitor tells lifecycle control. Upstream blocks on any error and reports
/// its `err.Error()`, which for an API error is the Status message (`datadogmonitors.datadoghq.com "web" not
/// found`).
pub(crate) fn monitor_observation(got: Result<DynamicObject, kube::Error>) -> MonitorObservation {
    match got {
        Ok(m) => MonitorObservation::Found(MonitorState::parse(
            m.data.pointer("/status/monitorState").and_then(|s| s.as_str()),
        )),
        Err(kube::Error::Api(s)) => MonitorObservation::Unavailable(s.message),
        Err(e) => MonitorObservation::Unavailable(short_kube_error(&e)),
    }
}

/// A metric value as a milli-value. Quantities only: NaN, infinities and garbage are refused with the
/// value named.
fn metric_milli(v: &serde_json::Value) -> Result<i64, String> {
    let q: Result<Quantity, _> = serde_json::from_value(v.clone());
    q.map(|q| q.milli()).map_err(|_| format!("the metrics API returned an invalid value {v}: not a quantity"))
}

/// Percent-encodes a path segment or query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_parse_like_schema_parse_group_version() {
        assert_eq!(api_group("apps/v1"), Ok("apps"));
        assert_eq!(api_group("v1"), Ok(""));
        assert!(api_group("").is_err());
        assert!(api_group("a/b/c").unwrap_err().starts_with("invalid API version in scale target reference"));
    }

    #[test]
    fn metric_values_must_be_quantities() {
        assert_eq!(metric_milli(&serde_json::json!("1500m")), Ok(1500));
        assert_eq!(metric_milli(&serde_json::json!("2")), Ok(2000));
        assert_eq!(metric_milli(&serde_json::json!(3)), Ok(3000));
        for bad in [
            serde_json::json!("NaN"),
            serde_json::json!("abc"),
            serde_json::json!(null),
            serde_json::json!("+Inf"),
        ] {
            let e = metric_milli(&bad).unwrap_err();
            assert!(e.contains("invalid value"), "{e}");
        }
        // Negative values parse; the engine refuses them with its own message.
        assert_eq!(metric_milli(&serde_json::json!("-1")), Ok(-1000));
    }

    /// Sources whose API answers every request with `status` and `body` (error paths only; the real
    /// behaviour is tested against a real API server).
    fn answering(status: u16, body: &'static str) -> Sources {
        Sources {
            client: super::super::scale::tests::answering(status, body),
            caches: None,
            autoscalers: None,
            discovery: Default::default(),
            recommenders: Default::default(),
            http: None,
            metric_max_age: None,
            cluster_name: String::new(),
        }
    }

    #[tokio::test]
    async fn a_metrics_api_no_provider_serves_is_named_with_the_check() {
        // kube-apiserver's answer for a group nobody serves: plain text, on the collection and the group alike.
        let e = answering(404, "404 page not found")
            .external("ns", "qps", None, Timestamp::now())
            .await
            .unwrap_err();
        assert_eq!(
            e,
            "unable to fetch metrics from external metrics API: no metrics provider serves external.metrics.k8s.io/v1beta1 (check `kubectl get apiservice v1beta1.external.metrics.k8s.io`: the Datadog Cluster Agent or prometheus-adapter registers it)"
        );
        let e = answering(404, "404 page not found").resource("ns", "cpu", None).await.unwrap_err();
        assert!(e.contains("no metrics provider serves metrics.k8s.io/v1beta1 (check `kubectl get apiservice v1beta1.metrics.k8s.io`: metrics-server registers it)"), "{e}");
    }

    #[tokio::test]
    async fn an_unreachable_metrics_api_is_an_error_in_upstreams_words() {
        let down = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":503,"reason":"ServiceUnavailable","message":"service unavailable"}"#;
        let e = answering(503, down).external("ns", "qps", None, Timestamp::now()).await.unwrap_err();
        assert!(
            e.starts_with("unable to fetch metrics from external metrics API: service unavailable"),
            "{e}"
        );
        let e = answering(200, "not json").resource("ns", "cpu", None).await.unwrap_err();
        assert!(e.starts_with("unable to fetch metrics from resource metrics API"), "{e}");
        let garbage = r#"{"items":[{"metricName":"qps","value":"lots"}]}"#;
        let e = answering(200, garbage).external("ns", "qps", None, Timestamp::now()).await.unwrap_err();
        assert!(e.contains("invalid value \"lots\""), "{e}");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("app=web,tier in (a,b)"), "app%3Dweb%2Ctier%20in%20%28a%2Cb%29");
        assert_eq!(encode("requests.per_second"), "requests.per_second");
    }
}
