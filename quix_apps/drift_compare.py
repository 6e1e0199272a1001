"""What a drift run compares and how: the session's current window of LapFeatures rows read from
the broker (:func:`current_window`) and Evidently's DataDriftPreset on two views with its HTML
report (:func:`compare`, :func:`compare_views`). Re-exported by :mod:`stratx.quix_apps.drift`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from stratx.functions import catalog, drift
from stratx.functions.kafka_auth import PLAINTEXT, KafkaAuth
from stratx.functions.settings import DriftSettings
from stratx.quix_apps.kit import kafka_io


class NoData(Exception):
    """Nothing to compare yet (no lap features of the session on the topic)."""


# ------------------------------------------------------------------ current window
def read_records(broker_address: str, topic: str, auth: KafkaAuth = PLAINTEXT) -> list[dict[str, Any]]:
    return [
        json.loads(m.value() or b"{}")
        for m in kafka_io.read_all(broker_address, topic, drain_s=0.5, auth=auth)
    ]


def current_window(settings: DriftSettings, session_key: int | None) -> tuple[int, pd.DataFrame]:
    """(session key, its windowed LapFeatures rows) from ``stratx.features.lap``."""
    records = read_records(settings.broker_address, catalog.FEATURES_LAP.name, settings.kafka_auth())
    key = session_key if session_key is not None else drift.latest_session(records)
    if key is None:
        raise NoData(f"no lap features on {catalog.FEATURES_LAP.name} yet")
    rows = pd.DataFrame([r for r in records if r.get("SessionKey") == key])
    if rows.empty:
        raise NoData(f"no lap features of session {key} on {catalog.FEATURES_LAP.name}")
    rows = rows.drop_duplicates(["DriverNumber", "LapNumber"], keep="last")
    window = drift.session_window(rows, key, settings.drift_window_laps, settings.drift_window_minutes)
    return key, window.reset_index(drop=True)


# ------------------------------------------------------------------ Evidently
def evidently_run(current: pd.DataFrame, reference: pd.DataFrame) -> Any:
    """Evidently's DataDriftPreset (default per-column tests) of ``current`` vs ``reference``; the
    Snapshot. Its import and run warn (numpy/pandas deprecations) and are silenced here only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently import Report
        from evidently.presets import DataDriftPreset

        return Report([DataDriftPreset()], include_tests=True).run(current, reference)


def compare(current: pd.DataFrame, reference: pd.DataFrame, html: Path) -> drift.DriftResult:
    """Compare the drift views of two LapFeatures frames; writes the HTML report."""
    return compare_views(drift.feature_view(current), drift.feature_view(reference), html)


def compare_views(current: pd.DataFrame, reference: pd.DataFrame, html: Path) -> drift.DriftResult:
    """Evidently on the comparable columns of two views; writes the HTML report."""
    columns = drift.select_columns(reference, current)
    snapshot = evidently_run(current[columns], reference[columns])
    html.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot.save_html(str(html))
        return drift.read_snapshot(snapshot.dict())
