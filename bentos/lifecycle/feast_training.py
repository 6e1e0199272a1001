"""Training rows through Feast: the lap-feature table goes to the offline store's parquet and each
model reads its versioned FeatureService back with a point-in-time join.

``stratx train`` builds the lap-feature table with the feature functions (``feature_build``), writes
it to the ``lap_features_file`` FileSource of ``feature_repo/`` (the parquet the apps append to, a
re-built lap replacing the old one), and for each model asks Feast's ``get_historical_features`` for
its FeatureService (``lap_time_v1``, ...) at every driver-lap's end (entity keys DriverNumber,
SessionKey; ``event_timestamp`` = the lap's Date). The service's columns of the recipe's table are
the values Feast returned; the columns the service does not hold (Year, EventName, SessionTime,
labels' inputs ...) stay those of the built table. :func:`parity` compares the two per cell and
training prints the result (``tests/bentos/test_feast_training.py`` asserts it on a bundled race).

Known limit: a point-in-time join cannot tell apart two laps of one driver that end at the same
instant; Feast returns one of them for both (one driver-lap pair in the 37-race corpus, 2021 Styrian
GP car 18 laps 4-5, a timing glitch): :func:`parity` counts its cells as differing, and those rows
keep the built values (``Parity.ambiguous_rows``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from stratx.bentos.kit import feature_store as fs
from stratx.bentos.kit.feature_store_frames import (
    ENTITY_KEYS,
    EVENT_TIMESTAMP,
    LAP_SCHEMA,
    append_parquet,
    table_frame,
)
from stratx.functions.models import base

if TYPE_CHECKING:
    from feast import FeatureStore

    from stratx.functions.settings import FeastSettings

log = logging.getLogger(__name__)
TOLERANCE = 1e-9


@dataclass
class Parity:
    """Cell-by-cell comparison of a Feast-read table with the built one (same rows, in order)."""

    service: str
    rows: int
    columns: int
    mismatched_cells: int = 0
    mismatched_rows: list[int] = field(default_factory=list)
    ambiguous_rows: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.service}: {self.rows} rows x {self.columns} features read through Feast in "
            f"{self.seconds:.1f} s; {self.mismatched_cells} cells in {len(self.mismatched_rows)} rows "
            f"differ from the built table; {len(self.ambiguous_rows)} rows share a driver's lap-end time "
            f"with another lap (the built values kept)"
        )


def write_offline_table(store: FeatureStore, laps: pd.DataFrame) -> Path:
    """Write the built lap-feature table to the offline store's parquet (the ``lap_features_file``
    FileSource); a driver-lap already there is replaced. Returns the path."""
    path = fs.offline_path(store)
    append_parquet(table_frame(laps), path, LAP_SCHEMA)
    return path


def entity_frame(laps: pd.DataFrame) -> pd.DataFrame:
    """The entity rows of a point-in-time read: each driver-lap's keys at its end (Date, UTC)."""
    return pd.DataFrame(
        {
            "DriverNumber": laps["DriverNumber"].astype(str).to_numpy(),
            "SessionKey": laps["SessionKey"].astype("int64").to_numpy(),
            EVENT_TIMESTAMP: pd.to_datetime(laps["Date"], utc=True, format="ISO8601").to_numpy(),
        }
    )


def _like(values: pd.Series, reference: pd.Series) -> Any:
    """Feast's nullable column as the built table's dtype (NA -> NaN for floats, None for objects)."""
    kind = reference.dtype.kind
    if kind == "f":
        return values.to_numpy(dtype=float, na_value=np.nan)
    if kind in "iub" and not values.isna().any():
        return values.astype(reference.dtype).to_numpy()
    return values.astype(object).where(values.notna(), None).to_numpy()


def read_service(store: FeatureStore, service: str, laps: pd.DataFrame) -> tuple[pd.DataFrame, Parity]:
    """``laps`` with the columns of ``service`` replaced by Feast's point-in-time values at each
    driver-lap's end, and their parity with the built values."""
    started = time.perf_counter()
    names = [n for n in fs.service_features(store, service) if n not in ENTITY_KEYS]
    entities = entity_frame(laps)
    found = fs.historical_features(store, service, entities)
    result = parity(laps, found, [n for n in names if n in laps], service)
    # a driver with two laps ending at the same instant: the join cannot tell them apart
    ambiguous = entities.duplicated(list(entities.columns), keep=False).to_numpy()
    result.ambiguous_rows = [int(i) for i in np.flatnonzero(ambiguous)]
    out = laps.copy()
    for name in names:
        if name not in laps:
            out[name] = found[name].to_numpy()
            continue
        values = found[name]
        if ambiguous.any():  # those rows keep the built values (counted in the parity)
            values = values.astype(object).where(~ambiguous, laps[name].astype(object).to_numpy())
        out[name] = _like(values, laps[name])
    result.seconds = time.perf_counter() - started
    return out, result


def parity(direct: pd.DataFrame, via_feast: pd.DataFrame, names: list[str], service: str = "") -> Parity:
    """Cells of ``names`` where the two tables differ (numbers by more than 1e-9, or null on one side)."""
    result = Parity(service, len(direct), len(names))
    if len(direct) != len(via_feast):
        raise ValueError(f"{service}: Feast returned {len(via_feast)} rows for {len(direct)}")
    bad = np.zeros(len(direct), dtype=bool)
    for name in names:
        a = direct[name].reset_index(drop=True)
        b = via_feast[name].reset_index(drop=True).astype(object)
        differs = a.isna().to_numpy() != b.isna().to_numpy()
        both = (a.notna() & b.notna()).to_numpy()
        if both.any():
            av, bv = a[both].astype(object).to_numpy(), b[both].astype(object).to_numpy()
            differs[both] = [not _same(x, y) for x, y in zip(av, bv, strict=True)]
        result.mismatched_cells += int(differs.sum())
        bad |= differs
    result.mismatched_rows = [int(i) for i in np.flatnonzero(bad)]
    return result


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool | np.bool_) or isinstance(b, bool | np.bool_):
        return bool(a) == bool(b)
    if isinstance(a, int | float | np.number) and isinstance(b, int | float | np.number):
        return math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=TOLERANCE)
    return str(a) == str(b)


class FeastRows:
    """What ``stratx train`` reads through Feast: opened once per run (store set up, the built table
    written to the offline parquet), then one point-in-time read per model's FeatureService."""

    def __init__(self, store: FeatureStore, laps: pd.DataFrame) -> None:
        self.store, self.laps = store, laps
        self.parities: list[Parity] = []

    @classmethod
    def open(cls, settings: FeastSettings, laps: pd.DataFrame) -> FeastRows:
        started = time.perf_counter()
        store = fs.setup_store(settings)
        path = write_offline_table(store, laps)
        print(f"feast: {len(laps)} driver-laps written to {path} in {time.perf_counter() - started:.1f} s")
        return cls(store, laps)

    def corpus(self, recipe: base.Recipe, corpus: base.Corpus) -> base.Corpus:
        """``corpus`` with its lap table read through the recipe's FeatureService (same rows)."""
        laps, result = read_service(self.store, recipe.feature_service, corpus.laps)
        self.parities.append(result)
        print(f"feast {result.summary()}")
        return dataclasses.replace(corpus, laps=laps)
