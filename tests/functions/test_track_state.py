"""A live session's track (``functions/track_state.py``) and the held track-gap inputs
(``functions/features/track_hold.py``) on recorded real data: the OpenF1 records of the 2023 Las
Vegas GP in ``tests/fixtures/openf1_session`` (positions of cars 1, 11, 16 and 55 for the first 30
minutes), normalised as the live poller publishes them and put in the order they reach the stream
(a lap at its end). The stints file is the session's final one; a lap's stint depends only on
stints that had started by then, which the poller has when it publishes the lap.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratx.functions import catalog, ingest, openf1, schemas, track_state
from stratx.functions.features import track_gaps as tg
from stratx.functions.features import track_hold as hold
from stratx.functions.features.track_map import load_track_maps
from stratx.functions.features.track_progress import from_race_track, on_clock, session_track
from stratx.functions.racedata import RaceData
from tests.conftest import DATA_DIR

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "openf1_session"
MAPS = load_track_maps(DATA_DIR / "circuits")
LIGHTS_OUT = 245.009  # s after the session's date_start (lap 1 date_start)
FIRST_LAP_DONE = 351.039  # car 1 completes lap 1
Event = tuple[str, dict[str, Any]]


def records(endpoint: str) -> list[dict[str, Any]]:
    with gzip.open(FIXTURE / f"{endpoint}.jsonl.gz", "rt") as fh:
        return [json.loads(line) for line in fh]


@functools.cache
def stream_events() -> list[Event]:
    """(kind, JSON-mode record) in stream order: SessionInfo, then laps and positions by event time."""
    session, drivers = records("sessions")[0], records("drivers")
    ctx = openf1.session_context(session, drivers)
    assert not isinstance(ctx, ingest.Rejected)
    out = [openf1.session_info(session, ctx, 0, records("meetings")[0])]
    out += openf1.normalise_laps(records("laps"), ctx, 1, records("stints"))
    out += [openf1.normalise_location(r, ctx, i) for i, r in enumerate(records("location"))]
    stream: list[Event] = []
    for raw in out:  # the poller dead-letters what is rejected (the unfinished laps of retired cars)
        checked = raw if isinstance(raw, ingest.Rejected) else ingest.validate(raw)
        if not isinstance(raw, ingest.Rejected) and not isinstance(checked, ingest.Rejected):
            stream.append((track_state.KINDS[raw.topic.name], checked.model_dump(mode="json")))
    assert len(stream) > 28_000
    return sorted(stream, key=lambda e: (e[0] != track_state.SESSION_INFO, e[1]["SessionTime"]))


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return stream_events()


def fold(events: list[Event], maps: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index of the event that gave it, record) for every RaceTrack record of the fold."""
    state = None
    for i, (kind, record) in enumerate(events):
        state, out = track_state.track_step(state, kind, record, maps)
        for r in out:
            yield i, r


# ------------------------------------------------------------------ the track record
def test_a_bundled_circuit_gets_its_map_and_the_start_when_the_first_car_completes_lap_1(
    events: list[Event],
) -> None:
    ((i, track),) = list(fold(events, MAPS))
    schemas.RaceTrack.model_validate(track)
    assert events[i][0] == track_state.LAPS and events[i][1]["LapNumber"] == 1
    assert track["SessionTime"] == pytest.approx(FIRST_LAP_DONE) and track["MapSource"] == "bundled"
    assert track["StartTime"] == pytest.approx(LIGHTS_OUT)
    assert tg.TrackMap.from_json(track["Map"]) == MAPS["las_vegas"]
    assert track["T0Date"] == "2023-11-19T06:00:00Z" and len(track["Drivers"]) == 20


def test_it_uses_nothing_the_stream_had_not_shown_yet(events: list[Event]) -> None:
    """The record is the same when the events after it never come (a fold over the prefix)."""
    for maps in (MAPS, {}):
        ((i, track),) = list(fold(events, maps))
        assert list(fold(events[: i + 1], maps)) == [(i, track)]
        assert track["SessionTime"] == events[i][1]["SessionTime"]


