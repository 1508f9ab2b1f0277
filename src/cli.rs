//! The `wpa` command line.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};

use crate::{bench, serve, simulate, tls};

/// Watermark Pod Autoscaler for Kubernetes: scales a workload between the watermarks of its metrics.
///
/// One binary: the admission webhook and the reconciler (`wpa serve`), the decision trace of a live WPA
/// (`wpa explain`), an offline simulator (`wpa simulate`), the whole product on a local control plane
/// (`wpa demo`), the CRD (`wpa crd`), development certificates (`wpa certs`) and benchmarks (`wpa bench`).
#[derive(Parser, Debug)]
#[command(name = "wpa", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the admission webhook (HTTPS) and the reconciler, with /healthz, /readyz and /metrics on a
    /// second, plain-HTTP port.
    Serve(Box<serve::ServeArgs>),
    /// The whole product on this machine, with no cluster of yours: a private Kubernetes control plane,
    /// `wpa serve`, the example Deployment and WPA, a synthetic metric through a burst and a lull, and the
    /// scaling shown live, then the decision trace. Builds the control plane the first time (minutes).
    /// Needs root (apt-get the first time; a network namespace for the synthetic metrics provider).
    Demo(crate::demo::DemoArgs),
    /// Explain a live WPA's decision at this instant: each metric against its watermarks, the proposal,
    /// the limits, the windows and delays with the time left, the readiness gate, and the final answer.
    ///
    /// Reads the WPA, its target's /scale, its pods and its metrics with your kubeconfig, runs the same
    /// engine as the reconciler, and writes nothing.
    Explain(crate::explain::ExplainArgs),
    /// Print the WatermarkPodAutoscaler CustomResourceDefinition (YAML), as generated from the code.
    Crd,
    /// Write a development CA and a serving certificate signed by it (ca.crt, tls.crt, tls.key).
    Certs(CertsArgs),
    /// Replay a metric series against a WPA offline, to tune its watermarks before deploying.
    ///
    /// The series is CSV with the header `timestamp,metric,value`; timestamps are RFC 3339 or seconds,
    /// and `metric` is the WPA's metricName (External) or resource name (Resource). The engine runs every
    /// --step seconds with the latest value of each metric. Bad input is reported as FILE:LINE: problem,
    /// with exit code 2.
    Simulate(SimulateArgs),
    /// Benchmarks, each against a baseline measured in the same run: the engine, the admission webhook,
    /// the reconciler at scale.
    Bench(BenchArgs),
}

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// The WatermarkPodAutoscaler YAML, as you would `kubectl apply` it (defaults are applied as the webhook
    /// applies them).
    #[arg(long, env = "WPA_SIMULATE_WPA")]
    pub wpa: PathBuf,
    /// The metric series (CSV: timestamp,metric,value).
    #[arg(long, env = "WPA_SIMULATE_SERIES")]
    pub series: PathBuf,
    /// Initial replica count [default: the WPA's minReplicas].
    #[arg(long, env = "WPA_SIMULATE_REPLICAS")]
    pub replicas: Option<i32>,
    /// Seconds a new pod takes to become ready.
    #[arg(long, default_value_t = 0.0, env = "WPA_SIMULATE_READY_AFTER")]
    pub ready_after: f64,
    /// Seconds between two engine runs (the reconcile period).
    #[arg(long, default_value_t = 15.0, env = "WPA_SIMULATE_STEP")]
    pub step: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table, env = "WPA_SIMULATE_FORMAT")]
    pub format: Format,
    /// Also draw the metrics, both watermarks and the replica count over time into this SVG file.
    #[arg(long, env = "WPA_SIMULATE_PLOT")]
    pub plot: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(clap::Args, Debug)]
pub struct CertsArgs {
    /// Directory to write ca.crt, tls.crt and tls.key into.
    #[arg(long, default_value = "certs")]
    pub out_dir: PathBuf,
    /// DNS names and IPs of the serving certificate (repeatable or comma-separated).
    #[arg(long = "san", value_delimiter = ',', default_values_t = ["127.0.0.1".to_string(), "localhost".to_string(), "wpa.wpa-system.svc".to_string(), "wpa.wpa-system.svc.cluster.local".to_string()])]
    pub sans: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub target: BenchTarget,
}

