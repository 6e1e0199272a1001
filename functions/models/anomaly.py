"""Model 5, anomaly: a calibrated score for mechanical or driver irregularities, per lap and per
telemetry window, from how far the measured signals fall from what LightGBM expects.

* **Lap level** (every race): for each signal ``s`` of :data:`LAP_SIGNALS` (the speed traps
  SpeedI1, SpeedI2, SpeedFL, SpeedST in km/h and LapTime in s) a booster predicts
  ``s - Ref_s`` from context: ``Ref_s`` is the median of the driver's own in-scope values of ``s``
  over his previous 5 laps (LapTime: the feature ``Last3Median``), ``Field_s - Ref_s`` where
  ``Field_s`` is the median over the in-scope laps of the drivers who completed the same LapNumber
  earlier (causal: what the stream knows when the car crosses the line), plus Compound,
  TyreLife, FuelKg, LapNumber, PositionOnLap, IntervalAhead, InDRSRange, LapsInStint.
* **Window level** (5 s TelemetryWindow rows, races with car data): for each signal of
  :data:`WINDOW_SIGNALS` a booster predicts it from the *other* sensors' window metrics (its own
  sensor group is left out, so a broken sensor cannot explain itself; SpeedMax also leaves out
  RPM, which falls with it in a power loss), the previous window's SpeedMean and ``Ref_s``, the
  median of the driver's previous 36 in-scope windows (3 min).
* **Deficit** ``d_s``: the residual ``(actual - expected) / scale_s`` signed so that the fault
  direction is positive (slower speed, lower RPM, lower gear, less throttle, slower lap: ``-z``;
  more brake: ``+z``); ``scale_s`` = 1.4826 x MAD of the calibration residuals (floored).
  Lap statistic ``S`` = the median of the 5 lap deficits (>= 3 present), so at least 3 signals
  must agree (a power loss slows every trap; one glitchy trap or a driver's slow lap alone does
  not). Window statistic: real faults persist, feed oddities (BrakeShare 1.0 at 310 km/h) mostly
  do not, so per signal the *run deficit* = mean of the last :data:`RUN_WINDOWS` contiguous
  windows' deficits clipped to +-:data:`RUN_CLIP`, divided by its :data:`RUN_QUANTILE`
  calibration quantile (per-signal calibration), ``S = max_s``. ``AnomalySignal`` names the
  signal that drives ``S``. Window rows must come in driver / WindowStart order with the
  driver's previous windows (as :func:`window_rows` builds them and a stream delivers them).
* **Score**: ``AnomalyScore = 1 - exceed(S)``, ``exceed`` = share of calibration rows with a
  larger statistic (interpolated; above the largest, an exponential tail), so 0..1.
  ``AnomalyFlag = AnomalyScore >= threshold``, the lowest threshold giving at most
  :data:`ALARM_BUDGET_PER_HOUR` (0.4) alarms per race-hour per level on the calibration races,
  so a race with both levels expects <= 0.8 (issue: <= 1). The reported combined rate is the
  lap rate plus the window rate per hour of the races that have car telemetry.
* **Alarm**: a run of flagged in-scope rows of one driver (consecutive laps; windows <= 30 s
  apart). **In scope**: green-flag laps that the lap features call clean (or only deleted), and
  the windows inside them; other rows are scored but never counted as false alarms.
* **Split** (narrowed for the windows, as base.py allows): lap boosters train on the train races
  and calibrate on base.VALIDATION_RACES. Car telemetry exists in the repo only for the test races,
  so window boosters train on the bundled windows of :data:`WINDOW_FIT_RACES` (training races)
  and calibrate on :data:`WINDOW_CALIBRATION_RACES` (two other training races, never fitted on).
* **SYNTHETIC faults** (:func:`inject_faults`): evaluation only, always marked ``Synthetic=True``;
  episodes that persist 2-4 laps / 30-90 s, references recomputed from the faulty rows.
  ``synthetic_recall_<kind>`` = share of episodes with a flagged in-scope row,
  ``synthetic_delay_<kind>`` = median laps / seconds from onset to the first flag.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stratx.functions.models import base

MODEL_NAME = "stratx-anomaly"
FEATURE_SERVICE = "anomaly_v1"
SELECTION_METRIC = "val_synthetic_miss_rate"
WINDOWS_FILE = "telemetry_windows.parquet"
WINDOW_RACE_FOLDERS = ("2023_miami", "2023_austrian", "2023_italian", "2023_hungarian", "2023_japanese")
WINDOW_FIT_RACES = ((2023, "Miami Grand Prix"), (2023, "Austrian Grand Prix"), (2023, "Italian Grand Prix"))
WINDOW_CALIBRATION_RACES = ((2023, "Hungarian Grand Prix"), (2023, "Japanese Grand Prix"))
KEYS = ["Year", "EventName", "DriverNumber"]

SPEED_TRAPS = ("SpeedI1", "SpeedI2", "SpeedFL", "SpeedST")
LAP_SIGNALS = (*SPEED_TRAPS, "LapTime")
LAP_CONTEXT = (
    "TyreLife", "FuelKg", "LapNumber", "PositionOnLap", "IntervalAhead", "InDRSRange", "LapsInStint",
)  # fmt: skip
COMPOUNDS = ("SOFT", "MEDIUM", "HARD", "INTERMEDIATE", "WET")
# the LapFeatures fields the lap level reads (FEATURE_SERVICE holds exactly these)
SERVICE_FEATURES: tuple[str, ...] = (
    *LAP_SIGNALS, "TrackStatus", "IsClean", "Last3Median", "Compound", *LAP_CONTEXT,
)  # fmt: skip
SENSOR_GROUPS: dict[str, tuple[str, ...]] = {
    "speed": ("SpeedMean", "SpeedStd", "SpeedMin", "SpeedMax", "SpeedMeanPrev"),
    "rpm": ("RPMMean", "RPMMax", "UpshiftRPMMean"),
    "gear": ("MaxGear", "GearChanges"),
    "throttle": ("ThrottleMean", "FullThrottleShare", "ThrottleBrakeOverlapShare"),
    "brake": ("BrakeShare", "BrakeEvents", "DecelMean", "ThrottleBrakeOverlapShare"),
    "drs": ("DRSOpenShare",),
}
# signal -> (sensor groups it may not be explained by, fault direction: -1 a drop is the fault, +1 a rise).
# SpeedMax leaves out RPM too: speed and RPM fall together in a power loss (same gear), so the
# speed booster predicts the speed the throttle, gear and brake traces call for.
WINDOW_SIGNALS: dict[str, tuple[tuple[str, ...], int]] = {
    "RPMMax": (("rpm",), -1),
    "MaxGear": (("gear",), -1),
    "ThrottleMean": (("throttle",), -1),
    "BrakeShare": (("brake",), 1),
    "SpeedMax": (("speed", "rpm"), -1),
}
SCALE_FLOOR = {"LapTime": 0.1, "RPMMax": 50.0, "MaxGear": 0.25, "ThrottleMean": 2.0, "BrakeShare": 0.02}
# alarms per race-hour allowed per level on the calibration races: 0.4 + 0.4 leaves margin under
# the issue's 1 per race-hour (a threshold set on a few races' tail does not transfer exactly)
ALARM_BUDGET_PER_HOUR = {"lap": 0.4, "window": 0.4}
# window statistic: mean deficit over 6 contiguous windows (30 s), each clipped to +-3; chosen on
# the window calibration races among min / median / mean / CUSUM runs of 3-8 windows
RUN_WINDOWS, RUN_CLIP = 6, 3.0
RUN_QUANTILE = 0.999  # per-signal run deficits are divided by this calibration quantile
FAULT_LAPS, FAULT_WINDOWS = (2, 4), (6, 18)  # SYNTHETIC fault duration, inclusive range
RUN_GAP_S = 30.0
LAP_REF_LAPS, WINDOW_REF_WINDOWS = 5, 36
FAULT_KINDS = ("power_loss", "rpm_drop", "gear_stuck", "throttle_glitch", "brake_glitch")
MECHANICAL = frozenset(
    {"Engine", "Power Unit", "Gearbox", "Brakes", "Fuel pressure", "Fuel pump", "Hydraulics",
     "Retired", "Electrical", "Water pressure", "Oil pressure", "Oil leak", "Water leak",
     "Transmission", "Mechanical", "Cooling system", "Overheating", "Exhaust", "Turbo"}
)  # fmt: skip
SLOW_LAP_S = 5.0
FIELD_SLOW = 0.03  # a lap whose field median is > 3 % slower than the race's is neutralised, not green
# 1 thread: the same model, ~11 s for the whole fit; 2 threads took 10-30 s on a busy 2-core box
LGB_PARAMS: dict[str, Any] = {
    "objective": "l2", "learning_rate": 0.15, "num_leaves": 15, "min_data_in_leaf": 100, "max_bin": 63,
    "feature_fraction": 0.9, "bagging_fraction": 0.5, "bagging_freq": 1,
    "seed": 0, "deterministic": True, "num_threads": 1, "verbose": -1,
}  # fmt: skip
ROUNDS, EARLY_STOPPING = 120, 15


# ------------------------------------------------------------------ rows and context
def lap_rows(laps: pd.DataFrame, raw_laps: pd.DataFrame | None = None) -> pd.DataFrame:
    """LapFeatures rows + the lap's speed traps, times and track status, ``InScope`` (clean
    green-flag lap; a deleted lap counts) and the references ``Ref_s`` / ``Field_s``.

    LapFeatures carry TrackStatus and the speed traps themselves; ``raw_laps`` (the Lap events)
    only fills what the rows lack. Without it (serving), ``Time`` = SessionTime and
    ``LapStartTime`` = SessionTime - LapTime. Every reference is causal, so a stream gets the
    same numbers as the offline build: ``Ref_s`` uses the driver's earlier laps, ``Field_s`` the
    cars that completed the same lap *earlier* (None for the first car on the lap)."""
    frame = laps.copy()
    if "Year" not in frame.columns:
        frame["Year"] = 0  # serving rows: one session per request, keyed by EventName/SessionKey
    if "EventName" not in frame.columns:
        frame["EventName"] = frame["SessionKey"].astype(str)
    frame["DriverNumber"] = frame["DriverNumber"].astype(str)
    frame["LapNumber"] = frame["LapNumber"].astype(int)
    wanted = ["LapStartTime", "Time", "TrackStatus", *SPEED_TRAPS]
    missing = [c for c in wanted if c not in frame.columns]
    if missing and raw_laps is not None and not raw_laps.empty:
        raw = raw_laps[[*KEYS, "LapNumber", *[c for c in missing if c in raw_laps.columns]]].copy()
        raw["DriverNumber"] = raw["DriverNumber"].astype(str)
        raw["LapNumber"] = raw["LapNumber"].astype(int)
        frame = frame.merge(raw.drop_duplicates([*KEYS, "LapNumber"]), on=[*KEYS, "LapNumber"], how="left")
    if "Time" not in frame.columns:
        frame["Time"] = frame["SessionTime"].astype(float)
    if "LapStartTime" not in frame.columns:
        frame["LapStartTime"] = frame["SessionTime"].astype(float) - frame["LapTime"].astype(float)
    for c in ("TrackStatus", *SPEED_TRAPS):
        if c not in frame.columns:
            frame[c] = None if c == "TrackStatus" else np.nan
    for c in SPEED_TRAPS:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    reason = frame["CleanReason"].astype(object)
    frame["InScope"] = (frame["IsClean"].fillna(False).astype(bool) | (reason == "deleted")) & frame[
        "LapTime"
    ].notna()
    frame = frame.sort_values([*KEYS, "LapNumber"], kind="stable").reset_index(drop=True)
    lap_keys = [frame.Year, frame.EventName, frame.LapNumber]
    order = frame["Time"].astype(float).rank(method="first")
    for s in SPEED_TRAPS:
        kept = frame[s].where(frame["InScope"])
        frame[f"Ref_{s}"] = rolling_median(kept, [frame[k] for k in KEYS], LAP_REF_LAPS, 2)
        frame[f"Field_{s}"] = _earlier_median(kept, lap_keys, order)
    frame["Ref_LapTime"] = frame["Last3Median"].astype(float)
    kept = frame["LapTime"].astype(float).where(frame["InScope"])
    frame["Field_LapTime"] = _earlier_median(kept, lap_keys, order)
    typical = frame.groupby(["Year", "EventName"])["Field_LapTime"].transform("median")
    frame["InScope"] &= ~(frame["Field_LapTime"] > (1 + FIELD_SLOW) * typical)  # neutralised lap
    return frame


def _earlier_median(values: pd.Series, keys: list[pd.Series], order: pd.Series) -> pd.Series:
    """Per group (one lap of one race), the median of the values of rows earlier in ``order``
    (line-crossing order): what is known when a car completes the lap."""
    frame = pd.DataFrame(
        {
            "v": values.to_numpy(),
            "o": order.to_numpy(),
            **{f"k{i}": k.to_numpy() for i, k in enumerate(keys)},
        },
        index=values.index,
    ).sort_values("o", kind="stable")
    cols = [f"k{i}" for i in range(len(keys))]
    grouped = frame.groupby(cols, sort=False)["v"]
    running = grouped.expanding().median().reset_index(level=list(range(len(cols))), drop=True)
    earlier = running.groupby([frame[c] for c in cols], sort=False).shift(1)
    return earlier.reindex(values.index)


def rolling_median(
    values: pd.Series, keys: list[pd.Series], window: int, min_periods: int, shift: int = 1
) -> pd.Series:
    """Per group, the median of the ``window`` values ending ``shift`` rows before each row (rows in
    the frame's order; NaN values skipped). One vectorised groupby-rolling pass: a lambda per
    group cost ~150 ms for a 25-row service request."""
    shifted = values.groupby(keys, sort=False).shift(shift)
    rolled = shifted.groupby(keys, sort=False).rolling(window, min_periods=min_periods).median()
    return rolled.reset_index(level=list(range(len(keys))), drop=True).reindex(values.index)


def window_rows(windows: pd.DataFrame, laps: pd.DataFrame) -> pd.DataFrame:
    """TelemetryWindow rows placed on the driver's lap (``LapNumber``, ``InScope``: the window lies
    inside an in-scope lap), with ``SpeedMeanPrev`` (the previous contiguous window) and ``Ref_s``.
    ``laps`` = :func:`lap_rows`. Windows after a driver's last lap get his last LapNumber + 1."""
    w = windows.copy()
    w["DriverNumber"] = w["DriverNumber"].astype(str)
    w = w.sort_values("WindowStart", kind="stable")
    lap_cols = [*KEYS, "LapNumber", "LapStartTime", "Time", "InScope"]
    spans = laps[lap_cols].dropna(subset=["LapStartTime"]).sort_values("LapStartTime", kind="stable")
    w = pd.merge_asof(w, spans, left_on="WindowStart", right_on="LapStartTime", by=KEYS, direction="backward")
    inside = w["WindowEnd"] <= w["Time"]
    w["InScope"] = w["InScope"].astype("boolean").fillna(False).to_numpy(dtype=bool) & inside.to_numpy()
    w["LapNumber"] = w["LapNumber"].where(inside, w["LapNumber"] + 1)
    w = w.sort_values([*KEYS, "WindowStart"], kind="stable").reset_index(drop=True)
    return window_context(w)


