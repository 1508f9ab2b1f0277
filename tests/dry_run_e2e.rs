//! `wpa dry-run` on a real API server, run as this build's binary under both of its names: `wpa dry-run
//! ...` and kubectl's plugin `kubectl wpa dry-run ...` (the binary linked as `kubectl-wpa` on kubectl's
//! PATH). Enable, disable, list (text and CSV), revert from the CSV, and one clear line per error.
//!
//! One control plane for the binary, a namespace (or two) per test; the test of `--all --all-namespaces`
//! writes to every namespace, so it has a cluster of its own.

mod support;

use std::{
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
};

use serde_json::Value;
use support::{Run, Shared, TestCluster, TestNamespace, run};
use wpa::api::annotations::SKIP_OWNER_CHECK;

static CLUSTER: Shared<TestCluster> = Shared::new();

/// The binary's control plane, with the WPA CRD.
async fn cluster() -> Arc<TestCluster> {
    CLUSTER.get(support::cluster_with_crd).await
}

/// A WPA labelled `team` (and `test`: the namespace, so that a selector can stay inside one test), with
/// `spec.dryRun` when `dry_run` is given.
fn wpa(namespace: &str, name: &str, team: &str, dry_run: Option<bool>) -> String {
    let dry_run = dry_run.map(|d| format!("  dryRun: {d}\n")).unwrap_or_default();
    format!(
        "apiVersion: datadoghq.com/v1alpha1\nkind: WatermarkPodAutoscaler\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels: {{team: {team}, test: {namespace}}}\n\
         spec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}\n  minReplicas: 1\n  maxReplicas: 10\n\
         \x20 tolerance: 200m\n{dry_run}  metrics:\n  - type: External\n    external:\n      metricName: qps\n\
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
    /// Holds the plugin directory.
    dir: tempfile::TempDir,
}

impl Tools {
    fn new(cluster: &TestCluster) -> Tools {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let plugin_dir = dir.path().join("plugins");
        std::fs::create_dir_all(&plugin_dir).expect("a plugin directory");
        let plugin = plugin_dir.join("kubectl-wpa");
        symlink(env!("CARGO_BIN_EXE_wpa"), &plugin).expect("link kubectl-wpa to the wpa binary");
        Tools {
            wpa: PathBuf::from(env!("CARGO_BIN_EXE_wpa")),
            plugin,
            kubectl: cluster.bin_dir().join("kubectl"),
            plugin_dir,
            kubeconfig: cluster.kubeconfig_path().to_path_buf(),
            dir,
        }
    }

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

    /// `wpa ARGS --kubeconfig KUBECONFIG` (another user's).
    fn wpa_as(&self, kubeconfig: &Path, args: &[&str]) -> Run {
        let mut cmd = Command::new(&self.wpa);
        cmd.args(args).arg("--kubeconfig").arg(kubeconfig).env_remove("WPA_NAMESPACE");
        run(cmd)
    }
}

fn dry_run_of(cluster: &TestCluster, namespace: &str, name: &str) -> Option<bool> {
    support::kubectl_json(cluster, &["-n", namespace, "get", "wpa", name])["spec"]["dryRun"].as_bool()
}

fn sorted_lines(s: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = s.lines().collect();
    lines.sort();
    lines
}

/// The lines of `s` about the given namespaces (listings with `-A` also show other tests' WPAs), sorted.
fn lines_of<'a>(s: &'a str, namespaces: &[&str]) -> Vec<&'a str> {
    let mut lines: Vec<&str> = s
        .lines()
        .filter(|l| {
            namespaces.iter().any(|ns| l.starts_with(&format!("{ns},")) || l.contains(&format!("'{ns}/")))
        })
        .collect();
    lines.sort();
    lines
}

/// `web` and `api` in `a`, `batch` in `b`; `batch` is of team web too.
fn apply_three(cluster: &TestCluster, a: &str, b: &str, dry_run: [Option<bool>; 3]) {
    let manifests = [
        wpa(a, "web", "web", dry_run[0]),
        wpa(a, "api", "api", dry_run[1]),
        wpa(b, "batch", "web", dry_run[2]),
    ]
    .concat();
    cluster.kubectl_apply(&manifests).expect("three WPAs");
}

