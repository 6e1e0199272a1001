"""Feast I/O of the streaming apps for the per-lap families: push rows online, write history, and
(re-exported) open/apply the repo and read it.

The reading side (open and apply the repo, feature services, online and point-in-time reads) is
:mod:`stratx.bentos.kit.feature_store`, shared with the model services (``predict_by_key``) and
training, which must not import the streaming kit; the frame layout is
:mod:`stratx.bentos.kit.feature_store_frames`. This module re-exports both with the writes of
:mod:`~stratx.quix_apps.kit.feature_store_writes` (the public import path of the apps):

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

from feast import FeatureView

from stratx.bentos.kit.feature_store import (
    APPLY_ATTEMPTS,
    DATA_DIR_VAR,
    FEATURE_REPO,
    LOCK_FILE,
    apply_repo,
    feature_service,
    historical_features,
    load_definitions,
    online_features,
    open_store,
    registry_lock,
    repo_config,
    service_features,
    setup_store,
)
from stratx.bentos.kit.feature_store_frames import (
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
from stratx.functions.settings import FeastSettings
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
    "service_features",
    "setup_store",
    "to_frame",
    "write_offline",
]
