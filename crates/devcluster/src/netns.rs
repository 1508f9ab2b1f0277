//! A network namespace with a veth link to the host, so that a test server gets an address that is not
//! loopback.
//!
//! Why: the API server refuses loopback addresses in Endpoints (and a Service-referenced webhook or an
//! `APIService` is reached through Endpoints when the API server runs with
//! `--enable-aggregator-routing=true`). An address inside a namespace the test made is routable from
//! the host through the veth pair, and traffic to it never leaves the machine.
//!
//! Each host gets `10.250.X.0/30` (host side `.1`, namespace side `.2`), where X is a slot claimed with
//! an flock(2) on `/run/wpa-test-netns/X.lock`: distinct across threads and processes, and released by
//! the kernel if the process dies. Names are derived from the slot, so a namespace left behind by a
//! killed run is recognised and removed when its slot is claimed again.

use std::fs::{self, File};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{Api, PostParams};

const LOCK_DIR: &str = "/run/wpa-test-netns";
const SLOTS: u32 = 254;

pub struct NetnsHost {
    slot: u32,
    name: String,
    host_if: String,
    ns_if: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
    // Held for the lifetime of the host; dropping it releases the slot.
    _lock: File,
}

impl NetnsHost {
    /// Creates the namespace and the veth pair. On failure the error carries the exact output of the
    /// `ip` command that was refused.
    pub fn create() -> Result<Self> {
        let (slot, lock) = claim_slot()?;
        let host = NetnsHost {
            slot,
            name: format!("wpa-t{slot}"),
            host_if: format!("wpah{slot}"),
            ns_if: format!("wpan{slot}"),
            host_ip: Ipv4Addr::new(10, 250, slot as u8, 1),
            ns_ip: Ipv4Addr::new(10, 250, slot as u8, 2),
            _lock: lock,
        };
        // Leftovers of a run that was killed before its destructors ran (we hold the slot's lock, so
        // nobody else owns them).
        host.remove();
        // On failure, dropping `host` removes whatever part was built.
        host.build()?;
        Ok(host)
    }

    fn build(&self) -> Result<()> {
        let host_cidr = format!("{}/30", self.host_ip);
        let ns_cidr = format!("{}/30", self.ns_ip);
        ip(&["netns", "add", &self.name])?;
        ip(&["link", "add", &self.host_if, "type", "veth", "peer", "name", &self.ns_if])?;
        ip(&["link", "set", &self.ns_if, "netns", &self.name])?;
        ip(&["addr", "add", &host_cidr, "dev", &self.host_if])?;
        ip(&["link", "set", &self.host_if, "up"])?;
        ip(&["-n", &self.name, "addr", "add", &ns_cidr, "dev", &self.ns_if])?;
        ip(&["-n", &self.name, "link", "set", &self.ns_if, "up"])?;
        ip(&["-n", &self.name, "link", "set", "lo", "up"])?;
        Ok(())
    }

    fn remove(&self) {
        // Deleting the host end removes the pair at once, even while sockets keep the namespace alive.
        let _ = quiet_ip(&["link", "del", &self.host_if]);
        let _ = quiet_ip(&["netns", "del", &self.name]);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The address of the host end of the veth pair (`10.250.X.1`).
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// The address inside the namespace (`10.250.X.2`): what Endpoints should name.
    pub fn ns_ip(&self) -> Ipv4Addr {
        self.ns_ip
    }

    /// Creates a listening socket on `ns_ip():port` inside the namespace. A socket belongs to the
    /// namespace it was created in, so an in-process server can serve on it from any thread afterwards.
    /// The socket is blocking; set it non-blocking before handing it to tokio.
    pub fn bind_tcp(&self, port: u16) -> Result<TcpListener> {
        self.bind_tcp_at(SocketAddr::from((self.ns_ip, port)))
    }

    /// Like [`Self::bind_tcp`], on any address of the namespace (e.g. its own loopback).
    pub fn bind_tcp_at(&self, addr: SocketAddr) -> Result<TcpListener> {
        let netns_path = PathBuf::from("/run/netns").join(&self.name);
        in_netns(&netns_path, move || TcpListener::bind(addr))
            .with_context(|| format!("binding {addr} inside the namespace"))
    }

    /// Makes the host's `127.0.0.1:port` reachable at `127.0.0.1:port` inside the namespace, by relaying TCP
    /// (byte for byte, so TLS passes through and a certificate for 127.0.0.1 still verifies). Why: a process
    /// started in the namespace (e.g. `wpa serve` through [`Self::command`]) can then use the cluster's own
    /// kubeconfig, whose API server listens on the host's loopback only. The relay runs on its own threads
    /// (a test blocked in a `kubectl` call does not stall it) until dropped.
    pub fn relay_host_loopback(&self, port: u16) -> Result<LoopbackRelay> {
        let listener = self.bind_tcp_at(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
        listener.set_nonblocking(true).context("a non-blocking relay listener")?;
        let relay = LoopbackRelay { stop: Arc::default(), open: Arc::default() };
        let (stop, open) = (relay.stop.clone(), relay.open.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let inside = match listener.accept() {
                    Ok((inside, _)) => inside,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    Err(_) => continue,
                };
                // This thread never entered the namespace: the connection goes to the host's loopback.
                let Ok(host) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else { continue };
                let _ = inside.set_nonblocking(false);
                let (Ok(inside2), Ok(host2)) = (inside.try_clone(), host.try_clone()) else { continue };
                open.lock().unwrap_or_else(|p| p.into_inner()).extend(inside.try_clone().ok());
                pipe(inside, host);
                pipe(host2, inside2);
            }
        });
        Ok(relay)
    }

