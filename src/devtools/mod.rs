//! Developer tools on a private control plane (feature `dev-tools`): `wpa demo`, `wpa bench`, and the
//! WPA-specific harness the integration tests share ([`ScalingCluster`]: a cluster ready for scaling,
//! [`WpaServe`]: `wpa serve` as a child process). The control plane itself is the `devcluster` crate.

pub(crate) mod bench;
pub(crate) mod demo;
pub mod node;
pub(crate) mod scaling;
pub(crate) mod serve_process;

pub use node::wpa_image;
pub use scaling::{ScalingCluster, wpa_yaml};
pub use serve_process::{WpaServe, webhook_configurations};
