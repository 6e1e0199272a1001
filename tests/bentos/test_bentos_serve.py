"""Layer 3 of the service tests: real ``bentoml serve`` processes (started the way ``stratx serve``
starts them, one per model on a free port) and ``bentoml build`` of every Bento, offline."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from stratx.bentos.lifecycle import serve
from stratx.functions.settings import ServingSettings
from stratx.quix_apps.kit.broker import free_port
from tests import bentos_support as support

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def champions(trained_champions: support.Champions) -> Iterator[support.Champions]:
    with support.bentoml_home(trained_champions.home):
        yield trained_champions


@pytest.fixture(scope="module")
def running(
    champions: support.Champions, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, serve.Running]]:
    """Every service with a champion, each a `bentoml serve` subprocess; all killed afterwards."""
    keys = list(champions.tags)
    ports = {f"{k}_port": free_port() for k in keys}
    settings = ServingSettings(serve_start_timeout_s=180, **ports)  # type: ignore[arg-type]
    logs = tmp_path_factory.mktemp("serve-logs")
    with serve.services(keys, settings, log_dir=logs) as started:
        yield {r.key: r for r in started}
    assert all(r.process.returncode is not None for r in started)  # stopped


def request_count(url: str, route: str, code: int) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    pattern = (
        rf'bentoml_service_request_total\{{endpoint="{route}",http_response_code="{code}"[^}}]*\}} (\S+)'
    )
    return sum(float(v) for v in re.findall(pattern, text))


def count_after(url: str, route: str, code: int, at_least: float, timeout_s: float = 5.0) -> float:
    """The request counter once it reaches ``at_least`` (or whatever it says at the timeout): the
    server counts a request after the response has gone out, so a read right after the answer can
    still see the old value."""
    deadline = time.monotonic() + timeout_s
    while (count := request_count(url, route, code)) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


@pytest.mark.parametrize("key", support.SERVED_KEYS)
def test_served_model_answers_and_counts(
    key: str, champions: support.Champions, running: dict[str, serve.Running]
) -> None:
    champions.require(key)
    url = running[key].url
    assert httpx.get(f"{url}/livez", timeout=5).status_code == 200
    assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    rows = support.request_rows(key, champions.corpus.laps)
    before = request_count(url, "/predict", 200)

    response = httpx.post(f"{url}/predict", json={"rows": rows}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == len(rows) and response.json()["version"] == "1"
    # row 0 alone: also for anomaly (its first row, the leader's earliest lap, has no context either way)
    batched = httpx.post(f"{url}/predict_rows", json={"rows": rows[:1]}, timeout=30)
    assert batched.status_code == 200 and batched.json() == response.json()["predictions"][:1]

    bad = httpx.post(f"{url}/predict", json={"rows": [{**rows[0], "LapNumber": 0}]}, timeout=30)
    assert bad.status_code == 400 and bad.json()["detail"][0]["loc"] == ["rows", 0, "LapNumber"]
    junk = httpx.post(f"{url}/predict", content=b"\x00\xff", headers={"Content-Type": "application/json"})
    assert junk.status_code == 400

    assert count_after(url, "/predict", 200, before + 1) == before + 1
    assert count_after(url, "/predict", 400, 2) >= 2


def test_a_service_worker_scores_without_loading_scikit_learn(
    champions: support.Champions, running: dict[str, serve.Running]
) -> None:
    """LightGBM imports scikit-learn (and most of SciPy) when it is installed; the workers load it
    without (bentos/kit/serving.py: ~60 MB of RSS each). Checked on the real worker processes after
    they answered: no scikit-learn or SciPy-stats shared object is mapped, LightGBM's is."""
    import psutil

    key = next(k for k in support.SERVED_KEYS if k in champions.tags)
    rows = support.request_rows(key, champions.corpus.laps)
    assert httpx.post(f"{running[key].url}/predict", json={"rows": rows}, timeout=30).status_code == 200
    workers = psutil.Process(running[key].process.pid).children(recursive=True)
    assert workers, "bentoml serve started no worker process"
    for worker in workers:
        mapped = {m.path for m in worker.memory_maps()}
        assert any("lib_lightgbm" in path for path in mapped), worker.cmdline()
        assert not [path for path in mapped if "/sklearn/" in path or "/scipy/stats/" in path]


def test_the_prediction_app_requests_are_answered_by_every_service(
    champions: support.Champions, running: dict[str, serve.Running]
) -> None:
    """The prediction app's requests for real records (every model, overtake pair rows and anomaly
    contexts included) through its own client: every service answers, one prediction per row."""
    from stratx.quix_apps.kit.model_client import ModelClient

    requests = support.app_requests(champions.corpus.laps)[-3:]
    with ModelClient({k: r.url for k, r in running.items()}) as client:
        for record in requests:
            outcomes = client.predict_all({k: rows for k, rows in record.items() if k in running})
            assert set(outcomes) == set(record) & set(running) and "overtake" in outcomes
            for key, outcome in outcomes.items():
                assert outcome.predictions is not None, (key, outcome.reason)
                assert len(outcome.predictions) == len(record[key]) and outcome.version == "1"
            scored = outcomes["anomaly"].predictions if "anomaly" in outcomes else None
            assert scored is None or scored[-1]["AnomalyScore"] is not None  # the row read: full context


@pytest.mark.parametrize("key", support.SERVED_KEYS)
def test_bentoml_build_works_offline(key: str, champions: support.Champions, tmp_path: Path) -> None:
    """`bentoml build bentos/<key>` with the wheel and the imported champion (no network needed:
    lock_packages is off and the model comes from the local store)."""
    champions.require(key)
    serve.build_wheel()
    tag, seconds = serve.bentoml_build(key)
    assert tag.startswith(f"stratx-{key.replace('_', '-')}-service:")
    assert seconds < 120
    # the Docker build context of compose.bentos.yaml: the generated Dockerfile, wheel and model
    context = serve.export_context(tag, key, tmp_path)
    dockerfile = (context / serve.GENERATED_DOCKERFILE).read_text()
    assert "THIS IS A GENERATED DOCKERFILE" in dockerfile and "FROM python:3.11" in dockerfile
    assert "EXPOSE 3000" in dockerfile and "env/docker/entrypoint.sh" in dockerfile
    assert "curl" in dockerfile  # the compose healthcheck's tool is installed
    assert (context / "env/python/wheels" / serve.build_wheel().name).is_file()
    ((model,),) = [s["models"] for s in yaml.safe_load((context / "bento.yaml").read_text())["services"]]
    name, version = model["tag"].split(":")
    assert (context / "models" / name / version / "model.yaml").is_file()
    assert model["tag"] == champions.tags[key]  # the champion imported for this test is the one packed
