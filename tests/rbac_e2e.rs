//! `webhook-config/rbac.yaml` (plus `rbac-self-signed.yaml` for `--inject-ca`) grants what `wpa serve` calls: the webhook and the reconciler run with the
//! ServiceAccount's token alone, admit a WPA, scale its target, write status and events, and hold the Lease,
//! without one request refused.

mod support;

use std::time::Duration;

use support::{ScalingCluster, StartWpa, WpaServe, webhook_configurations, wpa_yaml};

fn deployment(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: a, image: registry.invalid/a}}]}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wpa_serve_works_with_exactly_the_shipped_rbac() {
    let c = ScalingCluster::start().await;
    let rbac =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/webhook-config/rbac.yaml")).unwrap();
    c.cluster.kubectl_apply(&rbac).expect("apply rbac.yaml");
    // This test runs the self-signed mode, whose `--inject-ca` needs the one extra grant.
    let inject =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/webhook-config/rbac-self-signed.yaml"))
            .unwrap();
    c.cluster.kubectl_apply(&inject).expect("apply rbac-self-signed.yaml");

    let token = support::service_account_token(&c.cluster, "wpa-system", "wpa")
        .await
        .expect("the ServiceAccount's token");
    let kubeconfig = support::token_kubeconfig(&c.cluster, "wpa-sa.kubeconfig", &token, "wpa-system");

    // The webhook configurations exist first, without a CA: `--inject-ca` fills it in.
    let port = devcluster::free_loopback_port().expect("a free loopback port");
    c.cluster.kubectl_apply(&webhook_configurations(port, None).unwrap()).expect("webhook configurations");
    let kc = kubeconfig.to_string_lossy().to_string();
    let serve = WpaServe::start(
        &c.cluster,
        "sa",
        Some(port),
        &[
            &["--kubeconfig", &kc, "--self-signed", "--inject-ca", "--sync-period", "1s"][..],
            &support::FAST_LEASE,
        ]
        .concat(),
    )
    .await
    .expect("wpa serve starts with the ServiceAccount's permissions");

    c.kubelet().serve("shop");
    c.cluster.create_namespace("shop", &[]).await.unwrap();
    c.cluster.kubectl_apply(&deployment("shop", "web")).expect("the Deployment is admitted");
    c.metrics.set("qps", 300.0);
    let wpa = wpa_yaml("shop", "web", "web", "qps", "100", "50", "  upscaleForbiddenWindowSeconds: 1\n");
    let out = c.cluster.kubectl_apply(&wpa).expect("the WPA is admitted through the webhook");
    assert!(out.contains("created"), "{out}");
    // Defaulted by the mutating webhook.
    let stored = c.cluster.kubectl(&["get", "wpa", "-n", "shop", "web", "-o", "jsonpath={.spec.tolerance}"]);
    assert_eq!(String::from_utf8_lossy(&stored.stdout), "100m");
    // ceil(1 × 300 / 100) = 3, limited to +1, then +1 again.
    c.wait_scale("shop", "web", 3, Duration::from_secs(60))
        .await
        .expect("the reconciler scales with its own permissions");
    let lease = c.cluster.kubectl(&[
        "get",
        "lease",
        "-n",
        "wpa-system",
        "watermarkpodautoscaler-lock",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert!(!lease.stdout.is_empty(), "the Lease is held");
    let events = c.cluster.kubectl(&["get", "events", "-n", "shop", "-o", "jsonpath={.items[*].reason}"]);
    assert!(String::from_utf8_lossy(&events.stdout).contains("Scaling"), "events are written");
    let log = serve.log();
    for refused in ["forbidden", "Forbidden"] {
        assert!(!log.contains(refused), "a request was refused:\n{log}");
    }
}
