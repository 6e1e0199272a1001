"""More training races: the Armchair-Strategist *transformed* lap tables of 2018-2023
(``shared/data/laps/laps_2018_2026_transformed_combined.parquet``, Apache-2.0) as an exports
folder `stratx train --exports` reads, holding only races in none of the project's data (not
bundled, not in the corpus, not a test race, not one of the unseen races of
``data/corpus/lap_exports``).

The transformed tables are FastF1 ``Session.laps`` exports with fewer columns: no sector times,
speed traps, ``LapStartTime`` (rebuilt here: the driver's previous lap end; lap 1: its end minus
its time) or deletions, and ``TrackStatus`` without its clear ('1') codes (the derived track status
only reads the others). ``Compound`` is FastF1's (2019 on: SOFT / MEDIUM / HARD), ``CompoundName``
for 2018 (the named compounds FastF1 gives for that season). Track status, classification and t0
as :func:`~stratx.bentos.lifecycle.lap_exports.write_exports` builds them.

``python -m stratx.bentos.lifecycle.lap_corpus [--shared DIR] [--out DIR]`` (default
``.stratx/corpus/lap_corpus``; not shipped: it is an experiment, docs/models.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from stratx.bentos.lifecycle import lap_exports

SOURCE = "laps/laps_2018_2026_transformed_combined.parquet"
LAST_SEASON = 2023  # later seasons are the unseen races (raw tables in lap_exports)
EMPTY_FLOATS = (
    "Sector1Time", "Sector2Time", "Sector3Time", "Sector1SessionTime", "Sector2SessionTime",
    "Sector3SessionTime", "SpeedI1", "SpeedI2", "SpeedFL", "SpeedST",
)  # fmt: skip


def export_rows(table: pd.DataFrame, known: set[tuple[int, str]]) -> pd.DataFrame:
    """The transformed rows of the races (Race sessions, seasons <= :data:`LAST_SEASON`) not in
    ``known``, as FastF1 export rows (times in s, string track status and driver numbers)."""
    keep = (table["SessionType"] == "Race") & (table["Year"] <= LAST_SEASON)
    keep &= np.asarray(
        [(int(y), str(e)) not in known for y, e in zip(table.Year, table.EventName, strict=True)]
    )
    t = table[keep].copy()
    for col in ("Time", "PitOutTime", "PitInTime"):
        t[col] = pd.to_timedelta(t[col]).dt.total_seconds()
    t["SessionName"] = "Race"
    t["DriverNumber"] = t["DriverNumber"].astype(int).astype(str)
    t["TrackStatus"] = pd.array(
        [None if pd.isna(s) else str(int(s)) for s in t["TrackStatus"]], dtype="string"
    )
    t["Compound"] = np.where(t["Year"] <= 2018, t["CompoundName"], t["Compound"])
    t = t.sort_values(["Year", "RoundNumber", "DriverNumber", "LapNumber"], kind="stable")
    previous = t.groupby(["Year", "RoundNumber", "DriverNumber"])["Time"].shift(1)
    t["LapStartTime"] = previous.where(t["LapNumber"] > 1, t["Time"] - t["LapTime"])
    for col in EMPTY_FLOATS:
        t[col] = np.nan
    t["Deleted"] = pd.array([pd.NA] * len(t), dtype="boolean")
    t["DeletedReason"] = pd.array([pd.NA] * len(t), dtype="string")
    t["FastF1Generated"] = False
    t["LapStartDate"] = pd.NaT
    t["IsPersonalBest"] = t["IsPersonalBest"].astype("boolean")
    for col in ("EventName", "Driver", "Compound", "Team", "SessionName"):
        t[col] = t[col].astype("string")
    return t.drop(columns=["SessionType", "CompoundName"]).reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    from stratx.bentos.lifecycle import sources, training
    from stratx.functions.models import base
    from stratx.functions.settings import REPO_ROOT, TrainingSettings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--out", type=Path, default=REPO_ROOT / ".stratx" / "corpus" / "lap_corpus")
    args = parser.parse_args(argv)
    data = TrainingSettings().data_dir
    known = {(r.meta.year, r.meta.event_name) for r in training.corpus_races(data)} | set(base.TEST_RACES)
    known |= {(r.meta.year, r.meta.event_name) for r in sources.load_exports(data / "corpus" / "lap_exports")}
    rows = export_rows(pd.read_parquet(args.shared / SOURCE), known)
    report = lap_exports.write_exports(rows, args.shared / "ergast", args.out)
    (args.out / "build.json").write_text(
        json.dumps({**report, "sources": [f"shared/data/{SOURCE}"]}, indent=1) + "\n"
    )
    print(f"{len(report['races'])} races, {report['laps']} laps -> {args.out}")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