#[derive(Subcommand, Debug)]
pub enum BenchTarget {
    /// Decisions per second for a WPA with three External metrics and 50 pods, on one core, against a
    /// baseline measured in the same run (deep-copying the same inputs).
    Engine {
        /// Seconds to measure each of the two loops.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// Requests per second and p50/p99 latency of a WPA validate, a WPA mutate and a Deployment mutate over
    /// TLS keep-alive with 32 connections, against a bare axum+rustls handler returning a fixed
    /// AdmissionReview, measured in the same run; and the webhook process's memory.
    Admission {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// The reconciler at scale on a local control plane: N WPAs, each with a Deployment, a ready pod and an
    /// External metric through the aggregator. Reports the time until all are reconciled once (against a
    /// bare client making the same requests as the first passes), API requests per pass in steady state,
    /// CPU and memory.
    /// Needs root (a network namespace for the synthetic metrics provider).
    Reconciler {
        /// Number of WPAs.
        #[arg(long, default_value_t = 1000)]
        wpas: usize,
        /// Seconds of steady state to measure (at least one 15 s period).
        #[arg(long, default_value_t = 45)]
        steady_seconds: u64,
        /// `wpa serve --concurrency`.
        #[arg(long, default_value_t = 16)]
        concurrency: u16,
    },
    /// The server side of `wpa bench admission` (started by it).
    #[command(hide = true)]
    AdmissionServer {
        #[arg(long, value_enum)]
        mode: bench::admission::Mode,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
}

/// Parses the arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            crate::logging::init(args.log_format);
            let runtime = match runtime() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("wpa serve: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve::run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "wpa serve failed");
                    eprintln!("wpa serve: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo(args) => {
            let result = crate::demo::binaries().and_then(|_| {
                runtime().map_err(anyhow::Error::msg).and_then(|rt| rt.block_on(crate::demo::run(&args)))
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("wpa demo: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Explain(args) => {
            match runtime().and_then(|rt| rt.block_on(crate::explain::run(&args)).map_err(|e| e.to_string()))
            {
                Ok(trace) => {
                    print!("{trace}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("wpa explain: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Certs(args) => match write_certs(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wpa certs: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Crd => {
            print!("{}", crate::api::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Simulate(args) => run_simulate(&args),
        Command::Bench(BenchArgs { target: BenchTarget::Engine { seconds } }) => {
            println!("{}", bench::engine(seconds));
            ExitCode::SUCCESS
        }
        Command::Bench(BenchArgs { target: BenchTarget::Admission { seconds } }) => {
            // The load generator runs on one thread, leaving the cores to the servers it measures.
            let rt =
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string());
            match rt.and_then(|rt| rt.block_on(bench::admission::run(seconds))) {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("wpa bench admission: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench(BenchArgs {
            target: BenchTarget::Reconciler { wpas, steady_seconds, concurrency },
        }) => {
            let steady = std::time::Duration::from_secs(steady_seconds.max(15));
            let result = crate::demo::binaries().and_then(|_| {
                runtime()
                    .map_err(anyhow::Error::msg)
                    .and_then(|rt| rt.block_on(bench::reconciler::run(wpas, steady, concurrency)))
            });
            match result {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("wpa bench reconciler: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench(BenchArgs { target: BenchTarget::AdmissionServer { mode, cert, key } }) => {
            match runtime().and_then(|rt| rt.block_on(bench::admission::serve_child(mode, cert, key))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("wpa bench admission-server: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run_simulate(args: &SimulateArgs) -> ExitCode {
    let result = (|| -> Result<(), simulate::InputError> {
        let wpa = simulate::read_wpa(&args.wpa)?;
        let series = simulate::read_series(&args.series, &simulate::metric_names(&wpa))?;
        if args.step.is_nan() || args.step <= 0.0 {
            return Err(simulate::InputError::new(
                &args.series,
                None,
                "--step must be a positive number of seconds",
            ));
        }
        if args.ready_after < 0.0 {
            return Err(simulate::InputError::new(&args.series, None, "--ready-after cannot be negative"));
        }
        let opts =
            simulate::Options { replicas: args.replicas, ready_after: args.ready_after, step: args.step };
        let report = simulate::run(&wpa, &series, &opts);
        match args.format {
            Format::Table => print!("{}", simulate::render_table(&report)),
            Format::Json => println!("{}", simulate::render_json(&report)),
            Format::Csv => print!("{}", simulate::render_csv(&report)),
        }
        if let Some(plot) = &args.plot {
            std::fs::write(plot, simulate::plot::render_svg(&report))
                .map_err(|e| simulate::InputError::new(plot, None, format!("cannot write the plot: {e}")))?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wpa simulate: {e}");
            ExitCode::from(2)
        }
    }
}

fn write_certs(args: &CertsArgs) -> Result<(), tls::TlsError> {
    let generated = tls::generate_self_signed(&args.sans)?;
    for (file, contents) in
        [("ca.crt", &generated.ca_pem), ("tls.crt", &generated.cert_pem), ("tls.key", &generated.key_pem)]
    {
        let path = args.out_dir.join(file);
        tls::write_file(&path, contents)?;
        println!("wrote {}", path.display());
    }
    println!("serving certificate for: {}", args.sans.join(", "));
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}
