//! The one write that scales: `spec.replicas` through the target's `/scale` subresource.

use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams},
};

use super::inputs::{Target, short_kube_error};
use crate::engine::ScaleIntent;

/// The outcome of a `/scale` write.
#[derive(Debug)]
pub(crate) enum ScaleWrite {
    Written,
    /// `spec.replicas` was no longer what the decision started from: decide again on fresh data.
    Conflict,
    /// The API server refused the write (a 4xx): it did not happen.
    Refused(String),
    /// No answer (a transport error), or an answer that does not say whether the write was applied (a
    /// 5xx: the API server can answer 500 or 504 for a write etcd committed): it may have happened.
    Unknown(String),
}

/// Sets the target's `spec.replicas` to `intent.to`, only if it still is `intent.from` (a JSON Patch
/// `test`): a concurrent change (a user's `kubectl scale`, a stale cache) is never overwritten blindly.
pub(crate) async fn write(client: &Client, target: &Target, intent: ScaleIntent) -> ScaleWrite {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &target.namespace, &target.resource);
    let patch = json_patch::Patch(vec![
        json_patch::PatchOperation::Test(json_patch::TestOperation {
            path: json_patch::jsonptr::PointerBuf::from_tokens(["spec", "replicas"]),
            value: intent.from.into(),
        }),
        json_patch::PatchOperation::Replace(json_patch::ReplaceOperation {
            path: json_patch::jsonptr::PointerBuf::from_tokens(["spec", "replicas"]),
            value: intent.to.into(),
        }),
    ]);
    match api.patch_scale(&target.name, &PatchParams::default(), &Patch::<()>::Json(patch)).await {
        Ok(_) => ScaleWrite::Written,
        Err(kube::Error::Api(s)) if s.code == 409 => ScaleWrite::Conflict,
        // A failed `test` is a 422, but so is a count the target refuses, and the message says which only
        // on newer API servers (1.20: "the server rejected our request due to an error in our request"). The
        // count tells: the test failed exactly when it is no longer `from`.
        Err(e @ kube::Error::Api(_)) if api_code(&e) == Some(422) => match read(client, target).await {
            Ok(now) if now != intent.from => ScaleWrite::Conflict,
            _ => ScaleWrite::Refused(short_kube_error(&e)),
        },
        // Every 4xx is a refusal before anything was stored.
        Err(e @ kube::Error::Api(_)) if api_code(&e).is_some_and(|c| (400..500).contains(&c)) => {
            ScaleWrite::Refused(short_kube_error(&e))
        }
        Err(e) => ScaleWrite::Unknown(short_kube_error(&e)),
    }
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// The target's `spec.replicas` as the API server has it now (after a write whose answer was lost).
pub(crate) async fn read(client: &Client, target: &Target) -> Result<i32, String> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &target.namespace, &target.resource);
    match api.get_scale(&target.name).await {
        Ok(s) => Ok(s.spec.and_then(|s| s.replicas).unwrap_or(0)),
        Err(e) => Err(short_kube_error(&e)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use kube::{api::ApiResource, core::GroupVersionKind};

    use super::*;

    /// A client whose API answers every request with `status` and `body` (error paths only; the real
    /// behaviour is tested against a real API server).
    pub(crate) fn answering(status: u16, body: &'static str) -> Client {
        let svc = tower::service_fn(move |_req: http::Request<kube::client::Body>| async move {
            http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(body.as_bytes().to_vec()))
        });
        Client::new(svc, "default")
    }

    fn target() -> Target {
        let gvk = GroupVersionKind::gvk("apps", "v1", "Deployment");
        Target { resource: ApiResource::from_gvk(&gvk), namespace: "ns".into(), name: "web".into() }
    }

    const THREE_TO_FOUR: ScaleIntent = ScaleIntent { from: 3, to: 4 };

    /// A client whose API answers a PATCH with `status` and `body`, and a GET of the scale with `replicas`.
    fn patch_answering(status: u16, body: &'static str, replicas: i32) -> Client {
        let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| async move {
            let (code, body) = if req.method() == http::Method::GET {
                let scale = serde_json::json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                    "metadata": {"name": "web", "namespace": "ns"}, "spec": {"replicas": replicas}});
                (200, scale.to_string())
            } else {
                (status, body.to_string())
            };
            http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(body.into_bytes()))
        });
        Client::new(svc, "default")
    }

    fn status(code: u16, reason: &str, message: &str) -> &'static str {
        let s = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
            "reason": reason, "message": message});
        Box::leak(s.to_string().into_boxed_str())
    }

    /// kube-apiserver 1.20's answer to a failed JSON Patch `test`: no word of the test in it.
    const REJECTED_1_20: &str = "the server rejected our request due to an error in our request";

    #[tokio::test]
    async fn a_failed_test_is_a_conflict_whatever_the_message_says() {
        let answer = status(422, "Invalid", REJECTED_1_20);
        let moved = patch_answering(422, answer, 5);
        assert!(matches!(write(&moved, &target(), THREE_TO_FOUR).await, ScaleWrite::Conflict));
    }

    #[tokio::test]
    async fn a_422_with_the_count_unchanged_is_a_refusal() {
        let answer =
            status(422, "Invalid", "spec.replicas: Invalid value: -4: must be greater than or equal to 0");
        match write(&patch_answering(422, answer, 3), &target(), THREE_TO_FOUR).await {
            ScaleWrite::Refused(e) => assert!(e.contains("must be greater") && e.contains("422"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_409_is_a_conflict() {
        let answer = status(409, "Conflict", "the object has been modified");
        assert!(matches!(
            write(&answering(409, answer), &target(), THREE_TO_FOUR).await,
            ScaleWrite::Conflict
        ));
    }

    #[tokio::test]
    async fn a_4xx_is_a_refusal() {
        for (code, reason) in
            [(400, "BadRequest"), (403, "Forbidden"), (404, "NotFound"), (429, "TooManyRequests")]
        {
            let answer = status(code, reason, "deployments.apps \"web\" refused");
            match write(&answering(code, answer), &target(), THREE_TO_FOUR).await {
                ScaleWrite::Refused(e) => assert!(e.contains(&code.to_string()), "{code}: {e}"),
                other => panic!("{code}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_5xx_may_have_been_applied() {
        for (code, reason, message) in [
            (500, "InternalError", "rpc error: code = Unavailable desc = transport is closing"),
            (503, "ServiceUnavailable", "the server is currently unable to handle the request"),
            (504, "Timeout", "Timeout: request did not complete within requested timeout 34s"),
        ] {
            match write(&answering(code, status(code, reason, message)), &target(), THREE_TO_FOUR).await {
                ScaleWrite::Unknown(e) => assert!(e.contains(&code.to_string()), "{code}: {e}"),
                other => panic!("{code}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn no_answer_may_have_been_applied() {
        let unreachable = Client::new(
            tower::service_fn(|_req: http::Request<kube::client::Body>| async {
                Err::<http::Response<kube::client::Body>, _>(std::io::Error::other(
                    "connection reset by peer",
                ))
            }),
            "default",
        );
        match write(&unreachable, &target(), THREE_TO_FOUR).await {
            ScaleWrite::Unknown(e) => assert!(e.contains("connection reset"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
