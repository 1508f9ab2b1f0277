//! `wpa demo`: the whole product on this machine, with no cluster of yours. It builds (once) and starts a
//! private Kubernetes control plane, starts `wpa serve` (webhook and reconciler) against it, registers the
//! admission webhooks, applies the example Deployment and WPA with `kubectl`, then drives a **synthetic**
//! metric through a burst and a lull and tells what happens in plain words, each phase until the count is
//! stable, ending with `wpa explain`'s decision trace, the WPA's events and what to try next. Everything is
//! torn down at the end, or at Ctrl-C with `--keep`.
//!
//! The status column is the engine's own decision, read as `wpa explain` reads it (the same inputs, the
//! same [`engine::decide`]), rendered by [`PlainStatus`]: the demo decides nothing itself.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use kube::{Api, api::ListParams};

use devcluster::{
    LocalCluster, Options, SyntheticMetrics, find_binaries,
    node::{NodeOptions, RealNode},
};

use super::{ScalingCluster, WpaServe, webhook_configurations};
use crate::{
    api::WatermarkPodAutoscaler,
    engine::{
        self, MetricObservation, PlainStatus,
        conditions::text::FIRST_SCALE,
        plain::{Hold, duration_words},
    },
    reconciler::inputs::Sources,
    runtime::output::note,
};

const SCRIPT: &str = include_str!("../../scripts/k8s-test-env.sh");
const DEPLOYMENT: &str = include_str!("../../examples/deployment.yaml");
const WPA: &str = include_str!("../../examples/wpa.yaml");
const METRIC: &str = "nginx.net.request_per_s";

/// A line of the story on stdout; a reader that went away (`wpa demo | head`) is not an error.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = $crate::runtime::output::stdout(&format!("{}\n", format_args!($($arg)*)));
    }};
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  # The whole story in about two minutes, then everything is torn down (root: a network namespace)
  sudo wpa demo

  # Leave the cluster up at the end, to try kubectl and `wpa explain` on it; Ctrl-C tears it down
  sudo wpa demo --keep

  # Shorter windows and delays: a quicker story
  sudo wpa demo --window-seconds 3

  # The same story with the chart's pods and real pods on a real node on this machine
  sudo wpa demo --node")]
pub(crate) struct DemoArgs {
    /// Forbidden windows and delays of the example WPA are shortened to this many seconds (1 to 3600; the
    /// API refuses 0), so that a whole burst-and-lull cycle takes about two minutes instead of an hour.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..=3600))]
    pub(crate) window_seconds: i32,
    /// At the end, leave the control plane, `wpa serve` and the synthetic metric running, print the
    /// `export KUBECONFIG=...` line to reach them, and tear everything down at Ctrl-C (or SIGTERM).
    #[arg(long)]
    pub(crate) keep: bool,
    /// Run it as users run it: a real single-node Kubernetes on this machine (kubelet, containerd, runc, CNI,
    /// kube-proxy; nothing is pulled, no packet leaves the machine), `wpa` installed by its Helm chart as
    /// pods behind their Service, and the workload's pods real. Needs Debian's containerd, runc,
    /// containernetworking-plugins, iptables and conntrack, the Helm library for Python
    /// (tests/helm/requirements.txt), and the repository this binary was built from (the chart).
    #[arg(long)]
    pub(crate) node: bool,
}

/// Why the demo cannot run here, before anything is started.
pub(crate) fn preflight() -> Result<()> {
    if !devcluster::process::is_root() {
        bail!(
            "needs root: it creates a network namespace (ip netns) for the synthetic metrics provider and, the first time, \
             installs Debian packages with apt-get; run it with sudo (`wpa simulate` needs neither root nor a cluster)"
        );
    }
    Ok(())
}

