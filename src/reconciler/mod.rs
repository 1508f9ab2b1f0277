//! The reconciler: watermark scaling of every WatermarkPodAutoscaler, co-located with the webhook in
//! `wpa serve`.
//!
//! It only gathers the engine's inputs ([`inputs`]) and applies its outputs: the `/scale` write, the status,
//! events, Prometheus series ([`exporter`]) and logs. Each WPA is reconciled when its spec changes and every
//! `--sync-period` (upstream's 15 s); status, label and annotation changes do not trigger a pass. Pods and the
//! common targets come from watch caches ([`caches`]). Only the holder of the leader lease ([`leader`])
//! reconciles.

pub(crate) mod exporter;
pub(crate) mod inputs;
pub(crate) mod leader;
mod priority;
pub(crate) mod recommender_client;
pub(crate) mod record;
pub(crate) mod scale;
mod wpa_series;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use jiff::Timestamp;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Action},
        events::{Event as KubeEvent, EventType, Recorder, Reporter},
        predicates, watcher,
    },
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::state::caches::Caches;
use crate::state::{watch::Namespaces, wpa_feed::WpaFeed};
use crate::{
    api::{FINALIZER, WatermarkPodAutoscaler, WatermarkPodAutoscalerStatus, annotations, duration},
    engine::{self, Decision, FinalizerStep, ScaleIntent, conditions::text},
    runtime::logging::LOGS_ATTRIBUTES_FIELD,
};
use exporter::Exporter;
use inputs::{Inputs, Sources};
use leader::Leadership;
use scale::ScaleWrite;

/// Flags of the reconciler (part of `wpa serve`).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ReconcilerArgs {
    /// Namespaces whose WPAs, pods and targets are watched, comma-separated; empty for all.
    #[arg(long = "namespace", env = "WATCH_NAMESPACE", default_value = "")]
    pub(crate) namespaces: String,
    /// Time between two passes over a WPA (Go duration: 15s, 1m).
    #[arg(long, env = "WPA_SYNC_PERIOD", default_value = "15s", value_parser = duration::arg)]
    pub(crate) sync_period: Duration,
    /// WPAs reconciled at the same time.
    #[arg(long, env = "WPA_CONCURRENCY", default_value_t = 16)]
    pub(crate) concurrency: u16,
    /// A metric whose newest sample is older than this blocks scaling of its WPA ("0s": no limit).
    #[arg(long, env = "WPA_METRIC_MAX_AGE", default_value = "5m", value_parser = duration::arg_or_off)]
    pub(crate) metric_max_age: Duration,
    /// Cluster name sent to recommenders as targetRef.cluster.
    #[arg(long, env = "K8S_CLUSTER_NAME", default_value = "")]
    pub(crate) cluster_name: String,
    /// Let recommender URLs name loopback and link-local addresses (or localhost): a recommender beside
    /// the controller. Off, the webhook refuses such URLs and the reconciler never calls them, so that no WPA
    /// author can make the controller call its node's own services or the cloud metadata address.
    #[arg(long, env = "WPA_ALLOW_LOCAL_RECOMMENDERS")]
    pub(crate) allow_local_recommenders: bool,
    /// WPA labels copied onto the wpa_controller_labels_info series (space- or comma-separated keys).
    #[arg(long, env = "DD_LABELS_AS_TAGS", default_value = "")]
    pub(crate) labels_as_tags: String,
    /// Elect a leader through a Lease so that one replica scales (all replicas serve the webhook).
    #[arg(long, env = "WPA_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "WPA_LEASE_NAME", default_value = "watermarkpodautoscaler-lock")]
    pub(crate) lease_name: String,
    /// Namespace of the leader Lease [default: the namespace of the kubeconfig context or service account].
    #[arg(long, env = "POD_NAMESPACE")]
    pub(crate) lease_namespace: Option<String>,
    /// This replica's identity in the Lease [default: hostname and process id].
    #[arg(long, env = "POD_NAME")]
    pub(crate) identity: Option<String>,
    /// How long other replicas wait after the leader's last renewal before taking over.
    #[arg(long, env = "WPA_LEASE_DURATION", default_value = "15s", value_parser = duration::arg)]
    pub(crate) lease_duration: Duration,
    /// How long the leader keeps scaling without a successful renewal.
    #[arg(long, env = "WPA_LEASE_RENEW_DEADLINE", default_value = "10s", value_parser = duration::arg)]
    pub(crate) lease_renew_deadline: Duration,
    /// Time between two attempts to acquire or renew the Lease.
    #[arg(long, env = "WPA_LEASE_RETRY_PERIOD", default_value = "2s", value_parser = duration::arg)]
    pub(crate) lease_retry_period: Duration,
}

