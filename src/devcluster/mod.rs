//! A private Kubernetes control plane on this machine, for the tests, `wpa demo` and `wpa bench
//! reconciler`: etcd and kube-apiserver (plus kube-controller-manager and kube-scheduler on request) on free
//! loopback ports in a temporary directory, torn down on drop. Helpers act as the kubelet (Nodes, ready
//! pods), install CRDs, and route Services into network namespaces so the API server can reach servers we
//! start (aggregated APIs, webhooks by Service). The binaries come from `scripts/k8s-test-env.sh`
//! (`WPA_K8S_BIN_DIR` or `KUBEBUILDER_ASSETS` to use your own); docs/control-plane.md has the details.

mod cluster;
pub mod https;
pub mod netns;
pub mod pki;
pub mod process;
pub mod scaling;
pub mod serve_process;

pub use cluster::{LocalCluster, Options, find_binaries, is_pod_ready, wait_for};
pub use https::HttpsServer;
pub use netns::NetnsHost;
pub use pki::TlsIdentity;
pub use scaling::{ScalingCluster, wpa_yaml};
pub use serve_process::{WpaServe, http_get, webhook_configurations};
