"""Drift monitoring on a real broker: real races' lap features (built with the offline feature
functions, produced to stratx.features.lap) against the training races that started before them,
each column at its calibrated threshold (like with like, functions/drift_like.py).

* different season: the bundled 2024 Bahrain GP, through the `stratx drift --every` job as a
  subprocess (HTML report, JSON summary, gauges over HTTP);
* same-season control: the bundled 2023 Bahrain GP (a test race, never trained on);
* SYNTHETIC shift (labelled): the 2023 Bahrain records with every numeric model feature moved
  up by one reference standard deviation and the booleans flipped, under a session key of its own
  (:data:`SYNTHETIC_SESSION`); it must cross the threshold and raise exactly one drift alert over
  repeated runs (hysteresis).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from stratx.bentos.lifecycle import feature_build, model_store, sources, training
from stratx.functions import catalog, models, prediction_requests, schemas
from stratx.functions import drift as fdrift
from stratx.functions.settings import DriftSettings
from stratx.quix_apps import drift
from stratx.quix_apps.kit import admin, kafka_io
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port
from tests.conftest import BAHRAIN_2023, DATA_DIR

pytestmark = pytest.mark.integration

BAHRAIN_2024 = DATA_DIR / "races" / "2024_bahrain_grand_prix_race"
SYNTHETIC_SESSION = 990_001  # SYNTHETIC: not a real session key
STRATX = Path(sys.executable).parent / "stratx"
NOT_SHIFTED = {"v", "SessionKey", "DriverNumber", "LapNumber", "SessionTime", "Date", "FuelKg"}
INTEGER_FIELDS = {
    "PositionOnLap",
    "LapsInStint",
    "StintCleanLaps",
    "LapsDown",
    "PositionChange",
    "LapsSincePB",
    "Stint",
}


@pytest.fixture(scope="module")
def settings(own_broker: str, tmp_path_factory: pytest.TempPathFactory) -> DriftSettings:
    broker_address = own_broker  # its features and alerts must not reach other modules' topics
    client = admin.connect(broker_address)
    admin.create_topics(client)
    client.close()
    return DriftSettings(
        broker_address=broker_address,
        drift_reports_dir=tmp_path_factory.mktemp("drift"),
        metrics_enabled=False,
    )


@pytest.fixture(scope="module")
def reference(settings: DriftSettings) -> drift.Reference:
    built = drift.build_reference(settings)
    loaded = drift.load_reference(settings)
    assert loaded.snapshot_hash == built.snapshot_hash and len(loaded.rows) == len(built.rows)
    return loaded


def lap_records(race_dir: Path) -> list[dict[str, Any]]:
    rows, _ = feature_build.lap_feature_rows(sources.load_bundled(race_dir))
    return rows


def produce(address: str, records: list[dict[str, Any]], topic: str = catalog.FEATURES_LAP.name) -> None:
    producer = Producer({"bootstrap.servers": address, "partitioner": "murmur2_random"})
    for rec in records:
        key = f"{rec['SessionKey']}:{rec['DriverNumber']}"
        producer.produce(topic, key=key.encode(), value=json.dumps(rec).encode())
    assert producer.flush(30) == 0


def synthetic_shift(records: list[dict[str, Any]], reference: pd.DataFrame) -> list[dict[str, Any]]:
    """SYNTHETIC: every numeric model feature + 1 reference sd (integers rounded), booleans flipped."""
    out = []
    for rec in records:
        new = {**rec, "SessionKey": SYNTHETIC_SESSION}
        for name in fdrift.MODEL_FEATURES:
            value = rec.get(name)
            if name in NOT_SHIFTED or value is None or isinstance(value, str):
                continue
            if isinstance(value, bool):
                new[name] = not value
                continue
            moved = float(value) + float(np.nanstd(reference[name].astype(float)))
            new[name] = round(moved) if name in INTEGER_FIELDS else moved
        out.append(schemas.LapFeatures.model_validate(new).model_dump(mode="json"))
    return out


def drift_alerts(address: str, session_key: int) -> list[dict[str, Any]]:
    found = [json.loads(m.value()) for m in kafka_io.read_all(address, catalog.ALERTS.name, drain_s=0.5)]
    return [a for a in found if a["Type"] == "drift" and a["SessionKey"] == session_key]


def scrape(url: str) -> dict[str, float]:
    samples = {}
    for line in httpx.get(url, timeout=5).text.splitlines():
        match = re.match(r"^(stratx_\w+(?:\{[^}]*\})?) (\S+)$", line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


@pytest.fixture
def drift_job(
    settings: DriftSettings, reference: drift.Reference
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`stratx drift --session-key <2024 Bahrain> --every 2` with its /metrics exporter."""
    port = free_port()
    session = sources.load_bundled(BAHRAIN_2024).meta.session_key
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATX_")}
    env.update(
        STRATX_BROKER_ADDRESS=settings.broker_address,
        STRATX_DRIFT_REPORTS_DIR=str(settings.drift_reports_dir),
        STRATX_METRICS_PORT_BASE=str(port - 10),  # the drift exporter's offset is 10
        STRATX_MLFLOW_URI=f"sqlite:///{settings.drift_reports_dir / 'empty-registry.db'}",  # no champions
    )
    command = [str(STRATX), "drift", "--session-key", str(session), "--every", "2"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()


def test_different_season_and_control(
    settings: DriftSettings, reference: drift.Reference, drift_job: Any
) -> None:
    assert "2023 Bahrain Grand Prix" not in reference.races  # a test race, never in the reference
    season = lap_records(BAHRAIN_2024)
    control = lap_records(BAHRAIN_2023)
    produce(settings.broker_address, season + control)
    proc, port = drift_job
    session = season[0]["SessionKey"]

    deadline = time.monotonic() + 300  # Evidently on a busy 2-core machine: ~30 s idle, 120+ s loaded
    while (drift.latest_summary(settings.drift_reports_dir, session) or {}).get("status") != "ok":
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "no drift summary within 300 s"
        time.sleep(1)
    summary = drift.latest_summary(settings.drift_reports_dir, session)
    assert summary is not None and summary["status"] == "ok"
    assert Path(summary["html"]).stat().st_size > 100_000  # Evidently's self-contained HTML report
    assert summary["window"]["rows"] == len(season)
    assert summary["reference"]["snapshot_hash"] == reference.snapshot_hash

    metrics = scrape(f"http://127.0.0.1:{port}/metrics")
    share = metrics['stratx_drift_share{dataset="features"}']
    assert share == 0.0  # like with like: no column of the real 2024 race drifts (docs/operations.md)
    assert metrics["stratx_drift_runs_total"] >= 1
    scores = {k: v for k, v in metrics.items() if k.startswith("stratx_feature_drift_score{")}
    assert len(scores) == summary["compared"] >= 20
    assert all(v >= 0 for v in scores.values())
    assert metrics['stratx_drift_detected{dataset="features"}'] == float(share >= settings.drift_threshold)

    control_run = drift.run_once(settings, reference, control[0]["SessionKey"])
    print(
        f"\ndrift share vs the earlier training races: 2024 Bahrain {summary['share']:.3f} "
        f"({summary['drifted']}/{summary['compared']}), 2023 Bahrain control {control_run['share']:.3f} "
        f"({control_run['drifted']}/{control_run['compared']}); threshold {settings.drift_threshold}"
    )
    # measured (docs/operations.md): no column of either real race is further from the earlier
    # training races than the calibration allows, so neither reaches the threshold nor alerts
    for run in (summary, control_run):
        assert run["share"] < settings.drift_threshold
        assert drift_alerts(settings.broker_address, run["session_key"]) == []


def test_synthetic_shift_raises_one_alert_per_crossing(
    settings: DriftSettings, reference: drift.Reference
) -> None:
    shifted = synthetic_shift(lap_records(BAHRAIN_2023), reference.rows)
    produce(settings.broker_address, shifted)
    first = drift.run_once(settings, reference, SYNTHETIC_SESSION)
    assert first["share"] >= settings.drift_threshold and first["detected"]
    assert first["alert"] is not None
    again = drift.run_once(settings, reference, SYNTHETIC_SESSION)
    assert again["share"] >= settings.drift_threshold and again["alert"] is None  # no re-arm yet
    alerts = drift_alerts(settings.broker_address, SYNTHETIC_SESSION)
    assert len(alerts) == 1
    alert = schemas.Alert.model_validate(alerts[0])
    assert alert.DriverNumber == fdrift.SESSION_WIDE_DRIVER and alert.Value == pytest.approx(first["share"])
    assert alert.LapNumber == max(r["LapNumber"] for r in shifted)

    # the feed recovers (the real records again under the same key): below the re-arm share, no alert
    produce(
        settings.broker_address, [{**r, "SessionKey": SYNTHETIC_SESSION} for r in lap_records(BAHRAIN_2023)]
    )
    recovered = drift.run_once(settings, reference, SYNTHETIC_SESSION)
    assert recovered["share"] < settings.drift_rearm_share and recovered["alert"] is None
    # ... so the next crossing raises a second alert
    produce(settings.broker_address, shifted)
    second = drift.run_once(settings, reference, SYNTHETIC_SESSION)
    assert second["alert"] is not None
    assert len(drift_alerts(settings.broker_address, SYNTHETIC_SESSION)) == 2
    # the same session replayed into a fresh broker: the saved state says disarmed, but this broker
    # holds no drift alert of the session, so the crossing raises one there
    with EmbeddedBroker("127.0.0.1", free_port()) as fresh:
        client = admin.connect(fresh.address)
        admin.create_topics(client)
        client.close()
        produce(fresh.address, shifted)
        elsewhere = drift.run_once(settings.model_copy(update={"broker_address": fresh.address}), reference)
        assert elsewhere["session_key"] == SYNTHETIC_SESSION and elsewhere["alert"] is not None
        assert len(drift_alerts(fresh.address, SYNTHETIC_SESSION)) == 1


def test_a_skipped_run_leaves_its_summary_with_the_reason(
    settings: DriftSettings, reference: drift.Reference
) -> None:
    """Too few driver-laps for a comparison (the first 30 of 2023 Bahrain, under a SYNTHETIC
    session key of their own): the run writes a ``skipped`` summary saying why, so the newest
    summary is never an older run's."""
    few = [{**r, "SessionKey": SYNTHETIC_SESSION + 1} for r in lap_records(BAHRAIN_2023)[:30]]
    produce(settings.broker_address, few)
    run = drift.run_once(settings, reference, SYNTHETIC_SESSION + 1)
    assert run["status"] == "skipped" and "30 rows < STRATX_DRIFT_MIN_ROWS" in run["reason"]
    assert drift.latest_summary(settings.drift_reports_dir, SYNTHETIC_SESSION + 1) == run
    assert drift.describe(run).endswith(f"skipped ({run['reason']})")


def test_real_evidently_snapshot_parses(tmp_path: Path) -> None:
    """The snapshot parser against a real Evidently run: a column moved by 1 sd drifts, its twin does not."""
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"same": rng.normal(size=300), "moved": rng.normal(size=300)})
    cur = pd.DataFrame({"same": rng.normal(size=300), "moved": rng.normal(1.0, size=300)})
    result = fdrift.read_snapshot(drift.evidently_run(cur, ref).dict())
    assert result.drifted == ["moved"]
    assert result.share == 0.5


