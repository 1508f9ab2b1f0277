//! Helm through its library: `tests/helm/chart.py` (PyPI helm-python-sdk; there is no `helm` binary).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Fails (never skips) when python3 or helm-python-sdk is missing.
pub fn require_helm_library() {
    let out = Command::new("python3")
        .args(["-c", "import helm_python; print(helm_python.helm_sdk_version())"])
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is needed for the chart tests and cannot be run ({e}); install it (Debian: apt-get install python3 python3-pip)")
        });
    assert!(
        out.status.success(),
        "the Helm library for the chart tests is missing: `python3 -m pip install -r tests/helm/requirements.txt` \
         (bash scripts/test.sh e2e does it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("Helm library {}", String::from_utf8_lossy(&out.stdout).trim());
}

/// `python3 tests/helm/chart.py ARGS`: whether it exited 0, and its JSON report.
pub fn chart_py(args: &[&str]) -> (bool, Value) {
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("tests/helm/chart.py")).args(args).current_dir(repo());
    devcluster::process::without_proxy_settings(&mut cmd);
    let out = cmd.output().expect("run tests/helm/chart.py");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "chart.py {args:?} printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}

/// The documents of a YAML stream, empty ones dropped.
pub fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("rendered YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// A CRD that accepts any object of `group/version` `kind`: enough for the API server to take the chart's
/// cert-manager and Prometheus Operator objects, whose real CRDs (and so whose schemas) are not installed
/// here, and whose controllers do not run. Those objects' fields are therefore not validated.
pub fn stub_crd(
    group: &str,
    version: &str,
    kind: &str,
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    let singular = kind.to_lowercase();
    let plural = format!("{singular}s");
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural, "singular": singular},
            "versions": [{
                "name": version, "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    }))
    .expect("a stub CRD")
}
