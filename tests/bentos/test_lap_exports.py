"""The unseen races of ``data/corpus/lap_exports`` (``bentos/lifecycle/lap_exports.py``): the
derived track status against the real table of a bundled race, and the shipped folder as
`stratx evaluate` / `stratx backtest` load it."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest

from stratx.bentos.lifecycle import evaluation, lap_exports, sources, training
from stratx.functions.models import base
from stratx.functions.settings import REPO_ROOT

DATA = REPO_ROOT / "data"
FOLDER = DATA / "corpus" / "lap_exports"


def test_the_derived_track_status_finds_the_real_vsc_of_2023_bahrain() -> None:
    """Real laps and real track status of the bundled race: every real VSC change is derived
    within 10 s, and nothing neutralised is derived that the real table lacks."""
    race = sources.load_bundled(DATA / "races" / "2023_bahrain_grand_prix_race")
    real = race.table("track_status")
    derived = lap_exports.track_status_from_laps(race.table("laps"))
    for code in ("6", "7"):
        (t,) = real.loc[real.Status == code, "Time"].astype(float)
        mine = derived.loc[derived.Status == code, "Time"].to_numpy(dtype=float)
        assert len(mine) == 1 and abs(mine[0] - t) < 10.0, (code, t, mine)
    assert set(derived.Status) - {"1", "2"} == {"6", "7"}
    assert derived.Time.is_monotonic_increasing


def test_a_status_shorter_than_a_lap_is_the_span_all_its_laps_cover() -> None:
    """Three cars' laps saw a yellow: it lies inside every one of them (latest start, earliest end)."""
    laps = pd.DataFrame(
        {
            "LapStartTime": [100.0, 110.0, 120.0, 100.0, 300.0],
            "Time": [190.0, 200.0, 210.0, 190.0, 390.0],
            "LapTime": [90.0] * 5,
            "TrackStatus": ["12", "12", "21", "1", "1"],
        }
    )
    derived = lap_exports.track_status_from_laps(laps)
    assert derived[["Time", "Status"]].to_numpy().tolist() == [[120.0, "2"], [190.0, "1"]]


def test_the_shipped_races_are_in_none_of_the_projects_data() -> None:
    races = sources.load_exports(FOLDER)
    names = {(r.meta.year, r.meta.event_name) for r in races}
    assert len(races) == 32 and len(names) == 32
    known = {(r.meta.year, r.meta.event_name) for r in training.corpus_races(DATA)}
    assert not names & (known | set(base.TEST_RACES))
    assert all("race_control" in r.missing and len(r.table("laps")) > 500 for r in races)
    results = pd.read_parquet(FOLDER / "results.parquet")
    assert set(results.Year) == {2023, 2024, 2025}  # Ergast ends with 2025
    assert results.Status.notna().all() and (results.Status != "").all()
    status = pd.read_parquet(FOLDER / "track_status.parquet")
    assert set(status.Status) <= set(lap_exports.MESSAGES) and np.isfinite(status.Time).all()


def test_year_and_event_pick_races_of_an_exports_folder() -> None:
    args = argparse.Namespace(exports=[str(FOLDER)], year=2024, event=["Monaco", "4"])
    picked = evaluation.user_races(args)
    assert sorted(r.meta.event_name for r in picked) == ["Japanese Grand Prix", "Monaco Grand Prix"]
    assert len(evaluation.user_races(argparse.Namespace(exports=[str(FOLDER)], year=2026))) == 11
    with pytest.raises(ValueError, match="matches --year/--event"):
        evaluation.user_races(argparse.Namespace(exports=[str(FOLDER)], year=2019))
