//! A scale is never repeated inside its forbidden window, whatever becomes of its writes
//! (src/reconciler/record.rs has the design): status writes refused by RBAC, an API server that goes away
//! the instant after a `/scale` write was committed, a leader killed right after it scaled, a committed
//! write answered 500, a leader cut off between its record and its scale while another takes over, and a
//! count changed by someone else just before the write.

mod support;

use std::time::{Duration, Instant};

use support::{ScalingCluster, StartWpa, WpaServe, wpa_yaml};

const SECOND: Duration = Duration::from_secs(1);

/// The replica counts seen every 200 ms for `period`.
async fn watch_replicas(c: &ScalingCluster, ns: &str, name: &str, period: Duration) -> Vec<i32> {
    let begin = Instant::now();
    let mut seen = Vec::new();
    while begin.elapsed() < period {
        if let Ok((spec, _)) = c.scale(ns, name).await
            && seen.last() != Some(&spec)
        {
            seen.push(spec);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_status_writes_forbidden_no_scale_repeats_and_scaling_resumes_once_allowed() {
    let c = ScalingCluster::start().await;
    // rbac.yaml's ClusterRole without `watermarkpodautoscalers/status`: every status write gets 403.
    let kubeconfig = support::kubeconfig_without_status_writes(&c.cluster, "nostatus.kubeconfig").await;

    c.deployment("safe", "app", 2).await.expect("deployment");
    // ceil(2 × 500 / 100) = 10 wanted; each step is limited to +50 % and 60 s apart.
    c.metrics.set("app-qps", 500.0);
    let extra = "  scaleUpLimitFactor: \"50\"\n  upscaleForbiddenWindowSeconds: 60\n";
    c.apply_wpa(&wpa_yaml("safe", "app", "app", "app-qps", "100", "50", extra)).await.unwrap();
    let kc = kubeconfig.to_string_lossy().to_string();
    let serve = WpaServe::start(
        &c.cluster,
        "nostatus",
        None,
        &["--no-webhook", "--kubeconfig", &kc, "--sync-period", "1s", "--leader-elect=false"],
    )
    .await
    .expect("wpa serve");

    // Upstream's order (scale, then status) stepped 2 → 3 → 5 → 8 → 10 here, one step per retry.
    let seen = watch_replicas(&c, "safe", "app", 10 * SECOND).await;
    assert!(seen.len() <= 2 && seen.iter().all(|&n| n <= 3), "at most one step inside the window: {seen:?}");
    let log = serve.log();
    assert!(log.contains("cannot write the WPA status"), "the failure is logged");
    let events = c.cluster.kubectl(&["get", "events", "-n", "safe", "-o", "jsonpath={.items[*].reason}"]);
    let events = String::from_utf8_lossy(&events.stdout);
    assert!(events.contains("FailedUpdateStatus"), "the failure is reported on the WPA: {events}");
    let (_, metrics) = support::http_get(serve.health_port, "/metrics").expect("metrics");
    let failed = metrics.lines().find_map(|l| {
        l.strip_prefix("wpa_status_write_errors_total{phase=\"record\"} ")?.parse::<f64>().ok()
    });
    assert!(failed.is_some_and(|n| n > 0.0), "the failure is counted (the counter starts at 0): {failed:?}");

    // Status writes allowed again: the scale is made once, then the window holds.
    c.cluster.kubectl_apply(&support::shipped_rbac()).expect("apply the full RBAC");
    c.wait_scale("safe", "app", 3, 30 * SECOND).await.expect("scaling resumes");
    let st = support::wait_for(10 * SECOND, || async {
        let st = c.wpa_status("safe", "app").await.map_err(|e| e.to_string())?;
        if st.desired_replicas == 3 { Ok(st) } else { Err(format!("{st:?}")) }
    })
    .await
    .expect("the status records the scale");
    assert!(st.last_scale_time.is_some());
    let seen = watch_replicas(&c, "safe", "app", 6 * SECOND).await;
    assert_eq!(seen, [3], "one step, then the window");
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_gone_the_instant_a_scale_was_committed_never_gets_it_twice() {
    let c = ScalingCluster::start().await;
    c.deployment("gone", "app", 2).await.expect("deployment");
    c.metrics.set("app-qps", 300.0);
    let extra = "  upscaleForbiddenWindowSeconds: 30\n";
    c.apply_wpa(&wpa_yaml("gone", "app", "app", "app-qps", "100", "50", extra)).await.unwrap();
    // wpa reaches the API server through a proxy that, once a PATCH of a /scale has been committed,
    // drops its answer and refuses everything for 6 s: from wpa's side, the server died mid-request.
    let proxy = devcluster::FaultProxy::start(
        c.cluster.server_url(),
        c.cluster.ca_cert_path(),
        devcluster::Trigger::first_patch("/scale"),
        devcluster::Fault::Vanish { down_for: 6 * SECOND },
    )
    .await
    .expect("proxy");
    let kubeconfig = c.cluster.dir().join("proxy.kubeconfig");
    std::fs::write(&kubeconfig, proxy.kubeconfig(c.cluster.admin_token(), "default")).unwrap();
    let kc = kubeconfig.to_string_lossy().to_string();
    let serve = WpaServe::start(
        &c.cluster,
        "proxied",
        None,
        &["--no-webhook", "--kubeconfig", &kc, "--sync-period", "1s", "--leader-elect=false"],
    )
    .await
    .expect("wpa serve");

    // ceil(2 × 300 / 100) = 6, limited to +1 per step.
    c.wait_scale("gone", "app", 3, 30 * SECOND).await.expect("the first upscale");
    let scaled = Instant::now();
    assert_eq!(
        proxy.wait_triggered(5 * SECOND).await,
        [200],
        "the /scale write was committed, its answer never delivered"
    );
    // The proxy comes back after 6 s; the window lasts 30 s from the scale.
    let seen =
        watch_replicas(&c, "gone", "app", Duration::from_secs(24).saturating_sub(scaled.elapsed())).await;
    assert_eq!(seen, [3], "no second scale inside the window");
    let st = c.wpa_status("gone", "app").await.unwrap();
    assert_eq!((st.desired_replicas, st.scaling_events_count), (3, 1), "{st:?}");
    assert!(st.last_scale_time.is_some());
    // After the window, scaling goes on.
    c.wait_scale("gone", "app", 4, 30 * SECOND).await.expect("the next upscale after the window");
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_does_not_repeat_the_scale_its_cut_off_predecessor_just_made() {
    let c = ScalingCluster::start().await;
    c.deployment("handover", "app", 2).await.expect("deployment");
    c.metrics.set("app-qps", 300.0);
    let extra = "  upscaleForbiddenWindowSeconds: 30
";
    c.apply_wpa(&wpa_yaml("handover", "app", "app", "app-qps", "100", "50", extra)).await.unwrap();
    let lease = [&support::FAST_LEASE[..], &["--lease-namespace", "default"]].concat();
    // The first leader reaches the API server through a proxy that cuts it off for good the instant its
    // first /scale write is committed: it can write nothing after the scale, not even its lease.
    let proxy = devcluster::FaultProxy::start(
        c.cluster.server_url(),
        c.cluster.ca_cert_path(),
        devcluster::Trigger::first_patch("/scale"),
        devcluster::Fault::Vanish { down_for: 600 * SECOND },
    )
    .await
    .expect("proxy");
    let kubeconfig = c.cluster.dir().join("proxy.kubeconfig");
    std::fs::write(&kubeconfig, proxy.kubeconfig(c.cluster.admin_token(), "default")).unwrap();
    let kc = kubeconfig.to_string_lossy().to_string();
    let start = async |name: &str, extra: &[&str]| {
        let args =
            [&["--no-webhook", "--sync-period", "1s", "--identity", name][..], &lease[..], extra].concat();
        WpaServe::start(&c.cluster, name, None, &args).await.expect("wpa serve")
    };
    let mut first = start("replica-a", &["--kubeconfig", &kc]).await;
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(c.cluster.client(), "default");
    support::wait_for(20 * SECOND, || async {
        let l = leases.get("watermarkpodautoscaler-lock").await.map_err(|e| e.to_string())?;
        match l.spec.and_then(|s| s.holder_identity) {
            Some(h) if h == "replica-a" => Ok(()),
            other => Err(format!("holder {other:?}")),
        }
    })
    .await
    .expect("replica-a leads");
    let second = start("replica-b", &[]).await;
    c.wait_scale("handover", "app", 3, 30 * SECOND).await.expect("the first leader scales");
    let scaled = Instant::now();
    assert_eq!(
        proxy.wait_triggered(5 * SECOND).await,
        [200],
        "the scale was committed and the first leader cut off"
    );
    first.kill();
    // The second replica takes over once the lease expires (6 s) and must wait out the window.
    let seen =
        watch_replicas(&c, "handover", "app", Duration::from_secs(27).saturating_sub(scaled.elapsed())).await;
    assert_eq!(seen, [3], "the new leader does not repeat the scale");
    c.wait_scale("handover", "app", 4, 30 * SECOND).await.expect("the new leader scales after the window");
    second.wait_log("Successful rescale", 10 * SECOND).await.expect("the new leader made the next scale");
}

/// `wpa serve` (reconciler only) reaching the API server through `proxy`.
async fn through_proxy(
    c: &ScalingCluster,
    proxy: &devcluster::FaultProxy,
    name: &str,
    extra: &[&str],
) -> WpaServe {
    let kubeconfig = c.cluster.dir().join(format!("{name}.kubeconfig"));
    std::fs::write(&kubeconfig, proxy.kubeconfig(c.cluster.admin_token(), "default")).unwrap();
    let kc = kubeconfig.to_string_lossy().to_string();
    let args = [&["--no-webhook", "--kubeconfig", &kc, "--sync-period", "1s"][..], extra].concat();
    WpaServe::start(&c.cluster, name, None, &args).await.expect("wpa serve")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_scale_answered_500_is_not_made_again_inside_its_window() {
    let c = ScalingCluster::start().await;
    c.deployment("lied", "app", 2).await.expect("deployment");
    c.metrics.set("app-qps", 2000.0);
    let extra = "  scaleUpLimitFactor: \"50\"\n  upscaleForbiddenWindowSeconds: 60\n";
    c.apply_wpa(&wpa_yaml("lied", "app", "app", "app-qps", "100", "50", extra)).await.unwrap();
    // Every /scale write reaches etcd, and every answer says 500 (etcd's "transport is closing").
    let trigger = devcluster::Trigger { every: true, ..devcluster::Trigger::first_patch("/scale") };
    let proxy = devcluster::FaultProxy::start(
        c.cluster.server_url(),
        c.cluster.ca_cert_path(),
        trigger,
        devcluster::Fault::Answer { status: 500 },
    )
    .await
    .expect("proxy");
    let serve = through_proxy(&c, &proxy, "lied", &["--leader-elect=false"]).await;
    c.wait_scale("lied", "app", 3, 30 * SECOND).await.expect("the first upscale");
    // Upstream's undo of a "failed" write made this 2 -> 3 -> 4 -> 6 -> 9 -> 13 -> 19 -> 20, one step a second.
    let seen = watch_replicas(&c, "lied", "app", 15 * SECOND).await;
    assert_eq!(seen, [3], "one scale inside the 60 s window");
    assert_eq!(proxy.triggered().first(), Some(&200), "the write was committed upstream");
    let st = c.wpa_status("lied", "app").await.unwrap();
    assert!(st.last_scale_time.is_some(), "the record stays: {st:?}");
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_after_its_record_never_erases_the_next_leaders_record() {
    let c = ScalingCluster::start().await;
    c.deployment("deposed", "app", 2).await.expect("deployment");
    c.metrics.set("app-qps", 2000.0);
    let extra = "  scaleUpLimitFactor: \"50\"\n  upscaleForbiddenWindowSeconds: 20\n";
    c.apply_wpa(&wpa_yaml("deposed", "app", "app", "app-qps", "100", "50", extra)).await.unwrap();
    let lease = [&support::FAST_LEASE[..], &["--lease-namespace", "default"]].concat();
    // Replica a's record of its first scale is committed, and its answer held 24 s (a is paused meanwhile).
    let record = devcluster::Trigger {
        body_contains: Some("SuccessfulScale".into()),
        ..devcluster::Trigger::first_patch("/status")
    };
    let proxy = devcluster::FaultProxy::start(
        c.cluster.server_url(),
        c.cluster.ca_cert_path(),
        record,
        devcluster::Fault::Hold { hold: 24 * SECOND },
    )
    .await
    .expect("proxy");
    let a = through_proxy(&c, &proxy, "replica-a", &[&["--identity", "replica-a"][..], &lease[..]].concat())
        .await;
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(c.cluster.client(), "default");
    let holder =
        async || leases.get("watermarkpodautoscaler-lock").await.ok().and_then(|l| l.spec?.holder_identity);
    support::wait_for(20 * SECOND, || async {
        if holder().await.as_deref() == Some("replica-a") {
            Ok(())
        } else {
            Err("a does not lead yet".to_string())
        }
    })
    .await
    .expect("replica-a leads");
    let start_b = async || {
        let args =
            [&["--no-webhook", "--sync-period", "1s", "--identity", "replica-b"][..], &lease[..]].concat();
        WpaServe::start(&c.cluster, "replica-b", None, &args).await.expect("wpa serve b")
    };
    let mut b = start_b().await;
    support::wait_for(30 * SECOND, || async {
        if proxy.triggered().is_empty() { Err("no record yet".to_string()) } else { Ok(()) }
    })
    .await
    .expect("a records its scale");
    let recorded = Instant::now();
    // A GC pause, a frozen VM: a stops for 23 s, past its Lease.
    let signal = |sig: &str, pid: u32| {
        std::process::Command::new("kill").args([sig, &pid.to_string()]).status().expect("kill")
    };
    signal("-STOP", a.pid());
    // b takes over, waits out the window from a's record and scales; then a wakes and gets its answer.
    c.wait_scale("deposed", "app", 3, 30 * SECOND).await.expect("b scales after the window");
    let scaled = Instant::now();
    tokio::time::sleep((23 * SECOND).saturating_sub(recorded.elapsed())).await;
    signal("-CONT", a.pid());
    tokio::time::sleep((27 * SECOND).saturating_sub(recorded.elapsed())).await;
    // b restarts with its identity (re-taking its own Lease at once) and reads the WPA's status afresh.
    b.kill();
    let b = start_b().await;
    let seen = watch_replicas(&c, "deposed", "app", (19 * SECOND).saturating_sub(scaled.elapsed())).await;
    assert_eq!(seen, [3], "no second scale inside the window of b's scale");
    assert!(a.log().contains("not the leader any more"), "a saw it lost the lease: {}", a.log());
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_changed_just_before_the_write_is_decided_again_not_reported_as_failed() {
    let c = ScalingCluster::start().await;
    c.deployment("raced", "app", 2).await.expect("deployment");
    c.metrics.set("app-qps", 2000.0);
    let extra = "  scaleUpLimitFactor: \"50\"\n  upscaleForbiddenWindowSeconds: 60\n";
    c.apply_wpa(&wpa_yaml("raced", "app", "app", "app-qps", "100", "50", extra)).await.unwrap();
    // Just before wpa's first /scale write, someone sets the count to 3: the write's `test` of 2 fails (on
    // 1.20, a 422 whose message says nothing of a test).
    let proxy = devcluster::FaultProxy::start(
        c.cluster.server_url(),
        c.cluster.ca_cert_path(),
        devcluster::Trigger::first_patch("/scale"),
        devcluster::Fault::Race,
    )
    .await
    .expect("proxy");
    let serve = through_proxy(&c, &proxy, "raced", &["--leader-elect=false"]).await;
    // Decided again from 3: 3 -> 4 in the same pass.
    if let Err(e) = c.wait_scale("raced", "app", 4, 30 * SECOND).await {
        panic!("the pass decides again and scales from 3: {e:#}\n{}", serve.log());
    }
    assert_eq!(proxy.triggered(), [422], "the raced write was refused by its test");
    assert!(serve.log().contains("deciding again on fresh data"), "{}", serve.log());
    // The pass posts its events after its /scale write: once its Scaling event is there, so would be a
    // FailedScale of the same pass.
    let events = support::wait_for(10 * SECOND, || async {
        let events =
            c.cluster.kubectl(&["get", "events", "-n", "raced", "-o", "jsonpath={.items[*].reason}"]);
        let events = String::from_utf8_lossy(&events.stdout).to_string();
        if events.contains("Scaling") { Ok(events) } else { Err(events) }
    })
    .await
    .expect("the Scaling event of the pass that scaled");
    assert!(!events.contains("FailedScale"), "no false FailedScale: {events}");
}
