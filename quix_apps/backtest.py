"""`stratx backtest`: replay races through the real pipeline and score what it emits.

1. The races: a bundled folder (``--race-dir``), FastF1-format exports (``--exports``), a FastF1
   cache session (``--fastf1-cache`` + ``--year/--event/--session``), or ``--year/--event`` alone
   (bundled first, then the FastF1 cache of ``STRATX_FASTF1_CACHE``), as ``stratx evaluate``
   accepts them; none given: the test races. ``--drivers`` / ``--max-events`` cut a slice.
2. Offline: each model's ``@champion`` scored on the same races by its recipe (``stratx evaluate``).
3. The stream: the stack ``stratx up`` starts (broker, five ``bentoml serve`` services, the
   feature, prediction and alert apps; not the dashboard or the drift job, which only read), then
   each race replayed at full speed, waited for until every driver-lap has its predictions and the
   alerts stop growing, and every prediction and alert record read back.
4. Scoring (``functions/backtest.py``, ``functions/backtest_alerts.py``) and the report:
   ``backtest.md`` (plots beside it) and ``backtest.json`` in ``--out`` (default
   ``<STRATX_REPORTS_DIR>/backtest``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pandas as pd

from stratx.bentos.lifecycle import sources
from stratx.functions import backtest, backtest_alerts, catalog, models
from stratx.functions.racedata import RaceData
from stratx.functions.settings import BrokerSettings, ReplaySettings, ServingSettings, TrainingSettings
from stratx.quix_apps.kit import broker, kafka_io, pipeline

# MLflow, BentoML and the model lifecycle load only once the races are loaded: a race that cannot
# load answers in one line at once.

# the apps of `stratx up` that are not run: they only read (the dashboard is not started either)
SKIPPED_APPS = ("drift",)
RECORDS = "records.json.gz"  # every record read back, to re-score without the pipeline (--rescore)


def say(text: str) -> None:
    print(f"[backtest] {text}", file=sys.stderr, flush=True)


def load_races(args: argparse.Namespace, settings: TrainingSettings) -> list[RaceData]:
    """The races the user named (as `stratx evaluate` takes them: ``evaluation.user_races``), else
    the test races; any failure to load becomes one ValueError line."""
    from stratx.bentos.lifecycle import evaluation

    events = evaluation.events_of(args)
    try:
        races = evaluation.user_races(args, settings)
        if not races and args.year is not None and events:
            from stratx.quix_apps.cli.races import load_race, replay_settings

            args.broker = None
            replay = replay_settings(args)
            races = [load_race(replay, args.year, event, args.session, args.source) for event in events]
        elif not races and (args.year is not None or events):
            raise ValueError("--year and --event go together")
        if not races:
            races = evaluation.test_races(settings)
    except sources.SourceError as exc:
        raise ValueError(f"cannot load the race: {exc}") from exc
    except (KeyError, FileNotFoundError, IndexError) as exc:
        raise ValueError(f"cannot load the race: {type(exc).__name__}: {exc}") from exc
    if args.drivers:
        wanted = {d.strip() for d in args.drivers.split(",") if d.strip()}
        races = [r.filter_drivers(wanted) for r in races]
    for race in races:
        if race.table("laps").empty:
            raise ValueError(f"{race.meta.year} {race.meta.event_name}: no laps to replay")
    return races


def offline_side(
    settings: TrainingSettings,
    races: list[RaceData],
    keys: list[str],
    progress: bool,
    exports: Sequence[str] = (),
) -> tuple[Any, dict[str, Any]]:
    """The corpus of ``races`` and, per model, its champion's (Evaluation | error text, bundle
    meta); ``exports``: the folders the races came from, for their classification."""
    from stratx.bentos.lifecycle import model_store, training

    recipes = [models.recipe(k) for k in keys]
    corpus = training.build_corpus(
        races,
        progress,
        windows=any(r.needs_windows for r in recipes),
        results_files=training.default_results_files(settings.data_dir, exports),
    )
    out: dict[str, Any] = {}
    for recipe in recipes:
        registered = model_store.load_registered(settings, recipe.key)
        try:
            out[recipe.key] = (recipe.evaluate(registered.bundle, corpus), registered.bundle.meta)
        except ValueError as exc:  # e.g. a slice too short for the model's labels
            out[recipe.key] = (str(exc), registered.bundle.meta)
    return corpus, out


def wait_alerts_settled(
    address: str, session_key: int, settle_s: float = 6.0, timeout_s: float = 120.0
) -> int:
    """Poll the alerts topic until its count for the session holds still for ``settle_s``."""
    deadline, last, since = time.monotonic() + timeout_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        n = pipeline.count_session(address, catalog.ALERTS.name, session_key)
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= settle_s:
            break
        time.sleep(1.5)
    return last


def stream_side(
    args: argparse.Namespace, races: list[RaceData]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Run the pipeline, replay every race, read back (predictions, alerts, timings per race, lap
    features)."""
    from stratx.quix_apps import replay
    from stratx.quix_apps.kit import up

    apps = tuple(a for a in up.STREAM_APPS if a not in SKIPPED_APPS)
    timings: list[dict[str, Any]] = []
    with ExitStack() as stack:
        port = broker.free_port(BrokerSettings().broker_host)  # never the default 9092: others may run
        running = up.start_stack(
            stack, port, feast=not args.no_feast, progress=not args.no_progress, apps=apps
        )
        settings = ReplaySettings().model_copy(update={"broker_address": running.address})
        for i, race in enumerate(races, 1):
            name = f"{race.meta.year} {race.meta.event_name}"
            say(f"race {i}/{len(races)}: {name}: replaying at full speed ...")
            t0 = time.monotonic()
            options = replay.ReplayOptions(
                speed=0.0, max_events=args.max_events, progress=not args.no_progress
            )
            result = replay.run(race, settings, options)
            t1 = time.monotonic()
            laps = result.published[catalog.LAPS.name]
            say(
                f"{name}: {sum(result.published.values())} events in {t1 - t0:.0f} s; waiting for the predictions of {laps} driver-laps ..."
            )
            counts = pipeline.wait_predicted(
                running.address,
                race.meta.session_key,
                laps,
                tuple(running.keys),
                timeout_s=args.wait_timeout,
                procs=running.procs,
                log_dir=running.work,
            )
            n_alerts = wait_alerts_settled(running.address, race.meta.session_key)
            t2 = time.monotonic()
            say(f"{name}: predictions {counts}, {n_alerts} alerts; {t2 - t0:.0f} s for this race")
            timings.append(
                {
                    "race": name,
                    "events": sum(result.published.values()),
                    "driver_laps": laps,
                    "replay_s": round(t1 - t0, 1),
                    "until_last_record_s": round(t2 - t0, 1),
                }
            )
        say("reading back every prediction and alert record ...")
        predictions = [
            json.loads(m.value() or b"{}")
            for spec in catalog.PREDICTION_TOPICS.values()
            for m in kafka_io.read_all(running.address, spec.name, drain_s=0.5)
        ]
        alerts = [
            json.loads(m.value() or b"{}")
            for m in kafka_io.read_all(running.address, catalog.ALERTS.name, drain_s=0.5)
        ]
        features = [
            json.loads(m.value() or b"{}")
            for m in kafka_io.read_all(running.address, catalog.FEATURES_LAP.name, drain_s=0.5)
        ]
    return predictions, alerts, timings, features


