//! The real node of a test binary ([`devcluster::node`]) with what wpa's tests need on it: the CRD, the
//! synthetic metrics provider, and the `wpa` image made from this repository's release binary with the
//! runtime contract of the Dockerfile's final stage. Tests take turns on the node ([`turn`]), each in a
//! namespace of its own; the chart is installed as users install it ([`Turn::release`]), one release at a
//! time (two releases' webhooks and reconcilers would each act on the other's tests).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use devcluster::node::{Image, NodeOptions, RealNode, RuntimeConfig};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{Api, ResourceExt, api::ListParams};
use serde_json::{Value, json};
use tokio::sync::{Mutex as AsyncMutex, MutexGuard};

use super::helm::{chart_py, stub_crd};
use super::{kubectl_json, kubectl_ok, wait_for};

/// The image the chart's pods run (`.invalid`: nothing could ever pull it).
pub const WPA_REPOSITORY: &str = "wpa.invalid/wpa";
pub const WPA_TAG: &str = "node-test";
/// What the pause workloads run: the node's sandbox image.
pub const PAUSE_IMAGE: &str = devcluster::node::PAUSE_IMAGE;
/// The chart's selector of the pods of release `name`.
pub fn selector(release: &str) -> String {
    format!("app.kubernetes.io/name=wpa,app.kubernetes.io/instance={release}")
}

/// The chart's two ways to a serving certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// The pods make and share the installation's CA (`--self-signed --inject-ca`). Its release logs text.
    SelfSigned,
    /// cert-manager's part is played by the test: the serving Secret and the caBundle. Its release logs JSON.
    CertManager,
}

/// A Helm release of the chart on the node. Its name contains "wpa", so the chart's full name is the
/// release name: Deployment, Service, webhook configurations.
#[derive(Clone, Debug)]
pub struct Release {
    pub name: String,
    pub namespace: String,
    pub mode: TlsMode,
    pub values: Value,
    /// The CA that signs the serving certificates (certManager mode: the test's).
    pub ca_pem: Option<String>,
    shared: bool,
}

impl Release {
    /// `<svc>.<ns>.svc`, the name the API server checks in the serving certificate.
    pub fn service_dns(&self) -> String {
        format!("{}.{}.svc", self.name, self.namespace)
    }
}

static TURNS: AsyncMutex<Option<Release>> = AsyncMutex::const_new(None);
/// Releases installed so far: a reinstall gets a new name, so it never waits for the old namespace to go.
static INSTALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// The node, set up for these tests once. Weak: a static is never dropped, and the node's own teardown at
/// exit must hold the last reference, so that dropping it removes the control plane's directories (etcd's
/// data in /dev/shm among them).
static FIXTURE: tokio::sync::OnceCell<std::sync::Weak<RealNode>> = tokio::sync::OnceCell::const_new();

/// A test's exclusive use of the node: its own namespace, and the one release installed at a time.
pub struct Turn {
    pub node: Arc<RealNode>,
    pub namespace: String,
    current: MutexGuard<'static, Option<Release>>,
    began: Instant,
}

/// Waits for the node (started by the first test) and for the other tests' turns; `test` names the
/// namespace (`t-<test>`).
pub async fn turn(test: &str) -> Turn {
    let current = TURNS.lock().await;
    let node = FIXTURE
        .get_or_try_init(|| async { start().await.map(|node| Arc::downgrade(&node)) })
        .await
        .unwrap_or_else(|e| panic!("the real node did not start: {e:#}"))
        .upgrade()
        .expect("the node lives until the process exits");
    let namespace = format!("t-{test}");
    node.cluster()
        .create_namespace(&namespace, &[])
        .await
        .unwrap_or_else(|e| panic!("namespace {namespace}: {e:#}"));
    eprintln!("[turn] {test}: namespace {namespace}");
    Turn { node, namespace, current, began: Instant::now() }
}

