//! The Kubernetes client of `wpa serve` and `wpa explain`.

use std::path::Path;

use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

use crate::runtime::registry::{KubeRequestLabels, Registry};

/// Why no client could be built. The kubeconfig errors keep kube's text only, as one line: kube's own
/// messages already embed their causes (printing the chain repeated each of them), and a YAML error
/// carries a multi-line source snippet after its first line, which says line and column.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("cannot read the kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("cannot find a Kubernetes configuration: {0}")]
    Infer(String),
    #[error(
        "the kubeconfig {path} has no context {context} (its contexts: {known}); `kubectl config get-contexts` lists them"
    )]
    NoContext { path: String, context: String, known: String },
    #[error("cannot build the Kubernetes client: {0}")]
    Build(#[source] kube::Error),
}

/// A client error in the words of what went wrong on the way to the API server: a refused connection, a
/// certificate not trusted, a name that does not resolve (kube's own text is `ServiceError: client error
/// (Connect)` for all three).
pub(crate) fn describe(e: &kube::Error) -> String {
    let not_trusted = |tls: &rustls::Error| {
        format!(
            "the API server's TLS certificate is not trusted ({tls}): check the certificate-authority-data of the kubeconfig's cluster"
        )
    };
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = next {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return not_trusted(tls);
        }
        next = cause.source();
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return "the connection to the API server was refused: is the server address of the kubeconfig right, and the API server up?".into();
                }
                std::io::ErrorKind::TimedOut => return "the connection to the API server timed out".into(),
                // An io::Error's source() skips the error it wraps (rustls' is wrapped twice).
                _ => next = io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)).or(next),
            }
        }
    }
    error_chain(e)
}

/// An error with its causes, so "connection refused" is not hidden behind "error sending request". A cause
/// that an error's own message already quotes (`cannot read x: No such file`, whose source is that io error)
/// is said once.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

fn first_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().trim().to_string()
}

/// Why neither a kubeconfig nor the in-cluster service account could be used, in kube's words but with
/// the kubeconfig's path written once as a path: kube formats it with `{:?}` inside quotes of its own
/// (`'"/root/.kube/config"'`). Its other parts (the in-cluster reason) are only reachable through its text.
fn inference_failure(e: &kube::config::InferConfigError) -> String {
    let text = first_line(e);
    let read_error = std::error::Error::source(e)
        .and_then(|source| source.downcast_ref::<kube::config::KubeconfigError>());
    match read_error {
        Some(kube::config::KubeconfigError::ReadConfig(_, path)) => {
            text.replace(&format!("'{path:?}'"), &path.display().to_string())
        }
        _ => text,
    }
}

/// A client from `kubeconfig` and its `context` (as kubectl's `--kubeconfig` and `--context`), or the usual
/// inference (KUBECONFIG, ~/.kube/config, the in-cluster service account). Its requests are counted in
/// `wpa_kube_client_requests_total{method}` when `metrics` is given.
pub(crate) async fn kube_client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    metrics: Option<&Registry>,
) -> Result<Client, ClientError> {
    let mut config = match (kubeconfig, context) {
        (None, None) => Config::infer().await.map_err(|e| ClientError::Infer(inference_failure(&e)))?,
        // A context names an entry of a kubeconfig file: no in-cluster fallback.
        (path, context) => {
            let shown = path
                .map_or_else(|| "(KUBECONFIG or ~/.kube/config)".to_string(), |p| p.display().to_string());
            let kubeconfig_error = |e: kube::config::KubeconfigError| ClientError::Kubeconfig {
                path: shown.clone(),
                message: match &e {
                    // kube's text repeats the path, in quotes within quotes.
                    kube::config::KubeconfigError::ReadConfig(io, _) => io.to_string(),
                    e => first_line(e),
                },
            };
            let kc = match path {
                Some(path) => Kubeconfig::read_from(path),
                None => Kubeconfig::read(),
            }
            .map_err(kubeconfig_error)?;
            if let Some(context) = context
                && !kc.contexts.iter().any(|c| c.name == context)
            {
                let known: Vec<&str> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
                return Err(ClientError::NoContext {
                    path: shown,
                    context: context.to_string(),
                    known: if known.is_empty() { "none".into() } else { known.join(", ") },
                });
            }
            let options = KubeConfigOptions { context: context.map(str::to_string), ..Default::default() };
            Config::from_custom_kubeconfig(kc, &options).await.map_err(kubeconfig_error)?
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A client of `url` that trusts only the system roots.
    fn client_of(url: &str) -> Client {
        let config = Config::new(url.parse().expect("a URL"));
        Client::try_from(config).expect("a client")
    }

    async fn failure(url: &str) -> String {
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client_of(url));
        describe(&api.get("default").await.expect_err("no API server there"))
    }

    #[test]
    fn a_cause_the_message_already_quotes_is_said_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot read saved.csv: {0}")]
        struct Quoting(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("cannot restore the states")]
        struct Terse(#[source] std::io::Error);
        let missing = || std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(error_chain(&Quoting(missing())), "cannot read saved.csv: entity not found");
        assert_eq!(error_chain(&Terse(missing())), "cannot restore the states: entity not found");
    }

    #[tokio::test]
    async fn a_refused_connection_is_named_as_such() {
        let port = devcluster::free_loopback_port().expect("a free port");
        // The port was free a moment ago: nothing listens on it.
        let e = failure(&format!("https://127.0.0.1:{port}")).await;
        assert!(e.starts_with("the connection to the API server was refused"), "{e}");
    }

    #[tokio::test]
    async fn an_untrusted_certificate_is_named_as_such() {
        let generated =
            crate::runtime::tls::generate_self_signed(&["127.0.0.1".to_string()]).expect("a cert");
        let store = crate::runtime::tls::CertStore::new();
        store.set(generated.certified_key().expect("a key"));
        let config = crate::runtime::tls::server_config(store).expect("a TLS config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = acceptor.accept(tcp).await;
            }
        });
        let e = failure(&format!("https://127.0.0.1:{port}")).await;
        assert!(e.starts_with("the API server's TLS certificate is not trusted"), "{e}");
    }
}
