//! `wpa dry-run enable|disable|list|revert`: upstream's kubectl plugin (`kubectl wpa dry-run`), same
//! selection, same output lines, so scripts written for it keep working. Also reached as `kubectl wpa
//! dry-run ...` when the binary is installed as `kubectl-wpa` (see [`super::parse`]).
//!
//! A WPA in dry-run keeps computing and reporting its decisions but never writes its target's `/scale`:
//! the switch an operator flips during an incident, for one WPA or all of them at once.

use std::{io::BufRead, path::PathBuf};

use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};

use crate::{
    api::WatermarkPodAutoscaler,
    cmd::connection::Connection,
    runtime::{
        client::{ClientError, describe},
        output::{note, stdout},
    },
};

#[derive(clap::Args, Debug)]
pub(crate) struct DryRunArgs {
    #[command(subcommand)]
    pub(crate) action: Action,
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Action {
    /// Enable dry-run: the WPA keeps deciding and reporting, and never writes its target's scale.
    Enable(Selection),
    /// Disable dry-run: the WPA scales its target again.
    Disable(Selection),
    /// Print the dry-run state of WPAs.
    List(ListArgs),
    /// Restore the states saved by `list -o csv` (lines `namespace,name,enabled|disabled`).
    Revert(RevertArgs),
}

/// Which WPAs: one by name, those matching a label selector, or all; in one namespace or all of them.
#[derive(clap::Args, Debug)]
#[command(group(
    clap::ArgGroup::new("which").required(true).multiple(true).args(["name", "all", "label_selector"])
))]
pub(crate) struct Selection {
    /// Name of the WatermarkPodAutoscaler.
    #[arg(conflicts_with_all = ["all", "label_selector", "all_namespaces"])]
    pub(crate) name: Option<String>,
    /// Every WPA of the namespace (of all namespaces with --all-namespaces).
    #[arg(long)]
    pub(crate) all: bool,
    /// The WPAs whose labels match this selector (e.g. `team=web,tier!=batch`).
    #[arg(short = 'l', long)]
    pub(crate) label_selector: Option<String>,
    /// Look in every namespace instead of one.
    #[arg(short = 'A', long)]
    pub(crate) all_namespaces: bool,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) selection: Selection,
    /// `csv`: one `namespace,name,enabled|disabled` line per WPA, what `revert` reads back.
    #[arg(short = 'o', long, value_enum)]
    pub(crate) output: Option<Output>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    Csv,
}

#[derive(clap::Args, Debug)]
pub(crate) struct RevertArgs {
    /// The file written by `wpa dry-run list --all -A -o csv` (`-` for stdin).
    #[arg(short = 'f', long = "csv-file")]
    pub(crate) csv_file: PathBuf,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DryRunError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("WatermarkPodAutoscaler {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    #[error("no matching WatermarkPodAutoscaler in {0}")]
    NoMatch(String),
    #[error(
        "the server does not serve watermarkpodautoscalers.datadoghq.com/v1alpha1: is the CRD installed? \
         (`wpa crd | kubectl apply -f -`)"
    )]
    NoCrd,
    #[error("cannot {verb} {what}: forbidden: {message}")]
    Forbidden { verb: &'static str, what: String, message: String },
    #[error("cannot {verb} {what}: {message}")]
    Api { verb: &'static str, what: String, message: String },
    #[error(
        "unable to set the dry-run option of WatermarkPodAutoscaler '{namespace}/{name}' to {value}: {message}"
    )]
    Patch { namespace: String, name: String, value: bool, message: String },
    #[error("{failed} of {total} WatermarkPodAutoscalers were not changed (errors above)")]
    Partial { failed: usize, total: usize },
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{at}: {message}")]
    BadLine { at: String, message: String },
    #[error("cannot write to stdout: {0}")]
    Write(#[source] std::io::Error),
}

