"""Continuous track gaps: maps, progress and session gaps on the bundled real races (no broker)."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stratx.functions import ingest
from stratx.functions.features import track_gaps as tg
from stratx.functions.features.laps import build_lap_features
from stratx.functions.racedata import RaceData
from stratx.quix_apps.track_gaps import CarProgress, TrackGap
from tests.conftest import DATA_DIR

CIRCUITS = DATA_DIR / "circuits"
FOUR = {"1", "14", "44", "81"}  # Verstappen (winner), Alonso, Hamilton, Piastri (retired lap 13)


pytestmark = pytest.mark.slow  # a whole race's position samples


@pytest.fixture(scope="module")
def sakhir() -> tg.TrackMap:
    track = tg.load_track_map(CIRCUITS, "Sakhir")
    assert track is not None
    return track


@pytest.fixture(scope="module")
def session(bahrain: RaceData, sakhir: tg.TrackMap) -> tg.SessionTrack:
    return tg.session_track(bahrain, sakhir)


@pytest.fixture(scope="module")
def gaps(bahrain: RaceData, sakhir: tg.TrackMap) -> pd.DataFrame:
    """Every driver of 2023 Bahrain, offline (about 6 s)."""
    return tg.offline_track_gaps(bahrain, sakhir)


@pytest.fixture(scope="module")
def four_points(bahrain: RaceData, session: tg.SessionTrack) -> dict[str, list[dict[str, Any]]]:
    points, rejected = tg.offline_progress(tg.position_samples(bahrain.filter_drivers(FOUR)), session)
    assert rejected == 0
    return points


# --- maps -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("circuit", "km"), [("Sakhir", 5.412), ("Las Vegas", 6.201)]
)  # official circuit lengths, 2023
def test_shipped_map_length_is_the_circuit_length(circuit: str, km: float) -> None:
    track = tg.load_track_map(CIRCUITS, circuit)
    assert track is not None
    assert 200 <= len(track.x) <= 600
    # the racing line cuts corners: measured 5.335 km (-1.4 %) and 6.153 km (-0.8 %)
    assert abs(track.length / 1000 / km - 1) < 0.03
    assert track.s[0] == 0 and all(b > a for a, b in zip(track.s, track.s[1:], strict=False))


def test_shipped_maps_are_what_the_documented_command_builds(bahrain: RaceData, las_vegas: RaceData) -> None:
    for race in (bahrain, las_vegas):
        built = tg.build_track_map(race)
        assert tg.load_track_map(CIRCUITS, race.meta.circuit) == tg.TrackMap.from_json(
            json.loads(json.dumps(built.to_json()))
        )


def test_circuit_without_map_gives_no_gaps_and_says_why(las_vegas: RaceData) -> None:
    assert tg.load_track_map(CIRCUITS, "Monaco") is None
    frame = tg.offline_track_gaps(las_vegas, None)
    assert frame.empty and "no track map" in frame.attrs["reason"]


def test_project_finds_the_lap_distance(sakhir: tg.TrackMap) -> None:
    for i in range(0, len(sakhir.x), 7):
        s, off = tg.project(sakhir, sakhir.x[i], sakhir.y[i])
        assert off < 1e-9 and math.isclose(s, sakhir.s[i], abs_tol=1e-6)
        # with a hint from the previous point: same answer
        assert tg.project(sakhir, sakhir.x[i], sakhir.y[i], sakhir.s[i - 1])[0] == pytest.approx(s)
    # 5 m sideways from the middle of a segment
    i = 50
    mx, my = (sakhir.x[i] + sakhir.x[i + 1]) / 2, (sakhir.y[i] + sakhir.y[i + 1]) / 2
    dx, dy = sakhir.x[i + 1] - sakhir.x[i], sakhir.y[i + 1] - sakhir.y[i]
    norm = math.hypot(dx, dy)
    s, off = tg.project(sakhir, mx - dy / norm * 50, my + dx / norm * 50, sakhir.s[i])
    assert off == pytest.approx(5.0, abs=0.01)
    assert s == pytest.approx((sakhir.s[i] + sakhir.s[i + 1]) / 2, abs=0.01)
    # a wrong hint (other side of the track) falls back to the full search
    assert tg.project(sakhir, mx, my, sakhir.s[i] + 2500)[0] == pytest.approx(s, abs=0.01)


# --- progress ---------------------------------------------------------------------------------


def test_distance_at_each_line_crossing_is_whole_laps(
    four_points: dict[str, list[dict[str, Any]]], bahrain: RaceData, sakhir: tg.TrackMap
) -> None:
    """D at a lap's end (FastF1 Time) is LapNumber * L: measured median 1-2 m, max 26 m."""
    laps = bahrain.table("laps")
    for drv, points in four_points.items():
        t = np.array([p["SessionTime"] for p in points])
        d = np.array([p["DistanceTotal"] for p in points])
        assert (np.diff(d) >= 0).all() and (np.diff(np.floor(t)) >= 1).all()  # monotone, <= 1 per s
        own = laps[laps.DriverNumber == drv]
        err = np.abs(np.interp(own.Time, t, d) - own.LapNumber * sakhir.length)
        assert np.median(err) < 5 and err.max() < 40, drv  # 40 m ~ 0.5 s at speed


