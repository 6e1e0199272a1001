"""t0 from the chequered flag agrees with the OpenF1 lap-alignment estimate of the bundled races."""

from __future__ import annotations

import pandas as pd
import pytest

from stratx.bentos.lifecycle import sources
from stratx.functions.clock import t0_from_chequered_flag
from tests.conftest import DATA_DIR


@pytest.mark.parametrize("folder", sorted(p.name for p in (DATA_DIR / "races").iterdir()))
def test_chequered_flag_t0_within_five_seconds(folder: str) -> None:
    race = sources.load_bundled(DATA_DIR / "races" / folder)
    assert race.meta.t0_date is not None
    rc = race.table("race_control").copy()
    rc["Time"] = race.meta.t0_date + pd.to_timedelta(rc.Time, unit="s")  # back to UTC, as FastF1 gives it
    t0 = t0_from_chequered_flag(race.table("laps"), rc)
    assert t0 is not None
    assert abs((t0 - race.meta.t0_date).total_seconds()) < 5


def test_no_chequered_flag_gives_none() -> None:
    laps = pd.DataFrame({"LapNumber": [1, 2], "Time": [100.0, 190.0]})
    rc = pd.DataFrame({"Time": [pd.Timestamp("2023-03-05 15:00:00")], "Flag": ["GREEN"]})
    assert t0_from_chequered_flag(laps, rc) is None
    assert t0_from_chequered_flag(laps.iloc[0:0], rc) is None


def test_naive_utc_is_localised() -> None:
    laps = pd.DataFrame({"LapNumber": [1, 2, 2], "Time": [100.0, 190.0, 191.5]})
    rc = pd.DataFrame({"Time": [pd.Timestamp("2023-03-05 15:00:00")], "Flag": ["CHEQUERED"]})
    assert t0_from_chequered_flag(laps, rc) == pd.Timestamp("2023-03-05 14:56:50", tz="UTC")
