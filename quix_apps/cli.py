"""`stratx` command line: broker, topics, races, replay, demo, bundle, config.

Each subcommand reads its settings object once (env prefix STRATX_), lets flags override it, and
turns expected failures into one ``stratx: error: ...`` line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from pydantic_settings import BaseSettings

from stratx.functions import catalog
from stratx.functions.catalog import ALL_TOPICS, BY_NAME
from stratx.functions.models import MODEL_KEYS
from stratx.quix_apps import admin, broker, sources
from stratx.quix_apps.settings import (
    ENV_VARS,
    BrokerSettings,
    FeatureAppSettings,
    KafkaSettings,
    LiveSettings,
    PredictionAppSettings,
    ReplaySettings,
)

log = logging.getLogger("stratx")
EXIT_USAGE = 2
DEMO_RACE = (2023, "Bahrain", "R")

Handler = Callable[[argparse.Namespace], int]


class UserError(Exception):
    """An expected failure: printed as one line, exit code 2."""


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def _override(settings: SettingsT, **values: object) -> SettingsT:
    """The settings with the flags the user gave (None = flag not given) taking precedence."""
    update = {k: v for k, v in values.items() if v is not None}
    return settings.model_copy(update=update) if update else settings


def _kafka(args: argparse.Namespace) -> KafkaSettings:
    return _override(KafkaSettings(), broker_address=args.broker)


# ------------------------------------------------------------------ broker
def cmd_broker(args: argparse.Namespace) -> int:
    settings = BrokerSettings()
    host, port = args.host or settings.broker_host, args.port or settings.broker_port
    with broker.EmbeddedBroker(host, port) as b:
        if not args.no_topics:
            client = admin.connect(b.address)
            created = admin.create_topics(client)
            client.close()
            print(f"created {len(created)} topics", file=sys.stderr)
        print(f"broker ready at {b.address} (Tansu, in-memory); Ctrl-C to stop", file=sys.stderr, flush=True)
        _wait_for_signal(b)
    return 0


def _wait_for_signal(b: broker.EmbeddedBroker) -> None:
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while b.proc is not None and b.proc.poll() is None:
            time.sleep(0.2)
        raise UserError(f"the broker exited unexpectedly (code {b.proc.returncode if b.proc else '?'})")
    except KeyboardInterrupt:
        print("stopping broker", file=sys.stderr)


# ------------------------------------------------------------------ topics
def cmd_topics(args: argparse.Namespace) -> int:
    settings = _kafka(args)
    client = admin.connect(settings.broker_address, settings.connect_timeout_s, settings.kafka_auth())
    try:
        if args.action == "create":
            created = admin.create_topics(client)
            print(f"created {len(created)} of {len(ALL_TOPICS)} catalog topics: {', '.join(created) or '-'}")
        elif args.action == "list":
            for name in admin.list_topics(client):
                spec = BY_NAME.get(name)
                print(f"{name:32s} {spec.description if spec else '(not in the StratX catalog)'}")
        else:
            names = args.names or [t.name for t in ALL_TOPICS]
            existing = set(admin.list_topics(client))
            absent = [n for n in names if n not in existing]
            if absent:
                raise UserError(f"no such topic(s): {', '.join(absent)}; run `stratx topics create`")
            for info in admin.describe_topics(client, names):
                spec = BY_NAME.get(info.name)
                print(f"{info.name}: partitions={info.partitions}")
                if spec:
                    print(
                        f"  key={spec.key.value} retention.ms={spec.retention_ms} "
                        f"cleanup.policy={spec.cleanup_policy} schema={spec.schema.__name__} v1"
                    )
                if info.configs:
                    print(
                        "  broker configs: " + ", ".join(f"{k}={v}" for k, v in sorted(info.configs.items()))
                    )
    finally:
        client.close()
    return 0


# ------------------------------------------------------------------ races
def cmd_races(args: argparse.Namespace) -> int:
    settings = ReplaySettings()
    races = sources.list_bundled(settings.data_dir)
    if not races:
        raise UserError(f"no bundled races under {settings.data_dir / 'races'}")
    for r in races:
        m = r.meta
        print(
            f"{m.year} {m.event_name:28s} {m.session_name:10s} session_key={m.session_key} folder={r.path.name}"
        )
    return 0


# ------------------------------------------------------------------ replay
def load_race(settings: ReplaySettings, year: int, event: str, session: str, source: str) -> sources.RaceData:
    if source in ("auto", "bundled"):
        bundled = sources.find_bundled(settings.data_dir, year, event, session)
        if bundled is not None:
            log.info("loading bundled race %s", bundled.path.name)
            return sources.load_bundled(bundled.path)
        if source == "bundled":
            raise UserError(f"no bundled race matches {year} '{event}' {session}; see `stratx races`")
    log.info("loading %s %s %s through FastF1 (cache %s)", year, event, session, settings.fastf1_cache)
    settings.fastf1_cache.mkdir(parents=True, exist_ok=True)
    return sources.load_fastf1(
        year, event, session, settings.fastf1_cache, settings.fastf1_offline, settings.telemetry_dir
    )


def _replay_settings(args: argparse.Namespace) -> ReplaySettings:
    settings = ReplaySettings()
    cache, telemetry = getattr(args, "cache", None), getattr(args, "telemetry_dir", None)
    return _override(
        settings,
        broker_address=args.broker,
        fastf1_cache=Path(cache) if cache else None,
        fastf1_offline=True if getattr(args, "offline", False) else None,
        telemetry_dir=Path(telemetry) if telemetry else None,
    )


def _replay(settings: ReplaySettings, args: argparse.Namespace, year: int, event: str, session: str) -> int:
    return _replay_run(settings, args, year, event, session)[0]


def _replay_run(
    settings: ReplaySettings, args: argparse.Namespace, year: int, event: str, session: str
) -> tuple[int, sources.RaceData, object]:
    from stratx.quix_apps import replay

    race = load_race(settings, year, event, session, args.source)
    if args.drivers:
        race = race.filter_drivers({d.strip() for d in args.drivers.split(",") if d.strip()})
    if race.missing:
        print(
            f"note: source tables unavailable for this session, skipped: {', '.join(race.missing)}",
            file=sys.stderr,
        )
    options = replay.ReplayOptions(
        speed=args.speed,
        resume=args.resume,
        replay_id=args.replay_id,
        max_events=args.max_events,
        progress=not args.no_progress,
        pace_from_lap=args.pace_from_lap,
    )
    from stratx.quix_apps import metrics

    metrics.serve(replay.APP, settings)
    result = replay.run(race, settings, options)
    _print_summary(result)
    if result.interrupted:
        print(f"interrupted after Seq {result.last_seq}; continue with --resume", file=sys.stderr)
        return 130, race, result
    return 0, race, result


def _print_counts(counts: dict[str, int]) -> None:
    for topic, n in sorted(counts.items()):
        print(f"  {topic:32s} {n:>9d}", file=sys.stderr)


def _print_summary(result: object) -> None:
    r = result
    published: Counter[str] = r.published  # type: ignore[attr-defined]
    total = sum(published.values())
    rate = total / r.elapsed_s if r.elapsed_s else 0.0  # type: ignore[attr-defined]
    state = "finished" if r.finished else "stopped"  # type: ignore[attr-defined]
    print(
        f"replay {r.replay_id} {state}: {total} events published "  # type: ignore[attr-defined]
        f"({rate:,.0f}/s), {r.dead_letters} dead letters, {r.skipped} skipped on resume",  # type: ignore[attr-defined]
        file=sys.stderr,
    )
    _print_counts(published)


def cmd_replay(args: argparse.Namespace) -> int:
    if args.recording:
        return _replay_recording(args)
    if args.year is None or args.event is None:
        raise UserError("replay needs --year and --event (a FastF1 session) or --recording DIR")
    return _replay(_replay_settings(args), args, args.year, args.event, args.session)


def _replay_recording(args: argparse.Namespace) -> int:
    """Serve the recording on loopback (simulated clock at --speed) and follow it with the live poller."""
    from datetime import timedelta

    from stratx.quix_apps import live, metrics, openf1_client, openf1_server

    folder = Path(args.recording)
    if not (folder / "MANIFEST.json").exists():
        raise UserError(f"{folder} is not a recording (no MANIFEST.json); make one with `stratx record`")
    app = openf1_server.create_app(folder)
    start = app.data.manifest.get("lights_out")
    if args.speed and args.speed > 0 and start:
        app.clock = openf1_server.SimClock(
            openf1_server.parse_date(start) - timedelta(seconds=5), speed=args.speed
        )
    else:  # as fast as possible: everything recorded is visible at once
        app.clock = openf1_server.SimClock(datetime.now(UTC) + timedelta(days=3650), speed=0)
    base_url, stop = openf1_server.serve(app)
    settings = LiveSettings().model_copy(update={"openf1_url": f"{base_url}/v1", "poll_interval_s": 1.0})
    if args.broker:
        settings = settings.model_copy(update={"broker_address": args.broker})
    key = str(app.data.manifest.get("session_key", "latest"))
    options = live.LiveOptions(session_key=key, idle_cycles=3 if args.speed else 1, resume=args.resume)
    try:
        with openf1_client.OpenF1Client(base_url=settings.openf1_url, rate_limit=10_000) as client:
            metrics.serve(live.APP, settings)
            result = live.run(client, settings, options)
    finally:
        stop()
    _print_live(result)
    return 130 if result.interrupted else 0


# ------------------------------------------------------------------ demo
def cmd_demo(args: argparse.Namespace) -> int:
    """Quickstart: embedded broker, topics, feature apps, replay of a bundled real race."""
    import tempfile

    from stratx.quix_apps import pipeline

    base = BrokerSettings()
    port = args.port or (
        base.broker_port
        if broker.port_is_free(base.broker_host, base.broker_port)
        else broker.free_port(base.broker_host)
    )
    with broker.EmbeddedBroker(base.broker_host, port) as b, tempfile.TemporaryDirectory() as state:
        print(f"embedded broker at {b.address}", file=sys.stderr)
        client = admin.connect(b.address)
        admin.create_topics(client)
        client.close()
        log_dir = Path(state)
        procs = pipeline.start_apps(b.address, Path(state) / "quix", feast=not args.no_feast, log_dir=log_dir)
        print(f"feature apps started: {', '.join(procs)} (logs in {log_dir})", file=sys.stderr)
        try:
            args.broker = b.address
            year, event, session = DEMO_RACE
            code, race, result = _replay_run(_replay_settings(args), args, year, event, session)
            if code == 0:
                laps = result.published[catalog.LAPS.name]  # type: ignore[attr-defined]
                print("waiting for the feature apps to catch up ...", file=sys.stderr, flush=True)
                drivers = len(race.table("drivers"))
                counts = pipeline.wait_caught_up(
                    b.address, race.meta.session_key, laps, drivers, procs=procs, log_dir=log_dir
                )
                _print_counts(counts)
                if not args.no_feast:
                    _print_feast_snapshot(race)
            if code == 0 and args.keep_running:
                print(f"topics stay readable at {b.address}; Ctrl-C to stop", file=sys.stderr, flush=True)
                _wait_for_signal(b)
        finally:
            pipeline.stop_apps(procs)
    return code


def cmd_up(args: argparse.Namespace) -> int:
    """The whole pipeline on one machine (see ``quix_apps/up.py``); the race is the demo's."""
    from stratx.quix_apps import up

    def replay(address: str) -> tuple[int, sources.RaceData, object]:
        args.broker = address
        year, event, session = DEMO_RACE
        return _replay_run(_replay_settings(args), args, year, event, session)

    return up.up_main(args, replay)


