//! `wpa simulate` as a user runs it: the binary, the shipped examples, and bad input.

mod support;

use std::{path::PathBuf, process::Command};

use serde_json::Value;
use support::WEB_WPA as WPA;

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
    let series = write(
        &dir,
        "s.csv",
        "timestamp,metric,value\n0,qps,300\n299,qps,300\n599,qps,300\n600,qps,10\n900,qps,10\n1200,qps,10\n1500,qps,10\n1800,qps,10\n",
    );
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
            "wpa simulate: series.csv:2: value \"fast\" is not a number (leave it empty for an outage)",
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
            &WPA.replace("datadoghq.com/v1alpha1", "datadoghq.com/v1"),
            "timestamp,metric,value\n0,qps,1\n",
            "wpa simulate: wpa.yaml: apiVersion datadoghq.com/v1: the API server serves WatermarkPodAutoscaler as datadoghq.com/v1alpha1 only",
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

#[test]
fn certs_say_how_to_serve_with_them_and_trust_the_ca() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let out = wpa().arg("certs").arg("--out-dir").arg(dir.path()).output().expect("run wpa certs");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let file = |name: &str| dir.path().join(name).display().to_string();
    let serve = format!("wpa serve --tls-cert-file {} --tls-key-file {}", file("tls.crt"), file("tls.key"));
    assert!(stdout.contains(&serve), "{stdout}");
    assert!(
        stdout.contains(&format!("base64 < {} | tr -d", file("ca.crt"))) && stdout.contains("caBundle"),
        "{stdout}"
    );
}

