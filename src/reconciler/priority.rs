//! Which passes go first when more are due than `--concurrency` can run.
//!
//! kube's controller keeps the passes it cannot start yet in a hash set and starts them in no particular
//! order, so once a first round takes longer than a sync period, the WPAs reconciled first come round again
//! and compete with those never reconciled (measured: 14,473 passes before the last of 5,000 WPAs had its
//! first). A WPA whose spec has not been passed yet (new, changed, or deleted with our finalizer) is
//! *urgent*; a periodic pass that starts while urgent ones wait yields: it returns at once, without a request
//! to the API server, and comes back when the urgent ones should be done: their number times the mean pass
//! duration over `--concurrency`, between [`MIN_YIELD`] and one sync period (so that a yield round costs
//! little, and no WPA waits longer than one more period).

use std::{collections::HashSet, sync::Mutex, time::Duration};

use kube::runtime::reflector::ObjectRef;

use crate::api::WatermarkPodAutoscaler;

/// The shortest yield: long next to a pass.
pub(crate) const MIN_YIELD: Duration = Duration::from_secs(1);
/// Weight of the newest pass in the mean pass duration.
const MEAN_WEIGHT: f64 = 0.05;

/// What a pass about to start should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Its spec has not been passed yet.
    Urgent,
    /// A periodic pass, and nothing urgent waits.
    Periodic,
    /// A periodic pass while urgent ones wait: requeue after this long.
    Yield(Duration),
}

/// The urgent WPAs not started yet, and what a yield waits for them.
#[derive(Debug)]
pub(crate) struct Priority {
    urgent: Mutex<HashSet<ObjectRef<WatermarkPodAutoscaler>>>,
    /// Seconds: a moving mean of the pass durations.
    mean_pass: Mutex<f64>,
    concurrency: u16,
    sync_period: Duration,
}

impl Priority {
    pub(crate) fn new(concurrency: u16, sync_period: Duration) -> Priority {
        Priority {
            urgent: Mutex::default(),
            mean_pass: Mutex::new(0.0),
            concurrency: concurrency.max(1),
            sync_period: sync_period.max(MIN_YIELD),
        }
    }

    /// A pass (of either kind) took `took`.
    pub(crate) fn passed(&self, took: Duration) {
        let mut mean = self.mean_pass.lock().unwrap_or_else(|e| e.into_inner());
        *mean = if *mean == 0.0 {
            took.as_secs_f64()
        } else {
            *mean + MEAN_WEIGHT * (took.as_secs_f64() - *mean)
        };
    }

    fn yield_for(&self, waiting: usize) -> Duration {
        let mean = *self.mean_pass.lock().unwrap_or_else(|e| e.into_inner());
        let drain = waiting as f64 * mean / f64::from(self.concurrency);
        Duration::from_secs_f64(drain.clamp(MIN_YIELD.as_secs_f64(), self.sync_period.as_secs_f64()))
    }

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

    /// The watch relisted (after falling behind, which many writes in a short time cause): a WPA deleted
    /// meanwhile got no delete event, so those `listed` does not hold stop being urgent. The others keep
    /// their place.
    pub(crate) fn relisted(&self, listed: impl Fn(&ObjectRef<WatermarkPodAutoscaler>) -> bool) {
        self.urgent().retain(|w| listed(w));
    }

    /// Called as a pass starts.
    pub(crate) fn admit(&self, wpa: &WatermarkPodAutoscaler) -> Admission {
        let mut urgent = self.urgent();
        if urgent.remove(&ObjectRef::from_obj(wpa)) {
            Admission::Urgent
        } else if urgent.is_empty() {
            Admission::Periodic
        } else {
            let waiting = urgent.len();
            drop(urgent);
            Admission::Yield(self.yield_for(waiting))
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

    fn priority() -> Priority {
        Priority::new(4, Duration::from_secs(15))
    }

    #[test]
    fn periodic_passes_yield_while_a_new_spec_waits() {
        let p = priority();
        let (a, b) = (wpa("n", "a"), wpa("n", "b"));
        assert_eq!(p.admit(&a), Admission::Periodic);
        p.triggered(&b);
        assert_eq!(p.admit(&a), Admission::Yield(MIN_YIELD));
        assert_eq!(p.admit(&a), Admission::Yield(MIN_YIELD), "a yield does not start the urgent pass");
        assert_eq!(p.admit(&b), Admission::Urgent);
        // b started: a runs, and b's next pass is periodic.
        assert_eq!(p.admit(&a), Admission::Periodic);
        assert_eq!(p.admit(&b), Admission::Periodic);
    }

    #[test]
    fn a_deleted_or_relisted_wpa_stops_holding_the_others() {
        let p = priority();
        let (a, b, c) = (wpa("n", "a"), wpa("n", "b"), wpa("m", "a"));
        p.triggered(&b);
        p.deleted(&b);
        assert_eq!(p.admit(&a), Admission::Periodic);
        p.triggered(&c);
        assert!(matches!(p.admit(&a), Admission::Yield(_)), "same name, another namespace: another WPA");
        // A relist that lists c keeps it urgent; one that does not (c deleted meanwhile) lets a run.
        p.relisted(|_| true);
        assert!(matches!(p.admit(&a), Admission::Yield(_)));
        p.relisted(|w| *w != ObjectRef::from_obj(&c));
        assert_eq!(p.admit(&a), Admission::Periodic);
        assert_eq!(p.admit(&c), Admission::Periodic);
    }

    #[test]
    fn a_yield_lasts_until_the_urgent_passes_should_be_done() {
        let p = priority();
        let wpas: Vec<_> = (0..400).map(|i| wpa("n", &format!("w{i}"))).collect();
        for w in &wpas {
            p.triggered(w);
        }
        let periodic = wpa("n", "periodic");
        assert_eq!(p.admit(&periodic), Admission::Yield(MIN_YIELD), "no pass measured yet");
        p.passed(Duration::from_millis(100));
        // 400 waiting, 4 at a time, 100 ms each: 10 s.
        assert_eq!(p.admit(&periodic), Admission::Yield(Duration::from_secs(10)));
        p.passed(Duration::from_millis(100));
        for w in &wpas[..380] {
            assert_eq!(p.admit(w), Admission::Urgent);
        }
        assert_eq!(p.admit(&periodic), Admission::Yield(MIN_YIELD), "20 left: half a second, so the minimum");
        for w in &wpas[..380] {
            p.triggered(w);
        }
        p.passed(Duration::from_secs(10));
        assert_eq!(p.admit(&periodic), Admission::Yield(Duration::from_secs(15)), "never beyond one period");
    }
}
