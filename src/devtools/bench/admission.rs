//! `wpa bench admission`: the webhook over TLS keep-alive, against a bare axum+rustls handler that returns a
//! fixed AdmissionReview, both served by a child process and loaded by this one over the same 32 connections.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::body::Bytes;
use axum::{Router, routing::post};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::{io::AsyncBufReadExt, net::TcpStream, sync::mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    api::WatermarkPodAutoscaler,
    runtime::http as server,
    runtime::registry::Registry,
    runtime::tls::{self, CertFiles, CertStore},
    state::TargetIndex,
    webhook::{self, WebhookState},
};

pub(crate) const CONNECTIONS: usize = 32;
pub(crate) const LATENCY_RATE: f64 = 2000.0;

/// What the child serves.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The real webhook with an in-memory index of 1,000 WPAs.
    Webhook,
    /// A handler that reads the body and returns a fixed AdmissionReview.
    Bare,
}

fn wpa_json(name: &str, target: &str, defaulted: bool) -> Value {
    let mut spec = json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "minReplicas": 2, "maxReplicas": 20,
        "metrics": [{"type": "External", "external": {"metricName": "nginx.net.request_per_s",
            "metricSelector": {"matchLabels": {"app": target, "env": "prod"}}, "highWatermark": "100", "lowWatermark": "70"}}]
    });
    if defaulted {
        for (k, v) in [
            ("algorithm", json!("average")),
            ("tolerance", json!("100m")),
            ("scaleUpLimitFactor", json!("50")),
            ("scaleDownLimitFactor", json!("20")),
            ("downscaleForbiddenWindowSeconds", json!(300)),
            ("upscaleForbiddenWindowSeconds", json!(60)),
            ("replicaScalingAbsoluteModulo", json!(1)),
        ] {
            spec[k] = v;
        }
    }
    json!({"apiVersion": "datadoghq.com/v1alpha1", "kind": "WatermarkPodAutoscaler",
           "metadata": {"name": name, "namespace": "default", "annotations": {"wpa.datadoghq.com/logs-attributes": "{\"team\":\"web\"}"}},
           "spec": spec})
}

/// A Deployment the size kubectl sends (managedFields included).
fn deployment_json(name: &str, replicas: i64) -> Value {
    let containers: Vec<Value> = (0..3)
        .map(|i| {
            json!({"name": format!("c{i}"), "image": "registry.example.com/team/web:1.2.3",
                   "ports": [{"containerPort": 8080 + i, "protocol": "TCP"}],
                   "env": (0..10).map(|e| json!({"name": format!("VAR_{e}"), "value": "some configuration value"})).collect::<Vec<_>>(),
                   "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}})
        })
        .collect();
    let managed: Vec<Value> = (0..4)
        .map(|i| json!({"manager": format!("manager-{i}"), "operation": "Update", "apiVersion": "apps/v1", "time": "2026-01-01T00:00:00Z",
                        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"c0\"}": {".": {}, "f:image": {}}}}}}}}))
        .collect();
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name, "namespace": "default", "labels": {"app": name}, "managedFields": managed,
                        "annotations": {"deployment.kubernetes.io/revision": "7"}},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}}}})
}

fn review(group: &str, kind: &str, op: &str, object: Value) -> Vec<u8> {
    let v = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "bench-uid", "kind": {"group": group, "version": "v1", "kind": kind},
        "resource": {"group": group, "version": "v1", "resource": "x"},
        "name": object["metadata"]["name"], "namespace": "default", "operation": op,
        "userInfo": {"username": "admin", "groups": ["system:masters"]}, "object": object, "dryRun": false}});
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The three request kinds measured.
pub(crate) fn workloads() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    vec![
        (
            "WPA validate",
            "/validate",
            review("datadoghq.com", "WatermarkPodAutoscaler", "CREATE", wpa_json("web-wpa", "web", true)),
        ),
        (
            "WPA mutate",
            "/mutate",
            review("datadoghq.com", "WatermarkPodAutoscaler", "CREATE", wpa_json("web-wpa", "web", false)),
        ),
        (
            "Deployment mutate",
            "/mutate",
            review("apps", "Deployment", "UPDATE", deployment_json("app-7", 50)),
        ),
    ]
}

