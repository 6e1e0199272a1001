"""The drift reference, like with like (``functions/drift_like.py``): every training race's
LapFeatures rows, built once with the offline feature functions and saved as parquet whose metadata
carries the data snapshot hash, the races and when each started (:func:`build_reference`,
:func:`load_reference`); and, per compared race, its causal part (:func:`race_reference`): the
reference races that started before it, their circuit-free view, this circuit's reference speeds
and the leave-one-race-out calibration of each column's threshold, computed once per set of races
and window and cached as ``calibration_<hash>.json`` next to the parquet.
Re-exported by :mod:`stratx.quix_apps.drift`, whose docstring describes a whole run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from stratx.functions import drift_like
from stratx.functions.models import base
from stratx.functions.settings import DriftSettings

log = logging.getLogger(__name__)
REFERENCE_SEED = 0  # the sample the prediction reference runs the champions on
META_KEY = b"stratx.drift_reference"
VIEW_VERSION = 1  # bump when drift_like's view or calibration changes: old calibrations are not reused


@dataclass(frozen=True)
class Reference:
    rows: pd.DataFrame  # LapFeatures rows of every reference race (+ Year, EventName, Race)
    path: Path
    snapshot_hash: str
    races: list[str]
    starts: dict[str, str] = field(default_factory=dict)  # race -> first lap-end Date (ISO)


@dataclass(frozen=True)
class RaceReference:
    """What one race is compared with (module doc)."""

    races: list[str]
    view: pd.DataFrame  # drift_like.reference_view: the like view + Race + LapNumber
    calibration: dict[int, dict[str, float]]
    speeds: dict[str, float]
    notes: list[str]
    window_laps: int = 0

    def thresholds(self, last_lap: int) -> dict[str, float]:
        return drift_like.thresholds_for(self.calibration, last_lap)

    def pool(self, last_lap: int) -> pd.DataFrame:
        """The reference races' view rows cut the same way as a window ending at ``last_lap``."""
        keep = drift_like.in_window(self.view["LapNumber"], last_lap, self.window_laps)
        return self.view[keep.to_numpy()].drop(columns=[drift_like.RACE, "LapNumber"])


# ------------------------------------------------------------------ the training races
def reference_path(settings: DriftSettings) -> Path:
    years = "-".join(str(y) for y in settings.reference_years()) or "all"
    return settings.drift_reports_dir / f"reference_races_{years}.parquet"


def race_starts(rows: pd.DataFrame) -> dict[str, str]:
    """Race name -> its first lap-end Date (ISO text; orders races in time)."""
    return {str(k): str(v) for k, v in rows.groupby(drift_like.RACE)["Date"].min().items()}


def build_reference(settings: DriftSettings, progress: bool = False) -> Reference:
    """Every training race's lap features (module doc), saved with their tags."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from stratx.bentos.lifecycle import feature_build, training

    years = set(settings.reference_years())
    keep = []
    for race in training.corpus_races(settings.data_dir):
        ident = pd.DataFrame({"Year": [race.meta.year], "EventName": [race.meta.event_name]})
        if base.race_split(ident).iloc[0] == "train" and (not years or race.meta.year in years):
            keep.append(race)
    if not keep:
        raise ValueError(f"no training races for the drift reference in {settings.data_dir} (years {years})")
    table, _ = feature_build.build_lap_table(keep, progress=progress)
    digest = training.snapshot_hash(table)
    table[drift_like.RACE] = table["Year"].astype(str) + " " + table["EventName"].astype(str)
    starts = race_starts(table)
    races = sorted(starts, key=lambda r: starts[r])
    path = reference_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    tags = {"snapshot_hash": digest, "races": races, "starts": starts, "rows": len(table)}
    arrow = arrow.replace_schema_metadata(
        {**(arrow.schema.metadata or {}), META_KEY: json.dumps(tags).encode()}
    )
    pq.write_table(arrow, path, compression="zstd")
    log.info("drift reference: %d driver-laps of %d races -> %s", len(table), len(races), path)
    return Reference(table, path, digest, races, starts)


def load_reference(settings: DriftSettings, rebuild: bool = False) -> Reference:
    """The saved reference of these settings, built first when missing (or ``rebuild``)."""
    import pyarrow.parquet as pq

    path = reference_path(settings)
    if rebuild or not path.is_file():
        return build_reference(settings)
    arrow = pq.read_table(path)
    tags = json.loads((arrow.schema.metadata or {}).get(META_KEY, b"{}"))
    return Reference(
        arrow.to_pandas(),
        path,
        str(tags.get("snapshot_hash", "")),
        list(tags.get("races", [])),
        dict(tags.get("starts", {})),
    )


def prediction_rows(reference: Reference, size: int) -> pd.DataFrame:
    """A fixed seeded sample of the reference rows (the champions run on it for the predictions)."""
    rows = reference.rows
    return rows.sample(n=min(size, len(rows)), random_state=REFERENCE_SEED).sort_index()


# ------------------------------------------------------------------ one race's reference
def race_reference(
    settings: DriftSettings,
    reference: Reference,
    start: str | None,
    event_name: str | None,
    year: int | None,
    window_laps: int = 0,
) -> RaceReference:
    """The reference races that started before ``start`` (all when None; causal), their view, this
    circuit's reference speeds and the calibration (cached; module doc)."""
    starts = reference.starts
    races = drift_like.races_before(starts, start) if start else sorted(starts, key=lambda r: starts[r])
    if len(races) < 3:
        raise ValueError(f"only {len(races)} reference races before {start}: too few to calibrate drift")
    rows = reference.rows[reference.rows[drift_like.RACE].isin(races)]
    view = drift_like.reference_view(rows, starts)
    calibration = _calibration(settings, reference, races, view, window_laps)
    speeds: dict[str, float] = {}
    notes = []
    if event_name is None or year is None:
        notes.append("speed traps not compared: the session's event is unknown (no session info)")
    else:
        speeds = drift_like.speeds_before(rows, starts, event_name, year, start or "~")
        note = drift_like.speed_note(event_name, speeds)
        notes += [note] if note else []
    return RaceReference(races, view, calibration, speeds, notes, window_laps)


def _calibration(
    settings: DriftSettings, reference: Reference, races: list[str], view: pd.DataFrame, window_laps: int
) -> dict[int, dict[str, float]]:
    key = json.dumps(
        [VIEW_VERSION, reference.snapshot_hash, races, window_laps, drift_like.MARGIN, drift_like.WINDOW_GRID]
    )
    path = settings.drift_reports_dir / f"calibration_{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"
    if path.is_file():
        return {int(n): dict(cols) for n, cols in json.loads(path.read_text())["thresholds"].items()}
    log.info("drift: calibrating %d reference races (leave one race out) ...", len(races))
    calibration = drift_like.calibrate(
        view.drop(columns=["LapNumber"]), view["LapNumber"], window_laps=window_laps
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "races": races,
        "window_laps": window_laps,
        "margin": drift_like.MARGIN,
        "thresholds": calibration,
    }
    path.write_text(json.dumps(body, indent=1) + "\n")
    return calibration
