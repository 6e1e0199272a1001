"""Tune and score the alert rules offline: the champions' predictions on every driver-lap of the
corpus, folded through the alerts app's own step (``functions/alerts.py``: scope gating, burst
limit, hysteresis) in line-crossing order, then scored against what happened (hindsight is allowed
in the scoring only).

Every alert is scored exactly as ``stratx backtest`` scores the stream
(``functions/backtest_alerts.py``: events, horizons, precision, recall, bursts), so a tuned figure
is the figure the backtest reports. The folded predictions equal the streamed ones (the backtest's
parity is 1.000), so this is the backtest of the training and validation races without the broker.

Thresholds are chosen on the training and validation races (the targets of issue 14: pit window
recall >= 0.70 with precision >= 0.50; overtake precision >= 0.50 on as many races as possible;
:func:`choose`), then reported on the test races. The tyre cliff is tuned on the validation races
only (the cliff model was fit on the training races, so its outputs there are in-sample): the best
F1 within the broadcast budget, over the threshold and the scope (every lap not neutralised, or a
clean lap of a stint with a reference: ``alerts.in_scope``). ``python -m stratx.bentos.lifecycle.alert_tuning [--features PARQUET]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stratx.functions import alerts, backtest_alerts, prediction_requests
from stratx.functions.models import base, overtake, overtake_pairs

RACE = ["Year", "EventName"]
NOW = datetime(2026, 1, 1, tzinfo=UTC)
PIT_GRID = (0.05, 0.08, 0.10, 0.12, 0.15, 0.20, 0.25, 0.30)
PIT_GRACE_GRID = (2, 3, 4)
CLIFF_GRID = (0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.60)
CLIFF_SCOPES = ("not_neutralised", "clean_reference")
CLIFF_PER_RACE_HOUR = 15.0  # broadcast budget (the ungated rule: 12.5 on validation, 20.5 unseen)
OVERTAKE_GRID = (0.40, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75)
PRECISION_TARGET = 0.5
RECALL_TARGET = 0.7  # pit window: real stops announced
KEPT = (
    "count",
    "per_race_hour",
    "max_per_lap",
    "bursts",
    "precision",
    "recall",
    "recall_events",
    "races_precise",
)


def predictions(corpus: base.Corpus, bundles: dict[str, base.ModelBundle]) -> pd.DataFrame:
    """One row per (model, driver-lap or pair): the record the alerts app would read."""
    from stratx.functions import models

    laps = corpus.laps.copy()
    laps["DriverNumber"] = laps["DriverNumber"].astype(str)
    race_laps = corpus.raw_laps.groupby(RACE)["LapNumber"].max().rename("RaceLaps").reset_index()
    rows = laps.merge(race_laps, on=RACE, how="left")
    names = dict(
        zip(zip(rows.Year, rows.EventName, rows.DriverNumber, strict=True), rows.Driver, strict=True)
    )
    context = list(prediction_requests.CONTEXT_FIELDS)
    frames = []
    for key in ("pit_window", "tyre_deg"):
        out = models.recipe(key).predict(bundles[key], rows)
        frames.append(
            rows[[*RACE, "DriverNumber", "LapNumber", "SessionTime", *context]].assign(Model=key).join(out)
        )
    pairs = overtake_pairs.pair_rows(rows)
    scored = overtake.predict(bundles["overtake"], pairs)
    pair = pairs[[*RACE, "DriverNumber", "LapNumber", "SessionTime", *context, "AheadDriverNumber"]].copy()
    pair["OtherDriver"] = [
        names.get((y, e, str(a)))
        for y, e, a in zip(pair.Year, pair.EventName, pair.AheadDriverNumber, strict=True)
    ]
    frames.append(pair.assign(Model="overtake").join(scored))
    return pd.concat(frames, ignore_index=True).sort_values(["SessionTime", "Model"], kind="stable")


def replay(preds: pd.DataFrame, rules: alerts.Rules = alerts.RULES) -> pd.DataFrame:
    """Every alert the alerts app raises on ``preds`` (one race at a time, in line-crossing order)."""
    out: list[dict[str, Any]] = []
    value_cols = [c for c in preds.columns if c not in (*RACE, "Model", "AheadDriverNumber")]
    for (year, event), race in preds.groupby(RACE, sort=False):
        counts: dict[str, int] = {}
        states: dict[str, dict[str, Any]] = {}

        def allow(kind: str, lap: int, counts: dict[str, int] = counts) -> bool:
            return alerts.burst_allow(counts, 0, kind, lap)

        for r in race.to_dict("records"):
            values = {c: _plain(r[c]) for c in value_cols if c in r}
            prediction = {
                "SessionKey": 0,
                "DriverNumber": r["DriverNumber"],
                "LapNumber": int(r["LapNumber"]),
                "Model": r["Model"],
                "Status": "ok",
                "Values": values,
                "OtherDriverNumber": _plain(r.get("AheadDriverNumber")),
                "EventSessionTime": float(r["SessionTime"]),
            }
            st, raised = alerts.alert_step(
                states.get(r["DriverNumber"]),
                prediction,
                NOW,
                allow,
                rules,
            )
            states[r["DriverNumber"]] = st
            for a in raised:
                out.append(
                    {
                        "Year": year,
                        "EventName": event,
                        **a,
                        "Other": prediction["OtherDriverNumber"],
                        "WindowOpenLap": values.get("WindowOpenLap"),
                        "WindowCloseLap": a["Value"],  # the announced window's last lap
                    }
                )
    return pd.DataFrame(out)


def _plain(v: Any) -> Any:
    if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
        return None
    return v.item() if isinstance(v, np.generic) else v


@dataclasses.dataclass(frozen=True)
class Truth:
    """What happened in a set of races (hindsight, for scoring only): the backtest's events and
    race-hours (``functions/backtest_alerts.py``), so tuning and backtest score alike."""

    events: dict[str, pd.DataFrame]
    hours: dict[str, float]
    _races: dict[str, Truth] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, corpus: base.Corpus) -> Truth:
        events = backtest_alerts.race_events(
            corpus.raw_laps, corpus.results, corpus.race_control, corpus.laps
        )
        return cls(events, backtest_alerts.race_hours(corpus.raw_laps))

    def race(self, name: str) -> Truth:
        """One race's truth (``'<Year> <EventName>'``), built once: every candidate setting asks again."""
        if name not in self._races:
            year, event = name.split(" ", 1)
            keep = {
                k: f[(f["Year"].astype(int) == int(year)) & (f["EventName"] == event)]
                for k, f in self.events.items()
            }
            self._races[name] = Truth(keep, {name: self.hours[name]} if name in self.hours else {})
        return self._races[name]


