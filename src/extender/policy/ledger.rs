//! Our own recent placements, which the caches may not show yet: the sibling placed a moment ago counts.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::{DEFAULT_LEDGER_TTL, Target};
use crate::extender::wire::Pod;

/// Bounds the ledger's memory whatever the request rate.
const LEDGER_MAX_ENTRIES: usize = 65_536;

#[derive(Clone, Debug)]
pub(super) struct Entry {
    at: Instant,
    /// The one node the pod was allowed.
    pub(super) node: String,
}

/// Our recent placements that the caches may not show yet, by target and pod uid. An entry goes when the
/// caches show the pod bound (then the cache counts it), when the same pod is decided again, or after
/// the TTL.
#[derive(Debug)]
pub(crate) struct Ledger {
    ttl: Duration,
    pub(super) by_target: HashMap<Target, HashMap<String, Entry>>,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::new(DEFAULT_LEDGER_TTL)
    }
}

impl Ledger {
    pub(crate) fn new(ttl: Duration) -> Ledger {
        Ledger { ttl, by_target: HashMap::new() }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_target.values().map(HashMap::len).sum()
    }

    pub(super) fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        self.by_target.retain(|_, entries| {
            entries.retain(|_, e| now.saturating_duration_since(e.at) < ttl);
            !entries.is_empty()
        });
    }

    pub(super) fn record(&mut self, target: &Target, uid: &str, node: String, now: Instant) {
        if self.len() >= LEDGER_MAX_ENTRIES {
            self.expire(now);
        }
        if self.len() >= LEDGER_MAX_ENTRIES {
            // Only a flood of distinct pods gets here; dropping the oldest under-counts one node at worst.
            let oldest = self
                .by_target
                .iter()
                .flat_map(|(t, es)| es.iter().map(move |(u, e)| (e.at, t, u)))
                .min_by_key(|(at, _, _)| *at)
                .map(|(_, t, u)| (t.clone(), u.clone()));
            if let Some((t, u)) = oldest
                && let Some(es) = self.by_target.get_mut(&t)
            {
                es.remove(&u);
            }
        }
        self.by_target.entry(target.clone()).or_default().insert(uid.to_owned(), Entry { at: now, node });
    }
}

/// The ledger key of a pod: its uid, or namespace/name for a pod without one.
pub(super) fn pod_key(pod: &Pod) -> String {
    if pod.metadata.uid.is_empty() {
        format!("{}/{}", pod.metadata.namespace, pod.metadata.name)
    } else {
        pod.metadata.uid.clone()
    }
}
