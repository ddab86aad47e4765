"""deploy/ checked by the tools its users run: kubernetes-validate, promtool, systemd-analyze,
pip (the image's install step, from the lock, in a fresh venv) and a live `rotator run`.

What cannot run here, and what runs instead:
- no container engine (`docker` is a client without a daemon): the Dockerfile's build-stage
  RUN steps run on this machine with /opt/rotator and /src mapped to a temporary directory,
  then the final stage's ENTRYPOINT + CMD run from that venv with config.example.toml;
- no Kubernetes API server: each overlay is rendered by `kubectl kustomize` (what
  `kubectl apply -k` would send), then built-in kinds are validated offline against the
  Kubernetes schemas (kubernetes-validate, strict), ServiceMonitor and PrometheusRule against the
  Prometheus Operator's own CRD schemas (tests/system/crds/, unknown fields rejected);
- no systemd as PID 1: `systemd-analyze verify` runs on a copy of the unit whose ExecStart
  names this venv's `rotator` (the unit's /opt/rotator path does not exist here); the user
  it names is created by its sysusers.d file under a temporary root.
The tools come from `.ci/run` (kubectl and promtool from Debian's packages,
kubernetes-validate from the dev extra); a missing tool fails the test, it is never skipped.
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import boto3
import httpx
import jsonschema
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from rotator import config
from rotator.devkit.localaws import LocalAws, free_port
from tests.system.conftest import System

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
RULES = DEPLOY / "prometheus" / "rotator-rules.yml"
DASHBOARD = DEPLOY / "grafana" / "rotator-dashboard.json"
UNIT = DEPLOY / "systemd" / "rotator.service"
LOCK = DEPLOY / "image" / "requirements.lock"
CRDS = Path(__file__).parent / "crds"
OPERATIONS = ROOT / "docs" / "operations.md"
METRIC = re.compile(r"\brotator_[a-z0-9_]+\b")
# The manifests must be valid for Kubernetes 1.29 (or the oldest schemas the installed
# kubernetes-validate still has, if newer) and for the newest it knows.
OLDEST_KUBERNETES = "1.29.0"


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is missing: `bash .ci/run` installs it", pytrace=False)
    return path


# --- Kubernetes ---------------------------------------------------------------------------

BASE = KUBE / "base"
OVERLAYS = {p.name: p for p in sorted((KUBE / "overlays").iterdir()) if p.is_dir()}
OPERATOR, PLAIN = "prometheus-operator", "prometheus"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _kustomize(folder: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize FOLDER`: what `kubectl apply -k FOLDER` would send."""
    done = subprocess.run(
        [tool("kubectl"), "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@functools.cache
def _rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(_kustomize(OVERLAYS[overlay]))


def _strict(schema: Any) -> Any:
    """The API server drops fields a CRD schema does not know: reject them instead."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if isinstance(out.get("pattern"), str) and out["pattern"].startswith("^(?i)"):
            out["pattern"] = "(?i)^" + out["pattern"][5:]  # Go's RE2 allows flags mid-pattern
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _crd_schemas() -> dict[tuple[str, str], Any]:
    found = {}
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for served in crd["spec"]["versions"]:
            schema = _strict(served["schema"]["openAPIV3Schema"])
            found[(f"{group}/{served['name']}", kind)] = schema
    return found


def _by_kind(kind: str, overlay: str = OPERATOR) -> dict[str, Any]:
    """The one object of `kind` the overlay renders (the Secret: the example's shape)."""
    if kind == "Secret":
        docs = _documents(BASE / "secret.example.yaml")
    else:
        docs = [d for d in _rendered(overlay) if d["kind"] == kind]
    assert len(docs) == 1, f"{len(docs)} {kind}s in {overlay}"
    return docs[0]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_each_overlay_renders_and_validates_against_the_schemas(overlay: str) -> None:
    """`kubectl kustomize` on the overlay, then every object it renders validated offline:
    built-in kinds by kubernetes-validate (strict, oldest and newest Kubernetes it knows),
    the Operator's kinds by their CRDs' own schemas."""
    import kubernetes_validate
    from kubernetes_validate import utils
    from packaging.version import Version

    known = sorted(set(utils.all_versions()), key=Version)
    oldest = max(OLDEST_KUBERNETES, known[0], key=Version)
    versions = (oldest, utils.latest_version())
    crds = _crd_schemas()
    docs = [*_rendered(overlay), *_documents(BASE / "secret.example.yaml")]
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        if key in crds:
            jsonschema.Draft7Validator(crds[key]).validate(doc)
        else:
            for version in versions:
                kubernetes_validate.validate(doc, version, strict=True)
        if doc["kind"] != "Secret":
            assert doc["metadata"]["namespace"] == "rotator", doc["metadata"]["name"]
            assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "rotator"
    kinds = {d["kind"] for d in docs}
    base = {"Deployment", "ConfigMap", "Secret", "ServiceAccount", "Service", "NetworkPolicy"}
    assert base | {"PodDisruptionBudget"} <= kinds
    operator_kinds = {"ServiceMonitor", "PrometheusRule"}
    assert (operator_kinds <= kinds) if overlay == OPERATOR else not (operator_kinds & kinds)


def test_the_overlays_are_the_two_monitoring_setups() -> None:
    assert set(OVERLAYS) == {OPERATOR, PLAIN}
    plain = _by_kind("Deployment", PLAIN)["spec"]["template"]
    (port,) = plain["spec"]["containers"][0]["ports"]
    assert plain["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port["containerPort"]),
        "prometheus.io/path": "/metrics",
    }
    operator = _by_kind("Deployment", OPERATOR)["spec"]["template"]
    assert not operator["metadata"].get("annotations")


def test_the_strict_crd_check_catches_a_misspelt_field() -> None:
    """The CRD check can fail: a typo the API server would silently drop is an error here."""
    schema = _crd_schemas()[("monitoring.coreos.com/v1", "ServiceMonitor")]
    broken = json.loads(json.dumps(_by_kind("ServiceMonitor")))
    broken["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_every_file_is_listed_by_a_kustomization_but_the_secret_example() -> None:
    for folder in (BASE, *OVERLAYS.values()):
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        listed = {r for r in kustomization.get("resources", []) if not r.startswith("..")}
        generated = {
            f for g in kustomization.get("configMapGenerator", []) for f in g.get("files", [])
        }
        on_disk = {p.name for p in folder.iterdir() if p.is_file()}
        on_disk -= {"kustomization.yaml", "README.md", "secret.example.yaml"}
        assert listed | generated == on_disk, (folder, listed, generated, on_disk)


def test_every_deploy_folder_has_a_readme() -> None:
    folders = [DEPLOY, *(p for p in DEPLOY.rglob("*") if p.is_dir())]
    missing = [str(f.relative_to(ROOT)) for f in folders if not (f / "README.md").is_file()]
    assert not missing, missing


def test_a_config_edit_renames_the_configmap_so_the_pods_roll(tmp_path: Path) -> None:
    """The configMapGenerator: the ConfigMap's name carries a hash of rotator.toml, and the
    Deployment's pod template names it, so an edit changes the template (a rollout)."""
    copy = tmp_path / "kubernetes"
    shutil.copytree(KUBE, copy)

    def config_names(objects: list[dict[str, Any]]) -> tuple[str, str]:
        (configmap,) = [o for o in objects if o["kind"] == "ConfigMap"]
        (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        return configmap["metadata"]["name"], volumes["config"]["configMap"]["name"]

    before = config_names(_kustomize(copy / "overlays" / OPERATOR))
    toml = copy / "base" / "rotator.toml"
    toml.write_text(toml.read_text().replace('max_age = "90d"', 'max_age = "60d"'))
    after = config_names(_kustomize(copy / "overlays" / OPERATOR))
    assert before[0] == before[1] and after[0] == after[1]
    assert before[0].startswith("rotator-config-") and after[0] != before[0]


def test_the_deployment_runs_two_hardened_replicas_on_postgresql() -> None:
    deployment = _by_kind("Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 2
    # The database URL from the Secret, through the variable that overrides [database] url.
    env = {e["name"]: e for e in container["env"]}
    ref = env["ROTATOR_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    secret = _by_kind("Secret")
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    assert secret["stringData"][ref["key"]].startswith("postgresql+psycopg://")
    # The config from the generated ConfigMap, where ROTATOR_CONFIG says.
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_dir = mounts["config"]["mountPath"]
    assert volumes["config"]["configMap"]["name"] == _by_kind("ConfigMap")["metadata"]["name"]
    assert env["ROTATOR_CONFIG"]["value"] == f"{config_dir}/rotator.toml"
    # Probes on the daemon's own paths, on the port it listens on.
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    (port,) = container["ports"]
    assert container["readinessProbe"]["httpGet"]["port"] == port["name"]
    listen = _configmap_settings().daemon.listen
    assert listen == f"0.0.0.0:{port['containerPort']}", listen
    # Non-root, read-only root filesystem, no privilege escalation; /tmp writable.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    for each in (container, *pod["initContainers"]):
        security = each["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, each["name"]
        assert security["allowPrivilegeEscalation"] is False, each["name"]
        assert security["capabilities"]["drop"] == ["ALL"], each["name"]
        assert {"cpu", "memory"} <= set(each["resources"]["requests"]), each["name"]
    assert mounts["tmp"]["mountPath"] == "/tmp" and "emptyDir" in volumes["tmp"]  # noqa: S108
    # The identity: a ServiceAccount with the IRSA annotation as the example.
    account = _by_kind("ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"]


def test_the_migrate_init_container_upgrades_a_fresh_database_as_rendered(
    tmp_path: Path, pg_url: str
) -> None:
    """The init container's command, run as rendered: the installed `rotator` with its args,
    ROTATOR_CONFIG pointing at the generated ConfigMap's file, ROTATOR_DATABASE_URL from
    the Secret's migrate-url key (a fresh local PostgreSQL database here): it migrates.
    (Replicas running it together, and again: tests/integration/test_store.py.)"""
    pod = _by_kind("Deployment")["spec"]["template"]["spec"]
    (migrate,) = pod["initContainers"]
    (daemon,) = pod["containers"]
    assert migrate["image"] == daemon["image"]
    assert migrate["args"] == ["db", "upgrade"]
    env = {e["name"]: e for e in migrate["env"]}
    key = env["ROTATOR_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert key["name"] == "rotator-database" and key["key"] in _by_kind("Secret")["stringData"]
    config_file = tmp_path / "rotator.toml"
    config_file.write_text(_by_kind("ConfigMap")["data"]["rotator.toml"])
    mounts = {m["name"]: m["mountPath"] for m in migrate["volumeMounts"]}
    assert env["ROTATOR_CONFIG"]["value"] == f"{mounts['config']}/rotator.toml"
    run_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ROTATOR_")},
        "ROTATOR_CONFIG": str(config_file),
        "ROTATOR_DATABASE_URL": pg_url,
    }
    rotator = str(Path(sys.executable).parent / "rotator")
    done = subprocess.run(
        [rotator, *migrate["args"]], capture_output=True, text=True, env=run_env, timeout=90
    )
    assert done.returncode == 0, done.stderr
    assert re.match(r"database at revision \S+ \(was empty\)$", done.stdout.strip())


def test_the_network_policy_allows_dns_the_database_https_and_the_metrics_port() -> None:
    policy = _by_kind("NetworkPolicy")["spec"]
    pod = _by_kind("Deployment")["spec"]["template"]
    assert policy["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    (port,) = pod["spec"]["containers"][0]["ports"]
    ((ingress_port,),) = [rule["ports"] for rule in policy["ingress"]]
    assert ingress_port == {"protocol": "TCP", "port": port["containerPort"]}
    egress = {(p["protocol"], p["port"]) for rule in policy["egress"] for p in rule["ports"]}
    database = make_url(_by_kind("Secret")["stringData"]["url"]).port
    assert egress == {("UDP", 53), ("TCP", 53), ("TCP", database), ("TCP", 443), ("TCP", 80)}
    for rule in policy["egress"]:
        assert rule.get("to"), "an egress rule open to every destination"
        ports = {p["port"] for p in rule["ports"]}
        if 443 in ports:  # Adobe and AWS: public addresses only
            (block,) = rule["to"]
            assert "10.0.0.0/8" in block["ipBlock"]["except"]
        if 80 in ports:  # only EKS Pod Identity's link-local agent
            assert rule["to"] == [{"ipBlock": {"cidr": "169.254.170.23/32"}}]


def test_the_database_urls_verify_the_servers_certificate() -> None:
    """sslmode=verify-full in the Kubernetes example, and docs/operations.md says why."""
    for key, url in _by_kind("Secret")["stringData"].items():
        assert make_url(url).query.get("sslmode") == "verify-full", key
    operations = OPERATIONS.read_text()
    assert "sslmode=verify-full" in operations
    assert "idle_in_transaction_session_timeout" in operations
    assert "idle_in_transaction_session_timeout" in (BASE / "secret.example.yaml").read_text()


def test_the_service_and_servicemonitor_reach_metrics_on_every_replica() -> None:
    pod_labels = _by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = _by_kind("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    # Not-ready replicas are scraped too, or rotator_ready == 0 could never be seen.
    assert service["spec"]["publishNotReadyAddresses"] is True
    (port,) = service["spec"]["ports"]
    monitor = _by_kind("ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics"


def _configmap_settings() -> config.Settings:
    text = _by_kind("ConfigMap")["data"]["rotator.toml"]
    return config.from_mapping(tomllib.loads(text), source="rotator.toml")


def test_the_configmap_is_a_valid_config_whose_database_comes_from_the_environment(
    tmp_path: Path,
) -> None:
    """The URL comes from ROTATOR_DATABASE_URL (the Secret example's, TLS options and
    all); without it, the ConfigMap's placeholder names a host that cannot resolve (never a
    silent SQLite fallback beside a replica)."""
    path = tmp_path / "rotator.toml"
    path.write_text(_by_kind("ConfigMap")["data"]["rotator.toml"])
    code = "import sys; from rotator import config; print(config.load(sys.argv[1]).database.url)"
    env = {k: v for k, v in os.environ.items() if k != "ROTATOR_DATABASE_URL"}
    url = _by_kind("Secret")["stringData"]["url"]
    loaded = {}
    for name, extra in (("without", {}), ("with", {"ROTATOR_DATABASE_URL": url})):
        done = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            capture_output=True,
            text=True,
            env={**env, **extra},
        )
        assert done.returncode == 0, done.stderr[-2000:]
        loaded[name] = done.stdout.strip()
    assert loaded["with"] == url, "ROTATOR_DATABASE_URL does not replace [database] url"
    placeholder = loaded["without"]
    assert placeholder.startswith("postgresql") and ".invalid/" in placeholder, placeholder
    userinfo = placeholder.split("//", 1)[1].split("@", 1)[0]
    assert ":" not in userinfo, "a password in the ConfigMap"


# --- alert rules and the dashboard ---------------------------------------------------------


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but - and _ dropped, spaces -> -."""
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_the_rules_pass_promtool() -> None:
    done = subprocess.run(
        [tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_unit_tests_pass_promtool() -> None:
    """deploy/prometheus/rotator-rules.test.yml: each alert against two replicas' series."""
    tests = RULES.with_name("rotator-rules.test.yml")
    done = subprocess.run(
        [tool("promtool"), "test", "rules", tests.name],
        capture_output=True,
        text=True,
        cwd=tests.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", tests.read_text()))
    assert tested == {r["alert"] for r in _rules()}, "an alert without a unit test"


def test_the_prometheusrule_holds_the_same_groups_as_the_rules_file() -> None:
    assert _by_kind("PrometheusRule")["spec"] == yaml.safe_load(RULES.read_text())


def test_every_alert_says_what_to_do_and_links_its_runbook() -> None:
    rules = _rules()
    names = {r["alert"] for r in rules}
    for needed in (
        "RotatorCredentialNeedsAttention",
        "RotatorSecretAgeAtMaxAge",
        "RotatorRotationFailed",
        "RotatorNotReady",
        "RotatorOutboxBacklog",
    ):
        assert needed in names, needed
    anchors = _anchors(OPERATIONS.read_text())
    fleet = _fleet_metric_names()
    for rule in rules:
        notes = rule["annotations"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert re.search(r"`rotator |Check|fix", notes["summary"]), notes["summary"]
        url = notes["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page.endswith("docs/operations.md") and anchor in anchors, url
        # Fleet series are reported by every replica: never add them up.
        if set(METRIC.findall(rule["expr"])) & fleet:
            assert "sum" not in rule["expr"], rule["alert"]


def _dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every query in the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        found += [(panel["title"], t["expr"]) for t in panel["targets"]]
    return found


def _as_promql(expr: str) -> str:
    """A Grafana query with its variables replaced by what Grafana would send."""
    for variable, value in (
        ("$__rate_interval", "2m"),
        ("$__interval", "1m"),
        ("$__range", "1h"),
        ("$job", ".+"),
    ):
        expr = expr.replace(variable, value)
    return expr


def test_every_dashboard_query_parses_as_promql(tmp_path: Path) -> None:
    """promtool parses each panel's query (with Grafana's variables filled in) as a rule."""
    queries = _dashboard_queries()
    rules = [
        {"record": f"dashboard:query_{i}", "expr": _as_promql(expr)}
        for i, (_, expr) in enumerate(queries)
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_shows_what_an_operator_asks_first() -> None:
    text = " ".join(expr for _, expr in _dashboard_queries())
    for needed in (
        "rotator_secret_age_seconds",
        "rotator_secret_max_age_seconds",
        "rotator_rotations_total",
        "rotator_drain_deadline_timestamp_seconds",
        "rotator_credential_needs_attention",
        "rotator_tick_seconds_bucket",
        "rotator_adobe_requests_total",
        "rotator_aws_requests_total",
        'outcome="error"',
    ):
        assert needed in text, needed


def _fleet_metric_names() -> set[str]:
    text = (ROOT / "docs" / "metrics.md").read_text()
    fleet = text.split("## Fleet", 1)[1].split("## Process", 1)[0]
    return set(re.findall(r"^\| `(rotator_\w+)`", fleet, re.M))


def _used_metric_names() -> set[str]:
    exprs = [r["expr"] for r in _rules()] + [e for _, e in _dashboard_queries()]
    return {name for expr in exprs for name in METRIC.findall(expr)}


def _contract_names() -> set[str]:
    """Every sample name docs/metrics.md promises (a counter's _total, a histogram's parts)."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    names = set()
    for name, kind in re.findall(r"^\| `(rotator_\w+)` \| (\w+) \|", text, re.M):
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def test_every_metric_the_rules_and_dashboard_use_is_in_the_metric_contract() -> None:
    missing = _used_metric_names() - _contract_names()
    assert not missing, f"not in docs/metrics.md: {sorted(missing)}"


def _exposed(scrape: str) -> set[str]:
    """Sample names a scrape declares, including families that have no sample yet."""
    names = set()
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("", "_sum", "_count"),
        "gauge": ("",),
        "untyped": ("",),
        "info": ("_info",),
    }
    for family in text_string_to_metric_families(scrape):
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def test_every_metric_the_rules_and_dashboard_use_is_in_a_real_scrape(system: System) -> None:
    """`rotator run` with a credential mid-rotation (draining, so the drain series exist),
    scraped over HTTP; `promtool check metrics` lints that scrape."""
    system.credential("analytics", quiet_period="1h")
    daemon = system.start_daemon()
    daemon.wait_ready()
    system.wait_state("draining", timeout=40)
    daemon.wait_until(
        lambda: daemon.metric("rotator_secret_age_seconds", credential="analytics") is not None,
        20,
        "a secret age on /metrics",
    )
    scrape = daemon.get("/metrics").text
    lint = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=scrape, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    missing = _used_metric_names() - _exposed(scrape)
    assert not missing, f"used by deploy/ but not served on /metrics: {sorted(missing)}"
    # The build, as docs/metrics.md promises: the installed distribution's version.
    assert (
        daemon.metric("rotator_build_info", version=metadata.version("adobe-secret-rotator")) == 1.0
    )
    assert "rotator_build_info" in _contract_names()


# --- systemd ------------------------------------------------------------------------------


def _unit() -> dict[str, list[str]]:
    """Service-section settings (name -> values), comments and continuations dropped."""
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_the_systemd_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    """The unit as shipped, except ExecStart: /opt/rotator does not exist on this machine,
    so the copy names this venv's `rotator` (the binary verify checks is then real)."""
    analyze = tool("systemd-analyze")
    rotator = Path(sys.executable).parent / "rotator"
    text = UNIT.read_text()
    assert "ExecStart=/opt/rotator/bin/rotator " in text
    copy = tmp_path / "rotator.service"
    copy.write_text(text.replace("ExecStart=/opt/rotator/bin/rotator ", f"ExecStart={rotator} "))
    verify = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True
    )
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    # systemd's own exposure score: 2.0 or below ("OK"); the unit as written scores 1.4.
    security = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
    )
    assert security.returncode == 0, security.stdout[-3000:]
    # And the user it runs as is what its sysusers.d file creates.
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    sysusers = subprocess.run(
        [tool("systemd-sysusers"), f"--root={root}", str(UNIT.with_name("rotator.sysusers.conf"))],
        capture_output=True,
        text=True,
    )
    assert sysusers.returncode == 0, sysusers.stderr
    passwd = (root / "etc" / "passwd").read_text()
    assert re.search(rf"^{_unit()['User'][0]}:x:\d+:\d+:", passwd, re.M), passwd


def _install_steps() -> list[str]:
    """The shell block under `## Install` in deploy/systemd/README.md, one command a line."""
    readme = (UNIT.parent / "README.md").read_text()
    section = readme.split("## Install", 1)[1]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [line for line in block.splitlines() if line.strip()]


def test_the_systemd_install_steps_run_in_a_temporary_root(tmp_path: Path) -> None:
    """Each line of the README's install block, run from the checkout with every absolute
    path moved under a temporary root. Two lines cannot run here and are replaced, each
    by name: the venv with the published distribution (no network to PyPI's files in a
    test: this venv's installed `rotator` stands in at /opt/rotator/bin/rotator) and
    `systemctl` (no systemd as PID 1: the unit is checked where systemd would read it).
    Any other line runs as written, so a step that fails on a fresh host fails here."""
    root = tmp_path / "root"
    root.mkdir()
    rotator = Path(sys.executable).parent / "rotator"

    def moved(line: str) -> str:
        return re.sub(r"(?<![\w./-])/(etc|opt|usr|var|run)/", rf"{root}/\1/", line)

    ran = []
    for line in _install_steps():
        if line.startswith("python3 -m venv /opt/rotator"):
            (root / "opt" / "rotator" / "bin").mkdir(parents=True)
            continue
        if re.match(r"/opt/rotator/bin/pip install adobe-secret-rotator$", line):
            (root / "opt" / "rotator" / "bin" / "rotator").symlink_to(rotator)
            continue
        if line.startswith("systemctl "):
            ran.append("systemctl")
            continue
        command = moved(line)
        if line.startswith("systemd-sysusers"):
            command = command.replace("systemd-sysusers", f"systemd-sysusers --root={root}", 1)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{line}\n{done.stderr}"
        ran.append(line.split()[0])
    assert "systemctl" in ran and "systemd-sysusers" in ran

    def mode(path: str) -> int:
        return (root / path).stat().st_mode & 0o777

    assert mode("etc/rotator/rotator.toml") == 0o644
    assert mode("etc/rotator/aws.env") == 0o600
    assert mode("etc/rotator/audit.key") == 0o600
    assert len((root / "etc/rotator/audit.key").read_text().strip()) >= 40
    assert re.search(r"^rotator:x:\d+:\d+:", (root / "etc/passwd").read_text(), re.M)
    installed = root / "etc/systemd/system/rotator.service"
    assert installed.read_text() == UNIT.read_text()
    # The unit's Documentation= is the copy of docs/operations.md the steps installed.
    (docs,) = _unit()["Documentation"]
    assert docs.startswith("file:///"), docs
    assert (root / docs.removeprefix("file:///")).read_text() == OPERATIONS.read_text()
    # What the unit starts is the command the steps installed, reading the config they did.
    command = shlex.split(_unit()["ExecStart"][0])
    version = subprocess.run(
        [moved(command[0]), "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and version.stdout.startswith("rotator, version")
    loaded = config.load(Path(moved(command[command.index("--config") + 1])))
    assert loaded.database.url == "sqlite:////var/lib/rotator/rotator.db"


def test_the_systemd_unit_is_a_hardened_single_host_service() -> None:
    unit = _unit()
    assert unit["Type"] == ["simple"]
    assert unit["Restart"] == ["on-failure"]
    for key, value in (
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "rotator"),
        ("LimitCORE", "0"),
        ("UMask", "0077"),
    ):
        assert unit[key] == [value], key
    assert unit["User"] != ["root"] and unit["EnvironmentFile"]
    command = shlex.split(unit["ExecStart"][0])
    assert command[-1] == "run"
    # The config it names is deploy/systemd/rotator.toml: SQLite in the state directory.
    config_path = command[command.index("--config") + 1]
    assert config_path == "/etc/rotator/rotator.toml"
    settings = config.load(UNIT.with_name("rotator.toml"))
    assert settings.database.url == "sqlite:////var/lib/rotator/rotator.db"
    assert unit["WorkingDirectory"] == ["/var/lib/rotator"]


# --- the image ----------------------------------------------------------------------------


def _stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, one list per stage (continuations joined)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        stages[-1].append((word.upper(), rest.strip()))
    return stages


@pytest.fixture
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Dockerfile's build stage, run here: its COPYs and RUNs in order, with the
    image's /opt/rotator and /src under a temporary root (pip's cache allowed)."""
    root = tmp_path_factory.mktemp("image")
    bin_dir = root / "usr-local-bin"
    bin_dir.mkdir()
    base_python = (
        Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    )
    (bin_dir / "python").symlink_to(base_python)  # the base image's interpreter, not this venv
    env = {k: v for k, v in os.environ.items() if k not in {"PIP_NO_CACHE_DIR", "VIRTUAL_ENV"}}
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"

    def mapped(path: str) -> str:
        return re.sub(r"(?<![\w/])/(opt/rotator|src)\b", lambda m: f"{root}/{m[1]}", path)

    build = _stages()[0]
    for instruction, args in build:
        if instruction == "COPY":
            *sources, dest = shlex.split(args)
            target = Path(mapped(dest))
            for source in sources:
                origin = ROOT / source.rstrip("/")
                into = target / origin.name if dest.endswith("/") and origin.is_file() else target
                if origin.is_dir():
                    shutil.copytree(origin, into, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    into.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(origin, into)
        elif instruction == "RUN":
            done = subprocess.run(
                ["sh", "-c", mapped(args)], capture_output=True, text=True, env=env, cwd=root
            )
            assert done.returncode == 0, f"RUN {args}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    yield root / "opt" / "rotator"


def _assert_installs_exactly_the_lock(image_venv: Path) -> None:
    listed = subprocess.run(
        [str(image_venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
    )
    installed = {
        p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(listed.stdout)
    }
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", LOCK.read_text(), re.M))
    locked = {k.lower().replace("_", "-"): v for k, v in pins.items()}
    extra = set(installed) - set(locked) - {"adobe-secret-rotator", "pip"}
    assert not extra, f"installed but not locked: {extra}"
    assert all(installed[name] == version for name, version in locked.items())
    assert "moto" not in installed and "psycopg" in installed


@pytest.fixture
def own_aws() -> Iterator[LocalAws]:
    """A moto of this test's own: the example's secret names are fixed, so they must not
    meet other tests' secrets in the session's shared moto."""
    with LocalAws() as aws:
        yield aws


def test_the_image_installs_the_lock_and_its_command_starts_the_daemon(
    image_venv: Path, tmp_path: Path, own_aws: LocalAws
) -> None:
    """ENTRYPOINT + CMD from the installed venv, with config.example.toml as the mounted
    config, changed only where docs/operations.md#in-a-container says to: `[daemon] listen`
    on the wildcard address (a free port here) and an absolute SQLite path in the volume
    (WORKDIR, a temporary directory here). The mount point /etc/rotator is a temporary
    directory too, and the key material the example names is provided as a deployer would,
    generated: environment variables, files in the mount, secrets in AWS (moto here, through
    AWS_ENDPOINT_URL). Its credentials exist nowhere, which the daemon survives: their
    surveys fail, its ticks complete, /readyz answers 200."""
    _assert_installs_exactly_the_lock(image_venv)  # one test: one build, whatever xdist does
    final = _stages()[-1]
    entrypoint = json.loads(next(a for i, a in reversed(final) if i == "ENTRYPOINT"))
    command = json.loads(next(a for i, a in reversed(final) if i == "CMD"))
    healthcheck = json.loads(next(a for i, a in final if i == "HEALTHCHECK").split("CMD ", 1)[1])
    port = free_port()
    workdir = tmp_path / "var-lib-rotator"  # WORKDIR and VOLUME: the SQLite file lands here
    workdir.mkdir()
    mount = tmp_path / "etc-rotator"  # /etc/rotator
    mount.mkdir()
    example = (ROOT / "config.example.toml").read_text()
    changes = {
        'listen = "127.0.0.1:9477"': f'listen = "0.0.0.0:{port}"',
        'url = "sqlite:///rotator.db"': f'url = "sqlite:///{workdir}/rotator.db"',
    }
    mounted_text = example
    for before, after in changes.items():
        assert mounted_text.count(before) == 1, before
        mounted_text = mounted_text.replace(before, after)
    mounted_text = mounted_text.replace('"/etc/rotator/', f'"{mount}/')
    mounted = mount / "rotator.toml"
    mounted.write_text(mounted_text)
    env = {
        "PATH": f"{image_venv / 'bin'}:/usr/bin:/bin",
        "ROTATOR_CONFIG": str(mounted),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": str(workdir),
        "AWS_ENDPOINT_URL": own_aws.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env.update(_provide_key_material(tomllib.loads(mounted_text), own_aws))
    argv = [shutil.which(entrypoint[0], path=env["PATH"]) or "missing", *entrypoint[1:], *command]
    assert argv[0].startswith(str(image_venv)), argv
    log = (tmp_path / "daemon.log").open("wb")
    daemon = subprocess.Popen(argv, cwd=workdir, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 40
        while True:
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "daemon.log").read_text()[-3000:]
            time.sleep(0.2)
        assert (workdir / "rotator.db").is_file(), "the SQLite database is in the volume"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert metrics.status_code == 200 and "rotator_" in metrics.text
        check_argv = [str(image_venv / "bin" / healthcheck[0]), *healthcheck[1:]]
        check_argv = [re.sub(r"^/opt/rotator", str(image_venv), part) for part in check_argv]
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        health = subprocess.run(check_argv, capture_output=True, text=True, env=env, timeout=30)
        assert health.returncode == 0, health.stderr
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            raise
        finally:
            log.close()
    assert code == 0, (tmp_path / "daemon.log").read_text()[-3000:]


def _key_sources(node: Any) -> list[dict[str, Any]]:
    """Every key source (an `id` and where its material lives) anywhere in a parsed config."""
    if isinstance(node, dict):
        here = [node] if "id" in node and {"env", "file", "aws_secret"} & set(node) else []
        return here + [s for v in node.values() for s in _key_sources(v)]
    if isinstance(node, list):
        return [s for v in node for s in _key_sources(v)]
    return []


def _provide_key_material(config_raw: dict[str, Any], aws: LocalAws) -> dict[str, str]:
    """Generated material where each key source looks; returns the environment part."""
    env = {}
    region = config_raw.get("aws", {}).get("region", "us-east-1")
    sm = boto3.client("secretsmanager", region_name=region, endpoint_url=aws.endpoint_url)
    for source in _key_sources(config_raw):
        material = secrets.token_hex(32)
        if source.get("env"):
            env[source["env"]] = material
        elif source.get("file"):
            Path(source["file"]).touch(mode=0o600)  # a key others can read is refused
            Path(source["file"]).write_text(material + "\n")
        elif source.get("aws_secret"):
            name = source["aws_secret"]
            value = (
                json.dumps({source["json_key"]: material}) if source.get("json_key") else material
            )
            sm.create_secret(Name=name, SecretString=value)
    return env


# --- README -------------------------------------------------------------------------------


def test_the_readme_deployment_section_links_every_artefact() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Deployment", 1)[1].split("\n## ", 1)[0]
    for path in (
        "Dockerfile",
        "deploy/image/requirements.lock",
        "deploy/kubernetes/",
        "deploy/prometheus/rotator-rules.yml",
        "deploy/kubernetes/overlays/prometheus-operator/prometheusrule.yaml",
        "deploy/systemd/README.md",
        "deploy/grafana/rotator-dashboard.json",
        "deploy/systemd/rotator.service",
        "docs/operations.md#staging-the-sandbox-and-moto",
        "docs/operations.md#shell-completion",
        "docs/operations.md#alert-runbook",
    ):
        assert f"]({path})" in section, path
        file_part, _, anchor = path.partition("#")
        assert (ROOT / file_part).exists(), path
        if anchor:
            assert anchor in _anchors((ROOT / file_part).read_text()), path
