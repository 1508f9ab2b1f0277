//! The admission webhook end to end: a real kube-apiserver calls `wpa serve` over TLS when `kubectl apply`
//! runs. Defaults land in stored objects, refusals reach the user with the exact message, warnings show,
//! `--dry-run=server` works, and a certificate rotation during a stream of requests loses none.
//!
//! The tests that leave the webhook serving share one cluster and one `wpa serve`, each in its own
//! namespace; those that stop the server or point the webhooks elsewhere have a cluster of their own.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use serde_json::Value;
use support::{
    Shared, StartWpa, TestCluster, TestNamespace, WEB_WPA, WpaServe,
    tls::{kubelet_write, leaf_der},
    wait_for, webhook_configurations,
};
use wpa::{api::WatermarkPodAutoscaler, runtime::tls::CertAuthority};

fn kubectl_apply(cluster: &TestCluster, yaml: &str, extra: &[&str]) -> (bool, String, String) {
    use std::io::Write;
    let mut args = vec![
        "--kubeconfig".to_string(),
        cluster.kubeconfig_path().display().to_string(),
        "apply".into(),
        "-f".into(),
        "-".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut child = std::process::Command::new(cluster.bin_dir().join("kubectl"))
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl");
    child.stdin.take().expect("stdin").write_all(yaml.as_bytes()).expect("write the manifest");
    let out = child.wait_with_output().expect("kubectl output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kubectl_json(cluster: &TestCluster, args: &[&str]) -> Value {
    let out = cluster.kubectl(args);
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("kubectl -o json")
}

fn deployment(namespace: &str, name: &str, replicas: u32, annotations: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {namespace}
  annotations: {annotations}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: c, image: nginx}}]}}
"#
    )
}

/// The cluster with the CRD, the shipped webhook configurations pointed at a `wpa serve --self-signed
/// --inject-ca` (which writes its CA into them).
async fn cluster_with_webhook_on(cluster: TestCluster, extra: &[&str]) -> (TestCluster, WpaServe) {
    cluster.install_crd(wpa::api::crd()).await.expect("install the CRD");
    // Registered first: `--inject-ca` patches them at start.
    let args = [&["--no-reconciler"][..], extra].concat();
    let (serve, ca_out) = support::start_with_webhook(&cluster, "webhook", &args).await.expect("wpa serve");
    let injected = kubectl_json(&cluster, &["get", "validatingwebhookconfiguration", "wpa", "-o", "json"]);
    let ca = std::fs::read_to_string(&ca_out).expect("the CA bundle file");
    for hook in injected["webhooks"].as_array().expect("webhooks") {
        use base64::Engine;
        let bundle = base64::engine::general_purpose::STANDARD
            .decode(hook["clientConfig"]["caBundle"].as_str().expect("injected"))
            .expect("base64");
        assert_eq!(
            String::from_utf8(bundle).expect("PEM"),
            ca,
            "--inject-ca wrote the CA it wrote to --ca-bundle-out"
        );
    }
    (cluster, serve)
}

/// The binary's cluster with the webhook: the tests that leave it serving share it, each in its own
/// namespace (the webhooks are cluster-wide, and the target index answers per namespace).
struct Webhooked {
    serve: WpaServe,
    cluster: TestCluster,
}

static WEBHOOKED: Shared<Webhooked> = Shared::new();

async fn webhooked() -> Arc<Webhooked> {
    WEBHOOKED
        .get(|| async {
            let (cluster, serve) = cluster_with_webhook_on(TestCluster::start().await, &[]).await;
            Webhooked { serve, cluster }
        })
        .await
}

/// WEB_WPA in namespace `ns`, named `name` (on Deployment `name` too when `own_target`).
fn web_wpa(ns: &str, name: &str, own_target: bool) -> String {
    let wpa =
        WEB_WPA.replace("{name: web, namespace: default}", &format!("{{name: {name}, namespace: {ns}}}"));
    if own_target { wpa.replace("name: web}", &format!("name: {name}}}")) } else { wpa }
}