def _print_feast_snapshot(race: sources.RaceData) -> None:
    """The Feast online store's view of the race: every driver's latest lap features."""
    from stratx.quix_apps import feature_store

    store = feature_store.setup_store(FeatureAppSettings())
    drivers = race.table("drivers")
    rows = [{"DriverNumber": str(d), "SessionKey": race.meta.session_key} for d in drivers.DriverNumber]
    got = feature_store.online_features(store, "pit_window_v1", rows)
    table = sorted(
        (dict(zip(got, vals, strict=True)) for vals in zip(*got.values(), strict=True)),
        key=lambda r: (r.get("LapNumber") is None, -(r.get("LapNumber") or 0), r.get("PositionOnLap") or 99),
    )
    codes = dict(zip(drivers.DriverNumber.astype(str), drivers.Abbreviation, strict=True))
    print("Feast online store (pit_window_v1), latest lap per driver:", file=sys.stderr)
    print(
        f"  {'drv':4s} {'lap':>4s} {'pos':>4s} {'gap s':>8s} {'tyre':>6s} {'age':>4s} {'deg s/lap':>9s}",
        file=sys.stderr,
    )
    for r in table:
        deg = r.get("StintDegSlope")
        print(
            f"  {codes.get(str(r['DriverNumber']), '?'):4s} {r.get('LapNumber') or 0:>4d} "
            f"{r.get('PositionOnLap') or 0:>4d} {r.get('GapToLeader') or 0:>8.1f} "
            f"{(r.get('Compound') or '-')[:6]:>6s} {int(r.get('TyreLife') or 0):>4d} "
            f"{deg if deg is not None else float('nan'):>9.3f}",
            file=sys.stderr,
        )


