"""`stratx evaluate`: score the @champion of every model on races never used in training.

Writes ``report.md`` (one model card per model: what it predicts, its metrics next to each
baseline, the issue's targets met or missed, plots) and ``metrics.json`` into the output folder.
Races: by default the test races of the split (``base.TEST_RACES``, bundled copies first); or a
bundled-format race folder, a folder of flat FastF1 exports (``laps.parquet`` ...), or a session
from a FastF1 cache folder.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stratx.bentos.lifecycle import model_store, sources, training
from stratx.functions import models
from stratx.functions.models import base
from stratx.functions.racedata import RaceData
from stratx.functions.settings import TrainingSettings


def test_races(settings: TrainingSettings) -> list[RaceData]:
    wanted = set(base.TEST_RACES)
    races = [
        r for r in training.corpus_races(settings.data_dir) if (r.meta.year, r.meta.event_name) in wanted
    ]
    if not races:
        raise ValueError(f"none of the test races is in {settings.data_dir}")
    return races


def _finite(value: Any) -> Any:
    """JSON has no NaN: NaN/inf become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def card(key: str, evaluation: base.Evaluation, out_dir: Path) -> str:
    """The model's own card (``stratx.bentos.lifecycle.cards.<key>``) or a plain metrics table."""
    name = f"stratx.bentos.lifecycle.cards.{key}"
    if importlib.util.find_spec(name) is not None:
        text: str = importlib.import_module(name).card(evaluation, out_dir)
        return text
    rows = [f"| {k} | {v:.4f} |" for k, v in sorted(evaluation.metrics.items())]
    return "\n".join(["| metric | value |", "| --- | --- |", *rows, ""])


def card_limits(key: str) -> tuple[str, ...]:
    """What the model cannot do: its card's ``LIMITS`` (empty without a card)."""
    name = f"stratx.bentos.lifecycle.cards.{key}"
    if importlib.util.find_spec(name) is None:
        return ()
    return tuple(getattr(importlib.import_module(name), "LIMITS", ()))


def section(
    recipe: base.Recipe, registered: model_store.Registered, evaluation: base.Evaluation, out_dir: Path
) -> str:
    tags = registered.tags
    lines = [
        f"## {recipe.key}: {recipe.model_name} v{registered.version} (@{model_store.CHAMPION})",
        "",
        f"{recipe.description}. Races scored: {', '.join(evaluation.races)}. Feature service "
        f"`{tags.get('feast_feature_service', '?')}`, data snapshot `{tags.get('data_snapshot_hash', '?')[:12]}`, "
        f"commit `{tags.get('git_commit', '?')[:12]}`.",
        "",
    ]
    if evaluation.targets:
        lines += ["| target | value | required | verdict |", "| --- | --- | --- | --- |"]
        for t in evaluation.targets:
            lines.append(
                f"| {t.name} | {t.value:.3f} | {t.op} {t.threshold} | {'met' if t.met else 'NOT met'} |"
            )
        lines.append("")
    lines.append(card(recipe.key, evaluation, out_dir))
    lines += [f"- {note}" for note in evaluation.notes]
    if limits := card_limits(recipe.key):
        lines += ["", "**What it cannot do**", "", *(f"- {limit}" for limit in limits)]
    return "\n".join(lines) + "\n"