#[test]
fn a_cpu_wpa_whose_pods_are_ready_within_its_readiness_delay_is_told_to_pass_ready_after() {
    let cpu = WPA
        .replace("  maxReplicas: 10\n", "  maxReplicas: 10\n  readinessDelaySeconds: 30\n")
        .replace(
            "  - type: External\n    external:\n      metricName: qps",
            "  - type: Resource\n    resource:\n      name: cpu",
        )
        .replace("highWatermark: \"100\"", "highWatermark: 400m")
        .replace("lowWatermark: \"50\"", "lowWatermark: 200m");
    assert!(cpu.contains("name: cpu") && cpu.contains("readinessDelaySeconds: 30"), "{cpu}");
    // 3 cores in all: far above the high watermark of 400m.
    let series = "timestamp,metric,value\n0,cpu,3\n60,cpu,3\n120,cpu,3\n";
    let ups = |extra: &[&str]| {
        json_of(&cpu, series, &[&["--replicas", "2"], extra].concat())["summary"]["scale_ups"].clone()
    };
    let (code, fast, stderr) = simulate(&cpu, series, &["--replicas", "2"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(fast.contains("readinessDelaySeconds (30 s)") && fast.contains("--ready-after"), "{fast}");
    assert_eq!(ups(&[]), 0, "every cpu reading fails");
    let (code, slow, stderr) = simulate(&cpu, series, &["--replicas", "2", "--ready-after", "30"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!slow.contains("--ready-after"), "{slow}");
    assert!(ups(&["--ready-after", "30"]).as_u64().is_some_and(|n| n > 0), "pods ready at the delay count");
}

#[test]
fn a_value_whose_proposal_overflows_a_replica_count_is_named_as_such() {
    // 3e11 qps against a high watermark of 100 asks for 6e9 replicas at 2 pods: beyond int32.
    let series = "timestamp,metric,value\n0,qps,3e11\n60,qps,3e11\n";
    let v = json_of(WPA, series, &[]);
    // The first pass records the count it found; the second one decides.
    let status = v["steps"][1]["status"].as_str().unwrap_or_default().to_string();
    assert!(status.contains("the proposal is past a 32-bit count"), "{status}");
    assert_eq!(v["steps"][1]["replicas"], 2, "upstream's arithmetic keeps the count");
}

/// Runs `wpa simulate ARGS` with the WPA and series texts, returns (exit code, stdout, stderr).
fn simulate(wpa_text: &str, series_text: &str, args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let w = write(&dir, "wpa.yaml", wpa_text);
    let s = write(&dir, "series.csv", series_text);
    let out = wpa()
        .arg("simulate")
        .arg("--wpa")
        .arg(&w)
        .arg("--series")
        .arg(&s)
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("run wpa");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn json_of(wpa_text: &str, series_text: &str, args: &[&str]) -> Value {
    let (code, stdout, stderr) = simulate(wpa_text, series_text, &[&["-o", "json"], args].concat());
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).expect("JSON output")
}

/// `wpa simulate` on the shipped example with its stdout on a terminal (`script` gives it a pty).
fn example_on_a_terminal(extra: &str) -> String {
    let root = root();
    let command = format!(
        "{} simulate --wpa {} --series {} --ready-after 30 {extra}",
        env!("CARGO_BIN_EXE_wpa"),
        root.join("examples/wpa.yaml").display(),
        root.join("examples/series.csv").display()
    );
    let out = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .output()
        .expect("run script (util-linux)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n")
}

#[test]
fn a_terminal_gets_the_steps_where_something_changes_and_all_steps_on_request() {
    let changes = example_on_a_terminal("");
    let all = example_on_a_terminal("--all-steps");
    // A day at a 15 s step: a header, 5757 steps, a blank line and the summary.
    assert!(all.lines().count() > 5757, "{} lines", all.lines().count());
    assert!(changes.lines().count() < 200, "{changes}");
    assert!(changes.contains("of 5757 steps: the first, the last, each change of the count"), "{changes}");
    // Every change of the count is a row of both.
    let scales = |text: &str| {
        text.lines().filter(|l| l.contains("scaling up:") || l.contains("scaling down:")).count()
    };
    assert_eq!(scales(&changes), 17 + 21, "{changes}");
    assert_eq!(scales(&changes), scales(&all));
    // Piped, the table has every step unless asked otherwise.
    let (_, piped, _) = (0, example_piped(&[]), ());
    assert!(piped.lines().count() > 5757);
    assert!(example_piped(&["--changes-only"]).lines().count() < 200);
}

fn example_piped(extra: &[&str]) -> String {
    let out = wpa()
        .args(["simulate", "--ready-after", "30"])
        .arg("--wpa")
        .arg(root().join("examples/wpa.yaml"))
        .arg("--series")
        .arg(root().join("examples/series.csv"))
        .args(extra)
        .output()
        .expect("run wpa");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn a_step_held_back_by_a_limit_names_it() {
    // 1300 qps (absolute) from 2 pods asks for 26: +50 % per step allows 3, then 4, 6, 9, and maxReplicas
    // caps the next step at 10.
    let v = json_of(WPA, "timestamp,metric,value\n0,qps,1300\n600,qps,1300\n", &[]);
    let steps = v["steps"].as_array().expect("steps");
    assert_eq!(steps[0]["limit"], "ScaleUpLimit");
    assert_eq!(
        steps[0]["status"],
        "scaling up: 2 -> 3 (limited to +50 % per step, ScaleUpLimit; the metrics ask for 26)"
    );
    let capped = steps.iter().find(|s| s["replicas"] == 10).expect("a step reaches maxReplicas");
    assert_eq!(capped["limit"], "TooManyReplicas", "{capped}");
    assert!(capped["status"].as_str().expect("status").contains("capped at maxReplicas 10"), "{capped}");
    let last = steps.last().expect("a last step");
    assert_eq!(
        last["status"], "holding: capped at maxReplicas 10, TooManyReplicas; the metrics ask for 130",
        "{last}"
    );
    // The upstream words stay in `reason`.
    assert_eq!(steps[0]["reason"], "qps{map[app:web]} above target");
}

#[test]
fn a_wait_says_what_for_and_how_long() {
    let v = json_of(WPA, "timestamp,metric,value\n0,qps,300\n30,qps,300\n", &[]);
    let steps = v["steps"].as_array().expect("steps");
    assert_eq!(steps[1]["status"], "waiting: upscale window, 45 s left, then up 3 -> 4");
}

#[test]
fn the_summary_tells_the_tolerance_band_from_the_watermarks_and_time_at_max() {
    // 2 pods, absolute: 105 is above the high watermark (100) but inside the band (up to 110) for 10 min;
    // then 40 (below the band's 45) from t=600, which scales down at once.
    let v = json_of(
        WPA,
        "timestamp,metric,value\n0,qps,105\n290,qps,105\n585,qps,105\n600,qps,40\n885,qps,40\n900,qps,40\n",
        &["--replicas", "10"],
    );
    let s = &v["summary"];
    assert_eq!(s["seconds_above_high_watermark"], 600.0, "{s}");
    assert_eq!(s["seconds_above_band"], 0.0, "{s}");
    assert_eq!(s["seconds_below_band"], 315.0, "{s}");
    assert_eq!(s["seconds_at_max_replicas"], 600.0, "{s}");
    let (_, table, _) = simulate(
        WPA,
        "timestamp,metric,value\n0,qps,105\n290,qps,105\n585,qps,105\n600,qps,40\n885,qps,40\n900,qps,40\n",
        &["--replicas", "10"],
    );
    assert!(
        table.contains("outside the tolerance band (where the WPA acts): above it (over 110) for 0 s, below it (under 45) for 5 min 15 s"),
        "{table}"
    );
    assert!(
        table.contains("outside the watermarks themselves: above the high watermark (100) for 10 min, below the low watermark (50) for 5 min 15 s"),
        "{table}"
    );
    assert!(table.contains("at maxReplicas 10 for 10 min (the metrics asked for up to 10)"), "{table}");
}

#[test]
fn dry_run_steps_are_counted_as_would_be_scales() {
    let dry = WPA.replace("  maxReplicas: 10\n", "  maxReplicas: 10\n  dryRun: true\n");
    let series = "timestamp,metric,value\n0,qps,300\n600,qps,300\n";
    let v = json_of(&dry, series, &[]);
    let s = &v["summary"];
    assert_eq!((s["scale_ups"].as_u64(), s["scale_downs"].as_u64()), (Some(0), Some(0)), "{s}");
    assert!(s["dry_run_scale_ups"].as_u64().is_some_and(|n| n >= 3), "{s}");
    assert_eq!(
        v["steps"][0]["status"],
        "dry run: would scale up 2 -> 3 (limited to +50 % per step, ScaleUpLimit; the metrics ask for 6)"
    );
    let (_, table, _) = simulate(&dry, series, &[]);
    let ups = s["dry_run_scale_ups"].as_u64().unwrap_or_default();
    assert!(table.contains("decides the same scale again"), "{table}");
    assert!(
        table.contains(&format!("dry run: the target was never changed; {ups} steps decided a scale-up")),
        "{table}"
    );
}

#[test]
fn metric_columns_follow_the_spec_order() {
    let two = WPA.replace(
        "      lowWatermark: \"50\"\n",
        "      lowWatermark: \"50\"\n  - type: External\n    external:\n      metricName: apdex\n      metricSelector: {matchLabels: {app: web}}\n      highWatermark: \"9\"\n      lowWatermark: \"5\"\n",
    );
    let series = "timestamp,metric,value\n0,qps,60\n0,apdex,7\n15,qps,60\n";
    let (code, stdout, stderr) = simulate(&two, series, &["-o", "json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(r#""metrics":{"qps":60.0,"apdex":7.0}"#), "{stdout}");
    let (_, csv, _) = simulate(&two, series, &["-o", "csv"]);
    assert!(csv.starts_with("t,qps,apdex,proposal,"), "{csv}");
    let (_, table, _) = simulate(&two, series, &[]);
    let header = table.lines().next().expect("a header");
    assert!(header.find("qps") < header.find("apdex"), "{header}");
}

#[test]
fn every_problem_of_the_wpa_is_listed_and_a_misspelled_field_says_what_was_meant() {
    let bad = WPA
        .replace("minReplicas: 2", "minReplicas: 20\n  tolerance: \"2\"")
        .replace("lowWatermark: \"50\"", "lowWatermark: \"500\"");
    let (code, stderr) = run_err(&bad, "timestamp,metric,value\n0,qps,1\n");
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for path in ["spec.maxReplicas:", "spec.tolerance:", "spec.metrics[0].external.lowWatermark:"] {
        assert!(stderr.contains(path), "{path} in {stderr}");
    }
    assert!(!stderr.contains("more problem"), "{stderr}");
    let (code, stderr) =
        run_err(&WPA.replace("maxReplicas: 10", "maxReplica: 10"), "timestamp,metric,value\n0,qps,1\n");
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "wpa simulate: wpa.yaml: invalid WPA: spec.maxReplica: unknown field (did you mean maxReplicas?); the API server would drop it"
    );
}

#[test]
fn a_value_of_the_wrong_type_is_named_by_its_field_path() {
    let series = "timestamp,metric,value\n0,qps,1\n";
    let (code, stderr) = run_err(&WPA.replace("minReplicas: 2", "minReplicas: \"two\""), series);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        stderr,
        "wpa simulate: wpa.yaml: not a valid WatermarkPodAutoscaler: spec.minReplicas: invalid type: string \"two\", expected i32"
    );
    let (code, stderr) = run_err(&WPA.replace("highWatermark: \"100\"", "highWatermark: [100]"), series);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with(
            "wpa simulate: wpa.yaml: not a valid WatermarkPodAutoscaler: spec.metrics[0].external.highWatermark: invalid type: sequence"
        ),
        "{stderr}"
    );
}

#[test]
fn the_wpa_can_come_from_stdin() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("a temp dir");
    let s = write(&dir, "series.csv", "timestamp,metric,value\n0,qps,300\n60,qps,300\n");
    let mut child = wpa()
        .args(["simulate", "--wpa", "-", "-o", "json", "--series"])
        .arg(&s)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run wpa");
    child.stdin.take().expect("stdin").write_all(WPA.as_bytes()).expect("write the WPA");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["steps"][0]["replicas"], 3);
    let both = wpa().args(["simulate", "--wpa", "-", "--series", "-"]).output().expect("run wpa");
    assert_eq!(both.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot both be read from stdin"));
}

#[test]
fn bad_flags_are_refused_by_name_with_what_to_give() {
    let series = "timestamp,metric,value\n0,qps,1\n";
    for (flag, value, says) in [
        ("--step", "0", "must be more than 0 seconds"),
        ("--ready-after", "-1", "cannot be negative"),
        ("--replicas", "0", "a WPA leaves a target at 0 replicas alone"),
        ("--plot", "out.png", "the plot is an SVG image: name it FILE.svg"),
    ] {
        let (code, stdout, stderr) = simulate(WPA, series, &[flag, value]);
        assert_eq!(code, 2, "{flag} {value}: {stderr}");
        assert!(stdout.is_empty());
        assert!(stderr.starts_with(&format!("error: invalid value '{value}' for '{flag}")), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("series.csv"), "a flag error is not the CSV's: {stderr}");
    }
    assert!(!std::path::Path::new("out.png").exists());
    // Durations are accepted too; -o is --format's conventional name.
    let a = json_of(
        WPA,
        "timestamp,metric,value\n0,qps,1\n60,qps,1\n",
        &["--step", "30s", "--ready-after", "1m"],
    );
    assert_eq!(a["summary"]["steps"], 3);
    let (code, by_format, _) = simulate(WPA, series, &["--format", "json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&by_format).expect("JSON"), json_of(WPA, series, &[]));
}

#[test]
fn unix_milliseconds_are_read_as_milliseconds() {
    let ms = "timestamp,metric,value\n1714521600000,qps,300\n1714521660000,qps,300\n1714521720000,qps,300\n";
    let v = json_of(WPA, ms, &[]);
    assert_eq!(v["summary"]["duration_seconds"], 120.0);
    assert_eq!(v["summary"]["steps"], 9);
    let (_, table, _) = simulate(WPA, ms, &["--all-steps"]);
    assert!(table.contains("2024-05-01 00:02:00"), "clock times, as for RFC 3339: {table}");
    let seconds = "timestamp,metric,value\n1714521600,qps,300\n1714521660,qps,300\n";
    let (_, table, _) = simulate(WPA, seconds, &["--all-steps"]);
    assert!(table.contains("2024-05-01 00:01:00"), "Unix seconds: {table}");
    let (code, stderr) = run_err(WPA, "timestamp,metric,value\n1714521600,qps,300\n1714521660000,qps,300\n");
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "wpa simulate: series.csv:3: timestamp 1714521660000 is Unix milliseconds (100000000000 or more), but the file's first timestamp is Unix seconds: use one form for the whole file"
    );
}

#[test]
fn the_plot_shows_min_max_and_the_proposal_on_the_tables_clock() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let plot = dir.path().join("day.svg");
    example_piped(&["-o", "json", "--plot", &plot.to_string_lossy()]);
    let svg = std::fs::read_to_string(&plot).expect("the plot");
    for legend in [">maxReplicas (40)<", ">minReplicas (3)<", ">proposal (before limits)<", ">replicas<"] {
        assert!(svg.contains(legend), "{legend}");
    }
    // The table prints 2024-05-01 00:00:00 ... 23:59:00: the axis is that clock, every 3 hours.
    assert!(svg.contains(">time (UTC), 2024-05-01<"));
    for tick in [">00:00<", ">03:00<", ">21:00<"] {
        assert!(svg.contains(tick), "{tick}");
    }
    assert!(!svg.contains("since the first sample"));
}

#[test]
fn the_plot_marks_each_scale_and_shades_the_waits() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let plot = dir.path().join("day.svg");
    let json: Value =
        serde_json::from_str(&example_piped(&["-o", "json", "--plot", &plot.to_string_lossy()]))
            .expect("json");
    let svg = std::fs::read_to_string(&plot).expect("the plot");
    let summary = &json["summary"];
    let ups = summary["scale_ups"].as_u64().expect("scale_ups");
    let downs = summary["scale_downs"].as_u64().expect("scale_downs");
    assert!(ups > 0 && downs > 0, "the example day scales both ways: {summary}");
    assert_eq!(svg.matches(r#"class="scale-up""#).count() as u64, ups);
    assert_eq!(svg.matches(r#"class="scale-down""#).count() as u64, downs);
    let waits = json["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["status"].as_str().is_some_and(|t| t.starts_with("waiting")));
    assert!(waits.count() > 0 && svg.contains(r#"class="waiting""#), "a shade where the table says waiting");
    for legend in [">scale-up<", ">scale-down<", ">waiting: a window or a delay<"] {
        assert!(svg.contains(legend), "{legend}");
    }
}

#[test]
fn a_start_below_min_replicas_is_marked_as_the_first_scale() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let plot = dir.path().join("p.svg").display().to_string();
    let series = "timestamp,metric,value\n0,qps,75\n60,qps,75\n";
    let (code, stdout, stderr) = simulate(WPA, series, &["--replicas", "1", "-o", "json", "--plot", &plot]);
    assert_eq!(code, 0, "{stderr}");
    let json: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(json["steps"][0]["replicas"], 2, "minReplicas 2 corrects the start at once");
    let svg = std::fs::read_to_string(&plot).expect("the plot");
    assert_eq!(svg.matches(r#"class="scale-up""#).count(), 1, "{}", json["summary"]);
}

#[test]
fn a_long_metric_name_is_not_clipped_in_the_legend() {
    let name = "trace.servlet.request.hits.by_http_status.sum";
    let dir = tempfile::tempdir().expect("a temp dir");
    let w = write(&dir, "wpa.yaml", &WPA.replace("metricName: qps", &format!("metricName: {name}")));
    let s = write(&dir, "s.csv", &format!("timestamp,metric,value\n0,{name},10\n60,{name},10\n"));
    let plot = dir.path().join("p.svg");
    let out =
        wpa().arg("simulate").arg("--wpa").arg(&w).arg("--series").arg(&s).arg("--plot").arg(&plot).output();
    assert!(out.expect("run wpa").status.success());
    let svg = std::fs::read_to_string(&plot).expect("the plot");
    let number = |attr: &str, within: &str| -> f64 {
        let at = within.find(&format!("{attr}=\"")).expect(attr) + attr.len() + 2;
        within[at..].split('"').next().and_then(|v| v.parse().ok()).expect("a number")
    };
    let width = number("width", &svg);
    let text = &svg[..svg.find(&format!(">{name}</text>")).expect("the legend entry")];
    let x = number("x", &text[text.rfind("<text").expect("its text element")..]);
    // 12 px sans-serif: no glyph of the name is wider than 7.2 px on average.
    assert!(x + name.len() as f64 * 7.2 <= width, "legend at x={x}, {} chars, width {width}", name.len());
}

#[test]
fn every_command_a_user_types_shows_examples_in_its_help() {
    // Every command `wpa --help` lists, but those with nothing to vary (crd, version), help itself, and
    // bench, whose subcommands are the project's own measurements (docs/performance.md shows them run).
    let top = wpa().arg("--help").output().expect("run");
    let top = String::from_utf8_lossy(&top.stdout).to_string();
    let commands = support::listed_commands(&top);
    assert!(commands.iter().any(|c| c == "serve") && commands.iter().any(|c| c == "simulate"), "{top}");
    for command in
        commands.iter().map(String::as_str).filter(|c| !["crd", "version", "help", "bench"].contains(c))
    {
        let out = wpa().args([command, "--help"]).output().expect("run");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success());
        let examples = help.split("Examples:\n").nth(1).unwrap_or_else(|| panic!("{command}: {help}"));
        assert!(examples.contains(&format!("wpa {command}")), "{command}: {examples}");
    }
}

#[test]
fn a_gap_longer_than_the_metric_max_age_is_a_stale_metric_as_live() {
    // One sample, then nothing for 10 minutes: past 5 minutes (serve's default --metric-max-age) the last
    // value is stale, and the WPA holds as it would live.
    let v = json_of(WPA, "timestamp,metric,value\n0,qps,75\n600,qps,75\n", &["--replicas", "4"]);
    let steps = v["steps"].as_array().expect("steps");
    let status = |t: f64| {
        steps.iter().find(|s| s["t"] == t).unwrap_or_else(|| panic!("no step at {t}"))["status"].clone()
    };
    let fresh = status(300.0);
    assert!(fresh.as_str().is_some_and(|s| s.starts_with("holding: value within the band")), "{fresh}");
    let stale = status(315.0);
    assert!(stale.as_str().is_some_and(|s| s.contains("more than --metric-max-age (300s) ago")), "{stale}");
}

#[test]
fn a_gap_within_the_metric_max_age_holds_the_last_value() {
    let series = "timestamp,metric,value\n0,qps,75\n600,qps,75\n";
    let v = json_of(WPA, series, &["--replicas", "4", "--metric-max-age", "15m"]);
    let steps = v["steps"].as_array().expect("steps");
    let holding =
        |s: &Value| s["status"].as_str().is_some_and(|x| x.starts_with("holding: value within the band"));
    // After the first pass, which records the count it found.
    assert!(steps.iter().skip(1).all(holding), "{steps:?}");
}

#[test]
fn a_long_gap_in_every_metric_is_an_outage_that_the_fallback_answers() {
    let wpa_text = WPA.replace(
        "metadata: {name: web, namespace: default}",
        "metadata:\n  name: web\n  namespace: default\n  annotations:\n    wpa.datadoghq.com/fallback-replicas: \"6\"\n    wpa.datadoghq.com/fallback-after: \"2m\"",
    );
    // Stale from 315 s on (the first step past the default 5 minutes), so the fallback is due 2 min later.
    let v = json_of(&wpa_text, "timestamp,metric,value\n0,qps,75\n900,qps,75\n", &["--replicas", "4"]);
    let steps = v["steps"].as_array().expect("steps");
    let first = steps
        .iter()
        .find(|s| s["status"].as_str().is_some_and(|x| x.starts_with("fallback: scaling up")))
        .expect("a fallback scale");
    assert_eq!(first["t"], 435.0, "at 315 s + 2 min");
    assert_eq!(first["replicas"], 6);
}

#[test]
fn an_empty_value_is_an_outage_that_the_fallback_answers_after_its_delay() {
    let wpa_text = WPA.replace(
        "metadata: {name: web, namespace: default}",
        "metadata:\n  name: web\n  namespace: default\n  annotations:\n    wpa.datadoghq.com/fallback-replicas: \"6\"\n    wpa.datadoghq.com/fallback-after: \"2m\"",
    );
    // 75: within the band at 4 pods; then the metric goes silent for 10 minutes.
    let series = "timestamp,metric,value\n0,qps,75\n60,qps,\n660,qps,75\n";
    let v = json_of(&wpa_text, series, &["--replicas", "4"]);
    let steps = v["steps"].as_array().expect("steps");
    let at = |t: f64| steps.iter().find(|s| s["t"] == t).unwrap_or_else(|| panic!("no step at {t}"));
    assert_eq!(at(165.0)["replicas"], 4, "before fallback-after (2 min from 60 s): no change");
    let first_fallback =
        steps.iter().find(|s| s["status"].as_str().is_some_and(|x| x.starts_with("fallback: scaling up")));
    let first_fallback = first_fallback.expect("a fallback scale");
    assert_eq!(first_fallback["t"], 180.0, "at 60 s + 2 min");
    assert_eq!(at(600.0)["replicas"], 6, "at least fallback-replicas during the outage");
    assert!(
        at(600.0)["status"].as_str().is_some_and(|s| s.starts_with("fallback: holding at 6")),
        "{}",
        at(600.0)
    );
    assert!(
        at(660.0)["status"].as_str().is_some_and(|s| s.starts_with("holding: value within the band")),
        "the metric is back: {}",
        at(660.0)
    );
}
