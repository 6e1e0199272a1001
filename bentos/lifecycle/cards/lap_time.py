"""Model card of the lap-time model: errors by predictor on each row set, per race, against the strongest baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stratx.functions.models import base
from stratx.functions.models import lap_time as lt
from stratx.functions.models import lap_time_interval as interval


def plot(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clean = frame[lt.evaluation_rows(frame)["both_clean"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax1.scatter(clean[lt.TARGET], clean["Predicted"], s=3, alpha=0.3)
    lo, hi = np.nanpercentile(clean[lt.TARGET], [0.5, 99.5])
    ax1.plot([lo, hi], [lo, hi], color="k", lw=1)
    ax1.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="actual next LapTime (s)", ylabel="predicted (s)")
    ax1.set_title("both-clean rows: predicted vs actual")
    bins = pd.cut(clean["TyreLife"].clip(upper=40), bins=range(0, 45, 5), right=False)
    preds = {
        "model": clean["Predicted"],
        **{k: pd.Series(v, index=clean.index) for k, v in lt.baselines(clean).items()},
    }
    for name, p in preds.items():
        err = (p - clean[lt.TARGET]).abs().groupby(bins, observed=True).mean()
        ax2.plot([b.left for b in err.index], err.to_numpy(), marker="o", label=name)
    ax2.set(
        xlabel="TyreLife at lap N (laps, 40 = 40+)",
        ylabel="MAE (s)",
        title="both-clean rows: MAE by tyre age",
    )
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _row(name: str, m: dict[str, float], laps: str) -> str:
    mark = " (strongest)" if name == lt.strongest(m, laps) else ""
    return f"| {name}{mark} | {m[f'{name}_{laps}_mae']:.3f} | {m[f'{name}_{laps}_rmse']:.3f} |"


LIMITS = (
    "It predicts the next lap if it is raced: a pit stop, a safety car, a mistake or a car in the "
    "way is not foreseeable from lap N, and the 80 % band does not cover those laps.",
    "On a steady stint it is only a little better than the last lap (the both-clean ratio above; "
    "the 0.85x target is not met).",
    "Wet and intermediate laps are 4 % of the training laps (4 races): predictions on a wet or "
    "drying track are unreliable.",
    "Race sessions of Grands Prix only: no sprints, qualifying or practice; a restart after a red "
    "flag (fresh tyres, standing start) is rare in the data.",
)

TITLES = {
    "both_clean": "both-clean rows: this lap and the next are green-flag clean laps (the headline)",
    "clean": "the next lap is a green-flag clean lap",
    "all": "all next laps",
}


def _band_lines(m: dict[str, float]) -> list[str]:
    """The 80 % interval (``NextLapTimeP10``/``P90``) per row set, and what it is for."""
    if "interval80_both_clean_coverage" not in m:
        return ["No 80 % band: the bundle was calibrated before it existed.", ""]
    lo, hi = interval.BAND_TARGET
    cells = ", ".join(
        f"{laps.replace('_', '-')} {m[f'interval80_{laps}_coverage']:.3f} (median width "
        f"{m[f'interval80_{laps}_width']:.2f} s)"
        for laps in lt.ROW_SETS
    )
    return [
        f"**80 % band** of the next lap, coverage (target {lo}-{hi} on both-clean rows): {cells}. "
        "Normalised split-conformal, calibrated on the validation races' clean next laps: a band "
        "for the next lap if it is raced. In-laps, out-laps and neutralised laps fall outside it "
        "by design, so coverage on all next laps is lower.",
        "",
    ]


def card(evaluation: base.Evaluation, out_dir: Path) -> str:
    png = "lap_time_errors.png"
    plot(evaluation.scored, out_dir / png)
    m = evaluation.metrics
    lines = [
        "Predicts each driver's next LapTime (s) from the lap's `lap_time_v1` features: LightGBM (Huber "
        "loss) corrects the driver's clean rolling median; monotone in TyreLife (older tyres never "
        "predict a faster lap).",
        "",
    ]
    for laps in lt.ROW_SETS:
        lines += [
            f"**{TITLES[laps]}** ({int(m[f'{laps}_laps'])} laps): model / strongest baseline = "
            f"{m[f'model_vs_strongest_{laps}_mae_ratio']:.3f}",
            "",
            "| predictor | MAE (s) | RMSE (s) |",
            "| --- | --- | --- |",
            *(_row(name, m, laps) for name in ("model", *lt.BASELINES)),
            "",
        ]
    lines += [
        "Baselines, each from lap N and before: persistence = this LapTime; last_clean = the "
        "driver's latest clean LapTime (this lap included); rolling_median = the median of the last "
        "3 clean laps (this LapTime before any clean lap); stint_trend = the least-squares line "
        "through the stint's clean laps so far, read at lap N+1 (last_clean before 3 clean laps). "
        "The strongest is the one with the lowest MAE on the same rows. On both-clean rows "
        "persistence and last_clean are the same prediction. Public anchor: persistence 0.408 s and "
        "a 25-feature XGBoost 0.410 s on a 2025 holdout (another season and feature set; not "
        "directly comparable).",
        "",
        *_band_lines(m),
        "| race | both-clean laps | model | strongest baseline | ratio | 80 % band coverage |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for race, r in evaluation.per_race.items():
        lines.append(
            f"| {race} | {int(r['both_clean_laps'])} | {r['model_both_clean_mae']:.3f} | "
            f"{lt.strongest(r)} {r['strongest_both_clean_mae']:.3f} | "
            f"{r['model_vs_strongest_both_clean_mae_ratio']:.3f} | "
            f"{r.get('interval80_both_clean_coverage', float('nan')):.3f} |"
        )
    lines += ["", f"![lap-time errors]({png})", ""]
    return "\n".join(lines)