def evaluate(
    settings: TrainingSettings,
    races: list[RaceData],
    out_dir: Path,
    keys: list[str] | None = None,
    progress: bool = True,
    exports: Sequence[Path | str] = (),
) -> dict[str, Any]:
    """Score each model's champion on ``races``; write report.md, plots and metrics.json
    (``exports``: the folders the races came from, for their classification)."""
    recipes = [models.recipe(k) for k in (keys or models.available())]
    corpus = training.build_corpus(
        races,
        progress,
        windows=any(r.needs_windows for r in recipes),
        results_files=training.default_results_files(settings.data_dir, exports),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    names = sorted({f"{r.meta.year} {r.meta.event_name} {r.meta.session_name}" for r in races})
    report = ["# StratX model evaluation", "", f"Races: {', '.join(names)}.", ""]
    metrics: dict[str, Any] = {}
    for recipe in recipes:
        registered = model_store.load_registered(settings, recipe.key)
        evaluation = recipe.evaluate(registered.bundle, corpus)
        report.append(section(recipe, registered, evaluation, out_dir))
        metrics[recipe.key] = {
            "model": recipe.model_name,
            "version": registered.version,
            "races": evaluation.races,
            "metrics": evaluation.metrics,
            "targets": [t.as_dict() for t in evaluation.targets],
            "per_race": evaluation.per_race,
            "notes": evaluation.notes,
        }
    (out_dir / "report.md").write_text("\n".join(report))
    (out_dir / "metrics.json").write_text(json.dumps(_finite(metrics), indent=2) + "\n")
    return metrics


def user_races(args: argparse.Namespace, settings: TrainingSettings | None = None) -> list[RaceData]:
    """The races a user names, as `stratx evaluate` and `stratx backtest` take them: bundled
    folders (``--race-dir``), FastF1-format exports (``--exports``: every race in the folder) and
    FastF1 cache sessions (``--fastf1-cache`` with ``--year`` and one or more ``--event``,
    ``--session``, ``--telemetry-dir``); without a cache, ``--year``/``--event`` pick races of the
    exports folders. Nothing named: []. A folder without a race or a session
    the cache lacks raises (ValueError / ``sources.SourceError``) with the reason."""
    races: list[RaceData] = []
    for folder in getattr(args, "race_dir", None) or []:
        races.append(sources.load_bundled(Path(folder)))
    cache = getattr(args, "fastf1_cache", None)
    for folder in getattr(args, "exports", None) or []:
        found = sources.load_exports(Path(folder))
        if not cache:  # --year / --event pick races of the folder
            found = [r for r in found if _named(r, getattr(args, "year", None), events_of(args))]
        if not found:
            picked = (
                " matches --year/--event"
                if not cache and (getattr(args, "year", None) or events_of(args))
                else ""
            )
            raise ValueError(f"no race in the exports folder {folder}{picked}")
        races += found
    if cache:
        events = events_of(args)
        if args.year is None or not events:
            raise ValueError("--fastf1-cache needs --year and --event")
        telemetry = getattr(args, "telemetry_dir", None)
        for event in events:
            races.append(
                sources.load_fastf1(
                    args.year,
                    event,
                    getattr(args, "session", None) or "R",
                    Path(args.fastf1_cache),
                    offline=True,
                    telemetry_dir=Path(telemetry) if telemetry else None,
                )
            )
    return races


def _named(race: RaceData, year: int | None, events: list[str]) -> bool:
    """``race`` is of season ``year`` (None: any) and one of ``events`` (none: any), an event named
    by part of its name (case-insensitive) or its round number."""
    if year is not None and race.meta.year != year:
        return False
    name, rnd = race.meta.event_name.lower(), str(-race.meta.session_key % 100)
    return not events or any(e.lower() in name or e == rnd for e in events)


def events_of(args: argparse.Namespace) -> list[str]:
    """``--event`` as a list (repeatable for `stratx evaluate` and `stratx backtest`)."""
    event = getattr(args, "event", None)
    return [] if event is None else [event] if isinstance(event, str) else list(event)


def evaluate_main(args: argparse.Namespace, settings: TrainingSettings | None = None) -> int:
    """`stratx evaluate [--model all|KEY] [--race-dir DIR ...] [--exports DIR ...] [--fastf1-cache DIR
    --year Y --event E [--session R]] [--out DIR] [--no-progress]`; no race given = the test races."""
    settings = settings or TrainingSettings()
    training.quiet_mlflow()
    races = user_races(args, settings) or test_races(settings)
    out = Path(args.out) if getattr(args, "out", None) else settings.reports_dir
    keys = [r.key for r in training.selected(getattr(args, "model", None))]
    progress = not getattr(args, "no_progress", False)
    metrics = evaluate(settings, races, out, keys, progress, getattr(args, "exports", None) or ())
    print(f"{len(metrics)} model(s) on {len(races)} race(s) -> {out}/report.md, {out}/metrics.json")
    for key, m in metrics.items():
        verdicts = ", ".join(
            f"{t['name']} {t['value']:.3f} ({'met' if t['met'] else 'NOT met'})" for t in m["targets"]
        )
        print(f"  {key} v{m['version']}: {verdicts or 'no targets'}")
    return 0