async fn start() -> Result<Arc<RealNode>> {
    let image = wpa_image()?;
    let node = devcluster::node::shared(move || NodeOptions {
        images: vec![image],
        synthetic_metrics: true,
        ..NodeOptions::default()
    })
    .await?;
    let cluster = node.cluster();
    cluster.install_crd(wpa::api::crd()).await?;
    // 1.20 does not label namespaces by name, so the chart's webhooks skip kube-system by this label.
    kubectl_ok(cluster, &["label", "namespace", "kube-system", "wpa.datadoghq.com/webhook=disabled"]);
    cluster.create_namespace("wpa-probe", &[]).await?;
    // The kinds of cert-manager the chart renders in certManager mode; nothing acts on them here.
    for kind in ["Issuer", "Certificate"] {
        cluster.install_crd(stub_crd("cert-manager.io", "v1", kind)).await?;
    }
    Ok(node)
}

impl Drop for Turn {
    fn drop(&mut self) {
        let cluster = self.node.cluster();
        let _ = cluster.kubectl(&["delete", "namespace", &self.namespace, "--wait=false"]);
        let outbound = self.node.check_outbound();
        eprintln!("[turn] {} took {:.1} s", self.namespace, self.began.elapsed().as_secs_f64());
        if let Err(e) = outbound
            && !std::thread::panicking()
        {
            panic!("{e:#}");
        }
    }
}

impl Turn {
    pub fn cluster(&self) -> &devcluster::LocalCluster {
        self.node.cluster()
    }

    pub fn client(&self) -> kube::Client {
        self.node.client()
    }

    /// The release of `mode` with the shared values, reused from an earlier turn when it is the one
    /// installed (and healthy), else installed now.
    pub async fn release(&mut self, mode: TlsMode) -> Release {
        if let Some(r) = self.current.as_ref()
            && r.shared
            && r.mode == mode
            && self.wait_rollout(r, Duration::from_secs(60)).await.is_ok()
        {
            return r.clone();
        }
        let name = match mode {
            TlsMode::SelfSigned => "wpa-ss",
            TlsMode::CertManager => "wpa-cm",
        };
        self.install(name, mode, json!({}), true).await
    }

    /// A release of `mode` with `values` over the shared ones, for this turn only.
    pub async fn private_release(&mut self, name: &str, mode: TlsMode, values: Value) -> Release {
        self.install(name, mode, values, false).await
    }

    async fn install(&mut self, base: &str, mode: TlsMode, extra: Value, shared: bool) -> Release {
        if let Some(old) = self.current.take() {
            self.uninstall(&old).await;
        }
        let n = INSTALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = if n == 0 { base.to_string() } else { format!("{base}-{n}") };
        self.install_as(&name, mode, extra, shared).await
    }

    async fn install_as(&mut self, name: &str, mode: TlsMode, extra: Value, shared: bool) -> Release {
        let cluster = self.node.cluster();
        let mut values = json!({
            "image": {"repository": WPA_REPOSITORY, "tag": WPA_TAG, "pullPolicy": "Never"},
            "reconciler": {"syncPeriod": "5s"},
            "logFormat": if mode == TlsMode::SelfSigned { "text" } else { "json" },
            "tls": {"mode": if mode == TlsMode::SelfSigned { "selfSigned" } else { "certManager" }},
        });
        merge(&mut values, extra);
        let mut release = Release {
            name: name.into(),
            namespace: name.into(),
            mode,
            values: values.clone(),
            ca_pem: None,
            shared,
        };
        let begin = Instant::now();
        cluster
            .create_namespace(name, &[("wpa.datadoghq.com/webhook", "disabled")])
            .await
            .unwrap_or_else(|e| panic!("namespace {name}: {e:#}"));
        if mode == TlsMode::CertManager {
            release.ca_pem = Some(self.issue_serving_secret(&release));
        }
        self.helm("install", &release, &values);
        if let Some(ca) = &release.ca_pem {
            inject_ca_bundle(cluster, name, ca);
        }
        self.wait_rollout(&release, Duration::from_secs(180)).await.unwrap_or_else(|e| {
            panic!("release {name} did not become ready: {e}\n{}", self.describe(&release))
        });
        self.wait_admission(&release).await;
        eprintln!("[turn] helm install {name} ({mode:?}) ready in {:.1} s", begin.elapsed().as_secs_f64());
        *self.current = Some(release.clone());
        release
    }