#[tokio::test]
async fn list_prints_each_wpas_option_in_upstreams_words() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster).await;
    cluster
        .kubectl_apply(&[wpa(&ns, "web", "web", None), wpa(&ns, "api", "api", None)].concat())
        .expect("WPAs");

    let r = Tools::new(&cluster).wpa(&["dry-run", "list", "--all", "-n", &ns]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        sorted_lines(&r.stdout),
        [
            format!("WatermarkPodAutoscaler '{ns}/api' dry-run option is: false"),
            format!("WatermarkPodAutoscaler '{ns}/web' dry-run option is: false")
        ]
    );
}

#[tokio::test]
async fn kubectl_wpa_enable_sets_the_named_wpa_only() {
    let cluster = cluster().await;
    let (a, b) =
        (TestNamespace::create(&cluster).await, TestNamespace::create_with(&cluster, "b", &[]).await);
    apply_three(&cluster, &a, &b, [None; 3]);

    let r = Tools::new(&cluster).kubectl_wpa(&["dry-run", "enable", "web", "-n", &a]);
    assert_eq!(r.code, Some(0), "kubectl wpa: {}{}", r.stderr, r.stdout);
    assert_eq!(r.stdout, format!("WatermarkPodAutoscaler '{a}/web' dry-run option is now true\n"));
    assert_eq!(dry_run_of(&cluster, &a, "web"), Some(true));
    assert_eq!(dry_run_of(&cluster, &a, "api"), None, "the others are untouched");
    assert_eq!(dry_run_of(&cluster, &b, "batch"), None);
}

#[tokio::test]
async fn enable_changes_spec_dry_run_and_nothing_else_of_the_spec() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster).await;
    cluster.kubectl_apply(&wpa(&ns, "web", "web", None)).expect("a WPA");
    let before = support::kubectl_json(&cluster, &["-n", &ns, "get", "wpa", "web"]);

    let r = Tools::new(&cluster).wpa(&["dry-run", "enable", "web", "-n", &ns]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let after = support::kubectl_json(&cluster, &["-n", &ns, "get", "wpa", "web"]);
    let mut spec = after["spec"].clone();
    assert_eq!(spec.as_object_mut().expect("spec").remove("dryRun"), Some(Value::Bool(true)));
    assert_eq!(spec, before["spec"]);
}

