//! The chart's pods as users run them: `helm install` of `charts/wpa` with the `wpa` image on a real node
//! (kubelet, containerd, runc, Debian's CNI plugins, kube-proxy in iptables mode: `devcluster::node`), in both
//! TLS modes. The pods get ready through their real probes, reach the API server with their ServiceAccount,
//! run under the securityContext as runc enforces it, answer admission through the Service (API server →
//! ClusterIP → kube-proxy → pod), scale a real Deployment, and keep admission answering through
//! `helm upgrade`, `kubectl rollout restart` and the death of the leader.
//!
//! The node starts once for this binary (about 15 s) and the tests take turns on it (`support::node`), each
//! in its own namespace; the two releases (one per TLS mode) are installed when a test first needs one.
//! Every test also fails if the node attempted a connection beyond this machine. Needs root; see
//! docs/real-node.md.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Pod};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use support::node::{AdmissionProbe, Release, TlsMode, Turn, dockerfile_contract, turn};
use support::{kubectl_json, kubectl_ok, wait_for};

const SECOND: Duration = Duration::from_secs(1);

fn pod_ip(pod: &Pod) -> IpAddr {
    pod.status.as_ref().and_then(|s| s.pod_ip.as_ref()).and_then(|ip| ip.parse().ok()).expect("a pod IP")
}

/// The runtime's id of the pod's `wpa` container.
fn wpa_container(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.iter().find(|c| c.name == "wpa"))
        .and_then(|c| c.container_id.clone())
        .expect("the wpa container's id")
}

/// The host pid of the pod's `wpa` container.
fn wpa_pid(t: &Turn, pod: &Pod) -> u32 {
    t.node.container_pid(&wpa_container(pod)).expect("the container's process")
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c.iter().map(|c| c.restart_count).sum())
}

fn proc_status(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status")
}

fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status.lines().find_map(|l| l.strip_prefix(&format!("{key}:"))).map_or("", str::trim)
}