def test_progress_rejects_duplicates_and_late_samples(bahrain: RaceData, session: tg.SessionTrack) -> None:
    samples = [s for s in tg.position_samples(bahrain.filter_drivers({"1"})) if s["SessionTime"] > 4000][:20]
    state, _ = tg.progress_step(None, samples[0], session)
    state, _ = tg.progress_step(state, samples[5], session)
    same, items = tg.progress_step(state, samples[5], session)
    assert same == state and items[0][tg.REJECTED].startswith("duplicate")
    same, items = tg.progress_step(state, samples[3], session)
    assert same == state and items[0][tg.REJECTED].startswith("out of order")


def test_progress_state_survives_json_between_every_sample(
    bahrain: RaceData, session: tg.SessionTrack
) -> None:
    samples = [
        s for s in tg.position_samples(bahrain.filter_drivers({"44"})) if 3700 < s["SessionTime"] < 4200
    ]
    direct, restored = [], []
    a: dict[str, Any] | None = None
    b: dict[str, Any] | None = None
    for sample in samples:
        a, items = tg.progress_step(a, sample, session)
        direct.extend(items)
        b, items = tg.progress_step(json.loads(json.dumps(b)) if b else None, sample, session)
        restored.extend(items)
    assert direct == restored and len(direct) > 400
    for point in direct:
        CarProgress.model_validate(point)


# --- session gaps -----------------------------------------------------------------------------


def test_gaps_at_the_line_equal_the_lap_crossing_gaps(gaps: pd.DataFrame, bahrain: RaceData) -> None:
    """Green-flag laps 2-12: gap at the grid time nearest each line crossing vs laps features."""
    events = [json.loads(ingest.encode(r)) for r in ingest.table_records(bahrain, "laps")]
    features, _ = build_lap_features(events)
    by_key = gaps.set_index(["DriverNumber", "SessionTime"])
    leader_err, ahead_err = [], []
    for f in features:
        if not 2 <= f["LapNumber"] <= 12:
            continue
        row = by_key.loc[(f["DriverNumber"], float(round(f["SessionTime"])))]
        leader_err.append(abs(row.GapToLeader - f["GapToLeader"]))
        if f["IntervalAhead"] is not None:
            ahead_err.append(abs(row.GapAhead - f["IntervalAhead"]))
    leader, ahead = np.array(leader_err), np.array(ahead_err)
    assert len(leader) > 200
    # measured: GapToLeader median 0.03 s, 90 % 0.11 s; GapAhead median 0.04 s
    assert np.median(leader) < 0.1 and np.quantile(leader, 0.9) < 0.3
    assert np.median(ahead) < 0.1 and np.quantile(ahead, 0.8) < 0.3


def test_gap_rows_are_well_formed(gaps: pd.DataFrame, bahrain: RaceData) -> None:
    assert gaps.attrs["rejected"] == 0
    assert (gaps.SessionTime % 1 == 0).all()
    assert not gaps.duplicated(["DriverNumber", "SessionTime"]).any()
    moving = gaps[~gaps.Stopped]
    leaders = moving[moving.PositionByDistance == 1]
    assert (leaders.GapToLeader == 0).all() and leaders.CarAhead.isna().all()
    assert (moving.GapAhead.dropna() >= 0).all() and (moving.GapToLeader.dropna() >= 0).all()
    assert moving.GapToLeader.notna().mean() > 0.99  # None only for cars more than HISTORY_S behind
    # 2023 Bahrain: Verstappen led by distance at the end of lap 30
    laps = bahrain.table("laps")
    t = float(math.ceil(laps[(laps.DriverNumber == "1") & (laps.LapNumber == 30)].Time.iloc[0]))
    at = gaps[(gaps.SessionTime == t) & (gaps.PositionByDistance == 1)]
    assert at.DriverNumber.tolist() == ["1"]
    for row in gaps.iloc[::997].to_dict("records"):
        TrackGap.model_validate(
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        )


def test_retired_car_is_stopped_and_not_a_car_ahead(gaps: pd.DataFrame) -> None:
    piastri = gaps[gaps.DriverNumber == "81"]
    late = piastri[piastri.SessionTime > 5400]  # retired on lap 13 (about 5100 s)
    assert len(late) > 100 and late.Stopped.all() and late.PositionByDistance.isna().all()
    assert "81" not in set(gaps[gaps.SessionTime > 5400].CarAhead.dropna())


