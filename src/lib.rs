//! `wpa`: a Watermark Pod Autoscaler for Kubernetes.
//!
//! The crate is layered; each layer only uses the ones above it:
//!
//! ```text
//!   api         the WatermarkPodAutoscaler types, quantities, label selectors, durations, the CRD
//!    │
//!   engine      the pure decision engine: validation, defaults, one reconcile pass (no I/O, time passed in)
//!    │
//!    ├── webhook      admission: AdmissionReview wire format, the rules, which autoscaler governs what
//!    ├── reconciler   gathers the engine's inputs, writes /scale, status, events, Prometheus series
//!    ├── extender     kube-scheduler's filter/prioritize: place a WPA target's replicas within its failure budget
//!    │
//!   runtime     services of the process: HTTP/TLS servers, the Kubernetes client, watches, logs, registry
//!    │
//!   cmd         the command line: serve (the wiring of the roles), explain, simulate, crd, certs (+ demo, bench)
//! ```
//!
//! `devtools` (feature `dev-tools`, on by default) holds `wpa demo`, `wpa bench` and the WPA-specific test
//! harness on top of the `devcluster` crate; the image is built without it.
#![forbid(unsafe_code)]
pub mod api;
pub mod cmd;
#[cfg(feature = "dev-tools")]
pub mod devtools;
pub mod engine;
pub(crate) mod extender;
pub mod reconciler;
pub mod runtime;
#[doc(hidden)]
pub mod vectors;
pub mod webhook;
