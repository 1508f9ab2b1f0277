//! The admission benchmark's baseline: what a reader would write as the barest HTTPS webhook in Rust, an
//! axum router behind tokio-rustls and hyper-util, that reads each request's body and answers a fixed
//! AdmissionReview. It shares no code with `wpa serve`'s stack (no `runtime::http` limits, budgets,
//! timeouts or metrics, no `runtime::tls` certificate store, the system allocator), so that `wpa bench
//! admission` measures that stack's cost and the handlers' against it.
//!
//! With `--kube` it is instead the webhook kube-rs documents: the review decoded with kube's admission
//! types (`AdmissionReview<DynamicObject>`), allowed, and answered with its uid. That is what any webhook
//! that reads its request pays for reading it, a reference beside the baseline.
//!
//! ```sh
//! cargo build --release --example bare-webhook
//! target/release/examples/bare-webhook --cert tls.crt --key tls.key    # prints its port, then serves
//! ```

use std::{path::PathBuf, sync::Arc};

use axum::{Json, Router, body::Bytes, routing::post};
use clap::Parser;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use kube::core::{
    DynamicObject,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview},
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Parser)]
#[command(
    about = "A bare axum + rustls server answering a fixed AdmissionReview (wpa bench admission's baseline)"
)]
struct Args {
    /// PEM certificate chain.
    #[arg(long, env = "BARE_WEBHOOK_CERT")]
    cert: PathBuf,
    /// PEM private key.
    #[arg(long, env = "BARE_WEBHOOK_KEY")]
    key: PathBuf,
    /// Port on 127.0.0.1; 0 picks a free one. The port is printed on the first line of stdout.
    #[arg(long, env = "BARE_WEBHOOK_PORT", default_value_t = 0)]
    port: u16,
    /// Decode each review with kube's admission types and allow it, instead of a fixed answer.
    #[arg(long)]
    kube: bool,
}

/// kube-rs's documented admission handler: decode, allow, answer in the review's terms.
async fn allow(Json(review): Json<AdmissionReview<DynamicObject>>) -> Json<AdmissionReview<DynamicObject>> {
    let request: Result<AdmissionRequest<DynamicObject>, _> = review.try_into();
    let response = match request {
        Ok(request) => AdmissionResponse::from(&request),
        Err(e) => AdmissionResponse::invalid(e.to_string()),
    };
    Json(response.into_review())
}

const ANSWER: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"bench-uid","allowed":true,"status":{}}}"#;

fn tls_config(args: &Args) -> Result<rustls::ServerConfig, Box<dyn std::error::Error>> {
    let certs = CertificateDer::pem_file_iter(&args.cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&args.key)?;
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&args)?));
    let answer = |body: Bytes| async move {
        drop(body);
        ([("content-type", "application/json")], ANSWER)
    };
    let app = if args.kube {
        Router::new().route("/validate", post(allow)).route("/mutate", post(allow))
    } else {
        Router::new().route("/validate", post(answer)).route("/mutate", post(answer))
    };
    let listener = TcpListener::bind(("127.0.0.1", args.port)).await?;
    println!("{}", listener.local_addr()?.port());
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                .await;
        });
    }
}
