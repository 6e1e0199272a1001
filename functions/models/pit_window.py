"""Model 3, pit window: P(the driver pits within the next 3 laps), a recommended window of in-laps,
the circuit's pit-lane loss and an undercut score.

Definitions (every number the recipe reports rests on these):

* **Stop**: a lap whose raw Lap event has a ``PitInTime`` (the *in-lap*) and whose driver completes
  the next lap (a retirement into the pits is not a stop). Drive-through/stop-go penalties count
  (a handful); stops under a safety car are kept (they are real stops). A stop is *neutralised*
  when its in-lap's ``TrackStatus`` holds 4 (SC), 5 (red flag), 6 or 7 (VSC).
* **Label** ``Pit3`` of driver-lap N: a stop of the same driver has its in-lap in N+1..N+3. It is
  undefined (row dropped) when no stop is in the horizon and the driver's last lap is before N+3,
  unless the driver reached the race's final lap (no stop can follow the flag: label 0).
* **RaceLaps**: the race's highest LapNumber (the winner's laps), i.e. the scheduled distance,
  which is known before the start (differs only for shortened races); ``LapsRemaining`` =
  RaceLaps - LapNumber, ``RaceProgress`` = LapNumber / RaceLaps.
* **Pit-lane loss** (``PitLossSeconds``) of a circuit (EventName): the median, over the green stops
  of the fitted races, of in-lap LapTime + out-lap LapTime - 2 x the driver's clean rolling median
  ``Last5Median`` on the lap before the in-lap. Unknown circuits get the median over circuits.
* **Track status now**: ``SafetyCarNow`` (code 4 on lap N), ``VSCNow`` (6 or 7), ``RedFlagNow``
  (5), from the raw lap's ``TrackStatus`` (NaN when a serving row has no TrackStatus).
* **Features**: the ``pit_window_v1`` FeatureService (lap_stint + lap_gaps + lap_pace) with
  absolute pace columns relative to ``Last3Median`` (else LapTime), plus the derived columns above.
  Monotone: P never decreases with ``TyreLife``, ``LapsInStint`` or ``StintDegSlope``.
* **Baseline**: a per-compound tyre-age hazard table (the train races' Pit3 rate per Compound and
  TyreLife, shrunk towards the compound's rate with weight :data:`PRIOR_ROWS`).
* **Window** at lap N: the model is rolled forward k = 0, 1, ... laps (tyre and lap counters aged,
  fuel burnt, track status green, pace relative to the anchor unchanged); the 3-lap probability
  p_k becomes a per-lap hazard h_k = 1 - (1 - p_k)^(1/3) for in-lap N+1+k, and the cumulative stop
  probability F gives ``WindowOpenLap`` = first in-lap with F >= lo and ``WindowCloseLap`` = first
  with F >= hi (last possible in-lap if never reached); no window (NaN) when F never reaches lo.
  (lo, hi) are chosen on the validation races (:func:`choose_quantiles`).
* **Stops in window**: for each stop with in-lap L, the window recommended at the end of lap
  max(L - :data:`WINDOW_LEAD`, the stint's first lap); the share of stops with L inside it.
* **Undercut pair**: car B, within :data:`UNDERCUT_GAP` s behind car A at the line on lap L-1
  (``IntervalAhead``, same lap), makes a green stop on lap L while A pits 1..:data:`UNDERCUT_LAPS`
  laps later (green). Success: B crosses the line before A at the end of A's out-lap. The undercut
  model scores it from lap L-1 information only (gap, both tyre ages and deg slopes, pace, pit loss).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from stratx.functions.models import base

MODEL_NAME = "stratx-pit-window"
FEATURE_SERVICE = "pit_window_v1"
RACE = ("Year", "EventName")
DRIVER = (*RACE, "DriverNumber")
HORIZON = 3
LABEL = "Pit3"
IN_LAP = "InLap"
NEUTRALISED_CODES = frozenset("4567")
PRIOR_ROWS = 20.0
WINDOW_LEAD = 5
MAX_LOOKAHEAD = 45
UNDERCUT_GAP = 3.0
UNDERCUT_LAPS = 5
UNDERCUT_ANCHOR = 0.771
PIT_BOOSTER, UNDERCUT_BOOSTER = "pit3", "undercut"
SELECTION_METRIC = "val_model_pit3_brier"

# The pit_window_v1 FeatureService (lap_stint + lap_gaps + lap_pace), in feature-view order.
SERVICE_FEATURES: tuple[str, ...] = (
    "Stint", "Compound", "TyreLife", "FreshTyre", "LapsInStint", "StintCleanLaps", "FuelKg",
    "FuelCorrectedLapTime", "StintTrendSlope", "StintDegSlope", "StintDegSlopeStderr",
    "LapNumber", "PositionOnLap", "PositionChange", "GapToLeader", "IntervalAhead", "IntervalBehind",
    "InDRSRange", "LapsDown",
    "LapTime", "IsClean", "Last3Mean", "Last3Median", "Last3Std", "Last3Min", "Last5Mean",
    "Last5Median", "Last5Std", "Last5Min", "PersonalBest", "LapsSincePB", "DeltaToPB",
    "DeltaToSessionBest", "DeltaToTeammate", "DeltaToCarAhead", "DeltaToCarBehind", "DeltaToFieldMedian",
)  # fmt: skip
DERIVED: tuple[str, ...] = (
    "RaceLaps", "LapsRemaining", "RaceProgress", "PitLossSeconds", "SafetyCarNow", "VSCNow", "RedFlagNow",
)  # fmt: skip
FEATURES: tuple[str, ...] = SERVICE_FEATURES + DERIVED
RELATIVE_TO_ANCHOR: tuple[str, ...] = (
    "LapTime", "FuelCorrectedLapTime", "Last3Mean", "Last3Median", "Last3Min", "Last5Mean",
    "Last5Median", "Last5Min", "PersonalBest",
)  # fmt: skip
COMPOUNDS: tuple[str, ...] = (
    "HYPERSOFT", "ULTRASOFT", "SUPERSOFT", "SOFT", "MEDIUM", "HARD", "INTERMEDIATE", "WET",
)  # fmt: skip
MONOTONE_INCREASING: tuple[str, ...] = ("TyreLife", "LapsInStint", "StintDegSlope")
UNDERCUT_FEATURES: tuple[str, ...] = (
    "Gap", "TyreLife", "TyreLifeAhead", "TyreLifeDiff", "StintDegSlope", "StintDegSlopeAhead",
    "PaceDelta", "PitLossSeconds", "LapsRemaining",
)  # fmt: skip

PIT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 80,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "seed": 0,
    "deterministic": True,
    "num_threads": 2,
    "verbose": -1,
}
# Chosen by leave-one-race-out cross-validation on the ~100 non-test pairs (AUC 0.72; the gap alone
# scored 0.73 there): the sample is small, so the model is tiny. One thread: 100 rows gain nothing.
UNDERCUT_PARAMS: dict[str, Any] = {
    **PIT_PARAMS,
    "num_leaves": 3,
    "min_data_in_leaf": 10,
    "learning_rate": 0.03,
    "feature_fraction": 1.0,
    "num_threads": 1,
}
MAX_ROUNDS, EARLY_STOPPING, UNDERCUT_ROUNDS = 1500, 80, 60
LO_GRID = (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
HI_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
TARGET_SHARE = 0.8  # the window should hold at least 80% of the validation stops


# ------------------------------------------------------------------ labels
def _status_has(status: pd.Series, codes: str) -> pd.Series:
    """1.0 when the TrackStatus string holds any of ``codes``, NaN when TrackStatus is missing."""
    text = status.astype(object)
    hit = text.map(lambda s: float(any(c in str(s) for c in codes)) if isinstance(s, str) else math.nan)
    return hit.astype(float)


def stops(raw_laps: pd.DataFrame) -> pd.DataFrame:
    """One row per stop (``DRIVER`` + ``LapNumber`` = in-lap, ``Neutralised``); see the module doc."""
    r = raw_laps.sort_values([*DRIVER, "LapNumber"], kind="stable")
    next_lap = r.groupby(list(DRIVER), sort=False)["LapNumber"].shift(-1)
    keep = r["PitInTime"].notna() & (next_lap == r["LapNumber"] + 1)
    out = r.loc[keep, [*DRIVER, "LapNumber"]].copy()
    out["LapNumber"] = out["LapNumber"].astype(int)
    out["Neutralised"] = _status_has(r.loc[keep, "TrackStatus"], "".join(sorted(NEUTRALISED_CODES))) == 1
    return out.reset_index(drop=True)


def race_laps(frame: pd.DataFrame) -> pd.Series:
    """RaceLaps per row: the race's highest LapNumber (scheduled distance, known before the race)."""
    return frame.groupby(list(RACE))["LapNumber"].transform("max").astype(float)


