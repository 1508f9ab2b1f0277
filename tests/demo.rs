//! `wpa demo`, the README's first command, runs end to end: a private control plane, `wpa serve`, the
//! example Deployment and WPA admitted through the webhook, a synthetic burst and lull told in plain words
//! until the count is stable, the trace, the events and what to try next; `--keep` leaves it all up.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

/// `wpa demo ARGS` with its temporary files under `tmp`: every directory the demo makes is in there, so
/// that what it leaves behind can be checked.
fn demo(tmp: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wpa"));
    command.arg("demo").args(args).env("TMPDIR", tmp);
    command
}

/// Nothing the demo started is left: its temporary directory is empty, and no process names it.
fn assert_nothing_left(tmp: &Path) {
    let left: Vec<_> =
        std::fs::read_dir(tmp).expect("the demo's TMPDIR").flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let tmp = tmp.to_string_lossy();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(!cmdline.contains(&*tmp), "process {:?} is still running: {cmdline}", entry.file_name());
    }
}

/// The in-memory data directory of the etcd the demo process `pid` started.
fn etcd_data_dir(pid: u32) -> std::path::PathBuf {
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let parent = status.lines().find_map(|l| l.strip_prefix("PPid:")).map(str::trim);
        if parent != Some(&pid.to_string()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).to_string();
        if let Some(dir) = cmdline.split('\0').find_map(|a| a.strip_prefix("--data-dir=")) {
            return dir.into();
        }
    }
    panic!("no etcd started by the demo (pid {pid}) is running");
}

/// The counts the story's rows show, in order: up from 3 during the burst to the 12 pods that 1200 req/s
/// needs, down during the lull, stable at 4.
fn assert_burst_and_lull(story: &str) {
    let counts: Vec<i32> = story
        .lines()
        .filter(|l| l.starts_with("t=") && !l.contains(">>>"))
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect();
    let peak = counts.iter().copied().max().unwrap_or(0);
    let peak_at = counts.iter().position(|&c| c == peak).unwrap_or(0);
    assert_eq!(peak, 12, "1200 req/s needs 12 pods: {counts:?}");
    assert!(counts[peak_at..].iter().any(|&c| c < peak), "no downscale after the burst: {counts:?}");
    assert_eq!(counts.last(), Some(&4), "{counts:?}");
}

/// The story: what the demo prints before `wpa explain`'s trace.
fn story(stdout: &str) -> &str {
    stdout.split("The decision trace now").next().unwrap_or_default()
}

#[test]
fn the_demo_tells_its_story_in_plain_words_until_the_count_is_stable() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let out = demo(tmp.path(), &["--window-seconds", "3"]).output().expect("run wpa demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(out.status.success(), "wpa demo failed");
    let story = story(&stdout);

    // The mutating webhook's part is what it really added: the example sets the rest itself.
    assert!(
        story.contains(
            "The mutating webhook added what the example leaves out: replicaScalingAbsoluteModulo: 1.\n"
        ),
        "{story}"
    );
    assert!(story.contains("readinessDelaySeconds 1 s (30 s)"), "the shortened readiness delay is said");
    assert!(story.contains("SYNTHETIC"));

    // Plain words, not reason codes.
    for words in [
        "scaling up: 3 -> 4 (limited to +50 % per step",
        "waiting: upscale window,",
        "waiting: downscale delay (below the band)",
        "scaling down: 12 -> 10 (limited to -20 % per step",
        "holding: value within the band",
    ] {
        assert!(story.contains(words), "{words:?} missing from the story");
    }
    for code in ["BackoffBoth", "BackoffUpscale", "SucceededGetScale", "SuccessfulScale", "AbleToScale="] {
        assert!(!story.contains(code), "{code} in the story");
    }

    // Totals and per-pod values labelled the same way in the banners, the table and explain's trace.
    assert!(story.contains("1200 req/s in total, 400 per pod over 3 pods"), "{story}");
    assert!(story.contains("req/s in total  per pod  status"), "{story}");
    assert!(stdout.contains("(External): value 75 per ready pod (4 ready pods)"), "{stdout}");

    assert_burst_and_lull(story);
    let last_row = story.lines().rfind(|l| l.starts_with("t=")).expect("a last row");
    assert!(last_row.ends_with("holding: value within the band"), "it stops once stable: {last_row}");
    assert!(story.contains("The count is stable after"), "{story}");
    assert!(!story.contains("forbidden window ends"), "{story}");

    // The trace, the events (the first one explained), and what to do next.
    assert!(stdout.contains("nginx.net.request_per_s{map[app:web]} (External)"));
    assert!(
        stdout.contains(
            "New size: 3; reason: No timestamp for the lastScale event  (the first pass records the count it found: no change)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("New size: 12; reason: nginx.net.request_per_s{map[app:web]} above target"));
    let next = stdout.split("\nnext:\n").nth(1).expect("a next: section");
    for step in
        ["wpa simulate --wpa examples/wpa.yaml", "helm install wpa charts/wpa", "wpa explain", "--keep"]
    {
        assert!(next.contains(step), "{step:?} missing from next: {next}");
    }

    // The harness's own lines and paths stay out; durations are for people.
    for noise in ["[test-cluster]", "wpa-test-cluster", &tmp.path().to_string_lossy()] {
        assert!(!stdout.contains(noise) && !stderr.contains(noise), "{noise} leaked");
    }
    let startup =
        stdout.lines().find(|l| l.starts_with("wpa serve is running (ready in ")).expect("serve's line");
    let took = startup.split("ready in ").nth(1).and_then(|r| r.split(" s)").next()).expect("a duration");
    assert!(took.parse::<f64>().is_ok() && took.split('.').nth(1).is_some_and(|d| d.len() == 1), "{startup}");
    assert!(stderr.contains("tearing everything down"));
    assert_nothing_left(tmp.path());
}

/// A demo running in the background, its stdout read line by line on a thread (a reader that stopped would
/// make the demo's next line a broken pipe) and its stderr collected.
struct Background {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Background {
    fn start(tmp: &Path, args: &[&str]) -> Background {
        let mut child =
            demo(tmp, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run wpa demo");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let stderr = child.stderr.take().expect("stderr");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let stderr = std::thread::spawn(move || {
            BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>().join("\n")
        });
        Background { child, lines, stderr }
    }

    /// Waits for a line that starts with `prefix`, returning it.
    fn wait_line(&self, prefix: &str, within: Duration) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.trim_start().starts_with(prefix) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line starting with {prefix:?}: {e}"),
            }
        }
    }

    /// SIGTERM, as a supervisor sends it (Ctrl-C is SIGINT, handled the same way): the exit code and stderr.
    fn terminate(mut self) -> (Option<i32>, String) {
        let killed =
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(killed.success());
        let status = self.child.wait().expect("wait");
        (status.code(), self.stderr.join().expect("stderr"))
    }
}

