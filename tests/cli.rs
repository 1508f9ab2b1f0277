//! The `wpa` binary as a user first meets it, without a cluster: `version`, `completion`, and the one line
//! each failure prints (no cause said twice, `wpa serve`'s error as one log line, a bad `--san` refused, an
//! unknown `--context` named with the contexts there are, a certificate that cannot be read refused before
//! anything starts in the cluster, no kubeconfig named readably), and output to a reader that went away.

mod support;

use std::{path::Path, process::Command};

use support::{Run, run};

fn wpa(args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wpa"));
    cmd.args(args).env_remove("WPA_CONTEXT").env_remove("WPA_KUBECONFIG").env_remove("WPA_NAMESPACE");
    run(cmd)
}

/// The lines of stderr that say something.
fn stderr_lines(r: &Run) -> Vec<&str> {
    r.stderr.lines().filter(|l| !l.trim().is_empty()).collect()
}

#[test]
fn version_and_dash_dash_version_print_the_crate_version_and_the_apis_served() {
    let version = wpa(&["version"]);
    assert_eq!(version.code, Some(0), "{}", version.stderr);
    let flag = wpa(&["--version"]);
    assert_eq!(flag.code, Some(0), "{}", flag.stderr);
    assert_eq!(version.stdout, flag.stdout, "`wpa version` and `wpa --version` say the same");
    let mut lines = version.stdout.lines();
    assert_eq!(lines.next(), Some(format!("wpa {}", env!("CARGO_PKG_VERSION")).as_str()));
    let served = lines.next().unwrap_or_default();
    for api in ["admission.k8s.io/v1 ", "v1beta1", "datadoghq.com/v1alpha1"] {
        assert!(served.contains(api), "{api} missing from {served:?}");
    }
}

#[test]
fn upstreams_version_flag_prints_wpas_version_and_exits_0() {
    let version = wpa(&["version"]);
    // `-version` of a swapped image's args, with `serve` or without a command.
    for args in [&["serve", "--version"][..], &["serve", "-version"], &["-version"]] {
        let r = wpa(args);
        assert_eq!(r.code, Some(0), "{args:?}: {}", r.stderr);
        assert_eq!(r.stdout, version.stdout, "{args:?}");
    }
}

#[test]
fn the_top_level_help_shows_the_fallback_annotations() {
    for flag in ["--help", "-h"] {
        let help = wpa(&[flag]);
        assert_eq!(help.code, Some(0), "{}", help.stderr);
        for line in [
            r#"wpa.datadoghq.com/fallback-replicas: "8""#,
            r#"wpa.datadoghq.com/fallback-after: "10m""#,
            "docs/fallback.md",
        ] {
            assert!(help.stdout.contains(line), "{flag}: {line} missing from\n{}", help.stdout);
        }
    }
}

#[test]
fn simulate_help_says_an_empty_value_and_a_gap_past_the_metric_max_age_are_outages() {
    let help = wpa(&["simulate", "--help"]);
    assert_eq!(help.code, Some(0), "{}", help.stderr);
    let text = help.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    for said in [
        "An empty value (`120,qps,`) is a metrics outage: that metric fails from that sample until its next one",
        "A gap between two samples of an External metric is an outage too once the last one is older than --metric-max-age",
        "within it, the last value holds.",
    ] {
        assert!(text.contains(said), "{said:?} missing from\n{}", help.stdout);
    }
}

/// Runs `wpa`'s bash completion function on the words of a command line, the last one being completed, and
/// returns what it offers.
fn bash_completions(words: &[&str]) -> Vec<String> {
    let script = wpa(&["completion", "bash"]);
    assert_eq!(script.code, Some(0), "{}", script.stderr);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("wpa.bash");
    std::fs::write(&file, &script.stdout).expect("write the script");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let (current, previous) = (words[words.len() - 1], words[words.len().saturating_sub(2)]);
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; _wpa wpa '{current}' '{previous}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display(),
        quoted.join(" "),
        words.len() - 1
    );
    let mut cmd = Command::new("bash");
    cmd.args(["--norc", "-c", &program]);
    let r = run(cmd);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    r.stdout.lines().map(str::to_string).collect()
}

#[test]
fn bash_completion_completes_commands_flags_and_shells() {
    assert_eq!(bash_completions(&["wpa", "ex"]), ["explain"]);
    assert_eq!(bash_completions(&["wpa", "explain", "--con"]), ["--context"]);
    let shells = bash_completions(&["wpa", "completion", ""]);
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        assert!(shells.iter().any(|s| s == shell), "{shell} missing from {shells:?}");
    }
}

