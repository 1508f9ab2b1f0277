//! A pass's decision in plain words, for people watching a workload scale: `wpa demo`'s status column and
//! `wpa simulate`'s table. Built only from what [`decide`](super::decide) returned; upstream's words stay
//! in [`Decision::reason`] and in the conditions.

use std::fmt;

/// Why a metric above its band proposes no change when its proposal [overflowed](super::MetricResult::overflowed),
/// in the words every reader prints.
pub(crate) const PROPOSAL_OVERFLOWED: &str = "the proposal is past a 32-bit count, which upstream's arithmetic \
     turns into the current one (check the metric's value and unit)";

use super::{
    Decision, Forced,
    fallback::FallbackState,
    gate::Blocked,
    limits::{Bound, Limit},
};

/// What a pass did, or what it is waiting for.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PlainStatus {
    /// The spec is invalid: nothing happens until it is edited.
    Invalid(String),
    /// No proposal: the target, its pods, a metric or the lifecycle monitor stopped the pass (the engine's
    /// words).
    Stopped(String),
    /// The target is at 0 replicas: the WPA leaves it alone until something else scales it up.
    Off,
    /// Upstream's first pass writes the count it found (there is no lastScaleTime yet): no change.
    FirstPass {
        replicas: i32,
    },
    Scaling {
        from: i32,
        to: i32,
        dry_run: bool,
        cause: Cause,
    },
    /// A change the metrics ask for, held back by a forbidden window or a delay; `capped` is the limit
    /// the change will have (not shown while waiting: the count may move before it is made).
    Waiting {
        wait: Wait,
        from: i32,
        to: i32,
        capped: Option<Cap>,
    },
    Holding(Hold),
    /// Every metric fails (the engine's words in `reason`); unless one answers, the fallback keeps at least
    /// `replicas` in `seconds_left`.
    FallbackPending {
        reason: String,
        seconds_left: f64,
        replicas: i32,
        /// Whether its start would raise the count (not when the target already has `replicas`, is at
        /// maxReplicas, or its scale-up limit allows no step).
        raises: bool,
    },
    /// Every metric has failed for longer than `fallback-after`: the fallback sets the count, up only.
    Fallback {
        from: i32,
        to: i32,
        replicas: i32,
        dry_run: bool,
        wait: Option<Wait>,
    },
}

/// Why a pass scales.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cause {
    /// The metrics are outside their band; the proposal was clamped by `capped`, if anything.
    Metrics { capped: Option<Cap> },
    /// Every metric is within its band and `convergeTowardsWatermark` moves one step.
    Converging,
    /// A correction that ignores windows and delays.
    Forced(Forced),
}

/// A proposal held back by a limit.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Cap {
    pub bound: Bound,
    /// The metrics' combined proposal, before the limit.
    pub proposal: i32,
    /// The setting that bound: the factor (%), maxReplicas, minReplicas, or the ready count.
    pub setting: String,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Wait {
    /// The forbidden window after the last scale (of either direction).
    Window { upscale: bool, seconds_left: f64 },
    /// The delay above the high or below the low watermark; 0 left when it has not started (the value has
    /// just left the band).
    Delay { upscale: bool, seconds_left: i64 },
}

/// Why a pass keeps the count.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Hold {
    /// Every metric is within its band.
    WithinBand,
    /// The metrics ask for a change that a limit cancels (already at maxReplicas, ...).
    Capped(Cap),
    /// Outside the band, but the metrics' count is the current one (their ready pods ask for no more, or
    /// the proposal `overflowed` a 32-bit count, which upstream's arithmetic turns into the current count).
    Asks { above: bool, overflowed: bool },
}

