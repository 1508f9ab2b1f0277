//! How the HTTPS server moves its clients off when the pod is told to stop (`Stop::closing`, at SIGTERM):
//! the listener keeps accepting, each HTTP/1 answer ends its connection (`Connection: close`), and an
//! HTTP/2 connection gets a GOAWAY, so that no keep-alive connection is still pinned to the pod when it
//! dies (a force-deleted pod gets SIGKILL 2 s after SIGTERM); an idle HTTP/1 connection is left open until
//! shutdown, since a client writing on it as it closes would not retry. Real TLS connections over loopback,
//! HTTP/1 written by hand so that the socket's end is seen, HTTP/2 through hyper's client.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};
use wpa::{
    runtime::http::{self as server, Stop},
    runtime::registry::Registry,
    runtime::tls::{self, CertFiles, CertStore},
    state::TargetIndex,
    webhook::{self, WebhookState},
};

const REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"","version":"v1","kind":"ConfigMap"},"resource":{"group":"","version":"v1","resource":"configmaps"},"name":"c","namespace":"default","operation":"CREATE","userInfo":{},"object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}}}"#;

/// How long a test waits for the server to do what it must (never a measured time).
const PATIENCE: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    stop: Stop,
    connector: TlsConnector,
    alpn_h2: TlsConnector,
}

async fn server() -> Server {
    let pair = tls::generate_self_signed(&["127.0.0.1".to_string()]).expect("a certificate");
    let dir = tempfile::tempdir().expect("a temp dir");
    let files = CertFiles { cert: dir.path().join("tls.crt"), key: dir.path().join("tls.key") };
    std::fs::write(&files.cert, &pair.cert_pem).expect("write the certificate");
    std::fs::write(&files.key, &pair.key_pem).expect("write the key");
    let store = CertStore::new();
    files.serve_into(store.clone(), Duration::from_secs(3600), std::future::pending()).await.expect("loaded");
    let listener = server::bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = Stop::default();
    let state = WebhookState::new(TargetIndex::new(), &Registry::new(), Default::default());
    tokio::spawn(server::serve_tls_until(
        listener,
        tls::server_config(store).expect("config"),
        vec![webhook::edge(state)],
        server::Limits::default(),
        server::HttpStats::register(&Registry::new()),
        stop.clone(),
    ));
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pair.ca_pem.as_bytes()) {
        roots.add(c.expect("a CA cert")).expect("a root");
    }
    let config = |alpn: &[u8]| {
        let mut c =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
        c.alpn_protocols = vec![alpn.to_vec()];
        TlsConnector::from(Arc::new(c))
    };
    Server { addr, stop, connector: config(b"http/1.1"), alpn_h2: config(b"h2") }
}

impl Server {
    async fn connect(&self, connector: &TlsConnector) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.expect("connect");
        let name = ServerName::try_from("127.0.0.1").expect("a name");
        connector.connect(name, tcp).await.expect("a TLS handshake")
    }
}

/// Sends one keep-alive AdmissionReview on `stream` and reads the answer: its status line and headers.
async fn review_http1(stream: &mut TlsStream<TcpStream>) -> String {
    let request = format!(
        "POST /validate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{REVIEW}",
        REVIEW.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write the request");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n =
            tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await.expect("an answer").expect("read");
        assert!(n > 0, "closed before answering: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
        if let Some(i) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&answer[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a content-length: {head}"));
    while answer.len() < head_end + length {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await.expect("the body").expect("read");
        assert!(n > 0, "closed in the body");
        answer.extend_from_slice(&buf[..n]);
    }
    head
}

/// Whether the server ends the connection within `within` (EOF, with or without close_notify).
async fn closed_within(stream: &mut TlsStream<TcpStream>, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Err(_) => false,
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n])),
    }
}

fn says_close(head: &str) -> bool {
    head.lines().any(|l| l.eq_ignore_ascii_case("connection: close"))
}

#[tokio::test]
async fn an_http1_answer_while_closing_ends_its_connection() {
    let s = server().await;
    let mut stream = s.connect(&s.connector).await;
    let before = review_http1(&mut stream).await;
    assert!(before.starts_with("HTTP/1.1 200") && !says_close(&before), "{before}");
    assert!(!closed_within(&mut stream, Duration::from_millis(300)).await, "kept alive before closing");
    s.stop.closing.cancel();
    let during = review_http1(&mut stream).await;
    assert!(during.starts_with("HTTP/1.1 200") && says_close(&during), "{during}");
    assert!(closed_within(&mut stream, PATIENCE).await, "closed after the answer");
}

#[tokio::test]
async fn an_idle_http1_connection_stays_open_while_closing_and_closes_at_shutdown() {
    let s = server().await;
    let mut stream = s.connect(&s.connector).await;
    assert!(review_http1(&mut stream).await.starts_with("HTTP/1.1 200"));
    s.stop.closing.cancel();
    assert!(
        !closed_within(&mut stream, Duration::from_millis(300)).await,
        "not closed under a client's feet"
    );
    s.stop.shutdown.cancel();
    assert!(closed_within(&mut stream, PATIENCE).await, "shutdown closes it");
}

#[tokio::test]
async fn a_connection_opened_while_closing_is_answered_then_closed() {
    let s = server().await;
    s.stop.closing.cancel();
    let mut stream = s.connect(&s.connector).await;
    let head = review_http1(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200") && says_close(&head), "{head}");
    assert!(closed_within(&mut stream, PATIENCE).await, "closed after its answer");
}

#[tokio::test]
async fn an_http2_connection_gets_goaway_when_closing_begins() {
    let s = server().await;
    let stream = s.connect(&s.alpn_h2).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("an HTTP/2 handshake");
    let mut conn = tokio::spawn(conn);
    let request = || {
        http::Request::post(format!("https://{}/validate", s.addr))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(REVIEW.as_bytes())))
            .expect("a request")
    };
    let response = sender.send_request(request()).await.expect("an answer");
    assert_eq!(response.status(), 200);
    let _ = response.into_body().collect().await.expect("the body");
    assert!(tokio::time::timeout(Duration::from_millis(300), &mut conn).await.is_err(), "kept open before");
    s.stop.closing.cancel();
    // A GOAWAY with no stream open ends the connection: the client's connection task returns.
    let ended = tokio::time::timeout(PATIENCE, &mut conn).await;
    assert!(ended.is_ok(), "the connection ended after closing began");
    assert!(sender.send_request(request()).await.is_err(), "no new stream on a connection told to go away");
}
