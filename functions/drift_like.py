"""Drift that compares like with like, the pure parts: a circuit-free view of the lap features,
race windows cut the same way in the current race and the reference, Evidently's distances, and
the race-unit calibration of each column's threshold. No I/O (``stratx.quix_apps.drift_reference``
builds and caches the reference and its calibration).

Why: a pooled sample of training laps from every circuit flags most columns of *any* single race
(docs/operations.md, "Drift"), because races differ from each other (circuit, weather, safety
cars, race phase) more than a broken feed would move them. So:

* **Circuit-free view** (:func:`like_view`): lap times relative to the driver's anchor as ratios
  (``<col>ToAnchor`` = col / anchor), time scales (spreads, deltas, intervals, slopes) as fractions
  of the anchor lap (``<col>PerLap``), counts, booleans and ``Compound`` as they are, whether the
  tyre counter disagrees with the stint (``TyreLifeUnderStint``: 1 when TyreLife < LapsInStint,
  which no lap of the 37 corpus races shows), and the four speed traps of green-flag laps as ratios
  to the same circuit's reference speed (``<trap>ToCircuit``) from earlier reference races at that
  circuit (:func:`circuit_speeds`). A speed column with no such race is not compared
  (:func:`speed_note` says why).
* **Windows cut the same way** (:func:`lap_window`): the live window is laps 1..N (or the last W
  laps up to N); every reference race is cut at the same N.
* **Race-unit calibration** (:func:`calibrate`): for each reference race, each column's distance
  of its window to the pool of the other reference races' windows (leave one race out), at every
  lap of :data:`WINDOW_GRID`; a column's threshold is the largest of those distances times
  (1 + margin), and never below Evidently's default 0.1 (:data:`FLOOR`). A column drifts only when this race is further from the pool than every normal
  reference race was.
* **Distances** are Evidently's own (:func:`normed_wasserstein`, :func:`jensen_shannon`, the same
  formulas as its ``wasserstein`` and ``jensenshannon`` stattests; a unit test checks equality);
  the thresholds are passed to Evidently's ``DataDriftPreset(per_column_threshold=...)``.

Causal: the reference of a race holds only races that started before it (:func:`races_before`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from stratx.functions import drift

RACE = "Race"  # the race a view row belongs to ("<Year> <EventName>")
SPEED_TRAPS: tuple[str, ...] = ("SpeedI1", "SpeedI2", "SpeedFL", "SpeedST")
SPEED_SUFFIX = "ToCircuit"
PER_LAP_SUFFIX = "PerLap"
# time scales (s or s/lap) compared as a fraction of the anchor lap
PER_LAP: tuple[str, ...] = (
    "Last3Std",
    "Last5Std",
    "DeltaToPB",
    "DeltaToSessionBest",
    "DeltaToTeammate",
    "DeltaToCarAhead",
    "DeltaToCarBehind",
    "DeltaToFieldMedian",
    "StintTrendSlope",
    "StintDegSlope",
    "StintDegSlopeStderr",
    "IntervalAhead",
    "IntervalBehind",
)
TYRE_UNDER_STINT = "TyreLifeUnderStint"
FLOOR = 0.1  # Evidently's default threshold of the normed Wasserstein and Jensen-Shannon tests
# a column's threshold is (1 + MARGIN) x the furthest reference race: tuned on the validation races
# (their furthest column came at 2.6 x; docs/operations.md "Drift"), the test races held out
MARGIN = 2.0
SLICKS = ("HYPERSOFT", "ULTRASOFT", "SUPERSOFT", "SOFT", "MEDIUM", "HARD")
# the laps of the calibration grid: thresholds at the largest grid lap <= the window's last lap
WINDOW_GRID: tuple[int, ...] = tuple(range(10, 81, 5))
SPEED_HISTORY_SEASONS = 3  # a circuit's reference speed comes from its races of the last 3 seasons
# the same circuit under another event name
CIRCUIT_ALIASES: dict[str, str] = {
    "Styrian Grand Prix": "Austrian Grand Prix",
    "70th Anniversary Grand Prix": "British Grand Prix",
    "Mexican Grand Prix": "Mexico City Grand Prix",
    "Brazilian Grand Prix": "São Paulo Grand Prix",
}
CATEGORICAL_METHOD = "jensenshannon"
NUMERICAL_METHOD = "wasserstein"


def circuit(event_name: str) -> str:
    """The circuit of an event, named after its usual event (Styrian -> Austrian Grand Prix)."""
    return CIRCUIT_ALIASES.get(event_name, event_name)


# ------------------------------------------------------------------ the view
def like_view(table: pd.DataFrame, speeds: Mapping[str, float] | None = None) -> pd.DataFrame:
    """LapFeatures rows as compared (module doc); same index as ``table``. ``speeds``: this race's
    circuit reference speed per trap (a trap missing from it is left out)."""
    base = drift.anchor(table).to_numpy(dtype=float)
    base = np.where(base > 0, base, np.nan)
    out: dict[str, Any] = {}
    for name in drift.MODEL_FEATURES:
        if name in drift.RACE_PROGRESS or name == "Last3Median" or name not in table.columns:
            continue
        col = table[name]
        if name in drift.CATEGORICAL:
            out[name] = col.astype(object).where(col.notna(), None)
        elif name in drift.ANCHOR_RELATIVE:
            out[f"{name}{drift.ANCHOR_SUFFIX}"] = drift.floats(col) / base
        elif name in PER_LAP:
            out[f"{name}{PER_LAP_SUFFIX}"] = drift.floats(col) / base
        else:
            out[name] = drift.floats(col)
    if {"TyreLife", "LapsInStint"} <= set(table.columns):
        life, stint = drift.floats(table["TyreLife"]), drift.floats(table["LapsInStint"])
        out[TYRE_UNDER_STINT] = np.where(np.isnan(life), np.nan, (life < stint).astype(float))
    green = table["GreenClean"].astype(bool).to_numpy() if "GreenClean" in table.columns else True
    for trap, speed in (speeds or {}).items():
        if trap in table.columns and speed > 0:
            out[f"{trap}{SPEED_SUFFIX}"] = np.where(green, drift.floats(table[trap]) / speed, np.nan)
    return pd.DataFrame(out, index=table.index)


def race_speeds(table: pd.DataFrame) -> dict[str, float]:
    """One race's typical trap speeds: the median over its green-flag laps on slick tyres (a wet
    race has none, so it gives no reference)."""
    laps = table
    if "GreenClean" in laps.columns:
        laps = laps[laps["GreenClean"].astype(bool)]
    if "Compound" in laps.columns:
        laps = laps[laps["Compound"].isin(SLICKS)]
    out = {}
    for trap in SPEED_TRAPS:
        if trap in laps.columns and laps[trap].notna().sum() >= 20:
            out[trap] = float(laps[trap].astype(float).median())
    return out


def circuit_speeds(history: Sequence[tuple[int, Mapping[str, float]]], year: int) -> dict[str, float]:
    """A circuit's reference speed per trap for a race in ``year``: the median of the earlier
    races' speeds (``(year, race_speeds)`` of races at that circuit that started before it) of the
    last :data:`SPEED_HISTORY_SEASONS` seasons; empty when there is none."""
    recent = [speeds for y, speeds in history if year - SPEED_HISTORY_SEASONS <= y <= year]
    out = {}
    for trap in SPEED_TRAPS:
        values = [s[trap] for s in recent if trap in s]
        if values:
            out[trap] = float(np.median(values))
    return out


def speed_note(event_name: str, speeds: Mapping[str, float]) -> str | None:
    """Why speed traps are not compared (None when they are)."""
    if speeds:
        return None
    return (
        f"speed traps not compared: no reference race at {circuit(event_name)} in the "
        f"{SPEED_HISTORY_SEASONS} seasons before (dry, green-flag laps) to scale them by"
    )


def speeds_before(
    rows: pd.DataFrame, starts: Mapping[str, str], event_name: str, year: int, start: str
) -> dict[str, float]:
    """The reference speed per trap at ``event_name``'s circuit for a race starting at ``start``:
    from the races of ``rows`` (a :data:`RACE` column) at that circuit that started before it."""
    history = []
    for race, laps in rows.groupby(RACE, sort=False):
        first = laps.iloc[0]
        if circuit(str(first["EventName"])) == circuit(event_name) and starts[str(race)] < start:
            history.append((int(first["Year"]), race_speeds(laps)))
    return circuit_speeds(history, year)


def reference_view(rows: pd.DataFrame, starts: Mapping[str, str]) -> pd.DataFrame:
    """The like view of every reference race (``rows``: LapFeatures + Year, EventName, :data:`RACE`),
    each race's speeds scaled by its own earlier races at its circuit; plus :data:`RACE` and
    ``LapNumber`` columns."""
    frames = []
    for race, laps in rows.groupby(RACE, sort=False):
        first = laps.iloc[0]
        speeds = speeds_before(rows, starts, str(first["EventName"]), int(first["Year"]), starts[str(race)])
        view = like_view(laps, speeds)
        view[RACE] = race
        view["LapNumber"] = laps["LapNumber"].to_numpy()
        frames.append(view)
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------ windows and races
def lap_window(table: pd.DataFrame, last_lap: int, window_laps: int = 0) -> pd.DataFrame:
    """Rows of laps 1..``last_lap`` (``window_laps`` > 0: only the last ``window_laps`` of them)."""
    return table[in_window(table["LapNumber"], last_lap, window_laps).to_numpy()]


def in_window(laps: pd.Series, last_lap: int, window_laps: int = 0) -> pd.Series:
    keep = laps <= last_lap
    if window_laps > 0:
        keep &= laps > last_lap - window_laps
    return keep


def races_before(starts: Mapping[str, str], start: str) -> list[str]:
    """The races (name -> first lap-end Date, ISO text) that started before ``start``, in order."""
    return [name for name, s in sorted(starts.items(), key=lambda kv: kv[1]) if s < start]


def grid_lap(last_lap: int, grid: Sequence[int] = WINDOW_GRID) -> int:
    """The calibration grid lap used for a window ending at ``last_lap``: the largest grid lap not
    after it (the first grid lap for shorter windows)."""
    ordered = sorted(grid)
    below = [g for g in ordered if g <= last_lap]
    return below[-1] if below else ordered[0]


# ------------------------------------------------------------------ distances (Evidently's)
def normed_wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently's ``wasserstein`` stattest: Wasserstein-1 distance / max(std(reference), 0.001)."""
    norm = max(float(np.std(reference)), 0.001)
    return float(stats.wasserstein_distance(reference, current) / norm)


