//! Which passes go first when more are due than `--concurrency` can run.
//!
//! kube's controller keeps the passes it cannot start yet in a hash set and starts them in no particular
//! order, so once a first round takes longer than a sync period, the WPAs reconciled first come round again
//! and compete with those never reconciled (measured: 14,473 passes before the last of 5,000 WPAs had its
//! first). A WPA whose spec has not been passed yet (new, changed, or deleted with our finalizer) is
//! *urgent*; a periodic pass that starts while urgent ones wait yields: it returns at once and comes back
//! after [`YIELD_DELAY`], without a request to the API server.

use std::{collections::HashSet, sync::Mutex, time::Duration};

use kube::runtime::reflector::ObjectRef;

use crate::api::WatermarkPodAutoscaler;

/// How long a yielding periodic pass waits before it is due again: short next to a 15 s period, long next
/// to a pass, so that a round of yields costs little.
pub(crate) const YIELD_DELAY: Duration = Duration::from_secs(1);

/// What a pass about to start should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Its spec has not been passed yet.
    Urgent,
    /// A periodic pass, and nothing urgent waits.
    Periodic,
    /// A periodic pass while urgent ones wait: requeue after [`YIELD_DELAY`].
    Yield,
}

/// The urgent WPAs not started yet.
#[derive(Debug, Default)]
pub(crate) struct Priority {
    urgent: Mutex<HashSet<ObjectRef<WatermarkPodAutoscaler>>>,
}

impl Priority {
    fn urgent(&self) -> std::sync::MutexGuard<'_, HashSet<ObjectRef<WatermarkPodAutoscaler>>> {
        // A panic elsewhere while holding the lock leaves a set that is still a valid set.
        self.urgent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The watch delivered a new generation (the trigger of a pass).
    pub(crate) fn triggered(&self, wpa: &WatermarkPodAutoscaler) {
        self.urgent().insert(ObjectRef::from_obj(wpa));
    }

    /// The WPA is gone: nothing will start its pass.
    pub(crate) fn deleted(&self, wpa: &WatermarkPodAutoscaler) {
        self.urgent().remove(&ObjectRef::from_obj(wpa));
    }

    /// The watch relists: a WPA deleted meanwhile would never be removed, so none stays urgent (the
    /// relist triggers again those whose generation is new).
    pub(crate) fn relisting(&self) {
        self.urgent().clear();
    }

    /// Called as a pass starts.
    pub(crate) fn admit(&self, wpa: &WatermarkPodAutoscaler) -> Admission {
        let mut urgent = self.urgent();
        if urgent.remove(&ObjectRef::from_obj(wpa)) {
            Admission::Urgent
        } else if urgent.is_empty() {
            Admission::Periodic
        } else {
            Admission::Yield
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wpa(ns: &str, name: &str) -> WatermarkPodAutoscaler {
        let mut w = WatermarkPodAutoscaler::new(name, Default::default());
        w.metadata.namespace = Some(ns.into());
        w
    }

    #[test]
    fn periodic_passes_yield_while_a_new_spec_waits() {
        let p = Priority::default();
        let (a, b) = (wpa("n", "a"), wpa("n", "b"));
        assert_eq!(p.admit(&a), Admission::Periodic);
        p.triggered(&b);
        assert_eq!(p.admit(&a), Admission::Yield);
        assert_eq!(p.admit(&a), Admission::Yield, "a yield does not start the urgent pass");
        assert_eq!(p.admit(&b), Admission::Urgent);
        // b started: a runs, and b's next pass is periodic.
        assert_eq!(p.admit(&a), Admission::Periodic);
        assert_eq!(p.admit(&b), Admission::Periodic);
    }

    #[test]
    fn a_deleted_or_relisted_wpa_stops_holding_the_others() {
        let p = Priority::default();
        let (a, b, c) = (wpa("n", "a"), wpa("n", "b"), wpa("m", "a"));
        p.triggered(&b);
        p.deleted(&b);
        assert_eq!(p.admit(&a), Admission::Periodic);
        p.triggered(&c);
        assert_eq!(p.admit(&a), Admission::Yield, "same name, another namespace: another WPA");
        p.relisting();
        assert_eq!(p.admit(&a), Admission::Periodic);
        assert_eq!(p.admit(&c), Admission::Periodic);
    }
}
