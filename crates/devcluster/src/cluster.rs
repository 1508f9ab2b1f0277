//! A private Kubernetes control plane (etcd, kube-apiserver and optionally kube-controller-manager and
//! kube-scheduler) for one test.

use std::ffi::OsString;
use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::scratch;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::pki::{ADMIN_USER, ClusterPki};
use super::process::{Component, lock, without_proxy_settings};

/// What to run besides etcd and kube-apiserver.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// kube-controller-manager: Deployments get ReplicaSets and pods, service accounts get created.
    pub controller_manager: bool,
    /// kube-scheduler: pods get bound to the Nodes made with [`LocalCluster::create_node`].
    pub scheduler: bool,
    /// A complete `KubeSchedulerConfiguration` (v1beta1 on 1.20) for the scheduler, e.g. with an
    /// `extenders:` section. Implies `scheduler`. The harness fills in `clientConnection.kubeconfig` and
    /// `leaderElection.leaderElect: false` when absent and always overrides `healthzBindAddress` and
    /// `metricsBindAddress` with a free loopback port (1.20 defaults them to the fixed port 10251, which
    /// would collide between parallel tests).
    pub scheduler_config: Option<String>,
    /// More kube-controller-manager flags, after the harness's own (e.g.
    /// `--horizontal-pod-autoscaler-sync-period=2s`, so that an HPA acts within a short test).
    pub controller_manager_args: Vec<String>,
    /// The directory with etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl
    /// [default: [`find_binaries`]].
    pub bin_dir: Option<PathBuf>,
    /// No `[test-cluster] ... ready` / `stopped` lines on stderr: for a program that tells its own story
    /// (`wpa demo`), where the harness's lines and its temporary paths are noise.
    pub quiet: bool,
    /// For a real node ([`crate::node`]): kube-apiserver listens on and advertises this address of the
    /// host (the node's bridge) instead of 127.0.0.1, so that pods reach it through the `kubernetes`
    /// Service; it reaches kubelets by their InternalIP and leaves Service routing to kube-proxy.
    pub node_address: Option<Ipv4Addr>,
}

impl Options {
    /// The whole control plane: controller-manager and scheduler included.
    pub fn full() -> Self {
        Self { controller_manager: true, scheduler: true, ..Self::default() }
    }
}

const K8S_VERSION: &str = "1.20.2";
const REQUIRED_BINARIES: [&str; 5] =
    ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"];
const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(120);
const COMPONENT_READY_TIMEOUT: Duration = Duration::from_secs(60);
const FIELD_MANAGER: &str = "wpa-test-harness";

pub struct LocalCluster {
    bin_dir: PathBuf,
    // `None` once kept for debugging (WPA_KEEP_TEST_CLUSTER=1).
    dir: Option<tempfile::TempDir>,
    /// etcd's data, in memory (/dev/shm) where the machine has it: etcd syncs every write to disk, which
    /// makes a disk-backed test cluster write-bound at a few hundred writes per second.
    etcd_dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    pki: ClusterPki,
    kubeconfig: PathBuf,
    server_url: String,
    apiserver_args: Vec<OsString>,
    client: kube::Client,
    http: reqwest::Client,
    options: Options,
    startup_time: Duration,
    total_startup_time: Duration,
    next_pod_ip: AtomicU32,
    // Locked only briefly (never across an await) so that a restart works through `&self`.
    etcd: Mutex<Option<Component>>,
    apiserver: Mutex<Option<Component>>,
    controller_manager: Mutex<Option<Component>>,
    scheduler: Mutex<Option<Component>>,
}

/// Loopback ports for one cluster, distinct from every other port the process handed out (ports.rs).
struct Ports {
    etcd_client: u16,
    etcd_peer: u16,
    apiserver: u16,
    controller_manager_healthz: u16,
    scheduler_healthz: u16,
}

impl Ports {
    fn pick() -> Result<Self> {
        // The components bind them moments later. Another process may grab one in between: the start is
        // then retried with new ports.
        let p = crate::ports::free_loopback_ports(5)?;
        Ok(Self {
            etcd_client: p[0],
            etcd_peer: p[1],
            apiserver: p[2],
            controller_manager_healthz: p[3],
            scheduler_healthz: p[4],
        })
    }
}

impl LocalCluster {
    /// etcd and kube-apiserver only. Panics with the component logs if the start fails.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// Panics with the component logs if the start fails.
    pub async fn start_with(options: Options) -> Self {
        match Self::try_start_with(options).await {
            Ok(cluster) => cluster,
            Err(e) => panic!("the test control plane did not start: {e:#}"),
        }
    }

