//! The reconciler against a real control plane: a Deployment whose pods the harness marks ready, WPAs on
//! it, and an external metric served by a synthetic provider that the API server reaches through its
//! aggregator (an APIService routed into a network namespace), as a real cluster serves the Datadog
//! Cluster Agent's or KEDA's metrics.
//!
//! One scaling cluster for the binary and a namespace per test, with a `wpa serve` of its own that watches
//! only that namespace and keeps its leader Lease there. The provider's values are per metric name, so each
//! test's metric has a name of its own. The API server restart test has a cluster of its own.

mod support;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use devcluster::synthetic_metrics::Answer;
use support::{ScalingCluster, Shared, StartWpa, TestNamespace, WpaServe, wpa_yaml};

static CLUSTER: Shared<ScalingCluster> = Shared::new();

async fn cluster() -> Arc<ScalingCluster> {
    CLUSTER.get(ScalingCluster::start).await
}

/// `wpa serve` running the reconciler only for namespace `ns` (its Lease there too), passing over each WPA
/// every second.
async fn reconciler(c: &ScalingCluster, ns: &str, name: &str, extra: &[&str]) -> WpaServe {
    let mut args = vec!["--no-webhook", "--sync-period", "1s", "--namespace", ns, "--lease-namespace", ns];
    args.extend_from_slice(extra);
    WpaServe::start(&c.cluster, &format!("{ns}-{name}"), None, &args).await.expect("start wpa serve")
}

const SECOND: Duration = Duration::from_secs(1);

/// Asserts that spec.replicas stays `want` for `period`.
async fn holds(c: &ScalingCluster, ns: &str, name: &str, want: i32, period: Duration) {
    let begin = Instant::now();
    while begin.elapsed() < period {
        let (spec, _) = c.scale(ns, name).await.expect("read the scale");
        assert_eq!(spec, want, "spec.replicas moved after {:?}", begin.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the WPA's status satisfies `check`, and returns it.
async fn wait_status(
    c: &ScalingCluster,
    ns: &str,
    name: &str,
    timeout: Duration,
    check: impl Fn(&wpa::api::WatermarkPodAutoscalerStatus) -> bool,
) -> wpa::api::WatermarkPodAutoscalerStatus {
    support::wait_for(timeout, || async {
        let st = c.wpa_status(ns, name).await.map_err(|e| e.to_string())?;
        if check(&st) { Ok(st) } else { Err(format!("{st:?}")) }
    })
    .await
    .unwrap_or_else(|e| panic!("the status of {ns}/{name}: {e}"))
}

/// The reasons of the namespace's events, as (object, reason).
async fn event_reasons(c: &ScalingCluster, ns: &str) -> Vec<(String, String)> {
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(c.cluster.client(), ns);
    let list = events.list(&Default::default()).await.expect("list events");
    list.items
        .iter()
        .map(|e| {
            let who = e.regarding.as_ref().and_then(|r| r.name.clone()).unwrap_or_default();
            (who, e.reason.clone().unwrap_or_default())
        })
        .collect()
}

/// Waits (10 s) for an event of `reason` about `name`: a pass posts its events after its `/scale` write.
async fn wait_event(c: &ScalingCluster, ns: &str, name: &str, reason: &str) {
    support::wait_for(10 * SECOND, || async {
        let reasons = event_reasons(c, ns).await;
        if reasons.contains(&(name.into(), reason.into())) { Ok(()) } else { Err(format!("{reasons:?}")) }
    })
    .await
    .unwrap_or_else(|e| panic!("no {reason} event about {name}: {e}"));
}

/// `wpa explain -n NS NAME` on the cluster: its stdout.
fn explain(c: &ScalingCluster, ns: &str, name: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wpa"))
        .args(["explain", "-n", ns, name, "--kubeconfig"])
        .arg(c.cluster.kubeconfig_path())
        .output()
        .expect("run wpa explain");
    let trace = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{trace}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    trace
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downscale_rounds_down_and_is_recorded_in_the_status_and_printer_columns() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    c.deployment(&ns, "web", 3).await.expect("deployment");
    // 70 is within [45, 110]: nothing moves.
    c.metrics.set("floor-requests", 70.0);
    let extra =
        "  scaleDownLimitFactor: \"99\"\n  downscaleForbiddenWindowSeconds: 4\n  tolerance: \"100m\"\n";
    // minReplicas 2 keeps the count at 2 once there (at 2 replicas, 35 asks for 1).
    let text = wpa_yaml(&ns, "web", "web", "floor-requests", "100", "50", extra)
        .replace("  minReplicas: 1\n", "  minReplicas: 2\n");
    c.apply_wpa(&text).await.expect("apply the WPA");
    let serve = reconciler(&c, &ns, "a", &["--leader-elect=false"]).await;
    // The first pass records itself as a scale to the same count.
    let first = wait_status(&c, &ns, "web", 30 * SECOND, |st| st.last_scale_time.is_some()).await;
    holds(&c, &ns, "web", 3, 5 * SECOND).await;

    // 35 is below: floor(3 × 35 / 50) = floor(2.1) = 2 (a ceiling would keep 3).
    c.metrics.set("floor-requests", 35.0);
    c.wait_scale(&ns, "web", 2, 30 * SECOND).await.expect("a floor-rounded downscale");
    // The status is written right after the scale.
    let st = wait_status(&c, &ns, "web", 10 * SECOND, |st| {
        st.scaling_events_count == first.scaling_events_count + 1
    })
    .await;
    let metric = st.current_metrics[0].external.as_ref().expect("an External metric status");
    assert_eq!(metric.current_value.milli(), 35_000);
    assert_eq!(st.desired_replicas, 2);
    assert!(st.last_scale_time > first.last_scale_time);
    // What the API server's printer columns show.
    let out = c.cluster.kubectl(&["get", "wpa", "-n", &ns, "web", "--no-headers"]);
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("kubectl get wpa: {line}");
    assert!(line.contains("True") && line.contains("35"), "printer columns: {line}");
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upscale_is_limited_by_the_factor_and_waits_out_the_upscale_window() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    c.deployment(&ns, "web", 2).await.expect("deployment");
    c.metrics.set("window-requests", 40.0);
    let extra = "  scaleUpLimitFactor: \"50\"\n  scaleDownLimitFactor: \"99\"\n  upscaleForbiddenWindowSeconds: 15\n  downscaleForbiddenWindowSeconds: 4\n  tolerance: \"100m\"\n";
    c.apply_wpa(&wpa_yaml(&ns, "web", "web", "window-requests", "100", "50", extra))
        .await
        .expect("apply the WPA");
    let serve = reconciler(&c, &ns, "a", &["--leader-elect=false"]).await;

    // A scale opens the upscale window: 40 is below the low watermark (50 × 0.9 = 45): floor(2 × 40 / 50) = 1,
    // within the down limit.
    c.wait_scale(&ns, "web", 1, 30 * SECOND).await.expect("a first downscale to 1");
    let st = wait_status(&c, &ns, "web", 10 * SECOND, |st| st.scaling_events_count == 1).await;
    assert_eq!(st.desired_replicas, 1);
    assert!(st.last_scale_time.is_some());
    c.wait_ready_pods(&ns, "web", 1, 30 * SECOND).await.unwrap();

    // Far above the high watermark: ceil(1 × 600 / 100) = 6 proposed, but the limit (+50 %, at least +1)
    // allows 2, and only after the downscale's upscale window (15 s) has passed.
    c.metrics.set("window-requests", 600.0);
    let msg = c
        .wait_condition(&ns, "web", "AbleToScale", "False", "BackoffUpscale", 20 * SECOND)
        .await
        .expect("the upscale window holds the scale back");
    assert_eq!(msg, "the time since the previous scale is still within the upscale forbidden window");
    let crossed = Instant::now();
    c.wait_scale(&ns, "web", 2, 30 * SECOND).await.expect("an upscale to 2");
    let limited = c.wpa_status(&ns, "web").await.unwrap();
    let lim = limited.conditions.iter().find(|c| c.type_ == "ScalingLimited").expect("ScalingLimited");
    assert_eq!((lim.status.as_str(), lim.reason.as_deref()), ("True", Some("ScaleUpLimit")));
    eprintln!("upscale to 2 {:?} after the metric crossed", crossed.elapsed());

    // No further rise inside the upscale window, although the metric still asks for 12.
    holds(&c, &ns, "web", 2, 10 * SECOND).await;
    // Then +1 (50 % of 2).
    c.wait_scale(&ns, "web", 3, 20 * SECOND).await.expect("an upscale to 3 after the window");
    drop(serve);
}

/// The value of the series `name` whose labels include every pair of `labels`, in Prometheus text.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        let ok = n == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        if ok { value.parse().ok() } else { None }
    })
}

