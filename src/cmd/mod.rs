//! The `wpa` command line: one subcommand per tool, each with its arguments next to its `run`.
//!
//! Installed (or linked) as `kubectl-wpa`, the binary is a kubectl plugin: `kubectl wpa dry-run ...` and
//! `kubectl wpa explain ...` run `wpa dry-run ...` and `wpa explain ...` (kubectl runs `kubectl-wpa` with
//! the arguments after `wpa`).

pub(crate) mod certs;
pub(crate) mod connection;
pub(crate) mod convert;
pub(crate) mod dryrun;
pub(crate) mod explain;
pub(crate) mod metric_age;
pub(crate) mod namespaced;
pub(crate) mod serve;
pub(crate) mod simulate;
pub(crate) mod status;
pub(crate) mod upstream_flags;

#[cfg(all(test, feature = "dev-tools"))]
mod docs_tests;

use std::{ffi::OsString, path::Path, process::ExitCode};

use clap::{CommandFactory, Parser, Subcommand};

use crate::runtime::logging;
pub(crate) use crate::runtime::output::{stderr, stdout};
use serve::ServeArgs;

/// Watermark Pod Autoscaler for Kubernetes: scales a workload between the watermarks of its metrics.
///
/// One binary. In the cluster, `wpa serve`: the admission webhook, the reconciler and, optionally,
/// kube-scheduler's extender. For people: the whole product on a private local control plane (`wpa demo`,
/// as root), an offline simulator to tune a WPA (`wpa simulate`), a live WPA's decision (`wpa explain`),
/// every WPA at a glance (`wpa status`), the incident switch that stops a WPA scaling (`wpa dry-run`) and
/// the WPA closest to an HPA (`wpa convert`). Also the CRD (`wpa crd`), development certificates (`wpa
/// certs`) and benchmarks (`wpa bench`). New here? Start with `wpa demo` or `wpa simulate --help`.
#[derive(Parser, Debug)]
#[command(name = "wpa", version, long_version = long_version(), about, long_about)]
// A WPA's annotations are no command's flags: the top-level help is where they can be found.
#[command(
    after_help = "Fallback on a metrics outage, opt-in per WPA (annotations; upstream ignores them; docs/fallback.md):
  metadata:
    annotations:
      wpa.datadoghq.com/fallback-replicas: \"8\"   # scale up to at least 8 replicas (never down)
      wpa.datadoghq.com/fallback-after: \"10m\"    # once every metric has failed for 10 minutes"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the admission webhook (HTTPS) and the reconciler, with /healthz, /readyz and /metrics on a
    /// second, plain-HTTP port.
    #[command(after_help = "Examples:
  # cert-manager's Secret, mounted at /tls:
  wpa serve --tls-cert-file /tls/tls.crt --tls-key-file /tls/tls.key
  # no cert-manager: the installation's CA, in a Secret, injected into the webhook configurations:
  wpa serve --self-signed --tls-san wpa.wpa-system.svc --inject-ca
  # the reconciler alone, from a laptop:
  wpa serve --no-webhook --kubeconfig ~/.kube/config
  # with kube-scheduler's extender:
  wpa serve --self-signed --scheduler-extender")]
    Serve(Box<ServeArgs>),
    /// The whole product on this machine, with no cluster of yours: a private Kubernetes control plane,
    /// `wpa serve`, the example Deployment and WPA, a synthetic metric through a burst and a lull, and the
    /// scaling told as it happens until the count is stable, then the decision trace and what to try next.
    /// Builds the control plane the first time (minutes).
    /// Needs root (apt-get the first time; a network namespace for the synthetic metrics provider).
    #[cfg(feature = "dev-tools")]
    Demo(crate::devtools::demo::DemoArgs),
    /// Replay a metric series against a WPA offline, to tune its watermarks before deploying.
    ///
    /// The series is CSV with the header `timestamp,metric,value`; timestamps are RFC 3339, Unix seconds
    /// or milliseconds, or seconds from 0, and `metric` is the WPA's metricName (External) or resource name
    /// (Resource). The engine runs every --step seconds with the latest value of each metric; each step is
    /// told in plain words, then a summary. Bad input is reported as FILE:LINE: problem, with exit code 2.
    ///
    /// An empty value (`120,qps,`) is a metrics outage: that metric fails from that sample until its next
    /// one, as a metrics API that does not answer (with the WPA's fallback annotations, see `wpa --help`, an
    /// outage of every metric for fallback-after scales up to fallback-replicas). A gap between two samples
    /// of an External metric is an outage too once the last one is older than --metric-max-age, as a
    /// provider that stops updating a value is live; within it, the last value holds.
    Simulate(simulate::SimulateArgs),
    /// Explain a live WPA's decision at this instant: each metric against its watermarks, the proposal,
    /// the limits, the windows and delays with the time left, the readiness gate, and the final answer.
    ///
    /// Reads the WPA, its target's /scale, its pods and its metrics with your kubeconfig, runs the same
    /// engine as the reconciler, and writes nothing.
    #[command(after_help = "Examples:
  wpa explain -n shop web
  wpa explain shop/web --kubeconfig ~/.kube/prod
  wpa explain shop/web --context prod
  wpa explain shop/web -o json")]
    Explain(explain::ExplainArgs),
    /// Every WPA of a namespace (-n) or of the cluster (-A) at a glance: one line each, with its state
    /// (in-band, above/below with the delay left, window, limited, at-max/at-min, scaling, failing,
    /// fallback, blocked, invalid, off; flags dry-run and conflict), its value against the watermarks,
    /// the replicas and when the next scale could happen.
    ///
    /// The same engine and readings as `wpa explain`, for every WPA, listing the WPAs, HPAs, Deployments,
    /// StatefulSets and pods once. Writes nothing. `--fail-on blocked,failing` exits with 1 for CI and cron.
    // The examples go in after_help: clap joins a doc comment's lines into one paragraph.
    #[command(after_help = "Examples:
  wpa status -n shop
  wpa status -A -o wide
  wpa status -A -l team=web -o json
  wpa status -A --fail-on blocked,failing,fallback")]
    Status(status::StatusArgs),
    /// Enable, disable, list or restore the dry-run mode of WPAs, as upstream's `kubectl wpa dry-run`.
    ///
    /// Select one WPA by NAME, or several with --all or -l SELECTOR, in the namespace of -n (or of the
    /// kubeconfig context), or in every namespace with -A. Each change is a JSON merge patch of
    /// spec.dryRun alone, which the webhook never refuses.
    #[command(after_help = "Examples:
  wpa dry-run enable web -n shop
  wpa dry-run list --all -A -o csv > saved.csv
  wpa dry-run enable --all -A
  wpa dry-run revert -f saved.csv")]
    DryRun(dryrun::DryRunArgs),
    /// Write the WPA that behaves closest to a live HorizontalPodAutoscaler, in dry run beside it.
    ///
    /// Reads the HPA (autoscaling/v2, v2beta2 or v1) and its target with your kubeconfig: its targets and
    /// the HPA controller's tolerance become watermarks, its behavior limit factors, forbidden windows and
    /// delays. Each approximation is named; what a WPA cannot say is refused with the reason (exit code 2).
    Convert(convert::ConvertArgs),
    /// Print the WatermarkPodAutoscaler CustomResourceDefinition (YAML), as generated from the code.
    Crd,
    /// Write a development CA and a serving certificate signed by it (ca.crt, tls.crt, tls.key).
    #[command(after_help = "Examples:
  wpa certs --out-dir certs
  wpa certs --out-dir certs --san wpa.shop.svc --san 10.0.0.7
  wpa serve --tls-cert-file certs/tls.crt --tls-key-file certs/tls.key")]
    Certs(certs::CertsArgs),
    /// Print the version and the Kubernetes API versions this build serves (the same as --version).
    Version,
    /// Print a shell completion script for wpa, to be loaded by the shell's completion system.
    #[command(after_help = "Examples:
  wpa completion bash > ~/.local/share/bash-completion/completions/wpa
  wpa completion zsh > \"${fpath[1]}/_wpa\"
  wpa completion fish > ~/.config/fish/completions/wpa.fish")]
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
            Command::Status(_) => "status",
            Command::DryRun(_) => "dry-run",
            Command::Convert(_) => "convert",
            Command::Crd => "crd",
            Command::Certs(_) => "certs",
            Command::Simulate(_) => "simulate",
            Command::Version => "version",
            Command::Completion { .. } => "completion",
            #[cfg(feature = "dev-tools")]
            Command::Bench(_) => "bench",
        }
    }
}