def window_context(w: pd.DataFrame) -> pd.DataFrame:
    """``SpeedMeanPrev`` and ``Ref_s`` of window rows sorted by driver and WindowStart, from the
    rows' own values (so a SYNTHETIC fault enters the references of the windows after it)."""
    w = w.copy()
    g = w.groupby(KEYS, sort=False)
    contiguous = g["WindowEnd"].shift(1) == w["WindowStart"]
    w["SpeedMeanPrev"] = g["SpeedMean"].shift(1).where(contiguous)
    for s in WINDOW_SIGNALS:
        kept = w[s].astype(float).where(w["InScope"])
        w[f"Ref_{s}"] = rolling_median(kept, [w[k] for k in KEYS], WINDOW_REF_WINDOWS, 6)
    return w


def lap_matrix(rows: pd.DataFrame, signal: str) -> pd.DataFrame:
    """Inputs of the lap booster of ``signal``."""
    ref = rows[f"Ref_{signal}"].astype(float)
    x = pd.DataFrame({"Ref": ref, "FieldDelta": rows[f"Field_{signal}"].astype(float) - ref})
    for c in LAP_CONTEXT:
        x[c] = pd.to_numeric(rows[c].astype(object), errors="coerce").astype(float)
    comp = rows["Compound"].astype(object)
    x["Compound"] = pd.Categorical(comp.where(comp.isin(COMPOUNDS)), categories=COMPOUNDS)
    return x


