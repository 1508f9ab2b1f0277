//! containerd for the node: CRI with runc (cgroupfs), overlayfs, Debian's CNI plugins on the node's bridge,
//! and a registry configuration under which no image is ever pulled.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::host::{BRIDGE, RUN_DIR, STATE_DIR};
use crate::process::{Component, run};

/// Where Debian's containernetworking-plugins puts bridge, host-local, loopback and portmap.
const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// Every registry is mapped here: a closed loopback port, so a missing image fails at once instead of
/// being fetched from the internet.
const NO_REGISTRY: &str = "http://127.0.0.1:1";
const NAMESPACE: &str = "k8s.io";

pub(crate) fn socket() -> PathBuf {
    Path::new(RUN_DIR).join("containerd/containerd.sock")
}

/// Writes containerd's configuration, the registry hosts file and the CNI network; returns the config.
pub(crate) fn write_config(pod_cidr: &str, gateway: &str, sandbox_image: &str) -> Result<PathBuf> {
    let root = Path::new(STATE_DIR);
    let certs = root.join("containerd/certs.d/_default");
    let net_d = root.join("cni/net.d");
    for dir in [&certs, &net_d] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let config = root.join("containerd/config.toml");
    let text = format!(
        r#"version = 2
root = "{root}/containerd/root"
state = "{run}/containerd"
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # Root here may lack CAP_SYS_RESOURCE, and then runc cannot give a sandbox the oom_score_adj -998 that
  # the CRI asks for ("can't get final child's PID from pipe: EOF"): clamp to containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{net_d}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs_d}"
"#,
        root = root.display(),
        run = RUN_DIR,
        socket = socket().display(),
        net_d = net_d.display(),
        certs_d = root.join("containerd/certs.d").display(),
    );
    std::fs::write(&config, text).context("writing containerd's configuration")?;
    // containerd 1.6 refuses a hosts.toml without a [host] table ("invalid `host` tree") and then pulls
    // from the real registry: the table is what makes the mapping hold.
    std::fs::write(
        certs.join("hosts.toml"),
        format!(
            "server = \"{NO_REGISTRY}\"\n[host.\"{NO_REGISTRY}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ),
    )
    .context("writing the registry hosts file")?;
    let network = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "wpa-node",
        "plugins": [
            {
                "type": "bridge", "bridge": BRIDGE, "isGateway": true, "ipMasq": false, "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr, "gateway": gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": root.join("cni/ipam"),
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    std::fs::write(net_d.join("10-wpa-node.conflist"), serde_json::to_vec_pretty(&network)?)
        .context("writing the CNI network")?;
    Ok(config)
}

/// Starts containerd and waits until it answers.
pub(crate) fn start(config: &Path, log: PathBuf) -> Result<Component> {
    let mut component = Component::spawn(
        "containerd",
        Path::new("containerd"),
        vec![OsString::from("--config"), config.into()],
        log,
    )?;
    let begin = Instant::now();
    while ctr(&["version"]).is_err() {
        if let Some(status) = component.exited() {
            bail!("containerd exited ({status}):\n{}", component.log_tail(30));
        }
        if begin.elapsed() > Duration::from_secs(30) {
            bail!("containerd did not answer within 30 s:\n{}", component.log_tail(30));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(component)
}

/// `ctr` against the node's containerd, in the CRI's namespace.
pub(crate) fn ctr(args: &[&str]) -> Result<String> {
    let socket = socket().display().to_string();
    let mut all = vec!["--address", &socket, "--namespace", NAMESPACE];
    all.extend(args);
    run("ctr", &all)
}

/// The host pid of a running container's main process (`ctr tasks ls`: TASK PID STATUS).
pub(crate) fn task_pid(container_id: &str) -> Result<u32> {
    let tasks = ctr(&["tasks", "ls"])?;
    tasks
        .lines()
        .skip(1)
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(container_id)).then(|| words.next()?.parse().ok())?
        })
        .with_context(|| format!("no running task for container {container_id}:\n{tasks}"))
}
