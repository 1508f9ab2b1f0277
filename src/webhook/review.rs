//! The AdmissionReview wire format (`admission.k8s.io/v1` and `v1beta1` share it).
//!
//! Decoded with borrowed raw objects: a rule parses the object once, straight into the fields it reads.
//! (kube's `AdmissionReview<DynamicObject>` would first build a JSON tree of the whole object, including a
//! Deployment's managedFields, on every request.)

use std::{borrow::Cow, collections::BTreeMap};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::rules::{Workload, Wpa, WpaStrict};

#[derive(Debug)]
pub(crate) struct ReviewIn<'a> {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) request: Option<RequestIn<'a>>,
}

impl<'a> ReviewIn<'a> {
    /// Decodes a review in one pass. A WPA whose spec has wrong types (possible at `/mutate`, before the
    /// API server's schema check) fails that pass; it is then decoded again with its spec kept apart, so that
    /// the rest of the object stays readable (see [`Wpa`]).
    pub(crate) fn parse(bytes: &'a [u8]) -> serde_json::Result<ReviewIn<'a>> {
        // Validated as UTF-8 once, here: a slice reader would validate every string it reads again.
        let text = std::str::from_utf8(bytes).map_err(serde::de::Error::custom)?;
        let decode = |lenient: bool| -> serde_json::Result<ReviewIn<'a>> {
            let mut de = serde_json::Deserializer::from_str(text);
            let review = serde::de::DeserializeSeed::deserialize(ReviewSeed { lenient }, &mut de)?;
            de.end()?;
            Ok(review)
        };
        decode(false).or_else(|_| decode(true))
    }
}

/// The keys read; every other one is skipped without being copied.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum ReviewField {
    ApiVersion,
    Kind,
    Request,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum RequestField {
    Uid,
    Kind,
    SubResource,
    Name,
    Namespace,
    Operation,
    DryRun,
    Object,
    OldObject,
    #[serde(other)]
    Other,
}

struct ReviewSeed {
    lenient: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for ReviewSeed {
    type Value = ReviewIn<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ReviewSeed {
    type Value = ReviewIn<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an AdmissionReview")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ReviewIn<'de>, A::Error> {
        let mut r = ReviewIn { api_version: String::new(), kind: String::new(), request: None };
        while let Some(key) = map.next_key::<ReviewField>()? {
            match key {
                ReviewField::ApiVersion => r.api_version = map.next_value()?,
                ReviewField::Kind => r.kind = map.next_value()?,
                ReviewField::Request => {
                    r.request = map.next_value_seed(OptionalRequest { lenient: self.lenient })?;
                }
                ReviewField::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(r)
    }
}

/// `request`, which may be null.
struct OptionalRequest {
    lenient: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for OptionalRequest {
    type Value = Option<RequestIn<'de>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> serde::de::Visitor<'de> for OptionalRequest {
    type Value = Option<RequestIn<'de>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an admission request or null")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(RequestVisitor { lenient: self.lenient }).map(Some)
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Gvk {
    #[serde(default)]
    pub(crate) group: String,
    #[serde(default)]
    pub(crate) kind: String,
}

/// The request of an AdmissionReview.
#[derive(Debug, Default)]
pub(crate) struct RequestIn<'a> {
    pub(crate) uid: String,
    pub(crate) kind: Gvk,
    pub(crate) sub_resource: Option<String>,
    pub(crate) name: String,
    pub(crate) namespace: Option<String>,
    pub(crate) operation: String,
    pub(crate) object: Option<ObjectIn<'a>>,
    pub(crate) old_object: Option<ObjectIn<'a>>,
    pub(crate) dry_run: Option<bool>,
}

/// An object of a request, decoded as far as its kind allows.
#[derive(Debug)]
pub(crate) enum ObjectIn<'a> {
    /// A Deployment or StatefulSet, parsed in the same pass as the review.
    Workload(Box<Workload>),
    /// A WatermarkPodAutoscaler, parsed in the same pass (its spec leniently, see [`Wpa`]).
    Wpa(Box<Wpa>),
    /// Any other kind, or an object listed before the review's `kind`: kept raw for whoever needs it.
    Raw(&'a RawValue),
}

/// Which typed form an object gets, from the kind read before it.
#[derive(Clone, Copy)]
enum Shape {
    Workload,
    Wpa,
    Raw,
}

fn shape(kind: &Gvk) -> Shape {
    if super::rules::is_workload(&kind.group, &kind.kind) {
        Shape::Workload
    } else if kind.group == crate::api::GROUP && kind.kind == crate::api::KIND {
        Shape::Wpa
    } else {
        Shape::Raw
    }
}

/// Decodes `object`/`oldObject` according to the kind read before them (the API server sends `kind`
/// first; if it did not, the object stays raw and is parsed later).
struct ObjectSeed {
    shape: Shape,
    /// A WPA's spec kept apart (a second pass after the strict one failed).
    lenient: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for ObjectSeed {
    type Value = Option<ObjectIn<'de>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Ok(match self.shape {
            Shape::Workload => Option::<Workload>::deserialize(d)?.map(|w| ObjectIn::Workload(Box::new(w))),
            Shape::Wpa if self.lenient => Option::<Wpa>::deserialize(d)?.map(|w| ObjectIn::Wpa(Box::new(w))),
            Shape::Wpa => Option::<WpaStrict>::deserialize(d)?.map(|w| ObjectIn::Wpa(Box::new(w.into()))),
            Shape::Raw => Option::<&'de RawValue>::deserialize(d)?.map(ObjectIn::Raw),
        })
    }
}

struct RequestVisitor {
    lenient: bool,
}

impl<'de> serde::de::Visitor<'de> for RequestVisitor {
    type Value = RequestIn<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an admission request")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RequestIn<'de>, A::Error> {
        let mut r = RequestIn::default();
        let mut uid = None;
        let lenient = self.lenient;
        while let Some(key) = map.next_key::<RequestField>()? {
            match key {
                RequestField::Uid => uid = Some(map.next_value()?),
                RequestField::Kind => r.kind = map.next_value()?,
                RequestField::SubResource => r.sub_resource = map.next_value()?,
                RequestField::Name => r.name = map.next_value::<Option<String>>()?.unwrap_or_default(),
                RequestField::Namespace => r.namespace = map.next_value()?,
                RequestField::Operation => r.operation = map.next_value()?,
                RequestField::DryRun => r.dry_run = map.next_value()?,
                RequestField::Object => {
                    r.object = map.next_value_seed(ObjectSeed { shape: shape(&r.kind), lenient })?;
                }
                // The workload rules never read the old object.
                RequestField::OldObject if super::rules::is_workload(&r.kind.group, &r.kind.kind) => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
                RequestField::OldObject => {
                    r.old_object = map.next_value_seed(ObjectSeed { shape: shape(&r.kind), lenient })?;
                }
                RequestField::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        r.uid = uid.ok_or_else(|| serde::de::Error::missing_field("uid"))?;
        Ok(r)
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
