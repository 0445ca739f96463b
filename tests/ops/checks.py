#!/usr/bin/env python3
"""The checks of deploy/ and dashboards/ that need more than one tool call.

tests/ops/check-static.sh runs each subcommand (with the Python of its virtualenv, which has
PyYAML and jsonschema) after the plain tool checks (promtool, amtool, kubernetes-validate,
hadolint, yamllint, systemd-analyze, docker-compose). Each check records the files it reads in
the ledger named by $OPS_LEDGER; the last check, `coverage`, fails when a file under deploy/ or
dashboards/ is in no check's ledger entry, so nothing shipped goes unchecked.

`sync-prometheusrule` (without --check) also rewrites deploy/kubernetes/prometheusrule.yaml from
deploy/prometheus/rules/stormwatch.rules.yml.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/rules/stormwatch.rules.yml"
RULE_TESTS = sorted((ROOT / "deploy/prometheus/tests").glob("*.yml"))
PROMETHEUSRULE = ROOT / "deploy/kubernetes/prometheusrule.yaml"
DASHBOARD = ROOT / "dashboards/stormwatch.json"
COMPOSE = ROOT / "deploy/compose.yaml"
K8S = ROOT / "deploy/kubernetes"
ALERTMANAGER_CONFIG = ROOT / "deploy/alertmanager/alertmanager.yml"
OPERATING = ROOT / "README.md"
METRICS_SOURCE = ROOT / "src/metrics.rs"

# The alerts issue 5 asks for; each must exist, fire in a test and stay silent in another.
REQUIRED_ALERTS = [
    "ReplyAllStorm",
    "StormwatchDown",
    "StormwatchInputSilent",
    "StormwatchConsumerLagging",
    "StormwatchDroppingAlerts",
    "StormwatchMalformedSpike",
    "StormwatchReplyAllsUncounted",
]
# What the dashboard must show (metric names its expressions must use).
DASHBOARD_METRICS = [
    "stormwatch_storms_active",
    "stormwatch_storms_started_total",
    "stormwatch_storm_reply_alls",
    "stormwatch_events_total",
    "stormwatch_event_lag_seconds_bucket",
    "stormwatch_event_lag_seconds_quantile",
    "stormwatch_processing_latency_seconds_bucket",
    "stormwatch_processing_latency_seconds_quantile",
    "stormwatch_kafka_consumer_lag",
    "stormwatch_alerts_sent_total",
    "stormwatch_tracked_threads",
    "stormwatch_evictions_total",
]
# Values put in for Grafana's variables when checking the dashboard's PromQL.
GRAFANA_SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "6h",
    "${__rate_interval}": "1m",
    "${__interval}": "15s",
    "${__range}": "6h",
}

PROMETHEUS_OPERATOR_HEADER = """\
# GENERATED from deploy/prometheus/rules/stormwatch.rules.yml by
# `python3 tests/ops/checks.py sync-prometheusrule`: edit that file, not this one
# (tests/ops/check-static.sh fails when they differ).
# prometheus-operator loads this into Prometheus. Your Prometheus may select rules by label
# (ruleSelector, e.g. release: kube-prometheus-stack): add it under metadata.labels.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: stormwatch
  labels:
    app.kubernetes.io/name: stormwatch
