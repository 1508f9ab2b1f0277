//! The admission webhook: `/validate` and `/mutate`, each dispatching on the request's kind.
//!
//! AdmissionReview `admission.k8s.io/v1` and `v1beta1` are both accepted and answered in the version asked;
//! the response always echoes the request's uid. A body that is not an AdmissionReview gets `400` with a JSON
//! error, a body over 3 MiB gets `413`. The API server's `?timeout=` bounds the whole request: a body that
//! does not arrive in time is answered, never waited for. Dry-run requests get the same answer (the rules
//! have no side effects).

pub(crate) mod metrics;
pub(crate) mod review;
pub(crate) mod rules;
pub(crate) mod scan;

use std::{
    sync::Arc,
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

use crate::{
    api,
    engine::validation::AdmissionLimits,
    runtime::{
        http::{Rejection, json_error, read_body},
        registry::Registry,
    },
    state::TargetIndex,
};
use metrics::{AdmissionLabels, AdmissionStats};
use review::{ObjectIn, RequestIn, ResponseOut, ReviewIn, ReviewOut, StatusOut};
pub(crate) use rules::{Op, Verdict};

/// The largest AdmissionReview accepted (the API server's own request limit is 3 MiB).
pub(crate) const MAX_BODY: usize = 3 * 1024 * 1024;
/// The API server's default webhook timeout, used when `?timeout=` is absent.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Flags of the webhook's own bounds (part of `wpa serve`).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct AdmissionArgs {
    /// The largest minReplicas and maxReplicas a WPA may have (upstream admits 2147483647, which scales a
    /// Deployment to two billion pods in one pass).
    #[arg(long, env = "WPA_ADMISSION_MAX_REPLICAS", default_value_t = AdmissionLimits::DEFAULT_MAX_REPLICAS,
          value_parser = clap::value_parser!(i32).range(1..))]
    pub(crate) admission_max_replicas: i32,
    /// The largest scaleUpLimitFactor (percent per scale-up) a WPA may have.
    #[arg(long, env = "WPA_ADMISSION_MAX_SCALE_UP_LIMIT_FACTOR",
          default_value_t = AdmissionLimits::DEFAULT_MAX_SCALE_UP_LIMIT_FACTOR,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub(crate) admission_max_scale_up_limit_factor: i64,
}

impl AdmissionArgs {
    pub(crate) fn limits(&self, allow_local_recommenders: bool) -> AdmissionLimits {
        AdmissionLimits {
            max_replicas: self.admission_max_replicas,
            max_scale_up_limit_factor: self.admission_max_scale_up_limit_factor,
            allow_local_recommenders,
        }
    }
}

#[derive(Clone)]
pub struct WebhookState {
    index: Arc<TargetIndex>,
    stats: Arc<AdmissionStats>,
    /// The bounds added to upstream's rules.
    limits: AdmissionLimits,
}

impl WebhookState {
    /// The webhook reading `index`, with its series registered in `registry`.
    pub fn new(index: Arc<TargetIndex>, registry: &Registry, limits: AdmissionLimits) -> WebhookState {
        WebhookState { index, stats: AdmissionStats::register(registry), limits }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Validate,
    Mutate,
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// The webhook's routes as an edge of the HTTPS port: AdmissionReviews up to [`MAX_BODY`].
pub fn edge(state: WebhookState) -> crate::runtime::http::Edge {
    crate::runtime::http::Edge { router: router(state), max_body: MAX_BODY }
}

/// The webhook's routes.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/validate", post(|s: State<WebhookState>, r: Request| handle(s, Endpoint::Validate, r)))
        .route("/mutate", post(|s: State<WebhookState>, r: Request| handle(s, Endpoint::Mutate, r)))
        .with_state(state)
}

/// The `timeout` query parameter the API server appends (`?timeout=10s`), within the 1 s to 30 s the API
/// server can send: a client cannot switch off the body deadline with a huge one.
pub fn parse_timeout(query: Option<&str>) -> Option<Duration> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("timeout="))
        .and_then(crate::api::duration::parse_duration)
        .map(|t| t.clamp(Duration::from_secs(1), Duration::from_secs(30)))
}