/// Where the story runs. Dropping it tears everything down.
// One per run of the demo: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Stage {
    /// `wpa serve` as a process beside a private control plane, whose pods a stand-in kubelet marks ready.
    /// Dropped in this order: `wpa serve` first, then the cluster (the control plane, its temporary and
    /// in-memory directories, the metrics provider and its network namespace).
    Local { serve: WpaServe, c: ScalingCluster },
    /// The chart's pods and the workload's on a real node; dropping it restores every host change.
    Node { node: RealNode },
}

/// The release the chart is installed as with `--node`, and its namespace.
const RELEASE: &str = "wpa";
const RELEASE_NAMESPACE: &str = "wpa-system";
/// The image of the chart's pods with `--node` (`.invalid`: nothing could ever pull it).
const NODE_IMAGE: (&str, &str) = ("wpa.invalid/wpa", "demo");

impl Stage {
    fn cluster(&self) -> &LocalCluster {
        match self {
            Stage::Local { c, .. } => &c.cluster,
            Stage::Node { node } => node.cluster(),
        }
    }

    fn metrics(&self) -> Result<&SyntheticMetrics> {
        match self {
            Stage::Local { c, .. } => Ok(&c.metrics),
            Stage::Node { node } => node.metrics().context("the node's synthetic metrics provider"),
        }
    }
}

/// What the demo started.
struct Running {
    stage: Stage,
    bin_dir: PathBuf,
    /// The synthetic metric's last value (requests/s in total).
    total: f64,
}

/// Runs the demo until it ends or SIGINT/SIGTERM arrives; either way everything it started is torn down.
/// With `--keep`, the end waits for the signal.
pub(crate) async fn run_until_interrupted(args: &DemoArgs, bin_dir: PathBuf) -> Result<()> {
    let running = tokio::select! {
        result = run(args, bin_dir) => result?,
        () = crate::runtime::signal::termination() => {
            note!("[demo] interrupted: tearing everything down");
            bail!("interrupted; everything it started was torn down")
        }
    };
    if args.keep {
        running.keep_until_terminated().await;
    }
    note!("[demo] tearing everything down");
    running.tear_down()
}

