//! `wpa bench reconciler`: the reconciler at scale on a real (local) control plane. N WPAs, each on its
//! own Deployment with one ready pod and an External metric served by the synthetic provider through the
//! API server's aggregator. Measures the time until every WPA has been reconciled once, the API requests
//! per reconcile in steady state (counted by the client), and the process's CPU and memory.
//!
//! Baseline, measured in the same run: a bare client making the same requests as wpa's first round, with
//! the same concurrency: the lists and watches wpa opens at start, then each first pass's finalizer patch,
//! metric GET, status and event. The first round is reported as a ratio to it, over rounds of both in
//! alternating order (the host's load comes in bursts longer than a round), with the median of the ratios.

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

use devcluster::{Options, process::cpu_seconds};

use crate::{
    api::WatermarkPodAutoscaler,
    devtools::{ScalingCluster, WpaServe},
    runtime::output::note,
};

const NAMESPACES: usize = 10;
/// `wpa serve`'s default sync period, which the benchmark keeps.
const PERIOD: Duration = Duration::from_secs(15);
const CREATE_CONCURRENCY: usize = 16;
/// The WPAs' forbidden windows: short, so that the status settles soon after the first pass (whose "scale"
/// to the same count opens them, as upstream's does).
const WINDOW_SECONDS: u64 = 10;
/// How long the status writes must stand still before the steady state is measured: more than a period, so
/// that every WPA has been passed once without a write.
const QUIET: Duration = Duration::from_secs(20);
/// How long the benchmark waits for them to stand still before it measures anyway (and says so).
const SETTLE_LIMIT: Duration = Duration::from_secs(300);
/// The interval between two scrapes while it waits (a scrape at 20,000 WPAs is 83 MiB).
const SETTLE_POLL: Duration = Duration::from_secs(10);

fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn namespace(i: usize) -> String {
    format!("bench-{}", i % NAMESPACES)
}

/// The WPA of Deployment `name`, whose `pods` replicas it keeps.
fn wpa_json(name: &str, pods: usize) -> serde_json::Value {
    json!({
        "apiVersion": "datadoghq.com/v1alpha1", "kind": "WatermarkPodAutoscaler",
        "metadata": {"name": name},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                 "minReplicas": 1, "maxReplicas": pods.max(5),
                 "upscaleForbiddenWindowSeconds": WINDOW_SECONDS, "downscaleForbiddenWindowSeconds": WINDOW_SECONDS,
                 "metrics": [{"type": "External", "external": {"metricName": "bench-qps",
                     "metricSelector": {"matchLabels": {"app": name}}, "highWatermark": "100", "lowWatermark": "50"}}]}
    })
}

/// The name of pod `j` of Deployment `name`.
fn pod_name(name: &str, j: usize) -> String {
    format!("{name}-5d9c7b-{j}")
}

