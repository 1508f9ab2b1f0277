//! A kube-scheduler HTTP extender: `POST /scheduler/filter` and `/scheduler/prioritize`.
//!
//! It keeps the replicas of a WPA target spread so that losing one node (or one zone) keeps at least
//! `minAvailableReplicaPercentage` of them, the gate below which WPA stops autoscaling. The policy is in
//! `policy.rs` (pure); this module is the wire and the HTTP.
//!
//! Scheduler configuration (1.20–1.22 `kubescheduler.config.k8s.io/v1beta1`, `v1` from 1.25):
//! `urlPrefix: https://…/scheduler`, `filterVerb: filter`, `prioritizeVerb: prioritize`, `weight: 3`,
//! `nodeCacheCapable: true`, `ignorable: true`, `httpTimeout: 1s`. The scheduler POSTs
//! `TrimRight(urlPrefix, "/") + "/" + verb`, so `/scheduler//filter` and `/scheduler/filter/` are the
//! same verb here. `nodeCacheCapable: false` is served too (full Node objects both ways).
//!
//! Failure behaviour: a body that is not `ExtenderArgs` gets 400 (the scheduler counts any non-200 as an
//! extender error, skipped when `ignorable`); anything that goes wrong after that fails open: filter passes
//! every candidate, prioritize scores every candidate [`policy::NEUTRAL_SCORE`]. The answer never carries an empty
//! or null `NodeNames` for a non-empty candidate list, because that rejects every node.

mod policy;
mod report;
mod view;
mod wire;

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};

use crate::runtime::http::{Rejection, json_error, read_body};

#[cfg(test)]
use policy::{Autoscaler, Level, NEUTRAL_SCORE, NodeState, Owner, Target, TargetPod};
use policy::{FilterOutcome, Ledger, PrioritizeOutcome};
pub(crate) use policy::{Infeasible, Mode, NoOpinion, View};
pub(crate) use report::observer;
pub(crate) use view::ClusterView;
use wire::{ExtenderArgs, HostPriority, NodeList, NodeListOut};

/// The largest request body. With `nodeCacheCapable: true` a request is a pod and names (2.5 KB
/// measured); with `false` 1.20 sends up to ~500 full Nodes of 5–20 KB each.
pub(crate) const MAX_BODY: usize = 16 * 1024 * 1024;
/// The scheduler's default `httpTimeout`; a body slower than that is answered to nobody.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// An extender verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    Filter,
    Prioritize,
}

impl Verb {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verb::Filter => "filter",
            Verb::Prioritize => "prioritize",
        }
    }
}

/// What one decision did, handed to the observer after every decided request (not after a 4xx).
#[derive(Debug)]
pub(crate) struct Report<'a> {
    pub verb: Verb,
    pub namespace: &'a str,
    pub pod: &'a str,
    pub mode: Mode,
    /// Budgets that could not be kept (filter only): each is a metric and an Event on the WPA.
    pub infeasible: &'a [Infeasible],
    pub elapsed: Duration,
}

