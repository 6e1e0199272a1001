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


def test_the_unseen_races_carry_ergasts_start_as_t0() -> None:
    """2023-2025 races get t0 from Ergast's scheduled start (an estimate); 2026 (no Ergast) none."""
    by_year = {r.meta.year: r for r in sources.load_exports(FOLDER)}
    assert by_year[2024].meta.t0_date is not None and by_year[2024].meta.t0_source == "estimate"
    assert by_year[2026].meta.t0_date is None


def test_transformed_rows_come_back_as_the_fastf1_export_they_were() -> None:
    """A real race of the corpus written the way the transformed tables hold it (time deltas as
    text, track status as a float without its '1' codes, no LapStartTime) converts back to the
    export's own laps: session times, the lap start of every lap after the first, track codes."""
    from stratx.bentos.lifecycle import lap_corpus

    real = pd.read_parquet(DATA / "corpus" / "fastf1_exports" / "laps.parquet")
    real = real[(real.Year == 2023) & (real.EventName == "Bahrain Grand Prix")]
    text = real.assign(
        SessionType="Race",
        CompoundName=real.Compound,
        DriverNumber=real.DriverNumber.astype(int),
        TrackStatus=[float(s.replace("1", "") or 1) for s in real.TrackStatus],
        **{c: pd.to_timedelta(real[c], unit="s").astype(str) for c in ("Time", "PitInTime", "PitOutTime")},
    ).drop(columns=["LapStartTime", "SessionName"])
    rows = lap_corpus.export_rows(text, known=set())
    back = rows.merge(real, on=["DriverNumber", "LapNumber"], suffixes=("", "_real"))
    assert len(back) == len(real)
    assert np.allclose(back.Time, back.Time_real, atol=1e-6)
    later = back.LapNumber > 1
    assert np.allclose(back.LapStartTime[later], back.LapStartTime_real[later], atol=1e-3)
    assert set(rows.TrackStatus.dropna()) <= {"1", "2", "4", "6", "7", "24", "26", "67", "264", "267", "672"}
    assert lap_corpus.export_rows(text, known={(2023, "Bahrain Grand Prix")}).empty
