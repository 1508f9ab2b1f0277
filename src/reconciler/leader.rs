//! Leader election on a `coordination.k8s.io/v1` Lease, so that exactly one `wpa serve` replica scales.
//!
//! The algorithm is client-go's: the holder renews every retry period; a candidate takes the lease over
//! only when its record has not changed for a whole lease duration, measured on the candidate's own clock
//! (so clock skew between nodes does not matter); writes are optimistic (resourceVersion). What a crate
//! such as kube-lease-manager does not give is the renew deadline on the holder's side: leadership here
//! lapses by itself `renew_deadline` after the last successful renewal, even while the renewal call is
//! still hanging on an unreachable API server. Since `renew_deadline < lease_duration`, the old leader has
//! stopped scaling before any other replica can take over.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::gauge::ConstGauge,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Timings, as client-go names them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timings {
    /// How long a lease stays valid after its last renewal, for the other candidates.
    pub(crate) lease_duration: Duration,
    /// How long the holder keeps acting as leader after its last successful renewal.
    pub(crate) renew_deadline: Duration,
    /// Time between two attempts to acquire or renew.
    pub(crate) retry_period: Duration,
}

impl Timings {
    pub(crate) fn check(&self) -> Result<(), TimingsError> {
        if self.renew_deadline >= self.lease_duration {
            return Err(TimingsError::RenewDeadline);
        }
        if self.retry_period >= self.renew_deadline {
            return Err(TimingsError::RetryPeriod);
        }
        Ok(())
    }
}

/// Lease timings that cannot work.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TimingsError {
    #[error("--lease-renew-deadline must be shorter than --lease-duration")]
    RenewDeadline,
    #[error("--lease-retry-period must be shorter than --lease-renew-deadline")]
    RetryPeriod,
}

/// Whether this process may scale now, and a way to await a change of it.
#[derive(Clone, Debug)]
pub(crate) struct Leadership {
    /// `None`: leader election is off (always leader). Otherwise the instant leadership lapses, as the
    /// elector last set it.
    valid_until: Option<watch::Receiver<Option<Instant>>>,
}

impl Leadership {
    /// Leader election off: this process is the only writer.
    pub(crate) fn always() -> Leadership {
        Leadership { valid_until: None }
    }

    /// A replica whose lease has lapsed (error paths' unit tests).
    #[cfg(test)]
    pub(crate) fn lapsed() -> Leadership {
        Leadership { valid_until: Some(watch::Sender::new(None).subscribe()) }
    }

    pub(crate) fn is_leader(&self) -> bool {
        self.valid_until.as_ref().is_none_or(|v| still_valid(*v.borrow()))
    }

    /// Returns once this process leads.
    pub(crate) async fn acquired(&mut self) {
        let Some(valid_until) = self.valid_until.as_mut() else { return };
        // A deadline already past when set never becomes valid by waiting: wait for the next renewal.
        if valid_until.wait_for(|v| still_valid(*v)).await.is_err() {
            // The elector ended (shutdown): this process will not lead again.
            std::future::pending::<()>().await;
        }
    }

