//! Test harness: a private Kubernetes control plane per test, network-namespace hosts for servers the
//! API server must reach through Endpoints, and an in-process HTTPS server.
//!
//! Use from an integration test with `mod support;`. Needs the binaries from
//! `bash scripts/k8s-test-env.sh`; see docs/control-plane.md.

// Every integration test compiles its own copy of this module and uses only part of it.
#![allow(dead_code, unused_imports)]

mod cluster;
pub mod https;
pub mod netns;
pub mod pki;
mod process;
pub mod scaling;
pub mod wpa;

pub use cluster::{Options, TestCluster, is_pod_ready, wait_for};
pub use https::HttpsServer;
pub use netns::NetnsHost;
pub use pki::TlsIdentity;
pub use scaling::{ScalingCluster, wpa_yaml};
pub use wpa::{WpaServe, webhook_configurations};
