//! The admission webhook: `/validate` and `/mutate`, each dispatching on the request's kind.
//!
//! AdmissionReview `admission.k8s.io/v1` and `v1beta1` are both accepted and answered in the version asked;
//! the response always echoes the request's uid. A body that is not an AdmissionReview gets `400` with a JSON
//! error, a body over 3 MiB gets `413`. The API server's `?timeout=` bounds the whole request: a body that
//! does not arrive in time is answered, never waited for. Dry-run requests get the same answer (the rules
//! have no side effects).

pub mod index;
pub mod rules;

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
use http_body_util::{BodyExt, Limited};
use kube::core::{
    DynamicObject, Status,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
};
use serde_json::{Value, json};

use crate::{
    api,
    metrics::{AdmissionLabels, Metrics},
};
pub use index::{AutoscalerIndex, StaticIndex, StoreIndex};
pub use rules::{Op, Verdict};

/// The largest AdmissionReview accepted (the API server's own request limit is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;
/// The API server's default webhook timeout, used when `?timeout=` is absent.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct WebhookState {
    pub index: Arc<dyn AutoscalerIndex>,
    pub metrics: Arc<Metrics>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
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

/// The webhook's routes.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/validate", post(|s: State<WebhookState>, r: Request| handle(s, Endpoint::Validate, r)))
        .route("/mutate", post(|s: State<WebhookState>, r: Request| handle(s, Endpoint::Mutate, r)))
        .with_state(state)
}

fn json_error(status: StatusCode, message: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], json!({ "error": message }).to_string())
        .into_response()
}

/// The `timeout` query parameter the API server appends (`?timeout=10s`).
pub fn parse_timeout(query: Option<&str>) -> Option<Duration> {
    query?.split('&').find_map(|kv| kv.strip_prefix("timeout=")).and_then(crate::duration::parse_duration)
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
    let answer = match tokio::time::timeout(budget, answer(&state, endpoint, request)).await {
        Ok(a) => a,
        Err(_) => Answer {
            response: json_error(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request was not received within {budget:?}"),
            ),
            labels: labels(endpoint, "", "", false, "timeout"),
        },
    };
    state.metrics.admission_requests.get_or_create(&answer.labels).inc();
    state.metrics.admission_latency.get_or_create(&answer.labels).observe(started.elapsed().as_secs_f64());
    answer.response
}

fn labels(endpoint: Endpoint, kind: &str, operation: &str, allowed: bool, reason: &str) -> AdmissionLabels {
    AdmissionLabels {
        webhook: endpoint.label().into(),
        kind: kind.into(),
        operation: operation.into(),
        allowed: allowed.to_string(),
        reason: reason.into(),
    }
}

async fn answer(state: &WebhookState, endpoint: Endpoint, request: Request) -> Answer {
    let bad = |status: StatusCode, reason: &str, message: String| Answer {
        response: json_error(status, message),
        labels: labels(endpoint, "", "", false, reason),
    };
    let body: Body = request.into_body();
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return bad(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body is larger than {MAX_BODY} bytes"),
            );
        }
        Err(e) => {
            return bad(StatusCode::BAD_REQUEST, "unreadable", format!("cannot read the request body: {e}"));
        }
    };
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return bad(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("the body is not an AdmissionReview: {e}"),
            );
        }
    };
    if review.types.kind != "AdmissionReview"
        || !matches!(review.types.api_version.as_str(), "admission.k8s.io/v1" | "admission.k8s.io/v1beta1")
    {
        return bad(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!(
                "expected kind AdmissionReview of admission.k8s.io/v1 or v1beta1, got kind {:?} of {:?}",
                review.types.kind, review.types.api_version
            ),
        );
    }
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(_) => {
            return bad(StatusCode::BAD_REQUEST, "malformed", "the AdmissionReview has no request".into());
        }
    };
    let verdict = decide(state, endpoint, &request);
    let kind = request.kind.kind.clone();
    let operation = format!("{:?}", request.operation).to_uppercase();
    if !verdict.allowed {
        tracing::info!(
            webhook = endpoint.label(),
            kind = %kind,
            namespace = %request.namespace.as_deref().unwrap_or(""),
            name = %request.name,
            reason = verdict.reason,
            message = verdict.message.as_deref().unwrap_or(""),
            "admission denied"
        );
    }
    let labels = labels(endpoint, &kind, &operation, verdict.allowed, verdict.reason);
    Answer { response: review_response(&request, verdict), labels }
}

