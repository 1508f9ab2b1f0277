//! `wpa convert --from-hpa NAMESPACE/NAME`: the WatermarkPodAutoscaler that behaves closest to a live
//! HorizontalPodAutoscaler, created in dry run beside it so that the two can be compared before the HPA is
//! deleted. Reads the HPA (autoscaling/v2, v2beta2 or v1, whichever the API server serves first) and its
//! target with the user's kubeconfig; the mapping itself is [`mapping::convert`] (docs/convert.md).

pub(crate) mod mapping;

use std::fmt::Write as _;

use kube::{
    Api, Client, ResourceExt,
    api::{DynamicObject, PostParams},
    core::{GroupVersion, GroupVersionKind},
    discovery::ApiResource,
};

use crate::{
    api::{WatermarkPodAutoscaler, quantity::Quantity},
    cmd::connection::Connection,
    runtime::client::{ClientError, describe},
};
use mapping::{Converted, Hpa, Remark, Settings, Workload};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  # Print the WPA closest to HPA shop/web, each approximation named in a comment
  wpa convert --from-hpa shop/web > web-wpa.yaml

  # Create it through the API server (the webhook admits it), in dry run beside the HPA
  kubectl wpa convert --from-hpa shop/web --apply

  # Check it offline against a day of your metric before applying it
  wpa convert --from-hpa shop/web | wpa simulate --wpa - --series web-rps.csv

  # Your kube-controller-manager runs the HPA with a 5 % tolerance
  wpa convert --from-hpa shop/web --hpa-tolerance 0.05")]
pub(crate) struct ConvertArgs {
    /// The HorizontalPodAutoscaler: NAMESPACE/NAME, or NAME with -n.
    #[arg(long = "from-hpa", value_name = "NAMESPACE/NAME")]
    pub(crate) from_hpa: String,
    #[command(flatten)]
    pub(crate) connection: Connection,
    /// Create the WPA through the API server (so the admission webhook checks it) instead of printing it.
    #[arg(long)]
    pub(crate) apply: bool,
    /// The WPA's name [default: the HPA's].
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// The HPA controller's tolerance (kube-controller-manager --horizontal-pod-autoscaler-tolerance), from
    /// 0 to below 1: the band around each target.
    #[arg(long, default_value = "0.1", value_name = "RATIO", env = "WPA_HPA_TOLERANCE", value_parser = tolerance)]
    pub(crate) hpa_tolerance: i64,
    /// The HPA controller's --horizontal-pod-autoscaler-downscale-stabilization: the window of an HPA that
    /// sets none.
    #[arg(long, default_value = "5m", value_name = "DURATION", env = "WPA_HPA_DOWNSCALE_STABILIZATION", value_parser = whole_seconds_or_off)]
    pub(crate) hpa_downscale_stabilization: i32,
    /// The HPA controller's --horizontal-pod-autoscaler-sync-period: the period of the limits of an HPA
    /// without behavior.
    #[arg(long, default_value = "15s", value_name = "DURATION", env = "WPA_HPA_SYNC_PERIOD", value_parser = whole_seconds)]
    pub(crate) hpa_sync_period: i32,
    /// The replica count at which a Pods policy (a number of replicas) becomes the WPA's percentage
    /// [default: the target's count now].
    #[arg(long, value_name = "COUNT", value_parser = clap::value_parser!(i32).range(1..))]
    pub(crate) reference_replicas: Option<i32>,
}

/// `--hpa-tolerance`: a quantity from 0 to below 1, in thousandths.
fn tolerance(s: &str) -> Result<i64, String> {
    match Quantity::parse(s.trim()) {
        Ok(q) if (0..1000).contains(&q.milli()) => Ok(q.milli()),
        _ => Err(format!("{s:?} is not a tolerance from 0 to below 1, such as 0.1")),
    }
}

fn whole_seconds(s: &str) -> Result<i32, String> {
    let d = crate::api::duration::arg(s)?;
    i32::try_from(d.as_secs().max(1)).map_err(|_| format!("{s:?} is too long"))
}

