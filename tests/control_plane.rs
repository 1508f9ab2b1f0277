//! Proofs that the test harness gives a working control plane: controllers and scheduler act on real
//! objects, kubectl works through the harness kubeconfig, aggregated APIs are routed to a server inside
//! a network namespace, and clusters start fast and side by side.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use support::{HttpsServer, NetnsHost, Options, TestCluster, TlsIdentity, wait_for};

/// The scheduler's explanation (PodScheduled=False message) for each unbound pod.
fn unscheduled_reasons(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .filter_map(|p| p.status.as_ref()?.conditions.as_ref())
        .flatten()
        .filter(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| c.message.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn deployment_gets_scheduled_pods_that_become_ready_and_its_scale_reads_back() {
    let cluster = TestCluster::start_with(Options::full()).await;
    let client = cluster.client();
    cluster.create_node("node-a", "zone-a", "4", "8Gi", 110).await.expect("create the node");

    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": {
            "replicas": 3,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                // Never pulled: there is no kubelet.
                "spec": { "containers": [{ "name": "web", "image": "registry.invalid/web:1" }] }
            }
        }
    }))
    .expect("a valid Deployment");
    cluster.create_namespaced("default", &deployment).await.expect("create the Deployment");

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let bound = wait_for(Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            let list =
                pods.list(&ListParams::default().labels("app=web")).await.map_err(|e| e.to_string())?;
            let nodes: Vec<Option<String>> =
                list.items.iter().map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone())).collect();
            if nodes.len() == 3 && nodes.iter().all(|n| n.as_deref() == Some("node-a")) {
                Ok(list.items)
            } else {
                Err(format!("pods bound to: {nodes:?}; why not: {:?}", unscheduled_reasons(&list.items)))
            }
        }
    })
    .await
    .expect("the controller-manager makes 3 pods and the scheduler binds them to node-a");

    // The pods belong to a ReplicaSet that belongs to the Deployment.
    let replica_sets: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let rs_list =
        replica_sets.list(&ListParams::default().labels("app=web")).await.expect("list ReplicaSets");
    assert_eq!(rs_list.items.len(), 1, "one ReplicaSet for the Deployment");
    let rs = &rs_list.items[0];
    assert_eq!(rs.owner_references().first().map(|o| o.name.as_str()), Some("web"));
    for pod in &bound {
        assert_eq!(
            pod.owner_references().first().map(|o| o.name.clone()),
            Some(rs.name_any()),
            "pod {} is owned by the ReplicaSet",
            pod.name_any()
        );
    }

    let ready = cluster.mark_pods_ready("default", "app=web").await.expect("mark the pods ready");
    assert_eq!(ready, 3);
    let pod = pods.get(&bound[0].name_any()).await.expect("get a pod");
    assert!(support::is_pod_ready(&pod), "the pod reports Ready: {:?}", pod.status);
    let pod_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
    assert!(pod_ip.is_some_and(|ip| ip.starts_with("198.51.100.")), "a documentation-range pod IP");

    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let status = wait_for(Duration::from_secs(60), || {
        let deployments = deployments.clone();
        async move {
            let d = deployments.get("web").await.map_err(|e| e.to_string())?;
            let status = d.status.unwrap_or_default();
            if status.ready_replicas == Some(3) && status.available_replicas == Some(3) {
                Ok(status)
            } else {
                Err(format!("status: {status:?}"))
            }
        }
    })
    .await
    .expect("the Deployment reports 3 ready replicas");
    assert_eq!(status.replicas, Some(3));

    let scale = deployments.get_scale("web").await.expect("GET deployments/web/scale");
    assert_eq!(scale.spec.as_ref().and_then(|s| s.replicas), Some(3));
    let scale_status = scale.status.expect("the scale has a status");
    assert_eq!(scale_status.replicas, 3);
    assert_eq!(scale_status.selector.as_deref(), Some("app=web"));
    eprintln!(
        "deployment web: 3 pods on node-a, ready; scale = {{spec.replicas: 3, status.replicas: {}, selector: {:?}}}",
        scale_status.replicas, scale_status.selector
    );
}