/// Deployment `app-i` (status: `pods` replicas), its `pods` ready pods (owned, by name, by a ReplicaSet of
/// it), and a WPA whose metric sits within the watermarks, so that the steady state is "nothing to do".
async fn create_one(client: Client, i: usize, pods: usize) -> Result<()> {
    let ns = namespace(i);
    let name = format!("app-{i}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": pods, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "a", "image": "registry.invalid/a"}]}}}
    }))?;
    deployments.create(&PostParams::default(), &d).await.context("creating a Deployment")?;
    deployments
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": pods, "readyReplicas": pods}})),
        )
        .await
        .context("setting a Deployment's status")?;
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    for j in 0..pods {
        let pod_name = pod_name(&name, j);
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": pod_name, "labels": {"app": name},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-5d9c7b"), "uid": "00000000-0000-0000-0000-000000000000"}]},
            "spec": {"automountServiceAccountToken": false, "containers": [{"name": "a", "image": "registry.invalid/a"}]}
        }))?;
        pod_api.create(&PostParams::default(), &p).await.context("creating a pod")?;
        let now = now_rfc3339();
        let status = json!({"status": {"phase": "Running", "startTime": now,
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
        pod_api
            .patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .context("marking a pod ready")?;
    }
    let wpas: Api<WatermarkPodAutoscaler> = Api::namespaced(client, &ns);
    let w: WatermarkPodAutoscaler = serde_json::from_value(wpa_json(&name, pods))?;
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
    /// How long the scrape took, from the request to the last byte.
    took: Duration,
}

fn scrape(serve: &WpaServe) -> Result<Scrape> {
    // Tens of MB at thousands of WPAs, encoded while the machine is busy with the round's passes.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], serve.health_port));
    let began = Instant::now();
    let (_, text) = devcluster::http_get_within(addr, "/metrics", Duration::from_secs(60))
        .context("scraping wpa's /metrics")?;
    let took = began.elapsed();
    Ok(Scrape {
        passes: counter_total(&text, "wpa_reconciles_total"),
        requests: counter_total(&text, "wpa_kube_client_requests_total"),
        by_method: METHODS
            .map(|m| counter_total(&text, &format!("wpa_kube_client_requests_total{{method=\"{m}\"}}"))),
        yields: counter_total(&text, "wpa_reconcile_yields_total"),
        pass_seconds: counter_total(&text, "wpa_reconcile_duration_seconds_sum"),
        bytes: text.len(),
        took,
    })
}

/// Whether the writes counted in `samples` (time, writes so far) stood still over the last `quiet`: the
/// newest sample against the newest one at least `quiet` older.
fn quiet_for(samples: &[(Duration, f64)], quiet: Duration) -> bool {
    let Some(&(now, writes)) = samples.last() else { return false };
    samples.iter().rev().find(|(t, _)| now.saturating_sub(*t) >= quiet).is_some_and(|&(_, w)| w == writes)
}

/// The first events of a round, per WPA, from one controller: when the first and the last WPA had theirs.
struct FirstEvents {
    first: jiff::Timestamp,
    last: jiff::Timestamp,
}

/// Watches events until each of the `n` WPAs has one from `controller` at or after `since` (each first pass
/// publishes one, after its status write). Resolves `listed` once the watch has listed (so that the round
/// starts on a watch already established, and no first event is missed).
async fn first_events(
    client: Client,
    n: usize,
    controller: &str,
    since: jiff::Timestamp,
    listed: tokio::sync::oneshot::Sender<()>,
) -> Result<FirstEvents> {
    use kube::runtime::watcher::Event as W;
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::all(client);
    let mut first: std::collections::HashMap<(String, String), jiff::Timestamp> = Default::default();
    let mut listed = Some(listed);
    let mut stream = std::pin::pin!(kube::runtime::watcher(api, kube::runtime::watcher::Config::default()));
    while let Some(e) = stream.try_next().await? {
        let e = match e {
            W::InitDone => {
                if let Some(l) = listed.take() {
                    let _ = l.send(());
                }
                continue;
            }
            W::Apply(e) | W::InitApply(e) => e,
            W::Init | W::Delete(_) => continue,
        };
        let (Some(r), Some(t)) = (e.regarding, e.event_time) else { continue };
        if e.reporting_controller.as_deref() != Some(controller) || t.0 < since {
            continue;
        }
        let at = first.entry((r.namespace.unwrap_or_default(), r.name.unwrap_or_default())).or_insert(t.0);
        *at = (*at).min(t.0);
        if first.len() == n {
            let (first, last) = (first.values().min(), first.values().max());
            return Ok(FirstEvents { first: *first.context("no WPA")?, last: *last.context("no WPA")? });
        }
    }
    bail!("the event watch ended")
}

/// Starts [`first_events`] and waits until its watch has listed.
async fn watch_first_events(
    client: &Client,
    n: usize,
    controller: &'static str,
) -> Result<tokio::task::JoinHandle<Result<FirstEvents>>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let since = jiff::Timestamp::now();
    let task = tokio::spawn(first_events(client.clone(), n, controller, since, tx));
    rx.await.context("the event watch ended before it listed")?;
    Ok(task)
}

