"""The tyre-degradation model's baselines and metrics (definitions in ``tyre_deg``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stratx.functions.models import base
from stratx.functions.models.tyre_deg_labels import (
    CLIFF,
    LIFE_BUCKET,
    MIN_SLOPE_LAPS,
    RATE,
    STINT_KEYS,
)


# ------------------------------------------------------------------ baselines and metrics
def compound_medians(frame: pd.DataFrame) -> dict[str, float]:
    """Median realised rate per dry compound, one value per stint (not per lap)."""
    stints = frame[frame[RATE].notna()].drop_duplicates(list(STINT_KEYS))
    return {str(c): float(v) for c, v in stints.groupby("Compound")[RATE].median().items()}


def rate_baselines(frame: pd.DataFrame, medians: dict[str, float]) -> dict[str, np.ndarray]:
    """``compound_median``: the training races' median rate of the compound; ``causal_slope``: the
    causal StintDegSlope so far once the stint has >= MIN_SLOPE_LAPS clean laps (the label's own
    minimum; from 3 laps it is mostly noise), the compound median before."""
    overall = float(np.median(list(medians.values()))) if medians else 0.0
    comp = frame["Compound"].map(medians).astype(float).fillna(overall)
    enough = frame["StintCleanLaps"].astype(float) >= MIN_SLOPE_LAPS
    causal = frame["StintDegSlope"].astype(float).where(enough).fillna(comp)
    return {"compound_median": comp.to_numpy(), "causal_slope": causal.to_numpy()}


def cliff_baseline(frame: pd.DataFrame, table: dict[str, float], base_rate: float) -> np.ndarray:
    """The training races' cliff frequency of the row's (Compound, TyreLife bucket)."""
    return np.array([table.get(k, base_rate) for k in _life_keys(frame)], dtype=float)


def _life_keys(frame: pd.DataFrame) -> list[str]:
    bucket = (frame["TyreLife"].astype(float).fillna(0) // LIFE_BUCKET).astype(int).clip(upper=8)
    return [f"{c}|{b}" for c, b in zip(frame["Compound"].astype(str), bucket, strict=True)]


def cliff_frequency(frame: pd.DataFrame) -> tuple[dict[str, float], float]:
    rows = frame[frame[CLIFF].notna()]
    y = rows[CLIFF].astype(bool)
    freq = y.groupby(_life_keys(rows)).mean()
    return {str(k): float(v) for k, v in freq.items()}, float(y.mean()) if len(y) else 0.0


def rate_metrics(frame: pd.DataFrame, medians: dict[str, float]) -> dict[str, float]:
    """On rows with a realised rate: ``{predictor}_rate_mae`` (s/lap) for the model and both
    baselines, the same on early-stint rows (LapsInStint <= 8: ``..._rate_mae_early_stint``),
    ``band80_coverage`` (share of rows with P10 <= realised <= P90), ``band80_mean_width``,
    ``median_rate_s_per_lap`` (realised, one value per stint) and ``model_median_rate_s_per_lap``."""
    rows = frame[frame[RATE].notna()]
    y = rows[RATE].to_numpy(float)
    preds = {"model": rows["DegRate"].to_numpy(float), **rate_baselines(rows, medians)}
    early = (rows["LapsInStint"] <= 8).to_numpy()
    out: dict[str, float] = {"rate_rows": float(len(rows)), "rate_stints": float(_stints(rows))}
    for name, p in preds.items():
        out[f"{name}_rate_mae"] = base.mae(y, p)
        out[f"{name}_rate_mae_early_stint"] = base.mae(y[early], p[early])
    lo, hi = rows["DegRateP10"].to_numpy(float), rows["DegRateP90"].to_numpy(float)
    out["band80_coverage"] = float(np.mean((lo <= y) & (y <= hi))) if len(y) else np.nan
    out["band80_mean_width"] = float(np.mean(hi - lo)) if len(y) else np.nan
    per_stint = rows.drop_duplicates(list(STINT_KEYS))[RATE]
    out["median_rate_s_per_lap"] = float(per_stint.median()) if len(per_stint) else np.nan
    out["model_median_rate_s_per_lap"] = float(np.median(preds["model"])) if len(y) else np.nan
    return out


def cliff_metrics(frame: pd.DataFrame, table: dict[str, float], base_rate: float) -> dict[str, float]:
    """On rows with a cliff label: ``cliff_{model|baseline}_{auc_roc|auc_pr|brier}``, the rows'
    ``cliff_base_rate`` and ``cliff_rows``."""
    rows = frame[frame[CLIFF].notna()]
    y = rows[CLIFF].astype(bool).to_numpy()
    preds = {
        "model": rows["CliffProbability"].to_numpy(float),
        "baseline": cliff_baseline(rows, table, base_rate),
    }
    out = {"cliff_rows": float(len(rows)), "cliff_base_rate": float(y.mean()) if len(y) else np.nan}
    for name, p in preds.items():
        out[f"cliff_{name}_auc_roc"] = base.auc_roc(y, p)
        out[f"cliff_{name}_auc_pr"] = base.auc_pr(y, p)
        out[f"cliff_{name}_brier"] = base.brier(y, p)
    return out


def _stints(frame: pd.DataFrame) -> int:
    return int(frame.groupby(list(STINT_KEYS), dropna=False).ngroups) if len(frame) else 0