/// Runs the action, printing upstream's lines on stdout.
pub(crate) async fn run(args: &DryRunArgs) -> Result<(), DryRunError> {
    match &args.action {
        Action::Enable(selection) => set(selection, true).await,
        Action::Disable(selection) => set(selection, false).await,
        Action::List(list) => {
            let client = connect(&list.selection.connection).await?;
            for wpa in select(&client, &list.selection).await? {
                let ns = wpa.namespace().unwrap_or_default();
                let enabled = wpa.spec.dry_run.unwrap_or(false);
                match list.output {
                    // Kubernetes names never need CSV quoting (no comma, quote or newline).
                    Some(Output::Csv) => say(format_args!(
                        "{ns},{},{}",
                        wpa.name_any(),
                        if enabled { "enabled" } else { "disabled" }
                    ))?,
                    None => say(format_args!(
                        "WatermarkPodAutoscaler '{ns}/{}' dry-run option is: {enabled}",
                        wpa.name_any()
                    ))?,
                }
            }
            Ok(())
        }
        Action::Revert(revert) => self::revert(revert).await,
    }
}

async fn connect(connection: &Connection) -> Result<(Client, String), DryRunError> {
    let client = connection.client().await?;
    let namespace = connection.namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    Ok((client, namespace))
}

/// The selected WPAs; none is an error, as upstream.
async fn select(
    (client, namespace): &(Client, String),
    selection: &Selection,
) -> Result<Vec<WatermarkPodAutoscaler>, DryRunError> {
    if let Some(name) = &selection.name {
        return Ok(vec![get(client, namespace, name).await?]);
    }
    let (api, scope) = if selection.all_namespaces {
        (Api::<WatermarkPodAutoscaler>::all(client.clone()), "any namespace".to_string())
    } else {
        (Api::namespaced(client.clone(), namespace), format!("namespace {namespace}"))
    };
    let mut params = ListParams::default();
    let mut scope = scope;
    if let Some(selector) = &selection.label_selector {
        params = params.labels(selector);
        scope = format!("{scope} with labels {selector}");
    }
    let list = api
        .list(&params)
        .await
        .map_err(|e| api_error(e, "list", format!("WatermarkPodAutoscalers in {scope}")))?;
    if list.items.is_empty() {
        return Err(DryRunError::NoMatch(scope));
    }
    Ok(list.items)
}

async fn get(client: &Client, namespace: &str, name: &str) -> Result<WatermarkPodAutoscaler, DryRunError> {
    let api: Api<WatermarkPodAutoscaler> = Api::namespaced(client.clone(), namespace);
    api.get(name).await.map_err(|e| match e {
        kube::Error::Api(s) if s.is_not_found() && !missing_resource(&s) => {
            DryRunError::NotFound { namespace: namespace.into(), name: name.into() }
        }
        e => api_error(e, "get", format!("WatermarkPodAutoscaler {namespace}/{name}")),
    })
}

/// A 404 for the resource type itself (no CRD), not for an object.
fn missing_resource(status: &kube::core::Status) -> bool {
    status.message == "the server could not find the requested resource"
}

fn api_error(e: kube::Error, verb: &'static str, what: String) -> DryRunError {
    match e {
        kube::Error::Api(s) if s.is_not_found() && missing_resource(&s) => DryRunError::NoCrd,
        kube::Error::Api(s) if s.is_forbidden() => DryRunError::Forbidden { verb, what, message: s.message },
        kube::Error::Api(s) => DryRunError::Api { verb, what, message: s.message },
        other => DryRunError::Api { verb, what, message: describe(&other) },
    }
}

async fn set(selection: &Selection, value: bool) -> Result<(), DryRunError> {
    let connection = connect(&selection.connection).await?;
    let wpas = select(&connection, selection).await?;
    let mut failures = Vec::new();
    for wpa in &wpas {
        let (ns, name) = (wpa.namespace().unwrap_or_default(), wpa.name_any());
        if wpa.spec.dry_run.unwrap_or(false) == value {
            // No write: an update would go through the webhooks for nothing.
            say(format_args!("WatermarkPodAutoscaler '{ns}/{name}' dry-run option is already {value}"))?;
            continue;
        }
        match patch(&connection.0, &ns, &name, value).await {
            Ok(()) => {
                say(format_args!("WatermarkPodAutoscaler '{ns}/{name}' dry-run option is now {value}"))?
            }
            Err(e) => failures.push(e),
        }
    }
    finish(failures, wpas.len())
}