def window_inputs(signal: str) -> list[str]:
    """The window metrics that may explain ``signal``: every sensor group but the ones it excludes."""
    own = {c for group in WINDOW_SIGNALS[signal][0] for c in SENSOR_GROUPS[group]}
    cols = [c for group in SENSOR_GROUPS.values() for c in group if c not in own]
    return list(dict.fromkeys(cols))


def window_matrix(rows: pd.DataFrame, signal: str) -> pd.DataFrame:
    x = rows[window_inputs(signal)].astype(float).copy()
    x["Ref"] = rows[f"Ref_{signal}"].astype(float)
    return x


def _level(rows: pd.DataFrame) -> str:
    return "window" if "WindowStart" in rows.columns else "lap"


def _target(rows: pd.DataFrame, signal: str) -> pd.Series:
    """What a booster predicts: lap signals relative to ``Ref_s``, window signals as measured."""
    if _level(rows) == "lap":
        return rows[signal].astype(float) - rows[f"Ref_{signal}"].astype(float)
    return rows[signal].astype(float)


def _matrix(rows: pd.DataFrame, signal: str) -> pd.DataFrame:
    return lap_matrix(rows, signal) if _level(rows) == "lap" else window_matrix(rows, signal)


def signals(level: str) -> tuple[str, ...]:
    return LAP_SIGNALS if level == "lap" else tuple(WINDOW_SIGNALS)


