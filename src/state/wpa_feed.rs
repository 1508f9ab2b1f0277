//! The process's one watch of the WPAs. It fans out to sinks that know nothing of each other (the target
//! index follows it from the start), and the reconciler subscribes to it while it leads, and reads its store.
//!
//! Each had its own watch before: the API server then sent every WPA write twice (two per first pass of
//! each WPA), listed every WPA twice at start, and wpa decoded both. A subscriber that joins late (a new
//! leadership term) gets the WPAs already listed as one relist, then the live events, so it never sees a
//! partial list.

use std::sync::{Arc, Mutex};

use futures::Stream;
use kube::{
    Api, Client,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher::{self, Event},
    },
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::store::Synced;
use crate::api::WatermarkPodAutoscaler;

type Wpa = WatermarkPodAutoscaler;

/// A table kept from the WPA feed, given every event in order (from the watch's task: keep it short).
pub(crate) trait WpaSink: Send + Sync {
    fn apply(&self, event: &Event<Wpa>);
}

/// The shared WPA watch: its store (the reconciler's), and the subscriber its events go to.
pub(crate) struct WpaFeed {
    store: Store<Wpa>,
    /// Set, under `subscriber`'s lock, when the first list is in the store.
    listed: Synced,
    /// At most one: the reconciler's controller of the current leadership term.
    subscriber: Mutex<Option<mpsc::UnboundedSender<Event<Wpa>>>>,
}

