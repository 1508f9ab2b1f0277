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

/// `ExtenderFilterResult`. Every field is always present, as Go marshals it.
///
/// `NodeNames` is never `null`: with `nodeCacheCapable: true` a null `NodeNames` and a null `Nodes` filter
/// out every node. Rejections go in `FailedNodes`, the only map 1.20 reads, and also in
/// `FailedAndUnresolvableNodes` (1.21+), so that preemption does not try nodes that no eviction can make
/// acceptable (a sibling of the same priority is never a victim).
/// Both maps are the same rejections, borrowed rather than copied (thousands of entries on a large cluster).
#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ExtenderFilterResult<'a> {
    pub nodes: Option<NodeListOut>,
    pub node_names: Option<&'a [String]>,
    pub failed_nodes: &'a BTreeMap<String, String>,
    pub failed_and_unresolvable_nodes: &'a BTreeMap<String, String>,
    pub error: &'a str,
}

/// One entry of a `HostPriorityList`, the top-level JSON array prioritize answers.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HostPriority<'a> {
    pub host: &'a str,
    pub score: i64,
}