def direction(signal: str) -> int:
    """+1 when a rise is the fault (LapTime, BrakeShare), -1 when a drop is."""
    if signal in WINDOW_SIGNALS:
        return WINDOW_SIGNALS[signal][1]
    return 1 if signal == "LapTime" else -1


# ------------------------------------------------------------------ SYNTHETIC faults
def inject_faults(
    frame: pd.DataFrame, kind: str, rng: np.random.Generator, share: float | None = None
) -> pd.DataFrame:
    """SYNTHETIC: a copy of lap or window rows (one driver's rows in order, as :func:`lap_rows` /
    :func:`window_rows` sort them) with fault *episodes* of ``kind``. Onsets: a random ``share``
    (laps 5 %, windows 1 %) of the eligible in-scope rows, at most one episode per driver within
    twice the reference span; each fault then persists over the driver's next rows
    (:data:`FAULT_LAPS` laps / :data:`FAULT_WINDOWS` contiguous windows) with one magnitude:

    * power_loss: laps: speed traps x (1 - f), LapTime x (1 + 0.15 f); windows: speeds and RPM
      x (1 - f) (same gear, so consistent), f ~ U(3 %, 8 %).
    * rpm_drop (windows): RPMMean, RPMMax, UpshiftRPMMean x (1 - f), f ~ U(8 %, 15 %).
    * gear_stuck (onset window MaxGear >= 7): MaxGear capped at g ~ {4, 5, 6}; the capped
      windows get GearChanges 0, UpshiftRPMMean NaN; speeds and RPM left as measured.
    * throttle_glitch (onset ThrottleMean > 50): ThrottleMean and FullThrottleShare x U(0.3, 0.6).
    * brake_glitch (onset BrakeShare < 0.2): BrakeShare + U(0.3, 0.6) (<= 1), BrakeEvents + 1 at onset.

    The references are then recomputed from the faulty values (windows: :func:`window_context`;
    laps: the driver's trap references and Last3Median move by what the faulty laps change), so
    every row sees what a stream would: the healthy past at the onset, the fault afterwards.
    Adds ``Synthetic`` (True on every row of an episode), ``FaultKind`` and ``FaultEpisode``
    (onset row position, -1 elsewhere). Kinds that do not apply to the level change nothing.
    """
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; one of {FAULT_KINDS}")
    window = _level(frame) == "window"
    out = frame.copy()
    out["Synthetic"], out["FaultKind"], out["FaultEpisode"] = False, None, -1
    touched = ("SpeedMean", "SpeedMin", "SpeedMax", "SpeedStd", "RPMMean", "RPMMax", "UpshiftRPMMean",
               "ThrottleMean", "FullThrottleShare", "BrakeShare", *LAP_SIGNALS)  # fmt: skip
    for c in [c for c in touched if c in out.columns]:
        out[c] = out[c].astype(float)
    if not window and kind != "power_loss":
        return out
    ok = frame["InScope"].to_numpy(dtype=bool, copy=True)
    if window and kind == "gear_stuck":
        ok &= frame["MaxGear"].to_numpy() >= 7
    elif window and kind == "throttle_glitch":
        ok &= frame["ThrottleMean"].to_numpy() > 50
    elif window and kind == "brake_glitch":
        ok &= frame["BrakeShare"].to_numpy() < 0.2
    for onset, rows in _episodes(frame, ok, rng, share if share is not None else (0.01 if window else 0.05)):
        idx = out.index[rows]
        _apply_fault(out, idx, kind, window, rng)
        out.loc[idx, "Synthetic"], out.loc[idx, "FaultKind"], out.loc[idx, "FaultEpisode"] = True, kind, onset
    return window_context(out) if window else _moved_lap_refs(frame, out)