/// The kubectl plugin's command line (`kubectl wpa ...`): the commands that work on a user's cluster with
/// the user's kubeconfig, as upstream's plugin offers `dry-run`.
#[derive(Parser, Debug)]
#[command(name = "kubectl-wpa", bin_name = "kubectl wpa", version, long_version = long_version())]
#[command(
    about = "kubectl plugin of the Watermark Pod Autoscaler (the wpa binary installed as kubectl-wpa)."
)]
pub(crate) struct PluginCli {
    #[command(subcommand)]
    pub(crate) command: PluginCommand,
}

#[derive(Subcommand, Debug)]
pub(crate) enum PluginCommand {
    /// Enable, disable, list or restore the dry-run mode of WPAs.
    DryRun(dryrun::DryRunArgs),
    /// Explain a live WPA's decision at this instant (the same as `wpa explain`).
    Explain(explain::ExplainArgs),
    /// Every WPA at a glance, one line each (the same as `wpa status`).
    Status(status::StatusArgs),
    /// Write the WPA closest to a live HorizontalPodAutoscaler (the same as `wpa convert`).
    Convert(convert::ConvertArgs),
    /// Print the version and the Kubernetes API versions this build serves.
    Version,
}

/// How the binary was started: as `wpa`, or as kubectl's plugin `kubectl-wpa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Invocation {
    Wpa,
    KubectlPlugin,
}