#[tokio::test]
async fn list_as_csv_through_the_plugin_link_covers_every_namespace() {
    let cluster = cluster().await;
    let (a, b) =
        (TestNamespace::create(&cluster).await, TestNamespace::create_with(&cluster, "b", &[]).await);
    apply_three(&cluster, &a, &b, [Some(true), None, None]);

    let r = Tools::new(&cluster).plugin(&["dry-run", "list", "--all", "-A", "-o", "csv"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        lines_of(&r.stdout, &[&a, &b]),
        [format!("{a},api,disabled"), format!("{a},web,enabled"), format!("{b},batch,disabled")]
    );
}

#[tokio::test]
async fn disable_by_label_in_all_namespaces_changes_only_the_matching_wpas() {
    let cluster = cluster().await;
    let (a, b) =
        (TestNamespace::create(&cluster).await, TestNamespace::create_with(&cluster, "b", &[]).await);
    apply_three(&cluster, &a, &b, [Some(true); 3]);

    // `test` keeps the selector inside this test's namespaces.
    let selector = format!("team=web,test in ({a},{b})");
    let r = Tools::new(&cluster).kubectl_wpa(&["dry-run", "disable", "-l", &selector, "-A"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        sorted_lines(&r.stdout),
        [
            format!("WatermarkPodAutoscaler '{a}/web' dry-run option is now false"),
            format!("WatermarkPodAutoscaler '{b}/batch' dry-run option is now false")
        ]
    );
    assert_eq!(dry_run_of(&cluster, &a, "api"), Some(true));
}

#[tokio::test]
async fn revert_from_a_saved_csv_writes_only_what_differs() {
    let cluster = cluster().await;
    let (a, b) =
        (TestNamespace::create(&cluster).await, TestNamespace::create_with(&cluster, "b", &[]).await);
    apply_three(&cluster, &a, &b, [Some(true), None, Some(false)]);
    let t = Tools::new(&cluster);
    let r = t.wpa(&["dry-run", "list", "--all", "-A", "-o", "csv"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let saved = t.dir.path().join("saved.csv");
    std::fs::write(&saved, lines_of(&r.stdout, &[&a, &b]).join("\n") + "\n").expect("save the states");
    // Then web off and api on; batch stays as saved, so revert has nothing to write for it.
    for (name, action) in [("web", "disable"), ("api", "enable")] {
        let r = t.wpa(&["dry-run", action, name, "-n", &a]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
    }

    let r = t.wpa(&["dry-run", "revert", "-f", &saved.display().to_string()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        sorted_lines(&r.stdout),
        [
            format!("WatermarkPodAutoscaler '{a}/api' dry-run option is now false"),
            format!("WatermarkPodAutoscaler '{a}/web' dry-run option is now true")
        ]
    );
    assert_eq!(
        [dry_run_of(&cluster, &a, "web"), dry_run_of(&cluster, &a, "api"), dry_run_of(&cluster, &b, "batch")],
        [Some(true), Some(false), Some(false)]
    );
}

/// Its own cluster: `--all --all-namespaces` writes to every WPA of the cluster, other tests' included.
#[tokio::test]
async fn enable_all_in_all_namespaces_enables_every_wpa_and_says_which_already_were() {
    let cluster = support::cluster_with_crd().await;
    for ns in ["team-a", "team-b"] {
        cluster.create_namespace(ns, &[]).await.expect("a namespace");
    }
    apply_three(&cluster, "team-a", "team-b", [Some(true), None, None]);

    let r = Tools::new(&cluster).wpa(&["dry-run", "enable", "--all", "--all-namespaces"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        sorted_lines(&r.stdout),
        [
            "WatermarkPodAutoscaler 'team-a/api' dry-run option is now true",
            "WatermarkPodAutoscaler 'team-a/web' dry-run option is already true",
            "WatermarkPodAutoscaler 'team-b/batch' dry-run option is now true"
        ]
    );
    assert_eq!(
        [
            dry_run_of(&cluster, "team-a", "web"),
            dry_run_of(&cluster, "team-a", "api"),
            dry_run_of(&cluster, "team-b", "batch")
        ],
        [Some(true); 3]
    );
}

#[tokio::test]
async fn enabling_a_missing_wpa_fails_with_one_not_found_line() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster).await;
    let r = Tools::new(&cluster).wpa(&["dry-run", "enable", "nope", "-n", &ns]);
    assert_eq!(one_line_error(&r), format!("wpa dry-run: WatermarkPodAutoscaler {ns}/nope not found"));
}

#[tokio::test]
async fn kubectl_wpa_names_itself_in_its_errors() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster).await;
    let r = Tools::new(&cluster).kubectl_wpa(&["dry-run", "disable", "nope", "-n", &ns]);
    assert_eq!(
        one_line_error(&r),
        format!("kubectl wpa dry-run: WatermarkPodAutoscaler {ns}/nope not found")
    );
}

#[tokio::test]
async fn a_selector_that_matches_nothing_fails_with_one_line_naming_it() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster).await;
    cluster.kubectl_apply(&wpa(&ns, "web", "web", None)).expect("a WPA");
    let r = Tools::new(&cluster).wpa(&["dry-run", "list", "-l", "team=none", "-n", &ns]);
    assert_eq!(
        one_line_error(&r),
        format!("wpa dry-run: no matching WatermarkPodAutoscaler in namespace {ns} with labels team=none")
    );
}

#[test]
fn an_unreadable_kubeconfig_fails_with_one_line_naming_its_path() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wpa"));
    cmd.args(["dry-run", "list", "--all", "-n", "team-a", "--kubeconfig", "/nonexistent/kubeconfig"])
        .env_remove("WPA_NAMESPACE");
    let r = run(cmd);
    assert!(
        one_line_error(&r).starts_with("wpa dry-run: cannot read the kubeconfig /nonexistent/kubeconfig: "),
        "{}",
        r.stderr
    );
}

