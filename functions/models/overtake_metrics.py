"""The overtake model's gap-only logistic baseline and its metrics (definitions in ``overtake``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stratx.functions.models import base
from stratx.functions.models.overtake_pairs import (
    HORIZONS,
    _num,
    label,
)

# ------------------------------------------------------------------ gap-only logistic baseline
GAP_CLIP_S = 10.0  # the baseline sees min(IntervalAhead, 10 s); a missing gap counts as 10 s


def gap_input(pairs: pd.DataFrame) -> np.ndarray:
    return _num(pairs, "IntervalAhead").fillna(GAP_CLIP_S).clip(0.0, GAP_CLIP_S).to_numpy()


def fit_logistic(
    x: np.ndarray, y: np.ndarray, iterations: int = 50, ridge: float = 1e-6
) -> tuple[float, float]:
    """(intercept, slope) of P(y=1) = 1 / (1 + exp(-(intercept + slope * x))), maximum likelihood by
    Newton/IRLS (a tiny ridge keeps the Hessian invertible on separable data)."""
    design = np.column_stack([np.ones_like(x, dtype=float), np.asarray(x, dtype=float)])
    y = np.asarray(y, dtype=float)
    w = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ w)))
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + ridge * np.eye(2)
        step = np.linalg.solve(hessian, design.T @ (y - p) - ridge * w)
        w += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(w[0]), float(w[1])


def logistic(coef: tuple[float, float] | list[float], x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(coef[0] + coef[1] * np.asarray(x, dtype=float))))


# ------------------------------------------------------------------ metrics
def horizon_metrics(y: np.ndarray, predicted: dict[str, np.ndarray], h: int) -> dict[str, float]:
    """``rows_h{h}``, ``base_rate_h{h}`` (share of positives) and, per predictor name,
    ``{name}_h{h}_auc_roc``, ``_auc_pr`` (average precision) and ``_brier`` (mean squared error of
    the probability), over the rows with a label."""
    y = np.asarray(y, dtype=float)
    out = {f"rows_h{h}": float(len(y)), f"base_rate_h{h}": float(y.mean()) if len(y) else np.nan}
    for name, p in predicted.items():
        out[f"{name}_h{h}_auc_roc"] = base.auc_roc(y, p)
        out[f"{name}_h{h}_auc_pr"] = base.auc_pr(y, p)
        out[f"{name}_h{h}_brier"] = base.brier(y, p)
    return out


def metrics_table(scored: pd.DataFrame) -> dict[str, float]:
    """:func:`horizon_metrics` for every horizon over :func:`score_pairs` output."""
    out: dict[str, float] = {}
    for h in HORIZONS:
        rows = scored[scored[label(h)].notna()]
        preds = {name: rows[f"{name}_p{h}"].to_numpy(dtype=float) for name in ("model", "gap_logistic")}
        out.update(horizon_metrics(rows[label(h)].to_numpy(dtype=float), preds, h))
    return out
