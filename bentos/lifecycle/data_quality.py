"""Batch data-quality suite of the training tables (pandera), run by `stratx train` before fitting.

The per-record rules (types, ranges) live in the pydantic schemas and run at ingestion; this suite
checks what only a whole table shows: columns and dtypes of the lap-feature table and the telemetry
window table that ``training.build_corpus`` builds, value ranges, one row per (race, driver, lap)
or (race, driver, window), lap numbers that advance with the lap end time per driver, and null
shares. ``check_corpus`` returns a :class:`QualityReport`; ``require`` raises
:class:`DataQualityError` with a summary (which check, how many rows, examples) when any check
fails. The report is JSON (``QualityReport.to_json``), written next to the MLflow runs and logged
as an artifact of each model's run.

Pandera rather than Great Expectations: the suite is a few in-process DataFrame schemas that run in
about a second on the 40k-row corpus (README, "Data quality"), with pandas dtypes and lazy
collection of every failure; pandera is one small dependency, GE brings a project context, stores
and an HTML data-docs site that the CLI does not need.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from stratx.functions import schemas

RACE = ["Year", "EventName"]
DRIVER = [*RACE, "DriverNumber"]
MAX_EXAMPLES = 5
_SESSION_T = schemas.SESSION_TIME_MAX_S


def _null_share(limit: float) -> pa.Check:
    """At most ``limit`` of the column may be null (the check sees the whole column, nulls included)."""
    return pa.Check(lambda s: bool(s.isna().mean() <= limit), ignore_na=False, name=f"null_share<={limit:g}")


def _share(nullable: bool = True) -> pa.Column:
    return pa.Column(float, pa.Check.in_range(0, 1), nullable=nullable)


def _laps_advance(frame: pd.DataFrame) -> pd.Series:
    """Per race and driver, in LapNumber order: SessionTime (lap end) never decreases (the corpus has
    one real tie: 2021 Styria, car 18, laps 4 and 5 end at the same time in FastF1's data)."""
    ordered = frame.sort_values([*DRIVER, "LapNumber"], kind="stable")
    same = (ordered[DRIVER] == ordered[DRIVER].shift()).all(axis=1)
    ok = ~same | (ordered["SessionTime"].diff() >= 0)
    return ok.reindex(frame.index)


def _windows_tile(frame: pd.DataFrame) -> pd.Series:
    """WindowEnd after WindowStart."""
    return frame["WindowEnd"] > frame["WindowStart"]


LAP_TABLE = pa.DataFrameSchema(
    {
        "Year": pa.Column(int, pa.Check.in_range(1950, 2100)),
        "EventName": pa.Column(str, pa.Check.str_length(1, 200)),
        "SessionKey": pa.Column(int),
        "DriverNumber": pa.Column(str, pa.Check.str_matches(schemas.DRIVER_NUMBER)),
        "LapNumber": pa.Column(int, pa.Check.in_range(1, schemas.MAX_LAPS)),
        "SessionTime": pa.Column(float, pa.Check.in_range(-_SESSION_T, _SESSION_T)),
        "LapTime": pa.Column(
            float, [pa.Check.in_range(30, schemas.LONGEST_S), _null_share(0.1)], nullable=True
        ),
        "IsClean": pa.Column(bool),
        "Stint": pa.Column(float, [pa.Check.in_range(1, 20), _null_share(0.01)], nullable=True),
        "Compound": pa.Column(str, _null_share(0.01), nullable=True),
        "TyreLife": pa.Column(
            float, [pa.Check.in_range(0, schemas.MAX_LAPS), _null_share(0.01)], nullable=True
        ),
        "LapsInStint": pa.Column(int, pa.Check.ge(1)),
        "StintCleanLaps": pa.Column(int, pa.Check.ge(0)),
        "FuelKg": pa.Column(float, pa.Check.in_range(0, 110)),
        "FuelCorrectedLapTime": pa.Column(float, pa.Check.gt(0), nullable=True),
        "Last3Median": pa.Column(
            float, [pa.Check.in_range(30, schemas.LONGEST_S), _null_share(0.1)], nullable=True
        ),
        "Last5Median": pa.Column(
            float, [pa.Check.in_range(30, schemas.LONGEST_S), _null_share(0.1)], nullable=True
        ),
        "Last3Std": pa.Column(float, pa.Check.ge(0), nullable=True),
        "StintDegSlopeStderr": pa.Column(float, pa.Check.ge(0), nullable=True),
        "PositionOnLap": pa.Column(int, pa.Check.in_range(1, 30)),
        "GapToLeader": pa.Column(float, pa.Check.ge(0)),
        "IntervalAhead": pa.Column(float, pa.Check.ge(0), nullable=True),
        "IntervalBehind": pa.Column(float, pa.Check.ge(0), nullable=True),
        "InDRSRange": pa.Column(bool),
        "LapsDown": pa.Column(int, pa.Check.in_range(0, schemas.MAX_LAPS)),
    },
    checks=[
        pa.Check(_laps_advance, name="lap_end_never_decreases_with_lap_number"),
        pa.Check(lambda df: df.groupby(RACE).ngroups >= 1, element_wise=False, name="at_least_one_race"),
    ],
    unique=[*DRIVER, "LapNumber"],
    report_duplicates="all",
    name="lap_features",
)

WINDOW_TABLE = pa.DataFrameSchema(
    {
        "Year": pa.Column(int, pa.Check.in_range(1950, 2100)),
        "EventName": pa.Column(str),
        "SessionKey": pa.Column(int),
        "DriverNumber": pa.Column(str, pa.Check.str_matches(schemas.DRIVER_NUMBER)),
        "WindowStart": pa.Column(float, pa.Check.in_range(-_SESSION_T, _SESSION_T)),
        "WindowEnd": pa.Column(float, pa.Check.in_range(-_SESSION_T, _SESSION_T)),
        "Samples": pa.Column(int, pa.Check.ge(1)),
        "SpeedMean": pa.Column(float, pa.Check.in_range(0, 400)),
        "SpeedMax": pa.Column(int, pa.Check.in_range(0, 400)),
        "RPMMean": pa.Column(float, pa.Check.in_range(0, 20000)),
        "ThrottleMean": pa.Column(float, pa.Check.in_range(0, 100), nullable=True),
        "FullThrottleShare": _share(),
        "BrakeShare": _share(),
        "ThrottleBrakeOverlapShare": _share(),
        "DRSOpenShare": _share(nullable=False),
        "MaxGear": pa.Column(int, pa.Check.in_range(0, 8)),
    },
    checks=[pa.Check(_windows_tile, name="window_end_after_start")],
    unique=[*DRIVER, "WindowStart"],
    report_duplicates="all",
    name="telemetry_windows",
)

SCHEMAS: dict[str, pa.DataFrameSchema] = {"laps": LAP_TABLE, "windows": WINDOW_TABLE}


@dataclass(frozen=True)
class CheckFailure:
    table: str
    column: str | None  # None: a table-level check
    check: str
    rows: int  # failing rows (or failure cases for table-level checks)
    examples: list[str]


@dataclass
class QualityReport:
    tables: dict[str, int] = field(default_factory=dict)  # rows checked per table
    failures: list[CheckFailure] = field(default_factory=list)
    checks: dict[str, int] = field(default_factory=dict)  # checks per table
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> str:
        return json.dumps({"passed": self.passed, **asdict(self)}, indent=2, default=str)

    def summary(self) -> str:
        head = ", ".join(f"{t}: {n} rows" for t, n in self.tables.items())
        if self.passed:
            return f"data quality passed ({head}; {sum(self.checks.values())} checks, {self.seconds:.2f} s)"
        lines = [f"data quality failed ({head}): {len(self.failures)} check(s)"]
        for f in self.failures:
            where = f"{f.table}.{f.column}" if f.column else f.table
            lines.append(f"  {where}: {f.check}: {f.rows} row(s), e.g. {'; '.join(f.examples)}")
        return "\n".join(lines)


class DataQualityError(ValueError):
    """The training data failed the suite; ``report`` holds every failed check."""

    def __init__(self, report: QualityReport, path: Path | None = None) -> None:
        where = f"\n  report: {path}" if path is not None else ""
        super().__init__(f"{report.summary()}{where}")
        self.report = report
        self.path = path


def _count_checks(schema: pa.DataFrameSchema) -> int:
    per_column = sum(len(c.checks) + 2 for c in schema.columns.values())  # + presence and dtype
    return per_column + len(schema.checks) + (1 if schema.unique else 0)


def _example(frame: pd.DataFrame, at: Any, value: Any) -> str:
    if pd.notna(at) and at in frame.index and all(k in frame.columns for k in DRIVER):
        year, event, driver = frame.loc[at, DRIVER].tolist()
        lap = f", lap {frame.loc[at, 'LapNumber']}" if "LapNumber" in frame.columns else ""
        return f"row {at} ({year} {event}, car {driver}{lap}): {value!r}"
    return repr(value)


def _failures(table: str, frame: pd.DataFrame, errors: SchemaErrors) -> list[CheckFailure]:
    """One CheckFailure per (column, check); a table-level check (uniqueness, lap order, a missing
    column) is one failure whatever the number of columns pandera lists it under."""
    cases = errors.failure_cases.copy()
    column_level = cases["schema_context"] == "Column"
    cases["column"] = cases["column"].where(column_level, "")
    out = []
    for (column, check), group in cases.groupby(["column", "check"], sort=True):
        index = group["index"].dropna()
        rows = int(index.nunique()) if len(index) else len(group)
        first = group.drop_duplicates("index") if len(index) else group
        examples = [
            _example(frame, c["index"], c["failure_case"]) for _, c in first.head(MAX_EXAMPLES).iterrows()
        ]
        out.append(CheckFailure(table, str(column) or None, str(check), rows, examples))
    return out


def check_tables(tables: Mapping[str, pd.DataFrame | None]) -> QualityReport:
    """Run the suite on the given tables (``laps``, ``windows``; None or empty tables are skipped)."""
    started = time.perf_counter()
    report = QualityReport()
    for name, frame in tables.items():
        if frame is None or (name != "laps" and frame.empty):
            continue
        schema = SCHEMAS[name]
        report.tables[name] = len(frame)
        report.checks[name] = _count_checks(schema)
        try:
            schema.validate(frame, lazy=True)
        except SchemaErrors as exc:
            report.failures += _failures(name, frame, exc)
    report.seconds = time.perf_counter() - started
    return report


def write_report(report: QualityReport, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.to_json())
    return path


def require(report: QualityReport, path: Path | None = None) -> QualityReport:
    """The report if every check passed, else :class:`DataQualityError` with the summary (and the
    path of the written report)."""
    if not report.passed:
        raise DataQualityError(report, path)
    return report


def main() -> None:
    """``python -m stratx.bentos.lifecycle.data_quality``: the suite on the bundled corpus (lap features of
    every race + the bundled telemetry windows), with the time it takes."""
    from stratx.bentos.lifecycle import training
    from stratx.functions.settings import TrainingSettings

    settings = TrainingSettings()
    started = time.perf_counter()
    laps = training.lap_table(training.corpus_races(settings.data_dir), progress=False)
    windows = pd.read_parquet(settings.data_dir / "corpus" / "telemetry_windows.parquet")
    built = time.perf_counter() - started
    report = check_tables({"laps": laps, "windows": windows})
    print(f"tables built in {built:.1f} s")
    print(report.summary())
    for name, schema in SCHEMAS.items():
        print(f"  {name}: {_count_checks(schema)} checks")


if __name__ == "__main__":
    main()
