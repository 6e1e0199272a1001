"""The input rule (``functions/models/inputs.py``) on real lap-feature rows: the bundled races, the
FastF1 exports, the unseen races of ``data/corpus/lap_exports`` and a live OpenF1 session before
its stint data. Each need is checked against what the recipe itself does with the row (the
anchor, the anomaly statistic, the tyre-life default), so the rule says ``unavailable`` exactly
where the recipe's answer would be NaN or made from a default.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stratx.bentos.lifecycle import feature_build
from stratx.bentos.lifecycle.sources import load_exports
from stratx.functions import ingest, openf1, schemas
from stratx.functions.features import families
from stratx.functions.features.laps import build_lap_features
from stratx.functions.models import anomaly_rows, anomaly_scoring, inputs, lap_time, registry
from stratx.functions.models.inputs import missing
from stratx.functions.prediction_requests import new_cache, request_step, screen
from stratx.functions.racedata import RaceData
from tests.conftest import DATA_DIR

OPENF1_SESSION = Path(__file__).resolve().parents[2] / "fixtures" / "openf1_session"
LAP_MODELS = ("lap_time", "tyre_deg", "pit_window", "anomaly")  # scored on the lap row itself


@functools.cache
def exports(folder: str) -> list[RaceData]:
    return load_exports(DATA_DIR / "corpus" / folder)


@functools.cache
def export_rows(folder: str, year: int, event: str) -> pd.DataFrame:
    """LapFeatures rows of one race of an exports folder, as the stream builds them."""
    races = [r for r in exports(folder) if (r.meta.year, r.meta.event_name) == (year, event)]
    assert len(races) == 1
    rows, _ = feature_build.lap_feature_rows(races[0])
    return pd.DataFrame(rows)


def records(endpoint: str) -> list[dict[str, Any]]:
    with gzip.open(OPENF1_SESSION / f"{endpoint}.jsonl.gz", "rt") as fh:
        return [json.loads(line) for line in fh]


def openf1_context() -> openf1.SessionContext:
    ctx = openf1.session_context(records("sessions")[0], records("drivers"))
    assert not isinstance(ctx, ingest.Rejected)
    return ctx


def openf1_info() -> dict[str, Any]:
    """The SessionInfo record the live poller publishes for that session (it counts no tables)."""
    raw = openf1.session_info(records("sessions")[0], openf1_context(), 0, records("meetings")[0])
    checked = ingest.validate(raw) if not isinstance(raw, ingest.Rejected) else raw
    assert not isinstance(checked, ingest.Rejected)
    return checked.model_dump(mode="json")


@functools.cache
def openf1_rows(with_stints: bool) -> list[dict[str, Any]]:
    """The real OpenF1 laps of 2023 Las Vegas (session 9189) as LapFeatures records, normalised as the
    live poller does; without stints: a live session before its ``/stints`` records came."""
    ctx = openf1_context()
    stints = records("stints") if with_stints else []
    laps = []
    for raw in openf1.normalise_laps(records("laps"), ctx, 1, stints):
        checked = raw if isinstance(raw, ingest.Rejected) else ingest.validate(raw)
        if not isinstance(checked, ingest.Rejected):
            laps.append(checked.model_dump(mode="json"))
    rows, _ = build_lap_features(laps)
    return [schemas.LapFeatures.model_validate(r).model_dump(mode="json") for r in rows]


def flagged(frame: pd.DataFrame, key: str) -> pd.Series:
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return pd.Series([missing(key, r) is not None for r in records], index=frame.index)


def check_against_the_recipes(frame: pd.DataFrame) -> dict[str, int]:
    """Every lap model's rule agrees with its recipe on ``frame``; the count it withholds per model."""
    counts = {}
    no_anchor = lap_time.anchor(frame).isna()  # the recipe's prediction is anchor + correction
    assert flagged(frame, "lap_time").equals(no_anchor)
    no_life = frame["TyreLife"].astype(float).isna()  # FalloffScore and the hazard read it
    assert flagged(frame, "tyre_deg").equals(no_life) and flagged(frame, "pit_window").equals(no_life)
    signals = frame[list(anomaly_rows.LAP_SIGNALS)].astype(float)
    stat, _ = anomaly_scoring.statistic(signals)  # any finite deficits: NaN only for too few signals
    assert flagged(frame, "anomaly").equals(pd.Series(np.isnan(stat), index=frame.index))
    for key in LAP_MODELS:
        counts[key] = int(flagged(frame, key).sum())
    return counts


def test_every_model_has_needs_and_every_need_names_a_feature_of_its_recipe() -> None:
    assert set(inputs.needs()) == set(registry.MODEL_KEYS)
    for needs in inputs.needs().values():
        assert needs and all(n.fields and 1 <= n.at_least <= len(n.fields) for n in needs)
    with pytest.raises(ValueError, match="not among the recipe's features"):
        inputs._need(lap_time.SERVICE_FEATURES, ("ThrottleMean",), 1, "?")
    with pytest.raises(ValueError, match="unknown model"):
        missing("pit_stop", {})


