"""Independent Python reference of the Watermark Pod Autoscaler decision rules.

Written from the WPA semantics specification only (sections 3, 6, 8, 9, 10.2,
16, 17 and "Our decisions").  Standard library only.  Inputs use the JSON shapes of
vectors-public.json (quantities as {quantity, value, milli}; times as integer
offsets in seconds relative to the evaluation instant, "ZERO_TIME" or null).

Time model (conventions.time): a fixture time with offset `o` is the instant
`o` seconds after the fixture base; evaluation happens `eps` seconds after the
base (a few milliseconds, 0 < eps < 1).  Every time-dependent function takes an
`eps` argument so callers can check that a result does not depend on it.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

DEFAULT_EPS = 0.003          # "a few milliseconds BEFORE evaluation"
ZERO_TIME = "ZERO_TIME"
# Go zero time (0001-01-01) seen from ~2026: about 63.9e9 seconds in the past.
ZERO_TIME_SECONDS = -63_900_000_000.0

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1


class UndefinedBehaviour(Exception):
    """Raised where Go's result is implementation defined (NaN/Inf/overflow -> int)."""


# --------------------------------------------------------------------------
# Kubernetes quantities
# --------------------------------------------------------------------------

_SUFFIX = {
    "n": Fraction(1, 10 ** 9), "u": Fraction(1, 10 ** 6), "m": Fraction(1, 1000), "": Fraction(1),
    "k": Fraction(10 ** 3), "M": Fraction(10 ** 6), "G": Fraction(10 ** 9), "T": Fraction(10 ** 12),
    "P": Fraction(10 ** 15), "E": Fraction(10 ** 18),
    "Ki": Fraction(2 ** 10), "Mi": Fraction(2 ** 20), "Gi": Fraction(2 ** 30), "Ti": Fraction(2 ** 40),
    "Pi": Fraction(2 ** 50), "Ei": Fraction(2 ** 60),
}
_QTY_RE = re.compile(
    r"^(?P<sign>[+-]?)(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<exp>[eE][+-]?[0-9]+)|(?P<suf>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?))$")


def parse_quantity(s: str) -> Fraction:
    """Exact value of a quantity string (full Kubernetes grammar)."""
    m = _QTY_RE.match(s.strip())
    if not m:
        raise ValueError(f"quantities must match the regular expression: {s!r}")
    v = Fraction(m.group("num") if not m.group("num").endswith(".") else m.group("num")[:-1])
    if m.group("exp"):
        v *= Fraction(10) ** int(m.group("exp")[1:])
    else:
        v *= _SUFFIX[m.group("suf") or ""]
    return -v if m.group("sign") == "-" else v


def _ceil_away_from_zero(x: Fraction) -> int:
    return math.ceil(x) if x >= 0 else -math.ceil(-x)


def milli_of_value(v: Fraction) -> int:
    """MilliValue(): finer-than-milli precision rounds away from zero."""
    return _ceil_away_from_zero(v * 1000)


def value_of_value(v: Fraction) -> int:
    """Value(): rounds away from zero at unit scale (0.4 -> 1)."""
    return _ceil_away_from_zero(v)


def milli(q) -> int:
    """Milli-value of a {quantity, value, milli} object (the integer is authoritative)."""
    if q is None:
        raise ValueError("nil quantity")
    return int(q["milli"])


def value(q) -> int:
    """Value() of a quantity object.  ceil_away(ceil_away(1000x)/1000) == ceil_away(x)."""
    if q is None:
        raise ValueError("nil quantity")
    if "quantity" in q and q["quantity"] is not None:
        return value_of_value(parse_quantity(q["quantity"]))
    return _ceil_away_from_zero(Fraction(int(q["milli"]), 1000))


def canonical_quantity(v: Fraction) -> str:
    """Canonical DecimalSI string (Quantity.String()) of an exact decimal value.

    Mantissa without trailing zero groups, exponent a multiple of 3, suffix
    n/u/m/""/k/M/G/T/P/E (e.g. 0.1 -> 100m, 1.5 -> 1500m, 2000 -> 2k, 1500 -> 1500).
    Values finer than nano are rounded up to nano as Kubernetes does.
    """
    if v == 0:
        return "0"
    sign = "-" if v < 0 else ""
    a = abs(v)
    # express as integer mantissa * 10^exp with the smallest |mantissa|
    exp = 0
    while a.denominator != 1:
        a *= 10
        exp -= 1
        if exp < -9:
            a = Fraction(math.ceil(a))  # round up to nano precision
            break
    mant = int(a)
    while exp < -9:
        mant = -(-mant // 10)
        exp += 1
    while mant % 10 == 0:
        mant //= 10
        exp += 1
    r = exp % 3  # Python: non-negative remainder
    mant *= 10 ** r
    exp -= r
    suffixes = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}
    while exp > 18:
        mant *= 1000
        exp -= 3
    return f"{sign}{mant}{suffixes[exp]}"