/// Marks the baseline's WPAs in its finalizer patch (removed again before wpa starts).
const BASELINE_FINALIZER: &str = "bench.wpa.datadoghq.com/baseline";
/// The reporting controller of the baseline's events.
const BASELINE_CONTROLLER: &str = "bench";

/// The status and events of a WPA's first pass, decided by the engine from what the benchmark set up (`pods`
/// ready pods and replicas, the metric at 75): the baseline writes exactly what the pass will.
fn first_pass_writes(i: usize, pods: usize) -> Result<(json_patch::Patch, Vec<crate::engine::Event>)> {
    use crate::engine::{
        self, MetricObservation, MonitorObservation, Observation, ScaleResult,
        calc::{ExternalSample, ScaleInfo},
        pods::{ConditionStatus, OwnerKind, OwnerRef, PodInfo, PodPhase, ReadyCondition},
    };
    let (ns, name) = (namespace(i), format!("app-{i}"));
    let mut wpa: WatermarkPodAutoscaler = serde_json::from_value(wpa_json(&name, pods))?;
    wpa.metadata.namespace = Some(ns.clone());
    wpa.metadata.generation = Some(1);
    let now = jiff::Timestamp::now();
    let ready: Vec<PodInfo> = (0..pods)
        .map(|j| PodInfo {
            name: pod_name(&name, j),
            phase: PodPhase::Running,
            ready: Some(ReadyCondition { status: ConditionStatus::True, last_transition: Some(now) }),
            start_time: Some(now),
            deleting: false,
            owners: vec![OwnerRef { kind: OwnerKind::ReplicaSet, name: format!("{name}-5d9c7b") }],
        })
        .collect();
    let metrics =
        [MetricObservation::External(Ok(ExternalSample { values: vec![75_000], timestamp: Some(now) }))];
    let scale = ScaleInfo {
        name: name.clone(),
        namespace: ns,
        spec_replicas: i32::try_from(pods)?,
        status_replicas: i32::try_from(pods)?,
        selector: format!("app={name}"),
    };
    let obs = Observation {
        target: Ok(scale),
        pods: Ok(&ready),
        metrics: &metrics,
        recommendation: None,
        monitor: MonitorObservation::NotRequested,
        conflicts: &[],
    };
    let plan = engine::Plan::new(&wpa);
    let decision = engine::decide(&plan, &obs, now);
    let result = if decision.scale.is_some() { ScaleResult::Written } else { ScaleResult::NotNeeded };
    let outcome = decision.settle(&wpa, result);
    let expected = crate::reconciler::record::Expected::of(&wpa);
    Ok((crate::reconciler::record::status_patch(&expected, &outcome.status), outcome.events))
}

/// One round of the requests the WPAs' first passes make, by a bare client with the same concurrency and
/// the same bodies: the finalizer's JSON patch (with its `test`), the metric GET, the status the pass
/// records, and its events. With `writes` false, only the metric GETs (a steady pass). What the writes
/// change is undone by [`undo_round`].
async fn baseline_round(
    client: &Client,
    n: usize,
    pods: usize,
    concurrency: usize,
    writes: bool,
) -> Result<Duration> {
    let reporter = kube::runtime::events::Reporter {
        controller: BASELINE_CONTROLLER.into(),
        instance: Some(BASELINE_CONTROLLER.into()),
    };
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
                let (status, events) = first_pass_writes(i, pods)?;
                let w = wpas.patch_status(&name, &pp, &Patch::<()>::Json(status)).await.context("baseline status patch")?;
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

/// Takes a round's finalizer and status off the WPAs again, and its events (not timed), so that the next
/// round finds the WPAs as created and an event list of the same length.
async fn undo_round(client: &Client, n: usize, concurrency: usize, finalizer: &str) -> Result<()> {
    stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let (ns, name) = (namespace(i), format!("app-{i}"));
                let wpas: Api<WatermarkPodAutoscaler> = Api::namespaced(client, &ns);
                let pp = PatchParams::default();
                let remove: json_patch::Patch = serde_json::from_value(json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": [finalizer]},
                    {"op": "remove", "path": "/metadata/finalizers"},
                ]))?;
                wpas.patch(&name, &pp, &Patch::<()>::Json(remove))
                    .await
                    .context("removing the round's finalizer")?;
                wpas.patch_status(&name, &pp, &Patch::Merge(json!({"status": null})))
                    .await
                    .context("removing the round's status")?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    for i in 0..NAMESPACES.min(n) {
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &namespace(i));
        events
            .delete_collection(&Default::default(), &Default::default())
            .await
            .context("deleting the round's events")?;
    }
    Ok(())
}