/// The longest denial message sent back: a message quotes the values it refuses, and a value may be
/// megabytes long.
const MAX_MESSAGE: usize = 4096;

/// `message`, cut to [`MAX_MESSAGE`] bytes (on a character boundary) with a note of what was left out.
fn bounded(message: String) -> String {
    if message.len() <= MAX_MESSAGE {
        return message;
    }
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &message[..end], message.len() - end)
}

struct Answer {
    response: Response,
    labels: AdmissionLabels,
}

async fn handle(State(state): State<WebhookState>, endpoint: Endpoint, request: Request) -> Response {
    let started = Instant::now();
    let timeout = parse_timeout(request.uri().query()).unwrap_or(DEFAULT_TIMEOUT);
    // Leave the API server time to read the answer.
    let budget = timeout.mul_f64(0.8);
    let answer = match tokio::time::timeout(budget, answer(&state, endpoint, request, budget)).await {
        Ok(a) => a,
        Err(_) => rejected(endpoint, Rejection::Slow(budget)),
    };
    state.stats.record(&answer.labels, started.elapsed().as_secs_f64());
    answer.response
}

fn labels(
    endpoint: Endpoint,
    kind: &str,
    operation: &str,
    allowed: bool,
    reason: &'static str,
) -> AdmissionLabels {
    AdmissionLabels {
        webhook: endpoint.label(),
        kind: match kind {
            "" => "",
            api::KIND => api::KIND,
            "Deployment" => "Deployment",
            "StatefulSet" => "StatefulSet",
            _ => "other",
        },
        operation: match operation {
            "" => "",
            "CREATE" => "CREATE",
            "UPDATE" => "UPDATE",
            "DELETE" => "DELETE",
            "CONNECT" => "CONNECT",
            _ => "other",
        },
        allowed: if allowed { "true" } else { "false" },
        reason,
    }
}

/// A request that got no decision, answered and counted.
fn rejected(endpoint: Endpoint, r: Rejection) -> Answer {
    let labels = labels(endpoint, "", "", false, r.reason());
    Answer { response: r.into_response(), labels }
}

async fn answer(state: &WebhookState, endpoint: Endpoint, request: Request, deadline: Duration) -> Answer {
    let body: Body = request.into_body();
    let bytes = match read_body(body, MAX_BODY, deadline).await {
        Ok(b) => b,
        Err(r) => return rejected(endpoint, r),
    };
    let malformed = |m: String| rejected(endpoint, Rejection::Malformed(m));
    let review = match ReviewIn::parse(&bytes) {
        Ok(r) => r,
        Err(e) => return malformed(format!("the body is not an AdmissionReview: {e}")),
    };
    if review.kind != "AdmissionReview"
        || !matches!(review.api_version.as_str(), "admission.k8s.io/v1" | "admission.k8s.io/v1beta1")
    {
        return malformed(format!(
            "expected kind AdmissionReview of admission.k8s.io/v1 or v1beta1, got kind {:?} of {:?}",
            review.kind, review.api_version
        ));
    }
    let Some(request) = review.request else {
        return malformed("the AdmissionReview has no request".into());
    };
    let verdict = decide(state, endpoint, &request);
    if !verdict.allowed {
        tracing::info!(
            webhook = endpoint.label(),
            kind = %request.kind.kind,
            namespace = %request.namespace.as_deref().unwrap_or(""),
            name = %request.name,
            reason = verdict.reason,
            denial = %verdict.message.as_deref().map(|m| bounded(m.to_string())).unwrap_or_default(),
            "admission denied"
        );
    }
    let labels = labels(endpoint, &request.kind.kind, &request.operation, verdict.allowed, verdict.reason);
    Answer { response: review_response(&review.api_version, request.uid, verdict), labels }
}

fn operation(op: &str) -> Op {
    match op {
        "CREATE" => Op::Create,
        "UPDATE" => Op::Update,
        "DELETE" => Op::Delete,
        _ => Op::Connect,
    }
}