def test_no_car_telemetry_makes_no_model_unavailable() -> None:
    """The free OpenF1 feed has no car telemetry since the 2025 Dutch GP: no model needs it."""
    needed = {f for needs in inputs.needs().values() for n in needs for f in n.fields}
    assert not needed & set(families.AGGRESSION)
    assert not needed - set(schemas.LapFeatures.model_fields)  # lap fields only (pair rows: the car behind's)


def test_bundled_races_withhold_only_laps_without_a_lap_time_or_signals(
    las_vegas: RaceData, bahrain: RaceData
) -> None:
    # Las Vegas: FastF1's cache has no LapTime for lap 1 (it asks Ergast for it) nor, for most cars,
    # for laps 3-6 (safety car after lap 1; no clean lap yet either): 72 laps. Bahrain: every lap timed.
    for race, no_time in ((las_vegas, 72), (bahrain, 0)):
        frame = pd.DataFrame(feature_build.lap_feature_rows(race)[0])
        counts = check_against_the_recipes(frame)
        assert counts["tyre_deg"] == counts["pit_window"] == 0  # FastF1 timing has every stint
        assert counts["lap_time"] == no_time and counts["anomaly"] <= 4
        if no_time:
            assert flagged(frame, "lap_time")[frame["LapNumber"] == 1].all()
        pairs = [r for r in frame.to_dict("records") if r["PositionOnLap"] > 1]
        assert all(r["IntervalAhead"] is not None for r in pairs)  # the gap comes from the line crossings


@pytest.mark.parametrize(
    ("folder", "year", "event", "no_life"),
    [
        ("fastf1_exports", 2023, "Canadian Grand Prix", 35),
        ("fastf1_exports", 2023, "Dutch Grand Prix", 0),
        ("lap_exports", 2025, "Miami Grand Prix", 446),  # no stint data for every car's first stint
        ("lap_exports", 2026, "Barcelona Grand Prix", 21),  # compound known, tyre life not
    ],
)
def test_exports_without_timing_positions_or_race_control_lack_only_some_stint_data(
    folder: str, year: int, event: str, no_life: int
) -> None:
    frame = export_rows(folder, year, event)
    counts = check_against_the_recipes(frame)
    assert counts["tyre_deg"] == counts["pit_window"] == no_life
    assert counts["lap_time"] <= 25 and counts["anomaly"] <= 25
    reason = missing("tyre_deg", frame[frame["TyreLife"].isna()].iloc[0].to_dict()) if no_life else None
    assert no_life == 0 or (reason is not None and "tyre life" in reason)
    assert frame["IntervalAhead"][frame["PositionOnLap"] > 1].notna().all()


def test_a_live_session_before_its_stint_data_withholds_tyre_and_pit_answers_only() -> None:
    rows = openf1_rows(with_stints=False)
    assert len(rows) > 900 and all(r["TyreLife"] is None for r in rows)
    frame = pd.DataFrame(rows)
    counts = check_against_the_recipes(frame)
    assert counts["tyre_deg"] == counts["pit_window"] == len(rows)
    assert counts["lap_time"] == 0  # OpenF1 times lap 1 too
    assert counts["anomaly"] == 0  # 3 speed traps + LapTime (no SpeedFL in OpenF1)
    state, cache, withheld = None, new_cache(), []
    for row in sorted(rows, key=lambda r: r["SessionTime"])[:200]:
        state, requests = request_step(state, row, {"EventName": "Las Vegas Grand Prix"}, cache)
        send, held = screen(requests)
        assert "tyre_deg" not in send and "pit_window" not in send
        assert [reason for _, reason in held["tyre_deg"]] == [inputs.missing("tyre_deg", row)]
        assert all(missing(k, send[k][-1]) is None for k in send)
        withheld.append(held)
    assert any("overtake" not in h for h in withheld)  # the pairs have their gap


def test_with_its_stint_data_the_same_session_withholds_nothing() -> None:
    frame = pd.DataFrame(openf1_rows(with_stints=True))
    counts = check_against_the_recipes(frame)
    assert counts == {"lap_time": 0, "tyre_deg": 0, "pit_window": 0, "anomaly": 0}


def test_a_pair_without_the_gap_is_withheld_alone(las_vegas: RaceData) -> None:
    rows = sorted(feature_build.lap_feature_rows(las_vegas)[0], key=lambda r: r["SessionTime"])
    state, cache = None, new_cache()
    for row in rows:
        state, requests = request_step(state, row, None, cache)
        if requests.get("overtake"):
            break
    pair = requests["overtake"][0]
    assert missing("overtake", pair) is None
    stripped = {**requests, "overtake": [{**pair, "IntervalAhead": None}]}  # a feed without the gap (edited)
    send, held = screen(stripped)
    assert "overtake" not in send and held["overtake"] == [
        (stripped["overtake"][0], "no gap to the car ahead in this feed")
    ]
    assert set(send) == set(requests) - {"overtake"} - set(held)
    nan = {**pair, "IntervalAhead": math.nan}
    assert missing("overtake", nan) == "no gap to the car ahead in this feed"