/// Waits until the webhook's target index has seen a WPA on Deployment `target` of `ns` (a server dry
/// run of another WPA on it is refused).
async fn wait_governed(cluster: &TestCluster, ns: &str, target: &str) {
    let probe = web_wpa(ns, "probe", false).replace("name: web}", &format!("name: {target}}}"));
    wait_for(Duration::from_secs(10), || {
        let probe = probe.clone();
        async move {
            let (ok, _, err) = kubectl_apply(cluster, &probe, &["--dry-run=server"]);
            if !ok && err.contains("is already scaled by") { Ok(()) } else { Err(format!("{ok} {err}")) }
        }
    })
    .await
    .expect("the webhook sees the WPA");
}

#[tokio::test]
async fn the_mutating_webhook_stores_defaults_and_keeps_values_the_user_set() {
    let w = webhooked().await;
    let ns = TestNamespace::create(&w.cluster).await;
    let (ok, _, err) = kubectl_apply(&w.cluster, &web_wpa(&ns, "web", false), &[]);
    assert!(ok, "{err}\n{}", w.serve.log());
    let stored = kubectl_json(&w.cluster, &["get", "wpa", "web", "-n", &ns, "-o", "json"]);
    let spec = &stored["spec"];
    assert_eq!(spec["minReplicas"], 2, "a value the user set is kept");
    assert_eq!(spec["algorithm"], "absolute");
    assert_eq!(spec["tolerance"], "100m");
    assert_eq!(spec["scaleUpLimitFactor"], "50");
    assert_eq!(spec["scaleDownLimitFactor"], "20");
    assert_eq!(spec["downscaleForbiddenWindowSeconds"], 300);
    assert_eq!(spec["upscaleForbiddenWindowSeconds"], 60);
    assert_eq!(spec["replicaScalingAbsoluteModulo"], 1);
}

#[tokio::test]
async fn applying_the_same_manifest_again_changes_nothing() {
    let w = webhooked().await;
    let ns = TestNamespace::create(&w.cluster).await;
    let wpa = web_wpa(&ns, "web", false);
    let (ok, _, err) = kubectl_apply(&w.cluster, &wpa, &[]);
    assert!(ok, "{err}\n{}", w.serve.log());
    let (ok, out, _) = kubectl_apply(&w.cluster, &wpa, &[]);
    assert!(ok && out.contains("unchanged"), "{out}");
}

