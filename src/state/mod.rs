//! The cluster as `wpa serve` sees it, from memory: the watches, the one WPA feed, the index of which
//! autoscaler governs which workload, the pod and target caches, and the extender's ReplicaSets and Nodes.
//!
//! The webhook, the reconciler and the scheduler extender each read this layer and none of them reads
//! another: the state one role needs is never hidden in another role's folder. Everything here starts with
//! [`ClusterState::start`] and reports readiness as one signal, [`ClusterState::synced`].

pub(crate) mod caches;
pub(crate) mod placement;
pub(crate) mod store;
pub mod target_index;
pub(crate) mod watch;
pub(crate) mod wpa_feed;

use std::sync::Arc;

use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, watcher},
};
use tokio_util::sync::CancellationToken;

pub use target_index::TargetIndex;

use self::{caches::Caches, placement::PlacementCaches, store::Synced, watch::Namespaces, wpa_feed::WpaFeed};

/// Which parts of the state the roles that run need, besides the autoscalers every role reads.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Needs {
    /// The pods, Deployments and StatefulSets of the watched namespaces (the reconciler, the extender).
    pub(crate) workloads: bool,
    /// The ReplicaSets' owners and the Nodes (the extender).
    pub(crate) placement: bool,
}

/// The shared state of one process.
pub(crate) struct ClusterState {
    /// Every WPA, watched once (the reconciler subscribes to it).
    pub(crate) wpas: Arc<WpaFeed>,
    /// Which WPAs and HPAs govern each workload, in every namespace (conflicts are cluster-wide).
    pub(crate) autoscalers: Arc<TargetIndex>,
    /// Pods and targets, when [`Needs::workloads`] or [`Needs::placement`].
    pub(crate) workloads: Option<Arc<Caches>>,
    /// ReplicaSets' owners and Nodes, when [`Needs::placement`].
    pub(crate) placement: Option<Arc<PlacementCaches>>,
    /// The first-list signal of every watch started.
    signals: Vec<Synced>,
}

impl ClusterState {
    /// Starts the watches `needs` asks for, in `namespaces` (the autoscalers and Nodes in all), until `stop`.
    pub(crate) fn start(
        client: &Client,
        namespaces: &Namespaces,
        needs: Needs,
        stop: CancellationToken,
    ) -> ClusterState {
        let autoscalers = TargetIndex::new();
        let hpas = watcher(Api::<HorizontalPodAutoscaler>::all(client.clone()), watcher::Config::default())
            .default_backoff();
        let index = autoscalers.clone();
        watch::drive("HorizontalPodAutoscaler", hpas, stop.clone(), move |e| index.apply_hpa(&e));
        let wpas = WpaFeed::start(client, vec![autoscalers.clone()], stop.clone());
        let workloads = (needs.workloads || needs.placement)
            .then(|| Arc::new(Caches::start(client, namespaces, stop.clone())));
        let placement = needs.placement.then(|| PlacementCaches::start(client, namespaces, stop));

        let mut signals = vec![wpas.synced().clone()];
        signals.extend(autoscalers.signals());
        signals.extend(workloads.iter().flat_map(|c| c.signals()));
        signals.extend(placement.iter().flat_map(|p| p.signals()));
        ClusterState { wpas, autoscalers, workloads, placement, signals }
    }

    /// Returns once every watch started has listed once.
    pub(crate) async fn synced(&self) {
        for signal in &self.signals {
            signal.wait().await;
        }
    }
}