fn operation(op: &Operation) -> Op {
    match op {
        Operation::Create => Op::Create,
        Operation::Update => Op::Update,
        Operation::Delete => Op::Delete,
        Operation::Connect => Op::Connect,
    }
}

/// The rules for this request.
pub fn decide(state: &WebhookState, endpoint: Endpoint, req: &AdmissionRequest<DynamicObject>) -> Verdict {
    if req.sub_resource.as_deref().is_some_and(|s| !s.is_empty()) {
        // `/scale` is how autoscalers scale, `/status` how controllers report: never in the way.
        return Verdict::allow("subresource");
    }
    let op = operation(&req.operation);
    let Some(object) = req.object.as_ref().and_then(|o| serde_json::to_value(o).ok()) else {
        return Verdict::allow("no_object");
    };
    let old = req.old_object.as_ref().and_then(|o| serde_json::to_value(o).ok());
    let (group, kind) = (req.kind.group.as_str(), req.kind.kind.as_str());
    let namespace = req.namespace.clone().unwrap_or_default();
    let name = if req.name.is_empty() {
        object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string()
    } else {
        req.name.clone()
    };
    let index = state.index.as_ref();
    match (endpoint, group, kind) {
        (Endpoint::Validate, api::GROUP, api::KIND) => rules::validate_wpa(op, &object, old.as_ref(), index),
        (Endpoint::Mutate, api::GROUP, api::KIND) if matches!(op, Op::Create | Op::Update) => {
            rules::mutate_wpa(&object)
        }
        (Endpoint::Validate, _, _) if rules::is_workload(group, kind) => {
            rules::validate_workload(op, kind, &namespace, &name, &object, index)
        }
        (Endpoint::Mutate, _, _) if rules::is_workload(group, kind) => {
            rules::mutate_workload(op, kind, &namespace, &name, &object, index)
        }
        (_, api::GROUP, api::KIND) => Verdict::allow("ok"),
        _ => {
            tracing::info!(group, kind, "admission request for a kind this webhook does not handle: allowed");
            Verdict::allow("unknown_kind")
        }
    }
}

/// The AdmissionReview answer, in the request's version, echoing its uid.
fn review_response(req: &AdmissionRequest<DynamicObject>, verdict: Verdict) -> Response {
    let mut resp = AdmissionResponse::from(req);
    if verdict.allowed {
        if !verdict.patch.is_empty() {
            resp = match resp.with_patch(json_patch::Patch(verdict.patch)) {
                Ok(r) => r,
                Err(e) => {
                    let failed = AdmissionResponse::from(req).deny(format!("cannot encode the patch: {e}"));
                    return review_json(failed);
                }
            };
        }
    } else {
        let message = verdict.message.unwrap_or_default();
        resp = resp.deny(&message);
        resp.result = Status::failure(&message, "Invalid").with_code(422);
    }
    if !verdict.warnings.is_empty() {
        resp.warnings = Some(verdict.warnings);
    }
    let decision = if resp.allowed { "allowed" } else { "denied" };
    resp.audit_annotations.insert("decision".into(), format!("{decision}: {}", verdict.reason));
    resp.audit_annotations.extend(verdict.audit);
    review_json(resp)
}

fn review_json(resp: AdmissionResponse) -> Response {
    match serde_json::to_vec(&resp.into_review()) {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the answer: {e}")),
    }
}