    /// Routes `address` of the host into the namespace's veth, so that servers inside answer it. Needed when
    /// the host's clients connect from an address outside the /30, e.g. the API server of a real node
    /// (listening on the node's bridge) reaching a Service through kube-proxy.
    pub fn route_to_host(&self, address: Ipv4Addr) -> Result<()> {
        ip(&["-n", &self.name, "route", "add", &format!("{address}/32"), "via", &self.host_ip.to_string()])
            .map(drop)
    }

    /// `ip netns exec <ns> program`: a command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// A selector-less Service `service_name` (port named `https`) plus an Endpoints object that names
    /// `ns_ip():port`, so the API server routes the Service to the server in this namespace.
    pub async fn register_service(
        &self,
        client: &kube::Client,
        namespace: &str,
        service_name: &str,
        port: u16,
    ) -> Result<(Service, Endpoints)> {
        let service: Service = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": service_name, "namespace": namespace },
            "spec": {
                "ports": [{ "name": "https", "port": port, "targetPort": port, "protocol": "TCP" }]
            }
        }))
        .context("building the Service")?;
        let endpoints: Endpoints = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": { "name": service_name, "namespace": namespace },
            "subsets": [{
                "addresses": [{ "ip": self.ns_ip.to_string() }],
                "ports": [{ "name": "https", "port": port, "protocol": "TCP" }]
            }]
        }))
        .context("building the Endpoints")?;
        let service = Api::<Service>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &service)
            .await
            .with_context(|| format!("creating Service {namespace}/{service_name}"))?;
        let endpoints = Api::<Endpoints>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &endpoints)
            .await
            .with_context(|| format!("creating Endpoints {namespace}/{service_name}"))?;
        Ok((service, endpoints))
    }
}

/// Runs `f` on a thread inside the network namespace `netns` (a bind mount under /run/netns, or a process's
/// /proc/PID/ns/net). A socket belongs to the namespace it was created in, so one made by `f` keeps working
/// there from any thread afterwards.
pub fn in_netns<T: Send + 'static>(
    netns: &std::path::Path,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    let netns = netns.to_path_buf();
    // setns(2) changes the namespace of the calling thread only, so do it on a throwaway thread.
    std::thread::spawn(move || -> Result<T> {
        let ns = File::open(&netns).with_context(|| format!("opening {}", netns.display()))?;
        // SAFETY: plain syscall on a valid fd; it affects only this thread, which ends below.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("setns into {}", netns.display()));
        }
        Ok(f()?)
    })
    .join()
    .map_err(|_| anyhow!("the thread inside the namespace panicked"))?
}

/// A running [`NetnsHost::relay_host_loopback`]; dropping it stops accepting and cuts the open connections.
pub struct LoopbackRelay {
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Drop for LoopbackRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in self.open.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to` on a thread; at the end of `from`, shuts `to` for writing (a half close).
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Drop for NetnsHost {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Claims a free slot: its lock file is flock'ed by us, and no address of its /30 is configured on the
/// host (someone else's network must never be touched).
fn claim_slot() -> Result<(u32, File)> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    fs::create_dir_all(LOCK_DIR).with_context(|| format!("creating {LOCK_DIR}"))?;
    let host_addrs = ip(&["-o", "-4", "addr", "show"])?;
    // Start at a different slot per process and per call, so parallel claimants rarely contend.
    let start = std::process::id().wrapping_mul(31).wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
    for i in 0..SLOTS {
        let slot = 1 + (start.wrapping_add(i) % SLOTS);
        let path = PathBuf::from(LOCK_DIR).join(format!("{slot}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: plain syscall on a valid fd.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        let ours = format!("wpah{slot}");
        let in_use_by_others = host_addrs
            .lines()
            .any(|line| line.contains(&format!(" 10.250.{slot}.")) && !line.contains(&format!(" {ours} ")));
        if in_use_by_others {
            continue;
        }
        return Ok((slot, file));
    }
    bail!("no free 10.250.X.0/30 slot (all {SLOTS} are locked or configured on the host)")
}

fn ip(args: &[&str]) -> Result<String> {
    crate::process::run("ip", args)
}

fn quiet_ip(args: &[&str]) -> std::io::Result<std::process::ExitStatus> {
    Command::new("ip")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
}
