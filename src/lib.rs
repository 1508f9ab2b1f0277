//! `wpa`: a Watermark Pod Autoscaler for Kubernetes.
//!
//! The crate is layered: each module uses only those drawn below it (`tests/layers.rs` checks every
//! `crate::` path against this drawing).
//!
//! ```text
//!   cmd          the command line: serve (the wiring of the roles), explain, simulate, dry-run, crd, certs
//!    │   devtools   wpa demo, wpa bench and the WPA test harness (feature `dev-tools`)
//!    │
//!   webhook · reconciler · extender     the three roles, peers: none uses another
//!    │         admission; watermark scaling with /scale, status, events and series; kube-scheduler's
//!    │         filter/prioritize
//!    │
//!   state        the cluster from memory: watches, the one WPA feed and its sinks, which autoscaler governs
//!    │           what, pods and targets, Nodes and ReplicaSets; one start and one readiness signal
//!    │
//!   engine       the pure decision engine: validation, defaults, one plan and one pass (no I/O, time passed in)
//!    │
//!   api          the WatermarkPodAutoscaler types, quantities, label selectors, durations, the CRD
//!
//!   runtime      services any layer may use and that use none: HTTP/TLS servers, the Kubernetes client,
//!                logs, signals, the process's Prometheus registry
//! ```
//!
//! `devtools` (feature `dev-tools`, on by default) sits beside `cmd` and uses every layer below it, on top
//! of the `devcluster` crate; the image is built without it.
#![forbid(unsafe_code)]
// What is `pub` is what the binary, the tests and the dev tools reach; everything else says `pub(crate)`.
#![warn(unreachable_pub)]
// `println!` and `eprintln!` panic on a closed pipe (`wpa certs | true`): commands print through
// `runtime::output`.
#![warn(clippy::print_stdout, clippy::print_stderr)]
pub mod api;
pub mod cmd;
#[cfg(feature = "dev-tools")]
pub mod devtools;
pub mod engine;
pub(crate) mod extender;
pub mod reconciler;
pub mod runtime;
pub mod state;
#[doc(hidden)]
pub mod vectors;
pub mod webhook;
