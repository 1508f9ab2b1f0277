//! `wpa bench`: throughput measured against a baseline taken in the same run, so the figures stay
//! comparable on noisy machines.

pub(crate) mod admission;
pub(crate) mod extender;
pub(crate) mod fuzz;
pub(crate) mod reconciler;

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use std::path::PathBuf;

use clap::Subcommand;
use jiff::Timestamp;

use crate::{
    api::quantity::Quantity,
    api::{ExternalMetricSource, MetricSpec, WatermarkPodAutoscaler, WatermarkPodAutoscalerSpec},
    engine::{
        self, MetricObservation, MonitorObservation, Observation,
        calc::{ExternalSample, ScaleInfo},
        pods::{ConditionStatus, OwnerKind, OwnerRef, PodInfo, PodPhase, ReadyCondition},
    },
    runtime::output::stdout,
};

/// The benchmark's WPA: three External metrics, defaulted, and its 50 pods.
pub(crate) fn engine_fixture(
    now: Timestamp,
) -> (WatermarkPodAutoscaler, Vec<PodInfo>, Vec<MetricObservation>, ScaleInfo) {
    let metric = |name: &str, high: &str, low: &str| MetricSpec {
        type_: "External".into(),
        external: Some(ExternalMetricSource {
            metric_name: name.into(),
            metric_selector: Some(
                serde_json::from_value(serde_json::json!({"matchLabels": {"app": "web"}}))
                    .unwrap_or_default(),
            ),
            high_watermark: Quantity::parse(high).ok(),
            low_watermark: Quantity::parse(low).ok(),
        }),
        resource: None,
    };
    let spec = WatermarkPodAutoscalerSpec {
        scale_target_ref: crate::api::CrossVersionObjectReference {
            kind: "Deployment".into(),
            name: "web".into(),
            api_version: Some("apps/v1".into()),
        },
        min_replicas: Some(10),
        max_replicas: Some(200),
        algorithm: Some("average".into()),
        downscale_delay_below_watermark_seconds: Some(300),
        metrics: Some(vec![
            metric("requests_per_second", "100", "60"),
            metric("queue_depth", "20", "5"),
            metric("p99_latency_ms", "250", "100"),
        ]),
        ..Default::default()
    };
    let mut wpa = WatermarkPodAutoscaler::new("web", engine::validation::with_defaults(&spec));
    wpa.metadata.namespace = Some("default".into());
    let pods: Vec<PodInfo> = (0..50)
        .map(|i| PodInfo {
            name: format!("web-7d9f-{i}"),
            phase: PodPhase::Running,
            ready: Some(ReadyCondition {
                status: ConditionStatus::True,
                last_transition: Some(now - Duration::from_secs(600)),
            }),
            start_time: Some(now - Duration::from_secs(700)),
            deleting: false,
            owners: vec![OwnerRef { kind: OwnerKind::ReplicaSet, name: "web-7d9f".into() }],
        })
        .collect();
    let sample = |milli: i64| {
        MetricObservation::External(Ok(ExternalSample { values: vec![milli], timestamp: Some(now) }))
    };
    let metrics = vec![sample(6_000_000), sample(400_000), sample(9_000_000)];
    let scale = ScaleInfo {
        name: "web".into(),
        namespace: "default".into(),
        spec_replicas: 50,
        status_replicas: 50,
        selector: "app=web".into(),
    };
    (wpa, pods, metrics, scale)
}

