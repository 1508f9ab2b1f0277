//! The real node's promises to the machine it runs on (`devcluster::node`): an outbound connection of the
//! node's processes or pods is dropped, counted and reported with where it went; a teardown leaves the host
//! as it found it; and the next start cleans up after a run killed before its teardown, its control plane's
//! directories included. Each test starts a node of its own (one at a time), and checks the host with shell
//! commands rather than with the harness's own bookkeeping. Needs root; see docs/real-node.md.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use devcluster::node::{NodeOptions, PAUSE_IMAGE, RealNode};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use support::wait_for;

/// One test at a time: a snapshot of the host must not see another test's node.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn run(program: &str, args: &[&str]) -> String {
    devcluster::process::run(program, args).unwrap_or_else(|e| panic!("{e:#}"))
}

/// What a node could leave behind, as the host's own tools show it. Other engineers' test namespaces
/// (`wpa-t<N>`, veths `wpah<N>`/`wpan<N>`, routes of 10.250.0.0/16) come and go meanwhile: left out.
fn host_snapshot() -> Vec<String> {
    let mut out = Vec::new();
    for family in ["iptables-save", "ip6tables-save"] {
        // Rules, user chains, and built-in chains whose policy is not ACCEPT, per table (counters left out). An
        // empty table that iptables-nft made on the first use (built-in chains accepting everything) changes
        // nothing, and no tool but nft removes it.
        let mut table = String::new();
        for line in run(family, &[]).lines() {
            let line = line.split(" [").next().unwrap_or(line);
            if let Some(name) = line.strip_prefix('*') {
                table = name.to_string();
            } else if line.starts_with("-A") || (line.starts_with(':') && !line.ends_with(" ACCEPT")) {
                out.push(format!("{family} {table}: {line}"));
            } else if let Some(chain) = line.strip_prefix(':') {
                let builtin = ["INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"];
                if !builtin.contains(&chain.split(' ').next().unwrap_or_default()) {
                    out.push(format!("{family} {table}: {line}"));
                }
            }
        }
    }
    let others = |l: &str| {
        let veth = ["wpah", "wpan"]
            .iter()
            .any(|p| l.match_indices(p).any(|(i, _)| l[i + 4..].starts_with(|c: char| c.is_ascii_digit())));
        veth || l.contains("10.250.") || l.contains("wpa-t")
    };
    for args in [&["-o", "link", "show"][..], &["route", "show"], &["-6", "route", "show"]] {
        out.extend(
            run("ip", args)
                .lines()
                .filter(|l| !others(l))
                .map(|l| format!("ip {}: {}", args.join(" "), l.split(" link/").next().unwrap_or(l))),
        );
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    out.extend(
        mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| !others(m))
            .map(|m| format!("mount {m}")),
    );
    for key in [
        "net/ipv4/ip_forward",
        "net/ipv4/conf/all/route_localnet",
        "net/bridge/bridge-nf-call-iptables",
        "kernel/panic",
        "kernel/panic_on_oops",
        "vm/overcommit_memory",
        "kernel/keys/root_maxkeys",
    ] {
        let value = std::fs::read_to_string(format!("/proc/sys/{key}")).unwrap_or_default();
        out.push(format!("sysctl {key} = {}", value.trim()));
    }
    for path in [
        "/var/lib/kubelet",
        "/var/lib/cni",
        "/var/log/pods",
        "/run/containerd",
        "/var/lib/wpa-test-node",
        "/run/wpa-test-node",
    ] {
        out.push(format!("{path} exists: {}", std::path::Path::new(path).exists()));
    }
    out.push(format!("kubepods cgroup: {}", std::path::Path::new("/sys/fs/cgroup/memory/kubepods").exists()));
    out.sort();
    out
}

fn differences(before: &[String], after: &[String]) -> Vec<String> {
    let gone = before.iter().filter(|l| !after.contains(l)).map(|l| format!("- {l}"));
    let new = after.iter().filter(|l| !before.contains(l)).map(|l| format!("+ {l}"));
    gone.chain(new).collect()
}

/// A pod of the pause image in `default`, running; returns its container's host pid.
async fn running_pod(node: &RealNode, name: &str) -> u32 {
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{{name: c, image: {PAUSE_IMAGE}, imagePullPolicy: Never}}]\n"
    );
    node.cluster().kubectl_apply(&pod).unwrap_or_else(|e| panic!("{e}"));
    let pods: Api<Pod> = Api::namespaced(node.client(), "default");
    let id = wait_for(Duration::from_secs(60), || async {
        let pod = pods.get(name).await.map_err(|e| e.to_string())?;
        let status = pod.status.and_then(|s| s.container_statuses).and_then(|c| c.into_iter().next());
        status
            .filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
            .and_then(|c| c.container_id)
            .ok_or_else(|| "not running yet".to_string())
    })
    .await
    .unwrap_or_else(|e| panic!("pod {name}: {e}\n{}", node.log_tails(20)));
    node.container_pid(&id).expect("the pod's process")
}

