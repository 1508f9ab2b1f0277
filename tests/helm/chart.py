#!/usr/bin/env python3
"""Lint, render, check and install the wpa Helm chart (charts/wpa) through helm-python-sdk.

helm-python-sdk bundles Helm v4's Go library, so no `helm` binary is needed:
`pip install -r tests/helm/requirements.txt`.

Every subcommand prints one JSON object on stdout (Helm's own log lines go to stderr) and exits
0 when everything it did or checked is fine, 1 when a check failed, 2 on a usage or Helm error.

  chart.py lint                                  lint + values.schema.json acceptance/rejection checks
  chart.py render --values-json '{...}' --out D  one combination -> D/<label>.yaml
  chart.py matrix --out D [--kube-version V]     every meaningful combination -> D/<name>.yaml
  chart.py check-rbac                            the chart's RBAC against webhook-config/rbac.yaml (and
                                                 rbac-scheduler-extender.yaml with the extender on)
  chart.py check-webhooks                        the chart's webhooks against webhook-config/webhooks.yaml
  chart.py install|upgrade|uninstall|status --kubeconfig K --namespace NS --release R [--values-json ...]

`render` and `matrix` also write D/crds.yaml (the chart's crds/, which Helm installs before the templates
and never upgrades or deletes) and, in the JSON, list per file the API groups that need CRDs from other
projects (cert-manager.io, monitoring.coreos.com): `kubectl apply --dry-run=server` of such a file needs
those CRDs in the cluster. `--kube-version` renders as for that cluster (e.g. 1.20.2: PodDisruptionBudget
policy/v1beta1, no matchConditions); `matrix --kube-version` renders every combination for that version
(what `kubectl apply --dry-run=server` on such a cluster needs); install/upgrade take the version from the
cluster itself.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

try:
    import helm_python as helm
    from helm_python import _native
except ModuleNotFoundError:
    print(json.dumps({"ok": False, "error": "setup",
                      "message": "the Helm library is missing: python3 -m pip install -r tests/helm/requirements.txt"}))
    sys.exit(2)

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "wpa"
PLAIN = REPO / "webhook-config"

# API groups whose kinds come from other projects' CRDs.
FOREIGN_GROUPS = {"cert-manager.io", "monitoring.coreos.com"}

# Upstream's chart's values.yaml (v0.5.1, appVersion v0.9.0) with the image swapped: what a migrating team passes.
UPSTREAM_VALUES: dict[str, Any] = {
    "replicaCount": 1,
    "image": {"repository": "wpa", "tag": "0.1.0", "pullPolicy": "IfNotPresent"},
    "imagePullSecrets": [],
    "nameOverride": "",
    "fullnameOverride": "",
    "logLevel": "info",
    "serviceAccount": {"create": True, "annotations": {}, "name": None},
    "rbac": {"create": True},
    "watchAllNamespaces": True,
    "labelsAsTags": [],
    "podSecurityContext": {},
    "lifecycleControl": {"enabled": False},
    "datadogCRDs": {"crds": {"datadogMonitors": True}},
    "securityContext": {},
    "resources": {},
    "nodeSelector": {},
    "tolerations": [],
    "affinity": {},
}

# The combinations `matrix` renders, with what each must show (checked after rendering).
MATRIX: dict[str, dict[str, Any]] = {
    "default": {"values": {}},
    "cert-manager-issuer-ref": {
        "values": {"tls": {"certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}}
    },
    "self-signed": {"values": {"tls": {"mode": "selfSigned"}}},
    "service-monitor": {"values": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "failure-policy-ignore": {"values": {"webhook": {"failurePolicy": "Ignore"}}},
    "update-failure-policy-fail": {"values": {"webhook": {"updateFailurePolicy": "Fail"}}},
    "namespaced-watch": {"values": {"watchNamespaces": ["team-a", "team-b"]}},
    "custom-image": {
        "values": {
            "image": {
                "repository": "registry.example.com/platform/wpa",
                "tag": "0.1.0-rc1",
                "pullPolicy": "Always",
            },
            "imagePullSecrets": [{"name": "regcred"}],
        }
    },
    "custom-image-digest": {
        "values": {"image": {"repository": "registry.example.com/platform/wpa", "digest": "sha256:" + "ab" * 32}}
    },
    "namespace-opt-in": {"values": {"webhook": {"namespaceSelector": {"mode": "optIn"}}}},
    "kube-1.20": {"values": {}, "kube_version": "v1.20.2"},
    "kube-1.20-self-signed": {"values": {"tls": {"mode": "selfSigned"}}, "kube_version": "v1.20.2"},
    "scheduler-extender": {"values": {"schedulerExtender": {"enabled": True}}},
    "scheduler-extender-v1": {
        "values": {
            "schedulerExtender": {
                "enabled": True,
                "configApiVersion": "kubescheduler.config.k8s.io/v1",
                "weight": 5,
                "httpTimeout": "2s",
                "schedulerName": "wpa-scheduler",
            },
            "service": {"port": 9443},
        }
    },
    "scheduler-extender-self-signed": {"values": {"tls": {"mode": "selfSigned"}, "schedulerExtender": {"enabled": True}}},
    "network-policy": {
        "values": {
            "networkPolicy": {
                "enabled": True,
                "apiServerCIDRs": ["10.0.0.0/24", "192.0.2.10/32"],
                "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
            }
        }
    },
    # Upstream's chart's values.yaml as it is (DataDog/watermarkpodautoscaler, chart v0.5.1), image aside.
    "upstream-values": {"values": UPSTREAM_VALUES},
    "upstream-namespaced": {
        "values": {"watchAllNamespaces": False, "labelsAsTags": ["team", "app.kubernetes.io/name"], "lifecycleControl": {"enabled": True}}
    },
    # Values of upstream's datadog-crds subchart, which upstream's values files may set under its alias.
    "upstream-datadog-crds": {
        "values": {"datadogCRDs": {"crds": {"datadogMonitors": True, "datadogMetrics": False}, "fullnameOverride": "crds"}}
    },
    "observability": {
        "values": {
            "prometheusRule": {"enabled": True, "labels": {"release": "prom"}, "alertLabels": {"team": "platform"}},
            "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Autoscaling"}},
            "healthPort": 9090,
            "datadog": {"autodiscovery": {"metrics": ["wpa", "wpa_controller*", "wpa_*"]}},
        }
    },
    "observability-extender": {"values": {"prometheusRule": {"enabled": True}, "schedulerExtender": {"enabled": True}}},
    "no-datadog-annotations": {"values": {"datadog": {"autodiscovery": {"enabled": False}}, "podAnnotations": {"a": "b"}}},
}

# Values that values.schema.json must refuse, and values that templates must refuse (`fail`).
SCHEMA_REJECTS: dict[str, dict[str, Any]] = {
    "tls.mode=bogus": {"tls": {"mode": "bogus"}},
    "unknown top-level key": {"replicas": 3},
    "unknown nested key": {"webhook": {"failurepolicy": "Ignore"}},
    "webhook.failurePolicy=Sometimes": {"webhook": {"failurePolicy": "Sometimes"}},
    "webhook.timeoutSeconds=31": {"webhook": {"timeoutSeconds": 31}},
    "replicaCount=0": {"replicaCount": 0},
    "reconciler.syncPeriod=15": {"reconciler": {"syncPeriod": 15}},
    "namespaceSelector.mode=all": {"webhook": {"namespaceSelector": {"mode": "all"}}},
    "logFormat=yaml": {"logFormat": "yaml"},
    "schedulerExtender.configApiVersion=v2": {"schedulerExtender": {"configApiVersion": "kubescheduler.config.k8s.io/v2"}},
    "schedulerExtender.weight=0": {"schedulerExtender": {"weight": 0}},
    "schedulerExtender.httpTimeout=1": {"schedulerExtender": {"httpTimeout": 1}},
    "networkPolicy enabled without apiServerCIDRs": {"networkPolicy": {"enabled": True}},
    "networkPolicy.apiServerCIDRs not a CIDR": {"networkPolicy": {"enabled": True, "apiServerCIDRs": ["apiserver"]}},
    "watchAllNamespaces=yes": {"watchAllNamespaces": "yes"},
    "labelsAsTags with a space": {"labelsAsTags": ["team name"]},
    "prometheusRule.alerts.pinnedAtMax.for=15": {"prometheusRule": {"alerts": {"pinnedAtMax": {"for": 15}}}},
    "prometheusRule.alerts.webhookSlow.fractionOfTimeout=2": {"prometheusRule": {"alerts": {"webhookSlow": {"fractionOfTimeout": 2}}}},
    "unknown alert": {"prometheusRule": {"alerts": {"pinnedAtMin": {"enabled": True}}}},
    "healthPort=0": {"healthPort": 0},
}
RENDER_REJECTS: dict[str, dict[str, Any]] = {
    "serviceAccount.create=false without a name": {"serviceAccount": {"create": False}},
    "watchAllNamespaces with watchNamespaces": {"watchAllNamespaces": False, "watchNamespaces": ["team-a"]},
}


def out(obj: dict[str, Any], ok: bool) -> int:
    obj = {"ok": ok, **obj}
    print(json.dumps(obj, indent=2, sort_keys=False))
    return 0 if ok else 1


def split_docs(text: str) -> list[dict[str, Any]]:
    """The YAML documents of a manifest stream, parsed by Helm's own YAML reader; empty ones dropped."""
    docs = []
    for chunk in re.split(r"(?m)^---[ \t]*$", text):
        if not chunk.strip():
            continue
        doc = helm.values_from_yaml(chunk)
        if doc:
            docs.append(doc)
    return docs