/// Sum of the webhook's refusals counted by every pod of the release (read on each pod's IP).
async fn refusals(t: &Turn, release: &Release) -> f64 {
    let mut sum = 0.0;
    for pod in t.pods(release).await {
        let (_, text) = devcluster::http_get_at(SocketAddr::new(pod_ip(&pod), 8080), "/metrics")
            .expect("the pod's /metrics");
        sum += text
            .lines()
            .filter(|l| l.starts_with("wpa_webhook_requests_total{") && l.contains("allowed=\"false\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    sum
}

// ---- Ready through the probes -------------------------------------------------------------------------

async fn pods_become_ready_through_their_probes(mode: TlsMode, test: &str) {
    let mut t = turn(test).await;
    let release = t.release(mode).await;
    let pods = t.pods(&release).await;
    assert_eq!(pods.len(), 2, "the chart's default replicas: {}", t.describe(&release));
    let mut ips: Vec<String> = Vec::new();
    for pod in &pods {
        assert!(devcluster::is_pod_ready(pod), "{} is Ready", pod.name_any());
        assert_eq!(restarts(pod), 0, "{} never restarted:\n{}", pod.name_any(), t.describe(&release));
        // What the kubelet's readiness probe asks, asked of the pod itself.
        let answer = devcluster::http_get_at(SocketAddr::new(pod_ip(pod), 8080), "/readyz").expect("/readyz");
        assert_eq!(answer, (200, "ok\n".to_string()), "{}", pod.name_any());
        ips.push(pod_ip(pod).to_string());
    }
    let endpoints = kubectl_json(t.cluster(), &["-n", &release.namespace, "get", "endpoints", &release.name]);
    let mut listed: Vec<String> = endpoints["subsets"][0]["addresses"]
        .as_array()
        .expect("ready addresses")
        .iter()
        .map(|a| a["ip"].as_str().expect("ip").to_string())
        .collect();
    listed.sort();
    ips.sort();
    assert_eq!(listed, ips, "the Service lists exactly the ready pods");
    let service = kubectl_json(t.cluster(), &["-n", &release.namespace, "get", "service", &release.name]);
    let cluster_ip: IpAddr =
        service["spec"]["clusterIP"].as_str().expect("clusterIP").parse().expect("an IP");
    // kube-proxy programs the endpoints' change a moment after the Endpoints object shows it: a pod of an
    // earlier rollout that still drains (its /readyz answers 503) may be picked until then. Once converged,
    // every connection (iptables picks a backend at random) reaches a ready pod.
    wait_for(30 * SECOND, || async {
        let answers: Vec<u16> = (0..8)
            .map(|_| {
                devcluster::http_get_at(SocketAddr::new(cluster_ip, 8080), "/readyz")
                    .map_or(0, |(code, _)| code)
            })
            .collect();
        if answers.iter().all(|&c| c == 200) { Ok(()) } else { Err(format!("answers {answers:?}")) }
    })
    .await
    .unwrap_or_else(|e| panic!("the ClusterIP leads to a ready pod (kube-proxy): {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_manager_pods_become_ready_through_their_probes() {
    pods_become_ready_through_their_probes(TlsMode::CertManager, "cm-ready").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_pods_become_ready_through_their_probes() {
    pods_become_ready_through_their_probes(TlsMode::SelfSigned, "ss-ready").await;
}

// ---- In-cluster configuration -------------------------------------------------------------------------

async fn pods_reach_the_api_server_with_their_service_account(mode: TlsMode, test: &str) {
    let mut t = turn(test).await;
    let release = t.release(mode).await;
    let pods = t.pods(&release).await;
    let names: Vec<String> = pods.iter().map(ResourceExt::name_any).collect();
    for pod in &pods {
        let pid = wpa_pid(&t, pod);
        let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("the process environment");
        let environ = String::from_utf8_lossy(&environ).replace('\0', "\n");
        assert!(environ.contains("KUBERNETES_SERVICE_HOST=10.0.0.1\n"), "in-cluster: {environ}");
        let cmdline =
            std::fs::read_to_string(format!("/proc/{pid}/cmdline")).expect("cmdline").replace('\0', " ");
        assert!(!cmdline.contains("--kubeconfig"), "no kubeconfig is given: {cmdline}");
        let token = format!("/proc/{pid}/root/var/run/secrets/kubernetes.io/serviceaccount/token");
        assert!(std::fs::metadata(&token).is_ok_and(|m| m.len() > 0), "the ServiceAccount token is mounted");
    }
    // Only the API server, reached with that token, can have given one of them the leader Lease (after a
    // rollout, once the Lease of a pod that is gone has expired).
    let leases: Api<Lease> = Api::namespaced(t.client(), &release.namespace);
    wait_for(30 * SECOND, || async {
        let lease = leases.get("watermarkpodautoscaler-lock").await.map_err(|e| e.to_string())?;
        let holder = lease.spec.and_then(|s| s.holder_identity).unwrap_or_default();
        if names.contains(&holder) { Ok(()) } else { Err(format!("held by {holder:?}, pods {names:?}")) }
    })
    .await
    .unwrap_or_else(|e| panic!("no pod of the release leads: {e}\n{}", t.describe(&release)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_manager_pods_reach_the_api_server_with_their_service_account() {
    pods_reach_the_api_server_with_their_service_account(TlsMode::CertManager, "cm-incluster").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_pods_reach_the_api_server_with_their_service_account() {
    pods_reach_the_api_server_with_their_service_account(TlsMode::SelfSigned, "ss-incluster").await;
}

// ---- securityContext ----------------------------------------------------------------------------------

async fn containers_run_as_the_charts_security_context(mode: TlsMode, test: &str) {
    let mut t = turn(test).await;
    let release = t.release(mode).await;
    for pod in t.pods(&release).await {
        let pid = wpa_pid(&t, &pod);
        let status = proc_status(pid);
        for key in ["Uid", "Gid"] {
            let ids: Vec<&str> = status_field(&status, key).split_whitespace().collect();
            assert_eq!(
                ids, ["65532"; 4],
                "{key} (real, effective, saved, fs): runAsUser/runAsGroup 65532, non-root"
            );
        }
        for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(status_field(&status, key), "0000000000000000", "{key}: capabilities drop ALL");
        }
        assert_eq!(status_field(&status, "NoNewPrivs"), "1", "allowPrivilegeEscalation: false");
        assert_eq!(status_field(&status, "Seccomp"), "2", "seccompProfile RuntimeDefault (a filter)");
        let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
        let root = mountinfo
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .find(|f| f.get(4) == Some(&"/"))
            .expect("the container's root mount");
        assert!(root[5].split(',').any(|o| o == "ro"), "readOnlyRootFilesystem: {}", root.join(" "));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_manager_containers_run_as_the_charts_security_context() {
    containers_run_as_the_charts_security_context(TlsMode::CertManager, "cm-security").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_containers_run_as_the_charts_security_context() {
    containers_run_as_the_charts_security_context(TlsMode::SelfSigned, "ss-security").await;
}

// ---- Admission through the Service --------------------------------------------------------------------

async fn a_bad_wpa_is_refused_by_the_pods_through_the_service(mode: TlsMode, test: &str) {
    let mut t = turn(test).await;
    let release = t.release(mode).await;
    let before = refusals(&t, &release).await;
    let bad = wpa::devtools::wpa_yaml(&t.namespace, "bad", "web", "qps", "50", "100", "  minReplicas: 20\n");
    let refused = t.cluster().kubectl_apply(&bad).expect_err("an invalid WPA is refused");
    assert!(
        refused.contains(r#"admission webhook "validate-wpa.datadoghq.com" denied the request: spec.maxReplicas: watermark pod autoscaler requires the minimum number of replicas to be configured and inferior to the maximum"#),
        "{refused}"
    );
    assert!(refused.contains("lowWatermark"), "every problem is named: {refused}");
    assert_eq!(refusals(&t, &release).await, before + 1.0, "one of the release's pods refused it");
    // The API server called the Service's ClusterIP; kube-proxy sent it to a pod's 8443 (no aggregator
    // routing on a real node).
    let service = kubectl_json(t.cluster(), &["-n", &release.namespace, "get", "service", &release.name]);
    let cluster_ip = service["spec"]["clusterIP"].as_str().expect("clusterIP").to_string();
    let tracked = devcluster::process::run(
        "conntrack",
        &["-L", "-p", "tcp", "--orig-dst", &cluster_ip, "--orig-port-dst", "443"],
    )
    .expect("conntrack");
    let pod_ips: Vec<String> = t.pods(&release).await.iter().map(|p| pod_ip(p).to_string()).collect();
    assert!(
        tracked
            .lines()
            .any(|l| pod_ips.iter().any(|ip| l.contains(&format!("src={ip} "))) && l.contains("sport=8443")),
        "a connection to {cluster_ip}:443 answered by a pod's 8443 ({pod_ips:?}):\n{tracked}"
    );
    let good = wpa::devtools::wpa_yaml(&t.namespace, "good", "web", "qps", "100", "50", "");
    t.cluster().kubectl_apply(&good).expect("a valid WPA is admitted");
    let stored = kubectl_json(t.cluster(), &["-n", &t.namespace, "get", "wpa", "good"]);
    assert_eq!(stored["spec"]["tolerance"], "100m", "defaulted by the mutating webhook: {stored:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_manager_a_bad_wpa_is_refused_by_the_pods_through_the_service() {
    a_bad_wpa_is_refused_by_the_pods_through_the_service(TlsMode::CertManager, "cm-admission").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_a_bad_wpa_is_refused_by_the_pods_through_the_service() {
    a_bad_wpa_is_refused_by_the_pods_through_the_service(TlsMode::SelfSigned, "ss-admission").await;
}

// ---- Scaling a real Deployment ------------------------------------------------------------------------

async fn a_wpa_scales_a_real_deployment_through_a_metric_burst(mode: TlsMode, test: &str) {
    let mut t = turn(test).await;
    let release = t.release(mode).await;
    let metrics = t.node.metrics().expect("the synthetic metrics provider").clone();
    let metric = format!("{test}-qps");
    metrics.set(&metric, 40.0);
    t.pause_deployment("web", 1).await;
    let extra = "  upscaleForbiddenWindowSeconds: 5\n  downscaleForbiddenWindowSeconds: 5\n  \
                 scaleUpLimitFactor: \"200\"\n  scaleDownLimitFactor: \"99\"\n";
    let wpa = wpa::devtools::wpa_yaml(&t.namespace, "web", "web", &metric, "100", "50", extra);
    t.cluster().kubectl_apply(&wpa).expect("the WPA");
    // The burst: ceil(1 × 300 / 100) = 3 replicas, really running (the kubelet reports them Ready).
    let begin = Instant::now();
    metrics.set(&metric, 300.0);
    t.wait_ready_pods("web", 3, 90 * SECOND)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", t.describe(&release)));
    assert_eq!(t.replicas("web").await, 3);
    eprintln!("scaled up to 3 ready pods in {:.1} s", begin.elapsed().as_secs_f64());
    // The lull: floor(3 × 10 / 50) = 0, the minimum is 1.
    let begin = Instant::now();
    metrics.set(&metric, 10.0);
    t.wait_ready_pods("web", 1, 90 * SECOND)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", t.describe(&release)));
    assert_eq!(t.replicas("web").await, 1);
    eprintln!("scaled down to 1 in {:.1} s", begin.elapsed().as_secs_f64());
    let events =
        kubectl_ok(t.cluster(), &["-n", &t.namespace, "get", "events", "-o", "jsonpath={.items[*].reason}"]);
    assert!(events.contains("SuccessfulScale") || events.contains("Scaling"), "the WPA's events: {events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_manager_a_wpa_scales_a_real_deployment_through_a_metric_burst() {
    a_wpa_scales_a_real_deployment_through_a_metric_burst(TlsMode::CertManager, "cm-scale").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_a_wpa_scales_a_real_deployment_through_a_metric_burst() {
    a_wpa_scales_a_real_deployment_through_a_metric_burst(TlsMode::SelfSigned, "ss-scale").await;
}

// ---- Logs ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_manager_json_logs_are_read_with_kubectl_logs() {
    let mut t = turn("cm-logs").await;
    let release = t.release(TlsMode::CertManager).await;
    for pod in t.pods(&release).await {
        let logs = t.logs(&release, &pod.name_any());
        let lines: Vec<Value> = logs
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
            .collect();
        assert!(lines.iter().any(|l| l["message"] == "caches synced"), "{logs}");
        assert!(lines.iter().any(|l| l["message"] == "serving certificate loaded"), "{logs}");
    }
}

/// A container's stderr is a pipe, not a terminal: the text format must not write colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_text_logs_carry_no_colour_codes() {
    let mut t = turn("ss-logs").await;
    let release = t.release(TlsMode::SelfSigned).await;
    for pod in t.pods(&release).await {
        let logs = t.logs(&release, &pod.name_any());
        assert!(logs.contains("caches synced"), "{logs}");
        assert!(!logs.contains('\u{1b}'), "an escape sequence in the container log:\n{logs:?}");
    }
}

// ---- Rollouts -----------------------------------------------------------------------------------------

async fn upgrades_and_restarts_refuse_no_admission(mode: TlsMode, test: &str) {
    let mut t = turn(test).await;
    let release = t.release(mode).await;
    let probe = AdmissionProbe::start(t.client(), &t.namespace, Duration::from_millis(200));
    tokio::time::sleep(2 * SECOND).await;
    // helm upgrade with a changed pod template: a rolling update.
    let mut values = release.values.clone();
    values["podAnnotations"] = json!({"wpa.test/upgrade": test});
    let begin = Instant::now();
    t.helm("upgrade", &release, &values);
    t.wait_rollout(&release, 180 * SECOND).await.unwrap_or_else(|e| panic!("{e}\n{}", t.describe(&release)));
    let upgrade = begin.elapsed();
    let begin = Instant::now();
    kubectl_ok(
        t.cluster(),
        &["-n", &release.namespace, "rollout", "restart", &format!("deployment/{}", release.name)],
    );
    tokio::time::sleep(SECOND).await;
    t.wait_rollout(&release, 180 * SECOND).await.unwrap_or_else(|e| panic!("{e}\n{}", t.describe(&release)));
    let restart = begin.elapsed();
    tokio::time::sleep(2 * SECOND).await;
    let (requests, failures) = probe.finish().await;
    eprintln!(
        "{requests} WPA creates over helm upgrade ({:.1} s) and rollout restart ({:.1} s), {} refused",
        upgrade.as_secs_f64(),
        restart.as_secs_f64(),
        failures.len()
    );
    assert!(requests >= 20, "{requests} creates");
    assert!(failures.is_empty(), "admission failed during the rollouts: {failures:#?}");
    assert_eq!(t.pods(&release).await.len(), 2, "the chart's default replicas");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_manager_helm_upgrade_and_rollout_restart_refuse_no_admission() {
    upgrades_and_restarts_refuse_no_admission(TlsMode::CertManager, "cm-rollout").await;
}

/// Failed before the installation shared one CA: each new pod injected a CA of its own while the old pods,
/// serving the old CA's certificates, were still the Service's endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_helm_upgrade_and_rollout_restart_refuse_no_admission() {
    upgrades_and_restarts_refuse_no_admission(TlsMode::SelfSigned, "ss-rollout").await;
}

// ---- The leader's death -------------------------------------------------------------------------------

/// The leader's container is killed hard (SIGKILL through containerd: it cannot give the Lease up, as in an
/// OOM kill or a node lost) and its pod force-deleted so that it does not come back under the same identity,
/// while its WPA is scaling step by step. Another replica takes over once the Lease expires, and picks the
/// scaling up where it stopped: no two scale changes closer than the WPA's forbidden window. Admission fails
/// only while the Service still routes to the dead pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_manager_a_killed_leader_is_replaced_within_the_lease_without_doubled_scaling() {
    const WINDOW: Duration = Duration::from_secs(20);
    const LEASE: Duration = Duration::from_secs(15);
    const RETRY: Duration = Duration::from_secs(2);
    let mut t = turn("cm-leader").await;
    let release = t.release(TlsMode::CertManager).await;
    let metrics = t.node.metrics().expect("the synthetic metrics provider").clone();
    metrics.set("leader-qps", 40.0);
    t.pause_deployment("steps", 1).await;
    let extra = format!("  upscaleForbiddenWindowSeconds: {}\n  maxReplicas: 12\n", WINDOW.as_secs());
    let wpa = wpa::devtools::wpa_yaml(&t.namespace, "steps", "steps", "leader-qps", "100", "50", "")
        .replace("  maxReplicas: 10\n", &extra);
    t.cluster().kubectl_apply(&wpa).expect("the WPA");
    let probe = AdmissionProbe::start(t.client(), &t.namespace, Duration::from_millis(200));

    // Every change of the target's replicas, with when it was seen (polled every 100 ms).
    let changes = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(Instant, i32)>::new()));
    let watcher = {
        let (changes, client, ns) = (changes.clone(), t.client(), t.namespace.clone());
        tokio::spawn(async move {
            let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client, &ns);
            let mut last = 1;
            loop {
                if let Ok(scale) = api.get_scale("steps").await {
                    let now = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
                    if now != last {
                        changes.lock().unwrap().push((Instant::now(), now));
                        last = now;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let steps = |n: usize| {
        let changes = changes.clone();
        async move {
            wait_for(3 * WINDOW + 30 * SECOND, || async {
                let seen = changes.lock().unwrap().len();
                if seen >= n { Ok(()) } else { Err(format!("{seen} scale changes")) }
            })
            .await
        }
    };
    // Far above the high watermark: the WPA scales up by its limit (+50 %) once per forbidden window.
    metrics.set("leader-qps", 1000.0);
    steps(1).await.unwrap_or_else(|e| panic!("{e}\n{}", t.describe(&release)));

    let leases: Api<Lease> = Api::namespaced(t.client(), &release.namespace);
    // The Lease's holder and its last renewal.
    let lease = || async {
        let spec = leases.get("watermarkpodautoscaler-lock").await.ok().and_then(|l| l.spec);
        let renewed = spec.as_ref().and_then(|s| s.renew_time.clone()).map(|t| t.0);
        (spec.and_then(|s| s.holder_identity).unwrap_or_default(), renewed)
    };
    let holder = || async { lease().await.0 };
    let leader = holder().await;
    let pods = t.pods(&release).await;
    let leader_pod = pods
        .iter()
        .find(|p| p.name_any() == leader)
        .unwrap_or_else(|| panic!("the leader {leader} is a pod"));
    let container = wpa_container(leader_pod);
    let leader_ip = leader_pod.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("the leader's IP");
    let killed = Instant::now();
    let killed_at = probe.elapsed();
    t.node.kill_container(&container).expect("SIGKILL the leader's container");
    let renewed_before_the_kill = lease().await.1;
    kubectl_ok(
        t.cluster(),
        &["-n", &release.namespace, "delete", "pod", &leader, "--force", "--grace-period=0", "--wait=false"],
    );
    // The kubelet may restart the killed container before the force-deletion reaches it (the first restart
    // has no back-off); under the same identity it renews the Lease, then gives it up at its SIGTERM.
    let restarted = std::sync::atomic::AtomicBool::new(false);
    let takeover = async {
        let new_leader = wait_for(LEASE + RETRY + 10 * SECOND, || async {
            let (now, renewed) = lease().await;
            if (now == leader || now.is_empty()) && renewed > renewed_before_the_kill {
                restarted.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            if !now.is_empty() && now != leader { Ok(now) } else { Err(format!("held by {now:?}")) }
        })
        .await;
        (new_leader, killed.elapsed())
    };
    // Meanwhile, when the Service stops listing the dead pod (since the probe's start): the end of the only
    // window in which admission may fail.
    let endpoints: Api<k8s_openapi::api::core::v1::Endpoints> =
        Api::namespaced(t.client(), &release.namespace);
    let unlisted = wait_for(60 * SECOND, || async {
        let listed = endpoints.get(&release.name).await.map_err(|e| e.to_string())?;
        let mut addresses = listed.subsets.unwrap_or_default().into_iter().flat_map(|s| {
            s.addresses.unwrap_or_default().into_iter().chain(s.not_ready_addresses.unwrap_or_default())
        });
        if addresses.any(|a| a.ip == leader_ip) {
            Err(format!("{leader_ip} still listed"))
        } else {
            Ok(probe.elapsed())
        }
    });
    let ((new_leader, takeover), unlisted_at) = tokio::join!(takeover, unlisted);
    let new_leader = new_leader
        .unwrap_or_else(|e| panic!("nobody took over from {leader}: {e}\n{}", t.describe(&release)));
    let unlisted_at = unlisted_at.unwrap_or_else(|e| panic!("the dead pod stays an endpoint: {e}"));
    eprintln!("{new_leader} took over from {leader} {:.1} s after the kill", takeover.as_secs_f64());
    // The others take over once they have seen the Lease unrenewed for its duration: its last renewal was at
    // most a retry period before the kill, they see a renewal up to a retry period late, and they look once per
    // retry period (LEASE + 2 × RETRY), plus 3 s for timers and API calls on a loaded machine.
    assert!(takeover <= LEASE + 2 * RETRY + 3 * SECOND, "taken over within the lease: {takeover:?}");
    // And not sooner than the Lease's expiry allows (its last renewal up to a retry period, plus one renewal's
    // latency, before the kill): a killed process cannot hand the Lease over, as a stopped one does.
    if restarted.into_inner() {
        eprintln!(
            "the killed container was restarted and renewed the Lease before its pod went: no expiry to wait for"
        );
    } else {
        assert!(takeover >= LEASE - 2 * RETRY, "taken over only once the Lease expired: {takeover:?}");
    }

    // Two more steps under the new leader.
    steps(3).await.unwrap_or_else(|e| panic!("{e}\n{}", t.describe(&release)));
    watcher.abort();
    let (requests, failures) = probe.finish().await;
    let changes = changes.lock().unwrap().clone();
    let gaps: Vec<Duration> = changes.windows(2).map(|w| w[1].0 - w[0].0).collect();
    eprintln!(
        "scale changes {:?}, gaps {gaps:?}; {requests} WPA creates, {} refused",
        changes.iter().map(|c| c.1).collect::<Vec<_>>(),
        failures.len()
    );
    // lastScaleTime has a resolution of a second; the poll adds up to 100 ms on each side.
    for gap in &gaps {
        assert!(*gap >= WINDOW - Duration::from_millis(1300), "two scale changes {gap:?} apart: {changes:?}");
    }
    // A process killed hard cannot drain: a call in flight is cut (reset, EOF; one sent up to a second before
    // the kill), and until the endpoints drop its pod and kube-proxy follows (its sync, up to a few seconds on
    // a loaded machine) the Service still sends it connections, which are refused, or find no host once the
    // deleted pod's network is gone; the API server (1.20) retries none of them. That window is the only
    // place admission may fail.
    let window = killed_at.saturating_sub(SECOND)..=unlisted_at + 3 * SECOND;
    eprintln!(
        "the dead pod left the Service's endpoints {:.1} s after the kill",
        unlisted_at.saturating_sub(killed_at).as_secs_f64()
    );
    let outside: Vec<_> = failures
        .iter()
        .filter(|(at, e)| {
            let dead_pod = ["connection refused", "connection reset", "EOF", "no route to host"]
                .iter()
                .any(|m| e.contains(m));
            !(window.contains(at) && dead_pod)
        })
        .collect();
    eprintln!(
        "admission failures while the Service routed to the dead pod: {}",
        failures.len() - outside.len()
    );
    assert!(outside.is_empty(), "admission failed besides the dead pod's refused connections: {failures:#?}");
    t.wait_rollout(&release, 120 * SECOND).await.unwrap_or_else(|e| panic!("{e}"));
}

// ---- The self-signed installation CA ------------------------------------------------------------------

/// Both replicas serve certificates of the one CA in the release's Secret, whose bundle the webhook
/// configurations hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_replicas_serve_certificates_of_the_installations_ca() {
    let mut t = turn("ss-ca").await;
    let release = t.release(TlsMode::SelfSigned).await;
    let secret_name = format!("{}-webhook-ca", release.name);
    let secret = kubectl_json(t.cluster(), &["-n", &release.namespace, "get", "secret", &secret_name]);
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let decode = |v: &Value| -> String {
        let raw =
            base64::engine::general_purpose::STANDARD.decode(v.as_str().expect("base64")).expect("base64");
        String::from_utf8(raw).expect("PEM")
    };
    let bundle = decode(&secret["data"]["ca.crt"]);
    assert_eq!(decode(&secret["data"]["tls.crt"]).trim(), bundle.trim(), "one CA, no rotation yet");
    for kind in ["validatingwebhookconfiguration", "mutatingwebhookconfiguration"] {
        let config = kubectl_json(t.cluster(), &["get", kind, &release.name]);
        for hook in config["webhooks"].as_array().expect("webhooks") {
            assert_eq!(
                decode(&hook["clientConfig"]["caBundle"]),
                bundle,
                "{kind} trusts the Secret's bundle"
            );
        }
    }
    let pods = t.pods(&release).await;
    assert_eq!(pods.len(), 2);
    for pod in &pods {
        let addr = SocketAddr::new(pod_ip(pod), 8443);
        support::tls_handshake(addr, &release.service_dns(), &bundle)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", pod.name_any()));
    }
}

/// Failed before `--inject-ca` waited: the new pod exited at once (CrashLoopBackOff) because a webhook
/// configuration was missing. Now it waits, unready, says why in its log, and becomes ready once the
/// configuration exists; the old pods keep answering admission meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_inject_ca_waits_for_a_missing_webhook_configuration_instead_of_crashing() {
    let mut t = turn("ss-inject").await;
    let release = t.release(TlsMode::SelfSigned).await;
    let kind = "mutatingwebhookconfiguration";
    let mut saved = kubectl_json(t.cluster(), &["get", kind, &release.name]);
    let metadata = saved["metadata"].as_object_mut().expect("metadata");
    for key in ["resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"] {
        metadata.remove(key);
    }
    let old_pods: Vec<String> = t.pods(&release).await.iter().map(ResourceExt::name_any).collect();
    kubectl_ok(t.cluster(), &["delete", kind, &release.name]);
    let probe = AdmissionProbe::start(t.client(), &t.namespace, Duration::from_millis(500));
    kubectl_ok(
        t.cluster(),
        &["-n", &release.namespace, "rollout", "restart", &format!("deployment/{}", release.name)],
    );

    let new_pod = wait_for(60 * SECOND, || async {
        let pods = t.pods(&release).await;
        pods.into_iter()
            .find(|p| {
                !old_pods.contains(&p.name_any())
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            })
            .ok_or_else(|| "no new pod running".to_string())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", t.describe(&release)));
    let name = new_pod.name_any();
    // Long enough for a crash loop to show (the process used to exit within a second of its start).
    tokio::time::sleep(15 * SECOND).await;
    let pods: Api<Pod> = Api::namespaced(t.client(), &release.namespace);
    let waiting = pods.get(&name).await.expect("the new pod");
    assert_eq!(restarts(&waiting), 0, "the new pod did not restart:\n{}", t.describe(&release));
    assert!(!devcluster::is_pod_ready(&waiting), "unready until the CA bundle is injected");
    let log = t.logs(&release, &name);
    assert!(
        log.contains(&format!("MutatingWebhookConfiguration {} does not exist", release.name)),
        "the log says what it waits for:\n{log}"
    );

    t.cluster().kubectl_apply(&saved.to_string()).expect("the configuration is back");
    t.wait_rollout(&release, 90 * SECOND).await.unwrap_or_else(|e| panic!("{e}\n{}", t.describe(&release)));
    let ready = pods.get(&name).await.expect("the new pod");
    assert!(devcluster::is_pod_ready(&ready) && restarts(&ready) == 0, "ready without a restart");
    let (requests, failures) = probe.finish().await;
    assert!(failures.is_empty(), "the old pods kept answering ({requests} creates): {failures:#?}");
}

// ---- The image ----------------------------------------------------------------------------------------

/// The image made here carries the Dockerfile's runtime contract (user, entrypoint, command, ports), the
/// chart's container ports are the ports the Dockerfile exposes, and the pods run its entrypoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wpa_image_follows_the_dockerfiles_runtime_contract() {
    let mut t = turn("image").await;
    let release = t.release(TlsMode::SelfSigned).await;
    let contract = dockerfile_contract();
    let name = format!("{}:{}", support::node::WPA_REPOSITORY, support::node::WPA_TAG);
    let images = t.node.ctr(&["images", "ls"]).expect("ctr images ls");
    let digest = images
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("sha256:")))
        .unwrap_or_else(|| panic!("{name} in containerd:\n{images}"))
        .to_string();
    let manifest: Value =
        serde_json::from_str(&t.node.ctr(&["content", "get", &digest]).expect("the manifest"))
            .expect("manifest JSON");
    let config_digest = manifest["config"]["digest"].as_str().expect("config digest");
    let config: Value =
        serde_json::from_str(&t.node.ctr(&["content", "get", config_digest]).expect("the config"))
            .expect("config JSON");
    let c = &config["config"];
    assert_eq!(c["User"].as_str(), contract.user.as_deref(), "{config:#}");
    assert_eq!(c["Entrypoint"], json!(contract.entrypoint));
    assert_eq!(c["Cmd"], json!(contract.cmd));
    let mut exposed: Vec<String> =
        c["ExposedPorts"].as_object().expect("ExposedPorts").keys().cloned().collect();
    exposed.sort();
    let mut want = contract.exposed_ports.clone();
    want.sort();
    assert_eq!(exposed, want);

    let deployment =
        kubectl_json(t.cluster(), &["-n", &release.namespace, "get", "deployment", &release.name]);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut ports: Vec<String> = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| format!("{}/{}", p["containerPort"], p["protocol"].as_str().unwrap_or("TCP").to_lowercase()))
        .collect();
    ports.sort();
    assert_eq!(ports, want, "the chart's container ports are the Dockerfile's EXPOSE");
    assert_eq!(container["args"][0], json!(contract.cmd[0]), "the chart's command is the Dockerfile's CMD");
    let pod = t.pods(&release).await.into_iter().next().expect("a pod");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", wpa_pid(&t, &pod))).expect("cmdline");
    let argv: Vec<String> =
        cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    assert_eq!(argv[0], contract.entrypoint[0], "the container runs the Dockerfile's ENTRYPOINT: {argv:?}");
    assert_eq!(argv[1], "serve");
}

/// An image the node does not have is asked of the closed loopback port every registry is mapped to
/// (containerd's `hosts.toml`), never of the registry it names: the pull fails at 127.0.0.1:1, for Docker
/// Hub and for any other registry, and the turn's check finds no connection beyond the machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_not_on_the_node_is_asked_of_the_closed_loopback_registry_only() {
    let t = turn("no-pull").await;
    let images = ["docker.io/library/busybox:1.36", "quay.io/prometheus/busybox:latest"];
    let containers: Vec<String> = images
        .iter()
        .enumerate()
        .map(|(i, image)| format!("{{name: c{i}, image: {image}, imagePullPolicy: Always}}"))
        .collect();
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: pull, namespace: {ns}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{}]\n",
        containers.join(", "),
        ns = t.namespace
    );
    t.cluster().kubectl_apply(&pod).unwrap_or_else(|e| panic!("{e}"));
    let pods: Api<Pod> = Api::namespaced(t.node.client(), &t.namespace);
    let messages = wait_for(Duration::from_secs(60), || async {
        let pod = pods.get("pull").await.map_err(|e| e.to_string())?;
        let statuses = pod.status.and_then(|s| s.container_statuses).unwrap_or_default();
        let messages: Vec<String> = statuses
            .iter()
            .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.message.clone())
            .filter(|m| m.contains("pull"))
            .collect();
        if messages.len() == images.len() { Ok(messages) } else { Err(format!("{statuses:?}")) }
    })
    .await
    .unwrap_or_else(|e| panic!("both pulls fail: {e}\n{}", t.node.log_tails(20)));
    for message in &messages {
        assert!(message.contains("127.0.0.1:1"), "asked of the loopback port: {message}");
        assert!(
            !message.contains("registry-1.docker.io") && !message.contains("https://quay.io"),
            "{message}"
        );
    }
}