spec:
"""


# --- shared ---------------------------------------------------------------------------------


class Check:
    """Collects the failures of one subcommand; `done` prints them and gives the exit code."""

    def __init__(self, name: str):
        self.name = name
        self.errors: list[str] = []

    def fail(self, message: str) -> None:
        self.errors.append(message)

    def expect(self, condition: bool, message: str) -> bool:
        if not condition:
            self.fail(message)
        return condition

    def done(self) -> int:
        for error in self.errors:
            print(f"FAIL [{self.name}] {error}")
        if self.errors:
            return 1
        print(f"ok   [{self.name}]")
        return 0


def rel(path: Path) -> str:
    return str(Path(path).resolve().relative_to(ROOT))


def covered(*paths: Path) -> None:
    """Records that a check read these files (see `coverage`)."""
    ledger = os.environ.get("OPS_LEDGER")
    if not ledger:
        return
    with open(ledger, "a", encoding="utf-8") as out:
        for path in paths:
            out.write(rel(path) + "\n")


def load_yaml(path: Path):
    covered(path)
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_yaml_all(path: Path) -> list:
    covered(path)
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def run_promtool_check_rules(promtool: str, groups: list, check: Check, what: str) -> None:
    """Runs `promtool check rules` on the rule groups; failures go to `check`."""
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as tmp:
        yaml.safe_dump({"groups": groups}, tmp, sort_keys=False)
    try:
        result = subprocess.run(
            [promtool, "check", "rules", tmp.name], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            check.fail(f"{what}: promtool check rules failed:\n{result.stdout}{result.stderr}")
    finally:
        os.unlink(tmp.name)


def metric_names_from_source(check: Check) -> set[str] | None:
    """The metric names src/metrics.rs registers, with the histogram and quantile series."""
    if not METRICS_SOURCE.exists():
        check.fail(f"{rel(METRICS_SOURCE)} not found: cannot check metric names")
        return None
    text = METRICS_SOURCE.read_text(encoding="utf-8")
    names = set(re.findall(r'"(stormwatch_[a-z0-9_]+)"', text))
    # Histograms from hdrhistogram (src/latency.rs): the name plus the Prometheus series.
    latency = set(re.findall(r'latency\(\s*&registry,\s*"(stormwatch_[a-z0-9_]+)"', text))
    for name in latency:
        names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_quantile"}
    return names


RECORDING_NAME = re.compile(r"\b[a-z_]+:[a-zA-Z0-9_]+:[a-zA-Z0-9_]+\b")
METRIC_TOKEN = re.compile(r"\bstormwatch_[a-z0-9_]+")


def unknown_metrics(text: str, known: set[str], recorded: set[str]) -> set[str]:
    """Metric names in `text` that neither stormwatch exports nor a recording rule records."""
    unknown = {n for n in RECORDING_NAME.findall(text) if n not in recorded}
    text = RECORDING_NAME.sub(" ", text)
    unknown |= {n for n in METRIC_TOKEN.findall(text) if n not in known}
    return unknown


def rule_groups() -> list:
    return load_yaml(RULES)["groups"]


def recorded_names() -> set[str]:
    return {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}


# --- PrometheusRule -------------------------------------------------------------------------


def prometheusrule_text() -> str:
    """deploy/kubernetes/prometheusrule.yaml as generated from the rules file: its `groups:`
    and everything after, indented under `spec:` (comments kept)."""
    lines = RULES.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = "".join(("  " + line if line.strip() else "") + "\n" for line in lines[start:])
    return PROMETHEUS_OPERATOR_HEADER + body


def cmd_sync_prometheusrule(args) -> int:
    check = Check("prometheusrule")
    if not args.check:
        PROMETHEUSRULE.write_text(prometheusrule_text(), encoding="utf-8")
        print(f"wrote {rel(PROMETHEUSRULE)}")
    docs = load_yaml_all(PROMETHEUSRULE)
    groups = rule_groups()
    if check.expect(len(docs) == 1, f"{rel(PROMETHEUSRULE)}: expected one document"):
        doc = docs[0]
        check.expect(doc.get("kind") == "PrometheusRule", "kind is not PrometheusRule")
        check.expect(
            doc.get("apiVersion") == "monitoring.coreos.com/v1", "apiVersion is not monitoring.coreos.com/v1"
        )
        if doc.get("spec", {}).get("groups") != groups:
            check.fail(
                f"{rel(PROMETHEUSRULE)} spec.groups differ from {rel(RULES)}; run "
                "`python3 tests/ops/checks.py sync-prometheusrule`"
            )
        elif PROMETHEUSRULE.read_text(encoding="utf-8") != prometheusrule_text():
            # Same rules, different text (comments or layout): still worth regenerating.
            check.fail(f"{rel(PROMETHEUSRULE)} is not the generated text; run sync-prometheusrule")
    return check.done()


# --- rules: annotations, runbooks, test coverage --------------------------------------------


def markdown_anchors(path: Path) -> set[str]:
    """GitHub-style anchors of the Markdown headings in `path`."""
    anchors = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            title = m.group(1).strip().lower()
            title = re.sub(r"[^\w\- ]", "", title)
            anchors.add(title.replace(" ", "-"))
    return anchors


def cmd_rules_meta(args) -> int:
    check = Check("rules-meta")
    groups = rule_groups()
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    records = [r for g in groups for r in g["rules"] if "record" in r]
    names = [a["alert"] for a in alerts]
    for required in REQUIRED_ALERTS:
        check.expect(required in names, f"alert {required} is missing from {rel(RULES)}")
    check.expect(records, "no recording rules")

    for alert in alerts:
        name = alert["alert"]
        annotations = alert.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            check.expect(bool(annotations.get(key)), f"{name}: annotation {key} is missing")
        labels = alert.get("labels", {})
        if name == "ReplyAllStorm":
            # Severity comes from stormwatch_storms_active{severity}; source marks the backstop.
            check.expect(labels.get("source") == "prometheus", "ReplyAllStorm must carry source=prometheus")
            check.expect("severity" not in labels, "ReplyAllStorm takes its severity from the metric")
        else:
            check.expect(
                labels.get("severity") in ("critical", "warning"),
                f"{name}: severity label must be critical or warning",
            )
        runbook = annotations.get("runbook", "")
        if "#" in runbook:
            doc, anchor = runbook.split("#", 1)
            doc_path = ROOT / doc
            if check.expect(doc_path.exists(), f"{name}: runbook document {doc} does not exist"):
                covered(doc_path)
                check.expect(
                    anchor in markdown_anchors(doc_path),
                    f"{name}: runbook anchor #{anchor} is no heading of {doc}",
                )
        else:
            check.fail(f"{name}: runbook must be <document>#<section>, got {runbook!r}")

    # Every alert fires in some test and stays silent in another; every record is evaluated.
    fires, silent, evaluated = set(), set(), set()
    for path in RULE_TESTS:
        tests = load_yaml(path)
        for rule_file in tests.get("rule_files", []):
            check.expect(
                (path.parent / rule_file).resolve() == RULES.resolve(),
                f"{rel(path)}: tests {rule_file}, not {rel(RULES)}",
            )
        for test in tests.get("tests", []):
            for case in test.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else silent).add(case["alertname"])
            for case in test.get("promql_expr_test", []):
                evaluated |= set(RECORDING_NAME.findall(case["expr"]))
    for name in names:
        check.expect(name in fires, f"{name}: no test where it fires")
        check.expect(name in silent, f"{name}: no test where it stays silent")
    for record in records:
        check.expect(record["record"] in evaluated, f"{record['record']}: no promql_expr_test")
    return check.done()


# --- metric names ---------------------------------------------------------------------------


def cmd_metric_names(args) -> int:
    check = Check("metric-names")
    known = metric_names_from_source(check)
    if known is None:
        return check.done()
    recorded = recorded_names()
    files = [RULES, PROMETHEUSRULE, DASHBOARD, OPERATING, *RULE_TESTS]
    for path in files:
        if not path.exists():
            check.fail(f"{rel(path)} does not exist")
            continue
        covered(path)
        text = path.read_text(encoding="utf-8")
        for name in sorted(unknown_metrics(text, known, recorded)):
            check.fail(f"{rel(path)}: {name} is neither exported by stormwatch nor recorded")
    return check.done()


# --- dashboard ------------------------------------------------------------------------------


def substitute_grafana(expr: str, variables: set[str]) -> str:
    for key, value in GRAFANA_SUBSTITUTIONS.items():
        expr = expr.replace(key, value)
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", ".+").replace("$" + name, ".+")
    return expr


def all_panels(panels: list) -> list:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(all_panels(panel.get("panels", [])))
    return out


def cmd_dashboard(args) -> int:
    check = Check("dashboard")
    covered(DASHBOARD)
    try:
        dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        check.fail(f"{rel(DASHBOARD)} is not JSON: {e}")
        return check.done()

    check.expect(isinstance(dash.get("uid"), str) and dash["uid"], "uid is not set")
    check.expect(dash.get("title"), "title is not set")
    check.expect(
        isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] >= 39,
        f"schemaVersion must be 39 or later, got {dash.get('schemaVersion')}",
    )
    check.expect("id" not in dash or dash["id"] is None, "a provisioned dashboard must not carry an id")

    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds_var = variables.get("datasource")
    if check.expect(ds_var is not None, "no `datasource` template variable"):
        check.expect(ds_var.get("type") == "datasource", "`datasource` variable is not of type datasource")
        check.expect(ds_var.get("query") == "prometheus", "`datasource` variable does not list prometheus")
    want_ds = {"type": "prometheus", "uid": "${datasource}"}

    exprs: list[tuple[str, str]] = []  # (where, expr)
    for name, var in variables.items():
        if var.get("type") == "query":
            check.expect(var.get("datasource") == want_ds, f"variable {name}: datasource must be {want_ds}")
            query = var.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            m = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", query or "")
            if check.expect(m, f"variable {name}: query must be label_values(<selector>, <label>)"):
                exprs.append((f"variable {name}", m.group(1)))

    for i, annotation in enumerate(dash.get("annotations", {}).get("list", [])):
        if annotation.get("builtIn"):
            continue
        check.expect(annotation.get("datasource") == want_ds, f"annotation {annotation.get('name')}: datasource")
        if check.expect(annotation.get("expr"), f"annotation {annotation.get('name')}: no expr"):
            exprs.append((f"annotation {annotation.get('name')}", annotation["expr"]))

    panels = all_panels(dash.get("panels", []))
    ids = [p.get("id") for p in panels]
    check.expect(len(ids) == len(set(ids)) and None not in ids, "panel ids must be set and unique")
    occupied: dict[tuple[int, int], str] = {}
    for panel in panels:
        title = panel.get("title", f"id {panel.get('id')}")
        grid = panel.get("gridPos", {})
        if check.expect(all(k in grid for k in "hwxy"), f"panel {title}: gridPos incomplete"):
            check.expect(grid["x"] + grid["w"] <= 24, f"panel {title}: wider than the grid")
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    other = occupied.setdefault((x, y), title)
                    if other != title:
                        check.fail(f"panel {title} overlaps panel {other}")
                        break
                else:
                    continue
                break
        if panel.get("type") == "row":
            check.expect("targets" not in panel, f"row {title} has targets")
            continue
        check.expect(panel.get("datasource") == want_ds, f"panel {title}: datasource must be {want_ds}")
        targets = panel.get("targets", [])
        check.expect(targets, f"panel {title}: no targets")
        refs = [t.get("refId") for t in targets]
        check.expect(len(refs) == len(set(refs)) and None not in refs, f"panel {title}: refIds not unique")
        for target in targets:
            check.expect(
                target.get("datasource") == want_ds,
                f"panel {title} target {target.get('refId')}: datasource must be {want_ds}",
            )
            if check.expect(target.get("expr"), f"panel {title} target {target.get('refId')}: no expr"):
                exprs.append((f"panel {title} {target.get('refId')}", target["expr"]))

    # Every $variable used is defined (Grafana's own are allowed).
    builtin = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s"}
    for where, expr in exprs:
        for name in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expr):
            check.expect(name in variables or name in builtin, f"{where}: ${name} is not a defined variable")

    # Every expression parses: promtool checks them as recording rules.
    rules = [
        {"record": f"dashboard:expr_{i}:check", "expr": substitute_grafana(expr, set(variables))}
        for i, (_, expr) in enumerate(exprs)
    ]
    run_promtool_check_rules(args.promtool, [{"name": "dashboard", "rules": rules}], check, rel(DASHBOARD))

    used = " ".join(expr for _, expr in exprs)
    for metric in DASHBOARD_METRICS:
        check.expect(re.search(rf"\b{metric}\b", used), f"no panel shows {metric}")
    print(f"     [dashboard] {len(panels)} panels, {len(exprs)} PromQL expressions")
    return check.done()


# --- Grafana provisioning -------------------------------------------------------------------


def compose_services() -> dict:
    return load_yaml(COMPOSE)["services"]


def compose_mounts(service: dict) -> list[tuple[Path, str]]:
    """(host path, container path) of the bind mounts of a compose service."""
    out = []
    for volume in service.get("volumes", []):
        parts = volume.split(":")
        if parts[0].startswith((".", "/")):
            out.append(((COMPOSE.parent / parts[0]).resolve(), parts[1]))
    return out


def cmd_grafana_provisioning(args) -> int:
    check = Check("grafana-provisioning")
    grafana = compose_services().get("grafana", {})
    mounts = compose_mounts(grafana)
    prometheus_port = None
    prom = compose_services().get("prometheus", {})
    for arg in prom.get("command", []):
        m = re.match(r"--web.listen-address=.*:(\d+)$", str(arg))
        if m:
            prometheus_port = m.group(1)
    prometheus_port = prometheus_port or "9090"

    ds_dir = ROOT / "dashboards/provisioning/datasources"
    db_dir = ROOT / "dashboards/provisioning/dashboards"
    for path in sorted(ds_dir.glob("*.yml")):
        doc = load_yaml(path)
        check.expect(doc.get("apiVersion") == 1, f"{rel(path)}: apiVersion must be 1")
        for ds in doc.get("datasources", []):
            check.expect(ds.get("type") == "prometheus", f"{rel(path)}: {ds.get('name')} is not prometheus")
            check.expect(ds.get("uid"), f"{rel(path)}: {ds.get('name')} has no uid")
            check.expect(
                ds.get("url") == f"http://prometheus:{prometheus_port}",
                f"{rel(path)}: url must reach the compose prometheus service",
            )
    dashboard_container_paths = {c for h, c in mounts if h == DASHBOARD.resolve()}
    for path in sorted(db_dir.glob("*.yml")):
        doc = load_yaml(path)
        check.expect(doc.get("apiVersion") == 1, f"{rel(path)}: apiVersion must be 1")
        for provider in doc.get("providers", []):
            check.expect(provider.get("type") == "file", f"{rel(path)}: provider type must be file")
            where = provider.get("options", {}).get("path", "")
            check.expect(
                any(c.startswith(where.rstrip("/") + "/") for c in dashboard_container_paths),
                f"{rel(path)}: provider path {where} does not hold the mounted {rel(DASHBOARD)}",
            )
    mounted = {h for h, _ in mounts}
    for directory, target in ((ds_dir, "/etc/grafana/provisioning/datasources"),
                              (db_dir, "/etc/grafana/provisioning/dashboards")):
        check.expect(
            (directory.resolve(), target) in mounts,
            f"compose grafana does not mount {rel(directory)} at {target}",
        )
    check.expect(DASHBOARD.resolve() in mounted, f"compose grafana does not mount {rel(DASHBOARD)}")
    return check.done()


# --- compose --------------------------------------------------------------------------------


def cmd_compose(args) -> int:
    check = Check("compose")
    doc = load_yaml(COMPOSE)
    services = doc.get("services", {})
    for name in ("kafka", "stormwatch", "prometheus", "alertmanager", "grafana"):
        check.expect(name in services, f"service {name} is missing")
    named_volumes = set((doc.get("volumes") or {}).keys())
    for name, service in services.items():
        for dep in service.get("depends_on", []) or []:
            check.expect(dep in services, f"{name}: depends on unknown service {dep}")
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                host = (COMPOSE.parent / source).resolve()
                exists = check.expect(host.exists(), f"{name}: mounted path {source} does not exist")
                if exists and host.is_file():
                    covered(host)
            else:
                check.expect(source in named_volumes, f"{name}: volume {source} is not declared")
        for port in service.get("ports", []):
            check.expect(str(port).startswith("127.0.0.1:"), f"{name}: port {port} is not bound to 127.0.0.1")
        build = service.get("build")
        if build:
            context = (COMPOSE.parent / build["context"]).resolve()
            dockerfile = context / build["dockerfile"]
            check.expect(dockerfile.exists(), f"{name}: dockerfile {build['dockerfile']} not found")
            covered(dockerfile)
    # Prometheus and Alertmanager read the files the checks checked.
    prom_mounts = dict(compose_mounts(services.get("prometheus", {})))
    check.expect(
        prom_mounts.get((ROOT / "deploy/prometheus").resolve()) == "/etc/prometheus",
        "prometheus must mount deploy/prometheus at /etc/prometheus",
    )
    check.expect(
        "--config.file=/etc/prometheus/prometheus.yml" in services.get("prometheus", {}).get("command", []),
        "prometheus must run with /etc/prometheus/prometheus.yml",
    )
    am_mounts = dict(compose_mounts(services.get("alertmanager", {})))
    check.expect(
        am_mounts.get(ALERTMANAGER_CONFIG.resolve()) == "/etc/alertmanager/alertmanager.yml",
        "alertmanager must mount deploy/alertmanager/alertmanager.yml",
    )
    sw_mounts = dict(compose_mounts(services.get("stormwatch", {})))
    check.expect(
        sw_mounts.get((ROOT / "deploy/config/stormwatch.toml").resolve()) == "/etc/stormwatch/stormwatch.toml",
        "stormwatch must mount deploy/config/stormwatch.toml at /etc/stormwatch/stormwatch.toml",
    )
    # Prometheus scrapes the stormwatch service as job "stormwatch" and alerts the compose AM.
    prom_config = load_yaml(ROOT / "deploy/prometheus/prometheus.yml")
    jobs = {j["job_name"]: j for j in prom_config.get("scrape_configs", [])}
    if check.expect("stormwatch" in jobs, "prometheus.yml has no job named stormwatch"):
        targets = [t for sc in jobs["stormwatch"].get("static_configs", []) for t in sc.get("targets", [])]
        check.expect("stormwatch:9464" in targets, "prometheus.yml does not scrape stormwatch:9464")
    am_targets = [
        t
        for am in prom_config.get("alerting", {}).get("alertmanagers", [])
        for sc in am.get("static_configs", [])
        for t in sc.get("targets", [])
    ]
    check.expect("alertmanager:9093" in am_targets, "prometheus.yml does not alert alertmanager:9093")
    return check.done()


# --- stormwatch configuration through the real binary ---------------------------------------


def print_config(binary: str, config: Path, env: dict[str, str], check: Check, what: str) -> dict | None:
    """The effective configuration `stormwatch run --print-config` shows, or None (failed)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STORMWATCH_")}
    clean.update(env)
    result = subprocess.run(
        [binary, "run", "--config", str(config), "--print-config"],
        capture_output=True, text=True, env=clean, check=False,
    )
    if result.returncode != 0:
        check.fail(f"{what}: stormwatch rejects it: {result.stderr.strip()}")
        return None
    return tomllib.loads(result.stdout)


