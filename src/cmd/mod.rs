//! The `wpa` command line: one subcommand per tool, each with its arguments next to its `run`.

pub(crate) mod certs;
pub(crate) mod explain;
pub(crate) mod simulate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::runtime::{
    logging,
    serve::{self, ServeArgs},
};

/// Watermark Pod Autoscaler for Kubernetes: scales a workload between the watermarks of its metrics.
///
/// One binary: the admission webhook and the reconciler (`wpa serve`), the decision trace of a live WPA
/// (`wpa explain`), an offline simulator (`wpa simulate`), the whole product on a local control plane
/// (`wpa demo`), the CRD (`wpa crd`), development certificates (`wpa certs`) and benchmarks (`wpa bench`).
#[derive(Parser, Debug)]
#[command(name = "wpa", version, about, long_about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the admission webhook (HTTPS) and the reconciler, with /healthz, /readyz and /metrics on a
    /// second, plain-HTTP port.
    Serve(Box<ServeArgs>),
    /// The whole product on this machine, with no cluster of yours: a private Kubernetes control plane,
    /// `wpa serve`, the example Deployment and WPA, a synthetic metric through a burst and a lull, and the
    /// scaling shown live, then the decision trace. Builds the control plane the first time (minutes).
    /// Needs root (apt-get the first time; a network namespace for the synthetic metrics provider).
    #[cfg(feature = "dev-tools")]
    Demo(crate::devtools::demo::DemoArgs),
    /// Explain a live WPA's decision at this instant: each metric against its watermarks, the proposal,
    /// the limits, the windows and delays with the time left, the readiness gate, and the final answer.
    ///
    /// Reads the WPA, its target's /scale, its pods and its metrics with your kubeconfig, runs the same
    /// engine as the reconciler, and writes nothing.
    Explain(explain::ExplainArgs),
    /// Print the WatermarkPodAutoscaler CustomResourceDefinition (YAML), as generated from the code.
    Crd,
    /// Write a development CA and a serving certificate signed by it (ca.crt, tls.crt, tls.key).
    Certs(certs::CertsArgs),
    /// Replay a metric series against a WPA offline, to tune its watermarks before deploying.
    ///
    /// The series is CSV with the header `timestamp,metric,value`; timestamps are RFC 3339 or seconds,
    /// and `metric` is the WPA's metricName (External) or resource name (Resource). The engine runs every
    /// --step seconds with the latest value of each metric. Bad input is reported as FILE:LINE: problem,
    /// with exit code 2.
    Simulate(simulate::SimulateArgs),
    /// Benchmarks, each against a baseline measured in the same run: the engine, the admission webhook,
    /// the reconciler at scale.
    #[cfg(feature = "dev-tools")]
    Bench(crate::devtools::bench::BenchArgs),
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Serve(_) => "serve",
            #[cfg(feature = "dev-tools")]
            Command::Demo(_) => "demo",
            Command::Explain(_) => "explain",
            Command::Crd => "crd",
            Command::Certs(_) => "certs",
            Command::Simulate(_) => "simulate",
            #[cfg(feature = "dev-tools")]
            Command::Bench(_) => "bench",
        }
    }
}

/// Parses the arguments and runs the command. Errors are printed once, as `wpa COMMAND: cause: cause...`;
/// bad input to `wpa simulate` exits with 2, every other failure with 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = cli.command.name();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wpa {name}: {e:#}");
            if e.downcast_ref::<simulate::InputError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            logging::init(args.log_format);
            runtime()?
                .block_on(serve::run(*args))
                .inspect_err(|e| tracing::error!(error = %e, "wpa serve failed"))?;
        }
        #[cfg(feature = "dev-tools")]
        Command::Demo(args) => {
            crate::devtools::demo::preflight()?;
            let bin_dir = crate::devtools::demo::binaries()?;
            runtime()?.block_on(crate::devtools::demo::run_until_interrupted(&args, bin_dir))?;
        }
        Command::Explain(args) => stdout(&runtime()?.block_on(explain::run(&args))?)?,
        Command::Crd => stdout(&crate::api::crd_yaml())?,
        Command::Certs(args) => certs::run(&args)?,
        Command::Simulate(args) => simulate::command(&args)?,
        #[cfg(feature = "dev-tools")]
        Command::Bench(args) => crate::devtools::bench::command(args, runtime)?,
    }
    Ok(())
}

/// Writes a command's output. A reader that goes away (`wpa simulate | head`) is not an error.
pub(crate) fn stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}