impl PlainStatus {
    /// The status of decision `d` for a target at `current` replicas (its `spec.replicas`).
    pub(crate) fn of(d: &Decision<'_>, current: i32) -> PlainStatus {
        if let Some(msg) = &d.invalid {
            return PlainStatus::Invalid(msg.clone());
        }
        if d.forced == Some(Forced::TargetAtZero) {
            return PlainStatus::Off;
        }
        match d.fallback {
            Some(FallbackState::Pending { due, replicas, .. }) => {
                return PlainStatus::FallbackPending {
                    reason: d.reason.clone(),
                    seconds_left: due.duration_since(d.now).as_secs_f64(),
                    replicas,
                    raises: current > 0 && super::pass::fallback_step(d.spec, current, replicas).0 > current,
                };
            }
            Some(FallbackState::Active { replicas, .. }) => {
                let wait = match d.gate.as_ref().and_then(|g| g.blocked.as_ref()) {
                    Some(Blocked::Window { upscale, seconds_left }) => {
                        Some(Wait::Window { upscale: *upscale, seconds_left: *seconds_left })
                    }
                    _ => None,
                };
                let to = if d.rescale { d.desired } else { d.normalized.map_or(current, |n| n.replicas) };
                let dry_run = d.spec.dry_run.unwrap_or(false);
                return PlainStatus::Fallback { from: current, to: to.max(current), replicas, dry_run, wait };
            }
            Some(FallbackState::Off) | None => {}
        }
        let Some(Ok(combined)) = &d.combined else { return PlainStatus::Stopped(d.reason.clone()) };
        let spec = &d.spec;
        let cap = d.normalized.filter(|n| n.clamped).and_then(|n| n.bound).map(|bound| Cap {
            bound,
            proposal: combined.replicas,
            setting: match bound {
                Bound::UpRate => spec.scale_up_limit_factor.as_ref().map_or("0".into(), |q| q.to_string()),
                Bound::DownRate => {
                    spec.scale_down_limit_factor.as_ref().map_or("0".into(), |q| q.to_string())
                }
                Bound::MaxReplicas => spec.max_replicas.unwrap_or(0).to_string(),
                Bound::MinReplicas => spec.min_replicas.unwrap_or(1).to_string(),
                Bound::ReadyPods => combined.ready_replicas.to_string(),
            },
        });
        let stable = !combined.is_above && !combined.is_below;
        if d.rescale {
            if d.desired == current {
                return PlainStatus::FirstPass { replicas: current };
            }
            let cause = match d.forced {
                Some(f) => Cause::Forced(f),
                None if stable => Cause::Converging,
                None => Cause::Metrics { capped: cap },
            };
            let dry_run = spec.dry_run.unwrap_or(false);
            return PlainStatus::Scaling { from: current, to: d.desired, dry_run, cause };
        }
        let to = d.normalized.map_or(current, |n| n.replicas);
        let wait = match d.gate.as_ref().and_then(|g| g.blocked.as_ref()) {
            Some(Blocked::Window { upscale, seconds_left }) => {
                Some(Wait::Window { upscale: *upscale, seconds_left: *seconds_left })
            }
            Some(Blocked::Delay { upscale, seconds_left }) => {
                Some(Wait::Delay { upscale: *upscale, seconds_left: *seconds_left })
            }
            Some(Blocked::Unchanged) | None => None,
        };
        match (wait, cap) {
            (Some(wait), capped) => PlainStatus::Waiting { wait, from: current, to, capped },
            (None, _) if stable => PlainStatus::Holding(Hold::WithinBand),
            (None, Some(cap)) => PlainStatus::Holding(Hold::Capped(cap)),
            (None, None) => {
                let overflowed = d.metrics.iter().any(|m| matches!(&m.result, Some(Ok(r)) if r.overflowed));
                PlainStatus::Holding(Hold::Asks { above: combined.is_above, overflowed })
            }
        }
    }