/// The WPA of an object of a WPA request.
fn as_wpa(o: &ObjectIn) -> Option<&rules::Wpa> {
    match o {
        ObjectIn::Wpa(w) => Some(w),
        ObjectIn::Workload(_) | ObjectIn::Other => None,
    }
}

/// The rules for this request.
pub(crate) fn decide(state: &WebhookState, endpoint: Endpoint, req: &RequestIn) -> Verdict {
    if req.sub_resource.as_deref().is_some_and(|s| !s.is_empty()) {
        // `/scale` is how autoscalers scale, `/status` how controllers report: never in the way.
        return Verdict::allow("subresource");
    }
    let op = operation(&req.operation);
    let Some(object) = req.object.as_ref() else {
        return Verdict::allow("no_object");
    };
    let (group, kind) = (req.kind.group.as_str(), req.kind.kind.as_str());
    let index = state.index.as_ref();
    if group == api::GROUP && kind == api::KIND {
        let Some(wpa) = as_wpa(object) else { return Verdict::allow("ok") };
        let old = req.old_object.as_ref().and_then(as_wpa);
        return match endpoint {
            Endpoint::Validate => rules::validate_wpa(op, wpa, old, index, &state.limits),
            Endpoint::Mutate if matches!(op, Op::Create | Op::Update) => rules::mutate_wpa(wpa),
            Endpoint::Mutate => Verdict::allow("ok"),
        };
    }
    if !rules::is_workload(group, kind) {
        tracing::debug!(group, kind, "admission request for a kind this webhook does not handle: allowed");
        return Verdict::allow("unknown_kind");
    }
    let ObjectIn::Workload(workload) = object else {
        // A workload kind is only ever read as a workload.
        return Verdict::allow("ok");
    };
    let namespace = req.namespace.as_deref().unwrap_or_default();
    let name = if req.name.is_empty() { workload.name() } else { req.name.as_str() };
    let wpa = match rules::governing_wpa(op, kind, namespace, name, workload, index) {
        Ok(wpa) => wpa,
        Err(reason) => return Verdict::allow(reason),
    };
    match endpoint {
        Endpoint::Validate => rules::validate_workload(kind, namespace, &wpa, workload),
        Endpoint::Mutate => rules::mutate_workload(kind, namespace, &wpa, workload),
    }
}

/// The AdmissionReview answer, in the request's version, echoing its uid.
pub(crate) fn review_response(api_version: &str, uid: String, verdict: Verdict) -> Response {
    use base64::Engine;
    let decision = if verdict.allowed { "allowed" } else { "denied" };
    let mut audit = verdict.audit;
    audit.insert("decision", decision.into());
    audit.insert("reason", verdict.reason.into());
    let patch = if verdict.allowed && !verdict.patch.is_empty() {
        // Base64 never needs escaping: the quoted string goes into the answer as it is, not scanned again
        // by the serializer.
        let quoted = serde_json::to_vec(&json_patch::Patch(verdict.patch)).and_then(|bytes| {
            let mut quoted = String::with_capacity(bytes.len() * 4 / 3 + 6);
            quoted.push('"');
            base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut quoted);
            quoted.push('"');
            serde_json::value::RawValue::from_string(quoted)
        });
        match quoted {
            Ok(raw) => Some(raw),
            Err(e) => {
                return json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot encode the patch: {e}"),
                );
            }
        }
    } else {
        None
    };
    let response = ResponseOut {
        uid,
        allowed: verdict.allowed,
        // 403 as the API server's own default for a denial; kubectl prints the message with it (with
        // reason Invalid it would print "The request is invalid" and hide the message).
        status: (!verdict.allowed).then(|| StatusOut {
            status: "Failure",
            message: bounded(verdict.message.unwrap_or_default()),
            reason: "Forbidden",
            code: 403,
        }),
        patch_type: patch.as_ref().map(|_| "JSONPatch"),
        patch,
        warnings: verdict.warnings,
        audit_annotations: audit,
    };
    match serde_json::to_vec(&ReviewOut { api_version, kind: "AdmissionReview", response }) {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the answer: {e}")),
    }
}