impl Invocation {
    /// From `argv[0]`: a file named `kubectl-wpa` (kubectl finds plugins by that name on PATH) is the plugin.
    pub(crate) fn of(argv0: Option<&std::ffi::OsStr>) -> Self {
        let stem = argv0.map(Path::new).and_then(Path::file_stem);
        if stem.is_some_and(|s| s == "kubectl-wpa") { Invocation::KubectlPlugin } else { Invocation::Wpa }
    }

    /// How errors name the program.
    fn program(self) -> &'static str {
        match self {
            Invocation::Wpa => "wpa",
            Invocation::KubectlPlugin => "kubectl wpa",
        }
    }
}

/// The command `argv` asks for, and how the binary was started.
pub(crate) fn parse(argv: Vec<OsString>) -> Result<(Command, Invocation), clap::Error> {
    let invocation = Invocation::of(argv.first().map(OsString::as_os_str));
    let command = match invocation {
        Invocation::Wpa => Cli::try_parse_from(argv)?.command,
        Invocation::KubectlPlugin => match PluginCli::try_parse_from(argv)?.command {
            PluginCommand::DryRun(args) => Command::DryRun(args),
            PluginCommand::Explain(args) => Command::Explain(args),
            PluginCommand::Status(args) => Command::Status(args),
            PluginCommand::Convert(args) => Command::Convert(args),
            PluginCommand::Version => Command::Version,
        },
    };
    Ok((command, invocation))
}

