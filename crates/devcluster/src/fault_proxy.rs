//! A plain-HTTP proxy in front of the API server that fails on cue, for tests of what a client does when the
//! API server goes away at one exact moment (which killing the real process cannot hit deterministically).
//!
//! The client under test gets a kubeconfig naming `http://127.0.0.1:PORT` and its own token; the proxy
//! forwards every request (watches stream through) to the API server over TLS. When the first request
//! matching the [`Trigger`] has been answered by the API server, the proxy "stops": the answer is not
//! delivered (the connection is dropped, as by a server that died after committing the write), every open
//! connection is cut, and new connections are closed at once, for `down_for`. Then it serves again.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    response::Response,
};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{net::TcpListener, sync::Notify};

/// Which request makes the proxy stop.
#[derive(Clone, Debug)]
pub struct Trigger {
    pub method: http::Method,
    /// The request path ends with this (e.g. `/scale`).
    pub path_suffix: String,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    trigger: Trigger,
    down_for: Duration,
    fired: AtomicBool,
    down_until: Mutex<Option<Instant>>,
    /// Woken when the proxy stops: every connection is dropped.
    cut: Notify,
    /// Requests that matched the trigger, with the API server's status code.
    seen: Mutex<Vec<u16>>,
}

impl Shared {
    fn is_down(&self) -> bool {
        self.down_until.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|t| Instant::now() < t)
    }
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// A proxy to `upstream` (`https://127.0.0.1:PORT`, trusting the CA in `ca_pem`) that stops for
    /// `down_for` once a request matching `trigger` has been answered upstream.
    pub async fn start(
        upstream: &str,
        ca_pem: &Path,
        trigger: Trigger,
        down_for: Duration,
    ) -> Result<FaultProxy> {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let mut roots = rustls::RootCertStore::empty();
        for cert in
            CertificateDer::pem_file_iter(ca_pem).with_context(|| format!("reading {}", ca_pem.display()))?
        {
            roots.add(cert?).context("trusting the cluster CA")?;
        }
        let tls =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .build()
            .context("building the upstream client")?;
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            client,
            trigger,
            down_for,
            fired: AtomicBool::new(false),
            down_until: Mutex::new(None),
            cut: Notify::new(),
            seen: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(forward).with_state(shared.clone());
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                if s.is_down() {
                    drop(stream);
                    continue;
                }
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                let s = s.clone();
                tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = s.cut.notified() => {}
                    }
                });
            }
        });
        Ok(FaultProxy { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT`, for a kubeconfig's `server`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Whether the trigger fired, and the API server's answers to the requests that matched it.
    pub fn triggered(&self) -> Vec<u16> {
        self.shared.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A kubeconfig for this proxy with `token`.
    pub fn kubeconfig(&self, token: &str, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: p\n  cluster: {{server: \"{}\"}}\nusers:\n- name: u\n  user: {{token: {token}}}\ncontexts:\n- name: p\n  context: {{cluster: p, user: u, namespace: {namespace}}}\ncurrent-context: p\n",
            self.url()
        )
    }
}

async fn forward(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let body: Bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mut upstream = s.client.request(parts.method.clone(), format!("{}{path}", s.upstream)).body(body);
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    let matches = parts.method == s.trigger.method && parts.uri.path().ends_with(&s.trigger.path_suffix);
    let answer = upstream.send().await;
    if matches && !s.fired.swap(true, Ordering::SeqCst) {
        s.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(answer.as_ref().map_or(0, |r| r.status().as_u16()));
        // The write is committed upstream; the client never learns it.
        *s.down_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + s.down_for);
        s.cut.notify_waiters();
        std::future::pending::<()>().await;
    }
    match answer {
        Ok(r) => {
            let mut out = Response::builder().status(r.status());
            for (name, value) in r.headers() {
                out = out.header(name, value);
            }
            out.body(Body::from_stream(r.bytes_stream())).unwrap_or_else(|_| Response::new(Body::empty()))
        }
        Err(e) => Response::builder()
            .status(502)
            .body(Body::from(format!("upstream: {e}")))
            .unwrap_or_else(|_| Response::new(Body::empty())),
    }
}
