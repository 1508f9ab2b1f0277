//! The Helm chart (`charts/wpa`) on the real Kubernetes 1.20.2 control plane, through Helm v4's library
//! (`tests/helm/chart.py`, PyPI `helm-python-sdk`; no `helm` binary):
//!
//! 1. lint, the schema checks, the RBAC and webhook comparisons with `webhook-config/`, and every
//!    meaningful combination of values rendered for 1.20.2; each rendered manifest passes the API server's
//!    own validation (`kubectl apply --dry-run=server`), and the scheduler extender's
//!    `KubeSchedulerConfiguration` is read by kube-scheduler 1.20.2;
//! 2. a real `helm install` (selfSigned mode), with this build's `wpa serve` run exactly as the chart's pod
//!    would run it (its arguments, its downward-API environment, its ServiceAccount's token, so only the
//!    chart's RBAC) and reached by the API server only through the chart's Service; then a `helm upgrade`
//!    and a `helm uninstall` that leaves no webhook configuration behind.
//!
//! One behaviour per test. The rendering checks need no cluster; the server-side dry runs share one
//! control plane; the tests of an installed release share one release (cluster, `helm install`, `wpa
//! serve`); the uninstall test installs its own release, because while it runs a `Fail` webhook with no
//! server behind it refuses every WPA of its cluster.
//!
//! Nothing is skipped: without python3 or the Helm library the tests fail and say how to install them
//! (`bash scripts/test.sh e2e` does).

mod support;

use std::{collections::BTreeSet, path::Path, process::Command, sync::Arc, time::Duration};

use base64::Engine;
use devcluster::LoopbackRelay;
use k8s_openapi::api::core::v1::Endpoints;
use kube::Api;
use serde_json::{Value, json};
use support::helm::{chart_py, require_helm_library, stub_crd, yaml_docs};
use support::{NetnsHost, Shared, TestCluster, TestNamespace, WpaServe, kubectl_json, kubectl_ok, wait_for};

const RELEASE: &str = "wpa";
const NAMESPACE: &str = "wpa-system";

#[test]
fn the_chart_lints() {
    require_helm_library();
    let (ok, lint) = chart_py(&["lint"]);
    assert!(ok, "chart.py lint: {lint:#}");
}

#[test]
fn the_charts_rbac_is_webhook_configs() {
    require_helm_library();
    let (ok, report) = chart_py(&["check-rbac"]);
    assert!(ok, "chart.py check-rbac: {report:#}");
}

#[test]
fn the_charts_webhooks_are_webhook_configs() {
    require_helm_library();
    let (ok, report) = chart_py(&["check-webhooks"]);
    assert!(ok, "chart.py check-webhooks: {report:#}");
}

/// Every meaningful combination of values, rendered for 1.20.2 (chart.py matrix) into a directory that
/// lives as long as the process.
struct Matrix {
    /// Holds the rendered files.
    _dir: tempfile::TempDir,
    report: Value,
}

static MATRIX: Shared<Matrix> = Shared::new();

async fn matrix() -> Arc<Matrix> {
    MATRIX
        .get(|| async {
            tokio::task::spawn_blocking(|| {
                require_helm_library();
                let dir = tempfile::tempdir().expect("a temporary directory");
                let out_dir = dir.path().display().to_string();
                let (ok, report) = chart_py(&["matrix", "--kube-version", "v1.20.2", "--out", &out_dir]);
                assert!(ok, "chart.py matrix: {report:#}");
                Matrix { _dir: dir, report }
            })
            .await
            .expect("chart.py matrix")
        })
        .await
}

impl Matrix {
    fn combinations(&self) -> &serde_json::Map<String, Value> {
        self.report["combinations"].as_object().expect("combinations")
    }
}

