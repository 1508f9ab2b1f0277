//! A real single-node Kubernetes 1.20 on this machine, so that pods run for real: containerd (runc,
//! overlayfs, cgroupfs) with Debian's CNI plugins on a bridge, the kubelet and kube-proxy (iptables), on a
//! control plane ([`LocalCluster`]) whose API server listens on the bridge, where pods reach it through
//! the `kubernetes` Service. Images come from this machine ([`image`]); none is ever pulled.
//!
//! The node is a machine-wide resource (fixed paths, the cgroup tree, iptables, kernel settings): one runs
//! at a time, under a lock, and a process uses one ([`shared`]). Its teardown puts the host back as it was
//! ([`host`]), checks that nothing is left, and reports the outbound connections the node attempted
//! ([`egress`]: none may leave the machine). A run that was killed before its teardown is cleaned up by the
//! next start. See docs/real-node.md.

mod containerd;
pub mod egress;
mod host;
pub mod image;
mod kubelet;
mod shared;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};

pub use image::{Image, Rootfs, RuntimeConfig};
pub use shared::shared;

use crate::process::{Component, lock, run};
use crate::synthetic_metrics::{Provider, SyntheticMetrics};
use crate::{LocalCluster, Options, find_binaries, wait_for};
use egress::EgressGuard;
use host::{BRIDGE, Baseline, HostLock, STATE_DIR};

/// The pods' network; its first address is the bridge's, where the API server and the kubelet listen.
pub const POD_CIDR: &str = "10.88.0.0/16";
pub const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
/// The Service network of [`LocalCluster`]; routed to the bridge so that a ClusterIP no kube-proxy rule
/// matches never follows the default route off the machine.
const SERVICE_CIDR: &str = "10.0.0.0/24";
pub const NODE_NAME: &str = "wpa-node";
/// The pod sandbox image, made from the cached static `pause` binary (`.invalid` never resolves).
pub const PAUSE_IMAGE: &str = "wpa.invalid/pause:3.4";
const READY_TIMEOUT: Duration = Duration::from_secs(180);
const PACKAGES_HINT: &str = "apt-get install containerd runc containernetworking-plugins iptables conntrack \
                             (bash scripts/test.sh e2e installs them)";

#[derive(Default)]
pub struct NodeOptions {
    /// The Kubernetes binaries, with kubelet, kube-proxy and pause [default: [`find_binaries`]].
    pub bin_dir: Option<PathBuf>,
    /// Imported before the kubelet starts, besides [`PAUSE_IMAGE`].
    pub images: Vec<Image>,
    /// Serve a [`SyntheticMetrics`] as the cluster's metrics APIs ([`Provider`]).
    pub synthetic_metrics: bool,
}

/// What a teardown found.
#[derive(Clone, Debug)]
pub struct NodeReport {
    /// Packets of new connections the node's processes and pods tried to open beyond this machine
    /// (dropped); see [`egress`].
    pub outbound: u64,
    /// Where they went, from the kernel log.
    pub outbound_detail: String,
    /// What could not be put back, and what is still on the host.
    pub leftovers: Vec<String>,
    pub took: Duration,
}

impl NodeReport {
    pub fn is_clean(&self) -> bool {
        self.outbound == 0 && self.leftovers.is_empty()
    }
}

impl std::fmt::Display for NodeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "teardown in {:.1} s; outbound connections attempted: {}",
            self.took.as_secs_f64(),
            self.outbound
        )?;
        if self.outbound > 0 {
            write!(f, "\n{}", self.outbound_detail)?;
        }
        if self.leftovers.is_empty() {
            write!(f, "; host restored")
        } else {
            write!(f, "\nleft on the host:\n  {}", self.leftovers.join("\n  "))
        }
    }
}

pub struct RealNode {
    cluster: Option<Arc<LocalCluster>>,
    provider: Mutex<Option<Provider>>,
    metrics: Option<SyntheticMetrics>,
    kube_proxy: Mutex<Option<Component>>,
    kubelet: Mutex<Option<Component>>,
    containerd: Mutex<Option<Component>>,
    egress: Option<EgressGuard>,
    baseline: Baseline,
    ready_in: Duration,
    report: Mutex<Option<NodeReport>>,
    _lock: HostLock,
}

