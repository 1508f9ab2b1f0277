//! The process around the engine: `wpa serve`'s wiring, the HTTP and TLS servers, the Kubernetes client,
//! watches, logs and the process's Prometheus registry.

pub(crate) mod client;
pub mod http;
pub(crate) mod logging;
pub mod registry;
pub(crate) mod serve;
pub mod tls;
pub(crate) mod watch;
pub(crate) mod wpa_feed;