/// What the store keeps of a WPA: managedFields and kubectl's last-applied copy are most of an object's
/// size, and nothing here reads them.
fn strip(w: &mut Wpa) {
    w.metadata.managed_fields = None;
    if let Some(a) = w.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

impl WpaFeed {
    /// Watches every namespace's WPAs (the webhook checks conflicts in all of them), from the API server's
    /// watch cache, until `stop`.
    pub(crate) fn start(
        client: &Client,
        sinks: Vec<Arc<dyn WpaSink>>,
        stop: CancellationToken,
    ) -> Arc<WpaFeed> {
        let events =
            watcher::watcher(Api::<Wpa>::all(client.clone()), watcher::Config::default().any_semantic())
                .default_backoff();
        WpaFeed::spawn(events, sinks, stop)
    }

    /// Feeds `events` into the store, then each sink, then the subscriber, until `stop` or their end.
    pub(crate) fn spawn<S>(events: S, sinks: Vec<Arc<dyn WpaSink>>, stop: CancellationToken) -> Arc<WpaFeed>
    where
        S: Stream<Item = Result<Event<Wpa>, watcher::Error>> + Send + 'static,
    {
        let (store, writer) = reflector::store();
        let feed = Arc::new(WpaFeed { store, listed: Synced::default(), subscriber: Mutex::new(None) });
        // The reflector updates the store before the event goes on: a subscriber's snapshot (taken under
        // the subscriber lock) holds every event it will not be sent.
        let events = events.modify(strip).reflect(writer);
        let f = feed.clone();
        super::watch::drive("WatermarkPodAutoscaler", events, stop, move |e| {
            for sink in &sinks {
                sink.apply(&e);
            }
            f.forward(e);
        });
        feed
    }

    fn forward(&self, event: Event<Wpa>) {
        let mut subscriber = self.subscriber.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(event, Event::InitDone) {
            self.listed.mark();
        }
        if let Some(tx) = subscriber.as_ref()
            && tx.send(event).is_err()
        {
            *subscriber = None;
        }
    }

    /// Set once the first list is in the store.
    pub(crate) fn synced(&self) -> &Synced {
        &self.listed
    }

    /// Every WPA, as listed and kept current by the watch.
    pub(crate) fn store(&self) -> Store<Wpa> {
        self.store.clone()
    }

    /// Waits for the first list, then returns the feed's events from now on, preceded by the WPAs it holds
    /// as one relist (`Init`, `InitApply` each, `InitDone`). A new subscriber replaces the previous one,
    /// whose stream ends.
    pub(crate) async fn subscribe(&self) -> Subscription {
        self.listed.wait().await;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut subscriber = self.subscriber.lock().unwrap_or_else(|p| p.into_inner());
        // The store's `Arc`s, each copied into its event only as the subscriber reads it: copied all at once
        // into the channel, 20,000 WPAs were ~100 MB more at the start of every leadership term.
        let snapshot = self.store.state();
        *subscriber = Some(tx);
        drop(subscriber);
        Subscription { relist: Some(Relist::Init(snapshot.into_iter())), live: rx }
    }
}

/// Where a subscriber is in the relist that starts its stream.
enum Relist {
    /// `Init` is next, then these WPAs.
    Init(std::vec::IntoIter<Arc<Wpa>>),
    /// These WPAs are next, then `InitDone`.
    Items(std::vec::IntoIter<Arc<Wpa>>),
}

/// A subscriber's events: the relist of the WPAs the store held when it subscribed, then the live events;
/// ends when a newer subscriber replaces it.
pub(crate) struct Subscription {
    relist: Option<Relist>,
    live: mpsc::UnboundedReceiver<Event<Wpa>>,
}

impl Stream for Subscription {
    type Item = Event<Wpa>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = &mut *self;
        let event = match this.relist.take() {
            Some(Relist::Init(items)) => {
                this.relist = Some(Relist::Items(items));
                Event::Init
            }
            Some(Relist::Items(mut items)) => match items.next() {
                Some(w) => {
                    let event = Event::InitApply(Wpa::clone(&w));
                    this.relist = Some(Relist::Items(items));
                    event
                }
                None => Event::InitDone,
            },
            None => return this.live.poll_recv(cx),
        };
        std::task::Poll::Ready(Some(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::target_index::TargetIndex;
    use futures::{SinkExt, StreamExt};

    fn wpa(name: &str, target: &str, generation: i64) -> Wpa {
        let mut w: Wpa = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "generation": generation,
                         "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": target}, "minReplicas": 1, "maxReplicas": 3}
        }))
        .expect("a WPA");
        w.metadata.namespace = Some("ns".into());
        w
    }

    fn names(events: &[Event<Wpa>]) -> Vec<String> {
        use kube::ResourceExt;
        let mut v: Vec<String> = events
            .iter()
            .map(|e| match e {
                Event::Init => "Init".into(),
                Event::InitDone => "InitDone".into(),
                Event::InitApply(w) => format!("InitApply {}", w.name_any()),
                Event::Apply(w) => format!("Apply {}", w.name_any()),
                Event::Delete(w) => format!("Delete {}", w.name_any()),
            })
            .collect();
        // A snapshot comes in the store's order.
        if let Some(end) = v.iter().position(|s| s == "InitDone") {
            v[1..end].sort();
        }
        v
    }

    async fn next_n(s: &mut (impl Stream<Item = Event<Wpa>> + Unpin), n: usize) -> Vec<Event<Wpa>> {
        let mut out = Vec::new();
        for _ in 0..n {
            let e = tokio::time::timeout(std::time::Duration::from_secs(5), s.next()).await;
            out.push(e.expect("an event in time").expect("the stream goes on"));
        }
        out
    }

    #[tokio::test]
    async fn a_late_subscriber_gets_the_list_then_live_events_and_the_index_follows() {
        let (mut tx, rx) = futures::channel::mpsc::unbounded::<Result<Event<Wpa>, watcher::Error>>();
        let index = TargetIndex::new();
        let stop = CancellationToken::new();
        let feed = WpaFeed::spawn(rx, vec![index.clone()], stop.clone());
        for e in [Event::Init, Event::InitApply(wpa("a", "web", 1)), Event::InitApply(wpa("b", "api", 1))] {
            tx.send(Ok(e)).await.expect("sent");
        }
        // Not listed yet: a subscriber waits for the whole list.
        let pending = tokio::spawn({
            let feed = feed.clone();
            async move { feed.subscribe().await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!pending.is_finished(), "subscribed before the first list was in");
        tx.send(Ok(Event::InitDone)).await.expect("sent");
        let mut first = pending.await.expect("subscribed");
        assert_eq!(names(&next_n(&mut first, 4).await), ["Init", "InitApply a", "InitApply b", "InitDone"]);
        assert_eq!(index.wpas_for("ns", "Deployment", "web").len(), 1, "the index follows the feed");
        assert!(
            feed.store().state().iter().all(|w| w.metadata.managed_fields.is_none()),
            "the store keeps WPAs without managedFields"
        );

        tx.send(Ok(Event::Apply(wpa("c", "web", 1)))).await.expect("sent");
        tx.send(Ok(Event::Delete(wpa("a", "web", 1)))).await.expect("sent");
        assert_eq!(names(&next_n(&mut first, 2).await), ["Apply c", "Delete a"]);

        // A second subscriber (the next leadership term) starts from the store as it is now, and the
        // first one's stream ends.
        let mut second = feed.subscribe().await;
        assert_eq!(names(&next_n(&mut second, 4).await), ["Init", "InitApply b", "InitApply c", "InitDone"]);
        tx.send(Ok(Event::Apply(wpa("b", "api", 2)))).await.expect("sent");
        assert_eq!(names(&next_n(&mut second, 1).await), ["Apply b"]);
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), first.next()).await;
        assert!(matches!(ended, Ok(None)), "the replaced subscriber's stream ends");
        assert_eq!(index.wpas_for("ns", "Deployment", "web").len(), 1, "a was deleted, c added");
        stop.cancel();
    }
}
