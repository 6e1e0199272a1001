"""Tune and score the alert rules offline: the champions' predictions on every driver-lap of the
corpus, folded through the alerts app's own step (``functions/alerts.py``: scope gating, burst
limit, hysteresis) in line-crossing order, then scored against what happened (hindsight is allowed
in the scoring only).

Per alert type: count, alerts per race-hour, precision and recall:

* ``pit_window_open``: precision = the driver's next stop (an in-lap, ``PitInTime`` set) falls
  inside the announced window [WindowOpenLap, WindowCloseLap]; recall = share of real stops with
  such an alert before them.
* ``tyre_cliff``: precision = the lap's ``CliffNext3`` label (a clean free-air lap in the next 3
  laps of the stint >= 1 s slower fuel-corrected) is true (alerts on laps without a label are left
  out); recall = share of cliff episodes (runs of true labels per driver) with an alert on them.
* ``overtake_likely``: precision = the pair's ``Overtake1`` label (a pass on track within 1 lap).

Thresholds are chosen on the training and validation races (the targets of issue 14: pit window
recall >= 0.70 with precision >= 0.50; overtake precision >= 0.50; tyre cliff: the best F1), then
reported on the test races. ``python -m stratx.bentos.lifecycle.alert_tuning [--features PARQUET]``.
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

from stratx.functions import alerts
from stratx.functions.models import base, overtake, overtake_pairs, tyre_deg_labels

RACE = ["Year", "EventName"]
NOW = datetime(2026, 1, 1, tzinfo=UTC)
PIT_GRID = (0.05, 0.08, 0.10, 0.12, 0.15, 0.20, 0.25, 0.30)
PIT_GRACE_GRID = (2, 3, 4)
CLIFF_GRID = (0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.60)
OVERTAKE_GRID = (0.40, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75)


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
    context = ["Driver", "Stint", "GreenClean", "Neutralised"]
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


def race_hours(laps: pd.DataFrame) -> pd.Series:
    start = laps["SessionTime"] - laps["LapTime"].fillna(0)
    spans = laps.assign(start=start).groupby(RACE).agg(a=("start", "min"), b=("SessionTime", "max"))
    return (spans.b - spans.a) / 3600.0


def score(found: pd.DataFrame, corpus: base.Corpus) -> dict[str, dict[str, float]]:
    """Per alert type: count, per race-hour, precision, recall (module doc), largest burst."""
    hours = float(race_hours(corpus.laps).sum())
    raw = corpus.raw_laps.assign(DriverNumber=lambda f: f["DriverNumber"].astype(str))
    stops = raw.loc[raw["PitInTime"].notna(), [*RACE, "DriverNumber", "LapNumber"]]
    out: dict[str, dict[str, float]] = {}
    for kind in ("pit_window_open", "pit_window_closing", "tyre_cliff", "overtake_likely", "anomaly"):
        a = found[found["Type"] == kind] if len(found) else pd.DataFrame(columns=["Type"])
        m: dict[str, float] = {"count": float(len(a)), "per_race_hour": len(a) / hours if hours else np.nan}
        if len(a):
            burst = a.groupby([*RACE, "LapNumber"]).size()
            m["largest_burst"] = float(burst.max())
            m["laps_over_burst_limit"] = float((burst > alerts.BURST_LIMIT).sum())
        if a.empty:
            m.update({"precision": np.nan, "recall": 0.0} if kind != "anomaly" else {})
        elif kind == "pit_window_open":
            m.update(_pit_scores(a, stops))
        elif kind == "tyre_cliff":
            m.update(_cliff_scores(a, corpus.laps))
        elif kind == "overtake_likely":
            m.update(_overtake_scores(a, corpus))
        out[kind] = m
    out["_"] = {"race_hours": hours, "stops": float(len(stops))}
    return out


def _pit_scores(a: pd.DataFrame, stops: pd.DataFrame) -> dict[str, float]:
    if a.empty:
        return {"precision": np.nan, "recall": 0.0}
    merged = a[[*RACE, "DriverNumber", "LapNumber", "WindowOpenLap", "WindowCloseLap"]].merge(
        stops.rename(columns={"LapNumber": "StopLap"}), on=[*RACE, "DriverNumber"], how="left"
    )
    inside = (merged.StopLap >= merged.WindowOpenLap) & (merged.StopLap <= merged.WindowCloseLap)
    inside &= merged.StopLap > merged.LapNumber
    keys = [*RACE, "DriverNumber", "LapNumber"]
    precision = float(inside.groupby([merged[k] for k in keys]).any().mean())
    caught = merged[inside][[*RACE, "DriverNumber", "StopLap"]].drop_duplicates()
    return {"precision": precision, "recall": len(caught) / len(stops) if len(stops) else np.nan}


def _cliff_scores(a: pd.DataFrame, laps: pd.DataFrame) -> dict[str, float]:
    lab = laps[[*RACE, "DriverNumber", "LapNumber", "Stint"]].copy()
    lab["DriverNumber"] = lab["DriverNumber"].astype(str)
    lab["Cliff"] = tyre_deg_labels.cliff_labels(laps)[tyre_deg_labels.CLIFF].to_numpy()
    lab = lab.sort_values([*RACE, "DriverNumber", "LapNumber"])
    true = lab["Cliff"].astype("boolean").fillna(False).astype(bool)
    run = (true != true.groupby([lab[k] for k in (*RACE, "DriverNumber")]).shift(fill_value=False)).cumsum()
    lab["Episode"] = np.where(true, run, -1)
    hit = a[[*RACE, "DriverNumber", "LapNumber"]].merge(lab, how="left")
    labelled = hit["Cliff"].notna()
    precision = float(hit.loc[labelled, "Cliff"].astype(bool).mean()) if labelled.any() else np.nan
    episodes = lab.loc[lab.Episode >= 0, "Episode"].nunique()
    caught = hit.loc[hit.Episode >= 0, "Episode"].nunique() if len(hit) else 0
    return {
        "precision": precision,
        "recall": caught / episodes if episodes else np.nan,
        "unlabelled_alerts": float((~labelled).sum()),
        "cliff_episodes": float(episodes),
    }


def _overtake_scores(a: pd.DataFrame, corpus: base.Corpus) -> dict[str, float]:
    labels = overtake_pairs.labelled_pairs(corpus)[[*RACE, "DriverNumber", "LapNumber", "Overtake1"]]
    labels = labels.assign(DriverNumber=lambda f: f["DriverNumber"].astype(str))
    hit = a[[*RACE, "DriverNumber", "LapNumber"]].merge(labels, how="left")
    known = hit["Overtake1"].notna()
    return {
        "precision": float(hit.loc[known, "Overtake1"].astype(float).mean()) if known.any() else np.nan,
        "unlabelled_alerts": float((~known).sum()),
    }


def _with(rules: alerts.Rules, kind: str, raise_at: float, grace: int | None = None) -> alerts.Rules:
    if kind == "pit_window_open":
        return dataclasses.replace(
            rules, pit_open_p=raise_at, pit_grace=rules.pit_grace if grace is None else grace
        )
    threshold = tuple(
        dataclasses.replace(r, raise_at=raise_at, clear_below=round(raise_at * 0.6, 3))
        if r.alert == kind
        else r
        for r in rules.threshold
    )
    return dataclasses.replace(rules, threshold=threshold)


def tune(preds: pd.DataFrame, corpus: base.Corpus) -> dict[str, list[dict[str, float]]]:
    """Per rule and candidate threshold, the scores on ``preds``/``corpus`` (train + validation)."""
    grids = {"pit_window_open": PIT_GRID, "tyre_cliff": CLIFF_GRID, "overtake_likely": OVERTAKE_GRID}
    models = {"pit_window_open": "pit_window", "tyre_cliff": "tyre_deg", "overtake_likely": "overtake"}
    out: dict[str, list[dict[str, float]]] = {}
    for kind, grid in grids.items():
        mine = preds[preds["Model"] == models[kind]]
        graces: tuple[int | None, ...] = PIT_GRACE_GRID if kind == "pit_window_open" else (None,)
        out[kind] = [
            {
                "raise_at": t,
                **({"grace": float(g)} if g is not None else {}),
                **score(replay(mine, _with(alerts.RULES, kind, t, g)), corpus)[kind],
            }
            for t in grid
            for g in graces
        ]
    return out


def _split(corpus: base.Corpus, splits: Iterable[str]) -> base.Corpus:
    wanted = set(splits)
    return corpus.only(lambda f: base.race_split(f).isin(wanted))


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
    tuning = _split(corpus, ("train", "validation"))
    report = {
        "tuning_races": tune(preds[split != "test"], tuning),
        "test_races": score(replay(preds[split == "test"]), _split(corpus, ("test",))),
        "validation_races": score(replay(preds[split == "validation"]), _split(corpus, ("validation",))),
        "rules": {
            "pit_open_p": alerts.PIT_OPEN_P,
            "pit_grace": alerts.PIT_GRACE_LAPS,
            **{r.alert: r.raise_at for r in alerts.THRESHOLD_RULES},
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
