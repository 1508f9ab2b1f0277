#!/usr/bin/env python3
"""Generate tests/data/reference-vectors.json from reference.py.

Each case is hand-designed to sit on a boundary of the spec; where the value was
also worked out by hand, `hand` holds it and the generator asserts the reference
agrees.  Cases whose outcome depends on the evaluation epsilon, or that hit
undefined Go behaviour, are refused.
"""

import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402
from verify import EPS_VALUES, run  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PUBLIC = os.path.join(HERE, "..", "data", "upstream-vectors.json")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "data", "reference-vectors.json")
Q = ref.qty

VECTORS = []


def add(function, what, inputs, hand=None, notes=None):
    outs = []
    for eps in EPS_VALUES:
        try:
            outs.append(run(function, copy.deepcopy(inputs), eps))
        except ref.UndefinedBehaviour as e:
            print(f"SKIP (undefined) {function}/{what}: {e}")
            return
    if any(o != outs[0] for o in outs):
        print(f"SKIP (eps dependent) {function}/{what}: {outs}")
        return
    got = outs[0]
    expected = make_expected(function, inputs, got)
    if hand:
        for k, v in hand.items():
            if expected.get(k) != v:
                raise AssertionError(f"{function}/{what}: hand {k}={v!r} but reference gives {expected.get(k)!r}"
                                     f" (full {got})")
    v = {"source": f"reference:{function}/{what}", "function": function, "inputs": inputs, "expected": expected}
    if notes:
        v["notes"] = notes
    VECTORS.append(v)


ERROR_CORES = [
    "no pods returned by selector while calculating replica count",
    "none is ready. Skipping recommendation",
    "% of the pods are unready, will not autoscale",
    "no metrics returned from external metrics API",
    "no metrics returned from resource metrics API",
    "did not receive metrics for any ready pods",
]


def make_expected(function, inputs, got):
    if function == "replica_calculation":
        if "error" in got:
            msg = got["error"]
            if "% of the pods are unready" in msg or "none is ready" in msg:
                core = msg.split(": ")[-1]  # "<ratio> % ... /name" or "among the N pods, none is ready..."
            else:
                core = next(c for c in ERROR_CORES if c in msg)
            return {"error_contains": core}
        keys = ["replicaCount", "utilization", "readyReplicas", "isAbove", "isBelow"]
        out = {k: got[k] for k in keys if k in got}
        if inputs["metricType"] == "Recommender" and not got.get("shortCircuit"):
            out["details"] = got["details"]
            out["timestamp"] = "equals recommenderResponse timestamp"
        return out
    if function == "ready_pods_count":
        out = {"readyCount": got["readyCount"], "incorrectTargetPodsCount": got["incorrectTargetPodsCount"]}
        if got["error"]:
            out["error"] = got["error"]
        return out
    return got


# --------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------

TARGET = "foo-bar-123"
OWNER = [{"kind": "ReplicaSet", "name": "foo-bar-123-345"}]


def pod(name, phase="Running", ready="True", trans=0, start="ZERO_TIME", owner=None, deleting=False,
        labels=None, conditions=None, ns="test-namespace"):
    if conditions is None:
        conditions = [] if ready is None else [{"type": "Ready", "status": ready,
                                                "lastTransitionTimeOffsetSeconds": trans}]
    return {"name": name, "namespace": ns, "labels": {"name": "test-pod"} if labels is None else labels,
            "ownerReferences": copy.deepcopy(OWNER if owner is None else owner), "phase": phase,
            "startTimeOffsetSeconds": start, "deletionTimestampSet": deleting, "conditions": conditions}


def pods_ready(n, start_index=0, **kw):
    return [pod(f"test-pod-{i}", **kw) for i in range(start_index, start_index + n)]


def spec(algorithm="absolute", tol="20m", modulo=1, conv="", min_r=None, max_r=0, min_av=0, rd=0, tz=False,
         recommender=None):
    s = {"algorithm": algorithm, "tolerance": Q(tol), "replicaScalingAbsoluteModulo": modulo,
         "convergeTowardsWatermark": conv, "minReplicas": min_r, "maxReplicas": max_r,
         "minAvailableReplicaPercentage": min_av, "readinessDelaySeconds": rd, "tolerateZero": tz}
    if recommender is not None:
        s["recommender"] = recommender
    return s


def scale(spec_r, status_r=None, selector="name=test-pod"):
    return {"name": TARGET, "namespace": "", "specReplicas": spec_r,
            "statusReplicas": spec_r if status_r is None else status_r, "selector": selector}


def ext_metric(hw="4", lw="2", name="deadbeef"):
    return {"type": "External", "metricName": name, "metricSelector": {"matchLabels": {"foo": "bar"}},
            "highWatermark": Q(hw), "lowWatermark": Q(lw)}


def res_metric(hw="40", lw="20", name="cpu"):
    return {"type": "Resource", "name": name, "metricSelector": {"matchLabels": {"name": "test-pod"}},
            "highWatermark": Q(hw), "lowWatermark": Q(lw)}


def external(what, sp, sc, pods, values, metric=None, hand=None, notes=None):
    add("replica_calculation", f"External/{what}",
        {"metricType": "External", "spec": sp, "scale": sc, "pods": pods,
         "metric": metric or ext_metric(), "externalMetricValues": [Q(v) for v in values]}, hand, notes)


def resource(what, sp, sc, pods, pod_metrics, metric=None, hand=None, notes=None):
    add("replica_calculation", f"Resource/{what}",
        {"metricType": "Resource", "spec": sp, "scale": sc, "pods": pods,
         "metric": metric or res_metric(), "podMetrics": {k: Q(v) for k, v in pod_metrics.items()}}, hand, notes)


RECO = {"url": "http://recommender.example.com", "settings": {}, "targetType": "cpu",
        "highWatermark": Q("700m"), "lowWatermark": Q("200m")}


def recommender(what, sp, sc, pods, replicas, lower, upper, observed=0, details="Fake", hand=None, notes=None):
    sp = dict(sp)
    sp["recommender"] = copy.deepcopy(RECO)
    add("replica_calculation", f"Recommender/{what}",
        {"metricType": "Recommender", "spec": sp, "scale": sc, "pods": pods,
         "recommenderResponse": {"replicas": replicas, "replicasLowerBound": lower, "replicasUpperBound": upper,
                                 "details": details, "observedTargetValue": observed,
                                 "timestampOffsetSeconds": 0}}, hand, notes)


def unready(name, **kw):
    return pod(name, ready="False", **kw)


# ==========================================================================
# replica_calculation — External
# ==========================================================================

four = pods_ready(4)
# tolerance 20m on HW=4000 / LW=2000: adjustedHM = 4000+80 = 4080, adjustedLM = 2000-40 = 1960
external("value exactly at adjusted high watermark (4080m) is within", spec(), scale(4), four, ["4080m"],
         hand={"replicaCount": 4, "utilization": 4080, "isAbove": False, "isBelow": False})
external("value 1m above adjusted high watermark (4081m) scales up with ceil", spec(), scale(4), four, ["4081m"],
         hand={"replicaCount": 5, "isAbove": True}, notes="ceil(4*4081/4000)=ceil(4.081)=5")
external("value exactly at adjusted low watermark (1960m) is within", spec(), scale(4), four, ["1960m"],
         hand={"replicaCount": 4, "isAbove": False, "isBelow": False})
external("value 1m below adjusted low watermark (1959m) scales down with floor", spec(), scale(4), four,
         ["1959m"], hand={"replicaCount": 3, "isBelow": True}, notes="floor(4*1959/2000)=floor(3.918)=3")
# integer truncation of the tolerance adjustment
external("tolerance adjustment truncates: HW 3333m tol 25m -> adjustedHM 3416, value 3416m within",
         spec(tol="25m"), scale(4), four, ["3416m"], metric=ext_metric("3333m", "1999m"),
         hand={"replicaCount": 4, "isAbove": False, "isBelow": False},
         notes="3333*25/1000 = 83 (int64 truncation), adjustedHM = 3416")
external("tolerance adjustment truncates: HW 3333m tol 25m, value 3417m above", spec(tol="25m"), scale(4), four,
         ["3417m"], metric=ext_metric("3333m", "1999m"), hand={"replicaCount": 5, "isAbove": True})