/// Called with every [`Report`]; it runs on the request path, so it must not block.
pub(crate) type Observer = Arc<dyn Fn(&Report<'_>) + Send + Sync>;

/// The extender's shared state: the caches, the ledger of recent placements, and the observer.
#[derive(Clone)]
pub(crate) struct ExtenderState {
    view: Arc<dyn View>,
    ledger: Arc<Mutex<Ledger>>,
    observer: Option<Observer>,
}

impl ExtenderState {
    pub(crate) fn new(view: Arc<dyn View>) -> ExtenderState {
        ExtenderState { view, ledger: Arc::new(Mutex::new(Ledger::default())), observer: None }
    }

    /// Calls `observer` after every decision, e.g. to count infeasible budgets and record Events.
    pub(crate) fn with_observer(
        mut self,
        observer: impl Fn(&Report<'_>) + Send + Sync + 'static,
    ) -> ExtenderState {
        self.observer = Some(Arc::new(observer));
        self
    }
}

/// The extender's routes as an edge of the HTTPS port: ExtenderArgs up to [`MAX_BODY`].
pub(crate) fn edge(state: ExtenderState) -> crate::runtime::http::Edge {
    crate::runtime::http::Edge { router: router(state), max_body: MAX_BODY }
}

/// The extender's routes, to be merged into a server's router. Every path under `/scheduler/` is taken:
/// the two verbs, in any slash variation, and a JSON 404 for any other (a misconfigured `bindVerb` or
/// `preemptVerb` should be loud, not silently ignored).
pub(crate) fn router(state: ExtenderState) -> Router {
    Router::new()
        .route("/scheduler/{*verb}", post(handle))
        // `urlPrefix: https://host/` with `filterVerb: /scheduler/filter` POSTs `//scheduler/filter`.
        .route("//scheduler/{*verb}", post(handle))
        .with_state(state)
}

fn json_ok(body: Vec<u8>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn verb_of(path: &str) -> Option<Verb> {
    let rest = path.trim_start_matches('/').strip_prefix("scheduler")?;
    match rest.trim_matches('/') {
        "filter" => Some(Verb::Filter),
        "prioritize" => Some(Verb::Prioritize),
        _ => None,
    }
}

/// A request that reached a decision, and its candidates.
struct Decoded {
    /// The full Node objects, when the scheduler sent them instead of names (`nodeCacheCapable: false`):
    /// the filter answer must carry the passing ones back.
    nodes: Option<NodeList>,
    pod: wire::Pod,
    candidates: Vec<String>,
}

/// An ExtenderArgs that is not one: answered 400 by the edge's [`Rejection`].
fn malformed(what: impl std::fmt::Display) -> Rejection {
    Rejection::Malformed(format!("the body is not a scheduler ExtenderArgs: {what}"))
}

async fn read(request: Request) -> Result<Decoded, Rejection> {
    let body: Body = request.into_body();
    let bytes = read_body(body, MAX_BODY, BODY_TIMEOUT).await?;
    // serde would also read a struct from a JSON array; Go's decoder, like us, wants an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(malformed("expected a JSON object"));
    }
    let mut args: ExtenderArgs = serde_json::from_slice(&bytes).map_err(malformed)?;
    let pod = args.pod.take().ok_or_else(|| Rejection::Malformed("the ExtenderArgs has no Pod".into()))?;
    let (candidates, nodes) = match (args.node_names, args.nodes) {
        // Names in, names out.
        (Some(names), _) => (names, None),
        (None, Some(list)) => {
            let names = list
                .items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    NodeList::name_of(item)
                        .map(str::to_owned)
                        .ok_or_else(|| Rejection::Malformed(format!("Nodes.items[{i}] has no metadata.name")))
                })
                .collect::<Result<_, _>>()?;
            (names, Some(list))
        }
        (None, None) => {
            return Err(Rejection::Malformed("the ExtenderArgs carries neither NodeNames nor Nodes".into()));
        }
    };
    Ok(Decoded { nodes, pod, candidates })
}

async fn handle(State(state): State<ExtenderState>, request: Request) -> Response {
    let Some(verb) = verb_of(request.uri().path()) else {
        return json_error(
            StatusCode::NOT_FOUND,
            format!(
                "{} is not an extender verb served here: only filter and prioritize",
                request.uri().path()
            ),
        );
    };
    let started = Instant::now();
    let decoded = match read(request).await {
        Ok(d) => d,
        Err(rejection) => {
            tracing::debug!(error = %rejection, "scheduler extender: request rejected");
            return rejection.into_response();
        }
    };
    match verb {
        Verb::Filter => filter(&state, decoded, started),
        Verb::Prioritize => prioritize(&state, decoded, started),
    }
}