#[test]
fn no_kubernetes_configuration_at_all_fails_with_one_line() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wpa"));
    cmd.args(["dry-run", "list", "--all"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("HOME", "/nonexistent")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("WPA_KUBECONFIG");
    let r = run(cmd);
    let line = one_line_error(&r);
    assert!(line.starts_with("wpa dry-run: cannot find a Kubernetes configuration: "), "{line}");
}

/// In `ns`: ServiceAccount `reader`, which may read WPAs but not patch them, and `nobody`, which may do
/// nothing; their kubeconfigs (context namespace `ns`).
async fn reader_and_nobody(cluster: &TestCluster, ns: &str) -> (PathBuf, PathBuf) {
    cluster
        .kubectl_apply(&format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: reader, namespace: {ns}}}\n---\n\
             apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: nobody, namespace: {ns}}}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: wpa-reader, namespace: {ns}}}\n\
             rules: [{{apiGroups: [datadoghq.com], resources: [watermarkpodautoscalers], verbs: [get, list]}}]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: wpa-reader, namespace: {ns}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: wpa-reader}}\n\
             subjects: [{{kind: ServiceAccount, name: reader, namespace: {ns}}}]\n",
        ))
        .expect("RBAC");
    let mut kubeconfigs = Vec::new();
    for sa in ["reader", "nobody"] {
        let token = support::request_service_account_token(cluster, ns, sa).await.expect("a token");
        kubeconfigs.push(support::token_kubeconfig(cluster, &format!("{ns}-{sa}.kubeconfig"), &token, ns));
    }
    (kubeconfigs[0].clone(), kubeconfigs[1].clone())
}

#[tokio::test]
async fn a_reader_lists_in_its_kubeconfigs_namespace_without_n() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster).await;
    cluster.kubectl_apply(&wpa(&ns, "web", "web", Some(true))).expect("a WPA");
    let (reader, _) = reader_and_nobody(&cluster, &ns).await;
    let r = Tools::new(&cluster).wpa_as(&reader, &["dry-run", "list", "web"]);
    assert_eq!(
        r.stdout,
        format!("WatermarkPodAutoscaler '{ns}/web' dry-run option is: true\n"),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn a_forbidden_patch_fails_with_one_line_saying_forbidden() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster).await;
    cluster.kubectl_apply(&wpa(&ns, "web", "web", Some(true))).expect("a WPA");
    let (reader, _) = reader_and_nobody(&cluster, &ns).await;
    let r = Tools::new(&cluster).wpa_as(&reader, &["dry-run", "disable", "web"]);
    let line = one_line_error(&r);
    assert!(
        line.starts_with(&format!(
            "wpa dry-run: unable to set the dry-run option of WatermarkPodAutoscaler '{ns}/web' to false: "
        )) && line.contains("forbidden"),
        "{line}"
    );
}

#[tokio::test]
async fn a_forbidden_list_fails_with_one_line_naming_the_namespace() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster).await;
    let (_, nobody) = reader_and_nobody(&cluster, &ns).await;
    let r = Tools::new(&cluster).wpa_as(&nobody, &["dry-run", "enable", "--all"]);
    let line = one_line_error(&r);
    assert!(
        line.starts_with(&format!(
            "wpa dry-run: cannot list WatermarkPodAutoscalers in namespace {ns}: forbidden: "
        )),
        "{line}"
    );
}

/// Of several WPAs, a single failure is the command's error.
#[tokio::test]
async fn of_several_wpas_a_single_failure_is_the_commands_one_error_line() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster).await;
    cluster
        .kubectl_apply(&[wpa(&ns, "web", "web", Some(true)), wpa(&ns, "api", "api", Some(false))].concat())
        .expect("WPAs");
    let (reader, _) = reader_and_nobody(&cluster, &ns).await;
    let r = Tools::new(&cluster).wpa_as(&reader, &["dry-run", "enable", "--all"]);
    assert_eq!(r.stdout, format!("WatermarkPodAutoscaler '{ns}/web' dry-run option is already true\n"));
    let line = one_line_error(&r);
    assert!(line.contains(&format!("'{ns}/api' to true")) && line.contains("forbidden"), "{line}");
}

