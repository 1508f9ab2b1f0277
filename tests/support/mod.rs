//! Test harness: the local control plane (the `devcluster` crate) and wpa's own layer on it
//! ([`wpa::devtools`]), plus what only tests need.
//!
//! Use from an integration test with `mod support;`. Needs the binaries from
//! `bash scripts/k8s-test-env.sh`; see docs/control-plane.md.

// Every integration test compiles its own copy of this module and uses only part of it.
#![allow(dead_code, unused_imports)]

pub use devcluster::{
    HttpsServer, LocalCluster as TestCluster, NetnsHost, Options, TlsIdentity, http_get, is_pod_ready, pki,
    wait_for,
};
pub use wpa::devtools::{ScalingCluster, WpaServe, webhook_configurations, wpa_yaml};

/// Lease timings short enough for a test to see a handover (`wpa serve` flags).
pub const FAST_LEASE: [&str; 6] =
    ["--lease-duration", "6s", "--lease-renew-deadline", "4s", "--lease-retry-period", "1s"];

/// `wpa serve` from this build.
pub trait StartWpa: Sized {
    fn start(
        cluster: &TestCluster,
        name: &str,
        webhook_port: Option<u16>,
        args: &[&str],
    ) -> impl Future<Output = anyhow::Result<Self>>;
}

impl StartWpa for WpaServe {
    async fn start(
        cluster: &TestCluster,
        name: &str,
        webhook_port: Option<u16>,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        WpaServe::start_binary(
            std::path::Path::new(env!("CARGO_BIN_EXE_wpa")),
            cluster,
            name,
            webhook_port,
            args,
        )
        .await
    }
}