    pub async fn try_start_with(options: Options) -> Result<Self> {
        // rustls needs one process-wide provider when a config does not name one (kube's does not).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bin_dir = match &options.bin_dir {
            Some(dir) => dir.clone(),
            None => find_binaries()?,
        };
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            match Self::start_once(&bin_dir, options.clone()).await {
                Err(e) if attempt < ATTEMPTS && format!("{e:#}").contains("address already in use") => {
                    crate::log_line!(
                        "[test-cluster] a port was taken by someone else; retrying with new ports"
                    );
                }
                result => return result,
            }
        }
        unreachable!("the last attempt returns")
    }

    async fn start_once(bin_dir: &Path, options: Options) -> Result<Self> {
        let begin = Instant::now();
        // What killed runs left first: their etcd data holds memory until it is removed.
        let temp = std::env::temp_dir();
        for (parent, prefix) in [
            (temp.as_path(), scratch::CLUSTER_PREFIX),
            (Path::new(scratch::ETCD_PARENT), scratch::ETCD_PREFIX),
        ] {
            for left in scratch::sweep(parent, prefix) {
                crate::log_line!("[test-cluster] removed {} (its process is gone)", left.display());
            }
        }
        let dir = scratch::make(&temp, scratch::CLUSTER_PREFIX)
            .context("creating the cluster's temporary directory")?;
        let dir_path = dir.path().to_path_buf();
        let address = options.node_address.map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V4);
        let pki = ClusterPki::generate(&dir_path.join("pki"), address)?;
        std::fs::create_dir_all(dir_path.join("logs")).context("creating the log directory")?;
        let ports = Ports::pick()?;
        let server_url = format!("https://{address}:{}", ports.apiserver);

        let kubeconfig = dir_path.join("admin.kubeconfig");
        std::fs::write(&kubeconfig, admin_kubeconfig(&server_url, &pki))
            .context("writing the admin kubeconfig")?;
        let client = kube_client(&kubeconfig).await?;
        let http = readiness_client(&pki)?;

        let apiserver_args = apiserver_args(&dir_path, &pki, &ports, options.node_address);
        let mut cluster = LocalCluster {
            bin_dir: bin_dir.to_path_buf(),
            dir: Some(dir),
            etcd_dir: scratch::make(Path::new(scratch::ETCD_PARENT), scratch::ETCD_PREFIX).ok(),
            dir_path,
            pki,
            kubeconfig,
            server_url,
            apiserver_args,
            client,
            http,
            options: options.clone(),
            startup_time: Duration::ZERO,
            total_startup_time: Duration::ZERO,
            next_pod_ip: AtomicU32::new(0),
            etcd: Mutex::new(None),
            apiserver: Mutex::new(None),
            controller_manager: Mutex::new(None),
            scheduler: Mutex::new(None),
        };

        cluster.start_etcd(&ports).await?;
        cluster.startup_time = cluster.start_apiserver().await?;
        // Created by the API server's bootstrap controller, which may lag behind /readyz.
        cluster.wait_for_object::<Namespace>(None, "default", COMPONENT_READY_TIMEOUT).await?;
        if options.controller_manager {
            cluster.start_controller_manager(&ports).await?;
        }
        if options.scheduler || options.scheduler_config.is_some() {
            cluster.start_scheduler(&ports).await?;
        }
        if options.controller_manager {
            // Pods are rejected until the service-account controller made the namespace's account.
            cluster.wait_for_default_service_account("default").await?;
        }
        cluster.total_startup_time = begin.elapsed();
        if !options.quiet {
            crate::log_line!(
                "[test-cluster] {} ready: kube-apiserver in {} ms, whole control plane in {} ms (dir {})",
                cluster.server_url,
                cluster.startup_time.as_millis(),
                cluster.total_startup_time.as_millis(),
                cluster.dir_path.display()
            );
        }
        Ok(cluster)
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir_path.join("logs").join(format!("{name}.log"))
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    async fn start_etcd(&self, ports: &Ports) -> Result<()> {
        let client_url = format!("http://127.0.0.1:{}", ports.etcd_client);
        let peer_url = format!("http://127.0.0.1:{}", ports.etcd_peer);
        let args: Vec<OsString> = vec![
            "--name=default".into(),
            format!(
                "--data-dir={}",
                self.etcd_dir
                    .as_ref()
                    .map_or_else(|| self.dir_path.join("etcd"), |d| d.path().join("etcd"))
                    .display()
            )
            .into(),
            format!("--listen-client-urls={client_url}").into(),
            format!("--advertise-client-urls={client_url}").into(),
            format!("--listen-peer-urls={peer_url}").into(),
            format!("--initial-advertise-peer-urls={peer_url}").into(),
            format!("--initial-cluster=default={peer_url}").into(),
        ];
        let etcd = Component::spawn("etcd", &self.bin("etcd"), args, self.log_path("etcd"))?;
        *lock(&self.etcd) = Some(etcd);
        self.wait_http_ok(&self.etcd, &format!("{client_url}/health"), COMPONENT_READY_TIMEOUT).await?;
        Ok(())
    }

    /// Starts kube-apiserver (with the arguments of the first start) and waits for `/readyz` = 200.
    /// Returns how long that took.
    async fn start_apiserver(&self) -> Result<Duration> {
        let begin = Instant::now();
        let apiserver = Component::spawn(
            "kube-apiserver",
            &self.bin("kube-apiserver"),
            self.apiserver_args.clone(),
            self.log_path("kube-apiserver"),
        )?;
        *lock(&self.apiserver) = Some(apiserver);
        self.wait_http_ok(&self.apiserver, &format!("{}/readyz", self.server_url), APISERVER_READY_TIMEOUT)
            .await?;
        Ok(begin.elapsed())
    }

    async fn start_controller_manager(&self, ports: &Ports) -> Result<()> {
        let args: Vec<OsString> = vec![
            format!("--kubeconfig={}", self.kubeconfig.display()).into(),
            "--leader-elect=false".into(),
            format!("--service-account-private-key-file={}", self.pki.service_account_key.display()).into(),
            format!("--root-ca-file={}", self.pki.ca_cert.display()).into(),
            // No kubelet renews node heartbeats here: the node-lifecycle controller would mark every
            // Node NotReady after 40 s, taint it and evict its pods.
            "--controllers=*,-nodelifecycle".into(),
            // The defaults (10252 plain, 10257 TLS) are fixed ports: parallel clusters would collide.
            "--address=127.0.0.1".into(),
            format!("--port={}", ports.controller_manager_healthz).into(),
            "--secure-port=0".into(),
        ];
        let args =
            args.into_iter().chain(self.options.controller_manager_args.iter().map(OsString::from)).collect();
        let cm = Component::spawn(
            "kube-controller-manager",
            &self.bin("kube-controller-manager"),
            args,
            self.log_path("kube-controller-manager"),
        )?;
        *lock(&self.controller_manager) = Some(cm);
        self.wait_http_ok(
            &self.controller_manager,
            &format!("http://127.0.0.1:{}/healthz", ports.controller_manager_healthz),
            COMPONENT_READY_TIMEOUT,
        )
        .await
    }

    async fn start_scheduler(&self, ports: &Ports) -> Result<()> {
        let config = scheduler_config(
            self.options.scheduler_config.as_deref(),
            &self.kubeconfig,
            ports.scheduler_healthz,
        )?;
        let config_path = self.dir_path.join("kube-scheduler.yaml");
        std::fs::write(&config_path, config).context("writing the scheduler configuration")?;
        let args: Vec<OsString> = vec![
            format!("--config={}", config_path.display()).into(),
            // The default 10259 is a fixed port: parallel clusters would collide.
            "--secure-port=0".into(),
        ];
        let scheduler = Component::spawn(
            "kube-scheduler",
            &self.bin("kube-scheduler"),
            args,
            self.log_path("kube-scheduler"),
        )?;
        *lock(&self.scheduler) = Some(scheduler);
        self.wait_http_ok(
            &self.scheduler,
            &format!("http://127.0.0.1:{}/healthz", ports.scheduler_healthz),
            COMPONENT_READY_TIMEOUT,
        )
        .await
    }

    /// Polls `url` until it answers 200; fails early, with the component's log tail, if the component
    /// exits.
    async fn wait_http_ok(
        &self,
        component: &Mutex<Option<Component>>,
        url: &str,
        timeout: Duration,
    ) -> Result<()> {
        let begin = Instant::now();
        loop {
            {
                let mut guard = lock(component);
                let c = guard
                    .as_mut()
                    .ok_or_else(|| anyhow!("waiting for {url} of a component that is not running"))?;
                if let Some(status) = c.exited() {
                    bail!(
                        "{} exited ({status}) before {url} answered. Last lines of {}:\n{}",
                        c.name,
                        c.log_path.display(),
                        c.log_tail(40)
                    );
                }
            }
            let last = match self.http.get(url).bearer_auth(&self.pki.admin_token).send().await {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => {
                    let status = resp.status();
                    format!("{status}: {}", resp.text().await.unwrap_or_default())
                }
                Err(e) => format!("{e:#}"),
            };
            if begin.elapsed() > timeout {
                let guard = lock(component);
                let (name, path, tail) = guard
                    .as_ref()
                    .map(|c| (c.name.clone(), c.log_path.clone(), c.log_tail(40)))
                    .unwrap_or_default();
                bail!(
                    "{name}: {url} not ready after {timeout:?} (last answer: {last}). Last lines of {}:\n{tail}",
                    path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops kube-apiserver (SIGTERM, SIGKILL after 10 s) and waits until it has exited. etcd and the
    /// other components keep running; clients see connection errors until [`Self::start_apiserver_again`].
    pub async fn stop_apiserver(&self) {
        let apiserver = lock(&self.apiserver).take();
        if let Some(mut apiserver) = apiserver {
            apiserver.stop(Duration::from_secs(10)).await;
        }
    }

    /// Starts kube-apiserver again on the same port with the same etcd, certificates and flags; returns
    /// how long it took to become ready.
    pub async fn start_apiserver_again(&self) -> Result<Duration> {
        if lock(&self.apiserver).is_some() {
            bail!("kube-apiserver is already running");
        }
        let took = self.start_apiserver().await?;
        crate::log_line!("[test-cluster] {} ready again after {} ms", self.server_url, took.as_millis());
        Ok(took)
    }

    /// Stop, then start, kube-apiserver; returns how long the new one took to become ready.
    pub async fn restart_apiserver(&self) -> Result<Duration> {
        self.stop_apiserver().await;
        self.start_apiserver_again().await
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// An admin kubeconfig (token of a `system:masters` user), usable by kubectl and kube-rs.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:PORT` (or the node address of [`Options::node_address`])
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The address the API server listens on (loopback, or [`Options::node_address`]).
    pub fn address(&self) -> IpAddr {
        IpAddr::V4(self.options.node_address.unwrap_or(Ipv4Addr::LOCALHOST))
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The cluster CA (PEM file) that signed the API server's serving certificate.
    pub fn ca_cert_path(&self) -> &Path {
        &self.pki.ca_cert
    }

    pub fn admin_token(&self) -> &str {
        &self.pki.admin_token
    }

    /// The temporary directory holding certificates, logs (`logs/*.log`) and etcd's data.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// How long kube-apiserver took from spawn to `/readyz` = 200 at the first start.
    pub fn startup_time(&self) -> Duration {
        self.startup_time
    }

    /// The whole `start_with`: certificates, etcd, kube-apiserver and the optional components.
    pub fn total_startup_time(&self) -> Duration {
        self.total_startup_time
    }

    /// Runs the cached kubectl against this cluster. Blocks the calling thread.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_command(args)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.bin("kubectl").display()))
    }

    /// Runs kubectl with `input` on its stdin. Blocks the calling thread.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let run = || -> std::io::Result<Output> {
            let mut child = self
                .kubectl_command(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(input.as_bytes())?;
            }
            child.wait_with_output()
        };
        run().unwrap_or_else(|e| panic!("running {} with a stdin: {e}", self.bin("kubectl").display()))
    }

    /// `kubectl apply -f -` with `yaml` on stdin. Blocks the calling thread. Ok(stdout) or
    /// Err(stderr and stdout).
    pub fn kubectl_apply(&self, yaml: &str) -> Result<String, String> {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], yaml);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "kubectl apply failed ({}): {}{stdout}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    pub(crate) fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin("kubectl"));
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            // A private discovery cache: the shared ~/.kube/cache is keyed by host:port, and ports are
            // reused by later clusters that serve other resources.
            .arg(format!("--cache-dir={}", self.dir_path.join("kubectl-cache").display()))
            .args(args)
            .env_remove("KUBECONFIG");
        without_proxy_settings(&mut cmd);
        cmd
    }

    /// Server-side applies every document of a (multi-document) YAML manifest through the kube client,
    /// resolving each kind by discovery. Returns the applied objects.
    pub async fn apply_yaml(&self, yaml: &str) -> Result<Vec<DynamicObject>> {
        use serde::Deserialize as _;
        let mut applied = Vec::new();
        for document in serde_yaml_ng::Deserializer::from_str(yaml) {
            let value = serde_json::Value::deserialize(document).context("parsing the YAML manifest")?;
            if value.is_null() {
                continue;
            }
            let obj: DynamicObject =
                serde_json::from_value(value).context("a manifest document is not a Kubernetes object")?;
            let types =
                obj.types.as_ref().ok_or_else(|| anyhow!("a manifest document lacks apiVersion/kind"))?;
            let gvk = GroupVersionKind::try_from(types)
                .with_context(|| format!("bad apiVersion {:?}", types.api_version))?;
            let name = obj.name_any();
            let (resource, caps) = kube::discovery::pinned_kind(&self.client, &gvk)
                .await
                .with_context(|| format!("the server does not serve {gvk:?}"))?;
            let api: Api<DynamicObject> = match caps.scope {
                Scope::Namespaced => Api::namespaced_with(
                    self.client.clone(),
                    obj.metadata.namespace.as_deref().unwrap_or("default"),
                    &resource,
                ),
                Scope::Cluster => Api::all_with(self.client.clone(), &resource),
            };
            let result = api
                .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&obj))
                .await
                .with_context(|| format!("applying {} {name}", gvk.kind))?;
            applied.push(result);
        }
        Ok(applied)
    }

    /// Creates a cluster-scoped object (e.g. a ValidatingWebhookConfiguration, an APIService).
    pub async fn create_cluster_object<K>(&self, obj: &K) -> Result<K>
    where
        K: Resource<Scope = ClusterResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + Debug,
    {
        Api::<K>::all(self.client.clone())
            .create(&PostParams::default(), obj)
            .await
            .with_context(|| format!("creating {} {}", K::kind(&()), obj.name_any()))
    }

    /// Creates a namespaced object in `namespace`.
    pub async fn create_namespaced<K>(&self, namespace: &str, obj: &K) -> Result<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + Debug,
    {
        Api::<K>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), obj)
            .await
            .with_context(|| format!("creating {} {namespace}/{}", K::kind(&()), obj.name_any()))
    }

    /// Creates a namespace labelled `kubernetes.io/metadata.name=<name>` (1.21+ servers add that label
    /// themselves, 1.20 does not) plus `labels`; with a controller-manager, waits for its default
    /// service account so pods can be created at once.
    pub async fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) -> Result<Namespace> {
        let mut all_labels = serde_json::Map::new();
        all_labels.insert("kubernetes.io/metadata.name".into(), name.into());
        for (k, v) in labels {
            all_labels.insert((*k).into(), (*v).into());
        }
        let ns: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": name, "labels": all_labels }
        }))
        .context("building the Namespace")?;
        let ns = self.create_cluster_object(&ns).await?;
        if self.options.controller_manager {
            self.wait_for_default_service_account(name).await?;
        }
        Ok(ns)
    }

    async fn wait_for_default_service_account(&self, namespace: &str) -> Result<()> {
        self.wait_for_object::<ServiceAccount>(Some(namespace), "default", COMPONENT_READY_TIMEOUT)
            .await
            .map(|_| ())
    }

    async fn wait_for_object<K>(&self, namespace: Option<&str>, name: &str, timeout: Duration) -> Result<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    {
        let url = match namespace {
            Some(ns) => K::url_path(&(), Some(ns)),
            None => K::url_path(&(), None),
        };
        let client = self.client.clone();
        wait_for(timeout, || {
            let client = client.clone();
            let url = format!("{url}/{name}");
            async move {
                let req = axum::http::Request::get(&url).body(Vec::new()).map_err(|e| e.to_string())?;
                client.request::<K>(req).await.map_err(|e| format!("{url}: {e}"))
            }
        })
        .await
        .map_err(|e| anyhow!("waiting for {} {name}: {e}", K::kind(&())))
    }

    /// A Node the scheduler can bind pods to: labels `kubernetes.io/hostname`,
    /// `topology.kubernetes.io/zone` and `failure-domain.beta.kubernetes.io/zone`, the given
    /// capacity (= allocatable), and a `Ready=True` condition. `cpu` and `memory` are quantities
    /// ("4", "8Gi").
    pub async fn create_node(
        &self,
        name: &str,
        zone: &str,
        cpu: &str,
        memory: &str,
        pods: u32,
    ) -> Result<Node> {
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "topology.kubernetes.io/zone": zone,
                    "failure-domain.beta.kubernetes.io/zone": zone,
                }
            }
        }))
        .context("building the Node")?;
        let api = Api::<Node>::all(self.client.clone());
        api.create(&PostParams::default(), &node).await.with_context(|| format!("creating Node {name}"))?;
        let now = now();
        let resources = json!({ "cpu": cpu, "memory": memory, "pods": pods.to_string() });
        // Set through the status subresource: what a kubelet would report.
        let status = json!({
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "conditions": [{
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "test harness acts as the kubelet",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }],
                "addresses": [{ "type": "Hostname", "address": name }],
            }
        });
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .with_context(|| format!("setting the status of Node {name}"))?;
        // The TaintNodesByCondition admission plugin gives every new Node the taint
        // node.kubernetes.io/not-ready:NoSchedule, and only the node-lifecycle controller (disabled
        // here, see start_controller_manager) would lift it once the node reports Ready.
        api.patch(name, &PatchParams::default(), &Patch::Merge(json!({ "spec": { "taints": null } })))
            .await
            .with_context(|| format!("removing the not-ready taint of Node {name}"))
    }

    /// Acts as the kubelet for every pod matching `label_selector` in `namespace` that is bound to a
    /// node and not being deleted: sets phase Running, conditions PodScheduled/Initialized/
    /// ContainersReady/Ready = True, `startTime`, a `podIP` and running container statuses. Pods already
    /// Ready are left alone, so their times stay put. Returns how many matching bound pods are Ready
    /// afterwards.
    ///
    /// Pod IPs come from the RFC 5737 documentation ranges 198.51.100.0/24 and 203.0.113.0/24: nothing
    /// listens there and nothing in the tests connects to them. (192.0.2.0/24 is left out: this
    /// machine's own interface lives there.)
    pub async fn mark_pods_ready(&self, namespace: &str, label_selector: &str) -> Result<usize> {
        let api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        let pods = api
            .list(&ListParams::default().labels(label_selector))
            .await
            .with_context(|| format!("listing pods {namespace}/{label_selector}"))?;
        let mut ready = 0;
        for pod in pods {
            let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
            if !bound || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if is_pod_ready(&pod) {
                ready += 1;
                continue;
            }
            let name = pod.name_any();
            let now = now();
            let containers: Vec<_> = pod
                .spec
                .as_ref()
                .map(|s| s.containers.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "image": c.image.clone().unwrap_or_default(),
                        "imageID": "",
                        "ready": true,
                        "started": true,
                        "restartCount": 0,
                        "state": { "running": { "startedAt": now } },
                    })
                })
                .collect();
            // A pod that was ready once keeps its address (podIPs merge by ip: a second one is refused).
            let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_else(|| self.next_pod_ip());
            let condition = |kind: &str| json!({ "type": kind, "status": "True", "lastTransitionTime": now });
            let status = json!({
                "status": {
                    "phase": "Running",
                    "startTime": now,
                    "podIP": ip,
                    "podIPs": [{ "ip": ip }],
                    "conditions": [
                        condition("PodScheduled"),
                        condition("Initialized"),
                        condition("ContainersReady"),
                        condition("Ready"),
                    ],
                    "containerStatuses": containers,
                }
            });
            // Strategic merge: conditions merge by type, keeping the scheduler's PodScheduled reason.
            api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&status))
                .await
                .with_context(|| format!("marking pod {namespace}/{name} ready"))?;
            ready += 1;
        }
        Ok(ready)
    }

    /// Acts as the kubelet for pods being deleted: without a kubelet a deleted pod stays Terminating
    /// forever. Removes every such pod in `namespace` at once; returns how many.
    pub async fn reap_terminating_pods(&self, namespace: &str) -> Result<usize> {
        let api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        let pods =
            api.list(&ListParams::default()).await.with_context(|| format!("listing pods in {namespace}"))?;
        let mut reaped = 0;
        for pod in pods {
            if pod.metadata.deletion_timestamp.is_none() {
                continue;
            }
            match api.delete(&pod.name_any(), &DeleteParams::default().grace_period(0)).await {
                Ok(_) => reaped += 1,
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e).context("force-deleting a terminating pod"),
            }
        }
        Ok(reaped)
    }

    fn next_pod_ip(&self) -> String {
        const RANGES: [&str; 2] = ["198.51.100", "203.0.113"];
        let n = self.next_pod_ip.fetch_add(1, Ordering::Relaxed);
        format!("{}.{}", RANGES[(n / 254 % 2) as usize], n % 254 + 1)
    }

    /// Creates (or replaces the spec of) a CRD and waits until it is Established.
    pub async fn install_crd(&self, crd: CustomResourceDefinition) -> Result<CustomResourceDefinition> {
        let api = Api::<CustomResourceDefinition>::all(self.client.clone());
        let name = crd.name_any();
        let mut crd = crd;
        crd.metadata.resource_version = None;
        crd.status = None;
        api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&crd))
            .await
            .with_context(|| format!("installing CRD {name}"))?;
        wait_for(COMPONENT_READY_TIMEOUT, || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await.map_err(|e| e.to_string())?;
                let established = crd
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
                if established { Ok(crd) } else { Err(format!("not Established yet: {:?}", crd.status)) }
            }
        })
        .await
        .map_err(|e| anyhow!("CRD {name}: {e}"))
    }

    /// Waits until the APIService `name` (e.g. `v1beta1.external.metrics.k8s.io`) reports
    /// `Available=True` and the API server actually routes its group-version: the proxy handler is
    /// registered asynchronously and can lag the condition, answering 404 meanwhile.
    pub async fn wait_api_service_available(&self, name: &str, timeout: Duration) -> Result<APIService> {
        let api = Api::<APIService>::all(self.client.clone());
        let client = self.client.clone();
        wait_for(timeout, || {
            let api = api.clone();
            let client = client.clone();
            async move {
                let svc = api.get(name).await.map_err(|e| e.to_string())?;
                let available = svc
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|cs| cs.iter().find(|c| c.type_ == "Available"));
                match available {
                    Some(c) if c.status == "True" => {
                        let spec = svc.spec.as_ref().ok_or("the APIService has no spec")?;
                        let path = format!(
                            "/apis/{}/{}",
                            spec.group.clone().unwrap_or_default(),
                            spec.version.clone().unwrap_or_default()
                        );
                        let req =
                            axum::http::Request::get(&path).body(Vec::new()).map_err(|e| e.to_string())?;
                        client
                            .request_text(req)
                            .await
                            .map_err(|e| format!("Available, but GET {path}: {e}"))?;
                        Ok(svc)
                    }
                    Some(c) => Err(format!(
                        "Available={} ({}: {})",
                        c.status,
                        c.reason.clone().unwrap_or_default(),
                        c.message.clone().unwrap_or_default()
                    )),
                    None => Err("no Available condition yet".to_string()),
                }
            }
        })
        .await
        .map_err(|e| anyhow!("APIService {name}: {e}"))
    }

    /// The process ids of the running components, by name (for CPU and memory figures).
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        [
            ("etcd", &self.etcd),
            ("kube-apiserver", &self.apiserver),
            ("kube-controller-manager", &self.controller_manager),
            ("kube-scheduler", &self.scheduler),
        ]
        .into_iter()
        .filter_map(|(name, c)| lock(c).as_ref().map(|c| (name, c.pid())))
        .collect()
    }

    /// Stops every component at once (SIGKILL, not SIGTERM: the data is thrown away, and a graceful
    /// kube-apiserver shutdown can take seconds per test). Dropping the cluster does it; a real node's teardown
    /// does it first, so that the API server stops calling the Services it tears down.
    pub fn kill(&self) {
        let begin = Instant::now();
        let components = [&self.scheduler, &self.controller_manager, &self.apiserver, &self.etcd];
        if components.iter().all(|c| lock(c).is_none()) {
            return;
        }
        // Signal all first, then reap each.
        for component in components {
            if let Some(c) = lock(component).as_mut() {
                c.request_kill();
            }
        }
        for component in components {
            if let Some(mut c) = lock(component).take() {
                c.kill();
            }
        }
        if !self.options.quiet {
            crate::log_line!(
                "[test-cluster] {} stopped in {} ms",
                self.server_url,
                begin.elapsed().as_millis()
            );
        }
    }

    /// The last `lines` lines of each component's log.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for component in [&self.etcd, &self.apiserver, &self.controller_manager, &self.scheduler] {
            if let Some(c) = lock(component).as_ref() {
                out.push_str(&c.log_section(lines));
            }
        }
        out
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            crate::log_line!(
                "[test-cluster] test failed; component logs of {}:\n{}",
                self.server_url,
                self.log_tails(25)
            );
        }
        self.kill();
        if std::env::var_os("WPA_KEEP_TEST_CLUSTER").is_some()
            && let Some(dir) = self.dir.take()
        {
            crate::log_line!("[test-cluster] kept {}", dir.keep().display());
            if let Some(etcd) = self.etcd_dir.take() {
                crate::log_line!("[test-cluster] kept etcd's data in {}", etcd.keep().display());
            }
        }
    }
}

