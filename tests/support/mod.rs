//! Test harness: the local control plane (the `devcluster` crate) and wpa's own layer on it
//! ([`wpa::devtools`]), plus what only tests need.
//!
//! Use from an integration test with `mod support;`. Needs the binaries from
//! `bash scripts/k8s-test-env.sh`; see docs/control-plane.md.

// Every integration test compiles its own copy of this module and uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod helm;
pub mod node;
pub mod prometheus;
pub mod tls;

pub use devcluster::{
    HttpsServer, LocalCluster as TestCluster, NetnsHost, Options, Shared, TestNamespace, TlsIdentity,
    find_binaries, http_get, is_pod_ready, pki, wait_for,
};
pub use wpa::devtools::{ScalingCluster, WpaServe, webhook_configurations, wpa_yaml};

/// What a command printed, and how it ended.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to its end, without the environment's proxy settings (the clusters are on loopback).
pub fn run(mut cmd: std::process::Command) -> Run {
    devcluster::process::without_proxy_settings(&mut cmd);
    let out = cmd.output().expect("run the command");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The commands a clap help text lists under `Commands:` (a command's line starts two spaces in; the
/// wrapped lines of its description further in).
pub fn listed_commands(help: &str) -> Vec<String> {
    let listed = help.split("Commands:\n").nth(1).and_then(|c| c.split("\n\n").next()).unwrap_or_default();
    listed
        .lines()
        .filter_map(|l| l.strip_prefix("  ").filter(|rest| !rest.starts_with(' ')))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// A control plane (etcd and kube-apiserver) with the WPA CRD.
pub async fn cluster_with_crd() -> TestCluster {
    let cluster = TestCluster::start().await;
    cluster.install_crd(wpa::api::crd()).await.expect("the WPA CRD");
    cluster
}

/// The WPA of tests/data/fixtures/web-wpa.yaml: Deployment web in namespace default, External metric qps.
pub const WEB_WPA: &str = include_str!("../data/fixtures/web-wpa.yaml");

/// The peak resident memory of a process, in MiB.
pub fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("VmHWM")
        / 1024
}

/// Lease timings short enough for a test to see a handover (`wpa serve` flags).
pub const FAST_LEASE: [&str; 6] =
    ["--lease-duration", "6s", "--lease-renew-deadline", "4s", "--lease-retry-period", "1s"];

/// `wpa serve` from this build.
pub trait StartWpa: Sized {
    fn start(
        cluster: &TestCluster,
        name: &str,
        webhook_port: Option<u16>,
        args: &[&str],
    ) -> impl Future<Output = anyhow::Result<Self>>;
}

impl StartWpa for WpaServe {
    async fn start(
        cluster: &TestCluster,
        name: &str,
        webhook_port: Option<u16>,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        WpaServe::start_binary(
            std::path::Path::new(env!("CARGO_BIN_EXE_wpa")),
            cluster,
            name,
            webhook_port,
            args,
        )
        .await
    }
}

/// The token of ServiceAccount `namespace/name`, once the token controller has made its Secret (1.20).
pub async fn service_account_token(
    cluster: &TestCluster,
    namespace: &str,
    name: &str,
) -> anyhow::Result<String> {
    use kube::ResourceExt;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(cluster.client(), namespace);
    let prefix = format!("{name}-token-");
    wait_for(std::time::Duration::from_secs(30), || async {
        let list = secrets.list(&Default::default()).await.map_err(|e| e.to_string())?;
        list.items
            .iter()
            .find(|s| s.name_any().starts_with(&prefix))
            .and_then(|s| s.data.as_ref()?.get("token").cloned())
            .map(|t| String::from_utf8_lossy(&t.0).to_string())
            .ok_or_else(|| "no token yet".to_string())
    })
    .await
    .map_err(anyhow::Error::msg)
}

/// Writes a kubeconfig for the cluster with `token` (and `namespace` as the context's) into the cluster's
/// directory; returns its path.
pub fn token_kubeconfig(
    cluster: &TestCluster,
    file: &str,
    token: &str,
    namespace: &str,
) -> std::path::PathBuf {
    use base64::Engine;
    let ca = std::fs::read(cluster.ca_cert_path()).expect("the cluster CA");
    let path = cluster.dir().join(file);
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"{}\", certificate-authority-data: {}}}\nusers:\n- name: u\n  user: {{token: {token}}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u, namespace: {namespace}}}\ncurrent-context: c\n",
            cluster.server_url(),
            base64::engine::general_purpose::STANDARD.encode(ca)
        ),
    )
    .expect("write the kubeconfig");
    path
}