def render(
    values: dict[str, Any], *, name: str, namespace: str, kube_version: str | None = None
) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt included). Raises HelmValuesError / HelmRenderError."""
    with helm.Chart.load(CHART) as chart:
        if kube_version is None:
            return chart.render(values=values, name=name, namespace=namespace, is_install=True)
        # helm_python's Chart.render has no kube_version parameter, but the C ABI's options object takes
        # "kube_version" (and "api_versions"), as `helm template --kube-version` does.
        opts = {"name": name, "namespace": namespace, "is_install": True, "kube_version": kube_version}
        raw = _native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(opts))
        return json.loads(raw)


def manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(split_docs(rendered[path]))
    return docs


def stream(rendered: dict[str, str]) -> str:
    """The rendered manifests as one `kubectl apply -f` stream, each document headed by its template."""
    parts = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        for chunk in re.split(r"(?m)^---[ \t]*$", rendered[path]):
            if chunk.strip() and split_docs(chunk):
                parts.append(f"# Source: {path}\n{chunk.strip()}\n")
    return "---\n" + "---\n".join(parts)


def crds_stream() -> str:
    with helm.Chart.load(CHART) as chart:
        return "".join(f"---\n# Source: {c['filename']}\n{c['data'].strip()}\n" for c in chart.crds)


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return [f"{d.get('kind')}/{d.get('metadata', {}).get('name')}" for d in docs]


def foreign_groups(docs: list[dict[str, Any]]) -> list[str]:
    return sorted({d["apiVersion"].split("/")[0] for d in docs if d["apiVersion"].split("/")[0] in FOREIGN_GROUPS})


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return find(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]


def webhooks(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    hooks = []
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        for cfg in find(docs, kind):
            hooks.extend(cfg.get("webhooks", []))
    return hooks


def parse_values(text: str | None, sets: list[str] | None = None) -> dict[str, Any]:
    """--values-json, then each --set key.path=value on top (as `helm --set` does: dotted keys, the value
    read as YAML, so 2 is a number and true a boolean)."""
    values = json.loads(text) if text else {}
    if not isinstance(values, dict):
        raise ValueError("--values-json must be a JSON object")
    for item in sets or []:
        path, sep, raw = item.partition("=")
        if not sep or not path:
            raise ValueError(f"--set {item!r}: expected key.path=value")
        node = values
        keys = path.split(".")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {item!r}: {k} is not a map")
        node[keys[-1]] = helm.values_from_yaml(f"v: {raw}").get("v") if raw else ""
    return values


def kube_minor(kube_version: str | None) -> int:
    """The minor version a render targets; without --kube-version Helm's default, which is recent (>= 1.28)."""
    if not kube_version:
        return 1 << 30
    m = re.match(r"^v?1\.(\d+)", kube_version)
    if not m:
        raise ValueError(f"not a Kubernetes 1.x version: {kube_version}")
    return int(m.group(1))


