//! `wpa dry-run` on a real API server, run as this build's binary under both of its names: `wpa dry-run
//! ...` and kubectl's plugin `kubectl wpa dry-run ...` (the binary linked as `kubectl-wpa` on kubectl's
//! PATH). Enable, disable, list (text and CSV), revert from the CSV, and one clear line per error.

mod support;

use std::{
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;
use support::{Run, TestCluster, run};

fn wpa(namespace: &str, name: &str, team: &str) -> String {
    format!(
        "apiVersion: datadoghq.com/v1alpha1\nkind: WatermarkPodAutoscaler\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels: {{team: {team}}}\n\
         spec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}\n  minReplicas: 1\n  maxReplicas: 10\n\
         \x20 tolerance: 200m\n  metrics:\n  - type: External\n    external:\n      metricName: qps\n\
         \x20     metricSelector: {{matchLabels: {{app: {name}}}}}\n      highWatermark: \"100\"\n      lowWatermark: \"50\"\n---\n"
    )
}

/// Exit 1 and exactly one line on stderr, which is returned.
fn one_line_error(r: &Run) -> &str {
    assert_eq!(r.code, Some(1), "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {:?}", r.stderr);
    lines[0]
}

struct Tools {
    wpa: PathBuf,
    plugin: PathBuf,
    kubectl: PathBuf,
    plugin_dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Tools {
    /// `wpa ARGS` with the cluster's kubeconfig in KUBECONFIG.
    fn wpa(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(&self.wpa);
        cmd.args(args).env("KUBECONFIG", &self.kubeconfig).env_remove("WPA_NAMESPACE");
        run(cmd)
    }

    /// `kubectl wpa ARGS`: kubectl finds `kubectl-wpa` on PATH and runs it with the arguments after `wpa`.
    fn kubectl_wpa(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(&self.kubectl);
        let path = format!("{}:{}", self.plugin_dir.display(), std::env::var("PATH").unwrap_or_default());
        cmd.arg("wpa")
            .args(args)
            .env("PATH", path)
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("WPA_NAMESPACE");
        run(cmd)
    }

    /// The link itself, without kubectl.
    fn plugin(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(&self.plugin);
        cmd.args(args).env("KUBECONFIG", &self.kubeconfig).env_remove("WPA_NAMESPACE");
        run(cmd)
    }
}

fn dry_run_of(cluster: &TestCluster, namespace: &str, name: &str) -> Option<bool> {
    let out = cluster.kubectl(&["-n", namespace, "get", "wpa", name, "-o", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v["spec"]["dryRun"].as_bool()
}

fn sorted_lines(s: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = s.lines().collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn dry_run_enables_disables_lists_and_reverts_as_wpa_and_as_kubectl_wpa() {
    let cluster = TestCluster::start().await;
    cluster.install_crd(wpa::api::crd()).await.expect("the CRD");
    for ns in ["team-a", "team-b"] {
        cluster.create_namespace(ns, &[]).await.expect("a namespace");
    }
    let manifests =
        [wpa("team-a", "web", "web"), wpa("team-a", "api", "api"), wpa("team-b", "batch", "web")].concat();
    cluster.kubectl_apply(&manifests).expect("three WPAs");
    let before: Value =
        serde_json::from_slice(&cluster.kubectl(&["-n", "team-a", "get", "wpa", "web", "-o", "json"]).stdout)
            .expect("JSON");

    let plugin_dir = cluster.dir().join("plugins");
    std::fs::create_dir_all(&plugin_dir).expect("a plugin directory");
    let plugin = plugin_dir.join("kubectl-wpa");
    symlink(env!("CARGO_BIN_EXE_wpa"), &plugin).expect("link kubectl-wpa to the wpa binary");
    let t = Tools {
        wpa: PathBuf::from(env!("CARGO_BIN_EXE_wpa")),
        plugin,
        kubectl: cluster.bin_dir().join("kubectl"),
        plugin_dir,
        kubeconfig: cluster.kubeconfig_path().to_path_buf(),
    };

    // list, in upstream's words.
    let r = t.wpa(&["dry-run", "list", "--all", "-n", "team-a"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        sorted_lines(&r.stdout),
        [
            "WatermarkPodAutoscaler 'team-a/api' dry-run option is: false",
            "WatermarkPodAutoscaler 'team-a/web' dry-run option is: false"
        ]
    );

    // enable one, through kubectl.
    let r = t.kubectl_wpa(&["dry-run", "enable", "web", "-n", "team-a"]);
    assert_eq!(r.code, Some(0), "kubectl wpa: {}{}", r.stderr, r.stdout);
    assert_eq!(r.stdout, "WatermarkPodAutoscaler 'team-a/web' dry-run option is now true\n");
    assert_eq!(dry_run_of(&cluster, "team-a", "web"), Some(true));
    assert_eq!(dry_run_of(&cluster, "team-a", "api"), None, "the others are untouched");
    assert_eq!(dry_run_of(&cluster, "team-b", "batch"), None);
    // The merge patch changed spec.dryRun and nothing else of the spec.
    let after: Value =
        serde_json::from_slice(&cluster.kubectl(&["-n", "team-a", "get", "wpa", "web", "-o", "json"]).stdout)
            .expect("JSON");
    let mut spec = after["spec"].clone();
    spec.as_object_mut().expect("spec").remove("dryRun");
    assert_eq!(spec, before["spec"]);

    // Save every state as CSV (the link run directly, as kubectl runs it).
    let r = t.plugin(&["dry-run", "list", "--all", "-A", "-o", "csv"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        sorted_lines(&r.stdout),
        ["team-a,api,disabled", "team-a,web,enabled", "team-b,batch,disabled"]
    );
    let saved = cluster.dir().join("saved.csv");
    std::fs::write(&saved, &r.stdout).expect("save the states");

    // enable all of them everywhere.
    let r = t.wpa(&["dry-run", "enable", "--all", "--all-namespaces"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        sorted_lines(&r.stdout),
        [
            "WatermarkPodAutoscaler 'team-a/api' dry-run option is now true",
            "WatermarkPodAutoscaler 'team-a/web' dry-run option is already true",
            "WatermarkPodAutoscaler 'team-b/batch' dry-run option is now true"
        ]
    );
    // disable by label, in every namespace.
    let r = t.kubectl_wpa(&["dry-run", "disable", "-l", "team=web", "-A"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        sorted_lines(&r.stdout),
        [
            "WatermarkPodAutoscaler 'team-a/web' dry-run option is now false",
            "WatermarkPodAutoscaler 'team-b/batch' dry-run option is now false"
        ]
    );
    assert_eq!(dry_run_of(&cluster, "team-a", "api"), Some(true));

    // revert to the saved states: only what differs is written.
    let r = t.wpa(&["dry-run", "revert", "-f", &saved.display().to_string()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        sorted_lines(&r.stdout),
        [
            "WatermarkPodAutoscaler 'team-a/api' dry-run option is now false",
            "WatermarkPodAutoscaler 'team-a/web' dry-run option is now true"
        ]
    );
    assert_eq!(
        [
            dry_run_of(&cluster, "team-a", "web"),
            dry_run_of(&cluster, "team-a", "api"),
            dry_run_of(&cluster, "team-b", "batch")
        ],
        [Some(true), Some(false), Some(false)]
    );

    // Errors: one line each, exit 1, named after the way the binary was started.
    let r = t.wpa(&["dry-run", "enable", "nope", "-n", "team-a"]);
    assert_eq!(one_line_error(&r), "wpa dry-run: WatermarkPodAutoscaler team-a/nope not found");
    let r = t.kubectl_wpa(&["dry-run", "disable", "nope", "-n", "team-b"]);
    assert_eq!(one_line_error(&r), "kubectl wpa dry-run: WatermarkPodAutoscaler team-b/nope not found");
    let r = t.wpa(&["dry-run", "list", "-l", "team=none", "-n", "team-a"]);
    assert_eq!(
        one_line_error(&r),
        "wpa dry-run: no matching WatermarkPodAutoscaler in namespace team-a with labels team=none"
    );
    let r = t.wpa(&["dry-run", "list", "--all", "-n", "team-a", "--kubeconfig", "/nonexistent/kubeconfig"]);
    assert!(
        one_line_error(&r).starts_with("wpa dry-run: cannot read the kubeconfig /nonexistent/kubeconfig: "),
        "{}",
        r.stderr
    );
    let mut cmd = Command::new(&t.wpa);
    cmd.args(["dry-run", "list", "--all"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("HOME", "/nonexistent")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("WPA_KUBECONFIG");
    let r = run(cmd);
    let line = one_line_error(&r);
    assert!(line.starts_with("wpa dry-run: cannot find a Kubernetes configuration: "), "{line}");

    // Forbidden: a ServiceAccount that may read WPAs but not patch them, and one that may do nothing.
    cluster
        .kubectl_apply(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: reader, namespace: team-a}\n---\n\
             apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: nobody, namespace: team-a}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: wpa-reader, namespace: team-a}\n\
             rules: [{apiGroups: [datadoghq.com], resources: [watermarkpodautoscalers], verbs: [get, list]}]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: wpa-reader, namespace: team-a}\n\
             roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: wpa-reader}\n\
             subjects: [{kind: ServiceAccount, name: reader, namespace: team-a}]\n",
        )
        .expect("RBAC");
    let mut kubeconfigs = Vec::new();
    for sa in ["reader", "nobody"] {
        let token = support::request_service_account_token(&cluster, "team-a", sa).await.expect("a token");
        kubeconfigs.push(support::token_kubeconfig(&cluster, &format!("{sa}.kubeconfig"), &token, "team-a"));
    }
    let (reader, nobody) = (kubeconfigs[0].clone(), kubeconfigs[1].clone());
    let as_user = |kubeconfig: &Path, args: &[&str]| {
        let mut cmd = Command::new(&t.wpa);
        cmd.args(args).arg("--kubeconfig").arg(kubeconfig).env_remove("WPA_NAMESPACE");
        run(cmd)
    };
    // The token kubeconfig's context names team-a: no -n needed.
    let r = as_user(&reader, &["dry-run", "list", "web"]);
    assert_eq!(r.stdout, "WatermarkPodAutoscaler 'team-a/web' dry-run option is: true\n", "{}", r.stderr);
    let r = as_user(&reader, &["dry-run", "disable", "web"]);
    let line = one_line_error(&r);
    assert!(
        line.starts_with(
            "wpa dry-run: unable to set the dry-run option of WatermarkPodAutoscaler 'team-a/web' to false: "
        ) && line.contains("forbidden"),
        "{line}"
    );
    let r = as_user(&nobody, &["dry-run", "enable", "--all"]);
    let line = one_line_error(&r);
    assert!(
        line.starts_with("wpa dry-run: cannot list WatermarkPodAutoscalers in namespace team-a: forbidden: "),
        "{line}"
    );
    // Of several WPAs, a single failure is the command's error; several are one line each, then counted.
    let r = as_user(&reader, &["dry-run", "enable", "--all"]);
    assert_eq!(r.stdout, "WatermarkPodAutoscaler 'team-a/web' dry-run option is already true\n");
    let line = one_line_error(&r);
    assert!(line.contains("'team-a/api' to true") && line.contains("forbidden"), "{line}");
    let r = t.wpa(&["dry-run", "enable", "api", "-n", "team-a"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let r = as_user(&reader, &["dry-run", "disable", "--all"]);
    assert_eq!(r.code, Some(1));
    let lines = sorted_lines(&r.stderr);
    assert_eq!(lines.len(), 3, "{}", r.stderr);
    assert!(lines[0].starts_with(
        "error: unable to set the dry-run option of WatermarkPodAutoscaler 'team-a/api' to false"
    ));
    assert!(lines[1].starts_with(
        "error: unable to set the dry-run option of WatermarkPodAutoscaler 'team-a/web' to false"
    ));
    assert_eq!(lines[2], "wpa dry-run: 2 of 2 WatermarkPodAutoscalers were not changed (errors above)");
    assert_eq!(dry_run_of(&cluster, "team-a", "web"), Some(true), "nothing was written");

    // Usage errors are clap's (exit 2), with the plugin's name in its usage line.
    let r = t.kubectl_wpa(&["dry-run", "enable"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("Usage: kubectl wpa dry-run enable"), "{}", r.stderr);
}