# ------------------------------------------------------------------ bundle
def cmd_bundle(args: argparse.Namespace) -> int:
    settings = _replay_settings(args)
    race = sources.load_fastf1(
        args.year,
        args.event,
        args.session,
        settings.fastf1_cache,
        settings.fastf1_offline,
        settings.telemetry_dir,
    )
    out = sources.write_bundle(
        race,
        Path(args.out),
        {"fastf1_cache": str(settings.fastf1_cache), "telemetry_dir": str(settings.telemetry_dir)},
    )
    print(f"wrote {out}: {json.dumps(race.row_counts())}; missing: {list(race.missing)}")
    return 0


# ------------------------------------------------------------------ features
def cmd_features_build(args: argparse.Namespace) -> int:
    """Offline lap features for the bundled races and the bundled (or given) FastF1 exports -> parquet."""
    from stratx.quix_apps import feature_build

    settings = ReplaySettings()
    races = [sources.load_bundled(r.path) for r in sources.list_bundled(settings.data_dir)]
    seen = {(r.meta.year, r.meta.event_name, r.meta.session_name) for r in races}
    corpus = settings.data_dir / "corpus" / "fastf1_exports"
    export_dirs = args.exports or ([str(corpus)] if corpus.is_dir() else [])
    for export_dir in export_dirs:
        for race in sources.load_exports(Path(export_dir)):  # bundled copies win: they have real keys
            ident = (race.meta.year, race.meta.event_name, race.meta.session_name)
            if ident not in seen:
                seen.add(ident)
                races.append(race)
    if not races:
        raise UserError("no races to build from: no bundled races and no --exports")
    table, report = feature_build.build_lap_table(races, progress=not args.no_progress)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, compression="zstd", index=False)
    print(
        f"wrote {out}: {report.rows} driver-laps from {report.races} races; {len(report.rejected)} laps rejected"
    )
    for reason in report.rejected[:10]:
        print(f"  rejected: {reason}", file=sys.stderr)
    if args.aggression_out:
        aggression = feature_build.build_aggression_table(races, progress=not args.no_progress)
        aggression.to_parquet(args.aggression_out, compression="zstd", index=False)
        print(
            f"wrote {args.aggression_out}: {len(aggression)} driver-laps of aggression (car samples, else OpenF1 per-lap aggregates)"
        )
    return 0


