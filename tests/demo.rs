//! `wpa demo`, the README's first command, runs end to end: a private control plane, `wpa serve`, the
//! example Deployment and WPA admitted through the webhook, a synthetic burst and lull, and the trace.

use std::process::Command;

#[test]
fn the_demo_scales_up_and_down_and_explains_itself() {
    let out = Command::new(env!("CARGO_BIN_EXE_wpa"))
        .args(["demo", "--window-seconds", "3"])
        .output()
        .expect("run wpa demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(out.status.success(), "wpa demo failed");
    // Admission defaulted the WPA; the metric is labelled synthetic.
    assert!(stdout.contains("stored the WPA with its defaults (tolerance, scaleUpLimitFactor): 100m 50"));
    assert!(stdout.contains("SYNTHETIC"));
    // Replica counts seen, in order: up from 3 during the burst, then down during the lull.
    let counts: Vec<i32> = stdout
        .lines()
        .filter_map(|l| l.split("replicas ").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    let peak = counts.iter().copied().max().unwrap_or(0);
    let peak_at = counts.iter().position(|&c| c == peak).unwrap_or(0);
    assert!(peak > 3, "no upscale during the burst: {counts:?}");
    assert!(counts[peak_at..].iter().any(|&c| c < peak), "no downscale after the burst: {counts:?}");
    assert!(stdout.contains("ScaleUpLimit"), "the +50 % limit is visible");
    assert!(stdout.contains("The decision trace now"));
    assert!(stdout.contains("nginx.net.request_per_s{map[app:web]} (External)"));
    assert!(stdout.contains("Scaling"), "the WPA's events are listed");
    assert!(stdout.contains("tearing everything down"));
}