/// Several failures are one line each, then counted.
#[tokio::test]
async fn several_failures_are_one_line_each_then_counted_and_nothing_is_written() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster).await;
    cluster
        .kubectl_apply(&[wpa(&ns, "web", "web", Some(true)), wpa(&ns, "api", "api", Some(true))].concat())
        .expect("WPAs");
    let (reader, _) = reader_and_nobody(&cluster, &ns).await;
    let r = Tools::new(&cluster).wpa_as(&reader, &["dry-run", "disable", "--all"]);
    assert_eq!(r.code, Some(1));
    let lines = sorted_lines(&r.stderr);
    assert_eq!(lines.len(), 3, "{}", r.stderr);
    assert!(lines[0].starts_with(&format!(
        "error: unable to set the dry-run option of WatermarkPodAutoscaler '{ns}/api' to false"
    )));
    assert!(lines[1].starts_with(&format!(
        "error: unable to set the dry-run option of WatermarkPodAutoscaler '{ns}/web' to false"
    )));
    assert_eq!(lines[2], "wpa dry-run: 2 of 2 WatermarkPodAutoscalers were not changed (errors above)");
    assert_eq!(dry_run_of(&cluster, &ns, "web"), Some(true), "nothing was written");
}

/// Usage errors are clap's (exit 2), with the plugin's name in its usage line. No cluster: kubectl runs a
/// plugin without asking one.
#[test]
fn a_usage_error_exits_2_with_the_plugins_name_in_its_usage_line() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    symlink(env!("CARGO_BIN_EXE_wpa"), dir.path().join("kubectl-wpa")).expect("link kubectl-wpa");
    let kubectl = support::find_binaries().expect("the control-plane binaries").join("kubectl");
    let mut cmd = Command::new(kubectl);
    let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap_or_default());
    cmd.args(["wpa", "dry-run", "enable"]).env("PATH", path).env("KUBECONFIG", "/nonexistent/kubeconfig");
    let r = run(cmd);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("Usage: kubectl wpa dry-run enable"), "{}", r.stderr);
}

/// The cluster's kubeconfig with a second context: `team` (the cluster, namespace `ns`) beside the current
/// one, `nowhere`, whose server refuses connections.
fn kubeconfig_with_team_context(cluster: &TestCluster, ns: &str) -> PathBuf {
    use serde_yaml_ng::{Value, from_str, to_string};
    let text = std::fs::read_to_string(cluster.kubeconfig_path()).expect("the cluster's kubeconfig");
    let mut kc: Value = from_str(&text).expect("a kubeconfig");
    let user = kc["contexts"][0]["context"]["user"].clone();
    let nowhere: Value =
        from_str("{name: nowhere, cluster: {server: \"https://127.0.0.1:1\"}}").expect("YAML");
    kc["clusters"].as_sequence_mut().expect("clusters").push(nowhere);
    let context = &mut kc["contexts"][0];
    context["name"] = "team".into();
    context["context"]["namespace"] = ns.into();
    let other: Value = from_str("{name: nowhere, context: {cluster: nowhere}}").expect("YAML");
    kc["contexts"].as_sequence_mut().expect("contexts").push(other);
    kc["contexts"][1]["context"]["user"] = user;
    kc["current-context"] = "nowhere".into();
    let path = cluster.dir().join(format!("{ns}-two-contexts.kubeconfig"));
    std::fs::write(&path, to_string(&kc).expect("YAML")).expect("write the kubeconfig");
    path
}

