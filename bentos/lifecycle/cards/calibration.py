"""Reliability of the probabilities the models publish, for every model card.

A strategist reads ``P(pit within 3 laps) 40 %`` as "four in ten": :func:`reliability` bins the
test races' predictions and sets each bin's mean prediction beside the rate observed in it, and
:func:`calibration_error` sums the gaps (expected calibration error, weighted by the rows of each
bin). :func:`plot` draws the diagram. The anomaly score is a percentile of normal laps, not a
probability of a fault: :func:`exceedance` checks it the way it is meant (on real laps, a score of
at least ``s`` should come ``1 - s`` of the time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

MIN_BIN_ROWS = 10
# Probability bin edges for rare events: narrow near zero, where most rows are.
RARE_EDGES: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0)


def reliability(
    y: Any, p: Any, edges: Sequence[float] | None = RARE_EDGES, bins: int = 10, min_rows: int = MIN_BIN_ROWS
) -> pd.DataFrame:
    """Per probability bin: mean ``predicted`` probability, ``observed`` rate and row count ``n``.
    ``edges``: fixed bin edges; None: ``bins`` equal-count bins. Rows with a missing label or
    probability are left out, and so are bins with fewer than ``min_rows`` rows."""
    frame = pd.DataFrame({"y": np.asarray(y, dtype=float), "p": np.asarray(p, dtype=float)}).dropna()
    if frame.empty:
        return pd.DataFrame(columns=["predicted", "observed", "n"])
    if edges is None:
        frame["bin"] = pd.qcut(frame["p"].rank(method="first"), min(bins, len(frame)), labels=False)
    else:
        frame["bin"] = pd.cut(frame["p"], list(edges), include_lowest=True)
    table = frame.groupby("bin", observed=True).agg(
        predicted=("p", "mean"), observed=("y", "mean"), n=("y", "size")
    )
    return table[table["n"] >= min_rows]


def calibration_error(table: pd.DataFrame) -> float:
    """Expected calibration error of a :func:`reliability` table: the row-weighted mean of
    ``|observed - predicted|`` over its bins (NaN when empty)."""
    n = table["n"].to_numpy(dtype=float)
    if not n.sum():
        return float("nan")
    gap = np.abs(table["observed"].to_numpy(dtype=float) - table["predicted"].to_numpy(dtype=float))
    return float((gap * n).sum() / n.sum())


def plot(ax: Any, curves: dict[str, pd.DataFrame], xlabel: str, title: str) -> None:
    """Reliability curves on ``ax`` (label -> :func:`reliability` table, ECE in the legend)."""
    for label, table in curves.items():
        ax.plot(
            table["predicted"],
            table["observed"],
            marker="o",
            label=f"{label} (ECE {calibration_error(table):.3f})",
        )
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel=xlabel, ylabel="observed rate", title=title)
    ax.legend(fontsize=8)


def exceedance(scores: Any, levels: Sequence[float] = (0.5, 0.8, 0.9, 0.95, 0.99)) -> pd.DataFrame:
    """For a percentile score: per level ``s``, the expected share ``1 - s`` of rows scoring at
    least ``s`` and the observed share (``n``: rows)."""
    s = np.asarray(scores, dtype=float)
    s = s[np.isfinite(s)]
    return pd.DataFrame(
        {
            "level": list(levels),
            "expected": [1 - level for level in levels],
            "observed": [float((s >= level).mean()) if len(s) else float("nan") for level in levels],
            "n": len(s),
        }
    )