impl RealNode {
    /// Takes the machine's node lock (waiting for another run's node), cleans what a killed run left, and
    /// starts the node; returns once it is Ready and kube-proxy routes the `kubernetes` Service. On failure
    /// everything started so far is torn down.
    pub async fn start(options: NodeOptions) -> Result<RealNode> {
        let begin = Instant::now();
        let bin_dir = match &options.bin_dir {
            Some(dir) => dir.clone(),
            None => find_binaries()?,
        };
        check_prerequisites(&bin_dir)?;
        let (lock, baseline) = tokio::task::spawn_blocking(|| -> Result<(HostLock, Baseline)> {
            let lock = HostLock::acquire()?;
            let baseline = Baseline::load_or_record()?;
            let problems = host::restore(&baseline);
            let left = host::leftovers(&baseline);
            if !left.is_empty() {
                bail!(
                    "the host still has a previous node's state that cannot be removed:\n  {}\n{}",
                    left.join("\n  "),
                    problems.join("\n")
                );
            }
            Ok((lock, baseline))
        })
        .await??;
        let mut node = RealNode {
            cluster: None,
            provider: Mutex::new(None),
            metrics: None,
            kube_proxy: Mutex::new(None),
            kubelet: Mutex::new(None),
            containerd: Mutex::new(None),
            egress: None,
            baseline,
            ready_in: Duration::ZERO,
            report: Mutex::new(None),
            _lock: lock,
        };
        // Dropping `node` on an error below tears down what was started.
        node.bring_up(options, bin_dir).await?;
        node.ready_in = begin.elapsed();
        crate::log_line!("[node] {NODE_NAME} Ready in {:.1} s", node.ready_in.as_secs_f64());
        Ok(node)
    }

    async fn bring_up(&mut self, options: NodeOptions, bin_dir: PathBuf) -> Result<()> {
        let begin = Instant::now();
        let lap = |what: &str| crate::log_line!("[node] {what} after {:.1} s", begin.elapsed().as_secs_f64());
        std::fs::create_dir_all(STATE_DIR).with_context(|| format!("creating {STATE_DIR}"))?;
        self.egress = Some(EgressGuard::install(POD_CIDR)?);
        create_bridge()?;

        // Images are written while the control plane starts (the wpa image's gzip takes seconds).
        let mut images = options.images;
        images.push(pause_image(&bin_dir)?);
        let archives = tokio::task::spawn_blocking(move || -> Result<Vec<PathBuf>> {
            let dir = Path::new(STATE_DIR).join("images");
            std::fs::create_dir_all(&dir)?;
            images
                .iter()
                .enumerate()
                .map(|(i, image)| {
                    let path = dir.join(format!("{i}.tar"));
                    image.write_archive(&path).with_context(|| format!("writing image {}", image.name))?;
                    Ok(path)
                })
                .collect()
        });
        let cluster = LocalCluster::try_start_with(Options {
            node_address: Some(BRIDGE_IP),
            bin_dir: Some(bin_dir.clone()),
            ..Options::full()
        })
        .await?;
        let cluster = Arc::new(cluster);
        self.cluster = Some(cluster.clone());
        lap("control plane ready");
        let archives = archives.await??;
        let logs = cluster.dir().join("logs");

        let config = containerd::write_config(POD_CIDR, &BRIDGE_IP.to_string(), PAUSE_IMAGE)?;
        let started = tokio::task::spawn_blocking(move || {
            let component = containerd::start(&config, logs.join("containerd.log"))?;
            for archive in &archives {
                containerd::ctr(&["images", "import", &archive.display().to_string()])
                    .with_context(|| format!("importing {}", archive.display()))?;
            }
            Ok::<_, anyhow::Error>(component)
        })
        .await??;
        *lock(&self.containerd) = Some(started);
        lap("containerd up, images imported");

        let logs = cluster.dir().join("logs");
        let kubeconfig = cluster.kubeconfig_path();
        *lock(&self.kubelet) = Some(kubelet::start_kubelet(
            &bin_dir,
            kubeconfig,
            NODE_NAME,
            BRIDGE_IP,
            PAUSE_IMAGE,
            logs.join("kubelet.log"),
        )?);
        *lock(&self.kube_proxy) = Some(kubelet::start_kube_proxy(
            &bin_dir,
            kubeconfig,
            NODE_NAME,
            BRIDGE_IP,
            POD_CIDR,
            logs.join("kube-proxy.log"),
        )?);
        self.wait_ready(&cluster).await?;
        lap("node Ready");
        if options.synthetic_metrics {
            let provider = Provider::register(&cluster).await?;
            self.metrics = Some(provider.metrics.clone());
            *lock(&self.provider) = Some(provider);
            lap("synthetic metrics provider registered");
        }
        Ok(())
    }

