//! `wpa serve --self-signed --inject-ca` keeps one CA for the installation in a Secret: every process (replica,
//! restart) serves a certificate of it, the webhook configurations hold its bundle, it is rotated before it
//! expires with the old CA kept in the bundle, an overwritten bundle is written back, and a missing webhook
//! configuration is waited for instead of ending the process. Host processes against the test control plane;
//! `tests/node_e2e.rs` runs the same through the chart on a real node.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use support::{TestCluster, WpaServe, kubectl_json, kubectl_ok, wait_for, webhook_configurations};

const SECRET: &str = "wpa-webhook-ca";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_wpa"))
}

fn free_port() -> u16 {
    devcluster::free_loopback_port().expect("a free loopback port")
}

fn decode(v: &Value) -> String {
    let raw = base64::engine::general_purpose::STANDARD.decode(v.as_str().expect("base64")).expect("base64");
    String::from_utf8(raw).expect("PEM")
}

/// (tls.crt, ca.crt) of the CA Secret in `default` (the admin kubeconfig's namespace).
fn secret(cluster: &TestCluster) -> (String, String) {
    let s = kubectl_json(cluster, &["-n", "default", "get", "secret", SECRET]);
    (decode(&s["data"]["tls.crt"]), decode(&s["data"]["ca.crt"]))
}

/// The caBundle of every webhook of both configurations.
fn injected(cluster: &TestCluster) -> Vec<String> {
    let mut out = Vec::new();
    for kind in ["validatingwebhookconfiguration", "mutatingwebhookconfiguration"] {
        let config = kubectl_json(cluster, &["get", kind, "wpa"]);
        for hook in config["webhooks"].as_array().expect("webhooks") {
            let bundle = &hook["clientConfig"]["caBundle"];
            out.push(if bundle.is_string() { decode(bundle) } else { String::new() });
        }
    }
    out
}

/// A control plane with the CRD (the webhook's caches need it to be ready).
async fn cluster() -> TestCluster {
    let cluster = TestCluster::start().await;
    cluster.install_crd(wpa::api::crd()).await.expect("the CRD");
    cluster
}

async fn cluster_with_configurations() -> (TestCluster, u16) {
    let cluster = cluster().await;
    let port = free_port();
    cluster
        .kubectl_apply(&webhook_configurations(port, None).expect("configurations"))
        .expect("configurations");
    (cluster, port)
}

async fn serve(cluster: &TestCluster, name: &str, port: u16, extra: &[&str]) -> WpaServe {
    let args =
        [&["--self-signed", "--tls-san", "127.0.0.1", "--inject-ca", "--no-reconciler"][..], extra].concat();
    WpaServe::launch_binary(binary(), cluster, name, Some(port), &args)
        .expect("wpa serve")
        .wait_ready(name)
        .await
        .expect("ready")
}

/// A TLS handshake with 127.0.0.1:`port` that trusts only `ca_pem`.
async fn handshake(port: u16, ca_pem: &str) -> anyhow::Result<()> {
    support::tls_handshake(SocketAddr::from(([127, 0, 0, 1], port)), "127.0.0.1", ca_pem).await
}