#[tokio::test]
async fn kubectl_apply_through_the_harness_kubeconfig_is_visible_to_the_kube_client() {
    let cluster = TestCluster::start().await;
    let manifest = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: applied
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: applied
data:
  watermark: "high"
"#;
    let out = cluster.kubectl_apply(manifest).expect("kubectl apply -f -");
    assert!(out.contains("configmap/settings created"), "kubectl said: {out}");

    let cm = Api::<ConfigMap>::namespaced(cluster.client(), "applied")
        .get("settings")
        .await
        .expect("the applied ConfigMap is readable through the kube client");
    assert_eq!(cm.data.as_ref().and_then(|d| d.get("watermark")).map(String::as_str), Some("high"));

    let get = cluster.kubectl(&[
        "get",
        "configmap",
        "settings",
        "-n",
        "applied",
        "-o",
        "jsonpath={.data.watermark}",
    ]);
    assert!(get.status.success(), "kubectl get: {}", String::from_utf8_lossy(&get.stderr));
    assert_eq!(String::from_utf8_lossy(&get.stdout), "high");

    // The same through the harness's server-side apply (no kubectl).
    let applied = cluster
        .apply_yaml(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: applied\ndata:\n  watermark: low\n",
        )
        .await
        .expect("server-side apply");
    assert_eq!(applied.len(), 1);
    let cm = Api::<ConfigMap>::namespaced(cluster.client(), "applied")
        .get("settings")
        .await
        .expect("get the ConfigMap again");
    assert_eq!(cm.data.as_ref().and_then(|d| d.get("watermark")).map(String::as_str), Some("low"));
}

/// What the fake external-metrics server saw.
#[derive(Clone, Default)]
struct MetricsServerState {
    remote_users: Arc<Mutex<Vec<String>>>,
    remote_groups: Arc<Mutex<Vec<String>>>,
}

async fn external_metrics_resources() -> Json<Value> {
    Json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "external.metrics.k8s.io/v1beta1",
        "resources": [{
            "name": "my.metric",
            "singularName": "",
            "namespaced": true,
            "kind": "ExternalMetricValueList",
            "verbs": ["get"]
        }]
    }))
}

async fn external_metric_value(
    State(state): State<MetricsServerState>,
    Path((_namespace, metric)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Json<Value> {
    let header = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok().map(str::to_string)).collect()
    };
    state.remote_users.lock().expect("state lock").extend(header("x-remote-user"));
    state.remote_groups.lock().expect("state lock").extend(header("x-remote-group"));
    // Echo the selector back as the metric's labels, as an adapter does for the series it matched.
    let labels: BTreeMap<&str, &str> = query
        .get("labelSelector")
        .map(|s| s.split(',').filter_map(|kv| kv.split_once('=')).collect())
        .unwrap_or_default();
    Json(json!({
        "kind": "ExternalMetricValueList",
        "apiVersion": "external.metrics.k8s.io/v1beta1",
        "metadata": {},
        "items": [{
            "metricName": metric,
            "metricLabels": labels,
            "timestamp": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "value": "42"
        }]
    }))
}

