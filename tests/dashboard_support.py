"""Real records of a bundled race for the dashboard tests, and TEST prediction/alert records.

The prediction and alert apps are not part of these tests. Where a test needs records on the
prediction and alert topics, :func:`test_predictions` builds them in the exact schema
(``schemas.Prediction`` / ``schemas.Alert``) with ``ModelVersion = "test-record"`` and values
taken from the race itself, never from a model:

* lap_time ``PredictedNextLapTime`` = the lap's own ``Last3Median`` (a rolling-median stand-in)
* tyre_deg ``DegRate`` = the lap's ``StintDegSlope``; ``DegRateP10``/``P90`` = slope -/+ 1.2816 x
  its standard error (the OLS fit's 80 % band)
* pit_window ``PitProbability3Laps`` = 1.0 if the driver really pitted within the next 3 laps,
  else 0.0; ``WindowOpenLap``/``WindowCloseLap`` = that in-lap
* overtake ``OvertakeProbability{1Lap,2Laps,3Laps}`` = 1.0 if the driver really gained a place
  within 1/2/3 laps, else 0.0 (``OtherDriverNumber`` = the car ahead on the lap)
* alerts: one ``tyre_cliff`` (warning) on each in-lap, message prefixed ``TEST RECORD``

They are test records with the shape of model output; nothing presents them as predictions.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from stratx.bentos.lifecycle.feature_build import lap_feature_rows
from stratx.functions import catalog, ingest, schemas
from stratx.functions.racedata import RaceData

TEST_VERSION = "test-record"
Z80 = 1.2816  # standard-normal quantile of 0.90: P10..P90 is an 80 % band
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"

# Debian's chromium, driven by Playwright (no browser download); without the background-network
# flags it keeps dialling Google's hosts, which this closed network refuses.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def session_info(race: RaceData) -> dict[str, Any]:
    record = next(ingest.iter_records(race))
    return schemas.SessionInfo.model_validate(record.payload).model_dump(mode="json")


def timing_records(race: RaceData) -> list[dict[str, Any]]:
    out = []
    for record in ingest.table_records(race, "timing"):
        checked = ingest.validate(record)
        if not isinstance(checked, ingest.Rejected):
            out.append(checked.model_dump(mode="json"))
    return out


def car_samples(race: RaceData, per_driver: int = 3) -> list[dict[str, Any]]:
    """The first ``per_driver`` valid car-data samples of each driver after lap 1 started."""
    counts: dict[str, int] = {}
    out = []
    start = race.table("laps")["LapStartTime"].dropna().min()
    for record in ingest.table_records(race, "car_data"):
        p = record.payload
        if (
            p["SessionTime"] is None
            or p["SessionTime"] < start + 600
            or counts.get(p["DriverNumber"], 0) >= per_driver
        ):
            continue
        checked = ingest.validate(record)
        if isinstance(checked, ingest.Rejected):
            continue
        counts[p["DriverNumber"]] = counts.get(p["DriverNumber"], 0) + 1
        out.append(checked.model_dump(mode="json"))
        if len(counts) >= 20 and all(v >= per_driver for v in counts.values()):
            break
    return out


def lap_features(race: RaceData) -> list[dict[str, Any]]:
    rows, _ = lap_feature_rows(race)
    return sorted(rows, key=lambda r: (r["SessionTime"], r["DriverNumber"]))


def recorded_race(race: RaceData) -> dict[str, Any]:
    """The records the dashboard tests fold: session info, timing, lap features, car samples."""
    features = lap_features(race)
    return {
        "info": session_info(race),
        "timing": timing_records(race),
        "laps": features,
        "car": car_samples(race),
        "outcomes": Outcomes(features),
    }


class Outcomes:
    """What really happened after each driver-lap (for the test records' values)."""

    def __init__(self, features: list[dict[str, Any]]) -> None:
        self.by_key = {(r["DriverNumber"], r["LapNumber"]): r for r in features}

    def pitted_within(self, drv: str, lap: int, k: int) -> int | None:
        """The in-lap (stint's last lap) if the driver changed stint within ``k`` laps."""
        now = self.by_key.get((drv, lap))
        for i in range(1, k + 1):
            later = self.by_key.get((drv, lap + i))
            if now is not None and later is not None and later.get("Stint") != now.get("Stint"):
                return lap + i - 1
        return None

    def gained_within(self, drv: str, lap: int, k: int) -> bool:
        now = self.by_key.get((drv, lap))
        later = self.by_key.get((drv, lap + k))
        return bool(now and later and later["PositionOnLap"] < now["PositionOnLap"])


def _prediction(row: dict[str, Any], model: str, values: dict[str, Any], **extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return schemas.Prediction(
        SessionKey=row["SessionKey"],
        DriverNumber=row["DriverNumber"],
        LapNumber=row["LapNumber"],
        Model=model,  # type: ignore[arg-type]
        ModelVersion=TEST_VERSION,
        Status="ok",
        Values=values,
        EventSessionTime=row["SessionTime"],
        EventDate=row.get("Date"),
        IngestedAt=now,
        ProducedAt=now,
        **extra,
    ).model_dump(mode="json")


def test_predictions(
    row: dict[str, Any], outcomes: Outcomes, ahead: str | None
) -> list[tuple[str, dict[str, Any]]]:
    """(topic, record) test records for one lap-feature record (see the module docstring)."""
    drv, lap = row["DriverNumber"], row["LapNumber"]
    out: list[tuple[str, dict[str, Any]]] = []
    topic = catalog.PREDICTION_TOPICS
    if row.get("Last3Median") is not None:
        out.append(
            (
                topic["lap_time"].name,
                _prediction(row, "lap_time", {"PredictedNextLapTime": row["Last3Median"]}),
            )
        )
    slope, stderr = row.get("StintDegSlope"), row.get("StintDegSlopeStderr")
    if slope is not None and stderr is not None:
        values = {"DegRate": slope, "DegRateP10": slope - Z80 * stderr, "DegRateP90": slope + Z80 * stderr}
        out.append((topic["tyre_deg"].name, _prediction(row, "tyre_deg", values)))
    in_lap = outcomes.pitted_within(drv, lap, 3)
    pit = {"PitProbability3Laps": 1.0 if in_lap is not None else 0.0}
    if in_lap is not None:
        pit |= {"WindowOpenLap": float(in_lap), "WindowCloseLap": float(in_lap)}
    out.append((topic["pit_window"].name, _prediction(row, "pit_window", pit)))
    if ahead is not None and row.get("IntervalAhead") is not None:
        odds = {
            f"OvertakeProbability{k}{'Lap' if k == 1 else 'Laps'}": 1.0
            if outcomes.gained_within(drv, lap, k)
            else 0.0
            for k in (1, 2, 3)
        }
        out.append((topic["overtake"].name, _prediction(row, "overtake", odds, OtherDriverNumber=ahead)))
    if in_lap == lap:
        alert = schemas.Alert(
            SessionKey=row["SessionKey"],
            DriverNumber=drv,
            LapNumber=lap,
            Type="tyre_cliff",
            Severity="warning",
            Message=f"TEST RECORD (not a model): {row.get('Driver')} boxes this lap after {row.get('TyreLife'):.0f} laps",
            Model=TEST_VERSION,
            Value=row.get("StintDegSlope"),
            EventSessionTime=row["SessionTime"],
            Date=datetime.now(UTC),
        )
        out.append((catalog.ALERTS.name, alert.model_dump(mode="json")))
    return out


def key_of(rec: dict[str, Any]) -> str:
    drv = rec.get("DriverNumber")
    return f"{rec['SessionKey']}:{drv}" if drv is not None else str(rec["SessionKey"])


def produce(producer: Producer, topic: str, records: list[dict[str, Any]]) -> None:
    for rec in records:
        producer.produce(topic, key=key_of(rec), value=json.dumps(rec).encode())
    producer.flush(10)


class TestRecordFeeder(threading.Thread):
    """Stand-in for the prediction + alert apps in tests: reads stratx.features.lap as the real
    lap-feature app writes it and answers every record with the test records above."""

    __test__ = False  # not a pytest test class

    def __init__(self, broker_address: str, features: list[dict[str, Any]]) -> None:
        super().__init__(name="test-record-feeder", daemon=True)
        self.broker_address = broker_address
        self.outcomes = Outcomes(features)
        self.produced = 0
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)

    def run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.broker_address,
                "group.id": "test-record-feeder",
                "session.timeout.ms": 6000,
                "enable.auto.commit": False,
            }
        )
        producer = Producer({"bootstrap.servers": self.broker_address, "linger.ms": 5})
        topic = catalog.FEATURES_LAP.name
        consumer.assign([TopicPartition(topic, p, 0) for p in range(catalog.FEATURES_LAP.partitions)])
        order: dict[tuple[int, int], dict[int, str]] = {}  # (session, lap) -> position -> driver
        try:
            while not self._stop_event.is_set():
                for msg in consumer.consume(500, timeout=0.1):
                    if msg.error() is not None:
                        continue
                    row = json.loads(msg.value())
                    positions = order.setdefault((row["SessionKey"], row["LapNumber"]), {})
                    positions[row["PositionOnLap"]] = row["DriverNumber"]
                    ahead = positions.get(row["PositionOnLap"] - 1)
                    for out_topic, rec in test_predictions(row, self.outcomes, ahead):
                        producer.produce(out_topic, key=key_of(rec), value=json.dumps(rec).encode())
                        self.produced += 1
                producer.poll(0)
        finally:
            producer.flush(10)
            consumer.close()
