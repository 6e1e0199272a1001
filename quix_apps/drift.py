"""`stratx drift`: Evidently data drift of a live session against the training reference.

One run (:func:`run_once`), comparing like with like (``functions/drift_like.py``):

1. the *reference*: every training race's LapFeatures rows (``base.race_split`` == train,
   optionally only the seasons in ``STRATX_DRIFT_REFERENCE_YEARS``), built once with the offline
   feature functions and saved as ``reference_races_<years>.parquet`` in the reports folder, its
   parquet metadata carrying the data snapshot hash (``training.snapshot_hash``), the races and
   when each started; ``--rebuild-reference`` rebuilds it (~15 s). For the session, only the races
   that started before it count (causal), with their leave-one-race-out calibration of every
   column's threshold (cached as ``calibration_<hash>.json``, ~10-30 s the first time);
2. the *current window*: the session's records on ``stratx.features.lap`` (the latest session
   unless one is given), laps 1..N so far (or its last N laps / T minutes), its event and year
   from ``stratx.raw.session_info`` (the circuit's reference speeds);
3. Evidently's ``DataDriftPreset`` on the circuit-free view, the reference races cut at the same
   lap, each column at its calibrated threshold (``per_column_threshold``); ``drift_<session>_<UTC
   time>.html`` and a ``.json`` summary in the reports folder (the last :data:`KEEP_HTML` HTML
   reports of a session are kept, ~4 MB each; every JSON summary is kept);
4. Prometheus gauges (exported by ``metrics.serve("drift")`` when metrics are on) and, when the
   share of drifted columns crosses ``STRATX_DRIFT_THRESHOLD``, one Alert record (Type ``drift``,
   ``DriverNumber`` "0" = the whole session) on ``stratx.alerts``; the alarm state per session is
   kept in ``alarm_state.json`` so repeated runs (``--every``, or one-shot runs) raise one alert
   per crossing; a session counts as disarmed only while the broker holds its drift alert, so a
   replay of the same session into a fresh broker starts armed.

The reference lives in :mod:`~stratx.quix_apps.drift_reference`, the current window and the
Evidently comparison in :mod:`~stratx.quix_apps.drift_compare`, the prediction comparison in
:mod:`~stratx.quix_apps.drift_predictions` and the offline measurement (with the SYNTHETIC
injected shifts and the backtest's drift section) in :mod:`~stratx.quix_apps.drift_measure`; this
module holds one run and the job, and re-exports the rest (the public import path).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prometheus_client import Counter, Gauge

from stratx.functions import catalog, drift, schemas
from stratx.functions.kafka_auth import PLAINTEXT, KafkaAuth
from stratx.functions.settings import DriftSettings
from stratx.quix_apps.drift_compare import (
    NoData,
    Session,
    compare,
    compare_like,
    compare_views,
    current_session,
    current_window,
    evidently_run,
    read_records,
)
from stratx.quix_apps.drift_predictions import (
    PREDICTION_MODELS,
    ROW_KEYS,
    PredictionReference,
    champion_predictions,
    current_predictions,
    load_champions,
    prediction_reference,
)
from stratx.quix_apps.drift_reference import (
    META_KEY,
    REFERENCE_SEED,
    RaceReference,
    Reference,
    build_reference,
    load_reference,
    race_reference,
    reference_path,
)
from stratx.quix_apps.kit import kafka_io

__all__ = [
    "DRIFT_DETECTED",
    "DRIFT_RUNS",
    "DRIFT_SHARE",
    "FEATURE_DRIFT_SCORE",
    "KEEP_HTML",
    "META_KEY",
    "METRIC_NAMES",
    "PREDICTION_MODELS",
    "REFERENCE_SEED",
    "ROW_KEYS",
    "STATE_FILE",
    "NoData",
    "PredictionReference",
    "RaceReference",
    "Reference",
    "Session",
    "build_reference",
    "champion_predictions",
    "compare",
    "compare_like",
    "compare_views",
    "current_predictions",
    "current_session",
    "current_window",
    "describe",
    "drift_alerted",
    "evidently_run",
    "latest_summary",
    "load_champions",
    "load_reference",
    "prediction_reference",
    "race_reference",
    "read_records",
    "reference_path",
    "run_job",
    "run_once",
    "serve_metrics",
    "set_gauges",
]

log = logging.getLogger(__name__)
KEEP_HTML = 10
METHOD = (
    "like with like: circuit-free view, reference races before the session cut at the same lap, "
    "per-column thresholds from leave-one-race-out distances (functions/drift_like.py)"
)
STATE_FILE = "alarm_state.json"

DRIFT_SHARE = Gauge(
    "stratx_drift_share", "share of compared columns Evidently found drifted, last run", ["dataset"]
)
DRIFT_DETECTED = Gauge(
    "stratx_drift_detected", "1 when the last run's drift share reached STRATX_DRIFT_THRESHOLD", ["dataset"]
)
FEATURE_DRIFT_SCORE = Gauge(
    "stratx_feature_drift_score",
    "Evidently's drift score of one column, last run (Wasserstein distance (normed) for numbers, "
    "Jensen-Shannon distance for categories; features: each compared with its calibrated threshold)",
    ["dataset", "feature"],
)
DRIFT_RUNS = Counter("stratx_drift_runs", "drift runs completed (windows compared)")
METRIC_NAMES = (
    "stratx_drift_share",
    "stratx_drift_detected",
    "stratx_feature_drift_score",
    "stratx_drift_runs_total",
)


# ------------------------------------------------------------------ one run
def _load_state(folder: Path) -> dict[str, bool]:
    path = folder / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_state(folder: Path, state: dict[str, bool]) -> None:
    (folder / STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")


def _prune(folder: Path, session_key: int) -> None:
    for old in sorted(folder.glob(f"drift_{session_key}_*.html"))[:-KEEP_HTML]:
        old.unlink(missing_ok=True)


def drift_alerted(broker_address: str, session_key: int, dataset: str, auth: KafkaAuth = PLAINTEXT) -> bool:
    """Whether ``stratx.alerts`` holds a drift alert of this session and dataset."""
    return any(
        a.get("Type") == "drift" and a.get("SessionKey") == session_key and a.get("Model") == dataset
        for a in read_records(broker_address, catalog.ALERTS.name, auth)
    )


def set_gauges(dataset: str, result: drift.DriftResult, threshold: float) -> None:
    DRIFT_SHARE.labels(dataset).set(result.share)
    DRIFT_DETECTED.labels(dataset).set(1.0 if result.share >= threshold else 0.0)
    for column in result.columns:
        FEATURE_DRIFT_SCORE.labels(dataset, column.column).set(column.score)
    DRIFT_RUNS.inc()


def run_once(
    settings: DriftSettings,
    reference: Reference,
    session_key: int | None = None,
    now: datetime | None = None,
    predictions: PredictionReference | None = None,
) -> dict[str, Any]:
    """One comparison (module doc); returns the JSON summary it wrote. Top level: the lap features
    (``status`` ``ok``, or ``skipped`` when the window has fewer than ``drift_min_rows`` rows);
    ``predictions``: the same for the champions' prediction values (when ``predictions`` is given)."""
    now = now or datetime.now(UTC)
    session = current_session(settings, session_key)
    key, window = session.key, session.window
    folder = settings.drift_reports_dir
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"drift_{key}_{now.strftime('%Y%m%dT%H%M%S%fZ')}"
    summary: dict[str, Any] = {
        "session_key": key,
        "dataset": drift.FEATURES,
        "run_at": now.isoformat(),
        "window": {
            "laps": settings.drift_window_laps,
            "minutes": settings.drift_window_minutes,
            "rows": len(window),
            "first_lap": int(window["LapNumber"].min()) if len(window) else None,
            "last_lap": int(window["LapNumber"].max()) if len(window) else None,
        },
        "reference": {
            "path": str(reference.path),
            "snapshot_hash": reference.snapshot_hash,
            "races_before_session": None,
            "event": session.event_name,
            "year": session.year,
        },
        "threshold": settings.drift_threshold,
        "rearm_share": settings.drift_rearm_share,
    }
    if len(window) < settings.drift_min_rows:
        summary.update(
            status="skipped", reason=f"{len(window)} rows < STRATX_DRIFT_MIN_ROWS {settings.drift_min_rows}"
        )
        return _written(folder / f"{stem}.json", summary, key)
    try:
        race = race_reference(
            settings, reference, session.start, session.event_name, session.year, settings.drift_window_laps
        )
    except ValueError as exc:  # too few reference races before this session
        summary.update(status="skipped", reason=str(exc))
        return _written(folder / f"{stem}.json", summary, key)
    summary["reference"].update(
        races_before_session=len(race.races), speeds=race.speeds, notes=race.notes, method=METHOD
    )
    result = compare_like(window, race, folder / f"{stem}.html")
    summary.update(_dataset(settings, key, drift.FEATURES, result, window, folder / f"{stem}.html", now))
    if predictions is not None:
        current = current_predictions(settings, key, window)
        if len(current) < settings.drift_min_rows:
            summary[drift.PREDICTIONS] = {
                "status": "skipped",
                "reason": f"{len(current)} predicted driver-laps < {settings.drift_min_rows}",
            }
        else:
            html = folder / f"{stem}_predictions.html"
            result = compare_views(current, predictions.values, html)
            found = _dataset(settings, key, drift.PREDICTIONS, result, window, html, now)
            summary[drift.PREDICTIONS] = {
                **found,
                "rows": len(current),
                "model_versions": predictions.versions,
            }
    return _written(folder / f"{stem}.json", summary, key)