/// Errors of a reconcile pass that the engine does not turn into a condition (API writes).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReconcileError {
    #[error("cannot update the finalizers of the WPA: {0}")]
    Finalizer(#[source] kube::Error),
    #[error("cannot write the WPA status: {0}")]
    Status(#[source] kube::Error),
}

/// What every pass shares.
pub(crate) struct Context {
    pub(crate) sources: Sources,
    pub(crate) exporter: Arc<Exporter>,
    pub(crate) reporter: Reporter,
    pub(crate) leadership: Leadership,
    pub(crate) sync_period: Duration,
    /// The statuses this replica wrote, until the watch delivers them.
    written: record::Written,
    /// New specs first (priority.rs).
    priority: priority::Priority,
    client: Client,
}

/// The reporting controller of the events this reconciler publishes (upstream's name).
pub(crate) const REPORTING_CONTROLLER: &str = "wpa_controller";

/// An engine event as published (the API server caps an event's note at 1 KiB).
pub(crate) fn kube_event(e: &engine::Event) -> KubeEvent {
    KubeEvent {
        type_: if e.warning { EventType::Warning } else { EventType::Normal },
        reason: e.reason.into(),
        note: Some(e.message.chars().take(1024).collect()),
        action: e.action.into(),
        secondary: None,
    }
}

/// The log span of a WPA's pass: its name, namespace and logs-attributes pairs on every line.
fn wpa_span(wpa: &WatermarkPodAutoscaler) -> tracing::Span {
    let attributes = wpa.annotations().get(annotations::LOGS_ATTRIBUTES).map(String::as_str).unwrap_or("{}");
    tracing::info_span!(
        "reconcile",
        wpa_name = %wpa.name_any(),
        wpa_namespace = %wpa.namespace().unwrap_or_default(),
        { LOGS_ATTRIBUTES_FIELD } = attributes,
    )
}

impl Context {
    fn api(&self, namespace: &str) -> Api<WatermarkPodAutoscaler> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Adds or removes our finalizer with a JSON Patch guarded by a `test` of the list it read.
    async fn patch_finalizers(&self, wpa: &WatermarkPodAutoscaler, add: bool) -> Result<(), kube::Error> {
        let ns = wpa.namespace().unwrap_or_default();
        let current = wpa.finalizers().to_vec();
        let ops = if add {
            if current.is_empty() {
                serde_json::json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": null},
                    {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
                ])
            } else {
                serde_json::json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": current},
                    {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
                ])
            }
        } else {
            let Some(i) = current.iter().position(|f| f == FINALIZER) else { return Ok(()) };
            serde_json::json!([
                {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": FINALIZER},
                {"op": "remove", "path": format!("/metadata/finalizers/{i}")},
            ])
        };
        let patch: json_patch::Patch = serde_json::from_value(ops).map_err(kube::Error::SerdeError)?;
        match self.api(&ns).patch(&wpa.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch)).await {
            Ok(_) => Ok(()),
            // Deleted meanwhile: nothing left to finalize.
            Err(kube::Error::Api(s)) if s.code == 404 && !add => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn publish_events(&self, wpa: &WatermarkPodAutoscaler, events: &[engine::Event]) {
        // A replica that lost the lease in the middle of a pass writes nothing more, not even events.
        if events.is_empty() || !self.leadership.is_leader() {
            return;
        }
        let reference = wpa.object_ref(&());
        // A recorder per pass: kube's folds events by reason alone (not message) into one series, which
        // would show "New size: 3" for every later scale. The engine already emits on transitions only.
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        for e in events {
            if let Err(err) = recorder.publish(&kube_event(e), &reference).await {
                tracing::warn!(reason = %e.reason, error = %err, "cannot publish an event");
            }
        }
    }

    /// One pass: gather, decide; for a scale, record it in the status and write `/scale` (deciding once more
    /// on fresh data after a conflict); then the status, events and series.
    async fn pass(&self, wpa: &WatermarkPodAutoscaler) -> Result<Action, ReconcileError> {
        let step = engine::finalizer_step(wpa);
        // A replica that lost the lease in the middle of a pass writes nothing, finalizers included: the new
        // leader adds or removes them on its own pass.
        if matches!(step, FinalizerStep::Finalize | FinalizerStep::Add) && !self.leadership.is_leader() {
            tracing::info!("not the leader any more: the finalizer is left to the new leader");
            return Ok(Action::await_change());
        }
        match step {
            FinalizerStep::Finalize => {
                self.forget(wpa);
                self.patch_finalizers(wpa, false).await.map_err(ReconcileError::Finalizer)?;
                tracing::info!("Successfully finalized WatermarkPodAutoscaler");
                return Ok(Action::await_change());
            }
            FinalizerStep::Skip => {
                self.forget(wpa);
                return Ok(Action::await_change());
            }
            FinalizerStep::Add => {
                tracing::info!("Adding Finalizer for the WatermarkPodAutoscaler");
                self.patch_finalizers(wpa, true).await.map_err(ReconcileError::Finalizer)?;
            }
            FinalizerStep::Proceed => {}
        }

        let current = self.written.current(wpa);
        let wpa = current.as_ref();
        let plan = engine::Plan::new(wpa);
        let steps = PassSteps { ctx: self, wpa };
        let (inputs, decision) = steps.decide(&plan, false).await;
        let carried = match record::carry_out(&steps, wpa, &plan, inputs, decision).await? {
            record::Ending::Done(carried) => carried,
            record::Ending::Yielded => return Ok(Action::requeue(self.sync_period)),
            record::Ending::ResultFailed(carried, e) => {
                self.exporter.record(wpa, &carried.decision, &carried.outcome);
                return Err(e);
            }
        };
        let (decision, outcome) = (&carried.decision, &carried.outcome);
        if let Some(to) = outcome.scaled_to {
            tracing::info!(replicas = to, reason = %decision.reason, "Successful rescale");
        } else if decision.rescale && decision.spec.dry_run.unwrap_or(false) {
            tracing::info!(replicas = decision.desired, reason = %decision.reason, "DryRun mode: scaling change was inhibited");
        }
        self.publish_events(wpa, &outcome.events).await;
        self.exporter.record(wpa, decision, outcome);
        let result = outcome.action.controller_result(self.sync_period);
        Ok(if result.requeue || !result.requeue_after.is_zero() {
            Action::requeue(result.requeue_after)
        } else {
            Action::await_change()
        })
    }

    fn forget(&self, wpa: &WatermarkPodAutoscaler) {
        let (namespace, name) = (wpa.namespace().unwrap_or_default(), wpa.name_any());
        self.exporter.forget(&namespace, &name);
        self.sources.recommenders.remove(&format!("{namespace}/{name}"));
        if let Some(uid) = wpa.uid() {
            self.written.forget(&uid);
        }
    }
}

/// One pass's writes, for the record protocol (record.rs).
struct PassSteps<'c> {
    ctx: &'c Context,
    wpa: &'c WatermarkPodAutoscaler,
}