def jensen_shannon(reference: pd.Series, current: pd.Series) -> float:
    """Evidently's ``jensenshannon`` stattest on a categorical column (shares of each value)."""
    keys = sorted(set(reference.dropna().unique()) | set(current.dropna().unique()), key=str)
    ref = reference.value_counts()
    cur = current.value_counts()
    p = np.array([ref.get(k, 0) / len(reference) for k in keys], dtype=float)
    q = np.array([cur.get(k, 0) / len(current) for k in keys], dtype=float)
    return float(distance.jensenshannon(p, q))


def column_distance(reference: pd.Series, current: pd.Series) -> float | None:
    """The distance Evidently computes for one column (NaN/None dropped; None: nothing to compare)."""
    ref, cur = reference.dropna(), current.dropna()
    if ref.empty or cur.empty:
        return None
    if ref.dtype == object or cur.dtype == object:
        return jensen_shannon(ref.astype(str), cur.astype(str))
    return normed_wasserstein(ref.to_numpy(dtype=float), cur.to_numpy(dtype=float))


def method_of(column: pd.Series) -> str:
    return CATEGORICAL_METHOD if column.dtype == object else NUMERICAL_METHOD


# ------------------------------------------------------------------ calibration
def calibrate(
    views: pd.DataFrame,
    laps: pd.Series,
    grid: Sequence[int] = WINDOW_GRID,
    window_laps: int = 0,
    margin: float = MARGIN,
) -> dict[int, dict[str, float]]:
    """Per grid lap N and column: the threshold = (1 + ``margin``) x the largest leave-one-race-out
    distance of a reference race's window (laps 1..N, or its last ``window_laps``) to the pool of the
    other reference races' windows cut the same way, at least :data:`FLOOR`. ``views``: the reference races' like views
    with a :data:`RACE` column; ``laps``: their LapNumber (same index). A column compared in fewer
    than 3 races gets no threshold (not compared)."""
    out: dict[int, dict[str, float]] = {}
    columns = [c for c in views.columns if c != RACE]
    for n in grid:
        cut = views[in_window(laps, n, window_laps).to_numpy()]
        names = cut[RACE].to_numpy()
        races = list(dict.fromkeys(names))
        worst: dict[str, list[float]] = {c: [] for c in columns}
        for race in races:
            mine = names == race
            one, others = cut[mine], cut[~mine]
            for c in columns:
                d = column_distance(others[c], one[c])
                if d is not None and np.isfinite(d):
                    worst[c].append(d)
        out[n] = {c: max(FLOOR, (1.0 + margin) * max(v)) for c, v in worst.items() if len(v) >= 3}
    return out