    /// Waits for the Node's Ready condition, lifts the not-ready taint (only the node-lifecycle
    /// controller would, and [`LocalCluster`] runs without it), and waits for kube-proxy's rules.
    async fn wait_ready(&self, cluster: &LocalCluster) -> Result<()> {
        let nodes: Api<Node> = Api::all(cluster.client());
        wait_for(READY_TIMEOUT, || async {
            for (name, component) in [("kubelet", &self.kubelet), ("kube-proxy", &self.kube_proxy)] {
                if let Some(c) = lock(component).as_mut()
                    && let Some(status) = c.exited()
                {
                    return Err(format!("{name} exited ({status}):\n{}", c.log_tail(40)));
                }
            }
            let node = nodes.get_opt(NODE_NAME).await.map_err(|e| e.to_string())?.ok_or("not registered")?;
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "Ready")
                .ok_or("no Ready condition")?;
            if ready.status == "True" {
                Ok(())
            } else {
                Err(format!("Ready={}: {:?}", ready.status, ready.message))
            }
        })
        .await
        .map_err(|e| anyhow!("node {NODE_NAME} is not Ready: {e}\n{}", self.log_tails(20)))?;
        nodes
            .patch(
                NODE_NAME,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"taints": null}})),
            )
            .await
            .context("lifting the node's not-ready taint")?;
        wait_for(Duration::from_secs(60), || async {
            let rules =
                run("iptables", &["-t", "nat", "-S", "KUBE-SERVICES"]).map_err(|e| format!("{e:#}"))?;
            if rules.contains("default/kubernetes") {
                Ok(())
            } else {
                Err("no rule for default/kubernetes".into())
            }
        })
        .await
        .map_err(|e| {
            anyhow!("kube-proxy did not program the kubernetes Service: {e}\n{}", self.log_tails(20))
        })
    }

    pub fn cluster(&self) -> &LocalCluster {
        self.cluster.as_deref().expect("the control plane runs until the node is dropped")
    }

    pub fn client(&self) -> kube::Client {
        self.cluster().client()
    }

    /// The provider of [`NodeOptions::synthetic_metrics`].
    pub fn metrics(&self) -> Option<&SyntheticMetrics> {
        self.metrics.as_ref()
    }

    /// From the start of [`Self::start`] to a Ready node.
    pub fn ready_in(&self) -> Duration {
        self.ready_in
    }

    /// Fails, saying where they went, once the node has attempted any connection beyond the machine;
    /// otherwise the count (0).
    pub fn check_outbound(&self) -> Result<u64> {
        self.egress.as_ref().ok_or_else(|| anyhow!("the egress guard is not installed"))?.check()
    }

    /// The host pid of a container's main process; `container_id` as in a pod's status
    /// (`containerd://<id>` or the bare id).
    pub fn container_pid(&self, container_id: &str) -> Result<u32> {
        containerd::task_pid(container_id.trim_start_matches("containerd://"))
    }

    /// `ctr` against the node's containerd, in the CRI's namespace (images, content, tasks).
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        containerd::ctr(args)
    }

    /// SIGKILLs a container's main process, as a crash or the OOM killer would.
    pub fn kill_container(&self, container_id: &str) -> Result<()> {
        let id = container_id.trim_start_matches("containerd://");
        containerd::ctr(&["tasks", "kill", "--signal", "SIGKILL", id]).map(drop)
    }

    /// The last `lines` lines of every component's log (control plane and node).
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = self.cluster.as_ref().map(|c| c.log_tails(lines)).unwrap_or_default();
        for component in [&self.containerd, &self.kubelet, &self.kube_proxy] {
            if let Some(c) = lock(component).as_ref() {
                out.push_str(&c.log_section(lines));
            }
        }
        out
    }

    /// Tears the node down (once; later calls return the same report): kube-proxy and the kubelet, the control
    /// plane's processes, the metrics provider, containerd, then every host change (pods' processes, mounts,
    /// network namespaces, iptables, the bridge, cgroups, kernel settings, files), and checks the host
    /// against its baseline. The control plane's files go when the node is dropped.
    pub fn stop(&self) -> NodeReport {
        let mut report = lock(&self.report);
        if let Some(r) = report.as_ref() {
            return r.clone();
        }
        let begin = Instant::now();
        // kube-proxy and the kubelet would re-create what the teardown removes; the API server would keep
        // calling the metrics provider's Service, whose address leads nowhere but the default route once the
        // provider's namespace is gone.
        for component in [&self.kube_proxy, &self.kubelet] {
            if let Some(mut c) = lock(component).take() {
                c.kill();
            }
        }
        if let Some(cluster) = &self.cluster {
            cluster.kill();
        }
        lock(&self.provider).take();
        if let Some(mut c) = lock(&self.containerd).take() {
            c.kill();
        }
        let (outbound, outbound_detail) = match &self.egress {
            Some(guard) => match guard.count() {
                Ok(n) => (n, if n > 0 { guard.report() } else { String::new() }),
                Err(e) => (u64::MAX, format!("cannot read the egress counter: {e:#}")),
            },
            None => (0, String::new()),
        };
        let mut leftovers = host::restore(&self.baseline);
        leftovers.extend(host::leftovers(&self.baseline));
        if leftovers.is_empty() {
            self.baseline.forget();
        }
        let r = NodeReport { outbound, outbound_detail, leftovers, took: begin.elapsed() };
        crate::log_line!("[node] {r}");
        *report = Some(r.clone());
        r
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            crate::log_line!("[node] component logs:\n{}", self.log_tails(25));
        }
        self.stop();
    }
}

