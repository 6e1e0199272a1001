"""What each model cannot answer without: the one rule that turns a request whose inputs are
missing into ``Status="unavailable"`` with the reason, instead of a number made from defaults.

Each model's needs come from its recipe (:func:`needs`): every field named here is checked
against the recipe's own feature list when the table is built, so a need can never outlive the
feature it names. A need holds when at least ``at_least`` of its ``fields`` have a value (not
None, not NaN) in the request row the model scores. Everything else a recipe reads may be
missing: LightGBM routes missing values by design, the answer is then less informed, not wrong.

| model | needs | why, from the recipe |
| --- | --- | --- |
| lap_time | ``Last3Median`` or ``LapTime`` | the prediction is the anchor (the first of them) plus a correction: without one it is NaN |
| tyre_deg | ``TyreLife`` | the rate is read along tyre life (monotone in it) and ``FalloffScore`` multiplies by it (a missing one counts as 0 laps) |
| pit_window | ``TyreLife`` | the stop hazard is a function of tyre age (monotone in it); the window ages it lap by lap. On the 464 unseen-export laps without it: Pit3 AUC 0.61 (0.78 with it), Brier 0.052, worse than the constant base rate (0.048) |
| overtake | ``IntervalAhead`` (pair row) | the gap to the car ahead is the model's first feature and the baseline's only one |
| anomaly | 3 of ``LAP_SIGNALS`` (4 speed traps, LapTime) | the lap statistic is the median of >= ``MIN_LAP_SIGNALS`` signal deficits, else NaN |

Which real sessions lack what (measured on the data in ``data/``; tests in
``tests/functions/models/test_model_inputs.py``). lap_time: laps without a LapTime before the car's
first clean lap: mostly lap 1, whose LapTime FastF1 takes from Ergast and the caches often lack
(2023 Las Vegas, 660 laps of the FastF1 exports; 2023 Las Vegas also laps 3-6 behind the early
safety car; OpenF1 times lap 1). tyre_deg and pit_window: a live OpenF1
session before its ``/stints`` records come (every car), 60 of 39,774 FastF1-export laps and 467
of 36,559 laps of the unseen races in ``data/corpus/lap_exports`` (446 of them every car's first
stint of 2025 Miami). Those exports have no timing stream, positions or race control, but no model
reads them (gaps come from the line crossings). No car telemetry (the free feed since the 2025
Dutch GP): no model needs it (the anomaly window level is offline only).

Pure, and light to import: the recipes (pandas) are imported on the first call of :func:`needs`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stratx.functions.models.registry import MODEL_KEYS


@dataclass(frozen=True)
class Need:
    """An input a model cannot answer without: at least ``at_least`` of ``fields`` (fields of the
    request row the model scores) have a value. ``reason``: the one-line Reason when they do not
    (``{have}``: how many did)."""

    fields: tuple[str, ...]
    at_least: int
    reason: str

    def unmet(self, row: Mapping[str, Any]) -> str | None:
        have = sum(1 for f in self.fields if present(row.get(f)))
        return None if have >= self.at_least else self.reason.format(have=have)


def present(value: Any) -> bool:
    """A value the model can use: not None, not NaN or infinite."""
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def _need(features: tuple[str, ...], fields: tuple[str, ...], at_least: int, reason: str) -> Need:
    unknown = [f for f in fields if f not in features]
    if unknown:
        raise ValueError(f"{unknown} are not among the recipe's features: a need names what the model reads")
    return Need(fields, at_least, reason)


@functools.cache
def needs() -> dict[str, tuple[Need, ...]]:
    """Per model key, what its recipe cannot answer without (module doc)."""
    from stratx.functions.models import anomaly_rows, lap_time, overtake_pairs, pit_window_labels
    from stratx.functions.models import tyre_deg_labels as tyre

    no_life = "no tyre life for this car in this feed yet (TyreLife: no stint data)"
    signals = ", ".join(anomaly_rows.LAP_SIGNALS)
    return {
        "lap_time": (
            _need(
                lap_time.SERVICE_FEATURES,
                lap_time.ANCHOR_INPUTS,
                1,
                "no lap time for this car yet (LapTime, Last3Median): nothing for the model to correct",
            ),
        ),
        "tyre_deg": (_need(tyre.SERVICE_FEATURES, ("TyreLife",), 1, no_life),),
        "pit_window": (_need(pit_window_labels.FEATURES, ("TyreLife",), 1, no_life),),
        "overtake": (
            _need(overtake_pairs.FEATURES, ("IntervalAhead",), 1, "no gap to the car ahead in this feed"),
        ),
        "anomaly": (
            _need(
                anomaly_rows.SERVICE_FEATURES,
                anomaly_rows.LAP_SIGNALS,
                anomaly_rows.MIN_LAP_SIGNALS,
                f"{{have}} of the {len(anomaly_rows.LAP_SIGNALS)} lap signals in this feed ({signals}): "
                f"the score needs {anomaly_rows.MIN_LAP_SIGNALS}",
            ),
        ),
    }


def missing(key: str, row: Mapping[str, Any]) -> str | None:
    """Why model ``key`` cannot answer for request row ``row`` (the row it scores: the lap record;
    for overtake, the pair row), or None when it can. Causal: reads that row only."""
    if key not in MODEL_KEYS:
        raise ValueError(f"unknown model {key!r}; known: {', '.join(MODEL_KEYS)}")
    for need in needs().get(key, ()):
        reason = need.unmet(row)
        if reason is not None:
            return reason
    return None