#[test]
fn with_keep_the_cluster_stays_up_until_interrupted() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let mut demo = Background::start(tmp.path(), &["--window-seconds", "3", "--keep"]);
    let kubeconfig = demo.wait_line("export KUBECONFIG=", Duration::from_secs(600));
    let kubeconfig = kubeconfig.trim().trim_start_matches("export KUBECONFIG=").to_string();
    let path = demo.wait_line("export PATH=", Duration::from_secs(5));
    let bin_dir =
        path.trim().trim_start_matches("export PATH=").split(':').next().expect("a directory").to_string();
    assert!(Path::new(&kubeconfig).exists(), "{kubeconfig}");
    // What it says works, from another process: kubectl, and `wpa explain` with KUBECONFIG alone.
    let kubectl = Command::new(Path::new(&bin_dir).join("kubectl"))
        .args(["get", "deployment", "web", "-o", "jsonpath={.spec.replicas}"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("run kubectl");
    assert_eq!(String::from_utf8_lossy(&kubectl.stdout), "4", "{}", String::from_utf8_lossy(&kubectl.stderr));
    let explain = Command::new(env!("CARGO_BIN_EXE_wpa"))
        .args(["explain", "web"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("run wpa explain");
    assert!(explain.status.success(), "{}", String::from_utf8_lossy(&explain.stderr));
    assert!(String::from_utf8_lossy(&explain.stdout).contains("Decision: stays at 4"));
    // Still up a while later: it waits for the signal.
    std::thread::sleep(Duration::from_secs(3));
    assert!(demo.child.try_wait().expect("wait").is_none(), "the demo ended without being asked");
    let etcd_data = etcd_data_dir(demo.child.id());
    let (code, stderr) = demo.terminate();
    assert!(!etcd_data.exists(), "{} is removed", etcd_data.display());
    assert_eq!(code, Some(0), "a signal is how a kept demo ends: {stderr}");
    assert!(stderr.contains("tearing everything down"), "{stderr}");
    assert_nothing_left(tmp.path());
}

#[test]
fn an_interrupted_demo_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let demo = Background::start(tmp.path(), &["--window-seconds", "3"]);
    demo.wait_line("wpa serve is running", Duration::from_secs(300));
    let etcd_data = etcd_data_dir(demo.child.id());
    let (code, stderr) = demo.terminate();
    assert!(!etcd_data.exists(), "{} is removed", etcd_data.display());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_nothing_left(tmp.path());
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

/// `--node`: the same story told by the chart's pods on a real node, the workload's pods real (the kubelet
/// reports them ready), the webhook called through the chart's Service; and the node leaves nothing behind
/// and sent nothing out.
#[test]
fn the_demo_on_a_real_node_tells_the_same_story_with_the_charts_pods() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let out = demo(tmp.path(), &["--node", "--window-seconds", "3"]).output().expect("run wpa demo --node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(out.status.success(), "wpa demo --node failed");
    let story = story(&stdout);
    assert!(story.contains("A real single-node Kubernetes v1.20.2 is up"), "{story}");
    assert!(story.contains("wpa is installed by its chart (charts/wpa, selfSigned TLS;"), "{story}");
    assert!(
        story.contains(
            "The mutating webhook added what the example leaves out: replicaScalingAbsoluteModulo: 1."
        ),
        "admitted through the chart's Service: {story}"
    );
    assert!(story.contains("run the node's pause image"), "{story}");
    assert_burst_and_lull(story);
    assert!(story.contains("The count is stable after"), "{story}");
    assert!(
        stdout.contains("The node is gone: no outbound connection was attempted, and the host is as it was"),
        "{stdout}"
    );
    assert_nothing_left(tmp.path());
}
