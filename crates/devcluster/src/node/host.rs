//! The node's footprint on the host, and how it is put back.
//!
//! A node does not stay inside a directory: containerd, runc, the CNI plugins, the kubelet and kube-proxy
//! write fixed paths, mount file systems, make cgroups, add iptables chains, create a bridge and network
//! namespaces, and change kernel settings. All of it is machine-wide, so one node runs at a time
//! ([`HostLock`]). [`Baseline`] records the host before the first node; [`restore`] undoes whatever a node
//! can leave, whether it was stopped or killed, and [`leftovers`] lists what is still there afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::process::run;

/// The node's own files: containerd's root, the CNI configuration and address allocations, configs.
pub(crate) const STATE_DIR: &str = "/var/lib/wpa-test-node";
/// containerd's state and socket.
pub(crate) const RUN_DIR: &str = "/run/wpa-test-node";
/// Never removed: a waiter must lock the same file as the holder.
const LOCK_FILE: &str = "/run/wpa-test-node.lock";
/// Outside [`STATE_DIR`], which [`restore`] removes: a killed run's baseline must reach the next run.
const BASELINE_FILE: &str = "/var/lib/wpa-test-node.baseline.json";
/// The pods' bridge, which also carries the API server's address.
pub(crate) const BRIDGE: &str = "wpanode0";

/// The node's directories plus the paths its programs write whatever their flags say: the kubelet's
/// device-plugin socket, the pod logs, CNI's result cache, the containerd shims' sockets and runc's state.
const OWNED_PATHS: [&str; 7] = [
    STATE_DIR,
    RUN_DIR,
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/var/log/pods",
    "/var/log/containers",
    "/run/containerd",
];
/// Mount points under these belong to the node (secret volumes, container root file systems, shm, the
/// pods' network namespaces).
const MOUNT_PREFIXES: [&str; 5] =
    [STATE_DIR, RUN_DIR, "/var/lib/kubelet", "/run/containerd", "/run/netns/cni-"];
/// Chains of the kubelet and kube-proxy (KUBE-), the CNI plugins (CNI-) and the egress guard (WPA-NODE-).
const CHAIN_PREFIXES: [&str; 3] = ["KUBE-", "CNI-", "WPA-NODE-"];
const TABLES: [&str; 4] = ["filter", "nat", "mangle", "raw"];
const FAMILIES: [&str; 2] = ["iptables", "ip6tables"];
/// What the kubelet (panic, overcommit, kernel keys), kube-proxy (route_localnet, bridge netfilter) and
/// the bridge plugin (forwarding) change.
const SYSCTLS: [&str; 14] = [
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv4.conf.default.forwarding",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv6.conf.all.forwarding",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "kernel.panic",
    "kernel.panic_on_oops",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
];
/// The programs of a node that name its directories on their command line.
const NODE_PROGRAMS: [&str; 6] =
    ["containerd", "containerd-shim-runc-v2", "kubelet", "kube-proxy", "runc", "ctr"];
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// The machine-wide lock: held while a node runs, released by the kernel if the process dies.
pub(crate) struct HostLock {
    _file: File,
}

impl HostLock {
    /// Waits for the lock (another test binary's node may be running; its teardown takes seconds).
    pub(crate) fn acquire() -> Result<Self> {
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(LOCK_FILE)
            .with_context(|| format!("opening {LOCK_FILE} (the real node needs root)"))?;
        // SAFETY: plain syscalls on a valid fd.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let holder = fs::read_to_string(LOCK_FILE).unwrap_or_default();
            crate::log_line!(
                "[node] another node runs on this machine (process {}); waiting for {LOCK_FILE}",
                holder.trim()
            );
            // SAFETY: as above.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(std::io::Error::last_os_error()).with_context(|| format!("locking {LOCK_FILE}"));
            }
        }
        file.set_len(0).context("truncating the lock file")?;
        let _ = writeln!(file, "{}", std::process::id());
        Ok(Self { _file: file })
    }
}

/// The host before any node ran: kernel settings and which of the owned paths already existed (those are
/// left alone).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Baseline {
    sysctls: BTreeMap<String, String>,
    existing_paths: BTreeSet<String>,
}

impl Baseline {
    /// The baseline a killed run left behind (its changes are still on the host), or else the host as it
    /// is now. Kept on disk until a [`restore`] has succeeded.
    pub(crate) fn load_or_record() -> Result<Self> {
        if let Ok(text) = fs::read_to_string(BASELINE_FILE) {
            let baseline: Baseline = serde_json::from_str(&text)
                .with_context(|| format!("{BASELINE_FILE} is not a node baseline; delete it"))?;
            crate::log_line!(
                "[node] a previous run did not restore the host; restoring it from {BASELINE_FILE}"
            );
            return Ok(baseline);
        }
        let baseline = Baseline {
            sysctls: SYSCTLS.iter().filter_map(|k| Some((k.to_string(), read_sysctl(k)?))).collect(),
            existing_paths: OWNED_PATHS
                .iter()
                .filter(|p| Path::new(p).exists())
                .map(|p| p.to_string())
                .collect(),
        };
        fs::write(BASELINE_FILE, serde_json::to_vec_pretty(&baseline)?)
            .with_context(|| format!("writing {BASELINE_FILE}"))?;
        Ok(baseline)
    }