def _episodes(
    frame: pd.DataFrame, ok: np.ndarray, rng: np.random.Generator, share: float
) -> list[tuple[int, np.ndarray]]:
    """(onset position, row positions) of non-overlapping SYNTHETIC fault episodes."""
    window = _level(frame) == "window"
    eligible = np.flatnonzero(ok)
    if not len(eligible):
        return []
    onsets = np.sort(rng.choice(eligible, size=max(1, round(share * len(eligible))), replace=False))
    low, high = FAULT_WINDOWS if window else FAULT_LAPS
    spacing = 2 * (WINDOW_REF_WINDOWS if window else LAP_REF_LAPS)
    driver = frame.groupby(KEYS, sort=False).ngroup().to_numpy()
    if window:  # a window continues its predecessor: same driver, no gap
        start, end = frame["WindowStart"].to_numpy(), frame["WindowEnd"].to_numpy()
        follows = np.r_[False, (driver[1:] == driver[:-1]) & (start[1:] == end[:-1])]
    else:
        lap = frame["LapNumber"].to_numpy()
        follows = np.r_[False, (driver[1:] == driver[:-1]) & (lap[1:] == lap[:-1] + 1)]
    out: list[tuple[int, np.ndarray]] = []
    last_end = -(10**9)
    for onset in onsets:
        if onset - last_end < spacing and driver[onset] == driver[max(last_end, 0)]:
            continue
        length, stop = int(rng.integers(low, high + 1)), onset + 1
        while stop < len(frame) and stop - onset < length and follows[stop]:
            stop += 1
        out.append((int(onset), np.arange(onset, stop)))
        last_end = stop - 1
    return out


