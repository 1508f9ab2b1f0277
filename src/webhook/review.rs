//! The AdmissionReview wire format (`admission.k8s.io/v1` and `v1beta1` share it).
//!
//! Decoded with borrowed raw objects: a rule parses the object once, straight into the fields it reads.
//! (kube's `AdmissionReview<DynamicObject>` would first build a JSON tree of the whole object, including a
//! Deployment's managedFields, on every request.)

use std::{borrow::Cow, collections::BTreeMap};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::rules::{Workload, Wpa};

#[derive(Debug, Deserialize)]
pub struct ReviewIn<'a> {
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(borrow, default)]
    pub request: Option<RequestIn<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Gvk {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

/// The request of an AdmissionReview.
#[derive(Debug, Default)]
pub struct RequestIn<'a> {
    pub uid: String,
    pub kind: Gvk,
    pub sub_resource: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub operation: String,
    pub object: Option<ObjectIn<'a>>,
    pub old_object: Option<ObjectIn<'a>>,
    pub dry_run: Option<bool>,
}

/// An object of a request, decoded as far as its kind allows.
#[derive(Debug)]
pub enum ObjectIn<'a> {
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
struct ObjectSeed<'a> {
    shape: Shape,
    lifetime: std::marker::PhantomData<&'a ()>,
}

impl<'de: 'a, 'a> serde::de::DeserializeSeed<'de> for ObjectSeed<'a> {
    type Value = Option<ObjectIn<'a>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Ok(match self.shape {
            Shape::Workload => Option::<Workload>::deserialize(d)?.map(|w| ObjectIn::Workload(Box::new(w))),
            Shape::Wpa => Option::<Wpa>::deserialize(d)?.map(|w| ObjectIn::Wpa(Box::new(w))),
            Shape::Raw => Option::<&'de RawValue>::deserialize(d)?.map(ObjectIn::Raw),
        })
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RequestIn<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = RequestIn<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an admission request")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RequestIn<'a>, A::Error> {
                let mut r = RequestIn::default();
                let mut uid = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "uid" => uid = Some(map.next_value()?),
                        "kind" => r.kind = map.next_value()?,
                        "subResource" => r.sub_resource = map.next_value()?,
                        "name" => r.name = map.next_value::<Option<String>>()?.unwrap_or_default(),
                        "namespace" => r.namespace = map.next_value()?,
                        "operation" => r.operation = map.next_value()?,
                        "dryRun" => r.dry_run = map.next_value()?,
                        "object" => {
                            let shape = shape(&r.kind);
                            r.object = map
                                .next_value_seed(ObjectSeed { shape, lifetime: std::marker::PhantomData })?;
                        }
                        // The workload rules never read the old object.
                        "oldObject" if super::rules::is_workload(&r.kind.group, &r.kind.kind) => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                        "oldObject" => {
                            let shape = shape(&r.kind);
                            r.old_object = map
                                .next_value_seed(ObjectSeed { shape, lifetime: std::marker::PhantomData })?;
                        }
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                r.uid = uid.ok_or_else(|| serde::de::Error::missing_field("uid"))?;
                Ok(r)
            }
        }
        d.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// A refusal's status (`metav1.Status`).
#[derive(Debug, Serialize)]
pub struct StatusOut {
    pub status: &'static str,
    pub message: String,
    pub reason: &'static str,
    pub code: u16,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseOut {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusOut>,
    /// Base64 of the RFC 6902 patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<&'static str, Cow<'static, str>>,
}

#[derive(Debug, Serialize)]
pub struct ReviewOut<'a> {
    #[serde(rename = "apiVersion")]
    pub api_version: &'a str,
    pub kind: &'static str,
    pub response: ResponseOut,
}
