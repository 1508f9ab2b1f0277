//! Rate limits and the min/max bounds (`convertDesiredReplicasWithRules`, docs/semantics.md §6.10).

use super::conditions::text;
use crate::api::quantity::Quantity;

/// The most replicas one upscale may reach: `current + max(1, floor(factor% × current))`; a factor of
/// exactly 0 disables upscaling.
///
/// Difference "saturating limits": upstream converts the sum with Go's `int32(float64)`, which gives
/// -2147483648 past the int32 range, so a huge factor (`"999999999999999999999"`) made it scale to a negative
/// count every pass; here the limit saturates at the int32 bounds.
pub fn scale_up_limit(factor: Option<&Quantity>, current: i32) -> i32 {
    match factor {
        Some(f) if f.value() != 0 => saturating_i32(f64::from(current) + step(f, current)),
        _ => current,
    }
}

/// The fewest replicas one downscale may reach: `current − max(1, floor(factor% × current))`; a factor of
/// exactly 0 disables downscaling. Saturates as [`scale_up_limit`] does.
pub fn scale_down_limit(factor: Option<&Quantity>, current: i32) -> i32 {
    match factor {
        Some(f) if f.value() != 0 => saturating_i32(f64::from(current) - step(f, current)),
        _ => current,
    }
}

/// `max(1, floor(factor% × current))`.
fn step(factor: &Quantity, current: i32) -> f64 {
    (factor.milli() as f64 / 1000.0 * f64::from(current) / 100.0).floor().max(1.0)
}

/// Truncation toward zero, as Go's conversion inside the int32 range, saturating outside it.
fn saturating_i32(f: f64) -> i32 {
    if f.is_nan() { 0 } else { f.trunc().clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32 }
}

/// Which rule gave the normalized count. Upstream reports the *last candidate limit examined* in the
/// branch that returned, which is not always the one that bound (kept for dashboard compatibility).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
// The variants are upstream's condition reasons (ScaleDownLimit, ScaleUpLimit), by name.
#[allow(clippy::enum_variant_names)]
pub enum Limit {
    /// minReplicas unset (only reachable without defaulting): no reason is reported.
    Unset,
    ScaleDownLimit,
    TooFewReplicas,
    ScaleUpLimit,
    TooManyReplicas,
    DesiredWithinRange,
}

impl Limit {
    pub fn reason(self) -> &'static str {
        match self {
            Limit::Unset => "",
            Limit::ScaleDownLimit => text::SCALE_DOWN_LIMIT,
            Limit::TooFewReplicas => text::TOO_FEW_REPLICAS,
            Limit::ScaleUpLimit => text::SCALE_UP_LIMIT,
            Limit::TooManyReplicas => text::TOO_MANY_REPLICAS,
            Limit::DesiredWithinRange => text::DESIRED_WITHIN_RANGE,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Limit::Unset => "",
            Limit::ScaleDownLimit => text::SCALE_DOWN_LIMIT_MSG,
            Limit::TooFewReplicas => text::TOO_FEW_REPLICAS_MSG,
            Limit::ScaleUpLimit => text::SCALE_UP_LIMIT_MSG,
            Limit::TooManyReplicas => text::TOO_MANY_REPLICAS_MSG,
            Limit::DesiredWithinRange => text::DESIRED_WITHIN_RANGE_MSG,
        }
    }
}

/// What really held a proposal back. [`Limit`] is upstream's reported reason, which names the last limit
/// examined: a proposal above both the rate limit and maxReplicas is reported as `ScaleUpLimit` even when
/// maxReplicas is the lower of the two. This names the one that bound, for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// scaleUpLimitFactor: the most one upscale may add.
    UpRate,
    /// scaleDownLimitFactor: the most one downscale may remove.
    DownRate,
    MaxReplicas,
    /// minReplicas (1 when unset).
    MinReplicas,
    /// A downscale past the rate limit to fewer pods than are ready is dropped (upstream's rule).
    ReadyPods,
}

/// The inputs of normalization.
#[derive(Clone, Copy, Debug)]
pub struct Bounds<'a> {
    /// minReplicas (0 when unset).
    pub min: i32,
    pub max: i32,
    pub up_factor: Option<&'a Quantity>,
    pub down_factor: Option<&'a Quantity>,
}

/// The result of normalization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Normalized {
    pub replicas: i32,
    pub limit: Limit,
    /// What held the proposal back, when it was clamped.
    pub bound: Option<Bound>,
    /// Whether the result was returned from a branch that clamped the proposal.
    pub clamped: bool,
    /// The most replicas one upscale could reach from the current count ([`scale_up_limit`]).
    pub up_limit: i32,
    /// The fewest replicas one downscale could reach from the current count ([`scale_down_limit`]).
    pub down_limit: i32,
}

/// Applies the rate limits and min/max to a proposal. `current` is the target's spec replicas; `ready` the
/// winning metric's ready count (a downscale that would go below it is dropped entirely).
pub fn normalize(bounds: &Bounds<'_>, current: i32, desired: i32, ready: i32) -> Normalized {
    let down = scale_down_limit(bounds.down_factor, current);
    let up = scale_up_limit(bounds.up_factor, current);
    let out = |replicas, limit, bound: Option<Bound>| Normalized {
        replicas,
        limit,
        clamped: bound.is_some(),
        bound,
        up_limit: up,
        down_limit: down,
    };
    let (min_allowed, limit, bound) = if bounds.min == 0 {
        (1, Limit::Unset, Bound::MinReplicas)
    } else if desired < down {
        let m = down.max(bounds.min);
        if ready > 0 && ready < m {
            (current, Limit::ScaleDownLimit, Bound::ReadyPods)
        } else if bounds.min > down {
            (m, Limit::ScaleDownLimit, Bound::MinReplicas)
        } else {
            (m, Limit::ScaleDownLimit, Bound::DownRate)
        }
    } else {
        (bounds.min, Limit::TooFewReplicas, Bound::MinReplicas)
    };
    if desired < min_allowed {
        return out(min_allowed, limit, Some(bound));
    }
    let (max_allowed, limit, bound) = if desired > up {
        if bounds.max < up {
            (bounds.max, Limit::ScaleUpLimit, Bound::MaxReplicas)
        } else {
            (up, Limit::ScaleUpLimit, Bound::UpRate)
        }
    } else {
        (bounds.max, Limit::TooManyReplicas, Bound::MaxReplicas)
    };
    if desired > max_allowed {
        return out(max_allowed, limit, Some(bound));
    }
    out(desired, Limit::DesiredWithinRange, None)
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
