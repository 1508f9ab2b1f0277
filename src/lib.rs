//! `wpa`: a Watermark Pod Autoscaler for Kubernetes.
//!
//! - [`api`]: the `WatermarkPodAutoscaler` types and the CRD generated from them.
//! - [`engine`]: the pure decision engine (upstream semantics), shared by everything else.
//! - [`simulate`]: offline replay of a metric series.
//! - [`recommender_client`]: the recommender HTTP protocol.
pub mod api;
pub mod bench;
pub mod cli;
pub mod demo;
pub mod devcluster;
pub mod duration;
pub mod engine;
pub mod explain;
pub mod extender;
pub mod logging;
pub mod metrics;
pub mod quantity;
pub mod recommender_client;
pub mod reconciler;
pub mod selector;
pub mod serve;
pub mod server;
pub mod simulate;
pub mod synthetic_metrics;
pub mod tls;
pub mod watch;
pub mod webhook;