fn whole_seconds_or_off(s: &str) -> Result<i32, String> {
    let d = crate::api::duration::arg_or_off(s)?;
    i32::try_from(d.as_secs()).map_err(|_| format!("{s:?} is too long"))
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConvertError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    TwoNamespaces(#[from] crate::cmd::namespaced::TwoNamespaces),
    #[error("cannot read HorizontalPodAutoscaler {namespace}/{name}: {error}")]
    Read { namespace: String, name: String, error: String },
    #[error("HorizontalPodAutoscaler {hpa} cannot be converted:{}", lines(.reasons))]
    Refused { hpa: String, reasons: Vec<Remark> },
    #[error("cannot create WatermarkPodAutoscaler {namespace}/{name}: {error}")]
    Create { namespace: String, name: String, error: String },
}

fn lines(reasons: &[Remark]) -> String {
    reasons.iter().fold(String::new(), |mut s, r| {
        let _ = write!(s, "\n  {r}");
        s
    })
}

impl ConvertError {
    /// What the HPA asks cannot be said by a WPA (exit status 2, as bad input).
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(self, ConvertError::Refused { .. })
    }
}

fn api_error(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message,
        other => describe(&other),
    }
}

/// Reads the HPA in the first of autoscaling/v2, v2beta2 and v1 the API server serves (v2beta1 says targets
/// another way, and v1 alone cannot say more than one cpu target).
async fn read_hpa(client: &Client, namespace: &str, name: &str) -> Result<Hpa, ConvertError> {
    let read = |error: String| ConvertError::Read { namespace: namespace.into(), name: name.into(), error };
    let group = kube::discovery::group(client, "autoscaling").await.map_err(|e| read(api_error(e)))?;
    let resource = ["v2", "v2beta2", "v1"]
        .into_iter()
        .find_map(|v| {
            group
                .versioned_resources(v)
                .into_iter()
                .map(|(r, _)| r)
                .find(|r| r.kind == "HorizontalPodAutoscaler")
        })
        .ok_or_else(|| {
            read("the API server serves no autoscaling/v2, v2beta2 or v1 HorizontalPodAutoscaler".into())
        })?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let object = api.get(name).await.map_err(|e| read(api_error(e)))?;
    let json = serde_json::to_value(&object).map_err(|e| read(e.to_string()))?;
    Hpa::from_json(&json).map_err(read)
}

/// Reads the HPA's target as a plain object (its spec, whatever its kind), or says why it cannot.
async fn read_workload(client: &Client, hpa: &Hpa) -> Result<Workload, String> {
    let r = &hpa.spec.scale_target_ref;
    let what = format!("{} {}/{}", r.kind, hpa.namespace, r.name);
    let gv: GroupVersion = r
        .api_version
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("cannot read {what}: apiVersion {:?}: {e}", r.api_version))?;
    let gvk = GroupVersionKind::gvk(&gv.group, &gv.version, &r.kind);
    let (resource, _): (ApiResource, _) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| format!("cannot read {what}: {}", api_error(e)))?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &hpa.namespace, &resource);
    let object = api.get(&r.name).await.map_err(|e| format!("cannot read {what}: {}", api_error(e)))?;
    let json = serde_json::to_value(&object).map_err(|e| format!("cannot read {what}: {e}"))?;
    Workload::from_json(&json).map_err(|e| format!("{what}: {e}"))
}

/// What the command produced: the YAML to print, or the WPA it created; the approximations either way.
pub(crate) struct Outcome {
    pub(crate) hpa: Hpa,
    pub(crate) converted: Converted,
    pub(crate) created: bool,
}

