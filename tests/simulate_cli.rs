//! `wpa simulate` as a user runs it: the binary, the shipped examples, and bad input.

use std::{path::PathBuf, process::Command};

use serde_json::Value;

fn wpa() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wpa"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write a temp file");
    p
}

const WPA: &str = r#"
apiVersion: datadoghq.com/v1alpha1
kind: WatermarkPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 10
  metrics:
  - type: External
    external:
      metricName: qps
      metricSelector: {matchLabels: {app: web}}
      highWatermark: "100"
      lowWatermark: "50"
"#;

#[test]
fn example_day_scales_up_and_down_within_bounds() {
    let out = wpa()
        .args(["simulate", "--format", "json", "--ready-after", "30"])
        .arg("--wpa")
        .arg(root().join("examples/wpa.yaml"))
        .arg("--series")
        .arg(root().join("examples/series.csv"))
        .output()
        .expect("run wpa");
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    // The documented shape, keys in this order: {"steps":[{"t","metrics","proposal","desired","replicas",
    // "scaled","reason"}...],"summary":{...}} (checked on the text: a parsed map would sort the keys).
    let text = String::from_utf8(out.stdout.clone()).expect("UTF-8");
    assert!(
        text.starts_with(r#"{"steps":[{"t":0.0,"metrics":{"nginx.net.request_per_s":"#),
        "{}",
        &text[..80]
    );
    let first_step =
        &text[..text.find('}').and_then(|i| text[i + 1..].find('}').map(|j| i + j + 2)).expect("a step")];
    let positions: Vec<usize> = [
        "\"t\":",
        "\"metrics\":",
        "\"proposal\":",
        "\"desired\":",
        "\"replicas\":",
        "\"scaled\":",
        "\"reason\":",
    ]
    .iter()
    .map(|k| first_step.find(k).unwrap_or_else(|| panic!("{k} missing from {first_step}")))
    .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "key order in {first_step}");
    assert!(text.trim_end().ends_with('}') && text.contains("],\"summary\":{"));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(v.as_object().expect("an object").len(), 2);
    let steps = v["steps"].as_array().expect("steps");
    // A day at the default 15 s step, from the first sample (00:00) to the last (23:59).
    assert_eq!(steps.len(), 23 * 240 + 59 * 4 + 1);
    assert_eq!(steps[0]["t"], 0.0);
    assert_eq!(steps[1]["t"], 15.0);
    assert!(steps[0]["metrics"]["nginx.net.request_per_s"].is_number());
    let replicas: Vec<i64> = steps.iter().map(|s| s["replicas"].as_i64().expect("replicas")).collect();
    assert!(replicas.iter().all(|r| (3..=40).contains(r)), "replicas stay within [minReplicas, maxReplicas]");
    let s = &v["summary"];
    let ups = s["scale_ups"].as_u64().expect("scale_ups");
    let downs = s["scale_downs"].as_u64().expect("scale_downs");
    assert!(ups >= 3 && downs >= 3, "three bursts make the example scale both ways: {s}");
    // Upstream scales on its first pass even to the same count (there is no lastScaleTime yet).
    assert_eq!(steps[0]["scaled"], true);
    assert_eq!(steps[0]["reason"], "No timestamp for the lastScale event");
    let changes = replicas.windows(2).filter(|w| w[0] != w[1]).count() as u64;
    assert_eq!(changes, ups + downs, "every change of the count is one scale event");
    assert_eq!(s["max_replicas_seen"], 40, "the 14:00 burst hits maxReplicas");
    // Each scale-up is within the 50% limit of the count before it.
    for w in replicas.windows(2) {
        if w[1] > w[0] {
            assert!(
                w[1] <= w[0] + (w[0] / 2).max(1),
                "upscale {} -> {} exceeds scaleUpLimitFactor 50",
                w[0],
                w[1]
            );
        }
    }
}

