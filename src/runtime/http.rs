//! The HTTPS server of the webhook and the plain-HTTP health and metrics server.
//!
//! TLS comes from [`crate::runtime::tls`] (1.2 and 1.3, ALPN `h2` and `http/1.1`); connections are served by
//! hyper-util's auto builder with keep-alive. On shutdown the listener closes, in-flight requests finish, and
//! idle keep-alive connections are closed (the API server otherwise keeps using connections to a terminating
//! pod), with a deadline.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::runtime::{registry::Metrics, tls::CertStore};

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight requests.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })
}

/// Serves `app` over TLS on `listener` until `shutdown` is cancelled, then drains.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app, watcher) = (acceptor.clone(), app.clone(), graceful.watcher());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("webhook server drained"),
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("webhook server drain timed out"),
    }
}

/// What `/readyz` reports.
#[derive(Clone, Default)]
pub(crate) struct Readiness {
    /// Set when the serving certificate is loaded (when the webhook runs).
    pub(crate) tls: Option<Arc<CertStore>>,
    /// Cleared until the caches the process needs have synced.
    pub(crate) caches_synced: Arc<AtomicBool>,
    /// Set when shutdown starts, so load balancers stop sending traffic first.
    pub(crate) stopping: Arc<AtomicBool>,
}

impl Readiness {
    pub(crate) fn problems(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.tls.as_ref().is_some_and(|t| !t.is_loaded()) {
            out.push("the serving certificate is not loaded");
        }
        if !self.caches_synced.load(Ordering::Acquire) {
            out.push("the caches have not synced");
        }
        if self.stopping.load(Ordering::Acquire) {
            out.push("shutting down");
        }
        out
    }
}

#[derive(Clone)]
struct HealthState {
    readiness: Readiness,
    metrics: Arc<Metrics>,
}

/// `/healthz`, `/readyz` and `/metrics`.
pub(crate) fn health_router(readiness: Readiness, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(s): State<HealthState>| async move {
                let problems = s.readiness.problems();
                if problems.is_empty() {
                    (StatusCode::OK, "ok\n".to_string())
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", problems.join("; ")))
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<HealthState>| async move {
                let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
                let metrics = s.metrics.clone();
                tokio::task::spawn_blocking(move || {
                    let mut w = crate::runtime::registry::ChunkWriter::new(tx);
                    // An error means the client went away: nothing to report.
                    let _ = metrics.encode_to(&mut w).and_then(|()| w.finish());
                });
                let body = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), rx))
                });
                (
                    [("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    axum::body::Body::from_stream(body),
                )
                    .into_response()
            }),
        )
        .with_state(HealthState { readiness, metrics })
}

/// Serves the health router over plain HTTP until `shutdown` is cancelled.
pub(crate) async fn serve_health(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(ServerError::Serve)
}
