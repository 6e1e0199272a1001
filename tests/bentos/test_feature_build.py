"""`stratx features build`: the offline lap-feature table of the bundled races + training corpus."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from stratx.functions import schemas
from tests.conftest import DATA_DIR

STRATX = str(Path(sys.executable).parent / "stratx")


pytestmark = pytest.mark.slow  # `stratx features build` of the whole bundled corpus


def test_build_covers_every_corpus_lap_once(tmp_path: Path) -> None:
    out = tmp_path / "lap_features.parquet"
    aggression_out = tmp_path / "lap_aggression.parquet"
    done = subprocess.run(
        [
            STRATX,
            "features",
            "build",
            "--out",
            str(out),
            "--aggression-out",
            str(aggression_out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    table = pd.read_parquet(out)
    corpus = pd.read_parquet(DATA_DIR / "corpus" / "fastf1_exports" / "laps.parquet")
    assert len(table) == len(corpus)  # the 3 bundled races replace their corpus copies one for one
    assert not table.duplicated(["SessionKey", "DriverNumber", "LapNumber"]).any()
    assert table.groupby(["Year", "EventName"]).ngroups == corpus.groupby(["Year", "EventName"]).ngroups
    bundled = table[table.SessionKey > 0]
    assert set(bundled.SessionKey) == {7953, 9189, 9472}  # real keys of the bundled races
    assert (table.SessionKey[table.SessionKey < 0] <= -201800).all()  # derived keys: -(year*100+round)
    assert set(schemas.LapFeatures.model_fields) - {"v"} <= set(table.columns)
    assert table.Date.notna().all()  # every race got a t0 (telemetry estimate or chequered flag)
    aggression = pd.read_parquet(aggression_out)
    # the bundled races carry car telemetry (samples); the corpus races of 2023-24 get the OpenF1 aggregates
    samples = aggression[aggression.AggressionSource == "samples"]
    aggregates = aggression[aggression.AggressionSource == "openf1-aggregates"]
    assert set(aggression.AggressionSource) == {"samples", "openf1-aggregates"}
    assert set(samples.SessionKey) == {7953, 9189, 9472}
    assert (aggregates.SessionKey < 0).all() and aggregates.groupby("SessionKey").ngroups == 22 - 3
    assert (aggregates.Windows == 0).all() and aggregates.DRSOpenShare.isna().all()
    assert not aggression.duplicated(["SessionKey", "DriverNumber", "LapNumber"]).any()
    laps = table.set_index(["SessionKey", "DriverNumber", "LapNumber"]).index
    assert aggression.set_index(["SessionKey", "DriverNumber", "LapNumber"]).index.isin(laps).all()
    assert len(samples) > 0.95 * len(table[table.SessionKey > 0])
    covered = table[table.SessionKey.isin(set(aggregates.SessionKey))]
    assert len(aggregates) > 0.95 * len(covered)