def score(found: pd.DataFrame, truth: Truth) -> dict[str, Any]:
    """Per alert type, the backtest's scores (``backtest_alerts.score_alerts``), plus
    ``races_precise``: the share of races with alerts of that type whose precision is >= 0.5."""
    out = backtest_alerts.score_alerts(found, truth.events, truth.hours)
    if found.empty:
        return out
    per_race: dict[str, list[float]] = {}
    for (year, event), race in found.groupby(RACE):
        one = truth.race(f"{year} {event}")
        for kind, s in backtest_alerts.score_alerts(race, one.events, one.hours).items():
            if s.get("precision") is not None:
                per_race.setdefault(kind, []).append(s["precision"])
    for kind, values in per_race.items():
        out[kind]["races_precise"] = float(np.mean(np.asarray(values) >= PRECISION_TARGET))
    return out


def _with(
    rules: alerts.Rules, kind: str, raise_at: float, grace: int | None = None, scope: str | None = None
) -> alerts.Rules:
    if kind == "pit_window_open":
        return dataclasses.replace(
            rules, pit_open_p=raise_at, pit_grace=rules.pit_grace if grace is None else grace
        )
    threshold = tuple(
        dataclasses.replace(
            r, raise_at=raise_at, clear_below=round(raise_at * 0.6, 3), scope=scope or r.scope
        )
        if r.alert == kind
        else r
        for r in rules.threshold
    )
    return dataclasses.replace(rules, threshold=threshold)


def tune(preds: pd.DataFrame, truth: Truth) -> dict[str, list[dict[str, Any]]]:
    """Per rule and candidate setting, the scores on ``preds``/``truth`` (train + validation)."""
    grids = {"pit_window_open": PIT_GRID, "overtake_likely": OVERTAKE_GRID}
    models = {"pit_window_open": "pit_window", "overtake_likely": "overtake"}
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, grid in grids.items():
        mine = preds[preds["Model"] == models[kind]]
        graces: tuple[int | None, ...] = PIT_GRACE_GRID if kind == "pit_window_open" else (None,)
        bursts = (False, True) if kind == "pit_window_open" else (False,)
        rows = []
        for t in grid:
            for g in graces:
                for held in bursts:
                    rules = dataclasses.replace(_with(alerts.RULES, kind, t, g), pit_burst_neutralised=held)
                    s = score(replay(mine, rules), truth).get(kind, {"count": 0})
                    setting = {"raise_at": t, **({"grace": g} if g is not None else {})}
                    if kind == "pit_window_open":
                        setting["burst_limit_when_neutralised"] = held
                    rows.append({**setting, **{k: s.get(k) for k in KEPT}})
        out[kind] = rows
    return out