/// Parses the arguments and runs the command. Errors are printed once, as `wpa COMMAND: cause: cause...`
/// (`kubectl wpa COMMAND: ...` as the plugin; `wpa serve`'s as a log line), each cause once; bad input to
/// `wpa simulate` and an HPA that `wpa convert` cannot convert exit with 2, every other failure with 1.
pub fn main() -> ExitCode {
    let argv = upstream_flags::apply(std::env::args_os().collect());
    let (command, invocation) = parse(argv).unwrap_or_else(|e| e.exit());
    let name = command.name();
    // `wpa serve` writes its log (JSON by default): its fatal error is one more log line, not a line of
    // text beside it.
    let logs = matches!(command, Command::Serve(_));
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = crate::runtime::client::error_chain(e.as_ref());
            if logs {
                tracing::error!(error = %message, "wpa serve failed");
            } else {
                stderr(&format!("{} {name}: {message}\n", invocation.program()));
            }
            if e.downcast_ref::<simulate::InputError>().is_some()
                || e.downcast_ref::<convert::ConvertError>().is_some_and(convert::ConvertError::is_refusal)
            {
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
            logging::init(args.log_format, args.log_level.as_deref());
            runtime()?.block_on(serve::run(*args))?;
        }
        #[cfg(feature = "dev-tools")]
        Command::Demo(args) => {
            crate::devtools::demo::preflight()?;
            if args.node {
                crate::devtools::node::node_preflight()?;
            }
            let bin_dir = crate::devtools::demo::binaries()?;
            runtime()?.block_on(crate::devtools::demo::run_until_interrupted(&args, bin_dir))?;
        }
        Command::Explain(args) => stdout(&runtime()?.block_on(explain::run(&args))?)?,
        Command::Status(args) => {
            let report = runtime()?.block_on(status::run(&args))?;
            stdout(&report.render(args.output, args.all_namespaces))?;
            let lines = report.matching(&args.fail_on);
            if !lines.is_empty() {
                return Err(status::StatusError::FailOn { lines }.into());
            }
        }
        Command::DryRun(args) => runtime()?.block_on(dryrun::run(&args))?,
        Command::Convert(args) => convert::write(&runtime()?.block_on(convert::run(&args))?)?,
        Command::Crd => stdout(&crate::api::crd_yaml())?,
        Command::Certs(args) => certs::run(&args)?,
        Command::Simulate(args) => simulate::command(&args)?,
        Command::Version => stdout(&format!("wpa {}\n", long_version()))?,
        Command::Completion { shell } => stdout(&completion(shell))?,
        #[cfg(feature = "dev-tools")]
        Command::Bench(args) => crate::devtools::bench::command(args, runtime)?,
    }
    Ok(())
}

/// What `--version` prints after the program's name: the crate's version and the API versions served, so
/// that an operator can tell which Kubernetes releases a build can be registered with.
fn long_version() -> &'static str {
    static TEXT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "{}\nserves: admission.k8s.io/v1 and v1beta1 (AdmissionReview), {}/{} (WatermarkPodAutoscaler)",
            env!("CARGO_PKG_VERSION"),
            crate::api::GROUP,
            crate::api::VERSION,
        )
    });
    &TEXT
}