def test_without_a_bundled_map_the_sessions_own_clean_lap_gives_one(events: list[Event]) -> None:
    ((_, track),) = list(fold(events, {}))
    built = tg.TrackMap.from_json(track["Map"])
    bundled = MAPS["las_vegas"]
    # car 1's lap 2 (its laps 1 and 3 on the same stint), ready when lap 3 comes in at 594 s
    assert track["MapSource"] == "session" and track["SessionTime"] == pytest.approx(594.07)
    assert (built.source["DriverNumber"], built.source["LapNumber"]) == ("1", 2)
    assert abs(built.length / bundled.length - 1) < 0.001  # 6151.8 m vs 6152.6 m
    # the two maps put every position of car 16 over laps 3-8 at the same lap distance (2.7 m: the
    # two laps crossed the line 2.7 m apart), each within 0.6 m of its map
    s1 = s2 = None
    for _, p in (e for e in events if e[0] == track_state.CAR_POSITION and e[1]["DriverNumber"] == "16"):
        if 600 < p["SessionTime"] < 1500 and (p["X"] or p["Y"]):
            s1, off = tg.project(built, p["X"], p["Y"], s1)
            s2, _ = tg.project(bundled, p["X"], p["Y"], s2)
            apart = (s1 - s2 * built.length / bundled.length + built.length / 2) % built.length
            assert abs(apart - built.length / 2) < 3.0 and off < 1.5


def test_out_laps_and_in_laps_give_no_map(events: list[Event]) -> None:
    """Car 11 pitted at the end of lap 1 (its lap 2 is an out-lap, stint 2; no /pit records in the
    fixture to say so): its first map lap is lap 3, ready when its lap 4 comes in."""
    only_11 = [e for e in events if e[0] == track_state.SESSION_INFO or e[1].get("DriverNumber") == "11"]
    ((_, track),) = list(fold(only_11, {}))
    assert (track["Map"]["source"]["DriverNumber"], track["Map"]["source"]["LapNumber"]) == ("11", 3)
    assert track["SessionTime"] == pytest.approx(799.9, abs=0.1)


def test_a_session_without_info_start_or_map_gets_no_record(events: list[Event]) -> None:
    no_info = [e for e in events if e[0] != track_state.SESSION_INFO]
    assert list(fold(no_info, MAPS)) == []
    no_lap_1 = [e for e in events if e[0] != track_state.LAPS or e[1]["LapNumber"] > 1]
    assert list(fold(no_lap_1, MAPS)) == []
    # positions end at 480 s, before any car has completed lap 2 (484 s): no lap is covered
    until_480 = [e for e in events if e[0] != track_state.CAR_POSITION or e[1]["SessionTime"] < 480]
    assert list(fold(until_480, {})) == []


def test_seeding_after_a_restart_sends_the_record_with_the_next_event(events: list[Event]) -> None:
    (i, track), *_ = fold(events, MAPS)
    state = None
    for kind, record in events[: i + 1]:
        state, out = track_state.track_step(state, kind, record, MAPS, emit=False)
        assert out == []
    state, out = track_state.track_step(state, *events[i + 1], MAPS)
    assert out == [track]


def test_a_lap_that_cannot_make_a_map_says_why() -> None:
    """SYNTHETIC positions: a circle of 6.28 km driven in 100 s, sampled 4 times a second."""
    times = [t / 4 for t in range(0, 440)]
    xs = [10_000.0 * math.cos(t / 100 * 2 * math.pi) for t in times]
    ys = [10_000.0 * math.sin(t / 100 * 2 * math.pi) for t in times]
    lap = track_state.built_map("C", times, xs, ys, 0.5, 100.5, {})
    assert isinstance(lap, tg.TrackMap) and abs(lap.length - 2 * math.pi * 1000) < 1
    assert "reach both line crossings" in str(track_state.built_map("C", times, xs, ys, -1.0, 100.5, {}))
    kept = [i for i, t in enumerate(times) if not 40 < t < 45]
    holed = [times[i] for i in kept], [xs[i] for i in kept], [ys[i] for i in kept]
    assert "5.0 s hole" in str(track_state.built_map("C", *holed, 0.5, 100.5, {}))
    assert "does not close" in str(track_state.built_map("C", times, xs, ys, 0.5, 60.5, {}))
    small = [x / 10 for x in xs], [y / 10 for y in ys]
    assert "implausible lap length 628 m" in str(track_state.built_map("C", times, *small, 0.5, 100.5, {}))


