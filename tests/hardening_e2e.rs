//! No client can exhaust `wpa serve`'s HTTPS port: each limit is tried against the real process on loopback,
//! with a bounded test (a stated ceiling, a stated deadline), and the process never panics.
//!
//! One control plane for the binary: each test starts its own `wpa serve`, which is all it tries.

mod support;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use support::{Shared, StartWpa, TestCluster, WpaServe};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

static CLUSTER: Shared<TestCluster> = Shared::new();

/// The binary's control plane, with the WPA CRD.
async fn cluster() -> Arc<TestCluster> {
    CLUSTER.get(support::cluster_with_crd).await
}

/// `wpa serve` (webhook only) with `extra` flags, and the CA that signed its certificate.
async fn serve(cluster: &TestCluster, extra: &[&str]) -> (WpaServe, String) {
    let port = devcluster::free_loopback_port().expect("a free loopback port");
    // Named by port: the tests of this binary share the cluster's directory.
    let ca_out = cluster.dir().join(format!("hardening-{port}-ca.crt"));
    let ca_arg = ca_out.display().to_string();
    let args = [
        &["--self-signed", "--tls-san", "127.0.0.1", "--ca-bundle-out", &ca_arg, "--no-reconciler"][..],
        extra,
    ]
    .concat();
    let serve =
        WpaServe::start(cluster, &format!("hardened-{port}"), Some(port), &args).await.expect("wpa serve");
    let ca = std::fs::read_to_string(&ca_out).expect("the CA");
    (serve, ca)
}

async fn tls(port: u16, ca: &str, alpn: &[u8]) -> TlsStream<TcpStream> {
    tls_from("127.0.0.1", port, ca, alpn).await.expect("TLS handshake")
}

/// A TLS connection from the loopback address `source` (another 127.0.0.0/8 address is another peer to the
/// server: the attacker of the tests below).
async fn tls_from(source: &str, port: u16, ca: &str, alpn: &[u8]) -> std::io::Result<TlsStream<TcpStream>> {
    let mut config = support::tls::client_config(&[ca]);
    config.alpn_protocols = vec![alpn.to_vec()];
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().expect("an address"))?;
    let tcp = socket.connect(([127, 0, 0, 1], port).into()).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").expect("a name"), tcp)
        .await
}

fn review_of_size(bytes: usize) -> Vec<u8> {
    let padding = "x".repeat(bytes);
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"}, "operation": "CREATE",
            "userInfo": {}, "object": {"data": {"pad": padding}}}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_large_bodies_over_http2_stay_under_the_memory_ceiling() {
    let cluster = cluster().await;
    let (serve, ca) = serve(&cluster, &[]).await;
    let body = Bytes::from(review_of_size(3 * 1024 * 1024 - 4096));
    // 4 connections × 200 streams × 3 MiB: 2.4 GB if every body were buffered (the review measured 3.17 GB).
    let mut clients = Vec::new();
    for _ in 0..4 {
        let io = TokioIo::new(tls(serve.webhook_port, &ca, b"h2").await);
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.expect("h2 handshake");
        tokio::spawn(conn);
        clients.push(sender);
    }
    let started = Instant::now();
    let mut requests = Vec::new();
    for sender in &clients {
        for _ in 0..200 {
            let mut sender = sender.clone();
            let body = body.clone();
            let port = serve.webhook_port;
            requests.push(tokio::spawn(async move {
                let req = http::Request::post(format!("https://127.0.0.1:{port}/validate?timeout=10s"))
                    .header("content-type", "application/json")
                    .header("content-length", body.len())
                    .body(Full::new(body))
                    .expect("a request");
                match sender.send_request(req).await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                }
            }));
        }
    }
    let mut codes = std::collections::BTreeMap::<u16, usize>::new();
    for r in requests {
        *codes.entry(r.await.unwrap_or(0)).or_default() += 1;
    }
    let peak = support::peak_rss_mib(serve.pid());
    eprintln!("{codes:?} in {:?}; peak RSS {peak} MiB", started.elapsed());
    assert!(codes.get(&200).copied().unwrap_or(0) > 0, "some are answered: {codes:?}");
    assert!(codes.keys().all(|c| [200, 503].contains(c)), "answered or refused, nothing else: {codes:?}");
    assert!(peak < 200, "peak RSS {peak} MiB stays under 200 MiB (the Deployment's limit is 256 Mi)");
    let (code, _) = support::http_get(serve.health_port, "/healthz").expect("healthz");
    assert_eq!(code, 200);
    assert!(!serve.log().contains("panicked"));
}

/// `wpa serve` with a 2 s header deadline, a 3 s idle timeout and at most 40 connections.
async fn serve_with_deadlines(cluster: &TestCluster) -> (WpaServe, String) {
    serve(cluster, &["--header-read-timeout", "2s", "--idle-timeout", "3s", "--max-connections", "40"]).await
}

/// An HTTP/1.1 connection to the webhook port, its driver spawned.
async fn http1(port: u16, ca: &str) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let io = TokioIo::new(tls(port, ca, b"http/1.1").await);
    let (sender, conn) = hyper::client::conn::http1::handshake(io).await.expect("handshake");
    tokio::spawn(conn);
    sender
}

