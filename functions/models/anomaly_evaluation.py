"""The anomaly model's evaluation: false alarms per race-hour, SYNTHETIC fault recall and delay,
retirements and slow laps (see ``anomaly``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from stratx.functions.models import base
from stratx.functions.models.anomaly_faults import (
    inject_faults,
)
from stratx.functions.models.anomaly_rows import (
    FAULT_KINDS,
    KEYS,
    MECHANICAL,
    SLOW_LAP_S,
    _level,
    _races,
    lap_rows,
    window_rows,
)
from stratx.functions.models.anomaly_scoring import (
    alarm_runs,
    predict,
    race_hours,
    score_rows,
)


# ------------------------------------------------------------------ evaluation
def level_metrics(
    boosters: dict[str, Any], meta: dict[str, Any], rows: pd.DataFrame, hours: float
) -> dict[str, float]:
    """``false_alarms_per_race_hour`` on the real rows; per fault kind, ``synthetic_recall_<kind>``:
    the share of SYNTHETIC fault episodes (:func:`inject_faults`, seed 0) with a flagged in-scope
    row, and ``synthetic_delay_<kind>``: the median from onset to the first flag (laps or s)."""
    score, _ = score_rows(boosters, meta, rows)
    thr = meta.get("threshold", 1.0)
    out = {
        "rows_in_scope": float(rows["InScope"].sum()),
        "race_hours": hours,
        "false_alarms": float(alarm_runs(rows, score >= thr)),
    }
    out["false_alarms_per_race_hour"] = out["false_alarms"] / hours if hours > 0 else math.nan
    clock = "WindowStart" if _level(rows) == "window" else "LapNumber"
    for kind in FAULT_KINDS:
        faulty = inject_faults(rows, kind, np.random.default_rng(0))
        hit = faulty["Synthetic"].to_numpy(dtype=bool)
        if not hit.any():
            continue
        s, _ = score_rows(boosters, meta, faulty)
        episode = faulty["FaultEpisode"].to_numpy()
        caught = hit & (s >= thr) & faulty["InScope"].to_numpy(dtype=bool)
        out[f"synthetic_episodes_{kind}"] = float(len(np.unique(episode[hit])))
        out[f"synthetic_recall_{kind}"] = len(np.unique(episode[caught])) / out[f"synthetic_episodes_{kind}"]
        t = faulty[clock].to_numpy(dtype=float)
        first = pd.Series(t[caught]).groupby(episode[caught]).min()
        onset = t[first.index.to_numpy(dtype=int)]
        out[f"synthetic_delay_{kind}"] = (
            float(np.median(first.to_numpy() - onset)) if len(first) else math.nan
        )
    return out


def retirements(
    results: pd.DataFrame, laps: pd.DataFrame, flagged: pd.DataFrame, lookback: int = 10
) -> pd.DataFrame:
    """Per mechanical retirement (results Status in :data:`MECHANICAL`) of a scored race: the
    driver's last lap and ``LapsBefore`` = last lap - the first lap within the last ``lookback``
    laps (or the unfinished lap after it) with a flagged lap or window; NaN when none rose.
    ``flagged``: rows with Year, EventName, DriverNumber, LapNumber, AnomalyFlag (both levels)."""
    if results.empty or "Status" not in results.columns:
        return pd.DataFrame(columns=[*KEYS, "Status", "LastLap", "FirstFlagLap", "LapsBefore"])
    races = set(zip(laps.Year, laps.EventName, strict=True))
    out = []
    for r in results[results.Status.isin(MECHANICAL)].itertuples():
        if (r.Year, r.EventName) not in races:
            continue
        mine = laps[
            (laps.Year == r.Year)
            & (laps.EventName == r.EventName)
            & (laps.DriverNumber == str(r.DriverNumber))
        ]
        if mine.empty:
            continue
        last = int(mine.LapNumber.max())
        f = flagged[
            (flagged.Year == r.Year) & (flagged.EventName == r.EventName) & (flagged.DriverNumber == str(r.DriverNumber))
            & (flagged.LapNumber > last - lookback) & flagged.AnomalyFlag
        ]  # fmt: skip
        first = float(f.LapNumber.min()) if len(f) else math.nan
        out.append({"Year": r.Year, "EventName": r.EventName, "DriverNumber": str(r.DriverNumber),
                    "Status": r.Status, "LastLap": last, "FirstFlagLap": first, "LapsBefore": last - first})  # fmt: skip
    return pd.DataFrame(out, columns=[*KEYS, "Status", "LastLap", "FirstFlagLap", "LapsBefore"])


def slow_laps(scored: pd.DataFrame) -> pd.DataFrame:
    """In-scope (green-flag, clean) laps at least :data:`SLOW_LAP_S` slower than the driver's
    Last3Median, with their score."""
    delta = scored["LapTime"] - scored["Last3Median"]
    keep = scored["InScope"].astype(bool) & (delta >= SLOW_LAP_S)
    cols = [
        *KEYS,
        "Driver",
        "LapNumber",
        "LapTime",
        "Last3Median",
        "AnomalyScore",
        "AnomalyFlag",
        "AnomalySignal",
    ]
    return scored.loc[keep, cols].assign(SlowBy=delta[keep])


def evaluate(bundle: base.ModelBundle, corpus: base.Corpus) -> base.Evaluation:
    laps = lap_rows(corpus.laps, corpus.raw_laps)
    hours = race_hours(laps)
    metrics = {
        f"lap_{k}": v for k, v in level_metrics(bundle.boosters, bundle.meta["lap"], laps, hours).items()
    }
    scored = pd.concat([laps, predict(bundle, laps)], axis=1)
    scored["Level"] = "lap"
    flagged = [scored[[*KEYS, "LapNumber", "AnomalyFlag"]]]
    notes = [
        "SYNTHETIC: synthetic_recall_* come from faults injected into real rows (inject_faults, seed 0)."
    ]
    window_rate = 0.0
    windows = corpus.windows
    if "window" in bundle.meta and windows is not None and not windows.empty:
        wrows = window_rows(windows, laps)
        wmeta = bundle.meta["window"]
        whours = race_hours(laps[_races(laps, tuple(zip(wrows.Year, wrows.EventName, strict=True)))])
        wm = level_metrics(bundle.boosters, wmeta, wrows, whours)
        metrics.update({f"window_{k}": v for k, v in wm.items()})
        window_rate = wm["false_alarms_per_race_hour"]
        wscored = pd.concat([wrows, predict(bundle, wrows)], axis=1)
        flagged.append(wscored[[*KEYS, "LapNumber", "AnomalyFlag"]])
        notes.append(f"windows scored for {len(base.race_names(wrows))} race(s) with car telemetry")
    else:
        wscored = pd.DataFrame()
        notes.append("no telemetry windows in this corpus: window-level metrics not computed")
    metrics["race_hours"] = hours
    # a race with both levels running: lap alarms per race-hour + window alarms per hour of the
    # races with car telemetry
    metrics["false_alarms_per_race_hour"] = metrics["lap_false_alarms_per_race_hour"] + window_rate
    for kind in FAULT_KINDS:
        found = [
            metrics[k]
            for k in (f"lap_synthetic_recall_{kind}", f"window_synthetic_recall_{kind}")
            if k in metrics
        ]
        if found:
            metrics[f"synthetic_recall_{kind}"] = max(found)  # either level's alarm counts
    ret = retirements(corpus.results, laps, pd.concat(flagged, ignore_index=True))
    metrics["retirements_scored"] = float(len(ret))
    metrics["retirements_flagged"] = float(ret.FirstFlagLap.notna().sum())
    slow = slow_laps(scored)
    metrics["slow_green_laps"] = float(len(slow))
    metrics["slow_green_laps_flagged"] = float(slow.AnomalyFlag.sum())
    per_race = base.per_race(
        scored,
        lambda g: {
            "lap_false_alarms": float(alarm_runs(g, g.AnomalyFlag.to_numpy())),
            "race_hours": race_hours(g),
        },
    )
    evaluation = base.Evaluation(
        metrics=metrics,
        scored=scored,
        races=base.race_names(laps),
        targets=[base.Target("false_alarms_per_race_hour", metrics["false_alarms_per_race_hour"], "<=", 1.0)],
        per_race=per_race,
        notes=notes,
    )
    evaluation.scored.attrs.update({"retirements": ret, "slow_laps": slow, "windows": wscored})
    return evaluation
