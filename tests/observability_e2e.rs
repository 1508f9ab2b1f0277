//! What operators see of wpa on a real control plane: `kubectl get wpa` (upstream's columns, and the target
//! and replicas with `-o wide`), the Prometheus series across a `dryRun` toggle, and a real Prometheus
//! scraping `wpa serve` through a scaling scenario, which every alert of the chart's PrometheusRule and every
//! query of its Grafana dashboard must parse in and name only series it has.
//!
//! The `kubectl get` and dryRun tests share one scaling cluster, each in its own namespace with its own
//! metric name; the Prometheus test has a cluster of its own (it registers the webhooks cluster-wide and
//! stops their server when it ends).

mod support;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use support::{ScalingCluster, Shared, StartWpa, TestNamespace, WpaServe, wpa_yaml};

const SECOND: Duration = Duration::from_secs(1);

static CLUSTER: Shared<ScalingCluster> = Shared::new();

async fn cluster() -> Arc<ScalingCluster> {
    CLUSTER.get(ScalingCluster::start).await
}

/// `wpa serve` running the reconciler only for namespace `ns`, passing over each WPA every second, with
/// `extra` flags.
async fn reconciler(c: &ScalingCluster, ns: &str, extra: &[&str]) -> WpaServe {
    let args =
        [&["--no-webhook", "--sync-period", "1s", "--leader-elect=false", "--namespace", ns][..], extra]
            .concat();
    WpaServe::start(&c.cluster, &format!("{ns}-a"), None, &args).await.expect("start wpa serve")
}

/// The cells of a `kubectl get` table line (columns are apart by at least two spaces; header names have
/// single spaces).
fn cells(line: &str) -> Vec<String> {
    line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect()
}

fn kubectl_table(c: &ScalingCluster, args: &[&str]) -> (Vec<String>, Vec<String>) {
    let out = c.cluster.kubectl(args);
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("kubectl {}:\n{text}", args.join(" "));
    let mut lines = text.lines();
    (cells(lines.next().expect("a header")), cells(lines.next().expect("a row")))
}

/// A WPA web in `ns` (maxReplicas 3) that has scaled its Deployment to 3, and the reconciler that did it.
async fn scaled_to_three(c: &ScalingCluster, ns: &str) -> WpaServe {
    c.deployment(ns, "web", 2).await.expect("deployment");
    // A metric of this namespace's own.
    let metric = format!("{ns}-qps");
    c.metrics.set(&metric, 300.0);
    let extra = "  upscaleForbiddenWindowSeconds: 1\n";
    let text =
        wpa_yaml(ns, "web", "web", &metric, "100", "50", extra).replace("maxReplicas: 10", "maxReplicas: 3");
    c.apply_wpa(&text).await.expect("the WPA");
    let serve = reconciler(c, ns, &[]).await;
    // ceil(2 × 300 / 100) = 6, limited to +50 % and to the maximum: 3.
    c.wait_scale(ns, "web", 3, 30 * SECOND).await.expect("an upscale");
    let st = support::wait_for(20 * SECOND, || async {
        let st = c.wpa_status(ns, "web").await.map_err(|e| e.to_string())?;
        if st.desired_replicas == 3 && st.current_replicas == 3 { Ok(st) } else { Err(format!("{st:?}")) }
    })
    .await
    .expect("the status shows 3 desired and 3 current");
    assert_eq!(st.desired_replicas, 3);
    serve
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_wpa_shows_upstreams_twelve_columns() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    let _serve = scaled_to_three(&c, &ns).await;
    // Upstream's twelve columns, in its order, and nothing more.
    let (header, row) = kubectl_table(&c, &["get", "wpa", "-n", &ns]);
    assert_eq!(
        header,
        [
            "NAME",
            "SCALING ACTIVE",
            "CONDITION",
            "CONDITION STATE",
            "VALUE",
            "HIGH WATERMARK",
            "LOW WATERMARK",
            "AGE",
            "MIN REPLICAS",
            "MAX REPLICAS",
            "DRY-RUN",
            "LAST SCALE"
        ]
    );
    assert_eq!(row[0], "web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_wpa_wide_shows_the_target_and_its_replicas() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    let _serve = scaled_to_three(&c, &ns).await;
    let (header, row) = kubectl_table(&c, &["get", "wpa", "-n", &ns, "-o", "wide"]);
    let column = |name: &str| {
        let i = header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no {name} in {header:?}"));
        row[i].clone()
    };
    assert_eq!(header.len(), row.len(), "every cell has a value: {header:?} {row:?}");
    assert_eq!(column("TARGET KIND"), "Deployment");
    assert_eq!(column("TARGET"), "web");
    assert_eq!(column("DESIRED"), "3");
    assert_eq!(column("CURRENT"), "3");
    assert_eq!(column("MAX REPLICAS"), "3");
}

/// The series of WPA `name` in an exposition: name and labels, without the value.
fn series_of(text: &str, name: &str) -> BTreeSet<String> {
    let label = format!("wpa_name=\"{name}\"");
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(&label))
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_string()))
        .collect()
}