/// A token of ServiceAccount `namespace/name` from the TokenRequest API (one hour), which needs no
/// controller-manager (the 1.20 token controller is what makes the Secrets of [`service_account_token`]).
pub async fn request_service_account_token(
    cluster: &TestCluster,
    namespace: &str,
    name: &str,
) -> anyhow::Result<String> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    let api: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(cluster.client(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec { expiration_seconds: Some(3600), ..Default::default() },
        ..Default::default()
    };
    let answer = api.create_token_request(name, &Default::default(), &request).await?;
    answer
        .status
        .map(|s| s.token)
        .ok_or_else(|| anyhow::anyhow!("no token in the TokenRequest answer for {namespace}/{name}"))
}

/// webhook-config/rbac.yaml: namespace wpa-system, ServiceAccount wpa and its rules.
pub fn shipped_rbac() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/webhook-config/rbac.yaml"))
        .expect("rbac.yaml")
}

/// Applies rbac.yaml without its `watermarkpodautoscalers/status` rule (every status write of ServiceAccount
/// wpa-system/wpa gets 403) and returns a kubeconfig of that ServiceAccount (`file` in the cluster's
/// directory). `kubectl_apply(&shipped_rbac())` gives the right back.
pub async fn kubeconfig_without_status_writes(cluster: &TestCluster, file: &str) -> std::path::PathBuf {
    let full = shipped_rbac();
    let without_status = full.replace(
        "- apiGroups: [\"datadoghq.com\"]\n  resources: [\"watermarkpodautoscalers/status\"]\n  verbs: [\"patch\"]\n",
        "",
    );
    assert_ne!(full, without_status, "rbac.yaml's status rule is where the tests expect it");
    cluster.kubectl_apply(&without_status).expect("apply the RBAC without status");
    let token = service_account_token(cluster, "wpa-system", "wpa").await.expect("a token");
    token_kubeconfig(cluster, file, &token, "wpa-system")
}

/// Registers the shipped webhook configurations, pointed at a port reserved here, then starts `wpa serve
/// --self-signed --tls-san 127.0.0.1 --inject-ca --ca-bundle-out FILE` with `extra` on that port (it writes its
/// CA into them); returns the process and the CA file.
pub async fn start_with_webhook(
    cluster: &TestCluster,
    name: &str,
    extra: &[&str],
) -> anyhow::Result<(WpaServe, std::path::PathBuf)> {
    let port = devcluster::free_loopback_port()?;
    cluster
        .kubectl_apply(&webhook_configurations(port, None)?)
        .map_err(|e| anyhow::anyhow!("register the webhooks: {e}"))?;
    let ca = cluster.dir().join(format!("wpa-{name}-ca.crt"));
    let ca_arg = ca.display().to_string();
    let args =
        [&["--self-signed", "--tls-san", "127.0.0.1", "--inject-ca", "--ca-bundle-out", &ca_arg][..], extra]
            .concat();
    let serve = WpaServe::start(cluster, name, Some(port), &args).await?;
    Ok((serve, ca))
}

/// `kubectl ARGS` that must succeed: its stdout.
pub fn kubectl_ok(cluster: &TestCluster, args: &[&str]) -> String {
    let out = cluster.kubectl(args);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl ARGS -o json`, parsed.
pub fn kubectl_json(cluster: &TestCluster, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&kubectl_ok(cluster, &all)).expect("kubectl -o json")
}

/// A TLS handshake with `addr` for `name` (a DNS name or an IP address) that trusts only `ca_pem`.
pub async fn tls_handshake(addr: std::net::SocketAddr, name: &str, ca_pem: &str) -> anyhow::Result<()> {
    let config = tls::client_config(&[ca_pem]);
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string())?;
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(server_name, stream).await?;
    Ok(())
}
