//! Upstream's controller flags (the `manager` of DataDog/watermarkpodautoscaler, its `main.go`) on `wpa
//! serve`, so that a Deployment of upstream whose image was swapped for wpa's starts instead of failing on
//! `--loglevel=info`.
//!
//! Each flag is translated into the `wpa serve` flag that does the same, or ignored where wpa has nothing to
//! set, with one warning line on stderr naming what wpa reads instead; a flag whose meaning wpa cannot honour
//! is refused with a message naming what to set. This runs on the arguments before clap parses them: the
//! flags are never shown by `wpa serve --help`.
//!
//! Upstream's chart passes its arguments without a command (`args: [--loglevel=info]` on an image whose
//! entrypoint is the controller), so with wpa's image (`ENTRYPOINT ["/wpa"]`) they arrive as `wpa
//! --loglevel=info`: arguments that start with an upstream flag are run as `wpa serve`.

use std::ffi::OsString;

use crate::{engine::validation::parse_go_bool, runtime::output::note};

/// How upstream's Go `flag` package takes the flag's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Takes {
    /// `--flag`, `--flag=true|false|1|0|t|f...`; never `--flag value`.
    Bool,
    /// `--flag=value` or `--flag value`.
    Value,
}

/// Upstream's flags (main.go, plus `--leader-election-resource` of its earlier releases and the
/// `--zap-level` its chart passed before v0.5).
const FLAGS: [(&str, Takes); 21] = [
    ("version", Takes::Bool),
    ("loglevel", Takes::Value),
    ("zap-level", Takes::Value),
    ("logEncoder", Takes::Value),
    ("log-timestamp-format", Takes::Value),
    ("enable-leader-election", Takes::Bool),
    ("leader-election-resource", Takes::Value),
    ("workers", Takes::Value),
    ("syncPeriodSeconds", Takes::Value),
    ("metrics-addr", Takes::Value),
    ("health-port", Takes::Value),
    ("client-qps", Takes::Value),
    ("client-timeout", Takes::Value),
    ("skipNotScalingEvents", Takes::Bool),
    ("ddProfilingEnabled", Takes::Bool),
    ("ddTracingEnabled", Takes::Bool),
    ("tls-ca-file", Takes::Value),
    ("tls-server-name", Takes::Value),
    ("tls-insecure-skip-verify", Takes::Bool),
    // wpa serve's own flags of the same names set the webhook's serving certificate; upstream's set the
    // default client certificate of recommender calls. Only read as upstream's without a command.
    ("tls-cert-file", Takes::Value),
    ("tls-key-file", Takes::Value),
];

/// What the flags after the command became.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Translation {
    pub(crate) args: Vec<OsString>,
    /// One line per upstream flag met.
    pub(crate) warnings: Vec<String>,
}

