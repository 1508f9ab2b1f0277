//! The reconciler against a real control plane: a Deployment whose pods the harness marks ready, WPAs on
//! it, and an external metric served by a synthetic provider that the API server reaches through its
//! aggregator (an APIService routed into a network namespace), as a real cluster serves the Datadog
//! Cluster Agent's or KEDA's metrics.

mod support;

use std::time::{Duration, Instant};

use support::{ScalingCluster, WpaServe, wpa_yaml};
use wpa::synthetic_metrics::Answer;

/// `wpa serve` running the reconciler only, passing over each WPA every second.
async fn reconciler(c: &ScalingCluster, name: &str, extra: &[&str]) -> WpaServe {
    let mut args = vec!["--no-webhook", "--sync-period", "1s"];
    args.extend_from_slice(extra);
    WpaServe::start(&c.cluster, name, None, &args).await.expect("start wpa serve")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_up_within_the_limit_then_waits_out_the_window_then_scales_down_with_floor() {
    let c = ScalingCluster::start().await;
    c.deployment("shop", "web", 2).await.expect("deployment");
    c.metrics.set("requests", 40.0);
    let extra = "  scaleUpLimitFactor: \"50\"\n  scaleDownLimitFactor: \"99\"\n  upscaleForbiddenWindowSeconds: 15\n  downscaleForbiddenWindowSeconds: 4\n  tolerance: \"100m\"\n";
    c.apply_wpa(&wpa_yaml("shop", "web", "web", "requests", "100", "50", extra)).await.expect("apply the WPA");
    let serve = reconciler(&c, "a", &["--leader-elect=false"]).await;

    // 40 is below the low watermark (50 × 0.9 = 45): floor(2 × 40 / 50) = 1, within the down limit.
    c.wait_scale("shop", "web", 1, Duration::from_secs(30)).await.expect("a first downscale to 1");
    let st = support::wait_for(Duration::from_secs(10), || async {
        let st = c.wpa_status("shop", "web").await.map_err(|e| e.to_string())?;
        if st.scaling_events_count == 1 { Ok(st) } else { Err(format!("{st:?}")) }
    })
    .await
    .expect("the status records the scale");
    assert_eq!(st.desired_replicas, 1);
    assert!(st.last_scale_time.is_some());
    c.wait_ready_pods("shop", "web", 1, Duration::from_secs(30)).await.unwrap();

    // Far above the high watermark: ceil(1 × 600 / 100) = 6 proposed, but the limit (+50 %, at least +1)
    // allows 2, and only after the downscale's upscale window (15 s) has passed.
    c.metrics.set("requests", 600.0);
    let msg = c
        .wait_condition("shop", "web", "AbleToScale", "False", "BackoffUpscale", Duration::from_secs(20))
        .await
        .expect("the upscale window holds the scale back");
    assert_eq!(msg, "the time since the previous scale is still within the upscale forbidden window");
    let crossed = Instant::now();
    c.wait_scale("shop", "web", 2, Duration::from_secs(30)).await.expect("an upscale to 2");
    let limited = c.wpa_status("shop", "web").await.unwrap();
    let lim = limited.conditions.iter().find(|c| c.type_ == "ScalingLimited").expect("ScalingLimited");
    assert_eq!((lim.status.as_str(), lim.reason.as_deref()), ("True", Some("ScaleUpLimit")));
    eprintln!("upscale to 2 {:?} after the metric crossed", crossed.elapsed());

    // No further rise inside the upscale window, although the metric still asks for 12.
    holds(&c, "shop", "web", 2, Duration::from_secs(10)).await;
    // Then +1 (50 % of 2).
    c.wait_scale("shop", "web", 3, Duration::from_secs(20)).await.expect("an upscale to 3 after the window");
    c.wait_ready_pods("shop", "web", 3, Duration::from_secs(30)).await.unwrap();

    // 70 is within [45, 110]: nothing moves. 35 is below: floor(3 × 35 / 50) = floor(2.1) = 2 (a ceiling
    // would keep 3).
    c.metrics.set("requests", 70.0);
    holds(&c, "shop", "web", 3, 5 * SECOND).await;
    c.metrics.set("requests", 35.0);
    c.wait_scale("shop", "web", 2, Duration::from_secs(30)).await.expect("a floor-rounded downscale");
    // The status is written right after the scale.
    let st = support::wait_for(Duration::from_secs(10), || async {
        let st = c.wpa_status("shop", "web").await.map_err(|e| e.to_string())?;
        if st.scaling_events_count == 4 { Ok(st) } else { Err(format!("{st:?}")) }
    })
    .await
    .expect("the status records the fourth scale");
    let metric = st.current_metrics[0].external.as_ref().expect("an External metric status");
    assert_eq!(metric.current_value.milli(), 35_000);
    assert_eq!(st.desired_replicas, 2);
    // What the API server's printer columns show.
    let out = c.cluster.kubectl(&["get", "wpa", "-n", "shop", "web", "--no-headers"]);
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("kubectl get wpa: {line}");
    assert!(line.contains("True") && line.contains("35"), "printer columns: {line}");
    drop(serve);
}