    /// `helm install` or `helm upgrade` of `release` with `values` (through chart.py); must succeed.
    pub fn helm(&self, action: &str, release: &Release, values: &Value) {
        let (ok, report) = self.chart_py_release(action, release, &["--values-json", &values.to_string()]);
        assert!(ok, "helm {action} {}: {report:#}", release.name);
    }

    /// `chart.py ACTION` on `release` against the node's cluster, with `extra` arguments.
    fn chart_py_release(&self, action: &str, release: &Release, extra: &[&str]) -> (bool, Value) {
        let kubeconfig = self.cluster().kubeconfig_path().display().to_string();
        let mut args = vec![
            action,
            "--kubeconfig",
            &kubeconfig,
            "--namespace",
            &release.namespace,
            "--release",
            &release.name,
        ];
        args.extend(extra);
        chart_py(&args)
    }

    /// Uninstalls `release` and waits until its pods are gone: their reconciler must not act on the next
    /// release's tests.
    async fn uninstall(&self, release: &Release) {
        let (ok, report) = self.chart_py_release("uninstall", release, &["--ignore-not-found"]);
        if !ok {
            eprintln!("[turn] helm uninstall {}: {report:#}", release.name);
        }
        let api: Api<Pod> = Api::namespaced(self.client(), &release.namespace);
        let selector = selector(&release.name);
        let gone = wait_for(Duration::from_secs(90), || async {
            // Terminating ones included: they still serve and reconcile until they exit.
            let left = api.list(&ListParams::default().labels(&selector)).await.map_err(|e| e.to_string())?;
            if left.items.is_empty() { Ok(()) } else { Err(format!("{} pods left", left.items.len())) }
        })
        .await;
        if let Err(e) = gone {
            eprintln!("[turn] helm uninstall {}: {e}", release.name);
        }
        // The pods made Secrets (the self-signed CA) and the Lease; the namespace takes them along.
        let _ = self.cluster().kubectl(&["delete", "namespace", &release.namespace, "--wait=false"]);
        // Webhook configurations left by a failed uninstall would call pods that are gone.
        let _ = self.cluster().kubectl(&[
            "delete",
            "validatingwebhookconfiguration,mutatingwebhookconfiguration",
            &release.name,
            "--ignore-not-found",
        ]);
    }

