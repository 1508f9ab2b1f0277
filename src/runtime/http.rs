//! The HTTPS server of the webhook (and the scheduler extender) and the plain-HTTP health and metrics server.
//!
//! TLS comes from [`crate::runtime::tls`] (1.2 and 1.3, ALPN `h2` and `http/1.1`); connections are served by
//! hyper-util's auto builder with keep-alive. Nothing a client does can hold resources without bound
//! ([`Limits`]): connections are capped (past the cap the kernel's backlog waits, not a file descriptor, so the
//! health port keeps its descriptors), headers must arrive within a deadline, a connection that stays idle is
//! closed, an HTTP/2 connection carries a bounded number of streams, and request bodies in flight share a
//! byte budget (past it: 503 at once). On shutdown the listener closes, in-flight requests finish, and idle
//! keep-alive connections are closed (the API server otherwise keeps using connections to a terminating
//! pod), with a deadline.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::runtime::{registry::Metrics, tls::CertStore};

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight requests (after `--shutdown-delay`: together within the pod's
/// default 30 s grace period).
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Streams one HTTP/2 connection may have open: enough for the API server's concurrency per connection.
const H2_MAX_STREAMS: u32 = 32;
/// The budget is counted in KiB (a semaphore counts in u32).
const KIB: usize = 1024;
/// What a body without a Content-Length reserves (and may not exceed): the largest AdmissionReview.
const CHUNKED_BODY_RESERVE: usize = 3 * 1024 * 1024;

/// What one client may hold on the HTTPS port.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Requests answered at once; more get 503 at once.
    pub max_requests: usize,
    /// Bytes of request bodies in flight (by Content-Length); past it: 503 at once.
    pub max_body_bytes: usize,
    /// The largest body of one request; past it: 413 at once.
    pub max_request_body: usize,
    /// A request's headers must arrive within this.
    pub header_read_timeout: Duration,
    /// A connection with no bytes in either direction for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    /// `wpa serve`'s defaults: far above what an API server and a scheduler send, far below what fits in
    /// the Deployment's 256 MiB (bodies: 32 MiB in flight at most).
    fn default() -> Self {
        Limits {
            max_connections: 512,
            max_requests: 64,
            max_body_bytes: 32 * 1024 * 1024,
            max_request_body: 16 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl Limits {
    /// Keeps the connection cap below the open-files limit, leaving room for the health port, the watches
    /// and the reconciler's client.
    pub(crate) fn fitted_to_open_files(mut self, open_files: u64) -> Limits {
        let room = usize::try_from(open_files.saturating_sub(256)).unwrap_or(usize::MAX).max(16);
        if self.max_connections > room {
            tracing::warn!(
                max_connections = self.max_connections,
                open_files,
                capped = room,
                "the connection cap is lowered to fit the open-files limit"
            );
            self.max_connections = room;
        }
        self
    }
}

/// The budget of requests and body bytes in flight, shared by every route of the HTTPS port.
#[derive(Clone)]
pub(crate) struct Budget {
    requests: Arc<Semaphore>,
    body_kib: Arc<Semaphore>,
    limits: Limits,
}

impl Budget {
    pub(crate) fn new(limits: Limits) -> Budget {
        let kib = u32::try_from(limits.max_body_bytes.div_ceil(KIB)).unwrap_or(u32::MAX) as usize;
        Budget {
            requests: Arc::new(Semaphore::new(limits.max_requests.max(1))),
            body_kib: Arc::new(Semaphore::new(kib.max(1))),
            limits,
        }
    }
}

fn refused(status: StatusCode, message: String) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": message }).to_string(),
    )
        .into_response()
}

/// The middleware that enforces a [`Budget`]: admission first, before a byte of the body is read.
pub(crate) async fn within_budget(State(budget): State<Budget>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared
        && n > budget.limits.max_request_body
    {
        return refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {} bytes", budget.limits.max_request_body),
        );
    }
    let Ok(_request) = budget.requests.clone().try_acquire_owned() else {
        return refused(StatusCode::SERVICE_UNAVAILABLE, "too many requests in flight; retry".into());
    };
    let reserve = declared.unwrap_or(CHUNKED_BODY_RESERVE.min(budget.limits.max_request_body));
    let kib = u32::try_from(reserve.div_ceil(KIB).max(1)).unwrap_or(u32::MAX);
    let Ok(_bytes) = budget.body_kib.clone().try_acquire_many_owned(kib) else {
        return refused(StatusCode::SERVICE_UNAVAILABLE, "too many request bytes in flight; retry".into());
    };
    let request = if declared.is_none() {
        // A body that did not say its length may not outgrow what it reserved.
        let (parts, body) = request.into_parts();
        Request::from_parts(parts, axum::body::Body::new(http_body_util::Limited::new(body, reserve)))
    } else {
        request
    };
    next.run(request).await
}

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

