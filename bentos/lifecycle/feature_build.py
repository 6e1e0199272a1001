"""Offline feature builds: the same functions as the streaming apps, folded over whole races.

A lap event takes the same path as on the stream (Lap schema, then ``lap_step`` in event-time
order), so an offline row equals the streamed one (``tests/quix_apps/test_lap_features_parity``).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from stratx.functions import ingest, schemas
from stratx.functions.features.laps import build_lap_features
from stratx.functions.racedata import RaceData
from stratx.functions.settings import REPO_ROOT


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
    track = []  # track status and race control as the stream receives them (functions/scope.py)
    for name in ("track_status", "race_control"):
        for record in ingest.table_records(race, name):
            checked = ingest.validate(record)
            if not isinstance(checked, ingest.Rejected):
                track.append(checked.model_dump(mode="json"))
    rows, duplicates = build_lap_features(events, track)
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


AGGREGATES_PATH = REPO_ROOT / "data" / "corpus" / "openf1_lap_aggregates.parquet"
SOURCE_SAMPLES = "samples"
SOURCE_AGGREGATES = "openf1-aggregates"
# columns of the OpenF1 gold lap table kept in the bundled subset
AGGREGATE_COLUMNS: tuple[str, ...] = (
    "season",
    "meeting_name",
    "session_key",
    "driver_number",
    "lap_number",
    "has_telemetry",
    "telemetry_points",
    "avg_throttle",
    "full_throttle_pct",
    "brake_pct",
    "brake_events",
    "gear_changes",
    "max_speed",
)
GOLD_TABLE = Path("openf1") / "gold" / "lap_features_2023_2026.parquet"


def build_aggression_table(
    races: Iterable[RaceData], progress: bool = True, aggregates: Path | pd.DataFrame | None = AGGREGATES_PATH
) -> pd.DataFrame:
    """Per-lap driver aggression, as the telemetry and lap-aggression apps compute it on the stream
    for the races that have car telemetry (windows -> laps, ``AggressionSource`` "samples"); races
    without car telemetry that the OpenF1 per-lap aggregates cover (``aggregates``: the bundled
    subset, or None to skip) get rows from those (``AggressionSource`` "openf1-aggregates", see
    ``aggression.aggression_from_aggregates``). ``df.attrs["skipped"]``: skipped aggregate rows by reason.
    """
    from stratx.functions.features.aggression import offline_aggregates_aggression, offline_lap_aggression
    from stratx.functions.features.telemetry import offline_windows

    gold = _aggregate_rows(aggregates)
    by_race = dict(iter(gold.groupby(["season", "meeting_name"]))) if len(gold) else {}
    frames = []
    skipped: dict[str, int] = {}
    work: list[tuple[RaceData, pd.DataFrame | None]] = []
    for race in races:
        if len(race.table("car_data")):
            work.append((race, None))
        elif race.meta.session_name == "Race" and (race.meta.year, race.meta.event_name) in by_race:
            work.append((race, by_race[(race.meta.year, race.meta.event_name)]))
    for race, rows in tqdm(work, desc="lap aggression", unit="race", disable=not progress):
        laps, _ = lap_feature_rows(race)
        if rows is None:
            frame = offline_lap_aggression(offline_windows(race), laps)
            source = SOURCE_SAMPLES
        else:
            frame = offline_aggregates_aggression(rows, laps)
            source = SOURCE_AGGREGATES
            for reason, count in frame.attrs["skipped"].items():
                skipped[reason] = skipped.get(reason, 0) + count
        frame.insert(0, "EventName", race.meta.event_name)
        frame.insert(0, "Year", race.meta.year)
        frame["AggressionSource"] = source
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    table.attrs = {"skipped": skipped}
    return table


def _aggregate_rows(aggregates: Path | pd.DataFrame | None) -> pd.DataFrame:
    if aggregates is None:
        return pd.DataFrame()
    if isinstance(aggregates, pd.DataFrame):
        return aggregates
    return pd.read_parquet(aggregates) if aggregates.is_file() else pd.DataFrame()


def bundle_aggregates(gold: Path, corpus_laps: Path, out: Path) -> pd.DataFrame:
    """The OpenF1 gold per-lap aggregates of the corpus races (Race sessions; season = Year and
    meeting_name = EventName, the names agree), :data:`AGGREGATE_COLUMNS` only, written to ``out`` (zstd)."""
    table = pd.read_parquet(gold, columns=[*AGGREGATE_COLUMNS, "session_name"])
    laps = pd.read_parquet(corpus_laps, columns=["Year", "EventName", "SessionName"])
    events = laps[laps.SessionName == "Race"][["Year", "EventName"]].drop_duplicates()
    keep = table[table.session_name == "Race"].merge(
        events, left_on=["season", "meeting_name"], right_on=["Year", "EventName"]
    )
    subset = (
        keep[list(AGGREGATE_COLUMNS)]
        .sort_values(["season", "meeting_name", "driver_number", "lap_number"])
        .reset_index(drop=True)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    subset.to_parquet(out, compression="zstd", index=False)
    return subset


def main(argv: list[str] | None = None) -> None:
    """``python -m stratx.bentos.lifecycle.feature_build aggregates --shared /work/shared/data``"""
    parser = argparse.ArgumentParser(prog="python -m stratx.bentos.lifecycle.feature_build")
    sub = parser.add_subparsers(dest="command", required=True)
    agg = sub.add_parser("aggregates", help="bundle the OpenF1 per-lap aggregates of the corpus races")
    agg.add_argument("--shared", type=Path, required=True, help="shared data folder (has openf1/gold/)")
    agg.add_argument("--corpus", type=Path, default=REPO_ROOT / "data" / "corpus" / "fastf1_exports")
    agg.add_argument("--out", type=Path, default=AGGREGATES_PATH)
    args = parser.parse_args(argv)
    subset = bundle_aggregates(args.shared / GOLD_TABLE, args.corpus / "laps.parquet", args.out)
    races = subset.groupby(["season", "meeting_name"]).ngroups
    print(f"wrote {args.out}: {len(subset)} driver-laps of {races} races")


if __name__ == "__main__":
    main()
