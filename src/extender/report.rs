//! What the extender tells operators: Prometheus series for every decision, and a Warning Event on the WPA
//! when its failure budget cannot be kept (at most one per WPA and level every [`EVENT_INTERVAL`], since a
//! burst asks the extender once per pod).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Infeasible, Report, policy::Level};
use crate::runtime::registry::Registry;

/// How often the same budget problem of one WPA is reported as an Event.
const EVENT_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: &'static str,
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabels {
    verb: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LevelLabels {
    level: &'static str,
}

/// The observer to hand to [`super::ExtenderState::with_observer`]: counts every decision and sends
/// infeasible budgets to a task that records Events with `client` (until `stop`).
pub(crate) fn observer(
    metrics: &Registry,
    client: Client,
    reporter: Reporter,
    stop: CancellationToken,
) -> impl Fn(&Report<'_>) + Send + Sync + 'static {
    let requests = Family::<RequestLabels, Counter>::default();
    let duration = Family::<VerbLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
        Histogram::new([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1])
    });
    let infeasible = Family::<LevelLabels, Counter>::default();
    // At 0 from the start: an alert on `increase()` sees the first infeasible placement, which a series
    // born at 1 would hide.
    for level in [Level::Node, Level::Zone, Level::Cap] {
        drop(infeasible.get_or_create(&LevelLabels { level: level.as_str() }));
    }
    metrics.with_registry(|r| {
        r.register(
            "wpa_scheduler_extender_requests",
            "Scheduler extender decisions, by verb and mode (steady, burst, or why there was no opinion)",
            requests.clone(),
        );
        r.register(
            "wpa_scheduler_extender_request_duration_seconds",
            "Time to decide a scheduler extender request, by verb",
            duration.clone(),
        );
        r.register(
            "wpa_scheduler_extender_infeasible",
            "Placements where a WPA's failure budget could not be kept, by level (node, zone, cap)",
            infeasible.clone(),
        );
    });
    let (tx, rx) = mpsc::channel::<Infeasible>(256);
    tokio::spawn(record_events(rx, client, reporter, stop));
    move |report: &Report<'_>| {
        let verb = report.verb.as_str();
        tracing::debug!(
            verb,
            namespace = report.namespace,
            pod = report.pod,
            mode = report.mode.as_str(),
            "scheduler extender decision"
        );
        requests.get_or_create(&RequestLabels { verb, mode: report.mode.as_str() }).inc();
        duration.get_or_create(&VerbLabels { verb }).observe(report.elapsed.as_secs_f64());
        for i in report.infeasible {
            infeasible.get_or_create(&LevelLabels { level: i.level.as_str() }).inc();
            // Never block the scheduler: a full queue drops the Event, the counter still counts it.
            let _ = tx.try_send(i.clone());
        }
    }
}

async fn record_events(
    mut rx: mpsc::Receiver<Infeasible>,
    client: Client,
    reporter: Reporter,
    stop: CancellationToken,
) {
    let recorder = Recorder::new(client, reporter);
    let mut last: HashMap<(String, String, &'static str), Instant> = HashMap::new();
    loop {
        let notice = tokio::select! {
            _ = stop.cancelled() => return,
            n = rx.recv() => match n { Some(n) => n, None => return },
        };
        let key = (notice.target.namespace.clone(), notice.autoscaler.clone(), notice.level.as_str());
        if last.get(&key).is_some_and(|t| t.elapsed() < EVENT_INTERVAL) {
            continue;
        }
        last.insert(key, Instant::now());
        let reference = ObjectReference {
            api_version: Some(format!("{}/{}", crate::api::GROUP, crate::api::VERSION)),
            kind: Some(crate::api::KIND.into()),
            namespace: Some(notice.target.namespace.clone()),
            name: Some(notice.autoscaler.clone()),
            ..Default::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "FailureBudgetExceeded".into(),
            note: Some(notice.message.chars().take(1024).collect()),
            action: "Schedule".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, wpa = %notice.autoscaler, "cannot publish the scheduler extender's event");
        }
    }
}