fn value_of(text: &str, metric: &str, name: &str) -> Option<f64> {
    let label = format!("wpa_name=\"{name}\"");
    text.lines().find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        (series.starts_with(&format!("{metric}{{")) && series.contains(&label)).then(|| value.parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toggling_dry_run_on_a_live_wpa_keeps_the_same_series_and_flips_the_gauge() {
    let c = cluster().await;
    let ns = TestNamespace::create(&c.cluster).await;
    c.deployment(&ns, "api", 2).await.expect("deployment");
    // Within the band: nothing scales, so no series comes or goes for another reason.
    c.metrics.set("toggle-qps", 80.0);
    let text = wpa_yaml(&ns, "api", "api", "toggle-qps", "100", "50", "").replace(
        &format!("  namespace: {ns}\n"),
        &format!("  namespace: {ns}\n  labels:\n    team: payments\n"),
    );
    c.apply_wpa(&text).await.expect("the WPA");
    let serve = reconciler(&c, &ns, &["--labels-as-tags", "team"]).await;
    let scrape = || support::http_get(serve.health_port, "/metrics").expect("GET /metrics").1;
    // Two scrapes a few passes apart agree: the set is settled.
    let before = support::wait_for(30 * SECOND, || async {
        let first = scrape();
        tokio::time::sleep(3 * SECOND).await;
        let second = scrape();
        let (a, b) = (series_of(&first, "api"), series_of(&second, "api"));
        if !a.is_empty() && a == b && value_of(&second, "wpa_controller_dry_run", "api") == Some(0.0) {
            Ok(second)
        } else {
            Err(format!("not settled:\n{first}\n{second}"))
        }
    })
    .await
    .expect("the WPA's series");
    assert!(!before.contains("dry_run=\""), "no series has a dry_run label:\n{before}");
    assert!(before.contains("wpa_controller_labels_info{team=\"payments\",wpa_name=\"api\""), "{before}");

    let out = c.cluster.kubectl(&[
        "patch",
        "wpa",
        "api",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"dryRun":true}}"#,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = support::wait_for(20 * SECOND, || async {
        let text = scrape();
        if value_of(&text, "wpa_controller_dry_run", "api") == Some(1.0) { Ok(text) } else { Err(text) }
    })
    .await
    .expect("the dry_run gauge turns 1");
    let (b, a) = (series_of(&before, "api"), series_of(&after, "api"));
    assert_eq!(
        b,
        a,
        "the same series before and after the toggle; only before: {:?}, only after: {:?}",
        b.difference(&a).collect::<Vec<_>>(),
        a.difference(&b).collect::<Vec<_>>()
    );
    eprintln!("{} series kept their identity across the dryRun toggle", a.len());
}

/// The dashboard's Grafana variables, as a query of all WPAs gives them.
fn without_grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m").replace("$namespace", ".*").replace("$wpa", ".*")
}

/// An HTTPS client trusting the CA in `ca_pem` (wpa serve's `--ca-bundle-out`).
fn https_client(ca_pem: &str) -> reqwest::Client {
    let config = support::tls::client_config(&[ca_pem]);
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(10 * SECOND)
        .build()
        .expect("a client")
}

