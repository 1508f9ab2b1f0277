//! The kubelet and kube-proxy of the node.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::containerd;
use super::host::STATE_DIR;
use crate::process::Component;

/// Where the kubelet keeps pods' volumes; its device-plugin socket is under it whatever `--root-dir` says.
const ROOT_DIR: &str = "/var/lib/kubelet";

/// Starts the kubelet: cgroupfs, containerd through the CRI, the node's address on the bridge.
pub(crate) fn start_kubelet(
    bin_dir: &Path,
    kubeconfig: &Path,
    node_name: &str,
    node_ip: Ipv4Addr,
    sandbox_image: &str,
    log: PathBuf,
) -> Result<Component> {
    let dir = Path::new(STATE_DIR);
    // Pods get a resolver that answers nothing: there is no cluster DNS, and the host's resolver is
    // beyond this machine.
    let resolv = dir.join("pod-resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\n").context("writing the pods' resolv.conf")?;
    let config = dir.join("kubelet.yaml");
    std::fs::write(
        &config,
        format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failSwapOn: false
address: {node_ip}
readOnlyPort: 0
healthzPort: 0
# Only the API server calls the kubelet (logs, exec), on the bridge; no client certificates are set up.
authentication: {{anonymous: {{enabled: true}}, webhook: {{enabled: false}}}}
authorization: {{mode: AlwaysAllow}}
# The imported images cannot be pulled again: never collect them, never evict for disk pressure.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%"}}
nodeStatusUpdateFrequency: 4s
resolvConf: {resolv}
"#,
            resolv = resolv.display()
        ),
    )
    .context("writing the kubelet's configuration")?;
    let args: Vec<OsString> = [
        format!("--config={}", config.display()),
        format!("--kubeconfig={}", kubeconfig.display()),
        "--container-runtime=remote".into(),
        format!("--container-runtime-endpoint=unix://{}", containerd::socket().display()),
        format!("--root-dir={ROOT_DIR}"),
        format!("--cert-dir={}", dir.join("kubelet-pki").display()),
        format!("--node-ip={node_ip}"),
        format!("--hostname-override={node_name}"),
        format!("--pod-infra-container-image={sandbox_image}"),
        "--v=2".into(),
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    // The in-tree ECR credential provider of 1.20 asks the EC2 metadata address at start otherwise.
    Component::spawn_with_env(
        "kubelet",
        &bin_dir.join("kubelet"),
        args,
        &[("AWS_EC2_METADATA_DISABLED", "true")],
        log,
    )
}

/// Starts kube-proxy in iptables mode, its health and metrics on free loopback ports (its defaults are
/// fixed ports, and port 0 is refused), leaving the host's conntrack settings alone.
pub(crate) fn start_kube_proxy(
    bin_dir: &Path,
    kubeconfig: &Path,
    node_name: &str,
    node_ip: Ipv4Addr,
    pod_cidr: &str,
    log: PathBuf,
) -> Result<Component> {
    let args: Vec<OsString> = [
        format!("--kubeconfig={}", kubeconfig.display()),
        "--proxy-mode=iptables".into(),
        format!("--hostname-override={node_name}"),
        format!("--cluster-cidr={pod_cidr}"),
        format!("--bind-address={node_ip}"),
        format!("--healthz-bind-address=127.0.0.1:{}", crate::ports::free_loopback_port()?),
        format!("--metrics-bind-address=127.0.0.1:{}", crate::ports::free_loopback_port()?),
        "--conntrack-max-per-core=0".into(),
        "--conntrack-min=0".into(),
        "--conntrack-tcp-timeout-established=0".into(),
        "--conntrack-tcp-timeout-close-wait=0".into(),
        "--v=2".into(),
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    Component::spawn("kube-proxy", &bin_dir.join("kube-proxy"), args, log)
}