#[tokio::test]
async fn the_matrix_renders_every_named_combination() {
    let matrix = matrix().await;
    let combinations = matrix.combinations();
    assert!(combinations.len() >= 20, "{} combinations", combinations.len());
    for name in [
        "default",
        "self-signed",
        "service-monitor",
        "scheduler-extender",
        "scheduler-extender-v1",
        "upstream-values",
        "upstream-namespaced",
        "observability",
        "observability-extender",
    ] {
        assert!(combinations.contains_key(name), "the matrix renders {name}");
    }
}

/// The (group, version, kind) of the other projects' objects the matrix renders (chart.py's
/// needs_foreign_crds).
fn foreign_kinds(matrix: &Matrix) -> BTreeSet<(String, String, String)> {
    let mut foreign = BTreeSet::new();
    for (name, combo) in matrix.combinations() {
        let groups: Vec<&str> = combo["needs_foreign_crds"]
            .as_array()
            .expect("needs_foreign_crds")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let text = std::fs::read_to_string(combo["file"].as_str().expect("file")).expect("a rendered file");
        for doc in yaml_docs(&text) {
            let api_version = doc["apiVersion"].as_str().expect("apiVersion");
            if let Some((group, version)) = api_version.split_once('/')
                && groups.contains(&group)
            {
                foreign.insert((
                    group.to_string(),
                    version.to_string(),
                    doc["kind"].as_str().expect("kind").to_string(),
                ));
            }
        }
        eprintln!("{name}: {} objects, foreign groups {groups:?}", combo["documents"]);
    }
    foreign
}

#[tokio::test]
async fn the_matrix_needs_cert_manager_and_prometheus_operator_kinds() {
    let matrix = matrix().await;
    let foreign = foreign_kinds(&matrix);
    assert!(foreign.iter().any(|(g, _, k)| g == "cert-manager.io" && k == "Certificate"), "{foreign:?}");
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        assert!(foreign.iter().any(|(g, _, k)| g == "monitoring.coreos.com" && k == kind), "{foreign:?}");
    }
}

#[tokio::test]
async fn every_rendered_manifest_passes_the_api_servers_dry_run() {
    let matrix = matrix().await;
    let cluster = TestCluster::start().await;
    // The chart's own CRD (crds/), as Helm installs it.
    let crds =
        std::fs::read_to_string(matrix.report["crds"].as_str().expect("crds path")).expect("crds.yaml");
    for crd in yaml_docs(&crds) {
        cluster.install_crd(serde_json::from_value(crd).expect("a CRD")).await.expect("the chart's CRD");
    }
    // Stubs for the kinds of other projects the chart renders.
    for (group, version, kind) in &foreign_kinds(&matrix) {
        cluster.install_crd(stub_crd(group, version, kind)).await.expect("a stub CRD");
    }
    cluster.create_namespace(NAMESPACE, &[]).await.expect("the release namespace");

    for (name, combo) in matrix.combinations() {
        let file = combo["file"].as_str().expect("file");
        let out = kubectl_ok(&cluster, &["apply", "--dry-run=server", "-f", file]);
        let applied = out.lines().filter(|l| l.ends_with("(server dry run)")).count();
        assert_eq!(
            applied,
            combo["documents"].as_u64().expect("documents") as usize,
            "{name}: every object passes the API server's dry run:\n{out}"
        );
    }
}

/// `--set key.path=value` goes on top of `--values-json`, read as YAML as `helm --set` reads it (2 a number,
/// true a boolean), dotted keys making nested values.
#[test]
fn chart_py_set_overrides_values_json_with_typed_nested_values() {
    require_helm_library();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out_dir = dir.path().display().to_string();
    let values = json!({"replicaCount": 1, "tls": {"mode": "certManager"}});
    let (ok, render) = chart_py(&[
        "render",
        "--values-json",
        &values.to_string(),
        "--set",
        "replicaCount=3",
        "--set",
        "tls.mode=selfSigned",
        "--out",
        &out_dir,
        "--label",
        "set",
    ]);
    assert!(ok, "chart.py render: {render:#}");
    let docs = yaml_docs(&std::fs::read_to_string(dir.path().join("set.yaml")).expect("rendered"));
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").expect("the Deployment");
    assert_eq!(deployment["spec"]["replicas"], json!(3), "a number, not the string \"3\"");
    assert!(!docs.iter().any(|d| d["kind"] == "Certificate"), "selfSigned mode: no cert-manager Certificate");
}