external("tolerance adjustment truncates: LW 1999m tol 25m -> adjustedLM 1950, value 1950m within",
         spec(tol="25m"), scale(4), four, ["1950m"], metric=ext_metric("3333m", "1999m"),
         hand={"replicaCount": 4, "isBelow": False}, notes="1999*25/1000 = 49 (truncated), adjustedLM = 1950")
external("tolerance adjustment truncates: LW 1999m tol 25m, value 1949m below", spec(tol="25m"), scale(4), four,
         ["1949m"], metric=ext_metric("3333m", "1999m"), hand={"replicaCount": 3, "isBelow": True},
         notes="floor(4*1949/1999)=floor(3.89995)=3")
# tolerance 0 (raw, not defaulted in the calculator) and 1
external("tolerance 0: value equal to HW is within (strict >)", spec(tol="0"), scale(4), four, ["4"],
         hand={"replicaCount": 4, "isAbove": False, "isBelow": False})
external("tolerance 0: value 1m above HW scales up", spec(tol="0"), scale(4), four, ["4001m"],
         hand={"replicaCount": 5, "isAbove": True})
external("tolerance 0: value equal to LW is within (strict <)", spec(tol="0"), scale(4), four, ["2"],
         hand={"replicaCount": 4, "isBelow": False})
external("tolerance 0: value 1m below LW scales down", spec(tol="0"), scale(4), four, ["1999m"],
         hand={"replicaCount": 3, "isBelow": True})
external("tolerance 1 (1000m): value at 2*HW is within", spec(tol="1"), scale(4), four, ["8"],
         hand={"replicaCount": 4, "isAbove": False})
external("tolerance 1 (1000m): value 1m above 2*HW scales up", spec(tol="1"), scale(4), four, ["8001m"],
         hand={"replicaCount": 9, "isAbove": True}, notes="ceil(4*8001/4000)=ceil(8.001)=9")
external("tolerance 1 (1000m): adjustedLM is 0 so a tiny value is within", spec(tol="1"), scale(4), four,
         ["1m"], hand={"replicaCount": 4, "isBelow": False})
external("tolerance 1 with tolerateZero: 0 is not < adjustedLM 0, within", spec(tol="1", tz=True), scale(4), four,
         ["0"], hand={"replicaCount": 4, "utilization": 0, "isAbove": False, "isBelow": False})
# ceil / floor boundaries
external("ceil on an exact integer ratio stays (4*12000/4000=12)", spec(), scale(4), four, ["12"],
         hand={"replicaCount": 12})
external("ceil just above an integer ratio rounds up (4*12001/4000)", spec(), scale(4), four, ["12001m"],
         hand={"replicaCount": 13})
ten = pods_ready(10)
external("floor on an exact integer ratio stays (10*1000/2000=5)", spec(), scale(10), ten, ["1"],
         hand={"replicaCount": 5, "isBelow": True})
external("floor just below an integer ratio rounds down (10*999/2000=4.995)", spec(), scale(10), ten, ["999m"],
         hand={"replicaCount": 4, "isBelow": True})
external("floor to 0 is raised to 1", spec(), scale(4), four, ["1m"], hand={"replicaCount": 1, "isBelow": True})
external("below branch proposal above spec replicas is clamped to spec (adjustDown)", spec(), scale(2, 4), four,
         ["1900m"], hand={"replicaCount": 2, "readyReplicas": 4, "isBelow": True},
         notes="ready 4 (status 4), floor(4*1900/2000)=3 > spec 2 -> 2")
six_three_ready = pods_ready(3) + [unready(f"test-pod-{i}") for i in range(3, 6)]
external("above branch proposal below spec replicas is raised to spec (adjustUp)", spec(), scale(6), six_three_ready,
         ["4100m"], hand={"replicaCount": 6, "readyReplicas": 3, "isAbove": True},
         notes="ceil(3*4100/4000)=4 < spec 6 -> 6")
external("float order for proposals is ready*usage/HW (2*2184/1456 = 3 exactly)", spec(), scale(2), pods_ready(2),
         ["2184m"], metric=ext_metric("1456m", "1"), hand={"replicaCount": 3, "isAbove": True},
         notes="ceil(2*2184/1456)=3; the other order ceil(2/1456*2184) would give 4")
seven = pods_ready(7)
external("average float order: 7*(8040/7) = 8040.000000000001 so ceil gives 9", spec(algorithm="average"),
         scale(7), seven, ["8040m"], metric=ext_metric("1005m", "500m"),
         hand={"replicaCount": 9, "utilization": 1148, "isAbove": True},
         notes="usage = 8040/7 = 1148.57..; float64(7)*usage = 8040.000000000001; /1005 = 8.000000000000002 -> ceil 9")
external("average float order: 7*(3603/7) = 3602.9999999999995 so floor gives 2", spec(algorithm="average"),
         scale(7), seven, ["3603m"], metric=ext_metric("2", "1201m"),
         hand={"replicaCount": 2, "utilization": 514, "isBelow": True},
         notes="usage = 3603/7 = 514.71..; float64(7)*usage = 3602.9999999999995; /1201 -> floor 2")
# modulo
external("modulo 3 rounds an upscale proposal up (7 -> 9)", spec(modulo=3), scale(4), four, ["7"],
         hand={"replicaCount": 9, "isAbove": True})
external("modulo 3 keeps a proposal that is already a multiple (9)", spec(modulo=3), scale(4), four, ["9"],
         hand={"replicaCount": 9})
external("modulo 4 rounds upscale proposal 5 up to 8", spec(modulo=4), scale(4), four, ["5"],
         hand={"replicaCount": 8})
external("modulo 3 rounds a downscale proposal up (5 -> 6)", spec(modulo=3), scale(10), ten, ["1100m"],
         hand={"replicaCount": 6, "isBelow": True}, notes="floor(10*1100/2000)=5, rounded up to 6")
external("modulo 5 rounds a downscale proposal above spec, clamped back to spec", spec(modulo=5), scale(7), seven,
         ["1900m"], hand={"replicaCount": 7, "isBelow": True},
         notes="floor(7*1900/2000)=6 -> 10 by modulo -> > spec 7 -> 7")
external("modulo 4 applied after max(rc,1): 1 -> 4", spec(modulo=4), scale(10), ten, ["1m"],
         hand={"replicaCount": 4, "isBelow": True})
# convergence
six = pods_ready(6)
external("highwatermark convergence accepted with modulo 1 (opt 5 >= lowerBound 5)",
         spec(conv="highwatermark", min_r=1, max_r=20), scale(6), six, ["3"],
         hand={"replicaCount": 5, "isAbove": False, "isBelow": False},
         notes="lowerBound = Cap(ceil(6/4000*3000)=5, 1, 20) = 5")
external("highwatermark convergence refused with modulo 2 (opt 4 < lowerBound 5)",
         spec(conv="highwatermark", modulo=2, min_r=1, max_r=20), scale(6), six, ["3"],
         hand={"replicaCount": 6, "isAbove": False, "isBelow": False})
external("lowwatermark convergence accepted with modulo 2 (opt 6 <= upperBound 6)",
         spec(conv="lowwatermark", modulo=2, min_r=1, max_r=20), scale(4), four, ["3"],
         hand={"replicaCount": 6}, notes="upperBound = Cap(floor(4/2000*3000)=6, 1, 20)")
external("lowwatermark convergence refused with modulo 2 (opt 6 > upperBound 5)",
         spec(conv="lowwatermark", modulo=2, min_r=1, max_r=20), scale(4), four, ["2900m"],
         hand={"replicaCount": 4}, notes="upperBound = floor(4/2000*2900) = 5")
three = pods_ready(3)
external("highwatermark convergence refused because minReplicas caps lowerBound up",
         spec(conv="highwatermark", min_r=3, max_r=10), scale(3), three, ["600m"], metric=ext_metric("4", "500m"),
         hand={"replicaCount": 3}, notes="ceil(3/4000*600)=1, Cap(1,3,10)=3, opt 2 < 3")
external("highwatermark convergence accepted with minReplicas null (minR = 1)",
         spec(conv="highwatermark", min_r=None, max_r=10), scale(3), three, ["600m"], metric=ext_metric("4", "500m"),
         hand={"replicaCount": 2})
