//! `wpa bench reconciler`: the reconciler at scale on a real (local) control plane. N WPAs, each on its
//! own Deployment with one ready pod and an External metric served by the synthetic provider through the
//! API server's aggregator. Measures the time until every WPA has been reconciled once, the API requests
//! per reconcile in steady state (counted by the client), and the process's CPU and memory.
//!
//! Baseline, measured in the same run: one plain client fetching the same N metrics through the same
//! aggregator with the same concurrency, the floor under one round of reconciles (each needs its metric).
//! The first round is reported as a ratio to it.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;

use devcluster::{Options, http_get, process::cpu_seconds};

use crate::{
    api::WatermarkPodAutoscaler,
    devtools::{ScalingCluster, WpaServe},
};

const NAMESPACES: usize = 10;
const CREATE_CONCURRENCY: usize = 16;
/// The WPAs' forbidden windows: short, so that the status settles soon after the first pass (whose "scale"
/// to the same count opens them, as upstream's does).
const WINDOW_SECONDS: u64 = 10;

fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn namespace(i: usize) -> String {
    format!("bench-{}", i % NAMESPACES)
}

/// The WPA of Deployment `name`.
fn wpa_json(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "datadoghq.com/v1alpha1", "kind": "WatermarkPodAutoscaler",
        "metadata": {"name": name},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                 "minReplicas": 1, "maxReplicas": 5,
                 "upscaleForbiddenWindowSeconds": WINDOW_SECONDS, "downscaleForbiddenWindowSeconds": WINDOW_SECONDS,
                 "metrics": [{"type": "External", "external": {"metricName": "bench-qps",
                     "metricSelector": {"matchLabels": {"app": name}}, "highWatermark": "100", "lowWatermark": "50"}}]}
    })
}

/// Deployment `app-i` (status: 1 replica), its ready pod (owned, by name, by a ReplicaSet of it), and a WPA
/// whose metric sits within the watermarks, so that the steady state is "nothing to do".
async fn create_one(client: Client, i: usize) -> Result<()> {
    let ns = namespace(i);
    let name = format!("app-{i}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "a", "image": "registry.invalid/a"}]}}}
    }))?;
    deployments.create(&PostParams::default(), &d).await.context("creating a Deployment")?;
    deployments
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 1, "readyReplicas": 1}})),
        )
        .await
        .context("setting a Deployment's status")?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod_name = format!("{name}-5d9c7b-x{i}");
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": pod_name, "labels": {"app": name},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-5d9c7b"), "uid": "00000000-0000-0000-0000-000000000000"}]},
        "spec": {"automountServiceAccountToken": false, "containers": [{"name": "a", "image": "registry.invalid/a"}]}
    }))?;
    pods.create(&PostParams::default(), &p).await.context("creating a pod")?;
    let now = now_rfc3339();
    let status = json!({"status": {"phase": "Running", "startTime": now,
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
    pods.patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .context("marking a pod ready")?;
    let wpas: Api<WatermarkPodAutoscaler> = Api::namespaced(client, &ns);
    let w: WatermarkPodAutoscaler = serde_json::from_value(wpa_json(&name))?;
    wpas.create(&PostParams::default(), &w).await.context("creating a WPA")?;
    Ok(())
}

const METHODS: [&str; 3] = ["GET", "PATCH", "POST"];

/// A counter's total over all its label sets, from Prometheus text.
fn counter_total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name) && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' '))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// What the benchmark reads from wpa's /metrics.
struct Scrape {
    passes: f64,
    requests: f64,
    /// API requests by method, in the order of [`METHODS`].
    by_method: [f64; 3],
    yields: f64,
    /// Total seconds spent in passes.
    pass_seconds: f64,
    bytes: usize,
}

fn scrape(serve: &WpaServe) -> Result<Scrape> {
    let (_, text) = http_get(serve.health_port, "/metrics")?;
    Ok(Scrape {
        passes: counter_total(&text, "wpa_reconciles_total"),
        requests: counter_total(&text, "wpa_kube_client_requests_total"),
        by_method: METHODS
            .map(|m| counter_total(&text, &format!("wpa_kube_client_requests_total{{method=\"{m}\"}}"))),
        yields: counter_total(&text, "wpa_reconcile_yields_total"),
        pass_seconds: counter_total(&text, "wpa_reconcile_duration_seconds_sum"),
        bytes: text.len(),
    })
}