/// The extender's KubeSchedulerConfiguration as the chart renders it, and a directory for kube-scheduler's
/// files.
fn scheduler_config(kubeconfig: &Path) -> (tempfile::TempDir, String) {
    require_helm_library();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out_dir = dir.path().display().to_string();
    let values = json!({"schedulerExtender": {"enabled": true, "schedulerKubeconfig": kubeconfig}});
    let (ok, render) =
        chart_py(&["render", "--values-json", &values.to_string(), "--out", &out_dir, "--label", "sched"]);
    assert!(ok, "chart.py render: {render:#}");
    let text = std::fs::read_to_string(dir.path().join("sched.yaml")).expect("rendered");
    let cm =
        yaml_docs(&text).into_iter().find(|d| d["kind"] == "ConfigMap").expect("the scheduler ConfigMap");
    let config = cm["data"]["scheduler-config.yaml"].as_str().expect("scheduler-config.yaml").to_string();
    (dir, config)
}

/// kube-scheduler 1.20.2 itself on `config` (it parses and validates the file, writes what it understood
/// and exits): whether it succeeded, its stderr, and what it wrote.
fn kube_scheduler(dir: &Path, config: &str, file: &str) -> (bool, String, std::io::Result<String>) {
    let bin_dir = support::find_binaries().expect("the control-plane binaries");
    let (path, written) = (dir.join(file), dir.join(format!("{file}.out")));
    std::fs::write(&path, config).expect("write the scheduler config");
    let out = Command::new(bin_dir.join("kube-scheduler"))
        .arg(format!("--config={}", path.display()))
        .arg(format!("--write-config-to={}", written.display()))
        .output()
        .expect("run kube-scheduler");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        std::fs::read_to_string(written),
    )
}

/// A kubeconfig that kube-scheduler can read. No cluster: kube-scheduler reads the files, writes what it
/// understood and exits, without calling the server.
fn unused_kubeconfig() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("a kubeconfig file");
    std::fs::write(
        file.path(),
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:9\"}\n\
         users:\n- name: u\n  user: {token: unused}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\n\
         current-context: c\n",
    )
    .expect("write the kubeconfig");
    file
}

#[test]
fn kube_scheduler_refuses_the_extender_config_while_ca_data_is_the_placeholder() {
    let kubeconfig = unused_kubeconfig();
    let (dir, config) = scheduler_config(kubeconfig.path());
    let (ok, stderr, _) = kube_scheduler(dir.path(), &config, "placeholder.yaml");
    assert!(!ok && stderr.contains("CAData: decode base64"), "an unfilled caData is refused:\n{stderr}");
}

#[test]
fn kube_scheduler_reads_the_filled_extender_config_with_the_services_url() {
    let kubeconfig = unused_kubeconfig();
    let (dir, config) = scheduler_config(kubeconfig.path());
    let ca = support::pki::Authority::new("chart test CA").expect("a CA");
    let ca = base64::engine::general_purpose::STANDARD.encode(ca.cert_pem());
    let (ok, stderr, written) =
        kube_scheduler(dir.path(), &config.replace("<base64 of the CA PEM>", &ca), "filled.yaml");
    assert!(ok, "kube-scheduler 1.20.2 reads the filled configuration:\n{stderr}");
    let written = written.expect("kube-scheduler wrote its configuration");
    assert!(written.contains("urlPrefix: https://wpa.wpa-system.svc:443/scheduler"), "{written}");
    assert!(written.contains("serverName: wpa.wpa-system.svc"), "{written}");
}

