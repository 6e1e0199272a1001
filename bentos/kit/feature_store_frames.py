"""Frame layout of the per-lap Feast families: their push sources, parquet files and keys, and the
pyarrow schema and typed DataFrame built from each record model's fields.

:func:`frame_schema` derives the push/offline columns from a pydantic model (every field but
``v``, plus ``event_timestamp``) and :func:`to_frame` turns rows into a frame of exactly that
layout, so the online push and the offline parquet agree. Shipped in the serving kit (the services'
by-key reads and training read Feast through :mod:`stratx.bentos.kit.feature_store`); re-exported by
:mod:`stratx.quix_apps.kit.feature_store` (the push side).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from stratx.functions.schemas import LapAggression, LapFeatures

PUSH_SOURCE = "lap_features_push"
OFFLINE_FILE = "lap_features.parquet"
AGGRESSION_PUSH_SOURCE = "lap_aggression_push"
AGGRESSION_OFFLINE_FILE = "lap_aggression.parquet"
OFFLINE_FILES: dict[type[BaseModel], str] = {
    LapFeatures: OFFLINE_FILE,
    LapAggression: AGGRESSION_OFFLINE_FILE,
}
"""The parquet (in the data dir) of each family's FileSource, by record model."""
EVENT_TIMESTAMP = "event_timestamp"
ENTITY_KEYS = ("DriverNumber", "SessionKey")
ROW_KEY = ("SessionKey", "DriverNumber", "LapNumber")


# ------------------------------------------------------------------ frame layout
def _arrow_type(annotation: Any) -> pa.DataType:
    """Arrow type of one record-model field annotation (Optional stripped)."""
    if get_origin(annotation) in (Union, UnionType):
        (annotation,) = [a for a in get_args(annotation) if a is not type(None)]
    if annotation is bool:
        return pa.bool_()
    if annotation is int:
        return pa.int64()
    if annotation is float:
        return pa.float64()
    if annotation is str:
        return pa.string()
    if annotation is datetime:
        return pa.timestamp("ns", tz="UTC")
    raise TypeError(f"no arrow type for record field annotation {annotation!r}")


_SCHEMAS: dict[type[BaseModel], pa.Schema] = {}


def frame_schema(model: type[BaseModel] = LapFeatures) -> pa.Schema:
    """Columns of a family's push/offline frame: every ``model`` field but ``v``, plus event_timestamp."""
    schema = _SCHEMAS.get(model)
    if schema is None:
        fields = [
            pa.field(name, _arrow_type(info.annotation))
            for name, info in model.model_fields.items()
            if get_origin(info.annotation) is not Literal  # the `v` schema version
        ]
        schema = _SCHEMAS[model] = pa.schema(
            [*fields, pa.field(EVENT_TIMESTAMP, pa.timestamp("ns", tz="UTC"))]
        )
    return schema


LAP_SCHEMA = frame_schema(LapFeatures)
"""Columns of the lap-features push/offline frame: every LapFeatures field but ``v``, plus event_timestamp."""
AGGRESSION_SCHEMA = frame_schema(LapAggression)
"""Columns of the lap-aggression push/offline frame (LapAggression fields but ``v``, event_timestamp)."""

_PANDAS_DTYPES = {
    pa.bool_(): pd.BooleanDtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.float64(): pd.Float64Dtype(),
    pa.string(): pd.StringDtype(),
}


def to_frame(rows: Iterable[Mapping[str, Any]], model: type[BaseModel] = LapFeatures) -> pd.DataFrame:
    """``model`` dicts (LapFeatures by default, or LapAggression) -> the push/offline frame
    (nullable dtypes, event_timestamp = Date, UTC).

    Nulls stay nulls (pandas NA, never NaN), so the online store returns None for them. A row
    without Date cannot be placed in time and raises ValueError.
    """
    name = model.__name__
    records = []
    for row in rows:
        date = row.get("Date")
        if date is None:
            raise ValueError(
                f"{name} row of driver {row.get('DriverNumber')} lap {row.get('LapNumber')} has no "
                "Date (the session has no known t0), so it has no event time"
            )
        when = date if isinstance(date, datetime) else datetime.fromisoformat(str(date))
        if when.tzinfo is None:
            raise ValueError(f"{name} Date {date!r} has no time zone (expected UTC)")
        records.append({**row, "Date": when, EVENT_TIMESTAMP: when})
    table = pa.Table.from_pylist(records, schema=frame_schema(model))
    return table.to_pandas(types_mapper=_PANDAS_DTYPES.get)


def table_frame(table: pd.DataFrame, model: type[BaseModel] = LapFeatures) -> pd.DataFrame:
    """An offline-built table (``model`` fields as JSON-mode columns, e.g.
    ``feature_build.build_lap_table``; other columns such as Year and EventName are ignored) -> the
    push/offline frame :func:`to_frame` makes, built column by column (a whole corpus in ~1 s where
    row-wise :func:`to_frame` takes many). A field the table lacks is all null; a row without Date
    raises ValueError, as in :func:`to_frame`."""
    columns: dict[str, Any] = {}
    for field in frame_schema(model):
        if field.name == EVENT_TIMESTAMP:
            continue
        col = table[field.name] if field.name in table else pd.Series(None, index=table.index, dtype=object)
        if pa.types.is_timestamp(field.type):
            columns[field.name] = pd.to_datetime(col, utc=True, format="ISO8601")
        else:
            columns[field.name] = col.astype(_PANDAS_DTYPES[field.type])
    frame = pd.DataFrame(columns).reset_index(drop=True)
    if frame["Date"].isna().any():
        raise ValueError(
            f"{int(frame['Date'].isna().sum())} {model.__name__} rows have no Date (no event time)"
        )
    frame[EVENT_TIMESTAMP] = frame["Date"]
    return frame


def append_parquet(frame: pd.DataFrame, path: Path, schema: pa.Schema = LAP_SCHEMA) -> None:
    """Append ``frame`` to the parquet at ``path`` (atomic replace); a (SessionKey, DriverNumber,
    LapNumber) already in the file is replaced by the new row."""
    new = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    if path.exists():
        old = pq.read_table(path).cast(schema)
        keys = set(zip(*(new.column(k).to_pylist() for k in ROW_KEY), strict=True))
        old_keys = zip(*(old.column(k).to_pylist() for k in ROW_KEY), strict=True)
        old = old.filter(pa.array([k not in keys for k in old_keys], type=pa.bool_()))
        new = pa.concat_tables([old, new])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(new, tmp, compression="zstd")
    tmp.replace(path)