/// Polls `check` every 100 ms until it returns `Ok`, or `timeout` has passed; then returns the last
/// `Err` (what was observed) together with the time waited.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let begin = Instant::now();
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(last) if begin.elapsed() >= timeout => {
                return Err(format!("timed out after {timeout:?}; last observation: {last}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

pub fn is_pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The directory with the five binaries, as `scripts/k8s-test-env.sh` resolves it (without building).
pub fn find_binaries() -> Result<PathBuf> {
    const HINT: &str = "run `bash scripts/k8s-test-env.sh` from the repository root (the first run builds \
                        the control plane, 4 to 10 minutes on 2 cores; later runs reuse the cache)";
    for var in ["WPA_K8S_BIN_DIR", "KUBEBUILDER_ASSETS"] {
        if let Some(dir) = std::env::var_os(var).filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            let missing = missing_binaries(&dir);
            if !missing.is_empty() {
                bail!(
                    "{var}={} lacks {}; point it at a directory with {} or unset it and {HINT}",
                    dir.display(),
                    missing.join(", "),
                    REQUIRED_BINARIES.join(", ")
                );
            }
            return Ok(dir);
        }
    }
    let cache = match std::env::var_os("WPA_K8S_CACHE_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .ok_or_else(|| anyhow!("neither XDG_CACHE_HOME nor HOME is set; {HINT}"))?;
            base.join("wpa").join(format!("k8s-v{K8S_VERSION}"))
        }
    };
    let dir = cache.join("bin");
    let missing = missing_binaries(&dir);
    if !missing.is_empty() {
        bail!(
            "the Kubernetes test binaries are missing ({} not in {}): {HINT}",
            missing.join(", "),
            dir.display()
        );
    }
    Ok(dir)
}

fn missing_binaries(dir: &Path) -> Vec<&'static str> {
    use std::os::unix::fs::PermissionsExt;
    REQUIRED_BINARIES
        .into_iter()
        .filter(|b| {
            !std::fs::metadata(dir.join(b)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .collect()
}

fn apiserver_args(dir: &Path, pki: &ClusterPki, ports: &Ports, node: Option<Ipv4Addr>) -> Vec<OsString> {
    let p = |path: &Path| path.display().to_string();
    let network = match node {
        // The `kubernetes` Service's endpoint is the advertised address; `kubectl logs` reaches the kubelet
        // by the Node's InternalIP instead of resolving its name through the host's resolver.
        Some(ip) => vec![
            format!("--bind-address={ip}"),
            format!("--advertise-address={ip}"),
            "--kubelet-preferred-address-types=InternalIP".into(),
        ],
        // Aggregated APIs and Service-referenced webhooks: resolve Services through their Endpoints
        // (there is no kube-proxy to make ClusterIPs work).
        None => vec!["--bind-address=127.0.0.1".into(), "--enable-aggregator-routing=true".into()],
    };
    [
        format!("--etcd-servers=http://127.0.0.1:{}", ports.etcd_client),
        format!("--secure-port={}", ports.apiserver),
        format!("--cert-dir={}", p(&dir.join("apiserver-certs"))),
        format!("--tls-cert-file={}", p(&pki.apiserver_cert)),
        format!("--tls-private-key-file={}", p(&pki.apiserver_key)),
        format!("--token-auth-file={}", p(&pki.token_file)),
        "--authorization-mode=RBAC".into(),
        format!("--service-account-key-file={}", p(&pki.service_account_pub)),
        format!("--service-account-signing-key-file={}", p(&pki.service_account_key)),
        "--service-account-issuer=https://kubernetes.default.svc".into(),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        // The aggregator authenticates to extension API servers as front-proxy-client, passing the user in
        // these headers.
        format!("--requestheader-client-ca-file={}", p(&pki.front_proxy_ca_cert)),
        "--requestheader-allowed-names=front-proxy-client".into(),
        "--requestheader-username-headers=X-Remote-User".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        format!("--proxy-client-cert-file={}", p(&pki.front_proxy_client_cert)),
        format!("--proxy-client-key-file={}", p(&pki.front_proxy_client_key)),
    ]
    .into_iter()
    .chain(network)
    .map(OsString::from)
    .collect()
}

fn admin_kubeconfig(server_url: &str, pki: &ClusterPki) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: wpa-test
  cluster:
    server: {server_url}
    certificate-authority: {ca}
users:
- name: {ADMIN_USER}
  user:
    token: {token}
contexts:
- name: wpa-test
  context:
    cluster: wpa-test
    user: {ADMIN_USER}
    namespace: default
current-context: wpa-test
",
        ca = pki.ca_cert.display(),
        token = pki.admin_token
    )
}

async fn kube_client(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = Kubeconfig::read_from(kubeconfig).context("reading the admin kubeconfig")?;
    let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .context("loading the admin kubeconfig")?;
    // kube-rs falls back to HTTPS_PROXY from the environment; test traffic must stay on loopback.
    config.proxy_url = None;
    let home = tokio::runtime::Handle::current();
    let client = kube::client::ClientBuilder::try_from(config)
        .context("building the kube client")?
        .with_layer(&tower::layer::layer_fn(move |inner| OnHomeRuntime { inner, home: home.clone() }))
        .build();
    Ok(client)
}

/// Runs each request of the kube client on the runtime the client was built on, whichever runtime sends it.
/// hyper opens and pools a connection from the request's future, so otherwise a client shared by tests
/// (each `#[tokio::test]` has a runtime of its own) hands one test a pooled connection whose socket and task
/// died with another test's runtime ("runtime dropped the dispatch task").
struct OnHomeRuntime<S> {
    inner: S,
    home: tokio::runtime::Handle,
}

impl<S, B> tower::Service<http::Request<kube::client::Body>> for OnHomeRuntime<S>
where
    S: tower::Service<http::Request<kube::client::Body>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<tower::BoxError> + Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<B>;
    type Error = tower::BoxError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<kube::client::Body>) -> Self::Future {
        let task = self.home.spawn(self.inner.call(request));
        Box::pin(async move { task.await.map_err(tower::BoxError::from)?.map_err(Into::into) })
    }
}