external("highwatermark convergence with minReplicas 0 uses minR = 1",
         spec(conv="highwatermark", min_r=0, max_r=10), scale(3), three, ["600m"], metric=ext_metric("4", "500m"),
         hand={"replicaCount": 2})
external("lowwatermark convergence refused because maxReplicas caps upperBound",
         spec(conv="lowwatermark", min_r=1, max_r=4), scale(4), four, ["3"], hand={"replicaCount": 4},
         notes="floor(4/2000*3000)=6, Cap(6,1,4)=4, opt 5 > 4")
external("unknown convergeTowardsWatermark value (case differs) disables convergence",
         spec(conv="HighWatermark", min_r=1, max_r=20), scale(6), six, ["3"], hand={"replicaCount": 6})
four_3ready = pods_ready(3) + [unready("test-pod-3")]
external("convergence bound float order: ceil(3/1100*1100) = 4 refuses the step down",
         spec(conv="highwatermark", min_r=1, max_r=10), scale(4), four_3ready, ["1100m"],
         metric=ext_metric("1100m", "500m"), hand={"replicaCount": 4, "readyReplicas": 3},
         notes="float64(3)/1100*1100 = 3.0000000000000004 -> ceil 4; opt 3 < 4 -> stay at 4")
external("convergence bound float order: floor(2/1003*1003) = 1 refuses the step up",
         spec(conv="lowwatermark", min_r=1, max_r=10), scale(1, 2), pods_ready(2), ["1003m"],
         metric=ext_metric("2", "1003m"), hand={"replicaCount": 1, "readyReplicas": 2},
         notes="float64(2)/1003*1003 = 1.9999999999999998 -> floor 1; opt 2 > 1 -> stay at 1")
# average with unready / pending pods
five_3ready = pods_ready(3) + [unready("test-pod-3"), unready("test-pod-4")]
external("average divides by ready count only (3 of 5)", spec(algorithm="average"), scale(5), five_3ready, ["15"],
         hand={"replicaCount": 5, "utilization": 5000, "readyReplicas": 3, "isAbove": True},
         notes="usage 15000/3=5000 > 4080, ceil(3*5000/4000)=4 < spec 5 -> 5")
external("average utilization is truncated (20000/3 -> 6666)", spec(algorithm="average"), scale(3), three, ["20"],
         hand={"utilization": 6666, "replicaCount": 5, "isAbove": True})
pend29 = pods_ready(2) + [pod("test-pod-2", phase="Pending", ready="False", trans=-29, start=-60)]
external("pending pod 29s after its Ready transition counts with readinessDelay 30", spec(rd=30), scale(3), pend29,
         ["9"], hand={"readyReplicas": 3, "replicaCount": 7}, notes="ceil(3*9000/4000)=7")
pend30 = pods_ready(2) + [pod("test-pod-2", phase="Pending", ready="False", trans=-30, start=-60)]
external("pending pod 30s after its Ready transition does not count with readinessDelay 30", spec(rd=30), scale(3),
         pend30, ["9"], hand={"readyReplicas": 2, "replicaCount": 5}, notes="ceil(2*9000/4000)=5")
pend0 = pods_ready(2) + [pod("test-pod-2", phase="Pending", ready="False", trans=0, start=0)]
external("pending pod that just transitioned counts with readinessDelay 1", spec(rd=1), scale(3), pend0, ["9"],
         hand={"readyReplicas": 3})
pend_old = pods_ready(2) + [pod("test-pod-2", phase="Pending", ready="True", trans=-100, start=-120)]
external("pending pod with an old Ready=True transition is not ready", spec(rd=30, algorithm="average"), scale(3),
         pend_old, ["9"], hand={"readyReplicas": 2, "utilization": 4500})
pend_nostart = pods_ready(2) + [pod("test-pod-2", phase="Pending", ready="False", trans=-1, start=None)]
external("pending pod without startTime is unready even within the delay", spec(rd=30), scale(3), pend_nostart,
         ["9"], hand={"readyReplicas": 2})
# availability
term = pods_ready(3) + [pod("test-pod-3", deleting=True)]
external("terminating pod is unready and counts against availability: 75 % meets 75",
         spec(min_av=75), scale(4), term, ["9"], hand={"readyReplicas": 3})
external("terminating pod is unready and counts against availability: 75 % fails 76",
         spec(min_av=76), scale(4), term, ["9"],
         hand={"error_contains": "75 % of the pods are unready, will not autoscale /foo-bar-123"})
failed_mix = pods_ready(2) + [pod("test-pod-2", phase="Failed"), unready("test-pod-3")]
external("Failed pod leaves the denominator: 2 of 3 is 66 %, minAvailable 66 passes", spec(min_av=66), scale(4),
         failed_mix, ["9"], hand={"readyReplicas": 2})
external("Failed pod leaves the denominator: 2 of 3 is 66 %, minAvailable 67 fails", spec(min_av=67), scale(4),
         failed_mix, ["9"], hand={"error_contains": "66 % of the pods are unready, will not autoscale /foo-bar-123"})
succ_mix = pods_ready(1) + [pod("test-pod-1", phase="Succeeded"), unready("test-pod-2")]
external("Succeeded pod leaves the denominator: 1 of 2 is 50 % < 51", spec(min_av=51), scale(3), succ_mix, ["9"],
         hand={"error_contains": "50 % of the pods are unready, will not autoscale /foo-bar-123"})
owner_miss = pods_ready(3) + [pod("test-pod-3", owner=[{"kind": "ReplicaSet", "name": "other-rs-abc"}])]
external("pod failing the owner check leaves the denominator (3 of 3 = 100 %)", spec(min_av=100), scale(4),
         owner_miss, ["9"], hand={"readyReplicas": 3})
base_rs = pods_ready(3) + [pod("test-pod-3", owner=[{"kind": "ReplicaSet", "name": "foo-bar-123-base"}])]
external("owner suffix heuristic: ReplicaSet foo-bar-123-base is claimed by foo-bar-123", spec(), scale(4), base_rs,
         ["9"], hand={"readyReplicas": 4})
sts = pods_ready(3) + [pod("test-pod-3", owner=[{"kind": "StatefulSet", "name": "foo-bar-123-0"}])]
external("owner check: StatefulSet names are not cut at '-'", spec(), scale(4), sts, ["9"],
         hand={"readyReplicas": 3})
five_ready = pods_ready(5)
external("ready count is clamped to status.replicas before averaging", spec(algorithm="average"), scale(3),
         five_ready, ["15"], hand={"readyReplicas": 3, "utilization": 5000, "replicaCount": 4})
external("clamped ready count feeds the availability ratio: 2 of 4 = 50 % < 51", spec(min_av=51), scale(2),
         pods_ready(4), ["9"], hand={"error_contains": "50 % of the pods are unready, will not autoscale /foo-bar-123"})
external("availability exactly at threshold passes: 2 of 4 = 50 % with minAvailable 50",
         spec(min_av=50), scale(4), pods_ready(2) + [unready("test-pod-2"), unready("test-pod-3")], ["9"],
         hand={"readyReplicas": 2})
external("availability integer truncation: 2 of 3 = 66 % < 67", spec(min_av=67), scale(3),
         pods_ready(2) + [unready("test-pod-2")], ["9"],
         hand={"error_contains": "66 % of the pods are unready, will not autoscale /foo-bar-123"})
external("no ready pod is an error (counts every listed pod)", spec(), scale(3),
         [unready("test-pod-0"), pod("test-pod-1", phase="Failed"),
          pod("test-pod-2", owner=[{"kind": "ReplicaSet", "name": "x-y"}])], ["9"],
         hand={"error_contains": "among the 3 pods, none is ready. Skipping recommendation"})
sel_mix = pods_ready(3) + [unready("test-pod-3", labels={"name": "other"}),
                           unready("test-pod-4", labels={"name": "other"})]
external("pods outside the scale selector are not listed (availability 100 %)", spec(min_av=100), scale(3),
         sel_mix, ["9"], hand={"readyReplicas": 3})
external("no external metric series is an error", spec(), scale(4), four, [],
         hand={"error_contains": "no metrics returned from external metrics API"})