/// A release installed with `helm install` (selfSigned mode) and this build's `wpa serve` playing its pod.
///
/// etcd and kube-apiserver only: no kubelet, so the chart's pods never run, and no endpoints controller, so
/// the Endpoints of the chart's Service (which has a selector) are ours to write: they lead into a network
/// namespace where `wpa serve` runs with the chart's arguments (listen addresses aside: the namespace's
/// address, as a pod's), its environment and its ServiceAccount; the API server's loopback port is relayed
/// into it so that the token kubeconfig works unchanged.
struct Release {
    // Dropped in this order: wpa serve, then its relay and namespace, then the cluster.
    serve: WpaServe,
    _relay: LoopbackRelay,
    _host: NetnsHost,
    cluster: TestCluster,
    /// chart.py's report of the install.
    install: Value,
    /// The arguments of the chart's container.
    chart_args: Vec<String>,
    /// The caBundle of each validating webhook once `wpa serve` is ready.
    injected: Vec<String>,
}

fn release_args(cluster: &TestCluster, verb: &'static str) -> Vec<String> {
    let kubeconfig = cluster.kubeconfig_path().display().to_string();
    [verb, "--kubeconfig", &kubeconfig, "--namespace", NAMESPACE, "--release", RELEASE]
        .map(String::from)
        .to_vec()
}

fn chart(args: &[String]) -> (bool, Value) {
    chart_py(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn ca_bundles(config: &Value) -> Vec<String> {
    config["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .map(|h| h["clientConfig"]["caBundle"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn install_release() -> Release {
    require_helm_library();
    let host = NetnsHost::create().unwrap_or_else(|e| panic!("this test needs a network namespace: {e:#}"));
    let cluster = TestCluster::start().await;

    let mut args = release_args(&cluster, "install");
    let values = json!({"tls": {"mode": "selfSigned"}}).to_string();
    args.extend(["--create-namespace", "--notes", "--values-json", &values].map(String::from));
    let (ok, install) = chart(&args);
    assert!(ok, "helm install: {install:#}");

    let deployment = kubectl_json(&cluster, &["-n", NAMESPACE, "get", "deployment", RELEASE]);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let chart_args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("arg").to_string())
        .collect();
    let service = kubectl_json(&cluster, &["-n", NAMESPACE, "get", "service", RELEASE]);
    let port_of = |target: &str| -> u16 {
        container["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == target)
            .expect("named port")["containerPort"]
            .as_u64()
            .expect("containerPort") as u16
    };
    let mut subset_ports = Vec::new();
    let mut webhook_target = 0;
    for p in service["spec"]["ports"].as_array().expect("service ports") {
        let target = port_of(p["targetPort"].as_str().expect("a named targetPort"));
        if p["name"] == "https" {
            webhook_target = target;
        }
        subset_ports.push(json!({"name": p["name"], "port": target, "protocol": "TCP"}));
    }
    assert_eq!(webhook_target, 8443, "the Service's webhook port leads to the container's 8443");
    let endpoints: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": RELEASE, "namespace": NAMESPACE},
        "subsets": [{"addresses": [{"ip": host.ns_ip().to_string()}], "ports": subset_ports}]
    }))
    .expect("Endpoints");
    Api::<Endpoints>::namespaced(cluster.client(), NAMESPACE)
        .create(&Default::default(), &endpoints)
        .await
        .expect("the Endpoints of the chart's Service");

    let api_port: u16 =
        cluster.server_url().rsplit(':').next().and_then(|p| p.parse().ok()).expect("API port");
    let relay = host.relay_host_loopback(api_port).expect("relay the API server into the namespace");
    let token = support::request_service_account_token(&cluster, NAMESPACE, RELEASE).await.expect("a token");
    let sa_kubeconfig = support::token_kubeconfig(&cluster, "chart-sa.kubeconfig", &token, NAMESPACE);
    let sa_kubeconfig = sa_kubeconfig.display().to_string();
    let mut serve_args: Vec<&str> = chart_args[1..]
        .iter()
        .map(String::as_str)
        .filter(|a| {
            !a.starts_with("--listen=")
                && !a.starts_with("--health-listen=")
                && !a.starts_with("--log-format=")
        })
        .collect();
    serve_args.extend(["--kubeconfig", &sa_kubeconfig]);
    let serve = WpaServe::start_in_netns(
        Path::new(env!("CARGO_BIN_EXE_wpa")),
        &cluster,
        &host,
        "chart",
        webhook_target,
        &serve_args,
        &[("POD_NAME", "wpa-0"), ("POD_NAMESPACE", NAMESPACE)],
    )
    .await
    .expect("wpa serve with the chart's arguments and RBAC");
    let injected = ca_bundles(&kubectl_json(&cluster, &["get", "validatingwebhookconfiguration", RELEASE]));
    Release { serve, _relay: relay, _host: host, cluster, install, chart_args, injected }
}

