//! The HTTPS server of the webhook (and the scheduler extender) and the plain-HTTP health and metrics server.
//!
//! TLS comes from [`crate::runtime::tls`] (1.2 and 1.3, ALPN `h2` and `http/1.1`); connections are served by
//! hyper-util's auto builder with keep-alive. Nothing a client does can hold resources without bound
//! ([`Limits`]): connections are capped (past the cap the kernel's backlog waits, not a file descriptor, so the
//! health port keeps its descriptors), headers must arrive within a deadline, a connection that stays idle is
//! closed, an HTTP/2 connection carries a bounded number of streams, and request bodies in flight share a
//! byte budget (past it: 503 at once). Each [`Edge`] (the webhook's routes, the extender's) refuses a body
//! declared over its own limit with 413 before anything is reserved, and a body that makes no progress for
//! [`BODY_STALL`] is answered 408. One peer (an IP address) may hold at most half of the connections, the
//! requests and the body bytes, so that one client cannot deny the port to the API server; every refusal is
//! counted in `wpa_http_refused_total{reason}` and logged (at most once per reason every 10 s).
//!
//! Stopping has two steps ([`Stop`]). When `closing` comes (SIGTERM), the listener still accepts (the
//! endpoints' removal takes a moment to reach kube-proxy), but every client is asked to move off its
//! connection: an HTTP/1 answer says `Connection: close` (the connection ends after it), an HTTP/2
//! connection gets a GOAWAY. A client's keep-alive connection would otherwise stay pinned to this pod
//! (conntrack keeps its NAT) until the pod dies, and a request on it at that instant fails: a pod
//! force-deleted gets SIGKILL 2 s after SIGTERM. An idle HTTP/1 connection is not closed then: a client
//! that writes a request on it at that moment would not retry it (a POST is not replayable), which is why
//! the answer carries the close. When `shutdown` comes, the listener closes, idle connections close, and
//! in-flight requests finish, with a deadline.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::runtime::{registry::Registry, tls::CertStore};

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight requests (after `--shutdown-delay`: together within the pod's
/// default 30 s grace period).
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Streams one HTTP/2 connection may have open: enough for the API server's concurrency per connection.
const H2_MAX_STREAMS: u32 = 32;
/// The budget is counted in KiB (a semaphore counts in u32).
const KIB: usize = 1024;
/// What a body without a Content-Length reserves at most (and may not exceed): the largest AdmissionReview.
const CHUNKED_BODY_RESERVE: usize = 3 * 1024 * 1024;
/// A request body that sends nothing for this long is given up (408), whatever `?timeout=` allows: a client
/// holding a request open without sending holds its share of the budgets.
pub(crate) const BODY_STALL: Duration = Duration::from_secs(5);
/// One peer's share of each budget: half, so that the API server always has the other half.
const PEER_SHARE_DIVISOR: usize = 2;

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

/// A group of routes served on the HTTPS port, and the largest request body they take (refused with 413
/// from its Content-Length, before anything is read or reserved).
pub struct Edge {
    pub router: Router,
    pub max_body: usize,
}

/// Why the HTTPS port refused a request before (or while) reading it: counted, logged, and answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct RefusedLabels {
    pub(crate) reason: &'static str,
}

/// The HTTPS port's own series: refusals by reason, connections open.
pub struct HttpStats {
    refused: Family<RefusedLabels, Counter>,
    connections: Gauge,
    /// When each reason was last logged, and how many refusals since.
    logged: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

/// A refusal is logged at most this often per reason (a client can otherwise flood the log).
const LOG_EVERY: Duration = Duration::from_secs(10);

impl HttpStats {
    /// Registers the series in `metrics`.
    pub fn register(metrics: &Registry) -> Arc<HttpStats> {
        let stats = Arc::new(HttpStats {
            refused: Family::default(),
            connections: Gauge::default(),
            logged: Mutex::default(),
        });
        metrics.with_registry(|r| {
            r.register(
                "wpa_http_refused",
                "Requests and connections the HTTPS port refused to protect its budgets, by reason",
                stats.refused.clone(),
            );
            r.register("wpa_http_connections", "HTTPS connections open", stats.connections.clone());
        });
        stats
    }

