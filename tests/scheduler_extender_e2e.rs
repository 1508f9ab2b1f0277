//! The scheduler extender against a real kube-scheduler 1.20.2, configured with
//! `webhook-config/scheduler-config.yaml`, beside the same scenarios on a cluster whose scheduler has no
//! extender: placement must keep `minAvailableReplicaPercentage` of a WPA target's replicas through the loss
//! of any one node (and any one zone, where the zones can hold the replicas), leave no pod Pending, leave
//! workloads without a WPA alone, and fail open when `wpa serve` is down.
//!
//! Every scenario runs 5 times in each cluster. The repeats run at once, each in its own namespace on its
//! own pool of Nodes (a `pool` label and a nodeSelector), so that one cluster start serves them all.

mod support;

use std::{collections::BTreeMap, time::Duration};

use base64::Engine;
use futures::future::join_all;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::json;
use support::{Options, TestCluster, TlsIdentity, WpaServe};

const REPEATS: usize = 5;
const SECOND: Duration = Duration::from_secs(1);

/// One placement scenario.
#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    /// Per node: its zone and the CPU already taken by other pods (of 8).
    nodes: &'static [(&'static str, u32)],
    replicas: i32,
    /// `minAvailableReplicaPercentage` of the WPA; `None`: the Deployment has no WPA.
    min_available: Option<i32>,
    /// Whether the zones can hold the replicas within the budget, so a zone loss is checked too.
    zones_checked: bool,
    /// Whether the scale-up's pods are held back until all of them exist, then released at once: the
    /// scheduler then asks about each while its siblings are visibly pending (a burst). Without the gate a
    /// fast scheduler may place each new pod before the next one exists, and no run is sure to burst.
    gated: bool,
}

const SCENARIOS: [Scenario; 5] = [
    // (1) Three half-full nodes and one new empty node: the default scheduler piles onto the empty one.
    Scenario {
        name: "magnet",
        nodes: &[("z1", 4), ("z1", 4), ("z2", 4), ("z2", 0)],
        replicas: 8,
        min_available: Some(70),
        zones_checked: false,
        gated: false,
    },
    // (2) Eight nodes, seven half full, a burst of 22 new replicas.
    Scenario {
        name: "burst",
        nodes: &[("z1", 4), ("z1", 4), ("z1", 4), ("z1", 4), ("z2", 4), ("z2", 4), ("z2", 4), ("z2", 0)],
        replicas: 24,
        min_available: Some(70),
        zones_checked: false,
        gated: true,
    },
    // (3) Zones of one and three empty nodes.
    Scenario {
        name: "zones",
        nodes: &[("z1", 0), ("z2", 0), ("z2", 0), ("z2", 0)],
        replicas: 8,
        min_available: Some(50),
        zones_checked: true,
        gated: false,
    },
    // (4) One full node: three nodes cannot hold 8 replicas at 2 each; nothing may stay Pending.
    Scenario {
        name: "full",
        nodes: &[("z1", 8), ("z1", 0), ("z2", 0), ("z2", 0)],
        replicas: 8,
        min_available: Some(70),
        zones_checked: false,
        gated: false,
    },
    // (5) A Deployment without a WPA.
    Scenario {
        name: "plain",
        nodes: &[("z1", 4), ("z1", 4), ("z2", 4), ("z2", 0)],
        replicas: 8,
        min_available: None,
        zones_checked: false,
        gated: false,
    },
];

/// Where the replicas of one run landed.
#[derive(Debug, Default)]
struct Placement {
    per_node: BTreeMap<String, i32>,
    per_zone: BTreeMap<String, i32>,
    pending: usize,
}

impl Placement {
    /// Replicas left after losing the worst node / zone.
    fn after_worst_node_loss(&self, replicas: i32) -> i32 {
        replicas - self.per_node.values().copied().max().unwrap_or(0)
    }

    fn after_worst_zone_loss(&self, replicas: i32) -> i32 {
        replicas - self.per_zone.values().copied().max().unwrap_or(0)
    }
}

/// The scheduler tried the pod and found no node for it.
fn unschedulable(p: &Pod) -> bool {
    p.status.iter().flat_map(|s| s.conditions.iter().flatten()).any(|c| {
        c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
    })
}

fn must_stay(replicas: i32, percent: i32) -> i32 {
    (replicas * percent + 99) / 100
}

