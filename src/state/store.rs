//! A table fed by one watch, and the signal of its first list.
//!
//! Every cache in this layer applies a watcher's events the same way: a re-list is buffered from `Init` to
//! `InitDone` and swapped in at once, so a reader never sees a half-listed kind, and the first `InitDone`
//! tells everyone waiting that the table can be trusted. Each cache only says how one object changes its
//! table ([`Table`]).

use std::sync::{Mutex, RwLock, RwLockReadGuard};

use kube::runtime::watcher::Event;
use tokio::sync::watch;

/// What a cache keeps of a watched kind `K`, and how one object changes it.
pub(crate) trait Table<K>: Default {
    /// The object was added or changed (or listed).
    fn upsert(&mut self, object: &K);
    /// The object was deleted.
    fn remove(&mut self, object: &K);
}

/// Set once, when a watch has listed for the first time; awaited by readiness and by the reconciler's
/// first passes instead of polling.
#[derive(Clone, Debug)]
pub(crate) struct Synced(watch::Sender<bool>);

impl Default for Synced {
    fn default() -> Self {
        Synced(watch::Sender::new(false))
    }
}

impl Synced {
    pub(crate) fn mark(&self) {
        self.0.send_if_modified(|listed| !std::mem::replace(listed, true));
    }

    pub(crate) fn is_synced(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once the first list is in.
    pub(crate) async fn wait(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`: the channel cannot close while this waits.
        let _ = rx.wait_for(|listed| *listed).await;
    }
}

/// A [`Table`] kept current by a watch's events.
#[derive(Debug)]
pub(crate) struct Watched<T> {
    table: RwLock<T>,
    relist: Mutex<Option<T>>,
    synced: Synced,
}

impl<T: Default> Default for Watched<T> {
    fn default() -> Self {
        Watched { table: RwLock::default(), relist: Mutex::default(), synced: Synced::default() }
    }
}

impl<T> Watched<T> {
    /// Applies one watch event.
    pub(crate) fn apply<K>(&self, event: &Event<K>)
    where
        T: Table<K>,
    {
        match event {
            Event::Init => *self.relist.lock().unwrap_or_else(|p| p.into_inner()) = Some(T::default()),
            Event::InitApply(o) => {
                self.relist.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(T::default).upsert(o)
            }
            Event::InitDone => {
                let fresh = self.relist.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_default();
                *self.table.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                self.synced.mark();
            }
            Event::Apply(o) => self.table.write().unwrap_or_else(|p| p.into_inner()).upsert(o),
            Event::Delete(o) => self.table.write().unwrap_or_else(|p| p.into_inner()).remove(o),
        }
    }

    /// The table as it is now (a reader holds a read lock: keep it short).
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn synced(&self) -> &Synced {
        &self.synced
    }

    /// Fills the table from a fixed list, as a watch's first list does (tests, benchmarks).
    pub(crate) fn fill<K>(&self, objects: impl IntoIterator<Item = K>)
    where
        T: Table<K>,
    {
        self.apply::<K>(&Event::Init);
        for o in objects {
            self.apply(&Event::InitApply(o));
        }
        self.apply::<K>(&Event::InitDone);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// A table of names.
    #[derive(Default)]
    struct Names(BTreeSet<&'static str>);

    impl Table<&'static str> for Names {
        fn upsert(&mut self, o: &&'static str) {
            self.0.insert(o);
        }
        fn remove(&mut self, o: &&'static str) {
            self.0.remove(o);
        }
    }

    fn names(w: &Watched<Names>) -> Vec<&'static str> {
        w.read().0.iter().copied().collect()
    }

    #[test]
    fn a_relist_is_applied_at_once_when_it_completes() {
        let w = Watched::<Names>::default();
        w.fill(["a", "b"]);
        w.apply(&Event::Init);
        w.apply(&Event::InitApply("c"));
        assert_eq!(names(&w), ["a", "b"], "the old list serves until the new one is complete");
        w.apply::<&str>(&Event::InitDone);
        assert_eq!(names(&w), ["c"]);
    }

    #[test]
    fn live_events_change_the_table() {
        let w = Watched::<Names>::default();
        w.fill(["a"]);
        w.apply(&Event::Apply("b"));
        w.apply(&Event::Delete("a"));
        assert_eq!(names(&w), ["b"]);
    }

    #[tokio::test]
    async fn the_first_list_wakes_a_waiter() {
        let w = std::sync::Arc::new(Watched::<Names>::default());
        let waiter = tokio::spawn({
            let w = w.clone();
            async move { w.synced().wait().await }
        });
        w.apply(&Event::Apply("a"));
        tokio::task::yield_now().await;
        assert!(!w.synced().is_synced(), "a live event before the list is not a list");
        w.fill(["a"]);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken in time")
            .expect("the waiter ran");
        assert!(w.synced().is_synced());
    }
}