# ------------------------------------------------------------------ clocks
def test_a_bundled_races_track_is_not_applied_to_the_live_session_of_the_same_key(
    events: list[Event], las_vegas: RaceData
) -> None:
    replay = session_track(las_vegas, MAPS["las_vegas"])
    live = next(r for k, r in events if k == track_state.CAR_POSITION)
    assert replay.session_key == live["SessionKey"] == 9189
    assert not on_clock(replay, live)  # FastF1's t0 is 598 s before the OpenF1 session start
    replayed = next(r.payload for r in ingest.iter_records(las_vegas) if r.topic is catalog.CAR_POSITION)
    assert on_clock(replay, {**replayed, "Date": replayed["Date"].isoformat()})
    ((_, track),) = list(fold(events, MAPS))
    assert on_clock(from_race_track(track), live)


# ------------------------------------------------------------------ holding inputs
def samples_of(events: list[Event], car: str) -> list[dict[str, Any]]:
    """A car's positions as the progress app reads them (python mode: Date a datetime)."""
    return [
        schemas.CarPosition.model_validate(r).model_dump()
        for k, r in events
        if k == track_state.CAR_POSITION and r["DriverNumber"] == car
    ]


def test_held_positions_released_give_what_a_known_track_gives(events: list[Event]) -> None:
    ((_, track),) = list(fold(events, MAPS))
    session = from_race_track(track)
    samples = samples_of(events, "16")
    known, rejected = tg.offline_progress(samples, session)
    assert rejected == 0
    arrived = [s for s in samples if s["SessionTime"] <= track["SessionTime"]]  # before the track came
    state: dict[str, Any] | None = None
    for sample in arrived:
        state, items = hold.hold_sample(state, sample)
        assert items == []
        state = json.loads(json.dumps(state))  # as Quix state keeps it
    assert hold.holding(state) and state is not None and len(state[hold.HELD]) == len(arrived)
    progress, points = hold.release_samples(state, session)
    for sample in samples[len(arrived) :]:
        progress, more = tg.progress_step(progress, sample, session)
        points += more
    assert points == known["16"]


def test_holding_rejects_repeats_and_keeps_the_last_hold_s(events: list[Event]) -> None:
    samples = samples_of(events, "1")[::10]
    state, _ = hold.hold_sample(None, samples[0])
    assert hold.hold_sample(state, samples[0])[1][0][tg.REJECTED].startswith("duplicate")
    state, _ = hold.hold_sample(state, samples[2])
    assert hold.hold_sample(state, samples[1])[1][0][tg.REJECTED].startswith("out of order")
    for sample in samples:
        state, _ = hold.hold_sample(state, sample) if sample["Seq"] > samples[2]["Seq"] else (state, [])
    held = state[hold.HELD]
    assert held[-1][1] - held[0][1] <= hold.HOLD_S < samples[-1]["SessionTime"] - samples[0]["SessionTime"]


def test_held_progress_points_released_give_what_a_known_track_gives(events: list[Event]) -> None:
    ((_, track),) = list(fold(events, MAPS))
    session = dataclasses.replace(from_race_track(track), drivers=("1", "11", "16", "55"))
    samples = [s for car in session.drivers for s in samples_of(events, car) if s["SessionTime"] < 1000]
    points, _ = tg.offline_progress(samples, session)
    merged = [json.loads(json.dumps(p)) for p in tg.merged_points(points)]
    want, reasons = tg.run_gaps(merged, session, stale_s=None)
    assert reasons == [] and len(want) > 4 * 600
    state: dict[str, Any] | None = None
    cut = len(merged) // 3
    for point in sorted(merged[:cut], key=lambda p: (p["DriverNumber"], p["SessionTime"])):  # any order
        state = hold.hold_point(state, point)
    gaps, rows = hold.release_points(state, session, stale_s=None)
    for point in merged[cut:]:
        gaps, more = tg.gap_step(gaps, point, session, stale_s=None)
        rows += more
    assert rows == want
