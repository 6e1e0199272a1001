"""Feast writes of the per-lap families: push rows to the online store through a PushSource, append
them once to the family's offline parquet, and push from a background thread off the hot path.

Re-exported by :mod:`stratx.quix_apps.kit.feature_store`, whose docstring explains why
``PushMode.ONLINE_AND_OFFLINE`` is not used.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from feast import FeatureStore
from feast.data_source import PushMode
from pydantic import BaseModel

from stratx.bentos.kit.feature_store import offline_path
from stratx.bentos.kit.feature_store_frames import (
    AGGRESSION_PUSH_SOURCE,
    OFFLINE_FILES,
    PUSH_SOURCE,
    append_parquet,
    frame_schema,
    to_frame,
)
from stratx.functions.schemas import LapAggression, LapFeatures


# ------------------------------------------------------------------ writes
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
        append_parquet(frame, offline_path(store, push_source), frame_schema(model))
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
        append_parquet(to_frame(rows, model), path, frame_schema(model))
    return path
