"""The tyre-degradation model's settings, labels (realised degradation rate, cliff) and feature
matrix (definitions in ``tyre_deg``)."""

from __future__ import annotations

import pandas as pd

from stratx.functions.features import families
from stratx.functions.models import base
from stratx.functions.scope import CLIFF_REFERENCE_LAPS

RATE = "RealisedDegRate"
CLIFF = "CliffNext3"
REFERENCE = "Reference"
STINT_KEYS: tuple[str, ...] = ("Year", "EventName", "DriverNumber", "Stint")
DRY: tuple[str, ...] = ("HYPERSOFT", "ULTRASOFT", "SUPERSOFT", "SOFT", "MEDIUM", "HARD")
OUTLIER_S = 2.0
MIN_SLOPE_LAPS = 5
MIN_LIFE_SPAN = 4.0
CLIFF_S = 1.0
CLIFF_HORIZON = 3
FREE_AIR_S = 1.5
FALLOFF_CAP_S = 2.0
BAND_TARGET = (0.75, 0.85)
QUANTILES: dict[str, float] = {"p10": 0.1, "p50": 0.5, "p90": 0.9}
LIFE_BUCKET = 5

# The tyre_deg_v1 FeatureService (lap_stint + lap_pace), in its order.
SERVICE_FEATURES: tuple[str, ...] = (*families.STINT, *families.PACE)
MONOTONE_INCREASING: tuple[str, ...] = ("TyreLife",)
# Absolute lap times (s): fed to the model minus the anchor (a 1:32 lap means nothing across circuits).
RELATIVE_TO_ANCHOR: tuple[str, ...] = families.ABSOLUTE_TIMES
COMPOUNDS: tuple[str, ...] = (*DRY, "INTERMEDIATE", "WET")