#[test]
fn delay_and_windows_are_replayed() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let wpa_file = write(&dir, "wpa.yaml", WPA);
    // 300 qps over 2 pods is above the high watermark from t=0; 10 qps is below the low one from t=600.
    let series =
        write(&dir, "s.csv", "timestamp,metric,value\n0,qps,300\n599,qps,300\n600,qps,10\n1800,qps,10\n");
    let out = wpa()
        .args(["simulate", "--format", "json"])
        .arg("--wpa")
        .arg(&wpa_file)
        .arg("--series")
        .arg(&series)
        .output()
        .expect("run wpa");
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let steps = v["steps"].as_array().expect("steps");
    // t=0: ceil(2 * 300 / 100) = 6, limited by scaleUpLimitFactor 50 % to 3.
    assert_eq!(steps[0]["proposal"], 6);
    assert_eq!(steps[0]["replicas"], 3);
    assert_eq!(steps[0]["scaled"], true);
    // The upscale forbidden window (60 s) holds the next scale until t=60.
    assert_eq!(steps[1]["replicas"], 3);
    assert!(
        steps[1]["reason"].as_str().expect("reason").starts_with("Too early to upscale"),
        "{}",
        steps[1]["reason"]
    );
    assert_eq!(steps[4]["t"], 60.0);
    assert_eq!(steps[4]["replicas"], 4);
    // While qps stays above the watermark: 50 % steps each minute, up to maxReplicas.
    let mut seen: Vec<i64> = steps
        .iter()
        .take_while(|s| s["t"].as_f64() < Some(600.0))
        .map(|s| s["replicas"].as_i64().expect("replicas"))
        .collect();
    seen.dedup();
    assert_eq!(seen, [3, 4, 6, 9, 10]);
    // Below the watermark from t=600: 20 % (at least 1) per step, one step per 300 s downscale window.
    let at =
        |t: f64| steps.iter().find(|s| s["t"].as_f64() == Some(t)).expect("a step at t")["replicas"].as_i64();
    assert_eq!(
        [at(585.0), at(600.0), at(885.0), at(900.0), at(1200.0), at(1500.0), at(1800.0)],
        [10, 8, 8, 7, 6, 5, 4].map(Some)
    );
}

fn run_err(wpa_text: &str, series_text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let w = write(&dir, "wpa.yaml", wpa_text);
    let s = write(&dir, "series.csv", series_text);
    let out = wpa().arg("simulate").arg("--wpa").arg(&w).arg("--series").arg(&s).output().expect("run wpa");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    (out.status.code().unwrap_or(-1), stderr.replace(&format!("{}/", dir.path().display()), ""))
}

#[test]
fn bad_input_is_one_clear_line_with_exit_code_2() {
    let cases = [
        (
            WPA,
            "timestamp,metric,value\n0,qps,1\n15,latency,2\n",
            "wpa simulate: series.csv:3: unknown metric \"latency\"; the WPA's metrics are: qps",
        ),
        (
            WPA,
            "timestamp,metric,value\n0,qps,fast\n",
            "wpa simulate: series.csv:2: value \"fast\" is not a number",
        ),
        (
            WPA,
            "timestamp,metric,value\n30,qps,1\n15,qps,2\n",
            "wpa simulate: series.csv:3: time goes backwards (15 is before the previous sample's 30)",
        ),
        (
            &WPA.replace("minReplicas: 2", "minReplicas: 20"),
            "timestamp,metric,value\n0,qps,1\n",
            "wpa simulate: wpa.yaml: invalid WPA: spec.maxReplicas: watermark pod autoscaler requires the minimum number of replicas to be configured and inferior to the maximum (minReplicas 20 > maxReplicas 10)",
        ),
        (
            &WPA.replace("highWatermark: \"100\"", "highWatermark: \"10\""),
            "timestamp,metric,value\n0,qps,1\n",
            "wpa simulate: wpa.yaml: invalid WPA: spec.metrics[0].external.lowWatermark: low WaterMark of External metric qps{map[app:web]} has to be strictly inferior to the High Watermark (lowWatermark 50 > highWatermark 10)",
        ),
        (
            // Misspelled: never a zero-width band copied from the other watermark.
            &WPA.replace("highWatermark: \"100\"", "highWaterMark: \"100\""),
            "timestamp,metric,value\n0,qps,1\n",
            "wpa simulate: wpa.yaml: invalid WPA: spec.metrics[0].external.highWaterMark: unknown field (did you mean highWatermark?); the API server would drop it",
        ),
        (
            &WPA.replace("      highWatermark: \"100\"\n", ""),
            "timestamp,metric,value\n0,qps,1\n",
            "wpa simulate: wpa.yaml: invalid WPA: spec.metrics[0].external.highWatermark: required: both watermarks must be set (a missing one would be copied from the other, a band of zero width; check the spelling)",
        ),
    ];
    for (wpa_text, series, want) in cases {
        let (code, stderr) = run_err(wpa_text, series);
        assert_eq!(code, 2, "{want}");
        assert_eq!(stderr, want);
        assert_eq!(stderr.lines().count(), 1);
    }
}

