"""Tune the safety-car / VSC pit-window rule (``functions/alerts.py: neutralisation_alerts``) offline.

Each race's raw laps, race-control messages and track status are folded in event-time order through
the race-state app's own steps (``race_state.retire_step``, ``neutralisations.neutral_step``; no car
positions, so the standing-car rule is off here), every deployment through
``neutralisation_alerts`` for each candidate pair of tyre-age thresholds, and the alerts are scored
with the backtest's scorer (``functions/backtest_alerts.py``: a stop within the announced window;
recall over every stop of the races). Chosen on the training and validation races
(:func:`choose`), reported on the test races. Called by ``python -m
stratx.bentos.lifecycle.alert_tuning``; the model's own windows are left out (in the stream a car
with one open gets no second alert), so these figures are the rule's alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from stratx.functions import alerts, backtest_alerts, ingest, neutralisations, race_state
from stratx.functions.racedata import RaceData

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SC_LIFE_GRID = (0.0, 3.0, 5.0, 8.0, 10.0)
VSC_LIFE_GRID = (5.0, 8.0, 10.0, 12.0, 15.0)
PRECISION_FLOOR = 0.55  # the target (0.50) with a margin: a setting on the edge misses on new races
TABLES = (
    ("laps", race_state.LAPS),
    ("race_control", race_state.RACE_CONTROL),
    ("track_status", race_state.TRACK_STATUS),
)


def deployments(races: Iterable[RaceData]) -> list[tuple[int, str, dict[str, Any]]]:
    """(Year, EventName, Neutralisation record) for every deployment of ``races``."""
    out = []
    for race in races:
        events = []
        for table, kind in TABLES:
            for r in ingest.table_records(race, table):
                checked = ingest.validate(r)
                if not isinstance(checked, ingest.Rejected):  # as the stream: rejected records dead-letter
                    events.append((kind, checked.model_dump(mode="json")))
        state = None
        for kind, record in sorted(events, key=lambda e: float(e[1]["SessionTime"])):
            state, _ = race_state.retire_step(state, kind, record)
            state, found = neutralisations.neutral_step(state, kind, record)
            out += [(race.meta.year, race.meta.event_name, d) for d in found]
    return out


def replay(deployed: Sequence[tuple[int, str, dict[str, Any]]], rules: alerts.Rules) -> pd.DataFrame:
    """The alerts the rule raises on the deployments (a fresh window table per race)."""
    rows: list[dict[str, Any]] = []
    windows: dict[tuple[int, str], alerts.Windows] = {}
    for year, event, record in deployed:
        shared = windows.setdefault((year, event), {})
        for a in alerts.neutralisation_alerts(record, shared, NOW, rules):
            rows.append({"Year": year, "EventName": event, **a})
    return pd.DataFrame(rows)


def tune(deployed: Sequence[tuple[int, str, dict[str, Any]]], truth: Any) -> list[dict[str, Any]]:
    """Per (SC, VSC) tyre-age pair: count, precision, recall over every stop (``truth``: the
    alert tuning's ``Truth``)."""
    rows = []
    for sc in SC_LIFE_GRID:
        for vsc in VSC_LIFE_GRID:
            rules = dataclasses.replace(alerts.RULES, sc_min_life=sc, vsc_min_life=vsc)
            s = score(replay(deployed, rules), truth)
            rows.append({"sc_min_life": sc, "vsc_min_life": vsc, **s})
    return rows


def score(found: pd.DataFrame, truth: Any) -> dict[str, Any]:
    if found.empty:
        return {"count": 0, "precision": None, "recall": None, "stops_announced": 0}
    s = backtest_alerts.score_alerts(found, truth.events, truth.hours).get("pit_window_open", {})
    precision = s.get("precision")
    return {
        "count": s.get("count", 0),
        "precision": precision,
        "recall": s.get("recall"),
        "recall_events": s.get("recall_events"),
        "stops_announced": round((s.get("recall") or 0) * (s.get("recall_events") or 0)),
    }


def choose(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The setting that announces the most stops with precision >= :data:`PRECISION_FLOOR`; ties:
    the higher precision."""
    ok = [r for r in rows if (r.get("precision") or 0) >= PRECISION_FLOOR]
    return max(ok, key=lambda r: (r["stops_announced"], r["precision"]), default=None)
