//! `wpa demo`: the whole product on this machine, with no cluster of yours. It builds (once) and starts a
//! private Kubernetes control plane, starts `wpa serve` (webhook and reconciler) against it, registers the
//! admission webhooks, applies the example Deployment and WPA with `kubectl`, then drives a **synthetic**
//! metric through a burst and a lull and shows the scaling as it happens, ending with `wpa explain`'s
//! decision trace. Everything is torn down at the end.

use std::{
    io::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use kube::Api;

use devcluster::{Options, find_binaries};

use super::{ScalingCluster, WpaServe, webhook_configurations};
use crate::api::WatermarkPodAutoscaler;

const SCRIPT: &str = include_str!("../../scripts/k8s-test-env.sh");
const DEPLOYMENT: &str = include_str!("../../examples/deployment.yaml");
const WPA: &str = include_str!("../../examples/wpa.yaml");

#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    /// Forbidden windows and delays of the example WPA are shortened to this many seconds (1 to 3600; the
    /// API refuses 0), so that a whole burst-and-lull cycle takes about two minutes instead of an hour.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..=3600))]
    pub(crate) window_seconds: i32,
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

/// Runs the demo until it ends or SIGINT/SIGTERM arrives; either way everything it started is torn down
/// (the control plane and its temporary and in-memory directories, the network namespace, `wpa serve`).
pub(crate) async fn run_until_interrupted(args: &DemoArgs, bin_dir: PathBuf) -> Result<()> {
    tokio::select! {
        result = run(args, bin_dir) => result,
        () = crate::runtime::signal::termination() => {
            eprintln!("[demo] interrupted: tearing everything down");
            bail!("interrupted; everything it started was torn down")
        }
    }
}

/// The control-plane binaries: found, or built by the project's script (the first time only).
pub(crate) fn binaries() -> Result<PathBuf> {
    if let Ok(dir) = find_binaries() {
        return Ok(dir);
    }
    eprintln!(
        "[demo] building the Kubernetes v1.20.2 control plane once (about 5 to 10 minutes; cached afterwards)"
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
fn demo_wpa(window: i32) -> Result<String> {
    let mut wpa: serde_json::Value = serde_yaml_ng::from_str(WPA).context("examples/wpa.yaml")?;
    let spec = wpa["spec"].as_object_mut().context("examples/wpa.yaml has no spec")?;
    for field in ["upscaleForbiddenWindowSeconds", "downscaleForbiddenWindowSeconds"] {
        spec.insert(field.into(), window.into());
    }
    spec.insert("downscaleDelayBelowWatermarkSeconds".into(), (2 * window).into());
    spec.insert("readinessDelaySeconds".into(), 1.into());
    serde_yaml_ng::to_string(&wpa).context("rendering the WPA")
}

fn condition(wpa: &WatermarkPodAutoscaler, type_: &str) -> String {
    wpa.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| format!("{}={} {}", type_, c.status, c.reason.as_deref().unwrap_or("")))
        .unwrap_or_default()
}

/// Runs the demo on the control plane in `bin_dir` (from [`binaries`]).
async fn run(args: &DemoArgs, bin_dir: PathBuf) -> Result<()> {
    let exe = std::env::current_exe().context("locating the wpa binary")?;
    eprintln!(
        "[demo] starting a private control plane (etcd, kube-apiserver, controller-manager, scheduler)"
    );
    let c = ScalingCluster::try_start(Options { bin_dir: Some(bin_dir), ..Options::full() }).await?;
    let cluster = &c.cluster;
    let ca_file = cluster.dir().join("webhook-ca.crt");
    let ca_arg = ca_file.to_string_lossy().to_string();
    let serve = WpaServe::start_binary(
        &exe,
        cluster,
        "demo",
        None,
        &["--self-signed", "--ca-bundle-out", &ca_arg, "--sync-period", "2s", "--leader-elect=false"],
    )
    .await?;
    let ca = std::fs::read_to_string(&ca_file).context("reading the webhook CA")?;
    cluster
        .kubectl_apply(&webhook_configurations(serve.webhook_port, Some(&ca))?)
        .map_err(anyhow::Error::msg)?;
    println!(
        "wpa serve is running: admission webhook on 127.0.0.1:{}, reconciler every 2 s",
        serve.webhook_port
    );

    c.kubelet().serve("default");
    let metric = "nginx.net.request_per_s";
    // 3 pods × 95 requests/s: within the watermarks (70..100 per pod).
    c.metrics.set(metric, 285.0);
    print!("{}", cluster.kubectl_apply(DEPLOYMENT).map_err(anyhow::Error::msg)?);
    print!("{}", cluster.kubectl_apply(&demo_wpa(args.window_seconds)?).map_err(anyhow::Error::msg)?);
    let out = cluster.kubectl(&[
        "get",
        "wpa",
        "web",
        "-o",
        "jsonpath={.spec.tolerance} {.spec.scaleUpLimitFactor}",
    ]);
    println!(
        "The mutating webhook stored the WPA with its defaults (tolerance, scaleUpLimitFactor): {}",
        String::from_utf8_lossy(&out.stdout)
    );
    println!(
        "\nThe metric is SYNTHETIC: a test provider registered as external.metrics.k8s.io serves values set by this demo \
         (every series is labelled synthetic=\"true\"). Windows and delays are shortened to {} s / {} s.\n",
        args.window_seconds,
        2 * args.window_seconds
    );

    let wpas: Api<WatermarkPodAutoscaler> = Api::namespaced(cluster.client(), "default");
    let w = args.window_seconds.max(1) as u64;
    // (seconds into the demo, requests/s, what happens)
    let phases: [(u64, f64, &str); 3] = [
        (0, 285.0, "steady traffic, 95 req/s per pod: within the watermarks"),
        (
            10,
            1200.0,
            "a burst: 1200 req/s, 400 per pod: above the high watermark, scale up by at most 50 % per step",
        ),
        (
            10 + 5 * w,
            300.0,
            "the burst is over: 300 req/s: below the low watermark, scale down after the delay",
        ),
    ];
    let end = 10 + 12 * w;
    let begin = Instant::now();
    let mut phase = 0;
    let mut last = String::new();
    while begin.elapsed().as_secs() < end {
        let t = begin.elapsed().as_secs();
        if phase < phases.len() && t >= phases[phase].0 {
            c.metrics.set(metric, phases[phase].1);
            println!("t={t:>3}s  >>> {}", phases[phase].2);
            phase += 1;
        }
        let (spec, status) = c.scale("default", "web").await.unwrap_or((0, 0));
        let line = match wpas.get("web").await {
            Ok(wpa) => format!(
                "replicas {spec} (running {status})  desired {}  {}  {}",
                wpa.status.as_ref().map_or(0, |s| s.desired_replicas),
                condition(&wpa, "AbleToScale"),
                condition(&wpa, "ScalingLimited"),
            ),
            Err(e) => format!("cannot read the WPA: {e}"),
        };
        if line != last {
            println!("t={t:>3}s  {line}");
            last = line;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    println!("\nThe decision trace now (`wpa explain -n default web`):\n");
    let out = Command::new(&exe)
        .args(["explain", "-n", "default", "web", "--kubeconfig"])
        .arg(cluster.kubeconfig_path())
        .output()
        .context("running wpa explain")?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let events =
        cluster.kubectl(&["get", "events", "--field-selector", "involvedObject.kind=WatermarkPodAutoscaler"]);
    println!("\nEvents of the WPA:\n{}", String::from_utf8_lossy(&events.stdout));
    println!("[demo] tearing everything down");
    drop(serve);
    drop(c);
    Ok(())
}