    fn refused(&self, reason: &'static str, peer: Option<IpAddr>) {
        self.refused.get_or_create(&RefusedLabels { reason }).inc();
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let entry = logged.entry(reason).or_insert((now - LOG_EVERY, 0));
        entry.1 += 1;
        if now.duration_since(entry.0) >= LOG_EVERY {
            let peer = peer.map(|p| p.to_string()).unwrap_or_default();
            tracing::warn!(reason, %peer, refused_since_last_line = entry.1, "HTTPS request refused to protect the port's budgets");
            *entry = (now, 0);
        }
    }
}

/// What one peer holds, in the units of each budget.
#[derive(Clone, Copy, Debug, Default)]
struct PeerUse {
    connections: usize,
    requests: usize,
    body_kib: usize,
}

/// The budgets of requests, body bytes and connections in flight, shared by every route of the HTTPS port,
/// with each peer's part of them.
#[derive(Clone)]
pub(crate) struct Budget {
    requests: Arc<Semaphore>,
    body_kib: Arc<Semaphore>,
    limits: Limits,
    /// What each peer holds; an entry leaves with the peer's last hold.
    peers: Arc<Mutex<HashMap<IpAddr, PeerUse>>>,
    stats: Arc<HttpStats>,
}

/// The largest part of `total` one peer may hold.
fn peer_share(total: usize) -> usize {
    (total / PEER_SHARE_DIVISOR).max(1)
}

/// A peer's hold on part of the budgets, released when dropped.
struct PeerHold {
    peers: Arc<Mutex<HashMap<IpAddr, PeerUse>>>,
    peer: IpAddr,
    held: PeerUse,
}

impl Drop for PeerHold {
    fn drop(&mut self) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(u) = peers.get_mut(&self.peer) {
            u.connections -= self.held.connections;
            u.requests -= self.held.requests;
            u.body_kib -= self.held.body_kib;
            if u.connections == 0 && u.requests == 0 && u.body_kib == 0 {
                peers.remove(&self.peer);
            }
        }
    }
}

impl Budget {
    pub(crate) fn new(limits: Limits, stats: Arc<HttpStats>) -> Budget {
        let kib = u32::try_from(limits.max_body_bytes.div_ceil(KIB)).unwrap_or(u32::MAX) as usize;
        Budget {
            requests: Arc::new(Semaphore::new(limits.max_requests.max(1))),
            body_kib: Arc::new(Semaphore::new(kib.max(1))),
            limits,
            peers: Arc::default(),
            stats,
        }
    }

    /// Takes `want` of the peer's part of the budgets, unless that would pass its share.
    fn hold(&self, peer: IpAddr, want: PeerUse) -> Result<PeerHold, &'static str> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let u = peers.entry(peer).or_default();
        let kib_total = self.limits.max_body_bytes.div_ceil(KIB);
        if u.connections + want.connections > peer_share(self.limits.max_connections) {
            return Err("peer_connections");
        }
        if u.requests + want.requests > peer_share(self.limits.max_requests) {
            return Err("peer_requests");
        }
        if u.body_kib + want.body_kib > peer_share(kib_total) {
            return Err("peer_bytes");
        }
        u.connections += want.connections;
        u.requests += want.requests;
        u.body_kib += want.body_kib;
        drop(peers);
        Ok(PeerHold { peers: self.peers.clone(), peer, held: want })
    }
}

/// The peer of a request's connection (set by [`serve_tls`] on every request).
#[derive(Clone, Copy, Debug)]
struct Peer(IpAddr);

/// Why a request got no answer from its handler: the HTTP edge's one typed rejection, as a JSON error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Rejection {
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the request body did not arrive within {0:?}")]
    Slow(Duration),
    #[error("the request body made no progress for {0:?}")]
    Stalled(Duration),
    #[error("cannot read the request body: {0}")]
    Unreadable(String),
    #[error("too many requests in flight; retry")]
    Requests,
    #[error("too many request bytes in flight; retry")]
    Bytes,
    #[error("this client holds its share of the port's requests or bytes in flight; retry")]
    PeerShare,
    /// The body was read, but is not what the route takes.
    #[error("{0}")]
    Malformed(String),
}

impl Rejection {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Rejection::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::Slow(_) | Rejection::Stalled(_) => StatusCode::REQUEST_TIMEOUT,
            Rejection::Requests | Rejection::Bytes | Rejection::PeerShare => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::Unreadable(_) | Rejection::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// A bounded label for metrics.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Rejection::TooLarge(_) => "too_large",
            Rejection::Slow(_) => "timeout",
            Rejection::Stalled(_) => "stalled",
            Rejection::Unreadable(_) => "unreadable",
            Rejection::Requests => "requests_busy",
            Rejection::Bytes => "bytes_busy",
            Rejection::PeerShare => "peer_share",
            Rejection::Malformed(_) => "malformed",
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        json_error(self.status(), self.to_string())
    }
}