/// Sets `labels` on object `name` (a node, the gate pod).
async fn patch_labels<K>(api: &Api<K>, name: &str, labels: serde_json::Value)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::default(), &Patch::Merge(&json!({"metadata": {"labels": labels}})))
        .await
        .unwrap_or_else(|e| panic!("label {name}: {e}"));
}

/// The node the pod is bound to, if it is.
fn node_of(p: &Pod) -> Option<&str> {
    p.spec.as_ref()?.node_name.as_deref()
}

/// One run of `s` in namespace `ns` on a pool of its own; returns where the replicas went.
async fn run(cluster: &TestCluster, s: Scenario, ns: &str) -> Placement {
    cluster.create_namespace(ns, &[]).await.expect("namespace");
    let mut zone_of = BTreeMap::new();
    for (i, (zone, taken)) in s.nodes.iter().enumerate() {
        let node = format!("{ns}-n{i}");
        cluster.create_node(&node, &format!("{ns}-{zone}"), "8", "32Gi", 110).await.expect("node");
        patch_labels(&Api::<Node>::all(cluster.client()), &node, json!({"pool": ns})).await;
        zone_of.insert(node.clone(), format!("{ns}-{zone}"));
        if *taken > 0 {
            // Another workload's pod, bound to the node: what makes a node "half full".
            let filler: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("filler-{i}")},
                "spec": {"nodeName": node, "automountServiceAccountToken": false, "containers": [{"name": "a", "image": "registry.invalid/a",
                    "resources": {"requests": {"cpu": taken.to_string()}}}]}
            }))
            .unwrap();
            cluster.create_namespaced(ns, &filler).await.expect("filler");
        }
    }
    if let Some(m) = s.min_available {
        let wpa = format!(
            "apiVersion: datadoghq.com/v1alpha1\nkind: WatermarkPodAutoscaler\nmetadata: {{name: app, namespace: {ns}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: app}}\n  minReplicas: 1\n  maxReplicas: 100\n  minAvailableReplicaPercentage: {m}\n  metrics:\n  - type: External\n    external: {{metricName: qps, metricSelector: {{matchLabels: {{app: app}}}}, highWatermark: \"100\", lowWatermark: \"50\"}}\n"
        );
        cluster.apply_yaml(&wpa).await.expect("WPA");
    }
    let pods: Api<Pod> = Api::namespaced(cluster.client(), ns);
    // The gate: a pod the replicas require (pod affinity) while it is labelled open. It takes no CPU and
    // is not one of the replicas (no app label).
    let affinity = if s.gated {
        let gate: Pod = serde_json::from_value(json!({
            "metadata": {"name": "gate", "labels": {"gate": "open"}},
            "spec": {"nodeName": format!("{ns}-n0"), "automountServiceAccountToken": false,
                "containers": [{"name": "a", "image": "registry.invalid/a"}]}
        }))
        .unwrap();
        cluster.create_namespaced(ns, &gate).await.expect("the gate pod");
        "      affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {gate: open}}, topologyKey: pool}]}}\n"
    } else {
        ""
    };
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app, namespace: {ns}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: app}}}}\n  template:\n    metadata: {{labels: {{app: app}}}}\n    spec:\n      nodeSelector: {{pool: {ns}}}\n{affinity}      automountServiceAccountToken: false\n      containers: [{{name: a, image: registry.invalid/a, resources: {{requests: {{cpu: 500m}}}}}}]\n"
    );
    cluster.apply_yaml(&deployment).await.expect("deployment");
    let bound = |want: usize| {
        let pods = pods.clone();
        async move {
            support::wait_for(60 * SECOND, || async {
                let list =
                    pods.list(&ListParams::default().labels("app=app")).await.map_err(|e| e.to_string())?;
                let n = list.items.iter().filter(|p| node_of(p).is_some()).count();
                if n >= want { Ok(()) } else { Err(format!("{n} of {want} bound")) }
            })
            .await
        }
    };
    bound(2).await.expect("the first two replicas are bound");
    if s.gated {
        patch_labels(&pods, "gate", json!({"gate": "closed"})).await;
    }
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(cluster.client(), ns);
    deployments
        .patch_scale(
            "app",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": s.replicas}})),
        )
        .await
        .expect("scale");
    if s.gated {
        // Every new replica exists and the scheduler has found it unschedulable (it asks no extender when
        // its own filters leave no node); then all of them are released at once.
        support::wait_for(60 * SECOND, || async {
            let list =
                pods.list(&ListParams::default().labels("app=app")).await.map_err(|e| e.to_string())?;
            let unbound: Vec<&Pod> = list.items.iter().filter(|p| node_of(p).is_none()).collect();
            let held = unbound.iter().filter(|p| unschedulable(p)).count();
            if list.items.len() == s.replicas as usize && held >= 2 && held == unbound.len() {
                Ok(())
            } else {
                Err(format!(
                    "{} of {} replicas exist, {held} of {} unbound held",
                    list.items.len(),
                    s.replicas,
                    unbound.len()
                ))
            }
        })
        .await
        .expect("the scale-up's replicas wait at the gate");
        patch_labels(&pods, "gate", json!({"gate": "open"})).await;
    }
    // Every replica is bound, or the run reports how many stayed Pending after a minute.
    let _ = bound(s.replicas as usize).await;
    let mut placement = Placement::default();
    for p in pods.list(&ListParams::default().labels("app=app")).await.expect("pods").items {
        match node_of(&p) {
            Some(node) => {
                *placement.per_zone.entry(zone_of[node].clone()).or_default() += 1;
                *placement.per_node.entry(node.to_owned()).or_default() += 1;
            }
            None => placement.pending += 1,
        }
    }
    placement
}

