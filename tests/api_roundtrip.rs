//! Upstream-shaped WatermarkPodAutoscaler objects survive a typed round trip with no field lost, and the CRD
//! carries what `kubectl explain` and the API server's own checks need.

use std::path::Path;

use serde_json::Value;
use wpa::api::{WatermarkPodAutoscaler, crd};

fn load(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/upstream-objects").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).expect("valid YAML")
}

#[test]
fn upstream_objects_round_trip_without_loss() {
    for name in ["external.yaml", "resource.yaml", "recommender.yaml"] {
        let original = load(name);
        let typed: WatermarkPodAutoscaler =
            serde_json::from_value(original.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let back = serde_json::to_value(&typed).expect("serializes");
        assert_eq!(back, original, "{name} changed in a round trip");
    }
}

#[test]
fn typed_fields_carry_upstream_meaning() {
    let wpa: WatermarkPodAutoscaler = serde_json::from_value(load("external.yaml")).expect("parses");
    let s = &wpa.spec;
    assert_eq!(s.tolerance.as_ref().map(|q| q.milli()), Some(10));
    assert_eq!(s.scale_down_limit_factor.as_ref().map(|q| q.milli()), Some(30_000));
    let e = s.metrics.as_ref().and_then(|m| m[0].external.as_ref()).expect("an external metric");
    assert_eq!(e.high_watermark.as_ref().map(|q| q.milli()), Some(400));
    assert_eq!(wpa.status.as_ref().map(|st| st.conditions.len()), Some(2));
    let reco: WatermarkPodAutoscaler = serde_json::from_value(load("recommender.yaml")).expect("parses");
    let tls = reco.spec.recommender.as_ref().and_then(|r| r.tls_config.as_ref()).expect("tlsConfig");
    assert_eq!(tls.server_name.as_deref(), Some("recommender.example.svc"));
}

#[test]
fn crd_schema_has_bounds_enums_descriptions_and_columns() {
    let crd = serde_json::to_value(crd()).expect("serializes");
    let version = &crd["spec"]["versions"][0];
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(crd["spec"]["names"]["shortNames"], serde_json::json!(["wpa"]));
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(version["subresources"], serde_json::json!({"status": {}}));
    assert_eq!(spec["required"], serde_json::json!(["scaleTargetRef"]));
    let p = &spec["properties"];
    assert_eq!(p["minReplicas"]["minimum"], 1.0);
    assert_eq!(p["maxReplicas"]["minimum"], 1.0);
    assert_eq!(p["minAvailableReplicaPercentage"]["maximum"], 100.0);
    assert_eq!(p["downscaleForbiddenWindowSeconds"]["minimum"], 1.0);
    assert_eq!(p["upscaleDelayAboveWatermarkSeconds"]["minimum"], 0.0);
    assert_eq!(p["readinessDelaySeconds"]["minimum"], 1.0);
    assert_eq!(p["replicaScalingAbsoluteModulo"]["minimum"], 1.0);
    assert_eq!(p["tolerance"]["x-kubernetes-int-or-string"], true);
    assert!(p["tolerance"]["pattern"].as_str().is_some_and(|s| s.contains("KMGTPE")));
    assert_eq!(p["scaleTargetRef"]["required"], serde_json::json!(["kind", "name"]));
    let metric = &p["metrics"]["items"];
    assert_eq!(metric["properties"]["type"]["enum"], serde_json::json!(["External", "Resource"]));
    assert_eq!(metric["required"], serde_json::json!(["type"]));
    assert_eq!(p["metrics"]["x-kubernetes-list-type"], "atomic");
    assert_eq!(p["recommender"]["required"], serde_json::json!(["url"]));
    assert_eq!(
        p["recommender"]["properties"]["tlsConfig"]["properties"]["minVersion"]["pattern"],
        "^TLS1[0-3]$"
    );
    for field in ["algorithm", "tolerance", "scaleTargetRef", "metrics", "dryRun"] {
        assert!(
            p[field]["description"].as_str().is_some_and(|d| d.len() > 20),
            "{field} lacks a description"
        );
    }
    let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"];
    assert_eq!(status["required"], serde_json::json!(["currentReplicas", "desiredReplicas"]));
    assert!(
        !serde_json::to_string(&crd).expect("json").contains("\"default\""),
        "upstream's CRD has no defaults"
    );
    let columns = version["additionalPrinterColumns"].as_array().expect("columns");
    let names = |wide: bool| -> Vec<&str> {
        columns
            .iter()
            .filter(|c| (c["priority"].as_i64().unwrap_or(0) > 0) == wide)
            .filter_map(|c| c["name"].as_str())
            .collect()
    };
    // `kubectl get wpa`: upstream's columns, in its order.
    assert_eq!(
        names(false),
        [
            "scaling active",
            "condition",
            "condition state",
            "value",
            "high watermark",
            "low watermark",
            "age",
            "min replicas",
            "max replicas",
            "dry-run",
            "last scale"
        ]
    );
    // `-o wide` adds upstream's scale count and ours: the target and the replicas.
    assert_eq!(names(true), ["target kind", "target", "desired", "current", "scale count"]);
}