def _apply_fault(out: pd.DataFrame, idx: pd.Index, kind: str, window: bool, rng: np.random.Generator) -> None:
    """One SYNTHETIC episode of ``kind`` on the rows ``idx`` of ``out`` (in place, one magnitude)."""

    def scale(cols: tuple[str, ...], factor: float) -> None:
        for c in cols:
            out.loc[idx, c] = out.loc[idx, c] * factor

    if kind == "power_loss":
        f = float(rng.uniform(0.03, 0.08))
        if window:
            scale(("SpeedMean", "SpeedMin", "SpeedMax", "SpeedStd", "RPMMean", "RPMMax"), 1 - f)
        else:
            scale(SPEED_TRAPS, 1 - f)
            scale(("LapTime",), 1 + 0.15 * f)
    elif kind == "rpm_drop":
        scale(("RPMMean", "RPMMax", "UpshiftRPMMean"), 1 - float(rng.uniform(0.08, 0.15)))
    elif kind == "gear_stuck":
        cap = int(rng.integers(4, 7))
        capped = idx[out.loc[idx, "MaxGear"].to_numpy() > cap]
        out.loc[capped, "MaxGear"], out.loc[capped, "GearChanges"] = cap, 0
        out.loc[capped, "UpshiftRPMMean"] = np.nan
    elif kind == "throttle_glitch":
        scale(("ThrottleMean", "FullThrottleShare"), float(rng.uniform(0.3, 0.6)))
    else:
        out.loc[idx, "BrakeShare"] = np.minimum(
            1.0, out.loc[idx, "BrakeShare"] + float(rng.uniform(0.3, 0.6))
        )
        out.loc[idx[:1], "BrakeEvents"] = out.loc[idx[:1], "BrakeEvents"] + 1


def _moved_lap_refs(clean: pd.DataFrame, faulty: pd.DataFrame) -> pd.DataFrame:
    """Lap references of ``faulty`` moved by what its SYNTHETIC laps change: the trap ``Ref_s``
    (median of the previous 5 in-scope laps) and Last3Median (last 3 clean laps, this one
    included, as LapFeatures define it). Field_s is left as built (one car barely moves it)."""
    keys = [clean[k] for k in KEYS]

    def rolled(values: pd.Series, n: int, shift: int) -> pd.Series:
        kept = values.astype(float).where(clean["InScope"])
        return rolling_median(kept, keys, n, 1, shift)

    for s in SPEED_TRAPS:
        faulty[f"Ref_{s}"] = (
            clean[f"Ref_{s}"] + rolled(faulty[s], LAP_REF_LAPS, 1) - rolled(clean[s], LAP_REF_LAPS, 1)
        )
    moved = rolled(faulty["LapTime"], 3, 0) - rolled(clean["LapTime"], 3, 0)
    faulty["Ref_LapTime"] = clean["Ref_LapTime"] + moved.fillna(0.0)
    return faulty


# ------------------------------------------------------------------ statistic, calibration, alarms
def deficits(boosters: dict[str, Any], meta: dict[str, Any], rows: pd.DataFrame) -> pd.DataFrame:
    """Per signal, the signed standardized residual ``d_s`` (fault direction positive)."""
    level = _level(rows)
    out = pd.DataFrame(index=rows.index)
    for s in signals(level):
        booster = boosters[f"{level}_{s}"]
        expected = booster.predict(_matrix(rows, s), num_iteration=booster.best_iteration or None)
        resid = _target(rows, s).to_numpy() - expected
        out[s] = direction(s) * resid / meta["scales"][f"{level}_{s}"]
    return out


