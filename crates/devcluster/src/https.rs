//! An in-process HTTPS server (axum over rustls) for webhooks and aggregated APIs under test.
//!
//! It runs on its own thread with its own tokio runtime: a test may block its thread (e.g. on
//! `kubectl`) while the API server calls this server, and a current-thread test runtime would then
//! never get to answer.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::oneshot;

use super::pki::TlsIdentity;

pub struct HttpsServer {
    local_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpsServer {
    /// Serves `router` over TLS (HTTP/1.1 and HTTP/2 via ALPN) on an already bound listener, e.g. one
    /// from [`super::NetnsHost::bind_tcp`].
    pub fn start(listener: TcpListener, identity: &TlsIdentity, router: axum::Router) -> Result<Self> {
        let local_addr = listener.local_addr().context("reading the listener's address")?;
        listener.set_nonblocking(true).context("making the listener non-blocking")?;
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .context("choosing TLS versions")?
                .with_no_client_auth()
                .with_single_cert(
                    vec![CertificateDer::from(identity.leaf.cert_der.clone())],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.leaf.key_der.clone())),
                )
                .context("loading the server certificate")?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the server runtime")?;
        let (shutdown, mut stop) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("https-{local_addr}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            crate::log_line!("[https {local_addr}] cannot use the listener: {e}");
                            return;
                        }
                    };
                    loop {
                        let (tcp, peer) = tokio::select! {
                            _ = &mut stop => break,
                            accepted = listener.accept() => match accepted {
                                Ok(pair) => pair,
                                Err(e) => {
                                    crate::log_line!("[https {local_addr}] accept failed: {e}");
                                    continue;
                                }
                            },
                        };
                        let acceptor = acceptor.clone();
                        let router = router.clone();
                        tokio::spawn(async move {
                            let tls = match acceptor.accept(tcp).await {
                                Ok(tls) => tls,
                                Err(e) => {
                                    crate::log_line!(
                                        "[https {local_addr}] TLS handshake with {peer} failed: {e}"
                                    );
                                    return;
                                }
                            };
                            let service = TowerToHyperService::new(router);
                            // Errors here are clients hanging up (the API server's availability
                            // probes close without TLS close_notify): normal, not worth a log line.
                            let _ = auto::Builder::new(TokioExecutor::new())
                                .serve_connection(TokioIo::new(tls), service)
                                .await;
                        });
                    }
                });
            })
            .context("starting the server thread")?;
        Ok(Self { local_addr, shutdown: Some(shutdown), thread: Some(thread) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Dropping the runtime at the end of the thread cancels in-flight connections.
            let _ = thread.join();
        }
    }
}