    /// Returns once this process no longer leads: the elector says so, or the deadline it set passes
    /// without a renewal (an API server that stopped answering must not leave two writers).
    pub(crate) async fn lost(&mut self) {
        let Some(valid_until) = self.valid_until.as_mut() else {
            return std::future::pending().await;
        };
        loop {
            let Some(deadline) = *valid_until.borrow_and_update() else { return };
            if !still_valid(Some(deadline)) {
                return;
            }
            tokio::select! {
                changed = valid_until.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
    }
}

/// The `wpa_reconciler_leader` gauge: 1 while this replica may scale (it holds the Lease, or leader election
/// is off), 0 otherwise; read from the leadership at each scrape, so it is never behind it. Summed over the
/// replicas it is the number of reconcilers scaling: 0 is the "no reconciler leads" alert.
#[derive(Debug)]
pub(crate) struct LeaderGauge(pub(crate) Leadership);

impl Collector for LeaderGauge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let gauge = ConstGauge::new(i64::from(self.0.is_leader()));
        let metric = encoder.encode_descriptor(
            "wpa_reconciler_leader",
            "1 while this replica holds the leader Lease (or runs without leader election) and so reconciles",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}

/// Whether a leadership deadline is set and not yet passed.
fn still_valid(valid_until: Option<Instant>) -> bool {
    valid_until.is_some_and(|t| Instant::now() < t)
}

/// One candidate for the lease.
pub(crate) struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: Timings,
    valid_until: watch::Sender<Option<Instant>>,
    /// The last lease record seen, and when (this process's clock).
    observed: Option<(String, Option<MicroTime>, Instant)>,
}

fn lease_spec(identity: &str, timings: &Timings, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(timings.lease_duration.as_secs().max(1) as i32),
        acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
        renew_time: Some(now),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

impl Elector {
    pub(crate) fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timings: Timings,
    ) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timings,
            valid_until: watch::Sender::new(None),
            observed: None,
        }
    }

    pub(crate) fn leadership(&self) -> Leadership {
        Leadership { valid_until: Some(self.valid_until.subscribe()) }
    }

    fn holding(&self) -> bool {
        still_valid(*self.valid_until.borrow())
    }

    /// One attempt; `Ok(true)` when this process holds the lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let lease = match self.api.get_opt(&self.name).await? {
            Some(l) => l,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                    spec: Some(lease_spec(&self.identity, &self.timings, None, 0)),
                };
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                };
            }
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let record = (holder.clone(), spec.renew_time.clone());
        let changed = self.observed.as_ref().is_none_or(|(h, r, _)| (h, r) != (&record.0, &record.1));
        if changed {
            self.observed = Some((record.0, record.1, Instant::now()));
        }
        let observed_at = self.observed.as_ref().map_or_else(Instant::now, |o| o.2);
        let duration = spec
            .lease_duration_seconds
            .map_or(self.timings.lease_duration, |s| Duration::from_secs(s.max(0) as u64));
        if !holder.is_empty() && holder != self.identity && observed_at.elapsed() < duration {
            return Ok(false);
        }
        let ours = holder == self.identity;
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours { spec.acquire_time.clone() } else { None };
        let mut updated = lease;
        updated.spec = Some(lease_spec(&self.identity, &self.timings, acquired, transitions));
        match self.api.replace(&self.name, &PostParams::default(), &updated).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (on shutdown), so another replica takes over at once instead of after a lease
    /// duration.
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else { return };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!(lease = %self.name, "leader lease released"),
            Err(e) => tracing::warn!(lease = %self.name, error = %e, "cannot release the leader lease"),
        }
    }

    /// Runs until `stop`, then releases the lease if held.
    pub(crate) async fn run(mut self, stop: CancellationToken) {
        let mut was_leader = false;
        loop {
            let started = Instant::now();
            // An attempt that hangs must not outlive the renew deadline.
            let attempt =
                tokio::time::timeout(self.timings.renew_deadline, self.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(true)) => {
                    self.valid_until.send_replace(Some(started + self.timings.renew_deadline));
                }
                Ok(Ok(false)) => {
                    self.valid_until.send_replace(None);
                }
                Ok(Err(e)) => {
                    tracing::warn!(lease = %self.name, error = %e, "cannot acquire or renew the leader lease")
                }
                Err(_) => {
                    tracing::warn!(lease = %self.name, "acquiring or renewing the leader lease timed out")
                }
            }
            let leader = self.holding();
            if leader != was_leader {
                if leader {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became the leader: scaling");
                } else {
                    tracing::warn!(lease = %self.name, identity = %self.identity, "not the leader any more: scaling stopped");
                }
                was_leader = leader;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(self.timings.retry_period) => {}
            }
        }
        self.valid_until.send_replace(None);
        if was_leader {
            self.release().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(5), f).await.unwrap_or_else(|_| panic!("{what} in time"))
    }

    #[tokio::test]
    async fn acquired_wakes_when_the_elector_grants_leadership() {
        let v = watch::Sender::new(None);
        let mut l = Leadership { valid_until: Some(v.subscribe()) };
        let waiter = tokio::spawn(async move { l.acquired().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "not leading yet");
        v.send_replace(Some(Instant::now() + Duration::from_secs(60)));
        within("acquired", waiter).await.expect("the waiter ran");
    }

    #[tokio::test]
    async fn lost_wakes_when_the_deadline_passes_without_a_renewal() {
        let v = watch::Sender::new(Some(Instant::now() + Duration::from_millis(100)));
        let mut l = Leadership { valid_until: Some(v.subscribe()) };
        within("lost", l.lost()).await;
        assert!(!l.is_leader());
    }

    #[tokio::test]
    async fn lost_follows_renewals_and_wakes_when_the_elector_steps_down() {
        let v = watch::Sender::new(Some(Instant::now() + Duration::from_millis(200)));
        let mut l = Leadership { valid_until: Some(v.subscribe()) };
        let waiter = tokio::spawn(async move { l.lost().await });
        v.send_replace(Some(Instant::now() + Duration::from_secs(60)));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!waiter.is_finished(), "a renewal moves the deadline");
        v.send_replace(None);
        within("lost", waiter).await.expect("the waiter ran");
    }

    #[test]
    fn timings_must_nest() {
        let t = |l, r, p| Timings {
            lease_duration: Duration::from_secs(l),
            renew_deadline: Duration::from_secs(r),
            retry_period: Duration::from_secs(p),
        };
        assert!(t(15, 10, 2).check().is_ok());
        assert!(t(10, 10, 2).check().is_err());
        assert!(t(15, 10, 10).check().is_err());
    }

    #[test]
    fn leadership_lapses_at_its_deadline() {
        assert!(Leadership::always().is_leader());
        let v = watch::Sender::new(Some(Instant::now() + Duration::from_secs(60)));
        let l = Leadership { valid_until: Some(v.subscribe()) };
        assert!(l.is_leader());
        v.send_replace(Some(Instant::now()));
        assert!(!l.is_leader(), "a deadline in the past is not leadership");
        v.send_replace(None);
        assert!(!l.is_leader());
    }

    #[test]
    fn the_leader_gauge_follows_the_leadership_at_each_scrape() {
        let v = watch::Sender::new(Some(Instant::now() + Duration::from_secs(60)));
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(LeaderGauge(Leadership { valid_until: Some(v.subscribe()) })));
        let scrape = |r: &prometheus_client::registry::Registry| {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, r).unwrap();
            out
        };
        let leading = scrape(&registry);
        assert!(
            leading.contains("# TYPE wpa_reconciler_leader gauge\nwpa_reconciler_leader 1\n"),
            "{leading}"
        );
        v.send_replace(None);
        let lapsed = scrape(&registry);
        assert!(lapsed.contains("\nwpa_reconciler_leader 0\n"), "{lapsed}");
    }
}
