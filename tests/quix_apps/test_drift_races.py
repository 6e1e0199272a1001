"""Drift like with like on whole real races (slow: the corpus's training races are the reference):
the real 2023 Bahrain GP stays under the alarm threshold at every lap a live run would see, its
SYNTHETIC injected shifts (speed traps +5 %, tyre-life counters reset) cross it, and one team 1 %
slower does not (the circuit-free view cannot see it; the team-pace check is its closest check)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from stratx.bentos.lifecycle import feature_build
from stratx.functions.racedata import RaceData
from stratx.functions.settings import DriftSettings
from stratx.quix_apps import drift_measure, drift_reference

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> DriftSettings:
    return DriftSettings(drift_reports_dir=tmp_path_factory.mktemp("drift"), metrics_enabled=False)


def test_bahrain_2023_real_stays_under_and_injections_cross(
    settings: DriftSettings, bahrain: RaceData
) -> None:
    reference = drift_reference.build_reference(settings)
    rows = pd.DataFrame(feature_build.lap_feature_rows(bahrain)[0])
    found = drift_measure.race_drift(settings, reference, bahrain, rows)
    assert found["reference_races"] == 15  # the training races of 2018-2022: causal
    assert all(
        r.split()[0] < "2023"
        for r in drift_reference.race_reference(
            settings, reference, str(rows["Date"].min()), bahrain.meta.event_name, 2023
        ).races
    )
    assert set(found["speeds"]) == {"SpeedI1", "SpeedI2", "SpeedFL", "SpeedST"}  # Bahrain 2020-2022
    real = found["real"]
    assert real["max_any_lap"]["share"] < settings.drift_threshold and not real["alarm"]
    speed = found["injected"]["speed_trap_+5%"]
    assert speed["alarm"] and "SpeedSTToCircuit" in speed["whole_race"]["drifted"]
    reset = found["injected"]["tyre_life_reset"]
    assert reset["alarm"] and reset["whole_race"]["drifted"] == ["TyreLifeUnderStint"]
    assert reset["laps_1_15"]["share"] == 0  # nothing was reset before the mid-race lap
    assert not found["injected"]["team_+1%"]["alarm"]
    assert "no earlier training race of 2023" in found["injected"]["team_+1%"]["team_pace"]["note"]
    # the calibration is cached next to the reference and reused
    assert len(list(Path(settings.drift_reports_dir).glob("calibration_*.json"))) == 1