fn assert_no_panic(serve: &WpaServe) {
    assert!(!serve.log().contains("panicked"), "{}", serve.log());
}

/// Slowloris: a header line, then nothing. Closed by the header deadline, not held for minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_header_is_cut_by_the_header_deadline() {
    let cluster = cluster().await;
    let (serve, ca) = serve_with_deadlines(&cluster).await;
    let mut slow = tls(serve.webhook_port, &ca, b"http/1.1").await;
    slow.write_all(b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.expect("write");
    let begin = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(8), slow.read(&mut buf)).await;
    assert!(closed.is_ok(), "a slow header is cut within 8 s");
    eprintln!("slow header closed after {:?}", begin.elapsed());
    assert_no_panic(&serve);
}

/// An idle keep-alive connection after one request: closed by the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_by_the_idle_timeout() {
    let cluster = cluster().await;
    let (serve, ca) = serve_with_deadlines(&cluster).await;
    let io = TokioIo::new(tls(serve.webhook_port, &ca, b"http/1.1").await);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.expect("handshake");
    let conn = tokio::spawn(conn);
    let req = http::Request::post("/validate?timeout=10s")
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::from(review_of_size(10))))
        .expect("a request");
    let answer = sender.send_request(req).await.expect("an answer");
    assert_eq!(answer.status(), 200);
    let _ = answer.into_body().collect().await;
    let begin = Instant::now();
    tokio::time::timeout(Duration::from_secs(8), conn).await.expect("the idle connection is closed").ok();
    eprintln!("idle connection closed after {:?}", begin.elapsed());
    assert_no_panic(&serve);
}

/// A flood of connections that never finish their handshake: past the cap they wait in the kernel's
/// queue, the process keeps its descriptors, and the health port answers throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_port_answers_through_a_flood_of_unfinished_handshakes() {
    let cluster = cluster().await;
    let (serve, _) = serve_with_deadlines(&cluster).await;
    let mut flood = Vec::new();
    for _ in 0..300 {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", serve.webhook_port)).await {
            flood.push(s);
        }
    }
    for _ in 0..5 {
        let (code, _) = support::http_get(serve.health_port, "/healthz").expect("healthz during the flood");
        assert_eq!(code, 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(flood);
    assert_no_panic(&serve);
}

/// A client-chosen timeout beyond any duration: answered, not a panic, and the connection is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_timeout_beyond_any_duration_is_answered_and_the_connection_kept() {
    let cluster = cluster().await;
    let (serve, ca) = serve_with_deadlines(&cluster).await;
    let mut sender = http1(serve.webhook_port, &ca).await;
    let req = http::Request::post("/validate?timeout=99999999999999999999999s")
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::from(review_of_size(10))))
        .expect("a request");
    let answer = sender.send_request(req).await.expect("an answer");
    assert_eq!(answer.status(), 200);
    // Read to the end, so that the connection can carry the next request (else hyper may refuse it as
    // "not ready").
    let _ = answer.into_body().collect().await;
    sender.ready().await.expect("the connection is kept after an answer");
    assert_no_panic(&serve);
}

/// A declared body over the limit: 413 at once, not after reading it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_limit_gets_413_at_once() {
    let cluster = cluster().await;
    let (serve, ca) = serve_with_deadlines(&cluster).await;
    let mut sender = http1(serve.webhook_port, &ca).await;
    let req = http::Request::post("/validate")
        .header("host", "127.0.0.1")
        .header("content-length", 64 * 1024 * 1024)
        .body(Full::new(Bytes::new()))
        .expect("a request");
    let begin = Instant::now();
    assert_eq!(sender.send_request(req).await.expect("an answer").status(), 413);
    assert!(begin.elapsed() < Duration::from_secs(2));
    assert_no_panic(&serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_does_not_echo_a_megabyte_value() {
    let cluster = cluster().await;
    let (serve, ca) = serve(&cluster, &[]).await;
    let huge = "y".repeat(1024 * 1024);
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "datadoghq.com", "version": "v1alpha1", "kind": "WatermarkPodAutoscaler"},
            "resource": {"group": "datadoghq.com", "version": "v1alpha1", "resource": "watermarkpodautoscalers"},
            "operation": "CREATE", "namespace": "default", "name": "w", "userInfo": {},
            "object": {"apiVersion": "datadoghq.com/v1alpha1", "kind": "WatermarkPodAutoscaler",
                "metadata": {"name": "w", "namespace": "default", "annotations": {"wpa.datadoghq.com/skip-owner-check": huge}},
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3}}}
    });
    let io = TokioIo::new(tls(serve.webhook_port, &ca, b"http/1.1").await);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::post("/validate?timeout=10s")
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::from(serde_json::to_vec(&review).unwrap())))
        .expect("a request");
    let answer = sender.send_request(req).await.expect("an answer");
    assert_eq!(answer.status(), 200);
    let body = answer.into_body().collect().await.expect("a body").to_bytes();
    let answer: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"].as_str().expect("a message");
    assert!(message.len() < 5000, "{} bytes", message.len());
    assert!(
        message.contains("more bytes)"),
        "the cut is said: {}",
        &message[message.len().saturating_sub(80)..]
    );
}