    /// Once the host is back to the baseline, the next run records its own.
    pub(crate) fn forget(&self) {
        let _ = fs::remove_file(BASELINE_FILE);
    }
}

/// Undoes every change a node makes to the host, best effort; returns what failed.
///
/// Order: processes first (nothing may re-create what follows), then mounts and network namespaces, the
/// iptables chains, the bridge (its routes and any veth go with it), the cgroups, the kernel settings and
/// the files.
pub(crate) fn restore(baseline: &Baseline) -> Vec<String> {
    let mut problems = Vec::new();
    kill_node_processes();
    unmount_node_mounts();
    for entry in fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("cni-") {
            let _ = fs::remove_file(entry.path());
        }
    }
    problems.extend(remove_chains());
    if let Ok(members) = run("ip", &["-o", "link", "show", "master", BRIDGE]) {
        for name in members.lines().filter_map(link_name) {
            let _ = run("ip", &["link", "del", &name]);
        }
    }
    if link_exists(BRIDGE)
        && let Err(e) = run("ip", &["link", "del", BRIDGE])
    {
        problems.push(format!("{e:#}"));
    }
    for dir in kubepods_cgroups() {
        // Deepest first: a cgroup with children cannot be removed.
        let mut dirs = walk_dirs(&dir);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.as_os_str().len()));
        for d in dirs {
            let _ = fs::remove_dir(&d);
        }
    }
    for (key, value) in &baseline.sysctls {
        if read_sysctl(key).as_deref() != Some(value.as_str())
            && let Err(e) = fs::write(sysctl_path(key), value)
        {
            problems.push(format!("cannot restore {key}={value}: {e}"));
        }
    }
    for path in OWNED_PATHS {
        if !baseline.existing_paths.contains(path)
            && Path::new(path).exists()
            && let Err(e) = fs::remove_dir_all(path)
        {
            problems.push(format!("cannot remove {path}: {e}"));
        }
    }
    problems
}

/// What a node left on the host that the baseline does not have (empty when the host is clean).
pub(crate) fn leftovers(baseline: &Baseline) -> Vec<String> {
    let mut left = Vec::new();
    for (pid, cmdline) in node_processes() {
        left.push(format!("process {pid}: {cmdline}"));
    }
    for dir in kubepods_cgroups() {
        left.push(format!("cgroup {}", dir.display()));
    }
    for mount in node_mounts() {
        left.push(format!("mount {mount}"));
    }
    for entry in fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("cni-") {
            left.push(format!("network namespace {}", entry.path().display()));
        }
    }
    for (family, table, line) in node_iptables_lines() {
        left.push(format!("{family} -t {table}: {line}"));
    }
    if link_exists(BRIDGE) {
        left.push(format!("link {BRIDGE}"));
    }
    for (key, value) in &baseline.sysctls {
        let now = read_sysctl(key).unwrap_or_default();
        if &now != value {
            left.push(format!("sysctl {key}={now} (was {value})"));
        }
    }
    for path in OWNED_PATHS {
        if !baseline.existing_paths.contains(path) && Path::new(path).exists() {
            left.push(format!("path {path}"));
        }
    }
    left
}

fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

fn read_sysctl(key: &str) -> Option<String> {
    fs::read_to_string(sysctl_path(key)).ok().map(|v| v.trim().to_string())
}

/// The node's programs whose command line names the node's directories: containerd and its shims (which
/// outlive a killed test process: they are not its children), and whatever a killed run left running.
fn node_processes() -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid == me {
            continue;
        }
        let Ok(raw) = fs::read(entry.path().join("cmdline")) else { continue };
        let program = raw.split(|b| *b == 0).next().unwrap_or_default();
        let program = String::from_utf8_lossy(program);
        let program = program.rsplit('/').next().unwrap_or_default();
        if !NODE_PROGRAMS.contains(&program) {
            continue;
        }
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(STATE_DIR) || cmdline.contains(RUN_DIR) {
            out.push((pid, cmdline.trim().to_string()));
        }
    }
    out
}

/// The `kubepods` cgroup of every hierarchy (cgroup v1 mounts one per controller).
fn kubepods_cgroups() -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("kubepods"))
        .filter(|p| p.is_dir())
        .collect();
    let unified = Path::new("/sys/fs/cgroup/kubepods");
    if unified.is_dir() {
        out.push(unified.to_path_buf());
    }
    out
}

fn walk_dirs(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let children: Vec<_> = fs::read_dir(&out[i])
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        out.extend(children);
        i += 1;
    }
    out
}

