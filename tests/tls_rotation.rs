//! Certificate rotation the way kubelet updates a mounted Secret: the files are symlinks into `..data`, and
//! `..data` itself is atomically replaced by a rename. New connections must get the new certificate, and no
//! request may fail during the swap.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use support::tls::{kubelet_write, leaf_der};
use tokio_util::sync::CancellationToken;
use wpa::{
    runtime::http as server,
    runtime::registry::Registry,
    runtime::tls::{self, CertFiles, CertStore, SelfSigned},
    state::TargetIndex,
    webhook::{self, WebhookState},
};

fn client(cas: &[&SelfSigned], reuse_connections: bool) -> reqwest::Client {
    let pems: Vec<&str> = cas.iter().map(|ca| ca.ca_pem.as_str()).collect();
    let config = support::tls::client_config(&pems);
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .tls_info(true)
        .timeout(Duration::from_secs(5));
    if !reuse_connections {
        b = b.pool_max_idle_per_host(0);
    }
    b.build().expect("a client")
}

const REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"","version":"v1","kind":"ConfigMap"},"resource":{"group":"","version":"v1","resource":"configmaps"},"name":"c","namespace":"default","operation":"CREATE","userInfo":{},"object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_symlink_swap_rotates_the_certificate_without_failing_a_request() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let sans = ["127.0.0.1".to_string()];
    let first = tls::generate_self_signed(&sans).expect("first pair");
    let second = tls::generate_self_signed(&sans).expect("second pair");
    kubelet_write(dir.path(), "..2026_01_01_00_00_00.0001", &first);

    let store = CertStore::new();
    let shutdown = CancellationToken::new();
    let files = CertFiles { cert: dir.path().join("tls.crt"), key: dir.path().join("tls.key") };
    let stop = shutdown.clone();
    files
        .serve_into(store.clone(), Duration::from_millis(100), async move { stop.cancelled().await })
        .await
        .expect("first load");
    let listener = server::bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = WebhookState::new(TargetIndex::new(), &Registry::new(), Default::default());
    let srv = tokio::spawn(server::serve_tls(
        listener,
        tls::server_config(store).expect("config"),
        vec![webhook::edge(state)],
        server::Limits::default(),
        server::HttpStats::register(&Registry::new()),
        shutdown.clone(),
    ));

    let url = format!("https://127.0.0.1:{}/validate?timeout=5s", addr.port());
    // Requests flow on fresh connections and on kept-alive ones while the Secret rotates.
    let (done, ok, failed) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut streams = Vec::new();
    for reuse in [false, true, false, true] {
        let (c, url, done, ok, failed) =
            (client(&[&first, &second], reuse), url.clone(), done.clone(), ok.clone(), failed.clone());
        streams.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                match c.post(&url).header("content-type", "application/json").body(REVIEW).send().await {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        eprintln!("status {}", r.status());
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("request failed: {e:?}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let served_leaf = |c: reqwest::Client| {
        let url = url.clone();
        async move {
            let r = c.post(&url).body(REVIEW).send().await.expect("a response");
            r.extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(|i| i.peer_certificate().map(<[u8]>::to_vec))
                .expect("a peer certificate")
        }
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(served_leaf(client(&[&first], false)).await, leaf_der(&first.cert_pem));

    kubelet_write(dir.path(), "..2026_01_01_01_00_00.0002", &second);
    std::fs::remove_dir_all(dir.path().join("..2026_01_01_00_00_00.0001")).expect("old revision removed");
    let started = Instant::now();
    loop {
        let leaf = served_leaf(client(&[&first, &second], false)).await;
        if leaf == leaf_der(&second.cert_pem) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the new certificate was not picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("rotation picked up after {:?}", started.elapsed());
    // A client that trusts only the new CA now connects.
    assert_eq!(served_leaf(client(&[&second], false)).await, leaf_der(&second.cert_pem));
    tokio::time::sleep(Duration::from_millis(300)).await;
    done.store(true, Ordering::Relaxed);
    for s in streams {
        s.await.expect("a request stream");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{ok} requests succeeded during the rotation, {failed} failed");
    assert!(ok > 50, "the streams ran ({ok} requests)");
    assert_eq!(failed, 0);
    shutdown.cancel();
    srv.await.expect("server task");
}

#[tokio::test]
async fn a_broken_rotation_keeps_the_previous_certificate() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let first = tls::generate_self_signed(&["127.0.0.1".to_string()]).expect("pair");
    kubelet_write(dir.path(), "..rev1", &first);
    let store = CertStore::new();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let files = CertFiles { cert: dir.path().join("tls.crt"), key: dir.path().join("tls.key") };
    files
        .serve_into(store.clone(), Duration::from_millis(50), async move { stop.cancelled().await })
        .await
        .expect("load");
    let before = store.leaf_der();
    // A revision whose key does not match its certificate.
    let other = tls::generate_self_signed(&["127.0.0.1".to_string()]).expect("pair");
    let torn = SelfSigned {
        ca_pem: other.ca_pem.clone(),
        cert_pem: other.cert_pem.clone(),
        key_pem: first.key_pem.clone(),
    };
    kubelet_write(dir.path(), "..rev2", &torn);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.leaf_der(), before, "the previous certificate keeps serving");
    shutdown.cancel();
}
