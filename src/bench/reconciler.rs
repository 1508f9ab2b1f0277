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
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

use crate::{
    api::WatermarkPodAutoscaler,
    devcluster::{Options, ScalingCluster, WpaServe, http_get},
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
    let w: WatermarkPodAutoscaler = serde_json::from_value(json!({
        "apiVersion": "datadoghq.com/v1alpha1", "kind": "WatermarkPodAutoscaler",
        "metadata": {"name": name},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                 "minReplicas": 1, "maxReplicas": 5,
                 "upscaleForbiddenWindowSeconds": WINDOW_SECONDS, "downscaleForbiddenWindowSeconds": WINDOW_SECONDS,
                 "metrics": [{"type": "External", "external": {"metricName": "bench-qps",
                     "metricSelector": {"matchLabels": {"app": name}}, "highWatermark": "100", "lowWatermark": "50"}}]}
    }))?;
    wpas.create(&PostParams::default(), &w).await.context("creating a WPA")?;
    Ok(())
}

/// (utime + stime in seconds) of a process.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), i.e. 12 and 13 after the command name and state.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// A counter's total over all its label sets, from Prometheus text.
fn counter_total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name) && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' '))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// (passes, API requests, WPAs reconciled at least once) from wpa's /metrics.
fn scrape(serve: &WpaServe) -> Result<(f64, f64, f64)> {
    let (_, text) = http_get(serve.health_port, "/metrics")?;
    Ok((
        counter_total(&text, "wpa_reconciles_total"),
        counter_total(&text, "wpa_kube_client_requests_total"),
        counter_total(&text, "wpa_reconciled_wpas"),
    ))
}

/// How many WPAs have a status (were reconciled at least once).
async fn reconciled(client: &Client) -> Result<usize> {
    let api: Api<WatermarkPodAutoscaler> = Api::all(client.clone());
    let list = api.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter(|w| w.status.as_ref().is_some_and(|s| s.observed_generation.is_some()))
        .count())
}

/// One round of the metric GETs a reconcile round needs, by a bare client.
async fn baseline_round(client: &Client, n: usize, concurrency: usize) -> Result<Duration> {
    let begin = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let path = format!(
                    "/apis/external.metrics.k8s.io/v1beta1/namespaces/{}/bench-qps?labelSelector=app%3Dapp-{i}",
                    namespace(i)
                );
                let req = http::Request::get(path).body(Vec::new())?;
                client.request::<serde_json::Value>(req).await.context("baseline metric GET")
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(begin.elapsed())
}