/// Its own cluster: its webhooks are cluster-wide, with a Fail policy once its server stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scraping_wpa_serve_has_every_series_the_alerts_and_dashboard_query() {
    use support::prometheus::{Prometheus, dashboard, dashboard_queries, rules_file, selectors};
    let began = std::time::Instant::now();
    let c = ScalingCluster::start().await;
    // wpa serve with every role: the webhook (its configurations registered first, then --inject-ca), the
    // reconciler under a leader Lease, the scheduler extender.
    let lease = [&support::FAST_LEASE[..], &["--lease-namespace", "default"]].concat();
    let args = [&["--scheduler-extender", "--sync-period", "1s", "--namespace", "shop,lc,fight"][..], &lease]
        .concat();
    let (serve, ca_path) = support::start_with_webhook(&c.cluster, "all", &args).await.expect("wpa serve");
    let port = serve.webhook_port;
    // A second reconciler, in namespace `denied` only, whose status writes RBAC forbids.
    let kubeconfig = support::kubeconfig_without_status_writes(&c.cluster, "nostatus.kubeconfig").await;
    let kubeconfig = kubeconfig.display().to_string();
    let denied_args = [
        "--no-webhook",
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        "denied",
        "--sync-period",
        "1s",
        "--leader-elect=false",
    ];
    let denied =
        WpaServe::start(&c.cluster, "denied", None, &denied_args).await.expect("the second wpa serve");

    // Prometheus scrapes both wpa serve every second through the scenario and evaluates the chart's rules
    // (all nine: the extender on).
    let dir = tempfile::tempdir().expect("a temporary directory");
    let values =
        serde_json::json!({"prometheusRule": {"enabled": true}, "schedulerExtender": {"enabled": true}});
    let rules = rules_file(&values, dir.path());
    let targets = [format!("127.0.0.1:{}", serve.health_port), format!("127.0.0.1:{}", denied.health_port)];
    let prometheus = Prometheus::start(dir.path(), &targets, &rules);
    // Both scraped, with the counters an `increase()` alert reads at their starting 0 (a counter whose first
    // sample is already 1 shows no increase).
    support::wait_for(60 * SECOND, || async {
        let q = r#"count(up == 1) == 2 and on () count(wpa_scheduler_extender_infeasible_total{level="node"} == 0) == 1"#;
        let r = prometheus.api("/api/v1/query", &[("query", q)]);
        if r["data"]["result"].as_array().is_some_and(|v| !v.is_empty()) { Ok(()) } else { Err(format!("{r}")) }
    })
    .await
    .unwrap_or_else(|e| panic!("Prometheus does not scrape both wpa serve: {e}\n{}", prometheus.log()));
    // A scaling scenario with a WPA in each state the alerts watch.
    let window = "  upscaleForbiddenWindowSeconds: 1\n  downscaleForbiddenWindowSeconds: 1\n";
    c.deployment("shop", "web", 1).await.expect("deployment");
    c.metrics.set("web-qps", 900.0);
    let pinned = wpa_yaml(
        "shop",
        "web",
        "web",
        "web-qps",
        "100",
        "50",
        &format!("{window}  minAvailableReplicaPercentage: 50\n"),
    )
    .replace("maxReplicas: 10", "maxReplicas: 3");
    c.apply_wpa(&pinned).await.expect("WPA shop/web");
    c.deployment("shop", "down", 4).await.expect("deployment");
    c.metrics.set("down-qps", 10.0);
    c.apply_wpa(&wpa_yaml("shop", "down", "down", "down-qps", "100", "50", window))
        .await
        .expect("WPA shop/down");
    c.deployment("shop", "dry", 2).await.expect("deployment");
    c.metrics.set("dry-qps", 500.0);
    let dry = format!("{window}  dryRun: true\n");
    c.apply_wpa(&wpa_yaml("shop", "dry", "dry", "dry-qps", "100", "50", &dry)).await.expect("WPA shop/dry");
    c.deployment("lc", "app", 1).await.expect("deployment");
    c.metrics.set("lc-qps", 80.0);
    let lifecycle = wpa_yaml("lc", "app", "app", "lc-qps", "100", "50", "").replace(
        "  namespace: lc\n",
        "  namespace: lc\n  annotations:\n    wpa.datadoghq.com/lifecycle-control.enabled: \"true\"\n",
    );
    c.apply_wpa(&lifecycle).await.expect("WPA lc/app");
    c.deployment("fight", "app", 2).await.expect("deployment");
    c.metrics.set("fight-qps", 80.0);
    c.apply_wpa(&wpa_yaml("fight", "app", "app", "fight-qps", "100", "50", "")).await.expect("WPA fight/app");
    c.cluster
        .kubectl_apply(
            "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: app-hpa, namespace: fight}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: app}\n  minReplicas: 1\n  maxReplicas: 10\n",
        )
        .expect("an HPA on the same target");
    c.deployment("denied", "app", 1).await.expect("deployment");
    c.metrics.set("denied-qps", 300.0);
    c.apply_wpa(&wpa_yaml("denied", "app", "app", "denied-qps", "100", "50", window))
        .await
        .expect("WPA denied/app");
    let refused = c
        .apply_wpa(&wpa_yaml("shop", "second", "web", "web-qps", "100", "50", ""))
        .await
        .expect_err("the webhook refuses a second WPA on shop/web");
    eprintln!("refused: {refused:#}");
    c.wait_scale("shop", "web", 3, 60 * SECOND).await.expect("shop/web scales to its maximum");
    c.wait_ready_pods("shop", "web", 3, 60 * SECOND).await.expect("its pods");

    // kube-scheduler's two verbs for a new pod of shop/web, all of whose replicas are on the one node: no
    // node keeps its failure budget.
    let ca = std::fs::read_to_string(&ca_path).expect("the CA bundle");
    let pods = c.cluster.kubectl(&["get", "pods", "-n", "shop", "-l", "app=web", "-o", "json"]);
    let pods: serde_json::Value = serde_json::from_slice(&pods.stdout).expect("pods JSON");
    // A fourth replica, not bound yet (the extender has no opinion on a bound pod).
    let mut pod = pods["items"][0].clone();
    pod["metadata"]["name"] = "web-new".into();
    pod["metadata"]["uid"] = "00000000-0000-0000-0000-000000000001".into();
    pod["spec"].as_object_mut().expect("a pod spec").remove("nodeName");
    pod.as_object_mut().expect("a pod").remove("status");
    let args = serde_json::json!({"Pod": pod, "NodeNames": ["node-a"]});
    let client = https_client(&ca);
    for verb in ["filter", "prioritize"] {
        let answer = client
            .post(format!("https://127.0.0.1:{port}/scheduler/{verb}"))
            .json(&args)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /scheduler/{verb}: {e}"));
        assert_eq!(answer.status(), 200, "/scheduler/{verb}: {:?}", answer.text().await);
    }

    // Until it holds what the scenario makes.
    let wanted = [
        r#"wpa_controller_conditions{condition="conflicting_autoscaler",wpa_namespace="fight"} == 1"#,
        r#"wpa_controller_conditions{condition="scaling_blocked",wpa_namespace="lc"} == 1"#,
        r#"wpa_webhook_requests_total{allowed="false"}"#,
        r#"wpa_controller_downscale_replicas_total{wpa_name="down"}"#,
        r#"wpa_controller_replicas_scaling_effective{wpa_name="web"} == 3"#,
        r#"wpa_status_write_errors_total{phase="record"}"#,
        r#"wpa_scheduler_extender_infeasible_total{level="node"} > 0"#,
        "wpa_reconciler_leader == 1",
    ];
    support::wait_for(90 * SECOND, || async {
        for q in wanted {
            let r = prometheus.api("/api/v1/query", &[("query", q)]);
            if r["data"]["result"].as_array().is_none_or(Vec::is_empty) {
                let extender =
                    prometheus.api("/api/v1/query", &[("query", "wpa_scheduler_extender_requests_total")]);
                return Err(format!("nothing for {q} yet: {r}; extender decisions: {extender}"));
            }
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", prometheus.log()));

    // Every alert expression and every dashboard query parses in Prometheus, and each of its selectors
    // (metric name and label matchers) selects series of this scrape: a typo selects nothing.
    let rule_text = std::fs::read_to_string(&rules).expect("rules");
    let groups: serde_json::Value = serde_yaml_ng::from_str(&rule_text).expect("rules YAML");
    let mut queries: Vec<(String, String)> = groups["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (r["alert"].as_str().expect("alert").to_string(), r["expr"].as_str().expect("expr").to_string())
        })
        .collect();
    queries.extend(
        dashboard_queries(&dashboard())
            .into_iter()
            .map(|q| ("dashboard".to_string(), without_grafana_variables(&q))),
    );
    let mut checked = 0;
    for (source, expr) in &queries {
        let answer = prometheus.api("/api/v1/query", &[("query", expr)]);
        assert_eq!(answer["status"], "success", "{source}: Prometheus refuses {expr}: {answer}");
        let sels = selectors(expr).unwrap_or_else(|e| panic!("{source}: {expr}: {e}"));
        assert!(!sels.is_empty(), "{source}: {expr} selects nothing");
        for sel in sels {
            checked += 1;
            let found = prometheus.api("/api/v1/series", &[("match[]", &sel)]);
            assert!(
                found["data"].as_array().is_some_and(|d| !d.is_empty()),
                "{source}: {sel} (in {expr}) selects no series of wpa's scrape: {found}"
            );
        }
    }
    eprintln!("{} queries, {checked} selectors, each with series", queries.len());

    // Prometheus evaluates every rule without an error, and the alerts of the states made above are pending
    // (their `for` is minutes) for the WPAs in them, and only for those.
    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let expected = [
        ("WPAPinnedAtMaxReplicas", set(&["shop/web"])),
        ("WPAScalingBlocked", set(&["fight/app", "lc/app"])),
        ("WPADryRunLeftOn", set(&["shop/dry"])),
        ("WPAStatusWritesFailing", set(&["record"])),
        ("WPAExtenderNoSafeNode", set(&["node"])),
        ("WPAScalingInactive", set(&[])),
        ("WPANoLeader", set(&[])),
        ("WPAWebhookSlow", set(&[])),
    ];
    support::wait_for(60 * SECOND, || async {
        let r = prometheus.api("/api/v1/rules", &[]);
        let rules: Vec<serde_json::Value> =
            r["data"]["groups"][0]["rules"].as_array().cloned().unwrap_or_default();
        if rules.len() != 9 || rules.iter().any(|r| r["health"] != "ok") {
            return Err(format!("not every rule is evaluated and healthy: {r}"));
        }
        for (alert, want) in &expected {
            let got: BTreeSet<String> = rules
                .iter()
                .find(|r| r["name"] == *alert)
                .and_then(|r| r["alerts"].as_array())
                .into_iter()
                .flatten()
                .map(|a| {
                    let l = &a["labels"];
                    match (l["wpa_namespace"].as_str(), l["phase"].as_str(), l["level"].as_str()) {
                        (Some(ns), _, _) => format!("{ns}/{}", l["wpa_name"].as_str().unwrap_or("")),
                        (None, Some(phase), _) => phase.to_string(),
                        (None, None, Some(level)) => level.to_string(),
                        _ => a["labels"].to_string(),
                    }
                })
                .collect();
            if got != *want {
                let rule = rules.iter().find(|r| r["name"] == *alert).cloned().unwrap_or_default();
                let now = prometheus.api("/api/v1/query", &[("query", rule["query"].as_str().unwrap_or(""))]);
                return Err(format!(
                    "{alert}: active for {got:?}, want {want:?}; {rule}; its query now: {now}"
                ));
            }
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", prometheus.log()));
    eprintln!("the Prometheus e2e took {:?}", began.elapsed());
    drop((serve, denied));
}