# sums and tolerateZero
external("several external series are summed (1500m+2500m+600m)", spec(), scale(4), four,
         ["1500m", "2500m", "600m"], hand={"utilization": 4600, "replicaCount": 5, "isAbove": True})
external("sub-milli values are rounded away from zero before summing (3 x 400u = 3m)", spec(tol="0"), scale(4),
         four, ["400u", "400u", "400u"], metric=ext_metric("4m", "2m"),
         hand={"utilization": 3, "replicaCount": 4, "isAbove": False, "isBelow": False},
         notes="milli(0.0004) = 1, so the sum is 3m (>= LW 2m) although the exact sum 1.2m is below LW")
three_of_four = pods_ready(3) + [unready("test-pod-3")]
external("tolerateZero false with a zero sum proposes the ready count (quirk)", spec(), scale(4), three_of_four,
         ["0"], hand={"replicaCount": 3, "utilization": 0, "readyReplicas": 3, "isAbove": False, "isBelow": False})
external("tolerateZero false: several zero series also short-circuit", spec(modulo=2), scale(4), three_of_four,
         ["0", "0"], hand={"replicaCount": 3})
external("tolerateZero false: series summing to exactly zero short-circuit", spec(), scale(4), four,
         ["2500m", "-2500m"], hand={"replicaCount": 4, "utilization": 0, "isBelow": False})
external("tolerateZero true with zero sum goes below (floor 0 -> 1, modulo 2 -> 2)", spec(tz=True, modulo=2),
         scale(4), four, ["0"], hand={"replicaCount": 2, "isBelow": True, "utilization": 0})
external("tolerateZero true with zero sum, average", spec(tz=True, algorithm="average"), scale(4), three_of_four,
         ["0"], hand={"replicaCount": 1, "readyReplicas": 3, "isBelow": True})
external("algorithm typo 'Average' behaves as absolute", spec(algorithm="Average"), scale(4), four, ["8"],
         hand={"replicaCount": 8, "utilization": 8000, "isAbove": True})
external("empty algorithm behaves as absolute", spec(algorithm=""), scale(4), four, ["8"],
         hand={"replicaCount": 8})
external("average: same value is within once divided by ready", spec(algorithm="average"), scale(4), four, ["8"],
         hand={"replicaCount": 4, "utilization": 2000, "isAbove": False, "isBelow": False})

# ==========================================================================
# replica_calculation — Resource
# ==========================================================================

def rp(i, **kw):
    return pod(f"test-pod-{i}", **kw)


resource("cpu: Ready transition exactly start+delay counts as ready", spec(rd=30), scale(3),
         [rp(0), rp(1), rp(2, start=-100, trans=-70)], {"test-pod-0": "10", "test-pod-1": "10", "test-pod-2": "30"},
         hand={"readyReplicas": 3, "utilization": 50000, "replicaCount": 4},
         notes="start -100 + 30 = -70 is not > -70; sum 50000 > 40800 -> ceil(3*50000/40000)=4")
resource("cpu: Ready transition 1s before start+delay is ignored and its metric dropped", spec(rd=30), scale(3),
         [rp(0), rp(1), rp(2, start=-100, trans=-71)], {"test-pod-0": "10", "test-pod-1": "10", "test-pod-2": "30"},
         hand={"readyReplicas": 2, "utilization": 20000, "isAbove": False, "isBelow": False, "replicaCount": 3})
resource("memory: unready Running pod counts as ready", spec(), scale(3),
         [rp(0), rp(1), rp(2, ready="False")], {"test-pod-0": "30", "test-pod-1": "30", "test-pod-2": "30"},
         metric=res_metric(name="memory"), hand={"readyReplicas": 3, "replicaCount": 7},
         notes="ceil(3*90000/40000)=7")
resource("cpu: the same unready Running pod is ignored", spec(), scale(3),
         [rp(0), rp(1), rp(2, ready="False")], {"test-pod-0": "30", "test-pod-1": "30", "test-pod-2": "30"},
         hand={"readyReplicas": 2, "utilization": 60000, "replicaCount": 3})
resource("cpu: Ready=Unknown counts as ready", spec(), scale(3),
         [rp(0), rp(1), rp(2, ready="Unknown")], {"test-pod-0": "30", "test-pod-1": "30", "test-pod-2": "30"},
         hand={"readyReplicas": 3})
resource("memory: pod without Ready condition counts as ready", spec(algorithm="average"), scale(3),
         [rp(0), rp(1), rp(2, ready=None)], {"test-pod-0": "30", "test-pod-1": "30", "test-pod-2": "30"},
         metric=res_metric(name="memory"), hand={"readyReplicas": 3, "utilization": 30000})
resource("missing pod metrics: pod counts against availability (2 of 3 = 66 % < 67)", spec(min_av=67), scale(3),
         [rp(0), rp(1), rp(2)], {"test-pod-0": "10", "test-pod-1": "10"},
         hand={"error_contains": "66 % of the pods are unready, will not autoscale /foo-bar-123"})
resource("missing pod metrics: 2 of 3 = 66 % passes minAvailable 66", spec(min_av=66), scale(3),
         [rp(0), rp(1), rp(2)], {"test-pod-0": "10", "test-pod-1": "10"},
         hand={"readyReplicas": 2, "utilization": 20000})
resource("metrics of pods absent from the pod list are still summed", spec(), scale(2),
         [rp(0), rp(1)], {"test-pod-0": "10", "test-pod-1": "10", "ghost-pod": "50"},
         hand={"readyReplicas": 2, "utilization": 70000, "replicaCount": 4, "isAbove": True},
         notes="sum 70000 (ghost included), ceil(2*70000/40000)=4")
resource("metrics of pods failing the owner check are summed and the pod stays in the denominator",
         spec(min_av=67), scale(3), [rp(0), rp(1), rp(2, owner=[{"kind": "Deployment", "name": "other"}])],
         {"test-pod-0": "10", "test-pod-1": "10", "test-pod-2": "10"},
         hand={"error_contains": "66 % of the pods are unready, will not autoscale /foo-bar-123"})
resource("owner-check misses: metric summed into usage", spec(), scale(3),
         [rp(0), rp(1), rp(2, owner=[{"kind": "Deployment", "name": "other"}])],
         {"test-pod-0": "10", "test-pod-1": "10", "test-pod-2": "30"},
         hand={"readyReplicas": 2, "utilization": 50000, "replicaCount": 3, "isAbove": True},
         notes="ceil(2*50000/40000)=3")
resource("only ignored pods have metrics: error", spec(), scale(2),
         [rp(0, phase="Pending"), rp(1)], {"test-pod-0": "10"},
         hand={"error_contains": "did not receive metrics for any ready pods"})
resource("no tolerateZero on the Resource path: zero usage scales down to 1", spec(tz=False), scale(3),
         [rp(0), rp(1), rp(2)], {"test-pod-0": "0", "test-pod-1": "0", "test-pod-2": "0"},
         hand={"replicaCount": 1, "utilization": 0, "isBelow": True})
resource("unready cpu pods do not count against availability (2 of 4-2 = 100 %)", spec(min_av=100), scale(4),
         [rp(0), rp(1), rp(2, ready="False"), rp(3, ready="False")],
         {"test-pod-0": "10", "test-pod-1": "10", "test-pod-2": "10", "test-pod-3": "10"},
         hand={"readyReplicas": 2, "utilization": 20000})
resource("Failed pod is ignored and leaves the denominator", spec(min_av=100), scale(3),
         [rp(0), rp(1), rp(2, phase="Failed")], {"test-pod-0": "10", "test-pod-1": "10", "test-pod-2": "90"},
         hand={"readyReplicas": 2, "utilization": 20000})
resource("no pod matches the scale selector", spec(), scale(3, selector="name=nothing"), [rp(0), rp(1)],
         {"test-pod-0": "10"}, hand={"error_contains": "no pods returned by selector while calculating replica count"})
resource("modulo 2 on the Resource path below watermark", spec(modulo=2), scale(5),
         [rp(i) for i in range(5)], {f"test-pod-{i}": "3" for i in range(5)},
         hand={"replicaCount": 4, "utilization": 15000, "isBelow": True},
         notes="floor(5*15000/20000)=3, rounded up to the modulo 2 -> 4 (<= spec 5)")