def tune_cliff(preds: pd.DataFrame, truth: Truth) -> list[dict[str, Any]]:
    """The tyre-cliff candidates (threshold x scope) scored on ``preds``/``truth`` (validation)."""
    mine = preds[preds["Model"] == "tyre_deg"]
    rows = []
    for scope in CLIFF_SCOPES:
        for t in CLIFF_GRID:
            s = score(replay(mine, _with(alerts.RULES, "tyre_cliff", t, scope=scope)), truth)
            s = s.get("tyre_cliff", {"count": 0})
            rows.append({"raise_at": t, "scope": scope, **{k: s.get(k) for k in KEPT}})
    return rows


def choose(kind: str, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The setting the targets of issue 14 pick on the tuning races. Pit window: the largest margin
    over both targets (recall >= 0.70, precision >= 0.50), so that neither sits on its edge (a
    setting chosen at the edge of one target misses it on about half of new races). Overtake: the
    most races with precision >= 0.50, then the lowest threshold (the most passes announced). Tyre
    cliff: the best F1 of the settings raising at most :data:`CLIFF_PER_RACE_HOUR` alerts per
    race-hour (a broadcast cannot take more; the validation races are too few to tell the
    F1 of nearby thresholds apart, so the budget, not a hair of F1, decides between them)."""
    if kind == "pit_window_open":
        margin = lambda r: min((r["recall"] or 0) - RECALL_TARGET, (r["precision"] or 0) - PRECISION_TARGET)  # noqa: E731
        return max(rows, key=margin, default=None)
    if kind == "overtake_likely":
        return max(rows, key=lambda r: (r.get("races_precise") or 0, -r["raise_at"]), default=None)
    within = [r for r in rows if (r.get("per_race_hour") or 0) <= CLIFF_PER_RACE_HOUR]
    return max(within, key=lambda r: _f1(r.get("precision"), r.get("recall")), default=None)


def _f1(p: float | None, r: float | None) -> float:
    return 2 * p * r / (p + r) if p and r else 0.0


def _split(corpus: base.Corpus, splits: Iterable[str]) -> base.Corpus:
    wanted = set(splits)
    return corpus.only(lambda f: base.race_split(f).isin(wanted))


def _neutral(races: list[Any], tuning_truth: Truth, test_truth: Truth) -> dict[str, Any]:
    """The safety-car / VSC rule: tuned on the training and validation races, scored on the test
    races (``alert_tuning_neutral``); ``*_truth``: those races' events, as for the other rules."""
    from stratx.bentos.lifecycle import alert_tuning_neutral as neutral

    test_races = set(base.TEST_RACES)
    test = [r for r in races if (r.meta.year, r.meta.event_name) in test_races]
    tuning = [r for r in races if (r.meta.year, r.meta.event_name) not in test_races]
    rows = neutral.tune(neutral.deployments(tuning), tuning_truth)
    return {
        "tuning_races": rows,
        "chosen_on_the_tuning_races": neutral.choose(rows),
        "test_races": neutral.score(neutral.replay(neutral.deployments(test), alerts.RULES), test_truth),
        "rules": {"sc_min_life": alerts.SC_MIN_TYRE_LIFE, "vsc_min_life": alerts.VSC_MIN_TYRE_LIFE},
    }


def main(argv: list[str] | None = None) -> int:
    from stratx.bentos.lifecycle import model_store, training
    from stratx.functions.settings import TrainingSettings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=Path, help="a built lap-feature parquet (stratx features build)")
    parser.add_argument("--out", type=Path, default=Path(".stratx/reports/alert_tuning.json"))
    args = parser.parse_args(argv)
    settings = TrainingSettings()
    races = training.corpus_races(settings.data_dir)
    laps = pd.read_parquet(args.features) if args.features else None
    corpus = training.build_corpus(races, progress=False, laps=laps)
    bundles = {
        k: model_store.load_registered(settings, k).bundle for k in ("pit_window", "tyre_deg", "overtake")
    }
    preds = predictions(corpus, bundles)
    split = base.race_split(preds)
    tuning_truth = Truth.of(_split(corpus, ("train", "validation")))
    test_truth = Truth.of(_split(corpus, ("test",)))
    tuning = tune(preds[split != "test"], tuning_truth)
    tuning["tyre_cliff"] = tune_cliff(preds[split == "validation"], Truth.of(_split(corpus, ("validation",))))
    report = {
        "tuning_races": tuning,
        "chosen_on_the_tuning_races": {kind: choose(kind, rows) for kind, rows in tuning.items()},
        "test_races": score(replay(preds[split == "test"]), test_truth),
        "rules": {
            "pit_open_p": alerts.PIT_OPEN_P,
            "pit_grace": alerts.PIT_GRACE_LAPS,
            "pit_burst_neutralised": alerts.PIT_BURST_NEUTRALISED,
            **{r.alert: r.raise_at for r in alerts.THRESHOLD_RULES},
            "tyre_cliff_scope": next(r.scope for r in alerts.THRESHOLD_RULES if r.alert == "tyre_cliff"),
        },
    }
    report["neutralisations"] = _neutral(races, tuning_truth, test_truth)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
