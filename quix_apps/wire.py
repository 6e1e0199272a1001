"""Decoding raw message bytes for the apps: never crash on a bad record, mark it for the dead letters."""

from __future__ import annotations

import json
from typing import Any

INVALID, RAW = "_invalid", "_raw"


def parse(raw: bytes | dict[str, Any] | None) -> dict[str, Any]:
    """Raw message bytes -> a dict; anything else becomes an ``INVALID`` marker with the reason.

    An already-decoded dict (``StreamingDataFrame.test`` feeds values, not bytes) passes through.
    """
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if raw is not None else None
    except (ValueError, TypeError) as exc:
        return {INVALID: f"not JSON: {exc}", RAW: (raw or b"")[:2000].decode("utf-8", "replace")}
    if not isinstance(value, dict):
        return {INVALID: f"not a JSON object: {type(value).__name__}", RAW: json.dumps(value)}
    return value


def is_invalid(value: dict[str, Any]) -> bool:
    return INVALID in value