/// The command line, with upstream's flags of `wpa serve` translated; or why it cannot run.
///
/// Upstream's `-version` (true) prints the version and exits, as upstream's controller does (the command
/// becomes `wpa version`), unless another upstream flag given with it is refused or conflicts: that refusal
/// comes first.
pub(crate) fn translate(argv: Vec<OsString>) -> Result<Translation, String> {
    let unchanged = |argv| Ok(Translation { args: argv, warnings: Vec::new() });
    let first = argv.get(1).and_then(|a| a.to_str());
    let (head, rest, implicit) = match first {
        Some("serve") => (2, &argv[2..], false),
        // wpa's own top-level flag, which prints the same.
        Some("--version") => return unchanged(argv),
        Some(a) if upstream_name(a).is_some() => (1, &argv[1..], true),
        _ => return unchanged(argv),
    };
    let mut args: Vec<OsString> = argv[..head].to_vec();
    let mut warnings = Vec::new();
    if implicit {
        args.push("serve".into());
    }
    let mut print_version = false;
    let own_only = |name: &str| !implicit && matches!(name, "tls-cert-file" | "tls-key-file");
    // wpa flags set by an upstream flag, with the flag that set them.
    let mut set: Vec<(&'static str, String)> = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        let raw = &rest[i];
        i += 1;
        let Some(text) = raw.to_str() else {
            args.push(raw.clone());
            continue;
        };
        if text == "--" {
            args.extend(rest[i - 1..].iter().cloned());
            break;
        }
        let Some((name, takes)) = upstream_name(text).filter(|(n, _)| !own_only(n)) else {
            args.push(raw.clone());
            continue;
        };
        let inline = text.split_once('=').map(|(_, v)| v.to_string());
        let value = match (inline, takes) {
            (Some(v), _) => v,
            (None, Takes::Bool) => "true".to_string(),
            (None, Takes::Value) => match rest.get(i).and_then(|v| v.to_str()) {
                Some(v) => {
                    i += 1;
                    v.to_string()
                }
                None => return Err(format!("upstream's flag --{name} needs a value")),
            },
        };
        let given = format!("--{name}={value}");
        let meaning = meaning(name, &value).map_err(|why| format!("upstream's flag {given}: {why}"))?;
        match &meaning.effect {
            Effect::Sets(flag, arg) => {
                if let Some((_, by)) = set.iter().find(|(f, _)| f == flag) {
                    return Err(format!(
                        "upstream's flags {by} and {given} both set wpa's --{flag}: keep one"
                    ));
                }
                set.push((flag, given.clone()));
                args.push(arg.into());
            }
            Effect::Nothing => {}
            Effect::PrintsVersion => print_version = true,
        }
        warnings.push(format!("wpa serve: upstream's flag {given} {}", meaning.note));
    }
    if print_version {
        // Nothing else runs, so nothing else can conflict.
        return Ok(Translation { args: vec![argv[0].clone(), "version".into()], warnings });
    }
    if implicit {
        warnings.insert(
            0,
            "wpa: upstream's controller flags without a command: running `wpa serve` (put `serve` first in the container's args)"
                .to_string(),
        );
    }
    // A wpa flag given both ways: which one wins would be clap's choice, so neither is taken.
    for (flag, by) in &set {
        let own = format!("--{flag}");
        let with_value = format!("{own}=");
        let given =
            args.iter().filter_map(|a| a.to_str()).filter(|a| *a == own || a.starts_with(&with_value));
        if given.count() > 1 {
            return Err(format!("upstream's flag {by} and wpa's {own} are both given: keep {own}"));
        }
    }
    Ok(Translation { args, warnings })
}

/// Translates the process's arguments: prints the warnings, or the refusal (exit code 2, as clap's
/// usage errors).
pub(crate) fn apply(argv: Vec<OsString>) -> Vec<OsString> {
    match translate(argv) {
        Ok(t) => {
            for w in &t.warnings {
                note!("{w}");
            }
            t.args
        }
        Err(message) => {
            clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, format!("wpa serve: {message}\n"))
                .exit()
        }
    }
}

/// The upstream flag `arg` names (`--name`, `-name`, either with `=value`), if any.
fn upstream_name(arg: &str) -> Option<(&'static str, Takes)> {
    let bare = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    let name = bare.split_once('=').map_or(bare, |(n, _)| n);
    FLAGS.iter().find(|(n, _)| *n == name).copied()
}

/// What an upstream flag does in wpa, and the rest of its warning line.
struct Meaning {
    effect: Effect,
    note: String,
}