def score(
    races: list[RaceData],
    corpus: Any,
    offline: dict[str, Any],
    predictions: list[dict[str, Any]],
    alerts: list[dict[str, Any]],
) -> dict[str, Any]:
    """Everything backtest.json holds (all races, and each race under 'per_race'), plus the
    frames the plots need (under '_frames')."""
    result = score_races(races, corpus, offline, predictions, alerts)
    if len(races) > 1:
        result["per_race"] = {}
        for race in races:
            year, event = race.meta.year, race.meta.event_name

            def keep(frame: pd.DataFrame, y: int = year, e: str = event) -> pd.Series:
                return (frame["Year"].astype(int) == y) & (frame["EventName"].astype(str) == e)

            mine = {
                k: (ev if isinstance(ev, str) else _only(ev, keep), meta) for k, (ev, meta) in offline.items()
            }
            one = score_races([race], corpus.only(keep), mine, predictions, alerts)
            one.pop("_frames")
            result["per_race"][f"{year} {event}"] = one
    return result


def _only(evaluation: Any, keep: Any) -> Any:
    """The evaluation with its scored rows cut to one race (its overall metrics dropped)."""
    import dataclasses

    scored = evaluation.scored
    return dataclasses.replace(evaluation, scored=scored[keep(scored).to_numpy()], metrics={})


