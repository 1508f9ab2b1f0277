//! The Kubernetes client of `wpa serve` and `wpa explain`.

use std::path::Path;

use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

use crate::runtime::registry::{KubeRequestLabels, Metrics};

/// Why no client could be built. The kubeconfig errors keep kube's text only, as one line: kube's own
/// messages already embed their causes (printing the chain repeated each of them), and a YAML error
/// carries a multi-line source snippet after its first line, which says line and column.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("cannot read the kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("cannot find a Kubernetes configuration: {0}")]
    Infer(String),
    #[error("cannot build the Kubernetes client: {0}")]
    Build(#[source] kube::Error),
}

fn first_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().trim().to_string()
}

/// A client from `kubeconfig`, or the usual inference (KUBECONFIG, ~/.kube/config, the in-cluster service
/// account). Its requests are counted in `wpa_kube_client_requests_total{method}` when `metrics` is given.
pub(crate) async fn kube_client(
    kubeconfig: Option<&Path>,
    metrics: Option<&Metrics>,
) -> Result<Client, ClientError> {
    let mut config = match kubeconfig {
        Some(path) => {
            let kubeconfig_error = |e: kube::config::KubeconfigError| ClientError::Kubeconfig {
                path: path.display().to_string(),
                message: first_line(&e),
            };
            let kc = Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(kubeconfig_error)?
        }
        None => Config::infer().await.map_err(|e| ClientError::Infer(first_line(&e)))?,
    };
    // kube retries 429/503/504 up to 15 times with backoff, inside one call: a metrics provider that is
    // down would hold a reconcile pass for minutes. Passes are retried by the reconciler instead, and
    // watches have their own backoff.
    config.default_retry = false;
    let builder = kube::client::ClientBuilder::try_from(config).map_err(ClientError::Build)?;
    let counter = metrics.map(|m| m.kube_requests.clone());
    let layer = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        if let Some(c) = &counter {
            c.get_or_create(&KubeRequestLabels::of(req.method())).inc();
        }
        req
    });
    Ok(builder.with_layer(&layer).build())
}
