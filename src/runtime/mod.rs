//! Services every role of the process uses: the HTTP and TLS servers, the Kubernetes client, watches,
//! logs, what commands print, signals and the process's Prometheus registry. `wpa serve`'s wiring is in `cmd/serve.rs`.

pub(crate) mod client;
pub mod http;
pub(crate) mod logging;
pub(crate) mod output;
pub mod registry;
pub(crate) mod shared_ca;
pub(crate) mod signal;
pub mod tls;