/// Reads, converts, and creates the WPA with `--apply`.
pub(crate) async fn run(args: &ConvertArgs) -> Result<Outcome, ConvertError> {
    let client = args.connection.client().await?;
    let (namespace, name) = crate::cmd::namespaced::parse(
        &args.from_hpa,
        args.connection.namespace.as_deref(),
        client.default_namespace(),
    )?;
    let hpa = read_hpa(&client, &namespace, &name).await?;
    let workload = read_workload(&client, &hpa).await;
    let settings = Settings {
        tolerance_milli: args.hpa_tolerance,
        downscale_stabilization: args.hpa_downscale_stabilization,
        sync_period: args.hpa_sync_period,
        reference_replicas: args.reference_replicas,
        name: args.name.clone(),
    };
    let converted = mapping::convert(&hpa, workload.as_ref().map_err(String::as_str), &settings)
        .map_err(|reasons| ConvertError::Refused { hpa: format!("{namespace}/{name}"), reasons })?;
    if args.apply {
        let wpa = &converted.wpa;
        let api: Api<WatermarkPodAutoscaler> = Api::namespaced(client, &namespace);
        api.create(&PostParams::default(), wpa).await.map_err(|e| ConvertError::Create {
            namespace: namespace.clone(),
            name: wpa.name_any(),
            error: match e {
                kube::Error::Api(s) if s.code == 409 => {
                    format!("{}: delete it first, or give this one another name with --name", s.message)
                }
                other => api_error(other),
            },
        })?;
    }
    Ok(Outcome { hpa, converted, created: args.apply })
}

/// Runs the command and writes its output: the YAML on stdout (approximations as comments, a count on
/// stderr), or with `--apply` what was created on stdout and each approximation on stderr.
pub(crate) fn write(outcome: &Outcome) -> std::io::Result<()> {
    use std::io::Write;
    let Outcome { hpa, converted, created } = outcome;
    let wpa = &converted.wpa;
    let mut err = std::io::stderr().lock();
    if *created {
        for a in &converted.approximations {
            let _ = writeln!(err, "approximation: {a}");
        }
        crate::cmd::stdout(&format!(
            "watermarkpodautoscaler.datadoghq.com/{} created in {}: dry run beside HorizontalPodAutoscaler {}/{}; compare with `wpa explain {}/{}`, then see docs/convert.md to switch over\n",
            wpa.name_any(),
            hpa.namespace,
            hpa.namespace,
            hpa.name,
            hpa.namespace,
            wpa.name_any(),
        ))
    } else {
        let n = converted.approximations.len();
        if n > 0 {
            let _ = writeln!(
                err,
                "wpa convert: {n} approximations, named in the YAML's comments (docs/convert.md)"
            );
        }
        crate::cmd::stdout(&render(hpa, converted))
    }
}

/// The WPA as YAML, with a header that says where it comes from and names each approximation.
pub(crate) fn render(hpa: &Hpa, converted: &Converted) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Converted by `wpa convert` from HorizontalPodAutoscaler {}/{} ({}).",
        hpa.namespace, hpa.name, hpa.api_version
    );
    for line in [
        "# It runs in dry run beside the HPA (the allow-conflicting-autoscaler annotation): compare their decisions,",
        "# then set dryRun: false, delete the HPA and the annotation (docs/convert.md).",
    ] {
        let _ = writeln!(o, "{line}");
    }
    if !converted.approximations.is_empty() {
        let _ = writeln!(o, "# Approximations:");
        for a in &converted.approximations {
            wrap(&mut o, &a.to_string(), 110);
        }
    }
    match serde_yaml_ng::to_string(&converted.wpa) {
        Ok(yaml) => o.push_str(&yaml),
        // Serializing plain data does not fail; if it ever did, JSON is YAML too.
        Err(_) => o.push_str(&serde_json::to_string_pretty(&converted.wpa).unwrap_or_default()),
    }
    o
}

