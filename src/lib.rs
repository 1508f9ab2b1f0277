//! `wpa`: a Watermark Pod Autoscaler for Kubernetes.
pub mod api;
pub mod engine;
pub mod quantity;
pub mod recommender_client;
pub mod selector;