impl PassSteps<'_> {
    /// Gathers the inputs `plan` asks for (`fresh`: the target read from the API, past the cache) and decides.
    async fn decide<'p>(&self, plan: &'p engine::Plan<'_>, fresh: bool) -> (Inputs, Decision<'p>) {
        let now = Timestamp::now();
        let inputs = self.ctx.sources.gather(plan, fresh, now).await;
        let decision = engine::decide(plan, &inputs.observation(), now);
        log_decision(&inputs, &decision);
        (inputs, decision)
    }
}

impl record::Steps for PassSteps<'_> {
    type Seen = Inputs;

    async fn decide_again<'p>(&self, plan: &'p engine::Plan<'_>) -> (Inputs, Decision<'p>) {
        self.decide(plan, true).await
    }

    /// Writes the whole status if the stored `lastScaleTime` is still `expected` (record.rs, step 4) and this
    /// replica still leads; remembers it. `Ok(false)`: not written, and the pass must stop (another writer, or
    /// the lease was lost); the next pass decides on fresh data. A failure is counted, logged by the caller's
    /// error policy, and reported on the WPA as an Event when the API takes one.
    async fn write_status(
        &self,
        expected: &record::Expected,
        status: &WatermarkPodAutoscalerStatus,
        phase: record::Phase,
    ) -> Result<bool, ReconcileError> {
        let (ctx, wpa, phase) = (self.ctx, self.wpa, phase.as_str());
        if !ctx.leadership.is_leader() {
            tracing::info!(phase, "not the leader any more: the status is left to the new leader");
            return Ok(false);
        }
        let (ns, name) = (wpa.namespace().unwrap_or_default(), wpa.name_any());
        let patch = record::status_patch(expected, status);
        match ctx.api(&ns).patch_status(&name, &PatchParams::default(), &Patch::<()>::Json(patch)).await {
            Ok(_) => {
                ctx.written.remember(wpa, status);
                Ok(true)
            }
            // The `test` failed: someone else (a new leader, a user) wrote lastScaleTime since this pass read
            // it. Nothing of this pass may be written over it.
            Err(kube::Error::Api(s)) if s.code == 422 => {
                ctx.exporter.status_write_failed(phase);
                tracing::warn!(
                    phase,
                    "the WPA's lastScaleTime changed since this pass read it (another replica or a user wrote it): nothing written; the next pass decides on fresh data"
                );
                Ok(false)
            }
            Err(e) => {
                ctx.exporter.status_write_failed(phase);
                let message = match phase {
                    "record" => format!(
                        "the scale was not made, because its record could not be written to the WPA status: {e}"
                    ),
                    _ => format!("the WPA status could not be written: {e}"),
                };
                let event = engine::Event::warning(text::FAILED_UPDATE_STATUS, message);
                ctx.publish_events(wpa, std::slice::from_ref(&event)).await;
                Err(ReconcileError::Status(e))
            }
        }
    }

    async fn read_back(&self, inputs: &Inputs) -> Result<i32, String> {
        let Some(target) = &inputs.resolved else { return Err("the target was not resolved".into()) };
        scale::read(&self.ctx.client, target).await
    }

    async fn write_scale(&self, inputs: &Inputs, intent: ScaleIntent) -> ScaleWrite {
        let (Some(target), Ok(scale)) = (&inputs.resolved, &inputs.target) else {
            return ScaleWrite::Refused("the target was not resolved".into());
        };
        // A replica that lost the lease in the middle of a pass must not write.
        if !self.ctx.leadership.is_leader() {
            return ScaleWrite::Refused("this replica is not the leader any more".into());
        }
        if intent.to == scale.spec_replicas {
            // Upstream's first pass "scales" to the current count (no lastScaleTime yet): the write would
            // change nothing, so it is skipped; the status and event record it as upstream does.
            return ScaleWrite::Written;
        }
        scale::write(&self.ctx.client, target, ScaleIntent { from: scale.spec_replicas, to: intent.to }).await
    }
}