/// `text` as comment lines of at most `width` characters: `# - ` then `#   ` for the continuation.
fn wrap(o: &mut String, text: &str, width: usize) {
    let mut line = String::from("# -");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > width && line.len() > 4 {
            let _ = writeln!(o, "{line}");
            line = String::from("#  ");
        }
        line.push(' ');
        line.push_str(word);
    }
    let _ = writeln!(o, "{line}");
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde_json::json;

    use super::*;

    fn converted() -> (Hpa, Converted) {
        let hpa = Hpa::from_json(&json!({
            "apiVersion": "autoscaling/v2beta2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"namespace": "shop", "name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2, "maxReplicas": 10,
                "metrics": [{"type": "External", "external": {"metric": {"name": "rps"},
                    "target": {"type": "AverageValue", "averageValue": "100"}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}
        }))
        .expect("an HPA");
        let c = mapping::convert(&hpa, Err("not read"), &Settings::default()).expect("converted");
        (hpa, c)
    }

    #[test]
    fn the_yaml_is_read_back_unchanged_as_wpa_simulate_reads_it() {
        let (hpa, c) = converted();
        let yaml = render(&hpa, &c);
        let back = crate::cmd::simulate::parse_wpa(std::path::Path::new("web.yaml"), &yaml)
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(back.spec, c.wpa.spec);
        assert_eq!(back.metadata.annotations, c.wpa.metadata.annotations);
    }

    #[test]
    fn the_yaml_names_each_approximation_in_a_comment_of_bounded_width() {
        let (hpa, c) = converted();
        let yaml = render(&hpa, &c);
        let comments: Vec<&str> = yaml.lines().take_while(|l| l.starts_with('#')).collect();
        assert!(comments[0].contains("HorizontalPodAutoscaler shop/web (autoscaling/v2beta2)"), "{yaml}");
        let items = comments.iter().filter(|l| l.starts_with("# - ")).count();
        assert_eq!(items, c.approximations.len(), "{yaml}");
        assert!(
            comments.iter().any(|l| l.starts_with("# - spec.downscaleDelayBelowWatermarkSeconds: 60:")),
            "{yaml}"
        );
        assert!(comments.iter().all(|l| l.chars().count() <= 110), "{yaml}");
        assert!(yaml.lines().all(|l| l.starts_with('#') || !l.contains("approximation")));
    }

    #[test]
    fn a_refusal_is_one_line_a_reason_and_exits_as_bad_input() {
        let e = ConvertError::Refused {
            hpa: "shop/web".into(),
            reasons: vec![
                Remark { at: "spec.metrics[0]".into(), text: "a Pods metric ...".into() },
                Remark { at: "spec.scaleTargetRef.apiVersion".into(), text: "missing".into() },
            ],
        };
        assert_eq!(
            e.to_string(),
            "HorizontalPodAutoscaler shop/web cannot be converted:\n  spec.metrics[0]: a Pods metric ...\n  spec.scaleTargetRef.apiVersion: missing"
        );
        assert!(e.is_refusal());
        let read =
            ConvertError::Read { namespace: "shop".into(), name: "web".into(), error: "not found".into() };
        assert!(!read.is_refusal());
    }

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: ConvertArgs,
    }

    #[test]
    fn the_controllers_settings_are_flags_with_its_defaults() {
        let args = Cli::try_parse_from(["wpa", "--from-hpa", "shop/web"]).expect("parsed").args;
        assert_eq!(
            (args.hpa_tolerance, args.hpa_downscale_stabilization, args.hpa_sync_period),
            (100, 300, 15)
        );
        let args = Cli::try_parse_from([
            "wpa",
            "--from-hpa=web",
            "--hpa-tolerance=50m",
            "--hpa-downscale-stabilization=0s",
            "--hpa-sync-period=30s",
            "--reference-replicas=4",
            "--apply",
        ])
        .expect("parsed")
        .args;
        assert_eq!((args.hpa_tolerance, args.hpa_downscale_stabilization, args.hpa_sync_period), (50, 0, 30));
        assert_eq!((args.reference_replicas, args.apply), (Some(4), true));
        for bad in
            [&["--hpa-tolerance", "1"][..], &["--hpa-tolerance", "-0.1"], &["--reference-replicas", "0"]]
        {
            let argv = [&["wpa", "--from-hpa", "web"][..], bad].concat();
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
        assert!(Cli::try_parse_from(["wpa"]).is_err(), "--from-hpa is required");
    }
}