/// Runs every scenario `REPEATS` times on `cluster`, the scenarios at once and the repeats of each one after
/// the other (25 runs at once on 2 cores slow the extender past the scheduler's 1 s `httpTimeout`, and an
/// extender that does not answer is skipped: fail-open, not what these runs measure).
async fn run_all(cluster: &TestCluster, variant: &str) -> BTreeMap<&'static str, Vec<Placement>> {
    let by_scenario = join_all(SCENARIOS.iter().map(|s| async move {
        let mut runs = Vec::new();
        for r in 0..REPEATS {
            runs.push(run(cluster, *s, &format!("{variant}-{}-{r}", s.name)).await);
        }
        (s.name, runs)
    }))
    .await;
    by_scenario.into_iter().collect()
}

fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The extender's configuration as shipped, pointed at `wpa serve` on `port` with `ca_pem`.
fn scheduler_config(port: u16, ca_pem: &str) -> String {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/webhook-config/scheduler-config.yaml"))
            .expect("webhook-config/scheduler-config.yaml");
    let mut config: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&shipped).expect("the shipped config parses");
    // The harness writes its own kubeconfig in.
    config.as_mapping_mut().expect("a mapping").remove("clientConnection");
    let extender = &mut config["extenders"][0];
    extender["urlPrefix"] = format!("https://127.0.0.1:{port}/scheduler").into();
    extender["tlsConfig"]["serverName"] = "localhost".into();
    extender["tlsConfig"]["caData"] = base64::engine::general_purpose::STANDARD.encode(ca_pem).into();
    serde_yaml_ng::to_string(&config).expect("YAML")
}