fn log_decision(inputs: &Inputs, d: &Decision<'_>) {
    match &inputs.target {
        Ok(s) => tracing::debug!(
            spec_replicas = s.spec_replicas,
            status_replicas = s.status_replicas,
            selector = %s.selector,
            desired = d.desired,
            rescale = d.rescale,
            reason = %d.reason,
            "Target deploy"
        ),
        Err(e) => tracing::warn!(error = %e, "Error during reconcileWPA"),
    }
    if let Some(Err(e)) = &d.combined {
        tracing::warn!(error = %e.message, "Failed to compute desired number of replicas based on listed metrics.");
    }
    if let Some(msg) = &d.invalid {
        tracing::warn!(error = %msg, "Got an invalid WPA spec");
    }
}

async fn reconcile(wpa: Arc<WatermarkPodAutoscaler>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if let priority::Admission::Yield(after) = ctx.priority.admit(&wpa) {
        ctx.exporter.yields.inc();
        return Ok(Action::requeue(after));
    }
    let started = Instant::now();
    let result = ctx.pass(&wpa).instrument(wpa_span(&wpa)).await;
    let took = started.elapsed();
    ctx.priority.passed(took);
    let label = vec![("result".to_string(), if result.is_ok() { "ok" } else { "error" }.to_string())];
    ctx.exporter.reconciles.get_or_create(&label).inc();
    ctx.exporter.reconcile_duration.get_or_create(&label).observe(took.as_secs_f64());
    result
}

