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

The frame layout lives in :mod:`~stratx.quix_apps.kit.feature_store_frames` and the writes in
:mod:`~stratx.quix_apps.kit.feature_store_writes`; this module opens and applies the repo and reads,
and re-exports both (the public import path).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pyarrow as pa
import yaml
from feast import Entity, FeatureService, FeatureStore, FeatureView
from feast.data_source import DataSource
from feast.feast_object import FeastObject
from feast.repo_config import RepoConfig
from sqlalchemy.exc import SQLAlchemyError

from stratx.functions.settings import REPO_ROOT, FeastSettings
from stratx.quix_apps.kit.feature_store_frames import (
    _PANDAS_DTYPES,
    AGGRESSION_OFFLINE_FILE,
    AGGRESSION_PUSH_SOURCE,
    AGGRESSION_SCHEMA,
    ENTITY_KEYS,
    EVENT_TIMESTAMP,
    LAP_SCHEMA,
    OFFLINE_FILE,
    OFFLINE_FILES,
    PUSH_SOURCE,
    ROW_KEY,
    frame_schema,
    to_frame,
)
from stratx.quix_apps.kit.feature_store_writes import (
    BackgroundPusher,
    offline_path,
    push_lap_aggression,
    push_lap_features,
    push_rows,
    write_offline,
)

__all__ = [
    "AGGRESSION_OFFLINE_FILE",
    "AGGRESSION_PUSH_SOURCE",
    "AGGRESSION_SCHEMA",
    "APPLY_ATTEMPTS",
    "DATA_DIR_VAR",
    "ENTITY_KEYS",
    "EVENT_TIMESTAMP",
    "FEATURE_REPO",
    "LAP_SCHEMA",
    "LOCK_FILE",
    "OFFLINE_FILE",
    "OFFLINE_FILES",
    "PUSH_SOURCE",
    "ROW_KEY",
    "BackgroundPusher",
    "FeastSettings",
    "FeatureView",
    "apply_repo",
    "feature_service",
    "frame_schema",
    "historical_features",
    "load_definitions",
    "offline_path",
    "online_features",
    "open_store",
    "push_lap_aggression",
    "push_lap_features",
    "push_rows",
    "registry_lock",
    "repo_config",
    "setup_store",
    "to_frame",
    "write_offline",
]

DATA_DIR_VAR = "STRATX_FEAST_DATA_DIR"
APPLY_ATTEMPTS = 3
FEATURE_REPO = REPO_ROOT / "feature_repo"


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