def cmd_features_run(args: argparse.Namespace) -> int:
    """Run one streaming feature app until Ctrl-C (or --idle-timeout seconds without input)."""
    settings = FeatureAppSettings()
    settings = _override(settings, broker_address=args.broker, feast_push=False if args.no_feast else None)
    if args.app == "all":
        return _run_all(settings, args)
    client = admin.connect(settings.broker_address, settings.connect_timeout_s, settings.kafka_auth())
    admin.create_topics(client)
    client.close()
    pusher = None
    if args.app == "lap":
        from stratx.quix_apps import feature_store, lap_features

        if settings.feast_push:  # `feast apply` is part of set-up; pushes go out in batches
            pusher = feature_store.BackgroundPusher(feature_store.setup_store(settings))
        app = lap_features.build_app(settings, on_features=pusher)
    elif args.app == "telemetry":
        from stratx.quix_apps import telemetry_features

        group = f"{settings.consumer_group_prefix}-telemetry-features"
        app, _ = telemetry_features.build_app(
            settings, state_dir=settings.state_dir, consumer_group=group, loglevel=logging.WARNING
        )
    elif args.app in ("progress", "gaps"):
        from stratx.quix_apps import track_gaps

        tracks = track_gaps.bundled_tracks(ReplaySettings().data_dir / "races")
        build = track_gaps.build_progress_app if args.app == "progress" else track_gaps.build_gap_app
        group = f"{settings.consumer_group_prefix}-track-{args.app}"
        app = build(
            settings, tracks, state_dir=settings.state_dir, consumer_group=group, loglevel=logging.WARNING
        )
    else:
        from stratx.functions.schemas import LapAggression
        from stratx.quix_apps import feature_store, lap_aggression

        if settings.feast_push:  # as the lap app: apply at set-up, batched pushes of the aggression family
            pusher = feature_store.BackgroundPusher(
                feature_store.setup_store(settings),
                push_source=feature_store.AGGRESSION_PUSH_SOURCE,
                model=LapAggression,
            )
        group = f"{settings.consumer_group_prefix}-lap-aggression"
        app, _ = lap_aggression.build_app(
            settings,
            state_dir=settings.state_dir,
            consumer_group=group,
            loglevel=logging.WARNING,
            on_records=pusher,
        )
    print(f"{args.app}-features app consuming {settings.broker_address}", file=sys.stderr, flush=True)
    from stratx.quix_apps import metrics

    metrics.instrument_app(args.app, settings, app.config.consumer_group)
    try:
        app.run(timeout=args.idle_timeout or 0.0)
    finally:
        if pusher is not None:
            pusher.close()
    return 0


def cmd_stream_app(args: argparse.Namespace) -> int:
    """`stratx predict` / `stratx alerts`: the prediction or alert app until Ctrl-C (or idle)."""
    from stratx.quix_apps import alerts_app, predictions
    from stratx.quix_apps.model_client import ModelClient

    settings = _override(PredictionAppSettings(), broker_address=args.broker)
    client = admin.connect(settings.broker_address, settings.connect_timeout_s, settings.kafka_auth())
    admin.create_topics(client)
    client.close()
    print(f"{args.command} app consuming {settings.broker_address}", file=sys.stderr, flush=True)
    from stratx.quix_apps import metrics

    if args.command == "alerts":
        app = alerts_app.build_app(settings)
        metrics.instrument_app("alerts", settings, app.config.consumer_group)
        app.run(timeout=args.idle_timeout or 0.0)
        return 0
    with ModelClient(settings.urls(), predictions.policy(settings)) as models:
        app = predictions.build_app(settings, models)
        metrics.instrument_app("predict", settings, app.config.consumer_group)
        app.run(timeout=args.idle_timeout or 0.0)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    """`stratx dashboard`: the Panel dashboard + broadcast overlay until Ctrl-C."""
    from stratx.panel_app import app

    return app.main(args=args)


