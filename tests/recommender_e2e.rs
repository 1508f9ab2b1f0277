//! What any WPA author can make the controller do through `spec.recommender.url`, against the real process:
//! a reply of hundreds of megabytes, a redirect to another host, an error page full of secrets, garbage
//! counts and timestamps. The recommender is a stub in a network namespace (an address that is neither
//! loopback nor link-local, as a recommender Service's would be), driven by the test.
//!
//! One scaling cluster for the binary; each test has its namespace, its stub and its `wpa serve`.

mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::any,
};
use devcluster::NetnsHost;
use support::{ScalingCluster, Shared, StartWpa, TestNamespace, WpaServe};

const SECOND: Duration = Duration::from_secs(1);
/// What an internal service answers: credentials.
const SECRET_PAGE: &str = r#"{"AccessKeyId":"AKIAFAKESECRET123","SecretAccessKey":"wJalrFAKE"}"#;

/// What the stub answers.
#[derive(Clone)]
enum Answer {
    /// 200 with this JSON.
    Reply(serde_json::Value),
    /// 200 with this many MiB of spaces, chunked (no Content-Length to refuse it by).
    Huge(usize),
    /// A redirect to this URL.
    Redirect(String),
    /// This status code with this body.
    Error(StatusCode, &'static str),
}

#[derive(Clone)]
struct Stub {
    answer: Arc<Mutex<Answer>>,
    calls: Arc<AtomicUsize>,
}

async fn answer(State(stub): State<Stub>) -> Response {
    stub.calls.fetch_add(1, Ordering::SeqCst);
    let answer = stub.answer.lock().unwrap().clone();
    match answer {
        Answer::Reply(json) => {
            ([(header::CONTENT_TYPE, "application/json")], json.to_string()).into_response()
        }
        Answer::Huge(mib) => {
            let chunks =
                futures::stream::iter((0..mib * 16).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024])));
            Body::from_stream(chunks).into_response()
        }
        Answer::Redirect(to) => (StatusCode::FOUND, [(header::LOCATION, to)]).into_response(),
        Answer::Error(code, body) => (code, body).into_response(),
    }
}

