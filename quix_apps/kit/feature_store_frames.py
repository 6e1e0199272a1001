"""Moved to :mod:`stratx.bentos.kit.feature_store_frames` (the read side needs it without the
streaming kit); this path re-exports it for the push side."""

from stratx.bentos.kit.feature_store_frames import (
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

__all__ = [
    "AGGRESSION_OFFLINE_FILE",
    "AGGRESSION_PUSH_SOURCE",
    "AGGRESSION_SCHEMA",
    "ENTITY_KEYS",
    "EVENT_TIMESTAMP",
    "LAP_SCHEMA",
    "OFFLINE_FILE",
    "OFFLINE_FILES",
    "PUSH_SOURCE",
    "ROW_KEY",
    "_PANDAS_DTYPES",
    "frame_schema",
    "to_frame",
]