def _dashboard_arguments(p: argparse.ArgumentParser) -> None:
    from stratx.panel_app.options import add_arguments  # no Panel import until the server starts

    add_arguments(p)


def cmd_serve(args: argparse.Namespace) -> int:
    """`stratx serve`: every model's BentoML service on its own port until Ctrl-C."""
    from stratx.quix_apps import serve

    return serve.serve_main(args)


def cmd_bentos(args: argparse.Namespace) -> int:
    """`stratx bentos build`: the serving wheel, the champions, then `bentoml build` per model."""
    from stratx.quix_apps import serve

    return serve.build_main(args)


def _run_all(settings: FeatureAppSettings, args: argparse.Namespace) -> int:
    from stratx.quix_apps import pipeline

    procs = pipeline.start_apps(
        settings.broker_address, settings.state_dir, apps=pipeline.ALL_APPS, feast=settings.feast_push
    )
    print(f"feature apps running ({', '.join(procs)}); Ctrl-C stops them", file=sys.stderr, flush=True)
    try:
        while all(p.poll() is None for p in procs.values()):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        pipeline.stop_apps(procs)
    return max((p.returncode or 0) for p in procs.values())


# ------------------------------------------------------------------ ingest
def cmd_ingest(args: argparse.Namespace) -> int:
    """`stratx ingest`: the stateless OpenF1 ingest app (inbound topic -> raw topics + dead letters)."""
    from stratx.quix_apps import ingest_app
    from stratx.quix_apps.settings import IngestSettings

    settings = _override(IngestSettings(), broker_address=args.broker)
    client = admin.connect(settings.broker_address, settings.connect_timeout_s, settings.kafka_auth())
    admin.create_topics(client, (*ALL_TOPICS, *catalog.INBOUND_TOPICS))
    client.close()
    print(f"ingest app consuming {catalog.INBOUND_OPENF1.name} on {settings.broker_address}", file=sys.stderr)
    ingest_app.run(settings, timeout_s=args.idle_timeout or 0.0)
    return 0


# ------------------------------------------------------------------ live
def cmd_live(args: argparse.Namespace) -> int:
    """Follow a session through OpenF1 into the raw topics (same schemas as the replay)."""
    from stratx.quix_apps import live, metrics, openf1_client, recording

    settings = LiveSettings()
    settings = _override(
        settings, broker_address=args.broker, openf1_url=args.openf1_url, poll_interval_s=args.poll_interval
    )
    token = None
    if settings.openf1_username and settings.openf1_password:  # the authenticated live tier
        token = openf1_client.TokenProvider(settings.openf1_username, settings.openf1_password)
    options = live.LiveOptions(
        session_key=args.session_key,
        max_cycles=args.max_cycles,
        idle_cycles=args.idle_cycles,
        resume=not args.no_resume,
    )
    recorder = recording.Recorder(Path(args.out)) if getattr(args, "out", None) else None
    with openf1_client.OpenF1Client(
        base_url=settings.openf1_url,
        rate_limit=settings.openf1_rate_limit,
        rate_window=settings.openf1_rate_window_s,
        token_provider=token,
    ) as client:
        metrics.serve(live.APP, settings)
        result = live.run(client, settings, options, recorder)
    _print_live(result)
    if recorder is not None:
        print(
            f"recording saved to {recorder.out_dir} (replay: stratx replay --recording {recorder.out_dir})",
            file=sys.stderr,
        )
    return 130 if result.interrupted else 0


def _print_live(result: object) -> None:
    r = result
    published: Counter[str] = r.published  # type: ignore[attr-defined]
    print(
        f"live session {r.session_key}: {r.cycles} poll cycles, {r.requests} requests, "  # type: ignore[attr-defined]
        f"{sum(published.values())} events published, {r.dead_letters} dead letters",  # type: ignore[attr-defined]
        file=sys.stderr,
    )
    _print_counts(published)


# ------------------------------------------------------------------ models
def cmd_train(args: argparse.Namespace) -> int:
    from stratx.quix_apps import training

    return training.train_main(args)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from stratx.quix_apps import evaluation

    return evaluation.evaluate_main(args)


