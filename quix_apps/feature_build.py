"""Offline feature builds: the same functions as the streaming apps, folded over whole races.

A lap event takes the same path as on the stream (Lap schema, then ``lap_step`` in event-time
order), so an offline row equals the streamed one (``tests/integration/test_lap_features_parity``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from tqdm import tqdm

from stratx.functions import ingest, schemas
from stratx.functions.features.laps import build_lap_features
from stratx.functions.racedata import RaceData


@dataclass
class BuildReport:
    races: int = 0
    rows: int = 0
    rejected: list[str] = field(default_factory=list)


def lap_feature_rows(race: RaceData) -> tuple[list[dict[str, Any]], list[str]]:
    """LapFeatures records (JSON mode, as on the topic) and the reasons of rejected laps."""
    events: list[dict[str, Any]] = []
    rejected: list[str] = []
    for record in ingest.table_records(race, "laps"):
        checked = ingest.validate(record)
        if isinstance(checked, ingest.Rejected):
            rejected.append(f"{race.meta.slug} {record.key}: {checked.reason}")
            continue
        events.append(checked.model_dump(mode="json"))
    rows, duplicates = build_lap_features(events)
    features = [schemas.LapFeatures.model_validate(r).model_dump(mode="json") for r in rows]
    return features, rejected + [f"{race.meta.slug}: {d}" for d in duplicates]


def build_lap_table(races: Iterable[RaceData], progress: bool = True) -> tuple[pd.DataFrame, BuildReport]:
    """One frame of lap features for all ``races`` (columns = LapFeatures fields + Year, EventName)."""
    report = BuildReport()
    frames = []
    race_list = list(races)
    for race in tqdm(race_list, desc="lap features", unit="race", disable=not progress):
        rows, rejected = lap_feature_rows(race)
        report.races += 1
        report.rows += len(rows)
        report.rejected += rejected
        frame = pd.DataFrame(rows)
        frame.insert(0, "EventName", race.meta.event_name)
        frame.insert(0, "Year", race.meta.year)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return table, report


def build_aggression_table(races: Iterable[RaceData], progress: bool = True) -> pd.DataFrame:
    """Per-lap driver aggression for the races that have car telemetry (windows -> laps), as the
    telemetry and lap-aggression apps compute it on the stream."""
    from stratx.functions.features.aggression import offline_lap_aggression
    from stratx.functions.features.telemetry import offline_windows

    frames = []
    with_telemetry = [r for r in races if len(r.table("car_data"))]
    for race in tqdm(with_telemetry, desc="lap aggression", unit="race", disable=not progress):
        laps, _ = lap_feature_rows(race)
        frame = offline_lap_aggression(offline_windows(race), laps)
        frame.insert(0, "EventName", race.meta.event_name)
        frame.insert(0, "Year", race.meta.year)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
