//! `wpa bench extender`: the scheduler extender's `prioritize` and `filter` over a large cluster held in
//! the real caches (pods, targets, ReplicaSets, Nodes, the WPA index), through the extender's HTTP
//! handler in process: decoding the scheduler's `ExtenderArgs`, the policy, encoding the answer.
//!
//! The baseline, measured in the same run with the same bodies' size, is a pod that no WPA governs: the
//! handler does the same wire work (thousands of node names in, thousands of scores out) and the policy
//! answers at once. The ratio is what the placement policy adds.

use std::{
    fmt::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Router, body::Body};
use http_body_util::BodyExt;
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::{Node, Pod},
};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::Rng;
use crate::{
    api::WatermarkPodAutoscaler,
    extender::{self, ClusterView, ExtenderState},
    state::{TargetIndex, caches::Caches, placement::PlacementCaches},
};

const ZONES: usize = 3;
/// Replicas of each target already running; each target's `spec.replicas` is 20% more, so every
/// request is one of a scale-up (the case the policy works hardest for).
const PODS_PER_TARGET: usize = 20;

fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| format!("a benchmark object does not decode: {e}"))
}

fn node_name(i: usize) -> String {
    format!("node-{i:05}")
}

/// The cluster: `nodes` Ready nodes in three zones; `pods` pods of `pods / 20` Deployments, each with a
/// WPA (minAvailableReplicaPercentage 70), bound to nodes at random.
fn view(nodes: usize, pods: usize) -> Result<ClusterView, String> {
    let targets = (pods / PODS_PER_TARGET).max(1);
    let node_list = (0..nodes)
        .map(|i| {
            from_json::<Node>(json!({
                "metadata": {"name": node_name(i), "labels": {"topology.kubernetes.io/zone": format!("zone-{}", i % ZONES)}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}
            }))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut deployments = Vec::new();
    let mut replica_sets = Vec::new();
    let mut wpas = Vec::new();
    let mut pod_list = Vec::new();
    // Where the existing pods run: reproducible from run to run.
    let mut rng = Rng(0);
    for t in 0..targets {
        let app = format!("app-{t}");
        deployments.push(from_json::<Deployment>(json!({
            "metadata": {"name": app, "namespace": "default"},
            "spec": {
                "replicas": PODS_PER_TARGET + PODS_PER_TARGET / 5,
                "selector": {"matchLabels": {"app": app}},
                "template": {"metadata": {"labels": {"app": app}}, "spec": {"containers": []}}
            },
            "status": {"replicas": PODS_PER_TARGET}
        }))?);
        replica_sets.push(from_json::<ReplicaSet>(json!({
            "metadata": {"name": format!("{app}-abc"), "namespace": "default",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": app, "uid": format!("d{t}"), "controller": true}]},
            "spec": {"selector": {"matchLabels": {"app": app}}}
        }))?);
        wpas.push(from_json::<WatermarkPodAutoscaler>(json!({
            "apiVersion": "datadoghq.com/v1alpha1", "kind": "WatermarkPodAutoscaler",
            "metadata": {"name": format!("{app}-wpa"), "namespace": "default"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": app, "apiVersion": "apps/v1"},
                "minReplicas": 1, "maxReplicas": 100, "minAvailableReplicaPercentage": 70}
        }))?);
        for k in 0..PODS_PER_TARGET {
            let node = node_name(rng.below(nodes));
            pod_list.push(from_json::<Pod>(json!({
                "metadata": {"name": format!("{app}-abc-{k}"), "namespace": "default", "uid": format!("{app}-{k}"),
                    "labels": {"app": app, "pod-template-hash": "abc"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-abc"), "uid": format!("rs{t}"), "controller": true}]},
                "spec": {"nodeName": node, "containers": []},
                "status": {"phase": "Running"}
            }))?);
        }
    }
    Ok(ClusterView {
        caches: Arc::new(Caches::from_lists(pod_list, deployments, Vec::new())),
        index: TargetIndex::from_objects(&wpas, &[]),
        placement: PlacementCaches::from_lists(replica_sets, node_list),
    })
}

/// The body kube-scheduler sends with `nodeCacheCapable: true`: the pod, and every candidate's name.
fn args(app: &str, uid: &str, candidates: &[String]) -> Vec<u8> {
    json!({
        "Pod": {
            "metadata": {"name": format!("{app}-abc-{uid}"), "namespace": "default", "uid": uid,
                "labels": {"app": app, "pod-template-hash": "abc"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-abc"), "uid": "rs", "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}
        },
        "Nodes": null,
        "NodeNames": candidates
    })
    .to_string()
    .into_bytes()
}

struct Latencies(Vec<Duration>);

impl Latencies {
    fn at(&self, q: f64) -> f64 {
        let i = ((self.0.len() as f64 * q).ceil() as usize).clamp(1, self.0.len().max(1)) - 1;
        self.0.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
}

/// Sends `bodies` round-robin `requests` times to `/scheduler/{verb}`; every answer must be a 200. Returns
/// each request's wall time, and the CPU time this thread spent on it: the benchmark runs on one thread,
/// so the latter is the request's own cost, without the time the host's other work preempted it.
async fn measure(
    app: &Router,
    verb: &str,
    bodies: &[Vec<u8>],
    requests: usize,
) -> Result<(Latencies, Latencies), String> {
    let mut all = Vec::with_capacity(requests);
    let mut cpu = Vec::with_capacity(requests);
    for n in 0..requests {
        let body = bodies[n % bodies.len()].clone();
        let request = http::Request::post(format!("/scheduler/{verb}"))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let cpu_started = devcluster::process::thread_cpu_time();
        let response = app.clone().oneshot(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let answer = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        cpu.push(devcluster::process::thread_cpu_time().saturating_sub(cpu_started));
        all.push(started.elapsed());
        if !status.is_success() || answer.is_empty() {
            return Err(format!("{verb}: status {status}: {}", String::from_utf8_lossy(&answer)));
        }
    }
    all.sort();
    cpu.sort();
    Ok((Latencies(all), Latencies(cpu)))
}

pub(crate) async fn run(nodes: usize, pods: usize, requests: usize) -> Result<String, String> {
    let nodes = nodes.max(1);
    let requests = requests.max(1);
    let built = Instant::now();
    let view = view(nodes, pods)?;
    let targets = (pods / PODS_PER_TARGET).max(1);
    let candidates: Vec<String> = (0..nodes).map(node_name).collect();
    let governed: Vec<Vec<u8>> =
        (0..targets).map(|t| args(&format!("app-{t}"), &format!("new-{t}"), &candidates)).collect();
    // A Deployment no WPA targets, with pods of the same size: the wire work without the policy's.
    let baseline: Vec<Vec<u8>> =
        (0..targets).map(|t| args(&format!("plain-{t}"), &format!("new-{t}"), &candidates)).collect();
    let setup = built.elapsed();
    let app = extender::router(ExtenderState::new(Arc::new(view)));
    // Warm the allocator and the caches' maps before measuring.
    measure(&app, "prioritize", &governed, targets.min(requests)).await?;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "wpa bench extender: {nodes} nodes in {ZONES} zones, {} pods of {targets} WPA targets in the caches \
         (built in {:.1} s), {requests} requests per row, every node a candidate",
        targets * PODS_PER_TARGET,
        setup.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  {:<44} {:>9} {:>9} {:>9} {:>12} {:>12}",
        "", "p50 ms", "p99 ms", "max ms", "CPU p50 ms", "CPU p99 ms"
    );
    for verb in ["prioritize", "filter"] {
        let (base, base_cpu) = measure(&app, verb, &baseline, requests).await?;
        let (wpa, wpa_cpu) = measure(&app, verb, &governed, requests).await?;
        for (label, l, c) in [
            (format!("{verb}, pod without a WPA (baseline)"), &base, &base_cpu),
            (format!("{verb}, WPA-governed pod"), &wpa, &wpa_cpu),
        ] {
            let _ = writeln!(
                out,
                "  {label:<44} {:>9.2} {:>9.2} {:>9.2} {:>12.2} {:>12.2}",
                l.at(0.5),
                l.at(0.99),
                l.at(1.0),
                c.at(0.5),
                c.at(0.99)
            );
        }
        let _ = writeln!(
            out,
            "  {verb}: governed / baseline = {:.2}x at p50, {:.2}x at p99{}",
            wpa.at(0.5) / base.at(0.5).max(1e-9),
            wpa.at(0.99) / base.at(0.99).max(1e-9),
            {
                let goal = if verb == "prioritize" { 5.0 } else { 3.0 };
                let met = |l: &Latencies| if l.at(0.99) <= goal { "met" } else { "NOT met" };
                format!(
                    "; goal p99 <= {goal} ms: {} in wall time, {} in the request's CPU time",
                    met(&wpa),
                    met(&wpa_cpu)
                )
            }
        );
    }
    Ok(out)
}