def cmd_drift(args: argparse.Namespace) -> int:
    """`stratx drift`: Evidently drift of a session's lap features vs the training reference (once,
    or every S seconds), HTML + JSON reports, Prometheus gauges, a drift alert on a crossing."""
    from stratx.quix_apps import drift
    from stratx.quix_apps.settings import DriftSettings

    settings = _override(
        DriftSettings(),
        broker_address=args.broker,
        drift_window_laps=args.window_laps,
        drift_window_minutes=args.window_minutes,
        drift_threshold=args.threshold,
        drift_reports_dir=Path(args.reports_dir) if args.reports_dir else None,
    )
    every = settings.drift_period_s if args.periodic else args.every
    if every is not None and every <= 0:
        raise UserError("--every must be a positive number of seconds")
    client = admin.connect(
        settings.broker_address, settings.connect_timeout_s, settings.kafka_auth()
    )  # fails fast if unreachable
    admin.create_topics(client)
    client.close()
    if every is not None:
        drift.serve_metrics(settings)
    try:
        return drift.run_job(settings, args.session_key, every, args.max_runs, args.rebuild_reference)
    except drift.NoData as exc:
        raise UserError(str(exc)) from exc


def cmd_config(args: argparse.Namespace) -> int:
    for name, doc in ENV_VARS.items():
        print(f"{name:36s} {doc}")
    return 0