def _interleave(points: dict[str, list[dict[str, Any]]], rng: random.Random, skew_s: float | None) -> list:
    """A random merge of the per-driver streams (each kept in order), at most ``skew_s`` apart."""
    queues = {d: list(ps) for d, ps in points.items()}
    heads = dict.fromkeys(queues, 0)
    out = []
    while any(heads[d] < len(queues[d]) for d in queues):
        open_ = [d for d in queues if heads[d] < len(queues[d])]
        if skew_s is not None:
            low = min(queues[d][heads[d]]["SessionTime"] for d in open_)
            open_ = [d for d in open_ if queues[d][heads[d]]["SessionTime"] <= low + skew_s]
        d = rng.choice(open_)
        out.append(queues[d][heads[d]])
        heads[d] += 1
    return out


def test_gaps_do_not_depend_on_how_streams_interleave(
    four_points: dict[str, list[dict[str, Any]]], session: tg.SessionTrack
) -> None:
    four = tg.SessionTrack(session.session_key, session.track, session.start_time, tuple(sorted(FOUR)))
    window = {
        d: [p for p in ps if p["SessionTime"] < session.start_time + 900] for d, ps in four_points.items()
    }
    want, reasons = tg.run_gaps(tg.merged_points(window), four, stale_s=None)
    assert reasons == [] and len(want) > 3000
    rng = random.Random(7)
    for _ in range(3):  # any interleaving, no staleness rule
        assert tg.run_gaps(_interleave(window, rng, None), four, stale_s=None) == (want, [])
    for _ in range(3):  # live-like: streams within 30 s of each other, the default 60 s rule
        assert tg.run_gaps(_interleave(window, rng, 30.0), four) == (want, [])


def test_duplicate_and_late_points_are_rejected(
    four_points: dict[str, list[dict[str, Any]]], session: tg.SessionTrack
) -> None:
    four = tg.SessionTrack(session.session_key, session.track, session.start_time, tuple(sorted(FOUR)))
    points = tg.merged_points({d: ps[:100] for d, ps in four_points.items()})
    want, _ = tg.run_gaps(points, four)
    noisy = [*points[:200], points[199], points[10], *points[200:]]  # redelivery, replay
    rows, reasons = tg.run_gaps(noisy, four)
    assert rows == want
    assert len(reasons) == 2 and reasons[0].startswith("duplicate") and reasons[1].startswith("out of order")


def test_a_silent_driver_stops_holding_the_watermark_after_60_s(
    four_points: dict[str, list[dict[str, Any]]], session: tg.SessionTrack
) -> None:
    four = tg.SessionTrack(session.session_key, session.track, session.start_time, tuple(sorted(FOUR)))
    cut = session.start_time + 200
    silent = {d: [p for p in ps if d != "44" or p["SessionTime"] < cut] for d, ps in four_points.items()}
    silent = {d: [p for p in ps if p["SessionTime"] < session.start_time + 400] for d, ps in silent.items()}
    held, _ = tg.run_gaps(tg.merged_points(silent), four, stale_s=None)
    assert max(r["SessionTime"] for r in held) < cut  # the watermark waits for Hamilton
    rows, _ = tg.run_gaps(tg.merged_points(silent), four)
    assert max(r["SessionTime"] for r in rows) > session.start_time + 390
    assert max(r["SessionTime"] for r in rows if r["DriverNumber"] == "44") < cut


class FakeState:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


def test_app_callbacks_dead_letter_bad_records_and_skip_mapless_sessions(
    bahrain: RaceData, session: tg.SessionTrack
) -> None:
    from stratx.quix_apps import track_gaps as apps
    from stratx.quix_apps.kit.wire import parse

    process = apps.progress_callback({session.session_key: session})
    state = FakeState()
    samples = tg.position_samples(bahrain.filter_drivers({"1"}))
    sample = json.loads(json.dumps(next(s for s in samples if s["SessionTime"] > 4000), default=str))
    assert process(parse(b"nope"), "7953:1", 0, None, state)[0]["DeadLetter"]["Stage"] == "track_gaps"
    bad = process({**sample, "DriverNumber": "x"}, "7953:x", 0, None, state)
    assert "CarPosition schema" in bad[0]["DeadLetter"]["Reason"]
    assert process({**sample, "SessionKey": 1}, "1:1", 0, None, state) == []  # no map: no gaps
    assert process(sample, "7953:1", 0, None, state)[0]["Progress"]["OnTrack"]
    again = process(sample, "7953:1", 0, None, state)  # redelivered
    assert again[0]["DeadLetter"]["Reason"].startswith("duplicate")
    gap = apps.gap_callback({session.session_key: session})
    letter = gap({"SessionKey": 7953, "DriverNumber": "1"}, FakeState())[0]["DeadLetter"]
    assert letter["Reason"].startswith("CarProgress schema")
