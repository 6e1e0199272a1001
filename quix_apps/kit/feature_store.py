"""Feast I/O for the per-lap families: open and apply the repo, push rows online, write and read history.

The definitions live in ``feature_repo/`` (declarative, see its README). This module is the only
code that touches the Feast store:

* :func:`open_store` builds a ``FeatureStore`` from ``feature_repo/feature_store.yaml`` with
  ``${STRATX_FEAST_DATA_DIR}`` filled from an argument (no process-wide env change) and with
  Feast's ``repo_path`` set to the data dir, so the relative ``lap_features.parquet`` of the
  FileSource lands there too.
* :func:`apply_repo` registers every definition programmatically (what ``feast apply`` does), so
  set-up needs no manual CLI step.
* :func:`push_lap_features` writes LapFeatures rows to the online store through the PushSource;
  :func:`write_offline` appends them to the offline parquet for training.
* :func:`push_rows` does the same for any family by push source and record model, e.g. the
  LapAggression rows through ``lap_aggression_push`` (:data:`AGGRESSION_PUSH_SOURCE`); frames
  are built by :func:`to_frame` from the model's fields, so each family keeps its own parquet.

Push mode: ``PushMode.ONLINE_AND_OFFLINE`` is not used. Feast writes the pushed frame to the
offline store once per feature view fed by the push source, and all three lap views share one
parquet, so every row would land three times. ``to_offline=True`` pushes online and then appends
the rows once.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import queue
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import ModuleType, UnionType
from typing import Any, Literal, Union, get_args, get_origin

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from feast import Entity, FeatureService, FeatureStore, FeatureView
from feast.data_source import DataSource, PushMode
from feast.feast_object import FeastObject
from feast.infra.offline_stores.file_source import FileSource
from feast.repo_config import RepoConfig
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from stratx.functions.schemas import LapAggression, LapFeatures
from stratx.functions.settings import REPO_ROOT, FeastSettings

DATA_DIR_VAR = "STRATX_FEAST_DATA_DIR"
APPLY_ATTEMPTS = 3
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
FEATURE_REPO = REPO_ROOT / "feature_repo"


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


# ------------------------------------------------------------------ store and repo
def repo_config(repo_dir: Path, data_dir: Path, redis_connection: str | None = None) -> RepoConfig:
    """``feature_store.yaml`` read the way Feast reads it, with the data dir filled in.

    With ``redis_connection`` (``STRATX_FEAST_REDIS_CONNECTION``, "host:port[,password=...,ssl=true]")
    the online store is Redis instead of the yaml's SQLite file, so app replicas on several
    machines share it; the registry and offline store stay as configured. Nothing connects here.
    """
    text = (repo_dir / "feature_store.yaml").read_text()
    text = text.replace("${" + DATA_DIR_VAR + "}", str(data_dir.resolve()))
    raw = yaml.safe_load(os.path.expandvars(text))
    if redis_connection:
        raw["online_store"] = {"type": "redis", "redis_type": "redis", "connection_string": redis_connection}
    config = RepoConfig(**raw)
    config.repo_path = data_dir.resolve()
    return config


_REPO_DIRS: weakref.WeakKeyDictionary[FeatureStore, Path] = weakref.WeakKeyDictionary()
LOCK_FILE = ".stratx-feast.lock"


@contextlib.contextmanager
def registry_lock(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``data_dir`` across processes (``flock`` on a file in it).

    Feast's SQL registry creates its tables and applies objects check-then-insert, so two apps
    opening or applying the same fresh store at once fail with "table ... already exists" or a
    UNIQUE constraint (the quickstart starts the lap and aggression apps together). Opening and
    applying under this lock serializes them on one machine; ``apply_repo`` also retries for
    registries shared between machines.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_store(
    repo_dir: Path | None = None, data_dir: Path | None = None, redis_connection: str | None = None
) -> FeatureStore:
    """The Feast store of ``repo_dir`` keeping its registry, online store and parquet in ``data_dir``
    (the online store in Redis when ``redis_connection`` is given).

    Entry points should pass them (from :class:`FeastSettings`, see :func:`setup_store`); when
    ``repo_dir`` or ``data_dir`` is missing, all three are read from the environment through
    FeastSettings.
    """
    if repo_dir is None or data_dir is None:
        settings = FeastSettings()
        repo_dir = repo_dir or settings.feast_repo
        data_dir = data_dir or settings.feast_data_dir
        redis_connection = redis_connection or settings.feast_redis_connection
    config = repo_config(repo_dir, data_dir, redis_connection)
    with registry_lock(data_dir):
        store = FeatureStore(repo_path=str(data_dir.resolve()), config=config)
    _REPO_DIRS[store] = repo_dir
    return store


def load_definitions(repo_dir: Path) -> list[FeastObject]:
    """Every Feast object defined at module level in ``repo_dir/*.py`` (as ``feast apply`` collects them)."""
    found: list[FeastObject] = []
    for path in sorted(repo_dir.glob("*.py")):
        for obj in vars(_load_module(path)).values():
            if isinstance(obj, Entity | DataSource | FeatureView | FeatureService) and not any(
                obj is o for o in found
            ):
                found.append(obj)
    return found


def _load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"stratx_feature_repo.{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load Feast definitions from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def apply_repo(store: FeatureStore, repo_dir: Path | None = None) -> list[FeastObject]:
    """Register the repo's definitions in ``store`` (programmatic ``feast apply``); returns them.

    ``repo_dir`` defaults to the repo the store was opened from.
    """
    objects = load_definitions(repo_dir or _REPO_DIRS.get(store, FEATURE_REPO))
    for attempt in range(APPLY_ATTEMPTS):
        try:
            with registry_lock(store.repo_path):
                store.apply(objects)
            break
        except SQLAlchemyError:  # another machine applied the same object meanwhile: apply is idempotent
            if attempt == APPLY_ATTEMPTS - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    _SERVICES.pop(store, None)
    return objects


def setup_store(settings: FeastSettings) -> FeatureStore:
    """Open the configured store and apply the repo: all a deployable needs before pushing."""
    store = open_store(settings.feast_repo, settings.feast_data_dir, settings.feast_redis_connection)
    apply_repo(store, settings.feast_repo)
    return store


# ------------------------------------------------------------------ writes
def offline_path(store: FeatureStore, push_source: str = PUSH_SOURCE) -> Path:
    """The parquet the registry's push source writes to, resolved like Feast resolves it."""
    source = store.get_data_source(push_source)
    batch = getattr(source, "batch_source", None)
    if not isinstance(batch, FileSource):
        raise TypeError(f"{push_source} has no FileSource batch source")
    return Path(FileSource.get_uri_for_file_path(store.config.repo_path, batch.path))


def push_rows(
    store: FeatureStore,
    push_source: str,
    rows: Sequence[Mapping[str, Any]],
    model: type[BaseModel] = LapFeatures,
    to_offline: bool = False,
) -> int:
    """Push ``model`` rows through ``push_source`` to the online store (in the given order: last
    write wins per driver).

    With ``to_offline`` the rows are also appended once to the source's offline parquet. Returns
    the count.
    """
    if not rows:
        return 0
    frame = to_frame(rows, model)
    store.push(push_source, frame, to=PushMode.ONLINE)
    if to_offline:
        _append_parquet(frame, offline_path(store, push_source), frame_schema(model))
    return len(frame)


def push_lap_features(
    store: FeatureStore, rows: Sequence[Mapping[str, Any]], to_offline: bool = False
) -> int:
    """Push LapFeatures rows to the online store (in the given order: last write wins per driver).

    With ``to_offline`` the rows are also appended once to the offline parquet. Returns the count.
    """
    return push_rows(store, PUSH_SOURCE, rows, LapFeatures, to_offline)


def push_lap_aggression(
    store: FeatureStore, rows: Sequence[Mapping[str, Any]], to_offline: bool = False
) -> int:
    """Push LapAggression rows through ``lap_aggression_push`` (as :func:`push_lap_features`)."""
    return push_rows(store, AGGRESSION_PUSH_SOURCE, rows, LapAggression, to_offline)


class BackgroundPusher:
    """Callable sink for the stream: queues rows, a thread pushes them to Feast in batches.

    One Feast push costs ~18 ms whatever its size, so pushing row by row caps a full-speed replay
    at ~55 laps/s; batching what queued up meanwhile keeps the online store seconds behind at
    most, without slowing the stream. Within a batch only each driver's newest row is pushed (the
    online store keeps the latest value per entity anyway). ``close()`` drains the queue and
    raises if any push failed.

    ``push_source`` and ``model`` pick the family: LapFeatures through ``lap_features_push`` by
    default; ``BackgroundPusher(store, push_source=AGGRESSION_PUSH_SOURCE, model=LapAggression)``
    for the lap-aggression app.
    """

    def __init__(
        self,
        store: FeatureStore,
        max_batch: int = 1000,
        *,
        push_source: str = PUSH_SOURCE,
        model: type[BaseModel] = LapFeatures,
    ) -> None:
        self.store, self.max_batch = store, max_batch
        self.push_source, self.model = push_source, model
        self.pushed = 0
        self.errors: list[str] = []
        self._queue: queue.Queue[Mapping[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="feast-pusher", daemon=True)
        self._thread.start()

    def __call__(self, row: Mapping[str, Any]) -> None:
        self._queue.put(row)

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            batch = [first] if first is not None else []
            stop = first is None
            while not stop and len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                else:
                    batch.append(item)
            latest = {(r["SessionKey"], r["DriverNumber"]): r for r in batch}
            if latest:
                try:
                    push_rows(self.store, self.push_source, list(latest.values()), self.model)
                    self.pushed += len(batch)
                except Exception as exc:  # keep the stream alive; report at close
                    self.errors.append(f"{type(exc).__name__}: {exc}")

    def close(self, timeout_s: float = 60.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout_s)
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} Feast pushes failed; first: {self.errors[0]}")


def write_offline(
    rows: Sequence[Mapping[str, Any]], data_dir: Path, model: type[BaseModel] = LapFeatures
) -> Path:
    """Append ``model`` rows to the family's parquet in ``data_dir`` (training history; LapFeatures:
    ``lap_features.parquet``, LapAggression: ``lap_aggression.parquet``); returns the path.

    A row that repeats a (SessionKey, DriverNumber, LapNumber) already in the file replaces it,
    so rebuilding a race never leaves two versions of a lap for the point-in-time join.
    """
    path = data_dir / OFFLINE_FILES[model]
    if rows:
        data_dir.mkdir(parents=True, exist_ok=True)
        _append_parquet(to_frame(rows, model), path, frame_schema(model))
    return path


def _append_parquet(frame: pd.DataFrame, path: Path, schema: pa.Schema = LAP_SCHEMA) -> None:
    new = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    if path.exists():
        old = pq.read_table(path).cast(schema)
        keys = set(zip(*(new.column(k).to_pylist() for k in ROW_KEY), strict=True))
        old_keys = zip(*(old.column(k).to_pylist() for k in ROW_KEY), strict=True)
        old = old.filter(pa.array([k not in keys for k in old_keys], type=pa.bool_()))
        new = pa.concat_tables([old, new])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(new, tmp, compression="zstd")
    tmp.replace(path)


# ------------------------------------------------------------------ reads
_SERVICES: weakref.WeakKeyDictionary[FeatureStore, dict[str, tuple[float, FeatureService]]] = (
    weakref.WeakKeyDictionary()
)


def feature_service(store: FeatureStore, name: str) -> FeatureService:
    """The named FeatureService, kept per store for the registry's cache_ttl_seconds.

    Feast decodes the service from the registry proto on every lookup (~2 ms with its runtime
    type checks, more than the online read itself), so the hot read path keeps the object.
    """
    cached = _SERVICES.setdefault(store, {})
    now = time.monotonic()
    hit = cached.get(name)
    if hit is None or now - hit[0] > store.config.registry.cache_ttl_seconds:
        hit = cached[name] = (now, store.get_feature_service(name, allow_cache=True))
    return hit[1]


def online_features(
    store: FeatureStore, service_name: str, entity_rows: Sequence[Mapping[str, Any]]
) -> dict[str, list[Any]]:
    """The service's latest feature values per entity row ({"DriverNumber": "1", "SessionKey": k})."""
    rows = [dict(r) for r in entity_rows]
    return store.get_online_features(
        features=feature_service(store, service_name), entity_rows=rows
    ).to_dict()


def historical_features(store: FeatureStore, service_name: str, entity_df: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time values of the service's features for each entity row, in entity_df's order.

    ``entity_df`` has DriverNumber, SessionKey and event_timestamp (UTC). Each output row holds
    the values of the driver's latest lap that ended at or before its timestamp (within the
    views' ttl); rows with no such lap get nulls. (Feast's file store drops such rows when the
    driver has later laps; they are restored here so the output lines up with the input.)
    """
    service = feature_service(store, service_name)
    row_id = "__stratx_row"
    entities = entity_df.reset_index(drop=True)
    entities[EVENT_TIMESTAMP] = pd.to_datetime(entities[EVENT_TIMESTAMP], utc=True)
    # join keys typed like the parquet columns (to_frame's nullable dtypes), or dask warns
    entities = entities.astype({k: _PANDAS_DTYPES[LAP_SCHEMA.field(k).type] for k in ENTITY_KEYS})
    found = store.get_historical_features(
        entity_df=entities.assign(**{row_id: range(len(entities))}), features=service
    ).to_df()
    values = found.drop(columns=[c for c in entities.columns if c in found.columns])
    out = entities.assign(**{row_id: range(len(entities))}).merge(values, on=row_id, how="left")
    out = out.sort_values(row_id).drop(columns=row_id).reset_index(drop=True)
    return _nullable(out)


_FEATURE_TYPES = {f.name: f.type for schema in (LAP_SCHEMA, AGGRESSION_SCHEMA) for f in schema}
"""Arrow type of every column of every family (the families agree on the names they share)."""


def _nullable(frame: pd.DataFrame) -> pd.DataFrame:
    """Feature columns as pandas nullable dtypes (NaN-coded nulls from the offline join become NA)."""
    types = _FEATURE_TYPES
    for name in frame.columns:
        if name in types and name != EVENT_TIMESTAMP and not pa.types.is_timestamp(types[name]):
            frame[name] = frame[name].astype(_PANDAS_DTYPES[types[name]])
    return frame