    /// cert-manager's part: the serving certificate for the Service's names in Secret
    /// `<fullname>-serving-cert` (kubernetes.io/tls with ca.crt). Returns the CA.
    fn issue_serving_secret(&self, release: &Release) -> String {
        let dns = release.service_dns();
        let identity = devcluster::TlsIdentity::new(&[&dns, &format!("{dns}.cluster.local")])
            .expect("a serving certificate");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": format!("{}-serving-cert", release.name), "namespace": release.namespace},
            "data": {"tls.crt": b64(&identity.leaf.cert_pem), "tls.key": b64(&identity.leaf.key_pem), "ca.crt": b64(&identity.ca_pem)}
        });
        self.cluster().kubectl_apply(&secret.to_string()).expect("the serving Secret");
        identity.ca_pem
    }

    /// The release's pods, not being deleted.
    pub async fn pods(&self, release: &Release) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client(), &release.namespace);
        let pods =
            api.list(&ListParams::default().labels(&selector(&release.name))).await.expect("list pods");
        pods.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
    }

    /// Until the Deployment has rolled out: every replica updated and Ready, no old one left.
    pub async fn wait_rollout(&self, release: &Release, timeout: Duration) -> Result<(), String> {
        let api: Api<Deployment> = Api::namespaced(self.client(), &release.namespace);
        wait_for(timeout, || async {
            let d = api.get(&release.name).await.map_err(|e| e.to_string())?;
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let s = d.status.clone().unwrap_or_default();
            let current = s.observed_generation >= d.metadata.generation
                && s.updated_replicas == Some(want)
                && s.ready_replicas == Some(want)
                && s.replicas == Some(want);
            if current { Ok(()) } else { Err(format!("{want} wanted, status {s:?}")) }
        })
        .await
    }

    /// Until a server-side dry-run create of a WPA in the probe namespace passes the release's webhooks:
    /// the endpoints are programmed (kube-proxy syncs at most once a second) and the CA is trusted.
    async fn wait_admission(&self, release: &Release) {
        let api: Api<wpa::api::WatermarkPodAutoscaler> = Api::namespaced(self.client(), "wpa-probe");
        let wpa = serde_yaml_ng::from_str(&wpa::devtools::wpa_yaml(
            "wpa-probe",
            "probe",
            "probe",
            "probe",
            "100",
            "50",
            "",
        ))
        .expect("a WPA");
        let dry_run = kube::api::PostParams { dry_run: true, ..Default::default() };
        wait_for(Duration::from_secs(60), || async {
            api.create(&dry_run, &wpa).await.map(drop).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| panic!("the webhooks of {} never admitted a WPA: {e}", release.name));
    }

    /// Pods, events and logs of the release, for a failure message.
    pub fn describe(&self, release: &Release) -> String {
        let cluster = self.cluster();
        let run = |args: &[&str]| {
            let out = cluster.kubectl(args);
            format!(
                "$ kubectl {}\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        };
        let selector = selector(&release.name);
        [
            run(&["-n", &release.namespace, "get", "pods", "-o", "wide"]),
            run(&["-n", &release.namespace, "get", "events", "--sort-by=.lastTimestamp"]),
            run(&[
                "-n",
                &release.namespace,
                "logs",
                "-l",
                &selector,
                "--tail=30",
                "--prefix",
                "--all-containers",
            ]),
        ]
        .join("\n")
    }

    /// `kubectl logs` of one pod.
    pub fn logs(&self, release: &Release, pod: &str) -> String {
        kubectl_ok(self.cluster(), &["-n", &release.namespace, "logs", pod])
    }

    /// A Deployment of the pause image with `replicas` pods and label `app=<name>`, rolled out.
    pub async fn pause_deployment(&self, name: &str, replicas: i32) {
        let yaml = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers: [{{name: app, image: {PAUSE_IMAGE}, imagePullPolicy: Never}}]\n",
            ns = self.namespace
        );
        self.cluster().kubectl_apply(&yaml).unwrap_or_else(|e| panic!("{e}"));
        self.wait_ready_pods(name, replicas as usize, Duration::from_secs(60))
            .await
            .expect("the pause pods are ready");
    }

    /// Until exactly `count` pods of `app=<name>` are Ready (as the kubelet reports it).
    pub async fn wait_ready_pods(&self, name: &str, count: usize, timeout: Duration) -> Result<(), String> {
        devcluster::wait_ready_pods(&self.client(), &self.namespace, &format!("app={name}"), count, timeout)
            .await
    }

    /// The spec.replicas of Deployment `name` in the turn's namespace.
    pub async fn replicas(&self, name: &str) -> i32 {
        let api: Api<Deployment> = Api::namespaced(self.client(), &self.namespace);
        let scale = api.get_scale(name).await.expect("the scale");
        scale.spec.and_then(|s| s.replicas).unwrap_or(0)
    }
}

/// What the chart's pods would get from cert-manager's cainjector: the CA in every webhook's caBundle.
fn inject_ca_bundle(cluster: &devcluster::LocalCluster, name: &str, ca_pem: &str) {
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    for kind in ["validatingwebhookconfiguration", "mutatingwebhookconfiguration"] {
        let config = kubectl_json(cluster, &["get", kind, name]);
        let ops: Vec<Value> = (0..config["webhooks"].as_array().map_or(0, Vec::len))
            .map(|i| json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle}))
            .collect();
        kubectl_ok(cluster, &["patch", kind, name, "--type=json", "-p", &Value::Array(ops).to_string()]);
    }
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The runtime contract of the image: the Dockerfile's final stage.
pub fn dockerfile_contract() -> RuntimeConfig {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("the Dockerfile");
    RuntimeConfig::from_dockerfile(&text).expect("the Dockerfile's final stage")
}