    /// Whether two statuses tell the same thing, countdowns and the metrics' moving numbers aside (a scale
    /// is the same when it goes from and to the same counts): a display prints a status again only when
    /// this changes (or the count does).
    pub(crate) fn same_kind(&self, other: &PlainStatus) -> bool {
        use PlainStatus::*;
        match (self, other) {
            (Invalid(a), Invalid(b)) | (Stopped(a), Stopped(b)) => a == b,
            (FallbackPending { reason: a, .. }, FallbackPending { reason: b, .. }) => a == b,
            (Fallback { from: a, to: x, .. }, Fallback { from: b, to: y, .. }) => (a, x) == (b, y),
            (Off, Off) | (FirstPass { .. }, FirstPass { .. }) => true,
            // The same scale, decided again before it is written.
            (Scaling { from: a, to: x, .. }, Scaling { from: b, to: y, .. }) => (a, x) == (b, y),
            (Waiting { wait: a, .. }, Waiting { wait: b, .. }) => match (a, b) {
                (Wait::Window { upscale: x, .. }, Wait::Window { upscale: y, .. })
                | (Wait::Delay { upscale: x, .. }, Wait::Delay { upscale: y, .. }) => x == y,
                _ => false,
            },
            (Holding(a), Holding(b)) => match (a, b) {
                (Hold::WithinBand, Hold::WithinBand) => true,
                (Hold::Capped(x), Hold::Capped(y)) => x.bound == y.bound,
                (Hold::Asks { above: x, overflowed: a }, Hold::Asks { above: y, overflowed: b }) => {
                    (x, a) == (y, b)
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// The scale a wait ends in, once made: to tell a scale that happened between two looks at a live WPA.
    #[cfg(feature = "dev-tools")]
    pub(crate) fn scale_after_wait(&self, dry_run: bool) -> Option<PlainStatus> {
        match self {
            PlainStatus::Waiting { from, to, capped, .. } => Some(PlainStatus::Scaling {
                from: *from,
                to: *to,
                dry_run,
                cause: Cause::Metrics { capped: capped.clone() },
            }),
            _ => None,
        }
    }

    /// Upstream's condition reason of the limit that held this status back (`ScaleUpLimit`, ...), if any.
    pub(crate) fn limit(&self) -> Option<&'static str> {
        match self {
            PlainStatus::Scaling { cause: Cause::Metrics { capped: Some(cap) }, .. }
            | PlainStatus::Holding(Hold::Capped(cap)) => Some(cap.bound_reason()),
            _ => None,
        }
    }
}

impl Cap {
    /// The condition reason naming the bound (for a proposal above both the rate limit and maxReplicas,
    /// `TooManyReplicas`, where upstream's condition says `ScaleUpLimit`).
    pub(crate) fn bound_reason(&self) -> &'static str {
        match self.bound {
            Bound::UpRate => Limit::ScaleUpLimit.reason(),
            Bound::DownRate | Bound::ReadyPods => Limit::ScaleDownLimit.reason(),
            Bound::MaxReplicas => Limit::TooManyReplicas.reason(),
            Bound::MinReplicas => Limit::TooFewReplicas.reason(),
        }
    }
}

/// A number of seconds for people: `8 s`, `9 min 40 s`, `2 h 5 min`.
pub(crate) fn duration_words(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 if s.is_multiple_of(60) => format!("{} min", s / 60),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ if s % 3600 < 60 => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let setting = &self.setting;
        let reason = self.bound_reason();
        match self.bound {
            Bound::UpRate if setting == "0" => {
                write!(f, "scaleUpLimitFactor 0 turns upscaling off, {reason}")?
            }
            Bound::DownRate if setting == "0" => {
                write!(f, "scaleDownLimitFactor 0 turns downscaling off, {reason}")?
            }
            Bound::UpRate => write!(f, "limited to +{setting} % per step, {reason}")?,
            Bound::DownRate => write!(f, "limited to -{setting} % per step, {reason}")?,
            Bound::MaxReplicas => write!(f, "capped at maxReplicas {setting}, {reason}")?,
            Bound::MinReplicas => write!(f, "held at minReplicas {setting}, {reason}")?,
            Bound::ReadyPods => write!(
                f,
                "a downscale past the limit to fewer than the {setting} ready pods is dropped, {reason}"
            )?,
        }
        write!(f, "; the metrics ask for {}", self.proposal)
    }
}

impl fmt::Display for PlainStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let direction = |from: &i32, to: &i32| if to > from { "up" } else { "down" };
        match self {
            PlainStatus::Invalid(msg) => write!(f, "invalid spec: {msg}"),
            PlainStatus::Stopped(msg) => write!(f, "cannot scale: {msg}"),
            PlainStatus::Off => write!(f, "off: the target is at 0 replicas, which a WPA leaves alone"),
            PlainStatus::FirstPass { replicas } => {
                write!(f, "first pass: records the {replicas} replicas it found (no change)")
            }
            PlainStatus::Scaling { from, to, dry_run, cause } => {
                if *dry_run {
                    write!(f, "dry run: would scale {} {from} -> {to}", direction(from, to))?;
                } else {
                    write!(f, "scaling {}: {from} -> {to}", direction(from, to))?;
                }
                match cause {
                    Cause::Metrics { capped: None } => Ok(()),
                    Cause::Metrics { capped: Some(cap) } => write!(f, " ({cap})"),
                    Cause::Converging => write!(f, " (within the band, converging towards a watermark)"),
                    Cause::Forced(Forced::AboveMax) => {
                        write!(f, " (above maxReplicas: corrected at once, windows ignored)")
                    }
                    Cause::Forced(Forced::BelowMin) => {
                        write!(f, " (below minReplicas: corrected at once, windows ignored)")
                    }
                    Cause::Forced(Forced::NoReplicas) => write!(f, " (no replica is running)"),
                    Cause::Forced(Forced::TargetAtZero) => Ok(()),
                }
            }
            PlainStatus::Waiting { wait, from, to, .. } => {
                let then = format!("then {} {from} -> {to}", direction(from, to));
                match wait {
                    Wait::Window { upscale, seconds_left } => write!(
                        f,
                        "waiting: {} window, {} left, {then}",
                        if *upscale { "upscale" } else { "downscale" },
                        duration_words(seconds_left.ceil()),
                    ),
                    Wait::Delay { upscale, seconds_left } => {
                        let (which, band) =
                            if *upscale { ("upscale", "above") } else { ("downscale", "below") };
                        if *seconds_left > 0 {
                            write!(
                                f,
                                "waiting: {which} delay ({band} the band), {} left, {then}",
                                duration_words(*seconds_left as f64)
                            )
                        } else {
                            write!(f, "waiting: {which} delay starts ({band} the band), {then}")
                        }
                    }
                }
            }
            PlainStatus::FallbackPending { reason, seconds_left, replicas, .. } => write!(
                f,
                "cannot scale: {reason}; unless a metric answers, the fallback keeps at least {replicas} replicas in {}",
                duration_words(seconds_left.ceil())
            ),
            PlainStatus::Fallback { from, to, replicas, dry_run, wait } => {
                let why =
                    format!("every metric has failed for longer than fallback-after: at least {replicas}");
                match (wait, to > from) {
                    (_, false) => write!(f, "fallback: holding at {from} ({why}; never down)"),
                    (Some(Wait::Window { seconds_left, .. }), true) => write!(
                        f,
                        "fallback: waiting: upscale window, {} left, then up {from} -> {to} ({why})",
                        duration_words(seconds_left.ceil())
                    ),
                    (_, true) if *dry_run => {
                        write!(f, "dry run: fallback would scale up {from} -> {to} ({why})")
                    }
                    (_, true) => write!(f, "fallback: scaling up {from} -> {to} ({why})"),
                }
            }
            PlainStatus::Holding(Hold::WithinBand) => write!(f, "holding: value within the band"),
            PlainStatus::Holding(Hold::Capped(cap)) => write!(f, "holding: {cap}"),
            PlainStatus::Holding(Hold::Asks { overflowed: true, .. }) => {
                write!(f, "holding: above the band, but {PROPOSAL_OVERFLOWED}")
            }
            PlainStatus::Holding(Hold::Asks { above, .. }) => write!(
                f,
                "holding: {} the band, but the metrics' count is the current one",
                if *above { "above" } else { "below" }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(seconds_left: f64) -> PlainStatus {
        PlainStatus::Waiting {
            wait: Wait::Window { upscale: false, seconds_left },
            from: 5,
            to: 4,
            capped: None,
        }
    }

    #[test]
    fn a_countdown_is_not_a_new_status_but_another_wait_is() {
        assert!(window(8.0).same_kind(&window(7.0)));
        assert_eq!(window(7.2).to_string(), "waiting: downscale window, 8 s left, then down 5 -> 4");
        let delay = PlainStatus::Waiting {
            wait: Wait::Delay { upscale: false, seconds_left: 12 },
            from: 5,
            to: 4,
            capped: None,
        };
        assert!(!window(8.0).same_kind(&delay));
        assert_eq!(
            delay.to_string(),
            "waiting: downscale delay (below the band), 12 s left, then down 5 -> 4"
        );
        let capped = |bound, proposal| {
            PlainStatus::Holding(Hold::Capped(Cap { bound, proposal, setting: "40".into() }))
        };
        assert!(capped(Bound::MaxReplicas, 41).same_kind(&capped(Bound::MaxReplicas, 57)));
        assert!(!capped(Bound::MaxReplicas, 41).same_kind(&PlainStatus::Holding(Hold::WithinBand)));
        assert_eq!(
            capped(Bound::MaxReplicas, 57).to_string(),
            "holding: capped at maxReplicas 40, TooManyReplicas; the metrics ask for 57"
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration_words(8.0), "8 s");
        assert_eq!(duration_words(0.4), "0 s");
        assert_eq!(duration_words(60.0), "1 min");
        assert_eq!(duration_words(580.0), "9 min 40 s");
        assert_eq!(duration_words(7500.0), "2 h 5 min");
        assert_eq!(duration_words(7200.0), "2 h");
    }
}
