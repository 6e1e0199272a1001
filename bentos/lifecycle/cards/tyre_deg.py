"""Model card of the tyre-degradation model: rate error by predictor, the 80% band's coverage,
the cliff classifier against its baseline, per race, and two plots (rate + band vs the realised
slope per stint; example stints with their predicted falloff)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stratx.bentos.lifecycle.cards import calibration
from stratx.functions.models import base
from stratx.functions.models import tyre_deg as td

RATE_PNG = "tyre_deg_rates.png"
STINTS_PNG = "tyre_deg_stints.png"
CLIFF_PNG = "tyre_deg_cliff_reliability.png"
LIMITS = (
    "Dry compounds only: wet and intermediate stints get no rate label, and a drying track's "
    "slopes mean nothing.",
    "A track that gets faster all race (rubber laid down, cooling): the realised fuel-corrected "
    "rate can be negative while the model, which only sees the stint, predicts wear. The band "
    "then misses low on that race (see the per-race coverage).",
    "The rate of a stint is known only when it ends; early in a stint the prediction leans on "
    "the compound and the circuit, not on the car.",
    "CliffProbability ranks laps better than the tyre-age frequency, but a cliff is rare and "
    "its alerts are not much better than chance at a useful precision (the backtest's tyre_cliff row).",
)


def cliff_reliability(scored: pd.DataFrame) -> pd.DataFrame:
    """The reliability table of ``CliffProbability`` on the laps with a cliff label."""
    rows = scored[scored[td.CLIFF].notna()]
    return calibration.reliability(rows[td.CLIFF].astype(float), rows["CliffProbability"])


def plot_cliff(scored: pd.DataFrame, path: Path) -> float:
    """The cliff reliability diagram; returns its expected calibration error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = cliff_reliability(scored)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    calibration.plot(
        ax, {"model": table}, f"predicted P(cliff in {td.CLIFF_HORIZON} laps)", "Reliability (test races)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return calibration.calibration_error(table)


def mid_stint_rows(scored: pd.DataFrame) -> pd.DataFrame:
    """One row per stint with a realised rate: its middle lap (the prediction made half-way in)."""
    rows = scored[scored[td.RATE].notna()].sort_values([*td.STINT_KEYS, "LapNumber"])
    g = rows.groupby(list(td.STINT_KEYS), dropna=False)
    middle = g.cumcount() == (g["LapNumber"].transform("size") // 2)
    return rows[middle.to_numpy()]


def example_stints(scored: pd.DataFrame) -> list[pd.DataFrame]:
    """The stints (>= 12 laps) with the highest, the median and the lowest realised rate."""
    rows = scored[scored[td.RATE].notna()]
    sizes = rows.groupby(list(td.STINT_KEYS), dropna=False)[td.RATE].agg(["first", "size"])
    sizes = sizes[sizes["size"] >= 12].sort_values("first")
    if sizes.empty:
        return []
    picks = dict.fromkeys([sizes.index[-1], sizes.index[len(sizes) // 2], sizes.index[0]])
    keyed = rows.set_index(list(td.STINT_KEYS)).sort_index()
    return [keyed.loc[[k]].reset_index().sort_values("LapNumber") for k in picks]


def plot_rates(scored: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mid = mid_stint_rows(scored)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    inside = (mid["DegRateP10"] <= mid[td.RATE]) & (mid[td.RATE] <= mid["DegRateP90"])
    for ok, colour, label in ((True, "tab:blue", "inside band"), (False, "tab:red", "outside band")):
        m = mid[inside == ok]
        err = np.vstack([m["DegRate"] - m["DegRateP10"], m["DegRateP90"] - m["DegRate"]])
        ax.errorbar(m[td.RATE], m["DegRate"], yerr=err, fmt="o", ms=3, alpha=0.5, color=colour, label=label)
    lo, hi = np.nanpercentile(mid[td.RATE], [1, 99]) if len(mid) else (0.0, 0.2)
    ax.plot([lo, hi], [lo, hi], color="k", lw=1)
    ax.set(
        xlim=(lo - 0.05, hi + 0.05),
        xlabel="realised stint slope (s/lap, fuel-corrected)",
        ylabel="predicted DegRate with P10-P90 (s/lap)",
        title="one point per stint, predicted at its middle lap",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_stints(scored: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stints = example_stints(scored)
    fig, axes = plt.subplots(1, max(len(stints), 1), figsize=(5 * max(len(stints), 1), 4), squeeze=False)
    for ax, stint in zip(axes[0], stints, strict=False):
        first = stint.iloc[0]
        clean = stint[stint["IsClean"].astype(bool)]
        ax.plot(clean["TyreLife"], clean["FuelCorrectedLapTime"], "o", ms=3, label="clean laps")
        ax.set(xlabel="TyreLife (laps)", ylabel="FuelCorrectedLapTime (s)")
        ax.set_title(
            f"{first['Year']} {first['EventName']}\n{first['Driver']} stint {int(first['Stint'])} "
            f"{first['Compound']}: realised {first[td.RATE]:.3f} s/lap",
            fontsize=9,
        )
        twin = ax.twinx()
        twin.plot(stint["TyreLife"], stint["FalloffScore"], color="tab:orange", label="FalloffScore")
        twin.plot(stint["TyreLife"], stint["CliffProbability"], color="tab:red", ls="--", label="P(cliff)")
        twin.set(ylim=(0, 1.05), ylabel="score / probability")
        twin.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _f(m: dict[str, float], key: str) -> str:
    value = m.get(key, float("nan"))
    return f"{value:.4f}" if np.isfinite(value) else "n/a"


def card(evaluation: base.Evaluation, out_dir: Path) -> str:
    plot_rates(evaluation.scored, out_dir / RATE_PNG)
    plot_stints(evaluation.scored, out_dir / STINTS_PNG)
    cliff_ece = plot_cliff(evaluation.scored, out_dir / CLIFF_PNG)
    m = evaluation.metrics
    lines = [
        "Per driver-lap, the stint's fuel-corrected degradation rate (`DegRate`, s/lap) with an 80% "
        "band (quantile LightGBM at 0.1/0.5/0.9, band widened by a constant fitted on the validation "
        "races), `FalloffScore` = clip(max(DegRate, 0) x TyreLife / "
        f"{td.FALLOFF_CAP_S:.0f} s, 0, 1) and `CliffProbability` (a clean free-air lap >= "
        f"{td.CLIFF_S:.1f} s slower than the last-3-clean-lap median in the next {td.CLIFF_HORIZON} "
        "laps). All outputs are non-decreasing in TyreLife.",
        "",
        f"**Rate** ({int(m['rate_rows'])} laps of {int(m['rate_stints'])} dry stints, scored against "
        "the stint's realised slope)",
        "",
        "| predictor | MAE all laps (s/lap) | MAE laps 1-8 of the stint |",
        "| --- | --- | --- |",
    ]
    for name in ("model", "causal_slope", "compound_median"):
        lines.append(f"| {name} | {_f(m, f'{name}_rate_mae')} | {_f(m, f'{name}_rate_mae_early_stint')} |")
    lines += [
        "",
        f"80% band: coverage {_f(m, 'band80_coverage')} (target 0.75-0.85), mean width "
        f"{_f(m, 'band80_mean_width')} s/lap. Median realised rate {_f(m, 'median_rate_s_per_lap')} "
        f"s/lap per stint (model median {_f(m, 'model_median_rate_s_per_lap')}); sanity anchor: "
        "~0.04 s/lap median fuel-corrected wear across compounds, 2014-2019.",
        "",
        "causal_slope: the live StintDegSlope once the stint has >= 5 clean laps, the compound "
        "median before; compound_median: the training races' median stint rate per compound.",
        "",
        f"**Cliff in the next {td.CLIFF_HORIZON} laps** ({int(m['cliff_rows'])} laps, base rate "
        f"{_f(m, 'cliff_base_rate')})",
        "",
        "| predictor | AUC-ROC | AUC-PR | Brier |",
        "| --- | --- | --- | --- |",
    ]
    for name in ("model", "baseline"):
        lines.append(
            f"| {name} | {_f(m, f'cliff_{name}_auc_roc')} | {_f(m, f'cliff_{name}_auc_pr')} | "
            f"{_f(m, f'cliff_{name}_brier')} |"
        )
    lines += [
        "",
        "baseline: the training races' cliff frequency per (Compound, 5-lap TyreLife bucket). "
        f"Reliability of CliffProbability: expected calibration error {cliff_ece:.3f} (diagram below).",
        "",
        "| race | stints | model MAE | causal MAE | band coverage | cliff AUC model | cliff AUC baseline |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for race, r in evaluation.per_race.items():
        lines.append(
            f"| {race} | {int(r['rate_stints'])} | {_f(r, 'model_rate_mae')} | {_f(r, 'causal_slope_rate_mae')} "
            f"| {_f(r, 'band80_coverage')} | {_f(r, 'cliff_model_auc_roc')} | {_f(r, 'cliff_baseline_auc_roc')} |"
        )
    lines += ["", f"![rate vs realised slope]({RATE_PNG})", "", f"![example stints]({STINTS_PNG})", ""]
    lines += [f"![cliff reliability]({CLIFF_PNG})", ""]
    return "\n".join(lines)