def pit_labels(laps: pd.DataFrame, raw_laps: pd.DataFrame) -> pd.DataFrame:
    """``laps`` plus ``InLap`` (this lap is a stop), ``NextStopLap``, ``Pit3`` (nullable boolean, NA
    when undefined), ``NeutralisedHorizon`` (lap N..N+3 of the race had SC/VSC/red at any car),
    ``TrackStatus`` (raw) and ``RaceLaps``."""
    out = laps.copy()
    out["LapNumber"] = out["LapNumber"].astype(int)
    status = raw_laps[[*DRIVER, "LapNumber", "TrackStatus"]].copy()
    status["LapNumber"] = status["LapNumber"].astype(int)
    out = out.drop(columns=["TrackStatus"], errors="ignore").merge(
        status, on=[*DRIVER, "LapNumber"], how="left"
    )
    stop = stops(raw_laps)
    key = pd.MultiIndex.from_frame(stop[[*DRIVER, "LapNumber"]])
    out[IN_LAP] = pd.MultiIndex.from_frame(out[[*DRIVER, "LapNumber"]]).isin(key)
    out["RaceLaps"] = race_laps(out)
    out = out.sort_values([*DRIVER, "LapNumber"], kind="stable").reset_index(drop=True)
    g = out.groupby(list(DRIVER), sort=False)
    stop_lap = out["LapNumber"].where(out[IN_LAP]).astype(float)
    # the first stop strictly after lap N: backward fill of the next rows' stop laps
    out["NextStopLap"] = stop_lap.groupby([out[k] for k in DRIVER], sort=False).transform(
        lambda s: s.shift(-1).bfill()
    )
    last = g["LapNumber"].transform("max")
    hit = out["NextStopLap"] <= out["LapNumber"] + HORIZON
    known = hit | (last >= out["LapNumber"] + HORIZON) | (last >= out["RaceLaps"])
    out[LABEL] = hit.astype("boolean").mask(~known)
    neutral = _status_has(out["TrackStatus"], "4567").fillna(0.0)
    lap_neutral = neutral.groupby([out[k] for k in RACE] + [out["LapNumber"]]).transform("max")
    by_lap = pd.Series(lap_neutral.to_numpy(), index=pd.MultiIndex.from_frame(out[[*RACE, "LapNumber"]]))
    by_lap = by_lap[~by_lap.index.duplicated()]
    ahead = np.zeros(len(out))
    for k in range(HORIZON + 1):
        idx = pd.MultiIndex.from_arrays([out["Year"], out["EventName"], out["LapNumber"] + k])
        ahead = np.maximum(ahead, by_lap.reindex(idx).fillna(0.0).to_numpy())
    out["NeutralisedHorizon"] = ahead > 0
    return out


