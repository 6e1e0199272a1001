"""What a drift run compares and how: the session's current window of LapFeatures rows read from
the broker and who the session is (:func:`current_session`), and Evidently's DataDriftPreset with
its HTML report (:func:`compare_like`: the calibrated like-with-like comparison;
:func:`compare_views`: default tests, for the predictions). Re-exported by
:mod:`stratx.quix_apps.drift`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from stratx.functions import catalog, drift, drift_like
from stratx.functions.kafka_auth import PLAINTEXT, KafkaAuth
from stratx.functions.settings import DriftSettings
from stratx.quix_apps.drift_reference import RaceReference
from stratx.quix_apps.kit import kafka_io


class NoData(Exception):
    """Nothing to compare yet (no lap features of the session on the topic)."""


@dataclass(frozen=True)
class Session:
    """The compared session: its windowed rows, and what the reference needs to know about it."""

    key: int
    window: pd.DataFrame
    start: str | None  # first lap-end Date (ISO): the reference holds races that started before
    event_name: str | None
    year: int | None


# ------------------------------------------------------------------ current window
def read_records(broker_address: str, topic: str, auth: KafkaAuth = PLAINTEXT) -> list[dict[str, Any]]:
    return [
        json.loads(m.value() or b"{}")
        for m in kafka_io.read_all(broker_address, topic, drain_s=0.5, auth=auth)
    ]


def current_window(settings: DriftSettings, session_key: int | None) -> tuple[int, pd.DataFrame]:
    """(session key, its windowed LapFeatures rows) from ``stratx.features.lap``."""
    found = current_session(settings, session_key, with_info=False)
    return found.key, found.window


def current_session(settings: DriftSettings, session_key: int | None, with_info: bool = True) -> Session:
    """The session's windowed LapFeatures rows (``stratx.features.lap``) and its event and year
    (``stratx.raw.session_info``, when ``with_info``)."""
    records = read_records(settings.broker_address, catalog.FEATURES_LAP.name, settings.kafka_auth())
    key = session_key if session_key is not None else drift.latest_session(records)
    if key is None:
        raise NoData(f"no lap features on {catalog.FEATURES_LAP.name} yet")
    rows = pd.DataFrame([r for r in records if r.get("SessionKey") == key])
    if rows.empty:
        raise NoData(f"no lap features of session {key} on {catalog.FEATURES_LAP.name}")
    rows = rows.drop_duplicates(["DriverNumber", "LapNumber"], keep="last")
    window = drift.session_window(rows, key, settings.drift_window_laps, settings.drift_window_minutes)
    dates = rows["Date"].dropna().astype(str) if "Date" in rows else pd.Series(dtype=str)
    start = str(dates.min()) if len(dates) else None
    event, year = None, None
    if with_info:
        info = [
            r
            for r in read_records(settings.broker_address, catalog.SESSION_INFO.name, settings.kafka_auth())
            if r.get("SessionKey") == key
        ]
        if info:
            event, year = str(info[-1]["EventName"]), int(info[-1]["Year"])
    return Session(key, window.reset_index(drop=True), start, event, year)


# ------------------------------------------------------------------ Evidently
def evidently_run(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    thresholds: Mapping[str, float] | None = None,
) -> Any:
    """Evidently's DataDriftPreset of ``current`` vs ``reference``; the Snapshot. Without
    ``thresholds``: its default per-column tests; with them: the normed Wasserstein distance
    (numbers) and Jensen-Shannon distance (``Compound``), drift at/above each column's threshold.
    Its import and run warn (numpy/pandas deprecations) and are silenced here only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        if thresholds is None:
            return Report([DataDriftPreset()], include_tests=True).run(current, reference)
        methods = {c: drift_like.method_of(reference[c]) for c in reference.columns}
        definition = DataDefinition(
            numerical_columns=[c for c, m in methods.items() if m == drift_like.NUMERICAL_METHOD],
            categorical_columns=[c for c, m in methods.items() if m == drift_like.CATEGORICAL_METHOD],
        )
        preset = DataDriftPreset(per_column_method=methods, per_column_threshold=dict(thresholds))
        return Report([preset], include_tests=True).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )


def compare_like(window: pd.DataFrame, race: RaceReference, html: Path) -> drift.DriftResult:
    """The window (laps up to its last lap) against the reference races cut the same way, each
    column at its calibrated threshold (``functions/drift_like.py``); writes the HTML report."""
    last_lap = int(window["LapNumber"].max())
    current = drift_like.like_view(window, race.speeds)
    pool = race.pool(last_lap)
    thresholds = race.thresholds(last_lap)
    columns = [c for c in current.columns if c in thresholds and c in pool and current[c].notna().any()]
    columns = [c for c in columns if pool[c].notna().any()]
    snapshot = evidently_run(current[columns], pool[columns], {c: thresholds[c] for c in columns})
    return _save(snapshot, html)


def compare(current: pd.DataFrame, reference: pd.DataFrame, html: Path) -> drift.DriftResult:
    """Compare the (pooled, uncalibrated) drift views of two LapFeatures frames; writes the HTML."""
    return compare_views(drift.feature_view(current), drift.feature_view(reference), html)


def compare_views(current: pd.DataFrame, reference: pd.DataFrame, html: Path) -> drift.DriftResult:
    """Evidently's default tests on the comparable columns of two views; writes the HTML report."""
    columns = drift.select_columns(reference, current)
    return _save(evidently_run(current[columns], reference[columns]), html)


def _save(snapshot: Any, html: Path) -> drift.DriftResult:
    html.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot.save_html(str(html))
        return drift.read_snapshot(snapshot.dict())