/// What one round of wpa measured.
struct WpaRound {
    /// From the process's start to the last WPA's first event.
    secs: f64,
    /// Until /readyz (caches synced).
    ready: f64,
    /// From the process's start to the first WPA's first event.
    first_event: f64,
    /// CPU seconds of wpa, and of each other process measured, from wpa's start to the last first event.
    cpu: f64,
    others: Vec<f64>,
    scrape: Scrape,
    rss: f64,
}

/// Starts wpa and waits until every WPA has had its first pass; returns the process, still running.
async fn wpa_round(
    c: &ScalingCluster,
    exe: &std::path::Path,
    n: usize,
    concurrency: u16,
) -> Result<(WpaServe, WpaRound)> {
    let processes = measured(c);
    let first = watch_first_events(&c.cluster.client(), n, crate::reconciler::REPORTING_CONTROLLER).await?;
    let conc = concurrency.to_string();
    let cpu_start = cpu_of(&processes);
    let started = Instant::now();
    let wall_started = jiff::Timestamp::now();
    let serve = WpaServe::start_binary(
        exe,
        &c.cluster,
        "bench",
        None,
        &["--no-webhook", "--leader-elect=false", "--concurrency", &conc, "--log-format", "json"],
    )
    .await?;
    let pid = serve.pid();
    let ready = started.elapsed().as_secs_f64();
    let events = match tokio::time::timeout(Duration::from_secs(600), first).await {
        Ok(done) => done.context("the event watch")??,
        Err(_) => bail!("not every WPA was reconciled within 10 minutes"),
    };
    let cpu = cpu_seconds(pid).unwrap_or(0.0);
    let others = cpu_since(&processes, &cpu_start);
    let since = |t: jiff::Timestamp| t.duration_since(wall_started).as_secs_f64();
    let round = WpaRound {
        secs: since(events.last),
        ready,
        first_event: since(events.first),
        cpu,
        others,
        scrape: scrape(&serve)?,
        rss: super::admission::peak_rss_mib(pid).map_or(0.0, |(rss, _)| rss),
    };
    Ok((serve, round))
}

/// The processes whose CPU is reported: the control plane's, and this one (the bare client of the baseline,
/// the synthetic metrics provider and the event watch, in both rounds).
fn measured(c: &ScalingCluster) -> Vec<(&'static str, u32)> {
    let mut pids = c.cluster.pids();
    pids.push(("this benchmark (client, metrics provider, event watch)", std::process::id()));
    pids
}

/// CPU seconds of each process so far.
fn cpu_of(pids: &[(&str, u32)]) -> Vec<f64> {
    pids.iter().map(|(_, p)| cpu_seconds(*p).unwrap_or(0.0)).collect()
}

/// CPU seconds of each process since `start` (a [`cpu_of`] of the same processes).
fn cpu_since(pids: &[(&str, u32)], start: &[f64]) -> Vec<f64> {
    cpu_of(pids).iter().zip(start).map(|(now, then)| now - then).collect()
}