# ------------------------------------------------------------------ circuit tables
def pit_loss_table(laps: pd.DataFrame, raw_laps: pd.DataFrame) -> dict[str, float]:
    """Pit-lane loss (s) per EventName from the green stops (module doc); needs the out-lap too."""
    stop = stops(raw_laps)
    keys = [*DRIVER, "LapNumber"]
    times = laps[[*keys, "LapTime"]].assign(LapNumber=laps["LapNumber"].astype(int))
    ref = laps[[*keys, "Last5Median"]].assign(LapNumber=laps["LapNumber"].astype(int) + 1)
    out_lap = times.assign(LapNumber=times["LapNumber"] - 1).rename(columns={"LapTime": "OutLapTime"})
    s = stop[~stop["Neutralised"]].merge(times, on=keys).merge(out_lap, on=keys).merge(ref, on=keys)
    loss = s["LapTime"] + s["OutLapTime"] - 2 * s["Last5Median"]
    frame = s.assign(Loss=loss)[loss.between(5.0, 60.0)]
    return {str(k): float(v) for k, v in frame.groupby("EventName")["Loss"].median().items()}


def lookup(table: dict[str, float], keys: pd.Series) -> pd.Series:
    """``table[key]`` per row, else the median of the table (a circuit not seen)."""
    fallback = float(np.median(list(table.values()))) if table else math.nan
    return keys.astype(str).map(table).astype(float).fillna(fallback)


# ------------------------------------------------------------------ features
def with_derived(rows: pd.DataFrame, meta: dict[str, Any]) -> pd.DataFrame:
    """``rows`` plus the derived columns (RaceLaps from the row, else the circuit table)."""
    out = rows.copy()
    if "RaceLaps" not in out.columns:
        out["RaceLaps"] = lookup(meta["race_laps"], out["EventName"])
    out["RaceLaps"] = out["RaceLaps"].astype(float)
    out["LapsRemaining"] = out["RaceLaps"] - out["LapNumber"].astype(float)
    out["RaceProgress"] = out["LapNumber"].astype(float) / out["RaceLaps"]
    out["PitLossSeconds"] = lookup(meta["pit_loss"], out["EventName"])
    status = out["TrackStatus"] if "TrackStatus" in out.columns else pd.Series(None, index=out.index)
    out["SafetyCarNow"] = _status_has(status, "4")
    out["VSCNow"] = _status_has(status, "67")
    out["RedFlagNow"] = _status_has(status, "5")
    return out


def feature_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """Model inputs (:data:`FEATURES`) of rows that already carry the derived columns."""
    anchor = frame["Last3Median"].astype(float).fillna(frame["LapTime"].astype(float))
    return base.lap_matrix(frame, FEATURES, RELATIVE_TO_ANCHOR, anchor, COMPOUNDS)


def monotone_constraints(columns: list[str]) -> list[int]:
    return [1 if c in MONOTONE_INCREASING else 0 for c in columns]


