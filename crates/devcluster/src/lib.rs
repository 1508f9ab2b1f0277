//! A private Kubernetes control plane on this machine, for wpa's tests, `wpa demo` and `wpa
//! bench reconciler`: etcd and kube-apiserver (plus kube-controller-manager and kube-scheduler on request) on free
//! loopback ports in a temporary directory, torn down on drop. Helpers act as the kubelet (Nodes, ready
//! pods), install CRDs, and route Services into network namespaces so the API server can reach servers we
//! start (aggregated APIs, webhooks by Service). [`node`] adds a real node (containerd, kubelet, kube-proxy)
//! where pods run for real. The binaries come from `scripts/k8s-test-env.sh`
//! (`WPA_K8S_BIN_DIR` or `KUBEBUILDER_ASSETS` to use your own); docs/control-plane.md has the details.

mod cluster;
pub mod fault_proxy;
pub mod https;
pub mod netns;
pub mod node;
pub mod pki;
pub mod ports;
pub mod process;
pub mod scratch;
pub mod shared;
pub mod synthetic_metrics;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use anyhow::{Context, Result};

pub use cluster::{LocalCluster, Options, find_binaries, is_pod_ready, wait_for};
pub use fault_proxy::{Fault, FaultProxy, Trigger};
pub use https::HttpsServer;
pub use netns::{LoopbackRelay, NetnsHost};
pub use pki::TlsIdentity;
pub use ports::{free_loopback_port, free_loopback_ports};
pub use shared::{Shared, TestNamespace};
pub use synthetic_metrics::SyntheticMetrics;

/// A line on stderr for the people watching a run. A closed stderr (`wpa demo 2>&1 | head`) loses the line
/// and is never a panic: `eprintln!` panics there, and in a `Drop` during a panic that aborts the process
/// before the teardown.
#[macro_export]
macro_rules! log_line {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Waits until exactly `count` pods of `namespace` matching `selector` are Ready and not being deleted;
/// the error says how many were.
pub async fn wait_ready_pods(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
    count: usize,
    timeout: Duration,
) -> Result<(), String> {
    use k8s_openapi::api::core::v1::Pod;
    let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), namespace);
    wait_for(timeout, || async {
        let pods =
            api.list(&kube::api::ListParams::default().labels(selector)).await.map_err(|e| e.to_string())?;
        let ready =
            pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none() && is_pod_ready(p)).count();
        if ready == count { Ok(()) } else { Err(format!("{ready} ready pods {selector}, want {count}")) }
    })
    .await
}

/// A plain HTTP GET on loopback: the status code and the body.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    http_get_at(std::net::SocketAddr::from(([127, 0, 0, 1], port)), path)
}

/// A plain HTTP GET of `http://addr/path`: the status code and the body.
pub fn http_get_at(addr: std::net::SocketAddr, path: &str) -> Result<(u16, String)> {
    http_get_within(addr, path, Duration::from_secs(5))
}

/// [`http_get_at`], waiting up to `timeout` between two reads (a large /metrics on a loaded machine).
pub fn http_get_within(addr: std::net::SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", addr.ip())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let code = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("no status line")?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}