#[test]
fn completion_writes_a_script_naming_the_commands_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let r = wpa(&["completion", shell]);
        assert_eq!(r.code, Some(0), "{shell}: {}", r.stderr);
        for command in ["explain", "simulate", "dry-run", "completion"] {
            assert!(r.stdout.contains(command), "{shell}: {command} missing");
        }
    }
    let r = wpa(&["completion", "tcsh"]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("[possible values: bash, elvish, fish, powershell, zsh]"), "{}", r.stderr);
}

/// The one line of stderr of a run that failed with code 1.
fn the_failure_line(r: &Run) -> &str {
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let lines = stderr_lines(r);
    assert_eq!(lines.len(), 1, "one line: {:?}", r.stderr);
    lines[0]
}

#[test]
fn a_serve_failure_is_one_log_line_in_the_log_format() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("missing-kubeconfig").display().to_string();
    let json = wpa(&["serve", "--self-signed", "--kubeconfig", &missing]);
    let line: serde_json::Value = serde_json::from_str(the_failure_line(&json)).expect("a JSON log line");
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["message"], "wpa serve failed");
    assert_eq!(
        line["error"],
        format!("cannot read the kubeconfig {missing}: No such file or directory (os error 2)")
    );

    let text = wpa(&["serve", "--self-signed", "--kubeconfig", &missing, "--log-format", "text"]);
    let line = the_failure_line(&text);
    assert!(line.contains("wpa serve failed") && line.contains(&missing), "{line}");
}

#[test]
fn a_serve_that_cannot_load_its_certificate_starts_nothing_in_the_cluster() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let kubeconfig = two_context_kubeconfig(dir.path());
    let cert = dir.path().join("tls.crt").display().to_string();
    let key = dir.path().join("tls.key").display().to_string();
    let r = wpa(&[
        "serve",
        "--kubeconfig",
        &kubeconfig,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--health-listen",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "text",
    ]);
    // No leader election, watch or reconciler was started before the failure: its line is the only one.
    let line = the_failure_line(&r);
    assert!(line.contains("wpa serve failed") && line.contains(&cert), "{line}");
}

#[test]
fn dry_run_revert_of_a_missing_file_says_its_cause_once() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("saved.csv").display().to_string();
    let r = wpa(&["dry-run", "revert", "-f", &missing]);
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        format!("wpa dry-run: cannot read {missing}: No such file or directory (os error 2)\n")
    );
}

#[test]
fn certs_refuses_a_san_that_is_neither_a_dns_name_nor_an_ip_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir.path().join("certs");
    for bad in ["bad name!", "-web.example.com", "web..example.com", "a.*.example.com", "example.com."] {
        let r =
            wpa(&["certs", "--out-dir", &out.display().to_string(), "--san", &format!("localhost,{bad}")]);
        assert_eq!(r.code, Some(2), "{bad}: {}", r.stderr);
        assert!(r.stderr.contains(&format!("invalid value '{bad}' for '--san")), "{bad}: {}", r.stderr);
        assert!(r.stderr.contains("give an IP address (10.0.0.1, ::1) or a DNS name"), "{}", r.stderr);
        assert!(!out.exists(), "{bad}: nothing is written");
    }
}

#[test]
fn serve_refuses_a_bad_tls_san_before_starting() {
    let r = wpa(&["serve", "--self-signed", "--tls-san", "wpa.wpa-system.svc,bad name!"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.starts_with("error: invalid value 'bad name!' for '--tls-san"), "{}", r.stderr);
}

#[test]
fn certs_writes_a_certificate_for_ips_dns_names_and_a_wildcard() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir.path().join("certs");
    let r = wpa(&[
        "certs",
        "--out-dir",
        &out.display().to_string(),
        "--san",
        "10.0.0.1,::1,wpa.wpa-system.svc,*.example.com",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("serving certificate for: 10.0.0.1, ::1, wpa.wpa-system.svc, *.example.com"));
    assert!(out.join("tls.crt").exists());
}

/// A kubeconfig with contexts `a` and `b` (neither reachable: the test stops before any connection).
fn two_context_kubeconfig(dir: &Path) -> String {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:1\"}\n\
         users:\n- name: u\n  user: {token: t}\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\n\
         - name: b\n  context: {cluster: c, user: u}\ncurrent-context: a\n",
    )
    .expect("write the kubeconfig");
    path.display().to_string()
}

#[test]
fn an_unknown_context_is_refused_naming_the_contexts_of_the_kubeconfig() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let kubeconfig = two_context_kubeconfig(dir.path());
    for (command, args) in [
        ("explain", &["explain", "web"][..]),
        ("status", &["status"]),
        ("dry-run", &["dry-run", "list", "--all"]),
        ("convert", &["convert", "--from-hpa", "web"]),
    ] {
        let mut argv = args.to_vec();
        argv.extend(["--kubeconfig", &kubeconfig, "--context", "prod"]);
        let r = wpa(&argv);
        assert_eq!(r.code, Some(1), "{command}: {}", r.stderr);
        assert_eq!(
            r.stderr,
            format!(
                "wpa {command}: the kubeconfig {kubeconfig} has no context prod (its contexts: a, b); \
                 `kubectl config get-contexts` lists them\n"
            )
        );
    }
}

