"""The Kubernetes manifests (deploy/k8s) and the LocalStack compose file cannot run here (no cluster,
no Docker): check that they are well formed and agree with the code.

Unit tier: every YAML parses, kustomizations name files that exist, required fields per kind,
KEDA ScaledObjects scale from 0 on the consumer groups and topics the apps really use (captured by
running each Deployment's own arguments through the `stratx` CLI with the Kafka client and the
broker calls replaced by a recorder), Knative model services scale to 0 on port 3000 with the
BentoML probes, every STRATX_* variable is a real setting. Integration tier: the base and both
overlays rendered by the real kustomize (`kubectl kustomize`, offline).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import pytest
import yaml

from stratx.functions import catalog
from stratx.functions.models import MODEL_KEYS
from stratx.functions.settings import MetricsSettings, PredictionAppSettings, env_vars
from stratx.quix_apps import cli, predictions, track_gaps
from stratx.quix_apps.kit import admin, kafka_io, metrics, wire

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = ("local", "cloud")
TOPICS = {t.name: t for t in (*catalog.ALL_TOPICS, *getattr(catalog, "INBOUND_TOPICS", ()))}
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
KUBECTL = shutil.which("kubectl")
NON_STRATX_ENV: set[str] = set()  # every variable the manifests set is a STRATX_* setting
STREAM_APPS = {  # Deployment -> metrics.PORT_OFFSETS key (None: the app has no exporter port)
    "lap-features": "lap",
    "telemetry-features": "telemetry",
    "lap-aggression": "aggression",
    "race-state": "race",
    "track-progress": "progress",
    "track-gaps": "gaps",
    "predict": "predict",
    "alerts": "alerts",
    "ingest": None,
    "drift": "drift",
}


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _base_resources() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in _docs(BASE / name)]


BASE_DOCS = _base_resources()


def _by_kind(docs: list[dict[str, Any]], kind: str, api: str | None = None) -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"]: d
        for d in docs
        if d["kind"] == kind and (api is None or d["apiVersion"].startswith(api))
    }


def _config(docs: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = _by_kind(docs, "ConfigMap")["stratx-config"]["data"]
    return data


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
    return containers


# ------------------------------------------------------------------ files
def test_every_yaml_parses_and_every_kustomization_names_existing_files() -> None:
    files = sorted(K8S.rglob("*.yaml"))
    assert len(files) >= 20
    for path in files:
        assert _docs(path), path
    for path in K8S.rglob("kustomization.yaml"):
        k = yaml.safe_load(path.read_text())
        assert k["kind"] in {"Kustomization", "Component"}, path
        for entry in (*k.get("resources", []), *k.get("components", [])):
            assert (path.parent / entry).exists(), f"{path}: {entry}"
        for patch in k.get("patches", []):
            assert "target" in patch and ("patch" in patch or (path.parent / patch["path"]).exists())
    for overlay in OVERLAYS:
        k = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
        assert "../../base" in k["resources"]
        assert k["components"][-1] == "../../components/broker-address", "the address is copied last"


def test_required_fields_per_kind() -> None:
    kinds = {d["kind"] for d in BASE_DOCS}
    assert {"Namespace", "ConfigMap", "Deployment", "ScaledObject", "Service", "Job"} <= kinds
    for doc in BASE_DOCS:
        assert doc["apiVersion"] and doc["metadata"]["name"], doc
        if doc["kind"] == "Deployment":
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
        if doc["kind"] in {"Deployment", "Job"} or doc["apiVersion"].startswith("serving.knative.dev"):
            for container in _containers(doc):
                assert container["image"] == "stratx", "the one StratX image (tag set by kustomize)"
                cli.build_parser().parse_args(container["args"])  # a real `stratx` command line


# ------------------------------------------------------------------ settings
def _env_names(doc: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    if doc["kind"] == "ConfigMap":
        names |= set(doc["data"])
    elif doc["kind"] in {"Deployment", "Job", "Service"} and "template" in doc.get("spec", {}):
        for container in _containers(doc):
            names |= {e["name"] for e in container.get("env", [])}
    return names


def test_every_variable_is_a_real_stratx_setting() -> None:
    known = set(env_vars())
    used = {name for doc in BASE_DOCS for name in _env_names(doc)}
    assert used, "the manifests set variables"
    assert used - known <= NON_STRATX_ENV, sorted(used - known)
    config = _config(BASE_DOCS)
    settings = PredictionAppSettings(**{k.removeprefix("STRATX_").lower(): v for k, v in config.items()})
    knative = _by_kind(BASE_DOCS, "Service", "serving.knative.dev")
    for key, url in settings.urls().items():
        assert url == f"http://{key.replace('_', '-')}.stratx.svc.cluster.local", (
            "Knative's cluster-local URL"
        )
        assert key.replace("_", "-") in knative
    assert settings.model_timeout_s >= 10, "a model service starting from zero needs seconds"


# ------------------------------------------------------------------ Knative model services
def test_knative_services_scale_to_zero_on_port_3000_with_bentoml_probes() -> None:
    knative = _by_kind(BASE_DOCS, "Service", "serving.knative.dev")
    assert set(knative) == {k.replace("_", "-") for k in MODEL_KEYS}
    for key in MODEL_KEYS:
        template = knative[key.replace("_", "-")]["spec"]["template"]
        assert template["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "0"
        (container,) = template["spec"]["containers"]
        assert container["args"] == ["serve", "--model", key]
        assert container["ports"] == [{"name": "http1", "containerPort": 3000}]
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 3000}
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": 3000}
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env == {"STRATX_SERVE_HOST": "0.0.0.0", f"STRATX_{key.upper()}_PORT": "3000"}


def test_dashboard_service_reaches_the_dashboard_port() -> None:
    from stratx.functions.settings import DashboardSettings

    port = DashboardSettings().dashboard_port
    (container,) = _containers(_by_kind(BASE_DOCS, "Deployment")["dashboard"])
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    service = _by_kind(BASE_DOCS, "Service", "v1")["dashboard"]
    assert service["spec"]["ports"] == [{"name": "http", "port": port, "targetPort": "http"}]
    assert _config(BASE_DOCS)["STRATX_DASHBOARD_HOST"] == "0.0.0.0"


# ------------------------------------------------------------------ KEDA: groups and topics from the code
class _Recorder:
    """Stands in for quixstreams.Application: records the consumer group and the input topics."""

    def __init__(self, consumer_group: str) -> None:
        self.config = SimpleNamespace(consumer_group=consumer_group)
        self.inputs: list[str] = []

    def topic(self, name: str, **_: Any) -> SimpleNamespace:
        return SimpleNamespace(name=name)

    def dataframe(self, topic: SimpleNamespace, **_: Any) -> MagicMock:
        self.inputs.append(topic.name)
        return MagicMock()

    def run(self, **_: Any) -> None:
        return None


def _wiring(args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[str]]:
    """Run ``stratx <args>`` with the broker calls and the Quix Application recorded: (group, inputs)."""
    apps: list[_Recorder] = []

    def application(_settings: Any, consumer_group: str, *_a: Any, **_k: Any) -> _Recorder:
        apps.append(_Recorder(consumer_group))
        return apps[-1]

    feast = ModuleType("stratx.quix_apps.kit.feature_store")
    feast.setup_store = lambda settings: None  # type: ignore[attr-defined]
    feast.BackgroundPusher = lambda *a, **k: SimpleNamespace(close=lambda: None)  # type: ignore[attr-defined]
    feast.AGGRESSION_PUSH_SOURCE = "lap_aggression_push"  # type: ignore[attr-defined]
    with monkeypatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.setattr(wire, "application", application)
        patch.setattr(admin, "connect", lambda *a, **k: SimpleNamespace(close=lambda: None))
        patch.setattr(admin, "create_topics", lambda *a, **k: None)
        patch.setattr(kafka_io, "read_all", lambda *a, **k: iter(()))  # apps that read their output at start
        follower = SimpleNamespace(get=lambda key: None)  # the prediction app's session-info follower
        patch.setattr(predictions, "session_info", lambda settings: contextlib.nullcontext(follower))
        patch.setattr(track_gaps, "follow_tracks", lambda settings: contextlib.nullcontext(follower))
        patch.setattr(metrics, "instrument_app", lambda *a, **k: None)
        patch.setitem(sys.modules, "stratx.quix_apps.kit.feature_store", feast)
        patch.setattr(sys.modules["stratx.quix_apps"], "feature_store", feast, raising=False)
        assert cli.main(args) == 0
    (app,) = apps
    return app.config.consumer_group, app.inputs


def test_keda_scaled_objects_follow_the_apps_consumer_groups_and_topics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployments = _by_kind(BASE_DOCS, "Deployment")
    scaled = _by_kind(BASE_DOCS, "ScaledObject")
    assert set(STREAM_APPS) <= set(deployments) and set(scaled) == set(STREAM_APPS)
    config = _config(BASE_DOCS)
    groups: dict[str, tuple[str, list[str]]] = {}
    for name in STREAM_APPS:
        spec = scaled[name]["spec"]
        assert spec["scaleTargetRef"]["name"] == name and deployments[name]["spec"]["replicas"] == 0
        assert spec["minReplicaCount"] == 0
        triggers = spec["triggers"]
        assert {t["type"] for t in triggers} == {"kafka"}
        topics = [t["metadata"]["topic"] for t in triggers]
        assert all(t["metadata"]["offsetResetPolicy"] == "earliest" for t in triggers), (
            "apps read from earliest"
        )
        assert 1 <= spec["maxReplicaCount"] <= min(TOPICS[t].partitions for t in topics)
        if name == "drift":  # no consumer group of its own: runs while the prediction app has laps to read
            continue
        (container,) = _containers(deployments[name])
        groups[name] = _wiring(container["args"], config, monkeypatch)
        group, inputs = groups[name]
        assert {t["metadata"]["consumerGroup"] for t in triggers} == {group}, name
        assert sorted(topics) == sorted(inputs), name
    drift = scaled["drift"]["spec"]
    assert drift["maxReplicaCount"] == 1
    (trigger,) = drift["triggers"]
    group, inputs = groups["predict"]  # the prediction app's lap input (it also reads the retirements)
    assert (trigger["metadata"]["consumerGroup"], trigger["metadata"]["topic"]) == (group, inputs[0])


def test_stream_apps_expose_their_metrics_port() -> None:
    base = MetricsSettings().metrics_port_base
    assert _config(BASE_DOCS)["STRATX_METRICS_HOST"] == "0.0.0.0"
    for name, key in STREAM_APPS.items():
        doc = _by_kind(BASE_DOCS, "Deployment")[name]
        (container,) = _containers(doc)
        if key is None:
            assert "ports" not in container
            continue
        port = base + metrics.PORT_OFFSETS[key]
        assert container["ports"] == [{"name": "metrics", "containerPort": port}]
        assert doc["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)


# ------------------------------------------------------------------ localstack compose
def test_localstack_compose_runs_the_deploy_job_against_localstack_and_redpanda() -> None:
    compose = yaml.safe_load((REPO / "localstack" / "compose.yaml").read_text())
    root = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    assert {"localstack", "redpanda", "deploy"} <= set(services)
    assert services["redpanda"]["image"] == root["services"]["redpanda"]["image"]
    assert services["localstack"]["image"].startswith("localstack/localstack:")
    deploy_job = services["deploy"]
    env = deploy_job["environment"]
    assert env["AWS_ENDPOINT_URL"] == "http://localstack:4566"
    assert env["STRATX_BROKER_ADDRESS"] == "redpanda:9092"
    assert {k for k in env if k.startswith("STRATX_")} <= set(env_vars())
    assert "stratx.localstack.deploy deploy" in " ".join(deploy_job["command"])
    assert deploy_job["depends_on"]["localstack"]["condition"] == "service_healthy"
    assert deploy_job.get("restart") == "no"


# ------------------------------------------------------------------ rendered by kustomize
def _render(path: Path) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.integration
@pytest.mark.skipif(KUBECTL is None, reason="kubectl (its built-in kustomize) is not installed")
@pytest.mark.parametrize("target", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
def test_rendered_manifests(target: str) -> None:
    docs = _render(K8S / target)
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"stratx"}
    address = _config(docs)["STRATX_BROKER_ADDRESS"]
    for doc in _by_kind(docs, "ScaledObject").values():
        assert {t["metadata"]["bootstrapServers"] for t in doc["spec"]["triggers"]} == {address}
        topics = [t["metadata"]["topic"] for t in doc["spec"]["triggers"]]
        assert 0 == doc["spec"]["minReplicaCount"] < doc["spec"]["maxReplicaCount"]
        assert doc["spec"]["maxReplicaCount"] <= min(TOPICS[t].partitions for t in topics)
    images = {
        c["image"]
        for d in docs
        if d["kind"] in {"Deployment", "Job", "Service"} and "template" in d.get("spec", {})
        for c in _containers(d)
    }
    stratx = {i for i in images if "redpanda" not in i}
    assert stratx == {f"stratx:{VERSION}"}, "one image, tagged with the package version"
    for doc in docs:
        assert _env_names(doc) - set(env_vars()) <= NON_STRATX_ENV
    knative = _by_kind(docs, "Service", "serving.knative.dev")
    assert all(
        s["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "0"
        for s in knative.values()
    )
    if target == "overlays/local":
        root = yaml.safe_load((REPO / "compose.yaml").read_text())
        assert images - stratx == {root["services"]["redpanda"]["image"]}
        assert address == "redpanda.stratx.svc.cluster.local:9092"
        assert _by_kind(docs, "Service", "v1")["redpanda"]["spec"]["ports"][0]["port"] == 9092
    if target == "overlays/cloud":
        assert len(address.split(",")) == 3, "a three-broker Redpanda cluster"
        scaled = _by_kind(docs, "ScaledObject")
        assert scaled["predict"]["spec"]["maxReplicaCount"] == catalog.FEATURES_LAP_BY_SESSION.partitions
        assert scaled["lap-features"]["spec"]["maxReplicaCount"] == catalog.LAPS.partitions
        deployments = _by_kind(docs, "Deployment")
        for name in ("lap-features", "lap-aggression"):  # the Feast pushers share the Redis online store
            (container,) = _containers(deployments[name])
            (env,) = container["env"]
            assert env["name"] == "STRATX_FEAST_REDIS_CONNECTION"
            assert env["valueFrom"]["secretKeyRef"] == {
                "name": "stratx-scale",
                "key": "feast-redis-connection",
            }
        for doc in [*knative.values(), _by_kind(docs, "Job")["train"]]:
            (container,) = _containers(doc)
            uri = {e["name"]: e for e in container["env"]}["STRATX_MLFLOW_URI"]
            assert uri["valueFrom"]["secretKeyRef"] == {"name": "stratx-scale", "key": "mlflow-uri"}
        pvc = _by_kind(docs, "PersistentVolumeClaim")["stratx-mlflow"]
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
        # every Kafka client (all Deployments and Jobs) may take TLS / SASL settings from a Secret
        for doc in [*deployments.values(), *_by_kind(docs, "Job").values()]:
            (container,) = _containers(doc)
            assert {"secretRef": {"name": "stratx-kafka", "optional": True}} in container["envFrom"]