impl Release {
    /// `kubectl apply` that must succeed (else the error and wpa serve's log).
    fn apply(&self, yaml: &str) {
        self.cluster.kubectl_apply(yaml).unwrap_or_else(|e| panic!("{e}\n{}", self.serve.log()));
    }
}

static RELEASE_INSTALLED: Shared<Release> = Shared::new();

/// The binary's installed release: only tests that leave it working use it.
async fn release() -> Arc<Release> {
    RELEASE_INSTALLED.get(install_release).await
}

/// A WPA without defaults (and `extra` spec lines).
fn wpa(namespace: &str, name: &str, extra: &str) -> String {
    format!(
        "apiVersion: datadoghq.com/v1alpha1\nkind: WatermarkPodAutoscaler\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         spec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}\n  maxReplicas: 10\n{extra}  metrics:\n\
         \x20 - type: External\n    external:\n      metricName: qps\n      metricSelector: {{matchLabels: {{app: {name}}}}}\n\
         \x20     highWatermark: \"100\"\n      lowWatermark: \"50\"\n"
    )
}

#[tokio::test]
async fn helm_install_deploys_with_notes_that_keep_the_webhooks_away_from_kube_system() {
    let release = release().await;
    assert_eq!(release.install["release"]["status"], "deployed", "{:#}", release.install);
    let notes = release.install["release"]["notes"].as_str().expect("NOTES.txt");
    assert!(
        notes.contains(
            "kubectl label --overwrite namespace kube-system wpa-system wpa.datadoghq.com/webhook=disabled"
        ),
        "NOTES.txt tells a 1.20 cluster how to keep the webhooks away from kube-system:\n{notes}"
    );
}

#[tokio::test]
async fn the_charts_pod_runs_wpa_serve_self_signed_with_ca_injection_for_its_service() {
    let release = release().await;
    let chart_args = &release.chart_args;
    for wanted in
        ["--self-signed", "--inject-ca", "--tls-san=wpa.wpa-system.svc", "--webhook-config-name=wpa"]
    {
        assert!(
            chart_args.iter().any(|a| a == wanted),
            "the chart runs wpa serve with {wanted}: {chart_args:?}"
        );
    }
    assert_eq!(chart_args[0], "serve");
}

#[tokio::test]
async fn inject_ca_fills_every_ca_bundle_with_the_charts_rbac() {
    let release = release().await;
    assert!(
        release.injected.iter().all(|b| !b.is_empty()),
        "--inject-ca filled every caBundle with the chart's RBAC"
    );
}

#[tokio::test]
async fn the_webhooks_call_the_charts_service() {
    let release = release().await;
    let config = kubectl_json(&release.cluster, &["get", "validatingwebhookconfiguration", RELEASE]);
    assert!(
        config["webhooks"]
            .as_array()
            .expect("webhooks")
            .iter()
            .all(|h| h["clientConfig"]["service"]["name"] == RELEASE),
        "the webhooks call the chart's Service"
    );
}