/// The real webhook with an in-memory index of 1,000 WPAs.
fn webhook_router() -> Result<Router, String> {
    let wpas = (0..1000)
        .map(|i| {
            serde_json::from_value::<WatermarkPodAutoscaler>(wpa_json(
                &format!("wpa-{i}"),
                &format!("app-{i}"),
                true,
            ))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let state =
        WebhookState::new(TargetIndex::from_objects(&wpas, &[]), &Registry::new(), Default::default());
    Ok(webhook::router(state))
}

/// Reads the body and returns a fixed AdmissionReview.
fn bare_router() -> Router {
    let fixed = Bytes::from(
        serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {"uid": "bench-uid", "allowed": true, "status": {}}}))
        .unwrap_or_default(),
    );
    let answer = move |body: Bytes| {
        let fixed = fixed.clone();
        async move {
            drop(body);
            ([("content-type", "application/json")], fixed)
        }
    };
    Router::new().route("/validate", post(answer.clone())).route("/mutate", post(answer))
}

/// Exactly `n` requests of workload `case` through the router in process, so that an instruction counter
/// can divide (the router is built either way, so a run of none measures the setup).
pub(crate) async fn count(n: u64, case: usize, bare: bool) -> Result<String, String> {
    use tower::ServiceExt;
    let work = workloads();
    let (name, path, body) = work.get(case).ok_or("--case is 0, 1 or 2")?;
    let router = if bare { bare_router() } else { webhook_router()? };
    let body = Bytes::from(body.clone());
    for _ in 0..n {
        let req = axum::http::Request::post(format!("{path}?timeout=10s"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.clone()))
            .map_err(|e| e.to_string())?;
        let resp = router.clone().oneshot(req).await.map_err(|e| e.to_string())?;
        if resp.status() != 200 {
            return Err(format!("status {}", resp.status()));
        }
        std::hint::black_box(resp.into_body().collect().await.map_err(|e| e.to_string())?);
    }
    Ok(format!("admission: {n} {} requests ({})", if bare { "bare" } else { "webhook" }, name))
}

/// The child: serves `mode` on 127.0.0.1 and prints its port.
pub(crate) async fn serve_child(mode: Mode, cert: PathBuf, key: PathBuf) -> Result<(), String> {
    let store = CertStore::new();
    let shutdown = CancellationToken::new();
    CertFiles { cert, key }
        .serve_into(store.clone(), Duration::from_secs(3600), std::future::pending())
        .await
        .map_err(|e| e.to_string())?;
    let app = match mode {
        Mode::Webhook => webhook_router()?,
        Mode::Bare => bare_router(),
    };
    let listener =
        server::bind("127.0.0.1:0".parse().map_err(|e| format!("{e}"))?).await.map_err(|e| e.to_string())?;
    println!("{}", listener.local_addr().map_err(|e| e.to_string())?.port());
    let tls = tls::server_config(store).map_err(|e| e.to_string())?;
    // The webhook's own limit on both sides: the bare handler is measured through the same edge.
    let edge = server::Edge { router: app, max_body: crate::webhook::MAX_BODY };
    let stats = server::HttpStats::register(&crate::runtime::registry::Registry::new());
    server::serve_tls(listener, tls, vec![edge], server::Limits::default(), stats, shutdown).await;
    Ok(())
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(port: u16, ca_pem: &str) -> Result<Sender, String> {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?.to_owned();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn send(sender: &mut Sender, path: &str, body: &Bytes) -> Result<(), String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let req = hyper::Request::post(format!("{path}?timeout=5s"))
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let _ = resp.into_body().collect().await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("status {status}"));
    }
    Ok(())
}

