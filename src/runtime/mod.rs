//! The process around the engine: `wpa serve`'s wiring, the HTTP and TLS servers, the Kubernetes client,
//! watches, logs and the process's Prometheus registry.

pub mod client;
pub mod http;
pub mod logging;
pub mod registry;
pub mod serve;
pub mod tls;
pub mod watch;
