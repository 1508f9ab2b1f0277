//! `wpa convert --from-hpa` on a real control plane: an autoscaling/v2beta2 HPA with `behavior` on an
//! External metric of the synthetic provider, scaled by kube-controller-manager's own HPA controller, is
//! converted (YAML, then `kubectl wpa convert --apply` through the webhook; an HPA with metrics a WPA cannot
//! read is refused with exit status 2); the dry-run WPA and the HPA then
//! go side by side through a burst and a lull, and the WPA's decisions follow the HPA's as docs/convert.md
//! says they do.
//!
//! Both run every 2 s (kube-controller-manager `--horizontal-pod-autoscaler-sync-period=2s`, `wpa serve
//! --sync-period 2s`, upstream's and Kubernetes' 15 s otherwise) and the HPA's windows are 10 s and 20 s,
//! so that the whole story takes about a minute.

mod support;

use std::{
    os::unix::fs::symlink,
    path::Path,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use kube::{
    Api,
    api::DynamicObject,
    core::GroupVersionKind,
    discovery::ApiResource,
    runtime::{WatchStreamExt, watcher},
};
use support::{Options, Run, ScalingCluster, run};
use wpa::api::WatermarkPodAutoscaler;

const NS: &str = "convert";
const SECOND: Duration = Duration::from_secs(1);

const HPA: &str = r#"apiVersion: autoscaling/v2beta2
kind: HorizontalPodAutoscaler
metadata:
  name: web
  namespace: convert
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 10
  metrics:
  - type: External
    external:
      metric: {name: web-rps, selector: {matchLabels: {app: web}}}
      target: {type: AverageValue, averageValue: "100"}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      policies: [{type: Percent, value: 100, periodSeconds: 10}]
    scaleDown:
      stabilizationWindowSeconds: 20
      policies: [{type: Percent, value: 50, periodSeconds: 10}]
"#;

fn wpa_command(kubeconfig: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wpa"));
    cmd.args(args).env("KUBECONFIG", kubeconfig).env_remove("WPA_NAMESPACE");
    run(cmd)
}

/// An HPA whose metrics a WPA cannot read.
const UNCONVERTIBLE: &str = r#"apiVersion: autoscaling/v2beta2
kind: HorizontalPodAutoscaler
metadata:
  name: api
  namespace: convert
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: api}
  maxReplicas: 5
  metrics:
  - type: Pods
    pods:
      metric: {name: queue_depth}
      target: {type: AverageValue, averageValue: "10"}
  - type: Object
    object:
      describedObject: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: api}
      metric: {name: hits_per_second}
      target: {type: Value, value: "100"}
"#;

/// A decision seen in a status: when it was seen, from the start of the burst, and the count decided.
#[derive(Clone, Copy, Debug)]
struct Decision {
    at: Duration,
    replicas: i32,
}

/// The decisions of the WPA (a dry-run scale counts an event and sets desiredReplicas) and of the HPA (a
/// scale sets lastScaleTime and desiredReplicas), as the API server's watches deliver them.
#[derive(Default)]
struct Decisions {
    wpa: Vec<Decision>,
    hpa: Vec<Decision>,
}

fn hpa_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("autoscaling", "v2beta2", "HorizontalPodAutoscaler"))
}

/// Records both autoscalers' decisions from `begin` on.
fn record(c: &ScalingCluster, begin: Instant) -> Arc<Mutex<Decisions>> {
    let seen = Arc::new(Mutex::new(Decisions::default()));
    let wpas: Api<WatermarkPodAutoscaler> = Api::namespaced(c.cluster.client(), NS);
    let (s, mut last_count) = (seen.clone(), None);
    tokio::spawn(async move {
        let mut stream = watcher(wpas, watcher::Config::default()).applied_objects().boxed();
        while let Some(Ok(w)) = stream.next().await {
            let st = w.status.unwrap_or_default();
            // The first state seen is where the story starts, not a decision.
            let before = *last_count.get_or_insert(st.scaling_events_count);
            if st.scaling_events_count > before {
                last_count = Some(st.scaling_events_count);
                let d = Decision { at: begin.elapsed(), replicas: st.desired_replicas };
                s.lock().unwrap().wpa.push(d);
            }
        }
    });
    let hpas: Api<DynamicObject> = Api::namespaced_with(c.cluster.client(), NS, &hpa_resource());
    let (s, mut last_scale) = (seen.clone(), None);
    tokio::spawn(async move {
        let mut stream = watcher(hpas, watcher::Config::default()).applied_objects().boxed();
        while let Some(Ok(h)) = stream.next().await {
            let scaled = h.data.pointer("/status/lastScaleTime").cloned();
            let before = last_scale.get_or_insert_with(|| scaled.clone()).clone();
            if scaled.is_some() && scaled != before {
                last_scale = Some(scaled);
                let replicas =
                    h.data.pointer("/status/desiredReplicas").and_then(|v| v.as_i64()).unwrap_or(0);
                let d = Decision { at: begin.elapsed(), replicas: replicas as i32 };
                s.lock().unwrap().hpa.push(d);
            }
        }
    });
    seen
}

