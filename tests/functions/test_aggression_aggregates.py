"""LapAggression from the bundled OpenF1 per-lap aggregates (fallback for races without car samples)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from stratx.bentos.lifecycle import feature_build, sources
from stratx.functions.features.aggression import (
    aggression_from_aggregates,
    is_rejected,
    offline_aggregates_aggression,
    offline_lap_aggression,
)
from stratx.functions.features.telemetry import offline_windows
from stratx.functions.schemas import LapAggression
from tests.conftest import DATA_DIR

AGGREGATES = DATA_DIR / "corpus" / "openf1_lap_aggregates.parquet"


pytestmark = pytest.mark.slow  # a whole race's telemetry windows


@pytest.fixture(scope="module")
def bahrain() -> tuple[list[dict[str, object]], pd.DataFrame, pd.DataFrame]:
    race = sources.load_bundled(DATA_DIR / "races" / "2023_bahrain_grand_prix_race")
    laps, _ = feature_build.lap_feature_rows(race)
    gold = pd.read_parquet(AGGREGATES)
    rows = gold[(gold.season == 2023) & (gold.meeting_name == "Bahrain Grand Prix")]
    return laps, rows, offline_lap_aggression(offline_windows(race), laps)


def test_bundled_subset_is_small_and_covers_the_corpus_races() -> None:
    assert AGGREGATES.stat().st_size < 2_000_000
    gold = pd.read_parquet(AGGREGATES)
    corpus = pd.read_parquet(DATA_DIR / "corpus" / "fastf1_exports" / "laps.parquet")
    events = set(map(tuple, corpus[["Year", "EventName"]].drop_duplicates().to_numpy().tolist()))
    covered = set(map(tuple, gold[["season", "meeting_name"]].drop_duplicates().to_numpy().tolist()))
    assert covered <= events
    assert covered == {e for e in events if e[0] >= 2023}  # OpenF1 starts in 2023; all corpus 2023-24 races
    assert not gold.duplicated(["season", "meeting_name", "driver_number", "lap_number"]).any()
    # fractions are 0-1 in the source (not %), throttle is % (one row carries the invalid code 104)
    assert gold.full_throttle_pct.between(0, 1).all() and gold.brake_pct.between(0, 1).all()
    assert (gold.avg_throttle > 100).sum() == 1


def test_mapping_on_real_rows(bahrain: tuple[list[dict[str, object]], pd.DataFrame, pd.DataFrame]) -> None:
    laps, rows, _ = bahrain
    out = aggression_from_aggregates(rows, laps)
    records = {(r["DriverNumber"], r["LapNumber"]): r for r in out if not is_rejected(r)}
    # hand-checked against the parquet: 2023 Bahrain, lap 10 of drivers 1 and 44
    ver = records[("1", 10)]
    assert ver["Samples"] == 356 and ver["BrakeEvents"] == 8 and ver["GearChanges"] == 38
    assert ver["SpeedMax"] == 303
    assert ver["ThrottleMean"] == pytest.approx(61.235955, abs=1e-5)
    assert ver["FullThrottleShare"] == pytest.approx(0.460674, abs=1e-5)
    assert ver["BrakeShare"] == pytest.approx(0.199438, abs=1e-5)
    ham = records[("44", 10)]
    assert (ham["Samples"], ham["BrakeEvents"], ham["GearChanges"], ham["SpeedMax"]) == (363, 9, 54, 310)
    assert ham["FullThrottleShare"] == pytest.approx(0.443526, abs=1e-5)
    assert ham["BrakeShare"] == pytest.approx(0.198347, abs=1e-5)
    for r in (ver, ham):
        LapAggression.model_validate(r)
        assert r["SessionKey"] == 7953 and r["Windows"] == 0
        assert r["ThrottleBrakeOverlapShare"] is None and r["DRSOpenShare"] is None
        assert r["DecelMean"] is None and r["UpshiftRPMMean"] is None
    # lap interval from the LapFeatures records: lap 10 starts where lap 9 ends
    lap9 = next(x for x in laps if x["DriverNumber"] == "1" and x["LapNumber"] == 9)
    lap10 = next(x for x in laps if x["DriverNumber"] == "1" and x["LapNumber"] == 10)
    assert ver["LapStartTime"] == lap9["SessionTime"] and ver["SessionTime"] == lap10["SessionTime"]
    assert ver["Date"] == lap10["Date"]


def test_samples_and_aggregates_agree(
    bahrain: tuple[list[dict[str, object]], pd.DataFrame, pd.DataFrame],
) -> None:
    laps, rows, samples = bahrain
    agg = offline_aggregates_aggression(rows, laps)
    assert agg.attrs["rejected"] == 0 and len(agg) == len(rows) == 1055
    both = samples.merge(agg, on=["DriverNumber", "LapNumber"], suffixes=("_s", "_a"))
    assert len(both) == 1055  # every aggregate lap is a samples lap (samples have 1056)
    x, y = both.FullThrottleShare_s, both.FullThrottleShare_a
    assert np.corrcoef(x, y)[0, 1] > 0.95  # measured 0.979
    assert (x - y).abs().mean() < 0.02  # measured 0.0099
    b_s, b_a = both.BrakeShare_s, both.BrakeShare_a
    assert np.corrcoef(b_s, b_a)[0, 1] > 0.95 and (b_s - b_a).abs().mean() < 0.01  # 0.971, 0.0042
    assert (both.SpeedMax_s - both.SpeedMax_a).abs().mean() < 1  # 0.15 km/h


def test_skips_are_counted(bahrain: tuple[list[dict[str, object]], pd.DataFrame, pd.DataFrame]) -> None:
    laps, rows, _ = bahrain
    bad = rows.head(3).copy()
    bad.loc[bad.index[0], "has_telemetry"] = False
    bad.loc[bad.index[1], "lap_number"] = 999  # no such lap
    bad.loc[bad.index[2], "avg_throttle"] = 104.0  # the feed's invalid-value code
    frame = offline_aggregates_aggression(bad, laps)
    assert len(frame) == 0 and frame.attrs["rejected"] == 3
    assert frame.attrs["skipped"] == {"no telemetry": 1, "no lap": 1, "invalid": 1}
    # standing-start lap 1 without LapTime has no start: skipped like the samples path skips it
    no_time = [dict(x, LapTime=None) if x["LapNumber"] == 1 else x for x in laps]
    first = rows[rows.lap_number == 1]
    out = aggression_from_aggregates(first, no_time)
    assert all(is_rejected(x) for x in out) and len(out) == len(first)
    assert not any(math.isnan(v) for v in frame.select_dtypes("number").to_numpy().ravel())