/// API errors (finalizer and status writes): retried after a short backoff, as controller-runtime does.
fn error_policy(wpa: Arc<WatermarkPodAutoscaler>, error: &ReconcileError, _ctx: Arc<Context>) -> Action {
    let _span = wpa_span(&wpa).entered();
    tracing::warn!(error = %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

/// The passes' trigger, on the process's WPA feed: spec changes only (the generation), plus deletions (the
/// finalizer sets `deletionTimestamp`, which bumps the generation), in the namespaces watched.
async fn run_controller(
    feed: Arc<WpaFeed>,
    namespaces: Namespaces,
    ctx: Arc<Context>,
    concurrency: u16,
    stop: CancellationToken,
) {
    let reader = feed.store();
    let (seen, relisted, triggered) = (ctx.clone(), ctx.clone(), ctx.clone());
    let listed = reader.clone();
    let trigger = feed
        .subscribe()
        .await
        .filter(move |e| std::future::ready(namespaces.keeps(e)))
        .map(move |e| {
            match &e {
                watcher::Event::Delete(w) => {
                    seen.exporter.forget(&w.namespace().unwrap_or_default(), &w.name_any());
                    seen.priority.deleted(w);
                }
                // The feed's store already holds exactly what the relist listed.
                watcher::Event::InitDone => relisted.priority.relisted(|w| listed.get(w).is_some()),
                watcher::Event::Apply(w) | watcher::Event::InitApply(w) => seen.written.seen(w),
                watcher::Event::Init => {}
            }
            Ok::<_, watcher::Error>(e)
        })
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default())
        .map(move |w| {
            if let Ok(w) = &w {
                triggered.priority.triggered(w);
            }
            w
        });
    Controller::for_stream(trigger, reader)
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await
}

/// Starts the leader election and the controller on `caches`; runs until `stop`, then stops scaling,
/// releases the Lease (so another replica takes over at once) and returns. Returns that task: it ends
/// early only if the reconciler died (a bug), which `/healthz` reports.
pub(crate) async fn start(
    client: Client,
    args: &ReconcilerArgs,
    feed: Arc<WpaFeed>,
    caches: Arc<Caches>,
    autoscalers: Arc<crate::state::TargetIndex>,
    registry: &crate::runtime::registry::Registry,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, leader::TimingsError> {
    let namespaces = Namespaces::parse(&args.namespaces);
    let tags: Vec<String> = args
        .labels_as_tags
        .split([' ', ',', '\t', '\n'])
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let exporter = registry.with_registry(|r| Exporter::new(r, tags));
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let (leadership, elector) = if args.leader_elect {
        let timings = leader::Timings {
            lease_duration: args.lease_duration,
            renew_deadline: args.lease_renew_deadline,
            retry_period: args.lease_retry_period,
        };
        timings.check()?;
        let lease_ns = args.lease_namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
        let elector = leader::Elector::new(client.clone(), &lease_ns, &args.lease_name, &identity, timings);
        let leadership = elector.leadership();
        let task = tokio::spawn(elector.run(stop.clone()));
        tracing::info!(lease = %args.lease_name, namespace = %lease_ns, identity = %identity, "leader election on");
        (leadership, Some(task))
    } else {
        (Leadership::always(), None)
    };
    registry.with_registry(|r| r.register_collector(Box::new(leader::LeaderGauge(leadership.clone()))));
    let ctx = Arc::new(Context {
        sources: Sources {
            client: client.clone(),
            caches: Some(caches.clone()),
            autoscalers: Some(autoscalers),
            discovery: Default::default(),
            recommenders: inputs::RecommenderClients::new(if args.allow_local_recommenders {
                recommender_client::Reach::Any
            } else {
                recommender_client::Reach::Remote
            }),
            http: Some(exporter.clone()),
            metric_max_age: duration::limit(args.metric_max_age),
            cluster_name: args.cluster_name.clone(),
        },
        exporter,
        reporter: Reporter { controller: REPORTING_CONTROLLER.into(), instance: Some(identity) },
        leadership: leadership.clone(),
        sync_period: args.sync_period,
        written: record::Written::new(feed.store()),
        priority: priority::Priority::new(args.concurrency, args.sync_period),
        client: client.clone(),
    });
    let concurrency = args.concurrency.max(1);
    tracing::info!(namespaces = %namespaces, sync_period = ?args.sync_period, concurrency, "reconciler starting");
    let sync_period = args.sync_period;
    let supervisor = tokio::spawn(async move {
        supervise(feed, namespaces, ctx, caches, leadership, concurrency, sync_period, stop).await;
        // The elector saw `stop` too: await its release of the Lease.
        if let Some(elector) = elector
            && let Err(e) = elector.await
        {
            tracing::warn!(error = %e, "the leader election task failed");
        }
    });
    Ok(supervisor)
}

/// Runs the controller while this replica leads, until `stop`.
#[allow(clippy::too_many_arguments)]
async fn supervise(
    feed: Arc<WpaFeed>,
    namespaces: Namespaces,
    ctx: Arc<Context>,
    caches: Arc<Caches>,
    mut leadership: Leadership,
    concurrency: u16,
    sync_period: Duration,
    stop: CancellationToken,
) {
    // As controller-runtime waits for its informers: a pass before the pod and target caches have listed
    // asks the API server instead (a LIST of the namespace's pods, read from etcd, per WPA), just when the
    // start's lists keep it busiest. Not beyond one period, so that a cache that cannot list (RBAC) does not
    // hold every WPA back.
    tokio::select! {
        _ = stop.cancelled() => return,
        listed = tokio::time::timeout(sync_period, caches.listed()) => if listed.is_err() {
            tracing::warn!(
                "the pod and target caches have not listed within one sync period; passes read them from the API meanwhile"
            );
        }
    }
    // The controller runs while this replica leads, and stops the moment it does not.
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            () = leadership.acquired() => {}
        }
        let term = stop.child_token();
        let mut controller = tokio::spawn(run_controller(
            feed.clone(),
            namespaces.clone(),
            ctx.clone(),
            concurrency,
            term.clone(),
        ));
        if let Some(result) = lead_term(&mut controller, &term, &stop, &mut leadership).await {
            // The controller ended by itself (its feed closed, or a panic): started again below.
            match result {
                Err(e) => tracing::error!(error = %e, "the controller stopped; starting it again"),
                Ok(()) => tracing::warn!("the controller ended; starting it again"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        if stop.is_cancelled() {
            return;
        }
        // The new leader exports the WPAs' series now (a controller that merely ended keeps them).
        if !leadership.is_leader() {
            ctx.exporter.forget_all();
        }
    }
}

/// One term of leadership: waits until the controller ends by itself (its result returned), `stop` is
/// cancelled or leadership is lost (`None`); then cancels `term` and, unless the controller had ended, lets its
/// in-flight passes finish (they check leadership before writing), aborting it if they hang. A handle that has
/// completed is never polled again: tokio panics on that ("JoinHandle polled after completion").
async fn lead_term(
    controller: &mut tokio::task::JoinHandle<()>,
    term: &CancellationToken,
    stop: &CancellationToken,
    leadership: &mut Leadership,
) -> Option<Result<(), tokio::task::JoinError>> {
    let ended = tokio::select! {
        _ = stop.cancelled() => None,
        result = &mut *controller => Some(result),
        () = leadership.lost() => None,
    };
    term.cancel();
    if ended.is_none() && tokio::time::timeout(Duration::from_secs(5), &mut *controller).await.is_err() {
        controller.abort();
    }
    ended
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A context whose API answers every request 500 and counts them.
    fn context(leadership: Leadership, requests: Arc<AtomicUsize>) -> Context {
        let svc = tower::service_fn(move |_req: http::Request<kube::client::Body>| {
            requests.fetch_add(1, Ordering::SeqCst);
            async move {
                http::Response::builder()
                    .status(500)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(b"{}".to_vec()))
            }
        });
        let client = Client::new(svc, "default");
        let (store, _writer) = kube::runtime::reflector::store();
        Context {
            sources: Sources::read_only(client.clone(), None, String::new()),
            exporter: Exporter::new(&mut prometheus_client::registry::Registry::default(), Vec::new()),
            reporter: Reporter { controller: REPORTING_CONTROLLER.into(), instance: None },
            leadership,
            sync_period: Duration::from_secs(15),
            written: record::Written::new(store),
            priority: priority::Priority::new(1, Duration::from_secs(15)),
            client,
        }
    }

    fn wpa(finalizers: Option<Vec<String>>, deleted: bool) -> WatermarkPodAutoscaler {
        let mut wpa = WatermarkPodAutoscaler::new("web", Default::default());
        wpa.metadata.namespace = Some("ns".into());
        wpa.metadata.finalizers = finalizers;
        if deleted {
            wpa.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH));
        }
        wpa
    }

    #[tokio::test]
    async fn a_replica_without_the_lease_does_not_add_the_finalizer() {
        let requests = Arc::new(AtomicUsize::new(0));
        let ctx = context(Leadership::lapsed(), requests.clone());
        let action = ctx.pass(&wpa(None, false)).await.expect("nothing to fail");
        assert_eq!(action, Action::await_change());
        assert_eq!(requests.load(Ordering::SeqCst), 0, "no request sent");
    }

    #[tokio::test]
    async fn a_replica_without_the_lease_does_not_remove_the_finalizer() {
        let requests = Arc::new(AtomicUsize::new(0));
        let ctx = context(Leadership::lapsed(), requests.clone());
        let action = ctx.pass(&wpa(Some(vec![FINALIZER.into()]), true)).await.expect("nothing to fail");
        assert_eq!(action, Action::await_change());
        assert_eq!(requests.load(Ordering::SeqCst), 0, "no request sent");
    }

    #[tokio::test]
    async fn the_leader_adds_the_finalizer() {
        let requests = Arc::new(AtomicUsize::new(0));
        let ctx = context(Leadership::always(), requests.clone());
        ctx.pass(&wpa(None, false)).await.expect_err("the API answers 500");
        assert_eq!(requests.load(Ordering::SeqCst), 1, "the finalizer's patch");
    }

    /// SIGTERM racing a controller that has just ended: whichever the select sees first, the term ends
    /// without polling the finished handle again (which panics).
    #[tokio::test]
    async fn a_term_ending_as_the_controller_ends_never_polls_its_finished_handle() {
        let stop = CancellationToken::new();
        stop.cancel();
        let mut leadership = Leadership::always();
        let mut ended_by_itself = 0;
        for _ in 0..64 {
            let mut controller = tokio::spawn(async {});
            tokio::task::yield_now().await;
            let term = stop.child_token();
            if lead_term(&mut controller, &term, &stop, &mut leadership).await.is_some() {
                ended_by_itself += 1;
            }
            assert!(term.is_cancelled());
        }
        // Both branches were taken: the race is really exercised.
        assert!(0 < ended_by_itself && ended_by_itself < 64, "{ended_by_itself} of 64 ended by themselves");
    }

    #[tokio::test]
    async fn a_term_lets_a_controller_that_has_not_ended_finish() {
        let stop = CancellationToken::new();
        let term = stop.child_token();
        let finished = Arc::new(AtomicUsize::new(0));
        let mut controller = tokio::spawn({
            let (term, finished) = (term.clone(), finished.clone());
            async move {
                term.cancelled().await;
                finished.fetch_add(1, Ordering::SeqCst);
            }
        });
        stop.cancel();
        let ended = lead_term(&mut controller, &term, &stop, &mut Leadership::always()).await;
        assert!(ended.is_none(), "stopped, not ended by itself");
        assert_eq!(finished.load(Ordering::SeqCst), 1, "its in-flight work finished");
    }
}