fn observe(state: &ExtenderState, report: Report<'_>) {
    for i in report.infeasible {
        tracing::info!(
            namespace = %i.target.namespace,
            wpa = %i.autoscaler,
            level = i.level.as_str(),
            message = %i.message,
            "scheduler extender: budget infeasible"
        );
    }
    if let Some(observer) = &state.observer {
        // The observer is the caller's code; a panic there must not turn into a scheduling failure.
        if catch_unwind(AssertUnwindSafe(|| observer(&report))).is_err() {
            tracing::error!("scheduler extender: the observer panicked");
        }
    }
}

fn filter(state: &ExtenderState, decoded: Decoded, started: Instant) -> Response {
    let Decoded { nodes, pod, candidates } = decoded;
    let names: Vec<&str> = candidates.iter().map(String::as_str).collect();
    let now = Instant::now();
    let outcome = {
        let mut ledger = state.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        catch_unwind(AssertUnwindSafe(|| policy::filter(&*state.view, &mut ledger, &pod, &names, now)))
    };
    let outcome = outcome.unwrap_or_else(|_| {
        tracing::error!(namespace = %pod.metadata.namespace, pod = %pod.metadata.name,
            "scheduler extender: filter panicked; passing every node");
        FilterOutcome {
            passed: candidates.clone(),
            allowed: candidates.clone(),
            failed: Default::default(),
            mode: Mode::NoOpinion(NoOpinion::Internal),
            infeasible: Vec::new(),
        }
    });
    tracing::debug!(namespace = %pod.metadata.namespace, pod = %pod.metadata.name, mode = outcome.mode.as_str(),
        candidates = candidates.len(), passed = outcome.passed.len(), "scheduler extender: filter");
    // Full Node objects go back only to a scheduler that sent them (nodeCacheCapable: false).
    let nodes = nodes.map(|list| {
        let passed: foldhash::HashSet<&str> = outcome.passed.iter().map(String::as_str).collect();
        NodeListOut {
            metadata: Default::default(),
            items: list
                .items
                .into_iter()
                .filter(|item| NodeList::name_of(item).is_some_and(|n| passed.contains(n)))
                .collect(),
        }
    });
    let body = wire::encode_filter_result(nodes.as_ref(), &outcome.passed, &outcome.failed);
    observe(
        state,
        Report {
            verb: Verb::Filter,
            namespace: &pod.metadata.namespace,
            pod: &pod.metadata.name,
            mode: outcome.mode,
            infeasible: &outcome.infeasible,
            elapsed: started.elapsed(),
        },
    );
    match body {
        Ok(body) => json_ok(body),
        // Serializing strings and maps cannot fail; if it did, an echo is the fail-open answer.
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the answer: {e}")),
    }
}

fn prioritize(state: &ExtenderState, decoded: Decoded, started: Instant) -> Response {
    let Decoded { pod, candidates, .. } = decoded;
    let names: Vec<&str> = candidates.iter().map(String::as_str).collect();
    let now = Instant::now();
    let outcome = {
        let mut ledger = state.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        catch_unwind(AssertUnwindSafe(|| policy::prioritize(&*state.view, &mut ledger, &pod, &names, now)))
    };
    let PrioritizeOutcome { scores, mode } = outcome.unwrap_or_else(|_| {
        tracing::error!(namespace = %pod.metadata.namespace, pod = %pod.metadata.name,
            "scheduler extender: prioritize panicked; neutral scores");
        policy::neutral(&names, Mode::NoOpinion(NoOpinion::Internal))
    });
    let list: Vec<HostPriority> =
        scores.into_iter().map(|(host, score)| HostPriority { host, score }).collect();
    // Cannot fail for strings and integers; `[]` would still be neutral (no host gets a score).
    let body = serde_json::to_vec(&list).unwrap_or_else(|_| b"[]".to_vec());
    observe(
        state,
        Report {
            verb: Verb::Prioritize,
            namespace: &pod.metadata.namespace,
            pod: &pod.metadata.name,
            mode,
            infeasible: &[],
            elapsed: started.elapsed(),
        },
    );
    json_ok(body)
}

#[cfg(test)]
mod tests;