/// Serves `stub` on `host`'s address at a free port; returns `http://10.250.X.2:PORT`.
fn serve_in(host: &NetnsHost, app: Router) -> String {
    let listener = host.bind_tcp(0).expect("a port in the namespace");
    let addr = listener.local_addr().expect("an address");
    listener.set_nonblocking(true).expect("non-blocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A recommendation of `replicas`, made now.
fn reply(replicas: i64) -> serde_json::Value {
    serde_json::json!({"timestamp": jiff::Timestamp::now().to_string(), "targetReplicas": replicas,
        "lowerBoundReplicas": 0, "upperBoundReplicas": 0, "observedTargets": [{"type": "cpu", "targetValue": 0.5}],
        "reason": "stub"})
}

static CLUSTER: Shared<ScalingCluster> = Shared::new();

struct Setup {
    c: Arc<ScalingCluster>,
    stub: Stub,
    serve: WpaServe,
    // Dropped after the servers it hosts.
    _host: NetnsHost,
    ns: TestNamespace,
}

/// In the test's namespace of the binary's cluster, a Deployment of 2 under a WPA whose recommender is the
/// stub (answering `first`), and `wpa serve` for that namespace.
async fn setup(first: Answer) -> Setup {
    let c = CLUSTER.get(ScalingCluster::start).await;
    let namespace = TestNamespace::create(&c.cluster).await;
    let ns: &str = &namespace;
    let host = NetnsHost::create().expect("a network namespace");
    let stub = Stub { answer: Arc::new(Mutex::new(first)), calls: Arc::default() };
    let url = serve_in(&host, Router::new().route("/recommend", any(answer)).with_state(stub.clone()));
    c.deployment(ns, "app", 2).await.expect("deployment");
    let wpa = format!(
        r#"apiVersion: datadoghq.com/v1alpha1
kind: WatermarkPodAutoscaler
metadata: {{name: app, namespace: {ns}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: app}}
  minReplicas: 1
  maxReplicas: 20
  scaleUpLimitFactor: "50"
  upscaleForbiddenWindowSeconds: 1
  downscaleForbiddenWindowSeconds: 1
  recommender: {{url: "{url}/recommend", targetType: cpu, highWatermark: 800m, lowWatermark: 200m}}
"#
    );
    c.apply_wpa(&wpa).await.expect("the WPA");
    let serve = WpaServe::start(
        &c.cluster,
        ns,
        None,
        &["--no-webhook", "--sync-period", "1s", "--leader-elect=false", "--namespace", ns],
    )
    .await
    .expect("wpa serve");
    Setup { c, stub, serve, _host: host, ns: namespace }
}

/// The message of the WPA's ScalingActive condition once it is False.
async fn inactive_because(s: &Setup) -> String {
    s.c.wait_condition(&s.ns, "app", "ScalingActive", "False", "FailedGetResourceMetric", 30 * SECOND)
        .await
        .unwrap_or_else(|e| panic!("ScalingActive never turned False: {e:#}\n{}", s.serve.log()))
}

/// The spec.replicas values seen over `period`.
async fn replicas_over(c: &ScalingCluster, ns: &str, period: Duration) -> Vec<i32> {
    let begin = Instant::now();
    let mut seen = Vec::new();
    while begin.elapsed() < period {
        let (n, _) = c.scale(ns, "app").await.expect("the scale");
        if seen.last() != Some(&n) {
            seen.push(n);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_of_hundreds_of_megabytes_is_refused_and_never_held_in_memory() {
    let s = setup(Answer::Huge(300)).await;
    let message = inactive_because(&s).await;
    assert!(message.contains("the reply is larger than 262144 bytes"), "{message}");
    // A few more passes, each answered with 300 MiB.
    let calls = s.stub.calls.load(Ordering::SeqCst);
    support::wait_for(30 * SECOND, || async {
        if s.stub.calls.load(Ordering::SeqCst) >= calls + 3 {
            Ok(())
        } else {
            Err("fewer passes".to_string())
        }
    })
    .await
    .expect("the recommender is asked again");
    let peak = support::peak_rss_mib(s.serve.pid());
    eprintln!("peak RSS after {} replies of 300 MiB: {peak} MiB", s.stub.calls.load(Ordering::SeqCst));
    assert!(peak < 100, "peak RSS {peak} MiB (the pod's limit is 256 Mi; the reply was 300 MiB)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_host_is_not_followed_and_no_answer_body_reaches_the_status() {
    let host = NetnsHost::create().expect("a second address");
    let secret_calls = Arc::new(AtomicUsize::new(0));
    let counted = secret_calls.clone();
    let secret = Router::new().fallback(any(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async { (StatusCode::NOT_FOUND, SECRET_PAGE) }
    }));
    let internal = serve_in(&host, secret);
    let s =
        setup(Answer::Redirect(format!("{internal}/latest/meta-data/iam/security-credentials/node"))).await;
    let message = inactive_because(&s).await;
    assert!(message.contains("unexpected response code: 302 (Found)"), "{message}");
    assert_eq!(secret_calls.load(Ordering::SeqCst), 0, "the other host was never called");
    // The recommender itself answers an error page with secrets in it: its code is reported, never its body.
    *s.stub.answer.lock().unwrap() = Answer::Error(StatusCode::NOT_FOUND, SECRET_PAGE);
    support::wait_for(20 * SECOND, || async {
        let st = s.c.wpa_status(&s.ns, "app").await.map_err(|e| e.to_string())?;
        let m = st.conditions.iter().find(|c| c.type_ == "ScalingActive").and_then(|c| c.message.clone());
        if m.as_deref().is_some_and(|m| m.contains("unexpected response code: 404 (Not Found)")) {
            Ok(())
        } else {
            Err(format!("{m:?}"))
        }
    })
    .await
    .expect("the 404 is reported");
    let status = serde_json::to_string(&s.c.wpa_status(&s.ns, "app").await.unwrap()).unwrap();
    let events = s.c.cluster.kubectl(&["get", "events", "-n", &s.ns, "-o", "json"]);
    let everything = format!("{status}{}{}", String::from_utf8_lossy(&events.stdout), s.serve.log());
    assert!(!everything.contains("AKIA"), "a body reached the status, events or log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_recommendations_never_scale() {
    let s = setup(Answer::Reply(reply(-5))).await;
    for (garbage, why) in [
        (reply(-5), "negative count"),
        (reply(2_147_483_647), "more than 10 times maxReplicas 20"),
        (
            serde_json::json!({"timestamp": "2020-01-01T00:00:00Z", "targetReplicas": 12}),
            "more than --metric-max-age",
        ),
        (serde_json::json!({"timestamp": "2099-01-01T00:00:00Z", "targetReplicas": 12}), "in the future"),
    ] {
        *s.stub.answer.lock().unwrap() = Answer::Reply(garbage);
        support::wait_for(20 * SECOND, || async {
            let st = s.c.wpa_status(&s.ns, "app").await.map_err(|e| e.to_string())?;
            let active = st.conditions.iter().find(|c| c.type_ == "ScalingActive");
            match active.and_then(|c| c.message.clone()) {
                Some(m) if m.contains(why) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{why}: {e}"));
        assert_eq!(replicas_over(&s.c, &s.ns, 3 * SECOND).await, [2], "{why}: no scale");
    }
    // An honest answer scales: the setup could.
    *s.stub.answer.lock().unwrap() = Answer::Reply(reply(4));
    s.c.wait_scale(&s.ns, "app", 3, 30 * SECOND).await.expect("an honest recommendation scales");
}
