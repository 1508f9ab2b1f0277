//! Whether scaling is allowed now (`shouldScale`, docs/semantics.md §6.11): the forbidden windows, counted from the last
//! scale of either direction, and the delays above/below the watermarks, counted from the last
//! transition of the combined (OR across metrics) condition.

use jiff::Timestamp;

use super::conditions::text;

/// A `ConditionAboveHighWatermark` / `BelowLowWatermark` as read from the status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatermarkCondition {
    pub is_true: bool,
    pub last_transition: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug)]
pub struct GateInput {
    /// Spec replicas.
    pub current: i32,
    /// The normalized proposal.
    pub desired: i32,
    /// Every metric within its band.
    pub stable: bool,
    pub last_scale_time: Option<Timestamp>,
    pub downscale_forbidden_window_seconds: i32,
    pub upscale_forbidden_window_seconds: i32,
    pub upscale_delay_above_watermark_seconds: i32,
    pub downscale_delay_below_watermark_seconds: i32,
    pub above: Option<WatermarkCondition>,
    pub below: Option<WatermarkCondition>,
    pub now: Timestamp,
}

/// Why the gate said no.
#[derive(Clone, Debug, PartialEq)]
pub enum Blocked {
    /// The normalized proposal equals the current count.
    Unchanged,
    /// A forbidden window after the last scale; seconds left.
    Window { upscale: bool, seconds_left: f64 },
    /// The value has not been out of bounds for long enough; whole seconds left (upstream's `time_left`).
    Delay { upscale: bool, seconds_left: i64 },
}

impl Blocked {
    /// The engine's words, as upstream logs them.
    pub(crate) fn describe(&self) -> String {
        match self {
            Blocked::Unchanged => "Will not scale: number of replicas has not changed".into(),
            Blocked::Window { upscale, seconds_left } => format!(
                "Too early to {}: forbidden window ends in {:.0}s",
                if *upscale { "upscale" } else { "downscale" },
                seconds_left.ceil()
            ),
            Blocked::Delay { upscale, seconds_left } => format!(
                "Will not scale: value has not been out of bounds for long enough ({} for {}s more)",
                if *upscale { "above the high watermark" } else { "below the low watermark" },
                seconds_left.max(&0)
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Gate {
    pub allowed: bool,
    pub blocked: Option<Blocked>,
    pub backoff_down: bool,
    pub backoff_up: bool,
    /// Seconds until each forbidden window ends (0 when open); the `transition_countdown` gauges.
    pub(crate) downscale_countdown: f64,
    pub(crate) upscale_countdown: f64,
    /// The AbleToScale condition the backoff sets (reason, message), if a window is active.
    pub backoff_condition: Option<(&'static str, &'static str)>,
}

fn seconds_between(later: Timestamp, earlier: Timestamp) -> f64 {
    later.duration_since(earlier).as_secs_f64()
}

pub fn should_scale(input: &GateInput) -> Gate {
    let mut gate = Gate {
        allowed: true,
        blocked: None,
        backoff_down: false,
        backoff_up: false,
        downscale_countdown: 0.0,
        upscale_countdown: 0.0,
        backoff_condition: None,
    };
    let Some(last) = input.last_scale_time else {
        // No scale yet: nothing to wait for.
        return gate;
    };
    let since_last = seconds_between(input.now, last);
    let down_countdown = f64::from(input.downscale_forbidden_window_seconds) - since_last;
    let up_countdown = f64::from(input.upscale_forbidden_window_seconds) - since_last;
    gate.backoff_down = down_countdown > 0.0;
    gate.backoff_up = up_countdown > 0.0;
    if gate.backoff_down {
        gate.downscale_countdown = down_countdown;
        gate.backoff_condition = Some((text::BACKOFF_DOWNSCALE, text::BACKOFF_DOWNSCALE_MSG));
    }
    if gate.backoff_up {
        gate.upscale_countdown = up_countdown;
        gate.backoff_condition = Some(if gate.backoff_down {
            (text::BACKOFF_BOTH, text::BACKOFF_BOTH_MSG)
        } else {
            (text::BACKOFF_UPSCALE, text::BACKOFF_UPSCALE_MSG)
        });
    }
    let (upscale, backoff, countdown, cond, delay) = if input.desired > input.current {
        (true, gate.backoff_up, up_countdown, input.above, input.upscale_delay_above_watermark_seconds)
    } else if input.desired < input.current {
        (false, gate.backoff_down, down_countdown, input.below, input.downscale_delay_below_watermark_seconds)
    } else {
        gate.allowed = false;
        gate.blocked = Some(Blocked::Unchanged);
        return gate;
    };
    if delay != 0 && !input.stable {
        // A missing condition blocks; the delay counts from the condition's last transition.
        let cond = cond.unwrap_or(WatermarkCondition { is_true: false, last_transition: None });
        // A condition without its time reads as Go's zero time (upstream's struct default): long ago.
        let elapsed = cond.last_transition.map_or(i64::MAX, |t| input.now.duration_since(t).as_secs());
        let remaining =
            i64::from(delay) - i64::from(elapsed.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32);
        if remaining > 0 || !cond.is_true {
            gate.allowed = false;
            gate.blocked = Some(Blocked::Delay { upscale, seconds_left: remaining });
            return gate;
        }
    }
    if backoff {
        gate.allowed = false;
        gate.blocked = Some(Blocked::Window { upscale, seconds_left: countdown });
    }
    gate
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