/// The `wpa` image: the release binary made an image as `wpa demo --node` makes it ([`wpa::devtools::wpa_image`]).
pub fn wpa_image() -> Result<Image> {
    wpa::devtools::wpa_image(&release_binary()?, &format!("{WPA_REPOSITORY}:{WPA_TAG}"))
}

/// The image's binary: `WPA_IMAGE_BINARY`, or the release build next to this test's (`cargo build --release
/// --locked --no-default-features --bin wpa`, as the Dockerfile builds it). A binary older than one of the
/// sources it was built from (cargo's dep-info file beside it lists them) would test old code: refused.
pub fn release_binary() -> Result<PathBuf> {
    const BUILD: &str =
        "cargo build --release --locked --no-default-features --bin wpa (bash scripts/test.sh e2e does it)";
    let binary = match std::env::var_os("WPA_IMAGE_BINARY") {
        Some(path) => PathBuf::from(path),
        None => {
            let debug = Path::new(env!("CARGO_BIN_EXE_wpa"));
            let target = debug.parent().and_then(Path::parent).context("the target directory")?;
            target.join("release/wpa")
        }
    };
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .map_err(|e| anyhow!("{}: {e}; build it: {BUILD}", binary.display()))?;
    let dep_info = binary.with_extension("d");
    let Ok(sources) = std::fs::read_to_string(&dep_info) else {
        eprintln!("[node] {} has no {}: its freshness is not checked", binary.display(), dep_info.display());
        return Ok(binary);
    };
    let listed = sources.split_once(": ").map_or("", |(_, files)| files);
    for source in listed.split_whitespace().map(Path::new) {
        if std::fs::metadata(source).and_then(|m| m.modified()).is_ok_and(|m| m > built) {
            bail!("{} is older than {}: rebuild it: {BUILD}", binary.display(), source.display());
        }
    }
    Ok(binary)
}

/// WPAs created every `period` in `namespace` while it runs, as a user or a CD system would; records each
/// refusal that is not the webhook's own answer to a valid object (there is none: they are valid).
/// When a create was sent (since the probe's start), and how it ended.
type Attempt = (Duration, Result<(), String>);

pub struct AdmissionProbe {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
    results: Arc<Mutex<Vec<Attempt>>>,
    began: Instant,
}

impl AdmissionProbe {
    pub fn start(client: kube::Client, namespace: &str, period: Duration) -> AdmissionProbe {
        use wpa::api::WatermarkPodAutoscaler;
        let api: Api<WatermarkPodAutoscaler> = Api::namespaced(client, namespace);
        let stop = tokio_util::sync::CancellationToken::new();
        let results: Arc<Mutex<Vec<Attempt>>> = Arc::default();
        let began = Instant::now();
        let (s, r, ns) = (stop.clone(), results.clone(), namespace.to_string());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            for i in 0.. {
                tokio::select! {
                    () = s.cancelled() => return,
                    _ = tick.tick() => {}
                }
                // Each on a target of its own: the webhook refuses a second autoscaler on one target.
                let name = format!("probe-{i}");
                let wpa: WatermarkPodAutoscaler = serde_yaml_ng::from_str(&wpa::devtools::wpa_yaml(
                    &ns,
                    &name,
                    &name,
                    "absent-metric",
                    "100",
                    "50",
                    "",
                ))
                .expect("a WPA");
                let at = began.elapsed();
                let result = api.create(&Default::default(), &wpa).await.map(drop).map_err(|e| e.to_string());
                r.lock().unwrap().push((at, result));
            }
        });
        AdmissionProbe { stop, task, results, began }
    }

    /// Stops; returns (requests, failures with their time since the start, each error's first 300 characters).
    pub async fn finish(self) -> (usize, Vec<(Duration, String)>) {
        self.stop.cancel();
        let _ = self.task.await;
        let results = self.results.lock().unwrap();
        let failures = results
            .iter()
            .filter_map(|(at, r)| r.as_ref().err().map(|e| (*at, e.chars().take(300).collect())))
            .collect();
        (results.len(), failures)
    }

    pub fn elapsed(&self) -> Duration {
        self.began.elapsed()
    }
}

/// The pod's name, for messages.
pub fn pod_name(pod: &Pod) -> String {
    pod.name_any()
}
