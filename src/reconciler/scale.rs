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
    /// The API server refused the write: it did not happen.
    Failed(String),
    /// No answer (a transport error): the write may or may not have happened.
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
        // The API server answers a failed JSON Patch `test` with 422 Invalid ("...test failed"); other
        // 422s (a count the target refuses) are failures.
        Err(kube::Error::Api(s)) if s.code == 409 || (s.code == 422 && s.message.contains("test")) => {
            ScaleWrite::Conflict
        }
        Err(e @ kube::Error::Api(_)) => ScaleWrite::Failed(short_kube_error(&e)),
        Err(e) => ScaleWrite::Unknown(short_kube_error(&e)),
    }
}

/// The target's `spec.replicas` as the API server has it now (after a write whose answer was lost).
pub async fn read(client: &Client, target: &Target) -> Result<i32, String> {
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

    #[tokio::test]
    async fn scale_writes_tell_a_conflict_from_a_failure() {
        let failed_test = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":422,"reason":"Invalid","message":"the server rejected our request due to an error in our request: testing value /spec/replicas failed: test failed"}"#;
        assert!(matches!(
            write(&answering(422, failed_test), &target(), THREE_TO_FOUR).await,
            ScaleWrite::Conflict
        ));
        let conflict = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":409,"reason":"Conflict","message":"the object has been modified"}"#;
        assert!(matches!(
            write(&answering(409, conflict), &target(), THREE_TO_FOUR).await,
            ScaleWrite::Conflict
        ));
        let forbidden = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":403,"reason":"Forbidden","message":"deployments.apps \"web\" is forbidden"}"#;
        match write(&answering(403, forbidden), &target(), THREE_TO_FOUR).await {
            ScaleWrite::Failed(e) => assert!(e.contains("forbidden") && e.contains("403"), "{e}"),
            other => panic!("{other:?}"),
        }
        // No answer at all: the write may have happened.
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