#[tokio::test]
async fn through_the_charts_service_a_wpa_without_defaults_is_stored_defaulted() {
    let release = release().await;
    let ns = TestNamespace::create(&release.cluster).await;
    release.apply(&wpa(&ns, "web", ""));
    let stored = kubectl_json(&release.cluster, &["-n", &ns, "get", "wpa", "web"]);
    assert_eq!(stored["spec"]["tolerance"], "100m", "defaulted at admission: {stored:#}");
    assert_eq!(stored["spec"]["minReplicas"], 1);
    assert_eq!(stored["spec"]["algorithm"], "absolute");
}

#[tokio::test]
async fn through_the_charts_service_an_invalid_wpa_is_refused_by_this_wpa_serve() {
    let release = release().await;
    let ns = TestNamespace::create(&release.cluster).await;
    let refused = release
        .cluster
        .kubectl_apply(&wpa(&ns, "bad", "  minReplicas: 20\n"))
        .expect_err("an invalid WPA is refused");
    assert!(
        refused.contains(r#"admission webhook "validate-wpa.datadoghq.com" denied the request: spec.maxReplicas: watermark pod autoscaler requires the minimum number of replicas to be configured and inferior to the maximum"#),
        "{refused}"
    );
    let (_, metrics) = release.serve.health("/metrics").expect("/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("wpa_webhook_requests_total{") && l.contains("allowed=\"false\"")),
        "the refusal was answered by this wpa serve:\n{metrics}"
    );
}