/// The control-plane binaries: found, or built by the project's script (the first time only).
pub(crate) fn binaries() -> Result<PathBuf> {
    if let Ok(dir) = find_binaries() {
        return Ok(dir);
    }
    note!(
        "[demo] building the Kubernetes v1.20.2 control plane once (4 to 10 minutes on 2 cores; cached afterwards)"
    );
    let mut child = Command::new("bash")
        .args(["-s", "--"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("running bash")?;
    child.stdin.take().context("bash stdin")?.write_all(SCRIPT.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("scripts/k8s-test-env.sh failed ({}); see its messages above", out.status);
    }
    let dir = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_string();
    Ok(PathBuf::from(dir))
}

/// The example WPA, its windows and delays shortened for a live demo.
fn demo_wpa(window: i32) -> Result<serde_json::Value> {
    let mut wpa: serde_json::Value = serde_yaml_ng::from_str(WPA).context("examples/wpa.yaml")?;
    let spec = wpa["spec"].as_object_mut().context("examples/wpa.yaml has no spec")?;
    for field in ["upscaleForbiddenWindowSeconds", "downscaleForbiddenWindowSeconds"] {
        spec.insert(field.into(), window.into());
    }
    spec.insert("downscaleDelayBelowWatermarkSeconds".into(), (2 * window).into());
    // New pods count as ready a second after they start, not 30 s: the stand-in kubelet makes them ready
    // at once.
    spec.insert("readinessDelaySeconds".into(), 1.into());
    Ok(wpa)
}

/// The fields of `stored` (the spec as the API server stored it) that `applied` did not have, or had with
/// another value: what the mutating webhook added.
fn added_fields(applied: &serde_json::Value, stored: &serde_json::Value) -> Vec<String> {
    let Some(stored) = stored.as_object() else { return Vec::new() };
    stored
        .iter()
        .filter(|(k, v)| !v.is_null() && applied.get(k.as_str()) != Some(v))
        .map(|(k, v)| format!("{k}: {}", v.as_str().map_or_else(|| v.to_string(), String::from)))
        .collect()
}

/// What the engine sees and decides now, for one line of the story.
#[derive(Clone, Debug, PartialEq)]
struct Look {
    /// The target's `spec.replicas`.
    replicas: i32,
    /// Ready pods, as the engine counted them.
    ready: Option<i32>,
    /// The metric as the external metrics API serves it: requests/s of all pods together.
    total: Option<f64>,
    /// The value the engine compares with the watermarks: requests/s per ready pod (`algorithm: average`).
    per_pod: Option<f64>,
    status: PlainStatus,
}

impl Look {
    /// Whether a line for `next` would tell something this one did not (a countdown is not news).
    fn differs(&self, next: &Look) -> bool {
        (self.replicas, self.ready, self.total) != (next.replicas, next.ready, next.total)
            || !self.status.same_kind(&next.status)
    }

    fn line(&self, t: u64) -> String {
        let number = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
        format!(
            "t={t:>4}s  {:>8}  {:>5}  {:>14}  {:>7}  {}",
            self.replicas,
            self.ready.map_or("-".into(), |r| r.to_string()),
            number(self.total),
            number(self.per_pod),
            self.status
        )
    }
}

const HEADER: &str = "     t  replicas  ready  req/s in total  per pod  status";

/// Reads the WPA and its inputs and runs the engine on them, as `wpa explain` does.
async fn look(sources: &Sources, wpas: &Api<WatermarkPodAutoscaler>) -> Result<Look> {
    let wpa = wpas.get("web").await.context("reading the WPA")?;
    let now = Timestamp::now();
    let plan = engine::Plan::new(&wpa);
    let inputs = sources.gather(&plan, true, now).await;
    let decision = engine::decide(&plan, &inputs.observation(), now);
    let replicas = inputs.target.as_ref().map_or(0, |s| s.spec_replicas);
    let total = inputs.metrics.iter().find_map(|m| match m {
        MetricObservation::External(Ok(sample)) => Some(sample.values.iter().sum::<i64>() as f64 / 1000.0),
        _ => None,
    });
    let result = decision.metrics.iter().find_map(|m| m.result.as_ref().and_then(|r| r.as_ref().ok()));
    Ok(Look {
        replicas,
        ready: result.map(|r| r.ready_replicas),
        total,
        per_pod: result.map(|r| r.usage / 1000.0),
        status: PlainStatus::of(&decision, replicas),
    })
}

/// A phase of the story: the synthetic metric's value, and what the WPA should do about it.
struct Phase {
    total: f64,
    name: &'static str,
    /// What the WPA should do next, in words (empty: nothing).
    then: String,
    /// The least time in the phase before it may end.
    dwell: Duration,
}

/// Starts a private control plane and `wpa serve` beside it, with the webhooks registered.
async fn start_local(bin_dir: &Path, exe: &Path) -> Result<Stage> {
    note!("[demo] starting a private control plane (etcd, kube-apiserver, controller-manager, scheduler)");
    let started = Instant::now();
    let c = ScalingCluster::try_start(Options {
        bin_dir: Some(bin_dir.to_path_buf()),
        quiet: true,
        ..Options::full()
    })
    .await?;
    let control_plane = started.elapsed();
    let cluster = c.cluster.clone();
    let ca_file = cluster.dir().join("webhook-ca.crt");
    let ca_arg = ca_file.to_string_lossy().to_string();
    let serve = WpaServe::start_binary(
        exe,
        &cluster,
        "demo",
        None,
        &["--self-signed", "--ca-bundle-out", &ca_arg, "--sync-period", "2s", "--leader-elect=false"],
    )
    .await?;
    let ca = std::fs::read_to_string(&ca_file).context("reading the webhook CA")?;
    cluster
        .kubectl_apply(&webhook_configurations(serve.webhook_port, Some(&ca))?)
        .map_err(anyhow::Error::msg)?;
    say!("A private Kubernetes v1.20.2 control plane is up (in {}).", seconds(control_plane));
    say!(
        "wpa serve is running (ready in {}): admission webhook on 127.0.0.1:{}, reconciler every 2 s.",
        seconds(serve.ready_in),
        serve.webhook_port
    );
    c.kubelet().serve("default");
    Ok(Stage::Local { serve, c })
}

/// Starts a real node, and installs the chart on it with this binary as its image.
async fn start_node(bin_dir: &Path, exe: &Path) -> Result<Stage> {
    note!(
        "[demo] starting a real node: etcd, kube-apiserver, controller-manager, scheduler, containerd, kubelet, kube-proxy"
    );
    let image = super::node::wpa_image(exe, &format!("{}:{}", NODE_IMAGE.0, NODE_IMAGE.1))?;
    let options =
        NodeOptions { bin_dir: Some(bin_dir.to_path_buf()), images: vec![image], synthetic_metrics: true };
    let node = RealNode::start(options).await?;
    say!(
        "A real single-node Kubernetes v1.20.2 is up (in {}): kubelet, containerd, runc, CNI and kube-proxy on this machine; nothing is pulled.",
        seconds(node.ready_in())
    );
    let cluster = node.cluster();
    cluster.install_crd(crate::api::crd()).await?;
    // 1.20 does not label namespaces by name: the chart's webhooks skip those labelled so (NOTES.txt).
    for ns in ["kube-system", RELEASE_NAMESPACE] {
        if ns == RELEASE_NAMESPACE {
            cluster.create_namespace(ns, &[]).await?;
        }
        let out =
            cluster.kubectl(&["label", "--overwrite", "namespace", ns, "wpa.datadoghq.com/webhook=disabled"]);
        if !out.status.success() {
            bail!("labelling namespace {ns}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
    }
    let installed = Instant::now();
    let values = serde_json::json!({
        "image": {"repository": NODE_IMAGE.0, "tag": NODE_IMAGE.1, "pullPolicy": "Never"},
        "tls": {"mode": "selfSigned"},
        "reconciler": {"syncPeriod": "2s"},
    });
    super::node::install_chart(cluster.kubeconfig_path(), RELEASE_NAMESPACE, RELEASE, &values)?;
    let pods = format!("app.kubernetes.io/name=wpa,app.kubernetes.io/instance={RELEASE}");
    devcluster::wait_ready_pods(&cluster.client(), RELEASE_NAMESPACE, &pods, 2, Duration::from_secs(180))
        .await
        .map_err(|e| anyhow::anyhow!("the chart's pods did not become ready: {e}"))?;
    super::node::wait_admission(&cluster.client(), "default", Duration::from_secs(60)).await?;
    say!(
        "wpa is installed by its chart (charts/wpa, selfSigned TLS; ready in {}): 2 pods in {RELEASE_NAMESPACE}, the API \
         server calls their webhook through Service {RELEASE}, and the leader reconciles every 2 s.",
        seconds(installed.elapsed())
    );
    Ok(Stage::Node { node })
}

/// The example Deployment; on a real node, its pods run the node's pause image (nothing is pulled).
fn demo_deployment(node: bool) -> Result<String> {
    if !node {
        return Ok(DEPLOYMENT.to_string());
    }
    let mut d: serde_json::Value = serde_yaml_ng::from_str(DEPLOYMENT).context("examples/deployment.yaml")?;
    let pod = &mut d["spec"]["template"]["spec"];
    pod["terminationGracePeriodSeconds"] = 1.into();
    for c in pod["containers"].as_array_mut().context("examples/deployment.yaml has no containers")? {
        c["image"] = devcluster::node::PAUSE_IMAGE.into();
        c["imagePullPolicy"] = "Never".into();
    }
    Ok(d.to_string())
}

/// Runs the story on the control plane in `bin_dir` (from [`binaries`]).
async fn run(args: &DemoArgs, bin_dir: PathBuf) -> Result<Running> {
    let exe = std::env::current_exe().context("locating the wpa binary")?;
    let stage =
        if args.node { start_node(&bin_dir, &exe).await? } else { start_local(&bin_dir, &exe).await? };
    let (cluster, metrics) = (stage.cluster(), stage.metrics()?);
    let w = args.window_seconds;
    metrics.set(METRIC, 285.0);
    let applied = demo_wpa(w)?;
    for (file, text) in [
        ("examples/deployment.yaml", demo_deployment(args.node)?),
        ("examples/wpa.yaml", applied.to_string()),
    ] {
        let out = cluster.kubectl_apply(&text).map_err(anyhow::Error::msg)?;
        say!("kubectl apply -f {file}: {}", out.trim());
    }
    if args.node {
        say!(
            "The Deployment's pods run the node's pause image instead of nginx (nothing is pulled); they are real pods."
        );
        // The story starts from 3 counted pods: ready, and past the readiness delay.
        devcluster::wait_ready_pods(&cluster.client(), "default", "app=web", 3, Duration::from_secs(120))
            .await
            .map_err(|e| anyhow::anyhow!("the example's pods did not become ready: {e}"))?;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let stored = cluster.kubectl(&["get", "wpa", "web", "-o", "json"]);
    let stored: serde_json::Value =
        serde_json::from_slice(&stored.stdout).context("reading the stored WPA with kubectl")?;
    let added = added_fields(&applied["spec"], &stored["spec"]);
    if added.is_empty() {
        say!("The mutating webhook added nothing: the example sets every default itself.");
    } else {
        say!("The mutating webhook added what the example leaves out: {}.", added.join(", "));
    }
    say!(
        "The demo shortened the example's windows and delays: upscale and downscale forbidden windows {w} s (60 s and \
         300 s in the example), downscaleDelayBelowWatermarkSeconds {} s (600 s), readinessDelaySeconds 1 s (30 s).",
        2 * w
    );
    let wpa: WatermarkPodAutoscaler = serde_json::from_value(stored).context("the stored WPA")?;
    let band = engine::metric_bands(&wpa.spec).into_iter().next().map(|(_, b)| b).unwrap_or_default();
    let per_pod = |milli: f64| format!("{:.0}", milli / 1000.0);
    let band_words =
        format!("{} to {} req/s per pod", per_pod(band.adjusted_low), per_pod(band.adjusted_high));
    say!(
        "The WPA keeps each pod between its watermarks, {} and {} req/s (algorithm average: the metric's total over \
         the ready pods). With its 10 % tolerance it acts outside {band_words}: the band.",
        per_pod(band.low_milli as f64),
        per_pod(band.high_milli as f64),
    );
    say!(
        "The metric is SYNTHETIC: a test provider registered as external.metrics.k8s.io serves the values this demo \
         sets (every series is labelled synthetic=\"true\").\n"
    );

    let sources = Sources::read_only(cluster.client(), None, String::new());
    let wpas: Api<WatermarkPodAutoscaler> = Api::namespaced(cluster.client(), "default");
    let window = Duration::from_secs(w as u64);
    let phases = [
        Phase { total: 285.0, name: "steady traffic", then: String::new(), dwell: Duration::from_secs(10) },
        Phase {
            total: 1200.0,
            name: "a burst",
            then: format!(". The WPA scales up by at most +50 % per step, one step per {w} s window."),
            dwell: Duration::ZERO,
        },
        Phase {
            total: 300.0,
            name: "the burst is over",
            then: format!(
                ". After {} s below the band the WPA scales down by at most -20 % per step, one step per {w} s window.",
                2 * w
            ),
            dwell: Duration::ZERO,
        },
    ];
    // A phase that does not settle in this time ends anyway (a slow machine; the status says why).
    let longest = Duration::from_secs(30) + 25 * window;
    let begin = Instant::now();
    let story_start = Timestamp::now();
    say!("{HEADER}");
    let mut last: Option<Look> = None;
    let mut settled_at = None;
    for (i, phase) in phases.iter().enumerate() {
        metrics.set(METRIC, phase.total);
        let phase_start = Instant::now();
        let replicas = last.as_ref().map_or(3, |l| l.replicas);
        say!(
            "t={:>4}s  >>> {}: {:.0} req/s in total, {:.0} per pod over {replicas} pods (the band: {band_words}){}",
            begin.elapsed().as_secs(),
            phase.name,
            phase.total,
            phase.total / f64::from(replicas.max(1)),
            phase.then,
        );
        let start_count = replicas;
        loop {
            let now = look(&sources, &wpas).await;
            let t = begin.elapsed().as_secs();
            match now {
                Ok(now) => {
                    // A scale made between two looks: say what it was, from the wait that preceded it.
                    if let Some(l) = &last
                        && l.replicas != now.replicas
                        && let Some(scale) = l.status.scale_after_wait(false)
                        && matches!(scale, PlainStatus::Scaling { to, .. } if to == now.replicas)
                    {
                        say!("{}", Look { status: scale, ..now.clone() }.line(t));
                    }
                    if last.as_ref().is_none_or(|l| l.differs(&now)) {
                        say!("{}", now.line(t));
                    }
                    let holding = matches!(now.status, PlainStatus::Holding(_));
                    let moved = i == 0 || now.replicas != start_count;
                    let done = holding && moved && phase_start.elapsed() >= phase.dwell;
                    last = Some(now);
                    if done {
                        break;
                    }
                }
                Err(e) => say!("t={t:>4}s  cannot read the WPA: {e:#}"),
            }
            if phase_start.elapsed() > longest {
                say!(
                    "t={:>4}s  (this phase did not settle in {}; going on)",
                    t,
                    duration_words(longest.as_secs_f64())
                );
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        settled_at = Some(begin.elapsed());
    }
    if let (Some(l), Some(at)) = (&last, settled_at)
        && matches!(l.status, PlainStatus::Holding(Hold::WithinBand))
    {
        say!(
            "\nThe count is stable after {}: {} replicas for {:.0} req/s in total, {:.0} per pod, within the band ({band_words}).",
            duration_words(at.as_secs_f64()),
            l.replicas,
            l.total.unwrap_or_default(),
            l.per_pod.unwrap_or_default(),
        );
    }

    say!("\nThe decision trace now (`wpa explain -n default web`):\n");
    let out = Command::new(&exe)
        .args(["explain", "-n", "default", "web", "--kubeconfig"])
        .arg(cluster.kubeconfig_path())
        .output()
        .context("running wpa explain")?;
    say!("{}", String::from_utf8_lossy(&out.stdout).trim_end());
    crate::runtime::output::stderr(&String::from_utf8_lossy(&out.stderr));
    say!("\nEvents of the WPA (`kubectl get events --field-selector involvedObject.name=web`):");
    for line in events(&cluster.client(), story_start).await? {
        say!("{line}");
    }
    say!("\n{}", next_steps(args.keep));
    let total = phases.last().map_or(0.0, |p| p.total);
    Ok(Running { stage, bin_dir, total })
}

/// The WPA's events, oldest first, with the time since the story began.
async fn events(client: &kube::Client, story_start: Timestamp) -> Result<Vec<String>> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let selector = "involvedObject.kind=WatermarkPodAutoscaler,involvedObject.name=web";
    let mut events = api.list(&ListParams::default().fields(selector)).await.context("listing events")?.items;
    let when = |e: &Event| e.first_timestamp.as_ref().map(|t| t.0).or(e.event_time.as_ref().map(|t| t.0));
    events.sort_by_key(when);
    Ok(events
        .iter()
        .map(|e| {
            let t = when(e).map_or(0, |w| w.duration_since(story_start).as_secs().max(0));
            let message = e.message.clone().unwrap_or_default();
            // Upstream's first pass "scales" to the count it found: say so, it is not a change.
            let note = if message.ends_with(FIRST_SCALE) {
                "  (the first pass records the count it found: no change)"
            } else {
                ""
            };
            let count = e.count.filter(|n| *n > 1).map(|n| format!(" (×{n})")).unwrap_or_default();
            format!(
                "t={t:>4}s  {:<8} {:<9} {message}{count}{note}",
                e.type_.as_deref().unwrap_or(""),
                e.reason.as_deref().unwrap_or("")
            )
        })
        .collect())
}

fn next_steps(kept: bool) -> String {
    let mut out = String::from(
        "next:
  wpa simulate --wpa examples/wpa.yaml --series examples/series.csv --ready-after 30 --plot simulation.svg
      replay a day of traffic against the example WPA, offline, no root; then your own WPA (--wpa FILE, or -
      for stdin) and your own metric (CSV timestamp,metric,value): docs/simulate.md
  helm install wpa charts/wpa -n wpa-system --create-namespace --set image.repository=REGISTRY/wpa
      install it in your cluster (build the image from the Dockerfile first): charts/wpa/README.md
  wpa explain -n NAMESPACE NAME
      why a live WPA does or does not scale, read with your kubeconfig",
    );
    if !kept {
        out.push_str(
            "\n  sudo wpa demo --keep\n      this demo, leaving its cluster up at the end to try kubectl and wpa explain on it",
        );
    }
    out
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl Running {
    /// Keeps everything running until SIGINT/SIGTERM, after saying how to reach it and what runs.
    async fn keep_until_terminated(&self) {
        let cluster = self.stage.cluster();
        say!(
            "\nThe cluster stays up (--keep) until you press Ctrl-C here (or `kill -TERM {}`); then all of it is torn down.",
            std::process::id()
        );
        match &self.stage {
            Stage::Local { serve, c } => say!(
                "Running: etcd, kube-apiserver, kube-controller-manager and kube-scheduler ({}), wpa serve (pid {}), and, \
                 inside this process, the synthetic metrics provider (network namespace {}; the metric stays at {:.0} \
                 req/s) and a stand-in kubelet that marks the pods ready.",
                cluster.server_url(),
                serve.pid(),
                c.metrics_netns(),
                self.total,
            ),
            Stage::Node { .. } => say!(
                "Running: etcd, kube-apiserver, kube-controller-manager and kube-scheduler ({}), containerd, the kubelet \
                 and kube-proxy, wpa's pods (release {RELEASE} in {RELEASE_NAMESPACE}) and the workload's, and, inside \
                 this process, the synthetic metrics provider (the metric stays at {:.0} req/s).",
                cluster.server_url(),
                self.total,
            ),
        }
        say!(
            "In another shell:\n  export KUBECONFIG={}\n  export PATH={}:$PATH    # kubectl v1.20.2, the control plane's version\n  \
             kubectl get wpa,deployments,pods{}\n  wpa explain web",
            cluster.kubeconfig_path().display(),
            self.bin_dir.display(),
            if matches!(self.stage, Stage::Node { .. }) { " -A" } else { "" },
        );
        crate::runtime::signal::termination().await;
    }

    /// Tears everything down; on a real node, fails if the node tried to reach beyond this machine or could
    /// not put the host back as it found it.
    fn tear_down(self) -> Result<()> {
        let Running { stage, .. } = self;
        if let Stage::Node { node } = &stage {
            let report = node.stop();
            if !report.is_clean() {
                bail!(
                    "the node attempted {} outbound connections ({}) or left state on the host: {:?}",
                    report.outbound,
                    report.outbound_detail.trim(),
                    report.leftovers
                );
            }
            say!(
                "The node is gone: no outbound connection was attempted, and the host is as it was ({}).",
                seconds(report.took)
            );
        }
        drop(stage);
        Ok(())
    }
}