def _written(path: Path, summary: dict[str, Any], session_key: int) -> dict[str, Any]:
    """Every run leaves its summary, a skipped one too (with the reason), so the newest summary
    always says what the job last did."""
    path.write_text(json.dumps(summary, indent=1) + "\n")
    _prune(path.parent, session_key)
    return summary


def _dataset(
    settings: DriftSettings,
    key: int,
    dataset: str,
    result: drift.DriftResult,
    window: pd.DataFrame,
    html: Path,
    now: datetime,
) -> dict[str, Any]:
    """One dataset's comparison: gauges, alarm, maybe an alert; its part of the summary."""
    set_gauges(dataset, result, settings.drift_threshold)
    state = _load_state(html.parent)
    state_key = f"{key}:{dataset}"
    # disarmed only while this broker holds the alert that disarmed it (a replay of the same session
    # into a fresh broker starts armed)
    armed = state.get(state_key, True) or not drift_alerted(
        settings.broker_address, key, dataset, settings.kafka_auth()
    )
    armed, fire = drift.alarm_step(armed, result.share, settings.drift_threshold, settings.drift_rearm_share)
    alert = None
    if fire and dataset in drift.alert_datasets(settings.drift_alert_datasets):
        alert = schemas.Alert.model_validate(
            drift.drift_alert(key, dataset, result, settings.drift_threshold, window, now)
        ).model_dump(mode="json")
        kafka_io.produce_json(
            settings.broker_address,
            catalog.ALERTS.name,
            f"{key}:{drift.SESSION_WIDE_DRIVER}",
            alert,
            auth=settings.kafka_auth(),
        )
    state[state_key] = armed
    _save_state(html.parent, state)
    return {
        "status": "ok",
        "share": result.share,
        "drifted": len(result.drifted),
        "compared": len(result.columns),
        "detected": result.share >= settings.drift_threshold,
        "alert": alert,
        "html": str(html),
        "columns": drift.column_summary(result),
    }


