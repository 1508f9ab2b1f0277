//! `wpa serve` as a child process of a test, against a harness cluster.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use devcluster::{LocalCluster, NetnsHost, http_get_at};

pub struct WpaServe {
    child: Child,
    pub webhook_port: u16,
    pub health_port: u16,
    /// Where the health port listens: loopback, or the namespace's address for [`Self::start_in_netns`].
    health_ip: IpAddr,
    pub(crate) log_path: PathBuf,
    /// From the start of the process to its first `/readyz` 200.
    pub ready_in: Duration,
}

impl WpaServe {
    /// Starts `binary serve` with `args` plus listen addresses (the webhook on `webhook_port` when given),
    /// the cluster's admin kubeconfig and text logs (unless `args` name others), and waits until `/readyz`
    /// answers 200.
    pub async fn start_binary(
        binary: &std::path::Path,
        cluster: &LocalCluster,
        name: &str,
        webhook_port: Option<u16>,
        args: &[&str],
    ) -> Result<WpaServe> {
        let serve = Self::launch_binary(binary, cluster, name, webhook_port, args)?;
        serve.wait_ready(name).await
    }

    /// [`Self::start_binary`] without waiting for readiness (e.g. to watch a process that cannot be ready yet).
    pub fn launch_binary(
        binary: &std::path::Path,
        cluster: &LocalCluster,
        name: &str,
        webhook_port: Option<u16>,
        args: &[&str],
    ) -> Result<WpaServe> {
        let (webhook_port, health_port) = (
            webhook_port.map_or_else(devcluster::free_loopback_port, Ok)?,
            devcluster::free_loopback_port()?,
        );
        let command = Command::new(binary);
        Self::spawn(command, cluster, name, Ipv4Addr::LOCALHOST.into(), webhook_port, health_port, args, &[])
    }

    /// Starts `binary serve` inside the network namespace of `host` (`ip netns exec`), the webhook on
    /// `host.ns_ip():webhook_port` and the health port on `host.ns_ip():8080`, as in a pod, with `envs` set;
    /// waits until `/readyz` answers 200. The process reaches the API server at the host's
    /// `127.0.0.1` only through a relay: keep a [`NetnsHost::relay_host_loopback`] of the API server's port
    /// alive while it runs.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_in_netns(
        binary: &std::path::Path,
        cluster: &LocalCluster,
        host: &NetnsHost,
        name: &str,
        webhook_port: u16,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<WpaServe> {
        // `ip netns exec` execs the program in place: the child's pid is wpa serve's, for SIGTERM.
        let command = host.command(&binary.display().to_string());
        Self::spawn(command, cluster, name, host.ns_ip().into(), webhook_port, 8080, args, envs)?
            .wait_ready(name)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn(
        mut command: Command,
        cluster: &LocalCluster,
        name: &str,
        ip: IpAddr,
        webhook_port: u16,
        health_port: u16,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<WpaServe> {
        let log_path = cluster.dir().join(format!("wpa-{name}.log"));
        let log = std::fs::File::create(&log_path)?;
        let child = command
            .arg("serve")
            .args([
                "--listen",
                &SocketAddr::new(ip, webhook_port).to_string(),
                "--health-listen",
                &SocketAddr::new(ip, health_port).to_string(),
            ])
            .args(if args.contains(&"--kubeconfig") {
                Vec::new()
            } else {
                vec!["--kubeconfig".into(), cluster.kubeconfig_path().as_os_str().to_owned()]
            })
            .args(if args.contains(&"--log-format") { &[][..] } else { &["--log-format", "text"][..] })
            .args(args)
            .env("RUST_LOG", "info,kube=warn")
            .envs(envs.iter().copied())
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("starting wpa serve")?;
        Ok(WpaServe { child, webhook_port, health_port, health_ip: ip, log_path, ready_in: Duration::ZERO })
    }

    /// Waits until `/readyz` answers 200 (at most 30 s); fails with the log if the process exits first.
    pub async fn wait_ready(mut self, _name: &str) -> Result<WpaServe> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("wpa serve exited with {status}:\n{}", self.log());
            }
            if let Ok((200, _)) = self.health("/readyz") {
                self.ready_in = started.elapsed();
                return Ok(self);
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("wpa serve was not ready within 30 s:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A GET of the health port (`/healthz`, `/readyz`, `/metrics`): the status code and the body.
    pub fn health(&self, path: &str) -> Result<(u16, String)> {
        http_get_at(SocketAddr::new(self.health_ip, self.health_port), path)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits up to `timeout` for the log to contain `needle`: a pass logs its rescale after the `/scale`
    /// write a test sees, so a test reads the line by waiting, never at once.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        devcluster::wait_for(timeout, || async {
            let log = self.log();
            if log.contains(needle) { Ok(()) } else { Err(format!("no {needle:?} in the log:\n{log}")) }
        })
        .await
        .map_err(anyhow::Error::msg)
    }

    /// SIGTERM, without waiting.
    pub fn signal_terminate(&self) {
        devcluster::process::terminate(&self.child);
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGTERM, then wait; returns how long the graceful shutdown took.
    pub fn terminate(&mut self) -> Duration {
        let started = Instant::now();
        devcluster::process::terminate(&self.child);
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        started.elapsed()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WpaServe {
    // The log's tail is a failing test's output: `eprintln!` is what libtest captures and shows beside it.
    #[allow(clippy::print_stderr)]
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of {} ---", self.log_path.display());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// The shipped webhook configurations (webhook-config/webhooks.yaml), pointed at `https://127.0.0.1:port`
/// instead of the Service, with `ca_pem` as caBundle when given.
pub fn webhook_configurations(port: u16, ca_pem: Option<&str>) -> Result<String> {
    use base64::Engine;
    let text = include_str!("../../webhook-config/webhooks.yaml");
    let mut out = String::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let mut v: serde_json::Value = serde::Deserialize::deserialize(doc)?;
        for hook in v["webhooks"].as_array_mut().context("webhooks")? {
            let path =
                hook["clientConfig"]["service"]["path"].as_str().context("a service path")?.to_string();
            let mut client = serde_json::json!({"url": format!("https://127.0.0.1:{port}{path}")});
            if let Some(ca) = ca_pem {
                client["caBundle"] = base64::engine::general_purpose::STANDARD.encode(ca).into();
            }
            hook["clientConfig"] = client;
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&v)?);
    }
    Ok(out)
}