#[tokio::test]
async fn an_invalid_wpa_is_refused_with_the_exact_message() {
    let w = webhooked().await;
    let ns = TestNamespace::create(&w.cluster).await;
    let (ok, _, err) = kubectl_apply(
        &w.cluster,
        &web_wpa(&ns, "bad", false).replace("minReplicas: 2", "minReplicas: 20"),
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains(r#"admission webhook "validate-wpa.datadoghq.com" denied the request: spec.maxReplicas: watermark pod autoscaler requires the minimum number of replicas to be configured and inferior to the maximum"#),
        "{err}"
    );
}

#[tokio::test]
async fn an_unsupported_algorithm_is_refused_also_in_a_server_dry_run() {
    let w = webhooked().await;
    let ns = TestNamespace::create(&w.cluster).await;
    let typo =
        web_wpa(&ns, "typo", false).replace("  maxReplicas: 10", "  maxReplicas: 10\n  algorithm: Average");
    let (ok, _, err) = kubectl_apply(&w.cluster, &typo, &[]);
    assert!(!ok);
    assert!(
        err.contains(
            r#"spec.algorithm: unsupported value "Average": supported values: "absolute", "average""#
        ),
        "{err}"
    );
    let (ok, _, err) = kubectl_apply(&w.cluster, &typo, &["--dry-run=server"]);
    assert!(
        !ok && err.contains(r#"spec.algorithm: unsupported value "Average""#),
        "--dry-run=server gets the same refusal: {err}"
    );
}

#[tokio::test]
async fn a_server_dry_run_shows_the_defaults_and_stores_nothing() {
    let w = webhooked().await;
    let ns = TestNamespace::create(&w.cluster).await;
    let fresh = web_wpa(&ns, "preview", true);
    let (ok, out, err) = kubectl_apply(&w.cluster, &fresh, &["--dry-run=server", "-o", "json"]);
    assert!(ok, "{err}");
    let preview: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(preview["spec"]["tolerance"], "100m");
    let gone = w.cluster.kubectl(&["get", "wpa", "preview", "-n", &ns]);
    assert!(!gone.status.success(), "a dry run creates nothing");
}

/// `kubectl apply` of `manifest`, refused: the webhook's index learns of the other autoscaler through a
/// watch, so server dry runs probe until it refuses (a real apply accepted too early would create the
/// object and turn every retry into an unchanged no-op), then the real apply's error.
async fn refused_once_seen(cluster: &TestCluster, manifest: &str) -> String {
    wait_for(Duration::from_secs(10), || async {
        let (ok, _, err) = kubectl_apply(cluster, manifest, &["--dry-run=server"]);
        if !ok && err.contains("is already scaled by") { Ok(()) } else { Err(format!("{ok} {err}")) }
    })
    .await
    .expect("refused once the webhook has seen the other autoscaler");
    let (ok, _, err) = kubectl_apply(cluster, manifest, &[]);
    assert!(!ok, "a refused server dry run, then an accepted apply");
    err
}

#[tokio::test]
async fn a_second_wpa_on_the_same_target_is_refused_naming_the_first() {
    let w = webhooked().await;
    let ns = TestNamespace::create(&w.cluster).await;
    let (ok, _, err) = kubectl_apply(&w.cluster, &web_wpa(&ns, "web", false), &[]);
    assert!(ok, "{err}");
    // Refused once the cache has seen the first.
    let err = refused_once_seen(&w.cluster, &web_wpa(&ns, "web-2", false)).await;
    assert!(
        err.contains(&format!(
            "spec.scaleTargetRef: Deployment/web is already scaled by WatermarkPodAutoscaler {ns}/web"
        )),
        "{err}"
    );
}

/// An HPA on Deployment api of `ns`.
fn hpa(ns: &str) -> String {
    format!(
        r#"
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata: {{name: hpa-api, namespace: {ns}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: api}}
  maxReplicas: 5
  targetCPUUtilizationPercentage: 50
"#
    )
}

#[tokio::test]
async fn a_wpa_on_a_deployment_an_hpa_scales_is_refused_naming_the_hpa() {
    let w = webhooked().await;
    let ns = TestNamespace::create(&w.cluster).await;
    w.cluster.kubectl_apply(&hpa(&ns)).expect("an HPA");
    let err = refused_once_seen(&w.cluster, &web_wpa(&ns, "api", true)).await;
    assert!(
        err.contains(&format!("Deployment/api is already scaled by HorizontalPodAutoscaler {ns}/hpa-api")),
        "{err}"
    );
}

#[tokio::test]
async fn allow_conflicting_autoscaler_accepts_a_wpa_beside_an_hpa_with_a_warning() {
    let w = webhooked().await;
    let ns = TestNamespace::create(&w.cluster).await;
    w.cluster.kubectl_apply(&hpa(&ns)).expect("an HPA");
    let accepted = web_wpa(&ns, "api", true).replace(
        &format!("namespace: {ns}}}"),
        &format!(
            "namespace: {ns}, annotations: {{wpa.datadoghq.com/allow-conflicting-autoscaler: \"true\"}}}}"
        ),
    );
    // Once the webhook has seen the HPA, the warning names it.
    let err = wait_for(Duration::from_secs(10), || {
        let (cluster, accepted) = (&w.cluster, accepted.clone());
        async move {
            let (ok, _, err) = kubectl_apply(cluster, &accepted, &["--dry-run=server"]);
            if !ok {
                panic!("the annotation accepts the conflict: {err}");
            }
            if err.contains("Warning") { Ok(err) } else { Err(err) }
        }
    })
    .await
    .expect("a warning");
    assert!(
        err.contains(&format!(
            "Warning: Deployment/api is also scaled by HorizontalPodAutoscaler {ns}/hpa-api"
        )),
        "{err}"
    );
    let (ok, _, err) = kubectl_apply(&w.cluster, &accepted, &[]);
    assert!(ok, "the annotation accepts the conflict: {err}");
    assert!(
        err.contains(&format!(
            "Warning: Deployment/api is also scaled by HorizontalPodAutoscaler {ns}/hpa-api"
        )),
        "{err}"
    );
}

/// In `ns`: Deployment api, WPA api on it, then HPA hpa-api on it (so the WPA came first), once the webhook
/// has seen the HPA (a server dry run of a new WPA on api is refused naming it).
async fn wpa_then_hpa(cluster: &TestCluster, ns: &str) {
    let (ok, _, err) = kubectl_apply(cluster, &deployment(ns, "api", 2, "{}"), &[]);
    assert!(ok, "{err}");
    let (ok, _, err) = kubectl_apply(cluster, &web_wpa(ns, "api", true), &[]);
    assert!(ok, "{err}");
    cluster.kubectl_apply(&hpa(ns)).expect("an HPA");
    let probe = web_wpa(ns, "probe", false).replace("name: web}", "name: api}");
    let hpa_named = format!("HorizontalPodAutoscaler {ns}/hpa-api");
    wait_for(Duration::from_secs(10), || {
        let (probe, hpa_named) = (probe.clone(), hpa_named.clone());
        async move {
            let (ok, _, err) = kubectl_apply(cluster, &probe, &["--dry-run=server"]);
            if !ok && err.contains(&hpa_named) { Ok(()) } else { Err(format!("{ok} {err}")) }
        }
    })
    .await
    .expect("the webhook sees the HPA");
}

/// The incident tool: `wpa dry-run enable` on a WPA whose target an HPA created later also scales goes
/// through the dry-run exemption (no conflict check at all), as the webhook's metrics show.
#[tokio::test]
async fn wpa_dry_run_enable_goes_through_while_a_later_hpa_scales_the_same_target() {
    let w = webhooked().await;
    let ns = TestNamespace::create(&w.cluster).await;
    wpa_then_hpa(&w.cluster, &ns).await;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wpa"));
    cmd.args(["dry-run", "enable", "api", "-n", &ns])
        .env("KUBECONFIG", w.cluster.kubeconfig_path())
        .env_remove("WPA_NAMESPACE");
    let r = support::run(cmd);
    assert_eq!(r.code, Some(0), "{}{}\n{}", r.stdout, r.stderr, w.serve.log());
    assert_eq!(r.stdout, format!("WatermarkPodAutoscaler '{ns}/api' dry-run option is now true\n"));
    let stored = kubectl_json(&w.cluster, &["get", "wpa", "api", "-n", &ns, "-o", "json"]);
    assert_eq!(stored["spec"]["dryRun"], true);
    let (_, metrics) = support::http_get(w.serve.health_port, "/metrics").expect("metrics");
    assert!(metrics.contains(r#"wpa_webhook_requests_total{webhook="validate",kind="WatermarkPodAutoscaler",operation="UPDATE",allowed="true",reason="dry_run_only"}"#), "{metrics}");
}

/// `kubectl apply` of a dry-run switch also rewrites kubectl's last-applied annotation: the update is still
/// only a dry-run switch (no conflict check, so no conflict warning).
#[tokio::test]
async fn kubectl_apply_of_a_dry_run_switch_is_a_dry_run_switch_despite_the_last_applied_annotation() {
    let w = webhooked().await;
    let ns = TestNamespace::create(&w.cluster).await;
    wpa_then_hpa(&w.cluster, &ns).await;
    let (ok, _, err) =
        kubectl_apply(&w.cluster, &format!("{}  dryRun: true\n", web_wpa(&ns, "api", true)), &[]);
    assert!(ok, "{err}");
    assert!(!err.contains("also scaled by"), "checked as a change of the spec: {err}");
    let stored = kubectl_json(&w.cluster, &["get", "wpa", "api", "-n", &ns, "-o", "json"]);
    assert_eq!(stored["spec"]["dryRun"], true);
}

/// An annotation this project does not read (an incident note) is metadata: its update is never checked.
#[tokio::test]
async fn a_foreign_annotation_on_a_wpa_in_conflict_is_added_without_a_check() {
    let w = webhooked().await;
    let ns = TestNamespace::create(&w.cluster).await;
    wpa_then_hpa(&w.cluster, &ns).await;
    let out = w.cluster.kubectl(&["annotate", "wpa", "api", "-n", &ns, "incident=INC-42"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("also scaled by"), "checked as a change of the spec: {err}");
    let stored = kubectl_json(&w.cluster, &["get", "wpa", "api", "-n", &ns, "-o", "json"]);
    assert_eq!(stored["metadata"]["annotations"]["incident"], "INC-42");
}

#[tokio::test]
async fn another_update_of_a_wpa_that_came_before_an_hpa_is_allowed_with_a_warning_naming_it() {
    let w = webhooked().await;
    let ns = TestNamespace::create(&w.cluster).await;
    wpa_then_hpa(&w.cluster, &ns).await;
    let out = w.cluster.kubectl(&[
        "patch",
        "wpa",
        "api",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"maxReplicas":8}}"#,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "Warning: Deployment/api is also scaled by HorizontalPodAutoscaler {ns}/hpa-api (created after this WatermarkPodAutoscaler, at "
        )),
        "{err}"
    );
    let stored = kubectl_json(&w.cluster, &["get", "wpa", "api", "-n", &ns, "-o", "json"]);
    assert_eq!(stored["spec"]["maxReplicas"], 8);
}

#[tokio::test]
async fn a_new_wpa_on_a_target_a_wpa_and_a_later_hpa_scale_is_refused_naming_the_hpa_as_first() {
    let w = webhooked().await;
    let ns = TestNamespace::create(&w.cluster).await;
    wpa_then_hpa(&w.cluster, &ns).await;
    let (ok, _, err) =
        kubectl_apply(&w.cluster, &web_wpa(&ns, "api-2", false).replace("name: web}", "name: api}"), &[]);
    assert!(!ok, "refused");
    assert!(
        err.contains(&format!(
            "HorizontalPodAutoscaler {ns}/hpa-api (created before this WatermarkPodAutoscaler, at "
        )),
        "{err}"
    );
}

/// A WPA on Deployment web of `ns` (maxReplicas 10), once the webhook has seen it.
async fn governed(cluster: &TestCluster, ns: &str) {
    let (ok, _, err) = kubectl_apply(cluster, &web_wpa(ns, "web", false), &[]);
    assert!(ok, "{err}");
    wait_governed(cluster, ns, "web").await;
}

#[tokio::test]
async fn a_governed_deployments_replicas_are_clamped_to_max_replicas_with_a_warning() {
    let w = webhooked().await;
    let ns = TestNamespace::create(&w.cluster).await;
    governed(&w.cluster, &ns).await;
    let (ok, _, err) = kubectl_apply(&w.cluster, &deployment(&ns, "web", 50, "{}"), &[]);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("Warning: spec.replicas 50 is above maxReplicas 10 of WatermarkPodAutoscaler {ns}/web, which governs this Deployment: set to 10")),
        "{err}"
    );
    let stored = kubectl_json(&w.cluster, &["get", "deployment", "web", "-n", &ns, "-o", "json"]);
    assert_eq!(stored["spec"]["replicas"], 10);
}

/// The /scale subresource is how autoscalers scale: never touched.
#[tokio::test]
async fn the_scale_subresource_of_a_governed_deployment_is_left_alone() {
    let w = webhooked().await;
    let ns = TestNamespace::create(&w.cluster).await;
    governed(&w.cluster, &ns).await;
    let (ok, _, err) = kubectl_apply(&w.cluster, &deployment(&ns, "web", 5, "{}"), &[]);
    assert!(ok, "{err}");
    let out = w.cluster.kubectl(&["scale", "deployment", "web", "-n", &ns, "--replicas=30"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        kubectl_json(&w.cluster, &["get", "deployment", "web", "-n", &ns, "-o", "json"])["spec"]["replicas"],
        30
    );
}

#[tokio::test]
async fn a_governed_deployments_wpa_annotations_are_checked() {
    let w = webhooked().await;
    let ns = TestNamespace::create(&w.cluster).await;
    governed(&w.cluster, &ns).await;
    let (ok, _, err) = kubectl_apply(
        &w.cluster,
        &deployment(&ns, "web", 5, r#"{wpa.datadoghq.com/skip-owner-check: "yes"}"#),
        &[],
    );
    assert!(!ok);
    assert!(err.contains(r#"admission webhook "validate-workloads.wpa.datadoghq.com" denied the request: metadata.annotations[wpa.datadoghq.com/skip-owner-check]: must be "true" or "false", got "yes""#), "{err}");
}

#[tokio::test]
async fn an_ungoverned_deployment_is_left_alone() {
    let w = webhooked().await;
    let ns = TestNamespace::create(&w.cluster).await;
    governed(&w.cluster, &ns).await;
    let (ok, _, err) = kubectl_apply(
        &w.cluster,
        &deployment(&ns, "free", 500, r#"{wpa.datadoghq.com/skip-owner-check: "yes"}"#),
        &[],
    );
    assert!(ok && !err.contains("Warning"), "{err}");
}

#[tokio::test]
async fn the_webhooks_metrics_count_what_it_answered() {
    let w = webhooked().await;
    let ns = TestNamespace::create(&w.cluster).await;
    let (ok, _, _) = kubectl_apply(
        &w.cluster,
        &web_wpa(&ns, "bad", false).replace("minReplicas: 2", "minReplicas: 20"),
        &[],
    );
    assert!(!ok, "an invalid WPA is refused");
    let (code, metrics) = support::http_get(w.serve.health_port, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains(r#"wpa_webhook_requests_total{webhook="validate",kind="WatermarkPodAutoscaler",operation="CREATE",allowed="false",reason="invalid"}"#), "{metrics}");
    assert!(metrics.contains("wpa_webhook_request_duration_seconds_bucket"));
}

fn served_leaf(port: u16, ca_pem: &str) -> Vec<u8> {
    use rustls::pki_types::ServerName;
    let config = support::tls::client_config(&[ca_pem]);
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("127.0.0.1").expect("name"))
            .expect("a connection");
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).expect("handshake");
    }
    conn.peer_certificates().and_then(|c| c.first()).expect("a peer certificate").to_vec()
}

/// Its own cluster: its webhook configurations point at its own server, with a CA of its own.
#[tokio::test]
async fn a_certificate_rotation_during_a_stream_of_requests_loses_none() {
    let cluster = TestCluster::start().await;
    cluster.install_crd(wpa::api::crd()).await.expect("install the CRD");
    // cert-manager's shape: one CA, the serving certificate renewed under it.
    let ca = CertAuthority::new().expect("a CA");
    let sans = ["127.0.0.1".to_string()];
    let (first, second) = (ca.issue(&sans).expect("a leaf"), ca.issue(&sans).expect("a leaf"));
    let secret = cluster.dir().join("secret-volume");
    kubelet_write(&secret, "..2026_01_01_00_00_00.1", &first);
    let port = devcluster::free_loopback_port().expect("a free loopback port");
    cluster
        .kubectl_apply(&webhook_configurations(port, Some(&ca.ca_pem)).expect("configurations"))
        .expect("register");
    let (cert, key) =
        (secret.join("tls.crt").display().to_string(), secret.join("tls.key").display().to_string());
    let serve = WpaServe::start(
        &cluster,
        "rotation",
        Some(port),
        &[
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-reload-interval",
            "200ms",
            "--no-reconciler",
        ],
    )
    .await
    .expect("wpa serve");
    assert_eq!(served_leaf(port, &ca.ca_pem), leaf_der(&first.cert_pem));

    // Server-side dry-run creates: each goes through both webhooks over TLS, and stores nothing.
    let api: Api<WatermarkPodAutoscaler> = Api::namespaced(cluster.client(), "default");
    let wpa: WatermarkPodAutoscaler = serde_yaml_ng::from_str(WEB_WPA).expect("a WPA");
    let (stop, ok, failed) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut streams = Vec::new();
    for i in 0..4 {
        let (api, mut wpa, stop, ok, failed) =
            (api.clone(), wpa.clone(), stop.clone(), ok.clone(), failed.clone());
        streams.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                wpa.metadata.name = Some(format!("stream-{i}-{n}"));
                n += 1;
                match api.create(&PostParams { dry_run: true, ..Default::default() }, &wpa).await {
                    Ok(created) if created.spec.tolerance.is_some() => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => panic!("the mutating webhook did not default the object"),
                    Err(e) => {
                        eprintln!("request failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = ok.load(Ordering::Relaxed);
    kubelet_write(&secret, "..2026_01_01_01_00_00.2", &second);
    std::fs::remove_dir_all(secret.join("..2026_01_01_00_00_00.1")).expect("old revision gone");
    let started = Instant::now();
    while served_leaf(port, &ca.ca_pem) != leaf_der(&second.cert_pem) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the renewed certificate was not served:\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("renewed certificate served after {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for s in streams {
        s.await.expect("a stream");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{ok} admissions through the API server ({before} before the rotation), {failed} failed");
    assert!(ok > before + 20, "requests kept flowing after the rotation");
    assert_eq!(failed, 0);
    let _ = api.delete("nonexistent", &DeleteParams::default()).await;
}

/// Its own cluster: it stops the webhook's server. The delay is long enough for a whole `kubectl apply`
/// (a process start, discovery, a read, both webhooks) on a loaded machine.
#[tokio::test]
async fn a_graceful_shutdown_answers_in_flight_requests() {
    const DELAY: Duration = Duration::from_secs(10);
    let (cluster, mut serve) = cluster_with_webhook_on(
        TestCluster::start().await,
        &["--shutdown-delay", &format!("{}s", DELAY.as_secs())],
    )
    .await;
    let (ok, _, err) = kubectl_apply(&cluster, WEB_WPA, &[]);
    assert!(ok, "{err}");
    let (code, _) = support::http_get(serve.health_port, "/readyz").expect("readyz");
    assert_eq!(code, 200);
    let signalled = Instant::now();
    serve.signal_terminate();
    // During the delay: not ready (the Service stops routing here), yet admission still answers.
    let (code, body) = wait_for(Duration::from_secs(2), || async {
        match support::http_get(serve.health_port, "/readyz") {
            Ok((503, body)) => Ok((503, body)),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("/readyz turns 503 at once");
    assert!(body.contains("shutting down"), "{code} {body}");
    let (ok, _, err) = kubectl_apply(
        &cluster,
        &WEB_WPA.replace("{name: web,", "{name: web-late,").replace("name: web}", "name: web-late}"),
        &[],
    );
    assert!(ok, "a WPA admitted during the shutdown delay: {err}");
    assert!(signalled.elapsed() < DELAY, "still within the delay");
    while !serve.exited() && signalled.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(serve.exited(), "the process exits after the delay and the drain");
    let took = signalled.elapsed();
    eprintln!("graceful shutdown took {took:?}");
    assert!(took >= DELAY, "the delay was kept ({took:?})");
    assert!(serve.log().contains("webhook server drained"), "{}", serve.log());
}

/// Its own cluster: it stops the webhook's server, whose Fail policy then refuses every WPA of the cluster.
#[tokio::test]
async fn a_wpas_finalizer_and_its_namespace_are_released_while_the_webhook_is_down() {
    let (cluster, mut serve) =
        cluster_with_webhook_on(TestCluster::start_with(support::Options::full()).await, &[]).await;
    cluster.create_namespace("gone", &[]).await.expect("namespace");
    let held = WEB_WPA.replace(
        "metadata: {name: web, namespace: default}",
        "metadata: {name: web, namespace: gone, finalizers: [finalizer.watermarkpodautoscaler.datadoghq.com]}",
    );
    let (ok, _, err) = kubectl_apply(&cluster, &held, &[]);
    assert!(ok, "{err}");
    serve.terminate();
    // Nothing answers any more: creations are refused, as the Fail policy promises...
    let (ok, _, err) = kubectl_apply(&cluster, &WEB_WPA.replace("{name: web,", "{name: new,"), &[]);
    assert!(!ok && err.contains("failed calling webhook"), "{err}");
    // ...but the namespace's deletion, and the removal of the finalizer wpa would have removed, go through.
    let deleted = cluster.kubectl(&["delete", "namespace", "gone", "--wait=false"]);
    assert!(deleted.status.success(), "{}", String::from_utf8_lossy(&deleted.stderr));
    let patched = cluster.kubectl(&[
        "patch",
        "wpa",
        "web",
        "-n",
        "gone",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert!(patched.status.success(), "{}", String::from_utf8_lossy(&patched.stderr));
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client());
    wait_for(Duration::from_secs(60), || async {
        match namespaces.get_opt("gone").await {
            Ok(None) => Ok(()),
            other => Err(format!("{:?}", other.map(|n| n.and_then(|n| n.status)))),
        }
    })
    .await
    .expect("the namespace is deleted");
}