# ==========================================================================
# replica_calculation — Recommender
# ==========================================================================

recommender("equal recommendation with highwatermark convergence steps down", spec(conv="highwatermark", min_r=1,
            max_r=10), scale(5), pods_ready(5), 5, 3, 8,
            hand={"replicaCount": 4, "isAbove": False, "isBelow": False})
recommender("equal recommendation with highwatermark convergence refused by lowerBound", spec(conv="highwatermark",
            min_r=1, max_r=10), scale(5), pods_ready(5), 5, 5, 8, hand={"replicaCount": 5})
recommender("equal recommendation with lowwatermark convergence steps up", spec(conv="lowwatermark", min_r=1,
            max_r=10), scale(5), pods_ready(5), 5, 3, 8, hand={"replicaCount": 6})
recommender("equal recommendation with lowwatermark convergence refused by upperBound", spec(conv="lowwatermark",
            min_r=1, max_r=10), scale(5), pods_ready(5), 5, 3, 5, hand={"replicaCount": 5})
recommender("equal recommendation forces both positions false even outside bounds", spec(min_r=1, max_r=10),
            scale(5), pods_ready(5), 5, 7, 9, hand={"replicaCount": 5, "isAbove": False, "isBelow": False})
recommender("upscale: spec below lowerBound sets isAbove", spec(min_r=1, max_r=10), scale(5), pods_ready(5), 8, 6, 9,
            hand={"replicaCount": 8, "isAbove": True, "isBelow": False})
recommender("upscale rounded up to modulo 3 (7 -> 9)", spec(modulo=3, min_r=1, max_r=20), scale(5), pods_ready(5),
            7, 6, 9, hand={"replicaCount": 9})
recommender("downscale: spec above upperBound sets isBelow", spec(min_r=1, max_r=10), scale(5), pods_ready(5), 3, 2, 4,
            hand={"replicaCount": 3, "isAbove": False, "isBelow": True})
recommender("downscale with spec inside the bounds keeps both positions false", spec(min_r=1, max_r=10), scale(5),
            pods_ready(5), 4, 3, 6, hand={"replicaCount": 4, "isAbove": False, "isBelow": False})
recommender("upscale while spec is above upperBound: isBelow true", spec(min_r=1, max_r=20), scale(10),
            pods_ready(10), 12, 2, 6, hand={"replicaCount": 12, "isAbove": False, "isBelow": True})
recommender("missing bounds read as 0: isBelow whenever spec > 0", spec(min_r=1, max_r=10), scale(5),
            pods_ready(5), 6, 0, 0, hand={"replicaCount": 6, "isAbove": False, "isBelow": True})
recommender("zero replicas without tolerateZero returns the ready count", spec(min_r=1, max_r=10), scale(4),
            pods_ready(3) + [unready("test-pod-3")], 0, 0, 2,
            hand={"replicaCount": 3, "readyReplicas": 3, "isAbove": False, "isBelow": False})
recommender("zero replicas with tolerateZero proposes 0", spec(tz=True, min_r=1, max_r=10), scale(4), pods_ready(4),
            0, 0, 2, hand={"replicaCount": 0, "isBelow": True, "isAbove": False})
recommender("utilization is int64(observed*1000), truncated (1.001 -> 1000)", spec(min_r=1, max_r=10), scale(4),
            pods_ready(4), 5, 3, 6, observed=1.001, hand={"utilization": 1000, "replicaCount": 5},
            notes="1.001*1000 = 1000.9999999999999 in float64, truncated to 1000")
recommender("utilization of an exact observed value (0.5 -> 500)", spec(min_r=1, max_r=10), scale(4), pods_ready(4),
            4, 3, 6, observed=0.5, hand={"utilization": 500, "replicaCount": 4})
recommender("ready count clamped to status.replicas", spec(min_r=1, max_r=10), scale(3), pods_ready(4), 4, 3, 6,
            hand={"readyReplicas": 3, "replicaCount": 4})
recommender("no ready pod is an error", spec(min_r=1, max_r=10), scale(2), [unready("test-pod-0"),
            unready("test-pod-1")], 4, 3, 6,
            hand={"error_contains": "among the 2 pods, none is ready. Skipping recommendation"})
recommender("availability below minAvailableReplicaPercentage is an error", spec(min_r=1, max_r=10, min_av=60),
            scale(2), [pod("test-pod-0"), unready("test-pod-1")], 4, 3, 6,
            hand={"error_contains": "50 % of the pods are unready, will not autoscale /foo-bar-123"})

# ==========================================================================
# group_pods_resource_metric
# ==========================================================================


def gp(what, pods, with_metrics, resource="cpu", delay=10, skip=False, hand=None, notes=None):
    add("group_pods_resource_metric", what,
        {"targetName": TARGET, "readinessDelaySeconds": delay, "skipOwnerCheck": skip, "resource": resource,
         "pods": pods, "podsWithMetrics": with_metrics}, hand, notes)


gp("cpu: Ready transition exactly at start+delay is ready (strict >)",
   [pod("pod-a", start=-100, trans=-90)], ["pod-a"], hand={"readyPodCount": 1, "ignoredPods": []})
gp("cpu: Ready transition 1s before start+delay is ignored",
   [pod("pod-a", start=-100, trans=-91)], ["pod-a"], hand={"readyPodCount": 0, "ignoredPods": ["pod-a"]})
gp("cpu: delay 0 and Ready transition equal to start is ready",
   [pod("pod-a", start=-50, trans=-50)], ["pod-a"], delay=0, hand={"readyPodCount": 1})
gp("cpu: ZERO_TIME start with a recent transition is ready",
   [pod("pod-a", start="ZERO_TIME", trans=-5)], ["pod-a"], delay=600, hand={"readyPodCount": 1})
gp("cpu: Ready=Unknown counts as ready", [pod("pod-a", ready="Unknown", start=-600, trans=-300)], ["pod-a"],
   hand={"readyPodCount": 1, "ignoredPods": []})
gp("cpu: Running Ready=False is ignored", [pod("pod-a", ready="False", start=-600, trans=-300)], ["pod-a"],
   hand={"readyPodCount": 0, "ignoredPods": ["pod-a"]})
gp("cpu: no Ready condition or no startTime is ignored",
   [pod("pod-a", ready=None, start=-600), pod("pod-b", start=None, trans=-300)], ["pod-a", "pod-b"],
   hand={"readyPodCount": 0, "ignoredPods": ["pod-a", "pod-b"]})
gp("memory: Ready=False, no condition and no startTime all count as ready",
   [pod("pod-a", ready="False", start=-600, trans=-300), pod("pod-b", ready=None, start=-600),
    pod("pod-c", start=None, trans=-300)], ["pod-a", "pod-b", "pod-c"], resource="memory",
   hand={"readyPodCount": 3, "ignoredPods": []})
gp("memory: a Ready transition inside the delay does not matter",
   [pod("pod-a", start=-100, trans=-95)], ["pod-a"], resource="memory", hand={"readyPodCount": 1})
gp("Pending and Failed pods are ignored even without metrics",
   [pod("pod-a", phase="Pending"), pod("pod-b", phase="Failed"), pod("pod-c", start=-600, trans=-300)],
   ["pod-c"], hand={"readyPodCount": 1, "ignoredPods": ["pod-a", "pod-b"]})
gp("memory: Pending pod is ignored", [pod("pod-a", phase="Pending", start=-600, trans=-300)], ["pod-a"],
   resource="memory", hand={"readyPodCount": 0, "ignoredPods": ["pod-a"]})
gp("Succeeded is not special on the Resource path",
   [pod("pod-a", phase="Succeeded", start=-600, trans=-300)], ["pod-a"], hand={"readyPodCount": 1})
gp("owner-check miss is neither ready nor ignored",
   [pod("pod-a", start=-600, trans=-300, owner=[{"kind": "ReplicaSet", "name": "other-abc"}]),
    pod("pod-b", start=-600, trans=-300)], ["pod-a", "pod-b"], hand={"readyPodCount": 1, "ignoredPods": []})