/// A TCP connection attempt from inside the network namespace of process `pid`.
fn connect_from_netns_of(pid: u32, to: SocketAddr) -> anyhow::Result<TcpStream> {
    let netns = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
    devcluster::netns::in_netns(&netns, move || TcpStream::connect_timeout(&to, Duration::from_secs(1)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_connections_of_the_node_and_its_pods_are_dropped_counted_and_reported() {
    let _one = ONE_AT_A_TIME.lock().await;
    let node = RealNode::start(NodeOptions::default()).await.unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(node.check_outbound().expect("nothing yet"), 0);
    let pid = running_pod(&node, "leaky").await;
    // RFC 5737 addresses: routed through the default route, never answered.
    let (from_host, from_pod): (SocketAddr, SocketAddr) =
        ("203.0.113.7:9".parse().unwrap(), "203.0.113.8:9".parse().unwrap());
    assert!(TcpStream::connect_timeout(&from_host, Duration::from_secs(1)).is_err(), "dropped");
    assert!(connect_from_netns_of(pid, from_pod).is_err(), "dropped");
    // A pod asking the cloud metadata address (as an SDK does for credentials) is dropped whatever the route.
    let metadata: SocketAddr = "169.254.169.254:80".parse().unwrap();
    assert!(connect_from_netns_of(pid, metadata).is_err(), "dropped");
    let refused = format!("{:#}", node.check_outbound().expect_err("the attempts are counted"));
    assert!(
        refused.lines().any(|l| l.contains("DST=169.254.169.254 ") && l.contains("SRC=10.88.")),
        "the pod's metadata request is reported: {refused}"
    );
    assert!(refused.contains("DST=203.0.113.7 "), "the test process's attempt is reported: {refused}");
    assert!(
        refused.lines().any(|l| l.contains("DST=203.0.113.8 ") && l.contains("SRC=10.88.")),
        "the pod's attempt is reported with its address: {refused}"
    );
    let report = node.stop();
    assert!(report.outbound >= 3, "{report}");
    assert!(report.leftovers.is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_down_node_leaves_the_host_as_it_found_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let before = host_snapshot();
    let node = RealNode::start(NodeOptions::default()).await.unwrap_or_else(|e| panic!("{e:#}"));
    running_pod(&node, "tenant").await;
    let during = host_snapshot();
    assert!(
        differences(&before, &during).len() > 20,
        "a running node changes the host (the test would see it)"
    );
    let report = node.stop();
    drop(node);
    assert!(report.is_clean(), "{report}");
    let left = differences(&before, &host_snapshot());
    assert!(left.is_empty(), "the host differs after the teardown:\n{}", left.join("\n"));
}

/// Run only by [`the_next_start_cleans_up_after_a_run_killed_before_its_teardown`], in a child process: a
/// node with a running pod, then an abort (no destructor, no atexit), as a SIGKILL or a crash would leave it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child of the_next_start_cleans_up_after_a_run_killed_before_its_teardown"]
async fn killed_mid_run() {
    let node = RealNode::start(NodeOptions::default()).await.unwrap_or_else(|e| panic!("{e:#}"));
    running_pod(&node, "orphan").await;
    std::process::abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_start_cleans_up_after_a_run_killed_before_its_teardown() {
    let _one = ONE_AT_A_TIME.lock().await;
    let before = host_snapshot();
    let mut child = std::process::Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--ignored", "--exact", "killed_mid_run", "--nocapture"])
        .spawn()
        .expect("the child");
    let status = child.wait().expect("the child's status");
    assert!(!status.success(), "the child aborted: {status}");
    // Its control plane's directories: etcd's data (in memory, /dev/shm) and the certificates and logs.
    let scratch = scratch_of(child.id());
    assert_eq!(scratch.len(), 2, "the killed run left its etcd data and its cluster directory: {scratch:?}");
    // What it left: the pod still runs (its shim is no child of the test), the bridge, the mounts.
    let left = differences(&before, &host_snapshot());
    assert!(
        left.iter().any(|l| l.contains("wpanode0")),
        "the killed run left its bridge:\n{}",
        left.join("\n")
    );
    let orphans = run("sh", &["-c", "ps -eo comm | grep -c '^pause$' || true"]);
    assert!(orphans.trim() != "0", "the killed run's pod still runs");

    let node = RealNode::start(NodeOptions::default()).await.unwrap_or_else(|e| panic!("{e:#}"));
    running_pod(&node, "next").await;
    let report = node.stop();
    drop(node);
    assert!(report.is_clean(), "{report}");
    let left = differences(&before, &host_snapshot());
    assert!(left.is_empty(), "the host differs after the next run:\n{}", left.join("\n"));
    let kept: Vec<_> = scratch.iter().filter(|d| d.exists()).collect();
    assert!(kept.is_empty(), "the killed run's directories are still there: {kept:?}");
}

/// The control-plane directories made by process `pid` (marked by `devcluster::scratch`).
fn scratch_of(pid: u32) -> Vec<std::path::PathBuf> {
    [std::env::temp_dir(), "/dev/shm".into()]
        .iter()
        .flat_map(|parent| std::fs::read_dir(parent).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|d| {
            std::fs::read_to_string(d.join(devcluster::scratch::OWNER_FILE))
                .is_ok_and(|owner| owner.trim() == pid.to_string())
        })
        .collect()
}
