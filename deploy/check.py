#!/usr/bin/env python3
"""Checks what the API schemas cannot: the KEDA ScaledObject against KEDA's documented fields
(kubernetes-validate has no schema for its CRD), and that every grace period and stop timeout
covers the drain the engine is given. Usage: deploy/check.py DEPLOY_DIR. Exits 1 with the
reasons on failure."""
import re
import sys
import tomllib
from pathlib import Path

import yaml

# https://keda.sh/docs/2.x/reference/scaledobject-spec/ and the Prometheus scaler's page.
SCALEDOBJECT_SPEC = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
    "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "fallback", "advanced",
    "triggers",
}
PROMETHEUS_METADATA = {
    "serverAddress", "query", "threshold", "activationThreshold", "namespace",
    "customHeaders", "ignoreNullValues", "queryParameters", "unsafeSsl", "timeout",
}
PROMETHEUS_REQUIRED = {"serverAddress", "query", "threshold"}


def docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def drain_seconds(args, env=(), conf=None):
    """accept window plus timeout, in seconds, from the engine's settings: the config file's
    keys, then EDGE_ variables, then flags (the engine's precedence)."""
    values = {"drain_accept_ms": 2000, "drain_timeout_s": 300}
    for key in values:
        if conf and key in conf:
            values[key] = int(conf[key])
        for e in env:
            if e.get("name") == "EDGE_" + key.upper() and "value" in e:
                values[key] = int(e["value"])
        for a in args:
            m = re.fullmatch("--" + key.replace("_", "-") + r"=(\d+)", a)
            values[key] = int(m.group(1)) if m else values[key]
    return values["drain_accept_ms"] / 1000 + values["drain_timeout_s"]


def main(root):
    errors = []
    k8s = root / "k8s"
    workloads = {}
    for f in sorted(k8s.glob("*.yaml")):
        for d in docs(f):
            kind, name = d.get("kind"), d.get("metadata", {}).get("name")
            if kind in ("Deployment", "DaemonSet"):
                workloads[name] = d
                pod = d["spec"]["template"]["spec"]
                for c in pod["containers"]:
                    if c.get("image", "").startswith("edge-engine"):
                        need = drain_seconds(c.get("args", []), c.get("env", []))
                        grace = pod.get("terminationGracePeriodSeconds", 30)
                        if grace < need:
                            errors.append(f"{f.name} {name}: terminationGracePeriodSeconds "
                                          f"{grace} < the drain's {need:.0f} s")
                        probes = (c.get("readinessProbe", {}).get("httpGet", {}).get("path"),
                                  c.get("livenessProbe", {}).get("httpGet", {}).get("path"))
                        if probes != ("/readyz", "/healthz"):
                            errors.append(f"{f.name} {name}: probes {probes}")
                        if "preStop" not in c.get("lifecycle", {}):
                            errors.append(f"{f.name} {name}: no preStop hook")
    for d in docs(k8s / "keda.yaml"):
        where = f"keda.yaml {d.get('metadata', {}).get('name')}"
        if (d.get("apiVersion"), d.get("kind")) != ("keda.sh/v1alpha1", "ScaledObject"):
            errors.append(f"{where}: not a keda.sh/v1alpha1 ScaledObject")
            continue
        spec = d.get("spec", {})
        unknown = set(spec) - SCALEDOBJECT_SPEC
        if unknown:
            errors.append(f"{where}: unknown spec fields {sorted(unknown)}")
        target = spec.get("scaleTargetRef", {}).get("name")
        if target not in workloads or workloads[target]["kind"] != "Deployment":
            errors.append(f"{where}: scaleTargetRef {target!r} is no Deployment here")
        if not spec.get("triggers"):
            errors.append(f"{where}: no triggers")
        for t in spec.get("triggers", []):
            meta = t.get("metadata", {})
            if t.get("type") != "prometheus":
                errors.append(f"{where}: trigger type {t.get('type')!r}")
                continue
            if set(meta) - PROMETHEUS_METADATA:
                errors.append(f"{where}: unknown metadata {sorted(set(meta) - PROMETHEUS_METADATA)}")
            if PROMETHEUS_REQUIRED - set(meta):
                errors.append(f"{where}: missing {sorted(PROMETHEUS_REQUIRED - set(meta))}")
            if not all(isinstance(v, str) for v in meta.values()):
                errors.append(f"{where}: metadata values must be strings")
            if "edge_" not in meta.get("query", ""):
                errors.append(f"{where}: the query reads no edge_ series")
    unit = (root / "systemd" / "edge-engine.service").read_text()
    stop = re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M)
    conf = tomllib.loads((root / "edge-engine.toml").read_text())
    if not stop or int(stop.group(1)) < drain_seconds([], conf=conf):
        errors.append("edge-engine.service: TimeoutStopSec does not cover the drain")
    for line in ("KillSignal=SIGTERM", "LimitNOFILE=", "LimitMEMLOCK=", "ExecReload=",
                 "NoNewPrivileges=yes", "ProtectSystem=strict"):
        if line not in unit:
            errors.append(f"edge-engine.service: no {line}")
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