#[tokio::test]
async fn external_metrics_api_is_served_from_a_network_namespace_through_the_aggregator() {
    let host = NetnsHost::create().unwrap_or_else(|e| {
        // The exact refusal, for the log, then the failure.
        eprintln!("network namespace refused: {e:#}");
        panic!("this test needs a network namespace: {e:#}")
    });
    eprintln!("netns {}: host {} <-> namespace {}", host.name(), host.host_ip(), host.ns_ip());
    let cluster = TestCluster::start().await;
    let client = cluster.client();

    let state = MetricsServerState::default();
    let router = Router::new()
        .route("/apis/external.metrics.k8s.io/v1beta1", get(external_metrics_resources))
        .route(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}",
            get(external_metric_value),
        )
        .fallback(|uri: axum::http::Uri| async move {
            eprintln!("metrics server: no route for {uri}");
            (axum::http::StatusCode::NOT_FOUND, format!("no route for {uri}"))
        })
        .with_state(state.clone());
    let ns_ip = host.ns_ip().to_string();
    let identity =
        TlsIdentity::new(&["external-metrics.wpa-metrics.svc", &ns_ip]).expect("server certificate");
    let listener = host.bind_tcp(443).expect("bind 443 inside the namespace");
    let _server = HttpsServer::start(listener, &identity, router).expect("start the metrics server");

    cluster.create_namespace("wpa-metrics", &[]).await.expect("create the namespace");
    host.register_service(&client, "wpa-metrics", "external-metrics", 443)
        .await
        .expect("register Service + Endpoints");
    let api_service: APIService = serde_json::from_value(json!({
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": { "name": "v1beta1.external.metrics.k8s.io" },
        "spec": {
            "group": "external.metrics.k8s.io",
            "version": "v1beta1",
            "service": { "namespace": "wpa-metrics", "name": "external-metrics", "port": 443 },
            "insecureSkipTLSVerify": true,
            "groupPriorityMinimum": 100,
            "versionPriority": 100
        }
    }))
    .expect("a valid APIService");
    cluster.create_cluster_object(&api_service).await.expect("create the APIService");
    let begin = Instant::now();
    cluster
        .wait_api_service_available("v1beta1.external.metrics.k8s.io", Duration::from_secs(60))
        .await
        .expect("the APIService becomes Available");
    eprintln!("APIService Available after {} ms", begin.elapsed().as_millis());

    let path = "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/my.metric?labelSelector=a%3Db";
    let request = axum::http::Request::get(path).body(Vec::new()).expect("a valid request");
    let list: Value = client.request(request).await.expect("the API server proxies the metric request");
    assert_eq!(list["kind"], "ExternalMetricValueList");
    assert_eq!(list["items"][0]["metricName"], "my.metric");
    assert_eq!(list["items"][0]["value"], "42");
    assert_eq!(list["items"][0]["metricLabels"], json!({ "a": "b" }));

    // And through kubectl, which the later tests' operators use.
    let raw = cluster.kubectl(&["get", "--raw", path]);
    assert!(raw.status.success(), "kubectl get --raw: {}", String::from_utf8_lossy(&raw.stderr));
    let via_kubectl: Value = serde_json::from_slice(&raw.stdout).expect("kubectl printed JSON");
    assert_eq!(via_kubectl["items"][0]["value"], "42");

    let users = state.remote_users.lock().expect("state lock").clone();
    let groups = state.remote_groups.lock().expect("state lock").clone();
    eprintln!("the metrics server saw X-Remote-User {users:?}, X-Remote-Group {groups:?}");
    assert!(!users.is_empty(), "the aggregator forwarded the user");
    assert!(users.iter().all(|u| u == "admin"), "users: {users:?}");
    assert!(groups.iter().any(|g| g == "system:masters"), "groups: {groups:?}");
}

#[tokio::test]
async fn apiserver_startup_time_is_measured_and_a_restart_keeps_port_and_data() {
    let begin = Instant::now();
    let cluster = TestCluster::start().await;
    eprintln!(
        "cached start-up: kube-apiserver ready in {} ms (TestCluster::start returned after {} ms)",
        cluster.startup_time().as_millis(),
        begin.elapsed().as_millis()
    );
    assert!(cluster.startup_time() > Duration::ZERO);

    let cms = Api::<ConfigMap>::default_namespaced(cluster.client());
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": "survives-restart" },
        "data": { "k": "v" }
    }))
    .expect("a valid ConfigMap");
    cluster.create_namespaced("default", &cm).await.expect("create a ConfigMap");

    let url = cluster.server_url().to_string();
    let took = cluster.restart_apiserver().await.expect("restart kube-apiserver");
    eprintln!("kube-apiserver restarted, ready in {} ms", took.as_millis());
    assert_eq!(cluster.server_url(), url, "same address after the restart");
    // The client built before the restart reconnects by itself.
    let got = cms.get("survives-restart").await.expect("the object is still there after the restart");
    assert_eq!(got.data.and_then(|d| d.get("k").cloned()).as_deref(), Some("v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_start_in_parallel_without_colliding() {
    let begin = Instant::now();
    let (a, b) = tokio::join!(TestCluster::start(), TestCluster::start());
    eprintln!(
        "two clusters in parallel: {} ready in {} ms, {} ready in {} ms, both within {} ms",
        a.server_url(),
        a.startup_time().as_millis(),
        b.server_url(),
        b.startup_time().as_millis(),
        begin.elapsed().as_millis()
    );
    assert_ne!(a.server_url(), b.server_url());
    assert_ne!(a.dir(), b.dir());

    for (cluster, value) in [(&a, "a"), (&b, "b")] {
        let cm: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": "which" },
            "data": { "cluster": value }
        }))
        .expect("a valid ConfigMap");
        cluster
            .create_namespaced("default", &cm)
            .await
            .expect("the same name can be created in each cluster");
    }
    for (cluster, value) in [(&a, "a"), (&b, "b")] {
        let cm = Api::<ConfigMap>::default_namespaced(cluster.client())
            .get("which")
            .await
            .expect("get the ConfigMap");
        assert_eq!(
            cm.data.and_then(|d| d.get("cluster").cloned()).as_deref(),
            Some(value),
            "each cluster has its own etcd"
        );
    }
}