/// Serves `app` over TLS on `listener` within `limits` until `shutdown` is cancelled, then drains.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let app = app.layer(axum::middleware::from_fn_with_state(Budget::new(limits), within_budget));
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        // A connection slot first: past the cap, new connections wait in the kernel's queue.
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = connections.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
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
            let _slot = slot;
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
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
            builder.http2().timer(TokioTimer::new()).max_concurrent_streams(H2_MAX_STREAMS);
            let activity = Activity::default();
            let io = TokioIo::new(Watched { inner: stream, activity: activity.clone() });
            let conn = watcher.watch(builder.serve_connection(io, TowerToHyperService::new(app)));
            tokio::select! {
                result = conn => if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                },
                () = activity.idle_for(limits.idle_timeout) => {
                    tracing::debug!(%peer, "idle connection closed");
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("webhook server drained"),
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("webhook server drain timed out"),
    }
}

/// When a connection last moved a byte.
#[derive(Clone, Default)]
struct Activity(Arc<std::sync::atomic::AtomicU64>);

impl Activity {
    fn now_ms() -> u64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        u64::try_from(START.get_or_init(std::time::Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.0.store(Self::now_ms(), Ordering::Relaxed);
    }

    /// Resolves once no byte moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        self.touch();
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        loop {
            let idle = Self::now_ms().saturating_sub(self.0.load(Ordering::Relaxed));
            if idle >= limit_ms {
                return;
            }
            tokio::time::sleep(Duration::from_millis(limit_ms - idle)).await;
        }
    }
}

/// A stream that records its activity.
struct Watched<S> {
    inner: S,
    activity: Activity,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        poll
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
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
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<bytes::Bytes>();
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

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::{family::Family, gauge::Gauge};

    type Labels = Vec<(String, String)>;

    #[tokio::test]
    async fn a_scrape_not_read_yet_does_not_hold_the_metrics_locks() {
        let metrics = Arc::new(Metrics::new());
        let family = Family::<Labels, Gauge>::default();
        metrics.with_registry(|r| r.register("test_series", "Series", family.clone()));
        // Several chunks' worth of exposition.
        for i in 0..20_000 {
            family.get_or_create(&vec![("wpa".to_string(), format!("w{i}"))]).set(1);
        }
        let app = health_router(Readiness::default(), metrics.clone());
        let request = Request::get("/metrics").body(axum::body::Body::empty()).expect("a request");
        let response = tower::ServiceExt::oneshot(app, request).await.expect("an answer");
        assert_eq!(response.status(), StatusCode::OK);
        // The body is not read yet: a new series (a write lock on its family) must not wait for the reader.
        let f = family.clone();
        let created = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::task::spawn_blocking(move || {
                // Time for the encoder to write more than a reader-paced channel would have taken.
                std::thread::sleep(Duration::from_millis(300));
                f.get_or_create(&vec![("wpa".to_string(), "new".to_string())]).set(2);
            }),
        )
        .await;
        assert!(created.is_ok(), "creating a series waited for the scrape's reader");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("the body");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("test_series{wpa=\"w19999\"} 1"), "every series is in the scrape");
        assert!(text.ends_with("# EOF\n"), "the exposition is complete");
    }
}