// One test for all scenarios: each cluster start (with and without the extender) serves every scenario and
// repeat at once, instead of 60 sequential starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_keeps_min_available_through_the_loss_of_a_node_or_zone() {
    let port = devcluster::free_loopback_port().expect("a free loopback port");
    let identity = TlsIdentity::new(&["localhost", "127.0.0.1"]).expect("a serving certificate");
    let (with, without) = tokio::join!(
        TestCluster::start_with(Options {
            scheduler_config: Some(scheduler_config(port, &identity.ca_pem)),
            ..Options::full()
        }),
        TestCluster::start_with(Options::full()),
    );
    for c in [&with, &without] {
        c.install_crd(wpa::api::crd()).await.expect("the WPA CRD");
    }
    let (cert, key) = (with.dir().join("extender.crt"), with.dir().join("extender.key"));
    std::fs::write(&cert, &identity.leaf.cert_pem).unwrap();
    std::fs::write(&key, &identity.leaf.key_pem).unwrap();
    let (cert_arg, key_arg) = (cert.to_string_lossy().to_string(), key.to_string_lossy().to_string());
    let mut serve = <WpaServe as support::StartWpa>::start(
        &with,
        "extender",
        Some(port),
        &[
            "--no-reconciler",
            "--no-webhook",
            "--scheduler-extender",
            "--tls-cert-file",
            &cert_arg,
            "--tls-key-file",
            &key_arg,
        ],
    )
    .await
    .expect("wpa serve --scheduler-extender");

    let (with_runs, without_runs) = tokio::join!(run_all(&with, "x"), run_all(&without, "d"));
    for s in SCENARIOS {
        let m = s.min_available.unwrap_or(0);
        let stay = must_stay(s.replicas, m);
        for (variant, runs) in
            [("with the extender", &with_runs[s.name]), ("default scheduler", &without_runs[s.name])]
        {
            let summary: Vec<String> = runs
                .iter()
                .map(|p| {
                    format!(
                        "{:?} (node loss leaves {}, zone loss {}, {} Pending)",
                        p.per_node.values().collect::<Vec<_>>(),
                        p.after_worst_node_loss(s.replicas),
                        p.after_worst_zone_loss(s.replicas),
                        p.pending
                    )
                })
                .collect();
            eprintln!("{} {variant}: must keep {stay} of {}: {}", s.name, s.replicas, summary.join("; "));
        }
        for p in &with_runs[s.name] {
            assert_eq!(p.pending, 0, "{}: nothing stays Pending with the extender: {p:?}", s.name);
            if s.min_available.is_some() && s.name != "full" {
                assert!(
                    p.after_worst_node_loss(s.replicas) >= stay,
                    "{}: a node loss keeps {stay}: {p:?}",
                    s.name
                );
                if s.zones_checked {
                    assert!(
                        p.after_worst_zone_loss(s.replicas) >= stay,
                        "{}: a zone loss keeps {stay}: {p:?}",
                        s.name
                    );
                }
            }
        }
        for p in &without_runs[s.name] {
            assert_eq!(p.pending, 0, "{}: the default scheduler places everything too: {p:?}", s.name);
        }
    }
    // The difference: the default scheduler breaks the budget in the magnet scenario.
    let broken =
        without_runs["magnet"].iter().filter(|p| p.after_worst_node_loss(8) < must_stay(8, 70)).count();
    assert!(broken > 0, "the default scheduler kept the budget in every magnet run: nothing to show");
    // A Deployment without a WPA lands as the default scheduler places it.
    let shape = |p: &Placement| p.per_node.values().copied().collect::<Vec<_>>();
    let defaults: Vec<Vec<i32>> = without_runs["plain"].iter().map(shape).collect();
    for p in &with_runs["plain"] {
        assert!(
            defaults.contains(&shape(p)),
            "plain: {p:?} is not a placement of the default scheduler: {defaults:?}"
        );
    }
    // When the budget cannot be kept, the replicas are spread as evenly as the nodes allow (8 on 3 nodes).
    for p in &with_runs["full"] {
        assert!(p.per_node.values().all(|&n| n <= 3), "full: water-filled: {p:?}");
    }
    let (_, metrics) = support::http_get(serve.health_port, "/metrics").expect("metrics");
    eprintln!(
        "extender decisions: {}",
        metrics
            .lines()
            .filter(|l| l.starts_with("wpa_scheduler_extender_requests_total"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    assert!(
        counter(&metrics, "wpa_scheduler_extender_requests_total{verb=\"filter\",mode=\"burst\"}") > 0.0,
        "bursts were seen"
    );
    assert!(
        counter(&metrics, "wpa_scheduler_extender_requests_total{verb=\"prioritize\"") > 0.0,
        "prioritize was called"
    );
    assert!(
        counter(&metrics, "wpa_scheduler_extender_requests_total{verb=\"filter\",mode=\"not_governed\"}")
            > 0.0,
        "the plain Deployment was left alone"
    );
    assert!(
        counter(&metrics, "wpa_scheduler_extender_infeasible_total{level=\"node\"}") > 0.0,
        "infeasible budgets are counted"
    );
    let events = with.kubectl(&["get", "events", "-n", "x-full-0", "-o", "jsonpath={.items[*].reason}"]);
    let events = String::from_utf8_lossy(&events.stdout);
    assert!(
        events.contains("FailureBudgetExceeded"),
        "the infeasible budget is reported on the WPA: {events}"
    );

    // (6) wpa serve down: the scheduler skips the extender (ignorable) and places everything.
    serve.kill();
    let p = run(&with, SCENARIOS[0], "x-down").await;
    assert_eq!(p.pending, 0, "fail-open: {p:?}");
}