/// `wpa` with no kubeconfig to find: HOME is an empty directory, KUBECONFIG and the in-cluster variables unset.
fn without_kubeconfig(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wpa"));
    cmd.env("HOME", home)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("WPA_KUBECONFIG")
        .env_remove("WPA_CONTEXT");
    cmd
}

/// Which of the command's outputs goes to a pipe whose reader is already gone (`| true`, `| head` that
/// has exited): every write to it fails with a broken pipe.
#[derive(Clone, Copy, Debug)]
enum Closed {
    Stdout,
    Stderr,
    Both,
}

/// Runs `cmd` with `closed` output(s) on a pipe without a reader; the other is captured. Returns the exit code
/// and what was captured (nothing when both are closed).
fn with_closed(mut cmd: Command, closed: Closed) -> (Option<i32>, String) {
    use std::process::Stdio;
    let (reader, writer) = std::io::pipe().expect("a pipe");
    // The reader goes away before the command writes anything.
    drop(reader);
    let pipe = || Stdio::from(writer.try_clone().expect("the pipe's writer"));
    match closed {
        Closed::Stdout => cmd.stdout(pipe()).stderr(Stdio::piped()),
        Closed::Stderr => cmd.stdout(Stdio::piped()).stderr(pipe()),
        Closed::Both => cmd.stdout(pipe()).stderr(pipe()),
    };
    drop(writer);
    let out = cmd.output().expect("run wpa");
    let captured = [out.stdout, out.stderr].concat();
    (out.status.code(), String::from_utf8_lossy(&captured).into_owned())
}

#[test]
fn a_serve_failure_on_a_closed_stderr_exits_1_in_either_log_format() {
    let home = tempfile::tempdir().expect("a temporary directory");
    for args in [
        &["serve"][..],
        &["serve", "--log-format", "text"],
        // Upstream's flags print a warning line before the logs start.
        &["serve", "--workers=2", "--log-format", "text"],
        &["--loglevel=info"],
    ] {
        let mut cmd = without_kubeconfig(home.path());
        cmd.args(args);
        let (code, _) = with_closed(cmd, Closed::Both);
        assert_eq!(code, Some(1), "{args:?}: the failure's status, not a panic's 101");
    }
}

#[test]
fn a_reader_of_stdout_that_went_away_ends_every_printing_command_quietly() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (wpa_yaml, series) = (root.join("examples/wpa.yaml"), root.join("examples/series.csv"));
    let out_dir = dir.path().join("certs");
    let simulate = ["simulate", "--wpa", wpa_yaml.to_str().expect("UTF-8"), "--series"];
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["version"],
        &["--version"],
        &["crd"],
        &["completion", "bash"],
        &["certs", "--out-dir", out_dir.to_str().expect("UTF-8")],
        &[&simulate[..], &[series.to_str().expect("UTF-8"), "--all-steps"]].concat(),
    ] {
        let mut cmd = without_kubeconfig(dir.path());
        cmd.args(args);
        let (code, stderr) = with_closed(cmd, Closed::Stdout);
        assert_eq!((code, stderr.as_str()), (Some(0), ""), "{args:?}");
    }
}

#[test]
fn a_command_failing_with_a_closed_stdout_and_stderr_exits_with_its_own_status() {
    let home = tempfile::tempdir().expect("a temporary directory");
    for (args, code) in [(&["status"][..], 1), (&["explain", "web"], 1), (&["no-such-command"], 2)] {
        for closed in [Closed::Stdout, Closed::Stderr, Closed::Both] {
            let mut cmd = without_kubeconfig(home.path());
            cmd.args(args);
            assert_eq!(with_closed(cmd, closed).0, Some(code), "{args:?}, {closed:?} closed");
        }
    }
}

#[test]
fn a_missing_default_kubeconfig_is_named_once_without_quotes() {
    let home = tempfile::tempdir().expect("a temporary directory");
    let path = home.path().join(".kube/config").display().to_string();
    let run_with = |args: &[&str]| {
        let mut cmd = without_kubeconfig(home.path());
        cmd.args(args);
        run(cmd)
    };
    let (status, serve) = (run_with(&["status"]), run_with(&["serve", "--self-signed"]));
    let serve: serde_json::Value = serde_json::from_str(the_failure_line(&serve)).expect("a JSON log line");
    for message in [the_failure_line(&status), serve["error"].as_str().unwrap_or_default()] {
        assert!(
            message.contains(&format!("read kubeconfig from {path}: No such file or directory")),
            "{message}"
        );
        assert_eq!(message.matches(&path).count(), 1, "{message}");
        assert!(!message.contains('"'), "{message}");
    }
}