/// Closed loop: every connection sends back to back for `seconds`. The connections are handed back.
async fn throughput(
    senders: Vec<Sender>,
    path: &'static str,
    body: Bytes,
    seconds: f64,
) -> Result<(f64, Vec<Sender>), String> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|mut s| {
            let body = body.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    send(&mut s, path, &body).await?;
                    n += 1;
                }
                Ok::<(u64, Sender), String>((n, s))
            })
        })
        .collect();
    let (mut total, mut back) = (0, Vec::new());
    for t in tasks {
        let (n, s) = t.await.map_err(|e| e.to_string())??;
        total += n;
        back.push(s);
    }
    Ok((total as f64 / started.elapsed().as_secs_f64(), back))
}

/// Open loop at `rate` requests per second spread over the connections; latency counts from the scheduled
/// send time, so queueing is included. Returns p50 and p99 in milliseconds and the connections.
async fn latency(
    senders: Vec<Sender>,
    path: &'static str,
    body: Bytes,
    rate: f64,
    seconds: f64,
) -> Result<(f64, f64, Vec<Sender>), String> {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<Duration, String>>();
    let mut queues = Vec::new();
    let mut tasks = Vec::new();
    for mut s in senders {
        let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
        let (done_tx, body) = (done_tx.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(scheduled) = rx.recv().await {
                let r = send(&mut s, path, &body).await.map(|()| scheduled.elapsed());
                let _ = done_tx.send(r);
            }
            s
        }));
        queues.push(tx);
    }
    drop(done_tx);
    let total = (rate * seconds) as usize;
    // Tokio's timer has a 1 ms granularity, coarser than the 0.5 ms between sends: a dedicated thread
    // dispatches at the intended instants, and latency counts from them.
    let dispatcher = std::thread::spawn(move || {
        let start = Instant::now();
        for i in 0..total {
            let at = start + Duration::from_secs_f64(i as f64 / rate);
            // Sleeping (not spinning) keeps this thread off the two cores the servers need; a late wake-up
            // only adds to the measured latency, never hides it.
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let _ = queues[i % queues.len()].send(at);
        }
    });
    tokio::task::spawn_blocking(move || dispatcher.join())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|_| "the dispatcher panicked")?;
    let mut samples = Vec::with_capacity(total);
    while let Some(r) = done_rx.recv().await {
        samples.push(r?);
    }
    let mut back = Vec::new();
    for t in tasks {
        back.push(t.await.map_err(|e| e.to_string())?);
    }
    samples.sort();
    let pct = |p: f64| {
        samples
            .get(((samples.len() as f64 * p) as usize).min(samples.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok((pct(0.50), pct(0.99), back))
}

pub(crate) fn peak_rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

struct Child {
    child: tokio::process::Child,
    port: u16,
}

async fn spawn_child(exe: &Path, mode: &str, dir: &Path) -> Result<Child, String> {
    let mut child = tokio::process::Command::new(exe)
        .args(["bench", "admission-server", "--mode", mode, "--cert"])
        .arg(dir.join("tls.crt"))
        .arg("--key")
        .arg(dir.join("tls.key"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the benchmark server: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    tokio::io::BufReader::new(stdout).read_line(&mut line).await.map_err(|e| e.to_string())?;
    let port =
        line.trim().parse().map_err(|_| format!("the benchmark server did not print its port: {line:?}"))?;
    Ok(Child { child, port })
}

/// Runs the benchmark: interleaved throughput rounds of every case (both servers up, so the bare baseline
/// and the webhook share the machine's state), then interleaved latency rounds of each case at 2,000
/// requests/s. The host's load comes in bursts that swamp a difference of a few microseconds: a case is
/// compared with the bare handler of the same round, and medians over rounds are reported. `seconds` per
/// case and phase.
pub(crate) async fn run(seconds: f64) -> Result<String, String> {
    const ROUNDS: usize = 10;
    const LATENCY_ROUNDS: usize = 5;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = tempfile_dir()?;
    let certs = tls::generate_self_signed(&["127.0.0.1".into()]).map_err(|e| e.to_string())?;
    tls::write_file(&dir.join("tls.crt"), &certs.cert_pem).map_err(|e| e.to_string())?;
    tls::write_file(&dir.join("tls.key"), &certs.key_pem).map_err(|e| e.to_string())?;
    let mut bare = spawn_child(&exe, "bare", &dir).await?;
    let mut hook = spawn_child(&exe, "webhook", &dir).await?;
    let mut cases: Vec<(&'static str, &'static str, Bytes, u16, Vec<Sender>)> = Vec::new();
    let work = workloads();
    cases.push(("bare handler", "/validate", Bytes::from(work[0].2.clone()), bare.port, Vec::new()));
    for (name, path, body) in work {
        cases.push((name, path, Bytes::from(body), hook.port, Vec::new()));
    }
    for case in &mut cases {
        for _ in 0..CONNECTIONS {
            case.4.push(connect(case.3, &certs.ca_pem).await?);
        }
        let (_, warm) = throughput(std::mem::take(&mut case.4), case.1, case.2.clone(), 0.5).await?;
        case.4 = warm;
    }
    let mut rps: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..ROUNDS {
        let mut this = vec![0.0; cases.len()];
        // Forward, then backward: a drift over a round weighs on every case alike.
        let order: Vec<usize> =
            if round % 2 == 0 { (0..cases.len()).collect() } else { (0..cases.len()).rev().collect() };
        for i in order {
            let case = &mut cases[i];
            let (r, back) =
                throughput(std::mem::take(&mut case.4), case.1, case.2.clone(), seconds / ROUNDS as f64)
                    .await?;
            this[i] = r;
            case.4 = back;
        }
        for (i, r) in this.iter().enumerate() {
            rps[i].push(*r);
            ratios[i].push(r / this[0]);
        }
    }
    // Fresh, warmed connections: the server closes keep-alive connections idle for longer than its header
    // timeout (10 s).
    for case in &mut cases {
        let mut fresh = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            fresh.push(connect(case.3, &certs.ca_pem).await?);
        }
        let (_, warm) = throughput(fresh, case.1, case.2.clone(), 0.2).await?;
        case.4 = warm;
    }
    let mut p50s: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut p99s: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..LATENCY_ROUNDS {
        for (i, case) in cases.iter_mut().enumerate() {
            let (p50, p99, back) = latency(
                std::mem::take(&mut case.4),
                case.1,
                case.2.clone(),
                LATENCY_RATE,
                seconds / LATENCY_ROUNDS as f64,
            )
            .await?;
            p50s[i].push(p50);
            p99s[i].push(p99);
            case.4 = back;
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut out = format!(
        "admission over TLS keep-alive, {CONNECTIONS} connections; the load generator runs on the same machine\n\
         throughput: {ROUNDS} interleaved rounds, median req/s, median of each round's ratio to the bare handler\n\
         latency: open loop at {LATENCY_RATE:.0} requests/s, {LATENCY_ROUNDS} interleaved rounds of {:.1}s, median of the rounds' p50 and p99 (worst round's p99 in brackets)\n\
         {:<20} {:>12} {:>10} {:>14} {:>14} {:>12}\n",
        seconds / LATENCY_ROUNDS as f64,
        "request",
        "req/s (max)",
        "vs bare",
        "p50 @2000/s",
        "p99 @2000/s",
        "(worst)"
    );
    for i in 0..cases.len() {
        let worst = p99s[i].iter().copied().fold(0.0, f64::max);
        out.push_str(&format!(
            "{:<20} {:>12.0} {:>9.2}× {:>11.3} ms {:>11.3} ms {:>9.3} ms\n",
            cases[i].0,
            median(&mut rps[i]),
            median(&mut ratios[i]),
            median(&mut p50s[i]),
            median(&mut p99s[i]),
            worst,
        ));
    }
    if let Some((rss, peak)) = hook.child.id().and_then(peak_rss_mib) {
        out.push_str(&format!(
            "webhook server memory: {rss:.1} MiB resident after the run, {peak:.1} MiB peak (VmHWM)\n"
        ));
    }
    let _ = bare.child.kill().await;
    let _ = hook.child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

fn tempfile_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("wpa-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}
