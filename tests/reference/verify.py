#!/usr/bin/env python3
"""Check reference.py against a vector file (default: the public upstream vectors).

Usage: python3 verify.py [vectors.json ...]
Prints every mismatch and a per-function summary; exit status 1 on any mismatch.
Both 'expected' and 'derived' values are checked (reported separately).
Every time-dependent vector is evaluated with several evaluation offsets
eps in (0, 1) s to make sure the result does not depend on it.
"""

import json
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402

FUNCTIONS = ["replica_calculation", "group_pods_resource_metric", "ready_pods_count", "check_owner_ref",
             "scale_up_limit", "scale_down_limit", "normalize_desired_replicas", "should_scale", "validation"]
EPS_VALUES = [0.001, 0.003, 0.5, 0.999]


def run(fn, inp, eps):
    """Return the reference output as a dict of the vector's expected-key names."""
    if fn == "replica_calculation":
        out = ref.replica_calculation(inp, eps)
        if "error" in out:
            return {"error": out["error"]}
        res = dict(out)
        if "timestampOffsetSeconds" in res:
            res["timestamp"] = "equals recommenderResponse timestamp" \
                if res["timestampOffsetSeconds"] == inp["recommenderResponse"].get("timestampOffsetSeconds") else "?"
        return res
    if fn == "group_pods_resource_metric":
        ready, ignored, _, _ = ref.group_pods(inp["pods"], inp["podsWithMetrics"], inp["resource"],
                                              inp["targetName"], inp["readinessDelaySeconds"], inp["skipOwnerCheck"])
        return {"readyPodCount": len(ready), "ignoredPods": sorted(ignored)}
    if fn == "ready_pods_count":
        ready, incorrect, err = ref.ready_pods_count(inp["pods"], inp["targetName"], inp["readinessDelaySeconds"],
                                                     inp["skipOwnerCheck"], eps)
        return {"readyCount": ready, "incorrectTargetPodsCount": incorrect, "error": err}
    if fn == "check_owner_ref":
        return {"match": ref.check_owner_ref(inp["ownerReferences"], inp["targetName"])}
    if fn == "scale_up_limit":
        return {"limit": ref.scale_up_limit(inp["scaleUpLimitFactor"], inp["currentReplicas"])}
    if fn == "scale_down_limit":
        return {"limit": ref.scale_down_limit(inp["scaleDownLimitFactor"], inp["currentReplicas"])}
    if fn == "normalize_desired_replicas":
        r, c, reason = ref.normalize_desired_replicas(inp["minReplicas"], inp["maxReplicas"],
                                                      inp["scaleUpLimitFactor"], inp["scaleDownLimitFactor"],
                                                      inp["currentReplicas"], inp["desiredReplicas"],
                                                      inp["readyReplicas"])
        return {"replicas": r, "condition": c, "reason": reason}
    if fn == "should_scale":
        return {"shouldScale": ref.should_scale(inp["currentReplicas"], inp["desiredReplicas"], inp["isStable"],
                                                inp["spec"], inp.get("status"), eps)}
    if fn == "validation":
        return {"error": ref.check_wpa_validity(inp["spec"])}
    raise ValueError(fn)


def compare(fn, key, want, got):
    if key == "error_contains":
        return got.get("error") is not None and want in got["error"]
    if key == "ignoredPods":
        return sorted(want) == sorted(got.get(key, []))
    return key in got and got[key] == want


def check_quantities(obj, path, problems):
    """Every {quantity, value, milli} object must be self-consistent and canonical."""
    if isinstance(obj, dict):
        if set(obj.keys()) == {"quantity", "value", "milli"}:
            v = ref.parse_quantity(obj["quantity"])
            if ref.milli_of_value(v) != obj["milli"]:
                problems.append(f"{path}: milli {obj['milli']} != parsed {ref.milli_of_value(v)}")
            if abs(float(v) - obj["value"]) > 1e-9 * max(1.0, abs(float(v))):
                problems.append(f"{path}: value {obj['value']} != parsed {float(v)}")
            if ref.canonical_quantity(v) != obj["quantity"]:
                problems.append(f"{path}: {obj['quantity']!r} is not canonical ({ref.canonical_quantity(v)!r})")
            return
        for k, x in obj.items():
            check_quantities(x, f"{path}.{k}", problems)
    elif isinstance(obj, list):
        for i, x in enumerate(obj):
            check_quantities(x, f"{path}[{i}]", problems)


def main(paths):
    total_bad = 0
    for path in paths:
        data = json.load(open(path))
        stats = Counter()
        bad = Counter()
        print(f"== {path}")
        for idx, v in enumerate(data["vectors"]):
            fn = v["function"]
            if fn not in FUNCTIONS:
                continue
            stats[fn] += 1
            problems = []
            check_quantities(v["inputs"], "inputs", problems)
            outs = []
            for eps in EPS_VALUES:
                try:
                    outs.append(run(fn, v["inputs"], eps))
                except ref.UndefinedBehaviour as e:
                    outs.append({"undefined": str(e)})
            if any(o != outs[0] for o in outs):
                problems.append(f"result depends on eps: {outs}")
            got = outs[0]
            for section in ("expected", "derived"):
                for key, want in (v.get(section) or {}).items():
                    if not compare(fn, key, want, got):
                        problems.append(f"{section}.{key}: want {want!r} got {got.get(key, got)!r}")
            if problems:
                bad[fn] += 1
                total_bad += 1
                print(f"MISMATCH #{idx} {v.get('source')}")
                for p in problems:
                    print("   ", p)
        for fn in FUNCTIONS:
            if stats[fn]:
                print(f"  {fn:28s} {stats[fn] - bad[fn]:3d}/{stats[fn]:3d} match")
        print(f"  TOTAL {sum(stats.values()) - sum(bad.values())}/{sum(stats.values())} match")
    return 1 if total_bad else 0


if __name__ == "__main__":
    args = sys.argv[1:] or [os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "upstream-vectors.json")]
    sys.exit(main(args))
