"""Model card of the overtake model: per-horizon scores against the gap-only logistic baseline,
reliability curves and precision-recall curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stratx.bentos.lifecycle.cards import calibration
from stratx.functions.models import base
from stratx.functions.models import overtake as ov

PREDICTORS: tuple[str, ...] = ("model", "gap_logistic")
LIMITS = (
    "Pairs are the two cars adjacent in line-crossing order on a lap: a pass through the pit "
    "lane, a lapped car let by, or a place gained from a car three places ahead are not "
    "predicted as such.",
    "Without car telemetry (races from the FastF1 exports, live sessions since the 2025 Dutch "
    "GP) the battle inputs come from lap-level gaps and pace only.",
    "Lap N under a safety car, VSC or red flag and pit-entry laps are not scored; DRS trains "
    "make a close gap less telling than it looks, and the alert precision varies by race (the "
    "backtest's overtake_likely row).",
)


def calibration_errors(scored: pd.DataFrame, name: str) -> str:
    """``name``'s expected calibration error at each horizon, 'a / b / c'."""
    cells = []
    for h in ov.HORIZONS:
        rows = scored[scored[ov.label(h)].notna()]
        table = calibration.reliability(rows[ov.label(h)].astype(float), rows[f"{name}_p{h}"])
        cells.append(_cell({"e": calibration.calibration_error(table)}, "e"))
    return " / ".join(cells)


def pr_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at every threshold, highest probability first."""
    hits = np.asarray(y, dtype=bool)[np.argsort(-np.asarray(p, dtype=float), kind="stable")]
    tp = np.cumsum(hits)
    return tp / max(int(hits.sum()), 1), tp / np.arange(1, len(hits) + 1)


def plot(scored: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(ov.HORIZONS), figsize=(5 * len(ov.HORIZONS), 9))
    for col, h in enumerate(ov.HORIZONS):
        rows = scored[scored[ov.label(h)].notna()]
        y = rows[ov.label(h)].to_numpy(dtype=float)
        top, bottom = axes[0][col], axes[1][col]
        curves = {}
        for name in PREDICTORS:
            p = rows[f"{name}_p{h}"].to_numpy(dtype=float)
            curves[name] = calibration.reliability(y, p)
            recall, precision = pr_curve(y, p)
            bottom.plot(recall, precision, label=f"{name} (AP {base.auc_pr(y, p):.3f})")
        calibration.plot(top, curves, "predicted P(pass)", f"reliability, {h} lap(s)")
        bottom.axhline(y.mean(), color="k", lw=1, ls="--", label=f"base rate {y.mean():.3f}")
        bottom.set(xlabel="recall", ylabel="precision", ylim=(0, 1.02), title=f"precision-recall, {h} lap(s)")
        bottom.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _cell(m: dict[str, Any], key: str) -> str:
    value = m.get(key, float("nan"))
    return "n/a" if not np.isfinite(value) else f"{value:.3f}"


def card(evaluation: base.Evaluation, out_dir: Path) -> str:
    png = "overtake_curves.png"
    plot(evaluation.scored, out_dir / png)
    m = evaluation.metrics
    lines = [
        "P(the car behind passes the car ahead on track within 1, 2, 3 laps), one LightGBM classifier "
        "per horizon on pair rows (the two cars adjacent in line-crossing order on lap N, both on "
        "the same lap) built from each car's LapFeatures: gaps, pace and tyres; monotone in the gap (the probability never rises as IntervalAhead "
        "grows); no driver or team identity among the inputs.",
        "",
        "Label: the car behind crosses the line ahead on some lap N+k <= N+h while neither car pits "
        "(PitInTime/PitOutTime) and both keep running; horizons cut short by a stop, a retirement or "
        "the finish are not scored. Rows whose lap N is a pit entry or is neutralised (SC, VSC, red "
        "flag) are dropped. Baseline `gap_logistic`: logistic regression on min(IntervalAhead, 10 s), "
        "fit on the training races.",
        "",
        "| horizon | pairs | base rate | model AUC-ROC | model AUC-PR | model Brier "
        "| gap AUC-ROC | gap AUC-PR | gap Brier |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for h in ov.HORIZONS:
        lines.append(
            f"| {h} lap(s) | {int(m[f'rows_h{h}'])} | {_cell(m, f'base_rate_h{h}')} | "
            + " | ".join(
                _cell(m, f"{n}_h{h}_{s}") for n in PREDICTORS for s in ("auc_roc", "auc_pr", "brier")
            )
            + " |"
        )
    lines += [
        "",
        "Expected calibration error at 1 / 2 / 3 laps (reliability diagrams below): model "
        f"{calibration_errors(evaluation.scored, 'model')}, gap_logistic "
        f"{calibration_errors(evaluation.scored, 'gap_logistic')}.",
        "",
        "Target: model AUC-PR >= 0.55 at 1 lap (anchor: AUC-ROC 0.876, AUC-PR 0.549, on a different "
        "label and data set, so not directly comparable). AUC-PR depends on the base rate: compare "
        "it with the base-rate column, not across data sets.",
        "",
        "`CircuitPassRate` is each circuit's 1-lap pass rate over the training races; circuits "
        "without a training race (all validation races here) get the overall rate, so its benefit "
        "could not be measured on the validation races.",
        "",
        "| race | pairs (1 lap) | base rate | model AUC-PR | gap AUC-PR |",
        "| --- | --- | --- | --- | --- |",
    ]
    for race, r in evaluation.per_race.items():
        lines.append(
            f"| {race} | {int(r['rows_h1'])} | {_cell(r, 'base_rate_h1')} | "
            f"{_cell(r, 'model_h1_auc_pr')} | {_cell(r, 'gap_logistic_h1_auc_pr')} |"
        )
    lines += ["", f"![overtake reliability and precision-recall]({png})", ""]
    return "\n".join(lines)
