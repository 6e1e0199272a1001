"""The container files cannot run here (no Docker engine); check that what they run is valid."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from stratx.functions.models import MODEL_KEYS
from stratx.quix_apps.cli import build_parser
from stratx.quix_apps.settings import ServingSettings

REPO = Path(__file__).resolve().parents[1]


def test_compose_services_run_real_stratx_commands() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    assert {
        "redpanda",
        "console",
        "topics",
        "replay",
        "lap-features",
        "telemetry-features",
        "lap-aggression",
        "train",
        "predict",
        "alerts",
        "dashboard",
        *(f"{key.replace('_', '-')}-service" for key in MODEL_KEYS),
    } <= set(services)
    assert "--mode=dev-container" in services["redpanda"]["command"]
    built = [name for name, svc in services.items() if svc.get("build") == "."]
    assert len(built) == 14
    for key in MODEL_KEYS:  # every model has its own service, and the prediction app calls it
        svc = services[f"{key.replace('_', '-')}-service"]
        assert (
            svc["command"] == ["serve", "--model", key]
            and svc["environment"]["STRATX_SERVE_HOST"] == "0.0.0.0"
        )
        port = ServingSettings().port(key)
        assert str(port) in svc["healthcheck"]["test"][1]
        url = services["predict"]["environment"][f"STRATX_{key.upper()}_URL"]
        assert url == f"http://{key.replace('_', '-')}-service:{port}"
    for name in built:
        svc = services[name]
        assert svc["environment"]["STRATX_BROKER_ADDRESS"] == "redpanda:9092"
        args = build_parser().parse_args(svc["command"])  # exits (SystemExit) if the command is wrong
        assert args.command == svc["command"][0]


def test_dockerfile_copies_existing_paths_and_installs_from_the_lock() -> None:
    lines = (REPO / "Dockerfile").read_text().splitlines()
    for line in lines:
        if line.startswith("COPY "):
            for src in shlex.split(line)[1:-1]:
                assert (REPO / src).exists(), src
    text = "\n".join(lines)
    assert "uv sync --frozen" in text and 'ENTRYPOINT ["stratx"]' in text


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci
