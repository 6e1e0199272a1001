"""Model card of the anomaly model (``stratx-anomaly``): metrics, SYNTHETIC fault recall, real events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stratx.bentos.lifecycle.cards import calibration
from stratx.functions.models import anomaly, base

LIMITS = (
    "It is not a fault detector trained on real failures: there are too few in the data. Its "
    "recall is measured on SYNTHETIC faults injected into real laps; real mechanical retirements "
    "are listed below, caught or not.",
    "Lap level: speed traps and lap time against the driver's own recent laps and the cars that "
    "completed the lap earlier. Lap 1, pit laps and neutralised laps are out of scope (no score "
    "is trusted there and the alerts never fire on them).",
    "Telemetry windows (RPM, gear, throttle, brake) are scored offline only; the free OpenF1 feed "
    "carries no car telemetry since the 2025 Dutch GP.",
    "The score is a percentile of normal laps, not P(fault): 0.99 means rarer than 99 % of "
    "normal laps (the exceedance table above checks it on real laps).",
)


def exceedance_lines(scored: pd.DataFrame) -> list[str]:
    """The score as a percentile: on the real in-scope laps, the share at or above each level."""
    scores = (
        scored.loc[scored["InScope"].astype(bool), "AnomalyScore"]
        if "InScope" in scored
        else scored["AnomalyScore"]
    )
    table = calibration.exceedance(scores)
    if not int(table["n"].iloc[0]):
        return []
    return [
        f"### The score as a percentile ({int(table['n'].iloc[0])} real in-scope laps of the test races)",
        "",
        "| score at least | expected share | observed share |",
        "| --- | --- | --- |",
        *(f"| {r.level:g} | {r.expected:.3f} | {r.observed:.3f} |" for r in table.itertuples()),
        "",
    ]


def _fmt(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.3g}"


def _plot(scored: pd.DataFrame, out_dir: Path) -> str | None:
    """Histogram of the real laps' AnomalyScore (log count) with the flag threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = scored.loc[scored["InScope"].astype(bool), "AnomalyScore"].dropna()
    if scores.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(scores, bins=50, log=True, color="#3a6ea5")
    ax.set_xlabel("AnomalyScore of real in-scope laps")
    ax.set_ylabel("laps (log)")
    fig.tight_layout()
    path = out_dir / "anomaly_lap_scores.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def card(evaluation: base.Evaluation, out_dir: Path) -> str:
    m = evaluation.metrics
    lines = [
        "## stratx-anomaly",
        "",
        "Calibrated 0..1 score per lap (speed traps, LapTime) and per 5 s telemetry window (RPM, gear,",
        "throttle, brake, speed) from standardized residuals of LightGBM expectations. A window alarm",
        f"needs a deficit that persists: the mean over {anomaly.RUN_WINDOWS} contiguous windows (each clipped",
        f"to +-{anomaly.RUN_CLIP:g}), so one odd window of the real feed does not alarm. Budget per level on",
        f"the calibration races: {anomaly.ALARM_BUDGET_PER_HOUR} alarms per race-hour; `false_alarms_per_race_hour`",
        "= lap rate + window rate (per hour of the races with car telemetry).",
        "",
        "| metric | value |",
        "| --- | --- |",
        *(f"| {k} | {_fmt(v)} |" for k, v in sorted(m.items())),
        "",
        "**SYNTHETIC**: every `synthetic_*` value comes from faults injected into real rows by",
        f"`inject_faults` (seed 0); none of them is a real failure. Each fault persists {anomaly.FAULT_LAPS[0]}-"
        f"{anomaly.FAULT_LAPS[1]} laps or {5 * anomaly.FAULT_WINDOWS[0]}-{5 * anomaly.FAULT_WINDOWS[1]} s with one",
        "magnitude; the references are recomputed from the faulty rows (what a stream would see).",
        "`synthetic_recall_<kind>` = share of fault episodes flagged on some in-scope row,",
        "`synthetic_delay_<kind>` = median laps (lap level) or seconds (window level) from onset to flag.",
        "",
        *(f"* target {t.name} {t.op} {t.threshold}: {_fmt(t.value)} ({'met' if t.met else 'MISSED'})" for t in evaluation.targets),
        *(f"* note: {n}" for n in evaluation.notes),
        "",
        "### Real mechanical retirements (results Status)",
        "",
    ]  # fmt: skip
    ret = evaluation.scored.attrs.get("retirements", pd.DataFrame())
    lines += [ret.to_markdown(index=False) if len(ret) else "none in the scored races", ""]
    slow = evaluation.scored.attrs.get("slow_laps", pd.DataFrame())
    lines += [f"### Slow green-flag laps (>= {anomaly.SLOW_LAP_S:g} s over Last3Median)", ""]
    lines += [slow.head(20).to_markdown(index=False) if len(slow) else "none", ""]
    lines += exceedance_lines(evaluation.scored)
    image = _plot(evaluation.scored, out_dir)
    if image:
        lines += [f"![lap scores]({image})", ""]
    return "\n".join(lines)
