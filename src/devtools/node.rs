//! `wpa` on a real node ([`devcluster::node`]) as users run it: the image made from a `wpa` binary with the
//! runtime contract of the Dockerfile's final stage, and the chart installed by Helm's library
//! (`tests/helm/chart.py`, as the tests install it). Used by `wpa demo --node` and the real-node tests.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use devcluster::node::{Image, Rootfs, RuntimeConfig};

/// The Dockerfile whose final stage is the image's runtime contract (user, entrypoint, ports).
const DOCKERFILE: &str = include_str!("../../Dockerfile");

/// The repository this binary was built from: the chart and `tests/helm/chart.py` are read from it.
pub(crate) fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `wpa` image named `name`: `binary` at the Dockerfile's entrypoint with the libraries it links, what
/// distroless/cc's nonroot variant gives it (a passwd with `nonroot` 65532, /tmp), and the Dockerfile's
/// runtime contract.
pub fn wpa_image(binary: &Path, name: &str) -> Result<Image> {
    let runtime = RuntimeConfig::from_dockerfile(DOCKERFILE).context("the Dockerfile's final stage")?;
    let entrypoint = runtime.entrypoint.first().cloned().context("the Dockerfile has no ENTRYPOINT")?;
    let mut rootfs = Rootfs::new();
    rootfs
        .executable(&entrypoint, binary)?
        .file(
            "/etc/passwd",
            "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
            0o644,
        )
        .file("/etc/group", "root:x:0:\nnonroot:x:65532:\n", 0o644)
        .dir("/tmp", 0o1777);
    Ok(Image { name: name.into(), rootfs, runtime })
}

/// Why `wpa` cannot run on a real node from here, before anything long starts: the host lacks what the
/// node needs (root, containerd, runc, CNI plugins, iptables, conntrack), there is no checkout of the
/// repository beside this binary (the chart), or no Helm library for Python.
pub(crate) fn node_preflight() -> Result<()> {
    devcluster::node::check_host()?;
    let repo = repository();
    for file in ["charts/wpa/Chart.yaml", "tests/helm/chart.py"] {
        if !repo.join(file).is_file() {
            bail!(
                "{} is missing: --node installs the chart from the repository this binary was built from ({})",
                file,
                repo.display()
            );
        }
    }
    let found = Command::new("python3").args(["-c", "import helm_python"]).output();
    if !found.is_ok_and(|o| o.status.success()) {
        bail!(
            "the Helm library for Python is missing (the chart is installed through it): \
             python3 -m pip install -r {}",
            repo.join("tests/helm/requirements.txt").display()
        );
    }
    Ok(())
}

/// `helm install RELEASE charts/wpa -n NAMESPACE` with `values`, through `tests/helm/chart.py`.
pub(crate) fn install_chart(
    kubeconfig: &Path,
    namespace: &str,
    release: &str,
    values: &serde_json::Value,
) -> Result<()> {
    let repo = repository();
    let mut cmd = Command::new("python3");
    cmd.arg(repo.join("tests/helm/chart.py"))
        .arg("install")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--namespace", namespace, "--release", release, "--values-json", &values.to_string()])
        .current_dir(&repo);
    devcluster::process::without_proxy_settings(&mut cmd);
    let out = cmd.output().context("running tests/helm/chart.py")?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if !out.status.success() || report["ok"] != true {
        bail!(
            "helm install {release} failed: {}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Until a server-side dry-run create of a WPA in `namespace` passes the webhooks: the Service's endpoints
/// are programmed (kube-proxy syncs at most once a second) and the CA is trusted.
pub(crate) async fn wait_admission(client: &kube::Client, namespace: &str, timeout: Duration) -> Result<()> {
    let api: kube::Api<crate::api::WatermarkPodAutoscaler> = kube::Api::namespaced(client.clone(), namespace);
    let wpa =
        serde_yaml_ng::from_str(&super::wpa_yaml(namespace, "probe", "probe", "probe", "100", "50", ""))
            .context("the probe WPA")?;
    let dry_run = kube::api::PostParams { dry_run: true, ..Default::default() };
    devcluster::wait_for(timeout, || async {
        api.create(&dry_run, &wpa).await.map(drop).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| anyhow::anyhow!("the webhooks never admitted a WPA: {e}"))
}
