"""`stratx features build`: the offline lap-feature table of the bundled races + training corpus."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from stratx.functions import schemas
from tests.conftest import DATA_DIR

STRATX = str(Path(sys.executable).parent / "stratx")


def test_build_covers_every_corpus_lap_once(tmp_path: Path) -> None:
    out = tmp_path / "lap_features.parquet"
    done = subprocess.run(
        [STRATX, "features", "build", "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
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