enum Effect {
    /// Sets a `wpa serve` flag: its name, and `--name=value`.
    Sets(&'static str, String),
    Nothing,
    /// Runs `wpa version` instead of `wpa serve`.
    PrintsVersion,
}

fn reads_as(flag: &'static str, value: impl std::fmt::Display, why: &str) -> Meaning {
    Meaning {
        effect: Effect::Sets(flag, format!("--{flag}={value}")),
        note: format!("is read as --{flag}={value}{why}"),
    }
}

fn ignored(why: &str) -> Meaning {
    Meaning { effect: Effect::Nothing, note: format!("is ignored: {why}") }
}

fn meaning(name: &str, value: &str) -> Result<Meaning, String> {
    let number = |what: &str| -> Result<u64, String> {
        value.parse::<u64>().map_err(|_| format!("{what} must be a whole number, got {value:?}"))
    };
    let boolean = || parse_go_bool(value).map_err(|e| format!("not a boolean: {e}"));
    Ok(match name {
        "version" if boolean()? => Meaning {
            effect: Effect::PrintsVersion,
            note: "prints wpa's version and exits, as `wpa version`".into(),
        },
        "version" => ignored("it is false (upstream then runs its controller)"),
        "loglevel" | "zap-level" => {
            // zap's level names; wpa's filter has no level above error.
            let filter = match value.to_ascii_lowercase().as_str() {
                "debug" => "debug",
                "info" => "info",
                "warn" => "warn",
                "error" | "dpanic" | "panic" | "fatal" => "error",
                _ => return Err("a zap level is debug, info, warn, error, dpanic, panic or fatal".into()),
            };
            Meaning {
                effect: Effect::Sets("log-level", format!("--log-level={filter}")),
                note: format!("is read as RUST_LOG={filter} (wpa's log filter)"),
            }
        }
        "logEncoder" => match value {
            "json" => reads_as("log-format", "json", ""),
            "console" => reads_as("log-format", "text", ""),
            _ => return Err("the encoder is json or console (wpa: --log-format=json|text)".into()),
        },
        "enable-leader-election" => reads_as("leader-elect", boolean()?, ""),
        "workers" => {
            let n = number("the number of workers")?;
            if !(1..=u64::from(u16::MAX)).contains(&n) {
                return Err(format!("wpa's --concurrency takes 1 to {}", u16::MAX));
            }
            reads_as("concurrency", n, "")
        }
        // Upstream declares the flag and never reads it: its metrics are on 0.0.0.0:8383 whatever is given.
        // Binding wpa's health port to it would move /healthz too, to an address such as kustomize's
        // 127.0.0.1:8080 that the kubelet's probes cannot reach.
        "metrics-addr" => ignored(
            "upstream's controller never read it (its /metrics was always on 0.0.0.0:8383); wpa serves /metrics beside /healthz and /readyz on --health-listen",
        ),
        "health-port" => {
            let port =
                u16::try_from(number("the port")?).map_err(|_| "a port is at most 65535".to_string())?;
            reads_as(
                "health-listen",
                format!("0.0.0.0:{port}"),
                " (wpa serves /healthz, /readyz and /metrics there)",
            )
        }
        "syncPeriodSeconds" => {
            number("the resync period")?;
            ignored("it set the informers' resync; wpa passes over each WPA every --sync-period (15s)")
        }
        "client-qps" => {
            value.parse::<f64>().map_err(|_| format!("a number of queries per second, got {value:?}"))?;
            ignored(
                "wpa's Kubernetes client has no client-side rate limit (the API server's flow control applies)",
            )
        }
        "client-timeout" => {
            crate::api::duration::arg(value)?;
            ignored("wpa's Kubernetes client has no such setting")
        }
        "log-timestamp-format" => ignored("wpa's logs carry RFC 3339 timestamps"),
        "leader-election-resource" => {
            ignored("wpa elects its leader on a coordination.k8s.io Lease (--lease-name, --lease-namespace)")
        }
        "skipNotScalingEvents" => {
            boolean()?;
            ignored(
                "wpa never emits a NotScaling event per pass; the ScalingActive condition's NotScaling reason says it",
            )
        }
        "ddProfilingEnabled" | "ddTracingEnabled" => {
            boolean()?;
            ignored("wpa has no Datadog profiler or tracer")
        }
        "tls-ca-file" | "tls-server-name" | "tls-insecure-skip-verify" | "tls-cert-file" | "tls-key-file" => {
            return Err(
                "upstream's default TLS of recommender calls has no wpa flag: set spec.recommender.tlsConfig on each WPA (wpa serve's --tls-cert-file and --tls-key-file are the webhook's serving certificate)"
                    .into(),
            );
        }
        other => return Err(format!("--{other} is not one of upstream's flags")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Translation, String> {
        translate(args.iter().map(OsString::from).collect())
    }

    fn args(t: &Translation) -> Vec<&str> {
        t.args.iter().map(|a| a.to_str().unwrap()).collect()
    }

    #[test]
    fn upstream_flags_become_the_wpa_serve_flags_that_do_the_same() {
        let t = run(&[
            "wpa",
            "serve",
            "--loglevel=debug",
            "--enable-leader-election",
            "--workers",
            "4",
            "--logEncoder=console",
            "--health-port=9440",
            "--no-webhook",
        ])
        .unwrap();
        assert_eq!(
            args(&t),
            [
                "wpa",
                "serve",
                "--log-level=debug",
                "--leader-elect=true",
                "--concurrency=4",
                "--log-format=text",
                "--health-listen=0.0.0.0:9440",
                "--no-webhook"
            ]
        );
        assert_eq!(t.warnings.len(), 5, "one line per upstream flag: {:?}", t.warnings);
        assert!(t.warnings.iter().all(|w| !w.contains('\n')));
        assert_eq!(t.warnings[2], "wpa serve: upstream's flag --workers=4 is read as --concurrency=4");
        assert!(t.warnings[0].contains("RUST_LOG=debug"), "{:?}", t.warnings);
        // Go's single dash and explicit booleans.
        let t = run(&["wpa", "serve", "-enable-leader-election=false", "-health-port=9440"]).unwrap();
        assert_eq!(args(&t), ["wpa", "serve", "--leader-elect=false", "--health-listen=0.0.0.0:9440"]);
    }

    #[test]
    fn the_parsed_translation_is_what_wpa_serve_runs_with() {
        let t =
            run(&["wpa", "serve", "--workers=3", "--zap-level=error", "--enable-leader-election=f"]).unwrap();
        let (command, _) = super::super::parse(t.args).expect("clap takes the translation");
        let super::super::Command::Serve(serve) = command else { panic!("not serve") };
        assert_eq!(serve.reconciler.concurrency, 3);
        assert!(!serve.reconciler.leader_elect);
        assert_eq!(serve.log_level.as_deref(), Some("error"));
    }

    #[test]
    fn flags_without_an_equivalent_are_ignored_with_a_line_that_says_what_wpa_does() {
        let t = run(&[
            "wpa",
            "serve",
            "--syncPeriodSeconds=3600",
            "--client-qps",
            "50",
            "--client-timeout=30s",
            "--skipNotScalingEvents",
            "--ddTracingEnabled=true",
            "--ddProfilingEnabled",
            "--log-timestamp-format=rfc3339",
            "--leader-election-resource=configmaps",
        ])
        .unwrap();
        assert_eq!(args(&t), ["wpa", "serve"], "nothing is passed on");
        assert_eq!(t.warnings.len(), 8);
        assert!(t.warnings.iter().all(|w| w.contains(" is ignored: ")), "{:?}", t.warnings);
        assert!(t.warnings[0].contains("--sync-period"), "names wpa's flag: {}", t.warnings[0]);
        assert!(t.warnings[7].contains("--lease-name"), "{}", t.warnings[7]);
    }

    #[test]
    fn upstream_arguments_without_a_command_run_wpa_serve() {
        // Upstream's chart: `args: [--loglevel=info]` on the image's entrypoint.
        let t = run(&["/wpa", "--loglevel=info"]).unwrap();
        assert_eq!(args(&t), ["/wpa", "serve", "--log-level=info"]);
        assert!(t.warnings[0].contains("running `wpa serve`"), "{:?}", t.warnings);
        // Other commands and the kubectl plugin are left alone.
        for argv in
            [&["wpa", "crd"][..], &["wpa", "--version"], &["kubectl-wpa", "dry-run", "list", "web"], &["wpa"]]
        {
            assert_eq!(args(&run(argv).unwrap()), argv, "{argv:?}");
        }
        assert_eq!(
            args(&run(&["wpa", "explain", "--workers=2"]).unwrap()),
            ["wpa", "explain", "--workers=2"]
        );
    }

    #[test]
    fn upstream_version_flag_prints_wpas_version_instead_of_serving() {
        for argv in [
            &["wpa", "serve", "--version"][..],
            &["wpa", "serve", "-version"],
            &["wpa", "serve", "--workers=2", "-version=true"],
            // Upstream's image run with `args: [-version]`.
            &["/wpa", "-version"],
        ] {
            let t = run(argv).unwrap();
            assert_eq!(args(&t), [argv[0], "version"], "{argv:?}");
            let last = t.warnings.last().map(String::as_str).unwrap_or_default();
            assert!(last.contains("prints wpa's version"), "{argv:?}: {:?}", t.warnings);
            assert!(!t.warnings.iter().any(|w| w.contains("running `wpa serve`")), "{:?}", t.warnings);
        }
        let t = run(&["wpa", "serve", "-version=false"]).unwrap();
        assert_eq!(args(&t), ["wpa", "serve"]);
        assert!(t.warnings[0].contains(" is ignored: "), "{:?}", t.warnings);
        assert!(run(&["wpa", "serve", "-version=maybe"]).unwrap_err().contains("boolean"));
    }

    #[test]
    fn metrics_addr_is_ignored_as_upstream_ignores_it_so_health_stays_on_all_interfaces() {
        // Upstream's kustomize passes this; its controller never reads it.
        let t = run(&["wpa", "serve", "--metrics-addr=127.0.0.1:8080", "--health-port=9440"]).unwrap();
        assert_eq!(args(&t), ["wpa", "serve", "--health-listen=0.0.0.0:9440"]);
        assert!(
            t.warnings[0].contains(" is ignored: ") && t.warnings[0].contains("--health-listen"),
            "{:?}",
            t.warnings
        );
        let (command, _) =
            super::super::parse(run(&["wpa", "serve", "--metrics-addr", "localhost:1"]).unwrap().args)
                .expect("clap takes the translation");
        let super::super::Command::Serve(serve) = command else { panic!("not serve") };
        assert_eq!(serve.health_listen.to_string(), "0.0.0.0:8080");
    }

    #[test]
    fn what_wpa_cannot_honour_is_refused_with_what_to_set() {
        let refused = |argv: &[&str]| run(argv).expect_err(&format!("{argv:?} must be refused"));
        let e = refused(&["wpa", "serve", "--tls-ca-file=/etc/ca.pem"]);
        assert!(e.contains("spec.recommender.tlsConfig"), "{e}");
        // Without a command every flag is upstream's, its client certificate too.
        let e = refused(&["/wpa", "--loglevel=info", "--tls-cert-file=/certs/client.pem"]);
        assert!(e.contains("spec.recommender.tlsConfig"), "{e}");
        // After `serve`, --tls-cert-file is wpa's own serving certificate.
        let t =
            run(&["wpa", "serve", "--tls-cert-file=/tls/tls.crt", "--tls-key-file=/tls/tls.key"]).unwrap();
        assert!(t.warnings.is_empty());
        let e = refused(&["wpa", "serve", "--workers=many"]);
        assert!(e.contains("--workers=many") && e.contains("whole number"), "{e}");
        let e = refused(&["wpa", "serve", "--loglevel=verbose"]);
        assert!(e.contains("zap level"), "{e}");
        let e = refused(&["wpa", "serve", "--logEncoder=xml"]);
        assert!(e.contains("--log-format"), "{e}");
        let e = refused(&["wpa", "serve", "--workers"]);
        assert!(e.contains("needs a value"), "{e}");
        let e = refused(&["wpa", "serve", "--loglevel=info", "--zap-level=debug"]);
        assert!(e.contains("--log-level: keep one"), "{e}");
        let e = refused(&["wpa", "serve", "--workers=2", "--concurrency=8"]);
        assert!(e.contains("keep --concurrency"), "{e}");
        let e = refused(&["wpa", "serve", "--enable-leader-election=maybe"]);
        assert!(e.contains("boolean"), "{e}");
    }
}