/// When the last WPA's first pass ended, to the microsecond: the latest of the `n` WPAs' first events from
/// wpa (each first pass publishes one, after its status write), from a watch on events that returns as soon
/// as every WPA has one.
async fn last_first_event(client: Client, n: usize) -> Result<jiff::Timestamp> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::all(client);
    let mut first: std::collections::HashMap<(String, String), jiff::Timestamp> = Default::default();
    let stream = kube::runtime::watcher(api, kube::runtime::watcher::Config::default());
    let mut stream = std::pin::pin!(kube::runtime::WatchStreamExt::applied_objects(stream));
    while let Some(e) = stream.try_next().await? {
        let (Some(r), Some(t)) = (e.regarding, e.event_time) else { continue };
        if e.reporting_controller.as_deref() != Some(crate::reconciler::REPORTING_CONTROLLER) {
            continue;
        }
        let at = first.entry((r.namespace.unwrap_or_default(), r.name.unwrap_or_default())).or_insert(t.0);
        *at = (*at).min(t.0);
        if first.len() == n {
            return first.values().max().copied().context("no WPA");
        }
    }
    bail!("the event watch ended")
}

/// Marks the baseline's WPAs in its finalizer patch (removed again before wpa starts).
const BASELINE_FINALIZER: &str = "bench.wpa.datadoghq.com/baseline";

/// The status and events of a WPA's first pass, decided by the engine from what the benchmark set up (one
/// ready pod, one replica, the metric at 75): the baseline writes exactly what the pass will.
fn first_pass_writes(i: usize) -> Result<(serde_json::Value, Vec<crate::engine::Event>)> {
    use crate::engine::{
        self, MetricObservation, MonitorObservation, Observation, ScaleResult,
        calc::{ExternalSample, ScaleInfo},
        pods::{ConditionStatus, OwnerKind, OwnerRef, PodInfo, PodPhase, ReadyCondition},
    };
    let (ns, name) = (namespace(i), format!("app-{i}"));
    let mut wpa: WatermarkPodAutoscaler = serde_json::from_value(wpa_json(&name))?;
    wpa.metadata.namespace = Some(ns.clone());
    wpa.metadata.generation = Some(1);
    let now = jiff::Timestamp::now();
    let pod = PodInfo {
        name: format!("{name}-5d9c7b-x{i}"),
        phase: PodPhase::Running,
        ready: Some(ReadyCondition { status: ConditionStatus::True, last_transition: Some(now) }),
        start_time: Some(now),
        deleting: false,
        owners: vec![OwnerRef { kind: OwnerKind::ReplicaSet, name: format!("{name}-5d9c7b") }],
    };
    let metrics =
        [MetricObservation::External(Ok(ExternalSample { values: vec![75_000], timestamp: Some(now) }))];
    let scale = ScaleInfo {
        name: name.clone(),
        namespace: ns,
        spec_replicas: 1,
        status_replicas: 1,
        selector: format!("app={name}"),
    };
    let pods = [pod];
    let obs = Observation {
        target: Ok(scale),
        pods: Ok(&pods),
        metrics: &metrics,
        recommendation: None,
        monitor: MonitorObservation::NotRequested,
        conflicts: &[],
    };
    let decision = engine::decide(&wpa, &obs, now);
    let result = if decision.scale.is_some() { ScaleResult::Written } else { ScaleResult::NotNeeded };
    let outcome = decision.settle(&wpa, result);
    Ok((crate::reconciler::record::status_patch(&outcome.status), outcome.events))
}

/// One round of the requests the WPAs' first passes make, by a bare client with the same concurrency and
/// the same bodies: the finalizer's JSON patch (with its `test`), the metric GET, the status the pass
/// records, and its events. With `writes` false, only the metric GETs (a steady pass). What the writes
/// change is undone by [`undo_baseline`].
async fn baseline_round(client: &Client, n: usize, concurrency: usize, writes: bool) -> Result<Duration> {
    let reporter =
        kube::runtime::events::Reporter { controller: "bench".into(), instance: Some("bench".into()) };
    let begin = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let (client, reporter) = (client.clone(), reporter.clone());
            async move {
                let (ns, name) = (namespace(i), format!("app-{i}"));
                let wpas: Api<WatermarkPodAutoscaler> = Api::namespaced(client.clone(), &ns);
                let pp = PatchParams::default();
                if writes {
                    let add: json_patch::Patch = serde_json::from_value(json!([
                        {"op": "test", "path": "/metadata/finalizers", "value": null},
                        {"op": "add", "path": "/metadata/finalizers", "value": [BASELINE_FINALIZER]},
                    ]))?;
                    wpas.patch(&name, &pp, &Patch::<()>::Json(add)).await.context("baseline finalizer patch")?;
                }
                let path = format!(
                    "/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/bench-qps?labelSelector=app%3D{name}"
                );
                let req = http::Request::get(path).body(Vec::new())?;
                client.request::<serde_json::Value>(req).await.context("baseline metric GET")?;
                if !writes {
                    return Ok(());
                }
                let (status, events) = first_pass_writes(i)?;
                let w = wpas.patch_status(&name, &pp, &Patch::Merge(&status)).await.context("baseline status patch")?;
                let reference = w.object_ref(&());
                let recorder = kube::runtime::events::Recorder::new(client.clone(), reporter);
                for e in &events {
                    let event = crate::reconciler::kube_event(e);
                    recorder.publish(&event, &reference).await.context("baseline event")?;
                }
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(begin.elapsed())
}

/// Takes the baseline's finalizer and status off again (not timed), so that wpa finds the WPAs as created.
async fn undo_baseline(client: &Client, n: usize, concurrency: usize) -> Result<()> {
    stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let (ns, name) = (namespace(i), format!("app-{i}"));
                let wpas: Api<WatermarkPodAutoscaler> = Api::namespaced(client, &ns);
                let pp = PatchParams::default();
                let remove: json_patch::Patch = serde_json::from_value(json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": [BASELINE_FINALIZER]},
                    {"op": "remove", "path": "/metadata/finalizers"},
                ]))?;
                wpas.patch(&name, &pp, &Patch::<()>::Json(remove))
                    .await
                    .context("removing the baseline finalizer")?;
                wpas.patch_status(&name, &pp, &Patch::Merge(json!({"status": null})))
                    .await
                    .context("removing the baseline status")?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Runs the benchmark with `n` WPAs; `steady` is how long the steady state is measured.