/// The reconciler runs with the chart's RBAC: it takes the leader Lease and puts its finalizer on WPAs.
async fn wait_for_finalizer(cluster: &TestCluster, serve: &WpaServe, namespace: &str, name: &str) {
    wait_for(Duration::from_secs(30), || async {
        let wpa = kubectl_json(cluster, &["-n", namespace, "get", "wpa", name]);
        let finalizers = wpa["metadata"]["finalizers"].to_string();
        if finalizers.contains("finalizer.watermarkpodautoscaler.datadoghq.com") {
            Ok(())
        } else {
            Err(finalizers)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("no finalizer on WPA {namespace}/{name}: {e}\n{}", serve.log()));
}

#[tokio::test]
async fn the_reconciler_with_the_charts_rbac_puts_its_finalizer_on_wpas() {
    let release = release().await;
    let ns = TestNamespace::create(&release.cluster).await;
    release.apply(&wpa(&ns, "web", ""));
    wait_for_finalizer(&release.cluster, &release.serve, &ns, "web").await;
}

/// helm upgrade on the shared release: a changed value is live, the injected CA survives (the chart never
/// sets caBundle), and admission still defaults. The other tests of the release keep working meanwhile,
/// which is what an upgrade must allow.
#[tokio::test]
async fn helm_upgrade_makes_a_changed_value_live_and_keeps_the_injected_ca() {
    let release = release().await;
    let cluster = &release.cluster;
    let mut args = release_args(cluster, "upgrade");
    let values = json!({"tls": {"mode": "selfSigned"}, "webhook": {"timeoutSeconds": 7}}).to_string();
    args.extend(["--values-json".to_string(), values]);
    let (ok, upgrade) = chart(&args);
    assert!(ok, "helm upgrade: {upgrade:#}");
    assert_eq!(upgrade["release"]["revision"], 2, "{upgrade:#}");
    let config = kubectl_json(cluster, &["get", "validatingwebhookconfiguration", RELEASE]);
    let timeouts: Vec<(&str, u64)> = config["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .map(|h| (h["name"].as_str().expect("name"), h["timeoutSeconds"].as_u64().expect("timeout")))
        .collect();
    assert!(timeouts.contains(&("validate-wpa.datadoghq.com", 7)), "{timeouts:?}");
    assert!(timeouts.contains(&("validate-workloads.wpa.datadoghq.com", 5)), "{timeouts:?}");
    let mutating = kubectl_json(cluster, &["get", "mutatingwebhookconfiguration", RELEASE]);
    assert_eq!(mutating["webhooks"][0]["timeoutSeconds"], 7);
    assert_eq!(ca_bundles(&config), release.injected, "the upgrade kept the injected caBundle");
    let ns = TestNamespace::create(cluster).await;
    cluster
        .kubectl_apply(&wpa(&ns, "api", ""))
        .unwrap_or_else(|e| panic!("after the upgrade: {e}\n{}", release.serve.log()));
    let stored = kubectl_json(cluster, &["-n", &ns, "get", "wpa", "api"]);
    assert_eq!(stored["spec"]["tolerance"], "100m", "still defaulted after the upgrade");
}

/// Its own release: with no wpa serve, the release's `Fail` webhook refuses every WPA of the cluster.
#[tokio::test]
async fn helm_uninstall_leaves_no_webhook_configuration_behind_and_keeps_the_crd_wpas_and_lease() {
    let mut release = install_release().await;
    let cluster = &release.cluster;
    cluster
        .kubectl_apply(&wpa("default", "web", ""))
        .unwrap_or_else(|e| panic!("{e}\n{}", release.serve.log()));
    wait_for_finalizer(cluster, &release.serve, "default", "web").await;

    // With no wpa serve, the dangling Fail webhook refuses every WPA: what the uninstall must not leave behind.
    release.serve.terminate();
    let refused = cluster.kubectl_apply(&wpa("default", "while-down", "")).expect_err("no webhook answers");
    assert!(refused.contains("failed calling webhook"), "{refused}");

    let (ok, uninstall) = chart(&release_args(cluster, "uninstall"));
    assert!(ok, "helm uninstall: {uninstall:#}");
    for kind in ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"] {
        let list = kubectl_json(cluster, &["get", kind]);
        let left: Vec<&Value> = list["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|c| {
                c["metadata"]["name"] == RELEASE
                    || c["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
            })
            .collect();
        assert!(left.is_empty(), "{kind} left behind: {left:?}");
    }
    // The cluster works without wpa.
    cluster
        .kubectl_apply(&wpa("default", "after", ""))
        .expect("a WPA is accepted once the webhooks are gone");
    let stored = kubectl_json(cluster, &["-n", "default", "get", "wpa", "after"]);
    assert!(stored["spec"].get("tolerance").is_none(), "nothing defaults it any more: {stored:#}");
    cluster
        .kubectl_apply(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: plain, namespace: default}\nspec:\n  replicas: 1\n\
             \x20 selector: {matchLabels: {app: plain}}\n  template:\n    metadata: {labels: {app: plain}}\n\
             \x20   spec: {containers: [{name: c, image: nginx}]}\n",
        )
        .expect("a plain Deployment is created after the uninstall");
    // What the chart's README says stays: the CRD, the WPAs with their finalizer, the Lease.
    kubectl_ok(cluster, &["get", "crd", "watermarkpodautoscalers.datadoghq.com"]);
    let web = kubectl_json(cluster, &["-n", "default", "get", "wpa", "web"]);
    assert!(
        web["metadata"]["finalizers"].to_string().contains("finalizer.watermarkpodautoscaler.datadoghq.com")
    );
    kubectl_ok(cluster, &["-n", NAMESPACE, "get", "lease", "watermarkpodautoscaler-lock"]);
    let gone = cluster.kubectl(&["-n", NAMESPACE, "get", "deployment,service,serviceaccount", "-o", "name"]);
    let names = String::from_utf8_lossy(&gone.stdout);
    assert!(!names.contains("deployment.apps/wpa") && !names.contains("service/wpa"), "{names}");
}
