//! The JSON kube-scheduler speaks to an HTTP extender: the types of `k8s.io/kube-scheduler/extender/v1`.
//!
//! The Go structs have no json tags, so every key is the Go field name, PascalCase. Go's decoder matches
//! keys case-insensitively and ignores unknown ones, but serde does neither, so the request keys here are
//! exactly what the scheduler sends, and the response keys exactly what its types declare. The pod is
//! decoded leniently: only the few fields the policy reads, everything else is skipped unparsed, and a
//! `null` where an object or list is expected reads as empty (other clients than Go marshal that way).
//! Scores are `i64` because Go decodes `Score` into an `int64` and rejects `5.0`, which would drop the
//! whole prioritize answer.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::policy::Rejections;

/// `null` and a missing key both read as the type's default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// `ExtenderArgs`: the body of `filter` and `prioritize`.
///
/// With `nodeCacheCapable: true` the scheduler sends `"Nodes":null` and the names in `NodeNames`; with
/// `false`, `"NodeNames":null` and full Node objects in `Nodes.items`.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ExtenderArgs {
    /// `null` or missing makes the request malformed: there is nothing to decide about.
    #[serde(default)]
    pub pod: Option<Pod>,
    #[serde(default)]
    pub nodes: Option<NodeList>,
    #[serde(default)]
    pub node_names: Option<Vec<String>>,
}

/// The few fields of a v1.Pod the policy reads. The scheduler sends a full pod without apiVersion/kind.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default)]
pub(crate) struct Pod {
    #[serde(deserialize_with = "nullable")]
    pub metadata: PodMeta,
    #[serde(deserialize_with = "nullable")]
    pub spec: PodSpec,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct PodMeta {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub namespace: String,
    #[serde(deserialize_with = "nullable")]
    pub uid: String,
    #[serde(deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    #[serde(deserialize_with = "nullable")]
    pub owner_references: Vec<OwnerReference>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct OwnerReference {
    #[serde(deserialize_with = "nullable")]
    pub kind: String,
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub controller: bool,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct PodSpec {
    #[serde(deserialize_with = "nullable")]
    pub node_name: String,
    #[serde(deserialize_with = "nullable")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(deserialize_with = "nullable")]
    pub tolerations: Vec<Toleration>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Toleration {
    #[serde(deserialize_with = "nullable")]
    pub key: String,
    #[serde(deserialize_with = "nullable")]
    pub operator: String,
    #[serde(deserialize_with = "nullable")]
    pub value: String,
    #[serde(deserialize_with = "nullable")]
    pub effect: String,
}

/// A v1.NodeList as the scheduler sends it: `{"metadata":{},"items":[…]}`. The items are kept whole
/// because in this mode the answer must carry the passing Node objects back, and 1.20 uses the returned
/// objects for the rest of the scheduling cycle.
#[derive(Deserialize, Serialize, Debug, Default, Clone)]
#[serde(default)]
pub(crate) struct NodeList {
    #[serde(deserialize_with = "nullable")]
    pub items: Vec<serde_json::Value>,
}

impl NodeList {
    /// The name of a Node object, if it has one.
    pub(super) fn name_of(item: &serde_json::Value) -> Option<&str> {
        item.get("metadata")?.get("name")?.as_str().filter(|n| !n.is_empty())
    }
}

/// The `Nodes` of a filter answer; Go's NodeList marshals `metadata` even when empty.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
pub(crate) struct NodeListOut {
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub items: Vec<serde_json::Value>,
}

/// `ExtenderFilterResult`, encoded. Every field is always present, as Go marshals it.
///
/// `NodeNames` is never `null`: with `nodeCacheCapable: true` a null `NodeNames` and a null `Nodes` filter
/// out every node. Rejections go in `FailedNodes`, the only map 1.20 reads, and also in
/// `FailedAndUnresolvableNodes` (1.21+), so that preemption does not try nodes that no eviction can make
/// acceptable (a sibling of the same priority is never a victim).
///
/// The two maps are the same thousands of entries on a large cluster, which made the encoding most of a
/// filter's cost: the map is encoded once (each distinct reason escaped once) and its bytes written twice.
/// Its keys are in the scheduler's order; Go reads a JSON object into a map, where order means nothing.
pub(crate) fn encode_filter_result(
    nodes: Option<&NodeListOut>,
    node_names: &[String],
    failed: &Rejections<'_>,
) -> serde_json::Result<Vec<u8>> {
    let (reasons, entries) = failed.parts();
    let reasons: Vec<Vec<u8>> = reasons.iter().map(serde_json::to_vec).collect::<Result<_, _>>()?;
    let mut map =
        Vec::with_capacity(2 + entries.iter().map(|(n, r)| n.len() + reasons[*r].len() + 4).sum::<usize>());
    map.push(b'{');
    for (i, (name, reason)) in entries.iter().enumerate() {
        if i > 0 {
            map.push(b',');
        }
        serde_json::to_writer(&mut map, name)?;
        map.push(b':');
        map.extend_from_slice(&reasons[*reason]);
    }
    map.push(b'}');
    let mut out = Vec::with_capacity(2 * map.len() + 16 * node_names.len() + 128);
    out.extend_from_slice(b"{\"Nodes\":");
    serde_json::to_writer(&mut out, &nodes)?;
    out.extend_from_slice(b",\"NodeNames\":");
    serde_json::to_writer(&mut out, node_names)?;
    out.extend_from_slice(b",\"FailedNodes\":");
    out.extend_from_slice(&map);
    out.extend_from_slice(b",\"FailedAndUnresolvableNodes\":");
    out.extend_from_slice(&map);
    out.extend_from_slice(b",\"Error\":\"\"}");
    Ok(out)
}

/// One entry of a `HostPriorityList`, the top-level JSON array prioritize answers.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HostPriority<'a> {
    pub host: &'a str,
    pub score: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_result_escapes_names_and_reasons_and_repeats_the_map() {
        let mut failed = Rejections::default();
        let shared = failed.reason("wpa: placement chose \"n1\"".into());
        failed.reject("n\\2", shared);
        failed.reject("n3", shared);
        let other = failed.reason("line\nbreak".into());
        failed.reject("n4", other);
        let body = encode_filter_result(None, &["n1".to_owned()], &failed).expect("encodes");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("the answer is JSON");
        let map = serde_json::json!({"n\\2": "wpa: placement chose \"n1\"", "n3": "wpa: placement chose \"n1\"", "n4": "line\nbreak"});
        assert_eq!(
            v,
            serde_json::json!({"Nodes": null, "NodeNames": ["n1"], "FailedNodes": map,
                               "FailedAndUnresolvableNodes": map, "Error": ""})
        );
    }

    #[test]
    fn a_filter_result_without_rejections_has_two_empty_maps() {
        let body = encode_filter_result(None, &[], &Rejections::default()).expect("encodes");
        assert_eq!(
            String::from_utf8(body).expect("UTF-8"),
            r#"{"Nodes":null,"NodeNames":[],"FailedNodes":{},"FailedAndUnresolvableNodes":{},"Error":""}"#
        );
    }
}