#[test]
fn a_low_watermark_of_zero_never_downscales() {
    // Upstream issue #153: lowWatermark 0 means "never downscale on this metric".
    let dir = tempfile::tempdir().expect("a temp dir");
    let w = write(&dir, "wpa.yaml", &WPA.replace("lowWatermark: \"50\"", "lowWatermark: \"0\""));
    let s = write(&dir, "series.csv", "timestamp,metric,value\n0,qps,1\n600,qps,0\n1200,qps,0\n");
    let out = wpa()
        .args(["simulate", "--format", "json", "--replicas", "6"])
        .arg("--wpa")
        .arg(&w)
        .arg("--series")
        .arg(&s)
        .output()
        .expect("run wpa");
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let replicas: Vec<i64> =
        report["steps"].as_array().expect("steps").iter().filter_map(|s| s["replicas"].as_i64()).collect();
    assert!(!replicas.is_empty() && replicas.iter().all(|&r| r == 6), "{replicas:?}");
}

#[test]
fn shipped_crd_copies_equal_the_generated_crd() {
    let out = wpa().arg("crd").output().expect("run wpa crd");
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).expect("UTF-8");
    for copy in ["charts/wpa/crds/watermarkpodautoscalers.yaml", "webhook-config/crd.yaml"] {
        let shipped = std::fs::read_to_string(root().join(copy)).unwrap_or_else(|e| panic!("{copy}: {e}"));
        assert_eq!(shipped, generated, "{copy} is stale: regenerate it with `cargo run -- crd > {copy}`");
    }
}

#[test]
fn a_reader_that_goes_away_is_not_an_error() {
    use std::io::Read;
    // `wpa simulate ... | head -c 100`: the report is far larger than a pipe buffer.
    let mut child = wpa()
        .args(["simulate", "--format", "table"])
        .arg("--wpa")
        .arg(root().join("examples/wpa.yaml"))
        .arg("--series")
        .arg(root().join("examples/series.csv"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run wpa");
    let mut first = [0u8; 100];
    child.stdout.take().expect("stdout").read_exact(&mut first).expect("the start of the report");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn certs_keep_the_key_private_and_never_replace_a_ca_unasked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("a temp dir");
    let certs = |extra: &[&str]| {
        wpa().arg("certs").arg("--out-dir").arg(dir.path()).args(extra).output().expect("run wpa certs")
    };
    assert!(certs(&[]).status.success());
    let mode = std::fs::metadata(dir.path().join("tls.key")).expect("tls.key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "tls.key is readable by its owner only");
    let ca = std::fs::read(dir.path().join("ca.crt")).expect("ca.crt");
    let again = certs(&[]);
    assert_eq!(again.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("ca.crt exists") && stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read(dir.path().join("ca.crt")).expect("ca.crt"), ca, "the CA is left alone");
    assert!(certs(&["--force"]).status.success());
    assert_ne!(std::fs::read(dir.path().join("ca.crt")).expect("ca.crt"), ca, "--force replaces it");
}
