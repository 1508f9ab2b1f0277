//! The AdmissionReview wire format (`admission.k8s.io/v1` and `v1beta1` share it).
//!
//! Read member by member ([`super::scan`]): a rule's fields are decoded straight from the body, everything
//! else is stepped over. (kube's `AdmissionReview<DynamicObject>` would first build a JSON tree of the whole
//! object, including a Deployment's managedFields, on every request.)

use std::{borrow::Cow, collections::BTreeMap};

use serde::Serialize;
use serde_json::value::RawValue;

use super::{
    rules::{Workload, Wpa},
    scan::Reader,
};

#[derive(Debug)]
pub(crate) struct ReviewIn {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) request: Option<RequestIn>,
}

impl ReviewIn {
    /// Reads a review in one pass over the body: the members a rule reads are decoded, the rest stepped
    /// over (see [`super::scan`]). A WPA's spec with wrong types (possible at `/mutate`, before the API
    /// server's schema check) does not fail the review: it is kept as its error (see [`Wpa`]).
    pub(crate) fn parse(bytes: &[u8]) -> Result<ReviewIn, String> {
        // Validated as UTF-8 once, here: the values decoded later are slices of this text.
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        let mut r = Reader::new(text);
        let mut review = ReviewIn { api_version: String::new(), kind: String::new(), request: None };
        r.members(|r, key| {
            match key {
                "apiVersion" => review.api_version = r.owned_string()?,
                "kind" => review.kind = r.owned_string()?,
                "request" if !r.null() => review.request = Some(RequestIn::read(r)?),
                _ => {}
            }
            Ok(())
        })?;
        r.end()?;
        Ok(review)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Gvk {
    pub(crate) group: String,
    pub(crate) kind: String,
}

impl Gvk {
    fn read(r: &mut Reader<'_>) -> Result<Gvk, String> {
        let mut gvk = Gvk::default();
        r.members(|r, key| {
            match key {
                "group" => gvk.group = r.owned_string()?,
                "kind" => gvk.kind = r.owned_string()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(gvk)
    }
}

/// The request of an AdmissionReview.
#[derive(Debug, Default)]
pub(crate) struct RequestIn {
    pub(crate) uid: String,
    pub(crate) kind: Gvk,
    pub(crate) sub_resource: Option<String>,
    pub(crate) name: String,
    pub(crate) namespace: Option<String>,
    pub(crate) operation: String,
    pub(crate) object: Option<ObjectIn>,
    pub(crate) old_object: Option<ObjectIn>,
    pub(crate) dry_run: Option<bool>,
}

impl RequestIn {
    fn read(reader: &mut Reader<'_>) -> Result<RequestIn, String> {
        let mut r = RequestIn::default();
        let mut uid = None;
        // The API server sends `kind` before the objects; if a client did not, the objects are read again
        // from their text once the kind is known.
        let (mut object_text, mut old_text) = (None, None);
        reader.members(|reader, key| {
            match key {
                "uid" => uid = reader.optional_string()?,
                "kind" => r.kind = Gvk::read(reader)?,
                "subResource" => r.sub_resource = reader.optional_string()?,
                "name" => r.name = reader.owned_string()?,
                "namespace" => r.namespace = reader.optional_string()?,
                "operation" => r.operation = reader.owned_string()?,
                "dryRun" => r.dry_run = reader.decode()?,
                "object" if r.kind.kind.is_empty() => object_text = Some(reader.raw()?),
                "oldObject" if r.kind.kind.is_empty() => old_text = Some(reader.raw()?),
                "object" => r.object = ObjectIn::read(shape(&r.kind), reader)?,
                // The workload rules never read the old object.
                "oldObject" if !matches!(shape(&r.kind), Shape::Workload) => {
                    r.old_object = ObjectIn::read(shape(&r.kind), reader)?;
                }
                _ => {}
            }
            Ok(())
        })?;
        r.uid = uid.ok_or("missing field `uid` in the request")?;
        let shape = shape(&r.kind);
        if let Some(text) = object_text {
            r.object = ObjectIn::read(shape, &mut Reader::new(text))?;
        }
        if let Some(text) = old_text.filter(|_| !matches!(shape, Shape::Workload)) {
            r.old_object = ObjectIn::read(shape, &mut Reader::new(text))?;
        }
        Ok(r)
    }
}

/// An object of a request, decoded as far as its kind allows.
#[derive(Debug)]
pub(crate) enum ObjectIn {
    /// A Deployment or StatefulSet.
    Workload(Box<Workload>),
    /// A WatermarkPodAutoscaler (its spec kept as its error when it does not decode, see [`Wpa`]).
    Wpa(Box<Wpa>),
    /// Any other kind: no rule reads it.
    Other,
}

impl ObjectIn {
    /// The object, or `None` for `null`.
    fn read(shape: Shape, reader: &mut Reader<'_>) -> Result<Option<ObjectIn>, String> {
        if reader.null() {
            return Ok(None);
        }
        Ok(Some(match shape {
            Shape::Workload => ObjectIn::Workload(Box::new(Workload::read(reader)?)),
            Shape::Wpa => ObjectIn::Wpa(Box::new(Wpa::read(reader)?)),
            Shape::Other => ObjectIn::Other,
        }))
    }
}

/// Which typed form an object gets, from the request's kind.
#[derive(Clone, Copy)]
enum Shape {
    Workload,
    Wpa,
    Other,
}

fn shape(kind: &Gvk) -> Shape {
    if super::rules::is_workload(&kind.group, &kind.kind) {
        Shape::Workload
    } else if kind.group == crate::api::GROUP && kind.kind == crate::api::KIND {
        Shape::Wpa
    } else {
        Shape::Other
    }
}

/// A refusal's status (`metav1.Status`).
#[derive(Debug, Serialize)]
pub(crate) struct StatusOut {
    pub(crate) status: &'static str,
    pub(crate) message: String,
    pub(crate) reason: &'static str,
    pub(crate) code: u16,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResponseOut {
    pub(crate) uid: String,
    pub(crate) allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<StatusOut>,
    /// Base64 of the RFC 6902 patch, quoted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) patch: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) warnings: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) audit_annotations: BTreeMap<&'static str, Cow<'static, str>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ReviewOut<'a> {
    #[serde(rename = "apiVersion")]
    pub(crate) api_version: &'a str,
    pub(crate) kind: &'static str,
    pub(crate) response: ResponseOut,
}