def thresholds_for(calibration: Mapping[int, Mapping[str, float]], last_lap: int) -> dict[str, float]:
    """The per-column thresholds for a window ending at ``last_lap``."""
    return dict(calibration[grid_lap(last_lap, list(calibration))])


def drifted_share(distances: Mapping[str, float], thresholds: Mapping[str, float]) -> tuple[float, list[str]]:
    """(share of the compared columns at/above their threshold, those columns by distance/threshold)."""
    compared = [c for c in distances if c in thresholds]
    if not compared:
        return 0.0, []
    drifted = [c for c in compared if distances[c] >= thresholds[c]]
    drifted.sort(key=lambda c: -distances[c] / thresholds[c])
    return len(drifted) / len(compared), drifted


def compare_window(
    current: pd.DataFrame, pool: pd.DataFrame, thresholds: Mapping[str, float]
) -> tuple[float, list[str], dict[str, float]]:
    """(share drifted, drifted columns, distances) of a current view against the pool view, over
    the columns with a threshold: what Evidently reports with ``per_column_threshold``."""
    found = {}
    for c in current.columns:
        if c in thresholds and c in pool.columns and current[c].notna().any() and pool[c].notna().any():
            d = column_distance(pool[c], current[c])
            if d is not None:
                found[c] = d
    share, drifted = drifted_share(found, thresholds)
    return share, drifted, found
