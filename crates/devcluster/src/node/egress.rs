//! Nothing leaves the machine: a guard that counts, logs and drops every new outbound connection of the
//! node while it runs.
//!
//! What it matches, in the `mangle` table's POSTROUTING (after routing and DNAT, before anything leaves, so
//! a Service endpoint that points outside is caught too), for IPv4 and IPv6:
//! - packets of a new connection (conntrack NEW) that leave through an interface of a default route, or
//!   go to a cloud metadata address (169.254.169.254, fd00:ec2::254) through any interface,
//! - and come from this test process or anything it started after the node's start (the control plane,
//!   containerd and its shims, the kubelet, kube-proxy, kubectl, Helm): they carry the supplementary group
//!   [`NODE_GID`], matched by the socket's owner; or from the pods (source address in the pod network,
//!   forwarded by the host).
//!
//! Other processes of the machine (someone's `cargo` or `apt-get`) carry no such group and are neither
//! counted nor dropped. Each match is logged to the kernel log with [`LOG_PREFIX`] (source, destination,
//! protocol, ports, uid/gid) and dropped, so a leak is both stopped and reported with where it went.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result, bail};

use crate::process::run;

/// The supplementary group that marks the node's processes (unused by any file; only the iptables owner
/// match reads it).
pub const NODE_GID: u32 = 40187;
const CHAIN: &str = "WPA-NODE-EGRESS";
const HIT: &str = "WPA-NODE-EGRESS-HIT";
pub const LOG_PREFIX: &str = "wpa-node-egress: ";
const METADATA_V4: &str = "169.254.169.254";
const METADATA_V6: &str = "fd00:ec2::254";

pub(crate) struct EgressGuard {
    /// (iptables or ip6tables, interfaces of its default routes).
    families: Vec<(&'static str, Vec<String>)>,
    /// The kernel log's last record when the guard was installed; later records are this run's.
    kmsg_start: u64,
}

impl EgressGuard {
    /// Marks this process (and so everything it starts from now on) with [`NODE_GID`] and installs the
    /// counting and dropping rules.
    pub(crate) fn install(pod_cidr: &str) -> Result<Self> {
        join_group(NODE_GID)?;
        let kmsg_start = kernel_log().map(|records| records.last().map_or(0, |(seq, _)| *seq)).unwrap_or(0);
        let mut families = Vec::new();
        for (family, flag, metadata) in [("iptables", "-4", METADATA_V4), ("ip6tables", "-6", METADATA_V6)] {
            let routes = run("ip", &[flag, "route", "show", "default"])?;
            let interfaces: BTreeSet<String> = routes
                .lines()
                .filter_map(|l| {
                    let words: Vec<&str> = l.split_whitespace().collect();
                    words.windows(2).find(|w| w[0] == "dev").map(|w| w[1].to_string())
                })
                .collect();
            let t = |args: &[&str]| -> Result<()> {
                let mut all = vec!["-t", "mangle"];
                all.extend(args);
                run(family, &all).map(drop)
            };
            t(&["-N", HIT])?;
            t(&["-A", HIT, "-j", "LOG", "--log-prefix", LOG_PREFIX, "--log-uid"])?;
            t(&["-A", HIT, "-j", "DROP"])?;
            t(&["-N", CHAIN])?;
            let gid = NODE_GID.to_string();
            t(&["-A", CHAIN, "-m", "owner", "--gid-owner", &gid, "--suppl-groups", "-j", HIT])?;
            if family == "iptables" {
                t(&["-A", CHAIN, "-s", pod_cidr, "-j", HIT])?;
            }
            let new = ["-m", "conntrack", "--ctstate", "NEW", "-j", CHAIN];
            t(&[&["-I", "POSTROUTING", "1", "-d", metadata][..], &new].concat())?;
            for interface in &interfaces {
                t(&[&["-I", "POSTROUTING", "1", "-o", interface.as_str()][..], &new].concat())?;
            }
            families.push((family, interfaces.into_iter().collect()));
        }
        Ok(Self { families, kmsg_start })
    }

    /// Packets of new outbound connections counted (and dropped) so far, IPv4 and IPv6 together.
    pub(crate) fn count(&self) -> Result<u64> {
        let mut total = 0;
        for (family, _) in &self.families {
            let listing = run(family, &["-t", "mangle", "-L", HIT, "-v", "-x", "-n"])?;
            // Header lines, then the LOG rule (every match passes it) with its packet count first.
            let log_rule = listing
                .lines()
                .find(|l| l.contains("LOG"))
                .with_context(|| format!("{family}: no LOG rule in {HIT}:\n{listing}"))?;
            let packets: u64 = log_rule
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("{family}: cannot read the packet count of {log_rule:?}"))?;
            total += packets;
        }
        Ok(total)
    }

    /// What was counted: the kernel log's lines of this run (source, destination, protocol, ports, owner).
    pub(crate) fn report(&self) -> String {
        let scope = self
            .families
            .iter()
            .map(|(family, interfaces)| format!("{family}: {}", interfaces.join(", ")))
            .collect::<Vec<_>>()
            .join("; ");
        let lines = match kernel_log() {
            Ok(records) => records
                .into_iter()
                .filter(|(seq, msg)| *seq > self.kmsg_start && msg.contains(LOG_PREFIX))
                .map(|(_, msg)| format!("  {msg}"))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("  (cannot read the kernel log: {e:#})"),
        };
        format!("default-route interfaces ({scope}); dropped packets as the kernel logged them:\n{lines}")
    }

    /// Fails with [`Self::report`] when anything was counted.
    pub(crate) fn check(&self) -> Result<u64> {
        let count = self.count()?;
        if count > 0 {
            bail!(
                "the node tried to reach {count} time(s) beyond this machine (new connections through a \
                 default route or to a metadata address, from the node's processes or pods); {}",
                self.report()
            );
        }
        Ok(count)
    }
}

/// Adds `gid` to this process's supplementary groups. glibc applies setgroups(2) to every thread, and
/// children inherit the groups, so every socket the test and its children open from now on carries it.
fn join_group(gid: u32) -> Result<()> {
    // SAFETY: getgroups with a zero size only returns the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error()).context("getgroups");
    }
    let mut groups = vec![0 as libc::gid_t; n as usize];
    // SAFETY: the buffer holds `n` entries.
    let got = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    if got < 0 {
        return Err(std::io::Error::last_os_error()).context("getgroups");
    }
    groups.truncate(got as usize);
    if groups.contains(&gid) {
        return Ok(());
    }
    groups.push(gid);
    // SAFETY: a valid buffer of `len` gids.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error())
            .context("setgroups: the node's egress check needs CAP_SETGID (run as root)");
    }
    Ok(())
}

/// The kernel log's records as (sequence number, message), oldest first.
fn kernel_log() -> Result<Vec<(u64, String)>> {
    let mut kmsg = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .context("opening /dev/kmsg")?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Each read returns one record: "priority,sequence,timestamp,flags;message".
        match kmsg.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let record = String::from_utf8_lossy(&buf[..n]);
                let Some((header, message)) = record.split_once(';') else { continue };
                let Some(seq) = header.split(',').nth(1).and_then(|s| s.parse().ok()) else { continue };
                out.push((seq, message.lines().next().unwrap_or_default().to_string()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // The record was overwritten while we read: skip to the next.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) => return Err(e).context("reading /dev/kmsg"),
        }
    }
    Ok(out)
}