def run_deficits(d: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Per signal, the mean deficit over the last :data:`RUN_WINDOWS` contiguous windows of the
    driver, each clipped to +-:data:`RUN_CLIP` (NaN until that many): one odd window adds at most
    RUN_CLIP / RUN_WINDOWS, a fault that persists keeps the mean high. ``rows`` in
    :func:`window_rows` order (driver, WindowStart), as a stream delivers them."""
    driver = rows.groupby(KEYS, sort=False).ngroup().to_numpy()
    start, end = rows["WindowStart"].to_numpy(dtype=float), rows["WindowEnd"].to_numpy(dtype=float)
    follows = np.r_[False, (driver[1:] == driver[:-1]) & (start[1:] == end[:-1])]
    segment = np.cumsum(~follows)
    values = np.clip(d.to_numpy(dtype=float), -RUN_CLIP, RUN_CLIP)
    run = values.copy()
    for k in range(1, RUN_WINDOWS):
        run[k:] += values[:-k]
    back = RUN_WINDOWS - 1
    whole = np.r_[np.zeros(back, dtype=bool), segment[back:] == segment[:-back]]
    run[~whole] = np.nan
    return pd.DataFrame(run / RUN_WINDOWS, index=d.index, columns=d.columns)


def statistic(
    d: pd.DataFrame, rows: pd.DataFrame | None = None, meta: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The anomaly statistic ``S`` per row and the name of the signal that drives it. Laps: the
    median deficit (>= 3 present). Windows (``rows`` and ``meta`` given): the largest run deficit
    (:func:`run_deficits`) over its calibration quantile ``meta["run_scales"][s]``."""
    if "LapTime" in d.columns:
        stat = d.median(axis=1).where(d.notna().sum(axis=1) >= 3).to_numpy()
    else:
        if rows is None:
            raise ValueError("window statistics need the window rows (runs of contiguous windows)")
        d = run_deficits(d, rows)
        if meta is not None and "run_scales" in meta:
            d = d / pd.Series(meta["run_scales"])[d.columns]
        stat = d.max(axis=1).to_numpy()
    filled = d.fillna(-np.inf)
    top = np.where(filled.max(axis=1).to_numpy() > -np.inf, filled.idxmax(axis=1).to_numpy(), "")
    return stat, top


def calibration_table(stat: np.ndarray, points: int = 2000, tail: int = 200) -> dict[str, Any]:
    """Sorted calibration statistics, thinned to ``points`` quantiles plus the ``tail`` largest."""
    s = np.sort(stat[np.isfinite(stat)])
    grid = np.quantile(s, np.linspace(0, 1, points))
    values = np.unique(np.concatenate([grid, s[-tail:]]))
    exceed = 1 - np.searchsorted(s, values, side="left") / len(s)
    top = s[-max(2, len(s) // 100) :]
    return {
        "values": values.tolist(),
        "exceed": exceed.tolist(),
        "n": len(s),
        "tau": float(np.std(top) or 1.0),
    }


def calibrated(stat: np.ndarray, table: dict[str, Any]) -> np.ndarray:
    """``1 - exceed(S)``: interpolated inside the calibration range, exponential tail above it."""
    values, exceed = np.asarray(table["values"]), np.asarray(table["exceed"])
    e = np.interp(stat, values, exceed)
    above = stat > values[-1]
    e = np.where(above, 0.5 / table["n"] * np.exp(-(stat - values[-1]) / table["tau"]), e)
    return np.where(np.isfinite(stat), 1 - e, np.nan)


def alarm_runs(rows: pd.DataFrame, flag: np.ndarray) -> int:
    """Alarms: runs of flagged in-scope rows per driver (consecutive laps / windows <= 30 s apart)."""
    hit = rows.loc[np.asarray(flag, dtype=bool) & rows["InScope"].to_numpy(dtype=bool)]
    if hit.empty:
        return 0
    t, gap = ("WindowStart", RUN_GAP_S) if _level(rows) == "window" else ("LapNumber", 1)
    hit = hit.sort_values([*KEYS, t])
    new = (hit[t].diff() > gap) | (hit[KEYS].shift() != hit[KEYS]).any(axis=1)
    return int(new.sum())


def race_hours(laps: pd.DataFrame) -> float:
    """Race-hours: per race, the first lap's start to the last lap's end, summed."""
    spans = laps.groupby(["Year", "EventName"]).agg(a=("LapStartTime", "min"), b=("Time", "max"))
    return float(((spans.b - spans.a) / 3600.0).clip(lower=0).sum())


def choose_threshold(rows: pd.DataFrame, score: np.ndarray, hours: float) -> float:
    """The lowest score threshold whose in-scope alarms stay <= the level's per-hour budget."""
    scope = rows["InScope"].to_numpy(dtype=bool) & np.isfinite(score)
    candidates = np.unique(score[scope])[::-1][:400]
    best = 1.0
    for t in candidates:
        if alarm_runs(rows, score >= t) > ALARM_BUDGET_PER_HOUR[_level(rows)] * hours:
            break
        best = float(t)
    return best


# ------------------------------------------------------------------ fit, predict
def _fit_booster(x: pd.DataFrame, y: pd.Series, fit_rows: np.ndarray, stop_rows: np.ndarray) -> Any:
    import lightgbm as lgb

    ok = np.isfinite(y.to_numpy())
    train = lgb.Dataset(x[fit_rows & ok], y[fit_rows & ok])
    valid = (
        [lgb.Dataset(x[stop_rows & ok], y[stop_rows & ok], reference=train)] if (stop_rows & ok).any() else []
    )
    callbacks: list[Any] = [lgb.early_stopping(EARLY_STOPPING, verbose=False)] if valid else []
    return lgb.train(LGB_PARAMS, train, ROUNDS, valid_sets=valid, callbacks=callbacks)


def _fit_level(
    rows: pd.DataFrame, fit_rows: np.ndarray, cal_rows: np.ndarray
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Boosters of one level, their residual scales, calibration table and threshold."""
    level = _level(rows)
    boosters: dict[str, Any] = {}
    scales: dict[str, float] = {}
    scope = rows["InScope"].to_numpy(dtype=bool)
    for s in signals(level):
        name = f"{level}_{s}"
        boosters[name] = _fit_booster(_matrix(rows, s), _target(rows, s), fit_rows & scope, cal_rows & scope)
        pred = boosters[name].predict(_matrix(rows[cal_rows & scope], s))
        resid = _target(rows[cal_rows & scope], s).to_numpy() - pred
        mad = float(np.nanmedian(np.abs(resid - np.nanmedian(resid)))) * 1.4826
        scales[name] = max(mad, SCALE_FLOOR.get(s, 1.0))
    meta: dict[str, Any] = {"scales": scales}
    cal = rows[cal_rows]
    d = deficits(boosters, meta, cal)
    if level == "window":
        run = run_deficits(d, cal)[cal["InScope"].to_numpy(dtype=bool)]
        meta["run_scales"] = {s: max(float(run[s].quantile(RUN_QUANTILE)), 0.5) for s in run.columns}
    stat, _ = statistic(d, cal, meta)
    meta["calibration"] = calibration_table(stat[cal["InScope"].to_numpy(dtype=bool)])
    return boosters, meta


def bundled_windows(data_dir: Path) -> pd.DataFrame:
    """The bundled TelemetryWindow rows of training races (``data/corpus/telemetry_windows.parquet``)."""
    path = data_dir / "corpus" / WINDOWS_FILE
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame()


def training_windows(corpus: base.Corpus, data_dir: Path | None = None) -> pd.DataFrame:
    """corpus.windows plus the bundled windows (of ``data_dir``, default ``corpus.data_dir``; none
    when both are None) of the races it lacks."""
    data_dir = data_dir if data_dir is not None else corpus.data_dir
    have = corpus.windows if corpus.windows is not None else pd.DataFrame()
    extra = bundled_windows(data_dir) if data_dir is not None else pd.DataFrame()
    if not have.empty and not extra.empty:
        known = set(zip(have.Year, have.EventName, strict=True))
        extra = extra[[(y, e) not in known for y, e in zip(extra.Year, extra.EventName, strict=True)]]
    frames = [f for f in (have, extra) if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _races(frame: pd.DataFrame, races: tuple[tuple[int, str], ...]) -> np.ndarray:
    wanted = set(races)
    return np.array([(int(y), str(e)) in wanted for y, e in zip(frame.Year, frame.EventName, strict=True)])


def fit(
    corpus: base.Corpus, split: base.Splitter = base.race_split, progress: bool = False
) -> tuple[base.ModelBundle, dict[str, float]]:
    laps = lap_rows(corpus.laps, corpus.raw_laps)
    where = split(laps).to_numpy()
    boosters, lap_meta = _fit_level(laps, where == "train", where == "validation")
    val_laps = laps[where == "validation"]
    lap_meta["threshold"] = choose_threshold(
        val_laps, score_rows(boosters, lap_meta, val_laps)[0], race_hours(val_laps)
    )
    meta: dict[str, Any] = {"target": "anomaly_score", "lap": lap_meta, "params": LGB_PARAMS}
    metrics = {
        f"val_lap_{k}": v
        for k, v in level_metrics(boosters, lap_meta, val_laps, race_hours(val_laps)).items()
    }
    windows = training_windows(corpus)
    if not windows.empty:
        wrows = window_rows(windows, laps)
        wsplit = split(wrows).to_numpy()
        fit_rows = (wsplit == "train") & ~_races(wrows, WINDOW_CALIBRATION_RACES)
        cal_rows = (wsplit == "train") & _races(wrows, WINDOW_CALIBRATION_RACES)
        scope = wrows["InScope"].to_numpy(dtype=bool)
        if (fit_rows & scope).any() and (cal_rows & scope).any():  # the windows' laps are in the corpus
            wb, wmeta = _fit_level(wrows, fit_rows, cal_rows)
            cal_laps = laps[_races(laps, WINDOW_CALIBRATION_RACES)]
            cal = wrows[cal_rows]
            wmeta["threshold"] = choose_threshold(cal, score_rows(wb, wmeta, cal)[0], race_hours(cal_laps))
            boosters.update(wb)
            meta["window"] = wmeta
            metrics.update(
                {f"val_window_{k}": v for k, v in level_metrics(wb, wmeta, cal, race_hours(cal_laps)).items()}
            )
    recalls = [v for k, v in metrics.items() if "synthetic_recall" in k]
    metrics[SELECTION_METRIC] = 1 - float(np.mean(recalls)) if recalls else math.nan
    return base.ModelBundle("anomaly", boosters, meta), metrics


def score_rows(
    boosters: dict[str, Any], meta: dict[str, Any], rows: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """AnomalyScore and AnomalySignal of lap or window rows (one level's meta)."""
    stat, top = statistic(deficits(boosters, meta, rows), rows, meta)
    return calibrated(stat, meta["calibration"]), top


def predict(bundle: base.ModelBundle, rows: pd.DataFrame) -> pd.DataFrame:
    """``AnomalyScore`` (0..1), ``AnomalyFlag`` and ``AnomalySignal`` for rows built by
    :func:`lap_rows` or :func:`window_rows` (the context needs the driver's previous laps/windows)."""
    meta = bundle.meta[_level(rows)]
    score, top = score_rows(bundle.boosters, meta, rows)
    return pd.DataFrame(
        {"AnomalyScore": score, "AnomalyFlag": score >= meta["threshold"], "AnomalySignal": top},
        index=rows.index,
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


RECIPE = base.Recipe(
    key="anomaly",
    model_name=MODEL_NAME,
    feature_service=FEATURE_SERVICE,
    service_features=SERVICE_FEATURES,
    selection_metric=SELECTION_METRIC,
    fit=fit,
    evaluate=evaluate,
    predict=predict,
    needs_windows=True,
    description="calibrated 0..1 anomaly score per lap and per 5 s telemetry window (residuals of LightGBM expectations)",
)
