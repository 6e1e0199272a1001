"""The backtest's report: ``backtest.md`` with its plots (matplotlib, PNG) and ``backtest.json``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from stratx.quix_apps.drift_measure import drift_markdown

# the metrics shown per model in the markdown table (all of them are in backtest.json)
HEADLINE: dict[str, tuple[str, ...]] = {
    "lap_time": (
        "both_clean_laps",
        "model_both_clean_mae",
        "strongest_both_clean_mae",
        "model_vs_strongest_both_clean_mae_ratio",
    ),
    "tyre_deg": ("band80_coverage", "model_rate_mae", "cliff_model_auc_pr", "cliff_model_brier"),
    "pit_window": ("model_pit3_auc_roc", "model_pit3_auc_pr", "model_pit3_brier", "baseline_pit3_auc_roc"),
    "overtake": ("model_h1_auc_pr", "model_h1_auc_roc", "model_h1_brier", "gap_logistic_h1_auc_pr"),
    "anomaly": ("lap_alarms", "lap_false_alarms_per_race_hour", "flagged_laps", "race_hours"),
}


def finite(value: Any) -> Any:
    """JSON has no NaN: NaN/inf become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:.0f}" if value.is_integer() else f"{value:.3f}"
    return str(value)


def _model_rows(models: dict[str, Any]) -> list[str]:
    lines = ["| model | metric | offline | streamed |", "| --- | --- | --- | --- |"]
    for key, m in models.items():
        if "offline" not in m:
            lines.append(f"| {key} | - | {m.get('note', '')} | |")
            continue
        names = [n for n in HEADLINE.get(key, ()) if n in m["offline"] or n in m["streamed"]]
        names = names or sorted(m["offline"])[:4]
        for name in names:
            lines.append(
                f"| {key} | {name} | {_fmt(m['offline'].get(name))} | {_fmt(m['streamed'].get(name))} |"
            )
    return lines