gp("skipOwnerCheck makes the owner-check miss ready",
   [pod("pod-a", start=-600, trans=-300, owner=[{"kind": "ReplicaSet", "name": "other-abc"}]),
    pod("pod-b", start=-600, trans=-300)], ["pod-a", "pod-b"], skip=True, hand={"readyPodCount": 2})
gp("missing metrics: neither ready nor ignored, checked before readiness",
   [pod("pod-a", ready="False", start=-600, trans=-300), pod("pod-b", start=-600, trans=-300)], ["pod-b"],
   hand={"readyPodCount": 1, "ignoredPods": []})

# ==========================================================================
# ready_pods_count
# ==========================================================================


def rpc(what, pods, delay=10, skip=False, target=TARGET, hand=None, notes=None):
    add("ready_pods_count", what, {"targetName": target, "readinessDelaySeconds": delay, "skipOwnerCheck": skip,
                                   "pods": pods}, hand, notes)


def tp(i, **kw):
    kw.setdefault("start", -120)
    return pod(f"test-pod-{i}", **kw)


rpc("pending pod 29s after transition with delay 30 is ready", [tp(0), tp(1, phase="Pending", ready="False",
    trans=-29)], delay=30, hand={"readyCount": 2, "incorrectTargetPodsCount": 0})
rpc("pending pod 30s after transition with delay 30 is not ready", [tp(0), tp(1, phase="Pending", ready="False",
    trans=-30)], delay=30, hand={"readyCount": 1, "incorrectTargetPodsCount": 0})
rpc("pending pod transitioned just now with delay 1 is ready", [tp(0, phase="Pending", ready="False", trans=0)],
    delay=1, hand={"readyCount": 1})
rpc("pending Ready=True pod at exactly the delay is not ready", [tp(0), tp(1, phase="Pending", trans=-10)],
    delay=10, hand={"readyCount": 1})
rpc("pending pod without Ready condition is unready", [tp(0), tp(1, phase="Pending", ready=None)], delay=600,
    hand={"readyCount": 1, "incorrectTargetPodsCount": 0})
rpc("pending pod with ZERO_TIME transition is not ready", [tp(0), tp(1, phase="Pending", ready="False",
    trans="ZERO_TIME")], delay=6000, hand={"readyCount": 1})
rpc("pending terminating pod within the delay is unready", [tp(0), tp(1, phase="Pending", ready="False", trans=-1,
    deleting=True)], delay=30, hand={"readyCount": 1})
rpc("Running Ready=False and Ready=Unknown are unready but not incorrect",
    [tp(0), tp(1, ready="False", trans=-1), tp(2, ready="Unknown", trans=-1)], delay=30,
    hand={"readyCount": 1, "incorrectTargetPodsCount": 0})
rpc("Running Ready=True terminating pod is unready", [tp(0), tp(1, deleting=True)],
    hand={"readyCount": 1, "incorrectTargetPodsCount": 0})
rpc("Running Ready=True pod without startTime is unready", [tp(0), tp(1, start=None)], hand={"readyCount": 1})
rpc("phase Unknown with Ready=True is unready", [tp(0), tp(1, phase="Unknown")], hand={"readyCount": 1,
    "incorrectTargetPodsCount": 0})
rpc("Failed and Succeeded pods are incorrect", [tp(0), tp(1, phase="Failed"), tp(2, phase="Succeeded")],
    hand={"readyCount": 1, "incorrectTargetPodsCount": 2})
rpc("owner-check misses are incorrect; suffix heuristic claims foo-bar-123-base",
    [tp(0), tp(1, owner=[{"kind": "ReplicaSet", "name": "foo-bar-123-base"}]),
     tp(2, owner=[{"kind": "StatefulSet", "name": "foo-bar-123-0"}]),
     tp(3, owner=[{"kind": "ReplicaSet", "name": "foo-bar-1234-abc"}])],
    hand={"readyCount": 2, "incorrectTargetPodsCount": 2})
rpc("skipOwnerCheck counts foreign pods but Failed stays incorrect",
    [tp(0, owner=[{"kind": "StatefulSet", "name": "other"}]), tp(1, phase="Failed", owner=[])], skip=True,
    hand={"readyCount": 1, "incorrectTargetPodsCount": 1})
rpc("no ready pod: error counts every listed pod",
    [tp(0, ready="False"), tp(1, phase="Failed"), tp(2, owner=[{"kind": "ReplicaSet", "name": "x-y"}])],
    hand={"readyCount": 0, "incorrectTargetPodsCount": 2,
          "error": "among the 3 pods, none is ready. Skipping recommendation"})
rpc("pod owned directly by the target (any kind) matches", [tp(0, owner=[{"kind": "CassandraDatacenter",
    "name": "foo-bar-123"}])], hand={"readyCount": 1})

# ==========================================================================
# check_owner_ref
# ==========================================================================


def cor(what, owners, target, match):
    add("check_owner_ref", what, {"ownerReferences": owners, "targetName": target}, {"match": match})


cor("ReplicaSet without '-' is compared whole", [{"kind": "ReplicaSet", "name": "foo"}], "foo", True)
cor("ReplicaSet with trailing '-' is cut to the prefix", [{"kind": "ReplicaSet", "name": "foo-"}], "foo", True)
cor("target ReplicaSet with '-' rejects its own pods", [{"kind": "ReplicaSet", "name": "foo-bar"}], "foo-bar", False)
cor("suffix heuristic: foo-bar-123-base claimed by foo-bar-123",
    [{"kind": "ReplicaSet", "name": "foo-bar-123-base"}], "foo-bar-123", True)
cor("only the last '-' segment is cut", [{"kind": "ReplicaSet", "name": "foo-bar-abc"}], "foo", False)
cor("Deployment owner name is not cut", [{"kind": "Deployment", "name": "foo-abc"}], "foo", False)
cor("Deployment owner with exact name matches", [{"kind": "Deployment", "name": "foo"}], "foo", True)
cor("any of several owners may match", [{"kind": "StatefulSet", "name": "other"},
                                        {"kind": "ReplicaSet", "name": "foo-xyz"}], "foo", True)
cor("no owner references never match", [], "foo", False)
cor("kind comparison is exact: 'replicaset' is not cut", [{"kind": "replicaset", "name": "foo-abc"}], "foo", False)
cor("name comparison is case sensitive", [{"kind": "ReplicaSet", "name": "Foo-abc"}], "foo", False)
cor("double dash keeps the first dash", [{"kind": "ReplicaSet", "name": "foo--x"}], "foo", False)

# ==========================================================================
# scale_up_limit / scale_down_limit
# ==========================================================================


def sul(what, factor, current, limit):
    add("scale_up_limit", what, {"scaleUpLimitFactor": Q(factor), "currentReplicas": current}, {"limit": limit})


def sdl(what, factor, current, limit):
    add("scale_down_limit", what, {"scaleDownLimitFactor": Q(factor), "currentReplicas": current}, {"limit": limit})


sul("factor 0 disables upscaling", "0", 10, 10)
sul("fractional factor 400m is not 0 (Value rounds up) so +1", "400m", 10, 11)
sul("factor 1m still gives the minimum step of 1", "1m", 500, 501)
sul("factor above 100 (150 % of 10)", "150", 10, 25)
sul("factor 1000 (1000 % of 7)", "1000", 7, 77)
sul("floor of 29 % of 10 is 2", "29", 10, 12)
sul("minimum step 1 when 1 % of 1 floors to 0", "1", 1, 2)
sul("current 0 still steps by 1", "50", 0, 1)
sul("fractional percentage 12.5 % of 8 = 1", "12500m", 8, 9)
sul("float order: 32.3/1000*1000.. gives 322.99999999999994 -> 322", "32300m", 1000, 1322)

sdl("factor 0 disables downscaling", "0", 10, 10)
sdl("fractional factor 400m is not 0 (Value rounds up) so -1", "400m", 10, 9)
sdl("factor 99.999 of 1000 = 999.99 -> 999", "99999m", 1000, 1)
sdl("minimum step 1 takes 1 to 0", "50", 1, 0)
sdl("factor 100 takes everything", "100", 10, 0)
sdl("floor of 29 % of 10 is 2", "29", 10, 8)
sdl("current 0 gives -1 (minimum step)", "20", 0, -1)
sdl("float order: 32.3 % of 1000 floors to 322", "32300m", 1000, 678)

