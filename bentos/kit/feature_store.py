"""Feast reads for the per-lap families: open and apply the repo, look up a versioned
FeatureService, read it online (by entity key) or point-in-time offline (for training).

The definitions live in ``feature_repo/`` (declarative, see its README). Both readers import this
module without the streaming kit: the model services' ``predict_by_key`` (online store) and
``stratx train`` (offline store, ``bentos/lifecycle/feast_training.py``). The writers (the streaming
apps' pushes and the offline parquet) are :mod:`stratx.quix_apps.kit.feature_store`, which re-exports
everything here (the public import path of the push side).

* :func:`open_store` builds a ``FeatureStore`` from ``feature_repo/feature_store.yaml`` with
  ``${STRATX_FEAST_DATA_DIR}`` filled from an argument (no process-wide env change) and with
  Feast's ``repo_path`` set to the data dir, so the relative ``lap_features.parquet`` of the
  FileSource lands there too (:func:`apply_repo` registers it by absolute path under the data dir).
* :func:`apply_repo` registers every definition programmatically (what ``feast apply`` does), so
  set-up needs no manual CLI step.

Feast, yaml and SQLAlchemy are imported inside the functions that use them, and the settings
(``stratx.functions.settings.FeastSettings``) are passed in: this module ships in every Bento's
serving wheel, where a model service that is never asked by key needs neither.
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
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from stratx.bentos.kit.feature_store_frames import (
    _PANDAS_DTYPES,
    AGGRESSION_SCHEMA,
    ENTITY_KEYS,
    EVENT_TIMESTAMP,
    LAP_SCHEMA,
    PUSH_SOURCE,
)

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore
    from feast.feast_object import FeastObject
    from feast.repo_config import RepoConfig

    from stratx.functions.settings import FeastSettings

DATA_DIR_VAR = "STRATX_FEAST_DATA_DIR"
APPLY_ATTEMPTS = 3
FEATURE_REPO = Path(__file__).resolve().parents[2] / "feature_repo"
"""The repo's ``feature_repo/`` (FeastSettings' default; entry points pass theirs)."""


# ------------------------------------------------------------------ store and repo
def repo_config(repo_dir: Path, data_dir: Path, redis_connection: str | None = None) -> RepoConfig:
    """``feature_store.yaml`` read the way Feast reads it, with the data dir filled in.

    With ``redis_connection`` (``STRATX_FEAST_REDIS_CONNECTION``, "host:port[,password=...,ssl=true]")
    the online store is Redis instead of the yaml's SQLite file, so app replicas on several
    machines share it; the registry and offline store stay as configured. Nothing connects here.
    """
    import yaml
    from feast.repo_config import RepoConfig

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

    Entry points should pass them (from ``FeastSettings``, see :func:`setup_store`); when
    ``repo_dir`` or ``data_dir`` is missing, all three are read from the environment through
    FeastSettings.
    """
    from feast import FeatureStore

    if repo_dir is None or data_dir is None:
        from stratx.functions.settings import FeastSettings

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
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

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
    from sqlalchemy.exc import SQLAlchemyError

    objects = load_definitions(repo_dir or _REPO_DIRS.get(store, FEATURE_REPO))
    _absolute_files(objects, Path(store.repo_path))
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


def _absolute_files(objects: Sequence[FeastObject], base: Path) -> None:
    """Point every FileSource of ``objects`` (on its own, behind a PushSource or a FeatureView) at
    its parquet under ``base`` by absolute path. The definitions keep the path relative to the data
    dir, but Feast's DuckDB offline store reads a FileSource's path as given (relative to the
    process's working directory), unlike its writers and the file store."""
    from feast.infra.offline_stores.file_source import FileSource

    for obj in objects:
        for source in (obj, getattr(obj, "batch_source", None)):
            if isinstance(source, FileSource) and not source.path.startswith(("/", "s3://", "gs://")):
                source.file_options.uri = str(FileSource.get_uri_for_file_path(str(base), source.path))


def setup_store(settings: FeastSettings) -> FeatureStore:
    """Open the configured store and apply the repo: all a deployable needs before pushing or reading."""
    store = open_store(settings.feast_repo, settings.feast_data_dir, settings.feast_redis_connection)
    apply_repo(store, settings.feast_repo)
    return store


# ------------------------------------------------------------------ reads
def offline_path(store: FeatureStore, push_source: str = PUSH_SOURCE) -> Path:
    """The parquet the registry's push source writes to (its FileSource), resolved like Feast resolves it."""
    from feast.infra.offline_stores.file_source import FileSource

    source = store.get_data_source(push_source)
    batch = getattr(source, "batch_source", None)
    if not isinstance(batch, FileSource):
        raise TypeError(f"{push_source} has no FileSource batch source")
    return Path(FileSource.get_uri_for_file_path(store.config.repo_path, batch.path))


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


def service_features(store: FeatureStore, name: str) -> list[str]:
    """The feature names the service holds, in its order (entity keys not included)."""
    service = feature_service(store, name)
    return [f.name for projection in service.feature_view_projections for f in projection.features]


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
    # join keys typed like the parquet columns (to_frame's nullable dtypes)
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
