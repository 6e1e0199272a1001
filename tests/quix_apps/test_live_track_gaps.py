"""Continuous gaps on a live session, over real HTTP and a real broker.

The local OpenF1-compatible server replays the recorded real 2023 Las Vegas GP records
(``tests/fixtures/openf1_session``: positions of cars 1, 11, 16 and 55) on a simulated clock; the
poller follows the session from 30 s before lights out to 330 s after it, one ``live.run`` cycle
every two simulated minutes (as ``test_live_openf1.py``). The progress app is built (and asked)
before any track exists; the race-state app then announces the session's track on
``stratx.race.track`` (the bundled Las Vegas map; race start = lap 1 ``LapStartTime`` of the first
completed lap 1, 106 s after lights out); the progress and gap apps then write
``stratx.features.track_gap``, equal to the same functions run offline on the positions the poller
published with the track from the stream. Both apps are given the bundled replay's track of the
same session key, which is on the replay's clock and must not be used for the live session.
Holding positions until the track comes, and releasing them, is unit-tested
(``tests/functions/test_track_state.py``): here every app runs after the poll, one after the other.

At full speed each car's points reach the gap app hundreds of event-time seconds apart: as in
``test_track_gaps_app.py`` the gap app runs with the staleness rule off (``stale_s=None``) and the
session's expected drivers narrowed to the four cars with positions (live, the points arrive
together and the 60 s staleness rule lets the 16 others go). About 30 s.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import math
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from stratx.functions import catalog, schemas
from stratx.functions.features import track_gaps as tg
from stratx.functions.features.track_progress import from_race_track
from stratx.functions.settings import FeatureAppSettings, LiveSettings
from stratx.quix_apps import live, race_state, track_gaps
from stratx.quix_apps.kit import kafka_io
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port
from stratx.quix_apps.kit.openf1_client import OpenF1Client
from stratx.quix_apps.kit.openf1_server import create_app, lights_out_clock, serve
from tests.conftest import DATA_DIR, LAS_VEGAS_2023

pytestmark = pytest.mark.integration
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "openf1_session"
SESSION = 9189
CARS = ("1", "11", "16", "55")


def records(endpoint: str) -> list[dict[str, Any]]:
    with gzip.open(FIXTURE / f"{endpoint}.jsonl.gz", "rt") as fh:
        return [json.loads(line) for line in fh]


def session_seconds(date: str) -> float:
    start = datetime.fromisoformat(records("sessions")[0]["date_start"])
    return (datetime.fromisoformat(date) - start).total_seconds()


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EmbeddedBroker("127.0.0.1", free_port(), tmp_path_factory.mktemp("b") / "tansu.log") as b:
        yield b.address


def bundled_replay_track() -> dict[int, tg.SessionTrack]:
    """What ``bundled_tracks`` gives the apps for the bundled race of the same session key (on
    FastF1's clock): ``session_track`` of the race, from its meta and laps alone (no 1 M events)."""
    vegas = tg.load_track_map(DATA_DIR / "circuits", "Las Vegas")
    assert vegas is not None
    meta = json.loads((LAS_VEGAS_2023 / "meta.json").read_text())
    laps = pd.read_parquet(LAS_VEGAS_2023 / "laps.parquet", columns=["LapNumber", "LapStartTime"])
    drivers = pd.read_parquet(LAS_VEGAS_2023 / "drivers.parquet", columns=["DriverNumber"])
    start = float(laps.loc[laps.LapNumber == 1, "LapStartTime"].min())
    t0 = datetime.fromisoformat(meta["t0_date"])
    assert meta["session_key"] == SESSION and t0 < datetime.fromisoformat(
        records("sessions")[0]["date_start"]
    )
    return {SESSION: tg.SessionTrack(SESSION, vegas, start, tuple(sorted(drivers.DriverNumber)), t0)}


class FourCars(track_gaps.Registry):
    """The gap app's tracks with the expected drivers narrowed to the four cars with positions."""

    def __call__(self, record: dict[str, Any]) -> tg.SessionTrack | None:
        found = super().__call__(record)
        return None if found is None else dataclasses.replace(found, drivers=CARS)


class Said(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def streamed(own_broker: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    state = tmp_path_factory.mktemp("state")
    settings = FeatureAppSettings(broker_address=own_broker, state_dir=state, feast_push=False)
    replay_track = bundled_replay_track()
    server = create_app(clock=None)
    server.clock = lights_out_clock(server, offset_s=-30)
    base_url, stop = serve(server)
    poll = LiveSettings(broker_address=own_broker, openf1_url=f"{base_url}/v1", poll_interval_s=0)
    try:
        for _ in range(3):  # to 330 s after lights out (the poller creates the topics)
            server.clock.advance(120)
            with OpenF1Client(base_url=poll.openf1_url, rate_limit=1000) as client:
                live.run(client, poll, live.LiveOptions(session_key=str(SESSION), max_cycles=1))
        end = session_seconds(server.clock.now().isoformat())
    finally:
        stop()
    said = Said()
    logging.getLogger(track_gaps.__name__).addHandler(said)
    try:
        with track_gaps.follow_tracks(settings) as follower:
            tracks = track_gaps.Registry(replay_track, follower)
            progress = track_gaps.build_progress_app(
                settings, tracks, state_dir=state / "p", loglevel=logging.WARNING
            )
            assert (
                tracks({"SessionKey": SESSION, "SessionTime": 300.0, "Date": "2023-11-19T06:05:00Z"}) is None
            )
            race_state.build_app(settings).run(timeout=1.0, collect=False)
            progress.run(timeout=1.0, collect=False)
            tracks = FourCars(replay_track, follower, letters=False)
            gaps = track_gaps.build_gap_app(
                settings, tracks, stale_s=None, state_dir=state / "g", loglevel=logging.WARNING
            )
            gaps.run(timeout=1.5, collect=False)
    finally:
        logging.getLogger(track_gaps.__name__).removeHandler(said)

    def read(spec: catalog.TopicSpec) -> list[dict[str, Any]]:
        return [json.loads(m.value()) for m in kafka_io.read_all(own_broker, spec.name)]

    return {
        "end": end,
        "said": said.messages,
        "track": read(catalog.RACE_TRACK),
        "positions": read(catalog.CAR_POSITION),
        "progress": read(catalog.PROGRESS),
        "gaps": read(catalog.TRACK_GAP),
        "letters": [x for x in read(catalog.DEAD_LETTER) if x["Stage"] == track_gaps.STAGE],
    }


def test_the_track_is_announced_once_when_the_first_car_completes_lap_1(streamed: dict[str, Any]) -> None:
    (track,) = streamed["track"]
    schemas.RaceTrack.model_validate(track)
    laps = [lap for lap in records("laps") if lap["lap_number"] == 1]
    lights_out = session_seconds(laps[0]["date_start"])
    first_done = min(session_seconds(lap["date_start"]) + lap["lap_duration"] for lap in laps)
    assert (track["SessionKey"], track["Circuit"], track["MapSource"]) == (SESSION, "Las Vegas", "bundled")
    assert track["StartTime"] == pytest.approx(lights_out, abs=1e-3)  # 245.009 s
    assert track["SessionTime"] == pytest.approx(first_done, abs=1e-3)  # known 106 s later, not before
    assert track["T0Date"].startswith("2023-11-19T06:00:00")  # the OpenF1 session start, not FastF1's t0
    assert len(track["Drivers"]) == 20


def test_the_bundled_replays_track_is_not_used_and_the_wait_is_said_once(streamed: dict[str, Any]) -> None:
    holding = [m for m in streamed["said"] if "holding its inputs" in m]
    assert holding == [
        "session 9189 has no track map (its bundled track is on another clock): "
        "holding its inputs until stratx.race.track has it"
    ]
    assert any("track from stratx.race.track, start 245.009 s" in m for m in streamed["said"])
    assert not streamed["letters"], streamed["letters"]


def test_the_live_session_gets_continuous_gaps_equal_to_the_offline_run(streamed: dict[str, Any]) -> None:
    session = dataclasses.replace(from_race_track(streamed["track"][0]), drivers=CARS)
    samples = [
        schemas.CarPosition.model_validate(p).model_dump() for p in streamed["positions"]
    ]  # as the app
    points, rejected = tg.offline_progress(samples, session)
    assert rejected == 0
    in_order = sorted(streamed["progress"], key=lambda p: (p["DriverNumber"], p["SessionTime"]))
    assert in_order == [p for d in sorted(points) for p in points[d]]
    offline, reasons = tg.run_gaps(tg.merged_points(points), session, stale_s=None)
    assert reasons == []
    rows = streamed["gaps"]
    assert len(rows) == len(offline) > 4 * 300
    key = lambda r: (r["SessionTime"], r["DriverNumber"])  # noqa: E731
    for got, want in zip(sorted(rows, key=key), offline, strict=True):
        schemas.TrackGap.model_validate(got)
        for field, value in want.items():
            if isinstance(value, float) and got[field] is not None:
                assert math.isclose(got[field], value, abs_tol=1e-9), (got, field)
            elif field == "Date":
                assert datetime.fromisoformat(got[field]) == datetime.fromisoformat(value), got
            else:
                assert got[field] == value, (got, field)
    times = sorted({r["SessionTime"] for r in rows})
    assert times[0] - session.start_time < 2.0 and times[-1] > streamed["end"] - 5  # start to end
    assert times == [float(t) for t in range(int(times[0]), int(times[-1]) + 1)]  # every second


def test_live_gaps_count_laps_as_the_timing_does(streamed: dict[str, Any]) -> None:
    """A car's LapNumber by distance is the lap the timing has it on, 5 s from the line either way
    (the map is the racing line, 0.8 % short of the official length), pit in- and out-laps aside
    (the timing line crosses the pit lane elsewhere than the track)."""
    laps = records("laps")
    starts = {
        (str(lap["driver_number"]), lap["lap_number"]): session_seconds(lap["date_start"]) for lap in laps
    }
    pitted = {
        (str(lap["driver_number"]), lap["lap_number"] - k)
        for lap in laps
        if lap["is_pit_out_lap"]
        for k in (0, 1)
    }
    checked = 0
    for row in streamed["gaps"]:
        car, t = row["DriverNumber"], row["SessionTime"]
        lap = max((n for (d, n), start in starts.items() if d == car and start <= t), default=None)
        if lap is None or (car, lap) in pitted:
            continue
        if abs(t - starts[(car, lap)]) < 5 or abs(t - starts.get((car, lap + 1), math.inf)) < 5:
            continue
        assert row["LapNumber"] == lap, row
        checked += 1
    assert checked > 800
    leaders = [r for r in streamed["gaps"] if r["PositionByDistance"] == 1]
    assert leaders and all(r["GapToLeader"] == 0.0 for r in leaders)