# ------------------------------------------------------------------ parser
def _add_replay_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="event-clock speed: 1 = real time, 10 = 10x, 0 = as fast as possible (default)",
    )
    p.add_argument(
        "--pace-from-lap",
        type=int,
        help="replay everything before this lap's start at full speed, then pace (1 = from lights out)",
    )
    p.add_argument("--drivers", help="comma-separated driver codes or numbers, e.g. VER,HAM,16")
    p.add_argument("--resume", action="store_true", help="continue after the last checkpointed event")
    p.add_argument("--replay-id", help="checkpoint id (default: the session key)")
    p.add_argument("--max-events", type=int, help="stop after N events (resume continues from there)")
    p.add_argument(
        "--source",
        choices=("auto", "bundled", "fastf1"),
        default="auto",
        help="bundled data, a FastF1 cache/download, or auto (bundled first)",
    )
    p.add_argument("--cache", help="FastF1 cache folder (STRATX_FASTF1_CACHE)")
    p.add_argument("--offline", action="store_true", help="never download (STRATX_FASTF1_OFFLINE)")
    p.add_argument("--telemetry-dir", help="OpenF1 car_data/location parquet folder (STRATX_TELEMETRY_DIR)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stratx", description="StratX real-time F1 race-strategy engine")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="quickstart: embedded broker + topics + replay of a bundled real race")
    p.add_argument("--port", type=int, help="embedded broker port (default 9092, or a free one)")
    p.add_argument("--keep-running", action="store_true", help="keep the broker up after the replay")
    p.add_argument(
        "--no-feast", action="store_true", help="do not push lap features to the Feast online store"
    )
    _add_replay_flags(p)
    p.set_defaults(func=cmd_demo, broker=None, pace_from_lap=1)

    p = sub.add_parser(
        "up",
        help="the whole pipeline: broker, model services, streaming apps, dashboard, replay of a bundled race",
    )
    p.add_argument("--port", type=int, help="embedded broker port (default 9092, or a free one)")
    p.add_argument("--exit-when-done", action="store_true", help="stop everything after the summary")
    p.add_argument("--no-dashboard", action="store_true", help="do not start the Panel dashboard")
    p.add_argument("--dashboard-port", type=int, help="dashboard port (default: a free one)")
    p.add_argument(
        "--no-feast", action="store_true", help="do not push lap features to the Feast online store"
    )
    _add_replay_flags(p)
    p.set_defaults(func=cmd_up, broker=None, pace_from_lap=1)

    p = sub.add_parser("broker", help="run the embedded Kafka-API broker (Tansu) and create the topics")
    p.add_argument("--host", help="listen address (STRATX_BROKER_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (STRATX_BROKER_PORT, default 9092)")
    p.add_argument("--no-topics", action="store_true", help="do not create the catalog topics")
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("topics", help="create, list or describe the topics")
    p.add_argument("action", choices=("create", "list", "describe"))
    p.add_argument("names", nargs="*", help="topics to describe (default: the whole catalog)")
    p.add_argument("--broker", help="bootstrap address (STRATX_BROKER_ADDRESS)")
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser(
        "replay",
        help="replay a FastF1 session (bundled, cached or downloadable) or an OpenF1 recording into the topics",
    )
    p.add_argument("--year", type=int, help="season (FastF1 sessions)")
    p.add_argument("--event", help="event name, location, country or round number (FastF1 sessions)")
    p.add_argument("--recording", help="a folder made by `stratx record` (replayed through the live poller)")
    p.add_argument("--session", default="R", help="R, S, Q, SQ, FP1-3 (default R)")
    p.add_argument("--broker", help="bootstrap address (STRATX_BROKER_ADDRESS)")
    _add_replay_flags(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("races", help="list the bundled races")
    p.set_defaults(func=cmd_races)

    p = sub.add_parser(
        "bundle", help="write a FastF1 session into the bundled parquet format (refresh data/)"
    )
    p.add_argument("--year", type=int, required=True)
    p.add_argument("--event", required=True)
    p.add_argument("--session", default="R")
    p.add_argument("--out", default="data/races")
    p.add_argument("--cache", help="FastF1 cache folder")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--telemetry-dir", help="OpenF1 car_data/location parquet folder")
    p.set_defaults(func=cmd_bundle, broker=None)

    p = sub.add_parser("features", help="features: build offline tables, or run the streaming apps")
    fsub = p.add_subparsers(dest="features_command", required=True, metavar="ACTION")
    b = fsub.add_parser(
        "build", help="offline lap features of the bundled races (+ FastF1 exports) to parquet"
    )
    b.add_argument(
        "--exports",
        action="append",
        help="folder with flat FastF1 exports (laps.parquet, ...); default: the bundled data/corpus/fastf1_exports",
    )
    b.add_argument("--out", default=".stratx/features/lap_features_offline.parquet")
    b.add_argument(
        "--aggression-out",
        default=".stratx/features/lap_aggression_offline.parquet",
        help="per-lap driver aggression of the races with car telemetry ('' to skip)",
    )
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=cmd_features_build)
    r = fsub.add_parser("run", help="run the streaming lap-features app (Quix Streams) against the broker")
    r.add_argument(
        "--app",
        choices=("lap", "telemetry", "aggression", "progress", "gaps", "all"),
        default="all",
        help="which app: lap features, telemetry windows, lap aggression, track progress, track gaps, "
        "or all in their own processes",
    )
    r.add_argument("--broker", help="bootstrap address (STRATX_BROKER_ADDRESS)")
    r.add_argument("--no-feast", action="store_true", help="do not push to the Feast online store")
    r.add_argument("--idle-timeout", type=float, help="stop after this many seconds without new input")
    r.set_defaults(func=cmd_features_run)

    p = sub.add_parser("dashboard", help="the live Panel dashboard (/) and broadcast overlay (/overlay)")
    _dashboard_arguments(p)
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser(
        "serve", help="serve every model's @champion with BentoML, one port each (Ctrl-C stops)"
    )
    p.add_argument("--model", dest="models", action="append", choices=MODEL_KEYS, help="only these models")
    p.add_argument("--no-import", action="store_true", help="serve the BentoML store as it is (no MLflow)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("bentos", help="build one Bento per model (bentoml build, offline)")
    bsub = p.add_subparsers(dest="bentos_command", required=True, metavar="ACTION")
    b = bsub.add_parser("build", help="serving wheel + champions into the BentoML store + bentoml build")
    b.add_argument("--model", dest="models", action="append", choices=MODEL_KEYS, help="only these models")
    b.add_argument("--no-import", action="store_true", help="use the BentoML store as it is (no MLflow)")
    b.add_argument(
        "--export",
        action="store_true",
        help="also unpack each Bento to bentos/dist/containers/<model>/ (its generated Dockerfile; "
        "compose.bentos.yaml builds the images from there)",
    )
    b.set_defaults(func=cmd_bentos)

    for name, text in (
        ("predict", "run the prediction app: lap features -> the model services -> prediction topics"),
        ("alerts", "run the alerts app: prediction topics -> debounced alerts on stratx.alerts"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--broker", help="bootstrap address (STRATX_BROKER_ADDRESS)")
        p.add_argument("--idle-timeout", type=float, help="stop after this many seconds without new input")
        p.set_defaults(func=cmd_stream_app)

    p = sub.add_parser("ingest", help="stateless ingest: inbound OpenF1 records -> raw topics + dead letters")
    p.add_argument("--broker", help="bootstrap address (STRATX_BROKER_ADDRESS)")
    p.add_argument("--idle-timeout", type=float, help="stop after this many seconds without new input")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("live", help="follow a session through the OpenF1 API into the raw topics")
    p.add_argument("--session-key", default="latest", help="OpenF1 session key, or 'latest'")
    p.add_argument("--broker", help="bootstrap address (STRATX_BROKER_ADDRESS)")
    p.add_argument("--openf1-url", help="OpenF1 base URL (STRATX_OPENF1_URL)")
    p.add_argument("--poll-interval", type=float, help="seconds between poll cycles (STRATX_POLL_INTERVAL_S)")
    p.add_argument("--max-cycles", type=int, help="stop after N poll cycles")
    p.add_argument("--idle-cycles", type=int, help="stop after N cycles in a row without new records")
    p.add_argument("--no-resume", action="store_true", help="ignore the checkpoint; start from the beginning")
    p.add_argument("--out", help="also save every fetched record to this folder (a recording)")
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("record", help="follow a session through OpenF1 and save it to disk (and the topics)")
    p.add_argument("--session-key", default="latest", help="OpenF1 session key, or 'latest'")
    p.add_argument("--out", required=True, help="recording folder (replay with `stratx replay --recording`)")
    p.add_argument("--broker", help="bootstrap address (STRATX_BROKER_ADDRESS)")
    p.add_argument("--openf1-url", help="OpenF1 base URL (STRATX_OPENF1_URL)")
    p.add_argument("--poll-interval", type=float, help="seconds between poll cycles (STRATX_POLL_INTERVAL_S)")
    p.add_argument("--max-cycles", type=int, help="stop after N poll cycles")
    p.add_argument("--idle-cycles", type=int, help="stop after N cycles in a row without new records")
    p.add_argument("--no-resume", action="store_true", help="ignore the checkpoint; start from the beginning")
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("train", help="train the models on the bundled races + corpus, tracked in MLflow")
    p.add_argument("--model", choices=("all", *MODEL_KEYS), default="all")
    p.add_argument("--if-missing", action="store_true", help="only the models without a @champion yet")
    p.add_argument(
        "--exports", action="append", help="flat FastF1 exports (default: data/corpus/fastf1_exports)"
    )
    p.add_argument("--features", help="reuse a built lap-feature parquet (stratx features build --out)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score the models' @champions on unseen races: report + metrics.json")
    p.add_argument("--model", choices=("all", *MODEL_KEYS), default="all")
    p.add_argument("--race-dir", action="append", help="a bundled-format race folder")
    p.add_argument("--exports", action="append", help="folder with FastF1-format laps.parquet etc.")
    p.add_argument("--fastf1-cache", help="FastF1 cache folder (with --year/--event [--session])")
    p.add_argument("--year", type=int)
    p.add_argument("--event")
    p.add_argument("--session", default="R")
    p.add_argument("--out", help="output folder (STRATX_REPORTS_DIR, default .stratx/reports)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("drift", help="Evidently drift of a session's lap features vs the training reference")
    p.add_argument("--session-key", type=int, help="the session (default: the latest on stratx.features.lap)")
    p.add_argument(
        "--window-laps", type=int, help="last N race laps (0: all so far; STRATX_DRIFT_WINDOW_LAPS)"
    )
    p.add_argument(
        "--window-minutes", type=float, help="last T minutes of session time (STRATX_DRIFT_WINDOW_MINUTES)"
    )
    p.add_argument(
        "--threshold", type=float, help="drifted-column share that raises an alert (STRATX_DRIFT_THRESHOLD)"
    )
    p.add_argument("--reports-dir", help="reports folder (STRATX_DRIFT_REPORTS_DIR)")
    p.add_argument("--broker", help="bootstrap address (STRATX_BROKER_ADDRESS)")
    p.add_argument("--every", type=float, help="repeat every S seconds until Ctrl-C (exports /metrics)")
    p.add_argument("--periodic", action="store_true", help="repeat every STRATX_DRIFT_PERIOD_S seconds")
    p.add_argument("--max-runs", type=int, help="with --every: stop after N runs")
    p.add_argument("--rebuild-reference", action="store_true", help="rebuild the reference parquet first")
    p.set_defaults(func=cmd_drift)

    p = sub.add_parser("config", help="list the STRATX_* environment variables")
    p.set_defaults(func=cmd_config)
    return parser


def _quiet_authlib() -> None:
    """authlib (imported by quixstreams) forces its deprecation warnings to "always"; undo that."""
    try:
        from authlib.deprecate import AuthlibDeprecationWarning
    except ImportError:
        return
    warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "topics" and not any(e.startswith("-") for e in extra):
        args.names = [*args.names, *extra]  # names after an option, e.g. `describe --broker X NAME`
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("fastf1", "quixstreams", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if not args.verbose:  # one line per HTTP call of the model/OpenF1 clients is debug output
        logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # its retries are reported by us, once
    _quiet_authlib()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    from stratx.quix_apps.openf1_client import OpenF1Error
    from stratx.quix_apps.pipeline import AppExited
    from stratx.quix_apps.replay import DeliveryError

    expected = (
        UserError,
        sources.SourceError,
        broker.BrokerError,
        admin.AdminError,
        DeliveryError,
        OpenF1Error,  # a rejected token after one refresh, or OpenF1 unavailable after the retries
        AppExited,
        ValueError,
        OSError,
    )
    try:
        return int(args.func(args))
    except expected as exc:
        print(f"stratx: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("stratx: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
