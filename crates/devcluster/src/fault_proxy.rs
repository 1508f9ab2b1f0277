//! A plain-HTTP proxy in front of the API server that fails on cue, for tests of what a client does when the
//! API server fails at one exact moment (which killing the real process cannot hit deterministically).
//!
//! The client under test gets a kubeconfig naming `http://127.0.0.1:PORT` and its own token; the proxy
//! forwards every request (watches stream through) to the API server over TLS. A request matching the
//! [`Trigger`] meets the [`Fault`]: its answer vanishes and the proxy goes down for a while (a server that
//! died after committing the write), its answer is replaced by a 5xx (a write etcd committed that the API
//! server reported as failed), its answer is held while the client is cut off (a partition, or a paused
//! process), or the target's count is changed just before the write (a concurrent `kubectl scale`).

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

/// Which requests meet the fault.
#[derive(Clone, Debug)]
pub struct Trigger {
    pub method: http::Method,
    /// The request path ends with this (e.g. `/scale`).
    pub path_suffix: String,
    /// The request body contains this (e.g. `SuccessfulScale`: a status that records a scale).
    pub body_contains: Option<String>,
    /// Every matching request meets the fault, not only the first.
    pub every: bool,
}

impl Trigger {
    /// The first PATCH whose path ends with `suffix`.
    pub fn first_patch(suffix: &str) -> Trigger {
        Trigger { method: http::Method::PATCH, path_suffix: suffix.into(), body_contains: None, every: false }
    }

    fn matches(&self, method: &http::Method, path: &str, body: &[u8]) -> bool {
        *method == self.method
            && path.ends_with(&self.path_suffix)
            && self
                .body_contains
                .as_ref()
                .is_none_or(|needle| body.windows(needle.len().max(1)).any(|w| w == needle.as_bytes()))
    }
}

/// What happens to a request that matches the [`Trigger`].
#[derive(Clone, Debug)]
pub enum Fault {
    /// Forwarded; its answer never delivered; every connection cut and new ones closed for `down_for`.
    Vanish { down_for: Duration },
    /// Forwarded; answered `status` (a Kubernetes Status) instead of the API server's answer.
    Answer { status: u16 },
    /// Forwarded; its answer held for `hold`, while every other request of the client is refused.
    Hold { hold: Duration },
    /// Before it is forwarded, the target's `spec.replicas` is set one above the value its JSON Patch
    /// `test`s (with the client's own credentials), as a concurrent `kubectl scale` would.
    Race,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    trigger: Trigger,
    fault: Fault,
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
    /// `fault` on the requests that match `trigger`.
    pub async fn start(upstream: &str, ca_pem: &Path, trigger: Trigger, fault: Fault) -> Result<FaultProxy> {
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
            fault,
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

    /// The API server's answers to the requests that met the fault (0: none).
    pub fn triggered(&self) -> Vec<u16> {
        self.shared.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// [`FaultProxy::triggered`] once a request has met the fault, waiting up to `timeout`: the proxy records
    /// the answer when it has it, a moment after the write it answers is visible to everyone else.
    /// Empty if none did.
    pub async fn wait_triggered(&self, timeout: Duration) -> Vec<u16> {
        crate::wait_for(timeout, || async {
            let seen = self.triggered();
            if seen.is_empty() { Err("no request met the fault".to_string()) } else { Ok(seen) }
        })
        .await
        .unwrap_or_default()
    }

    /// A kubeconfig for this proxy with `token`.
    pub fn kubeconfig(&self, token: &str, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: p\n  cluster: {{server: \"{}\"}}\nusers:\n- name: u\n  user: {{token: {token}}}\ncontexts:\n- name: p\n  context: {{cluster: p, user: u, namespace: {namespace}}}\ncurrent-context: p\n",
            self.url()
        )
    }
}

/// A Kubernetes Status answer.
fn status_answer(code: u16) -> Response {
    let (reason, message) = match code {
        500 => ("InternalError", "rpc error: code = Unavailable desc = transport is closing"),
        504 => ("Timeout", "Timeout: request did not complete within requested timeout 34s"),
        _ => ("ServiceUnavailable", "the server is currently unable to handle the request"),
    };
    let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// The value a JSON Patch body `test`s, if any.
fn tested_value(body: &[u8]) -> Option<i64> {
    let ops: Vec<serde_json::Value> = serde_json::from_slice(body).ok()?;
    ops.iter().find(|o| o["op"] == "test").and_then(|o| o["value"].as_i64())
}

async fn forward(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let body: Bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if s.is_down() {
        return status_answer(503);
    }
    // The client's request, or another with its credentials and `content_type`.
    let request = |body: Bytes, method: http::Method, path: &str, content_type: Option<&str>| {
        let mut upstream = s.client.request(method, format!("{}{path}", s.upstream)).body(body);
        for (name, value) in &parts.headers {
            let replaced = content_type.is_some() && name == http::header::CONTENT_TYPE;
            if name != http::header::HOST && name != http::header::CONTENT_LENGTH && !replaced {
                upstream = upstream.header(name, value);
            }
        }
        if let Some(t) = content_type {
            upstream = upstream.header(http::header::CONTENT_TYPE, t);
        }
        upstream
    };
    let matches = s.trigger.matches(&parts.method, parts.uri.path(), &body)
        && (s.trigger.every || !s.fired.swap(true, Ordering::SeqCst));
    if matches && let Fault::Race = s.fault {
        // The concurrent change lands first, through the same credentials.
        if let Some(tested) = tested_value(&body) {
            let change = serde_json::json!({"spec": {"replicas": tested + 1}}).to_string();
            let merge = Some("application/merge-patch+json");
            match request(Bytes::from(change), http::Method::PATCH, parts.uri.path(), merge).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => crate::log_line!("[fault-proxy] the concurrent change was refused: {}", r.status()),
                Err(e) => crate::log_line!("[fault-proxy] the concurrent change failed: {e}"),
            }
        }
    }
    let answer = request(body, parts.method.clone(), &path, None).send().await;
    if matches {
        let code = answer.as_ref().map_or(0, |r| r.status().as_u16());
        s.seen.lock().unwrap_or_else(|p| p.into_inner()).push(code);
        match s.fault {
            Fault::Vanish { down_for } => {
                // The write is committed upstream; the client never learns it.
                *s.down_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + down_for);
                s.cut.notify_waiters();
                std::future::pending::<()>().await;
            }
            Fault::Answer { status } => return status_answer(status),
            Fault::Hold { hold } => {
                // Everything else of this client is refused meanwhile: it cannot renew its Lease.
                *s.down_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + hold);
                tokio::time::sleep(hold).await;
            }
            Fault::Race => {}
        }
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