@pytest.fixture(scope="module")
def champions(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Small real lap_time and tyre_deg champions (few trees; 2023 Bahrain trains, 2024 validates)
    in a temp MLflow registry (tests/bentos_support.py)."""
    from tests import bentos_support as support

    conf = support.settings(tmp_path_factory.mktemp("registry"))
    data = support.corpus()
    for key in drift.PREDICTION_MODELS:
        training.train(conf, support.small_recipe(key), data, progress=False, split=support.split)
    return conf


def test_prediction_values_are_compared(
    settings: DriftSettings, reference: drift.Reference, champions: Any
) -> None:
    """The champions' predictions for the 2024 Bahrain laps (computed in-process with the registered
    champions and shaped as the prediction app shapes them) against their predictions on the
    reference rows: a second dataset with its own report and gauges."""
    conf = settings.model_copy(
        update={"mlflow_uri": champions.mlflow_uri, "mlflow_artifact_dir": champions.mlflow_artifact_dir}
    )
    predicted = drift.prediction_reference(conf, reference)
    assert predicted is not None and set(predicted.versions) == set(drift.PREDICTION_MODELS)
    assert len(predicted.values) == min(conf.drift_reference_size, len(reference.rows))
    rows = lap_records(BAHRAIN_2024)
    produce(settings.broker_address, rows)
    now = datetime.now(UTC)
    for key in drift.PREDICTION_MODELS:
        registered = model_store.load_registered(conf, key)
        out = models.recipe(key).predict(registered.bundle, pd.DataFrame(rows))
        records = [
            prediction_requests.predictions(row, key, registered.version, values, None, now, now)
            for row, values in zip(rows, out.to_dict(orient="records"), strict=True)
        ]
        produce(settings.broker_address, records, catalog.PREDICTION_TOPICS[key].name)

    summary = drift.run_once(conf, reference, rows[0]["SessionKey"], predictions=predicted)
    found = summary[fdrift.PREDICTIONS]
    assert found["status"] == "ok" and found["rows"] == len(rows)
    columns = {c["column"] for c in found["columns"]}
    assert "lap_time.PredictedNextLapTimeToAnchor" in columns and "tyre_deg.DegRate" in columns
    assert Path(found["html"]).is_file() and found["html"] != summary["html"]
    assert REGISTRY.get_sample_value("stratx_drift_share", {"dataset": "predictions"}) == found["share"]
    assert REGISTRY.get_sample_value("stratx_drift_share", {"dataset": "features"}) == summary["share"]
    print(
        f"\nprediction drift, 2024 Bahrain vs the reference (small test champions): share {found['share']:.3f} "
        f"({found['drifted']}/{found['compared']})"
    )
