//! The admission rules, free of HTTP: what to answer for a WatermarkPodAutoscaler or a workload it scales.
//! Validation and defaults are the engine's ([`crate::engine::validation`]), so what the webhook refuses is
//! exactly what the reconciler would flag.

use std::collections::BTreeMap;

use json_patch::{AddOperation, PatchOperation, ReplaceOperation, jsonptr::PointerBuf};
use serde_json::Value;

use super::scan::Reader;

use crate::state::target_index::{Governing, TargetIndex};
use crate::{
    api::{WatermarkPodAutoscalerSpec, annotations},
    engine::validation,
};

/// Operations an admission request can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Create,
    Update,
    Delete,
    Connect,
}

/// The answer to one admission request.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Verdict {
    pub(crate) allowed: bool,
    /// Why the request is refused (shown to the user by kubectl).
    pub(crate) message: Option<String>,
    /// A bounded label for metrics (`ok`, `invalid`, `conflict`, `clamped`, ...).
    pub(crate) reason: &'static str,
    pub(crate) patch: Vec<PatchOperation>,
    pub(crate) warnings: Vec<String>,
    pub(crate) audit: BTreeMap<&'static str, std::borrow::Cow<'static, str>>,
}

impl Verdict {
    pub(crate) fn allow(reason: &'static str) -> Verdict {
        Verdict { allowed: true, reason, ..Default::default() }
    }

    pub(crate) fn deny(reason: &'static str, message: String) -> Verdict {
        Verdict { allowed: false, reason, message: Some(message), ..Default::default() }
    }
}

fn pointer(path: &str) -> PointerBuf {
    PointerBuf::parse(path).unwrap_or_default()
}

/// The metadata the rules read. Anything else (managedFields, labels, other annotations) is stepped over.
#[derive(Clone, Debug, Default, PartialEq)]
struct Meta {
    name: String,
    namespace: Option<String>,
    /// Only this project's annotations (`wpa.datadoghq.com/*`): nothing else is read, and kubectl's
    /// last-applied copy of the whole object need not be copied on every request.
    annotations: Option<BTreeMap<String, String>>,
    deletion_timestamp: Option<String>,
    creation_timestamp: Option<jiff::Timestamp>,
}