/// Sends a request's head declaring a body of `declared` bytes, then `sent` bytes of it, and nothing more.
async fn hold_request(stream: &mut TlsStream<TcpStream>, declared: usize, sent: usize) {
    let head = format!(
        "POST /validate?timeout=30s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("the head");
    stream.write_all(&vec![b' '; sent]).await.expect("the first bytes");
    stream.flush().await.expect("flushed");
}

/// A WPA review from 127.0.0.1 (the API server of these tests): its status code and how long it took.
async fn legit_review(port: u16, ca: &str) -> (u16, Duration) {
    let begin = Instant::now();
    let io = TokioIo::new(tls(port, ca, b"http/1.1").await);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::post("/validate?timeout=10s")
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::from(review_of_size(10))))
        .expect("a request");
    let answer = sender.send_request(req).await.expect("an answer");
    (answer.status().as_u16(), begin.elapsed())
}

/// The value of a series of the health port's /metrics (0 when absent).
fn metric(health_port: u16, series: &str) -> f64 {
    let (_, text) = support::http_get(health_port, "/metrics").expect("metrics");
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_declared_over_the_webhooks_limit_is_refused_at_once() {
    let cluster = cluster().await;
    let (serve, ca) = serve(&cluster, &[]).await;
    // 4 MiB: under the port's largest body (the extender's 16 MiB), over an AdmissionReview's 3 MiB.
    let mut s = tls(serve.webhook_port, &ca, b"http/1.1").await;
    let begin = Instant::now();
    hold_request(&mut s, 4 * 1024 * 1024, 0).await;
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut answer))
        .await
        .expect("answered")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(begin.elapsed() < Duration::from_secs(2), "at once: {:?}", begin.elapsed());
    assert_eq!(metric(serve.health_port, "wpa_http_refused_total{reason=\"too_large\"}"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_given_up_within_seconds() {
    let cluster = cluster().await;
    let (serve, ca) = serve(&cluster, &[]).await;
    let mut s = tls(serve.webhook_port, &ca, b"http/1.1").await;
    let begin = Instant::now();
    // ?timeout=30s would let it hold its budget for 24 s; it stops after 10 bytes.
    hold_request(&mut s, 1024, 10).await;
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut answer))
        .await
        .expect("answered")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("made no progress"), "{answer}");
    assert!(begin.elapsed() < Duration::from_secs(9), "within the stall deadline: {:?}", begin.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_holding_requests_leaves_the_api_server_its_share() {
    let cluster = cluster().await;
    let (serve, ca) = serve(&cluster, &[]).await;
    // 64 requests (the whole default budget) that declare a small body and never send it, from another peer.
    let mut held = Vec::new();
    for _ in 0..64 {
        let Ok(mut s) = tls_from("127.0.0.2", serve.webhook_port, &ca, b"http/1.1").await else { continue };
        hold_request(&mut s, 819, 0).await;
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..5 {
        let (code, took) = legit_review(serve.webhook_port, &ca).await;
        eprintln!("the API server's review beside 64 held requests: {code} in {took:?}");
        assert_eq!(code, 200, "the API server's review is answered");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
    assert!(metric(serve.health_port, "wpa_http_refused_total{reason=\"peer_requests\"}") >= 1.0);
    assert!(serve.log().contains("HTTPS request refused"), "refusals are logged");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_declaring_large_bodies_leaves_the_api_server_its_share() {
    let cluster = cluster().await;
    let (serve, ca) = serve(&cluster, &[]).await;
    // 3 MiB declared (the largest review) on 12 requests: 36 MiB, more than the 32 MiB byte budget.
    let mut held = Vec::new();
    for _ in 0..12 {
        let Ok(mut s) = tls_from("127.0.0.2", serve.webhook_port, &ca, b"http/1.1").await else { continue };
        hold_request(&mut s, 3 * 1024 * 1024, 0).await;
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, took) = legit_review(serve.webhook_port, &ca).await;
    assert_eq!(code, 200, "the API server's review is answered");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(metric(serve.health_port, "wpa_http_refused_total{reason=\"peer_bytes\"}") >= 1.0);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_holding_connections_leaves_the_api_server_its_share() {
    let cluster = cluster().await;
    let (serve, ca) = serve(&cluster, &["--max-connections", "64"]).await;
    let mut held = Vec::new();
    for _ in 0..64 {
        if let Ok(s) = tls_from("127.0.0.2", serve.webhook_port, &ca, b"http/1.1").await {
            held.push(s);
        }
    }
    assert!(held.len() <= 32 + 1, "one peer holds at most half of the connections ({} held)", held.len());
    let (code, took) = legit_review(serve.webhook_port, &ca).await;
    eprintln!("{} connections held by one peer; the API server's review: {code} in {took:?}", held.len());
    assert_eq!(code, 200);
    assert!(took < Duration::from_secs(3), "no wait for a connection slot: {took:?}");
    assert!(metric(serve.health_port, "wpa_http_refused_total{reason=\"peer_connections\"}") >= 1.0);
    drop(held);
}