pub(crate) async fn run(
    n: usize,
    steady: Duration,
    concurrency: u16,
    bin_dir: std::path::PathBuf,
) -> Result<String> {
    let exe = std::env::current_exe().context("locating the wpa binary")?;
    let mut report = String::new();
    eprintln!("[bench] starting a control plane (etcd, kube-apiserver) and the synthetic metrics provider");
    let c = ScalingCluster::try_start(Options { bin_dir: Some(bin_dir), ..Options::default() }).await?;
    let client = c.cluster.client();
    c.metrics.set("bench-qps", 75.0);
    for i in 0..NAMESPACES.min(n) {
        let ns = namespace(i);
        c.cluster.create_namespace(&ns, &[]).await?;
        // Pods need their namespace's default ServiceAccount (admission), which only the controller-manager,
        // not started here, would create.
        let sa: k8s_openapi::api::core::v1::ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "default"}}))?;
        c.cluster.create_namespaced(&ns, &sa).await?;
    }
    let begin = Instant::now();
    stream::iter(0..n)
        .map(|i| create_one(client.clone(), i))
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    eprintln!("[bench] created {n} Deployments, pods and WPAs in {:.1} s", begin.elapsed().as_secs_f64());

    let control_plane = c.cluster.pids();
    let cpu_of = |pids: &[(&str, u32)]| -> Vec<f64> {
        pids.iter().map(|(_, p)| cpu_seconds(*p).unwrap_or(0.0)).collect()
    };
    let reads = baseline_round(&client, n, usize::from(concurrency), false).await?;
    let cp_before = cpu_of(&control_plane);
    let writes = baseline_round(&client, n, usize::from(concurrency), true).await?;
    let cp_baseline: Vec<f64> = cpu_of(&control_plane).iter().zip(&cp_before).map(|(a, b)| a - b).collect();
    undo_baseline(&client, n, usize::from(concurrency)).await?;

    let conc = concurrency.to_string();
    // Watched from before wpa starts, so that no first event is missed. Polling the WPAs' list instead (tens
    // of MB at thousands of WPAs, every few seconds) loaded the API server during the round measured, and the
    // baseline round has no such load.
    let first_events = tokio::spawn(last_first_event(client.clone(), n));
    let started = Instant::now();
    let serve = WpaServe::start_binary(
        &exe,
        &c.cluster,
        "bench",
        None,
        &["--no-webhook", "--leader-elect=false", "--concurrency", &conc, "--log-format", "json"],
    )
    .await?;
    let pid = serve.pid();
    let ready_after = started.elapsed();
    let cpu_start = cpu_seconds(pid).unwrap_or(0.0);
    let cp_start = cpu_of(&control_plane);
    let wall_start = jiff::Timestamp::now();
    let last = match tokio::time::timeout(Duration::from_secs(600), first_events).await {
        Ok(done) => done.context("the event watch")??,
        Err(_) => bail!("not every WPA was reconciled within 10 minutes"),
    };
    let cpu_first = cpu_seconds(pid).unwrap_or(0.0) - cpu_start;
    let cp_first: Vec<f64> = cpu_of(&control_plane).iter().zip(&cp_start).map(|(a, b)| a - b).collect();
    let first_round = last.duration_since(wall_start).unsigned_abs() + ready_after;
    let first = scrape(&serve)?;
    let first_passes = first.passes;
    let (rss_first, _) = super::admission::peak_rss_mib(pid).unwrap_or((0.0, 0.0));

    // The passes after the first record the windows it opened and then their closing (real status
    // changes); the steady state is measured once they are over.
    tokio::time::sleep(Duration::from_secs(WINDOW_SECONDS + 20)).await;
    let s0 = scrape(&serve)?;
    let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
    let t0 = Instant::now();
    tokio::time::sleep(steady).await;
    let s1 = scrape(&serve)?;
    let cpu1 = cpu_seconds(pid).unwrap_or(0.0);
    let elapsed = t0.elapsed().as_secs_f64();
    let (rss, hwm) = super::admission::peak_rss_mib(pid).unwrap_or((0.0, 0.0));
    let passes = s1.passes - s0.passes;
    let calls = s1.requests - s0.requests;
    let pass_ms = if passes > 0.0 { (s1.pass_seconds - s0.pass_seconds) * 1000.0 / passes } else { f64::NAN };
    let exposition = s1.bytes;
    let per_pass = if passes > 0.0 { calls / passes } else { f64::NAN };
    let first_secs = first_round.as_secs_f64();
    let cp_text = |cpu: &[f64], secs: f64| -> String {
        let parts: Vec<String> = control_plane
            .iter()
            .zip(cpu)
            .map(|((name, _), cpu)| format!("{name} {:.0} %", cpu * 100.0 / secs))
            .collect();
        parts.join(", ")
    };
    let methods: Vec<String> = METHODS
        .iter()
        .zip(first.by_method)
        .map(|(m, k)| format!("{k:.0} {m} ({:.2} per WPA)", k / n as f64))
        .collect();

    let _ = writeln!(
        report,
        "reconciler benchmark: {n} WPAs (one Deployment, one ready pod and one External metric each), sync period 15 s, concurrency {concurrency}"
    );
    let _ = writeln!(report, "  wpa serve ready (caches synced) after {:.2} s", ready_after.as_secs_f64());
    let _ = writeln!(
        report,
        "  every WPA reconciled once: {:.2} s after start ({:.0} WPAs/s, {first_passes:.0} passes including the WPAs' next periods); target: within one 15 s period",
        first_round.as_secs_f64(),
        n as f64 / first_round.as_secs_f64()
    );
    let _ = writeln!(
        report,
        "  baseline, a bare client making the requests of the {n} first passes (finalizer JSON patch, metric GET, the same WPA status, the same events): {:.2} s; first round / baseline = {:.2}x",
        writes.as_secs_f64(),
        first_round.as_secs_f64() / writes.as_secs_f64()
    );
    let _ = writeln!(
        report,
        "  CPU during the first round (% of one core): wpa {:.0} % ({:.2} ms per WPA); {}",
        cpu_first * 100.0 / first_secs,
        cpu_first * 1000.0 / n as f64,
        cp_text(&cp_first, first_secs)
    );
    let _ = writeln!(
        report,
        "  API requests until then: {:.0} = {} ; {:.0} periodic passes put off (yields) for WPAs not yet reconciled",
        first.requests,
        methods.join(", "),
        first.yields
    );
    let _ = writeln!(
        report,
        "  CPU during the baseline's requests (% of one core): {}",
        cp_text(&cp_baseline, writes.as_secs_f64())
    );
    let _ = writeln!(
        report,
        "  steady state over {elapsed:.0} s (windows closed, metric within the watermarks): {passes:.0} passes ({:.0}/s), {calls:.0} API requests = {per_pass:.2} per pass; target ≤ 3",
        passes / elapsed
    );
    let _ = writeln!(
        report,
        "  CPU in steady state: {:.1} % of one core ({:.3} ms per pass); mean pass {:.1} ms (a bare client's metric GET: {:.1} ms at the same concurrency)",
        (cpu1 - cpu0) * 100.0 / elapsed,
        if passes > 0.0 { (cpu1 - cpu0) * 1000.0 / passes } else { f64::NAN },
        pass_ms,
        reads.as_secs_f64() * 1000.0 * f64::from(concurrency) / n as f64
    );
    let _ = writeln!(
        report,
        "  memory: {rss_first:.1} MiB resident after the first round, {rss:.1} MiB at the end, {hwm:.1} MiB peak; target ≤ 150 MiB"
    );
    let _ = writeln!(report, "  /metrics exposition: {:.1} MiB", exposition as f64 / 1048576.0);
    let _ = writeln!(report, "  metric requests served by the provider: {}", c.metrics.requests());
    drop(serve);
    drop(c);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_over_label_sets() {
        let text = "# TYPE wpa_reconciles counter\nwpa_reconciles_total{result=\"ok\"} 10\nwpa_reconciles_total{result=\"error\"} 2\nwpa_reconciles_created 1\n";
        assert_eq!(counter_total(text, "wpa_reconciles_total"), 12.0);
        assert_eq!(counter_total(text, "wpa_kube_client_requests_total"), 0.0);
    }

    #[test]
    fn reads_this_process_cpu() {
        assert!(cpu_seconds(std::process::id()).is_some());
    }
}
