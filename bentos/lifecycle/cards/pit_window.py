"""Model card of the pit-window model (``stratx-pit-window``): metrics, targets, two plots."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from stratx.bentos.lifecycle.cards import calibration
from stratx.functions.models import base
from stratx.functions.models import pit_window as pw

RELIABILITY_PNG = "pit_window_reliability.png"
LIMITS = (
    "Stops forced by damage, a puncture or a team's double stack are not in the driver's lap "
    "features; the model sees tyre age, pace, gaps and the race's progress.",
    "It does not know that a safety car makes a stop cheap: that is the alerts' safety-car rule "
    "(`functions/alerts.py`), from the race state, not this model.",
    "Red flags (tyres may be changed for free under one) and wet races (a switch to intermediates "
    "follows the rain, not the tyres) are rare in the 27 training races.",
    "The undercut score is scored on few pairs of the test races and is no better than the gap "
    "alone there (the undercut row above).",
)
WINDOW_PNG = "pit_window_stops.png"


def _fmt(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.3f}"


def reliability(scored: pd.DataFrame, column: str, bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs observed Pit3 rate per probability decile (equal-count bins) of the lap rows."""
    laps = scored[scored["Kind"] == "lap"]
    return calibration.reliability(laps[pw.LABEL], laps[column], edges=None, bins=bins)


def _plots(evaluation: base.Evaluation, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = evaluation.scored
    fig, ax = plt.subplots(figsize=(4.5, 4))
    curves = {
        label: reliability(scored, column)
        for column, label in (("PitProbability3Laps", "model"), ("BaselinePit3", "tyre-age hazard baseline"))
    }
    calibration.plot(ax, curves, "predicted P(pit within 3 laps)", "Reliability (test races)")
    fig.tight_layout()
    fig.savefig(out_dir / RELIABILITY_PNG, dpi=110)
    plt.close(fig)

    win = scored[scored["Kind"] == "window"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    early = (win["StopLap"] - win["WindowOpenLap"]).dropna()
    ax.hist(early, bins=[k - 0.5 for k in range(-15, 31)], color="tab:blue", alpha=0.8)
    width = float((win["WindowCloseLap"] - win["WindowOpenLap"]).mean())
    ax.axvline(0, color="k", lw=0.8)
    ax.axvline(width, color="k", lw=0.8, ls="--")
    ax.set(xlabel="real in-lap minus window open lap (dashed: mean close)", ylabel="stops")
    ax.set_title(f"Stops vs recommended window (lead {pw.WINDOW_LEAD} laps)")
    fig.tight_layout()
    fig.savefig(out_dir / WINDOW_PNG, dpi=110)
    plt.close(fig)
    return [RELIABILITY_PNG, WINDOW_PNG]


def card(evaluation: base.Evaluation, out_dir: Path) -> str:
    """Markdown for the report; writes the reliability and window plots into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    m = evaluation.metrics
    lines = [
        f"## {pw.MODEL_NAME}",
        "",
        "P(the driver's in-lap is one of the next 3 laps), a recommended window of in-laps, the circuit's "
        "pit-lane loss and an undercut-success score. Definitions: `stratx.functions.models.pit_window`.",
        f"Races: {', '.join(evaluation.races)}.",
        "",
        "| rows | metric | model | tyre-age hazard baseline |",
        "| --- | --- | --- | --- |",
    ]
    for subset, label in (("", "all labelled laps"), ("green_", "green laps (no SC/VSC/red on N..N+3)")):
        for metric in ("auc_roc", "auc_pr", "brier"):
            lines.append(
                f"| {label} (n={int(m[f'{subset}pit3_rows'])}) | Pit3 {metric} | "
                f"{_fmt(m[f'model_{subset}pit3_{metric}'])} | {_fmt(m[f'baseline_{subset}pit3_{metric}'])} |"
            )
    lines += [
        "",
        f"Recommended window (issued {pw.WINDOW_LEAD} laps before the in-lap, or at the stint's first lap): "
        f"{_fmt(m['stops_in_window_share'])} of {int(m['window_stops'])} real stops inside "
        f"(green-flag stops: {_fmt(m['green_stops_in_window_share'])}); mean width "
        f"{m['window_width_mean_laps']:.1f} laps.",
        "",
        f"Undercut success (n={int(m['undercut_pairs'])} pairs, success rate {_fmt(m['undercut_success_rate'])}): "
        f"model AUC {_fmt(m['undercut_model_auc_roc'])}, gap-only baseline "
        f"{_fmt(m['undercut_gap_baseline_auc_roc'])}, tyre-age baseline "
        f"{_fmt(m['undercut_tyre_age_baseline_auc_roc'])} (anchor {pw.UNDERCUT_ANCHOR}). "
        "A small sample: one pair moves the AUC by several points.",
        "",
        f"Reliability of P(pit within 3 laps), lap rows in deciles: expected calibration error "
        f"{_fmt(calibration.calibration_error(reliability(evaluation.scored, 'PitProbability3Laps')))} "
        f"(tyre-age hazard baseline "
        f"{_fmt(calibration.calibration_error(reliability(evaluation.scored, 'BaselinePit3')))}).",
        "",
        "| target | value | needed | met |",
        "| --- | --- | --- | --- |",
    ]
    for t in evaluation.targets:
        lines.append(f"| {t.name} | {_fmt(t.value)} | {t.op} {t.threshold} | {'yes' if t.met else 'no'} |")
    lines += ["", *(f"- {note}" for note in evaluation.notes), ""]
    lines += [f"![{name}]({name})" for name in _plots(evaluation, out_dir)]
    return "\n".join(lines) + "\n"