def latest_summary(folder: Path, session_key: int | None = None) -> dict[str, Any] | None:
    """The newest JSON summary in ``folder`` (of one session, or any), or None."""
    pattern = f"drift_{session_key}_*.json" if session_key is not None else "drift_*_*.json"
    found = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)
    return json.loads(found[-1].read_text()) if found else None


def describe(summary: dict[str, Any]) -> str:
    """One line for the terminal."""
    if summary.get("status") != "ok":
        return f"drift session {summary['session_key']}: skipped ({summary.get('reason')})"
    alert = "; drift alert raised" if summary.get("alert") else ""
    return (
        f"drift session {summary['session_key']}: {summary['drifted']}/{summary['compared']} columns drifted, "
        f"share {summary['share']:.3f} (threshold {summary['threshold']:.2f}, "
        f"{summary['window']['rows']} driver-laps){alert} -> {summary['html']}"
    ) + _describe_predictions(summary.get(drift.PREDICTIONS))


def _describe_predictions(found: dict[str, Any] | None) -> str:
    if found is None:
        return ""
    if found.get("status") != "ok":
        return f"; predictions skipped ({found.get('reason')})"
    alert = ", drift alert raised" if found.get("alert") else ""
    return f"; predictions: {found['drifted']}/{found['compared']} drifted, share {found['share']:.3f}{alert}"


# ------------------------------------------------------------------ the job
def serve_metrics(settings: DriftSettings) -> Any:
    """The drift job's /metrics exporter (``metrics.serve("drift")``), or None."""
    from stratx.quix_apps.kit import metrics

    return metrics.serve("drift", settings)


def run_job(
    settings: DriftSettings,
    session_key: int | None = None,
    every_s: float | None = None,
    max_runs: int | None = None,
    rebuild_reference: bool = False,
    stop: threading.Event | None = None,
) -> int:
    """One run (``every_s`` None) or a run every ``every_s`` seconds until ``stop``/``max_runs``/
    Ctrl-C. Periodic runs keep going when there is no data yet or the broker hiccups."""
    from confluent_kafka import KafkaException

    drift.alert_datasets(settings.drift_alert_datasets)  # a typo fails here, not after the first run
    if settings.drift_rearm_share > settings.drift_threshold:
        raise ValueError("STRATX_DRIFT_REARM_SHARE must not exceed STRATX_DRIFT_THRESHOLD")
    reference = load_reference(settings, rebuild=rebuild_reference)
    print(
        f"drift reference: {len(reference.rows)} driver-laps of {len(reference.races)} training races "
        "(compared: those before the session), "
        f"snapshot {reference.snapshot_hash[:12]} ({reference.path})",
        flush=True,
    )
    predictions = prediction_reference(settings, reference)
    if predictions is not None:
        versions = ", ".join(f"{k} v{v}" for k, v in predictions.versions.items())
        print(f"drift: predictions compared with the @champions' on the reference ({versions})", flush=True)
    if every_s is None:
        print(describe(run_once(settings, reference, session_key, predictions=predictions)), flush=True)
        return 0
    stop = stop or threading.Event()
    runs = 0
    while not stop.is_set() and (max_runs is None or runs < max_runs):
        started = time.monotonic()
        try:
            print(describe(run_once(settings, reference, session_key, predictions=predictions)), flush=True)
        except (NoData, KafkaException, TimeoutError) as exc:
            print(f"drift: {exc}", flush=True)
        runs += 1
        stop.wait(max(0.0, every_s - (time.monotonic() - started)))
    return 0


if __name__ == "__main__":
    from stratx.quix_apps.drift_measure import main

    main()