def _parity_rows(models: dict[str, Any]) -> list[str]:
    lines = [
        "| model | value | driver-laps | equal within 1e-6 | largest difference | one side missing |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, m in models.items():
        for value, p in (m.get("parity") or {}).items():
            lines.append(
                f"| {key} | {value} | {_fmt(p['count'])} | {_fmt(p['equal_share'])} | "
                f"{_fmt(p['max_abs_diff'])} | {_fmt(p['missing_on_one_side'])} |"
            )
    return lines


def _alert_rows(alerts: dict[str, Any]) -> list[str]:
    lines = [
        "| alert type | count | per race-hour | critical, per race-hour | max on one lap | laps over the burst "
        "limit: alerts, came true | precision | recall (events) | lead laps (median) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, a in sorted(alerts.items()):
        recall = "-" if a.get("recall") is None else f"{a['recall']:.2f} ({a.get('recall_events', 0)})"
        b = a.get("bursts") or {}
        bursts = f"{b['laps']}: {b['alerts']}, {b['came_true']}" if b.get("laps") else "0"
        lines.append(
            f"| {kind} | {a['count']} | {_fmt(a['per_race_hour'])} | "
            f"{(a.get('by_severity') or {}).get('critical', 0)}, {_fmt(a.get('critical_per_race_hour'))} | "
            f"{a['max_per_lap']} | {bursts} | "
            f"{_fmt(a.get('precision'))} | {recall} | {_fmt(a.get('lead_laps_median'))} |"
        )
    return lines


def _per_race_rows(per_race: dict[str, Any], timings: list[dict[str, Any]]) -> list[str]:
    """One line per race: parity, lap-time MAE, each alert type, retirements, retired-car records, time."""
    seconds = {t["race"]: t["until_last_record_s"] for t in timings}
    lines = [
        "| race | parity: lowest equal share | lap_time both-clean MAE s streamed (offline); strongest baseline | alerts: count, per race-hour, "
        "precision, recall | retirements: anomaly alert within 3 laps | records for retired cars | s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for race, r in per_race.items():
        shares = [p["equal_share"] for m in r["models"].values() for p in (m.get("parity") or {}).values()]
        shares = [x for x in shares if x is not None and x == x]
        lt = r["models"].get("lap_time", {})
        streamed, offline = lt.get("streamed", {}), lt.get("offline", {})
        mae = (
            f"{_fmt(streamed.get('model_both_clean_mae'))} ({_fmt(offline.get('model_both_clean_mae'))}); "
            f"strongest baseline {_fmt(streamed.get('strongest_both_clean_mae'))}"
        )
        alerts = (
            "; ".join(
                f"{k} {a['count']}, {_fmt(a['per_race_hour'])}/h, p {_fmt(a.get('precision'))}, r {_fmt(a.get('recall'))}"
                for k, a in sorted(r["alerts"].items())
            )
            or "none"
        )
        ret = r["retirements"]
        caught = sum(1 for x in ret if x["lead_laps"] is not None and x["lead_laps"] <= 3)
        after = r["coverage"]["records_after_retirement"]["predictions"]["after_retired_lap"]
        lines.append(
            f"| {race} | {_fmt(min(shares)) if shares else '-'} | {mae} | {alerts} | {caught} of {len(ret)} | "
            f"{_fmt(after)} | {_fmt(seconds.get(race))} |"
        )
    return lines


def plots(frames: dict[str, Any], out: Path) -> list[str]:
    """Streamed vs offline scatter per model; alerts and race events per lap. PNG names."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    names = []
    pairs: dict[str, pd.DataFrame] = frames.get("pairs", {})
    if pairs:
        fig, axes = plt.subplots(1, len(pairs), figsize=(3.2 * len(pairs), 3.2), squeeze=False)
        for ax, (key, p) in zip(axes[0], pairs.items(), strict=True):
            ax.scatter(p["offline"], p["streamed"], s=4, alpha=0.5)
            lo, hi = p.min().min(), p.max().max()
            if math.isfinite(lo) and math.isfinite(hi):
                ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
            ax.set_title(key, fontsize=9)
            ax.set_xlabel("offline", fontsize=8)
            ax.set_ylabel("streamed", fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "backtest_parity.png", dpi=110)
        plt.close(fig)
        names.append("backtest_parity.png")
    alerts: pd.DataFrame = frames.get("alerts", pd.DataFrame())
    events: dict[str, pd.DataFrame] = frames.get("events", {})
    if not alerts.empty:
        fig, ax = plt.subplots(figsize=(8, 3.2))
        for kind, g in alerts.groupby("Type"):
            counts = g.groupby("LapNumber").size()
            ax.plot(
                counts.index.astype(int), counts.to_numpy(), marker="o", ms=3, lw=0.8, label=f"alert {kind}"
            )
        for kind in ("stop", "retirement"):
            e = events.get(kind)
            if e is not None and not e.empty:
                counts = e.groupby("LapNumber").size()
                ax.bar(counts.index.astype(int), counts.to_numpy(), alpha=0.25, label=f"race: {kind}")
        ax.set_xlabel("lap")
        ax.set_ylabel("per lap (all races)")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(out / "backtest_alerts.png", dpi=110)
        plt.close(fig)
        names.append("backtest_alerts.png")
    return names


def markdown(result: dict[str, Any], images: list[str]) -> str:
    cov = result["coverage"]
    after = cov["records_after_retirement"]
    lines = [
        "# StratX stream backtest",
        "",
        f"Command: `{result.get('command', 'stratx backtest')}`. Races: {'; '.join(result['races'])}. "
        f"Race-hours: {sum(v for v in result['race_hours'].values() if v == v):.2f}. Elapsed: {result.get('elapsed_s', 0):.0f} s.",
        "",
        "Every record below was read back from the prediction and alert topics after the races were "
        "replayed at full speed through the pipeline of `stratx up`. Scoring uses hindsight (the "
        "whole race); the pipeline did not.",
        "",
        *(
            ["## Per race", "", *_per_race_rows(result["per_race"], result.get("timings", [])), ""]
            if result.get("per_race")
            else []
        ),
        "## Models: streamed vs offline on the same driver-laps",
        "",
        *_model_rows(result["models"]),
        "",
        "## Parity: streamed vs offline predictions",
        "",
        *_parity_rows(result["models"]),
        "",
        "## Alerts",
        "",
        *_alert_rows(result["alerts"]),
        "",
        "Events in the races (hindsight): "
        + ", ".join(f"{k} {v}" for k, v in result["events"].items())
        + ".",
        "",
        "## Retirements",
        "",
        "| race | car | status | stopped on lap | first anomaly alert | lead laps | alerts after |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {r['race']} | {r['DriverNumber']} | {r['Status']} | {r['RetiredLap']} | "
            f"{_fmt(r['first_alert_lap'])} | {_fmt(r['lead_laps'])} | {r['alerts_after']} |"
            for r in result["retirements"]
        ),
        "",
        "## Coverage",
        "",
        f"- driver-laps with a prediction: {_fmt(cov.get('driver_laps'))}; with all four per-lap models: "
        f"{_fmt(cov.get('all_per_lap_models_share'))}; with all five: {_fmt(cov.get('all_five_share'))} "
        f"(where a car was ahead: {_fmt(cov.get('all_five_share_with_car_ahead'))})",
        f"- records for retired cars (must be 0): predictions {_fmt(after['predictions']['after_retired_lap'])} "
        f"past the lap they stopped on, {_fmt(after['predictions']['after_retired_time'])} after their last lap's end; "
        f"alerts {_fmt(after['alerts']['after_retired_lap'])} / {_fmt(after['alerts']['after_retired_time'])}",
        f"- unavailable prediction records: {_fmt(cov.get('unavailable_records'))}",
        f"- completed laps with no record at all (must be 0): {_fmt(cov.get('completed_laps_without_record'))} "
        f"of {_fmt(cov.get('completed_laps'))}",
        "",
        *(drift_markdown(result["drift"]) if result.get("drift") else []),
        "## Time",
        "",
        "| race | events | driver-laps | replay s | until the last record s |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {t['race']} | {t['events']} | {t['driver_laps']} | {t['replay_s']} | {t['until_last_record_s']} |"
            for t in result.get("timings", [])
        ),
        "",
        *(f"![{name}]({name})" for name in images),
        "",
    ]
    return "\n".join(lines)


def write(result: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    frames = result.pop("_frames", {})
    images = plots(frames, out)
    (out / "backtest.json").write_text(json.dumps(finite(result), indent=2, default=str) + "\n")
    (out / "backtest.md").write_text(markdown(result, images))
    return [out / "backtest.md", out / "backtest.json"]


def summary_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for key, m in result["models"].items():
        par = m.get("parity") or {}
        worst = max(
            (p["max_abs_diff"] for p in par.values() if p["max_abs_diff"] == p["max_abs_diff"]), default=None
        )
        share = min(
            (p["equal_share"] for p in par.values() if p["equal_share"] == p["equal_share"]), default=None
        )
        lines.append(
            f"{key}: {m.get('matched_rows', 0)} driver-laps matched; parity equal share {_fmt(share)}, "
            f"largest difference {_fmt(worst)}"
        )
    for kind, a in sorted(result["alerts"].items()):
        lines.append(
            f"alert {kind}: {a['count']} ({_fmt(a['per_race_hour'])}/race-hour), precision {_fmt(a.get('precision'))}, "
            f"recall {_fmt(a.get('recall'))}"
        )
    after = result["coverage"]["records_after_retirement"]["predictions"]
    lines.append(f"predictions for retired cars: {_fmt(after['after_retired_lap'])} (must be 0)")
    lost = result["coverage"].get("completed_laps_without_record")
    lines.append(f"completed laps with no prediction record: {_fmt(lost)} (must be 0)")
    for race, found in (result.get("drift") or {}).items():
        if "real" in found:
            alarms = [k for k, v in found["injected"].items() if v["alarm"]]
            lines.append(
                f"drift {race}: largest share {found['real']['max_any_lap']['share']:.3f} (threshold "
                f"{found['threshold']}); SYNTHETIC injections alarmed: {', '.join(alarms) or 'none'}"
            )
    return lines
