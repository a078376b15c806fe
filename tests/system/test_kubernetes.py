"""deploy/kubernetes/: rendered with `kubectl kustomize`, validated offline (Kubernetes schemas from
the kubernetes-validate package, KEDA's CRD fields from tests/fixtures/kubernetes/keda.schema.json),
and held to the relay's own defaults so that probes, ports, grace period and queue cannot drift."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from rq import Queue

from relay.config import GatewayConfig, Settings, load_settings
from relay.ingress.app import create_app
from relay.store import keys
from relay.store.connection import parse_sentinel_url
from tests.paths import FIXTURES, ROOT

KUBE = ROOT / "deploy" / "kubernetes"
BASE = KUBE / "base"
OVERLAY = KUBE / "overlays" / "sentinel-example"
KEDA = json.loads((FIXTURES / "kubernetes" / "keda.schema.json").read_text())
K8S_VERSION = "1.30.0"  # the oldest Kubernetes the manifests are meant for (policy/v1 PDBs, ...)
SECRET_ENV = {
    "REDIS_PASSWORD": "x",
    "REDIS_SENTINEL_PASSWORD": "x",
    "OPENCLAW_HOOKS_TOKEN": "x",
    "GITHUB_WEBHOOK_SECRET": "x",
}


def _kustomization(where: Path) -> dict[str, Any]:
    return yaml.safe_load((where / "kustomization.yaml").read_text())


def _files(where: Path) -> list[dict[str, Any]]:
    """The base's resources, read straight from its files (what `kubectl kustomize` starts from)."""
    return [
        doc
        for name in _kustomization(where)["resources"]
        for doc in yaml.safe_load_all((where / name).read_text())
        if doc
    ]


def _render(where: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (Debian 13 images lack it); the file-list test still runs")
    out = subprocess.run([kubectl, "kustomize", str(where)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def _validate(doc: dict[str, Any]) -> str:
    """Raise if `doc` does not validate; the schema it was checked against ("keda" or "kubernetes X.Y")."""
    if doc["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(doc, {**KEDA[doc["kind"]], "$defs": KEDA["$defs"]})
        return "keda"
    return "kubernetes " + kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _by_kind(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_the_kustomizations_list_exactly_their_files() -> None:
    files = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(_kustomization(BASE)["resources"]) == sorted(files)
    overlay = _kustomization(OVERLAY)
    assert overlay["resources"] == ["../../base"]
    patches = {p["path"] for p in overlay["patches"]}
    assert patches == {p.name for p in OVERLAY.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("where", [BASE, OVERLAY], ids=["base", "sentinel-example"])
def test_rendered_resources_validate_offline(where: Path) -> None:
    docs = _render(where)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Deployment",
        "PodDisruptionBudget",
        "ScaledObject",
        "Service",
        "TriggerAuthentication",
    ]
    for doc in docs:
        _validate(doc)


def test_base_files_validate_without_kubectl() -> None:
    checked = sorted((doc["kind"], _validate(doc)) for doc in _files(BASE))
    assert checked == [
        ("ConfigMap", "kubernetes 1.30"),
        ("Deployment", "kubernetes 1.30"),
        ("Deployment", "kubernetes 1.30"),
        ("PodDisruptionBudget", "kubernetes 1.30"),
        ("ScaledObject", "keda"),
        ("Service", "kubernetes 1.30"),
        ("TriggerAuthentication", "keda"),
    ]


def test_a_misspelt_field_is_caught_by_the_validation() -> None:
    resources = _by_kind(_files(BASE))
    worker = json.loads(json.dumps(resources[("Deployment", "relay-worker")]))
    worker["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(worker)
    scaled = json.loads(json.dumps(resources[("ScaledObject", "relay-worker")]))
    scaled["spec"]["triggers"][0]["metadata"]["listname"] = "rq:queue:relay"
    with pytest.raises(jsonschema.ValidationError):
        _validate(scaled)


def _settings_in(docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "relay.yaml"
    config.write_text(_by_kind(docs)[("ConfigMap", "openclaw-relay-config")]["data"]["relay.yaml"])
    return load_settings(config)


@pytest.mark.parametrize("where", [BASE, OVERLAY], ids=["base", "sentinel-example"])
def test_manifests_match_the_relays_own_config_and_defaults(
    where: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    docs = _render(where) if where is OVERLAY else _files(BASE)
    resources = _by_kind(docs)
    settings = _settings_in(docs, monkeypatch, tmp_path)  # the ConfigMap is a valid relay.yaml
    defaults = Settings.model_construct()
    assert (
        settings.queue == defaults.queue
        and settings.gateway.timeout_seconds == GatewayConfig().timeout_seconds
    )

    ingress = resources[("Deployment", "relay-ingress")]
    assert ingress["spec"]["replicas"] >= 2
    pod = ingress["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["command"]
    assert args[:2] == ["relay", "serve"], shlex.join(args)
    port = int(args[args.index("--port") + 1])
    assert port == defaults.port
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    routes = {
        getattr(r, "path", None)
        for r in create_app(Settings.model_construct(redis_url="redis://127.0.0.1:1")).routes
    }
    assert (
        container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"} and "/readyz" in routes
    )
    assert (
        container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"} and "/healthz" in routes
    )
    service = resources[("Service", "relay-ingress")]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == ingress["spec"]["selector"]["matchLabels"]
    pdb = resources[("PodDisruptionBudget", "relay-ingress")]
    assert pdb["spec"]["selector"]["matchLabels"] == ingress["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["minAvailable"] < ingress["spec"]["replicas"]

    worker = resources[("Deployment", "relay-worker")]
    wpod = worker["spec"]["template"]["spec"]
    assert wpod["containers"][0]["command"] == ["relay", "worker"]
    assert wpod["terminationGracePeriodSeconds"] == settings.gateway.timeout_seconds + 15
    for deployment in (ingress, worker):  # both read the same config and Secret
        (c,) = deployment["spec"]["template"]["spec"]["containers"]
        assert c["volumeMounts"][0]["mountPath"] == {e["name"]: e["value"] for e in c["env"]}["RELAY_CONFIG"]
        assert c["envFrom"] == [{"secretRef": {"name": "openclaw-relay"}}]

    scaled = resources[("ScaledObject", "relay-worker")]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "relay-worker"
    assert scaled["spec"]["minReplicaCount"] == 1 < scaled["spec"]["maxReplicaCount"]
    lists, streams = (t["metadata"] for t in scaled["spec"]["triggers"])
    assert lists["listName"] == Queue.redis_queue_namespace_prefix + settings.queue
    assert (streams["stream"], streams["consumerGroup"]) == (keys.INBOX, keys.ROUTERS)
    auth = resources[("TriggerAuthentication", "relay-redis")]
    assert all(t["authenticationRef"]["name"] == "relay-redis" for t in scaled["spec"]["triggers"])
    assert {r["key"] for r in auth["spec"]["secretTargetRef"]} <= set(SECRET_ENV)
    if where is OVERLAY:
        assert settings.durability.min_replicas == 1
        sentinel = parse_sentinel_url(settings.redis_url or "")
        assert lists["sentinelMaster"] == streams["sentinelMaster"] == sentinel.master
        assert lists["addresses"] == ",".join(f"{host}:{port}" for host, port in sentinel.hosts)