impl Meta {
    fn read(r: &mut Reader<'_>) -> Result<Meta, String> {
        let mut meta = Meta::default();
        r.members(|r, key| {
            match key {
                "name" => meta.name = r.owned_string()?,
                "namespace" => meta.namespace = r.optional_string()?,
                "annotations" if !r.null() => {
                    let mut own = BTreeMap::new();
                    r.members(|r, key| {
                        if key.starts_with(annotations::PREFIX) {
                            own.insert(key.to_string(), r.owned_string()?);
                        }
                        Ok(())
                    })?;
                    meta.annotations = Some(own);
                }
                "deletionTimestamp" => meta.deletion_timestamp = r.optional_string()?,
                "creationTimestamp" => meta.creation_timestamp = r.decode()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(meta)
    }

    fn annotations(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.annotations.as_ref().unwrap_or(&EMPTY)
    }
}

/// The parts of a WPA the rules read. A spec with wrong types (possible before the API server's schema
/// validation, i.e. at `/mutate`) is kept as its error, so that the rest of the object stays readable.
#[derive(Clone, Debug, Default)]
pub(crate) struct Wpa {
    metadata: Meta,
    spec: Option<Result<WatermarkPodAutoscalerSpec, String>>,
}

impl Wpa {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Wpa, String> {
        let mut wpa = Wpa::default();
        r.members(|r, key| {
            match key {
                "metadata" => wpa.metadata = Meta::read(r)?,
                "spec" if !r.null() => wpa.spec = Some(r.decode_or_keep_error()?),
                _ => {}
            }
            Ok(())
        })?;
        Ok(wpa)
    }
}

/// `/mutate` for a WPA: upstream's defaults, as a minimal JSON Patch (only what is missing).
pub(crate) fn mutate_wpa(wpa: &Wpa) -> Verdict {
    let spec = match &wpa.spec {
        // No spec: the CRD schema refuses the object; nothing to default.
        None => return Verdict::allow("no_spec"),
        // Wrong types: the API server's schema validation gives the precise error.
        Some(Err(_)) => return Verdict::allow("unparsable"),
        Some(Ok(spec)) => spec,
    };
    let defaults = validation::missing_defaults(spec);
    if defaults.is_empty() {
        return Verdict::allow("ok");
    }
    let mut v = Verdict::allow("defaulted");
    let fields: Vec<&str> =
        defaults.iter().map(|d| d.pointer.strip_prefix("/spec/").unwrap_or(d.pointer)).collect();
    v.audit.insert("defaulted", fields.join(",").into());
    v.patch = defaults
        .into_iter()
        .map(|d| {
            let path = pointer(d.pointer);
            if d.present {
                PatchOperation::Replace(ReplaceOperation { path, value: d.value })
            } else {
                PatchOperation::Add(AddOperation { path, value: d.value })
            }
        })
        .collect();
    v
}

fn target_of(spec: &WatermarkPodAutoscalerSpec) -> String {
    format!("{}/{}", spec.scale_target_ref.kind, spec.scale_target_ref.name)
}

/// `/validate` for a WPA.
pub(crate) fn validate_wpa(
    op: Op,
    wpa: &Wpa,
    old: Option<&Wpa>,
    index: &TargetIndex,
    limits: &validation::AdmissionLimits,
) -> Verdict {
    if !matches!(op, Op::Create | Op::Update) {
        return Verdict::allow("ok");
    }
    let default_spec;
    let spec = match &wpa.spec {
        Some(Ok(spec)) => spec,
        Some(Err(e)) => {
            return Verdict::deny("malformed", format!("cannot read the WatermarkPodAutoscaler's spec: {e}"));
        }
        None => {
            default_spec = WatermarkPodAutoscalerSpec::default();
            &default_spec
        }
    };
    if wpa.metadata.deletion_timestamp.is_some() {
        // Let a WPA being deleted lose its finalizer even if its spec is invalid.
        return Verdict::allow("deleting");
    }
    let old = old.filter(|_| op == Op::Update);
    if let Some(old) = old
        && old.metadata.annotations() == wpa.metadata.annotations()
    {
        // Status, label, finalizer and foreign-annotation updates are never refused (the reader keeps only
        // this project's annotations, so kubectl's rewritten last-applied one compares equal); nor is
        // switching dry-run, the tool of an incident ("two autoscalers fight: freeze ours now"), whatever
        // else is wrong with the WPA.
        if old.spec == wpa.spec {
            return Verdict::allow("unchanged");
        }
        if let (Some(Ok(before)), Some(Ok(after))) = (&old.spec, &wpa.spec) {
            // `/mutate` runs on UPDATE too and adds the defaults a stored WPA lacks (one created while the
            // webhook was absent): what it added is no change of the user's, so compare the specs as
            // defaulted.
            let (before, after) = (validation::with_defaults(before), validation::with_defaults(after));
            if before == after {
                return Verdict::allow("unchanged");
            }
            if only_dry_run_differs(&before, &after) {
                return Verdict::allow("dry_run_only");
            }
        }
    }
    let namespace = wpa.metadata.namespace.clone().unwrap_or_default();
    let name = wpa.metadata.name.clone();
    let violations =
        validation::admission_violations(spec, wpa.metadata.annotations(), &namespace, &name, limits);
    if !violations.is_empty() {
        let lines: Vec<String> = violations.iter().map(ToString::to_string).collect();
        return Verdict::deny("invalid", lines.join("; "));
    }
    let mut verdict = Verdict::allow("ok");
    let others = other_autoscalers(index, &namespace, &name, spec);
    if !others.is_empty() {
        let accepted =
            wpa.metadata.annotations().get(annotations::ALLOW_CONFLICT).map(String::as_str) == Some("true");
        // A WPA that was on its target before the other autoscalers is not refused for their arrival: its
        // ConflictingAutoscaler condition reports them, and refusing its updates would block the very
        // changes (dry-run, bounds) that end the fight.
        let kept_target = old.and_then(|o| o.spec.as_ref()?.as_ref().ok()).is_some_and(|before| {
            before.scale_target_ref.kind == spec.scale_target_ref.kind
                && before.scale_target_ref.name == spec.scale_target_ref.name
        });
        // On CREATE the API server stamps the new WPA with the current second before validating it, so an
        // autoscaler made in that same second would compare as younger: a WPA being created is the newest.
        let ours = match old {
            Some(_) => Age::Existing(wpa.metadata.creation_timestamp),
            None => Age::New,
        };
        let came_first = kept_target && others.iter().all(|o| ours.came_before(o.created));
        let who = others.iter().map(|o| o.describe(ours)).collect::<Vec<_>>().join(" and ");
        if accepted {
            verdict.warnings.push(format!(
                "{} is also scaled by {who}; two autoscalers on one target fight over its replica count (accepted by the {} annotation)",
                target_of(spec),
                annotations::ALLOW_CONFLICT
            ));
            verdict.reason = "conflict_accepted";
        } else if came_first {
            verdict.warnings.push(format!(
                "{} is also scaled by {who}; two autoscalers on one target fight over its replica count (this WPA's ConflictingAutoscaler condition reports it). Remove the other autoscaler, or set the annotation {}: \"true\" to accept the conflict",
                target_of(spec),
                annotations::ALLOW_CONFLICT
            ));
            verdict.reason = "conflict_later";
        } else {
            return Verdict::deny(
                "conflict",
                format!(
                    "spec.scaleTargetRef: {} is already scaled by {who}; two autoscalers on one target fight over its replica count. Remove the other autoscaler, or set the annotation {}: \"true\" to accept the conflict",
                    target_of(spec),
                    annotations::ALLOW_CONFLICT
                ),
            );
        }
    }
    if spec.dry_run == Some(true) {
        verdict.warnings.push(
            "spec.dryRun is true: decisions are recorded in the status, the target is never scaled".into(),
        );
    }
    let metrics = spec.metrics.as_deref().unwrap_or_default();
    if metrics.len() > 1 && !spec.converge_towards_watermark.as_deref().unwrap_or("").is_empty() {
        verdict.warnings.push(
            "spec.convergeTowardsWatermark is designed for a single metric: with several, the highest proposal still wins".into(),
        );
    }
    verdict
}

/// Whether two specs differ in `dryRun` alone.
fn only_dry_run_differs(before: &WatermarkPodAutoscalerSpec, after: &WatermarkPodAutoscalerSpec) -> bool {
    let mut before = before.clone();
    before.dry_run = after.dry_run;
    before == *after
}

/// Another autoscaler of a WPA's target.
struct Other {
    kind: &'static str,
    namespace: String,
    name: String,
    created: Option<jiff::Timestamp>,
}

impl Other {
    /// `HorizontalPodAutoscaler ns/web (created after this WatermarkPodAutoscaler, at ...)`: which came
    /// first, when both creation times are known (or this WPA is being created).
    fn describe(&self, ours: Age) -> String {
        let plain = format!("{} {}/{}", self.kind, self.namespace, self.name);
        match (ours, self.created) {
            (Age::New | Age::Existing(Some(_)), Some(at)) => {
                let order = if ours.came_before(self.created) { "after" } else { "before" };
                format!("{plain} (created {order} this WatermarkPodAutoscaler, at {at})")
            }
            _ => plain,
        }
    }
}

/// The age of the WPA under review, against which the other autoscalers of its target are ordered.
#[derive(Clone, Copy)]
enum Age {
    /// Being created: every autoscaler already stored came before it.
    New,
    /// Stored already, created at this time (if the object says).
    Existing(Option<jiff::Timestamp>),
}

impl Age {
    /// Whether this WPA was created no later than an autoscaler created at `theirs` (same second: not known
    /// otherwise, so yes; an unknown time: no).
    fn came_before(self, theirs: Option<jiff::Timestamp>) -> bool {
        matches!((self, theirs), (Age::Existing(Some(ours)), Some(theirs)) if ours <= theirs)
    }
}

/// The WPAs (but this one) and HPAs that scale the WPA's target.
fn other_autoscalers(
    index: &TargetIndex,
    namespace: &str,
    name: &str,
    spec: &WatermarkPodAutoscalerSpec,
) -> Vec<Other> {
    let (kind, target) = (&spec.scale_target_ref.kind, &spec.scale_target_ref.name);
    let mut others: Vec<Other> = index
        .wpas_for(namespace, kind, target)
        .into_iter()
        .filter(|g| g.name != name)
        .map(|g| Other {
            kind: "WatermarkPodAutoscaler",
            namespace: namespace.into(),
            name: g.name,
            created: g.created,
        })
        .collect();
    others.extend(index.hpas_for(namespace, kind, target).into_iter().map(|h| Other {
        kind: "HorizontalPodAutoscaler",
        namespace: namespace.into(),
        name: h.name,
        created: h.created,
    }));
    others
}

/// The kinds whose replica count a WPA governs and this webhook checks.
pub(crate) fn is_workload(group: &str, kind: &str) -> bool {
    group == "apps" && matches!(kind, "Deployment" | "StatefulSet")
}

/// The fields of a Deployment or StatefulSet the rules read.
#[derive(Debug, Default)]
pub(crate) struct Workload {
    metadata: Meta,
    replicas: Option<i64>,
}

impl Workload {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Workload, String> {
        let mut workload = Workload::default();
        r.members(|r, key| {
            match key {
                "metadata" => workload.metadata = Meta::read(r)?,
                "spec" => r.members(|r, key| {
                    if key == "replicas" {
                        workload.replicas = r.decode()?;
                    }
                    Ok(())
                })?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(workload)
    }

    pub(crate) fn name(&self) -> &str {
        &self.metadata.name
    }

    fn being_deleted(&self) -> bool {
        self.metadata.deletion_timestamp.is_some()
    }
}

/// The WPA whose rules `/validate` and `/mutate` apply to a workload this request creates or updates (the
/// first, by name), or, when there is nothing to check, the reason the request is allowed as it is.
pub(crate) fn governing_wpa(
    op: Op,
    kind: &str,
    namespace: &str,
    name: &str,
    object: &Workload,
    index: &TargetIndex,
) -> Result<Governing, &'static str> {
    if !matches!(op, Op::Create | Op::Update) || object.being_deleted() {
        return Err("ok");
    }
    index.wpas_for(namespace, kind, name).into_iter().next().ok_or("not_governed")
}

/// `/validate` for a Deployment or StatefulSet that `wpa` governs ([`governing_wpa`]): its
/// `wpa.datadoghq.com/*` annotations.
pub(crate) fn validate_workload(kind: &str, namespace: &str, wpa: &Governing, object: &Workload) -> Verdict {
    let problems = validation::annotation_violations(object.metadata.annotations(), false);
    if problems.is_empty() {
        return Verdict::allow("ok");
    }
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    Verdict::deny(
        "invalid_annotations",
        format!(
            "{} (this {kind} is scaled by WatermarkPodAutoscaler {namespace}/{})",
            lines.join("; "),
            wpa.name
        ),
    )
}

/// `/mutate` for a Deployment or StatefulSet that `wpa` governs ([`governing_wpa`]): a `spec.replicas`
/// outside its bounds is clamped (or, when that WPA is in dry-run, only warned about).
pub(crate) fn mutate_workload(kind: &str, namespace: &str, wpa: &Governing, object: &Workload) -> Verdict {
    let Some(replicas) = object.replicas else { return Verdict::allow("ok") };
    let (min, max) = (i64::from(wpa.min_replicas), wpa.max_replicas.map(i64::from));
    if max.is_some_and(|max| max < min) {
        // An invalid WPA (the reconciler reports it); do not act on its bounds.
        return Verdict::allow("ok");
    }
    let (clamped, bound, word) = if replicas < min {
        (min, "minReplicas", "below")
    } else if let Some(max) = max.filter(|m| replicas > *m) {
        (max, "maxReplicas", "above")
    } else {
        return Verdict::allow("ok");
    };
    let who = format!("WatermarkPodAutoscaler {namespace}/{}", wpa.name);
    if wpa.dry_run {
        let mut v = Verdict::allow("out_of_bounds_dry_run");
        v.warnings.push(format!(
            "spec.replicas {replicas} is {word} {bound} {clamped} of {who}, which governs this {kind}; left unchanged because that WPA is in dry-run"
        ));
        return v;
    }
    let mut v = Verdict::allow("clamped");
    v.patch.push(PatchOperation::Replace(ReplaceOperation {
        path: pointer("/spec/replicas"),
        value: Value::from(clamped),
    }));
    v.warnings.push(format!("spec.replicas {replicas} is {word} {bound} {clamped} of {who}, which governs this {kind}: set to {clamped}"));
    v.audit.insert("clamped-replicas", format!("{replicas}->{clamped}").into());
    v
}