/// One line of upstream's output on stdout. A reader that went away does not stop the changes asked for.
fn say(line: std::fmt::Arguments<'_>) -> Result<(), DryRunError> {
    stdout(&format!("{line}\n")).map_err(DryRunError::Write)
}

/// A single failure is the command's error (one line); several are printed one a line, then counted.
fn finish(mut failures: Vec<DryRunError>, total: usize) -> Result<(), DryRunError> {
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        failed => {
            for e in &failures {
                note!("error: {e}");
            }
            Err(DryRunError::Partial { failed, total })
        }
    }
}

/// A JSON merge patch of `spec.dryRun` alone, as upstream's `client.MergeFrom`: nothing else of the spec is
/// sent, so a concurrent change of another field is never overwritten.
async fn patch(client: &Client, namespace: &str, name: &str, value: bool) -> Result<(), DryRunError> {
    let api: Api<WatermarkPodAutoscaler> = Api::namespaced(client.clone(), namespace);
    let body = serde_json::json!({"spec": {"dryRun": value}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&body)).await.map(drop).map_err(|e| {
        DryRunError::Patch {
            namespace: namespace.into(),
            name: name.into(),
            value,
            message: match e {
                kube::Error::Api(s) => s.message,
                other => describe(&other),
            },
        }
    })
}

/// One line of `list -o csv`: `namespace,name,enabled|disabled`.
fn parse_state(line: &str) -> Result<(String, String, bool), String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let [namespace, name, state] = fields[..] else {
        return Err(format!("expected namespace,name,enabled|disabled, got {line:?}"));
    };
    let value = match state {
        "enabled" => true,
        "disabled" => false,
        // Upstream takes anything else as enabled; a typo must not silently stop scaling.
        other => return Err(format!("the state must be enabled or disabled, got {other:?}")),
    };
    if namespace.is_empty() || name.is_empty() {
        return Err(format!("expected namespace,name,enabled|disabled, got {line:?}"));
    }
    Ok((namespace.into(), name.into(), value))
}

async fn revert(args: &RevertArgs) -> Result<(), DryRunError> {
    let path = args.csv_file.display().to_string();
    let read_error = |source| DryRunError::Read { path: path.clone(), source };
    let text = if path == "-" {
        std::io::stdin().lock().lines().collect::<Result<Vec<_>, _>>().map_err(read_error)?.join("\n")
    } else {
        std::fs::read_to_string(&args.csv_file).map_err(read_error)?
    };
    let (client, _) = connect(&args.connection).await?;
    let (mut failures, mut total) = (Vec::new(), 0);
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        total += 1;
        let (namespace, name, value) = match parse_state(line) {
            Ok(state) => state,
            Err(e) => {
                failures.push(DryRunError::BadLine { at: format!("{path}:{}", i + 1), message: e });
                continue;
            }
        };
        let wpa = match get(&client, &namespace, &name).await {
            Ok(wpa) => wpa,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        // Already in the saved state: left alone, as upstream.
        if wpa.spec.dry_run.unwrap_or(false) == value {
            continue;
        }
        match patch(&client, &namespace, &name, value).await {
            Ok(()) => say(format_args!(
                "WatermarkPodAutoscaler '{namespace}/{name}' dry-run option is now {value}"
            ))?,
            Err(e) => failures.push(e),
        }
    }
    finish(failures, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_parse_as_list_writes_them() {
        assert_eq!(parse_state("team,web,enabled"), Ok(("team".into(), "web".into(), true)));
        assert_eq!(parse_state("team,web,disabled\r"), Ok(("team".into(), "web".into(), false)));
        assert!(parse_state("team,web,yes").unwrap_err().contains("enabled or disabled"));
        assert!(parse_state("team,web").is_err());
        assert!(parse_state(",web,enabled").is_err());
        assert!(parse_state("a,b,enabled,x").is_err());
    }
}