/// A watch whose events are decoded and dropped, until `stop`; the receiver resolves once it has listed.
fn watch_and_drop<K>(
    api: Api<K>,
    config: kube::runtime::watcher::Config,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::sync::oneshot::Receiver<()>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let listed = std::sync::Mutex::new(Some(tx));
    crate::state::watch::drive("baseline", kube::runtime::watcher(api, config), stop, move |e| {
        if let kube::runtime::watcher::Event::InitDone = e
            && let Some(l) = listed.lock().unwrap_or_else(|p| p.into_inner()).take()
        {
            let _ = l.send(());
        }
    });
    rx
}

/// The lists and watches `wpa serve --no-webhook` opens at start, with the same options: its WPA feed, the
/// HPAs of its index, its pod and target caches. Resolves once all have listed.
async fn open_wpas_watches(client: &Client, stop: &tokio_util::sync::CancellationToken) -> Result<()> {
    use k8s_openapi::api::{apps::v1::StatefulSet, autoscaling::v1::HorizontalPodAutoscaler};
    use kube::runtime::watcher::Config;
    let cached = || Config::default().any_semantic();
    let listed = [
        watch_and_drop(Api::<WatermarkPodAutoscaler>::all(client.clone()), cached(), stop.clone()),
        watch_and_drop(Api::<HorizontalPodAutoscaler>::all(client.clone()), Config::default(), stop.clone()),
        watch_and_drop(Api::<Pod>::all(client.clone()), cached(), stop.clone()),
        watch_and_drop(Api::<Deployment>::all(client.clone()), cached(), stop.clone()),
        watch_and_drop(Api::<StatefulSet>::all(client.clone()), cached(), stop.clone()),
    ];
    for l in listed {
        l.await.context("a watch ended before it listed")?;
    }
    Ok(())
}

/// What the baseline's round measured.
struct BaselineRound {
    /// From its first list to its last request.
    secs: f64,
    /// Until its lists were in.
    lists: f64,
    /// CPU seconds of each process measured.
    cpu: Vec<f64>,
}

/// The baseline's requests, timed: the lists and watches wpa opens, then the first passes' requests, with the
/// same event watch open as during wpa's round (the load of every watch on the API server is then the same
/// in both).
async fn baseline_writes(
    c: &ScalingCluster,
    n: usize,
    pods: usize,
    concurrency: usize,
) -> Result<BaselineRound> {
    let client = c.cluster.client();
    let processes = measured(c);
    let watch = watch_first_events(&client, n, BASELINE_CONTROLLER).await?;
    let cpu_start = cpu_of(&processes);
    let stop = tokio_util::sync::CancellationToken::new();
    let begin = Instant::now();
    open_wpas_watches(&client, &stop).await?;
    let lists = begin.elapsed().as_secs_f64();
    baseline_round(&client, n, pods, concurrency, true).await?;
    let secs = begin.elapsed().as_secs_f64();
    let cpu = cpu_since(&processes, &cpu_start);
    stop.cancel();
    watch.await.context("the event watch")??;
    Ok(BaselineRound { secs, lists, cpu })
}

/// The median of `v` (the upper one of an even count).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// What the benchmark sets up and starts.
pub(crate) struct Setup {
    pub(crate) wpas: usize,
    /// Ready pods of each WPA's Deployment.
    pub(crate) pods_per_wpa: usize,
    /// `wpa serve --concurrency`.
    pub(crate) concurrency: u16,
    /// The program started as `wpa serve`, if not this binary.
    pub(crate) serve_binary: Option<std::path::PathBuf>,
}