# ==========================================================================
# normalize_desired_replicas
# ==========================================================================


def ndr(what, mn, mx, up, down, current, desired, ready, replicas, cond):
    add("normalize_desired_replicas", what,
        {"minReplicas": mn, "maxReplicas": mx, "scaleUpLimitFactor": Q(up), "scaleDownLimitFactor": Q(down),
         "currentReplicas": current, "desiredReplicas": desired, "readyReplicas": ready},
        {"replicas": replicas, "condition": cond, "reason": ref.REASONS[cond]})


ndr("min 0: desired 0 becomes 1 with empty condition", 0, 10, "50", "20", 5, 0, 5, 1, "")
ndr("min 0: no down-limit is applied", 0, 20, "50", "20", 10, 2, 10, 2, "DesiredWithinRange")
ndr("0 < ready < minAllowed cancels the downscale", 1, 20, "50", "20", 10, 2, 5, 10, "ScaleDownLimit")
ndr("ready 0 keeps the rate-limited downscale", 1, 20, "50", "20", 10, 2, 0, 8, "ScaleDownLimit")
ndr("ready equal to minAllowed keeps the rate-limited downscale", 1, 20, "50", "20", 10, 2, 8, 8, "ScaleDownLimit")
ndr("ready one below minAllowed cancels the downscale", 1, 20, "50", "20", 10, 2, 7, 10, "ScaleDownLimit")
ndr("min above the down limit with few ready pods returns current", 30, 80, "30", "70", 50, 10, 20, 50,
    "ScaleDownLimit")
ndr("desired equal to the down limit is within range", 1, 20, "50", "20", 10, 8, 10, 8, "DesiredWithinRange")
ndr("desired below min but not below the down limit: TooFewReplicas", 10, 20, "50", "20", 10, 9, 10, 10,
    "TooFewReplicas")
ndr("desired equal to the up limit is within range", 1, 20, "50", "20", 10, 15, 10, 15, "DesiredWithinRange")
ndr("desired one above the up limit: ScaleUpLimit", 1, 20, "50", "20", 10, 16, 10, 15, "ScaleUpLimit")
ndr("ScaleUpLimit reported although max binds", 1, 12, "50", "20", 10, 16, 10, 12, "ScaleUpLimit")
ndr("up factor 0 pins upscales to current", 1, 20, "0", "20", 10, 14, 10, 10, "ScaleUpLimit")
ndr("down factor 0 pins downscales to current", 1, 20, "50", "0", 10, 4, 10, 10, "ScaleDownLimit")
ndr("desired 0 with current 5 is bounded by the down limit", 1, 10, "50", "20", 5, 0, 5, 4, "ScaleDownLimit")
ndr("fractional up factor 400m allows +1", 1, 20, "400m", "20", 10, 14, 10, 11, "ScaleUpLimit")
ndr("desired equal to current is within range", 1, 20, "50", "20", 10, 10, 10, 10, "DesiredWithinRange")
ndr("README example: 30 % of 10 with 14 recommended gives 13", 1, 20, "30", "30", 10, 14, 10, 13, "ScaleUpLimit")

# ==========================================================================
# should_scale
# ==========================================================================


def ss(what, current, desired, stable, windows, status, expected, notes=None):
    down_w, up_w, up_d, down_d = windows
    add("should_scale", what,
        {"currentReplicas": current, "desiredReplicas": desired, "isStable": stable,
         "spec": {"downscaleForbiddenWindowSeconds": down_w, "upscaleForbiddenWindowSeconds": up_w,
                  "upscaleDelayAboveWatermarkSeconds": up_d, "downscaleDelayBelowWatermarkSeconds": down_d},
         "status": status}, {"shouldScale": expected}, notes)


def cond(t, s, o):
    return {"type": t, "status": s, "lastTransitionTimeOffsetSeconds": o}


ss("no lastScaleTime scales even when desired equals current", 5, 5, False, (300, 60, 0, 0),
   {"lastScaleTimeOffsetSeconds": None}, True)
ss("no lastScaleTime ignores a missing delay condition", 5, 3, False, (300, 60, 0, 600),
   {"lastScaleTimeOffsetSeconds": None, "conditions": []}, True)
ss("downscale window ends exactly now: allowed", 5, 3, False, (300, 60, 0, 0),
   {"lastScaleTimeOffsetSeconds": -300}, True)
ss("downscale window 1s left: refused", 5, 3, False, (300, 60, 0, 0), {"lastScaleTimeOffsetSeconds": -299}, False)
ss("upscale window ends exactly now: allowed", 5, 7, False, (300, 60, 0, 0), {"lastScaleTimeOffsetSeconds": -60},
   True)
ss("upscale window 1s left: refused", 5, 7, False, (300, 60, 0, 0), {"lastScaleTimeOffsetSeconds": -59}, False)
ss("upscale allowed while only the downscale window is active", 5, 6, False, (300, 60, 0, 0),
   {"lastScaleTimeOffsetSeconds": -100}, True)
ss("downscale refused while only the downscale window is active", 5, 4, False, (300, 60, 0, 0),
   {"lastScaleTimeOffsetSeconds": -100}, False)
ss("equal replicas never scale once lastScaleTime exists", 5, 5, False, (0, 0, 0, 0),
   {"lastScaleTimeOffsetSeconds": -1000}, False)
ss("zero windows with a scale just now: allowed", 5, 7, False, (0, 0, 0, 0), {"lastScaleTimeOffsetSeconds": 0}, True)
ss("upscale delay elapsed exactly (remaining 0): allowed", 5, 7, False, (300, 60, 120, 0),
   {"lastScaleTimeOffsetSeconds": -1000, "conditions": [cond("AboveHighWatermark", "True", -120)]}, True)
ss("upscale delay 1s remaining: refused", 5, 7, False, (300, 60, 120, 0),
   {"lastScaleTimeOffsetSeconds": -1000, "conditions": [cond("AboveHighWatermark", "True", -119)]}, False)
ss("upscale delay with condition False: refused", 5, 7, False, (300, 60, 120, 0),
   {"lastScaleTimeOffsetSeconds": -1000, "conditions": [cond("AboveHighWatermark", "False", -3600)]}, False)
ss("upscale delay with missing condition: refused", 5, 7, False, (300, 60, 120, 0),
   {"lastScaleTimeOffsetSeconds": -1000, "conditions": [cond("BelowLowWatermark", "True", -3600)]}, False)
ss("upscale delay bypassed in the stable regime", 5, 7, True, (300, 60, 120, 0),
   {"lastScaleTimeOffsetSeconds": -1000}, True)
ss("stable regime still honours the forbidden window", 5, 4, True, (300, 60, 0, 120),
   {"lastScaleTimeOffsetSeconds": -200}, False)
ss("downscale delay elapsed and window over: allowed", 5, 3, False, (300, 60, 0, 60),
   {"lastScaleTimeOffsetSeconds": -300, "conditions": [cond("BelowLowWatermark", "True", -60)]}, True)
ss("downscale delay elapsed but window active: refused", 5, 3, False, (300, 60, 0, 60),
   {"lastScaleTimeOffsetSeconds": -299, "conditions": [cond("BelowLowWatermark", "True", -60)]}, False)
ss("downscale delay 1s remaining: refused", 5, 3, False, (300, 60, 0, 60),
   {"lastScaleTimeOffsetSeconds": -3000, "conditions": [cond("BelowLowWatermark", "True", -59)]}, False)
ss("upscale ignores the downscale delay", 5, 7, False, (300, 60, 0, 600),
   {"lastScaleTimeOffsetSeconds": -3000, "conditions": [cond("BelowLowWatermark", "False", 0)]}, True)
ss("downscale uses BelowLowWatermark, not AboveHighWatermark", 5, 3, False, (300, 60, 60, 60),
   {"lastScaleTimeOffsetSeconds": -3000, "conditions": [cond("AboveHighWatermark", "True", -3000)]}, False)
ss("lastScaleTime in the future blocks even with zero windows", 5, 7, False, (0, 0, 0, 0),
   {"lastScaleTimeOffsetSeconds": 5}, False)

# ==========================================================================
# validation
# ==========================================================================