/// A CA valid from `days_ago` days ago for `days_left` more days (PEM certificate, PEM key).
fn ca_valid(days_ago: i64, days_left: i64) -> (String, String) {
    let now = time::OffsetDateTime::now_utc();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, "an older wpa webhook CA");
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    params.not_before = now - time::Duration::days(days_ago);
    params.not_after = now + time::Duration::days(days_left);
    let key = rcgen::KeyPair::generate().expect("a key");
    (params.self_signed(&key).expect("a CA").pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_and_restarts_serve_certificates_of_one_ca() {
    let (cluster, port) = cluster_with_configurations().await;
    let first = serve(&cluster, "first", port, &[]).await;
    let (ca, bundle) = secret(&cluster);
    assert_eq!(ca.trim(), bundle.trim(), "a new CA's bundle is the CA");
    let second_port = free_port();
    let second = serve(&cluster, "second", second_port, &[]).await;
    assert_eq!(secret(&cluster), (ca.clone(), bundle.clone()), "the second replica read the same CA");
    assert!(injected(&cluster).iter().all(|b| *b == bundle), "the configurations hold the Secret's bundle");
    for (name, port) in [("first", port), ("second", second_port)] {
        handshake(port, &bundle).await.unwrap_or_else(|e| panic!("{name} is trusted by the bundle: {e:#}"));
    }
    drop(first);
    drop(second);
    let again = serve(&cluster, "restarted", port, &[]).await;
    assert_eq!(secret(&cluster), (ca, bundle.clone()), "a restart keeps the CA");
    handshake(port, &bundle).await.expect("the restarted process is trusted by the same bundle");
    assert!(again.log().contains("serving certificate issued by the installation's CA"), "{}", again.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_with_a_third_of_its_life_left_is_rotated_and_the_bundle_keeps_the_old_one() {
    let (cluster, port) = cluster_with_configurations().await;
    // Two days old with one left: less than a third of its lifetime remains.
    let (old_ca, old_key) = ca_valid(2, 1);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let secret_yaml = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": SECRET, "namespace": "default"},
        "data": {"tls.crt": b64(&old_ca), "tls.key": b64(&old_key), "ca.crt": b64(&old_ca)}
    });
    cluster.kubectl_apply(&secret_yaml.to_string()).expect("the old CA's Secret");
    let serve = serve(&cluster, "rotating", port, &[]).await;
    let (ca, bundle) = secret(&cluster);
    assert_ne!(ca.trim(), old_ca.trim(), "rotated:\n{}", serve.log());
    assert_eq!(
        bundle,
        format!("{}\n{}\n", ca.trim(), old_ca.trim()),
        "the bundle holds the new CA, then the old"
    );
    assert!(injected(&cluster).iter().all(|b| *b == bundle), "both CAs are trusted during the rotation");
    handshake(port, &ca).await.expect("the served certificate is the new CA's");
    assert!(handshake(port, &old_ca).await.is_err(), "and not the old CA's");
    assert!(serve.log().contains("installation CA rotated"), "{}", serve.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwritten_ca_bundle_is_written_back() {
    let (cluster, port) = cluster_with_configurations().await;
    let _serve = serve(&cluster, "keeper", port, &["--inject-ca-interval", "1s"]).await;
    let (_, bundle) = secret(&cluster);
    let (other, _) = ca_valid(0, 30);
    let other = base64::engine::general_purpose::STANDARD.encode(other);
    kubectl_ok(
        &cluster,
        &[
            "patch",
            "validatingwebhookconfiguration",
            "wpa",
            "--type=json",
            "-p",
            &format!(
                r#"[{{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": "{other}"}}]"#
            ),
        ],
    );
    wait_for(Duration::from_secs(15), || async {
        let now = injected(&cluster);
        if now.iter().all(|b| *b == bundle) { Ok(()) } else { Err("still overwritten".to_string()) }
    })
    .await
    .expect("the bundle is written back");
}

/// Failed before: the process exited ("cannot inject the CA bundle ... not found").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inject_ca_waits_unready_for_missing_webhook_configurations_and_serves_once_they_exist() {
    let cluster = cluster().await;
    let port = free_port();
    let args = ["--self-signed", "--tls-san", "127.0.0.1", "--inject-ca", "--no-reconciler"];
    let mut serve =
        WpaServe::launch_binary(binary(), &cluster, "waiting", Some(port), &args).expect("wpa serve");
    let log = wait_for(Duration::from_secs(20), || async {
        let log = serve.log();
        if log.contains("ValidatingWebhookConfiguration wpa does not exist") { Ok(log) } else { Err(log) }
    })
    .await
    .expect("the log says what it waits for");
    assert!(log.contains("create it, or set --webhook-config-name"), "and how to fix it:\n{log}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!serve.exited(), "still running:\n{}", serve.log());
    let (code, body) = serve.health("/readyz").expect("/readyz");
    assert_eq!(code, 503, "unready until the bundle is injected: {body}");
    cluster
        .kubectl_apply(&webhook_configurations(port, None).expect("configurations"))
        .expect("configurations");
    let serve = serve.wait_ready("waiting").await.expect("ready once the configurations exist");
    let (_, bundle) = secret(&cluster);
    assert!(injected(&cluster).iter().all(|b| *b == bundle), "injected:\n{}", serve.log());
}