/// Passes a `wpa serve` has completed.
fn passes(serve: &WpaServe) -> f64 {
    sample(&metrics_text(serve), "wpa_reconciles_total", &[("result", "ok")]).unwrap_or(0.0)
}

/// Waits until `serve` has counted a pass: a pass is counted once its status is written, a moment after the
/// scale a test sees.
async fn wait_counted(serve: &WpaServe) {
    support::wait_for(10 * SECOND, || async {
        if passes(serve) > 0.0 { Ok(()) } else { Err("no pass counted yet".to_string()) }
    })
    .await
    .expect("a counted pass");
}

fn metrics_text(serve: &WpaServe) -> String {
    support::http_get(serve.health_port, "/metrics").expect("GET /metrics").1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_above_the_watermark_is_obeyed_and_explained() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    c.deployment(&ns, "slow", 1).await.expect("deployment");
    c.metrics.set("slow-qps", 60.0);
    let slow = "  upscaleForbiddenWindowSeconds: 1\n  upscaleDelayAboveWatermarkSeconds: 8\n";
    c.apply_wpa(&wpa_yaml(&ns, "slow", "slow", "slow-qps", "100", "50", slow)).await.unwrap();
    let serve = reconciler(&c, &ns, "a", &["--leader-elect=false"]).await;

    // Within the band: the first pass "scales" to the same count (no lastScaleTime yet), nothing moves.
    c.wait_condition(&ns, "slow", "AboveHighWatermark", "False", "Value above High Watermark", 30 * SECOND)
        .await
        .expect("the first pass");
    c.metrics.set("slow-qps", 300.0);
    let crossed = Instant::now();
    c.wait_condition(&ns, "slow", "AboveHighWatermark", "True", "Value above High Watermark", 10 * SECOND)
        .await
        .expect("the metric is seen above");
    // `wpa explain` says why nothing happens yet, with the time left.
    let trace = explain(&c, &ns, "slow");
    for expected in [
        format!("WatermarkPodAutoscaler {ns}/slow"),
        "spec.replicas 1".into(),
        "1 selected, 1 ready".into(),
        "slow-qps{map[app:slow]} (External): value 300 in total (1 ready pods)".into(),
        "low 50 (with tolerance 45), high 100 (with tolerance 110): above → proposal 3".into(),
        "→ 2 (ScaleUpLimit)".into(),
        "Delays: above the high watermark 8s".into(),
        "Decision: stays at 1: Will not scale: value has not been out of bounds for long enough (above the high watermark for".into(),
        "AboveHighWatermark".into(),
    ] {
        assert!(trace.contains(&expected), "explain lacks {expected:?}:\n{trace}");
    }
    // 8 s above before an upscale; the pass period is 1 s, so allow a pass of slack on the early side.
    holds(&c, &ns, "slow", 1, Duration::from_secs(7).saturating_sub(crossed.elapsed())).await;
    c.wait_scale(&ns, "slow", 2, 20 * SECOND).await.expect("the upscale after the delay");
    let waited = crossed.elapsed();
    eprintln!("upscale {waited:?} after the metric went above");
    assert!(waited >= Duration::from_secs(7), "scaled after {waited:?}, before the 8 s delay");
    // Back within the band (for 2 or 3 replicas) so that the count settles.
    c.metrics.set("slow-qps", 80.0);

    // The series of a real scale, and its Scaling event. The pass that scaled posts its events and records
    // its series after the /scale write the wait saw: wait until the series have caught up with the count.
    let (slow_replicas, text) = support::wait_for(10 * SECOND, || async {
        let (replicas, _) = c.scale(&ns, "slow").await.map_err(|e| e.to_string())?;
        let text = metrics_text(&serve);
        let series = |name: &str| sample(&text, name, &[("wpa_name", "slow")]);
        let counted = series("wpa_controller_upscale_replicas_total") == Some(f64::from(replicas - 1))
            && series("wpa_controller_replicas_scaling_effective") == Some(f64::from(replicas));
        if counted {
            Ok((replicas, text))
        } else {
            Err(format!("{replicas} replicas, not yet counted:\n{text}"))
        }
    })
    .await
    .expect(
        "the upscale counted: upscale_replicas_total = replicas - 1, replicas_scaling_effective = replicas",
    );
    eprintln!("counted at {slow_replicas} replicas");
    assert_eq!(sample(&text, "wpa_controller_dry_run", &[("wpa_name", "slow")]), Some(0.0));
    assert_eq!(
        sample(&text, "wpa_controller_high_watermak", &[("wpa_name", "slow"), ("metric_name", "slow-qps")]),
        Some(100_000.0),
        "upstream's misspelled twin is exported:\n{text}"
    );
    wait_event(&c, &ns, "slow", "Scaling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_records_the_decision_in_the_status_and_never_scales() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    c.deployment(&ns, "dry", 2).await.expect("deployment");
    c.metrics.set("dry-qps", 500.0);
    let dry = "  upscaleForbiddenWindowSeconds: 1\n  dryRun: true\n";
    c.apply_wpa(&wpa_yaml(&ns, "dry", "dry", "dry-qps", "100", "50", dry)).await.unwrap();
    let serve = reconciler(&c, &ns, "a", &["--leader-elect=false"]).await;

    // The decision (2 → 3, the +50 % limit) is recorded; /scale never changes.
    let st = wait_status(&c, &ns, "dry", 20 * SECOND, |st| {
        st.desired_replicas == 3 && st.last_scale_time.is_some()
    })
    .await;
    let dry_run = st.conditions.iter().find(|c| c.type_ == "DryRun").expect("DryRun condition");
    assert_eq!((dry_run.status.as_str(), dry_run.reason.as_deref()), ("True", Some("DryRun mode enabled")));
    holds(&c, &ns, "dry", 2, 5 * SECOND).await;
    let text = metrics_text(&serve);
    assert_eq!(sample(&text, "wpa_controller_dry_run", &[("wpa_name", "dry")]), Some(1.0));
    assert_eq!(sample(&text, "wpa_controller_upscale_replicas_total", &[("wpa_name", "dry")]), None);
    // A DryRunScaling event, never a Scaling one.
    let reasons = event_reasons(&c, &ns).await;
    assert!(reasons.contains(&("dry".into(), "DryRunScaling".into())), "{reasons:?}");
    assert!(!reasons.contains(&("dry".into(), "Scaling".into())), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unready_pods_block_scaling_until_they_are_ready() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    c.deployment(&ns, "api", 4).await.expect("deployment");
    // Two of four pods fail their readiness probe: 50 % ready, under the 60 % the WPA requires.
    c.kubelet().pause(&ns).await;
    c.make_pods_unready(&ns, "api", 2).await.expect("make pods unready");
    c.metrics.set("gate-qps", 200.0);
    let extra = "  minReplicas: 2\n  maxReplicas: 6\n  minAvailableReplicaPercentage: 60\n  upscaleForbiddenWindowSeconds: 1\n  downscaleForbiddenWindowSeconds: 1\n";
    let text = wpa_yaml(&ns, "api", "api", "gate-qps", "100", "50", extra)
        .replace("  minReplicas: 1\n  maxReplicas: 10\n", "");
    c.apply_wpa(&text).await.unwrap();
    let serve = reconciler(&c, &ns, "a", &["--leader-elect=false"]).await;
    let msg = c
        .wait_condition(&ns, "api", "ScalingActive", "False", "FailedGetExternalMetric", 30 * SECOND)
        .await
        .expect("scaling is blocked");
    assert!(msg.contains(&format!("50 % of the pods are unready, will not autoscale {ns}/api")), "{msg}");
    holds(&c, &ns, "api", 4, 4 * SECOND).await;

    // Ready again: ceil(4 × 200 / 100) = 8, limited to +50 % = 6, which is also the maximum.
    c.kubelet().serve(&ns);
    c.wait_scale(&ns, "api", 6, 30 * SECOND).await.expect("the upscale once pods are ready");
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_scale_outside_the_bounds_is_corrected_and_zero_is_left_alone() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    c.deployment(&ns, "api", 4).await.expect("deployment");
    // 70 is within the band: only the bounds move the count.
    c.metrics.set("bounds-qps", 70.0);
    let extra = "  minReplicas: 2\n  maxReplicas: 6\n  upscaleForbiddenWindowSeconds: 1\n  downscaleForbiddenWindowSeconds: 1\n";
    let text = wpa_yaml(&ns, "api", "api", "bounds-qps", "100", "50", extra)
        .replace("  minReplicas: 1\n  maxReplicas: 10\n", "");
    c.apply_wpa(&text).await.unwrap();
    let serve = reconciler(&c, &ns, "a", &["--leader-elect=false"]).await;
    wait_status(&c, &ns, "api", 30 * SECOND, |st| st.observed_generation.is_some()).await;

    // A user scales past the maximum: corrected at once, windows notwithstanding.
    c.set_scale(&ns, "api", 9).await.unwrap();
    c.wait_scale(&ns, "api", 6, 15 * SECOND).await.expect("corrected to the maximum");
    // Below the minimum.
    c.set_scale(&ns, "api", 1).await.unwrap();
    c.wait_scale(&ns, "api", 2, 15 * SECOND).await.expect("corrected to the minimum");
    // At 0 the WPA stands aside, as the HPA does: it never scales a workload back up from zero. (Upstream
    // reports ScalingDisabled only while pods remain; once they are gone the metric pass already fails on
    // "no pods", and that is the condition shown.)
    c.set_scale(&ns, "api", 0).await.unwrap();
    c.wait_condition(&ns, "api", "ScalingActive", "False", "FailedGetExternalMetric", 15 * SECOND)
        .await
        .expect("a condition says why nothing happens");
    holds(&c, &ns, "api", 0, 4 * SECOND).await;
    drop(serve);
}

/// A WPA `jobs` on 3 pods whose metric `metric` answers `first`, with logs-attributes, and the reconciler
/// (JSON logs, metrics older than 2 minutes refused).
async fn failing_metric(c: &ScalingCluster, ns: &str, metric: &str, first: Answer) -> WpaServe {
    c.deployment(ns, "jobs", 3).await.expect("deployment");
    let extra = "  upscaleForbiddenWindowSeconds: 1\n  downscaleForbiddenWindowSeconds: 1\n";
    let text = wpa_yaml(ns, "jobs", "jobs", metric, "100", "50", extra).replacen(
        &format!("  namespace: {ns}\n"),
        &format!("  namespace: {ns}\n  annotations:\n    wpa.datadoghq.com/logs-attributes: '{{\"team\":\"payments\"}}'\n"),
        1,
    );
    c.metrics.answer(metric, first);
    c.apply_wpa(&text).await.unwrap();
    reconciler(c, ns, "a", &["--leader-elect=false", "--metric-max-age", "2m", "--log-format", "json"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_errors_block_scaling_and_never_fall_back_to_the_minimum() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    let _serve = failing_metric(&c, &ns, "queue", Answer::Error(503)).await;
    let cases: [(Answer, &str); 4] = [
        (Answer::Error(503), "unable to fetch metrics from external metrics API"),
        (Answer::Raw(serde_json::json!("NaN")), "invalid value \"NaN\""),
        (Answer::Raw(serde_json::json!("-5")), "cannot be negative"),
        (Answer::Stale { value: "10".into(), age_seconds: 600 }, "more than --metric-max-age (120s) ago"),
    ];
    for (answer, expected) in cases {
        c.metrics.answer("queue", answer.clone());
        let found = support::wait_for(20 * SECOND, || async {
            let st = c.wpa_status(&ns, "jobs").await.map_err(|e| e.to_string())?;
            let active =
                st.conditions.iter().find(|c| c.type_ == "ScalingActive").ok_or("no ScalingActive")?;
            let msg = active.message.clone().unwrap_or_default();
            if active.status == "False"
                && active.reason.as_deref() == Some("FailedGetExternalMetric")
                && msg.contains(expected)
            {
                Ok(msg)
            } else {
                Err(format!("{active:?}"))
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{answer:?} blocks scaling: {e}"));
        eprintln!("{answer:?}: {found}");
        holds(&c, &ns, "jobs", 3, 3 * SECOND).await;
    }
    // One Warning event for the failing state, not one per pass.
    let warnings = event_reasons(&c, &ns)
        .await
        .into_iter()
        .filter(|(_, reason)| reason == "FailedGetExternalMetric")
        .count();
    assert!(
        (4..=6).contains(&warnings),
        "{warnings} FailedGetExternalMetric events for 4 error states over ~15 passes: one per change"
    );

    // A sane value again: floor(3 × 10 / 50) = 0 → 1 (the minimum), within the 20 % limit of 3 → 2.
    c.metrics.set("queue", 10.0);
    c.wait_scale(&ns, "jobs", 2, 20 * SECOND).await.expect("scaling resumes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_wpa_and_its_logs_attributes() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    // floor(3 × 10 / 50) = 0 → 1 (the minimum), within the 20 % limit of 3 → 2.
    let serve = failing_metric(&c, &ns, "logged-queue", Answer::Value("10".into())).await;
    c.wait_scale(&ns, "jobs", 2, 20 * SECOND).await.expect("a scale");
    // The line follows the write.
    let line = support::wait_for(5 * SECOND, || async {
        let log = serve.log();
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "Successful rescale")
            .ok_or_else(|| format!("no rescale line in:\n{log}"))
    })
    .await
    .expect("a rescale log line");
    assert_eq!(line["wpa_name"], "jobs");
    assert_eq!(line["wpa_namespace"], ns.name());
    assert_eq!(line["team"], "payments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_wpa_loses_its_finalizer_and_its_series() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    let serve = failing_metric(&c, &ns, "deleted-queue", Answer::Value("75".into())).await;
    support::wait_for(20 * SECOND, || async {
        if metrics_text(&serve).contains("wpa_name=\"jobs\"") {
            Ok(())
        } else {
            Err("no series yet".to_string())
        }
    })
    .await
    .expect("the WPA's series are exported");
    // kubectl delete waits until the finalizer is removed.
    let out = c.cluster.kubectl(&["delete", "wpa", "-n", &ns, "jobs", "--timeout=30s"]);
    assert!(out.status.success(), "kubectl delete: {}", String::from_utf8_lossy(&out.stderr));
    support::wait_for(10 * SECOND, || async {
        let text = metrics_text(&serve);
        if text.contains("wpa_name=\"jobs\"") { Err("series still exported".to_string()) } else { Ok(()) }
    })
    .await
    .expect("the deleted WPA's series are gone");
}

/// Two replicas with short Lease timings, and the Lease's holder.
struct Pair {
    a: WpaServe,
    b: WpaServe,
}

async fn two_replicas(c: &ScalingCluster, ns: &str, metric: &str) -> Pair {
    c.deployment(ns, "svc", 1).await.expect("deployment");
    c.metrics.set(metric, 150.0);
    let extra = "  upscaleForbiddenWindowSeconds: 1\n";
    c.apply_wpa(&wpa_yaml(ns, "svc", "svc", metric, "100", "50", extra)).await.unwrap();
    let a = reconciler(c, ns, "a", &[&support::FAST_LEASE[..], &["--identity", "replica-a"]].concat()).await;
    let b = reconciler(c, ns, "b", &[&support::FAST_LEASE[..], &["--identity", "replica-b"]].concat()).await;
    Pair { a, b }
}

async fn lease_holder(c: &ScalingCluster, ns: &str) -> Result<String, String> {
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(c.cluster.client(), ns);
    let l = leases.get("watermarkpodautoscaler-lock").await.map_err(|e| e.to_string())?;
    l.spec.and_then(|s| s.holder_identity).ok_or_else(|| "no holder".to_string())
}

fn leading(serve: &WpaServe) -> Option<f64> {
    sample(&metrics_text(serve), "wpa_reconciler_leader", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_replicas_only_the_elected_leader_scales_and_exports_wpa_series() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    let mut pair = two_replicas(&c, &ns, "elected-qps").await;
    let first = support::wait_for(20 * SECOND, || lease_holder(&c, &ns)).await.expect("a leader is elected");
    // ceil(1 × 150 / 100) = 2.
    c.wait_scale(&ns, "svc", 2, 30 * SECOND).await.expect("the leader scales");
    let (ra, rb) = (passes(&pair.a), passes(&pair.b));
    eprintln!("leader {first}; passes: a {ra}, b {rb}");
    let (leader, follower) =
        if first == "replica-a" { (&mut pair.a, &mut pair.b) } else { (&mut pair.b, &mut pair.a) };
    wait_counted(leader).await;
    assert_eq!(passes(follower), 0.0, "only the leader reconciles");
    assert_eq!((leading(leader), leading(follower)), (Some(1.0), Some(0.0)));
    let follower_series = metrics_text(follower);
    assert!(
        !follower_series.lines().any(|l| l.starts_with("wpa_controller_")),
        "a follower exports no WPA series:\n{follower_series}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_once_its_lease_expires() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    let mut pair = two_replicas(&c, &ns, "killed-qps").await;
    let first = support::wait_for(20 * SECOND, || lease_holder(&c, &ns)).await.expect("a leader is elected");
    c.wait_scale(&ns, "svc", 2, 30 * SECOND).await.expect("the leader scales");
    let (leader, follower) =
        if first == "replica-a" { (&mut pair.a, &mut pair.b) } else { (&mut pair.b, &mut pair.a) };

    // The leader dies without releasing its lease: the other takes over once the lease expires.
    leader.kill();
    let killed = Instant::now();
    c.wait_ready_pods(&ns, "svc", 2, 30 * SECOND).await.unwrap();
    c.metrics.set("killed-qps", 280.0);
    c.wait_scale(&ns, "svc", 3, 30 * SECOND).await.expect("the new leader scales");
    eprintln!("handover and scale {:?} after the kill", killed.elapsed());
    let second = lease_holder(&c, &ns).await.unwrap();
    assert_ne!(second, first);
    wait_counted(follower).await;
    assert_eq!(leading(follower), Some(1.0), "the new leader says so");
}

/// Its own cluster: it restarts the API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_restart_is_survived_without_a_lost_or_doubled_scale() {
    let c = ScalingCluster::start().await;
    let ns = "restart";
    c.deployment(ns, "app", 2).await.expect("deployment");
    c.metrics.set("app-qps", 300.0);
    let extra = "  upscaleForbiddenWindowSeconds: 25\n";
    c.apply_wpa(&wpa_yaml(ns, "app", "app", "app-qps", "100", "50", extra)).await.unwrap();
    let serve = reconciler(&c, ns, "a", &["--leader-elect=false"]).await;
    // ceil(2 × 300 / 100) = 6, limited to +1.
    c.wait_scale(ns, "app", 3, 30 * SECOND).await.expect("the first upscale");
    let scaled = Instant::now();
    let took = c.cluster.restart_apiserver().await.expect("restart the API server");
    eprintln!("API server back in {took:?}");
    // Inside the 25 s window: no second scale, however the watches came back.
    holds(&c, ns, "app", 3, Duration::from_secs(20).saturating_sub(scaled.elapsed())).await;
    c.wait_scale(ns, "app", 4, 30 * SECOND).await.expect("the next upscale after the window");
    let st = wait_status(&c, ns, "app", 10 * SECOND, |st| st.desired_replicas == 4).await;
    assert_eq!(st.scaling_events_count, 2, "one event per scale: {st:?}");
    drop(serve);
}

/// It installs the DatadogMonitor CRD, which no other test of this binary needs absent or present.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_control_gates_scaling_on_the_datadog_monitor() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    c.deployment(&ns, "app", 1).await.expect("deployment");
    c.metrics.set("lc-qps", 300.0);
    let text = wpa_yaml(&ns, "app", "app", "lc-qps", "100", "50", "  upscaleForbiddenWindowSeconds: 1\n")
        .replace(
            &format!("  namespace: {ns}\n"),
            &format!("  namespace: {ns}\n  annotations:\n    wpa.datadoghq.com/lifecycle-control.enabled: \"true\"\n"),
        );
    c.apply_wpa(&text).await.unwrap();
    let serve = reconciler(&c, &ns, "a", &["--leader-elect=false"]).await;
    // No DatadogMonitor CRD in the cluster: blocked, and the condition says why.
    let msg = c
        .wait_condition(&ns, "app", "ScalingBlocked", "True", "FailedGetDatadogMonitor", 30 * SECOND)
        .await
        .expect("blocked without the CRD");
    assert!(msg.contains("DatadogMonitor CRD (datadogmonitors.datadoghq.com) is not installed"), "{msg}");
    holds(&c, &ns, "app", 1, 3 * SECOND).await;

    // The CRD and a monitor in Alert.
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "datadogmonitors.datadoghq.com"},
            "spec": {"group": "datadoghq.com", "scope": "Namespaced",
                     "names": {"plural": "datadogmonitors", "singular": "datadogmonitor", "kind": "DatadogMonitor"},
                     "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
        }))
        .unwrap();
    c.cluster.install_crd(crd).await.expect("install the DatadogMonitor CRD");
    let monitor = |state: &str| {
        format!(
            "apiVersion: datadoghq.com/v1alpha1\nkind: DatadogMonitor\nmetadata: {{name: app, namespace: {ns}}}\nstatus: {{monitorState: {state}}}\n"
        )
    };
    c.cluster.kubectl_apply(&monitor("Alert")).expect("a monitor in Alert");
    // A spec change brings the WPA back at once (a blocked WPA is otherwise requeued after 1-2 minutes, as
    // upstream); discovery forgets a missing kind after 30 s.
    let bump = |max: i32| {
        let client = c.cluster.client();
        let ns = ns.to_string();
        async move {
            let api: kube::Api<wpa::api::WatermarkPodAutoscaler> = kube::Api::namespaced(client, &ns);
            let patch = serde_json::json!({"spec": {"maxReplicas": max}});
            api.patch("app", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
                .await
                .unwrap();
        }
    };
    tokio::time::sleep(Duration::from_secs(31)).await;
    bump(11).await;
    let msg = c
        .wait_condition(&ns, "app", "ScalingBlocked", "True", "DatadogMonitorNotOK", 30 * SECOND)
        .await
        .expect("blocked by a monitor in Alert");
    assert_eq!(msg, format!("monitor {ns}/app is in Alert state, blocking the WPA from proceeding"));
    holds(&c, &ns, "app", 1, 3 * SECOND).await;

    c.cluster.kubectl_apply(&monitor("OK")).expect("the monitor recovers");
    bump(12).await;
    c.wait_scale(&ns, "app", 2, 30 * SECOND).await.expect("scaling resumes once the monitor is OK");
    let msg = c
        .wait_condition(&ns, "app", "ScalingBlocked", "False", "DatadogMonitorOK", 10 * SECOND)
        .await
        .unwrap();
    assert_eq!(msg, format!("monitor {ns}/app is in a OK state, allowing the WPA from proceeding"));
    // The gauge is set at the end of the pass that scaled, after the status and the /scale write.
    support::wait_for(10 * SECOND, || async {
        let text = metrics_text(&serve);
        let labels = [("wpa_name", "app"), ("monitor_name", "app")];
        match sample(&text, "wpa_controller_lifecycle_control_status", &labels) {
            Some(0.0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("lifecycle_control_status 0 once the monitor is OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_metrics_from_metrics_k8s_io_scale_on_the_average_usage_of_ready_pods() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    c.deployment(&ns, "cpu", 2).await.expect("deployment");
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(c.cluster.client(), &ns);
    let names: Vec<String> = pods
        .list(&kube::api::ListParams::default().labels("app=cpu"))
        .await
        .unwrap()
        .items
        .iter()
        .map(kube::ResourceExt::name_any)
        .collect();
    assert_eq!(names.len(), 2);
    for n in &names {
        c.metrics.set_pod_usage(&ns, n, "cpu", "150m");
    }
    let wpa = r#"apiVersion: datadoghq.com/v1alpha1
kind: WatermarkPodAutoscaler
metadata: {name: cpu, namespace: NAMESPACE}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: cpu}
  minReplicas: 1
  maxReplicas: 10
  algorithm: average
  upscaleForbiddenWindowSeconds: 1
  metrics:
  - type: Resource
    resource:
      name: cpu
      metricSelector: {matchLabels: {app: cpu}}
      highWatermark: "200m"
      lowWatermark: "100m"
"#;
    c.apply_wpa(&wpa.replace("NAMESPACE", &ns)).await.unwrap();
    let _serve = reconciler(&c, &ns, "a", &["--leader-elect=false"]).await;
    // 150m per pod is within [90m, 220m]: the first pass records itself and nothing moves.
    c.wait_condition(&ns, "cpu", "ScalingActive", "True", "NotScaling", 30 * SECOND).await.expect("a pass");
    holds(&c, &ns, "cpu", 2, 3 * SECOND).await;
    // 500m per pod: ceil(2 × 500 / 200) = 5, limited to +50 % = 3.
    for n in &names {
        c.metrics.set_pod_usage(&ns, n, "cpu", "500m");
    }
    c.wait_scale(&ns, "cpu", 3, 30 * SECOND).await.expect("an upscale on CPU");
    // Written right after the scale: the average over the ready pods that report the metric.
    support::wait_for(10 * SECOND, || async {
        let st = c.wpa_status(&ns, "cpu").await.map_err(|e| e.to_string())?;
        let r = st.current_metrics.first().and_then(|m| m.resource.clone()).ok_or("no Resource status")?;
        if r.name == "cpu" && r.current_average_value.milli() == 500 { Ok(()) } else { Err(format!("{r:?}")) }
    })
    .await
    .expect("the status reports the usage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpa_created_after_the_wpa_is_reported_as_a_conflict() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    c.deployment(&ns, "app", 2).await.expect("deployment");
    c.metrics.set("fight-qps", 150.0);
    c.apply_wpa(&wpa_yaml(&ns, "app", "app", "fight-qps", "100", "50", "")).await.unwrap();
    let serve = reconciler(&c, &ns, "a", &["--leader-elect=false"]).await;
    support::wait_for(30 * SECOND, || async {
        let st = c.wpa_status(&ns, "app").await.map_err(|e| e.to_string())?;
        if st.observed_generation.is_some() { Ok(()) } else { Err("not reconciled yet".to_string()) }
    })
    .await
    .expect("a first pass");
    // The webhook refuses a WPA on a target an HPA scales, but not an HPA created afterwards.
    c.cluster
        .kubectl_apply(
            &format!("apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {{name: app-hpa, namespace: {ns}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: app}}\n  minReplicas: 1\n  maxReplicas: 10\n"),
        )
        .expect("the HPA");
    let msg = c
        .wait_condition(
            &ns,
            "app",
            "ConflictingAutoscaler",
            "True",
            "HorizontalPodAutoscalerFound",
            30 * SECOND,
        )
        .await
        .expect("the conflict is reported");
    assert!(
        msg.starts_with(&format!("HorizontalPodAutoscaler {ns}/app-hpa also scales Deployment/app")),
        "{msg}"
    );
    let events = c.cluster.kubectl(&["get", "events", "-n", &ns, "-o", "jsonpath={.items[*].reason}"]);
    assert!(String::from_utf8_lossy(&events.stdout).contains("HorizontalPodAutoscalerFound"));
    let trace = explain(&c, &ns, "app");
    assert!(
        trace.contains(&format!("Conflict: HorizontalPodAutoscaler {ns}/app-hpa also scales Deployment/app")),
        "{trace}"
    );
    // The HPA goes: so does the conflict.
    c.cluster.kubectl(&["delete", "hpa", "app-hpa", "-n", &ns]);
    c.wait_condition(&ns, "app", "ConflictingAutoscaler", "False", "NoOtherAutoscaler", 30 * SECOND)
        .await
        .expect("the conflict is over");
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_by_sigterm_releases_its_lease_at_once_and_scales_no_more() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    c.deployment(&ns, "svc", 1).await.expect("deployment");
    c.metrics.set("handoff-qps", 150.0);
    let extra = "  upscaleForbiddenWindowSeconds: 1\n";
    c.apply_wpa(&wpa_yaml(&ns, "svc", "svc", "handoff-qps", "100", "50", extra)).await.unwrap();
    // The default Lease timings: without a release, the follower waits out 15 s after the last renewal.
    let a = reconciler(&c, &ns, "a", &["--identity", "replica-a"]).await;
    let holder = async || lease_holder(&c, &ns).await.ok();
    support::wait_for(20 * SECOND, || async {
        if holder().await.as_deref() == Some("replica-a") {
            Ok(())
        } else {
            Err("a does not lead".to_string())
        }
    })
    .await
    .expect("replica-a leads");
    c.wait_scale(&ns, "svc", 2, 30 * SECOND).await.expect("a scales");
    let b = reconciler(&c, &ns, "b", &["--identity", "replica-b"]).await;
    // A metric that asks for more: whoever leads scales at once (1 s window).
    c.wait_ready_pods(&ns, "svc", 2, 30 * SECOND).await.unwrap();
    a.signal_terminate();
    let stopped = Instant::now();
    c.metrics.set("handoff-qps", 280.0);
    support::wait_for(10 * SECOND, || async {
        if holder().await.as_deref() == Some("replica-b") {
            Ok(())
        } else {
            Err("b does not lead".to_string())
        }
    })
    .await
    .expect("b leads within seconds of a's SIGTERM, not after a lease duration");
    let handover = stopped.elapsed();
    eprintln!("handover {handover:?} after SIGTERM");
    assert!(handover < 8 * SECOND, "handover took {handover:?}");
    c.wait_scale(&ns, "svc", 3, 30 * SECOND).await.expect("the new leader scales");
    let log = a.log();
    assert!(log.contains("leader lease released"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    let after_sigterm =
        log.lines().skip_while(|l| !l.contains("shutting down")).collect::<Vec<_>>().join("\n");
    assert!(!after_sigterm.contains("Successful rescale"), "a scaled after SIGTERM: {after_sigterm}");
    b.wait_log("Successful rescale", 10 * SECOND).await.expect("b made the next scale");
}

/// The fallback climbs to its count in steps (the scale-up limit, one per forbidden window); its leader is
/// stopped after the first step. The new leader goes on from the recorded step: no two changes of the count
/// closer than the window, never past the fallback's count, never down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_change_in_the_middle_of_a_fallback_keeps_one_step_per_window() {
    const WINDOW: Duration = Duration::from_secs(10);
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    c.deployment(&ns, "steps", 2).await.expect("deployment");
    c.metrics.set("steps-qps", 75.0);
    // +50 % a step: 2 -> 3 -> 4 -> 6.
    let extra =
        format!("  scaleUpLimitFactor: \"50\"\n  upscaleForbiddenWindowSeconds: {}\n", WINDOW.as_secs());
    let wpa = wpa_yaml(&ns, "steps", "steps", "steps-qps", "100", "50", &extra).replacen(
        &format!("  namespace: {ns}\n"),
        &format!("  namespace: {ns}\n  annotations:\n    wpa.datadoghq.com/fallback-replicas: \"6\"\n    wpa.datadoghq.com/fallback-after: \"4s\"\n"),
        1,
    );
    c.apply_wpa(&wpa).await.expect("apply the WPA with a fallback");
    let a = reconciler(&c, &ns, "a", &["--identity", "replica-a"]).await;
    support::wait_for(20 * SECOND, || async {
        match lease_holder(&c, &ns).await {
            Ok(h) if h == "replica-a" => Ok(()),
            other => Err(format!("held by {other:?}")),
        }
    })
    .await
    .expect("replica-a leads");
    c.wait_condition(&ns, "steps", "Fallback", "False", "MetricsAvailable", 30 * SECOND)
        .await
        .expect("a first pass with the metric");
    let b = reconciler(&c, &ns, "b", &["--identity", "replica-b"]).await;

    // Every change of the count, with when it was seen (polled every 100 ms).
    let changes = Arc::new(std::sync::Mutex::new(Vec::<(Instant, i32)>::new()));
    let watcher = {
        let (changes, c, ns) = (changes.clone(), c.clone(), ns.to_string());
        tokio::spawn(async move {
            let mut last = 2;
            loop {
                if let Ok((now, _)) = c.scale(&ns, "steps").await
                    && now != last
                {
                    changes.lock().unwrap().push((Instant::now(), now));
                    last = now;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    c.metrics.answer("steps-qps", Answer::Error(503));
    c.wait_scale(&ns, "steps", 3, 40 * SECOND).await.expect("the fallback's first step, by replica-a");
    a.signal_terminate();
    c.wait_scale(&ns, "steps", 6, 4 * WINDOW).await.expect("the fallback's count, by replica-b");
    tokio::time::sleep(WINDOW / 2).await;
    watcher.abort();
    let changes = changes.lock().unwrap().clone();
    let counts: Vec<i32> = changes.iter().map(|c| c.1).collect();
    let gaps: Vec<Duration> = changes.windows(2).map(|w| w[1].0 - w[0].0).collect();
    eprintln!("counts {counts:?}, gaps {gaps:?}");
    assert_eq!(counts, [3, 4, 6], "one limited step at a time, up only, to the fallback's count");
    // lastScaleTime has a resolution of a second; the poll adds up to 100 ms on each side.
    for gap in &gaps {
        assert!(*gap >= WINDOW - Duration::from_millis(1200), "two scales {gap:?} apart: {gaps:?}");
    }
    assert!(b.log().contains("Successful rescale"), "replica-b made the later steps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_outage_longer_than_fallback_after_scales_up_to_the_fallback_and_recovery_resumes_scaling()
{
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    c.deployment(&ns, "api", 2).await.expect("deployment");
    // 75 within the band [50, 100]: 2 replicas hold.
    c.metrics.set("outage-qps", 75.0);
    // Short windows: the first pass records a (no-op) scale, and the fallback's scale opens a downscale window.
    let extra = "  scaleUpLimitFactor: \"200\"\n  upscaleForbiddenWindowSeconds: 1\n  downscaleForbiddenWindowSeconds: 2\n";
    let wpa = wpa_yaml(&ns, "api", "api", "outage-qps", "100", "50", extra)
        .replacen(
            &format!("  namespace: {ns}\n"),
            &format!("  namespace: {ns}\n  annotations:\n    wpa.datadoghq.com/fallback-replicas: \"5\"\n    wpa.datadoghq.com/fallback-after: \"8s\"\n"),
            1,
        );
    c.apply_wpa(&wpa).await.expect("apply the WPA with a fallback");
    let serve = reconciler(&c, &ns, "a", &["--leader-elect=false"]).await;
    c.wait_condition(&ns, "api", "Fallback", "False", "MetricsAvailable", 30 * SECOND)
        .await
        .expect("a first pass with the metric");

    // The provider answers 503: the fallback waits out fallback-after, holding the count.
    c.metrics.answer("outage-qps", Answer::Error(503));
    let outage = Instant::now();
    let pending = c
        .wait_condition(&ns, "api", "Fallback", "Unknown", "MetricsFailing", 15 * SECOND)
        .await
        .expect("the outage is seen");
    assert!(pending.contains("keeps at least 5 replicas (fallback-replicas) from"), "{pending}");
    // Nothing for 6 s of the outage: fallback-after (8 s) counts from the first failed pass, a condition time
    // rounded down to the second, and the outage may begin up to a pass before that.
    holds(&c, &ns, "api", 2, Duration::from_secs(6).saturating_sub(outage.elapsed())).await;

    // Then the count goes to the fallback, and stays there (never down) while the outage lasts.
    let active = c
        .wait_condition(&ns, "api", "Fallback", "True", "FallbackActive", 20 * SECOND)
        .await
        .expect("the fallback takes over");
    assert!(active.contains("has failed for more than 8s"), "{active}");
    c.wait_scale(&ns, "api", 5, 20 * SECOND).await.expect("a scale to fallback-replicas");
    c.wait_ready_pods(&ns, "api", 5, 30 * SECOND).await.expect("5 ready pods");
    holds(&c, &ns, "api", 5, 4 * SECOND).await;
    let (_, metrics) = serve.health("/metrics").expect("scrape /metrics");
    assert!(
        metrics.lines().any(|l| l.starts_with("wpa_fallback_active{")
            && l.contains("wpa_name=\"api\"")
            && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) == Some(1.0)),
        "wpa_fallback_active is 1 during the fallback"
    );

    // The metric answers again, low: the fallback ends and normal scaling resumes from 5 (−20 % per step).
    c.metrics.set("outage-qps", 10.0);
    c.wait_condition(&ns, "api", "Fallback", "False", "MetricsAvailable", 20 * SECOND)
        .await
        .expect("the fallback ends");
    c.wait_scale(&ns, "api", 4, 20 * SECOND).await.expect("a downscale on the metric again");
    let events = c.cluster.kubectl(&["get", "events", "-n", &ns, "-o", "jsonpath={.items[*].reason}"]);
    let reasons = String::from_utf8_lossy(&events.stdout).to_string();
    assert!(reasons.contains("FallbackActive") && reasons.contains("FallbackEnded"), "{reasons}");
    drop(serve);
}