BASE = {"scaleTargetRef": {"kind": "Deployment", "name": "foo", "apiVersion": "apps/v1"}, "minReplicas": 1,
        "maxReplicas": 10, "tolerance": Q("100m"), "scaleUpLimitFactor": Q("50"), "scaleDownLimitFactor": Q("20"),
        "metrics": [], "recommender": None}


def ext_spec(name="deadbeef", labels=None, hw="8", lw="4", selector=True):
    e = {"metricName": name, "metricSelector": {"matchLabels": labels or {"label": "value"}} if selector else None,
         "highWatermark": Q(hw) if hw is not None else None, "lowWatermark": Q(lw) if lw is not None else None}
    return {"type": "External", "external": e}


def res_spec(name="cpu", hw="80", lw="40", selector=True):
    r = {"name": name, "metricSelector": {"matchLabels": {"app": "foo"}} if selector else None,
         "highWatermark": Q(hw) if hw is not None else None, "lowWatermark": Q(lw) if lw is not None else None}
    return {"type": "Resource", "resource": r}


def val(what, error, **changes):
    s = copy.deepcopy(BASE)
    s.update(changes)
    add("validation", what, {"spec": s}, {"error": error})


val("valid baseline", None)
val("empty kind", "the Spec.ScaleTargetRef should be populated, currently Kind: and/or Name:foo are not set properly",
    scaleTargetRef={"kind": "", "name": "foo", "apiVersion": "apps/v1"})
val("empty name", "the Spec.ScaleTargetRef should be populated, currently Kind:Deployment and/or Name: are not set "
    "properly", scaleTargetRef={"kind": "Deployment", "name": "", "apiVersion": "apps/v1"})
val("scaleTargetRef rule wins over minReplicas", "the Spec.ScaleTargetRef should be populated, currently Kind: "
    "and/or Name: are not set properly", scaleTargetRef={"kind": "", "name": "", "apiVersion": ""},
    minReplicas=None)
val("maxReplicas below minReplicas", "watermark pod autoscaler requires the minimum number of replicas to be "
    "configured and inferior to the maximum", minReplicas=5, maxReplicas=4)
val("minReplicas equal to maxReplicas is valid", None, minReplicas=5, maxReplicas=5)
val("minReplicas rule wins over tolerance", "watermark pod autoscaler requires the minimum number of replicas to be "
    "configured and inferior to the maximum", minReplicas=None, tolerance=Q("2"))
val("tolerance exactly 1 is valid", None, tolerance=Q("1"))
val("tolerance 0 is valid", None, tolerance=Q("0"))
val("tolerance 1001m", "tolerance should be set as a quantity between 0 and 1, currently set to : 1001m, which is "
    "100%", tolerance=Q("1001m"))
val("tolerance 1.5 printed canonically", "tolerance should be set as a quantity between 0 and 1, currently set to : "
    "1500m, which is 150%", tolerance=Q("1.5"))
val("negative tolerance", "tolerance should be set as a quantity between 0 and 1, currently set to : -100m, which "
    "is -10%", tolerance=Q("-100m"))
val("tolerance rule wins over nil factors", "tolerance should be set as a quantity between 0 and 1, currently set "
    "to : 2, which is 200%", tolerance=Q("2"), scaleUpLimitFactor=None)
val("only scaleDownLimitFactor nil", "scaleuplimitfactor and scaledownlimitfactor can't be nil, make sure the WPA "
    "spec is defaulted", scaleDownLimitFactor=None)
val("nil factor rule wins over negative up factor", "scaleuplimitfactor and scaledownlimitfactor can't be nil, make "
    "sure the WPA spec is defaulted", scaleUpLimitFactor=Q("-5"), scaleDownLimitFactor=None)
val("negative up factor wins over invalid down factor", "scaleuplimitfactor should be set as a positive quantity, "
    "currently set to : -2, which could yield a -2% growth", scaleUpLimitFactor=Q("-2"),
    scaleDownLimitFactor=Q("150"))
val("up factor 0 and 1000 are valid", None, scaleUpLimitFactor=Q("1000"), scaleDownLimitFactor=Q("0"))
val("up factor 0 is valid", None, scaleUpLimitFactor=Q("0"))
val("down factor exactly 100 is refused", "scaledownlimitfactor should be set as a quantity between 0 and 100 "
    "(exc.), currently set to : 100, which could yield a 100% decrease", scaleDownLimitFactor=Q("100"))
val("down factor 99999m is valid", None, scaleDownLimitFactor=Q("99999m"))
val("negative down factor", "scaledownlimitfactor should be set as a quantity between 0 and 100 (exc.), currently "
    "set to : -5, which could yield a -5% decrease", scaleDownLimitFactor=Q("-5"))
val("down factor 2000 printed as 2k", "scaledownlimitfactor should be set as a quantity between 0 and 100 (exc.), "
    "currently set to : 2k, which could yield a 2000% decrease", scaleDownLimitFactor=Q("2000"))
val("recommender and metrics together", "recommender and metrics can't be set at the same time, please choose one",
    recommender=copy.deepcopy(RECO), metrics=[ext_spec()])
val("recommender alone (no metrics) is valid", None, recommender=copy.deepcopy(RECO))
val("External type with nil external", "metric.External is nil while metric.Type is 'External'",
    metrics=[{"type": "External", "external": None}])
val("External metric without selector", "missing Labels for the External metric deadbeef",
    metrics=[ext_spec(selector=False)])
val("missing selector reported before inverted watermarks", "missing Labels for the External metric deadbeef",
    metrics=[ext_spec(selector=False, hw="1", lw="2")])
val("Resource metric without selector", "missing Labels for the Resource metric cpu",
    metrics=[res_spec(selector=False)])
val("inverted External watermarks with sorted labels", "low WaterMark of External metric deadbeef{map[a:1 b:2 "
    "zeta:z]} has to be strictly inferior to the High Watermark",
    metrics=[ext_spec(labels={"zeta": "z", "b": "2", "a": "1"}, hw="3", lw="4")])
val("inverted watermarks by 1m", "low WaterMark of External metric deadbeef{map[label:value]} has to be strictly "
    "inferior to the High Watermark", metrics=[ext_spec(hw="4", lw="4001m")])
val("equal watermarks are valid", None, metrics=[ext_spec(hw="4", lw="4")])
val("only high watermark is valid", None, metrics=[ext_spec(hw="4", lw=None)])
val("only low watermark is valid", None, metrics=[ext_spec(hw=None, lw="4")])
val("valid Resource metric", None, metrics=[res_spec()])
val("unknown metric type", "incorrect metric.Type: 'Pods'", metrics=[{"type": "Pods"}])
val("first metric valid, second invalid", "incorrect metric.Type: 'Object'",
    metrics=[ext_spec(), {"type": "Object"}])
val("first failing metric wins", "missing Labels for the External metric first",
    metrics=[ext_spec(name="first", selector=False), {"type": "Object"}])


# ==========================================================================

def main():
    public = json.load(open(PUBLIC))
    public_inputs = {json.dumps([v["function"], v["inputs"]], sort_keys=True) for v in public["vectors"]}
    seen = set()
    for v in VECTORS:
        key = json.dumps([v["function"], v["inputs"]], sort_keys=True)
        if key in public_inputs:
            raise AssertionError(f"copy of a public vector: {v['source']}")
        if key in seen:
            raise AssertionError(f"duplicate: {v['source']}")
        seen.add(key)
    from collections import Counter
    counts = Counter(v["function"] for v in VECTORS)
    doc = {
        "meta": {
            "generator": "reference:tests/reference/reference.py (independent Python reference written from "
                         "wpa-semantics.md), cases in tests/reference/gen_extra.py",
            "based_on_spec": "wpa-semantics.md (upstream commit 70e8425)",
            "vector_count": len(VECTORS),
            "counts": dict(counts),
            "note": "All expected values are derived from the written spec, not from upstream tests. Each vector "
                    "was evaluated with evaluation offsets eps in {1ms, 3ms, 500ms, 999ms} and kept only if the "
                    "result does not depend on eps.",
        },
        "conventions": public["conventions"],
        "vectors": VECTORS,
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {len(VECTORS)} vectors to {OUT}")
    for k, n in sorted(counts.items()):
        print(f"  {k:28s} {n}")


if __name__ == "__main__":
    main()
