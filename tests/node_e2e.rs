//! Temporary smoke test of the real node.
mod support;

use devcluster::node::{NodeOptions, shared};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_smoke() {
    let node = shared(|| NodeOptions { synthetic_metrics: true, ..Default::default() }).await.expect("node");
    let c = node.cluster();
    let out = c.kubectl(&["create", "deployment", "p", "--image=wpa.invalid/pause:3.4"]);
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let out = c.kubectl(&["rollout", "status", "deployment/p", "--timeout=60s"]);
    eprintln!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let out = c.kubectl(&["get", "pods", "-A", "-o", "wide"]);
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("outbound {:?}", node.check_outbound());
}
