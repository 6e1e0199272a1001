"""`stratx evaluate`: score the @champion lap-time model on the test races (or a user's race).

Writes ``report.md``, ``lap_time_errors.png`` and ``metrics.json`` into the output folder. Races:
by default the test races of the split (``lap_time.TEST_RACES``, bundled copies first); or a
bundled-format race folder, a folder of flat FastF1 exports (``laps.parquet`` ...), or a session
from a FastF1 cache folder.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stratx.functions.models import lap_time as lt
from stratx.functions.racedata import RaceData
from stratx.quix_apps import sources, training
from stratx.quix_apps.settings import TrainingSettings

TARGET_RATIO = 0.9  # the model's clean-lap MAE must be <= 0.9 x persistence's


@dataclass(frozen=True)
class Champion:
    booster: Any
    version: str
    tags: dict[str, str]


def load_champion(settings: TrainingSettings) -> Champion:
    import mlflow.lightgbm
    from mlflow.exceptions import MlflowException

    client = training._client(settings)
    try:
        version = client.get_model_version_by_alias(lt.MODEL_NAME, training.CHAMPION)
    except MlflowException as exc:
        raise ValueError(
            f"no {lt.MODEL_NAME}@{training.CHAMPION} in {settings.mlflow_uri}; run `stratx train` first"
        ) from exc
    if version.tags.get("target", lt.TARGET_KIND) != lt.TARGET_KIND:
        raise ValueError(
            f"champion version {version.version} predicts {version.tags['target']!r}, not {lt.TARGET_KIND!r}"
        )
    booster = mlflow.lightgbm.load_model(f"models:/{lt.MODEL_NAME}@{training.CHAMPION}")
    return Champion(booster, str(version.version), dict(version.tags))


def test_races(settings: TrainingSettings) -> list[RaceData]:
    wanted = set(lt.TEST_RACES)
    races = [
        r for r in training.corpus_races(settings.data_dir) if (r.meta.year, r.meta.event_name) in wanted
    ]
    if not races:
        raise ValueError(f"none of the test races is in {settings.data_dir}")
    return races


def score_races(champion: Champion, table: pd.DataFrame) -> dict[str, Any]:
    """Metrics overall and per race, plus the scored frame (with ``Predicted``)."""
    frame = lt.next_lap_targets(table)
    frame = frame[lt.trainable(frame)].copy()
    if frame.empty:
        raise ValueError("no laps with a next lap to score")
    frame["Predicted"] = training.predict(champion.booster, frame)
    overall = lt.metrics_table(frame, frame["Predicted"].to_numpy())
    per_race = {
        f"{year} {event}": lt.metrics_table(g, g["Predicted"].to_numpy())
        for (year, event), g in frame.groupby(["Year", "EventName"], sort=True)
    }
    return {"overall": overall, "per_race": per_race, "frame": frame}


def plot(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clean = frame[lt.evaluation_rows(frame)["clean"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax1.scatter(clean[lt.TARGET], clean["Predicted"], s=3, alpha=0.3)
    lo, hi = np.nanpercentile(clean[lt.TARGET], [0.5, 99.5])
    ax1.plot([lo, hi], [lo, hi], color="k", lw=1)
    ax1.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="actual next LapTime (s)", ylabel="predicted (s)")
    ax1.set_title("clean next laps: predicted vs actual")
    life = clean["TyreLife"].clip(upper=40)
    bins = pd.cut(life, bins=range(0, 45, 5), right=False)
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
        title="clean next laps: MAE by tyre age",
    )
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _row(name: str, m: dict[str, float], laps: str) -> str:
    return f"| {name} | {m[f'{name}_{laps}_mae']:.3f} | {m[f'{name}_{laps}_rmse']:.3f} |"


def report_markdown(champion: Champion, scores: dict[str, Any], races: list[str], png: str) -> str:
    m = scores["overall"]
    ratio = m["model_vs_persistence_clean_mae_ratio"]
    lines = [
        f"# {lt.MODEL_NAME} v{champion.version} (@{training.CHAMPION}): next-lap time",
        "",
        f"Races scored: {', '.join(races)}.",
        f"Feature service `{champion.tags.get('feast_feature_service', '?')}`, data snapshot "
        f"`{champion.tags.get('data_snapshot_hash', '?')[:12]}`, commit `{champion.tags.get('git_commit', '?')[:12]}`.",
        "",
    ]
    for laps, title in (("clean", "green-flag clean next laps"), ("all", "all next laps")):
        lines += [
            f"## {title} ({int(m[f'{laps}_laps'])} laps)",
            "",
            "| predictor | MAE (s) | RMSE (s) |",
            "| --- | --- | --- |",
            _row("model", m, laps),
            _row("persistence", m, laps),
            _row("rolling_median", m, laps),
            "",
        ]
    met = "met" if ratio <= TARGET_RATIO else "NOT met"
    lines += [
        f"Target (clean-lap MAE <= {TARGET_RATIO} x persistence): {met}, ratio {ratio:.3f}.",
        "",
        "persistence: next = this LapTime; rolling_median: the driver's last-3-clean-lap median "
        "(this LapTime before any clean lap).",
        "",
        "## per race (clean next laps, MAE s)",
        "",
        "| race | laps | model | persistence | rolling_median |",
        "| --- | --- | --- | --- | --- |",
    ]
    for race, r in scores["per_race"].items():
        lines.append(
            f"| {race} | {int(r['clean_laps'])} | {r['model_clean_mae']:.3f} | "
            f"{r['persistence_clean_mae']:.3f} | {r['rolling_median_clean_mae']:.3f} |"
        )
    lines += ["", f"![errors]({png})", ""]
    return "\n".join(lines)


def evaluate(
    settings: TrainingSettings, races: list[RaceData], out_dir: Path, progress: bool = True
) -> dict[str, Any]:
    """Score the champion on ``races``; write report.md, the plot and metrics.json to ``out_dir``."""
    champion = load_champion(settings)
    table = training.lap_table(races, progress)
    scores = score_races(champion, table)
    names = sorted({f"{r.meta.year} {r.meta.event_name} {r.meta.session_name}" for r in races})
    out_dir.mkdir(parents=True, exist_ok=True)
    png = "lap_time_errors.png"
    plot(scores["frame"], out_dir / png)
    (out_dir / "report.md").write_text(report_markdown(champion, scores, names, png))
    ratio = scores["overall"]["model_vs_persistence_clean_mae_ratio"]
    metrics = {
        "lap_time": {
            "model": lt.MODEL_NAME,
            "version": champion.version,
            "races": names,
            "metrics": scores["overall"],
            "per_race": scores["per_race"],
            "target_clean_mae_ratio_max": TARGET_RATIO,
            "target_met": bool(ratio <= TARGET_RATIO),
        }
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def user_races(args: argparse.Namespace, settings: TrainingSettings) -> list[RaceData]:
    races: list[RaceData] = []
    for folder in getattr(args, "race_dir", None) or []:
        races.append(sources.load_bundled(Path(folder)))
    for folder in getattr(args, "exports", None) or []:
        races += sources.load_exports(Path(folder))
    if getattr(args, "fastf1_cache", None):
        if args.year is None or args.event is None:
            raise ValueError("--fastf1-cache needs --year and --event")
        races.append(
            sources.load_fastf1(
                args.year, args.event, args.session or "R", Path(args.fastf1_cache), offline=True
            )
        )
    return races


def evaluate_main(args: argparse.Namespace, settings: TrainingSettings | None = None) -> int:
    """`stratx evaluate [--race-dir DIR ...] [--exports DIR ...] [--fastf1-cache DIR --year Y --event E
    [--session R]] [--out DIR] [--no-progress]`; no race given = the test races."""
    settings = settings or TrainingSettings()
    races = user_races(args, settings) or test_races(settings)
    out = Path(args.out) if getattr(args, "out", None) else settings.reports_dir
    metrics = evaluate(settings, races, out, progress=not getattr(args, "no_progress", False))["lap_time"]
    m = metrics["metrics"]
    print(f"{lt.MODEL_NAME} v{metrics['version']} on {len(metrics['races'])} races -> {out}/report.md")
    for laps in ("clean", "all"):
        print(
            f"  {laps:5s} laps ({int(m[f'{laps}_laps'])}): MAE model {m[f'model_{laps}_mae']:.3f} s, "
            f"persistence {m[f'persistence_{laps}_mae']:.3f} s, rolling median {m[f'rolling_median_{laps}_mae']:.3f} s"
        )
    print(
        f"  target (<= {TARGET_RATIO} x persistence on clean laps): {'met' if metrics['target_met'] else 'NOT met'}"
    )
    return 0