/// The completion script of `wpa` for `shell`.
fn completion(shell: clap_complete::Shell) -> String {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "wpa", &mut script);
    String::from_utf8_lossy(&script).into_owned()
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dryrun::{Action, Output};

    fn parse_args(args: &[&str]) -> Result<(Command, Invocation), clap::Error> {
        parse(args.iter().map(OsString::from).collect())
    }

    fn dry_run(args: &[&str]) -> (Action, Invocation) {
        match parse_args(args) {
            Ok((Command::DryRun(d), invocation)) => (d.action, invocation),
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn dry_run_as_wpa_and_as_the_kubectl_plugin_parse_the_same() {
        for argv0 in
            ["wpa", "/usr/local/bin/kubectl-wpa", "kubectl-wpa", "./target/debug/wpa", "kubectl-wpa.exe"]
        {
            let (action, invocation) = dry_run(&[argv0, "dry-run", "enable", "web", "-n", "team"]);
            let Action::Enable(sel) = action else { panic!("{argv0}: not enable") };
            assert_eq!(sel.name.as_deref(), Some("web"));
            assert_eq!(sel.connection.namespace.as_deref(), Some("team"));
            assert!(!sel.all && !sel.all_namespaces && sel.label_selector.is_none());
            let plugin = argv0.contains("kubectl-wpa");
            assert_eq!(
                invocation,
                if plugin { Invocation::KubectlPlugin } else { Invocation::Wpa },
                "{argv0}"
            );
        }
        let (action, _) =
            dry_run(&["kubectl-wpa", "dry-run", "disable", "--all", "-A", "--kubeconfig", "/k"]);
        let Action::Disable(sel) = action else { panic!("not disable") };
        assert!(sel.all && sel.all_namespaces && sel.name.is_none());
        assert_eq!(sel.connection.kubeconfig.as_deref(), Some(Path::new("/k")));
        let (action, _) =
            dry_run(&["wpa", "dry-run", "list", "-l", "team=web", "--all-namespaces", "-o", "csv"]);
        let Action::List(list) = action else { panic!("not list") };
        assert_eq!(list.selection.label_selector.as_deref(), Some("team=web"));
        assert!(list.selection.all_namespaces);
        assert_eq!(list.output, Some(Output::Csv));
        let (action, _) = dry_run(&["kubectl-wpa", "dry-run", "revert", "-f", "saved.csv", "-n", "x"]);
        let Action::Revert(revert) = action else { panic!("not revert") };
        assert_eq!(revert.csv_file, Path::new("saved.csv"));
    }

    #[test]
    fn dry_run_refuses_an_unclear_selection() {
        for args in [
            &["wpa", "dry-run", "enable"][..],
            &["wpa", "dry-run", "enable", "web", "--all"],
            &["wpa", "dry-run", "disable", "web", "-l", "a=b"],
            &["wpa", "dry-run", "list", "web", "-A"],
            &["kubectl-wpa", "dry-run", "list", "-A"],
            &["wpa", "dry-run", "list", "--all", "-o", "yaml"],
            &["wpa", "dry-run", "revert"],
            &["wpa", "dry-run"],
        ] {
            let e = parse_args(args).expect_err(&format!("{args:?} must be refused"));
            assert_ne!(e.exit_code(), 0, "{args:?}");
        }
    }

    #[test]
    fn convert_parses_as_wpa_and_as_the_kubectl_plugin() {
        for argv0 in ["wpa", "kubectl-wpa"] {
            let parsed = parse_args(&[argv0, "convert", "--from-hpa", "shop/web", "--apply"]);
            assert!(
                matches!(&parsed, Ok((Command::Convert(a), _)) if a.from_hpa == "shop/web" && a.apply),
                "{parsed:?}"
            );
        }
    }

    #[test]
    fn every_command_that_reads_a_cluster_takes_kubectls_context_flags() {
        let connection = |args: &[&str]| match parse_args(args) {
            Ok((Command::Explain(a), _)) => a.connection,
            Ok((Command::Status(a), _)) => a.connection,
            Ok((Command::Convert(a), _)) => a.connection,
            Ok((Command::DryRun(a), _)) => match a.action {
                Action::Enable(s) | Action::Disable(s) => s.connection,
                Action::List(l) => l.selection.connection,
                Action::Revert(r) => r.connection,
            },
            other => panic!("{args:?} parsed as {other:?}"),
        };
        for args in [
            &["wpa", "explain", "web"][..],
            &["kubectl-wpa", "status"],
            &["wpa", "convert", "--from-hpa", "web"],
            &["wpa", "dry-run", "enable", "web"],
            &["wpa", "dry-run", "list", "--all"],
            &["wpa", "dry-run", "revert", "-f", "saved.csv"],
        ] {
            let flags = ["--context", "prod", "--kubeconfig", "/k", "-n", "shop"];
            let c = connection(&[args, &flags[..]].concat());
            assert_eq!(c.context.as_deref(), Some("prod"), "{args:?}");
            assert_eq!(c.kubeconfig.as_deref(), Some(Path::new("/k")), "{args:?}");
            assert_eq!(c.namespace.as_deref(), Some("shop"), "{args:?}");
        }
    }

    #[test]
    fn the_plugin_offers_only_the_kubectl_commands() {
        assert!(matches!(
            parse_args(&["kubectl-wpa", "explain", "web", "-n", "x"]),
            Ok((Command::Explain(_), _))
        ));
        for command in ["serve", "crd", "simulate", "certs", "completion"] {
            let e = parse_args(&["kubectl-wpa", command]).expect_err(command);
            assert_eq!(e.kind(), clap::error::ErrorKind::InvalidSubcommand, "{command}");
        }
        // The same binary under its own name still has every command.
        assert!(matches!(parse_args(&["wpa", "crd"]), Ok((Command::Crd, Invocation::Wpa))));
        let help = PluginCli::try_parse_from(["kubectl-wpa", "dry-run", "enable", "--help"]).unwrap_err();
        assert!(help.to_string().contains("Usage: kubectl wpa dry-run enable"), "{help}");
    }
}