/// SIGKILLs the node's processes and the pods' processes (found by cgroup: once their shim is gone they
/// belong to no one), until none is left or [`KILL_TIMEOUT`] has passed.
fn kill_node_processes() {
    let begin = Instant::now();
    loop {
        let mut pids: Vec<i32> = node_processes().into_iter().map(|(pid, _)| pid).collect();
        for dir in kubepods_cgroups() {
            for d in walk_dirs(&dir) {
                let procs = fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        pids.sort_unstable();
        pids.dedup();
        if pids.is_empty() || begin.elapsed() > KILL_TIMEOUT {
            return;
        }
        for pid in pids {
            // SAFETY: kill(2) has no memory preconditions; these are the node's processes.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Mount points of the node, from /proc/self/mountinfo (deepest first).
fn node_mounts() -> Vec<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|m| MOUNT_PREFIXES.iter().any(|p| m.starts_with(p)))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    mounts.dedup();
    mounts
}

/// mountinfo writes space, tab, newline and backslash as `\NNN` (octal).
fn unescape_mount_path(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(octal) = raw.get(i + 1..i + 4)
            && let Ok(b) = u8::from_str_radix(octal, 8)
        {
            out.push(b);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unmount_node_mounts() {
    // Mounts can be stacked on one point (the kubelet bind-mounts its root onto itself): a few passes.
    for _ in 0..4 {
        let mounts = node_mounts();
        if mounts.is_empty() {
            return;
        }
        for m in mounts {
            let Ok(path) = std::ffi::CString::new(m) else { continue };
            // SAFETY: a valid NUL-terminated path; MNT_DETACH never blocks on busy mounts.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn is_node_chain(name: &str) -> bool {
    CHAIN_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Every iptables line (chain declaration or rule) of the node, as (family, table, line).
fn node_iptables_lines() -> Vec<(&'static str, &'static str, String)> {
    let mut out = Vec::new();
    for family in FAMILIES {
        for table in TABLES {
            let Ok(saved) = run(&format!("{family}-save"), &["-t", table]) else { continue };
            for line in saved.lines() {
                let args = split_args(line);
                let chain = match args.first().map(String::as_str) {
                    Some(decl) if decl.starts_with(':') => decl[1..].to_string(),
                    Some("-A") => args.get(1).cloned().unwrap_or_default(),
                    _ => continue,
                };
                let jumps_to_node =
                    args.windows(2).any(|w| (w[0] == "-j" || w[0] == "-g") && is_node_chain(&w[1]));
                if is_node_chain(&chain) || jumps_to_node {
                    out.push((family, table, line.to_string()));
                }
            }
        }
    }
    out
}

/// Deletes the rules of other chains that jump to the node's chains, then the node's chains.
fn remove_chains() -> Vec<String> {
    let lines = node_iptables_lines();
    let mut chains = Vec::new();
    for (family, table, line) in &lines {
        let args = split_args(line);
        match args.first().map(String::as_str) {
            Some(decl) if decl.starts_with(':') => chains.push((*family, *table, decl[1..].to_string())),
            Some("-A") if !is_node_chain(&args[1]) => {
                let mut delete: Vec<&str> = vec!["-t", table, "-D"];
                delete.extend(args[1..].iter().map(String::as_str));
                let _ = run(family, &delete);
            }
            _ => {}
        }
    }
    for (family, table, chain) in &chains {
        let _ = run(family, &["-t", table, "-F", chain]);
    }
    let mut problems = Vec::new();
    for (family, table, chain) in &chains {
        if let Err(e) = run(family, &["-t", table, "-X", chain]) {
            problems.push(format!("{e:#}"));
        }
    }
    problems
}

/// Splits an iptables-save line into arguments: words, or double-quoted strings (with `\"` escapes).
fn split_args(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => word.extend(chars.next()),
                    '"' => break,
                    c => word.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        out.push(word);
    }
    out
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// `7: veth1234@if3: <...>` → `veth1234`.
fn link_name(line: &str) -> Option<String> {
    let name = line.split(": ").nth(1)?;
    Some(name.split('@').next()?.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_save_lines_split_into_the_arguments_of_a_delete() {
        let line = r#"-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES"#;
        assert_eq!(
            split_args(line),
            [
                "-A",
                "OUTPUT",
                "-m",
                "comment",
                "--comment",
                "kubernetes service portals",
                "-j",
                "KUBE-SERVICES"
            ]
        );
        assert_eq!(split_args(r#"--comment "a \"quoted\" word""#), ["--comment", r#"a "quoted" word"#]);
    }

    #[test]
    fn mount_points_are_unescaped_and_link_names_read() {
        assert_eq!(
            unescape_mount_path(r"/var/lib/kubelet/pods/x/volumes/a\040b"),
            "/var/lib/kubelet/pods/x/volumes/a b"
        );
        assert_eq!(link_name("7: veth1234@if3: <BROADCAST,MULTICAST,UP> mtu 1500"), Some("veth1234".into()));
    }
}