#[tokio::test]
async fn context_selects_the_cluster_and_namespace_of_dry_run_status_and_explain() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster).await;
    cluster.kubectl_apply(&wpa(&ns, "web", "web", Some(true))).expect("a WPA");
    let kubeconfig = kubeconfig_with_team_context(&cluster, &ns);
    let t = Tools::new(&cluster);

    // The current context's server refuses: without --context nothing is read.
    let line = one_line_error(&t.wpa_as(&kubeconfig, &["dry-run", "list", "web"])).to_string();
    assert!(line.contains("refused"), "{line}");

    let r = t.wpa_as(&kubeconfig, &["dry-run", "list", "web", "--context", "team"]);
    assert_eq!(
        r.stdout,
        format!("WatermarkPodAutoscaler '{ns}/web' dry-run option is: true\n"),
        "{}",
        r.stderr
    );

    let r = t.wpa_as(&kubeconfig, &["status", "--context", "team", "-o", "json"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).expect("status JSON");
    assert_eq!(report["scope"], format!("namespace {ns}"), "{report}");
    let items = report["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{report}");
    assert_eq!(
        (&items[0]["namespace"], &items[0]["name"]),
        (&Value::from(ns.to_string()), &Value::from("web"))
    );

    let r = t.wpa_as(&kubeconfig, &["explain", "web", "--context", "team"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.starts_with(&format!("WatermarkPodAutoscaler {ns}/web at ")), "{}", r.stdout);
}

/// WPA `web` in `ns` on Deployment `web` with one ready pod, in this cluster that registers no metrics
/// provider.
async fn a_wpa_without_a_metrics_provider(cluster: &TestCluster, ns: &str) {
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {ns}\nspec:\n  replicas: 1\n\
         \x20 selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n\
         \x20   spec: {{containers: [{{name: c, image: pause}}]}}\n"
    );
    cluster.kubectl_apply(&deployment).expect("a Deployment");
    // A pod of it (no controller runs here to make one): the metric is read once the target has pods.
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-1\n  namespace: {ns}\n  labels: {{app: web}}\n\
         spec: {{nodeName: node-a, automountServiceAccountToken: false, containers: [{{name: c, image: pause}}]}}\n"
    );
    // No controller-manager here makes the namespace's default service account, which a pod needs.
    cluster
        .kubectl_apply(&format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n  namespace: {ns}\n"
        ))
        .expect("the default service account");
    cluster.kubectl_apply(&pod).expect("a pod");
    cluster.mark_pods_ready(ns, "app=web").await.expect("the pod marked ready");
    // The pod has no ReplicaSet to own it: the owner check is skipped, as the annotation allows.
    let skip = format!("  annotations: {{{SKIP_OWNER_CHECK}: \"true\"}}\nspec:\n");
    cluster.kubectl_apply(&wpa(ns, "web", "web", None).replacen("spec:\n", &skip, 1)).expect("a WPA");
}

/// This cluster registers no metrics provider: `wpa explain` says so and names the check, instead of the
/// API server's bare `404 page not found`.
#[tokio::test]
async fn explain_without_a_metrics_provider_names_the_missing_apiservice_and_its_check() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster).await;
    a_wpa_without_a_metrics_provider(&cluster, &ns).await;
    let r = Tools::new(&cluster).wpa(&["explain", "web", "-n", &ns]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains(
            "no metrics provider serves external.metrics.k8s.io/v1beta1 (check `kubectl get apiservice v1beta1.external.metrics.k8s.io`"
        ),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("404 page not found"), "{}", r.stdout);
}

/// `wpa explain -o json` of a live WPA is its `wpa status -o json` line, with the schema version.
#[tokio::test]
async fn explain_json_is_the_live_wpas_status_line() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster).await;
    a_wpa_without_a_metrics_provider(&cluster, &ns).await;
    let r = Tools::new(&cluster).wpa(&["explain", &format!("{ns}/web"), "-o", "json"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).expect("JSON");
    assert_eq!(v["schemaVersion"], 1);
    assert_eq!((v["namespace"].as_str(), v["name"].as_str()), (Some(&*ns), Some("web")), "{v}");
    assert_eq!(v["state"], "failing", "{v}");
    assert_eq!(v["metrics"][0]["position"], "failed", "{v}");
    assert!(v["reason"].as_str().is_some_and(|r| r.contains("v1beta1.external.metrics.k8s.io")), "{v}");
    assert_eq!(v["replicas"]["current"], 1, "{v}");
}