# ------------------------------------------------------------------ baseline
def hazard_table(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Baseline: Pit3 rate per Compound and TyreLife (clipped to 1..60), shrunk to the compound's rate."""
    f = frame.assign(Age=frame["TyreLife"].clip(1, 60).fillna(1).round().astype(int))
    f = f.assign(Compound=f["Compound"].fillna("UNKNOWN").astype(str), y=f[LABEL].astype(float))
    overall = float(f["y"].mean())
    table: dict[str, dict[str, float]] = {"_overall": {"_": overall}}
    for compound, g in f.groupby("Compound"):
        rate = (g["y"].sum() + PRIOR_ROWS * overall) / (len(g) + PRIOR_ROWS)
        cells = g.groupby("Age")["y"].agg(["sum", "count"])
        shrunk = (cells["sum"] + PRIOR_ROWS * rate) / (cells["count"] + PRIOR_ROWS)
        table[str(compound)] = {"_": float(rate), **{str(a): float(v) for a, v in shrunk.items()}}
    return table


def hazard_predict(table: dict[str, dict[str, float]], frame: pd.DataFrame) -> np.ndarray:
    ages = frame["TyreLife"].clip(1, 60).fillna(1).round().astype(int).astype(str)
    out = []
    for compound, age in zip(frame["Compound"].fillna("UNKNOWN").astype(str), ages, strict=True):
        cells = table.get(compound, table["_overall"])
        out.append(cells.get(age, cells["_"]))
    return np.asarray(out, dtype=float)


# ------------------------------------------------------------------ window
AGED: tuple[str, ...] = ("TyreLife", "LapsInStint", "StintCleanLaps", "LapNumber", "LapsSincePB")
GREEN_NOW: tuple[str, ...] = ("SafetyCarNow", "VSCNow", "RedFlagNow")


def aged(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """``frame`` (derived columns included) rolled forward ``k`` laps without a stop (module doc)."""
    out = frame.copy()
    if k == 0:
        return out
    for name in AGED:
        out[name] = out[name].astype(float) + k
    out["FuelKg"] = (out["FuelKg"].astype(float) - 1.7 * k).clip(lower=0.0)
    out["LapsRemaining"] = out["RaceLaps"] - out["LapNumber"]
    out["RaceProgress"] = out["LapNumber"] / out["RaceLaps"]
    for name in GREEN_NOW:
        out[name] = 0.0
    return out


def aged_stack(frame: pd.DataFrame, lookahead: int) -> pd.DataFrame:
    """``pd.concat([aged(frame, k) for k in range(lookahead)])`` in one vectorised pass (serving
    scores one row at a time: 45 frame copies cost ~50x the model call)."""
    n = len(frame)
    out = frame.iloc[np.tile(np.arange(n), lookahead)].reset_index(drop=True)
    k = np.repeat(np.arange(lookahead, dtype=float), n)
    for name in AGED:
        out[name] = out[name].astype(float).to_numpy() + k
    out["FuelKg"] = np.clip(out["FuelKg"].astype(float).to_numpy() - 1.7 * k, 0.0, None)
    out["LapsRemaining"] = out["RaceLaps"] - out["LapNumber"]
    out["RaceProgress"] = out["LapNumber"] / out["RaceLaps"]
    for name in GREEN_NOW:
        out[name] = np.where(k == 0, out[name].astype(float).to_numpy(), 0.0)
    return out


def stop_cdf(booster: Any, frame: pd.DataFrame, lookahead: int = MAX_LOOKAHEAD) -> np.ndarray:
    """(rows, lookahead) cumulative stop probability: column j = P(in-lap <= LapNumber + 1 + j)."""
    if frame.empty:
        return np.zeros((0, lookahead))
    stacked = aged_stack(frame, lookahead)
    p = booster.predict(feature_matrix(stacked), num_iteration=booster.best_iteration or None)
    p = np.asarray(p, dtype=float).reshape(lookahead, len(frame)).T
    in_lap = frame["LapNumber"].to_numpy(dtype=float)[:, None] + 1 + np.arange(lookahead)[None, :]
    possible = in_lap <= frame["RaceLaps"].to_numpy(dtype=float)[:, None] - 1
    hazard = np.where(possible, 1.0 - (1.0 - np.clip(p, 0.0, 1.0)) ** (1.0 / HORIZON), 0.0)
    return 1.0 - np.cumprod(1.0 - hazard, axis=1)


def windows(frame: pd.DataFrame, cdf: np.ndarray, lo: float, hi: float) -> pd.DataFrame:
    """``WindowOpenLap`` / ``WindowCloseLap`` (in-laps) from :func:`stop_cdf` (module doc)."""
    lap = frame["LapNumber"].to_numpy(dtype=float)
    last = np.maximum(frame["RaceLaps"].to_numpy(dtype=float) - 1, lap + 1)
    opened, closed = cdf >= lo, cdf >= hi
    open_lap = np.where(opened.any(axis=1), lap + 1 + opened.argmax(axis=1), np.nan)
    close_lap = np.where(
        closed.any(axis=1), lap + 1 + closed.argmax(axis=1), np.minimum(last, lap + cdf.shape[1])
    )
    close_lap = np.where(np.isnan(open_lap), np.nan, close_lap)
    return pd.DataFrame({"WindowOpenLap": open_lap, "WindowCloseLap": close_lap}, index=frame.index)


def lead_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Per stop (in-lap L), the driver's row at max(L - WINDOW_LEAD, stint's first lap), capped at
    L - 1, with ``StopLap`` = L and ``StopNeutralised``. ``frame``: :func:`pit_labels` rows."""
    f = frame.reset_index(drop=True)
    first = f.groupby([*(f[k] for k in DRIVER), f["Stint"].fillna(-1)])["LapNumber"].transform("min")
    stop = f[f[IN_LAP]]
    lead = np.minimum(np.maximum(stop["LapNumber"] - WINDOW_LEAD, first[stop.index]), stop["LapNumber"] - 1)
    want = stop[list(DRIVER)].assign(
        LapNumber=np.asarray(lead, dtype=int), StopLap=stop["LapNumber"].to_numpy()
    )
    want["StopNeutralised"] = (_status_has(stop["TrackStatus"], "4567") == 1).to_numpy()
    return f.drop(columns=["StopLap", "StopNeutralised"], errors="ignore").merge(
        want, on=[*DRIVER, "LapNumber"], how="inner"
    )


def window_metrics(leads: pd.DataFrame, win: pd.DataFrame) -> dict[str, float]:
    """Share of stops inside their window (all and green stops), mean width, n."""
    inside = (leads["StopLap"] >= win["WindowOpenLap"]) & (leads["StopLap"] <= win["WindowCloseLap"])
    green = ~leads["StopNeutralised"].astype(bool)
    width = win["WindowCloseLap"] - win["WindowOpenLap"] + 1
    return {
        "stops_in_window_share": float(inside.mean()) if len(leads) else math.nan,
        "green_stops_in_window_share": float(inside[green].mean()) if green.any() else math.nan,
        "window_width_mean_laps": float(width.mean()),
        "stops_without_window_share": float(win["WindowOpenLap"].isna().mean()) if len(leads) else math.nan,
        "window_stops": float(len(leads)),
    }


def choose_quantiles(leads: pd.DataFrame, cdf: np.ndarray) -> tuple[float, float]:
    """(lo, hi) with the narrowest mean window holding >= TARGET_SHARE of the stops (else the
    highest share), on the validation races' stops."""
    scored = []
    for lo in LO_GRID:
        for hi in HI_GRID:
            m = window_metrics(leads, windows(leads, cdf, lo, hi))
            scored.append(
                (
                    m["stops_in_window_share"] >= TARGET_SHARE,
                    -m["window_width_mean_laps"],
                    m["stops_in_window_share"],
                    lo,
                    hi,
                )
            )
    ok = [s for s in scored if s[0]]
    best = max(ok, key=lambda s: s[1]) if ok else max(scored, key=lambda s: s[2])
    return float(best[3]), float(best[4])


# ------------------------------------------------------------------ undercut
def undercut_features(attacker: pd.DataFrame, ahead: pd.DataFrame) -> pd.DataFrame:
    """:data:`UNDERCUT_FEATURES` from the attacker's rows and the car-ahead's rows of the same lap
    (aligned by position; both with derived columns)."""
    a, b = ahead.reset_index(drop=True), attacker.reset_index(drop=True)
    return pd.DataFrame(
        {
            "Gap": b["IntervalAhead"].astype(float),
            "TyreLife": b["TyreLife"].astype(float),
            "TyreLifeAhead": a["TyreLife"].astype(float),
            "TyreLifeDiff": a["TyreLife"].astype(float) - b["TyreLife"].astype(float),
            "StintDegSlope": b["StintDegSlope"].astype(float),
            "StintDegSlopeAhead": a["StintDegSlope"].astype(float),
            "PaceDelta": b["Last3Median"].astype(float) - a["Last3Median"].astype(float),
            "PitLossSeconds": b["PitLossSeconds"].astype(float),
            "LapsRemaining": b["LapsRemaining"].astype(float),
        }
    ).set_axis(attacker.index)


def car_ahead(frame: pd.DataFrame, keys: tuple[str, ...]) -> pd.DataFrame:
    """Per row, the row of the car that crossed the line just before it on the same lap (NaN rows
    when none); ``keys`` identify the race (e.g. Year+EventName or SessionKey)."""
    cols = [*keys, "LapNumber", "PositionOnLap"]
    target = frame[cols].assign(PositionOnLap=frame["PositionOnLap"] - 1)
    indexed = frame.drop_duplicates(cols).set_index(cols)
    return indexed.reindex(pd.MultiIndex.from_frame(target)).reset_index().set_axis(frame.index)


def undercut_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """Undercut attempts (module doc) with :data:`UNDERCUT_FEATURES`, ``Success`` and race keys.
    ``frame``: :func:`pit_labels` rows with derived columns."""
    f = frame.reset_index(drop=True)
    green = _status_has(f["TrackStatus"], "4567").fillna(0.0) == 0
    stop_set = set(map(tuple, f.loc[f[IN_LAP], [*DRIVER, "LapNumber"]].itertuples(index=False)))
    green_stop = set(map(tuple, f.loc[f[IN_LAP] & green, [*DRIVER, "LapNumber"]].itertuples(index=False)))
    row_of = {k: i for i, k in enumerate(f[[*DRIVER, "LapNumber"]].itertuples(index=False, name=None))}
    time = f["SessionTime"].to_numpy(dtype=float)
    interval = f["IntervalAhead"].to_numpy(dtype=float)
    ahead = car_ahead(f, RACE)
    rows: list[dict[str, Any]] = []
    keep: list[int] = []
    for year, event, drv, lap in f.loc[f[IN_LAP] & green, [*DRIVER, "LapNumber"]].itertuples(
        index=False, name=None
    ):
        j = row_of.get((year, event, drv, lap - 1))
        if j is None:
            continue
        gap = interval[j]
        if not 0.0 < gap <= UNDERCUT_GAP:  # NaN fails too
            continue
        a = ahead.loc[j]
        if pd.isna(a["DriverNumber"]):
            continue
        a_drv = a["DriverNumber"]
        later = [n for n in range(lap, lap + UNDERCUT_LAPS + 1) if (year, event, a_drv, n) in stop_set]
        if not later or later[0] == lap or (year, event, a_drv, later[0]) not in green_stop:
            continue
        a_in = later[0]
        if any((year, event, drv, n) in stop_set for n in range(lap + 1, a_in + 2)):
            continue
        b_out, a_out = row_of.get((year, event, drv, a_in + 1)), row_of.get((year, event, a_drv, a_in + 1))
        if b_out is None or a_out is None:
            continue
        success = bool(time[b_out] < time[a_out])
        rows.append({"Year": year, "EventName": event, "DriverNumber": drv, "AheadNumber": a_drv,
                     "StopLap": lap, "AheadStopLap": a_in, "Success": success})  # fmt: skip
        keep.append(j)
    if not rows:
        return pd.DataFrame(columns=[*RACE, "DriverNumber", "Success", *UNDERCUT_FEATURES])
    feats = undercut_features(f.loc[keep], ahead.loc[keep]).reset_index(drop=True)
    return pd.DataFrame(rows).join(feats)


def undercut_scores(booster: Any, rows: pd.DataFrame, keys: tuple[str, ...]) -> np.ndarray:
    """P(undercut success) if the driver stopped now, for rows within UNDERCUT_GAP of the car ahead
    on the same lap (NaN otherwise or when the car ahead is not among ``rows``)."""
    ahead = car_ahead(rows, keys)
    x = undercut_features(rows, ahead)
    ok = (x["Gap"] > 0) & (x["Gap"] <= UNDERCUT_GAP) & ahead["DriverNumber"].notna().to_numpy()
    out = np.full(len(rows), np.nan)
    if ok.any():
        out[ok.to_numpy()] = booster.predict(x[ok], num_iteration=booster.best_iteration or None)
    return out


# ------------------------------------------------------------------ metrics
def pit_metrics(frame: pd.DataFrame, p: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """AUC-ROC, AUC-PR and Brier of Pit3 for the model and the hazard baseline, on all labelled rows
    and on ``green`` rows (no SC/VSC/red anywhere on laps N..N+3), plus row counts."""
    y = frame[LABEL].astype(bool).to_numpy()
    out: dict[str, float] = {}
    for subset, mask in {
        "": np.ones(len(frame), bool),
        "green_": ~frame["NeutralisedHorizon"].to_numpy(),
    }.items():
        for name, q in {"model": p, "baseline": baseline}.items():
            out[f"{name}_{subset}pit3_auc_roc"] = base.auc_roc(y[mask], q[mask])
            out[f"{name}_{subset}pit3_auc_pr"] = base.auc_pr(y[mask], q[mask])
            out[f"{name}_{subset}pit3_brier"] = base.brier(y[mask], q[mask])
        out[f"{subset}pit3_rows"] = float(mask.sum())
        out[f"{subset}pit3_positive_rate"] = float(y[mask].mean()) if mask.any() else math.nan
    return out


def undercut_metrics(pairs: pd.DataFrame, score: np.ndarray) -> dict[str, float]:
    """Undercut-success AUC of the model and two one-feature baselines (smaller gap; older tyres on
    the car ahead), the pair count and the success rate."""
    y = pairs["Success"].astype(bool).to_numpy()
    return {
        "undercut_model_auc_roc": base.auc_roc(y, score),
        "undercut_gap_baseline_auc_roc": base.auc_roc(y, -pairs["Gap"].to_numpy(dtype=float)),
        "undercut_tyre_age_baseline_auc_roc": base.auc_roc(y, pairs["TyreLifeDiff"].to_numpy(dtype=float)),
        "undercut_pairs": float(len(pairs)),
        "undercut_success_rate": float(y.mean()) if len(y) else math.nan,
    }


# ------------------------------------------------------------------ fit, predict, evaluate
def circuit_meta(frame: pd.DataFrame, raw_laps: pd.DataFrame) -> dict[str, Any]:
    """Per-circuit RaceLaps and pit-lane loss from the given (non-test) races."""
    laps_by_event = frame.groupby("EventName")["RaceLaps"].median()
    return {
        "race_laps": {str(k): float(v) for k, v in laps_by_event.items()},
        "pit_loss": pit_loss_table(frame, raw_laps),
    }


def fit_pit_booster(
    frame: pd.DataFrame, where: pd.Series, params: dict[str, Any], rounds: int, progress: bool
) -> Any:
    """Binary LightGBM on the train races' labelled rows, early-stopped on the validation races'."""
    import lightgbm as lgb

    x, y = feature_matrix(frame), frame[LABEL].astype(float)
    train, val = (where == "train").to_numpy(), (where == "validation").to_numpy()
    if not train.any():
        raise ValueError("no training rows: every race is a test or validation race")
    params = {**params, "monotone_constraints": monotone_constraints(list(x.columns))}
    data = lgb.Dataset(x[train], y[train], categorical_feature=["Compound"])
    valid, callbacks = [], []
    if val.any():
        valid = [lgb.Dataset(x[val], y[val], reference=data)]
        callbacks.append(lgb.early_stopping(EARLY_STOPPING, verbose=False))
    with base.rounds_progress(rounds, "pit-window trees", progress) as tick:
        return lgb.train(params, data, rounds, valid_sets=valid, callbacks=[*callbacks, tick])


def fit_undercut_booster(pairs: pd.DataFrame, rounds: int = UNDERCUT_ROUNDS) -> Any:
    """Small LightGBM on the train races' undercut pairs (fixed rounds; the sample is small)."""
    import lightgbm as lgb

    if pairs.empty:
        raise ValueError("no undercut pairs in the training races")
    x = pairs[list(UNDERCUT_FEATURES)].astype(float)
    mono = [-1 if c == "Gap" else 0 for c in UNDERCUT_FEATURES]
    data = lgb.Dataset(x, pairs["Success"].astype(float))
    return lgb.train({**UNDERCUT_PARAMS, "monotone_constraints": mono}, data, rounds)


def labelled(corpus: base.Corpus, meta: dict[str, Any] | None = None) -> pd.DataFrame:
    """:func:`pit_labels` rows with derived columns (``meta`` None: only labels and RaceLaps)."""
    frame = pit_labels(corpus.laps, corpus.raw_laps)
    return frame if meta is None else with_derived(frame, meta)


def fit(
    corpus: base.Corpus,
    split: base.Splitter = base.race_split,
    progress: bool = False,
    params: dict[str, Any] | None = None,
    rounds: int = MAX_ROUNDS,
) -> tuple[base.ModelBundle, dict[str, float]]:
    frame = labelled(corpus)
    fitted = (split(frame) != "test").to_numpy()
    raw_fitted = corpus.raw_laps[(split(corpus.raw_laps) != "test").to_numpy()]
    meta: dict[str, Any] = circuit_meta(frame[fitted], raw_fitted)
    frame = with_derived(frame, meta)
    where = split(frame)
    rows = frame[LABEL].notna().to_numpy()
    booster = fit_pit_booster(frame[rows], where[rows], {**PIT_PARAMS, **(params or {})}, rounds, progress)
    train_rows = rows & (where == "train").to_numpy()
    meta["hazard"] = hazard_table(frame[train_rows])
    val = where == "validation"
    leads = lead_rows(frame[val.to_numpy()])
    cdf = stop_cdf(booster, leads)
    meta["window_quantiles"] = list(choose_quantiles(leads, cdf)) if len(leads) else [0.1, 0.9]
    pairs = undercut_pairs(frame)
    pair_split = split(pairs) if len(pairs) else pd.Series(dtype=object)
    undercut = fit_undercut_booster(pairs[(pair_split == "train").to_numpy()])
    meta.update(
        features=list(FEATURES),
        undercut_features=list(UNDERCUT_FEATURES),
        params={**PIT_PARAMS, **(params or {})},
        best_iteration=booster.best_iteration or booster.current_iteration(),
    )
    bundle = base.ModelBundle("pit_window", {PIT_BOOSTER: booster, UNDERCUT_BOOSTER: undercut}, meta)
    metrics: dict[str, float] = {}
    vrows = frame[rows & val.to_numpy()]
    if len(vrows):
        p = booster.predict(feature_matrix(vrows), num_iteration=booster.best_iteration or None)
        metrics.update(pit_metrics(vrows, p, hazard_predict(meta["hazard"], vrows)))
        lo, hi = meta["window_quantiles"]
        metrics.update(window_metrics(leads, windows(leads, cdf, lo, hi)))
        vpairs = pairs[(pair_split == "validation").to_numpy()]
        if len(vpairs):
            score = undercut.predict(vpairs[list(UNDERCUT_FEATURES)].astype(float))
            metrics.update(undercut_metrics(vpairs, score))
    return bundle, {f"val_{k}": v for k, v in metrics.items()}


def predict(bundle: base.ModelBundle, rows: pd.DataFrame) -> pd.DataFrame:
    """Per LapFeatures row: ``PitProbability3Laps``, ``WindowOpenLap``/``WindowCloseLap`` (in-laps),
    ``PitLossSeconds`` and ``UndercutScore``. Optional row columns that sharpen it: ``EventName``
    (circuit tables), ``RaceLaps`` (scheduled laps), ``TrackStatus`` (raw lap status string)."""
    frame = rows.copy()
    if "EventName" not in frame.columns:
        frame["EventName"] = ""
    frame = with_derived(frame, bundle.meta)
    booster = bundle.boosters[PIT_BOOSTER]
    cdf = stop_cdf(booster, frame)
    lo, hi = bundle.meta["window_quantiles"]
    keys = ("SessionKey",) if "SessionKey" in frame.columns else RACE
    out = windows(frame, cdf, lo, hi)
    out.insert(
        0,
        "PitProbability3Laps",
        booster.predict(feature_matrix(frame), num_iteration=booster.best_iteration or None),
    )
    out["PitLossSeconds"] = frame["PitLossSeconds"].to_numpy()
    out["UndercutScore"] = undercut_scores(bundle.boosters[UNDERCUT_BOOSTER], frame, keys)
    return out.set_axis(rows.index)


def evaluate(bundle: base.ModelBundle, corpus: base.Corpus) -> base.Evaluation:
    frame = labelled(corpus, bundle.meta)
    rows = frame[frame[LABEL].notna().to_numpy()].copy()
    if rows.empty:
        raise ValueError("no driver-laps with a Pit3 label to score")
    booster = bundle.boosters[PIT_BOOSTER]
    rows["PitProbability3Laps"] = booster.predict(
        feature_matrix(rows), num_iteration=booster.best_iteration or None
    )
    rows["BaselinePit3"] = hazard_predict(bundle.meta["hazard"], rows)
    metrics = pit_metrics(rows, rows["PitProbability3Laps"].to_numpy(), rows["BaselinePit3"].to_numpy())
    leads = lead_rows(frame)
    win = windows(leads, stop_cdf(booster, leads), *bundle.meta["window_quantiles"])
    metrics.update(window_metrics(leads, win))
    pairs = undercut_pairs(frame)
    score = (
        bundle.boosters[UNDERCUT_BOOSTER].predict(pairs[list(UNDERCUT_FEATURES)].astype(float))
        if len(pairs)
        else np.array([])
    )
    metrics.update(undercut_metrics(pairs, score))
    per_race = {}
    for (year, event), g in rows.groupby(list(RACE), sort=True):
        per_race[f"{year} {event}"] = {
            "model_pit3_auc_roc": base.auc_roc(
                g[LABEL].astype(bool).to_numpy(), g["PitProbability3Laps"].to_numpy()
            ),
            "model_pit3_brier": base.brier(
                g[LABEL].astype(float).to_numpy(), g["PitProbability3Laps"].to_numpy()
            ),
        }
    leads = pd.concat([leads, win], axis=1).assign(Kind="window")
    pairs = pairs.assign(UndercutScore=score, Kind="undercut")
    return base.Evaluation(
        metrics=metrics,
        scored=pd.concat([rows.assign(Kind="lap"), leads, pairs], ignore_index=True),
        races=base.race_names(rows),
        targets=[
            base.Target("undercut_model_auc_roc", metrics["undercut_model_auc_roc"], ">=", UNDERCUT_ANCHOR),
            base.Target(
                "model_minus_baseline_pit3_auc_roc",
                metrics["model_pit3_auc_roc"] - metrics["baseline_pit3_auc_roc"],
                ">=",
                0.0,
            ),
        ],
        per_race=per_race,
        notes=[
            f"window quantiles (lo, hi) = {tuple(bundle.meta['window_quantiles'])}, chosen on validation races",
            f"undercut AUC rests on {len(pairs)} pairs only: a small sample, read it with its n",
        ],
    )


RECIPE = base.Recipe(
    key="pit_window",
    model_name=MODEL_NAME,
    feature_service=FEATURE_SERVICE,
    service_features=SERVICE_FEATURES,
    selection_metric=SELECTION_METRIC,
    fit=fit,
    evaluate=evaluate,
    predict=predict,
    description="P(pit within 3 laps), recommended in-lap window, pit-lane loss and undercut score",
)