fn counts(decisions: &[Decision]) -> Vec<i32> {
    decisions.iter().map(|d| d.replicas).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converted_hpa_and_its_dry_run_wpa_decide_alike_through_a_burst_and_a_lull() {
    let c = ScalingCluster::start_with(Options {
        controller_manager_args: vec!["--horizontal-pod-autoscaler-sync-period=2s".into()],
        ..Options::full()
    })
    .await;
    c.deployment(NS, "web", 2).await.expect("the deployment");
    // 100 a pod: on target.
    c.metrics.set("web-rps", 200.0);
    c.cluster.kubectl_apply(HPA).expect("the HPA");
    let (serve, _ca) = support::start_with_webhook(&c.cluster, "convert", &["--sync-period", "2s"])
        .await
        .expect("wpa serve");
    let kubeconfig = c.cluster.kubeconfig_path().to_path_buf();

    // The YAML: each approximation named, accepted by `wpa simulate` as it is.
    let r = wpa_command(&kubeconfig, &["convert", "--from-hpa", "convert/web"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("approximations, named in the YAML's comments"), "{}", r.stderr);
    assert!(
        r.stdout.contains("# - spec.metrics[0].external: target 100 with tolerances +10 % and -10 %"),
        "{}",
        r.stdout
    );
    let printed: WatermarkPodAutoscaler = serde_yaml_ng::from_str(&r.stdout).expect("the YAML");
    let s = &printed.spec;
    let metric = s.metrics.as_ref().and_then(|m| m[0].external.clone()).expect("an External metric");
    assert_eq!(
        (metric.metric_name.as_str(), metric.high_watermark.map(|q| q.milli())),
        ("web-rps", Some(110_000))
    );
    assert_eq!(metric.low_watermark.map(|q| q.milli()), Some(90_000));
    assert_eq!(
        (s.algorithm.as_deref(), s.dry_run, s.min_replicas, s.max_replicas),
        (Some("average"), Some(true), Some(2), Some(10))
    );
    let factor = |q: &Option<wpa::api::quantity::Quantity>| q.as_ref().map(|q| q.milli());
    assert_eq!(
        (factor(&s.scale_up_limit_factor), s.upscale_forbidden_window_seconds),
        (Some(100_000), Some(10))
    );
    assert_eq!(
        (factor(&s.scale_down_limit_factor), s.downscale_forbidden_window_seconds),
        (Some(50_000), Some(10))
    );
    assert_eq!(
        (s.upscale_delay_above_watermark_seconds, s.downscale_delay_below_watermark_seconds),
        (None, Some(20))
    );
    // What a WPA cannot say is refused, one line a reason, with the exit status of bad input.
    c.cluster.kubectl_apply(UNCONVERTIBLE).expect("the second HPA");
    let refused = wpa_command(&kubeconfig, &["convert", "--from-hpa", "api", "-n", NS]);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    let lines: Vec<&str> = refused.stderr.lines().collect();
    assert_eq!(
        lines[0], "wpa convert: HorizontalPodAutoscaler convert/api cannot be converted:",
        "{}",
        refused.stderr
    );
    assert!(lines[1].starts_with("  spec.metrics[0]: a Pods metric"), "{}", refused.stderr);
    assert!(lines[2].starts_with("  spec.metrics[1]: an Object metric"), "{}", refused.stderr);
    assert_eq!((lines.len(), refused.stdout.as_str()), (3, ""));
    let file = c.cluster.dir().join("web-wpa.yaml");
    std::fs::write(&file, &r.stdout).expect("write the YAML");
    let series = c.cluster.dir().join("web-rps.csv");
    std::fs::write(&series, "timestamp,metric,value\n0,web-rps,200\n60,web-rps,800\n120,web-rps,300\n")
        .unwrap();
    let sim = wpa_command(
        &kubeconfig,
        &["simulate", "--wpa", &file.to_string_lossy(), "--series", &series.to_string_lossy()],
    );
    assert_eq!(sim.code, Some(0), "wpa simulate takes it unchanged: {}", sim.stderr);

    // Created through the API server by `kubectl wpa convert --apply`: the webhook admits it unchanged.
    let plugin_dir = c.cluster.dir().join("plugins");
    std::fs::create_dir_all(&plugin_dir).expect("a plugin directory");
    symlink(env!("CARGO_BIN_EXE_wpa"), plugin_dir.join("kubectl-wpa")).expect("link kubectl-wpa");
    let mut kubectl = Command::new(c.cluster.bin_dir().join("kubectl"));
    let path = format!("{}:{}", plugin_dir.display(), std::env::var("PATH").unwrap_or_default());
    kubectl
        .args(["wpa", "convert", "--from-hpa", "web", "-n", NS, "--apply"])
        .env("PATH", path)
        .env("KUBECONFIG", &kubeconfig);
    let r = run(kubectl);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.starts_with("watermarkpodautoscaler.datadoghq.com/web created in convert"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.lines().all(|l| l.starts_with("approximation: spec.")), "{}", r.stderr);
    let wpas: Api<WatermarkPodAutoscaler> = Api::namespaced(c.cluster.client(), NS);
    let created = wpas.get("web").await.expect("the WPA");
    assert_eq!(created.spec, printed.spec, "the webhook changed nothing");
    // Once is enough: a second --apply says what to do.
    let again = wpa_command(&kubeconfig, &["convert", "--from-hpa", "convert/web", "--apply"]);
    assert_eq!(again.code, Some(1));
    assert!(again.stderr.contains("give this one another name with --name"), "{}", again.stderr);

    c.wait_condition(NS, "web", "ScalingActive", "True", "ValidMetricFound", 60 * SECOND)
        .await
        .expect("the WPA reads its metric");
    // A WPA's first pass counts as a scale (upstream's rule: no lastScaleTime yet), which opens its windows:
    // the burst comes after the upscale window, as it would for a WPA that has been running a while.
    tokio::time::sleep(11 * SECOND).await;
    let begin = Instant::now();
    let seen = record(&c, begin);

    // The burst: 800 is 8 pods' worth. Both double per 10 s: 2 → 4 → 8.
    c.metrics.set("web-rps", 800.0);
    c.wait_scale(NS, "web", 8, 90 * SECOND).await.expect("the HPA scales to 8");
    let settled_up = begin.elapsed();
    // Settled: the WPA, dry run, wants nothing more (8 pods at 100 each are within its band).
    tokio::time::sleep(8 * SECOND).await;
    let st = c.wpa_status(NS, "web").await.expect("the WPA status");
    assert_eq!(st.desired_replicas, 8, "{st:?}");
    let up_decisions = seen.lock().unwrap().wpa.len();

    // The lull: 300 is 3 pods' worth. Both hold 20 s, then halve per 10 s: 8 → 4 → 3.
    let lull = begin.elapsed();
    c.metrics.set("web-rps", 300.0);
    // `wpa status` shows what the dry-run WPA is about to do beside the HPA: below its band, waiting out the
    // delay the stabilization window became.
    let status = wpa_command(&kubeconfig, &["status", "-n", NS, "-o", "json"]);
    assert_eq!(status.code, Some(0), "{}", status.stderr);
    let report: serde_json::Value = serde_json::from_str(&status.stdout).expect("the status JSON");
    let row =
        report["items"].as_array().and_then(|i| i.iter().find(|i| i["name"] == "web")).expect("web's row");
    assert_eq!((&row["state"], &row["metrics"][0]["position"]), (&"below".into(), &"below".into()), "{row}");
    assert!(row["flags"].as_array().is_some_and(|f| f.contains(&"dry-run".into())), "{row}");
    assert!(row["detail"].as_str().is_some_and(|d| d.contains("downscale delay")), "{row}");
    c.wait_scale(NS, "web", 3, 120 * SECOND).await.expect("the HPA scales to 3");
    tokio::time::sleep(8 * SECOND).await;
    let st = c.wpa_status(NS, "web").await.expect("the WPA status");
    assert_eq!(st.desired_replicas, 3, "{st:?}");

    let d = seen.lock().unwrap();
    let (wpa_up, wpa_down) = d.wpa.split_at(up_decisions);
    let (hpa_up, hpa_down): (Vec<Decision>, Vec<Decision>) = d.hpa.iter().partition(|h| h.at < lull);
    eprintln!(
        "HPA decisions: {:?}\nWPA decisions: {:?}\nsettled at 8 after {settled_up:?}, lull at {lull:?}",
        d.hpa, d.wpa
    );
    assert_eq!(counts(&hpa_up), [4, 8], "the HPA doubles twice");
    assert_eq!(counts(&hpa_down), [4, 3], "the HPA halves, then stops at 3");
    // The WPA decides only what the HPA decides, whichever of the two acts first on a step; it acts
    // at least once each way, and holds nothing in between (no decision while settled).
    assert!(!wpa_up.is_empty() && wpa_up.iter().all(|w| [4, 8].contains(&w.replicas)), "{wpa_up:?}");
    assert!(!wpa_down.is_empty() && wpa_down.iter().all(|w| [4, 3].contains(&w.replicas)), "{wpa_down:?}");
    assert!(wpa_up.iter().all(|w| w.at < settled_up + 2 * SECOND), "no decision once settled: {wpa_up:?}");
    // The stabilization window and the delay: neither scales down within the 20 s of the lull. The WPA
    // counts from its first pass below the band (a condition's time, to the second); the HPA from its last
    // high recommendation, one sync or a stalled controller's few before the lull.
    let first_down = |d: &[Decision]| d.first().map(|d| d.at.saturating_sub(lull));
    let (wpa_wait, hpa_wait) = (first_down(wpa_down), first_down(&hpa_down));
    eprintln!("first downscale after the lull: WPA {wpa_wait:?}, HPA {hpa_wait:?}");
    assert!(wpa_wait.is_some_and(|w| w >= 19 * SECOND), "{wpa_wait:?}");
    assert!(hpa_wait.is_some_and(|w| w >= 15 * SECOND), "{hpa_wait:?}");
    drop(d);
    drop(serve);
}