/// A JSON error answer: `{"error": message}`.
pub(crate) fn json_error(status: StatusCode, message: String) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": message }).to_string(),
    )
        .into_response()
}

/// Reads a whole request body: at most `max` bytes, all within `deadline`, and none of its frames more than
/// [`BODY_STALL`] after the previous one.
pub(crate) async fn read_body(
    body: axum::body::Body,
    max: usize,
    deadline: Duration,
) -> Result<Bytes, Rejection> {
    let body = tower_http::timeout::TimeoutBody::new(BODY_STALL, body);
    match tokio::time::timeout(deadline, Limited::new(body, max).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(Rejection::TooLarge(max)),
        Ok(Err(e)) if e.is::<tower_http::timeout::TimeoutError>() => Err(Rejection::Stalled(BODY_STALL)),
        Ok(Err(e)) => Err(Rejection::Unreadable(e.to_string())),
        Err(_) => Err(Rejection::Slow(deadline)),
    }
}

/// While closing, an HTTP/1 answer ends its connection (`Connection: close`), so that the client opens its
/// next one where the Service sends it now.
async fn close_when_closing(
    State(closing): State<CancellationToken>,
    request: Request,
    next: Next,
) -> Response {
    let http1 = request.version() < http::Version::HTTP_2;
    let mut response = next.run(request).await;
    if http1 && closing.is_cancelled() {
        response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    response
}

/// The middleware that enforces a [`Budget`] for an [`Edge`] taking bodies up to `max_body`: admission
/// first, before a byte of the body is read.
async fn within_budget(
    State((budget, max_body)): State<(Budget, usize)>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request.extensions().get::<Peer>().map(|p| p.0);
    let refuse = |r: Rejection| {
        budget.stats.refused(r.reason(), peer);
        r.into_response()
    };
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared
        && n > max_body
    {
        return refuse(Rejection::TooLarge(max_body));
    }
    let reserve = declared.unwrap_or(CHUNKED_BODY_RESERVE.min(max_body));
    let kib = u32::try_from(reserve.div_ceil(KIB).max(1)).unwrap_or(u32::MAX);
    let _peer = match peer {
        Some(ip) => match budget.hold(ip, PeerUse { connections: 0, requests: 1, body_kib: kib as usize }) {
            Ok(hold) => Some(hold),
            Err(reason) => {
                budget.stats.refused(reason, peer);
                return Rejection::PeerShare.into_response();
            }
        },
        None => None,
    };
    let Ok(_request) = budget.requests.clone().try_acquire_owned() else {
        return refuse(Rejection::Requests);
    };
    let Ok(_bytes) = budget.body_kib.clone().try_acquire_many_owned(kib) else {
        return refuse(Rejection::Bytes);
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

/// When a server stops (see the module's documentation).
#[derive(Clone, Debug, Default)]
pub struct Stop {
    /// Keep accepting, but ask each client to move off its connection once it has been answered.
    pub closing: CancellationToken,
    /// Stop accepting and drain (also moves every client off at once).
    pub shutdown: CancellationToken,
}

/// Serves `edges` over TLS on `listener` within `limits` until `shutdown` is cancelled, then drains.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    edges: Vec<Edge>,
    limits: Limits,
    stats: Arc<HttpStats>,
    shutdown: CancellationToken,
) {
    let stop = Stop { closing: shutdown.clone(), shutdown };
    serve_tls_until(listener, tls, edges, limits, stats, stop).await
}

/// As [`serve_tls`], closing connections from `stop.closing` on and draining at `stop.shutdown`.
pub async fn serve_tls_until(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    edges: Vec<Edge>,
    limits: Limits,
    stats: Arc<HttpStats>,
    stop: Stop,
) {
    let acceptor = TlsAcceptor::from(tls);
    let budget = Budget::new(limits, stats.clone());
    let app = edges
        .into_iter()
        .fold(Router::new(), |app, edge| {
            let state = (budget.clone(), edge.max_body.min(limits.max_request_body));
            app.merge(edge.router.layer(axum::middleware::from_fn_with_state(state, within_budget)))
        })
        .layer(axum::middleware::from_fn_with_state(stop.closing.clone(), close_when_closing));
    let slots = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let connections = Arc::new(Semaphore::new(slots));
    let shutdown = stop.shutdown.clone();
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
        // One peer may not hold every connection slot: past its share, its new connections are closed.
        let held = match budget.hold(peer.ip(), PeerUse { connections: 1, ..PeerUse::default() }) {
            Ok(h) => h,
            Err(reason) => {
                stats.refused(reason, Some(peer.ip()));
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, stop, stats) = (acceptor.clone(), stop.clone(), stats.clone());
        // Whether the connection speaks HTTP/2 (known from its first request): a GOAWAY may then be sent.
        let (speaks_h2, mut speaks_h2_rx) = tokio::sync::watch::channel(false);
        let app = tower::ServiceExt::map_request(
            app.clone(),
            move |mut r: http::Request<hyper::body::Incoming>| {
                r.extensions_mut().insert(Peer(peer.ip()));
                if r.version() == http::Version::HTTP_2 {
                    speaks_h2.send_replace(true);
                }
                r
            },
        );
        tokio::spawn(async move {
            let (_slot, _held, _open) = (slot, held, Open::count(stats));
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
            let mut conn = std::pin::pin!(builder.serve_connection(io, TowerToHyperService::new(app)));
            let idle = std::pin::pin!(activity.idle_for(limits.idle_timeout));
            // HTTP/1 connections are closed by their answers while closing (see `close_when_closing`).
            let mut move_off = std::pin::pin!(async {
                tokio::select! {
                    () = stop.shutdown.cancelled() => {}
                    () = async {
                        stop.closing.cancelled().await;
                        if speaks_h2_rx.wait_for(|h2| *h2).await.is_err() {
                            // The service is gone, and so is the connection.
                            std::future::pending::<()>().await;
                        }
                    } => {}
                }
            });
            let (mut idle, mut asked) = (idle, false);
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    () = idle.as_mut() => {
                        tracing::debug!(%peer, "idle connection closed");
                        break;
                    }
                    () = move_off.as_mut(), if !asked => {
                        // HTTP/2: GOAWAY, the open streams finish. HTTP/1 (at shutdown): no keep-alive
                        // after the response in flight, closed now if idle.
                        conn.as_mut().graceful_shutdown();
                        asked = true;
                    }
                }
            }
        });
    }
    drop(listener);
    // Every connection holds a slot until it ends: all slots back means drained.
    let drained = connections.acquire_many(u32::try_from(slots).unwrap_or(u32::MAX));
    tokio::select! {
        _ = drained => tracing::info!("webhook server drained"),
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("webhook server drain timed out"),
    }
}

