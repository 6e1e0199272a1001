"""Integration tier: the track-gap apps on a real broker equal the offline build.

Positions of four drivers of the bundled 2023 Bahrain GP are replayed to the raw topic on a broker
of this module's own; the progress app and then the session gap app run until idle; the gap rows
read back equal ``run_gaps`` over ``offline_progress`` row for row (fields within 1e-9). The replay
runs at full speed, so the per-driver streams reach the gap app thousands of seconds apart: the
staleness rule (which assumes live, bounded skew) is switched off (``stale_s=None``), which makes
the result independent of the interleaving.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from stratx.functions import catalog, ingest
from stratx.functions.features import track_gaps as tg
from stratx.functions.racedata import RaceData
from stratx.functions.settings import KafkaSettings, ReplaySettings
from stratx.quix_apps import replay
from stratx.quix_apps import track_gaps as app_mod
from stratx.quix_apps.kit import kafka_io
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port
from tests.conftest import DATA_DIR

pytestmark = pytest.mark.integration
FOUR = {"1", "11", "14", "44"}  # Verstappen, Perez, Alonso, Hamilton


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker of this module's own: parity needs the session replayed exactly once."""
    with EmbeddedBroker("127.0.0.1", free_port(), tmp_path_factory.mktemp("b") / "tansu.log") as b:
        yield b.address


@pytest.fixture(scope="module")
def race(bahrain: RaceData) -> RaceData:
    four = bahrain.filter_drivers(FOUR)
    return RaceData(four.meta, {"pos_data": four.table("pos_data"), "drivers": four.table("drivers")})


@pytest.fixture(scope="module")
def session(bahrain: RaceData) -> tg.SessionTrack:
    track = tg.load_track_map(DATA_DIR / "circuits", bahrain.meta.circuit)
    assert track is not None
    full = tg.session_track(bahrain, track)
    return tg.SessionTrack(full.session_key, track, full.start_time, tuple(sorted(FOUR)))


@pytest.fixture(scope="module")
def streamed(
    own_broker: str, race: RaceData, session: tg.SessionTrack, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    settings = KafkaSettings(broker_address=own_broker)
    tracks = {session.session_key: session}
    state = Path(tmp_path_factory.mktemp("state"))
    progress = app_mod.build_progress_app(settings, tracks, state_dir=state / "p", loglevel=logging.WARNING)
    gaps = app_mod.build_gap_app(
        settings, tracks, stale_s=None, state_dir=state / "g", loglevel=logging.WARNING
    )
    result = replay.run(race, ReplaySettings(broker_address=own_broker), replay.ReplayOptions(progress=False))
    assert result.finished
    # a redelivered last sample and a record that is not JSON must be dead-lettered
    last = [r for r in ingest.iter_records(race) if r.topic is catalog.CAR_POSITION and r.key.endswith(":1")][
        -1
    ]
    producer = Producer({"bootstrap.servers": own_broker, "partitioner": "murmur2_random"})  # as Quix
    producer.produce(catalog.CAR_POSITION.name, key=last.key, value=ingest.encode(last))
    producer.produce(catalog.CAR_POSITION.name, key=last.key, value=b"{not json")
    producer.flush(10)
    started = time.monotonic()
    progress.run(timeout=3.0, collect=False)
    gaps.run(timeout=3.0, collect=False)
    print(f"track-gap apps: {time.monotonic() - started:.1f} s incl. joins and 2 x 3 s idle")
    messages = list(kafka_io.read_all(own_broker, app_mod.TRACK_GAP.name))
    letters = [json.loads(m.value()) for m in kafka_io.read_all(own_broker, catalog.DEAD_LETTER.name)]
    return {"messages": messages, "letters": [x for x in letters if x["Stage"] == app_mod.STAGE]}


def test_stream_equals_offline_gaps(
    streamed: dict[str, Any], race: RaceData, session: tg.SessionTrack
) -> None:
    points, rejected = tg.offline_progress(tg.position_samples(race), session)
    assert rejected == 0
    offline, reasons = tg.run_gaps(tg.merged_points(points), session, stale_s=None)
    assert reasons == []
    online = {}
    for msg in streamed["messages"]:
        row = json.loads(msg.value())
        assert msg.key().decode() == f"{row['SessionKey']}:{row['DriverNumber']}"
        app_mod.TrackGap.model_validate(row)
        online[(row["DriverNumber"], row["SessionTime"])] = row
    last = max(t for _, t in online)
    want = {(r["DriverNumber"], r["SessionTime"]): r for r in offline if r["SessionTime"] <= last}
    assert len(online) == len(streamed["messages"]) == len(want) > 4 * 5000
    for key, w in want.items():
        g = online[key]
        assert g.keys() == w.keys(), key
        for field, value in w.items():
            if isinstance(value, float) and g[field] is not None:
                assert math.isclose(g[field], value, rel_tol=0, abs_tol=1e-9), (key, field)
            else:
                assert g[field] == value, (key, field)


def test_rejected_records_go_to_dead_letters(streamed: dict[str, Any]) -> None:
    reasons = sorted(letter["Reason"] for letter in streamed["letters"])
    assert len(reasons) == 2, reasons
    assert any(r.startswith("duplicate") for r in reasons)
    assert any(r.startswith("not JSON") for r in reasons)
