"""Prediction drift: the registry's ``@champion`` of each :data:`PREDICTION_MODELS` run in-process
on the reference rows (:func:`prediction_reference`) against the ``ok`` predictions the prediction
app published for the current window (:func:`current_predictions`). Re-exported by
:mod:`stratx.quix_apps.drift`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from stratx.functions import catalog, drift
from stratx.functions.settings import DriftSettings
from stratx.quix_apps.drift_compare import read_records
from stratx.quix_apps.drift_reference import Reference, prediction_rows

log = logging.getLogger(__name__)
# models whose service rows are the LapFeatures rows themselves (pit_window also needs the race
# distance, overtake pair rows, anomaly context rows: their predictions are not compared yet)
PREDICTION_MODELS = ("lap_time", "tyre_deg")
ROW_KEYS = ("SessionKey", "DriverNumber", "LapNumber")


@dataclass(frozen=True)
class PredictionReference:
    """The champions' predictions on the reference rows (:func:`drift.prediction_view` form)."""

    values: pd.DataFrame
    versions: dict[str, str]


def load_champions(settings: DriftSettings) -> dict[str, Any]:
    """The registry's ``@champion`` (``model_store.Registered``) of each :data:`PREDICTION_MODELS`
    that has one."""
    import tempfile

    from stratx.bentos.lifecycle import model_store

    found = {}
    for key in PREDICTION_MODELS:
        with tempfile.TemporaryDirectory(prefix=f"stratx-drift-{key}-") as tmp:  # boosters load into memory
            try:
                found[key] = model_store.load_registered(settings, key, dst=Path(tmp))
            except ValueError as exc:
                log.info("drift: predictions of %s not compared (%s)", key, exc)
    return found


def champion_predictions(champions: dict[str, Any], rows: pd.DataFrame) -> pd.DataFrame:
    """The champions' predictions on LapFeatures ``rows``, in-process, in the compared view form."""
    from stratx.functions import models

    rows = rows.reset_index(drop=True)
    frames = [
        models.recipe(key).predict(found.bundle, rows).reset_index(drop=True).select_dtypes(include="number")
        .add_prefix(f"{key}.")
        for key, found in champions.items()
    ]  # fmt: skip
    return drift.prediction_view(pd.concat([rows[list(ROW_KEYS)], *frames], axis=1), rows)


def prediction_reference(settings: DriftSettings, reference: Reference) -> PredictionReference | None:
    """Each :data:`PREDICTION_MODELS` ``@champion`` of the registry run in-process on a seeded
    sample of ``STRATX_DRIFT_REFERENCE_SIZE`` reference rows; None when no champion is registered (then predictions are not compared)."""
    champions = load_champions(settings)
    if not champions:
        return None
    versions = {key: str(found.version) for key, found in champions.items()}
    rows = prediction_rows(reference, settings.drift_reference_size)
    return PredictionReference(champion_predictions(champions, rows), versions)


def current_predictions(settings: DriftSettings, session_key: int, window: pd.DataFrame) -> pd.DataFrame:
    """The ``ok`` predictions of :data:`PREDICTION_MODELS` for the window's driver-laps (view form)."""
    records = [
        r
        for key in PREDICTION_MODELS
        for r in read_records(
            settings.broker_address, catalog.PREDICTION_TOPICS[key].name, settings.kafka_auth()
        )
        if r.get("SessionKey") == session_key
    ]
    frame = drift.prediction_frame(records)
    if frame.empty:
        return frame
    frame = frame.merge(window[list(ROW_KEYS)].astype({"DriverNumber": str}), on=list(ROW_KEYS))
    return drift.prediction_view(frame, window)