/// The programs the node runs, with how to get them.
fn check_prerequisites(bin_dir: &Path) -> Result<()> {
    check_host()?;
    let missing: Vec<&str> =
        ["kubelet", "kube-proxy", "pause"].into_iter().filter(|b| !bin_dir.join(b).exists()).collect();
    if !missing.is_empty() {
        bail!(
            "{} lacks {}: run `bash scripts/k8s-test-env.sh` (recipe 3 builds them)",
            bin_dir.display(),
            missing.join(", ")
        );
    }
    Ok(())
}

/// What the node needs of the host besides the Kubernetes binaries: root, and Debian's containerd, runc,
/// CNI plugins, iptables and conntrack. Cheap: callers check it before anything long.
pub fn check_host() -> Result<()> {
    if !crate::process::is_root() {
        bail!("the real node needs root (iptables, mounts, cgroups, network namespaces)");
    }
    let missing: Vec<&str> =
        ["containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip6tables", "conntrack"]
            .into_iter()
            .filter(|p| run("sh", &["-c", &format!("command -v {p}")]).is_err())
            .collect();
    if !missing.is_empty() || !Path::new("/usr/lib/cni/bridge").exists() {
        bail!(
            "the real node needs {} and Debian's CNI plugins in /usr/lib/cni: {PACKAGES_HINT}",
            missing.join(", ")
        );
    }
    Ok(())
}

/// The bridge exists before the API server, which listens on its address; the CNI bridge plugin adopts
/// it and its gateway address.
fn create_bridge() -> Result<()> {
    let taken = run("ip", &["-o", "-4", "addr", "show"])?;
    if let Some(line) = taken.lines().find(|l| l.contains(" 10.88.")) {
        bail!("{POD_CIDR}, the node's pod network, is already on this machine: {line}");
    }
    let cidr = format!("{BRIDGE_IP}/16");
    run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
    run("ip", &["addr", "add", &cidr, "dev", BRIDGE])?;
    run("ip", &["link", "set", BRIDGE, "up"])?;
    run("ip", &["route", "add", SERVICE_CIDR, "dev", BRIDGE])?;
    Ok(())
}

/// The sandbox image: the static pause binary that `scripts/k8s-test-env.sh` builds, alone.
fn pause_image(bin_dir: &Path) -> Result<Image> {
    let mut rootfs = Rootfs::new();
    rootfs.executable("/pause", &bin_dir.join("pause"))?;
    Ok(Image {
        name: PAUSE_IMAGE.into(),
        rootfs,
        runtime: RuntimeConfig { entrypoint: vec!["/pause".into()], ..RuntimeConfig::default() },
    })
}
