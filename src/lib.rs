//! `wpa`: a Watermark Pod Autoscaler for Kubernetes.
pub mod api;
pub mod quantity;
