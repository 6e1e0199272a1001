"""`make bench-check` (bench/check_stale.py): the code a benchmark measures is derived from its
imports, and a result is stale when that code changed after the commit it was measured on."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stale() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_stale", REPO / "bench" / "check_stale.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_stale"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_the_replay_benchmark_measures_the_replay_and_its_imports_not_the_dashboard(
    stale: ModuleType,
) -> None:
    files = {str(p) for p in stale.measured_files(REPO / "bench" / "replay_throughput.py")}
    assert {"bench/replay_throughput.py", "quix_apps/replay.py", "functions/ingest.py", "uv.lock"} <= files
    assert not [f for f in files if f.startswith("panel_app/")]
    assert "quix_apps/predictions.py" not in files


def test_a_benchmark_that_runs_the_cli_and_the_services_measures_every_app_and_service(
    stale: ModuleType,
) -> None:
    files = {str(p) for p in stale.measured_files(REPO / "bench" / "pipeline_latency.py")}
    apps = {"quix_apps/predictions.py", "quix_apps/lap_features.py", "quix_apps/telemetry_features.py"}
    assert apps <= files
    assert {f"bentos/{key}/service.py" for key in ("lap_time", "anomaly", "pit_window")} <= files


def test_docstring_prose_naming_a_module_is_not_an_import(stale: ModuleType, tmp_path: Path) -> None:
    source = tmp_path / "b.py"
    source.write_text(
        '"""Runs like stratx.localstack.deploy does."""\n'
        'CMD = ["python", "-m", "stratx.quix_apps.cli"]\n'
        "def f():\n    from stratx.functions import catalog\n"
    )
    names = stale.imported_modules(source)
    assert {"stratx.quix_apps.cli", "stratx.functions", "stratx.functions.catalog"} <= names
    assert "stratx.localstack.deploy" not in names
    assert stale.module_file("stratx.functions.catalog") == (REPO / "functions" / "catalog.py").resolve()
    assert stale.module_file("stratx.localstack.adapters.aws_lambda.handler") is None  # a function


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_a_result_is_stale_once_a_measured_file_changes_after_its_commit(
    stale: ModuleType, tmp_path: Path
) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "measured.py").write_text("x = 1\n")
    (tmp_path / "other.py").write_text("y = 1\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a")
    commit = git(tmp_path, "rev-parse", "HEAD")
    measured, other = {Path("measured.py")}, {Path("other.py")}
    assert stale.changed_since(tmp_path, commit, measured) == []
    (tmp_path / "other.py").write_text("y = 2\n")  # not measured: still fresh
    assert stale.changed_since(tmp_path, commit, measured) == []
    (tmp_path / "measured.py").write_text("x = 2\n")  # uncommitted changes count
    assert stale.changed_since(tmp_path, commit, measured) == ["measured.py"]
    assert stale.changed_since(tmp_path, commit, other) == ["other.py"]
    assert stale.changed_since(tmp_path, "0" * 40, measured) is None


def test_the_report_covers_every_result_and_names_what_the_readme_cites(stale: ModuleType) -> None:
    verdicts = {v.result: v for v in stale.check()}
    results = {p.name for p in (REPO / "bench" / "results").glob("*.json")}
    assert set(verdicts) == results
    for name, verdict in verdicts.items():
        machine = json.loads((REPO / "bench" / "results" / name).read_text()).get("machine") or {}
        assert verdict.commit == machine.get("git_commit")
        if stale.REFERENCE.search(name):
            assert verdict.cited_by == 0 and verdict.status.startswith("reference")
    assert verdicts["serving_latency.json"].cited_by >= 1  # the README's serving row
    assert verdicts["replay_throughput.json"].cited_by >= 1  # cited through `make bench`