/// An open connection, counted in `wpa_http_connections` while it lives.
struct Open(Arc<HttpStats>);

impl Open {
    fn count(stats: Arc<HttpStats>) -> Open {
        stats.connections.inc();
        Open(stats)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.connections.dec();
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
    /// Set when a part of the process that must run until shutdown ended (a bug): `/healthz` fails, so that
    /// the kubelet restarts the process instead of leaving it half alive.
    pub(crate) died: Arc<std::sync::Mutex<Option<&'static str>>>,
}

impl Readiness {
    /// Notes that `what` ended before shutdown.
    pub(crate) fn died(&self, what: &'static str) {
        *self.died.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
    }

    /// Awaits `part`, a task that must run until shutdown: if it ends before `shutdown` is cancelled (a bug, or
    /// a supervisor giving up), it is logged and `/healthz` fails, so that the kubelet restarts a process
    /// whose webhook still answers but whose `what` is gone.
    pub(crate) async fn watch_part<T: std::fmt::Debug>(
        &self,
        what: &'static str,
        part: impl std::future::Future<Output = T>,
        shutdown: CancellationToken,
    ) {
        let result = part.await;
        if !shutdown.is_cancelled() {
            tracing::error!(result = ?result, "{what} stopped before shutdown: /healthz fails");
            self.died(what);
        }
    }

    /// What ended that should not have, if anything.
    pub(crate) fn dead(&self) -> Option<&'static str> {
        *self.died.lock().unwrap_or_else(|p| p.into_inner())
    }

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
    metrics: Arc<Registry>,
    /// Scrapes in progress, up to [`MAX_SCRAPES`].
    scrapes: Arc<Semaphore>,
}

/// Scrapes served at once: a scrape is encoded as fast as the locks allow (so that it never holds them for a
/// slow reader) and buffered until it is read, so each one in progress may hold the whole exposition (83 MiB
/// at 20,000 WPAs). Four is a Prometheus HA pair, the Datadog agent the chart's annotations call, and one
/// more (a person's curl); a fifth is answered 503 until one of them has been read.
const MAX_SCRAPES: usize = 4;

/// `/healthz`, `/readyz` and `/metrics`.
pub(crate) fn health_router(readiness: Readiness, metrics: Arc<Registry>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|State(s): State<HealthState>| async move {
                match s.readiness.dead() {
                    None => (StatusCode::OK, "ok\n".to_string()),
                    Some(what) => (StatusCode::SERVICE_UNAVAILABLE, format!("{what} stopped\n")),
                }
            }),
        )
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
                let Ok(permit) = s.scrapes.clone().try_acquire_owned() else {
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("{MAX_SCRAPES} scrapes are in progress: try again once one of them has been read\n"),
                    )
                        .into_response();
                };
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<bytes::Bytes>();
                let metrics = s.metrics.clone();
                tokio::task::spawn_blocking(move || {
                    let mut w = crate::runtime::registry::ChunkWriter::new(tx);
                    // An error means the client went away: nothing to report.
                    let _ = metrics.encode_to(&mut w).and_then(|()| w.finish());
                });
                // The permit goes with the body: released once it has been read, or its client has gone.
                let body = futures::stream::unfold((rx, permit), |(mut rx, permit)| async move {
                    rx.recv().await.map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), (rx, permit)))
                });
                (
                    [("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    axum::body::Body::from_stream(body),
                )
                    .into_response()
            }),
        )
        .with_state(HealthState { readiness, metrics, scrapes: Arc::new(Semaphore::new(MAX_SCRAPES)) })
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
        let metrics = Arc::new(Registry::new());
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

    #[tokio::test]
    async fn a_scrape_beyond_the_four_in_progress_is_refused_until_one_has_been_read() {
        let app = health_router(Readiness::default(), Arc::new(Registry::new()));
        let scrape = || async {
            let request = Request::get("/metrics").body(axum::body::Body::empty()).expect("a request");
            tower::ServiceExt::oneshot(app.clone(), request).await.expect("an answer")
        };
        // Four scrapes whose bodies are not read yet.
        let first = scrape().await;
        let mut unread = vec![scrape().await, scrape().await, scrape().await];
        assert!(unread.iter().chain([&first]).all(|r| r.status() == StatusCode::OK));
        let refused = scrape().await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        let message = axum::body::to_bytes(refused.into_body(), 1024).await.expect("the body");
        assert!(String::from_utf8_lossy(&message).contains("4 scrapes are in progress"));
        // One read to its end: the next scrape is served.
        let body = axum::body::to_bytes(first.into_body(), usize::MAX).await.expect("the body");
        assert!(body.ends_with(b"# EOF\n"), "the first scrape is complete");
        unread.push(scrape().await);
        assert_eq!(unread[3].status(), StatusCode::OK);
        assert_eq!(scrape().await.status(), StatusCode::SERVICE_UNAVAILABLE, "four are unread again");
        // One whose client went away (its body dropped unread) frees its place too.
        drop(unread.pop());
        assert_eq!(scrape().await.status(), StatusCode::OK);
    }

    async fn healthz(readiness: &Readiness) -> (StatusCode, String) {
        let app = health_router(readiness.clone(), Arc::new(Registry::new()));
        let request = Request::get("/healthz").body(axum::body::Body::empty()).expect("a request");
        let response = tower::ServiceExt::oneshot(app, request).await.expect("an answer");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1024).await.expect("the body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_part_that_ends_before_shutdown_fails_healthz() {
        let readiness = Readiness::default();
        readiness
            .watch_part("the reconciler", async { Err::<(), _>("gave up") }, CancellationToken::new())
            .await;
        assert_eq!(
            healthz(&readiness).await,
            (StatusCode::SERVICE_UNAVAILABLE, "the reconciler stopped\n".to_string())
        );
    }

    #[tokio::test]
    async fn a_part_that_ends_in_shutdown_leaves_healthz_ok() {
        let readiness = Readiness::default();
        let shutdown = CancellationToken::new();
        let part = {
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        };
        shutdown.cancel();
        readiness.watch_part("the reconciler", part, shutdown).await;
        assert_eq!(healthz(&readiness).await, (StatusCode::OK, "ok\n".to_string()));
    }

    #[tokio::test]
    async fn healthz_fails_once_a_part_that_must_run_has_stopped() {
        let readiness = Readiness::default();
        assert_eq!(healthz(&readiness).await, (StatusCode::OK, "ok\n".to_string()));
        readiness.died("the reconciler");
        assert_eq!(
            healthz(&readiness).await,
            (StatusCode::SERVICE_UNAVAILABLE, "the reconciler stopped\n".to_string())
        );
    }
}