/// Runs the benchmark with `n` WPAs; `steady` is how long the steady state is measured.
pub async fn run(n: usize, steady: Duration, concurrency: u16) -> Result<String> {
    let exe = std::env::current_exe().context("locating the wpa binary")?;
    let mut report = String::new();
    eprintln!("[bench] starting a control plane (etcd, kube-apiserver) and the synthetic metrics provider");
    let c = ScalingCluster::try_start(Options::default()).await?;
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

    let baseline = baseline_round(&client, n, usize::from(concurrency)).await?;
    let baseline_again = baseline_round(&client, n, usize::from(concurrency)).await?;
    let baseline = baseline.min(baseline_again);

    let conc = concurrency.to_string();
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
    let control_plane = c.cluster.pids();
    let cpu_of = |pids: &[(&str, u32)]| -> Vec<f64> {
        pids.iter().map(|(_, p)| cpu_seconds(*p).unwrap_or(0.0)).collect()
    };
    let cpu_start = cpu_seconds(pid).unwrap_or(0.0);
    let cp_start = cpu_of(&control_plane);
    // Polling wpa's own counter is cheap; listing N WPAs four times a second would load the API server.
    let first_round = loop {
        let (_, _, wpas) = scrape(&serve)?;
        if wpas >= n as f64 {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {wpas} of {n} WPAs were reconciled within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let cpu_first = cpu_seconds(pid).unwrap_or(0.0) - cpu_start;
    let cp_first: Vec<f64> = cpu_of(&control_plane).iter().zip(&cp_start).map(|(a, b)| a - b).collect();
    let done = reconciled(&client).await?;
    if done < n {
        bail!("{n} WPAs were reconciled but only {done} have a status");
    }
    let (first_passes, _, _) = scrape(&serve)?;
    let (rss_first, _) = super::admission::peak_rss_mib(pid).unwrap_or((0.0, 0.0));

    // The passes after the first record the windows it opened and then their closing (real status
    // changes); the steady state is measured once they are over.
    tokio::time::sleep(Duration::from_secs(WINDOW_SECONDS + 20)).await;
    let (passes0, calls0, _) = scrape(&serve)?;
    let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
    let t0 = Instant::now();
    tokio::time::sleep(steady).await;
    let (passes1, calls1, _) = scrape(&serve)?;
    let cpu1 = cpu_seconds(pid).unwrap_or(0.0);
    let elapsed = t0.elapsed().as_secs_f64();
    let (rss, hwm) = super::admission::peak_rss_mib(pid).unwrap_or((0.0, 0.0));
    let passes = passes1 - passes0;
    let calls = calls1 - calls0;
    let per_pass = if passes > 0.0 { calls / passes } else { f64::NAN };
    let first_secs = first_round.as_secs_f64();
    let cp_text: Vec<String> = control_plane
        .iter()
        .zip(&cp_first)
        .map(|((name, _), cpu)| format!("{name} {:.0} %", cpu * 100.0 / first_secs))
        .collect();

    let _ = writeln!(
        report,
        "reconciler benchmark: {n} WPAs (one Deployment, one ready pod and one External metric each), sync period 15 s, concurrency {concurrency}"
    );
    let _ = writeln!(report, "  wpa serve ready (caches synced) after {:.2} s", ready_after.as_secs_f64());
    let _ = writeln!(
        report,
        "  every WPA reconciled once: {:.2} s after start ({:.0} WPAs/s, {first_passes:.0} passes counting retries); target: within one 15 s period",
        first_round.as_secs_f64(),
        n as f64 / first_round.as_secs_f64()
    );
    let _ = writeln!(
        report,
        "  baseline, the same {n} metric GETs by a bare client: {:.2} s; first round / baseline = {:.2}x",
        baseline.as_secs_f64(),
        first_round.as_secs_f64() / baseline.as_secs_f64()
    );
    let _ = writeln!(
        report,
        "  CPU during the first round (% of one core): wpa {:.0} % ({:.2} ms per WPA); {}",
        cpu_first * 100.0 / first_secs,
        cpu_first * 1000.0 / n as f64,
        cp_text.join(", ")
    );
    let _ = writeln!(
        report,
        "  steady state over {elapsed:.0} s (windows closed, metric within the watermarks): {passes:.0} passes ({:.0}/s), {calls:.0} API requests = {per_pass:.2} per pass; target ≤ 3",
        passes / elapsed
    );
    let _ = writeln!(
        report,
        "  CPU in steady state: {:.1} % of one core ({:.3} ms per pass)",
        (cpu1 - cpu0) * 100.0 / elapsed,
        if passes > 0.0 { (cpu1 - cpu0) * 1000.0 / passes } else { f64::NAN }
    );
    let _ = writeln!(
        report,
        "  memory: {rss_first:.1} MiB resident after the first round, {rss:.1} MiB at the end, {hwm:.1} MiB peak; target ≤ 150 MiB"
    );
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
        assert_eq!(counter_total("wpa_reconciled_wpas 7\n", "wpa_reconciled_wpas"), 7.0);
        assert_eq!(counter_total(text, "wpa_kube_client_requests_total"), 0.0);
    }

    #[test]
    fn reads_this_process_cpu() {
        assert!(cpu_seconds(std::process::id()).is_some());
    }
}
