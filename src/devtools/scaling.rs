//! A cluster ready for scaling tests: the whole control plane, a Node, the WPA CRD, a synthetic
//! external-metrics provider reached through the aggregator (an APIService whose Service routes into a
//! network namespace), and a stand-in kubelet that marks the pods of chosen namespaces ready.

use std::{
    collections::BTreeSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::api::{WatermarkPodAutoscaler, WatermarkPodAutoscalerStatus};
use anyhow::{Context, Result};
use devcluster::{SyntheticMetrics, synthetic_metrics::Provider};
use k8s_openapi::api::{apps::v1::Deployment, autoscaling::v1::Scale, core::v1::Pod};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::json;

use devcluster::{LocalCluster, Options};

pub struct ScalingCluster {
    pub cluster: Arc<LocalCluster>,
    pub metrics: SyntheticMetrics,
    kubelet: Arc<Kubelet>,
    _provider: Provider,
}

/// The namespaces whose pods the stand-in kubelet keeps ready.
#[derive(Default)]
pub struct Kubelet {
    namespaces: Mutex<BTreeSet<String>>,
    /// Held through each pass over the namespaces, so [`Kubelet::pause`] can wait out a pass that began
    /// before the namespace left the set.
    pass: tokio::sync::Mutex<()>,
    stop: AtomicBool,
}

impl Kubelet {
    pub fn serve(&self, namespace: &str) {
        self.namespaces.lock().unwrap().insert(namespace.to_string());
    }

    /// Stops marking this namespace's new pods ready (pods already ready stay so). On return no pass of the
    /// kubelet touches the namespace any more: a pass that read the set before is waited out, or it would
    /// mark ready the pods a test is about to make unready.
    pub async fn pause(&self, namespace: &str) {
        self.namespaces.lock().unwrap().remove(namespace);
        drop(self.pass.lock().await);
    }
}

impl Drop for ScalingCluster {
    fn drop(&mut self) {
        self.kubelet.stop.store(true, Ordering::Relaxed);
    }
}

impl ScalingCluster {
    /// The whole control plane. Panics with the reason if it does not start.
    pub async fn start() -> ScalingCluster {
        Self::start_with(Options::full()).await
    }

    /// With `options` (e.g. more kube-controller-manager flags); panics as [`ScalingCluster::start`] does.
    pub async fn start_with(options: Options) -> ScalingCluster {
        match Self::try_start(options).await {
            Ok(c) => c,
            Err(e) => panic!("the scaling test cluster did not start: {e:#}"),
        }
    }

    /// With `options` (e.g. no controller-manager when the caller makes pods itself).
    pub(crate) async fn try_start(options: Options) -> Result<ScalingCluster> {
        let cluster = Arc::new(LocalCluster::try_start_with(options).await?);
        cluster.create_node("node-a", "zone-a", "64", "256Gi", 500).await?;
        cluster.install_crd(crate::api::crd()).await?;
        let provider = Provider::register(&cluster).await?;

        let kubelet = Arc::new(Kubelet::default());
        let (k, c) = (kubelet.clone(), cluster.clone());
        tokio::spawn(async move {
            // Each distinct error once (an API server restart would repeat the same one many times).
            let mut seen = BTreeSet::new();
            while !k.stop.load(Ordering::Relaxed) {
                let pass = k.pass.lock().await;
                let namespaces: Vec<String> = k.namespaces.lock().unwrap().iter().cloned().collect();
                for ns in namespaces {
                    let results = [
                        c.mark_pods_ready(&ns, "").await.map(drop),
                        c.reap_terminating_pods(&ns).await.map(drop),
                    ];
                    for e in results.into_iter().filter_map(Result::err) {
                        let text = format!("{e:#}");
                        if seen.insert(text.clone()) {
                            crate::runtime::output::note!("stand-in kubelet: {text}");
                        }
                    }
                }
                drop(pass);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Ok(ScalingCluster { cluster, metrics: provider.metrics.clone(), kubelet, _provider: provider })
    }

    /// The network namespace the synthetic metrics provider serves in.
    pub fn metrics_netns(&self) -> &str {
        self._provider.netns()
    }

    pub fn kubelet(&self) -> &Kubelet {
        &self.kubelet
    }

    /// A namespace whose pods the kubelet keeps ready, with a Deployment `name` (label `app=name`) of
    /// `replicas` pods, all ready on return.
    pub async fn deployment(&self, namespace: &str, name: &str, replicas: i32) -> Result<()> {
        if Api::<k8s_openapi::api::core::v1::Namespace>::all(self.cluster.client())
            .get_opt(namespace)
            .await?
            .is_none()
        {
            self.cluster.create_namespace(namespace, &[]).await?;
        }
        self.kubelet.serve(namespace);
        let d: Deployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": name, "namespace": namespace },
            "spec": {
                "replicas": replicas,
                "selector": { "matchLabels": { "app": name } },
                "template": {
                    "metadata": { "labels": { "app": name } },
                    "spec": { "containers": [{ "name": "app", "image": "registry.invalid/app:1" }] }
                }
            }
        }))?;
        self.cluster.create_namespaced(namespace, &d).await?;
        self.wait_ready_pods(namespace, name, replicas as usize, Duration::from_secs(60)).await
    }

    /// Waits until `count` pods of Deployment `name` are ready.
    pub async fn wait_ready_pods(
        &self,
        namespace: &str,
        name: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<()> {
        devcluster::wait_ready_pods(&self.cluster.client(), namespace, &format!("app={name}"), count, timeout)
            .await
            .map_err(anyhow::Error::msg)
    }

    /// Applies a WPA (YAML or JSON text) through the API.
    pub async fn apply_wpa(&self, text: &str) -> Result<WatermarkPodAutoscaler> {
        let wpa: WatermarkPodAutoscaler = serde_yaml_ng::from_str(text).context("parsing the WPA")?;
        let ns = wpa.namespace().unwrap_or_else(|| "default".into());
        let api: Api<WatermarkPodAutoscaler> = Api::namespaced(self.cluster.client(), &ns);
        Ok(api.patch(&wpa.name_any(), &PatchParams::apply("wpa-test").force(), &Patch::Apply(&wpa)).await?)
    }

    /// (spec.replicas, status.replicas) of a Deployment's `/scale`.
    pub async fn scale(&self, namespace: &str, name: &str) -> Result<(i32, i32)> {
        let api: Api<Deployment> = Api::namespaced(self.cluster.client(), namespace);
        let s: Scale = api.get_scale(name).await?;
        Ok((s.spec.and_then(|s| s.replicas).unwrap_or(0), s.status.map_or(0, |s| s.replicas)))
    }

    /// Sets a Deployment's replicas as a user's `kubectl scale` does.
    pub async fn set_scale(&self, namespace: &str, name: &str, replicas: i32) -> Result<()> {
        let api: Api<Deployment> = Api::namespaced(self.cluster.client(), namespace);
        api.patch_scale(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await?;
        Ok(())
    }

    pub async fn wpa_status(&self, namespace: &str, name: &str) -> Result<WatermarkPodAutoscalerStatus> {
        let api: Api<WatermarkPodAutoscaler> = Api::namespaced(self.cluster.client(), namespace);
        Ok(api.get(name).await?.status.unwrap_or_default())
    }

    /// Waits until the Deployment's spec replicas equal `want`; on timeout the error shows the WPAs of the
    /// namespace (their conditions say why).
    pub async fn wait_scale(&self, namespace: &str, name: &str, want: i32, timeout: Duration) -> Result<()> {
        devcluster::wait_for(timeout, || async move {
            match self.scale(namespace, name).await {
                Ok((spec, _)) if spec == want => Ok(()),
                Ok((spec, _)) => Err(format!("spec.replicas is {spec}, want {want}")),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
        .map_err(|e| {
            let out = self.cluster.kubectl(&["get", "wpa,pods", "-n", namespace, "-o", "yaml"]);
            anyhow::anyhow!("{e}\n{}", String::from_utf8_lossy(&out.stdout))
        })
    }

    /// Waits until a condition of the WPA has `status`/`reason`, returning its message.
    pub async fn wait_condition(
        &self,
        namespace: &str,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
        timeout: Duration,
    ) -> Result<String> {
        devcluster::wait_for(timeout, || async move {
            let st = self.wpa_status(namespace, name).await.map_err(|e| e.to_string())?;
            let c = st.conditions.iter().find(|c| c.type_ == type_);
            match c {
                Some(c) if c.status == status && c.reason.as_deref() == Some(reason) => {
                    Ok(c.message.clone().unwrap_or_default())
                }
                other => Err(format!("{type_} is {other:?}")),
            }
        })
        .await
        .map_err(anyhow::Error::msg)
    }

    /// Sets the Ready condition of `count` of the Deployment's pods to False (a failing readiness probe).
    pub async fn make_pods_unready(&self, namespace: &str, name: &str, count: usize) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.cluster.client(), namespace);
        let pods = api.list(&ListParams::default().labels(&format!("app={name}"))).await?;
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        for p in pods.iter().take(count) {
            let status = json!({"status": {"conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": now, "reason": "ReadinessProbeFailed"},
                {"type": "ContainersReady", "status": "False", "lastTransitionTime": now}
            ]}});
            api.patch_status(&p.name_any(), &PatchParams::default(), &Patch::Strategic(&status)).await?;
        }
        Ok(())
    }
}

/// A WPA on Deployment `target` driven by one External metric, with `extra` lines of spec fields (YAML,
/// indented by two spaces).
pub fn wpa_yaml(
    namespace: &str,
    name: &str,
    target: &str,
    metric: &str,
    high: &str,
    low: &str,
    extra: &str,
) -> String {
    format!(
        r#"apiVersion: datadoghq.com/v1alpha1
kind: WatermarkPodAutoscaler
metadata:
  name: {name}
  namespace: {namespace}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {target}
  minReplicas: 1
  maxReplicas: 10
  metrics:
    - type: External
      external:
        metricName: {metric}
        metricSelector:
          matchLabels:
            app: {target}
        highWatermark: "{high}"
        lowWatermark: "{low}"
{extra}"#
    )
}
