//! Another autoscaler on the same target: an HPA created after the WPA (the webhook refuses the other order)
//! fights it over the replica count. Upstream never notices; here it is a condition, an event on the
//! transition, and a line of `wpa explain`. Scaling goes on: which of the two should stay is the user's call.

use kube::ResourceExt;

use super::{
    conditions::{self, CONFLICTING_AUTOSCALER, text},
    decision::Decision,
};
use crate::api::{WatermarkPodAutoscaler, annotations};

/// Sets the condition from `hpas` (`namespace/name`), unless the WPA accepts the conflict.
pub(super) fn report(d: &mut Decision<'_>, wpa: &WatermarkPodAutoscaler, hpas: &[String]) {
    let accepted = wpa.annotations().get(annotations::ALLOW_CONFLICT).map(String::as_str) == Some("true");
    if hpas.is_empty() || accepted {
        // Only a WPA that had the condition gets it cleared; others never carry it.
        if conditions::is_true(d.status(), CONFLICTING_AUTOSCALER) {
            let reason = if accepted { text::CONFLICT_ACCEPTED } else { text::NO_CONFLICT };
            let message = if accepted { text::CONFLICT_ACCEPTED_MSG } else { text::NO_CONFLICT_MSG };
            d.set(CONFLICTING_AUTOSCALER, false, reason, message);
        }
        return;
    }
    let r = &wpa.spec.scale_target_ref;
    let message = format!(
        "HorizontalPodAutoscaler {} also scales {}/{}: the two fight over its replica count. Delete one of them, or set the annotation {}: \"true\" on this WPA to accept it",
        hpas.join(", "),
        r.kind,
        r.name,
        annotations::ALLOW_CONFLICT
    );
    d.event(true, text::CONFLICT_FOUND, message.clone(), Some(CONFLICTING_AUTOSCALER));
    d.set(CONFLICTING_AUTOSCALER, true, text::CONFLICT_FOUND, &message);
}
