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

#[test]
fn an_interrupted_demo_leaves_nothing_behind() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_wpa"))
        .args(["demo", "--window-seconds", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run wpa demo");
    let stderr = child.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || {
        BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>().join("\n")
    });
    // Read all of stdout (a reader that stopped would make the demo's next line a broken pipe).
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let (started, running) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if line.starts_with("wpa serve is running") {
                let _ = started.send(());
            }
        }
    });
    running.recv_timeout(std::time::Duration::from_secs(300)).expect("the demo starts wpa serve");
    // Ctrl-C as a terminal sends it, or a SIGTERM from a supervisor: both end the demo the same way.
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    let stderr = stderr.join().expect("stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let dir = stderr
        .split("(dir ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the harness names the cluster's directory");
    assert!(!std::path::Path::new(dir).exists(), "{dir} is removed");
    // No process the demo started is left: each of them names the cluster's directory on its command line.
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(dir),
            "process {:?} is still running: {}",
            entry.file_name(),
            String::from_utf8_lossy(&cmdline).replace('\0', " ")
        );
    }
}

#[test]
fn the_demo_says_it_needs_root_and_refuses_a_zero_window() {
    let as_nobody = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_wpa"), "demo"])
        .output()
        .expect("run wpa demo as nobody (setpriv, util-linux)");
    let stderr = String::from_utf8_lossy(&as_nobody.stderr);
    assert_eq!(as_nobody.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("wpa demo: needs root"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let zero = Command::new(env!("CARGO_BIN_EXE_wpa"))
        .args(["demo", "--window-seconds", "0"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&zero.stderr);
    assert_eq!(zero.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--window-seconds") && stderr.contains("1..=3600"), "{stderr}");
}