# The rules webhook-config/rbac-scheduler-extender.yaml adds for `--scheduler-extender`.
def extender_rules() -> list[dict[str, Any]]:
    return find(plain_docs("rbac-scheduler-extender.yaml"), "ClusterRole")[0]["rules"]


def expected_scheduler_config(values: dict[str, Any], svc: str, ns: str) -> dict[str, Any]:
    """webhook-config/scheduler-config.yaml, pointed at this release's Service, with the combination's values."""
    ext = values.get("schedulerExtender", {})
    want = copy.deepcopy(split_docs((PLAIN / "scheduler-config.yaml").read_text())[0])
    dns = f"{svc}.{ns}.svc"
    want["apiVersion"] = ext.get("configApiVersion", want["apiVersion"])
    e = want["extenders"][0]
    e["urlPrefix"] = f"https://{dns}:{values.get('service', {}).get('port', 443)}/scheduler"
    e["tlsConfig"]["serverName"] = dns
    e["weight"] = ext.get("weight", e["weight"])
    e["httpTimeout"] = ext.get("httpTimeout", e["httpTimeout"])
    if ext.get("schedulerName"):
        want["profiles"] = [{"schedulerName": ext["schedulerName"]}]
    return want


def expectations(
    name: str, docs: list[dict[str, Any]], ns: str, rel: str, values: dict[str, Any], kube_version: str | None, notes: str
) -> list[str]:
    """What each matrix combination must show; returns the failures."""
    fails: list[str] = []
    minor = kube_minor(kube_version)
    port = values.get("service", {}).get("port", 443)
    svc = f"{rel if 'wpa' in rel else rel + '-wpa'}"
    args = container(docs)["args"]
    hooks = webhooks(docs)
    cr = find(docs, "ClusterRole")[0]
    admission_rules = [r for r in cr["rules"] if "admissionregistration.k8s.io" in r.get("apiGroups", [])]
    certs = find(docs, "Certificate")
    issuers = find(docs, "Issuer")
    dep = find(docs, "Deployment")[0]

    def want(cond: bool, what: str) -> None:
        if not cond:
            fails.append(what)

    # Everywhere: the hardening and the wiring of the brief.
    pod = dep["spec"]["template"]["spec"]
    c = container(docs)
    want(pod["securityContext"].get("runAsNonRoot") is True, "runAsNonRoot")
    want(pod["securityContext"].get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp RuntimeDefault")
    want(c["securityContext"].get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
    want(c["securityContext"].get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
    want(c["securityContext"].get("capabilities", {}).get("drop") == ["ALL"], "drop ALL")
    want(c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, "liveness /healthz")
    want(c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, "readiness /readyz")
    health = values.get("healthPort", 8080)
    want({p["name"]: p["containerPort"] for p in c["ports"]} == {"webhook": 8443, "http": health}, "ports")
    want(f"--health-listen=0.0.0.0:{health}" in args, "--health-listen on healthPort")
    want({e["name"] for e in c["env"]} >= {"POD_NAME", "POD_NAMESPACE"}, "downward API env")
    want("requests" in c["resources"] and "limits" in c["resources"], "resources")
    want("--leader-elect=true" in args, "--leader-elect=true")
    want(len(hooks) == 6, "six webhooks (WPA create, WPA update, workloads; validating and mutating)")
    for h in hooks:
        want(h["clientConfig"]["service"] == {"name": svc, "namespace": ns, "path": h["clientConfig"]["service"]["path"], "port": port}, f"{h['name']} service")
        exprs = h["namespaceSelector"]["matchExpressions"]
        want({"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", ns]} in exprs, f"{h['name']} excludes kube-system and {ns} by name")
        want(any(e["key"] == "wpa.datadoghq.com/webhook" for e in exprs), f"{h['name']} label selector")
    svc_docs = find(docs, "Service")
    metrics_port = values.get("service", {}).get("metricsPort", 8080)
    want(len(svc_docs) == 1 and {(p["port"], p["targetPort"]) for p in svc_docs[0]["spec"]["ports"]} == {(port, "webhook"), (metrics_port, "http")}, f"Service {port}->webhook, {metrics_port}->http")
    self_signed = name.endswith("self-signed")
    if self_signed:
        want(dep["spec"]["replicas"] == 2, "self-signed runs 2 replicas (they share the CA Secret)")
        pdb = find(docs, "PodDisruptionBudget")
        want(len(pdb) == 1 and pdb[0]["spec"]["minAvailable"] == 1, "PDB minAvailable 1")
        want("--self-signed" in args and "--inject-ca" in args, "--self-signed --inject-ca")
        want(f"--ca-secret={svc}-webhook-ca" in args, "--ca-secret <fullname>-webhook-ca")
        ca_roles = find(docs, "Role", f"{svc}-webhook-ca")
        want(len(ca_roles) == 1 and any(r.get("resourceNames") == [f"{svc}-webhook-ca"] for r in ca_roles[0]["rules"]), "Role on the CA Secret")
        want(f"--tls-san={svc}.{ns}.svc" in args, "--tls-san <svc>.<ns>.svc")
        want(f"--webhook-config-name={svc}" in args, "--webhook-config-name")
        want(not certs and not issuers, "no cert-manager objects")
        want(len(admission_rules) == 1 and admission_rules[0]["resourceNames"] == [svc], "webhook-config RBAC rule")
        want(values.get("schedulerExtender", {}).get("enabled") is not True or f"secret {svc}-webhook-ca -o jsonpath='{{.data.ca\\.crt}}'" in notes, "NOTES: caData from the CA Secret's ca.crt")
        want(all("caBundle" not in h["clientConfig"] for h in hooks), "no caBundle in the chart")
        for cfg in find(docs, "ValidatingWebhookConfiguration") + find(docs, "MutatingWebhookConfiguration"):
            want("cert-manager.io/inject-ca-from" not in cfg["metadata"].get("annotations", {}), "no inject-ca-from")
    else:
        replicas = values.get("replicaCount") or 2
        want(dep["spec"]["replicas"] == replicas, f"{replicas} replicas")
        pdb = find(docs, "PodDisruptionBudget")
        want(len(pdb) == int(replicas > 1) and all(p["spec"]["minAvailable"] == 1 for p in pdb), "PDB minAvailable 1 with more than one replica")
        want("--tls-cert-file=/tls/tls.crt" in args and "--tls-key-file=/tls/tls.key" in args, "cert files")
        want(not any(a.startswith("--self-signed") or a == "--inject-ca" for a in args), "no --self-signed")
        want(not admission_rules, "no webhook-config RBAC rule")
        want(not find(docs, "Role", f"{svc}-webhook-ca") and "--ca-secret" not in " ".join(args), "no CA Secret")
        want(c["volumeMounts"] == [{"name": "tls", "mountPath": "/tls", "readOnly": True}], "TLS mount")
        serving = [x for x in certs if x["metadata"]["name"] == f"{svc}-serving-cert"]
        want(len(serving) == 1 and serving[0]["spec"]["dnsNames"] == [f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.cluster.local"], "serving Certificate DNS names")
        for cfg in find(docs, "ValidatingWebhookConfiguration") + find(docs, "MutatingWebhookConfiguration"):
            want(cfg["metadata"].get("annotations", {}).get("cert-manager.io/inject-ca-from") == f"{ns}/{svc}-serving-cert", "inject-ca-from")
        if name == "cert-manager-issuer-ref":
            want(not issuers and len(certs) == 1, "no chart issuers with issuerRef")
            want(certs[0]["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}, "issuerRef passed")
        else:
            want(len(issuers) == 2 and len(certs) == 2, "chart-created self-signed Issuer, CA Certificate and CA Issuer")
    for h in hooks:
        want(("matchConditions" in h) == (minor >= 28), f"{h['name']} matchConditions only on >= 1.28")
    for pdb in find(docs, "PodDisruptionBudget"):
        want(pdb["apiVersion"] == ("policy/v1" if minor >= 21 else "policy/v1beta1"), "PDB apiVersion per cluster version")
    # The scheduler extender: the flag, the two RBAC rules and the ConfigMap, all or nothing.
    extender = values.get("schedulerExtender", {}).get("enabled") is True
    rules = extender_rules()
    want(("--scheduler-extender" in args) == extender, "--scheduler-extender only when enabled")
    want(all((r in cr["rules"]) == extender for r in rules), "the extender's RBAC rules only when enabled")
    cms = find(docs, "ConfigMap", f"{svc}-scheduler-config")
    want(len(cms) == int(extender), "ConfigMap <fullname>-scheduler-config only when enabled")
    if extender and cms:
        got = helm.values_from_yaml(cms[0]["data"]["scheduler-config.yaml"])
        want(got == expected_scheduler_config(values, svc, ns), "scheduler config == webhook-config/scheduler-config.yaml pointed at the Service")
        want(f"{svc}-scheduler-config" in notes and "caData" in notes, "NOTES: how to fill in caData")
        if not self_signed:
            want(f"secret {svc}-serving-cert -o jsonpath='{{.data.ca\\.crt}}'" in notes, "NOTES: caData from the Secret's ca.crt")
    want(bool(find(docs, "ServiceMonitor")) == (name == "service-monitor"), "ServiceMonitor only when enabled")
    if name == "service-monitor":
        sm = find(docs, "ServiceMonitor")[0]
        want(sm["spec"]["endpoints"][0]["port"] == "metrics" and sm["metadata"]["labels"].get("release") == "prom", "ServiceMonitor endpoint/labels")
    netpol = find(docs, "NetworkPolicy")
    want(len(netpol) == int(name == "network-policy"), "NetworkPolicy only when enabled")
    if name == "network-policy" and netpol:
        ingress = netpol[0]["spec"]["ingress"]
        want(ingress[0]["ports"] == [{"port": "webhook", "protocol": "TCP"}], "NetworkPolicy: the webhook port")
        want(ingress[0]["from"] == [{"ipBlock": {"cidr": "10.0.0.0/24"}}, {"ipBlock": {"cidr": "192.0.2.10/32"}}], "NetworkPolicy: the API server's CIDRs only")
        want(ingress[1] == {"ports": [{"port": "http", "protocol": "TCP"}], "from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]}, "NetworkPolicy: metricsFrom on the metrics port")
        want(netpol[0]["spec"]["podSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"], "NetworkPolicy selects the pods")
    policies = {h["name"]: h["failurePolicy"] for h in hooks}
    wpa_policy = "Ignore" if name == "failure-policy-ignore" else "Fail"
    update_policy = "Fail" if name == "update-failure-policy-fail" else "Ignore"
    want(policies == {
        "validate-wpa.datadoghq.com": wpa_policy,
        "default-wpa.datadoghq.com": wpa_policy,
        "validate-wpa-update.datadoghq.com": update_policy,
        "default-wpa-update.datadoghq.com": update_policy,
        "validate-workloads.wpa.datadoghq.com": "Ignore",
        "clamp-workloads.wpa.datadoghq.com": "Ignore",
    }, "failurePolicies")
    namespaces = {"namespaced-watch": "--namespace=team-a,team-b", "upstream-namespaced": f"--namespace={ns}"}.get(name)
    want([a for a in args if a.startswith("--namespace=")] == ([namespaces] if namespaces else []), "--namespace only for a namespaced watch")
    # Datadog Autodiscovery, as upstream's chart writes it, on wpa's metrics port.
    annotations = dep["spec"]["template"]["metadata"].get("annotations", {})
    ad = values.get("datadog", {}).get("autodiscovery", {}).get("enabled", True)
    want(("ad.datadoghq.com/wpa.instances" in annotations) == ad, "Datadog annotations unless disabled")
    want(all(annotations.get(k) == v for k, v in values.get("podAnnotations", {}).items()), "podAnnotations kept")
    tags = values.get("reconciler", {}).get("labelsAsTags", []) + values.get("labelsAsTags", [])
    want(("--labels-as-tags=" + ",".join(tags) in args) if tags else not any(a.startswith("--labels-as-tags") for a in args), "--labels-as-tags from both keys")
    if ad:
        want(annotations.get("ad.datadoghq.com/wpa.check_names") == '["prometheus"]', "AD check_names prometheus")
        want(annotations.get("ad.datadoghq.com/wpa.init_configs") == "[{}]", "AD init_configs")
        instances = json.loads(annotations["ad.datadoghq.com/wpa.instances"])
        inst = instances[0]
        want(len(instances) == 1 and inst["prometheus_url"] == f"http://%%host%%:{health}/metrics", "AD prometheus_url on healthPort")
        want(inst["namespace"] == "watermarkpodautoscaler", "AD namespace watermarkpodautoscaler")
        want(inst["metrics"] == values.get("datadog", {}).get("autodiscovery", {}).get("metrics", ["wpa", "wpa_controller*"]), "AD metrics")
        joins = inst.get("label_joins")
        if tags:
            want(joins == {"wpa_controller_labels_info": {"labels_to_match": ["wpa_name", "resource_namespace"], "labels_to_get": [re.sub(r"[^a-zA-Z0-9_]", "_", t) for t in tags]}}, "AD label_joins on labels_info")
        else:
            want(joins is None, "no label_joins without labelsAsTags")
    upstream_keys = [k for k in ("watchAllNamespaces", "labelsAsTags", "lifecycleControl", "datadogCRDs") if values.get(k) not in (None, [])]
    want(("prefer wpa's keys" in notes) == bool(upstream_keys), "NOTES: upstream keys named only when given")
    if name == "upstream-datadog-crds":
        want("datadogCRDs.crds.datadogMonitors=true: no effect" in notes, "NOTES names datadogCRDs.crds.datadogMonitors")
        want("datadogCRDs.crds.datadogMetrics, datadogCRDs.fullnameOverride: no effect" in notes, "NOTES names the subchart's other keys")
    if name == "upstream-namespaced":
        want("prefer watchNamespaces" in notes and "prefer reconciler.labelsAsTags" in notes and "lifecycleControl.enabled=true: no effect" in notes, "NOTES names each upstream key")
    # Alerts and dashboard.
    rule_on = values.get("prometheusRule", {}).get("enabled") is True
    rules = find(docs, "PrometheusRule")
    want(len(rules) == int(rule_on), "PrometheusRule only when enabled")
    if rules:
        alerts = [r for g in rules[0]["spec"]["groups"] for r in g["rules"]]
        names = {r["alert"] for r in alerts}
        want(("WPAExtenderNoSafeNode" in names) == extender and "WPANoLeader" in names and len(names) == 8 + int(extender), f"alerts: {sorted(names)}")
        want(all(r["annotations"]["runbook_url"].startswith("docs/runbook.md#") and r["annotations"]["summary"] and r["annotations"]["description"] for r in alerts), "every alert has a summary, a description and a runbook_url")
        want(all(r["labels"].get("severity") for r in alerts), "every alert has a severity")
        if name == "observability":
            want(rules[0]["metadata"]["labels"].get("release") == "prom", "PrometheusRule labels")
            want(all(r["labels"].get("team") == "platform" for r in alerts), "alertLabels on every alert")
    boards = find(docs, "ConfigMap", f"{svc}-dashboard")
    want(len(boards) == int(values.get("grafanaDashboard", {}).get("enabled") is True), "dashboard ConfigMap only when enabled")
    if boards:
        want(boards[0]["metadata"]["labels"].get("grafana_dashboard") == "1", "grafana_dashboard label")
        want(json.loads(boards[0]["data"]["wpa.json"]) == json.loads((CHART / "dashboards" / "wpa.json").read_text()), "the ConfigMap holds dashboards/wpa.json")
    if name == "namespace-opt-in":
        for h in hooks:
            want({"key": "wpa.datadoghq.com/webhook", "operator": "In", "values": ["enabled"]} in h["namespaceSelector"]["matchExpressions"], "opt-in label")
    image = c["image"]
    if name == "custom-image":
        want(image == "registry.example.com/platform/wpa:0.1.0-rc1" and c["imagePullPolicy"] == "Always", "custom image")
        want(pod.get("imagePullSecrets") == [{"name": "regcred"}], "imagePullSecrets")
    elif name == "custom-image-digest":
        want(image == "registry.example.com/platform/wpa@sha256:" + "ab" * 32, "image digest")
    else:
        want(image == "wpa:0.1.0", "default image wpa:<appVersion>")
    return fails


def render_one(label: str, values: dict[str, Any], out_dir: Path, ns: str, rel: str, kube_version: str | None) -> dict[str, Any]:
    rendered = render(values, name=rel, namespace=ns, kube_version=kube_version)
    docs = manifests(rendered)
    text = stream(rendered)
    path = out_dir / f"{label}.yaml"
    path.write_text(text)
    notes = next((v for k, v in rendered.items() if k.endswith("NOTES.txt")), "")
    (out_dir / f"{label}.NOTES.txt").write_text(notes)
    return {
        "file": str(path),
        "values": values,
        "kube_version": kube_version,
        "documents": len(docs),
        "objects": kinds(docs),
        "needs_foreign_crds": foreign_groups(docs),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }


def cmd_render(a: argparse.Namespace) -> int:
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "crds.yaml").write_text(crds_stream())
    try:
        result = render_one(a.label, parse_values(a.values_json, a.set), out_dir, a.namespace, a.release, a.kube_version)
    except helm.HelmError as e:
        out({"error": type(e).__name__, "message": str(e)}, False)
        return 2
    return out({"crds": str(out_dir / "crds.yaml"), "rendered": result}, True)


def cmd_matrix(a: argparse.Namespace) -> int:
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "crds.yaml").write_text(crds_stream())
    results: dict[str, Any] = {}
    ok = True
    for name, combo in MATRIX.items():
        try:
            kube = a.kube_version or combo.get("kube_version")
            r = render_one(name, combo["values"], out_dir, a.namespace, a.release, kube)
            docs = split_docs((out_dir / f"{name}.yaml").read_text())
            notes = (out_dir / f"{name}.NOTES.txt").read_text()
            r["failed_expectations"] = expectations(name, docs, a.namespace, a.release, combo["values"], kube, notes)
        except helm.HelmError as e:
            r = {"error": type(e).__name__, "message": str(e)}
        r["ok"] = not r.get("error") and not r.get("failed_expectations")
        ok = ok and r["ok"]
        results[name] = r
    return out({"crds": str(out_dir / "crds.yaml"), "combinations": results}, ok)


def cmd_lint(a: argparse.Namespace) -> int:
    checks: dict[str, Any] = {}
    ok = True

    def record(name: str, passed: bool, detail: Any) -> None:
        nonlocal ok
        checks[name] = {"ok": passed, "detail": detail}
        ok = ok and passed

    for label, combo in [("default", {"values": {}})] + list(MATRIX.items()):
        report = helm.lint(CHART, combo["values"], strict=True, namespace=a.namespace, kube_version=combo.get("kube_version"))
        errors = [m for m in report["messages"] if m["severity"] >= 2]
        # The only finding a strict lint of this chart may report is the INFO "icon is recommended".
        record(f"lint[{label}]", not errors and not report["errors"], report["messages"])

    report = helm.lint(CHART, SCHEMA_REJECTS["tls.mode=bogus"], namespace=a.namespace)
    record("lint rejects tls.mode=bogus", bool(report["errors"]), report["errors"])

    with helm.Chart.load(CHART) as chart:
        record("schema is draft-07", (chart.schema or {}).get("$schema") == "http://json-schema.org/draft-07/schema#", (chart.schema or {}).get("$schema"))
        try:
            chart.validate_schema(chart.values)
            record("schema accepts values.yaml", True, None)
        except helm.HelmValuesError as e:
            record("schema accepts values.yaml", False, str(e))
        for label, combo in MATRIX.items():
            try:
                chart.validate_schema(chart.merge_values(combo["values"]))
                record(f"schema accepts {label}", True, None)
            except helm.HelmValuesError as e:
                record(f"schema accepts {label}", False, str(e))
        for label, bad in SCHEMA_REJECTS.items():
            try:
                chart.validate_schema(chart.merge_values(bad))
                record(f"schema rejects {label}", False, "accepted")
            except helm.HelmValuesError as e:
                record(f"schema rejects {label}", True, str(e).strip())
        # Rendering (what install does) refuses them too, with the schema's message.
        try:
            render(SCHEMA_REJECTS["tls.mode=bogus"], name=a.release, namespace=a.namespace)
            record("render rejects tls.mode=bogus", False, "rendered")
        except helm.HelmValuesError as e:
            record("render rejects tls.mode=bogus", True, str(e).strip())
    for label, bad in RENDER_REJECTS.items():
        try:
            render(bad, name=a.release, namespace=a.namespace)
            record(f"render rejects {label}", False, "rendered")
        except helm.HelmRenderError as e:
            record(f"render rejects {label}", True, str(e).strip())
    return out({"chart": str(CHART), "helm_sdk": helm.helm_sdk_version(), "checks": checks}, ok)


def plain_docs(name: str) -> list[dict[str, Any]]:
    return split_docs((PLAIN / name).read_text())


def cmd_check_rbac(a: argparse.Namespace) -> int:
    """The chart's ClusterRole/Role equal webhook-config/rbac.yaml's (release wpa in wpa-system, self-signed on);
    with cert-manager the webhook-configuration rule and the CA Secret's Role are the only difference; resourceNames
    follow the names."""
    plain = plain_docs("rbac.yaml")
    want_cr = find(plain, "ClusterRole")[0]["rules"]
    inject = find(plain_docs("rbac-self-signed.yaml"), "ClusterRole")[0]["rules"]
    same = lambda a, b: sorted(map(json.dumps, a)) == sorted(map(json.dumps, b))  # noqa: E731
    want_role = find(plain, "Role")[0]["rules"]
    is_admission = lambda r: "admissionregistration.k8s.io" in r.get("apiGroups", [])  # noqa: E731
    checks: dict[str, bool] = {}
    detail: dict[str, Any] = {}

    ss = manifests(render({"tls": {"mode": "selfSigned"}}, name="wpa", namespace="wpa-system"))
    cm = manifests(render({}, name="wpa", namespace="wpa-system"))
    got_ss = find(ss, "ClusterRole")[0]["rules"]
    got_cm = find(cm, "ClusterRole")[0]["rules"]
    checks["selfSigned ClusterRole rules == rbac.yaml + rbac-self-signed.yaml"] = same(got_ss, want_cr + inject)
    checks["certManager ClusterRole rules == rbac.yaml"] = got_cm == want_cr
    checks["certManager ClusterRole has no admissionregistration rule"] = not any(is_admission(r) for r in got_cm)
    checks["rbac.yaml has no admissionregistration rule"] = not any(map(is_admission, want_cr))
    checks["rbac-self-signed.yaml has exactly the admissionregistration rule"] = len(inject) == 1 and is_admission(inject[0])
    plain_ss = plain_docs("rbac-self-signed.yaml")
    want_ca_role = find(plain_ss, "Role")[0]
    got_ca_role = find(ss, "Role", "wpa-webhook-ca")
    checks["selfSigned CA Role == rbac-self-signed.yaml's"] = bool(got_ca_role) and got_ca_role[0]["rules"] == want_ca_role["rules"]
    checks["selfSigned CA RoleBinding == rbac-self-signed.yaml's"] = find(ss, "RoleBinding", "wpa-webhook-ca") != [] and (
        find(ss, "RoleBinding", "wpa-webhook-ca")[0]["subjects"] == find(plain_ss, "RoleBinding")[0]["subjects"]
        and find(ss, "RoleBinding", "wpa-webhook-ca")[0]["roleRef"] == find(plain_ss, "RoleBinding")[0]["roleRef"]
    )
    checks["rbac-self-signed.yaml's CA Role names --ca-secret of the chart"] = "--ca-secret=wpa-webhook-ca" in container(ss)["args"] and any(
        r.get("resourceNames") == ["wpa-webhook-ca"] for r in want_ca_role["rules"]
    )
    checks["certManager has no CA Role"] = not find(cm, "Role", "wpa-webhook-ca") and not find(cm, "RoleBinding", "wpa-webhook-ca")
    for mode, docs in (("selfSigned", ss), ("certManager", cm)):
        checks[f"{mode} leader-election Role rules == rbac.yaml"] = find(docs, "Role", "wpa-leader-election")[0]["rules"] == want_role
        crb = find(docs, "ClusterRoleBinding")[0]
        rb = find(docs, "RoleBinding", "wpa-leader-election")[0]
        sa = find(docs, "ServiceAccount")[0]["metadata"]
        subject = {"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}
        checks[f"{mode} bindings name the chart's ServiceAccount and roles"] = (
            crb["subjects"] == [subject] and rb["subjects"] == [subject]
            and crb["roleRef"]["name"] == find(docs, "ClusterRole")[0]["metadata"]["name"]
            and rb["roleRef"]["name"] == find(docs, "Role", "wpa-leader-election")[0]["metadata"]["name"]
            and container(docs).get("name") == "wpa"
            and find(docs, "Deployment")[0]["spec"]["template"]["spec"]["serviceAccountName"] == sa["name"]
        )
    # Another release name and Lease name: the resourceNames follow what the pod is told to use.
    other = manifests(render({"tls": {"mode": "selfSigned"}, "leaderElection": {"leaseName": "my-lock"}}, name="team", namespace="ops"))
    rule = [r for r in find(other, "ClusterRole")[0]["rules"] if is_admission(r)][0]
    args = container(other)["args"]
    cfg_names = {d["metadata"]["name"] for d in find(other, "ValidatingWebhookConfiguration") + find(other, "MutatingWebhookConfiguration")}
    checks["webhook-config resourceNames == --webhook-config-name == configuration names"] = (
        cfg_names == {"team-wpa"} and rule["resourceNames"] == ["team-wpa"] and "--webhook-config-name=team-wpa" in args
    )
    lease_rule = [r for r in find(other, "Role", "team-wpa-leader-election")[0]["rules"] if r.get("resourceNames")][0]
    checks["lease resourceNames == --lease-name"] = lease_rule["resourceNames"] == ["my-lock"] and "--lease-name=my-lock" in args
    ca_rule = [r for r in find(other, "Role", "team-wpa-webhook-ca")[0]["rules"] if r.get("resourceNames")][0]
    checks["CA Secret resourceNames == --ca-secret"] = ca_rule["resourceNames"] == ["team-wpa-webhook-ca"] and "--ca-secret=team-wpa-webhook-ca" in args
    # The scheduler extender adds exactly the rules of rbac-scheduler-extender.yaml, after rbac.yaml's.
    ext = extender_rules()
    ss_ext = find(manifests(render({"tls": {"mode": "selfSigned"}, "schedulerExtender": {"enabled": True}}, name="wpa", namespace="wpa-system")), "ClusterRole")[0]["rules"]
    cm_ext = find(manifests(render({"schedulerExtender": {"enabled": True}}, name="wpa", namespace="wpa-system")), "ClusterRole")[0]["rules"]
    checks["rbac-scheduler-extender.yaml has the two extender rules"] = len(ext) == 2
    checks["selfSigned + extender ClusterRole rules == rbac.yaml + rbac-self-signed.yaml + rbac-scheduler-extender.yaml"] = same(ss_ext, want_cr + inject + ext)
    checks["certManager + extender ClusterRole rules == rbac.yaml + rbac-scheduler-extender.yaml"] = same(cm_ext, want_cr + ext)
    checks["extender off: none of its rules"] = not any(r in got_ss or r in got_cm for r in ext)
    plain_ext = plain_docs("rbac-scheduler-extender.yaml")
    checks["rbac-scheduler-extender.yaml binds the ServiceAccount of rbac.yaml"] = find(plain_ext, "ClusterRoleBinding")[0]["subjects"] == find(plain, "ClusterRoleBinding")[0]["subjects"]
    if not checks["selfSigned + extender ClusterRole rules == rbac.yaml + rbac-self-signed.yaml + rbac-scheduler-extender.yaml"]:
        detail["selfSigned_extender_rules"] = ss_ext
    no_le = manifests(render({"leaderElection": {"enabled": False}}, name="wpa", namespace="wpa-system"))
    checks["no Role without leader election"] = not find(no_le, "Role") and "--leader-elect=false" in container(no_le)["args"]
    if not checks["selfSigned ClusterRole rules == rbac.yaml + rbac-self-signed.yaml"]:
        detail["selfSigned_rules"] = got_ss
        detail["rbac_yaml_rules"] = want_cr
    return out({"checks": checks, **({"detail": detail} if detail else {})}, all(checks.values()))


def cmd_check_webhooks(a: argparse.Namespace) -> int:
    """Release wpa in wpa-system renders webhook-config/webhooks.yaml's webhooks: identical on 1.20-1.27,
    plus matchConditions on >= 1.28; the namespace list names the release namespace."""
    plain = plain_docs("webhooks.yaml")
    checks: dict[str, bool] = {}
    detail: dict[str, Any] = {}
    for kube, match_conditions in (("v1.20.2", False), ("v1.36.0", True)):
        docs = manifests(render({}, name="wpa", namespace="wpa-system", kube_version=kube))
        for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            want = copy.deepcopy(find(plain, kind)[0])
            got = copy.deepcopy(find(docs, kind)[0])
            got["metadata"].pop("labels", None)
            if match_conditions:
                for h in got["webhooks"]:
                    mc = h.pop("matchConditions", None)
                    checks[f"{kind} {h['name']} skips objects being deleted on {kube}"] = mc == [
                        {"name": "not-being-deleted", "expression": "!has(object.metadata.deletionTimestamp)"}
                    ]
            same = got == want
            checks[f"{kind} == webhook-config/webhooks.yaml on {kube}"] = same
            if not same:
                detail[f"{kind} {kube}"] = {"chart": got, "plain": want}
    return out({"checks": checks, **({"detail": detail} if detail else {})}, all(checks.values()))


def config(a: argparse.Namespace) -> helm.Config:
    return helm.Config(kubeconfig_path=a.kubeconfig, namespace=a.namespace)


def release_summary(rel: dict[str, Any], notes: bool = False) -> dict[str, Any]:
    """The library's release summary (flat: name, namespace, revision, status, notes, manifest...)."""
    manifest = rel.get("manifest")
    return {
        "name": rel.get("name"),
        "namespace": rel.get("namespace"),
        "revision": rel.get("revision"),
        "status": rel.get("status"),
        "chart_version": rel.get("chart_version"),
        "objects": kinds(split_docs(manifest)) if isinstance(manifest, str) else None,
        **({"notes": rel.get("notes")} if notes else {}),
    }


def cmd_release(a: argparse.Namespace) -> int:
    values = parse_values(getattr(a, "values_json", None), getattr(a, "set", None))
    try:
        with config(a) as cfg:
            if a.cmd == "install":
                rel = cfg.install(
                    str(CHART), a.release, values, namespace=a.namespace, timeout=a.timeout,
                    wait=a.wait, dry_run=a.dry_run, create_namespace=a.create_namespace,
                )
            elif a.cmd == "upgrade":
                rel = cfg.upgrade(
                    str(CHART), a.release, values, namespace=a.namespace, timeout=a.timeout,
                    wait=a.wait, dry_run=a.dry_run, reset_values=a.reset_values, reuse_values=a.reuse_values,
                )
            elif a.cmd == "uninstall":
                rel = cfg.uninstall(a.release, timeout=a.timeout, wait=a.wait, ignore_not_found=a.ignore_not_found)
                return out({"action": a.cmd, "info": rel.get("info"), "release": release_summary(rel.get("release") or {})}, True)
            else:
                rel = cfg.status(a.release)
    except helm.HelmError as e:
        print(json.dumps({"ok": False, "action": a.cmd, "error": type(e).__name__, "message": str(e)}, indent=2))
        return 2
    if getattr(a, "print_notes", False):
        # For a person at a terminal: NOTES.txt as Helm prints it, on stderr beside the JSON.
        print(rel.get("notes") or "", file=sys.stderr)
    return out({"action": a.cmd, "release": release_summary(rel, getattr(a, "notes", False))}, True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp: argparse.ArgumentParser, release_default: str | None = "wpa", ns_default: str | None = "wpa-system") -> None:
        sp.add_argument("--release", default=release_default, required=release_default is None)
        sp.add_argument("--namespace", default=ns_default, required=ns_default is None)

    sp = sub.add_parser("lint", help="helm lint (strict) + schema acceptance/rejection checks")
    common(sp)
    sp.set_defaults(func=cmd_lint)

    sp = sub.add_parser("render", help="render one values combination")
    common(sp)
    sp.add_argument("--values-json", default="{}")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="a value on top of --values-json (repeatable)")
    sp.add_argument("--out", required=True)
    sp.add_argument("--label", default="custom", help="file name (without .yaml) in --out")
    sp.add_argument("--kube-version", help="render as for this cluster version, e.g. v1.20.2")
    sp.set_defaults(func=cmd_render)

    sp = sub.add_parser("matrix", help="render every meaningful combination and check each")
    common(sp)
    sp.add_argument("--out", required=True)
    sp.add_argument("--kube-version", help="render every combination as for this cluster version, e.g. v1.20.2")
    sp.set_defaults(func=cmd_matrix)

    sp = sub.add_parser("check-rbac", help="chart RBAC vs webhook-config/rbac.yaml")
    sp.set_defaults(func=cmd_check_rbac)
    sp = sub.add_parser("check-webhooks", help="chart webhooks vs webhook-config/webhooks.yaml")
    sp.set_defaults(func=cmd_check_webhooks)

    for name in ("install", "upgrade", "uninstall", "status"):
        sp = sub.add_parser(name, help=f"helm {name} against a cluster")
        sp.add_argument("--kubeconfig", required=True)
        common(sp, release_default=None, ns_default=None)
        sp.add_argument("--timeout", type=int, default=300, help="seconds")
        if name != "status":
            sp.add_argument("--wait", choices=["watcher", "legacy", "hookOnly"], default=None,
                            help="wait for the objects to be ready (default: do not wait)")
        if name in ("install", "upgrade"):
            sp.add_argument("--values-json", default="{}")
            sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="a value on top of --values-json (repeatable)")
            sp.add_argument("--dry-run", choices=["client", "server"], default=None)
            sp.add_argument("--notes", action="store_true", help="include NOTES.txt in the JSON")
            sp.add_argument("--print-notes", action="store_true", help="print NOTES.txt as text on stderr")
        if name == "install":
            sp.add_argument("--create-namespace", action="store_true")
        if name == "upgrade":
            sp.add_argument("--reset-values", action="store_true")
            sp.add_argument("--reuse-values", action="store_true")
        if name == "uninstall":
            sp.add_argument("--ignore-not-found", action="store_true")
        sp.set_defaults(func=cmd_release)

    a = p.parse_args(argv)
    try:
        return a.func(a)
    except (ValueError, json.JSONDecodeError) as e:
        print(json.dumps({"ok": False, "error": "usage", "message": str(e)}))
        return 2


if __name__ == "__main__":
    sys.exit(main())