fn rate(seconds: f64, mut f: impl FnMut()) -> f64 {
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < budget {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// splitmix64: the benchmarks' reproducible randomness (from a seed), without a dependency.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The engine benchmark's baseline: one deep copy of a decision's inputs.
fn copy_once(wpa: &WatermarkPodAutoscaler, pods: &[PodInfo], metrics: &[MetricObservation]) {
    black_box((black_box(wpa).clone(), black_box(pods).to_vec(), black_box(metrics).to_vec()));
}

/// One decision of the benchmark's WPA, kept from being optimized away.
fn decide_once(
    wpa: &WatermarkPodAutoscaler,
    pods: &[PodInfo],
    metrics: &[MetricObservation],
    scale: &ScaleInfo,
    now: Timestamp,
) {
    let obs = Observation {
        target: Ok(scale.clone()),
        pods: Ok(pods),
        metrics,
        recommendation: None,
        monitor: MonitorObservation::NotRequested,
        conflicts: &[],
    };
    // A pass plans, then decides.
    let plan = engine::Plan::new(black_box(wpa));
    black_box(engine::decide(&plan, &obs, now));
}

/// Exactly `n` decisions (or copies of their inputs), so that an instruction counter can divide.
pub(crate) fn engine_count(n: u64, baseline: bool) -> String {
    let now = Timestamp::now();
    let (wpa, pods, metrics, scale) = engine_fixture(now);
    for _ in 0..n {
        if baseline {
            copy_once(&wpa, &pods, &metrics);
        } else {
            decide_once(&wpa, &pods, &metrics, &scale, now);
        }
    }
    format!("engine: {n} {}", if baseline { "copies of the inputs" } else { "decisions" })
}

/// Runs the engine benchmark and returns a report.
pub(crate) fn engine(seconds: f64) -> String {
    let now = Timestamp::now();
    let (wpa, pods, metrics, scale) = engine_fixture(now);
    let decide = || decide_once(&wpa, &pods, &metrics, &scale, now);
    // Warm up, then measure the decision and the baseline (copying the same inputs) alternately.
    let _ = rate(0.2, decide);
    let copy = || copy_once(&wpa, &pods, &metrics);
    let decisions = rate(seconds, decide);
    let copies = rate(seconds, copy);
    format!(
        "engine: {decisions:.0} decisions/s on one core ({:.2} µs each) for 3 External metrics and 50 pods\n\
         baseline: {copies:.0} copies/s of the same inputs; one decision costs {:.2}× a copy of its inputs",
        1e6 / decisions,
        copies / decisions
    )
}

#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    pub(crate) target: BenchTarget,
}

#[derive(Subcommand, Debug)]
pub(crate) enum BenchTarget {
    /// Decisions per second for a WPA with three External metrics and 50 pods, on one core, against a
    /// baseline measured in the same run (deep-copying the same inputs).
    Engine {
        /// Seconds to measure each of the two loops.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Run exactly this many decisions (or copies, with --baseline) and print nothing timed: for an
        /// instruction count under callgrind (scripts/engine-instructions.sh), stable on a noisy machine.
        #[arg(long)]
        count: Option<u64>,
        /// With --count: copy the inputs instead of deciding (the baseline).
        #[arg(long, requires = "count")]
        baseline: bool,
    },
    /// Requests per second (wrk, 2 threads × 32 keep-alive connections, a separate process) and p50/p99
    /// latency at 2,000 requests/s of a WPA validate, a WPA mutate and a Deployment mutate over TLS, against
    /// a bare axum + rustls server outside wpa's stack (examples/bare-webhook.rs, built with `cargo build
    /// --release --example bare-webhook`), against a fixed answer through wpa's stack, and beside the same
    /// reviews read by kube-rs's documented webhook (the example's --kube: decode and allow), in interleaved
    /// rounds (each row against the bare server of its round); and the webhook process's memory. Needs
    /// Debian's `wrk`.
    Admission {
        /// Seconds of each wrk run (one per row and round).
        #[arg(long, default_value_t = 2)]
        seconds: u64,
        /// Interleaved throughput rounds (forward, then backward).
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Latency rounds of 1 s per row, at 2,000 requests/s.
        #[arg(long, default_value_t = 5)]
        latency_rounds: usize,
        /// Instead: exactly this many requests of one kind through the router in process (no TLS, no
        /// network), for an instruction counter (`scripts/admission-instructions.sh`).
        #[arg(long)]
        count: Option<u64>,
        /// With --count: 0 WPA validate, 1 WPA mutate, 2 Deployment mutate.
        #[arg(long, default_value_t = 0, requires = "count")]
        case: usize,
        /// With --count: the bare handler (the baseline).
        #[arg(long, requires = "count")]
        bare: bool,
    },
    /// The reconciler at scale on a local control plane: N WPAs, each with a Deployment, a ready pod and an
    /// External metric through the aggregator. Reports the time until all are reconciled once from wpa's
    /// start, against a bare client making the same requests (wpa's lists and watches, then the first
    /// passes' requests), in alternating rounds; then API requests per pass in steady state, CPU and memory.
    /// Needs root (a network namespace for the synthetic metrics provider).
    Reconciler {
        /// Number of WPAs.
        #[arg(long, default_value_t = 1000)]
        wpas: usize,
        /// Ready pods of each WPA's Deployment (memory per pod is the difference between two runs).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
        pods_per_wpa: u16,
        /// The program started as `wpa serve` [default: this binary]: a wrapper that execs wpa (so that its
        /// pid stays the one measured), e.g. under a heap profiler.
        #[arg(long, env = "WPA_BENCH_SERVE")]
        serve_binary: Option<std::path::PathBuf>,
        /// Seconds of steady state to measure (at least one 15 s period).
        #[arg(long, default_value_t = 45)]
        steady_seconds: u64,
        /// `wpa serve --concurrency`.
        #[arg(long, default_value_t = 16)]
        concurrency: u16,
        /// Rounds, each a first round of wpa and one of the baseline (in alternating order); the ratio
        /// reported is the median of the rounds' ratios.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// A million (by default) mutated AdmissionReviews through the webhook in process: every answer must be
    /// 200 (an AdmissionReview echoing the uid), 400 or 413, and nothing may panic. Reports the counts and
    /// the rate.
    Fuzz {
        /// Number of reviews.
        #[arg(long, default_value_t = 1_000_000)]
        reviews: usize,
        /// Seed of the mutations (a run is reproducible from it).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The scheduler extender's prioritize and filter over a large cluster in its caches (5,000 nodes,
    /// 2,000 pods by default), through its HTTP handler in process; latency percentiles against a pod that
    /// no WPA governs (the same wire work without the policy).
    Extender {
        /// Nodes in the cache, every one a candidate of every request.
        #[arg(long, default_value_t = 5_000)]
        nodes: usize,
        /// Pods in the cache, 20 per WPA target.
        #[arg(long, default_value_t = 2_000)]
        pods: usize,
        /// Requests per verb and per kind of pod.
        #[arg(long, default_value_t = 2_000)]
        requests: usize,
    },
    /// The server side of `wpa bench admission` (started by it).
    #[command(hide = true)]
    AdmissionServer {
        #[arg(long, value_enum)]
        mode: admission::Mode,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
}

/// `wpa bench`: runs one benchmark and prints its report.
pub(crate) fn command(
    args: BenchArgs,
    runtime: impl Fn() -> std::io::Result<tokio::runtime::Runtime>,
) -> anyhow::Result<()> {
    match args.target {
        BenchTarget::Engine { count: Some(n), baseline, .. } => {
            stdout(&format!("{}\n", engine_count(n, baseline)))?
        }
        BenchTarget::Engine { seconds, count: None, .. } => stdout(&format!("{}\n", engine(seconds)))?,
        BenchTarget::Admission { count: Some(n), case, bare, .. } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let report = rt.block_on(admission::count(n, case, bare)).map_err(anyhow::Error::msg)?;
            stdout(&format!("{report}\n"))?;
        }
        BenchTarget::Admission { seconds, rounds, latency_rounds, count: None, .. } => {
            // wrk loads the servers; this process only starts them and sends the latency rounds, on one thread.
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let plan = admission::Plan { seconds: seconds.max(1), rounds: rounds.max(1), latency_rounds };
            stdout(&rt.block_on(admission::run(plan)).map_err(anyhow::Error::msg)?)?;
        }
        BenchTarget::Reconciler { wpas, pods_per_wpa, serve_binary, steady_seconds, concurrency, rounds } => {
            let steady = Duration::from_secs(steady_seconds.max(15));
            super::demo::preflight()?;
            let bin_dir = super::demo::binaries()?;
            let setup = reconciler::Setup {
                wpas,
                pods_per_wpa: usize::from(pods_per_wpa),
                concurrency,
                serve_binary,
            };
            stdout(&runtime()?.block_on(reconciler::run(setup, rounds, steady, bin_dir))?)?;
        }
        BenchTarget::Extender { nodes, pods, requests } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            stdout(&rt.block_on(extender::run(nodes, pods, requests)).map_err(anyhow::Error::msg)?)?;
        }
        BenchTarget::Fuzz { reviews, seed } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            stdout(&rt.block_on(fuzz::run(reviews, seed)).map_err(anyhow::Error::msg)?)?;
        }
        BenchTarget::AdmissionServer { mode, cert, key } => {
            runtime()?.block_on(admission::serve_child(mode, cert, key)).map_err(anyhow::Error::msg)?
        }
    }
    Ok(())
}