/// For health probes (etcd, kube-apiserver, controller-manager, scheduler): trusts only the cluster CA.
fn readiness_client(pki: &ClusterPki) -> Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(pki.ca_der.clone()))
        .context("trusting the cluster CA")?;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .context("building the readiness HTTP client")
}

/// The scheduler's configuration: the caller's (if any) with the harness's connection, leader-election
/// and port settings filled in.
fn scheduler_config(user: Option<&str>, kubeconfig: &Path, healthz_port: u16) -> Result<String> {
    use serde_yaml_ng::{Mapping, Value};
    let mut config: Value = match user {
        Some(text) => serde_yaml_ng::from_str(text).context("parsing Options::scheduler_config")?,
        None => serde_yaml_ng::from_str(
            "apiVersion: kubescheduler.config.k8s.io/v1beta1\nkind: KubeSchedulerConfiguration\n",
        )
        .context("parsing the default scheduler configuration")?,
    };
    let root =
        config.as_mapping_mut().ok_or_else(|| anyhow!("Options::scheduler_config is not a YAML mapping"))?;
    let section = |root: &mut Mapping, key: &str| -> Result<Mapping> {
        match root.remove(key) {
            None | Some(Value::Null) => Ok(Mapping::new()),
            Some(Value::Mapping(m)) => Ok(m),
            Some(other) => bail!("scheduler_config: {key} must be a mapping, not {other:?}"),
        }
    };
    let mut connection = section(root, "clientConnection")?;
    if !connection.contains_key("kubeconfig") {
        connection.insert("kubeconfig".into(), kubeconfig.display().to_string().into());
    }
    root.insert("clientConnection".into(), Value::Mapping(connection));
    let mut election = section(root, "leaderElection")?;
    if !election.contains_key("leaderElect") {
        election.insert("leaderElect".into(), false.into());
    }
    root.insert("leaderElection".into(), Value::Mapping(election));
    let address = format!("127.0.0.1:{healthz_port}");
    root.insert("healthzBindAddress".into(), address.clone().into());
    root.insert("metricsBindAddress".into(), address.into());
    serde_yaml_ng::to_string(&config).context("writing the scheduler configuration")
}