def k8s_docs() -> dict[str, list]:
    """Every manifest in deploy/kubernetes (but the kustomization), by file."""
    return {
        p.name: load_yaml_all(p)
        for p in sorted(K8S.glob("*.yaml"))
        if p.name != "kustomization.yaml"
    }


def find_kind(docs: dict[str, list], kind: str) -> list:
    return [d for ds in docs.values() for d in ds if d.get("kind") == kind]


def cmd_config(args) -> int:
    check = Check("config")
    base = ROOT / "deploy/config/stormwatch.toml"
    covered(base)
    # The shipped file: valid, and every key spelled out (it is the reference example).
    effective = print_config(args.bin, base, {}, check, rel(base))
    if effective is not None:
        default = subprocess.run([args.bin, "run", "--print-config"], capture_output=True, text=True,
                                 env={k: v for k, v in os.environ.items() if not k.startswith("STORMWATCH_")},
                                 check=False)
        check.expect(tomllib.loads(default.stdout) == effective,
                     f"{rel(base)} must hold the defaults (site values go in the environment)")
        file_keys = tomllib.loads(base.read_text(encoding="utf-8"))
        check.expect(file_keys == effective, f"{rel(base)} must spell out every key of --print-config")

    # Compose: the stormwatch service's environment over the mounted file.
    env = {k: str(v) for k, v in compose_services()["stormwatch"].get("environment", {}).items()}
    got = print_config(args.bin, base, env, check, "compose stormwatch environment")
    if got is not None:
        check.expect(got["kafka"]["brokers"] == "kafka:9092", "compose: brokers are not kafka:9092")
        check.expect(got["http"]["listen"] == "0.0.0.0:9464", "compose: http.listen is not 0.0.0.0:9464")
        check.expect(got["sinks"]["alertmanager"].get("url") == "http://alertmanager:9093",
                     "compose: the Alertmanager sink does not point at the alertmanager service")

    # The Dockerfile's ENV.
    dockerfile = ROOT / "deploy/docker/Dockerfile"
    covered(dockerfile)
    docker_env = dict(re.findall(r"^ENV\s+(STORMWATCH_[A-Z0-9_]+)=(\S+)", dockerfile.read_text(), re.M))
    got = print_config(args.bin, base, docker_env, check, "Dockerfile ENV")
    if got is not None:
        check.expect(got["http"]["listen"] == "0.0.0.0:9464", "Dockerfile: http.listen is not 0.0.0.0:9464")

    # systemd: Environment= lines and the EnvironmentFile example.
    unit = ROOT / "deploy/systemd/stormwatch.service"
    example = ROOT / "deploy/systemd/stormwatch.env.example"
    covered(unit, example)
    env = dict(re.findall(r"^Environment=(\w+)=(.*)$", unit.read_text(), re.M))
    for line in example.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            check.expect(key.startswith("STORMWATCH_"), f"{rel(example)}: {key} is not a STORMWATCH_ variable")
            env[key] = value
    got = print_config(args.bin, base, env, check, "systemd environment")
    if got is not None:
        props = got["kafka"].get("properties", {})
        check.expect({"sasl.username", "sasl.password"} <= set(props),
                     "systemd: the example does not set sasl.username and sasl.password")

    # Kubernetes: the ConfigMap's file with the Deployment's env and the Secret's keys.
    docs = k8s_docs()
    configmaps = {d["metadata"]["name"]: d for d in find_kind(docs, "ConfigMap")}
    secrets = {d["metadata"]["name"]: d for d in find_kind(docs, "Secret")}
    for deployment in find_kind(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        for source in container.get("envFrom", []):
            name = source.get("secretRef", {}).get("name")
            if check.expect(name in secrets, f"Deployment envFrom: Secret {name} is not shipped"):
                env.update(secrets[name].get("stringData", {}))
        config_volumes = [v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v]
        for name in config_volumes:
            if not check.expect(name in configmaps, f"Deployment mounts ConfigMap {name}, which is not shipped"):
                continue
            data = configmaps[name].get("data", {})
            if not check.expect("stormwatch.toml" in data, f"ConfigMap {name} has no stormwatch.toml"):
                continue
            with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as tmp:
                tmp.write(data["stormwatch.toml"])
            try:
                got = print_config(args.bin, Path(tmp.name), env, check, f"ConfigMap {name} with the pod env")
            finally:
                os.unlink(tmp.name)
            if got is not None:
                check.expect(got["http"]["listen"] == "0.0.0.0:9464", "Kubernetes: http.listen is not 0.0.0.0:9464")
                props = got["kafka"].get("properties", {})
                check.expect({"sasl.username", "sasl.password"} <= set(props),
                             "Kubernetes: the Secret does not set sasl.username and sasl.password")
                # Every key is spelled out in the ConfigMap too.
                check.expect(set(tomllib.loads(data["stormwatch.toml"])) == set(got),
                             f"ConfigMap {name}: a section is missing")
    return check.done()


# --- Kubernetes -----------------------------------------------------------------------------

# Minimal schemas (our own, after prometheus-operator's v1 API) for the two custom resources,
# which kubernetes-validate has no schema for. Unknown fields are errors, so typos are caught.
_STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                   "labels": _STRMAP, "annotations": _STRMAP},
    "additionalProperties": False,
}
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
SERVICEMONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "namespaceSelector": {"type": "object"},
                "selector": {"type": "object", "properties": {"matchLabels": _STRMAP}},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                            "honorLabels": {"type": "boolean"},
                            "authorization": {"type": "object"},
                            "tlsConfig": {"type": "object"},
                            "relabelings": {"type": "array"},
                            "metricRelabelings": {"type": "array"},
                        },
                    },
                },
            },
        },
    },
}
PROMETHEUSRULE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "interval": _DURATION,
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "record": {"type": "string"},
                                        "alert": {"type": "string"},
                                        "expr": {"type": "string"},
                                        "for": _DURATION,
                                        "labels": _STRMAP,
                                        "annotations": _STRMAP,
                                    },
                                    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def labels_match(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def cmd_kubernetes(args) -> int:
    check = Check("kubernetes")
    docs = k8s_docs()
    kustomization = load_yaml(K8S / "kustomization.yaml")
    resources = kustomization.get("resources", [])
    for name in resources:
        check.expect((K8S / name).exists(), f"kustomization lists {name}, which does not exist")
    for name in docs:
        check.expect(name in resources, f"{name} is not listed in kustomization.yaml")

    for kind, schema in (("ServiceMonitor", SERVICEMONITOR_SCHEMA), ("PrometheusRule", PROMETHEUSRULE_SCHEMA)):
        found = find_kind(docs, kind)
        check.expect(found, f"no {kind}")
        for doc in found:
            for error in jsonschema.Draft202012Validator(schema).iter_errors(doc):
                path = ".".join(str(p) for p in error.absolute_path)
                check.fail(f"{kind} {doc['metadata'].get('name')}: {path}: {error.message}")

    deployments = find_kind(docs, "Deployment")
    services = find_kind(docs, "Service")
    if not (check.expect(len(deployments) == 1, "expected one Deployment")
            and check.expect(len(services) == 1, "expected one Service")):
        return check.done()
    deployment, service = deployments[0], services[0]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    check.expect(spec.get("replicas") == 1, "Deployment: replicas must be 1 (one active instance)")
    check.expect(spec.get("strategy", {}).get("type") == "Recreate", "Deployment: strategy must be Recreate")
    check.expect(labels_match(spec["selector"]["matchLabels"], pod_labels), "Deployment selector misses its pods")
    pod_sc = pod.get("securityContext", {})
    check.expect(pod_sc.get("runAsNonRoot") is True, "pod: runAsNonRoot must be true")
    check.expect(isinstance(pod_sc.get("runAsUser"), int) and pod_sc["runAsUser"] > 0, "pod: runAsUser must be non-zero")
    check.expect(len(pod["containers"]) == 1, "Deployment: one container expected")
    container = pod["containers"][0]
    sc = container.get("securityContext", {})
    check.expect(sc.get("readOnlyRootFilesystem") is True, "container: readOnlyRootFilesystem must be true")
    check.expect(sc.get("allowPrivilegeEscalation") is False, "container: allowPrivilegeEscalation must be false")
    check.expect(sc.get("capabilities", {}).get("drop") == ["ALL"], "container: capabilities must drop ALL")
    resources = container.get("resources", {})
    for part in ("requests", "limits"):
        for what in ("cpu", "memory"):
            check.expect(what in resources.get(part, {}), f"container: resources.{part}.{what} missing")
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    check.expect(ports.get("http") == 9464, "container: port http must be 9464")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container.get(probe, {}).get("httpGet", {})
        check.expect(get.get("path") == path, f"container: {probe} must GET {path}")
        check.expect(get.get("port") in ("http", 9464), f"container: {probe} must use port http")
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    check.expect(env.get("STORMWATCH_HTTP__LISTEN") == "0.0.0.0:9464", "container: STORMWATCH_HTTP__LISTEN")
    config_path = None
    args_ = container.get("args", [])
    if "--config" in args_:
        config_path = args_[args_.index("--config") + 1]
    mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for name, mount in mounts.items():
        check.expect(name in volumes, f"container mounts undefined volume {name}")
    config_mounts = [m for n, m in mounts.items() if "configMap" in volumes.get(n, {})]
    check.expect(
        config_path and any(config_path.startswith(m["mountPath"].rstrip("/") + "/") for m in config_mounts),
        f"--config {config_path} is not inside the ConfigMap mount",
    )
    for m in config_mounts:
        check.expect(m.get("readOnly") is True, "the config mount must be readOnly")

    # Service -> pods, ServiceMonitor -> Service.
    check.expect(labels_match(service["spec"]["selector"], pod_labels), "Service selector misses the pods")
    svc_ports = {p["name"]: p for p in service["spec"]["ports"]}
    if check.expect("http" in svc_ports, "Service has no port named http"):
        check.expect(svc_ports["http"].get("targetPort") in ("http", 9464), "Service port http must target http")
    for sm in find_kind(docs, "ServiceMonitor"):
        check.expect(labels_match(sm["spec"]["selector"].get("matchLabels", {}), service["metadata"].get("labels", {})),
                     "ServiceMonitor selector misses the Service")
        for endpoint in sm["spec"]["endpoints"]:
            check.expect(endpoint.get("port") in svc_ports, f"ServiceMonitor port {endpoint.get('port')} not on the Service")
            check.expect(endpoint.get("path", "/metrics") == "/metrics", "ServiceMonitor path must be /metrics")
        # The job label is the Service name unless jobLabel says otherwise: StormwatchDown needs it.
        check.expect("jobLabel" in sm["spec"] or service["metadata"]["name"] == "stormwatch",
                     "job label would not be stormwatch (StormwatchDown expects job=\"stormwatch\")")
    # Secret placeholders are clearly placeholders.
    for secret in find_kind(docs, "Secret"):
        for key, value in secret.get("stringData", {}).items():
            check.expect("REPLACE-ME" in value, f"Secret {secret['metadata']['name']}: {key} is not a placeholder")
        check.expect(not secret.get("data"), "the example Secret must use placeholder stringData only")
    return check.done()


# --- Dockerfile context ---------------------------------------------------------------------


def cmd_docker_context(args) -> int:
    check = Check("docker-context")
    dockerfile = ROOT / "deploy/docker/Dockerfile"
    ignore = ROOT / "deploy/docker/Dockerfile.dockerignore"
    covered(dockerfile, ignore)
    text = dockerfile.read_text(encoding="utf-8").replace("\\\n", " ")
    patterns = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
    check.expect(patterns and patterns[0] == "*", f"{rel(ignore)} should start by excluding everything")
    allowed = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    for line in text.splitlines():
        m = re.match(r"^\s*COPY\s+(.*)$", line)
        if not m or "--from=" in line:
            continue
        parts = [p for p in m.group(1).split() if not p.startswith("--")]
        for source in parts[:-1]:
            source = source.rstrip("/")
            check.expect((ROOT / source).exists(), f"COPY {source}: not in the repository")
            check.expect(any(source == a or source.startswith(a + "/") for a in allowed),
                         f"COPY {source}: excluded by {rel(ignore)}")
    for image in re.findall(r"^FROM\s+(\S+)", text, re.M):
        check.expect(":" in image and not image.endswith(":latest"), f"FROM {image}: pin a tag")
    check.expect(re.search(r"^USER\s+[1-9][0-9]*", text, re.M), "the runtime stage must run as a numeric non-root USER")
    check.expect(re.search(r"^EXPOSE\s+9464\b", text, re.M), "EXPOSE 9464 missing")
    check.expect('ENTRYPOINT ["stormwatch"]' in text, 'ENTRYPOINT ["stormwatch"] missing')
    check.expect('CMD ["run", "--config", "/etc/stormwatch/stormwatch.toml"]' in text, "CMD missing")
    return check.done()


# --- Alertmanager: one storm pages once, with the real Alertmanager -------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(method: str, url: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        raw = resp.read()
        return json.loads(raw) if raw.strip() else None


def cmd_alertmanager_inhibition(args) -> int:
    """Starts the Alertmanager binary with the shipped configuration (receivers pointed at a
    local recorder), posts a storm as stormwatch and as the Prometheus backstop, and checks that
    the backstop is inhibited and only the direct alert pages; a backstop alone still notifies."""
    check = Check("alertmanager-inhibition")
    covered(ALERTMANAGER_CONFIG)
    received: list[tuple[str, dict]] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length", 0))
            received.append((self.path, json.loads(self.rfile.read(length) or b"{}")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    recorder = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    workdir = Path(tempfile.mkdtemp(prefix="stormwatch-am-"))
    config = ALERTMANAGER_CONFIG.read_text().replace(
        "http://127.0.0.1:5001/", f"http://127.0.0.1:{recorder.server_address[1]}/"
    )
    check.expect(config != ALERTMANAGER_CONFIG.read_text(), "receivers are not at http://127.0.0.1:5001/")
    (workdir / "alertmanager.yml").write_text(config)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [args.alertmanager, f"--config.file={workdir / 'alertmanager.yml'}", f"--storage.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=open(workdir / "alertmanager.log", "w"),
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{base}/-/ready", timeout=1).read()
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or proc.poll() is not None:
                    check.fail("Alertmanager did not start:\n" + (workdir / "alertmanager.log").read_text())
                    return check.done()
                time.sleep(0.2)

        direct = {"alertname": "ReplyAllStorm", "severity": "critical", "thread_key": "test@nhs.net",
                  "rule": "amplification", "source": "stormwatch"}
        backstop = {"alertname": "ReplyAllStorm", "severity": "critical", "source": "prometheus",
                    "job": "stormwatch", "instance": "stormwatch:9464"}
        lone = {"alertname": "ReplyAllStorm", "severity": "warning", "source": "prometheus",
                "job": "stormwatch", "instance": "stormwatch:9464"}
        http_json("POST", f"{base}/api/v2/alerts",
                  [{"labels": direct, "annotations": {"summary": "direct"}},
                   {"labels": backstop, "annotations": {"summary": "backstop"}},
                   {"labels": lone, "annotations": {"summary": "lone backstop"}}])

        def state(labels):
            for alert in http_json("GET", f"{base}/api/v2/alerts") or []:
                if alert["labels"] == labels:
                    return alert["status"]
            return None

        status = state(backstop)
        check.expect(status and status["state"] == "suppressed" and status["inhibitedBy"],
                     f"the backstop is not inhibited by the direct alert: {status}")
        status = state(direct)
        check.expect(status and status["state"] == "active", f"the direct alert is not active: {status}")
        status = state(lone)
        check.expect(status and status["state"] == "active",
                     f"a backstop without a direct alert must stay active: {status}")

        # Notifications after group_wait (10 s): the page carries the direct alert only, chat the
        # lone warning backstop; nothing carries the inhibited one.
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and {p for p, _ in received} != {"/page", "/chat"}:
            time.sleep(0.5)
        time.sleep(1.5)
        sent = [(path, a["labels"]) for path, body in received for a in body.get("alerts", [])]
        check.expect(("/page", direct) in sent, f"the direct critical alert did not page: {sent}")
        check.expect(("/chat", lone) in sent, f"the warning backstop did not go to chat: {sent}")
        check.expect(all(labels != backstop for _, labels in sent), f"the inhibited backstop notified: {sent}")
        pages = [labels for path, labels in sent if path == "/page"]
        check.expect(pages == [direct], f"one storm must page once, got pages {pages}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        recorder.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)
    return check.done()


# --- coverage -------------------------------------------------------------------------------


def cmd_coverage(args) -> int:
    check = Check("coverage")
    ledger = os.environ.get("OPS_LEDGER")
    if not check.expect(ledger and os.path.exists(ledger), "no ledger ($OPS_LEDGER)"):
        return check.done()
    seen = set(Path(ledger).read_text().split())
    files = sorted(
        rel(p) for top in ("deploy", "dashboards") for p in (ROOT / top).rglob("*") if p.is_file()
    )
    for path in files:
        check.expect(path in seen, f"{path} is exercised by no check")
    print(f"     [coverage] {len(files)} files under deploy/ and dashboards/")
    return check.done()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sync-prometheusrule", help="write (or --check) deploy/kubernetes/prometheusrule.yaml")
    p.add_argument("--check", action="store_true")
    p.set_defaults(func=cmd_sync_prometheusrule)
    sub.add_parser("rules-meta", help="annotations, runbooks, test coverage of the rules").set_defaults(func=cmd_rules_meta)
    sub.add_parser("metric-names", help="metric names exist in src/metrics.rs").set_defaults(func=cmd_metric_names)
    p = sub.add_parser("dashboard", help="dashboard structure, datasources and PromQL")
    p.add_argument("--promtool", default="promtool")
    p.set_defaults(func=cmd_dashboard)
    sub.add_parser("grafana-provisioning").set_defaults(func=cmd_grafana_provisioning)
    sub.add_parser("compose").set_defaults(func=cmd_compose)
    p = sub.add_parser("config", help="the TOML configurations and env through stormwatch --print-config")
    p.add_argument("--bin", required=True)
    p.set_defaults(func=cmd_config)
    sub.add_parser("kubernetes", help="cross-references and settings of the manifests").set_defaults(func=cmd_kubernetes)
    sub.add_parser("docker-context").set_defaults(func=cmd_docker_context)
    p = sub.add_parser("alertmanager-inhibition", help="one storm pages once, with the real Alertmanager")
    p.add_argument("--alertmanager", default="prometheus-alertmanager")
    p.set_defaults(func=cmd_alertmanager_inhibition)
    sub.add_parser("coverage", help="every file under deploy/ and dashboards/ was checked").set_defaults(func=cmd_coverage)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