def qty(s) -> dict:
    """Build a {quantity, value, milli} object from a string/number (canonicalised)."""
    v = parse_quantity(str(s)) if not isinstance(s, Fraction) else s
    return {"quantity": canonical_quantity(v), "value": float(v), "milli": milli_of_value(v)}


# --------------------------------------------------------------------------
# Go-like numeric helpers
# --------------------------------------------------------------------------

def go_int32(x: float) -> int:
    """float64 -> int32 conversion (truncation).  NaN/Inf/out of range is undefined in Go."""
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        raise UndefinedBehaviour(f"int32({x})")
    t = math.trunc(x)
    if t < INT32_MIN or t > INT32_MAX:
        raise UndefinedBehaviour(f"int32({x}) overflows")
    return int(t)


def go_int64(x: float) -> int:
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        raise UndefinedBehaviour(f"int64({x})")
    return int(math.trunc(x))


def go_div_trunc(a: int, b: int) -> int:
    """Go integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def go_fmod(a: float, b: float) -> float:
    return math.fmod(a, b)


def go_format_0f(x: float) -> str:
    """fmt %.0f: round half to even on exact ties (Python's format does the same)."""
    s = format(x, ".0f")
    return s


# --------------------------------------------------------------------------
# Time helpers
# --------------------------------------------------------------------------

def fixture_time(offset):
    """Seconds relative to the fixture base; None when absent."""
    if offset is None:
        return None
    if offset == ZERO_TIME:
        return ZERO_TIME_SECONDS
    return float(offset)


def ready_condition(pod):
    for c in pod.get("conditions") or []:
        if c.get("type") == "Ready":
            return c
    return None


# --------------------------------------------------------------------------
# Owner check, label selectors
# --------------------------------------------------------------------------

def check_owner_ref(owner_references, target_name) -> bool:
    """Pass if any owner matches; ReplicaSet names are cut at their last '-'."""
    for o in owner_references or []:
        name = o.get("name", "")
        if o.get("kind") == "ReplicaSet" and "-" in name:
            name = name[: name.rfind("-")]
        if name == target_name:
            return True
    return False


def selector_matches(selector: str, labels: dict) -> bool:
    """Equality-based label selector string ("a=b,c!=d"); empty matches everything."""
    labels = labels or {}
    selector = (selector or "").strip()
    if not selector:
        return True
    for term in selector.split(","):
        term = term.strip()
        if "!=" in term:
            k, v = (x.strip() for x in term.split("!=", 1))
            if labels.get(k) == v:
                return False
        elif "==" in term or "=" in term:
            k, v = (x.strip() for x in re.split(r"==?", term, maxsplit=1))
            if labels.get(k) != v:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif re.fullmatch(r"[A-Za-z0-9_.\-/]+", term):
            if term not in labels:
                return False
        else:
            raise NotImplementedError(f"unsupported selector term {term!r}")
    return True


# --------------------------------------------------------------------------
# Pod eligibility (section 6.5)
# --------------------------------------------------------------------------

def ready_pods_count(pods, target_name, readiness_delay_seconds, skip_owner_check, eps=DEFAULT_EPS):
    """External/Recommender readiness.  Returns (ready, incorrect, error_or_None)."""
    now = eps
    ready = 0
    incorrect = 0
    for pod in pods:
        if not skip_owner_check and not check_owner_ref(pod.get("ownerReferences"), target_name):
            incorrect += 1
            continue
        phase = pod.get("phase")
        if phase in ("Failed", "Succeeded"):
            incorrect += 1
            continue
        cond = ready_condition(pod)
        if cond is None or pod.get("startTimeOffsetSeconds") is None or pod.get("deletionTimestampSet"):
            continue  # unready
        if phase == "Running" and cond.get("status") == "True":
            ready += 1
            continue
        if phase == "Pending":
            elapsed = now - fixture_time(cond.get("lastTransitionTimeOffsetSeconds"))
            if elapsed < readiness_delay_seconds:
                ready += 1
    if ready == 0:
        return 0, incorrect, f"among the {len(pods)} pods, none is ready. Skipping recommendation"
    return ready, incorrect, None


def group_pods(pods, pods_with_metrics, resource, target_name, readiness_delay_seconds, skip_owner_check):
    """Resource-path grouping.  Returns (ready_names, ignored_names, missing_names, owner_miss_names)."""
    ready, ignored, missing, owner_miss = [], [], [], []
    with_metrics = set(pods_with_metrics)
    for pod in pods:
        name = pod["name"]
        if not skip_owner_check and not check_owner_ref(pod.get("ownerReferences"), target_name):
            owner_miss.append(name)
            continue
        if pod.get("phase") in ("Failed", "Pending"):
            ignored.append(name)
            continue
        if name not in with_metrics:
            missing.append(name)
            continue
        if resource == "cpu":
            cond = ready_condition(pod)
            start = fixture_time(pod.get("startTimeOffsetSeconds"))
            if cond is None or start is None:
                ignored.append(name)
                continue
            trans = fixture_time(cond.get("lastTransitionTimeOffsetSeconds"))
            if cond.get("status") == "False" or start + readiness_delay_seconds > trans:
                ignored.append(name)
                continue
        ready.append(name)
    return ready, ignored, missing, owner_miss


# --------------------------------------------------------------------------
# Watermark comparison, modulo, convergence (6.6 - 6.8)
# --------------------------------------------------------------------------

def round_up_to_modulo(rc: int, modulo: int) -> int:
    r = go_fmod(float(rc), float(modulo))
    if r > 0:
        rc = go_int32(float(rc) + (modulo - r))
    return rc


def adjust_up(current: int, rc: int, modulo: int) -> int:
    rc = round_up_to_modulo(rc, modulo)
    return current if rc < current else rc


def adjust_down(current: int, rc: int, modulo: int) -> int:
    rc = round_up_to_modulo(rc, modulo)
    return current if rc > current else rc


def cap(x: int, a: int, b: int) -> int:
    return max(a, min(x, b))


def converge(current, lower_bound, upper_bound, mode, modulo):
    if mode == "highwatermark":
        opt = max(current - modulo, 1)
        return current if opt < lower_bound else opt
    if mode == "lowwatermark":
        opt = current + modulo
        return current if opt > upper_bound else opt
    return current


def converge_for_usage(current, ready, usage, lw, hw, spec):
    min_replicas = spec.get("minReplicas")
    min_r = min_replicas if (min_replicas is not None and min_replicas > 0) else 1
    max_r = spec.get("maxReplicas") or 0
    if hw == 0:
        lower = current
    else:
        lower = cap(go_int32(math.ceil(float(ready) / float(hw) * usage)), min_r, max_r)
    if lw == 0:
        upper = current
    else:
        upper = cap(go_int32(math.floor(float(ready) / float(lw) * usage)), min_r, max_r)
    return converge(current, lower, upper, spec.get("convergeTowardsWatermark", ""),
                    spec.get("replicaScalingAbsoluteModulo") or 1)


def get_replica_count(current, ready, usage, lw, hw, tol, spec):
    """Returns (replicaCount, utilization, isAbove, isBelow)."""
    modulo = spec.get("replicaScalingAbsoluteModulo") or 1
    utilization = go_int64(usage)
    adjusted_hm = float(hw + go_div_trunc(hw * tol, 1000))
    adjusted_lm = float(lw - go_div_trunc(lw * tol, 1000))
    if usage > adjusted_hm:
        if hw == 0:
            raise UndefinedBehaviour("division by zero high watermark")
        rc = go_int32(math.ceil(float(ready) * usage / float(hw)))
        return adjust_up(current, rc, modulo), utilization, True, False
    if usage < adjusted_lm:
        if lw == 0:
            raise UndefinedBehaviour("division by zero low watermark")
        rc = go_int32(math.floor(float(ready) * usage / float(lw)))
        rc = max(rc, 1)
        return adjust_down(current, rc, modulo), utilization, False, True
    return converge_for_usage(current, ready, usage, lw, hw, spec), utilization, False, False


# --------------------------------------------------------------------------
# Replica calculator (6.4)
# --------------------------------------------------------------------------

def _list_pods(inputs):
    scale = inputs["scale"]
    ns = scale.get("namespace") or ""
    out = []
    for p in inputs.get("pods") or []:
        if ns and p.get("namespace", "") != ns:
            continue
        if selector_matches(scale.get("selector", ""), p.get("labels")):
            out.append(p)
    return out


def _ready_and_ratio(inputs, pods, eps):
    """External/Recommender steps 2-5.  Returns (ready, error)."""
    spec, scale = inputs["spec"], inputs["scale"]
    if not pods:
        return None, "no pods returned by selector while calculating replica count"
    ready, incorrect, err = ready_pods_count(pods, scale["name"], spec.get("readinessDelaySeconds") or 0,
                                             inputs.get("skipOwnerCheck", False), eps)
    if err:
        return None, (f"unable to get the number of ready pods across all namespaces for "
                      f"{scale.get('selector', '')}: {err}")
    if ready > scale["statusReplicas"]:
        ready = scale["statusReplicas"]
    ratio = go_div_trunc(100 * ready, len(pods) - incorrect)
    if ratio < (spec.get("minAvailableReplicaPercentage") or 0):
        return None, (f"{ratio} % of the pods are unready, will not autoscale "
                      f"{scale.get('namespace', '')}/{scale['name']}")
    return ready, None


def replica_calculation(inputs, eps=DEFAULT_EPS):
    """Returns dict(replicaCount, utilization, readyReplicas, isAbove, isBelow, ...) or {'error': msg}."""
    mtype = inputs["metricType"]
    if mtype == "External":
        return _external(inputs, eps)
    if mtype == "Resource":
        return _resource(inputs, eps)
    if mtype == "Recommender":
        return _recommender(inputs, eps)
    raise ValueError(mtype)


def _external(inputs, eps):
    spec, scale, metric = inputs["spec"], inputs["scale"], inputs["metric"]
    pods = _list_pods(inputs)
    ready, err = _ready_and_ratio(inputs, pods, eps)
    if err:
        return {"error": err}
    values = inputs.get("externalMetricValues") or []
    if not values:
        return {"error": "unable to get external metric: no metrics returned from external metrics API"}
    total = sum(milli(v) for v in values)
    if total == 0 and not spec.get("tolerateZero", False):
        return {"replicaCount": ready, "utilization": 0, "readyReplicas": ready,
                "isAbove": False, "isBelow": False}
    usage = float(total) / (float(ready) if spec.get("algorithm") == "average" else 1.0)
    rc, util, above, below = get_replica_count(scale["specReplicas"], ready, usage,
                                               milli(metric["lowWatermark"]), milli(metric["highWatermark"]),
                                               milli(spec["tolerance"]), spec)
    return {"replicaCount": rc, "utilization": util, "readyReplicas": ready, "isAbove": above, "isBelow": below}


def _resource(inputs, eps):
    spec, scale, metric = inputs["spec"], inputs["scale"], inputs["metric"]
    pod_metrics = inputs.get("podMetrics") or {}
    if not pod_metrics:
        return {"error": "unable to get resource metric: no metrics returned from resource metrics API"}
    pods = _list_pods(inputs)
    if not pods:
        return {"error": "no pods returned by selector while calculating replica count"}
    ready, ignored, _missing, _owner = group_pods(pods, list(pod_metrics.keys()), metric["name"], scale["name"],
                                                  spec.get("readinessDelaySeconds") or 0,
                                                  inputs.get("skipOwnerCheck", False))
    denom = len(pods) - len(ignored)
    if denom == 0:
        raise UndefinedBehaviour("zero denominator in the Resource path (error text unspecified)")
    ratio = go_div_trunc(100 * len(ready), denom)
    if ratio < (spec.get("minAvailableReplicaPercentage") or 0):
        return {"error": f"{ratio} % of the pods are unready, will not autoscale "
                         f"{scale.get('namespace', '')}/{scale['name']}"}
    remaining = {k: v for k, v in pod_metrics.items() if k not in set(ignored)}
    if not remaining:
        return {"error": "did not receive metrics for any ready pods"}
    total = sum(milli(v) for v in remaining.values())
    if spec.get("algorithm") == "average":
        if len(ready) == 0:
            raise UndefinedBehaviour("average with zero ready pods")
        usage = float(total) / float(len(ready))
    else:
        usage = float(total) / 1.0
    rc, util, above, below = get_replica_count(scale["specReplicas"], len(ready), usage,
                                               milli(metric["lowWatermark"]), milli(metric["highWatermark"]),
                                               milli(spec["tolerance"]), spec)
    return {"replicaCount": rc, "utilization": util, "readyReplicas": len(ready), "isAbove": above,
            "isBelow": below}


def _recommender(inputs, eps):
    spec, scale = inputs["spec"], inputs["scale"]
    pods = _list_pods(inputs)
    ready, err = _ready_and_ratio(inputs, pods, eps)
    if err:
        return {"error": err}
    resp = inputs["recommenderResponse"]
    if "error" in resp and resp["error"]:
        return {"error": f"unable to get external recommendation: {resp['error']}"}
    recommended = resp.get("replicas", 0)
    if recommended == 0 and not spec.get("tolerateZero", False):
        return {"replicaCount": ready, "readyReplicas": ready, "isAbove": False, "isBelow": False,
                "shortCircuit": True}
    utilization = go_int64(float(resp.get("observedTargetValue", 0)) * 1000)
    current = scale["specReplicas"]
    lower = resp.get("replicasLowerBound", 0)
    upper = resp.get("replicasUpperBound", 0)
    modulo = spec.get("replicaScalingAbsoluteModulo") or 1
    is_below = current > upper
    is_above = current < lower
    if recommended > current:
        rc = adjust_up(current, recommended, modulo)
    elif recommended < current:
        rc = adjust_down(current, recommended, modulo)
    else:
        is_above = is_below = False
        rc = converge(current, lower, upper, spec.get("convergeTowardsWatermark", ""), modulo)
    return {"replicaCount": rc, "utilization": utilization, "readyReplicas": ready, "isAbove": is_above,
            "isBelow": is_below, "details": resp.get("details", ""),
            "timestampOffsetSeconds": resp.get("timestampOffsetSeconds")}


# --------------------------------------------------------------------------
# Rate limits and normalisation (6.10)
# --------------------------------------------------------------------------

REASONS = {
    "ScaleDownLimit": "the desired replica count is decreasing faster than the maximum scale rate",
    "TooFewReplicas": "the desired replica count is below the minimum replica count",
    "ScaleUpLimit": "the desired replica count is increasing faster than the maximum scale rate",
    "TooManyReplicas": "the desired replica count is above the maximum replica count",
    "DesiredWithinRange": "the desired count is within the acceptable range",
    "": "",
}


def scale_up_limit(factor, current: int) -> int:
    if value(factor) == 0:
        return current
    step = max(1.0, math.floor(float(milli(factor)) / 1000 * float(current) / 100))
    return go_int32(float(current) + step)


def scale_down_limit(factor, current: int) -> int:
    if value(factor) == 0:
        return current
    step = max(1.0, math.floor(float(milli(factor)) / 1000 * float(current) / 100))
    return go_int32(float(current) - step)


def normalize_desired_replicas(min_replicas, max_replicas, up_factor, down_factor, current, desired, ready):
    """Returns (replicas, condition, reason)."""
    mn = min_replicas or 0
    down = scale_down_limit(down_factor, current)
    if mn == 0:
        min_allowed, cond = 1, ""
    elif desired < down:
        min_allowed, cond = max(down, mn), "ScaleDownLimit"
        if 0 < ready < min_allowed:
            min_allowed = current
    else:
        min_allowed, cond = mn, "TooFewReplicas"
    if desired < min_allowed:
        return min_allowed, cond, REASONS[cond]
    up = scale_up_limit(up_factor, current)
    if desired > up:
        max_allowed, cond = min(up, max_replicas), "ScaleUpLimit"
    else:
        max_allowed, cond = max_replicas, "TooManyReplicas"
    if desired > max_allowed:
        return max_allowed, cond, REASONS[cond]
    return desired, "DesiredWithinRange", REASONS["DesiredWithinRange"]


# --------------------------------------------------------------------------
# Cooldowns and delays (6.11)
# --------------------------------------------------------------------------

def should_scale(current, desired, stable, spec, status, eps=DEFAULT_EPS):
    now = eps
    status = status or {}
    lst = status.get("lastScaleTimeOffsetSeconds")
    if lst is None:
        return True
    last = fixture_time(lst)
    down_countdown = last + (spec.get("downscaleForbiddenWindowSeconds") or 0) - now
    backoff_down = down_countdown > 0
    up_countdown = last + (spec.get("upscaleForbiddenWindowSeconds") or 0) - now
    backoff_up = up_countdown > 0
    conds = {c["type"]: c for c in status.get("conditions") or []}

    def delay_gate(backoff, cond_type, delay):
        if delay == 0 or stable:
            return not backoff
        cond = conds.get(cond_type)
        if cond is None:
            return False  # a missing condition is treated as Status=False
        elapsed = now - fixture_time(cond.get("lastTransitionTimeOffsetSeconds"))
        remaining = delay - go_int32(elapsed)
        if remaining > 0 or cond.get("status") != "True":
            return False
        return not backoff

    if desired > current:
        return delay_gate(backoff_up, "AboveHighWatermark", spec.get("upscaleDelayAboveWatermarkSeconds") or 0)
    if desired < current:
        return delay_gate(backoff_down, "BelowLowWatermark", spec.get("downscaleDelayBelowWatermarkSeconds") or 0)
    return False


# --------------------------------------------------------------------------
# CheckWPAValidity (8)
# --------------------------------------------------------------------------

def _q_str(q) -> str:
    return canonical_quantity(parse_quantity(q["quantity"]))


def go_map_string(d) -> str:
    d = d or {}
    return "map[" + " ".join(f"{k}:{d[k]}" for k in sorted(d)) + "]"


def check_wpa_validity(spec, wpa_namespace=None, wpa_name=None):
    """Returns None when valid, else the exact error message (first failing rule wins)."""
    ref = spec.get("scaleTargetRef") or {}
    if not ref.get("kind") or not ref.get("name"):
        return (f"the Spec.ScaleTargetRef should be populated, currently Kind:{ref.get('kind', '')} "
                f"and/or Name:{ref.get('name', '')} are not set properly")
    mn = spec.get("minReplicas")
    if mn is None or (spec.get("maxReplicas") or 0) < mn:
        return "watermark pod autoscaler requires the minimum number of replicas to be configured and inferior to the maximum"
    tol = spec.get("tolerance")
    tol_m = milli(tol) if tol is not None else 0
    if tol_m > 1000 or tol_m < 0:
        return (f"tolerance should be set as a quantity between 0 and 1, currently set to : {_q_str(tol)}, "
                f"which is {go_format_0f(float(tol_m) / 10)}%")
    up, down = spec.get("scaleUpLimitFactor"), spec.get("scaleDownLimitFactor")
    if up is None or down is None:
        return "scaleuplimitfactor and scaledownlimitfactor can't be nil, make sure the WPA spec is defaulted"
    if milli(up) < 0:
        return (f"scaleuplimitfactor should be set as a positive quantity, currently set to : {_q_str(up)}, "
                f"which could yield a {go_format_0f(float(milli(up)) / 1000)}% growth")
    if milli(down) >= 100000 or milli(down) < 0:
        return (f"scaledownlimitfactor should be set as a quantity between 0 and 100 (exc.), currently set to : "
                f"{_q_str(down)}, which could yield a {go_format_0f(float(milli(down)) / 1000)}% decrease")
    metrics = spec.get("metrics") or []
    if spec.get("recommender") is not None and len(metrics) > 0:
        return "recommender and metrics can't be set at the same time, please choose one"
    for m in metrics:
        t = m.get("type")
        if t == "External":
            src, label = m.get("external"), "External"
            if src is None:
                return "metric.External is nil while metric.Type is 'External'"
            name = src.get("metricName", "")
        elif t == "Resource":
            src, label = m.get("resource"), "Resource"
            if src is None:
                return "metric.Resource is nil while metric.Type is 'Resource'"
            name = src.get("name", "")
        else:
            return f"incorrect metric.Type: '{t}'"
        hw, lw = src.get("highWatermark"), src.get("lowWatermark")
        if hw is None and lw is None:
            return f"watermarks are not set correctly, removing the WPA {wpa_namespace}/{wpa_name} from the Reconciler"
        sel = src.get("metricSelector")
        if sel is None:
            return f"missing Labels for the {label} metric {name}"
        if hw is not None and lw is not None and milli(hw) < milli(lw):
            return (f"low WaterMark of {label} metric {name}{{{go_map_string(sel.get('matchLabels'))}}} "
                    f"has to be strictly inferior to the High Watermark")
    return None