# ------------------------------------------------------------------ labels
def _ordered(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values([*STINT_KEYS, "LapNumber"], kind="stable")


def realised_rates(table: pd.DataFrame) -> pd.Series:
    """``RealisedDegRate`` per row of ``table`` (LapFeatures rows): the OLS slope (s/lap) of
    FuelCorrectedLapTime vs TyreLife over the stint's slope laps (see the module docstring); NaN
    for wet stints and stints with too few slope laps."""
    keys = list(STINT_KEYS)
    fc = table["FuelCorrectedLapTime"].astype(float)
    life = table["TyreLife"].astype(float)
    ok = table["IsClean"].fillna(False).astype(bool) & fc.notna() & life.notna()
    ok &= table["Compound"].isin(DRY) & table["Stint"].notna()
    median = fc.where(ok).groupby([table[k] for k in keys], dropna=False).transform("median")
    ok &= fc <= median + OUTLIER_S
    x, y = life.where(ok), fc.where(ok)
    frame = pd.DataFrame({"x": x, "y": y, "xx": x * x, "xy": x * y, "n": ok.astype(float)})
    groups = frame.groupby([table[k] for k in keys], dropna=False)
    s = groups.transform("sum")
    span = groups["x"].transform("max") - groups["x"].transform("min")
    sxx = s["xx"] - s["x"] ** 2 / s["n"]
    sxy = s["xy"] - s["x"] * s["y"] / s["n"]
    valid = (s["n"] >= MIN_SLOPE_LAPS) & (span >= MIN_LIFE_SPAN) & (sxx > 0)
    return (sxy / sxx).where(valid).astype(float)


def _laps_that_count(s: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    """For ordered rows: clean (with a fuel-corrected time), clean in free air, fuel-corrected time."""
    clean = s["IsClean"].fillna(False).astype(bool) & s["FuelCorrectedLapTime"].notna()
    interval = s["IntervalAhead"].astype(float)
    return clean, clean & (interval.isna() | (interval > FREE_AIR_S)), s["FuelCorrectedLapTime"].astype(float)


def _reference(keys: list[pd.Series], clean: pd.Series, fc: pd.Series) -> pd.Series:
    """``Reference`` of ordered rows: the median of the stint's last 3 clean laps up to the row."""
    rolled = (
        fc[clean]
        .groupby([k[clean] for k in keys], dropna=False)
        .rolling(CLIFF_REFERENCE_LAPS, min_periods=CLIFF_REFERENCE_LAPS)
        .median()
        .reset_index(level=list(range(len(STINT_KEYS))), drop=True)
    )
    return rolled.reindex(fc.index).groupby(keys, dropna=False).ffill()


def cliff_labels(table: pd.DataFrame) -> pd.DataFrame:
    """``Reference`` (s) and ``CliffNext3`` (boolean, NA when undefined) per row of ``table``
    (see the module docstring for both definitions)."""
    s = _ordered(table)
    keys = [s[k] for k in STINT_KEYS]
    clean, free, fc = _laps_that_count(s)
    dry = s["Compound"].isin(DRY)
    reference = _reference(keys, clean, fc)
    g = pd.DataFrame({"n": s["LapNumber"], "fc": fc, "free": free}).groupby(keys, dropna=False)
    seen = pd.Series(False, index=s.index)
    slow = pd.Series(False, index=s.index)
    for k in range(1, CLIFF_HORIZON + 1):
        follows = g["n"].shift(-k) == s["LapNumber"] + k
        qualifies = follows & g["free"].shift(-k, fill_value=False).astype(bool)
        seen |= qualifies
        slow |= qualifies & (g["fc"].shift(-k) >= reference + CLIFF_S)
    label = pd.Series(pd.array(slow.to_numpy(), dtype="boolean"), index=s.index)
    label[~(seen & reference.notna() & dry)] = pd.NA
    return pd.DataFrame({REFERENCE: reference, CLIFF: label}).reindex(table.index)


def cliff_laps(table: pd.DataFrame) -> pd.Series:
    """Per row of ``table``: a *cliff lap*, the event ``CliffNext3`` looks ahead for. A clean lap in
    free air, on dry tyres, at least ``CLIFF_S`` slower (fuel-corrected) than the ``Reference`` of
    the stint's previous lap (the median of its last 3 clean laps). The stream backtest scores
    tyre-cliff alerts on these laps, so the model and its alert are judged on one definition."""
    s = _ordered(table)
    keys = [s[k] for k in STINT_KEYS]
    clean, free, fc = _laps_that_count(s)
    previous = _reference(keys, clean, fc).groupby(keys, dropna=False).shift(1)
    follows = s["LapNumber"].groupby(keys, dropna=False).shift(1) == s["LapNumber"] - 1
    hit = free & follows & s["Compound"].isin(DRY) & (fc >= previous + CLIFF_S)
    return hit.fillna(False).astype(bool).reindex(table.index)


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` plus ``RealisedDegRate``, ``Reference`` and ``CliffNext3``."""
    out = table.copy()
    out[RATE] = realised_rates(table)
    out[[REFERENCE, CLIFF]] = cliff_labels(table)
    return out


# ------------------------------------------------------------------ features
def anchor(table: pd.DataFrame) -> pd.Series:
    """The clean rolling median Last3Median, else this lap's LapTime (no clean lap yet)."""
    return table["Last3Median"].astype(float).fillna(table["LapTime"].astype(float))


def feature_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """Model inputs for LapFeatures rows (other columns are ignored): the tyre_deg_v1 service in
    its order, Compound categorical (:data:`COMPOUNDS`), booleans 0/1, and the absolute lap times
    of :data:`RELATIVE_TO_ANCHOR` minus the :func:`anchor` (seconds off the driver's usual pace)."""
    return base.lap_matrix(table, SERVICE_FEATURES, RELATIVE_TO_ANCHOR, anchor(table), COMPOUNDS)


def monotone_constraints(columns: list[str]) -> list[int]:
    return [1 if c in MONOTONE_INCREASING else 0 for c in columns]