/// Runs the benchmark of `setup` over `rounds` rounds; `steady` is how long the steady state is measured.
pub(crate) async fn run(
    setup: Setup,
    rounds: usize,
    steady: Duration,
    bin_dir: std::path::PathBuf,
) -> Result<String> {
    let Setup { wpas: n, pods_per_wpa: pods, concurrency, serve_binary } = setup;
    let exe = match serve_binary {
        Some(exe) => exe,
        None => std::env::current_exe().context("locating the wpa binary")?,
    };
    let rounds = rounds.max(1);
    let mut report = String::new();
    note!("[bench] starting a control plane (etcd, kube-apiserver) and the synthetic metrics provider");
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
        .map(|i| create_one(client.clone(), i, pods))
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    note!(
        "[bench] created {n} Deployments, {} pods and {n} WPAs in {:.1} s",
        n * pods,
        begin.elapsed().as_secs_f64()
    );

    let concurrency_n = usize::from(concurrency);
    let reads = baseline_round(&client, n, pods, concurrency_n, false).await?;
    // The host's load comes in bursts longer than a round, and etcd grows over the run: each round runs
    // both, the order alternating so that the last round ends with wpa (whose steady state follows).
    let mut pairs: Vec<(WpaRound, BaselineRound)> = Vec::new();
    let mut serve = None;
    for k in 0..rounds {
        let baseline_first = (rounds - 1 - k).is_multiple_of(2);
        let mut baseline = None;
        if baseline_first {
            baseline = Some(baseline_writes(&c, n, pods, concurrency_n).await?);
            undo_round(&client, n, concurrency_n, BASELINE_FINALIZER).await?;
        }
        let (mut running, round) = wpa_round(&c, &exe, n, concurrency).await?;
        note!("[bench] round {}: wpa {:.2} s (first event at {:.2} s)", k + 1, round.secs, round.first_event);
        if k + 1 < rounds {
            running.terminate();
            undo_round(&client, n, concurrency_n, crate::api::FINALIZER).await?;
        } else {
            serve = Some(running);
        }
        let baseline = match baseline {
            Some(b) => b,
            None => {
                let b = baseline_writes(&c, n, pods, concurrency_n).await?;
                undo_round(&client, n, concurrency_n, BASELINE_FINALIZER).await?;
                b
            }
        };
        note!(
            "[bench] round {}: baseline {:.2} s, ratio {:.2}x",
            k + 1,
            baseline.secs,
            round.secs / baseline.secs
        );
        pairs.push((round, baseline));
    }
    let serve = serve.context("no round ran")?;
    let pid = serve.pid();
    let ratios: Vec<f64> = pairs.iter().map(|(w, b)| w.secs / b.secs).collect();
    let (last, last_baseline) = pairs.last().context("no round ran")?;

    // The passes after the first record the windows it opened and then their closing (real status
    // changes); the steady state is measured once they are over. The provider notes when each WPA's metric
    // is read from now on: once per pass, so the intervals say whether every WPA is passed on time.
    c.metrics.record_requests();
    let first_wait = Duration::from_secs(WINDOW_SECONDS + 20);
    tokio::time::sleep(first_wait).await;
    let on_time_from = Instant::now();
    // At thousands of WPAs a cycle over them can outlast the period, and those writes are still being made:
    // wait until the status writes (PATCH, POST) stand still for longer than a period.
    let mut samples = Vec::new();
    let settled = loop {
        let s = scrape(&serve)?;
        samples.push((on_time_from.elapsed(), s.by_method[1] + s.by_method[2]));
        if quiet_for(&samples, QUIET) {
            break true;
        }
        if on_time_from.elapsed() >= SETTLE_LIMIT {
            break false;
        }
        tokio::time::sleep(SETTLE_POLL).await;
    };
    let settling = on_time_from.elapsed();
    let s0 = scrape(&serve)?;
    let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
    let t0 = Instant::now();
    tokio::time::sleep(steady).await;
    let s1 = scrape(&serve)?;
    let cpu1 = cpu_seconds(pid).unwrap_or(0.0);
    let elapsed = t0.elapsed().as_secs_f64();
    let gaps = c
        .metrics
        .longest_gaps(on_time_from, (0..n).map(|i| format!("{}?app=app-{i}", namespace(i))))
        .context("the provider was not recording")?;
    let (rss, hwm) = super::admission::peak_rss_mib(pid).unwrap_or((0.0, 0.0));
    let passes = s1.passes - s0.passes;
    let calls = s1.requests - s0.requests;
    let pass_ms = if passes > 0.0 { (s1.pass_seconds - s0.pass_seconds) * 1000.0 / passes } else { f64::NAN };
    let per_pass = if passes > 0.0 { calls / passes } else { f64::NAN };
    let steady_methods: Vec<String> = METHODS
        .iter()
        .zip(s1.by_method.iter().zip(s0.by_method))
        .map(|(m, (a, b))| format!("{:.0} {m}", a - b))
        .collect();
    let processes = measured(&c);
    let cp_text = |cpu: &[f64], secs: f64| -> String {
        let parts: Vec<String> = processes
            .iter()
            .zip(cpu)
            .map(|((name, _), cpu)| format!("{name} {:.0} %", cpu * 100.0 / secs))
            .collect();
        parts.join(", ")
    };
    let methods: Vec<String> = METHODS
        .iter()
        .zip(last.scrape.by_method)
        .map(|(m, k)| format!("{k:.0} {m} ({:.2} per WPA)", k / n as f64))
        .collect();

    let _ = writeln!(
        report,
        "reconciler benchmark: {n} WPAs (one Deployment, {pods} ready pod(s) and one External metric each), sync period 15 s, concurrency {concurrency}"
    );
    let _ = writeln!(
        report,
        "  first round: every WPA reconciled once, from wpa's start (its cache sync included) to the last WPA's first event; baseline: a bare client making the same requests: the lists and watches wpa opens (WPAs, HPAs, pods, Deployments, StatefulSets), then those of the {n} first passes (finalizer JSON patch, metric GET, the same WPA status, the same events); {rounds} rounds of both, in alternating order, each with the same event watch open"
    );
    // The CPU seconds all processes spent on a round, wpa's against the baseline's: the work each round
    // cost. Where it moves with the time ratio, a round that came out high was slowed as a whole (the host's
    // load inflates CPU time too), not given more work.
    let work: Vec<f64> = pairs
        .iter()
        .map(|(w, b)| (w.cpu + w.others.iter().sum::<f64>()) / b.cpu.iter().sum::<f64>())
        .collect();
    for (k, ((w, b), (ratio, work))) in pairs.iter().zip(ratios.iter().zip(&work)).enumerate() {
        let _ = writeln!(
            report,
            "  round {}: wpa {:.2} s (ready after {:.2} s, first event at {:.2} s), baseline {:.2} s (lists in after {:.2} s): {ratio:.2}x; CPU seconds of all processes {work:.2}x the baseline's",
            k + 1,
            w.secs,
            w.ready,
            w.first_event,
            b.secs,
            b.lists
        );
    }
    let wpa_secs: Vec<f64> = pairs.iter().map(|(w, _)| w.secs).collect();
    let baseline_secs: Vec<f64> = pairs.iter().map(|(_, b)| b.secs).collect();
    let _ = writeln!(
        report,
        "  first round / baseline = {:.2}x (median of the rounds' ratios; medians: wpa {:.2} s, baseline {:.2} s, {:.0} WPAs/s); target: within one 15 s period",
        median(&ratios),
        median(&wpa_secs),
        median(&baseline_secs),
        n as f64 / median(&wpa_secs)
    );
    let _ = writeln!(
        report,
        "  last round, CPU from wpa's start to the last first event (% of one core): wpa {:.0} % ({:.2} ms per WPA); {}",
        last.cpu * 100.0 / last.secs,
        last.cpu * 1000.0 / n as f64,
        cp_text(&last.others, last.secs)
    );
    let _ = writeln!(
        report,
        "  CPU seconds of all processes, wpa's round / the baseline's: {:.2}x (median)",
        median(&work)
    );
    let _ = writeln!(
        report,
        "  last round, API requests: {:.0} = {} ; {:.0} passes in all; {:.0} periodic passes put off (yields) for WPAs not yet reconciled",
        last.scrape.requests,
        methods.join(", "),
        last.scrape.passes,
        last.scrape.yields
    );
    let _ = writeln!(
        report,
        "  last round, CPU during the baseline's requests (% of one core): {}",
        cp_text(&last_baseline.cpu, last_baseline.secs)
    );
    let opened = if settled {
        format!("once no status had been written for {} s", QUIET.as_secs())
    } else {
        format!(
            "with status writes still being made (they did not stand still for {} s within {} s)",
            QUIET.as_secs(),
            SETTLE_LIMIT.as_secs()
        )
    };
    let _ = writeln!(
        report,
        "  steady state over {elapsed:.0} s (windows closed, metric within the watermarks), from {:.0} s after the first round, {opened}: {passes:.0} passes ({:.0}/s), {calls:.0} API requests = {per_pass:.2} per pass ({}); target ≤ 1",
        (first_wait + settling).as_secs_f64(),
        passes / elapsed,
        steady_methods.join(", ")
    );
    let _ = writeln!(
        report,
        "  CPU in steady state: {:.1} % of one core ({:.3} ms per pass); mean pass {:.1} ms (a bare client's metric GET: {:.1} ms at the same concurrency)",
        (cpu1 - cpu0) * 100.0 / elapsed,
        if passes > 0.0 { (cpu1 - cpu0) * 1000.0 / passes } else { f64::NAN },
        pass_ms,
        reads.as_secs_f64() * 1000.0 * f64::from(concurrency) / n as f64
    );
    let late = gaps.over(PERIOD.mul_f64(1.1));
    let _ = writeln!(
        report,
        "  passes on time (each WPA's metric read at most 16.5 s apart, over the steady state and the {:.0} s before it): {} of {n} WPAs{}; longest interval per WPA: median {:.1} s, p99 {:.1} s, max {:.1} s",
        settling.as_secs_f64(),
        n - late,
        if late == 0 { String::new() } else { format!(" ({late} late)") },
        gaps.quantile(0.5).as_secs_f64(),
        gaps.quantile(0.99).as_secs_f64(),
        gaps.quantile(1.0).as_secs_f64()
    );
    let _ = writeln!(
        report,
        "  memory: {:.1} MiB resident after the first round, {rss:.1} MiB at the end, {hwm:.1} MiB peak ({:.1} KiB per WPA); target at 20,000 WPAs ≤ 400 MiB",
        last.rss,
        hwm * 1024.0 / n as f64
    );
    let _ = writeln!(
        report,
        "  /metrics exposition: {:.1} MiB; scrapes took {:.2} s and {:.2} s in steady state, {:.2} s at the end of the first round (Prometheus's default timeout: 10 s)",
        s1.bytes as f64 / 1048576.0,
        s0.took.as_secs_f64(),
        s1.took.as_secs_f64(),
        last.scrape.took.as_secs_f64()
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
        assert_eq!(counter_total(text, "wpa_kube_client_requests_total"), 0.0);
    }

    #[test]
    fn writes_are_quiet_only_when_unchanged_over_the_whole_interval() {
        let secs = Duration::from_secs;
        let quiet = secs(20);
        // Too short a history to say.
        assert!(!quiet_for(&[(secs(0), 5.0), (secs(10), 5.0)], quiet));
        assert!(quiet_for(&[(secs(0), 5.0), (secs(10), 5.0), (secs(20), 5.0)], quiet));
        // A write within the interval.
        assert!(!quiet_for(&[(secs(0), 5.0), (secs(10), 6.0), (secs(20), 6.0)], quiet));
        assert!(quiet_for(&[(secs(0), 5.0), (secs(10), 6.0), (secs(20), 6.0), (secs(30), 6.0)], quiet));
        assert!(!quiet_for(&[], quiet));
    }

    #[test]
    fn median_of_rounds() {
        assert_eq!(median(&[1.3, 1.1, 1.2]), 1.2);
        assert_eq!(median(&[1.0]), 1.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn reads_this_process_cpu() {
        assert!(cpu_seconds(std::process::id()).is_some());
    }
}