/// Nodes the fake scheduler extender let through, per call.
#[derive(Clone, Default)]
struct ExtenderState {
    calls: Arc<Mutex<Vec<Vec<String>>>>,
}

/// Scheduler extender `filter` verb: keeps only nodes labelled `extender-ok=true`. Wire format of
/// 1.20 (k8s.io/kube-scheduler/extender/v1): ExtenderArgs in, ExtenderFilterResult out, whose Go
/// structs carry no json tags, so the keys are the capitalised field names (`Pod`, `Nodes`,
/// `NodeNames`, `FailedNodes`, `Error`).
async fn extender_filter(State(state): State<ExtenderState>, Json(args): Json<Value>) -> Json<Value> {
    let nodes = args["Nodes"]["items"].as_array().cloned().unwrap_or_default();
    let (kept, failed): (Vec<Value>, Vec<Value>) =
        nodes.into_iter().partition(|n| n["metadata"]["labels"]["extender-ok"] == "true");
    let kept_names: Vec<String> =
        kept.iter().filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string)).collect();
    state.calls.lock().expect("state lock").push(kept_names);
    let failed_nodes: serde_json::Map<String, Value> = failed
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str())
        .map(|name| (name.to_string(), json!("rejected by the test extender")))
        .collect();
    Json(json!({
        "Nodes": { "apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": kept },
        "FailedNodes": failed_nodes,
        "Error": ""
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_config_with_an_extender_is_honoured() {
    // The extender is called by kube-scheduler over loopback, so it needs no network namespace.
    let listener =
        tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port for the extender");
    let extender_addr = listener.local_addr().expect("extender address");
    let state = ExtenderState::default();
    let router = Router::new()
        .route("/extender/filter", axum::routing::post(extender_filter))
        .with_state(state.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let scheduler_config = format!(
        "apiVersion: kubescheduler.config.k8s.io/v1beta1
kind: KubeSchedulerConfiguration
extenders:
- urlPrefix: http://{extender_addr}/extender
  filterVerb: filter
  weight: 1
  enableHTTPS: false
  nodeCacheCapable: false
"
    );
    let cluster = TestCluster::start_with(Options {
        controller_manager: true,
        scheduler: true,
        scheduler_config: Some(scheduler_config),
        ..Options::default()
    })
    .await;
    cluster.create_node("plain", "zone-a", "4", "8Gi", 110).await.expect("create node plain");
    let chosen = cluster.create_node("chosen", "zone-b", "4", "8Gi", 110).await.expect("create node chosen");
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(cluster.client());
    nodes
        .patch(
            &chosen.name_any(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "metadata": { "labels": { "extender-ok": "true" } } })),
        )
        .await
        .expect("label node chosen");

    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "filtered" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "filtered" } },
            "template": {
                "metadata": { "labels": { "app": "filtered" } },
                "spec": { "containers": [{ "name": "c", "image": "registry.invalid/c:1" }] }
            }
        }
    }))
    .expect("a valid Deployment");
    cluster.create_namespaced("default", &deployment).await.expect("create the Deployment");

    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    wait_for(Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            let list =
                pods.list(&ListParams::default().labels("app=filtered")).await.map_err(|e| e.to_string())?;
            let nodes: Vec<Option<String>> =
                list.iter().map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone())).collect();
            if nodes.len() == 2 && nodes.iter().all(|n| n.as_deref() == Some("chosen")) {
                Ok(())
            } else {
                Err(format!("pods bound to: {nodes:?}; why not: {:?}", unscheduled_reasons(&list.items)))
            }
        }
    })
    .await
    .expect("both pods land on the node the extender allows");
    let calls = state.calls.lock().expect("state lock").clone();
    eprintln!("extender filter calls (nodes kept): {calls:?}");
    assert!(calls.len() >= 2, "the scheduler consulted the extender for each pod");
    server.abort();
}