def score_races(
    races: list[RaceData],
    corpus: Any,
    offline: dict[str, Any],
    predictions: list[dict[str, Any]],
    alerts: list[dict[str, Any]],
) -> dict[str, Any]:
    sessions = {r.meta.session_key: (r.meta.year, r.meta.event_name) for r in races}
    stream = backtest.predictions_frame(predictions, sessions)
    alert_rows = backtest.alerts_frame(alerts, sessions)
    events = backtest_alerts.race_events(corpus.raw_laps, corpus.results, corpus.race_control, corpus.laps)
    hours = backtest_alerts.race_hours(corpus.raw_laps)
    retired = backtest_alerts.retirements(corpus.raw_laps, corpus.results)
    per_model: dict[str, Any] = {}
    pairs: dict[str, pd.DataFrame] = {}
    for key, (ev, meta) in offline.items():
        if isinstance(ev, str):
            per_model[key] = {"note": f"offline evaluation failed: {ev}"}
            continue
        ms = backtest.model_scores(key, ev.scored, meta, stream)
        per_model[key] = {**ms.as_dict(), "offline_all_rows": ev.metrics}
        if ms.pairs is not None:
            pairs[key] = ms.pairs
    after = {
        "predictions": backtest.after_retirement(stream, retired),
        "alerts": backtest.after_retirement(alert_rows, retired),
    }
    return {
        "races": [
            f"{r.meta.year} {r.meta.event_name} {r.meta.session_name} (session {r.meta.session_key})"
            for r in races
        ],
        "race_hours": hours,
        "records": {"predictions": len(stream), "alerts": len(alert_rows)},
        "models": per_model,
        "alerts": backtest_alerts.score_alerts(alert_rows, events, hours),
        "events": {k: len(v) for k, v in events.items()},
        "retirements": backtest_alerts.retirement_report(retired, alert_rows),
        "coverage": {**backtest.coverage(stream, corpus.laps), "records_after_retirement": after},
        "_frames": {"pairs": pairs, "alerts": alert_rows, "events": events},
    }


def drift_section(races: list[RaceData], features: list[dict[str, Any]]) -> dict[str, Any]:
    """Per race: the drift shares of the streamed lap features at the window points, and of the
    SYNTHETIC injected variants built offline from its raw laps (``drift_measure.backtest_drift``)."""
    from stratx.functions.settings import DriftSettings
    from stratx.quix_apps.drift_measure import backtest_drift

    say(
        "drift: the streamed lap features and the SYNTHETIC injected variants vs the earlier training races ..."
    )
    settings = DriftSettings()
    return {
        f"{r.meta.year} {r.meta.event_name}": backtest_drift(settings, r.meta.session_key, features, r)
        for r in races
    }


def backtest_main(args: argparse.Namespace, settings: TrainingSettings | None = None) -> int:
    """`stratx backtest [race options] [--drivers ...] [--max-events N] [--out DIR] [--no-progress]`."""
    from stratx.bentos.lifecycle import training
    from stratx.quix_apps import backtest_report
    from stratx.quix_apps.kit import up

    settings = settings or TrainingSettings()
    training.quiet_mlflow()
    started = time.monotonic()
    say("loading the races ...")
    races = load_races(args, settings)
    say(f"{len(races)} race(s): " + ", ".join(f"{r.meta.year} {r.meta.event_name}" for r in races))
    keys = [r.key for r in training.selected(None)]
    up.ensure_champions(ServingSettings(), keys, not args.no_progress)
    say("offline side: each champion on the same races (as `stratx evaluate`) ...")
    corpus, offline = offline_side(settings, races, keys, not args.no_progress, args.exports or ())
    out = Path(args.out) if args.out else settings.reports_dir / "backtest"
    records = out / RECORDS
    if args.rescore:
        say(f"re-scoring the records of an earlier run: {records}")
        if not records.is_file():
            raise ValueError(f"--rescore: no {records} (run the backtest with --out {out} first)")
        saved = json.loads(gzip.decompress(records.read_bytes()))
        predictions, alerts, timings = saved["predictions"], saved["alerts"], saved["timings"]
        features = saved.get("features", [])  # runs before the drift section kept none
    else:
        say("stream side: the pipeline of `stratx up` ...")
        predictions, alerts, timings, features = stream_side(args, races)
        out.mkdir(parents=True, exist_ok=True)
        saved = {"predictions": predictions, "alerts": alerts, "timings": timings, "features": features}
        records.write_bytes(gzip.compress(json.dumps(saved).encode()))
    say("scoring ...")
    result = score(races, corpus, offline, predictions, alerts)
    result["timings"] = timings
    result["drift"] = drift_section(races, features)
    result["command"] = args.command_line
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    paths = backtest_report.write(result, out)
    print(
        f"backtest of {len(races)} race(s) in {result['elapsed_s']:.0f} s -> {', '.join(str(p) for p in paths)}"
    )
    for line in backtest_report.summary_lines(result):
        print(f"  {line}")
    return 0
